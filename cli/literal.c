/* A value literal from the command line, read as the language reads a quoted
 * constant (literal.h). Apart from cli.c: reader.h's avm_read() and platform.h's
 * avm_read type share a name, so the reader is not included beside vm.h. */
#include <stdio.h>
#include <string.h>

#include "avm_err.h"
#include "literal.h"
#include "reader.h"

/* A read form as a quoted constant, as the compiler's (quote ...) makes it. */
static int ast_value(const avm_ast *e, uint32_t depth, avm_val *out, char *errmsg,
                     size_t errlen)
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
    if (depth >= AVM_MAX_DEPTH) {
        snprintf(errmsg, errlen, "the value nests deeper than %d lists", AVM_MAX_DEPTH);
        return AVM_EINVAL;
    }
    avm_val l;
    int rv = avm_list_new(e->u.list.n, &l);
    if (rv != 0)
        return rv;
    for (uint32_t i = 0; i < e->u.list.n; i++) {
        /* Items are nil until filled, so releasing the list frees what is done. */
        rv = ast_value(e->u.list.items[i], depth + 1, &l.u.l->items[i], errmsg, errlen);
        if (rv != 0) {
            avm_val_release(l);
            return rv;
        }
    }
    avm_list_seal(l);
    *out = l;
    return 0;
}

int cli__parse_value(const char *s, avm_val *out, char *errmsg, size_t errlen)
{
    avm_ast_doc *doc = NULL;
    avm_read_error rerr;
    int rv = avm_read(s, strlen(s), &doc, &rerr);
    if (rv != 0) {
        snprintf(errmsg, errlen, "value %s does not read: %s (column %u)", s, rerr.msg,
                 rerr.col);
        return AVM_EINVAL;
    }
    if (doc->nforms != 1) {
        snprintf(errmsg, errlen, "%s is %s, not one value", s,
                 doc->nforms == 0 ? "empty" : "several values");
        avm_ast_doc_free(doc);
        return AVM_EINVAL;
    }
    const avm_ast *e = doc->forms[0];
    if (e->type == AVM_AST_LIST && e->u.list.n == 2 &&
        avm_ast_is_sym(e->u.list.items[0], "quote"))
        e = e->u.list.items[1];
    errmsg[0] = '\0';
    rv = ast_value(e, 0, out, errmsg, errlen);
    avm_ast_doc_free(doc);
    if (rv != 0 && errmsg[0] == '\0')
        snprintf(errmsg, errlen, "value %s: %s", s, avm_strerror(rv));
    return rv == 0 ? 0 : AVM_EINVAL;
}
