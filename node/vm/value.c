/* AVM values: construction, equality, ordering, printing. */
#include "value.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"

uint32_t avm_hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 16777619u;
    }
    return h;
}

int avm_str_new(avm_kind kind, const char *bytes, size_t len, avm_val *out)
{
    if (len > AVM_MAX_STR_LEN)
        return AVM_ETOOBIG;
    /* The bytes (and NUL) are allocated in whole 16-byte chunks, so that a reader
     * may copy a short string 16 bytes at a time (the trace log does). */
    avm_str *s = malloc(sizeof(*s) + ((len + 1 + 15) & ~(size_t)15));
    if (s == NULL)
        return AVM_ENOMEM;
    s->rc = 1;
    s->len = (uint32_t)len;
    if (len > 0)
        memcpy(s->data, bytes, len);
    s->data[len] = '\0';
    s->hash = 0; /* computed on first use */
    out->kind = (uint8_t)kind;
    out->u.s = s;
    return 0;
}

int avm_cstr(avm_kind kind, const char *s, avm_val *out)
{
    return avm_str_new(kind, s, strlen(s), out);
}

int avm_list_new(size_t len, avm_val *out)
{
    if (len > AVM_MAX_LIST_LEN)
        return AVM_ETOOBIG;
    avm_list *l = malloc(sizeof(*l) + len * sizeof(avm_val));
    if (l == NULL)
        return AVM_ENOMEM;
    l->rc = 1;
    l->len = (uint32_t)len;
    l->depth = 1;
    l->items = (avm_val *)(l + 1);
    for (size_t i = 0; i < len; i++)
        l->items[i] = avm_nil();
    out->kind = AVM_LIST;
    out->u.l = l;
    return 0;
}

int avm_list_from(avm_val *items, size_t n, avm_val *out)
{
    int rv = avm_list_new(n, out);
    if (rv != 0) {
        for (size_t i = 0; i < n; i++)
            avm_val_release(items[i]);
        return rv;
    }
    if (n > 0)
        memcpy(out->u.l->items, items, n * sizeof(avm_val));
    avm_list_seal(*out);
    return 0;
}

uint32_t avm_list_seal(avm_val l)
{
    uint32_t d = 0;
    for (uint32_t i = 0; i < l.u.l->len; i++) {
        uint32_t c = avm_val_depth(l.u.l->items[i]);
        if (c > d)
            d = c;
    }
    l.u.l->depth = d + 1;
    return d + 1;
}

void avm__val_free(avm_val v)
{
    if (v.kind == AVM_LIST || v.kind == AVM_SYM) {
        /* Iterative over the last element to bound C stack use on deep lists is not
         * needed: decoders and producers bound depth to AVM_MAX_DEPTH. */
        avm_list *l = v.u.l;
        for (uint32_t i = 0; i < l->len; i++)
            avm_val_release(l->items[i]);
        free(l);
    } else {
        free(v.u.s);
    }
}

bool avm_val_eq(avm_val a, avm_val b)
{
    if (a.kind != b.kind)
        return false;
    switch (a.kind) {
    case AVM_NIL:
        return true;
    case AVM_BOOL:
        return a.u.b == b.u.b;
    case AVM_INT:
        return a.u.i == b.u.i;
    case AVM_LIST:
    case AVM_SYM: {
        if (a.u.l == b.u.l)
            return true;
        if (a.u.l->len != b.u.l->len)
            return false;
        for (uint32_t i = 0; i < a.u.l->len; i++)
            if (!avm_val_eq(a.u.l->items[i], b.u.l->items[i]))
                return false;
        return true;
    }
    default:
        /* Hashes only decide when both are known already. */
        return a.u.s == b.u.s ||
               (a.u.s->len == b.u.s->len &&
                (a.u.s->hash == 0 || b.u.s->hash == 0 || a.u.s->hash == b.u.s->hash) &&
                memcmp(a.u.s->data, b.u.s->data, a.u.s->len) == 0);
    }
}

int avm_val_cmp(avm_val a, avm_val b)
{
    if (a.kind != b.kind)
        return a.kind < b.kind ? -1 : 1;
    switch (a.kind) {
    case AVM_NIL:
        return 0;
    case AVM_BOOL:
        return (int)a.u.b - (int)b.u.b;
    case AVM_INT:
        return a.u.i < b.u.i ? -1 : a.u.i > b.u.i;
    case AVM_LIST:
    case AVM_SYM: {
        uint32_t n = a.u.l->len < b.u.l->len ? a.u.l->len : b.u.l->len;
        for (uint32_t i = 0; i < n; i++) {
            int c = avm_val_cmp(a.u.l->items[i], b.u.l->items[i]);
            if (c != 0)
                return c;
        }
        return a.u.l->len < b.u.l->len ? -1 : a.u.l->len > b.u.l->len;
    }
    default: {
        uint32_t n = a.u.s->len < b.u.s->len ? a.u.s->len : b.u.s->len;
        int c = memcmp(a.u.s->data, b.u.s->data, n);
        if (c != 0)
            return c < 0 ? -1 : 1;
        return a.u.s->len < b.u.s->len ? -1 : a.u.s->len > b.u.s->len;
    }
    }
}

uint32_t avm_val_hash(avm_val v)
{
    switch (v.kind) {
    case AVM_NIL:
        return 0x9e3779b9u;
    case AVM_BOOL:
        return v.u.b ? 1231u : 1237u;
    case AVM_INT:
        return avm_hash_bytes(&v.u.i, sizeof(v.u.i));
    case AVM_LIST:
    case AVM_SYM: {
        uint32_t h = 0x12345u + v.u.l->len + (v.kind == AVM_SYM ? 0x9e37u : 0);
        for (uint32_t i = 0; i < v.u.l->len; i++)
            h = h * 31u + avm_val_hash(v.u.l->items[i]);
        return h;
    }
    default:
        return avm_str_hash(v.u.s) ^ (uint32_t)v.kind * 0x85ebca6bu;
    }
}

const char *avm_kind_name(avm_kind k)
{
    static const char *names[AVM_KIND_COUNT] = {
        "nil",       "bool",          "int",        "string", "list",
        "object-id", "controller-id", "machine-id", "tx-id",  "symbolic"};
    return (unsigned)k < AVM_KIND_COUNT ? names[k] : "invalid";
}

/* Buffers. */

void avm_buf_init(avm_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->err = 0;
}

void avm_buf_free(avm_buf *b)
{
    free(b->data);
    avm_buf_init(b);
}

int avm_buf_reserve(avm_buf *b, size_t extra)
{
    if (b->err)
        return b->err;
    if (extra >= SIZE_MAX / 2 - b->len) {
        b->err = AVM_ENOMEM; /* no such buffer; and the doubling below would wrap */
        return b->err;
    }
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (p == NULL) {
        b->err = AVM_ENOMEM;
        return b->err;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

void avm__buf_put_slow(avm_buf *b, const void *p, size_t n)
{
    if (avm_buf_reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void avm_buf_puts(avm_buf *b, const char *s)
{
    avm_buf_put(b, s, strlen(s));
}

void avm_buf_printf(avm_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        avm_buf_put(b, small, (size_t)n);
        return;
    }
    if (avm_buf_reserve(b, (size_t)n) != 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

const char *avm_buf_cstr(avm_buf *b)
{
    if (b->data == NULL && avm_buf_reserve(b, 0) == 0)
        b->data[0] = '\0';
    return b->data ? b->data : "";
}

/* Printing. */

static void print_str(avm_buf *b, const avm_str *s)
{
    avm_buf_put(b, "\"", 1);
    for (uint32_t i = 0; i < s->len; i++) {
        unsigned char c = (unsigned char)s->data[i];
        switch (c) {
        case '"':
            avm_buf_puts(b, "\\\"");
            break;
        case '\\':
            avm_buf_puts(b, "\\\\");
            break;
        case '\n':
            avm_buf_puts(b, "\\n");
            break;
        case '\t':
            avm_buf_puts(b, "\\t");
            break;
        case '\r':
            avm_buf_puts(b, "\\r");
            break;
        default:
            if (c < 0x20 || c == 0x7f)
                avm_buf_printf(b, "\\x%02x", c);
            else
                avm_buf_put(b, &c, 1);
        }
    }
    avm_buf_put(b, "\"", 1);
}

static const char *id_prefix(avm_kind k)
{
    switch (k) {
    case AVM_OBJID:
        return "#obj";
    case AVM_CTRLID:
        return "#ctl";
    case AVM_MACHID:
        return "#mach";
    default:
        return "#tx";
    }
}

void avm_val_print(avm_buf *b, avm_val v)
{
    switch (v.kind) {
    case AVM_NIL:
        avm_buf_puts(b, "nil");
        break;
    case AVM_BOOL:
        avm_buf_puts(b, v.u.b ? "#t" : "#f");
        break;
    case AVM_INT:
        avm_buf_printf(b, "%lld", (long long)v.u.i);
        break;
    case AVM_STR:
        print_str(b, v.u.s);
        break;
    case AVM_LIST:
        avm_buf_put(b, "(", 1);
        for (uint32_t i = 0; i < v.u.l->len; i++) {
            if (i > 0)
                avm_buf_put(b, " ", 1);
            avm_val_print(b, v.u.l->items[i]);
        }
        avm_buf_put(b, ")", 1);
        break;
    case AVM_SYM:
        /* ?"node1/t2.0" for a choice, ?(+ ?"node1/t2.0" 1) for an expression. */
        if (avm_sym_op_of(v) == AVM_SYM_VAR) {
            avm_buf_put(b, "?", 1);
            print_str(b, v.u.l->items[1].u.s);
            break;
        }
        avm_buf_printf(b, "?(%s", avm_sym_op_name(avm_sym_op_of(v)));
        for (uint32_t i = 1; i + 1 < v.u.l->len; i++) {
            avm_buf_put(b, " ", 1);
            avm_val_print(b, v.u.l->items[i]);
        }
        avm_buf_put(b, ")", 1);
        break;
    default:
        avm_buf_puts(b, id_prefix(v.kind));
        print_str(b, v.u.s);
        break;
    }
}

void avm_json_str(avm_buf *b, const char *s, size_t n)
{
    avm_buf_put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"')
            avm_buf_puts(b, "\\\"");
        else if (c == '\\')
            avm_buf_puts(b, "\\\\");
        else if (c == '\n')
            avm_buf_puts(b, "\\n");
        else if (c == '\t')
            avm_buf_puts(b, "\\t");
        else if (c == '\r')
            avm_buf_puts(b, "\\r");
        else if (c < 0x20 || c == 0x7f)
            avm_buf_printf(b, "\\u%04x", c);
        else
            avm_buf_put(b, &c, 1);
    }
    avm_buf_put(b, "\"", 1);
}

void avm_val_json(avm_buf *b, avm_val v)
{
    switch (v.kind) {
    case AVM_NIL:
        avm_buf_puts(b, "null");
        break;
    case AVM_BOOL:
        avm_buf_puts(b, v.u.b ? "true" : "false");
        break;
    case AVM_INT:
        avm_buf_printf(b, "%lld", (long long)v.u.i);
        break;
    case AVM_STR:
        avm_json_str(b, v.u.s->data, v.u.s->len);
        break;
    case AVM_LIST:
        avm_buf_put(b, "[", 1);
        for (uint32_t i = 0; i < v.u.l->len; i++) {
            if (i > 0)
                avm_buf_put(b, ",", 1);
            avm_val_json(b, v.u.l->items[i]);
        }
        avm_buf_put(b, "]", 1);
        break;
    case AVM_SYM: {
        /* {"symbolic":"node1/t2.0"} or {"symbolic":["+",{"symbolic":...},1]} */
        avm_buf_puts(b, "{\"symbolic\":");
        if (avm_sym_op_of(v) == AVM_SYM_VAR) {
            avm_json_str(b, v.u.l->items[1].u.s->data, v.u.l->items[1].u.s->len);
        } else {
            const char *op = avm_sym_op_name(avm_sym_op_of(v));
            avm_buf_put(b, "[", 1);
            avm_json_str(b, op, strlen(op));
            for (uint32_t i = 1; i + 1 < v.u.l->len; i++) {
                avm_buf_put(b, ",", 1);
                avm_val_json(b, v.u.l->items[i]);
            }
            avm_buf_put(b, "]", 1);
        }
        avm_buf_put(b, "}", 1);
        break;
    }
    default: {
        static const char *keys[] = {"object", "controller", "machine", "tx"};
        avm_buf_printf(b, "{\"%s\":", keys[v.kind - AVM_OBJID]);
        avm_json_str(b, v.u.s->data, v.u.s->len);
        avm_buf_put(b, "}", 1);
    }
    }
}

/* Symbolic values. */

static const struct {
    const char *name;
    uint8_t arity, arg, result; /* arg: the arguments' type (VAR: none) */
} sym_ops[AVM_SYM_OP_COUNT] = {
    [AVM_SYM_VAR] = {"var", 2, 0, 0},
    [AVM_SYM_ADD] = {"+", 2, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_SUB] = {"-", 2, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_MUL] = {"*", 2, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_MIN] = {"min", 2, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_MAX] = {"max", 2, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_NEG] = {"neg", 1, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_ABS] = {"abs", 1, AVM_SYM_T_INT, AVM_SYM_T_INT},
    [AVM_SYM_LT] = {"<", 2, AVM_SYM_T_INT, AVM_SYM_T_BOOL},
    [AVM_SYM_LE] = {"<=", 2, AVM_SYM_T_INT, AVM_SYM_T_BOOL},
    [AVM_SYM_GT] = {">", 2, AVM_SYM_T_INT, AVM_SYM_T_BOOL},
    [AVM_SYM_GE] = {">=", 2, AVM_SYM_T_INT, AVM_SYM_T_BOOL},
    [AVM_SYM_EQ] = {"=", 2, 2 /* either, both the same */, AVM_SYM_T_BOOL},
    [AVM_SYM_NE] = {"!=", 2, 2, AVM_SYM_T_BOOL},
    [AVM_SYM_NOT] = {"not", 1, AVM_SYM_T_BOOL, AVM_SYM_T_BOOL},
    [AVM_SYM_AND] = {"and", 2, AVM_SYM_T_BOOL, AVM_SYM_T_BOOL},
    [AVM_SYM_OR] = {"or", 2, AVM_SYM_T_BOOL, AVM_SYM_T_BOOL},
};

int avm_sym_arity(int op)
{
    return (unsigned)op < AVM_SYM_OP_COUNT ? sym_ops[op].arity : -1;
}

const char *avm_sym_op_name(int op)
{
    return (unsigned)op < AVM_SYM_OP_COUNT ? sym_ops[op].name : "?";
}

int avm_sym_type(avm_val v)
{
    int op = avm_sym_op_of(v);
    if (op == AVM_SYM_VAR)
        return (int)v.u.l->items[2].u.i;
    return sym_ops[op].result;
}

/* The type of an argument: its kind's for a concrete value, -1 when it has none. */
static int arg_type(avm_val a)
{
    if (a.kind == AVM_INT)
        return AVM_SYM_T_INT;
    if (a.kind == AVM_BOOL)
        return AVM_SYM_T_BOOL;
    if (a.kind == AVM_SYM)
        return avm_sym_type(a);
    return -1;
}

bool avm_sym_check(avm_val p)
{
    if (p.kind != AVM_LIST || p.u.l->len < 2 || p.u.l->items[0].kind != AVM_INT)
        return false;
    int64_t op = p.u.l->items[0].u.i;
    if (op < 0 || op >= AVM_SYM_OP_COUNT || p.u.l->len != 2u + sym_ops[op].arity)
        return false;
    avm_val *a = p.u.l->items + 1, size = p.u.l->items[p.u.l->len - 1];
    if (size.kind != AVM_INT)
        return false;
    if (op == AVM_SYM_VAR)
        return a[0].kind == AVM_STR && a[0].u.s->len > 0 && a[1].kind == AVM_INT &&
               (a[1].u.i == AVM_SYM_T_INT || a[1].u.i == AVM_SYM_T_BOOL) && size.u.i == 1;
    bool sym = false;
    int t0 = arg_type(a[0]);
    int64_t want = 1;
    for (uint32_t i = 0; i < sym_ops[op].arity; i++)
        want += a[i].kind == AVM_SYM ? avm_sym_size(a[i]) : 1;
    if (size.u.i != want || want > AVM_SYM_MAX_SIZE)
        return false;
    for (uint32_t i = 0; i < sym_ops[op].arity; i++) {
        int t = arg_type(a[i]);
        if (t < 0)
            return false;
        if (sym_ops[op].arg != 2 && t != sym_ops[op].arg)
            return false;
        if (t != t0)
            return false;
        sym |= a[i].kind == AVM_SYM;
    }
    return sym; /* an expression over concrete values only is not symbolic */
}
