/* Modules: allocation, canonical encoding, decoding with verification, extraction.
 *
 * Encoding (msgpack): [ "AVMMOD", AVM_BYTECODE_VERSION, source, main_fn,
 *   [ func... ] ] with func = [ name, kind, nparams, nlocals, max_stack,
 *   code (bin), [consts...], [[pc, line, col]...], uses_unsafe ].
 * The hash of a module is the SHA-256 of this encoding.
 *
 * Every module from outside (file, store, peer) passes avm_module_verify before it
 * runs; the compiler's output passes it too (the tests check that). */
#ifndef AVM_MODULE_H
#define AVM_MODULE_H

#include <stddef.h>

#include "bytecode.h"

/* A module with nfuncs zeroed functions and rc 1. NULL on allocation failure. */
avm_module *avm_module_new(uint32_t nfuncs);
void avm_module_retain(avm_module *m);
/* Frees the module with the last reference. */
void avm_module_release(avm_module *m);

int avm_module_encode(const avm_module *m, avm_buf *out);
/* Decodes and verifies; fills m->hash. On error writes a message naming the cause
 * into errmsg (if not NULL) and returns AVM_EMALFORMED, AVM_EVERSION, AVM_EVERIFY,
 * AVM_ETOOBIG, AVM_ETOODEEP (a constant nested too deeply), AVM_ETRUNCATED or
 * AVM_ENOMEM. */
int avm_module_decode(const uint8_t *p, size_t n, avm_module **out, char *errmsg,
                      size_t errlen);
/* Structural and stack-height verification of every function: opcodes and operands
 * valid, jumps land on instruction starts inside the code, slots < nlocals,
 * constants < nconsts, callees exist with argc == nparams, OP_TAILCALL never targets
 * a behaviour, stack heights agree at every join, never underflow, never exceed
 * max_stack, every path ends in OP_RET or OP_TAILCALL; pure functions contain no
 * OP_AVM and call only pure functions; primitive and instruction argc match their
 * tables; main_fn is -1 or a AVM_FN_MAIN function; uses_unsafe matches the code. */
int avm_module_verify(const avm_module *m, char *errmsg, size_t errlen);
/* Computes m->hash from the encoding. */
int avm_module_hash(avm_module *m);

/* Index of the function with this name and kind (kind -1: any), or -1. */
int avm_module_find(const avm_module *m, const char *name, int kind);

/* A new module holding function fn and every function it calls transitively
 * (fn becomes index 0; calls renumbered; main_fn -1), hashed. Used to register a
 * pure function as self-contained code. */
int avm_module_extract(const avm_module *m, uint32_t fn, avm_module **out);

/* The operand stack height (values above the locals) before the instruction at pc
 * of function fn runs, as the verifier computes it. Returns 0, or AVM_EINVAL when
 * pc is not the start of a reachable instruction. The module must be verified. */
int avm_module_height_at(const avm_module *m, uint32_t fn, uint32_t pc, uint32_t *height);

/* True if function fn, or any function it calls, uses an unsafe instruction. */
bool avm_module_fn_unsafe(const avm_module *m, uint32_t fn);

#endif
