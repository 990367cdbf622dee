/* Introspect family (self, input, getCurrentMachine, getState, setState, sender):
 * executeIntrospect never fails in the specification; these are its success paths,
 * in and out of transactions, in both modes. None of them logs an entry. */
#include "conf.h"
#include "test.h"

#define BEHAVIORS                                                                        \
    "(behavior ctx (list (list (self) (input) (sender) (getCurrentMachine))))\n"         \
    "(behavior push (let ((s (getState))) (setState (cons (input) s))"                   \
    "  (list (getState))))\n"                                                            \
    "(behavior peek (list (getState)))\n"

/* The top-level frame is the runners' orchestrator: self #obj"root/orchestrator",
 * input "", sender nothing, on this machine. */
TEST(toplevel_context)
{
    const char *src = "(main (list (self) (input) (sender) (getCurrentMachine)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#obj`root/orchestrator` `` nil #mach`node1`)");
        CHECK_TRACE(r, "");
        CHECK_INT(r->counter, 0);
    }
}

/* handleCall's objectContext: self = oid, input = inp, sender = just caller,
 * machineId = the object's machine. */
TEST(behavior_context)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `ctx`))) (list o (call o (list 1 2)))))";
    CHECK_RESULT(
        conf_run(src, CONF_STRICT),
        "(#obj`obj-0` (#obj`obj-0` (1 2) #obj`root/orchestrator` #mach`node1`))");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT),
                 "(#obj`node1/1` (#obj`node1/1` (1 2) #obj`root/orchestrator` "
                 "#mach`node1`))");
}

/* A call from a behaviour: the sender is the calling object; after the call the
 * caller's self, input and sender are back. */
TEST(sender_is_calling_object)
{
    const char *src = BEHAVIORS
        "(behavior relay (let ((r (call (input) `hi`))) (list (list r (self) (input)"
        "  (sender)))))\n"
        "(main (let ((c (createObj `ctx`)) (r (createObj `relay`))) (call r c)))";
    CHECK_RESULT(conf_run(src, CONF_STRICT),
                 "((#obj`obj-0` `hi` #obj`obj-1` #mach`node1`) #obj`obj-1` #obj`obj-0` "
                 "#obj`root/orchestrator`)");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT),
                 "((#obj`node1/1` `hi` #obj`node1/2` #mach`node1`) #obj`node1/2` "
                 "#obj`node1/1` #obj`root/orchestrator`)");
}

/* getState of a new object is []; setState outside a transaction updates at once. */
TEST(state_outside_tx)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `push`))) (list (call o 1) (call o 2)"
                  "  (call (createObj `peek`) 0))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "((1) (2 1) ())");
    CHECK_STORE(r, "#obj`obj-0` `push` machine=#mach`node1` creating=nil current=nil "
                   "state=(2 1)\n"
                   "#obj`obj-3` `peek` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "((1) (2 1) ())");
    CHECK_STORE(r, "#obj`node1/1` `push` machine=#mach`node1` creating=nil current=nil "
                   "state=(2 1)\n"
                   "#obj`node1/2` `peek` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
}

/* setState inside a transaction is pending (pendingStates) until the commit.
 * Strict: getState reads the committed state (lookupState), so the transaction does
 * not see its own write and the second push overwrites the first. Default (decision
 * 1): the transaction reads its own writes. */
TEST(state_in_tx)
{
    const char *src = BEHAVIORS
        "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)) (a (call o 1))"
        "  (b (call o 2))) (commitTx t) (list a b (call o 3))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(() () (3 2))");
    CHECK_STORE(r, "#obj`obj-0` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(3 2)");
    r = conf_run(src, CONF_DEFAULT);
    CHECK_RESULT(r, "((1) (2 1) (3 2 1))");
    CHECK_STORE(r, "#obj`node1/1` `push` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(3 2 1)");
}

/* An aborted transaction's setState never reaches the store. */
TEST(state_in_tx_abort)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `push` #ctl`main`)) (t (beginTx)))"
                  "  (call o 1) (abortTx t) (call (createObj `peek`) 0) (call o 5)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(5)");
    }
}

/* The top-level program has no object record; the specification's StateStore is
 * total, so its setState is kept for its own getState: outside a transaction at
 * once, inside one at the commit (and not before in strict mode). */
TEST(toplevel_state)
{
    const char *src = "(main (let ((a (getState))) (setState (list 0))"
                      "  (list a (getState))))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "(() (0))");
    src = "(main (setState (list 0)) (let ((t (beginTx))) (setState (list 1))"
          "  (let ((in (getState))) (commitTx t) (list in (getState)))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT), "((0) (1))");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "((1) (1))");
    src = "(main (setState (list 0)) (let ((t (beginTx))) (setState (list 1))"
          "  (abortTx t) (getState)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "(0)");
}

/* Not a specification error (setState takes a List Val): a non-list state is the
 * program's fault. */
TEST(set_state_non_list)
{
    CHECK_ERROR(conf_run("(main (setState 5))", CONF_STRICT),
                "EvalError `setState expects list, got int`");
}

TEST_MAIN(T(toplevel_context), T(behavior_context), T(sender_is_calling_object),
          T(state_outside_tx), T(state_in_tx), T(state_in_tx_abort), T(toplevel_state),
          T(set_state_non_list))
