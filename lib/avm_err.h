/* C error codes of the runtime: one table, each code with its text.
 *
 * These are failures of the environment or of input (memory, malformed bytes, bad
 * programs). The AVM's own error taxonomy (ObjError, TxError, ...) is program-visible
 * data and lives in node/vm/avm_error.h, apart from these codes. */
#ifndef AVM_ERR_H
#define AVM_ERR_H

#include <stddef.h>

#define AVM_ERRNO_MAP(X)                                                                 \
    X(0, OK, "success")                                                                  \
    X(1, NOMEM, "out of memory")                                                         \
    X(2, MALFORMED, "malformed input")                                                   \
    X(3, TOOBIG, "input exceeds a size limit")                                           \
    X(4, TOODEEP, "input nests too deeply")                                              \
    X(5, TRUNCATED, "input ends early")                                                  \
    X(6, COMPILE, "program does not compile")                                            \
    X(7, VERIFY, "bytecode failed verification")                                         \
    X(8, UNSAFE, "program uses an unsafe instruction without a grant")                   \
    X(9, NOTFOUND, "not found")                                                          \
    X(10, IO, "input/output error")                                                      \
    X(11, INVAL, "invalid argument")                                                     \
    X(12, VERSION, "unsupported format version")                                         \
    X(13, STATE, "operation not valid in the current state")                             \
    X(14, PENDING, "accepted; the outcome comes later")                                  \
    X(15, UNREACHABLE, "machine unreachable")                                            \
    X(16, AUTH, "unauthenticated")                                                       \
    X(17, PERM, "permission denied")

enum {
#define AVM__ERR_ENUM(n, name, text) AVM_E##name = n,
    AVM_ERRNO_MAP(AVM__ERR_ENUM)
#undef AVM__ERR_ENUM
};

/* Static text for a code; never NULL. */
const char *avm_strerror(int code);
/* The code's name as the control protocol carries it ("ENOTFOUND" for
 * AVM_ENOTFOUND), or NULL for an unknown code; and back: the code named by the n
 * bytes at name, or -1. */
const char *avm_err_name(int code);
int avm_err_from_name(const char *name, size_t n);

#endif
