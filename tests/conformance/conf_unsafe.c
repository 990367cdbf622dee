/* Decision 8, safety levels at load time: a program that uses an unsafe instruction
 * (reflect, scryMeta, scryDeep, reifyTxState, reifyConstraints, registerPure) is
 * refused before it runs unless it was submitted with the grant. The refusal names
 * the position, the function and the instruction. (avmctl's side: conf_avmctl.c.) */
#include "conf.h"
#include "test.h"

#define PREAMBLE                                                                         \
    "(pure p (m) (nil? m))\n(pure q (b m) (= b `none`))\n(behavior echo (list "          \
    "(input)))\n"

static const struct {
    const char *instr, *form, *granted;
} unsafe_cases[] = {
    {"reflect", "(reflect #obj`ghost`)", "(1 nil)"},
    {"scryMeta", "(scryMeta p)", "(1 ())"},
    {"scryDeep", "(scryDeep q)", "(1 ())"},
    {"reifyTxState", "(reifyTxState)", "(1 nil)"},
    {"reifyConstraints", "(reifyConstraints)", "(1 ((`vars` ()) (`count` 0)))"},
    {"registerPure", "(registerPure `r` p)", "(1 #t)"},
};

/* Refused without the grant, in both modes: AVM_EUNSAFE, the message
 * "file:line:col: 'function' uses the unsafe instruction NAME; ...", and nothing
 * ran (no store change, no trace). */
TEST(refused_without_grant)
{
    for (size_t i = 0; i < sizeof(unsafe_cases) / sizeof(unsafe_cases[0]); i++) {
        char src[512], msg[512];
        snprintf(src, sizeof(src), PREAMBLE "(main (createObj `echo`)\n  (list 1 %s))",
                 unsafe_cases[i].form);
        snprintf(msg, sizeof(msg),
                 "t.avm:5:11: 'main' uses the unsafe instruction %s; run with "
                 "--allow-unsafe to grant it",
                 unsafe_cases[i].instr);
        for (int f = 0; f < 2; f++) {
            avm_embedded e;
            REQUIRE(avm_embedded_init(&e, "node1", "main") == 0);
            conf_result *r = malloc(sizeof(*r));
            REQUIRE(r != NULL);
            conf_run_on(&e, src, NULL, f, r);
            CHECK_INT(r->load_rv, AVM_EUNSAFE);
            CHECK_INT(r->status, -1);
            CHECK_Q("refusal", r->loadmsg, msg);
            CHECK_INT(avm_memstore_count(e.store), 0);
            /* With the grant the same program runs. */
            conf_run_on(&e, src, NULL, f | CONF_UNSAFE, r);
            CHECK_INT(r->load_rv, 0);
            CHECK_RESULT(r, unsafe_cases[i].granted);
            free(r);
            avm_embedded_close(&e);
        }
    }
}

/* The refusal names the function that uses the instruction: a behaviour, a defun,
 * and the first such function of the module; a use that would never run (an
 * untaken branch, an uncalled function) is refused all the same: the check is at
 * load time, not halfway. */
TEST(refusal_names_function)
{
    conf_result *r = conf_run(PREAMBLE "(behavior spy\n  (list (reflect (self))))\n"
                                       "(main 1)",
                              CONF_DEFAULT);
    CHECK_INT(r->load_rv, AVM_EUNSAFE);
    CHECK_Q("refusal", r->loadmsg,
            "t.avm:5:9: 'spy' uses the unsafe instruction reflect; run with "
            "--allow-unsafe to grant it");
    r = conf_run(PREAMBLE "(defun never () (reifyTxState))\n"
                          "(main (if #f (never) 2))",
                 CONF_DEFAULT);
    CHECK_INT(r->load_rv, AVM_EUNSAFE);
    CHECK_Q("refusal", r->loadmsg,
            "t.avm:4:17: 'never' uses the unsafe instruction reifyTxState; run with "
            "--allow-unsafe to grant it");
    r = conf_run(PREAMBLE "(main (if #f (scryMeta p) 2))", CONF_STRICT);
    CHECK_INT(r->load_rv, AVM_EUNSAFE);
    CHECK_Q("refusal", r->loadmsg,
            "t.avm:4:14: 'main' uses the unsafe instruction scryMeta; run with "
            "--allow-unsafe to grant it");
    CHECK_RESULT(conf_run(PREAMBLE "(main (if #f (scryMeta p) 2))", CONF_UNSAFE), "2");
}

/* An entry other than main is refused in the same way (the whole module is
 * checked). */
TEST(refusal_with_entry)
{
    conf_result *r = conf_run_entry(PREAMBLE "(defun go () (reflect #obj`x`))\n"
                                             "(defun safe () 3)",
                                    "safe", CONF_DEFAULT);
    CHECK_INT(r->load_rv, AVM_EUNSAFE);
    CHECK_Q("refusal", r->loadmsg,
            "t.avm:4:14: 'go' uses the unsafe instruction reflect; run with "
            "--allow-unsafe to grant it");
}

/* The safe instructions of the same families need no grant. */
TEST(safe_need_no_grant)
{
    const char *src = PREAMBLE "(main (list (get (reifyContext) 'self) (updatePure `p` "
                               "q) (callPure `p` (list 1 2))))";
    for (int f = 0; f < 2; f++)
        CHECK_RESULT(conf_run(src, f), "(#obj`root/orchestrator` #t #f)");
}

TEST_MAIN(T(refused_without_grant), T(refusal_names_function), T(refusal_with_entry),
          T(safe_need_no_grant))
