/* Helpers shared by the transport's modules (control.c, link.c); not part of the
 * transport's interface. */
#ifndef AVM_TRANSPORT_INTERNAL_H
#define AVM_TRANSPORT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"
#include "value.h"

/* Writes the formatted message into errmsg (when there is room) and returns code. */
int avm__failf(char *errmsg, size_t errlen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* An nng failure as an AVM code (AVM_ENOMEM; AVM_EINVAL for a malformed URL or an
 * unknown scheme; else AVM_EIO), with errmsg "WHAT URL: nng's text". */
int avm__nng_fail(char *errmsg, size_t errlen, int rv, const char *what, const char *url);

/* Test-only (tests/fuzz/fuzz_link.c): a node-to-node link frame (link.h) as the
 * receiving node decodes it. */
typedef struct avm_link__frame {
    char from[256]; /* a machine name */
    uint64_t kind, seq, ack, corr;
    char word[64]; /* an op or an error code name */
    avm_val body;
} avm_link__frame;

/* Decodes one frame of n bytes as link.c does for every frame it receives: 0 with
 * *f filled (the caller releases f->body), or the AVM code the frame is dropped with
 * and *why set to a static text naming the cause. */
int avm_link__decode_frame(const uint8_t *p, size_t n, size_t max_frame,
                           avm_link__frame *f, const char **why);
/* Encodes f as a sender does (for seeds and round trips). 0 or an AVM code. */
int avm_link__encode_frame(avm_buf *b, const avm_link__frame *f);

#endif
