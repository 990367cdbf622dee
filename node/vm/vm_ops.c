/* The AVM instructions: the semantics of Interpreter.lagda.md, with the decisions of
 * DESIGN.md section 3 in default mode. Each instruction quotes the specification
 * function it implements. "S:" marks what strict mode does differently. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "module.h"
#include "vm_internal.h"

#define STRICT(x) ((x)->cfg.mode == AVM_MODE_STRICT)
#define IN_TX(x) ((x)->tx.n > 0)

/* Identifiers. */

/* "<prefix>/<fmt1><n>" (or "<fmt1><n>" without a prefix), formatted by hand: this
 * runs for every transaction and object, and snprintf was a fifth of a
 * transaction's time. */
static int make_id(avm_kind k, const char *fmt1, avm_val prefix, uint64_t n, avm_val *out)
{
    char buf[512], digits[20];
    size_t len = 0, nd = 0;
    if (prefix.kind != AVM_NIL) {
        len = prefix.u.s->len < 400 ? prefix.u.s->len : 400;
        memcpy(buf, prefix.u.s->data, len);
        buf[len++] = '/';
    }
    size_t fl = strlen(fmt1);
    memcpy(buf + len, fmt1, fl);
    len += fl;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    while (nd > 0)
        buf[len++] = digits[--nd];
    return avm_str_new(k, buf, len, out);
}

/* freshObjectId: S: the event counter ("obj-N", as the specification's runners);
 * default: node-prefixed and never reused (decision 9). */
static int fresh_oid(avm_exec *x, avm_val *out)
{
    if (STRICT(x))
        return make_id(AVM_OBJID, "obj-", avm_nil(), x->counter, out);
    avm_store *s = x->plat->store;
    return make_id(AVM_OBJID, "", x->plat->node, s->ops->next_seq(s), out);
}

static int fresh_txid(avm_exec *x, avm_val *out)
{
    if (STRICT(x))
        return make_id(AVM_TXID, "", avm_nil(), x->counter, out);
    avm_store *s = x->plat->store;
    return make_id(AVM_TXID, "t", x->plat->node, s->ops->next_seq(s), out);
}

/* Overlay lookups (search from the end: later entries win). */

static long pending_create(const avm_exec *x, avm_val oid)
{
    for (size_t i = x->creates.n; i > 0; i--)
        if (avm_val_eq(x->creates.v[i - 1].oid, oid))
            return (long)(i - 1);
    return -1;
}

static bool pending_destroy(const avm_exec *x, avm_val oid)
{
    for (size_t i = 0; i < x->destroys.n; i++)
        if (avm_val_eq(x->destroys.v[i], oid))
            return true;
    return false;
}

static avm_val pending_transfer(const avm_exec *x, avm_val oid)
{
    for (size_t i = x->transfers.n; i > 0; i--)
        if (avm_val_eq(x->transfers.v[i - 1].a, oid))
            return x->transfers.v[i - 1].b;
    return avm_nil();
}

/* What an instruction sees of an object. */
enum { V_NONE, V_STORE, V_PENDING, V_DESTROYED };

typedef struct view {
    int where;
    const avm_objrec *rec; /* V_STORE */
    long create;           /* V_PENDING: index in x->creates */
    avm_meta meta;         /* borrowed; the current controller as the tx sees it */
    avm_behavior beh;      /* borrowed */
    uint64_t version;
} view;

/* Default mode: read your own writes (decision 1). A destroy is checked first: a
 * nested transaction that destroys its parent's pending create records a pending
 * destroy (op_destroy), and the create stays in the overlay under it. */
static inline __attribute__((always_inline)) view view_of(avm_exec *x, avm_val oid)
{
    view v = {.where = V_NONE, .create = -1};
    long c = pending_create(x, oid);
    if (pending_destroy(x, oid)) {
        v.where = V_DESTROYED;
        return v;
    } else if (c >= 0) {
        v.where = V_PENDING;
        v.create = c;
        v.meta = x->creates.v[c].meta;
        v.beh = x->creates.v[c].beh;
    } else {
        avm_store *s = x->plat->store;
        const avm_objrec *r = s->ops->get(s, x->snap, oid);
        if (r == NULL)
            return v;
        v.where = V_STORE;
        v.rec = r;
        v.meta = r->meta;
        v.beh = r->beh;
        v.version = r->version;
    }
    avm_val t = pending_transfer(x, oid);
    if (t.kind != AVM_NIL)
        v.meta.current = t;
    return v;
}

/* The committed record only (the specification's lookupObjectWithMeta). */
static inline __attribute__((always_inline)) view view_store(avm_exec *x, avm_val oid)
{
    view v = {.where = V_NONE, .create = -1};
    avm_store *s = x->plat->store;
    const avm_objrec *r = s->ops->get(s, x->snap, oid);
    if (r != NULL) {
        v.where = V_STORE;
        v.rec = r;
        v.meta = r->meta;
        v.beh = r->beh;
        v.version = r->version;
    }
    return v;
}

/* The specification's lookupPendingCreate. */
static inline __attribute__((always_inline)) view view_pending(avm_exec *x, avm_val oid)
{
    view v = {.where = V_NONE, .create = -1};
    long c = pending_create(x, oid);
    if (c >= 0) {
        v.where = V_PENDING;
        v.create = c;
        v.meta = x->creates.v[c].meta;
        v.beh = x->creates.v[c].beh;
    }
    return v;
}

/* A transaction reads oid's state at `version`: when its read set holds another
 * version of oid (the execution moved between machines whose replicas of the
 * object were not at the same version), what it computes from this state does not
 * match what validation would check, so the read can never validate: version 0,
 * which no object has, makes the commit return false. */
static void read_again(avm_exec *x, avm_val oid, uint64_t version)
{
    for (size_t i = 0; i < x->reads.n; i++)
        if (avm_val_eq(x->reads.v[i].oid, oid)) {
            if (x->reads.v[i].version != AVM_VERSION_EXISTS &&
                x->reads.v[i].version != version)
                x->reads.v[i].version = 0;
            return;
        }
}

/* ensureObserved: add oid to the read set. Default mode records the version seen,
 * so that commit validation detects any write committed since (serializable);
 * strict mode only checks existence, as validateObserved does. */
static int observe(avm_exec *x, avm_val oid, const view *v)
{
    for (size_t i = 0; i < x->reads.n; i++)
        if (avm_val_eq(x->reads.v[i].oid, oid))
            return 0;
    avm_read r = {.oid = vm__ref(oid),
                  .version =
                      STRICT(x) || v->where != V_STORE ? AVM_VERSION_EXISTS : v->version};
    if (VEC_PUSH(x, x->reads, r) != 0) {
        avm_val_release(oid);
        return vm__oom(x);
    }
    return VM_OK;
}

static avm_val unknown_ctrl(avm_val c)
{
    if (c.kind != AVM_NIL)
        return vm__ref(c);
    avm_val u;
    if (avm_cstr(AVM_CTRLID, "unknown", &u) != 0)
        return avm_nil();
    return u;
}

/* resolveTxController: a transaction begun with `nothing` takes the controller of
 * the first object it touches. */
static int resolve_ctrl(avm_exec *x, avm_val oid, const avm_meta *m)
{
    if (!IN_TX(x) || x->txctrl.kind != AVM_NIL)
        return VM_OK;
    if (m->current.kind == AVM_NIL)
        return vm__fail(x, AVM_ERR_OBJECT_HAS_NO_CONTROLLER, vm__ref(oid), avm_nil(),
                        avm_nil());
    x->txctrl = vm__ref(m->current);
    return VM_OK;
}

/* Whether controller c is in list l (a LIST of controller ids). */
static bool ctrl_in(avm_val l, avm_val c)
{
    for (uint32_t i = 0; i < l.u.l->len; i++)
        if (avm_val_eq(l.u.l->items[i], c))
            return true;
    return false;
}

/* Whether the open transaction may touch objects of controller c (not nil): its
 * controller, or one of its set in a multi-controller transaction. */
static bool tx_allows(avm_exec *x, avm_val c)
{
    if (x->txset.kind == AVM_LIST)
        return ctrl_in(x->txset, c);
    return x->txctrl.kind != AVM_NIL && avm_val_eq(c, x->txctrl);
}

/* resolveAndCheckOwnership (R5: only the current controller may mutate). A
 * multi-controller transaction (extension) accepts any controller of its set. */
/* The transaction read oid at one version and the store now has another: a
 * commit made since (seen here because the execution moved to a machine whose
 * replica is newer). Its read is marked so that it never validates. */
static bool changed_since_read(avm_exec *x, avm_val oid)
{
    for (size_t i = 0; i < x->reads.n; i++) {
        if (!avm_val_eq(x->reads.v[i].oid, oid))
            continue;
        if (x->reads.v[i].version == AVM_VERSION_EXISTS)
            return false;
        avm_store *s = x->plat->store;
        const avm_objrec *r = s->ops->get(s, x->snap, oid);
        if (r == NULL || r->version != x->reads.v[i].version) {
            x->reads.v[i].version = 0;
            return true;
        }
        return x->reads.v[i].version == 0;
    }
    return false;
}

static int resolve_and_check(avm_exec *x, avm_val oid, const avm_meta *m)
{
    int rv = resolve_ctrl(x, oid, m);
    if (rv != VM_OK)
        return rv;
    if (m->current.kind == AVM_NIL || !tx_allows(x, m->current)) {
        /* Default mode: an object that changed controller after the transaction read
         * it (a concurrent transferObject) is a conflict, not a misuse: the commit
         * returns false (decision 3). */
        if (!STRICT(x) && IN_TX(x) && changed_since_read(x, oid))
            return VM_OK;
        return vm__fail(x, AVM_ERR_CROSS_CONTROLLER_TX, vm__ref(oid),
                        unknown_ctrl(m->current), avm_nil());
    }
    return VM_OK;
}

/* Applies an immediate effect (outside a transaction) through the store. */
/* An immediate effect (outside transactions). The store may defer it (it lives on
 * another machine): the instruction then blocks, its log entries are taken back,
 * and it runs again with the outcome (avm_exec_commit_done) once that is in. */
static int apply_now(avm_exec *x, const avm_writeset *ws)
{
    int rv;
    if (x->commit_wait == CW_DONE) {
        x->commit_wait = CW_NONE;
        rv = x->commit_rv;
    } else {
        avm_store *s = x->plat->store;
        bool ok;
        rv = s->ops->apply(s, ws, &ok);
        if (rv == AVM_EPENDING) {
            x->commit_wait = CW_PENDING;
            x->commit_ckpt = false;
            x->undo_log = true;
            return VM_BLOCK;
        }
    }
    if (rv != 0)
        return rv == AVM_ENOMEM ? vm__oom(x) : vm__store_error(x, rv);
    return VM_OK;
}

/* What platform.prepare and platform.freeze answered for oid: 0 go on, 1 wait
 * (AVM_WAIT_FETCH) and run the instruction again, or a negated error code. */
static int platform_answer(avm_exec *x, avm_val oid, int rv)
{
    if (rv == 0)
        return VM_OK;
    if (rv < 0)
        return -rv == AVM_ENOMEM ? vm__oom(x) : vm__store_error(x, -rv);
    avm_val_release(x->blocked_on);
    x->blocked_on = vm__ref(oid);
    x->fetch_wait = true;
    return VM_BLOCK;
}

static int want_kind(avm_exec *x, int op, avm_val v, avm_kind k, bool nil_ok)
{
    if (v.kind == k || (nil_ok && v.kind == AVM_NIL))
        return VM_OK;
    return vm__eval_error(x, "%s expects %s%s, got %s", avm_instr_table[op].name,
                          avm_kind_name(k), nil_ok ? " or nil" : "",
                          avm_kind_name(v.kind));
}

static int empty_list(avm_exec *x, avm_val *out)
{
    return avm_list_new(0, out) == 0 ? VM_OK : vm__oom(x);
}

/* ObjectMeta as a value: an association list. */
static int meta_value(avm_exec *x, avm_val oid, const avm_meta *m, avm_val *out)
{
    static const char *keys[] = {"objectId", "machine", "creatingController",
                                 "currentController"};
    avm_val vals[4] = {oid, m->machine, m->creating, m->current};
    if (avm_list_new(4, out) != 0)
        return vm__oom(x);
    for (int i = 0; i < 4; i++) {
        avm_val k, e;
        if (avm_cstr(AVM_STR, keys[i], &k) != 0 || avm_list_new(2, &e) != 0) {
            avm_val_release(*out);
            return vm__oom(x);
        }
        e.u.l->items[0] = k;
        e.u.l->items[1] = vm__ref(vals[i]);
        out->u.l->items[i] = e;
    }
    out->u.l->depth = 2;
    return VM_OK;
}

int vm__alist(avm_exec *x, const char **keys, avm_val *vals, int n, avm_val *out)
{
    if (avm_list_new((size_t)n, out) != 0)
        goto oom;
    for (int i = 0; i < n; i++) {
        avm_val k, e;
        if (avm_cstr(AVM_STR, keys[i], &k) != 0)
            goto oom;
        if (avm_list_new(2, &e) != 0) {
            avm_val_release(k);
            goto oom;
        }
        e.u.l->items[0] = k;
        e.u.l->items[1] = vals[i];
        vals[i] = avm_nil();
        avm_list_seal(e);
        out->u.l->items[i] = e;
    }
    /* reifyContext and reifyTxState carry program values: they may nest deep. */
    return vm__seal(x, out);
oom:
    for (int i = 0; i < n; i++)
        avm_val_release(vals[i]);
    return vm__oom(x);
}

/* Obj --------------------------------------------------------------------------- */

static int find_behavior(avm_exec *x, avm_val name, avm_behavior *out)
{
    vm_frame *fr = &x->frames.v[x->frames.n - 1];
    int i = avm_module_find(fr->mod, name.u.s->data, AVM_FN_BEHAVIOR);
    if (i >= 0) {
        out->name = name;
        out->mod = fr->mod;
        out->fn = (uint32_t)i;
        return VM_OK;
    }
    if (x->plat->resolve_behavior &&
        x->plat->resolve_behavior(x->plat->data, name, out) == 0)
        return VM_OK;
    return vm__eval_error(x, "createObj: no behaviour named \"%s\"", name.u.s->data);
}

/* createObj (withCreateTxBranch). */
static int op_create(avm_exec *x, avm_val *a, int argc, avm_val *out)
{
    avm_val name = a[0], mctrl = argc > 1 ? a[1] : avm_nil();
    if (want_kind(x, AVM_I_CREATE_OBJ, name, AVM_STR, false) ||
        want_kind(x, AVM_I_CREATE_OBJ, mctrl, AVM_CTRLID, true))
        return VM_FAIL;
    avm_behavior beh;
    if (find_behavior(x, name, &beh) != VM_OK)
        return VM_FAIL;
    avm_val eff = mctrl.kind != AVM_NIL ? mctrl : x->txctrl;
    if (!STRICT(x) && IN_TX(x)) {
        if (mctrl.kind != AVM_NIL && !x->plat->reachable_controller(x->plat->data, mctrl))
            return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(mctrl), avm_nil(),
                            avm_nil());
        /* Decision 4: an unresolved transaction resolves when it creates. */
        if (x->txctrl.kind == AVM_NIL)
            x->txctrl = vm__ref(mctrl.kind != AVM_NIL ? mctrl : x->plat->default_ctrl);
        /* A multi-controller transaction creates under the controller named when it
         * is one of its set (checked below), else under its first. */
        eff = mctrl.kind != AVM_NIL && x->txset.kind == AVM_LIST ? mctrl : x->txctrl;
    }
    avm_val oid;
    if (fresh_oid(x, &oid) != 0)
        return vm__oom(x);
    if (!STRICT(x) && IN_TX(x) && mctrl.kind != AVM_NIL && !tx_allows(x, mctrl))
        return vm__fail(x, AVM_ERR_CROSS_CONTROLLER_TX, oid, vm__ref(mctrl), avm_nil());
    avm_val where = x->plat->place != NULL ? x->plat->place(x->plat->data) : avm_nil();
    avm_create c = {
        .oid = vm__ref(oid),
        .beh = beh,
        .meta = {.machine = where.kind == AVM_MACHID ? where : vm__ref(x->machine),
                 .creating = vm__ref(eff),
                 .current = vm__ref(eff)}};
    avm_val_retain(beh.name);
    avm_module_retain(beh.mod);
    vm__event(x, AVM_EV_OBJECT_CREATED, vm__ref(oid), vm__ref(name), avm_nil());
    if (IN_TX(x)) {
        if (VEC_PUSH(x, x->creates, c) != 0)
            goto oom;
    } else {
        avm_writeset ws = {.creates = &c, .ncreates = 1};
        int rv = apply_now(x, &ws);
        avm_val_release(c.oid);
        avm_val_release(c.beh.name);
        avm_module_release(c.beh.mod);
        avm_val_release(c.meta.machine);
        avm_val_release(c.meta.creating);
        avm_val_release(c.meta.current);
        if (rv != VM_OK) {
            avm_val_release(oid);
            return rv;
        }
    }
    *out = oid;
    return VM_OK;
oom:
    avm_val_release(oid);
    return vm__oom(x);
}

static void create_release(avm_create *c)
{
    avm_val_release(c->oid);
    avm_val_release(c->beh.name);
    if (c->beh.mod)
        avm_module_release(c->beh.mod);
    avm_val_release(c->meta.machine);
    avm_val_release(c->meta.creating);
    avm_val_release(c->meta.current);
}

/* destroyObj. */
static int op_destroy(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_DESTROY_OBJ, oid, AVM_OBJID, false))
        return VM_FAIL;
    if (IN_TX(x)) {
        long c = pending_create(x, oid);
        if (!STRICT(x) && pending_destroy(x, oid))
            return vm__fail(x, AVM_ERR_OBJECT_ALREADY_DESTROYED, vm__ref(oid), avm_nil(),
                            avm_nil());
        if (c >= 0 && !STRICT(x) && (size_t)c < x->tx.v[x->tx.n - 1].ncreates) {
            /* Decision 2: the create belongs to an enclosing transaction level.
             * Removing it would outlive an abort of this level, which must restore
             * the parent's overlay exactly; a pending destroy is undone with the
             * level, and at commit the store applies the create, then the destroy. */
            if (VEC_PUSH(x, x->destroys, vm__ref(oid)) != 0) {
                avm_val_release(oid);
                return vm__oom(x);
            }
            vm__event(x, AVM_EV_OBJECT_DESTROYED, vm__ref(oid), avm_nil(), avm_nil());
            *out = avm_bool(true);
            return VM_OK;
        }
        if (c >= 0) {
            /* removePendingCreate */
            vm__event(x, AVM_EV_OBJECT_DESTROYED, vm__ref(oid), avm_nil(), avm_nil());
            create_release(&x->creates.v[c]);
            memmove(&x->creates.v[c], &x->creates.v[c + 1],
                    (x->creates.n - (size_t)c - 1) * sizeof(avm_create));
            x->creates.n--;
            /* Savepoints above this create now count one fewer. */
            for (size_t i = 0; i < x->tx.n; i++)
                if (x->tx.v[i].ncreates > (size_t)c)
                    x->tx.v[i].ncreates--;
            *out = avm_bool(true);
            return VM_OK;
        }
        view v = STRICT(x) ? view_store(x, oid) : view_of(x, oid);
        if (v.where == V_NONE)
            return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(),
                            avm_nil());
        /* destroyObjInTx */
        if (resolve_and_check(x, oid, &v.meta) != VM_OK || observe(x, oid, &v) != VM_OK)
            return VM_FAIL;
        if (VEC_PUSH(x, x->destroys, vm__ref(oid)) != 0) {
            avm_val_release(oid);
            return vm__oom(x);
        }
        vm__event(x, AVM_EV_OBJECT_DESTROYED, vm__ref(oid), avm_nil(), avm_nil());
        *out = avm_bool(true);
        return VM_OK;
    }
    view v = view_store(x, oid);
    if (v.where == V_NONE)
        return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(), avm_nil());
    /* destroyObjNoTx */
    if (v.meta.current.kind == AVM_NIL)
        return vm__fail(x, AVM_ERR_OBJECT_HAS_NO_CONTROLLER, vm__ref(oid), avm_nil(),
                        avm_nil());
    avm_writeset ws = {.destroys = &oid, .ndestroys = 1, .spec_order = STRICT(x)};
    vm__event(x, AVM_EV_OBJECT_DESTROYED, vm__ref(oid), avm_nil(), avm_nil());
    int rv = apply_now(x, &ws);
    if (rv != VM_OK)
        return rv;
    *out = avm_bool(true);
    return VM_OK;
}

/* call (executeObj (call oid inp), callObjInTx, handleCall): enters the behaviour
 * as a new frame; vm__boundary_return finishes it. */
static int op_call(avm_exec *x, avm_val *a, avm_val *out)
{
    avm_val oid = a[0];
    if (want_kind(x, AVM_I_CALL, oid, AVM_OBJID, false))
        return VM_FAIL;
    avm_module *bmod;
    uint32_t bfn;
    avm_val machine;
    if (!IN_TX(x)) {
        /* Outside a transaction there is no overlay: the committed record is all
         * there is (the common case, kept short). */
        avm_store *s = x->plat->store;
        const avm_objrec *r = s->ops->get(s, x->snap, oid);
        if (r == NULL)
            return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(),
                            avm_nil());
        bmod = r->beh.mod;
        bfn = r->beh.fn;
        machine = r->meta.machine;
    } else {
        view v = STRICT(x) ? view_pending(x, oid) : view_of(x, oid);
        if (v.where == V_DESTROYED)
            return vm__fail(x, AVM_ERR_OBJECT_ALREADY_DESTROYED, vm__ref(oid), avm_nil(),
                            avm_nil());
        if (v.where == V_NONE) {
            v = view_store(x, oid);
            if (v.where == V_NONE)
                return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(),
                                avm_nil());
        }
        /* The specification checks ownership only for committed objects (a pending
         * create is called directly); default mode does the same, since a pending
         * create always belongs to the transaction's controller (decision 4). */
        if (v.where == V_STORE &&
            (resolve_and_check(x, oid, &v.meta) != VM_OK || observe(x, oid, &v) != VM_OK))
            return VM_FAIL;
        bmod = v.beh.mod;
        bfn = v.beh.fn;
        machine = v.meta.machine;
    }
    /* The arguments move into the context: oid stays referenced by c->oid and the
     * stack's reference to oid is dropped below; input moves as is. */
    vm_ctx *c = VEC_SLOT(x->ctxs);
    if (c == NULL)
        return vm__oom(x);
    c->self = x->self;
    c->input = x->input;
    c->sender = x->sender;
    c->machine = x->machine;
    c->oid = oid; /* the stack's reference moves here */
    c->inp = a[1];
    c->in_tx = IN_TX(x);
    c->txdepth = (uint32_t)x->tx.n;
    x->sp -= 2;
    x->self = vm__ref(oid);
    x->input = vm__ref(a[1]);
    x->sender = vm__ref(c->self);
    x->machine = vm__ref(machine);
    vm__placed(x);
    if (x->cfg.msc)
        vm__msc(x, AVM_MSC_CALL, machine, c->self, oid, a[1]);
    int rv = vm__push_frame(x, bmod, bfn, 0, FR_BEHAVIOR);
    if (rv != VM_OK)
        return rv; /* the failure unwinds everything */
    (void)out;
    return VM_ENTERED;
}

/* receive. S: the specification's placeholder returns the current input.
 * Default: the next message of self's mailbox; blocks when it is empty. */
static int op_receive(avm_exec *x, avm_val *out)
{
    avm_val msg;
    if (STRICT(x)) {
        msg = vm__ref(x->input);
    } else {
        avm_val from = avm_nil();
        uint64_t stamp = 0;
        int rv = x->plat->mailbox_pop
                     ? x->plat->mailbox_pop(x->plat->data, x->self, &msg, &from, &stamp)
                     : 0;
        if (rv < 0)
            return vm__eval_error(x, "receive: %s", avm_strerror(-rv));
        if (rv == 0) {
            avm_val_release(x->blocked_on);
            x->blocked_on = vm__ref(x->self);
            return VM_BLOCK;
        }
        avm_val_release(x->blocked_on);
        x->blocked_on = avm_nil();
        if (x->cfg.msc) {
            /* Lamport: the receipt comes after the send. */
            if (stamp > x->lamport)
                x->lamport = stamp;
            vm__msc(x, AVM_MSC_MESSAGE, x->machine, from, x->self, msg);
        }
        avm_val_release(from);
    }
    vm__event(x, AVM_EV_MESSAGE_RECEIVED, vm__ref(x->self), vm__ref(msg), avm_nil());
    *out = msg;
    return VM_OK;
}

/* Introspect --------------------------------------------------------------------- */

static avm_val *detached_state(avm_exec *x, avm_val oid)
{
    for (size_t i = 0; i < x->detached.n; i++)
        if (avm_val_eq(x->detached.v[i].a, oid))
            return &x->detached.v[i].b;
    return NULL;
}

/* Keeps st as the state of oid, an id no object record holds. */
static int set_detached(avm_exec *x, avm_val oid, avm_val st)
{
    avm_val *d = detached_state(x, oid);
    if (d != NULL) {
        avm_val_release(*d);
        *d = vm__ref(st);
        return VM_OK;
    }
    avm_pair p = {vm__ref(oid), vm__ref(st)};
    if (VEC_PUSH(x, x->detached, p) != 0) {
        avm_val_release(p.a);
        avm_val_release(p.b);
        return vm__oom(x);
    }
    return VM_OK;
}

/* getState: S: the committed state (lookupState). Default: the transaction's own
 * pending state first (decision 1). */
static int op_get_state(avm_exec *x, avm_val *out)
{
    if (!STRICT(x) && IN_TX(x)) {
        for (size_t i = x->states.n; i > 0; i--)
            if (avm_val_eq(x->states.v[i - 1].a, x->self)) {
                *out = vm__ref(x->states.v[i - 1].b);
                return VM_OK;
            }
        if (pending_create(x, x->self) >= 0)
            return empty_list(x, out);
    }
    avm_store *s = x->plat->store;
    const avm_objrec *r = s->ops->get(s, x->snap, x->self);
    if (r != NULL) {
        if (!STRICT(x) && IN_TX(x))
            read_again(x, x->self, r->version);
        *out = vm__ref(r->state);
        return VM_OK;
    }
    avm_val *d = detached_state(x, x->self);
    if (d != NULL) {
        *out = vm__ref(*d);
        return VM_OK;
    }
    return empty_list(x, out);
}

/* setState: immediate outside a transaction, pending inside. */
static int op_set_state(avm_exec *x, avm_val st, avm_val *out)
{
    if (want_kind(x, AVM_I_SET_STATE, st, AVM_LIST, false))
        return VM_FAIL;
    *out = avm_nil();
    if (IN_TX(x)) {
        if (!STRICT(x)) {
            /* R5 and serializability: the writer must own the object, and the write
             * is validated like a read. */
            view v = view_of(x, x->self);
            if (v.where == V_NONE)
                x->tx_detached = true;
            if (v.where == V_STORE && (resolve_and_check(x, x->self, &v.meta) != VM_OK ||
                                       observe(x, x->self, &v) != VM_OK))
                return VM_FAIL;
        } else {
            x->tx_detached = true;
        }
        avm_pair p = {vm__ref(x->self), vm__ref(st)};
        if (VEC_PUSH(x, x->states, p) != 0) {
            avm_val_release(p.a);
            avm_val_release(p.b);
            return vm__oom(x);
        }
        return VM_OK;
    }
    /* Outside a transaction nothing would settle a symbolic value (one of an
     * aborted transaction's choices): it must not reach the store. */
    if ((x->nd != NULL || x->bundle.kind == AVM_STR) && vm__nd_has_sym(st))
        return vm__nd_unsettled(x, st, "setState outside a transaction");
    avm_store *s = x->plat->store;
    if (s->ops->get(s, x->snap, x->self) != NULL) {
        avm_pair p = {x->self, st};
        avm_writeset ws = {.states = &p, .nstates = 1};
        return apply_now(x, &ws);
    }
    /* No object holds this state (the top-level program): keep it with the
     * execution, as the specification's total StateStore would. */
    return set_detached(x, x->self, st);
}

/* Reflect ------------------------------------------------------------------------ */

static int op_reflect(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_REFLECT, oid, AVM_OBJID, false))
        return VM_FAIL;
    view v = STRICT(x) ? view_store(x, oid) : view_of(x, oid);
    if (v.where != V_STORE && v.where != V_PENDING) {
        *out = avm_nil();
        return VM_OK;
    }
    if (!STRICT(x) && IN_TX(x) && observe(x, oid, &v) != VM_OK)
        return VM_FAIL;
    return meta_value(x, oid, &v.meta, out);
}

/* scryMeta / scryDeep: every candidate; the compiled predicate filters them. */
static int op_scry(avm_exec *x, bool deep, avm_val *out)
{
    avm_store *s = x->plat->store;
    avm_val ids;
    if (s->ops->ids(s, &ids) != 0)
        return vm__oom(x);
    size_t nc = STRICT(x) ? 0 : x->creates.n;
    avm_val *items = malloc((ids.u.l->len + nc + 1) * sizeof(avm_val));
    size_t n = 0;
    if (items == NULL)
        goto oom;
    for (size_t i = 0; i < ids.u.l->len + nc; i++) {
        avm_val oid =
            i < ids.u.l->len ? ids.u.l->items[i] : x->creates.v[i - ids.u.l->len].oid;
        view v = STRICT(x) ? view_store(x, oid) : view_of(x, oid);
        if (v.where != V_STORE && v.where != V_PENDING)
            continue;
        if (!STRICT(x) && IN_TX(x) && observe(x, oid, &v) != VM_OK)
            goto fail;
        avm_val meta, e;
        if (meta_value(x, oid, &v.meta, &meta) != VM_OK)
            goto fail;
        if (avm_list_new(deep ? 3 : 2, &e) != 0) {
            avm_val_release(meta);
            goto oom;
        }
        e.u.l->items[0] = vm__ref(oid);
        if (deep) {
            e.u.l->items[1] = vm__ref(v.beh.name);
            e.u.l->items[2] = meta;
        } else {
            e.u.l->items[1] = meta;
        }
        avm_list_seal(e);
        items[n++] = e;
    }
    avm_val_release(ids);
    int rv = avm_list_from(items, n, out);
    free(items);
    return rv == 0 ? VM_OK : vm__oom(x);
oom:
    vm__oom(x);
fail:
    for (size_t i = 0; i < n; i++)
        avm_val_release(items[i]);
    free(items);
    avm_val_release(ids);
    return VM_FAIL;
}

/* Reify -------------------------------------------------------------------------- */

static int op_reify_context(avm_exec *x, avm_val *out)
{
    static const char *keys[] = {"self", "input", "sender", "machine", "controller"};
    avm_val ctrl;
    if (x->txctrl.kind != AVM_NIL)
        ctrl = vm__ref(x->txctrl);
    else if (avm_cstr(AVM_CTRLID, "ambient", &ctrl) != 0)
        return vm__oom(x);
    avm_val vals[5] = {vm__ref(x->self), vm__ref(x->input), vm__ref(x->sender),
                       vm__ref(x->machine), ctrl};
    return vm__alist(x, keys, vals, 5, out);
}

/* The identifiers at byte offset `offset` of n records of `stride` bytes from base.
 * base may be NULL when n is 0 (a vector never grown): it is only dereferenced in
 * the loop, never through a member access of a null pointer. */
static int id_list(avm_exec *x, const void *base, size_t offset, size_t stride, size_t n,
                   avm_val *out)
{
    if (avm_list_new(n, out) != 0)
        return vm__oom(x);
    for (size_t i = 0; i < n; i++)
        out->u.l->items[i] =
            vm__ref(*(const avm_val *)((const char *)base + i * stride + offset));
    return VM_OK;
}

static int op_reify_tx(avm_exec *x, avm_val *out)
{
    static const char *keys[] = {"id", "writes", "creates", "destroys", "observed"};
    if (!IN_TX(x)) {
        *out = avm_nil();
        return VM_OK;
    }
    avm_val vals[5] = {vm__ref(x->tx.v[x->tx.n - 1].txid), avm_nil(), avm_nil(),
                       avm_nil(), avm_nil()};
    if (avm_list_new(x->writes.n, &vals[1]) != 0)
        goto oom;
    for (size_t i = 0; i < x->writes.n; i++) {
        avm_val w;
        if (avm_list_new(2, &w) != 0)
            goto oom;
        w.u.l->items[0] = vm__ref(x->writes.v[i].a);
        w.u.l->items[1] = vm__ref(x->writes.v[i].b);
        avm_list_seal(w);
        vals[1].u.l->items[i] = w;
    }
    avm_list_seal(vals[1]);
    if (id_list(x, x->creates.v, offsetof(avm_create, oid), sizeof(avm_create),
                x->creates.n, &vals[2]) ||
        id_list(x, x->destroys.v, 0, sizeof(avm_val), x->destroys.n, &vals[3]) ||
        id_list(x, x->reads.v, offsetof(avm_read, oid), sizeof(avm_read), x->reads.n,
                &vals[4]))
        goto fail;
    return vm__alist(x, keys, vals, 5, out);
oom:
    vm__oom(x);
fail:
    for (int i = 0; i < 5; i++)
        avm_val_release(vals[i]);
    return VM_FAIL;
}

static int op_reify_constraints(avm_exec *x, avm_val *out)
{
    static const char *keys[] = {"vars", "count"};
    avm_val vals[2] = {avm_nil(), avm_int(0)};
    if (avm_list_new(0, &vals[0]) != 0)
        return vm__oom(x);
    return vm__alist(x, keys, vals, 2, out);
}

/* Tx ----------------------------------------------------------------------------- */

static void remember_finished(avm_exec *x, avm_val txid, bool committed)
{
    vm_finished *f = &x->finished[x->nfinished++ % VM_FINISHED_RING];
    avm_val_release(f->txid);
    f->txid = vm__ref(txid);
    f->committed = committed;
}

static int invalid_during_tx(avm_exec *x, const char *msg)
{
    avm_val s;
    if (avm_cstr(AVM_STR, msg, &s) != 0)
        return vm__oom(x);
    return vm__fail(x, AVM_ERR_INVALID_DURING_TX, s, avm_nil(), avm_nil());
}

/* beginTx's argument as a controller list (default mode, extension): a new LIST of
 * the distinct controllers of l in order, each checked reachable. VM_OK or
 * VM_FAIL. */
static int ctrl_list(avm_exec *x, avm_val l, avm_val *out)
{
    uint32_t n = l.u.l->len;
    if (n == 0)
        return vm__eval_error(x, "beginTx expects a controller, nil or a non-empty list "
                                 "of controllers, got an empty list");
    for (uint32_t i = 0; i < n; i++)
        if (l.u.l->items[i].kind != AVM_CTRLID)
            return vm__eval_error(x,
                                  "beginTx: element %u of the controller list is %s, "
                                  "not a controller",
                                  i + 1, avm_kind_name(l.u.l->items[i].kind));
    for (uint32_t i = 0; i < n; i++)
        if (!x->plat->reachable_controller(x->plat->data, l.u.l->items[i]))
            return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(l.u.l->items[i]),
                            avm_nil(), avm_nil());
    avm_val *items = malloc(n * sizeof(*items));
    if (items == NULL)
        return vm__oom(x);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        bool dup = false;
        for (uint32_t j = 0; j < k && !dup; j++)
            dup = avm_val_eq(items[j], l.u.l->items[i]);
        if (!dup)
            items[k++] = vm__ref(l.u.l->items[i]);
    }
    int rv = avm_list_from(items, k, out);
    if (rv != 0)
        for (uint32_t i = 0; i < k; i++)
            avm_val_release(items[i]);
    free(items);
    return rv == 0 ? VM_OK : vm__oom(x);
}

static int op_begin(avm_exec *x, avm_val *a, int argc, avm_val *out)
{
    avm_val mctrl = argc > 0 ? a[0] : avm_nil();
    /* Extension (default mode): a list of controllers opens a multi-controller
     * transaction; one distinct controller is an ordinary `(beginTx c)`. */
    avm_val set = avm_nil();
    if (!STRICT(x) && mctrl.kind == AVM_LIST) {
        if (ctrl_list(x, mctrl, &set) != VM_OK)
            return VM_FAIL;
        mctrl = set.u.l->items[0];
        if (set.u.l->len == 1) {
            avm_val_retain(mctrl);
            avm_val_release(set);
            set = avm_nil();
        }
        /* mctrl now holds a reference of its own (the list's, or the one taken). */
        if (set.kind == AVM_LIST)
            avm_val_retain(mctrl);
    } else {
        if (want_kind(x, AVM_I_BEGIN_TX, mctrl, AVM_CTRLID, true))
            return VM_FAIL;
        if (mctrl.kind != AVM_NIL && !x->plat->reachable_controller(x->plat->data, mctrl))
            return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(mctrl), avm_nil(),
                            avm_nil());
        avm_val_retain(mctrl);
    }
    /* From here mctrl (and set) are owned. */
    int rv = VM_OK;
    if (!STRICT(x) && IN_TX(x)) {
        char msg[600];
        msg[0] = '\0';
        if (x->txset.kind == AVM_LIST) {
            /* Inside a multi-controller transaction: the same controllers or some
             * of them open a savepoint that keeps the set. */
            if (set.kind == AVM_LIST) {
                for (uint32_t i = 0; i < set.u.l->len && !msg[0]; i++)
                    if (!ctrl_in(x->txset, set.u.l->items[i]))
                        snprintf(msg, sizeof(msg),
                                 "beginTx: a nested transaction under controller "
                                 "\"%.200s\", which is not one of the enclosing "
                                 "transaction's controllers",
                                 set.u.l->items[i].u.s->data);
            } else if (mctrl.kind != AVM_NIL && !ctrl_in(x->txset, mctrl)) {
                snprintf(msg, sizeof(msg),
                         "beginTx: a nested transaction under controller \"%.200s\", "
                         "which is not one of the enclosing transaction's controllers",
                         mctrl.u.s->data);
            }
        } else if (x->txctrl.kind != AVM_NIL) {
            if (set.kind == AVM_LIST)
                snprintf(msg, sizeof(msg),
                         "beginTx: a nested transaction under several controllers "
                         "inside a transaction of controller \"%.200s\"",
                         x->txctrl.u.s->data);
            else if (mctrl.kind != AVM_NIL && !avm_val_eq(mctrl, x->txctrl))
                snprintf(msg, sizeof(msg),
                         "beginTx: a nested transaction under controller \"%.200s\" "
                         "inside a transaction of controller \"%.200s\"",
                         mctrl.u.s->data, x->txctrl.u.s->data);
        }
        if (msg[0])
            rv = invalid_during_tx(x, msg);
    }
    if (rv != VM_OK) {
        avm_val_release(mctrl);
        avm_val_release(set);
        return rv;
    }
    avm_val txid;
    if (fresh_txid(x, &txid) != 0) {
        avm_val_release(mctrl);
        avm_val_release(set);
        return vm__oom(x);
    }
    avm_val ctrl_before = vm__ref(x->txctrl);
    avm_val set_before = vm__ref(x->txset);
    /* The entry is made from the state before the transaction begins. */
    vm__log(x, x->counter++, AVM_EV_TRANSACTION_STARTED, false, 0, x->txctrl, txid,
            avm_nil(), avm_nil());
    if (STRICT(x)) {
        /* The literal beginTx resets txLog, creates, destroys and observed, and
         * keeps pendingTransfers and pendingStates, even inside a transaction. */
        size_t ntr = x->transfers.n, nst = x->states.n;
        x->transfers.n = x->states.n = 0;
        vm__tx_clear(x); /* also drops the old savepoint and controller */
        x->transfers.n = ntr;
        x->states.n = nst;
    }
    if (!STRICT(x) && IN_TX(x) && x->txset.kind == AVM_LIST) {
        /* A savepoint of a multi-controller transaction keeps its set and its
         * first controller (the checks above made the argument a subset). */
        avm_val_release(mctrl);
        avm_val_release(set);
    } else {
        if (STRICT(x) || !IN_TX(x) || mctrl.kind != AVM_NIL) {
            avm_val_release(x->txctrl);
            x->txctrl = mctrl;
        } else {
            avm_val_release(mctrl);
        }
        /* Outermost, or a set widening an enclosing transaction not resolved yet. */
        if (set.kind == AVM_LIST) {
            avm_val_release(x->txset);
            x->txset = set;
        }
    }
    vm_savept *sp = VEC_SLOT(x->tx);
    if (sp == NULL) {
        avm_val_release(txid);
        avm_val_release(ctrl_before);
        avm_val_release(set_before);
        return vm__oom(x);
    }
    sp->txid = txid;
    sp->ctrl_before = ctrl_before;
    sp->set_before = set_before;
    sp->nctx = (uint32_t)x->ctxs.n;
    sp->nreads = x->reads.n;
    sp->ncreates = x->creates.n;
    sp->ntransfers = x->transfers.n;
    sp->nstates = x->states.n;
    sp->ndestroys = x->destroys.n;
    sp->nwrites = x->writes.n;
    if (x->tx.n == 1 && x->snap == NULL && x->plat->store->ops->snapshot != NULL)
        x->snap = x->plat->store->ops->snapshot(x->plat->store);
    if (!STRICT(x) && (vm__fd_tx_begin(x) != 0 || vm__nd_tx_begin(x) != 0))
        return vm__oom(x);
    *out = vm__ref(txid);
    return VM_OK;
}

/* Misuse of commitTx/abortTx in default mode (decisions 3 and 11): which error. */
static int tx_misuse(avm_exec *x, const char *what, avm_val tid)
{
    if (!IN_TX(x))
        return vm__fail(x, AVM_ERR_NO_ACTIVE_TX, avm_nil(), avm_nil(), avm_nil());
    for (size_t i = 0; i < x->tx.n; i++) {
        if (avm_val_eq(x->tx.v[i].txid, tid)) {
            char msg[300];
            snprintf(msg, sizeof(msg),
                     i + 1 < x->tx.n ? "%s: a nested transaction inside it is still open"
                                     : "%s: the transaction was begun by a calling frame",
                     what);
            avm_val s;
            if (avm_cstr(AVM_STR, msg, &s) != 0)
                return vm__oom(x);
            return vm__fail(x, AVM_ERR_INVALID_DURING_TX, s, avm_nil(), avm_nil());
        }
    }
    for (uint32_t i = 0; i < VM_FINISHED_RING; i++) {
        if (x->finished[i].txid.kind != AVM_NIL && avm_val_eq(x->finished[i].txid, tid))
            return vm__fail(x,
                            x->finished[i].committed ? AVM_ERR_TX_ALREADY_COMMITTED
                                                     : AVM_ERR_TX_ALREADY_ABORTED,
                            vm__ref(tid), avm_nil(), avm_nil());
    }
    return vm__fail(x, AVM_ERR_TX_NOT_FOUND, vm__ref(tid), avm_nil(), avm_nil());
}

/* Default mode: the innermost transaction, if this frame began it. */
static bool own_innermost(avm_exec *x, avm_val tid)
{
    if (!IN_TX(x))
        return false;
    vm_savept *sp = &x->tx.v[x->tx.n - 1];
    return avm_val_eq(sp->txid, tid) && sp->nctx == x->ctxs.n;
}

/* Truncates the overlay to a savepoint. */
static void truncate_to(avm_exec *x, const vm_savept *sp)
{
    /* Reads stay: the aborted child's reads may have steered the parent. */
    while (x->creates.n > sp->ncreates)
        create_release(&x->creates.v[--x->creates.n]);
    while (x->transfers.n > sp->ntransfers) {
        avm_pair *p = &x->transfers.v[--x->transfers.n];
        avm_val_release(p->a);
        avm_val_release(p->b);
    }
    while (x->states.n > sp->nstates) {
        avm_pair *p = &x->states.v[--x->states.n];
        avm_val_release(p->a);
        avm_val_release(p->b);
    }
    while (x->destroys.n > sp->ndestroys)
        avm_val_release(x->destroys.v[--x->destroys.n]);
    while (x->writes.n > sp->nwrites) {
        avm_pair *p = &x->writes.v[--x->writes.n];
        avm_val_release(p->a);
        avm_val_release(p->b);
    }
}

static int commit_outer(avm_exec *x, bool *ok)
{
    avm_writeset ws = {
        .reads = x->reads.v,
        .nreads = x->reads.n,
        .creates = x->creates.v,
        .ncreates = x->creates.n,
        .transfers = x->transfers.v,
        .ntransfers = x->transfers.n,
        .states = x->states.v,
        .nstates = x->states.n,
        .destroys = x->destroys.v,
        .ndestroys = x->destroys.n,
        .spec_order = STRICT(x),
        .deferrable = true,
        .bundle = x->bundle,
        .problem = x->problem,
    };
    avm_buf ck;
    avm_buf_init(&ck);
    if (x->ckpt_id.kind == AVM_STR && !STRICT(x)) {
        /* The checkpoint is the state before this commitTx, at its instruction (the
         * dispatcher already moved the frame's pc past it), marked as decided. */
        vm_frame *fr = &x->frames.v[x->frames.n - 1];
        fr->pc -= 3;
        x->resume_commit = true;
        /* The part of the trace log the store does not hold yet goes with the
         * state: inline while it is short (one record to rewrite), as a chunk of its
         * own once it is long (so that checkpoints do not grow with the trace). */
        bool inline_log = x->tlog.len - x->tlog_saved < VM_TRACE_INLINE_MAX;
        int rv = avm_exec_encode_ex(x, &ck, inline_log ? x->tlog_saved : x->tlog.len);
        x->resume_commit = false;
        fr->pc += 3;
        if (rv != 0) {
            avm_buf_free(&ck);
            return vm__oom(x);
        }
        ws.ckpt_id = x->ckpt_id.u.s->data;
        ws.ckpt_state = (const uint8_t *)ck.data;
        ws.ckpt_len = ck.len;
        ws.ckpt_status = AVM_RUN_YIELD;
        ws.ckpt_trace = (const uint8_t *)x->tlog.data + x->tlog_saved;
        ws.ckpt_trace_len = inline_log ? 0 : x->tlog.len - x->tlog_saved;
        ws.ckpt_trace_at = x->tlog_saved;
    }
    avm_store *s = x->plat->store;
    size_t logged = ws.ckpt_trace_at + ws.ckpt_trace_len;
    /* Every read is made and recorded with its version: the read view can go now,
     * before a commit that may wait (a read view held open keeps the store from
     * reusing the pages it sees). */
    if (x->snap != NULL) {
        s->ops->snapshot_release(s, x->snap);
        x->snap = NULL;
    }
    int rv = s->ops->apply(s, &ws, ok);
    if (rv == 0 && *ok && ws.ckpt_id != NULL)
        x->tlog_saved = logged;
    avm_buf_free(&ck);
    if (rv == AVM_EPENDING) {
        /* The store decides later (a group commit): wait at this instruction with
         * the overlay untouched, which the write set points into. */
        x->commit_wait = CW_PENDING;
        x->commit_logged = logged;
        x->commit_ckpt = ws.ckpt_id != NULL;
        return VM_BLOCK;
    }
    if (rv != 0)
        return rv == AVM_ENOMEM ? vm__oom(x) : vm__store_error(x, rv);
    return VM_OK;
}

/* After a commit: the specification's StateStore is total (applyStates writes
 * any id), so a committed setState of an activation that has no object record (the
 * top-level program) is kept with the execution, as op_set_state does outside a
 * transaction; without this the top-level's transactional setState would be lost.
 * States of objects this commit destroyed are dropped (decision 12; the literal
 * store would keep them under the dead id, where nothing can read them). */
static int keep_detached_states(avm_exec *x)
{
    if (!x->tx_detached)
        return VM_OK; /* every state written went to an object record */
    avm_store *s = x->plat->store;
    for (size_t i = 0; i < x->states.n; i++) {
        avm_pair *p = &x->states.v[i];
        /* The latest committed state (snap NULL), not the transaction's snapshot,
         * in which the objects this commit created do not exist yet. */
        if (s->ops->get(s, NULL, p->a) != NULL || pending_destroy(x, p->a))
            continue;
        if (set_detached(x, p->a, p->b) != VM_OK)
            return VM_FAIL;
    }
    return VM_OK;
}

/* The outermost commit: hands the write set to the store, or takes the outcome
 * of one handed over earlier (avm_exec_commit_done). VM_BLOCK while it waits. */
static int commit_or_outcome(avm_exec *x, bool *ok)
{
    if (x->commit_wait != CW_DONE)
        return commit_outer(x, ok);
    x->commit_wait = CW_NONE;
    if (x->commit_rv != 0)
        return x->commit_rv == AVM_ENOMEM ? vm__oom(x) : vm__store_error(x, x->commit_rv);
    *ok = x->commit_ok;
    if (*ok && x->commit_ckpt)
        x->tlog_saved = x->commit_logged;
    return VM_OK;
}

/* Logs why a commit returned false: the finite-domain store of the level is
 * inconsistent (ErrorOccurred FDError.ErrInconsistent tid, under the controller). */
static void fd_inconsistent(avm_exec *x, avm_val ctrl, avm_val tid)
{
    vm__log(x, x->counter, AVM_EV_ERROR_OCCURRED, false, AVM_ERR_FD_INCONSISTENT, ctrl,
            tid, avm_nil(), avm_nil());
    x->counter++;
}

static void abort_level(avm_exec *x, bool log);
static void bundle_aborted(avm_exec *x);

static int op_commit(avm_exec *x, avm_val tid, avm_val *out)
{
    if (want_kind(x, AVM_I_COMMIT_TX, tid, AVM_TXID, false))
        return VM_FAIL;
    if (x->commit_wait == CW_PENDING)
        return VM_BLOCK;
    if (STRICT(x)) {
        if (!IN_TX(x))
            return vm__fail(x, AVM_ERR_NO_ACTIVE_TX, avm_nil(), avm_nil(), avm_nil());
        if (!avm_val_eq(tid, x->tx.v[x->tx.n - 1].txid))
            return vm__fail(x, AVM_ERR_TX_CONFLICT, vm__ref(tid), avm_nil(), avm_nil());
        bool ok;
        int rv = commit_or_outcome(x, &ok);
        if (rv != VM_OK)
            return rv;
        if (!ok)
            return vm__fail(x, AVM_ERR_TX_CONFLICT, vm__ref(tid), avm_nil(), avm_nil());
        if (keep_detached_states(x) != VM_OK)
            return VM_FAIL;
        avm_val ctrl = vm__ref(x->txctrl);
        vm__tx_clear(x);
        vm__event_ctrl(x, AVM_EV_TRANSACTION_COMMITTED, ctrl, vm__ref(tid), avm_nil(),
                       avm_nil(), true);
        *out = avm_bool(true);
        return VM_OK;
    }
    if (!own_innermost(x, tid))
        return tx_misuse(x, "commitTx", tid);
    if (x->tx.n > 1 && vm__fd_tx_failed(x)) {
        /* Decision 3: the level's finite-domain store is inconsistent (a domain
         * emptied): the commit says false and the level aborts (decision 5). */
        fd_inconsistent(x, x->txctrl, tid);
        abort_level(x, true);
        *out = avm_bool(false);
        return VM_OK;
    }
    if (x->tx.n > 1) {
        /* Decision 2: a nested commit merges into the parent. */
        vm__fd_tx_commit(x);
        vm__nd_tx_commit(x);
        vm_savept sp = x->tx.v[--x->tx.n];
        vm__event(x, AVM_EV_TRANSACTION_COMMITTED, vm__ref(tid), avm_nil(), avm_nil());
        remember_finished(x, tid, true);
        avm_val_release(sp.txid);
        avm_val_release(sp.ctrl_before);
        avm_val_release(sp.set_before);
        *out = avm_bool(true);
        return VM_OK;
    }
    bool ok = true;
    int why = AVM_ERR_TX_CONFLICT;
    if (x->resume_commit) {
        /* Restored from this commit's own checkpoint: it is already durable. */
        x->resume_commit = false;
    } else if (x->commit_wait == CW_NONE && vm__fd_tx_failed(x)) {
        ok = false;
        why = AVM_ERR_FD_INCONSISTENT;
    } else {
        int settled = 0;
        if (x->commit_wait == CW_NONE) {
            /* Nondeterminism: settle the choices (or hand them to the bundle). */
            avm_val_release(x->problem);
            settled = vm__nd_settle(x, &x->problem);
            if (settled == VM_FAIL)
                return VM_FAIL;
        }
        if (settled == VM_ND_FALSE) {
            ok = false;
            why = AVM_ERR_ND_UNSATISFIABLE; /* logged by vm__nd_settle */
        } else {
            int rv = commit_or_outcome(x, &ok);
            if (rv != VM_OK)
                return rv;
        }
    }
    if (ok && keep_detached_states(x) != VM_OK)
        return VM_FAIL;
    if (ok) {
        vm__fd_tx_commit(x);
        vm__nd_tx_commit(x);
    } else {
        vm__fd_tx_abort(x);
        vm__nd_tx_abort(x);
    }
    avm_val ctrl = vm__ref(x->txctrl);
    vm__tx_clear(x);
    if (ok) {
        vm__log(x, x->counter++, AVM_EV_TRANSACTION_COMMITTED, false, 0, ctrl, tid,
                avm_nil(), avm_nil());
        avm_val_release(ctrl);
    } else {
        /* Decision 3: a conflict (or an inconsistent finite-domain store) aborts the
         * transaction and commitTx says false. */
        if (why == AVM_ERR_FD_INCONSISTENT) {
            fd_inconsistent(x, ctrl, tid);
        } else if (why == AVM_ERR_TX_CONFLICT) {
            vm__log(x, x->counter, AVM_EV_ERROR_OCCURRED, false, AVM_ERR_TX_CONFLICT,
                    ctrl, tid, avm_nil(), avm_nil());
            x->counter++;
        } /* else vm__nd_settle logged why */
        vm__event_ctrl(x, AVM_EV_TRANSACTION_ABORTED, ctrl, vm__ref(tid), avm_nil(),
                       avm_nil(), true);
        /* Decided here, without the store: a bundle cannot have this segment. */
        if (why != AVM_ERR_TX_CONFLICT)
            bundle_aborted(x);
    }
    remember_finished(x, tid, ok);
    *out = avm_bool(ok);
    return VM_OK;
}

/* The program aborted an outermost transaction: a bundle it belongs to cannot
 * commit this member's segment. */
static void bundle_aborted(avm_exec *x)
{
    if (x->bundle.kind == AVM_STR && x->plat->bundle_abort != NULL)
        x->plat->bundle_abort(x->plat->data, x->bundle);
}

static void abort_level(avm_exec *x, bool log)
{
    vm__fd_tx_abort(x);
    vm__nd_tx_abort(x);
    vm_savept sp = x->tx.v[--x->tx.n];
    if (log)
        vm__event(x, AVM_EV_TRANSACTION_ABORTED, vm__ref(sp.txid), avm_nil(), avm_nil());
    truncate_to(x, &sp);
    avm_val_release(x->txctrl);
    x->txctrl = sp.ctrl_before;
    avm_val_release(x->txset);
    x->txset = sp.set_before;
    remember_finished(x, sp.txid, false);
    avm_val_release(sp.txid);
    if (x->tx.n == 0)
        vm__tx_clear(x);
}

void vm__abort_from(avm_exec *x, size_t depth)
{
    while (x->tx.n > depth)
        abort_level(x, true);
}

static int op_abort(avm_exec *x, avm_val tid, avm_val *out)
{
    if (want_kind(x, AVM_I_ABORT_TX, tid, AVM_TXID, false))
        return VM_FAIL;
    *out = avm_nil();
    if (STRICT(x)) {
        /* The literal abortTx accepts any id, with or without a transaction. */
        bool outer = IN_TX(x);
        avm_val ctrl = vm__ref(x->txctrl);
        vm__tx_clear(x);
        vm__event_ctrl(x, AVM_EV_TRANSACTION_ABORTED, ctrl, vm__ref(tid), avm_nil(),
                       avm_nil(), true);
        if (outer)
            bundle_aborted(x);
        return VM_OK;
    }
    if (!own_innermost(x, tid))
        return tx_misuse(x, "abortTx", tid);
    bool outer = x->tx.n == 1;
    abort_level(x, true);
    if (outer)
        bundle_aborted(x);
    return VM_OK;
}

/* joinBundle (extension): the execution's next outermost commits belong to the
 * named composed commit (nil: to none). */
static int op_join_bundle(avm_exec *x, avm_val name, avm_val *out)
{
    if (want_kind(x, AVM_I_JOIN_BUNDLE, name, AVM_STR, true))
        return VM_FAIL;
    if (name.kind == AVM_STR && name.u.s->len == 0)
        return vm__eval_error(x, "joinBundle expects a bundle name, got an empty string");
    if (IN_TX(x))
        return invalid_during_tx(x, "joinBundle: a transaction is open");
    avm_val_release(x->bundle);
    x->bundle = vm__ref(name);
    *out = avm_bool(true);
    return VM_OK;
}

/* Pure --------------------------------------------------------------------------- */

static int op_call_pure(avm_exec *x, avm_val *a, avm_val *out)
{
    if (want_kind(x, AVM_I_CALL_PURE, a[0], AVM_STR, false) ||
        want_kind(x, AVM_I_CALL_PURE, a[1], AVM_LIST, false))
        return VM_FAIL;
    avm_store *s = x->plat->store;
    const avm_purefn *fn = s->ops->pure_get(s, a[0]);
    if (fn == NULL || fn->code->funcs[0].nparams != a[1].u.l->len) {
        *out = avm_nil(); /* nothing: unknown function or invalid arguments */
        return VM_OK;
    }
    avm_module *code = fn->code;
    avm_val name = a[0], args = a[1];
    uint32_t n = args.u.l->len;
    x->sp -= 2;
    avm_val_release(name);
    if (vm__ensure_stack(x, x->sp + n) != 0) {
        avm_val_release(args);
        return vm__eval_error(x, "callPure: value stack limit exceeded");
    }
    for (uint32_t i = 0; i < n; i++)
        x->stack[x->sp++] = vm__ref(args.u.l->items[i]);
    avm_val_release(args);
    int rv = vm__push_frame(x, code, 0, n, FR_PURE);
    if (rv != VM_OK)
        return rv;
    return VM_ENTERED;
}

static int op_register_pure(avm_exec *x, avm_val *a, bool update, avm_val *out)
{
    int op = update ? AVM_I_UPDATE_PURE : AVM_I_REGISTER_PURE;
    if (want_kind(x, op, a[0], AVM_STR, false) || want_kind(x, op, a[1], AVM_INT, false))
        return VM_FAIL;
    vm_frame *fr = &x->frames.v[x->frames.n - 1];
    if (a[1].u.i < 0 || (uint64_t)a[1].u.i >= fr->mod->nfuncs ||
        fr->mod->funcs[a[1].u.i].kind != AVM_FN_PURE)
        return vm__eval_error(x, "%s: operand is not a pure function of this program",
                              avm_instr_table[op].name);
    avm_store *s = x->plat->store;
    const avm_purefn *old = s->ops->pure_get(s, a[0]);
    if (!update && old != NULL)
        return vm__fail(x, AVM_ERR_FUNCTION_ALREADY_REGISTERED, vm__ref(a[0]), avm_nil(),
                        avm_nil());
    if (update && old == NULL)
        return vm__fail(x, AVM_ERR_FUNCTION_NOT_FOUND, vm__ref(a[0]), avm_nil(),
                        avm_nil());
    avm_module *code;
    if (avm_module_extract(fr->mod, (uint32_t)a[1].u.i, &code) != 0)
        return vm__oom(x);
    avm_purefn fn = {
        .name = a[0], .code = code, .version = update ? old->version + 1 : 0};
    int rv = s->ops->pure_put(s, &fn);
    avm_module_release(code);
    if (rv != 0)
        return vm__oom(x);
    if (update)
        vm__event(x, AVM_EV_FUNCTION_UPDATED, vm__ref(a[0]), avm_nil(), avm_nil());
    *out = avm_bool(true);
    return VM_OK;
}

/* Machine ------------------------------------------------------------------------ */

static int op_get_machine(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_GET_MACHINE, oid, AVM_OBJID, false))
        return VM_FAIL;
    view v = STRICT(x) ? view_pending(x, oid) : view_of(x, oid);
    if (STRICT(x) && v.where == V_NONE)
        v = view_store(x, oid);
    *out =
        v.where == V_STORE || v.where == V_PENDING ? vm__ref(v.meta.machine) : avm_nil();
    return VM_OK;
}

static int op_teleport(avm_exec *x, avm_val m, avm_val *out)
{
    if (want_kind(x, AVM_I_TELEPORT, m, AVM_MACHID, false))
        return VM_FAIL;
    if (IN_TX(x)) {
        avm_val s;
        if (avm_cstr(AVM_STR, "teleport", &s) != 0)
            return vm__oom(x);
        return vm__fail(x, AVM_ERR_INVALID_DURING_TX, s, avm_nil(), avm_nil());
    }
    if (!x->plat->reachable_machine(x->plat->data, m))
        return vm__fail(x, AVM_ERR_MACHINE_UNREACHABLE, vm__ref(m), avm_nil(), avm_nil());
    vm__event(x, AVM_EV_EXECUTION_MOVED, vm__ref(m), vm__ref(x->machine), avm_nil());
    avm_val_release(x->machine);
    x->machine = vm__ref(m);
    vm__placed(x);
    *out = avm_bool(true);
    return VM_OK;
}

/* moveObject and fetch change the object's placement at once, inside a
 * transaction too: placement is not transactional state in the specification. */
static int set_machine(avm_exec *x, avm_val oid, const view *v, avm_val m)
{
    if (v->where == V_PENDING) {
        avm_create *c = &x->creates.v[v->create];
        avm_val_release(c->meta.machine);
        c->meta.machine = vm__ref(m);
        return VM_OK;
    }
    avm_pair p = {oid, m};
    avm_writeset ws = {.moves = &p, .nmoves = 1};
    return apply_now(x, &ws);
}

static int op_move(avm_exec *x, avm_val *a, avm_val *out)
{
    avm_val oid = a[0], m = a[1];
    if (want_kind(x, AVM_I_MOVE_OBJECT, oid, AVM_OBJID, false) ||
        want_kind(x, AVM_I_MOVE_OBJECT, m, AVM_MACHID, false))
        return VM_FAIL;
    view v = STRICT(x) ? view_store(x, oid) : view_of(x, oid);
    if (v.where == V_DESTROYED)
        return vm__fail(x, AVM_ERR_OBJECT_ALREADY_DESTROYED, vm__ref(oid), avm_nil(),
                        avm_nil());
    if (v.where == V_NONE)
        return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(), avm_nil());
    if (!x->plat->reachable_machine(x->plat->data, m))
        return vm__fail(x, AVM_ERR_MACHINE_UNREACHABLE, vm__ref(m), avm_nil(), avm_nil());
    vm__event(x, AVM_EV_OBJECT_MOVED, vm__ref(oid), vm__ref(v.meta.machine), vm__ref(m));
    int rv = set_machine(x, oid, &v, m);
    if (rv != VM_OK)
        return rv;
    *out = avm_bool(true);
    return VM_OK;
}

static int op_fetch(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_FETCH, oid, AVM_OBJID, false))
        return VM_FAIL;
    view v = STRICT(x) ? view_store(x, oid) : view_of(x, oid);
    if (v.where != V_STORE && v.where != V_PENDING) {
        *out = avm_bool(false);
        return VM_OK;
    }
    avm_val local = vm__ref(x->machine);
    vm__event(x, AVM_EV_OBJECT_FETCHED, vm__ref(oid), vm__ref(local), avm_nil());
    int rv = set_machine(x, oid, &v, local);
    avm_val_release(local);
    if (rv != VM_OK)
        return rv;
    *out = avm_bool(true);
    return VM_OK;
}

/* Controller --------------------------------------------------------------------- */

static int op_get_controller(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_GET_CONTROLLER, oid, AVM_OBJID, false))
        return VM_FAIL;
    if (STRICT(x)) {
        view p = view_pending(x, oid);
        if (p.where == V_PENDING) {
            if (resolve_ctrl(x, oid, &p.meta) != VM_OK)
                return VM_FAIL;
            *out = vm__ref(p.meta.current);
            return VM_OK;
        }
        avm_val t = pending_transfer(x, oid);
        if (t.kind != AVM_NIL) {
            *out = vm__ref(t);
            return VM_OK;
        }
        view v = view_store(x, oid);
        if (v.where == V_NONE) {
            *out = avm_nil();
            return VM_OK;
        }
        if (IN_TX(x) &&
            (resolve_ctrl(x, oid, &v.meta) != VM_OK || observe(x, oid, &v) != VM_OK))
            return VM_FAIL;
        *out = vm__ref(v.meta.current);
        return VM_OK;
    }
    view v = view_of(x, oid);
    if (v.where != V_STORE && v.where != V_PENDING) {
        *out = avm_nil();
        return VM_OK;
    }
    if (IN_TX(x) && (resolve_ctrl(x, oid, &v.meta) != VM_OK ||
                     (v.where == V_STORE && observe(x, oid, &v) != VM_OK)))
        return VM_FAIL;
    *out = vm__ref(v.meta.current);
    return VM_OK;
}

static int op_transfer(avm_exec *x, avm_val *a, avm_val *out)
{
    avm_val oid = a[0], cid = a[1];
    if (want_kind(x, AVM_I_TRANSFER_OBJECT, oid, AVM_OBJID, false) ||
        want_kind(x, AVM_I_TRANSFER_OBJECT, cid, AVM_CTRLID, false))
        return VM_FAIL;
    if (!x->plat->reachable_controller(x->plat->data, cid))
        return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(cid), avm_nil(),
                        avm_nil());
    if (IN_TX(x)) {
        /* S: lookupPendingCreate, then the committed store. */
        view v = STRICT(x) ? view_pending(x, oid) : view_of(x, oid);
        if (STRICT(x) && v.where == V_NONE)
            v = view_store(x, oid);
        if (v.where == V_DESTROYED)
            return vm__fail(x, AVM_ERR_OBJECT_ALREADY_DESTROYED, vm__ref(oid), avm_nil(),
                            avm_nil());
        if (v.where == V_NONE)
            return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(),
                            avm_nil());
        avm_val source;
        if (v.where == V_PENDING) {
            source = unknown_ctrl(v.meta.current);
        } else {
            /* transferObjInTx */
            if (resolve_and_check(x, oid, &v.meta) != VM_OK ||
                observe(x, oid, &v) != VM_OK)
                return VM_FAIL;
            /* The object's controller: txController, or in a multi-controller
             * transaction the one of its set that owns it. */
            source = unknown_ctrl(x->txset.kind == AVM_LIST ? v.meta.current : x->txctrl);
        }
        avm_pair pt = {vm__ref(oid), vm__ref(cid)};
        if (VEC_PUSH(x, x->transfers, pt) != 0) {
            avm_val_release(pt.a);
            avm_val_release(pt.b);
            avm_val_release(source);
            return vm__oom(x);
        }
        /* S: the literal transfer of a pending create logs without advancing the
         * event counter. */
        vm__event_ctrl(x, AVM_EV_OBJECT_TRANSFERRED, vm__ref(x->txctrl), vm__ref(oid),
                       source, vm__ref(cid), !(STRICT(x) && v.where == V_PENDING));
        *out = avm_bool(true);
        return VM_OK;
    }
    view v = view_store(x, oid);
    if (v.where == V_NONE)
        return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(), avm_nil());
    /* transferObjNoTx */
    if (v.meta.current.kind == AVM_NIL)
        return vm__fail(x, AVM_ERR_OBJECT_HAS_NO_CONTROLLER, vm__ref(oid), avm_nil(),
                        avm_nil());
    vm__event(x, AVM_EV_OBJECT_TRANSFERRED, vm__ref(oid), vm__ref(v.meta.current),
              vm__ref(cid));
    avm_pair p = {oid, cid};
    avm_writeset ws = {.transfers = &p, .ntransfers = 1};
    int rv = apply_now(x, &ws);
    if (rv != VM_OK)
        return rv;
    *out = avm_bool(true);
    return VM_OK;
}

static int op_freeze(avm_exec *x, avm_val oid, avm_val *out)
{
    if (want_kind(x, AVM_I_FREEZE, oid, AVM_OBJID, false))
        return VM_FAIL;
    if (x->txctrl.kind == AVM_NIL)
        return vm__fail(x, AVM_ERR_OBJECT_HAS_NO_CONTROLLER, vm__ref(oid), avm_nil(),
                        avm_nil());
    if (!x->plat->reachable_controller(x->plat->data, x->txctrl))
        return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(x->txctrl), avm_nil(),
                        avm_nil());
    view v = STRICT(x) ? view_pending(x, oid) : view_of(x, oid);
    if (STRICT(x) && v.where == V_NONE)
        v = view_store(x, oid);
    if (v.where != V_STORE && v.where != V_PENDING)
        return vm__fail(x, AVM_ERR_OBJECT_NOT_FOUND, vm__ref(oid), avm_nil(), avm_nil());
    if (v.where == V_STORE && x->plat->freeze != NULL) {
        int rv = platform_answer(x, oid, x->plat->freeze(x->plat->data, oid));
        if (rv != VM_OK)
            return rv;
    }
    vm__event(x, AVM_EV_OBJECT_FROZEN, vm__ref(oid), vm__ref(x->txctrl), avm_nil());
    *out = avm_bool(true);
    return VM_OK;
}

/* Dispatch ----------------------------------------------------------------------- */

/* platform.prepare: the object an instruction reads, made available first. */
static int prepare(avm_exec *x, int op, avm_val *a)
{
    avm_val oid;
    switch (op) {
    case AVM_I_GET_STATE:
    case AVM_I_SET_STATE:
        oid = x->self;
        break;
    case AVM_I_CALL:
    case AVM_I_DESTROY_OBJ:
    case AVM_I_REFLECT:
    case AVM_I_GET_MACHINE:
    case AVM_I_MOVE_OBJECT:
    case AVM_I_FETCH:
    case AVM_I_GET_CONTROLLER:
    case AVM_I_TRANSFER_OBJECT:
    case AVM_I_FREEZE:
        oid = a[0];
        break;
    default:
        return VM_OK;
    }
    if (oid.kind != AVM_OBJID || view_pending(x, oid).where == V_PENDING)
        return VM_OK;
    return platform_answer(x, oid, x->plat->prepare(x->plat->data, oid));
}

int vm__instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out)
{
    if (x->plat->prepare != NULL && x->commit_wait == CW_NONE) {
        int rv = prepare(x, op, a);
        if (rv != VM_OK)
            return rv;
    }
    switch (op) {
    case AVM_I_CREATE_OBJ:
        return op_create(x, a, argc, out);
    case AVM_I_DESTROY_OBJ:
        return op_destroy(x, a[0], out);
    case AVM_I_CALL:
        return op_call(x, a, out);
    case AVM_I_RECEIVE:
        return op_receive(x, out);
    case AVM_I_SELF:
        *out = vm__ref(x->self);
        return VM_OK;
    case AVM_I_INPUT:
        *out = vm__ref(x->input);
        return VM_OK;
    case AVM_I_GET_CURRENT_MACHINE:
        *out = vm__ref(x->machine);
        return VM_OK;
    case AVM_I_GET_STATE:
        return op_get_state(x, out);
    case AVM_I_SET_STATE:
        return op_set_state(x, a[0], out);
    case AVM_I_SENDER:
        *out = vm__ref(x->sender);
        return VM_OK;
    case AVM_I_REFLECT:
        return op_reflect(x, a[0], out);
    case AVM_I_SCRY_META:
        return op_scry(x, false, out);
    case AVM_I_SCRY_DEEP:
        return op_scry(x, true, out);
    case AVM_I_REIFY_CONTEXT:
        return op_reify_context(x, out);
    case AVM_I_REIFY_TX_STATE:
        return op_reify_tx(x, out);
    case AVM_I_REIFY_CONSTRAINTS:
        return STRICT(x) ? op_reify_constraints(x, out) : vm__fd_reify(x, out);
    case AVM_I_BEGIN_TX:
        return op_begin(x, a, argc, out);
    case AVM_I_COMMIT_TX:
        return op_commit(x, a[0], out);
    case AVM_I_ABORT_TX:
        return op_abort(x, a[0], out);
    case AVM_I_CALL_PURE:
        return op_call_pure(x, a, out);
    case AVM_I_REGISTER_PURE:
        return op_register_pure(x, a, false, out);
    case AVM_I_UPDATE_PURE:
        return op_register_pure(x, a, true, out);
    case AVM_I_GET_MACHINE:
        return op_get_machine(x, a[0], out);
    case AVM_I_TELEPORT:
        return op_teleport(x, a[0], out);
    case AVM_I_MOVE_OBJECT:
        return op_move(x, a, out);
    case AVM_I_FETCH:
        return op_fetch(x, a[0], out);
    case AVM_I_GET_CURRENT_CONTROLLER:
        *out = vm__ref(x->txctrl);
        return VM_OK;
    case AVM_I_GET_CONTROLLER:
        return op_get_controller(x, a[0], out);
    case AVM_I_TRANSFER_OBJECT:
        return op_transfer(x, a, out);
    case AVM_I_FREEZE:
        return op_freeze(x, a[0], out);
    case AVM_I_JOIN_BUNDLE:
        return op_join_bundle(x, a[0], out);
    case AVM_I_NEW_VAR:
    case AVM_I_NARROW:
    case AVM_I_POST:
    case AVM_I_LABEL:
    case AVM_I_CHOOSE:
    case AVM_I_REQUIRE: {
        bool fd = op != AVM_I_CHOOSE && op != AVM_I_REQUIRE;
        /* Default mode: the constraint layers (DESIGN.md section 4); the literal
         * specification implements neither. */
        if (!STRICT(x))
            return fd ? vm__fd_instr(x, op, a, argc, out)
                      : vm__nd_instr(x, op, a, argc, out);
        avm_val s;
        if (avm_cstr(AVM_STR,
                     fd ? "FD instructions not yet implemented"
                        : "Nondeterminism instructions not yet implemented",
                     &s) != 0)
            return vm__oom(x);
        return vm__fail(x,
                        fd ? AVM_ERR_FD_NOT_IMPLEMENTED : AVM_ERR_NONDET_NOT_IMPLEMENTED,
                        s, avm_nil(), avm_nil());
    }
    }
    return vm__eval_error(x, "unknown instruction %d", op);
}

/* Returning from a boundary frame ---------------------------------------------- */

static void restore_ctx(avm_exec *x, vm_ctx *c, bool machine)
{
    avm_val_release(x->self);
    avm_val_release(x->input);
    avm_val_release(x->sender);
    x->self = c->self;
    x->input = c->input;
    x->sender = c->sender;
    if (machine) {
        avm_val_release(x->machine);
        x->machine = c->machine;
    } else {
        avm_val_release(c->machine);
    }
}

int vm__boundary_return(avm_exec *x, uint8_t kind, avm_val v)
{
    if (kind == FR_PURE) {
        x->stack[x->sp++] = v;
        return VM_OK;
    }
    /* The context stays where it is until the vector grows again, which nothing
     * below does: read it in place. */
    vm_ctx *c = &x->ctxs.v[x->ctxs.n - 1];
    if (kind == FR_MAIN) {
        /* Decision 11: a transaction still open when the frame that began it ends is
         * aborted. */
        if (!STRICT(x))
            vm__abort_from(x, c->txdepth);
        /* The entry's context saved nothing (its fields are nil unless a restored
         * state says otherwise): release them all the same. */
        avm_val_release(c->self);
        avm_val_release(c->input);
        avm_val_release(c->sender);
        avm_val_release(c->machine);
        avm_val_release(c->oid);
        avm_val_release(c->inp);
        x->ctxs.n--;
        avm_val_release(x->result);
        x->result = v;
        x->status = AVM_RUN_DONE;
        return VM_OK;
    }
    /* FR_BEHAVIOR: handleCall-aux (the caller checked that v is a list). */
    if (!STRICT(x))
        vm__abort_from(x, c->txdepth);
    x->ctxs.n--;
    bool has = v.u.l->len > 0;
    avm_val output = has ? vm__ref(v.u.l->items[0]) : avm_nil();
    avm_val_release(v);
    if (x->cfg.msc)
        vm__msc(x, AVM_MSC_RETURN, x->machine, c->oid, c->self, output);
    restore_ctx(x, c, !STRICT(x));
    vm__placed(x);
    avm_val coid = c->oid, cinp = c->inp;
    if (c->in_tx && (STRICT(x) || IN_TX(x))) {
        avm_pair w = {vm__ref(coid), vm__ref(cinp)};
        if (VEC_PUSH(x, x->writes, w) != 0) {
            avm_val_release(w.a);
            avm_val_release(w.b);
        }
    }
    vm__log(x, x->counter, AVM_EV_OBJECT_CALLED, has, 0, x->txctrl, coid, cinp, output);
    avm_val_release(coid);
    avm_val_release(cinp);
    x->counter++;
    x->stack[x->sp++] = output;
    return VM_OK;
}
