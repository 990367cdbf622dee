/* Pure family (callPure, registerPure [unsafe], updatePure): executePure, in both
 * modes (the modes do not differ here). callPure never fails: an unknown name, a
 * wrong number of arguments or a failing function give nothing. */
#include "conf.h"
#include "test.h"

#define FUNCS                                                                            \
    "(pure add (a b) (+ a b))\n"                                                         \
    "(pure double (x) (* 2 x))\n"                                                        \
    "(pure triple (x) (* 3 x))\n"                                                        \
    "(pure first (l) (head l))\n"

/* The registry version of name after the run (-1 when absent). */
static long long version_of(avm_embedded *e, const char *name)
{
    avm_val n;
    if (avm_cstr(AVM_STR, name, &n) != 0)
        return -2;
    const avm_purefn *fn = e->store->ops->pure_get(e->store, n);
    avm_val_release(n);
    return fn ? (long long)fn->version : -1;
}

/* A program's pure functions are registered when it starts (DESIGN decision 7), so
 * callPure finds them by name; no log entry. */
TEST(call_pure)
{
    const char *src = FUNCS "(main (list (callPure `add` (list 1 2)) (callPure `first`"
                            "  (list (list 7 8)))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(3 7)");
        CHECK_TRACE(r, "");
        CHECK_INT(r->counter, 0);
    }
}

/* State.pureFunctions name = nothing: nothing. */
TEST(call_pure_unknown)
{
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(FUNCS "(main (callPure `nope` (list 1)))", f), "nil");
}

/* FunctionEntry.impl returns Maybe Val: arguments that do not fit give nothing. */
TEST(call_pure_wrong_arity)
{
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(FUNCS "(main (list (callPure `add` (list 1))"
                                    "  (callPure `add` (list 1 2 3))))",
                              f),
                     "(nil nil)");
}

/* A pure function that fails (a primitive error) gives nothing; the caller goes on
 * and nothing is logged. */
TEST(call_pure_failing)
{
    const char *src = FUNCS "(main (list (callPure `first` (list '())) (callPure `add`"
                            "  (list 1 `x`)) (callPure `add` (list 2 2))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(nil nil 4)");
        CHECK_TRACE(r, "");
    }
}

/* registerPure: version 0, true, no log entry and no event-counter increment. */
TEST(register_pure)
{
    const char *src = FUNCS "(main (list (registerPure `scale` double)"
                            "  (callPure `scale` (list 5))))";
    for (int f = 0; f < 2; f++) {
        avm_embedded e;
        REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
        conf_result *r = malloc(sizeof(*r));
        REQUIRE(r != NULL);
        conf_run_on(&e, src, NULL, f | CONF_UNSAFE, r);
        CHECK_RESULT(r, "(#t 10)");
        CHECK_TRACE(r, "");
        CHECK_INT(r->counter, 0);
        CHECK_INT(version_of(&e, "scale"), 0);
        free(r);
        avm_embedded_close(&e);
    }
}

/* A name already registered: err-function-registered. The program's own pure
 * functions are registered at start, so registering one of their names fails too. */
TEST(register_pure_twice)
{
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(FUNCS "(main (registerPure `scale` double)"
                                        "  (registerPure `scale` triple))",
                                  f | CONF_UNSAFE);
        CHECK_ERROR(r, "PureError.ErrFunctionAlreadyRegistered `scale`");
        CHECK_ERROR(conf_run(FUNCS "(main (registerPure `add` double))", f | CONF_UNSAFE),
                    "PureError.ErrFunctionAlreadyRegistered `add`");
    }
    CHECK_TRACE(
        conf_run(FUNCS "(main (registerPure `add` double))", CONF_DEFAULT | CONF_UNSAFE),
        "0 ErrorOccurred PureError.ErrFunctionAlreadyRegistered `add`");
}

/* updatePure: version + 1, the new code, FunctionUpdated name logged. */
TEST(update_pure)
{
    const char *src = FUNCS
        "(main (let ((a (registerPure `scale` double)) (b (callPure `scale` (list 5)))"
        "  (c (updatePure `scale` triple))) (list a b c (callPure `scale` (list 5)))))";
    for (int f = 0; f < 2; f++) {
        avm_embedded e;
        REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
        conf_result *r = malloc(sizeof(*r));
        REQUIRE(r != NULL);
        conf_run_on(&e, src, NULL, f | CONF_UNSAFE, r);
        CHECK_RESULT(r, "(#t 10 #t 15)");
        CHECK_TRACE(r, "0 FunctionUpdated `scale`");
        CHECK_INT(version_of(&e, "scale"), 1);
        /* updatePure is safe: a program's own function, updated twice. */
        conf_run_on(&e,
                    FUNCS "(main (updatePure `add` triple) (updatePure `add` double)"
                          "  (callPure `add` (list 4)))",
                    NULL, f, r);
        CHECK_RESULT(r, "8");
        CHECK_TRACE(r, "0 FunctionUpdated `add`\n1 FunctionUpdated `add`");
        CHECK_INT(version_of(&e, "add"), 2);
        free(r);
        avm_embedded_close(&e);
    }
}

/* Inside a transaction the entry carries the transaction's controller. */
TEST(update_pure_in_tx)
{
    const char *src = FUNCS "(main (let ((t (beginTx #ctl`main`)))"
                            "  (updatePure `add` triple) (commitTx t)))";
    CHECK_TRACE(conf_run(src, CONF_STRICT), "0 TransactionStarted #tx`0`\n"
                                            "1 FunctionUpdated `add` [#ctl`main`]\n"
                                            "2 TransactionCommitted #tx`0` [#ctl`main`]");
}

TEST(update_pure_unknown)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run(FUNCS "(main (updatePure `nope` double))", f),
                    "PureError.ErrFunctionNotFound `nope`");
}

TEST_MAIN(T(call_pure), T(call_pure_unknown), T(call_pure_wrong_arity),
          T(call_pure_failing), T(register_pure), T(register_pure_twice), T(update_pure),
          T(update_pure_in_tx), T(update_pure_unknown))
