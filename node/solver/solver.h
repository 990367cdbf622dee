/* executeSolver: the node's solver backend (Z3, through its C API). It settles the
 * constraint IR of nondeterminism (platform.h) and runs SMT-LIB2 text. One fresh Z3
 * context per call; nothing is shared, so calls are independent. */
#ifndef AVM_SOLVER_H
#define AVM_SOLVER_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"

typedef struct avm_solver_cfg {
    uint32_t timeout_ms; /* 0: 5000 */
} avm_solver_cfg;

#define AVM_SOLVER_DEFAULT_TIMEOUT_MS 5000
/* SMT-LIB2 text longer than this is refused (AVM_ETOOBIG). */
#define AVM_SOLVER_MAX_TEXT (1u << 20)

/* The contract of avm_platform.solve: AVM_SOLVE_SAT with an owned *model ((name
 * value) ... in the order of the choices, checked against their values),
 * AVM_SOLVE_UNSAT, AVM_SOLVE_UNKNOWN (why: the solver's reason, e.g. "timeout"), or a
 * negated AVM_E* code (why says what failed: a malformed problem, a Z3 error). */
int avm_solver_solve(const avm_solver_cfg *cfg, avm_val problem, avm_val *model,
                     avm_buf *why);

/* Runs SMT-LIB2 text as a script (check-sat, get-value, ...) and appends the solver's
 * output to out. 0, or -AVM_EINVAL with the error in out, -AVM_ETOOBIG. The whole
 * script runs within cfg's time limit (when it is reached, out ends with a comment
 * "; interrupted at the time limit" and 0 is returned); a script that sets Z3's own
 * limits (a timeout option, the try-for tactic) is refused with -AVM_EINVAL. */
int avm_solver_execute_smtlib(const avm_solver_cfg *cfg, const char *text, size_t len,
                              avm_buf *out);

#endif
