/* The AVM error taxonomy as data. */
#include "avm_error.h"

#include <string.h>

static const struct {
    const char *family, *name;
    int nargs;
} error_table[AVM_ERR_COUNT] = {[AVM_ERR_NONE] = {"None", "None", 0},
#define AVM__AERR_INFO(id, fam, nm, n) [AVM_ERR_##id] = {#fam, nm, n},
                                AVM_ERROR_MAP(AVM__AERR_INFO)
#undef AVM__AERR_INFO
};

const char *avm_error_name(avm_error_code c)
{
    return (unsigned)c < AVM_ERR_COUNT ? error_table[c].name : "ErrUnknown";
}

const char *avm_error_family(avm_error_code c)
{
    return (unsigned)c < AVM_ERR_COUNT ? error_table[c].family : "Unknown";
}

int avm_error_nargs(avm_error_code c)
{
    return (unsigned)c < AVM_ERR_COUNT ? error_table[c].nargs : 0;
}

void avm_error_clear(avm_error *e)
{
    for (int i = 0; i < 3; i++)
        avm_val_release(e->args[i]);
    avm_val_release(e->source);
    memset(e, 0, sizeof(*e));
}

void avm_error_set(avm_error *e, avm_error_code c, avm_val a0, avm_val a1, avm_val a2)
{
    avm_error_clear(e);
    e->code = c;
    e->args[0] = a0;
    e->args[1] = a1;
    e->args[2] = a2;
}

void avm_error_msg(avm_error *e, avm_error_code c, const char *msg)
{
    avm_val s;
    if (avm_cstr(AVM_STR, msg, &s) != 0)
        s = avm_nil();
    avm_error_set(e, c, s, avm_nil(), avm_nil());
}

void avm_error_copy(avm_error *dst, const avm_error *src)
{
    avm_error_clear(dst);
    *dst = *src;
    for (int i = 0; i < 3; i++)
        avm_val_retain(dst->args[i]);
    avm_val_retain(dst->source);
}

bool avm_error_eq(const avm_error *a, const avm_error *b)
{
    if (a->code != b->code)
        return false;
    for (int i = 0; i < 3; i++)
        if (!avm_val_eq(a->args[i], b->args[i]))
            return false;
    return true;
}

void avm_error_print(avm_buf *b, const avm_error *e)
{
    if (strcmp(avm_error_family(e->code), avm_error_name(e->code)) == 0)
        avm_buf_puts(b, avm_error_name(e->code)); /* EvalError */
    else
        avm_buf_printf(b, "%s.%s", avm_error_family(e->code), avm_error_name(e->code));
    int n = avm_error_nargs(e->code);
    for (int i = 0; i < n; i++) {
        avm_buf_put(b, " ", 1);
        avm_val_print(b, e->args[i]);
    }
    if (e->source.kind == AVM_STR && e->line > 0)
        avm_buf_printf(b, " (at %s:%u:%u)", e->source.u.s->data, e->line, e->col);
}

void avm_error_json(avm_buf *b, const avm_error *e)
{
    avm_buf_printf(b, "{\"family\":\"%s\",\"error\":\"%s\",\"args\":[",
                   avm_error_family(e->code), avm_error_name(e->code));
    int n = avm_error_nargs(e->code);
    for (int i = 0; i < n; i++) {
        if (i > 0)
            avm_buf_put(b, ",", 1);
        avm_val_json(b, e->args[i]);
    }
    avm_buf_put(b, "]", 1);
    if (e->source.kind == AVM_STR && e->line > 0) {
        avm_buf_puts(b, ",\"at\":{\"file\":");
        avm_json_str(b, e->source.u.s->data, e->source.u.s->len);
        avm_buf_printf(b, ",\"line\":%u,\"col\":%u}", e->line, e->col);
    }
    avm_buf_put(b, "}", 1);
}
