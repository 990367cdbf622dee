/* Commits across controllers: two-phase commit over the Raft groups of replicated
 * controllers (docs/architecture.md, "Commits across controllers").
 *
 *   participants  every controller whose objects the write set reads or changes,
 *                 creates under, or transfers an object to. One of them is the
 *                 coordinator: the decision is recorded in its Raft log.
 *   prepare       each other participant's group validates its part (read versions,
 *                 authority, intents of other transactions) in log order and, when
 *                 it holds, records an intent ("x/<txid>": its part) that blocks
 *                 every conflicting commit until the decision; it votes yes or no.
 *   decide        the coordinator's group records the decision ("o/<txid>") in its
 *                 log: commit when every vote was yes and its own part validates
 *                 (it is the last participant to vote, and applies its part in the
 *                 same entry), else abort. The first decision recorded for a
 *                 transaction is the only one: a later "dec" returns it; every
 *                 "dec" of a transaction has the request id "dec:<txid>", so one
 *                 still in flight returns it even after the decision is forgotten.
 *   finish        each other participant applies its part (commit) or drops it
 *                 (abort) in its own log, exactly once (request id "fin:<txid>",
 *                 which also refuses a prepare that arrives after the finish).
 *   recovery      a group leader whose intent waits longer than TXN_RESOLVE_MS asks
 *                 the coordinator ("dec" with abort as its proposal: abort when
 *                 nothing was decided yet, else the decision) and finishes it; a
 *                 coordinator leader finishes decisions that were not forgotten
 *                 after TXN_DRIVE_MS, then forgets them.
 *
 * Moving an object between controllers (transferObject): the giving controller's
 * part validates the object's version and, at the commit, releases its record; the
 * taking controller's part stores the record ("adopt": the object's behaviour,
 * metadata, final state, and a version two above the one validated), so exactly one
 * controller accepts commits on it at any moment: the giver refuses them while the
 * intent holds and has no record afterwards, the taker has none before its part
 * applies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "cluster_internal.h"
#include "codec.h"

#define TXN_NAME 64
#define TXN_ID 192
#define TXN_MAX_PARTS 16
#define TXN_TICK_MS 250
#define TXN_RESOLVE_MS 2000
#define TXN_DRIVE_MS 3000
/* split_for: the copy of a transferred object here is not the version read. */
#define TXN_STALE 1000

/* A transaction's part for one participant, decoded: arrays borrowed from partv. */
typedef struct part {
    avm_writeset ws;    /* without transfers out; reads stripped for a finish */
    void *wb;           /* cl_ws_from's buffer */
    avm_val releases;   /* [[oid, controller]...] given to another participant */
    avm_writeset adopt; /* creates (behaviour, metadata), states, reads (versions) */
    void *ab;
} part;

/* An intent a group holds for a prepared transaction. */
typedef struct intent {
    struct intent *next;
    char group[TXN_NAME];
    char txid[TXN_ID];
    char coord[TXN_NAME];
    avm_val parts; /* [name...] */
    avm_val partv; /* owned */
    part p;
    uint64_t since;
    bool resolving;
} intent;

/* A decision a coordinator group recorded and has not forgotten yet. */
typedef struct decision {
    struct decision *next;
    char group[TXN_NAME];
    char txid[TXN_ID];
    bool commit;
    avm_val parts;
    uint64_t since;
    bool driving;
    size_t pending;
    bool failed;
} decision;

/* A transaction this node drives (the transaction manager). */
typedef struct txn {
    struct txn *next;
    avm_txn *t;
    char txid[TXN_ID];
    size_t n, coord;
    char names[TXN_MAX_PARTS][TXN_NAME];
    avm_val partv[TXN_MAX_PARTS];
    avm_val namesv;
    size_t waiting;
    bool all_yes, commit, fin_failed;
    char why[300];
    avm_read *versions;
    size_t nversions, capversions;
    avm_txn_done done;
    void *arg;
    uint64_t t_us; /* when it started, µs */
} txn;

struct avm_txn {
    avm_cluster *c;
    avm_rctl *r;
    avm_mgr *m;
    avm_lmdb *db;
    intent *intents;
    decision *decisions;
    txn *txns;
    uv_timer_t timer;
    bool timer_init, stopped;
    uint64_t next_id;
    avm_txn_stats st;
};

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

static avm_val ctrl_of(const char *name)
{
    return str(AVM_CTRLID, name, strlen(name));
}

static const char *sv(avm_val l, size_t i)
{
    if (l.kind != AVM_LIST || i >= avm_list_len(l))
        return NULL;
    avm_val v = avm_list_at(l, i);
    return AVM_KIND_HAS_STR(v.kind) ? v.u.s->data : NULL;
}

/* --- Parts ---------------------------------------------------------------------------
 */

static void part_free(part *p)
{
    cl_ws_free(p->wb);
    cl_ws_free(p->ab);
    memset(p, 0, sizeof(*p));
}

/* partv = [ws, [oid...] released, adopt ws or nil] */
static int part_from(avm_txn *t, avm_val partv, part *p, char *err, size_t en)
{
    memset(p, 0, sizeof(*p));
    if (partv.kind != AVM_LIST || avm_list_len(partv) != 3 ||
        avm_list_at(partv, 1).kind != AVM_LIST) {
        snprintf(err, en, "a transaction part: expected [write set, releases, adopt]");
        return AVM_EMALFORMED;
    }
    int rv = cl_ws_from(t->c, avm_list_at(partv, 0), &p->ws, &p->wb, err, en);
    if (rv != 0)
        return rv;
    p->releases = avm_list_at(partv, 1);
    for (size_t i = 0; i < avm_list_len(p->releases); i++) {
        avm_val r = avm_list_at(p->releases, i);
        if (r.kind != AVM_LIST || avm_list_len(r) != 2 ||
            avm_list_at(r, 0).kind != AVM_OBJID || avm_list_at(r, 1).kind != AVM_CTRLID) {
            part_free(p);
            snprintf(err, en,
                     "a transaction part: a release is not [object, controller]");
            return AVM_EMALFORMED;
        }
    }
    avm_val a = avm_list_at(partv, 2);
    if (a.kind != AVM_NIL) {
        rv = cl_ws_from(t->c, a, &p->adopt, &p->ab, err, en);
        if (rv == 0 && (p->adopt.ncreates != p->adopt.nstates ||
                        p->adopt.ncreates != p->adopt.nreads))
            rv = AVM_EMALFORMED;
        for (size_t i = 0; rv == 0 && i < p->adopt.ncreates; i++)
            if (!avm_val_eq(p->adopt.creates[i].oid, p->adopt.states[i].a) ||
                !avm_val_eq(p->adopt.creates[i].oid, p->adopt.reads[i].oid) ||
                p->adopt.creates[i].beh.mod == NULL ||
                p->adopt.states[i].b.kind != AVM_LIST)
                rv = AVM_EMALFORMED;
        if (rv != 0) {
            part_free(p);
            if (rv == AVM_EMALFORMED)
                snprintf(err, en, "a transaction part: a malformed adopted object");
            return rv;
        }
    }
    return 0;
}

static bool in_list(avm_val oid, const avm_val *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (avm_val_eq(v[i], oid))
            return true;
    return false;
}

/* How many objects part p gives away: releases is nil in a part made from an
 * ordinary write set (avm_txn_blocks), a list in a decoded one. */
static size_t nreleased(const part *p)
{
    return p->releases.kind == AVM_LIST ? avm_list_len(p->releases) : 0;
}

/* The i-th object part p gives away. */
static avm_val released(const part *p, size_t i)
{
    return avm_list_at(avm_list_at(p->releases, i), 0);
}

/* Whether ws (with releases and adoptions) writes oid. */
static bool writes(const part *p, avm_val oid)
{
    const avm_writeset *ws = &p->ws;
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_val_eq(ws->creates[i].oid, oid))
            return true;
    for (size_t i = 0; i < ws->nstates; i++)
        if (avm_val_eq(ws->states[i].a, oid))
            return true;
    for (size_t i = 0; i < ws->ntransfers; i++)
        if (avm_val_eq(ws->transfers[i].a, oid))
            return true;
    for (size_t i = 0; i < ws->nmoves; i++)
        if (avm_val_eq(ws->moves[i].a, oid))
            return true;
    if (in_list(oid, ws->destroys, ws->ndestroys))
        return true;
    for (size_t i = 0; i < nreleased(p); i++)
        if (avm_val_eq(released(p, i), oid))
            return true;
    for (size_t i = 0; i < p->adopt.ncreates; i++)
        if (avm_val_eq(p->adopt.creates[i].oid, oid))
            return true;
    return false;
}

static bool reads(const part *p, avm_val oid)
{
    for (size_t i = 0; i < p->ws.nreads; i++)
        if (avm_val_eq(p->ws.reads[i].oid, oid))
            return true;
    return false;
}

/* Every object q writes or reads, through fn, until fn says stop. */
static bool any_object(const part *q, bool (*fn)(const part *p, avm_val oid, bool w),
                       const part *p)
{
    const avm_writeset *ws = &q->ws;
    for (size_t i = 0; i < ws->nreads; i++)
        if (fn(p, ws->reads[i].oid, false))
            return true;
    for (size_t i = 0; i < ws->ncreates; i++)
        if (fn(p, ws->creates[i].oid, true))
            return true;
    for (size_t i = 0; i < ws->nstates; i++)
        if (fn(p, ws->states[i].a, true))
            return true;
    for (size_t i = 0; i < ws->ntransfers; i++)
        if (fn(p, ws->transfers[i].a, true))
            return true;
    for (size_t i = 0; i < ws->nmoves; i++)
        if (fn(p, ws->moves[i].a, true))
            return true;
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (fn(p, ws->destroys[i], true))
            return true;
    for (size_t i = 0; i < nreleased(q); i++)
        if (fn(p, released(q, i), true))
            return true;
    for (size_t i = 0; i < q->adopt.ncreates; i++)
        if (fn(p, q->adopt.creates[i].oid, true))
            return true;
    return false;
}

/* A write of one against a read or write of the other, or a read against a write. */
static bool clash(const part *held, avm_val oid, bool w)
{
    return writes(held, oid) || (w && reads(held, oid));
}

/* The intent of another transaction in group that q conflicts with, or NULL. */
static intent *blocker(avm_txn *t, const char *group, const part *q, const char *txid)
{
    for (intent *i = t->intents; i != NULL; i = i->next)
        if (strcmp(i->group, group) == 0 &&
            (txid == NULL || strcmp(i->txid, txid) != 0) && any_object(q, clash, &i->p))
            return i;
    return NULL;
}

bool avm_txn_blocks(avm_txn *t, const char *group, const avm_writeset *ws)
{
    if (t == NULL || t->intents == NULL)
        return false;
    part q = {.ws = *ws, .releases = avm_nil()};
    intent *i = blocker(t, group, &q, NULL);
    if (i != NULL)
        t->st.blocked++;
    return i != NULL;
}

/* The read versions of the part, against the latest state (the round's staged
 * commits included): the store's rule (platform.h). */
static bool valid_reads(avm_txn *t, const avm_writeset *ws)
{
    for (size_t i = 0; i < ws->nreads; i++) {
        const avm_objrec *rec = avm_mgr_record(t->m, ws->reads[i].oid);
        if (rec == NULL) {
            bool created = false;
            for (size_t k = 0; k < ws->ncreates && !created; k++)
                created = avm_val_eq(ws->creates[k].oid, ws->reads[i].oid);
            if (!created)
                return false;
            continue;
        }
        if (ws->reads[i].version != AVM_VERSION_EXISTS &&
            rec->version != ws->reads[i].version)
            return false;
    }
    return true;
}

/* The authority rule for a part: what it changes and releases is this group's, what
 * it creates and adopts is made this group's. NULL when it holds, else why not. */
static const char *part_authority(avm_txn *t, avm_val ctrl, const part *p)
{
    const avm_writeset *ws = &p->ws;
    for (size_t i = 0; i < ws->ncreates; i++)
        if (!avm_val_eq(ws->creates[i].meta.current, ctrl))
            return "a create under another controller";
    for (size_t i = 0; i < p->adopt.ncreates; i++)
        if (!avm_val_eq(p->adopt.creates[i].meta.current, ctrl))
            return "an object taken over for another controller";
#define MINE(oid)                                                                        \
    do {                                                                                 \
        const avm_objrec *rec_ = avm_mgr_record(t->m, (oid));                            \
        if (rec_ != NULL && !avm_val_eq(rec_->meta.current, ctrl))                       \
            return "a change to an object of another controller";                        \
    } while (0)
    for (size_t i = 0; i < ws->nstates; i++)
        MINE(ws->states[i].a);
    for (size_t i = 0; i < ws->ndestroys; i++)
        MINE(ws->destroys[i]);
    for (size_t i = 0; i < ws->ntransfers; i++) {
        MINE(ws->transfers[i].a);
        if (!avm_val_eq(ws->transfers[i].b, ctrl))
            return "a transfer to a controller outside the transaction";
    }
    for (size_t i = 0; i < ws->nmoves; i++)
        MINE(ws->moves[i].a);
    for (size_t i = 0; i < avm_list_len(p->releases); i++) {
        const avm_objrec *rec = avm_mgr_record(t->m, released(p, i));
        if (rec == NULL || !avm_val_eq(rec->meta.current, ctrl))
            return "giving away an object this controller does not hold";
    }
#undef MINE
    return NULL;
}

static void versions_add(avm_read **v, size_t *n, size_t *cap, const avm_read *add,
                         size_t nadd)
{
    if (*n + nadd > *cap) {
        size_t c = (*n + nadd) * 2;
        avm_read *nv = realloc(*v, c * sizeof(*nv));
        if (nv == NULL)
            return;
        *v = nv;
        *cap = c;
    }
    for (size_t i = 0; i < nadd; i++) {
        avm_val_retain(add[i].oid);
        (*v)[(*n)++] = add[i];
    }
}

static void versions_drop(avm_read *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        avm_val_release(v[i].oid);
    free(v);
}

/* Applies a part: its write set (validated when with_reads), then releases and
 * adoptions. *ok says whether it applied; *vers the versions it made. */
static int apply_part(avm_txn *t, avm_val ctrl, part *p, bool with_reads, bool *ok,
                      avm_read **vers, size_t *nv)
{
    avm_writeset ws = p->ws;
    if (!with_reads)
        ws.nreads = 0;
    int rv = avm_mgr_stage_ws(t->m, &ws, ok);
    if (rv != 0 || !*ok)
        return rv;
    size_t cap = 0;
    *vers = avm_mgr_versions(t->m, &ws, nv);
    cap = *nv;
    for (size_t i = 0; rv == 0 && i < avm_list_len(p->releases); i++) {
        avm_val oid = released(p, i), to = avm_list_at(avm_list_at(p->releases, i), 1);
        const avm_objrec *rec = avm_mgr_record(t->m, oid);
        if (rec == NULL || !avm_val_eq(rec->meta.current, ctrl))
            continue; /* the taker's record is here already */
        rv = avm_mgr_stage_release(t->m, oid, ctrl);
        /* This node replicates the taker too: executions here that need the object
         * wait for the taker's record instead of finding none. (The giver's group
         * must not hand its record over in this store: the taker's state machine
         * would then accept commits on it before its own log adopted it.) */
        if (rv == 0 && avm_rctl_hosts(t->r, to.u.s->data))
            avm_mgr_in_transit(t->m, oid);
    }
    for (size_t i = 0; rv == 0 && i < p->adopt.ncreates; i++) {
        const avm_create *k = &p->adopt.creates[i];
        avm_objrec rec = {.oid = k->oid,
                          .beh = k->beh,
                          .meta = k->meta,
                          .state = p->adopt.states[i].b,
                          .version = p->adopt.reads[i].version};
        rv = avm_mgr_stage_put(t->m, &rec);
        avm_read r = {k->oid, rec.version};
        if (rv == 0)
            versions_add(vers, nv, &cap, &r, 1);
    }
    return rv;
}

/* --- Durable records -------------------------------------------------------------- */

static int kv_put_val(avm_txn *t, const char *group, const char *prefix, const char *txid,
                      avm_val v)
{
    char key[TXN_ID + 8];
    int kl = snprintf(key, sizeof(key), "%s%s", prefix, txid);
    avm_buf b;
    avm_buf_init(&b);
    int rv = avm_val_encode(&b, v);
    if (rv == 0 && b.err)
        rv = AVM_ENOMEM;
    if (rv == 0)
        rv = avm_lmdb_raft_kv_put(t->db, group, (const uint8_t *)key, (size_t)kl,
                                  (const uint8_t *)b.data, b.len);
    avm_buf_free(&b);
    return rv;
}

static int kv_del(avm_txn *t, const char *group, const char *prefix, const char *txid)
{
    char key[TXN_ID + 8];
    int kl = snprintf(key, sizeof(key), "%s%s", prefix, txid);
    int rv = avm_lmdb_raft_kv_del(t->db, group, (const uint8_t *)key, (size_t)kl);
    return rv == AVM_ENOTFOUND ? 0 : rv;
}

static bool kv_has(avm_txn *t, const char *group, const char *prefix, const char *txid,
                   avm_buf *out)
{
    char key[TXN_ID + 8];
    int kl = snprintf(key, sizeof(key), "%s%s", prefix, txid);
    avm_buf tmp;
    avm_buf *b = out != NULL ? out : &tmp;
    int rv = avm_lmdb_raft_kv_get(t->db, group, (const uint8_t *)key, (size_t)kl, b);
    if (out == NULL && rv == 0)
        avm_buf_free(&tmp);
    return rv == 0;
}

static intent *intent_find(avm_txn *t, const char *group, const char *txid)
{
    for (intent *i = t->intents; i != NULL; i = i->next)
        if (strcmp(i->group, group) == 0 && strcmp(i->txid, txid) == 0)
            return i;
    return NULL;
}

static void intent_free(intent *i)
{
    part_free(&i->p);
    avm_val_release(i->partv);
    avm_val_release(i->parts);
    free(i);
}

static void intent_unlink(avm_txn *t, intent *x)
{
    for (intent **pp = &t->intents; *pp != NULL; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            intent_free(x);
            return;
        }
}

/* Takes partv (retained here). */
static intent *intent_add(avm_txn *t, const char *group, const char *txid,
                          const char *coord, avm_val parts, avm_val partv)
{
    intent *i = calloc(1, sizeof(*i));
    if (i == NULL)
        return NULL;
    char err[200];
    if (part_from(t, partv, &i->p, err, sizeof(err)) != 0) {
        free(i);
        return NULL;
    }
    snprintf(i->group, sizeof(i->group), "%s", group);
    snprintf(i->txid, sizeof(i->txid), "%s", txid);
    snprintf(i->coord, sizeof(i->coord), "%s", coord);
    avm_val_retain(parts);
    i->parts = parts;
    avm_val_retain(partv);
    i->partv = partv;
    i->since = now_ms();
    i->next = t->intents;
    t->intents = i;
    return i;
}

static decision *decision_find(avm_txn *t, const char *group, const char *txid)
{
    for (decision *d = t->decisions; d != NULL; d = d->next)
        if (strcmp(d->group, group) == 0 && strcmp(d->txid, txid) == 0)
            return d;
    return NULL;
}

static void decision_unlink(avm_txn *t, decision *x)
{
    for (decision **pp = &t->decisions; *pp != NULL; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            if (x->pending > 0) { /* finishes in flight point at it: they let go */
                x->group[0] = '\0';
                x->next = NULL;
                return;
            }
            avm_val_release(x->parts);
            free(x);
            return;
        }
}

static decision *decision_add(avm_txn *t, const char *group, const char *txid,
                              bool commit, avm_val parts)
{
    decision *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return NULL;
    snprintf(d->group, sizeof(d->group), "%s", group);
    snprintf(d->txid, sizeof(d->txid), "%s", txid);
    d->commit = commit;
    avm_val_retain(parts);
    d->parts = parts;
    d->since = now_ms();
    d->next = t->decisions;
    t->decisions = d;
    return d;
}

/* --- The state machine ------------------------------------------------------------ */

static bool names_ok(avm_val l)
{
    if (l.kind != AVM_LIST || avm_list_len(l) < 2 || avm_list_len(l) > TXN_MAX_PARTS)
        return false;
    for (size_t i = 0; i < avm_list_len(l); i++)
        if (sv(l, i) == NULL)
            return false;
    return true;
}

static bool has_name(avm_val l, const char *name)
{
    for (size_t i = 0; i < avm_list_len(l); i++)
        if (sv(l, i) != NULL && strcmp(sv(l, i), name) == 0)
            return true;
    return false;
}

int avm_txn_apply(avm_txn *t, const char *group, uint64_t index, avm_val cmd,
                  bool *committed, avm_read **vers, size_t *nv)
{
    *committed = false;
    *vers = NULL;
    *nv = 0;
    const char *kind = sv(cmd, 0), *txid = sv(cmd, 2);
    size_t n = avm_list_len(cmd);
    char err[256] = "";
    avm_val ctrl = ctrl_of(group);
    int rv = 0;
    if (kind == NULL || txid == NULL || strlen(txid) >= TXN_ID) {
        snprintf(err, sizeof(err), "a transaction command without a transaction id");
    } else if (strcmp(kind, "prep") == 0 && n == 6 && sv(cmd, 3) != NULL &&
               names_ok(avm_list_at(cmd, 4)) && has_name(avm_list_at(cmd, 4), group)) {
        /* ["prep", reqid, txid, coordinator, [participants], part] */
        part p;
        const char *why = NULL;
        if (kv_has(t, group, "d/fin:", txid, NULL)) {
            why = "the transaction was already finished";
        } else if (intent_find(t, group, txid) != NULL) {
            *committed = true; /* prepared already (cannot happen: same request id) */
        } else if (part_from(t, avm_list_at(cmd, 5), &p, err, sizeof(err)) != 0) {
            why = err;
        } else {
            intent *b = blocker(t, group, &p, txid);
            why = b != NULL ? "an intent of another transaction holds it"
                  : part_authority(t, ctrl, &p) ? part_authority(t, ctrl, &p)
                  : !valid_reads(t, &p.ws)      ? "a version it read has changed"
                                                : NULL;
            part_free(&p);
            if (why == NULL) {
                avm_val rec =
                    lst(3, cstr(sv(cmd, 3)), avm_list_at(cmd, 4), avm_list_at(cmd, 5));
                avm_val_retain(avm_list_at(cmd, 4));
                avm_val_retain(avm_list_at(cmd, 5));
                rv = rec.kind == AVM_NIL ? AVM_ENOMEM
                                         : kv_put_val(t, group, "x/", txid, rec);
                avm_val_release(rec);
                if (rv == 0 && intent_add(t, group, txid, sv(cmd, 3), avm_list_at(cmd, 4),
                                          avm_list_at(cmd, 5)) == NULL)
                    rv = AVM_ENOMEM;
                *committed = rv == 0;
                t->st.prepared += rv == 0;
            }
        }
        if (why != NULL)
            cl_logf(t->c, CL_DEBUG, "txn.prepare", "refused", "%s entry %llu: %s: %s",
                    group, (unsigned long long)index, txid, why);
    } else if (strcmp(kind, "dec") == 0 && n == 6 &&
               avm_list_at(cmd, 3).kind == AVM_BOOL && names_ok(avm_list_at(cmd, 4)) &&
               has_name(avm_list_at(cmd, 4), group)) {
        /* ["dec", reqid, txid, commit?, [participants], own part or nil] */
        avm_buf prev;
        if (kv_has(t, group, "o/", txid, &prev)) {
            avm_val pv;
            if (avm_val_decode_all((const uint8_t *)prev.data, prev.len, &pv) == 0) {
                *committed = pv.kind == AVM_LIST && avm_list_len(pv) == 2 &&
                             avm_truthy(avm_list_at(pv, 0));
                avm_val_release(pv);
            }
            avm_buf_free(&prev);
        } else {
            bool commit = false;
            if (avm_truthy(avm_list_at(cmd, 3))) {
                part p;
                if (part_from(t, avm_list_at(cmd, 5), &p, err, sizeof(err)) == 0) {
                    const char *why = blocker(t, group, &p, txid) != NULL
                                          ? "an intent of another transaction holds it"
                                          : part_authority(t, ctrl, &p);
                    if (why == NULL)
                        rv = apply_part(t, ctrl, &p, true, &commit, vers, nv);
                    else
                        cl_logf(t->c, CL_DEBUG, "txn.decide", "refused", "%s: %s: %s",
                                group, txid, why);
                    part_free(&p);
                }
            }
            avm_val rec = lst(2, avm_bool(commit), avm_list_at(cmd, 4));
            avm_val_retain(avm_list_at(cmd, 4));
            if (rv == 0)
                rv = rec.kind == AVM_NIL ? AVM_ENOMEM
                                         : kv_put_val(t, group, "o/", txid, rec);
            avm_val_release(rec);
            if (rv == 0 &&
                decision_add(t, group, txid, commit, avm_list_at(cmd, 4)) == NULL)
                rv = AVM_ENOMEM;
            *committed = commit;
        }
    } else if (strcmp(kind, "fin") == 0 && n == 4 &&
               avm_list_at(cmd, 3).kind == AVM_BOOL) {
        /* ["fin", "fin:<txid>", txid, commit?] */
        bool commit = avm_truthy(avm_list_at(cmd, 3));
        intent *i = intent_find(t, group, txid);
        if (i != NULL) {
            if (commit) {
                bool ok = false;
                rv = apply_part(t, ctrl, &i->p, false, &ok, vers, nv);
                if (rv == 0 && !ok)
                    cl_logf(t->c, CL_ERROR, "txn.finish", "error",
                            "%s: %s: the prepared part did not apply", group, txid);
            }
            if (rv == 0)
                rv = kv_del(t, group, "x/", txid);
            if (rv == 0) {
                intent_unlink(t, i);
                t->st.finished++;
            }
        }
        *committed = commit;
    } else if (strcmp(kind, "forget") == 0 && n == 3) {
        rv = kv_del(t, group, "o/", txid);
        decision *d = decision_find(t, group, txid);
        if (rv == 0 && d != NULL)
            decision_unlink(t, d);
        *committed = true;
    } else {
        snprintf(err, sizeof(err), "a malformed %s command", kind ? kind : "transaction");
    }
    if (getenv("AVM_TXN_TRACE") != NULL) {
        avm_buf pb;
        avm_buf_init(&pb);
        avm_val_print(&pb, cmd);
        cl_logf(t->c, CL_INFO, "txn.trace", "entry", "%s %llu -> %d: %.*s", group,
                (unsigned long long)index, *committed, (int)(pb.len > 900 ? 900 : pb.len),
                pb.data);
        avm_buf_free(&pb);
    }
    if (err[0] != '\0' && rv == 0 && !*committed)
        cl_logf(t->c, CL_WARN, "txn.apply", "error", "%s entry %llu: %s", group,
                (unsigned long long)index, err);
    avm_val_release(ctrl);
    if (rv != 0) {
        versions_drop(*vers, *nv);
        *vers = NULL;
        *nv = 0;
    }
    return rv;
}

/* --- Loading the records of a group ---------------------------------------------- */

typedef struct scan_ctx {
    avm_txn *t;
    const char *group;
    bool decisions;
} scan_ctx;

static int scan_one(void *arg, const uint8_t *key, size_t klen, const uint8_t *val,
                    size_t vlen)
{
    scan_ctx *x = arg;
    char txid[TXN_ID];
    if (klen < 3 || klen - 2 >= sizeof(txid))
        return 0;
    memcpy(txid, key + 2, klen - 2);
    txid[klen - 2] = '\0';
    avm_val v;
    if (avm_val_decode_all(val, vlen, &v) != 0) {
        cl_logf(x->t->c, CL_ERROR, "txn.load", "error", "%s: %s: a corrupt record",
                x->group, txid);
        return 0;
    }
    if (x->decisions) {
        if (v.kind == AVM_LIST && avm_list_len(v) == 2)
            decision_add(x->t, x->group, txid, avm_truthy(avm_list_at(v, 0)),
                         avm_list_at(v, 1));
    } else if (v.kind == AVM_LIST && avm_list_len(v) == 3 && sv(v, 0) != NULL) {
        if (intent_add(x->t, x->group, txid, sv(v, 0), avm_list_at(v, 1),
                       avm_list_at(v, 2)) == NULL)
            cl_logf(x->t->c, CL_ERROR, "txn.load", "error",
                    "%s: %s: an unreadable intent", x->group, txid);
    }
    avm_val_release(v);
    return 0;
}

void avm_txn_drop(avm_txn *t, const char *group)
{
    if (t == NULL)
        return;
    intent **ip = &t->intents;
    while (*ip != NULL) {
        intent *i = *ip;
        if (strcmp(i->group, group) == 0) {
            *ip = i->next;
            intent_free(i);
        } else {
            ip = &i->next;
        }
    }
    decision *d = t->decisions, *next;
    for (; d != NULL; d = next) {
        next = d->next;
        if (strcmp(d->group, group) == 0)
            decision_unlink(t, d);
    }
}

int avm_txn_load(avm_txn *t, const char *group)
{
    if (t == NULL)
        return 0;
    avm_txn_drop(t, group);
    scan_ctx x = {t, group, false};
    int rv = avm_lmdb_raft_kv_scan(t->db, group, (const uint8_t *)"x/", 2, scan_one, &x);
    x.decisions = true;
    if (rv == 0)
        rv = avm_lmdb_raft_kv_scan(t->db, group, (const uint8_t *)"o/", 2, scan_one, &x);
    return rv;
}

/* --- The transaction manager ---------------------------------------------------------
 */

static void txn_free(txn *x)
{
    for (size_t i = 0; i < x->n; i++)
        avm_val_release(x->partv[i]);
    avm_val_release(x->namesv);
    versions_drop(x->versions, x->nversions);
    free(x);
}

static void txn_unlink(avm_txn *t, txn *x)
{
    for (txn **pp = &t->txns; *pp != NULL; pp = &(*pp)->next)
        if (*pp == x) {
            *pp = x->next;
            return;
        }
}

static avm_val new_id(avm_txn *t, const char *prefix)
{
    char id[TXN_ID];
    snprintf(id, sizeof(id), "%s%s/%llu/%llu", prefix, cl_self(t->c),
             (unsigned long long)cl_incarnation(t->c), (unsigned long long)++t->next_id);
    return cstr(id);
}

/* ["forget", "forget:<txid>", txid]: every step of a transaction has a request id
 * derived from its txid (prep:, dec:, fin:, forget:), so that a transaction driven
 * again (a named commit after its node restarted) meets its first steps. */
static avm_val forget_cmd(const char *txid)
{
    char rid[TXN_ID + 8];
    snprintf(rid, sizeof(rid), "forget:%s", txid);
    return lst(3, cstr("forget"), cstr(rid), cstr(txid));
}

static void txn_end(avm_txn *t, txn *x, int rv, const char *why)
{
    txn_unlink(t, x);
    if (rv == 0) {
        t->st.committed += x->commit;
        t->st.aborted += !x->commit;
        avm_rctl_cross_latency(t->r, uv_hrtime() / 1000 - x->t_us);
    } else {
        t->st.unknown++;
    }
    if (x->done != NULL)
        x->done(x->arg, rv, rv == 0 && x->commit, x->versions, x->nversions, why);
    txn_free(x);
}

typedef struct tref {
    txn *x;
    size_t i;
} tref;

static void submit_or_fail(avm_txn *t, const char *group, avm_val cmd, avm_rctl_cb cb,
                           void *arg);

static void on_fin(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                   const char *why)
{
    txn *x = arg;
    avm_txn *t = x->t;
    if (rv == 0 && x->commit)
        versions_add(&x->versions, &x->nversions, &x->capversions, v, nv);
    x->fin_failed |= rv != 0;
    if (--x->waiting > 0)
        return;
    /* Every participant has applied (or dropped) its part: the coordinator forgets
     * the decision. Not when a finish failed: that participant may still hold its
     * intent, and its recovery would find no decision and abort; the coordinator's
     * leader drives the decision instead (sweep). */
    if (!t->stopped && !x->fin_failed) {
        avm_val cmd = forget_cmd(x->txid);
        submit_or_fail(t, x->names[x->coord], cmd, NULL, NULL);
        avm_val_release(cmd);
    }
    txn_end(t, x, 0, NULL);
}

/* The finishes of an aborted transaction, answered already. */
typedef struct fint {
    avm_txn *t;
    char coord[TXN_NAME];
    char txid[TXN_ID];
    size_t waiting;
} fint;

static void fint_done(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                      const char *why)
{
    fint *f = arg;
    if (--f->waiting > 0)
        return;
    if (!f->t->stopped) {
        avm_val cmd = forget_cmd(f->txid);
        submit_or_fail(f->t, f->coord, cmd, NULL, NULL);
        avm_val_release(cmd);
    }
    free(f);
}

static void finish_aborted(avm_txn *t, txn *x)
{
    fint *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return; /* the coordinator's recovery finishes them */
    f->t = t;
    snprintf(f->coord, sizeof(f->coord), "%s", x->names[x->coord]);
    snprintf(f->txid, sizeof(f->txid), "%s", x->txid);
    f->waiting = 1; /* held while they go out */
    char rid[TXN_ID + 8];
    snprintf(rid, sizeof(rid), "fin:%s", x->txid);
    for (size_t i = 0; i < x->n; i++) {
        if (i == x->coord)
            continue;
        f->waiting++;
        avm_val cmd = lst(4, cstr("fin"), cstr(rid), cstr(x->txid), avm_bool(false));
        submit_or_fail(t, x->names[i], cmd, fint_done, f);
        avm_val_release(cmd);
    }
    fint_done(f, 0, false, NULL, 0, NULL);
}

static void on_dec(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                   const char *why)
{
    txn *x = arg;
    avm_txn *t = x->t;
    if (rv != 0) {
        /* No answer from the coordinator's group: the decision is unknown here;
         * the participants' recovery settles it. */
        char w[400];
        snprintf(w, sizeof(w),
                 "controller %s (the coordinator of a commit across controllers) did not "
                 "answer: the outcome is unknown until recovery settles it (%.200s)",
                 x->names[x->coord], why ? why : avm_strerror(rv));
        txn_end(t, x, AVM_EUNREACHABLE, w);
        return;
    }
    x->commit = committed;
    if (!committed) {
        /* Nothing to read back: the execution has its answer now; the others drop
         * their intents (and the coordinator forgets) in the background. */
        finish_aborted(t, x);
        txn_end(t, x, 0, NULL);
        return;
    }
    versions_add(&x->versions, &x->nversions, &x->capversions, v, nv);
    x->waiting = x->n - 1;
    for (size_t i = 0; i < x->n; i++) {
        if (i == x->coord)
            continue;
        char rid[TXN_ID + 8];
        snprintf(rid, sizeof(rid), "fin:%s", x->txid);
        avm_val cmd = lst(4, cstr("fin"), cstr(rid), cstr(x->txid), avm_bool(committed));
        submit_or_fail(t, x->names[i], cmd, on_fin, x);
        avm_val_release(cmd);
    }
}

static void decide(avm_txn *t, txn *x)
{
    avm_val own = x->all_yes ? x->partv[x->coord] : avm_nil();
    avm_val_retain(own);
    avm_val_retain(x->namesv);
    /* One request id per transaction ("dec:<txid>", the recovery's too): the first
     * decision applied answers every later one, even once it is forgotten; a
     * decision still in flight cannot commit after an abort was recorded. */
    char rid[TXN_ID + 8];
    snprintf(rid, sizeof(rid), "dec:%s", x->txid);
    avm_val cmd = lst(6, cstr("dec"), cstr(rid), cstr(x->txid), avm_bool(x->all_yes),
                      x->namesv, own);
    submit_or_fail(t, x->names[x->coord], cmd, on_dec, x);
    avm_val_release(cmd);
}

static void on_prep(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                    const char *why)
{
    tref *ref = arg;
    txn *x = ref->x;
    size_t i = ref->i;
    free(ref);
    if (rv != 0 || !committed) {
        if (x->all_yes)
            snprintf(x->why, sizeof(x->why), "controller %s voted no%s%.200s",
                     x->names[i], rv ? ": " : "",
                     rv ? (why ? why : avm_strerror(rv)) : "");
        x->all_yes = false;
    }
    if (--x->waiting == 0)
        decide(x->t, x);
}

/* Proposes cmd to group; a proposal that cannot even start calls cb at once with
 * the error (from the next loop iteration: callers may hold state). */
static void submit_or_fail(avm_txn *t, const char *group, avm_val cmd, avm_rctl_cb cb,
                           void *arg)
{
    char err[256] = "";
    int rv = cmd.kind == AVM_NIL
                 ? AVM_ENOMEM
                 : avm_rctl_submit(t->r, group, cmd, cb, arg, err, sizeof(err));
    if (rv != 0 && cb != NULL)
        cb(arg, rv, false, NULL, 0, err[0] ? err : avm_strerror(rv));
}

/* --- Splitting a write set -----------------------------------------------------------
 */

typedef struct split {
    avm_read *reads;
    avm_create *creates;
    avm_pair *transfers, *moves, *states;
    avm_val *destroys;
    avm_writeset ws;
    avm_val releases[256], rtargets[256];
    size_t nreleases;
    avm_create *acreates;
    avm_pair *astates;
    avm_read *areads;
    avm_writeset adopt;
} split;

static void split_free(split *s)
{
    free(s->reads);
    free(s->creates);
    free(s->transfers);
    free(s->moves);
    free(s->states);
    free(s->destroys);
    free(s->acreates);
    free(s->astates);
    free(s->areads);
}

/* The controller of oid as this node knows it (borrowed), or nil. */
static avm_val ctrl_known(avm_txn *t, const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_val_eq(ws->creates[i].oid, oid))
            return ws->creates[i].meta.current;
    const avm_objrec *r = avm_mgr_known(t->m, oid);
    return r != NULL ? r->meta.current : avm_nil();
}

/* Where oid ends up: the target of its last transfer in ws, else its controller. */
static avm_val ctrl_final(avm_txn *t, const avm_writeset *ws, avm_val oid)
{
    avm_val c = ctrl_known(t, ws, oid);
    for (size_t i = 0; i < ws->ntransfers; i++)
        if (avm_val_eq(ws->transfers[i].a, oid))
            c = ws->transfers[i].b;
    return c;
}

static int add_name(char names[][TXN_NAME], size_t *n, avm_val c, char *err, size_t en)
{
    if (c.kind != AVM_CTRLID) {
        snprintf(err, en,
                 "an object without a controller in a commit across controllers");
        return AVM_ESTATE;
    }
    for (size_t i = 0; i < *n; i++)
        if (strcmp(names[i], c.u.s->data) == 0)
            return 0;
    if (*n == TXN_MAX_PARTS) {
        snprintf(err, en, "a commit across more than %d controllers", TXN_MAX_PARTS);
        return AVM_ETOOBIG;
    }
    if (c.u.s->len >= TXN_NAME) {
        snprintf(err, en, "a controller name of %zu bytes", (size_t)c.u.s->len);
        return AVM_EINVAL;
    }
    snprintf(names[(*n)++], TXN_NAME, "%s", c.u.s->data);
    return 0;
}

size_t avm_txn_participants(avm_txn *t, const avm_writeset *ws, char names[][64],
                            size_t max)
{
    char err[200];
    size_t n = 0;
    (void)max;
#define ADD(c)                                                                           \
    do {                                                                                 \
        avm_val c_ = (c);                                                                \
        if (c_.kind == AVM_CTRLID && add_name(names, &n, c_, err, sizeof(err)) != 0)     \
            return n;                                                                    \
    } while (0)
    for (size_t i = 0; i < ws->ncreates; i++)
        ADD(ctrl_final(t, ws, ws->creates[i].oid));
    for (size_t i = 0; i < ws->nreads; i++)
        ADD(ctrl_known(t, ws, ws->reads[i].oid));
    for (size_t i = 0; i < ws->nstates; i++)
        ADD(ctrl_known(t, ws, ws->states[i].a));
    for (size_t i = 0; i < ws->ndestroys; i++)
        ADD(ctrl_known(t, ws, ws->destroys[i]));
    for (size_t i = 0; i < ws->ntransfers; i++) {
        ADD(ctrl_known(t, ws, ws->transfers[i].a));
        ADD(ws->transfers[i].b);
    }
    for (size_t i = 0; i < ws->nmoves; i++)
        ADD(ctrl_known(t, ws, ws->moves[i].a));
#undef ADD
    return n;
}

static bool in_creates_ws(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_val_eq(ws->creates[i].oid, oid))
            return true;
    return false;
}

static bool destroyed(const avm_writeset *ws, avm_val oid)
{
    return in_list(oid, ws->destroys, ws->ndestroys);
}

/* The last state ws writes to oid, or nil. */
static avm_val state_of(const avm_writeset *ws, avm_val oid)
{
    avm_val s = avm_nil();
    for (size_t i = 0; i < ws->nstates; i++)
        if (avm_val_eq(ws->states[i].a, oid))
            s = ws->states[i].b;
    return s;
}

static uint64_t read_version(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->nreads; i++)
        if (avm_val_eq(ws->reads[i].oid, oid))
            return ws->reads[i].version;
    return 0;
}

/* Participant name's part of ws. */
static int split_for(avm_txn *t, const avm_writeset *ws, const char *name, split *s,
                     char *err, size_t en)
{
    memset(s, 0, sizeof(*s));
    size_t cap = ws->nreads + ws->ncreates + ws->ntransfers + ws->nmoves + ws->nstates +
                 ws->ndestroys + 1;
    s->reads = calloc(cap, sizeof(*s->reads));
    s->creates = calloc(cap, sizeof(*s->creates));
    s->transfers = calloc(cap, sizeof(*s->transfers));
    s->moves = calloc(cap, sizeof(*s->moves));
    s->states = calloc(cap, sizeof(*s->states));
    s->destroys = calloc(cap, sizeof(*s->destroys));
    s->acreates = calloc(cap, sizeof(*s->acreates));
    s->astates = calloc(cap, sizeof(*s->astates));
    s->areads = calloc(cap, sizeof(*s->areads));
    if (!s->reads || !s->creates || !s->transfers || !s->moves || !s->states ||
        !s->destroys || !s->acreates || !s->astates || !s->areads)
        return AVM_ENOMEM;
    avm_writeset *o = &s->ws;
    o->reads = s->reads;
    o->creates = s->creates;
    o->transfers = s->transfers;
    o->moves = s->moves;
    o->states = s->states;
    o->destroys = s->destroys;
    o->spec_order = ws->spec_order;
#define MINE(oid)                                                                        \
    (ctrl_known(t, ws, (oid)).kind == AVM_CTRLID &&                                      \
     strcmp(ctrl_known(t, ws, (oid)).u.s->data, name) == 0)
#define LEAVES(oid)                                                                      \
    (ctrl_final(t, ws, (oid)).kind == AVM_CTRLID &&                                      \
     strcmp(ctrl_final(t, ws, (oid)).u.s->data, name) != 0)
    for (size_t i = 0; i < ws->nreads; i++)
        if (MINE(ws->reads[i].oid) && !in_creates_ws(ws, ws->reads[i].oid))
            s->reads[o->nreads++] = ws->reads[i];
    for (size_t i = 0; i < ws->ncreates; i++) {
        avm_val oid = ws->creates[i].oid;
        avm_val fin = ctrl_final(t, ws, oid);
        if (fin.kind != AVM_CTRLID || strcmp(fin.u.s->data, name) != 0)
            continue;
        avm_create k = ws->creates[i];
        k.meta.current = fin; /* created and handed over in one commit */
        s->creates[o->ncreates++] = k;
    }
    for (size_t i = 0; i < ws->ntransfers; i++) {
        avm_val oid = ws->transfers[i].a;
        if (in_creates_ws(ws, oid))
            continue; /* created under its final controller above */
        if (MINE(oid) && !LEAVES(oid)) {
            s->transfers[o->ntransfers++] = ws->transfers[i];
        } else if (MINE(oid) && !destroyed(ws, oid)) {
            if (!in_list(oid, s->releases, s->nreleases)) {
                if (s->nreleases == sizeof(s->releases) / sizeof(s->releases[0])) {
                    snprintf(err, en, "more than 256 objects transferred in one commit");
                    return AVM_ETOOBIG;
                }
                s->rtargets[s->nreleases] = ctrl_final(t, ws, oid);
                s->releases[s->nreleases++] = oid;
            }
        }
    }
    for (size_t i = 0; i < ws->ntransfers; i++) {
        /* The taker: the object's record, as this node knows it (the version the
         * transaction read, checked by the giver), with its final state. */
        avm_val oid = ws->transfers[i].a;
        avm_val fin = ctrl_final(t, ws, oid);
        if (in_creates_ws(ws, oid) || destroyed(ws, oid) || MINE(oid) ||
            fin.kind != AVM_CTRLID || strcmp(fin.u.s->data, name) != 0)
            continue;
        bool dup = false;
        for (size_t k = 0; k < s->adopt.ncreates && !dup; k++)
            dup = avm_val_eq(s->acreates[k].oid, oid);
        if (dup)
            continue;
        const avm_objrec *rec = avm_mgr_known(t->m, oid);
        uint64_t rv = read_version(ws, oid);
        if (rec == NULL || rec->beh.mod == NULL) {
            snprintf(err, en, "transferObject: object %s is not known here",
                     AVM_KIND_HAS_STR(oid.kind) ? oid.u.s->data : "?");
            return AVM_ENOTFOUND;
        }
        if (rv == 0 || rv == AVM_VERSION_EXISTS || rec->version != rv)
            return TXN_STALE; /* the copy here is not the version read */
        avm_val st = state_of(ws, oid);
        size_t k = s->adopt.ncreates++;
        s->acreates[k] = (avm_create){.oid = oid, .beh = rec->beh, .meta = rec->meta};
        s->acreates[k].meta.current = fin;
        s->astates[k] = (avm_pair){oid, st.kind == AVM_LIST ? st : rec->state};
        s->areads[k] = (avm_read){oid, rv + 2};
    }
    s->adopt.creates = s->acreates;
    s->adopt.states = s->astates;
    s->adopt.reads = s->areads;
    s->adopt.nstates = s->adopt.nreads = s->adopt.ncreates;
    for (size_t i = 0; i < ws->nmoves; i++)
        if (MINE(ws->moves[i].a) && !LEAVES(ws->moves[i].a))
            s->moves[o->nmoves++] = ws->moves[i];
    for (size_t i = 0; i < ws->nstates; i++) {
        avm_val oid = ws->states[i].a;
        bool created_here = false;
        for (size_t k = 0; k < o->ncreates && !created_here; k++)
            created_here = avm_val_eq(o->creates[k].oid, oid);
        if (created_here || (MINE(oid) && !LEAVES(oid) && !in_creates_ws(ws, oid)))
            s->states[o->nstates++] = ws->states[i];
    }
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (MINE(ws->destroys[i]))
            s->destroys[o->ndestroys++] = ws->destroys[i];
#undef MINE
#undef LEAVES
    return 0;
}

static avm_val split_val(avm_txn *t, split *s)
{
    avm_val rel;
    if (avm_list_new(s->nreleases, &rel) != 0)
        return avm_nil();
    for (size_t i = 0; i < s->nreleases; i++) {
        avm_val_retain(s->releases[i]);
        avm_val_retain(s->rtargets[i]);
        rel.u.l->items[i] = lst(2, s->releases[i], s->rtargets[i]);
    }
    avm_list_seal(rel);
    avm_val a = s->adopt.ncreates > 0 ? cl_ws_val(t->c, &s->adopt) : avm_nil();
    return lst(3, cl_ws_val(t->c, &s->ws), rel, a);
}

int avm_txn_commit(avm_txn *t, const avm_writeset *ws, avm_txn_done done, void *arg,
                   char *errmsg, size_t errlen)
{
    if (t == NULL || t->m == NULL) {
        snprintf(errmsg, errlen, "this node is starting");
        return AVM_ESTATE;
    }
    txn *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return AVM_ENOMEM;
    x->t = t;
    x->done = done;
    x->arg = arg;
    x->all_yes = true;
    x->t_us = uv_hrtime() / 1000;
    x->n = avm_txn_participants(t, ws, x->names, TXN_MAX_PARTS);
    int rv = 0;
    if (x->n < 2) {
        snprintf(errmsg, errlen, "not a commit across controllers");
        rv = AVM_EINVAL;
    }
    for (size_t i = 0; rv == 0 && i < x->n; i++) {
        avm_val c = ctrl_of(x->names[i]);
        if (!avm_rctl_replicated(t->r, c)) {
            snprintf(errmsg, errlen,
                     "controller %s is not replicated: commits across controllers and "
                     "transfers between them need replicated controllers (avmctl "
                     "controller create)",
                     x->names[i]);
            rv = AVM_ESTATE;
        }
        /* A named commit (write-ahead, manager.c) may be driven again after the
         * executing node restarted: its decision must be asked of the same group
         * then, the first participant. */
        if (rv == 0 && ws->commit_key == NULL && avm_rctl_leads(t->r, c))
            x->coord = i; /* the decision is recorded without a hop */
        avm_val_release(c);
    }
    avm_val nv;
    if (rv == 0 && avm_list_new(x->n, &nv) == 0) {
        for (size_t i = 0; i < x->n; i++)
            nv.u.l->items[i] = ctrl_of(x->names[i]);
        avm_list_seal(nv);
        x->namesv = nv;
    } else if (rv == 0) {
        rv = AVM_ENOMEM;
    }
    for (size_t i = 0; rv == 0 && i < x->n; i++) {
        split s;
        rv = split_for(t, ws, x->names[i], &s, errmsg, errlen);
        if (rv == 0) {
            x->partv[i] = split_val(t, &s);
            if (x->partv[i].kind == AVM_NIL)
                rv = AVM_ENOMEM;
        }
        split_free(&s);
    }
    if (rv == TXN_STALE) {
        /* A copy changed since the transaction read it: the commit fails
         * validation (returns false), as it would at the giver. */
        x->commit = false;
        t->st.aborted++;
        done(arg, 0, false, NULL, 0, NULL);
        txn_free(x);
        return 0;
    }
    if (rv != 0) {
        txn_free(x);
        return rv;
    }
    if (ws->commit_key != NULL) {
        /* Named by the execution: driven again after its node restarted, the same
         * transaction meets its own prepare, decision and finish (all their
         * request ids derive from the txid) and gets the first decision. */
        int kl = snprintf(x->txid, sizeof(x->txid), "tx:%s", ws->commit_key);
        if (kl < 0 || (size_t)kl >= sizeof(x->txid)) {
            snprintf(errmsg, errlen, "a commit name longer than %d bytes", TXN_ID - 4);
            txn_free(x);
            return AVM_EINVAL;
        }
    } else {
        avm_val id = new_id(t, "tx:");
        snprintf(x->txid, sizeof(x->txid), "%s",
                 AVM_KIND_HAS_STR(id.kind) ? id.u.s->data : "");
        avm_val_release(id);
    }
    x->next = t->txns;
    t->txns = x;
    t->st.started++;
    /* Prepare at every participant but the coordinator, in parallel. */
    x->waiting = x->n - 1;
    for (size_t i = 0; i < x->n; i++) {
        if (i == x->coord)
            continue;
        tref *ref = malloc(sizeof(*ref));
        if (ref == NULL) {
            x->all_yes = false;
            if (--x->waiting == 0)
                decide(t, x);
            continue;
        }
        *ref = (tref){x, i};
        avm_val_retain(x->namesv);
        avm_val_retain(x->partv[i]);
        char rid[TXN_ID + 8];
        snprintf(rid, sizeof(rid), "prep:%s", x->txid);
        avm_val cmd = lst(6, cstr("prep"), cstr(rid), cstr(x->txid),
                          cstr(x->names[x->coord]), x->namesv, x->partv[i]);
        submit_or_fail(t, x->names[i], cmd, on_prep, ref);
        avm_val_release(cmd);
    }
    return 0;
}

/* --- Recovery ------------------------------------------------------------------------
 */

typedef struct rref {
    avm_txn *t;
    char group[TXN_NAME];
    char txid[TXN_ID];
} rref;

static void resolve_fin_done(void *arg, int rv, bool committed, const avm_read *v,
                             size_t nv, const char *why)
{
    rref *ref = arg;
    avm_txn *t = ref->t;
    intent *i = intent_find(t, ref->group, ref->txid);
    if (i != NULL)
        i->resolving = false; /* not finished: tried again later */
    else if (rv == 0)
        t->st.recovered++;
    free(ref);
}

static void resolve_dec_done(void *arg, int rv, bool committed, const avm_read *v,
                             size_t nv, const char *why)
{
    rref *ref = arg;
    avm_txn *t = ref->t;
    intent *i = intent_find(t, ref->group, ref->txid);
    if (rv != 0 || i == NULL || t->stopped) {
        if (i != NULL)
            i->resolving = false;
        free(ref);
        return;
    }
    cl_logf(t->c, CL_INFO, "txn.recover", "txid", "%s: %s was decided: %s", ref->group,
            ref->txid, committed ? "commit" : "abort");
    char rid[TXN_ID + 8];
    snprintf(rid, sizeof(rid), "fin:%s", ref->txid);
    avm_val cmd = lst(4, cstr("fin"), cstr(rid), cstr(ref->txid), avm_bool(committed));
    submit_or_fail(t, ref->group, cmd, resolve_fin_done, ref);
    avm_val_release(cmd);
}

typedef struct dref {
    avm_txn *t;
    decision *d;
} dref;

static void drive_fin_done(void *arg, int rv, bool committed, const avm_read *v,
                           size_t nv, const char *why)
{
    dref *ref = arg;
    avm_txn *t = ref->t;
    decision *d = ref->d;
    free(ref);
    d->failed |= rv != 0;
    if (--d->pending > 0)
        return;
    if (d->group[0] == '\0') { /* forgotten meanwhile */
        avm_val_release(d->parts);
        free(d);
        return;
    }
    d->driving = false;
    if (d->failed || t->stopped)
        return;
    avm_val cmd = forget_cmd(d->txid);
    submit_or_fail(t, d->group, cmd, NULL, NULL);
    avm_val_release(cmd);
    t->st.recovered++;
}

static bool leads(avm_txn *t, const char *group)
{
    avm_val c = ctrl_of(group);
    bool l = avm_rctl_leads(t->r, c);
    avm_val_release(c);
    return l;
}

static void sweep(avm_txn *t)
{
    uint64_t now = now_ms();
    for (intent *i = t->intents; i != NULL; i = i->next) {
        if (i->resolving || now < i->since + TXN_RESOLVE_MS || !leads(t, i->group))
            continue;
        bool mine = false; /* a transaction this node drives is not in doubt */
        for (txn *x = t->txns; x != NULL && !mine; x = x->next)
            mine = strcmp(x->txid, i->txid) == 0;
        if (mine)
            continue;
        rref *ref = calloc(1, sizeof(*ref));
        if (ref == NULL)
            continue;
        ref->t = t;
        snprintf(ref->group, sizeof(ref->group), "%s", i->group);
        snprintf(ref->txid, sizeof(ref->txid), "%s", i->txid);
        i->resolving = true;
        cl_logf(t->c, CL_INFO, "txn.recover", "txid",
                "%s: %s in doubt for %llu ms: asking its coordinator %s", i->group,
                i->txid, (unsigned long long)(now - i->since), i->coord);
        avm_val_retain(i->parts);
        char rid[TXN_ID + 8];
        snprintf(rid, sizeof(rid), "dec:%s", i->txid); /* as decide's */
        avm_val cmd = lst(6, cstr("dec"), cstr(rid), cstr(i->txid), avm_bool(false),
                          i->parts, avm_nil());
        submit_or_fail(t, i->coord, cmd, resolve_dec_done, ref);
        avm_val_release(cmd);
    }
    for (decision *d = t->decisions; d != NULL; d = d->next) {
        if (d->driving || now < d->since + TXN_DRIVE_MS || !leads(t, d->group))
            continue;
        bool mine = false;
        for (txn *x = t->txns; x != NULL && !mine; x = x->next)
            mine = strcmp(x->txid, d->txid) == 0;
        if (mine)
            continue;
        d->driving = true;
        d->failed = false;
        d->since = now; /* next try, if this one fails, after another period */
        char rid[TXN_ID + 8];
        snprintf(rid, sizeof(rid), "fin:%s", d->txid);
        size_t n = avm_list_len(d->parts);
        d->pending = 1; /* held while the finishes go out */
        for (size_t k = 0; k < n; k++) {
            const char *g = sv(d->parts, k);
            if (g == NULL || strcmp(g, d->group) == 0)
                continue;
            dref *ref = malloc(sizeof(*ref));
            if (ref == NULL) {
                d->failed = true;
                continue;
            }
            *ref = (dref){t, d};
            d->pending++;
            avm_val cmd =
                lst(4, cstr("fin"), cstr(rid), cstr(d->txid), avm_bool(d->commit));
            submit_or_fail(t, g, cmd, drive_fin_done, ref);
            avm_val_release(cmd);
        }
        dref *self = malloc(sizeof(*self));
        if (self != NULL) {
            *self = (dref){t, d};
            drive_fin_done(self, 0, true, NULL, 0, NULL);
        } else {
            d->pending--;
            d->driving = false;
        }
    }
}

static void on_timer(uv_timer_t *h)
{
    avm_txn *t = h->data;
    if (!t->stopped && (t->intents != NULL || t->decisions != NULL))
        sweep(t);
}

/* --- Lifecycle and inspection ------------------------------------------------------ */

int avm_txn_new(avm_cluster *c, avm_rctl *r, avm_mgr *m, avm_lmdb *db, avm_txn **out)
{
    avm_txn *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return AVM_ENOMEM;
    t->c = c;
    t->r = r;
    t->m = m;
    t->db = db;
    if (uv_timer_init(cl_loop(c), &t->timer) != 0) {
        free(t);
        return AVM_EIO;
    }
    t->timer.data = t;
    t->timer_init = true;
    uv_timer_start(&t->timer, on_timer, TXN_TICK_MS, TXN_TICK_MS);
    uv_unref((uv_handle_t *)&t->timer);
    *out = t;
    return 0;
}

void avm_txn_stop(avm_txn *t)
{
    if (t == NULL || t->stopped)
        return;
    t->stopped = true;
    if (t->timer_init)
        uv_close((uv_handle_t *)&t->timer, NULL);
}

void avm_txn_free(avm_txn *t)
{
    if (t == NULL)
        return;
    while (t->txns != NULL) {
        txn *x = t->txns;
        t->txns = x->next;
        txn_free(x);
    }
    while (t->intents != NULL) {
        intent *i = t->intents;
        t->intents = i->next;
        intent_free(i);
    }
    while (t->decisions != NULL) {
        decision *d = t->decisions;
        t->decisions = d->next;
        avm_val_release(d->parts);
        free(d);
    }
    free(t);
}

void avm_txn_stats_get(avm_txn *t, avm_txn_stats *st)
{
    memset(st, 0, sizeof(*st));
    if (t == NULL)
        return;
    *st = t->st;
    for (intent *i = t->intents; i != NULL; i = i->next)
        st->intents++;

    for (txn *x = t->txns; x != NULL; x = x->next)
        st->inflight++;
}

void avm_txn_count(avm_txn *t, const char *group, size_t *intents, size_t *decisions)
{
    *intents = *decisions = 0;
    for (intent *i = t != NULL ? t->intents : NULL; i != NULL; i = i->next)
        *intents += strcmp(i->group, group) == 0;
    for (decision *d = t != NULL ? t->decisions : NULL; d != NULL; d = d->next)
        *decisions += strcmp(d->group, group) == 0;
}
