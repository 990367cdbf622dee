/* Helpers shared by the transport's modules (control.c, link.c); not part of the
 * transport's interface. */
#ifndef AVM_TRANSPORT_INTERNAL_H
#define AVM_TRANSPORT_INTERNAL_H

#include <stddef.h>

/* Writes the formatted message into errmsg (when there is room) and returns code. */
int avm__failf(char *errmsg, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An nng failure as an AVM code (AVM_ENOMEM; AVM_EINVAL for a malformed URL or an
 * unknown scheme; else AVM_EIO), with errmsg "WHAT URL: nng's text". */
int avm__nng_fail(char *errmsg, size_t errlen, int rv, const char *what, const char *url);

#endif
