/* Multi-raft on one node: many Raft groups (one per replicated controller) driven
 * through canonical/raft's raft_step() with our own I/O. The host keeps each
 * group's log in memory since its last snapshot (to fill AppendEntries), decides
 * when to compact, and turns raft's updates into calls on an I/O interface:
 * durable writes (staged, then made durable together by one sync), messages (one
 * frame each, to a node by name), the state machine (apply in log order, snapshot
 * data on demand), and one timer for all groups. Nothing here does I/O itself, so
 * the same code runs in the node (LMDB, links, the libuv loop) and in the
 * deterministic simulation tests (memory, a simulated network and clock).
 *
 * Never goes through raft's compatibility ("legacy") layer: no raft_io, no
 * raft_fsm, no raft_fixture. The defects 0.22.1 has there (a NULL dereference when
 * an InstallSnapshot arrives while a snapshot is taken; a loaded snapshot's last
 * term not updated) cannot happen: snapshots are taken synchronously inside a step,
 * and an InstallSnapshot we send names the index AND term of the state it carries.
 *
 * Rules of the I/O interface:
 *  - save_* calls are staged writes: they become durable, all together and in
 *    order, at the next sync. After calling sync the host waits for
 *    avm_rhost_synced(), one call per sync() call, in order; only then does raft
 *    learn that the entries, terms, votes and snapshots saved before that sync()
 *    are durable. A crash may lose any staged write after the last completed sync,
 *    never a part of one sync's writes.
 *  - apply writes the state machine's change for one committed entry and records
 *    the group's applied index in the same atomic step (staged like the rest).
 *  - messages of a group whose new term or vote is not yet durable are held until
 *    it is (raft's rule: persist term and vote before any message in the term).
 *  - every callback runs inside a host call (receive, tick, synced, propose, ...);
 *    callbacks must not call back into the host, except that sync may be answered
 *    later (synced) and schedule only records a time.
 *
 * Single-threaded. Node names are at most AVM_RHOST_NAME_MAX - 1 bytes, group names
 * too. */
#ifndef AVM_RAFT_HOST_H
#define AVM_RAFT_HOST_H
#include <raft.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AVM_RHOST_NAME_MAX 64
/* An entry is at most this big (propose refuses a larger one with AVM_ETOOBIG), and
 * an AppendEntries carries at most this much entry data (at least one entry), so
 * that every frame fits the links' frame limit. */
#define AVM_RHOST_MAX_ENTRY ((size_t)4 << 20)
#define AVM_RHOST_MAX_FRAME_DATA ((size_t)4 << 20)

typedef struct avm_rhost avm_rhost;
typedef struct avm_rgroup avm_rgroup;

/* One log entry as the host hands it to storage (data borrowed for the call). */
typedef struct avm_rentry {
    uint64_t term;
    uint8_t type; /* RAFT_COMMAND, RAFT_BARRIER or RAFT_CHANGE */
    const uint8_t *data;
    size_t len;
} avm_rentry;

/* Snapshot metadata as stored: the last index and term the state covers, and the
 * configuration committed as of it (raft_configuration_encode bytes). */
typedef struct avm_rsnap {
    uint64_t index, term;
    uint64_t conf_index;
    const uint8_t *conf;
    size_t conf_len;
} avm_rsnap;

typedef struct avm_rhost_io {
    void *arg;
    /* Staged durable writes of group `group` (see the rules above). 0 or an
     * AVM_E* code; any failure stops the group (it answers nothing more). */
    int (*save_term_vote)(void *arg, const char *group, uint64_t term, uint64_t vote);
    /* Deletes the group's entries from `index` on, then stores e[0..n) at index,
     * index + 1, ... */
    int (*save_entries)(void *arg, const char *group, uint64_t index, const avm_rentry *e,
                        size_t n);
    /* Compaction: records snap as the group's snapshot metadata and deletes the
     * entries up to and including delete_upto (0: none). The state machine's state
     * is already at snap->index or later (it is applied in the same store). */
    int (*save_compact)(void *arg, const char *group, const avm_rsnap *snap,
                        uint64_t delete_upto);
    /* Install: replaces the state machine's state with `data` (bytes made by
     * snapshot_data on another replica), sets the applied index to snap->index,
     * deletes the whole log and records snap as the snapshot metadata. */
    int (*save_install)(void *arg, const char *group, const avm_rsnap *snap,
                        const uint8_t *data, size_t len);
    /* Make everything staged so far durable, then call avm_rhost_synced. */
    void (*sync)(void *arg);
    /* One frame to node `to` (bytes borrowed for the call; the frame names the
     * group). Delivery may fail silently: raft retries. */
    void (*send)(void *arg, const char *to, const uint8_t *frame, size_t len);
    /* The state machine: applies committed command `index` (of `term`) of g, in
     * log order, exactly once per index over the life of the replica (the host
     * never passes an index at or below the applied index it was started with).
     * Staged with the applied index; the host asks no sync for it (the entry is
     * durable in the log: a crash before the next sync replays it). A nonzero return
     * stops the group. */
    int (*apply)(void *arg, avm_rgroup *g, uint64_t index, uint64_t term,
                 const uint8_t *data, size_t len);
    /* The state machine's state as of its last applied index (malloc'd; the host
     * frees it), sent to a replica that needs a snapshot. */
    int (*snapshot_data)(void *arg, avm_rgroup *g, uint8_t **data, size_t *len);
    /* g's role, term or known leader changed (optional). */
    void (*changed)(void *arg, avm_rgroup *g);
    /* The host wants avm_rhost_tick at (or soon after) monotonic time at_ms;
     * replaces any earlier request. */
    void (*schedule)(void *arg, uint64_t at_ms);
    /* Monotonic milliseconds. */
    uint64_t (*now)(void *arg);
} avm_rhost_io;

typedef struct avm_rhost_config {
    const char *self; /* this node's name */
    avm_rhost_io io;
    unsigned election_ms;       /* 0: 1000 */
    unsigned heartbeat_ms;      /* 0: 100 */
    unsigned max_inflight;      /* entries in flight per follower (0: 1024) */
    unsigned snapshot_every;    /* compact after this many applied entries (0: 1024) */
    unsigned snapshot_trailing; /* entries kept behind a snapshot (0: 128) */
    unsigned tick_ms;           /* timers are rounded up to this (0: 5), so that many
                                   groups' heartbeats go out in one wake-up */
    unsigned seed;              /* randomness of election timeouts (0: from self) */
} avm_rhost_config;

int avm_rhost_new(const avm_rhost_config *cfg, avm_rhost **out, char *errmsg,
                  size_t errlen);
void avm_rhost_free(avm_rhost *h);

/* The raft server id of a node name (stable, nonzero). */
uint64_t avm_rhost_node_id(const char *name);

/* Creates a brand-new replica of group with the initial members (node names; this
 * node among them): saves term 1 and the configuration entry at index 1 (every
 * initial replica saves the same), then starts. A single member elects itself.
 * AVM_ESTATE when the host has that group. */
int avm_rhost_bootstrap(avm_rhost *h, const char *group, const char *const *members,
                        size_t n, char *errmsg, size_t errlen);
/* Creates an empty replica waiting to be added by the group's leader (it has no
 * configuration and never starts an election until one reaches it). */
int avm_rhost_join(avm_rhost *h, const char *group, char *errmsg, size_t errlen);

/* A group's durable state, as loaded at start. Entries are given with
 * their first index; ownership of the data stays with the caller. */
typedef struct avm_rload {
    uint64_t term, vote;
    uint64_t applied; /* the state machine's applied index */
    bool has_snap;
    avm_rsnap snap;
    uint64_t first_index; /* index of e[0] */
    const avm_rentry *e;
    size_t n;
} avm_rload;
/* Restarts a replica from its durable state. */
int avm_rhost_start(avm_rhost *h, const char *group, const avm_rload *st, char *errmsg,
                    size_t errlen);
/* Forgets a replica (memory only; the caller deletes its data). */
void avm_rhost_drop(avm_rhost *h, const char *group);

/* Events. */
/* A frame from node `from` (any bytes: a bad frame is dropped and counted,
 * errmsg of avm_rhost_stats says why). */
void avm_rhost_receive(avm_rhost *h, const char *from, const uint8_t *frame, size_t len);
/* Fires the timeouts that are due. */
void avm_rhost_tick(avm_rhost *h);
/* The writes staged before the oldest unanswered sync() are durable. */
void avm_rhost_synced(avm_rhost *h);
/* The leader told this replica (in an answer to its proposal) that entry index of
 * term is committed. If the local log has that entry (same index and term, hence
 * the same prefix), the replica applies up to it at once instead of waiting for
 * the next AppendEntries to carry the commit index. Committed entries never
 * change, so this is safe; raft's own commit index catches up later. */
void avm_rhost_learn_commit(avm_rhost *h, const char *group, uint64_t index,
                            uint64_t term);
/* The term of the entry at index in g's log, or 0 when the log does not hold it. */
uint64_t avm_rgroup_term_at(const avm_rgroup *g, uint64_t index);
/* The node's storage failed: every group stops (answers nothing more). */
void avm_rhost_fail(avm_rhost *h, const char *why);

avm_rgroup *avm_rhost_group(avm_rhost *h, const char *group);
/* Calls fn for every group (in name order). */
void avm_rhost_each(avm_rhost *h, void (*fn)(void *arg, avm_rgroup *g), void *arg);
size_t avm_rhost_count(const avm_rhost *h);

typedef struct avm_rhost_stats {
    uint64_t steps, messages_out, messages_in, bad_frames, applied, snapshots_taken,
        snapshots_sent, snapshots_installed;
    uint64_t stale_dropped; /* stale AppendEntries rejections not passed to raft */
    uint64_t reanchored;    /* AppendEntries anchored again at our snapshot */
    uint64_t cut;           /* AppendEntries cut before a configuration change */
    char last_bad[256];
} avm_rhost_stats;
void avm_rhost_stats_get(const avm_rhost *h, avm_rhost_stats *out);

/* Commands (leader only; AVM_ESTATE "not the leader" otherwise). */
/* Appends a command; *index and *term name the entry: it is applied (apply with
 * this index and term) once committed, or another entry takes the index and the
 * command is lost (the caller sees apply(index) with another term). data copied;
 * AVM_ETOOBIG over AVM_RHOST_MAX_ENTRY bytes. */
int avm_rgroup_propose(avm_rgroup *g, const uint8_t *data, size_t len, uint64_t *index,
                       uint64_t *term);
/* n commands in one step, so that they travel in one AppendEntries: the i-th gets
 * index *first + i, all of term *term. The same errors as propose (AVM_EINVAL for n
 * 0 or over 65536). */
int avm_rgroup_propose_many(avm_rgroup *g, const uint8_t *const *data, const size_t *lens,
                            size_t n, uint64_t *first, uint64_t *term);
/* Membership: add a node as a voter (it must have joined, avm_rhost_join), remove
 * one. One change at a time: AVM_ESTATE while another is uncommitted. */
int avm_rgroup_add(avm_rgroup *g, const char *node, char *errmsg, size_t errlen);
int avm_rgroup_remove(avm_rgroup *g, const char *node, char *errmsg, size_t errlen);
/* Leadership transfer to a voter ("" or NULL: the most up-to-date one). */
int avm_rgroup_transfer(avm_rgroup *g, const char *node, char *errmsg, size_t errlen);

/* Inspection. */
const char *avm_rgroup_name(const avm_rgroup *g);
typedef struct avm_rgroup_member {
    char name[AVM_RHOST_NAME_MAX];
    int role;                 /* RAFT_VOTER, RAFT_STANDBY, RAFT_SPARE */
    int64_t match;            /* leader only: the member's match index; -1 otherwise */
    uint64_t last_contact_ms; /* leader only: when it last answered (0: never) */
} avm_rgroup_member;
typedef struct avm_rgroup_info {
    int state; /* RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER, RAFT_UNAVAILABLE */
    char leader[AVM_RHOST_NAME_MAX]; /* "" when unknown */
    uint64_t term, commit, applied, last_index, snapshot_index;
    bool stopped;        /* a storage or raft failure stopped it */
    bool conf_committed; /* members is the committed configuration (no change pending) */
    char why[160];
    size_t nmembers;
    avm_rgroup_member members[16];
} avm_rgroup_info;
void avm_rgroup_info_get(const avm_rgroup *g, avm_rgroup_info *out);
bool avm_rgroup_is_leader(const avm_rgroup *g);
/* Whether this replica can commit now: it is the leader and heard from a quorum
 * within the election timeout. */
bool avm_rgroup_has_quorum(const avm_rgroup *g);
/* The known leader's node name, or NULL. */
const char *avm_rgroup_leader(const avm_rgroup *g);

/* Frames: [group, raft message]. Exposed for tests and fuzzing. */
int avm_rframe_encode(const char *group, const struct raft_message *m, uint8_t **out,
                      size_t *len);
/* Decodes a frame: group name into group[AVM_RHOST_NAME_MAX]; *m with its entries
 * (one raft_malloc'd batch holding every entry's data, entries[i].batch pointing to
 * it, the array raft_malloc'd) or snapshot data and configuration, to be freed by
 * avm_rframe_free unless raft took them. AVM_EMALFORMED with errmsg for anything
 * that is not a well-formed frame (nothing allocated then). */
int avm_rframe_decode(const uint8_t *p, size_t len, char *group, struct raft_message *m,
                      char *errmsg, size_t errlen);
void avm_rframe_free(struct raft_message *m);
#endif
