/* executeSolver on Z3 (node/solver): models, unsat, time limits, refusals, and
 * SMT-LIB2 scripts. A watchdog turns a hang (a solver that does not honour its time
 * limit) into a failure. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avm_err.h"
#include "platform.h"
#include "solver.h"
#include "sym_build.h"
#include "test.h"

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "watchdog: the solver did not return in time\n";
    ssize_t n = write(2, msg, sizeof(msg) - 1);
    (void)n;
    _exit(2);
}

static void watchdog(unsigned seconds)
{
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}

/* The model's value for name, or nil. Borrowed. */
static avm_val model_get(avm_val model, const char *name)
{
    for (uint32_t i = 0; i < model.u.l->len; i++) {
        avm_val e = model.u.l->items[i];
        if (e.kind == AVM_LIST && e.u.l->len == 2 && e.u.l->items[0].kind == AVM_STR &&
            strcmp(e.u.l->items[0].u.s->data, name) == 0)
            return e.u.l->items[1];
    }
    return avm_nil();
}

static int solve(uint32_t ms, avm_val problem, avm_val *model, avm_buf *why)
{
    avm_solver_cfg cfg = {.timeout_ms = ms};
    *model = avm_nil();
    return avm_solver_solve(&cfg, problem, model, why);
}

/* x, y in 1..10, x*y = 12, x+y = 7. */
static avm_val factor_problem(void)
{
    avm_val x = tb_var("node1/t1.0", AVM_SYM_T_INT);
    avm_val y = tb_var("node1/t1.1", AVM_SYM_T_INT);
    avm_val choices =
        tb_list(2, tb_choice(x, tb_range(1, 10)), tb_choice(y, tb_range(1, 10)));
    avm_val reqs = tb_list(
        2, tb_op2(AVM_SYM_EQ, tb_op2(AVM_SYM_MUL, tb_ref(x), tb_ref(y)), avm_int(12)),
        tb_op2(AVM_SYM_EQ, tb_op2(AVM_SYM_ADD, tb_ref(x), tb_ref(y)), avm_int(7)));
    avm_val_release(x);
    avm_val_release(y);
    return tb_list(2, choices, reqs);
}

TEST(sat_nonlinear)
{
    avm_val p = factor_problem(), m;
    avm_buf why;
    avm_buf_init(&why);
    int rv = solve(0, p, &m, &why);
    CHECK_INT(rv, AVM_SOLVE_SAT);
    if (rv == AVM_SOLVE_SAT) {
        REQUIRE(m.kind == AVM_LIST && m.u.l->len == 2);
        /* In the order of the choices. */
        CHECK_STR(m.u.l->items[0].u.l->items[0].u.s->data, "node1/t1.0");
        CHECK_STR(m.u.l->items[1].u.l->items[0].u.s->data, "node1/t1.1");
        avm_val x = model_get(m, "node1/t1.0"), y = model_get(m, "node1/t1.1");
        REQUIRE(x.kind == AVM_INT && y.kind == AVM_INT);
        CHECK(x.u.i * y.u.i == 12 && x.u.i + y.u.i == 7);
        CHECK((x.u.i == 3 && y.u.i == 4) || (x.u.i == 4 && y.u.i == 3));
        avm_val_release(m);
    }
    avm_buf_free(&why);
    avm_val_release(p);
}

TEST(sat_min_max_abs_negative)
{
    /* x in {-5..-1, 7}, y in {-3, 2}: abs(x) = 5, max(x, y) = 2, min(x, y) < -4. */
    avm_val x = tb_var("x", AVM_SYM_T_INT), y = tb_var("y", AVM_SYM_T_INT);
    avm_val xs = tb_list(6, avm_int(7), avm_int(-1), avm_int(-2), avm_int(-3),
                         avm_int(-4), avm_int(-5));
    avm_val choices =
        tb_list(2, tb_choice(x, xs), tb_choice(y, tb_list(2, avm_int(-3), avm_int(2))));
    avm_val reqs = tb_list(
        3, tb_op2(AVM_SYM_EQ, tb_op1(AVM_SYM_ABS, tb_ref(x)), avm_int(5)),
        tb_op2(AVM_SYM_EQ, tb_op2(AVM_SYM_MAX, tb_ref(x), tb_ref(y)), avm_int(2)),
        tb_op2(AVM_SYM_LT, tb_op2(AVM_SYM_MIN, tb_ref(x), tb_ref(y)), avm_int(-4)));
    avm_val p = tb_list(2, choices, reqs), m;
    avm_buf why;
    avm_buf_init(&why);
    CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_SAT);
    CHECK_INT(model_get(m, "x").u.i, -5);
    CHECK_INT(model_get(m, "y").u.i, 2);
    avm_val_release(m);
    avm_buf_free(&why);
    avm_val_release(p);
    avm_val_release(x);
    avm_val_release(y);
}

TEST(unsat)
{
    avm_val x = tb_var("x", AVM_SYM_T_INT);
    avm_val p = tb_list(2, tb_list(1, tb_choice(x, tb_range(1, 3))),
                        tb_list(1, tb_op2(AVM_SYM_GT, tb_ref(x), avm_int(5))));
    avm_val m;
    avm_buf why;
    avm_buf_init(&why);
    CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_UNSAT);
    CHECK(m.kind == AVM_NIL);
    avm_val_release(p);
    /* #f alone, without choices. */
    p = tb_list(2, tb_list(0), tb_list(1, avm_bool(false)));
    CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_UNSAT);
    avm_val_release(p);
    /* No choices, nothing required: the empty model. */
    p = tb_list(2, tb_list(0), tb_list(1, avm_bool(true)));
    CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_SAT);
    CHECK(m.kind == AVM_LIST && m.u.l->len == 0);
    avm_val_release(m);
    avm_val_release(p);
    avm_buf_free(&why);
    avm_val_release(x);
}

TEST(bools)
{
    avm_val a = tb_var("a", AVM_SYM_T_BOOL), b = tb_var("b", AVM_SYM_T_BOOL);
    avm_val c = tb_var("c", AVM_SYM_T_BOOL);
    avm_val tf = tb_list(2, avm_bool(true), avm_bool(false));
    avm_val_retain(tf);
    avm_val choices = tb_list(3, tb_choice(a, tf), tb_choice(b, tb_ref(tf)),
                              tb_choice(c, tb_list(1, avm_bool(true))));
    avm_val_release(tf);
    /* (and a (not b)), (!= b c) */
    avm_val reqs =
        tb_list(2, tb_op2(AVM_SYM_AND, tb_ref(a), tb_op1(AVM_SYM_NOT, tb_ref(b))),
                tb_op2(AVM_SYM_NE, tb_ref(b), tb_ref(c)));
    avm_val p = tb_list(2, choices, reqs), m;
    avm_buf why;
    avm_buf_init(&why);
    CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_SAT);
    avm_val va = model_get(m, "a"), vb = model_get(m, "b"), vc = model_get(m, "c");
    CHECK(va.kind == AVM_BOOL && va.u.b);
    CHECK(vb.kind == AVM_BOOL && !vb.u.b);
    CHECK(vc.kind == AVM_BOOL && vc.u.b);
    avm_val_release(m);
    avm_buf_free(&why);
    avm_val_release(p);
    avm_val_release(a);
    avm_val_release(b);
    avm_val_release(c);
}

/* x = sum b_i 2^i over 31 bits, y likewise, x*y = (2^31-1) * 2147483629 (two
 * primes), x, y > 1: factoring a 62-bit semiprime, far beyond 1 ms. */
static avm_val hard_problem(void)
{
    avm_val bits[62], choices, sum[2];
    char name[16];
    if (avm_list_new(62, &choices) != 0)
        abort();
    for (int i = 0; i < 62; i++) {
        snprintf(name, sizeof(name), "b%d", i);
        bits[i] = tb_var(name, AVM_SYM_T_INT);
        choices.u.l->items[i] = tb_choice(bits[i], tb_range(0, 1));
    }
    avm_list_seal(choices);
    for (int k = 0; k < 2; k++) {
        sum[k] = tb_ref(bits[31 * k]);
        for (int i = 1; i < 31; i++)
            sum[k] = tb_op2(
                AVM_SYM_ADD, sum[k],
                tb_op2(AVM_SYM_MUL, avm_int((int64_t)1 << i), tb_ref(bits[31 * k + i])));
    }
    avm_val reqs =
        tb_list(3,
                tb_op2(AVM_SYM_EQ, tb_op2(AVM_SYM_MUL, tb_ref(sum[0]), tb_ref(sum[1])),
                       avm_int(INT64_C(2147483647) * INT64_C(2147483629))),
                tb_op2(AVM_SYM_GT, tb_ref(sum[0]), avm_int(1)),
                tb_op2(AVM_SYM_GT, tb_ref(sum[1]), avm_int(1)));
    for (int i = 0; i < 62; i++)
        avm_val_release(bits[i]);
    avm_val_release(sum[0]);
    avm_val_release(sum[1]);
    return tb_list(2, choices, reqs);
}

/* The factors the model of hard_problem gives. */
static void check_factors(avm_val m, int *sat, int *test_failed_)
{
    int64_t f[2] = {0, 0};
    for (int i = 0; i < 62; i++) {
        char name[16];
        snprintf(name, sizeof(name), "b%d", i);
        avm_val b = model_get(m, name);
        CHECK(b.kind == AVM_INT);
        f[i / 31] += b.u.i << (i % 31);
    }
    CHECK((f[0] == INT64_C(2147483647) && f[1] == INT64_C(2147483629)) ||
          (f[1] == INT64_C(2147483647) && f[0] == INT64_C(2147483629)));
    printf("  factored: %lld * %lld\n", (long long)f[0], (long long)f[1]);
    (*sat)++;
}

TEST(timeout)
{
    avm_val p = hard_problem(), m;
    avm_buf why;
    avm_buf_init(&why);
    double worst = 0;
    int unknown = 0, sat = 0;
    /* Repeated: a time limit racing the solver's end must not hang either. */
    for (int i = 0; i < 40; i++) {
        watchdog(10);
        double t0 = now_ms();
        why.len = 0;
        int rv = solve(1, p, &m, &why);
        double dt = now_ms() - t0;
        alarm(0);
        worst = dt > worst ? dt : worst;
        if (rv == AVM_SOLVE_UNKNOWN) {
            unknown++;
            CHECK(why.len > 0);
        } else {
            /* Unlikely, but a correct answer is fine. */
            CHECK_INT(rv, AVM_SOLVE_SAT);
            if (rv == AVM_SOLVE_SAT) {
                check_factors(m, &sat, test_failed_);
                avm_val_release(m);
            }
        }
    }
    printf("  1 ms limit: %d/40 unknown (last reason \"%s\"), slowest %.1f ms\n", unknown,
           avm_buf_cstr(&why), worst);
    CHECK(worst < 1000);
    avm_buf_free(&why);
    avm_val_release(p);
}

TEST(malformed_refused)
{
    avm_val m;
    avm_buf why;
    avm_buf_init(&why);
    avm_val x = tb_var("x", AVM_SYM_T_INT);
    avm_val bad[] = {
        avm_int(3),
        tb_list(1, tb_list(0)),
        tb_list(2, tb_list(1, tb_list(2, avm_int(1), tb_range(1, 2))), tb_list(0)),
        tb_list(2, tb_list(1, tb_choice(x, tb_list(0))), tb_list(0)),
        tb_list(2, tb_list(1, tb_choice(x, tb_range(1, 2))), tb_list(1, tb_ref(x))),
        tb_list(2, tb_list(0), tb_list(1, tb_op2(AVM_SYM_LT, tb_ref(x), avm_int(1)))),
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why.len = 0;
        int rv = solve(0, bad[i], &m, &why);
        CHECK_INT(rv, -AVM_EINVAL);
        CHECK(why.len > 0);
        CHECK(m.kind == AVM_NIL);
        avm_val_release(bad[i]);
    }
    avm_val_release(x);
    avm_buf_free(&why);
}

static int exec_text(const char *text, avm_buf *out)
{
    avm_solver_cfg cfg = {0};
    out->len = 0;
    return avm_solver_execute_smtlib(&cfg, text, strlen(text), out);
}

TEST(execute_smtlib)
{
    avm_buf out;
    avm_buf_init(&out);
    CHECK_INT(exec_text("(declare-const |x| Int)(assert (and (< 2 |x|) (< |x| 4)))"
                        "(check-sat)(get-value (|x|))",
                        &out),
              0);
    CHECK(strncmp(avm_buf_cstr(&out), "sat\n", 4) == 0);
    CHECK(strstr(avm_buf_cstr(&out), "3") != NULL);
    CHECK_INT(exec_text("(declare-const x Int)(assert (< x 0))(assert (> x 0))"
                        "(check-sat)",
                        &out),
              0);
    CHECK_STR(avm_buf_cstr(&out), "unsat\n");
    CHECK_INT(exec_text("(declare-const x Int)(assert (< x 0)(check-sat)", &out),
              -AVM_EINVAL);
    CHECK(strstr(avm_buf_cstr(&out), "error") != NULL);
    CHECK_INT(exec_text("(assert (= y 1))(check-sat)", &out), -AVM_EINVAL);
    CHECK(strstr(avm_buf_cstr(&out), "error") != NULL);
    /* Z3's own time limits are refused (its timer can deadlock). */
    CHECK_INT(exec_text("(set-option :timeout 100)(check-sat)", &out), -AVM_EINVAL);
    CHECK(strstr(avm_buf_cstr(&out), "time limit") != NULL);
    CHECK_INT(exec_text("(check-sat-using (try-for smt 10))", &out), -AVM_EINVAL);
    /* ... but not a choice merely named so. */
    CHECK_INT(exec_text("(declare-const |timeout| Bool)(check-sat) ; timeout", &out), 0);
    CHECK_STR(avm_buf_cstr(&out), "sat\n");
    /* Too big. */
    size_t n = (1u << 20) + 1;
    char *big = malloc(n);
    REQUIRE(big != NULL);
    memset(big, ' ', n);
    avm_solver_cfg cfg = {0};
    out.len = 0;
    CHECK_INT(avm_solver_execute_smtlib(&cfg, big, n, &out), -AVM_ETOOBIG);
    free(big);
    avm_buf_free(&out);
}

TEST(execute_smtlib_time_limit)
{
    /* The script's own check-sat stays within the node's limit. */
    avm_buf out;
    avm_buf_init(&out);
    avm_solver_cfg cfg = {.timeout_ms = 1};
    const char *text = "(declare-const x Int)(declare-const y Int)"
                       "(assert (and (< 1 x) (< 1 y) (< x 10000000000) "
                       "(< y 10000000000)))"
                       "(assert (= (* x y) 4611685975477714963))(check-sat)";
    double worst = 0;
    for (int i = 0; i < 20; i++) {
        watchdog(10);
        double t0 = now_ms();
        out.len = 0;
        int rv = avm_solver_execute_smtlib(&cfg, text, strlen(text), &out);
        double dt = now_ms() - t0;
        alarm(0);
        worst = dt > worst ? dt : worst;
        CHECK_INT(rv, 0);
        CHECK(strncmp(avm_buf_cstr(&out), "unknown", 7) == 0 ||
              strncmp(avm_buf_cstr(&out), "sat", 3) == 0 ||
              strstr(avm_buf_cstr(&out), "; interrupted at the time limit") != NULL);
    }
    printf("  script with a 1 ms limit: slowest %.1f ms\n", worst);
    CHECK(worst < 1000);
    avm_buf_free(&out);
}

TEST(timing)
{
    avm_val p = factor_problem(), m;
    avm_buf why;
    avm_buf_init(&why);
    enum { N = 50 };
    double t0 = now_ms(), worst = 0;
    for (int i = 0; i < N; i++) {
        double t1 = now_ms();
        CHECK_INT(solve(0, p, &m, &why), AVM_SOLVE_SAT);
        avm_val_release(m);
        double dt = now_ms() - t1;
        worst = dt > worst ? dt : worst;
    }
    printf("  2-variable problem end to end: %.2f ms mean, %.2f ms worst (%d runs)\n",
           (now_ms() - t0) / N, worst, N);
    avm_buf_free(&why);
    avm_val_release(p);
}

TEST_MAIN(T(sat_nonlinear), T(sat_min_max_abs_negative), T(unsat), T(bools), T(timeout),
          T(malformed_refused), T(execute_smtlib), T(execute_smtlib_time_limit),
          T(timing))
