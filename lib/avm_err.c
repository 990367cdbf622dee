#include "avm_err.h"

#include <string.h>

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

const char *avm_err_name(int code)
{
    switch (code) {
#define AVM__ERR_NAME(n, name, text)                                                     \
    case n:                                                                              \
        return "E" #name;
        AVM_ERRNO_MAP(AVM__ERR_NAME)
#undef AVM__ERR_NAME
    }
    return NULL;
}

int avm_err_from_name(const char *name, size_t n)
{
#define AVM__ERR_CMP(num, nm, text)                                                      \
    if (n == sizeof("E" #nm) - 1 && memcmp(name, "E" #nm, n) == 0)                       \
        return num;
    AVM_ERRNO_MAP(AVM__ERR_CMP)
#undef AVM__ERR_CMP
    return -1;
}
