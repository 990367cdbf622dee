/* The node's durable store on LMDB: one environment per node, with named databases
 * for objects (behaviour reference, metadata, version), states, behaviours (module
 * code by content hash), the pure-function registry, executions, traces and the
 * format version. It implements the interpreter's store interface (platform.h), so
 * the interpreter runs on it unchanged.
 *
 * Durability: a commit is acknowledged (apply returns with *committed true) only
 * after its LMDB write transaction is durably committed (fsync), unless the store
 * was opened with nosync (ephemeral runs and some tests).
 *
 * Errors name their cause and the environment's path: avm_lmdb_errmsg() holds the
 * message of the last failing call. A failing commit changes nothing.
 *
 * Reads: records returned by get with snap NULL and by pure_get are borrowed until
 * the next call on the store that writes (apply, apply_batch, pure_put); a record
 * from get also ends after 262,144 further gets that miss the decoded cache, which
 * is bounded. Records read through a snapshot (an LMDB read transaction) stay
 * valid until that snapshot is released. */
#ifndef AVM_LMDB_STORE_H
#define AVM_LMDB_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "platform.h"
#include "value.h"

/* Format of the environment; checked at open. */
#define AVM_LMDB_FORMAT 1

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

/* Executions: the serialized state (avm_exec_encode) and a status byte, keyed by
 * an execution id string. put replaces. get initializes and fills *state (caller
 * frees with avm_buf_free; empty on error) and returns AVM_ENOTFOUND when there is
 * none; del returns AVM_ENOTFOUND when there is none. Ids longer than LMDB's key
 * limit (511 bytes) are refused by put with AVM_ETOOBIG. */
int avm_lmdb_exec_put(avm_lmdb *db, const char *id, uint8_t status, const uint8_t *state,
                      size_t len);
int avm_lmdb_exec_get(avm_lmdb *db, const char *id, uint8_t *status, avm_buf *state);
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

/* Statistics for tools and tests: entries of the objects, behaviours, pure and
 * executions databases; the current map size and the bytes of it in use; since
 * open, commits = write sets committed by apply and apply_batch, and batches =
 * their LMDB write transactions. */
typedef struct avm_lmdb_stats {
    size_t objects, modules, pure, executions;
    size_t map_size, map_used;
    uint64_t commits, batches;
} avm_lmdb_stats;
int avm_lmdb_stats_get(avm_lmdb *db, avm_lmdb_stats *st);

#endif
