/* The execution manager. See manager.h.
 *
 * Structure: every execution is an `mx` with its own platform and its own store
 * (a thin wrapper over the node's LMDB store), so that a commit reaching the store
 * knows whose it is. Three queues drive a round:
 *   - inputs: start/suspend/resume/kill/message events in arrival order;
 *   - the run queue: executions ready for a slice, FIFO;
 *   - the batch: write sets (commits and checkpoints) to apply in one LMDB
 *     transaction at the end of the round.
 * Invariant: an execution is in at most one of the run queue, the batch, the
 * waiters of one mailbox; an execution in the batch does not run (its write set
 * points into its overlay and its trace log). */
#include "manager.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "avm_err.h"
#include "codec.h"
#include "lmdb_store.h"

typedef struct avm_mgr avm_mgr;
typedef struct mx mx;

struct xstore {
    avm_store base;
    mx *e;
};

/* What the batch does for an execution. */
/* B_FWD: the write-ahead checkpoint of a commit to forward (fws) once durable. */
enum { B_NONE = 0, B_COMMIT = 1, B_CKPT = 2, B_FWD = 3 };

struct mx {
    char id[48];
    char *name;
    avm_mgr *m;
    avm_exec *x; /* NULL: terminated (or suspended) and not in memory */
    avm_platform plat;
    struct xstore st;
    avm_xstate state;
    avm_xoutcome outcome;
    bool want_suspend, want_kill, want_resume;
    bool label;         /* the next checkpoint stores the name */
    bool queued;        /* in the run queue */
    bool waiting_msg;   /* among its mailbox's waiters */
    bool outcome_ready; /* a commit outcome the execution has not consumed yet */
    uint8_t batch;      /* B_*: in the batch */
    uint8_t ckpt_status;
    avm_writeset ws;
    avm_buf ck; /* the checkpoint's state bytes while in the batch */
    /* Messages taken from mailboxes since the last durable checkpoint. */
    avm_lmdb_ack *acks;
    size_t nacks, capacks, acks_in_batch;
    /* Summary kept once terminated (x freed). */
    bool summarized;
    avm_val result;
    char *error;
    char *by; /* the principal that started it, kept once terminated (or NULL) */
    uint64_t steps, events, lamport;
    avm_val blocked_on;
    mx *rnext; /* run queue */
    mx *hnext; /* id hash */
    /* Distribution. */
    bool visitor;     /* owned by another machine */
    bool moving;      /* in the round's list of executions to ship */
    avm_val away;     /* owner: the machine it went to (nil: here) */
    uint64_t visit;   /* the current visit (owner), or the one it came with */
    avm_val fetch_on; /* waiting for the record of this object */
    avm_val froze;    /* freeze: the fresh record of this object is in */
    uint64_t fwd_seq; /* the forwarded write set it waits for */
    /* A commit decided elsewhere, carrying the checkpoint: the write set to forward
     * once its write-ahead checkpoint is durable (B_FWD), and its name. */
    avm_writeset fws;
    char fkey[200];
    avm_read seen[AVM_MGR_SEEN]; /* versions its own writes made (owned oids) */
    size_t nseen;
    /* A bundle member started after others: the states their segments write (owned
     * [[oid, state]...]), which it reads as its own, and how many segments that is. */
    avm_val bview;
    uint64_t bseen;
    /* Arrived while this machine's replicas of objects it read were older than the
     * versions it read: it waits (not queued) until they catch up, for at most
     * CATCHUP_TICKS calls of avm_mgr_catchup_tick (the caller's clock), so that
     * what it reads here is what it validates. 0: not waiting. */
    unsigned catchup;
    avm_objrec bscratch; /* the record xs_get returns for a viewed object */
};

/* A copy of a record that lives on another machine. */
typedef struct rcopy {
    avm_objrec r;
    bool none;       /* no such object */
    bool replica;    /* kept (fetch); otherwise fresh for one round */
    bool stale;      /* a forwarded write changed it: fetch again */
    int err;         /* the fetch failed: the waiting instructions fail once */
    avm_val unreach; /* with AVM_EUNREACHABLE: the machine */
    char why[256];
    uint64_t round; /* the round when it arrived */
    struct rcopy *next;
} rcopy;

/* Something to do once what was applied so far is durable (avm_mgr_when_durable). */
/* A module decoded from an arriving execution, by its encoding. */
typedef struct modent {
    uint8_t *bytes;
    size_t n;
    uint32_t hash;
    avm_module *m;
    struct modent *next;
} modent;

#define MODCACHE_BUCKETS 64
#define MODCACHE_MAX 256

typedef struct after {
    void (*fn)(void *arg);
    void *arg;
} after;

typedef struct msg {
    uint64_t seq, stamp;
    avm_val from, value;
} msg;

typedef struct mbox {
    avm_val oid;
    msg *q;
    size_t head, n, cap; /* q[head .. head+n) */
    mx **waiters;
    size_t nw, capw;
    struct mbox *next;
} mbox;

enum { EV_START, EV_SUSPEND, EV_RESUME, EV_KILL, EV_MESSAGE };

typedef struct inev {
    int type;
    mx *e;
    avm_val oid;
    msg m;
} inev;

struct avm_mgr {
    avm_mgr_config cfg;
    size_t ncatchup; /* executions waiting for replicas to catch up */
    avm_embedded *node;
    avm_lmdb *db;
    avm_store *base;
    uint64_t slice;
    size_t batch_max;

    mx **all; /* start order */
    size_t nall, capall;
    mx **hash;
    size_t nhash;

    mx *rhead, *rtail;
    size_t nrun;

    mx **batch;
    size_t nbatch, capbatch;

    inev *in;
    size_t nin, capin;

    mbox **boxes;
    size_t nboxes;

    uint64_t evseq, lamport;
    avm_mgr_counts c;
    bool pipelined;   /* commits staged in the round's LMDB transaction */
    size_t stage_max; /* bytes staged before a commit mid-round */
    bool failed;      /* a staged round could not be made durable: fail-stop */
    bool parking;     /* avm_mgr_park_all: nothing new goes out */
    char failure[512];

    const avm_mgr_cluster *cl;
    mx **moving; /* to ship once the round is durable */
    size_t nmoving, capmoving;
    mx **fwait; /* waiting for a record */
    size_t nfwait, capfwait;
    /* Objects given by one group replicated here to another replicated here, whose
     * new record has not come yet (avm_mgr_in_transit): an execution that needs one
     * waits (in fwait) until avm_mgr_stage_put brings it. */
    avm_val *transit;
    size_t ntransit, captransit;
    rcopy **copies;
    size_t ncopies;
    after *afters;
    size_t nafters, capafters;
    uint64_t visit_seed, fwd_next;
    char clerr[320]; /* the cluster's message for the failing store call */
    avm_val clmach;  /* the machine it could not reach, or nil */
    modent *mods[MODCACHE_BUCKETS];
    size_t nmods;
    avm_val *dirty; /* records changed here whose replicas need refreshing */
    size_t ndirty, capdirty;
};

#define GROW(arr, n, cap)                                                                \
    ((n) < (cap) || mgr_grow((void **)&(arr), &(cap), sizeof(*(arr)), (n) + 1) == 0)

static int mgr_grow(void **p, size_t *cap, size_t elem, size_t need)
{
    size_t c = *cap ? *cap : 8;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * elem);
    if (q == NULL)
        return AVM_ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

static void fmt(char *errmsg, size_t errlen, const char *f, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt(char *errmsg, size_t errlen, const char *f, ...)
{
    if (errmsg == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, f);
    vsnprintf(errmsg, errlen, f, ap);
    va_end(ap);
}

const char *avm_xstate_name(avm_xstate s)
{
    static const char *const n[] = {"running", "suspended", "terminated"};
    return (unsigned)s < 3 ? n[s] : "unknown";
}

const char *avm_xoutcome_name(avm_xoutcome o)
{
    static const char *const n[] = {"none", "done", "failed", "killed"};
    return (unsigned)o < 4 ? n[o] : "unknown";
}

const char *avm_mev_name(avm_mev_type t)
{
    static const char *const n[] = {"ExecutionStarted", "ExecutionSuspended",
                                    "ExecutionResumed", "ExecutionTerminated",
                                    "MessagePosted",    "StoreError"};
    return (unsigned)t < sizeof(n) / sizeof(n[0]) ? n[t] : "unknown";
}

static void emit(avm_mgr *m, avm_mev_type t, const char *exec, avm_val oid,
                 const char *detail)
{
    avm_mev ev = {
        .seq = ++m->evseq, .type = t, .exec = exec, .oid = oid, .detail = detail};
    if (m->cfg.on_event != NULL)
        m->cfg.on_event(m->cfg.arg, &ev);
}

/* --- Lookup ------------------------------------------------------------- */

static size_t id_bucket(const avm_mgr *m, const char *id)
{
    return avm_hash_bytes(id, strlen(id)) & (m->nhash - 1);
}

static mx *find(avm_mgr *m, const char *id)
{
    for (mx *e = m->hash[id_bucket(m, id)]; e != NULL; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static int rehash(avm_mgr *m)
{
    size_t nb = m->nhash * 2;
    mx **h = calloc(nb, sizeof(*h));
    if (h == NULL)
        return AVM_ENOMEM;
    free(m->hash);
    m->hash = h;
    m->nhash = nb;
    for (size_t i = 0; i < m->nall; i++) {
        size_t b = id_bucket(m, m->all[i]->id);
        m->all[i]->hnext = h[b];
        h[b] = m->all[i];
    }
    return 0;
}

static int add_exec(avm_mgr *m, mx *e)
{
    if (!GROW(m->all, m->nall, m->capall))
        return AVM_ENOMEM;
    if (m->nall + 1 > m->nhash * 2 && rehash(m) != 0)
        return AVM_ENOMEM;
    m->all[m->nall++] = e;
    size_t b = id_bucket(m, e->id);
    e->hnext = m->hash[b];
    m->hash[b] = e;
    return 0;
}

static mbox *box_get(avm_mgr *m, avm_val oid, bool create)
{
    size_t b = avm_val_hash(oid) & (m->nboxes - 1);
    for (mbox *x = m->boxes[b]; x != NULL; x = x->next)
        if (avm_val_eq(x->oid, oid))
            return x;
    if (!create)
        return NULL;
    mbox *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    avm_val_retain(oid);
    x->oid = oid;
    x->next = m->boxes[b];
    m->boxes[b] = x;
    return x;
}

/* --- The per-execution store: everything but deferred commits goes through -- */

static struct avm_store *base_of(avm_store *s)
{
    return ((struct xstore *)s)->e->m->base;
}

static rcopy *copy_find(avm_mgr *m, avm_val oid);

static const avm_objrec *xs_get_base(avm_store *s, void *snap, avm_val oid)
{
    avm_store *b = base_of(s);
    const avm_objrec *r = b->ops->get(b, snap, oid);
    avm_mgr *m = ((struct xstore *)s)->e->m;
    if (r != NULL || m->cl == NULL)
        return r;
    rcopy *c = copy_find(m, oid);
    return c != NULL && !c->none && c->err == 0 && c->r.beh.mod != NULL ? &c->r : NULL;
}

static const avm_objrec *xs_get(avm_store *s, void *snap, avm_val oid)
{
    const avm_objrec *r = xs_get_base(s, snap, oid);
    mx *e = ((struct xstore *)s)->e;
    if (r == NULL || e->bview.kind != AVM_LIST)
        return r;
    /* A bundle member reads what the segments before it write (the version stays
     * the committed one: the composed commit validates it). */
    for (size_t i = 0; i < avm_list_len(e->bview); i++) {
        avm_val p = avm_list_at(e->bview, i);
        if (avm_val_eq(avm_list_at(p, 0), oid)) {
            e->bscratch = *r;
            e->bscratch.state = avm_list_at(p, 1);
            return &e->bscratch;
        }
    }
    return r;
}

static void *xs_snapshot(avm_store *s)
{
    /* Pipelined: a transaction reads the latest state, staged commits included,
     * and validation at its commit makes it serializable (see manager.h). An LMDB
     * read view would not hold the round's staged commits. */
    if (((struct xstore *)s)->e->m->pipelined)
        return NULL;
    avm_store *b = base_of(s);
    return b->ops->snapshot(b);
}

static void xs_snapshot_release(avm_store *s, void *snap)
{
    avm_store *b = base_of(s);
    b->ops->snapshot_release(b, snap);
}

static int xs_ids(avm_store *s, avm_val *out)
{
    avm_store *b = base_of(s);
    return b->ops->ids(b, out);
}

static const avm_purefn *xs_pure_get(avm_store *s, avm_val name)
{
    avm_store *b = base_of(s);
    return b->ops->pure_get(b, name);
}

/* A registration is recorded with who made it: the principal that started the
 * execution ("anonymous" when it has none), the execution and this machine. */
static int xs_pure_put(avm_store *s, const avm_purefn *fn)
{
    avm_store *b = base_of(s);
    mx *e = ((struct xstore *)s)->e;
    const char *by = e->x != NULL ? avm_exec_principal(e->x) : NULL;
    avm_purefn f = *fn;
    int rv = avm_cstr(AVM_STR, by != NULL ? by : "anonymous", &f.by);
    if (rv == 0 && (rv = avm_cstr(AVM_STR, e->id, &f.exec)) != 0)
        avm_val_release(f.by);
    if (rv != 0)
        return rv;
    f.machine = e->m->node->plat.node;
    rv = b->ops->pure_put(b, &f);
    avm_val_release(f.by);
    avm_val_release(f.exec);
    return rv;
}

static uint64_t xs_next_seq(avm_store *s)
{
    avm_store *b = base_of(s);
    return b->ops->next_seq(b);
}

static const char *xs_last_error(avm_store *s)
{
    avm_mgr *m = ((struct xstore *)s)->e->m;
    if (m->clerr[0] != '\0')
        return m->clerr;
    avm_store *b = base_of(s);
    return b->ops->last_error ? b->ops->last_error(b) : NULL;
}

static void batch_add(avm_mgr *m, mx *e, uint8_t kind);
static void acks_drop(mx *e, size_t n);
static void fail_stop(avm_mgr *m, const char *what, int rv);

/* Pipelined: validates and applies ws at once into the round's staged LMDB
 * transaction, with the messages this execution consumed when ws carries its
 * checkpoint. The outcome is final; it becomes durable when the round commits. */
static int stage(avm_mgr *m, mx *e, const avm_writeset *ws, bool *committed)
{
    size_t na = ws->ckpt_id != NULL ? e->nacks : 0;
    int rv = avm_lmdb_stage(m->db, ws, e->acks, na, committed);
    if (rv == 0 && *committed)
        acks_drop(e, na);
    else if (rv != 0 && avm_lmdb_stage_broken(m->db))
        fail_stop(m, "staging a commit", rv);
    return rv;
}

/* An outermost commit joins the round's group commit; the execution waits for
 * its outcome. Immediate effects (outside transactions) apply at once. */
static bool remote_ws(avm_mgr *m, const avm_writeset *ws);
static void pin_moves(avm_mgr *m, const avm_writeset *ws);
static void forget_written(avm_mgr *m, const avm_writeset *ws);
static void note_ws(avm_mgr *m, const avm_writeset *ws);
static void note_seen(avm_mgr *m, mx *e, const avm_writeset *ws);

static int write_ahead(avm_mgr *m, mx *e, const avm_writeset *ws);
static void enqueue(avm_mgr *m, mx *e);

static int xs_apply(avm_store *s, const avm_writeset *ws, bool *committed)
{
    mx *e = ((struct xstore *)s)->e;
    avm_mgr *m = e->m;
    m->clerr[0] = '\0';
    if (m->cl != NULL && remote_ws(m, ws)) {
        /* Objects of another machine: their machine decides. */
        e->fwd_seq = ++m->fwd_next;
        if (ws->ckpt_id != NULL && ws->bundle.kind != AVM_STR)
            return write_ahead(m, e, ws);
        avm_val_release(m->clmach);
        m->clmach = avm_nil();
        int rv = m->cl->forward(m->cl->arg, e->id, e->fwd_seq, ws, &m->clmach, m->clerr,
                                sizeof(m->clerr));
        if (rv != 0)
            return rv;
        pin_moves(m, ws);
        forget_written(m, ws);
        return AVM_EPENDING;
    }
    if (m->pipelined) {
        int rv = stage(m, e, ws, committed);
        if (rv == 0 && *committed) {
            note_ws(m, ws);
            note_seen(m, e, ws);
        }
        if (rv == 0 && ws->deferrable) {
            m->c.commits += *committed;
            m->c.conflicts += !*committed;
            m->c.ckpt_bytes += ws->ckpt_len;
        }
        return rv;
    }
    if (!ws->deferrable || e->batch != B_NONE ||
        !GROW(m->batch, m->nbatch, m->capbatch)) {
        int rv = m->base->ops->apply(m->base, ws, committed);
        if (rv == 0 && *committed) {
            note_ws(m, ws);
            note_seen(m, e, ws);
        }
        return rv;
    }
    e->ws = *ws;
    e->ck.len = 0;
    if (ws->ckpt_len > 0) {
        /* The checkpoint's bytes live only for the call; the rest of the write set
         * points into the execution, which waits unchanged. */
        avm_buf_put(&e->ck, ws->ckpt_state, ws->ckpt_len);
        if (e->ck.err) {
            e->ck.err = 0;
            return m->base->ops->apply(m->base, ws, committed);
        }
        e->ws.ckpt_state = (const uint8_t *)e->ck.data;
    }
    batch_add(m, e, B_COMMIT);
    return AVM_EPENDING;
}

/* Exactly once for commits decided elsewhere. Their outcome comes back after the
 * group (or the two-phase commit, or the other machine) applied them, and the
 * execution's next checkpoint comes later still: a crash in between must not make
 * the resumed execution commit again as a new commit. So before the write set goes
 * out, a checkpoint of the execution at this commitTx, not decided, is made durable
 * (in the round's group commit, B_FWD), and the write set goes out named by a key
 * stable over restarts (avm_exec_checkpoint_commit). A restarted node resumes the
 * execution at the commitTx, which hands over the same write set under the same
 * key: the group's deduplication answers it with the first outcome. */
static int write_ahead(avm_mgr *m, mx *e, const avm_writeset *ws)
{
    if (e->x == NULL || e->batch != B_NONE || e->visitor)
        return AVM_ESTATE;
    if (!GROW(m->batch, m->nbatch, m->capbatch))
        return AVM_ENOMEM;
    memset(&e->ws, 0, sizeof(e->ws));
    avm_buf_free(&e->ck);
    int rv = avm_exec_checkpoint_commit(e->x, &e->ck, &e->ws, e->fkey, sizeof(e->fkey));
    if (rv != 0) {
        avm_buf_free(&e->ck);
        return rv;
    }
    e->fws = *ws;
    /* What goes out does not carry the checkpoint: it stays here. */
    e->fws.ckpt_id = NULL;
    e->fws.ckpt_state = NULL;
    e->fws.ckpt_len = 0;
    e->fws.ckpt_trace = NULL;
    e->fws.ckpt_trace_len = 0;
    e->fws.ckpt_label = NULL;
    e->fws.commit_key = e->fkey;
    e->ckpt_status = AVM_RUN_YIELD;
    if (e->label)
        e->ws.ckpt_label = e->name;
    e->label = false;
    if (m->pipelined) {
        bool ok;
        rv = stage(m, e, &e->ws, &ok);
        if (rv != 0) {
            avm_buf_free(&e->ck);
            return rv;
        }
        avm_exec_checkpoint_saved(e->x, &e->ws);
        e->ws.ckpt_trace_at += e->ws.ckpt_trace_len;
        e->ws.ckpt_trace_len = 0;
        avm_buf_free(&e->ck);
    }
    batch_add(m, e, B_FWD);
    return AVM_EPENDING;
}

/* The write-ahead checkpoint of e's commit is durable (rv 0), or could not be made:
 * the write set goes out, or the commit fails with the error, as it would have
 * failed inside the store's apply (the cluster's refusal is the instruction's
 * error, not a store error to report). */
static void forward_now(avm_mgr *m, mx *e, int rv)
{
    if (rv == 0 && m->parking)
        return; /* it waits in its write-ahead checkpoint: the restart proposes it */
    avm_val_release(m->clmach);
    m->clmach = avm_nil();
    m->clerr[0] = '\0';
    if (rv == 0) {
        rv = m->cl->forward(m->cl->arg, e->id, e->fwd_seq, &e->fws, &m->clmach, m->clerr,
                            sizeof(m->clerr));
        if (rv == 0) {
            pin_moves(m, &e->fws);
            forget_written(m, &e->fws);
            return;
        }
    } else {
        const char *why = avm_lmdb_errmsg(m->db);
        snprintf(m->clerr, sizeof(m->clerr), "writing the checkpoint before a commit: %s",
                 why != NULL && *why ? why : avm_strerror(rv));
        emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), m->clerr);
    }
    e->fwd_seq = 0;
    avm_exec_commit_unsaved(e->x);
    avm_exec_commit_done(e->x, rv, false);
    e->outcome_ready = true;
    enqueue(m, e);
}

static avm_val xs_last_machine(avm_store *s)
{
    return ((struct xstore *)s)->e->m->clmach;
}

static const struct avm_store_ops xstore_ops = {
    .last_machine = xs_last_machine,
    .get = xs_get,
    .snapshot = xs_snapshot,
    .snapshot_release = xs_snapshot_release,
    .apply = xs_apply,
    .ids = xs_ids,
    .pure_get = xs_pure_get,
    .pure_put = xs_pure_put,
    .next_seq = xs_next_seq,
    .last_error = xs_last_error,
};

/* receive: the next message of self's mailbox; remembered until the execution's
 * next durable checkpoint deletes it from the store. */
static int xs_mailbox_pop(void *data, avm_val self, avm_val *out, avm_val *from,
                          uint64_t *stamp)
{
    mx *e = data;
    mbox *b = box_get(e->m, self, false);
    if (b == NULL || b->n == 0)
        return 0;
    if (!GROW(e->acks, e->nacks, e->capacks))
        return -AVM_ENOMEM;
    msg *g = &b->q[b->head];
    e->acks[e->nacks].oid = self;
    avm_val_retain(self);
    e->acks[e->nacks++].seq = g->seq;
    *out = g->value;
    *from = g->from;
    *stamp = g->stamp;
    b->head++;
    if (--b->n == 0)
        b->head = 0;
    return 1;
}

static void init_platform(avm_mgr *m, mx *e)
{
    e->m = m;
    e->st.base.ops = &xstore_ops;
    e->st.e = e;
    e->plat = m->node->plat;
    e->plat.store = &e->st.base;
    /* Reachability and behaviours answer for the node: keep the node's data for
     * them; the mailbox needs the execution. The node's callbacks take the
     * embedded node as data, so they are wrapped. */
    e->plat.data = e;
}

/* executeSolver: the node's. */
static int x_solve(void *data, avm_val problem, avm_val *model, avm_buf *why)
{
    mx *e = data;
    const avm_platform *p = &e->m->node->plat;
    return p->solve(p->data, problem, model, why);
}

static bool x_reach_machine(void *data, avm_val mach)
{
    mx *e = data;
    if (e->m->cl != NULL)
        return e->m->cl->reachable_machine(e->m->cl->arg, mach);
    const avm_platform *p = &e->m->node->plat;
    return p->reachable_machine ? p->reachable_machine(p->data, mach) : false;
}

static bool x_reach_ctrl(void *data, avm_val c)
{
    mx *e = data;
    if (e->m->cl != NULL)
        return e->m->cl->reachable_controller(e->m->cl->arg, c);
    const avm_platform *p = &e->m->node->plat;
    return p->reachable_controller ? p->reachable_controller(p->data, c) : false;
}

static void x_bundle_abort(void *data, avm_val bundle)
{
    mx *e = data;
    if (bundle.kind == AVM_STR)
        e->m->cl->bundle_abort(e->m->cl->arg, bundle.u.s->data, e->id);
}

static int x_resolve(void *data, avm_val name, avm_behavior *out)
{
    mx *e = data;
    const avm_platform *p = &e->m->node->plat;
    return p->resolve_behavior ? p->resolve_behavior(p->data, name, out) : AVM_ENOTFOUND;
}

static int x_prepare(void *data, avm_val oid);

static avm_module *x_module_lookup(void *data, const uint8_t *p, size_t n)
{
    avm_mgr *m = ((mx *)data)->m;
    uint32_t h = avm_hash_bytes(p, n);
    for (modent *e = m->mods[h % MODCACHE_BUCKETS]; e != NULL; e = e->next)
        if (e->hash == h && e->n == n && memcmp(e->bytes, p, n) == 0)
            return e->m;
    return NULL;
}

static void modcache_clear(avm_mgr *m)
{
    for (size_t b = 0; b < MODCACHE_BUCKETS; b++) {
        for (modent *e = m->mods[b], *nx; e != NULL; e = nx) {
            nx = e->next;
            avm_module_release(e->m);
            free(e->bytes);
            free(e);
        }
        m->mods[b] = NULL;
    }
    m->nmods = 0;
}

static void x_module_keep(void *data, const uint8_t *p, size_t n, avm_module *mod)
{
    avm_mgr *m = ((mx *)data)->m;
    if (m->nmods >= MODCACHE_MAX)
        modcache_clear(m); /* a bound, not a policy: the working set comes back */
    modent *e = malloc(sizeof(*e));
    uint8_t *b = malloc(n ? n : 1);
    if (e == NULL || b == NULL) {
        free(e);
        free(b);
        return;
    }
    memcpy(b, p, n);
    avm_module_retain(mod);
    *e = (modent){b, n, avm_hash_bytes(p, n), mod, NULL};
    e->next = m->mods[e->hash % MODCACHE_BUCKETS];
    m->mods[e->hash % MODCACHE_BUCKETS] = e;
    m->nmods++;
}

static int x_freeze(void *data, avm_val oid);

static avm_val x_place(void *data)
{
    mx *e = data;
    return e->m->cl->place(e->m->cl->arg);
}

static mx *mx_new(avm_mgr *m, const char *id, const char *name)
{
    mx *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    snprintf(e->id, sizeof(e->id), "%s", id);
    e->name = strdup(name ? name : "");
    if (e->name == NULL) {
        free(e);
        return NULL;
    }
    avm_buf_init(&e->ck);
    init_platform(m, e);
    e->plat.reachable_machine = x_reach_machine;
    e->plat.reachable_controller = x_reach_ctrl;
    e->plat.bundle_abort =
        m->cl != NULL && m->cl->bundle_abort != NULL ? x_bundle_abort : NULL;
    e->plat.resolve_behavior = m->node->plat.resolve_behavior ? x_resolve : NULL;
    e->plat.mailbox_pop = xs_mailbox_pop;
    e->plat.solve = m->node->plat.solve != NULL ? x_solve : NULL;
    /* A bundle's home settles its members' choices together. */
    e->plat.settles_bundles = m->cl != NULL && m->cl->bundle_abort != NULL;
    if (m->cl != NULL) {
        e->plat.prepare = x_prepare;
        e->plat.roam = true;
        e->plat.place = m->cl->place != NULL ? x_place : NULL;
        e->plat.freeze = x_freeze;
        e->plat.module_lookup = x_module_lookup;
        e->plat.module_keep = x_module_keep;
    }
    return e;
}

static void acks_drop(mx *e, size_t n)
{
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        avm_val_release(e->acks[i].oid);
    memmove(e->acks, e->acks + n, (e->nacks - n) * sizeof(*e->acks));
    e->nacks -= n;
}

static void mx_free(mx *e)
{
    if (e->x != NULL)
        avm_exec_free(e->x);
    acks_drop(e, e->nacks);
    free(e->acks);
    avm_buf_free(&e->ck);
    avm_val_release(e->result);
    avm_val_release(e->blocked_on);
    avm_val_release(e->away);
    avm_val_release(e->fetch_on);
    avm_val_release(e->froze);
    avm_val_release(e->bview);
    for (size_t i = 0; i < e->nseen; i++)
        avm_val_release(e->seen[i].oid);
    free(e->error);
    free(e->by);
    free(e->name);
    free(e);
}

/* --- Queues --------------------------------------------------------------- */

static void enqueue(avm_mgr *m, mx *e)
{
    if (e->queued || e->batch != B_NONE || e->state != AVM_XS_RUNNING)
        return;
    e->queued = true;
    e->rnext = NULL;
    if (m->rtail != NULL)
        m->rtail->rnext = e;
    else
        m->rhead = e;
    m->rtail = e;
    m->nrun++;
}

static mx *dequeue(avm_mgr *m)
{
    mx *e = m->rhead;
    if (e == NULL)
        return NULL;
    m->rhead = e->rnext;
    if (m->rhead == NULL)
        m->rtail = NULL;
    e->queued = false;
    m->nrun--;
    return e;
}

static void unqueue(avm_mgr *m, mx *e)
{
    if (!e->queued)
        return;
    mx **p = &m->rhead, *prev = NULL;
    while (*p != e) {
        prev = *p;
        p = &(*p)->rnext;
    }
    *p = e->rnext;
    if (m->rtail == e)
        m->rtail = prev;
    e->queued = false;
    m->nrun--;
}

static void unfetch(avm_mgr *m, mx *e)
{
    if (e->fetch_on.kind == AVM_NIL)
        return;
    for (size_t i = 0; i < m->nfwait; i++) {
        if (m->fwait[i] == e) {
            m->fwait[i] = m->fwait[--m->nfwait];
            break;
        }
    }
    avm_val_release(e->fetch_on);
    e->fetch_on = avm_nil();
}

static void unwait(avm_mgr *m, mx *e)
{
    unfetch(m, e);
    if (!e->waiting_msg)
        return;
    e->waiting_msg = false;
    mbox *b = box_get(m, e->blocked_on, false);
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->nw; i++) {
        if (b->waiters[i] == e) {
            memmove(b->waiters + i, b->waiters + i + 1, (b->nw - i - 1) * sizeof(mx *));
            b->nw--;
            break;
        }
    }
}

static void batch_add(avm_mgr *m, mx *e, uint8_t kind)
{
    /* The caller made room (GROW) before. */
    e->batch = kind;
    m->batch[m->nbatch++] = e;
}

/* A checkpoint of e into the batch, recorded with status st. */
static int checkpoint(avm_mgr *m, mx *e, uint8_t st)
{
    if (e->x == NULL || e->batch != B_NONE)
        return AVM_ESTATE;
    if (!GROW(m->batch, m->nbatch, m->capbatch))
        return AVM_ENOMEM;
    memset(&e->ws, 0, sizeof(e->ws));
    avm_buf_free(&e->ck);
    int rv = avm_exec_checkpoint(e->x, &e->ck, &e->ws);
    if (rv != 0)
        return rv;
    e->ws.ckpt_status = st;
    e->ckpt_status = st;
    if (e->label)
        e->ws.ckpt_label = e->name;
    e->label = false;
    if (m->pipelined) {
        bool ok;
        rv = stage(m, e, &e->ws, &ok);
        if (rv != 0)
            return rv;
        /* Staged: the log up to here goes with the round's commit. */
        avm_exec_checkpoint_saved(e->x, &e->ws);
        e->ws.ckpt_trace_at += e->ws.ckpt_trace_len;
        e->ws.ckpt_trace_len = 0;
        avm_buf_free(&e->ck);
    }
    batch_add(m, e, B_CKPT);
    return 0;
}

static void summarize(mx *e)
{
    avm_exec *x = e->x;
    e->summarized = true;
    e->steps = avm_exec_steps(x);
    e->events = avm_exec_event_counter(x);
    e->lamport = avm_exec_lamport(x);
    if (e->by == NULL && avm_exec_principal(x) != NULL)
        e->by = strdup(avm_exec_principal(x)); /* NULL when out of memory: shown "-" */
    if (avm_exec_status(x) == AVM_RUN_DONE) {
        avm_val_release(e->result);
        e->result = avm_exec_result(x);
        avm_val_retain(e->result);
    } else if (avm_exec_status(x) == AVM_RUN_FAILED && e->error == NULL) {
        avm_buf b;
        avm_buf_init(&b);
        avm_error_print(&b, avm_exec_error(x));
        e->error = strdup(avm_buf_cstr(&b));
        avm_buf_free(&b);
    }
}

static void terminate(avm_mgr *m, mx *e, avm_xoutcome o)
{
    unqueue(m, e);
    unwait(m, e);
    e->state = AVM_XS_TERMINATED;
    e->outcome = o;
    avm_exec_log_runtime(e->x, "ExecutionTerminated", e->id,
                         avm_nil()); /* best effort: the outcome is in the record */
    summarize(e);
    if (o == AVM_XO_KILLED && e->error == NULL)
        e->error = strdup("killed by request");
    uint8_t st = o == AVM_XO_KILLED ? AVM_XREC_KILLED : (uint8_t)avm_exec_status(e->x);
    int rv = checkpoint(m, e, st);
    if (rv != 0) {
        emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), avm_strerror(rv));
        emit(m, AVM_MEV_TERMINATED, e->id, avm_nil(), avm_xoutcome_name(o));
    }
}

/* Suspends e now (it is between slices, not in the batch). */
static void do_suspend(avm_mgr *m, mx *e)
{
    unqueue(m, e);
    unwait(m, e);
    e->want_suspend = false;
    e->state = AVM_XS_SUSPENDED;
    avm_exec_log_runtime(e->x, "ExecutionSuspended", e->id, avm_nil());
    int rv = checkpoint(m, e, AVM_XREC_SUSPENDED);
    if (rv != 0) {
        emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), avm_strerror(rv));
        emit(m, AVM_MEV_SUSPENDED, e->id, avm_nil(), NULL);
    }
}

/* Applies what was asked of e while it could not act (running a slice, or
 * waiting for a commit). true when e must not run now. */
static bool pending_wishes(avm_mgr *m, mx *e)
{
    if (e->want_kill) {
        e->want_kill = false;
        terminate(m, e, AVM_XO_KILLED);
        return true;
    }
    if (e->want_suspend) {
        do_suspend(m, e);
        return true;
    }
    return false;
}

static void wait_message(avm_mgr *m, mx *e)
{
    avm_val on = avm_exec_blocked_on(e->x);
    mbox *b = box_get(m, on, true);
    if (b != NULL && b->n > 0) {
        enqueue(m, e); /* a message came while it ran */
        return;
    }
    if (b == NULL || !GROW(b->waiters, b->nw, b->capw)) {
        enqueue(m, e); /* no memory to park it: poll instead */
        return;
    }
    avm_val_release(e->blocked_on);
    e->blocked_on = on;
    avm_val_retain(on);
    b->waiters[b->nw++] = e;
    e->waiting_msg = true;
}

static void leave(avm_mgr *m, mx *e);

static void run_slice(avm_mgr *m, mx *e)
{
    /* A suspend or kill waits for the commit in flight, whose outcome is in no
     * state until its commitTx has run: then one instruction is enough (AVM
     * instructions, the only ones with effects, check the budget first). */
    bool wish = e->want_kill || e->want_suspend;
    if (wish && !e->outcome_ready) {
        pending_wishes(m, e);
        return;
    }
    avm_run_status st = avm_exec_run(e->x, wish ? 1 : m->slice);
    e->outcome_ready = false;
    m->c.slices++;
    uint64_t lt = avm_exec_lamport(e->x);
    if (lt > m->lamport)
        m->lamport = lt;
    if (e->visitor && (st == AVM_RUN_DONE || st == AVM_RUN_FAILED)) {
        leave(m, e); /* its owner records the end */
        return;
    }
    switch (st) {
    case AVM_RUN_DONE:
        terminate(m, e, AVM_XO_DONE);
        break;
    case AVM_RUN_FAILED:
        terminate(m, e, AVM_XO_FAILED);
        break;
    case AVM_RUN_MOVED:
        leave(m, e);
        break;
    case AVM_RUN_YIELD:
        if (!pending_wishes(m, e))
            enqueue(m, e);
        break;
    case AVM_RUN_BLOCKED:
        if (avm_exec_waiting(e->x) == AVM_WAIT_COMMIT)
            break; /* in the batch, or forwarded */
        if (avm_exec_waiting(e->x) == AVM_WAIT_FETCH) {
            /* Among the fetch waiters (x_prepare); a suspend or kill waits. */
            break;
        }
        if (!pending_wishes(m, e))
            wait_message(m, e);
        break;
    }
}

/* The round's group commit. */
static void fail_stop(avm_mgr *m, const char *what, int rv)
{
    if (m->failed)
        return;
    m->failed = true;
    const char *why = avm_lmdb_errmsg(m->db);
    snprintf(m->failure, sizeof(m->failure), "%s: %s", what,
             why != NULL && *why ? why : avm_strerror(rv));
    emit(m, AVM_MEV_STORE_ERROR, NULL, avm_nil(), m->failure);
}

/* Durable mode: validates and applies the handed-over write sets, in order, in one
 * LMDB transaction, each with the messages its execution consumed before it. */
static int apply_batch(avm_mgr *m, size_t n, bool *ok)
{
    const avm_writeset **ws = malloc(n * sizeof(*ws));
    const avm_lmdb_ack **acks = malloc(n * sizeof(*acks));
    size_t *nacks = malloc(n * sizeof(*nacks));
    int rv = AVM_ENOMEM;
    if (ws != NULL && acks != NULL && nacks != NULL) {
        for (size_t i = 0; i < n; i++) {
            mx *e = m->batch[i];
            ws[i] = &e->ws;
            m->c.ckpt_bytes += e->ws.ckpt_len;
            /* Messages consumed before this checkpoint leave their mailboxes with it. */
            e->acks_in_batch = e->ws.ckpt_id != NULL ? e->nacks : 0;
            acks[i] = e->acks;
            nacks[i] = e->acks_in_batch;
        }
        rv = avm_lmdb_apply_batch_ex(m->db, ws, acks, nacks, n, ok);
    }
    free(ws);
    free(acks);
    free(nacks);
    return rv;
}

static void run_afters(avm_mgr *m);
static void run_changed(avm_mgr *m);

/* The round's group commit, then the news of what it made durable. */
static void flush(avm_mgr *m)
{
    size_t n = m->nbatch;
    bool *ok = NULL; /* durable mode: which write sets committed */
    int rv;
    if (m->pipelined) {
        /* The round's staged transaction becomes durable; the checkpoints in it
         * (starts, suspends, ends) are then news. A failure leaves the node's
         * memory ahead of its disk: it must stop (fail-stop). */
        bool any = avm_lmdb_staged_any(m->db);
        rv = avm_lmdb_stage_commit(m->db);
        if (rv != 0) {
            fail_stop(m, "committing a round", rv);
            run_afters(m);
            return;
        }
        run_changed(m);
        run_afters(m);
        if (!any && n == 0)
            return;
    } else {
        /* Replicated controllers stage their logs and state machines in rounds
         * whatever the commit mode. */
        if (avm_lmdb_staged_any(m->db)) {
            rv = avm_lmdb_stage_commit(m->db);
            if (rv != 0) {
                fail_stop(m, "committing a round", rv);
                run_afters(m);
                return;
            }
            run_afters(m);
        }
        if (n == 0) {
            run_changed(m);
            return;
        }
        ok = calloc(n, sizeof(*ok));
        rv = ok != NULL ? apply_batch(m, n, ok) : AVM_ENOMEM;
        if (rv != 0) {
            const char *why = avm_lmdb_errmsg(m->db);
            emit(m, AVM_MEV_STORE_ERROR, NULL, avm_nil(),
                 why != NULL && *why ? why : avm_strerror(rv));
        }
    }
    m->c.batches++;
    m->nbatch = 0;
    for (size_t i = 0; i < n; i++) {
        mx *e = m->batch[i];
        uint8_t kind = e->batch;
        bool done = rv == 0 && (ok == NULL || ok[i]); /* pipelined: all staged */
        e->batch = B_NONE;
        if (done)
            acks_drop(e, e->acks_in_batch);
        e->acks_in_batch = 0;
        if (kind == B_FWD) {
            /* The write-ahead checkpoint of a commit decided elsewhere. */
            if (rv == 0 && !m->pipelined)
                avm_exec_checkpoint_saved(e->x, &e->ws);
            avm_buf_free(&e->ck);
            forward_now(m, e, rv != 0 ? rv : done ? 0 : AVM_EIO);
            continue;
        }
        if (kind == B_COMMIT) {
            if (done) {
                note_ws(m, &e->ws);
                note_seen(m, e, &e->ws);
            }
            m->c.commits += done;
            m->c.conflicts += rv == 0 && !done;
            avm_exec_commit_done(e->x, rv, done);
            e->outcome_ready = true;
            enqueue(m, e);
            continue;
        }
        /* A checkpoint: the log up to it is saved (pipelined: when staged). */
        if (rv == 0 && !m->pipelined)
            avm_exec_checkpoint_saved(e->x, &e->ws);
        avm_buf_free(&e->ck);
        if (e->state == AVM_XS_TERMINATED) {
            emit(m, AVM_MEV_TERMINATED, e->id, avm_nil(), avm_xoutcome_name(e->outcome));
            if (rv == 0) {
                /* Durable: the summary is enough; the store has the rest. */
                avm_exec_free(e->x);
                e->x = NULL;
            }
        } else if (e->state == AVM_XS_SUSPENDED) {
            emit(m, AVM_MEV_SUSPENDED, e->id, avm_nil(), NULL);
        } else if (e->ckpt_status == AVM_RUN_YIELD) {
            /* A start or a resume, now durable. */
            emit(m, e->want_resume ? AVM_MEV_RESUMED : AVM_MEV_STARTED, e->id, avm_nil(),
                 NULL);
            e->want_resume = false;
            enqueue(m, e);
        }
    }
    free(ok);
    if (!m->pipelined)
        run_changed(m);
}

/* --- Inputs --------------------------------------------------------------- */

static int post(avm_mgr *m, int type, mx *e)
{
    if (!GROW(m->in, m->nin, m->capin))
        return AVM_ENOMEM;
    m->in[m->nin++] = (inev){.type = type, .e = e, .oid = avm_nil()};
    return 0;
}

static int restore(avm_mgr *m, mx *e, char *errmsg, size_t errlen);

/* Away from this machine (or leaving, or waiting for a forwarded commit). */
static bool roaming(const mx *e)
{
    return e->moving || e->away.kind != AVM_NIL ||
           (e->x != NULL && avm_exec_waiting(e->x) == AVM_WAIT_COMMIT);
}

static void apply_input(avm_mgr *m, inev *in)
{
    mx *e = in->e;
    switch (in->type) {
    case EV_START:
        avm_exec_log_runtime(e->x, "ExecutionStarted", e->id, avm_nil());
        e->label = true; /* the start checkpoint keeps the name */
        if (checkpoint(m, e, AVM_RUN_YIELD) != 0) {
            /* It runs, without its start being durable. */
            emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(),
                 "start checkpoint not written");
            emit(m, AVM_MEV_STARTED, e->id, avm_nil(), NULL);
            enqueue(m, e);
        }
        break;
    case EV_SUSPEND:
        if (e->state != AVM_XS_RUNNING)
            break;
        if (e->batch != B_NONE || e->outcome_ready || roaming(e))
            e->want_suspend = true; /* after its commit, or when it is back */
        else
            do_suspend(m, e);
        break;
    case EV_RESUME:
        if (e->state == AVM_XS_RUNNING && e->want_suspend) {
            e->want_suspend = false;
            break;
        }
        if (e->state != AVM_XS_SUSPENDED)
            break;
        if (e->x == NULL) {
            char err[512];
            if (restore(m, e, err, sizeof(err)) != 0) {
                emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), err);
                break;
            }
        }
        e->state = AVM_XS_RUNNING;
        e->want_resume = true;
        avm_exec_log_runtime(e->x, "ExecutionResumed", e->id, avm_nil());
        if (checkpoint(m, e, AVM_RUN_YIELD) != 0) {
            e->want_resume = false;
            emit(m, AVM_MEV_RESUMED, e->id, avm_nil(), NULL);
            enqueue(m, e);
        }
        break;
    case EV_KILL:
        if (e->state == AVM_XS_TERMINATED)
            break;
        if (e->state == AVM_XS_SUSPENDED && e->x == NULL) {
            char err[512];
            if (restore(m, e, err, sizeof(err)) != 0) {
                emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), err);
                break;
            }
        }
        if (e->batch != B_NONE || e->outcome_ready || roaming(e))
            e->want_kill = true;
        else
            terminate(m, e, AVM_XO_KILLED);
        break;
    case EV_MESSAGE: {
        mbox *b = box_get(m, in->oid, true);
        if (b == NULL || !GROW(b->q, b->head + b->n, b->cap)) {
            /* Durable already: the next restart delivers it. */
            emit(m, AVM_MEV_STORE_ERROR, NULL, in->oid, "out of memory for a mailbox");
            avm_val_release(in->m.from);
            avm_val_release(in->m.value);
            break;
        }
        b->q[b->head + b->n++] = in->m;
        m->c.messages++;
        emit(m, AVM_MEV_MESSAGE, NULL, in->oid, NULL);
        /* Every waiter tries; those that find it taken wait again. */
        while (b->nw > 0) {
            mx *w = b->waiters[--b->nw];
            w->waiting_msg = false;
            enqueue(m, w);
        }
        break;
    }
    }
    avm_val_release(in->oid);
}

static void ship_moving(avm_mgr *m);

#define CATCHUP_TICKS 20

/* Whether a replica here is older than a version e's transaction read or its own
 * writes made elsewhere. */
static bool behind(avm_mgr *m, mx *e)
{
    avm_exec_txinfo ti;
    if (e->x != NULL && avm_exec_tx(e->x, &ti)) {
        for (size_t i = 0; i < ti.nreads; i++) {
            const avm_objrec *r = m->base->ops->get(m->base, NULL, ti.reads[i].oid);
            if (r != NULL && ti.reads[i].version != AVM_VERSION_EXISTS &&
                r->version < ti.reads[i].version)
                return true;
        }
    }
    for (size_t i = 0; i < e->nseen; i++) {
        const avm_objrec *r = m->base->ops->get(m->base, NULL, e->seen[i].oid);
        if (r != NULL && r->version < e->seen[i].version)
            return true;
    }
    return false;
}

/* Queues an execution that arrived, or lets it wait for the replicas here. */
static void enqueue_arrived(avm_mgr *m, mx *e)
{
    if (m->cl != NULL && m->cl->replicated != NULL && behind(m, e)) {
        e->catchup = 1;
        m->ncatchup++;
        return;
    }
    enqueue(m, e);
}

static void catchup_check(avm_mgr *m)
{
    for (size_t i = 0; i < m->nall && m->ncatchup > 0; i++) {
        mx *e = m->all[i];
        if (e->catchup == 0)
            continue;
        if (e->catchup > CATCHUP_TICKS || e->x == NULL || !behind(m, e)) {
            e->catchup = 0;
            m->ncatchup--;
            if (e->x != NULL && !pending_wishes(m, e))
                enqueue(m, e);
        }
    }
}

bool avm_mgr_catching_up(const avm_mgr *m)
{
    return m->ncatchup > 0;
}

void avm_mgr_catchup_tick(avm_mgr *m)
{
    for (size_t i = 0; i < m->nall && m->ncatchup > 0; i++)
        if (m->all[i]->catchup != 0)
            m->all[i]->catchup++;
}

/* Whether a waiting execution can go on (caught up, or waited long enough). */
static bool catchup_due(avm_mgr *m)
{
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        if (e->catchup != 0 && (e->catchup > CATCHUP_TICKS || !behind(m, e)))
            return true;
    }
    return false;
}

bool avm_mgr_round(avm_mgr *m)
{
    if (m->failed)
        return false;
    m->c.rounds++;
    if (m->ncatchup > 0)
        catchup_check(m);
    /* Inputs in arrival order; an input may post nothing new. */
    size_t nin = m->nin;
    for (size_t i = 0; i < nin; i++)
        apply_input(m, &m->in[i]);
    if (nin > 0)
        memmove(m->in, m->in + nin, (m->nin - nin) * sizeof(*m->in));
    m->nin -= nin;
    /* One slice each for what is runnable now; what becomes runnable during the
     * round runs in the next one. */
    size_t n = m->nrun;
    for (size_t i = 0; i < n; i++) {
        mx *e = dequeue(m);
        if (e == NULL)
            break;
        run_slice(m, e);
        if (m->nbatch >= m->batch_max ||
            (m->pipelined && avm_lmdb_staged_bytes(m->db) >= m->stage_max))
            flush(m);
        if (m->failed)
            return false;
    }
    flush(m);
    if (!m->failed)
        ship_moving(m);
    return !m->failed && avm_mgr_busy(m);
}

bool avm_mgr_busy(const avm_mgr *m)
{
    return !m->failed && (m->nrun > 0 || m->nin > 0 || m->nbatch > 0 || m->nmoving > 0 ||
                          m->nafters > 0 || m->ndirty > 0 ||
                          (m->ncatchup > 0 && catchup_due((avm_mgr *)m)));
}

const char *avm_mgr_failure(const avm_mgr *m)
{
    return m->failed ? m->failure : NULL;
}

int avm_mgr_start(avm_mgr *m, avm_module *mod, int fn, const avm_exec_config *cfg,
                  const char *name, char *id, size_t idlen, char *errmsg, size_t errlen)
{
    return avm_mgr_start_by(m, mod, fn, cfg, name, NULL, id, idlen, errmsg, errlen);
}

int avm_mgr_start_by(avm_mgr *m, avm_module *mod, int fn, const avm_exec_config *cfg,
                     const char *name, const char *principal, char *id, size_t idlen,
                     char *errmsg, size_t errlen)
{
    char idb[48];
    const char *mach = m->node->plat.node.u.s->data;
    snprintf(idb, sizeof(idb), "%.30s/x%llu", mach,
             (unsigned long long)m->base->ops->next_seq(m->base));
    mx *e = mx_new(m, idb, name);
    if (e == NULL) {
        fmt(errmsg, errlen, "out of memory");
        return AVM_ENOMEM;
    }
    avm_exec_config c = *cfg;
    c.keep_trace = true;
    c.msc = true;
    e->x = avm_exec_new(&e->plat, &c);
    avm_val self = avm_nil(), input = avm_nil();
    int rv = e->x == NULL ? AVM_ENOMEM : avm_embedded_toplevel(&self, &input);
    /* Before start: the start registers the module's pure functions, as this
     * principal. */
    if (rv == 0 && principal != NULL && principal[0] != '\0')
        rv = avm_exec_set_principal(e->x, principal);
    if (rv == 0)
        rv = avm_exec_start(e->x, mod, fn, self, input, errmsg, errlen);
    avm_val_release(self);
    avm_val_release(input);
    if (rv == 0)
        rv = avm_exec_set_checkpoint(e->x, e->id);
    /* Room in the input queue first: add_exec cannot be undone. */
    if (rv == 0 && !GROW(m->in, m->nin, m->capin))
        rv = AVM_ENOMEM;
    if (rv == 0)
        rv = add_exec(m, e);
    if (rv != 0) {
        if (rv == AVM_ENOMEM)
            fmt(errmsg, errlen, "out of memory");
        mx_free(e);
        return rv;
    }
    post(m, EV_START, e);
    snprintf(id, idlen, "%s", e->id);
    return 0;
}

static mx *find_or(avm_mgr *m, const char *id, char *errmsg, size_t errlen)
{
    mx *e = find(m, id);
    if (e == NULL)
        fmt(errmsg, errlen, "no execution %s on this node", id);
    return e;
}

/* Lifecycle requests go to an execution's owner. */
static mx *find_owned(avm_mgr *m, const char *id, int *rv, char *errmsg, size_t errlen)
{
    mx *e = find_or(m, id, errmsg, errlen);
    *rv = AVM_ENOTFOUND;
    if (e != NULL && e->visitor) {
        fmt(errmsg, errlen,
            "execution %s is visiting this machine; its owner (the machine its id "
            "names) manages it",
            id);
        *rv = AVM_ESTATE;
        return NULL;
    }
    return e;
}

int avm_mgr_suspend(avm_mgr *m, const char *id, char *errmsg, size_t errlen)
{
    int rv;
    mx *e = find_owned(m, id, &rv, errmsg, errlen);
    if (e == NULL)
        return rv;
    if (e->state != AVM_XS_RUNNING) {
        fmt(errmsg, errlen, "execution %s is %s, not running", id,
            avm_xstate_name(e->state));
        return AVM_ESTATE;
    }
    return post(m, EV_SUSPEND, e);
}

int avm_mgr_resume(avm_mgr *m, const char *id, char *errmsg, size_t errlen)
{
    int rv;
    mx *e = find_owned(m, id, &rv, errmsg, errlen);
    if (e == NULL)
        return rv;
    if (e->state != AVM_XS_SUSPENDED &&
        !(e->state == AVM_XS_RUNNING && e->want_suspend)) {
        fmt(errmsg, errlen, "execution %s is %s, not suspended", id,
            avm_xstate_name(e->state));
        return AVM_ESTATE;
    }
    return post(m, EV_RESUME, e);
}

int avm_mgr_kill(avm_mgr *m, const char *id, char *errmsg, size_t errlen)
{
    int rv;
    mx *e = find_owned(m, id, &rv, errmsg, errlen);
    if (e == NULL)
        return rv;
    if (e->state == AVM_XS_TERMINATED) {
        fmt(errmsg, errlen, "execution %s has already terminated (%s)", id,
            avm_xoutcome_name(e->outcome));
        return AVM_ESTATE;
    }
    return post(m, EV_KILL, e);
}

/* A message's durable form: [from, stamp, value]. */
static int msg_encode(avm_buf *b, avm_val from, uint64_t stamp, avm_val value)
{
    avm_mp_put_array(b, 3);
    int rv = avm_val_encode(b, from);
    avm_mp_put_uint(b, stamp);
    if (rv == 0)
        rv = avm_val_encode(b, value);
    return rv != 0 ? rv : b->err;
}

static int msg_decode(const uint8_t *p, size_t n, msg *out)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, AVM_DECODE_DEFAULT_MAX);
    uint32_t len;
    out->from = out->value = avm_nil();
    int rv = avm_mp_get_array(&r, &len);
    if (rv == 0 && len != 3)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_val(&r, &out->from);
    if (rv == 0)
        rv = avm_mp_get_uint(&r, &out->stamp);
    if (rv == 0)
        rv = avm_mp_get_val(&r, &out->value);
    if (rv == 0 && r.p != r.end)
        rv = AVM_EMALFORMED;
    if (rv != 0) {
        avm_val_release(out->from);
        avm_val_release(out->value);
    }
    return rv;
}

int avm_mgr_send(avm_mgr *m, avm_val oid, avm_val sender, avm_val value, uint64_t *seq,
                 uint64_t *stamp, char *errmsg, size_t errlen)
{
    if (oid.kind != AVM_OBJID) {
        fmt(errmsg, errlen, "a message goes to an object id, not a %s",
            avm_kind_name(oid.kind));
        return AVM_EINVAL;
    }
    if (m->base->ops->get(m->base, NULL, oid) == NULL && !avm_mgr_placed_here(m, oid)) {
        avm_buf b;
        avm_buf_init(&b);
        avm_val_print(&b, oid);
        fmt(errmsg, errlen, "no object %s on this node", avm_buf_cstr(&b));
        avm_buf_free(&b);
        return AVM_ENOTFOUND;
    }
    if (!GROW(m->in, m->nin, m->capin)) {
        fmt(errmsg, errlen, "out of memory");
        return AVM_ENOMEM;
    }
    uint64_t t = m->lamport + 1;
    avm_buf b;
    avm_buf_init(&b);
    int rv = msg_encode(&b, sender, t, value);
    if (rv == 0 && avm_lmdb_staged_any(m->db)) {
        /* Replicated controllers stage between rounds: a mailbox write needs the
         * round committed first (what waited for it runs at the next round). */
        rv = avm_lmdb_stage_commit(m->db);
        if (rv != 0)
            fail_stop(m, "committing a round", rv);
    }
    if (rv == 0)
        rv = avm_lmdb_mbox_put(m->db, oid, (const uint8_t *)b.data, b.len, seq);
    avm_buf_free(&b);
    if (rv != 0) {
        fmt(errmsg, errlen, "%s",
            rv == AVM_ENOMEM ? "out of memory" : avm_lmdb_errmsg(m->db));
        return rv;
    }
    m->lamport = t;
    *stamp = t;
    avm_val_retain(oid);
    avm_val_retain(sender);
    avm_val_retain(value);
    m->in[m->nin++] =
        (inev){.type = EV_MESSAGE,
               .oid = oid,
               .m = {.seq = *seq, .stamp = t, .from = sender, .value = value}};
    return 0;
}

/* --- Restoring from the store --------------------------------------------- */

/* Decodes e's latest checkpoint into e->x. */
static int restore(avm_mgr *m, mx *e, char *errmsg, size_t errlen)
{
    uint8_t st;
    avm_buf state, log;
    avm_buf_init(&state);
    avm_buf_init(&log);
    int rv = avm_lmdb_exec_get(m->db, e->id, &st, &state);
    if (rv == 0)
        rv = avm_lmdb_trace_log(m->db, e->id, &log);
    if (rv != 0) {
        fmt(errmsg, errlen, "execution %s: %s", e->id,
            rv == AVM_ENOTFOUND ? "no record" : avm_lmdb_errmsg(m->db));
    } else {
        char err[400] = "";
        rv = avm_exec_decode_ex((const uint8_t *)state.data, state.len,
                                (const uint8_t *)log.data, log.len, &e->plat, &e->x, err,
                                sizeof(err));
        if (rv != 0)
            fmt(errmsg, errlen, "execution %s cannot be restored: %s", e->id, err);
        else
            rv = avm_exec_set_checkpoint(e->x, e->id);
    }
    avm_buf_free(&state);
    avm_buf_free(&log);
    return rv;
}

typedef struct load_ctx {
    avm_mgr *m;
    int rv;
} load_ctx;

static void load_one(void *arg, const char *id, uint8_t status)
{
    load_ctx *lc = arg;
    avm_mgr *m = lc->m;
    if (lc->rv != 0)
        return;
    char name[256];
    avm_lmdb_exec_label(m->db, id, name, sizeof(name)); /* "" when it has none */
    mx *e = mx_new(m, id, name);
    if (e == NULL || add_exec(m, e) != 0) {
        if (e != NULL)
            mx_free(e);
        lc->rv = AVM_ENOMEM;
        return;
    }
    switch (status) {
    case AVM_RUN_DONE:
        e->state = AVM_XS_TERMINATED;
        e->outcome = AVM_XO_DONE;
        break;
    case AVM_RUN_FAILED:
        e->state = AVM_XS_TERMINATED;
        e->outcome = AVM_XO_FAILED;
        break;
    case AVM_XREC_KILLED:
        e->state = AVM_XS_TERMINATED;
        e->outcome = AVM_XO_KILLED;
        break;
    case AVM_XREC_SUSPENDED:
        e->state = AVM_XS_SUSPENDED;
        break;
    default: /* interrupted or blocked: resumed below */
        e->state = m->cfg.resume_on_open ? AVM_XS_RUNNING : AVM_XS_SUSPENDED;
        break;
    }
}

/* Start order after a restart: by the number in the id ("node1/x12"), which the
 * store handed out in order. */
static uint64_t id_number(const char *id)
{
    const char *p = strrchr(id, 'x');
    return p ? strtoull(p + 1, NULL, 10) : 0;
}

static int by_number(const void *a, const void *b)
{
    uint64_t x = id_number((*(mx *const *)a)->id), y = id_number((*(mx *const *)b)->id);
    return x < y ? -1 : x > y;
}

static int load_box(void *arg, avm_val oid, uint64_t seq, const uint8_t *p, size_t n)
{
    avm_mgr *m = arg;
    msg g;
    if (msg_decode(p, n, &g) != 0) {
        emit(m, AVM_MEV_STORE_ERROR, NULL, oid, "a stored message does not decode; kept");
        return 0;
    }
    g.seq = seq;
    mbox *b = box_get(m, oid, true);
    if (b == NULL || !GROW(b->q, b->head + b->n, b->cap)) {
        avm_val_release(g.from);
        avm_val_release(g.value);
        return AVM_ENOMEM;
    }
    b->q[b->head + b->n++] = g;
    if (g.stamp > m->lamport)
        m->lamport = g.stamp;
    return 0;
}

int avm_mgr_open(const avm_mgr_config *cfg, avm_mgr **out, char *errmsg, size_t errlen)
{
    if (cfg->node == NULL || cfg->node->db == NULL) {
        fmt(errmsg, errlen, "the execution manager needs a durable node");
        return AVM_EINVAL;
    }
    avm_mgr *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return AVM_ENOMEM;
    m->cfg = *cfg;
    m->node = cfg->node;
    m->db = cfg->node->db;
    m->base = cfg->node->store;
    m->slice = cfg->slice ? cfg->slice : 20000;
    m->batch_max = cfg->batch_max ? cfg->batch_max : 4096;
    m->pipelined = cfg->commit_mode == AVM_COMMIT_PIPELINED;
    m->stage_max = cfg->stage_max ? cfg->stage_max : (size_t)8 << 20;
    m->cl = cfg->cluster;
    m->ncopies = 1024;
    m->copies = calloc(m->ncopies, sizeof(*m->copies));
    m->visit_seed = avm_hash_bytes(&m, sizeof(m)) ^ (uint64_t)time(NULL) << 20;
    m->nhash = 256;
    m->nboxes = 1024;
    m->hash = calloc(m->nhash, sizeof(*m->hash));
    m->boxes = calloc(m->nboxes, sizeof(*m->boxes));
    if (m->hash == NULL || m->boxes == NULL || m->copies == NULL) {
        avm_mgr_close(m);
        fmt(errmsg, errlen, "out of memory");
        return AVM_ENOMEM;
    }
    int rv = avm_lmdb_mbox_each(m->db, load_box, m);
    load_ctx lc = {.m = m};
    if (rv == 0)
        rv = avm_lmdb_exec_each(m->db, load_one, &lc);
    if (rv == 0)
        rv = lc.rv;
    if (rv != 0) {
        fmt(errmsg, errlen, "loading the node's executions and mailboxes: %s",
            rv == AVM_ENOMEM ? "out of memory" : avm_lmdb_errmsg(m->db));
        avm_mgr_close(m);
        return rv;
    }
    if (m->nall > 0)
        qsort(m->all, m->nall, sizeof(*m->all), by_number);
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        if (e->state != AVM_XS_RUNNING)
            continue;
        char err[512];
        if (restore(m, e, err, sizeof(err)) != 0) {
            e->state = AVM_XS_TERMINATED;
            e->outcome = AVM_XO_FAILED;
            e->error = strdup(err);
            emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), err);
            if (errmsg != NULL && errmsg[0] == '\0')
                fmt(errmsg, errlen, "%s", err);
            continue;
        }
        uint64_t lt = avm_exec_lamport(e->x);
        if (lt > m->lamport)
            m->lamport = lt;
        enqueue(m, e);
    }
    *out = m;
    return 0;
}

static void copy_free(rcopy *c);

void avm_mgr_close(avm_mgr *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nin; i++) {
        avm_val_release(m->in[i].oid);
        avm_val_release(m->in[i].m.from);
        avm_val_release(m->in[i].m.value);
    }
    for (size_t i = 0; i < m->nall; i++)
        mx_free(m->all[i]);
    for (size_t i = 0; m->boxes != NULL && i < m->nboxes; i++) {
        for (mbox *b = m->boxes[i], *nx; b != NULL; b = nx) {
            nx = b->next;
            for (size_t k = 0; k < b->n; k++) {
                avm_val_release(b->q[b->head + k].from);
                avm_val_release(b->q[b->head + k].value);
            }
            avm_val_release(b->oid);
            free(b->q);
            free(b->waiters);
            free(b);
        }
    }
    free(m->boxes);
    for (size_t i = 0; m->copies != NULL && i < m->ncopies; i++) {
        for (rcopy *c = m->copies[i], *nx; c != NULL; c = nx) {
            nx = c->next;
            copy_free(c);
        }
    }
    free(m->copies);
    free(m->afters); /* park_all ran them; after a failure nothing may be answered */
    for (size_t i = 0; i < m->ndirty; i++)
        avm_val_release(m->dirty[i]);
    free(m->dirty);
    avm_val_release(m->clmach);
    modcache_clear(m);
    free(m->moving);
    free(m->fwait);
    for (size_t i = 0; i < m->ntransit; i++)
        avm_val_release(m->transit[i]);
    free(m->transit);
    free(m->all);
    free(m->hash);
    free(m->batch);
    free(m->in);
    free(m);
}

int avm_mgr_park_all(avm_mgr *m)
{
    if (m->failed)
        return AVM_EIO; /* memory is ahead of the disk: write nothing more */
    m->parking = true;
    /* Inputs first (a posted message is durable already; starting executions get
     * their start checkpoint), then commits in flight, then finish every commitTx
     * whose outcome is not consumed yet: one instruction is enough. */
    for (size_t i = 0; i < m->nin; i++)
        apply_input(m, &m->in[i]);
    m->nin = 0;
    flush(m);
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        if (e->outcome_ready && e->x != NULL && e->state == AVM_XS_RUNNING) {
            unqueue(m, e);
            avm_run_status st = avm_exec_run(e->x, 1);
            e->outcome_ready = false;
            if (st == AVM_RUN_DONE || st == AVM_RUN_FAILED)
                terminate(m, e, st == AVM_RUN_DONE ? AVM_XO_DONE : AVM_XO_FAILED);
        }
    }
    flush(m);
    int first = 0;
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        if (e->state != AVM_XS_RUNNING || e->x == NULL || e->batch != B_NONE ||
            e->visitor || e->moving || e->away.kind != AVM_NIL)
            continue; /* visitors are their owners' to keep; away: its last record */
        if (avm_exec_waiting(e->x) == AVM_WAIT_COMMIT)
            continue; /* cannot be (flushed above), or forwarded: its last record */
        avm_run_status st = avm_exec_status(e->x);
        if (st == AVM_RUN_BLOCKED && avm_exec_waiting(e->x) == AVM_WAIT_FETCH)
            st = AVM_RUN_YIELD; /* the restart fetches again */
        int rv = checkpoint(m, e, (uint8_t)st);
        if (rv != 0 && first == 0)
            first = rv;
    }
    flush(m);
    return first;
}

/* --- Distribution --------------------------------------------------------- */

static size_t copy_bucket(const avm_mgr *m, avm_val oid)
{
    return avm_val_hash(oid) & (m->ncopies - 1);
}

static rcopy *copy_find(avm_mgr *m, avm_val oid)
{
    for (rcopy *c = m->copies[copy_bucket(m, oid)]; c != NULL; c = c->next)
        if (avm_val_eq(c->r.oid, oid))
            return c;
    return NULL;
}

static void rec_release(avm_objrec *r)
{
    avm_val_release(r->oid);
    avm_val_release(r->beh.name);
    if (r->beh.mod != NULL)
        avm_module_release(r->beh.mod);
    avm_val_release(r->meta.machine);
    avm_val_release(r->meta.creating);
    avm_val_release(r->meta.current);
    avm_val_release(r->state);
    memset(r, 0, sizeof(*r));
}

static void copy_free(rcopy *c)
{
    rec_release(&c->r);
    avm_val_release(c->unreach);
    free(c);
}

/* A copy of a record answers until it is refreshed or forgotten (its holder
 * pushes every change to those who fetched it; the cluster drops copies whose
 * holder restarted or went away), unless a write set this machine forwarded made
 * it stale. That there is no such object holds for one round. */
static bool copy_fresh(const avm_mgr *m, const rcopy *c)
{
    if (c->none)
        return m->c.rounds <= c->round + 1;
    return !c->stale;
}

/* Asks the cluster for oid's record (freeze: the holder also refreshes every
 * replica) and has e wait for it among the fetch waiters. 0 when there is no such
 * object anywhere (the instruction goes on), 1 while e waits, or a negated code
 * (m->clerr and m->clmach say why). */
/* e waits for oid's record (wake_fetchers): 1, or -AVM_ENOMEM. */
static int wait_record(avm_mgr *m, mx *e, avm_val oid)
{
    if (e->fetch_on.kind == AVM_NIL) {
        if (!GROW(m->fwait, m->nfwait, m->capfwait))
            return -AVM_ENOMEM;
        m->fwait[m->nfwait++] = e;
    } else {
        avm_val_release(e->fetch_on);
    }
    avm_val_retain(oid);
    e->fetch_on = oid;
    return 1;
}

static int start_fetch(avm_mgr *m, mx *e, avm_val oid, bool freeze)
{
    m->clerr[0] = '\0';
    avm_val_release(m->clmach);
    m->clmach = avm_nil();
    int rv =
        m->cl->fetch(m->cl->arg, oid, freeze, &m->clmach, m->clerr, sizeof(m->clerr));
    if (rv == AVM_ENOTFOUND) {
        m->clerr[0] = '\0';
        return 0;
    }
    if (rv != 0)
        return -rv;
    return wait_record(m, e, oid);
}

/* The executions waiting for oid's record go on. */
static void wake_fetchers(avm_mgr *m, avm_val oid)
{
    for (size_t i = 0; i < m->nfwait;) {
        mx *e = m->fwait[i];
        if (avm_val_eq(e->fetch_on, oid)) {
            m->fwait[i] = m->fwait[--m->nfwait];
            avm_val_release(e->fetch_on);
            e->fetch_on = avm_nil();
            if (!pending_wishes(m, e))
                enqueue(m, e);
        } else {
            i++;
        }
    }
}

static bool in_transit(avm_mgr *m, avm_val oid)
{
    for (size_t i = 0; i < m->ntransit; i++)
        if (avm_val_eq(m->transit[i], oid))
            return true;
    return false;
}

static int x_prepare(void *data, avm_val oid)
{
    mx *e = data;
    avm_mgr *m = e->m;
    if (m->base->ops->get(m->base, NULL, oid) != NULL)
        return 0;
    if (in_transit(m, oid)) {
        /* Moving between two controllers replicated here: wait for the taker's
         * record (avm_mgr_stage_put wakes it). */
        return wait_record(m, e, oid);
    }
    rcopy *c = copy_find(m, oid);
    if (c != NULL && c->err != 0) {
        /* The instruction fails once with it; the next one asks again. No record
         * was ever lent from this entry (xs_get skips it), so it can go now. */
        int err = c->err;
        snprintf(m->clerr, sizeof(m->clerr), "fetching an object of another machine: %s",
                 c->why);
        avm_val_release(m->clmach);
        m->clmach = c->unreach;
        c->unreach = avm_nil();
        avm_mgr_forget(m, oid);
        return -err;
    }
    if (c != NULL && copy_fresh(m, c))
        return 0;
    return start_fetch(m, e, oid, false);
}

/* An object this machine does not hold but has a copy of lives elsewhere. */
static bool elsewhere(avm_mgr *m, avm_val oid)
{
    if (m->base->ops->get(m->base, NULL, oid) != NULL)
        return false;
    rcopy *c = copy_find(m, oid);
    return c != NULL && !c->none;
}

/* An object whose controller is replicated: its commits go through the group. */
static bool replicated_obj(avm_mgr *m, avm_val oid)
{
    if (m->cl->replicated == NULL)
        return false;
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    return r != NULL && r->meta.current.kind != AVM_NIL &&
           m->cl->replicated(m->cl->arg, r->meta.current);
}

static bool remote_ws(avm_mgr *m, const avm_writeset *ws)
{
    if (ws->bundle.kind == AVM_STR)
        return true; /* a segment of a composed commit: its bundle commits it */
    for (size_t i = 0; i < ws->ncreates; i++) {
        avm_val c = ws->creates[i].meta.current;
        if (c.kind != AVM_NIL &&
            (!m->cl->local_ctrl(m->cl->arg, c) ||
             (m->cl->replicated && m->cl->replicated(m->cl->arg, c))))
            return true;
    }
    for (size_t i = 0; i < ws->nreads; i++)
        if (replicated_obj(m, ws->reads[i].oid))
            return true;
    for (size_t i = 0; i < ws->nstates; i++)
        if (replicated_obj(m, ws->states[i].a))
            return true;
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (replicated_obj(m, ws->destroys[i]))
            return true;
    for (size_t i = 0; i < ws->ntransfers; i++) {
        /* A transfer to a controller that is not this node's moves the object's
         * record: a commit across controllers. */
        avm_val c = ws->transfers[i].b;
        if (replicated_obj(m, ws->transfers[i].a) || !m->cl->local_ctrl(m->cl->arg, c) ||
            (m->cl->replicated && m->cl->replicated(m->cl->arg, c)))
            return true;
    }
    for (size_t i = 0; i < ws->nmoves; i++)
        if (replicated_obj(m, ws->moves[i].a))
            return true;
    for (size_t i = 0; i < ws->nreads; i++)
        if (elsewhere(m, ws->reads[i].oid))
            return true;
    for (size_t i = 0; i < ws->nstates; i++)
        if (elsewhere(m, ws->states[i].a))
            return true;
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (elsewhere(m, ws->destroys[i]))
            return true;
    for (size_t i = 0; i < ws->ntransfers; i++)
        if (elsewhere(m, ws->transfers[i].a))
            return true;
    for (size_t i = 0; i < ws->nmoves; i++)
        if (elsewhere(m, ws->moves[i].a))
            return true;
    return false;
}

/* fetch moves an object's placement here: the copy becomes a replica. */
static void pin_moves(avm_mgr *m, const avm_writeset *ws)
{
    for (size_t i = 0; i < ws->nmoves; i++) {
        if (!avm_val_eq(ws->moves[i].b, m->node->plat.node))
            continue;
        rcopy *c = copy_find(m, ws->moves[i].a);
        if (c != NULL && !c->none) {
            c->replica = true;
            avm_val_release(c->r.meta.machine);
            c->r.meta.machine = ws->moves[i].b;
            avm_val_retain(c->r.meta.machine);
        }
    }
}

/* Copies of what a forwarded write set changes are stale once it commits
 * (replicas excepted: their holder refreshes them). */
static void forget_written(avm_mgr *m, const avm_writeset *ws)
{
#define FORGET(oid)                                                                      \
    do {                                                                                 \
        rcopy *c_ = copy_find(m, (oid));                                                 \
        if (c_ != NULL && !c_->replica)                                                  \
            c_->stale = true;                                                            \
    } while (0)
    for (size_t i = 0; i < ws->nstates; i++)
        FORGET(ws->states[i].a);
    for (size_t i = 0; i < ws->ntransfers; i++)
        FORGET(ws->transfers[i].a);
    for (size_t i = 0; i < ws->ndestroys; i++)
        FORGET(ws->destroys[i]);
#undef FORGET
}

static void mark_dirty(avm_mgr *m, avm_val oid)
{
    for (size_t i = 0; i < m->ndirty; i++)
        if (avm_val_eq(m->dirty[i], oid))
            return;
    if (!GROW(m->dirty, m->ndirty, m->capdirty))
        return; /* the replica stays behind until its next refresh or freeze */
    avm_val_retain(oid);
    m->dirty[m->ndirty++] = oid;
}

/* An object placed on another machine, or gone: its replica needs news. */
static void note_oid(avm_mgr *m, avm_val oid, bool gone)
{
    if (gone || (m->cl->watched != NULL && m->cl->watched(m->cl->arg, oid))) {
        mark_dirty(m, oid);
        return;
    }
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    if (r != NULL && !avm_val_eq(r->meta.machine, m->node->plat.node))
        mark_dirty(m, oid);
}

/* A write set committed here. */
static void note_ws(avm_mgr *m, const avm_writeset *ws)
{
    if (m->cl == NULL || m->cl->changed == NULL)
        return;
    for (size_t i = 0; i < ws->ncreates; i++)
        note_oid(m, ws->creates[i].oid, false);
    for (size_t i = 0; i < ws->nstates; i++)
        note_oid(m, ws->states[i].a, false);
    for (size_t i = 0; i < ws->ntransfers; i++)
        note_oid(m, ws->transfers[i].a, false);
    for (size_t i = 0; i < ws->nmoves; i++)
        mark_dirty(m, ws->moves[i].a); /* the old machine too drops its replica */
    for (size_t i = 0; i < ws->ndestroys; i++)
        note_oid(m, ws->destroys[i], true);
}

/* The execution has seen version v of oid (its own write). */
static void seen_put(mx *e, avm_val oid, uint64_t v)
{
    for (size_t i = 0; i < e->nseen; i++) {
        if (avm_val_eq(e->seen[i].oid, oid)) {
            if (v > e->seen[i].version)
                e->seen[i].version = v;
            return;
        }
    }
    if (e->nseen == AVM_MGR_SEEN) {
        /* The oldest goes: copies that old have been refreshed by now or age out. */
        avm_val_release(e->seen[0].oid);
        memmove(e->seen, e->seen + 1, (AVM_MGR_SEEN - 1) * sizeof(e->seen[0]));
        e->nseen--;
    }
    avm_val_retain(oid);
    e->seen[e->nseen++] = (avm_read){oid, v};
}

/* A copy older than a version an execution has seen is stale. */
static void seen_check(avm_mgr *m, avm_val oid, uint64_t v)
{
    rcopy *c = copy_find(m, oid);
    if (c != NULL && !c->none && c->r.version < v)
        c->stale = true;
}

static void note_seen_oid(avm_mgr *m, mx *e, avm_val oid)
{
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    if (r != NULL)
        seen_put(e, oid, r->version);
}

/* A write set of e committed here: the versions it made. */
static void note_seen(avm_mgr *m, mx *e, const avm_writeset *ws)
{
    if (m->cl == NULL)
        return;
    for (size_t i = 0; i < ws->ncreates; i++)
        note_seen_oid(m, e, ws->creates[i].oid);
    for (size_t i = 0; i < ws->nstates; i++)
        note_seen_oid(m, e, ws->states[i].a);
    for (size_t i = 0; i < ws->ntransfers; i++)
        note_seen_oid(m, e, ws->transfers[i].a);
    for (size_t i = 0; i < ws->nmoves; i++)
        note_seen_oid(m, e, ws->moves[i].a);
}

/* Durable now: the replicas hear of it (before any answer to a forwarded commit,
 * on the same ordered links, so that its sender reads its own write). */
static void run_changed(avm_mgr *m)
{
    size_t n = m->ndirty;
    avm_val *list = m->dirty;
    m->dirty = NULL;
    m->ndirty = m->capdirty = 0;
    for (size_t i = 0; i < n; i++) {
        m->cl->changed(m->cl->arg, list[i]);
        avm_val_release(list[i]);
    }
    free(list);
}

static int x_freeze(void *data, avm_val oid)
{
    mx *e = data;
    avm_mgr *m = e->m;
    if (m->base->ops->get(m->base, NULL, oid) != NULL) {
        /* Its controller is here: the replica is refreshed from here. */
        mark_dirty(m, oid);
        return 0;
    }
    if (e->froze.kind != AVM_NIL && avm_val_eq(e->froze, oid)) {
        avm_val_release(e->froze);
        e->froze = avm_nil();
        return 0;
    }
    int rv = start_fetch(m, e, oid, true);
    if (rv != 1)
        return rv;
    avm_val_release(e->froze);
    avm_val_retain(oid);
    e->froze = oid;
    return 1;
}

/* The execution leaves at the end of the round (AVM_RUN_MOVED, or a visitor that
 * ended). */
static void leave(avm_mgr *m, mx *e)
{
    if (!GROW(m->moving, m->nmoving, m->capmoving)) {
        /* No memory to remember it: it cannot go, and cannot stay. */
        if (avm_exec_abandon(e->x, avm_exec_machine(e->x)) == 0 && !e->visitor)
            terminate(m, e, AVM_XO_FAILED);
        return;
    }
    e->moving = true;
    m->moving[m->nmoving++] = e;
}

static int owner_of(const char *id, avm_val *out)
{
    const char *sl = strrchr(id, '/');
    if (sl == NULL || sl == id)
        return AVM_EINVAL;
    return avm_str_new(AVM_MACHID, id, (size_t)(sl - id), out);
}

static void drop_exec(avm_mgr *m, mx *e)
{
    unqueue(m, e);
    unwait(m, e);
    if (e->catchup != 0) {
        e->catchup = 0;
        m->ncatchup--;
    }
    for (size_t i = 0; i < m->nall; i++) {
        if (m->all[i] == e) {
            memmove(m->all + i, m->all + i + 1, (m->nall - i - 1) * sizeof(mx *));
            m->nall--;
            break;
        }
    }
    for (mx **p = &m->hash[id_bucket(m, e->id)]; *p != NULL; p = &(*p)->hnext) {
        if (*p == e) {
            *p = e->hnext;
            break;
        }
    }
    mx_free(e);
}

static void ship_moving(avm_mgr *m)
{
    /* Shipping may report failures that end executions: take the list first. */
    size_t n = m->nmoving;
    mx **list = m->moving;
    m->moving = NULL;
    m->nmoving = m->capmoving = 0;
    for (size_t i = 0; i < n; i++) {
        mx *e = list[i];
        e->moving = false;
        avm_val to;
        bool ended = avm_exec_status(e->x) == AVM_RUN_DONE ||
                     avm_exec_status(e->x) == AVM_RUN_FAILED;
        if (ended) {
            if (owner_of(e->id, &to) != 0) {
                drop_exec(m, e);
                continue;
            }
        } else {
            to = avm_exec_machine(e->x);
            avm_val_retain(to);
        }
        avm_exec_log_runtime(e->x, ended ? "ExecutionGoingHome" : "ExecutionLeft", e->id,
                             to);
        /* The log stays with the owner: a visitor gets none of it, and brings back
         * (or on) only what it added. */
        avm_buf b;
        avm_buf_init(&b);
        int rv = avm_exec_encode_ex(
            e->x, &b, e->visitor ? avm_exec_trace_base(e->x) : avm_exec_trace_end(e->x));
        if (!e->visitor) {
            avm_val_release(e->away);
            e->away = to;
            avm_val_retain(to);
            e->visit = ++m->visit_seed;
        }
        if (rv == 0)
            m->cl->ship(m->cl->arg, e->id, e->visit, to, (const uint8_t *)b.data, b.len,
                        e->seen, e->nseen);
        avm_buf_free(&b);
        if (rv != 0)
            avm_mgr_ship_failed(m, e->id, e->visit, to);
        else if (e->visitor)
            drop_exec(m, e);
        avm_val_release(to);
    }
    free(list);
}

static void abandon(avm_mgr *m, mx *e, avm_val machine);

int avm_mgr_arrive(avm_mgr *m, const char *id, uint64_t visit, const uint8_t *state,
                   size_t len, const avm_read *seen, size_t nseen, char *errmsg,
                   size_t errlen)
{
    mx *e = find(m, id);
    avm_val own;
    if (owner_of(id, &own) != 0) {
        fmt(errmsg, errlen, "execution id \"%.60s\" names no machine", id);
        return AVM_EINVAL;
    }
    bool mine = avm_val_eq(own, m->node->plat.node);
    avm_val_release(own);
    if (e != NULL && e->visitor) {
        fmt(errmsg, errlen, "execution %s is already visiting this machine", id);
        return AVM_ESTATE;
    }
    if (mine && (e == NULL || e->away.kind == AVM_NIL || e->visit != visit)) {
        fmt(errmsg, errlen, "execution %s: visit %llu is not the one it is on", id,
            (unsigned long long)visit);
        return AVM_ESTATE;
    }
    if (!mine && e != NULL) {
        fmt(errmsg, errlen, "execution %s is already here", id);
        return AVM_ESTATE;
    }
    if (!mine) {
        e = mx_new(m, id, "");
        if (e == NULL || add_exec(m, e) != 0) {
            if (e != NULL)
                mx_free(e);
            fmt(errmsg, errlen, "out of memory");
            return AVM_ENOMEM;
        }
        e->visitor = true;
        e->visit = visit;
        e->state = AVM_XS_RUNNING;
    }
    avm_exec *x;
    char err[400] = "";
    int rv;
    rv = avm_exec_decode_part(state, len, &e->plat, &x, err, sizeof(err));
    if (rv == 0 && mine && (rv = avm_exec_rejoin(x, e->x)) != 0) {
        snprintf(err, sizeof(err),
                 "its trace log does not continue the one it left with");
        avm_exec_free(x);
    }
    if (rv == 0)
        rv = avm_exec_set_checkpoint(x, mine ? e->id : NULL);
    if (rv == 0)
        rv = avm_exec_adopt(x);
    if (rv != 0) {
        fmt(errmsg, errlen, "execution %s: %s", id, err[0] ? err : avm_strerror(rv));
        if (!mine) {
            drop_exec(m, e);
        } else if (rv != AVM_ENOMEM) {
            /* It cannot come back: it ends here, saying why. */
            char why[600];
            snprintf(why, sizeof(why), "its state could not be taken back from %s: %s",
                     e->away.kind != AVM_NIL ? e->away.u.s->data : "?", errmsg);
            free(e->error);
            e->error = strdup(why);
            abandon(m, e, e->away);
        }
        return rv == AVM_ENOMEM ? rv : AVM_EMALFORMED;
    }
    /* What it has seen: copies here older than that are fetched again. */
    for (size_t i = 0; i < e->nseen; i++)
        avm_val_release(e->seen[i].oid);
    e->nseen = 0;
    for (size_t i = 0; i < nseen && i < AVM_MGR_SEEN; i++) {
        seen_put(e, seen[i].oid, seen[i].version);
        seen_check(m, seen[i].oid, seen[i].version);
    }
    if (mine) {
        /* The log it left with (saved as far as it was) is x's now. */
        avm_exec_free(e->x);
        e->x = x;
        avm_val_release(e->away);
        e->away = avm_nil();
        avm_exec_log_runtime(x, "ExecutionReturned", e->id, avm_nil());
        avm_run_status st = avm_exec_status(x);
        if (st == AVM_RUN_DONE || st == AVM_RUN_FAILED) {
            terminate(m, e, st == AVM_RUN_DONE ? AVM_XO_DONE : AVM_XO_FAILED);
            return 0;
        }
        if (!pending_wishes(m, e))
            enqueue_arrived(m, e);
        return 0;
    }
    e->x = x;
    avm_exec_log_runtime(x, "ExecutionArrived", e->id, avm_nil());
    enqueue_arrived(m, e);
    return 0;
}

/* The owner ends an execution lost on machine. */
static void abandon(avm_mgr *m, mx *e, avm_val machine)
{
    avm_val_retain(machine); /* it may be e->away */
    avm_val_release(e->away);
    e->away = avm_nil();
    if (avm_exec_abandon(e->x, machine) == 0)
        terminate(m, e, AVM_XO_FAILED);
    avm_val_release(machine);
}

void avm_mgr_ship_failed(avm_mgr *m, const char *id, uint64_t visit, avm_val machine)
{
    mx *e = find(m, id);
    if (e == NULL || e->visitor || e->away.kind == AVM_NIL || e->visit != visit)
        return;
    abandon(m, e, machine);
}

void avm_mgr_machine_lost(avm_mgr *m, avm_val machine)
{
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        if (!e->visitor && e->away.kind != AVM_NIL && avm_val_eq(e->away, machine))
            abandon(m, e, machine);
    }
}

static int rec_copy(avm_objrec *d, const avm_objrec *r)
{
    *d = *r;
    avm_val_retain(d->oid);
    avm_val_retain(d->beh.name);
    if (d->beh.mod != NULL)
        avm_module_retain(d->beh.mod);
    avm_val_retain(d->meta.machine);
    avm_val_retain(d->meta.creating);
    avm_val_retain(d->meta.current);
    avm_val_retain(d->state);
    return 0;
}

void avm_mgr_fetched(avm_mgr *m, avm_val oid, const avm_objrec *rec, int rv,
                     avm_val machine, const char *errmsg)
{
    rcopy *c = copy_find(m, oid);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c != NULL) {
            size_t b = copy_bucket(m, oid);
            c->next = m->copies[b];
            m->copies[b] = c;
        }
    } else {
        bool replica = c->replica;
        rcopy *next = c->next;
        rec_release(&c->r);
        avm_val_release(c->unreach);
        memset(c, 0, sizeof(*c));
        c->replica = replica;
        c->next = next;
    }
    if (c != NULL) {
        c->round = m->c.rounds;
        c->err = rv;
        avm_val_release(c->unreach);
        c->unreach = machine;
        avm_val_retain(machine);
        snprintf(c->why, sizeof(c->why), "%s", rv != 0 && errmsg ? errmsg : "");
        c->none = rv == 0 && rec == NULL;
        if (rv == 0 && rec != NULL) {
            rec_copy(&c->r, rec);
            /* Its placement is this machine: a fetched replica. */
            if (avm_val_eq(rec->meta.machine, m->node->plat.node))
                c->replica = true;
        } else {
            c->r.oid = oid;
            avm_val_retain(oid);
            c->r.state = avm_nil();
        }
    }
    wake_fetchers(m, oid);
}

void avm_mgr_forget(avm_mgr *m, avm_val oid)
{
    for (rcopy **p = &m->copies[copy_bucket(m, oid)]; *p != NULL; p = &(*p)->next) {
        if (avm_val_eq((*p)->r.oid, oid)) {
            rcopy *c = *p;
            *p = c->next;
            copy_free(c);
            return;
        }
    }
}

void avm_mgr_settle(avm_mgr *m, const char *id, uint64_t seq, avm_val model)
{
    mx *e = find(m, id);
    if (e == NULL || e->x == NULL || e->fwd_seq != seq ||
        avm_exec_waiting(e->x) != AVM_WAIT_COMMIT)
        return;
    avm_val_retain(model);
    if (avm_exec_commit_settle(e->x, model) != 0)
        emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(),
             "settling the bundle's choices in the execution: out of memory");
}

void avm_mgr_applied(avm_mgr *m, const char *id, uint64_t seq, int rv, bool committed,
                     const avm_read *versions, size_t nversions, avm_val machine,
                     const char *errmsg)
{
    mx *e = find(m, id);
    if (e == NULL || e->x == NULL || e->fwd_seq != seq ||
        avm_exec_waiting(e->x) != AVM_WAIT_COMMIT)
        return;
    e->fwd_seq = 0;
    if (rv != 0 && errmsg != NULL) {
        emit(m, AVM_MEV_STORE_ERROR, e->id, avm_nil(), errmsg);
        snprintf(m->clerr, sizeof(m->clerr), "%s", errmsg);
    }
    avm_val_release(m->clmach);
    m->clmach = machine;
    avm_val_retain(machine);
    for (size_t i = 0; i < nversions; i++) {
        seen_put(e, versions[i].oid, versions[i].version);
        seen_check(m, versions[i].oid, versions[i].version);
    }
    avm_exec_commit_unsaved(e->x);
    avm_exec_commit_done(e->x, rv, committed);
    m->c.commits += rv == 0 && committed;
    m->c.conflicts += rv == 0 && !committed;
    e->outcome_ready = true;
    enqueue(m, e);
}

int avm_mgr_when_durable(avm_mgr *m, void (*fn)(void *arg), void *arg)
{
    if (!avm_lmdb_staged_any(m->db)) {
        fn(arg);
        return 0;
    }
    if (!GROW(m->afters, m->nafters, m->capafters))
        return AVM_ENOMEM;
    m->afters[m->nafters++] = (after){fn, arg};
    return 0;
}

static void run_afters(avm_mgr *m)
{
    size_t n = m->nafters;
    after *list = m->afters;
    m->afters = NULL;
    m->nafters = m->capafters = 0;
    for (size_t i = 0; i < n; i++)
        list[i].fn(list[i].arg);
    free(list);
}

typedef struct remote_apply {
    void (*done)(void *arg, int rv, bool committed, const avm_read *versions,
                 size_t nversions, const char *errmsg);
    void *arg;
    int rv;
    bool committed;
    avm_mgr *m;
    avm_read *versions; /* what the write set made (owned oids) */
    size_t nversions;
} remote_apply;

static void remote_applied(void *arg)
{
    remote_apply *ra = arg;
    avm_mgr *m = ra->m;
    int rv = m->failed ? AVM_EIO : ra->rv;
    const char *why = rv != 0 ? (m->failed ? m->failure : avm_lmdb_errmsg(m->db)) : NULL;
    ra->done(ra->arg, rv, rv == 0 && ra->committed, ra->versions, ra->nversions, why);
    for (size_t i = 0; i < ra->nversions; i++)
        avm_val_release(ra->versions[i].oid);
    free(ra->versions);
    free(ra);
}

/* Appends oid's version to v (its record here), if it has one. */
static void version_add(avm_mgr *m, avm_read *v, size_t *n, avm_val oid)
{
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    if (r == NULL)
        return;
    avm_val_retain(oid);
    v[(*n)++] = (avm_read){oid, r->version};
}

avm_read *avm_mgr_versions(avm_mgr *m, const avm_writeset *ws, size_t *n)
{
    *n = 0;
    avm_read *v =
        calloc(ws->ncreates + ws->nstates + ws->ntransfers + ws->nmoves + 1, sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < ws->ncreates; i++)
        version_add(m, v, n, ws->creates[i].oid);
    for (size_t i = 0; i < ws->nstates; i++)
        version_add(m, v, n, ws->states[i].a);
    for (size_t i = 0; i < ws->ntransfers; i++)
        version_add(m, v, n, ws->transfers[i].a);
    for (size_t i = 0; i < ws->nmoves; i++)
        version_add(m, v, n, ws->moves[i].a);
    return v;
}

int avm_mgr_apply_remote(avm_mgr *m, const avm_writeset *ws,
                         void (*done)(void *arg, int rv, bool committed,
                                      const avm_read *versions, size_t nversions,
                                      const char *errmsg),
                         void *arg)
{
    if (m->failed)
        return AVM_EIO;
    remote_apply *ra = calloc(1, sizeof(*ra));
    if (ra == NULL)
        return AVM_ENOMEM;
    *ra = (remote_apply){.done = done, .arg = arg, .m = m};
    if (m->pipelined) {
        ra->rv = avm_lmdb_stage(m->db, ws, NULL, 0, &ra->committed);
        if (ra->rv != 0 && avm_lmdb_stage_broken(m->db))
            fail_stop(m, "staging a forwarded commit", ra->rv);
    } else {
        ra->rv = m->base->ops->apply(m->base, ws, &ra->committed);
    }
    m->c.commits += ra->rv == 0 && ra->committed;
    m->c.conflicts += ra->rv == 0 && !ra->committed;
    if (ra->rv == 0 && ra->committed) {
        note_ws(m, ws);
        ra->versions = avm_mgr_versions(m, ws, &ra->nversions);
    }
    int rv = avm_mgr_when_durable(m, remote_applied, ra);
    if (rv != 0)
        free(ra);
    return rv;
}

struct avm_lmdb *avm_mgr_db(avm_mgr *m)
{
    return m->db;
}

int avm_mgr_stage_ws(avm_mgr *m, const avm_writeset *ws, bool *committed)
{
    *committed = false;
    if (m->failed)
        return AVM_EIO;
    int rv = avm_lmdb_stage(m->db, ws, NULL, 0, committed);
    if (rv != 0 && avm_lmdb_stage_broken(m->db)) {
        fail_stop(m, "staging a replicated commit", rv);
        return rv;
    }
    if (rv != 0) {
        *committed = false; /* a write set no state makes valid: refused */
        return 0;
    }
    m->c.commits += *committed;
    m->c.conflicts += !*committed;
    if (*committed)
        note_ws(m, ws);
    return 0;
}

int avm_mgr_set_bundle(avm_mgr *m, const char *id, const char *bundle, avm_val view,
                       uint64_t seen, char *errmsg, size_t errlen)
{
    mx *e = find(m, id);
    if (e == NULL || e->x == NULL) {
        snprintf(errmsg, errlen, "no execution %s here", id);
        return AVM_ENOTFOUND;
    }
    int rv = avm_exec_set_bundle(e->x, bundle);
    if (rv != 0) {
        snprintf(errmsg, errlen, "execution %s cannot join bundle %s now", id, bundle);
        return rv;
    }
    avm_val_release(e->bview);
    e->bview = avm_nil();
    if (view.kind == AVM_LIST) {
        for (size_t i = 0; i < avm_list_len(view); i++) {
            avm_val p = avm_list_at(view, i);
            if (p.kind != AVM_LIST || avm_list_len(p) != 2 ||
                avm_list_at(p, 0).kind != AVM_OBJID ||
                avm_list_at(p, 1).kind != AVM_LIST) {
                snprintf(errmsg, errlen, "bundle %s: a malformed view", bundle);
                return AVM_EMALFORMED;
            }
        }
        avm_val_retain(view);
        e->bview = view;
    }
    e->bseen = seen;
    return 0;
}

avm_val avm_mgr_bundle_view(avm_mgr *m, const char *id, uint64_t *seen)
{
    mx *e = find(m, id);
    *seen = e != NULL ? e->bseen : 0;
    return e != NULL ? e->bview : avm_nil();
}

void avm_mgr_set_bundle_view(avm_mgr *m, const char *id, avm_val view, uint64_t seen)
{
    mx *e = find(m, id);
    if (e == NULL || view.kind != AVM_LIST)
        return;
    for (size_t i = 0; i < avm_list_len(view); i++) {
        avm_val p = avm_list_at(view, i);
        if (p.kind != AVM_LIST || avm_list_len(p) != 2 ||
            avm_list_at(p, 0).kind != AVM_OBJID || avm_list_at(p, 1).kind != AVM_LIST)
            return;
    }
    avm_val_retain(view);
    avm_val_release(e->bview);
    e->bview = view;
    e->bseen = seen;
}

uint64_t avm_mgr_bundle_seen(avm_mgr *m, const char *id)
{
    mx *e = find(m, id);
    return e != NULL ? e->bseen : 0;
}

void avm_mgr_in_transit(avm_mgr *m, avm_val oid)
{
    if (in_transit(m, oid) || !GROW(m->transit, m->ntransit, m->captransit))
        return;
    avm_val_retain(oid);
    m->transit[m->ntransit++] = oid;
}

/* oid's record is here again: executions waiting for it go on. */
static void transit_done(avm_mgr *m, avm_val oid)
{
    for (size_t i = 0; i < m->ntransit; i++) {
        if (avm_val_eq(m->transit[i], oid)) {
            avm_val_release(m->transit[i]);
            m->transit[i] = m->transit[--m->ntransit];
            break;
        }
    }
    wake_fetchers(m, oid);
}

int avm_mgr_stage_put(avm_mgr *m, const avm_objrec *rec)
{
    if (m->failed)
        return AVM_EIO;
    int rv = avm_lmdb_stage_put(m->db, rec);
    if (rv == 0 && m->ntransit > 0)
        transit_done(m, rec->oid);
    if (rv != 0 && avm_lmdb_stage_broken(m->db)) {
        fail_stop(m, "staging an object taken over from another controller", rv);
        return rv;
    }
    if (rv == 0 && m->cl != NULL && m->cl->changed != NULL)
        note_oid(m, rec->oid, false);
    return rv;
}

int avm_mgr_stage_release(avm_mgr *m, avm_val oid, avm_val ctrl)
{
    if (m->failed)
        return AVM_EIO;
    bool released;
    int rv = avm_lmdb_stage_release(m->db, oid, ctrl, &released);
    if (rv != 0 && avm_lmdb_stage_broken(m->db)) {
        fail_stop(m, "releasing an object given to another controller", rv);
        return rv;
    }
    if (rv == 0 && released && m->cl != NULL && m->cl->changed != NULL)
        note_oid(m, oid, true);
    return rv;
}

bool avm_mgr_placed_here(avm_mgr *m, avm_val oid)
{
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    if (r == NULL) {
        rcopy *c = m->copies != NULL ? copy_find(m, oid) : NULL;
        r = c != NULL && c->replica && !c->none ? &c->r : NULL;
    }
    return r != NULL && avm_val_eq(r->meta.machine, m->node->plat.node);
}

const avm_objrec *avm_mgr_record(avm_mgr *m, avm_val oid)
{
    return m->base->ops->get(m->base, NULL, oid);
}

const avm_objrec *avm_mgr_known(avm_mgr *m, avm_val oid)
{
    const avm_objrec *r = m->base->ops->get(m->base, NULL, oid);
    if (r != NULL || m->copies == NULL)
        return r;
    rcopy *c = copy_find(m, oid);
    return c != NULL && !c->none ? &c->r : NULL;
}

/* --- Inspection ----------------------------------------------------------- */

static void fill_info(mx *e, avm_mgr_info *o)
{
    memset(o, 0, sizeof(*o));
    o->away = avm_nil();
    o->id = e->id;
    o->name = e->name;
    o->state = e->state;
    o->outcome = e->outcome;
    o->blocked_on = avm_nil();
    o->result = e->result;
    o->error = e->error;
    o->steps = e->steps;
    o->events = e->events;
    o->lamport = e->lamport;
    o->by = e->by;
    if (e->x == NULL)
        return;
    avm_exec *x = e->x;
    if (avm_exec_principal(x) != NULL)
        o->by = avm_exec_principal(x);
    o->steps = avm_exec_steps(x);
    o->events = avm_exec_event_counter(x);
    o->lamport = avm_exec_lamport(x);
    if (e->state == AVM_XS_RUNNING) {
        o->waiting = e->batch == B_COMMIT ? AVM_WAIT_COMMIT : avm_exec_waiting(x);
        if (o->waiting == AVM_WAIT_MESSAGE)
            o->blocked_on = avm_exec_blocked_on(x);
    }
    o->in_tx = avm_exec_tx(x, &o->tx);
    o->away = e->away;
    o->visitor = e->visitor;
    if (o->waiting == AVM_WAIT_FETCH)
        o->blocked_on = e->fetch_on;
}

int avm_mgr_info_get(avm_mgr *m, const char *id, avm_mgr_info *out, char *errmsg,
                     size_t errlen)
{
    mx *e = find_or(m, id, errmsg, errlen);
    if (e == NULL)
        return AVM_ENOTFOUND;
    if (e->state == AVM_XS_TERMINATED && e->x == NULL && !e->summarized) {
        /* Restored lazily: read its record for the summary. */
        int rv = restore(m, e, errmsg, errlen);
        if (rv != 0)
            return rv;
        summarize(e);
        if (e->outcome == AVM_XO_KILLED && e->error == NULL)
            e->error = strdup("killed by request");
        avm_exec_free(e->x);
        e->x = NULL;
    }
    fill_info(e, out);
    return 0;
}

void avm_mgr_each(avm_mgr *m, void (*fn)(void *arg, const avm_mgr_info *info), void *arg)
{
    for (size_t i = 0; i < m->nall; i++) {
        avm_mgr_info o;
        fill_info(m->all[i], &o);
        fn(arg, &o);
    }
}

int avm_mgr_trace(avm_mgr *m, const char *id, avm_buf *out, char *errmsg, size_t errlen)
{
    avm_buf_init(out);
    mx *e = find_or(m, id, errmsg, errlen);
    if (e == NULL)
        return AVM_ENOTFOUND;
    if (e->x != NULL) {
        size_t n;
        const uint8_t *p = avm_exec_trace_bytes(e->x, &n);
        avm_buf_put(out, p, n);
        return out->err;
    }
    avm_buf_free(out);
    int rv = avm_lmdb_trace_log(m->db, e->id, out);
    if (rv != 0)
        fmt(errmsg, errlen, "%s", avm_lmdb_errmsg(m->db));
    return rv;
}

void avm_mgr_each_log(avm_mgr *m,
                      void (*fn)(void *arg, const char *id, const uint8_t *log,
                                 size_t base, size_t end),
                      void *arg)
{
    for (size_t i = 0; i < m->nall; i++) {
        const mx *e = m->all[i];
        if (e->x == NULL)
            continue;
        size_t n;
        const uint8_t *p = avm_exec_trace_bytes(e->x, &n);
        size_t base = avm_exec_trace_base(e->x);
        fn(arg, e->id, p, base, base + n);
    }
}

int avm_mgr_log(avm_mgr *m, const char *id, const uint8_t **log, size_t *base,
                size_t *end)
{
    const mx *e = find(m, id);
    if (e == NULL)
        return AVM_ENOTFOUND;
    if (e->x == NULL)
        return AVM_ESTATE;
    size_t n;
    *log = avm_exec_trace_bytes(e->x, &n);
    *base = avm_exec_trace_base(e->x);
    *end = *base + n;
    return 0;
}

int avm_mgr_problem(avm_mgr *m, const char *id, avm_val *out, char *errmsg, size_t errlen)
{
    mx *e = find_or(m, id, errmsg, errlen);
    if (e == NULL)
        return AVM_ENOTFOUND;
    if (e->x == NULL) {
        /* Parked or ended: no transaction is open in memory. */
        avm_val none;
        if (avm_list_new(0, &none) != 0)
            return AVM_ENOMEM;
        avm_val_retain(none);
        avm_val two[2] = {none, none};
        return avm_list_from(two, 2, out);
    }
    return avm_exec_problem(e->x, out);
}

void avm_mgr_counts_get(const avm_mgr *m, avm_mgr_counts *out)
{
    *out = m->c;
    out->running = out->suspended = out->terminated = 0;
    out->waiting_message = out->waiting_commit = 0;
    for (size_t i = 0; i < m->nall; i++) {
        const mx *e = m->all[i];
        if (e->state == AVM_XS_RUNNING)
            out->running++;
        else if (e->state == AVM_XS_SUSPENDED)
            out->suspended++;
        else
            out->terminated++;
        out->waiting_message += e->waiting_msg;
        out->waiting_commit += e->batch == B_COMMIT;
    }
    out->runnable = m->nrun;
    out->lamport = m->lamport;
}

void avm_mgr_totals_get(const avm_mgr *m, avm_mgr_counts *out)
{
    *out = m->c;
    out->running = out->suspended = out->terminated = 0;
    out->waiting_message = out->waiting_commit = 0;
    out->runnable = m->nrun;
    out->lamport = m->lamport;
}

void avm_mgr_each_tx(avm_mgr *m,
                     void (*fn)(void *arg, const char *id, const avm_exec_txinfo *tx,
                                bool stale),
                     void *arg)
{
    for (size_t i = 0; i < m->nall; i++) {
        mx *e = m->all[i];
        avm_exec_txinfo t;
        if (e->x == NULL || e->state == AVM_XS_TERMINATED || !avm_exec_tx(e->x, &t))
            continue;
        bool stale = false;
        for (size_t k = 0; k < t.nreads && !stale; k++) {
            if (t.reads[k].version == AVM_VERSION_EXISTS)
                continue;
            const avm_objrec *r = m->base->ops->get(m->base, NULL, t.reads[k].oid);
            stale = r == NULL || r->version != t.reads[k].version;
        }
        fn(arg, e->id, &t, stale);
    }
}
