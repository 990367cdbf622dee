/* A value literal from the command line, read as the language reads a quoted
 * constant (literal.h). Apart from cli.c: reader.h's avm_read() and platform.h's
 * avm_read type share a name, so the reader is not included beside vm.h. */
#include <stdio.h>
#include <string.h>

#include "avm_err.h"
#include "literal.h"
#include "reader.h"

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
    const avm_ast *bad;
    rv = avm_ast_value(e, out, &bad);
    avm_ast_doc_free(doc);
    if (rv == AVM_ETOODEEP)
        snprintf(errmsg, errlen, "value %s nests deeper than %d lists", s, AVM_MAX_DEPTH);
    else if (rv != 0)
        snprintf(errmsg, errlen, "value %s: %s", s, avm_strerror(rv));
    return rv == 0 ? 0 : AVM_EINVAL;
}
