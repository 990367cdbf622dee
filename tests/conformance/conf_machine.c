/* Machine family (getMachine, teleport, moveObject, fetch): executeMachine's success
 * paths and error cases, in both modes. The embedded node reaches only #mach"node1";
 * a widened node (conf_widen) reaches #mach"node2" too, so that placement changes can
 * be seen. */
#include "conf.h"
#include "test.h"

#define BEHAVIORS "(behavior echo (list (input)))\n"

/* getMachine ------------------------------------------------------------------- */

TEST(get_machine)
{
    const char *src = BEHAVIORS "(main (let ((o (createObj `echo`))) (list (getMachine "
                                "o) (getMachine #obj`ghost`))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#mach`node1` nil)");
        CHECK_INT(r->counter, 1); /* only the create is logged */
    }
}

/* lookupPendingCreate first: a pending create has its machine. */
TEST(get_machine_pending_create)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (getMachine o)))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "#mach`node1`");
}

/* teleport --------------------------------------------------------------------- */

/* ExecutionMoved (to, from); the execution's machine changes. */
TEST(teleport)
{
    const char *src = "(main (list (teleport #mach`node1`) (getCurrentMachine)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#t #mach`node1`)");
        CHECK_TRACE(r, "0 ExecutionMoved #mach`node1` #mach`node1`");
    }
    /* On a node that reaches node2, objects created after the move are placed there. */
    src = BEHAVIORS "(main (list (teleport #mach`node2`) (getCurrentMachine)"
                    "  (getMachine (createObj `echo`))))";
    conf_result *r = conf_run(src, CONF_STRICT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #mach`node2` #mach`node2`)");
    CHECK_TRACE(r, "0 ExecutionMoved #mach`node2` #mach`node1`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`");
    CHECK_STORE(r, "#obj`obj-1` `echo` machine=#mach`node2` creating=nil current=nil "
                   "state=()");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                 "(#t #mach`node2` #mach`node2`)");
}

/* Safety invariant: teleport fails inside a transaction (checked before the
 * reachability of the target). */
TEST(teleport_in_tx)
{
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run("(main (beginTx) (teleport #mach`node1`))", f),
                    "TxError.ErrInvalidDuringTx `teleport`");
        CHECK_ERROR(conf_run("(main (beginTx) (teleport #mach`node9`))", f),
                    "TxError.ErrInvalidDuringTx `teleport`");
    }
    CHECK_TRACE(conf_run("(main (beginTx) (teleport #mach`node1`))", CONF_DEFAULT),
                "0 TransactionStarted #tx`node1/t1`\n"
                "1 ErrorOccurred TxError.ErrInvalidDuringTx `teleport`");
}

TEST(teleport_unreachable)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run("(main (teleport #mach`node2`))", f),
                    "MachineError.ErrMachineUnreachable #mach`node2`");
}

/* moveObject ------------------------------------------------------------------- */

TEST(move_object)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`))) (moveObject o #mach`node1`)))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "#t");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectMoved #obj`obj-0` #mach`node1` #mach`node1`");
    src =
        BEHAVIORS "(main (let ((o (createObj `echo`))) (list (moveObject o #mach`node2`)"
                  "  (getMachine o))))";
    for (int f = 0; f < 2; f++) {
        r = conf_run(src, f | CONF_WIDE);
        CHECK_RESULT(r, "(#t #mach`node2`)");
        CHECK_Q("store", strstr(r->store, "machine=") ? strstr(r->store, "machine=") : "",
                "machine=#mach`node2` creating=nil current=nil state=()");
    }
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n" /* the strict run (last) */
                   "1 ObjectMoved #obj`obj-0` #mach`node1` #mach`node2`");
}

/* lookupObjectWithMeta first, then isReachableMachine. */
TEST(move_object_not_found)
{
    for (int f = 0; f < 2; f++) {
        CHECK_ERROR(conf_run("(main (moveObject #obj`ghost` #mach`node1`))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
        CHECK_ERROR(conf_run("(main (moveObject #obj`ghost` #mach`node9`))", f),
                    "ObjError.ErrObjectNotFound #obj`ghost`");
    }
}

TEST(move_object_unreachable)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`))) (moveObject o #mach`node2`)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT),
                "MachineError.ErrMachineUnreachable #mach`node2`");
    CHECK_ERROR(conf_run(src, CONF_DEFAULT),
                "MachineError.ErrMachineUnreachable #mach`node2`");
}

/* A pending create. Strict: lookupObjectWithMeta is the committed store, not found.
 * Default (decision 1): the transaction sees its own create and places it. */
TEST(move_object_pending_create)
{
    const char *src = BEHAVIORS
        "(main (let ((t (beginTx)) (o (createObj `echo`))) (moveObject o #mach`node2`)"
        "  (commitTx t) (getMachine o)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT | CONF_WIDE),
                "ObjError.ErrObjectNotFound #obj`obj-1`");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE), "#mach`node2`");
}

/* Placement is not transactional state in the specification (updateMeta at once):
 * an aborted transaction keeps the move. */
TEST(move_object_in_tx_is_immediate)
{
    const char *src = BEHAVIORS "(main (let ((o (createObj `echo` #ctl`main`)) (t "
                                "(beginTx))) (moveObject o #mach`node2`)"
                                "  (abortTx t) (getMachine o)))";
    conf_result *r = conf_run(src, CONF_STRICT | CONF_WIDE);
    CHECK_RESULT(r, "#mach`node2`");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 TransactionStarted #tx`1`\n"
                   "2 ObjectMoved #obj`obj-0` #mach`node1` #mach`node2`\n"
                   "3 TransactionAborted #tx`1`");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE), "#mach`node2`");
}

/* fetch ------------------------------------------------------------------------ */

/* A replica to the local machine: the object's machine becomes this one. */
TEST(fetch)
{
    const char *src =
        BEHAVIORS "(main (let ((o (createObj `echo`))) (list (fetch o) (getMachine o))))";
    conf_result *r = conf_run(src, CONF_STRICT);
    CHECK_RESULT(r, "(#t #mach`node1`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectFetched #obj`obj-0` #mach`node1`");
    src = BEHAVIORS "(main (let ((o (createObj `echo`))) (moveObject o #mach`node2`)"
                    "  (list (getMachine o) (fetch o) (getMachine o))))";
    for (int f = 0; f < 2; f++) {
        r = conf_run(src, f | CONF_WIDE);
        CHECK_RESULT(r, "(#mach`node2` #t #mach`node1`)");
    }
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n" /* the strict run (last) */
                   "1 ObjectMoved #obj`obj-0` #mach`node1` #mach`node2`\n"
                   "2 ObjectFetched #obj`obj-0` #mach`node1`");
}

/* An unknown object: false, nothing logged. */
TEST(fetch_unknown)
{
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run("(main (fetch #obj`ghost`))", f);
        CHECK_RESULT(r, "#f");
        CHECK_TRACE(r, "");
    }
}

/* A pending create: strict false (committed store only); default true. */
TEST(fetch_pending_create)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx)) (o (createObj `echo`))) (fetch o)))";
    CHECK_RESULT(conf_run(src, CONF_STRICT), "#f");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT), "#t");
}

TEST_MAIN(T(get_machine), T(get_machine_pending_create), T(teleport), T(teleport_in_tx),
          T(teleport_unreachable), T(move_object), T(move_object_not_found),
          T(move_object_unreachable), T(move_object_pending_create),
          T(move_object_in_tx_is_immediate), T(fetch), T(fetch_unknown),
          T(fetch_pending_create))
