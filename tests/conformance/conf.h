/* The conformance suite's fixture: compile an .avm program, run it on an embedded
 * node (machine "node1", default controller "main", as the specification's runners),
 * and render what a test compares as text: the result value, the error, the trace
 * (one avm_event_print line per log entry, joined with '\n') and the final store
 * (avm_embedded_dump).
 *
 * Programs and expected texts are written with ` for " so that AVM source and
 * printed identifiers (#obj"node1/2") stay readable inside C strings: every ` is
 * turned into " before compiling or comparing. The AVM language never needs a `. */
#ifndef AVM_CONF_H
#define AVM_CONF_H

#include <stdbool.h>
#include <stddef.h>

#include "avm_err.h"
#include "embedded.h"
#include "memstore.h"
#include "module.h"
#include "vm.h"

/* Flags of a run. */
enum {
    CONF_DEFAULT = 0, /* the decisions of DESIGN.md section 3 */
    CONF_STRICT = 1,  /* the literal Interpreter.lagda.md */
    CONF_UNSAFE = 2,  /* with the grant for unsafe instructions */
    CONF_RAW = 4,     /* the source is plain text (a file), not a Q-string */
    CONF_WIDE = 8,    /* conf_run*: on a widened node (conf_widen) */
};

#define CONF_TEXT 32768

/* What a run left behind, as text. */
typedef struct conf_result {
    int load_rv;                /* avm_embedded_run's return (0, AVM_EUNSAFE, ...) */
    char loadmsg[1024];         /* its errmsg */
    int status;                 /* avm_run_status, -1 when it did not start */
    char result[CONF_TEXT];     /* AVM_RUN_DONE: avm_val_print of the result */
    char error[4096];           /* AVM_RUN_FAILED: "Family.Name args" (no position) */
    char errpos[512];           /* AVM_RUN_FAILED: "file:line:col" or "" */
    char trace[CONF_TEXT];      /* the log entries, one per line, no final newline */
    char store[CONF_TEXT];      /* avm_embedded_dump text, lines without final newline */
    unsigned long long counter; /* the event counter at the end */
} conf_result;

/* Replaces every ` of s by " into a new string (malloc). */
char *conf_q(const char *s);

/* Compiles the Q-string src (file name `name`); NULL on failure, after printing
 * the diagnostic to stderr. */
avm_module *conf_compile(const char *name, const char *src);
avm_module *conf_compile_raw(const char *name, const char *src, size_t len);

/* The execution config for flags (keep_trace always on). */
avm_exec_config conf_config(int flags);

/* Fills out from a finished (or suspended) execution and the node's store. */
void conf_capture(avm_embedded *e, avm_exec *x, conf_result *out);

/* Runs src's main (entry NULL) or its parameterless function `entry` on node e,
 * and captures the result. */
void conf_run_on(avm_embedded *e, const char *src, const char *entry, int flags,
                 conf_result *out);

/* The same on a fresh node1/main node. Returns a static result (overwritten by the
 * next call). */
conf_result *conf_run(const char *src, int flags);
conf_result *conf_run_entry(const char *src, const char *entry, int flags);

/* Widens node e's reachability (a fake world of two machines and two controllers):
 * it then reaches machines #mach"node1" and #mach"node2" and controllers #ctl"main"
 * and #ctl"aux". */
void conf_widen(avm_embedded *e);

/* Compiles src and starts its main on node e without running it (the caller runs
 * it with avm_exec_run and frees it); NULL on failure. */
avm_exec *conf_start(avm_embedded *e, const char *src, int flags);

/* Runs x one VM instruction at a time until its trace holds n entries or it stops;
 * returns the status. */
avm_run_status conf_run_until_events(avm_exec *x, size_t n);

/* Reads a file relative to the source directory (AVM_SOURCE_DIR); malloc'd. */
char *conf_read_source(const char *relpath);

/* Compares text with the Q-string expected; on difference prints both (with the
 * caller's position) and returns false. */
bool conf_eq(const char *file, int line, const char *what, const char *got,
             const char *expected_q);

/* Test helpers for test.h: compare one field of a result. */
#define CHECK_Q(what, got, exp)                                                          \
    do {                                                                                 \
        if (!conf_eq(__FILE__, __LINE__, what, got, exp))                                \
            *test_failed_ = 1;                                                           \
    } while (0)
#define CHECK_RESULT(r, exp)                                                             \
    do {                                                                                 \
        CHECK_INT((r)->status, AVM_RUN_DONE);                                            \
        if ((r)->status == AVM_RUN_FAILED)                                               \
            fprintf(stderr, "  error: %s at %s\n", (r)->error, (r)->errpos);             \
        if ((r)->load_rv != 0)                                                           \
            fprintf(stderr, "  load: %s\n", (r)->loadmsg);                               \
        CHECK_Q("result", (r)->result, exp);                                             \
    } while (0)
#define CHECK_ERROR(r, exp)                                                              \
    do {                                                                                 \
        CHECK_INT((r)->status, AVM_RUN_FAILED);                                          \
        if ((r)->status == AVM_RUN_DONE)                                                 \
            fprintf(stderr, "  result: %s\n", (r)->result);                              \
        CHECK_Q("error", (r)->error, exp);                                               \
    } while (0)
#define CHECK_TRACE(r, exp) CHECK_Q("trace", (r)->trace, exp)
#define CHECK_STORE(r, exp) CHECK_Q("store", (r)->store, exp)

#endif
