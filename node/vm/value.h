/* AVM values (Val): nil, bool, int64, string, list, and the four identifier kinds.
 *
 * Values are immutable and reference counted. An avm_val is 16 bytes passed by value;
 * heap kinds (string, list, identifiers) point to a shared avm_str or avm_list.
 * Ownership: a function that returns an avm_val hands the caller one reference,
 * unless its comment says "borrowed". avm_val_release() drops one reference.
 * Values cannot form cycles, so reference counting reclaims everything. */
#ifndef AVM_VALUE_H
#define AVM_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AVM_NIL = 0,
    AVM_BOOL = 1,
    AVM_INT = 2,
    AVM_STR = 3,
    AVM_LIST = 4,
    AVM_OBJID = 5,  /* object identifier, e.g. "node1/7" */
    AVM_CTRLID = 6, /* controller identifier, e.g. "main" */
    AVM_MACHID = 7, /* machine identifier, e.g. "node1" */
    AVM_TXID = 8,   /* transaction identifier, e.g. "node1/t3" */
    AVM_SYM = 9,    /* symbolic value (nondeterminism, default mode): see below */
} avm_kind;

#define AVM_KIND_COUNT 10

/* Identifier kinds carry a string payload. */
#define AVM_KIND_IS_ID(k) ((k) >= AVM_OBJID && (k) <= AVM_TXID)
#define AVM_KIND_HAS_STR(k) ((k) == AVM_STR || AVM_KIND_IS_ID(k))

/* Limits every producer and decoder enforces. */
#define AVM_MAX_STR_LEN (16u * 1024 * 1024)
#define AVM_MAX_LIST_LEN (4u * 1024 * 1024)
#define AVM_MAX_DEPTH 128

typedef struct avm_str {
    uint32_t rc;
    uint32_t len;  /* bytes, excluding the terminating NUL */
    uint32_t hash; /* FNV-1a of the bytes (never 0), or 0 until first asked for */
    char data[];   /* NUL-terminated; allocated in whole 16-byte chunks */
} avm_str;

struct avm_val;

typedef struct avm_list {
    uint32_t rc;
    uint32_t len;
    struct avm_val *items; /* points just past the header unless len == 0 */
    uint32_t depth;        /* lists nested in it, itself included: () is 1 */
} avm_list;

typedef struct avm_val {
    uint32_t kind; /* avm_kind (not a char type: its stores alias nothing) */
    union {
        bool b;
        int64_t i;
        avm_str *s; /* AVM_STR and identifier kinds */
        avm_list *l;
    } u;
} avm_val;

static inline avm_val avm_nil(void)
{
    avm_val v = {.kind = AVM_NIL};
    v.u.i = 0;
    return v;
}

static inline avm_val avm_bool(bool b)
{
    avm_val v = {.kind = AVM_BOOL};
    v.u.i = 0;
    v.u.b = b;
    return v;
}

static inline avm_val avm_int(int64_t i)
{
    avm_val v = {.kind = AVM_INT};
    v.u.i = i;
    return v;
}

/* Symbolic values: an unsettled choice (`choose`) or an expression over choices,
 * settled by a solver when the transaction commits. The payload is a list (u.l)
 * [op, args..., size] with op an AVM_INT of avm_sym_op; args are ints, bools or
 * symbolic values; size (an AVM_INT) is the number of nodes of the expression as a
 * tree (1 for a variable; 1 + the args' sizes, a concrete arg counting 1). A
 * variable is [AVM_SYM_VAR, name, type, 1]: name an AVM_STR unique in the cluster,
 * type AVM_SYM_T_INT or AVM_SYM_T_BOOL. Values share sub-expressions, so walking one
 * as a tree (printing, encoding, solving) costs its size, which is bounded by
 * AVM_SYM_MAX_SIZE; like lists, symbolic values nest at most AVM_MAX_DEPTH deep. */
#define AVM_SYM_MAX_SIZE 65536
typedef enum {
    AVM_SYM_VAR = 0,
    AVM_SYM_ADD = 1, /* int int -> int */
    AVM_SYM_SUB = 2,
    AVM_SYM_MUL = 3,
    AVM_SYM_MIN = 4,
    AVM_SYM_MAX = 5,
    AVM_SYM_NEG = 6, /* int -> int */
    AVM_SYM_ABS = 7,
    AVM_SYM_LT = 8, /* int int -> bool */
    AVM_SYM_LE = 9,
    AVM_SYM_GT = 10,
    AVM_SYM_GE = 11,
    AVM_SYM_EQ = 12, /* int int or bool bool -> bool */
    AVM_SYM_NE = 13,
    AVM_SYM_NOT = 14, /* bool -> bool */
    AVM_SYM_AND = 15, /* bool bool -> bool */
    AVM_SYM_OR = 16,
} avm_sym_op;
#define AVM_SYM_OP_COUNT 17
enum { AVM_SYM_T_INT = 0, AVM_SYM_T_BOOL = 1 };

/* The op of a symbolic value, its argument count (1 or 2; a variable's is 2: name
 * and type), and the type of value it denotes. */
static inline int avm_sym_op_of(avm_val v)
{
    return (int)v.u.l->items[0].u.i;
}
int avm_sym_arity(int op);
int avm_sym_type(avm_val v);
static inline int64_t avm_sym_size(avm_val v)
{
    return v.u.l->items[v.u.l->len - 1].u.i;
}
const char *avm_sym_op_name(int op); /* "+", "<", "not", ... ; "var" */
/* Checks the shape of a symbolic payload list (op in range, arity, argument kinds
 * and types, size) without recursing into symbolic arguments (each was checked when
 * made). true when well formed. */
bool avm_sym_check(avm_val payload);

/* Truthiness for `if`: only nil and false are false. */
static inline bool avm_truthy(avm_val v)
{
    return !(v.kind == AVM_NIL || (v.kind == AVM_BOOL && !v.u.b));
}

static inline void avm_val_retain(avm_val v)
{
    if (v.kind >= AVM_STR)
        (*(uint32_t *)v.u.s)++; /* rc is the first field of avm_str and avm_list */
}

void avm__val_free(avm_val v);

static inline void avm_val_release(avm_val v)
{
    if (v.kind >= AVM_STR && --(*(uint32_t *)v.u.s) == 0)
        avm__val_free(v);
}

/* Strings and identifiers. Return 0 or AVM_ENOMEM / AVM_ETOOBIG. */
int avm_str_new(avm_kind kind, const char *bytes, size_t len, avm_val *out);
int avm_cstr(avm_kind kind, const char *s, avm_val *out);
uint32_t avm_hash_bytes(const void *p, size_t n);
/* The string's hash, computed on first use (most strings are never hashed). */
static inline uint32_t avm_str_hash(avm_str *s)
{
    if (s->hash == 0) {
        uint32_t h = avm_hash_bytes(s->data, s->len);
        s->hash = h ? h : 1;
    }
    return s->hash;
}

/* Lists. avm_list_new makes a list of len nil slots to fill with owned values
 * (only while the caller holds the only reference); once filled with lists,
 * avm_list_seal() records its depth. avm_list_from takes ownership of the n values
 * in items and seals the list. Lists never nest deeper than AVM_MAX_DEPTH: the
 * interpreter refuses to build a deeper one (so every value encodes), and the
 * decoder refuses to read one. */
int avm_list_new(size_t len, avm_val *out);
int avm_list_from(avm_val *items, size_t n, avm_val *out);
/* Sets l's depth from its items' depths; returns it. */
uint32_t avm_list_seal(avm_val l);
/* Depth of any value: 0 for a non-list. */
static inline uint32_t avm_val_depth(avm_val v)
{
    return v.kind == AVM_LIST || v.kind == AVM_SYM ? v.u.l->depth : 0;
}
static inline size_t avm_list_len(avm_val l)
{
    return l.u.l->len;
}
/* Borrowed. */
static inline avm_val avm_list_at(avm_val l, size_t i)
{
    return l.u.l->items[i];
}

/* Structural equality on all values; identifiers equal only within their kind. */
bool avm_val_eq(avm_val a, avm_val b);
/* Total order used for sorting and FD domains: by kind, then by value. */
int avm_val_cmp(avm_val a, avm_val b);
uint32_t avm_val_hash(avm_val v);

const char *avm_kind_name(avm_kind k);

/* The language's literal syntax: 42, "text", #t, #f, nil, (1 "a" (2)),
 * #obj"node1/3", #ctl"main", #mach"node1", #tx"node1/t2".
 * Appends to a growable buffer. */
typedef struct avm_buf {
    char *data;
    size_t len, cap;
    int err; /* sticky: first AVM_ENOMEM */
} avm_buf;

void avm_buf_init(avm_buf *b);
void avm_buf_free(avm_buf *b);
/* Makes room for extra more bytes (and the NUL): 0 or the sticky error. */
int avm_buf_reserve(avm_buf *b, size_t extra);
void avm__buf_put_slow(avm_buf *b, const void *p, size_t n);
static inline void avm_buf_put(avm_buf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap || b->err) {
        avm__buf_put_slow(b, p, n);
        return;
    }
    if (n > 0)
        __builtin_memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}
void avm_buf_puts(avm_buf *b, const char *s);
void avm_buf_printf(avm_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* NUL-terminated view of the contents (the buffer keeps ownership). */
const char *avm_buf_cstr(avm_buf *b);

void avm_val_print(avm_buf *b, avm_val v);
/* JSON: nil -> null, bool, int -> number, string -> string, list -> array,
 * identifiers -> {"object": "..."} / {"controller": ...} / {"machine": ...} /
 * {"tx": ...}. */
void avm_val_json(avm_buf *b, avm_val v);
/* JSON string literal with escapes, quotes included. */
void avm_json_str(avm_buf *b, const char *s, size_t n);

#endif
