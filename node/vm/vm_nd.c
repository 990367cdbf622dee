/* Nondeterminism (default mode): `choose` makes a symbolic value, arithmetic and
 * comparisons over symbolic values stay symbolic (vm__nd_prim), `require` collects
 * assertions, and the outermost commitTx settles them (vm__nd_settle): the
 * platform's solver finds values for every choice such that every requirement
 * holds, the interpreter checks that model with the language's own 64-bit
 * arithmetic, and substitutes it into everything the transaction writes and into
 * every value the program holds. No solution: commitTx returns false.
 *
 * Choices and requirements follow the transaction levels: an aborted level drops
 * the ones it made. A choice is named "<outermost txid>.<n>" with n counting the
 * transaction's choices, so names are unique in the cluster (transaction ids are)
 * and never reused, even after an abort. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "vm_internal.h"

typedef struct nd_choice {
    avm_val var;    /* AVM_SYM_VAR */
    avm_val values; /* the non-empty list it may take */
} nd_choice;

typedef struct nd_level {
    size_t nchoices, nreqs; /* at the level's start */
} nd_level;

struct vm_nd {
    VEC(nd_choice) choices;
    VEC(avm_val) reqs;
    VEC(nd_level) levels; /* one per open transaction level */
    uint64_t seq;         /* choices made in this (outermost) transaction */
};

#define ND_NOT_MINE (-1)
/* Choices one transaction may make (the solver's problem stays small). */
#define AVM_ND_MAX_CHOICES 1024

static struct vm_nd *nd_get(avm_exec *x)
{
    if (x->nd == NULL)
        x->nd = calloc(1, sizeof(*x->nd));
    return x->nd;
}

static void nd_truncate(struct vm_nd *nd, size_t nchoices, size_t nreqs)
{
    while (nd->choices.n > nchoices) {
        nd_choice *c = &nd->choices.v[--nd->choices.n];
        avm_val_release(c->var);
        avm_val_release(c->values);
    }
    while (nd->reqs.n > nreqs)
        avm_val_release(nd->reqs.v[--nd->reqs.n]);
}

void vm__nd_free(avm_exec *x)
{
    struct vm_nd *nd = x->nd;
    if (nd == NULL)
        return;
    nd_truncate(nd, 0, 0);
    free(nd->choices.v);
    free(nd->reqs.v);
    free(nd->levels.v);
    free(nd);
    x->nd = NULL;
}

/* Errors ------------------------------------------------------------------------- */

int vm__nd_unsettled(avm_exec *x, avm_val v, const char *what)
{
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, v);
    int rv = vm__failf(x, AVM_ERR_ND_UNSETTLED,
                       "%s on the unsettled symbolic value %.200s: its choices are "
                       "settled only when the transaction commits",
                       what, b.data ? b.data : "?");
    avm_buf_free(&b);
    return rv;
}

/* Building symbolic values ------------------------------------------------------- */

static int mk_sym(avm_exec *x, int op, avm_val a0, avm_val a1, int argc, avm_val *out)
{
    int64_t size = 1;
    if (op != AVM_SYM_VAR)
        for (int i = 0; i < argc; i++) {
            avm_val a = i == 0 ? a0 : a1;
            size += a.kind == AVM_SYM ? avm_sym_size(a) : 1;
        }
    if (size > AVM_SYM_MAX_SIZE)
        return vm__failf(x, AVM_ERR_ND_UNSETTLED,
                         "a symbolic expression would have more than %d nodes",
                         AVM_SYM_MAX_SIZE);
    avm_val l;
    if (avm_list_new(2 + (size_t)argc, &l) != 0)
        return vm__oom(x);
    l.u.l->items[0] = avm_int(op);
    l.u.l->items[1] = vm__ref(a0);
    if (argc > 1)
        l.u.l->items[2] = vm__ref(a1);
    l.u.l->items[1 + argc] = avm_int(size);
    if (avm_list_seal(l) > AVM_MAX_DEPTH) {
        avm_val_release(l);
        return vm__failf(x, AVM_ERR_ND_UNSETTLED,
                         "a symbolic expression would nest deeper than %d levels",
                         AVM_MAX_DEPTH);
    }
    l.kind = AVM_SYM;
    *out = l;
    return VM_OK;
}

static int type_of(avm_val v)
{
    if (v.kind == AVM_INT)
        return AVM_SYM_T_INT;
    if (v.kind == AVM_BOOL)
        return AVM_SYM_T_BOOL;
    if (v.kind == AVM_SYM)
        return avm_sym_type(v);
    return -1;
}

int vm__nd_prim(avm_exec *x, int p, const char *name, avm_val *a, int argc, avm_val *out)
{
    int op = -1, want = AVM_SYM_T_INT;
    switch (p) {
    case AVM_PRIM_ADD:
        op = AVM_SYM_ADD;
        break;
    case AVM_PRIM_SUB:
        op = AVM_SYM_SUB;
        break;
    case AVM_PRIM_MUL:
        op = AVM_SYM_MUL;
        break;
    case AVM_PRIM_MIN:
        op = AVM_SYM_MIN;
        break;
    case AVM_PRIM_MAX:
        op = AVM_SYM_MAX;
        break;
    case AVM_PRIM_NEG:
        op = AVM_SYM_NEG;
        break;
    case AVM_PRIM_ABS:
        op = AVM_SYM_ABS;
        break;
    case AVM_PRIM_LT:
        op = AVM_SYM_LT;
        break;
    case AVM_PRIM_LE:
        op = AVM_SYM_LE;
        break;
    case AVM_PRIM_GT:
        op = AVM_SYM_GT;
        break;
    case AVM_PRIM_GE:
        op = AVM_SYM_GE;
        break;
    case AVM_PRIM_EQ:
    case AVM_PRIM_NE: {
        int t0 = type_of(a[0]), t1 = type_of(a[1]);
        if (t0 < 0 || t1 < 0 || t0 != t1) {
            /* A symbolic int never equals a string, a list or a bool. */
            *out = avm_bool(p == AVM_PRIM_NE);
            return VM_OK;
        }
        return mk_sym(x, p == AVM_PRIM_EQ ? AVM_SYM_EQ : AVM_SYM_NE, a[0], a[1], 2, out);
    }
    case AVM_PRIM_NOT:
        if (type_of(a[0]) != AVM_SYM_T_BOOL)
            return vm__eval_error(x, "'not' of a symbolic int");
        return mk_sym(x, AVM_SYM_NOT, a[0], a[0], 1, out);
    case AVM_PRIM_ALL:
    case AVM_PRIM_ANY: {
        /* Variadic: folds concrete arguments, chains symbolic ones. */
        bool all = p == AVM_PRIM_ALL;
        avm_val acc = avm_bool(all);
        for (int i = 0; i < argc; i++) {
            if (a[i].kind != AVM_SYM) {
                if (avm_truthy(a[i]) != all) {
                    avm_val_release(acc);
                    *out = avm_bool(!all);
                    return VM_OK;
                }
                continue;
            }
            if (avm_sym_type(a[i]) != AVM_SYM_T_BOOL) {
                avm_val_release(acc);
                return vm__eval_error(x, "'%s' of a symbolic int", name);
            }
            if (acc.kind == AVM_BOOL) {
                acc = vm__ref(a[i]);
                continue;
            }
            avm_val next;
            int rv = mk_sym(x, all ? AVM_SYM_AND : AVM_SYM_OR, acc, a[i], 2, &next);
            avm_val_release(acc);
            if (rv != VM_OK)
                return rv;
            acc = next;
        }
        *out = acc;
        return VM_OK;
    }
    case AVM_PRIM_IS_INT:
    case AVM_PRIM_IS_BOOL:
        *out = avm_bool(type_of(a[0]) ==
                        (p == AVM_PRIM_IS_INT ? AVM_SYM_T_INT : AVM_SYM_T_BOOL));
        return VM_OK;
    case AVM_PRIM_CONS:
        if (a[1].kind != AVM_SYM)
            return ND_NOT_MINE; /* a symbolic value as an element: plain data */
        break;
    case AVM_PRIM_PUT:
        if (a[0].kind != AVM_SYM && a[1].kind != AVM_SYM)
            return ND_NOT_MINE;
        break;
    case AVM_PRIM_IS_NULL:
    case AVM_PRIM_IS_NIL:
    case AVM_PRIM_IS_STR:
    case AVM_PRIM_IS_LIST:
        *out = avm_bool(false);
        return VM_OK;
    default:
        break;
    }
    if (op < 0) {
        for (int i = 0; i < argc; i++)
            if (a[i].kind == AVM_SYM)
                return vm__nd_unsettled(x, a[i], name);
        return ND_NOT_MINE;
    }
    int n = avm_sym_arity(op);
    for (int i = 0; i < n; i++) {
        int t = type_of(a[i]);
        if (t != want) {
            if (t < 0)
                return vm__eval_error(x, "'%s' expects int, got %s", name,
                                      avm_kind_name((avm_kind)a[i].kind));
            return vm__eval_error(x, "'%s' expects an int, got a symbolic bool", name);
        }
    }
    return mk_sym(x, op, a[0], n > 1 ? a[1] : a[0], n, out);
}

/* choose and require ------------------------------------------------------------- */

static bool in_tx(const avm_exec *x)
{
    return x->tx.n > 0;
}

static int op_choose(avm_exec *x, avm_val values, avm_val *out)
{
    if (values.kind != AVM_LIST || values.u.l->len == 0)
        return vm__failf(x, AVM_ERR_ND_INVALID_CHOICE,
                         "choose expects a non-empty list of ints or of bools, got %s",
                         values.kind == AVM_LIST ? "()"
                                                 : avm_kind_name((avm_kind)values.kind));
    avm_kind k = (avm_kind)values.u.l->items[0].kind;
    for (uint32_t i = 0; i < values.u.l->len; i++) {
        avm_kind ki = (avm_kind)values.u.l->items[i].kind;
        if ((ki != AVM_INT && ki != AVM_BOOL) || ki != k)
            return vm__failf(x, AVM_ERR_ND_INVALID_CHOICE,
                             "choose: value %u is %s; the values must be all ints or all "
                             "bools",
                             i, avm_kind_name(ki));
    }
    if (!in_tx(x))
        return vm__failf(x, AVM_ERR_ND_INVALID_CHOICE,
                         "choose outside a transaction: only a commit settles a choice");
    if (x->nd != NULL && x->nd->choices.n >= AVM_ND_MAX_CHOICES)
        return vm__failf(x, AVM_ERR_ND_INVALID_CHOICE,
                         "choose: a transaction settles at most %d choices",
                         AVM_ND_MAX_CHOICES);
    if (values.u.l->len == 1) {
        *out = vm__ref(values.u.l->items[0]); /* nothing to choose */
        return VM_OK;
    }
    struct vm_nd *nd = nd_get(x);
    if (nd == NULL)
        return vm__oom(x);
    avm_val txid = x->tx.v[0].txid;
    char name[300];
    snprintf(name, sizeof(name), "%.*s.%llu", (int)txid.u.s->len, txid.u.s->data,
             (unsigned long long)nd->seq);
    avm_val nm, var;
    if (avm_cstr(AVM_STR, name, &nm) != 0)
        return vm__oom(x);
    int rv = mk_sym(x, AVM_SYM_VAR, nm,
                    avm_int(k == AVM_INT ? AVM_SYM_T_INT : AVM_SYM_T_BOOL), 2, &var);
    avm_val_release(nm);
    if (rv != VM_OK)
        return rv;
    nd_choice *c = VEC_SLOT(nd->choices);
    if (c == NULL) {
        avm_val_release(var);
        return vm__oom(x);
    }
    c->var = var;
    c->values = vm__ref(values);
    nd->seq++;
    vm__event(x, AVM_EV_CHOICE_MADE, vm__ref(var), vm__ref(values), avm_nil());
    *out = vm__ref(var);
    return VM_OK;
}

static int op_require(avm_exec *x, avm_val b, avm_val *out)
{
    /* The specification's constructor, (list "Assert" b), or b itself. */
    if (b.kind == AVM_LIST && b.u.l->len == 2 && b.u.l->items[0].kind == AVM_STR &&
        strcmp(b.u.l->items[0].u.s->data, "Assert") == 0)
        b = b.u.l->items[1];
    if (type_of(b) != AVM_SYM_T_BOOL)
        return vm__eval_error(x, "'require' expects a bool or a symbolic bool, got %s",
                              b.kind == AVM_SYM ? "a symbolic int"
                                                : avm_kind_name((avm_kind)b.kind));
    *out = avm_nil();
    if (!in_tx(x)) {
        if (b.kind == AVM_SYM)
            return vm__nd_unsettled(x, b, "require outside a transaction");
        if (!b.u.b)
            return vm__failf(x, AVM_ERR_ND_REQUIREMENT_FAILED,
                             "require: the assertion is false (outside a transaction)");
        return VM_OK;
    }
    struct vm_nd *nd = nd_get(x);
    if (nd == NULL)
        return vm__oom(x);
    if (VEC_PUSH(x, nd->reqs, b) != 0)
        return vm__oom(x);
    avm_val_retain(b);
    vm__event(x, AVM_EV_REQUIREMENT_ADDED, vm__ref(b), avm_nil(), avm_nil());
    return VM_OK;
}

int vm__nd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out)
{
    (void)argc;
    if (op == AVM_I_CHOOSE)
        return op_choose(x, a[0], out);
    return op_require(x, a[0], out);
}

/* Transaction levels ------------------------------------------------------------- */

int vm__nd_tx_begin(avm_exec *x)
{
    if (x->nd == NULL)
        return 0; /* nothing chosen yet: levels are counted from x->tx when needed */
    struct vm_nd *nd = x->nd;
    if (x->tx.n == 1)
        nd->seq = 0;
    /* Levels opened before the store existed start empty. */
    while (nd->levels.n + 1 < x->tx.n) {
        nd_level *l = VEC_SLOT(nd->levels);
        if (l == NULL)
            return AVM_ENOMEM;
        l->nchoices = l->nreqs = 0;
    }
    nd_level *l = VEC_SLOT(nd->levels);
    if (l == NULL)
        return AVM_ENOMEM;
    l->nchoices = nd->choices.n;
    l->nreqs = nd->reqs.n;
    return 0;
}

/* The level being closed: the last one, or (store made inside it) none. */
static nd_level level_start(struct vm_nd *nd, const avm_exec *x)
{
    nd_level l = {0, 0};
    if (nd->levels.n >= x->tx.n && x->tx.n > 0)
        l = nd->levels.v[x->tx.n - 1];
    return l;
}

void vm__nd_tx_commit(avm_exec *x)
{
    struct vm_nd *nd = x->nd;
    if (nd == NULL)
        return;
    if (nd->levels.n >= x->tx.n && x->tx.n > 0)
        nd->levels.n = x->tx.n - 1;
    if (x->tx.n <= 1) /* the outermost: settled (or nothing was chosen) */
        nd_truncate(nd, 0, 0);
}

void vm__nd_tx_abort(avm_exec *x)
{
    struct vm_nd *nd = x->nd;
    if (nd == NULL)
        return;
    nd_level l = level_start(nd, x);
    nd_truncate(nd, l.nchoices, l.nreqs);
    if (nd->levels.n >= x->tx.n && x->tx.n > 0)
        nd->levels.n = x->tx.n - 1;
    if (x->tx.n <= 1)
        nd_truncate(nd, 0, 0);
}

/* Settlement --------------------------------------------------------------------- */

static bool has_sym(avm_val v);

bool vm__nd_has_sym(avm_val v)
{
    return has_sym(v);
}

static bool has_sym(avm_val v)
{
    if (v.kind == AVM_SYM)
        return true;
    if (v.kind != AVM_LIST || v.u.l->depth < 1)
        return false;
    for (uint32_t i = 0; i < v.u.l->len; i++) {
        avm_val e = v.u.l->items[i];
        if (e.kind == AVM_SYM || (e.kind == AVM_LIST && has_sym(e)))
            return true;
    }
    return false;
}

/* The value the model gives name, or NULL. */
static const avm_val *model_get(avm_val model, avm_val name)
{
    for (uint32_t i = 0; i < model.u.l->len; i++) {
        avm_val e = model.u.l->items[i];
        if (avm_val_eq(e.u.l->items[0], name))
            return &e.u.l->items[1];
    }
    return NULL;
}

enum { SUB_OK = 0, SUB_UNKNOWN = 1, SUB_OVERFLOW = 2, SUB_NOMEM = 3 };

/* Evaluates a symbolic value under the model with the language's arithmetic:
 * SUB_UNKNOWN names a variable the model lacks (in *missing, borrowed). */
static int eval_sym(avm_val v, avm_val model, avm_val *out, avm_val *missing)
{
    int op = avm_sym_op_of(v);
    avm_val *it = v.u.l->items;
    if (op == AVM_SYM_VAR) {
        const avm_val *m = model_get(model, it[1]);
        if (m == NULL) {
            *missing = it[1];
            return SUB_UNKNOWN;
        }
        *out = *m; /* ints and bools: nothing to retain */
        return SUB_OK;
    }
    avm_val a[2] = {avm_nil(), avm_nil()};
    int n = avm_sym_arity(op);
    for (int i = 0; i < n; i++) {
        if (it[1 + i].kind != AVM_SYM) {
            a[i] = it[1 + i];
            continue;
        }
        int rv = eval_sym(it[1 + i], model, &a[i], missing);
        if (rv != SUB_OK)
            return rv;
    }
    int64_t l = a[0].u.i, r = a[1].u.i, res = 0;
    bool ovf = false;
    switch (op) {
    case AVM_SYM_ADD:
        ovf = __builtin_add_overflow(l, r, &res);
        break;
    case AVM_SYM_SUB:
        ovf = __builtin_sub_overflow(l, r, &res);
        break;
    case AVM_SYM_MUL:
        ovf = __builtin_mul_overflow(l, r, &res);
        break;
    case AVM_SYM_MIN:
        res = l < r ? l : r;
        break;
    case AVM_SYM_MAX:
        res = l > r ? l : r;
        break;
    case AVM_SYM_NEG:
    case AVM_SYM_ABS:
        ovf = l == INT64_MIN;
        res = op == AVM_SYM_NEG || l < 0 ? -l : l;
        break;
    case AVM_SYM_LT:
        *out = avm_bool(l < r);
        return SUB_OK;
    case AVM_SYM_LE:
        *out = avm_bool(l <= r);
        return SUB_OK;
    case AVM_SYM_GT:
        *out = avm_bool(l > r);
        return SUB_OK;
    case AVM_SYM_GE:
        *out = avm_bool(l >= r);
        return SUB_OK;
    case AVM_SYM_EQ:
    case AVM_SYM_NE: {
        bool eq = avm_val_eq(a[0], a[1]);
        *out = avm_bool(op == AVM_SYM_EQ ? eq : !eq);
        return SUB_OK;
    }
    case AVM_SYM_NOT:
        *out = avm_bool(!a[0].u.b);
        return SUB_OK;
    case AVM_SYM_AND:
        *out = avm_bool(a[0].u.b && a[1].u.b);
        return SUB_OK;
    default: /* AVM_SYM_OR */
        *out = avm_bool(a[0].u.b || a[1].u.b);
        return SUB_OK;
    }
    if (ovf)
        return SUB_OVERFLOW;
    *out = avm_int(res);
    return SUB_OK;
}

/* v with every symbolic value in it replaced by its value under the model (owned);
 * lists without symbolic values are shared, not copied. */
static int subst(avm_val v, avm_val model, avm_val *out, avm_val *missing)
{
    if (v.kind == AVM_SYM)
        return eval_sym(v, model, out, missing);
    if (!has_sym(v)) {
        *out = vm__ref(v);
        return SUB_OK;
    }
    avm_val l;
    if (avm_list_new(v.u.l->len, &l) != 0)
        return SUB_NOMEM;
    for (uint32_t i = 0; i < v.u.l->len; i++) {
        int rv = subst(v.u.l->items[i], model, &l.u.l->items[i], missing);
        if (rv != SUB_OK) {
            avm_val_release(l);
            return rv;
        }
    }
    avm_list_seal(l);
    *out = l;
    return SUB_OK;
}

int avm_sym_subst(avm_val v, avm_val model, avm_val *out)
{
    avm_val missing;
    if (model.kind != AVM_LIST)
        return AVM_EINVAL;
    int rv = subst(v, model, out, &missing);
    return rv == SUB_OK         ? 0
           : rv == SUB_UNKNOWN  ? AVM_ENOTFOUND
           : rv == SUB_OVERFLOW ? AVM_ETOOBIG
                                : AVM_ENOMEM;
}

/* Replaces *slot in place; the old value is released. */
static int subst_slot(avm_val *slot, avm_val model, avm_val *missing)
{
    if (!has_sym(*slot))
        return SUB_OK;
    avm_val nv;
    int rv = subst(*slot, model, &nv, missing);
    if (rv != SUB_OK)
        return rv;
    avm_val_release(*slot);
    *slot = nv;
    return SUB_OK;
}

/* Everything the execution holds: the transaction's writes, the operand stacks and
 * locals of every frame, the activation contexts. Values naming a choice the model
 * does not settle (an aborted level's, or another bundle member's) are left as
 * they are when keep_unknown. */
static int subst_all(avm_exec *x, avm_val model, bool keep_unknown, avm_val *missing)
{
    int rv = SUB_OK;
#define SLOT(p)                                                                          \
    do {                                                                                 \
        rv = subst_slot((p), model, missing);                                            \
        if (rv == SUB_UNKNOWN && keep_unknown)                                           \
            rv = SUB_OK;                                                                 \
        if (rv != SUB_OK)                                                                \
            return rv;                                                                   \
    } while (0)
    for (size_t i = 0; i < x->states.n; i++)
        SLOT(&x->states.v[i].b);
    for (size_t i = 0; i < x->writes.n; i++)
        SLOT(&x->writes.v[i].b);
    for (size_t i = 0; i < x->sp; i++)
        SLOT(&x->stack[i]);
    SLOT(&x->input);
    for (size_t i = 0; i < x->ctxs.n; i++) {
        SLOT(&x->ctxs.v[i].input);
        SLOT(&x->ctxs.v[i].inp);
    }
#undef SLOT
    return rv;
}

/* The problem: (choices requirements). */
static int problem(const struct vm_nd *nd, avm_val *out)
{
    avm_val ch, rq;
    if (avm_list_new(nd->choices.n, &ch) != 0)
        return AVM_ENOMEM;
    for (size_t i = 0; i < nd->choices.n; i++) {
        avm_val pair[2] = {vm__ref(nd->choices.v[i].var),
                           vm__ref(nd->choices.v[i].values)};
        if (avm_list_from(pair, 2, &ch.u.l->items[i]) != 0) {
            avm_val_release(pair[0]);
            avm_val_release(pair[1]);
            avm_val_release(ch);
            return AVM_ENOMEM;
        }
    }
    avm_list_seal(ch);
    if (avm_list_new(nd->reqs.n, &rq) != 0) {
        avm_val_release(ch);
        return AVM_ENOMEM;
    }
    for (size_t i = 0; i < nd->reqs.n; i++)
        rq.u.l->items[i] = vm__ref(nd->reqs.v[i]);
    avm_list_seal(rq);
    avm_val pair[2] = {ch, rq};
    if (avm_list_from(pair, 2, out) != 0) {
        avm_val_release(ch);
        avm_val_release(rq);
        return AVM_ENOMEM;
    }
    return 0;
}

int avm_exec_problem(const avm_exec *x, avm_val *out)
{
    static const struct vm_nd empty;
    return problem(x->nd != NULL ? x->nd : &empty, out);
}

static int solved_event(avm_exec *x, const char *outcome, avm_val detail)
{
    avm_val s;
    if (avm_cstr(AVM_STR, outcome, &s) != 0) {
        avm_val_release(detail);
        return vm__oom(x);
    }
    vm__event(x, AVM_EV_CONSTRAINTS_SOLVED, s, detail, avm_nil());
    return VM_OK;
}

/* The commit says false: ErrorOccurred (code, message) under the transaction's
 * controller, like a conflict. */
static int settle_false(avm_exec *x, avm_error_code code, const char *msg)
{
    avm_val s;
    if (avm_cstr(AVM_STR, msg, &s) != 0)
        return vm__oom(x);
    vm__log(x, x->counter, AVM_EV_ERROR_OCCURRED, false, code, x->txctrl, s, avm_nil(),
            avm_nil());
    x->counter++;
    avm_val_release(s);
    return VM_ND_FALSE;
}

static int name_error(avm_exec *x, avm_val missing)
{
    return vm__failf(x, AVM_ERR_ND_UNSETTLED,
                     "the transaction writes a value of choice \"%.200s\", which no open "
                     "level of it made (its level aborted)",
                     missing.u.s->data);
}

/* Before the outermost commit hands its write set over. Returns 0 to go on
 * (nothing to settle, settled and substituted, or deferred to the bundle: then
 * *deferred holds the problem), VM_ND_FALSE when the commit must say false (logged
 * here), VM_FAIL on an error. */
int vm__nd_settle(avm_exec *x, avm_val *deferred)
{
    struct vm_nd *nd = x->nd;
    *deferred = avm_nil();
    if (nd == NULL && x->bundle.kind != AVM_STR)
        return 0; /* no symbolic value can exist in this execution */
    if (nd == NULL || (nd->choices.n == 0 && nd->reqs.n == 0)) {
        /* Nothing to settle: the writes must not hold a symbolic value (of a choice
         * an aborted level made). */
        avm_val missing = avm_nil();
        for (size_t i = 0; i < x->states.n; i++) {
            avm_val v = x->states.v[i].b;
            if (!has_sym(v))
                continue;
            avm_val empty, tmp;
            if (avm_list_new(0, &empty) != 0)
                return vm__oom(x);
            int rv = subst(v, empty, &tmp, &missing);
            avm_val_release(empty);
            if (rv == SUB_OK) {
                avm_val_release(tmp);
                continue;
            }
            if (rv == SUB_UNKNOWN && x->bundle.kind == AVM_STR &&
                x->plat->settles_bundles)
                continue; /* another member's choice: the bundle settles it */
            return rv == SUB_UNKNOWN ? name_error(x, missing) : vm__oom(x);
        }
        return 0;
    }
    for (size_t i = 0; i < nd->reqs.n; i++)
        if (nd->reqs.v[i].kind == AVM_BOOL && !nd->reqs.v[i].u.b) {
            if (solved_event(x, "unsat", avm_nil()) != VM_OK)
                return VM_FAIL;
            return settle_false(x, AVM_ERR_ND_UNSATISFIABLE,
                                "a requirement of the transaction is false");
        }
    if (x->bundle.kind == AVM_STR && x->plat->settles_bundles) {
        /* The bundle's home settles every member's problem at once. */
        if (problem(nd, deferred) != 0)
            return vm__oom(x);
        return 0;
    }
    if (x->plat->solve == NULL)
        return vm__failf(x, AVM_ERR_ND_NO_SOLVER,
                         "the transaction has unsettled choices and this node has no "
                         "solver (executeSolver)");
    avm_val prob, model = avm_nil();
    if (problem(nd, &prob) != 0)
        return vm__oom(x);
    avm_buf why;
    avm_buf_init(&why);
    int rv = x->plat->solve(x->plat->data, prob, &model, &why);
    avm_val_release(prob);
    char msg[400];
    snprintf(msg, sizeof(msg), "%.300s", why.data ? why.data : "");
    avm_buf_free(&why);
    if (rv < 0) {
        avm_val_release(model);
        return vm__failf(x, AVM_ERR_ND_NO_SOLVER, "the solver failed: %s", msg);
    }
    if (rv == AVM_SOLVE_UNSAT) {
        if (solved_event(x, "unsat", avm_nil()) != VM_OK)
            return VM_FAIL;
        return settle_false(x, AVM_ERR_ND_UNSATISFIABLE,
                            "no values of the choices satisfy every requirement");
    }
    if (rv != AVM_SOLVE_SAT) {
        avm_val r;
        if (avm_cstr(AVM_STR, msg, &r) != 0)
            return vm__oom(x);
        if (solved_event(x, "unknown", r) != VM_OK)
            return VM_FAIL;
        char m2[500];
        snprintf(m2, sizeof(m2), "the solver gave up: %s", msg);
        return settle_false(x, AVM_ERR_ND_SOLVER_LIMIT, m2);
    }
    return vm__nd_apply_model(x, model);
}

/* Checks the model against every requirement with the language's arithmetic and
 * substitutes it everywhere; takes model. VM_OK, VM_FAIL, or VM_ND_FALSE when the
 * commit must say false (the model breaks a requirement in 64-bit arithmetic). */
int vm__nd_apply_model(avm_exec *x, avm_val model)
{
    struct vm_nd *nd = x->nd;
    avm_val missing = avm_nil();
    bool is_model = model.kind == AVM_LIST;
    for (uint32_t i = 0; is_model && i < model.u.l->len; i++) {
        avm_val e = model.u.l->items[i];
        is_model = e.kind == AVM_LIST && e.u.l->len == 2 &&
                   e.u.l->items[0].kind == AVM_STR &&
                   (e.u.l->items[1].kind == AVM_INT || e.u.l->items[1].kind == AVM_BOOL);
    }
    if (!is_model) {
        avm_val_release(model);
        return vm__failf(x, AVM_ERR_ND_NO_SOLVER, "the solver's model is malformed");
    }
    for (size_t i = 0; nd != NULL && i < nd->reqs.n; i++) {
        avm_val r;
        int rv = nd->reqs.v[i].kind == AVM_SYM
                     ? eval_sym(nd->reqs.v[i], model, &r, &missing)
                     : (r = nd->reqs.v[i], SUB_OK);
        if (rv == SUB_UNKNOWN) {
            avm_val_release(model);
            return vm__failf(x, AVM_ERR_ND_NO_SOLVER,
                             "the solver's model leaves choice \"%.200s\" unsettled",
                             missing.u.s->data);
        }
        if (rv == SUB_OVERFLOW || !r.u.b) {
            avm_val_release(model);
            return settle_false(x, AVM_ERR_ND_UNSATISFIABLE,
                                rv == SUB_OVERFLOW
                                    ? "the solver's values overflow 64-bit arithmetic"
                                    : "the solver's values break a requirement");
        }
    }
    int rv = subst_all(x, model, false, &missing);
    if (rv == SUB_NOMEM) {
        avm_val_release(model);
        return vm__oom(x);
    }
    if (rv == SUB_UNKNOWN) {
        avm_val_release(model);
        return name_error(x, missing);
    }
    if (rv == SUB_OVERFLOW) {
        avm_val_release(model);
        return settle_false(x, AVM_ERR_ND_UNSATISFIABLE,
                            "a value the transaction holds overflows 64-bit arithmetic "
                            "under the solver's values");
    }
    return solved_event(x, "sat", model);
}

int avm_exec_commit_settle(avm_exec *x, avm_val model)
{
    if (x->commit_wait != CW_PENDING) {
        avm_val_release(model);
        return AVM_ESTATE;
    }
    avm_val missing = avm_nil();
    /* The bundle's home checked the merged problem; values of choices that are not
     * this member's stay as they are if the model lacks them. */
    int rv = subst_all(x, model, true, &missing);
    if (rv == SUB_OK && solved_event(x, "sat", model) != VM_OK)
        return AVM_ENOMEM;
    if (rv != SUB_OK)
        avm_val_release(model);
    return rv == SUB_NOMEM ? AVM_ENOMEM : 0;
}

/* Serialization: nil, or [choices, requirements, levels, seq] with choices a list
 * of [var, values] and levels a list of [nchoices, nreqs]. */
int vm__nd_encode(const avm_exec *x, avm_buf *b)
{
    const struct vm_nd *nd = x->nd;
    if (nd == NULL || (nd->choices.n == 0 && nd->reqs.n == 0 && nd->levels.n == 0)) {
        avm_mp_put_nil(b);
        return b->err;
    }
    avm_mp_put_array(b, 4);
    avm_mp_put_array(b, (uint32_t)nd->choices.n);
    for (size_t i = 0; i < nd->choices.n; i++) {
        avm_mp_put_array(b, 2);
        int rv = avm_val_encode(b, nd->choices.v[i].var);
        if (rv == 0)
            rv = avm_val_encode(b, nd->choices.v[i].values);
        if (rv != 0)
            return rv;
    }
    avm_mp_put_array(b, (uint32_t)nd->reqs.n);
    for (size_t i = 0; i < nd->reqs.n; i++) {
        int rv = avm_val_encode(b, nd->reqs.v[i]);
        if (rv != 0)
            return rv;
    }
    avm_mp_put_array(b, (uint32_t)nd->levels.n);
    for (size_t i = 0; i < nd->levels.n; i++) {
        avm_mp_put_array(b, 2);
        avm_mp_put_uint(b, nd->levels.v[i].nchoices);
        avm_mp_put_uint(b, nd->levels.v[i].nreqs);
    }
    avm_mp_put_uint(b, nd->seq);
    return b->err;
}

static int dec_fail(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "nondeterministic choices: %s", what);
    return AVM_EMALFORMED;
}

int vm__nd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen)
{
    if (avm_mp_peek_nil(r))
        return avm_mp_get_nil(r);
    uint32_t n;
    if (avm_mp_get_array(r, &n) != 0 || n != 4)
        return dec_fail(err, errlen, "not a 4-element array");
    struct vm_nd *nd = nd_get(x);
    if (nd == NULL)
        return AVM_ENOMEM;
    if (avm_mp_get_array(r, &n) != 0)
        return dec_fail(err, errlen, "choices");
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        avm_val var = avm_nil(), vals = avm_nil();
        if (avm_mp_get_array(r, &two) != 0 || two != 2 || avm_mp_get_val(r, &var) != 0 ||
            avm_mp_get_val(r, &vals) != 0 || var.kind != AVM_SYM ||
            avm_sym_op_of(var) != AVM_SYM_VAR || vals.kind != AVM_LIST ||
            vals.u.l->len == 0) {
            avm_val_release(var);
            avm_val_release(vals);
            return dec_fail(err, errlen, "a choice");
        }
        nd_choice *c = VEC_SLOT(nd->choices);
        if (c == NULL) {
            avm_val_release(var);
            avm_val_release(vals);
            return AVM_ENOMEM;
        }
        c->var = var;
        c->values = vals;
    }
    if (avm_mp_get_array(r, &n) != 0)
        return dec_fail(err, errlen, "requirements");
    for (uint32_t i = 0; i < n; i++) {
        avm_val v = avm_nil();
        if (avm_mp_get_val(r, &v) != 0 || type_of(v) != AVM_SYM_T_BOOL) {
            avm_val_release(v);
            return dec_fail(err, errlen, "a requirement");
        }
        if (VEC_PUSH(x, nd->reqs, v) != 0) {
            avm_val_release(v);
            return AVM_ENOMEM;
        }
    }
    if (avm_mp_get_array(r, &n) != 0)
        return dec_fail(err, errlen, "levels");
    size_t pc = 0, pr = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t two;
        uint64_t c, q;
        if (avm_mp_get_array(r, &two) != 0 || two != 2 || avm_mp_get_uint(r, &c) != 0 ||
            avm_mp_get_uint(r, &q) != 0 || c < pc || q < pr || c > nd->choices.n ||
            q > nd->reqs.n)
            return dec_fail(err, errlen, "a level");
        nd_level *l = VEC_SLOT(nd->levels);
        if (l == NULL)
            return AVM_ENOMEM;
        l->nchoices = pc = c;
        l->nreqs = pr = q;
    }
    if (avm_mp_get_uint(r, &nd->seq) != 0 || nd->seq < nd->choices.n)
        return dec_fail(err, errlen, "sequence");
    if (nd->levels.n > x->tx.n)
        return dec_fail(err, errlen, "more levels than open transactions");
    return 0;
}
