/* avmctl's contract (cli/avmctl.c): exit codes (0 success, 1 the program failed with
 * an AVM error or blocked, 2 bad usage, unreadable file, compile error or load-time
 * refusal), the messages on stderr (compile errors and refusals name file:line:col),
 * the text output (--trace, --store) and the --json documents. Runs the built
 * binary (AVMCTL_PATH) in a temporary directory, with relative file names so that
 * messages are predictable. (JSON well-formedness is also checked by a parser:
 * avmctl_json.sh.) */
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "conf.h"
#include "test.h"

#ifndef AVMCTL_PATH
#error "AVMCTL_PATH must name the avmctl binary"
#endif

static char out[CONF_TEXT], err[CONF_TEXT];

/* Fixture: every test runs in one fresh temporary directory, removed at exit. */
static char workdir[256];

static void remove_workdir(void)
{
    char cmd[300];
    if (chdir("/") == 0 && workdir[0] != '\0') {
        snprintf(cmd, sizeof(cmd), "rm -rf '%s'", workdir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", workdir);
    }
}

__attribute__((constructor)) static void make_workdir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(workdir, sizeof(workdir), "%s/avm-conf-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (mkdtemp(workdir) == NULL || chdir(workdir) != 0) {
        perror(workdir);
        exit(2);
    }
    atexit(remove_workdir);
}

static void slurp(const char *path, char *buf, size_t n)
{
    buf[0] = '\0';
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return;
    size_t len = fread(buf, 1, n - 1, f);
    buf[len] = '\0';
    fclose(f);
}

/* Writes a Q-string program to file name. */
static void write_program(const char *name, const char *src_q)
{
    char *src = conf_q(src_q);
    FILE *f = fopen(name, "wb");
    if (f == NULL) {
        perror(name);
        exit(2);
    }
    fputs(src, f);
    fclose(f);
    free(src);
}

/* Runs `avmctl ARGS` (ARGS: a Q-string of shell words); fills out and err; returns
 * the exit code. */
static int avmctl(const char *args_q)
{
    char *args = conf_q(args_q);
    char cmd[4096];
    /* These tests compare exact output, including identifiers: run on an ephemeral
     * node (the durable default is tested in tests/storage). AVM_DATA keeps any
     * other command away from the user's data directory. */
    bool run = strncmp(args, "run", 3) == 0;
    snprintf(cmd, sizeof(cmd),
             "AVM_DATA=./avmdata '%s' %s%s >stdout.txt 2>stderr.txt </dev/null",
             AVMCTL_PATH, args, run ? " --ephemeral" : "");
    free(args);
    int st = system(cmd);
    slurp("stdout.txt", out, sizeof(out));
    slurp("stderr.txt", err, sizeof(err));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#define ECHO_PROGRAM                                                                     \
    "(behavior echo (list (input)))\n"                                                   \
    "(main (call (createObj `echo` #ctl`main`) (list 1 `a` nil #t)))\n"

TEST(run_ok)
{
    write_program("ok.avm", ECHO_PROGRAM);
    CHECK_INT(avmctl("run ok.avm"), 0);
    CHECK_Q("stdout", out, "(1 `a` nil #t)\n");
    CHECK_Q("stderr", err, "");
}

TEST(run_trace_store)
{
    write_program("ok.avm", ECHO_PROGRAM);
    CHECK_INT(avmctl("run ok.avm --trace --store"), 0);
    CHECK_Q("stdout", out,
            "  0 ObjectCreated #obj`node1/1` `echo`\n"
            "  1 ObjectCalled #obj`node1/1` (1 `a` nil #t) -> (1 `a` nil #t)\n"
            "store:\n"
            "#obj`node1/1` `echo` machine=#mach`node1` creating=#ctl`main` "
            "current=#ctl`main` state=()\n"
            "(1 `a` nil #t)\n");
    CHECK_INT(avmctl("run ok.avm --spec-strict --trace"), 0);
    CHECK_Q("stdout", out,
            "  0 ObjectCreated #obj`obj-0` `echo`\n"
            "  1 ObjectCalled #obj`obj-0` (1 `a` nil #t) -> (1 `a` nil #t)\n"
            "(1 `a` nil #t)\n");
}

/* --machine and --controller name the embedded node. */
TEST(run_machine_controller)
{
    write_program("ids.avm",
                  "(behavior echo (list (input)))\n"
                  "(main (let ((t (beginTx)) (o (createObj `echo`))) (commitTx t)"
                  "  (list o (getController o) (getCurrentMachine))))\n");
    CHECK_INT(avmctl("run ids.avm --machine alpha --controller boss"), 0);
    CHECK_Q("stdout", out, "(#obj`alpha/2` #ctl`boss` #mach`alpha`)\n");
    CHECK_INT(avmctl("run ids.avm --machine ``"), 2);
    CHECK_Q("stderr", err, "avmctl: --machine needs a value\n");
}

/* An AVM error: exit 1, the error with its position on stderr. */
TEST(run_avm_error)
{
    write_program("err.avm", "(main\n  (destroyObj #obj`x`))\n");
    CHECK_INT(avmctl("run err.avm"), 1);
    CHECK_Q("stdout", out, "");
    CHECK_Q("stderr", err,
            "error: ObjError.ErrObjectNotFound #obj`x` (at err.avm:2:3)\n");
    /* Default mode logs the failure in the trace. */
    CHECK_INT(avmctl("run err.avm --trace"), 1);
    CHECK_Q("stdout", out, "  0 ErrorOccurred ObjError.ErrObjectNotFound #obj`x`\n");
}

/* The specification's failing example: strict mode prints no trace for a failure
 * (the specification's failure result carries none). */
TEST(run_strict_example_failure)
{
    char args[1024];
    snprintf(args, sizeof(args),
             "run '%s/examples/battleship.avm' --spec-strict --trace "
             "--entry play-full-game",
             AVM_SOURCE_DIR);
    CHECK_INT(avmctl(args), 1);
    CHECK_Q("stdout", out, "");
    char want[1024];
    snprintf(want, sizeof(want),
             "error: ControllerError.ErrObjectHasNoController "
             "#obj`obj-2` (at %s/examples/battleship.avm:57:17)\n",
             AVM_SOURCE_DIR);
    CHECK_Q("stderr", err, want);
    snprintf(args, sizeof(args),
             "run '%s/examples/battleship.avm' --entry play-full-game", AVM_SOURCE_DIR);
    CHECK_INT(avmctl(args), 0);
    CHECK_Q("stdout", out,
            "((#obj`node1/2` #obj`node1/3`) ((`coord` 1 1) (`coord` 0 0) "
            "nil (`coord` 2 2)))\n");
}

/* A compile error: exit 2, file:line:col: message. */
TEST(run_compile_error)
{
    write_program("cerr.avm", "(main\n  (foo))\n");
    CHECK_INT(avmctl("run cerr.avm"), 2);
    CHECK_Q("stdout", out, "");
    CHECK_Q("stderr", err, "avmctl: cerr.avm:2:4: unknown function 'foo'\n");
    write_program("cerr2.avm", "(main\n  (list 1 `open))\n");
    CHECK_INT(avmctl("run cerr2.avm"), 2);
    CHECK_Q("stderr", err, "avmctl: cerr2.avm:2:11: unterminated string\n");
    CHECK_INT(avmctl("check cerr.avm"), 2);
    CHECK_Q("stderr", err, "avmctl: cerr.avm:2:4: unknown function 'foo'\n");
}

/* Load-time refusal of an unsafe program: exit 2 and the message naming
 * file:line:col, the function and the instruction; --allow-unsafe runs it. */
TEST(run_refused)
{
    static const char *instrs[] = {"reflect #obj`x`",  "scryMeta p",
                                   "scryDeep q",       "reifyTxState",
                                   "reifyConstraints", "registerPure `r` p"};
    for (size_t i = 0; i < sizeof(instrs) / sizeof(instrs[0]); i++) {
        char src[512], want[512], name[64];
        snprintf(src, sizeof(src),
                 "(pure p (m) #f)\n(pure q (b m) #f)\n(main\n  (list (%s)))\n",
                 instrs[i]);
        write_program("u.avm", src);
        snprintf(name, sizeof(name), "%s", instrs[i]);
        if (strchr(name, ' ') != NULL)
            *strchr(name, ' ') = '\0';
        snprintf(want, sizeof(want),
                 "avmctl: u.avm:4:9: 'main' uses the unsafe instruction %s; run with "
                 "--allow-unsafe to grant it\n",
                 name);
        CHECK_INT(avmctl("run u.avm"), 2);
        CHECK_Q("stdout", out, "");
        CHECK_Q("stderr", err, want);
        CHECK_INT(avmctl("run u.avm --spec-strict"), 2);
        CHECK_INT(avmctl("run u.avm --allow-unsafe"), 0);
        CHECK_Q("stderr", err, "");
    }
}

/* receive in an embedded run can never get a message: exit 1, said on stderr. */
TEST(run_blocked)
{
    write_program("rx.avm", "(main (receive))\n");
    CHECK_INT(avmctl("run rx.avm"), 1);
    CHECK_Q("stderr", err,
            "blocked: receive on #obj`root/orchestrator` waits for a "
            "message, and no message can arrive in an embedded run\n");
    /* Strict: the specification's receive returns the current input. */
    CHECK_INT(avmctl("run rx.avm --spec-strict"), 0);
    CHECK_Q("stdout", out, "``\n");
}

TEST(usage)
{
    CHECK_INT(avmctl(""), 2);
    CHECK(strncmp(err, "usage: avmctl", 13) == 0);
    CHECK_INT(avmctl("help"), 0);
    CHECK(strncmp(out, "usage: avmctl", 13) == 0);
    CHECK_INT(avmctl("run --help"), 0);
    CHECK_INT(avmctl("frobnicate"), 2);
    CHECK_Q("stderr", err, "avmctl: unknown command 'frobnicate' (see avmctl help)\n");
    CHECK_INT(avmctl("run"), 2);
    CHECK_Q("stderr", err, "avmctl: run: missing FILE\n");
    CHECK_INT(avmctl("run ok.avm --bogus"), 2);
    CHECK_Q("stderr", err, "avmctl: run: unknown option --bogus (see avmctl help)\n");
    CHECK_INT(avmctl("run ok.avm other.avm"), 2);
    CHECK_INT(avmctl("run missing.avm"), 2);
    CHECK_Q("stderr", err,
            "avmctl: cannot open missing.avm: No such file or directory\n");
    write_program("ok.avm", ECHO_PROGRAM);
    CHECK_INT(avmctl("run ok.avm --entry nope"), 2);
    CHECK_Q("stderr", err,
            "avmctl: ok.avm has no function 'nope' without parameters to run\n");
    CHECK_INT(avmctl("check ok.avm"), 0);
    CHECK_Q("stdout", out,
            "ok.avm: ok (1 behaviours, 0 pure functions, 0 functions, with "
            "main)\n");
    write_program("lib.avm", "(defun f () 1)\n");
    CHECK_INT(avmctl("run lib.avm"), 2);
    CHECK_Q("stderr", err, "avmctl: lib.avm: the program has no (main ...) entry\n");
    CHECK_INT(avmctl("run lib.avm --entry f"), 0);
    CHECK_Q("stdout", out, "1\n");
}

/* --json: one document on stdout for each outcome. */
TEST(json)
{
    write_program("ok.avm", ECHO_PROGRAM);
    CHECK_INT(avmctl("run ok.avm --json --trace --store"), 0);
    CHECK_Q(
        "json", out,
        "{`status`:`ok`,`result`:[1,`a`,null,true],`mode`:`default`,`events`:2,"
        "`trace`:[{`timestamp`:0,`event`:`ObjectCreated`,`object`:{`object`:`node1/1`},"
        "`behavior`:`echo`,`controller`:null},{`timestamp`:1,`event`:`ObjectCalled`,"
        "`object`:{`object`:`node1/1`},`input`:[1,`a`,null,true],"
        "`output`:{`just`:[1,`a`,null,true]},`controller`:null}],"
        "`store`:[{`object`:{`object`:`node1/1`},`behavior`:`echo`,"
        "`machine`:{`machine`:`node1`},`creatingController`:{`controller`:`main`},"
        "`currentController`:{`controller`:`main`},`version`:1,`state`:[]}]}\n");
    write_program("err.avm", "(main\n  (destroyObj #obj`x`))\n");
    CHECK_INT(avmctl("run err.avm --json"), 1);
    CHECK_Q("json", out,
            "{`status`:`error`,`error`:{`family`:`ObjError`,`error`:`ErrObjectNotFound`,"
            "`args`:[{`object`:`x`}],`at`:{`file`:`err.avm`,`line`:2,`col`:3}},"
            "`mode`:`default`,`events`:1}\n");
    write_program("cerr.avm", "(main\n  (foo))\n");
    CHECK_INT(avmctl("run cerr.avm --json"), 2);
    CHECK_Q("json", out,
            "{`status`:`compile-error`,`file`:`cerr.avm`,`line`:2,`col`:4,"
            "`message`:`unknown function 'foo'`}\n");
    write_program("u.avm", "(main\n  (list (reflect #obj`x`)))\n");
    CHECK_INT(avmctl("run u.avm --json"), 2);
    CHECK_Q("json", out,
            "{`status`:`refused`,`message`:`u.avm:2:9: 'main' uses the unsafe "
            "instruction reflect; run with --allow-unsafe to grant it`}\n");
    write_program("rx.avm", "(main (receive))\n");
    CHECK_INT(avmctl("run rx.avm --json"), 1);
    CHECK_Q("json", out,
            "{`status`:`blocked`,`waiting`:{`object`:`root/orchestrator`},"
            "`mode`:`default`,`events`:0}\n");
}

TEST_MAIN(T(run_ok), T(run_trace_store), T(run_machine_controller), T(run_avm_error),
          T(run_strict_example_failure), T(run_compile_error), T(run_refused),
          T(run_blocked), T(usage), T(json))
