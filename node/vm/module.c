/* Modules: lifetime, canonical encoding, bounded decoding, the bytecode verifier,
 * and extraction of a function with its callees as self-contained code. */
#include "module.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "sha256.h"

#define MODULE_MAGIC "AVMMOD"
#define MODULE_MAGIC_LEN 6
#define MODULE_FIELDS 5
#define FUNC_FIELDS 9

static const uint8_t op_operand_bytes[AVM_OP_MAX + 1] = AVM_OP_OPERAND_BYTES;

static const char *const op_names[AVM_OP_MAX + 1] = {
    [OP_CONST] = "OP_CONST", [OP_NIL] = "OP_NIL",   [OP_LOAD] = "OP_LOAD",
    [OP_STORE] = "OP_STORE", [OP_POP] = "OP_POP",   [OP_JMP] = "OP_JMP",
    [OP_JMPF] = "OP_JMPF",   [OP_CALL] = "OP_CALL", [OP_TAILCALL] = "OP_TAILCALL",
    [OP_RET] = "OP_RET",     [OP_PRIM] = "OP_PRIM", [OP_AVM] = "OP_AVM",
    [OP_LIST] = "OP_LIST",   [OP_DUP] = "OP_DUP",
};

static const char *const kind_names[] = {"main", "behavior", "pure", "func"};

/* Lifetime. */

avm_module *avm_module_new(uint32_t nfuncs)
{
    avm_module *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    if (nfuncs > 0) {
        m->funcs = calloc(nfuncs, sizeof(*m->funcs));
        if (m->funcs == NULL) {
            free(m);
            return NULL;
        }
    }
    /* calloc leaves every avm_val field nil (kind 0), so release is always safe. */
    m->rc = 1;
    m->nfuncs = nfuncs;
    m->main_fn = -1;
    m->source = avm_nil();
    return m;
}

void avm_module_retain(avm_module *m)
{
    m->rc++;
}

static void func_clear(avm_func *f)
{
    avm_val_release(f->name);
    free(f->code);
    for (uint32_t i = 0; i < f->nconsts; i++)
        avm_val_release(f->consts[i]);
    free(f->consts);
    free(f->lines);
    memset(f, 0, sizeof(*f));
}

void avm_module_release(avm_module *m)
{
    if (m == NULL || --m->rc > 0)
        return;
    for (uint32_t i = 0; i < m->nfuncs; i++)
        func_clear(&m->funcs[i]);
    free(m->funcs);
    avm_val_release(m->source);
    free(m);
}

/* Bytecode access. Operands are little-endian (bytecode.h). */

static uint32_t load_u16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static int32_t load_i32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    /* Avoids the implementation-defined conversion of values above INT32_MAX. */
    return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1;
}

static void store_u16(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* One decoded instruction. */
typedef struct insn {
    uint8_t op;
    uint32_t len; /* opcode and operand bytes */
    uint32_t a;   /* first operand: constant, slot, function, prim, instr, count */
    uint32_t b;   /* argc of OP_CALL, OP_TAILCALL, OP_PRIM, OP_AVM */
    int32_t off;  /* OP_JMP, OP_JMPF */
} insn;

/* Decodes the instruction at pc. Returns false if the opcode is unknown or its
 * operands run past the end of the code. */
static bool insn_decode(const avm_func *f, uint32_t pc, insn *in)
{
    uint8_t op = f->code[pc];
    if (op == 0 || op > AVM_OP_MAX)
        return false;
    in->op = op;
    in->len = 1u + op_operand_bytes[op];
    if (in->len > f->code_len - pc)
        return false;
    const uint8_t *o = f->code + pc + 1;
    in->a = in->b = 0;
    in->off = 0;
    switch (op) {
    case OP_CONST:
    case OP_LOAD:
    case OP_STORE:
    case OP_LIST:
        in->a = load_u16(o);
        break;
    case OP_JMP:
    case OP_JMPF:
        in->off = load_i32(o);
        break;
    case OP_CALL:
    case OP_TAILCALL:
        in->a = load_u16(o);
        in->b = o[2];
        break;
    case OP_PRIM:
    case OP_AVM:
        in->a = o[0];
        in->b = o[1];
        break;
    default:
        break;
    }
    return true;
}

/* Encoding. */

int avm_module_encode(const avm_module *m, avm_buf *out)
{
    int rv;
    avm_mp_put_array(out, MODULE_FIELDS);
    avm_mp_put_str(out, MODULE_MAGIC, MODULE_MAGIC_LEN);
    avm_mp_put_uint(out, AVM_BYTECODE_VERSION);
    if ((rv = avm_val_encode(out, m->source)) != 0)
        return rv;
    avm_mp_put_int(out, m->main_fn);
    avm_mp_put_array(out, m->nfuncs);
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        const avm_func *f = &m->funcs[i];
        avm_mp_put_array(out, FUNC_FIELDS);
        if ((rv = avm_val_encode(out, f->name)) != 0)
            return rv;
        avm_mp_put_uint(out, f->kind);
        avm_mp_put_uint(out, f->nparams);
        avm_mp_put_uint(out, f->nlocals);
        avm_mp_put_uint(out, f->max_stack);
        avm_mp_put_bin(out, f->code, f->code_len);
        avm_mp_put_array(out, f->nconsts);
        for (uint32_t k = 0; k < f->nconsts; k++)
            if ((rv = avm_val_encode(out, f->consts[k])) != 0)
                return rv;
        avm_mp_put_array(out, f->nlines);
        for (uint32_t k = 0; k < f->nlines; k++) {
            avm_mp_put_array(out, 3);
            avm_mp_put_uint(out, f->lines[k].pc);
            avm_mp_put_uint(out, f->lines[k].line);
            avm_mp_put_uint(out, f->lines[k].col);
        }
        avm_mp_put_bool(out, f->uses_unsafe);
    }
    return out->err;
}

int avm_module_hash(avm_module *m)
{
    avm_buf b;
    avm_buf_init(&b);
    int rv = avm_module_encode(m, &b);
    if (rv == 0)
        avm_sha256(b.data, b.len, m->hash);
    avm_buf_free(&b);
    return rv;
}

/* Decoding. */

static void set_errmsg(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_errmsg(char *errmsg, size_t errlen, const char *fmt, ...)
{
    if (errmsg == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errmsg, errlen, fmt, ap);
    va_end(ap);
}

/* Takes cost bytes of decoded memory from the reader's budget. */
static int charge(avm_mp_reader *r, size_t cost)
{
    if (cost > r->budget)
        return AVM_ETOOBIG;
    r->budget -= cost;
    return 0;
}

static int get_bounded(avm_mp_reader *r, uint64_t max, uint64_t *v)
{
    int rv = avm_mp_get_uint(r, v);
    if (rv == 0 && *v > max)
        rv = AVM_EMALFORMED;
    return rv;
}

/* Reads one function record into f (zeroed). *what names the field being read
 * when an error occurs. */
static int decode_func(avm_mp_reader *r, avm_func *f, const char **what)
{
    uint32_t n;
    uint64_t u;
    const char *s;
    const uint8_t *p;
    int rv;

    *what = "record";
    if ((rv = avm_mp_get_array(r, &n)) != 0)
        return rv;
    if (n != FUNC_FIELDS)
        return AVM_EMALFORMED;

    *what = "name";
    if ((rv = avm_mp_get_str(r, &s, &n)) != 0)
        return rv;
    if ((rv = charge(r, sizeof(avm_str) + (size_t)n + 1)) != 0)
        return rv;
    if ((rv = avm_str_new(AVM_STR, s, n, &f->name)) != 0)
        return rv;

    *what = "kind";
    if ((rv = get_bounded(r, UINT8_MAX, &u)) != 0)
        return rv;
    f->kind = (uint8_t)u;
    *what = "nparams";
    if ((rv = get_bounded(r, UINT8_MAX, &u)) != 0)
        return rv;
    f->nparams = (uint8_t)u;
    *what = "nlocals";
    if ((rv = get_bounded(r, UINT16_MAX, &u)) != 0)
        return rv;
    f->nlocals = (uint16_t)u;
    *what = "max_stack";
    if ((rv = get_bounded(r, UINT16_MAX, &u)) != 0)
        return rv;
    f->max_stack = (uint16_t)u;

    *what = "code";
    if ((rv = avm_mp_get_bin(r, &p, &n)) != 0)
        return rv;
    if ((rv = charge(r, n)) != 0)
        return rv;
    if (n > 0) {
        if ((f->code = malloc(n)) == NULL)
            return AVM_ENOMEM;
        memcpy(f->code, p, n);
        f->code_len = n;
    }

    *what = "constants";
    if ((rv = avm_mp_get_array(r, &n)) != 0)
        return rv;
    if ((rv = charge(r, (size_t)n * sizeof(avm_val))) != 0)
        return rv;
    if (n > 0) {
        if ((f->consts = calloc(n, sizeof(avm_val))) == NULL)
            return AVM_ENOMEM;
        /* nconsts grows with each decoded constant, so release frees exactly those. */
        for (uint32_t k = 0; k < n; k++) {
            if ((rv = avm_mp_get_val(r, &f->consts[k])) != 0)
                return rv;
            f->nconsts++;
        }
    }

    *what = "line table";
    if ((rv = avm_mp_get_array(r, &n)) != 0)
        return rv;
    if ((rv = charge(r, (size_t)n * sizeof(avm_line))) != 0)
        return rv;
    if (n > 0) {
        if ((f->lines = calloc(n, sizeof(avm_line))) == NULL)
            return AVM_ENOMEM;
        f->nlines = n;
        for (uint32_t k = 0; k < n; k++) {
            uint32_t three;
            if ((rv = avm_mp_get_array(r, &three)) != 0)
                return rv;
            if (three != 3)
                return AVM_EMALFORMED;
            if ((rv = get_bounded(r, UINT32_MAX, &u)) != 0)
                return rv;
            f->lines[k].pc = (uint32_t)u;
            if ((rv = get_bounded(r, UINT32_MAX, &u)) != 0)
                return rv;
            f->lines[k].line = (uint32_t)u;
            if ((rv = get_bounded(r, UINT32_MAX, &u)) != 0)
                return rv;
            f->lines[k].col = (uint32_t)u;
        }
    }

    *what = "uses_unsafe";
    return avm_mp_get_bool(r, &f->uses_unsafe);
}

int avm_module_decode(const uint8_t *p, size_t n, avm_module **out, char *errmsg,
                      size_t errlen)
{
    avm_mp_reader r;
    avm_module *m = NULL;
    const char *s;
    const char *what = "header";
    uint32_t count, nfuncs;
    uint64_t version;
    int64_t main_fn;
    avm_val source = avm_nil();
    int rv;

    set_errmsg(errmsg, errlen, "%s", "");
    avm_mp_reader_init(&r, p, n, AVM_DECODE_DEFAULT_MAX);

    if ((rv = avm_mp_get_array(&r, &count)) != 0)
        goto err_field;
    if (count != MODULE_FIELDS) {
        set_errmsg(errmsg, errlen, "module: expected a record of %d fields, got %u",
                   MODULE_FIELDS, count);
        return AVM_EMALFORMED;
    }
    what = "magic";
    if ((rv = avm_mp_get_str(&r, &s, &count)) != 0)
        goto err_field;
    if (count != MODULE_MAGIC_LEN || memcmp(s, MODULE_MAGIC, MODULE_MAGIC_LEN) != 0) {
        set_errmsg(errmsg, errlen, "module: not a module (magic is not \"%s\")",
                   MODULE_MAGIC);
        return AVM_EMALFORMED;
    }
    what = "version";
    if ((rv = avm_mp_get_uint(&r, &version)) != 0)
        goto err_field;
    if (version != AVM_BYTECODE_VERSION) {
        set_errmsg(errmsg, errlen, "module: format version %llu, this node reads %d",
                   (unsigned long long)version, AVM_BYTECODE_VERSION);
        return AVM_EVERSION;
    }
    what = "source";
    if ((rv = avm_mp_get_val(&r, &source)) != 0)
        goto err_field;
    if (source.kind != AVM_STR) {
        rv = AVM_EMALFORMED;
        goto err_field;
    }
    what = "main_fn";
    if ((rv = avm_mp_get_int(&r, &main_fn)) != 0)
        goto err_field;
    if (main_fn < -1 || main_fn > INT32_MAX) {
        rv = AVM_EMALFORMED;
        goto err_field;
    }
    what = "function list";
    if ((rv = avm_mp_get_array(&r, &nfuncs)) != 0)
        goto err_field;
    if ((rv = charge(&r, (size_t)nfuncs * sizeof(avm_func))) != 0)
        goto err_field;
    if ((m = avm_module_new(nfuncs)) == NULL) {
        rv = AVM_ENOMEM;
        goto err_field;
    }
    m->source = source;
    source = avm_nil();
    m->main_fn = (int32_t)main_fn;
    for (uint32_t i = 0; i < nfuncs; i++) {
        if ((rv = decode_func(&r, &m->funcs[i], &what)) != 0) {
            set_errmsg(errmsg, errlen, "module: function %u: %s: %s", i, what,
                       avm_strerror(rv));
            goto err_module;
        }
    }
    if (r.p != r.end) {
        rv = AVM_EMALFORMED;
        set_errmsg(errmsg, errlen, "module: %zu bytes after the end of the module",
                   (size_t)(r.end - r.p));
        goto err_module;
    }
    if ((rv = avm_module_verify(m, errmsg, errlen)) != 0)
        goto err_module;
    if ((rv = avm_module_hash(m)) != 0) {
        set_errmsg(errmsg, errlen, "module: hashing: %s", avm_strerror(rv));
        goto err_module;
    }
    *out = m;
    return 0;

err_field:
    set_errmsg(errmsg, errlen, "module: %s: %s", what, avm_strerror(rv));
err_module:
    avm_module_release(m);
    avm_val_release(source);
    return rv;
}

/* Verification. */

typedef struct verifier {
    const avm_module *m;
    uint32_t fi;
    const avm_func *f;
    char *errmsg;
    size_t errlen;
} verifier;

/* Writes "function 'name' [pc N]: <message>" and returns AVM_EVERIFY. pc < 0
 * leaves the pc out. */
static int verr(const verifier *v, int64_t pc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int verr(const verifier *v, int64_t pc, const char *fmt, ...)
{
    if (v->errmsg == NULL || v->errlen == 0)
        return AVM_EVERIFY;
    int n;
    if (v->f->name.kind == AVM_STR)
        n = snprintf(v->errmsg, v->errlen, "function '%.*s'",
                     (int)(v->f->name.u.s->len > 64 ? 64 : v->f->name.u.s->len),
                     v->f->name.u.s->data);
    else
        n = snprintf(v->errmsg, v->errlen, "function #%u", v->fi);
    if (n >= 0 && (size_t)n < v->errlen && pc >= 0)
        n += snprintf(v->errmsg + n, v->errlen - (size_t)n, " pc %lld", (long long)pc);
    if (n >= 0 && (size_t)n + 2 < v->errlen) {
        memcpy(v->errmsg + n, ": ", 3);
        n += 2;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(v->errmsg + n, v->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return AVM_EVERIFY;
}

/* Name of function i for messages about a callee. */
static const char *fn_name(const avm_module *m, uint32_t i)
{
    const avm_func *f = &m->funcs[i];
    return f->name.kind == AVM_STR ? f->name.u.s->data : "?";
}

/* Header fields, constants and line table. */
static int verify_header(const verifier *v)
{
    const avm_func *f = v->f;
    if (f->name.kind != AVM_STR)
        return verr(v, -1, "name is not a string (kind %s)",
                    avm_kind_name((avm_kind)f->name.kind));
    if (f->kind > AVM_FN_FUNC)
        return verr(v, -1, "invalid function kind %u", f->kind);
    if ((f->kind == AVM_FN_MAIN || f->kind == AVM_FN_BEHAVIOR) && f->nparams != 0)
        return verr(v, -1, "a %s function takes no parameters, this one has %u",
                    kind_names[f->kind], f->nparams);
    if (f->nlocals < f->nparams)
        return verr(v, -1, "nlocals %u is less than nparams %u", f->nlocals, f->nparams);
    if (f->nconsts > 0 && f->consts == NULL)
        return verr(v, -1, "%u constants but no constant table", f->nconsts);
    if (f->nlines > 0 && f->lines == NULL)
        return verr(v, -1, "%u line entries but no line table", f->nlines);
    for (uint32_t k = 1; k < f->nlines; k++)
        if (f->lines[k].pc < f->lines[k - 1].pc)
            return verr(v, -1,
                        "line table not sorted by pc (entry %u has pc %u after "
                        "pc %u)",
                        k, f->lines[k].pc, f->lines[k - 1].pc);
    if (f->code_len == 0 || f->code == NULL)
        return verr(v, -1, "empty code (no OP_RET)");
    return 0;
}

/* Operands that can be checked one instruction at a time. */
static int verify_operands(const verifier *v, uint32_t pc, const insn *in,
                           bool *unsafe_seen)
{
    const avm_module *m = v->m;
    const avm_func *f = v->f;
    switch (in->op) {
    case OP_CONST:
        if (in->a >= f->nconsts)
            return verr(v, pc, "constant %u out of range (%u constants)", in->a,
                        f->nconsts);
        break;
    case OP_LOAD:
    case OP_STORE:
        if (in->a >= f->nlocals)
            return verr(v, pc, "%s slot %u out of range (nlocals %u)", op_names[in->op],
                        in->a, f->nlocals);
        break;
    case OP_CALL:
    case OP_TAILCALL: {
        if (in->a >= m->nfuncs)
            return verr(v, pc, "%s to function %u, but the module has %u functions",
                        op_names[in->op], in->a, m->nfuncs);
        const avm_func *callee = &m->funcs[in->a];
        if (in->b != callee->nparams)
            return verr(v, pc, "%s '%s' with %u arguments, but it takes %u",
                        op_names[in->op], fn_name(m, in->a), in->b, callee->nparams);
        if (in->op == OP_TAILCALL && callee->kind == AVM_FN_BEHAVIOR)
            return verr(v, pc, "OP_TAILCALL to behaviour '%s'", fn_name(m, in->a));
        if (f->kind == AVM_FN_PURE && callee->kind != AVM_FN_PURE)
            return verr(v, pc, "pure function calls '%s', which is not pure",
                        fn_name(m, in->a));
        break;
    }
    case OP_PRIM: {
        if (in->a == AVM_PRIM_NONE || in->a >= AVM_PRIM_COUNT)
            return verr(v, pc, "invalid primitive %u", in->a);
        const avm_prim_info *pi = &avm_prim_table[in->a];
        if (pi->arity < 0 ? in->b < 1 : in->b != (uint32_t)pi->arity)
            return verr(v, pc, "primitive '%s' with %u arguments, it takes %s%d",
                        pi->name, in->b, pi->arity < 0 ? "at least " : "",
                        pi->arity < 0 ? 1 : pi->arity);
        break;
    }
    case OP_AVM: {
        if (in->a == AVM_INSTR_NONE || in->a >= AVM_INSTR_COUNT)
            return verr(v, pc, "invalid AVM instruction %u", in->a);
        const avm_instr_info *ii = &avm_instr_table[in->a];
        if (f->kind == AVM_FN_PURE)
            return verr(v, pc, "AVM instruction '%s' in a pure function", ii->name);
        if (in->b < ii->min_argc || in->b > ii->max_argc)
            return verr(v, pc,
                        "AVM instruction '%s' with %u arguments, it takes %u to %u",
                        ii->name, in->b, ii->min_argc, ii->max_argc);
        if (ii->unsafe)
            *unsafe_seen = true;
        break;
    }
    default:
        break;
    }
    return 0;
}

/* Records height h at pc `to`, reached from pc `from`; queues it on first visit. */
static int flow_to(const verifier *v, int32_t *heights, uint32_t *work, uint32_t *nwork,
                   uint32_t from, uint32_t to, int32_t h)
{
    if (heights[to] < 0) {
        heights[to] = h;
        work[(*nwork)++] = to;
        return 0;
    }
    if (heights[to] != h)
        return verr(v, to,
                    "stack height %d when reached from pc %u, but %d on another "
                    "path",
                    h, from, heights[to]);
    return 0;
}

/* Verifies one function. With keep_heights, hands the caller the operand-stack
 * height of every pc (-1: not the start of a reachable instruction). */
static int verify_func(const verifier *v, int32_t **keep_heights)
{
    const avm_func *f = v->f;
    uint8_t *starts = NULL;
    int32_t *heights = NULL;
    uint32_t *work = NULL;
    uint32_t nwork = 0;
    bool unsafe_seen = false;
    insn in;
    int rv;

    if ((rv = verify_header(v)) != 0)
        return rv;

    starts = calloc(f->code_len, 1);
    heights = malloc((size_t)f->code_len * sizeof(*heights));
    work = malloc((size_t)f->code_len * sizeof(*work));
    if (starts == NULL || heights == NULL || work == NULL) {
        rv = AVM_ENOMEM;
        verr(v, -1, "out of memory");
        goto out;
    }

    /* Pass 1: instruction boundaries and operands, including unreachable code. */
    for (uint32_t pc = 0; pc < f->code_len; pc += in.len) {
        uint8_t op = f->code[pc];
        if (op == 0 || op > AVM_OP_MAX) {
            rv = verr(v, pc, "invalid opcode %u", op);
            goto out;
        }
        if (!insn_decode(f, pc, &in)) {
            rv = verr(v, pc, "%s needs %u operand bytes, only %u remain", op_names[op],
                      op_operand_bytes[op], f->code_len - pc - 1);
            goto out;
        }
        starts[pc] = 1;
        if ((rv = verify_operands(v, pc, &in, &unsafe_seen)) != 0)
            goto out;
    }
    if (unsafe_seen != f->uses_unsafe) {
        rv = verr(v, -1, "uses_unsafe is %s, but the code %s an unsafe instruction",
                  f->uses_unsafe ? "set" : "clear",
                  unsafe_seen ? "contains" : "contains no");
        goto out;
    }

    /* Pass 2: jumps land on instruction starts inside the code. */
    for (uint32_t pc = 0; pc < f->code_len; pc += in.len) {
        insn_decode(f, pc, &in);
        if (in.op != OP_JMP && in.op != OP_JMPF)
            continue;
        int64_t target = (int64_t)pc + in.len + in.off;
        if (target < 0 || target >= f->code_len) {
            rv = verr(v, pc, "jump target %lld outside code (length %u)",
                      (long long)target, f->code_len);
            goto out;
        }
        if (!starts[target]) {
            rv = verr(v, pc, "jump target %lld is inside an instruction",
                      (long long)target);
            goto out;
        }
    }

    /* Pass 3: operand-stack heights by a worklist over the reachable code. Each pc
     * is queued once, when first reached; later arrivals must agree with it. */
    for (uint32_t pc = 0; pc < f->code_len; pc++)
        heights[pc] = -1;
    heights[0] = 0;
    work[nwork++] = 0;
    while (nwork > 0) {
        uint32_t pc = work[--nwork];
        int32_t h = heights[pc];
        uint32_t pops = 0, pushes = 0;
        bool ends = false, jumps = false, falls = true;
        insn_decode(f, pc, &in);
        switch (in.op) {
        case OP_CONST:
        case OP_NIL:
        case OP_LOAD:
            pushes = 1;
            break;
        case OP_DUP:
            pops = 1;
            pushes = 2;
            break;
        case OP_STORE:
        case OP_POP:
            pops = 1;
            break;
        case OP_JMP:
            jumps = true;
            falls = false;
            break;
        case OP_JMPF:
            pops = 1;
            jumps = true;
            break;
        case OP_CALL:
        case OP_PRIM:
        case OP_AVM:
            pops = in.b;
            pushes = 1;
            break;
        case OP_LIST:
            pops = in.a;
            pushes = 1;
            break;
        case OP_TAILCALL:
            pops = in.b;
            ends = true;
            break;
        case OP_RET:
            pops = 1;
            ends = true;
            break;
        default:
            assert(0 && "opcode checked in pass 1");
        }
        if ((uint32_t)h < pops) {
            rv = verr(v, pc, "stack underflow: %s needs %u values, the stack holds %d",
                      op_names[in.op], pops, h);
            goto out;
        }
        int32_t nh = h - (int32_t)pops + (int32_t)pushes;
        if (nh > f->max_stack) {
            rv = verr(v, pc, "stack height %d exceeds max_stack %u", nh, f->max_stack);
            goto out;
        }
        if (ends)
            continue;
        if (falls) {
            uint32_t next = pc + in.len;
            if (next >= f->code_len) {
                rv = verr(v, pc,
                          "execution falls off the end of the code (missing "
                          "OP_RET)");
                goto out;
            }
            if ((rv = flow_to(v, heights, work, &nwork, pc, next, nh)) != 0)
                goto out;
        }
        if (jumps) {
            uint32_t target = (uint32_t)((int64_t)pc + in.len + in.off);
            if ((rv = flow_to(v, heights, work, &nwork, pc, target, nh)) != 0)
                goto out;
        }
    }
    rv = 0;
    if (keep_heights != NULL) {
        *keep_heights = heights;
        heights = NULL;
    }

out:
    free(work);
    free(heights);
    free(starts);
    return rv;
}

int avm_module_verify(const avm_module *m, char *errmsg, size_t errlen)
{
    set_errmsg(errmsg, errlen, "%s", "");
    if (m->nfuncs > 0 && m->funcs == NULL) {
        set_errmsg(errmsg, errlen, "module: %u functions but no function table",
                   m->nfuncs);
        return AVM_EVERIFY;
    }
    if (m->main_fn < -1 || (m->main_fn >= 0 && (uint32_t)m->main_fn >= m->nfuncs)) {
        set_errmsg(errmsg, errlen, "module: main_fn %d out of range (%u functions)",
                   m->main_fn, m->nfuncs);
        return AVM_EVERIFY;
    }
    if (m->main_fn >= 0 && m->funcs[m->main_fn].kind != AVM_FN_MAIN) {
        set_errmsg(errmsg, errlen, "module: main_fn %d ('%s') is not a main function",
                   m->main_fn, fn_name(m, (uint32_t)m->main_fn));
        return AVM_EVERIFY;
    }
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        verifier v = {
            .m = m, .fi = i, .f = &m->funcs[i], .errmsg = errmsg, .errlen = errlen};
        int rv = verify_func(&v, NULL);
        if (rv != 0)
            return rv;
    }
    return 0;
}

int avm_module_height_at(const avm_module *m, uint32_t fn, uint32_t pc, uint32_t *height)
{
    if (fn >= m->nfuncs || pc >= m->funcs[fn].code_len)
        return AVM_EINVAL;
    verifier v = {.m = m, .fi = fn, .f = &m->funcs[fn]};
    int32_t *heights = NULL;
    int rv = verify_func(&v, &heights);
    if (rv != 0)
        return rv;
    int32_t h = heights[pc];
    free(heights);
    if (h < 0)
        return AVM_EINVAL;
    *height = (uint32_t)h;
    return 0;
}

/* Queries. */

int avm_module_find(const avm_module *m, const char *name, int kind)
{
    size_t n = strlen(name);
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        const avm_func *f = &m->funcs[i];
        if (kind >= 0 && f->kind != kind)
            continue;
        if (f->name.kind == AVM_STR && f->name.u.s->len == n &&
            memcmp(f->name.u.s->data, name, n) == 0)
            return (int)i;
    }
    return -1;
}

/* Iterates over the OP_CALL/OP_TAILCALL instructions of f from *pc. Returns 1 with
 * the callee and the pc of the call (the iterator moves past it), 0 at the end,
 * or -1 if the code is not valid bytecode. */
static int next_call(const avm_module *m, const avm_func *f, uint32_t *pc,
                     uint32_t *callee, uint32_t *at)
{
    insn in;
    while (*pc < f->code_len) {
        if (!insn_decode(f, *pc, &in))
            return -1;
        *at = *pc;
        *pc += in.len;
        if (in.op == OP_CALL || in.op == OP_TAILCALL) {
            if (in.a >= m->nfuncs)
                return -1;
            *callee = in.a;
            return 1;
        }
    }
    return 0;
}

/* The functions reachable from fn through calls, fn first, in breadth-first order
 * of discovery (so the numbering is a function of the code alone). On success
 * *order holds *n indices and, if map is not NULL, *map the new index of each old
 * function (-1 when unreachable). */
static int call_closure(const avm_module *m, uint32_t fn, uint32_t **order, uint32_t *n,
                        int32_t **map_out)
{
    uint32_t *ord = malloc((size_t)m->nfuncs * sizeof(*ord));
    int32_t *map = malloc((size_t)m->nfuncs * sizeof(*map));
    int rv = 0;
    uint32_t count = 0;
    if (ord == NULL || map == NULL) {
        rv = AVM_ENOMEM;
        goto err;
    }
    for (uint32_t i = 0; i < m->nfuncs; i++)
        map[i] = -1;
    map[fn] = 0;
    ord[count++] = fn;
    for (uint32_t i = 0; i < count; i++) {
        const avm_func *f = &m->funcs[ord[i]];
        uint32_t pc = 0, callee, at;
        int more;
        while ((more = next_call(m, f, &pc, &callee, &at)) == 1) {
            if (map[callee] < 0) {
                map[callee] = (int32_t)count;
                ord[count++] = callee;
            }
        }
        if (more < 0) {
            rv = AVM_EINVAL;
            goto err;
        }
    }
    *order = ord;
    *n = count;
    if (map_out != NULL)
        *map_out = map;
    else
        free(map);
    return 0;

err:
    free(map);
    free(ord);
    return rv;
}

/* Deep copy of src into the zeroed dst, with call targets renumbered by map. */
static int copy_func(const avm_module *m, const avm_func *src, avm_func *dst,
                     const int32_t *map)
{
    dst->name = src->name;
    avm_val_retain(dst->name);
    dst->kind = src->kind;
    dst->nparams = src->nparams;
    dst->nlocals = src->nlocals;
    dst->max_stack = src->max_stack;
    dst->uses_unsafe = src->uses_unsafe;
    if (src->code_len > 0) {
        if ((dst->code = malloc(src->code_len)) == NULL)
            return AVM_ENOMEM;
        memcpy(dst->code, src->code, src->code_len);
        dst->code_len = src->code_len;
        uint32_t pc = 0, callee, at;
        while (next_call(m, src, &pc, &callee, &at) == 1)
            store_u16(dst->code + at + 1, (uint32_t)map[callee]);
    }
    if (src->nconsts > 0) {
        if ((dst->consts = malloc((size_t)src->nconsts * sizeof(avm_val))) == NULL)
            return AVM_ENOMEM;
        for (uint32_t k = 0; k < src->nconsts; k++) {
            dst->consts[k] = src->consts[k];
            avm_val_retain(dst->consts[k]);
        }
        dst->nconsts = src->nconsts;
    }
    if (src->nlines > 0) {
        if ((dst->lines = malloc((size_t)src->nlines * sizeof(avm_line))) == NULL)
            return AVM_ENOMEM;
        memcpy(dst->lines, src->lines, (size_t)src->nlines * sizeof(avm_line));
        dst->nlines = src->nlines;
    }
    return 0;
}

int avm_module_extract(const avm_module *m, uint32_t fn, avm_module **out)
{
    uint32_t *order = NULL;
    int32_t *map = NULL;
    uint32_t n;
    avm_module *x = NULL;
    int rv;

    if (fn >= m->nfuncs)
        return AVM_EINVAL;
    if ((rv = call_closure(m, fn, &order, &n, &map)) != 0)
        return rv;
    if ((x = avm_module_new(n)) == NULL) {
        rv = AVM_ENOMEM;
        goto err;
    }
    for (uint32_t i = 0; i < n; i++)
        if ((rv = copy_func(m, &m->funcs[order[i]], &x->funcs[i], map)) != 0)
            goto err;
    x->main_fn = -1;
    x->source = m->source;
    avm_val_retain(x->source);
    if ((rv = avm_module_hash(x)) != 0)
        goto err;
    free(map);
    free(order);
    *out = x;
    return 0;

err:
    avm_module_release(x);
    free(map);
    free(order);
    return rv;
}

bool avm_module_fn_unsafe(const avm_module *m, uint32_t fn)
{
    uint32_t *order;
    uint32_t n;
    if (fn >= m->nfuncs)
        return false;
    /* Without memory (or on invalid code) the answer is "unsafe": callers use it
     * to require a grant, and refusing is the safe failure. */
    if (call_closure(m, fn, &order, &n, NULL) != 0)
        return true;
    bool unsafe = false;
    for (uint32_t i = 0; i < n && !unsafe; i++)
        unsafe = m->funcs[order[i]].uses_unsafe;
    free(order);
    return unsafe;
}
