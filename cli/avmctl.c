/* avmctl: run AVM programs and operate nodes.
 *
 * Exit codes: 0 success; 1 the program ended in an AVM error (or blocked forever);
 * 2 bad usage, unreadable file, or a program that does not compile or is refused
 * at load time. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "compiler.h"
#include "embedded.h"
#include "module.h"
#include "vm.h"

#define EXIT_AVM_ERROR 1
#define EXIT_USAGE 2

static const char *progname = "avmctl";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s <command> [options]\n"
            "\n"
            "commands:\n"
            "  run FILE       run FILE's (main ...) on an embedded single node\n"
            "  check FILE     compile FILE and report errors, without running it\n"
            "  help           this text\n"
            "\n"
            "run options:\n"
            "  --json            machine-readable output (result or error, trace, store)\n"
            "  --trace           print the trace (the log entries of the run)\n"
            "  --store           print the objects left in the store\n"
            "  --spec-strict     the literal semantics of the specification's "
            "interpreter\n"
            "  --allow-unsafe    grant the unsafe instructions (reflect, scryMeta, "
            "scryDeep,\n"
            "                    reifyTxState, reifyConstraints, registerPure)\n"
            "  --machine NAME    this node's machine id (default node1)\n"
            "  --controller NAME its default controller (default main)\n"
            "  --entry NAME      run the parameterless (defun NAME () ...) instead of main\n"
            "\n"
            "exit codes: 0 success, 1 the program failed with an AVM error, 2 bad usage\n"
            "or a program that does not compile or is refused at load time.\n",
            progname);
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open %s: %s\n", progname, path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (buf == NULL) {
            fprintf(stderr, "%s: out of memory reading %s\n", progname, path);
            fclose(f);
            return -1;
        }
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap)
            break;
        if (cap >= 64u * 1024 * 1024) {
            fprintf(stderr, "%s: %s is larger than 64 MiB\n", progname, path);
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
        fprintf(stderr, "%s: cannot read %s: %s\n", progname, path, strerror(errno));
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    *out = buf;
    *len = n;
    return 0;
}

static avm_module *compile_file(const char *path, bool json)
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
            avm_buf_puts(&b, "}\n");
            fputs(avm_buf_cstr(&b), stdout);
            avm_buf_free(&b);
        }
        fprintf(stderr, "%s: %s\n", progname, msg);
        return NULL;
    }
    return m;
}

static int cmd_check(int argc, char **argv)
{
    if (argc != 1) {
        fprintf(stderr, "%s: check takes one FILE\n", progname);
        return EXIT_USAGE;
    }
    avm_module *m = compile_file(argv[0], false);
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

static int cmd_run(int argc, char **argv)
{
    const char *file = NULL, *machine = "node1", *controller = "main", *entry = NULL;
    bool json = false, trace = false, store = false;
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT, .keep_trace = true};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--json") == 0)
            json = true;
        else if (strcmp(a, "--trace") == 0)
            trace = true;
        else if (strcmp(a, "--store") == 0)
            store = true;
        else if (strcmp(a, "--spec-strict") == 0)
            cfg.mode = AVM_MODE_STRICT;
        else if (strcmp(a, "--allow-unsafe") == 0)
            cfg.allow_unsafe = true;
        else if (strcmp(a, "--entry") == 0 && i + 1 < argc)
            entry = argv[++i];
        else if ((strcmp(a, "--machine") == 0 || strcmp(a, "--controller") == 0) &&
                 i + 1 < argc) {
            if (argv[i + 1][0] == '\0') {
                fprintf(stderr, "%s: %s needs a non-empty name\n", progname, a);
                return EXIT_USAGE;
            }
            *(a[2] == 'm' ? &machine : &controller) = argv[++i];
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "%s: run: unknown option %s (see %s help)\n", progname, a,
                    progname);
            return EXIT_USAGE;
        } else if (file == NULL) {
            file = a;
        } else {
            fprintf(stderr, "%s: run takes one FILE (got %s and %s)\n", progname, file, a);
            return EXIT_USAGE;
        }
    }
    if (file == NULL) {
        fprintf(stderr, "%s: run: missing FILE\n", progname);
        return EXIT_USAGE;
    }
    avm_module *m = compile_file(file, json);
    if (m == NULL)
        return EXIT_USAGE;

    int fn = -1;
    if (entry != NULL) {
        fn = avm_module_find(m, entry, AVM_FN_FUNC);
        if (fn < 0 || m->funcs[fn].nparams != 0) {
            fprintf(stderr, "%s: %s has no function '%s' without parameters to run\n",
                    progname, file, entry);
            avm_module_release(m);
            return EXIT_USAGE;
        }
    }
    avm_embedded e;
    if (avm_embedded_init(&e, machine, controller) != 0) {
        fprintf(stderr, "%s: out of memory\n", progname);
        avm_module_release(m);
        return EXIT_USAGE;
    }
    avm_exec *x = NULL;
    char errmsg[1024] = "";
    int rv = avm_embedded_run(&e, m, fn, &cfg, &x, errmsg, sizeof(errmsg));
    avm_module_release(m);
    if (rv != 0) {
        if (json) {
            avm_buf b;
            avm_buf_init(&b);
            avm_buf_printf(&b, "{\"status\":\"%s\",\"message\":",
                           rv == AVM_EUNSAFE ? "refused" : "load-error");
            avm_json_str(&b, errmsg, strlen(errmsg));
            avm_buf_puts(&b, "}\n");
            fputs(avm_buf_cstr(&b), stdout);
            avm_buf_free(&b);
        }
        fprintf(stderr, "%s: %s\n", progname, errmsg[0] ? errmsg : avm_strerror(rv));
        avm_embedded_close(&e);
        return EXIT_USAGE;
    }

    avm_run_status st = avm_exec_status(x);
    bool strict_fail = cfg.mode == AVM_MODE_STRICT && st == AVM_RUN_FAILED;
    avm_buf b;
    avm_buf_init(&b);
    int code = 0;
    if (json) {
        avm_buf_puts(&b, "{\"status\":");
        if (st == AVM_RUN_DONE) {
            avm_buf_puts(&b, "\"ok\",\"result\":");
            avm_val_json(&b, avm_exec_result(x));
        } else if (st == AVM_RUN_FAILED) {
            avm_buf_puts(&b, "\"error\",\"error\":");
            avm_error_json(&b, avm_exec_error(x));
            code = EXIT_AVM_ERROR;
        } else {
            avm_buf_puts(&b, "\"blocked\",\"waiting\":");
            avm_val_json(&b, avm_exec_blocked_on(x));
            code = EXIT_AVM_ERROR;
        }
        avm_buf_printf(&b, ",\"mode\":\"%s\",\"events\":%llu",
                       cfg.mode == AVM_MODE_STRICT ? "spec-strict" : "default",
                       (unsigned long long)avm_exec_event_counter(x));
        if (trace) {
            /* The specification's failure result carries no trace. */
            avm_buf_puts(&b, ",\"trace\":[");
            size_t n = strict_fail ? 0 : avm_exec_trace_len(x);
            for (size_t i = 0; i < n; i++) {
                if (i)
                    avm_buf_puts(&b, ",");
                avm_event_json(&b, &avm_exec_trace(x)[i]);
            }
            avm_buf_puts(&b, "]");
        }
        if (store) {
            avm_buf_puts(&b, ",\"store\":");
            avm_embedded_dump(&e, &b, true);
        }
        avm_buf_puts(&b, "}\n");
        fputs(avm_buf_cstr(&b), stdout);
    } else {
        if (trace && !strict_fail) {
            for (size_t i = 0; i < avm_exec_trace_len(x); i++) {
                avm_buf_puts(&b, "  ");
                avm_event_print(&b, &avm_exec_trace(x)[i]);
                avm_buf_puts(&b, "\n");
            }
        }
        if (store) {
            avm_buf_puts(&b, "store:\n");
            avm_embedded_dump(&e, &b, false);
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
            code = EXIT_AVM_ERROR;
        } else {
            avm_val_print(&b, avm_exec_blocked_on(x));
            fprintf(stderr,
                    "blocked: receive on %s waits for a message, and no message can "
                    "arrive in an embedded run (use a node: avmd)\n",
                    avm_buf_cstr(&b));
            code = EXIT_AVM_ERROR;
        }
    }
    avm_buf_free(&b);
    avm_exec_free(x);
    avm_embedded_close(&e);
    return code;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    if (strcmp(cmd, "check") == 0)
        return cmd_check(argc - 2, argv + 2);
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "%s: unknown command '%s' (see %s help)\n", progname, cmd, progname);
    return EXIT_USAGE;
}
