/* The node's durable store on LMDB: one environment per node, with named databases
 * for objects (behaviour reference, metadata, version), states, behaviours (module
 * code by content hash), the pure-function registry, executions, traces, object
 * mailboxes and the format version. It implements the interpreter's store interface
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
 * pure_put; not mailbox puts); a record from get also ends after 262,144 further
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
 * (pure functions) join the round; apply_batch and the execution and mailbox
 * writes refuse with AVM_ESTATE until the round is committed.
 * Returns 0; AVM_EINVAL/AVM_ETOOBIG for a write set no state makes valid (nothing
 * changed); any other error means the round was lost (aborted, as by a crash):
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
