/* avmctl against a node daemon (remote.h): each command is one or more control
 * requests (docs/protocol.md); replies are association lists, printed as aligned
 * "key value" lines or, with --json, as one JSON object. */
#include <ctype.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "avm_err.h"
#include "cli.h"
#include "control.h"
#include "literal.h"
#include "module.h"
#include "remote.h"

#define DEFAULT_TIMEOUT_MS 10000
#define STATUS_TIMEOUT_MS 5000
/* run waits for the end in exec.result calls of this long each. */
#define POLL_WAIT_MS 500
/* ... and polls no faster than this if the node answers at once. */
#define POLL_MIN_MS 100

/* --- Options ------------------------------------------------------------ */

/* Options beyond --json and --timeout; each command allows some. */
enum {
    OPT_ENTRY = 1 << 0,
    OPT_STRICT = 1 << 1,
    OPT_UNSAFE = 1 << 2,
    OPT_DETACH = 1 << 3,
    OPT_TRACE = 1 << 4,
    OPT_WAIT = 1 << 5,
    OPT_REPLICAS = 1 << 8,
    OPT_FORMAT = 1 << 6,
    OPT_FROM = 1 << 7,
    OPT_BUNDLE = 1 << 9,
    OPT_SMTLIB = 1 << 10,
};

typedef struct ropts {
    bool json;
    int timeout_ms; /* 0: the command's default */
    const char *entry;
    bool strict, unsafe, detach, trace, smtlib;
    int wait_ms;
    const char *format, *from;
    const char *args[3];
    int nargs;
    const char *replicas; /* controller create */
    const char *bundle;   /* run */
} ropts;

/* The value of the option at argv[*i], or NULL after saying it is missing. */
static const char *opt_value(const char *what, int argc, char **argv, int *i)
{
    if (*i + 1 >= argc || argv[*i + 1][0] == '\0') {
        fprintf(stderr, "%s: %s: %s needs a value\n", cli__progname, what, argv[*i]);
        return NULL;
    }
    return argv[++*i];
}

static bool is_option(const char *a)
{
    /* "-5" is a value (send OBJ -5), not an option. */
    return a[0] == '-' && a[1] != '\0' && !isdigit((unsigned char)a[1]);
}

/* Parses argv into o: the allowed options and at most maxargs operands. Returns 0
 * or -1 after printing why. */
static int parse_opts(const char *what, unsigned allowed, int maxargs, int argc,
                      char **argv, ropts *o)
{
    static const char *const embedded_only[] = {"--data", "--ephemeral", "--machine",
                                                "--controller", "--store"};
    memset(o, 0, sizeof(*o));
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v;
        if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "--timeout") == 0 || strcmp(a, "--wait") == 0) {
            bool wait = a[2] == 'w';
            if (wait && !(allowed & OPT_WAIT))
                goto unknown;
            if ((v = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
            if (cli__parse_ms(v, wait ? &o->wait_ms : &o->timeout_ms) != 0) {
                fprintf(stderr, "%s: %s: %s takes milliseconds (1 to 86400000), not %s\n",
                        cli__progname, what, a, v);
                return -1;
            }
        } else if (strcmp(a, "--entry") == 0 && (allowed & OPT_ENTRY)) {
            if ((o->entry = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(a, "--format") == 0 && (allowed & OPT_FORMAT)) {
            if ((o->format = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(a, "--from") == 0 && (allowed & OPT_FROM)) {
            if ((o->from = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(a, "--spec-strict") == 0 && (allowed & OPT_STRICT)) {
            o->strict = true;
        } else if (strcmp(a, "--allow-unsafe") == 0 && (allowed & OPT_UNSAFE)) {
            o->unsafe = true;
        } else if (strcmp(a, "--detach") == 0 && (allowed & OPT_DETACH)) {
            o->detach = true;
        } else if (strcmp(a, "--smtlib") == 0 && (allowed & OPT_SMTLIB)) {
            o->smtlib = true;
        } else if (strcmp(a, "--trace") == 0 && (allowed & OPT_TRACE)) {
            o->trace = true;
        } else if (strcmp(a, "--bundle") == 0 && (allowed & OPT_BUNDLE)) {
            if ((o->bundle = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
        } else if (strcmp(a, "--replicas") == 0 && (allowed & OPT_REPLICAS)) {
            if ((o->replicas = opt_value(what, argc, argv, &i)) == NULL)
                return -1;
        } else if (is_option(a)) {
            for (size_t k = 0; k < sizeof(embedded_only) / sizeof(embedded_only[0]);
                 k++) {
                if (strcmp(a, embedded_only[k]) == 0) {
                    fprintf(stderr,
                            "%s: %s: %s is for the embedded node, not for a node "
                            "daemon (--node or $AVM_NODE)\n",
                            cli__progname, what, a);
                    return -1;
                }
            }
            goto unknown;
        } else if (o->nargs < maxargs) {
            o->args[o->nargs++] = a;
        } else {
            fprintf(stderr, "%s: %s: unexpected argument %s (see %s %s --help)\n",
                    cli__progname, what, a, cli__progname, what);
            return -1;
        }
        continue;
    unknown:
        fprintf(stderr, "%s: %s: unknown option %s (see %s %s --help)\n", cli__progname,
                what, a, cli__progname, what);
        return -1;
    }
    return 0;
}

/* Checks that the operands are all there. */
static int need_args(const char *what, const ropts *o, int n, const char *names)
{
    if (o->nargs < n) {
        fprintf(stderr, "%s: %s: missing %s (see %s %s --help)\n", cli__progname, what,
                names, cli__progname, what);
        return -1;
    }
    return 0;
}

/* --- Talking to the node ------------------------------------------------ */

typedef struct remote {
    const char *addr;
    const char *what; /* the command, for messages */
    avm_ctl_client *c;
    int timeout_ms; /* per answer */
    bool json;
} remote;

/* The exit code of a failed request: 3 when the node refused it for want of a
 * token or a permission (EAUTH, EPERM); else 2, whatever the node answered (an
 * unknown execution or object, a request the node refuses or cannot serve in the
 * execution's state, a node that does not answer). Exit 1 is kept for what the
 * program did: an execution that failed or was killed. */
static int fail_code(int code)
{
    return code == AVM_EAUTH || code == AVM_EPERM ? CLI_EXIT_AUTH : CLI_EXIT_USAGE;
}

/* The token sent with every request (remote__set_token), or NULL. */
static const char *auth_token;

void remote__set_token(const char *token)
{
    auth_token = token;
}

/* The TLS files (remote__set_tls), or NULL. */
static const avm_ctl_tls *tls_files;

void remote__set_tls(const avm_ctl_tls *tls)
{
    tls_files = tls;
}

/* run's progress line on a terminal (stderr), while it is shown. */
static bool progress_on;

static void progress_clear(void)
{
    if (!progress_on)
        return;
    fputs("\r\033[K", stderr);
    fflush(stderr);
    progress_on = false;
}

/* Prints a failure: "avmctl: MESSAGE" on stderr and, with --json, a
 * {"status":"node-error","code":NAME,"message":TEXT} document on stdout ("refused"
 * for a program run refuses as unsafe). Returns the exit code. */
static int fail(const remote *r, int code, const char *msg)
{
    progress_clear();
    if (msg == NULL || msg[0] == '\0')
        msg = avm_strerror(code);
    if (code == AVM_EAUTH)
        fprintf(stderr,
                "%s: %s: the node refused the request (%s; give a token with "
                "--token-file FILE, $AVM_TOKEN_FILE or $AVM_TOKEN)\n",
                cli__progname, r->addr, msg);
    else if (code == AVM_EPERM)
        fprintf(stderr, "%s: %s: permission denied: %s\n", cli__progname, r->addr, msg);
    else
        fprintf(stderr, "%s: %s\n", cli__progname, msg);
    if (r->json) {
        avm_buf b;
        avm_buf_init(&b);
        /* As the embedded run says it of a program refused at load time. */
        bool refused = code == AVM_EUNSAFE && strcmp(r->what, "run") == 0;
        avm_buf_printf(&b, "{\"status\":\"%s\",\"code\":\"%s\",\"message\":",
                       refused ? "refused" : "node-error",
                       avm_err_name(code) ? avm_err_name(code) : "EUNKNOWN");
        avm_json_str(&b, msg, strlen(msg));
        avm_buf_puts(&b, "}");
        cli__print_json_line(&b);
        avm_buf_free(&b);
    }
    return fail_code(code);
}

/* Sends op with body (owned: released here) and waits up to timeout_ms for the
 * reply. 0 with *reply owned, or the exit code after printing the failure. */
static void remote_close(remote *r);

/* Operations that change nothing on the node, so that asking again is harmless. */
static bool idempotent(const char *op)
{
    static const char *const ops[] = {"status",     "exec.ls", "exec.show", "exec.result",
                                      "exec.trace", "obj.ls",  "obj.show",  "txs"};
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (strcmp(op, ops[i]) == 0)
            return true;
    return false;
}

static int call(remote *r, const char *op, avm_val body, int timeout_ms, avm_val *reply)
{
    char err[1024] = "";
    int rv = 0;
    *reply = avm_nil();
    /* A connection that drops before the reply (the client never resends, so an
     * operation runs at most once) is tried again, on a new connection, when
     * asking again changes nothing; a timeout is not. */
    for (int attempt = 0; attempt < 3; attempt++) {
        if (r->c == NULL) {
            rv = avm_ctl_client_open_tls(r->addr, tls_files, &r->c, err, sizeof(err));
            if (rv == 0 && auth_token != NULL &&
                (rv = avm_ctl_client_set_token(r->c, auth_token)) != 0)
                snprintf(err, sizeof(err), "out of memory");
        }
        if (rv == 0)
            rv = avm_ctl_call(r->c, op, body, timeout_ms, reply, err, sizeof(err));
        /* Only a connection that dropped: not a timeout, nor a connection that
         * could not be made (a refused TLS handshake). */
        if (rv != AVM_EIO || !idempotent(op) ||
            strstr(err, "closed before the reply") == NULL)
            break;
        remote_close(r);
    }
    avm_val_release(body);
    return rv == 0 ? 0 : fail(r, rv, err);
}

static void remote_close(remote *r)
{
    if (r->c != NULL)
        avm_ctl_client_close(r->c);
    r->c = NULL;
}

/* Finishes a request body: 0, or the exit code after printing the failure. */
static int body_done(remote *r, avm_ctl_body *b, avm_val *out)
{
    int rv = avm_ctl_body_finish(b, out);
    avm_ctl_body_free(b);
    return rv == 0 ? 0 : fail(r, rv, "out of memory building the request");
}

/* A body of one string: ((key s)). */
static int body_str(remote *r, const char *key, const char *s, avm_val *out)
{
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, key, s);
    return body_done(r, &b, out);
}

/* --- Reading replies ---------------------------------------------------- */

/* The string under key (borrowed), or NULL when absent or not a string. */
static const char *get_cstr(avm_val body, const char *key)
{
    avm_val v = avm_ctl_get(body, key);
    return v.kind == AVM_STR ? v.u.s->data : NULL;
}

static uint64_t get_u64(avm_val body, const char *key)
{
    avm_val v = avm_ctl_get(body, key);
    return v.kind == AVM_INT && v.u.i > 0 ? (uint64_t)v.u.i : 0;
}

/* A non-empty list of (string value) lists. */
static bool is_alist(avm_val v)
{
    if (v.kind != AVM_LIST || avm_list_len(v) == 0)
        return false;
    for (size_t i = 0; i < avm_list_len(v); i++) {
        avm_val p = avm_list_at(v, i);
        if (p.kind != AVM_LIST || avm_list_len(p) != 2 ||
            avm_list_at(p, 0).kind != AVM_STR)
            return false;
    }
    return true;
}

/* A non-empty list of association lists. */
static bool is_alist_list(avm_val v)
{
    if (v.kind != AVM_LIST || avm_list_len(v) == 0)
        return false;
    for (size_t i = 0; i < avm_list_len(v); i++)
        if (!is_alist(avm_list_at(v, i)))
            return false;
    return true;
}

/* Keys whose values are the program's data, printed as the language writes them;
 * other strings are names and messages, printed bare. */
static bool is_data_key(const char *k)
{
    return strcmp(k, "result") == 0 || strcmp(k, "state") == 0 ||
           strcmp(k, "value") == 0 || strcmp(k, "input") == 0;
}

/* Keys that hold association lists (or lists of them) in replies. */
static bool is_nested_key(const char *k)
{
    return strcmp(k, "executions") == 0 || strcmp(k, "tx") == 0 ||
           strcmp(k, "transactions") == 0 || strcmp(k, "functions") == 0;
}

static void json_alist(avm_buf *b, avm_val body);

static void json_val(avm_buf *b, const char *key, avm_val v)
{
    if (is_nested_key(key) && is_alist(v)) {
        json_alist(b, v);
    } else if (is_nested_key(key) && is_alist_list(v)) {
        avm_buf_puts(b, "[");
        for (size_t i = 0; i < avm_list_len(v); i++) {
            if (i > 0)
                avm_buf_puts(b, ",");
            json_alist(b, avm_list_at(v, i));
        }
        avm_buf_puts(b, "]");
    } else {
        avm_val_json(b, v);
    }
}

/* An association list as a JSON object (values with avm_val_json; the nested keys'
 * association lists as objects). Anything else is an empty object. */
static void json_alist(avm_buf *b, avm_val body)
{
    avm_buf_puts(b, "{");
    for (size_t i = 0; is_alist(body) && i < avm_list_len(body); i++) {
        avm_val k = avm_list_at(avm_list_at(body, i), 0);
        if (i > 0)
            avm_buf_puts(b, ",");
        avm_json_str(b, k.u.s->data, k.u.s->len);
        avm_buf_puts(b, ":");
        json_val(b, k.u.s->data, avm_list_at(avm_list_at(body, i), 1));
    }
    avm_buf_puts(b, "}");
}

/* A string's bytes with control characters escaped. */
static void put_bare(avm_buf *b, avm_val s)
{
    for (uint32_t i = 0; i < s.u.s->len; i++) {
        unsigned char c = (unsigned char)s.u.s->data[i];
        if (c < 0x20 || c == 0x7f)
            avm_buf_printf(b, "\\x%02x", c);
        else
            avm_buf_put(b, &c, 1);
    }
}

static void text_val(avm_buf *b, const char *key, avm_val v)
{
    if (is_data_key(key)) {
        avm_val_print(b, v);
    } else if (v.kind == AVM_NIL) {
        avm_buf_puts(b, "-");
    } else if (v.kind == AVM_STR) {
        put_bare(b, v);
    } else if (is_alist(v)) {
        /* Inline: "running 1, suspended 0". */
        for (size_t i = 0; i < avm_list_len(v); i++) {
            avm_val p = avm_list_at(v, i);
            if (i > 0)
                avm_buf_puts(b, ", ");
            put_bare(b, avm_list_at(p, 0));
            avm_buf_puts(b, " ");
            text_val(b, avm_list_at(p, 0).u.s->data, avm_list_at(p, 1));
        }
    } else {
        avm_val_print(b, v);
    }
}

/* An association list as "key value" lines, keys padded to one column (at least
 * 12 wide, as the embedded node's listings). */
static void text_alist(avm_buf *b, avm_val body)
{
    int width = 11;
    for (size_t i = 0; is_alist(body) && i < avm_list_len(body); i++) {
        avm_val k = avm_list_at(avm_list_at(body, i), 0);
        if (k.u.s->len > (uint32_t)width && k.u.s->len < 64)
            width = (int)k.u.s->len;
    }
    for (size_t i = 0; is_alist(body) && i < avm_list_len(body); i++) {
        avm_val p = avm_list_at(body, i), k = avm_list_at(p, 0);
        avm_buf_printf(b, "%-*s ", width, k.u.s->data);
        text_val(b, k.u.s->data, avm_list_at(p, 1));
        avm_buf_puts(b, "\n");
    }
}

/* Prints a reply body: JSON object or text lines. */
static void print_body(const remote *r, avm_val body)
{
    avm_buf b;
    avm_buf_init(&b);
    if (r->json) {
        json_alist(&b, body);
        cli__print_json_line(&b);
    } else {
        text_alist(&b, body);
        fputs(avm_buf_cstr(&b), stdout);
    }
    avm_buf_free(&b);
}

/* --- Outcomes ----------------------------------------------------------- */

/* Prints an execution's outcome from an exec.show body as embedded run prints it
 * (the result on stdout, an error on stderr; or one JSON object with id, status,
 * outcome, result, error, steps and, when given, the chart as "trace"). Returns the
 * exit code. */
static int print_outcome(const remote *r, const char *id, avm_val body,
                         avm_buf *chart_json)
{
    const char *status = get_cstr(body, "status");
    const char *outcome = get_cstr(body, "outcome");
    const char *error = get_cstr(body, "error");
    bool ended = status != NULL && strcmp(status, "terminated") == 0;
    int code = ended && outcome != NULL && strcmp(outcome, "done") == 0
                   ? CLI_EXIT_OK
                   : CLI_EXIT_AVM_ERROR;
    avm_buf b;
    avm_buf_init(&b);
    if (r->json) {
        avm_buf_puts(&b, "{\"id\":");
        avm_json_str(&b, id, strlen(id));
        const char *keys[] = {"status", "outcome", "result", "error", "steps"};
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
            avm_buf_printf(&b, ",\"%s\":", keys[i]);
            avm_val_json(&b, avm_ctl_get(body, keys[i]));
        }
        if (chart_json != NULL) {
            avm_buf_puts(&b, ",\"trace\":");
            avm_buf_puts(&b, avm_buf_cstr(chart_json));
        }
        avm_buf_puts(&b, "}");
        cli__print_json_line(&b);
        avm_buf_free(&b);
        return code;
    }
    if (!ended) {
        const char *waiting = get_cstr(body, "waiting");
        avm_val on = avm_ctl_get(body, "blocked_on");
        if (waiting != NULL && strcmp(waiting, "message") == 0) {
            avm_val_print(&b, on);
            fprintf(stderr,
                    "%s: the execution has not finished: receive on %s waits for a "
                    "message\n",
                    status ? status : "running", avm_buf_cstr(&b));
        } else if (waiting != NULL && strcmp(waiting, "commit") == 0) {
            fprintf(stderr, "%s: the execution has not finished: it waits for a commit\n",
                    status ? status : "running");
        } else {
            fprintf(stderr, "%s: the execution has not finished\n",
                    status ? status : "unknown");
        }
    } else if (code == CLI_EXIT_OK) {
        avm_val_print(&b, avm_ctl_get(body, "result"));
        printf("%s\n", avm_buf_cstr(&b));
    } else if (outcome != NULL && strcmp(outcome, "killed") == 0) {
        fprintf(stderr, "killed: the execution was stopped before its end\n");
    } else {
        fprintf(stderr, "error: %s\n",
                error ? error : "the execution ended without a result");
    }
    avm_buf_free(&b);
    return code;
}

/* Fetches the trace log of execution id and renders it in format f: printed on
 * stdout, or into *json (for embedding in a document) when json is not NULL.
 * Returns 0 or the exit code after printing the failure. */
static int fetch_chart(remote *r, const char *id, avm_msc_format f, avm_buf *json)
{
    avm_val body, reply;
    int code = body_str(r, "id", id, &body);
    if (code == 0)
        code = call(r, "exec.trace", body, r->timeout_ms, &reply);
    if (code != 0)
        return code;
    avm_val log = avm_ctl_get(reply, "log");
    if (log.kind != AVM_STR) {
        code = fail(r, AVM_EMALFORMED, "the node's exec.trace reply has no log");
    } else if (json == NULL) {
        code = cli__print_chart((const uint8_t *)log.u.s->data, log.u.s->len, f, id);
    } else {
        char err[512] = "";
        int rv = avm_msc_render((const uint8_t *)log.u.s->data, log.u.s->len, f, id, json,
                                err, sizeof(err));
        if (rv != 0) {
            char msg[700];
            snprintf(msg, sizeof(msg), "execution %s: %s", id, err);
            code = fail(r, rv, msg);
        }
    }
    avm_val_release(reply);
    return code;
}

/* --- run ---------------------------------------------------------------- */

static volatile sig_atomic_t interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void progress(const char *id, avm_val body, double elapsed)
{
    const char *status = get_cstr(body, "status"), *waiting = get_cstr(body, "waiting");
    fprintf(stderr, "\r\033[K%s  %s%s%s  %llu steps  %.1fs", id, status ? status : "?",
            waiting ? ", waiting for a " : "", waiting ? waiting : "",
            (unsigned long long)get_u64(body, "steps"), elapsed);
    fflush(stderr);
    progress_on = true;
}

/* Polls exec.result until execution id has terminated; *out gets the last reply.
 * Returns 0, or the exit code (after printing why) of a failed call or of an
 * interrupt. */
static int wait_end(remote *r, const char *id, avm_val *out)
{
    bool tty = isatty(2) == 1;
    double t0 = now_s();
    struct sigaction sa, old;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    interrupted = 0;
    sigaction(SIGINT, &sa, &old);
    int code = 0;
    for (;;) {
        avm_ctl_body b;
        avm_val body, reply;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "id", id);
        avm_ctl_put_int(&b, "wait_ms", POLL_WAIT_MS);
        double t = now_s();
        if ((code = body_done(r, &b, &body)) != 0 ||
            (code = call(r, "exec.result", body, POLL_WAIT_MS + r->timeout_ms, &reply)) !=
                0)
            break;
        const char *status = get_cstr(reply, "status");
        if (status != NULL && strcmp(status, "terminated") == 0) {
            *out = reply;
            break;
        }
        if (tty)
            progress(id, reply, now_s() - t0);
        avm_val_release(reply);
        double took = now_s() - t;
        if (!interrupted && took * 1000 < POLL_MIN_MS) {
            struct timespec ts = {0, (long)((POLL_MIN_MS - took * 1000) * 1e6)};
            nanosleep(&ts, NULL);
        }
        if (interrupted) {
            progress_clear();
            fprintf(stderr,
                    "%s: stopped waiting; execution %s goes on (see %s exec result %s "
                    "--node %s)\n",
                    cli__progname, id, cli__progname, id, r->addr);
            code = CLI_EXIT_AVM_ERROR;
            break;
        }
    }
    sigaction(SIGINT, &old, NULL);
    progress_clear();
    return code;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s != NULL && s[1] != '\0' ? s + 1 : path;
}

int remote__run(const char *node, const char *on, int argc, char **argv)
{
    ropts o;
    if (parse_opts("run",
                   OPT_ENTRY | OPT_STRICT | OPT_UNSAFE | OPT_DETACH | OPT_TRACE |
                       OPT_BUNDLE,
                   1, argc, argv, &o) != 0 ||
        need_args("run", &o, 1, "FILE") != 0)
        return CLI_EXIT_USAGE;
    const char *file = o.args[0];
    remote r = {.addr = node,
                .what = "run",
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS};

    avm_module *m = cli__compile_file(file, o.json);
    if (m == NULL)
        return CLI_EXIT_USAGE;
    if (o.entry != NULL && cli__entry_fn(m, file, o.entry) < 0) {
        avm_module_release(m);
        return CLI_EXIT_USAGE;
    }
    avm_buf enc;
    avm_buf_init(&enc);
    int rv = avm_module_encode(m, &enc);
    avm_module_release(m);
    avm_val mod = avm_nil();
    if (rv == 0)
        rv = avm_str_new(AVM_STR, enc.data, enc.len, &mod);
    avm_buf_free(&enc);
    if (rv != 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s: the compiled module cannot be sent: %s", file,
                 avm_strerror(rv));
        return fail(&r, rv, msg);
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, "module", mod);
    avm_ctl_put_str(&b, "name", base_name(file));
    if (o.entry != NULL)
        avm_ctl_put_str(&b, "entry", o.entry);
    avm_ctl_put_bool(&b, "spec_strict", o.strict);
    avm_ctl_put_bool(&b, "allow_unsafe", o.unsafe);
    if (o.bundle != NULL)
        avm_ctl_put_str(&b, "bundle", o.bundle);
    if (on != NULL)
        avm_ctl_put_str(&b, "on", on);
    avm_val body, reply;
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, "run", body, r.timeout_ms, &reply);
    if (code != 0) {
        remote_close(&r);
        return code;
    }
    const char *idp = get_cstr(reply, "id");
    char id[512];
    snprintf(id, sizeof(id), "%s", idp ? idp : "");
    avm_val_release(reply);
    if (id[0] == '\0') {
        code = fail(&r, AVM_EMALFORMED, "the node's run reply has no execution id");
        remote_close(&r);
        return code;
    }
    if (o.detach) {
        if (o.json) {
            avm_buf j;
            avm_buf_init(&j);
            avm_buf_puts(&j, "{\"id\":");
            avm_json_str(&j, id, strlen(id));
            avm_buf_puts(&j, "}");
            cli__print_json_line(&j);
            avm_buf_free(&j);
        } else {
            printf("%s\n", id);
        }
        remote_close(&r);
        return 0;
    }
    code = wait_end(&r, id, &reply);
    if (code != 0) {
        remote_close(&r);
        return code;
    }
    avm_buf chart;
    avm_buf_init(&chart);
    if (o.trace)
        code = fetch_chart(&r, id, o.json ? AVM_MSC_JSON : AVM_MSC_TEXT,
                           o.json ? &chart : NULL);
    if (code == 0)
        code = print_outcome(&r, id, reply, o.trace && o.json ? &chart : NULL);
    avm_buf_free(&chart);
    avm_val_release(reply);
    remote_close(&r);
    return code;
}

/* --- exec --------------------------------------------------------------- */

static int exec_ls(remote *r)
{
    avm_val body = avm_nil(), reply;
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    int code = body_done(r, &b, &body);
    if (code == 0)
        code = call(r, "exec.ls", body, r->timeout_ms, &reply);
    if (code != 0)
        return code;
    if (r->json) {
        print_body(r, reply);
        avm_val_release(reply);
        return 0;
    }
    avm_val xs = avm_ctl_get(reply, "executions");
    avm_buf t;
    avm_buf_init(&t);
    for (size_t i = 0; xs.kind == AVM_LIST && i < avm_list_len(xs); i++) {
        avm_val x = avm_list_at(xs, i);
        const char *keys[] = {"id", "status", "outcome", "steps", "name"};
        for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
            if (k > 0)
                avm_buf_puts(&t, "  ");
            text_val(&t, keys[k], avm_ctl_get(x, keys[k]));
        }
        avm_buf_puts(&t, "\n");
    }
    fputs(avm_buf_cstr(&t), stdout);
    avm_buf_free(&t);
    avm_val_release(reply);
    return 0;
}

int remote__exec(const char *node, const char *sub, int argc, char **argv)
{
    char what[64];
    snprintf(what, sizeof(what), "exec %s", sub);
    bool ls = strcmp(sub, "ls") == 0, result = strcmp(sub, "result") == 0,
         trace = strcmp(sub, "trace") == 0, cons = strcmp(sub, "constraints") == 0;
    ropts o;
    unsigned allowed = result ? OPT_WAIT : trace ? OPT_FORMAT : cons ? OPT_SMTLIB : 0;
    if (parse_opts(what, allowed, ls ? 0 : 1, argc, argv, &o) != 0 ||
        need_args(what, &o, ls ? 0 : 1, "ID") != 0)
        return CLI_EXIT_USAGE;
    avm_msc_format f = o.json ? AVM_MSC_JSON : AVM_MSC_TEXT;
    if (o.format != NULL && cli__parse_format(o.format, &f) != 0) {
        fprintf(stderr, "%s: %s: --format is text, mermaid or json, not %s\n",
                cli__progname, what, o.format);
        return CLI_EXIT_USAGE;
    }
    remote r = {.addr = node,
                .what = what,
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS};
    const char *id = o.args[0];
    int code;
    if (ls) {
        code = exec_ls(&r);
    } else if (trace) {
        /* The chart is the document: --json is --format json. */
        code = fetch_chart(&r, id, f, NULL);
    } else {
        static const struct {
            const char *sub, *op;
        } ops[] = {{"show", "exec.show"},       {"result", "exec.result"},
                   {"suspend", "exec.suspend"}, {"resume", "exec.resume"},
                   {"kill", "exec.kill"},       {"constraints", "exec.constraints"}};
        const char *op = NULL;
        for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
            if (strcmp(ops[i].sub, sub) == 0)
                op = ops[i].op;
        if (op == NULL) {
            fprintf(stderr, "%s: exec: unknown subcommand '%s'\n", cli__progname, sub);
            return CLI_EXIT_USAGE;
        }
        avm_ctl_body b;
        avm_val body, reply;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "id", id);
        if (result && o.wait_ms > 0)
            avm_ctl_put_int(&b, "wait_ms", o.wait_ms);
        code = body_done(&r, &b, &body);
        if (code == 0)
            code = call(&r, op, body, r.timeout_ms + (result ? o.wait_ms : 0), &reply);
        if (code == 0) {
            if (result) {
                code = print_outcome(&r, id, reply, NULL);
            } else if (cons && o.smtlib && !r.json) {
                const char *t = get_cstr(reply, "smtlib");
                fputs(t ? t : "", stdout);
            } else if (strcmp(sub, "show") == 0 || cons || r.json) {
                print_body(&r, reply);
            } else {
                const char *st = get_cstr(reply, "status");
                printf("%s  %s\n", id, st ? st : "-");
            }
            avm_val_release(reply);
        }
    }
    remote_close(&r);
    return code;
}

/* --- obj ---------------------------------------------------------------- */

int remote__obj(const char *node, const char *sub, int argc, char **argv)
{
    bool ls = strcmp(sub, "ls") == 0;
    const char *what = ls ? "obj ls" : "obj show";
    ropts o;
    if (parse_opts(what, 0, ls ? 0 : 1, argc, argv, &o) != 0 ||
        need_args(what, &o, ls ? 0 : 1, "ID") != 0)
        return CLI_EXIT_USAGE;
    remote r = {.addr = node,
                .what = what,
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS};
    avm_ctl_body b;
    avm_val body, reply;
    avm_ctl_body_init(&b);
    if (!ls) {
        avm_val oid;
        if (cli__parse_oid(o.args[0], &oid) != 0) {
            avm_ctl_body_free(&b);
            return fail(&r, AVM_ENOMEM, "out of memory");
        }
        avm_ctl_put(&b, "id", oid);
    }
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, ls ? "obj.ls" : "obj.show", body, r.timeout_ms, &reply);
    if (code != 0) {
        remote_close(&r);
        return code;
    }
    avm_buf t;
    avm_buf_init(&t);
    if (r.json) {
        print_body(&r, reply);
    } else if (ls) {
        avm_val ids = avm_ctl_get(reply, "objects");
        for (size_t i = 0; ids.kind == AVM_LIST && i < avm_list_len(ids); i++) {
            avm_val_print(&t, avm_list_at(ids, i));
            avm_buf_puts(&t, "\n");
        }
    } else {
        /* As the embedded obj show prints it. */
        static const char *const rows[][2] = {
            {"object", "id"},         {"behavior", "behavior"},  {"machine", "machine"},
            {"creating", "creating"}, {"controller", "current"}, {"version", "version"},
            {"state", "state"}};
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            avm_buf_printf(&t, "%-11s ", rows[i][0]);
            avm_val_print(&t, avm_ctl_get(reply, rows[i][1]));
            avm_buf_puts(&t, "\n");
        }
    }
    fputs(avm_buf_cstr(&t), stdout);
    avm_buf_free(&t);
    avm_val_release(reply);
    remote_close(&r);
    return 0;
}

/* --- send, status ------------------------------------------------------- */

static int need_node(const char *node, const char *what)
{
    if (node != NULL)
        return 0;
    fprintf(stderr,
            "%s: %s talks to a node daemon: give --node ADDR or set AVM_NODE (see %s "
            "%s --help)\n",
            cli__progname, what, cli__progname, what);
    return CLI_EXIT_USAGE;
}

int remote__send(const char *node, int argc, char **argv)
{
    ropts o;
    if (parse_opts("send", OPT_FROM, 2, argc, argv, &o) != 0 ||
        need_args("send", &o, 2, "OBJ and VALUE") != 0 || need_node(node, "send") != 0)
        return CLI_EXIT_USAGE;
    remote r = {.addr = node,
                .what = "send",
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : DEFAULT_TIMEOUT_MS};
    avm_val oid, v;
    char err[512];
    if (cli__parse_value(o.args[1], &v, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s: send: %s\n", cli__progname, err);
        return CLI_EXIT_USAGE;
    }
    if (cli__parse_oid(o.args[0], &oid) != 0) {
        avm_val_release(v);
        return fail(&r, AVM_ENOMEM, "out of memory");
    }
    avm_ctl_body b;
    avm_val body, reply;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, "to", oid);
    avm_ctl_put(&b, "value", v);
    if (o.from != NULL)
        avm_ctl_put_str(&b, "from", o.from);
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, "send", body, r.timeout_ms, &reply);
    if (code == 0) {
        if (r.json) {
            print_body(&r, reply);
        } else {
            printf("message %llu in the mailbox of %s (lamport %llu)\n",
                   (unsigned long long)get_u64(reply, "seq"), o.args[0],
                   (unsigned long long)get_u64(reply, "lamport"));
        }
        avm_val_release(reply);
    }
    remote_close(&r);
    return code;
}

/* A command that sends op with an empty body and prints the reply (as text with
 * print_text when given, unless --json). */
static int simple(const char *node, const char *name, const char *op, int argc,
                  char **argv, void (*print_text)(avm_val reply))
{
    ropts o;
    if (parse_opts(name, 0, 0, argc, argv, &o) != 0 || need_node(node, name) != 0)
        return CLI_EXIT_USAGE;
    remote r = {.addr = node,
                .what = name,
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : STATUS_TIMEOUT_MS};
    avm_ctl_body b;
    avm_val body, reply;
    avm_ctl_body_init(&b);
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, op, body, r.timeout_ms, &reply);
    if (code == 0) {
        if (print_text != NULL && !r.json)
            print_text(reply);
        else
            print_body(&r, reply);
        avm_val_release(reply);
    }
    remote_close(&r);
    return code;
}

int remote__status(const char *node, int argc, char **argv)
{
    return simple(node, "status", "status", argc, argv, NULL);
}

int remote__txs(const char *node, int argc, char **argv)
{
    return simple(node, "txs", "txs", argc, argv, NULL);
}

/* pure ls: NAME VERSION BY EXEC MACHINE lines. */
static void print_pure(avm_val reply)
{
    avm_val fs = avm_ctl_get(reply, "functions");
    printf("%-20s %7s  %-16s %-20s %s\n", "NAME", "VERSION", "BY", "EXEC", "MACHINE");
    for (size_t i = 0; fs.kind == AVM_LIST && i < avm_list_len(fs); i++) {
        avm_val f = avm_list_at(fs, i);
        avm_val by = avm_ctl_get(f, "by"), ex = avm_ctl_get(f, "exec"),
                ma = avm_ctl_get(f, "machine");
        printf("%-20s %7llu  %-16s %-20s %s\n",
               get_cstr(f, "name") ? get_cstr(f, "name") : "?",
               (unsigned long long)get_u64(f, "version"),
               AVM_KIND_HAS_STR(by.kind) ? by.u.s->data : "-",
               AVM_KIND_HAS_STR(ex.kind) ? ex.u.s->data : "-",
               AVM_KIND_HAS_STR(ma.kind) ? ma.u.s->data : "-");
    }
}

int remote__pure(const char *node, int argc, char **argv)
{
    return simple(node, "pure ls", "pure.ls", argc, argv, print_pure);
}

/* --- cluster ------------------------------------------------------------ */

static const char *cstr_or(avm_val v, const char *dflt)
{
    return v.kind == AVM_STR ? v.u.s->data : dflt;
}

/* cluster.status as text: the members, then a row of reachability per view. */
static void print_cluster(avm_val reply)
{
    avm_val ms = avm_ctl_get(reply, "members"), vs = avm_ctl_get(reply, "views");
    printf("%-16s %-32s %-12s\n", "MEMBER", "ADDRESS", "CONTROLLER");
    for (size_t i = 0; ms.kind == AVM_LIST && i < avm_list_len(ms); i++) {
        avm_val m = avm_list_at(ms, i);
        if (m.kind != AVM_LIST || avm_list_len(m) < 3)
            continue;
        printf("%-16s %-32s %-12s\n", cstr_or(avm_list_at(m, 0), "?"),
               cstr_or(avm_list_at(m, 1), "?"), cstr_or(avm_list_at(m, 2), "?"));
    }
    printf("\nreachability (row: as seen from; up/DOWN, phi, ms silent)\n");
    for (size_t i = 0; vs.kind == AVM_LIST && i < avm_list_len(vs); i++) {
        avm_val v = avm_list_at(vs, i);
        if (v.kind != AVM_LIST || avm_list_len(v) != 2)
            continue;
        avm_val view = avm_list_at(v, 1);
        printf("%-16s", cstr_or(avm_list_at(v, 0), "?"));
        if (view.kind != AVM_LIST) {
            printf(" ? (%s)\n", cstr_or(view, "no answer"));
            continue;
        }
        for (size_t k = 0; k < avm_list_len(view); k++) {
            avm_val e = avm_list_at(view, k);
            if (e.kind != AVM_LIST || avm_list_len(e) != 4 ||
                avm_list_at(e, 2).kind != AVM_INT || avm_list_at(e, 3).kind != AVM_INT)
                continue;
            printf(" %s=%s(phi %.1f, %lldms)", cstr_or(avm_list_at(e, 0), "?"),
                   avm_truthy(avm_list_at(e, 1)) ? "up" : "DOWN",
                   (double)avm_list_at(e, 2).u.i / 1000.0,
                   (long long)avm_list_at(e, 3).u.i);
        }
        printf("\n");
    }
}

int remote__cluster(const char *node, int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "status") != 0) {
        fprintf(stderr, "%s: cluster: expected 'status' (see %s help cluster)\n",
                cli__progname, cli__progname);
        return CLI_EXIT_USAGE;
    }
    return simple(node, "cluster status", "cluster.status", argc - 1, argv + 1,
                  print_cluster);
}

/* --- controller ------------------------------------------------------------ */

static void print_ctrl_ls(avm_val reply)
{
    avm_val cs = avm_ctl_get(reply, "controllers");
    printf("%-20s %-14s %-8s %-12s %s\n", "CONTROLLER", "LEADER", "TERM", "HERE",
           "REPLICAS");
    for (size_t i = 0; cs.kind == AVM_LIST && i < avm_list_len(cs); i++) {
        avm_val c = avm_list_at(cs, i);
        if (c.kind != AVM_LIST || avm_list_len(c) != 5)
            continue;
        printf("%-20s %-14s %-8lld %-12s", cstr_or(avm_list_at(c, 0), "?"),
               cstr_or(avm_list_at(c, 1), "-"),
               avm_list_at(c, 2).kind == AVM_INT ? (long long)avm_list_at(c, 2).u.i
                                                 : -1LL,
               cstr_or(avm_list_at(c, 4), "?"));
        avm_val reps = avm_list_at(c, 3);
        for (size_t k = 0; reps.kind == AVM_LIST && k < avm_list_len(reps); k++)
            printf("%s%s", k ? "," : " ", cstr_or(avm_list_at(reps, k), "?"));
        printf("\n");
    }
}

static long long int_or(avm_val body, const char *key)
{
    avm_val v = avm_ctl_get(body, key);
    return v.kind == AVM_INT ? (long long)v.u.i : -1;
}

static void print_ctrl_status(avm_val reply)
{
    printf("controller %s (as %s sees it: %s)\n",
           cstr_or(avm_ctl_get(reply, "name"), "?"),
           cstr_or(avm_ctl_get(reply, "self"), "?"),
           cstr_or(avm_ctl_get(reply, "state"), "?"));
    printf("leader %s, term %lld, commit %lld, applied %lld, last index %lld, snapshot "
           "%lld, quorum %s\n",
           cstr_or(avm_ctl_get(reply, "leader"), "unknown"), int_or(reply, "term"),
           int_or(reply, "commit"), int_or(reply, "applied"), int_or(reply, "last_index"),
           int_or(reply, "snapshot_index"),
           avm_truthy(avm_ctl_get(reply, "quorum")) ? "yes" : "no");
    if (avm_ctl_get(reply, "why").kind == AVM_STR)
        printf("stopped: %s\n", avm_ctl_get(reply, "why").u.s->data);
    avm_val ms = avm_ctl_get(reply, "members");
    printf("%-16s %-10s %-10s %s\n", "REPLICA", "ROLE", "REACHABLE", "MATCH");
    for (size_t i = 0; ms.kind == AVM_LIST && i < avm_list_len(ms); i++) {
        avm_val m = avm_list_at(ms, i);
        if (m.kind != AVM_LIST || avm_list_len(m) != 4)
            continue;
        long long match = avm_list_at(m, 3).kind == AVM_INT ? avm_list_at(m, 3).u.i : -1;
        printf("%-16s %-10s %-10s ", cstr_or(avm_list_at(m, 0), "?"),
               cstr_or(avm_list_at(m, 1), "?"),
               avm_truthy(avm_list_at(m, 2)) ? "yes" : "NO");
        if (match >= 0)
            printf("%lld\n", match);
        else
            printf("-\n");
    }
}

static void print_ctrl_value(avm_val reply)
{
    avm_val v = avm_ctl_get(reply, "value");
    if (v.kind == AVM_STR)
        fwrite(v.u.s->data, 1, v.u.s->len, stdout);
    printf("\n");
}

/* A list value of the comma-separated names in s. */
static int names_val(const char *s, avm_val *out)
{
    avm_val items[16];
    size_t n = 0;
    const char *p = s;
    while (*p && n < 16) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == 0 || avm_str_new(AVM_STR, p, len, &items[n]) != 0)
            break;
        n++;
        p += len + (comma ? 1 : 0);
        if (comma == NULL)
            break;
    }
    if (*p && (n == 16 || strchr(p, ',') != NULL || n == 0)) {
        for (size_t i = 0; i < n; i++)
            avm_val_release(items[i]);
        return -1;
    }
    return avm_list_from(items, n, out);
}

int remote__controller(const char *node, int argc, char **argv)
{
    static const struct {
        const char *sub, *op, *operands;
        int nargs;
    } subs[] = {
        {"create", "ctrl.create", "NAME", 1},
        {"ls", "ctrl.ls", "", 0},
        {"status", "ctrl.status", "NAME", 1},
        {"add", "ctrl.add", "NAME NODE", 2},
        {"remove", "ctrl.remove", "NAME NODE", 2},
        {"transfer", "ctrl.transfer", "NAME [NODE]", 1},
        {"put", "ctrl.put", "NAME KEY VALUE", 3},
        {"get", "ctrl.get", "NAME KEY", 2},
        {"bench", "ctrl.bench", "NAME COUNT DEPTH", 3},
        {"latency", "ctrl.latency", "", 0},
    };
    int k = -1;
    for (size_t i = 0; argc > 0 && i < sizeof(subs) / sizeof(subs[0]); i++)
        if (strcmp(argv[0], subs[i].sub) == 0)
            k = (int)i;
    if (k < 0) {
        fprintf(
            stderr,
            "%s: controller: expected create, ls, status, add, remove, transfer, put, "
            "get, bench or latency (see %s help controller)\n",
            cli__progname, cli__progname);
        return CLI_EXIT_USAGE;
    }
    char what[64];
    snprintf(what, sizeof(what), "controller %s", subs[k].sub);
    ropts o;
    int maxargs = strcmp(subs[k].sub, "transfer") == 0 ? 2 : k == 9 ? 1 : subs[k].nargs;
    if (parse_opts(what, k == 0 ? OPT_REPLICAS : 0, maxargs, argc - 1, argv + 1, &o) !=
            0 ||
        need_args(what, &o, subs[k].nargs, subs[k].operands) != 0 ||
        need_node(node, what) != 0)
        return CLI_EXIT_USAGE;
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    const char *name_key = k >= 6 && k <= 7 ? "controller" : "name";
    if (subs[k].nargs > 0)
        avm_ctl_put_str(&b, name_key, o.args[0]);
    if (k == 0) {
        avm_val reps;
        if (o.replicas == NULL || names_val(o.replicas, &reps) != 0) {
            avm_ctl_body_free(&b);
            fprintf(stderr,
                    "%s: %s: --replicas N1,N2,... (1 to 7 member names) is "
                    "required\n",
                    cli__progname, what);
            return CLI_EXIT_USAGE;
        }
        avm_ctl_put(&b, "replicas", reps);
    } else if (k >= 3 && k <= 5 && o.nargs > 1) {
        avm_ctl_put_str(&b, "node", o.args[1]);
    } else if (k == 5) {
        avm_ctl_put_str(&b, "node", "");
    } else if (k == 6) {
        avm_ctl_put_str(&b, "key", o.args[1]);
        avm_ctl_put_str(&b, "value", o.args[2]);
    } else if (k == 7) {
        avm_ctl_put_str(&b, "key", o.args[1]);
    } else if (k == 8) {
        avm_ctl_put_int(&b, "count", strtoll(o.args[1], NULL, 10));
        avm_ctl_put_int(&b, "depth", strtoll(o.args[2], NULL, 10));
    } else if (k == 9) {
        if (o.nargs > 0 && strcmp(o.args[0], "reset") != 0) {
            avm_ctl_body_free(&b);
            fprintf(stderr, "%s: %s: expected nothing or 'reset'\n", cli__progname, what);
            return CLI_EXIT_USAGE;
        }
        avm_ctl_put_bool(&b, "reset", o.nargs > 0);
    }
    remote r = {.addr = node,
                .what = what,
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : 15000};
    avm_val body, reply;
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, subs[k].op, body, r.timeout_ms, &reply);
    if (code == 0) {
        if (r.json)
            print_body(&r, reply);
        else if (k == 1)
            print_ctrl_ls(reply);
        else if (k == 2)
            print_ctrl_status(reply);
        else if (k == 7)
            print_ctrl_value(reply);
        else
            print_body(&r, reply);
        avm_val_release(reply);
    }
    remote_close(&r);
    return code;
}

int remote__bundle(const char *node, int argc, char **argv)
{
    bool create = argc > 0 && strcmp(argv[0], "create") == 0;
    bool status = argc > 0 && strcmp(argv[0], "status") == 0;
    if (!create && !status) {
        fprintf(stderr, "%s: bundle: expected create or status (see %s help bundle)\n",
                cli__progname, cli__progname);
        return CLI_EXIT_USAGE;
    }
    const char *what = create ? "bundle create" : "bundle status";
    ropts o;
    if (parse_opts(what, 0, create ? 3 : 1, argc - 1, argv + 1, &o) != 0 ||
        need_args(what, &o, create ? 2 : 1, create ? "NAME MEMBERS" : "BUNDLE") != 0 ||
        need_node(node, what) != 0)
        return CLI_EXIT_USAGE;
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    if (create) {
        char *end;
        long long members = strtoll(o.args[1], &end, 10);
        long long deadline = o.nargs > 2 ? strtoll(o.args[2], &end, 10) : 0;
        if (members < 1 || members > 64 || (o.nargs > 2 && (deadline < 1 || *end))) {
            avm_ctl_body_free(&b);
            fprintf(stderr,
                    "%s: %s: MEMBERS is 1 to 64, DEADLINE_MS a positive number of "
                    "milliseconds\n",
                    cli__progname, what);
            return CLI_EXIT_USAGE;
        }
        avm_ctl_put_str(&b, "name", o.args[0]);
        avm_ctl_put_int(&b, "members", members);
        if (o.nargs > 2)
            avm_ctl_put_int(&b, "timeout_ms", deadline);
    } else {
        avm_ctl_put_str(&b, "bundle", o.args[0]);
    }
    remote r = {.addr = node,
                .what = what,
                .json = o.json,
                .timeout_ms = o.timeout_ms ? o.timeout_ms : 5000};
    avm_val body, reply;
    int code = body_done(&r, &b, &body);
    if (code == 0)
        code = call(&r, create ? "bundle.create" : "bundle.status", body, r.timeout_ms,
                    &reply);
    if (code == 0) {
        print_body(&r, reply);
        avm_val_release(reply);
    }
    remote_close(&r);
    return code;
}
