/* The .avm reader: a recursive-descent S-expression parser with bounded nesting. */
#include "reader.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "value.h"

/* Arena: nodes, their child arrays and their strings are bump-allocated in chunks
 * and freed together, so an error anywhere in a read leaks nothing. */

#define ARENA_CHUNK (64u * 1024)
#define ARENA_ALIGN (alignof(max_align_t))

struct arena_chunk {
    struct arena_chunk *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
};

struct avm_arena {
    struct arena_chunk *head;
};

static void *arena_alloc(avm_arena *a, size_t n)
{
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    struct arena_chunk *c = a->head;
    if (c == NULL || c->cap - c->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->used = 0;
        c->cap = cap;
        /* A chunk made for one large request goes behind the current one so the
         * current chunk's free space stays in use. */
        if (a->head != NULL && cap > ARENA_CHUNK) {
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    return p;
}

static void arena_free(avm_arena *a)
{
    if (a == NULL)
        return;
    struct arena_chunk *c = a->head;
    while (c != NULL) {
        struct arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

typedef struct reader {
    const char *p, *end;
    uint32_t line, col;
    avm_arena *arena;
    /* Children of the lists being read, innermost last: a list takes its items
     * from the top of this stack when it closes. */
    avm_ast **stack;
    size_t nstack, capstack;
    avm_buf scratch; /* string bytes while unescaping */
    avm_read_error *err;
} reader;

static int fail_at(reader *r, uint32_t line, uint32_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(reader *r, uint32_t line, uint32_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err->msg, sizeof(r->err->msg), fmt, ap);
    va_end(ap);
    r->err->line = line;
    r->err->col = col;
    return AVM_ECOMPILE;
}

static int fail_nomem(reader *r)
{
    snprintf(r->err->msg, sizeof(r->err->msg), "out of memory");
    r->err->line = r->err->col = 0;
    return AVM_ENOMEM;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_delim(char c)
{
    return is_space(c) || c == '(' || c == ')' || c == '"' || c == '\'' || c == ';';
}

static void advance(reader *r)
{
    if (*r->p == '\n') {
        r->line++;
        r->col = 1;
    } else {
        r->col++;
    }
    r->p++;
}

static void skip_space(reader *r)
{
    while (r->p < r->end) {
        if (is_space(*r->p)) {
            advance(r);
        } else if (*r->p == ';') {
            while (r->p < r->end && *r->p != '\n')
                advance(r);
        } else {
            break;
        }
    }
}

static avm_ast *new_node(reader *r, avm_ast_type type, uint32_t line, uint32_t col)
{
    avm_ast *n = arena_alloc(r->arena, sizeof(*n));
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->type = (uint8_t)type;
    n->line = line;
    n->col = col;
    return n;
}

/* Copies bytes into the arena, NUL-terminated, as the text of a node. */
static int set_text(reader *r, avm_ast *n, const char *p, size_t len)
{
    char *s = arena_alloc(r->arena, len + 1);
    if (s == NULL)
        return fail_nomem(r);
    if (len > 0)
        memcpy(s, p, len);
    s[len] = '\0';
    n->u.s.p = s;
    n->u.s.len = (uint32_t)len;
    return 0;
}

static int push(reader *r, avm_ast *n)
{
    if (r->nstack == r->capstack) {
        size_t cap = r->capstack ? r->capstack * 2 : 64;
        avm_ast **s = realloc(r->stack, cap * sizeof(*s));
        if (s == NULL)
            return fail_nomem(r);
        r->stack = s;
        r->capstack = cap;
    }
    r->stack[r->nstack++] = n;
    return 0;
}

/* Moves the stack entries above base into an arena array. */
static int pop_items(reader *r, size_t base, avm_ast ***items, uint32_t *n)
{
    size_t count = r->nstack - base;
    *items = NULL;
    *n = (uint32_t)count;
    if (count > 0) {
        *items = arena_alloc(r->arena, count * sizeof(**items));
        if (*items == NULL)
            return fail_nomem(r);
        memcpy(*items, r->stack + base, count * sizeof(**items));
    }
    r->nstack = base;
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Reads "..." at r->p into a new node of the given type. */
static int read_string(reader *r, avm_ast_type type, uint32_t line, uint32_t col,
                       avm_ast **out)
{
    uint32_t sline = r->line, scol = r->col;
    r->scratch.len = 0;
    advance(r); /* the opening quote */
    for (;;) {
        if (r->p >= r->end)
            return fail_at(r, sline, scol, "unterminated string");
        char c = *r->p;
        if (c == '"') {
            advance(r);
            break;
        }
        if (c != '\\') {
            avm_buf_put(&r->scratch, &c, 1);
            advance(r);
            continue;
        }
        uint32_t eline = r->line, ecol = r->col;
        advance(r);
        if (r->p >= r->end)
            return fail_at(r, sline, scol, "unterminated string");
        char e = *r->p, v;
        switch (e) {
        case 'n':
            v = '\n';
            break;
        case 't':
            v = '\t';
            break;
        case 'r':
            v = '\r';
            break;
        case '\\':
            v = '\\';
            break;
        case '"':
            v = '"';
            break;
        case 'x': {
            int hi = r->end - r->p > 1 ? hex_digit(r->p[1]) : -1;
            int lo = r->end - r->p > 2 ? hex_digit(r->p[2]) : -1;
            if (hi < 0 || lo < 0)
                return fail_at(r, eline, ecol,
                               "bad escape in string: \\x needs two hex digits");
            advance(r);
            advance(r);
            v = (char)(hi * 16 + lo);
            break;
        }
        default:
            if ((unsigned char)e >= 0x20 && (unsigned char)e < 0x7f)
                return fail_at(r, eline, ecol, "bad escape '\\%c' in string", e);
            return fail_at(r, eline, ecol, "bad escape '\\x%02x' in string",
                           (unsigned char)e);
        }
        advance(r);
        avm_buf_put(&r->scratch, &v, 1);
    }
    if (r->scratch.err)
        return fail_nomem(r);
    avm_ast *n = new_node(r, type, line, col);
    if (n == NULL)
        return fail_nomem(r);
    int rv = set_text(r, n, r->scratch.data ? r->scratch.data : "", r->scratch.len);
    if (rv != 0)
        return rv;
    *out = n;
    return 0;
}

/* Decimal integer with an optional leading '-': 1 if tok is one (value in *v),
 * 0 if tok is not a number, -1 if it is one but does not fit in int64. */
static int parse_int(const char *tok, size_t len, int64_t *v)
{
    size_t i = tok[0] == '-' ? 1 : 0;
    if (i == len)
        return 0;
    for (size_t j = i; j < len; j++)
        if (tok[j] < '0' || tok[j] > '9')
            return 0;
    /* Accumulate towards the sign so that INT64_MIN is representable. */
    int64_t acc = 0;
    for (size_t j = i; j < len; j++) {
        int d = tok[j] - '0';
        if (i == 0) {
            if (acc > (INT64_MAX - d) / 10)
                return -1;
            acc = acc * 10 + d;
        } else {
            if (acc < (INT64_MIN + d) / 10)
                return -1;
            acc = acc * 10 - d;
        }
    }
    *v = acc;
    return 1;
}

static const struct {
    const char *prefix;
    uint8_t kind;
} id_prefixes[] = {
    {"#obj", AVM_OBJID},
    {"#ctl", AVM_CTRLID},
    {"#mach", AVM_MACHID},
    {"#tx", AVM_TXID},
};

/* An atom: a run of non-delimiters, or an identifier literal #kind"...". */
static int read_atom(reader *r, avm_ast **out)
{
    uint32_t line = r->line, col = r->col;
    const char *tok = r->p;
    while (r->p < r->end && !is_delim(*r->p))
        advance(r);
    size_t len = (size_t)(r->p - tok);
    /* Messages quote at most this much of a token. */
    int shown = len > 40 ? 40 : (int)len;
    avm_ast *n;

    if (tok[0] == '#') {
        if (len == 2 && (tok[1] == 't' || tok[1] == 'f')) {
            n = new_node(r, AVM_AST_BOOL, line, col);
            if (n == NULL)
                return fail_nomem(r);
            n->u.b = tok[1] == 't';
            *out = n;
            return 0;
        }
        for (size_t i = 0; i < sizeof(id_prefixes) / sizeof(id_prefixes[0]); i++) {
            if (strlen(id_prefixes[i].prefix) != len ||
                memcmp(id_prefixes[i].prefix, tok, len) != 0)
                continue;
            if (r->p >= r->end || *r->p != '"')
                return fail_at(r, line, col, "bad '#' literal '%.*s': expected %s\"...\"",
                               shown, tok, id_prefixes[i].prefix);
            int rv = read_string(r, AVM_AST_ID, line, col, out);
            if (rv == 0)
                (*out)->id_kind = id_prefixes[i].kind;
            return rv;
        }
        return fail_at(r, line, col,
                       "bad '#' literal '%.*s' (expected #t, #f, #obj\"..\", #ctl\"..\", "
                       "#mach\"..\" or #tx\"..\")",
                       shown, tok);
    }

    int64_t v;
    int isint = parse_int(tok, len, &v);
    if (isint < 0)
        return fail_at(r, line, col, "integer literal %.*s%s is out of range", shown, tok,
                       (size_t)shown < len ? "..." : "");
    if (isint > 0) {
        n = new_node(r, AVM_AST_INT, line, col);
        if (n == NULL)
            return fail_nomem(r);
        n->u.i = v;
        *out = n;
        return 0;
    }
    if (len == 3 && memcmp(tok, "nil", 3) == 0) {
        n = new_node(r, AVM_AST_NIL, line, col);
        if (n == NULL)
            return fail_nomem(r);
        *out = n;
        return 0;
    }
    n = new_node(r, AVM_AST_SYM, line, col);
    if (n == NULL)
        return fail_nomem(r);
    int rv = set_text(r, n, tok, len);
    if (rv != 0)
        return rv;
    *out = n;
    return 0;
}

/* Reads one form at r->p (not at end, not at ')'). depth is the number of lists
 * and quotes enclosing it. */
static int read_form(reader *r, int depth, avm_ast **out)
{
    uint32_t line = r->line, col = r->col;
    char c = *r->p;
    int rv;

    if (c == '(' || c == '\'') {
        if (depth >= AVM_MAX_NESTING)
            return fail_at(r, line, col, "nesting deeper than %d levels",
                           AVM_MAX_NESTING);
    }
    if (c == '(') {
        advance(r);
        size_t base = r->nstack;
        for (;;) {
            skip_space(r);
            if (r->p >= r->end)
                return fail_at(r, line, col, "unterminated list");
            if (*r->p == ')') {
                advance(r);
                break;
            }
            avm_ast *item;
            rv = read_form(r, depth + 1, &item);
            if (rv != 0)
                return rv;
            rv = push(r, item);
            if (rv != 0)
                return rv;
        }
        avm_ast *n = new_node(r, AVM_AST_LIST, line, col);
        if (n == NULL)
            return fail_nomem(r);
        rv = pop_items(r, base, &n->u.list.items, &n->u.list.n);
        if (rv != 0)
            return rv;
        *out = n;
        return 0;
    }
    if (c == '\'') {
        advance(r);
        skip_space(r);
        if (r->p >= r->end || *r->p == ')')
            return fail_at(r, line, col, "quote (') needs an expression after it");
        avm_ast *quoted;
        rv = read_form(r, depth + 1, &quoted);
        if (rv != 0)
            return rv;
        avm_ast *sym = new_node(r, AVM_AST_SYM, line, col);
        avm_ast *n = new_node(r, AVM_AST_LIST, line, col);
        avm_ast **items = arena_alloc(r->arena, 2 * sizeof(*items));
        if (sym == NULL || n == NULL || items == NULL)
            return fail_nomem(r);
        rv = set_text(r, sym, "quote", 5);
        if (rv != 0)
            return rv;
        items[0] = sym;
        items[1] = quoted;
        n->u.list.items = items;
        n->u.list.n = 2;
        *out = n;
        return 0;
    }
    if (c == '"')
        return read_string(r, AVM_AST_STR, line, col, out);
    return read_atom(r, out);
}

int avm_read(const char *src, size_t len, avm_ast_doc **out, avm_read_error *err)
{
    reader r;
    avm_ast_doc *doc = NULL;
    int rv;

    *out = NULL;
    memset(err, 0, sizeof(*err));
    memset(&r, 0, sizeof(r));
    r.err = err;
    if (len > AVM_MAX_SOURCE) {
        snprintf(err->msg, sizeof(err->msg), "source is larger than %u bytes",
                 AVM_MAX_SOURCE);
        return AVM_ETOOBIG;
    }
    r.p = src;
    r.end = src + len;
    r.line = r.col = 1;
    avm_buf_init(&r.scratch);

    doc = calloc(1, sizeof(*doc));
    if (doc == NULL) {
        rv = fail_nomem(&r);
        goto err;
    }
    doc->arena = calloc(1, sizeof(*doc->arena));
    if (doc->arena == NULL) {
        rv = fail_nomem(&r);
        goto err_after_doc;
    }
    r.arena = doc->arena;

    for (;;) {
        skip_space(&r);
        if (r.p >= r.end)
            break;
        if (*r.p == ')') {
            rv = fail_at(&r, r.line, r.col, "unexpected ')'");
            goto err_after_arena;
        }
        avm_ast *form;
        rv = read_form(&r, 0, &form);
        if (rv != 0)
            goto err_after_arena;
        rv = push(&r, form);
        if (rv != 0)
            goto err_after_arena;
    }
    rv = pop_items(&r, 0, &doc->forms, &doc->nforms);
    if (rv != 0)
        goto err_after_arena;
    free(r.stack);
    avm_buf_free(&r.scratch);
    *out = doc;
    return 0;

err_after_arena:
    arena_free(doc->arena);
err_after_doc:
    free(doc);
err:
    free(r.stack);
    avm_buf_free(&r.scratch);
    return rv;
}

void avm_ast_doc_free(avm_ast_doc *doc)
{
    if (doc == NULL)
        return;
    arena_free(doc->arena);
    free(doc);
}

bool avm_ast_is_sym(const avm_ast *node, const char *s)
{
    return node->type == AVM_AST_SYM && strlen(s) == node->u.s.len &&
           memcmp(node->u.s.p, s, node->u.s.len) == 0;
}

static int ast_value(const avm_ast *e, uint32_t depth, avm_val *out, const avm_ast **bad)
{
    switch (e->type) {
    case AVM_AST_NIL:
        *out = avm_nil();
        return 0;
    case AVM_AST_BOOL:
        *out = avm_bool(e->u.b);
        return 0;
    case AVM_AST_INT:
        *out = avm_int(e->u.i);
        return 0;
    case AVM_AST_STR:
    case AVM_AST_SYM:
        return avm_str_new(AVM_STR, e->u.s.p, e->u.s.len, out);
    case AVM_AST_ID:
        return avm_str_new((avm_kind)e->id_kind, e->u.s.p, e->u.s.len, out);
    default:
        break;
    }
    if (depth >= AVM_MAX_DEPTH || e->u.list.n > AVM_MAX_LIST_LEN) {
        *bad = e;
        return depth >= AVM_MAX_DEPTH ? AVM_ETOODEEP : AVM_ETOOBIG;
    }
    avm_val l;
    int rv = avm_list_new(e->u.list.n, &l);
    if (rv != 0)
        return rv;
    for (uint32_t i = 0; i < e->u.list.n; i++) {
        /* Items are nil until filled, so releasing the list frees what is done. */
        rv = ast_value(e->u.list.items[i], depth + 1, &l.u.l->items[i], bad);
        if (rv != 0) {
            avm_val_release(l);
            return rv;
        }
    }
    avm_list_seal(l);
    *out = l;
    return 0;
}

int avm_ast_value(const avm_ast *e, avm_val *out, const avm_ast **bad)
{
    *bad = NULL;
    return ast_value(e, 0, out, bad);
}
