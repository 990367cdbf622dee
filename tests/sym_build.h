/* Building constraint problems (platform.h) in tests: symbolic values as the
 * interpreter makes them. Every helper takes ownership of its value arguments. */
#ifndef AVM_TEST_SYM_BUILD_H
#define AVM_TEST_SYM_BUILD_H

#include <assert.h>
#include <stdarg.h>
#include <stdlib.h>

#include "value.h"

static inline avm_val tb_list(size_t n, ...)
{
    avm_val items[16], l;
    va_list ap;
    assert(n <= 16);
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        items[i] = va_arg(ap, avm_val);
    va_end(ap);
    if (avm_list_from(items, n, &l) != 0)
        abort();
    return l;
}

static inline avm_val tb_str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

/* A symbolic value with payload [op, args...]; aborts if avm_sym_check refuses it,
 * unless unchecked. */
static inline avm_val tb_sym_raw(avm_val payload, bool unchecked)
{
    if (!unchecked && !avm_sym_check(payload))
        abort();
    payload.kind = AVM_SYM;
    return payload;
}

static inline avm_val tb_var(const char *name, int type)
{
    return tb_sym_raw(
        tb_list(4, avm_int(AVM_SYM_VAR), tb_str(name), avm_int(type), avm_int(1)), false);
}

/* The tree size an argument adds to an expression (value.h). */
static inline int64_t tb_size(avm_val a)
{
    return a.kind == AVM_SYM ? avm_sym_size(a) : 1;
}

static inline avm_val tb_op1(int op, avm_val a)
{
    int64_t n = 1 + tb_size(a);
    return tb_sym_raw(tb_list(3, avm_int(op), a, avm_int(n)), false);
}

static inline avm_val tb_op2(int op, avm_val a, avm_val b)
{
    int64_t n = 1 + tb_size(a) + tb_size(b);
    return tb_sym_raw(tb_list(4, avm_int(op), a, b, avm_int(n)), false);
}

/* A new reference to v (for a variable used in several places). */
static inline avm_val tb_ref(avm_val v)
{
    avm_val_retain(v);
    return v;
}

static inline avm_val tb_range(int64_t lo, int64_t hi)
{
    avm_val l;
    if (avm_list_new((size_t)(hi - lo + 1), &l) != 0)
        abort();
    for (int64_t i = lo; i <= hi; i++)
        l.u.l->items[i - lo] = avm_int(i);
    avm_list_seal(l);
    return l;
}

/* (var values), retaining var. */
static inline avm_val tb_choice(avm_val var, avm_val values)
{
    return tb_list(2, tb_ref(var), values);
}

#endif
