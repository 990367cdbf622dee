/* Tx family (beginTx, commitTx, abortTx): success paths and every error case of
 * executeTx, in both modes; validation conflicts provoked from outside the
 * execution between two slices of its run (a concurrent committed write, or a
 * concurrent destroy). Nested transactions and misuse are in conf_decisions.c too
 * (decisions 2, 3, 11). */
#include "conf.h"
#include "test.h"

#define BEHAVIORS                                                                        \
    "(behavior echo (list (input)))\n"                                                   \
    "(behavior push (let ((s (getState))) (setState (cons (input) s))"                   \
    "  (list (getState))))\n"

/* beginTx ---------------------------------------------------------------------- */

/* A fresh id (the event counter in strict mode), TransactionStarted logged with the
 * state before (no controller). Strict: a transaction left open stays open when the
 * program ends. Default (decision 11): it is aborted at the end of the frame that
 * began it. */
TEST(begin)
{
    conf_result *r = conf_run("(main (beginTx))", CONF_STRICT);
    CHECK_RESULT(r, "#tx`0`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`");
    r = conf_run("(main (beginTx))", CONF_DEFAULT);
    CHECK_RESULT(r, "#tx`node1/t1`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 TransactionAborted #tx`node1/t1`");
}

/* beginTx (just c): the controller is fixed from the start; the entry of the begin
 * is made before it is set. */
TEST(begin_with_controller)
{
    const char *src = "(main (let ((t (beginTx #ctl`main`)))"
                      "  (list (getCurrentController) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#ctl`main` #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 TransactionCommitted #tx`0` [#ctl`main`]");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#ctl`main` #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
}

/* isReachableController false: ErrControllerUnreachable. */
TEST(begin_unreachable_controller)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run("(main (beginTx #ctl`other`))", f),
                    "ControllerError.ErrControllerUnreachable #ctl`other`");
    CHECK_TRACE(conf_run("(main (beginTx #ctl`other`))", CONF_STRICT), "");
    CHECK_TRACE(conf_run("(main (beginTx #ctl`other`))", CONF_DEFAULT),
                "0 ErrorOccurred ControllerError.ErrControllerUnreachable #ctl`other`");
}

/* beginTx inside a transaction. Strict: the literal beginTx starts afresh: it resets
 * txLog, creates, destroys and observed (the outer create is lost) and replaces the
 * transaction, so the outer id is no longer active. Default (decision 2): a nested
 * transaction is a savepoint; the outer commit applies both levels. */
TEST(begin_nested)
{
    const char *src =
        BEHAVIORS "(main (let ((t1 (beginTx)) (o (createObj `echo`)) (t2 (beginTx)))"
                  "  (list (commitTx t2) (getController o) (getMachine o))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t nil nil)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 TransactionStarted #tx`2`\n"
                   "3 TransactionCommitted #tx`2`");
    CHECK_STORE(r, "");
    CHECK_ERROR(conf_run(BEHAVIORS "(main (let ((t1 (beginTx)) (t2 (beginTx)))"
                                   "  (commitTx t2) (commitTx t1)))",
                         CONF_STRICT),
                "TxError.ErrNoActiveTx");
    src = BEHAVIORS "(main (let ((t1 (beginTx)) (o (createObj `echo`)) (t2 (beginTx)))"
                    "  (list (commitTx t2) (getController o) (commitTx t1))))";
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t #ctl`main` #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 TransactionStarted #tx`node1/t3` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t3` [#ctl`main`]\n"
                   "4 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
    CHECK_STORE(r, "#obj`node1/2` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

/* commitTx ---------------------------------------------------------------------- */

/* applyCreates, applyTransfers, applyWrites, applyDestroys, applyStates; the entry
 * carries the controller of the state before the commit. */
TEST(commit)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `push` #ctl`main`)) (d (createObj `echo` #ctl`main`))"
        "  (t (beginTx)) (c (createObj `echo`)))"
        "  (call a 1) (destroyObj d) (commitTx t)))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `push`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 TransactionStarted #tx`2`\n"
                   "3 ObjectCreated #obj`obj-3` `echo`\n"
                   "4 ObjectCalled #obj`obj-0` 1 -> () [#ctl`main`]\n"
                   "5 ObjectDestroyed #obj`obj-1` [#ctl`main`]\n"
                   "6 TransactionCommitted #tx`2` [#ctl`main`]");
    CHECK_STORE(r, "#obj`obj-0` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(1)\n"
                   "#obj`obj-3` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `push`\n"
                   "1 ObjectCreated #obj`node1/2` `echo`\n"
                   "2 TransactionStarted #tx`node1/t3`\n"
                   "3 ObjectCreated #obj`node1/4` `echo` [#ctl`main`]\n"
                   "4 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                   "5 ObjectDestroyed #obj`node1/2` [#ctl`main`]\n"
                   "6 TransactionCommitted #tx`node1/t3` [#ctl`main`]");
    CHECK_STORE(r, "#obj`node1/1` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(1)\n"
                   "#obj`node1/4` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

TEST(commit_no_tx)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run("(main (commitTx #tx`0`))", f), "TxError.ErrNoActiveTx");
}

/* A wrong id. Strict: eqTxId false gives err-tx-conflict txid. Default (decision 3):
 * misuse is ErrTxNotFound. */
TEST(commit_wrong_id)
{
    const char *src = "(main (beginTx) (commitTx #tx`nope`))";
    CHECK_ERROR(conf_run(src, CONF_STRICT), "TxError.ErrTxConflict #tx`nope`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT), "TxError.ErrTxNotFound #tx`nope`");
}

/* Committing an id twice: with no transaction open it is ErrNoActiveTx in both
 * modes; with another one open, strict sees a wrong id (ErrTxConflict) and default
 * names the misuse (ErrTxAlreadyCommitted / ErrTxAlreadyAborted). */
TEST(commit_finished_id)
{
    const char *src = "(main (let ((t (beginTx))) (commitTx t) (commitTx t)))";
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run(src, f), "TxError.ErrNoActiveTx");
    src = "(main (let ((t (beginTx))) (commitTx t) (beginTx) (commitTx t)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT), "TxError.ErrTxConflict #tx`0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "TxError.ErrTxAlreadyCommitted #tx`node1/t1`");
    src = "(main (let ((t (beginTx))) (abortTx t) (beginTx) (commitTx t)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT), "TxError.ErrTxConflict #tx`0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT), "TxError.ErrTxAlreadyAborted #tx`node1/t1`");
}

/* Validation (validateObserved / the read versions): a concurrent committed write to
 * an object the transaction read. Strict validates existence only, so the commit
 * goes through. Default (decision 3): the snapshot is stale, commitTx says #f, and
 * the trace records ErrorOccurred and TransactionAborted; nothing is applied. */
TEST(commit_conflict_concurrent_write)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)) (v (call o 1))"
        "  (ok (commitTx t))) (list ok (call o 2))))";
    for (int f = 0; f < 2; f++) {
        avm_embedded e;
        REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
        avm_exec *x = conf_start(&e, src, f);
        REQUIRE(x != NULL);
        /* Run until the transactional call has been logged (the read is done). */
        CHECK_INT(conf_run_until_events(x, 3), AVM_RUN_YIELD);
        avm_val oid;
        REQUIRE(avm_cstr(AVM_OBJID, f == CONF_STRICT ? "obj-0" : "node1/1", &oid) == 0);
        CHECK(avm_memstore_touch(e.store, oid));
        avm_val_release(oid);
        avm_exec_run(x, 0);
        conf_result *r = malloc(sizeof(*r));
        REQUIRE(r != NULL);
        conf_capture(&e, x, r);
        if (f == CONF_STRICT) {
            CHECK_RESULT(r, "(#t (2 1))");
            CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `push`\n"
                           "1 TransactionStarted #tx`1`\n"
                           "2 ObjectCalled #obj`obj-0` 1 -> () [#ctl`main`]\n"
                           "3 TransactionCommitted #tx`1` [#ctl`main`]\n"
                           "4 ObjectCalled #obj`obj-0` 2 -> (2 1)");
        } else {
            CHECK_RESULT(r, "(#f (2))");
            CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `push`\n"
                           "1 TransactionStarted #tx`node1/t2`\n"
                           "2 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                           "3 ErrorOccurred TxError.ErrTxConflict #tx`node1/t2` "
                           "[#ctl`main`]\n"
                           "4 TransactionAborted #tx`node1/t2` [#ctl`main`]\n"
                           "5 ObjectCalled #obj`node1/1` 2 -> (2)");
            CHECK_STORE(r, "#obj`node1/1` `push` machine=#mach`node1` "
                           "creating=#ctl`main` current=#ctl`main` state=(2)");
        }
        free(r);
        avm_exec_free(x);
        avm_embedded_close(&e);
    }
}

/* A concurrent destroy of an object the transaction read: validateObserved fails.
 * Strict: failure (err-tx-conflict txid). Default: commitTx says #f. */
TEST(commit_conflict_concurrent_destroy)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)) (v (call o 1)))"
        "  (list (commitTx t) (getState))))";
    for (int f = 0; f < 2; f++) {
        avm_embedded e;
        REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
        avm_exec *x = conf_start(&e, src, f);
        REQUIRE(x != NULL);
        CHECK_INT(conf_run_until_events(x, 3), AVM_RUN_YIELD);
        avm_val oid;
        REQUIRE(avm_cstr(AVM_OBJID, f == CONF_STRICT ? "obj-0" : "node1/1", &oid) == 0);
        avm_writeset ws = {.destroys = &oid, .ndestroys = 1};
        bool ok = false;
        CHECK_INT(e.store->ops->apply(e.store, &ws, &ok), 0);
        CHECK(ok);
        avm_val_release(oid);
        avm_exec_run(x, 0);
        conf_result *r = malloc(sizeof(*r));
        REQUIRE(r != NULL);
        conf_capture(&e, x, r);
        if (f == CONF_STRICT) {
            CHECK_ERROR(r, "TxError.ErrTxConflict #tx`1`");
        } else {
            CHECK_RESULT(r, "(#f ())");
            CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `push`\n"
                           "1 TransactionStarted #tx`node1/t2`\n"
                           "2 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                           "3 ErrorOccurred TxError.ErrTxConflict #tx`node1/t2` "
                           "[#ctl`main`]\n"
                           "4 TransactionAborted #tx`node1/t2` [#ctl`main`]");
        }
        CHECK_STORE(r, "");
        free(r);
        avm_exec_free(x);
        avm_embedded_close(&e);
    }
}

/* abortTx ------------------------------------------------------------------------ */

/* Discards the overlay; returns tt (nil); TransactionAborted with the controller of
 * the state before. */
TEST(abort)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `push` #ctl`main`)) (t (beginTx)) (c "
                  "(createObj `echo`)))"
                  "  (call a 1) (list (abortTx t) (getCurrentController) (call a 2))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(nil nil (2))");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `push`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectCreated #obj`obj-2` `echo`\n"
                   "3 ObjectCalled #obj`obj-0` 1 -> () [#ctl`main`]\n"
                   "4 TransactionAborted #tx`1` [#ctl`main`]\n"
                   "5 ObjectCalled #obj`obj-0` 2 -> (2)");
    CHECK_STORE(r, "#obj`obj-0` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(2)");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(nil nil (2))");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `push`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectCreated #obj`node1/3` `echo` [#ctl`main`]\n"
                   "3 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                   "4 TransactionAborted #tx`node1/t2` [#ctl`main`]\n"
                   "5 ObjectCalled #obj`node1/1` 2 -> (2)");
}

/* Strict: the literal abortTx accepts any id with or without a transaction (and a
 * wrong id aborts the current one). Default (decision 11): errors. */
TEST(abort_no_tx)
{
    conf_result *r = conf_run("(main (abortTx #tx`x`))", CONF_STRICT);
    CHECK_RESULT(r, "nil");
    CHECK_TRACE(r, "0 TransactionAborted #tx`x`");
    CHECK_ERROR(conf_run("(main (abortTx #tx`x`))", CONF_DEFAULT),
                "TxError.ErrNoActiveTx");
}

TEST(abort_wrong_id)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (abortTx #tx`x`)"
                  "  (getCurrentController)))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "nil");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 TransactionAborted #tx`x`");
    CHECK_STORE(r, "");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT), "TxError.ErrTxNotFound #tx`x`");
}

TEST(abort_finished_id)
{
    const char *src = "(main (let ((t (beginTx))) (commitTx t) (beginTx) (abortTx t)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "TxError.ErrTxAlreadyCommitted #tx`node1/t1`");
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "nil");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 TransactionCommitted #tx`0`\n"
                   "2 TransactionStarted #tx`2`\n"
                   "3 TransactionAborted #tx`0`");
}

TEST_MAIN(T(begin), T(begin_with_controller), T(begin_unreachable_controller),
          T(begin_nested), T(commit), T(commit_no_tx), T(commit_wrong_id),
          T(commit_finished_id), T(commit_conflict_concurrent_write),
          T(commit_conflict_concurrent_destroy), T(abort), T(abort_no_tx),
          T(abort_wrong_id), T(abort_finished_id))
