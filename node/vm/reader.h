/* The .avm reader: source text to S-expression trees (docs/language.md).
 *
 * The reader knows the lexical syntax only: lists, integers, strings, booleans,
 * nil, identifier literals, symbols and the quote prefix ('x reads as (quote x)).
 * What the forms mean is the compiler's business. Every node carries the 1-based
 * line and column (in bytes) of its first character so that errors can name a
 * position. All nodes of one read live in one arena owned by the avm_ast_doc. */
#ifndef AVM_READER_H
#define AVM_READER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "value.h"

/* Sources larger than this are refused with AVM_ETOOBIG. */
#define AVM_MAX_SOURCE (16u * 1024 * 1024)
/* Lists (and quote prefixes) nest at most this deep; deeper input is a syntax
 * error rather than a C stack overflow, in the reader and in the compiler. */
#define AVM_MAX_NESTING (AVM_MAX_DEPTH * 2)

typedef enum {
    AVM_AST_NIL = 0,
    AVM_AST_BOOL,
    AVM_AST_INT,
    AVM_AST_STR, /* "..." */
    AVM_AST_ID,  /* #obj"..", #ctl"..", #mach"..", #tx".." (id_kind says which) */
    AVM_AST_SYM,
    AVM_AST_LIST, /* ( ... ), and (quote x) for 'x */
} avm_ast_type;

typedef struct avm_ast {
    uint8_t type;    /* avm_ast_type */
    uint8_t id_kind; /* AVM_AST_ID: the avm_kind of the identifier */
    uint32_t line, col;
    union {
        bool b;
        int64_t i;
        /* AVM_AST_STR, AVM_AST_ID, AVM_AST_SYM: the bytes (escapes resolved),
         * NUL-terminated; strings may also contain NUL bytes, so use len. */
        struct {
            const char *p;
            uint32_t len;
        } s;
        struct {
            struct avm_ast **items;
            uint32_t n;
        } list;
    } u;
} avm_ast;

typedef struct avm_arena avm_arena;

/* The result of one read: the top-level forms in order. Owns every node. */
typedef struct avm_ast_doc {
    avm_ast **forms;
    uint32_t nforms;
    avm_arena *arena;
} avm_ast_doc;

/* A syntax error: position of the offending character (for unterminated strings
 * and lists, of the opening one) and a message without the position. */
typedef struct avm_read_error {
    uint32_t line, col;
    char msg[256];
} avm_read_error;

/* Reads every form of src[0..len). On success returns 0 and *out owns the tree
 * (free it with avm_ast_doc_free). Otherwise *out is NULL and the result is
 * AVM_ECOMPILE (syntax error, described in *err), AVM_ETOOBIG (len exceeds
 * AVM_MAX_SOURCE) or AVM_ENOMEM; *err is filled in every case. */
int avm_read(const char *src, size_t len, avm_ast_doc **out, avm_read_error *err);

void avm_ast_doc_free(avm_ast_doc *doc);

/* True if node is a symbol spelled exactly s. */
bool avm_ast_is_sym(const avm_ast *node, const char *s);

/* The value a form denotes as a quoted constant, as `(quote ...)` makes it:
 * symbols and strings become strings, lists lists. Returns 0, AVM_ENOMEM, or
 * AVM_ETOODEEP / AVM_ETOOBIG (lists nested deeper than AVM_MAX_DEPTH, longer than
 * AVM_MAX_LIST_LEN) with *bad set to the offending form. */
int avm_ast_value(const avm_ast *e, avm_val *out, const avm_ast **bad);

#endif
