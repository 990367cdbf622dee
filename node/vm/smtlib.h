/* The constraint IR of nondeterminism (platform.h) as SMT-LIB2 text: what the solver
 * backend reads, what `avmctl exec constraints ID --smtlib` prints, and what any
 * SMT-LIB2 solver accepts (executeSolver with an external solver). */
#ifndef AVM_SMTLIB_H
#define AVM_SMTLIB_H

#include <stdbool.h>
#include <stddef.h>

#include "value.h"

/* Appends problem as SMT-LIB2: one declare-const per choice (|name| Int or Bool),
 * an assertion restricting it to its values (runs of consecutive ints as ranges),
 * one assertion per requirement. With commands, (check-sat) and (get-value ...)
 * follow. Deterministic. 0, or AVM_EINVAL with err naming what is malformed (a
 * choice that is not a variable, empty or mixed values, a duplicate name, a
 * requirement that is not bool-typed, a variable no choice declares, a name with
 * | or \ or control characters), or AVM_ENOMEM. */
int avm_smtlib_write(avm_val problem, bool commands, avm_buf *out, char *err,
                     size_t errlen);

/* Checks that model ((name value) ...) gives every choice of problem exactly one of
 * its values. 0 or AVM_EINVAL with err. */
int avm_smtlib_model_check(avm_val problem, avm_val model, char *err, size_t errlen);

#endif
