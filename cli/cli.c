/* avmctl's shared pieces (cli.h). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "cli.h"
#include "codec.h"
#include "compiler.h"
#include "module.h"

const char cli__progname[] = "avmctl";

/* --- Program files ------------------------------------------------------ */

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open %s: %s\n", cli__progname, path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fprintf(stderr, "%s: out of memory reading %s\n", cli__progname, path);
            fclose(f);
            return -1;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap >= 64u * 1024 * 1024) {
            fprintf(stderr, "%s: %s is larger than 64 MiB\n", cli__progname, path);
            free(buf);
            fclose(f);
            return -1;
        }
        cap *= 2;
        char *p = realloc(buf, cap);
        if (p == NULL)
            free(buf);
        buf = p;
    }
    if (ferror(f)) {
        fprintf(stderr, "%s: cannot read %s: %s\n", cli__progname, path, strerror(errno));
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

void cli__print_json_line(avm_buf *b)
{
    avm_buf_puts(b, "\n");
    fputs(avm_buf_cstr(b), stdout);
}

avm_module *cli__compile_file(const char *path, bool json)
{
    char *src;
    size_t len;
    if (read_file(path, &src, &len) != 0)
        return NULL;
    avm_module *m = NULL;
    avm_diag d;
    memset(&d, 0, sizeof(d));
    int rv = avm_compile(path, src, len, &m, &d);
    free(src);
    if (rv != 0) {
        char msg[1024];
        avm_diag_format(&d, msg, sizeof(msg));
        if (json) {
            avm_buf b;
            avm_buf_init(&b);
            avm_buf_puts(&b, "{\"status\":\"compile-error\",\"file\":");
            avm_json_str(&b, d.file, strlen(d.file));
            avm_buf_printf(&b, ",\"line\":%u,\"col\":%u,\"message\":", d.line, d.col);
            avm_json_str(&b, d.msg, strlen(d.msg));
            avm_buf_puts(&b, "}");
            cli__print_json_line(&b);
            avm_buf_free(&b);
        }
        fprintf(stderr, "%s: %s\n", cli__progname, msg);
        return NULL;
    }
    return m;
}

int cli__entry_fn(const avm_module *m, const char *file, const char *entry)
{
    int fn = avm_module_find(m, entry, AVM_FN_FUNC);
    if (fn < 0 || m->funcs[fn].nparams != 0) {
        fprintf(stderr, "%s: %s has no function '%s' without parameters to run\n",
                cli__progname, file, entry);
        return -1;
    }
    return fn;
}

/* --- Values on the command line ----------------------------------------- */

int cli__parse_oid(const char *s, avm_val *out)
{
    size_t n = strlen(s);
    if (n > 6 && strncmp(s, "#obj\"", 5) == 0 && s[n - 1] == '"')
        return avm_str_new(AVM_OBJID, s + 5, n - 6, out);
    return avm_cstr(AVM_OBJID, s, out);
}

int cli__parse_format(const char *s, avm_msc_format *f)
{
    if (strcmp(s, "text") == 0)
        *f = AVM_MSC_TEXT;
    else if (strcmp(s, "mermaid") == 0)
        *f = AVM_MSC_MERMAID;
    else if (strcmp(s, "json") == 0)
        *f = AVM_MSC_JSON;
    else
        return AVM_EINVAL;
    return 0;
}

int cli__print_chart(const uint8_t *log, size_t len, avm_msc_format f,
                     const char *exec_id)
{
    avm_buf b;
    avm_buf_init(&b);
    char err[512] = "";
    int rv = avm_msc_render(log, len, f, exec_id, &b, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s: execution %s: %s\n", cli__progname, exec_id,
                err[0] ? err : avm_strerror(rv));
        avm_buf_free(&b);
        return CLI_EXIT_USAGE;
    }
    if (f == AVM_MSC_JSON)
        cli__print_json_line(&b);
    else
        fputs(avm_buf_cstr(&b), stdout);
    avm_buf_free(&b);
    return 0;
}

int cli__parse_ms(const char *s, int *ms)
{
    if (!isdigit((unsigned char)s[0]))
        return AVM_EINVAL;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v <= 0 || v > 86400000L)
        return AVM_EINVAL;
    *ms = (int)v;
    return 0;
}

/* --- Help --------------------------------------------------------------- */

bool cli__wants_help(int argc, char **argv)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return true;
    return false;
}

static const char usage_all[] =
    "usage: avmctl <command> [options]\n"
    "\n"
    "commands:\n"
    "  run FILE            run FILE's (main ...) on the embedded node (or on --node)\n"
    "  check FILE          compile FILE and report errors, without running it\n"
    "  obj ls              list the objects of the node's store\n"
    "  obj show ID         show one object (metadata, version, state)\n"
    "  exec ls             list the executions the node has recorded\n"
    "  exec show ID        status and result of an execution\n"
    "  exec result ID      an execution's result (getExecutionResult)\n"
    "  exec trace ID       an execution's trace (--format: its sequence chart)\n"
    "  exec resume ID      continue an interrupted execution from its last "
    "checkpoint\n"
    "  exec suspend ID     suspend an execution of a node (--node)\n"
    "  exec kill ID        stop an execution of a node for good (--node)\n"
    "  exec constraints ID an open transaction's choices and requirements (--node)\n"
    "  solve FILE          run an SMT-LIB2 script with the node's solver "
    "(executeSolver)\n"
    "  send OBJ VALUE      put VALUE in the mailbox of object OBJ (--node)\n"
    "  status              the node's identity and counts (--node)\n"
    "  txs                 the node's open transactions (--node)\n"
    "  pure ls             the pure-function registry: versions and who made them\n"
    "  cluster status      the members and their reachability (--node)\n"
    "  controller ...      replicated controllers: create, ls, status, add, remove,\n"
    "                      transfer, latency, put, get, bench (--node)\n"
    "  bundle ...          composed commits: create, status (--node)\n"
    "  help                this text (avmctl COMMAND --help: one command)\n"
    "\n"
    "node options (every command but check):\n"
    "  --node ADDR         work on the node daemon at ADDR (an nng URL, HOST:PORT or a\n"
    "                      socket path; default $AVM_NODE) instead of the embedded "
    "node\n"
    "  --timeout MS        with --node: wait at most MS for each answer (default "
    "10000,\n"
    "                      status 5000)\n"
    "  --token-file FILE   with --node: send the token in FILE (mode 600) with every\n"
    "                      request (default $AVM_TOKEN_FILE, else the token in\n"
    "                      $AVM_TOKEN), for a node started with --auth-tokens\n"
    "  --tls-ca FILE, --tls-cert FILE, --tls-key FILE\n"
    "                      for --node tls+tcp://HOST:PORT: the CA that signed the\n"
    "                      node's certificate, and this client's certificate and\n"
    "                      unencrypted key (PEM, mode 600; the key may be in the\n"
    "                      cert file); default $AVM_TLS_CA, $AVM_TLS_CERT,\n"
    "                      $AVM_TLS_KEY\n"
    "  --tls-server-name NAME  the name the node's certificate must carry (default:\n"
    "                      the URL's host; $AVM_TLS_SERVER_NAME)\n"
    "  --data DIR          the node's data directory (default: $AVM_DATA, else\n"
    "                      $XDG_DATA_HOME/avm/MACHINE, else "
    "~/.local/share/avm/MACHINE)\n"
    "  --ephemeral         keep everything in memory and forget it at exit\n"
    "  --machine NAME      this node's machine id (default node1)\n"
    "  --controller NAME   its default controller (default main)\n"
    "  --json              machine-readable output\n"
    "\n"
    "run options:\n"
    "  --trace             print the trace (the log entries of the run)\n"
    "  --store             print the objects in the store after the run\n"
    "  --spec-strict       the literal semantics of the specification's "
    "interpreter\n"
    "                      (ephemeral unless --data is given: its ids repeat "
    "across runs)\n"
    "  --allow-unsafe      grant the unsafe instructions (reflect, scryMeta, "
    "scryDeep,\n"
    "                      reifyTxState, reifyConstraints, registerPure)\n"
    "  --entry NAME        run the parameterless (defun NAME () ...) instead of "
    "main\n"
    "  --detach            with --node: print the execution id, do not wait\n"
    "  --on MACHINE        with --node: run it on another member (executeRemote)\n"
    "  --bundle ID         with --node: join composed commit ID\n"
    "\n"
    "exit codes: 0 success; 1 the program failed with an AVM error, blocked, was\n"
    "killed or interrupted; 2 bad usage, a program that does not compile or is refused\n"
    "at load time, an unknown object or execution, an unusable data directory, or a\n"
    "node that does not answer; 3 the node refused the request: no valid token\n"
    "(EAUTH) or a permission the token's principal lacks (EPERM).\n";

static const char usage_node[] =
    "\n"
    "node options:\n"
    "  --node ADDR         the node daemon at ADDR (nng URL, HOST:PORT or socket path;\n"
    "                      default $AVM_NODE); without it, the embedded node\n"
    "  --timeout MS        with --node: wait at most MS for each answer (default "
    "10000)\n"
    "  --token-file FILE   with --node: the token to send (default $AVM_TOKEN_FILE,\n"
    "                      else $AVM_TOKEN); exit 3 when the node refuses it\n"
    "  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name NAME\n"
    "                      for a tls+tcp:// node (see avmctl help)\n"
    "  --data DIR, --ephemeral, --machine NAME, --controller NAME\n"
    "                      the embedded node (see avmctl help)\n"
    "  --json              one JSON document on stdout\n";

static const char usage_remote[] =
    "\n"
    "options:\n"
    "  --node ADDR         the node daemon at ADDR (nng URL, HOST:PORT or socket path;\n"
    "                      default $AVM_NODE); required\n"
    "  --timeout MS        wait at most MS for each answer (default 10000)\n"
    "  --token-file FILE   the token to send (default $AVM_TOKEN_FILE, else\n"
    "                      $AVM_TOKEN); exit 3 when the node refuses it\n"
    "  --tls-ca FILE, --tls-cert FILE, --tls-key FILE, --tls-server-name NAME\n"
    "                      for a tls+tcp:// node (see avmctl help)\n"
    "  --json              one JSON document on stdout\n";

typedef struct help {
    const char *cmd, *sub;
    const char *text;
    const char *tail; /* usage_node, usage_remote or NULL */
} help;

static const help helps[] = {
    {"run", NULL,
     "usage: avmctl run FILE [options]\n"
     "\n"
     "Compiles FILE and runs its (main ...), or the function --entry names. On the\n"
     "embedded node the run ends before avmctl does; with --node the module is sent\n"
     "to the node, which runs it, and avmctl waits for its end (with progress on a\n"
     "terminal) unless --detach is given. The result is printed on stdout, an AVM\n"
     "error on stderr.\n"
     "\n"
     "run options:\n"
     "  --entry NAME        run the parameterless (defun NAME () ...) instead of main\n"
     "  --spec-strict       the literal semantics of the specification's interpreter\n"
     "                      (embedded: ephemeral unless --data is given)\n"
     "  --allow-unsafe      grant the unsafe instructions (reflect, scryMeta, "
     "scryDeep,\n"
     "                      reifyTxState, reifyConstraints, registerPure)\n"
     "  --trace             print the trace (with --node: the sequence chart)\n"
     "  --store             embedded: print the objects in the store after the run\n"
     "  --detach            with --node: print the execution id, do not wait\n"
     "  --on MACHINE        with --node: run it on MACHINE, another member of the\n"
     "                      node's cluster (executeRemote); its result and trace are\n"
     "                      then available from every member\n"
     "  --bundle ID         with --node: the execution joins bundle ID (a composed\n"
     "                      commit, see avmctl help bundle): its outermost commits\n"
     "                      are segments of it, and it reads what the segments\n"
     "                      contributed before it started write\n"
     "\n"
     "exit codes: 0 the program returned; 1 it failed with an AVM error, blocked, was\n"
     "killed or interrupted; 2 bad usage, a program that does not compile or is\n"
     "refused, or a node that does not answer.\n",
     usage_node},
    {"solve", NULL,
     "usage: avmctl solve FILE [--timeout MS]\n"
     "\n"
     "executeSolver: runs the SMT-LIB2 script FILE (- for standard input) with the\n"
     "solver the node settles nondeterministic transactions with (Z3), and prints\n"
     "its output: e.g. the text of avmctl exec constraints ID --smtlib, edited or\n"
     "not. --timeout bounds the solver (default 5000 ms).\n"
     "\n"
     "exit codes: 0 the solver ran the script; 1 it reported an error; 2 bad usage or\n"
     "a file that cannot be read.\n",
     NULL},
    {"check", NULL,
     "usage: avmctl check FILE\n"
     "\n"
     "Compiles FILE and reports its errors (exit 2) or what it defines (exit 0),\n"
     "without running it.\n",
     NULL},
    {"obj", NULL,
     "usage: avmctl obj ls | obj show ID [options]\n"
     "\n"
     "  obj ls              list the objects of the node's store\n"
     "  obj show ID         one object: metadata, version, state (ID: node1/3 or\n"
     "                      #obj\"node1/3\")\n",
     usage_node},
    {"obj", "ls",
     "usage: avmctl obj ls [options]\n"
     "\n"
     "Lists the objects of the node's store.\n",
     usage_node},
    {"obj", "show",
     "usage: avmctl obj show ID [options]\n"
     "\n"
     "Shows one object: behaviour, machine, controllers, version and state. ID is\n"
     "written node1/3 or #obj\"node1/3\".\n",
     usage_node},
    {"exec", NULL,
     "usage: avmctl exec SUBCOMMAND [ID] [options]\n"
     "\n"
     "  exec ls             list the executions the node has recorded\n"
     "  exec show ID        status and result of an execution\n"
     "  exec result ID      an execution's result; with --node, --wait MS waits for "
     "its end\n"
     "  exec trace ID       an execution's trace; --format text|mermaid|json renders "
     "its\n"
     "                      sequence chart\n"
     "  exec resume ID      continue an execution (embedded: an interrupted one, from "
     "its\n"
     "                      last checkpoint; with --node: a suspended one)\n"
     "  exec suspend ID     suspend a running execution (--node)\n"
     "  exec kill ID        stop an execution for good (--node)\n"
     "  exec constraints ID the choices and requirements its open transaction will\n"
     "                      settle at commit (--node); --smtlib: as SMT-LIB2\n",
     usage_node},
    {"exec", "constraints",
     "usage: avmctl exec constraints ID [--smtlib] [options]\n"
     "\n"
     "The nondeterministic problem of execution ID's open transaction: its choices\n"
     "(choose) and requirements (require), which the solver settles when the\n"
     "transaction commits. --smtlib prints it as an SMT-LIB2 script that any SMT\n"
     "solver runs (z3 FILE), the text the node's own solver is given.\n",
     usage_node},
    {"exec", "ls",
     "usage: avmctl exec ls [options]\n"
     "\n"
     "Lists the executions the node has recorded, with their status.\n",
     usage_node},
    {"exec", "show",
     "usage: avmctl exec show ID [options]\n"
     "\n"
     "The status of execution ID, its counters and its outcome.\n",
     usage_node},
    {"exec", "result",
     "usage: avmctl exec result ID [--wait MS] [options]\n"
     "\n"
     "The result of execution ID as `run` prints it (exit 0), or its AVM error (exit\n"
     "1). With --node, --wait MS waits up to MS for an execution that has not ended.\n",
     usage_node},
    {"exec", "trace",
     "usage: avmctl exec trace ID [--format text|mermaid|json] [options]\n"
     "\n"
     "The trace of execution ID. Without --format the embedded node prints the log\n"
     "entries as `run --trace` does; --format renders the trace log as a sequence\n"
     "chart: text (one line per record), mermaid (a Mermaid sequenceDiagram) or json.\n"
     "With --node the default format is text, and --json means --format json.\n",
     usage_node},
    {"exec", "resume",
     "usage: avmctl exec resume ID [options]\n"
     "\n"
     "Embedded: continues an interrupted execution from its last checkpoint and\n"
     "prints its outcome. With --node: resumes a suspended execution.\n",
     usage_node},
    {"exec", "suspend",
     "usage: avmctl exec suspend ID --node ADDR [options]\n"
     "\n"
     "Suspends a running execution of the node (exec resume continues it).\n",
     usage_remote},
    {"exec", "kill",
     "usage: avmctl exec kill ID --node ADDR [options]\n"
     "\n"
     "Stops an execution of the node for good (its outcome becomes killed).\n",
     usage_remote},
    {"send", NULL,
     "usage: avmctl send OBJ VALUE --node ADDR [--from NAME] [options]\n"
     "\n"
     "Puts VALUE in the mailbox of object OBJ (node1/3 or #obj\"node1/3\"), where a\n"
     "receive of the object takes it. VALUE is a literal of the language, read as a\n"
     "quoted constant: 42, '\"text\"', '(1 \"a\" #obj\"node1/3\")' (symbols become\n"
     "strings). --from names the sender (default \"client\"). Prints the message's\n"
     "number in the mailbox and its Lamport stamp.\n",
     usage_remote},
    {"status", NULL,
     "usage: avmctl status --node ADDR [options]\n"
     "\n"
     "The node's name, machine, controller, version, process, uptime, data directory,\n"
     "Lamport clock and counts of executions and objects. --timeout defaults to 5000\n"
     "here.\n",
     usage_remote},
    {"cluster", NULL,
     "usage: avmctl cluster status --node ADDR [options]\n"
     "\n"
     "The node's cluster: every member with its link address and controller, and\n"
     "reachability as each member sees it (a row per member that answered, a column\n"
     "per member it watches: up, DOWN, or '?' when it could not be asked). phi is\n"
     "the failure detector's suspicion, silent the milliseconds since the member was\n"
     "last heard from.\n",
     usage_remote},
    {"controller", NULL,
     "usage: avmctl controller SUBCOMMAND --node ADDR [options]\n"
     "\n"
     "Replicated controllers: each is a Raft group whose replicas live on several\n"
     "members; it commits while a majority of its replicas is up and reachable.\n"
     "\n"
     "  create NAME --replicas N1,N2,N3   a new controller replicated on those\n"
     "                                     members (1 to 7)\n"
     "  ls                                 the controllers: leader, term, this\n"
     "                                     node's role, replicas\n"
     "  status NAME                        leader, term, commit and applied index,\n"
     "                                     snapshot, and each replica's role,\n"
     "                                     reachability and match index\n"
     "  add NAME NODE                      add a replica (it catches up from the\n"
     "                                     leader, by a snapshot if need be)\n"
     "  remove NAME NODE                   remove a replica\n"
     "  transfer NAME [NODE]               hand leadership to NODE (or the most\n"
     "                                     up-to-date replica)\n"
     "  put NAME KEY VALUE                 one durable write through the\n"
     "                                     controller's log (an operator's tool and\n"
     "                                     the benchmark's unit of work)\n"
     "  get NAME KEY                       read it back (on the leader)\n"
     "  bench NAME COUNT DEPTH             COUNT puts generated inside the leader,\n"
     "                                     DEPTH in flight: ops/s, p50, p99 (the\n"
     "                                     replication layer without the control\n"
     "                                     connection)\n"
     "  latency [reset]                    commit latencies (p50, p99) of this\n"
     "                                     node's executions: through one\n"
     "                                     controller, and across controllers;\n"
     "                                     reset starts the count again\n"
     "\n"
     "Requests go to the leader wherever they are sent. --timeout defaults to 15000\n"
     "here.\n",
     usage_remote},
    {"bundle", NULL,
     "usage: avmctl bundle SUBCOMMAND --node ADDR [options]\n"
     "\n"
     "Composed commits: several executions, on any members, each contribute the\n"
     "write set of an outermost transaction (a segment) to one commit that applies\n"
     "all of them or none. An execution joins with run --bundle ID or the\n"
     "instruction (joinBundle ID); its commitTx returns once the bundle is decided.\n"
     "\n"
     "  create NAME MEMBERS [DEADLINE_MS]  a bundle of MEMBERS segments, homed on the\n"
     "                                     node asked; prints its id, NAME@NODE. Not\n"
     "                                     complete by the deadline (default 30000\n"
     "                                     ms), it aborts\n"
     "  status BUNDLE                      open, committing, committed or aborted\n"
     "                                     (and why), members, segments in\n"
     "\n"
     "A member that aborts its transaction aborts the bundle. --timeout defaults to\n"
     "5000 here.\n",
     usage_remote},
    {"txs", NULL,
     "usage: avmctl txs --node ADDR [options]\n"
     "\n"
     "The node's transaction registry: every open transaction, with its execution,\n"
     "transaction id, controller, nesting depth, reads and writes, and whether a\n"
     "version it read has been overwritten since (stale: its commit will return\n"
     "false).\n",
     usage_remote},
    {"pure", NULL,
     "usage: avmctl pure ls [options]\n"
     "\n"
     "The pure-function registry (registerPure, updatePure, and the pure functions a\n"
     "program registers when it starts): each function's name, its version, and who\n"
     "made that version: the principal that started the execution (\"anonymous\" on\n"
     "a node without --auth-tokens; \"-\" when not recorded: the embedded node, or a\n"
     "registry written before this was recorded), the execution and the machine.\n"
     "\n"
     "subcommands:\n"
     "  ls                  list the registry\n",
     usage_node},
};

void cli__usage(FILE *f, const char *cmd, const char *sub)
{
    const help *best = NULL;
    for (size_t i = 0; cmd != NULL && i < sizeof(helps) / sizeof(helps[0]); i++) {
        const help *h = &helps[i];
        if (strcmp(h->cmd, cmd) != 0)
            continue;
        if (h->sub == NULL && best == NULL)
            best = h;
        else if (h->sub != NULL && sub != NULL && strcmp(h->sub, sub) == 0)
            best = h;
    }
    if (best == NULL) {
        fputs(usage_all, f);
        return;
    }
    fputs(best->text, f);
    if (best->tail != NULL)
        fputs(best->tail, f);
}
