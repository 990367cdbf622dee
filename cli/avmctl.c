/* avmctl: run AVM programs and inspect a node's data.
 *
 * Without a server, avmctl works on an embedded node whose data lives in a data
 * directory (durable, LMDB) or, with --ephemeral, in memory. With --node ADDR (or
 * $AVM_NODE) it works on a node daemon over the control protocol instead
 * (remote.c); send and status need one.
 *
 * Exit codes: 0 success; 1 the program ended in an AVM error (or blocked, or was
 * interrupted, or killed, or has not finished), or the node refused an operation
 * because of the state of the execution or object; 2 bad usage, an unreadable file,
 * a program that does not compile or is refused at load time, an unknown object or
 * execution, a data directory that cannot be used, or a node that cannot be reached
 * or does not answer in time (the message is printed); 3 the node refused the
 * request: no valid token (EAUTH) or a missing permission (EPERM). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "avm_err.h"
#include "cli.h"
#include "codec.h"
#include "control.h"
#include "embedded.h"
#include "module.h"
#include "remote.h"
#include "solver.h"
#include "vm.h"

#define EXIT_AVM_ERROR CLI_EXIT_AVM_ERROR
#define EXIT_USAGE CLI_EXIT_USAGE

static const char *const progname = cli__progname;

/* Options shared by the commands that open a node. */
typedef struct node_opts {
    const char *machine, *controller, *data;
    bool ephemeral, json;
    bool data_given;
} node_opts;

/* Consumes a node option at argv[*i]; returns 1 if it did, 0 if not, -1 on error. */
static int node_opt(node_opts *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (strcmp(a, "--json") == 0) {
        o->json = true;
        return 1;
    }
    if (strcmp(a, "--ephemeral") == 0) {
        o->ephemeral = true;
        return 1;
    }
    if (strcmp(a, "--data") == 0 || strcmp(a, "--machine") == 0 ||
        strcmp(a, "--controller") == 0) {
        if (*i + 1 >= argc || argv[*i + 1][0] == '\0') {
            fprintf(stderr, "%s: %s needs a value\n", progname, a);
            return -1;
        }
        const char *v = argv[++*i];
        if (a[2] == 'd') {
            o->data = v;
            o->data_given = true;
        } else if (a[2] == 'm') {
            o->machine = v;
        } else {
            o->controller = v;
        }
        return 1;
    }
    return 0;
}

static int open_node(const node_opts *o, avm_embedded *e)
{
    if (o->ephemeral) {
        if (avm_embedded_init(e, o->machine, o->controller) != 0) {
            fprintf(stderr, "%s: out of memory\n", progname);
            return EXIT_USAGE;
        }
        return 0;
    }
    char dir[4096];
    const char *path = o->data;
    if (path == NULL) {
        if (avm_embedded_default_dir(o->machine, dir, sizeof(dir)) != 0) {
            fprintf(stderr,
                    "%s: no data directory: set --data DIR, AVM_DATA or HOME, or use "
                    "--ephemeral\n",
                    progname);
            return EXIT_USAGE;
        }
        path = dir;
    }
    char err[1024] = "";
    int rv = avm_embedded_open(e, o->machine, o->controller, path, err, sizeof(err));
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", progname, err[0] ? err : avm_strerror(rv));
        return EXIT_USAGE;
    }
    return 0;
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "%s: check takes one FILE\n", progname);
        return EXIT_USAGE;
    }
    avm_module *m = cli__compile_file(argv[0], false);
    if (m == NULL)
        return EXIT_USAGE;
    int nb = 0, np = 0, nf = 0;
    for (uint32_t i = 0; i < m->nfuncs; i++) {
        nb += m->funcs[i].kind == AVM_FN_BEHAVIOR;
        np += m->funcs[i].kind == AVM_FN_PURE;
        nf += m->funcs[i].kind == AVM_FN_FUNC;
    }
    printf("%s: ok (%d behaviours, %d pure functions, %d functions, %s)\n", argv[0], nb,
           np, nf, m->main_fn >= 0 ? "with main" : "no main");
    avm_module_release(m);
    return 0;
}

/* Prints an execution's outcome; returns the exit code it means. */
/* trace_empty: the trace is asked for but must be shown empty (the specification's
 * failure result carries no trace: a failed strict run shows none). */
static int print_outcome(avm_exec *x, avm_embedded *e, const char *exec_id, bool json,
                         bool trace, bool trace_empty, bool store, const char *mode)
{
    avm_run_status st = avm_exec_status(x);
    avm_buf b;
    avm_buf_init(&b);
    int code = st == AVM_RUN_DONE ? 0 : EXIT_AVM_ERROR;
    if (json) {
        avm_buf_puts(&b, "{\"status\":");
        if (st == AVM_RUN_DONE) {
            avm_buf_puts(&b, "\"ok\",\"result\":");
            avm_val_json(&b, avm_exec_result(x));
        } else if (st == AVM_RUN_FAILED) {
            avm_buf_puts(&b, "\"error\",\"error\":");
            avm_error_json(&b, avm_exec_error(x));
        } else if (st == AVM_RUN_BLOCKED) {
            avm_buf_puts(&b, "\"blocked\",\"waiting\":");
            avm_val_json(&b, avm_exec_blocked_on(x));
        } else {
            avm_buf_puts(&b, "\"interrupted\"");
        }
        if (exec_id != NULL) {
            avm_buf_puts(&b, ",\"execution\":");
            avm_json_str(&b, exec_id, strlen(exec_id));
        }
        if (mode != NULL)
            avm_buf_printf(&b, ",\"mode\":\"%s\"", mode);
        avm_buf_printf(&b, ",\"events\":%llu",
                       (unsigned long long)avm_exec_event_counter(x));
        if (trace) {
            avm_buf_puts(&b, ",\"trace\":[");
            for (size_t i = 0; !trace_empty && i < avm_exec_trace_len(x); i++) {
                if (i)
                    avm_buf_puts(&b, ",");
                avm_event_json(&b, &avm_exec_trace(x)[i]);
            }
            avm_buf_puts(&b, "]");
        }
        if (store && e != NULL) {
            avm_buf_puts(&b, ",\"store\":");
            avm_embedded_dump(e, &b, true);
        }
        avm_buf_puts(&b, "}");
        cli__print_json_line(&b);
        avm_buf_free(&b);
        return code;
    }
    if (trace && !trace_empty) {
        for (size_t i = 0; i < avm_exec_trace_len(x); i++) {
            avm_buf_puts(&b, "  ");
            avm_event_print(&b, &avm_exec_trace(x)[i]);
            avm_buf_puts(&b, "\n");
        }
    }
    if (store && e != NULL) {
        avm_buf_puts(&b, "store:\n");
        avm_embedded_dump(e, &b, false);
    }
    fputs(avm_buf_cstr(&b), stdout);
    avm_buf_free(&b);
    avm_buf_init(&b);
    if (st == AVM_RUN_DONE) {
        avm_val_print(&b, avm_exec_result(x));
        printf("%s\n", avm_buf_cstr(&b));
    } else if (st == AVM_RUN_FAILED) {
        avm_error_print(&b, avm_exec_error(x));
        fprintf(stderr, "error: %s\n", avm_buf_cstr(&b));
    } else if (st == AVM_RUN_BLOCKED) {
        avm_val_print(&b, avm_exec_blocked_on(x));
        fprintf(
            stderr,
            "blocked: receive on %s waits for a message, and no message can arrive in "
            "an embedded run\n",
            avm_buf_cstr(&b));
    } else {
        fprintf(stderr, "interrupted: the execution has not finished\n");
    }
    avm_buf_free(&b);
    return code;
}

/* Records an execution's state and status in the node's store. */
/* Records an execution's state and status in the node's store: a checkpoint (the
 * state, and the part of its trace log the store does not hold yet) committed in
 * one step. The execution's checkpoint id must be set. */
static int save_exec(avm_embedded *e, const char *id, avm_exec *x)
{
    if (e->db == NULL)
        return 0;
    avm_buf st;
    avm_writeset ws;
    memset(&ws, 0, sizeof(ws));
    int rv = avm_exec_checkpoint(x, &st, &ws);
    bool ok = false;
    if (rv == 0)
        rv = e->store->ops->apply(e->store, &ws, &ok);
    if (rv == 0 && ok)
        avm_exec_checkpoint_saved(x, &ws);
    avm_buf_free(&st);
    if (rv != 0 || !ok) {
        fprintf(stderr, "%s: cannot record execution %s: %s\n", progname, id,
                rv ? avm_lmdb_errmsg(e->db) : "refused");
        return rv ? rv : AVM_ESTATE;
    }
    return 0;
}

/* Restores a recorded execution: its last state and its trace log. */
static int load_exec(avm_embedded *e, const char *id, avm_exec **out)
{
    uint8_t status;
    avm_buf state, log;
    avm_buf_init(&state);
    int rv = avm_lmdb_exec_get(e->db, id, &status, &state);
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", progname,
                rv == AVM_ENOTFOUND ? "no such execution" : avm_lmdb_errmsg(e->db));
        avm_buf_free(&state);
        return rv;
    }
    rv = avm_lmdb_trace_log(e->db, id, &log);
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", progname, avm_lmdb_errmsg(e->db));
        avm_buf_free(&state);
        return rv;
    }
    char err[1024] = "";
    rv = avm_exec_decode_ex((const uint8_t *)state.data, state.len,
                            (const uint8_t *)log.data, log.len, &e->plat, out, err,
                            sizeof(err));
    avm_buf_free(&state);
    avm_buf_free(&log);
    if (rv != 0)
        fprintf(stderr, "%s: execution %s cannot be restored: %s\n", progname, id, err);
    return rv;
}

/* Records the end of a durable execution in its sequence chart. */
static int log_end(avm_exec *x, const char *id)
{
    avm_run_status st = avm_exec_status(x);
    if (st != AVM_RUN_DONE && st != AVM_RUN_FAILED)
        return 0;
    avm_val detail;
    if (avm_cstr(AVM_STR, st == AVM_RUN_DONE ? "done" : "failed", &detail) != 0)
        return AVM_ENOMEM;
    int rv = avm_exec_log_runtime(x, "ExecutionTerminated", id, detail);
    avm_val_release(detail);
    return rv;
}

/* avmctl solve FILE [--timeout MS]: executeSolver on an SMT-LIB2 script. */
static int cmd_solve(int argc, char **argv)
{
    const char *file = NULL;
    int timeout = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--timeout") == 0 && i + 1 < argc) {
            if (cli__parse_ms(argv[++i], &timeout) != 0) {
                fprintf(stderr, "%s: solve: --timeout takes milliseconds, not %s\n",
                        progname, argv[i]);
                return EXIT_USAGE;
            }
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: solve: unknown option %s\n", progname, argv[i]);
            return EXIT_USAGE;
        } else if (file == NULL) {
            file = argv[i];
        } else {
            fprintf(stderr, "%s: solve: one FILE only\n", progname);
            return EXIT_USAGE;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "usage: %s solve FILE [--timeout MS]\n", progname);
        return EXIT_USAGE;
    }
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: solve: cannot read %s: %s\n", progname, file,
                strerror(errno));
        return EXIT_USAGE;
    }
    avm_buf text;
    avm_buf_init(&text);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && text.len <= AVM_SOLVER_MAX_TEXT)
        avm_buf_put(&text, chunk, n);
    if (f != stdin)
        fclose(f);
    avm_solver_cfg cfg = {.timeout_ms = (uint32_t)timeout};
    avm_buf out;
    avm_buf_init(&out);
    int rv = avm_solver_execute_smtlib(&cfg, text.data ? text.data : "", text.len, &out);
    avm_buf_free(&text);
    if (rv != 0)
        fprintf(stderr, "%s: solve: %s\n", progname, out.data ? out.data : "failed");
    else
        fputs(out.data ? out.data : "", stdout);
    avm_buf_free(&out);
    return rv == -AVM_ETOOBIG ? EXIT_USAGE : rv != 0 ? EXIT_AVM_ERROR : 0;
}

static int cmd_run(int argc, char **argv)
{
    node_opts o = {.machine = "node1", .controller = "main"};
    const char *file = NULL, *entry = NULL;
    bool trace = false, store = false;
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT, .keep_trace = true};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        int r = node_opt(&o, argc, argv, &i);
        if (r < 0)
            return EXIT_USAGE;
        if (r > 0)
            continue;
        if (strcmp(a, "--trace") == 0)
            trace = true;
        else if (strcmp(a, "--store") == 0)
            store = true;
        else if (strcmp(a, "--spec-strict") == 0)
            cfg.mode = AVM_MODE_STRICT;
        else if (strcmp(a, "--allow-unsafe") == 0)
            cfg.allow_unsafe = true;
        else if (strcmp(a, "--entry") == 0 && i + 1 < argc)
            entry = argv[++i];
        else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: run: unknown option %s (see %s help)\n", progname, a,
                    progname);
            return EXIT_USAGE;
        } else if (file == NULL) {
            file = a;
        } else {
            fprintf(stderr, "%s: run takes one FILE (got %s and %s)\n", progname, file,
                    a);
            return EXIT_USAGE;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "%s: run: missing FILE\n", progname);
        return EXIT_USAGE;
    }
    if (cfg.mode == AVM_MODE_STRICT && !o.data_given)
        o.ephemeral = true;
    avm_module *m = cli__compile_file(file, o.json);
    if (m == NULL)
        return EXIT_USAGE;
    int fn = -1;
    if (entry != NULL && (fn = cli__entry_fn(m, file, entry)) < 0) {
        avm_module_release(m);
        return EXIT_USAGE;
    }
    /* A durable run keeps the sequence-chart records in its trace log, for
     * `exec trace --format`. */
    cfg.msc = !o.ephemeral;
    avm_embedded e;
    if (open_node(&o, &e) != 0) {
        avm_module_release(m);
        return EXIT_USAGE;
    }
    avm_exec *x = NULL;
    char errmsg[1024] = "";
    int rv = avm_embedded_start(&e, m, fn, &cfg, &x, errmsg, sizeof(errmsg));
    avm_module_release(m);
    if (rv != 0) {
        if (o.json) {
            avm_buf b;
            avm_buf_init(&b);
            avm_buf_printf(&b, "{\"status\":\"%s\",\"message\":",
                           rv == AVM_EUNSAFE ? "refused" : "load-error");
            avm_json_str(&b, errmsg, strlen(errmsg));
            avm_buf_puts(&b, "}");
            cli__print_json_line(&b);
            avm_buf_free(&b);
        }
        fprintf(stderr, "%s: %s\n", progname, errmsg[0] ? errmsg : avm_strerror(rv));
        avm_embedded_close(&e);
        return EXIT_USAGE;
    }
    /* A durable run is an execution record: checkpointed with every commit, and
     * saved at its start and at its end, so that `exec result` and `exec resume`
     * work after a crash or a restart. */
    char id[300] = "";
    if (e.db != NULL) {
        snprintf(id, sizeof(id), "%s/e%llu", o.machine,
                 (unsigned long long)e.store->ops->next_seq(e.store));
        if (avm_exec_set_checkpoint(x, id) != 0 ||
            avm_exec_log_runtime(x, "ExecutionStarted", id, avm_nil()) != 0 ||
            save_exec(&e, id, x) != 0) {
            avm_exec_free(x);
            avm_embedded_close(&e);
            return EXIT_USAGE;
        }
    }
    avm_exec_run(x, 0);
    if (e.db != NULL && (log_end(x, id) != 0 || save_exec(&e, id, x) != 0)) {
        avm_exec_free(x);
        avm_embedded_close(&e);
        return EXIT_USAGE;
    }
    bool strict_fail =
        cfg.mode == AVM_MODE_STRICT && avm_exec_status(x) == AVM_RUN_FAILED;
    /* The specification's failure result carries no trace: a failed strict run
     * prints none. */
    int code = print_outcome(x, &e, e.db ? id : NULL, o.json, trace, strict_fail, store,
                             cfg.mode == AVM_MODE_STRICT ? "spec-strict" : "default");
    avm_exec_free(x);
    avm_embedded_close(&e);
    return code;
}

/* obj ------------------------------------------------------------------------- */

static int parse_node_only(node_opts *o, int argc, char **argv, const char **args,
                           int nargs, const char *what)
{
    int got = 0;
    for (int i = 0; i < argc; i++) {
        int r = node_opt(o, argc, argv, &i);
        if (r < 0)
            return -1;
        if (r > 0)
            continue;
        if (argv[i][0] == '-' && argv[i][1] != '\0') {
            fprintf(stderr, "%s: %s: unknown option %s\n", progname, what, argv[i]);
            return -1;
        }
        if (got == nargs) {
            fprintf(stderr, "%s: %s: unexpected argument %s\n", progname, what, argv[i]);
            return -1;
        }
        args[got++] = argv[i];
    }
    if (got != nargs) {
        fprintf(stderr, "%s: %s: missing argument (see %s help)\n", progname, what,
                progname);
        return -1;
    }
    return 0;
}

static int cmd_obj(const char *node, int argc, char **argv)
{
    node_opts o = {.machine = "node1", .controller = "main"};
    if (argc < 1) {
        fprintf(stderr, "%s: obj needs ls or show ID\n", progname);
        return EXIT_USAGE;
    }
    bool ls = strcmp(argv[0], "ls") == 0, show = strcmp(argv[0], "show") == 0;
    if (!ls && !show) {
        fprintf(stderr, "%s: obj: unknown subcommand '%s' (ls, show)\n", progname,
                argv[0]);
        return EXIT_USAGE;
    }
    if (node != NULL)
        return remote__obj(node, argv[0], argc - 1, argv + 1);
    const char *args[1] = {NULL};
    if (parse_node_only(&o, argc - 1, argv + 1, args, show ? 1 : 0, "obj") != 0)
        return EXIT_USAGE;
    avm_embedded e;
    if (open_node(&o, &e) != 0)
        return EXIT_USAGE;
    avm_store *s = e.store;
    avm_buf b;
    avm_buf_init(&b);
    int code = 0;
    if (ls) {
        avm_val ids;
        if (s->ops->ids(s, &ids) != 0) {
            fprintf(stderr, "%s: cannot list objects: %s\n", progname,
                    s->ops->last_error ? s->ops->last_error(s) : "store error");
            avm_embedded_close(&e);
            return EXIT_USAGE;
        }
        if (o.json)
            avm_buf_puts(&b, "[");
        for (uint32_t i = 0; i < ids.u.l->len; i++) {
            const avm_objrec *r = s->ops->get(s, NULL, ids.u.l->items[i]);
            if (r == NULL)
                continue;
            if (o.json) {
                if (i)
                    avm_buf_puts(&b, ",");
                avm_objrec_json(&b, r, false, false);
            } else {
                avm_val_print(&b, r->oid);
                avm_buf_puts(&b, "  ");
                avm_val_print(&b, r->beh.name);
                avm_buf_puts(&b, "  ");
                avm_val_print(&b, r->meta.current);
                avm_buf_printf(&b, "  v%llu\n", (unsigned long long)r->version);
            }
        }
        if (o.json) {
            avm_buf_puts(&b, "]");
            cli__print_json_line(&b);
        } else {
            fputs(avm_buf_cstr(&b), stdout);
        }
        avm_val_release(ids);
    } else {
        avm_val oid;
        if (cli__parse_oid(args[0], &oid) != 0) {
            avm_embedded_close(&e);
            return EXIT_USAGE;
        }
        const avm_objrec *r = s->ops->get(s, NULL, oid);
        if (r == NULL) {
            fprintf(stderr, "%s: no object %s in this node's store\n", progname, args[0]);
            code = EXIT_USAGE;
        } else if (o.json) {
            avm_objrec_json(&b, r, true, true);
            cli__print_json_line(&b);
        } else {
            avm_buf_puts(&b, "object      ");
            avm_val_print(&b, r->oid);
            avm_buf_puts(&b, "\nbehavior    ");
            avm_val_print(&b, r->beh.name);
            avm_buf_puts(&b, "\nmachine     ");
            avm_val_print(&b, r->meta.machine);
            avm_buf_puts(&b, "\ncreating    ");
            avm_val_print(&b, r->meta.creating);
            avm_buf_puts(&b, "\ncontroller  ");
            avm_val_print(&b, r->meta.current);
            avm_buf_printf(&b, "\nversion     %llu\nstate       ",
                           (unsigned long long)r->version);
            avm_val_print(&b, r->state);
            avm_buf_puts(&b, "\n");
            fputs(avm_buf_cstr(&b), stdout);
        }
        avm_val_release(oid);
    }
    avm_buf_free(&b);
    avm_embedded_close(&e);
    return code;
}

/* exec ------------------------------------------------------------------------ */

typedef struct ls_ctx {
    avm_buf *b;
    bool json;
    int n;
} ls_ctx;

static void exec_ls_one(void *arg, const char *id, uint8_t status)
{
    ls_ctx *c = arg;
    if (c->json) {
        avm_buf_puts(c->b, c->n ? ",{\"execution\":" : "{\"execution\":");
        avm_json_str(c->b, id, strlen(id));
        avm_buf_printf(c->b, ",\"status\":\"%s\"}", avm_embedded_status_name(status));
    } else {
        avm_buf_printf(c->b, "%s  %s\n", id, avm_embedded_status_name(status));
    }
    c->n++;
}

/* Takes `NAME VALUE` (or NAME=VALUE) out of argv[0..*argc), closing the gap; the
 * last one wins. Returns 0, or -1 after saying that the value is missing. */
static int take_opt(int *argc, char **argv, const char *name, const char **value)
{
    size_t n = strlen(name);
    for (int i = 0; i < *argc;) {
        const char *a = argv[i];
        int used;
        if (strcmp(a, name) == 0) {
            if (i + 1 >= *argc || argv[i + 1][0] == '\0') {
                fprintf(stderr, "%s: %s needs a value\n", progname, name);
                return -1;
            }
            *value = argv[i + 1];
            used = 2;
        } else if (strncmp(a, name, n) == 0 && a[n] == '=' && a[n + 1] != '\0') {
            *value = a + n + 1;
            used = 1;
        } else {
            i++;
            continue;
        }
        memmove(&argv[i], &argv[i + used], (size_t)(*argc - i - used) * sizeof(*argv));
        *argc -= used;
    }
    return 0;
}

/* exec trace ID --format F on the embedded node: the stored trace log as a chart. */
static int exec_chart(avm_embedded *e, const char *id, const char *format)
{
    avm_msc_format f;
    if (cli__parse_format(format, &f) != 0) {
        fprintf(stderr, "%s: exec trace: --format is text, mermaid or json, not %s\n",
                progname, format);
        return EXIT_USAGE;
    }
    uint8_t status;
    avm_buf state, log;
    avm_buf_init(&state);
    int rv = avm_lmdb_exec_get(e->db, id, &status, &state);
    avm_buf_free(&state);
    if (rv == 0)
        rv = avm_lmdb_trace_log(e->db, id, &log);
    if (rv != 0) {
        fprintf(stderr, "%s: %s\n", progname,
                rv == AVM_ENOTFOUND ? "no such execution" : avm_lmdb_errmsg(e->db));
        return EXIT_USAGE;
    }
    int code = cli__print_chart((const uint8_t *)log.data, log.len, f, id);
    avm_buf_free(&log);
    return code;
}

static int cmd_exec(const char *node, int argc, char **argv)
{
    node_opts o = {.machine = "node1", .controller = "main"};
    if (argc < 1) {
        fprintf(stderr,
                "%s: exec needs ls, show, result, trace, resume, suspend or kill\n",
                progname);
        return EXIT_USAGE;
    }
    const char *sub = argv[0];
    bool ls = strcmp(sub, "ls") == 0;
    bool remote_only = strcmp(sub, "suspend") == 0 || strcmp(sub, "kill") == 0 ||
                       strcmp(sub, "constraints") == 0;
    if (!ls && !remote_only && strcmp(sub, "show") != 0 && strcmp(sub, "result") != 0 &&
        strcmp(sub, "trace") != 0 && strcmp(sub, "resume") != 0) {
        fprintf(stderr, "%s: exec: unknown subcommand '%s'\n", progname, sub);
        return EXIT_USAGE;
    }
    if (node != NULL)
        return remote__exec(node, sub, argc - 1, argv + 1);
    if (remote_only) {
        fprintf(stderr,
                "%s: exec %s works on a node daemon (--node ADDR or AVM_NODE): an "
                "embedded execution runs only while avmctl does\n",
                progname, sub);
        return EXIT_USAGE;
    }
    /* exec trace --format renders the stored trace log as a sequence chart. */
    const char *format = NULL;
    int nargc = argc - 1;
    if (strcmp(sub, "trace") == 0 && take_opt(&nargc, argv + 1, "--format", &format) != 0)
        return EXIT_USAGE;
    const char *args[1] = {NULL};
    if (parse_node_only(&o, nargc, argv + 1, args, ls ? 0 : 1, "exec") != 0)
        return EXIT_USAGE;
    if (o.ephemeral) {
        fprintf(stderr, "%s: exec: an ephemeral node has no recorded executions\n",
                progname);
        return EXIT_USAGE;
    }
    avm_embedded e;
    if (open_node(&o, &e) != 0)
        return EXIT_USAGE;
    avm_buf b;
    avm_buf_init(&b);
    int code = 0;
    if (ls) {
        ls_ctx c = {.b = &b, .json = o.json};
        if (o.json)
            avm_buf_puts(&b, "[");
        if (avm_lmdb_exec_each(e.db, exec_ls_one, &c) != 0) {
            fprintf(stderr, "%s: %s\n", progname, avm_lmdb_errmsg(e.db));
            code = EXIT_USAGE;
        }
        if (o.json) {
            avm_buf_puts(&b, "]");
            cli__print_json_line(&b);
        } else {
            fputs(avm_buf_cstr(&b), stdout);
        }
        avm_buf_free(&b);
        avm_embedded_close(&e);
        return code;
    }
    if (format != NULL) {
        code = exec_chart(&e, args[0], format);
        avm_buf_free(&b);
        avm_embedded_close(&e);
        return code;
    }
    avm_exec *x = NULL;
    if (load_exec(&e, args[0], &x) != 0) {
        avm_embedded_close(&e);
        return EXIT_USAGE;
    }
    if (strcmp(sub, "resume") == 0) {
        avm_run_status st = avm_exec_status(x);
        if (st == AVM_RUN_DONE || st == AVM_RUN_FAILED) {
            fprintf(stderr, "%s: execution %s has already ended (%s)\n", progname,
                    args[0], avm_embedded_status_name(st));
        } else {
            if (avm_exec_set_checkpoint(x, args[0]) != 0 ||
                avm_exec_log_runtime(x, "ExecutionResumed", args[0], avm_nil()) != 0) {
                code = EXIT_USAGE;
                goto done;
            }
            avm_exec_run(x, 0);
            if (log_end(x, args[0]) != 0 || save_exec(&e, args[0], x) != 0) {
                code = EXIT_USAGE;
                goto done;
            }
        }
        code = print_outcome(x, &e, args[0], o.json, false, false, false, NULL);
    } else if (strcmp(sub, "trace") == 0) {
        code = print_outcome(x, NULL, args[0], o.json, true, false, false, NULL);
    } else if (strcmp(sub, "result") == 0) {
        code = print_outcome(x, NULL, args[0], o.json, false, false, false, NULL);
    } else {
        /* show */
        if (o.json) {
            code = print_outcome(x, NULL, args[0], true, false, false, false, NULL);
        } else {
            printf("execution   %s\nstatus      %s\nevents      %llu\nsteps       %llu\n",
                   args[0], avm_embedded_status_name(avm_exec_status(x)),
                   (unsigned long long)avm_exec_event_counter(x),
                   (unsigned long long)avm_exec_steps(x));
            code = print_outcome(x, NULL, args[0], false, false, false, false, NULL);
        }
    }
done:
    avm_exec_free(x);
    avm_embedded_close(&e);
    return code;
}

/* The token in the file at path: its first line that is neither blank nor a
 * `#` comment, without surrounding blanks. The file must be readable by its owner
 * only (chmod 600), like avmd's. 0, or -1 after saying why. */
static int read_token(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot read token file %s: %s\n", progname, path,
                strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0) {
        fprintf(stderr,
                "%s: token file %s has mode %04o: the group or others may read it "
                "(chmod 600 %s)\n",
                progname, path, (unsigned)(st.st_mode & 07777), path);
        fclose(f);
        return -1;
    }
    char line[1024];
    int rv = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        char *s = line;
        while (*s == ' ' || *s == '\t')
            s++;
        char *e = s + strlen(s);
        while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
            *--e = '\0';
        if (*s == '\0' || *s == '#')
            continue;
        if ((size_t)(e - s) >= n || strpbrk(s, " \t") != NULL) {
            fprintf(
                stderr,
                "%s: token file %s: the token must be one word of at most %zu bytes\n",
                progname, path, n - 1);
            break;
        }
        memcpy(out, s, (size_t)(e - s) + 1);
        rv = 0;
        break;
    }
    memset(line, 0, sizeof(line));
    if (rv != 0 && !ferror(f) && feof(f))
        fprintf(stderr, "%s: token file %s holds no token\n", progname, path);
    fclose(f);
    return rv;
}

static void pure_ls_one(void *arg, const avm_lmdb_pureinfo *p)
{
    ls_ctx *c = arg;
    const char *by = AVM_KIND_HAS_STR(p->by.kind) ? p->by.u.s->data : NULL;
    const char *ex = AVM_KIND_HAS_STR(p->exec.kind) ? p->exec.u.s->data : NULL;
    const char *ma = AVM_KIND_HAS_STR(p->machine.kind) ? p->machine.u.s->data : NULL;
    if (c->json) {
        avm_buf_puts(c->b, c->n ? ",{\"name\":" : "{\"name\":");
        avm_json_str(c->b, p->name.u.s->data, p->name.u.s->len);
        avm_buf_printf(c->b, ",\"version\":%llu", (unsigned long long)p->version);
        const char *keys[] = {"by", "exec", "machine"}, *vals[] = {by, ex, ma};
        for (int i = 0; i < 3; i++) {
            avm_buf_printf(c->b, ",\"%s\":", keys[i]);
            if (vals[i] != NULL)
                avm_json_str(c->b, vals[i], strlen(vals[i]));
            else
                avm_buf_puts(c->b, "null");
        }
        avm_buf_puts(c->b, "}");
    } else {
        avm_buf_printf(c->b, "%-20s %7llu  %-16s %-20s %s\n", p->name.u.s->data,
                       (unsigned long long)p->version, by ? by : "-", ex ? ex : "-",
                       ma ? ma : "-");
    }
    c->n++;
}

/* pure ls: the pure-function registry, of a node daemon or of the embedded node. */
static int cmd_pure(const char *node, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "ls") != 0) {
        fprintf(stderr, "%s: pure needs ls (see %s pure --help)\n", progname, progname);
        return EXIT_USAGE;
    }
    if (node != NULL)
        return remote__pure(node, argc - 1, argv + 1);
    node_opts o = {.machine = "node1", .controller = "main"};
    if (parse_node_only(&o, argc - 1, argv + 1, NULL, 0, "pure ls") != 0)
        return EXIT_USAGE;
    if (o.ephemeral) {
        fprintf(stderr, "%s: pure ls: an ephemeral node has no registry\n", progname);
        return EXIT_USAGE;
    }
    avm_embedded e;
    if (open_node(&o, &e) != 0)
        return EXIT_USAGE;
    avm_buf b;
    avm_buf_init(&b);
    ls_ctx c = {.b = &b, .json = o.json};
    if (o.json)
        avm_buf_puts(&b, "[");
    else
        avm_buf_printf(&b, "%-20s %7s  %-16s %-20s %s\n", "NAME", "VERSION", "BY", "EXEC",
                       "MACHINE");
    int code = 0;
    if (avm_lmdb_pure_each(e.db, pure_ls_one, &c) != 0) {
        fprintf(stderr, "%s: %s\n", progname, avm_lmdb_errmsg(e.db));
        code = EXIT_USAGE;
    }
    if (o.json) {
        avm_buf_puts(&b, "]");
        cli__print_json_line(&b);
    } else {
        fputs(avm_buf_cstr(&b), stdout);
    }
    avm_buf_free(&b);
    avm_embedded_close(&e);
    return code;
}

/* The commands that talk to a node daemon with --node (or $AVM_NODE) or open the
 * embedded node without it. */
int main(int argc, char **argv)
{
    if (argc < 2) {
        cli__usage(stderr, NULL, NULL);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 ||
        strcmp(cmd, "-h") == 0) {
        cli__usage(stdout, argc > 2 ? argv[2] : NULL, argc > 3 ? argv[3] : NULL);
        return 0;
    }
    static const char *const cmds[] = {"run",  "check",      "obj",    "exec",
                                       "send", "status",     "txs",    "cluster",
                                       "pure", "controller", "bundle", "solve"};
    bool known = false;
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        known = known || strcmp(cmd, cmds[i]) == 0;
    if (!known) {
        fprintf(stderr, "%s: unknown command '%s' (see %s help)\n", progname, cmd,
                progname);
        return EXIT_USAGE;
    }
    /* --node is global: taken out wherever it is, then each command parses the
     * rest. */
    int n = argc - 2;
    char **args = argv + 2;
    const char *node = NULL;
    if (take_opt(&n, args, "--node", &node) != 0)
        return EXIT_USAGE;
    if (node == NULL && getenv("AVM_NODE") != NULL && getenv("AVM_NODE")[0] != '\0')
        node = getenv("AVM_NODE");
    /* --token-file, else $AVM_TOKEN_FILE, else $AVM_TOKEN: sent with every request
     * to a node (avmd --auth-tokens). */
    const char *token_file = NULL;
    if (take_opt(&n, args, "--token-file", &token_file) != 0)
        return EXIT_USAGE;
    if (token_file == NULL && getenv("AVM_TOKEN_FILE") != NULL &&
        getenv("AVM_TOKEN_FILE")[0] != '\0')
        token_file = getenv("AVM_TOKEN_FILE");
    static char token[512];
    if (token_file != NULL) {
        if (read_token(token_file, token, sizeof(token)) != 0)
            return EXIT_USAGE;
        remote__set_token(token);
    } else if (getenv("AVM_TOKEN") != NULL && getenv("AVM_TOKEN")[0] != '\0') {
        remote__set_token(getenv("AVM_TOKEN"));
    }
    /* --tls-cert/--tls-key/--tls-ca/--tls-server-name, else $AVM_TLS_CERT, ...:
     * for a tls+tcp:// node. */
    static const struct {
        const char *opt, *env;
    } tls_opts[4] = {{"--tls-cert", "AVM_TLS_CERT"},
                     {"--tls-key", "AVM_TLS_KEY"},
                     {"--tls-ca", "AVM_TLS_CA"},
                     {"--tls-server-name", "AVM_TLS_SERVER_NAME"}};
    const char *tls_val[4] = {NULL, NULL, NULL, NULL};
    for (size_t k = 0; k < 4; k++) {
        if (take_opt(&n, args, tls_opts[k].opt, &tls_val[k]) != 0)
            return EXIT_USAGE;
        const char *e = getenv(tls_opts[k].env);
        if (tls_val[k] == NULL && e != NULL && e[0] != '\0')
            tls_val[k] = e;
    }
    static avm_ctl_tls tls;
    tls = (avm_ctl_tls){.cert = tls_val[0],
                        .key = tls_val[1],
                        .ca = tls_val[2],
                        .server_name = tls_val[3]};
    if (tls.cert != NULL || tls.key != NULL || tls.ca != NULL) {
        if (tls.ca == NULL && node != NULL && avm_ctl_url_is_tls(node)) {
            fprintf(stderr,
                    "%s: --tls-cert/--tls-key need --tls-ca FILE (or $AVM_TLS_CA): the "
                    "CA that signed the node's certificate\n",
                    progname);
            return EXIT_USAGE;
        }
        remote__set_tls(&tls);
    }
    if (cli__wants_help(n, args)) {
        cli__usage(stdout, cmd, n > 0 && args[0][0] != '-' ? args[0] : NULL);
        return 0;
    }
    const char *on = NULL;
    if (strcmp(cmd, "run") == 0 && take_opt(&n, args, "--on", &on) != 0)
        return EXIT_USAGE;
    if (on != NULL && node == NULL) {
        fprintf(stderr, "%s: run --on needs --node (a member of the cluster to ask)\n",
                progname);
        return EXIT_USAGE;
    }
    if (strcmp(cmd, "run") == 0)
        return node != NULL ? remote__run(node, on, n, args) : cmd_run(n, args);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(n, args);
    if (strcmp(cmd, "solve") == 0)
        return cmd_solve(n, args);
    if (strcmp(cmd, "obj") == 0)
        return cmd_obj(node, n, args);
    if (strcmp(cmd, "exec") == 0)
        return cmd_exec(node, n, args);
    if (strcmp(cmd, "send") == 0)
        return remote__send(node, n, args);
    if (strcmp(cmd, "txs") == 0)
        return remote__txs(node, n, args);
    if (strcmp(cmd, "pure") == 0)
        return cmd_pure(node, n, args);
    if (strcmp(cmd, "cluster") == 0)
        return remote__cluster(node, n, args);
    if (strcmp(cmd, "controller") == 0)
        return remote__controller(node, n, args);
    if (strcmp(cmd, "bundle") == 0)
        return remote__bundle(node, n, args);
    return remote__status(node, n, args);
}
