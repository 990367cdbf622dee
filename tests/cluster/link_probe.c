/* link_probe: joins a running avmd's cluster as a member named "probe" and sends it
 * bad node-to-node requests and messages: each request must get the error reply it
 * should, a bad execution must come back refused with a reason, and the node must
 * still answer afterwards. With GROUP, the name of a replicated controller this node
 * leads, it also proposes write sets to that group directly: one that creates an
 * object under GROUP commits, the same under another controller is refused by the
 * state machine (the authority rule, checked at commit time in log order), and
 * malformed raft traffic is refused or dropped. With OID too, an object the node
 * holds under another controller than GROUP, a proposal to GROUP that writes OID's
 * state is refused the same way (the caller checks that OID did not change).
 * Prints each check; exit 0 when every check holds.
 * Usage: link_probe CONTROL_URL [GROUP [OID]] */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "avm_err.h"
#include "codec.h"
#include "compiler.h"
#include "module.h"
#include "control.h"
#include "link.h"

static int fails, pending;
static bool heard, refused;
static char refused_why[512];
static avm_link *lk;
static char node[64];

static void check(bool ok, const char *what, const char *detail)
{
    printf("%s %s%s%s\n", ok ? "ok  " : "FAIL", what, detail ? ": " : "",
           detail ? detail : "");
    fails += !ok;
}

static avm_val str(avm_kind k, const char *s)
{
    avm_val v = avm_nil();
    avm_cstr(k, s, &v);
    return v;
}

static avm_val list(size_t n, avm_val *items)
{
    avm_val l = avm_nil();
    avm_list_from(items, n, &l);
    return l;
}

typedef struct want {
    const char *what;
    int code; /* the error code expected, 0 for an ok reply, -1 for any error */
    const char *needle;
} want;

static void on_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    want *w = arg;
    bool ok =
        (w->code < 0 ? rv != 0 : rv == w->code) &&
        (w->needle == NULL || (errmsg != NULL && strstr(errmsg, w->needle) != NULL));
    char d[600];
    snprintf(d, sizeof(d), "%s (%s)", avm_strerror(rv), errmsg ? errmsg : "ok reply");
    check(ok, w->what, d);
    (void)reply;
    pending--;
}

/* A raft.propose answer: ["done", committed, versions, index, term]. */
typedef struct pwant {
    const char *what;
    bool committed;
} pwant;

static void on_propose(void *arg, int rv, avm_val reply, const char *errmsg)
{
    pwant *w = arg;
    bool done = rv == 0 && reply.kind == AVM_LIST && avm_list_len(reply) == 5 &&
                avm_list_at(reply, 0).kind == AVM_STR &&
                strcmp(avm_list_at(reply, 0).u.s->data, "done") == 0;
    bool ok = done && avm_truthy(avm_list_at(reply, 1)) == w->committed;
    avm_buf b;
    avm_buf_init(&b);
    if (rv == 0)
        avm_val_print(&b, reply);
    check(ok, w->what, rv ? errmsg : avm_buf_cstr(&b));
    avm_buf_free(&b);
    pending--;
}

static void request(want *w, const char *op, avm_val body)
{
    char err[256];
    pending++;
    if (avm_link_request(lk, node, op, body, 5000, on_reply, w, err, sizeof(err)) != 0) {
        pending--;
        check(false, w->what, err);
    }
    avm_val_release(body);
}

static void message(const char *kind, avm_val payload)
{
    avm_val items[2] = {str(AVM_STR, kind), payload};
    avm_val m = list(2, items);
    char err[256];
    if (avm_link_send(lk, node, m, err, sizeof(err)) != 0)
        check(false, kind, err);
    avm_val_release(m);
}

static void on_message(void *arg, const char *from, avm_val body)
{
    (void)arg;
    (void)from;
    if (body.kind == AVM_LIST && avm_list_len(body) == 2 &&
        avm_list_at(body, 0).kind == AVM_STR &&
        strcmp(avm_list_at(body, 0).u.s->data, "exec.refused") == 0) {
        avm_val p = avm_list_at(body, 1);
        refused = true;
        if (p.kind == AVM_LIST && avm_list_len(p) == 3 &&
            avm_list_at(p, 2).kind == AVM_STR)
            snprintf(refused_why, sizeof(refused_why), "%s", avm_list_at(p, 2).u.s->data);
    }
}

static void on_request(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body)
{
    (void)arg;
    (void)from;
    (void)op;
    (void)body;
    avm_link_reply_error(req, AVM_EINVAL, "the probe answers nothing");
}

static void on_heard(void *arg, const char *peer, uint64_t now_ms)
{
    (void)arg;
    (void)peer;
    (void)now_ms;
    heard = true;
}

static void on_timer(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until cond or ms milliseconds. */
static void run_until(uv_loop_t *loop, bool (*cond)(void), uint64_t ms)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, on_timer, 5, 5);
    uint64_t end = uv_now(loop) + ms;
    while (!cond() && uv_now(loop) < end)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static bool is_heard(void)
{
    return heard;
}

static bool all_done(void)
{
    return pending == 0 && refused;
}

static bool never(void)
{
    return false;
}

/* ["ws", request id, write set creating object OID with behaviour b under
 * controller CTRL]: the entry a node proposes for such a commit. */
static avm_val create_entry(const char *reqid, const char *oid, const char *ctrl)
{
    static const char src[] = "(behavior b (list 1))";
    avm_module *m = NULL;
    avm_diag diag;
    avm_buf mb;
    avm_buf_init(&mb);
    if (avm_compile("probe.avm", src, sizeof(src) - 1, &m, &diag) != 0 ||
        avm_module_encode(m, &mb) != 0)
        return avm_nil();
    uint32_t fn = 0;
    for (uint32_t i = 0; i < m->nfuncs; i++)
        if (m->funcs[i].kind == AVM_FN_BEHAVIOR)
            fn = i;
    avm_val modv = avm_nil();
    avm_str_new(AVM_STR, mb.data, mb.len, &modv);
    avm_buf_free(&mb);
    avm_module_release(m);
    avm_val cr[7] = {str(AVM_OBJID, oid),  str(AVM_STR, "b"),     modv,
                     avm_int(fn),          str(AVM_MACHID, node), str(AVM_CTRLID, ctrl),
                     str(AVM_CTRLID, ctrl)};
    avm_val create = list(7, cr);
    avm_val ws[7];
    avm_list_new(0, &ws[0]);
    ws[1] = list(1, &create);
    for (int i = 2; i < 6; i++)
        avm_list_new(0, &ws[i]);
    ws[6] = avm_bool(false);
    avm_val e[3] = {str(AVM_STR, "ws"), str(AVM_STR, reqid), list(7, ws)};
    avm_val entry = list(3, e);
    avm_buf eb;
    avm_buf_init(&eb);
    avm_val out = avm_nil();
    if (avm_val_encode(&eb, entry) == 0)
        avm_str_new(AVM_STR, eb.data, eb.len, &out);
    avm_buf_free(&eb);
    avm_val_release(entry);
    return out;
}

static void propose(pwant *w, const char *group, avm_val entry)
{
    avm_val b[2] = {str(AVM_STR, group), entry};
    avm_val body = list(2, b);
    char err[256];
    pending++;
    if (avm_link_request(lk, node, "raft.propose", body, 5000, on_propose, w, err,
                         sizeof(err)) != 0) {
        pending--;
        check(false, w->what, err);
    }
    avm_val_release(body);
}

/* ["ws", request id, write set setting OID's state to (99)], encoded. */
static avm_val state_entry(const char *reqid, const char *oid)
{
    avm_val st[2] = {str(AVM_OBJID, oid), avm_nil()};
    avm_val n99 = avm_int(99);
    avm_list_from(&n99, 1, &st[1]);
    avm_val pair = list(2, st);
    avm_val ws[7];
    for (int i = 0; i < 6; i++)
        if (i != 4)
            avm_list_new(0, &ws[i]);
    ws[4] = list(1, &pair);
    ws[6] = avm_bool(false);
    avm_val e[3] = {str(AVM_STR, "ws"), str(AVM_STR, reqid), list(7, ws)};
    avm_val entry = list(3, e);
    avm_buf eb;
    avm_buf_init(&eb);
    avm_val out = avm_nil();
    if (avm_val_encode(&eb, entry) == 0)
        avm_str_new(AVM_STR, eb.data, eb.len, &out);
    avm_buf_free(&eb);
    avm_val_release(entry);
    return out;
}

/* Proposals straight to the group's leader, and bad raft traffic. */
static void probe_group(uv_loop_t *loop, const char *group, const char *foreign)
{
    static pwant p[] = {
        {"a proposal creating an object under the group commits", true},
        {"the same proposal again (same request id) is not applied twice: its first "
         "outcome",
         true},
        {"a proposal creating an object under another controller is refused at commit "
         "(authority)",
         false},
    };
    char oid[80], oid2[80];
    snprintf(oid, sizeof(oid), "probe/%ld-a", (long)time(NULL));
    snprintf(oid2, sizeof(oid2), "probe/%ld-b", (long)time(NULL));
    propose(&p[0], group, create_entry("probe/req-1", oid, group));
    run_until(loop, all_done, 6000);
    propose(&p[1], group, create_entry("probe/req-1", oid, group));
    run_until(loop, all_done, 6000);
    propose(&p[2], group, create_entry("probe/req-2", oid2, "somewhere-else"));
    run_until(loop, all_done, 6000);
    if (foreign != NULL) {
        static pwant pf = {"a proposal writing the state of an object of another "
                           "controller is refused at commit (authority)",
                           false};
        char rid[64];
        snprintf(rid, sizeof(rid), "probe/req-3-%ld", (long)time(NULL));
        propose(&pf, group, state_entry(rid, foreign));
        run_until(loop, all_done, 6000);
    }
    static want w[] = {
        {"raft.propose with a number", AVM_EMALFORMED, "expected [group, entry]"},
        {"raft.bootstrap with no replicas", AVM_EMALFORMED,
         "expected [name, [replicas]]"},
        {"raft.join with a bad name", AVM_EMALFORMED, "expected [name]"},
    };
    request(&w[0], "raft.propose", avm_int(3));
    avm_val bs[1] = {str(AVM_STR, "g")};
    request(&w[1], "raft.bootstrap", list(1, bs));
    avm_val jn[1] = {str(AVM_STR, "no/slash")};
    request(&w[2], "raft.join", list(1, jn));
    /* Garbage raft frames and gossip: dropped. */
    avm_val frames[3] = {str(AVM_STR, "garbage"), avm_int(4), str(AVM_STR, "")};
    message("raft", list(3, frames));
    message("ctrls", avm_int(1));
    run_until(loop, all_done, 6000);
    check(pending == 0, "every raft request was answered", NULL);
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 4) {
        fprintf(stderr, "usage: link_probe CONTROL_URL [GROUP [OID]]\n");
        return 2;
    }
    uv_loop_t *loop = uv_default_loop();
    char err[1024];
    avm_link_config lc = {.self = "probe",
                          .listen = "tcp://127.0.0.1:0",
                          .on_message = on_message,
                          .on_request = on_request,
                          .on_heard = on_heard};
    if (avm_link_start(loop, &lc, &lk, err, sizeof(err)) != 0) {
        fprintf(stderr, "link: %s\n", err);
        return 2;
    }
    /* Join through the node's control endpoint. */
    avm_ctl_client *cl;
    if (avm_ctl_client_open(argv[1], &cl, err, sizeof(err)) != 0) {
        fprintf(stderr, "control: %s\n", err);
        return 2;
    }
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(lk));
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "name", "probe");
    avm_ctl_put_str(&b, "url", url);
    avm_ctl_put_str(&b, "controller", "cprobe");
    avm_ctl_put_int(&b, "incarnation", (int64_t)time(NULL) * 1000);
    avm_val body, reply = avm_nil();
    avm_ctl_body_finish(&b, &body);
    int rv = avm_ctl_call(cl, "cluster.join", body, 5000, &reply, err, sizeof(err));
    avm_val_release(body);
    avm_val ms = avm_ctl_get(reply, "members");
    if (rv != 0 || ms.kind != AVM_LIST || avm_list_len(ms) < 1) {
        fprintf(stderr, "join: %s\n", rv ? err : "no members in the reply");
        return 2;
    }
    avm_val me = avm_list_at(ms, 0);
    snprintf(node, sizeof(node), "%s", avm_list_at(me, 0).u.s->data);
    if (avm_link_add_peer(lk, node, avm_list_at(me, 1).u.s->data, err, sizeof(err)) !=
        0) {
        fprintf(stderr, "peer: %s\n", err);
        return 2;
    }
    avm_val_release(reply);
    run_until(loop, is_heard, 3000);
    check(heard, "the node's heartbeats reach the probe", NULL);
    run_until(loop, never, 400); /* both sides learn each other's session */

    /* Requests with bad bodies. */
    static want w[] = {
        {"obj.get with a number", AVM_EINVAL, "expected [object id, freeze]"},
        {"obj.get of an object nobody has", AVM_ENOTFOUND, "not here"},
        {"obj.apply with a list of two", AVM_EMALFORMED, "not a list of 7"},
        {"obj.apply whose create carries garbage for a module", -1, "obj.apply"},
        {"obj.apply with a read of a string", AVM_EMALFORMED, "malformed read"},
        {"ctl without hops", AVM_EINVAL, "expected [op, body, hops]"},
        {"ctl with an unknown operation", AVM_EINVAL, "unknown operation"},
        {"ctl status, well formed", 0, NULL},
        {"an unknown request", AVM_EINVAL, "unknown request"},
        {"cluster.view", 0, NULL},
    };
    request(&w[0], "obj.get", avm_int(5));
    avm_val g[2] = {str(AVM_OBJID, "nowhere/1"), avm_bool(false)};
    request(&w[1], "obj.get", list(2, g));
    avm_val two[2] = {avm_nil(), avm_nil()};
    request(&w[2], "obj.apply", list(2, two));
    {
        avm_val cr[7] = {str(AVM_OBJID, "probe/1"),
                         str(AVM_STR, "b"),
                         str(AVM_STR, "not a module"),
                         avm_int(0),
                         avm_nil(),
                         avm_nil(),
                         avm_nil()};
        avm_val creates1 = list(7, cr);
        avm_val ws[7];
        avm_list_new(0, &ws[0]);
        ws[1] = list(1, &creates1);
        for (int i = 2; i < 6; i++)
            avm_list_new(0, &ws[i]);
        ws[6] = avm_bool(false);
        request(&w[3], "obj.apply", list(7, ws));
    }
    {
        avm_val rd[2] = {str(AVM_STR, "x"), avm_int(1)};
        avm_val read1 = list(2, rd);
        avm_val ws[7];
        ws[0] = list(1, &read1);
        for (int i = 1; i < 6; i++)
            avm_list_new(0, &ws[i]);
        ws[6] = avm_bool(false);
        request(&w[4], "obj.apply", list(7, ws));
    }
    avm_val c1[2] = {str(AVM_STR, "status"), avm_nil()};
    request(&w[5], "ctl", list(2, c1));
    avm_val c2[3] = {str(AVM_STR, "nope"), avm_nil(), avm_int(1)};
    request(&w[6], "ctl", list(3, c2));
    avm_val c3[3] = {str(AVM_STR, "status"), avm_nil(), avm_int(1)};
    request(&w[7], "ctl", list(3, c3));
    request(&w[8], "nope", avm_nil());
    request(&w[9], "cluster.view", avm_nil());

    /* Messages: bad gossip and refreshes are dropped; a bad execution comes back. */
    avm_val bad_member[4] = {str(AVM_STR, "no/slash"), str(AVM_STR, "udp://x"),
                             str(AVM_STR, "c"), avm_int(1)};
    avm_val bm = list(4, bad_member);
    message("members", list(1, &bm));
    message("obj.refresh", avm_int(7));
    message("what", avm_nil());
    message("exec.visit", avm_int(1));
    avm_val v[4] = {str(AVM_STR, "probe/x1"), avm_int(1), str(AVM_STR, "garbage state"),
                    avm_nil()};
    message("exec.visit", list(4, v));
    run_until(loop, all_done, 6000);
    check(pending == 0, "every request was answered", NULL);
    check(refused && strstr(refused_why, "probe/x1") != NULL,
          "a garbage execution state comes back refused, naming the execution",
          refused_why);

    if (argc >= 3)
        probe_group(loop, argv[2], argc == 4 ? argv[3] : NULL);

    /* The node still answers, and still lists its members as it should. A control
     * connection idle this long may have been dropped by the node (its ipc
     * listener may be renewed: transport/control.c, "ipc listeners"): ask on a new
     * one, as avmctl does for a read-only request. */
    avm_ctl_client_close(cl);
    rv = AVM_EIO;
    for (int attempt = 0; attempt < 2 && rv == AVM_EIO; attempt++) {
        reply = avm_nil();
        if (avm_ctl_client_open(argv[1], &cl, err, sizeof(err)) != 0) {
            cl = NULL;
            break;
        }
        avm_ctl_body_init(&b);
        avm_ctl_body_finish(&b, &body);
        rv = avm_ctl_call(cl, "cluster.status", body, 5000, &reply, err, sizeof(err));
        avm_val_release(body);
        if (rv == AVM_EIO) {
            avm_ctl_client_close(cl);
            cl = NULL;
        }
    }
    check(rv == 0, "the node answers cluster.status afterwards", rv ? err : NULL);
    avm_val mem = avm_ctl_get(reply, "members");
    bool slash = false;
    for (size_t i = 0; mem.kind == AVM_LIST && i < avm_list_len(mem); i++)
        slash |= strcmp(avm_list_at(avm_list_at(mem, i), 0).u.s->data, "no/slash") == 0;
    check(!slash, "an invalid gossiped member is not taken", NULL);
    avm_val_release(reply);
    if (cl != NULL)
        avm_ctl_client_close(cl);
    avm_link_stop(lk);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_loop_close(loop);
    printf("link_probe: %d failed\n", fails);
    return fails ? 1 : 0;
}
