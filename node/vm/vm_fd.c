/* Finite domains (FD), default mode: the instructions newVar, narrow, post and
 * label, reifyConstraints, and the store's life across transaction levels (the
 * vm__fd_* hooks of vm_internal.h). The engine is fd.c; this file checks the
 * program's values, maps them onto the engine, and logs the events.
 *
 * The store is created at the first FD instruction with one level per transaction
 * level open at that moment (all at the empty state), so that the engine's levels
 * always match x->tx.n. DESIGN.md decision 5 (a label is a choice point) lives in
 * the engine's fd_level_abort. */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "fd.h"
#include "vm_internal.h"

/* A domain of more values than this is reified as (lo hi) runs. */
#define REIFY_MAX_VALUES 4096

struct vm_fd {
    fd_store *s;
    /* Scratch for the arguments of the instruction running (reused). */
    fd_iv *iv;
    size_t ivcap;
    uint32_t *vars;
    int64_t *offs;
    size_t varcap;
};

static int grow_scratch(void **p, size_t *cap, size_t elem, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *q = realloc(*p, ncap * elem);
    if (q == NULL)
        return AVM_ENOMEM;
    *p = q;
    *cap = ncap;
    return 0;
}

/* Errors ---------------------------------------------------------------------------- */

/* The printed form of v, cut to fit out. */
static const char *describe(avm_val v, char *out, size_t len)
{
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, v);
    const char *t = b.err ? "?" : avm_buf_cstr(&b);
    size_t n = strlen(t);
    if (n >= len && len > 4) {
        memcpy(out, t, len - 4);
        memcpy(out + len - 4, "...", 4);
    } else {
        snprintf(out, len, "%s", t);
    }
    avm_buf_free(&b);
    return out;
}

/* Arguments ------------------------------------------------------------------------- */

static int ensure_store(avm_exec *x)
{
    if (x->fd != NULL)
        return fd_oom(x->fd->s) ? vm__oom(x) : VM_OK;
    struct vm_fd *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return vm__oom(x);
    f->s = fd_new((uint32_t)x->tx.n);
    if (f->s == NULL) {
        free(f);
        return vm__oom(x);
    }
    x->fd = f;
    return VM_OK;
}

/* A VarId of the store: ErrUnknownVar naming the value otherwise. */
static int get_var(avm_exec *x, avm_val v, uint32_t *out)
{
    if (v.kind != AVM_INT || v.u.i < 0 || v.u.i >= (int64_t)fd_nvars(x->fd->s))
        return vm__fail(x, AVM_ERR_FD_UNKNOWN_VAR, vm__ref(v), avm_nil(), avm_nil());
    *out = (uint32_t)v.u.i;
    return VM_OK;
}

/* A domain: a list of integers and (lo hi) intervals, into x->fd->iv normalized. */
static int get_domain(avm_exec *x, const char *instr, avm_val dom, size_t *n)
{
    struct vm_fd *f = x->fd;
    char what[120];
    if (dom.kind != AVM_LIST)
        return vm__failf(
            x, AVM_ERR_FD_INVALID_DOMAIN,
            "%s: the domain must be a list of integers and (lo hi) intervals, "
            "got %s",
            instr, describe(dom, what, sizeof(what)));
    size_t len = avm_list_len(dom);
    if (grow_scratch((void **)&f->iv, &f->ivcap, sizeof(fd_iv), len) != 0)
        return vm__oom(x);
    for (size_t i = 0; i < len; i++) {
        avm_val it = avm_list_at(dom, i);
        if (it.kind == AVM_INT) {
            f->iv[i].lo = f->iv[i].hi = it.u.i;
            continue;
        }
        if (it.kind == AVM_LIST && avm_list_len(it) == 2 &&
            avm_list_at(it, 0).kind == AVM_INT && avm_list_at(it, 1).kind == AVM_INT &&
            avm_list_at(it, 0).u.i <= avm_list_at(it, 1).u.i) {
            f->iv[i].lo = avm_list_at(it, 0).u.i;
            f->iv[i].hi = avm_list_at(it, 1).u.i;
            continue;
        }
        return vm__failf(
            x, AVM_ERR_FD_INVALID_DOMAIN,
            "%s: domain item %s is neither an integer nor an interval (lo hi) "
            "of integers with lo <= hi",
            instr, describe(it, what, sizeof(what)));
    }
    *n = fd_ivs_normalize(f->iv, len);
    return VM_OK;
}

/* A variable inside a constraint: ErrInvalidConstraint otherwise. */
static int con_var(avm_exec *x, const char *name, avm_val v, uint32_t *out)
{
    char what[120];
    if (v.kind != AVM_INT || v.u.i < 0 || v.u.i >= (int64_t)fd_nvars(x->fd->s))
        return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT, "%s: %s is not a variable",
                         name, describe(v, what, sizeof(what)));
    *out = (uint32_t)v.u.i;
    return VM_OK;
}

static int con_int(avm_exec *x, const char *name, const char *role, avm_val v,
                   int64_t *out)
{
    char what[120];
    if (v.kind != AVM_INT)
        return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                         "%s: the %s must be an integer, got %s", name, role,
                         describe(v, what, sizeof(what)));
    *out = v.u.i;
    return VM_OK;
}

/* Checks constraint c and posts it. */
static int post(avm_exec *x, avm_val c)
{
    struct vm_fd *f = x->fd;
    char what[120];
    avm_val head =
        c.kind == AVM_LIST && avm_list_len(c) > 0 ? avm_list_at(c, 0) : avm_nil();
    if (head.kind != AVM_STR)
        return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                         "post: a constraint is a list headed by its constructor's name, "
                         "got %s",
                         describe(c, what, sizeof(what)));
    int kind = fd_kind_from_name(head.u.s->data, head.u.s->len);
    if (kind < 0)
        return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT, "post: unknown constraint %s",
                         describe(head, what, sizeof(what)));
    const char *name = fd_kind_name((fd_kind)kind);
    size_t argc = avm_list_len(c) - 1;
    const avm_val *a = c.u.l->items + 1;
    int rv;
    if (kind == FD_ALLDIFF) {
        if (argc < 1 || argc > 2)
            return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                             "AllDiff takes a list of variables and an optional list of "
                             "integer offsets, got %zu arguments",
                             argc);
        if (a[0].kind != AVM_LIST)
            return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                             "AllDiff: the variables must be a list, got %s",
                             describe(a[0], what, sizeof(what)));
        size_t n = avm_list_len(a[0]);
        if (argc == 2 && (a[1].kind != AVM_LIST || avm_list_len(a[1]) != n))
            return vm__failf(
                x, AVM_ERR_FD_INVALID_CONSTRAINT,
                "AllDiff: the offsets must be a list of %zu integers, got %s", n,
                describe(a[1], what, sizeof(what)));
        if (n > FD_MAX_ALLDIFF)
            return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                             "AllDiff: %zu variables, more than %u", n, FD_MAX_ALLDIFF);
        size_t cap = f->varcap;
        if (grow_scratch((void **)&f->vars, &cap, sizeof(uint32_t), n) != 0 ||
            grow_scratch((void **)&f->offs, &f->varcap, sizeof(int64_t), n) != 0)
            return vm__oom(x);
        for (size_t i = 0; i < n; i++) {
            if ((rv = con_var(x, name, avm_list_at(a[0], i), &f->vars[i])) != VM_OK)
                return rv;
            f->offs[i] = 0;
            if (argc == 2 && (rv = con_int(x, name, "offset", avm_list_at(a[1], i),
                                           &f->offs[i])) != VM_OK)
                return rv;
        }
        return fd_post_alldiff(f->s, f->vars, f->offs, n) != 0 ? vm__oom(x) : VM_OK;
    }
    uint32_t va, vb = 0;
    int64_t k = 0;
    if (kind >= FD_VAL_EQ) {
        if (argc != 2)
            return vm__failf(x, AVM_ERR_FD_INVALID_CONSTRAINT,
                             "%s takes a variable and an integer, got %zu arguments",
                             name, argc);
        if ((rv = con_var(x, name, a[0], &va)) != VM_OK ||
            (rv = con_int(x, name, "value", a[1], &k)) != VM_OK)
            return rv;
    } else {
        if (argc != 2 && argc != 3)
            return vm__failf(
                x, AVM_ERR_FD_INVALID_CONSTRAINT,
                "%s takes two variables and an optional integer offset, got %zu "
                "arguments",
                name, argc);
        if ((rv = con_var(x, name, a[0], &va)) != VM_OK ||
            (rv = con_var(x, name, a[1], &vb)) != VM_OK ||
            (argc == 3 && (rv = con_int(x, name, "offset", a[2], &k)) != VM_OK))
            return rv;
    }
    return fd_post(f->s, (fd_kind)kind, va, vb, k) != 0 ? vm__oom(x) : VM_OK;
}

/* Instructions ---------------------------------------------------------------------- */

static int logged(avm_exec *x, int type, avm_val a0, avm_val a1, avm_val a2)
{
    return vm__event(x, type, a0, a1, a2) != 0 ? vm__oom(x) : VM_OK;
}

int vm__fd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out)
{
    (void)argc;
    int rv = ensure_store(x);
    if (rv != VM_OK)
        return rv;
    fd_store *s = x->fd->s;
    uint32_t v;
    size_t n;
    switch (op) {
    case AVM_I_NEW_VAR:
        if ((rv = get_domain(x, "newVar", a[0], &n)) != VM_OK)
            return rv;
        if (fd_new_var(s, x->fd->iv, n, &v) != 0)
            return vm__oom(x);
        *out = avm_int(v);
        return logged(x, AVM_EV_VAR_CREATED, avm_int(v), vm__ref(a[0]), avm_nil());
    case AVM_I_NARROW:
        if ((rv = get_var(x, a[0], &v)) != VM_OK ||
            (rv = get_domain(x, "narrow", a[1], &n)) != VM_OK)
            return rv;
        if (fd_narrow(s, v, x->fd->iv, n) != 0)
            return vm__oom(x);
        *out = avm_bool(!fd_failed(s));
        return logged(x, AVM_EV_DOMAIN_NARROWED, vm__ref(a[0]), vm__ref(a[1]), *out);
    case AVM_I_POST:
        if ((rv = post(x, a[0])) != VM_OK)
            return rv;
        *out = avm_bool(!fd_failed(s));
        return logged(x, AVM_EV_CONSTRAINT_POSTED, vm__ref(a[0]), *out, avm_nil());
    case AVM_I_LABEL: {
        if ((rv = get_var(x, a[0], &v)) != VM_OK)
            return rv;
        if (fd_empty(s, v))
            return vm__fail(x, AVM_ERR_FD_EMPTY_DOMAIN, avm_int(v), avm_nil(), avm_nil());
        int64_t val;
        if (fd_label(s, v, &val) != 0)
            return vm__oom(x);
        *out = avm_int(val);
        return logged(x, AVM_EV_VAR_LABELED, avm_int(v), avm_int(val), avm_nil());
    }
    }
    return vm__eval_error(x, "not an FD instruction: %d", op);
}

/* reifyConstraints ------------------------------------------------------------------ */

typedef struct reify_fill {
    avm_val list;
    size_t i;
    bool runs; /* items are (lo hi) runs, else values */
    int err;
} reify_fill;

static int count_runs(void *data, int64_t lo, int64_t hi)
{
    (void)lo, (void)hi;
    (*(size_t *)data)++;
    return 0;
}

static int fill(void *data, int64_t lo, int64_t hi)
{
    reify_fill *r = data;
    if (!r->runs) {
        for (int64_t v = lo;; v++) {
            r->list.u.l->items[r->i++] = avm_int(v);
            if (v == hi)
                break;
        }
        return 0;
    }
    avm_val pair;
    if (avm_list_new(2, &pair) != 0)
        return r->err = AVM_ENOMEM;
    pair.u.l->items[0] = avm_int(lo);
    pair.u.l->items[1] = avm_int(hi);
    r->list.u.l->items[r->i++] = pair;
    return 0;
}

/* Var i's domain as a list: its values in increasing order, or its runs (lo hi)
 * when it has more than REIFY_MAX_VALUES values. */
static int reify_domain(const fd_store *s, uint32_t var, avm_val *out)
{
    uint64_t size = fd_size(s, var);
    reify_fill r = {.runs = size > REIFY_MAX_VALUES};
    size_t n = (size_t)size;
    if (r.runs) {
        n = 0;
        fd_runs(s, var, count_runs, &n);
    }
    if (avm_list_new(n, &r.list) != 0)
        return AVM_ENOMEM;
    fd_runs(s, var, fill, &r);
    if (r.err != 0) {
        avm_val_release(r.list);
        return r.err;
    }
    avm_list_seal(r.list);
    *out = r.list;
    return 0;
}

int vm__fd_reify(avm_exec *x, avm_val *out)
{
    static const char *keys[] = {"vars", "count"};
    const fd_store *s = x->fd != NULL ? x->fd->s : NULL;
    uint32_t nv = s != NULL ? fd_nvars(s) : 0;
    avm_val vals[2] = {avm_nil(), avm_int(s != NULL ? fd_ncons(s) : 0)};
    if (avm_list_new(nv, &vals[0]) != 0)
        return vm__oom(x);
    for (uint32_t i = 0; i < nv; i++) {
        avm_val e, dom;
        if (avm_list_new(2, &e) != 0)
            goto oom;
        vals[0].u.l->items[i] = e;
        e.u.l->items[0] = avm_int(i);
        if (reify_domain(s, i, &dom) != 0)
            goto oom;
        e.u.l->items[1] = dom;
        avm_list_seal(e);
    }
    avm_list_seal(vals[0]);
    return vm__alist(x, keys, vals, 2, out);
oom:
    avm_val_release(vals[0]);
    return vm__oom(x);
}

/* Transaction levels --------------------------------------------------------------- */

int vm__fd_tx_begin(avm_exec *x)
{
    return x->fd != NULL ? fd_level_push(x->fd->s) : 0;
}

bool vm__fd_tx_failed(const avm_exec *x)
{
    return x->fd != NULL && fd_failed(x->fd->s);
}

void vm__fd_tx_commit(avm_exec *x)
{
    if (x->fd == NULL)
        return;
    assert(fd_levels(x->fd->s) == x->tx.n);
    fd_level_commit(x->fd->s);
}

void vm__fd_tx_abort(avm_exec *x)
{
    if (x->fd == NULL)
        return;
    assert(fd_levels(x->fd->s) == x->tx.n);
    fd_level_abort(x->fd->s);
}

void vm__fd_free(avm_exec *x)
{
    struct vm_fd *f = x->fd;
    if (f == NULL)
        return;
    fd_free(f->s);
    free(f->iv);
    free(f->vars);
    free(f->offs);
    free(f);
    x->fd = NULL;
}

/* Serialization: nil for no store, else the engine's value. */

int vm__fd_encode(const avm_exec *x, avm_buf *b)
{
    if (x->fd == NULL) {
        avm_mp_put_nil(b);
        return b->err;
    }
    return fd_encode(x->fd->s, b);
}

int vm__fd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen)
{
    vm__fd_free(x);
    if (avm_mp_peek_nil(r))
        return avm_mp_get_nil(r);
    fd_store *s;
    int rv = fd_decode(r, &s, err, errlen);
    if (rv != 0)
        return rv;
    if (x->cfg.mode != AVM_MODE_DEFAULT || fd_levels(s) != x->tx.n) {
        snprintf(err, errlen, "finite-domain store: %u levels for %zu transaction levels",
                 fd_levels(s), x->tx.n);
        fd_free(s);
        return AVM_EMALFORMED;
    }
    struct vm_fd *f = calloc(1, sizeof(*f));
    if (f == NULL) {
        fd_free(s);
        return AVM_ENOMEM;
    }
    f->s = s;
    x->fd = f;
    return 0;
}
