/* Finite domains (FD): newVar, narrow, post, label, reifyConstraints, and the
 * store's life across transaction levels. Placeholder until the engine lands. */
#include "avm_err.h"
#include "vm_internal.h"

int vm__fd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out)
{
    (void)a, (void)argc, (void)out, (void)op;
    avm_val s;
    if (avm_cstr(AVM_STR, "FD instructions not yet implemented", &s) != 0)
        return vm__oom(x);
    return vm__fail(x, AVM_ERR_FD_NOT_IMPLEMENTED, s, avm_nil(), avm_nil());
}

int vm__fd_reify(avm_exec *x, avm_val *out)
{
    static const char *keys[] = {"vars", "count"};
    avm_val vals[2] = {avm_nil(), avm_int(0)};
    if (avm_list_new(0, &vals[0]) != 0)
        return vm__oom(x);
    return vm__alist(x, keys, vals, 2, out);
}

int vm__fd_tx_begin(avm_exec *x)
{
    (void)x;
    return 0;
}

bool vm__fd_tx_failed(const avm_exec *x)
{
    (void)x;
    return false;
}

void vm__fd_tx_commit(avm_exec *x)
{
    (void)x;
}

void vm__fd_tx_abort(avm_exec *x)
{
    (void)x;
}

void vm__fd_free(avm_exec *x)
{
    (void)x;
}

int vm__fd_encode(const avm_exec *x, avm_buf *b)
{
    (void)x;
    avm_mp_put_nil(b);
    return b->err;
}

int vm__fd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen)
{
    (void)x, (void)err, (void)errlen;
    return avm_mp_get_nil(r);
}
