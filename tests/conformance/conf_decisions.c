/* The decisions of DESIGN.md section 3, each in default mode and, where the literal
 * specification differs, the contrasting strict-mode behaviour. (Decision 5, label
 * as a choice point, waits for the FD layer: conf_fd_nondet.c; decision 6, receive,
 * is in conf_obj.c; decision 7, pure functions as registered code, in conf_pure.c;
 * decision 8, load-time safety, in conf_unsafe.c.) */
#include "conf.h"
#include "test.h"

#define BEHAVIORS                                                                        \
    "(behavior echo (list (input)))\n"                                                   \
    "(behavior push (let ((s (getState))) (setState (cons (input) s))"                   \
    "  (list (getState))))\n"                                                            \
    "(behavior peek (list (getState)))\n"                                                \
    "(behavior where (list (getCurrentMachine)))\n"

/* Runs a program on a fresh node in slices: first until its trace holds n entries,
 * capturing the store then into *mid, then to its end into *end. */
static void run_sliced(const char *src, int flags, size_t n, conf_result *mid,
                       conf_result *end)
{
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0)
        exit(2);
    if (flags & CONF_WIDE)
        conf_widen(&e);
    avm_exec *x = conf_start(&e, src, flags);
    if (x == NULL)
        exit(2);
    conf_run_until_events(x, n);
    conf_capture(&e, x, mid);
    avm_exec_run(x, 0);
    conf_capture(&e, x, end);
    avm_exec_free(x);
    avm_embedded_close(&e);
}

static conf_result *new_result(void)
{
    conf_result *r = calloc(1, sizeof(*r));
    if (r == NULL)
        exit(2);
    return r;
}

/* 1. Read your own writes ------------------------------------------------------- */

/* getState inside a transaction sees the transaction's pending setState (strict:
 * the committed state). */
TEST(d1_get_state)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)) (a (call o 1))"
        "  (b (call o 2)) (p (call (createObj `peek`) 0))) (list a b (commitTx t))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "((1) (2 1) #t)");
    CHECK_RESULT(conf_run(src, CONF_STRICT), "(() () #t)");
}

/* call sees the transaction's own creates and destroys: a destroyed object cannot be
 * called (strict: it is still in the store and is called). */
TEST(d1_call)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx))) (destroyObj o)"
        "  (call o 1)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "ObjError.ErrObjectAlreadyDestroyed #obj`node1/1`");
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "1");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectDestroyed #obj`obj-0` [#ctl`main`]\n"
                   "3 ObjectCalled #obj`obj-0` 1 -> 1 [#ctl`main`]");
}

/* reflect sees a pending create and a pending transfer (strict: the committed
 * metadata only). */
TEST(d1_reflect)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)) (c "
                  "(createObj `echo`)))"
                  "  (transferObject o #ctl`aux`)"
                  "  (list (get (reflect o) 'currentController) (reflect c))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_UNSAFE | CONF_WIDE),
                 "(#ctl`aux` ((`objectId` #obj`node1/3`) (`machine` #mach`node1`) "
                 "(`creatingController` #ctl`main`) (`currentController` #ctl`main`)))");
    CHECK_RESULT(conf_run(src, CONF_STRICT | CONF_UNSAFE | CONF_WIDE),
                 "(#ctl`main` nil)");
}

/* getController sees a pending transfer (both modes: lookupPendingTransfer) and a
 * pending create's controller (strict: the create has none, and resolving the
 * transaction from it fails). */
TEST(d1_get_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t (beginTx)))"
                  "  (transferObject o #ctl`aux`) (getController o)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f | CONF_WIDE), "#ctl`aux`");
    src =
        BEHAVIORS "(main (let ((t (beginTx)) (c (createObj `echo`))) (getController c)))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "#ctl`main`");
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-1`");
}

/* 2. Nested transactions are savepoints -------------------------------------------- */

/* A child commit merges into the parent: the store does not change until the
 * outermost commit. */
TEST(d2_child_commit_merges)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t1 (beginTx)) (a (call o 1))"
        "  (t2 (beginTx)) (b (call o 2)) (c (commitTx t2)) (d (call o 3)))"
        "  (list a b c d (commitTx t1))))";
    conf_result *mid = new_result(), *end = new_result();
    run_sliced(src, CONF_DEFAULT, 6, mid, end);
    CHECK_TRACE(mid, "0 ObjectCreated #obj`node1/1` `push`\n"
                     "1 TransactionStarted #tx`node1/t2`\n"
                     "2 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                     "3 TransactionStarted #tx`node1/t3` [#ctl`main`]\n"
                     "4 ObjectCalled #obj`node1/1` 2 -> (2 1) [#ctl`main`]\n"
                     "5 TransactionCommitted #tx`node1/t3` [#ctl`main`]");
    CHECK_STORE(mid, "#obj`node1/1` `push` machine=#mach`node1` creating=#ctl`main` "
                     "current=#ctl`main` state=()");
    CHECK_RESULT(end, "((1) (2 1) #t (3 2 1) #t)");
    CHECK_STORE(end, "#obj`node1/1` `push` machine=#mach`node1` creating=#ctl`main` "
                     "current=#ctl`main` state=(3 2 1)");
    CHECK_TRACE(end, "0 ObjectCreated #obj`node1/1` `push`\n"
                     "1 TransactionStarted #tx`node1/t2`\n"
                     "2 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                     "3 TransactionStarted #tx`node1/t3` [#ctl`main`]\n"
                     "4 ObjectCalled #obj`node1/1` 2 -> (2 1) [#ctl`main`]\n"
                     "5 TransactionCommitted #tx`node1/t3` [#ctl`main`]\n"
                     "6 ObjectCalled #obj`node1/1` 3 -> (3 2 1) [#ctl`main`]\n"
                     "7 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
    /* Strict: the inner beginTx replaced the outer transaction; its commit is the
     * real one (the pending states survive the literal beginTx) and the outer id is
     * gone. */
    run_sliced(src, CONF_STRICT, 6, mid, end);
    CHECK_STORE(mid, "#obj`obj-0` `push` machine=#mach`node1` creating=#ctl`main` "
                     "current=#ctl`main` state=(2)");
    CHECK_ERROR(end, "TxError.ErrNoActiveTx");
    free(mid);
    free(end);
}

/* A child abort restores the parent's overlay exactly: its writes, creates,
 * destroys, states and transfers are gone, the parent's are intact. (Reads stay in
 * the read set: what the child read may have steered the parent.) */
TEST(d2_child_abort_restores)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (d (createObj `echo` #ctl`main`))"
        "  (t1 (beginTx)) (a (call o 1)) (before (reifyTxState))"
        "  (t2 (beginTx)) (b (call o 2)) (x (createObj `echo`)) (y (destroyObj d))"
        "  (z (transferObject o #ctl`aux`)) (ab (abortTx t2)) (after (reifyTxState)))"
        "  (list (= (get before 'writes) (get after 'writes))"
        "        (= (get before 'creates) (get after 'creates))"
        "        (= (get before 'destroys) (get after 'destroys))"
        "        (get after 'observed) (getController o) (call (createObj `peek`) 0)"
        "        (call o 0) (commitTx t1))))";
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_UNSAFE | CONF_WIDE);
    CHECK_RESULT(r, "(#t #t #t (#obj`node1/1` #obj`node1/2`) #ctl`main` () (0 1) #t)");
    CHECK_STORE(r, "#obj`node1/1` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(0 1)\n"
                   "#obj`node1/2` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()\n"
                   "#obj`node1/6` `peek` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
    /* Strict: the literal abortTx ends the whole transaction; the parent's commit
     * then has no transaction. */
    CHECK_ERROR(conf_run(BEHAVIORS
                         "(main (let ((o (createObj `push` #ctl`main`)) (t1 (beginTx))"
                         "  (a (call o 1)) (t2 (beginTx))) (abortTx t2) (commitTx t1)))",
                         CONF_STRICT),
                "TxError.ErrNoActiveTx");
}

/* A child that destroys an object its parent created, then aborts: the parent's
 * create is back. */
TEST(d2_child_abort_restores_parent_create)
{
    const char *src =
        BEHAVIORS "(main (let ((t1 (beginTx)) (o (createObj `echo`)) (t2 (beginTx)))"
                  "  (destroyObj o) (abortTx t2) (list (call o 5) (commitTx t1) "
                  "(getController o))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(5 #t #ctl`main`)");
    CHECK_STORE(r, "#obj`node1/2` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
    /* And one that destroys it and commits: the parent commits no object. */
    src = BEHAVIORS "(main (let ((t1 (beginTx)) (o (createObj `echo`)) (t2 (beginTx)))"
                    "  (destroyObj o) (commitTx t2) (commitTx t1) (getController o)))";
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "nil");
    CHECK_STORE(r, "");
}

/* A child abort restores the parent's controller resolution too: the parent was
 * still deferred. */
TEST(d2_child_abort_restores_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo` #ctl`main`)) (t1 (beginTx)) (t2 (beginTx)))"
        "  (call o 1) (let ((in (getCurrentController))) (abortTx t2)"
        "  (list in (getCurrentController)))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(#ctl`main` nil)");
}

/* A nested transaction under another controller is refused (one transaction, one
 * controller). */
TEST(d2_nested_other_controller)
{
    const char *src = "(main (beginTx #ctl`main`) (beginTx #ctl`aux`))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "TxError.ErrInvalidDuringTx `beginTx: a nested transaction under "
                "controller \\`aux\\` inside a transaction of controller \\`main\\``");
    /* Strict: the literal beginTx just starts afresh under aux. */
    CHECK_RESULT(conf_run(src, CONF_STRICT | CONF_WIDE), "#tx`1`");
}

/* 3. commitTx returns false on a conflict; misuse is an error ------------------------ */

TEST(d3_conflict_returns_false)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)) (v (call o 1)))"
        "  (list (commitTx t) (getCurrentController) (call o 2))))";
    avm_embedded e;
    REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
    avm_exec *x = conf_start(&e, src, CONF_DEFAULT);
    REQUIRE(x != NULL);
    CHECK_INT(conf_run_until_events(x, 3), AVM_RUN_YIELD);
    avm_val oid;
    REQUIRE(avm_cstr(AVM_OBJID, "node1/1", &oid) == 0);
    CHECK(avm_memstore_touch(e.store, oid));
    avm_val_release(oid);
    avm_exec_run(x, 0);
    conf_result *r = new_result();
    conf_capture(&e, x, r);
    CHECK_RESULT(r, "(#f nil (2))");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `push`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectCalled #obj`node1/1` 1 -> (1) [#ctl`main`]\n"
                   "3 ErrorOccurred TxError.ErrTxConflict #tx`node1/t2` [#ctl`main`]\n"
                   "4 TransactionAborted #tx`node1/t2` [#ctl`main`]\n"
                   "5 ObjectCalled #obj`node1/1` 2 -> (2)");
    free(r);
    avm_exec_free(x);
    avm_embedded_close(&e);
}

TEST(d3_misuse)
{
    static const struct {
        const char *src, *strict, *dflt;
    } cases[] = {
        {"(main (commitTx #tx`x`))", "TxError.ErrNoActiveTx", "TxError.ErrNoActiveTx"},
        {"(main (beginTx) (commitTx #tx`x`))", "TxError.ErrTxConflict #tx`x`",
         "TxError.ErrTxNotFound #tx`x`"},
        {"(main (let ((t (beginTx))) (commitTx t) (beginTx) (commitTx t)))",
         "TxError.ErrTxConflict #tx`0`", "TxError.ErrTxAlreadyCommitted #tx`node1/t1`"},
        {"(main (let ((t (beginTx))) (abortTx t) (beginTx) (abortTx t) (commitTx t)))",
         "TxError.ErrNoActiveTx", "TxError.ErrTxAlreadyAborted #tx`node1/t1`"},
        {"(main (abortTx #tx`x`))", NULL, "TxError.ErrNoActiveTx"},
        {"(main (beginTx) (abortTx #tx`x`))", NULL, "TxError.ErrTxNotFound #tx`x`"},
        /* The parent while a child is open. */
        {"(main (let ((t1 (beginTx)) (t2 (beginTx))) (commitTx t1)))",
         "TxError.ErrTxConflict #tx`0`",
         "TxError.ErrInvalidDuringTx `commitTx: a nested transaction inside it is still "
         "open`"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_ERROR(conf_run(cases[i].src, CONF_DEFAULT), cases[i].dflt);
        conf_result *r = conf_run(cases[i].src, CONF_STRICT);
        if (cases[i].strict)
            CHECK_ERROR(r, cases[i].strict);
        else
            CHECK_INT(r->status, AVM_RUN_DONE);
    }
}

/* A behaviour cannot commit or abort its caller's transaction (decision 11);
 * strict: it can. */
TEST(d3_behavior_commits_callers_tx)
{
    const char *src = BEHAVIORS
        "(behavior committer (list (commitTx (input))))\n"
        "(main (let ((c (createObj `committer` #ctl`main`)) (t (beginTx #ctl`main`)))"
        "  (call c t)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "TxError.ErrInvalidDuringTx `commitTx: the transaction was begun by a "
                "calling frame`");
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `committer`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 TransactionCommitted #tx`1` [#ctl`main`]\n"
                   "3 ObjectCalled #obj`obj-0` #tx`1` -> #t");
    src = BEHAVIORS
        "(behavior aborter (list (abortTx (input))))\n"
        "(main (let ((c (createObj `aborter` #ctl`main`)) (t (beginTx #ctl`main`)))"
        "  (call c t)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "TxError.ErrInvalidDuringTx `abortTx: the transaction was begun by a "
                "calling frame`");
    CHECK_RESULT(conf_run(src, CONF_STRICT), "nil");
}

/* 4. Deferred controller resolved at a create ---------------------------------------- */

TEST(d4_deferred_controller)
{
    const char *src = BEHAVIORS
        "(main (let ((t (beginTx)) (a (getCurrentController)) (o (createObj `echo`)))"
        "  (list a (getCurrentController) (commitTx t) (getController o))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(nil #ctl`main` #t #ctl`main`)");
    CHECK_RESULT(conf_run(src, CONF_STRICT), "(nil nil #t nil)");
    /* An explicit controller resolves a deferred transaction to it. */
    src = BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo` #ctl`aux`)))"
                    "  (list (getCurrentController) (commitTx t) (getController o))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE), "(#ctl`aux` #t #ctl`aux`)");
    CHECK_RESULT(conf_run(src, CONF_STRICT | CONF_WIDE), "(nil #t #ctl`aux`)");
    /* A create under another controller than the resolved one is refused. */
    src = BEHAVIORS "(main (beginTx #ctl`main`) (createObj `echo` #ctl`aux`))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/2` #ctl`aux`");
    /* Outside transactions createObj name nothing has no controller, as the spec
     * says. */
    src = BEHAVIORS "(main (getController (createObj `echo`)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "nil");
}

/* Then the transactional calls that fail in strict mode work (the spec's battleship
 * game, in small). */
TEST(d4_then_transactional_call)
{
    const char *src = BEHAVIORS
        "(main (let ((t (beginTx)) (o (createObj `echo`)))"
        "  (commitTx t) (let ((t2 (beginTx))) (list (call o 1) (commitTx t2)))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(1 #t)");
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-1`");
}

/* 9. Identifiers are node-prefixed ------------------------------------------------ */

TEST(d9_identifiers)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `echo`)) (t (beginTx)) (c (createObj `echo`)))"
        "  (commitTx t) (list o t c)))";
    avm_embedded e;
    REQUIRE(avm_embedded_init(&e, "alpha", "main") == 0);
    conf_result *r = new_result();
    conf_run_on(&e, src, NULL, CONF_DEFAULT, r);
    CHECK_RESULT(r, "(#obj`alpha/1` #tx`alpha/t2` #obj`alpha/3`)");
    /* A second execution on the same node never reuses an identifier. */
    conf_run_on(&e, src, NULL, CONF_DEFAULT, r);
    CHECK_RESULT(r, "(#obj`alpha/4` #tx`alpha/t5` #obj`alpha/6`)");
    CHECK_INT(avm_memstore_count(e.store), 4);
    avm_embedded_close(&e);
    /* Strict: the specification's freshObjectId is the event counter, which starts
     * at 0 in every execution: a second execution on the same store reuses obj-0,
     * and createWithMeta overwrites the first one's object. */
    REQUIRE(avm_embedded_init(&e, "alpha", "main") == 0);
    conf_run_on(&e, src, NULL, CONF_STRICT, r);
    CHECK_RESULT(r, "(#obj`obj-0` #tx`1` #obj`obj-2`)");
    conf_run_on(&e, src, NULL, CONF_STRICT, r);
    CHECK_RESULT(r, "(#obj`obj-0` #tx`1` #obj`obj-2`)");
    CHECK_INT(avm_memstore_count(e.store), 2);
    avm_embedded_close(&e);
    free(r);
}

/* 10. A call restores the caller's machine ---------------------------------------- */

/* On a node that reaches node2: the behaviour runs on its object's machine; after
 * the call the caller is back on its own (strict: it stays on the callee's). */
TEST(d10_call_restores_machine)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `where`))) (moveObject o #mach`node2`)"
                  "  (let ((inside (call o 0))) (list inside (getCurrentMachine)"
                  "  (getMachine (createObj `echo`))))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                 "(#mach`node2` #mach`node1` #mach`node1`)");
    CHECK_RESULT(conf_run(src, CONF_STRICT | CONF_WIDE),
                 "(#mach`node2` #mach`node2` #mach`node2`)");
    /* On the embedded node every object is on node1 (moveObject and teleport can
     * reach no other machine), so the modes cannot be told apart there. */
    src = BEHAVIORS
        "(main (let ((o (createObj `where`))) (list (call o 0) (getCurrentMachine))))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "(#mach`node1` #mach`node1`)");
}

/* 11. Transactions are scoped to the frame that began them ----------------------------
 */

/* The entry program ends with its transaction open: aborted, TransactionAborted
 * logged, nothing applied (strict: left open, nothing applied and nothing logged). */
TEST(d11_main_ends_with_open_tx)
{
    const char *src = BEHAVIORS "(main (beginTx) (createObj `echo`))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "#obj`node1/2`");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `echo` [#ctl`main`]\n"
                   "2 TransactionAborted #tx`node1/t1` [#ctl`main`]");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_STRICT);
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`");
    CHECK_STORE(r, "");
}

/* A behaviour returns with the transaction it began still open: aborted before the
 * call's ObjectCalled entry. Strict: it stays open in the caller, who can commit
 * it. */
TEST(d11_behavior_ends_with_open_tx)
{
    const char *src =
        BEHAVIORS "(behavior opener (let ((t (beginTx))) (createObj `echo`) (list t)))\n"
                  "(main (let ((o (createObj `opener`)) (t (call o 0))) (list "
                  "(getCurrentController)"
                  "  (commitTx t))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "TxError.ErrNoActiveTx");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `opener`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectCreated #obj`node1/3` `echo` [#ctl`main`]\n"
                   "3 TransactionAborted #tx`node1/t2` [#ctl`main`]\n"
                   "4 ObjectCalled #obj`node1/1` 0 -> #tx`node1/t2`\n"
                   "5 ErrorOccurred TxError.ErrNoActiveTx");
    r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(nil #t)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `opener`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectCreated #obj`obj-2` `echo`\n"
                   "3 ObjectCalled #obj`obj-0` 0 -> #tx`1`\n"
                   "4 TransactionCommitted #tx`1`");
    CHECK_STORE(r, "#obj`obj-0` `opener` machine=#mach`node1` creating=nil current=nil "
                   "state=()\n"
                   "#obj`obj-2` `echo` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
}

/* A behaviour's own transaction inside its caller's: a child, which it commits into
 * the caller's transaction. */
TEST(d11_behavior_nested_tx)
{
    const char *src = BEHAVIORS
        "(behavior inner (let ((t (beginTx))) (setState (list (input))) (list (commitTx "
        "t))))\n"
        "(main (let ((o (createObj `inner` #ctl`main`)) (t (beginTx))) (call o 7)"
        "  (list (call (createObj `peek`) 0) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "(() #t)");
    CHECK_STORE(r, "#obj`node1/1` `inner` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(7)\n"
                   "#obj`node1/4` `peek` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

/* 12. Destroy removes the state; a pending write to a destroyed object is dropped --- */

TEST(d12_destroy_drops_pending_write)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (a (call o 1)) (t (beginTx)))"
        "  (call o 2) (destroyObj o) (list (commitTx t) (getController o))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#t nil)");
        CHECK_STORE(r, "");
    }
    /* An object that destroys itself and then writes its state. */
    src = "(behavior doomed (do (destroyObj (self)) (setState (list 9)) (list "
          "(getState))))\n"
          "(main (let ((o (createObj `doomed` #ctl`main`)) (t (beginTx)))"
          "  (list (call o 0) (commitTx t) (getState))))";
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "((9) #t ())");
    CHECK_STORE(r, "");
    r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(() #t ())");
    CHECK_STORE(r, "");
}

/* Outside transactions the destroy takes the state with it. */
TEST(d12_destroy_outside_tx)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`))) (call o 1) (destroyObj o)"
        "  (list (getController o) (getMachine o))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(nil nil)");
        CHECK_STORE(r, "");
    }
}

/* The top-level program's state is kept for its own getState (it has no object). */
TEST(d12_toplevel_state)
{
    const char *src = "(main (setState (list 1 2)) (let ((t (beginTx)))"
                      "  (setState (cons 0 (getState))) (commitTx t)) (getState))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "(0 1 2)");
    CHECK_RESULT(conf_run(src, CONF_STRICT), "(0 1 2)");
}

TEST_MAIN(T(d1_get_state), T(d1_call), T(d1_reflect), T(d1_get_controller),
          T(d2_child_commit_merges), T(d2_child_abort_restores),
          T(d2_child_abort_restores_parent_create), T(d2_child_abort_restores_controller),
          T(d2_nested_other_controller), T(d3_conflict_returns_false), T(d3_misuse),
          T(d3_behavior_commits_callers_tx), T(d4_deferred_controller),
          T(d4_then_transactional_call), T(d9_identifiers), T(d10_call_restores_machine),
          T(d11_main_ends_with_open_tx), T(d11_behavior_ends_with_open_tx),
          T(d11_behavior_nested_tx), T(d12_destroy_drops_pending_write),
          T(d12_destroy_outside_tx), T(d12_toplevel_state))
