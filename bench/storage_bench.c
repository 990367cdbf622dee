/* storage_bench: durable commits through the LMDB store (storage/), beside the raw
 * LMDB floor measured in the same run, as the storage issue asks.
 *
 *   raw        one mdb_put (16-byte key, 100-byte value) + durable mdb_txn_commit
 *              per transaction, in a separate environment in the same file system
 *              (the "sync" mode of /work/shared/baselines/lmdb_bench.c)
 *   apply      one single-object write set per LMDB transaction through the store
 *              interface's apply(): read the object's version, write its state
 *   batch B    apply_batch() of B ready single-object write sets (distinct objects)
 *              in one LMDB transaction; a commit's latency is its batch's
 *
 * Every case is durable (default LMDB flags: data fdatasync + meta O_DSYNC write).
 * The cases run in interleaved rounds so that a noisy neighbour hurts them alike.
 * Targets (storage issue): apply p50 within 1.2x of raw p50; batch 64 at least 5x
 * the raw commit rate. After the runs, every object's version and state are checked
 * against the commits made; a wrong one fails the program (exit 1), whatever the
 * speed. Options: --quick (short, for the smoke test), --json, --dir DIR. */
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#include "avm_err.h"
#include "compiler.h"
#include "lmdb_store.h"
#include "module.h"

#ifndef AVM_BUILD_TYPE
#define AVM_BUILD_TYPE "unknown"
#endif

#define NOBJ 1024
#define VAL_BYTES 100
#define MAX_SAMPLES (1u << 20)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

typedef struct series {
    const char *name;
    size_t batch;  /* write sets per LMDB transaction; 0 for raw */
    uint64_t *lat; /* per commit, ns */
    size_t n;
    uint64_t commits;
    uint64_t busy_ns; /* time spent inside the measured calls */
} series;

static void record(series *s, uint64_t ns, size_t commits)
{
    for (size_t i = 0; i < commits && s->n < MAX_SAMPLES; i++)
        s->lat[s->n++] = ns;
    s->commits += commits;
    s->busy_ns += ns;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(series *s, double p)
{
    if (s->n == 0)
        return 0;
    return (double)s->lat[(size_t)((double)(s->n - 1) * p)] / 1000.0;
}

static double rate(const series *s)
{
    return s->busy_ns ? (double)s->commits * 1e9 / (double)s->busy_ns : 0;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "storage_bench: %s: %s\n", what, msg);
    exit(1);
}

/* ---- raw LMDB --------------------------------------------------------------- */

typedef struct raw_env {
    MDB_env *env;
    MDB_dbi dbi;
    uint64_t next;
} raw_env;

static void raw_open(raw_env *r, const char *dir)
{
    mkdir(dir, 0755);
    MDB_txn *txn;
    int rc = mdb_env_create(&r->env);
    if (rc == 0)
        rc = mdb_env_set_mapsize(r->env, (size_t)1 << 30);
    if (rc == 0)
        rc = mdb_env_open(r->env, dir, 0, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(r->env, NULL, 0, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, NULL, 0, &r->dbi);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    if (rc != 0)
        die("raw lmdb", mdb_strerror(rc));
    r->next = 0;
}

static void raw_run(raw_env *r, series *s, uint64_t until)
{
    char kb[16], vb[VAL_BYTES];
    memset(vb, 'v', sizeof(vb));
    MDB_val k = {16, kb}, v = {VAL_BYTES, vb};
    while (now_ns() < until) {
        uint64_t i = r->next++;
        memset(kb, 0, 16);
        for (int b = 0; b < 8; b++)
            kb[15 - b] = (char)(i >> (8 * b));
        uint64_t t = now_ns();
        MDB_txn *txn;
        int rc = mdb_txn_begin(r->env, NULL, 0, &txn);
        if (rc == 0)
            rc = mdb_put(txn, r->dbi, &k, &v, 0);
        rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
        if (rc != 0)
            die("raw lmdb", mdb_strerror(rc));
        record(s, now_ns() - t, 1);
    }
}

/* ---- the store -------------------------------------------------------------- */

typedef struct bench_store {
    avm_lmdb *db;
    avm_store *s;
    avm_val oid[NOBJ];
    uint64_t writes[NOBJ]; /* committed state writes per object */
    int64_t last[NOBJ];    /* the tag of the last state written */
    avm_val state[256];    /* ready states: (tag "<100 bytes>") */
    uint64_t next;
} bench_store;

static void store_open(bench_store *b, const char *dir)
{
    avm_lmdb_config cfg = {.path = dir};
    char err[512];
    if (avm_lmdb_open(&cfg, &b->db, err, sizeof(err)) != 0)
        die("open", err);
    b->s = avm_lmdb_store(b->db);
    avm_diag d;
    avm_module *m;
    const char *src = "(behavior account (list 0))";
    if (avm_compile("bench.avm", src, strlen(src), &m, &d) != 0)
        die("compile", d.msg);
    avm_val node, ctrl, name;
    avm_cstr(AVM_MACHID, "node1", &node);
    avm_cstr(AVM_CTRLID, "main", &ctrl);
    avm_cstr(AVM_STR, "account", &name);
    avm_create *cr = calloc(NOBJ, sizeof(*cr));
    for (unsigned i = 0; i < NOBJ; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bench/%u", i);
        avm_cstr(AVM_OBJID, id, &b->oid[i]);
        cr[i] =
            (avm_create){.oid = b->oid[i],
                         .beh = {.name = name, .mod = m, .fn = 0},
                         .meta = {.machine = node, .creating = ctrl, .current = ctrl}};
    }
    avm_writeset ws = {.creates = cr, .ncreates = NOBJ};
    bool ok;
    if (b->s->ops->apply(b->s, &ws, &ok) != 0 || !ok)
        die("create", avm_lmdb_errmsg(b->db));
    free(cr);
    avm_val_release(node);
    avm_val_release(ctrl);
    avm_val_release(name);
    avm_module_release(m);
    char pad[VAL_BYTES];
    memset(pad, 's', sizeof(pad));
    for (int i = 0; i < 256; i++) {
        avm_val items[2] = {avm_int(i)};
        avm_str_new(AVM_STR, pad, sizeof(pad), &items[1]);
        avm_list_from(items, 2, &b->state[i]);
    }
    for (unsigned i = 0; i < NOBJ; i++)
        b->last[i] = -1;
}

/* One round of batches of size n (n == 1: apply, else apply_batch). */
static void store_run(bench_store *b, series *s, size_t n, uint64_t until)
{
    enum { MAXB = 64 };
    avm_read rd[MAXB];
    avm_pair st[MAXB];
    avm_writeset ws[MAXB];
    const avm_writeset *wp[MAXB];
    unsigned obj[MAXB];
    int tag[MAXB];
    bool ok[MAXB];
    while (now_ns() < until) {
        uint64_t t = now_ns();
        /* Building the write sets is part of a commit's cost: the reads come from
         * the store as an execution's would. */
        for (size_t i = 0; i < n; i++) {
            obj[i] = (unsigned)(b->next++ % NOBJ);
            tag[i] = (int)(b->next % 256);
            const avm_objrec *r = b->s->ops->get(b->s, NULL, b->oid[obj[i]]);
            if (r == NULL)
                die("get", avm_lmdb_errmsg(b->db));
            rd[i] = (avm_read){b->oid[obj[i]], r->version};
            st[i] = (avm_pair){b->oid[obj[i]], b->state[tag[i]]};
            ws[i] = (avm_writeset){
                .reads = &rd[i], .nreads = 1, .states = &st[i], .nstates = 1};
            wp[i] = &ws[i];
        }
        int rv = n == 1 ? b->s->ops->apply(b->s, wp[0], &ok[0])
                        : avm_lmdb_apply_batch(b->db, wp, n, ok);
        uint64_t dt = now_ns() - t;
        if (rv != 0)
            die("commit", avm_lmdb_errmsg(b->db));
        for (size_t i = 0; i < n; i++) {
            if (!ok[i])
                die("commit", "a write set with current versions was rejected");
            b->writes[obj[i]]++;
            b->last[obj[i]] = tag[i];
        }
        record(s, dt, n);
    }
}

/* Every object's version is 1 + its committed writes, and its state the last
 * one written; checked again after reopening. */
static int store_check(bench_store *b, const char *dir)
{
    int bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned i = 0; i < NOBJ; i++) {
            const avm_objrec *r = b->s->ops->get(b->s, NULL, b->oid[i]);
            if (r == NULL || r->version != 1 + b->writes[i] ||
                (b->last[i] >= 0 ? !avm_val_eq(r->state, b->state[b->last[i]])
                                 : avm_list_len(r->state) != 0)) {
                fprintf(stderr, "storage_bench: object %u is wrong after %s\n", i,
                        pass ? "reopening" : "the runs");
                bad = 1;
                break;
            }
        }
        avm_lmdb_close(b->db);
        b->db = NULL;
        if (pass == 0) {
            avm_lmdb_config cfg = {.path = dir};
            char err[512];
            if (avm_lmdb_open(&cfg, &b->db, err, sizeof(err)) != 0)
                die("reopen", err);
            b->s = avm_lmdb_store(b->db);
        }
    }
    for (unsigned i = 0; i < NOBJ; i++)
        avm_val_release(b->oid[i]);
    for (int i = 0; i < 256; i++)
        avm_val_release(b->state[i]);
    return bad;
}

static void rmtree2(const char *dir)
{
    const char *files[] = {"data.mdb", "lock.mdb", "avm.lock"};
    char p[1024];
    for (size_t i = 0; i < 3; i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    bool quick = false, json = false;
    const char *base = getenv("TMPDIR");
    if (base == NULL || *base == '\0')
        base = "/tmp";
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc) {
            base = argv[++i];
        } else {
            fprintf(stderr, "usage: storage_bench [--quick] [--json] [--dir DIR]\n");
            return 2;
        }
    }
    char top[1024], rawdir[1100], storedir[1100];
    snprintf(top, sizeof(top), "%s/storage_bench-XXXXXX", base);
    if (mkdtemp(top) == NULL)
        die("mkdtemp", top);
    snprintf(rawdir, sizeof(rawdir), "%s/raw", top);
    snprintf(storedir, sizeof(storedir), "%s/store", top);
    struct statfs sf;
    bool tmpfs = statfs(top, &sf) == 0 && sf.f_type == 0x01021994;

    series cases[] = {{.name = "raw lmdb put+commit", .batch = 0},
                      {.name = "apply", .batch = 1},
                      {.name = "apply_batch 8", .batch = 8},
                      {.name = "apply_batch 64", .batch = 64}};
    enum { NCASES = sizeof(cases) / sizeof(cases[0]) };
    for (size_t i = 0; i < NCASES; i++)
        cases[i].lat = malloc(MAX_SAMPLES * sizeof(uint64_t));

    raw_env raw;
    raw_open(&raw, rawdir);
    static bench_store bs;
    store_open(&bs, storedir);

    int rounds = quick ? 1 : 5;
    double per_case = quick ? 0.05 : 1.0; /* seconds per case per round */
    /* A short warm-up of each, unmeasured. */
    series warm = {.name = "warm", .lat = malloc(MAX_SAMPLES * sizeof(uint64_t))};
    uint64_t wu = (uint64_t)(0.05e9);
    raw_run(&raw, &warm, now_ns() + wu);
    store_run(&bs, &warm, 1, now_ns() + wu);
    free(warm.lat);
    for (int r = 0; r < rounds; r++) {
        for (size_t c = 0; c < NCASES; c++) {
            uint64_t until = now_ns() + (uint64_t)(per_case * 1e9);
            if (cases[c].batch == 0)
                raw_run(&raw, &cases[c], until);
            else
                store_run(&bs, &cases[c], cases[c].batch, until);
        }
    }
    mdb_env_close(raw.env);
    avm_lmdb_stats st;
    avm_lmdb_stats_get(bs.db, &st);
    int bad = store_check(&bs, storedir);
    if (st.batches == 0 || st.commits == 0)
        bad = 1;
    rmtree2(rawdir);
    rmtree2(storedir);
    rmdir(top);

    for (size_t c = 0; c < NCASES; c++)
        qsort(cases[c].lat, cases[c].n, sizeof(uint64_t), cmp_u64);
    double raw_p50 = pct_us(&cases[0], 0.5), raw_rate = rate(&cases[0]);
    double lat_ratio = pct_us(&cases[1], 0.5) / raw_p50;
    double grp_ratio = rate(&cases[3]) / raw_rate;

    if (json) {
        printf("{\"build\":\"%s\",\"quick\":%s,\"tmpfs\":%s,\"cases\":[", AVM_BUILD_TYPE,
               quick ? "true" : "false", tmpfs ? "true" : "false");
        for (size_t c = 0; c < NCASES; c++)
            printf("%s{\"name\":\"%s\",\"batch\":%zu,\"commits\":%llu,\"commits_s\":%.0f,"
                   "\"p50_us\":%.1f,\"p99_us\":%.1f,\"rate_vs_raw\":%.2f,"
                   "\"p50_vs_raw\":%.2f}",
                   c ? "," : "", cases[c].name, cases[c].batch,
                   (unsigned long long)cases[c].commits, rate(&cases[c]),
                   pct_us(&cases[c], 0.5), pct_us(&cases[c], 0.99),
                   rate(&cases[c]) / raw_rate, pct_us(&cases[c], 0.5) / raw_p50);
        printf(
            "],\"apply_p50_vs_raw\":%.2f,\"batch64_rate_vs_raw\":%.2f,\"correct\":%s}\n",
            lat_ratio, grp_ratio, bad ? "false" : "true");
    } else {
        printf("storage_bench (%s build%s), %s, %d round(s) x %.2f s per case, "
               "durable commits\n",
               AVM_BUILD_TYPE, quick ? ", --quick: figures are not measurements" : "",
               tmpfs ? "ON TMPFS (no real fsync)" : base, rounds, per_case);
        printf("%-22s %10s %10s %10s %10s %12s\n", "case", "commits", "commits/s",
               "p50 us", "p99 us", "vs raw");
        for (size_t c = 0; c < NCASES; c++)
            printf("%-22s %10llu %10.0f %10.1f %10.1f %6.2fx rate\n", cases[c].name,
                   (unsigned long long)cases[c].commits, rate(&cases[c]),
                   pct_us(&cases[c], 0.5), pct_us(&cases[c], 0.99),
                   rate(&cases[c]) / raw_rate);
        printf("apply p50 latency / raw p50:      %.2fx (target <= 1.2x)\n", lat_ratio);
        printf("apply_batch 64 rate / raw rate:   %.2fx (target >= 5x)\n", grp_ratio);
        printf("results %s\n", bad ? "WRONG" : "correct");
    }
    for (size_t c = 0; c < NCASES; c++)
        free(cases[c].lat);
    return bad;
}
