/* The dispatch loop, frames, primitives and the execution's public API. The AVM
 * instructions themselves are in vm_ops.c. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "module.h"
#include "vm_internal.h"

#define DEFAULT_MAX_FRAMES 10000
#define DEFAULT_MAX_STACK 1000000

int vm__vec_grow(void **v, size_t *cap, size_t elem, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    void *p = realloc(*v, ncap * elem);
    if (p == NULL)
        return AVM_ENOMEM;
    *v = p;
    *cap = ncap;
    return 0;
}

const char *avm_event_name(avm_event_type t)
{
    static const char *names[AVM_EV_COUNT] = {
#define AVM__EV_NAME(id, name) name,
        AVM_EVENT_MAP(AVM__EV_NAME)
#undef AVM__EV_NAME
    };
    return (unsigned)t < AVM_EV_COUNT ? names[t] : "Unknown";
}

static int event_nargs(int type)
{
    switch (type) {
    case AVM_EV_OBJECT_CALLED:
    case AVM_EV_OBJECT_MOVED:
    case AVM_EV_OBJECT_TRANSFERRED:
    case AVM_EV_DOMAIN_NARROWED:
        return 3;
    case AVM_EV_VAR_CREATED:
    case AVM_EV_CONSTRAINT_POSTED:
    case AVM_EV_VAR_LABELED:
    case AVM_EV_CHOICE_MADE:
    case AVM_EV_CONSTRAINTS_SOLVED:
    case AVM_EV_OBJECT_CREATED:
    case AVM_EV_MESSAGE_RECEIVED:
    case AVM_EV_EXECUTION_MOVED:
    case AVM_EV_OBJECT_FETCHED:
    case AVM_EV_OBJECT_FROZEN:
        return 2;
    case AVM_EV_ERROR_OCCURRED:
        return 0;
    default:
        return 1;
    }
}

void avm_event_print(avm_buf *b, const avm_event *e)
{
    avm_buf_printf(b, "%llu %s", (unsigned long long)e->ts, avm_event_name(e->type));
    if (e->type == AVM_EV_ERROR_OCCURRED) {
        avm_error err = {.code = e->ecode};
        memcpy(err.args, e->a, sizeof(err.args));
        avm_buf_put(b, " ", 1);
        avm_error_print(b, &err);
    } else {
        int n = event_nargs(e->type);
        for (int i = 0; i < n; i++) {
            avm_buf_put(b, " ", 1);
            if (e->type == AVM_EV_OBJECT_CALLED && i == 2) {
                if (e->has_output) {
                    avm_buf_puts(b, "-> ");
                    avm_val_print(b, e->a[2]);
                } else {
                    avm_buf_puts(b, "-> nothing");
                }
            } else {
                avm_val_print(b, e->a[i]);
            }
        }
    }
    if (e->ctrl.kind != AVM_NIL) {
        avm_buf_puts(b, " [");
        avm_val_print(b, e->ctrl);
        avm_buf_puts(b, "]");
    }
}

void avm_event_json(avm_buf *b, const avm_event *e)
{
    static const char *argnames[AVM_EV_COUNT][3] = {
        [AVM_EV_OBJECT_CREATED] = {"object", "behavior"},
        [AVM_EV_OBJECT_DESTROYED] = {"object"},
        [AVM_EV_OBJECT_CALLED] = {"object", "input", "output"},
        [AVM_EV_MESSAGE_RECEIVED] = {"object", "input"},
        [AVM_EV_OBJECT_MOVED] = {"object", "from", "to"},
        [AVM_EV_EXECUTION_MOVED] = {"to", "from"},
        [AVM_EV_OBJECT_FETCHED] = {"object", "machine"},
        [AVM_EV_OBJECT_TRANSFERRED] = {"object", "from", "to"},
        [AVM_EV_OBJECT_FROZEN] = {"object", "controller"},
        [AVM_EV_FUNCTION_UPDATED] = {"name"},
        [AVM_EV_TRANSACTION_STARTED] = {"tx"},
        [AVM_EV_TRANSACTION_COMMITTED] = {"tx"},
        [AVM_EV_TRANSACTION_ABORTED] = {"tx"},
        [AVM_EV_VAR_CREATED] = {"var", "domain"},
        [AVM_EV_DOMAIN_NARROWED] = {"var", "domain", "result"},
        [AVM_EV_CONSTRAINT_POSTED] = {"constraint", "result"},
        [AVM_EV_VAR_LABELED] = {"var", "value"},
        [AVM_EV_CHOICE_MADE] = {"var", "values"},
        [AVM_EV_REQUIREMENT_ADDED] = {"assertion"},
        [AVM_EV_CONSTRAINTS_SOLVED] = {"outcome", "detail"},
    };
    avm_buf_printf(b, "{\"timestamp\":%llu,\"event\":\"%s\"", (unsigned long long)e->ts,
                   avm_event_name(e->type));
    if (e->type == AVM_EV_ERROR_OCCURRED) {
        avm_error err = {.code = e->ecode};
        memcpy(err.args, e->a, sizeof(err.args));
        avm_buf_puts(b, ",\"error\":");
        avm_error_json(b, &err);
    } else {
        int n = event_nargs(e->type);
        for (int i = 0; i < n; i++) {
            avm_buf_printf(b, ",\"%s\":", argnames[e->type][i]);
            if (e->type == AVM_EV_OBJECT_CALLED && i == 2 && !e->has_output) {
                avm_buf_puts(b, "null");
            } else if (e->type == AVM_EV_OBJECT_CALLED && i == 2) {
                avm_buf_puts(b, "{\"just\":");
                avm_val_json(b, e->a[2]);
                avm_buf_puts(b, "}");
            } else {
                avm_val_json(b, e->a[i]);
            }
        }
    }
    avm_buf_puts(b, ",\"controller\":");
    avm_val_json(b, e->ctrl);
    avm_buf_puts(b, "}");
}

static void event_release(avm_event *e)
{
    avm_val_release(e->ctrl);
    for (int i = 0; i < 3; i++)
        avm_val_release(e->a[i]);
}

/* msgpack for the trace's common cases, written in place: the trace logs every
 * call, so its encoding must cost little. Lists and long strings go through the
 * codec. Both produce the same canonical bytes. */
static inline uint8_t *put_be(uint8_t *p, uint8_t tag, uint64_t v, unsigned n)
{
    *p++ = tag;
    for (unsigned i = 0; i < n; i++)
        *p++ = (uint8_t)(v >> (8 * (n - 1 - i)));
    return p;
}

static inline uint8_t *put_u(uint8_t *p, uint64_t v)
{
    if (v <= 0x7f) {
        *p++ = (uint8_t)v;
        return p;
    }
    if (v <= 0xff)
        return put_be(p, 0xcc, v, 1);
    if (v <= 0xffff)
        return put_be(p, 0xcd, v, 2);
    if (v <= 0xffffffffu)
        return put_be(p, 0xce, v, 4);
    return put_be(p, 0xcf, v, 8);
}

/* Writes v at q when it is a scalar, a short string or an identifier of at most 32
 * bytes (room for 36 bytes must be there); returns the end, or NULL for the codec's
 * cases. */
static inline uint8_t *log_val_fast(uint8_t *q, avm_val v)
{
    uint32_t n;
    switch (v.kind) {
    case AVM_NIL:
        *q++ = 0xc0;
        return q;
    case AVM_BOOL:
        *q++ = v.u.b ? 0xc3 : 0xc2;
        return q;
    case AVM_INT:
        if (v.u.i >= 0)
            return put_u(q, (uint64_t)v.u.i);
        if (v.u.i >= -32) {
            *q++ = (uint8_t)(int8_t)v.u.i;
            return q;
        }
        return NULL;
    case AVM_STR:
        n = v.u.s->len;
        if (n > 31)
            return NULL;
        *q++ = (uint8_t)(0xa0 | n);
        break;
    case AVM_LIST:
    case AVM_SYM:
        return NULL;
    default: /* identifiers: ext 1..4, fixext when the size allows */
        n = v.u.s->len;
        if (n > 32)
            return NULL;
        switch (n) {
        case 1:
            *q++ = 0xd4;
            break;
        case 2:
            *q++ = 0xd5;
            break;
        case 4:
            *q++ = 0xd6;
            break;
        case 8:
            *q++ = 0xd7;
            break;
        case 16:
            *q++ = 0xd8;
            break;
        default:
            *q++ = 0xc7;
            *q++ = (uint8_t)n;
        }
        *q++ = (uint8_t)(v.kind - AVM_OBJID + 1);
    }
    /* 16 bytes at a time: strings are allocated in 16-byte chunks, and the log has
     * room for two chunks per value. */
    for (uint32_t i = 0; i < n; i += 16)
        __builtin_memcpy(q + i, v.u.s->data + i, 16);
    return q + n;
}

static inline void log_val(avm_buf *b, avm_val v)
{
    if (avm_buf_reserve(b, 40) != 0)
        return;
    uint8_t *p = (uint8_t *)b->data + b->len;
    uint8_t *q = log_val_fast(p, v);
    if (q == NULL) {
        avm_val_encode(b, v);
        return;
    }
    b->len += (size_t)(q - p);
    b->data[b->len] = '\0';
}

int vm__log(avm_exec *x, uint64_t ts, int type, bool has_output, int ecode, avm_val ctrl,
            avm_val a0, avm_val a1, avm_val a2)
{
    if (!x->cfg.keep_trace)
        return 0;
    avm_buf *b = &x->tlog;
    size_t mark = b->len;
    /* One reservation covers the header and four short values: the common event
     * is written with no further checks. */
    if ((b->len + 200 > b->cap || b->err) && avm_buf_reserve(b, 200) != 0)
        goto oom;
    uint8_t *p = (uint8_t *)b->data + b->len, *q = p;
    *q++ = 0x98; /* array of 8 */
    q = put_u(q, ts);
    q = put_u(q, (uint64_t)type);
    *q++ = has_output ? 0xc3 : 0xc2;
    q = put_u(q, (uint64_t)ecode);
    avm_val vals[4] = {ctrl, a0, a1, a2};
    int i = 0;
    for (; i < 4; i++) {
        uint8_t *r = log_val_fast(q, vals[i]);
        if (r == NULL)
            break;
        q = r;
    }
    b->len += (size_t)(q - p);
    b->data[b->len] = '\0';
    for (; i < 4; i++)
        log_val(b, vals[i]);
    if (b->err != 0)
        goto oom;
    x->tcount++;
    return 0;
oom:
    /* Keep the log whole: drop the partial event. */
    b->len = mark;
    b->err = 0;
    if (b->data != NULL)
        b->data[mark] = '\0';
    return AVM_ENOMEM;
}

int vm__log_decode(avm_mp_reader *r, avm_event *e)
{
    uint32_t n;
    uint64_t ts, type, ecode;
    memset(e, 0, sizeof(*e));
    int rv = avm_mp_get_array(r, &n);
    if (rv == 0 && n != 8)
        rv = AVM_EMALFORMED;
    if (rv == 0)
        rv = avm_mp_get_uint(r, &ts);
    if (rv == 0)
        rv = avm_mp_get_uint(r, &type);
    if (rv == 0)
        rv = avm_mp_get_bool(r, &e->has_output);
    if (rv == 0)
        rv = avm_mp_get_uint(r, &ecode);
    if (rv == 0 &&
        ((type >= AVM_EV_COUNT && (type < AVM_MSC_CALL || type > AVM_MSC_RUNTIME)) ||
         ecode >= AVM_ERR_COUNT))
        rv = AVM_EMALFORMED;
    if (rv != 0)
        return rv;
    e->ts = ts;
    e->type = (uint8_t)type;
    e->ecode = (uint16_t)ecode;
    avm_val *f[] = {&e->ctrl, &e->a[0], &e->a[1], &e->a[2]};
    for (int k = 0; k < 4 && rv == 0; k++)
        rv = avm_mp_get_val(r, f[k]);
    if (rv != 0) {
        for (int k = 0; k < 4; k++) {
            avm_val_release(*f[k]);
            *f[k] = avm_nil();
        }
    }
    return rv;
}

int vm__event_ctrl(avm_exec *x, int type, avm_val ctrl, avm_val a0, avm_val a1,
                   avm_val a2, bool increment)
{
    int rv = vm__log(x, x->counter, type, false, 0, ctrl, a0, a1, a2);
    if (increment)
        x->counter++;
    avm_val_release(ctrl);
    avm_val_release(a0);
    avm_val_release(a1);
    avm_val_release(a2);
    return rv;
}

int vm__event(avm_exec *x, int type, avm_val a0, avm_val a1, avm_val a2)
{
    return vm__event_ctrl(x, type, vm__ref(x->txctrl), a0, a1, a2, true);
}

/* Source position of the current instruction of the innermost frame. */
static void current_pos(const avm_exec *x, avm_val *source, uint32_t *line, uint32_t *col)
{
    *source = avm_nil();
    *line = *col = 0;
    if (x->frames.n == 0)
        return;
    const vm_frame *fr = &x->frames.v[x->frames.n - 1];
    const avm_func *f = &fr->mod->funcs[fr->fn];
    for (uint32_t i = 0; i < f->nlines; i++) {
        if (f->lines[i].pc > fr->pc)
            break;
        *line = f->lines[i].line;
        *col = f->lines[i].col;
    }
    *source = vm__ref(fr->mod->source);
}

int vm__fail(avm_exec *x, avm_error_code c, avm_val a0, avm_val a1, avm_val a2)
{
    avm_error_set(&x->error, c, a0, a1, a2);
    current_pos(x, &x->error.source, &x->error.line, &x->error.col);
    return VM_FAIL;
}

int vm__eval_error(avm_exec *x, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    avm_val s;
    if (avm_cstr(AVM_STR, msg, &s) != 0)
        s = avm_nil();
    return vm__fail(x, AVM_ERR_EVAL, s, avm_nil(), avm_nil());
}

int vm__failf(avm_exec *x, avm_error_code c, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    avm_val s;
    if (avm_cstr(AVM_STR, msg, &s) != 0)
        return vm__oom(x);
    return vm__fail(x, c, s, avm_nil(), avm_nil());
}

int vm__store_error(avm_exec *x, int rv)
{
    avm_store *s = x->plat->store;
    if (rv == AVM_EUNREACHABLE) {
        /* The object, or the controller deciding a commit, lives on a machine that
         * cannot be reached: the specification's MachineError (the store names the
         * machine, or a controller that cannot commit: ControllerError). */
        avm_val m = s->ops->last_machine ? s->ops->last_machine(s) : avm_nil();
        /* A replicated controller with no leader that can commit: ControllerError. */
        if (m.kind == AVM_CTRLID)
            return vm__fail(x, AVM_ERR_CONTROLLER_UNREACHABLE, vm__ref(m), avm_nil(),
                            avm_nil());
        return vm__fail(x, AVM_ERR_MACHINE_UNREACHABLE, vm__ref(m), avm_nil(), avm_nil());
    }
    const char *why = s->ops->last_error ? s->ops->last_error(s) : NULL;
    char msg[600];
    snprintf(msg, sizeof(msg), "store: %s", why && *why ? why : avm_strerror(rv));
    avm_val v;
    if (avm_cstr(AVM_STR, msg, &v) != 0)
        v = avm_nil();
    return vm__fail(x, AVM_ERR_STORE_FAILURE, v, avm_nil(), avm_nil());
}

int avm_exec_set_checkpoint(avm_exec *x, const char *id)
{
    avm_val v = avm_nil();
    if (id != NULL && avm_cstr(AVM_STR, id, &v) != 0)
        return AVM_ENOMEM;
    avm_val_release(x->ckpt_id);
    x->ckpt_id = v;
    return 0;
}

int avm_exec_set_bundle(avm_exec *x, const char *name)
{
    if (name != NULL && name[0] == '\0')
        return AVM_EINVAL;
    if (x->tx.n > 0)
        return AVM_ESTATE;
    avm_val v = avm_nil();
    if (name != NULL && avm_cstr(AVM_STR, name, &v) != 0)
        return AVM_ENOMEM;
    avm_val_release(x->bundle);
    x->bundle = v;
    return 0;
}

const char *avm_exec_bundle(const avm_exec *x)
{
    return x->bundle.kind == AVM_STR ? x->bundle.u.s->data : NULL;
}

int avm_exec_set_principal(avm_exec *x, const char *name)
{
    if (name != NULL && name[0] == '\0')
        return AVM_EINVAL;
    avm_val v = avm_nil();
    if (name != NULL && avm_cstr(AVM_STR, name, &v) != 0)
        return AVM_ENOMEM;
    avm_val_release(x->principal);
    x->principal = v;
    return 0;
}

const char *avm_exec_principal(const avm_exec *x)
{
    return x->principal.kind == AVM_STR ? x->principal.u.s->data : NULL;
}

int vm__seal(avm_exec *x, avm_val *l)
{
    if (avm_list_seal(*l) <= AVM_MAX_DEPTH)
        return VM_OK;
    avm_val_release(*l);
    *l = avm_nil();
    return vm__too_deep(x);
}

int vm__too_deep(avm_exec *x)
{
    return vm__eval_error(x, "a value would nest deeper than %d lists", AVM_MAX_DEPTH);
}

int vm__oom(avm_exec *x)
{
    return vm__eval_error(x, "out of memory");
}

/* Frames. */

int vm__ensure_stack(avm_exec *x, size_t need)
{
    if (need <= x->stack_cap)
        return 0;
    if (need > x->cfg.max_stack)
        return AVM_ETOOBIG;
    size_t ncap = x->stack_cap ? x->stack_cap * 2 : 256;
    while (ncap < need)
        ncap *= 2;
    avm_val *p = realloc(x->stack, ncap * sizeof(avm_val));
    if (p == NULL)
        return AVM_ENOMEM;
    x->stack = p;
    x->stack_cap = ncap;
    return 0;
}

int vm__push_frame(avm_exec *x, avm_module *mod, uint32_t fn, uint32_t argc, uint8_t kind)
{
    const avm_func *f = &mod->funcs[fn];
    if (x->frames.n >= x->cfg.max_frames)
        return vm__eval_error(x, "call depth limit (%u frames) exceeded calling '%s'",
                              x->cfg.max_frames, f->name.u.s->data);
    size_t need = x->sp + (f->nlocals - argc) + f->max_stack + 1;
    int rv = need <= x->stack_cap ? 0 : vm__ensure_stack(x, need);
    if (rv != 0)
        return rv == AVM_ETOOBIG
                   ? vm__eval_error(x, "value stack limit exceeded calling '%s'",
                                    f->name.u.s->data)
                   : vm__oom(x);
    vm_frame *fr = VEC_SLOT(x->frames);
    if (fr == NULL)
        return vm__oom(x);
    fr->mod = mod;
    fr->fn = fn;
    fr->pc = 0;
    fr->base = (uint32_t)(x->sp - argc);
    fr->kind = kind;
    avm_module_retain(mod);
    for (uint32_t i = argc; i < f->nlocals; i++)
        x->stack[x->sp++] = avm_nil();
    return VM_OK;
}

/* Pops the innermost frame, releasing its values. */
static void pop_frame(avm_exec *x)
{
    vm_frame *fr = &x->frames.v[--x->frames.n];
    while (x->sp > fr->base)
        avm_val_release(x->stack[--x->sp]);
    avm_module_release(fr->mod);
}

/* Primitives. */

static int want(avm_exec *x, int prim, avm_val v, avm_kind k)
{
    if (v.kind == k)
        return 0;
    vm__eval_error(x, "'%s' expects %s, got %s", avm_prim_table[prim].name,
                   avm_kind_name(k), avm_kind_name(v.kind));
    return -1;
}

static int list_append_vals(avm_exec *x, avm_val a, avm_val b, avm_val *out)
{
    size_t na = a.u.l->len, nb = b.u.l->len;
    if (avm_list_new(na + nb, out) != 0)
        return vm__oom(x);
    for (size_t i = 0; i < na; i++)
        out->u.l->items[i] = vm__ref(a.u.l->items[i]);
    for (size_t i = 0; i < nb; i++)
        out->u.l->items[na + i] = vm__ref(b.u.l->items[i]);
    out->u.l->depth = a.u.l->depth > b.u.l->depth ? a.u.l->depth : b.u.l->depth;
    return VM_OK;
}

static bool is_entry(avm_val e, avm_val key)
{
    return e.kind == AVM_LIST && e.u.l->len >= 1 && avm_val_eq(e.u.l->items[0], key);
}

static int prim(avm_exec *x, int p, avm_val *a, int argc, avm_val *out)
{
    *out = avm_nil();
    /* Symbolic values (choose, default mode only) stay symbolic through arithmetic
     * and comparisons; primitives that need their value now refuse them. */
    for (int i = 0; i < argc; i++) {
        if (a[i].kind == AVM_SYM) {
            int rv = vm__nd_prim(x, p, avm_prim_table[p].name, a, argc, out);
            if (rv >= 0)
                return rv;
            break;
        }
    }
    switch (p) {
    case AVM_PRIM_ALL:
    case AVM_PRIM_ANY: {
        bool all = p == AVM_PRIM_ALL, r = all;
        for (int i = 0; i < argc; i++)
            if (avm_truthy(a[i]) != all)
                r = !all;
        *out = avm_bool(r);
        return VM_OK;
    }
    case AVM_PRIM_ADD:
    case AVM_PRIM_SUB:
    case AVM_PRIM_MUL:
    case AVM_PRIM_DIV:
    case AVM_PRIM_MOD:
    case AVM_PRIM_MIN:
    case AVM_PRIM_MAX: {
        if (want(x, p, a[0], AVM_INT) || want(x, p, a[1], AVM_INT))
            return VM_FAIL;
        int64_t l = a[0].u.i, r = a[1].u.i, v = 0;
        bool ovf = false;
        switch (p) {
        case AVM_PRIM_ADD:
            ovf = __builtin_add_overflow(l, r, &v);
            break;
        case AVM_PRIM_SUB:
            ovf = __builtin_sub_overflow(l, r, &v);
            break;
        case AVM_PRIM_MUL:
            ovf = __builtin_mul_overflow(l, r, &v);
            break;
        case AVM_PRIM_DIV:
        case AVM_PRIM_MOD:
            if (r == 0)
                return vm__eval_error(x, "'%s': division by zero",
                                      avm_prim_table[p].name);
            if (l == INT64_MIN && r == -1) {
                ovf = true;
                break;
            }
            v = p == AVM_PRIM_DIV ? l / r : l % r;
            break;
        case AVM_PRIM_MIN:
            v = l < r ? l : r;
            break;
        default:
            v = l > r ? l : r;
        }
        if (ovf)
            return vm__eval_error(x, "'%s': integer overflow", avm_prim_table[p].name);
        *out = avm_int(v);
        return VM_OK;
    }
    case AVM_PRIM_NEG:
    case AVM_PRIM_ABS:
        if (want(x, p, a[0], AVM_INT))
            return VM_FAIL;
        if (a[0].u.i == INT64_MIN)
            return vm__eval_error(x, "'%s': integer overflow", avm_prim_table[p].name);
        *out = avm_int(p == AVM_PRIM_NEG || a[0].u.i < 0 ? -a[0].u.i : a[0].u.i);
        return VM_OK;
    case AVM_PRIM_LT:
    case AVM_PRIM_LE:
    case AVM_PRIM_GT:
    case AVM_PRIM_GE: {
        if (!((a[0].kind == AVM_INT && a[1].kind == AVM_INT) ||
              (a[0].kind == AVM_STR && a[1].kind == AVM_STR)))
            return vm__eval_error(x,
                                  "'%s' compares two ints or two strings, got %s and %s",
                                  avm_prim_table[p].name, avm_kind_name(a[0].kind),
                                  avm_kind_name(a[1].kind));
        int c = avm_val_cmp(a[0], a[1]);
        bool r = p == AVM_PRIM_LT   ? c < 0
                 : p == AVM_PRIM_LE ? c <= 0
                 : p == AVM_PRIM_GT ? c > 0
                                    : c >= 0;
        *out = avm_bool(r);
        return VM_OK;
    }
    case AVM_PRIM_EQ:
        *out = avm_bool(avm_val_eq(a[0], a[1]));
        return VM_OK;
    case AVM_PRIM_NE:
        *out = avm_bool(!avm_val_eq(a[0], a[1]));
        return VM_OK;
    case AVM_PRIM_NOT:
        *out = avm_bool(!avm_truthy(a[0]));
        return VM_OK;
    case AVM_PRIM_CONS: {
        if (want(x, p, a[1], AVM_LIST))
            return VM_FAIL;
        size_t n = a[1].u.l->len;
        if (avm_list_new(n + 1, out) != 0)
            return vm__oom(x);
        out->u.l->items[0] = vm__ref(a[0]);
        for (size_t i = 0; i < n; i++)
            out->u.l->items[i + 1] = vm__ref(a[1].u.l->items[i]);
        uint32_t d = avm_val_depth(a[0]) + 1;
        out->u.l->depth = d > a[1].u.l->depth ? d : a[1].u.l->depth;
        return VM_OK;
    }
    case AVM_PRIM_HEAD:
    case AVM_PRIM_TAIL:
        if (want(x, p, a[0], AVM_LIST))
            return VM_FAIL;
        if (a[0].u.l->len == 0)
            return vm__eval_error(x, "'%s' of the empty list", avm_prim_table[p].name);
        if (p == AVM_PRIM_HEAD) {
            *out = vm__ref(a[0].u.l->items[0]);
            return VM_OK;
        }
        if (avm_list_new(a[0].u.l->len - 1, out) != 0)
            return vm__oom(x);
        for (size_t i = 1; i < a[0].u.l->len; i++)
            out->u.l->items[i - 1] = vm__ref(a[0].u.l->items[i]);
        avm_list_seal(*out);
        return VM_OK;
    case AVM_PRIM_NTH:
        if (want(x, p, a[0], AVM_LIST) || want(x, p, a[1], AVM_INT))
            return VM_FAIL;
        if (a[1].u.i < 0 || (uint64_t)a[1].u.i >= a[0].u.l->len)
            return vm__eval_error(x, "'nth': index %lld out of range (length %u)",
                                  (long long)a[1].u.i, a[0].u.l->len);
        *out = vm__ref(a[0].u.l->items[a[1].u.i]);
        return VM_OK;
    case AVM_PRIM_LENGTH:
        if (a[0].kind == AVM_LIST)
            *out = avm_int(a[0].u.l->len);
        else if (a[0].kind == AVM_STR)
            *out = avm_int(a[0].u.s->len);
        else
            return vm__eval_error(x, "'length' expects a list or a string, got %s",
                                  avm_kind_name(a[0].kind));
        return VM_OK;
    case AVM_PRIM_APPEND:
        if (want(x, p, a[0], AVM_LIST) || want(x, p, a[1], AVM_LIST))
            return VM_FAIL;
        return list_append_vals(x, a[0], a[1], out);
    case AVM_PRIM_REVERSE: {
        if (want(x, p, a[0], AVM_LIST))
            return VM_FAIL;
        size_t n = a[0].u.l->len;
        if (avm_list_new(n, out) != 0)
            return vm__oom(x);
        for (size_t i = 0; i < n; i++)
            out->u.l->items[i] = vm__ref(a[0].u.l->items[n - 1 - i]);
        out->u.l->depth = a[0].u.l->depth;
        return VM_OK;
    }
    case AVM_PRIM_IS_NULL:
        *out = avm_bool(a[0].kind == AVM_NIL ||
                        (a[0].kind == AVM_LIST && a[0].u.l->len == 0));
        return VM_OK;
    case AVM_PRIM_IS_NIL:
        *out = avm_bool(a[0].kind == AVM_NIL);
        return VM_OK;
    case AVM_PRIM_IS_INT:
        *out = avm_bool(a[0].kind == AVM_INT);
        return VM_OK;
    case AVM_PRIM_IS_STR:
        *out = avm_bool(a[0].kind == AVM_STR);
        return VM_OK;
    case AVM_PRIM_IS_LIST:
        *out = avm_bool(a[0].kind == AVM_LIST);
        return VM_OK;
    case AVM_PRIM_IS_BOOL:
        *out = avm_bool(a[0].kind == AVM_BOOL);
        return VM_OK;
    case AVM_PRIM_GET:
        if (want(x, p, a[0], AVM_LIST))
            return VM_FAIL;
        for (size_t i = 0; i < a[0].u.l->len; i++) {
            avm_val e = a[0].u.l->items[i];
            if (is_entry(e, a[1])) {
                *out = e.u.l->len >= 2 ? vm__ref(e.u.l->items[1]) : avm_nil();
                return VM_OK;
            }
        }
        return VM_OK;
    case AVM_PRIM_PUT: {
        if (want(x, p, a[0], AVM_LIST))
            return VM_FAIL;
        size_t n = a[0].u.l->len, at = n;
        for (size_t i = 0; i < n; i++)
            if (is_entry(a[0].u.l->items[i], a[1])) {
                at = i;
                break;
            }
        avm_val pair;
        if (avm_list_new(2, &pair) != 0)
            return vm__oom(x);
        pair.u.l->items[0] = vm__ref(a[1]);
        pair.u.l->items[1] = vm__ref(a[2]);
        if (avm_list_new(at == n ? n + 1 : n, out) != 0) {
            avm_val_release(pair);
            return vm__oom(x);
        }
        avm_list_seal(pair);
        for (size_t i = 0; i < n; i++)
            out->u.l->items[i] = i == at ? pair : vm__ref(a[0].u.l->items[i]);
        if (at == n)
            out->u.l->items[n] = pair;
        avm_list_seal(*out);
        return VM_OK;
    }
    case AVM_PRIM_STR: {
        avm_buf b;
        avm_buf_init(&b);
        for (int i = 0; i < argc; i++) {
            if (a[i].kind == AVM_STR)
                avm_buf_put(&b, a[i].u.s->data, a[i].u.s->len);
            else
                avm_val_print(&b, a[i]);
        }
        int rv = b.err ? b.err : avm_str_new(AVM_STR, b.data ? b.data : "", b.len, out);
        avm_buf_free(&b);
        if (rv != 0)
            return rv == AVM_ETOOBIG ? vm__eval_error(x, "'str': string too long")
                                     : vm__oom(x);
        return VM_OK;
    }
    case AVM_PRIM_SUBSTR: {
        if (want(x, p, a[0], AVM_STR) || want(x, p, a[1], AVM_INT) ||
            want(x, p, a[2], AVM_INT))
            return VM_FAIL;
        int64_t s = a[1].u.i, e = a[2].u.i, len = a[0].u.s->len;
        if (s < 0 || e < s || e > len)
            return vm__eval_error(x, "'substring': range %lld..%lld outside 0..%lld",
                                  (long long)s, (long long)e, (long long)len);
        if (avm_str_new(AVM_STR, a[0].u.s->data + s, (size_t)(e - s), out) != 0)
            return vm__oom(x);
        return VM_OK;
    }
    case AVM_PRIM_TO_INT: {
        if (want(x, p, a[0], AVM_STR))
            return VM_FAIL;
        const char *s = a[0].u.s->data;
        char *end;
        if (*s == '\0' || (*s != '-' && (*s < '0' || *s > '9')))
            return VM_OK;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (*end == '\0' && errno == 0 && end != s)
            *out = avm_int(v);
        return VM_OK;
    }
    case AVM_PRIM_MK_OBJID:
    case AVM_PRIM_MK_CTRLID:
    case AVM_PRIM_MK_MACHID:
    case AVM_PRIM_MK_TXID: {
        if (want(x, p, a[0], AVM_STR))
            return VM_FAIL;
        avm_kind k = p == AVM_PRIM_MK_OBJID    ? AVM_OBJID
                     : p == AVM_PRIM_MK_CTRLID ? AVM_CTRLID
                     : p == AVM_PRIM_MK_MACHID ? AVM_MACHID
                                               : AVM_TXID;
        if (avm_str_new(k, a[0].u.s->data, a[0].u.s->len, out) != 0)
            return vm__oom(x);
        return VM_OK;
    }
    case AVM_PRIM_ID_NAME:
        if (!AVM_KIND_IS_ID(a[0].kind))
            return vm__eval_error(x, "'id-name' expects an identifier, got %s",
                                  avm_kind_name(a[0].kind));
        if (avm_str_new(AVM_STR, a[0].u.s->data, a[0].u.s->len, out) != 0)
            return vm__oom(x);
        return VM_OK;
    case AVM_PRIM_ERROR: {
        avm_buf b;
        avm_buf_init(&b);
        if (a[0].kind == AVM_STR)
            avm_buf_put(&b, a[0].u.s->data, a[0].u.s->len);
        else
            avm_val_print(&b, a[0]);
        vm__eval_error(x, "%s", avm_buf_cstr(&b));
        avm_buf_free(&b);
        return VM_FAIL;
    }
    }
    return vm__eval_error(x, "unknown primitive %d", p);
}

/* When an EvalError happens inside a registered pure function, callPure returns
 * nothing: unwind to the FR_PURE boundary and push nil. Returns true if it did. */
static bool pure_recover(avm_exec *x)
{
    if (x->error.code != AVM_ERR_EVAL)
        return false;
    size_t i = x->frames.n;
    while (i > 0 && x->frames.v[i - 1].kind == FR_PLAIN)
        i--;
    if (i == 0 || x->frames.v[i - 1].kind != FR_PURE)
        return false;
    while (x->frames.n >= i)
        pop_frame(x);
    avm_error_clear(&x->error);
    x->stack[x->sp++] = avm_nil();
    return true;
}

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static inline int32_t rd32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static avm_run_status fail_exec(avm_exec *x)
{
    /* Decision: in default mode the failure is in the trace too (ErrorOccurred),
     * so the message sequence chart shows where the execution ended. */
    if (x->cfg.mode == AVM_MODE_DEFAULT) {
        vm__log(x, x->counter, AVM_EV_ERROR_OCCURRED, false, x->error.code, x->txctrl,
                x->error.args[0], x->error.args[1], x->error.args[2]);
        x->counter++;
    }
    while (x->frames.n > 0)
        pop_frame(x);
    /* The calls' saved contexts and the open transactions go with their frames (a
     * failed state has none, so that it encodes and decodes like any other). */
    vm__tx_clear(x);
    while (x->ctxs.n > 0) {
        vm_ctx *c = &x->ctxs.v[--x->ctxs.n];
        avm_val_release(c->self);
        avm_val_release(c->input);
        avm_val_release(c->sender);
        avm_val_release(c->machine);
        avm_val_release(c->oid);
        avm_val_release(c->inp);
    }
    x->status = AVM_RUN_FAILED;
    return x->status;
}

/* The dispatch loop: threaded code (one indirect jump per instruction, GCC's and
 * clang's labels as values), with the operand stack's top in a local (`sp`): it is
 * written back to x->sp (SYNC) before anything outside the loop can look at the
 * stack, and read again (after next_frame) when a call may have moved it. The
 * instruction budget is counted at every instruction and checked at jumps, calls,
 * returns and AVM instructions, so a run stops within one straight-line stretch of
 * code past its budget. */
avm_run_status avm_exec_run(avm_exec *x, uint64_t budget)
{
    if (x->status == AVM_RUN_DONE || x->status == AVM_RUN_FAILED)
        return x->status;
    if (!x->started)
        return x->status;
    x->status = AVM_RUN_YIELD;
    x->moved = false;
    x->fetch_wait = false;
    uint64_t limit = budget ? budget : UINT64_MAX;
    uint64_t done = 0;

    static const void *const dispatch[256] = {
        [0] = &&op_invalid,      [OP_CONST] = &&op_const,
        [OP_NIL] = &&op_nil,     [OP_LOAD] = &&op_load,
        [OP_STORE] = &&op_store, [OP_POP] = &&op_pop,
        [OP_JMP] = &&op_jmp,     [OP_JMPF] = &&op_jmpf,
        [OP_CALL] = &&op_call,   [OP_TAILCALL] = &&op_tailcall,
        [OP_RET] = &&op_ret,     [OP_PRIM] = &&op_prim,
        [OP_AVM] = &&op_avm,     [OP_LIST] = &&op_list,
        [OP_DUP] = &&op_dup,     [AVM_OP_MAX + 1 ... 255] = &&op_invalid,
    };

    vm_frame *fr;
    const avm_func *f;
    const uint8_t *code;
    uint32_t pc;
    avm_val *locals, *sp;
    int rv;

#define SYNC() (x->sp = (size_t)(sp - x->stack))
#define NEXT()                                                                           \
    do {                                                                                 \
        done++;                                                                          \
        goto *dispatch[code[pc]];                                                        \
    } while (0)
/* Stops before the current instruction (already counted, so uncounted again)
 * once the budget is exceeded; the first instruction of a run always executes. */
#define BUDGET()                                                                         \
    do {                                                                                 \
        if (done > limit) {                                                              \
            done--;                                                                      \
            fr->pc = pc;                                                                 \
            SYNC();                                                                      \
            goto out;                                                                    \
        }                                                                                \
    } while (0)

next_frame:
    fr = &x->frames.v[x->frames.n - 1];
    f = &fr->mod->funcs[fr->fn];
    code = f->code;
    pc = fr->pc;
    locals = x->stack + fr->base;
    sp = x->stack + x->sp;
    rv = VM_OK;
    NEXT();

op_const : {
    avm_val v = f->consts[rd16(code + pc + 1)];
    avm_val_retain(v);
    *sp++ = v;
    pc += 3;
    NEXT();
}
op_nil:
    *sp++ = avm_nil();
    pc += 1;
    NEXT();
op_load : {
    avm_val v = locals[rd16(code + pc + 1)];
    avm_val_retain(v);
    *sp++ = v;
    pc += 3;
    NEXT();
}
op_store : {
    uint16_t sl = rd16(code + pc + 1);
    avm_val_release(locals[sl]);
    locals[sl] = *--sp;
    pc += 3;
    NEXT();
}
op_pop:
    avm_val_release(*--sp);
    pc += 1;
    NEXT();
op_dup : {
    avm_val v = sp[-1];
    avm_val_retain(v);
    *sp++ = v;
    pc += 1;
    NEXT();
}
op_jmp:
    BUDGET();
    pc = (uint32_t)((int64_t)pc + 5 + rd32(code + pc + 1));
    NEXT();
op_jmpf : {
    BUDGET();
    if (sp[-1].kind == AVM_SYM) {
        fr->pc = pc;
        SYNC();
        rv = vm__nd_unsettled(x, sp[-1], "a branch (if, when, unless, cond, and, or)");
        goto failed;
    }
    avm_val v = *--sp;
    bool t = avm_truthy(v);
    avm_val_release(v);
    pc = t ? pc + 5 : (uint32_t)((int64_t)pc + 5 + rd32(code + pc + 1));
    NEXT();
}
op_list : {
    uint16_t n = rd16(code + pc + 1);
    avm_val l;
    if (avm_list_new(n, &l) != 0) {
        fr->pc = pc;
        SYNC();
        rv = vm__oom(x);
        goto failed;
    }
    sp -= n;
    memcpy(l.u.l->items, sp, n * sizeof(avm_val));
    *sp++ = l;
    if (n > 0 && avm_list_seal(l) > AVM_MAX_DEPTH) {
        fr->pc = pc;
        SYNC();
        rv = vm__too_deep(x);
        goto failed;
    }
    pc += 3;
    NEXT();
}
op_prim : {
    uint8_t p = code[pc + 1], argc = code[pc + 2];
    avm_val *args = sp - argc;
    /* Integer arithmetic and comparisons, the loops' bread and butter: no call,
     * nothing to release, the result written in place. Overflow and everything
     * else take the general path. */
    if (argc == 2 && args[0].kind == AVM_INT && args[1].kind == AVM_INT) {
        int64_t l = args[0].u.i, r = args[1].u.i, v = 0;
        int b = -1;
        switch (p) {
        case AVM_PRIM_ADD:
            if (__builtin_add_overflow(l, r, &v))
                goto prim_slow;
            break;
        case AVM_PRIM_SUB:
            if (__builtin_sub_overflow(l, r, &v))
                goto prim_slow;
            break;
        case AVM_PRIM_LT:
            b = l < r;
            break;
        case AVM_PRIM_LE:
            b = l <= r;
            break;
        case AVM_PRIM_GT:
            b = l > r;
            break;
        case AVM_PRIM_GE:
            b = l >= r;
            break;
        case AVM_PRIM_EQ:
            b = l == r;
            break;
        case AVM_PRIM_NE:
            b = l != r;
            break;
        default:
            goto prim_slow;
        }
        if (b < 0) {
            args[0].u.i = v;
        } else {
            args[0].kind = AVM_BOOL;
            args[0].u.i = 0;
            args[0].u.b = b;
        }
        sp--;
        pc += 3;
        NEXT();
    }
prim_slow:;
    avm_val r;
    fr->pc = pc;
    SYNC();
    rv = prim(x, p, args, argc, &r);
    if (rv != VM_OK)
        goto failed;
    if (avm_val_depth(r) > AVM_MAX_DEPTH) {
        avm_val_release(r);
        rv = vm__too_deep(x);
        goto failed;
    }
    for (int i = 0; i < argc; i++)
        avm_val_release(args[i]);
    sp -= argc;
    *sp++ = r;
    pc += 3;
    NEXT();
}
op_call : {
    BUDGET();
    uint16_t fn = rd16(code + pc + 1);
    uint8_t argc = code[pc + 3];
    fr->pc = pc + 4;
    SYNC();
    rv = vm__push_frame(x, fr->mod, fn, argc, FR_PLAIN);
    if (rv != VM_OK) {
        fr->pc = pc;
        goto failed;
    }
    goto next_frame;
}
op_tailcall : {
    BUDGET();
    uint16_t fn = rd16(code + pc + 1);
    uint8_t argc = code[pc + 3];
    const avm_func *g = &fr->mod->funcs[fn];
    /* Move the arguments down over this frame's values. */
    avm_val *args = sp - argc;
    for (avm_val *v = locals; v < args; v++)
        avm_val_release(*v);
    for (uint8_t i = 0; i < argc; i++)
        locals[i] = args[i];
    x->sp = fr->base + argc;
    size_t need = x->sp + (g->nlocals - argc) + g->max_stack + 1;
    int e = need <= x->stack_cap ? 0 : vm__ensure_stack(x, need);
    if (e != 0) {
        fr->pc = pc;
        rv = e == AVM_ETOOBIG ? vm__eval_error(x, "value stack limit exceeded")
                              : vm__oom(x);
        goto failed;
    }
    for (uint32_t i = argc; i < g->nlocals; i++)
        x->stack[x->sp++] = avm_nil();
    fr->fn = fn;
    fr->pc = 0;
    goto next_frame;
}
op_ret : {
    avm_val v = *--sp;
    uint8_t kind = fr->kind;
    SYNC();
    if (kind == FR_PLAIN || kind == FR_PURE) {
        /* A pure function's boundary only hands back the value. */
        pop_frame(x);
        x->stack[x->sp++] = v;
        goto next_frame;
    }
    if (kind == FR_BEHAVIOR && v.kind != AVM_LIST) {
        /* Reported while the behaviour's frame still names it. */
        avm_val_release(v);
        fr->pc = pc;
        rv = vm__eval_error(x,
                            "behaviour '%s' returned %s; a behaviour returns a list "
                            "of outputs",
                            f->name.u.s->data, avm_kind_name(v.kind));
        goto failed;
    }
    pop_frame(x);
    rv = vm__boundary_return(x, kind, v);
    if (rv != VM_OK)
        goto failed;
    if (x->status == AVM_RUN_DONE)
        goto out;
    if (x->moved) {
        x->status = AVM_RUN_MOVED; /* the caller continues on its machine */
        goto out;
    }
    goto next_frame;
}
op_avm : {
    BUDGET();
    uint8_t ins = code[pc + 1], argc = code[pc + 2];
    avm_val *args = sp - argc;
    avm_val r = avm_nil();
    fr->pc = pc + 3; /* a frame pushed by the instruction returns here */
    SYNC();
    x->mark_log = x->tlog.len;
    x->mark_tcount = x->tcount;
    x->mark_mcount = x->mcount;
    x->mark_counter = x->counter;
    x->mark_lamport = x->lamport;
    rv = vm__instr(x, ins, args, argc, &r);
    if (rv == VM_BLOCK) {
        if (x->undo_log) {
            x->undo_log = false;
            x->tlog.len = x->mark_log;
            x->tcount = x->mark_tcount;
            x->mcount = x->mark_mcount;
            x->counter = x->mark_counter;
            x->lamport = x->mark_lamport;
        }
        x->frames.v[x->frames.n - 1].pc = pc;
        x->status = AVM_RUN_BLOCKED;
        goto out;
    }
    if (rv == VM_FAIL) {
        x->frames.v[x->frames.n - 1].pc = pc;
        goto failed;
    }
    if (rv == VM_ENTERED) {
        if (x->moved) {
            x->status = AVM_RUN_MOVED;
            goto out; /* the callee's frame starts on its machine */
        }
        goto next_frame; /* arguments were consumed by the instruction */
    }
    /* The instruction left the stack where it was. */
    for (int i = 0; i < argc; i++)
        avm_val_release(args[i]);
    sp -= argc;
    *sp++ = r;
    pc += 3;
    if (x->moved) {
        fr->pc = pc;
        SYNC();
        x->status = AVM_RUN_MOVED;
        goto out;
    }
    NEXT();
}
op_invalid:
    fr->pc = pc;
    SYNC();
    rv = vm__eval_error(x, "invalid opcode %u", code[pc]);
    goto failed;

failed:
    if (pure_recover(x))
        goto next_frame;
    x->steps += done;
    return fail_exec(x);
out:
    x->steps += done;
    return x->status;
#undef NEXT
#undef BUDGET
#undef SYNC
}

/* The public API. */

avm_exec *avm_exec_new(const avm_platform *p, const avm_exec_config *cfg)
{
    avm_exec *x = calloc(1, sizeof(*x));
    if (x == NULL)
        return NULL;
    x->plat = p;
    if (cfg)
        x->cfg = *cfg;
    if (x->cfg.max_frames == 0)
        x->cfg.max_frames = DEFAULT_MAX_FRAMES;
    if (x->cfg.max_stack == 0)
        x->cfg.max_stack = DEFAULT_MAX_STACK;
    x->status = AVM_RUN_YIELD;
    return x;
}

static void pairs_release(avm_pair *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        avm_val_release(v[i].a);
        avm_val_release(v[i].b);
    }
}

void vm__tx_clear(avm_exec *x)
{
    if (x->snap != NULL) {
        avm_store *s = x->plat->store;
        s->ops->snapshot_release(s, x->snap);
        x->snap = NULL;
    }
    for (size_t i = 0; i < x->tx.n; i++) {
        avm_val_release(x->tx.v[i].txid);
        avm_val_release(x->tx.v[i].ctrl_before);
        avm_val_release(x->tx.v[i].set_before);
    }
    x->tx.n = 0;
    x->tx_detached = false;
    avm_val_release(x->problem);
    x->problem = avm_nil();
    avm_val_release(x->txctrl);
    x->txctrl = avm_nil();
    avm_val_release(x->txset);
    x->txset = avm_nil();
    for (size_t i = 0; i < x->reads.n; i++)
        avm_val_release(x->reads.v[i].oid);
    x->reads.n = 0;
    for (size_t i = 0; i < x->creates.n; i++) {
        avm_create *c = &x->creates.v[i];
        avm_val_release(c->oid);
        avm_val_release(c->beh.name);
        if (c->beh.mod)
            avm_module_release(c->beh.mod);
        avm_val_release(c->meta.machine);
        avm_val_release(c->meta.creating);
        avm_val_release(c->meta.current);
    }
    x->creates.n = 0;
    pairs_release(x->transfers.v, x->transfers.n);
    x->transfers.n = 0;
    pairs_release(x->states.v, x->states.n);
    x->states.n = 0;
    for (size_t i = 0; i < x->destroys.n; i++)
        avm_val_release(x->destroys.v[i]);
    x->destroys.n = 0;
    pairs_release(x->writes.v, x->writes.n);
    x->writes.n = 0;
}

void avm_exec_free(avm_exec *x)
{
    if (x == NULL)
        return;
    while (x->frames.n > 0)
        pop_frame(x);
    while (x->sp > 0)
        avm_val_release(x->stack[--x->sp]);
    for (size_t i = 0; i < x->ctxs.n; i++) {
        vm_ctx *c = &x->ctxs.v[i];
        avm_val_release(c->self);
        avm_val_release(c->input);
        avm_val_release(c->sender);
        avm_val_release(c->machine);
        avm_val_release(c->oid);
        avm_val_release(c->inp);
    }
    vm__tx_clear(x);
    vm__fd_free(x);
    vm__nd_free(x);
    pairs_release(x->detached.v, x->detached.n);
    for (uint32_t i = 0; i < VM_FINISHED_RING; i++)
        avm_val_release(x->finished[i].txid);
    for (size_t i = 0; i < x->tview.n; i++)
        event_release(&x->tview.v[i]);
    avm_buf_free(&x->tlog);
    avm_val_release(x->self);
    avm_val_release(x->input);
    avm_val_release(x->sender);
    avm_val_release(x->machine);
    avm_val_release(x->result);
    avm_val_release(x->blocked_on);
    avm_val_release(x->ckpt_id);
    avm_val_release(x->bundle);
    avm_val_release(x->principal);
    avm_error_clear(&x->error);
    free(x->stack);
    free(x->frames.v);
    free(x->ctxs.v);
    free(x->tx.v);
    free(x->reads.v);
    free(x->creates.v);
    free(x->transfers.v);
    free(x->states.v);
    free(x->destroys.v);
    free(x->writes.v);
    free(x->detached.v);
    free(x->tview.v);
    free(x);
}

static int register_pures(avm_exec *x, avm_module *m)
{
    avm_store *s = x->plat->store;
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        if (m->funcs[i].kind != AVM_FN_PURE)
            continue;
        if (m->funcs[i].name.u.s->data[0] == '_' && m->funcs[i].name.u.s->data[1] == '_')
            continue; /* compiler-made helpers */
        if (s->ops->pure_get(s, m->funcs[i].name) != NULL)
            continue;
        avm_module *code;
        int rv = avm_module_extract(m, i, &code);
        if (rv != 0)
            return rv;
        avm_purefn fn = {.name = m->funcs[i].name, .code = code, .version = 0};
        rv = s->ops->pure_put(s, &fn);
        avm_module_release(code);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int avm_exec_start(avm_exec *x, avm_module *m, int fn, avm_val self, avm_val input,
                   char *errmsg, size_t errlen)
{
    if (x->started)
        return AVM_ESTATE;
    if (fn >= 0 && ((uint32_t)fn >= m->nfuncs || m->funcs[fn].kind != AVM_FN_FUNC ||
                    m->funcs[fn].nparams != 0)) {
        if (errmsg)
            snprintf(errmsg, errlen, "entry %d is not a function without parameters", fn);
        return AVM_EINVAL;
    }
    if (fn < 0)
        fn = m->main_fn;
    if (fn < 0) {
        if (errmsg)
            snprintf(errmsg, errlen, "%s: the program has no (main ...) entry",
                     m->source.kind == AVM_STR ? m->source.u.s->data : "module");
        return AVM_EINVAL;
    }
    if (!x->cfg.allow_unsafe) {
        for (uint32_t i = 0; i < m->nfuncs; i++) {
            const avm_func *f = &m->funcs[i];
            if (!f->uses_unsafe)
                continue;
            /* Name the first unsafe instruction of the function. */
            const char *iname = "an unsafe instruction";
            uint32_t line = 0, col = 0;
            static const uint8_t opb[] = AVM_OP_OPERAND_BYTES;
            for (uint32_t pc = 0; pc < f->code_len; pc += 1 + opb[f->code[pc]]) {
                if (f->code[pc] == OP_AVM && f->code[pc + 1] < AVM_INSTR_COUNT &&
                    avm_instr_table[f->code[pc + 1]].unsafe) {
                    iname = avm_instr_table[f->code[pc + 1]].name;
                    for (uint32_t k = 0; k < f->nlines && f->lines[k].pc <= pc; k++) {
                        line = f->lines[k].line;
                        col = f->lines[k].col;
                    }
                    break;
                }
                if (f->code[pc] > AVM_OP_MAX)
                    break;
            }
            if (errmsg)
                snprintf(errmsg, errlen,
                         "%s:%u:%u: '%s' uses the unsafe instruction %s; run with "
                         "--allow-unsafe to grant it",
                         m->source.kind == AVM_STR ? m->source.u.s->data : "module", line,
                         col, f->name.u.s->data, iname);
            return AVM_EUNSAFE;
        }
    }
    int rv = register_pures(x, m);
    if (rv != 0)
        return rv;
    x->self = vm__ref(self);
    x->input = vm__ref(input);
    x->sender = avm_nil();
    x->machine = vm__ref(x->plat->node);
    x->txctrl = avm_nil();
    vm_ctx c = {.self = avm_nil(),
                .input = avm_nil(),
                .sender = avm_nil(),
                .machine = avm_nil(),
                .oid = avm_nil(),
                .inp = avm_nil()};
    if (VEC_PUSH(x, x->ctxs, c) != 0)
        return AVM_ENOMEM;
    if (vm__push_frame(x, m, (uint32_t)fn, 0, FR_MAIN) != VM_OK) {
        x->ctxs.n--;
        return AVM_ENOMEM;
    }
    x->started = true;
    x->status = AVM_RUN_YIELD;
    return 0;
}

avm_run_status avm_exec_status(const avm_exec *x)
{
    return x->status;
}

avm_val avm_exec_result(const avm_exec *x)
{
    return x->result;
}

const avm_error *avm_exec_error(const avm_exec *x)
{
    return &x->error;
}

avm_val avm_exec_blocked_on(const avm_exec *x)
{
    return x->blocked_on;
}

const uint8_t *avm_exec_trace_bytes(const avm_exec *x, size_t *len)
{
    *len = x->tlog.len;
    return (const uint8_t *)x->tlog.data;
}

size_t avm_exec_trace_len(const avm_exec *x)
{
    return x->tcount - x->mcount;
}

void vm__msc(avm_exec *x, int type, avm_val machine, avm_val a0, avm_val a1, avm_val a2)
{
    if (!x->cfg.keep_trace)
        return;
    if (vm__log(x, ++x->lamport, type, false, 0, machine, a0, a1, a2) == 0)
        x->mcount++;
}

avm_wait avm_exec_waiting(const avm_exec *x)
{
    if (x->status != AVM_RUN_BLOCKED)
        return AVM_WAIT_NONE;
    if (x->commit_wait == CW_PENDING)
        return AVM_WAIT_COMMIT;
    return x->fetch_wait ? AVM_WAIT_FETCH : AVM_WAIT_MESSAGE;
}

void avm_exec_commit_unsaved(avm_exec *x)
{
    x->commit_ckpt = false;
}

int avm_exec_rejoin(avm_exec *x, avm_exec *old)
{
    if (x->tlog_base != old->tlog_base + old->tlog.len ||
        x->tbase_count != old->tbase_count + old->tcount ||
        x->tbase_mcount != old->tbase_mcount + old->mcount)
        return AVM_EINVAL;
    avm_buf part = x->tlog;
    x->tlog = old->tlog;
    avm_buf_init(&old->tlog);
    avm_buf_put(&x->tlog, part.data, part.len);
    avm_buf_free(&part);
    if (x->tlog.err)
        return AVM_ENOMEM;
    /* The decoded view: old's, whose events are x's first ones. */
    for (size_t i = 0; i < x->tview.n; i++)
        event_release(&x->tview.v[i]);
    free(x->tview.v);
    x->tview = old->tview;
    x->tview_off = old->tview_off;
    memset(&old->tview, 0, sizeof(old->tview));
    old->tview_off = 0;
    x->tcount += old->tcount;
    x->mcount += old->mcount;
    x->tlog_base = old->tlog_base;
    x->tbase_count = old->tbase_count;
    x->tbase_mcount = old->tbase_mcount;
    x->tlog_saved = old->tlog_saved;
    old->tcount = old->mcount = 0;
    old->tlog_saved = 0;
    return 0;
}

size_t avm_exec_trace_base(const avm_exec *x)
{
    return x->tlog_base;
}

size_t avm_exec_trace_end(const avm_exec *x)
{
    return x->tlog_base + x->tlog.len;
}

void vm__placed(avm_exec *x)
{
    x->moved = x->plat->roam && !avm_val_eq(x->machine, x->plat->node);
}

avm_val avm_exec_machine(const avm_exec *x)
{
    return x->machine;
}

int avm_exec_adopt(avm_exec *x)
{
    for (size_t i = 0; i < x->frames.n; i++) {
        avm_module *m = x->frames.v[i].mod;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = x->frames.v[j].mod == m;
        if (seen)
            continue;
        int rv = register_pures(x, m);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int avm_exec_abandon(avm_exec *x, avm_val machine)
{
    if (x->status == AVM_RUN_DONE || x->status == AVM_RUN_FAILED ||
        x->commit_wait != CW_NONE || !x->started)
        return AVM_ESTATE;
    vm__fail(x, AVM_ERR_MACHINE_UNREACHABLE, vm__ref(machine), avm_nil(), avm_nil());
    fail_exec(x);
    return 0;
}

int avm_exec_commit_done(avm_exec *x, int rv, bool committed)
{
    if (x->commit_wait != CW_PENDING)
        return AVM_ESTATE;
    x->commit_wait = CW_DONE;
    x->commit_rv = rv;
    x->commit_ok = rv == 0 && committed;
    return 0;
}

int avm_exec_log_runtime(avm_exec *x, const char *event, const char *id, avm_val detail)
{
    if (!x->cfg.msc || !x->cfg.keep_trace)
        return 0;
    avm_val ev, idv;
    if (avm_cstr(AVM_STR, event, &ev) != 0)
        return AVM_ENOMEM;
    if (avm_cstr(AVM_STR, id, &idv) != 0) {
        avm_val_release(ev);
        return AVM_ENOMEM;
    }
    uint64_t before = x->mcount;
    vm__msc(x, AVM_MSC_RUNTIME, x->plat->node, ev, idv, detail);
    avm_val_release(ev);
    avm_val_release(idv);
    return x->mcount > before ? 0 : AVM_ENOMEM;
}

uint64_t avm_exec_lamport(const avm_exec *x)
{
    return x->lamport;
}

bool avm_exec_tx(const avm_exec *x, avm_exec_txinfo *out)
{
    if (x->tx.n == 0)
        return false;
    out->txid = x->tx.v[0].txid;
    out->ctrl = x->txctrl;
    out->depth = x->tx.n;
    out->reads = x->reads.v;
    out->nreads = x->reads.n;
    out->states = x->states.v;
    out->nstates = x->states.n;
    out->nwrites = x->states.n + x->creates.n + x->destroys.n + x->transfers.n;
    out->ctrls = x->txset;
    return true;
}

const avm_event *avm_exec_trace(const avm_exec *x)
{
    /* Decode what the view lacks. The log was written by this process or checked
     * when decoded, so a failure here is memory. */
    avm_exec *m = (avm_exec *)x;
    avm_mp_reader r;
    avm_mp_reader_init(&r, (const uint8_t *)m->tlog.data + m->tview_off,
                       m->tlog.len - m->tview_off, SIZE_MAX);
    while (m->tview.n < m->tcount - m->mcount) {
        avm_event e;
        if (vm__log_decode(&r, &e) != 0)
            return NULL;
        if (e.type >= AVM_MSC_CALL) {
            /* A sequence-chart record: not an event of the specification's trace. */
            event_release(&e);
        } else if (VEC_PUSH(m, m->tview, e) != 0) {
            event_release(&e);
            return NULL;
        }
        m->tview_off = (size_t)(r.p - (const uint8_t *)m->tlog.data);
    }
    return m->tview.v;
}

uint64_t avm_exec_event_counter(const avm_exec *x)
{
    return x->counter;
}

uint64_t avm_exec_steps(const avm_exec *x)
{
    return x->steps;
}
