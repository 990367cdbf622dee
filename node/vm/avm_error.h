/* The AVM's error taxonomy (Context.lagda.md), as program-visible data.
 *
 * Each error has the specification's constructor name, its family (ObjError,
 * TxError, ...) and up to three argument values. EvalError is not part of the
 * specification: it reports a fault of the program itself (a primitive applied to
 * values of the wrong kind, a behaviour returning a non-list, an unknown behaviour
 * name), with the source position. PlatformError is not part of the specification
 * either: the platform failed (the disk is full, the store is corrupt); the
 * operation did not happen and nothing of it was acknowledged. */
#ifndef AVM_ERROR_H
#define AVM_ERROR_H

#include "value.h"

/* id, family, spec constructor name, argument count */
#define AVM_ERROR_MAP(X)                                                                 \
    X(OBJECT_NOT_FOUND, ObjError, "ErrObjectNotFound", 1)                                \
    X(OBJECT_ALREADY_DESTROYED, ObjError, "ErrObjectAlreadyDestroyed", 1)                \
    X(OBJECT_ALREADY_EXISTS, ObjError, "ErrObjectAlreadyExists", 1)                      \
    X(INVALID_INPUT, ObjError, "ErrInvalidInput", 2)                                     \
    X(OBJECT_REJECTED_CALL, ObjError, "ErrObjectRejectedCall", 2)                        \
    X(METADATA_CORRUPTION, ObjError, "ErrMetadataCorruption", 1)                         \
    X(CONTEXT_UNAVAILABLE, IntrospectError, "ErrContextUnavailable", 1)                  \
    X(METADATA_NOT_FOUND, ReflectError, "ErrMetadataNotFound", 1)                        \
    X(METADATA_INCONSISTENT, ReflectError, "ErrMetadataInconsistent", 2)                 \
    X(STORE_CORRUPTION, ReflectError, "ErrStoreCorruption", 1)                           \
    X(SCRY_PREDICATE_FAILED, ReflectError, "ErrScryPredicateFailed", 1)                  \
    X(REFLECTION_DENIED, ReflectError, "ErrReflectionDenied", 1)                         \
    X(REIFY_CONTEXT_FAILED, ReifyError, "ErrReifyContextFailed", 1)                      \
    X(NO_TRANSACTION_TO_REIFY, ReifyError, "ErrNoTransactionToReify", 0)                 \
    X(TX_STATE_ACCESS_DENIED, ReifyError, "ErrTxStateAccessDenied", 0)                   \
    X(CONSTRAINT_STORE_UNAVAILABLE, ReifyError, "ErrConstraintStoreUnavailable", 0)      \
    X(TX_CONFLICT, TxError, "ErrTxConflict", 1)                                          \
    X(TX_NOT_FOUND, TxError, "ErrTxNotFound", 1)                                         \
    X(TX_ALREADY_COMMITTED, TxError, "ErrTxAlreadyCommitted", 1)                         \
    X(TX_ALREADY_ABORTED, TxError, "ErrTxAlreadyAborted", 1)                             \
    X(NO_ACTIVE_TX, TxError, "ErrNoActiveTx", 0)                                         \
    X(INVALID_DURING_TX, TxError, "ErrInvalidDuringTx", 1)                               \
    X(FUNCTION_NOT_FOUND, PureError, "ErrFunctionNotFound", 1)                           \
    X(FUNCTION_ALREADY_REGISTERED, PureError, "ErrFunctionAlreadyRegistered", 1)         \
    X(VERSION_CONFLICT, PureError, "ErrVersionConflict", 3)                              \
    X(MACHINE_UNREACHABLE, MachineError, "ErrMachineUnreachable", 1)                     \
    X(INVALID_MACHINE_TRANSFER, MachineError, "ErrInvalidMachineTransfer", 2)            \
    X(TELEPORT_DURING_TX, MachineError, "ErrTeleportDuringTx", 0)                        \
    X(CONTROLLER_UNREACHABLE, ControllerError, "ErrControllerUnreachable", 1)            \
    X(UNAUTHORIZED_TRANSFER, ControllerError, "ErrUnauthorizedTransfer", 2)              \
    X(CROSS_CONTROLLER_TX, ControllerError, "ErrCrossControllerTx", 2)                   \
    X(OBJECT_NOT_AVAILABLE, ControllerError, "ErrObjectNotAvailable", 1)                 \
    X(OBJECT_NOT_CONSISTENT, ControllerError, "ErrObjectNotConsistent", 1)               \
    X(FREEZE_FAILED, ControllerError, "ErrFreezeFailed", 1)                              \
    X(OBJECT_HAS_NO_CONTROLLER, ControllerError, "ErrObjectHasNoController", 1)          \
    X(FD_NOT_IMPLEMENTED, FDError, "ErrNotImplemented", 1)                               \
    X(NONDET_NOT_IMPLEMENTED, NondetError, "ErrNotImplemented", 1)                       \
    X(EVAL, EvalError, "EvalError", 1)                                                   \
    X(STORE_FAILURE, PlatformError, "ErrStoreFailure", 1)                                \
    /* The constraint layers (default mode; appended: codes are stored in traces) */     \
    X(FD_INVALID_DOMAIN, FDError, "ErrInvalidDomain", 1)                                 \
    X(FD_INVALID_CONSTRAINT, FDError, "ErrInvalidConstraint", 1)                         \
    X(FD_UNKNOWN_VAR, FDError, "ErrUnknownVar", 1)                                       \
    X(FD_EMPTY_DOMAIN, FDError, "ErrEmptyDomain", 1)                                     \
    X(FD_INCONSISTENT, FDError, "ErrInconsistent", 1)                                    \
    X(ND_UNSETTLED, NondetError, "ErrUnsettled", 1)                                      \
    X(ND_INVALID_CHOICE, NondetError, "ErrInvalidChoice", 1)                             \
    X(ND_REQUIREMENT_FAILED, NondetError, "ErrRequirementFailed", 1)                     \
    X(ND_UNSATISFIABLE, NondetError, "ErrUnsatisfiable", 1)                              \
    X(ND_SOLVER_LIMIT, NondetError, "ErrSolverLimit", 1)                                 \
    X(ND_NO_SOLVER, NondetError, "ErrNoSolver", 1)

typedef enum {
    AVM_ERR_NONE = 0,
#define AVM__AERR_ENUM(id, fam, name, n) AVM_ERR_##id,
    AVM_ERROR_MAP(AVM__AERR_ENUM)
#undef AVM__AERR_ENUM
        AVM_ERR_COUNT
} avm_error_code;

/* An error value. Owns its argument references. */
typedef struct avm_error {
    avm_error_code code;
    avm_val args[3];
    /* Where the failing instruction is (0 when unknown). */
    avm_val source; /* AVM_STR or nil */
    uint32_t line, col;
} avm_error;

const char *avm_error_name(avm_error_code c);   /* "ErrObjectNotFound" */
const char *avm_error_family(avm_error_code c); /* "ObjError" */
int avm_error_nargs(avm_error_code c);

/* Builds an error taking ownership of the given argument values. */
void avm_error_set(avm_error *e, avm_error_code c, avm_val a0, avm_val a1, avm_val a2);
/* An error whose single argument is a string built from a C string. */
void avm_error_msg(avm_error *e, avm_error_code c, const char *msg);
void avm_error_clear(avm_error *e);
void avm_error_copy(avm_error *dst, const avm_error *src);
bool avm_error_eq(const avm_error *a, const avm_error *b);

/* "ObjError.ErrObjectNotFound #obj\"node1/3\"" */
void avm_error_print(avm_buf *b, const avm_error *e);
/* {"family":"ObjError","error":"ErrObjectNotFound","args":[...]} */
void avm_error_json(avm_buf *b, const avm_error *e);

#endif
