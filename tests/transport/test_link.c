/* Node-to-node links (transport/link.h): two or three links in this process on one
 * libuv loop, talking over tcp://127.0.0.1 on ports picked by the system.
 *
 * Each node of the fixture records what it receives; its request handler serves a
 * few ops: echo (the body back), delay (the body back after a timer), fail (an
 * error reply), hold (never answered), big (a reply of n bytes). Every wait has a
 * deadline, so that a bug fails a check instead of hanging the run. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <uv.h>

#include "avm_err.h"
#include "link.h"
#include "test.h"

/* --- Fixture ---------------------------------------------------------------- */

#define MAX_NODES 3

typedef struct node node;
typedef struct fixture fixture;

typedef struct delayed {
    uv_timer_t t;
    avm_link_req *req;
    avm_val body;
} delayed;

struct node {
    fixture *fx;
    const char *name;
    avm_link *l;
    int64_t *got; /* the ints received, in order */
    size_t ngot, capgot;
    int from_other; /* messages from a peer other than `expect_from` */
    const char *expect_from;
    uint64_t heard[64]; /* on_heard times from any peer */
    size_t nheard;
    avm_link_req *held;
    int64_t stop_after; /* stop this node's link when this many arrived (0: no) */
};

struct fixture {
    uv_loop_t loop;
    uv_timer_t tick; /* keeps uv_run(ONCE) returning */
    node nodes[MAX_NODES];
};

/* A reply recorded by reply_cb. */
typedef struct result {
    bool done;
    int rv;
    avm_val reply;
    char msg[256];
    uint64_t at_ms;
} result;

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

static avm_val strn(char c, size_t n)
{
    char *buf = malloc(n + 1);
    if (buf == NULL)
        abort();
    memset(buf, c, n);
    avm_val v;
    if (avm_str_new(AVM_STR, buf, n, &v) != 0)
        abort();
    free(buf);
    return v;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000u;
}

static void on_message(void *arg, const char *from, avm_val body)
{
    node *n = arg;
    if (n->expect_from != NULL && strcmp(from, n->expect_from) != 0)
        n->from_other++;
    if (body.kind != AVM_INT)
        return;
    if (n->ngot == n->capgot) {
        n->capgot = n->capgot ? 2 * n->capgot : 1024;
        n->got = realloc(n->got, n->capgot * sizeof(*n->got));
        if (n->got == NULL)
            abort();
    }
    n->got[n->ngot++] = body.u.i;
    if (n->stop_after != 0 && (int64_t)n->ngot == n->stop_after) {
        avm_link_stop(n->l);
        n->l = NULL;
    }
}

static void on_delayed(uv_timer_t *t)
{
    delayed *d = t->data;
    avm_link_reply(d->req, d->body);
    avm_val_release(d->body);
    uv_close((uv_handle_t *)t, (uv_close_cb)free);
}

static void on_request(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body)
{
    node *n = arg;
    (void)from;
    if (strcmp(op, "echo") == 0) {
        avm_link_reply(req, body);
    } else if (strcmp(op, "delay") == 0) {
        delayed *d = malloc(sizeof(*d));
        if (d == NULL)
            abort();
        d->req = req;
        d->body = body;
        avm_val_retain(body);
        uv_timer_init(&n->fx->loop, &d->t);
        d->t.data = d;
        uv_timer_start(&d->t, on_delayed, 50, 0);
    } else if (strcmp(op, "fail") == 0) {
        avm_link_reply_error(req, AVM_ENOTFOUND, "no object %d here", 7);
    } else if (strcmp(op, "hold") == 0) {
        n->held = req;
    } else if (strcmp(op, "big") == 0) {
        avm_val v = strn('b', body.kind == AVM_INT ? (size_t)body.u.i : 1);
        avm_link_reply(req, v);
        avm_val_release(v);
    } else {
        avm_link_reply_error(req, AVM_EINVAL, "unknown op %s", op);
    }
}

static void on_heard(void *arg, const char *peer, uint64_t t)
{
    node *n = arg;
    (void)peer;
    if (n->nheard < sizeof(n->heard) / sizeof(n->heard[0]))
        n->heard[n->nheard++] = t;
}

static void reply_cb(void *arg, int rv, avm_val reply, const char *errmsg)
{
    result *r = arg;
    r->done = true;
    r->rv = rv;
    r->at_ms = now_ms();
    r->reply = reply;
    avm_val_retain(reply);
    snprintf(r->msg, sizeof(r->msg), "%s", errmsg ? errmsg : "");
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

/* Starts node i as name on port (0: any) with the given limits. */
static int fx_start(fixture *fx, int i, const char *name, int port, size_t max_frame,
                    uint32_t hb_ms)
{
    node *n = &fx->nodes[i];
    n->fx = fx;
    n->name = name;
    char url[64], err[256];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", port);
    avm_link_config cfg = {
        .self = name,
        .listen = url,
        .max_frame = max_frame,
        .heartbeat_ms = hb_ms,
        .on_message = on_message,
        .on_request = on_request,
        .on_heard = on_heard,
        .arg = n,
    };
    int rv = avm_link_start(&fx->loop, &cfg, &n->l, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "avm_link_start %s: %s\n", url, err);
    return rv;
}

/* Makes i and j peers of each other. */
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

/* Runs the loop until pred(ctx) or ms pass; the predicate's last value. */
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

static void run_for(fixture *fx, uint64_t ms)
{
    run_until(fx, never, NULL, ms);
}

static bool is_done(void *ctx)
{
    return ((result *)ctx)->done;
}

static void fx_stop_node(fixture *fx, int i)
{
    node *n = &fx->nodes[i];
    if (n->l != NULL)
        avm_link_stop(n->l);
    n->l = NULL;
    n->held = NULL; /* freed with the link */
    (void)fx;
}

/* Stops everything; the loop must close cleanly (every handle closed). */
static int fx_close(fixture *fx)
{
    for (int i = 0; i < MAX_NODES; i++) {
        fx_stop_node(fx, i);
        free(fx->nodes[i].got);
    }
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    return uv_loop_close(&fx->loop);
}

static void result_free(result *r)
{
    avm_val_release(r->reply);
    r->reply = avm_nil();
}

/* --- Tests ------------------------------------------------------------------ */

typedef struct counts {
    node *n;
    size_t want;
    node *m;
    size_t want_m;
} counts;

static bool got_enough(void *ctx)
{
    counts *c = ctx;
    return c->n->ngot >= c->want && (c->m == NULL || c->m->ngot >= c->want_m);
}

static bool all_acked(void *ctx)
{
    avm_link_peer_info info;
    return avm_link_peer(ctx, "b", &info) == 0 && info.unacked == 0;
}

TEST(ten_thousand_in_order_both_ways)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 0, 0) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 0, 0) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    fx.nodes[0].expect_from = "b";
    fx.nodes[1].expect_from = "a";
    char err[256];
    enum { N = 10000, M = 3000 };
    for (int i = 1; i <= N; i++) {
        REQUIRE(avm_link_send(fx.nodes[0].l, "b", avm_int(i), err, sizeof(err)) == 0);
        if (i <= M)
            REQUIRE(avm_link_send(fx.nodes[1].l, "a", avm_int(-i), err, sizeof(err)) ==
                    0);
    }
    counts c = {&fx.nodes[1], N, &fx.nodes[0], M};
    CHECK(run_until(&fx, got_enough, &c, 20000));
    /* A little longer, to see that nothing arrives twice. */
    run_for(&fx, 300);
    CHECK_INT(fx.nodes[1].ngot, N);
    CHECK_INT(fx.nodes[0].ngot, M);
    bool order = true;
    for (size_t i = 0; i < fx.nodes[1].ngot; i++)
        order &= fx.nodes[1].got[i] == (int64_t)i + 1;
    for (size_t i = 0; i < fx.nodes[0].ngot; i++)
        order &= fx.nodes[0].got[i] == -(int64_t)i - 1;
    CHECK(order);
    CHECK_INT(fx.nodes[0].from_other + fx.nodes[1].from_other, 0);
    /* Everything is acknowledged (soon). */
    avm_link_peer_info info;
    CHECK(run_until(&fx, all_acked, fx.nodes[0].l, 5000));
    CHECK(avm_link_peer(fx.nodes[0].l, "b", &info) == 0);
    CHECK_INT(info.unacked, 0);
    CHECK(info.connected);
    CHECK(avm_link_send(fx.nodes[0].l, "nobody", avm_int(1), err, sizeof(err)) ==
          AVM_ENOTFOUND);
    CHECK_INT(fx_close(&fx), 0);
}

TEST(requests_and_replies)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 0, 0) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 0, 0) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    char err[256];
    avm_link *a = fx.nodes[0].l;

    result echo = {0}, delay = {0}, fail = {0}, unknown = {0}, back = {0};
    avm_val hello = str("hello");
    REQUIRE(avm_link_request(a, "b", "echo", hello, 5000, reply_cb, &echo, err,
                             sizeof(err)) == 0);
    REQUIRE(avm_link_request(a, "b", "delay", avm_int(42), 5000, reply_cb, &delay, err,
                             sizeof(err)) == 0);
    REQUIRE(avm_link_request(a, "b", "fail", avm_nil(), 5000, reply_cb, &fail, err,
                             sizeof(err)) == 0);
    REQUIRE(avm_link_request(a, "b", "nope", avm_nil(), 5000, reply_cb, &unknown, err,
                             sizeof(err)) == 0);
    /* And the other way at the same time. */
    REQUIRE(avm_link_request(fx.nodes[1].l, "a", "echo", avm_int(7), 5000, reply_cb,
                             &back, err, sizeof(err)) == 0);
    CHECK(run_until(&fx, is_done, &delay, 5000));
    CHECK(run_until(&fx, is_done, &back, 5000));
    CHECK(echo.done && echo.rv == 0 && avm_val_eq(echo.reply, hello));
    CHECK(delay.done && delay.rv == 0 && delay.reply.kind == AVM_INT &&
          delay.reply.u.i == 42);
    CHECK(fail.done);
    CHECK_INT(fail.rv, AVM_ENOTFOUND);
    CHECK_STR(fail.msg, "no object 7 here");
    CHECK_INT(unknown.rv, AVM_EINVAL);
    CHECK_STR(unknown.msg, "unknown op nope");
    CHECK(back.rv == 0 && back.reply.kind == AVM_INT && back.reply.u.i == 7);
    avm_val_release(hello);
    result_free(&echo);
    result_free(&delay);
    result_free(&back);
    CHECK_INT(fx_close(&fx), 0);
}

TEST(unanswered_and_unknown_peer_fail)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 0, 0) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 0, 0) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    char err[256];
    result held = {0}, stopped = {0};
    uint64_t t0 = now_ms();
    REQUIRE(avm_link_request(fx.nodes[0].l, "b", "hold", avm_nil(), 300, reply_cb, &held,
                             err, sizeof(err)) == 0);
    CHECK(run_until(&fx, is_done, &held, 3000));
    CHECK(fx.nodes[1].held != NULL); /* it did arrive */
    CHECK_INT(held.rv, AVM_EIO);
    CHECK_STR(held.msg, "no answer from b within 300 ms");
    CHECK(held.at_ms - t0 >= 290 && held.at_ms - t0 < 1500);
    /* A late answer goes nowhere. */
    if (fx.nodes[1].held != NULL)
        avm_link_reply(fx.nodes[1].held, avm_int(1));
    fx.nodes[1].held = NULL;
    run_for(&fx, 50);

    t0 = now_ms();
    CHECK_INT(avm_link_request(fx.nodes[0].l, "c", "echo", avm_nil(), 300, reply_cb,
                               &held, err, sizeof(err)),
              AVM_ENOTFOUND);
    CHECK(now_ms() - t0 < 50);

    /* Stop completes what is pending with AVM_ESTATE. */
    REQUIRE(avm_link_request(fx.nodes[0].l, "b", "hold", avm_nil(), 10000, reply_cb,
                             &stopped, err, sizeof(err)) == 0);
    run_for(&fx, 100);
    fx_stop_node(&fx, 0);
    CHECK(stopped.done);
    CHECK_INT(stopped.rv, AVM_ESTATE);
    CHECK_INT(fx_close(&fx), 0);
}

static bool a_knows_new_b(void *ctx)
{
    result *r = ctx;
    return r->done;
}

TEST(restart_mid_stream)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 0, 0) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 0, 0) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    char err[256];
    avm_link *a = fx.nodes[0].l;
    int port = avm_link_port(fx.nodes[1].l);

    /* A request b holds, then a stream that b stops in the middle of. */
    result pend = {0};
    REQUIRE(avm_link_request(a, "b", "hold", avm_nil(), 20000, reply_cb, &pend, err,
                             sizeof(err)) == 0);
    fx.nodes[1].stop_after = 1000;
    enum { N = 5000 };
    for (int i = 1; i <= N; i++)
        REQUIRE(avm_link_send(a, "b", avm_int(i), err, sizeof(err)) == 0);
    counts c = {&fx.nodes[1], 1000, NULL, 0};
    CHECK(run_until(&fx, got_enough, &c, 10000));
    CHECK(fx.nodes[1].l == NULL); /* stopped by its handler */
    fx.nodes[1].held = NULL;
    run_for(&fx, 200); /* a keeps sending into the void */
    CHECK(!pend.done);

    /* The old b got 1..1000 once each, in order. */
    bool order = fx.nodes[1].ngot == 1000;
    for (size_t i = 0; i < fx.nodes[1].ngot; i++)
        order &= fx.nodes[1].got[i] == (int64_t)i + 1;
    CHECK(order);
    free(fx.nodes[1].got);
    memset(&fx.nodes[1], 0, sizeof(fx.nodes[1]));

    /* A new b on the same port: a's pending request fails at once. */
    REQUIRE(fx_start(&fx, 1, "b", port, 0, 0) == 0);
    char url[64];
    snprintf(url, sizeof(url), "tcp://127.0.0.1:%d", avm_link_port(a));
    REQUIRE(avm_link_add_peer(fx.nodes[1].l, "a", url, err, sizeof(err)) == 0);
    uint64_t t0 = now_ms();
    CHECK(run_until(&fx, a_knows_new_b, &pend, 5000));
    CHECK_INT(pend.rv, AVM_EIO);
    CHECK_STR(pend.msg, "b restarted");
    CHECK(now_ms() - t0 < 3000);

    /* Later messages flow; nothing from before the restart shows up. */
    for (int i = 1; i <= 100; i++)
        REQUIRE(avm_link_send(a, "b", avm_int(100000 + i), err, sizeof(err)) == 0);
    counts c2 = {&fx.nodes[1], 100, NULL, 0};
    CHECK(run_until(&fx, got_enough, &c2, 5000));
    run_for(&fx, 400); /* resends would show up by now */
    CHECK_INT(fx.nodes[1].ngot, 100);
    order = true;
    for (size_t i = 0; i < fx.nodes[1].ngot; i++)
        order &= fx.nodes[1].got[i] == 100000 + (int64_t)i + 1;
    CHECK(order);

    /* And requests both ways work on the new session. */
    result r1 = {0}, r2 = {0};
    REQUIRE(avm_link_request(a, "b", "echo", avm_int(5), 3000, reply_cb, &r1, err,
                             sizeof(err)) == 0);
    REQUIRE(avm_link_request(fx.nodes[1].l, "a", "echo", avm_int(6), 3000, reply_cb, &r2,
                             err, sizeof(err)) == 0);
    CHECK(run_until(&fx, is_done, &r1, 3000));
    CHECK(run_until(&fx, is_done, &r2, 3000));
    CHECK(r1.rv == 0 && r1.reply.kind == AVM_INT && r1.reply.u.i == 5);
    CHECK(r2.rv == 0 && r2.reply.kind == AVM_INT && r2.reply.u.i == 6);
    result_free(&r1);
    result_free(&r2);
    CHECK_INT(fx_close(&fx), 0);
}

static bool heard_some(void *ctx)
{
    return ((node *)ctx)->nheard >= 3;
}

TEST(oversized_frames_are_refused)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 64 * 1024, 0) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 4096, 0) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    char err[256];
    avm_link *a = fx.nodes[0].l;
    /* Wait until each has heard the other (and so its limit). */
    CHECK(run_until(&fx, heard_some, &fx.nodes[0], 3000));
    CHECK(run_until(&fx, heard_some, &fx.nodes[1], 3000));

    avm_val big = strn('x', 100 * 1024), mid = strn('y', 10 * 1024);
    CHECK_INT(avm_link_send(a, "b", big, err, sizeof(err)), AVM_ETOOBIG);
    CHECK_INT(avm_link_send(a, "b", mid, err, sizeof(err)), AVM_ETOOBIG); /* b's limit */
    result r = {0};
    CHECK_INT(avm_link_request(a, "b", "echo", mid, 1000, reply_cb, &r, err, sizeof(err)),
              AVM_ETOOBIG);
    /* A reply over b's limit comes back as an error. */
    REQUIRE(avm_link_request(a, "b", "big", avm_int(8000), 3000, reply_cb, &r, err,
                             sizeof(err)) == 0);
    CHECK(run_until(&fx, is_done, &r, 3000));
    CHECK_INT(r.rv, AVM_ETOOBIG);

    /* A raw connection in nng's push0 wire format (SP header, then 64-bit
     * big-endian lengths and frames): garbage is dropped, and a frame over b's limit
     * makes b drop that connection; b goes on. The kernel takes these few bytes
     * without the loop running. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)avm_link_port(fx.nodes[1].l)),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    REQUIRE(connect(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    static const uint8_t sp[8] = {0, 'S', 'P', 0, 0, 0x50, 0, 0};
    static const uint8_t g[8 + 7] = {0,   0,   0,   0,   0,   0,   0,  7,
                                     'g', 'a', 'r', 'b', 'a', 'g', 'e'};
    uint8_t *junk = calloc(1, 8 + 10000);
    REQUIRE(junk != NULL);
    junk[6] = 10000 >> 8;
    junk[7] = 10000 & 0xff;
    CHECK(write(fd, sp, sizeof(sp)) == (ssize_t)sizeof(sp));
    CHECK(write(fd, g, sizeof(g)) == (ssize_t)sizeof(g));
    CHECK(write(fd, junk, 8 + 10000) == 8 + 10000);
    free(junk);
    run_for(&fx, 200);
    close(fd);

    for (int i = 1; i <= 50; i++)
        REQUIRE(avm_link_send(a, "b", avm_int(i), err, sizeof(err)) == 0);
    counts c = {&fx.nodes[1], 50, NULL, 0};
    CHECK(run_until(&fx, got_enough, &c, 5000));
    run_for(&fx, 100);
    CHECK_INT(fx.nodes[1].ngot, 50);
    avm_val_release(big);
    avm_val_release(mid);
    CHECK_INT(fx_close(&fx), 0);
}

static bool heard_many(void *ctx)
{
    return ((node *)ctx)->nheard >= 10;
}

TEST(heartbeats_are_heard)
{
    fixture fx;
    fx_init(&fx);
    REQUIRE(fx_start(&fx, 0, "a", 0, 0, 20) == 0);
    REQUIRE(fx_start(&fx, 1, "b", 0, 0, 20) == 0);
    REQUIRE(fx_start(&fx, 2, "c", 0, 0, 20) == 0);
    REQUIRE(fx_connect(&fx, 0, 1) == 0);
    REQUIRE(fx_connect(&fx, 0, 2) == 0);
    CHECK(run_until(&fx, heard_many, &fx.nodes[0], 3000));
    node *n = &fx.nodes[0];
    bool mono = true;
    for (size_t i = 1; i < n->nheard; i++)
        mono &= n->heard[i] >= n->heard[i - 1];
    CHECK(mono);
    CHECK(n->nheard > 1 && n->heard[n->nheard - 1] > n->heard[0]);
    avm_link_peer_info info;
    CHECK(avm_link_peer(n->l, "c", &info) == 0);
    CHECK(info.connected);
    CHECK(info.last_heard_ms > 0 && info.last_heard_ms <= now_ms());
    CHECK_INT(avm_link_peer(n->l, "zz", &info), AVM_ENOTFOUND);
    /* b and c do not know each other: c drops what b would say, and vice versa. */
    CHECK_INT(fx_close(&fx), 0);
}

TEST_MAIN(T(ten_thousand_in_order_both_ways), T(requests_and_replies),
          T(unanswered_and_unknown_peer_fail), T(restart_mid_stream),
          T(oversized_frames_are_refused), T(heartbeats_are_heard))
