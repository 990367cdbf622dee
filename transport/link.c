/* Node-to-node links (link.h): a pull0 socket that receives every peer's frames, a
 * push0 socket per peer that dials it, and on the loop thread the per-pair
 * sequencing, acknowledgements, resends, sessions, heartbeats and requests.
 *
 * Threads. nng completes the pull socket's receives on its own threads; a frame
 * is decoded there (decoding is pure) and handed to the loop through a
 * mutex-protected queue and a uv_async_t, as in control.c. Everything else runs on
 * the loop thread: sends are non-blocking (nng_sendmsg with NNG_FLAG_NONBLOCK into
 * the push socket's buffer), so the loop never waits for nng. The only other nng
 * callbacks are the push sockets' pipe events, which touch one atomic counter.
 * (Polling NNG_OPT_RECVFD with non-blocking receives instead was tried: under load
 * nng 1.5.2's pull0 left the descriptor readable with nothing to receive, and the
 * loop spun while the links stalled.)
 *
 * Sessions. Each link picks a random session id at start. Heartbeats carry
 * [my session, your session as I know it (0: none yet), my max_frame] in their
 * body. A sender pushes sequenced frames to a peer only once it knows the peer's
 * session, and a receiver accepts them only once the peer's heartbeats show that it
 * knows the receiver's current session ("synced"). A push socket has one pipe and
 * keeps its messages in order, so the heartbeat that proves the peer knows our new
 * session arrives before the frames the peer sent after learning it; frames sent
 * to an older process of ours are refused, never delivered. When a peer's session
 * changes (it restarted), both directions of the pair are reset: our unacked frames
 * to it are dropped (pending requests to it fail with AVM_EIO), sequence numbers
 * start again at 1, and requests it made of us can no longer be answered.
 *
 * Delivery. Frames wait in the peer's unacked list until an ack covers them; those
 * not acknowledged within RESEND_PERIODS heartbeat periods are pushed again (the
 * receiver drops duplicates and frames after a gap by seq, delivering in order).
 * A push socket that loses its connection loses what it held: the resend recovers. */
#include "link.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pipeline0/push.h>

#include "avm_err.h"
#include "codec.h"
#include "transport_internal.h"

#define LINK_MAGIC "avm-link"
#define LINK_MAGIC_LEN (sizeof(LINK_MAGIC) - 1)
#define NAME_MAX_LEN 255 /* a machine name */
#define WORD_MAX_LEN 63  /* an op or an error code name */
#define ERR_MSG_MAX 1024 /* an error reply's message is cut to this */

enum { KIND_MESSAGE = 0, KIND_REQUEST = 1, KIND_REPLY = 2, KIND_ERROR = 3, KIND_HB = 4 };

/* Unacked frames older than this many heartbeat periods are pushed again. */
#define RESEND_PERIODS 3
/* How soon a push that found the socket's buffer full is tried again. */
#define PUMP_RETRY_MS 2
/* The push socket's buffer (frames), and how fast it redials. */
#define SEND_BUF 4096
#define RECONN_MIN_MS 20
#define RECONN_MAX_MS 500

static uint64_t mono_ms(void)
{
    return uv_hrtime() / 1000000u;
}

/* --- Types ------------------------------------------------------------------ */

/* A sequenced frame kept until the peer acknowledges it. */
typedef struct link_out {
    struct link_out *next;
    uint64_t seq;
    uint64_t sent_ms; /* last pushed (0: not yet) */
    size_t len;
    uint8_t data[];
} link_out;

typedef struct link_peer {
    struct link_peer *next;
    avm_link *l;
    char *name;
    char *url;
    nng_socket push;
    nng_dialer dialer;
    atomic_int pipes; /* connected pipes (nng threads) */
    /* Loop thread: */
    uint64_t session;      /* the peer's session (0: not heard yet) */
    bool synced;           /* the peer's heartbeats show it knows our session */
    uint64_t epoch;        /* bumped at each reset of the pair */
    size_t max_frame;      /* the peer's limit (0: unknown) */
    uint64_t next_seq;     /* the next seq we send */
    uint64_t recv_next;    /* the next seq we accept from the peer */
    bool ack_owed;         /* received something since our last frame to it */
    uint64_t last_heard;   /* mono ms */
    link_out *head, *tail; /* unacked, by seq */
    link_out *unsent;      /* the first frame to push (NULL: all pushed) */
    size_t nunacked;
} link_peer;

/* A decoded frame on its way to the loop thread. */
typedef struct link_frame {
    struct link_frame *next;
    char from[NAME_MAX_LEN + 1];
    uint64_t kind, seq, ack, corr;
    char word[WORD_MAX_LEN + 1];
    avm_val body;
} link_frame;

/* A request we sent, waiting for its reply. */
typedef struct link_pending {
    uv_timer_t timer; /* its deadline; the memory goes with it */
    struct link_pending *next;
    avm_link *l;
    link_peer *peer;
    uint64_t corr;
    uint32_t deadline_ms;
    avm_link_reply_cb cb;
    void *arg;
} link_pending;

/* A request the handler owes an answer. */
struct avm_link_req {
    struct avm_link_req *prev, *next; /* in l->held */
    avm_link *l;
    link_peer *peer;
    uint64_t epoch; /* the pair's epoch when it arrived */
    uint64_t corr;
};

struct avm_link {
    uv_loop_t *loop;
    uv_async_t async; /* wakes the loop thread for the queue */
    uv_timer_t hb;
    uv_timer_t pump;
    uv_timer_t ackt;  /* delayed acknowledgements */
    int open_handles; /* the four above and every pending request's timer */
    char *self;
    size_t max_frame;
    uint32_t hb_ms;
    size_t max_unacked;
    uint64_t session;
    uint64_t next_corr;
    avm_link_config cfg; /* callbacks and arg (the strings are not kept) */
    nng_socket pull;
    nng_listener listener;
    nng_aio *aio; /* the pull socket's receive */
    link_peer *peers;
    link_pending *pending;
    avm_link_req *held;
    bool stopped;

    pthread_mutex_t mu;
    /* Under mu: */
    link_frame *qhead, *qtail;
    bool closing;
};

static void on_handle_closed(uv_handle_t *h);

/* --- Frames ----------------------------------------------------------------- */

static int encode_frame(avm_buf *b, const char *from, unsigned kind, uint64_t seq,
                        uint64_t ack, uint64_t corr, const char *word, avm_val body)
{
    avm_mp_put_array(b, 9);
    avm_mp_put_str(b, LINK_MAGIC, LINK_MAGIC_LEN);
    avm_mp_put_uint(b, AVM_LINK_VERSION);
    avm_mp_put_str(b, from, strlen(from));
    avm_mp_put_uint(b, kind);
    avm_mp_put_uint(b, seq);
    avm_mp_put_uint(b, ack);
    avm_mp_put_uint(b, corr);
    avm_mp_put_str(b, word, strlen(word));
    int rv = avm_val_encode(b, body);
    return rv != 0 ? rv : b->err;
}

/* Copies a msgpack string into out[cap] (NUL-terminated); false when too long or
 * not a string, or when it holds a NUL byte. */
static bool get_cstr(avm_mp_reader *r, char *out, size_t cap)
{
    const char *s;
    uint32_t n;
    if (avm_mp_get_str(r, &s, &n) != 0 || n >= cap || memchr(s, '\0', n) != NULL)
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

/* Decodes a frame; 0 or an AVM code (the frame is then dropped). */
static int decode_frame(const uint8_t *p, size_t n, size_t max_frame, link_frame *f)
{
    size_t budget = 4 * max_frame;
    if (budget < AVM_DECODE_DEFAULT_MAX)
        budget = AVM_DECODE_DEFAULT_MAX;
    if (n > max_frame)
        return AVM_ETOOBIG;
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, budget);
    uint32_t items;
    const char *s;
    uint32_t slen;
    uint64_t version;
    if (avm_mp_get_array(&r, &items) != 0 || items != 9 ||
        avm_mp_get_str(&r, &s, &slen) != 0 || slen != LINK_MAGIC_LEN ||
        memcmp(s, LINK_MAGIC, LINK_MAGIC_LEN) != 0 || avm_mp_get_uint(&r, &version) != 0)
        return AVM_EMALFORMED;
    if (version != AVM_LINK_VERSION)
        return AVM_EVERSION;
    if (!get_cstr(&r, f->from, sizeof(f->from)) || avm_mp_get_uint(&r, &f->kind) != 0 ||
        f->kind > KIND_HB || avm_mp_get_uint(&r, &f->seq) != 0 ||
        avm_mp_get_uint(&r, &f->ack) != 0 || avm_mp_get_uint(&r, &f->corr) != 0 ||
        !get_cstr(&r, f->word, sizeof(f->word)))
        return AVM_EMALFORMED;
    int rv = avm_mp_get_val(&r, &f->body);
    if (rv != 0)
        return rv;
    if (r.p != r.end) {
        avm_val_release(f->body);
        return AVM_EMALFORMED;
    }
    return 0;
}

/* --- Receiving (nng threads) ---------------------------------------------- */

static void lock(avm_link *l)
{
    pthread_mutex_lock(&l->mu);
}

static void unlock(avm_link *l)
{
    pthread_mutex_unlock(&l->mu);
}

/* A receive completed. nng 1.5.2's pull0 may run this synchronously on a pipe's
 * thread (nni_aio_finish_sync), outside the aio's task: nng_aio_stop does not wait
 * for such a call, but nng_close does (it reaps every pipe), so stop closes the
 * socket before it stops the aio, and nothing is posted again once closing. */
static void on_recv(void *arg)
{
    avm_link *l = arg;
    int rv = nng_aio_result(l->aio);
    if (rv == NNG_ECLOSED || rv == NNG_ECANCELED)
        return; /* stopping */
    if (rv == 0) {
        nng_msg *m = nng_aio_get_msg(l->aio);
        nng_aio_set_msg(l->aio, NULL);
        link_frame *f = malloc(sizeof(*f));
        if (f != NULL &&
            decode_frame(nng_msg_body(m), nng_msg_len(m), l->max_frame, f) == 0) {
            f->next = NULL;
            bool queued = false;
            lock(l);
            if (!l->closing) {
                if (l->qtail != NULL)
                    l->qtail->next = f;
                else
                    l->qhead = f;
                l->qtail = f;
                queued = true;
            }
            unlock(l);
            if (queued) {
                /* Safe: stop waits for this callback before it closes the async
                 * handle. */
                uv_async_send(&l->async);
            } else {
                avm_val_release(f->body);
                free(f);
            }
        } else {
            free(f); /* a malformed frame is dropped */
        }
        nng_msg_free(m);
    }
    lock(l);
    bool closing = l->closing;
    unlock(l);
    if (!closing)
        nng_recv_aio(l->pull, l->aio);
}

/* --- Pipe events (nng threads) ----------------------------------------- */

static void on_pipe(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    (void)p;
    link_peer *peer = arg;
    atomic_fetch_add(&peer->pipes, ev == NNG_PIPE_EV_ADD_POST ? 1 : -1);
}

/* --- Sending (loop thread) -------------------------------------------------- */

/* Pushes bytes to the peer without waiting; false when the buffer is full (or no
 * message could be made). */
static bool push_bytes(link_peer *p, const void *data, size_t len)
{
    nng_msg *m;
    if (nng_msg_alloc(&m, len) != 0)
        return false;
    memcpy(nng_msg_body(m), data, len);
    if (nng_sendmsg(p->push, m, NNG_FLAG_NONBLOCK) != 0) {
        nng_msg_free(m);
        return false;
    }
    return true;
}

static void send_heartbeat(link_peer *p)
{
    avm_link *l = p->l;
    avm_val items[3] = {avm_int((int64_t)l->session), avm_int((int64_t)p->session),
                        avm_int((int64_t)l->max_frame)};
    avm_val body;
    if (avm_list_from(items, 3, &body) != 0)
        return;
    avm_buf b;
    avm_buf_init(&b);
    uint64_t ack = p->synced ? p->recv_next - 1 : 0;
    if (encode_frame(&b, l->self, KIND_HB, 0, ack, 0, "", body) == 0 &&
        push_bytes(p, b.data, b.len))
        p->ack_owed = false;
    avm_buf_free(&b);
    avm_val_release(body);
}

/* Pushes the peer's frames from p->unsent on; false when the buffer filled. */
static bool pump_peer(link_peer *p, uint64_t now)
{
    if (p->session == 0)
        return true; /* the peer's session is not known yet: hold */
    while (p->unsent != NULL) {
        link_out *o = p->unsent;
        if (!push_bytes(p, o->data, o->len))
            return false;
        o->sent_ms = now;
        p->unsent = o->next;
        p->ack_owed = false;
    }
    return true;
}

static void on_pump(uv_timer_t *t);

static void pump_all(avm_link *l)
{
    uint64_t now = mono_ms();
    bool blocked = false;
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        blocked |= !pump_peer(p, now);
    if (blocked && !uv_is_active((uv_handle_t *)&l->pump))
        uv_timer_start(&l->pump, on_pump, PUMP_RETRY_MS, 0);
}

static void on_pump(uv_timer_t *t)
{
    pump_all(t->data);
}

/* Queues a sequenced frame to p and pushes it if it can. */
static int send_frame(avm_link *l, link_peer *p, unsigned kind, uint64_t corr,
                      const char *word, avm_val body, char *errmsg, size_t errlen)
{
    if (p->nunacked >= l->max_unacked)
        return avm__failf(errmsg, errlen, AVM_EIO,
                          "%zu frames to %s are waiting for an acknowledgement",
                          p->nunacked, p->name);
    avm_buf b;
    avm_buf_init(&b);
    uint64_t seq = p->next_seq;
    int rv = encode_frame(&b, l->self, kind, seq, p->synced ? p->recv_next - 1 : 0, corr,
                          word, body);
    if (rv != 0) {
        avm_buf_free(&b);
        return avm__failf(errmsg, errlen, rv, "cannot encode the frame: %s",
                          avm_strerror(rv));
    }
    size_t limit = l->max_frame;
    if (p->max_frame != 0 && p->max_frame < limit)
        limit = p->max_frame;
    if (b.len > limit) {
        size_t len = b.len;
        avm_buf_free(&b);
        return avm__failf(errmsg, errlen, AVM_ETOOBIG,
                          "the frame of %zu bytes to %s exceeds the limit of %zu bytes",
                          len, p->name, limit);
    }
    link_out *o = malloc(sizeof(*o) + b.len);
    if (o == NULL) {
        avm_buf_free(&b);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    o->next = NULL;
    o->seq = seq;
    o->sent_ms = 0;
    o->len = b.len;
    memcpy(o->data, b.data, b.len);
    avm_buf_free(&b);
    p->next_seq++;
    if (p->tail != NULL)
        p->tail->next = o;
    else
        p->head = o;
    p->tail = o;
    p->nunacked++;
    if (p->unsent == NULL)
        p->unsent = o;
    if (!pump_peer(p, mono_ms()) && !uv_is_active((uv_handle_t *)&l->pump))
        uv_timer_start(&l->pump, on_pump, PUMP_RETRY_MS, 0);
    return 0;
}

/* Drops the unacked frames covered by ack. */
static void take_ack(link_peer *p, uint64_t ack)
{
    if (ack >= p->next_seq)
        ack = p->next_seq - 1; /* acknowledges more than we sent: a bug there */
    while (p->head != NULL && p->head->seq <= ack) {
        link_out *o = p->head;
        p->head = o->next;
        if (p->head == NULL)
            p->tail = NULL;
        if (p->unsent == o)
            p->unsent = o->next;
        p->nunacked--;
        free(o);
    }
}

/* --- Requests --------------------------------------------------------------- */

static void pending_unlink(avm_link *l, link_pending *pr)
{
    for (link_pending **pp = &l->pending; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == pr) {
            *pp = pr->next;
            return;
        }
    }
}

/* Completes a pending request (already unlinked) and releases it. */
static void pending_complete(link_pending *pr, int rv, avm_val reply, const char *msg)
{
    uv_timer_stop(&pr->timer);
    uv_close((uv_handle_t *)&pr->timer, on_handle_closed);
    pr->cb(pr->arg, rv, reply, msg);
}

/* Fails every pending request to p (all of them when p is NULL). */
static void pending_fail_all(avm_link *l, link_peer *p, int code, const char *fmt)
{
    for (;;) {
        link_pending *pr = l->pending;
        while (pr != NULL && p != NULL && pr->peer != p)
            pr = pr->next;
        if (pr == NULL)
            return;
        pending_unlink(l, pr);
        char msg[NAME_MAX_LEN + 128];
        snprintf(msg, sizeof(msg), fmt, pr->peer->name);
        pending_complete(pr, code, avm_nil(), msg);
    }
}

static void on_deadline(uv_timer_t *t)
{
    link_pending *pr = t->data;
    pending_unlink(pr->l, pr);
    char msg[NAME_MAX_LEN + 128];
    snprintf(msg, sizeof(msg), "no answer from %s within %u ms", pr->peer->name,
             pr->deadline_ms);
    pending_complete(pr, AVM_EIO, avm_nil(), msg);
}

static void held_unlink(avm_link *l, avm_link_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        l->held = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
}

/* --- Sessions --------------------------------------------------------------- */

/* The peer restarted: both directions of the pair start again. */
static void reset_pair(link_peer *p)
{
    while (p->head != NULL) {
        link_out *o = p->head;
        p->head = o->next;
        free(o);
    }
    p->tail = p->unsent = NULL;
    p->nunacked = 0;
    p->next_seq = 1;
    p->recv_next = 1;
    p->synced = false;
    p->epoch++;
    pending_fail_all(p->l, p, AVM_EIO, "%s restarted");
}

/* --- The loop thread's side of receiving ---------------------------------- */

static link_peer *find_peer(const avm_link *l, const char *name)
{
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

static void on_heartbeat(avm_link *l, link_peer *p, const link_frame *f)
{
    avm_val b = f->body;
    if (b.kind != AVM_LIST || avm_list_len(b) < 3 || avm_list_at(b, 0).kind != AVM_INT ||
        avm_list_at(b, 1).kind != AVM_INT || avm_list_at(b, 2).kind != AVM_INT)
        return;
    uint64_t sess = (uint64_t)avm_list_at(b, 0).u.i;
    uint64_t yours = (uint64_t)avm_list_at(b, 1).u.i;
    int64_t maxf = avm_list_at(b, 2).u.i;
    if (sess == 0)
        return;
    p->max_frame = maxf > 0 ? (size_t)maxf : 0;
    bool learned = false;
    if (sess != p->session) {
        if (p->session != 0)
            reset_pair(p);
        if (l->stopped)
            return; /* a failed request's callback stopped the link */
        p->session = sess;
        learned = true;
    }
    p->synced = yours == l->session;
    if (p->synced)
        take_ack(p, f->ack);
    if (learned) {
        /* Tell it at once that we know it, then send what was held. */
        send_heartbeat(p);
        pump_all(l);
    }
}

/* A reply (kind 2 or 3) to one of our requests. */
static void on_reply(avm_link *l, link_peer *p, const link_frame *f)
{
    link_pending *pr = l->pending;
    while (pr != NULL && !(pr->corr == f->corr && pr->peer == p))
        pr = pr->next;
    if (pr == NULL)
        return; /* its deadline passed */
    pending_unlink(l, pr);
    if (f->kind == KIND_REPLY) {
        pending_complete(pr, 0, f->body, NULL);
        return;
    }
    int code = avm_err_from_name(f->word, strlen(f->word));
    const char *text = f->body.kind == AVM_STR ? f->body.u.s->data : "";
    if (code <= 0) {
        char msg[ERR_MSG_MAX + 128];
        snprintf(msg, sizeof(msg), "%s answered with error %s: %s", p->name, f->word,
                 text);
        pending_complete(pr, AVM_EIO, avm_nil(), msg);
        return;
    }
    pending_complete(pr, code, avm_nil(), text[0] ? text : avm_strerror(code));
}

static void on_request_frame(avm_link *l, link_peer *p, const link_frame *f)
{
    avm_link_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return; /* the requester times out */
    r->l = l;
    r->peer = p;
    r->epoch = p->epoch;
    r->corr = f->corr;
    r->next = l->held;
    if (l->held != NULL)
        l->held->prev = r;
    l->held = r;
    l->cfg.on_request(l->cfg.arg, r, p->name, f->word, f->body);
}

static void on_frame(avm_link *l, link_frame *f)
{
    link_peer *p = find_peer(l, f->from);
    if (p == NULL)
        return; /* not a peer of ours */
    p->last_heard = mono_ms();
    if (l->cfg.on_heard != NULL) {
        l->cfg.on_heard(l->cfg.arg, p->name, p->last_heard);
        if (l->stopped)
            return;
    }
    if (f->kind == KIND_HB) {
        on_heartbeat(l, p, f);
        return;
    }
    if (!p->synced)
        return; /* sent to an older process of ours, or before it knew us */
    take_ack(p, f->ack);
    p->ack_owed = true;
    if (f->seq != p->recv_next)
        return; /* a duplicate, or after a gap: the sender pushes it again */
    p->recv_next++;
    switch (f->kind) {
    case KIND_MESSAGE:
        l->cfg.on_message(l->cfg.arg, p->name, f->body);
        break;
    case KIND_REQUEST:
        on_request_frame(l, p, f);
        break;
    default:
        on_reply(l, p, f);
        break;
    }
}

/* How long an acknowledgement may wait for a frame to carry it. */
#define ACK_DELAY_MS 5

static void on_ack_timer(uv_timer_t *t)
{
    avm_link *l = t->data;
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        if (p->ack_owed && p->synced)
            send_heartbeat(p);
}

static void on_async(uv_async_t *h)
{
    avm_link *l = h->data;
    while (!l->stopped) {
        lock(l);
        link_frame *f = l->qhead;
        if (f != NULL) {
            l->qhead = f->next;
            if (l->qhead == NULL)
                l->qtail = NULL;
        }
        unlock(l);
        if (f == NULL)
            break;
        on_frame(l, f);
        avm_val_release(f->body);
        free(f);
    }
    /* Acknowledge what came in a little later (unless a frame carries the ack
     * first): one heartbeat for many frames, not one per wake-up. */
    if (!l->stopped && !uv_is_active((uv_handle_t *)&l->ackt))
        uv_timer_start(&l->ackt, on_ack_timer, ACK_DELAY_MS, 0);
}

static void on_hb(uv_timer_t *t)
{
    avm_link *l = t->data;
    uint64_t now = mono_ms();
    uint64_t old = (uint64_t)RESEND_PERIODS * l->hb_ms;
    for (link_peer *p = l->peers; p != NULL; p = p->next) {
        send_heartbeat(p);
        /* Push again what waited too long for its acknowledgement. */
        if (p->head != NULL && p->head != p->unsent && p->head->sent_ms + old <= now)
            p->unsent = p->head;
    }
    pump_all(l);
}

/* --- Life cycle ------------------------------------------------------------- */

static uint64_t new_session(void)
{
    uint64_t v = 0;
    if (uv_random(NULL, NULL, &v, sizeof(v), 0, NULL) != 0)
        v = uv_hrtime() ^ ((uint64_t)getpid() << 32);
    v &= 0x3fffffffffffffffull; /* a positive AVM int */
    return v != 0 ? v : 1;
}

static void link_free(avm_link *l)
{
    while (l->peers != NULL) {
        link_peer *p = l->peers;
        l->peers = p->next;
        while (p->head != NULL) {
            link_out *o = p->head;
            p->head = o->next;
            free(o);
        }
        free(p->name);
        free(p->url);
        free(p);
    }
    while (l->held != NULL) {
        avm_link_req *r = l->held;
        l->held = r->next;
        free(r);
    }
    pthread_mutex_destroy(&l->mu);
    free(l->self);
    free(l);
}

static void on_handle_closed(uv_handle_t *h)
{
    avm_link *l;
    /* A pending request's timer is the first member of its request, which is its
     * data; the link's own handles point at the link. */
    if ((void *)h == h->data) {
        link_pending *pr = h->data;
        l = pr->l;
        free(pr);
    } else {
        l = h->data;
    }
    if (--l->open_handles == 0)
        link_free(l);
}

int avm_link_start(uv_loop_t *loop, const avm_link_config *cfg, avm_link **out,
                   char *errmsg, size_t errlen)
{
    *out = NULL;
    if (cfg->self == NULL || cfg->self[0] == '\0' || strlen(cfg->self) > NAME_MAX_LEN)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "the machine name is empty or too long");
    if (cfg->listen == NULL || cfg->on_message == NULL || cfg->on_request == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "a link needs an address and message and request handlers");
    avm_link *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->self = strdup(cfg->self)) == NULL) {
        free(l);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    if (pthread_mutex_init(&l->mu, NULL) != 0) {
        free(l->self);
        free(l);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    l->loop = loop;
    l->cfg = *cfg;
    l->cfg.self = l->cfg.listen = NULL;
    l->max_frame = cfg->max_frame ? cfg->max_frame : AVM_LINK_MAX_FRAME;
    l->hb_ms = cfg->heartbeat_ms ? cfg->heartbeat_ms : 100;
    l->max_unacked = cfg->max_unacked ? cfg->max_unacked : 65536;
    l->session = new_session();
    l->next_corr = 1;

    int rv = nng_pull0_open(&l->pull);
    if (rv != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot open a socket for", cfg->listen);
        goto err_free;
    }
    if ((rv = nng_socket_set_size(l->pull, NNG_OPT_RECVMAXSZ, l->max_frame)) != 0 ||
        (rv = nng_aio_alloc(&l->aio, on_recv, l)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot set up a socket for", cfg->listen);
        goto err_close;
    }
    if ((rv = nng_listen(l->pull, cfg->listen, &l->listener, 0)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot listen on", cfg->listen);
        goto err_close;
    }
    if ((rv = uv_async_init(loop, &l->async, on_async)) != 0) {
        rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot start the link: %s",
                        uv_strerror(rv));
        goto err_close;
    }
    l->async.data = l;
    uv_timer_init(loop, &l->hb); /* cannot fail */
    uv_timer_init(loop, &l->pump);
    uv_timer_init(loop, &l->ackt);
    l->hb.data = l->pump.data = l->ackt.data = l;
    l->open_handles = 4;
    uv_timer_start(&l->hb, on_hb, l->hb_ms, l->hb_ms);
    nng_recv_aio(l->pull, l->aio);
    *out = l;
    return 0;

err_close:
    nng_close(l->pull);
    if (l->aio != NULL)
        nng_aio_free(l->aio);
err_free:
    pthread_mutex_destroy(&l->mu);
    free(l->self);
    free(l);
    return rv;
}

int avm_link_port(const avm_link *l)
{
    int port;
    if (nng_listener_get_int(l->listener, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
        return 0;
    return port;
}

void avm_link_stop(avm_link *l)
{
    if (l->stopped)
        return;
    l->stopped = true;
    uv_timer_stop(&l->hb);
    uv_timer_stop(&l->pump);
    uv_timer_stop(&l->ackt);

    /* No frame reaches the loop any more. nng_close first: it returns once every
     * pipe is reaped, and so once any receive callback run synchronously on a
     * pipe's thread has returned (see on_recv); nng_aio_stop then waits for the
     * callback of the last receive (ECLOSED), which posts nothing again. */
    lock(l);
    l->closing = true;
    unlock(l);
    nng_close(l->pull);
    nng_aio_stop(l->aio);
    nng_msg *m = nng_aio_get_msg(l->aio);
    if (m != NULL)
        nng_msg_free(m);
    nng_aio_free(l->aio);
    l->aio = NULL;
    while (l->qhead != NULL) {
        link_frame *f = l->qhead;
        l->qhead = f->next;
        avm_val_release(f->body);
        free(f);
    }
    l->qtail = NULL;
    /* nng_close returns once the pipe callbacks have run. */
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        nng_close(p->push);

    pending_fail_all(l, NULL, AVM_ESTATE, "link stopped (request to %s)");
    uv_close((uv_handle_t *)&l->async, on_handle_closed);
    uv_close((uv_handle_t *)&l->hb, on_handle_closed);
    uv_close((uv_handle_t *)&l->pump, on_handle_closed);
    uv_close((uv_handle_t *)&l->ackt, on_handle_closed);
}

int avm_link_add_peer(avm_link *l, const char *name, const char *url, char *errmsg,
                      size_t errlen)
{
    if (l->stopped)
        return avm__failf(errmsg, errlen, AVM_ESTATE, "the link is stopped");
    if (name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN || url == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "a peer needs a name and a URL");
    link_peer *p = find_peer(l, name);
    int rv;
    if (p != NULL) {
        if (strcmp(p->url, url) == 0)
            return 0;
        char *u = strdup(url);
        if (u == NULL)
            return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
        nng_dialer d;
        if ((rv = nng_dial(p->push, url, &d, NNG_FLAG_NONBLOCK)) != 0) {
            free(u);
            return avm__nng_fail(errmsg, errlen, rv, "cannot dial", url);
        }
        nng_dialer_close(p->dialer);
        p->dialer = d;
        free(p->url);
        p->url = u;
        return 0;
    }
    p = calloc(1, sizeof(*p));
    if (p == NULL || (p->name = strdup(name)) == NULL || (p->url = strdup(url)) == NULL) {
        if (p != NULL)
            free(p->name);
        free(p);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    p->l = l;
    p->next_seq = 1;
    p->recv_next = 1;
    atomic_init(&p->pipes, 0);
    if ((rv = nng_push0_open(&p->push)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot open a socket for", url);
        goto err_free;
    }
    if ((rv = nng_socket_set_int(p->push, NNG_OPT_SENDBUF, SEND_BUF)) != 0 ||
        (rv = nng_socket_set_ms(p->push, NNG_OPT_RECONNMINT, RECONN_MIN_MS)) != 0 ||
        (rv = nng_socket_set_ms(p->push, NNG_OPT_RECONNMAXT, RECONN_MAX_MS)) != 0 ||
        (rv = nng_pipe_notify(p->push, NNG_PIPE_EV_ADD_POST, on_pipe, p)) != 0 ||
        (rv = nng_pipe_notify(p->push, NNG_PIPE_EV_REM_POST, on_pipe, p)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot set up a socket for", url);
        goto err_close;
    }
    if ((rv = nng_dial(p->push, url, &p->dialer, NNG_FLAG_NONBLOCK)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot dial", url);
        goto err_close;
    }
    p->next = l->peers;
    l->peers = p;
    send_heartbeat(p);
    return 0;

err_close:
    nng_close(p->push);
err_free:
    free(p->name);
    free(p->url);
    free(p);
    return rv;
}

/* The running link's peer named peer, or the error a send to it gets. */
static int live_peer(avm_link *l, const char *peer, link_peer **out, char *errmsg,
                     size_t errlen)
{
    if (l->stopped)
        return avm__failf(errmsg, errlen, AVM_ESTATE, "the link is stopped");
    if ((*out = find_peer(l, peer)) == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOTFOUND, "no peer named %s", peer);
    return 0;
}

int avm_link_send(avm_link *l, const char *peer, avm_val body, char *errmsg,
                  size_t errlen)
{
    link_peer *p;
    int rv = live_peer(l, peer, &p, errmsg, errlen);
    if (rv != 0)
        return rv;
    return send_frame(l, p, KIND_MESSAGE, 0, "", body, errmsg, errlen);
}

int avm_link_request(avm_link *l, const char *peer, const char *op, avm_val body,
                     uint32_t deadline_ms, avm_link_reply_cb cb, void *arg, char *errmsg,
                     size_t errlen)
{
    link_peer *p;
    int rv0 = live_peer(l, peer, &p, errmsg, errlen);
    if (rv0 != 0)
        return rv0;
    if (op == NULL || strlen(op) > WORD_MAX_LEN)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "op is missing or longer than %d bytes", WORD_MAX_LEN);
    link_pending *pr = calloc(1, sizeof(*pr));
    if (pr == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    uint64_t corr = l->next_corr++;
    int rv = send_frame(l, p, KIND_REQUEST, corr, op, body, errmsg, errlen);
    if (rv != 0) {
        free(pr);
        return rv;
    }
    pr->l = l;
    pr->peer = p;
    pr->corr = corr;
    pr->deadline_ms = deadline_ms;
    pr->cb = cb;
    pr->arg = arg;
    /* The deadline counts from now, not from the loop's cached time. */
    uv_update_time(l->loop);
    uv_timer_init(l->loop, &pr->timer);
    pr->timer.data = pr;
    l->open_handles++;
    uv_timer_start(&pr->timer, on_deadline, deadline_ms, 0);
    pr->next = l->pending;
    l->pending = pr;
    return 0;
}

/* Takes req back from the handler; false when its answer is to be dropped (the
 * link stopped, or the requester restarted since). */
static bool reply_begin(avm_link_req *req)
{
    avm_link *l = req->l;
    held_unlink(l, req);
    return !l->stopped && req->epoch == req->peer->epoch;
}

static void send_error(avm_link_req *req, int code, const char *msg)
{
    const char *name = avm_err_name(code);
    avm_val body;
    if (avm_cstr(AVM_STR, msg, &body) != 0)
        body = avm_nil();
    send_frame(req->l, req->peer, KIND_ERROR, req->corr, name ? name : "EIO", body, NULL,
               0);
    avm_val_release(body);
}

void avm_link_reply(avm_link_req *req, avm_val body)
{
    if (reply_begin(req)) {
        char emsg[256];
        int rv = send_frame(req->l, req->peer, KIND_REPLY, req->corr, "", body, emsg,
                            sizeof(emsg));
        if (rv != 0 && rv != AVM_EIO) {
            char msg[300];
            snprintf(msg, sizeof(msg), "the reply cannot be sent: %s", emsg);
            send_error(req, rv, msg);
        }
    }
    free(req);
}

void avm_link_reply_error(avm_link_req *req, int code, const char *fmt, ...)
{
    if (reply_begin(req)) {
        char msg[ERR_MSG_MAX + 1];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
        if (n < 0)
            snprintf(msg, sizeof(msg), "%s", avm_strerror(code));
        send_error(req, code, msg);
    }
    free(req);
}

int avm_link_peer(const avm_link *l, const char *peer, avm_link_peer_info *out)
{
    link_peer *p = find_peer(l, peer);
    if (p == NULL)
        return AVM_ENOTFOUND;
    out->connected = atomic_load(&p->pipes) > 0;
    out->last_heard_ms = p->last_heard;
    out->unacked = p->nunacked;
    return 0;
}
