/* avmctl's shared pieces: exit codes, reading and compiling program files, command-line
 * forms of values (object ids, value literals, chart formats), and --help texts. The
 * commands live in avmctl.c (dispatch, the embedded node) and remote.c (a node over
 * the control protocol). */
#ifndef AVM_CLI_H
#define AVM_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "bytecode.h"
#include "msc.h"
#include "value.h"

/* Exit codes (documented at the top of avmctl.c): success; the program failed,
 * blocked, was killed or interrupted; usage, files, compile or load errors, a node
 * that cannot be reached. */
#define CLI_EXIT_OK 0
#define CLI_EXIT_AVM_ERROR 1
#define CLI_EXIT_USAGE 2
/* The node refused the request: no valid token (EAUTH) or no permission (EPERM). */
#define CLI_EXIT_AUTH 3

extern const char cli__progname[];

/* Compiles the program file at path. On failure prints the cause on stderr (and, with
 * json, a {"status":"compile-error",...} document on stdout) and returns NULL;
 * otherwise the module (the caller releases it). */
avm_module *cli__compile_file(const char *path, bool json);

/* Index of m's parameterless function entry, or -1 after printing why there is none. */
int cli__entry_fn(const avm_module *m, const char *file, const char *entry);

/* Appends a newline to b and writes it to stdout. */
void cli__print_json_line(avm_buf *b);

/* An object id from the command line: "node1/3" or #obj"node1/3". */
int cli__parse_oid(const char *s, avm_val *out);

/* "text", "mermaid" or "json". 0 or AVM_EINVAL. */
int cli__parse_format(const char *s, avm_msc_format *f);

/* Renders a trace log as a chart on stdout (a JSON chart ends with a newline).
 * Returns 0, or CLI_EXIT_USAGE after printing why the log does not render. */
int cli__print_chart(const uint8_t *log, size_t len, avm_msc_format f,
                     const char *exec_id);

/* A positive number of milliseconds (at most a day). 0 or AVM_EINVAL. */
int cli__parse_ms(const char *s, int *ms);

/* --help: the usage of command cmd (NULL: all of avmctl) and subcommand sub (NULL:
 * the command's), written to f. */
void cli__usage(FILE *f, const char *cmd, const char *sub);

/* True if argv[0..argc) asks for help (--help or -h). */
bool cli__wants_help(int argc, char **argv);

#endif
