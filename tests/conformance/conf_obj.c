/* Obj family (createObj, destroyObj, call, receive): each instruction's success path
 * and every error case of Interpreter.lagda.md's executeObj, in both modes, with the
 * expected log entries (timestamp, event, arguments, executing controller).
 *
 * The embedded node reaches only its own machine #mach"node1" and its controller
 * #ctl"main"; an object of another controller (#ctl"other") can still be created
 * outside a transaction, since createObj checks no reachability. */
#include "conf.h"
#include "test.h"

#define BEHAVIORS                                                                        \
    "(behavior echo (list (input)))\n"                                                   \
    "(behavior silent (list))\n"                                                         \
    "(behavior who (list (list (self) (input) (sender))))\n"                             \
    "(behavior bad 42)\n"

/* createObj ------------------------------------------------------------------- */

/* withCreateTxBranch outside a transaction: createWithMeta at once, the id is the
 * event counter (strict) or node-prefixed (default, decision 9); no controller. */
TEST(create_outside_tx)
{
    const char *src = BEHAVIORS "(main (createObj `echo`))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#obj`obj-0`");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`");
    CHECK_STORE(r, "#obj`obj-0` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    CHECK_INT(r->counter, 1);
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#obj`node1/1`");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`");
    CHECK_STORE(r, "#obj`node1/1` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
}

/* initMeta: the given controller is both creating and current controller. */
TEST(create_with_controller)
{
    const char *src = BEHAVIORS "(main (createObj `echo` #ctl`main`))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_INT(r->status, AVM_RUN_DONE);
        CHECK_Q("store",
                strstr(r->store, "creating=") ? strstr(r->store, "creating=") : "",
                "creating=#ctl`main` current=#ctl`main` state=()");
    }
}

/* Inside a transaction: addPendingCreate; the object reaches the store at commit.
 * Strict: the deferred controller stays `nothing`, so the object has none (the
 * entry's controller is the state's before the event: nothing). Default: decision 4
 * resolves the transaction to the node's default controller at the create. */
TEST(create_in_tx_commit)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (commitTx t) o))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#obj`obj-1`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 TransactionCommitted #tx`0`");
    CHECK_STORE(r, "#obj`obj-1` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#obj`node1/2`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
    CHECK_STORE(r, "#obj`node1/2` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

TEST(create_in_tx_abort)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (abortTx t) o))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#obj`obj-1`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 TransactionAborted #tx`0`");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 TransactionAborted #tx`node1/t1` [#ctl`main`]");
    CHECK_STORE(r, "");
}

/* A create with an explicit controller inside a transaction. Strict: the literal
 * createObj checks nothing, the object belongs to #ctl"other". Default: the
 * controller must be reachable (the commit goes through it). */
TEST(create_in_tx_other_controller)
{
    const char *src = BEHAVIORS "(main (let ((t (beginTx #ctl`main`))"
                                " (o (createObj `echo` #ctl`other`))) (commitTx t) o))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#obj`obj-1`");
    CHECK_STORE(r, "#obj`obj-1` `echo` machine=#mach`node1` creating=#ctl`other` "
                   "current=#ctl`other` state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "ControllerError.ErrControllerUnreachable #ctl`other`");
    CHECK_STORE(r, "");
}

/* Not a specification error (interpretBehaviorName is total there): a behaviour name
 * the program does not define is the program's fault, an EvalError. */
TEST(create_unknown_behavior)
{
    conf_result *r = conf_run(BEHAVIORS "(main (createObj `nope`))", CONF_STRICT);
    CHECK_ERROR(r, "EvalError `createObj: no behaviour named \\`nope\\``");
    CHECK_Q("position", r->errpos, "t.avm:5:7");
}

/* destroyObj ------------------------------------------------------------------ */

/* destroyObjNoTx: the object needs a controller. */
TEST(destroy_outside_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`))) (destroyObj o)))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectDestroyed #obj`obj-0`");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 ObjectDestroyed #obj`node1/1`");
    CHECK_STORE(r, "");
}

TEST(destroy_outside_tx_no_controller)
{
    const char *src = BEHAVIORS "(main (let ((o (createObj `echo`))) (destroyObj o)))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_ERROR(r, "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_Q("position", r->errpos, "t.avm:5:37");
    /* Strict: the specification's failure carries no trace; the interpreter adds
     * nothing to what it had logged. */
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`");
    CHECK_STORE(r, "#obj`obj-0` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "ControllerError.ErrObjectHasNoController #obj`node1/1`");
    /* Default: the failure is logged as ErrorOccurred. */
    CHECK_TRACE(r,
                "0 ObjectCreated #obj`node1/1` `echo`\n"
                "1 ErrorOccurred ControllerError.ErrObjectHasNoController #obj`node1/1`");
}

TEST(destroy_not_found)
{
    const char *out = BEHAVIORS "(main (destroyObj #obj`ghost`))";
    const char *in = BEHAVIORS "(main (beginTx) (destroyObj #obj`ghost`))";
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run(out, f), "ObjError.ErrObjectNotFound #obj`ghost`");
        CHECK_ERROR(conf_run(in, f), "ObjError.ErrObjectNotFound #obj`ghost`");
    }
    CHECK_TRACE(conf_run(in, CONF_DEFAULT),
                "0 TransactionStarted #tx`node1/t1`\n"
                "1 ErrorOccurred ObjError.ErrObjectNotFound #obj`ghost`");
}

/* destroyObjInTx: resolveAndCheckOwnership, ensureObserved, addPendingDestroy; the
 * entry is made from the state after resolution, so it carries the controller. */
TEST(destroy_in_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (destroyObj o) (list (getCurrentController) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#ctl`main` #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectDestroyed #obj`obj-0` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`1` [#ctl`main`]");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#ctl`main` #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectDestroyed #obj`node1/1` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
    CHECK_STORE(r, "");
}

/* The destroy is pending until the commit: an abort keeps the object. */
TEST(destroy_in_tx_abort)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (destroyObj o) (abortTx t) (getController o)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "#ctl`main`");
        CHECK_INT(strstr(r->store, "\"echo\"") != NULL, 1);
    }
}

TEST(destroy_in_tx_cross_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`other`)) (t (beginTx #ctl`main`)))"
        "  (destroyObj o)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrCrossControllerTx #obj`obj-0` #ctl`other`");
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`other`");
    /* Default: the failure ends the execution; the trace ends with the error, made
     * under the transaction's controller. */
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ErrorOccurred ControllerError.ErrCrossControllerTx #obj`node1/1` "
                   "#ctl`other` [#ctl`main`]");
}

/* resolveTxController: an unresolved transaction cannot resolve from an object
 * without a controller. */
TEST(destroy_in_tx_no_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`)) (t (beginTx))) (destroyObj o)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrObjectHasNoController #obj`node1/1`");
}

/* A resolved transaction and a controller-less object: checkOwnershipPure is false,
 * and the error names the controller "unknown" (mkControllerId "unknown"). */
TEST(destroy_in_tx_resolved_no_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo`)) (t (beginTx #ctl`main`))) (destroyObj o)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrCrossControllerTx #obj`obj-0` #ctl`unknown`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`unknown`");
}

/* removePendingCreate: destroying an object created in the same transaction cancels
 * the create; nothing reaches the store. */
TEST(destroy_pending_create)
{
    const char *src = BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`)))"
                                "  (list (destroyObj o) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 ObjectDestroyed #obj`obj-1`\n"
                   "3 TransactionCommitted #tx`0`");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(#t #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 ObjectDestroyed #obj`node1/2` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
    CHECK_STORE(r, "");
}

/* Destroying twice in one transaction. Strict: the object is still in the store,
 * so the second destroyObjInTx succeeds too. Default: the transaction sees its own
 * destroy (decision 1), ErrObjectAlreadyDestroyed. */
TEST(destroy_twice_in_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (list (destroyObj o) (destroyObj o) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t #t #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectDestroyed #obj`obj-0` [#ctl`main`]\n"
                   "3 ObjectDestroyed #obj`obj-0` [#ctl`main`]\n"
                   "4 TransactionCommitted #tx`1` [#ctl`main`]");
    CHECK_STORE(r, "");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ObjError.ErrObjectAlreadyDestroyed #obj`node1/1`");
}

/* call ------------------------------------------------------------------------ */

/* handleCall outside a transaction: just (head outputs), ObjectCalled after the
 * behaviour's own entries. */
TEST(call_outside_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`))) (list (call o 5) (call o `x`))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(5 `x`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectCalled #obj`obj-0` 5 -> 5\n"
                   "2 ObjectCalled #obj`obj-0` `x` -> `x`");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(5 `x`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 ObjectCalled #obj`node1/1` 5 -> 5\n"
                   "2 ObjectCalled #obj`node1/1` `x` -> `x`");
}

/* An empty output list: call returns nothing (nil), the entry says so. */
TEST(call_no_output)
{
    conf_result *r =
        conf_run(BEHAVIORS "(main (call (createObj `silent`) 1))", CONF_STRICT);
    CHECK_RESULT(r, "nil");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `silent`\n"
                   "1 ObjectCalled #obj`obj-0` 1 -> nothing");
}

/* The callee's frame: self = the object, input, sender = the caller's self. */
TEST(call_context)
{
    const char *src = BEHAVIORS "(main (call (createObj `who`) 7))";
    CHECK_RESULT(conf_run(src, CONF_STRICT), "(#obj`obj-0` 7 #obj`root/orchestrator`)");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT),
                 "(#obj`node1/1` 7 #obj`root/orchestrator`)");
}

TEST(call_not_found)
{
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run(BEHAVIORS "(main (call #obj`ghost` 1))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
        CHECK_ERROR(conf_run(BEHAVIORS "(main (beginTx) (call #obj`ghost` 1))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
    }
}

/* callObjInTx: a deferred transaction takes the controller of the first object it
 * calls; the ObjectCalled entry carries it. */
TEST(call_in_tx_resolves_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)) (a "
                  "(getCurrentController))"
                  "  (v (call o 1))) (list a (getCurrentController) v (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(nil #ctl`main` 1 #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectCalled #obj`obj-0` 1 -> 1 [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`1` [#ctl`main`]");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(nil #ctl`main` 1 #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectCalled #obj`node1/1` 1 -> 1 [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
}

TEST(call_in_tx_cross_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`other`)) (t (beginTx #ctl`main`)))"
        "  (call o 1)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrCrossControllerTx #obj`obj-0` #ctl`other`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`other`");
}

/* The transaction resolved to one controller by the first call; a second object of
 * another controller is then refused. */
TEST(call_in_tx_cross_controller_after_resolution)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`other`)) (b (createObj `echo` #ctl`main`))"
        "  (t (beginTx))) (call a 1) (call b 2)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrCrossControllerTx #obj`obj-1` #ctl`main`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ControllerError.ErrCrossControllerTx #obj`node1/2` #ctl`main`");
}

/* A transactional call must resolve the controller from a controller-less object:
 * ErrObjectHasNoController (the spec's battleship failure). */
TEST(call_in_tx_no_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`)) (t (beginTx))) (call o 1)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-0`");
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "ControllerError.ErrObjectHasNoController #obj`node1/1`");
    CHECK_TRACE(r,
                "0 ObjectCreated #obj`node1/1` `echo`\n"
                "1 TransactionStarted #tx`node1/t2`\n"
                "2 ErrorOccurred ControllerError.ErrObjectHasNoController #obj`node1/1`");
}

/* A pending create is called directly (no ownership check, no read). */
TEST(call_pending_create)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`)) (v (call o 3)))"
                  "  (list v (getCurrentController) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(3 nil #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 ObjectCalled #obj`obj-1` 3 -> 3\n"
                   "3 TransactionCommitted #tx`0`");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(3 #ctl`main` #t)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 ObjectCalled #obj`node1/2` 3 -> 3 [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t1` [#ctl`main`]");
}

/* Not a specification error: a behaviour must return a list of outputs. */
TEST(call_behavior_returns_non_list)
{
    conf_result *r =
        conf_run(BEHAVIORS "(main (call (createObj `bad`) 1))", CONF_DEFAULT);
    CHECK_ERROR(r, "EvalError `behaviour 'bad' returned int; a behaviour "
                   "returns a list of outputs`");
}

/* Nested calls: the inner call's entry comes first (innermost first). */
TEST(call_nested_order)
{
    const char *src = "(behavior inner (list (+ (input) 1)))\n"
                      "(behavior outer (list (call (head (input)) (nth (input) 1))))\n"
                      "(main (let ((i (createObj `inner`)) (o (createObj `outer`)))"
                      "  (call o (list i 10))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "11");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `inner`\n"
                   "1 ObjectCreated #obj`obj-1` `outer`\n"
                   "2 ObjectCalled #obj`obj-0` 10 -> 11\n"
                   "3 ObjectCalled #obj`obj-1` (#obj`obj-0` 10) -> 11");
}

/* receive ---------------------------------------------------------------------- */

/* Strict: the specification's placeholder returns the current input and logs
 * MessageReceived (self, input). */
TEST(receive_strict)
{
    conf_result *r = conf_run("(main (receive))", CONF_STRICT);
    CHECK_RESULT(r, "``");
    CHECK_TRACE(r, "0 MessageReceived #obj`root/orchestrator` ``");
    r = conf_run("(behavior rx (list (receive)))\n(main (call (createObj `rx`) 9))",
                 CONF_STRICT);
    CHECK_RESULT(r, "9");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `rx`\n"
                   "1 MessageReceived #obj`obj-0` 9\n"
                   "2 ObjectCalled #obj`obj-0` 9 -> 9");
}

/* Default (decision 6): receive waits for a message in self's mailbox; the embedded
 * node has none, so the execution blocks (it is not an error) on self. */
TEST(receive_default_blocks)
{
    avm_embedded e;
    REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
    avm_module *m = conf_compile("t.avm", "(behavior rx (list (receive)))\n"
                                          "(main (call (createObj `rx`) 9))");
    REQUIRE(m != NULL);
    avm_exec_config cfg = conf_config(CONF_DEFAULT);
    avm_exec *x = NULL;
    char msg[256];
    REQUIRE(avm_embedded_run(&e, m, -1, &cfg, &x, msg, sizeof(msg)) == 0);
    CHECK_INT(avm_exec_status(x), AVM_RUN_BLOCKED);
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, avm_exec_blocked_on(x));
    CHECK_Q("blocked on", avm_buf_cstr(&b), "#obj`node1/1`");
    avm_buf_free(&b);
    conf_result *r = malloc(sizeof(*r));
    REQUIRE(r != NULL);
    conf_capture(&e, x, r);
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `rx`");
    /* Running again without a message leaves it blocked. */
    CHECK_INT(avm_exec_run(x, 0), AVM_RUN_BLOCKED);
    free(r);
    avm_exec_free(x);
    avm_module_release(m);
    avm_embedded_close(&e);
}

TEST_MAIN(T(create_outside_tx), T(create_with_controller), T(create_in_tx_commit),
          T(create_in_tx_abort), T(create_in_tx_other_controller),
          T(create_unknown_behavior), T(destroy_outside_tx),
          T(destroy_outside_tx_no_controller), T(destroy_not_found), T(destroy_in_tx),
          T(destroy_in_tx_abort), T(destroy_in_tx_cross_controller),
          T(destroy_in_tx_no_controller), T(destroy_in_tx_resolved_no_controller),
          T(destroy_pending_create), T(destroy_twice_in_tx), T(call_outside_tx),
          T(call_no_output), T(call_context), T(call_not_found),
          T(call_in_tx_resolves_controller), T(call_in_tx_cross_controller),
          T(call_in_tx_cross_controller_after_resolution), T(call_in_tx_no_controller),
          T(call_pending_create), T(call_behavior_returns_non_list), T(call_nested_order),
          T(receive_strict), T(receive_default_blocks))
