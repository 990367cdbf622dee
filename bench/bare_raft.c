/* bare_raft: the floor for replicated controllers, the canonical/raft library alone
 * (0.22.1, its own durable raft_uv log and raft_uv_tcp transport) as a cluster of
 * forked processes on 127.0.0.1, measured beside our controllers by
 * bench/raft_bench.sh in the same run.
 *
 * One run per DEPTH: the parent makes a fresh directory per node, forks NODES node
 * processes (ids 1..NODES, each with its own libuv loop, raft_uv log in DIR/nID and
 * raft_uv_tcp listener on 127.0.0.1:PORT+ID), all bootstrapped with the same
 * all-voter configuration. Node 1 has the shortest election timeout, so it normally
 * leads; whichever node leads runs the load:
 *
 *   - a barrier is committed first (the cluster is up and every log agrees);
 *   - then the leader keeps DEPTH raft_apply() calls of ENTRY bytes in flight: each
 *     apply callback submits the next one. The first WARMUP seconds are not counted;
 *     during the next SECS seconds every entry that is committed and applied on the
 *     leader counts (entries/s), and the time from raft_apply() to its callback of
 *     every entry submitted in that window is a latency sample (p50, p99);
 *   - CPU: the parent reads the user+system time of every node process
 *     (/proc/PID/stat, all threads) when the window opens and when the last entry
 *     has been applied; cpu_us_per_op = that CPU / the entries applied meanwhile.
 *
 * raft_set_max_inflight_entries is set to --inflight (default 4096): the library's
 * default of 32 caps the entries in flight per follower and halves the pipelined
 * throughput, which would make a slow floor. Snapshots are off during a run.
 *
 * Every process has a hard deadline (alarm); the parent kills its children by PID
 * and removes the directories. Output: one `RESULT key=value ...` line per depth
 * on stdout, or with --json one JSON object. Exit 0 when every depth produced a
 * result with no failed apply, 1 otherwise, 2 for a usage or set-up error.
 *
 * Options: --depths D[,D...] (default 1,16,64), --secs S (default 2),
 * --warmup S (default 0.3), --entry BYTES (default 64), --nodes N (default 3),
 * --port BASE (default 47300; run i uses BASE + 10 i + id), --inflight N,
 * --dir DIR (default a new /tmp/raftbench-bare-XXXXXX), --json, --quick (depths 1
 * and 16 for 0.3 s: a smoke run, no figures). */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>

#define MAX_NODES 7
#define MAX_DEPTHS 8

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* ---- the options ---- */

static struct {
    unsigned depths[MAX_DEPTHS];
    size_t ndepths;
    double secs, warmup;
    unsigned entry, nodes, inflight;
    int port;
    const char *dir;
    bool json, quick;
} opt = {.depths = {1, 16, 64},
         .ndepths = 3,
         .secs = 2,
         .warmup = 0.3,
         .entry = 64,
         .nodes = 3,
         .inflight = 4096,
         .port = 47300};

/* ---- leader -> parent messages (one write each, below PIPE_BUF) ---- */

enum { MSG_START = 1, MSG_END = 2 };

typedef struct report {
    int type;
    unsigned id;      /* the node that ran the load */
    uint64_t window;  /* entries applied within the timed window */
    uint64_t applied; /* entries applied from the window's start to the end */
    uint64_t samples; /* latency samples */
    uint64_t errors;  /* failed raft_apply() calls or callbacks */
    double secs;      /* the window's length */
    double p50_us, p99_us, mean_us, max_us;
} report;

/* ---- a node (child process) ---- */

typedef struct entry_req {
    struct raft_apply req; /* req.data points back here */
    uint64_t start;
} entry_req;

static struct {
    unsigned id, depth;
    int report_fd;
    uv_loop_t loop;
    uv_timer_t poll;
    struct raft_uv_transport transport;
    struct raft_io io;
    struct raft_fsm fsm;
    struct raft raft;
    struct raft_barrier barrier;
    bool barrier_sent, loading, finished;
    uint64_t leader_since;
    uint64_t applied_fsm; /* the state machine: a counter */
    /* The load. */
    uint64_t open_at, close_at; /* the timed window */
    unsigned outstanding;
    uint64_t window, applied, errors;
    uint64_t *lat;
    size_t nlat, caplat;
} node;

static int fsm_apply(struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    (void)fsm;
    (void)buf;
    node.applied_fsm++;
    *result = NULL;
    return 0;
}

static int fsm_snapshot(struct raft_fsm *fsm, struct raft_buffer *bufs[], unsigned *n)
{
    (void)fsm;
    struct raft_buffer *b = raft_malloc(sizeof(*b));
    if (b == NULL)
        return RAFT_NOMEM;
    b->len = sizeof(node.applied_fsm);
    b->base = raft_malloc(b->len);
    if (b->base == NULL) {
        raft_free(b);
        return RAFT_NOMEM;
    }
    memcpy(b->base, &node.applied_fsm, b->len);
    *bufs = b;
    *n = 1;
    return 0;
}

static int fsm_restore(struct raft_fsm *fsm, struct raft_buffer *buf)
{
    (void)fsm;
    if (buf->len == sizeof(node.applied_fsm))
        memcpy(&node.applied_fsm, buf->base, buf->len);
    raft_free(buf->base);
    return 0;
}

static void send_report(const report *r)
{
    ssize_t n;
    do
        n = write(node.report_fd, r, sizeof(*r));
    while (n < 0 && errno == EINTR);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
    return n ? (double)v[(size_t)((double)(n - 1) * p)] / 1e3 : 0;
}

/* All entries are in: the figures go to the parent, which samples the CPU and then
 * kills every node. This node waits for that (the alarm bounds the wait). */
static void finish(void)
{
    node.finished = true;
    report r = {.type = MSG_END,
                .id = node.id,
                .window = node.window,
                .applied = node.applied,
                .samples = node.nlat,
                .errors = node.errors,
                .secs = (double)(node.close_at - node.open_at) / 1e9};
    qsort(node.lat, node.nlat, sizeof(node.lat[0]), cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < node.nlat; i++)
        sum += (double)node.lat[i];
    r.p50_us = pct_us(node.lat, node.nlat, 0.50);
    r.p99_us = pct_us(node.lat, node.nlat, 0.99);
    r.mean_us = node.nlat ? sum / (double)node.nlat / 1e3 : 0;
    r.max_us = node.nlat ? (double)node.lat[node.nlat - 1] / 1e3 : 0;
    send_report(&r);
    uv_timer_stop(&node.poll);
}

static void submit(void);

static void apply_cb(struct raft_apply *req, int status, void *result)
{
    (void)result;
    entry_req *e = req->data;
    uint64_t t = now_ns();
    node.outstanding--;
    if (status != 0) {
        node.errors++;
    } else {
        if (t >= node.open_at)
            node.applied++;
        if (t >= node.open_at && t <= node.close_at)
            node.window++;
        if (e->start >= node.open_at && e->start <= node.close_at) {
            if (node.nlat == node.caplat) {
                size_t cap = node.caplat ? 2 * node.caplat : 65536;
                uint64_t *p = realloc(node.lat, cap * sizeof(*p));
                if (p == NULL)
                    abort();
                node.lat = p;
                node.caplat = cap;
            }
            node.lat[node.nlat++] = t - e->start;
        }
    }
    free(e);
    if (t < node.close_at && status == 0 && !node.finished)
        submit();
    else if (node.outstanding == 0 && !node.finished)
        finish();
}

static void submit(void)
{
    entry_req *e = calloc(1, sizeof(*e));
    struct raft_buffer buf = {.len = opt.entry, .base = raft_malloc(opt.entry)};
    if (e == NULL || buf.base == NULL) {
        free(e);
        raft_free(buf.base);
        node.errors++;
        goto out;
    }
    /* A command the state machine ignores; its bytes only have to travel. */
    memset(buf.base, 'e', buf.len);
    e->req.data = e;
    e->start = now_ns();
    int rv = raft_apply(&node.raft, &e->req, &buf, 1, apply_cb);
    if (rv != 0) {
        /* Ownership of buf moves to raft only when raft_apply returns 0. */
        fprintf(stderr, "bare_raft: node %u: raft_apply: %s\n", node.id,
                raft_strerror(rv));
        raft_free(buf.base);
        free(e);
        node.errors++;
        goto out;
    }
    node.outstanding++;
    return;
out:
    if (node.outstanding == 0 && !node.finished)
        finish();
}

static void window_cb(uv_timer_t *t)
{
    (void)t;
    report r = {.type = MSG_START, .id = node.id};
    send_report(&r);
}

static uv_timer_t window_timer;

static void barrier_cb(struct raft_barrier *req, int status)
{
    (void)req;
    if (status != 0) {
        /* Leadership was lost before the barrier committed: try again. */
        node.barrier_sent = false;
        node.leader_since = 0;
        return;
    }
    uint64_t t = now_ns();
    node.loading = true;
    node.open_at = t + (uint64_t)(opt.warmup * 1e9);
    node.close_at = node.open_at + (uint64_t)(opt.secs * 1e9);
    uv_timer_init(&node.loop, &window_timer);
    uv_timer_start(&window_timer, window_cb, (uint64_t)(opt.warmup * 1e3), 0);
    for (unsigned i = 0; i < node.depth; i++)
        submit();
}

/* Every 5 ms until the load starts: once this node has led for 100 ms (its
 * followers' connections are up), commit a barrier. */
static void poll_cb(uv_timer_t *t)
{
    (void)t;
    if (node.loading || node.barrier_sent)
        return;
    if (raft_state(&node.raft) != RAFT_LEADER) {
        node.leader_since = 0;
        return;
    }
    uint64_t now = now_ns();
    if (node.leader_since == 0)
        node.leader_since = now;
    if (now - node.leader_since < 100 * 1000000ull)
        return;
    node.barrier_sent = true;
    int rv = raft_barrier(&node.raft, &node.barrier, barrier_cb);
    if (rv != 0) {
        fprintf(stderr, "bare_raft: node %u: raft_barrier: %s\n", node.id,
                raft_strerror(rv));
        node.barrier_sent = false;
    }
}

static void node_addr(unsigned run, unsigned id, char *buf, size_t len)
{
    snprintf(buf, len, "127.0.0.1:%d", opt.port + 10 * (int)run + (int)id);
}

static int node_main(unsigned run, unsigned id, const char *dir, int report_fd)
{
    char addr[64], peer[64];
    struct raft_configuration conf;
    int rv;

    signal(SIGPIPE, SIG_IGN);
    /* A hard bound, whatever happens to the parent. */
    alarm((unsigned)(opt.warmup + opt.secs) + 30);
    node.id = id;
    node.depth = opt.depths[run];
    node.report_fd = report_fd;
    if ((rv = uv_loop_init(&node.loop)) != 0) {
        fprintf(stderr, "bare_raft: node %u: uv_loop_init: %s\n", id, uv_strerror(rv));
        return 1;
    }
    /* 0.22.1 wants the transport's version before init. */
    node.transport.version = 1;
    if ((rv = raft_uv_tcp_init(&node.transport, &node.loop)) != 0)
        goto err;
    if ((rv = raft_uv_init(&node.io, &node.loop, dir, &node.transport)) != 0)
        goto err;
    node.fsm.version = 1;
    node.fsm.apply = fsm_apply;
    node.fsm.snapshot = fsm_snapshot;
    node.fsm.restore = fsm_restore;
    node_addr(run, id, addr, sizeof(addr));
    if ((rv = raft_init(&node.raft, &node.io, &node.fsm, id, addr)) != 0)
        goto err;

    raft_configuration_init(&conf);
    for (unsigned i = 1; i <= opt.nodes; i++) {
        node_addr(run, i, peer, sizeof(peer));
        if ((rv = raft_configuration_add(&conf, i, peer, RAFT_VOTER)) != 0) {
            raft_configuration_close(&conf);
            goto err;
        }
    }
    rv = raft_bootstrap(&node.raft, &conf);
    raft_configuration_close(&conf);
    if (rv != 0)
        goto err;

    raft_set_heartbeat_timeout(&node.raft, 50);
    raft_set_election_timeout(&node.raft, id == 1 ? 150 : 1000);
    raft_set_snapshot_threshold(&node.raft, UINT_MAX / 2);
    raft_uv_set_connect_retry_delay(&node.io, 20);
    if ((rv = raft_start(&node.raft)) != 0)
        goto err;
    raft_set_max_inflight_entries(&node.raft, opt.inflight);

    uv_timer_init(&node.loop, &node.poll);
    uv_timer_start(&node.poll, poll_cb, 5, 5);
    uv_run(&node.loop, UV_RUN_DEFAULT);
    /* The loop ends only when the parent kills the node; pause otherwise. */
    for (;;)
        pause();
err:
    fprintf(stderr, "bare_raft: node %u: %s (%s)\n", id, raft_strerror(rv),
            raft_errmsg(&node.raft));
    return 1;
}

/* ---- the parent ---- */

static pid_t kids[MAX_NODES + 1];

static void kill_kids(void)
{
    for (unsigned i = 1; i <= opt.nodes; i++)
        if (kids[i] > 0) {
            kill(kids[i], SIGKILL);
            waitpid(kids[i], NULL, 0);
            kids[i] = 0;
        }
}

static void on_signal(int sig)
{
    for (unsigned i = 1; i <= opt.nodes; i++)
        if (kids[i] > 0)
            kill(kids[i], SIGKILL);
    _exit(128 + sig);
}

/* User + system seconds of every node process so far (all their threads). */
static double kids_cpu(void)
{
    double ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (unsigned i = 1; i <= opt.nodes; i++) {
        char path[64], line[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)kids[i]);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(line, 1, sizeof(line) - 1, f);
        fclose(f);
        line[n] = '\0';
        /* Fields after the command name (which may hold spaces): state is field 3,
         * utime 14, stime 15. */
        char *p = strrchr(line, ')');
        unsigned long long ut = 0, st = 0;
        if (p != NULL &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                   &st) == 2)
            ticks += (double)(ut + st);
    }
    return ticks / (double)(hz > 0 ? hz : 100);
}

static int rm_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (d == NULL)
            return -1;
        struct dirent *de;
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            char sub[PATH_MAX];
            if (snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= (int)sizeof(sub))
                continue;
            rm_tree(sub);
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

/* Reads one message within timeout_ms: 0, or -1 on timeout or a closed pipe. */
static int read_report(int fd, report *r, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rv;
    do
        rv = poll(&p, 1, timeout_ms);
    while (rv < 0 && errno == EINTR);
    if (rv <= 0)
        return -1;
    ssize_t n;
    do
        n = read(fd, r, sizeof(*r));
    while (n < 0 && errno == EINTR);
    return n == (ssize_t)sizeof(*r) ? 0 : -1;
}

typedef struct result {
    unsigned depth;
    bool ok;
    report r;
    double cpu_s;
} result;

static void run_depth(unsigned run, const char *base, result *out)
{
    char dir[PATH_MAX];
    int fds[2];
    out->depth = opt.depths[run];
    out->ok = false;
    if (snprintf(dir, sizeof(dir), "%s/depth%u", base, out->depth) >= (int)sizeof(dir) ||
        mkdir(dir, 0755) != 0 || pipe(fds) != 0) {
        fprintf(stderr, "bare_raft: cannot set up %s: %s\n", dir, strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    for (unsigned i = 1; i <= opt.nodes; i++) {
        char ndir[PATH_MAX];
        if (snprintf(ndir, sizeof(ndir), "%s/n%u", dir, i) >= (int)sizeof(ndir) ||
            mkdir(ndir, 0755) != 0) {
            fprintf(stderr, "bare_raft: mkdir %s: %s\n", ndir, strerror(errno));
            goto done;
        }
        pid_t p = fork();
        if (p < 0) {
            fprintf(stderr, "bare_raft: fork: %s\n", strerror(errno));
            goto done;
        }
        if (p == 0) {
            close(fds[0]);
            _exit(node_main(run, i, ndir, fds[1]));
        }
        kids[i] = p;
    }
    close(fds[1]);
    fds[1] = -1;

    /* Election and barrier take well under a second; allow for a slow machine. */
    int budget_ms = (int)((opt.warmup + opt.secs) * 1e3) + 20000;
    report r;
    if (read_report(fds[0], &r, budget_ms) != 0 || r.type != MSG_START) {
        fprintf(stderr, "bare_raft: depth %u: no leader started the load\n", out->depth);
        goto done;
    }
    double cpu0 = kids_cpu();
    if (read_report(fds[0], &r, budget_ms) != 0 || r.type != MSG_END) {
        fprintf(stderr, "bare_raft: depth %u: the load did not finish\n", out->depth);
        goto done;
    }
    out->cpu_s = kids_cpu() - cpu0;
    out->r = r;
    out->ok = r.errors == 0 && r.window > 0;
    if (r.errors)
        fprintf(stderr, "bare_raft: depth %u: %llu applies failed\n", out->depth,
                (unsigned long long)r.errors);
done:
    kill_kids();
    close(fds[0]);
    if (fds[1] >= 0)
        close(fds[1]);
    rm_tree(dir);
}

static void print_result(const result *x, bool last)
{
    const report *r = &x->r;
    double ops = r->secs > 0 ? (double)r->window / r->secs : 0;
    double cpu_op = r->applied ? x->cpu_s * 1e6 / (double)r->applied : 0;
    double cores = r->secs > 0 ? x->cpu_s / r->secs : 0;
    if (opt.json) {
        printf("    {\"depth\": %u, \"ok\": %s, \"leader\": %u, \"n\": %llu, "
               "\"secs\": %.3f, \"ops_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
               "\"mean_us\": %.1f, \"max_us\": %.1f, \"cpu_us_per_op\": %.1f, "
               "\"cores\": %.2f, \"errors\": %llu}%s\n",
               x->depth, x->ok ? "true" : "false", r->id, (unsigned long long)r->window,
               r->secs, ops, r->p50_us, r->p99_us, r->mean_us, r->max_us, cpu_op, cores,
               (unsigned long long)r->errors, last ? "" : ",");
        return;
    }
    printf("RESULT name=raft.n%u.depth%u ok=%d depth=%u leader=%u n=%llu secs=%.3f "
           "ops_s=%.0f p50_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f "
           "cpu_us_per_op=%.1f cores=%.2f errors=%llu\n",
           opt.nodes, x->depth, x->ok, x->depth, r->id, (unsigned long long)r->window,
           r->secs, ops, r->p50_us, r->p99_us, r->mean_us, r->max_us, cpu_op, cores,
           (unsigned long long)r->errors);
}

static int parse_depths(const char *s)
{
    opt.ndepths = 0;
    while (*s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > 100000 || opt.ndepths == MAX_DEPTHS)
            return -1;
        opt.depths[opt.ndepths++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
        if (*end != ',' && *end != '\0')
            return -1;
    }
    return opt.ndepths ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bare_raft [--depths D,...] [--secs S] [--warmup S] [--entry BYTES]\n"
            "                 [--nodes N] [--port BASE] [--inflight N] [--dir DIR]\n"
            "                 [--json] [--quick]\n");
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (strcmp(a, "--quick") == 0) {
            opt.quick = true;
            opt.secs = 0.3;
            opt.warmup = 0.1;
            opt.depths[0] = 1;
            opt.depths[1] = 16;
            opt.ndepths = 2;
            continue;
        }
        if (v == NULL) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--depths") == 0 && parse_depths(v) == 0)
            continue;
        if (strcmp(a, "--secs") == 0 && (opt.secs = atof(v)) > 0)
            continue;
        if (strcmp(a, "--warmup") == 0 && (opt.warmup = atof(v)) >= 0)
            continue;
        if (strcmp(a, "--entry") == 0 && (opt.entry = (unsigned)atoi(v)) > 0)
            continue;
        if (strcmp(a, "--nodes") == 0 && (opt.nodes = (unsigned)atoi(v)) >= 1 &&
            opt.nodes <= MAX_NODES)
            continue;
        if (strcmp(a, "--port") == 0 && (opt.port = atoi(v)) > 0 && opt.port < 65000)
            continue;
        if (strcmp(a, "--inflight") == 0 && (opt.inflight = (unsigned)atoi(v)) > 0)
            continue;
        if (strcmp(a, "--dir") == 0) {
            opt.dir = v;
            continue;
        }
        usage();
        return 2;
    }

    char base[PATH_MAX];
    bool made = false;
    if (opt.dir != NULL) {
        if (snprintf(base, sizeof(base), "%s", opt.dir) >= (int)sizeof(base) - 32 ||
            (mkdir(base, 0755) != 0 && errno != EEXIST)) {
            fprintf(stderr, "bare_raft: mkdir %s: %s\n", base, strerror(errno));
            return 2;
        }
    } else {
        snprintf(base, sizeof(base), "/tmp/raftbench-bare-XXXXXX");
        if (mkdtemp(base) == NULL) {
            fprintf(stderr, "bare_raft: mkdtemp: %s\n", strerror(errno));
            return 2;
        }
        made = true;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGHUP, on_signal);

    result res[MAX_DEPTHS];
    bool all_ok = true;
    for (size_t i = 0; i < opt.ndepths; i++) {
        run_depth((unsigned)i, base, &res[i]);
        all_ok = all_ok && res[i].ok;
        if (!opt.json)
            print_result(&res[i], false);
        fflush(stdout);
    }
    if (opt.json) {
        printf("{\"bench\": \"bare_raft\", \"raft\": \"%d.%d.%d\", \"nodes\": %u, "
               "\"entry\": %u, "
               "\"inflight\": %u, \"secs\": %.3f, \"warmup\": %.3f, \"quick\": %s,\n"
               "  \"runs\": [\n",
               RAFT_VERSION_MAJOR, RAFT_VERSION_MINOR, RAFT_VERSION_RELEASE, opt.nodes,
               opt.entry, opt.inflight, opt.secs, opt.warmup,
               opt.quick ? "true" : "false");
        for (size_t i = 0; i < opt.ndepths; i++)
            print_result(&res[i], i + 1 == opt.ndepths);
        printf("  ], \"ok\": %s}\n", all_ok ? "true" : "false");
    }
    if (made)
        rm_tree(base);
    return all_ok ? 0 : 1;
}
