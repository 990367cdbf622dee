/* The node's durable store on LMDB: one environment per node, with named databases
 * for objects (behaviour reference, metadata, version), states, behaviours (module
 * code by content hash), the pure-function registry, executions, traces, object
 * mailboxes, the format version, and the Raft groups' logs, metadata and tables.
 * It implements the interpreter's store interface
 * (platform.h), so the interpreter runs on it unchanged.
 *
 * Durability: a commit is acknowledged (apply returns with *committed true) only
 * after its LMDB write transaction is durably committed (fsync), unless the store
 * was opened with nosync (ephemeral runs and some tests).
 *
 * Errors name their cause and the environment's path: avm_lmdb_errmsg() holds the
 * message of the last failing call. A failing commit changes nothing.
 *
 * Reads: records returned by get with snap NULL and by pure_get are borrowed until
 * the next call on the store that writes objects (apply, apply_batch(_ex),
 * pure_put, stage, ctrl_restore, and a raft write that opens a round; not mailbox
 * puts); a record from get also ends after 262,144 further
 * gets that miss the decoded cache, which is bounded. Records read through a
 * snapshot (an LMDB read transaction) stay valid until that snapshot is released. */
#ifndef AVM_LMDB_STORE_H
#define AVM_LMDB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "value.h"

/* Format of the environment; checked at open. Format 2 keeps checkpoint states
 * apart from the executions' records and trace chunks in a journal; an environment
 * of format 1 is migrated by the open that finds it, in its first transaction. */
#define AVM_LMDB_FORMAT 2

typedef struct avm_lmdb avm_lmdb;

typedef struct avm_lmdb_config {
    const char *path; /* directory; created if missing */
    size_t map_size;  /* initial map size (0: 64 MiB) */
    size_t map_max;   /* the map grows on demand up to this (0: 16 GiB) */
    bool nosync;      /* no fsync: for throw-away data only */
} avm_lmdb_config;

/* Opens (creating if needed) the environment at cfg->path. Refuses an environment
 * of a newer format, or an older one it cannot migrate, with a message naming the
 * path and both format versions. The handle is the directory's only writer: it
 * holds an exclusive lock on DIR/avm.lock until avm_lmdb_close, and a second open
 * (from any process, this one included) is refused with AVM_ESTATE ("data
 * directory DIR is in use by another process"). Returns 0 or AVM_EIO /
 * AVM_EVERSION / AVM_ENOMEM / AVM_ESTATE / AVM_EINVAL (no path) with errmsg
 * filled. One thread uses a handle at a time. */
int avm_lmdb_open(const avm_lmdb_config *cfg, avm_lmdb **out, char *errmsg,
                  size_t errlen);
void avm_lmdb_close(avm_lmdb *db);

/* The store interface of this environment (owned by db). */
avm_store *avm_lmdb_store(avm_lmdb *db);

/* The message of the last failing call, naming the cause and the path. */
const char *avm_lmdb_errmsg(const avm_lmdb *db);

/* The first I/O error (EIO, other than a write cut short by a full disk) LMDB
 * reported for this environment, such as a failed fsync of the data file, with its
 * message; NULL when there was none. It stays set: after a failed fsync the kernel
 * may have dropped the dirty pages and marked them clean, so what the file holds is
 * unknown and a later fsync that succeeds proves nothing. The owner must stop
 * (avmd exits 70) and recover from the data directory when restarted. */
const char *avm_lmdb_io_failure(const avm_lmdb *db);

/* Group commit: validates and applies n write sets in order in ONE LMDB write
 * transaction (one fsync). Each write set is validated against the state left by
 * the ones before it in the batch, exactly as if they had been applied one by one;
 * committed[i] says whether write set i was applied. Returns 0 (then every
 * committed[i] is durable), or an error code: then nothing of the batch was applied
 * and no committed[i] is true. */
int avm_lmdb_apply_batch(avm_lmdb *db, const avm_writeset *const *ws, size_t n,
                         bool *committed);

/* A message taken from a mailbox, to be deleted when the taking execution's next
 * checkpoint commits (avm_lmdb_apply_batch_ex). */
typedef struct avm_lmdb_ack {
    avm_val oid; /* AVM_OBJID; borrowed for the call */
    uint64_t seq;
} avm_lmdb_ack;

/* Group commit with acknowledgements: as avm_lmdb_apply_batch, and for each write
 * set i that commits, deletes the messages acks[i][0 .. nacks[i]) from their
 * mailboxes in the same LMDB write transaction, so that a message is consumed
 * exactly when the checkpoint that follows its taking becomes durable. The acks of
 * a write set that fails validation stay in their mailboxes. acks may be NULL (no
 * acks at all; nacks is then ignored), and so may acks[i] (nacks[i] ignored).
 * Deleting a message that is not there (already acked) is not an error. An ack
 * whose oid is not an object identifier fails the whole batch up front with
 * AVM_EINVAL. Returns as avm_lmdb_apply_batch. */
int avm_lmdb_apply_batch_ex(avm_lmdb *db, const avm_writeset *const *ws,
                            const avm_lmdb_ack *const *acks, const size_t *nacks,
                            size_t n, bool *committed);

/* Mailboxes: each object id (an AVM_OBJID; the object need not exist) has a
 * durable queue of messages. A message is its number, seq, and its bytes, in the
 * caller's encoding. Numbers are per mailbox, start at 1 and increase with each
 * put; one is never handed out twice, even after the mailbox empties or the node
 * restarts. A message stays until an ack deletes it (avm_lmdb_apply_batch_ex).
 * Taking a message is not recorded here: the caller keeps the (oid, seq) it took
 * and acks it with the taking execution's next checkpoint; after a crash the
 * message is still there, and mbox_each shows it again.
 *
 * put stores a message of len bytes (copied; at most AVM_LMDB_MSG_MAX, else
 * AVM_ETOOBIG) in oid's mailbox and, when it returns 0, the message is durable and
 * *seq holds its number. Returns 0, AVM_EINVAL (oid not a non-empty object
 * identifier), AVM_ETOOBIG (the message, or an oid longer than LMDB's key limit
 * less 9 bytes) or an I/O error, with errmsg filled; on error nothing is stored
 * and *seq is 0. */
#define AVM_LMDB_MSG_MAX ((size_t)16 << 20)
int avm_lmdb_mbox_put(avm_lmdb *db, avm_val oid, const uint8_t *msg, size_t len,
                      uint64_t *seq);
/* Group put: n messages, possibly to different mailboxes (several to one mailbox
 * get increasing numbers in array order), in ONE LMDB write transaction (one
 * fsync). All or nothing: when it returns 0 every message is durable and seqs[i]
 * holds the number of message i; on error none is stored and every seqs[i] is 0.
 * Input errors (as for put) are found before anything is written. */
int avm_lmdb_mbox_put_batch(avm_lmdb *db, const avm_val *oids, const uint8_t *const *msgs,
                            const size_t *lens, size_t n, uint64_t *seqs);
/* Calls fn for every message of every mailbox (for recovery): each mailbox's
 * messages in seq order, mailboxes in the order of their ids' bytes (an id
 * containing a NUL byte may interleave with the id it extends). oid and msg are
 * borrowed for the call. fn may use the store, acks and puts included; the walk is
 * not a snapshot: a message deleted before the walk reaches it is not seen, one
 * put behind the walk's position is. fn returns 0 to go on; a nonzero value stops
 * the walk and is returned as is (keep it apart from the AVM_E* codes to tell the
 * two apart). Otherwise returns 0 or an error code with errmsg filled. */
int avm_lmdb_mbox_each(avm_lmdb *db,
                       int (*fn)(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg,
                                 size_t len),
                       void *arg);
/* *n = the number of messages waiting in oid's mailbox (0 for an id too long to
 * have one). Returns 0, AVM_EINVAL (oid not an object identifier) or an error. */
int avm_lmdb_mbox_count(avm_lmdb *db, avm_val oid, size_t *n);

/* Executions: the serialized state (avm_exec_encode) and a status byte, keyed by
 * an execution id string. put replaces. get initializes and fills *state (caller
 * frees with avm_buf_free; empty on error) and returns AVM_ENOTFOUND when there is
 * none; del returns AVM_ENOTFOUND when there is none. Ids longer than LMDB's key
 * limit (511 bytes) are refused by put with AVM_ETOOBIG. */
int avm_lmdb_exec_put(avm_lmdb *db, const char *id, uint8_t status, const uint8_t *state,
                      size_t len);
int avm_lmdb_exec_get(avm_lmdb *db, const char *id, uint8_t *status, avm_buf *state);
/* The label a checkpoint gave execution id (avm_writeset.ckpt_label), cut to n - 1
 * bytes in out; AVM_ENOTFOUND when it has none. exec_del deletes it. */
int avm_lmdb_exec_label(avm_lmdb *db, const char *id, char *out, size_t n);
int avm_lmdb_exec_del(avm_lmdb *db, const char *id);
/* Calls fn for every execution (id, status) in id order. */
int avm_lmdb_exec_each(avm_lmdb *db,
                       void (*fn)(void *arg, const char *id, uint8_t status), void *arg);

/* The pure-function registry as it is on disk, for listings: fn gets every entry
 * in name order (values borrowed for the call; by, exec and machine nil for
 * entries written before they were recorded). 0, or the store's error. */
typedef struct avm_lmdb_pureinfo {
    avm_val name; /* AVM_STR */
    uint64_t version;
    uint8_t hash[32];          /* the code's content hash */
    avm_val by, exec, machine; /* who made this version (platform.h) */
} avm_lmdb_pureinfo;
int avm_lmdb_pure_each(avm_lmdb *db, void (*fn)(void *arg, const avm_lmdb_pureinfo *p),
                       void *arg);

/* Trace logs: an execution's trace log (the bytes of its encoded events, see
 * avm_exec_encode_ex) is kept in chunks, each written in the same LMDB transaction as
 * the checkpoint that first covers it (avm_writeset.ckpt_trace*), so a checkpoint
 * need not carry the whole trace. trace_log concatenates the chunks (an empty log
 * when there are none; the caller frees *out) and refuses chunks that do not follow
 * each other; trace_clear deletes them (exec_del does too). */
int avm_lmdb_trace_log(avm_lmdb *db, const char *id, avm_buf *out);
int avm_lmdb_trace_clear(avm_lmdb *db, const char *id);

/* Staging: a round of commits in one open LMDB write transaction, durable when
 * avm_lmdb_stage_commit commits it (one fsync).
 *
 * avm_lmdb_stage validates ws against the latest state (the round's earlier staged
 * write sets included) and, when it holds, applies it into the staged transaction
 * with its checkpoint, trace chunk and acknowledged messages; *committed tells
 * which, at once. While a round is staged, every read of the store (get, with or
 * without a read view) sees the staged records, apply stages, and the other writes
 * (pure functions, the raft writes and ctrl_restore below) join the round; apply_batch
 * and the execution and mailbox writes refuse with AVM_ESTATE until the round is
 * committed. Returns 0; AVM_EINVAL/AVM_ETOOBIG for a write set no state makes valid
 * (nothing changed); any other error means the round was lost (aborted, as by a crash):
 * avm_lmdb_stage_broken() is then true for good, and every later stage or
 * stage_commit fails, since answers were given on the lost commits. The caller must
 * stop and reopen the store to recover. stage_commit returns 0 when nothing is
 * staged. */
int avm_lmdb_stage(avm_lmdb *db, const avm_writeset *ws, const avm_lmdb_ack *acks,
                   size_t nacks, bool *committed);
int avm_lmdb_stage_commit(avm_lmdb *db);
bool avm_lmdb_stage_broken(const avm_lmdb *db);
/* Whether a round is staged, and roughly how many bytes it holds. */
bool avm_lmdb_staged_any(const avm_lmdb *db);
size_t avm_lmdb_staged_bytes(const avm_lmdb *db);

/* Raft groups: the durable state of each Raft group (one per replicated
 * controller) that this node holds a replica of, named by the group's name (a
 * non-empty C string; with the 10 bytes the keys add, at most LMDB's key limit of
 * 511 bytes, else AVM_ETOOBIG): its term and vote, its log, its snapshot's
 * metadata, the index its state machine has applied, and the state machine's own
 * key/value table. consensus/raft_host.h's I/O interface is built on these.
 *
 * Writes join the staged round (see Staging): they go into the round's write
 * transaction (opening a round when none is open) and become durable with the next
 * avm_lmdb_stage_commit, atomically with everything staged in the round, write sets
 * included; so a write set staged by a group's state machine and the group's
 * applied index are durable together, or neither is. A crash, or a close without
 * stage_commit, loses the round's writes, never a part of them. Each write returns
 * 0; AVM_EINVAL / AVM_ETOOBIG for arguments no state makes valid (nothing changed,
 * the round goes on); AVM_EIO when an earlier round was lost (stage_broken); any
 * other error means the round was lost, as for avm_lmdb_stage: stage_broken() is
 * then true for good. A round opened by a write makes room in the map for twice
 * that write; a round must not outgrow the map's free space, so callers commit
 * rounds by avm_lmdb_staged_bytes, which counts these writes too.
 *
 * Reads see the staged round when one is open (its writes included), else the
 * latest committed state. */

/* One Raft log entry. Passed to save_entries, data borrowed for the call (NULL
 * allowed when len is 0); returned by raft_load, data owned by the avm_lmdb_rstate
 * (never NULL). */
typedef struct avm_lmdb_rentry {
    uint64_t term;
    uint8_t type; /* RAFT_COMMAND, RAFT_BARRIER or RAFT_CHANGE: kept as is */
    const uint8_t *data;
    size_t len;
} avm_lmdb_rentry;

/* Records the group's current term and vote (0: none), replacing the earlier. */
int avm_lmdb_raft_save_tv(avm_lmdb *db, const char *group, uint64_t term, uint64_t vote);
/* Deletes the group's entries with index >= index, then stores e[0..n) at index,
 * index + 1, ... (n may be 0: then it only truncates). index must be at least 1
 * and index + n must not overflow (AVM_EINVAL). */
int avm_lmdb_raft_save_entries(avm_lmdb *db, const char *group, uint64_t index,
                               const avm_lmdb_rentry *e, size_t n);
/* Records the group's snapshot metadata, replacing the earlier: the last index and
 * term the state machine's snapshot covers and the configuration committed as of
 * it (conf: conf_len bytes, copied; NULL allowed when conf_len is 0). Deletes no
 * entries: compaction calls delete_upto as well. */
int avm_lmdb_raft_save_snapmeta(avm_lmdb *db, const char *group, uint64_t index,
                                uint64_t term, uint64_t conf_index, const uint8_t *conf,
                                size_t conf_len);
/* Deletes the group's entries with index <= upto (none there is not an error). */
int avm_lmdb_raft_delete_upto(avm_lmdb *db, const char *group, uint64_t upto);
/* Deletes every entry of the group's log. */
int avm_lmdb_raft_delete_log(avm_lmdb *db, const char *group);
/* Records the index of the last entry the group's state machine applied. */
int avm_lmdb_raft_set_applied(avm_lmdb *db, const char *group, uint64_t index);
/* The group state machine's key/value table: put inserts or replaces key (klen
 * bytes; the group's name, 1 and klen bytes must fit LMDB's key limit, else
 * AVM_ETOOBIG) with val (vlen bytes, copied; NULL allowed when vlen is 0); del
 * deletes it (AVM_ENOTFOUND, round unharmed, when there is none). */
int avm_lmdb_raft_kv_put(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen);
int avm_lmdb_raft_kv_del(avm_lmdb *db, const char *group, const uint8_t *key,
                         size_t klen);
/* Deletes everything of the group: log, term and vote, snapshot metadata, applied
 * index and key/value table. Not the objects its controller holds. */
int avm_lmdb_raft_drop(avm_lmdb *db, const char *group);

/* Calls fn for every group that has any raft state (a meta record, a log entry or
 * a key/value entry), in name order (strcmp), after the read has ended: fn may use
 * the store, writes included. group is borrowed for the call. fn returns 0 to go
 * on; a nonzero value stops the walk and is returned as is. Otherwise returns 0 or
 * an error code with errmsg filled. */
int avm_lmdb_raft_groups(avm_lmdb *db, int (*fn)(void *arg, const char *group),
                         void *arg);

/* A group's durable state, as raft_load returns it. Everything it points to is
 * owned by it, until avm_lmdb_rstate_free. */
typedef struct avm_lmdb_rstate {
    uint64_t term, vote; /* 0, 0 when never saved */
    uint64_t applied;    /* 0 when never set */
    bool has_snap;
    uint64_t snap_index, snap_term, snap_conf_index;
    uint8_t *snap_conf; /* snap_conf_len bytes; NULL when has_snap is false */
    size_t snap_conf_len;
    /* The log: e[i] is the entry at index first_index + i. With no entries,
     * first_index is snap_index + 1 (1 without a snapshot). */
    uint64_t first_index;
    avm_lmdb_rentry *e;
    size_t n;
    uint8_t *mem; /* private: the bytes the entries point into */
} avm_lmdb_rstate;

/* Loads the group's state into *out (zeroed first; on error nothing is allocated).
 * Returns 0, AVM_ENOTFOUND when the group has no raft state at all (no meta
 * record, entry or key/value entry), AVM_EINVAL for an empty name, or AVM_EIO
 * naming the group and the index when the log is not contiguous (an entry is
 * missing between two others, or between the snapshot and the first entry) or a
 * record is corrupt, or another error with errmsg filled. */
int avm_lmdb_raft_load(avm_lmdb *db, const char *group, avm_lmdb_rstate *out);
void avm_lmdb_rstate_free(avm_lmdb_rstate *s);

/* The value of key in the group's key/value table, into *out (initialized here;
 * the caller frees it with avm_buf_free; empty on error). AVM_ENOTFOUND when there
 * is none. */
int avm_lmdb_raft_kv_get(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen,
                         avm_buf *out);

/* Calls fn for every entry of the group's key/value table whose key starts with
 * prefix (plen bytes), in key order, with the key without the group (borrowed for
 * the call); fn must not write to the store. A nonzero return of fn stops the
 * walk and is returned. Reads see the staged round when one is open. */
int avm_lmdb_raft_kv_scan(avm_lmdb *db, const char *group, const uint8_t *prefix,
                          size_t plen,
                          int (*fn)(void *arg, const uint8_t *key, size_t klen,
                                    const uint8_t *val, size_t vlen),
                          void *arg);

/* Cross-controller commits (transferObject to another controller): staged in the
 * round like avm_lmdb_stage. stage_put inserts or replaces the whole record r (its
 * behaviour's module stored if new, its version as given: the controller taking the
 * object over sets a version above every version the giving controller made);
 * AVM_EINVAL for a record without module, list state or version. stage_release
 * deletes oid's record (and state) only while its current controller is ctrl
 * (*released says whether it did): the controller that gave the object away lets
 * it go, unless the taker's record is already there (both share this store). Other
 * errors mean the round was lost, as for avm_lmdb_stage. */
int avm_lmdb_stage_put(avm_lmdb *db, const avm_objrec *r);
int avm_lmdb_stage_release(avm_lmdb *db, avm_val oid, avm_val ctrl, bool *released);

/* Controller snapshots: the state machine of a controller's Raft group, as a
 * lagging replica installs it. ctrl is an AVM_CTRLID whose name is the group's
 * (else AVM_EINVAL).
 *
 * ctrl_dump appends to *out (initialized here; the caller frees it; empty on
 * error) a dump of every object whose current controller is ctrl (as the reads
 * see it: a staged round included) and of the group's key/value table. The dump
 * holds everything needed to recreate the objects on a node that never saw them:
 * each object's id, behaviour (name, function index, and its module's canonical
 * encoding, once per module), metadata, state and version. Format: the 8 bytes
 * "AVMCTRL\0", a 4-byte big-endian format version (1), a msgpack body [group,
 * ctrl, [module encoding bin...], [[oid, behaviour name, module index or nil, fn,
 * machine, creating, current, version, state]...] in oid byte order, [[key bin,
 * value bin]...] in key order], and the SHA-256 of everything before it. Reading
 * walks every object of the environment: its cost grows with the whole store.
 * Returns 0 or an error code with errmsg filled.
 *
 * ctrl_restore replaces ctrl's objects and the group's key/value table with a
 * dump's, in the staged round (see Raft groups). It first decodes and verifies all
 * of data: the checksum, the format, every module (decoded and verified), every
 * record (ids ordered and unique, each object's current controller ctrl, versions
 * from 1), that it is a dump of this group and ctrl. Refused then, with nothing
 * changed and the round unharmed: AVM_EMALFORMED (anything malformed, truncated or
 * corrupt), AVM_EVERSION (a dump format or a module's bytecode version this build
 * does not read), AVM_EINVAL (a dump of another group), AVM_ENOMEM, each with
 * errmsg naming the cause. Then it deletes every object whose current controller
 * is ctrl and every key/value entry of the group, and inserts the dump's objects
 * (with their dumped versions; an object of the dump replaces any object with its
 * id, whatever that one's controller) and key/value entries; modules missing from
 * the store are stored. Other objects, mailboxes and the group's raft state are
 * untouched. Once the round commits, reads never return a record of a removed or
 * replaced object; before, reads see the staged objects. */
int avm_lmdb_ctrl_dump(avm_lmdb *db, const char *group, avm_val ctrl, avm_buf *out);
/* Staged: deletes every object whose current controller is ctrl (a replica that
 * left the group). Errors as ctrl_restore's. */
int avm_lmdb_ctrl_clear(avm_lmdb *db, const char *group, avm_val ctrl);
int avm_lmdb_ctrl_restore(avm_lmdb *db, const char *group, avm_val ctrl,
                          const uint8_t *data, size_t len);

/* Statistics for tools and tests: entries of the objects, behaviours, pure and
 * executions databases, and mailbox = the messages waiting in all mailboxes; the
 * current map size and the bytes of it in use; since open, commits = write sets
 * committed by apply and apply_batch(_ex), and batches = their LMDB write
 * transactions. */
typedef struct avm_lmdb_stats {
    size_t objects, modules, pure, executions, mailbox;
    size_t map_size, map_used;
    uint64_t commits, batches;
} avm_lmdb_stats;
int avm_lmdb_stats_get(avm_lmdb *db, avm_lmdb_stats *st);

#endif
