/* interp_bench: throughput of the embedded interpreter (node/embed) with the trace
 * kept in memory, on the workloads of the interpreter-performance issue, next to the
 * reference figures the issue gives for the specification authors' Rust interpreter
 * (anoma/avm-lab avm-core) and a physical floor measured in the same run.
 *
 * Every workload is an .avm program whose loop is a tail-recursive defun. A timed
 * run is the whole program: avm_embedded_run() (new execution, start, run to the
 * end) through avm_exec_free() (which drops the trace), so ops/s is raw: nothing is
 * subtracted. The rate of an empty loop with the same number of iterations is
 * reported next to it so that the loop's own share is visible. Each run's result
 * value, trace length and store size are checked; a wrong one fails the program
 * (exit 1) whatever the speed. See bench/README.md. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#include "avm_err.h"
#include "compiler.h"
#include "embedded.h"
#include "memstore.h"
#include "module.h"
#include "vm.h"

#ifndef AVM_BUILD_TYPE
#define AVM_BUILD_TYPE "unknown"
#endif

#define RUNS 5
/* Operations per loop iteration in the instruction chains: enough to make the
 * loop's own cost small next to the chain, few enough to read the program. */
#define CHAIN 10
/* A run of --quick does 1/QUICK_DIV of the iterations of a normal run. */
#define QUICK_DIV 200
#define FLOOR_PAIRS 20000000u
#define FLOOR_SIZE 48

/* The workload programs. ping-pong's behaviours are copied verbatim from
 * examples/ping_pong.avm (the specification's genericPingPongBehavior). */
static const char lib_src[] =
    "(behavior echo (list (input)))\n"
    "\n"
    "(defun ping-pong (response role continue done)\n"
    "  (let ((msg (input)))\n"
    "    (if (list? msg)\n"
    "        (if (< (nth msg 1) (nth msg 3))\n"
    "            (do (call (nth msg 2) (list response (+ (nth msg 1) 1) (self) (nth msg "
    "3)))\n"
    "                (list continue))\n"
    "            (list done))\n"
    "        (list (str role \"-decode-failed\")))))\n"
    "(behavior ping (ping-pong 'pong \"ping\" \"ping-continue\" \"ping-done\"))\n"
    "(behavior pong (ping-pong 'ping \"pong\" \"pong-continue\" \"pong-done\"))\n"
    "\n"
    "(pure add (a b) (+ a b))\n"
    "\n"
    "(defun empty-loop (n acc)\n"
    "  (if (= n 0) acc (empty-loop (- n 1) (+ acc 1))))\n"
    "(defun echo-loop (o n acc)\n"
    "  (if (= n 0) acc (echo-loop o (- n 1) (+ acc (call o n)))))\n"
    "(defun game-loop (ping pong rounds n acc)\n"
    "  (if (= n 0)\n"
    "      acc\n"
    "      (game-loop ping pong rounds (- n 1)\n"
    "        (if (= (call ping (list 'ping 0 pong rounds))\n"
    "               \"ping-continue\")\n"
    "            (+ acc 1)\n"
    "            acc))))\n"
    "(defun tx-loop (n acc)\n"
    "  (if (= n 0)\n"
    "      acc\n"
    "      (tx-loop (- n 1) (let ((tx (beginTx)))\n"
    "                         (setState (list n))\n"
    "                         (if (commitTx tx) (+ acc 1) acc)))))\n"
    "(behavior tx-chain (list (tx-loop (input) 0)))\n"
    "(behavior self-chain (list (self-loop (input) 0)))\n"
    "(behavior state-chain (list (state-loop (input) 0)))\n"
    "(behavior pure-chain (list (pure-loop (input) 0)))\n"
    "(defun fill (k) (if (= k 0) 0 (do (createObj \"echo\") (fill (- k 1)))))\n";

typedef enum {
    W_ECHO,
    W_GAME,
    W_SELF,
    W_STATE,
    W_PURE,
    W_TX,
} wkind;

typedef struct workload {
    const char *key;   /* JSON name and --filter target */
    const char *label; /* table row */
    const char *unit;  /* what an op is */
    wkind kind;
    const char *objs[2]; /* behaviours the setup creates (the first is the target) */
    uint32_t fillers;    /* extra echo objects in the store */
    uint32_t rounds;     /* W_GAME: the game's max count */
    uint64_t iters;      /* loop iterations per normal run */
    double reference;    /* the figure, ops/s */
} workload;

/* Iterations are chosen for runs of about 0.05 to 0.4 s, with at most a few
 * hundred MB of trace (ping-pong's trace keeps every message). One workload per line
 * reads better than one field per line, hence no clang-format here. */
/* clang-format off */
static const workload workloads[] = {
    {"echo", "call echo, flat loop", "calls", W_ECHO, {"echo", NULL}, 0, 0, 1000000,
     5.4e6},
    {"pingpong-1", "ping-pong, 1 round/game", "calls", W_GAME, {"ping", "pong"}, 0, 1,
     200000, 1.86e6},
    {"pingpong-10", "ping-pong, 10 rounds/game", "calls", W_GAME, {"ping", "pong"}, 0,
     10, 36000, 689e3},
    {"pingpong-100", "ping-pong, 100 rounds/game", "calls", W_GAME, {"ping", "pong"},
     0, 100, 4000, 153e3},
    {"pingpong-1000", "ping-pong, 1000 rounds/game", "calls", W_GAME,
     {"ping", "pong"}, 0, 1000, 400, 13e3},
    {"self", "self chain", "ops", W_SELF, {"self-chain", NULL}, 0, 0, 1000000, 18.9e6},
    {"getState", "getState chain", "ops", W_STATE, {"state-chain", NULL}, 0, 0, 1000000,
     14.7e6},
    {"callPure", "callPure \"add\" chain", "ops", W_PURE, {"pure-chain", NULL}, 0, 0,
     500000, 10.6e6},
    {"tx-1", "tx begin/set/commit, 1 obj", "tx", W_TX, {"tx-chain", NULL}, 0, 0, 500000,
     2.39e6},
    {"tx-1001", "tx begin/set/commit, 1001 objs", "tx", W_TX, {"tx-chain", NULL}, 1000,
     0, 500000, 9.1e3},
};
/* clang-format on */
#define NWORK (sizeof(workloads) / sizeof(workloads[0]))

/* What one finished run must show. */
typedef struct expect {
    int64_t result;   /* the program's value, an integer */
    size_t trace_len; /* events in the trace */
    size_t objects;   /* objects in the store */
} expect;

typedef struct stats {
    uint64_t ns[RUNS];      /* whole runs, sorted */
    uint64_t free_ns[RUNS]; /* their avm_exec_free, sorted */
    uint64_t ops;
    uint64_t steps; /* VM instructions of one run */
} stats;

typedef struct wresult {
    const workload *w;
    uint64_t iters, ops;
    stats run, empty;
} wresult;

static const char *progname = "interp_bench";

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double median_ns(const stats *s)
{
    return (double)s->ns[RUNS / 2];
}

static double rate(const stats *s, uint64_t ns)
{
    return (double)s->ops * 1e9 / (double)ns;
}

static uint64_t ops_per_iter(const workload *w)
{
    switch (w->kind) {
    case W_GAME:
        return w->rounds + 1u; /* counter 0..rounds: one call each */
    case W_SELF:
    case W_STATE:
    case W_PURE:
        return CHAIN;
    default:
        return 1;
    }
}

/* Compiles lib_src followed by `tail`. 0 or -1 (message printed). */
static int compile_prog(const char *what, const char *tail, avm_module **out)
{
    avm_buf src;
    avm_buf_init(&src);
    avm_buf_puts(&src, lib_src);
    /* The chains, unrolled CHAIN times. */
    static const char *const chains[][2] = {{"self-loop", "(self)"},
                                            {"state-loop", "(getState)"}};
    for (size_t c = 0; c < 2; c++) {
        avm_buf_printf(&src, "(defun %s (n acc)\n  (if (= n 0) acc (%s (- n 1) (do",
                       chains[c][0], chains[c][0]);
        for (int i = 0; i < CHAIN; i++)
            avm_buf_printf(&src, " %s", chains[c][1]);
        avm_buf_puts(&src, " (+ acc 1)))))\n");
    }
    /* Each callPure adds 1 to the result of the one before. */
    avm_buf_puts(&src, "(defun pure-loop (n acc)\n  (if (= n 0) acc (pure-loop (- n 1) ");
    for (int i = 0; i < CHAIN; i++)
        avm_buf_puts(&src, "(callPure \"add\" (list ");
    avm_buf_puts(&src, "acc");
    for (int i = 0; i < CHAIN; i++)
        avm_buf_puts(&src, " 1))");
    avm_buf_puts(&src, ")))\n");
    avm_buf_puts(&src, tail);
    if (src.err) {
        fprintf(stderr, "%s: out of memory\n", progname);
        avm_buf_free(&src);
        return -1;
    }
    avm_diag d;
    int rv = avm_compile(what, src.data, src.len, out, &d);
    if (rv != 0) {
        char msg[1024];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "%s: %s\n%s\n", progname, msg, avm_buf_cstr(&src));
    }
    avm_buf_free(&src);
    return rv == 0 ? 0 : -1;
}

static void print_failure(const char *what, avm_exec *x)
{
    avm_buf b;
    avm_buf_init(&b);
    if (avm_exec_status(x) == AVM_RUN_FAILED)
        avm_error_print(&b, avm_exec_error(x));
    else
        avm_buf_printf(&b, "status %d", (int)avm_exec_status(x));
    fprintf(stderr, "%s: %s: the program did not finish: %s\n", progname, what,
            avm_buf_cstr(&b));
    avm_buf_free(&b);
}

/* One run of m on e: the time from avm_embedded_run to the end of avm_exec_free in
 * *ns, of which avm_exec_free (dropping the trace) took *free_ns. Checks the result,
 * the trace and the store against *want. 0 or -1. */
static int timed_run(avm_embedded *e, avm_module *m, const char *what, const expect *want,
                     uint64_t *ns, uint64_t *free_ns, uint64_t *steps)
{
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT, .keep_trace = true};
    avm_exec *x = NULL;
    char errmsg[512] = "";
    int ok = -1;

    uint64_t t0 = now_ns();
    int rv = avm_embedded_run(e, m, -1, &cfg, &x, errmsg, sizeof(errmsg));
    if (rv != 0) {
        fprintf(stderr, "%s: %s: cannot start: %s %s\n", progname, what, avm_strerror(rv),
                errmsg);
        return -1;
    }
    if (avm_exec_status(x) != AVM_RUN_DONE) {
        print_failure(what, x);
        goto done;
    }
    avm_val r = avm_exec_result(x);
    if (r.kind != AVM_INT || r.u.i != want->result) {
        avm_buf b;
        avm_buf_init(&b);
        avm_val_print(&b, r);
        fprintf(stderr, "%s: %s: result %s, expected %lld\n", progname, what,
                avm_buf_cstr(&b), (long long)want->result);
        avm_buf_free(&b);
        goto done;
    }
    if (avm_exec_trace_len(x) != want->trace_len) {
        fprintf(stderr, "%s: %s: %zu trace events, expected %zu\n", progname, what,
                avm_exec_trace_len(x), want->trace_len);
        goto done;
    }
    if (avm_memstore_count(e->store) != want->objects) {
        fprintf(stderr, "%s: %s: %zu objects in the store, expected %zu\n", progname,
                what, avm_memstore_count(e->store), want->objects);
        goto done;
    }
    ok = 0;
done:;
    *steps = avm_exec_steps(x);
    uint64_t t1 = now_ns();
    avm_exec_free(x);
    uint64_t t2 = now_ns();
    *ns = t2 - t0;
    *free_ns = t2 - t1;
    return ok;
}

/* A warm-up run, then RUNS timed runs. */
static int measure(avm_embedded *e, avm_module *m, const char *what, const expect *want,
                   stats *st)
{
    uint64_t ns, free_ns;
    if (timed_run(e, m, what, want, &ns, &free_ns, &st->steps) != 0)
        return -1;
    for (int i = 0; i < RUNS; i++)
        if (timed_run(e, m, what, want, &st->ns[i], &st->free_ns[i], &st->steps) != 0)
            return -1;
    qsort(st->ns, RUNS, sizeof(st->ns[0]), cmp_u64);
    qsort(st->free_ns, RUNS, sizeof(st->free_ns[0]), cmp_u64);
    return 0;
}

/* Creates the workload's objects (in one transaction) and returns their ids as
 * literals for the timed program. 0 or -1. */
static int setup(avm_embedded *e, const workload *w, char lits[2][256])
{
    avm_buf src;
    avm_buf_init(&src);
    avm_buf_printf(&src, "(main (let ((tx (beginTx)) (a (createObj \"%s\"))", w->objs[0]);
    if (w->objs[1])
        avm_buf_printf(&src, " (b (createObj \"%s\"))", w->objs[1]);
    avm_buf_printf(&src, ") (fill %u) (if (commitTx tx) (list a%s) \"conflict\")))\n",
                   w->fillers, w->objs[1] ? " b" : "");
    avm_module *m = NULL;
    int rv = compile_prog("setup.avm", avm_buf_cstr(&src), &m);
    avm_buf_free(&src);
    if (rv != 0)
        return -1;

    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT, .keep_trace = true};
    avm_exec *x = NULL;
    char errmsg[512] = "";
    rv = avm_embedded_run(e, m, -1, &cfg, &x, errmsg, sizeof(errmsg));
    avm_module_release(m);
    if (rv != 0) {
        fprintf(stderr, "%s: %s setup: %s %s\n", progname, w->key, avm_strerror(rv),
                errmsg);
        return -1;
    }
    avm_val r = avm_exec_result(x);
    size_t nobj = w->objs[1] ? 2 : 1;
    if (avm_exec_status(x) != AVM_RUN_DONE || r.kind != AVM_LIST || r.u.l->len != nobj) {
        print_failure("setup", x);
        avm_exec_free(x);
        return -1;
    }
    for (size_t i = 0; i < nobj; i++) {
        avm_buf b;
        avm_buf_init(&b);
        avm_val_print(&b, r.u.l->items[i]);
        snprintf(lits[i], 256, "%s", avm_buf_cstr(&b));
        avm_buf_free(&b);
    }
    avm_exec_free(x);
    return 0;
}

/* The timed program of w with n iterations, and what a run must show. */
static void timed_main(const workload *w, char lits[2][256], uint64_t n, avm_buf *src,
                       expect *want)
{
    unsigned long long nn = (unsigned long long)n;
    want->trace_len = 1; /* the chains: the one call into the behaviour */
    want->result = (int64_t)n;
    switch (w->kind) {
    case W_ECHO:
        avm_buf_printf(src, "(main (echo-loop %s %llu 0))\n", lits[0], nn);
        want->result = (int64_t)(n * (n + 1) / 2);
        want->trace_len = n;
        break;
    case W_GAME:
        avm_buf_printf(src, "(main (game-loop %s %s %u %llu 0))\n", lits[0], lits[1],
                       w->rounds, nn);
        want->trace_len = n * (w->rounds + 1u);
        break;
    case W_SELF:
    case W_STATE:
    case W_PURE:
        avm_buf_printf(src, "(main (call %s %llu))\n", lits[0], nn);
        if (w->kind == W_PURE)
            want->result = (int64_t)(n * CHAIN);
        break;
    case W_TX:
        avm_buf_printf(src, "(main (call %s %llu))\n", lits[0], nn);
        want->trace_len = 2 * n + 1; /* TransactionStarted, TransactionCommitted */
        break;
    }
    want->objects = (w->objs[1] ? 2 : 1) + w->fillers;
}

static int run_workload(const workload *w, bool quick, wresult *res)
{
    avm_embedded e;
    avm_module *m = NULL, *em = NULL;
    char lits[2][256] = {"", ""};
    int ok = -1;

    res->w = w;
    res->iters = quick ? (w->iters + QUICK_DIV - 1) / QUICK_DIV : w->iters;
    res->ops = res->iters * ops_per_iter(w);
    res->run.ops = res->ops;
    res->empty.ops = res->iters;
    if (avm_embedded_init(&e, "node1", "main") != 0) {
        fprintf(stderr, "%s: out of memory\n", progname);
        return -1;
    }
    if (setup(&e, w, lits) != 0)
        goto done;

    avm_buf src;
    expect want, ewant;
    avm_buf_init(&src);
    timed_main(w, lits, res->iters, &src, &want);
    int rv = compile_prog("bench.avm", avm_buf_cstr(&src), &m);
    avm_buf_free(&src);
    if (rv != 0)
        goto done;
    avm_buf_init(&src);
    avm_buf_printf(&src, "(main (empty-loop %llu 0))\n", (unsigned long long)res->iters);
    rv = compile_prog("empty.avm", avm_buf_cstr(&src), &em);
    avm_buf_free(&src);
    if (rv != 0)
        goto done;
    ewant.result = (int64_t)res->iters;
    ewant.trace_len = 0;
    ewant.objects = want.objects;

    if (measure(&e, m, w->key, &want, &res->run) != 0 ||
        measure(&e, em, "empty loop", &ewant, &res->empty) != 0)
        goto done;
    ok = 0;
done:
    if (m)
        avm_module_release(m);
    if (em)
        avm_module_release(em);
    avm_embedded_close(&e);
    return ok;
}

/* The physical floor: malloc + free of a 48-byte block (the size of a small list
 * node), FLOOR_PAIRS times, measured like a workload. */
static void measure_floor(bool quick, stats *st)
{
    uint64_t n = quick ? FLOOR_PAIRS / QUICK_DIV : FLOOR_PAIRS;
    static void *volatile sink;
    memset(st, 0, sizeof(*st));
    st->ops = n;
    for (int r = -1; r < RUNS; r++) {
        uint64_t t0 = now_ns();
        for (uint64_t i = 0; i < n; i++) {
            void *p = malloc(FLOOR_SIZE);
            sink = p; /* the compiler may not drop the pair */
            free(p);
        }
        uint64_t dt = now_ns() - t0;
        if (r >= 0)
            st->ns[r] = dt;
    }
    (void)sink;
    qsort(st->ns, RUNS, sizeof(st->ns[0]), cmp_u64);
}

/* Output. */

static void fmt_rate(char *out, size_t n, double r)
{
    if (r >= 1e6)
        snprintf(out, n, "%.2f M", r / 1e6);
    else if (r >= 1e3)
        snprintf(out, n, "%.1f k", r / 1e3);
    else
        snprintf(out, n, "%.0f", r);
}

static void cpu_model(char *out, size_t n)
{
    snprintf(out, n, "unknown cpu");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f == NULL)
        return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *p = strchr(line, ':');
            if (p) {
                p += 1 + (p[1] == ' ');
                p[strcspn(p, "\n")] = '\0';
                snprintf(out, n, "%s", p);
            }
            break;
        }
    }
    fclose(f);
}

/* The load average when the program started: other tenants' work shows here. */
static char loadavg[64] = "?";

static void read_loadavg(void)
{
    FILE *f = fopen("/proc/loadavg", "r");
    if (f == NULL)
        return;
    if (fgets(loadavg, sizeof(loadavg), f) != NULL) {
        char *sp = strchr(loadavg, ' ');
        if (sp != NULL)
            sp = strchr(sp + 1, ' ');
        if (sp != NULL)
            sp = strchr(sp + 1, ' ');
        if (sp != NULL)
            *sp = '\0'; /* the 1, 5 and 15 minute averages */
    }
    fclose(f);
}

static double ns_per_op(const wresult *r)
{
    return median_ns(&r->run) / (double)r->ops;
}

static const wresult *find(const wresult *res, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(res[i].w->key, key) == 0)
            return &res[i];
    return NULL;
}

static double share(const stats *part, const stats *whole)
{
    return median_ns(part) / median_ns(whole);
}

static double drop_share(const stats *s)
{
    return (double)s->free_ns[RUNS / 2] / median_ns(s);
}

static void print_table(const wresult *res, size_t n, const stats *floor, bool quick)
{
    char cpu[256];
    struct utsname u;
    cpu_model(cpu, sizeof(cpu));
    if (uname(&u) != 0)
        snprintf(u.release, sizeof(u.release), "?");
    printf("interp_bench: the embedded interpreter, in-memory store, trace kept in "
           "memory\n");
    printf("build %s; %s; kernel %s; load average at start %s%s\n", AVM_BUILD_TYPE, cpu,
           u.release, loadavg,
           quick ? "; --quick: a smoke run, too short for figures" : "");
    printf("each figure: median of %d timed runs after 1 warm-up, [min .. max] over "
           "the runs. A run is\nthe whole program, avm_embedded_run() to the end of "
           "avm_exec_free(): nothing is subtracted.\n\n",
           RUNS);
    printf("%-30s %8s %9s %21s %7s %8s %6s %4s %5s %5s\n", "workload", "ops/run",
           "median/s", "[min .. max]/s", "ns/op", "ref/s", "ratio", ">=2x", "loop",
           "drop");
    for (size_t i = 0; i < n; i++) {
        const wresult *r = &res[i];
        char med[32], lo[32], hi[32], ref[32], range[80];
        double m = rate(&r->run, r->run.ns[RUNS / 2]);
        fmt_rate(med, sizeof(med), m);
        fmt_rate(lo, sizeof(lo), rate(&r->run, r->run.ns[RUNS - 1]));
        fmt_rate(hi, sizeof(hi), rate(&r->run, r->run.ns[0]));
        fmt_rate(ref, sizeof(ref), r->w->reference);
        snprintf(range, sizeof(range), "[%s .. %s]", lo, hi);
        double ratio = m / r->w->reference;
        printf("%-30s %8llu %9s %21s %7.1f %8s %6.2f %4s %4.0f%% %4.0f%%\n", r->w->label,
               (unsigned long long)r->ops, med, range, ns_per_op(r), ref, ratio,
               ratio >= 2.0 ? "yes" : "NO", 100.0 * share(&r->empty, &r->run),
               100.0 * drop_share(&r->run));
    }
    printf("\nops: calls = object calls (= ObjectCalled events in the trace); chain "
           "ops = the chain's\ninstructions (%d per loop iteration); tx = beginTx, "
           "setState, commitTx.\nping-pong: a game of R rounds is the specification's "
           "test with max count R: R+1 calls,\nnested R+1 deep, all counted.\n",
           CHAIN);
    printf("ref/s: the issue's figure for the Rust reference (anoma/avm-lab avm-core), "
           "measured on this\nmachine kind (median of 5, about +-10%%). It is not "
           "re-measured in this run: no crates\nregistry is reachable here.\n");
    printf("loop: time of the empty loop (body (+ acc 1)) with the same iteration count "
           "/ the workload's\ntime. drop: avm_exec_free (dropping the trace) / the "
           "workload's time. Both are included\nin the figures.\n\n");

    if (floor != NULL) {
        char frate[32];
        fmt_rate(frate, sizeof(frate), rate(floor, floor->ns[RUNS / 2]));
        printf("physical floor, same run: malloc + free of a %d-byte block: %.1f "
               "ns/pair (%s pairs/s)\n\n",
               FLOOR_SIZE, median_ns(floor) / (double)floor->ops, frate);
    }

    printf("cost per operation as the work grows (median ns/op; x = ratio to the "
           "first line):\n");
    const wresult *base = find(res, n, "pingpong-1");
    static const char *const games[] = {"pingpong-1", "pingpong-10", "pingpong-100",
                                        "pingpong-1000"};
    for (size_t i = 0; i < 4; i++) {
        const wresult *r = find(res, n, games[i]);
        if (r == NULL)
            continue;
        printf("  ping-pong, %4u round(s), nesting depth %4u: %7.1f ns/call",
               r->w->rounds, r->w->rounds + 1, ns_per_op(r));
        if (base)
            printf("  x%.2f", ns_per_op(r) / ns_per_op(base));
        printf("\n");
    }
    const wresult *t1 = find(res, n, "tx-1"), *t2 = find(res, n, "tx-1001");
    const wresult *txs[2] = {t1, t2};
    for (size_t i = 0; i < 2; i++) {
        const wresult *r = txs[i];
        if (r == NULL)
            continue;
        printf("  tx, %4u object(s) in the store:             %7.1f ns/tx",
               r->w->fillers + 1, ns_per_op(r));
        if (t1)
            printf("    x%.2f", ns_per_op(r) / ns_per_op(t1));
        printf("\n");
    }
}

static void json_stats(const stats *s)
{
    printf("{\"median_ops_s\":%.0f,\"min_ops_s\":%.0f,\"max_ops_s\":%.0f,"
           "\"median_ns\":%llu,\"median_drop_ns\":%llu,\"vm_instructions\":%llu,"
           "\"runs_ns\":[",
           rate(s, s->ns[RUNS / 2]), rate(s, s->ns[RUNS - 1]), rate(s, s->ns[0]),
           (unsigned long long)s->ns[RUNS / 2], (unsigned long long)s->free_ns[RUNS / 2],
           (unsigned long long)s->steps);
    for (int i = 0; i < RUNS; i++)
        printf("%s%llu", i ? "," : "", (unsigned long long)s->ns[i]);
    printf("]}");
}

static void print_json(const wresult *res, size_t n, const stats *floor, bool quick)
{
    char cpu[256];
    cpu_model(cpu, sizeof(cpu));
    avm_buf b;
    avm_buf_init(&b);
    avm_json_str(&b, cpu, strlen(cpu));
    printf("{\"benchmark\":\"interp_bench\",\"build\":\"%s\",\"cpu\":%s,\"quick\":%s,"
           "\"loadavg\":\"%s\",\"runs\":%d,\"warmup\":1,\"trace\":true,\"chain\":%d,",
           AVM_BUILD_TYPE, avm_buf_cstr(&b), quick ? "true" : "false", loadavg, RUNS,
           CHAIN);
    avm_buf_free(&b);
    printf("\"reference_note\":\"the issue's figures for anoma/avm-lab avm-core (Rust), "
           "measured on this machine kind, not in this run\",");
    if (floor != NULL) {
        printf("\"floor\":{\"what\":\"malloc+free of %d bytes\",\"pairs\":%llu,"
               "\"ns_per_pair\":%.2f,\"stats\":",
               FLOOR_SIZE, (unsigned long long)floor->ops,
               median_ns(floor) / (double)floor->ops);
        json_stats(floor);
        printf("},");
    }
    printf("\"workloads\":[");
    for (size_t i = 0; i < n; i++) {
        const wresult *r = &res[i];
        double m = rate(&r->run, r->run.ns[RUNS / 2]);
        printf("%s{\"name\":\"%s\",\"unit\":\"%s\",\"rounds\":%u,\"objects\":%u,"
               "\"iterations\":%llu,\"ops\":%llu,\"ns_per_op\":%.2f,"
               "\"reference_ops_s\":%.0f,\"ratio\":%.3f,\"meets_2x\":%s,\"run\":",
               i ? "," : "", r->w->key, r->w->unit, r->w->rounds,
               (r->w->objs[1] ? 2u : 1u) + r->w->fillers, (unsigned long long)r->iters,
               (unsigned long long)r->ops, ns_per_op(r), r->w->reference,
               m / r->w->reference, m / r->w->reference >= 2.0 ? "true" : "false");
        json_stats(&r->run);
        printf(",\"empty_loop\":");
        json_stats(&r->empty);
        printf(",\"loop_share\":%.4f,\"drop_share\":%.4f}", share(&r->empty, &r->run),
               drop_share(&r->run));
    }
    printf("]}\n");
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [--quick] [--json] [--filter SUBSTRING] [--no-floor]\n"
            "  --quick     1/%d of the iterations: a smoke run that checks every\n"
            "              workload's results, too short for figures\n"
            "  --json      one JSON object instead of the table\n"
            "  --filter    only the workloads whose name contains SUBSTRING\n"
            "  --no-floor  skip the malloc/free floor (for profilers)\n"
            "exit 0 when every run's result, trace and store were right, 1 otherwise\n"
            "(the speed is reported, never judged by the exit code).\n",
            progname, QUICK_DIV);
}

int main(int argc, char **argv)
{
    bool quick = false, json = false, no_floor = false;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--json") == 0) {
            json = true;
        } else if (strcmp(argv[i], "--no-floor") == 0) {
            no_floor = true;
        } else if (strcmp(argv[i], "--filter") == 0 && i + 1 < argc) {
            filter = argv[++i];
        } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            usage(stderr);
            return 2;
        }
    }

    read_loadavg();
    wresult res[NWORK];
    size_t n = 0;
    for (size_t i = 0; i < NWORK; i++) {
        if (filter && strstr(workloads[i].key, filter) == NULL)
            continue;
        if (!json)
            fprintf(stderr, "%s: %s...\n", progname, workloads[i].key);
        if (run_workload(&workloads[i], quick, &res[n]) != 0)
            return 1;
        n++;
    }
    stats floor;
    if (!no_floor)
        measure_floor(quick, &floor);
    if (json)
        print_json(res, n, no_floor ? NULL : &floor, quick);
    else
        print_table(res, n, no_floor ? NULL : &floor, quick);
    return 0;
}
