/* The cluster layer: membership, reachability, object location, roaming executions
 * and forwarded control requests over the node-to-node links (see cluster.h). */
#include "cluster.h"
#include "cluster_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "solver.h"
#include "detector.h"
#include "link.h"
#include "module.h"

enum { L_DEBUG, L_INFO, L_WARN, L_ERROR };

#define NAME_MAX_LEN 63
#define URL_MAX_LEN 255
#define MAX_SPREAD 256

typedef struct member {
    char name[NAME_MAX_LEN + 1];
    char url[URL_MAX_LEN + 1];
    char ctrl[NAME_MAX_LEN + 1]; /* "" until known */
    bool reachable;
    uint64_t fed_ms; /* when the failure detector last heard of it */
    uint64_t inc;    /* its incarnation (member_put) */
} member;

/* Where an object was last found (and when its copy came), or where its replica
 * was last pushed. */
typedef struct loc {
    avm_val oid;
    char node[NAME_MAX_LEN + 1];
    uint64_t at_ms;
    struct loc *next;
} loc;

/* The members holding a copy of a record this node holds (they fetched it): each
 * change goes to them. */
typedef struct sub {
    avm_val oid;
    char (*names)[NAME_MAX_LEN + 1];
    size_t n, cap;
    struct sub *next;
} sub;

/* A fetch in flight: asked of one node, then of every reachable member. */
typedef struct fetch {
    avm_cluster *c;
    avm_val oid;
    bool freeze;
    size_t outstanding;
    bool broadcast, answered, unreachable, bad;
    char unreach[NAME_MAX_LEN + 1]; /* a member that could not be asked */
    char first[NAME_MAX_LEN + 1];   /* the node asked first ("" when none) */
    char why[320];
    struct fetch *next;
} fetch;

typedef struct modent {
    avm_module *m;
    avm_val bytes; /* its encoding */
    uint32_t bhash;
    struct modent *next, *pnext; /* by encoding, by module */
} modent;

struct avm_cluster {
    avm_cluster_config cfg;
    char self[NAME_MAX_LEN + 1];
    char ctrl[NAME_MAX_LEN + 1];
    char url[URL_MAX_LEN + 1];
    avm_val self_id; /* AVM_MACHID */
    uv_loop_t *loop;
    avm_link *link;
    avm_fd *fd;
    avm_mgr *m;
    avm_mgr_cluster hooks;
    member *members; /* this node excluded */
    size_t nmembers, capmembers;
    uv_timer_t tick;
    uint64_t last_gossip;
    loc *locs[1024];
    loc *pushed[1024]; /* the machine each record placed elsewhere was last sent to */
    sub *subs[1024];
    size_t nsubs;
    uint32_t copy_ttl_ms;
    uint32_t hb_ms, bound_ms;
    uint64_t inc; /* this node's incarnation: when it started (ms since the epoch) */
    uint64_t last_sweep;
    uint64_t started_ms; /* uv_now at start */
    bool settled;        /* avm_cluster_settled said yes once */
    fetch *fetches;
    modent *mods[256];
    modent *mods_by_ptr[256];
    size_t nmods;
    uint32_t request_ms, forward_ms;
    uint64_t placed;      /* objects placed (spread) */
    avm_rctl *rctl;       /* replicated controllers (Raft groups) */
    avm_bundles *bundles; /* composed commits homed here (bundle.c) */
    bool stopped;
};

/* --- Small helpers ------------------------------------------------------------ */

static void logf_(avm_cluster *c, int level, const char *event, const char *k,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void logf_(avm_cluster *c, int level, const char *event, const char *k,
                  const char *fmt, ...)
{
    if (c->cfg.log == NULL)
        return;
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    c->cfg.log(c->cfg.arg, level, event, k, v);
}

/* The links' log (refused connections) goes to the daemon's. */
static void on_link_log(void *arg, int level, const char *event, const char *k,
                        const char *v)
{
    avm_cluster *c = arg;
    if (c->cfg.log != NULL)
        c->cfg.log(c->cfg.arg, level, event, k, v);
}

static void kick(avm_cluster *c)
{
    if (c->cfg.kick != NULL)
        c->cfg.kick(c->cfg.arg);
}

static avm_val ref(avm_val v)
{
    avm_val_retain(v);
    return v;
}

static avm_val u64v(uint64_t v)
{
    return avm_int((int64_t)v);
}

static bool is_str(avm_val v, avm_kind k)
{
    return v.kind == k;
}

static member *member_find(const avm_cluster *c, const char *name)
{
    for (size_t i = 0; i < c->nmembers; i++)
        if (strcmp(c->members[i].name, name) == 0)
            return &c->members[i];
    return NULL;
}

static member *member_of_val(const avm_cluster *c, avm_val machine)
{
    if (!AVM_KIND_HAS_STR(machine.kind) || machine.u.s->len > NAME_MAX_LEN)
        return NULL;
    return member_find(c, machine.u.s->data);
}

static member *host_of(const avm_cluster *c, avm_val ctrl)
{
    if (!AVM_KIND_HAS_STR(ctrl.kind))
        return NULL;
    for (size_t i = 0; i < c->nmembers; i++)
        if (strcmp(c->members[i].ctrl, ctrl.u.s->data) == 0)
            return &c->members[i];
    return NULL;
}

static bool valid_name(const char *s, size_t n)
{
    if (n == 0 || n > NAME_MAX_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

/* Adds or updates a member (its address, and its controller when known). A member's
 * incarnation is the time it started (wall clock, ms): what a member says of
 * itself in a later incarnation wins over anything older, so a member that comes
 * back on another address is not sent back to the old one by stale gossip.
 * Addresses from the configuration have incarnation 0. */
static int member_put(avm_cluster *c, const char *name, const char *url, const char *ctrl,
                      uint64_t inc)
{
    if (strcmp(name, c->self) == 0)
        return 0;
    if (!valid_name(name, strlen(name)) || strlen(url) > URL_MAX_LEN ||
        strncmp(url, "tcp://", 6) != 0 ||
        (ctrl != NULL && *ctrl && !valid_name(ctrl, strlen(ctrl))))
        return AVM_EINVAL;
    member *mb = member_find(c, name);
    char err[256];
    if (mb != NULL && inc < mb->inc)
        return 0; /* older news */
    if (mb == NULL) {
        if (c->nmembers == c->capmembers) {
            size_t cap = c->capmembers ? c->capmembers * 2 : 8;
            member *n = realloc(c->members, cap * sizeof(*n));
            if (n == NULL)
                return AVM_ENOMEM;
            c->members = n;
            c->capmembers = cap;
        }
        int rv = avm_link_add_peer(c->link, name, url, err, sizeof(err));
        if (rv != 0) {
            logf_(c, L_WARN, "cluster.member", "error", "%s", err);
            return rv;
        }
        mb = &c->members[c->nmembers++];
        memset(mb, 0, sizeof(*mb));
        snprintf(mb->name, sizeof(mb->name), "%s", name);
        snprintf(mb->url, sizeof(mb->url), "%s", url);
        mb->inc = inc;
        logf_(c, L_INFO, "cluster.member", "member", "%s at %s", name, url);
    } else if (strcmp(mb->url, url) != 0) {
        int rv = avm_link_add_peer(c->link, name, url, err, sizeof(err));
        if (rv != 0)
            return rv;
        snprintf(mb->url, sizeof(mb->url), "%s", url);
        logf_(c, L_INFO, "cluster.member", "member", "%s moved to %s", name, url);
    }
    mb->inc = inc;
    if (ctrl != NULL && *ctrl && strcmp(mb->ctrl, ctrl) != 0)
        snprintf(mb->ctrl, sizeof(mb->ctrl), "%s", ctrl);
    return 0;
}

/* [[name, url, controller, incarnation], ...] with this node first. */
static avm_val members_val(avm_cluster *c)
{
    avm_val l;
    if (avm_list_new(c->nmembers + 1, &l) != 0)
        return avm_nil();
    l.u.l->items[0] = lst(4, cstr(c->self), cstr(c->url), cstr(c->ctrl), u64v(c->inc));
    for (size_t i = 0; i < c->nmembers; i++) {
        member *mb = &c->members[i];
        l.u.l->items[i + 1] =
            lst(4, cstr(mb->name), cstr(mb->url), cstr(mb->ctrl), u64v(mb->inc));
    }
    avm_list_seal(l);
    return l;
}

static void members_merge(avm_cluster *c, avm_val l)
{
    if (l.kind != AVM_LIST)
        return;
    for (size_t i = 0; i < avm_list_len(l); i++) {
        avm_val e = avm_list_at(l, i);
        if (e.kind != AVM_LIST || avm_list_len(e) != 4)
            continue;
        avm_val n = avm_list_at(e, 0), u = avm_list_at(e, 1), k = avm_list_at(e, 2),
                t = avm_list_at(e, 3);
        if (!is_str(n, AVM_STR) || !is_str(u, AVM_STR) || !is_str(k, AVM_STR) ||
            t.kind != AVM_INT)
            continue;
        member_put(c, n.u.s->data, u.u.s->data, k.u.s->data, (uint64_t)t.u.i);
    }
}

/* --- Modules and records on the wire -------------------------------------------- */

/* Modules on the wire: each known module is kept with its encoding, found by the
 * encoding (an arriving record or write set: no decoding and verifying again) and
 * by the module (one to send: no encoding again). */
static size_t mod_pbucket(const avm_module *m)
{
    return ((uintptr_t)m >> 4) & 255;
}

static modent *mod_by_bytes(avm_cluster *c, const char *p, size_t n)
{
    uint32_t h = avm_hash_bytes(p, n);
    for (modent *e = c->mods[h & 255]; e != NULL; e = e->next)
        if (e->bhash == h && e->bytes.u.s->len == n &&
            memcmp(e->bytes.u.s->data, p, n) == 0)
            return e;
    return NULL;
}

static modent *mod_by_module(avm_cluster *c, const avm_module *m)
{
    for (modent *e = c->mods_by_ptr[mod_pbucket(m)]; e != NULL; e = e->pnext)
        if (e->m == m)
            return e;
    return NULL;
}

/* Keeps m with its encoding bytes (an AVM_STR; both referenced). Modules are
 * programs: a node keeps every one it has seen (they are few, and the executions
 * and objects it holds refer to them anyway). */
static modent *mod_keep(avm_cluster *c, avm_module *m, avm_val bytes)
{
    modent *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    avm_module_retain(m);
    avm_val_retain(bytes);
    e->m = m;
    e->bytes = bytes;
    e->bhash = avm_hash_bytes(bytes.u.s->data, bytes.u.s->len);
    e->next = c->mods[e->bhash & 255];
    c->mods[e->bhash & 255] = e;
    e->pnext = c->mods_by_ptr[mod_pbucket(m)];
    c->mods_by_ptr[mod_pbucket(m)] = e;
    c->nmods++;
    return e;
}

static avm_val mod_val(avm_cluster *c, avm_module *m)
{
    modent *e = mod_by_module(c, m);
    if (e != NULL)
        return ref(e->bytes);
    avm_buf b;
    avm_buf_init(&b);
    avm_val v = avm_nil();
    if (avm_module_encode(m, &b) == 0 && !b.err)
        v = str(AVM_STR, b.data, b.len);
    avm_buf_free(&b);
    if (v.kind != AVM_NIL)
        mod_keep(c, m, v);
    return v;
}

/* A module from its encoding, decoded and verified once (borrowed from the
 * cache). */
static int mod_from(avm_cluster *c, avm_val v, avm_module **out, char *err, size_t n)
{
    if (v.kind != AVM_STR) {
        snprintf(err, n, "module: not bytes");
        return AVM_EMALFORMED;
    }
    modent *e = mod_by_bytes(c, v.u.s->data, v.u.s->len);
    if (e != NULL) {
        *out = e->m;
        return 0;
    }
    avm_module *m;
    int rv = avm_module_decode((const uint8_t *)v.u.s->data, v.u.s->len, &m, err, n);
    if (rv != 0)
        return rv;
    e = mod_keep(c, m, v);
    avm_module_release(m);
    if (e == NULL) {
        snprintf(err, n, "out of memory");
        return AVM_ENOMEM;
    }
    *out = e->m;
    return 0;
}

/* [oid, behaviour name, module, fn, machine, creating, current, state, version] */
static avm_val rec_val(avm_cluster *c, const avm_objrec *r)
{
    return lst(9, ref(r->oid), ref(r->beh.name),
               r->beh.mod != NULL ? mod_val(c, r->beh.mod) : avm_nil(), u64v(r->beh.fn),
               ref(r->meta.machine), ref(r->meta.creating), ref(r->meta.current),
               ref(r->state), u64v(r->version));
}

static bool id_or_nil(avm_val v, avm_kind k)
{
    return v.kind == k || v.kind == AVM_NIL;
}

/* The record of a rec_val (values borrowed from v, the module from the cache). */
static int rec_from(avm_cluster *c, avm_val v, avm_objrec *r, char *err, size_t n)
{
    if (v.kind != AVM_LIST || avm_list_len(v) != 9) {
        snprintf(err, n, "object record: not a list of 9");
        return AVM_EMALFORMED;
    }
    avm_val *it = v.u.l->items;
    if (it[0].kind != AVM_OBJID || it[1].kind != AVM_STR || it[3].kind != AVM_INT ||
        !id_or_nil(it[4], AVM_MACHID) || !id_or_nil(it[5], AVM_CTRLID) ||
        !id_or_nil(it[6], AVM_CTRLID) || it[7].kind != AVM_LIST ||
        it[8].kind != AVM_INT) {
        snprintf(err, n, "object record: a field has the wrong kind");
        return AVM_EMALFORMED;
    }
    memset(r, 0, sizeof(*r));
    int rv = mod_from(c, it[2], &r->beh.mod, err, n);
    if (rv != 0)
        return rv;
    if (it[3].u.i < 0 || (uint64_t)it[3].u.i >= r->beh.mod->nfuncs ||
        r->beh.mod->funcs[it[3].u.i].kind != AVM_FN_BEHAVIOR) {
        snprintf(err, n, "object record: function %lld is not a behaviour",
                 (long long)it[3].u.i);
        return AVM_EMALFORMED;
    }
    r->oid = it[0];
    r->beh.name = it[1];
    r->beh.fn = (uint32_t)it[3].u.i;
    r->meta.machine = it[4];
    r->meta.creating = it[5];
    r->meta.current = it[6];
    r->state = it[7];
    r->version = (uint64_t)it[8].u.i;
    return 0;
}

static avm_val pairs_val(const avm_pair *p, size_t n)
{
    avm_val l;
    if (avm_list_new(n, &l) != 0)
        return avm_nil();
    for (size_t i = 0; i < n; i++)
        l.u.l->items[i] = lst(2, ref(p[i].a), ref(p[i].b));
    avm_list_seal(l);
    return l;
}

/* [[oid, version], ...] */
static avm_val versions_val(const avm_read *v, size_t n)
{
    avm_val l;
    if (avm_list_new(n, &l) != 0)
        return avm_nil();
    for (size_t i = 0; i < n; i++)
        l.u.l->items[i] = lst(2, ref(v[i].oid), u64v(v[i].version));
    avm_list_seal(l);
    return l;
}

/* The versions of a versions_val (oids borrowed from l); NULL (n 0) when l is not
 * one. The caller frees the array. */
static avm_read *versions_from(avm_val l, size_t *n)
{
    *n = 0;
    if (l.kind != AVM_LIST)
        return NULL;
    avm_read *v = calloc(avm_list_len(l) + 1, sizeof(*v));
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < avm_list_len(l); i++) {
        avm_val p = avm_list_at(l, i);
        if (p.kind != AVM_LIST || avm_list_len(p) != 2 ||
            avm_list_at(p, 0).kind != AVM_OBJID || avm_list_at(p, 1).kind != AVM_INT)
            continue;
        v[(*n)++] = (avm_read){avm_list_at(p, 0), (uint64_t)avm_list_at(p, 1).u.i};
    }
    return v;
}

/* [reads, creates, transfers, moves, states, destroys, spec_order] */
static avm_val ws_val(avm_cluster *c, const avm_writeset *ws)
{
    avm_val reads, creates, destroys;
    if (avm_list_new(ws->nreads, &reads) != 0)
        return avm_nil();
    for (size_t i = 0; i < ws->nreads; i++)
        reads.u.l->items[i] = lst(2, ref(ws->reads[i].oid), u64v(ws->reads[i].version));
    avm_list_seal(reads);
    if (avm_list_new(ws->ncreates, &creates) != 0) {
        avm_val_release(reads);
        return avm_nil();
    }
    for (size_t i = 0; i < ws->ncreates; i++) {
        const avm_create *k = &ws->creates[i];
        creates.u.l->items[i] =
            lst(7, ref(k->oid), ref(k->beh.name), mod_val(c, k->beh.mod), u64v(k->beh.fn),
                ref(k->meta.machine), ref(k->meta.creating), ref(k->meta.current));
    }
    avm_list_seal(creates);
    if (avm_list_new(ws->ndestroys, &destroys) != 0) {
        avm_val_release(reads);
        avm_val_release(creates);
        return avm_nil();
    }
    for (size_t i = 0; i < ws->ndestroys; i++)
        destroys.u.l->items[i] = ref(ws->destroys[i]);
    return lst(7, reads, creates, pairs_val(ws->transfers, ws->ntransfers),
               pairs_val(ws->moves, ws->nmoves), pairs_val(ws->states, ws->nstates),
               destroys, avm_bool(ws->spec_order));
}

/* A decoded write set: arrays of values borrowed from the message. */
typedef struct wsbuf {
    avm_writeset ws;
    avm_read *reads;
    avm_create *creates;
    avm_pair *transfers, *moves, *states;
    avm_val *destroys;
} wsbuf;

static void wsbuf_free(wsbuf *w)
{
    free(w->reads);
    free(w->creates);
    free(w->transfers);
    free(w->moves);
    free(w->states);
    free(w->destroys);
}

static int pairs_from(avm_val l, avm_pair **out, size_t *n, avm_kind ka, avm_kind kb,
                      const char *what, char *err, size_t en)
{
    *n = avm_list_len(l);
    *out = calloc(*n + 1, sizeof(**out));
    if (*out == NULL)
        return AVM_ENOMEM;
    for (size_t i = 0; i < *n; i++) {
        avm_val p = avm_list_at(l, i);
        if (p.kind != AVM_LIST || avm_list_len(p) != 2 || avm_list_at(p, 0).kind != ka ||
            avm_list_at(p, 1).kind != kb) {
            snprintf(err, en, "write set: a malformed %s", what);
            return AVM_EMALFORMED;
        }
        (*out)[i] = (avm_pair){avm_list_at(p, 0), avm_list_at(p, 1)};
    }
    return 0;
}

static int ws_from(avm_cluster *c, avm_val v, wsbuf *w, char *err, size_t en)
{
    memset(w, 0, sizeof(*w));
    if (v.kind != AVM_LIST || avm_list_len(v) != 7) {
        snprintf(err, en, "write set: not a list of 7");
        return AVM_EMALFORMED;
    }
    avm_val *it = v.u.l->items;
    for (int i = 0; i < 6; i++) {
        if (it[i].kind != AVM_LIST) {
            snprintf(err, en, "write set: part %d is not a list", i);
            return AVM_EMALFORMED;
        }
    }
    size_t nr = avm_list_len(it[0]), nc = avm_list_len(it[1]), nd = avm_list_len(it[5]);
    w->reads = calloc(nr + 1, sizeof(*w->reads));
    w->creates = calloc(nc + 1, sizeof(*w->creates));
    w->destroys = calloc(nd + 1, sizeof(*w->destroys));
    if (w->reads == NULL || w->creates == NULL || w->destroys == NULL)
        return AVM_ENOMEM;
    for (size_t i = 0; i < nr; i++) {
        avm_val p = avm_list_at(it[0], i);
        if (p.kind != AVM_LIST || avm_list_len(p) != 2 ||
            avm_list_at(p, 0).kind != AVM_OBJID || avm_list_at(p, 1).kind != AVM_INT) {
            snprintf(err, en, "write set: a malformed read");
            return AVM_EMALFORMED;
        }
        w->reads[i].oid = avm_list_at(p, 0);
        w->reads[i].version = (uint64_t)avm_list_at(p, 1).u.i;
    }
    for (size_t i = 0; i < nc; i++) {
        avm_val p = avm_list_at(it[1], i);
        avm_val *f = p.kind == AVM_LIST && avm_list_len(p) == 7 ? p.u.l->items : NULL;
        if (f == NULL || f[0].kind != AVM_OBJID || f[1].kind != AVM_STR ||
            f[3].kind != AVM_INT || !id_or_nil(f[4], AVM_MACHID) ||
            !id_or_nil(f[5], AVM_CTRLID) || !id_or_nil(f[6], AVM_CTRLID)) {
            snprintf(err, en, "write set: a malformed create");
            return AVM_EMALFORMED;
        }
        avm_create *k = &w->creates[i];
        int rv = mod_from(c, f[2], &k->beh.mod, err, en);
        if (rv != 0)
            return rv;
        if (f[3].u.i < 0 || (uint64_t)f[3].u.i >= k->beh.mod->nfuncs ||
            k->beh.mod->funcs[f[3].u.i].kind != AVM_FN_BEHAVIOR) {
            snprintf(err, en, "write set: a create names no behaviour");
            return AVM_EMALFORMED;
        }
        k->oid = f[0];
        k->beh.name = f[1];
        k->beh.fn = (uint32_t)f[3].u.i;
        k->meta.machine = f[4];
        k->meta.creating = f[5];
        k->meta.current = f[6];
    }
    for (size_t i = 0; i < nd; i++) {
        w->destroys[i] = avm_list_at(it[5], i);
        if (w->destroys[i].kind != AVM_OBJID) {
            snprintf(err, en, "write set: a malformed destroy");
            return AVM_EMALFORMED;
        }
    }
    int rv;
    if ((rv = pairs_from(it[2], &w->transfers, &w->ws.ntransfers, AVM_OBJID, AVM_CTRLID,
                         "transfer", err, en)) ||
        (rv = pairs_from(it[3], &w->moves, &w->ws.nmoves, AVM_OBJID, AVM_MACHID, "move",
                         err, en)) ||
        (rv = pairs_from(it[4], &w->states, &w->ws.nstates, AVM_OBJID, AVM_LIST, "state",
                         err, en)))
        return rv;
    w->ws.reads = w->reads;
    w->ws.nreads = nr;
    w->ws.creates = w->creates;
    w->ws.ncreates = nc;
    w->ws.destroys = w->destroys;
    w->ws.ndestroys = nd;
    w->ws.transfers = w->transfers;
    w->ws.moves = w->moves;
    w->ws.states = w->states;
    w->ws.spec_order = avm_truthy(it[6]);
    return 0;
}

/* --- Locations ----------------------------------------------------------------- */

static loc **map_slot(loc **map, avm_val oid)
{
    size_t b = avm_val_hash(oid) & 1023;
    loc **p = &map[b];
    while (*p != NULL && !avm_val_eq((*p)->oid, oid))
        p = &(*p)->next;
    return p;
}

static loc **loc_slot(avm_cluster *c, avm_val oid)
{
    return map_slot(c->locs, oid);
}

static const char *loc_get(avm_cluster *c, avm_val oid)
{
    loc *l = *loc_slot(c, oid);
    return l != NULL ? l->node : NULL;
}

static void map_set(loc **map, avm_val oid, const char *node)
{
    loc **p = map_slot(map, oid);
    if (*p == NULL) {
        loc *l = calloc(1, sizeof(*l));
        if (l == NULL)
            return;
        l->oid = ref(oid);
        *p = l;
    }
    snprintf((*p)->node, sizeof((*p)->node), "%s", node);
}

static void loc_set(avm_cluster *c, avm_val oid, const char *node)
{
    map_set(c->locs, oid, node);
    (*loc_slot(c, oid))->at_ms = uv_now(c->loop);
}

/* --- Subscribers ---------------------------------------------------------------- */

static sub **sub_slot(avm_cluster *c, avm_val oid)
{
    sub **p = &c->subs[avm_val_hash(oid) & 1023];
    while (*p != NULL && !avm_val_eq((*p)->oid, oid))
        p = &(*p)->next;
    return p;
}

static void sub_add(avm_cluster *c, avm_val oid, const char *node)
{
    sub **p = sub_slot(c, oid);
    if (*p == NULL) {
        sub *s = calloc(1, sizeof(*s));
        if (s == NULL)
            return;
        s->oid = ref(oid);
        *p = s;
        c->nsubs++;
    }
    sub *s = *p;
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->names[i], node) == 0)
            return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 4;
        void *nn = realloc(s->names, cap * sizeof(*s->names));
        if (nn == NULL)
            return;
        s->names = nn;
        s->cap = cap;
    }
    snprintf(s->names[s->n++], sizeof(s->names[0]), "%s", node);
}

static void sub_free(sub *s)
{
    avm_val_release(s->oid);
    free(s->names);
    free(s);
}

static void sub_drop(avm_cluster *c, avm_val oid)
{
    sub **p = sub_slot(c, oid);
    if (*p != NULL) {
        sub *s = *p;
        *p = s->next;
        sub_free(s);
        c->nsubs--;
    }
}

/* A member restarted or went away: it holds no copies of ours any more, and the
 * copies we hold of its records may have missed changes. */
static void forget_peer(avm_cluster *c, const char *peer)
{
    for (size_t b = 0; b < 1024; b++) {
        for (sub **p = &c->subs[b]; *p != NULL;) {
            sub *s = *p;
            for (size_t i = 0; i < s->n;) {
                if (strcmp(s->names[i], peer) == 0)
                    memmove(s->names[i], s->names[i + 1],
                            (--s->n - i) * sizeof(s->names[0]));
                else
                    i++;
            }
            if (s->n == 0) {
                *p = s->next;
                sub_free(s);
                c->nsubs--;
            } else {
                p = &s->next;
            }
        }
        for (loc **p = &c->locs[b]; *p != NULL;) {
            loc *l = *p;
            if (strcmp(l->node, peer) == 0) {
                if (c->m != NULL)
                    avm_mgr_forget(c->m, l->oid);
                *p = l->next;
                avm_val_release(l->oid);
                free(l);
            } else {
                p = &l->next;
            }
        }
    }
}

/* Copies older than copy_ttl_ms are dropped (the next use fetches again from where
 * the object was found): a bound on how stale a copy can be if a change was lost. */
static void sweep_copies(avm_cluster *c, uint64_t now)
{
    for (size_t b = 0; b < 1024; b++) {
        for (loc *l = c->locs[b]; l != NULL; l = l->next) {
            if (l->at_ms != 0 && now - l->at_ms > c->copy_ttl_ms) {
                l->at_ms = 0;
                if (c->m != NULL)
                    avm_mgr_forget(c->m, l->oid);
            }
        }
    }
}

static bool h_watched(void *arg, avm_val oid)
{
    avm_cluster *c = arg;
    return (c->nsubs > 0 && *sub_slot(c, oid) != NULL) ||
           *map_slot(c->pushed, oid) != NULL;
}

static void map_drop(loc **map, avm_val oid)
{
    loc **p = map_slot(map, oid);
    if (*p != NULL) {
        loc *l = *p;
        *p = l->next;
        avm_val_release(l->oid);
        free(l);
    }
}

static void loc_drop(avm_cluster *c, avm_val oid)
{
    map_drop(c->locs, oid);
}

/* The machine an id names ("node2/17" -> node2), or "" */
static void minter_of(avm_val oid, char *out, size_t n)
{
    out[0] = '\0';
    if (!AVM_KIND_HAS_STR(oid.kind))
        return;
    const char *s = oid.u.s->data, *sl = strrchr(s, '/');
    if (sl == NULL || sl == s || (size_t)(sl - s) >= n)
        return;
    memcpy(out, s, (size_t)(sl - s));
    out[sl - s] = '\0';
}

/* --- Fetching records --------------------------------------------------------- */

static void fetch_unlink(fetch *f)
{
    for (fetch **p = &f->c->fetches; *p != NULL; p = &(*p)->next) {
        if (*p == f) {
            *p = f->next;
            break;
        }
    }
}

/* Settles the fetch (the first answer wins); it is freed once no reply is due. */
static void fetch_deliver(fetch *f, const avm_objrec *r, int rv, const char *why)
{
    avm_cluster *c = f->c;
    if (f->answered)
        return;
    f->answered = true;
    fetch_unlink(f);
    if (c->m != NULL && !c->stopped) {
        avm_val mach = rv == AVM_EUNREACHABLE
                           ? str(AVM_MACHID, f->unreach, strlen(f->unreach))
                           : avm_nil();
        avm_mgr_fetched(c->m, f->oid, r, rv, mach, why);
        avm_val_release(mach);
        kick(c);
    }
}

static void fetch_unreachable(fetch *f, const char *node, const char *why)
{
    if (!f->unreachable)
        snprintf(f->unreach, sizeof(f->unreach), "%s", node);
    f->unreachable = true;
    snprintf(f->why, sizeof(f->why), "%s", why);
}

static void fetch_maybe_free(fetch *f)
{
    if (f->answered && f->outstanding == 0) {
        avm_val_release(f->oid);
        free(f);
    }
}

typedef struct ask {
    fetch *f;
    char node[NAME_MAX_LEN + 1];
} ask;

static void fetch_reply(void *arg, int rv, avm_val reply, const char *errmsg);

static void fetch_ask(fetch *f, const char *node)
{
    avm_cluster *c = f->c;
    ask *a = calloc(1, sizeof(*a));
    if (a == NULL)
        return;
    a->f = f;
    snprintf(a->node, sizeof(a->node), "%s", node);
    char err[256];
    f->outstanding++;
    avm_val body = lst(2, ref(f->oid), avm_bool(f->freeze));
    int rv = avm_link_request(c->link, node, "obj.get", body, c->request_ms, fetch_reply,
                              a, err, sizeof(err));
    avm_val_release(body);
    if (rv != 0) {
        f->outstanding--;
        char why[300];
        snprintf(why, sizeof(why), "asking %s: %.180s", node, err);
        fetch_unreachable(f, node, why);
        free(a);
    }
}

/* Asks every reachable member but the one asked first. */
static void fetch_broadcast(fetch *f)
{
    avm_cluster *c = f->c;
    f->broadcast = true;
    for (size_t i = 0; i < c->nmembers; i++) {
        member *mb = &c->members[i];
        if (strcmp(mb->name, f->first) == 0)
            continue;
        if (!mb->reachable) {
            char why[300];
            snprintf(why, sizeof(why), "machine %s is unreachable", mb->name);
            fetch_unreachable(f, mb->name, why);
            continue;
        }
        fetch_ask(f, mb->name);
    }
}

/* Nobody has it: no object, or (when some member could not answer) an error. */
static void fetch_nobody(fetch *f)
{
    if (f->unreachable)
        fetch_deliver(f, NULL, AVM_EUNREACHABLE, f->why);
    else if (f->bad)
        fetch_deliver(f, NULL, AVM_EIO, f->why);
    else
        fetch_deliver(f, NULL, 0, NULL);
}

static void fetch_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    ask *a = arg;
    fetch *f = a->f;
    avm_cluster *c = f->c;
    f->outstanding--;
    if (rv == 0 && !f->answered) {
        avm_objrec r;
        char err[256] = "";
        if (rec_from(c, reply, &r, err, sizeof(err)) == 0) {
            loc_set(c, f->oid, a->node);
            fetch_deliver(f, &r, 0, NULL);
        } else {
            f->bad = true;
            snprintf(f->why, sizeof(f->why), "object record from %s: %.200s", a->node,
                     err);
        }
    } else if (rv == AVM_ENOTFOUND) {
        const char *known = loc_get(c, f->oid);
        if (known != NULL && strcmp(known, a->node) == 0)
            loc_drop(c, f->oid); /* it is not there any more: a redirect */
    } else if (rv != 0) {
        char why[300];
        snprintf(why, sizeof(why), "asking %s: %.200s", a->node,
                 errmsg ? errmsg : avm_strerror(rv));
        if (rv == AVM_EIO) /* no answer, or it restarted */
            fetch_unreachable(f, a->node, why);
        else {
            f->bad = true;
            snprintf(f->why, sizeof(f->why), "%s", why);
        }
    }
    free(a);
    if (f->outstanding == 0 && !f->answered) {
        if (!f->broadcast && !c->stopped)
            fetch_broadcast(f);
        if (f->outstanding == 0)
            fetch_nobody(f);
    }
    fetch_maybe_free(f);
}

static int h_fetch(void *arg, avm_val oid, bool freeze, avm_val *unreachable,
                   char *errmsg, size_t errlen)
{
    avm_cluster *c = arg;
    for (fetch *f = c->fetches; f != NULL; f = f->next)
        if (avm_val_eq(f->oid, oid) && f->freeze == freeze)
            return 0; /* one request for all who wait */
    if (c->nmembers == 0)
        return AVM_ENOTFOUND;
    fetch *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return AVM_ENOMEM;
    f->c = c;
    f->oid = ref(oid);
    f->freeze = freeze;
    const char *known = loc_get(c, oid);
    char minter[NAME_MAX_LEN + 1];
    minter_of(oid, minter, sizeof(minter));
    const char *first = known != NULL ? known : minter;
    member *mb = member_find(c, first);
    if (mb != NULL && mb->reachable) {
        snprintf(f->first, sizeof(f->first), "%s", first);
        fetch_ask(f, first);
    } else if (mb != NULL)
        fetch_unreachable(f, first, "");
    if (f->outstanding == 0)
        fetch_broadcast(f);
    if (f->outstanding == 0) {
        /* Nobody could be asked: answer now, through the return value. */
        int rv = f->unreachable ? AVM_EUNREACHABLE : AVM_ENOTFOUND;
        if (rv == AVM_EUNREACHABLE) {
            snprintf(errmsg, errlen, "object %s: machine %s is unreachable",
                     oid.u.s->data, f->unreach);
            *unreachable = str(AVM_MACHID, f->unreach, strlen(f->unreach));
        }
        avm_val_release(f->oid);
        free(f);
        return rv;
    }
    f->next = c->fetches;
    c->fetches = f;
    return 0;
}

/* obj.get: the record this node holds, once everything it applied is durable. */
typedef struct serve {
    avm_cluster *c;
    avm_link_req *req;
    avm_val oid;
    bool freeze;
    char from[NAME_MAX_LEN + 1];
} serve;

static void h_changed(void *arg, avm_val oid);

static void serve_now(void *arg)
{
    serve *s = arg;
    avm_cluster *c = s->c;
    if (s->freeze)
        h_changed(c, s->oid); /* the replica first: it is current when freeze returns */
    const avm_objrec *r = c->m != NULL ? avm_mgr_record(c->m, s->oid) : NULL;
    if (r == NULL) {
        avm_link_reply_error(s->req, AVM_ENOTFOUND, "object not here");
    } else {
        avm_val v = rec_val(c, r);
        if (v.kind == AVM_NIL) {
            avm_link_reply_error(s->req, AVM_ENOMEM, "out of memory");
        } else {
            sub_add(c, s->oid, s->from); /* it hears of every change from now on */
            avm_link_reply(s->req, v);
        }
        avm_val_release(v);
    }
    avm_val_release(s->oid);
    free(s);
}

static void on_obj_get(avm_cluster *c, avm_link_req *req, const char *from, avm_val body)
{
    if (body.kind != AVM_LIST || avm_list_len(body) != 2 ||
        avm_list_at(body, 0).kind != AVM_OBJID) {
        avm_link_reply_error(req, AVM_EINVAL, "obj.get: expected [object id, freeze]");
        return;
    }
    bool freeze = avm_truthy(avm_list_at(body, 1));
    body = avm_list_at(body, 0);
    const avm_objrec *rec = c->m != NULL ? avm_mgr_record(c->m, body) : NULL;
    /* An object of a replicated controller is served by its leader, which has
     * applied every acknowledged commit: a follower's copy may lag. */
    if (rec == NULL || (avm_rctl_replicated(c->rctl, rec->meta.current) &&
                        !avm_rctl_leads(c->rctl, rec->meta.current))) {
        avm_link_reply_error(req, AVM_ENOTFOUND, "object not here");
        return;
    }
    serve *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        avm_link_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    *s = (serve){c, req, ref(body), freeze, ""};
    snprintf(s->from, sizeof(s->from), "%s", from);
    if (avm_mgr_when_durable(c->m, serve_now, s) != 0) {
        avm_link_reply_error(req, AVM_ENOMEM, "out of memory");
        avm_val_release(s->oid);
        free(s);
        return;
    }
    kick(c);
}

/* --- Replicas ------------------------------------------------------------------- */

static void send_to(avm_cluster *c, const char *node, avm_val msg)
{
    member *mb = member_find(c, node);
    char err[256];
    if (mb != NULL && avm_link_send(c->link, node, msg, err, sizeof(err)) != 0)
        logf_(c, L_WARN, "replica.refresh", "error", "to %s: %s", node, err);
}

/* A record this node holds changed: the machine it is placed on (and the one it
 * was placed on before) gets the new record, or hears that it is gone. */
static void h_changed(void *arg, avm_val oid)
{
    avm_cluster *c = arg;
    if (c->m == NULL || c->stopped)
        return;
    const avm_objrec *r = avm_mgr_record(c->m, oid);
    loc *before = *map_slot(c->pushed, oid);
    if (r == NULL) {
        /* Gone: every member drops what it holds of it. */
        avm_val msg = lst(2, cstr("obj.gone"), ref(oid));
        for (size_t i = 0; i < c->nmembers; i++)
            if (c->members[i].reachable)
                send_to(c, c->members[i].name, msg);
        avm_val_release(msg);
        map_drop(c->pushed, oid);
        sub_drop(c, oid);
        return;
    }
    avm_val msg = lst(2, cstr("obj.refresh"), rec_val(c, r));
    sub *s = c->nsubs > 0 ? *sub_slot(c, oid) : NULL;
    for (size_t i = 0; s != NULL && i < s->n; i++) {
        bool placed = AVM_KIND_HAS_STR(r->meta.machine.kind) &&
                      strcmp(r->meta.machine.u.s->data, s->names[i]) == 0;
        if (!placed) /* the machine it is placed on gets it below */
            send_to(c, s->names[i], msg);
    }
    const char *now = AVM_KIND_HAS_STR(r->meta.machine.kind) &&
                              strcmp(r->meta.machine.u.s->data, c->self) != 0
                          ? r->meta.machine.u.s->data
                          : NULL;
    if (before != NULL && (now == NULL || strcmp(before->node, now) != 0))
        send_to(c, before->node, msg);
    if (now != NULL) {
        send_to(c, now, msg);
        map_set(c->pushed, oid, now);
    } else {
        map_drop(c->pushed, oid);
    }
    avm_val_release(msg);
}

static void on_refresh(avm_cluster *c, const char *from, avm_val rec, bool gone)
{
    if (c->m == NULL)
        return;
    if (gone) {
        if (rec.kind == AVM_OBJID && avm_mgr_record(c->m, rec) == NULL) {
            avm_mgr_forget(c->m, rec);
            loc_drop(c, rec);
        }
        return;
    }
    avm_objrec r;
    char err[256];
    if (rec_from(c, rec, &r, err, sizeof(err)) != 0) {
        logf_(c, L_WARN, "replica.refresh", "error", "from %s: %s", from, err);
        return;
    }
    if (avm_mgr_record(c->m, r.oid) != NULL)
        return; /* it lives here (it moved): this node is its source */
    loc_set(c, r.oid, from);
    avm_mgr_fetched(c->m, r.oid, &r, 0, avm_nil(), NULL);
    kick(c);
}

/* --- Forwarded write sets ----------------------------------------------------- */

typedef struct fwd {
    avm_cluster *c;
    char id[48];
    uint64_t seq;
    char home[NAME_MAX_LEN + 1];
} fwd;

static void fwd_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    fwd *f = arg;
    avm_cluster *c = f->c;
    if (!c->stopped && c->m != NULL) {
        bool committed = rv == 0 && reply.kind == AVM_LIST && avm_list_len(reply) == 2 &&
                         avm_truthy(avm_list_at(reply, 0));
        size_t nv = 0;
        avm_read *vs = committed ? versions_from(avm_list_at(reply, 1), &nv) : NULL;
        char why[300];
        snprintf(why, sizeof(why), "forwarded to %s: %.200s", f->home,
                 errmsg ? errmsg : avm_strerror(rv));
        avm_val mach = avm_nil();
        if (rv == AVM_EIO) { /* no answer within the deadline, or it restarted */
            rv = AVM_EUNREACHABLE;
            mach = str(AVM_MACHID, f->home, strlen(f->home));
        }
        avm_mgr_applied(c->m, f->id, f->seq, rv, committed, vs, nv, mach,
                        rv ? why : NULL);
        avm_val_release(mach);
        free(vs);
        kick(c);
    }
    free(f);
}

/* The machine an object of ws lives on, when it is not this one. */
static int home_of(avm_cluster *c, const avm_writeset *ws, const char **home)
{
    *home = NULL;
#define HOME(node)                                                                       \
    do {                                                                                 \
        const char *h_ = (node);                                                         \
        if (h_ != NULL && strcmp(h_, c->self) != 0) {                                    \
            if (*home != NULL && strcmp(*home, h_) != 0)                                 \
                return AVM_ESTATE;                                                       \
            *home = h_;                                                                  \
        }                                                                                \
    } while (0)
    for (size_t i = 0; i < ws->ncreates; i++) {
        avm_val k = ws->creates[i].meta.current;
        if (k.kind == AVM_NIL || strcmp(k.u.s->data, c->ctrl) == 0)
            continue;
        member *mb = host_of(c, k);
        if (mb == NULL)
            return AVM_ENOTFOUND;
        HOME(mb->name);
    }
    for (size_t i = 0; i < ws->nreads; i++)
        HOME(loc_get(c, ws->reads[i].oid));
    for (size_t i = 0; i < ws->nstates; i++)
        HOME(loc_get(c, ws->states[i].a));
    for (size_t i = 0; i < ws->ndestroys; i++)
        HOME(loc_get(c, ws->destroys[i]));
    for (size_t i = 0; i < ws->ntransfers; i++)
        HOME(loc_get(c, ws->transfers[i].a));
    for (size_t i = 0; i < ws->nmoves; i++)
        HOME(loc_get(c, ws->moves[i].a));
#undef HOME
    return *home != NULL ? 0 : AVM_ENOTFOUND;
}

/* A commit across controllers, for an execution: its outcome goes to the manager. */
static void xfwd_done(void *arg, int rv, bool committed, const avm_read *v, size_t nv,
                      const char *why)
{
    fwd *f = arg;
    avm_cluster *c = f->c;
    if (!c->stopped && c->m != NULL) {
        avm_val mach = avm_nil();
        if (rv == AVM_EUNREACHABLE && f->home[0])
            mach = str(AVM_CTRLID, f->home, strlen(f->home));
        avm_mgr_applied(c->m, f->id, f->seq, rv, committed, v, nv, mach, rv ? why : NULL);
        avm_val_release(mach);
        kick(c);
    }
    free(f);
}

static void h_bundle_abort(void *arg, const char *bundle, const char *id)
{
    avm_cluster *c = arg;
    avm_bundle_abort(c->bundles, bundle, id);
}

static int h_forward(void *arg, const char *id, uint64_t seq, const avm_writeset *ws,
                     avm_val *unreachable, char *errmsg, size_t errlen)
{
    avm_cluster *c = arg;
    if (ws->bundle.kind == AVM_STR) /* a segment of a composed commit */
        return avm_bundle_contribute(c->bundles, ws->bundle.u.s->data, id, seq, ws,
                                     c->m != NULL ? avm_mgr_bundle_seen(c->m, id) : 0,
                                     errmsg, errlen);
    avm_txn *tx = avm_rctl_txn(c->rctl);
    char parts[2][64];
    if (tx != NULL && avm_txn_participants(tx, ws, parts, 2) > 1) {
        /* Objects of several controllers: two-phase commit over their groups. */
        fwd *f = calloc(1, sizeof(*f));
        if (f == NULL)
            return AVM_ENOMEM;
        f->c = c;
        snprintf(f->id, sizeof(f->id), "%s", id);
        f->seq = seq;
        int rv = avm_txn_commit(tx, ws, xfwd_done, f, errmsg, errlen);
        if (rv != 0)
            free(f);
        return rv;
    }
    avm_val rc = avm_rctl_ws_ctrl(c->rctl, ws);
    if (rc.kind != AVM_NIL) {
        /* A replicated controller: its group's log orders the commit. */
        int rrv = avm_rctl_commit_exec(c->rctl, rc, id, seq, ws, errmsg, errlen);
        avm_val_release(rc);
        return rrv;
    }
    const char *home;
    int rv = home_of(c, ws, &home);
    if (rv == AVM_ESTATE) {
        snprintf(errmsg, errlen,
                 "a write set over objects of several machines (atomic commits across "
                 "machines come with cross-controller commits)");
        return AVM_ESTATE;
    }
    if (rv != 0) {
        snprintf(errmsg, errlen, "no member hosts the controller of a new object");
        return AVM_ENOTFOUND;
    }
    member *mb = member_find(c, home);
    if (mb == NULL || !mb->reachable) {
        snprintf(errmsg, errlen, "machine %s, which holds the objects, is unreachable",
                 home);
        *unreachable = str(AVM_MACHID, home, strlen(home));
        return AVM_EUNREACHABLE;
    }
    avm_val v = ws_val(c, ws);
    if (v.kind == AVM_NIL)
        return AVM_ENOMEM;
    fwd *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        avm_val_release(v);
        return AVM_ENOMEM;
    }
    f->c = c;
    snprintf(f->id, sizeof(f->id), "%s", id);
    f->seq = seq;
    snprintf(f->home, sizeof(f->home), "%s", home);
    char err[256];
    rv = avm_link_request(c->link, home, "obj.apply", v, c->request_ms, fwd_reply, f, err,
                          sizeof(err));
    avm_val_release(v);
    if (rv != 0) {
        snprintf(errmsg, errlen, "forwarding to %s: %s", home, err);
        free(f);
    }
    return rv;
}

static void apply_done(void *arg, int rv, bool committed, const avm_read *versions,
                       size_t nversions, const char *errmsg)
{
    avm_link_req *req = arg;
    if (rv != 0) {
        avm_link_reply_error(req, rv, "%s", errmsg ? errmsg : avm_strerror(rv));
        return;
    }
    avm_val v = lst(2, avm_bool(committed), versions_val(versions, nversions));
    avm_link_reply(req, v);
    avm_val_release(v);
}

static void on_obj_apply(avm_cluster *c, avm_link_req *req, avm_val body)
{
    wsbuf w;
    char err[256] = "";
    int rv = c->m == NULL ? AVM_ESTATE : ws_from(c, body, &w, err, sizeof(err));
    avm_val rc = rv == 0 ? avm_rctl_ws_ctrl(c->rctl, &w.ws) : avm_nil();
    if (rc.kind != AVM_NIL) {
        /* Objects of a replicated controller: through its group. */
        avm_rctl_commit_link(c->rctl, rc, req, &w.ws);
        avm_val_release(rc);
        wsbuf_free(&w);
        kick(c);
        return;
    }
    if (rv == 0)
        rv = avm_mgr_apply_remote(c->m, &w.ws, apply_done, req);
    else if (err[0] == '\0')
        snprintf(err, sizeof(err), "%s", avm_strerror(rv));
    wsbuf_free(&w);
    if (rv != 0)
        avm_link_reply_error(req, rv, "obj.apply: %s", err[0] ? err : avm_strerror(rv));
    kick(c);
}

/* --- Roaming executions ---------------------------------------------------------- */

/* An execution travels as a one-way message ["exec.visit", [id, visit, state,
 * seen]] (seen: the versions its own writes made, manager.h): the
 * link delivers it once, in order, while both ends are up; a machine that cannot
 * take it answers ["exec.refused", [id, visit, why]]; one that goes away or
 * restarts with it is noticed by the failure detector or the link's session. */
static void h_ship(void *arg, const char *id, uint64_t vis, avm_val to,
                   const uint8_t *state, size_t len, const avm_read *seen, size_t nseen)
{
    avm_cluster *c = arg;
    member *mb = member_of_val(c, to);
    if (mb == NULL || !mb->reachable) {
        logf_(c, L_INFO, "exec.ship", "error", "execution %s: machine %s is %s", id,
              AVM_KIND_HAS_STR(to.kind) ? to.u.s->data : "?",
              mb == NULL ? "not a member" : "unreachable");
        avm_mgr_ship_failed(c->m, id, vis, to);
        return;
    }
    uint64_t bseen = 0;
    avm_val bview = avm_mgr_bundle_view(c->m, id, &bseen);
    avm_val visit = lst(4, cstr(id), u64v(vis), str(AVM_STR, (const char *)state, len),
                        versions_val(seen, nseen));
    avm_val hints = avm_rctl_commit_hints(c->rctl);
    if (visit.kind != AVM_NIL && (bview.kind == AVM_LIST || hints.kind == AVM_LIST)) {
        /* What goes along: a bundle member's view of the segments before it, and
         * the commits this node's replicas have applied (the replicas there apply
         * up to them before the execution reads). */
        avm_val_retain(avm_list_at(visit, 0));
        avm_val_retain(avm_list_at(visit, 1));
        avm_val_retain(avm_list_at(visit, 2));
        avm_val_retain(avm_list_at(visit, 3));
        avm_val v5 =
            lst(5, avm_list_at(visit, 0), avm_list_at(visit, 1), avm_list_at(visit, 2),
                avm_list_at(visit, 3), lst(3, ref(bview), u64v(bseen), hints));
        avm_val_release(visit);
        visit = v5;
    } else {
        avm_val_release(hints);
    }
    avm_val msg = lst(2, cstr("exec.visit"), visit);
    char err[256] = "out of memory";
    int rv = msg.kind == AVM_NIL
                 ? AVM_ENOMEM
                 : avm_link_send(c->link, mb->name, msg, err, sizeof(err));
    avm_val_release(msg);
    if (rv != 0) {
        logf_(c, L_WARN, "exec.ship", "error", "execution %s to %s: %s", id, mb->name,
              err);
        avm_mgr_ship_failed(c->m, id, vis, to);
    }
}

static void on_exec_visit(avm_cluster *c, const char *from, avm_val body)
{
    if (body.kind != AVM_LIST || (avm_list_len(body) != 4 && avm_list_len(body) != 5) ||
        avm_list_at(body, 0).kind != AVM_STR || avm_list_at(body, 1).kind != AVM_INT ||
        avm_list_at(body, 2).kind != AVM_STR || avm_list_at(body, 0).u.s->len >= 48) {
        logf_(c, L_WARN, "exec.arrive", "error",
              "from %s: a visit that is not [id, visit, state, seen]", from);
        return;
    }
    avm_val st = avm_list_at(body, 2);
    if (avm_list_len(body) == 5 && avm_list_at(body, 4).kind == AVM_LIST &&
        avm_list_len(avm_list_at(body, 4)) == 3)
        avm_rctl_learn_hints(c->rctl, avm_list_at(avm_list_at(body, 4), 2));
    char err[512] = "";
    size_t nseen = 0;
    avm_read *seen = versions_from(avm_list_at(body, 3), &nseen);
    int rv = c->m == NULL ? AVM_ESTATE
                          : avm_mgr_arrive(c->m, avm_list_at(body, 0).u.s->data,
                                           (uint64_t)avm_list_at(body, 1).u.i,
                                           (const uint8_t *)st.u.s->data, st.u.s->len,
                                           seen, nseen, err, sizeof(err));
    free(seen);
    if (rv == 0 && avm_list_len(body) == 5) {
        avm_val bv = avm_list_at(body, 4);
        if (bv.kind == AVM_LIST && avm_list_len(bv) == 3 &&
            avm_list_at(bv, 1).kind == AVM_INT)
            avm_mgr_set_bundle_view(c->m, avm_list_at(body, 0).u.s->data,
                                    avm_list_at(bv, 0), (uint64_t)avm_list_at(bv, 1).u.i);
    }
    if (rv != 0) {
        logf_(c, L_WARN, "exec.arrive", "error", "from %s: %s", from, err);
        avm_val msg =
            lst(2, cstr("exec.refused"),
                lst(3, ref(avm_list_at(body, 0)), ref(avm_list_at(body, 1)), cstr(err)));
        send_to(c, from, msg);
        avm_val_release(msg);
        return;
    }
    kick(c);
}

static void on_exec_refused(avm_cluster *c, const char *from, avm_val body)
{
    if (body.kind != AVM_LIST || avm_list_len(body) != 3 ||
        avm_list_at(body, 0).kind != AVM_STR || avm_list_at(body, 1).kind != AVM_INT ||
        avm_list_at(body, 2).kind != AVM_STR || c->m == NULL)
        return;
    logf_(c, L_WARN, "exec.ship", "error", "execution %s refused by %s: %s",
          avm_list_at(body, 0).u.s->data, from, avm_list_at(body, 2).u.s->data);
    avm_val mv = str(AVM_MACHID, from, strlen(from));
    avm_mgr_ship_failed(c->m, avm_list_at(body, 0).u.s->data,
                        (uint64_t)avm_list_at(body, 1).u.i, mv);
    avm_val_release(mv);
    kick(c);
}

/* --- Forwarded control requests ------------------------------------------------- */

static void ctl_answer(void *arg, int code, avm_val body, const char *errmsg)
{
    avm_link_req *req = arg;
    if (code != 0)
        avm_link_reply_error(req, code, "%s", errmsg ? errmsg : avm_strerror(code));
    else
        avm_link_reply(req, body);
}

static void on_ctl(avm_cluster *c, avm_link_req *req, avm_val body)
{
    if (body.kind != AVM_LIST || avm_list_len(body) != 3 ||
        avm_list_at(body, 0).kind != AVM_STR || avm_list_at(body, 0).u.s->len > 63 ||
        avm_list_at(body, 2).kind != AVM_INT || avm_list_at(body, 2).u.i < 1) {
        avm_link_reply_error(req, AVM_EINVAL, "ctl: expected [op, body, hops]");
        return;
    }
    avm_ctl_req *lr = avm_ctl_req_local(ctl_answer, req);
    if (lr == NULL || c->cfg.control == NULL) {
        free(lr);
        avm_link_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    c->cfg.control(c->cfg.arg, lr, avm_list_at(body, 0).u.s->data, avm_list_at(body, 1),
                   (unsigned)avm_list_at(body, 2).u.i);
}

static void ctl_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    avm_ctl_req *req = arg;
    if (rv != 0)
        avm_ctl_reply_error(req, rv, "%s", errmsg ? errmsg : avm_strerror(rv));
    else
        avm_ctl_reply(req, reply);
}

bool avm_cluster_forward(avm_cluster *c, avm_ctl_req *req, unsigned hops,
                         const char *machine, const char *op, avm_val body)
{
    member *mb = member_find(c, machine);
    if (mb == NULL)
        return false;
    if (!mb->reachable) {
        avm_ctl_reply_error(req, AVM_EIO, "machine %s is unreachable from %s", machine,
                            c->self);
        return true;
    }
    avm_val b = lst(3, cstr(op), ref(body), avm_int((int64_t)hops + 1));
    char err[256];
    int rv = avm_link_request(c->link, machine, "ctl", b, c->forward_ms, ctl_reply, req,
                              err, sizeof(err));
    avm_val_release(b);
    if (rv != 0)
        avm_ctl_reply_error(req, rv, "forwarding to %s: %s", machine, err);
    return true;
}

/* --- Membership and status ---------------------------------------------------------- */

static avm_val view_val(avm_cluster *c)
{
    avm_val l;
    if (avm_list_new(c->nmembers, &l) != 0)
        return avm_nil();
    uint64_t now = uv_now(c->loop);
    for (size_t i = 0; i < c->nmembers; i++) {
        member *mb = &c->members[i];
        double phi = avm_fd_phi(c->fd, mb->name, now);
        if (phi > 1e6 || phi != phi)
            phi = 1e6;
        avm_link_peer_info pi = {0};
        avm_link_peer(c->link, mb->name, &pi);
        int64_t silent = pi.last_heard_ms ? (int64_t)(now - pi.last_heard_ms) : -1;
        l.u.l->items[i] = lst(4, cstr(mb->name), avm_bool(mb->reachable),
                              avm_int((int64_t)(phi * 1000)), avm_int(silent));
    }
    avm_list_seal(l);
    return l;
}

typedef struct status {
    avm_cluster *c;
    avm_ctl_req *req;
    size_t outstanding;
    avm_val views; /* list of [from, view or error string] being filled */
    size_t nviews;
} status;

static void status_finish(status *s)
{
    avm_cluster *c = s->c;
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "self", c->self);
    avm_ctl_put(&b, "members", members_val(c));
    avm_list_seal(s->views);
    avm_ctl_put(&b, "views", s->views);
    avm_val out;
    if (avm_ctl_body_finish(&b, &out) != 0) {
        avm_ctl_reply_error(s->req, AVM_ENOMEM, "out of memory");
    } else {
        avm_ctl_reply(s->req, out);
        avm_val_release(out);
    }
    free(s);
}

typedef struct status_ask {
    status *s;
    size_t slot;
} status_ask;

static void status_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    status_ask *a = arg;
    status *s = a->s;
    avm_val *slot = &s->views.u.l->items[a->slot];
    avm_val from = ref(avm_list_at(*slot, 0));
    avm_val_release(*slot);
    if (rv == 0)
        *slot = lst(2, from, ref(reply));
    else
        *slot = lst(2, from, cstr(errmsg ? errmsg : avm_strerror(rv)));
    free(a);
    if (--s->outstanding == 0)
        status_finish(s);
}

void avm_cluster_op_status(avm_cluster *c, avm_ctl_req *req)
{
    status *s = calloc(1, sizeof(*s));
    if (s == NULL || avm_list_new(c->nmembers + 1, &s->views) != 0) {
        free(s);
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    s->c = c;
    s->req = req;
    s->views.u.l->items[0] = lst(2, cstr(c->self), view_val(c));
    s->outstanding = 1; /* this function's own hold */
    for (size_t i = 0; i < c->nmembers; i++) {
        member *mb = &c->members[i];
        if (!mb->reachable) {
            s->views.u.l->items[i + 1] =
                lst(2, cstr(mb->name), cstr("unreachable from here"));
            continue;
        }
        s->views.u.l->items[i + 1] = lst(2, cstr(mb->name), avm_nil());
        status_ask *a = calloc(1, sizeof(*a));
        char err[256];
        if (a == NULL)
            continue;
        *a = (status_ask){s, i + 1};
        s->outstanding++;
        /* A member that does not answer within the detector's bound shows as
         * such; the status does not wait longer for it. */
        uint32_t wait = c->bound_ms < c->request_ms ? c->bound_ms : c->request_ms;
        if (avm_link_request(c->link, mb->name, "cluster.view", avm_nil(), wait,
                             status_reply, a, err, sizeof(err)) != 0) {
            s->outstanding--;
            free(a);
        }
    }
    if (--s->outstanding == 0)
        status_finish(s);
}

void avm_cluster_op_join(avm_cluster *c, avm_ctl_req *req, avm_val body)
{
    avm_val n = avm_ctl_get(body, "name"), u = avm_ctl_get(body, "url"),
            k = avm_ctl_get(body, "controller");
    if (n.kind != AVM_STR || u.kind != AVM_STR || k.kind != AVM_STR) {
        avm_ctl_reply_error(req, AVM_EINVAL,
                            "cluster.join: expected name, url and controller strings");
        return;
    }
    if (strcmp(n.u.s->data, c->self) == 0) {
        avm_ctl_reply_error(req, AVM_EINVAL, "cluster.join: %s is this node's own name",
                            c->self);
        return;
    }
    member *other = host_of(c, k);
    if (strcmp(k.u.s->data, c->ctrl) == 0 ||
        (other != NULL && strcmp(other->name, n.u.s->data) != 0)) {
        avm_ctl_reply_error(req, AVM_EINVAL,
                            "cluster.join: controller %s is hosted by another member",
                            k.u.s->data);
        return;
    }
    avm_val t = avm_ctl_get(body, "incarnation");
    int rv = member_put(c, n.u.s->data, u.u.s->data, k.u.s->data,
                        t.kind == AVM_INT ? (uint64_t)t.u.i : 0);
    if (rv != 0) {
        avm_ctl_reply_error(req, rv,
                            "cluster.join: invalid member (name: letters, digits, - _ .; "
                            "url: tcp://HOST:PORT)");
        return;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, "members", members_val(c));
    avm_val out;
    if (avm_ctl_body_finish(&b, &out) != 0) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    avm_ctl_reply(req, out);
    avm_val_release(out);
}

int avm_cluster_join(avm_cluster *c, const char *addr, char *errmsg, size_t errlen)
{
    return avm_cluster_join_as(c, addr, NULL, errmsg, errlen);
}

int avm_cluster_join_as(avm_cluster *c, const char *addr, const char *token, char *errmsg,
                        size_t errlen)
{
    avm_ctl_client *cl;
    int rv = avm_ctl_client_open(addr, &cl, errmsg, errlen);
    if (rv != 0)
        return rv;
    if (token != NULL && avm_ctl_client_set_token(cl, token) != 0) {
        avm_ctl_client_close(cl);
        snprintf(errmsg, errlen, "out of memory");
        return AVM_ENOMEM;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "name", c->self);
    avm_ctl_put_str(&b, "url", c->url);
    avm_ctl_put_str(&b, "controller", c->ctrl);
    avm_ctl_put_int(&b, "incarnation", (int64_t)c->inc);
    avm_val body, reply = avm_nil();
    rv = avm_ctl_body_finish(&b, &body);
    if (rv == 0) {
        rv = avm_ctl_call(cl, "cluster.join", body, 5000, &reply, errmsg, errlen);
        avm_val_release(body);
    }
    avm_ctl_client_close(cl);
    if (rv == 0) {
        members_merge(c, avm_ctl_get(reply, "members"));
        logf_(c, L_INFO, "cluster.joined", "via", "%s (%zu members known)", addr,
              c->nmembers);
    }
    avm_val_release(reply);
    return rv;
}

/* --- Link callbacks and the tick ------------------------------------------------- */

static void on_message(void *arg, const char *from, avm_val body)
{
    avm_cluster *c = arg;
    /* One-way messages: [kind, payload]. */
    const char *kind = body.kind == AVM_LIST && avm_list_len(body) == 2 &&
                               avm_list_at(body, 0).kind == AVM_STR
                           ? avm_list_at(body, 0).u.s->data
                           : "";
    if (strcmp(kind, "members") == 0)
        members_merge(c, avm_list_at(body, 1));
    else if (strcmp(kind, "obj.refresh") == 0 || strcmp(kind, "obj.gone") == 0)
        on_refresh(c, from, avm_list_at(body, 1), kind[4] == 'g');
    else if (strcmp(kind, "exec.visit") == 0)
        on_exec_visit(c, from, avm_list_at(body, 1));
    else if (strcmp(kind, "exec.refused") == 0)
        on_exec_refused(c, from, avm_list_at(body, 1));
    else if (strcmp(kind, "raft") == 0)
        avm_rctl_on_frames(c->rctl, from, avm_list_at(body, 1));
    else if (strcmp(kind, "bundle.abort") == 0)
        avm_bundle_on_message(c->bundles, from, avm_list_at(body, 1));
    else if (strcmp(kind, "ctrls") == 0)
        avm_rctl_on_gossip(c->rctl, from, avm_list_at(body, 1));
    else
        logf_(c, L_WARN, "link.message", "error", "from %s: unknown message", from);
}

static void on_request(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body)
{
    avm_cluster *c = arg;
    if (strcmp(op, "obj.get") == 0)
        on_obj_get(c, req, from, body);
    else if (strcmp(op, "obj.apply") == 0)
        on_obj_apply(c, req, body);
    else if (strcmp(op, "ctl") == 0)
        on_ctl(c, req, body);
    else if (strcmp(op, "cluster.view") == 0) {
        avm_val v = view_val(c);
        avm_link_reply(req, v);
        avm_val_release(v);
    } else if (!avm_rctl_on_request(c->rctl, req, from, op, body) &&
               !avm_bundle_on_request(c->bundles, req, from, op, body))
        avm_link_reply_error(req, AVM_EINVAL, "unknown request '%s' from %s", op, from);
}

static void on_restart(void *arg, const char *peer)
{
    avm_cluster *c = arg;
    logf_(c, L_INFO, "peer.restarted", "peer", "%s", peer);
    forget_peer(c, peer);
    avm_rctl_peer_lost(c->rctl, peer);
    if (c->m != NULL) {
        /* Executions visiting it were in its memory: they are gone. */
        avm_val mv = str(AVM_MACHID, peer, strlen(peer));
        avm_mgr_machine_lost(c->m, mv);
        avm_val_release(mv);
        kick(c);
    }
}

/* A member's heartbeats name another address than ours for it: it restarted on a
 * new one; dial it there (its gossip brings the rest). */
static void on_moved(void *arg, const char *peer, const char *url)
{
    avm_cluster *c = arg;
    member *mb = member_find(c, peer);
    char err[256];
    if (mb == NULL || strlen(url) > URL_MAX_LEN || strncmp(url, "tcp://", 6) != 0)
        return;
    if (avm_link_add_peer(c->link, peer, url, err, sizeof(err)) != 0) {
        logf_(c, L_WARN, "cluster.member", "error", "%s at %s: %s", peer, url, err);
        return;
    }
    snprintf(mb->url, sizeof(mb->url), "%s", url);
    logf_(c, L_INFO, "cluster.member", "member", "%s moved to %s (its heartbeats say)",
          peer, url);
}

static void on_heard(void *arg, const char *peer, uint64_t now_ms)
{
    avm_cluster *c = arg;
    member *mb = member_find(c, peer);
    /* The detector learns the heartbeat rhythm: frames that come in bursts (calls
     * going back and forth) count once per half period, or a pause of a few
     * heartbeats in a busy pair would look like a crash. */
    if (mb == NULL || mb->fed_ms == 0 || now_ms - mb->fed_ms >= c->hb_ms / 2 ||
        !mb->reachable) {
        avm_fd_heard(c->fd, peer, now_ms);
        if (mb != NULL)
            mb->fed_ms = now_ms;
    }
    if (mb != NULL && !mb->reachable) {
        mb->reachable = true;
        logf_(c, L_INFO, "peer.reachable", "peer", "%s", peer);
    }
}

static void on_tick(uv_timer_t *t)
{
    avm_cluster *c = t->data;
    uint64_t now = uv_now(c->loop);
    if (c->m != NULL && avm_mgr_catching_up(c->m)) {
        /* Arrived executions waiting for replicas here: see them again. */
        avm_mgr_catchup_tick(c->m);
        kick(c);
    }
    if (!c->settled && avm_cluster_settled(c))
        kick(c); /* executions held back at start may run now */
    for (size_t i = 0; i < c->nmembers; i++) {
        member *mb = &c->members[i];
        bool r = avm_fd_reachable(c->fd, mb->name, now);
        if (r == mb->reachable)
            continue;
        mb->reachable = r;
        logf_(c, L_INFO, r ? "peer.reachable" : "peer.unreachable", "peer", "%s",
              mb->name);
        if (!r) {
            forget_peer(c, mb->name);
            avm_rctl_peer_lost(c->rctl, mb->name);
            /* Requests to it (forwarded control requests, fetches, commits) end now,
             * not at their deadlines. */
            avm_link_fail_requests(c->link, mb->name, "unreachable (failure detector)");
            if (c->stopped)
                return;
        }
        if (!r && c->m != NULL) {
            avm_val mv = str(AVM_MACHID, mb->name, strlen(mb->name));
            avm_mgr_machine_lost(c->m, mv);
            avm_val_release(mv);
            kick(c);
        }
    }
    if (now - c->last_sweep >= 250) {
        c->last_sweep = now;
        sweep_copies(c, now);
    }
    if (now - c->last_gossip >= 1000) {
        c->last_gossip = now;
        avm_val msg = lst(2, cstr("members"), members_val(c));
        char err[256];
        /* In its first 30 s a node tells every member, reachable or not, where it
         * is: after a restart on a new address, a member that has not heard of it
         * yet still dials the old one, so it never becomes reachable there. */
        bool young = now - c->started_ms < 30000;
        for (size_t i = 0; i < c->nmembers; i++)
            if (c->members[i].reachable || young)
                avm_link_send(c->link, c->members[i].name, msg, err, sizeof(err));
        avm_val_release(msg);
        avm_rctl_gossip(c->rctl);
    }
}

/* --- Reachability and controllers for the manager --------------------------------- */

static bool h_reach_machine(void *arg, avm_val m)
{
    avm_cluster *c = arg;
    if (avm_val_eq(m, c->self_id))
        return true;
    member *mb = member_of_val(c, m);
    return mb != NULL && mb->reachable;
}

static bool h_local_ctrl(void *arg, avm_val k)
{
    avm_cluster *c = arg;
    return AVM_KIND_HAS_STR(k.kind) && strcmp(k.u.s->data, c->ctrl) == 0;
}

static bool h_replicated(void *arg, avm_val k)
{
    avm_cluster *c = arg;
    return avm_rctl_replicated(c->rctl, k);
}

static bool h_reach_ctrl(void *arg, avm_val k)
{
    avm_cluster *c = arg;
    if (avm_rctl_replicated(c->rctl, k))
        return avm_rctl_reachable(c->rctl, k);
    if (h_local_ctrl(arg, k))
        return true;
    member *mb = host_of(c, k);
    return mb != NULL && mb->reachable;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Round-robin over this node and the reachable members, in name order. */
static avm_val h_place(void *arg)
{
    avm_cluster *c = arg;
    const char *names[MAX_SPREAD];
    size_t n = 0;
    names[n++] = c->self;
    for (size_t i = 0; i < c->nmembers && n < MAX_SPREAD; i++)
        if (c->members[i].reachable)
            names[n++] = c->members[i].name;
    qsort(names, n, sizeof(names[0]), by_name);
    const char *pick = names[c->placed++ % n];
    return str(AVM_MACHID, pick, strlen(pick));
}

bool avm_cluster_is_member(const avm_cluster *c, const char *machine)
{
    return strcmp(machine, c->self) == 0 || member_find(c, machine) != NULL;
}

int avm_cluster_port(const avm_cluster *c)
{
    return avm_link_port(c->link);
}

/* --- Lifecycle ------------------------------------------------------------------- */

int avm_cluster_start(uv_loop_t *loop, const avm_cluster_config *cfg, avm_cluster **out,
                      char *errmsg, size_t errlen)
{
    if (!valid_name(cfg->self, strlen(cfg->self)) ||
        !valid_name(cfg->controller, strlen(cfg->controller))) {
        snprintf(errmsg, errlen,
                 "machine and controller names: 1 to 63 letters, digits, - _ .");
        return AVM_EINVAL;
    }
    avm_cluster *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return AVM_ENOMEM;
    c->cfg = *cfg;
    c->loop = loop;
    snprintf(c->self, sizeof(c->self), "%s", cfg->self);
    snprintf(c->ctrl, sizeof(c->ctrl), "%s", cfg->controller);
    c->request_ms = cfg->request_ms ? cfg->request_ms : 5000;
    c->forward_ms = cfg->forward_ms ? cfg->forward_ms : 10000;
    c->copy_ttl_ms = 10000;
    uv_timeval64_t tv;
    c->inc = uv_gettimeofday(&tv) == 0
                 ? (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000
                 : uv_hrtime() / 1000000;
    c->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
    c->bound_ms = cfg->fd_bound_ms ? cfg->fd_bound_ms : 1000;
    c->self_id = str(AVM_MACHID, c->self, strlen(c->self));
    avm_fd_config fc = {.phi_threshold = cfg->phi,
                        .max_silence_ms = cfg->fd_bound_ms,
                        .expected_ms = cfg->heartbeat_ms};
    c->fd = avm_fd_new(&fc);
    if (c->fd == NULL || c->self_id.kind == AVM_NIL) {
        avm_cluster_free(c);
        return AVM_ENOMEM;
    }
    avm_link_config lc = {.self = c->self,
                          .listen = cfg->listen,
                          .heartbeat_ms = cfg->heartbeat_ms,
                          .on_message = on_message,
                          .on_request = on_request,
                          .on_heard = on_heard,
                          .on_restart = on_restart,
                          .on_moved = on_moved,
                          .tls_cert = cfg->tls_cert,
                          .tls_key = cfg->tls_key,
                          .tls_ca = cfg->tls_ca,
                          .log = on_link_log,
                          .arg = c};
    int rv = avm_link_start(loop, &lc, &c->link, errmsg, errlen);
    if (rv != 0) {
        avm_cluster_free(c);
        return rv;
    }
    if (cfg->advertise != NULL && *cfg->advertise) {
        snprintf(c->url, sizeof(c->url), "%s", cfg->advertise);
    } else {
        /* The listen address with its bound port. */
        const char *colon = strrchr(cfg->listen, ':');
        size_t hl = colon ? (size_t)(colon - cfg->listen) : strlen(cfg->listen);
        snprintf(c->url, sizeof(c->url), "%.*s:%d", (int)hl, cfg->listen,
                 avm_link_port(c->link));
    }
    if (avm_link_set_advertise(c->link, c->url) != 0) {
        avm_cluster_stop(c);
        *out = c;
        return AVM_ENOMEM;
    }
    for (size_t i = 0; i < cfg->npeers; i++) {
        const char *eq = strchr(cfg->peers[i], '=');
        char name[NAME_MAX_LEN + 1];
        if (eq == NULL || (size_t)(eq - cfg->peers[i]) > NAME_MAX_LEN) {
            snprintf(errmsg, errlen, "peer \"%s\": expected NAME=tcp://HOST:PORT",
                     cfg->peers[i]);
            avm_cluster_stop(c);
            *out = c;
            return AVM_EINVAL;
        }
        snprintf(name, sizeof(name), "%.*s", (int)(eq - cfg->peers[i]), cfg->peers[i]);
        rv = member_put(c, name, eq + 1, NULL, 0);
        if (rv != 0) {
            snprintf(errmsg, errlen, "peer \"%s\": expected NAME=tcp://HOST:PORT",
                     cfg->peers[i]);
            avm_cluster_stop(c);
            *out = c;
            return rv;
        }
    }
    c->hooks = (avm_mgr_cluster){.ship = h_ship,
                                 .fetch = h_fetch,
                                 .forward = h_forward,
                                 .local_ctrl = h_local_ctrl,
                                 .reachable_machine = h_reach_machine,
                                 .reachable_controller = h_reach_ctrl,
                                 .place = cfg->spread ? h_place : NULL,
                                 .changed = h_changed,
                                 .watched = h_watched,
                                 .replicated = h_replicated,
                                 .bundle_abort = h_bundle_abort,
                                 .arg = c};
    avm_rctl_config rc = {.election_ms = cfg->raft_election_ms,
                          .heartbeat_ms = cfg->raft_heartbeat_ms,
                          .snapshot_every = cfg->raft_snapshot_every,
                          .request_ms = c->request_ms};
    rv = avm_rctl_new(c, &rc, &c->rctl, errmsg, errlen);
    if (rv == 0 && (rv = avm_bundles_new(c, c->rctl, &c->bundles)) != 0)
        snprintf(errmsg, errlen, "bundles: %s", avm_strerror(rv));
    if (rv != 0) {
        avm_cluster_stop(c);
        *out = c;
        return rv;
    }
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->started_ms = uv_now(loop);
    uint32_t hb = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
    uv_timer_start(&c->tick, on_tick, hb / 2 ? hb / 2 : 1, hb / 2 ? hb / 2 : 1);
    *out = c;
    return 0;
}

const avm_mgr_cluster *avm_cluster_manager_hooks(avm_cluster *c)
{
    return &c->hooks;
}

int avm_cluster_attach(avm_cluster *c, avm_mgr *m, char *errmsg, size_t errlen)
{
    c->m = m;
    return avm_rctl_attach(c->rctl, m, avm_mgr_db(m), errmsg, errlen);
}

void avm_cluster_op_ctrl(avm_cluster *c, avm_ctl_req *req, const char *op, avm_val body,
                         unsigned hops)
{
    avm_rctl_control(c->rctl, req, op, body, hops);
}

void avm_cluster_op_bundle(avm_cluster *c, avm_ctl_req *req, const char *op, avm_val body,
                           unsigned hops)
{
    avm_bundle_control(c->bundles, req, op, body, hops);
}

int avm_cluster_bundle_view(avm_cluster *c, const char *bundle,
                            void (*cb)(void *arg, int rv, avm_val view, uint64_t seen,
                                       const char *errmsg),
                            void *arg, char *errmsg, size_t errlen)
{
    return avm_bundle_view(c->bundles, bundle, cb, arg, errmsg, errlen);
}

void avm_cluster_stop(avm_cluster *c)
{
    if (c->stopped)
        return;
    c->stopped = true;
    if (c->rctl != NULL)
        avm_rctl_stop(c->rctl);
    avm_bundles_stop(c->bundles);
    if (uv_is_active((uv_handle_t *)&c->tick) || c->tick.loop != NULL)
        uv_close((uv_handle_t *)&c->tick, NULL);
    if (c->link != NULL)
        avm_link_stop(c->link);
}

void avm_cluster_free(avm_cluster *c)
{
    if (c == NULL)
        return;
    while (c->fetches != NULL) {
        fetch *f = c->fetches;
        c->fetches = f->next;
        avm_val_release(f->oid);
        free(f);
    }
    for (size_t i = 0; i < 1024; i++) {
        for (loc *l = c->locs[i], *nx; l != NULL; l = nx) {
            nx = l->next;
            avm_val_release(l->oid);
            free(l);
        }
        for (loc *l = c->pushed[i], *nx; l != NULL; l = nx) {
            nx = l->next;
            avm_val_release(l->oid);
            free(l);
        }
        for (sub *s = c->subs[i], *nx; s != NULL; s = nx) {
            nx = s->next;
            sub_free(s);
        }
    }
    for (size_t i = 0; i < 256; i++) {
        for (modent *e = c->mods[i], *nx; e != NULL; e = nx) {
            nx = e->next;
            avm_module_release(e->m);
            avm_val_release(e->bytes);
            free(e);
        }
    }
    avm_rctl_free(c->rctl); /* before the bundles: its last callbacks may name them */
    avm_bundles_free(c->bundles);
    avm_fd_free(c->fd);
    avm_val_release(c->self_id);
    free(c->members);
    free(c);
}

bool avm_cluster_settled(avm_cluster *c)
{
    if (!c->settled &&
        (uv_now(c->loop) - c->started_ms >= 3000 || avm_rctl_leaders_known(c->rctl)))
        c->settled = true;
    return c->settled;
}

/* --- For replicas.c (cluster_internal.h) ---------------------------------------- */

bool cl_local_ctrl(avm_cluster *c, avm_val k)
{
    return h_local_ctrl(c, k);
}

avm_link *cl_link(avm_cluster *c)
{
    return c->link;
}

uv_loop_t *cl_loop(avm_cluster *c)
{
    return c->loop;
}

avm_mgr *cl_mgr(avm_cluster *c)
{
    return c->m;
}

const char *cl_self(const avm_cluster *c)
{
    return c->self;
}

int cl_solve(avm_cluster *c, avm_val problem, avm_val *model, avm_buf *why)
{
    avm_solver_cfg sc = {.timeout_ms = c->cfg.solver_timeout_ms};
    return avm_solver_solve(&sc, problem, model, why);
}

uint64_t cl_incarnation(const avm_cluster *c)
{
    return c->inc;
}

void cl_kick(avm_cluster *c)
{
    kick(c);
}

bool cl_reachable(const avm_cluster *c, const char *machine)
{
    if (strcmp(machine, c->self) == 0)
        return true;
    const member *mb = member_find(c, machine);
    return mb != NULL && mb->reachable;
}

size_t cl_members(const avm_cluster *c, const char **names, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < c->nmembers && n < max; i++)
        names[n++] = c->members[i].name;
    return n;
}

bool cl_default_ctrl_taken(const avm_cluster *c, const char *name)
{
    if (strcmp(c->ctrl, name) == 0)
        return true;
    for (size_t i = 0; i < c->nmembers; i++)
        if (strcmp(c->members[i].ctrl, name) == 0)
            return true;
    return false;
}

void cl_logf(avm_cluster *c, int level, const char *event, const char *k, const char *fmt,
             ...)
{
    if (c->cfg.log == NULL)
        return;
    char v[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    c->cfg.log(c->cfg.arg, level, event, k, v);
}

avm_val cl_ws_val(avm_cluster *c, const avm_writeset *ws)
{
    return ws_val(c, ws);
}

int cl_ws_from(avm_cluster *c, avm_val v, avm_writeset *ws, void **buf, char *err,
               size_t en)
{
    wsbuf *w = calloc(1, sizeof(*w));
    *buf = w;
    if (w == NULL)
        return AVM_ENOMEM;
    int rv = ws_from(c, v, w, err, en);
    *ws = w->ws;
    return rv;
}

void cl_ws_free(void *buf)
{
    if (buf == NULL)
        return;
    wsbuf_free(buf);
    free(buf);
}

avm_val cl_versions_val(const avm_read *v, size_t n)
{
    return versions_val(v, n);
}

avm_read *cl_versions_from(avm_val l, size_t *n)
{
    return versions_from(l, n);
}

/* --- Inspection (cluster.h) --------------------------------------------------------- */

const uint64_t avm_cluster_lat_bounds_us[AVM_CLUSTER_LAT_BUCKETS] = {
    250,    500,    1000,   2500,    5000,    10000,   25000,   50000,
    100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000};

void avm_cluster_each_peer(avm_cluster *c,
                           void (*fn)(void *arg, const avm_cluster_peer *p), void *arg)
{
    uint64_t now = uv_now(c->loop);
    for (size_t i = 0; i < c->nmembers; i++) {
        const member *mb = &c->members[i];
        double phi = avm_fd_phi(c->fd, mb->name, now);
        if (phi > 1e6 || phi != phi)
            phi = 1e6;
        avm_link_peer_info pi = {0};
        avm_link_peer(c->link, mb->name, &pi);
        avm_cluster_peer p = {
            .name = mb->name,
            .reachable = mb->reachable,
            .phi = phi,
            .silent_ms = pi.last_heard_ms ? (int64_t)(now - pi.last_heard_ms) : -1,
        };
        fn(arg, &p);
    }
}

void avm_cluster_each_group(avm_cluster *c,
                            void (*fn)(void *arg, const avm_cluster_group *g), void *arg)
{
    avm_rctl_each_group(c->rctl, fn, arg);
}

void avm_cluster_stats_get(avm_cluster *c, avm_cluster_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (c->rctl != NULL) {
        avm_rctl_latencies(c->rctl, &out->commit_single, &out->commit_cross);
        avm_txn_stats ts;
        avm_txn_stats_get(avm_rctl_txn(c->rctl), &ts);
        out->tx_started = ts.started;
        out->tx_committed = ts.committed;
        out->tx_aborted = ts.aborted;
        out->tx_unknown = ts.unknown;
        out->tx_prepared = ts.prepared;
        out->tx_finished = ts.finished;
        out->tx_recovered = ts.recovered;
        out->tx_intents = ts.intents;
        out->tx_inflight = ts.inflight;
    }
    avm_bundles_count(c->bundles, out->bundles);
}
