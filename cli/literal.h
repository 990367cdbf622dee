/* avmctl: value literals on the command line (send OBJ VALUE). */
#ifndef AVM_CLI_LITERAL_H
#define AVM_CLI_LITERAL_H

#include <stddef.h>

#include "value.h"

/* A value literal in the language's syntax (docs/language.md), read as a quoted
 * constant: 42, "text", #t, nil, (1 "a" (b)) (symbols become strings), #obj"node1/3";
 * one outer quote ('x) is allowed. 0, or AVM_EINVAL with errmsg naming the cause. */
int cli__parse_value(const char *s, avm_val *out, char *errmsg, size_t errlen);

#endif
