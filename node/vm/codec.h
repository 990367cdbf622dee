/* Deterministic msgpack encoding of values, and a bounded decoder.
 *
 * Encoding is canonical: the same value always gives the same bytes (smallest
 * integer and length forms). Identifiers are msgpack ext types (type 1 object,
 * 2 controller, 3 machine, 4 tx) whose payload is the identifier's UTF-8 bytes.
 *
 * The decoder never trusts a length prefix: every count is checked against the
 * bytes that remain before anything is allocated, nesting is bounded by
 * AVM_MAX_DEPTH, and the total decoded size by the caller's limit. Malformed input
 * returns AVM_EMALFORMED / AVM_ETRUNCATED / AVM_ETOODEEP / AVM_ETOOBIG, never a
 * crash. The low-level avm_mp_* helpers are for other encoders (modules, execution
 * states, wire frames) that build records out of values. */
#ifndef AVM_CODEC_H
#define AVM_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include "value.h"

#define AVM_EXT_OBJID 1
#define AVM_EXT_CTRLID 2
#define AVM_EXT_MACHID 3
#define AVM_EXT_TXID 4
/* A symbolic value: the payload is the encoding of its [op, args...] list. */
#define AVM_EXT_SYM 5

/* Appends the encoding of v. Returns 0 or the buffer's sticky error, or
 * AVM_ETOODEEP if v nests more than AVM_MAX_DEPTH lists (the decoder would refuse
 * it); on error b holds a partial encoding. */
int avm_val_encode(avm_buf *b, avm_val v);

/* Decodes one value from p[0..n). On success *out owns a reference and *used is the
 * number of bytes consumed. max_bytes bounds the total memory the value may occupy
 * (0 means AVM_DECODE_DEFAULT_MAX). */
#define AVM_DECODE_DEFAULT_MAX (64u * 1024 * 1024)
int avm_val_decode(const uint8_t *p, size_t n, size_t max_bytes, avm_val *out,
                   size_t *used);
/* Like avm_val_decode but the value must fill exactly n bytes. */
int avm_val_decode_all(const uint8_t *p, size_t n, avm_val *out);

/* Low-level writers (canonical forms). */
void avm_mp_put_nil(avm_buf *b);
void avm_mp_put_bool(avm_buf *b, bool v);
void avm_mp_put_int(avm_buf *b, int64_t v);
void avm_mp_put_uint(avm_buf *b, uint64_t v);
void avm_mp_put_str(avm_buf *b, const char *s, size_t n);
void avm_mp_put_bin(avm_buf *b, const void *p, size_t n);
void avm_mp_put_array(avm_buf *b, uint32_t n);
void avm_mp_put_map(avm_buf *b, uint32_t n);

/* Low-level cursor reader. Every function checks the remaining bytes and returns 0
 * or an AVM_E* code; on error the cursor is left unspecified. */
typedef struct avm_mp_reader {
    const uint8_t *p, *end;
    size_t budget; /* bytes of memory decoded values may still take */
} avm_mp_reader;

void avm_mp_reader_init(avm_mp_reader *r, const uint8_t *p, size_t n, size_t budget);
int avm_mp_get_nil(avm_mp_reader *r);
int avm_mp_get_bool(avm_mp_reader *r, bool *v);
int avm_mp_get_int(avm_mp_reader *r, int64_t *v);
int avm_mp_get_uint(avm_mp_reader *r, uint64_t *v);
/* *s points into the input (not NUL-terminated). */
int avm_mp_get_str(avm_mp_reader *r, const char **s, uint32_t *n);
int avm_mp_get_bin(avm_mp_reader *r, const uint8_t **p, uint32_t *n);
/* Checks that n elements could fit in what remains (each takes >= 1 byte). */
int avm_mp_get_array(avm_mp_reader *r, uint32_t *n);
int avm_mp_get_map(avm_mp_reader *r, uint32_t *n);
int avm_mp_get_val(avm_mp_reader *r, avm_val *out);
/* True when the next byte is nil (does not consume). */
bool avm_mp_peek_nil(const avm_mp_reader *r);

#endif
