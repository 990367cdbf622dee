/* executeSolver on Z3's C API (solver.h). The problem is written as SMT-LIB2
 * (smtlib.h) and parsed by Z3, so what `avmctl exec constraints --smtlib` shows is
 * exactly what is solved. Z3 reports errors through a handler: ours records the
 * message on the context's call record (no longjmp, no abort), and every call checks
 * it after each Z3 call that can fail.
 *
 * Time limits: Z3's own ("timeout", scoped_timer) deadlocks now and then in Debian's
 * libz3 4.8.12 when the limit races the end of a check (the thread-pool timer, Z3
 * issues 5371 and 5990; reproduced with 1 ms limits: about one hang in a hundred
 * calls), and a hang would stop the node's event loop. So no Z3 timeout is ever set:
 * a timer thread of our own calls Z3_interrupt at the deadline, and again every
 * 2 ms until the call returns (an interrupt that comes before the check starts is
 * not kept), and scripts that would start Z3's timer are refused. */
#include "solver.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
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

static Z3_context new_context(void)
{
    Z3_config cfg = Z3_mk_config();
    if (cfg == NULL)
        return NULL;
    Z3_set_param_value(cfg, "model", "true");
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

/* The time limit of one call: a thread that interrupts ctx from the deadline on. */
typedef struct limit {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    Z3_context ctx;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    bool armed;               /* Z3 may be interrupted now */
    bool done;                /* the call returned: the thread exits */
    bool fired;               /* the deadline passed: Z3 was interrupted */
} limit;

static void add_ms(struct timespec *t, uint32_t ms)
{
    t->tv_sec += ms / 1000;
    t->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t->tv_nsec >= 1000000000L) {
        t->tv_sec++;
        t->tv_nsec -= 1000000000L;
    }
}

static void *limit_main(void *arg)
{
    limit *l = arg;
    pthread_mutex_lock(&l->mu);
    while (!l->done) {
        if (pthread_cond_timedwait(&l->cv, &l->mu, &l->deadline) != ETIMEDOUT)
            continue;
        if (l->armed) {
            l->fired = true;
            Z3_interrupt(l->ctx); /* thread-safe: sets the context's cancel flag */
        }
        add_ms(&l->deadline, 2);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

/* 0, or AVM_ENOMEM when the thread cannot start. The deadline counts from now, the
 * interrupts come only while armed. */
static int limit_start(limit *l, Z3_context ctx, uint32_t ms, bool armed)
{
    pthread_condattr_t ca;
    l->ctx = ctx;
    l->armed = armed;
    l->done = l->fired = false;
    if (pthread_condattr_init(&ca) != 0)
        return AVM_ENOMEM;
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    int rv = pthread_cond_init(&l->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rv != 0)
        return AVM_ENOMEM;
    if (pthread_mutex_init(&l->mu, NULL) != 0)
        goto err_after_cv;
    clock_gettime(CLOCK_MONOTONIC, &l->deadline);
    add_ms(&l->deadline, ms);
    if (pthread_create(&l->thread, NULL, limit_main, l) != 0)
        goto err_after_mu;
    return 0;
err_after_mu:
    pthread_mutex_destroy(&l->mu);
err_after_cv:
    pthread_cond_destroy(&l->cv);
    return AVM_ENOMEM;
}

/* Interrupting Z3 while it parses or takes assertions makes it drop the rest
 * silently (seen: a "sat" with half the problem), so the solve arms the limit only
 * around the check. Once disarmed, no interrupt comes any more (the context's
 * cancel flag may stay set if one came just before). */
static void limit_arm(limit *l, bool armed)
{
    pthread_mutex_lock(&l->mu);
    l->armed = armed;
    pthread_mutex_unlock(&l->mu);
}

/* Stops the timer (before the context goes); true when it fired. */
static bool limit_stop(limit *l)
{
    pthread_mutex_lock(&l->mu);
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    return l->fired;
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
    size_t why_at = why->len;
    avm_buf text;
    avm_buf_init(&text);
    int rv = avm_smtlib_write(problem, false, &text, err, sizeof(err));
    if (rv != 0) {
        avm_buf_puts(why, err[0] ? err : avm_strerror(rv));
        avm_buf_free(&text);
        return -rv;
    }
    Z3_context ctx = new_context();
    if (ctx == NULL) {
        avm_buf_free(&text);
        avm_buf_puts(why, "the solver could not start (Z3 context)");
        return -AVM_ENOMEM;
    }
    limit lim;
    if (limit_start(&lim, ctx, timeout_of(cfg), false) != 0) {
        Z3_del_context(ctx);
        avm_buf_free(&text);
        avm_buf_puts(why, "the solver could not start (timer thread)");
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
    /* The SMT core alone: the default solver first runs a tactic pipeline that
     * costs ~20 ms even on a 2-variable problem (measured with libz3 4.8.12). */
    s = Z3_mk_simple_solver(ctx);
    Z3_solver_inc_ref(ctx, s);
    for (unsigned i = 0; i < Z3_ast_vector_size(ctx, asserts); i++)
        Z3_solver_assert(ctx, s, Z3_ast_vector_get(ctx, asserts, i));
    Z3_ast_vector_dec_ref(ctx, asserts);
    Z3_lbool r = Z3_L_UNDEF;
    if (!z3_error[0]) {
        limit_arm(&lim, true);
        r = Z3_solver_check(ctx, s);
        limit_arm(&lim, false);
    }
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
    if (limit_stop(&lim) && out != AVM_SOLVE_SAT && out != AVM_SOLVE_UNSAT) {
        /* Interrupted: the check gave up, or reading the model failed on an
         * interrupt that came as the check ended: the answer is the limit's. */
        why->len = why_at;
        if (why->data != NULL)
            why->data[why_at] = '\0';
        avm_buf_printf(why, "timeout (%u ms)", timeout_of(cfg));
        out = AVM_SOLVE_UNKNOWN;
    }
    if (s != NULL)
        Z3_solver_dec_ref(ctx, s);
    Z3_del_context(ctx);
    return out;
}

/* Whether the script names Z3's own time limits (the "timeout" options, the try-for
 * tactic), which would start Z3's timer (see above): tokens and string literals are
 * looked at, comments and quoted symbols (the choices' names) are not. */
static bool names_z3_timer(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = s[i];
        if (c == ';') {
            while (i < n && s[i] != '\n')
                i++;
            continue;
        }
        if (c == '|') {
            for (i++; i < n && s[i] != '|'; i++)
                ;
            i++;
            continue;
        }
        if (c == '(' || c == ')' || isspace((unsigned char)c)) {
            i++;
            continue;
        }
        /* A token, or a string literal ("" escapes a quote). */
        char tok[64];
        size_t k = 0;
        bool str = c == '"';
        for (i += str; i < n; i++) {
            if (str && s[i] == '"') {
                if (i + 1 < n && s[i + 1] == '"') {
                    i++;
                } else {
                    i++;
                    break;
                }
            } else if (!str &&
                       (s[i] == '(' || s[i] == ')' || s[i] == ';' || s[i] == '"' ||
                        s[i] == '|' || isspace((unsigned char)s[i]))) {
                break;
            }
            if (k + 1 < sizeof(tok))
                tok[k++] = (char)tolower((unsigned char)s[i]);
            tok[k] = '\0';
            if (strstr(tok, "timeout") != NULL || strstr(tok, "try-for") != NULL)
                return true;
            if (k + 1 == sizeof(tok)) /* keep the tail: a name may end a long token */
                memmove(tok, tok + 8, (k -= 8) + 1);
        }
    }
    return false;
}

int avm_solver_execute_smtlib(const avm_solver_cfg *cfg, const char *text, size_t len,
                              avm_buf *out)
{
    if (len > AVM_SOLVER_MAX_TEXT) {
        avm_buf_printf(out, "SMT-LIB2 text of %zu bytes (at most %u)", len,
                       AVM_SOLVER_MAX_TEXT);
        return -AVM_ETOOBIG;
    }
    if (memchr(text, '\0', len) != NULL) {
        avm_buf_puts(out, "the text holds a NUL byte");
        return -AVM_EINVAL;
    }
    if (names_z3_timer(text, len)) {
        avm_buf_printf(out,
                       "the text sets a solver time limit (timeout, try-for): the "
                       "node applies its own (%u ms)",
                       timeout_of(cfg));
        return -AVM_EINVAL;
    }
    /* Z3 reads a NUL-terminated string. */
    avm_buf t;
    avm_buf_init(&t);
    avm_buf_put(&t, text, len);
    if (t.err != 0) {
        avm_buf_free(&t);
        avm_buf_puts(out, "out of memory");
        return -AVM_ENOMEM;
    }
    Z3_context ctx = new_context();
    if (ctx == NULL) {
        avm_buf_free(&t);
        avm_buf_puts(out, "the solver could not start (Z3 context)");
        return -AVM_ENOMEM;
    }
    limit lim;
    if (limit_start(&lim, ctx, timeout_of(cfg), true) != 0) {
        Z3_del_context(ctx);
        avm_buf_free(&t);
        avm_buf_puts(out, "the solver could not start (timer thread)");
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
    /* r lives in the context: read it before the timer goes and the context. */
    if (limit_stop(&lim)) {
        /* An error then is most likely the interrupt's ("canceled"): the script
         * ran out of time, which is an answer, not a failure. */
        avm_buf_printf(out, "; interrupted at the time limit (%u ms)\n", timeout_of(cfg));
        rv = 0;
    }
    Z3_del_context(ctx);
    return rv;
}
