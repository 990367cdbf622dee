#include "avm_err.h"

const char *avm_strerror(int code)
{
    switch (code) {
#define AVM__ERR_CASE(n, name, text)                                                     \
    case n:                                                                              \
        return text;
        AVM_ERRNO_MAP(AVM__ERR_CASE)
#undef AVM__ERR_CASE
    }
    return "unknown error";
}
