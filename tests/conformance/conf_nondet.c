/* Nondeterminism in default mode (DESIGN.md section 4, "Constraints"): `choose`
 * makes a symbolic value, arithmetic and comparisons over it stay symbolic,
 * `require` collects assertions, and the outermost commitTx settles everything with
 * the solver (Z3 on the embedded node), substitutes the model into what the
 * transaction writes and what the program holds, or returns false. Fake solvers
 * (conf_run_on with plat.solve replaced) check what the interpreter does with a
 * solver that gives up, fails, or returns a wrong model. (Strict mode: both
 * instructions fail as in the specification, conf_fd_nondet.c.) */
#include <stdlib.h>

#include "conf.h"
#include "test.h"

/* Whether text holds the Q-string needle (` for "). */
static bool has(const char *text, const char *needle_q)
{
    char *n = conf_q(needle_q);
    bool hit = strstr(text, n) != NULL;
    if (!hit)
        fprintf(stderr, "  not found: %s\n  in: %s\n", n, text);
    free(n);
    return hit;
}

/* A choice settled by two requirements; the program's own variable holds the
 * value after the commit. */
TEST(choose_and_require)
{
    const char *src = "(main (let ((t (beginTx)) (x (choose (list 1 2 3 4 5))))\n"
                      "  (require (> x 3))\n"
                      "  (require (< x 5))\n"
                      "  (list (commitTx t) x (+ x 10))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t 4 14)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ChoiceMade ?`node1/t1.0` (1 2 3 4 5)\n"
                   "2 RequirementAdded ?(> ?`node1/t1.0` 3)\n"
                   "3 RequirementAdded ?(< ?`node1/t1.0` 5)\n"
                   "4 ConstraintsSolved `sat` ((`node1/t1.0` 4))\n"
                   "5 TransactionCommitted #tx`node1/t1`");
}

/* The model is substituted into the states the transaction writes: the store
 * never holds a symbolic value. */
TEST(writes_are_settled)
{
    const char *src = "(behavior acct (do (setState (list (input))) (list (input))))\n"
                      "(main (let ((t (beginTx)) (o (createObj `acct`))\n"
                      "            (p (choose (list 90 95 100 105 110))))\n"
                      "  (require (>= p 100))\n"
                      "  (require (<= (* p 2) 205))\n"
                      "  (call o (- p 1))\n"
                      "  (list (commitTx t) p)))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t 100)");
    CHECK_STORE(r, "#obj`node1/2` `acct` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(99)");
}

/* No solution: commitTx says false, nothing applies, the trace says why. */
TEST(unsatisfiable)
{
    const char *src =
        "(behavior acct (do (setState (list (input))) (list (input))))\n"
        "(main (let ((t (beginTx)) (o (createObj `acct`)) (x (choose (list 1 2 3))))\n"
        "  (call o x)\n"
        "  (require (> x 10))\n"
        "  (commitTx t)))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#f");
    CHECK_STORE(r, "");
    CHECK(has(r->trace, "ConstraintsSolved `unsat` nil"));
    CHECK(has(r->trace, "ErrorOccurred NondetError.ErrUnsatisfiable `no values of "
                        "the choices satisfy every requirement`"));
    CHECK(has(r->trace, "TransactionAborted #tx`node1/t1`"));
}

/* A concrete false requirement needs no solver; a true one costs nothing. */
TEST(concrete_requirements)
{
    CHECK_RESULT(
        conf_run("(main (let ((t (beginTx))) (require #f) (commitTx t)))", CONF_DEFAULT),
        "#f");
    CHECK_RESULT(
        conf_run("(main (let ((t (beginTx))) (require #t) (commitTx t)))", CONF_DEFAULT),
        "#t");
    /* The specification's constructor, Assert. */
    CHECK_RESULT(conf_run("(main (let ((t (beginTx))) (require (list `Assert` #f))"
                          " (commitTx t)))",
                          CONF_DEFAULT),
                 "#f");
    /* Outside a transaction a requirement is checked at once. */
    CHECK_RESULT(conf_run("(main (require #t) 1)", CONF_DEFAULT), "1");
    CHECK_ERROR(conf_run("(main (require #f))", CONF_DEFAULT),
                "NondetError.ErrRequirementFailed `require: the assertion is false "
                "(outside a transaction)`");
}

/* Bools, `all`, `any`, `not`, equality, min/max/abs and nonlinear arithmetic. */
TEST(expressions)
{
    const char *src =
        "(main (let ((t (beginTx)) (a (choose (list #t #f))) (b (choose (list #t #f)))\n"
        "            (x (choose (list 1 2 3 4 5 6 7 8 9 10)))\n"
        "            (y (choose (list 1 2 3 4 5 6 7 8 9 10))))\n"
        "  (require (all (not a) (any a b)))\n"
        "  (require (= (* x y) 12))\n"
        "  (require (= (+ x y) 7))\n"
        "  (require (< x y))\n"
        "  (require (= (abs (- x y)) 1))\n"
        "  (require (!= (min x y) (max x y)))\n"
        "  (list (commitTx t) a b x y)))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(#t #f #t 3 4)");
    /* Equality with a value of another kind is decided at once. */
    CHECK_RESULT(conf_run("(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                          " (list (= x `a`) (!= x (list 1)))))",
                          CONF_DEFAULT),
                 "(#f #t)");
    /* One value: nothing to choose. */
    CHECK_RESULT(conf_run("(main (let ((t (beginTx))) (choose (list 7))))", CONF_DEFAULT),
                 "7");
}

/* What needs a value now refuses a symbolic one, naming it. */
TEST(unsettled_values)
{
    CHECK_ERROR(conf_run("(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                         " (if (> x 1) 1 2)))",
                         CONF_DEFAULT),
                "NondetError.ErrUnsettled `a branch (if, when, unless, cond, and, or) on "
                "the unsettled symbolic value ?(> ?\\`node1/t1.0\\` 1): its choices are "
                "settled only when the transaction commits`");
    CHECK_ERROR(conf_run("(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                         " (str x)))",
                         CONF_DEFAULT),
                "NondetError.ErrUnsettled `str on the unsettled symbolic value "
                "?\\`node1/t1.0\\`: its choices are settled only when the transaction "
                "commits`");
    CHECK_ERROR(conf_run("(main (choose (list 1 2)))", CONF_DEFAULT),
                "NondetError.ErrInvalidChoice `choose outside a transaction: only a "
                "commit settles a choice`");
    CHECK_ERROR(
        conf_run("(main (let ((t (beginTx))) (choose (list 1 `a`))))", CONF_DEFAULT),
        "NondetError.ErrInvalidChoice `choose: value 1 is string; the values "
        "must be all ints or all bools`");
    CHECK_ERROR(conf_run("(main (let ((t (beginTx))) (choose (list))))", CONF_DEFAULT),
                "NondetError.ErrInvalidChoice `choose expects a non-empty list of ints "
                "or of bools, got ()`");
    conf_result *r = conf_run("(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                              " (require (+ x 1))))",
                              CONF_DEFAULT);
    CHECK(r->status == AVM_RUN_FAILED && has(r->error, "EvalError"));
    /* Sub-expressions are shared: doubling a value 20 times makes an expression of
     * 2^21 nodes as a tree, which printing, encoding and solving would walk. Refused
     * past AVM_SYM_MAX_SIZE nodes, naming the bound. */
    CHECK_ERROR(conf_run("(defun dbl (x n) (if (= n 0) x (dbl (+ x x) (- n 1))))\n"
                         "(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                         " (dbl x 20)))",
                         CONF_DEFAULT),
                "NondetError.ErrUnsettled `a symbolic expression would have more than "
                "65536 nodes`");
    /* A value of an aborted transaction's choice cannot be written outside one. */
    conf_result *w = conf_run("(behavior acct (do (setState (list (input))) (list 0)))\n"
                              "(main (let ((o (createObj `acct`)) (t (beginTx))"
                              " (x (choose (list 1 2)))) (abortTx t) (call o x)))",
                              CONF_DEFAULT);
    CHECK(w->status == AVM_RUN_FAILED &&
          has(w->error, "NondetError.ErrUnsettled `setState outside a transaction on the "
                        "unsettled symbolic value"));
    /* Data structures carry symbolic values as they are. */
    CHECK_RESULT(conf_run("(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                          " (require (= x 2)) (let ((l (cons x (list x))))"
                          " (commitTx t) l)))",
                          CONF_DEFAULT),
                 "(2 2)");
}

/* An aborted level drops the choices and requirements it made; the outer level's
 * still settle. */
TEST(nested_levels)
{
    const char *src = "(main (let ((t (beginTx)) (x (choose (list 1 2 3))))\n"
                      "  (require (>= x 2))\n"
                      "  (let ((u (beginTx)))\n"
                      "    (require (> x 5))\n"
                      "    (abortTx u))\n"
                      "  (let ((v (beginTx)) (y (choose (list 10 20))))\n"
                      "    (require (= y (* x 10)))\n"
                      "    (commitTx v)\n"
                      "    (list (commitTx t) x y))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(#t 2 20)");
    /* A value of a choice whose level aborted cannot be written. */
    const char *bad = "(behavior acct (do (setState (list (input))) (list (input))))\n"
                      "(main (let ((t (beginTx)) (o (createObj `acct`)))\n"
                      "  (let ((u (beginTx)) (x (choose (list 1 2))))\n"
                      "    (abortTx u)\n"
                      "    (call o x)\n"
                      "    (commitTx t))))";
    conf_result *r = conf_run(bad, CONF_DEFAULT);
    CHECK(r->status == AVM_RUN_FAILED &&
          has(r->error, "NondetError.ErrUnsettled `the transaction writes a value of "
                        "choice \\`node1/t1.0\\`"));
}

/* The model is checked with the language's 64-bit arithmetic: Z3's integers are
 * unbounded, so a model that only holds without overflow is refused. */
TEST(overflow_is_checked)
{
    const char *src = "(main (let ((t (beginTx))\n"
                      "            (x (choose (list 4611686018427387904 1))))\n"
                      "  (require (> (* x 4) 100))\n"
                      "  (commitTx t)))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#f");
    CHECK(has(r->trace, "overflow"));
}

/* Fake solvers. */
static int fake_mode;

static int fake_solve(void *data, avm_val problem, avm_val *model, avm_buf *why)
{
    (void)data;
    (void)problem;
    avm_val items[2];
    switch (fake_mode) {
    case 0: /* gives up */
        avm_buf_puts(why, "timeout");
        return AVM_SOLVE_UNKNOWN;
    case 1: /* fails */
        avm_buf_puts(why, "the solver library failed");
        return -AVM_EINVAL;
    case 2: /* a model that breaks the requirement: x = 1 */
    case 3: /* a model without the choice */
        if (avm_cstr(AVM_STR, fake_mode == 2 ? "node1/t1.0" : "other", &items[0]) != 0)
            return -AVM_ENOMEM;
        items[1] = avm_int(1);
        avm_val pair;
        if (avm_list_from(items, 2, &pair) != 0 || avm_list_from(&pair, 1, model) != 0)
            return -AVM_ENOMEM;
        return AVM_SOLVE_SAT;
    default: /* a model that is not a list of pairs */
        *model = avm_int(3);
        return AVM_SOLVE_SAT;
    }
}

static void run_fake(int mode, conf_result *r)
{
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    e.plat.solve = fake_solve;
    fake_mode = mode;
    conf_run_on(&e,
                "(main (let ((t (beginTx)) (x (choose (list 1 2))))"
                " (require (> x 1)) (commitTx t)))",
                NULL, CONF_DEFAULT, r);
    avm_embedded_close(&e);
}

TEST(fake_solvers)
{
    static conf_result r;
    run_fake(0, &r);
    CHECK_RESULT(&r, "#f");
    CHECK(has(r.trace, "ConstraintsSolved `unknown` `timeout`"));
    CHECK(has(r.trace, "NondetError.ErrSolverLimit `the solver gave up: timeout`"));
    run_fake(1, &r);
    CHECK_ERROR(&r, "NondetError.ErrNoSolver `the solver failed: the solver library "
                    "failed`");
    run_fake(2, &r);
    CHECK_RESULT(&r, "#f");
    CHECK(has(r.trace, "the solver's values break a requirement"));
    run_fake(3, &r);
    CHECK_ERROR(&r, "NondetError.ErrNoSolver `the solver's model leaves choice "
                    "\\`node1/t1.0\\` unsettled`");
    run_fake(4, &r);
    CHECK_ERROR(&r, "NondetError.ErrNoSolver `the solver's model is malformed`");
    /* No solver at all. */
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    e.plat.solve = NULL;
    conf_run_on(&e, "(main (let ((t (beginTx)) (x (choose (list 1 2)))) (commitTx t)))",
                NULL, CONF_DEFAULT, &r);
    avm_embedded_close(&e);
    CHECK_ERROR(&r, "NondetError.ErrNoSolver `the transaction has unsettled choices and "
                    "this node has no solver (executeSolver)`");
}

/* An execution serialized with unsettled choices (a checkpoint, a move to another
 * machine) resumes and settles them. */
TEST(serialized_mid_transaction)
{
    const char *src = "(main (let ((t (beginTx)) (x (choose (list 1 2 3))))\n"
                      "  (require (> x 2))\n"
                      "  (list (commitTx t) x)))";
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *x = conf_start(&e, src, CONF_DEFAULT);
    REQUIRE(x != NULL);
    /* TransactionStarted, ChoiceMade, RequirementAdded. */
    CHECK(conf_run_until_events(x, 3) == AVM_RUN_YIELD);
    avm_val prob;
    REQUIRE(avm_exec_problem(x, &prob) == 0);
    avm_buf pb;
    avm_buf_init(&pb);
    avm_val_print(&pb, prob);
    char *want = conf_q("(((?`node1/t1.0` (1 2 3))) (?(> ?`node1/t1.0` 2)))");
    CHECK_STR(pb.data, want);
    free(want);
    avm_buf_free(&pb);
    avm_val_release(prob);
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_exec_encode(x, &b) == 0);
    avm_exec_free(x);
    /* Every truncation is refused with a message, never a crash. */
    char err[256] = "";
    for (size_t n = 0; n < b.len; n++) {
        avm_exec *z = NULL;
        CHECK(avm_exec_decode((const uint8_t *)b.data, n, &e.plat, &z, err,
                              sizeof(err)) != 0);
    }
    avm_exec *y = NULL;
    REQUIRE(avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &y, err,
                            sizeof(err)) == 0);
    avm_buf_free(&b);
    CHECK(avm_exec_run(y, 0) == AVM_RUN_DONE);
    avm_buf rb;
    avm_buf_init(&rb);
    avm_val_print(&rb, avm_exec_result(y));
    CHECK_STR(rb.data, "(#t 3)");
    avm_buf_free(&rb);
    avm_exec_free(y);
    avm_embedded_close(&e);
}

TEST_MAIN(T(choose_and_require), T(writes_are_settled), T(unsatisfiable),
          T(concrete_requirements), T(expressions), T(unsettled_values), T(nested_levels),
          T(overflow_is_checked), T(fake_solvers), T(serialized_mid_transaction))
