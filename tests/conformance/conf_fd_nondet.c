/* FD (newVar, narrow, post, label) and Nondet (choose, require): the specification's
 * executeInstruction fails with err-fd-not-implemented / err-nondet-not-implemented
 * for every one of them, and so does the interpreter in both modes until the
 * constraint layer (DESIGN.md section 4, decision 5) exists. */
#include "conf.h"
#include "test.h"

#define FD_MSG "`FD instructions not yet implemented`"
#define ND_MSG "`Nondeterminism instructions not yet implemented`"

static const struct {
    const char *src, *error;
} fd_cases[] = {
    {"(main (newVar (list 1 2 3)))", "FDError.ErrNotImplemented " FD_MSG},
    {"(main (narrow 0 (list 1 2)))", "FDError.ErrNotImplemented " FD_MSG},
    {"(main (post (list `Eq` 0 1)))", "FDError.ErrNotImplemented " FD_MSG},
    {"(main (label 0))", "FDError.ErrNotImplemented " FD_MSG},
    {"(main (choose (list 1 2)))", "NondetError.ErrNotImplemented " ND_MSG},
    {"(main (require #t))", "NondetError.ErrNotImplemented " ND_MSG},
};

TEST(not_implemented)
{
    for (size_t i = 0; i < sizeof(fd_cases) / sizeof(fd_cases[0]); i++) {
        conf_result *r = conf_run(fd_cases[i].src, CONF_STRICT);
        CHECK_ERROR(r, fd_cases[i].error);
        CHECK_TRACE(r, "");
        r = conf_run(fd_cases[i].src, CONF_DEFAULT);
        CHECK_ERROR(r, fd_cases[i].error);
        char want[256];
        snprintf(want, sizeof(want), "0 ErrorOccurred %s", fd_cases[i].error);
        CHECK_TRACE(r, want);
    }
}

/* Inside a transaction and a behaviour: the failure ends the whole execution. */
TEST(not_implemented_in_tx)
{
    const char *src =
        "(behavior b (list (label 0)))\n"
        "(main (let ((o (createObj `b` #ctl`main`)) (t (beginTx))) (call o 1)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT), "FDError.ErrNotImplemented " FD_MSG);
    conf_result *r = conf_run(src, CONF_DEFAULT);
    CHECK_ERROR(r, "FDError.ErrNotImplemented " FD_MSG);
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `b`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ErrorOccurred FDError.ErrNotImplemented " FD_MSG " [#ctl`main`]");
    CHECK_STORE(r, "#obj`node1/1` `b` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

TEST_MAIN(T(not_implemented), T(not_implemented_in_tx))
