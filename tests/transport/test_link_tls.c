/* Node-to-node links with mutual TLS (transport/link.h, tls.h): links in this
 * process on one libuv loop over tcp://127.0.0.1, with certificates made by
 * deploy/make-certs.sh (its path is argv[2]) in a temporary directory: a cluster CA
 * with nodes a, b, c, and another CA with a node b.
 *
 * Each node records what it receives and what its link logs. Every wait has a
 * deadline. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <uv.h>

#include "avm_err.h"
#include "link.h"
#include "test.h"

static const char *make_certs; /* argv[2] */
static char certs[64];         /* the directory with the certificates */

#define BIG_LEN (10u * 1024 * 1024)

typedef struct node {
    const char *name;
    avm_link *l;
    size_t nints, nbig, nother;
    int64_t last_int;
    bool in_order;
    char log[8192]; /* every line the link logged */
} node;

typedef struct fixture {
    uv_loop_t loop;
    uv_timer_t tick;
    node nodes[3];
} fixture;

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void on_message(void *arg, const char *from, avm_val body)
{
    node *n = arg;
    (void)from;
    if (body.kind == AVM_INT) {
        n->in_order &= body.u.i == n->last_int + 1;
        n->last_int = body.u.i;
        n->nints++;
    } else if (body.kind == AVM_STR && body.u.s->len >= BIG_LEN) {
        bool same = true;
        for (size_t i = 0; i < body.u.s->len; i += 4093)
            same &= body.u.s->data[i] == (char)('a' + i % 26);
        n->nbig += same;
        n->nother += !same;
    } else {
        n->nother++;
    }
}

static void on_request(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body)
{
    (void)arg;
    (void)from;
    (void)op;
    avm_link_reply(req, body);
}

static void on_log(void *arg, int level, const char *event, const char *k, const char *v)
{
    node *n = arg;
    size_t len = strlen(n->log);
    snprintf(n->log + len, sizeof(n->log) - len, "%d %s %s=%s\n", level, event, k, v);
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static void fx_init(fixture *fx)
{
    memset(fx, 0, sizeof(*fx));
    if (uv_loop_init(&fx->loop) != 0)
        abort();
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 5, 5);
}

/* Starts node i as name with the certificate files of `cert` (NULL: plaintext) from
 * the CA of directory ca_dir; errmsg gets avm_link_start's error. */
static int fx_start_tls(fixture *fx, int i, const char *name, const char *cert,
                        const char *ca_dir, char *errmsg, size_t errlen)
{
    node *n = &fx->nodes[i];
    n->name = name;
    n->in_order = true;
    char crt[128], key[128], ca[128];
    snprintf(crt, sizeof(crt), "%s/%s.crt", ca_dir, cert ? cert : "");
    snprintf(key, sizeof(key), "%s/%s.key", ca_dir, cert ? cert : "");
    snprintf(ca, sizeof(ca), "%s/ca.crt", ca_dir);
    avm_link_config cfg = {
        .self = name,
        .listen = "tcp://127.0.0.1:0",
        .heartbeat_ms = 50,
        .on_message = on_message,
        .on_request = on_request,
        .tls_cert = cert ? crt : NULL,
        .tls_key = cert ? key : NULL,
        .tls_ca = cert ? ca : NULL,
        .log = on_log,
        .arg = n,
    };
    return avm_link_start(&fx->loop, &cfg, &n->l, errmsg, errlen);
}

static int fx_connect(fixture *fx, int i, int j)
{
    char url[64], err[256];
    node *a = &fx->nodes[i], *b = &fx->nodes[j];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(b->l));
    int rv = avm_link_add_peer(a->l, b->name, url, err, sizeof(err));
    if (rv != 0)
        return rv;
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(a->l));
    return avm_link_add_peer(b->l, a->name, url, err, sizeof(err));
}

static bool run_until(fixture *fx, bool (*pred)(void *), void *ctx, uint64_t ms)
{
    uint64_t end = now_ms() + ms;
    while (!pred(ctx)) {
        if (now_ms() >= end)
            return false;
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    return true;
}

static bool never(void *ctx)
{
    (void)ctx;
    return false;
}

static int fx_close(fixture *fx)
{
    for (int i = 0; i < 3; i++)
        if (fx->nodes[i].l != NULL)
            avm_link_stop(fx->nodes[i].l);
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return uv_loop_close(&fx->loop);
}

/* A string of len bytes (at least BIG_LEN), a to z over and over. */
static avm_val big_value(size_t len)
{
    char *buf = malloc(len);
    if (buf == NULL)
        abort();
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)('a' + i % 26);
    avm_val v;
    if (avm_str_new(AVM_STR, buf, len, &v) != 0)
        abort();
    free(buf);
    return v;
}

typedef struct want {
    node *n;
    size_t ints, big;
} want;

static bool got_all(void *ctx)
{
    want *w = ctx;
    return w->n->nints >= w->ints && w->n->nbig >= w->big;
}

/* Sends N ints and a 10 MiB string from i to j's name, then N more. */
static void send_batch(fixture *fx, int i, const char *to, int from_int, int n, bool big,
                       int *test_failed_)
{
    char err[256];
    for (int k = 0; k < n; k++)
        CHECK(avm_link_send(fx->nodes[i].l, to, avm_int(from_int + k), err,
                            sizeof(err)) == 0);
    if (big) {
        avm_val v = big_value(BIG_LEN);
        CHECK(avm_link_send(fx->nodes[i].l, to, v, err, sizeof(err)) == 0);
        avm_val_release(v);
    }
}

/* --- Tests ------------------------------------------------------------------ */

TEST(tls_messages_and_big_frames)
{
    fixture fx;
    fx_init(&fx);
    char err[512];
    REQUIRE(fx_start_tls(&fx, 0, "a", "a", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_start_tls(&fx, 1, "b", "b", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    enum { N = 3000 };
    send_batch(&fx, 0, "b", 1, N, true, test_failed_);
    send_batch(&fx, 1, "a", 1, N, true, test_failed_);
    send_batch(&fx, 0, "b", N + 1, N, false, test_failed_);
    want wb = {&fx.nodes[1], 2 * N, 1}, wa = {&fx.nodes[0], N, 1};
    CHECK(run_until(&fx, got_all, &wb, 30000));
    CHECK(run_until(&fx, got_all, &wa, 30000));
    run_until(&fx, never, NULL, 200);
    CHECK_INT(fx.nodes[1].nints, 2 * N);
    CHECK_INT(fx.nodes[0].nints, N);
    CHECK_INT(fx.nodes[0].nbig + fx.nodes[1].nbig, 2);
    CHECK_INT(fx.nodes[0].nother + fx.nodes[1].nother, 0);
    CHECK(fx.nodes[0].in_order && fx.nodes[1].in_order);
    /* A frame just under the 16 MiB limit (its encoding adds the frame's fields):
     * over a thousand TLS records. */
    avm_val huge = big_value(AVM_LINK_MAX_FRAME - 64);
    CHECK(avm_link_send(fx.nodes[0].l, "b", huge, err, sizeof(err)) == 0);
    avm_val_release(huge);
    want wh = {&fx.nodes[1], 2 * N, 2};
    CHECK(run_until(&fx, got_all, &wh, 30000));
    CHECK_INT(fx.nodes[1].nbig, 2);
    CHECK_INT(fx.nodes[1].nother, 0);
    avm_link_peer_info info;
    CHECK(avm_link_peer(fx.nodes[0].l, "b", &info) == 0 && info.connected);
    /* Nothing refused on the way. */
    CHECK_STR(fx.nodes[0].log, "");
    CHECK_STR(fx.nodes[1].log, "");

    /* b restarts on another port (a new process, in effect): a dials it again,
     * the TLS handshake runs again, and messages flow. */
    avm_link_stop(fx.nodes[1].l);
    fx.nodes[1].l = NULL;
    run_until(&fx, never, NULL, 100);
    memset(&fx.nodes[1], 0, sizeof(fx.nodes[1]));
    REQUIRE(fx_start_tls(&fx, 1, "b", "b", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    /* Only once a has heard the new b's session is what it sends b's. */
    run_until(&fx, never, NULL, 500);
    send_batch(&fx, 0, "b", 1, 100, true, test_failed_);
    want w2 = {&fx.nodes[1], 100, 1};
    CHECK(run_until(&fx, got_all, &w2, 30000));
    CHECK(fx.nodes[1].in_order);
    CHECK_INT(fx_close(&fx), 0);
}

/* Runs a while and checks that nothing went either way between nodes 0 and 1 and
 * that neither is connected to the other. */
static void check_nothing_passed(fixture *fx, int *test_failed_)
{
    send_batch(fx, 0, fx->nodes[1].name, 1, 10, false, test_failed_);
    send_batch(fx, 1, fx->nodes[0].name, 1, 10, false, test_failed_);
    run_until(fx, never, NULL, 1500);
    CHECK_INT(fx->nodes[0].nints + fx->nodes[0].nbig + fx->nodes[0].nother, 0);
    CHECK_INT(fx->nodes[1].nints + fx->nodes[1].nbig + fx->nodes[1].nother, 0);
    avm_link_peer_info info;
    CHECK(avm_link_peer(fx->nodes[0].l, fx->nodes[1].name, &info) == 0);
    CHECK(!info.connected);
    CHECK(info.last_heard_ms == 0);
    CHECK(avm_link_peer(fx->nodes[1].l, fx->nodes[0].name, &info) == 0);
    CHECK(!info.connected);
    CHECK(info.last_heard_ms == 0);
}

static bool logged(const node *n, const char *what)
{
    bool ok = strstr(n->log, what) != NULL;
    if (!ok)
        fprintf(stderr, "%s's log has no \"%s\":\n%s", n->name, what, n->log);
    return ok;
}

TEST(certificate_from_another_ca_is_refused)
{
    fixture fx;
    fx_init(&fx);
    char err[512], other[128];
    snprintf(other, sizeof(other), "%s/other", certs);
    REQUIRE(fx_start_tls(&fx, 0, "a", "a", certs, err, sizeof(err)) == 0);
    /* "b" with a certificate for b, from another CA (which it trusts). */
    REQUIRE(fx_start_tls(&fx, 1, "b", "b", other, err, sizeof(err)) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    check_nothing_passed(&fx, test_failed_);
    /* a dials b: b's certificate is not from a's CA. */
    CHECK(logged(&fx.nodes[0], "2 link.refused error=b at tcp://127.0.0.1:"));
    CHECK(logged(&fx.nodes[0], "TLS handshake failed: certificate verify failed: "));
    CHECK(logged(&fx.nodes[0], "(certificate CN=b)"));
    /* b dials a: a refuses b's certificate, and b hears so. */
    CHECK(logged(&fx.nodes[0], "error=connection from 127.0.0.1:"));
    CHECK(logged(&fx.nodes[1], "alert unknown ca"));
    CHECK_INT(fx_close(&fx), 0);
}

TEST(certificate_for_another_name_is_refused)
{
    fixture fx;
    fx_init(&fx);
    char err[512];
    REQUIRE(fx_start_tls(&fx, 0, "a", "a", certs, err, sizeof(err)) == 0);
    /* "b" with c's certificate: valid, from the cluster CA, for another machine. */
    REQUIRE(fx_start_tls(&fx, 1, "b", "c", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    check_nothing_passed(&fx, test_failed_);
    /* a dials "b" and finds c; c dials a claiming to be b. */
    CHECK(logged(&fx.nodes[0], "the certificate (CN=c) does not name b, the machine "
                               "dialled"));
    CHECK(logged(&fx.nodes[0], "its certificate (CN=c) does not name b, the machine its "
                               "frames claim to come from"));
    CHECK_INT(fx_close(&fx), 0);
}

TEST(plaintext_peer_is_refused)
{
    fixture fx;
    fx_init(&fx);
    char err[512];
    REQUIRE(fx_start_tls(&fx, 0, "a", "a", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_start_tls(&fx, 1, "b", NULL, certs, err, sizeof(err)) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    check_nothing_passed(&fx, test_failed_);
    /* b dials a in plaintext; a dials b with TLS. */
    CHECK(logged(&fx.nodes[0], "the peer speaks plaintext (it runs without TLS)"));
    CHECK(
        logged(&fx.nodes[1], "the peer speaks TLS (this node runs without --tls-cert)"));
    CHECK_INT(fx_close(&fx), 0);
}

TEST(garbage_is_refused_and_others_served)
{
    fixture fx;
    fx_init(&fx);
    char err[512];
    REQUIRE(fx_start_tls(&fx, 0, "a", "a", certs, err, sizeof(err)) == 0);
    REQUIRE(fx_start_tls(&fx, 1, "b", "b", certs, err, sizeof(err)) == 0);
    /* Garbage shaped like a TLS record, then a connection that sends no
     * certificate's worth of anything and closes. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)avm_link_port(fx.nodes[0].l)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    REQUIRE(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    static const uint8_t junk[] = {0x16, 3,   1,   0,   8,   'g', 'a',
                                   'r',  'b', 'a', 'g', 'e', '!'};
    CHECK(write(fd, junk, sizeof(junk)) == (ssize_t)sizeof(junk));
    run_until(&fx, never, NULL, 200);
    close(fd);
    CHECK(logged(&fx.nodes[0], "TLS handshake failed"));
    /* A connection that sends nothing is dropped after the handshake's deadline:
     * the socket sees the end of the stream. */
    int quiet = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(quiet >= 0);
    REQUIRE(connect(quiet, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    run_until(&fx, never, NULL, 2600);
    CHECK(logged(&fx.nodes[0], "no TLS handshake and link header within 2000 ms"));
    struct timeval tv = {.tv_sec = 2};
    setsockopt(quiet, SOL_SOCKET, SO_RCVTIMEO, &tv,
               sizeof(tv)); /* a bug fails, not hangs */
    char byte;
    CHECK(read(quiet, &byte, 1) == 0);
    close(quiet);
    /* a still serves b. */
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    send_batch(&fx, 1, "a", 1, 100, false, test_failed_);
    want w = {&fx.nodes[0], 100, 0};
    CHECK(run_until(&fx, got_all, &w, 10000));
    CHECK_INT(fx_close(&fx), 0);
}

TEST(bad_tls_files_are_reported)
{
    fixture fx;
    fx_init(&fx);
    char err[512];
    avm_link_config cfg = {.self = "a",
                           .listen = "tcp://127.0.0.1:0",
                           .on_message = on_message,
                           .on_request = on_request,
                           .arg = &fx.nodes[0]};
    char crt[128], key[128], ca[128], bkey[128], other_ca[128];
    snprintf(crt, sizeof(crt), "%s/a.crt", certs);
    snprintf(key, sizeof(key), "%s/a.key", certs);
    snprintf(bkey, sizeof(bkey), "%s/b.key", certs);
    snprintf(ca, sizeof(ca), "%s/ca.crt", certs);
    snprintf(other_ca, sizeof(other_ca), "%s/other/ca.crt", certs);
    avm_link *l = NULL;
    /* Two of three. */
    cfg.tls_cert = crt;
    cfg.tls_key = key;
    CHECK_INT(avm_link_start(&fx.loop, &cfg, &l, err, sizeof(err)), AVM_EINVAL);
    CHECK(strstr(err, "all three") != NULL);
    /* A missing file, named. */
    cfg.tls_ca = "/nonexistent/ca.crt";
    CHECK_INT(avm_link_start(&fx.loop, &cfg, &l, err, sizeof(err)), AVM_EINVAL);
    CHECK_STR(err, "CA /nonexistent/ca.crt: No such file or directory");
    /* Not PEM: the key file as a certificate. */
    cfg.tls_ca = ca;
    cfg.tls_cert = key;
    CHECK_INT(avm_link_start(&fx.loop, &cfg, &l, err, sizeof(err)), AVM_EINVAL);
    CHECK(strncmp(err, "certificate ", 12) == 0 && strstr(err, key) != NULL);
    /* Another node's key. */
    cfg.tls_cert = crt;
    cfg.tls_key = bkey;
    CHECK_INT(avm_link_start(&fx.loop, &cfg, &l, err, sizeof(err)), AVM_EINVAL);
    CHECK(strstr(err, bkey) != NULL && strstr(err, "key values mismatch") != NULL);
    /* A certificate the CA did not sign. */
    cfg.tls_key = key;
    cfg.tls_ca = other_ca;
    CHECK_INT(avm_link_start(&fx.loop, &cfg, &l, err, sizeof(err)), AVM_EINVAL);
    CHECK(strstr(err, "is not valid for CA") != NULL);
    CHECK(l == NULL);
    CHECK_INT(fx_close(&fx), 0);
}

static void test_certs_setup(void)
{
    snprintf(certs, sizeof(certs), "/tmp/avm-link-tls-XXXXXX");
    if (mkdtemp(certs) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "sh '%s' %s a b c >/dev/null && sh '%s' %s/other b >/dev/null", make_certs,
             certs, make_certs, certs);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot make certificates: %s\n", cmd);
        exit(1);
    }
}

static void test_certs_teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", certs);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", certs);
}

/* TEST_MAIN with the certificates around the tests: argv[1] a test's name (or
 * "all"), argv[2] make-certs.sh. */
int main(int argc, char **argv)
{
    struct test_case cases[] = {T(tls_messages_and_big_frames),
                                T(certificate_from_another_ca_is_refused),
                                T(certificate_for_another_name_is_refused),
                                T(plaintext_peer_is_refused),
                                T(garbage_is_refused_and_others_served),
                                T(bad_tls_files_are_reported)};
    if (argc < 3) {
        fprintf(stderr, "usage: %s TEST|all MAKE-CERTS.SH\n", argv[0]);
        return 2;
    }
    make_certs = argv[2];
    test_certs_setup();
    int nfail = 0, nrun = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (strcmp(argv[1], "all") != 0 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        int failed = 0;
        cases[i].fn(&failed);
        nrun++;
        printf("%s %s\n", failed ? "FAIL" : "ok  ", cases[i].name);
        nfail += failed;
    }
    test_certs_teardown();
    printf("%d passed, %d failed\n", nrun - nfail, nfail);
    return nfail || nrun == 0 ? 1 : 0;
}
