/* Reflect (reflect, scryMeta, scryDeep; unsafe) and Reify (reifyContext; unsafe
 * reifyTxState, reifyConstraints). The specification's executeReflect and
 * executeReify never fail and log nothing: these are their results, in both modes,
 * with the grant. (Load-time refusal without the grant: conf_unsafe.c.) */
#include "conf.h"
#include "test.h"

#define U CONF_UNSAFE

#define BEHAVIORS                                                                        \
    "(behavior echo (list (input)))\n"                                                   \
    "(pure has-ctl (meta) (not (nil? (get meta 'currentController))))\n"                 \
    "(defun any-echo (beh meta) (= beh `echo`))\n"

#define META(o, c)                                                                       \
    "((`objectId` " o ") (`machine` #mach`node1`) (`creatingController` " c              \
    ") (`currentController` " c "))"

/* The expected metadata is built with META inside string concatenations, which
 * clang-format cannot lay out: keep these as written. */
/* clang-format off */

/* reflect: Store.metadata as an association list; nothing for an unknown object. */
TEST(reflect)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (b (createObj `echo`)))"
        "  (list (reflect a) (reflect b) (reflect #obj`ghost`))))";
    conf_result *r = conf_run(src, CONF_STRICT | U);
    CHECK_RESULT(r, "(" META("#obj`obj-0`", "#ctl`main`") " " META("#obj`obj-1`", "nil")
                    " nil)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`");
    r = conf_run(src, CONF_DEFAULT | U);
    CHECK_RESULT(r, "(" META("#obj`node1/1`", "#ctl`main`") " "
                    META("#obj`node1/2`", "nil") " nil)");
}

/* Inside a transaction. Strict: reflect reads the committed store only, so a
 * pending create is unknown, and it adds nothing to the read set. Default (decision
 * 1): the transaction sees its own create, and reflect is a read. */
TEST(reflect_in_tx)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (t (beginTx))"
        "  (c (createObj `echo` #ctl`main`)))"
        "  (list (reflect c) (reflect a) (get (reifyTxState) 'observed))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT | U),
                 "(nil " META("#obj`obj-0`", "#ctl`main`") " ())");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | U),
                 "(" META("#obj`node1/3`", "#ctl`main`") " "
                 META("#obj`node1/1`", "#ctl`main`") " (#obj`node1/3` #obj`node1/1`))");
}

/* scryMeta pred: (oid meta) of every object whose metadata satisfies pred, in the
 * store's order; scryDeep pred: (oid behaviour meta). */
TEST(scry)
{
    const char *src = BEHAVIORS
        "(behavior other (list))\n"
        "(main (let ((a (createObj `echo` #ctl`main`)) (b (createObj `echo`))"
        "  (c (createObj `other` #ctl`main`)))"
        "  (list (scryMeta has-ctl) (scryDeep any-echo))))";
    conf_result *r = conf_run(src, CONF_STRICT | U);
    CHECK_RESULT(r, "("
                    "((#obj`obj-0` " META("#obj`obj-0`", "#ctl`main`") ") "
                    "(#obj`obj-2` " META("#obj`obj-2`", "#ctl`main`") ")) "
                    "((#obj`obj-0` `echo` " META("#obj`obj-0`", "#ctl`main`") ") "
                    "(#obj`obj-1` `echo` " META("#obj`obj-1`", "nil") ")))");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `echo`\n"
                   "1 ObjectCreated #obj`obj-1` `echo`\n"
                   "2 ObjectCreated #obj`obj-2` `other`");
    r = conf_run(src, CONF_DEFAULT | U);
    CHECK_RESULT(r, "("
                    "((#obj`node1/1` " META("#obj`node1/1`", "#ctl`main`") ") "
                    "(#obj`node1/3` " META("#obj`node1/3`", "#ctl`main`") ")) "
                    "((#obj`node1/1` `echo` " META("#obj`node1/1`", "#ctl`main`") ") "
                    "(#obj`node1/2` `echo` " META("#obj`node1/2`", "nil") ")))");
}

/* clang-format on */

/* allObjectIds is the committed store: strict scry does not see a pending create;
 * default does (decision 1). */
TEST(scry_in_tx)
{
    const char *src = BEHAVIORS "(main (let ((t (beginTx)) (c (createObj `echo`)))"
                                "  (map-ids (scryDeep any-echo))))\n"
                                "(defun map-ids (l) (if (null? l) '() (cons (head (head "
                                "l)) (map-ids (tail l)))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT | U), "()");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | U), "(#obj`node1/2`)");
}

/* reifyContext: self, input, sender, machine, and the transaction's controller or
 * mkControllerId "ambient". */
TEST(reify_context)
{
    const char *src = BEHAVIORS
        "(behavior ctx (list (reifyContext)))\n"
        "(main (let ((o (createObj `ctx` #ctl`main`)) (a (reifyContext)) (b (call o 4))"
        "  (t (beginTx #ctl`main`))) (list a b (get (reifyContext) 'controller))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT),
                 "(((`self` #obj`root/orchestrator`) (`input` ``) (`sender` nil) "
                 "(`machine` #mach`node1`) (`controller` #ctl`ambient`)) "
                 "((`self` #obj`obj-0`) (`input` 4) (`sender` #obj`root/orchestrator`) "
                 "(`machine` #mach`node1`) (`controller` #ctl`ambient`)) #ctl`main`)");
    CHECK_RESULT(conf_run(src, CONF_DEFAULT),
                 "(((`self` #obj`root/orchestrator`) (`input` ``) (`sender` nil) "
                 "(`machine` #mach`node1`) (`controller` #ctl`ambient`)) "
                 "((`self` #obj`node1/1`) (`input` 4) (`sender` #obj`root/orchestrator`) "
                 "(`machine` #mach`node1`) (`controller` #ctl`ambient`)) #ctl`main`)");
}

/* reifyTxState: nothing outside a transaction; inside, the id, the txLog (one
 * (oid input) per transactional call), the pending creates, destroys and the read
 * set (observed). */
TEST(reify_tx_state)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (d (createObj `echo` #ctl`main`))"
        "  (before (reifyTxState)) (t (beginTx)) (c (createObj `echo`)))"
        "  (call a 1) (call c 2) (destroyObj d) (list before (reifyTxState))))";
    CHECK_RESULT(conf_run(src, CONF_STRICT | U),
                 "(nil ((`id` #tx`2`) (`writes` ((#obj`obj-0` 1) (#obj`obj-3` 2))) "
                 "(`creates` (#obj`obj-3`)) (`destroys` (#obj`obj-1`)) "
                 "(`observed` (#obj`obj-0` #obj`obj-1`))))");
    CHECK_RESULT(
        conf_run(src, CONF_DEFAULT | U),
        "(nil ((`id` #tx`node1/t3`) (`writes` ((#obj`node1/1` 1) "
        "(#obj`node1/4` 2))) (`creates` (#obj`node1/4`)) "
        "(`destroys` (#obj`node1/2`)) (`observed` (#obj`node1/1` #obj`node1/2`))))");
}

/* reifyConstraints: the specification's empty constraint store (mkReifiedConstraints
 * [] 0). */
TEST(reify_constraints)
{
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run("(main (reifyConstraints))", f | U),
                     "((`vars` ()) (`count` 0))");
}

TEST_MAIN(T(reflect), T(reflect_in_tx), T(scry), T(scry_in_tx), T(reify_context),
          T(reify_tx_state), T(reify_constraints))
