/* FD in default mode (newVar, narrow, post, label, reifyConstraints): results, trace
 * entries and errors of each instruction, every constraint constructor with and
 * without offsets, backtracking through nested transactions (abortTx restores the
 * store exactly, decision 5 removes the labelled value, commitTx says #f on an
 * inconsistent store), an execution serialized mid-search that resumes with the
 * same result, and the examples n_queens.avm and sudoku.avm. Strict mode keeps
 * ErrNotImplemented (conf_fd_nondet.c). */
#include "conf.h"
#include "test.h"

#define U (CONF_DEFAULT | CONF_UNSAFE)

/* (show): the store's variables as reifyConstraints gives them. */
#define SHOW "(defun show () (get (reifyConstraints) 'vars))\n"

/* Instructions --------------------------------------------------------------------- */

/* newVar returns VarIds 0, 1, ...; narrow intersects and says whether the store is
 * still consistent; label fixes the smallest value. Each logs its entry. */
TEST(instructions_and_trace)
{
    const char *src =
        "(main (let ((x (newVar (list 3 1 (list 5 7) 2)))"
        "            (y (newVar (list (list -2 2)))))"
        "  (list x y (narrow x (list (list 2 6) 9)) (label x)"
        "        (post (list `Lt` y x)) (narrow y (list 8)) (narrow y '()))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(0 1 #t 2 #t #f #f)");
    CHECK_TRACE(r, "0 VarCreated 0 (3 1 (5 7) 2)\n"
                   "1 VarCreated 1 ((-2 2))\n"
                   "2 DomainNarrowed 0 ((2 6) 9) #t\n"
                   "3 VarLabeled 0 2\n"
                   "4 ConstraintPosted (`Lt` 1 0) #t\n"
                   "5 DomainNarrowed 1 (8) #f\n"
                   "6 DomainNarrowed 1 () #f");
}

/* reifyConstraints: each variable's values in increasing order, (lo hi) runs for a
 * domain of more than 4096 values, and the number of constraints posted. */
TEST(reify)
{
    const char *src =
        "(main (let ((x (newVar (list 4 (list 1 2))))"
        "            (y (newVar (list (list 0 100000) (list 200000 200001)))))"
        "  (post (list `Neq` y x)) (post (list `ValLeq` y 150000))"
        "  (reifyConstraints)))";
    CHECK_RESULT(conf_run(src, U),
                 "((`vars` ((0 (1 2 4)) (1 ((0 100000))))) (`count` 2))");
    CHECK_RESULT(conf_run("(main (reifyConstraints))", U), "((`vars` ()) (`count` 0))");
}

/* Bad arguments fail the execution with an FDError naming the cause. */
TEST(errors)
{
    static const struct {
        const char *src, *error;
    } cases[] = {
        {"(newVar 5)", "FDError.ErrInvalidDomain `newVar: the domain must be a list of "
                       "integers and (lo hi) intervals, got 5`"},
        {"(newVar (list 1 `a`))", "FDError.ErrInvalidDomain `newVar: domain item \\`a\\` "
                                  "is neither an integer nor "
                                  "an interval (lo hi) of integers with lo <= hi`"},
        {"(newVar (list (list 3 1)))",
         "FDError.ErrInvalidDomain `newVar: domain item (3 1) is neither an integer nor "
         "an interval (lo hi) of integers with lo <= hi`"},
        {"(narrow 0 (list 1))", "FDError.ErrUnknownVar 0"},
        {"(do (newVar (list 1)) (narrow `x` (list 1)))", "FDError.ErrUnknownVar `x`"},
        {"(do (newVar (list 1)) (narrow 0 (list nil)))",
         "FDError.ErrInvalidDomain `narrow: domain item nil is neither an integer nor an "
         "interval (lo hi) of integers with lo <= hi`"},
        {"(label -1)", "FDError.ErrUnknownVar -1"},
        {"(do (newVar '()) (label 0))", "FDError.ErrEmptyDomain 0"},
        {"(post 5)",
         "FDError.ErrInvalidConstraint `post: a constraint is a list headed by "
         "its constructor's name, got 5`"},
        {"(post (list `Foo` 0 0))",
         "FDError.ErrInvalidConstraint `post: unknown constraint \\`Foo\\``"},
        {"(do (newVar (list 1)) (post (list `Eq` 0)))",
         "FDError.ErrInvalidConstraint `Eq takes two variables and an optional integer "
         "offset, got 1 arguments`"},
        {"(do (newVar (list 1)) (post (list `Leq` 0 7)))",
         "FDError.ErrInvalidConstraint `Leq: 7 is not a variable`"},
        {"(do (newVar (list 1)) (post (list `Gt` 0 0 `k`)))",
         "FDError.ErrInvalidConstraint `Gt: the offset must be an integer, got \\`k\\``"},
        {"(do (newVar (list 1)) (post (list `ValEq` 0 #t)))",
         "FDError.ErrInvalidConstraint `ValEq: the value must be an integer, got #t`"},
        {"(do (newVar (list 1)) (post (list `ValLt` 0)))",
         "FDError.ErrInvalidConstraint `ValLt takes a variable and an integer, got 1 "
         "arguments`"},
        {"(post (list `AllDiff` 5))",
         "FDError.ErrInvalidConstraint `AllDiff: the variables must be a list, got 5`"},
        {"(do (newVar (list 1)) (post (list `AllDiff` (list 0 0) (list 1))))",
         "FDError.ErrInvalidConstraint `AllDiff: the offsets must be a list of 2 "
         "integers, "
         "got (1)`"},
        {"(do (newVar (list 1)) (post (list `AllDiff` (list 0 `v`))))",
         "FDError.ErrInvalidConstraint `AllDiff: \\`v\\` is not a variable`"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char src[512];
        snprintf(src, sizeof(src), "(main %s)", cases[i].src);
        CHECK_ERROR(conf_run(src, CONF_DEFAULT), cases[i].error);
    }
}

/* Constructors ---------------------------------------------------------------------- */

/* Each constructor on x, y in 0..9, with and without its offset. */
TEST(every_constructor)
{
    static const struct {
        const char *post, *result;
    } cases[] = {
        {"(post (list `Eq` x y))", "(#t (0 1 2 3 4 5 6 7 8 9) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `Eq` x y 3))", "(#t (3 4 5 6 7 8 9) (0 1 2 3 4 5 6))"},
        {"(do (post (list `Neq` x y)) (label y))", "(0 (1 2 3 4 5 6 7 8 9) (0))"},
        {"(do (post (list `Neq` x y 1)) (label y))", "(0 (0 2 3 4 5 6 7 8 9) (0))"},
        {"(post (list `Leq` x y -2))", "(#t (0 1 2 3 4 5 6 7) (2 3 4 5 6 7 8 9))"},
        {"(post (list `Lt` x y))", "(#t (0 1 2 3 4 5 6 7 8) (1 2 3 4 5 6 7 8 9))"},
        {"(post (list `Lt` x y -7))", "(#t (0 1) (8 9))"},
        {"(post (list `Geq` x y))", "(#t (0 1 2 3 4 5 6 7 8 9) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `Geq` x y 4))", "(#t (4 5 6 7 8 9) (0 1 2 3 4 5))"},
        {"(post (list `Gt` x y))", "(#t (1 2 3 4 5 6 7 8 9) (0 1 2 3 4 5 6 7 8))"},
        {"(post (list `Gt` x y 9))", "(#f (0 1 2 3 4 5 6 7 8 9) ())"},
        {"(post (list `ValEq` x 4))", "(#t (4) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `ValLeq` x 4))", "(#t (0 1 2 3 4) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `ValLt` x 4))", "(#t (0 1 2 3) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `ValGeq` y 4))", "(#t (0 1 2 3 4 5 6 7 8 9) (4 5 6 7 8 9))"},
        {"(post (list `ValGt` y 4))", "(#t (0 1 2 3 4 5 6 7 8 9) (5 6 7 8 9))"},
        {"(do (post (list `ValEq` x 3)) (post (list `AllDiff` (list x y))))",
         "(#t (3) (0 1 2 4 5 6 7 8 9))"},
        {"(do (post (list `ValEq` x 3)) (post (list `AllDiff` (list x y) (list 0 2))))",
         "(#t (3) (0 2 3 4 5 6 7 8 9))"},
        {"(do (post (list `ValLt` y 2)) (post (list `AllDiff` (list x y (newVar (list 0 "
         "1))))))",
         "(#t (2 3 4 5 6 7 8 9) (0 1))"},
        {"(post (list `AllDiff` (list x x)))",
         "(#t (0 1 2 3 4 5 6 7 8 9) (0 1 2 3 4 5 6 7 8 9))"},
        {"(post (list `AllDiff` '()))",
         "(#t (0 1 2 3 4 5 6 7 8 9) (0 1 2 3 4 5 6 7 8 9))"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char src[1024];
        snprintf(src, sizeof(src),
                 SHOW
                 "(main (let ((x (newVar (list (list 0 9)))) (y (newVar (list (list 0 "
                 "9)))) (r %s))"
                 "  (list r (nth (nth (show) 0) 1) (nth (nth (show) 1) 1))))",
                 cases[i].post);
        conf_result *r = conf_run(src, U);
        char *want = conf_q(cases[i].result);
        if (r->status != AVM_RUN_DONE || strcmp(r->result, want) != 0)
            fprintf(stderr, "case %zu: %s\n", i, cases[i].post);
        free(want);
        CHECK_RESULT(r, cases[i].result);
    }
}

/* Once a domain is empty, post and narrow do nothing and say #f; label still
 * works on a variable whose domain is not empty. */
TEST(failed_store)
{
    const char *src =
        "(main (let ((x (newVar (list 1 2))) (y (newVar '())))"
        "  (list (narrow x (list 1 2)) (post (list `ValEq` x 2)) (label x))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(#f #f 1)");
}

/* Transactions ---------------------------------------------------------------------- */

/* abortTx restores the store exactly (variables, domains, the constraints posted);
 * a level that labelled nothing has no choice point. */
TEST(abort_restores_exactly)
{
    const char *src =
        "(main (let ((x (newVar (list (list 1 5)))) (t (beginTx)))"
        "  (newVar (list 7)) (post (list `ValLeq` x 2)) (post (list `Neq` x 1))"
        "  (let ((inside (reifyConstraints)))"
        "    (abortTx t)"
        "    (list inside (reifyConstraints)))))";
    CHECK_RESULT(conf_run(src, U), "(((`vars` ((0 (1 2)) (1 (7)))) (`count` 2)) "
                                   "((`vars` ((0 (1 2 3 4 5)))) (`count` 0)))");
}

/* Decision 5: aborting the level that labelled v := x removes x from v in the
 * parent and propagates; nested. */
TEST(abort_removes_the_label)
{
    const char *src =
        SHOW "(main (let ((x (newVar (list (list 1 3)))) (y (newVar (list (list 1 3)))))"
             "  (post (list `Lt` x y))"
             "  (let ((t1 (beginTx)) (a (label x)) (s1 (show))"
             "        (t2 (beginTx)) (b (label y)) (s2 (show)))"
             "    (abortTx t2)"
             "    (let ((s3 (show)))"
             "      (abortTx t1)"
             "      (list a s1 b s2 s3 (show))))))";
    conf_result *r = conf_run(src, U);
    CHECK_RESULT(r, "(1 ((0 (1)) (1 (2 3))) 2 ((0 (1)) (1 (2))) ((0 (1)) (1 (3))) "
                    "((0 (2)) (1 (3))))");
    CHECK_TRACE(r, "0 VarCreated 0 ((1 3))\n"
                   "1 VarCreated 1 ((1 3))\n"
                   "2 ConstraintPosted (`Lt` 0 1) #t\n"
                   "3 TransactionStarted #tx`node1/t1`\n"
                   "4 VarLabeled 0 1\n"
                   "5 TransactionStarted #tx`node1/t2`\n"
                   "6 VarLabeled 1 2\n"
                   "7 TransactionAborted #tx`node1/t2`\n"
                   "8 TransactionAborted #tx`node1/t1`");
}

/* A store first used inside nested transactions follows the levels opened before
 * it: aborting them removes what they created. */
TEST(store_created_inside_transactions)
{
    const char *src =
        SHOW "(main (let ((t1 (beginTx)) (t2 (beginTx)) (x (newVar (list 1 2))))"
             "  (commitTx t2) (abortTx t1) (list (show) (newVar (list 5)))))";
    CHECK_RESULT(conf_run(src, U), "(() 0)");
}

/* commitTx says #f when the level's store is inconsistent, nested and outermost;
 * the level is aborted (decision 5 included) and ErrInconsistent logged. */
TEST(commit_false_on_inconsistent_store)
{
    const char *src =
        SHOW "(main (let ((x (newVar (list 1 2 3))) (t1 (beginTx)) (t2 (beginTx)))"
             "  (post (list `ValGt` x 5))"
             "  (let ((c2 (commitTx t2)) (s (show)) (a (label x))"
             "        (bad (post (list `ValGt` x 1))) (c1 (commitTx t1)))"
             "    (list c2 s a bad c1 (show)))))";
    conf_result *r = conf_run(src, U);
    CHECK_RESULT(r, "(#f ((0 (1 2 3))) 1 #f #f ((0 (2 3))))");
    CHECK_TRACE(r, "0 VarCreated 0 (1 2 3)\n"
                   "1 TransactionStarted #tx`node1/t1`\n"
                   "2 TransactionStarted #tx`node1/t2`\n"
                   "3 ConstraintPosted (`ValGt` 0 5) #f\n"
                   "4 ErrorOccurred FDError.ErrInconsistent #tx`node1/t2`\n"
                   "5 TransactionAborted #tx`node1/t2`\n"
                   "6 VarLabeled 0 1\n"
                   "7 ConstraintPosted (`ValGt` 0 1) #f\n"
                   "8 ErrorOccurred FDError.ErrInconsistent #tx`node1/t1`\n"
                   "9 TransactionAborted #tx`node1/t1`");
}

/* Serialization ---------------------------------------------------------------------- */

static conf_result straight, resumed;

/* Runs src's main in slices of `slice` instructions, encoding the execution and
 * decoding it again after each; the outcome must be the uninterrupted one's. */
static int run_in_slices(int *test_failed_, const char *src, uint64_t slice)
{
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0) {
        CHECK(!"avm_embedded_init");
        return 0;
    }
    avm_exec *x = conf_start(&e, src, CONF_DEFAULT);
    int trips = 0;
    if (x == NULL) {
        CHECK(x != NULL);
        avm_embedded_close(&e);
        return 0;
    }
    while (avm_exec_run(x, slice) == AVM_RUN_YIELD) {
        avm_buf b, b2;
        avm_buf_init(&b);
        avm_buf_init(&b2);
        CHECK(avm_exec_encode(x, &b) == 0);
        avm_exec_free(x);
        char err[256] = "";
        int rv = avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &x, err,
                                 sizeof(err));
        if (rv != 0) {
            fprintf(stderr, "decode after %d trips: %s\n", trips, err);
            CHECK(rv == 0);
            avm_buf_free(&b);
            break;
        }
        avm_exec_encode(x, &b2);
        CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
        avm_buf_free(&b);
        avm_buf_free(&b2);
        trips++;
    }
    conf_capture(&e, x, &resumed);
    avm_exec_free(x);
    avm_embedded_close(&e);
    return trips;
}

TEST(resumes_mid_search)
{
    char *src = conf_read_source("examples/n_queens.avm");
    REQUIRE(src != NULL);
    straight = *conf_run(src, CONF_DEFAULT | CONF_RAW);
    CHECK_RESULT(&straight, "(1 5 8 6 3 7 2 4)");
    int trips = run_in_slices(test_failed_, src, 97);
    CHECK(trips > 20);
    CHECK_RESULT(&resumed, "(1 5 8 6 3 7 2 4)");
    CHECK_STR(resumed.trace, straight.trace);
    free(src);
}

/* Examples --------------------------------------------------------------------------- */

TEST(n_queens_example)
{
    char *src = conf_read_source("examples/n_queens.avm");
    REQUIRE(src != NULL);
    CHECK_RESULT(conf_run_entry(src, "q16", CONF_DEFAULT | CONF_RAW),
                 "(1 3 5 2 13 9 14 12 15 6 16 7 4 11 8 10)");
    free(src);
}

/* The grid is a valid sudoku completing the givens. */
TEST(sudoku_example)
{
    char *src = conf_read_source("examples/sudoku.avm");
    REQUIRE(src != NULL);
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_RAW);
    CHECK_RESULT(r, "((8 1 2 7 5 3 6 4 9) (9 4 3 6 8 2 1 7 5) (6 7 5 4 9 1 2 8 3) "
                    "(1 5 4 2 3 7 8 9 6) (3 6 9 8 4 5 7 2 1) (2 8 7 1 6 9 5 3 4) "
                    "(5 2 1 9 7 4 3 6 8) (4 3 8 5 2 6 9 1 7) (7 9 6 3 1 8 4 5 2))");
    static const char givens[] = "800000000003600000070090200050007000000045700"
                                 "000100030001000068008500010090000400";
    int g[81], n = 0;
    for (const char *p = r->result; *p && n < 81; p++)
        if (*p >= '1' && *p <= '9')
            g[n++] = *p - '0';
    REQUIRE(n == 81);
    for (int i = 0; i < 81; i++)
        CHECK(givens[i] == '0' || givens[i] - '0' == g[i]);
    for (int u = 0; u < 9; u++) {
        int row = 0, col = 0, box = 0;
        for (int k = 0; k < 9; k++) {
            row |= 1 << g[u * 9 + k];
            col |= 1 << g[k * 9 + u];
            box |= 1 << g[(3 * (u / 3) + k / 3) * 9 + 3 * (u % 3) + k % 3];
        }
        CHECK(row == 0x3fe && col == 0x3fe && box == 0x3fe);
    }
    free(src);
}

TEST_MAIN(T(instructions_and_trace), T(reify), T(errors), T(every_constructor),
          T(failed_store), T(abort_restores_exactly), T(abort_removes_the_label),
          T(store_created_inside_transactions), T(commit_false_on_inconsistent_store),
          T(resumes_mid_search), T(n_queens_example), T(sudoku_example))
