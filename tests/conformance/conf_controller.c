/* Controller family (getCurrentController, getController, transferObject, freeze):
 * executeController's success paths and every error case, in both modes. The
 * embedded node reaches only #ctl"main"; a widened node (conf_widen) reaches
 * #ctl"aux" too, so that ownership changes can be seen. */
#include "conf.h"
#include "test.h"

#define BEHAVIORS "(behavior echo (list (input)))\n"

/* getCurrentController ---------------------------------------------------------- */

/* State.txController: nothing outside a transaction and in a deferred one until it
 * resolves. */
TEST(get_current_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`main`)) (a (getCurrentController))"
        "  (t (beginTx)) (b (getCurrentController)) (v (call o 1)) (c "
        "(getCurrentController))"
        "  (ok (commitTx t)) (d (getCurrentController)) (t2 (beginTx #ctl`main`)))"
        "  (list a b c d (getCurrentController))))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "(nil nil #ctl`main` nil #ctl`main`)");
}

/* getController ----------------------------------------------------------------- */

TEST(get_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (b (createObj `echo`)))"
        "  (list (getController a) (getController b) (getController #obj`ghost`))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#ctl`main` nil nil)");
        CHECK_INT(r->counter, 2);
    }
}

/* Inside a deferred transaction getController resolves the transaction from the
 * object (resolveTxController) and reads it (ensureObserved). */
TEST(get_controller_in_tx_resolves)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx)) (c "
                  "(getController a)))"
                  "  (list c (getCurrentController) (get (reifyTxState) 'observed))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT | CONF_UNSAFE),
                 "(#ctl`main` #ctl`main` (#obj`obj-0`))");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_UNSAFE),
                 "(#ctl`main` #ctl`main` (#obj`node1/1`))");
}

/* A deferred transaction cannot resolve from a controller-less object. */
TEST(get_controller_in_tx_no_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((b (createObj `echo`)) (t (beginTx))) (getController b)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrObjectHasNoController #obj`node1/1`");
    /* A resolved transaction just reads nothing. */
    src = BEHAVIORS "(main (let ((b (createObj `echo`)) (t (beginTx #ctl`main`))) "
                    "(getController b)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "nil");
}

/* A pending create. Strict: its controller is the deferred one (nothing), and
 * resolving from it fails. Default (decision 4): it has the node's controller. */
TEST(get_controller_pending_create)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (getController o)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-1`");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "#ctl`main`");
    src = BEHAVIORS "(main (let ((t (beginTx #ctl`main`)) (o (createObj `echo`))) "
                    "(getController o)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "#ctl`main`");
}

/* lookupPendingTransfer: a transfer pending in the transaction is seen. */
TEST(get_controller_pending_transfer)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (transferObject a #ctl`aux`) (list (getController a) (commitTx t)"
                  "  (getController a))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f | CONF_WIDE);
        CHECK_RESULT(r, "(#ctl`aux` #t #ctl`aux`)");
        CHECK_Q("store",
                strstr(r->store, "creating=") ? strstr(r->store, "creating=") : "",
                "creating=#ctl`main` current=#ctl`aux` state=()");
    }
}

/* transferObject ---------------------------------------------------------------- */

/* transferObjNoTx: at once; ObjectTransferred (oid, source, target). */
TEST(transfer_outside_tx)
{
    const char *src = BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`))) (list "
                                "(transferObject a #ctl`aux`)"
                                "  (getController a))))";
    conf_result *r = conf_run(src, CONF_STRICT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #ctl`aux`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectTransferred #obj`obj-0` #ctl`main` #ctl`aux`");
    CHECK_STORE(r, "#obj`obj-0` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`aux` state=()");
    r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #ctl`aux`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 ObjectTransferred #obj`node1/1` #ctl`main` #ctl`aux`");
    /* On the embedded node, to its own controller. */
    r = conf_run(BEHAVIORS
                 "(main (transferObject (createObj `echo` #ctl`main`) #ctl`main`))",
                 CONF_DEFAULT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 ObjectTransferred #obj`node1/1` #ctl`main` #ctl`main`");
}

/* The target's reachability is checked first, in and out of transactions. */
TEST(transfer_unreachable)
{
    const char *out =
        BEHAVIORS "(main (transferObject (createObj `echo` #ctl`main`) #ctl`other`))";
    const char *in = BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (t "
                               "(beginTx))) (transferObject a #ctl`other`)))";
    const char *ghost = "(main (beginTx) (transferObject #obj`ghost` #ctl`other`))";
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run(out, f),
                    "ControllerError.ErrControllerUnreachable #ctl`other`");
        CHECK_ERROR(conf_run(in, f),
                    "ControllerError.ErrControllerUnreachable #ctl`other`");
        CHECK_ERROR(conf_run(ghost, f),
                    "ControllerError.ErrControllerUnreachable #ctl`other`");
    }
}

TEST(transfer_not_found)
{
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run("(main (transferObject #obj`ghost` #ctl`main`))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
        CHECK_ERROR(
            conf_run("(main (beginTx) (transferObject #obj`ghost` #ctl`main`))", f),
            "ObjError.ErrObjectNotFound #obj`ghost`");
    }
}

/* transferObjNoTx: an object without a controller cannot be transferred. */
TEST(transfer_outside_tx_no_controller)
{
    const char *src = BEHAVIORS "(main (transferObject (createObj `echo`) #ctl`main`))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrObjectHasNoController #obj`node1/1`");
}

/* transferObjInTx: resolve and check ownership, read, pending transfer; the source
 * is the transaction's controller; applied at commit. */
TEST(transfer_in_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (list (transferObject a #ctl`aux`) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectTransferred #obj`obj-0` #ctl`main` #ctl`aux` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`1` [#ctl`main`]");
    CHECK_STORE(r, "#obj`obj-0` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`aux` state=()");
    r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectTransferred #obj`node1/1` #ctl`main` #ctl`aux` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
    /* Aborted: the transfer never happens. */
    src = BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx)))"
                    "  (transferObject a #ctl`aux`) (abortTx t) (getController a)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f | CONF_WIDE), "#ctl`main`");
}

TEST(transfer_in_tx_cross_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `echo` #ctl`aux`)) (t (beginTx #ctl`main`)))"
                  "  (transferObject a #ctl`main`)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`obj-0` #ctl`aux`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`aux`");
}

TEST(transfer_in_tx_no_controller)
{
    const char *src = BEHAVIORS "(main (let ((a (createObj `echo`)) (t (beginTx))) "
                                "(transferObject a #ctl`main`)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrObjectHasNoController #obj`node1/1`");
}

/* A pending create. Strict: the source is the object's controller or "unknown", the
 * entry is made from the state before (no controller), and the literal branch does
 * not increment the event counter (two entries with timestamp 2). Default: the
 * create resolved the transaction (decision 4); the counter advances. */
TEST(transfer_pending_create)
{
    const char *src = BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (list "
                                "(transferObject o #ctl`main`)"
                                "  (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 ObjectTransferred #obj`obj-1` #ctl`unknown` #ctl`main`\n"
                   "2 TransactionCommitted #tx`0`");
    CHECK_STORE(r,
                "#obj`obj-1` `echo` machine=#mach`node1` creating=nil current=#ctl`main` "
                "state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r,
                "0 TransactionStarted #tx`node1/t1`\n"
                "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                "2 ObjectTransferred #obj`node1/2` #ctl`main` #ctl`main` [#ctl`main`]\n"
                "3 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
}

/* freeze ------------------------------------------------------------------------ */

/* No transaction controller to freeze through: ErrObjectHasNoController, before the
 * object is even looked up. */
TEST(freeze_no_controller)
{
    const char *src = BEHAVIORS "(main (freeze (createObj `echo` #ctl`main`)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrObjectHasNoController #obj`node1/1`");
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run("(main (freeze #obj`ghost`))", f),
                    "ControllerError.ErrObjectHasNoController #obj`ghost`");
        /* A deferred, unresolved transaction has no controller either. */
        CHECK_ERROR(conf_run("(main (beginTx) (freeze #obj`ghost`))", f),
                    "ControllerError.ErrObjectHasNoController #obj`ghost`");
    }
}

/* Inside a transaction: just true, ObjectFrozen (oid, controller). */
TEST(freeze_in_tx)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx #ctl`main`)))"
        "  (list (freeze a) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectFrozen #obj`obj-0` #ctl`main` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`1` [#ctl`main`]");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectFrozen #obj`node1/1` #ctl`main` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
}

TEST(freeze_pending_create)
{
    const char *src = BEHAVIORS
        "(main (let ((t (beginTx #ctl`main`)) (o (createObj `echo`))) (freeze o)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "#t");
}

TEST(freeze_not_found)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run("(main (beginTx #ctl`main`) (freeze #obj`ghost`))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
}

/* The transaction's controller must be reachable: a transaction resolved from an
 * object of an unreachable controller (resolution checks no reachability). */
TEST(freeze_unreachable_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`other`)) (t (beginTx))) (call o 1)"
        "  (freeze o)))";
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run(src, f),
                    "ControllerError.ErrControllerUnreachable #ctl`other`");
}

TEST_MAIN(T(get_current_controller), T(get_controller), T(get_controller_in_tx_resolves),
          T(get_controller_in_tx_no_controller), T(get_controller_pending_create),
          T(get_controller_pending_transfer), T(transfer_outside_tx),
          T(transfer_unreachable), T(transfer_not_found),
          T(transfer_outside_tx_no_controller), T(transfer_in_tx),
          T(transfer_in_tx_cross_controller), T(transfer_in_tx_no_controller),
          T(transfer_pending_create), T(freeze_no_controller), T(freeze_in_tx),
          T(freeze_pending_create), T(freeze_not_found), T(freeze_unreachable_controller))
