/* exec_bench: the execution manager (node/exec, the daemon's Layer 2) beside the
 * storage layer's group commit, measured in the same run on the same file system.
 *
 *   starts      executions started and run to their end per second: S executions
 *               of a one-instruction program, each durable at its start and at its
 *               end (checkpoints, group-committed)
 *   tx E        committed single-object transactions per second with E executions
 *               running at once, each incrementing its own counter object in a loop
 *               of transactions (no conflicts); every commit carries the execution's
 *               checkpoint (exactly-once resume), as in the daemon. Measured in both
 *               commit modes: pipelined (the default: a commit is applied when
 *               commitTx runs and made durable with its round's group commit) and
 *               durable (commitTx waits for the group commit on disk)
 *   raw E       the storage layer alone: apply_batch() of E ready single-object
 *               write sets (a counter state each) per LMDB transaction, in a loop;
 *               the ceiling for tx E
 *
 * All durable (fsync). Reported: rates, tx E / raw E and durable tx E / raw+ckpt E.
 * Target (daemon issue): at E = 64 the manager keeps at least 80% of the storage
 * layer's group-commit rate (raw). After the runs
 * every counter is checked against the commits made; a wrong one fails the program
 * (exit 1), whatever the speed. Options: --quick (smoke test), --json, --dir DIR. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avm_err.h"
#include "compiler.h"
#include "embedded.h"
#include "lmdb_store.h"
#include "manager.h"
#include "module.h"

#ifndef AVM_BUILD_TYPE
#define AVM_BUILD_TYPE "unknown"
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static const char *base_dir = NULL;
static char tmp_root[512];

static const char *fresh_dir(const char *tag)
{
    static char buf[700];
    static int n;
    snprintf(buf, sizeof(buf), "%s/%s-%d", tmp_root, tag, n++);
    return buf;
}

static void rmtree(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "exec_bench: could not remove %s\n", dir);
}

static avm_module *compile(const char *src)
{
    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("bench.avm", src, strlen(src), &m, &d) != 0) {
        char msg[800];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "exec_bench: compile: %s\n", msg);
        exit(2);
    }
    return m;
}

typedef struct node {
    char dir[700];
    avm_embedded e;
    avm_mgr *m;
} node;

static void node_open_mode(node *n, const char *tag, avm_commit_mode mode)
{
    char err[512] = "";
    snprintf(n->dir, sizeof(n->dir), "%s", fresh_dir(tag));
    if (avm_embedded_open(&n->e, "node1", "main", n->dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "exec_bench: %s\n", err);
        exit(2);
    }
    avm_mgr_config cfg = {.node = &n->e, .commit_mode = mode};
    if (avm_mgr_open(&cfg, &n->m, err, sizeof(err)) != 0) {
        fprintf(stderr, "exec_bench: %s\n", err);
        exit(2);
    }
}

static void node_open(node *n, const char *tag)
{
    node_open_mode(n, tag, AVM_COMMIT_PIPELINED);
}

static void node_close(node *n)
{
    avm_mgr_close(n->m);
    avm_embedded_close(&n->e);
    rmtree(n->dir);
}

static void start(node *n, avm_module *mod, char *id, size_t idlen)
{
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT};
    char err[512];
    if (avm_mgr_start(n->m, mod, -1, &cfg, "bench", id, idlen, err, sizeof(err)) != 0) {
        fprintf(stderr, "exec_bench: start: %s\n", err);
        exit(2);
    }
}

static void run_all(node *n)
{
    while (avm_mgr_round(n->m))
        ;
}

static bool ok = true;

/* S executions of (main 1): started, run, ended, each durable twice. */
static double bench_starts(int s)
{
    node n;
    node_open(&n, "starts");
    avm_module *mod = compile("(main 1)");
    char id[64];
    double t0 = now();
    for (int i = 0; i < s; i++)
        start(&n, mod, id, sizeof(id));
    run_all(&n);
    double dt = now() - t0;
    avm_mgr_counts c;
    avm_mgr_counts_get(n.m, &c);
    if (c.terminated != (size_t)s) {
        fprintf(stderr, "exec_bench: %zu of %d executions ended\n", c.terminated, s);
        ok = false;
    }
    avm_module_release(mod);
    node_close(&n);
    return s / dt;
}

static const char *counter_src =
    "(behavior counter\n"
    "  (let ((s (getState)) (n (if (null? s) 0 (head s))))\n"
    "    (do (setState (list (+ n 1))) (list (+ n 1)))))\n"
    "(defun loop (c i)\n"
    "  (if (= i 0) (call c 'get)\n"
    "      (let ((t (beginTx))) (do (call c 'inc) (commitTx t) (loop c (- i 1))))))\n"
    "(main (let ((t (beginTx)) (c (createObj \"counter\"))) (do (commitTx t) (loop c "
    "%d))))";

/* E executions, K transactions each. Returns commits per second; *ckpt gets the
 * mean bytes of checkpoint state a commit carried. */
static double bench_tx(int e, int k, avm_commit_mode mode, size_t *ckpt)
{
    node n;
    node_open_mode(&n, "tx", mode);
    char src[1024];
    snprintf(src, sizeof(src), counter_src, k);
    avm_module *mod = compile(src);
    char(*ids)[64] = calloc((size_t)e, 64);
    for (int i = 0; i < e; i++)
        start(&n, mod, ids[i], 64);
    /* Timed from the first round: the starts, the counters' creation (one commit
     * each) and the loops. */
    avm_mgr_counts c0, c1;
    avm_mgr_counts_get(n.m, &c0);
    double t0 = now();
    run_all(&n);
    double dt = now() - t0;
    avm_mgr_counts_get(n.m, &c1);
    uint64_t commits = c1.commits - c0.commits;
    *ckpt = commits ? (size_t)((c1.ckpt_bytes - c0.ckpt_bytes) / commits) : 0;
    for (int i = 0; i < e; i++) {
        avm_mgr_info info;
        char err[256];
        /* The loop's last call (input 'get) increments once more: k + 1. */
        if (avm_mgr_info_get(n.m, ids[i], &info, err, sizeof(err)) != 0 ||
            info.outcome != AVM_XO_DONE || info.result.kind != AVM_INT ||
            info.result.u.i != k + 1) {
            fprintf(stderr, "exec_bench: execution %s did not count to %d\n", ids[i],
                    k + 1);
            ok = false;
        }
    }
    if (c1.conflicts != c0.conflicts) {
        fprintf(stderr, "exec_bench: unexpected conflicts\n");
        ok = false;
    }
    free(ids);
    avm_module_release(mod);
    node_close(&n);
    return commits / dt;
}

/* The storage layer alone: batches of e single-object write sets, k batches;
 * with ckpt > 0 each write set also carries a checkpoint of that many bytes for
 * its own execution id, as the manager's commits do. */
static double bench_raw(int e, int k, size_t ckpt)
{
    node n;
    node_open(&n, "raw");
    avm_store *s = n.e.store;
    avm_val *oids = calloc((size_t)e, sizeof(avm_val));
    avm_module *mod = compile("(behavior counter (list 1)) (main 1)");
    avm_val name;
    avm_cstr(AVM_STR, "counter", &name);
    for (int i = 0; i < e; i++) {
        char id[32];
        snprintf(id, sizeof(id), "node1/%d", 1000 + i);
        avm_cstr(AVM_OBJID, id, &oids[i]);
        avm_create cr = {.oid = oids[i],
                         .beh = {.name = name, .mod = mod, .fn = 0},
                         .meta = {.machine = n.e.plat.node,
                                  .creating = n.e.plat.default_ctrl,
                                  .current = n.e.plat.default_ctrl}};
        avm_writeset ws = {.creates = &cr, .ncreates = 1};
        bool c;
        if (s->ops->apply(s, &ws, &c) != 0 || !c) {
            fprintf(stderr, "exec_bench: raw setup failed\n");
            exit(2);
        }
    }
    avm_writeset *ws = calloc((size_t)e, sizeof(*ws));
    const avm_writeset **wp = calloc((size_t)e, sizeof(*wp));
    avm_read *rd = calloc((size_t)e, sizeof(*rd));
    avm_pair *st = calloc((size_t)e, sizeof(*st));
    bool *committed = calloc((size_t)e, sizeof(bool));
    uint8_t *state = calloc(ckpt + 1, 1);
    char(*xid)[32] = calloc((size_t)e, 32);
    for (size_t i = 0; i < ckpt; i++)
        state[i] = (uint8_t)(i * 131 + 7);
    for (int i = 0; i < e; i++)
        snprintf(xid[i], 32, "node1/x%d", i + 1);
    double t0 = now();
    uint64_t commits = 0;
    for (int r = 0; r < k; r++) {
        for (int i = 0; i < e; i++) {
            const avm_objrec *rec = s->ops->get(s, NULL, oids[i]);
            rd[i] = (avm_read){.oid = oids[i], .version = rec->version};
            avm_val one = avm_int(r + 1);
            avm_list_from(&one, 1, &st[i].b);
            st[i].a = oids[i];
            ws[i] = (avm_writeset){
                .reads = &rd[i], .nreads = 1, .states = &st[i], .nstates = 1};
            if (ckpt > 0) {
                ws[i].ckpt_id = xid[i];
                ws[i].ckpt_state = state;
                ws[i].ckpt_len = ckpt;
                ws[i].ckpt_status = AVM_RUN_YIELD;
            }
            wp[i] = &ws[i];
        }
        if (avm_lmdb_apply_batch(n.e.db, wp, (size_t)e, committed) != 0) {
            fprintf(stderr, "exec_bench: raw batch failed\n");
            exit(2);
        }
        for (int i = 0; i < e; i++) {
            commits += committed[i];
            avm_val_release(st[i].b);
        }
    }
    double dt = now() - t0;
    if (commits != (uint64_t)e * (uint64_t)k) {
        fprintf(stderr, "exec_bench: raw commits %llu, expected %d\n",
                (unsigned long long)commits, e * k);
        ok = false;
    }
    for (int i = 0; i < e; i++)
        avm_val_release(oids[i]);
    avm_val_release(name);
    avm_module_release(mod);
    free(oids);
    free(ws);
    free(wp);
    free(rd);
    free(st);
    free(committed);
    free(state);
    free(xid);
    node_close(&n);
    return commits / dt;
}

int main(int argc, char **argv)
{
    bool quick = false, json = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0)
            quick = true;
        else if (strcmp(argv[i], "--json") == 0)
            json = true;
        else if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base_dir = argv[++i];
        else {
            fprintf(stderr, "usage: exec_bench [--quick] [--json] [--dir DIR]\n");
            return 2;
        }
    }
    const char *t = base_dir ? base_dir : getenv("TMPDIR");
    snprintf(tmp_root, sizeof(tmp_root), "%s/avm-exec-bench-XXXXXX",
             t && *t ? t : "/tmp");
    if (mkdtemp(tmp_root) == NULL) {
        perror("exec_bench: mkdtemp");
        return 2;
    }
    int starts = quick ? 200 : 5000;
    int conc[] = {1, 8, 64};
    /* Transactions per execution: enough for a second or so per case. */
    int per[] = {quick ? 50 : 1000, quick ? 20 : 500, quick ? 5 : 200};
    double srate = bench_starts(starts);
    double tx[3], dur[3], raw[3], rawck[3];
    size_t ck[3], ckd[3];
    for (int c = 0; c < 3; c++) {
        /* Interleaved: the ceilings and the manager under the same conditions. */
        raw[c] = bench_raw(conc[c], per[c], 0);
        tx[c] = bench_tx(conc[c], per[c], AVM_COMMIT_PIPELINED, &ck[c]);
        dur[c] = bench_tx(conc[c], per[c], AVM_COMMIT_DURABLE, &ckd[c]);
        rawck[c] = bench_raw(conc[c], per[c], ckd[c]);
    }
    rmtree(tmp_root);
    if (json) {
        printf("{\"build\":\"%s\",\"quick\":%s,\"starts_s\":%.0f,\"cases\":[",
               AVM_BUILD_TYPE, quick ? "true" : "false", srate);
        for (int c = 0; c < 3; c++)
            printf("%s{\"executions\":%d,\"pipelined_s\":%.0f,\"durable_s\":%.0f,"
                   "\"raw_s\":%.0f,\"raw_ckpt_s\":%.0f,\"ckpt_bytes\":%zu,"
                   "\"pipelined_vs_raw\":%.3f,\"durable_vs_raw\":%.3f,"
                   "\"durable_vs_raw_ckpt\":%.3f}",
                   c ? "," : "", conc[c], tx[c], dur[c], raw[c], rawck[c], ckd[c],
                   tx[c] / raw[c], dur[c] / raw[c], dur[c] / rawck[c]);
        printf("],\"correct\":%s}\n", ok ? "true" : "false");
    } else {
        printf("exec_bench (%s build%s), %s, durable commits\n", AVM_BUILD_TYPE,
               quick ? ", --quick: figures are not measurements" : "",
               base_dir ? base_dir : (t && *t ? t : "/tmp"));
        printf("executions started and ended:  %.0f /s\n", srate);
        printf("%-6s %11s %11s %10s %11s %7s %10s %10s %10s\n", "execs", "pipelined/s",
               "durable/s", "raw/s", "raw+ckpt/s", "ckpt B", "pipe/raw", "dur/raw",
               "dur/+ckpt");
        for (int c = 0; c < 3; c++)
            printf("%-6d %11.0f %11.0f %10.0f %11.0f %7zu %9.2fx %9.2fx %9.2fx\n",
                   conc[c], tx[c], dur[c], raw[c], rawck[c], ckd[c], tx[c] / raw[c],
                   dur[c] / raw[c], dur[c] / rawck[c]);
        printf("raw: apply_batch of E single-object state writes per LMDB transaction;\n"
               "raw+ckpt: each also carrying a checkpoint of the manager's mean size.\n"
               "Target: pipelined at 64 executions >= 0.80x raw.\n");
        printf("%s\n", ok ? "results correct" : "RESULTS WRONG");
    }
    return ok ? 0 : 1;
}
