/* Serialization of an execution's whole state (msgpack), so that an execution can
 * be checkpointed, resumed after a restart, or moved to another machine.
 *
 * Layout: [ "AVMEXEC", version, config, modules, stack, frames, contexts,
 *           current, transaction, detached, finished, counters, trace, outcome ]
 * Version 3 added the controller set of a multi-controller transaction (a tenth
 * element of each savepoint, the set before it, and of the transaction, the set)
 * and the bundle (a fourteenth element of the outcome). Version 4 added the
 * constraint layers: the finite-domain store and the nondeterministic choices and
 * requirements (the fifteenth and sixteenth elements of the outcome, nil when
 * unused). The config may have a seventh element, the principal that started the
 * execution (a string; written only when set, so states without one read as
 * before). Version 2 and 3 states still decode (without what they lack); this
 * runtime writes version 4.
 * Modules are embedded (deduplicated) and verified on decode. Decoding checks every
 * index and every frame against the verifier's stack heights, so a damaged or
 * hostile state is refused with a message instead of running. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "module.h"
#include "vm_internal.h"

#define EXEC_MAGIC "AVMEXEC"
#define EXEC_VERSION 4
#define EXEC_VERSION_MIN 2 /* the oldest format this runtime still reads */

/* Encoding ---------------------------------------------------------------------- */

typedef struct modtab {
    avm_module **v;
    size_t n, cap;
} modtab;

static int mod_index(modtab *t, avm_module *m, uint32_t *idx)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i] == m) {
            *idx = (uint32_t)i;
            return 0;
        }
    if (vm__vec_grow((void **)&t->v, &t->cap, sizeof(*t->v), t->n + 1) != 0)
        return AVM_ENOMEM;
    t->v[t->n] = m;
    *idx = (uint32_t)t->n++;
    return 0;
}

static void put_vals(avm_buf *b, const avm_val *v, size_t n)
{
    avm_mp_put_array(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
        avm_val_encode(b, v[i]);
}

static void put_pairs(avm_buf *b, const avm_pair *p, size_t n)
{
    avm_mp_put_array(b, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        avm_mp_put_array(b, 2);
        avm_val_encode(b, p[i].a);
        avm_val_encode(b, p[i].b);
    }
}

int avm_exec_encode(const avm_exec *x, avm_buf *out)
{
    return avm_exec_encode_ex(x, out, 0);
}

int avm_exec_encode_ex(const avm_exec *x, avm_buf *out, size_t trace_from)
{
    if (trace_from < x->tlog_base || trace_from - x->tlog_base > x->tlog.len)
        return AVM_EINVAL;
    if (x->commit_wait != CW_NONE)
        return AVM_ESTATE; /* the commit's decision is with the store, not here */
    modtab mods = {0};
    int rv = 0;
    /* Collect modules first: frames, then pending creates. */
    for (size_t i = 0; i < x->frames.n && rv == 0; i++) {
        uint32_t k;
        rv = mod_index(&mods, x->frames.v[i].mod, &k);
    }
    for (size_t i = 0; i < x->creates.n && rv == 0; i++) {
        uint32_t k;
        rv = mod_index(&mods, x->creates.v[i].beh.mod, &k);
    }
    if (rv != 0)
        goto done;

    avm_buf *b = out;
    avm_mp_put_array(b, 14);
    avm_mp_put_str(b, EXEC_MAGIC, strlen(EXEC_MAGIC));
    avm_mp_put_uint(b, EXEC_VERSION);
    /* config */
    /* A seventh element, the principal, only when one is set: the state of an
     * execution without one is encoded as before. */
    bool has_principal = x->principal.kind == AVM_STR;
    avm_mp_put_array(b, has_principal ? 7 : 6);
    avm_mp_put_uint(b, x->cfg.mode);
    avm_mp_put_bool(b, x->cfg.allow_unsafe);
    avm_mp_put_bool(b, x->cfg.keep_trace);
    avm_mp_put_bool(b, x->cfg.msc);
    avm_mp_put_uint(b, x->cfg.max_frames);
    avm_mp_put_uint(b, x->cfg.max_stack);
    if (has_principal)
        avm_val_encode(b, x->principal);
    /* modules */
    avm_mp_put_array(b, (uint32_t)mods.n);
    for (size_t i = 0; i < mods.n; i++) {
        avm_buf mb;
        avm_buf_init(&mb);
        rv = avm_module_encode(mods.v[i], &mb);
        if (rv == 0)
            avm_mp_put_bin(b, mb.data, mb.len);
        avm_buf_free(&mb);
        if (rv != 0)
            goto done;
    }
    /* stack */
    put_vals(b, x->stack, x->sp);
    /* frames */
    avm_mp_put_array(b, (uint32_t)x->frames.n);
    for (size_t i = 0; i < x->frames.n; i++) {
        const vm_frame *f = &x->frames.v[i];
        uint32_t k;
        mod_index(&mods, f->mod, &k);
        avm_mp_put_array(b, 5);
        avm_mp_put_uint(b, k);
        avm_mp_put_uint(b, f->fn);
        avm_mp_put_uint(b, f->pc);
        avm_mp_put_uint(b, f->base);
        avm_mp_put_uint(b, f->kind);
    }
    /* contexts */
    avm_mp_put_array(b, (uint32_t)x->ctxs.n);
    for (size_t i = 0; i < x->ctxs.n; i++) {
        const vm_ctx *c = &x->ctxs.v[i];
        avm_mp_put_array(b, 8);
        avm_val_encode(b, c->self);
        avm_val_encode(b, c->input);
        avm_val_encode(b, c->sender);
        avm_val_encode(b, c->machine);
        avm_val_encode(b, c->oid);
        avm_val_encode(b, c->inp);
        avm_mp_put_bool(b, c->in_tx);
        avm_mp_put_uint(b, c->txdepth);
    }
    /* current activation */
    avm_mp_put_array(b, 4);
    avm_val_encode(b, x->self);
    avm_val_encode(b, x->input);
    avm_val_encode(b, x->sender);
    avm_val_encode(b, x->machine);
    /* transaction */
    avm_mp_put_array(b, 10);
    avm_mp_put_array(b, (uint32_t)x->tx.n);
    for (size_t i = 0; i < x->tx.n; i++) {
        const vm_savept *s = &x->tx.v[i];
        avm_mp_put_array(b, 10);
        avm_val_encode(b, s->txid);
        avm_val_encode(b, s->ctrl_before);
        avm_mp_put_uint(b, s->nctx);
        avm_mp_put_uint(b, s->nreads);
        avm_mp_put_uint(b, s->ncreates);
        avm_mp_put_uint(b, s->ntransfers);
        avm_mp_put_uint(b, s->nstates);
        avm_mp_put_uint(b, s->ndestroys);
        avm_mp_put_uint(b, s->nwrites);
        avm_val_encode(b, s->set_before);
    }
    avm_val_encode(b, x->txctrl);
    avm_mp_put_array(b, (uint32_t)x->reads.n);
    for (size_t i = 0; i < x->reads.n; i++) {
        avm_mp_put_array(b, 2);
        avm_val_encode(b, x->reads.v[i].oid);
        avm_mp_put_uint(b, x->reads.v[i].version);
    }
    avm_mp_put_array(b, (uint32_t)x->creates.n);
    for (size_t i = 0; i < x->creates.n; i++) {
        const avm_create *c = &x->creates.v[i];
        uint32_t k;
        mod_index(&mods, c->beh.mod, &k);
        avm_mp_put_array(b, 7);
        avm_val_encode(b, c->oid);
        avm_val_encode(b, c->beh.name);
        avm_mp_put_uint(b, k);
        avm_mp_put_uint(b, c->beh.fn);
        avm_val_encode(b, c->meta.machine);
        avm_val_encode(b, c->meta.creating);
        avm_val_encode(b, c->meta.current);
    }
    put_pairs(b, x->transfers.v, x->transfers.n);
    put_pairs(b, x->states.v, x->states.n);
    put_vals(b, x->destroys.v, x->destroys.n);
    put_pairs(b, x->writes.v, x->writes.n);
    avm_val_encode(b, x->txset);
    /* detached states */
    put_pairs(b, x->detached.v, x->detached.n);
    /* finished transactions */
    avm_mp_put_array(b, VM_FINISHED_RING + 1);
    avm_mp_put_uint(b, x->nfinished);
    for (uint32_t i = 0; i < VM_FINISHED_RING; i++) {
        avm_mp_put_array(b, 2);
        avm_val_encode(b, x->finished[i].txid);
        avm_mp_put_bool(b, x->finished[i].committed);
    }
    /* counters */
    avm_mp_put_array(b, 4);
    avm_mp_put_uint(b, x->counter);
    avm_mp_put_uint(b, x->steps);
    avm_mp_put_uint(b, x->lamport);
    avm_mp_put_uint(b, x->mcount + x->tbase_mcount);
    /* trace: the event count, where this state's part of the log starts, and that
     * part (the bytes before it are kept elsewhere, see avm_exec_encode_ex) */
    avm_mp_put_array(b, 3);
    avm_mp_put_uint(b, x->tcount + x->tbase_count);
    avm_mp_put_uint(b, trace_from);
    size_t at = trace_from - x->tlog_base;
    /* tlog.data is NULL while the log is empty: no arithmetic on it */
    avm_mp_put_bin(b, x->tlog.len > at ? x->tlog.data + at : x->tlog.data,
                   x->tlog.len - at);
    /* outcome */
    avm_mp_put_array(b, 16);
    avm_mp_put_uint(b, x->status);
    avm_mp_put_bool(b, x->started);
    avm_val_encode(b, x->result);
    avm_val_encode(b, x->blocked_on);
    avm_mp_put_uint(b, x->error.code);
    avm_val_encode(b, x->error.args[0]);
    avm_val_encode(b, x->error.args[1]);
    avm_val_encode(b, x->error.args[2]);
    avm_val_encode(b, x->error.source);
    avm_mp_put_uint(b, x->error.line);
    avm_mp_put_uint(b, x->error.col);
    avm_val_encode(b, x->ckpt_id);
    avm_mp_put_bool(b, x->resume_commit);
    avm_val_encode(b, x->bundle);
    if ((rv = vm__fd_encode(x, b)) != 0 || (rv = vm__nd_encode(x, b)) != 0)
        goto done;
    rv = b->err;
done:
    free(mods.v);
    return rv;
}

/* Decoding ---------------------------------------------------------------------- */

typedef struct dec {
    avm_mp_reader r;
    const uint8_t *prefix; /* the trace log's first prefix_len bytes */
    size_t prefix_len;
    bool part; /* the prefix stays elsewhere (avm_exec_decode_part) */
    char *errmsg;
    size_t errlen;
    avm_module **mods;
    uint32_t nmods;
    uint64_t version; /* the state's format version */
} dec;

static int bad(dec *d, int code, const char *what)
{
    if (d->errmsg && d->errlen > 0)
        snprintf(d->errmsg, d->errlen, "execution state: %s", what);
    return code ? code : AVM_EMALFORMED;
}

#define TRY(d, expr, what)                                                               \
    do {                                                                                 \
        int rv_ = (expr);                                                                \
        if (rv_ != 0)                                                                    \
            return bad(d, rv_, what);                                                    \
    } while (0)

static int get_arr(dec *d, uint32_t want, const char *what)
{
    uint32_t n;
    TRY(d, avm_mp_get_array(&d->r, &n), what);
    if (n != want)
        return bad(d, AVM_EMALFORMED, what);
    return 0;
}

static int get_u(dec *d, uint64_t max, uint64_t *v, const char *what)
{
    TRY(d, avm_mp_get_uint(&d->r, v), what);
    if (*v > max)
        return bad(d, AVM_EMALFORMED, what);
    return 0;
}

static int get_v(dec *d, avm_val *v, const char *what)
{
    TRY(d, avm_mp_get_val(&d->r, v), what);
    return 0;
}

/* A value of one of the given kinds (nil allowed when nil_ok). */
static int get_kind(dec *d, avm_val *v, avm_kind k, bool nil_ok, const char *what)
{
    int rv = get_v(d, v, what);
    if (rv != 0)
        return rv;
    if (v->kind == k || (nil_ok && v->kind == AVM_NIL))
        return 0;
    avm_val_release(*v);
    *v = avm_nil();
    return bad(d, AVM_EMALFORMED, what);
}

/* A controller set: nil, or a LIST of at least two controller ids. */
static int get_ctrl_set(dec *d, avm_val *v, const char *what)
{
    int rv = get_v(d, v, what);
    if (rv != 0 || v->kind == AVM_NIL)
        return rv;
    bool ok = v->kind == AVM_LIST && v->u.l->len >= 2;
    for (uint32_t i = 0; ok && i < v->u.l->len; i++)
        ok = v->u.l->items[i].kind == AVM_CTRLID;
    if (ok)
        return 0;
    avm_val_release(*v);
    *v = avm_nil();
    return bad(d, AVM_EMALFORMED, what);
}

static int get_pairs(dec *d, avm_exec *x, void *vecp, const char *what)
{
    VEC(avm_pair) *vec = vecp;
    uint32_t n;
    TRY(d, avm_mp_get_array(&d->r, &n), what);
    for (uint32_t i = 0; i < n; i++) {
        avm_pair p = {avm_nil(), avm_nil()};
        int rv = get_arr(d, 2, what);
        if (rv == 0)
            rv = get_v(d, &p.a, what);
        if (rv == 0)
            rv = get_v(d, &p.b, what);
        if (rv == 0 && VEC_PUSH(x, *vec, p) != 0)
            rv = bad(d, AVM_ENOMEM, "out of memory");
        if (rv != 0) {
            avm_val_release(p.a);
            avm_val_release(p.b);
            return rv;
        }
    }
    return 0;
}

static int decode_body(dec *d, avm_exec *x)
{
    uint64_t u;
    const char *s;
    uint32_t n;
    int rv;

    TRY(d, get_arr(d, 14, "not an execution state"), "not an execution state");
    TRY(d, avm_mp_get_str(&d->r, &s, &n), "not an execution state");
    if (n != strlen(EXEC_MAGIC) || memcmp(s, EXEC_MAGIC, n) != 0)
        return bad(d, AVM_EMALFORMED, "not an execution state (bad magic)");
    TRY(d, avm_mp_get_uint(&d->r, &u), "bad version");
    if (u < EXEC_VERSION_MIN || u > EXEC_VERSION) {
        if (d->errmsg)
            snprintf(d->errmsg, d->errlen,
                     "execution state: format version %llu, this runtime reads %d to %d",
                     (unsigned long long)u, EXEC_VERSION_MIN, EXEC_VERSION);
        return AVM_EVERSION;
    }
    d->version = u;
    bool v3 = u >= 3;
    /* config */
    uint32_t ncfg;
    TRY(d, avm_mp_get_array(&d->r, &ncfg), "config");
    if (ncfg != 6 && ncfg != 7)
        return bad(d, AVM_EMALFORMED, "config");
    if ((rv = get_u(d, 1, &u, "config mode")) != 0)
        return rv;
    x->cfg.mode = (avm_mode)u;
    TRY(d, avm_mp_get_bool(&d->r, &x->cfg.allow_unsafe), "config");
    TRY(d, avm_mp_get_bool(&d->r, &x->cfg.keep_trace), "config");
    TRY(d, avm_mp_get_bool(&d->r, &x->cfg.msc), "config");
    if ((rv = get_u(d, UINT32_MAX, &u, "config max_frames")) != 0)
        return rv;
    x->cfg.max_frames = u ? (uint32_t)u : 10000;
    if ((rv = get_u(d, UINT32_MAX, &u, "config max_stack")) != 0)
        return rv;
    x->cfg.max_stack = u ? (uint32_t)u : 1000000;
    if (ncfg == 7) {
        if ((rv = get_kind(d, &x->principal, AVM_STR, false, "config principal")) != 0)
            return rv;
        if (x->principal.u.s->len == 0)
            return bad(d, AVM_EMALFORMED, "config principal");
    }

    /* modules */
    TRY(d, avm_mp_get_array(&d->r, &n), "modules");
    d->mods = calloc(n + 1, sizeof(avm_module *));
    if (d->mods == NULL)
        return bad(d, AVM_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p;
        uint32_t len;
        TRY(d, avm_mp_get_bin(&d->r, &p, &len), "module bytes");
        char merr[256] = "";
        const avm_platform *pl = x->plat;
        avm_module *known =
            pl->module_lookup != NULL ? pl->module_lookup(pl->data, p, len) : NULL;
        if (known != NULL) {
            avm_module_retain(known);
            d->mods[i] = known;
        } else {
            rv = avm_module_decode(p, len, &d->mods[i], merr, sizeof(merr));
            if (rv != 0) {
                if (d->errmsg)
                    snprintf(d->errmsg, d->errlen, "execution state: module %u: %s", i,
                             merr);
                return rv;
            }
            if (pl->module_keep != NULL)
                pl->module_keep(pl->data, p, len, d->mods[i]);
        }
        d->nmods = i + 1;
    }

    /* stack */
    TRY(d, avm_mp_get_array(&d->r, &n), "stack");
    if (n > x->cfg.max_stack)
        return bad(d, AVM_ETOOBIG, "stack larger than its limit");
    if (vm__ensure_stack(x, n + 1) != 0)
        return bad(d, AVM_ENOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        if ((rv = get_v(d, &x->stack[x->sp], "stack value")) != 0)
            return rv;
        x->sp++;
    }

    /* frames */
    TRY(d, avm_mp_get_array(&d->r, &n), "frames");
    if (n > x->cfg.max_frames)
        return bad(d, AVM_ETOOBIG, "more frames than the limit");
    for (uint32_t i = 0; i < n; i++) {
        uint64_t mi, fn, pc, base, kind;
        if (d->nmods == 0)
            return bad(d, AVM_EMALFORMED, "frame without modules");
        if ((rv = get_arr(d, 5, "frame")) ||
            (rv = get_u(d, d->nmods - 1, &mi, "frame module")))
            return rv;
        avm_module *m = d->mods[mi];
        if ((rv = get_u(d, m->nfuncs - 1, &fn, "frame function")) ||
            (rv = get_u(d, m->funcs[fn].code_len - 1, &pc, "frame pc")) ||
            (rv = get_u(d, x->sp, &base, "frame base")) ||
            (rv = get_u(d, FR_PURE, &kind, "frame kind")))
            return rv;
        vm_frame fr = {.mod = m,
                       .fn = (uint32_t)fn,
                       .pc = (uint32_t)pc,
                       .base = (uint32_t)base,
                       .kind = (uint8_t)kind};
        if (VEC_PUSH(x, x->frames, fr) != 0)
            return bad(d, AVM_ENOMEM, "out of memory");
        avm_module_retain(m);
    }

    /* contexts */
    TRY(d, avm_mp_get_array(&d->r, &n), "contexts");
    if (n > x->frames.n + 1)
        return bad(d, AVM_EMALFORMED, "more contexts than frames");
    for (uint32_t i = 0; i < n; i++) {
        vm_ctx c = {0};
        if ((rv = get_arr(d, 8, "context")) != 0)
            return rv;
        avm_val *f[] = {&c.self, &c.input, &c.sender, &c.machine, &c.oid, &c.inp};
        for (int k = 0; k < 6; k++)
            if ((rv = get_v(d, f[k], "context value")) != 0)
                goto ctx_fail;
        if ((rv = avm_mp_get_bool(&d->r, &c.in_tx)) != 0 ||
            (rv = get_u(d, UINT32_MAX, &u, "context txdepth")) != 0) {
            rv = bad(d, rv, "context");
            goto ctx_fail;
        }
        c.txdepth = (uint32_t)u;
        if (VEC_PUSH(x, x->ctxs, c) != 0) {
            rv = bad(d, AVM_ENOMEM, "out of memory");
            goto ctx_fail;
        }
        continue;
    ctx_fail:
        for (int k = 0; k < 6; k++)
            avm_val_release(*f[k]);
        return rv;
    }

    /* current activation */
    if ((rv = get_arr(d, 4, "activation")) || (rv = get_v(d, &x->self, "self")) ||
        (rv = get_v(d, &x->input, "input")) || (rv = get_v(d, &x->sender, "sender")) ||
        (rv = get_kind(d, &x->machine, AVM_MACHID, true, "machine")))
        return rv;

    /* transaction */
    if ((rv = get_arr(d, v3 ? 10 : 9, "transaction")) != 0)
        return rv;
    TRY(d, avm_mp_get_array(&d->r, &n), "savepoints");
    for (uint32_t i = 0; i < n; i++) {
        vm_savept sp = {avm_nil(), avm_nil(), avm_nil(), 0, 0, 0, 0, 0, 0, 0};
        uint64_t c[7];
        rv = get_arr(d, v3 ? 10 : 9, "savepoint");
        if (rv == 0)
            rv = get_kind(d, &sp.txid, AVM_TXID, false, "savepoint id");
        if (rv == 0)
            rv = get_kind(d, &sp.ctrl_before, AVM_CTRLID, true, "savepoint controller");
        for (int k = 0; k < 7 && rv == 0; k++)
            rv = get_u(d, UINT32_MAX, &c[k], "savepoint counts");
        if (rv == 0) {
            sp.nctx = (uint32_t)c[0];
            sp.nreads = c[1];
            sp.ncreates = c[2];
            sp.ntransfers = c[3];
            sp.nstates = c[4];
            sp.ndestroys = c[5];
            sp.nwrites = c[6];
        }
        if (rv == 0 && v3)
            rv = get_ctrl_set(d, &sp.set_before, "savepoint controller set");
        if (rv == 0 && VEC_PUSH(x, x->tx, sp) != 0)
            rv = bad(d, AVM_ENOMEM, "out of memory");
        if (rv != 0) {
            avm_val_release(sp.txid);
            avm_val_release(sp.ctrl_before);
            avm_val_release(sp.set_before);
            return rv;
        }
    }
    if ((rv = get_kind(d, &x->txctrl, AVM_CTRLID, true, "tx controller")) != 0)
        return rv;
    TRY(d, avm_mp_get_array(&d->r, &n), "reads");
    for (uint32_t i = 0; i < n; i++) {
        avm_read r = {avm_nil(), 0};
        if ((rv = get_arr(d, 2, "read")) ||
            (rv = get_kind(d, &r.oid, AVM_OBJID, false, "read id")))
            return rv;
        if ((rv = get_u(d, UINT64_MAX, &r.version, "read version")) != 0 ||
            VEC_PUSH(x, x->reads, r) != 0) {
            avm_val_release(r.oid);
            return rv ? rv : bad(d, AVM_ENOMEM, "out of memory");
        }
    }
    TRY(d, avm_mp_get_array(&d->r, &n), "creates");
    for (uint32_t i = 0; i < n; i++) {
        avm_create c;
        memset(&c, 0, sizeof(c));
        uint64_t mi = 0, fn = 0;
        rv = get_arr(d, 7, "create");
        if (rv == 0)
            rv = get_kind(d, &c.oid, AVM_OBJID, false, "create id");
        if (rv == 0)
            rv = get_kind(d, &c.beh.name, AVM_STR, false, "create behaviour");
        if (rv == 0)
            rv = d->nmods ? get_u(d, d->nmods - 1, &mi, "create module")
                          : bad(d, AVM_EMALFORMED, "create without modules");
        if (rv == 0)
            rv = get_u(d, d->mods[mi]->nfuncs - 1, &fn, "create function");
        if (rv == 0)
            rv = get_kind(d, &c.meta.machine, AVM_MACHID, false, "create machine");
        if (rv == 0)
            rv = get_kind(d, &c.meta.creating, AVM_CTRLID, true, "create controller");
        if (rv == 0)
            rv = get_kind(d, &c.meta.current, AVM_CTRLID, true, "create controller");
        if (rv == 0 && d->mods[mi]->funcs[fn].kind != AVM_FN_BEHAVIOR)
            rv =
                bad(d, AVM_EMALFORMED, "create names a function that is not a behaviour");
        if (rv == 0) {
            c.beh.mod = d->mods[mi];
            c.beh.fn = (uint32_t)fn;
            if (VEC_PUSH(x, x->creates, c) != 0)
                rv = bad(d, AVM_ENOMEM, "out of memory");
            else
                avm_module_retain(c.beh.mod);
        }
        if (rv != 0) {
            avm_val_release(c.oid);
            avm_val_release(c.beh.name);
            avm_val_release(c.meta.machine);
            avm_val_release(c.meta.creating);
            avm_val_release(c.meta.current);
            return rv;
        }
    }
    if ((rv = get_pairs(d, x, &x->transfers, "transfers")) ||
        (rv = get_pairs(d, x, &x->states, "states")))
        return rv;
    TRY(d, avm_mp_get_array(&d->r, &n), "destroys");
    for (uint32_t i = 0; i < n; i++) {
        avm_val v;
        if ((rv = get_kind(d, &v, AVM_OBJID, false, "destroy id")) != 0)
            return rv;
        if (VEC_PUSH(x, x->destroys, v) != 0) {
            avm_val_release(v);
            return bad(d, AVM_ENOMEM, "out of memory");
        }
    }
    if ((rv = get_pairs(d, x, &x->writes, "writes")) != 0)
        return rv;
    if (v3 && (rv = get_ctrl_set(d, &x->txset, "tx controller set")) != 0)
        return rv;
    if ((rv = get_pairs(d, x, &x->detached, "detached states")) != 0)
        return rv;

    /* finished */
    if ((rv = get_arr(d, VM_FINISHED_RING + 1, "finished")) ||
        (rv = get_u(d, UINT32_MAX, &u, "finished count")))
        return rv;
    x->nfinished = (uint32_t)u;
    for (uint32_t i = 0; i < VM_FINISHED_RING; i++) {
        if ((rv = get_arr(d, 2, "finished")) ||
            (rv = get_kind(d, &x->finished[i].txid, AVM_TXID, true, "finished id")))
            return rv;
        TRY(d, avm_mp_get_bool(&d->r, &x->finished[i].committed), "finished");
    }

    /* counters */
    uint64_t mcount;
    if ((rv = get_arr(d, 4, "counters")) ||
        (rv = get_u(d, UINT64_MAX, &x->counter, "counter")) ||
        (rv = get_u(d, UINT64_MAX, &x->steps, "steps")) ||
        (rv = get_u(d, UINT64_MAX, &x->lamport, "lamport")) ||
        (rv = get_u(d, UINT64_MAX, &mcount, "chart records")))
        return rv;

    /* trace: exactly `count` well-formed events fill the prefix and this part */
    uint64_t count, from;
    const uint8_t *tp;
    uint32_t tlen;
    if ((rv = get_arr(d, 3, "trace")) ||
        (rv = get_u(d, UINT64_MAX, &count, "trace count")) ||
        (rv = get_u(d, UINT64_MAX, &from, "trace offset")))
        return rv;
    TRY(d, avm_mp_get_bin(&d->r, &tp, &tlen), "trace log");
    if (d->part) {
        if (from > SIZE_MAX / 2)
            return bad(d, AVM_EMALFORMED, "trace offset");
        d->prefix_len = 0;
        x->tlog_base = (size_t)from;
    } else if (from != d->prefix_len) {
        if (d->errmsg)
            snprintf(
                d->errmsg, d->errlen,
                "execution state: its trace log starts at byte %llu, but %zu bytes of "
                "log were given",
                (unsigned long long)from, d->prefix_len);
        return AVM_EMALFORMED;
    }
    if (d->prefix_len > 0)
        avm_buf_put(&x->tlog, d->prefix, d->prefix_len);
    if (tlen > 0)
        avm_buf_put(&x->tlog, tp, tlen);
    if (x->tlog.err)
        return bad(d, AVM_ENOMEM, "out of memory");
    avm_mp_reader tr;
    avm_mp_reader_init(&tr, (const uint8_t *)x->tlog.data, x->tlog.len,
                       AVM_DECODE_DEFAULT_MAX);
    uint64_t charts = 0, seen = 0;
    for (; d->part ? tr.p != tr.end : seen < count; seen++) {
        avm_event e;
        if (seen >= count || vm__log_decode(&tr, &e) != 0)
            return bad(d, AVM_EMALFORMED, "trace event");
        charts += e.type >= AVM_MSC_CALL;
        avm_val_release(e.ctrl);
        for (int k = 0; k < 3; k++)
            avm_val_release(e.a[k]);
    }
    if (tr.p != tr.end)
        return bad(d, AVM_EMALFORMED, "trace log longer than its events");
    if (d->part ? charts > mcount || mcount - charts > count - seen : charts != mcount)
        return bad(d, AVM_EMALFORMED, "trace log: sequence-chart records miscounted");
    x->tcount = seen;
    x->mcount = charts;
    x->tbase_count = count - seen;
    x->tbase_mcount = mcount - charts;
    x->tlog_saved = d->part ? 0 : from;
    /* Not serialized: a restored transaction checks its states conservatively. */
    x->tx_detached = true;

    /* outcome */
    uint64_t st, ec, line, col;
    bool v4 = d->version >= 4;
    if ((rv = get_arr(d,
                      v4   ? 16
                      : v3 ? 14
                           : 13,
                      "outcome")) ||
        (rv = get_u(d, AVM_RUN_MOVED, &st, "status")))
        return rv;
    TRY(d, avm_mp_get_bool(&d->r, &x->started), "outcome");
    if ((rv = get_v(d, &x->result, "result")) ||
        (rv = get_v(d, &x->blocked_on, "blocked")) ||
        (rv = get_u(d, AVM_ERR_COUNT - 1, &ec, "error code")) ||
        (rv = get_v(d, &x->error.args[0], "error")) ||
        (rv = get_v(d, &x->error.args[1], "error")) ||
        (rv = get_v(d, &x->error.args[2], "error")) ||
        (rv = get_kind(d, &x->error.source, AVM_STR, true, "error source")) ||
        (rv = get_u(d, UINT32_MAX, &line, "error line")) ||
        (rv = get_u(d, UINT32_MAX, &col, "error col")) ||
        (rv = get_kind(d, &x->ckpt_id, AVM_STR, true, "checkpoint id")))
        return rv;
    TRY(d, avm_mp_get_bool(&d->r, &x->resume_commit), "outcome");
    if (v3 && (rv = get_kind(d, &x->bundle, AVM_STR, true, "bundle")) != 0)
        return rv;
    if (x->bundle.kind == AVM_STR && x->bundle.u.s->len == 0)
        return bad(d, AVM_EMALFORMED, "bundle");
    if (v4) {
        char why[200];
        why[0] = '\0';
        if ((rv = vm__fd_decode(x, &d->r, why, sizeof(why))) != 0)
            return bad(d, rv, why[0] ? why : "finite-domain store");
        if ((rv = vm__nd_decode(x, &d->r, why, sizeof(why))) != 0)
            return bad(d, rv, why[0] ? why : "nondeterministic choices");
    }
    x->status = (avm_run_status)st;
    x->error.code = (avm_error_code)ec;
    x->error.line = (uint32_t)line;
    x->error.col = (uint32_t)col;
    if (d->r.p != d->r.end)
        return bad(d, AVM_EMALFORMED, "trailing bytes");
    return 0;
}

/* Cross-checks that make the decoded state safe to run: frames stack up, every
 * operand stack has the height the verifier computed at its pc, boundary frames
 * and contexts correspond, and overlay counts are consistent. */
static int check_state(dec *d, avm_exec *x)
{
    bool running = x->status == AVM_RUN_YIELD || x->status == AVM_RUN_BLOCKED ||
                   x->status == AVM_RUN_MOVED;
    if (running && x->started && x->frames.n == 0)
        return bad(d, AVM_EMALFORMED, "a running execution without frames");
    if (!running && x->frames.n != 0)
        return bad(d, AVM_EMALFORMED, "a finished execution with frames");
    size_t boundaries = 0;
    for (size_t i = 0; i < x->frames.n; i++) {
        const vm_frame *f = &x->frames.v[i];
        const avm_func *fn = &f->mod->funcs[f->fn];
        if (f->kind == FR_MAIN || f->kind == FR_BEHAVIOR)
            boundaries++;
        if ((i == 0) != (f->kind == FR_MAIN))
            return bad(d, AVM_EMALFORMED, "the first frame, and only it, is the entry");
        if (f->kind == FR_BEHAVIOR && fn->kind != AVM_FN_BEHAVIOR)
            return bad(d, AVM_EMALFORMED, "a behaviour frame runs a non-behaviour");
        if (f->kind == FR_PURE && fn->kind != AVM_FN_PURE)
            return bad(d, AVM_EMALFORMED, "a pure frame runs a non-pure function");
        /* The entry frame runs the entry program or, after a tail call, any
         * function. */
        if (f->kind == FR_MAIN && fn->kind != AVM_FN_MAIN && fn->kind != AVM_FN_FUNC)
            return bad(d, AVM_EMALFORMED, "the entry frame does not run the entry");
        size_t top = i + 1 < x->frames.n ? x->frames.v[i + 1].base : x->sp;
        if ((size_t)f->base + fn->nlocals > top)
            return bad(d, AVM_EMALFORMED, "frame locals overlap the next frame");
        uint32_t h;
        if (avm_module_height_at(f->mod, f->fn, f->pc, &h) != 0)
            return bad(d, AVM_EMALFORMED, "frame pc is not an instruction boundary");
        size_t have = top - f->base - fn->nlocals;
        /* A caller waits for its callee's result: one value less than after. */
        size_t want = i + 1 < x->frames.n ? (h == 0 ? SIZE_MAX : h - 1) : h;
        if (have != want)
            return bad(d, AVM_EMALFORMED, "operand stack height disagrees with the code");
    }
    if (x->resume_commit) {
        /* Only a checkpoint taken at an outermost commitTx carries the mark. */
        const vm_frame *f = x->frames.n ? &x->frames.v[x->frames.n - 1] : NULL;
        const avm_func *fn = f ? &f->mod->funcs[f->fn] : NULL;
        if (f == NULL || x->tx.n != 1 || x->cfg.mode != AVM_MODE_DEFAULT ||
            fn->code[f->pc] != OP_AVM || f->pc + 2 >= fn->code_len ||
            fn->code[f->pc + 1] != AVM_I_COMMIT_TX)
            return bad(d, AVM_EMALFORMED, "a decided commit that is not at a commitTx");
    }
    if (x->ctxs.n != boundaries)
        return bad(d, AVM_EMALFORMED, "contexts do not match the frames");
    /* A multi-controller transaction is open, in default mode, and its first
     * controller is txController. */
    if (x->txset.kind == AVM_LIST && (x->tx.n == 0 || x->cfg.mode != AVM_MODE_DEFAULT ||
                                      !avm_val_eq(x->txset.u.l->items[0], x->txctrl)))
        return bad(d, AVM_EMALFORMED, "a controller set without its transaction");
    if (x->sp + 1 > x->stack_cap)
        return bad(d, AVM_EMALFORMED, "stack");
    for (size_t i = 0; i < x->tx.n; i++) {
        const vm_savept *s = &x->tx.v[i];
        if (s->nreads > x->reads.n || s->ncreates > x->creates.n ||
            s->ntransfers > x->transfers.n || s->nstates > x->states.n ||
            s->ndestroys > x->destroys.n || s->nwrites > x->writes.n ||
            s->nctx > x->ctxs.n)
            return bad(d, AVM_EMALFORMED, "savepoint beyond the overlay");
    }
    return 0;
}

int avm_exec_decode(const uint8_t *p, size_t n, const avm_platform *plat, avm_exec **out,
                    char *errmsg, size_t errlen)
{
    return avm_exec_decode_ex(p, n, NULL, 0, plat, out, errmsg, errlen);
}

static int decode_state(const uint8_t *p, size_t n, const uint8_t *prefix,
                        size_t prefix_len, bool part, const avm_platform *plat,
                        avm_exec **out, char *errmsg, size_t errlen);

int avm_exec_decode_ex(const uint8_t *p, size_t n, const uint8_t *prefix,
                       size_t prefix_len, const avm_platform *plat, avm_exec **out,
                       char *errmsg, size_t errlen)
{
    return decode_state(p, n, prefix, prefix_len, false, plat, out, errmsg, errlen);
}

int avm_exec_decode_part(const uint8_t *p, size_t n, const avm_platform *plat,
                         avm_exec **out, char *errmsg, size_t errlen)
{
    return decode_state(p, n, NULL, 0, true, plat, out, errmsg, errlen);
}

static int decode_state(const uint8_t *p, size_t n, const uint8_t *prefix,
                        size_t prefix_len, bool part, const avm_platform *plat,
                        avm_exec **out, char *errmsg, size_t errlen)
{
    dec d = {.errmsg = errmsg,
             .errlen = errlen,
             .prefix = prefix,
             .prefix_len = prefix ? prefix_len : 0,
             .part = part};
    avm_mp_reader_init(&d.r, p, n, AVM_DECODE_DEFAULT_MAX);
    avm_exec *x = avm_exec_new(plat, NULL);
    if (x == NULL)
        return AVM_ENOMEM;
    int rv = decode_body(&d, x);
    if (rv == 0)
        rv = check_state(&d, x);
    for (uint32_t i = 0; i < d.nmods; i++)
        avm_module_release(d.mods[i]);
    free(d.mods);
    if (rv != 0) {
        avm_exec_free(x);
        return rv;
    }
    /* Every frame must have room for its operand stack when it resumes. */
    for (size_t i = 0; i < x->frames.n; i++) {
        const vm_frame *f = &x->frames.v[i];
        const avm_func *fn = &f->mod->funcs[f->fn];
        if (vm__ensure_stack(x, f->base + fn->nlocals + fn->max_stack + 1) != 0) {
            avm_exec_free(x);
            return AVM_ENOMEM;
        }
    }
    *out = x;
    return 0;
}

int avm_exec_checkpoint(avm_exec *x, avm_buf *state, avm_writeset *ws)
{
    avm_buf_init(state);
    if (x->ckpt_id.kind != AVM_STR)
        return AVM_ESTATE;
    int rv = avm_exec_encode_ex(x, state, x->tlog_base + x->tlog.len);
    if (rv != 0) {
        avm_buf_free(state);
        return rv;
    }
    ws->ckpt_id = x->ckpt_id.u.s->data;
    ws->ckpt_state = (const uint8_t *)state->data;
    ws->ckpt_len = state->len;
    ws->ckpt_status = (uint8_t)x->status;
    ws->ckpt_trace = (const uint8_t *)x->tlog.data + x->tlog_saved;
    ws->ckpt_trace_len = x->tlog.len - x->tlog_saved;
    ws->ckpt_trace_at = x->tlog_saved;
    return 0;
}

int avm_exec_checkpoint_commit(avm_exec *x, avm_buf *state, avm_writeset *ws, char *key,
                               size_t keylen)
{
    avm_buf_init(state);
    if (x->ckpt_id.kind != AVM_STR || x->frames.n == 0 || x->tx.n != 1 ||
        x->cfg.mode != AVM_MODE_DEFAULT || x->resume_commit || x->commit_wait != CW_NONE)
        return AVM_ESTATE;
    vm_frame *fr = &x->frames.v[x->frames.n - 1];
    const avm_func *fn = &fr->mod->funcs[fr->fn];
    /* The dispatcher moved the frame's pc past the instruction being applied. */
    if (fr->pc < 3 || fn->code[fr->pc - 3] != OP_AVM ||
        fn->code[fr->pc - 2] != AVM_I_COMMIT_TX)
        return AVM_ESTATE;
    avm_val tid = x->tx.v[0].txid;
    if (!AVM_KIND_HAS_STR(tid.kind))
        return AVM_ESTATE;
    int kl = snprintf(key, keylen, "%s@%.*s", x->ckpt_id.u.s->data, (int)tid.u.s->len,
                      tid.u.s->data);
    if (kl < 0 || (size_t)kl >= keylen)
        return AVM_ETOOBIG;
    fr->pc -= 3;
    int rv = avm_exec_checkpoint(x, state, ws);
    fr->pc += 3;
    if (rv == 0)
        ws->ckpt_status = AVM_RUN_YIELD;
    return rv;
}

void avm_exec_checkpoint_saved(avm_exec *x, const avm_writeset *ws)
{
    x->tlog_saved = (size_t)ws->ckpt_trace_at + ws->ckpt_trace_len;
}
