/* avmd: the AVM node daemon.
 *
 * One libuv loop carries everything: the control endpoint (transport/control.h)
 * hands requests to the loop thread, the execution manager (node/exec) runs rounds
 * from an idle handle while it has work, and signals stop it cleanly. Nothing here
 * blocks but the store's fsync at the end of a round (a group commit).
 *
 * Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for bad flags or config, 1
 * when the node cannot start (data directory, control address) or a round could not
 * be made durable, 70 at the first I/O error of the store (a failed fsync: io_fatal). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "avm_err.h"
#include "smtlib.h"
#include "solver.h"
#include "codec.h"
#include "control.h"
#include "embedded.h"
#include "lmdb_store.h"
#include "cluster.h"
#include "manager.h"
#include "module.h"
#include "observe.h"

#define AVMD_VERSION "0.4.0"
#define MAX_CONTROL 8

enum { L_DEBUG, L_INFO, L_WARN, L_ERROR };
#define MAX_PEERS 64
static const char *const level_names[] = {"debug", "info", "warn", "error"};

typedef struct config {
    char name[64];
    char controller[64];
    /* The replicated controller that transactions naming none create objects
     * under ("" : the node's own controller). */
    char default_controller[64];
    char data[1024];
    char *control[MAX_CONTROL];
    size_t ncontrol;
    int log_level;
    bool log_json;
    uint64_t slice;
    size_t batch_max;
    bool durable_commits;
    /* Cluster (no listen: a node on its own). */
    char listen[256], advertise[256], join[256];
    char *peers[MAX_PEERS];
    size_t npeers;
    uint32_t heartbeat_ms, fd_bound_ms, request_ms;
    uint32_t raft_election_ms, raft_heartbeat_ms, raft_snapshot_every;
    uint32_t solver_timeout_ms; /* executeSolver's time limit (0: 5000) */
    double phi;
    bool spread;
    char http[256];         /* observability endpoint HOST:PORT ("": none) */
    char auth_tokens[1024]; /* --auth-tokens FILE ("": no authentication) */
    char join_token[1024];  /* --join-token-file FILE ("": none) */
} config;

/* A client waiting for an execution: `run` (answered once its start is durable)
 * or `exec.result` with wait_ms (answered at its end, or when the wait is over). */
typedef struct waiter {
    avm_ctl_req *req;
    char id[48];
    bool run;
    uv_timer_t timer;
    struct node_daemon *d;
    struct waiter *next;
} waiter;

typedef struct node_daemon {
    config cfg;
    uv_loop_t *loop;
    uv_idle_t idle;
    uv_check_t iocheck; /* io_fatal after every loop iteration */
    uv_signal_t sigterm, sigint;
    avm_embedded node;
    avm_mgr *m;
    avm_ctl_server *ctl;
    avm_cluster *cl; /* NULL: on its own */
    waiter *waiters;
    bool idle_on, stopping;
    uint64_t started_ms;
    avmd_obs *obs; /* --http (observe.h), or NULL */
    /* --auth-tokens: the principals (NULL: requests are not authenticated), and
     * the rate limit of the logs of refused requests. */
    avm_ctl_tokens *tokens;
    uint64_t refused_window_ms;
    unsigned refused_logged, refused_dropped;
} node_daemon;

/* --- Logs: one line per event, logfmt or JSON, on stderr ------------------ */

static void log_kv(const node_daemon *d, int level, const char *event, ...)
{
    if (level < d->cfg.log_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[80];
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (long)(tv.tv_usec / 1000));
    avm_buf b;
    avm_buf_init(&b);
    if (d->cfg.log_json)
        avm_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"event\":", ts,
                       level_names[level]);
    else
        avm_buf_printf(&b, "ts=%s level=%s event=", ts, level_names[level]);
    if (d->cfg.log_json)
        avm_json_str(&b, event, strlen(event));
    else
        avm_buf_puts(&b, event);
    va_list ap;
    va_start(ap, event);
    const char *k;
    while ((k = va_arg(ap, const char *)) != NULL) {
        const char *v = va_arg(ap, const char *);
        if (v == NULL)
            v = "";
        if (d->cfg.log_json) {
            avm_buf_puts(&b, ",");
            avm_json_str(&b, k, strlen(k));
            avm_buf_puts(&b, ":");
            avm_json_str(&b, v, strlen(v));
        } else {
            bool quote = v[0] == '\0' || strpbrk(v, " \"=\t\n") != NULL;
            avm_buf_printf(&b, " %s=", k);
            if (quote)
                avm_json_str(&b, v, strlen(v));
            else
                avm_buf_puts(&b, v);
        }
    }
    va_end(ap);
    avm_buf_puts(&b, d->cfg.log_json ? "}\n" : "\n");
    fputs(avm_buf_cstr(&b), stderr);
    avm_buf_free(&b);
}

/* --- Replies ---------------------------------------------------------------- */

static avm_val str_val(const char *s)
{
    avm_val v;
    return avm_cstr(AVM_STR, s ? s : "", &v) == 0 ? v : avm_nil();
}

static void reply_body(avm_ctl_req *req, avm_ctl_body *b)
{
    avm_val body;
    if (avm_ctl_body_finish(b, &body) != 0) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    avm_ctl_reply(req, body);
    avm_val_release(body);
}

static void put_info(avm_ctl_body *b, const avm_mgr_info *i)
{
    static const char *const waits[] = {NULL, "message", "commit", "fetch"};
    avm_ctl_put_str(b, "id", i->id);
    avm_ctl_put_str(b, "name", i->name);
    avm_ctl_put(b, "by", i->by ? str_val(i->by) : avm_nil());
    avm_ctl_put_str(b, "status", avm_xstate_name(i->state));
    avm_ctl_put(b, "waiting",
                i->waiting != AVM_WAIT_NONE ? str_val(waits[i->waiting]) : avm_nil());
    avm_val_retain(i->blocked_on);
    avm_ctl_put(b, "blocked_on", i->blocked_on);
    avm_ctl_put(b, "outcome",
                i->outcome != AVM_XO_NONE ? str_val(avm_xoutcome_name(i->outcome))
                                          : avm_nil());
    avm_val_retain(i->result);
    avm_ctl_put(b, "result", i->result);
    avm_ctl_put(b, "error", i->error ? str_val(i->error) : avm_nil());
    avm_ctl_put_int(b, "steps", (int64_t)i->steps);
    avm_ctl_put_int(b, "events", (int64_t)i->events);
    avm_ctl_put_int(b, "lamport", (int64_t)i->lamport);
    avm_val_retain(i->away);
    avm_ctl_put(b, "away", i->away);
    if (!i->in_tx) {
        avm_ctl_put(b, "tx", avm_nil());
        return;
    }
    avm_ctl_body t;
    avm_ctl_body_init(&t);
    avm_val_retain(i->tx.txid);
    avm_ctl_put(&t, "txid", i->tx.txid);
    avm_val_retain(i->tx.ctrl);
    avm_ctl_put(&t, "controller", i->tx.ctrl);
    avm_ctl_put_int(&t, "reads", (int64_t)i->tx.nreads);
    avm_ctl_put_int(&t, "writes", (int64_t)i->tx.nwrites);
    avm_val tv;
    if (avm_ctl_body_finish(&t, &tv) == 0)
        avm_ctl_put(b, "tx", tv);
    else
        b->err = AVM_ENOMEM;
}

static void reply_info(node_daemon *d, avm_ctl_req *req, const char *id)
{
    avm_mgr_info i;
    char err[512] = "";
    int rv = avm_mgr_info_get(d->m, id, &i, err, sizeof(err));
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "%s", err);
        return;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    put_info(&b, &i);
    reply_body(req, &b);
}

/* --- Waiters ---------------------------------------------------------------- */

static void waiter_closed(uv_handle_t *h)
{
    free(h->data);
}

static void waiter_unlink(node_daemon *d, waiter *w)
{
    for (waiter **p = &d->waiters; *p != NULL; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, waiter_closed);
}

static void waiter_timeout(uv_timer_t *t)
{
    waiter *w = t->data;
    node_daemon *d = w->d;
    reply_info(d, w->req, w->id);
    waiter_unlink(d, w);
}

static int add_waiter(node_daemon *d, avm_ctl_req *req, const char *id, bool run,
                      uint64_t wait_ms)
{
    waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return AVM_ENOMEM;
    w->req = req;
    w->run = run;
    w->d = d;
    snprintf(w->id, sizeof(w->id), "%s", id);
    uv_timer_init(d->loop, &w->timer);
    w->timer.data = w;
    if (wait_ms > 0)
        uv_timer_start(&w->timer, waiter_timeout, wait_ms, 0);
    w->next = d->waiters;
    d->waiters = w;
    return 0;
}

/* Answers the waiters of execution id for which ev is the news. */
static void wake_waiters(node_daemon *d, const char *id, bool started)
{
    waiter *w = d->waiters;
    while (w != NULL) {
        waiter *next = w->next;
        if (strcmp(w->id, id) == 0 && w->run == started) {
            if (started) {
                avm_ctl_body b;
                avm_ctl_body_init(&b);
                avm_ctl_put_str(&b, "id", id);
                reply_body(w->req, &b);
            } else {
                reply_info(d, w->req, id);
            }
            waiter_unlink(d, w);
        }
        w = next;
    }
}

/* --- The manager's events ---------------------------------------------------- */

static void on_event(void *arg, const avm_mev *ev)
{
    node_daemon *d = arg;
    char seq[24];
    snprintf(seq, sizeof(seq), "%llu", (unsigned long long)ev->seq);
    if (d->obs != NULL && ev->exec != NULL)
        avmd_obs_exec_event(d->obs, ev->exec, ev->type == AVM_MEV_TERMINATED);
    switch (ev->type) {
    case AVM_MEV_STARTED:
        log_kv(d, L_INFO, "exec.started", "seq", seq, "exec", ev->exec, NULL);
        wake_waiters(d, ev->exec, true);
        break;
    case AVM_MEV_TERMINATED:
        log_kv(d, L_INFO, "exec.terminated", "seq", seq, "exec", ev->exec, "outcome",
               ev->detail, NULL);
        wake_waiters(d, ev->exec, false);
        break;
    case AVM_MEV_SUSPENDED:
    case AVM_MEV_RESUMED:
        log_kv(d, L_INFO,
               ev->type == AVM_MEV_SUSPENDED ? "exec.suspended" : "exec.resumed", "seq",
               seq, "exec", ev->exec, NULL);
        break;
    case AVM_MEV_MESSAGE: {
        avm_buf b;
        avm_buf_init(&b);
        avm_val_print(&b, ev->oid);
        log_kv(d, L_DEBUG, "message.posted", "seq", seq, "to", avm_buf_cstr(&b), NULL);
        avm_buf_free(&b);
        break;
    }
    case AVM_MEV_STORE_ERROR:
        log_kv(d, L_ERROR, "store.error", "seq", seq, "exec", ev->exec, "message",
               ev->detail, NULL);
        break;
    }
}

/* The first I/O error of the store (a failed fsync: avm_lmdb_io_failure) stops the
 * node at once, whatever wrote (a round, a checkpoint, a mailbox, a replica):
 * after a failed fsync the page cache's state is unknown, so carrying on could
 * acknowledge writes the disk does not have ("fsyncgate"). Exit 70; a restart
 * recovers from the data directory. */
static void io_fatal(node_daemon *d)
{
    const char *why = d->node.db != NULL ? avm_lmdb_io_failure(d->node.db) : NULL;
    if (why == NULL)
        return;
    log_kv(d, L_ERROR, "node.fatal", "error", why, "action",
           "stopping at the first I/O error of the data directory (exit 70): after a "
           "failed fsync its state is unknown; check the disk, then restart the node",
           NULL);
    _exit(70);
}

static void iocheck_cb(uv_check_t *h)
{
    io_fatal(h->data);
}

static void idle_cb(uv_idle_t *h)
{
    node_daemon *d = h->data;
    uint64_t t0 = d->obs != NULL ? uv_hrtime() : 0;
    bool more = avm_mgr_round(d->m);
    if (d->obs != NULL)
        avmd_obs_round(d->obs, (uv_hrtime() - t0) / 1000);
    const char *failure = avm_mgr_failure(d->m);
    if (failure != NULL) {
        io_fatal(d); /* an I/O error: exit 70 rather than 1 */
        /* The executions in memory are ahead of the store: nothing more may be
         * written or answered. A restart recovers from the store. */
        log_kv(d, L_ERROR, "node.failed", "error", failure, "action",
               "stopping; restart the node to recover from its data directory", NULL);
        _exit(1);
    }
    if (!more) {
        uv_idle_stop(&d->idle);
        d->idle_on = false;
    }
}

static void kick(node_daemon *d)
{
    if (d->cl != NULL && !d->stopping && !avm_cluster_settled(d->cl))
        return; /* the cluster's tick kicks again once it has settled */
    if (!d->idle_on && !d->stopping && avm_mgr_busy(d->m)) {
        uv_idle_start(&d->idle, idle_cb);
        d->idle_on = true;
    }
}

static void cluster_kick(void *arg)
{
    kick(arg);
}

static void cluster_log(void *arg, int level, const char *event, const char *k,
                        const char *v)
{
    log_kv(arg, level, event, k, v, NULL);
}

/* Stops the links and lets the loop close their handles. */
static void stop_cluster(node_daemon *d)
{
    if (d->cl == NULL)
        return;
    avm_cluster_stop(d->cl);
    uv_run(d->loop, UV_RUN_NOWAIT);
    uv_run(d->loop, UV_RUN_DEFAULT);
    avm_cluster_free(d->cl);
    d->cl = NULL;
}

/* --- Control operations ------------------------------------------------------ */

static bool want_str(avm_ctl_req *req, avm_val body, const char *key, const char **out)
{
    char err[256];
    if (avm_ctl_get_str(body, key, out, err, sizeof(err)) != 0) {
        avm_ctl_reply_error(req, AVM_EINVAL, "%s", err);
        return false;
    }
    return true;
}

static void op_status(node_daemon *d, avm_ctl_req *req)
{
    avm_mgr_counts c;
    avm_mgr_counts_get(d->m, &c);
    avm_lmdb_stats st = {0};
    avm_lmdb_stats_get(d->node.db, &st);
    avm_ctl_body b, e;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "name", d->cfg.name);
    avm_val_retain(d->node.plat.node);
    avm_ctl_put(&b, "machine", d->node.plat.node);
    avm_val_retain(d->node.plat.default_ctrl);
    avm_ctl_put(&b, "controller", d->node.plat.default_ctrl);
    avm_ctl_put_str(&b, "version", AVMD_VERSION);
    avm_ctl_put_int(&b, "pid", (int64_t)getpid());
    avm_ctl_put_int(&b, "uptime_ms", (int64_t)(uv_now(d->loop) - d->started_ms));
    avm_ctl_put_str(&b, "data", d->cfg.data);
    avm_ctl_put_int(&b, "lamport", (int64_t)c.lamport);
    avm_ctl_body_init(&e);
    avm_ctl_put_int(&e, "running", (int64_t)c.running);
    avm_ctl_put_int(&e, "suspended", (int64_t)c.suspended);
    avm_ctl_put_int(&e, "terminated", (int64_t)c.terminated);
    avm_ctl_put_int(&e, "runnable", (int64_t)c.runnable);
    avm_ctl_put_int(&e, "waiting_message", (int64_t)c.waiting_message);
    avm_ctl_put_int(&e, "waiting_commit", (int64_t)c.waiting_commit);
    avm_val ev;
    if (avm_ctl_body_finish(&e, &ev) == 0)
        avm_ctl_put(&b, "executions", ev);
    avm_ctl_put_int(&b, "objects", (int64_t)st.objects);
    avm_ctl_put_int(&b, "commits", (int64_t)c.commits);
    avm_ctl_put_int(&b, "conflicts", (int64_t)c.conflicts);
    avm_ctl_put_int(&b, "group_commits", (int64_t)c.batches);
    avm_ctl_put_int(&b, "messages", (int64_t)c.messages);
    reply_body(req, &b);
}

/* run --bundle: the execution starts once the bundle's view is in. */
typedef struct brun {
    node_daemon *d;
    avm_ctl_req *req;
    avm_module *m;
    int fn;
    avm_exec_config cfg;
    char name[256];
    char by[AVM_CTL_PRINCIPAL_MAX + 1];
    char bundle[128];
} brun;

static void start_run(node_daemon *d, avm_ctl_req *req, avm_module *m, int fn,
                      const avm_exec_config *cfg, const char *name, const char *by,
                      const char *bundle, avm_val view, uint64_t seen);

static void brun_view(void *arg, int rv, avm_val view, uint64_t seen, const char *errmsg)
{
    brun *b = arg;
    if (rv != 0)
        avm_ctl_reply_error(b->req, rv, "run: %s", errmsg ? errmsg : avm_strerror(rv));
    else
        start_run(b->d, b->req, b->m, b->fn, &b->cfg, b->name, b->by, b->bundle, view,
                  seen);
    avm_module_release(b->m);
    free(b);
}

static void start_run(node_daemon *d, avm_ctl_req *req, avm_module *m, int fn,
                      const avm_exec_config *cfg, const char *name, const char *by,
                      const char *bundle, avm_val view, uint64_t seen)
{
    char id[48], err[1024] = "";
    int rv =
        avm_mgr_start_by(d->m, m, fn, cfg, name, by, id, sizeof(id), err, sizeof(err));
    if (rv == 0 && bundle != NULL) {
        rv = avm_mgr_set_bundle(d->m, id, bundle, view, seen, err, sizeof(err));
        if (rv != 0) {
            char kerr[256];
            avm_mgr_kill(d->m, id, kerr, sizeof(kerr));
        }
    }
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "run: %s", err);
        return;
    }
    log_kv(d, L_INFO, "exec.start", "exec", id, "name", name, "by", by, NULL);
    kick(d);
    if (add_waiter(d, req, id, true, 0) != 0) {
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "id", id);
        reply_body(req, &b);
    }
}

static void op_run(node_daemon *d, avm_ctl_req *req, avm_val body)
{
    avm_val mod = avm_ctl_get(body, "module");
    if (mod.kind != AVM_STR) {
        avm_ctl_reply_error(req, AVM_EINVAL, "run: \"module\" must be a string of bytes");
        return;
    }
    const char *name = "program";
    avm_val nv = avm_ctl_get(body, "name");
    if (nv.kind == AVM_STR)
        name = nv.u.s->data;
    char err[1024] = "";
    avm_module *m = NULL;
    int rv = avm_module_decode((const uint8_t *)mod.u.s->data, mod.u.s->len, &m, err,
                               sizeof(err));
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "run: the module is refused: %s", err);
        return;
    }
    int fn = -1;
    avm_val entry = avm_ctl_get(body, "entry");
    if (entry.kind == AVM_STR) {
        fn = avm_module_find(m, entry.u.s->data, AVM_FN_FUNC);
        if (fn < 0) {
            avm_ctl_reply_error(req, AVM_ENOTFOUND, "run: %s has no function %s", name,
                                entry.u.s->data);
            avm_module_release(m);
            return;
        }
    }
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT};
    if (avm_truthy(avm_ctl_get(body, "spec_strict")))
        cfg.mode = AVM_MODE_STRICT;
    cfg.allow_unsafe = avm_truthy(avm_ctl_get(body, "allow_unsafe"));
    /* Who asked: set by the node the client talked to (handle), this one or the
     * member that forwarded the request. */
    char by[AVM_CTL_PRINCIPAL_MAX + 1] = "anonymous";
    avm_val pv = avm_ctl_get(body, "principal");
    if (pv.kind == AVM_STR && pv.u.s->len > 0 && pv.u.s->len < sizeof(by) &&
        memchr(pv.u.s->data, '\0', pv.u.s->len) == NULL)
        snprintf(by, sizeof(by), "%s", pv.u.s->data);
    avm_val bv = avm_ctl_get(body, "bundle");
    if (bv.kind == AVM_NIL) {
        start_run(d, req, m, fn, &cfg, name, by, NULL, avm_nil(), 0);
        avm_module_release(m);
        return;
    }
    brun *b = NULL;
    if (bv.kind != AVM_STR || bv.u.s->len == 0 || bv.u.s->len >= 128) {
        avm_ctl_reply_error(req, AVM_EINVAL, "run: \"bundle\" must be a bundle id");
    } else if (d->cl == NULL) {
        avm_ctl_reply_error(req, AVM_ESTATE,
                            "run: bundles need a cluster (start the node with --listen)");
    } else if ((b = calloc(1, sizeof(*b))) == NULL) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
    } else {
        *b = (brun){.d = d, .req = req, .m = m, .fn = fn, .cfg = cfg};
        snprintf(b->name, sizeof(b->name), "%s", name);
        snprintf(b->by, sizeof(b->by), "%s", by);
        snprintf(b->bundle, sizeof(b->bundle), "%s", bv.u.s->data);
        avm_module_retain(m);
        rv = avm_cluster_bundle_view(d->cl, b->bundle, brun_view, b, err, sizeof(err));
        if (rv != 0) {
            avm_ctl_reply_error(req, rv, "run: %s", err);
            avm_module_release(m);
            free(b);
        }
    }
    avm_module_release(m);
}

typedef struct ls_ctx {
    avm_val *items;
    size_t n, cap;
    int err;
} ls_ctx;

static void ls_push(ls_ctx *c, avm_val v)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        avm_val *p = realloc(c->items, cap * sizeof(*p));
        if (p == NULL) {
            c->err = AVM_ENOMEM;
            avm_val_release(v);
            return;
        }
        c->items = p;
        c->cap = cap;
    }
    c->items[c->n++] = v;
}

static void ls_one(void *arg, const avm_mgr_info *i)
{
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "id", i->id);
    avm_ctl_put_str(&b, "name", i->name);
    avm_ctl_put(&b, "by", i->by ? str_val(i->by) : avm_nil());
    avm_ctl_put_str(&b, "status", avm_xstate_name(i->state));
    avm_ctl_put(&b, "outcome",
                i->outcome != AVM_XO_NONE ? str_val(avm_xoutcome_name(i->outcome))
                                          : avm_nil());
    avm_ctl_put_int(&b, "steps", (int64_t)i->steps);
    avm_val v;
    if (avm_ctl_body_finish(&b, &v) == 0)
        ls_push(arg, v);
    else
        ((ls_ctx *)arg)->err = AVM_ENOMEM;
}

static void reply_list(avm_ctl_req *req, const char *key, ls_ctx *c)
{
    avm_val list;
    if (c->err != 0 || avm_list_from(c->items, c->n, &list) != 0) {
        for (size_t i = 0; i < c->n; i++)
            avm_val_release(c->items[i]);
        free(c->items);
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    free(c->items);
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, key, list);
    reply_body(req, &b);
}

static void tx_one(void *arg, const char *id, const avm_exec_txinfo *t, bool stale)
{
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "exec", id);
    avm_val_retain(t->txid);
    avm_ctl_put(&b, "txid", t->txid);
    avm_val_retain(t->ctrl);
    avm_ctl_put(&b, "controller", t->ctrl);
    avm_ctl_put_int(&b, "depth", (int64_t)t->depth);
    avm_ctl_put_int(&b, "reads", (int64_t)t->nreads);
    avm_ctl_put_int(&b, "writes", (int64_t)t->nwrites);
    avm_ctl_put_bool(&b, "stale", stale);
    avm_val v;
    if (avm_ctl_body_finish(&b, &v) == 0)
        ls_push(arg, v);
    else
        ((ls_ctx *)arg)->err = AVM_ENOMEM;
}

static void op_exec(node_daemon *d, avm_ctl_req *req, const char *op, avm_val body)
{
    if (strcmp(op, "exec.ls") == 0) {
        ls_ctx c = {0};
        avm_mgr_each(d->m, ls_one, &c);
        reply_list(req, "executions", &c);
        return;
    }
    static const char *const ops[] = {"exec.show",       "exec.result", "exec.trace",
                                      "exec.suspend",    "exec.resume", "exec.kill",
                                      "exec.constraints"};
    bool known = false;
    for (size_t k = 0; k < sizeof(ops) / sizeof(ops[0]); k++)
        known |= strcmp(op, ops[k]) == 0;
    if (!known) {
        avm_ctl_reply_error(req, AVM_EINVAL, "unknown operation '%s'", op);
        return;
    }
    const char *id;
    if (!want_str(req, body, "id", &id))
        return;
    char err[512] = "";
    int rv = 0;
    if (strcmp(op, "exec.show") == 0) {
        reply_info(d, req, id);
        return;
    }
    if (strcmp(op, "exec.result") == 0) {
        int64_t wait = 0;
        avm_val wv = avm_ctl_get(body, "wait_ms");
        if (wv.kind == AVM_INT)
            wait = wv.u.i;
        if (wait < 0 || wait > 3600 * 1000) {
            avm_ctl_reply_error(req, AVM_EINVAL, "wait_ms must be 0 .. 3600000, not %lld",
                                (long long)wait);
            return;
        }
        avm_mgr_info i;
        rv = avm_mgr_info_get(d->m, id, &i, err, sizeof(err));
        if (rv != 0) {
            avm_ctl_reply_error(req, rv, "%s", err);
            return;
        }
        if (i.state == AVM_XS_TERMINATED || wait == 0 ||
            add_waiter(d, req, id, false, (uint64_t)wait) != 0)
            reply_info(d, req, id);
        return;
    }
    if (strcmp(op, "exec.constraints") == 0) {
        /* The open transaction's choices and requirements, as the IR and as
         * SMT-LIB2 text (what the solver will be given at the commit). */
        avm_val prob;
        rv = avm_mgr_problem(d->m, id, &prob, err, sizeof(err));
        if (rv != 0) {
            avm_ctl_reply_error(req, rv, "%s", err);
            return;
        }
        avm_buf text;
        avm_buf_init(&text);
        char why[300] = "";
        int srv = avm_smtlib_write(prob, true, &text, why, sizeof(why));
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "id", id);
        avm_ctl_put_int(&b, "choices", (int64_t)avm_list_len(avm_list_at(prob, 0)));
        avm_ctl_put_int(&b, "requirements", (int64_t)avm_list_len(avm_list_at(prob, 1)));
        avm_ctl_put(&b, "problem", prob);
        avm_ctl_put_str(&b, "smtlib", srv == 0 && text.data ? text.data : why);
        avm_buf_free(&text);
        reply_body(req, &b);
        return;
    }
    if (strcmp(op, "exec.trace") == 0) {
        avm_buf log;
        rv = avm_mgr_trace(d->m, id, &log, err, sizeof(err));
        if (rv != 0) {
            avm_buf_free(&log);
            avm_ctl_reply_error(req, rv, "%s", err);
            return;
        }
        avm_val lv;
        rv = avm_str_new(AVM_STR, log.data ? log.data : "", log.len, &lv);
        avm_buf_free(&log);
        if (rv != 0) {
            avm_ctl_reply_error(req, rv, "the trace log: %s", avm_strerror(rv));
            return;
        }
        avm_mgr_info i;
        avm_mgr_info_get(d->m, id, &i, err, sizeof(err));
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "id", id);
        avm_ctl_put_str(&b, "status", avm_xstate_name(i.state));
        avm_ctl_put(&b, "log", lv);
        reply_body(req, &b);
        return;
    }
    if (strcmp(op, "exec.suspend") == 0)
        rv = avm_mgr_suspend(d->m, id, err, sizeof(err));
    else if (strcmp(op, "exec.resume") == 0)
        rv = avm_mgr_resume(d->m, id, err, sizeof(err));
    else
        rv = avm_mgr_kill(d->m, id, err, sizeof(err));
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "%s", err);
        return;
    }
    log_kv(d, L_INFO, op, "exec", id, NULL);
    kick(d);
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "id", id);
    avm_ctl_put_str(&b, "status", "requested");
    reply_body(req, &b);
}

static void op_obj(node_daemon *d, avm_ctl_req *req, const char *op, avm_val body)
{
    avm_store *s = d->node.store;
    if (strcmp(op, "obj.ls") == 0) {
        avm_val ids;
        int rv = s->ops->ids(s, &ids);
        if (rv != 0) {
            avm_ctl_reply_error(req, rv, "listing objects: %s",
                                s->ops->last_error ? s->ops->last_error(s) : "");
            return;
        }
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put(&b, "objects", ids);
        reply_body(req, &b);
        return;
    }
    avm_val oid = avm_ctl_get(body, "id");
    if (oid.kind == AVM_STR) {
        /* Accept the id as text too ("node1/7"). */
        avm_val o;
        if (avm_cstr(AVM_OBJID, oid.u.s->data, &o) != 0) {
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
            return;
        }
        oid = o;
    } else if (oid.kind == AVM_OBJID) {
        avm_val_retain(oid);
    } else {
        avm_ctl_reply_error(req, AVM_EINVAL, "obj.show: \"id\" must be an object id");
        return;
    }
    const avm_objrec *r = s->ops->get(s, NULL, oid);
    if (r == NULL) {
        avm_ctl_reply_error(req, AVM_ENOTFOUND, "no object %s on this node",
                            oid.u.s->data);
        avm_val_release(oid);
        return;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, "id", oid);
    avm_val_retain(r->beh.name);
    avm_ctl_put(&b, "behavior", r->beh.name);
    avm_val_retain(r->meta.machine);
    avm_ctl_put(&b, "machine", r->meta.machine);
    avm_val_retain(r->meta.creating);
    avm_ctl_put(&b, "creating", r->meta.creating);
    avm_val_retain(r->meta.current);
    avm_ctl_put(&b, "current", r->meta.current);
    avm_ctl_put_int(&b, "version", (int64_t)r->version);
    avm_val_retain(r->state);
    avm_ctl_put(&b, "state", r->state);
    reply_body(req, &b);
}

static void op_send(node_daemon *d, avm_ctl_req *req, avm_val body)
{
    avm_val to = avm_ctl_get(body, "to");
    avm_val from = avm_ctl_get(body, "from");
    avm_val value = avm_ctl_get(body, "value");
    bool own_to = false, own_from = false;
    if (to.kind == AVM_STR) {
        if (avm_cstr(AVM_OBJID, to.u.s->data, &to) != 0) {
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
            return;
        }
        own_to = true;
    }
    if (from.kind == AVM_NIL) {
        from = str_val("client");
        own_from = true;
    } else if (from.kind != AVM_STR && from.kind != AVM_OBJID) {
        avm_ctl_reply_error(req, AVM_EINVAL,
                            "send: \"from\" must be a string or an object id");
        return;
    }
    char err[512] = "";
    uint64_t seq = 0, stamp = 0;
    int rv = avm_mgr_send(d->m, to, from, value, &seq, &stamp, err, sizeof(err));
    if (own_to)
        avm_val_release(to);
    if (own_from)
        avm_val_release(from);
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "send: %s", err);
        return;
    }
    kick(d);
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_int(&b, "seq", (int64_t)seq);
    avm_ctl_put_int(&b, "lamport", (int64_t)stamp);
    reply_body(req, &b);
}

/* pure.ls: the pure-function registry of this node, with who made each version. */
static void pure_one(void *arg, const avm_lmdb_pureinfo *p)
{
    static const char hex[] = "0123456789abcdef";
    char h[65];
    for (int i = 0; i < 32; i++) {
        h[2 * i] = hex[p->hash[i] >> 4];
        h[2 * i + 1] = hex[p->hash[i] & 15];
    }
    h[64] = '\0';
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_val_retain(p->name);
    avm_ctl_put(&b, "name", p->name);
    avm_ctl_put_int(&b, "version", (int64_t)p->version);
    avm_ctl_put_str(&b, "hash", h);
    avm_val_retain(p->by);
    avm_ctl_put(&b, "by", p->by);
    avm_val_retain(p->exec);
    avm_ctl_put(&b, "exec", p->exec);
    avm_val_retain(p->machine);
    avm_ctl_put(&b, "machine", p->machine);
    avm_val v;
    if (avm_ctl_body_finish(&b, &v) == 0)
        ls_push(arg, v);
    else
        ((ls_ctx *)arg)->err = AVM_ENOMEM;
}

static void op_pure_ls(node_daemon *d, avm_ctl_req *req)
{
    ls_ctx c = {0};
    if (avm_lmdb_pure_each(d->node.db, pure_one, &c) != 0) {
        for (size_t i = 0; i < c.n; i++)
            avm_val_release(c.items[i]);
        free(c.items);
        avm_ctl_reply_error(req, AVM_EIO, "listing pure functions: %s",
                            avm_lmdb_errmsg(d->node.db));
        return;
    }
    reply_list(req, "functions", &c);
}

/* Requests for another machine go there: run --on MACHINE, and the executions
 * another machine owns (their ids name it). true when req was answered here. */
static bool forwarded(node_daemon *d, avm_ctl_req *req, const char *op, avm_val body,
                      unsigned hops)
{
    char target[64] = "";
    if (strcmp(op, "run") == 0) {
        avm_val on = avm_ctl_get(body, "on");
        if (on.kind == AVM_NIL)
            return false;
        if (on.kind != AVM_STR || on.u.s->len == 0 || on.u.s->len >= sizeof(target)) {
            avm_ctl_reply_error(req, AVM_EINVAL, "run: \"on\" must name a machine");
            return true;
        }
        snprintf(target, sizeof(target), "%s", on.u.s->data);
    } else if (strcmp(op, "send") == 0 || strcmp(op, "obj.show") == 0) {
        /* obj.show: to the node that holds the object, found by the machine its id
         * names. send: to the object's machine, where its receive runs, when this
         * node holds its record; else as obj.show. */
        avm_val to = avm_ctl_get(body, op[0] == 's' ? "to" : "id");
        if (!AVM_KIND_HAS_STR(to.kind) || d->cl == NULL)
            return false;
        avm_val oid;
        if (avm_cstr(AVM_OBJID, to.u.s->data, &oid) != 0)
            return false;
        const avm_objrec *r = avm_mgr_record(d->m, oid);
        bool mailbox_here = op[0] == 's' && avm_mgr_placed_here(d->m, oid);
        if (op[0] == 's' && r != NULL && !mailbox_here &&
            AVM_KIND_HAS_STR(r->meta.machine.kind) &&
            r->meta.machine.u.s->len < sizeof(target))
            snprintf(target, sizeof(target), "%s", r->meta.machine.u.s->data);
        avm_val_release(oid);
        const char *sl = strrchr(to.u.s->data, '/');
        if (target[0] == '\0') {
            if (r != NULL || mailbox_here || sl == NULL ||
                (size_t)(sl - to.u.s->data) >= sizeof(target))
                return false;
            snprintf(target, sizeof(target), "%.*s", (int)(sl - to.u.s->data),
                     to.u.s->data);
        }
        if (!avm_cluster_is_member(d->cl, target))
            return false; /* answered here */
    } else if (strncmp(op, "exec.", 5) == 0 && strcmp(op, "exec.ls") != 0) {
        avm_val id = avm_ctl_get(body, "id");
        if (id.kind != AVM_STR)
            return false;
        const char *sl = strrchr(id.u.s->data, '/');
        if (sl == NULL || (size_t)(sl - id.u.s->data) >= sizeof(target))
            return false;
        snprintf(target, sizeof(target), "%.*s", (int)(sl - id.u.s->data), id.u.s->data);
    } else {
        return false;
    }
    if (strcmp(target, d->cfg.name) == 0)
        return false;
    if (d->cl == NULL || !avm_cluster_is_member(d->cl, target)) {
        avm_ctl_reply_error(
            req, AVM_ENOTFOUND, "machine %s is not a member of %s", target,
            d->cl == NULL ? "this node's cluster (it runs on its own)" : "the cluster");
        return true;
    }
    log_kv(d, L_DEBUG, "control.forward", "op", op, "to", target, NULL);
    /* There, "on" names that machine itself: it runs the program. */
    avm_cluster_forward(d->cl, req, hops, target, op, body);
    return true;
}

static void dispatch(node_daemon *d, avm_ctl_req *req, const char *op, avm_val body,
                     unsigned hops);

/* --- Authentication (--auth-tokens) --------------------------------------- */

/* Refused requests are logged, at most REFUSED_LOG_MAX a window of
 * REFUSED_WINDOW_MS (then how many were not). Never with the token. */
#define REFUSED_WINDOW_MS 10000
#define REFUSED_LOG_MAX 20

static void log_refused(node_daemon *d, avm_ctl_req *req, const char *op,
                        const char *reason, const char *principal)
{
    uint64_t now = uv_now(d->loop);
    if (now - d->refused_window_ms >= REFUSED_WINDOW_MS) {
        if (d->refused_dropped > 0) {
            char n[24];
            snprintf(n, sizeof(n), "%u", d->refused_dropped);
            log_kv(d, L_WARN, "control.refused.suppressed", "count", n, NULL);
        }
        d->refused_window_ms = now;
        d->refused_logged = d->refused_dropped = 0;
    }
    if (d->refused_logged >= REFUSED_LOG_MAX) {
        d->refused_dropped++;
        return;
    }
    d->refused_logged++;
    log_kv(d, L_WARN, "control.refused", "endpoint", avm_ctl_req_endpoint(req), "op", op,
           "reason", reason, "principal", principal ? principal : "", NULL);
}

/* With --auth-tokens: the principal of the request's token (borrowed from
 * d->tokens), or NULL after answering EAUTH / EPERM. */
static const char *authenticate(node_daemon *d, avm_ctl_req *req, const char *op,
                                avm_val body)
{
    avm_val tok = avm_ctl_get(body, "auth");
    if (tok.kind != AVM_STR || tok.u.s->len == 0) {
        log_refused(d, req, op, "no token", NULL);
        avm_ctl_reply_error(req, AVM_EAUTH, "unauthenticated: no token");
        return NULL;
    }
    const avm_ctl_token *t = avm_ctl_tokens_find(d->tokens, tok.u.s->data, tok.u.s->len);
    if (t == NULL) {
        log_refused(d, req, op, "unknown token", NULL);
        avm_ctl_reply_error(req, AVM_EAUTH, "unauthenticated: unknown token");
        return NULL;
    }
    unsigned need = avm_ctl_op_perm(op);
    if (need != 0 && !(t->perms & need)) {
        char has[64];
        log_refused(d, req, op, "permission", t->principal);
        avm_ctl_reply_error(req, AVM_EPERM,
                            "%s needs the %s permission (principal %s has %s)", op,
                            avm_ctl_perm_name(need), t->principal,
                            avm_ctl_perms_str(t->perms, has, sizeof(has)));
        return NULL;
    }
    if (strcmp(op, "run") == 0 && avm_truthy(avm_ctl_get(body, "allow_unsafe")) &&
        !(t->perms & AVM_CTL_PERM_UNSAFE)) {
        log_refused(d, req, op, "unsafe", t->principal);
        avm_ctl_reply_error(req, AVM_EPERM,
                            "unsafe instructions need the unsafe grant (principal %s "
                            "does not have the unsafe permission)",
                            t->principal);
        return NULL;
    }
    return t->principal;
}

/* A request from a client: authenticated (with --auth-tokens), then handled with
 * its token taken out and the principal put in ("principal"; "anonymous" without
 * authentication), which is what a forwarded request carries to other members. A
 * "principal" the client sent is replaced: only members assert one. */
static void handle(void *arg, avm_ctl_req *req, const char *op, avm_val body)
{
    node_daemon *d = arg;
    const char *principal = "anonymous";
    if (d->tokens != NULL && (principal = authenticate(d, req, op, body)) == NULL)
        return;
    avm_val pv = str_val(principal), nb;
    if (pv.kind != AVM_STR ||
        avm_ctl_body_edit(body, "auth", "principal", "principal", pv, &nb) != 0) {
        avm_val_release(pv);
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    avm_val_release(pv);
    dispatch(d, req, op, nb, 0);
    avm_val_release(nb);
}

/* A request another member forwarded here (hops times). */
static void handle_forwarded(void *arg, avm_ctl_req *req, const char *op, avm_val body,
                             unsigned hops)
{
    dispatch(arg, req, op, body, hops);
}

/* Requests are forwarded at most twice (to the node an id names, then to an object's
 * machine), so that members with different views cannot pass one around. */
#define MAX_HOPS 2

static void dispatch(node_daemon *d, avm_ctl_req *req, const char *op, avm_val body,
                     unsigned hops)
{
    log_kv(d, L_DEBUG, "control.request", "op", op, NULL);
    avm_val empty = avm_nil();
    if (body.kind == AVM_NIL && avm_list_new(0, &empty) == 0)
        body = empty; /* no body: no fields */
    if (d->stopping) {
        avm_ctl_reply_error(req, AVM_ESTATE, "node is shutting down");
        return;
    }
    if (hops < MAX_HOPS && forwarded(d, req, op, body, hops)) {
        /* answered by the node it names */
    } else if (strcmp(op, "status") == 0) {
        op_status(d, req);
    } else if (strcmp(op, "cluster.status") == 0 || strcmp(op, "cluster.join") == 0) {
        if (d->cl == NULL)
            avm_ctl_reply_error(req, AVM_ESTATE,
                                "this node runs on its own (start it with --listen to "
                                "make it a cluster member)");
        else if (op[8] == 's')
            avm_cluster_op_status(d->cl, req);
        else
            avm_cluster_op_join(d->cl, req, body);
    } else if (strncmp(op, "ctrl.", 5) == 0) {
        if (d->cl == NULL)
            avm_ctl_reply_error(req, AVM_ESTATE,
                                "this node runs on its own: replicated controllers need "
                                "a cluster (start it with --listen)");
        else
            avm_cluster_op_ctrl(d->cl, req, op, body, hops);
    } else if (strncmp(op, "bundle.", 7) == 0) {
        if (d->cl == NULL)
            avm_ctl_reply_error(
                req, AVM_ESTATE,
                "this node runs on its own: bundles need a cluster (start "
                "it with --listen)");
        else
            avm_cluster_op_bundle(d->cl, req, op, body, hops);
    } else if (strcmp(op, "run") == 0) {
        op_run(d, req, body);
    } else if (strncmp(op, "exec.", 5) == 0) {
        op_exec(d, req, op, body);
    } else if (strcmp(op, "obj.ls") == 0 || strcmp(op, "obj.show") == 0) {
        op_obj(d, req, op, body);
    } else if (strcmp(op, "send") == 0) {
        op_send(d, req, body);
    } else if (strcmp(op, "pure.ls") == 0) {
        op_pure_ls(d, req);
    } else if (strcmp(op, "txs") == 0) {
        ls_ctx c = {0};
        avm_mgr_each_tx(d->m, tx_one, &c);
        reply_list(req, "transactions", &c);
    } else {
        avm_ctl_reply_error(req, AVM_EINVAL, "unknown operation '%s'", op);
    }
    avm_val_release(empty);
    kick(d);
}

/* --- Stopping ------------------------------------------------------------------ */

static void on_signal(uv_signal_t *h, int signum)
{
    node_daemon *d = h->data;
    if (d->stopping)
        return;
    d->stopping = true;
    log_kv(d, L_INFO, "node.stopping", "signal", signum == SIGTERM ? "TERM" : "INT",
           NULL);
    /* The links first: forwarded requests in flight are answered (with an error)
     * while the control server still holds them. */
    if (d->cl != NULL)
        avm_cluster_stop(d->cl);
    /* Waiters next: their requests die with the server. */
    while (d->waiters != NULL) {
        waiter *w = d->waiters;
        avm_ctl_reply_error(w->req, AVM_ESTATE, "node is shutting down");
        waiter_unlink(d, w);
    }
    avm_ctl_server_stop(d->ctl);
    d->ctl = NULL;
    avmd_obs_stop(d->obs); /* event streams end; scrapes see the port closed */
    d->obs = NULL;
    if (d->idle_on)
        uv_idle_stop(&d->idle);
    int rv = avm_mgr_park_all(d->m);
    io_fatal(d);
    if (rv != 0)
        log_kv(d, L_ERROR, "node.park", "error", avm_strerror(rv), NULL);
    else
        log_kv(d, L_INFO, "node.parked", NULL);
    uv_close((uv_handle_t *)&d->idle, NULL);
    uv_close((uv_handle_t *)&d->iocheck, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    uv_close((uv_handle_t *)&d->sigint, NULL);
}

/* --- Configuration --------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(
        f,
        "usage: avmd [options]\n"
        "\n"
        "Runs an AVM node: executions, objects and their mailboxes in a data\n"
        "directory, driven over a control endpoint (avmctl --node ADDR ...).\n"
        "\n"
        "options (flags override the config file):\n"
        "  --config FILE      read options from FILE: `key = value` lines, keys as\n"
        "                     the long options without dashes (name, data, controller,\n"
        "                     control, log-level, log-format, slice, batch, commit,\n"
        "                     listen, advertise, peer, join, ...);\n"
        "                     # comments\n"
        "  --name NAME        this node's machine id (default node1)\n"
        "  --controller NAME  its default controller (default main)\n"
        "  --default-controller GROUP  with --listen: transactions that name no\n"
        "                     controller create their objects under the replicated\n"
        "                     controller GROUP (avmctl controller create) instead;\n"
        "                     --controller stays this node's own controller\n"
        "  --data DIR         data directory (default: $AVM_DATA, else\n"
        "                     $XDG_DATA_HOME/avm/NAME, else ~/.local/share/avm/NAME)\n"
        "  --control URL      listen for avmctl on URL (repeatable; default\n"
        "                     ipc://DATA/avmd.sock and tcp://127.0.0.1:7410)\n"
        "  --log-level L      debug, info, warn or error (default info)\n"
        "  --log-format F     text (logfmt, the default) or json\n"
        "  --slice N          instructions per scheduling slice (default 20000)\n"
        "  --solver-timeout-ms N  time limit of the solver that settles the choices\n"
        "                     of nondeterministic transactions (default 5000)\n"
        "  --batch N          most write sets in one group commit (default 4096)\n"
        "  --commit MODE      pipelined (the default: a commit is validated and\n"
        "                     applied at once and made durable with its round's\n"
        "                     group commit, before anything leaves the node) or\n"
        "                     durable (commitTx waits for the disk)\n"
        "  --auth-tokens FILE authenticate every control request: FILE has lines\n"
        "                     PRINCIPAL TOKEN PERMS (PERMS: read, run, unsafe, admin,\n"
        "                     comma-separated; the token 32+ bytes); it must not be\n"
        "                     readable by the group or others (chmod 600). Requests\n"
        "                     without a known token get EAUTH, those the principal\n"
        "                     may not make EPERM (docs/operations.md)\n"
        "  --http HOST:PORT   serve observability over HTTP (off by default; port 0:\n"
        "                     any, logged as http.listen): GET /metrics (Prometheus\n"
        "                     text), /healthz, /readyz, /events (trace entries as\n"
        "                     Server-Sent Events; ?exec=ID, ?since=N). Reachable by\n"
        "                     whoever can reach the address: bind it to 127.0.0.1 or\n"
        "                     a private network\n"
        "\n"
        "cluster (without --listen the node runs on its own):\n"
        "  --listen URL       node-to-node links: tcp://HOST:PORT (port 0: any)\n"
        "  --advertise URL    the address other nodes dial (default: --listen)\n"
        "  --peer NAME=URL    a member to link with (repeatable)\n"
        "  --join ADDR        join a running cluster through a member's control\n"
        "                     address (HOST:PORT or URL)\n"
        "  --join-token-file FILE  the token --join sends, for a member started with\n"
        "                     --auth-tokens (its principal needs admin; FILE holds\n"
        "                     the token, mode 600)\n"
        "  --heartbeat-ms N   heartbeat period on every link (default 100)\n"
        "  --fd-bound-ms N    a member silent this long is unreachable (default 1000)\n"
        "  --phi X            phi-accrual suspicion threshold (default 8)\n"
        "  --request-ms N     deadline of object requests to members (default 5000)\n"
        "  --placement P      where new objects go: local (the machine that creates\n"
        "                     them, the default) or spread (round-robin over this node\n"
        "                     and the reachable members)\n"
        "  --raft-election-ms N   replicated controllers: election timeout (default\n"
        "                     300; a leader's loss is noticed after 1-2 times it)\n"
        "  --raft-heartbeat-ms N  leaders' heartbeat period (default 50)\n"
        "  --raft-snapshot-every N  applied entries between snapshots (default 1024)\n"
        "  --version          print the version\n"
        "  --help             this text\n"
        "\n"
        "SIGTERM or SIGINT stop the node cleanly: commits in flight finish, every\n"
        "execution is checkpointed, and the next start resumes the interrupted ones.\n");
}

static char *trim(char *s);

/* The token in the file at path (mode 600): its first line that is neither blank
 * nor a `#` comment, without surrounding blanks. 0, or -1 with err. */
static int read_join_token(const char *path, char *out, size_t n, char *err,
                           size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0) {
        snprintf(err, errlen,
                 "token file %s has mode %04o: the group or others may use it (chmod "
                 "600 %s)",
                 path, (unsigned)(st.st_mode & 07777), path);
        fclose(f);
        return -1;
    }
    char line[1024];
    int rv = -1;
    snprintf(err, errlen, "token file %s holds no token", path);
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = trim(line);
        if (*s == '\0' || *s == '#')
            continue;
        if (strlen(s) >= n || strpbrk(s, " \t") != NULL)
            snprintf(err, errlen,
                     "token file %s: the token must be one word of at most "
                     "%zu bytes",
                     path, n - 1);
        else {
            snprintf(out, n, "%s", s);
            rv = 0;
        }
        break;
    }
    memset(line, 0, sizeof(line));
    fclose(f);
    return rv;
}

/* Whether a control URL can be reached only from this host: ipc://, or TCP on a
 * loopback address (127.0.0.0/8, ::1, localhost). */
static bool loopback_url(const char *url)
{
    const char *sep = strstr(url, "://");
    if (sep == NULL || strncmp(url, "ipc://", 6) == 0 ||
        strncmp(url, "inproc://", 9) == 0)
        return true;
    const char *host = sep + 3;
    const char *end = strrchr(host, ':');
    size_t n = end != NULL ? (size_t)(end - host) : strlen(host);
    if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
        host++;
        n -= 2;
    }
    return (n >= 4 && strncmp(host, "127.", 4) == 0) ||
           (n == 9 && strncmp(host, "localhost", 9) == 0) ||
           (n == 3 && strncmp(host, "::1", 3) == 0);
}

/* --http HOST:PORT (port 0: any; the port is logged in http.listen). */
static int http_opt(config *c, const char *val, char *err, size_t errlen)
{
    const char *colon = strrchr(val, ':');
    char *end = NULL;
    long port = colon != NULL ? strtol(colon + 1, &end, 10) : -1;
    if (colon == NULL || colon == val || colon[1] == '\0' || *end != '\0' || port < 0 ||
        port > 65535 || strlen(val) >= sizeof(c->http)) {
        snprintf(err, errlen, "http must be HOST:PORT, not '%s'", val);
        return -1;
    }
    snprintf(c->http, sizeof(c->http), "%s", val);
    return 0;
}

static int set_opt(config *c, const char *key, const char *val, char *err, size_t errlen)
{
    char *end;
    if (strcmp(key, "name") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->name) || strchr(val, '/')) {
            snprintf(err, errlen, "name must be 1..63 characters without '/'");
            return -1;
        }
        snprintf(c->name, sizeof(c->name), "%s", val);
    } else if (strcmp(key, "controller") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->controller)) {
            snprintf(err, errlen, "controller must be 1..63 characters");
            return -1;
        }
        snprintf(c->controller, sizeof(c->controller), "%s", val);
    } else if (strcmp(key, "default-controller") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->default_controller)) {
            snprintf(err, errlen, "default-controller must be 1..63 characters");
            return -1;
        }
        snprintf(c->default_controller, sizeof(c->default_controller), "%s", val);
    } else if (strcmp(key, "data") == 0) {
        if (strlen(val) >= sizeof(c->data)) {
            snprintf(err, errlen, "data directory path too long");
            return -1;
        }
        snprintf(c->data, sizeof(c->data), "%s", val);
    } else if (strcmp(key, "control") == 0) {
        if (c->ncontrol == MAX_CONTROL) {
            snprintf(err, errlen, "at most %d control addresses", MAX_CONTROL);
            return -1;
        }
        c->control[c->ncontrol] = strdup(val);
        if (c->control[c->ncontrol] == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        c->ncontrol++;
    } else if (strcmp(key, "log-level") == 0 || strcmp(key, "log_level") == 0) {
        int l = -1;
        for (int i = 0; i < 4; i++)
            if (strcmp(val, level_names[i]) == 0)
                l = i;
        if (l < 0) {
            snprintf(err, errlen,
                     "log level must be debug, info, warn or error, not '%s'", val);
            return -1;
        }
        c->log_level = l;
    } else if (strcmp(key, "log-format") == 0 || strcmp(key, "log_format") == 0) {
        if (strcmp(val, "json") != 0 && strcmp(val, "text") != 0) {
            snprintf(err, errlen, "log format must be text or json, not '%s'", val);
            return -1;
        }
        c->log_json = strcmp(val, "json") == 0;
    } else if (strcmp(key, "commit") == 0) {
        if (strcmp(val, "pipelined") != 0 && strcmp(val, "durable") != 0) {
            snprintf(err, errlen, "commit must be pipelined or durable, not '%s'", val);
            return -1;
        }
        c->durable_commits = strcmp(val, "durable") == 0;
    } else if (strcmp(key, "listen") == 0 || strcmp(key, "advertise") == 0) {
        char *dst = key[0] == 'l' ? c->listen : c->advertise;
        if (strncmp(val, "tcp://", 6) != 0 || strrchr(val, ':') == val + 3 ||
            strlen(val) >= sizeof(c->listen)) {
            snprintf(err, errlen, "%s must be tcp://HOST:PORT, not '%s'", key, val);
            return -1;
        }
        snprintf(dst, sizeof(c->listen), "%s", val);
    } else if (strcmp(key, "join") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->join)) {
            snprintf(err, errlen, "join needs a member's control address");
            return -1;
        }
        snprintf(c->join, sizeof(c->join), "%s", val);
    } else if (strcmp(key, "peer") == 0) {
        const char *eq = strchr(val, '=');
        if (eq == NULL || eq == val || strncmp(eq + 1, "tcp://", 6) != 0) {
            snprintf(err, errlen, "peer must be NAME=tcp://HOST:PORT, not '%s'", val);
            return -1;
        }
        if (c->npeers == MAX_PEERS) {
            snprintf(err, errlen, "at most %d peers", MAX_PEERS);
            return -1;
        }
        c->peers[c->npeers] = strdup(val);
        if (c->peers[c->npeers] == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        c->npeers++;
    } else if (strcmp(key, "heartbeat-ms") == 0 || strcmp(key, "fd-bound-ms") == 0 ||
               strcmp(key, "request-ms") == 0) {
        errno = 0;
        unsigned long v = strtoul(val, &end, 10);
        if (errno != 0 || *end != '\0' || v < 10 || v > 600000) {
            snprintf(err, errlen, "%s must be from 10 to 600000 (ms), not '%s'", key,
                     val);
            return -1;
        }
        if (key[0] == 'h')
            c->heartbeat_ms = (uint32_t)v;
        else if (key[0] == 'f')
            c->fd_bound_ms = (uint32_t)v;
        else
            c->request_ms = (uint32_t)v;
    } else if (strcmp(key, "solver-timeout-ms") == 0) {
        errno = 0;
        unsigned long v = strtoul(val, &end, 10);
        if (errno != 0 || *end != '\0' || v < 1 || v > 3600000) {
            snprintf(err, errlen, "%s must be from 1 to 3600000, not '%s'", key, val);
            return -1;
        }
        c->solver_timeout_ms = (uint32_t)v;
    } else if (strcmp(key, "raft-election-ms") == 0 ||
               strcmp(key, "raft-heartbeat-ms") == 0 ||
               strcmp(key, "raft-snapshot-every") == 0) {
        errno = 0;
        unsigned long v = strtoul(val, &end, 10);
        if (errno != 0 || *end != '\0' || v < 2 || v > 600000) {
            snprintf(err, errlen, "%s must be from 2 to 600000, not '%s'", key, val);
            return -1;
        }
        if (strcmp(key, "raft-election-ms") == 0)
            c->raft_election_ms = (uint32_t)v;
        else if (strcmp(key, "raft-heartbeat-ms") == 0)
            c->raft_heartbeat_ms = (uint32_t)v;
        else
            c->raft_snapshot_every = (uint32_t)v;
    } else if (strcmp(key, "http") == 0) {
        if (http_opt(c, val, err, errlen) != 0)
            return -1;
    } else if (strcmp(key, "auth-tokens") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->auth_tokens)) {
            snprintf(err, errlen, "auth-tokens needs a file path");
            return -1;
        }
        snprintf(c->auth_tokens, sizeof(c->auth_tokens), "%s", val);
    } else if (strcmp(key, "join-token-file") == 0) {
        if (strlen(val) == 0 || strlen(val) >= sizeof(c->join_token)) {
            snprintf(err, errlen, "join-token-file needs a file path");
            return -1;
        }
        snprintf(c->join_token, sizeof(c->join_token), "%s", val);
    } else if (strcmp(key, "placement") == 0) {
        if (strcmp(val, "local") != 0 && strcmp(val, "spread") != 0) {
            snprintf(err, errlen, "placement must be local or spread, not '%s'", val);
            return -1;
        }
        c->spread = strcmp(val, "spread") == 0;
    } else if (strcmp(key, "phi") == 0) {
        errno = 0;
        double v = strtod(val, &end);
        if (errno != 0 || *end != '\0' || !(v >= 1 && v <= 30)) {
            snprintf(err, errlen, "phi must be a number from 1 to 30, not '%s'", val);
            return -1;
        }
        c->phi = v;
    } else if (strcmp(key, "slice") == 0 || strcmp(key, "batch") == 0) {
        errno = 0;
        unsigned long long v = strtoull(val, &end, 10);
        if (errno != 0 || *end != '\0' || v == 0 || v > 1000000000ull) {
            snprintf(err, errlen, "%s must be a number from 1 to 10^9, not '%s'", key,
                     val);
            return -1;
        }
        if (key[0] == 's')
            c->slice = v;
        else
            c->batch_max = (size_t)v;
    } else {
        snprintf(err, errlen, "unknown option '%s'", key);
        return -1;
    }
    return 0;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
        *--e = '\0';
    return s;
}

static int read_config(config *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "avmd: cannot read config %s: %s\n", path, strerror(errno));
        return -1;
    }
    char line[2048];
    int n = 0, rv = 0;
    while (rv == 0 && fgets(line, sizeof(line), f) != NULL) {
        n++;
        char *s = trim(line);
        if (*s == '#' || *s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL) {
            fprintf(stderr, "avmd: %s:%d: expected key = value\n", path, n);
            rv = -1;
            break;
        }
        *eq = '\0';
        char err[256];
        if (set_opt(c, trim(s), trim(eq + 1), err, sizeof(err)) != 0) {
            fprintf(stderr, "avmd: %s:%d: %s\n", path, n, err);
            rv = -1;
        }
    }
    fclose(f);
    return rv;
}

static int parse_args(config *c, int argc, char **argv)
{
    /* The config file first, so that flags override it. */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "avmd: --config needs a file\n");
                return -1;
            }
            if (read_config(c, argv[i + 1]) != 0)
                return -1;
        }
    }
    size_t file_controls = c->ncontrol;
    bool flag_controls = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(a, "--version") == 0) {
            printf("avmd %s\n", AVMD_VERSION);
            exit(0);
        }
        if (strcmp(a, "--config") == 0) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "avmd: %s: unknown argument or missing value (see --help)\n",
                    a);
            return -1;
        }
        if (strcmp(a, "--control") == 0 && !flag_controls) {
            /* Flags replace the file's addresses. */
            for (size_t k = 0; k < file_controls; k++)
                free(c->control[k]);
            c->ncontrol = 0;
            flag_controls = true;
        }
        char err[256];
        if (set_opt(c, a + 2, argv[++i], err, sizeof(err)) != 0) {
            fprintf(stderr, "avmd: %s: %s\n", a, err);
            return -1;
        }
    }
    return 0;
}

/* The observability endpoint (observe.h) on the loop, logged as http.listen with
 * the port it got. */
static int start_http(node_daemon *d, char *err, size_t errlen)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t now_ms = (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
    uint64_t up_ms = uv_now(d->loop) - d->started_ms;
    avmd_obs_config oc = {.loop = d->loop,
                          .addr = d->cfg.http,
                          .m = d->m,
                          .cl = d->cl,
                          .db = d->node.db,
                          .name = d->cfg.name,
                          .version = AVMD_VERSION,
                          .start_unix_ms = now_ms - up_ms,
                          .log = cluster_log,
                          .arg = d};
    int rv = avmd_obs_start(&oc, &d->obs, err, errlen);
    if (rv != 0)
        return rv;
    char port[16];
    snprintf(port, sizeof(port), "%d", avmd_obs_port(d->obs));
    log_kv(d, L_INFO, "http.listen", "http", d->cfg.http, "port", port, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    static node_daemon d;
    config *c = &d.cfg;
    snprintf(c->name, sizeof(c->name), "node1");
    snprintf(c->controller, sizeof(c->controller), "main");
    c->log_level = L_INFO;
    int code = 2;
    if (parse_args(c, argc, argv) != 0)
        goto out;
    if (c->default_controller[0] != '\0' &&
        (c->listen[0] == '\0' || strcmp(c->default_controller, c->controller) == 0)) {
        fprintf(stderr, "avmd: --default-controller names a replicated controller: it "
                        "needs --listen and a name other than --controller\n");
        goto out;
    }
    if (c->data[0] == '\0' &&
        avm_embedded_default_dir(c->name, c->data, sizeof(c->data)) != 0) {
        fprintf(stderr,
                "avmd: no data directory: give --data, or set AVM_DATA or HOME\n");
        goto out;
    }
    if (c->ncontrol == 0) {
        char url[1100];
        snprintf(url, sizeof(url), "ipc://%s/avmd.sock", c->data);
        c->control[c->ncontrol++] = strdup(url);
        c->control[c->ncontrol++] = strdup("tcp://127.0.0.1:7410");
    }
    static char join_token[AVM_CTL_TOKEN_MAX + 2];
    if (c->join_token[0] != '\0') {
        char terr[2600];
        if (read_join_token(c->join_token, join_token, sizeof(join_token), terr,
                            sizeof(terr)) != 0) {
            fprintf(stderr, "avmd: --join-token-file: %s\n", terr);
            goto out;
        }
    }
    if (c->auth_tokens[0] != '\0') {
        char terr[1200];
        if (avm_ctl_tokens_load(c->auth_tokens, &d.tokens, terr, sizeof(terr)) != 0) {
            fprintf(stderr, "avmd: --auth-tokens: %s\n", terr);
            goto out;
        }
    } else {
        for (size_t i = 0; i < c->ncontrol; i++)
            if (!loopback_url(c->control[i]))
                log_kv(&d, L_WARN, "control.unauthenticated", "control", c->control[i],
                       "hint",
                       "anyone who reaches this address controls the node: give "
                       "--auth-tokens, or listen on 127.0.0.1",
                       NULL);
    }
    code = 1;
    d.loop = uv_default_loop();
    d.started_ms = uv_now(d.loop);
    char err[1024] = "";
    int rv =
        avm_embedded_open(&d.node, c->name, c->controller, c->data, err, sizeof(err));
    if (rv != 0) {
        log_kv(&d, L_ERROR, "node.open", "data", c->data, "error", err, NULL);
        goto out;
    }
    d.node.solver_timeout_ms = c->solver_timeout_ms;
    if (c->default_controller[0] != '\0') {
        /* Before the manager opens: every execution copies the platform. The
         * cluster keeps --controller as this node's own controller. */
        avm_val k;
        if (avm_cstr(AVM_CTRLID, c->default_controller, &k) != 0) {
            avm_embedded_close(&d.node);
            goto out;
        }
        avm_val_release(d.node.plat.default_ctrl);
        d.node.plat.default_ctrl = k;
    }
    if (c->listen[0] != '\0') {
        avm_cluster_config cc = {.self = c->name,
                                 .controller = c->controller,
                                 .listen = c->listen,
                                 .advertise = c->advertise,
                                 .peers = (const char *const *)c->peers,
                                 .npeers = c->npeers,
                                 .heartbeat_ms = c->heartbeat_ms,
                                 .fd_bound_ms = c->fd_bound_ms,
                                 .phi = c->phi,
                                 .request_ms = c->request_ms,
                                 .spread = c->spread,
                                 .raft_election_ms = c->raft_election_ms,
                                 .raft_heartbeat_ms = c->raft_heartbeat_ms,
                                 .raft_snapshot_every = c->raft_snapshot_every,
                                 .solver_timeout_ms = c->solver_timeout_ms,
                                 .kick = cluster_kick,
                                 .control = handle_forwarded,
                                 .log = cluster_log,
                                 .arg = &d};
        rv = avm_cluster_start(d.loop, &cc, &d.cl, err, sizeof(err));
        if (rv != 0) {
            log_kv(&d, L_ERROR, "cluster.listen", "listen", c->listen, "error", err,
                   NULL);
            if (d.cl != NULL) {
                uv_run(d.loop, UV_RUN_DEFAULT);
                avm_cluster_free(d.cl);
            }
            avm_embedded_close(&d.node);
            goto out;
        }
    }
    avm_mgr_config mc = {.node = &d.node,
                         .slice = c->slice,
                         .batch_max = c->batch_max,
                         .resume_on_open = true,
                         .commit_mode = c->durable_commits ? AVM_COMMIT_DURABLE
                                                           : AVM_COMMIT_PIPELINED,
                         .on_event = on_event,
                         .arg = &d,
                         .cluster = d.cl ? avm_cluster_manager_hooks(d.cl) : NULL};
    rv = avm_mgr_open(&mc, &d.m, err, sizeof(err));
    if (rv != 0) {
        log_kv(&d, L_ERROR, "node.open", "data", c->data, "error", err, NULL);
        stop_cluster(&d);
        avm_embedded_close(&d.node);
        goto out;
    }
    if (err[0] != '\0')
        log_kv(&d, L_WARN, "node.recover", "error", err, NULL);
    if (d.cl != NULL && avm_cluster_attach(d.cl, d.m, err, sizeof(err)) != 0) {
        log_kv(&d, L_ERROR, "raft.recover", "error", err, NULL);
        stop_cluster(&d);
        avm_mgr_close(d.m);
        avm_embedded_close(&d.node);
        rv = AVM_EIO;
        goto out;
    }
    avm_ctl_server_config sc = {.urls = (const char *const *)c->control,
                                .nurls = c->ncontrol,
                                .handler = handle,
                                .arg = &d};
    rv = avm_ctl_server_start(d.loop, &sc, &d.ctl, err, sizeof(err));
    if (rv != 0) {
        log_kv(&d, L_ERROR, "control.listen", "error", err, NULL);
        stop_cluster(&d);
        avm_mgr_close(d.m);
        avm_embedded_close(&d.node);
        goto out;
    }
    if (c->http[0] != '\0' && start_http(&d, err, sizeof(err)) != 0) {
        log_kv(&d, L_ERROR, "http.listen", "http", c->http, "error", err, NULL);
        avm_ctl_server_stop(d.ctl);
        stop_cluster(&d);
        avm_mgr_close(d.m);
        avm_embedded_close(&d.node);
        goto out;
    }
    if (d.cl != NULL && c->join[0] != '\0') {
        rv = avm_cluster_join_as(d.cl, c->join, join_token[0] ? join_token : NULL, err,
                                 sizeof(err));
        if (rv != 0) {
            log_kv(&d, L_ERROR, "cluster.join", "via", c->join, "error", err, NULL);
            avmd_obs_stop(d.obs);
            avm_ctl_server_stop(d.ctl);
            stop_cluster(&d);
            avm_mgr_close(d.m);
            avm_embedded_close(&d.node);
            goto out;
        }
    }
    uv_idle_init(d.loop, &d.idle);
    d.idle.data = &d;
    uv_check_init(d.loop, &d.iocheck);
    d.iocheck.data = &d;
    uv_check_start(&d.iocheck, iocheck_cb);
    uv_unref((uv_handle_t *)&d.iocheck); /* does not keep the loop alive */
    uv_signal_init(d.loop, &d.sigterm);
    d.sigterm.data = &d;
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_signal_init(d.loop, &d.sigint);
    d.sigint.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    d.started_ms = uv_now(d.loop);

    avm_mgr_counts cnt;
    avm_mgr_counts_get(d.m, &cnt);
    char pid[16], resumed[24], urls[1024] = "";
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    snprintf(resumed, sizeof(resumed), "%zu", cnt.runnable);
    for (size_t i = 0; i < c->ncontrol; i++) {
        char port[32] = "";
        int p = avm_ctl_server_port(d.ctl, i);
        if (p > 0 && strstr(c->control[i], ":0") != NULL)
            snprintf(port, sizeof(port), "(port %d)", p);
        snprintf(urls + strlen(urls), sizeof(urls) - strlen(urls), "%s%s%s", i ? " " : "",
                 c->control[i], port);
    }
    char link[300] = "";
    if (d.cl != NULL)
        snprintf(link, sizeof(link), "%s (port %d)", c->listen, avm_cluster_port(d.cl));
    log_kv(&d, L_INFO, "node.ready", "name", c->name, "data", c->data, "control", urls,
           "link", d.cl ? link : "none", "pid", pid, "resumed", resumed, "version",
           AVMD_VERSION, NULL);
    kick(&d);
    uv_run(d.loop, UV_RUN_DEFAULT);

    avm_mgr_close(d.m);
    avm_cluster_free(d.cl);
    avm_embedded_close(&d.node);
    uv_loop_close(d.loop);
    log_kv(&d, L_INFO, "node.stopped", NULL);
    code = 0;
out:
    avm_ctl_tokens_free(d.tokens);
    d.tokens = NULL;
    for (size_t i = 0; i < c->ncontrol; i++)
        free(c->control[i]);
    for (size_t i = 0; i < c->npeers; i++)
        free(c->peers[i]);
    return code;
}
