/* The .avm compiler: the reader's trees to a verified module (docs/language.md).
 *
 * Pass 1 collects the top-level definitions so that functions may be used before
 * they are defined. Pass 2 compiles each function body in one walk, tracking the
 * operand stack height as it emits so that max_stack is exact, and allocating let
 * slots stack-wise so that nlocals is the deepest nesting of live bindings. The
 * finished module goes through avm_module_verify like any module from outside: a
 * verifier complaint here is a compiler bug, reported as AVM_ECOMPILE. */
#include "compiler.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "module.h"
#include "reader.h"

/* Operand limits of the bytecode (bytecode.h). */
#define MAX_U16 65535u
#define MAX_ARGC 255u
/* Code past this size could overflow a jump offset; no 16 MiB source gets near. */
#define MAX_CODE (1u << 30)
/* Quoted constants nest no deeper than values may (value.h), so that the module
 * stays encodable. */
#define MAX_CONST_DEPTH AVM_MAX_DEPTH

/* A function of the module being built. */
typedef struct cfn {
    const char *name; /* NUL-terminated, lives in an AST arena */
    uint32_t name_len;
    uint8_t kind; /* avm_fn_kind */
    uint8_t nparams;
    const avm_ast *form;    /* the defining form */
    avm_ast *const *params; /* nparams symbols */
    avm_ast *const *body;
    uint32_t nbody;
    bool hidden; /* synthesized by the compiler: user code cannot name it */

    /* Output, moved into the module at the end. */
    avm_buf code;
    avm_val *consts;
    uint32_t nconsts, capconsts;
    uint32_t *chash; /* open addressing over consts: index + 1, 0 = empty */
    uint32_t chash_cap;
    avm_line *lines;
    uint32_t nlines, caplines;
    uint32_t nlocals, max_stack;
    bool uses_unsafe;
} cfn;

/* Every name the compiler looks up is interned once, so that resolving a function
 * or a variable costs a hash probe however large the program is. */
typedef struct symbol {
    const char *name; /* lives in an AST arena */
    uint32_t len, hash;
    int32_t fn;    /* index of the behaviour/pure/defun so named, or -1 */
    int32_t local; /* innermost binding in compiler.scope, or -1 */
} symbol;

/* A let or parameter binding. */
typedef struct local {
    uint32_t sym;
    uint16_t slot;
    int32_t prev; /* the binding of the same name it shadows, or -1 */
} local;

typedef struct compiler {
    avm_diag *diag;
    avm_ast_doc *doc;
    /* Trees of synthesized helpers (scryMeta/scryDeep filters). */
    avm_ast_doc **extra;
    uint32_t nextra, capextra;
    cfn **fns;
    uint32_t nfns, capfns;
    int32_t main_fn;

    /* The function being compiled. */
    cfn *cur;
    uint32_t depth;     /* operand stack height at this point of the code */
    uint32_t next_slot; /* first free local slot */
    local *scope;       /* innermost binding last */
    uint32_t nscope, capscope;

    symbol *syms;
    uint32_t nsyms, capsyms;
    uint32_t *symtab; /* open addressing over syms: index + 1, 0 = empty */
    uint32_t symtab_cap;
} compiler;

static int compile_expr(compiler *c, const avm_ast *e, bool tail);

/* Errors. */

static int error_at(compiler *c, const avm_ast *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int error_at(compiler *c, const avm_ast *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->diag->msg, sizeof(c->diag->msg), fmt, ap);
    va_end(ap);
    c->diag->line = at ? at->line : 0;
    c->diag->col = at ? at->col : 0;
    return AVM_ECOMPILE;
}

static int nomem(compiler *c)
{
    snprintf(c->diag->msg, sizeof(c->diag->msg), "out of memory");
    c->diag->line = c->diag->col = 0;
    return AVM_ENOMEM;
}

/* Symbols appear in messages; a 16 MiB symbol should not. */
#define SHOW(n) (int)((n)->u.s.len > 64 ? 64 : (n)->u.s.len), (n)->u.s.p

static bool text_eq(const char *a, uint32_t alen, const char *b, uint32_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

static const char *plural(uint32_t n)
{
    return n == 1 ? "" : "s";
}

/* Growable arrays: returns the array p, reallocated if needed so that n + 1
 * elements fit (updating *cap), or NULL when out of memory (p is still valid). */
static void *grow(void *p, uint32_t *cap, uint32_t n, size_t elem)
{
    if (n < *cap)
        return p;
    uint32_t ncap = *cap ? *cap * 2 : 8;
    void *q = realloc(p, (size_t)ncap * elem);
    if (q != NULL)
        *cap = ncap;
    return q;
}

/* Emission. The code buffer's error is sticky; compile_fn checks it at the end. */

static void emit_u8(compiler *c, uint8_t v)
{
    avm_buf_put(&c->cur->code, &v, 1);
}

static void emit_u16(compiler *c, uint16_t v)
{
    uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
    avm_buf_put(&c->cur->code, b, 2);
}

static void emit_i32(compiler *c, int32_t v)
{
    uint32_t u = (uint32_t)v;
    uint8_t b[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16),
                    (uint8_t)(u >> 24)};
    avm_buf_put(&c->cur->code, b, 4);
}

static int push(compiler *c, const avm_ast *at, uint32_t n)
{
    c->depth += n;
    if (c->depth > MAX_U16)
        return error_at(c, at, "expression needs more than %u operand stack slots",
                        MAX_U16);
    if (c->depth > c->cur->max_stack)
        c->cur->max_stack = c->depth;
    return 0;
}

static void pop(compiler *c, uint32_t n)
{
    assert(c->depth >= n);
    c->depth -= n;
}

/* Records that the instruction emitted next comes from `at`, so that a runtime
 * error there can name the position. */
static int add_line(compiler *c, const avm_ast *at)
{
    cfn *f = c->cur;
    avm_line *lines = grow(f->lines, &f->caplines, f->nlines, sizeof(*lines));
    if (lines == NULL)
        return nomem(c);
    f->lines = lines;
    f->lines[f->nlines].pc = (uint32_t)f->code.len;
    f->lines[f->nlines].line = at->line;
    f->lines[f->nlines].col = at->col;
    f->nlines++;
    return 0;
}

static int emit_simple(compiler *c, const avm_ast *at, avm_opcode op, uint32_t pops,
                       uint32_t pushes)
{
    emit_u8(c, (uint8_t)op);
    pop(c, pops);
    return push(c, at, pushes);
}

static int rehash_consts(compiler *c, uint32_t cap)
{
    cfn *f = c->cur;
    uint32_t *t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return nomem(c);
    for (uint32_t i = 0; i < f->nconsts; i++) {
        uint32_t h = avm_val_hash(f->consts[i]) & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = i + 1;
    }
    free(f->chash);
    f->chash = t;
    f->chash_cap = cap;
    return 0;
}

/* Pushes v (owned; consumed in every case) as a constant, reusing an equal one. */
static int emit_value(compiler *c, const avm_ast *at, avm_val v)
{
    cfn *f = c->cur;
    if (v.kind == AVM_NIL)
        return emit_simple(c, at, OP_NIL, 0, 1);
    if (f->chash_cap == 0 && rehash_consts(c, 16) != 0) {
        avm_val_release(v);
        return AVM_ENOMEM;
    }
    uint32_t h = avm_val_hash(v) & (f->chash_cap - 1);
    while (f->chash[h] != 0) {
        uint32_t k = f->chash[h] - 1;
        if (avm_val_eq(f->consts[k], v)) {
            avm_val_release(v);
            emit_u8(c, OP_CONST);
            emit_u16(c, (uint16_t)k);
            return push(c, at, 1);
        }
        h = (h + 1) & (f->chash_cap - 1);
    }
    if (f->nconsts > MAX_U16) {
        avm_val_release(v);
        return error_at(c, at, "function '%s' has more than %u constants", f->name,
                        MAX_U16 + 1);
    }
    avm_val *consts = grow(f->consts, &f->capconsts, f->nconsts, sizeof(*consts));
    if (consts == NULL) {
        avm_val_release(v);
        return nomem(c);
    }
    f->consts = consts;
    uint32_t k = f->nconsts++;
    f->consts[k] = v;
    f->chash[h] = k + 1;
    if (f->nconsts * 2 > f->chash_cap && rehash_consts(c, f->chash_cap * 2) != 0)
        return AVM_ENOMEM;
    emit_u8(c, OP_CONST);
    emit_u16(c, (uint16_t)k);
    return push(c, at, 1);
}

/* Emits a jump with a placeholder offset; *at_operand is where to patch. */
static int emit_jump(compiler *c, const avm_ast *at, avm_opcode op, uint32_t *operand)
{
    if (c->cur->code.len > MAX_CODE)
        return error_at(c, at, "function '%s' is too large", c->cur->name);
    emit_u8(c, (uint8_t)op);
    *operand = (uint32_t)c->cur->code.len;
    emit_i32(c, 0);
    if (op == OP_JMPF)
        pop(c, 1);
    return 0;
}

/* Points the jump whose operand is at `operand` to the current end of code. */
static void patch_jump(compiler *c, uint32_t operand)
{
    avm_buf *b = &c->cur->code;
    if (b->err)
        return;
    uint32_t u = (uint32_t)(b->len - (operand + 4));
    uint8_t *p = (uint8_t *)b->data + operand;
    p[0] = (uint8_t)u;
    p[1] = (uint8_t)(u >> 8);
    p[2] = (uint8_t)(u >> 16);
    p[3] = (uint8_t)(u >> 24);
}

/* Forward jumps to one label (and/or/cond exits) are chained through their own
 * operands until the label is placed: each holds the previous one's operand
 * position + 1, 0 ending the chain. */
static int emit_jump_chain(compiler *c, const avm_ast *at, avm_opcode op, uint32_t *chain)
{
    uint32_t operand;
    int rv = emit_jump(c, at, op, &operand);
    if (rv != 0)
        return rv;
    avm_buf *b = &c->cur->code;
    if (!b->err) {
        uint8_t *p = (uint8_t *)b->data + operand;
        p[0] = (uint8_t)*chain;
        p[1] = (uint8_t)(*chain >> 8);
        p[2] = (uint8_t)(*chain >> 16);
        p[3] = (uint8_t)(*chain >> 24);
    }
    *chain = operand + 1;
    return 0;
}

static void patch_chain(compiler *c, uint32_t chain)
{
    avm_buf *b = &c->cur->code;
    while (chain != 0 && !b->err) {
        uint32_t operand = chain - 1;
        const uint8_t *p = (const uint8_t *)b->data + operand;
        chain = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                (uint32_t)p[3] << 24;
        patch_jump(c, operand);
    }
}

/* Names. */

static const char *const special_forms[] = {
    "quote",  "let",  "if",  "do", "begin", "when",
    "unless", "cond", "and", "or", "set!",  "list",
};

static const char *const toplevel_forms[] = {
    "behavior", "behaviour", "pure", "defun", "main",
};

static bool in_names(const avm_ast *sym, const char *const *names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (avm_ast_is_sym(sym, names[i]))
            return true;
    return false;
}

#define IN_NAMES(sym, arr) in_names(sym, arr, sizeof(arr) / sizeof(arr[0]))

static avm_prim find_prim(const avm_ast *sym)
{
    for (int i = 1; i < AVM_PRIM_COUNT; i++)
        if (avm_ast_is_sym(sym, avm_prim_table[i].name))
            return (avm_prim)i;
    return AVM_PRIM_NONE;
}

static avm_instr find_instr(const avm_ast *sym)
{
    for (int i = 1; i < AVM_INSTR_COUNT; i++)
        if (avm_ast_is_sym(sym, avm_instr_table[i].name))
            return (avm_instr)i;
    return AVM_INSTR_NONE;
}

/* Index of the interned name, or -1. */
static int32_t sym_find(const compiler *c, const char *name, uint32_t len, uint32_t hash)
{
    if (c->symtab_cap == 0)
        return -1;
    for (uint32_t h = hash & (c->symtab_cap - 1);; h = (h + 1) & (c->symtab_cap - 1)) {
        uint32_t k = c->symtab[h];
        if (k == 0)
            return -1;
        const symbol *s = &c->syms[k - 1];
        if (s->hash == hash && text_eq(s->name, s->len, name, len))
            return (int32_t)(k - 1);
    }
}

static int sym_rehash(compiler *c, uint32_t cap)
{
    uint32_t *t = calloc(cap, sizeof(*t));
    if (t == NULL)
        return nomem(c);
    for (uint32_t i = 0; i < c->nsyms; i++) {
        uint32_t h = c->syms[i].hash & (cap - 1);
        while (t[h] != 0)
            h = (h + 1) & (cap - 1);
        t[h] = i + 1;
    }
    free(c->symtab);
    c->symtab = t;
    c->symtab_cap = cap;
    return 0;
}

/* Interns a name (whose bytes must outlive the compiler) and returns its index. */
static int sym_intern(compiler *c, const char *name, uint32_t len, uint32_t *out)
{
    uint32_t hash = avm_hash_bytes(name, len);
    int32_t k = sym_find(c, name, len, hash);
    if (k >= 0) {
        *out = (uint32_t)k;
        return 0;
    }
    if ((c->nsyms + 1) * 2 > c->symtab_cap &&
        sym_rehash(c, c->symtab_cap ? c->symtab_cap * 2 : 64) != 0)
        return AVM_ENOMEM;
    symbol *syms = grow(c->syms, &c->capsyms, c->nsyms, sizeof(*syms));
    if (syms == NULL)
        return nomem(c);
    c->syms = syms;
    symbol *s = &c->syms[c->nsyms];
    s->name = name;
    s->len = len;
    s->hash = hash;
    s->fn = -1;
    s->local = -1;
    uint32_t h = hash & (c->symtab_cap - 1);
    while (c->symtab[h] != 0)
        h = (h + 1) & (c->symtab_cap - 1);
    c->symtab[h] = c->nsyms + 1;
    *out = c->nsyms++;
    return 0;
}

/* Index of the behaviour, pure function or defun with this name (not main), or
 * -1. */
static int find_fn(const compiler *c, const char *name, uint32_t len)
{
    int32_t k = sym_find(c, name, len, avm_hash_bytes(name, len));
    return k < 0 ? -1 : c->syms[k].fn;
}

/* find_fn for a name written in the function being compiled: hidden helpers are
 * visible only to each other. */
static int find_visible(const compiler *c, const avm_ast *name)
{
    int idx = find_fn(c, name->u.s.p, name->u.s.len);
    if (idx >= 0 && c->fns[idx]->hidden && !c->cur->hidden)
        return -1;
    return idx;
}

static const local *find_local(const compiler *c, const avm_ast *name)
{
    int32_t k = sym_find(c, name->u.s.p, name->u.s.len,
                         avm_hash_bytes(name->u.s.p, name->u.s.len));
    if (k < 0 || c->syms[k].local < 0)
        return NULL;
    return &c->scope[c->syms[k].local];
}

static int bind_local(compiler *c, const avm_ast *name, uint16_t *slot)
{
    uint32_t k;
    if (c->next_slot >= MAX_U16)
        return error_at(c, name, "function '%s' has more than %u local variables",
                        c->cur->name, MAX_U16 - 1);
    if (sym_intern(c, name->u.s.p, name->u.s.len, &k) != 0)
        return AVM_ENOMEM;
    local *scope = grow(c->scope, &c->capscope, c->nscope, sizeof(*scope));
    if (scope == NULL)
        return nomem(c);
    c->scope = scope;
    *slot = (uint16_t)c->next_slot++;
    if (c->next_slot > c->cur->nlocals)
        c->cur->nlocals = c->next_slot;
    c->scope[c->nscope].sym = k;
    c->scope[c->nscope].slot = *slot;
    c->scope[c->nscope].prev = c->syms[k].local;
    c->syms[k].local = (int32_t)c->nscope;
    c->nscope++;
    return 0;
}

/* Ends the bindings made after the scope had n entries. */
static void unbind_to(compiler *c, uint32_t n)
{
    while (c->nscope > n) {
        const local *l = &c->scope[--c->nscope];
        c->syms[l->sym].local = l->prev;
    }
}

static const char *kind_word(uint8_t kind)
{
    switch (kind) {
    case AVM_FN_BEHAVIOR:
        return "behaviour";
    case AVM_FN_PURE:
        return "pure function";
    case AVM_FN_MAIN:
        return "main";
    default:
        return "function";
    }
}

/* Constants. */

static int quote_value(compiler *c, const avm_ast *e, avm_val *out)
{
    const avm_ast *bad;
    int rv = avm_ast_value(e, out, &bad);
    if (rv == AVM_ETOODEEP)
        return error_at(c, bad, "quoted constant nests deeper than %d lists",
                        MAX_CONST_DEPTH);
    if (rv == AVM_ETOOBIG)
        return error_at(c, bad, "quoted list has more than %u elements",
                        AVM_MAX_LIST_LEN);
    return rv == 0 ? 0 : nomem(c);
}

static int compile_literal(compiler *c, const avm_ast *e)
{
    avm_val v;
    int rv = quote_value(c, e, &v);
    if (rv != 0)
        return rv;
    return emit_value(c, e, v);
}

/* Sequences: the value of the last expression, nil when empty. */
static int compile_body(compiler *c, const avm_ast *at, avm_ast *const *items, uint32_t n,
                        bool tail)
{
    if (n == 0)
        return emit_simple(c, at, OP_NIL, 0, 1);
    for (uint32_t i = 0; i < n; i++) {
        bool last = i + 1 == n;
        int rv = compile_expr(c, items[i], tail && last);
        if (rv != 0)
            return rv;
        if (!last) {
            rv = emit_simple(c, items[i], OP_POP, 1, 0);
            if (rv != 0)
                return rv;
        }
    }
    return 0;
}

/* Calls. */

/* Emits the call of function fn whose argc arguments are on the stack. Only
 * defuns and pure functions replace their frame: main and behaviours must
 * return to their caller. */
static int emit_call(compiler *c, const avm_ast *at, uint32_t fn, uint32_t argc,
                     bool tail)
{
    int rv = add_line(c, at);
    if (rv != 0)
        return rv;
    tail = tail && (c->cur->kind == AVM_FN_FUNC || c->cur->kind == AVM_FN_PURE);
    emit_u8(c, tail ? OP_TAILCALL : OP_CALL);
    emit_u16(c, (uint16_t)fn);
    emit_u8(c, (uint8_t)argc);
    pop(c, argc);
    if (!tail)
        return push(c, at, 1);
    /* Nothing after a tail call runs; the code that follows (a jump to the end,
     * the final OP_RET) is compiled as if a value were there, without counting it
     * in max_stack. */
    c->depth += 1;
    return 0;
}

static int compile_args(compiler *c, const avm_ast *e, uint32_t from)
{
    for (uint32_t i = from; i < e->u.list.n; i++) {
        int rv = compile_expr(c, e->u.list.items[i], false);
        if (rv != 0)
            return rv;
    }
    return 0;
}

static int emit_prim(compiler *c, const avm_ast *at, avm_prim p, uint32_t argc)
{
    int rv = add_line(c, at);
    if (rv != 0)
        return rv;
    emit_u8(c, OP_PRIM);
    emit_u8(c, (uint8_t)p);
    emit_u8(c, (uint8_t)argc);
    pop(c, argc);
    return push(c, at, 1);
}

static int compile_prim(compiler *c, const avm_ast *e, avm_prim p)
{
    const avm_ast *head = e->u.list.items[0];
    avm_ast *const *args = e->u.list.items + 1;
    uint32_t argc = e->u.list.n - 1;
    int rv;

    if (p == AVM_PRIM_ADD || p == AVM_PRIM_MUL || p == AVM_PRIM_SUB) {
        /* Variadic in the language, binary in the bytecode: fold left. */
        if (argc == 0)
            return error_at(c, e, "'%.*s' needs at least 1 argument", SHOW(head));
        rv = compile_expr(c, args[0], false);
        if (rv != 0)
            return rv;
        if (argc == 1)
            return p == AVM_PRIM_SUB ? emit_prim(c, e, AVM_PRIM_NEG, 1) : 0;
        for (uint32_t i = 1; i < argc; i++) {
            rv = compile_expr(c, args[i], false);
            if (rv != 0)
                return rv;
            rv = emit_prim(c, e, p, 2);
            if (rv != 0)
                return rv;
        }
        return 0;
    }
    if (avm_prim_table[p].arity < 0) {
        if (argc < 1)
            return error_at(c, e, "'%.*s' needs at least 1 argument", SHOW(head));
        if (argc > MAX_ARGC)
            return error_at(c, e, "'%.*s' takes at most %u arguments, got %u", SHOW(head),
                            MAX_ARGC, argc);
    } else if (argc != (uint32_t)avm_prim_table[p].arity) {
        uint32_t want = (uint32_t)avm_prim_table[p].arity;
        return error_at(c, e, "'%.*s' takes %u argument%s, got %u", SHOW(head), want,
                        plural(want), argc);
    }
    rv = compile_args(c, e, 1);
    if (rv != 0)
        return rv;
    return emit_prim(c, e, p, argc);
}

static int emit_avm(compiler *c, const avm_ast *at, avm_instr in, uint32_t argc)
{
    int rv = add_line(c, at);
    if (rv != 0)
        return rv;
    emit_u8(c, OP_AVM);
    emit_u8(c, (uint8_t)in);
    emit_u8(c, (uint8_t)argc);
    if (avm_instr_table[in].unsafe)
        c->cur->uses_unsafe = true;
    pop(c, argc);
    return push(c, at, 1);
}

/* Appends bytes to a helper's source text. */
static void put_sym(avm_buf *b, const avm_ast *sym)
{
    avm_buf_put(b, sym->u.s.p, sym->u.s.len);
}

static void set_positions(avm_ast *e, uint32_t line, uint32_t col)
{
    e->line = line;
    e->col = col;
    if (e->type == AVM_AST_LIST)
        for (uint32_t i = 0; i < e->u.list.n; i++)
            set_positions(e->u.list.items[i], line, col);
}

static int add_fn(compiler *c, const avm_ast *form, const avm_ast *name, uint8_t kind,
                  uint8_t nparams, avm_ast *const *params, avm_ast *const *body,
                  uint32_t nbody);

/* The hidden filter behind (scryMeta PRED) / (scryDeep PRED): a tail-recursive
 * defun over the candidate list that keeps, in order, the entries for which PRED
 * holds. It is written in the language itself and compiled like user code, with
 * every position set to the scry form's so that a failing predicate call points
 * there. Returns its function index in *out. */
static int scry_helper(compiler *c, const avm_ast *at, avm_instr in, const avm_ast *pred,
                       uint32_t *out)
{
    bool deep = in == AVM_I_SCRY_DEEP;
    avm_buf name, src;
    avm_ast_doc *doc = NULL;
    avm_read_error rerr;
    int rv;

    avm_buf_init(&name);
    avm_buf_init(&src);
    avm_buf_puts(&name, deep ? "__scryDeep_" : "__scryMeta_");
    put_sym(&name, pred);
    if (name.err) {
        rv = nomem(c);
        goto out;
    }
    int idx = find_fn(c, name.data, (uint32_t)name.len);
    if (idx >= 0) {
        *out = (uint32_t)idx;
        rv = 0;
        goto out;
    }

    /* Entries are (oid meta) for scryMeta, (oid behaviour meta) for scryDeep. */
    avm_buf_puts(&src, "(defun ");
    avm_buf_put(&src, name.data, name.len);
    avm_buf_puts(&src, " (__l __acc) (if (null? __l) (reverse __acc) (if (");
    put_sym(&src, pred);
    avm_buf_puts(&src, deep ? " (nth (head __l) 1) (nth (head __l) 2))"
                            : " (nth (head __l) 1))");
    avm_buf_puts(&src, " (");
    avm_buf_put(&src, name.data, name.len);
    avm_buf_puts(&src, " (tail __l) (cons (head __l) __acc)) (");
    avm_buf_put(&src, name.data, name.len);
    avm_buf_puts(&src, " (tail __l) __acc))))");
    if (src.err) {
        rv = nomem(c);
        goto out;
    }
    rv = avm_read(src.data, src.len, &doc, &rerr);
    if (rv == AVM_ENOMEM) {
        rv = nomem(c);
        goto out;
    }
    if (rv != 0) {
        rv = error_at(c, at, "internal compiler error: scry helper: %s", rerr.msg);
        goto out;
    }
    avm_ast_doc **extra = grow(c->extra, &c->capextra, c->nextra, sizeof(*extra));
    if (extra == NULL) {
        avm_ast_doc_free(doc);
        rv = nomem(c);
        goto out;
    }
    c->extra = extra;
    c->extra[c->nextra++] = doc;
    avm_ast *form = doc->forms[0];
    set_positions(form, at->line, at->col);
    avm_ast *const *it = form->u.list.items;
    rv = add_fn(c, form, it[1], AVM_FN_FUNC, 2, it[2]->u.list.items, it + 3, 1);
    if (rv == 0) {
        *out = c->nfns - 1;
        c->fns[*out]->hidden = true;
    }
out:
    avm_buf_free(&name);
    avm_buf_free(&src);
    return rv;
}

static int compile_scry(compiler *c, const avm_ast *e, avm_instr in, bool tail)
{
    const char *iname = avm_instr_table[in].name;
    uint32_t want = in == AVM_I_SCRY_DEEP ? 2 : 1;
    if (e->u.list.n != 2 || e->u.list.items[1]->type != AVM_AST_SYM)
        return error_at(c, e, "%s takes the name of a predicate function: (%s PRED)",
                        iname, iname);
    const avm_ast *pred = e->u.list.items[1];
    int idx = find_visible(c, pred);
    if (idx < 0)
        return error_at(c, pred, "unknown function '%.*s'", SHOW(pred));
    const cfn *pf = c->fns[idx];
    if (pf->kind == AVM_FN_BEHAVIOR)
        return error_at(c, pred,
                        "%s predicate '%.*s' is a behaviour; it must be a pure function "
                        "or defun",
                        iname, SHOW(pred));
    if (pf->nparams != want)
        return error_at(c, pred, "%s predicate '%.*s' must take %u argument%s, not %u",
                        iname, SHOW(pred), want, plural(want), pf->nparams);
    uint32_t helper;
    int rv = scry_helper(c, e, in, pred, &helper);
    if (rv != 0)
        return rv;
    rv = emit_avm(c, e, in, 0);
    if (rv != 0)
        return rv;
    /* The accumulator starts as the empty list. */
    emit_u8(c, OP_LIST);
    emit_u16(c, 0);
    rv = push(c, e, 1);
    if (rv != 0)
        return rv;
    return emit_call(c, e, helper, 2, tail);
}

/* (registerPure NAME FN) / (updatePure NAME FN): FN names a pure function of this
 * file and is passed as its function index. */
static int compile_pure_ref(compiler *c, const avm_ast *e, avm_instr in)
{
    const char *iname = avm_instr_table[in].name;
    if (e->u.list.n != 3)
        return error_at(c, e, "'%s' takes 2 arguments, got %u", iname, e->u.list.n - 1);
    const avm_ast *fsym = e->u.list.items[2];
    if (fsym->type != AVM_AST_SYM)
        return error_at(c, fsym,
                        "the second argument of %s must name a pure function of this "
                        "file",
                        iname);
    int idx = find_visible(c, fsym);
    if (idx < 0 || c->fns[idx]->kind != AVM_FN_PURE)
        return error_at(c, fsym, "'%.*s' is not a pure function of this file",
                        SHOW(fsym));
    int rv = compile_expr(c, e->u.list.items[1], false);
    if (rv != 0)
        return rv;
    rv = emit_value(c, fsym, avm_int(idx));
    if (rv != 0)
        return rv;
    return emit_avm(c, e, in, 2);
}

static int compile_instr(compiler *c, const avm_ast *e, avm_instr in, bool tail)
{
    const avm_instr_info *info = &avm_instr_table[in];
    uint32_t argc = e->u.list.n - 1;

    if (c->cur->kind == AVM_FN_PURE)
        return error_at(c, e, "pure function '%s' cannot use the AVM instruction '%s'",
                        c->cur->name, info->name);
    if (in == AVM_I_SCRY_META || in == AVM_I_SCRY_DEEP)
        return compile_scry(c, e, in, tail);
    if (in == AVM_I_REGISTER_PURE || in == AVM_I_UPDATE_PURE)
        return compile_pure_ref(c, e, in);
    if (argc < info->min_argc || argc > info->max_argc) {
        if (info->min_argc == info->max_argc)
            return error_at(c, e, "'%s' takes %u argument%s, got %u", info->name,
                            info->min_argc, plural(info->min_argc), argc);
        return error_at(c, e, "'%s' takes %u to %u arguments, got %u", info->name,
                        info->min_argc, info->max_argc, argc);
    }
    int rv = compile_args(c, e, 1);
    if (rv != 0)
        return rv;
    return emit_avm(c, e, in, argc);
}

static int compile_user_call(compiler *c, const avm_ast *e, bool tail)
{
    const avm_ast *head = e->u.list.items[0];
    uint32_t argc = e->u.list.n - 1;
    int idx = find_visible(c, head);
    if (idx < 0)
        return error_at(c, head, "unknown function '%.*s'", SHOW(head));
    const cfn *f = c->fns[idx];
    if (f->kind == AVM_FN_BEHAVIOR)
        return error_at(c, e, "behaviour '%.*s' is not a function; use (call obj input)",
                        SHOW(head));
    if (c->cur->kind == AVM_FN_PURE && f->kind != AVM_FN_PURE)
        return error_at(c, e, "pure function '%s' cannot call the non-pure %s '%.*s'",
                        c->cur->name, kind_word(f->kind), SHOW(head));
    if (argc != f->nparams)
        return error_at(c, e, "function '%.*s' takes %u argument%s, got %u", SHOW(head),
                        f->nparams, plural(f->nparams), argc);
    int rv = compile_args(c, e, 1);
    if (rv != 0)
        return rv;
    return emit_call(c, e, (uint32_t)idx, argc, tail);
}

/* Special forms. */

static int compile_quote(compiler *c, const avm_ast *e)
{
    if (e->u.list.n != 2)
        return error_at(c, e, "quote takes 1 argument, got %u", e->u.list.n - 1);
    avm_val v;
    int rv = quote_value(c, e->u.list.items[1], &v);
    if (rv != 0)
        return rv;
    return emit_value(c, e, v);
}

static int compile_let(compiler *c, const avm_ast *e, bool tail)
{
    if (e->u.list.n < 2 || e->u.list.items[1]->type != AVM_AST_LIST)
        return error_at(c, e,
                        "let needs a list of bindings: (let ((name expr) ...) "
                        "body...)");
    const avm_ast *bindings = e->u.list.items[1];
    uint32_t saved_scope = c->nscope, saved_slot = c->next_slot;
    int rv;

    for (uint32_t i = 0; i < bindings->u.list.n; i++) {
        const avm_ast *b = bindings->u.list.items[i];
        if (b->type != AVM_AST_LIST || b->u.list.n != 2 ||
            b->u.list.items[0]->type != AVM_AST_SYM)
            return error_at(c, b, "a let binding must be (name expr)");
        rv = compile_expr(c, b->u.list.items[1], false);
        if (rv != 0)
            return rv;
        /* Bound after its expression: each binding sees the earlier ones only. */
        uint16_t slot;
        rv = bind_local(c, b->u.list.items[0], &slot);
        if (rv != 0)
            return rv;
        emit_u8(c, OP_STORE);
        emit_u16(c, slot);
        pop(c, 1);
    }
    rv = compile_body(c, e, e->u.list.items + 2, e->u.list.n - 2, tail);
    if (rv != 0)
        return rv;
    /* The names and slots are free again for later lets. */
    unbind_to(c, saved_scope);
    c->next_slot = saved_slot;
    return 0;
}

static int compile_if(compiler *c, const avm_ast *e, bool tail)
{
    if (e->u.list.n != 3 && e->u.list.n != 4)
        return error_at(c, e, "if takes 2 or 3 arguments: (if test then [else])");
    uint32_t jelse, jend;
    int rv = compile_expr(c, e->u.list.items[1], false);
    if (rv != 0)
        return rv;
    if ((rv = emit_jump(c, e, OP_JMPF, &jelse)) != 0)
        return rv;
    uint32_t h = c->depth;
    if ((rv = compile_expr(c, e->u.list.items[2], tail)) != 0)
        return rv;
    if ((rv = emit_jump(c, e, OP_JMP, &jend)) != 0)
        return rv;
    c->depth = h;
    patch_jump(c, jelse);
    if (e->u.list.n == 4)
        rv = compile_expr(c, e->u.list.items[3], tail);
    else
        rv = emit_simple(c, e, OP_NIL, 0, 1);
    if (rv != 0)
        return rv;
    patch_jump(c, jend);
    return 0;
}

/* (when c body...) and (unless c body...): the body's value, or nil. */
static int compile_when(compiler *c, const avm_ast *e, bool unless, bool tail)
{
    if (e->u.list.n < 2)
        return error_at(c, e, "%s needs a test: (%s test body...)",
                        unless ? "unless" : "when", unless ? "unless" : "when");
    uint32_t jskip, jend;
    int rv = compile_expr(c, e->u.list.items[1], false);
    if (rv != 0)
        return rv;
    if ((rv = emit_jump(c, e, OP_JMPF, &jskip)) != 0)
        return rv;
    uint32_t h = c->depth;
    if (unless)
        rv = emit_simple(c, e, OP_NIL, 0, 1);
    else
        rv = compile_body(c, e, e->u.list.items + 2, e->u.list.n - 2, tail);
    if (rv != 0)
        return rv;
    if ((rv = emit_jump(c, e, OP_JMP, &jend)) != 0)
        return rv;
    c->depth = h;
    patch_jump(c, jskip);
    if (unless)
        rv = compile_body(c, e, e->u.list.items + 2, e->u.list.n - 2, tail);
    else
        rv = emit_simple(c, e, OP_NIL, 0, 1);
    if (rv != 0)
        return rv;
    patch_jump(c, jend);
    return 0;
}

static int compile_cond(compiler *c, const avm_ast *e, bool tail)
{
    uint32_t ends = 0, h = c->depth;
    bool has_else = false;
    int rv;

    for (uint32_t i = 1; i < e->u.list.n; i++) {
        const avm_ast *cl = e->u.list.items[i];
        if (cl->type != AVM_AST_LIST || cl->u.list.n == 0)
            return error_at(c, cl, "a cond clause must be (test body...)");
        avm_ast *const *it = cl->u.list.items;
        if (avm_ast_is_sym(it[0], "else")) {
            if (i + 1 != e->u.list.n)
                return error_at(c, cl, "else must be the last cond clause");
            rv = compile_body(c, cl, it + 1, cl->u.list.n - 1, tail);
            if (rv != 0)
                return rv;
            has_else = true;
            break;
        }
        uint32_t jnext;
        if ((rv = compile_expr(c, it[0], false)) != 0)
            return rv;
        if (cl->u.list.n == 1) {
            /* (test) alone: the test's value when it is true. */
            if ((rv = emit_simple(c, cl, OP_DUP, 0, 1)) != 0)
                return rv;
            if ((rv = emit_jump(c, cl, OP_JMPF, &jnext)) != 0)
                return rv;
            if ((rv = emit_jump_chain(c, cl, OP_JMP, &ends)) != 0)
                return rv;
            patch_jump(c, jnext);
            if ((rv = emit_simple(c, cl, OP_POP, 1, 0)) != 0)
                return rv;
        } else {
            if ((rv = emit_jump(c, cl, OP_JMPF, &jnext)) != 0)
                return rv;
            rv = compile_body(c, cl, it + 1, cl->u.list.n - 1, tail);
            if (rv != 0)
                return rv;
            if ((rv = emit_jump_chain(c, cl, OP_JMP, &ends)) != 0)
                return rv;
            c->depth = h;
            patch_jump(c, jnext);
        }
    }
    if (!has_else && (rv = emit_simple(c, e, OP_NIL, 0, 1)) != 0)
        return rv;
    patch_chain(c, ends);
    assert(c->depth == h + 1);
    return 0;
}

/* (and e...) / (or e...): the value that decided, short-circuiting. */
static int compile_andor(compiler *c, const avm_ast *e, bool is_or)
{
    uint32_t n = e->u.list.n - 1, ends = 0;
    avm_ast *const *args = e->u.list.items + 1;
    int rv;

    if (n == 0)
        return is_or ? emit_simple(c, e, OP_NIL, 0, 1) : emit_value(c, e, avm_bool(true));
    for (uint32_t i = 0; i + 1 < n; i++) {
        if ((rv = compile_expr(c, args[i], false)) != 0)
            return rv;
        if ((rv = emit_simple(c, e, OP_DUP, 0, 1)) != 0)
            return rv;
        if (is_or) {
            uint32_t jnext;
            if ((rv = emit_jump(c, e, OP_JMPF, &jnext)) != 0)
                return rv;
            if ((rv = emit_jump_chain(c, e, OP_JMP, &ends)) != 0)
                return rv;
            patch_jump(c, jnext);
        } else if ((rv = emit_jump_chain(c, e, OP_JMPF, &ends)) != 0) {
            return rv;
        }
        if ((rv = emit_simple(c, e, OP_POP, 1, 0)) != 0)
            return rv;
    }
    if ((rv = compile_expr(c, args[n - 1], false)) != 0)
        return rv;
    patch_chain(c, ends);
    return 0;
}

static int compile_set(compiler *c, const avm_ast *e)
{
    if (e->u.list.n != 3 || e->u.list.items[1]->type != AVM_AST_SYM)
        return error_at(c, e, "set! takes a variable and a value: (set! name expr)");
    const avm_ast *sym = e->u.list.items[1];
    const local *l = find_local(c, sym);
    if (l == NULL)
        return error_at(c, sym, "unknown variable '%.*s'", SHOW(sym));
    uint16_t slot = l->slot;
    int rv = compile_expr(c, e->u.list.items[2], false);
    if (rv != 0)
        return rv;
    if ((rv = emit_simple(c, e, OP_DUP, 0, 1)) != 0)
        return rv;
    emit_u8(c, OP_STORE);
    emit_u16(c, slot);
    pop(c, 1);
    return 0;
}

static int compile_list(compiler *c, const avm_ast *e)
{
    uint32_t n = e->u.list.n - 1;
    if (n > MAX_U16)
        return error_at(c, e, "list takes at most %u arguments, got %u", MAX_U16, n);
    int rv = compile_args(c, e, 1);
    if (rv != 0)
        return rv;
    emit_u8(c, OP_LIST);
    emit_u16(c, (uint16_t)n);
    pop(c, n);
    return push(c, e, 1);
}

static int compile_form(compiler *c, const avm_ast *e, bool tail)
{
    if (e->u.list.n == 0)
        return error_at(c, e, "empty form (); write '() for the empty list");
    const avm_ast *head = e->u.list.items[0];
    if (head->type != AVM_AST_SYM)
        return error_at(c, e, "the first element of a form must be a name");

    if (avm_ast_is_sym(head, "quote"))
        return compile_quote(c, e);
    if (avm_ast_is_sym(head, "let"))
        return compile_let(c, e, tail);
    if (avm_ast_is_sym(head, "if"))
        return compile_if(c, e, tail);
    if (avm_ast_is_sym(head, "do") || avm_ast_is_sym(head, "begin"))
        return compile_body(c, e, e->u.list.items + 1, e->u.list.n - 1, tail);
    if (avm_ast_is_sym(head, "when"))
        return compile_when(c, e, false, tail);
    if (avm_ast_is_sym(head, "unless"))
        return compile_when(c, e, true, tail);
    if (avm_ast_is_sym(head, "cond"))
        return compile_cond(c, e, tail);
    if (avm_ast_is_sym(head, "and"))
        return compile_andor(c, e, false);
    if (avm_ast_is_sym(head, "or"))
        return compile_andor(c, e, true);
    if (avm_ast_is_sym(head, "set!"))
        return compile_set(c, e);
    if (avm_ast_is_sym(head, "list"))
        return compile_list(c, e);
    if (IN_NAMES(head, toplevel_forms))
        return error_at(c, e, "'%.*s' is only allowed at top level", SHOW(head));

    avm_prim p = find_prim(head);
    if (p != AVM_PRIM_NONE)
        return compile_prim(c, e, p);
    avm_instr in = find_instr(head);
    if (in != AVM_INSTR_NONE)
        return compile_instr(c, e, in, tail);
    return compile_user_call(c, e, tail);
}

static int compile_expr(compiler *c, const avm_ast *e, bool tail)
{
    if (e->type == AVM_AST_LIST)
        return compile_form(c, e, tail);
    if (e->type == AVM_AST_SYM) {
        const local *l = find_local(c, e);
        if (l == NULL)
            return error_at(c, e, "unknown variable '%.*s'", SHOW(e));
        emit_u8(c, OP_LOAD);
        emit_u16(c, l->slot);
        return push(c, e, 1);
    }
    return compile_literal(c, e);
}

/* Functions. */

static int compile_fn(compiler *c, cfn *f)
{
    int rv;
    c->cur = f;
    c->depth = 0;
    unbind_to(c, 0);
    c->next_slot = 0;
    f->nlocals = 0;
    for (uint32_t i = 0; i < f->nparams; i++) {
        uint16_t slot;
        if ((rv = bind_local(c, f->params[i], &slot)) != 0)
            return rv;
    }
    rv = compile_body(c, f->form, f->body, f->nbody, true);
    if (rv != 0)
        return rv;
    emit_u8(c, OP_RET);
    pop(c, 1);
    assert(c->depth == 0);
    if (f->code.err)
        return nomem(c);
    if (f->code.len > MAX_CODE)
        return error_at(c, f->form, "function '%s' is too large", f->name);
    return 0;
}

static void free_fn(cfn *f)
{
    avm_buf_free(&f->code);
    for (uint32_t i = 0; i < f->nconsts; i++)
        avm_val_release(f->consts[i]);
    free(f->consts);
    free(f->chash);
    free(f->lines);
    free(f);
}

/* Pass 1. */

static int add_fn(compiler *c, const avm_ast *form, const avm_ast *name, uint8_t kind,
                  uint8_t nparams, avm_ast *const *params, avm_ast *const *body,
                  uint32_t nbody)
{
    if (c->nfns > MAX_U16)
        return error_at(c, form, "more than %u functions", MAX_U16 + 1);
    cfn **fns = grow(c->fns, &c->capfns, c->nfns, sizeof(*fns));
    if (fns == NULL)
        return nomem(c);
    c->fns = fns;
    cfn *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return nomem(c);
    f->name = name ? name->u.s.p : "main";
    f->name_len = name ? name->u.s.len : 4;
    f->kind = kind;
    f->nparams = nparams;
    f->form = form;
    f->params = params;
    f->body = body;
    f->nbody = nbody;
    avm_buf_init(&f->code);
    c->fns[c->nfns++] = f;
    if (kind != AVM_FN_MAIN) {
        uint32_t k;
        if (sym_intern(c, f->name, f->name_len, &k) != 0)
            return AVM_ENOMEM;
        c->syms[k].fn = (int32_t)(c->nfns - 1);
    }
    return 0;
}

/* A definition's name: a symbol, unique; pure functions and defuns may not take
 * the name of a form, primitive or instruction, since calls would never reach
 * them. */
static int check_name(compiler *c, const avm_ast *form, const avm_ast *name, uint8_t kind)
{
    const char *what = form->u.list.items[0]->u.s.p;
    if (name->type != AVM_AST_SYM)
        return error_at(c, form, "%s needs a name: (%s NAME ...)", what, what);
    if (kind != AVM_FN_BEHAVIOR &&
        (IN_NAMES(name, special_forms) || IN_NAMES(name, toplevel_forms) ||
         find_prim(name) != AVM_PRIM_NONE || find_instr(name) != AVM_INSTR_NONE))
        return error_at(c, name, "'%.*s' is a reserved name", SHOW(name));
    if (name->u.s.len >= 2 && name->u.s.p[0] == '_' && name->u.s.p[1] == '_')
        return error_at(c, name, "names starting with '__' are reserved: '%.*s'",
                        SHOW(name));
    int prev = find_fn(c, name->u.s.p, name->u.s.len);
    if (prev >= 0)
        return error_at(c, name,
                        "duplicate definition of '%.*s' (first defined at %u:%u)",
                        SHOW(name), c->fns[prev]->form->line, c->fns[prev]->form->col);
    return 0;
}

static int collect(compiler *c, const avm_ast *form)
{
    if (form->type != AVM_AST_LIST || form->u.list.n == 0 ||
        form->u.list.items[0]->type != AVM_AST_SYM)
        return error_at(c, form,
                        "expected a top-level form: (behavior ...), (pure ...), "
                        "(defun ...) or (main ...)");
    const avm_ast *head = form->u.list.items[0];
    avm_ast *const *it = form->u.list.items;
    uint32_t n = form->u.list.n;
    int rv;

    if (avm_ast_is_sym(head, "behavior") || avm_ast_is_sym(head, "behaviour") ||
        avm_ast_is_sym(head, "main")) {
        bool is_main = avm_ast_is_sym(head, "main");
        uint32_t first = is_main ? 1 : 2;
        if (!is_main) {
            if (n < 2)
                return error_at(c, form, "%s needs a name: (%s NAME body...)",
                                head->u.s.p, head->u.s.p);
            if ((rv = check_name(c, form, it[1], AVM_FN_BEHAVIOR)) != 0)
                return rv;
        } else if (c->main_fn >= 0) {
            return error_at(c, form, "duplicate main (first at %u:%u)",
                            c->fns[c->main_fn]->form->line,
                            c->fns[c->main_fn]->form->col);
        }
        /* An empty parameter list is allowed, for symmetry with defun. */
        if (n > first && it[first]->type == AVM_AST_LIST && it[first]->u.list.n == 0)
            first++;
        if (is_main)
            c->main_fn = (int32_t)c->nfns;
        return add_fn(c, form, is_main ? NULL : it[1],
                      is_main ? AVM_FN_MAIN : AVM_FN_BEHAVIOR, 0, NULL, it + first,
                      n - first);
    }
    if (avm_ast_is_sym(head, "pure") || avm_ast_is_sym(head, "defun")) {
        uint8_t kind = avm_ast_is_sym(head, "pure") ? AVM_FN_PURE : AVM_FN_FUNC;
        if (n < 3 || it[2]->type != AVM_AST_LIST)
            return error_at(c, form,
                            "%s needs a name and parameters: (%s NAME (PARAMS...) "
                            "body...)",
                            head->u.s.p, head->u.s.p);
        if ((rv = check_name(c, form, it[1], kind)) != 0)
            return rv;
        const avm_ast *params = it[2];
        if (params->u.list.n > MAX_ARGC)
            return error_at(c, params, "more than %u parameters", MAX_ARGC);
        for (uint32_t i = 0; i < params->u.list.n; i++) {
            const avm_ast *p = params->u.list.items[i];
            if (p->type != AVM_AST_SYM)
                return error_at(c, p, "a parameter must be a name");
            for (uint32_t j = 0; j < i; j++)
                if (text_eq(p->u.s.p, p->u.s.len, params->u.list.items[j]->u.s.p,
                            params->u.list.items[j]->u.s.len))
                    return error_at(c, p, "duplicate parameter '%.*s'", SHOW(p));
        }
        return add_fn(c, form, it[1], kind, (uint8_t)params->u.list.n,
                      params->u.list.items, it + 3, n - 3);
    }
    return error_at(c, head,
                    "unknown top-level form '%.*s'; expected behavior, pure, defun or "
                    "main",
                    SHOW(head));
}

/* Moves the compiled functions into a new module. */
static int build_module(compiler *c, const char *source_name, avm_module **out)
{
    avm_module *m = avm_module_new(c->nfns);
    if (m == NULL)
        return nomem(c);
    m->main_fn = c->main_fn;
    if (avm_cstr(AVM_STR, source_name, &m->source) != 0)
        goto nomem;
    for (uint32_t i = 0; i < c->nfns; i++) {
        cfn *f = c->fns[i];
        avm_func *mf = &m->funcs[i];
        if (avm_str_new(AVM_STR, f->name, f->name_len, &mf->name) != 0)
            goto nomem;
        mf->kind = f->kind;
        mf->nparams = f->nparams;
        mf->nlocals = (uint16_t)f->nlocals;
        mf->max_stack = (uint16_t)f->max_stack;
        mf->uses_unsafe = f->uses_unsafe;
        mf->code_len = (uint32_t)f->code.len;
        mf->code = (uint8_t *)f->code.data;
        avm_buf_init(&f->code);
        mf->nconsts = f->nconsts;
        mf->consts = f->consts;
        f->consts = NULL;
        f->nconsts = 0;
        mf->nlines = f->nlines;
        mf->lines = f->lines;
        f->lines = NULL;
        f->nlines = 0;
    }
    *out = m;
    return 0;

nomem:
    avm_module_release(m);
    return nomem(c);
}

static void set_file(avm_diag *d, const char *source_name)
{
    snprintf(d->file, sizeof(d->file), "%s", source_name);
}

int avm_compile(const char *source_name, const char *src, size_t len, avm_module **out,
                avm_diag *diag)
{
    compiler c;
    avm_diag scratch;
    avm_read_error rerr;
    avm_module *m = NULL;
    int rv;

    *out = NULL;
    if (source_name == NULL)
        source_name = "<input>";
    if (diag == NULL)
        diag = &scratch;
    memset(diag, 0, sizeof(*diag));
    set_file(diag, source_name);
    memset(&c, 0, sizeof(c));
    c.diag = diag;
    c.main_fn = -1;

    rv = avm_read(src, len, &c.doc, &rerr);
    if (rv != 0) {
        diag->line = rerr.line;
        diag->col = rerr.col;
        snprintf(diag->msg, sizeof(diag->msg), "%s", rerr.msg);
        return rv;
    }
    for (uint32_t i = 0; i < c.doc->nforms; i++)
        if ((rv = collect(&c, c.doc->forms[i])) != 0)
            goto done;
    /* Helpers synthesized while compiling are appended and compiled here too. */
    for (uint32_t i = 0; i < c.nfns; i++)
        if ((rv = compile_fn(&c, c.fns[i])) != 0)
            goto done;
    if ((rv = build_module(&c, source_name, &m)) != 0)
        goto done;

    char errmsg[sizeof(diag->msg) - 64];
    rv = avm_module_verify(m, errmsg, sizeof(errmsg));
    if (rv != 0) {
        avm_module_release(m);
        rv = error_at(&c, NULL, "internal compiler error: %s", errmsg);
        goto done;
    }
    rv = avm_module_hash(m);
    if (rv != 0) {
        avm_module_release(m);
        if (rv == AVM_ENOMEM)
            nomem(&c);
        else
            error_at(&c, NULL, "cannot hash the module: %s", avm_strerror(rv));
        goto done;
    }
    *out = m;

done:
    for (uint32_t i = 0; i < c.nfns; i++)
        free_fn(c.fns[i]);
    free(c.fns);
    free(c.scope);
    free(c.syms);
    free(c.symtab);
    for (uint32_t i = 0; i < c.nextra; i++)
        avm_ast_doc_free(c.extra[i]);
    free(c.extra);
    avm_ast_doc_free(c.doc);
    return rv;
}

void avm_diag_format(const avm_diag *d, char *out, size_t n)
{
    if (d->line == 0)
        snprintf(out, n, "%s: %s", d->file, d->msg);
    else
        snprintf(out, n, "%s:%u:%u: %s", d->file, d->line, d->col, d->msg);
}
