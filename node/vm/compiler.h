/* The .avm language: S-expressions compiled to a module (bytecode.h).
 * See docs/language.md for the language. */
#ifndef AVM_COMPILER_H
#define AVM_COMPILER_H

#include <stddef.h>
#include <stdint.h>

#include "bytecode.h"

typedef struct avm_diag {
    char file[256];
    uint32_t line, col; /* 1-based; 0 when not tied to a position */
    char msg[512];
} avm_diag;

/* Compiles src[0..len) into a verified module with rc 1. On AVM_ECOMPILE (or
 * AVM_ENOMEM, AVM_ETOOBIG) fills *diag with file, line, column and a message. */
int avm_compile(const char *source_name, const char *src, size_t len, avm_module **out,
                avm_diag *diag);

/* "file:line:col: message" */
void avm_diag_format(const avm_diag *d, char *out, size_t n);

#endif
