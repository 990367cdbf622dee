/* FD (newVar, narrow, post, label) and Nondet (choose, require) in strict mode: the
 * specification's executeInstruction fails with err-fd-not-implemented /
 * err-nondet-not-implemented for every one of them, and so does the interpreter in
 * strict mode. Default mode implements both layers (conf_fd.c, conf_nondet.c). */
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
    }
}

/* Inside a transaction and a behaviour: the failure ends the whole execution. */
TEST(not_implemented_in_tx)
{
    const char *src =
        "(behavior b (list (label 0)))\n"
        "(main (let ((o (createObj `b` #ctl`main`)) (t (beginTx))) (call o 1)))";
    CHECK_ERROR(conf_run(src, CONF_STRICT), "FDError.ErrNotImplemented " FD_MSG);
}

TEST_MAIN(T(not_implemented), T(not_implemented_in_tx))
