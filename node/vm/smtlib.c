/* The constraint IR as SMT-LIB2 (smtlib.h). */
#include "smtlib.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"

static int bad(char *err, size_t errlen, const char *what, size_t i)
{
    snprintf(err, errlen, "constraint problem: %s (item %zu)", what, i);
    return AVM_EINVAL;
}

static bool name_ok(avm_val n)
{
    if (n.kind != AVM_STR || n.u.s->len == 0)
        return false;
    for (uint32_t i = 0; i < n.u.s->len; i++) {
        unsigned char c = (unsigned char)n.u.s->data[i];
        if (c == '|' || c == '\\' || c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* A hash index of names (of choices, or of a model's entries): slot i holds the
 * position + 1 of the name hashing there, 0 when empty. Linear probing. */
typedef struct nindex {
    uint32_t *slot;
    size_t mask;
    avm_val list;  /* borrowed: the choices or the model */
    bool choices;  /* names at items[i][0][1] (choices) or items[i][0] (model) */
    uint32_t used; /* what the expression writer needs: 1 min, 2 max, 4 abs */
} nindex;

static avm_val name_at(const nindex *ix, uint32_t i)
{
    avm_val e = ix->list.u.l->items[i];
    return ix->choices ? e.u.l->items[0].u.l->items[1] : e.u.l->items[0];
}

/* The position of name, or -1. */
static long ix_find(const nindex *ix, avm_val name)
{
    for (size_t h = avm_str_hash(name.u.s) & ix->mask;; h = (h + 1) & ix->mask) {
        uint32_t k = ix->slot[h];
        if (k == 0)
            return -1;
        if (avm_val_eq(name_at(ix, k - 1), name))
            return (long)(k - 1);
    }
}

/* Builds the index; false when out of memory or (*dup set) a name repeats. */
static bool ix_build(nindex *ix, avm_val list, bool choices, bool *dup)
{
    size_t n = list.u.l->len, cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    *ix = (nindex){.slot = calloc(cap, sizeof(uint32_t)),
                   .mask = cap - 1,
                   .list = list,
                   .choices = choices};
    *dup = false;
    if (ix->slot == NULL)
        return false;
    for (uint32_t i = 0; i < n; i++) {
        avm_val nm = name_at(ix, i);
        size_t h = avm_str_hash(nm.u.s) & ix->mask;
        for (; ix->slot[h] != 0; h = (h + 1) & ix->mask) {
            if (avm_val_eq(name_at(ix, ix->slot[h] - 1), nm)) {
                *dup = true;
                return false;
            }
        }
        ix->slot[h] = i + 1;
    }
    return true;
}

static void put_int(avm_buf *b, int64_t v)
{
    if (v < 0)
        avm_buf_printf(b, "(- %llu)", (unsigned long long)(-(uint64_t)v));
    else
        avm_buf_printf(b, "%lld", (long long)v);
}

static void put_name(avm_buf *b, avm_val n)
{
    avm_buf_put(b, "|", 1);
    avm_buf_put(b, n.u.s->data, n.u.s->len);
    avm_buf_put(b, "|", 1);
}

/* An expression; checks that every variable is declared with its type. min, max
 * and abs are the functions |avm-min| |avm-max| |avm-abs| defined before the
 * assertions (ix->used), so that the text grows as the expression does. */
static int put_expr(avm_buf *b, avm_val v, nindex *ix, char *err, size_t errlen,
                    size_t at)
{
    if (v.kind == AVM_INT) {
        put_int(b, v.u.i);
        return 0;
    }
    if (v.kind == AVM_BOOL) {
        avm_buf_puts(b, v.u.b ? "true" : "false");
        return 0;
    }
    if (v.kind != AVM_SYM || !avm_sym_check((avm_val){.kind = AVM_LIST, .u.l = v.u.l}))
        return bad(err, errlen,
                   "a requirement holds a value that is not an int, a bool "
                   "or a symbolic value",
                   at);
    int op = avm_sym_op_of(v);
    avm_val *a = v.u.l->items + 1;
    if (op == AVM_SYM_VAR) {
        long c = ix_find(ix, a[0]);
        if (c < 0) {
            snprintf(err, errlen,
                     "constraint problem: requirement %zu uses \"%.200s\", which no "
                     "choice declares",
                     at, a[0].u.s->data);
            return AVM_EINVAL;
        }
        avm_val decl = ix->list.u.l->items[c].u.l->items[0];
        if (!avm_val_eq(decl.u.l->items[2], a[1]))
            return bad(err, errlen, "a variable used with another type than its choice's",
                       at);
        put_name(b, a[0]);
        return 0;
    }
    static const char *const smt[AVM_SYM_OP_COUNT] = {
        [AVM_SYM_ADD] = "+",   [AVM_SYM_SUB] = "-",   [AVM_SYM_MUL] = "*",
        [AVM_SYM_NEG] = "-",   [AVM_SYM_LT] = "<",    [AVM_SYM_LE] = "<=",
        [AVM_SYM_GT] = ">",    [AVM_SYM_GE] = ">=",   [AVM_SYM_EQ] = "=",
        [AVM_SYM_NOT] = "not", [AVM_SYM_AND] = "and", [AVM_SYM_OR] = "or",
    };
    int rv;
    switch (op) {
    case AVM_SYM_MIN:
    case AVM_SYM_MAX:
    case AVM_SYM_ABS:
        ix->used |= op == AVM_SYM_MIN ? 1u : op == AVM_SYM_MAX ? 2u : 4u;
        avm_buf_puts(b, op == AVM_SYM_MIN   ? "(|avm-min| "
                        : op == AVM_SYM_MAX ? "(|avm-max| "
                                            : "(|avm-abs| ");
        for (int i = 0; i < avm_sym_arity(op); i++) {
            if (i > 0)
                avm_buf_puts(b, " ");
            if ((rv = put_expr(b, a[i], ix, err, errlen, at)) != 0)
                return rv;
        }
        avm_buf_puts(b, ")");
        return 0;
    case AVM_SYM_NE:
        avm_buf_puts(b, "(not (= ");
        if ((rv = put_expr(b, a[0], ix, err, errlen, at)) != 0)
            return rv;
        avm_buf_puts(b, " ");
        if ((rv = put_expr(b, a[1], ix, err, errlen, at)) != 0)
            return rv;
        avm_buf_puts(b, "))");
        return 0;
    default:
        avm_buf_printf(b, "(%s", smt[op]);
        for (int i = 0; i < avm_sym_arity(op); i++) {
            avm_buf_puts(b, " ");
            if ((rv = put_expr(b, a[i], ix, err, errlen, at)) != 0)
                return rv;
        }
        avm_buf_puts(b, ")");
        return 0;
    }
}

/* Checks the problem's shape: (choices requirements), every choice ((var values)). */
static int check_choices(avm_val problem, avm_val *choices, avm_val *reqs, char *err,
                         size_t errlen)
{
    if (problem.kind != AVM_LIST || problem.u.l->len != 2 ||
        problem.u.l->items[0].kind != AVM_LIST || problem.u.l->items[1].kind != AVM_LIST)
        return bad(err, errlen, "expected (choices requirements)", 0);
    *choices = problem.u.l->items[0];
    *reqs = problem.u.l->items[1];
    for (uint32_t i = 0; i < choices->u.l->len; i++) {
        avm_val c = choices->u.l->items[i];
        if (c.kind != AVM_LIST || c.u.l->len != 2)
            return bad(err, errlen, "a choice is not (variable values)", i);
        avm_val var = c.u.l->items[0], vals = c.u.l->items[1];
        if (var.kind != AVM_SYM || avm_sym_op_of(var) != AVM_SYM_VAR ||
            !name_ok(var.u.l->items[1]))
            return bad(err, errlen,
                       "a choice's variable is not a symbolic variable with "
                       "a plain name",
                       i);
        int t = (int)var.u.l->items[2].u.i;
        if (vals.kind != AVM_LIST || vals.u.l->len == 0)
            return bad(err, errlen, "a choice has no values", i);
        for (uint32_t k = 0; k < vals.u.l->len; k++) {
            avm_kind want = t == AVM_SYM_T_INT ? AVM_INT : AVM_BOOL;
            if (vals.u.l->items[k].kind != want)
                return bad(err, errlen, "a choice's values are not all of its type", i);
        }
    }
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int avm_smtlib_write(avm_val problem, bool commands, avm_buf *out, char *err,
                     size_t errlen)
{
    avm_val choices, reqs;
    int rv = check_choices(problem, &choices, &reqs, err, errlen);
    if (rv != 0)
        return rv;
    nindex ix;
    bool dup;
    if (!ix_build(&ix, choices, true, &dup)) {
        free(ix.slot);
        return dup ? bad(err, errlen, "two choices have the same name", 0) : AVM_ENOMEM;
    }
    avm_buf body;
    avm_buf_init(&body);
    for (uint32_t i = 0; i < reqs.u.l->len; i++) {
        avm_val r = reqs.u.l->items[i];
        if (r.kind == AVM_BOOL && r.u.b)
            continue;
        if (!(r.kind == AVM_BOOL ||
              (r.kind == AVM_SYM && avm_sym_type(r) == AVM_SYM_T_BOOL))) {
            rv = bad(err, errlen, "a requirement is not a bool", i);
            break;
        }
        avm_buf_puts(&body, "(assert ");
        if ((rv = put_expr(&body, r, &ix, err, errlen, i)) != 0)
            break;
        avm_buf_puts(&body, ")\n");
    }
    free(ix.slot);
    if (rv != 0) {
        avm_buf_free(&body);
        return rv;
    }
    avm_buf_printf(out, "; AVM constraint problem: %u choices, %u requirements\n",
                   choices.u.l->len, reqs.u.l->len);
    for (uint32_t i = 0; i < choices.u.l->len; i++) {
        avm_val var = choices.u.l->items[i].u.l->items[0];
        bool is_int = var.u.l->items[2].u.i == AVM_SYM_T_INT;
        avm_buf_puts(out, "(declare-const ");
        put_name(out, var.u.l->items[1]);
        avm_buf_puts(out, is_int ? " Int)\n" : " Bool)\n");
    }
    for (uint32_t i = 0; i < choices.u.l->len; i++) {
        avm_val var = choices.u.l->items[i].u.l->items[0];
        avm_val vals = choices.u.l->items[i].u.l->items[1];
        avm_val name = var.u.l->items[1];
        if (var.u.l->items[2].u.i == AVM_SYM_T_BOOL) {
            bool t = false, f = false;
            for (uint32_t k = 0; k < vals.u.l->len; k++)
                if (vals.u.l->items[k].u.b)
                    t = true;
                else
                    f = true;
            if (t && f)
                continue;
            avm_buf_puts(out, t ? "(assert " : "(assert (not ");
            put_name(out, name);
            avm_buf_puts(out, t ? ")\n" : "))\n");
            continue;
        }
        size_t n = vals.u.l->len;
        int64_t *v = malloc(n * sizeof(*v));
        if (v == NULL)
            return AVM_ENOMEM;
        for (size_t k = 0; k < n; k++)
            v[k] = vals.u.l->items[k].u.i;
        qsort(v, n, sizeof(*v), cmp_i64);
        /* Runs of consecutive values: one (= x v) or (and (<= lo x) (<= x hi)) each,
         * under an `or` when there are several. */
        size_t runs = 0;
        for (size_t k = 0; k < n; k++)
            runs += k == 0 || !(v[k] == v[k - 1] ||
                                (v[k - 1] != INT64_MAX && v[k] == v[k - 1] + 1));
        avm_buf_puts(out, runs > 1 ? "(assert (or" : "(assert");
        for (size_t k = 0; k < n;) {
            size_t e = k;
            while (e + 1 < n &&
                   (v[e + 1] == v[e] || (v[e] != INT64_MAX && v[e + 1] == v[e] + 1)))
                e++;
            if (v[e] == v[k]) {
                avm_buf_puts(out, " (= ");
                put_name(out, name);
                avm_buf_puts(out, " ");
                put_int(out, v[k]);
                avm_buf_puts(out, ")");
            } else {
                avm_buf_puts(out, " (and (<= ");
                put_int(out, v[k]);
                avm_buf_puts(out, " ");
                put_name(out, name);
                avm_buf_puts(out, ") (<= ");
                put_name(out, name);
                avm_buf_puts(out, " ");
                put_int(out, v[e]);
                avm_buf_puts(out, "))");
            }
            k = e + 1;
        }
        avm_buf_puts(out, runs > 1 ? "))\n" : ")\n");
        free(v);
    }
    if (ix.used & 1)
        avm_buf_puts(out,
                     "(define-fun |avm-min| ((a Int) (b Int)) Int (ite (<= a b) a b))\n");
    if (ix.used & 2)
        avm_buf_puts(out,
                     "(define-fun |avm-max| ((a Int) (b Int)) Int (ite (>= a b) a b))\n");
    if (ix.used & 4)
        avm_buf_puts(out,
                     "(define-fun |avm-abs| ((a Int)) Int (ite (>= a 0) a (- a)))\n");
    avm_buf_put(out, body.data ? body.data : "", body.len);
    avm_buf_free(&body);
    if (commands) {
        avm_buf_puts(out, "(check-sat)\n");
        if (choices.u.l->len > 0) {
            avm_buf_puts(out, "(get-value (");
            for (uint32_t i = 0; i < choices.u.l->len; i++) {
                if (i > 0)
                    avm_buf_puts(out, " ");
                put_name(out, choices.u.l->items[i].u.l->items[0].u.l->items[1]);
            }
            avm_buf_puts(out, "))\n");
        }
    }
    return out->err;
}

int avm_smtlib_model_check(avm_val problem, avm_val model, char *err, size_t errlen)
{
    avm_val choices, reqs;
    int rv = check_choices(problem, &choices, &reqs, err, errlen);
    if (rv != 0)
        return rv;
    if (model.kind != AVM_LIST)
        return bad(err, errlen, "the model is not a list", 0);
    for (uint32_t k = 0; k < model.u.l->len; k++) {
        avm_val e = model.u.l->items[k];
        if (e.kind != AVM_LIST || e.u.l->len != 2 || e.u.l->items[0].kind != AVM_STR)
            return bad(err, errlen, "a model entry is not (name value)", k);
    }
    nindex ix;
    bool dup;
    if (!ix_build(&ix, model, false, &dup)) {
        free(ix.slot);
        return dup ? bad(err, errlen, "the model names a choice twice", 0) : AVM_ENOMEM;
    }
    for (uint32_t i = 0; i < choices.u.l->len && rv == 0; i++) {
        avm_val var = choices.u.l->items[i].u.l->items[0];
        avm_val vals = choices.u.l->items[i].u.l->items[1];
        long k = ix_find(&ix, var.u.l->items[1]);
        bool member = false;
        for (uint32_t j = 0; k >= 0 && j < vals.u.l->len && !member; j++)
            member = avm_val_eq(model.u.l->items[k].u.l->items[1], vals.u.l->items[j]);
        if (!member)
            rv = bad(err, errlen,
                     k < 0 ? "the model misses a choice"
                           : "the model gives a choice a value it may not take",
                     i);
    }
    free(ix.slot);
    return rv;
}
