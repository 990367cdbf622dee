/* ctrl_bench: durable single-key writes through a replicated controller (ctrl.put on
 * its Raft group), from C concurrent clients over the control protocol; the client
 * side of bench/raft_bench.sh, whose floors are bare_raft and etcd.
 *
 * The nodes are named on the command line as a map NAME=CONTROL-ADDRESS (the avmd
 * --name and one of its --control addresses). Before anything is measured the
 * controller's leader is found with ctrl.status: a node that answers that it leads
 * itself (the highest term wins); the requests then go to the leader's address.
 *
 *   put       (the default) for each C of --clients: C threads, each with its own
 *             client (its own nng req0 socket and connection) and one request in
 *             flight: ctrl.put (("controller" NAME) ("key" K) ("value" V)), the next
 *             one when the reply (("index" N)) is in. Keys k<client>-<i mod 1000>,
 *             values --val bytes. Each client first puts once (connection set-up);
 *             then, after --warmup seconds not counted, during --secs seconds (or
 *             until --count puts are acknowledged) every acknowledged put counts
 *             (puts/s) and the latency of every put sent in the window is a sample
 *             (p50, p99). Checks: every reply holds an index, and each client's
 *             indexes increase. With --pids NAME=PID,... the CPU (user + system)
 *             the node processes use from the window's start until the last reply,
 *             per put acknowledged meanwhile.
 *   status    one line per node: the ctrl.status it answers (a follower forwards
 *             it to the leader: "self" names who answered): leader, term, commit,
 *             applied, and each member's matched log index.
 *   wait      until every node answers and names the same leader, and the leader
 *             has applied its commit index and sees every other member reachable
 *             with its log matched up to it (a restarted node has caught up);
 *             --timeout-ms bounds it.
 *   failover  --pids NAME=PID,...: one client puts to the leader in a loop; after
 *             --steady acknowledged puts the leader's process is sent SIGKILL, and the
 *             client looks for the new leader (ctrl.status of the others, every 2 ms)
 *             and puts to it. Reports the time from the kill to the first put the
 *             new leader acknowledges, and to the first status naming it; checks
 *             with ctrl.get on the new leader that the last put acknowledged before
 *             the kill is there.
 *
 * Output: `RESULT key=value ...` / `STATUS ...` / `WAIT ...` / `FAILOVER ...` lines
 * on stdout, or with --json one JSON object. Exit 0 when every reply was right,
 * 1 when a put failed or a reply was wrong, 2 for a usage error or no leader. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "avm_err.h"
#include "control.h"
#include "value.h"

#define MAX_NODES 16
#define MAX_RUNS 8
#define MAX_CLIENTS 1024

static uint64_t now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0 && errno == EINTR) {
    }
}

/* ---- the options ---- */

typedef struct node_ref {
    char name[64];
    char addr[512];
    pid_t pid; /* failover: its process, 0 if unknown */
} node_ref;

static struct {
    const char *mode;
    const char *controller;
    node_ref nodes[MAX_NODES];
    size_t nnodes;
    unsigned clients[MAX_RUNS];
    size_t nruns;
    double secs, warmup;
    uint64_t count;
    unsigned val;
    int timeout_ms;
    unsigned steady;
    bool json;
} opt = {.mode = "put",
         .controller = "bench",
         .clients = {1, 16, 64},
         .nruns = 3,
         .secs = 2,
         .warmup = 0.3,
         .val = 64,
         .timeout_ms = 10000,
         .steady = 50};

/* ---- requests ---- */

/* ctrl.status of the controller. A node that does not lead forwards the request to
 * the leader it knows, so the answer is usually the leader's view: "self" names the
 * node that answered, "members" holds each member's (name role reachable match). */
typedef struct member_status {
    char name[64];
    bool reachable;
    int64_t match;
} member_status;

typedef struct status {
    bool ok;
    char self[64];   /* the node that answered ("" when the reply has no self) */
    char leader[64]; /* "" when nil */
    int64_t term, commit, applied;
    member_status members[MAX_NODES];
    size_t nmembers;
    char err[256];
} status;

static void copy_str(char *dst, size_t len, avm_val v)
{
    if (AVM_KIND_HAS_STR(v.kind))
        snprintf(dst, len, "%s", v.u.s->data);
    else
        dst[0] = '\0';
}

static void ask_status(avm_ctl_client *c, int timeout_ms, status *st)
{
    avm_ctl_body b;
    avm_val body, reply;
    memset(st, 0, sizeof(*st));
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "name", opt.controller);
    int rv = avm_ctl_body_finish(&b, &body);
    avm_ctl_body_free(&b);
    if (rv != 0) {
        snprintf(st->err, sizeof(st->err), "%s", avm_strerror(rv));
        return;
    }
    rv = avm_ctl_call(c, "ctrl.status", body, timeout_ms, &reply, st->err,
                      sizeof(st->err));
    avm_val_release(body);
    if (rv != 0)
        return;
    copy_str(st->self, sizeof(st->self), avm_ctl_get(reply, "self"));
    copy_str(st->leader, sizeof(st->leader), avm_ctl_get(reply, "leader"));
    avm_val ms = avm_ctl_get(reply, "members");
    if (ms.kind == AVM_LIST)
        for (size_t i = 0; i < avm_list_len(ms) && st->nmembers < MAX_NODES; i++) {
            avm_val m = avm_list_at(ms, i);
            if (m.kind != AVM_LIST || avm_list_len(m) < 4)
                continue;
            member_status *x = &st->members[st->nmembers++];
            copy_str(x->name, sizeof(x->name), avm_list_at(m, 0));
            x->reachable = avm_truthy(avm_list_at(m, 2));
            avm_val match = avm_list_at(m, 3);
            x->match = match.kind == AVM_INT ? match.u.i : -1;
        }
    char e[128];
    if (avm_ctl_get_int(reply, "term", &st->term, e, sizeof(e)) != 0 ||
        avm_ctl_get_int(reply, "commit", &st->commit, e, sizeof(e)) != 0 ||
        avm_ctl_get_int(reply, "applied", &st->applied, e, sizeof(e)) != 0)
        snprintf(st->err, sizeof(st->err), "malformed ctrl.status reply: %s", e);
    else
        st->ok = true;
    avm_val_release(reply);
}

/* One ctrl.put: 0 with the entry's index in *index, or an AVM_E* code with err. */
static int put(avm_ctl_client *c, const char *key, const char *value, int timeout_ms,
               int64_t *index, char *err, size_t errlen)
{
    avm_ctl_body b;
    avm_val body, reply;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "controller", opt.controller);
    avm_ctl_put_str(&b, "key", key);
    avm_ctl_put_str(&b, "value", value);
    int rv = avm_ctl_body_finish(&b, &body);
    avm_ctl_body_free(&b);
    if (rv != 0) {
        snprintf(err, errlen, "%s", avm_strerror(rv));
        return rv;
    }
    rv = avm_ctl_call(c, "ctrl.put", body, timeout_ms, &reply, err, errlen);
    avm_val_release(body);
    if (rv != 0)
        return rv;
    rv = avm_ctl_get_int(reply, "index", index, err, errlen);
    avm_val_release(reply);
    if (rv == 0 && *index <= 0) {
        snprintf(err, errlen, "ctrl.put answered index %lld", (long long)*index);
        rv = AVM_EMALFORMED;
    }
    return rv;
}

/* One ctrl.get (the leader's state machine): 0 with the value in out, or an AVM_E*
 * code with err. */
static int get(avm_ctl_client *c, const char *key, char *out, size_t len, char *err,
               size_t errlen)
{
    avm_ctl_body b;
    avm_val body, reply;
    out[0] = '\0';
    err[0] = '\0';
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "controller", opt.controller);
    avm_ctl_put_str(&b, "key", key);
    int rv = avm_ctl_body_finish(&b, &body);
    avm_ctl_body_free(&b);
    if (rv != 0) {
        snprintf(err, errlen, "%s", avm_strerror(rv));
        return rv;
    }
    rv = avm_ctl_call(c, "ctrl.get", body, 2000, &reply, err, errlen);
    avm_val_release(body);
    if (rv != 0)
        return rv;
    copy_str(out, len, avm_ctl_get(reply, "value"));
    avm_val_release(reply);
    return 0;
}

static avm_ctl_client *open_client(const char *addr)
{
    avm_ctl_client *c;
    char err[256];
    if (avm_ctl_client_open(addr, &c, err, sizeof(err)) != 0) {
        fprintf(stderr, "ctrl_bench: %s\n", err);
        return NULL;
    }
    return c;
}

static int node_index(const char *name)
{
    for (size_t i = 0; i < opt.nnodes; i++)
        if (strcmp(opt.nodes[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* The node that says it leads (an answer whose "self" is its "leader"; without
 * "self", the node asked), other than skip; the highest term wins. -1 when none.
 * clients[i] talks to node i (opened here when NULL). */
static int find_leader(avm_ctl_client **clients, int skip, int timeout_ms, int64_t *term)
{
    int best = -1;
    int64_t best_term = -1;
    for (size_t i = 0; i < opt.nnodes; i++) {
        if ((int)i == skip)
            continue;
        if (clients[i] == NULL && (clients[i] = open_client(opt.nodes[i].addr)) == NULL)
            continue;
        status st;
        ask_status(clients[i], timeout_ms, &st);
        if (!st.ok || st.leader[0] == '\0')
            continue;
        const char *self = st.self[0] ? st.self : opt.nodes[i].name;
        int l = node_index(self);
        if (strcmp(st.leader, self) == 0 && l >= 0 && l != skip && st.term > best_term) {
            best = l;
            best_term = st.term;
        }
    }
    if (term != NULL)
        *term = best_term;
    return best;
}

static void close_clients(avm_ctl_client **clients)
{
    for (size_t i = 0; i < opt.nnodes; i++) {
        avm_ctl_client_close(clients[i]);
        clients[i] = NULL;
    }
}

/* Waits up to timeout_ms for a leader: its index, or -1. */
static int wait_leader(int timeout_ms)
{
    avm_ctl_client *clients[MAX_NODES] = {0};
    uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000ull;
    int l;
    while ((l = find_leader(clients, -1, 500, NULL)) < 0 && now_ns() < end)
        sleep_ms(20);
    close_clients(clients);
    return l;
}

/* ---- put: C concurrent clients ---- */

typedef struct worker {
    pthread_t thread;
    unsigned id;
    avm_ctl_client *c;
    uint64_t *lat;
    size_t nlat, caplat;
    uint64_t window, after_open, errors, wrong;
    char err[256];
} worker;

static struct {
    pthread_barrier_t ready, go;
    uint64_t open_at, close_at;
    atomic_uint_least64_t counted; /* puts in the window, for --count */
    atomic_bool stop;
    char value[4096];
} load;

static void *worker_main(void *arg)
{
    worker *w = arg;
    char key[64];
    int64_t index = 0, last = 0;
    /* One put before the clock starts: the connection is up. */
    snprintf(key, sizeof(key), "k%u-warm", w->id);
    if (put(w->c, key, load.value, opt.timeout_ms, &index, w->err, sizeof(w->err)) != 0) {
        w->errors++;
        atomic_store(&load.stop, true);
    }
    last = index;
    /* Every client is connected; then the main thread sets the window. */
    pthread_barrier_wait(&load.ready);
    pthread_barrier_wait(&load.go);
    for (uint64_t i = 0; !atomic_load(&load.stop); i++) {
        uint64_t t0 = now_ns();
        if (t0 >= load.close_at)
            break;
        snprintf(key, sizeof(key), "k%u-%llu", w->id, (unsigned long long)(i % 1000));
        int rv =
            put(w->c, key, load.value, opt.timeout_ms, &index, w->err, sizeof(w->err));
        uint64_t t1 = now_ns();
        if (rv != 0) {
            w->errors++;
            break;
        }
        if (index <= last) {
            /* One client's writes are acknowledged in order: a later one that
             * got a smaller index was not made after the earlier. */
            snprintf(w->err, sizeof(w->err), "index %lld after %lld", (long long)index,
                     (long long)last);
            w->wrong++;
        }
        last = index;
        if (t1 >= load.open_at)
            w->after_open++;
        if (t1 >= load.open_at && t1 <= load.close_at) {
            w->window++;
            if (opt.count > 0 && atomic_fetch_add(&load.counted, 1) + 1 >= opt.count)
                atomic_store(&load.stop, true);
        }
        if (t0 >= load.open_at) {
            if (w->nlat == w->caplat) {
                size_t cap = w->caplat ? 2 * w->caplat : 4096;
                uint64_t *p = realloc(w->lat, cap * sizeof(*p));
                if (p == NULL)
                    abort();
                w->lat = p;
                w->caplat = cap;
            }
            w->lat[w->nlat++] = t1 - t0;
        }
    }
    return NULL;
}

typedef struct run_result {
    unsigned clients;
    bool ok;
    uint64_t n, errors, wrong;
    double secs, ops_s, p50_us, p99_us, mean_us, max_us;
    double cpu_s;        /* the nodes' CPU (--pids) from the window's start to the end */
    uint64_t after_open; /* puts acknowledged in that time */
    bool cpu;
} run_result;

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
    return n ? (double)v[(size_t)((double)(n - 1) * p)] / 1e3 : 0;
}

/* Whether --pids named the node processes (their CPU is then reported). */
static bool have_pids(void)
{
    for (size_t i = 0; i < opt.nnodes; i++)
        if (opt.nodes[i].pid > 0)
            return true;
    return false;
}

/* User + system seconds of the node processes so far (all their threads). */
static double nodes_cpu(void)
{
    double ticks = 0;
    long hz = sysconf(_SC_CLK_TCK);
    for (size_t i = 0; i < opt.nnodes; i++) {
        char path[64], line[1024];
        if (opt.nodes[i].pid <= 0)
            continue;
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)opt.nodes[i].pid);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t n = fread(line, 1, sizeof(line) - 1, f);
        fclose(f);
        line[n] = '\0';
        /* After the command name (which may hold spaces): utime and stime are the
         * 12th and 13th fields. */
        char *p = strrchr(line, ')');
        unsigned long long ut = 0, st = 0;
        if (p != NULL &&
            sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut,
                   &st) == 2)
            ticks += (double)(ut + st);
    }
    return ticks / (double)(hz > 0 ? hz : 100);
}

static void run_clients(const node_ref *leader, unsigned nclients, run_result *r)
{
    worker *ws = calloc(nclients, sizeof(*ws));
    memset(r, 0, sizeof(*r));
    r->clients = nclients;
    if (ws == NULL)
        return;
    atomic_store(&load.stop, false);
    atomic_store(&load.counted, 0);
    pthread_barrier_init(&load.ready, NULL, nclients + 1);
    pthread_barrier_init(&load.go, NULL, nclients + 1);
    unsigned started = 0;
    for (unsigned i = 0; i < nclients; i++) {
        ws[i].id = i;
        if ((ws[i].c = open_client(leader->addr)) == NULL)
            break;
        started++;
    }
    if (started < nclients) {
        for (unsigned i = 0; i < started; i++)
            avm_ctl_client_close(ws[i].c);
        pthread_barrier_destroy(&load.ready);
        pthread_barrier_destroy(&load.go);
        free(ws);
        r->errors = 1;
        return;
    }
    uint64_t window = (uint64_t)(opt.secs * 1e9);
    if (opt.count > 0)
        window = 600ull * 1000000000ull; /* --count ends it; a bound all the same */
    for (unsigned i = 0; i < nclients; i++)
        pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]);
    /* Every client has made its first put (or failed) when the first barrier opens;
     * the window is set before the second, after which the clients read it. */
    pthread_barrier_wait(&load.ready);
    load.open_at = now_ns() + (uint64_t)(opt.warmup * 1e9);
    load.close_at = load.open_at + window;
    pthread_barrier_wait(&load.go);
    double cpu0 = 0;
    if (have_pids()) {
        uint64_t t = now_ns();
        if (t < load.open_at)
            sleep_ms((unsigned)((load.open_at - t) / 1000000ull));
        cpu0 = nodes_cpu();
    }
    for (unsigned i = 0; i < nclients; i++)
        pthread_join(ws[i].thread, NULL);
    uint64_t end = now_ns();
    if (have_pids()) {
        r->cpu = true;
        r->cpu_s = nodes_cpu() - cpu0;
    }

    size_t total = 0;
    for (unsigned i = 0; i < nclients; i++)
        total += ws[i].nlat;
    uint64_t *all = malloc((total ? total : 1) * sizeof(*all));
    size_t k = 0;
    double sum = 0;
    for (unsigned i = 0; i < nclients; i++) {
        if (all != NULL)
            for (size_t j = 0; j < ws[i].nlat; j++) {
                all[k++] = ws[i].lat[j];
                sum += (double)ws[i].lat[j];
            }
        r->n += ws[i].window;
        r->after_open += ws[i].after_open;
        r->errors += ws[i].errors;
        r->wrong += ws[i].wrong;
        if (ws[i].err[0] != '\0' && (ws[i].errors || ws[i].wrong))
            fprintf(stderr, "ctrl_bench: client %u of %u: %s\n", i, nclients, ws[i].err);
        avm_ctl_client_close(ws[i].c);
        free(ws[i].lat);
    }
    qsort(all, k, sizeof(*all), cmp_u64);
    uint64_t close_at = end < load.close_at ? end : load.close_at;
    r->secs = close_at > load.open_at ? (double)(close_at - load.open_at) / 1e9 : 0;
    r->ops_s = r->secs > 0 ? (double)r->n / r->secs : 0;
    r->p50_us = pct_us(all, k, 0.50);
    r->p99_us = pct_us(all, k, 0.99);
    r->mean_us = k ? sum / (double)k / 1e3 : 0;
    r->max_us = k ? (double)all[k - 1] / 1e3 : 0;
    r->ok = r->errors == 0 && r->wrong == 0 && r->n > 0;
    free(all);
    pthread_barrier_destroy(&load.ready);
    pthread_barrier_destroy(&load.go);
    free(ws);
}

static int mode_put(void)
{
    int l = wait_leader(opt.timeout_ms);
    if (l < 0) {
        fprintf(stderr, "ctrl_bench: no node leads controller %s\n", opt.controller);
        return 2;
    }
    memset(load.value, 'v', opt.val);
    load.value[opt.val] = '\0';
    run_result rs[MAX_RUNS];
    bool ok = true;
    if (opt.json)
        printf("{\"bench\": \"ctrl_bench\", \"controller\": \"%s\", \"leader\": \"%s\", "
               "\"val\": %u, \"secs\": %.3f, \"warmup\": %.3f, \"count\": %llu,\n"
               "  \"runs\": [\n",
               opt.controller, opt.nodes[l].name, opt.val, opt.secs, opt.warmup,
               (unsigned long long)opt.count);
    for (size_t i = 0; i < opt.nruns; i++) {
        run_result *r = &rs[i];
        run_clients(&opt.nodes[l], opt.clients[i], r);
        ok = ok && r->ok;
        double cpu_op = r->after_open ? r->cpu_s * 1e6 / (double)r->after_open : 0;
        double cores = r->secs > 0 ? r->cpu_s / r->secs : 0;
        char cpu[96] = "";
        if (r->cpu)
            snprintf(cpu, sizeof(cpu), " cpu_us_per_op=%.1f cores=%.2f", cpu_op, cores);
        if (opt.json)
            printf("    {\"clients\": %u, \"ok\": %s, \"n\": %llu, \"secs\": %.3f, "
                   "\"ops_s\": %.0f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
                   "\"mean_us\": %.1f, \"max_us\": %.1f, \"cpu_us_per_op\": %.1f, "
                   "\"cores\": %.2f, \"errors\": %llu, \"wrong\": %llu}%s\n",
                   r->clients, r->ok ? "true" : "false", (unsigned long long)r->n,
                   r->secs, r->ops_s, r->p50_us, r->p99_us, r->mean_us, r->max_us, cpu_op,
                   cores, (unsigned long long)r->errors, (unsigned long long)r->wrong,
                   i + 1 == opt.nruns ? "" : ",");
        else
            printf("RESULT name=ctrl.put.c%u ok=%d clients=%u leader=%s n=%llu "
                   "secs=%.3f ops_s=%.0f p50_us=%.1f p99_us=%.1f mean_us=%.1f "
                   "max_us=%.1f%s errors=%llu wrong=%llu\n",
                   r->clients, r->ok, r->clients, opt.nodes[l].name,
                   (unsigned long long)r->n, r->secs, r->ops_s, r->p50_us, r->p99_us,
                   r->mean_us, r->max_us, cpu, (unsigned long long)r->errors,
                   (unsigned long long)r->wrong);
        fflush(stdout);
    }
    if (opt.json)
        printf("  ], \"ok\": %s}\n", ok ? "true" : "false");
    return ok ? 0 : 1;
}

/* ---- status and wait ---- */

static int mode_status(void)
{
    bool all = true;
    if (opt.json)
        printf("{\"controller\": \"%s\", \"nodes\": [\n", opt.controller);
    for (size_t i = 0; i < opt.nnodes; i++) {
        avm_ctl_client *c = open_client(opt.nodes[i].addr);
        status st = {0};
        if (c != NULL)
            ask_status(c, opt.timeout_ms < 2000 ? opt.timeout_ms : 2000, &st);
        avm_ctl_client_close(c);
        all = all && st.ok;
        if (opt.json) {
            printf(
                "  {\"node\": \"%s\", \"ok\": %s, \"self\": \"%s\", \"leader\": \"%s\", "
                "\"term\": %lld, \"commit\": %lld, \"applied\": %lld, \"match\": {",
                opt.nodes[i].name, st.ok ? "true" : "false", st.self, st.leader,
                (long long)st.term, (long long)st.commit, (long long)st.applied);
            for (size_t j = 0; j < st.nmembers; j++)
                printf("%s\"%s\": %lld", j ? ", " : "", st.members[j].name,
                       (long long)st.members[j].match);
            printf("}}%s\n", i + 1 == opt.nnodes ? "" : ",");
        } else if (st.ok) {
            printf("STATUS node=%s ok=1 self=%s leader=%s term=%lld commit=%lld "
                   "applied=%lld",
                   opt.nodes[i].name, st.self[0] ? st.self : "-",
                   st.leader[0] ? st.leader : "nil", (long long)st.term,
                   (long long)st.commit, (long long)st.applied);
            for (size_t j = 0; j < st.nmembers; j++)
                printf(" match.%s=%lld%s", st.members[j].name,
                       (long long)st.members[j].match,
                       st.members[j].reachable ? "" : "(unreachable)");
            printf("\n");
        } else {
            printf("STATUS node=%s ok=0 error=\"%s\"\n", opt.nodes[i].name, st.err);
        }
    }
    if (opt.json)
        printf("]}\n");
    return all ? 0 : 1;
}

/* Every node answers and names the same leader; the leader's own answer shows every
 * other member reachable with its log matched up to the leader's commit index (a
 * restarted replica has caught up), and the leader has applied that index. */
static int mode_wait(void)
{
    avm_ctl_client *clients[MAX_NODES] = {0};
    uint64_t t0 = now_ns(), end = t0 + (uint64_t)opt.timeout_ms * 1000000ull;
    status st[MAX_NODES];
    char why[512] = "no answer yet";
    int rv = 1;
    while (now_ns() < end) {
        bool answered = true;
        for (size_t i = 0; i < opt.nnodes && answered; i++) {
            if (clients[i] == NULL)
                clients[i] = open_client(opt.nodes[i].addr);
            if (clients[i] == NULL)
                goto out;
            ask_status(clients[i], 500, &st[i]);
            if (!st[i].ok) {
                snprintf(why, sizeof(why), "%s: %s", opt.nodes[i].name, st[i].err);
                answered = false;
            }
        }
        if (!answered) {
            sleep_ms(20);
            continue;
        }
        int l = node_index(st[0].leader);
        bool same = l >= 0;
        for (size_t i = 1; i < opt.nnodes && same; i++)
            same = strcmp(st[i].leader, st[0].leader) == 0;
        /* The leader's own view: ask it (again) if its answer came from elsewhere. */
        const status *ls = NULL;
        for (size_t i = 0; i < opt.nnodes && same; i++)
            if (strcmp(st[i].self[0] ? st[i].self : opt.nodes[i].name, st[i].leader) == 0)
                ls = &st[i];
        if (!same || ls == NULL) {
            snprintf(why, sizeof(why), "no leader all the nodes agree on");
            sleep_ms(20);
            continue;
        }
        bool caught_up = ls->applied >= ls->commit && ls->nmembers > 0;
        if (!caught_up)
            snprintf(why, sizeof(why), "the leader applied %lld of %lld",
                     (long long)ls->applied, (long long)ls->commit);
        for (size_t j = 0; j < ls->nmembers; j++) {
            const member_status *m = &ls->members[j];
            if (strcmp(m->name, ls->leader) == 0)
                continue;
            if (!m->reachable || m->match < ls->commit) {
                caught_up = false;
                snprintf(why, sizeof(why), "%s %s, log matched to %lld of %lld", m->name,
                         m->reachable ? "reachable" : "unreachable", (long long)m->match,
                         (long long)ls->commit);
            }
        }
        if (caught_up) {
            printf("WAIT ok=1 ms=%.1f leader=%s term=%lld commit=%lld\n",
                   (double)(now_ns() - t0) / 1e6, opt.nodes[l].name, (long long)ls->term,
                   (long long)ls->commit);
            rv = 0;
            goto out;
        }
        sleep_ms(20);
    }
    printf("WAIT ok=0 ms=%.1f why=\"%s\"\n", (double)(now_ns() - t0) / 1e6, why);
out:
    close_clients(clients);
    return rv;
}

/* ---- failover ---- */

static int mode_failover(void)
{
    avm_ctl_client *clients[MAX_NODES] = {0};
    int64_t term0, term1 = -1, index;
    char err[256], key[64];
    int rv = 2;
    memset(load.value, 'v', opt.val);
    load.value[opt.val] = '\0';

    int l = find_leader(clients, -1, 1000, &term0);
    if (l < 0) {
        fprintf(stderr, "ctrl_bench: no node leads controller %s\n", opt.controller);
        goto out;
    }
    if (clients[l] == NULL && (clients[l] = open_client(opt.nodes[l].addr)) == NULL)
        goto out;
    if (opt.nodes[l].pid <= 0) {
        fprintf(stderr, "ctrl_bench: no --pids entry for the leader %s\n",
                opt.nodes[l].name);
        goto out;
    }
    /* Steady state: puts acknowledged one after the other by the old leader. The
     * last one's value is checked on the new leader after the failover. */
    char last[64];
    snprintf(last, sizeof(last), "acked-before-kill-%llu", (unsigned long long)now_ns());
    for (unsigned i = 0; i < opt.steady; i++) {
        snprintf(key, sizeof(key), "failover-%u", i % 100);
        if (i + 1 == opt.steady)
            snprintf(key, sizeof(key), "failover-last");
        if (put(clients[l], key, i + 1 == opt.steady ? last : load.value, opt.timeout_ms,
                &index, err, sizeof(err)) != 0) {
            fprintf(stderr, "ctrl_bench: put to %s before the kill: %s\n",
                    opt.nodes[l].name, err);
            rv = 1;
            goto out;
        }
    }
    uint64_t t_kill = now_ns();
    if (kill(opt.nodes[l].pid, SIGKILL) != 0) {
        fprintf(stderr, "ctrl_bench: kill %d: %s\n", (int)opt.nodes[l].pid,
                strerror(errno));
        goto out;
    }
    uint64_t end = t_kill + (uint64_t)opt.timeout_ms * 1000000ull, t_seen = 0;
    int nl = -1;
    unsigned attempts = 0;
    while (now_ns() < end) {
        int cand = find_leader(clients, l, 200, &term1);
        if (cand < 0) {
            sleep_ms(2);
            continue;
        }
        if (t_seen == 0)
            t_seen = now_ns();
        attempts++;
        if (clients[cand] == NULL &&
            (clients[cand] = open_client(opt.nodes[cand].addr)) == NULL)
            break;
        snprintf(key, sizeof(key), "failover-after");
        if (put(clients[cand], key, load.value, 1000, &index, err, sizeof(err)) == 0) {
            nl = cand;
            break;
        }
        sleep_ms(2);
    }
    uint64_t t_ack = now_ns();
    if (nl < 0) {
        printf("FAILOVER ok=0 killed=%s ms=%.1f why=\"%s\"\n", opt.nodes[l].name,
               (double)(t_ack - t_kill) / 1e6,
               t_seen ? err : "no other node claimed the lead");
        rv = 1;
        goto out;
    }
    /* The write acknowledged last before the kill survived it. */
    char got[64];
    if (get(clients[nl], "failover-last", got, sizeof(got), err, sizeof(err)) != 0 ||
        strcmp(got, last) != 0) {
        printf(
            "FAILOVER ok=0 killed=%s new_leader=%s ms=%.1f why=\"failover-last: %s\"\n",
            opt.nodes[l].name, opt.nodes[nl].name, (double)(t_ack - t_kill) / 1e6,
            strcmp(got, last) != 0 && err[0] == '\0' ? "value lost" : err);
        rv = 1;
        goto out;
    }
    if (opt.json)
        printf("{\"ok\": true, \"killed\": \"%s\", \"new_leader\": \"%s\", \"ms\": %.1f, "
               "\"leader_seen_ms\": %.1f, \"term_before\": %lld, \"term_after\": %lld, "
               "\"put_attempts\": %u}\n",
               opt.nodes[l].name, opt.nodes[nl].name, (double)(t_ack - t_kill) / 1e6,
               (double)(t_seen - t_kill) / 1e6, (long long)term0, (long long)term1,
               attempts);
    else
        printf("FAILOVER ok=1 killed=%s new_leader=%s ms=%.1f leader_seen_ms=%.1f "
               "term_before=%lld term_after=%lld put_attempts=%u\n",
               opt.nodes[l].name, opt.nodes[nl].name, (double)(t_ack - t_kill) / 1e6,
               (double)(t_seen - t_kill) / 1e6, (long long)term0, (long long)term1,
               attempts);
    rv = 0;
out:
    close_clients(clients);
    return rv;
}

/* ---- the command line ---- */

/* "a=x,b=y": each NAME=VALUE into set(name, value). */
static int parse_map(const char *s, bool pids)
{
    char *copy = strdup(s), *save = NULL;
    if (copy == NULL)
        return -1;
    int rv = 0;
    for (char *item = strtok_r(copy, ",", &save); item != NULL && rv == 0;
         item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (eq == NULL || eq == item || eq[1] == '\0' || (size_t)(eq - item) >= 64) {
            rv = -1;
            break;
        }
        *eq = '\0';
        int i = node_index(item);
        if (pids) {
            if (i < 0)
                rv = -1;
            else
                opt.nodes[i].pid = (pid_t)atol(eq + 1);
            continue;
        }
        if (i >= 0 || opt.nnodes == MAX_NODES || strlen(eq + 1) >= 512) {
            rv = -1;
            break;
        }
        node_ref *n = &opt.nodes[opt.nnodes++];
        snprintf(n->name, sizeof(n->name), "%s", item);
        snprintf(n->addr, sizeof(n->addr), "%s", eq + 1);
    }
    free(copy);
    return rv;
}

static int parse_clients(const char *s)
{
    opt.nruns = 0;
    while (*s) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > MAX_CLIENTS || opt.nruns == MAX_RUNS ||
            (*end != ',' && *end != '\0'))
            return -1;
        opt.clients[opt.nruns++] = (unsigned)v;
        s = *end == ',' ? end + 1 : end;
    }
    return opt.nruns ? 0 : -1;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: ctrl_bench [put|status|wait|failover] --nodes NAME=ADDR,...\n"
            "                  [--controller NAME] [--clients C,...] [--secs S]\n"
            "                  [--warmup S] [--count N] [--val BYTES] [--timeout-ms MS]\n"
            "                  [--pids NAME=PID,...] [--steady N] [--json]\n");
}

int main(int argc, char **argv)
{
    const char *pids = NULL;
    int i = 1;
    if (argc > 1 && argv[1][0] != '-') {
        opt.mode = argv[1];
        i = 2;
    }
    for (; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            opt.json = true;
            continue;
        }
        if (v == NULL) {
            usage();
            return 2;
        }
        i++;
        if (strcmp(a, "--nodes") == 0 && parse_map(v, false) == 0)
            continue;
        if (strcmp(a, "--pids") == 0) {
            pids = v;
            continue;
        }
        if (strcmp(a, "--controller") == 0) {
            opt.controller = v;
            continue;
        }
        if (strcmp(a, "--clients") == 0 && parse_clients(v) == 0)
            continue;
        if (strcmp(a, "--secs") == 0 && (opt.secs = atof(v)) > 0)
            continue;
        if (strcmp(a, "--warmup") == 0 && (opt.warmup = atof(v)) >= 0)
            continue;
        if (strcmp(a, "--count") == 0) {
            opt.count = strtoull(v, NULL, 10);
            continue;
        }
        if (strcmp(a, "--val") == 0 && (opt.val = (unsigned)atoi(v)) > 0 &&
            opt.val < sizeof(load.value))
            continue;
        if (strcmp(a, "--timeout-ms") == 0 && (opt.timeout_ms = atoi(v)) > 0)
            continue;
        if (strcmp(a, "--steady") == 0 && (opt.steady = (unsigned)atoi(v)) > 0)
            continue;
        usage();
        return 2;
    }
    /* --pids names nodes of --nodes, whatever the order of the two. */
    if (opt.nnodes == 0 || (pids != NULL && parse_map(pids, true) != 0)) {
        usage();
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(opt.mode, "put") == 0)
        return mode_put();
    if (strcmp(opt.mode, "status") == 0)
        return mode_status();
    if (strcmp(opt.mode, "wait") == 0)
        return mode_wait();
    if (strcmp(opt.mode, "failover") == 0)
        return mode_failover();
    usage();
    return 2;
}
