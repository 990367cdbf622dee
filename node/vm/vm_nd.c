/* Nondeterminism: choose, require, and the settlement of the choices at the
 * outermost commit. Placeholder. */
#include "avm_err.h"
#include "vm_internal.h"

int vm__nd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out)
{
    (void)a, (void)argc, (void)out, (void)op;
    avm_val s;
    if (avm_cstr(AVM_STR, "Nondeterminism instructions not yet implemented", &s) != 0)
        return vm__oom(x);
    return vm__fail(x, AVM_ERR_NONDET_NOT_IMPLEMENTED, s, avm_nil(), avm_nil());
}

int vm__nd_tx_begin(avm_exec *x)
{
    (void)x;
    return 0;
}

void vm__nd_tx_commit(avm_exec *x)
{
    (void)x;
}

void vm__nd_tx_abort(avm_exec *x)
{
    (void)x;
}

void vm__nd_free(avm_exec *x)
{
    (void)x;
}

int vm__nd_encode(const avm_exec *x, avm_buf *b)
{
    (void)x;
    avm_mp_put_nil(b);
    return b->err;
}

int vm__nd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen)
{
    (void)x, (void)err, (void)errlen;
    return avm_mp_get_nil(r);
}
