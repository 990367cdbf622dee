/* SHA-256 (FIPS 180-4), used for content hashes of modules and pure functions. */
#ifndef AVM_SHA256_H
#define AVM_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* Incremental hashing context. (Named _ctx: a typedef avm_sha256 would clash with
 * the one-shot function below, typedefs and functions sharing one name space.) */
typedef struct avm_sha256_ctx {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} avm_sha256_ctx;

void avm_sha256_init(avm_sha256_ctx *c);
void avm_sha256_update(avm_sha256_ctx *c, const void *p, size_t n);
/* Writes the digest; c must be initialised again before reuse. */
void avm_sha256_final(avm_sha256_ctx *c, uint8_t out[32]);
void avm_sha256(const void *p, size_t n, uint8_t out[32]);
/* 64 lowercase hex digits and a NUL. */
void avm_hex32(const uint8_t in[32], char out[65]);

#endif
