/* executeSolver on Z3's C API (solver.h). The problem is written as SMT-LIB2
 * (smtlib.h) and parsed by Z3, so what `avmctl exec constraints --smtlib` shows is
 * exactly what is solved. Z3 reports errors through a handler: ours records the
 * message on the context's call record (no longjmp, no abort), and every call checks
 * it after each Z3 call that can fail. */
#include "solver.h"

#include <stdio.h>
#include <string.h>
#include <z3.h>

#include "avm_err.h"
#include "platform.h"
#include "smtlib.h"

/* Z3 calls its error handler with the context only: one record per thread in use. */
static _Thread_local char z3_error[300];

static void on_error(Z3_context ctx, Z3_error_code e)
{
    snprintf(z3_error, sizeof(z3_error), "%s", Z3_get_error_msg(ctx, e));
}

static Z3_context new_context(uint32_t timeout_ms)
{
    Z3_config cfg = Z3_mk_config();
    if (cfg == NULL)
        return NULL;
    char t[32];
    snprintf(t, sizeof(t), "%u", timeout_ms);
    Z3_set_param_value(cfg, "model", "true");
    Z3_set_param_value(cfg, "timeout", t);
    Z3_context ctx = Z3_mk_context(cfg);
    Z3_del_config(cfg);
    if (ctx != NULL)
        Z3_set_error_handler(ctx, on_error);
    return ctx;
}

static uint32_t timeout_of(const avm_solver_cfg *cfg)
{
    return cfg != NULL && cfg->timeout_ms ? cfg->timeout_ms
                                          : AVM_SOLVER_DEFAULT_TIMEOUT_MS;
}

/* The model's value of the choice's variable (evaluated with completion, so every
 * declared constant has one) as an owned value. */
static int read_value(Z3_context ctx, Z3_model m, avm_val var, avm_val *out)
{
    avm_val name = var.u.l->items[1];
    bool is_int = var.u.l->items[2].u.i == AVM_SYM_T_INT;
    Z3_symbol s = Z3_mk_string_symbol(ctx, name.u.s->data);
    Z3_sort sort = is_int ? Z3_mk_int_sort(ctx) : Z3_mk_bool_sort(ctx);
    Z3_ast c = Z3_mk_const(ctx, s, sort);
    Z3_ast v = NULL;
    if (z3_error[0] || !Z3_model_eval(ctx, m, c, true, &v) || v == NULL)
        return AVM_EINVAL;
    if (is_int) {
        int64_t i;
        if (!Z3_get_numeral_int64(ctx, v, &i))
            return AVM_EINVAL;
        *out = avm_int(i);
        return 0;
    }
    Z3_lbool b = Z3_get_bool_value(ctx, v);
    if (b == Z3_L_UNDEF)
        return AVM_EINVAL;
    *out = avm_bool(b == Z3_L_TRUE);
    return 0;
}

static int build_model(Z3_context ctx, Z3_model m, avm_val problem, avm_val *model)
{
    avm_val choices = problem.u.l->items[0];
    avm_val l;
    if (avm_list_new(choices.u.l->len, &l) != 0)
        return AVM_ENOMEM;
    for (uint32_t i = 0; i < choices.u.l->len; i++) {
        avm_val var = choices.u.l->items[i].u.l->items[0];
        avm_val pair[2] = {var.u.l->items[1], avm_nil()};
        int rv = read_value(ctx, m, var, &pair[1]);
        if (rv != 0) {
            avm_val_release(l);
            return rv;
        }
        avm_val_retain(pair[0]);
        if (avm_list_from(pair, 2, &l.u.l->items[i]) != 0) {
            avm_val_release(pair[0]);
            avm_val_release(l);
            return AVM_ENOMEM;
        }
    }
    avm_list_seal(l);
    *model = l;
    return 0;
}

int avm_solver_solve(const avm_solver_cfg *cfg, avm_val problem, avm_val *model,
                     avm_buf *why)
{
    char err[300] = "";
    avm_buf text;
    avm_buf_init(&text);
    int rv = avm_smtlib_write(problem, false, &text, err, sizeof(err));
    if (rv != 0) {
        avm_buf_puts(why, err[0] ? err : avm_strerror(rv));
        avm_buf_free(&text);
        return -rv;
    }
    Z3_context ctx = new_context(timeout_of(cfg));
    if (ctx == NULL) {
        avm_buf_free(&text);
        avm_buf_puts(why, "the solver could not start (Z3 context)");
        return -AVM_ENOMEM;
    }
    z3_error[0] = '\0';
    int out = AVM_SOLVE_UNKNOWN;
    Z3_ast_vector asserts =
        Z3_parse_smtlib2_string(ctx, text.data, 0, NULL, NULL, 0, NULL, NULL);
    avm_buf_free(&text);
    Z3_solver s = NULL;
    if (z3_error[0] || asserts == NULL) {
        avm_buf_printf(why, "the solver refused the problem: %s", z3_error);
        out = -AVM_EINVAL;
        goto done;
    }
    Z3_ast_vector_inc_ref(ctx, asserts);
    s = Z3_mk_solver(ctx);
    Z3_solver_inc_ref(ctx, s);
    Z3_params p = Z3_mk_params(ctx);
    Z3_params_inc_ref(ctx, p);
    Z3_params_set_uint(ctx, p, Z3_mk_string_symbol(ctx, "timeout"), timeout_of(cfg));
    Z3_solver_set_params(ctx, s, p);
    Z3_params_dec_ref(ctx, p);
    for (unsigned i = 0; i < Z3_ast_vector_size(ctx, asserts); i++)
        Z3_solver_assert(ctx, s, Z3_ast_vector_get(ctx, asserts, i));
    Z3_ast_vector_dec_ref(ctx, asserts);
    Z3_lbool r = z3_error[0] ? Z3_L_UNDEF : Z3_solver_check(ctx, s);
    if (z3_error[0]) {
        avm_buf_printf(why, "the solver failed: %s", z3_error);
        out = -AVM_EINVAL;
    } else if (r == Z3_L_FALSE) {
        out = AVM_SOLVE_UNSAT;
    } else if (r == Z3_L_UNDEF) {
        avm_buf_puts(why, Z3_solver_get_reason_unknown(ctx, s));
        out = AVM_SOLVE_UNKNOWN;
    } else {
        Z3_model m = Z3_solver_get_model(ctx, s);
        Z3_model_inc_ref(ctx, m);
        rv = build_model(ctx, m, problem, model);
        Z3_model_dec_ref(ctx, m);
        if (rv == 0 && avm_smtlib_model_check(problem, *model, err, sizeof(err)) != 0) {
            avm_val_release(*model);
            *model = avm_nil();
            rv = AVM_EINVAL;
        }
        if (rv != 0) {
            avm_buf_printf(why, "reading the solver's model: %s",
                           err[0]        ? err
                           : z3_error[0] ? z3_error
                                         : avm_strerror(rv));
            out = -rv;
        } else {
            out = AVM_SOLVE_SAT;
        }
    }
done:
    if (s != NULL)
        Z3_solver_dec_ref(ctx, s);
    Z3_del_context(ctx);
    return out;
}

int avm_solver_execute_smtlib(const avm_solver_cfg *cfg, const char *text, size_t len,
                              avm_buf *out)
{
    if (len > AVM_SOLVER_MAX_TEXT) {
        avm_buf_printf(out, "SMT-LIB2 text of %zu bytes (at most %u)", len,
                       AVM_SOLVER_MAX_TEXT);
        return -AVM_ETOOBIG;
    }
    /* Z3 reads a NUL-terminated string. */
    avm_buf t;
    avm_buf_init(&t);
    avm_buf_put(&t, text, len);
    if (t.err != 0 || memchr(text, '\0', len) != NULL) {
        avm_buf_free(&t);
        avm_buf_puts(out, t.err ? "out of memory" : "the text holds a NUL byte");
        return -(t.err ? AVM_ENOMEM : AVM_EINVAL);
    }
    Z3_context ctx = new_context(timeout_of(cfg));
    if (ctx == NULL) {
        avm_buf_free(&t);
        avm_buf_puts(out, "the solver could not start (Z3 context)");
        return -AVM_ENOMEM;
    }
    z3_error[0] = '\0';
    Z3_string r = Z3_eval_smtlib2_string(ctx, t.data);
    avm_buf_free(&t);
    int rv = z3_error[0] ? -AVM_EINVAL : 0;
    if (r != NULL && r[0] != '\0')
        avm_buf_puts(out, r); /* with an error, Z3's output holds it */
    else if (z3_error[0])
        avm_buf_puts(out, z3_error);
    Z3_del_context(ctx);
    return rv;
}
