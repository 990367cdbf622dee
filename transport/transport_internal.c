/* Helpers shared by the transport's modules. See transport_internal.h. */
#include "transport_internal.h"

#include <stdarg.h>
#include <stdio.h>

#include <nng/nng.h>

#include "avm_err.h"

int avm__failf(char *errmsg, size_t errlen, int code, const char *fmt, ...)
{
    if (errmsg != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(errmsg, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}

int avm__nng_fail(char *errmsg, size_t errlen, int rv, const char *what, const char *url)
{
    int code = AVM_EIO;
    if (rv == NNG_ENOMEM)
        code = AVM_ENOMEM;
    else if (rv == NNG_EINVAL || rv == NNG_EADDRINVAL || rv == NNG_ENOTSUP)
        code = AVM_EINVAL;
    return avm__failf(errmsg, errlen, code, "%s %s: %s", what, url, nng_strerror(rv));
}
