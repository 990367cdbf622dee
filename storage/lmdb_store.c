/* The node's durable store on LMDB (lmdb_store.h).
 *
 * Layout: one environment per data directory, opened MDB_NOTLS so that read
 * transactions (snapshots) are handles rather than thread state, with these named
 * databases (values are msgpack, codec.h):
 *
 *   meta        "format" -> uint (AVM_LMDB_FORMAT); "seq" -> uint, the highest
 *               identifier sequence number ever reserved
 *   objects     oid bytes -> [behaviour-name, module-hash bin32 | nil, fn index,
 *               machine, creating, current, version]
 *   states      oid bytes -> the state value (a list)
 *   behaviours  module hash (32 bytes) -> canonical module encoding (module.h)
 *   pure        name bytes -> [code module hash bin32, version, by, exec, machine]
 *               (who made this version: the principal (str), the execution id
 *               (str), the machine (machine id), each nil when unknown; records
 *               of two elements, written before these, still read)
 *   execs       id bytes -> a fixed-size binary record (XREC_SIZE): status, where
 *               the latest checkpoint's state is (blob, offset, length), and the
 *               trace log's last chunk and length
 *   checkpoints 8-byte big-endian blob number -> the checkpoint states written by
 *               one write transaction, each as an entry (id, state)
 *   trace_chunks 8-byte big-endian chunk number -> one chunk of a trace log, with
 *               its id, its byte offset in the log and the number of the log's
 *               previous chunk
 *   mailboxes   oid bytes, 0x00, 8-byte big-endian seq -> message bytes (the
 *               caller's encoding)
 *   exec_labels id bytes -> the execution's label (its program's name), when given
 *   mailbox_seq oid bytes -> uint, the last message number handed out for oid
 *               (kept when the mailbox empties, so that numbers are never reused)
 *   raft_log    group name, 0x00, 8-byte big-endian index -> one Raft log entry:
 *               8-byte big-endian term, type byte, the entry's bytes
 *   raft_meta   group name, 0x00, a tag byte -> 'v': term and vote (8 bytes
 *               big-endian each); 'a': the applied index (8 bytes); 's': the
 *               snapshot's index, term and configuration index (8 bytes each) and
 *               the configuration's bytes
 *   raft_kv     group name, 0x00, key bytes -> value bytes (a group state machine's
 *               own table)
 *
 * A group name has no NUL byte, so a group's keys are adjacent in each raft
 * database, and a cursor walks its log in index order.
 *
 * This process is the only writer: a lock file (flock on DIR/avm.lock) keeps a
 * second process (or a second open in this one) out. That is what lets the
 * decoded caches below stay coherent without re-reading LMDB: every change to
 * the environment goes through this handle, and each cache is updated only after
 * the LMDB commit that made the change durable returned 0.
 *
 * Format 1 kept each state in its execution's record and each trace chunk under
 * (id, 0x00, offset); open migrates it (migrate_v1).
 *
 * One thread uses a handle (STYLE.md 9); nothing here locks. */
#include "lmdb_store.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "avm_err.h"
#include "codec.h"
#include "module.h"
#include "sha256.h"

#define DEFAULT_MAP_SIZE ((size_t)64 << 20)
#define DEFAULT_MAP_MAX ((size_t)16 << 30)
/* Identifiers are reserved durably this many at a time (next_seq). */
#define SEQ_BLOCK 1024
/* The shared record cache is dropped when it holds more records than this at a
 * mutating call. A run of reads alone retires it when it reaches four times this
 * (see cache_retire). */
#ifndef AVM_LMDB_CACHE_MAX /* tests build a copy with a tiny cache */
#define AVM_LMDB_CACHE_MAX 65536
#endif
#define CACHE_MAX AVM_LMDB_CACHE_MAX
/* Reset read transactions kept for reuse by snapshot(). */
#define TXN_POOL 8
#define MAX_DBS 24
#define MAX_READERS 1024

/* ---- A hash table keyed by values ------------------------------------------ */

enum { SLOT_EMPTY = 0, SLOT_FULL = 1, SLOT_TOMB = 2 };

typedef struct tslot {
    avm_val key; /* a reference owned by the table */
    void *val;
    uint8_t st;
} tslot;

typedef struct table {
    tslot *s;
    size_t cap, count, used; /* used counts full and tombstone slots */
} table;

static tslot *tab_find(const table *t, avm_val key)
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = avm_val_hash(key) & mask;; i = (i + 1) & mask) {
        tslot *e = &t->s[i];
        if (e->st == SLOT_EMPTY)
            return NULL;
        if (e->st == SLOT_FULL && avm_val_eq(e->key, key))
            return e;
    }
}

/* Makes room for `extra` insertions, so that tab_put cannot fail afterwards. */
static int tab_reserve(table *t, size_t extra)
{
    if ((t->used + extra) * 4 < t->cap * 3)
        return 0;
    size_t ncap = 16;
    while ((t->count + extra) * 2 >= ncap)
        ncap *= 2;
    tslot *ns = calloc(ncap, sizeof(*ns));
    if (ns == NULL)
        return AVM_ENOMEM;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->s[i].st != SLOT_FULL)
            continue;
        size_t j = avm_val_hash(t->s[i].key) & (ncap - 1);
        while (ns[j].st != SLOT_EMPTY)
            j = (j + 1) & (ncap - 1);
        ns[j] = t->s[i];
    }
    free(t->s);
    t->s = ns;
    t->cap = ncap;
    t->used = t->count;
    return 0;
}

/* Inserts or replaces; returns the replaced value (or NULL). Needs a reservation. */
static void *tab_put(table *t, avm_val key, void *val)
{
    tslot *e = tab_find(t, key);
    if (e != NULL) {
        void *old = e->val;
        e->val = val;
        return old;
    }
    size_t mask = t->cap - 1;
    size_t i = avm_val_hash(key) & mask;
    while (t->s[i].st == SLOT_FULL)
        i = (i + 1) & mask;
    if (t->s[i].st == SLOT_EMPTY)
        t->used++;
    t->s[i].st = SLOT_FULL;
    t->s[i].key = key;
    avm_val_retain(key);
    t->s[i].val = val;
    t->count++;
    return NULL;
}

static void *tab_del(table *t, avm_val key)
{
    tslot *e = tab_find(t, key);
    if (e == NULL)
        return NULL;
    void *old = e->val;
    avm_val_release(e->key);
    e->key = avm_nil();
    e->val = NULL;
    e->st = SLOT_TOMB;
    t->count--;
    return old;
}

/* Empties the table, handing every value to release (if not NULL). */
static void tab_clear(table *t, void (*release)(void *))
{
    for (size_t i = 0; i < t->cap; i++) {
        if (t->s[i].st == SLOT_FULL) {
            avm_val_release(t->s[i].key);
            if (release != NULL)
                release(t->s[i].val);
        }
    }
    free(t->s);
    memset(t, 0, sizeof(*t));
}

/* ---- Decoded records -------------------------------------------------------- */

/* A decoded object record, shared by the cache, batches and snapshots. */
typedef struct centry {
    uint32_t rc;
    /* An upper bound on the generation (db->gen) of the commit that last changed
     * this object: a snapshot taken at generation >= gen sees this very record. */
    uint64_t gen;
    avm_objrec r;
} centry;

static centry *centry_new(void)
{
    centry *c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->rc = 1;
    return c;
}

static void centry_release(centry *c)
{
    if (c == NULL || --c->rc > 0)
        return;
    avm_val_release(c->r.oid);
    avm_val_release(c->r.beh.name);
    if (c->r.beh.mod != NULL)
        avm_module_release(c->r.beh.mod);
    avm_val_release(c->r.meta.machine);
    avm_val_release(c->r.meta.creating);
    avm_val_release(c->r.meta.current);
    avm_val_release(c->r.state);
    free(c);
}

static void centry_release_v(void *p)
{
    centry_release(p);
}

/* A private copy of c (rc 1) sharing its values. */
static centry *centry_copy(const centry *c)
{
    centry *n = centry_new();
    if (n == NULL)
        return NULL;
    n->gen = c->gen;
    n->r = c->r;
    avm_val_retain(n->r.oid);
    avm_val_retain(n->r.beh.name);
    if (n->r.beh.mod != NULL)
        avm_module_retain(n->r.beh.mod);
    avm_val_retain(n->r.meta.machine);
    avm_val_retain(n->r.meta.creating);
    avm_val_retain(n->r.meta.current);
    avm_val_retain(n->r.state);
    return n;
}

/* A pure-registry entry. */
typedef struct pentry {
    avm_purefn f;
} pentry;

static void pentry_release_v(void *p)
{
    pentry *e = p;
    if (e == NULL)
        return;
    avm_val_release(e->f.name);
    avm_module_release(e->f.code);
    avm_val_release(e->f.by);
    avm_val_release(e->f.exec);
    avm_val_release(e->f.machine);
    free(e);
}

/* A pure-registry record: [hash, version] or [hash, version, by, exec, machine].
 * *by, *exec, *machine are owned (nil for a two-element record). */
static int pure_rec_decode(const void *data, size_t len, const uint8_t **hash,
                           uint64_t *version, avm_val *by, avm_val *exec,
                           avm_val *machine)
{
    *by = *exec = *machine = avm_nil();
    avm_mp_reader r;
    avm_mp_reader_init(&r, data, len, AVM_DECODE_DEFAULT_MAX);
    uint32_t n, hlen;
    int rv = avm_mp_get_array(&r, &n);
    if (rv == 0 && n != 2 && n != 5)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_bin(&r, hash, &hlen);
    if (rv == 0 && hlen != 32)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_uint(&r, version);
    if (rv == 0 && n == 5) {
        rv = avm_mp_get_val(&r, by);
        if (rv == 0)
            rv = avm_mp_get_val(&r, exec);
        if (rv == 0)
            rv = avm_mp_get_val(&r, machine);
        if (rv == 0 && ((by->kind != AVM_STR && by->kind != AVM_NIL) ||
                        (exec->kind != AVM_STR && exec->kind != AVM_NIL) ||
                        (machine->kind != AVM_MACHID && machine->kind != AVM_NIL)))
            rv = AVM_EMALFORMED;
    }
    if (rv == 0 && r.p != r.end)
        rv = AVM_EMALFORMED;
    if (rv != 0) {
        avm_val_release(*by);
        avm_val_release(*exec);
        avm_val_release(*machine);
        *by = *exec = *machine = avm_nil();
    }
    return rv;
}

/* Modules by content hash: decoded (and verified) once per hash. Never shrinks;
 * there is one entry per distinct program the node has seen. */
typedef struct modent {
    avm_module *m; /* NULL: empty slot */
    bool durable;  /* known to be in the behaviours database */
} modent;

typedef struct modtab {
    modent *s;
    size_t cap, count;
} modtab;

static size_t hash_index(const uint8_t h[32], size_t mask)
{
    uint64_t x;
    memcpy(&x, h, sizeof(x));
    return (size_t)x & mask;
}

static modent *mod_find(const modtab *t, const uint8_t h[32])
{
    if (t->cap == 0)
        return NULL;
    size_t mask = t->cap - 1;
    for (size_t i = hash_index(h, mask);; i = (i + 1) & mask) {
        if (t->s[i].m == NULL)
            return NULL;
        if (memcmp(t->s[i].m->hash, h, 32) == 0)
            return &t->s[i];
    }
}

/* Adds m (retained) unless its hash is present; returns the entry of the hash. */
static int mod_add(modtab *t, avm_module *m, modent **out)
{
    modent *e = mod_find(t, m->hash);
    if (e != NULL) {
        *out = e;
        return 0;
    }
    if ((t->count + 1) * 2 >= t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 16;
        modent *ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return AVM_ENOMEM;
        for (size_t i = 0; i < t->cap; i++) {
            if (t->s[i].m == NULL)
                continue;
            size_t j = hash_index(t->s[i].m->hash, ncap - 1);
            while (ns[j].m != NULL)
                j = (j + 1) & (ncap - 1);
            ns[j] = t->s[i];
        }
        free(t->s);
        t->s = ns;
        t->cap = ncap;
    }
    size_t mask = t->cap - 1;
    size_t i = hash_index(m->hash, mask);
    while (t->s[i].m != NULL)
        i = (i + 1) & mask;
    avm_module_retain(m);
    t->s[i].m = m;
    t->s[i].durable = false;
    t->count++;
    *out = &t->s[i];
    return 0;
}

/* ---- The handle ------------------------------------------------------------- */

typedef struct snap {
    MDB_txn *txn;
    uint64_t gen; /* db->gen when the snapshot was taken */
    table recs;   /* oid -> centry*, or &neg for "no such object" */
    struct snap *prev, *next;
} snap;

static char neg; /* the value of a negative snapshot entry */

/* A blob of checkpoint states being built by a write transaction. */
typedef struct newblob {
    avm_buf buf; /* its entries so far */
    uint64_t no; /* its number; 0: none started */
} newblob;

/* The checkpoint writes of the write transaction under way (see "Execution
 * records, checkpoint blobs and trace chunks"). */
typedef struct ckwriter {
    uint64_t blob_next, chunk_next; /* the numbers it hands out next */
    newblob hot;                    /* the states of its checkpoints */
    newblob cold;                   /* live entries moved out of sparse blobs */
    uint64_t *touched;              /* blobs that lost entries in it */
    size_t ntouched, captouched;
    struct xrec *locs; /* where a batch's states went, by write set */
    size_t caplocs;
    avm_buf tmp; /* a blob being compacted, copied out of the map */
} ckwriter;

struct avm_lmdb {
    avm_store base; /* first: the store interface casts back to the handle */
    MDB_env *env;
    MDB_dbi meta, objects, states, behaviours, pure, execs, checkpoints, chunks, labels;
    MDB_dbi mailboxes, mbox_seq;
    MDB_dbi raft_log, raft_meta, raft_kv;
    /* A reset read transaction, renewed for each read outside a snapshot. */
    MDB_txn *rtxn;
    MDB_txn *pool[TXN_POOL];
    size_t npool;
    char *path;
    int lockfd;
    size_t map_max;
    size_t maxkey;
    table cache; /* oid -> centry*: latest committed records */
    table grave; /* a retired cache, freed at the next mutating call */
    table pures; /* name -> pentry* */
    modtab mods;
    uint64_t gen; /* number of committed object-changing transactions */
    /* Identifiers: seq is the last one handed out, seq_limit the reservation;
     * seq_dirty says the reservation is not durable yet (every write transaction
     * then carries it, so an identifier that reaches the disk is always below the
     * durable reservation). */
    uint64_t seq, seq_limit;
    bool seq_dirty;
    uint64_t commits, batches;
    snap *snaps; /* open snapshots */
    /* Staging (avm_lmdb_stage): the open write transaction of a round, its overlay
     * of changed records, and what it holds. broken: a staged round was lost. */
    MDB_txn *stxn;
    struct batch *stage;
    size_t staged_bytes, staged_n;
    bool stage_broken;
    /* The next blob and chunk numbers of committed transactions; what the handle
     * knows of blobs (number -> blobent*), as of the latest commit or, during a
     * write transaction, as of that transaction; and that transaction's writes. */
    uint64_t blob_next, chunk_next;
    table blobs;
    ckwriter ck;
    avm_buf scratch;
    char errmsg[512];
    char iofail[512]; /* the first EIO (avm_lmdb_io_failure), "" if none */
};

static int failf(avm_lmdb *db, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int failf(avm_lmdb *db, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(db->errmsg, sizeof(db->errmsg), fmt, ap);
    va_end(ap);
    return code;
}

/* What an LMDB or errno code means for the user. */
static const char *cause_of(int rc)
{
    switch (rc) {
    case ENOSPC:
        return "disk full";
    case EDQUOT:
        return "disk quota exceeded";
    case EACCES:
    case EPERM:
        return "permission denied";
    case EROFS:
        return "read-only file system";
    case EIO:
        return "I/O error";
    case ENOTDIR:
        return "not a directory";
    case ENOENT:
        return "no such file or directory";
    case ENOMEM:
        return "out of memory";
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
        return "corrupt data file";
    case MDB_INVALID:
        return "corrupt data file, or not an LMDB environment";
    case MDB_VERSION_MISMATCH:
        return "the data file was written by an incompatible LMDB version";
    case MDB_MAP_FULL:
        return "map full";
    case MDB_PANIC:
        return "an earlier write failed fatally; reopen the data directory";
    case MDB_READERS_FULL:
        return "too many open read transactions";
    default:
        return "storage error";
    }
}

static int code_of(int rc)
{
    if (rc == ENOMEM)
        return AVM_ENOMEM;
    if (rc == MDB_VERSION_MISMATCH)
        return AVM_EVERSION;
    return AVM_EIO;
}

static void fmt_lmdb(char *buf, size_t len, int rc, const char *what, const char *path)
{
    snprintf(buf, len, "%s %s: %s (%s)", what, path, cause_of(rc), mdb_strerror(rc));
}

static int lmdb_fail(avm_lmdb *db, int rc, const char *what)
{
    /* LMDB reports a short write as EIO; on a full file system that is what a
     * write of the last free blocks returns, so look before blaming the device. */
    struct statvfs vfs;
    if (rc == EIO && statvfs(db->path, &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < 64 * 1024) {
        snprintf(db->errmsg, sizeof(db->errmsg),
                 "%s %s: disk full (a write came up short with %llu bytes left free)",
                 what, db->path, (unsigned long long)vfs.f_bavail * vfs.f_frsize);
        return AVM_EIO;
    }
    fmt_lmdb(db->errmsg, sizeof(db->errmsg), rc, what, db->path);
    if (rc == EIO && db->iofail[0] == '\0')
        memcpy(db->iofail, db->errmsg, sizeof(db->iofail));
    return code_of(rc);
}

static bool key_ok(const avm_lmdb *db, avm_val v, avm_kind kind)
{
    return v.kind == kind && v.u.s->len > 0 && v.u.s->len <= db->maxkey;
}

static MDB_val key_of(avm_val v)
{
    MDB_val k = {.mv_size = v.u.s->len, .mv_data = v.u.s->data};
    return k;
}

static avm_buf *scratch(avm_lmdb *db)
{
    db->scratch.len = 0;
    db->scratch.err = 0;
    return &db->scratch;
}

/* At a mutating call, where every borrowed record may be invalidated. */
static void cache_trim(avm_lmdb *db)
{
    tab_clear(&db->grave, centry_release_v);
    if (db->cache.count > CACHE_MAX)
        tab_clear(&db->cache, centry_release_v);
}

/* Between mutating calls (reads only), records handed out must stay valid, so a
 * full cache is retired rather than freed: it lives on until the next mutating
 * call or the next retirement, 4 * CACHE_MAX reads later. */
static void cache_retire(avm_lmdb *db)
{
    if (db->cache.count < 4 * CACHE_MAX)
        return;
    tab_clear(&db->grave, centry_release_v);
    db->grave = db->cache;
    memset(&db->cache, 0, sizeof(db->cache));
}

/* Renews the shared read transaction; the caller resets it when done. */
static int rtxn_begin(avm_lmdb *db)
{
    int rc = mdb_txn_renew(db->rtxn);
    return rc == 0 ? 0 : lmdb_fail(db, rc, "reading from");
}

/* ---- Write transactions ----------------------------------------------------- */

typedef struct wtx_ops {
    /* Does the work. Returns 0 or an AVM code with errmsg set; a failure that
     * came from LMDB also stores the LMDB code in *mrc. */
    int (*body)(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc);
    /* After the durable commit. Cannot fail (the body reserved what it needs). */
    void (*done)(avm_lmdb *db, void *arg);
    /* After an abort, before a retry or the return. */
    void (*undo)(avm_lmdb *db, void *arg);
} wtx_ops;

static int put_uint_k(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, uint64_t v, int *mrc)
{
    uint8_t buf[16];
    avm_buf b = {.data = (char *)buf, .len = 0, .cap = sizeof(buf), .err = 0};
    avm_mp_put_uint(&b, v); /* at most 9 bytes: never grows the buffer */
    MDB_val d = {.mv_size = b.len, .mv_data = buf};
    *mrc = mdb_put(txn, dbi, k, &d, 0);
    return *mrc == 0 ? 0 : AVM_EIO;
}

static int put_uint(MDB_txn *txn, MDB_dbi dbi, const char *key, uint64_t v, int *mrc)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    return put_uint_k(txn, dbi, &k, v, mrc);
}

/* Decodes a stored uint that must fill the value. */
static int get_uint_v(const MDB_val *d, uint64_t *v)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, d->mv_data, d->mv_size, 64);
    int rv = avm_mp_get_uint(&r, v);
    return rv != 0 ? rv : r.p != r.end ? AVM_EMALFORMED : 0;
}

/* Doubles the map, up to map_max. Called with no write transaction open. */
static int grow_map(avm_lmdb *db)
{
    MDB_envinfo info;
    mdb_env_info(db->env, &info);
    size_t cur = info.me_mapsize;
    if (cur >= db->map_max)
        return failf(db, AVM_EIO, "map full: %s reached its limit of %zu bytes", db->path,
                     db->map_max);
    size_t next = cur > db->map_max / 2 ? db->map_max : cur * 2;
    /* LMDB asks that no transaction be active in the process. The shared read
     * transaction is reset. Open snapshots are live read transactions: LMDB 0.9
     * addresses their pages by number through the environment's current map on
     * every access and they hold no cursors or data pointers across calls here,
     * so they survive the remap (tests/storage: snapshot_survives_map_growth). */
    int rc = mdb_env_set_mapsize(db->env, next);
    if (rc != 0)
        return lmdb_fail(db, rc, "growing the map of");
    return 0;
}

/* Runs ops->body in one LMDB write transaction and commits it durably; on
 * MDB_MAP_FULL grows the map and runs the whole transaction again. */
static void stage_break(avm_lmdb *db);
static const wtx_ops pure_ops;

static int write_txn(avm_lmdb *db, const char *what, const wtx_ops *ops, void *arg)
{
    if (db->stxn != NULL) {
        /* A round is staged. A pure function registered by a running program
         * joins it (durable with it; a failure may have changed the staged
         * transaction, so the round is lost); other writes wait for the round. */
        if (ops != &pure_ops)
            return failf(db, AVM_ESTATE, "%s %s: a round of commits is staged", what,
                         db->path);
        int mrc = 0;
        int rv = ops->body(db, db->stxn, arg, &mrc);
        if (rv != 0) {
            if (mrc != 0)
                lmdb_fail(db, mrc, what);
            stage_break(db);
            return rv;
        }
        if (ops->done != NULL)
            ops->done(db, arg);
        return 0;
    }
    for (;;) {
        MDB_txn *txn;
        int mrc = mdb_txn_begin(db->env, NULL, 0, &txn);
        if (mrc != 0)
            return lmdb_fail(db, mrc, what);
        int rv = ops->body(db, txn, arg, &mrc);
        if (rv == 0 && db->seq_dirty)
            rv = put_uint(txn, db->meta, "seq", db->seq_limit, &mrc);
        if (rv == 0) {
            mrc = mdb_txn_commit(txn); /* frees txn either way */
            if (mrc == 0) {
                db->seq_dirty = false;
                if (ops->done != NULL)
                    ops->done(db, arg);
                return 0;
            }
            rv = AVM_EIO;
        } else {
            mdb_txn_abort(txn);
        }
        if (ops->undo != NULL)
            ops->undo(db, arg);
        if (mrc == MDB_MAP_FULL) {
            if ((rv = grow_map(db)) != 0)
                return rv;
            continue;
        }
        return mrc != 0 ? lmdb_fail(db, mrc, what) : rv;
    }
}

/* ---- Record encoding -------------------------------------------------------- */

/* Decodes a stored value (a state, a trace event) that must fill the bytes. The
 * codec's default memory bound is for input from outside; what this store wrote
 * itself must read back whatever its size, or a commit could lose data. */
static int decode_stored(const MDB_val *v, avm_val *out)
{
    size_t used;
    int rv = avm_val_decode(v->mv_data, v->mv_size, (size_t)1 << 40, out, &used);
    if (rv == 0 && used != v->mv_size) {
        avm_val_release(*out);
        rv = AVM_EMALFORMED;
    }
    return rv;
}

static int rec_encode(avm_buf *b, const avm_objrec *r)
{
    avm_mp_put_array(b, 7);
    int rv = avm_val_encode(b, r->beh.name);
    if (r->beh.mod != NULL)
        avm_mp_put_bin(b, r->beh.mod->hash, 32);
    else
        avm_mp_put_nil(b);
    avm_mp_put_uint(b, r->beh.fn);
    if (rv == 0)
        rv = avm_val_encode(b, r->meta.machine);
    if (rv == 0)
        rv = avm_val_encode(b, r->meta.creating);
    if (rv == 0)
        rv = avm_val_encode(b, r->meta.current);
    avm_mp_put_uint(b, r->version);
    return rv != 0 ? rv : b->err;
}

static int corrupt(avm_lmdb *db, const char *what, avm_val key, int rv)
{
    return failf(db, AVM_EIO, "corrupt %s \"%.*s\" in %s: %s", what,
                 (int)(key.u.s->len > 200 ? 200 : key.u.s->len), key.u.s->data, db->path,
                 avm_strerror(rv));
}

/* The module of this hash: from the module cache, or decoded (and verified) from
 * the behaviours database in txn. Borrowed from the cache. */
static int module_load(avm_lmdb *db, MDB_txn *txn, const uint8_t hash[32],
                       avm_module **out)
{
    modent *e = mod_find(&db->mods, hash);
    if (e != NULL) {
        *out = e->m;
        return 0;
    }
    char hex[65];
    avm_hex32(hash, hex);
    MDB_val k = {.mv_size = 32, .mv_data = (void *)hash}, v;
    int rc = mdb_get(txn, db->behaviours, &k, &v);
    if (rc == MDB_NOTFOUND)
        return failf(db, AVM_EIO,
                     "corrupt data in %s: module %s is referenced but missing", db->path,
                     hex);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    avm_module *m;
    char msg[256] = "";
    int rv = avm_module_decode(v.mv_data, v.mv_size, &m, msg, sizeof(msg));
    if (rv == AVM_ENOMEM)
        return failf(db, rv, "decoding module %s of %s: out of memory", hex, db->path);
    if (rv != 0)
        return failf(db, AVM_EIO, "corrupt module %s in %s: %s", hex, db->path, msg);
    if (memcmp(m->hash, hash, 32) != 0) {
        avm_module_release(m);
        return failf(db, AVM_EIO, "corrupt module %s in %s: its content has another hash",
                     hex, db->path);
    }
    rv = mod_add(&db->mods, m, &e);
    avm_module_release(m);
    if (rv != 0)
        return failf(db, rv, "out of memory");
    e->durable = true;
    *out = e->m;
    return 0;
}

/* Reads and decodes the record of oid (a valid key) in txn. Returns 0 with a new
 * entry (rc 1, gen 0), AVM_ENOTFOUND, or an error with errmsg set. */
static int rec_load(avm_lmdb *db, MDB_txn *txn, avm_val oid, centry **out)
{
    MDB_val k = key_of(oid), v, sv;
    int rc = mdb_get(txn, db->objects, &k, &v);
    if (rc == MDB_NOTFOUND)
        return AVM_ENOTFOUND;
    if (rc == 0)
        rc = mdb_get(txn, db->states, &k, &sv);
    if (rc == MDB_NOTFOUND)
        return corrupt(db, "object (no state)", oid, AVM_ENOTFOUND);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");

    centry *c = centry_new();
    if (c == NULL)
        return failf(db, AVM_ENOMEM, "out of memory");
    c->r.oid = oid;
    avm_val_retain(oid);
    avm_mp_reader r;
    avm_mp_reader_init(&r, v.mv_data, v.mv_size, AVM_DECODE_DEFAULT_MAX);
    uint32_t n, hlen;
    const uint8_t *hash;
    uint64_t fn;
    int rv = avm_mp_get_array(&r, &n);
    if (rv == 0 && n != 7)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_val(&r, &c->r.beh.name);
    if (rv == 0 && c->r.beh.name.kind != AVM_STR)
        rv = AVM_EMALFORMED;
    if (rv == 0) {
        if (avm_mp_peek_nil(&r)) {
            rv = avm_mp_get_nil(&r);
        } else {
            rv = avm_mp_get_bin(&r, &hash, &hlen);
            if (rv == 0 && hlen != 32)
                rv = AVM_EMALFORMED;
            if (rv == 0) {
                avm_module *m;
                if ((rv = module_load(db, txn, hash, &m)) != 0)
                    goto fail_msg;
                avm_module_retain(m);
                c->r.beh.mod = m;
            }
        }
    }
    if (rv == 0)
        rv = avm_mp_get_uint(&r, &fn);
    if (rv == 0 && (c->r.beh.mod != NULL ? fn >= c->r.beh.mod->nfuncs : fn > UINT32_MAX))
        rv = AVM_EMALFORMED;
    if (rv == 0) {
        c->r.beh.fn = (uint32_t)fn;
        rv = avm_mp_get_val(&r, &c->r.meta.machine);
    }
    if (rv == 0)
        rv = avm_mp_get_val(&r, &c->r.meta.creating);
    if (rv == 0)
        rv = avm_mp_get_val(&r, &c->r.meta.current);
    if (rv == 0)
        rv = avm_mp_get_uint(&r, &c->r.version);
    if (rv == 0 && r.p != r.end)
        rv = AVM_EMALFORMED;
    if (rv != 0) {
        rv = rv == AVM_ENOMEM ? failf(db, rv, "out of memory")
                              : corrupt(db, "object record", oid, rv);
        goto fail_msg;
    }
    rv = decode_stored(&sv, &c->r.state);
    if (rv != 0) {
        c->r.state = avm_nil();
        rv = rv == AVM_ENOMEM ? failf(db, rv, "out of memory")
                              : corrupt(db, "object state", oid, rv);
        goto fail_msg;
    }
    *out = c;
    return 0;

fail_msg:
    centry_release(c);
    return rv;
}

/* ---- The store interface: reads --------------------------------------------- */

static const avm_objrec *snap_get(avm_lmdb *db, snap *sn, avm_val oid)
{
    tslot *e = tab_find(&sn->recs, oid);
    if (e != NULL)
        return e->val == &neg ? NULL : &((centry *)e->val)->r;
    if (tab_reserve(&sn->recs, 1) != 0) {
        failf(db, AVM_ENOMEM, "out of memory");
        return NULL;
    }
    /* The shared record serves the snapshot when no commit since the snapshot
     * changed the object. */
    tslot *s = tab_find(&db->cache, oid);
    centry *c = NULL;
    if (s != NULL && ((centry *)s->val)->gen <= sn->gen) {
        c = s->val;
        c->rc++;
    } else {
        int rv = rec_load(db, sn->txn, oid, &c);
        if (rv != 0 && rv != AVM_ENOTFOUND)
            return NULL;
    }
    tab_put(&sn->recs, oid, c != NULL ? (void *)c : &neg);
    return c != NULL ? &c->r : NULL;
}

static const avm_objrec *stage_get(avm_lmdb *db, avm_val oid, bool *hit);

static const avm_objrec *ls_get(avm_store *s, void *snapp, avm_val oid)
{
    avm_lmdb *db = (avm_lmdb *)s;
    if (!key_ok(db, oid, AVM_OBJID))
        return NULL; /* such an id can never be created */
    if (db->stage != NULL) {
        /* A staged round: its records are the latest, whatever the read view. */
        bool hit;
        const avm_objrec *r = stage_get(db, oid, &hit);
        if (hit)
            return r;
    }
    if (snapp != NULL)
        return snap_get(db, snapp, oid);
    tslot *e = tab_find(&db->cache, oid);
    if (e != NULL)
        return &((centry *)e->val)->r;
    cache_retire(db);
    if (tab_reserve(&db->cache, 1) != 0) {
        failf(db, AVM_ENOMEM, "out of memory");
        return NULL;
    }
    if (rtxn_begin(db) != 0)
        return NULL;
    centry *c;
    int rv = rec_load(db, db->rtxn, oid, &c);
    mdb_txn_reset(db->rtxn);
    if (rv != 0)
        return NULL;
    c->gen = db->gen;
    tab_put(&db->cache, c->r.oid, c);
    return &c->r;
}

static void *ls_snapshot(avm_store *s)
{
    avm_lmdb *db = (avm_lmdb *)s;
    snap *sn = calloc(1, sizeof(*sn));
    if (sn == NULL)
        return NULL;
    int rc;
    if (db->npool > 0) {
        sn->txn = db->pool[--db->npool];
        if ((rc = mdb_txn_renew(sn->txn)) != 0) {
            mdb_txn_abort(sn->txn);
            sn->txn = NULL;
        }
    }
    if (sn->txn == NULL &&
        (rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &sn->txn)) != 0) {
        /* The interpreter then reads the latest state; commit validation still
         * checks every version it read. */
        lmdb_fail(db, rc, "taking a snapshot of");
        free(sn);
        return NULL;
    }
    sn->gen = db->gen;
    sn->next = db->snaps;
    if (db->snaps != NULL)
        db->snaps->prev = sn;
    db->snaps = sn;
    return sn;
}

static void snap_free(avm_lmdb *db, snap *sn)
{
    if (sn->prev != NULL)
        sn->prev->next = sn->next;
    else
        db->snaps = sn->next;
    if (sn->next != NULL)
        sn->next->prev = sn->prev;
    for (size_t i = 0; i < sn->recs.cap; i++)
        if (sn->recs.s[i].st == SLOT_FULL && sn->recs.s[i].val == &neg)
            sn->recs.s[i].val = NULL;
    tab_clear(&sn->recs, centry_release_v);
    if (db->npool < TXN_POOL) {
        mdb_txn_reset(sn->txn);
        db->pool[db->npool++] = sn->txn;
    } else {
        mdb_txn_abort(sn->txn);
    }
    free(sn);
}

static void ls_snapshot_release(avm_store *s, void *snapp)
{
    if (snapp != NULL)
        snap_free((avm_lmdb *)s, snapp);
}

static int ls_ids(avm_store *s, avm_val *out)
{
    avm_lmdb *db = (avm_lmdb *)s;
    int rv = rtxn_begin(db);
    if (rv != 0)
        return rv;
    MDB_stat st;
    MDB_cursor *cur = NULL;
    int rc = mdb_stat(db->rtxn, db->objects, &st);
    if (rc == 0)
        rc = mdb_cursor_open(db->rtxn, db->objects, &cur);
    if (rc != 0) {
        rv = lmdb_fail(db, rc, "reading from");
        goto out;
    }
    if ((rv = avm_list_new(st.ms_entries, out)) != 0) {
        failf(db, rv, "out of memory");
        goto out;
    }
    MDB_val k, v;
    size_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && n < st.ms_entries;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if ((rv = avm_str_new(AVM_OBJID, k.mv_data, k.mv_size, &out->u.l->items[n])) != 0)
            break;
        n++;
    }
    if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    else if (rv != 0)
        failf(db, rv, "out of memory");
    if (rv != 0)
        avm_val_release(*out);
out:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_reset(db->rtxn);
    return rv;
}

static const avm_purefn *ls_pure_get(avm_store *s, avm_val name)
{
    avm_lmdb *db = (avm_lmdb *)s;
    if (!key_ok(db, name, AVM_STR))
        return NULL;
    tslot *e = tab_find(&db->pures, name);
    if (e != NULL)
        return &((pentry *)e->val)->f;
    if (tab_reserve(&db->pures, 1) != 0 || rtxn_begin(db) != 0)
        return NULL;
    pentry *p = NULL;
    MDB_val k = key_of(name), v;
    int rc = mdb_get(db->rtxn, db->pure, &k, &v);
    if (rc != 0) {
        if (rc != MDB_NOTFOUND)
            lmdb_fail(db, rc, "reading from");
        goto out;
    }
    const uint8_t *hash;
    uint64_t version;
    avm_val by, exec, mach;
    int rv = pure_rec_decode(v.mv_data, v.mv_size, &hash, &version, &by, &exec, &mach);
    if (rv != 0) {
        corrupt(db, "pure-function entry", name, rv);
        goto out;
    }
    avm_module *m;
    if (module_load(db, db->rtxn, hash, &m) != 0 ||
        ((p = malloc(sizeof(*p))) == NULL && failf(db, AVM_ENOMEM, "out of memory"))) {
        avm_val_release(by);
        avm_val_release(exec);
        avm_val_release(mach);
        goto out;
    }
    p->f.name = name;
    avm_val_retain(name);
    p->f.code = m;
    avm_module_retain(m);
    p->f.version = version;
    p->f.by = by;
    p->f.exec = exec;
    p->f.machine = mach;
    tab_put(&db->pures, name, p);
out:
    mdb_txn_reset(db->rtxn);
    return p != NULL ? &p->f : NULL;
}

/* ---- Commits ---------------------------------------------------------------- */

/* An object as the batch being built sees it. */
typedef struct ov {
    centry *rec;      /* NULL: the object does not exist */
    bool owned;       /* rec is this batch's private copy */
    bool dirty;       /* the record must be written (or deleted when rec is NULL) */
    bool state_dirty; /* the state must be written too */
} ov;

typedef struct batch {
    const avm_writeset *const *ws;
    const avm_lmdb_ack *const *acks; /* NULL, or per write set (each maybe NULL) */
    const size_t *nacks;
    size_t n;
    bool *ok;   /* per write set: validated and applied to the overlay */
    table objs; /* oid -> ov*: the batch's versions and existence */
    avm_val empty;
} batch;

static void ov_release_v(void *p)
{
    ov *o = p;
    centry_release(o->rec);
    free(o);
}

/* The batch's view of oid: the overlay, else the cache, else LMDB (in txn, which
 * has not been written to yet, so it holds the committed state). */
static int ov_get(avm_lmdb *db, MDB_txn *txn, batch *b, avm_val oid, ov **out, int *mrc)
{
    tslot *e = tab_find(&b->objs, oid);
    if (e != NULL) {
        *out = e->val;
        return 0;
    }
    ov *o = calloc(1, sizeof(*o));
    if (o == NULL || tab_reserve(&b->objs, 1) != 0) {
        free(o);
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    if (key_ok(db, oid, AVM_OBJID)) {
        tslot *c = tab_find(&db->cache, oid);
        if (c != NULL) {
            o->rec = c->val;
            o->rec->rc++;
        } else {
            int rv = rec_load(db, txn, oid, &o->rec);
            if (rv == 0) {
                o->rec->gen = db->gen;
            } else if (rv != AVM_ENOTFOUND) {
                free(o);
                return rv;
            }
        }
    }
    tab_put(&b->objs, oid, o);
    *out = o;
    return 0;
}

/* Makes o's record private to the batch before it changes. */
static int ov_mut(avm_lmdb *db, ov *o)
{
    o->dirty = true;
    if (o->owned)
        return 0;
    centry *c = centry_copy(o->rec);
    if (c == NULL)
        return failf(db, AVM_ENOMEM, "out of memory");
    centry_release(o->rec);
    o->rec = c;
    o->owned = true;
    return 0;
}

static bool in_creates(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_val_eq(ws->creates[i].oid, oid))
            return true;
    return false;
}

static bool is_destroyed(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (avm_val_eq(ws->destroys[i], oid))
            return true;
    return false;
}

static void set_val(avm_val *slot, avm_val v)
{
    avm_val_retain(v);
    avm_val_release(*slot);
    *slot = v;
}

/* Validates ws against the batch's view; 0 with *valid false when a read fails. */
static int ws_validate(avm_lmdb *db, MDB_txn *txn, batch *b, const avm_writeset *ws,
                       bool *valid, int *mrc)
{
    *valid = false;
    for (size_t i = 0; i < ws->nreads; i++) {
        const avm_read *rd = &ws->reads[i];
        ov *o;
        int rv = ov_get(db, txn, b, rd->oid, &o, mrc);
        if (rv != 0)
            return rv;
        if (o->rec == NULL) {
            if (in_creates(ws, rd->oid))
                continue;
            return 0;
        }
        if (rd->version != AVM_VERSION_EXISTS && o->rec->r.version != rd->version)
            return 0;
    }
    *valid = true;
    return 0;
}

static int ws_destroys(avm_lmdb *db, MDB_txn *txn, batch *b, const avm_writeset *ws,
                       int *mrc)
{
    for (size_t i = 0; i < ws->ndestroys; i++) {
        ov *o;
        int rv = ov_get(db, txn, b, ws->destroys[i], &o, mrc);
        if (rv != 0)
            return rv;
        if (o->rec == NULL)
            continue;
        centry_release(o->rec);
        o->rec = NULL;
        o->owned = false;
        o->dirty = true;
        o->state_dirty = false;
    }
    return 0;
}

static int ws_states(avm_lmdb *db, MDB_txn *txn, batch *b, const avm_writeset *ws,
                     int *mrc)
{
    for (size_t i = 0; i < ws->nstates; i++) {
        const avm_pair *p = &ws->states[i];
        ov *o;
        int rv = ov_get(db, txn, b, p->a, &o, mrc);
        if (rv != 0)
            return rv;
        if (o->rec == NULL || (!ws->spec_order && is_destroyed(ws, p->a)))
            continue;
        if ((rv = ov_mut(db, o)) != 0)
            return rv;
        set_val(&o->rec->r.state, p->b);
        o->rec->r.version++;
        o->state_dirty = true;
    }
    return 0;
}

/* Applies a validated write set to the overlay, in platform.h's order. */
static int ws_apply(avm_lmdb *db, MDB_txn *txn, batch *b, const avm_writeset *ws,
                    int *mrc)
{
    int rv;
    for (size_t i = 0; i < ws->ncreates; i++) {
        const avm_create *c = &ws->creates[i];
        ov *o;
        if ((rv = ov_get(db, txn, b, c->oid, &o, mrc)) != 0)
            return rv;
        centry *n = centry_new();
        modent *me;
        if (n == NULL ||
            (c->beh.mod != NULL && mod_add(&db->mods, c->beh.mod, &me) != 0)) {
            free(n);
            return failf(db, AVM_ENOMEM, "out of memory");
        }
        /* createWithMeta overwrites an existing object. */
        n->r.oid = c->oid;
        avm_val_retain(c->oid);
        n->r.beh = c->beh;
        avm_val_retain(c->beh.name);
        if (c->beh.mod != NULL)
            avm_module_retain(c->beh.mod);
        n->r.meta = c->meta;
        avm_val_retain(c->meta.machine);
        avm_val_retain(c->meta.creating);
        avm_val_retain(c->meta.current);
        n->r.state = b->empty;
        avm_val_retain(b->empty);
        n->r.version = 1;
        centry_release(o->rec);
        o->rec = n;
        o->owned = true;
        o->dirty = true;
        o->state_dirty = true;
    }
    for (size_t i = 0; i < ws->ntransfers + ws->nmoves; i++) {
        bool transfer = i < ws->ntransfers;
        const avm_pair *p = transfer ? &ws->transfers[i] : &ws->moves[i - ws->ntransfers];
        ov *o;
        if ((rv = ov_get(db, txn, b, p->a, &o, mrc)) != 0)
            return rv;
        if (o->rec == NULL)
            continue; /* applyTransfer: nothing when the object is gone */
        if ((rv = ov_mut(db, o)) != 0)
            return rv;
        set_val(transfer ? &o->rec->r.meta.current : &o->rec->r.meta.machine, p->b);
        o->rec->r.version++;
    }
    if (!ws->spec_order) {
        /* Decision 12: a destroy removes the state too; states of destroyed
         * objects are dropped. */
        if ((rv = ws_states(db, txn, b, ws, mrc)) != 0)
            return rv;
        return ws_destroys(db, txn, b, ws, mrc);
    }
    /* The literal specification writes states after destroys; with the state
     * kept in the record, a state for a destroyed object has nowhere to go (as in
     * memstore). */
    if ((rv = ws_destroys(db, txn, b, ws, mrc)) != 0)
        return rv;
    return ws_states(db, txn, b, ws, mrc);
}

/* Stores m's canonical encoding under its hash unless it is known to be there. */
static int put_module(avm_lmdb *db, MDB_txn *txn, avm_module *m, int *mrc)
{
    modent *e;
    if (mod_add(&db->mods, m, &e) != 0)
        return failf(db, AVM_ENOMEM, "out of memory");
    if (e->durable)
        return 0;
    avm_buf *sb = scratch(db);
    int rv = avm_module_encode(e->m, sb);
    if (rv != 0)
        return failf(db, rv, "encoding a module for %s: %s", db->path, avm_strerror(rv));
    uint8_t h[32];
    avm_sha256(sb->data, sb->len, h);
    if (memcmp(h, e->m->hash, 32) != 0)
        return failf(db, AVM_EINVAL,
                     "commit to %s: a module's hash does not match its code", db->path);
    MDB_val k = {.mv_size = 32, .mv_data = e->m->hash};
    MDB_val v = {.mv_size = sb->len, .mv_data = sb->data};
    *mrc = mdb_put(txn, db->behaviours, &k, &v, MDB_NOOVERWRITE);
    if (*mrc == MDB_KEYEXIST)
        *mrc = 0;
    return *mrc == 0 ? 0 : AVM_EIO;
}

/* Mailboxes: messages keyed by the object id's bytes (as in objects), 0x00, and
 * their number (8 bytes, big-endian), so that a mailbox's messages are adjacent
 * and in number order. The id is the key less its last 9 bytes. */
#define MBOX_KEY_MAX 600

static bool mbox_key_ok(const avm_lmdb *db, avm_val oid)
{
    return oid.u.s->len + 9 <= db->maxkey && oid.u.s->len + 9 <= MBOX_KEY_MAX;
}

static void be_put(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t be_get(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

static size_t mbox_key(char *k, avm_val oid, uint64_t seq)
{
    memcpy(k, oid.u.s->data, oid.u.s->len);
    k[oid.u.s->len] = '\0';
    be_put((uint8_t *)k + oid.u.s->len + 1, seq, 8);
    return oid.u.s->len + 9;
}

/* Deletes the acknowledged messages of a committed write set; a message that is
 * not there was acked before. */
static int ack_del(avm_lmdb *db, MDB_txn *txn, const avm_lmdb_ack *acks, size_t n,
                   int *mrc)
{
    for (size_t i = 0; i < n; i++) {
        if (!mbox_key_ok(db, acks[i].oid))
            continue; /* no such mailbox can exist */
        char key[MBOX_KEY_MAX];
        MDB_val k = {.mv_size = mbox_key(key, acks[i].oid, acks[i].seq), .mv_data = key};
        int rc = mdb_del(txn, db->mailboxes, &k, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            *mrc = rc;
            return AVM_EIO;
        }
    }
    return 0;
}

/* ---- Execution records, checkpoint blobs and trace chunks ------------------- */

/* Every commit of an execution rewrites its checkpoint: a state of one or two
 * thousand bytes, of another size each time. Kept in the execution's record, the
 * 64 states of a group commit filled some 40 leaf pages, and LMDB's allocator (it
 * reuses the lowest-numbered free page first, one page at a time) scattered them
 * over the file once other writes had left holes there: a durable commit then
 * wrote its pages in about 40 separate writes (exec_bench, 64 executions) where
 * the same bytes on consecutive pages take 4. Trace chunks made most of the holes:
 * each went into the middle of its execution's key range, copying a page written
 * long before, and the records' changing sizes split and merged pages.
 *
 * So the state is not in the record: each write transaction puts the states of
 * its checkpoints together in one value, a blob, under an increasing number.
 * LMDB keeps a large value on consecutive overflow pages, so a commit writes its
 * checkpoints as one run, and a blob whose entries are all superseded is deleted
 * whole, giving back a run of pages for a later blob. The record (execs) is small
 * and of fixed size, so rewriting it overwrites it in place, and the records of
 * 64 executions share a page or two. Trace chunks, which are kept, are appended
 * under increasing numbers (MDB_APPEND: only the journal's last page changes),
 * each pointing to the previous chunk of its log; the record points to the last.
 *
 * A blob lives as long as a record points into it. The handle counts, per blob,
 * the live entries and their bytes (learnt by reading the blob the first time an
 * entry of it is superseded after open, then kept up to date); a blob that is
 * less than a quarter live has its live entries moved into a blob of their own
 * (cold: executions that stopped checkpointing) and is deleted, so that the
 * checkpoints of idle executions cost at most four times their size and are not
 * copied again at every commit of the busy ones. */

/* execs: id -> XREC_SIZE bytes, big-endian: status (1), the blob holding the
 * state's entry (8; 0: the state is empty), the entry's offset in the blob (8),
 * the state's length (4), the trace log's last chunk (8; 0: none) and the log's
 * length in bytes (8). */
#define XREC_SIZE 37

typedef struct xrec {
    uint8_t status;
    uint64_t blob, off;
    uint32_t len;
    uint64_t head, tlen;
} xrec;

/* checkpoints: blob number -> entries, each: id length (2), id, state length (4),
 * state. A blob is at most BLOB_MAX bytes unless one entry is larger. */
#define ENTRY_HDR 6
#define BLOB_MAX ((size_t)1 << 20)
/* trace_chunks: chunk number -> previous chunk of the log (8; 0: none), the
 * chunk's byte offset in the log (8), id length (2), id, the bytes. */
#define CHUNK_HDR 18
/* A state or chunk must fit an LMDB value (under 4 GiB) with its header. */
#define PART_MAX ((size_t)UINT32_MAX - CHUNK_HDR - 65535)

/* What the handle knows of a blob. */
typedef struct blobent {
    uint64_t size;  /* its bytes (of one being built: so far) */
    uint64_t live;  /* the bytes of its entries that records point to */
    uint32_t count; /* those entries */
    bool touched;   /* it lost entries in this transaction (in ck.touched) */
} blobent;

static int id_corrupt(avm_lmdb *db, const char *what, const char *id, size_t idlen)
{
    return failf(db, AVM_EIO, "corrupt %s \"%.*s\" in %s", what,
                 (int)(idlen > 200 ? 200 : idlen), id, db->path);
}

/* Reads id's record in txn: 0, AVM_ENOTFOUND, or an error with errmsg set. */
static int xrec_get(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen, xrec *r)
{
    MDB_val k = {.mv_size = idlen, .mv_data = (void *)id}, v;
    int rc = mdb_get(txn, db->execs, &k, &v);
    if (rc == MDB_NOTFOUND)
        return AVM_ENOTFOUND;
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    if (v.mv_size != XREC_SIZE)
        return id_corrupt(db, "execution record", id, idlen);
    const uint8_t *p = v.mv_data;
    r->status = p[0];
    r->blob = be_get(p + 1, 8);
    r->off = be_get(p + 9, 8);
    r->len = (uint32_t)be_get(p + 17, 4);
    r->head = be_get(p + 21, 8);
    r->tlen = be_get(p + 29, 8);
    return 0;
}

static int xrec_put(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                    const xrec *r, int *mrc)
{
    uint8_t b[XREC_SIZE];
    b[0] = r->status;
    be_put(b + 1, r->blob, 8);
    be_put(b + 9, r->off, 8);
    be_put(b + 17, r->len, 4);
    be_put(b + 21, r->head, 8);
    be_put(b + 29, r->tlen, 8);
    MDB_val k = {.mv_size = idlen, .mv_data = (void *)id};
    MDB_val v = {.mv_size = XREC_SIZE, .mv_data = b};
    *mrc = mdb_put(txn, db->execs, &k, &v, 0);
    return *mrc == 0 ? 0 : AVM_EIO;
}

/* The entry at off of blob no (p, size bytes): its id, state and size. */
static int entry_at(avm_lmdb *db, uint64_t no, const uint8_t *p, size_t size,
                    uint64_t off, const char **id, size_t *idlen, const uint8_t **state,
                    uint32_t *len, size_t *esz)
{
    if (off > size || size - off < ENTRY_HDR)
        goto bad;
    size_t il = (size_t)be_get(p + off, 2);
    if (size - off - ENTRY_HDR < il)
        goto bad;
    uint32_t sl = (uint32_t)be_get(p + off + 2 + il, 4);
    if (size - off - ENTRY_HDR - il < sl)
        goto bad;
    *id = (const char *)p + off + 2;
    *idlen = il;
    *state = p + off + ENTRY_HDR + il;
    *len = sl;
    *esz = ENTRY_HDR + il + sl;
    return 0;
bad:
    return failf(db, AVM_EIO, "corrupt checkpoint blob %llu in %s: no entry at byte %llu",
                 (unsigned long long)no, db->path, (unsigned long long)off);
}

static MDB_val blob_key(uint8_t kb[8], uint64_t no)
{
    be_put(kb, no, 8);
    MDB_val k = {.mv_size = 8, .mv_data = kb};
    return k;
}

static blobent *blob_find(avm_lmdb *db, uint64_t no)
{
    tslot *s = tab_find(&db->blobs, avm_int((int64_t)no));
    return s != NULL ? s->val : NULL;
}

static int blob_track(avm_lmdb *db, uint64_t no, blobent **out)
{
    blobent *e = calloc(1, sizeof(*e));
    if (e == NULL || tab_reserve(&db->blobs, 1) != 0) {
        free(e);
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    tab_put(&db->blobs, avm_int((int64_t)no), e);
    *out = e;
    return 0;
}

/* What the handle knows of blob no, reading the blob (in txn) if need be: an entry
 * is live when its id's record points to it. */
static int blob_live(avm_lmdb *db, MDB_txn *txn, uint64_t no, blobent **out)
{
    if ((*out = blob_find(db, no)) != NULL)
        return 0;
    uint8_t kb[8];
    MDB_val k = blob_key(kb, no), v;
    int rc = mdb_get(txn, db->checkpoints, &k, &v);
    if (rc == MDB_NOTFOUND)
        return failf(db, AVM_EIO,
                     "corrupt data in %s: checkpoint blob %llu is referenced but missing",
                     db->path, (unsigned long long)no);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    blobent *e;
    int rv = blob_track(db, no, &e);
    if (rv != 0)
        return rv;
    /* A failure below leaves e incomplete; the transaction then aborts, and an
     * abort forgets every blob (ck_undo). */
    e->size = v.mv_size;
    for (uint64_t off = 0; off < v.mv_size;) {
        const char *id;
        const uint8_t *state;
        size_t idlen, esz;
        uint32_t len;
        xrec r;
        if ((rv = entry_at(db, no, v.mv_data, v.mv_size, off, &id, &idlen, &state, &len,
                           &esz)) != 0)
            return rv;
        rv = xrec_get(db, txn, id, idlen, &r);
        if (rv != 0 && rv != AVM_ENOTFOUND)
            return rv;
        if (rv == 0 && r.blob == no && r.off == off) {
            e->count++;
            e->live += esz;
        }
        off += esz;
    }
    *out = e;
    return 0;
}

/* Starts the write transaction's checkpoint writes. */
static void ck_begin(avm_lmdb *db)
{
    ckwriter *w = &db->ck;
    w->blob_next = db->blob_next;
    w->chunk_next = db->chunk_next;
    w->hot.no = w->cold.no = 0;
    w->hot.buf.len = w->cold.buf.len = 0;
    w->ntouched = 0;
}

/* The transaction committed: its numbers are used. */
static void ck_done(avm_lmdb *db)
{
    db->blob_next = db->ck.blob_next;
    db->chunk_next = db->ck.chunk_next;
}

/* The transaction aborted: what the handle knew of blobs may have changed with
 * it, so all of it is forgotten (and learnt again on need). */
static void ck_undo(avm_lmdb *db)
{
    tab_clear(&db->blobs, free);
}

static void ck_done_v(avm_lmdb *db, void *arg)
{
    ck_done(db);
}

static void ck_undo_v(avm_lmdb *db, void *arg)
{
    ck_undo(db);
}

/* Writes blob nb (unless no entry of it is live) and starts none. */
static int blob_flush(avm_lmdb *db, MDB_txn *txn, newblob *nb, int *mrc)
{
    if (nb->no == 0)
        return 0;
    uint8_t kb[8];
    MDB_val k = blob_key(kb, nb->no);
    MDB_val v = {.mv_size = nb->buf.len, .mv_data = nb->buf.data};
    blobent *e = blob_find(db, nb->no);
    assert(e != NULL && e->size == nb->buf.len);
    if (e->count == 0)
        free(tab_del(&db->blobs, avm_int((int64_t)nb->no)));
    else if ((*mrc = mdb_put(txn, db->checkpoints, &k, &v, MDB_APPEND)) != 0)
        return AVM_EIO;
    nb->no = 0;
    nb->buf.len = 0;
    return 0;
}

/* Adds the entry (id, state) to nb, and points r to it. */
static int blob_add(avm_lmdb *db, MDB_txn *txn, newblob *nb, const char *id, size_t idlen,
                    const uint8_t *state, uint32_t len, xrec *r, int *mrc)
{
    size_t esz = ENTRY_HDR + idlen + len;
    int rv;
    if (nb->no != 0 && nb->buf.len + esz > BLOB_MAX &&
        (rv = blob_flush(db, txn, nb, mrc)))
        return rv;
    blobent *e;
    if (nb->no == 0) {
        if ((rv = blob_track(db, db->ck.blob_next, &e)) != 0)
            return rv;
        nb->no = db->ck.blob_next++;
    } else {
        e = blob_find(db, nb->no);
    }
    uint8_t h[4];
    be_put(h, idlen, 2);
    avm_buf_put(&nb->buf, h, 2);
    avm_buf_put(&nb->buf, id, idlen);
    be_put(h, len, 4);
    avm_buf_put(&nb->buf, h, 4);
    avm_buf_put(&nb->buf, state, len);
    if (nb->buf.err != 0) {
        nb->buf.err = 0;
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    r->blob = nb->no;
    r->off = nb->buf.len - esz;
    r->len = len;
    e->size = nb->buf.len;
    e->count++;
    e->live += esz;
    return 0;
}

/* The entry r points to is no longer its execution's. Called before the record
 * changes, so that a blob not known yet is read with the record still in it. */
static int ck_release(avm_lmdb *db, MDB_txn *txn, const xrec *r, size_t idlen)
{
    if (r->blob == 0)
        return 0;
    ckwriter *w = &db->ck;
    blobent *e;
    int rv = blob_live(db, txn, r->blob, &e);
    if (rv != 0)
        return rv;
    size_t esz = ENTRY_HDR + idlen + r->len;
    if (e->count == 0 || e->live < esz)
        return failf(db, AVM_EIO,
                     "corrupt data in %s: checkpoint blob %llu has fewer entries than "
                     "records pointing to it",
                     db->path, (unsigned long long)r->blob);
    e->count--;
    e->live -= esz;
    if (e->touched || r->blob == w->hot.no || r->blob == w->cold.no)
        return 0;
    if (w->ntouched == w->captouched) {
        size_t ncap = w->captouched ? 2 * w->captouched : 64;
        uint64_t *nt = realloc(w->touched, ncap * sizeof(*nt));
        if (nt == NULL)
            return failf(db, AVM_ENOMEM, "out of memory");
        w->touched = nt;
        w->captouched = ncap;
    }
    w->touched[w->ntouched++] = r->blob;
    e->touched = true;
    return 0;
}

static int blob_del(avm_lmdb *db, MDB_txn *txn, uint64_t no, int *mrc)
{
    uint8_t kb[8];
    MDB_val k = blob_key(kb, no);
    if ((*mrc = mdb_del(txn, db->checkpoints, &k, NULL)) != 0)
        return AVM_EIO;
    free(tab_del(&db->blobs, avm_int((int64_t)no)));
    return 0;
}

/* Moves the live entries of blob no to the cold blob, then deletes it. */
static int blob_compact(avm_lmdb *db, MDB_txn *txn, uint64_t no, int *mrc)
{
    ckwriter *w = &db->ck;
    uint8_t kb[8];
    MDB_val k = blob_key(kb, no), v;
    int rc = mdb_get(txn, db->checkpoints, &k, &v);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    /* Copied out: the record writes below may make LMDB spill pages. */
    w->tmp.len = 0;
    avm_buf_put(&w->tmp, v.mv_data, v.mv_size);
    if (w->tmp.err != 0) {
        w->tmp.err = 0;
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    const uint8_t *p = (const uint8_t *)w->tmp.data;
    size_t size = w->tmp.len;
    for (uint64_t off = 0; off < size;) {
        const char *id;
        const uint8_t *state;
        size_t idlen, esz;
        uint32_t len;
        xrec r;
        int rv = entry_at(db, no, p, size, off, &id, &idlen, &state, &len, &esz);
        if (rv == 0)
            rv = xrec_get(db, txn, id, idlen, &r);
        if (rv == 0 && r.blob == no && r.off == off) {
            rv = blob_add(db, txn, &w->cold, id, idlen, state, len, &r, mrc);
            if (rv == 0)
                rv = xrec_put(db, txn, id, idlen, &r, mrc);
        }
        if (rv != 0 && rv != AVM_ENOTFOUND)
            return rv;
        off += esz;
    }
    return blob_del(db, txn, no, mrc);
}

/* Ends the transaction's checkpoint writes: writes its blob, and deletes (or
 * compacts) the blobs that lost entries in it. */
static int ck_finish(avm_lmdb *db, MDB_txn *txn, int *mrc)
{
    ckwriter *w = &db->ck;
    /* First, so that the cold blob gets the higher number (MDB_APPEND). */
    int rv = blob_flush(db, txn, &w->hot, mrc);
    for (size_t i = 0; rv == 0 && i < w->ntouched; i++) {
        uint64_t no = w->touched[i];
        blobent *e = blob_find(db, no);
        assert(e != NULL && e->touched);
        e->touched = false;
        if (e->count == 0)
            rv = blob_del(db, txn, no, mrc);
        else if (e->live < e->size / 4)
            rv = blob_compact(db, txn, no, mrc);
    }
    w->ntouched = 0;
    return rv != 0 ? rv : blob_flush(db, txn, &w->cold, mrc);
}

/* Appends a chunk of id's trace log, after chunk prev; *no is its number. */
static int chunk_add(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                     uint64_t prev, uint64_t at, const uint8_t *bytes, size_t len,
                     uint64_t *no, int *mrc)
{
    uint8_t kb[8];
    MDB_val k = blob_key(kb, db->ck.chunk_next);
    MDB_val v = {.mv_size = CHUNK_HDR + idlen + len, .mv_data = NULL};
    if ((*mrc = mdb_put(txn, db->chunks, &k, &v, MDB_APPEND | MDB_RESERVE)) != 0)
        return AVM_EIO;
    uint8_t *p = v.mv_data;
    be_put(p, prev, 8);
    be_put(p + 8, at, 8);
    be_put(p + 16, idlen, 2);
    memcpy(p + CHUNK_HDR, id, idlen);
    if (len > 0)
        memcpy(p + CHUNK_HDR + idlen, bytes, len);
    *no = db->ck.chunk_next++;
    return 0;
}

/* Chunk no, which must be of id's log: its previous chunk, offset and bytes. */
static int chunk_get(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                     uint64_t no, uint64_t *prev, uint64_t *at, MDB_val *bytes)
{
    uint8_t kb[8];
    MDB_val k = blob_key(kb, no), v;
    int rc = mdb_get(txn, db->chunks, &k, &v);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail(db, rc, "reading from");
    const uint8_t *p = v.mv_data;
    if (rc == MDB_NOTFOUND || v.mv_size < CHUNK_HDR + idlen ||
        be_get(p + 16, 2) != idlen || memcmp(p + CHUNK_HDR, id, idlen) != 0 ||
        be_get(p, 8) >= no)
        return failf(db, AVM_EIO, "corrupt trace log of %.*s in %s: chunk %llu is %s",
                     (int)(idlen > 200 ? 200 : idlen), id, db->path,
                     (unsigned long long)no,
                     rc == MDB_NOTFOUND ? "missing" : "not one of its chunks");
    *prev = be_get(p, 8);
    *at = be_get(p + 8, 8);
    bytes->mv_data = (void *)(p + CHUNK_HDR + idlen);
    bytes->mv_size = v.mv_size - CHUNK_HDR - idlen;
    return 0;
}

/* Deletes the chunks of a log, from its last one, head, back. A broken chain (a
 * chunk missing, or not id's) ends the walk: clearing a damaged log deletes what
 * can be reached. */
static int chunks_del(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                      uint64_t head, int *mrc)
{
    while (head != 0) {
        uint64_t prev, at;
        MDB_val bytes;
        if (chunk_get(db, txn, id, idlen, head, &prev, &at, &bytes) != 0)
            return 0;
        uint8_t kb[8];
        MDB_val k = blob_key(kb, head);
        if ((*mrc = mdb_del(txn, db->chunks, &k, NULL)) != 0)
            return AVM_EIO;
        head = prev;
    }
    return 0;
}

/* Adds id's new state to the transaction's blob; *loc says where (blob 0: the
 * state is empty). */
static int ck_stage(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                    const uint8_t *state, size_t len, xrec *loc, int *mrc)
{
    memset(loc, 0, sizeof(*loc));
    if (len > PART_MAX)
        return failf(db, AVM_ETOOBIG, "execution state of %zu bytes is too large", len);
    if (len == 0)
        return 0;
    return blob_add(db, txn, &db->ck.hot, id, idlen, state, (uint32_t)len, loc, mrc);
}

/* Makes the state staged at loc id's latest checkpoint, with status, and appends
 * the chunk of its trace log that comes with it (tlen bytes at byte at). */
static int ck_put(avm_lmdb *db, MDB_txn *txn, const char *id, size_t idlen,
                  uint8_t status, const xrec *loc, const uint8_t *trace, size_t tlen,
                  uint64_t at, int *mrc)
{
    if (tlen > PART_MAX)
        return failf(db, AVM_ETOOBIG, "execution trace chunk of %zu bytes is too large",
                     tlen);
    xrec r;
    int rv = xrec_get(db, txn, id, idlen, &r);
    if (rv == AVM_ENOTFOUND)
        memset(&r, 0, sizeof(r));
    else if (rv != 0 || (rv = ck_release(db, txn, &r, idlen)) != 0)
        return rv;
    r.status = status;
    if (tlen > 0) {
        if ((rv = chunk_add(db, txn, id, idlen, r.head, at, trace, tlen, &r.head, mrc)) !=
            0)
            return rv;
        r.tlen = at + tlen;
    }
    r.blob = loc->blob;
    r.off = loc->off;
    r.len = loc->len;
    return xrec_put(db, txn, id, idlen, &r, mrc);
}

/* Room for n staged states in db->ck.locs. */
static int ck_locs(avm_lmdb *db, size_t n)
{
    ckwriter *w = &db->ck;
    if (n <= w->caplocs)
        return 0;
    xrec *nl = realloc(w->locs, n * sizeof(*nl));
    if (nl == NULL)
        return failf(db, AVM_ENOMEM, "out of memory");
    w->locs = nl;
    w->caplocs = n;
    return 0;
}

/* Writes the overlay's changed objects and the checkpoints of committed write
 * sets into txn. */
static int objs_write(avm_lmdb *db, MDB_txn *txn, batch *b, int *mrc);

/* The label a write set gives its execution (at most 255 bytes are kept). */
static int label_put(avm_lmdb *db, MDB_txn *txn, const avm_writeset *ws, int *mrc)
{
    if (ws->ckpt_label == NULL)
        return 0;
    size_t n = strlen(ws->ckpt_label);
    MDB_val k = {.mv_size = strlen(ws->ckpt_id), .mv_data = (void *)ws->ckpt_id};
    MDB_val v = {.mv_size = n > 255 ? 255 : n, .mv_data = (void *)ws->ckpt_label};
    *mrc = mdb_put(txn, db->labels, &k, &v, 0);
    return *mrc == 0 ? 0 : AVM_EIO;
}

static int batch_write(avm_lmdb *db, MDB_txn *txn, batch *b, int *mrc)
{
    int rv = objs_write(db, txn, b, mrc);
    if (rv != 0)
        return rv;
    /* The states go first: their blob then takes a run of free pages before the
     * records and trace chunks take single ones, which the other way round broke
     * up the runs that earlier blobs had freed (exec_bench, 64 executions: 8.1
     * writes a commit instead of 7.1). */
    rv = ck_locs(db, b->n);
    for (size_t i = 0; rv == 0 && i < b->n; i++) {
        const avm_writeset *ws = b->ws[i];
        if (b->ok[i] && ws->ckpt_id != NULL)
            rv = ck_stage(db, txn, ws->ckpt_id, strlen(ws->ckpt_id), ws->ckpt_state,
                          ws->ckpt_len, &db->ck.locs[i], mrc);
    }
    if (rv != 0 || (rv = blob_flush(db, txn, &db->ck.hot, mrc)) != 0)
        return rv;
    for (size_t i = 0; i < b->n; i++) {
        const avm_writeset *ws = b->ws[i];
        if (b->ok[i] && ws->ckpt_id != NULL) {
            rv = ck_put(db, txn, ws->ckpt_id, strlen(ws->ckpt_id), ws->ckpt_status,
                        &db->ck.locs[i], ws->ckpt_trace, ws->ckpt_trace_len,
                        ws->ckpt_trace_at, mrc);
            if (rv == 0)
                rv = label_put(db, txn, ws, mrc);
            if (rv != 0)
                return rv;
        }
        if (b->ok[i] && b->acks != NULL && b->acks[i] != NULL) {
            rv = ack_del(db, txn, b->acks[i], b->nacks[i], mrc);
            if (rv != 0)
                return rv;
        }
    }
    return ck_finish(db, txn, mrc);
}

/* Writes the overlay's changed objects (records and states) into txn. */
static int objs_write(avm_lmdb *db, MDB_txn *txn, batch *b, int *mrc)
{
    for (size_t i = 0; i < b->objs.cap; i++) {
        if (b->objs.s[i].st != SLOT_FULL)
            continue;
        ov *o = b->objs.s[i].val;
        if (!o->dirty)
            continue;
        MDB_val k = key_of(b->objs.s[i].key);
        if (o->rec == NULL) {
            *mrc = mdb_del(txn, db->objects, &k, NULL);
            if (*mrc == 0 || *mrc == MDB_NOTFOUND)
                *mrc = mdb_del(txn, db->states, &k, NULL);
            if (*mrc == MDB_NOTFOUND)
                *mrc = 0; /* created and destroyed within the batch */
            if (*mrc != 0)
                return AVM_EIO;
            continue;
        }
        int rv;
        if (o->rec->r.beh.mod != NULL &&
            (rv = put_module(db, txn, o->rec->r.beh.mod, mrc)) != 0)
            return rv;
        avm_buf *sb = scratch(db);
        if ((rv = rec_encode(sb, &o->rec->r)) != 0)
            return failf(db, rv, "encoding an object for %s: %s", db->path,
                         avm_strerror(rv));
        MDB_val v = {.mv_size = sb->len, .mv_data = sb->data};
        if ((*mrc = mdb_put(txn, db->objects, &k, &v, 0)) != 0)
            return AVM_EIO;
        if (!o->state_dirty)
            continue;
        sb = scratch(db);
        if ((rv = avm_val_encode(sb, o->rec->r.state)) != 0)
            return failf(db, rv, "encoding a state for %s: %s", db->path,
                         avm_strerror(rv));
        v.mv_size = sb->len;
        v.mv_data = sb->data;
        if ((*mrc = mdb_put(txn, db->states, &k, &v, 0)) != 0)
            return AVM_EIO;
    }
    return 0;
}

static int batch_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    batch *b = arg;
    ck_begin(db);
    for (size_t i = 0; i < b->n; i++) {
        int rv = ws_validate(db, txn, b, b->ws[i], &b->ok[i], mrc);
        if (rv == 0 && b->ok[i])
            rv = ws_apply(db, txn, b, b->ws[i], mrc);
        if (rv != 0)
            return rv;
    }
    int rv = batch_write(db, txn, b, mrc);
    if (rv != 0)
        return rv;
    /* So that installing the batch in the cache cannot fail after the commit. */
    if (tab_reserve(&db->cache, b->objs.count) != 0)
        return failf(db, AVM_ENOMEM, "out of memory");
    return 0;
}

static void batch_undo(avm_lmdb *db, void *arg)
{
    batch *b = arg;
    tab_clear(&b->objs, ov_release_v);
    for (size_t i = 0; i < b->n; i++)
        b->ok[i] = false;
    ck_undo(db);
}

/* The batch is durable: its records become the cache's. */
static void batch_done(avm_lmdb *db, void *arg)
{
    batch *b = arg;
    ck_done(db);
    db->gen++;
    db->batches++;
    for (size_t i = 0; i < b->n; i++)
        db->commits += b->ok[i];
    for (size_t i = 0; i < b->objs.cap; i++) {
        if (b->objs.s[i].st != SLOT_FULL)
            continue;
        ov *o = b->objs.s[i].val;
        avm_val oid = b->objs.s[i].key;
        if (o->dirty) {
            if (o->rec != NULL && o->rec->r.beh.mod != NULL) {
                modent *e = mod_find(&db->mods, o->rec->r.beh.mod->hash);
                if (e != NULL)
                    e->durable = true;
            }
            if (o->rec != NULL)
                o->rec->gen = db->gen;
        }
        centry_release(tab_del(&db->cache, oid));
        if (o->rec != NULL) {
            tab_put(&db->cache, oid, o->rec); /* reserved by batch_body */
            o->rec = NULL;
        }
    }
}

static const wtx_ops batch_ops = {batch_body, batch_done, batch_undo};

/* Input that no store state can make valid fails the whole batch up front. */
static int check_input(avm_lmdb *db, const avm_writeset *ws)
{
    for (size_t i = 0; i < ws->ncreates; i++) {
        avm_val oid = ws->creates[i].oid;
        if (oid.kind != AVM_OBJID || oid.u.s->len == 0)
            return failf(db, AVM_EINVAL,
                         "commit to %s: an object id must be a non-empty "
                         "object identifier",
                         db->path);
        if (oid.u.s->len > db->maxkey)
            return failf(
                db, AVM_ETOOBIG,
                "commit to %s: object id of %u bytes exceeds LMDB's key limit of "
                "%zu bytes",
                db->path, oid.u.s->len, db->maxkey);
        if (ws->creates[i].beh.name.kind != AVM_STR)
            return failf(db, AVM_EINVAL,
                         "commit to %s: a behaviour name must be a string", db->path);
    }
    if (ws->ckpt_id != NULL) {
        size_t len = strlen(ws->ckpt_id);
        if (len == 0 || len + 9 > db->maxkey)
            return failf(db, len ? AVM_ETOOBIG : AVM_EINVAL,
                         "commit to %s: execution id of %zu bytes (the limit is %zu)",
                         db->path, len, db->maxkey);
    }
    return 0;
}

/* An object id for a mailbox: a non-empty object identifier. */
static int mbox_oid_check(avm_lmdb *db, avm_val oid, const char *what)
{
    if (oid.kind != AVM_OBJID || oid.u.s->len == 0)
        return failf(db, AVM_EINVAL,
                     "%s %s: a mailbox's id must be a non-empty object identifier", what,
                     db->path);
    return 0;
}

int avm_lmdb_apply_batch_ex(avm_lmdb *db, const avm_writeset *const *ws,
                            const avm_lmdb_ack *const *acks, const size_t *nacks,
                            size_t n, bool *committed)
{
    assert(acks == NULL || nacks != NULL);
    for (size_t i = 0; i < n; i++)
        committed[i] = false;
    for (size_t i = 0; i < n; i++) {
        int rv = check_input(db, ws[i]);
        for (size_t j = 0; rv == 0 && acks != NULL && acks[i] != NULL && j < nacks[i];
             j++)
            rv = mbox_oid_check(db, acks[i][j].oid, "acknowledging a message in");
        if (rv != 0)
            return rv;
    }
    if (n == 0)
        return 0;
    if (db->stxn != NULL)
        return failf(db, AVM_ESTATE,
                     "commit to %s: a round is staged; stage the write sets instead",
                     db->path);
    cache_trim(db);
    batch b = {.ws = ws, .acks = acks, .nacks = nacks, .n = n, .ok = committed};
    if (avm_list_new(0, &b.empty) != 0)
        return failf(db, AVM_ENOMEM, "out of memory");
    int rv = write_txn(db, "commit to", &batch_ops, &b);
    tab_clear(&b.objs, ov_release_v);
    avm_val_release(b.empty);
    return rv;
}

int avm_lmdb_apply_batch(avm_lmdb *db, const avm_writeset *const *ws, size_t n,
                         bool *committed)
{
    return avm_lmdb_apply_batch_ex(db, ws, NULL, NULL, n, committed);
}

static int ls_apply(avm_store *s, const avm_writeset *ws, bool *committed)
{
    avm_lmdb *db = (avm_lmdb *)s;
    if (db->stxn != NULL)
        return avm_lmdb_stage(db, ws, NULL, 0, committed);
    return avm_lmdb_apply_batch(db, &ws, 1, committed);
}

/* pure_put */

typedef struct pure_arg {
    const avm_purefn *fn;
    pentry *p;
} pure_arg;

static int pure_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    pure_arg *a = arg;
    int rv = put_module(db, txn, a->fn->code, mrc);
    if (rv != 0)
        return rv;
    if (tab_reserve(&db->pures, 1) != 0)
        return failf(db, AVM_ENOMEM, "out of memory");
    avm_buf *sb = scratch(db);
    avm_mp_put_array(sb, 5);
    avm_mp_put_bin(sb, a->fn->code->hash, 32);
    avm_mp_put_uint(sb, a->fn->version);
    avm_val_encode(sb, a->fn->by);
    avm_val_encode(sb, a->fn->exec);
    avm_val_encode(sb, a->fn->machine);
    if (sb->err != 0)
        return failf(db, sb->err, "out of memory");
    MDB_val k = key_of(a->fn->name);
    MDB_val v = {.mv_size = sb->len, .mv_data = sb->data};
    *mrc = mdb_put(txn, db->pure, &k, &v, 0);
    return *mrc == 0 ? 0 : AVM_EIO;
}

static void pure_done(avm_lmdb *db, void *arg)
{
    pure_arg *a = arg;
    modent *e = mod_find(&db->mods, a->fn->code->hash);
    if (e != NULL)
        e->durable = true;
    pentry_release_v(tab_put(&db->pures, a->p->f.name, a->p));
    a->p = NULL;
}

static const wtx_ops pure_ops = {pure_body, pure_done, NULL};

static int ls_pure_put(avm_store *s, const avm_purefn *fn)
{
    avm_lmdb *db = (avm_lmdb *)s;
    if (fn->code == NULL || fn->name.kind != AVM_STR || fn->name.u.s->len == 0)
        return failf(db, AVM_EINVAL, "pure function for %s: needs a name and code",
                     db->path);
    if (fn->name.u.s->len > db->maxkey)
        return failf(
            db, AVM_ETOOBIG,
            "pure function name of %u bytes exceeds LMDB's key limit of %zu bytes "
            "(%s)",
            fn->name.u.s->len, db->maxkey, db->path);
    cache_trim(db);
    pure_arg a = {.fn = fn, .p = malloc(sizeof(pentry))};
    if (a.p == NULL)
        return failf(db, AVM_ENOMEM, "out of memory");
    if ((fn->by.kind != AVM_STR && fn->by.kind != AVM_NIL) ||
        (fn->exec.kind != AVM_STR && fn->exec.kind != AVM_NIL) ||
        (fn->machine.kind != AVM_MACHID && fn->machine.kind != AVM_NIL)) {
        free(a.p);
        return failf(db, AVM_EINVAL,
                     "pure function %s: by and exec must be strings, machine a machine "
                     "id (or nil)",
                     fn->name.u.s->data);
    }
    a.p->f = *fn;
    avm_val_retain(fn->name);
    avm_module_retain(fn->code);
    avm_val_retain(fn->by);
    avm_val_retain(fn->exec);
    avm_val_retain(fn->machine);
    int rv = write_txn(db, "registering a pure function in", &pure_ops, &a);
    pentry_release_v(a.p);
    return rv;
}

static int noop_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    return 0;
}

static const wtx_ops seq_ops = {noop_body, NULL, NULL};

static uint64_t ls_next_seq(avm_store *s)
{
    avm_lmdb *db = (avm_lmdb *)s;
    if (db->seq >= db->seq_limit) {
        db->seq_limit += SEQ_BLOCK;
        db->seq_dirty = true;
        /* On failure the reservation stays dirty and rides along with the next
         * write transaction, which is the first that could make one of these
         * identifiers durable. */
        if (db->stxn == NULL) /* else the staged round carries it */
            write_txn(db, "reserving identifiers in", &seq_ops, NULL);
    }
    return ++db->seq;
}

static const char *ls_last_error(avm_store *s)
{
    return ((avm_lmdb *)s)->errmsg;
}

static const struct avm_store_ops lmdb_ops = {
    .get = ls_get,
    .snapshot = ls_snapshot,
    .snapshot_release = ls_snapshot_release,
    .apply = ls_apply,
    .ids = ls_ids,
    .pure_get = ls_pure_get,
    .pure_put = ls_pure_put,
    .next_seq = ls_next_seq,
    .last_error = ls_last_error,
};

/* ---- Executions and traces -------------------------------------------------- */

static int id_check(avm_lmdb *db, const char *id, size_t extra)
{
    if (id == NULL || id[0] == '\0')
        return failf(db, AVM_EINVAL, "%s: an execution id must not be empty", db->path);
    size_t len = strlen(id);
    if (len + extra > db->maxkey)
        return failf(
            db, AVM_ETOOBIG,
            "execution id of %zu bytes exceeds LMDB's key limit of %zu bytes (%s)", len,
            db->maxkey - extra, db->path);
    return 0;
}

typedef struct exec_arg {
    const char *id;
    uint8_t status;
    const uint8_t *state;
    size_t len;
} exec_arg;

static int exec_put_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    exec_arg *a = arg;
    size_t idlen = strlen(a->id);
    xrec loc;
    ck_begin(db);
    int rv = ck_stage(db, txn, a->id, idlen, a->state, a->len, &loc, mrc);
    if (rv == 0)
        rv = ck_put(db, txn, a->id, idlen, a->status, &loc, NULL, 0, 0, mrc);
    return rv != 0 ? rv : ck_finish(db, txn, mrc);
}

static const wtx_ops exec_put_ops = {exec_put_body, ck_done_v, ck_undo_v};

int avm_lmdb_exec_put(avm_lmdb *db, const char *id, uint8_t status, const uint8_t *state,
                      size_t len)
{
    int rv = id_check(db, id, 0);
    if (rv != 0)
        return rv;
    exec_arg a = {id, status, state, len};
    return write_txn(db, "saving an execution in", &exec_put_ops, &a);
}

int avm_lmdb_exec_label(avm_lmdb *db, const char *id, char *out, size_t n)
{
    if (n > 0)
        out[0] = '\0';
    int rv = id_check(db, id, 0);
    if (rv != 0)
        return rv == AVM_ETOOBIG ? AVM_ENOTFOUND : rv;
    if ((rv = rtxn_begin(db)) != 0)
        return rv;
    MDB_val k = {.mv_size = strlen(id), .mv_data = (void *)id}, v;
    int rc = mdb_get(db->rtxn, db->labels, &k, &v);
    if (rc == 0 && n > 0)
        snprintf(out, n, "%.*s", (int)v.mv_size, (const char *)v.mv_data);
    mdb_txn_reset(db->rtxn);
    if (rc == MDB_NOTFOUND)
        return AVM_ENOTFOUND;
    return rc == 0 ? 0 : lmdb_fail(db, rc, "reading from");
}

int avm_lmdb_exec_get(avm_lmdb *db, const char *id, uint8_t *status, avm_buf *state)
{
    avm_buf_init(state);
    int rv = id_check(db, id, 0);
    if (rv != 0)
        return rv == AVM_ETOOBIG ? AVM_ENOTFOUND : rv;
    if ((rv = rtxn_begin(db)) != 0)
        return rv;
    size_t idlen = strlen(id);
    xrec r;
    rv = xrec_get(db, db->rtxn, id, idlen, &r);
    if (rv == AVM_ENOTFOUND)
        rv = failf(db, AVM_ENOTFOUND, "no execution %s in %s", id, db->path);
    if (rv == 0 && r.blob != 0) {
        uint8_t kb[8];
        MDB_val k = blob_key(kb, r.blob), v;
        int rc = mdb_get(db->rtxn, db->checkpoints, &k, &v);
        const char *eid;
        const uint8_t *p;
        size_t eidlen, esz;
        uint32_t len;
        if (rc != 0 && rc != MDB_NOTFOUND)
            rv = lmdb_fail(db, rc, "reading from");
        else if (rc == MDB_NOTFOUND ||
                 entry_at(db, r.blob, v.mv_data, v.mv_size, r.off, &eid, &eidlen, &p,
                          &len, &esz) != 0 ||
                 eidlen != idlen || memcmp(eid, id, idlen) != 0 || len != r.len)
            rv = id_corrupt(db, "checkpoint of execution", id, idlen);
        else
            avm_buf_put(state, p, len);
    } else if (rv == 0) {
        avm_buf_put(state, "", 0); /* an empty state, not none */
    }
    if (rv == 0 && state->err != 0)
        rv = failf(db, AVM_ENOMEM, "out of memory");
    if (rv == 0)
        *status = r.status;
    else
        avm_buf_free(state);
    mdb_txn_reset(db->rtxn);
    return rv;
}

static int exec_del_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    const char *id = arg;
    size_t idlen = strlen(id);
    ck_begin(db);
    xrec r;
    int rv = xrec_get(db, txn, id, idlen, &r);
    if (rv == AVM_ENOTFOUND)
        return failf(db, AVM_ENOTFOUND, "no execution %s in %s", id, db->path);
    if (rv == 0)
        rv = ck_release(db, txn, &r, idlen);
    if (rv == 0)
        rv = chunks_del(db, txn, id, idlen, r.head, mrc);
    if (rv != 0)
        return rv;
    MDB_val k = {.mv_size = idlen, .mv_data = (void *)id};
    if ((*mrc = mdb_del(txn, db->execs, &k, NULL)) != 0)
        return AVM_EIO;
    *mrc = mdb_del(txn, db->labels, &k, NULL);
    if (*mrc != 0 && *mrc != MDB_NOTFOUND)
        return AVM_EIO;
    *mrc = 0;
    return ck_finish(db, txn, mrc);
}

static const wtx_ops exec_del_ops = {exec_del_body, ck_done_v, ck_undo_v};

int avm_lmdb_exec_del(avm_lmdb *db, const char *id)
{
    int rv = id_check(db, id, 0);
    if (rv != 0)
        return rv == AVM_ETOOBIG ? AVM_ENOTFOUND : rv;
    return write_txn(db, "deleting an execution from", &exec_del_ops, (void *)id);
}

int avm_lmdb_exec_each(avm_lmdb *db,
                       void (*fn)(void *arg, const char *id, uint8_t status), void *arg)
{
    /* Collected first and called after the read transaction ends, so that fn may
     * use the store (even write to it) while we iterate. */
    avm_buf ids;
    avm_buf_init(&ids);
    int rv = rtxn_begin(db);
    if (rv != 0)
        return rv;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(db->rtxn, db->execs, &cur);
    if (rc != 0) {
        mdb_txn_reset(db->rtxn);
        return lmdb_fail(db, rc, "reading from");
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != XREC_SIZE) {
            rv = id_corrupt(db, "execution record", k.mv_data, k.mv_size);
            break;
        }
        avm_buf_put(&ids, v.mv_data, 1); /* the status */
        avm_buf_put(&ids, k.mv_data, k.mv_size);
        avm_buf_put(&ids, "", 1);
    }
    if (rv == 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    mdb_cursor_close(cur);
    mdb_txn_reset(db->rtxn);
    if (rv == 0 && ids.err != 0)
        rv = failf(db, AVM_ENOMEM, "out of memory");
    for (size_t off = 0; rv == 0 && off < ids.len;) {
        const char *id = ids.data + off + 1;
        fn(arg, id, (uint8_t)ids.data[off]);
        off += 2 + strlen(id);
    }
    avm_buf_free(&ids);
    return rv;
}

int avm_lmdb_pure_each(avm_lmdb *db, void (*fn)(void *arg, const avm_lmdb_pureinfo *p),
                       void *arg)
{
    /* Collected first, called after the read transaction ends (as exec_each). */
    avm_lmdb_pureinfo *v = NULL;
    size_t n = 0, cap = 0;
    int rv = rtxn_begin(db);
    if (rv != 0)
        return rv;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(db->rtxn, db->pure, &cur);
    if (rc != 0) {
        mdb_txn_reset(db->rtxn);
        return lmdb_fail(db, rc, "reading from");
    }
    MDB_val k, d;
    for (rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT)) {
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            avm_lmdb_pureinfo *nv = realloc(v, nc * sizeof(*nv));
            if (nv == NULL) {
                rv = failf(db, AVM_ENOMEM, "out of memory");
                break;
            }
            v = nv;
            cap = nc;
        }
        avm_lmdb_pureinfo *p = &v[n];
        memset(p, 0, sizeof(*p));
        const uint8_t *hash;
        int drv = pure_rec_decode(d.mv_data, d.mv_size, &hash, &p->version, &p->by,
                                  &p->exec, &p->machine);
        if (drv != 0) {
            rv = id_corrupt(db, "pure-function entry", k.mv_data, k.mv_size);
            break;
        }
        memcpy(p->hash, hash, 32);
        if (avm_str_new(AVM_STR, k.mv_data, k.mv_size, &p->name) != 0) {
            avm_val_release(p->by);
            avm_val_release(p->exec);
            avm_val_release(p->machine);
            rv = failf(db, AVM_ENOMEM, "out of memory");
            break;
        }
        n++;
    }
    if (rv == 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    mdb_cursor_close(cur);
    mdb_txn_reset(db->rtxn);
    for (size_t i = 0; i < n; i++) {
        if (rv == 0)
            fn(arg, &v[i]);
        avm_val_release(v[i].name);
        avm_val_release(v[i].by);
        avm_val_release(v[i].exec);
        avm_val_release(v[i].machine);
    }
    free(v);
    return rv;
}

/* Deletes id's trace log and leaves its record without one. */
static int trace_clear_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    const char *id = arg;
    size_t idlen = strlen(id);
    xrec r;
    int rv = xrec_get(db, txn, id, idlen, &r);
    if (rv == AVM_ENOTFOUND || (rv == 0 && r.head == 0 && r.tlen == 0))
        return 0;
    if (rv == 0)
        rv = chunks_del(db, txn, id, idlen, r.head, mrc);
    if (rv != 0)
        return rv;
    r.head = r.tlen = 0;
    return xrec_put(db, txn, id, idlen, &r, mrc);
}

static const wtx_ops trace_clear_ops = {trace_clear_body, NULL, NULL};

int avm_lmdb_trace_clear(avm_lmdb *db, const char *id)
{
    int rv = id_check(db, id, 9);
    if (rv != 0)
        return rv == AVM_ETOOBIG ? 0 : rv; /* such a trace cannot exist */
    return write_txn(db, "deleting a trace log from", &trace_clear_ops, (void *)id);
}

int avm_lmdb_trace_log(avm_lmdb *db, const char *id, avm_buf *out)
{
    avm_buf_init(out);
    int rv = id_check(db, id, 9);
    if (rv == AVM_ETOOBIG)
        return 0; /* such a trace cannot exist */
    if (rv != 0)
        return rv;
    if ((rv = rtxn_begin(db)) != 0)
        return rv;
    size_t idlen = strlen(id);
    xrec r;
    rv = xrec_get(db, db->rtxn, id, idlen, &r);
    if (rv == AVM_ENOTFOUND) {
        rv = 0; /* no execution, no log */
        goto out;
    }
    if (rv != 0 || r.tlen == 0)
        goto out;
    if (r.tlen >= SIZE_MAX || avm_buf_reserve(out, (size_t)r.tlen) != 0) {
        rv = failf(db, AVM_ENOMEM, "out of memory reading the trace log of %s", id);
        goto out;
    }
    /* From the last chunk back, each copied to its place; chunks must follow each
     * other and start the log. */
    uint64_t end = r.tlen;
    for (uint64_t no = r.head; no != 0 && rv == 0;) {
        uint64_t at;
        MDB_val bytes;
        if ((rv = chunk_get(db, db->rtxn, id, idlen, no, &no, &at, &bytes)) != 0)
            break;
        if (bytes.mv_size > end || at != end - bytes.mv_size) {
            rv = failf(db, AVM_EIO,
                       "corrupt trace log of %s in %s: a chunk at byte %llu follows %llu "
                       "bytes",
                       id, db->path, (unsigned long long)end,
                       (unsigned long long)at + bytes.mv_size);
            break;
        }
        memcpy(out->data + at, bytes.mv_data, bytes.mv_size);
        end = at;
    }
    if (rv == 0 && end != 0)
        rv = failf(db, AVM_EIO,
                   "corrupt trace log of %s in %s: its first chunk starts at byte %llu",
                   id, db->path, (unsigned long long)end);
    if (rv == 0) {
        out->len = (size_t)r.tlen;
        out->data[out->len] = '\0';
    }
out:
    mdb_txn_reset(db->rtxn);
    if (rv != 0)
        avm_buf_free(out);
    return rv;
}

/* ---- Mailboxes -------------------------------------------------------------- */

/* Walks hand messages to the callback in chunks of about this many bytes (at least
 * one message), read in one read transaction and copied out of it, so that the
 * callback may write to the store (and grow the map) between chunks. */
#define EACH_CHUNK ((size_t)1 << 20)

typedef struct mbox_arg {
    const avm_val *oids;
    const uint8_t *const *msgs;
    const size_t *lens;
    size_t n;
    uint64_t *seqs;
} mbox_arg;

/* Numbers each message from its mailbox's counter (which this transaction's own
 * earlier puts have advanced) and stores it. Run again from scratch after a map
 * growth: everything it reads is in txn. */
static int mbox_put_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    mbox_arg *a = arg;
    for (size_t i = 0; i < a->n; i++) {
        avm_val oid = a->oids[i];
        MDB_val k = key_of(oid), v;
        uint64_t last = 0;
        int rc = mdb_get(txn, db->mbox_seq, &k, &v);
        if (rc == 0 && get_uint_v(&v, &last) != 0)
            return corrupt(db, "mailbox counter of", oid, AVM_EMALFORMED);
        if (rc != 0 && rc != MDB_NOTFOUND) {
            *mrc = rc;
            return AVM_EIO;
        }
        if (last == UINT64_MAX)
            return failf(
                db, AVM_ETOOBIG, "the mailbox of \"%.*s\" in %s is out of numbers",
                (int)(oid.u.s->len > 200 ? 200 : oid.u.s->len), oid.u.s->data, db->path);
        int rv = put_uint_k(txn, db->mbox_seq, &k, last + 1, mrc);
        if (rv != 0)
            return rv;
        char key[MBOX_KEY_MAX];
        MDB_val mk = {.mv_size = mbox_key(key, oid, last + 1), .mv_data = key};
        MDB_val mv = {.mv_size = a->lens[i],
                      .mv_data = a->lens[i] > 0 ? (void *)a->msgs[i] : (void *)""};
        rc = mdb_put(txn, db->mailboxes, &mk, &mv, MDB_NOOVERWRITE);
        if (rc == MDB_KEYEXIST)
            return corrupt(db, "mailbox (its counter is behind its messages) of", oid,
                           AVM_EMALFORMED);
        if (rc != 0) {
            *mrc = rc;
            return AVM_EIO;
        }
        a->seqs[i] = last + 1;
    }
    return 0;
}

static const wtx_ops mbox_put_ops = {mbox_put_body, NULL, NULL};

int avm_lmdb_mbox_put_batch(avm_lmdb *db, const avm_val *oids, const uint8_t *const *msgs,
                            const size_t *lens, size_t n, uint64_t *seqs)
{
    for (size_t i = 0; i < n; i++)
        seqs[i] = 0;
    for (size_t i = 0; i < n; i++) {
        int rv = mbox_oid_check(db, oids[i], "posting a message in");
        if (rv != 0)
            return rv;
        if (!mbox_key_ok(db, oids[i]))
            return failf(db, AVM_ETOOBIG,
                         "posting a message in %s: object id of %u bytes exceeds the "
                         "mailbox key limit of %zu bytes",
                         db->path, oids[i].u.s->len, db->maxkey - 9);
        if (lens[i] > AVM_LMDB_MSG_MAX)
            return failf(db, AVM_ETOOBIG,
                         "posting a message in %s: a message of %zu bytes exceeds the "
                         "limit of %zu bytes",
                         db->path, lens[i], AVM_LMDB_MSG_MAX);
    }
    if (n == 0)
        return 0;
    mbox_arg a = {oids, msgs, lens, n, seqs};
    int rv = write_txn(db, "posting a message in", &mbox_put_ops, &a);
    if (rv != 0)
        for (size_t i = 0; i < n; i++)
            seqs[i] = 0;
    return rv;
}

int avm_lmdb_mbox_put(avm_lmdb *db, avm_val oid, const uint8_t *msg, size_t len,
                      uint64_t *seq)
{
    return avm_lmdb_mbox_put_batch(db, &oid, &msg, &len, 1, seq);
}

int avm_lmdb_mbox_count(avm_lmdb *db, avm_val oid, size_t *n)
{
    *n = 0;
    int rv = mbox_oid_check(db, oid, "counting the messages in");
    if (rv != 0 || !mbox_key_ok(db, oid))
        return rv;
    if ((rv = rtxn_begin(db)) != 0)
        return rv;
    size_t len = oid.u.s->len;
    char key[MBOX_KEY_MAX];
    MDB_val k = {.mv_size = mbox_key(key, oid, 0), .mv_data = key}, v;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(db->rtxn, db->mailboxes, &cur);
    if (rc == 0) {
        /* Every key of oid starts with oid, 0x00, and has 9 bytes after oid; a key
         * with that start and another length belongs to an id that extends oid
         * with a NUL byte, and is skipped. */
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             rc == 0 && k.mv_size > len && memcmp(k.mv_data, key, len + 1) == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            *n += k.mv_size == len + 9;
        mdb_cursor_close(cur);
    }
    mdb_txn_reset(db->rtxn);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        *n = 0;
        return lmdb_fail(db, rc, "reading from");
    }
    return 0;
}

/* One message copied out of a read transaction: header, key, then the bytes. */
typedef struct each_rec {
    size_t klen, dlen;
} each_rec;

/* Copies messages from the one after *resume (or the first, when resume is empty)
 * into chunk until it holds about EACH_CHUNK bytes; *more says whether any are
 * left. resume is set to the last key copied. */
static int each_read(avm_lmdb *db, avm_buf *resume, avm_buf *chunk, bool *more)
{
    *more = false;
    int rv = rtxn_begin(db);
    if (rv != 0)
        return rv;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(db->rtxn, db->mailboxes, &cur);
    if (rc != 0) {
        mdb_txn_reset(db->rtxn);
        return lmdb_fail(db, rc, "reading from");
    }
    MDB_val k = {.mv_size = resume->len, .mv_data = resume->data}, v;
    if (resume->len == 0) {
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    } else {
        /* The last key copied may have been deleted since (acked by the callback):
         * then the cursor is already on the next one. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == 0 && k.mv_size == resume->len &&
            memcmp(k.mv_data, resume->data, resume->len) == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 10 || ((const char *)k.mv_data)[k.mv_size - 9] != '\0') {
            rv = failf(db, AVM_EIO, "corrupt data in %s: a mailbox key of %zu bytes",
                       db->path, k.mv_size);
            break;
        }
        each_rec h = {k.mv_size, v.mv_size};
        avm_buf_put(chunk, &h, sizeof(h));
        avm_buf_put(chunk, k.mv_data, k.mv_size);
        avm_buf_put(chunk, v.mv_data, v.mv_size);
        resume->len = 0;
        avm_buf_put(resume, k.mv_data, k.mv_size);
        if (chunk->err != 0 || resume->err != 0) {
            rv = failf(db, AVM_ENOMEM, "out of memory");
            break;
        }
        if (chunk->len >= EACH_CHUNK) {
            *more = true;
            break;
        }
    }
    if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    mdb_cursor_close(cur);
    mdb_txn_reset(db->rtxn);
    return rv;
}

int avm_lmdb_mbox_each(avm_lmdb *db,
                       int (*fn)(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg,
                                 size_t len),
                       void *arg)
{
    avm_buf resume, chunk;
    avm_buf_init(&resume);
    avm_buf_init(&chunk);
    int rv = 0;
    bool more = true;
    while (rv == 0 && more) {
        chunk.len = 0;
        if ((rv = each_read(db, &resume, &chunk, &more)) != 0)
            break;
        for (size_t off = 0; rv == 0 && off < chunk.len;) {
            each_rec h;
            memcpy(&h, chunk.data + off, sizeof(h));
            const char *k = chunk.data + off + sizeof(h);
            const uint8_t *q = (const uint8_t *)k + h.klen - 8;
            uint64_t seq = 0;
            for (int i = 0; i < 8; i++)
                seq = seq << 8 | q[i];
            avm_val oid;
            if (avm_str_new(AVM_OBJID, k, h.klen - 9, &oid) != 0) {
                rv = failf(db, AVM_ENOMEM, "out of memory");
                break;
            }
            rv = fn(arg, oid, seq, (const uint8_t *)k + h.klen, h.dlen);
            avm_val_release(oid);
            off += sizeof(h) + h.klen + h.dlen;
        }
    }
    avm_buf_free(&resume);
    avm_buf_free(&chunk);
    return rv;
}

int avm_lmdb_stats_get(avm_lmdb *db, avm_lmdb_stats *st)
{
    memset(st, 0, sizeof(*st));
    int rv = rtxn_begin(db);
    if (rv != 0)
        return rv;
    MDB_stat s;
    int rc = mdb_stat(db->rtxn, db->objects, &s);
    if (rc == 0)
        st->objects = s.ms_entries;
    if (rc == 0 && (rc = mdb_stat(db->rtxn, db->behaviours, &s)) == 0)
        st->modules = s.ms_entries;
    if (rc == 0 && (rc = mdb_stat(db->rtxn, db->pure, &s)) == 0)
        st->pure = s.ms_entries;
    if (rc == 0 && (rc = mdb_stat(db->rtxn, db->execs, &s)) == 0)
        st->executions = s.ms_entries;
    if (rc == 0 && (rc = mdb_stat(db->rtxn, db->mailboxes, &s)) == 0)
        st->mailbox = s.ms_entries;
    mdb_txn_reset(db->rtxn);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    MDB_envinfo info;
    mdb_env_info(db->env, &info);
    mdb_env_stat(db->env, &s);
    st->map_size = info.me_mapsize;
    st->map_used = (info.me_last_pgno + 1) * (size_t)s.ms_psize;
    st->commits = db->commits;
    st->batches = db->batches;
    return 0;
}

/* ---- Open and close --------------------------------------------------------- */

static int get_uint_meta(avm_lmdb *db, MDB_txn *txn, const char *key, uint64_t *v)
{
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key}, d;
    int rc = mdb_get(txn, db->meta, &k, &d);
    if (rc == MDB_NOTFOUND)
        return AVM_ENOTFOUND;
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    if (get_uint_v(&d, v) != 0)
        return failf(db, AVM_EIO, "corrupt data in %s: meta \"%s\" is not a number",
                     db->path, key);
    return 0;
}

static const struct {
    const char *name;
    size_t off;
} dbs[] = {
    {"meta", offsetof(avm_lmdb, meta)},
    {"objects", offsetof(avm_lmdb, objects)},
    {"states", offsetof(avm_lmdb, states)},
    {"behaviours", offsetof(avm_lmdb, behaviours)},
    {"pure", offsetof(avm_lmdb, pure)},
    {"execs", offsetof(avm_lmdb, execs)},
    {"checkpoints", offsetof(avm_lmdb, checkpoints)},
    {"trace_chunks", offsetof(avm_lmdb, chunks)},
    /* Added after format 1 was first written, without a format change: an
     * environment that lacks them gets them (empty) at its next open. */
    {"mailboxes", offsetof(avm_lmdb, mailboxes)},
    {"mailbox_seq", offsetof(avm_lmdb, mbox_seq)},
    {"exec_labels", offsetof(avm_lmdb, labels)},
    /* Added in format 2, likewise without a format change. */
    {"raft_log", offsetof(avm_lmdb, raft_log)},
    {"raft_meta", offsetof(avm_lmdb, raft_meta)},
    {"raft_kv", offsetof(avm_lmdb, raft_kv)},
};
/* Format 1's executions and traces are opened too while it is migrated. */
_Static_assert(sizeof(dbs) / sizeof(dbs[0]) + 2 <= MAX_DBS, "raise MAX_DBS");

/* One past the last number in use in dbi (keys of 8 bytes, big-endian), or 1. A
 * number deleted at the end may be handed out again: nothing refers to it. */
static int next_number(avm_lmdb *db, MDB_txn *txn, MDB_dbi dbi, const char *what,
                       uint64_t *next, int *mrc)
{
    MDB_cursor *cur;
    if ((*mrc = mdb_cursor_open(txn, dbi, &cur)) != 0)
        return AVM_EIO;
    MDB_val k, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    *next = 1;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0) {
        *mrc = rc;
        return AVM_EIO;
    }
    if (k.mv_size != 8 || be_get(k.mv_data, 8) == UINT64_MAX)
        return failf(db, AVM_EIO, "corrupt data in %s: a key of %s", db->path, what);
    *next = be_get(k.mv_data, 8) + 1;
    return 0;
}

/* Format 1 kept an execution's record as [status, state bin] in "executions" and
 * its trace chunks under (id, 0x00, 8-byte big-endian offset) in "traces". Both
 * move to format 2 in the open's write transaction: the states into blobs, the
 * chunks (key order is offset order) into their logs' chains. A chunk whose id has
 * no record is dropped: format 1 wrote none (a chunk came with its checkpoint, and
 * exec_del deleted both), and no call could reach one through its execution. */
static int migrate_v1(avm_lmdb *db, MDB_txn *txn, int *mrc)
{
    MDB_dbi xdbi, tdbi;
    MDB_cursor *cur;
    MDB_val k, v;
    int rv = 0, rc = mdb_dbi_open(txn, "executions", 0, &xdbi);
    if (rc == 0 && (rc = mdb_cursor_open(txn, xdbi, &cur)) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && rv == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            avm_mp_reader r;
            avm_mp_reader_init(&r, v.mv_data, v.mv_size, AVM_DECODE_DEFAULT_MAX);
            uint32_t n, blen;
            uint64_t st;
            const uint8_t *p;
            rv = avm_mp_get_array(&r, &n);
            if (rv == 0 && n != 2)
                rv = AVM_EMALFORMED;
            if (rv == 0)
                rv = avm_mp_get_uint(&r, &st);
            if (rv == 0 && st > UINT8_MAX)
                rv = AVM_EMALFORMED;
            if (rv == 0)
                rv = avm_mp_get_bin(&r, &p, &blen);
            if (rv == 0 && r.p != r.end)
                rv = AVM_EMALFORMED;
            xrec loc;
            if (rv != 0)
                rv = id_corrupt(db, "format 1 execution record", k.mv_data, k.mv_size);
            else
                rv = ck_stage(db, txn, k.mv_data, k.mv_size, p, blen, &loc, mrc);
            if (rv == 0)
                rv = ck_put(db, txn, k.mv_data, k.mv_size, (uint8_t)st, &loc, NULL, 0, 0,
                            mrc);
        }
        mdb_cursor_close(cur);
        if (rv == 0 && rc == MDB_NOTFOUND)
            rc = mdb_drop(txn, xdbi, 1);
    }
    if (rv != 0 || (rc != 0 && rc != MDB_NOTFOUND))
        goto out;
    if ((rc = mdb_dbi_open(txn, "traces", 0, &tdbi)) == 0 &&
        (rc = mdb_cursor_open(txn, tdbi, &cur)) == 0) {
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && rv == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const char *id = k.mv_data;
            size_t idlen = k.mv_size - 9;
            xrec x;
            if (k.mv_size < 10 || id[idlen] != '\0') {
                rv = id_corrupt(db, "format 1 trace key", id, k.mv_size);
                break;
            }
            uint64_t at = be_get((const uint8_t *)id + idlen + 1, 8);
            if ((rv = xrec_get(db, txn, id, idlen, &x)) == AVM_ENOTFOUND) {
                rv = 0;
                continue;
            }
            if (rv == 0 && v.mv_size > PART_MAX)
                rv = id_corrupt(db, "format 1 trace chunk", id, idlen);
            if (rv == 0)
                rv = chunk_add(db, txn, id, idlen, x.head, at, v.mv_data, v.mv_size,
                               &x.head, mrc);
            if (rv == 0) {
                x.tlen = at + v.mv_size;
                rv = xrec_put(db, txn, id, idlen, &x, mrc);
            }
        }
        mdb_cursor_close(cur);
        if (rv == 0 && rc == MDB_NOTFOUND)
            rc = mdb_drop(txn, tdbi, 1);
    }
out:
    if (rv != 0)
        return rv;
    if (rc != 0 && rc != MDB_NOTFOUND) {
        *mrc = rc;
        return AVM_EIO;
    }
    if ((rv = ck_finish(db, txn, mrc)) != 0)
        return rv;
    return put_uint(txn, db->meta, "format", AVM_LMDB_FORMAT, mrc);
}

/* Opens the named databases, creating them (and the format) in a new
 * environment, checks the format of an existing one, and migrates format 1. */
static int init_body(avm_lmdb *db, MDB_txn *txn, void *arg, int *mrc)
{
    MDB_dbi main;
    MDB_stat st;
    if ((*mrc = mdb_dbi_open(txn, NULL, 0, &main)) != 0 ||
        (*mrc = mdb_stat(txn, main, &st)) != 0)
        return AVM_EIO;
    bool fresh = st.ms_entries == 0;
    uint64_t format = AVM_LMDB_FORMAT;
    if (!fresh) {
        int rc = mdb_dbi_open(txn, "meta", 0, &db->meta);
        int rv = rc == 0 ? get_uint_meta(db, txn, "format", &format) : AVM_ENOTFOUND;
        if (rc != 0 && rc != MDB_NOTFOUND && rc != MDB_INCOMPATIBLE) {
            *mrc = rc;
            return AVM_EIO;
        }
        if (rv == AVM_ENOTFOUND)
            return failf(db, AVM_EVERSION,
                         "%s holds an LMDB environment without a storage format version "
                         "(this build reads format %d): refusing to open it",
                         db->path, AVM_LMDB_FORMAT);
        if (rv != 0)
            return rv;
        if (format != AVM_LMDB_FORMAT && format != 1)
            return failf(
                db, AVM_EVERSION,
                "%s has storage format %llu, but this build reads only format %d "
                "(and migrates format 1)%s",
                db->path, (unsigned long long)format, AVM_LMDB_FORMAT,
                format > AVM_LMDB_FORMAT ? " (written by a newer version)" : "");
    }
    for (size_t i = 0; i < sizeof(dbs) / sizeof(dbs[0]); i++) {
        MDB_dbi *dbi = (MDB_dbi *)((char *)db + dbs[i].off);
        if ((*mrc = mdb_dbi_open(txn, dbs[i].name, MDB_CREATE, dbi)) != 0)
            return AVM_EIO;
    }
    int rv = next_number(db, txn, db->checkpoints, "checkpoints", &db->blob_next, mrc);
    if (rv == 0)
        rv = next_number(db, txn, db->chunks, "trace_chunks", &db->chunk_next, mrc);
    if (rv != 0)
        return rv;
    ck_begin(db);
    if (fresh) {
        rv = put_uint(txn, db->meta, "format", AVM_LMDB_FORMAT, mrc);
        if (rv == 0)
            rv = put_uint(txn, db->meta, "seq", 0, mrc);
        return rv;
    }
    if (format == 1 && (rv = migrate_v1(db, txn, mrc)) != 0) {
        if (*mrc == 0) { /* LMDB's failures are named by write_txn */
            char why[sizeof(db->errmsg)];
            memcpy(why, db->errmsg, sizeof(why));
            failf(db, rv, "%s (migrating it from storage format 1 to format %d)", why,
                  AVM_LMDB_FORMAT);
        }
        return rv;
    }
    rv = get_uint_meta(db, txn, "seq", &db->seq_limit);
    if (rv == AVM_ENOTFOUND)
        return failf(db, AVM_EIO, "corrupt data in %s: meta \"seq\" is missing",
                     db->path);
    return rv;
}

static const wtx_ops init_ops = {init_body, ck_done_v, ck_undo_v};

int avm_lmdb_open(const avm_lmdb_config *cfg, avm_lmdb **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    if (errlen > 0)
        errmsg[0] = '\0';
    if (cfg == NULL || cfg->path == NULL || cfg->path[0] == '\0') {
        snprintf(errmsg, errlen, "no data directory given");
        return AVM_EINVAL;
    }
    int rv, rc;
    avm_lmdb *db = calloc(1, sizeof(*db));
    if (db == NULL)
        goto err_nomem;
    db->base.ops = &lmdb_ops;
    db->lockfd = -1;
    if ((db->path = strdup(cfg->path)) == NULL)
        goto err_nomem;
    db->map_max = cfg->map_max ? cfg->map_max : DEFAULT_MAP_MAX;
    size_t map_size = cfg->map_size ? cfg->map_size : DEFAULT_MAP_SIZE;
    if (map_size > db->map_max)
        map_size = db->map_max;

    if (mkdir(db->path, 0755) != 0 && errno != EEXIST) {
        rc = errno;
        goto err_errno;
    }
    /* The single-writer lock, taken before LMDB opens anything: LMDB's own locks
     * are fcntl locks that any close() of its files in this process would drop. */
    char lockpath[4096];
    if (snprintf(lockpath, sizeof(lockpath), "%s/avm.lock", db->path) >=
        (int)sizeof(lockpath)) {
        rc = ENAMETOOLONG;
        goto err_errno;
    }
    if ((db->lockfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0644)) < 0) {
        rc = errno;
        goto err_errno;
    }
    if (flock(db->lockfd, LOCK_EX | LOCK_NB) != 0) {
        rc = errno;
        if (rc != EWOULDBLOCK)
            goto err_errno;
        snprintf(errmsg, errlen, "data directory %s is in use by another process",
                 db->path);
        rv = AVM_ESTATE;
        goto err;
    }

    if ((rc = mdb_env_create(&db->env)) != 0)
        goto err_lmdb;
    if ((rc = mdb_env_set_maxdbs(db->env, MAX_DBS)) != 0 ||
        (rc = mdb_env_set_maxreaders(db->env, MAX_READERS)) != 0 ||
        (rc = mdb_env_set_mapsize(db->env, map_size)) != 0 ||
        (rc = mdb_env_open(db->env, db->path, MDB_NOTLS | (cfg->nosync ? MDB_NOSYNC : 0),
                           0644)) != 0)
        goto err_lmdb;
    db->maxkey = (size_t)mdb_env_get_maxkeysize(db->env);
    /* Reader slots of processes that died (a killed node) are reclaimed. */
    int dead;
    mdb_reader_check(db->env, &dead);
    if ((rv = write_txn(db, "opening", &init_ops, NULL)) != 0) {
        snprintf(errmsg, errlen, "%s", db->errmsg);
        goto err;
    }
    db->seq = db->seq_limit;
    if ((rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &db->rtxn)) != 0)
        goto err_lmdb;
    mdb_txn_reset(db->rtxn);
    *out = db;
    return 0;

err_errno:
    snprintf(errmsg, errlen, "cannot open %s: %s (%s)", db->path, cause_of(rc),
             strerror(rc));
    rv = rc == ENOMEM ? AVM_ENOMEM : AVM_EIO;
    goto err;
err_lmdb:
    fmt_lmdb(errmsg, errlen, rc, "cannot open", db->path);
    rv = code_of(rc);
    goto err;
err_nomem:
    snprintf(errmsg, errlen, "out of memory opening %s", cfg->path);
    rv = AVM_ENOMEM;
err:
    avm_lmdb_close(db);
    return rv;
}

void avm_lmdb_close(avm_lmdb *db)
{
    if (db == NULL)
        return;
    if (db->stxn != NULL)
        stage_break(db); /* not committed: lost, as a crash would lose it */
    while (db->snaps != NULL)
        snap_free(db, db->snaps); /* the owner forgot them; LMDB needs them gone */
    for (size_t i = 0; i < db->npool; i++)
        mdb_txn_abort(db->pool[i]);
    if (db->rtxn != NULL)
        mdb_txn_abort(db->rtxn);
    if (db->env != NULL)
        mdb_env_close(db->env);
    if (db->lockfd >= 0)
        close(db->lockfd); /* releases the flock */
    tab_clear(&db->cache, centry_release_v);
    tab_clear(&db->grave, centry_release_v);
    tab_clear(&db->pures, pentry_release_v);
    tab_clear(&db->blobs, free);
    avm_buf_free(&db->ck.hot.buf);
    avm_buf_free(&db->ck.cold.buf);
    avm_buf_free(&db->ck.tmp);
    free(db->ck.touched);
    free(db->ck.locs);
    for (size_t i = 0; i < db->mods.cap; i++)
        if (db->mods.s[i].m != NULL)
            avm_module_release(db->mods.s[i].m);
    free(db->mods.s);
    avm_buf_free(&db->scratch);
    free(db->path);
    free(db);
}

avm_store *avm_lmdb_store(avm_lmdb *db)
{
    return &db->base;
}

const char *avm_lmdb_errmsg(const avm_lmdb *db)
{
    return db->errmsg;
}

const char *avm_lmdb_io_failure(const avm_lmdb *db)
{
    return db->iofail[0] != '\0' ? db->iofail : NULL;
}

/* ---- Staging: a round's commits in one open write transaction ---------------- */

/* Free map space a round may use before it could hit MDB_MAP_FULL, which a staged
 * round cannot survive (its commits have been answered). The execution manager
 * commits a round once it holds 8 MiB. */
#define STAGE_HEADROOM ((size_t)64 << 20)

static const avm_objrec *stage_get(avm_lmdb *db, avm_val oid, bool *hit)
{
    tslot *e = tab_find(&db->stage->objs, oid);
    *hit = e != NULL;
    if (e == NULL)
        return NULL;
    ov *o = e->val;
    return o->rec != NULL ? &o->rec->r : NULL;
}

static void stage_free(avm_lmdb *db)
{
    batch *b = db->stage;
    tab_clear(&b->objs, ov_release_v);
    avm_val_release(b->empty);
    free(b);
    db->stage = NULL;
    db->stxn = NULL;
    db->staged_bytes = db->staged_n = 0;
}

/* The staged round is lost: aborted, as a crash would lose it. */
static void stage_break(avm_lmdb *db)
{
    if (db->stxn == NULL)
        return;
    mdb_txn_abort(db->stxn);
    ck_undo(db);
    stage_free(db);
    db->stage_broken = true;
    db->seq_dirty = true; /* the reservation rode on the lost transaction */
}

/* Opens a round, first growing the map so that it has STAGE_HEADROOM free bytes
 * beyond twice `need` (the size of the write that opens it). */
static int stage_begin(avm_lmdb *db, size_t need)
{
    MDB_envinfo info;
    MDB_stat st;
    mdb_env_info(db->env, &info);
    mdb_env_stat(db->env, &st);
    size_t used = (info.me_last_pgno + 1) * (size_t)st.ms_psize;
    size_t room = need > SIZE_MAX / 4 ? SIZE_MAX / 2 : STAGE_HEADROOM + 2 * need;
    while (info.me_mapsize - used < room && info.me_mapsize < db->map_max) {
        int rv = grow_map(db);
        if (rv != 0)
            return rv;
        mdb_env_info(db->env, &info);
    }
    cache_trim(db);
    batch *b = calloc(1, sizeof(*b));
    if (b == NULL || avm_list_new(0, &b->empty) != 0) {
        free(b);
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    int mrc = mdb_txn_begin(db->env, NULL, 0, &db->stxn);
    if (mrc != 0) {
        avm_val_release(b->empty);
        free(b);
        db->stxn = NULL;
        return lmdb_fail(db, mrc, "commit to");
    }
    db->stage = b;
    db->staged_bytes = db->staged_n = 0;
    ck_begin(db);
    return 0;
}

int avm_lmdb_stage(avm_lmdb *db, const avm_writeset *ws, const avm_lmdb_ack *acks,
                   size_t nacks, bool *committed)
{
    *committed = false;
    if (db->stage_broken)
        return failf(db, AVM_EIO, "commit to %s: an earlier staged round was lost",
                     db->path);
    int rv = check_input(db, ws);
    for (size_t j = 0; rv == 0 && acks != NULL && j < nacks; j++)
        rv = mbox_oid_check(db, acks[j].oid, "acknowledging a message in");
    if (rv != 0)
        return rv; /* refused before anything changed */
    if (db->stxn == NULL && (rv = stage_begin(db, 0)) != 0)
        return rv;
    batch *b = db->stage;
    int mrc = 0;
    rv = ws_validate(db, db->stxn, b, ws, committed, &mrc);
    if (rv == 0 && *committed)
        rv = ws_apply(db, db->stxn, b, ws, &mrc);
    if (rv == 0 && *committed && ws->ckpt_id != NULL) {
        /* The state joins the round's blob (copied) and the record points to it;
         * the trace chunk is copied into the transaction now. */
        size_t idlen = strlen(ws->ckpt_id);
        xrec loc;
        rv = ck_stage(db, db->stxn, ws->ckpt_id, idlen, ws->ckpt_state, ws->ckpt_len,
                      &loc, &mrc);
        if (rv == 0)
            rv = ck_put(db, db->stxn, ws->ckpt_id, idlen, ws->ckpt_status, &loc,
                        ws->ckpt_trace, ws->ckpt_trace_len, ws->ckpt_trace_at, &mrc);
        if (rv == 0)
            rv = label_put(db, db->stxn, ws, &mrc);
    }
    if (rv == 0 && *committed && acks != NULL && nacks > 0)
        rv = ack_del(db, db->stxn, acks, nacks, &mrc);
    if (rv != 0) {
        if (mrc != 0)
            lmdb_fail(db, mrc, "commit to");
        *committed = false;
        stage_break(db);
        return rv;
    }
    db->staged_n += *committed;
    db->staged_bytes += 64 + ws->ckpt_len + ws->ckpt_trace_len +
                        64 * (ws->nstates + ws->ncreates + ws->ndestroys);
    return 0;
}

int avm_lmdb_stage_commit(avm_lmdb *db)
{
    if (db->stxn == NULL)
        return db->stage_broken ? AVM_EIO : 0;
    batch *b = db->stage;
    int mrc = 0;
    int rv = objs_write(db, db->stxn, b, &mrc);
    if (rv == 0)
        rv = ck_finish(db, db->stxn, &mrc);
    if (rv == 0 && tab_reserve(&db->cache, b->objs.count) != 0)
        rv = failf(db, AVM_ENOMEM, "out of memory");
    if (rv == 0 && db->seq_dirty)
        rv = put_uint(db->stxn, db->meta, "seq", db->seq_limit, &mrc);
    if (rv == 0) {
        mrc = mdb_txn_commit(db->stxn); /* frees the transaction either way */
        db->stxn = NULL;
        rv = mrc == 0 ? 0 : AVM_EIO;
    }
    if (rv != 0) {
        if (mrc != 0)
            lmdb_fail(db, mrc, "commit to");
        if (db->stxn != NULL)
            mdb_txn_abort(db->stxn);
        ck_undo(db);
        stage_free(db);
        db->stage_broken = true;
        db->seq_dirty = true;
        return rv;
    }
    db->seq_dirty = false;
    ck_done(db);
    db->commits += db->staged_n;
    b->n = 0; /* counted above */
    batch_done(db, b);
    stage_free(db);
    return 0;
}

bool avm_lmdb_stage_broken(const avm_lmdb *db)
{
    return db->stage_broken;
}

bool avm_lmdb_staged_any(const avm_lmdb *db)
{
    return db->stxn != NULL;
}

size_t avm_lmdb_staged_bytes(const avm_lmdb *db)
{
    return db->staged_bytes;
}

/* ---- Raft groups ------------------------------------------------------------ */

/* Keys of the raft databases: the group's name, 0x00, then a suffix (see the
 * layout atop this file). Key buffers are this big; names and keys beyond it, or
 * beyond LMDB's key limit, are refused. */
#define RKEY_MAX 600
/* What a log entry's value holds before its bytes: term and type. */
#define RENT_HDR 9

static size_t rkey_limit(const avm_lmdb *db)
{
    return db->maxkey < RKEY_MAX ? db->maxkey : RKEY_MAX;
}

/* A group name must leave room for a log key (and `extra` bytes of suffix). */
static int group_check(avm_lmdb *db, const char *group, size_t extra, const char *what)
{
    if (group == NULL || group[0] == '\0')
        return failf(db, AVM_EINVAL, "%s %s: a raft group needs a name", what, db->path);
    size_t len = strlen(group);
    size_t suffix = extra > 8 ? extra : 8;
    if (len + 1 + suffix > rkey_limit(db))
        return failf(db, AVM_ETOOBIG,
                     "%s %s: a raft group name and key of %zu bytes exceed the key limit "
                     "of %zu bytes",
                     what, db->path, len + 1 + suffix, rkey_limit(db));
    return 0;
}

/* group, 0x00, suffix into k (room checked by group_check); returns its length. */
static size_t rkey(uint8_t *k, const char *group, size_t glen, const void *suffix,
                   size_t slen)
{
    memcpy(k, group, glen);
    k[glen] = 0;
    if (slen > 0)
        memcpy(k + glen + 1, suffix, slen);
    return glen + 1 + slen;
}

static size_t log_key(uint8_t *k, const char *group, size_t glen, uint64_t index)
{
    uint8_t be[8];
    be_put(be, index, 8);
    return rkey(k, group, glen, be, 8);
}

static bool has_prefix(const MDB_val *k, const uint8_t *prefix, size_t plen)
{
    return k->mv_size >= plen && memcmp(k->mv_data, prefix, plen) == 0;
}

/* The checks of every raft write, then the round it joins (opened if needed, with
 * room for `need` bytes). Nothing is changed when it fails. */
static int raft_begin(avm_lmdb *db, const char *group, size_t extra, size_t need,
                      const char *what)
{
    if (db->stage_broken)
        return failf(db, AVM_EIO, "%s %s: an earlier staged round was lost", what,
                     db->path);
    int rv = group_check(db, group, extra, what);
    if (rv == 0 && db->stxn == NULL)
        rv = stage_begin(db, need);
    return rv;
}

/* A raft write failed after it may have changed the round: the round is lost. */
static int raft_fail(avm_lmdb *db, int rv, int mrc, const char *what)
{
    if (mrc != 0)
        rv = lmdb_fail(db, mrc, what);
    stage_break(db);
    return rv;
}

static void raft_done(avm_lmdb *db, size_t bytes)
{
    db->staged_bytes += 64 + bytes;
}

/* Deletes every key of dbi that starts with prefix. */
static int prefix_del(MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix, size_t plen,
                      int *mrc)
{
    MDB_cursor *cur;
    if ((*mrc = mdb_cursor_open(txn, dbi, &cur)) != 0)
        return AVM_EIO;
    int rc;
    for (;;) {
        /* Positioned afresh after each delete: simple and proof against LMDB's
         * cursor fix-ups. */
        MDB_val k = {.mv_size = plen, .mv_data = (void *)prefix}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || !has_prefix(&k, prefix, plen))
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    *mrc = rc == MDB_NOTFOUND ? 0 : rc;
    return *mrc == 0 ? 0 : AVM_EIO;
}

/* Deletes the group's log entries with from <= index <= upto. */
static int log_del(avm_lmdb *db, MDB_txn *txn, const char *group, uint64_t from,
                   uint64_t upto, int *mrc)
{
    size_t glen = strlen(group);
    uint8_t kb[RKEY_MAX];
    size_t klen = log_key(kb, group, glen, from);
    MDB_cursor *cur;
    if ((*mrc = mdb_cursor_open(txn, db->raft_log, &cur)) != 0)
        return AVM_EIO;
    int rc;
    for (;;) {
        MDB_val k = {.mv_size = klen, .mv_data = kb}, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc != 0 || !has_prefix(&k, kb, glen + 1))
            break;
        if (k.mv_size == klen && be_get((const uint8_t *)k.mv_data + glen + 1, 8) > upto)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    *mrc = rc == MDB_NOTFOUND ? 0 : rc;
    return *mrc == 0 ? 0 : AVM_EIO;
}

/* Puts a meta record (group, 0x00, tag) of len bytes, filled by the caller from
 * *out (room reserved in the transaction). */
static int meta_put(avm_lmdb *db, const char *group, char tag, size_t len, uint8_t **out,
                    int *mrc)
{
    uint8_t kb[RKEY_MAX];
    MDB_val k = {.mv_size = rkey(kb, group, strlen(group), &tag, 1), .mv_data = kb};
    MDB_val v = {.mv_size = len, .mv_data = NULL};
    *mrc = mdb_put(db->stxn, db->raft_meta, &k, &v, MDB_RESERVE);
    *out = v.mv_data;
    return *mrc == 0 ? 0 : AVM_EIO;
}

int avm_lmdb_raft_save_tv(avm_lmdb *db, const char *group, uint64_t term, uint64_t vote)
{
    const char *what = "saving a raft term and vote in";
    int rv = raft_begin(db, group, 1, 16, what), mrc = 0;
    if (rv != 0)
        return rv;
    uint8_t *p;
    if ((rv = meta_put(db, group, 'v', 16, &p, &mrc)) != 0)
        return raft_fail(db, rv, mrc, what);
    be_put(p, term, 8);
    be_put(p + 8, vote, 8);
    raft_done(db, 16);
    return 0;
}

int avm_lmdb_raft_set_applied(avm_lmdb *db, const char *group, uint64_t index)
{
    const char *what = "saving a raft applied index in";
    int rv = raft_begin(db, group, 1, 8, what), mrc = 0;
    if (rv != 0)
        return rv;
    uint8_t *p;
    if ((rv = meta_put(db, group, 'a', 8, &p, &mrc)) != 0)
        return raft_fail(db, rv, mrc, what);
    be_put(p, index, 8);
    raft_done(db, 8);
    return 0;
}

int avm_lmdb_raft_save_snapmeta(avm_lmdb *db, const char *group, uint64_t index,
                                uint64_t term, uint64_t conf_index, const uint8_t *conf,
                                size_t conf_len)
{
    const char *what = "saving raft snapshot metadata in";
    if (conf_len > 0 && conf == NULL)
        return failf(db, AVM_EINVAL, "%s %s: no configuration bytes", what, db->path);
    if (conf_len > SIZE_MAX / 4)
        return failf(db, AVM_ETOOBIG, "%s %s: a configuration of %zu bytes", what,
                     db->path, conf_len);
    int rv = raft_begin(db, group, 1, 24 + conf_len, what), mrc = 0;
    if (rv != 0)
        return rv;
    uint8_t *p;
    if ((rv = meta_put(db, group, 's', 24 + conf_len, &p, &mrc)) != 0)
        return raft_fail(db, rv, mrc, what);
    be_put(p, index, 8);
    be_put(p + 8, term, 8);
    be_put(p + 16, conf_index, 8);
    if (conf_len > 0)
        memcpy(p + 24, conf, conf_len);
    raft_done(db, 24 + conf_len);
    return 0;
}

int avm_lmdb_raft_save_entries(avm_lmdb *db, const char *group, uint64_t index,
                               const avm_lmdb_rentry *e, size_t n)
{
    const char *what = "saving raft entries in";
    if (index == 0 || n > UINT64_MAX - index)
        return failf(db, AVM_EINVAL, "%s %s: entries from index %llu (n = %zu)", what,
                     db->path, (unsigned long long)index, n);
    size_t need = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].len > 0 && e[i].data == NULL)
            return failf(db, AVM_EINVAL, "%s %s: entry %zu has no bytes", what, db->path,
                         i);
        if (e[i].len > SIZE_MAX / 8 - RENT_HDR - need)
            return failf(db, AVM_ETOOBIG, "%s %s: entries of more than %zu bytes", what,
                         db->path, SIZE_MAX / 8);
        need += RENT_HDR + e[i].len;
    }
    int rv = raft_begin(db, group, 8, need, what), mrc = 0;
    if (rv != 0)
        return rv;
    if ((rv = log_del(db, db->stxn, group, index, UINT64_MAX, &mrc)) != 0)
        return raft_fail(db, rv, mrc, what);
    size_t glen = strlen(group);
    uint8_t kb[RKEY_MAX];
    for (size_t i = 0; i < n; i++) {
        MDB_val k = {.mv_size = log_key(kb, group, glen, index + i), .mv_data = kb};
        MDB_val v = {.mv_size = RENT_HDR + e[i].len, .mv_data = NULL};
        if ((mrc = mdb_put(db->stxn, db->raft_log, &k, &v, MDB_RESERVE)) != 0)
            return raft_fail(db, AVM_EIO, mrc, what);
        uint8_t *p = v.mv_data;
        be_put(p, e[i].term, 8);
        p[8] = e[i].type;
        if (e[i].len > 0)
            memcpy(p + RENT_HDR, e[i].data, e[i].len);
    }
    raft_done(db, need);
    return 0;
}

int avm_lmdb_raft_delete_upto(avm_lmdb *db, const char *group, uint64_t upto)
{
    const char *what = "deleting raft entries in";
    int rv = raft_begin(db, group, 8, 0, what), mrc = 0;
    if (rv != 0)
        return rv;
    if ((rv = log_del(db, db->stxn, group, 0, upto, &mrc)) != 0)
        return raft_fail(db, rv, mrc, what);
    raft_done(db, 0);
    return 0;
}

int avm_lmdb_raft_delete_log(avm_lmdb *db, const char *group)
{
    return avm_lmdb_raft_delete_upto(db, group, UINT64_MAX);
}

static int kv_check(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen,
                    const char *what)
{
    if (klen > 0 && key == NULL)
        return failf(db, AVM_EINVAL, "%s %s: no key bytes", what, db->path);
    return group_check(db, group, klen, what);
}

int avm_lmdb_raft_kv_put(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen,
                         const uint8_t *val, size_t vlen)
{
    const char *what = "saving a raft key/value entry in";
    int rv = kv_check(db, group, key, klen, what), mrc = 0;
    if (rv == 0 && vlen > 0 && val == NULL)
        rv = failf(db, AVM_EINVAL, "%s %s: no value bytes", what, db->path);
    if (rv == 0 && vlen > SIZE_MAX / 4)
        rv = failf(db, AVM_ETOOBIG, "%s %s: a value of %zu bytes", what, db->path, vlen);
    if (rv == 0)
        rv = raft_begin(db, group, klen, klen + vlen, what);
    if (rv != 0)
        return rv;
    uint8_t kb[RKEY_MAX];
    MDB_val k = {.mv_size = rkey(kb, group, strlen(group), key, klen), .mv_data = kb};
    MDB_val v = {.mv_size = vlen, .mv_data = NULL};
    if ((mrc = mdb_put(db->stxn, db->raft_kv, &k, &v, MDB_RESERVE)) != 0)
        return raft_fail(db, AVM_EIO, mrc, what);
    if (vlen > 0)
        memcpy(v.mv_data, val, vlen);
    raft_done(db, klen + vlen);
    return 0;
}

int avm_lmdb_raft_kv_del(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen)
{
    const char *what = "deleting a raft key/value entry in";
    int rv = kv_check(db, group, key, klen, what);
    if (rv == AVM_ETOOBIG)
        return failf(db, AVM_ENOTFOUND, "%s %s: no such key", what, db->path);
    if (rv == 0)
        rv = raft_begin(db, group, klen, 0, what);
    if (rv != 0)
        return rv;
    uint8_t kb[RKEY_MAX];
    MDB_val k = {.mv_size = rkey(kb, group, strlen(group), key, klen), .mv_data = kb};
    int mrc = mdb_del(db->stxn, db->raft_kv, &k, NULL);
    if (mrc == MDB_NOTFOUND)
        return failf(db, AVM_ENOTFOUND, "%s %s: no such key", what, db->path);
    if (mrc != 0)
        return raft_fail(db, AVM_EIO, mrc, what);
    raft_done(db, 0);
    return 0;
}

int avm_lmdb_raft_drop(avm_lmdb *db, const char *group)
{
    const char *what = "dropping a raft group from";
    int rv = raft_begin(db, group, 8, 0, what), mrc = 0;
    if (rv != 0)
        return rv;
    uint8_t kb[RKEY_MAX];
    size_t plen = rkey(kb, group, strlen(group), NULL, 0);
    MDB_dbi dbis[3] = {db->raft_log, db->raft_meta, db->raft_kv};
    for (int i = 0; i < 3; i++)
        if ((rv = prefix_del(db->stxn, dbis[i], kb, plen, &mrc)) != 0)
            return raft_fail(db, rv, mrc, what);
    raft_done(db, 0);
    return 0;
}

/* Reads: in the staged round's transaction when one is open, else in the shared
 * read transaction (reset by read_end). */
static int read_begin(avm_lmdb *db, MDB_txn **txn)
{
    if (db->stxn != NULL) {
        *txn = db->stxn;
        return 0;
    }
    *txn = db->rtxn;
    return rtxn_begin(db);
}

static void read_end(avm_lmdb *db, MDB_txn *txn)
{
    if (txn == db->rtxn)
        mdb_txn_reset(db->rtxn);
}

static int group_corrupt(avm_lmdb *db, const char *group, const char *what)
{
    return failf(db, AVM_EIO, "corrupt raft %s of group \"%.200s\" in %s", what, group,
                 db->path);
}

/* Appends the name of every group with a key in dbi to names (each NUL-ended). */
static int groups_of(avm_lmdb *db, MDB_txn *txn, MDB_dbi dbi, avm_buf *names)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    uint8_t next[RKEY_MAX + 1];
    MDB_val k, v;
    int rv = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)) {
        const uint8_t *z = memchr(k.mv_data, 0, k.mv_size);
        size_t glen = z != NULL ? (size_t)(z - (const uint8_t *)k.mv_data) : 0;
        if (glen == 0 || glen > RKEY_MAX) {
            rv = failf(db, AVM_EIO, "corrupt data in %s: a raft key of %zu bytes",
                       db->path, k.mv_size);
            break;
        }
        avm_buf_put(names, k.mv_data, glen + 1);
        /* The least key after every key of this group: its name, then 0x01. */
        memcpy(next, k.mv_data, glen);
        next[glen] = 1;
        k.mv_size = glen + 1;
        k.mv_data = next;
    }
    mdb_cursor_close(cur);
    if (rv == 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    return rv;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int avm_lmdb_raft_groups(avm_lmdb *db, int (*fn)(void *arg, const char *group), void *arg)
{
    avm_buf names;
    avm_buf_init(&names);
    MDB_txn *txn;
    int rv = read_begin(db, &txn);
    if (rv != 0)
        return rv;
    MDB_dbi dbis[3] = {db->raft_meta, db->raft_log, db->raft_kv};
    for (int i = 0; rv == 0 && i < 3; i++)
        rv = groups_of(db, txn, dbis[i], &names);
    read_end(db, txn);
    size_t n = 0;
    for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1)
        n++;
    const char **v = NULL;
    if (rv == 0 && (names.err != 0 || (v = calloc(n + 1, sizeof(*v))) == NULL))
        rv = failf(db, AVM_ENOMEM, "out of memory");
    if (rv == 0) {
        size_t i = 0;
        for (size_t off = 0; off < names.len; off += strlen(names.data + off) + 1)
            v[i++] = names.data + off;
        qsort(v, n, sizeof(*v), cmp_cstr);
        for (i = 0; rv == 0 && i < n; i++)
            if (i == 0 || strcmp(v[i], v[i - 1]) != 0)
                rv = fn(arg, v[i]);
    }
    free(v);
    avm_buf_free(&names);
    return rv;
}

void avm_lmdb_rstate_free(avm_lmdb_rstate *s)
{
    if (s == NULL)
        return;
    free(s->snap_conf);
    free(s->e);
    free(s->mem);
    memset(s, 0, sizeof(*s));
}

/* The meta record (group, 0x00, tag) in *v; false when there is none. */
static int meta_get(avm_lmdb *db, MDB_txn *txn, const char *group, char tag, MDB_val *v,
                    bool *found)
{
    uint8_t kb[RKEY_MAX];
    MDB_val k = {.mv_size = rkey(kb, group, strlen(group), &tag, 1), .mv_data = kb};
    int rc = mdb_get(txn, db->raft_meta, &k, v);
    *found = rc == 0;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail(db, rc, "reading from");
    return 0;
}

/* Whether dbi has a key starting with the prefix. */
static int prefix_any(avm_lmdb *db, MDB_txn *txn, MDB_dbi dbi, const uint8_t *prefix,
                      size_t plen, bool *any)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    MDB_val k = {.mv_size = plen, .mv_data = (void *)prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    *any = rc == 0 && has_prefix(&k, prefix, plen);
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return lmdb_fail(db, rc, "reading from");
    return 0;
}

/* The group's log into out: a first walk checks the keys, counts the entries and
 * their bytes and checks that they follow each other, a second copies them. */
static int log_load(avm_lmdb *db, MDB_txn *txn, const char *group, avm_lmdb_rstate *out)
{
    size_t glen = strlen(group);
    uint8_t kb[RKEY_MAX];
    size_t klen = log_key(kb, group, glen, 0);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->raft_log, &cur);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    int rv = 0;
    size_t n = 0, bytes = 0;
    uint64_t first = 0, prev = 0;
    MDB_val k, v;
    for (int pass = 0; pass < 2 && rv == 0; pass++) {
        size_t i = 0, off = 0;
        k.mv_size = klen;
        k.mv_data = kb;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
             rc == 0 && has_prefix(&k, kb, glen + 1);
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            if (k.mv_size != klen || v.mv_size < RENT_HDR) {
                rv = group_corrupt(db, group, "log entry");
                break;
            }
            uint64_t index = be_get((const uint8_t *)k.mv_data + glen + 1, 8);
            size_t len = v.mv_size - RENT_HDR;
            if (pass == 0) {
                if (n == 0) {
                    first = index;
                } else if (index != prev + 1) {
                    rv =
                        failf(db, AVM_EIO,
                              "corrupt raft log of group \"%.200s\" in %s: entry %llu is "
                              "missing (entry %llu follows entry %llu)",
                              group, db->path, (unsigned long long)prev + 1,
                              (unsigned long long)index, (unsigned long long)prev);
                    break;
                }
                prev = index;
                n++;
                bytes += len;
                continue;
            }
            if (i == n) /* the walks agree: the transaction does not change */
                break;
            const uint8_t *p = v.mv_data;
            avm_lmdb_rentry *e = &out->e[i++];
            e->term = be_get(p, 8);
            e->type = p[8];
            e->data = out->mem + off;
            e->len = len;
            if (len > 0)
                memcpy(out->mem + off, p + RENT_HDR, len);
            off += len;
        }
        if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
            rv = lmdb_fail(db, rc, "reading from");
        if (rv == 0 && pass == 0) {
            if (n == 0)
                break;
            out->e = calloc(n, sizeof(*out->e));
            out->mem = malloc(bytes + 1);
            if (out->e == NULL || out->mem == NULL)
                rv = failf(db, AVM_ENOMEM, "out of memory loading the raft log of %.200s",
                           group);
        }
    }
    mdb_cursor_close(cur);
    if (rv == 0) {
        out->n = n;
        out->first_index = n > 0 ? first : out->has_snap ? out->snap_index + 1 : 1;
        if (out->has_snap && n > 0 && first > out->snap_index + 1)
            rv =
                failf(db, AVM_EIO,
                      "corrupt raft log of group \"%.200s\" in %s: entry %llu is missing "
                      "(the snapshot ends at %llu, the log starts at %llu)",
                      group, db->path, (unsigned long long)out->snap_index + 1,
                      (unsigned long long)out->snap_index, (unsigned long long)first);
    }
    return rv;
}

int avm_lmdb_raft_load(avm_lmdb *db, const char *group, avm_lmdb_rstate *out)
{
    memset(out, 0, sizeof(*out));
    int rv = group_check(db, group, 1, "loading a raft group from");
    if (rv != 0)
        return rv == AVM_ETOOBIG ? AVM_ENOTFOUND : rv;
    MDB_txn *txn;
    if ((rv = read_begin(db, &txn)) != 0)
        return rv;
    MDB_val v;
    bool found, any = false;
    if ((rv = meta_get(db, txn, group, 'v', &v, &found)) == 0 && found) {
        any = true;
        if (v.mv_size != 16) {
            rv = group_corrupt(db, group, "term and vote");
        } else {
            out->term = be_get(v.mv_data, 8);
            out->vote = be_get((const uint8_t *)v.mv_data + 8, 8);
        }
    }
    if (rv == 0 && (rv = meta_get(db, txn, group, 'a', &v, &found)) == 0 && found) {
        any = true;
        if (v.mv_size != 8)
            rv = group_corrupt(db, group, "applied index");
        else
            out->applied = be_get(v.mv_data, 8);
    }
    if (rv == 0 && (rv = meta_get(db, txn, group, 's', &v, &found)) == 0 && found) {
        any = true;
        const uint8_t *p = v.mv_data;
        if (v.mv_size < 24) {
            rv = group_corrupt(db, group, "snapshot metadata");
        } else if ((out->snap_conf = malloc(v.mv_size - 24 + 1)) == NULL) {
            rv = failf(db, AVM_ENOMEM, "out of memory");
        } else {
            out->has_snap = true;
            out->snap_index = be_get(p, 8);
            out->snap_term = be_get(p + 8, 8);
            out->snap_conf_index = be_get(p + 16, 8);
            out->snap_conf_len = v.mv_size - 24;
            memcpy(out->snap_conf, p + 24, out->snap_conf_len);
        }
    }
    if (rv == 0)
        rv = log_load(db, txn, group, out);
    if (rv == 0 && !any && out->n == 0) {
        uint8_t kb[RKEY_MAX];
        size_t plen = rkey(kb, group, strlen(group), NULL, 0);
        if ((rv = prefix_any(db, txn, db->raft_kv, kb, plen, &any)) == 0 && !any)
            rv = failf(db, AVM_ENOTFOUND, "no raft group \"%.200s\" in %s", group,
                       db->path);
    }
    read_end(db, txn);
    if (rv != 0)
        avm_lmdb_rstate_free(out);
    return rv;
}

int avm_lmdb_raft_kv_get(avm_lmdb *db, const char *group, const uint8_t *key, size_t klen,
                         avm_buf *out)
{
    avm_buf_init(out);
    int rv = kv_check(db, group, key, klen, "reading a raft key/value entry from");
    if (rv != 0)
        return rv == AVM_ETOOBIG ? AVM_ENOTFOUND : rv;
    MDB_txn *txn;
    if ((rv = read_begin(db, &txn)) != 0)
        return rv;
    uint8_t kb[RKEY_MAX];
    MDB_val k = {.mv_size = rkey(kb, group, strlen(group), key, klen), .mv_data = kb}, v;
    int rc = mdb_get(txn, db->raft_kv, &k, &v);
    if (rc == 0) {
        avm_buf_put(out, v.mv_data, v.mv_size);
        if (out->err != 0)
            rv = failf(db, AVM_ENOMEM, "out of memory");
    } else if (rc == MDB_NOTFOUND) {
        rv = AVM_ENOTFOUND;
    } else {
        rv = lmdb_fail(db, rc, "reading from");
    }
    read_end(db, txn);
    if (rv != 0)
        avm_buf_free(out);
    return rv;
}

int avm_lmdb_raft_kv_scan(avm_lmdb *db, const char *group, const uint8_t *prefix,
                          size_t plen,
                          int (*fn)(void *arg, const uint8_t *key, size_t klen,
                                    const uint8_t *val, size_t vlen),
                          void *arg)
{
    int rv = kv_check(db, group, prefix, plen, "reading raft key/value entries from");
    if (rv != 0)
        return rv == AVM_ETOOBIG ? 0 : rv;
    MDB_txn *txn;
    if ((rv = read_begin(db, &txn)) != 0)
        return rv;
    uint8_t kb[RKEY_MAX];
    size_t glen = strlen(group);
    size_t kl = rkey(kb, group, glen, prefix, plen);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->raft_kv, &cur);
    if (rc != 0) {
        read_end(db, txn);
        return lmdb_fail(db, rc, "reading from");
    }
    MDB_val k = {.mv_size = kl, .mv_data = kb}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && rv == 0 && has_prefix(&k, kb, kl)) {
        rv = fn(arg, (const uint8_t *)k.mv_data + glen + 1, k.mv_size - glen - 1,
                v.mv_data, v.mv_size);
        if (rv == 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    read_end(db, txn);
    return rv;
}

int avm_lmdb_stage_put(avm_lmdb *db, const avm_objrec *r)
{
    const char *what = "storing an object taken over from another controller in";
    if (db->stage_broken)
        return failf(db, AVM_EIO, "%s %s: an earlier staged round was lost", what,
                     db->path);
    if (!key_ok(db, r->oid, AVM_OBJID) || r->beh.mod == NULL ||
        r->state.kind != AVM_LIST || r->version == 0)
        return failf(db, AVM_EINVAL, "%s %s: not a whole object record", what, db->path);
    int rv = 0, mrc = 0;
    if (db->stxn == NULL && (rv = stage_begin(db, 0)) != 0)
        return rv;
    batch *b = db->stage;
    ov *o;
    if ((rv = ov_get(db, db->stxn, b, r->oid, &o, &mrc)) != 0) {
        if (mrc != 0)
            lmdb_fail(db, mrc, "commit to");
        stage_break(db);
        return rv;
    }
    centry *n = centry_new();
    modent *me;
    if (n == NULL || mod_add(&db->mods, r->beh.mod, &me) != 0) {
        free(n);
        stage_break(db);
        return failf(db, AVM_ENOMEM, "out of memory");
    }
    n->r = *r;
    n->r.beh.mod = me->m;
    avm_val_retain(n->r.oid);
    avm_val_retain(n->r.beh.name);
    avm_module_retain(n->r.beh.mod);
    avm_val_retain(n->r.meta.machine);
    avm_val_retain(n->r.meta.creating);
    avm_val_retain(n->r.meta.current);
    avm_val_retain(n->r.state);
    centry_release(o->rec);
    o->rec = n;
    o->owned = true;
    o->dirty = true;
    o->state_dirty = true;
    db->staged_n++;
    db->staged_bytes += 256;
    return 0;
}

int avm_lmdb_stage_release(avm_lmdb *db, avm_val oid, avm_val ctrl, bool *released)
{
    *released = false;
    if (db->stage_broken)
        return failf(db, AVM_EIO,
                     "releasing an object in %s: an earlier staged round "
                     "was lost",
                     db->path);
    if (!key_ok(db, oid, AVM_OBJID))
        return 0;
    int rv = 0, mrc = 0;
    if (db->stxn == NULL && (rv = stage_begin(db, 0)) != 0)
        return rv;
    ov *o;
    if ((rv = ov_get(db, db->stxn, db->stage, oid, &o, &mrc)) != 0) {
        if (mrc != 0)
            lmdb_fail(db, mrc, "commit to");
        stage_break(db);
        return rv;
    }
    if (o->rec == NULL || !avm_val_eq(o->rec->r.meta.current, ctrl))
        return 0;
    centry_release(o->rec);
    o->rec = NULL;
    o->owned = false;
    o->dirty = true;
    o->state_dirty = false;
    *released = true;
    db->staged_n++;
    db->staged_bytes += 64;
    return 0;
}

/* ---- Controller snapshots --------------------------------------------------- */

/* The dump format (lmdb_store.h): magic, version, msgpack body, SHA-256. */
#define DUMP_MAGIC "AVMCTRL" /* with its NUL: 8 bytes */
#define DUMP_VERSION 1
#define DUMP_HDR 12
#define DUMP_SUM 32
/* What the msgpack body of a dump may decode into: as for stored values, what one
 * replica stored must read back on another whatever its size. */
#define DUMP_BUDGET ((size_t)1 << 40)

static int ctrl_check(avm_lmdb *db, const char *group, avm_val ctrl, const char *what)
{
    int rv = group_check(db, group, 8, what);
    if (rv != 0)
        return rv;
    size_t len = strlen(group);
    if (ctrl.kind != AVM_CTRLID || ctrl.u.s->len != len ||
        memcmp(ctrl.u.s->data, group, len) != 0)
        return failf(db, AVM_EINVAL,
                     "%s %s: the controller of group \"%.200s\" must be the controller "
                     "identifier of that name",
                     what, db->path, group);
    return 0;
}

/* Whether a stored object record (objects database) names ctrl as its current
 * controller; decodes no more than the metadata. */
static int rec_current_is(const MDB_val *v, avm_val ctrl, bool *match)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, v->mv_data, v->mv_size, AVM_DECODE_DEFAULT_MAX);
    uint32_t n, len;
    const char *s;
    const uint8_t *h;
    uint64_t fn;
    avm_val x[3] = {avm_nil(), avm_nil(), avm_nil()};
    int rv = avm_mp_get_array(&r, &n);
    if (rv == 0 && n != 7)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_str(&r, &s, &len);
    if (rv == 0)
        rv = avm_mp_peek_nil(&r) ? avm_mp_get_nil(&r) : avm_mp_get_bin(&r, &h, &len);
    if (rv == 0)
        rv = avm_mp_get_uint(&r, &fn);
    for (int i = 0; rv == 0 && i < 3; i++)
        rv = avm_mp_get_val(&r, &x[i]);
    *match = rv == 0 && avm_val_eq(x[2], ctrl);
    for (int i = 0; i < 3; i++)
        avm_val_release(x[i]);
    return rv;
}

/* Records, each holding a reference. */
typedef struct objset {
    centry **v;
    size_t n, cap;
} objset;

static int objset_add(objset *s, centry *c)
{
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 64;
        centry **nv = realloc(s->v, ncap * sizeof(*nv));
        if (nv == NULL)
            return AVM_ENOMEM;
        s->v = nv;
        s->cap = ncap;
    }
    s->v[s->n++] = c;
    return 0;
}

static void objset_free(objset *s)
{
    for (size_t i = 0; i < s->n; i++)
        centry_release(s->v[i]);
    free(s->v);
    memset(s, 0, sizeof(*s));
}

/* Object ids in LMDB's order: bytes, then length. */
static int oid_cmp(avm_val a, avm_val b)
{
    size_t la = a.u.s->len, lb = b.u.s->len;
    int c = memcmp(a.u.s->data, b.u.s->data, la < lb ? la : lb);
    return c != 0 ? c : la < lb ? -1 : la > lb;
}

static int centry_cmp(const void *a, const void *b)
{
    return oid_cmp((*(centry *const *)a)->r.oid, (*(centry *const *)b)->r.oid);
}

/* Every object whose current controller is ctrl, as the reads see it (the staged
 * round's overlay over txn), in oid order, into out. With full the records are
 * complete; without, only their ids are set. */
static int ctrl_objects(avm_lmdb *db, MDB_txn *txn, avm_val ctrl, bool full, objset *out)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->objects, &cur);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    int rv = 0;
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && rv == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        bool match;
        avm_val oid;
        if (rec_current_is(&v, ctrl, &match) != 0) {
            rv = failf(db, AVM_EIO, "corrupt object record \"%.*s\" in %s",
                       (int)(k.mv_size > 200 ? 200 : k.mv_size), (const char *)k.mv_data,
                       db->path);
            break;
        }
        if (!match)
            continue;
        if (avm_str_new(AVM_OBJID, k.mv_data, k.mv_size, &oid) != 0) {
            rv = failf(db, AVM_ENOMEM, "out of memory");
            break;
        }
        centry *c = NULL;
        tslot *e;
        if (db->stage != NULL && tab_find(&db->stage->objs, oid) != NULL) {
            /* the overlay's record, below */
        } else if (!full) {
            if ((c = centry_new()) != NULL) {
                c->r.oid = oid;
                avm_val_retain(oid);
            }
        } else if ((e = tab_find(&db->cache, oid)) != NULL) {
            c = e->val;
            c->rc++;
        } else if ((rv = rec_load(db, txn, oid, &c)) != 0) {
            if (rv == AVM_ENOTFOUND)
                rv = corrupt(db, "object", oid, rv);
            c = NULL;
        }
        avm_val_release(oid);
        if (rv == 0 && c != NULL && objset_add(out, c) != 0) {
            centry_release(c);
            rv = failf(db, AVM_ENOMEM, "out of memory");
        }
    }
    mdb_cursor_close(cur);
    if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    for (size_t i = 0; rv == 0 && db->stage != NULL && i < db->stage->objs.cap; i++) {
        const tslot *s = &db->stage->objs.s[i];
        const ov *o = s->val;
        if (s->st != SLOT_FULL || o->rec == NULL ||
            !avm_val_eq(o->rec->r.meta.current, ctrl))
            continue;
        o->rec->rc++;
        if (objset_add(out, o->rec) != 0) {
            centry_release(o->rec);
            rv = failf(db, AVM_ENOMEM, "out of memory");
        }
    }
    if (rv != 0)
        objset_free(out);
    else if (out->n > 1)
        qsort(out->v, out->n, sizeof(*out->v), centry_cmp);
    return rv;
}

/* Walks the group's key/value entries: counts them, or (enc) encodes each as
 * [key bin, value bin] into b. */
static int kv_walk(avm_lmdb *db, MDB_txn *txn, const char *group, avm_buf *b, size_t *n)
{
    uint8_t kb[RKEY_MAX];
    size_t plen = rkey(kb, group, strlen(group), NULL, 0);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, db->raft_kv, &cur);
    if (rc != 0)
        return lmdb_fail(db, rc, "reading from");
    int rv = 0;
    MDB_val k = {.mv_size = plen, .mv_data = kb}, v;
    *n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
         rc == 0 && has_prefix(&k, kb, plen);
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size > UINT32_MAX) {
            rv = failf(db, AVM_ETOOBIG,
                       "dumping %s: a key/value entry of group %.200s of "
                       "%zu bytes",
                       db->path, group, v.mv_size);
            break;
        }
        if (b != NULL) {
            avm_mp_put_array(b, 2);
            avm_mp_put_bin(b, (const uint8_t *)k.mv_data + plen, k.mv_size - plen);
            avm_mp_put_bin(b, v.mv_data, v.mv_size);
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    if (rv == 0 && rc != 0 && rc != MDB_NOTFOUND)
        rv = lmdb_fail(db, rc, "reading from");
    return rv;
}

/* Encodes the objects (and their modules, once each) and the group's table. */
static int dump_encode(avm_lmdb *db, MDB_txn *txn, const char *group, avm_val ctrl,
                       const objset *os, avm_buf *out)
{
    const char *what = "dumping a controller from";
    avm_module **mods = NULL;
    uint32_t *modix = NULL;
    size_t nmods = 0, nkv;
    avm_buf tmp;
    avm_buf_init(&tmp);
    int rv = kv_walk(db, txn, group, NULL, &nkv);
    if (rv != 0)
        return rv;
    if (os->n > UINT32_MAX || nkv > UINT32_MAX)
        return failf(db, AVM_ETOOBIG, "%s %s: too many objects or entries", what,
                     db->path);
    mods = calloc(os->n + 1, sizeof(*mods));
    modix = calloc(os->n + 1, sizeof(*modix));
    if (mods == NULL || modix == NULL) {
        rv = failf(db, AVM_ENOMEM, "out of memory");
        goto out;
    }
    /* Each distinct module once; programs are few, so a linear search. */
    for (size_t i = 0; i < os->n; i++) {
        avm_module *m = os->v[i]->r.beh.mod;
        if (m == NULL)
            continue;
        size_t j = 0;
        while (j < nmods && memcmp(mods[j]->hash, m->hash, 32) != 0)
            j++;
        if (j == nmods)
            mods[nmods++] = m;
        modix[i] = (uint32_t)j;
    }
    avm_buf_put(out, DUMP_MAGIC, 8);
    uint8_t ver[4];
    be_put(ver, DUMP_VERSION, 4);
    avm_buf_put(out, ver, 4);
    avm_mp_put_array(out, 5);
    avm_mp_put_str(out, group, strlen(group));
    if ((rv = avm_val_encode(out, ctrl)) != 0)
        goto enc_fail;
    avm_mp_put_array(out, (uint32_t)nmods);
    for (size_t j = 0; j < nmods; j++) {
        tmp.len = 0;
        if ((rv = avm_module_encode(mods[j], &tmp)) != 0)
            goto enc_fail;
        if (tmp.len > UINT32_MAX) {
            rv = AVM_ETOOBIG;
            goto enc_fail;
        }
        avm_mp_put_bin(out, tmp.data, tmp.len);
    }
    avm_mp_put_array(out, (uint32_t)os->n);
    for (size_t i = 0; i < os->n; i++) {
        const avm_objrec *r = &os->v[i]->r;
        avm_mp_put_array(out, 9);
        rv = avm_val_encode(out, r->oid);
        if (rv == 0)
            rv = avm_val_encode(out, r->beh.name);
        if (r->beh.mod != NULL)
            avm_mp_put_uint(out, modix[i]);
        else
            avm_mp_put_nil(out);
        avm_mp_put_uint(out, r->beh.fn);
        if (rv == 0)
            rv = avm_val_encode(out, r->meta.machine);
        if (rv == 0)
            rv = avm_val_encode(out, r->meta.creating);
        if (rv == 0)
            rv = avm_val_encode(out, r->meta.current);
        avm_mp_put_uint(out, r->version);
        if (rv == 0)
            rv = avm_val_encode(out, r->state);
        if (rv != 0)
            goto enc_fail;
    }
    avm_mp_put_array(out, (uint32_t)nkv);
    if ((rv = kv_walk(db, txn, group, out, &nkv)) != 0)
        goto out;
    if (out->err != 0) {
        rv = out->err;
        goto enc_fail;
    }
    uint8_t sum[DUMP_SUM];
    avm_sha256(out->data, out->len, sum);
    avm_buf_put(out, sum, DUMP_SUM);
    if (out->err != 0) {
        rv = out->err;
        goto enc_fail;
    }
    goto out;

enc_fail:
    rv = failf(db, rv, "%s %s: encoding group %.200s: %s", what, db->path, group,
               avm_strerror(rv));
out:
    avm_buf_free(&tmp);
    free(mods);
    free(modix);
    return rv;
}

int avm_lmdb_ctrl_dump(avm_lmdb *db, const char *group, avm_val ctrl, avm_buf *out)
{
    avm_buf_init(out);
    int rv = ctrl_check(db, group, ctrl, "dumping a controller from");
    if (rv != 0)
        return rv;
    MDB_txn *txn;
    if ((rv = read_begin(db, &txn)) != 0)
        return rv;
    objset os = {0};
    rv = ctrl_objects(db, txn, ctrl, true, &os);
    if (rv == 0)
        rv = dump_encode(db, txn, group, ctrl, &os, out);
    read_end(db, txn);
    objset_free(&os);
    if (rv != 0)
        avm_buf_free(out);
    return rv;
}

/* A dump, decoded and verified. */
typedef struct dkv {
    const uint8_t *k, *v; /* into the dump */
    uint32_t klen, vlen;
} dkv;

typedef struct dump {
    avm_module **mods;
    uint32_t nmods;
    centry **objs; /* owned; NULL once handed to the round */
    uint32_t nobjs;
    dkv *kv;
    uint32_t nkv;
} dump;

static void dump_free(dump *d)
{
    for (uint32_t i = 0; i < d->nmods; i++)
        if (d->mods[i] != NULL)
            avm_module_release(d->mods[i]);
    for (uint32_t i = 0; i < d->nobjs; i++)
        centry_release(d->objs[i]);
    free(d->mods);
    free(d->objs);
    free(d->kv);
    memset(d, 0, sizeof(*d));
}

static int dump_bad(avm_lmdb *db, int code, const char *group, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int dump_bad(avm_lmdb *db, int code, const char *group, const char *fmt, ...)
{
    char why[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return failf(db, code, "restoring a snapshot of controller \"%.200s\" in %s: %s",
                 group, db->path, why);
}

/* The code for a decoding failure of the body: memory is the environment's
 * failure, the rest is the dump's. */
static int body_bad(avm_lmdb *db, int rv, const char *group, const char *what)
{
    if (rv == AVM_ENOMEM)
        return dump_bad(db, AVM_ENOMEM, group, "out of memory decoding %s", what);
    return dump_bad(db, AVM_EMALFORMED, group, "malformed %s (%s)", what,
                    avm_strerror(rv));
}

/* One object record of the body: [oid, behaviour name, module index or nil, fn,
 * machine, creating, current, version, state]. */
static int dump_obj(avm_lmdb *db, avm_mp_reader *r, const char *group, avm_val ctrl,
                    const dump *d, centry *c)
{
    uint32_t n;
    uint64_t mi = 0, fn, version;
    bool nomod;
    int rv = avm_mp_get_array(r, &n);
    if (rv == 0 && n != 9)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.oid);
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.beh.name);
    if (rv == 0 && !(nomod = avm_mp_peek_nil(r)))
        rv = avm_mp_get_uint(r, &mi);
    else if (rv == 0)
        rv = avm_mp_get_nil(r);
    if (rv == 0)
        rv = avm_mp_get_uint(r, &fn);
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.meta.machine);
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.meta.creating);
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.meta.current);
    if (rv == 0)
        rv = avm_mp_get_uint(r, &version);
    if (rv == 0)
        rv = avm_mp_get_val(r, &c->r.state);
    if (rv != 0)
        return body_bad(db, rv, group, "object record");
    avm_val oid = c->r.oid;
    if (!key_ok(db, oid, AVM_OBJID))
        return dump_bad(db, AVM_EMALFORMED, group, "an object id that is not one");
    int ol = (int)(oid.u.s->len > 200 ? 200 : oid.u.s->len);
    const char *os = oid.u.s->data;
    if (c->r.beh.name.kind != AVM_STR)
        return dump_bad(db, AVM_EMALFORMED, group,
                        "object %.*s: a behaviour name that "
                        "is not a string",
                        ol, os);
    if (!nomod && mi >= d->nmods)
        return dump_bad(db, AVM_EMALFORMED, group, "object %.*s: module %llu of %u", ol,
                        os, (unsigned long long)mi, d->nmods);
    if (nomod ? fn > UINT32_MAX : fn >= d->mods[mi]->nfuncs)
        return dump_bad(db, AVM_EMALFORMED, group, "object %.*s: function %llu", ol, os,
                        (unsigned long long)fn);
    if (c->r.meta.machine.kind != AVM_MACHID ||
        (c->r.meta.creating.kind != AVM_CTRLID && c->r.meta.creating.kind != AVM_NIL))
        return dump_bad(db, AVM_EMALFORMED, group, "object %.*s: malformed metadata", ol,
                        os);
    if (!avm_val_eq(c->r.meta.current, ctrl))
        return dump_bad(db, AVM_EMALFORMED, group,
                        "object %.*s: its current controller is not the group's", ol, os);
    if (version == 0 || version == AVM_VERSION_EXISTS)
        return dump_bad(db, AVM_EMALFORMED, group, "object %.*s: version %llu", ol, os,
                        (unsigned long long)version);
    if (!nomod) {
        c->r.beh.mod = d->mods[mi];
        avm_module_retain(c->r.beh.mod);
    }
    c->r.beh.fn = (uint32_t)fn;
    c->r.version = version;
    return 0;
}

/* Decodes and verifies all of a dump into d (freed by the caller either way). */
static int dump_decode(avm_lmdb *db, const char *group, avm_val ctrl, const uint8_t *p,
                       size_t len, dump *d)
{
    if (len < DUMP_HDR + DUMP_SUM || p == NULL)
        return dump_bad(db, AVM_EMALFORMED, group, "a dump of %zu bytes is too short",
                        len);
    if (memcmp(p, DUMP_MAGIC, 8) != 0)
        return dump_bad(db, AVM_EMALFORMED, group, "not a controller dump");
    uint64_t version = be_get(p + 8, 4);
    if (version != DUMP_VERSION)
        return dump_bad(db, version > DUMP_VERSION ? AVM_EVERSION : AVM_EMALFORMED, group,
                        "dump format %llu, but this build reads format %d",
                        (unsigned long long)version, DUMP_VERSION);
    uint8_t sum[DUMP_SUM];
    avm_sha256(p, len - DUMP_SUM, sum);
    if (memcmp(sum, p + len - DUMP_SUM, DUMP_SUM) != 0)
        return dump_bad(db, AVM_EMALFORMED, group,
                        "checksum mismatch (the dump is corrupt or truncated)");

    avm_mp_reader r;
    avm_mp_reader_init(&r, p + DUMP_HDR, len - DUMP_HDR - DUMP_SUM, DUMP_BUDGET);
    uint32_t n, slen;
    const char *s;
    avm_val c = avm_nil();
    int rv = avm_mp_get_array(&r, &n);
    if (rv == 0 && n != 5)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_str(&r, &s, &slen);
    if (rv == 0)
        rv = avm_mp_get_val(&r, &c);
    if (rv != 0) {
        avm_val_release(c);
        return body_bad(db, rv, group, "header");
    }
    bool same =
        slen == strlen(group) && memcmp(s, group, slen) == 0 && avm_val_eq(c, ctrl);
    avm_val_release(c);
    if (!same)
        return dump_bad(db, AVM_EINVAL, group, "a dump of group \"%.*s\"",
                        (int)(slen > 200 ? 200 : slen), s);

    if ((rv = avm_mp_get_array(&r, &n)) != 0)
        return body_bad(db, rv, group, "module list");
    if ((d->mods = calloc(n + 1, sizeof(*d->mods))) == NULL)
        return dump_bad(db, AVM_ENOMEM, group, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *m;
        uint32_t mlen;
        char msg[200] = "";
        if ((rv = avm_mp_get_bin(&r, &m, &mlen)) != 0)
            return body_bad(db, rv, group, "module");
        rv = avm_module_decode(m, mlen, &d->mods[i], msg, sizeof(msg));
        if (rv != 0) {
            d->mods[i] = NULL;
            return dump_bad(db,
                            rv == AVM_ENOMEM || rv == AVM_EVERSION ? rv : AVM_EMALFORMED,
                            group, "module %u: %s (%s)", i, msg, avm_strerror(rv));
        }
        d->nmods = i + 1;
    }

    if ((rv = avm_mp_get_array(&r, &n)) != 0)
        return body_bad(db, rv, group, "object list");
    if ((d->objs = calloc(n + 1, sizeof(*d->objs))) == NULL)
        return dump_bad(db, AVM_ENOMEM, group, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        if ((d->objs[i] = centry_new()) == NULL)
            return dump_bad(db, AVM_ENOMEM, group, "out of memory");
        d->nobjs = i + 1;
        if ((rv = dump_obj(db, &r, group, ctrl, d, d->objs[i])) != 0)
            return rv;
        if (i > 0 && oid_cmp(d->objs[i - 1]->r.oid, d->objs[i]->r.oid) >= 0)
            return dump_bad(db, AVM_EMALFORMED, group, "objects out of order");
    }

    size_t plen = strlen(group) + 1;
    if ((rv = avm_mp_get_array(&r, &n)) != 0)
        return body_bad(db, rv, group, "key/value list");
    if ((d->kv = calloc(n + 1, sizeof(*d->kv))) == NULL)
        return dump_bad(db, AVM_ENOMEM, group, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        dkv *e = &d->kv[i];
        uint32_t two;
        rv = avm_mp_get_array(&r, &two);
        if (rv == 0 && two != 2)
            rv = AVM_EMALFORMED;
        if (rv == 0)
            rv = avm_mp_get_bin(&r, &e->k, &e->klen);
        if (rv == 0)
            rv = avm_mp_get_bin(&r, &e->v, &e->vlen);
        if (rv != 0)
            return body_bad(db, rv, group, "key/value entry");
        d->nkv = i + 1;
        if (plen + e->klen > rkey_limit(db))
            return dump_bad(db, AVM_EMALFORMED, group, "a key of %u bytes", e->klen);
        if (i > 0) {
            const dkv *q = &d->kv[i - 1];
            int cmp = memcmp(q->k, e->k, q->klen < e->klen ? q->klen : e->klen);
            if (cmp > 0 || (cmp == 0 && q->klen >= e->klen))
                return dump_bad(db, AVM_EMALFORMED, group, "keys out of order");
        }
    }
    if (r.p != r.end)
        return dump_bad(db, AVM_EMALFORMED, group, "%zu bytes after the body",
                        (size_t)(r.end - r.p));
    return 0;
}

/* Sets the round's view of oid to rec (NULL: no such object), to be written at the
 * round's commit. Takes rec only when it returns 0. */
static int ov_set(avm_lmdb *db, batch *b, avm_val oid, centry *rec)
{
    tslot *e = tab_find(&b->objs, oid);
    ov *o;
    if (e != NULL) {
        o = e->val;
    } else {
        if ((o = calloc(1, sizeof(*o))) == NULL || tab_reserve(&b->objs, 1) != 0) {
            free(o);
            return failf(db, AVM_ENOMEM, "out of memory");
        }
        tab_put(&b->objs, oid, o);
    }
    centry_release(o->rec);
    o->rec = rec;
    o->owned = rec != NULL;
    o->dirty = true;
    o->state_dirty = rec != NULL;
    return 0;
}

int avm_lmdb_ctrl_clear(avm_lmdb *db, const char *group, avm_val ctrl)
{
    const char *what = "clearing a controller's objects in";
    if (db->stage_broken)
        return failf(db, AVM_EIO, "%s %s: an earlier staged round was lost", what,
                     db->path);
    int rv = ctrl_check(db, group, ctrl, what);
    if (rv != 0 || (rv = raft_begin(db, group, 8, 0, what)) != 0)
        return rv;
    batch *b = db->stage;
    objset old = {0};
    rv = ctrl_objects(db, db->stxn, ctrl, false, &old);
    for (size_t i = 0; rv == 0 && i < old.n; i++)
        rv = ov_set(db, b, old.v[i]->r.oid, NULL);
    objset_free(&old);
    if (rv != 0)
        return raft_fail(db, rv, 0, what);
    raft_done(db, 0);
    return 0;
}

int avm_lmdb_ctrl_restore(avm_lmdb *db, const char *group, avm_val ctrl,
                          const uint8_t *data, size_t len)
{
    const char *what = "restoring a controller snapshot in";
    if (db->stage_broken)
        return failf(db, AVM_EIO, "%s %s: an earlier staged round was lost", what,
                     db->path);
    int rv = ctrl_check(db, group, ctrl, what), mrc = 0;
    if (rv != 0)
        return rv;
    dump d = {0};
    if ((rv = dump_decode(db, group, ctrl, data, len, &d)) != 0 ||
        (rv = raft_begin(db, group, 8, len, what)) != 0) {
        dump_free(&d);
        return rv;
    }
    /* From here on the round changes: a failure loses it. */
    batch *b = db->stage;
    objset old = {0};
    rv = ctrl_objects(db, db->stxn, ctrl, false, &old);
    for (size_t i = 0; rv == 0 && i < old.n; i++)
        rv = ov_set(db, b, old.v[i]->r.oid, NULL);
    objset_free(&old);
    uint8_t kb[RKEY_MAX];
    size_t plen = rkey(kb, group, strlen(group), NULL, 0);
    if (rv == 0)
        rv = prefix_del(db->stxn, db->raft_kv, kb, plen, &mrc);
    for (uint32_t i = 0; rv == 0 && i < d.nobjs; i++) {
        centry *c = d.objs[i];
        modent *me;
        if (c->r.beh.mod != NULL) {
            /* The handle's instance of the module, stored at the commit if new. */
            if (mod_add(&db->mods, c->r.beh.mod, &me) != 0) {
                rv = failf(db, AVM_ENOMEM, "out of memory");
                break;
            }
            avm_module_retain(me->m);
            avm_module_release(c->r.beh.mod);
            c->r.beh.mod = me->m;
        }
        /* An object that moved to another controller after the dump was taken
         * (transferObject across controllers: its version went up when the other
         * controller took it) stays with that controller. */
        ov *cur;
        if ((rv = ov_get(db, db->stxn, b, c->r.oid, &cur, &mrc)) != 0)
            break;
        if (cur->rec != NULL && !avm_val_eq(cur->rec->r.meta.current, ctrl) &&
            cur->rec->r.version > c->r.version)
            continue;
        if ((rv = ov_set(db, b, c->r.oid, c)) == 0)
            d.objs[i] = NULL;
    }
    for (uint32_t i = 0; rv == 0 && i < d.nkv; i++) {
        MDB_val k = {.mv_size = plen + d.kv[i].klen, .mv_data = kb};
        MDB_val v = {.mv_size = d.kv[i].vlen, .mv_data = (void *)d.kv[i].v};
        if (d.kv[i].klen > 0)
            memcpy(kb + plen, d.kv[i].k, d.kv[i].klen);
        if (v.mv_size == 0)
            v.mv_data = (void *)"";
        if ((mrc = mdb_put(db->stxn, db->raft_kv, &k, &v, 0)) != 0)
            rv = AVM_EIO;
    }
    dump_free(&d);
    if (rv != 0)
        return raft_fail(db, rv, mrc, what);
    raft_done(db, len);
    return 0;
}
