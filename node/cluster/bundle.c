/* Composed commits (guidance R2): a bundle is a named commit that several
 * executions, on any nodes, each contribute one transactional segment to; it
 * applies all the segments or none.
 *
 *   create     `bundle create NAME --members N` makes the bundle on the node asked
 *              (its home): its id is NAME@NODE.
 *   join       an execution joins with `run --bundle ID` or the instruction
 *              joinBundle; its next outermost commitTx hands its write set (the
 *              segment) to the home (bundle.put) instead of committing, and waits.
 *   view       an execution started with `run --bundle ID` first gets the writes of
 *              the segments contributed so far (bundle.view), and reads them as its
 *              own: it builds on them (a sequential dependency). A segment that
 *              reads an object an earlier segment wrote without having seen that
 *              write makes the bundle abort (it would lose that write).
 *   commit     with N segments in, the home merges them in the order they arrived
 *              (later writes win) into one write set, and commits it as any commit:
 *              through the controller's group, or two-phase across several
 *              (txn.c). Every member gets the one outcome.
 *   abort      a member that aborts its outermost transaction (abortTx), or a
 *              bundle not complete by its deadline, aborts the bundle: every member
 *              gets false and nothing applies.
 *   settle     members' segments may carry unsettled choices (choose/require,
 *              intent matching): the home solves the members' problems as one
 *              (the node's solver), checks the model with the language's 64-bit
 *              arithmetic, substitutes it into the merged write set before it
 *              commits, and hands every member the model with the outcome (they
 *              substitute it into the values they hold). No solution: the bundle
 *              aborts and every member's commitTx returns false.
 *
 * The bundle itself lives in the home's memory: a home that crashes before the
 * commit loses it (the members' commits fail, naming the home machine); once the
 * merged commit is proposed, its outcome is the commit's, durable as any. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "cluster_internal.h"
#include "codec.h"

#define B_ID 128
#define B_MAX_MEMBERS 64
#define B_KEEP 256 /* ended bundles kept for `bundle status` */
#define B_TIMEOUT_MS 30000
#define B_MAX_CHOICES 4096 /* in the members' problems together */

typedef enum { B_OPEN, B_COMMITTING, B_COMMITTED, B_ABORTED } bstate;

static const char *bstate_name(bstate s)
{
    switch (s) {
    case B_OPEN:
        return "open";
    case B_COMMITTING:
        return "committing";
    case B_COMMITTED:
        return "committed";
    case B_ABORTED:
        return "aborted";
    }
    return "?";
}

/* One member's segment: its write set as a value, and who waits for the outcome. */
typedef struct seg {
    char exec[48];
    uint64_t seq;
    avm_val wsv;        /* owned */
    avm_val problem;    /* owned: nil or its unsettled choices (constraint IR) */
    uint64_t seen;      /* segments its view held */
    avm_link_req *lreq; /* a member on another node */
    bool local;         /* a member on the home: avm_mgr_applied(exec, seq) */
    bool answered;
} seg;

typedef struct bundle {
    struct bundle *next;
    char id[B_ID];
    size_t members;
    seg segs[B_MAX_MEMBERS];
    size_t n;
    bstate state;
    char why[400];
    uint64_t deadline, ended;
    avm_read *versions;
    size_t nversions;
    avm_val model; /* owned: the settlement of the members' choices, or nil */
} bundle;

struct avm_bundles {
    avm_cluster *c;
    avm_rctl *r;
    bundle *list;
    uv_timer_t timer;
    bool timer_init, stopped;
    uint64_t next_id;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static const char *sv(avm_val l, size_t i)
{
    if (l.kind != AVM_LIST || i >= avm_list_len(l))
        return NULL;
    avm_val v = avm_list_at(l, i);
    return AVM_KIND_HAS_STR(v.kind) ? v.u.s->data : NULL;
}

/* The home of bundle id NAME@NODE (a pointer into id), or NULL. */
static const char *home_of(const char *id)
{
    const char *at = strrchr(id, '@');
    return at != NULL && at != id && at[1] != '\0' ? at + 1 : NULL;
}

static bundle *find(avm_bundles *b, const char *id)
{
    for (bundle *x = b->list; x != NULL; x = x->next)
        if (strcmp(x->id, id) == 0)
            return x;
    return NULL;
}

static void versions_drop(avm_read *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        avm_val_release(v[i].oid);
    free(v);
}

static void bundle_free(bundle *x)
{
    for (size_t i = 0; i < x->n; i++) {
        avm_val_release(x->segs[i].wsv);
        avm_val_release(x->segs[i].problem);
    }
    versions_drop(x->versions, x->nversions);
    avm_val_release(x->model);
    free(x);
}

/* --- Answers to members ---------------------------------------------------------- */

static void answer(avm_bundles *b, bundle *x, seg *s)
{
    if (s->answered)
        return;
    s->answered = true;
    bool committed = x->state == B_COMMITTED;
    int rv = x->state == B_ABORTED && x->why[0] == '!' ? AVM_EUNREACHABLE : 0;
    const char *why = x->why[0] == '!' ? x->why + 1 : x->why;
    if (s->local) {
        avm_mgr *m = cl_mgr(b->c);
        if (m != NULL) {
            if (committed && x->model.kind == AVM_LIST)
                avm_mgr_settle(m, s->exec, s->seq, x->model);
            avm_mgr_applied(m, s->exec, s->seq, rv, committed,
                            committed ? x->versions : NULL, committed ? x->nversions : 0,
                            avm_nil(), rv ? why : NULL);
            cl_kick(b->c);
        }
        return;
    }
    if (rv != 0) {
        avm_link_reply_error(s->lreq, rv, "%s", why);
        return;
    }
    avm_val model = committed ? x->model : avm_nil();
    avm_val_retain(model);
    avm_val v =
        lst(4, avm_bool(committed),
            cl_versions_val(committed ? x->versions : NULL, committed ? x->nversions : 0),
            cstr(x->why), model);
    avm_link_reply(s->lreq, v);
    avm_val_release(v);
}

static void end(avm_bundles *b, bundle *x, bstate st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void end(avm_bundles *b, bundle *x, bstate st, const char *fmt, ...)
{
    x->state = st;
    x->ended = now_ms();
    if (fmt != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->why, sizeof(x->why), fmt, ap);
        va_end(ap);
    }
    cl_logf(b->c, CL_INFO, "bundle.end", "bundle", "%s: %s%s%s", x->id, bstate_name(st),
            x->why[0] ? ": " : "", x->why[0] == '!' ? x->why + 1 : x->why);
    for (size_t i = 0; i < x->n; i++)
        answer(b, x, &x->segs[i]);
}

/* --- Merging and committing -------------------------------------------------------- */

/* The segments' write sets (obj.apply's encoding: [reads, creates, transfers, moves,
 * states, destroys, spec_order], checked when they came) as one, in arrival order:
 * later states of an object win when it applies. nil when out of memory. */
static avm_val merged_val(const bundle *x)
{
    avm_val parts[6];
    for (int k = 0; k < 6; k++) {
        size_t n = 0, at = 0;
        for (size_t i = 0; i < x->n; i++)
            n += avm_list_len(avm_list_at(x->segs[i].wsv, (size_t)k));
        if (avm_list_new(n, &parts[k]) != 0) {
            for (int j = 0; j < k; j++)
                avm_val_release(parts[j]);
            return avm_nil();
        }
        for (size_t i = 0; i < x->n; i++) {
            avm_val l = avm_list_at(x->segs[i].wsv, (size_t)k);
            for (size_t e = 0; e < avm_list_len(l); e++) {
                avm_val_retain(avm_list_at(l, e));
                parts[k].u.l->items[at++] = avm_list_at(l, e);
            }
        }
        avm_list_seal(parts[k]);
    }
    return lst(7, parts[0], parts[1], parts[2], parts[3], parts[4], parts[5],
               avm_bool(false));
}

typedef struct cref {
    avm_bundles *b;
    char id[B_ID];
} cref;

static void commit_done(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                        const char *why)
{
    cref *ref = arg;
    avm_bundles *b = ref->b;
    bundle *x = b->stopped ? NULL : find(b, ref->id);
    free(ref);
    if (x == NULL || x->state != B_COMMITTING)
        return;
    if (rv != 0) {
        end(b, x, B_ABORTED, "!the composed commit: %.300s",
            why ? why : avm_strerror(rv));
        return;
    }
    if (committed && nv > 0) {
        x->versions = calloc(nv, sizeof(*x->versions));
        for (size_t i = 0; x->versions != NULL && i < nv; i++) {
            avm_val_retain(v[i].oid);
            x->versions[x->nversions++] = v[i];
        }
    }
    if (committed)
        end(b, x, B_COMMITTED, NULL);
    else
        end(b, x, B_ABORTED,
            "the composed commit failed validation (a version one "
            "segment read had changed, or an intent held an object)");
}

static void mgr_done(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                     const char *errmsg)
{
    commit_done(arg, rv, committed, v, nv, errmsg);
}

/* The members' problems as one: their choices and requirements concatenated.
 * nil when no member has one (or out of memory: *oom). */
static avm_val merged_problem(const bundle *x, bool *oom, bool *too_many)
{
    size_t nc = 0, nr = 0;
    *oom = *too_many = false;
    for (size_t i = 0; i < x->n; i++) {
        avm_val p = x->segs[i].problem;
        if (p.kind != AVM_LIST)
            continue;
        nc += avm_list_len(avm_list_at(p, 0));
        nr += avm_list_len(avm_list_at(p, 1));
    }
    if (nc == 0 && nr == 0)
        return avm_nil();
    if (nc > B_MAX_CHOICES || nr > B_MAX_CHOICES * 4) {
        *too_many = true;
        return avm_nil();
    }
    avm_val part[2];
    size_t want[2] = {nc, nr};
    for (int k = 0; k < 2; k++) {
        if (avm_list_new(want[k], &part[k]) != 0) {
            if (k == 1)
                avm_val_release(part[0]);
            *oom = true;
            return avm_nil();
        }
        size_t at = 0;
        for (size_t i = 0; i < x->n; i++) {
            avm_val p = x->segs[i].problem;
            if (p.kind != AVM_LIST)
                continue;
            avm_val l = avm_list_at(p, (size_t)k);
            for (size_t e = 0; e < avm_list_len(l); e++) {
                avm_val_retain(avm_list_at(l, e));
                part[k].u.l->items[at++] = avm_list_at(l, e);
            }
        }
        avm_list_seal(part[k]);
    }
    avm_val v = lst(2, part[0], part[1]);
    *oom = v.kind == AVM_NIL;
    return v;
}

/* Settles the members' choices: x->model, and *mv with the model substituted.
 * false (the bundle ended, aborted, with the reason) when there is no solution or
 * something failed. */
static bool settle(avm_bundles *b, bundle *x, avm_val *mv)
{
    bool oom, too_many;
    avm_val prob = merged_problem(x, &oom, &too_many);
    if (prob.kind == AVM_NIL) {
        if (oom)
            end(b, x, B_ABORTED, "!settling the members' choices: out of memory");
        else if (too_many)
            end(b, x, B_ABORTED,
                "the members' problems hold more than %d choices (or %d requirements)",
                B_MAX_CHOICES, B_MAX_CHOICES * 4);
        return !oom && !too_many;
    }
    avm_val model = avm_nil();
    avm_buf why;
    avm_buf_init(&why);
    int rv = cl_solve(b->c, prob, &model, &why);
    char reason[300];
    snprintf(reason, sizeof(reason), "%.290s", why.data ? why.data : "");
    avm_buf_free(&why);
    if (rv != AVM_SOLVE_SAT) {
        avm_val_release(prob);
        if (rv == AVM_SOLVE_UNSAT)
            end(b, x, B_ABORTED,
                "no values of the members' choices satisfy every member's "
                "requirements");
        else if (rv == AVM_SOLVE_UNKNOWN)
            end(b, x, B_ABORTED, "the solver gave up on the members' choices: %s",
                reason);
        else
            end(b, x, B_ABORTED, "!settling the members' choices: %s", reason);
        return false;
    }
    /* The model must satisfy every requirement with the language's arithmetic. */
    avm_val reqs = avm_list_at(prob, 1);
    for (size_t i = 0; i < avm_list_len(reqs); i++) {
        avm_val r;
        rv = avm_sym_subst(avm_list_at(reqs, i), model, &r);
        bool ok = rv == 0 && r.kind == AVM_BOOL && r.u.b;
        if (rv == 0)
            avm_val_release(r);
        if (!ok) {
            avm_val_release(prob);
            avm_val_release(model);
            end(b, x, B_ABORTED,
                "the solver's values break requirement %zu of the "
                "members (%s)",
                i, rv == AVM_ETOOBIG ? "64-bit overflow" : "false");
            return false;
        }
    }
    avm_val_release(prob);
    avm_val nv;
    rv = avm_sym_subst(*mv, model, &nv);
    if (rv != 0) {
        avm_val_release(model);
        end(b, x, B_ABORTED, "substituting the members' choices: %s",
            rv == AVM_ENOTFOUND ? "a segment writes a value of a choice that no "
                                  "member's problem holds"
                                : avm_strerror(rv));
        return false;
    }
    avm_val_release(*mv);
    *mv = nv;
    x->model = model;
    cl_logf(b->c, CL_INFO, "bundle.settle", "bundle", "%s: %zu choices settled", x->id,
            avm_list_len(model));
    return true;
}

static void commit(avm_bundles *b, bundle *x)
{
    x->state = B_COMMITTING;
    char err[300] = "";
    avm_writeset ws;
    void *wb = NULL;
    avm_val mv = merged_val(x);
    if (mv.kind != AVM_NIL && !settle(b, x, &mv)) {
        avm_val_release(mv);
        return;
    }
    int rv = mv.kind == AVM_NIL ? AVM_ENOMEM
                                : cl_ws_from(b->c, mv, &ws, &wb, err, sizeof(err));
    cref *ref = rv == 0 ? malloc(sizeof(*ref)) : NULL;
    if (rv == 0 && ref == NULL)
        rv = AVM_ENOMEM;
    if (rv != 0) {
        cl_ws_free(wb);
        avm_val_release(mv);
        free(ref);
        end(b, x, B_ABORTED, "!merging the segments: %s",
            err[0] ? err : avm_strerror(rv));
        return;
    }
    ref->b = b;
    snprintf(ref->id, sizeof(ref->id), "%s", x->id);
    avm_txn *t = avm_rctl_txn(b->r);
    char names[2][64];
    size_t np = t != NULL ? avm_txn_participants(t, &ws, names, 2) : 0;
    if (np > 1) {
        rv = avm_txn_commit(t, &ws, commit_done, ref, err, sizeof(err));
    } else if (np == 1) {
        avm_val c = str(AVM_CTRLID, names[0], strlen(names[0]));
        avm_mgr *m = cl_mgr(b->c);
        if (avm_rctl_replicated(b->r, c)) {
            char rid[B_ID + 48];
            snprintf(rid, sizeof(rid), "bundle:%s/%llu", x->id,
                     (unsigned long long)++b->next_id);
            avm_val_retain(mv);
            avm_val cmd = lst(3, cstr("ws"), cstr(rid), mv);
            rv = cmd.kind == AVM_NIL ? AVM_ENOMEM
                                     : avm_rctl_submit(b->r, names[0], cmd, commit_done,
                                                       ref, err, sizeof(err));
            avm_val_release(cmd);
        } else if (m != NULL && cl_local_ctrl(b->c, c)) {
            rv = avm_mgr_apply_remote(m, &ws, mgr_done, ref);
            cl_kick(b->c);
        } else {
            snprintf(
                err, sizeof(err),
                "the segments commit under controller %s, which is neither replicated "
                "nor this node's: make the bundle on its node, or use replicated "
                "controllers",
                names[0]);
            rv = AVM_ESTATE;
        }
        avm_val_release(c);
    } else {
        /* Nothing to commit under a controller (segments without writes). */
        cl_ws_free(wb);
        avm_val_release(mv);
        commit_done(ref, 0, true, NULL, 0, NULL);
        return;
    }
    cl_ws_free(wb);
    avm_val_release(mv);
    if (rv != 0) {
        free(ref);
        end(b, x, B_ABORTED, "!committing: %s", err[0] ? err : avm_strerror(rv));
    }
}

/* --- Segments ------------------------------------------------------------------------
 */

/* Whether segment s reads an object that segment k writes. */
static bool reads_write_of(avm_bundles *b, avm_val s, avm_val k, char *oid, size_t on)
{
    avm_writeset a, w;
    void *ab = NULL, *wb = NULL;
    char err[200];
    bool hit = false;
    if (cl_ws_from(b->c, s, &a, &ab, err, sizeof(err)) == 0 &&
        cl_ws_from(b->c, k, &w, &wb, err, sizeof(err)) == 0) {
        for (size_t i = 0; i < a.nreads && !hit; i++) {
            avm_val o = a.reads[i].oid;
            for (size_t j = 0; j < w.nstates && !hit; j++)
                hit = avm_val_eq(w.states[j].a, o);
            for (size_t j = 0; j < w.ndestroys && !hit; j++)
                hit = avm_val_eq(w.destroys[j], o);
            for (size_t j = 0; j < w.ntransfers && !hit; j++)
                hit = avm_val_eq(w.transfers[j].a, o);
            if (hit)
                snprintf(oid, on, "%s", AVM_KIND_HAS_STR(o.kind) ? o.u.s->data : "?");
        }
    }
    cl_ws_free(ab);
    cl_ws_free(wb);
    return hit;
}

/* A segment arrives at the home. Takes wsv. Answers through s (lreq or local). */
static void put(avm_bundles *b, const char *id, seg *in)
{
    bundle *x = find(b, id);
    if (x == NULL) {
        if (in->local) {
            avm_mgr *m = cl_mgr(b->c);
            if (m != NULL)
                avm_mgr_applied(m, in->exec, in->seq, AVM_ENOTFOUND, false, NULL, 0,
                                avm_nil(), "no such bundle (avmctl bundle create)");
        } else {
            avm_link_reply_error(in->lreq, AVM_ENOTFOUND, "no bundle %s on %s", id,
                                 cl_self(b->c));
        }
        avm_val_release(in->wsv);
        avm_val_release(in->problem);
        return;
    }
    if (x->state != B_OPEN || x->n == x->members) {
        seg late = *in;
        if (x->state == B_OPEN) /* one too many: the bundle is full */
            snprintf(x->why, sizeof(x->why), "more members than the %zu declared",
                     x->members);
        bundle tmp = *x;
        tmp.state = x->state == B_OPEN ? B_ABORTED : x->state;
        answer(b, &tmp, &late);
        avm_val_release(in->wsv);
        avm_val_release(in->problem);
        return;
    }
    /* A read of what an earlier segment wrote, unseen: the bundle would lose it. */
    char oid[200];
    for (size_t k = in->seen; k < x->n; k++) {
        if (reads_write_of(b, in->wsv, x->segs[k].wsv, oid, sizeof(oid))) {
            x->segs[x->n++] = *in;
            end(b, x, B_ABORTED,
                "the segment of %s read %s, which the segment of %s (contributed after "
                "it "
                "began) writes: start it after that segment with run --bundle",
                in->exec, oid, x->segs[k].exec);
            return;
        }
    }
    x->segs[x->n++] = *in;
    {
        avm_writeset w;
        void *wb = NULL;
        char e2[100];
        cl_ws_from(b->c, in->wsv, &w, &wb, e2, sizeof(e2));
        cl_logf(b->c, CL_DEBUG, "bundle.put", "bundle",
                "%s: segment %zu of %zu from %s (seen %llu, reads %zu states %zu)", x->id,
                x->n, x->members, in->exec, (unsigned long long)in->seen, w.nreads,
                w.nstates);
        cl_ws_free(wb);
    }
    if (x->n == x->members)
        commit(b, x);
}

/* A request to the bundle's home (body taken); arg is freed when it cannot leave. */
static int ask_home(avm_bundles *b, const char *id, const char *home, const char *op,
                    avm_val body, uint32_t ms, avm_link_reply_cb fn, void *arg,
                    char *errmsg, size_t errlen)
{
    char err[256];
    int rv =
        avm_link_request(cl_link(b->c), home, op, body, ms, fn, arg, err, sizeof(err));
    avm_val_release(body);
    if (rv != 0) {
        free(arg);
        snprintf(errmsg, errlen, "bundle %s: %s", id, err);
    }
    return rv;
}

typedef struct pref {
    avm_bundles *b;
    char exec[48];
    uint64_t seq;
    char home[64];
} pref;

static void put_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    pref *p = arg;
    avm_bundles *b = p->b;
    avm_mgr *m = cl_mgr(b->c);
    if (!b->stopped && m != NULL) {
        bool committed = rv == 0 && reply.kind == AVM_LIST && avm_list_len(reply) >= 3 &&
                         avm_truthy(avm_list_at(reply, 0));
        if (committed && avm_list_len(reply) == 4 &&
            avm_list_at(reply, 3).kind == AVM_LIST)
            avm_mgr_settle(m, p->exec, p->seq, avm_list_at(reply, 3));
        size_t nv = 0;
        avm_read *vs = committed ? cl_versions_from(avm_list_at(reply, 1), &nv) : NULL;
        char why[400];
        snprintf(why, sizeof(why), "bundle home %s: %.300s", p->home,
                 errmsg ? errmsg : avm_strerror(rv));
        avm_val mach = avm_nil();
        if (rv == AVM_EIO) {
            rv = AVM_EUNREACHABLE;
            mach = str(AVM_MACHID, p->home, strlen(p->home));
        }
        avm_mgr_applied(m, p->exec, p->seq, rv, committed, vs, nv, mach, rv ? why : NULL);
        avm_val_release(mach);
        free(vs);
        cl_kick(b->c);
    }
    free(p);
}

int avm_bundle_contribute(avm_bundles *b, const char *id, const char *exec, uint64_t seq,
                          const avm_writeset *ws, uint64_t seen, char *errmsg,
                          size_t errlen)
{
    const char *home = home_of(id);
    if (home == NULL) {
        snprintf(errmsg, errlen,
                 "bundle %s: not a bundle id (NAME@NODE, as bundle create "
                 "prints it)",
                 id);
        return AVM_EINVAL;
    }
    avm_val wsv = cl_ws_val(b->c, ws);
    if (wsv.kind == AVM_NIL)
        return AVM_ENOMEM;
    avm_val prob = ws->problem;
    avm_val_retain(prob);
    if (strcmp(home, cl_self(b->c)) == 0) {
        seg s = {.seq = seq, .wsv = wsv, .problem = prob, .seen = seen, .local = true};
        snprintf(s.exec, sizeof(s.exec), "%s", exec);
        put(b, id, &s);
        return 0;
    }
    if (!cl_reachable(b->c, home)) {
        avm_val_release(wsv);
        avm_val_release(prob);
        snprintf(errmsg, errlen, "bundle %s: its home %s is unreachable", id, home);
        return AVM_EUNREACHABLE;
    }
    pref *p = calloc(1, sizeof(*p));
    avm_val body = lst(5, cstr(id), cstr(exec), wsv, avm_int((int64_t)seen), prob);
    if (p == NULL || body.kind == AVM_NIL) {
        free(p);
        avm_val_release(body);
        return AVM_ENOMEM;
    }
    p->b = b;
    snprintf(p->exec, sizeof(p->exec), "%s", exec);
    p->seq = seq;
    snprintf(p->home, sizeof(p->home), "%s", home);
    /* The answer comes when the bundle ends: its deadline bounds the wait. */
    return ask_home(b, id, home, "bundle.put", body, 600000, put_reply, p, errmsg,
                    errlen);
}

void avm_bundle_abort(avm_bundles *b, const char *id, const char *exec)
{
    const char *home = home_of(id);
    if (home == NULL)
        return;
    if (strcmp(home, cl_self(b->c)) == 0) {
        bundle *x = find(b, id);
        if (x != NULL && x->state == B_OPEN)
            end(b, x, B_ABORTED, "%s aborted its transaction", exec);
        return;
    }
    avm_val msg = lst(2, cstr("bundle.abort"), lst(2, cstr(id), cstr(exec)));
    char err[256];
    if (msg.kind != AVM_NIL &&
        avm_link_send(cl_link(b->c), home, msg, err, sizeof(err)) != 0)
        cl_logf(b->c, CL_WARN, "bundle.abort", "error", "bundle %s: to %s: %s", id, home,
                err);
    avm_val_release(msg);
}

/* --- Views ---------------------------------------------------------------------------
 */

/* [[oid, state]...] the segments so far write (later wins), and how many. */
static avm_val view_val(avm_bundles *b, bundle *x)
{
    size_t cap = 16, n = 0;
    avm_val *items = calloc(cap, sizeof(*items));
    for (size_t i = 0; items != NULL && i < x->n; i++) {
        avm_writeset w;
        void *wb = NULL;
        char err[200];
        if (cl_ws_from(b->c, x->segs[i].wsv, &w, &wb, err, sizeof(err)) != 0)
            continue;
        for (size_t k = 0; k < w.nstates; k++) {
            bool done = false;
            for (size_t j = 0; j < n && !done; j++) {
                if (avm_val_eq(avm_list_at(items[j], 0), w.states[k].a)) {
                    avm_val_retain(w.states[k].a);
                    avm_val_retain(w.states[k].b);
                    avm_val_release(items[j]);
                    items[j] = lst(2, w.states[k].a, w.states[k].b);
                    done = true;
                }
            }
            if (done)
                continue;
            if (n == cap) {
                avm_val *ni = realloc(items, 2 * cap * sizeof(*ni));
                if (ni == NULL)
                    break;
                items = ni;
                cap *= 2;
            }
            avm_val_retain(w.states[k].a);
            avm_val_retain(w.states[k].b);
            items[n++] = lst(2, w.states[k].a, w.states[k].b);
        }
        cl_ws_free(wb);
    }
    avm_val l;
    if (items == NULL || avm_list_from(items, n, &l) != 0)
        l = avm_nil();
    free(items);
    return lst(2, l, avm_int((int64_t)x->n));
}

typedef struct vref {
    avm_bundles *b;
    avm_bundle_view_cb cb;
    void *arg;
} vref;

static void view_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    vref *v = arg;
    if (rv != 0)
        v->cb(v->arg, rv, avm_nil(), 0, errmsg ? errmsg : avm_strerror(rv));
    else if (reply.kind != AVM_LIST || avm_list_len(reply) != 2 ||
             avm_list_at(reply, 0).kind != AVM_LIST ||
             avm_list_at(reply, 1).kind != AVM_INT)
        v->cb(v->arg, AVM_EMALFORMED, avm_nil(), 0, "a malformed bundle view");
    else
        v->cb(v->arg, 0, avm_list_at(reply, 0), (uint64_t)avm_list_at(reply, 1).u.i,
              NULL);
    free(v);
}

int avm_bundle_view(avm_bundles *b, const char *id, avm_bundle_view_cb cb, void *arg,
                    char *errmsg, size_t errlen)
{
    const char *home = home_of(id);
    if (home == NULL) {
        snprintf(errmsg, errlen,
                 "bundle %s: not a bundle id (NAME@NODE, as bundle create "
                 "prints it)",
                 id);
        return AVM_EINVAL;
    }
    if (strcmp(home, cl_self(b->c)) == 0) {
        bundle *x = find(b, id);
        if (x == NULL || x->state != B_OPEN) {
            snprintf(errmsg, errlen, "bundle %s: %s", id,
                     x == NULL ? "no such bundle" : bstate_name(x->state));
            return x == NULL ? AVM_ENOTFOUND : AVM_ESTATE;
        }
        avm_val v = view_val(b, x);
        cb(arg, 0, avm_list_at(v, 0), (uint64_t)avm_list_at(v, 1).u.i, NULL);
        avm_val_release(v);
        return 0;
    }
    vref *v = malloc(sizeof(*v));
    if (v == NULL)
        return AVM_ENOMEM;
    *v = (vref){b, cb, arg};
    return ask_home(b, id, home, "bundle.view", cstr(id), 10000, view_reply, v, errmsg,
                    errlen);
}

/* --- Link traffic ---------------------------------------------------------------- */

bool avm_bundle_on_request(avm_bundles *b, avm_link_req *req, const char *from,
                           const char *op, avm_val body)
{
    if (strncmp(op, "bundle.", 7) != 0)
        return false;
    if (strcmp(op, "bundle.put") == 0) {
        const char *id = sv(body, 0), *exec = sv(body, 1);
        size_t nb = id != NULL ? avm_list_len(body) : 0;
        if (id == NULL || exec == NULL || (nb != 4 && nb != 5) ||
            avm_list_at(body, 2).kind != AVM_LIST ||
            avm_list_at(body, 3).kind != AVM_INT || strlen(exec) >= 48 ||
            (nb == 5 && avm_list_at(body, 4).kind != AVM_NIL &&
             (avm_list_at(body, 4).kind != AVM_LIST ||
              avm_list_len(avm_list_at(body, 4)) != 2 ||
              avm_list_at(avm_list_at(body, 4), 0).kind != AVM_LIST ||
              avm_list_at(avm_list_at(body, 4), 1).kind != AVM_LIST))) {
            avm_link_reply_error(
                req, AVM_EMALFORMED,
                "bundle.put: expected [bundle, execution, write set, seen, problem]");
            return true;
        }
        seg s = {.lreq = req, .seen = (uint64_t)avm_list_at(body, 3).u.i};
        if (nb == 5) {
            s.problem = avm_list_at(body, 4);
            avm_val_retain(s.problem);
        }
        snprintf(s.exec, sizeof(s.exec), "%s", exec);
        s.wsv = avm_list_at(body, 2);
        avm_val_retain(s.wsv);
        /* The write set must decode before it is taken. */
        avm_writeset w;
        void *wb = NULL;
        char err[256];
        int rv = cl_ws_from(b->c, s.wsv, &w, &wb, err, sizeof(err));
        cl_ws_free(wb);
        if (rv != 0) {
            avm_val_release(s.wsv);
            avm_val_release(s.problem);
            avm_link_reply_error(req, rv, "bundle.put: %s", err);
            return true;
        }
        put(b, id, &s);
    } else if (strcmp(op, "bundle.view") == 0) {
        bundle *x = body.kind == AVM_STR ? find(b, body.u.s->data) : NULL;
        if (x == NULL || x->state != B_OPEN) {
            avm_link_reply_error(
                req, x == NULL ? AVM_ENOTFOUND : AVM_ESTATE, "bundle %s on %s: %s",
                body.kind == AVM_STR ? body.u.s->data : "?", cl_self(b->c),
                x == NULL ? "no such bundle" : bstate_name(x->state));
            return true;
        }
        avm_val v = view_val(b, x);
        avm_link_reply(req, v);
        avm_val_release(v);
    } else {
        avm_link_reply_error(req, AVM_EINVAL, "unknown request '%s' from %s", op, from);
    }
    return true;
}

void avm_bundle_on_message(avm_bundles *b, const char *from, avm_val body)
{
    const char *id = sv(body, 0), *exec = sv(body, 1);
    if (id == NULL || exec == NULL) {
        cl_logf(b->c, CL_WARN, "bundle.abort", "error", "from %s: malformed", from);
        return;
    }
    avm_bundle_abort(b, id, exec);
}

/* --- Control operations ------------------------------------------------------------ */

static void reply_info(avm_ctl_req *req, bundle *x)
{
    avm_ctl_body o;
    avm_ctl_body_init(&o);
    avm_ctl_put_str(&o, "bundle", x->id);
    avm_ctl_put_str(&o, "state", bstate_name(x->state));
    avm_ctl_put_int(&o, "members", (int64_t)x->members);
    avm_ctl_put_int(&o, "joined", (int64_t)x->n);
    if (x->why[0])
        avm_ctl_put_str(&o, "why", x->why[0] == '!' ? x->why + 1 : x->why);
    avm_val l;
    if (avm_list_new(x->n, &l) == 0) {
        for (size_t i = 0; i < x->n; i++)
            l.u.l->items[i] = cstr(x->segs[i].exec);
        avm_list_seal(l);
        avm_ctl_put(&o, "segments", l);
    }
    avm_val out;
    if (avm_ctl_body_finish(&o, &out) == 0) {
        avm_ctl_reply(req, out);
        avm_val_release(out);
    } else {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
    }
}

static void trim(avm_bundles *b)
{
    size_t ended = 0;
    for (bundle *x = b->list; x != NULL; x = x->next)
        ended += x->state == B_COMMITTED || x->state == B_ABORTED;
    while (ended > B_KEEP) {
        bundle **old = NULL;
        for (bundle **pp = &b->list; *pp != NULL; pp = &(*pp)->next)
            if (((*pp)->state == B_COMMITTED || (*pp)->state == B_ABORTED) &&
                (old == NULL || (*pp)->ended < (*old)->ended))
                old = pp;
        bundle *x = *old;
        *old = x->next;
        bundle_free(x);
        ended--;
    }
}

void avm_bundle_control(avm_bundles *b, avm_ctl_req *req, const char *op, avm_val body,
                        unsigned hops)
{
    if (strcmp(op, "bundle.create") == 0) {
        avm_val nv = avm_ctl_get(body, "name"), mv = avm_ctl_get(body, "members"),
                tv = avm_ctl_get(body, "timeout_ms");
        if (nv.kind != AVM_STR || nv.u.s->len == 0 || nv.u.s->len > 60 ||
            strchr(nv.u.s->data, '@') != NULL || mv.kind != AVM_INT || mv.u.i < 1 ||
            mv.u.i > B_MAX_MEMBERS ||
            (tv.kind != AVM_NIL &&
             (tv.kind != AVM_INT || tv.u.i < 1 || tv.u.i > 3600000))) {
            avm_ctl_reply_error(req, AVM_EINVAL,
                                "bundle.create: expected a name (1-60 bytes, no '@'), "
                                "members (1-%d) and an optional timeout_ms (1-3600000)",
                                B_MAX_MEMBERS);
            return;
        }
        char id[B_ID];
        snprintf(id, sizeof(id), "%s@%s", nv.u.s->data, cl_self(b->c));
        bundle *x = find(b, id);
        if (x != NULL && x->state == B_OPEN) {
            avm_ctl_reply_error(req, AVM_ESTATE, "bundle %s is open already", id);
            return;
        }
        if (x != NULL) { /* an ended bundle of that name: made anew */
            for (bundle **pp = &b->list; *pp != NULL; pp = &(*pp)->next)
                if (*pp == x) {
                    *pp = x->next;
                    break;
                }
            bundle_free(x);
        }
        x = calloc(1, sizeof(*x));
        if (x == NULL) {
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
            return;
        }
        snprintf(x->id, sizeof(x->id), "%s", id);
        x->members = (size_t)mv.u.i;
        x->deadline = now_ms() + (tv.kind == AVM_INT ? (uint64_t)tv.u.i : B_TIMEOUT_MS);
        x->next = b->list;
        b->list = x;
        trim(b);
        cl_logf(b->c, CL_INFO, "bundle.create", "bundle", "%s: %zu members", id,
                x->members);
        reply_info(req, x);
        return;
    }
    if (strcmp(op, "bundle.status") == 0) {
        avm_val iv = avm_ctl_get(body, "bundle");
        const char *home = iv.kind == AVM_STR ? home_of(iv.u.s->data) : NULL;
        if (home == NULL) {
            avm_ctl_reply_error(req, AVM_EINVAL,
                                "bundle.status: expected a bundle id (NAME@NODE)");
            return;
        }
        if (strcmp(home, cl_self(b->c)) != 0) {
            if (hops >= 2 || !avm_cluster_forward(b->c, req, hops, home, op, body))
                avm_ctl_reply_error(req, AVM_ENOTFOUND, "bundle %s: %s is not a member",
                                    iv.u.s->data, home);
            return;
        }
        bundle *x = find(b, iv.u.s->data);
        if (x == NULL)
            avm_ctl_reply_error(req, AVM_ENOTFOUND, "no bundle %s", iv.u.s->data);
        else
            reply_info(req, x);
        return;
    }
    avm_ctl_reply_error(req, AVM_EINVAL, "unknown operation '%s'", op);
}

/* --- Lifecycle -----------------------------------------------------------------------
 */

static void on_timer(uv_timer_t *h)
{
    avm_bundles *b = h->data;
    uint64_t now = now_ms();
    for (bundle *x = b->list; x != NULL; x = x->next)
        if (x->state == B_OPEN && now >= x->deadline)
            end(b, x, B_ABORTED, "only %zu of %zu members joined before the deadline",
                x->n, x->members);
}

int avm_bundles_new(avm_cluster *c, avm_rctl *r, avm_bundles **out)
{
    avm_bundles *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return AVM_ENOMEM;
    b->c = c;
    b->r = r;
    if (uv_timer_init(cl_loop(c), &b->timer) != 0) {
        free(b);
        return AVM_EIO;
    }
    b->timer.data = b;
    b->timer_init = true;
    uv_timer_start(&b->timer, on_timer, 200, 200);
    uv_unref((uv_handle_t *)&b->timer);
    *out = b;
    return 0;
}

void avm_bundles_stop(avm_bundles *b)
{
    if (b == NULL || b->stopped)
        return;
    b->stopped = true;
    if (b->timer_init)
        uv_close((uv_handle_t *)&b->timer, NULL);
}

void avm_bundles_free(avm_bundles *b)
{
    if (b == NULL)
        return;
    while (b->list != NULL) {
        bundle *x = b->list;
        b->list = x->next;
        bundle_free(x);
    }
    free(b);
}

void avm_bundles_count(avm_bundles *b, size_t out[4])
{
    out[0] = out[1] = out[2] = out[3] = 0;
    if (b == NULL)
        return;
    for (const bundle *x = b->list; x != NULL; x = x->next)
        out[x->state]++;
}
