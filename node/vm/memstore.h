/* An in-memory store (platform.h): the embedded default until the storage layer,
 * and the fake world of the interpreter's tests. Not durable. */
#ifndef AVM_MEMSTORE_H
#define AVM_MEMSTORE_H

#include "platform.h"

/* NULL on allocation failure. */
avm_store *avm_memstore_new(void);
void avm_memstore_free(avm_store *s);
size_t avm_memstore_count(avm_store *s);

/* Test hook: bumps the version of oid as a concurrent committed writer would
 * (so an open transaction that read it fails validation). Returns false if oid is
 * unknown. */
bool avm_memstore_touch(avm_store *s, avm_val oid);

#endif
