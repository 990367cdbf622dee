/* The contract between a fuzz target (fuzz_*.c) and the standalone driver
 * (fuzz_driver.c). A target defines both functions; built with libFuzzer
 * (-DAVM_FUZZ=ON) only LLVMFuzzerTestOneInput is used, built without it the driver
 * feeds the target its seeds and mutations of them (see fuzz_driver.c). */
#ifndef AVM_FUZZ_H
#define AVM_FUZZ_H

#include <stddef.h>
#include <stdint.h>

/* libFuzzer's entry point. Must neither crash nor leak on any input; it calls
 * abort() only to report a broken property. Returns 0. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The seed corpus: *n NUL-terminated strings, valid for the life of the process.
 * A seed that starts with "hex:" stands for the bytes written after it in
 * hexadecimal (whitespace ignored), for targets whose inputs contain NUL bytes;
 * any other seed is its own bytes. */
const char *const *fuzz_seeds(size_t *n);

#endif
