/* Fuzz target: records read back from the node's LMDB store (storage/lmdb_store.h).
 * A node trusts nothing it reads from disk: a flipped bit, a torn or foreign file
 * must give an error naming the cause, never a crash.
 *
 * Setup (once): a store holding one record of every kind (an object with its
 * module and state, a pure function, an execution with checkpoints, a trace and a
 * label, a mailbox and its sequence number, a Raft group's term and vote, log,
 * snapshot metadata, applied index and key/value table). Its data file is kept in
 * memory.
 *
 * Input: byte 0 picks a named database (or, past the last one, a controller
 * snapshot for avm_lmdb_ctrl_restore: what a replica installs from a peer), byte
 * 1 picks one of that database's keys, the rest is the value stored under it. Each
 * run restores the pristine data file, writes the value with LMDB directly, opens
 * the store and calls every reader of the public interface (open itself, object
 * and pure function reads, id listing, executions, labels, traces, mailboxes, the
 * Raft groups' state and tables, controller dumps). Properties checked (abort()
 * on violation): every failure leaves a message (avm_lmdb_errmsg); a record read
 * is well formed (a list state, a string behaviour name, a module); a dump that
 * was produced restores. Crashes, leaks and sanitizer reports are findings too. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "avm_err.h"
#include "codec.h"
#include "compiler.h"
#include "fuzz.h"
#include "lmdb_store.h"
#include "module.h"

static const char *const dbnames[] = {
    "meta",        "objects",     "states",       "behaviours", "pure",
    "execs",       "checkpoints", "trace_chunks", "mailboxes",  "mailbox_seq",
    "exec_labels", "raft_log",    "raft_meta",    "raft_kv",
};
enum { NDB = sizeof(dbnames) / sizeof(dbnames[0]) };

static char dir[512];     /* the store's directory */
static uint8_t *pristine; /* its data file after setup */
static size_t pristine_len;

static void fail(const char *what, const char *why)
{
    fprintf(stderr, "fuzz_store: %s: %s\n", what, why);
    abort();
}

static avm_val id(avm_kind k, const char *s)
{
    avm_val v;
    if (avm_cstr(k, s, &v) != 0)
        abort();
    return v;
}

static void rm_store(const char *d)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", "avm.lock"};
    char p[2048];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", d, files[i]);
        unlink(p);
    }
    rmdir(d);
}

static void rmtree_files(void)
{
    static const char *const files[] = {"data.mdb", "lock.mdb", "avm.lock"};
    char p[600];
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
}

static void cleanup(void)
{
    rm_store(dir);
}

/* libFuzzer may end the process without running atexit handlers: the directories
 * of processes that are gone are removed by the next run. */
static void rm_stale(const char *t)
{
    DIR *d = opendir(t);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        char proc[64], path[1024];
        if (sscanf(e->d_name, "avm-fuzz-store-%ld", &pid) != 1 || pid <= 0)
            continue;
        snprintf(proc, sizeof(proc), "/proc/%ld", pid);
        if (access(proc, F_OK) == 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", t, e->d_name);
        rm_store(path);
    }
    closedir(d);
}

static avm_lmdb *open_store(char *err, size_t errlen, int *rv)
{
    avm_lmdb_config cfg = {.path = dir, .map_size = (size_t)1 << 20, .nosync = true};
    avm_lmdb *db = NULL;
    err[0] = '\0';
    *rv = avm_lmdb_open(&cfg, &db, err, errlen);
    return db;
}

static const char program[] =
    "(behavior counter (let ((s (getState))) (setState (cons (input) s)) (list s)))\n"
    "(pure add (a b) (+ a b))\n"
    "(main (createObj \"counter\"))\n";

/* Builds the pristine store and keeps its data file. */
static void setup(void)
{
    const char *t = getenv("TMPDIR");
    struct stat sb;
    if ((t == NULL || *t == '\0') && stat("/dev/shm", &sb) == 0)
        t = "/dev/shm"; /* memory: each run rewrites the data file */
    if (t == NULL || *t == '\0')
        t = "/tmp";
    rm_stale(t);
    snprintf(dir, sizeof(dir), "%s/avm-fuzz-store-%ld", t, (long)getpid());
    rm_store(dir);
    if (mkdir(dir, 0700) != 0)
        fail(dir, strerror(errno));
    atexit(cleanup);
    char err[512];
    int rv;
    avm_lmdb *db = open_store(err, sizeof(err), &rv);
    if (db == NULL)
        fail("open", err);
    avm_store *s = avm_lmdb_store(db);

    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("seed.avm", program, strlen(program), &m, &d) != 0)
        fail("compile", d.msg);
    int fn = avm_module_find(m, "counter", AVM_FN_BEHAVIOR);
    int pf = avm_module_find(m, "add", AVM_FN_PURE);
    if (fn < 0 || pf < 0)
        fail("setup", "no counter or add in the program");

    avm_val oid = id(AVM_OBJID, "node1/1"), ctrl = id(AVM_CTRLID, "main");
    avm_val state, items[3] = {avm_int(1), avm_int(2), id(AVM_STR, "x")};
    if (avm_list_from(items, 3, &state) != 0)
        abort();
    avm_create cr = {
        .oid = oid,
        .beh = {.name = id(AVM_STR, "counter"), .mod = m, .fn = (uint32_t)fn},
        .meta = {.machine = id(AVM_MACHID, "node1"), .creating = ctrl, .current = ctrl}};
    avm_pair st = {oid, state};
    static const uint8_t xstate[] = {0x93, 0x01, 0x02, 0xa1, 0x61};
    avm_writeset w = {.creates = &cr,
                      .ncreates = 1,
                      .states = &st,
                      .nstates = 1,
                      .ckpt_id = "node1/x1",
                      .ckpt_state = xstate,
                      .ckpt_len = sizeof(xstate),
                      .ckpt_status = 1,
                      .ckpt_trace = (const uint8_t *)"\x91\x01",
                      .ckpt_trace_len = 2,
                      .ckpt_trace_at = 0,
                      .ckpt_label = "prog"};
    bool ok = false;
    if (s->ops->apply(s, &w, &ok) != 0 || !ok)
        fail("apply", avm_lmdb_errmsg(db));
    avm_writeset w2 = {.ckpt_id = "node1/x1",
                       .ckpt_state = xstate,
                       .ckpt_len = sizeof(xstate),
                       .ckpt_status = 2,
                       .ckpt_trace = (const uint8_t *)"\x91\x02",
                       .ckpt_trace_len = 2,
                       .ckpt_trace_at = 2};
    if (s->ops->apply(s, &w2, &ok) != 0 || !ok)
        fail("apply", avm_lmdb_errmsg(db));

    avm_module *x = NULL;
    if (avm_module_extract(m, (uint32_t)pf, &x) != 0)
        abort();
    avm_purefn p = {.name = id(AVM_STR, "add"), .code = x, .version = 1};
    if (s->ops->pure_put(s, &p) != 0)
        fail("pure_put", avm_lmdb_errmsg(db));
    avm_val_release(p.name);
    avm_module_release(x);

    static const uint8_t msg[] = {0x92, 0xa4, 'p', 'i', 'n', 'g', 0x07};
    uint64_t seq;
    if (avm_lmdb_mbox_put(db, oid, msg, sizeof(msg), &seq) != 0)
        fail("mbox_put", avm_lmdb_errmsg(db));

    static const uint8_t conf[] = {0x01, 0x02, 0x03, 0x04};
    static const uint8_t cmd[] = {0x93, 0x01, 0xa1, 'k', 0xc0};
    avm_lmdb_rentry e[2] = {{2, 1 /* RAFT_COMMAND */, cmd, sizeof(cmd)},
                            {3, 2 /* RAFT_BARRIER */, NULL, 0}};
    if (avm_lmdb_raft_save_tv(db, "main", 3, 2) != 0 ||
        avm_lmdb_raft_save_snapmeta(db, "main", 1, 1, 1, conf, sizeof(conf)) != 0 ||
        avm_lmdb_raft_save_entries(db, "main", 2, e, 2) != 0 ||
        avm_lmdb_raft_set_applied(db, "main", 2) != 0 ||
        avm_lmdb_raft_kv_put(db, "main", (const uint8_t *)"k", 1, cmd, sizeof(cmd)) !=
            0 ||
        avm_lmdb_stage_commit(db) != 0)
        fail("raft", avm_lmdb_errmsg(db));

    avm_val_release(cr.beh.name);
    avm_val_release(cr.meta.machine);
    avm_val_release(state);
    avm_val_release(oid);
    avm_val_release(ctrl);
    avm_module_release(m);
    avm_lmdb_close(db);

    char path[600];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    FILE *f = fopen(path, "rb");
    if (f == NULL || fseek(f, 0, SEEK_END) != 0)
        fail(path, strerror(errno));
    long n = ftell(f);
    if (n <= 0 || fseek(f, 0, SEEK_SET) != 0)
        fail(path, "cannot size it");
    pristine_len = (size_t)n;
    pristine = malloc(pristine_len);
    if (pristine == NULL || fread(pristine, 1, pristine_len, f) != pristine_len)
        fail(path, "cannot read it");
    fclose(f);
}

static void restore_pristine(void)
{
    rmtree_files();
    char path[600];
    snprintf(path, sizeof(path), "%s/data.mdb", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, pristine, pristine_len) != (ssize_t)pristine_len ||
        close(fd) != 0)
        fail(path, strerror(errno));
}

/* Raw LMDB: the env of the store's directory (closed by the caller). */
static MDB_env *raw_open(void)
{
    MDB_env *env;
    if (mdb_env_create(&env) != 0 || mdb_env_set_maxdbs(env, 24) != 0 ||
        mdb_env_set_mapsize(env, (size_t)1 << 20) != 0)
        fail("mdb_env", "create");
    int rc = mdb_env_open(env, dir, MDB_NOSYNC | MDB_NOTLS, 0644);
    if (rc != 0)
        fail("mdb_env_open", mdb_strerror(rc));
    return env;
}

/* The k-th key (modulo their number) of database name: copied into key. False when
 * it has none. */
static bool nth_key(MDB_txn *txn, MDB_dbi dbi, unsigned k, MDB_val *key, uint8_t *buf)
{
    MDB_stat st;
    if (mdb_stat(txn, dbi, &st) != 0 || st.ms_entries == 0)
        return false;
    k %= (unsigned)st.ms_entries;
    MDB_cursor *c;
    if (mdb_cursor_open(txn, dbi, &c) != 0)
        return false;
    MDB_val v;
    int rc = mdb_cursor_get(c, key, &v, MDB_FIRST);
    for (unsigned i = 0; rc == 0 && i < k; i++)
        rc = mdb_cursor_get(c, key, &v, MDB_NEXT);
    if (rc == 0) {
        memcpy(buf, key->mv_data, key->mv_size);
        key->mv_data = buf;
    }
    mdb_cursor_close(c);
    return rc == 0;
}

/* Stores data[0..n) under the k-th key of database d. */
static void put_raw(unsigned d, unsigned k, const uint8_t *data, size_t n)
{
    MDB_env *env = raw_open();
    MDB_txn *txn = NULL;
    MDB_dbi dbi = 0;
    if (mdb_txn_begin(env, NULL, 0, &txn) != 0 ||
        mdb_dbi_open(txn, dbnames[d], 0, &dbi) != 0)
        fail("put_raw", dbnames[d]);
    uint8_t kbuf[512];
    MDB_val key;
    if (nth_key(txn, dbi, k, &key, kbuf)) {
        MDB_val v = {.mv_size = n, .mv_data = (void *)data};
        int rc = mdb_put(txn, dbi, &key, &v, 0);
        if (rc != 0 && rc != MDB_MAP_FULL)
            fail("mdb_put", mdb_strerror(rc));
    }
    if (mdb_txn_commit(txn) != 0)
        fail("put_raw", "commit");
    mdb_env_close(env);
}

static void check_failed(avm_lmdb *db, int rv, const char *what)
{
    if (rv != 0 && rv != AVM_ENOTFOUND && avm_lmdb_errmsg(db)[0] == '\0')
        fail(what, "an error without a message");
}

typedef struct strs {
    char ids[8][128];
    size_t n;
} strs;

static void collect_exec(void *arg, const char *xid, uint8_t status)
{
    strs *s = arg;
    (void)status;
    if (s->n < 8)
        snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", xid);
}

static int collect_group(void *arg, const char *group)
{
    strs *s = arg;
    if (s->n < 8)
        snprintf(s->ids[s->n++], sizeof(s->ids[0]), "%s", group);
    return 0;
}

static int count_mbox(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg,
                      size_t len)
{
    (void)oid;
    (void)seq;
    (void)msg;
    *(size_t *)arg += len;
    return 0;
}

static int count_kv(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                    size_t vlen)
{
    (void)key;
    (void)val;
    *(size_t *)arg += klen + vlen;
    return 0;
}

static void check_rec(const avm_objrec *r)
{
    if (r == NULL)
        return;
    if (r->state.kind != AVM_LIST || r->beh.name.kind != AVM_STR ||
        (r->beh.mod != NULL && r->beh.fn >= r->beh.mod->nfuncs) ||
        r->meta.machine.kind != AVM_MACHID ||
        (r->meta.creating.kind != AVM_CTRLID && r->meta.creating.kind != AVM_NIL) ||
        (r->meta.current.kind != AVM_CTRLID && r->meta.current.kind != AVM_NIL))
        abort();
}

/* Every reader of the public interface. */
static void read_all(avm_lmdb *db)
{
    avm_store *s = avm_lmdb_store(db);
    avm_val oid = id(AVM_OBJID, "node1/1"), ctrl = id(AVM_CTRLID, "main");
    avm_val add = id(AVM_STR, "add");

    check_rec(s->ops->get(s, NULL, oid));
    void *snap = s->ops->snapshot(s);
    if (snap != NULL) {
        check_rec(s->ops->get(s, snap, oid));
        s->ops->snapshot_release(s, snap);
    }
    avm_val ids;
    if (s->ops->ids(s, &ids) == 0)
        avm_val_release(ids);
    const avm_purefn *p = s->ops->pure_get(s, add);
    if (p != NULL && (p->code == NULL || p->name.kind != AVM_STR))
        abort();

    strs xs = {.n = 0};
    check_failed(db, avm_lmdb_exec_each(db, collect_exec, &xs), "exec_each");
    if (xs.n == 0)
        xs.n = 1, snprintf(xs.ids[0], sizeof(xs.ids[0]), "node1/x1");
    for (size_t i = 0; i < xs.n; i++) {
        uint8_t status;
        avm_buf b;
        check_failed(db, avm_lmdb_exec_get(db, xs.ids[i], &status, &b), "exec_get");
        avm_buf_free(&b);
        char label[64];
        check_failed(db, avm_lmdb_exec_label(db, xs.ids[i], label, sizeof(label)),
                     "exec_label");
        check_failed(db, avm_lmdb_trace_log(db, xs.ids[i], &b), "trace_log");
        avm_buf_free(&b);
    }

    size_t n = 0;
    check_failed(db, avm_lmdb_mbox_each(db, count_mbox, &n), "mbox_each");
    check_failed(db, avm_lmdb_mbox_count(db, oid, &n), "mbox_count");
    uint64_t seq;
    check_failed(db, avm_lmdb_mbox_put(db, oid, (const uint8_t *)"\xc0", 1, &seq),
                 "mbox_put");

    strs gs = {.n = 0};
    check_failed(db, avm_lmdb_raft_groups(db, collect_group, &gs), "raft_groups");
    for (size_t i = 0; i < gs.n; i++) {
        avm_lmdb_rstate rs;
        int rv = avm_lmdb_raft_load(db, gs.ids[i], &rs);
        check_failed(db, rv, "raft_load");
        if (rv == 0)
            avm_lmdb_rstate_free(&rs);
        avm_buf b;
        check_failed(db, avm_lmdb_raft_kv_get(db, gs.ids[i], (const uint8_t *)"k", 1, &b),
                     "raft_kv_get");
        avm_buf_free(&b);
        check_failed(db, avm_lmdb_raft_kv_scan(db, gs.ids[i], NULL, 0, count_kv, &n),
                     "raft_kv_scan");
    }

    avm_buf dump;
    int rv = avm_lmdb_ctrl_dump(db, "main", ctrl, &dump);
    check_failed(db, rv, "ctrl_dump");
    if (rv == 0 && avm_lmdb_ctrl_restore(db, "main", ctrl, (const uint8_t *)dump.data,
                                         dump.len) != 0)
        fail("a dump does not restore", avm_lmdb_errmsg(db));
    avm_buf_free(&dump);

    avm_lmdb_stats st;
    check_failed(db, avm_lmdb_stats_get(db, &st), "stats_get");
    avm_val_release(add);
    avm_val_release(oid);
    avm_val_release(ctrl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (pristine == NULL)
        setup();
    if (size < 2)
        return 0;
    unsigned d = data[0] % (NDB + 1), k = data[1];
    restore_pristine();
    if (d < NDB)
        put_raw(d, k, data + 2, size - 2);
    char err[512];
    int rv;
    avm_lmdb *db = open_store(err, sizeof(err), &rv);
    if (db == NULL) {
        if (rv == 0 || err[0] == '\0')
            fail("open", "refused without a message");
        return 0;
    }
    if (d == NDB) {
        avm_val ctrl = id(AVM_CTRLID, "main");
        rv = avm_lmdb_ctrl_restore(db, "main", ctrl, data + 2, size - 2);
        check_failed(db, rv, "ctrl_restore");
        avm_val_release(ctrl);
    }
    read_all(db);
    avm_lmdb_close(db);
    return 0;
}

/* Seeds: every record of the pristine store as an input that writes it back
 * unchanged, and the pristine controller dump. */

static char *hex_seed(uint8_t a, uint8_t b, const uint8_t *p, size_t n)
{
    char *s = malloc(4 + 4 + 2 * n + 1);
    if (s == NULL)
        abort();
    int k = snprintf(s, 9, "hex:%02x%02x", a, b);
    for (size_t i = 0; i < n; i++)
        snprintf(s + k + 2 * i, 3, "%02x", p[i]);
    return s;
}

const char *const *fuzz_seeds(size_t *n)
{
    static const char *seeds[256];
    static size_t count;
    if (count > 0) {
        *n = count;
        return seeds;
    }
    if (pristine == NULL)
        setup();
    restore_pristine();
    MDB_env *env = raw_open();
    MDB_txn *txn;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) != 0)
        fail("seeds", "txn");
    for (unsigned d = 0; d < NDB; d++) {
        MDB_dbi dbi;
        if (mdb_dbi_open(txn, dbnames[d], 0, &dbi) != 0)
            continue;
        MDB_cursor *c;
        if (mdb_cursor_open(txn, dbi, &c) != 0)
            continue;
        MDB_val key, v;
        unsigned k = 0;
        for (int rc = mdb_cursor_get(c, &key, &v, MDB_FIRST); rc == 0 && count < 250;
             rc = mdb_cursor_get(c, &key, &v, MDB_NEXT), k++)
            seeds[count++] = hex_seed((uint8_t)d, (uint8_t)k, v.mv_data, v.mv_size);
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);

    char err[512];
    int rv;
    avm_lmdb *db = open_store(err, sizeof(err), &rv);
    if (db == NULL)
        fail("seeds", err);
    avm_val ctrl = id(AVM_CTRLID, "main");
    avm_buf dump;
    if (avm_lmdb_ctrl_dump(db, "main", ctrl, &dump) != 0)
        fail("ctrl_dump", avm_lmdb_errmsg(db));
    seeds[count++] = hex_seed(NDB, 0, (const uint8_t *)dump.data, dump.len);
    avm_buf_free(&dump);
    avm_val_release(ctrl);
    avm_lmdb_close(db);
    *n = count;
    return seeds;
}
