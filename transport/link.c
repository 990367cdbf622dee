/* Node-to-node links (link.h): TCP connections driven by libuv on the loop thread,
 * speaking the wire format of nng's push0/pull0 over TCP, and the per-pair
 * sequencing, acknowledgements, resends, sessions, heartbeats and requests.
 *
 * Why not nng sockets. nng 1.5.2's TCP transport loses a completion when a pipe is
 * closed locally while a transfer's completion callback is about to start the next
 * partial read or write (a message body after its length header, the rest of a
 * short write): nni_aio_close has marked the transport's aio stopped, so the next
 * nng_stream_recv/send is refused by nni_aio_begin without any callback, the
 * protocol's aio on that pipe never finishes, and the single reaper thread blocks
 * for ever in pipe_stop. nng_close (and every later pipe close in the process) then
 * hangs. Upstream fixed it after 1.5.2 (tcp.c checks p->closed in its callbacks);
 * Debian 12 ships 1.5.2. It struck whenever a link closed a socket with traffic in
 * flight (a peer that stops or restarts mid-stream). Here every socket belongs to
 * the loop thread: closing one is uv_close, which cannot wait.
 *
 * Wire. Each side of a connection first sends the SP header 00 'S' 'P' 00, its
 * protocol (push0 0x50 from the dialer, pull0 0x51 from the listener) as 16 bits
 * big-endian, 00 00; then the dialer sends messages, each a 64-bit big-endian length
 * and that many bytes (one frame). So an nng push0 socket can dial a link, as a link
 * could dial an nng pull0 socket. A connection that announces another protocol, or a
 * message over max_frame, is closed.
 *
 * Connections. A link listens for its peers' dialled connections and receives
 * frames on them. It dials each peer once (one connection per peer at a time) and
 * sends on it; it reads from it only to see the peer's header and the end of the
 * connection. A dial that fails, a connection that ends, or a handshake that does not
 * come within HANDSHAKE_MS is closed and dialled again after RECONN_MIN_MS, doubling
 * up to RECONN_MAX_MS. Writes are queued in libuv up to SEND_BUF frames or
 * SEND_BYTES bytes per connection; past that, frames wait in the peer's unsent list
 * and are pushed as writes complete, so a stopped peer (SIGSTOP) never blocks the
 * loop. What a dropped connection held is lost: the resend recovers, and a new
 * connection pushes every unacknowledged frame again at once.
 *
 * Sessions. Each link picks a random session id at start. Heartbeats carry
 * [my session, your session as I know it (0: none yet), my max_frame] in their
 * body. A sender pushes sequenced frames to a peer only once it knows the peer's
 * session, and a receiver accepts them only once the peer's heartbeats show that it
 * knows the receiver's current session ("synced"). A sender uses one connection at
 * a time and keeps its writes in order, so the heartbeat that proves the peer knows
 * our new session arrives before the frames the peer sent after learning it; frames
 * sent to an older process of ours are refused, never delivered. When a peer's
 * session changes (it restarted), both directions of the pair are reset: our
 * unacked frames to it are dropped (pending requests to it fail with AVM_EIO),
 * sequence numbers start again at 1, and requests it made of us can no longer be
 * answered.
 *
 * Delivery. Frames wait in the peer's unacked list until an ack covers them; those
 * not acknowledged within RESEND_PERIODS heartbeat periods are pushed again (the
 * receiver drops duplicates and frames after a gap by seq, delivering in order). */
#include "link.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "avm_err.h"
#include "codec.h"
#include "tls.h"
#include "transport_internal.h"

#define LINK_MAGIC "avm-link"
#define LINK_MAGIC_LEN (sizeof(LINK_MAGIC) - 1)
#define NAME_MAX_LEN 255 /* a machine name */
#define WORD_MAX_LEN 63  /* an op or an error code name */
#define ERR_MSG_MAX 1024 /* an error reply's message is cut to this */

enum { KIND_MESSAGE = 0, KIND_REQUEST = 1, KIND_REPLY = 2, KIND_ERROR = 3, KIND_HB = 4 };

/* Unacked frames older than this many heartbeat periods are pushed again. */
#define RESEND_PERIODS 3
/* Writes queued on one connection (frames, bytes; one frame always fits). */
#define SEND_BUF 4096
#define SEND_BYTES (8u * 1024 * 1024)
/* How fast a peer is dialled again, and how long its header may take. */
#define RECONN_MIN_MS 20
#define RECONN_MAX_MS 500
#define HANDSHAKE_MS 2000
/* The SP protocol numbers of push0 and pull0 (nng's NNI_PROTO(5, 0), (5, 1)). */
#define SP_PUSH0 0x50
#define SP_PULL0 0x51
#define SP_HDR_LEN 8
#define READ_CHUNK (64u * 1024)

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

typedef struct link_peer link_peer;

/* A TCP connection: dialled to a peer (outbound: we send) or accepted (inbound: we
 * receive). Freed in its close callback. */
typedef struct link_conn {
    uv_tcp_t tcp; /* data: the conn */
    uv_connect_t connect;
    avm_link *l;
    link_peer *peer;               /* outbound: its peer; inbound: NULL */
    struct link_conn *prev, *next; /* inbound: in l->inbound */
    bool closing;
    bool ready; /* the other side's SP header arrived and fits */
    uint8_t hdr[SP_HDR_LEN];
    size_t hdr_got;
    /* Inbound: the frame being read. */
    uint8_t lenb[8];
    size_t len_got;
    uint8_t *frame;
    size_t frame_len, frame_got;
    /* Outbound: writes queued in libuv. */
    size_t nwrites, wbytes;
    /* TLS (l->tls set): the session, the other side's address (inbound:
     * "IP:PORT"), and the machine its certificate was found to name (inbound:
     * checked against each frame's sender). */
    avm_tls *tls;
    uint8_t *pt; /* small frames waiting to be encrypted together */
    size_t pt_len;
    char remote[64];
    char tls_name[NAME_MAX_LEN + 1];
    uint64_t opened_ms; /* inbound TLS: accepted at (its handshake's deadline) */
} link_conn;

/* One queued write: the length header and the frame. */
typedef struct link_write {
    uv_write_t req;
    link_conn *c;
    size_t len;
    uint8_t data[];
} link_write;

struct link_peer {
    struct link_peer *next;
    avm_link *l;
    char *name;
    char *url;
    struct sockaddr_storage addr;
    uv_timer_t redial; /* data: the peer; the next dial, or the handshake deadline */
    link_conn *conn;   /* the outbound connection (NULL: none) */
    uint32_t backoff_ms;
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
};

/* A decoded frame (declared in transport_internal.h for the fuzz target). */
typedef avm_link__frame link_frame;
_Static_assert(sizeof(((link_frame *)0)->from) == NAME_MAX_LEN + 1, "from");
_Static_assert(sizeof(((link_frame *)0)->word) == WORD_MAX_LEN + 1, "word");

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
    uv_tcp_t listener;
    uv_timer_t hb;
    uv_timer_t ackt; /* delayed acknowledgements */
    /* The handles above, every connection, every peer's timer and every pending
     * request's timer: the link is freed when the last one has closed. */
    int open_handles;
    char *self;
    char *advertise; /* our address, told in heartbeats (NULL: not told) */
    size_t max_frame;
    uint32_t hb_ms;
    size_t max_unacked;
    uint64_t session;
    uint64_t next_corr;
    avm_link_config cfg; /* callbacks and arg (the strings are not kept) */
    link_peer *peers;
    link_conn *inbound;
    link_pending *pending;
    avm_link_req *held;
    bool stopped;
    avm_tls_ctx *tls;     /* mutual TLS on every connection (NULL: plaintext) */
    uv_prepare_t flusher; /* TLS: writes out what was encrypted, before the poll */
    link_conn *taking;    /* the connection whose frames are being taken */
    struct {              /* recent refusals, not logged again for a while */
        char key[160];    /* remote host and reason */
        uint64_t at_ms;
    } refused[8];
    /* Dropped input reported as link.drop, [0] refused, [1] routine (each its
     * own budget): DROP_LOG_MAX per DROP_LOG_MS window, the rest counted and told
     * with the next report. */
    uint64_t drop_window_ms[2];
    unsigned drop_logged[2];
    uint64_t drop_unlogged[2];
    uint8_t rbuf[READ_CHUNK]; /* every read lands here (one loop thread) */
    uint8_t pbuf[READ_CHUNK]; /* what TLS decrypts from it */
};

static void on_handle_closed(uv_handle_t *h);
static void link_free(avm_link *l);
static const char *on_frame(avm_link *l, link_frame *f, bool *routine);
static void pump_peer(link_peer *p, uint64_t now);
static void send_heartbeat(link_peer *p);
static void ack_soon(avm_link *l);

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

/* Decodes a frame; 0, or an AVM code with *why naming the cause (the frame is
 * then dropped). */
static int decode_frame(const uint8_t *p, size_t n, size_t max_frame, link_frame *f,
                        const char **why)
{
    size_t budget = 4 * max_frame;
    if (budget < AVM_DECODE_DEFAULT_MAX)
        budget = AVM_DECODE_DEFAULT_MAX;
    f->body = avm_nil();
    if (n > max_frame) {
        *why = "frame over max_frame";
        return AVM_ETOOBIG;
    }
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, budget);
    uint32_t items;
    const char *s;
    uint32_t slen;
    uint64_t version;
    if (avm_mp_get_array(&r, &items) != 0 || items != 9 ||
        avm_mp_get_str(&r, &s, &slen) != 0 || slen != LINK_MAGIC_LEN ||
        memcmp(s, LINK_MAGIC, LINK_MAGIC_LEN) != 0 ||
        avm_mp_get_uint(&r, &version) != 0) {
        *why = "not a link frame (no [\"avm-link\" version ...] header)";
        return AVM_EMALFORMED;
    }
    if (version != AVM_LINK_VERSION) {
        *why = "unsupported link frame version";
        return AVM_EVERSION;
    }
    if (!get_cstr(&r, f->from, sizeof(f->from)) || avm_mp_get_uint(&r, &f->kind) != 0) {
        *why = "malformed sender or kind";
        return AVM_EMALFORMED;
    }
    if (f->kind > KIND_HB) {
        *why = "unknown frame kind";
        return AVM_EMALFORMED;
    }
    if (avm_mp_get_uint(&r, &f->seq) != 0 || avm_mp_get_uint(&r, &f->ack) != 0 ||
        avm_mp_get_uint(&r, &f->corr) != 0 || !get_cstr(&r, f->word, sizeof(f->word))) {
        *why = "malformed seq, ack, corr or word";
        return AVM_EMALFORMED;
    }
    int rv = avm_mp_get_val(&r, &f->body);
    if (rv != 0) {
        f->body = avm_nil();
        *why = "malformed body";
        return rv;
    }
    if (r.p != r.end) {
        avm_val_release(f->body);
        f->body = avm_nil();
        *why = "trailing bytes after the body";
        return AVM_EMALFORMED;
    }
    return 0;
}

int avm_link__decode_frame(const uint8_t *p, size_t n, size_t max_frame,
                           avm_link__frame *f, const char **why)
{
    return decode_frame(p, n, max_frame, f, why);
}

int avm_link__encode_frame(avm_buf *b, const avm_link__frame *f)
{
    return encode_frame(b, f->from, (unsigned)f->kind, f->seq, f->ack, f->corr, f->word,
                        f->body);
}

/* --- Addresses -------------------------------------------------------------- */

/* Resolves "tcp://HOST:PORT" (HOST: an address, "[v6]", a name, or "" or "*" for
 * any) into out. Names are resolved now, blocking: links are configured at start. */
static int parse_url(const char *url, struct sockaddr_storage *out, char *errmsg,
                     size_t errlen)
{
    static const char scheme[] = "tcp://";
    if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s: not a tcp:// URL", url);
    const char *h = url + sizeof(scheme) - 1;
    const char *colon = strrchr(h, ':');
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) > 5 ||
        strspn(colon + 1, "0123456789") != strlen(colon + 1))
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s: no port", url);
    char host[256];
    size_t hlen = (size_t)(colon - h);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host))
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s: host name too long", url);
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    long port = strtol(colon + 1, NULL, 10);
    if (port > 65535)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s: bad port", url);
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rv = getaddrinfo(hlen == 0 || strcmp(host, "*") == 0 ? NULL : host, colon + 1,
                         &hints, &res);
    if (rv != 0 || res == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s: %s", url, gai_strerror(rv));
    memset(out, 0, sizeof(*out));
    memcpy(out, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    return 0;
}

/* --- Connections (loop thread) ---------------------------------------------- */

static void sp_header(uint8_t out[SP_HDR_LEN], unsigned proto)
{
    const uint8_t h[SP_HDR_LEN] = {0, 'S', 'P', 0, (uint8_t)(proto >> 8), (uint8_t)proto,
                                   0, 0};
    memcpy(out, h, SP_HDR_LEN);
}

static void on_conn_closed(uv_handle_t *h)
{
    link_conn *c = h->data;
    avm_link *l = c->l;
    avm_tls_free(c->tls);
    free(c->pt);
    free(c->frame);
    free(c);
    if (--l->open_handles == 0)
        link_free(l);
}

static void on_redial(uv_timer_t *t);

/* Closes c (once). An outbound connection's peer is dialled again later unless the
 * link is stopping. */
static void conn_close(link_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    avm_link *l = c->l;
    link_peer *p = c->peer;
    if (p != NULL) {
        p->conn = NULL;
        if (!l->stopped) {
            uv_timer_start(&p->redial, on_redial, p->backoff_ms, 0);
            p->backoff_ms *= 2;
            if (p->backoff_ms > RECONN_MAX_MS)
                p->backoff_ms = RECONN_MAX_MS;
        }
    } else {
        if (c->prev != NULL)
            c->prev->next = c->next;
        else
            l->inbound = c->next;
        if (c->next != NULL)
            c->next->prev = c->prev;
    }
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static link_conn *conn_new(avm_link *l, link_peer *p)
{
    link_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    if (uv_tcp_init(l->loop, &c->tcp) != 0) {
        free(c);
        return NULL;
    }
    c->l = l;
    c->peer = p;
    c->tcp.data = c;
    l->open_handles++;
    return c;
}

/* --- Refusals (loop thread) -------------------------------------------------- */

/* A refusal of the same remote host for the same reason is logged once in this
 * long (a peer redials every RECONN_MAX_MS). */
#define REFUSAL_QUIET_MS 10000

static void link_logf(avm_link *l, int level, const char *event, const char *k,
                      const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void link_logf(avm_link *l, int level, const char *event, const char *k,
                      const char *fmt, ...)
{
    if (l->cfg.log == NULL)
        return;
    char v[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    l->cfg.log(l->cfg.arg, level, event, k, v);
}

/* Whether host was refused for why within REFUSAL_QUIET_MS; notes it now if not. */
static bool refusal_quiet(avm_link *l, const char *host, const char *why)
{
    char key[sizeof(l->refused[0].key)];
    if (snprintf(key, sizeof(key), "%s %s", host, why) < 0) /* cut: fine */
        key[0] = '\0';
    uint64_t now = mono_ms();
    size_t n = sizeof(l->refused) / sizeof(l->refused[0]), oldest = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(l->refused[i].key, key) == 0) {
            if (l->refused[i].at_ms + REFUSAL_QUIET_MS > now)
                return true;
            l->refused[i].at_ms = now;
            return false;
        }
        if (l->refused[i].at_ms < l->refused[oldest].at_ms)
            oldest = i;
    }
    snprintf(l->refused[oldest].key, sizeof(l->refused[oldest].key), "%s", key);
    l->refused[oldest].at_ms = now;
    return false;
}

static void refuse(link_conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Refuses c: a warning naming the remote address and why, then c is closed
 * (nothing more it carries is taken). */
static void refuse(link_conn *c, const char *fmt, ...)
{
    if (c->closing)
        return;
    avm_link *l = c->l;
    char why[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    char host[sizeof(c->remote)];
    snprintf(host, sizeof(host), "%s", c->remote);
    char *colon = strrchr(host, ':');
    if (colon != NULL && c->peer == NULL)
        *colon = '\0'; /* the port of an accepted connection changes at each dial */
    if (!refusal_quiet(l, c->peer != NULL ? c->peer->url : host, why)) {
        if (c->peer != NULL)
            link_logf(l, AVM_LINK_LOG_WARN, "link.refused", "error", "%s at %s: %s",
                      c->peer->name, c->peer->url, why);
        else
            link_logf(l, AVM_LINK_LOG_WARN, "link.refused", "error",
                      "connection from %s: %s", c->remote, why);
    }
    if (c->tls != NULL && avm_tls_out_pending(c->tls) > 0) {
        /* The alert that tells the peer why, if the socket takes it now. */
        uint8_t a[1024];
        uv_buf_t b =
            uv_buf_init((char *)a, (unsigned)avm_tls_out_take(c->tls, a, sizeof(a)));
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    }
    conn_close(c);
}

static void on_write(uv_write_t *req, int status)
{
    link_write *w = req->data;
    link_conn *c = w->c;
    c->nwrites--;
    c->wbytes -= w->len;
    free(w);
    if (c->closing)
        return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    /* Room again: push what waited for it. */
    if (c->peer != NULL && c->peer->unsent != NULL && c->nwrites <= SEND_BUF / 2)
        pump_peer(c->peer, mono_ms());
}

/* Writes out what TLS has encrypted for c; false when c was closed (the stream
 * cannot go on without those bytes). */
static bool conn_flush(link_conn *c)
{
    size_t n = avm_tls_out_pending(c->tls);
    if (n == 0)
        return true;
    link_write *w = malloc(sizeof(*w) + n);
    if (w == NULL) {
        conn_close(c);
        return false;
    }
    w->c = c;
    w->len = avm_tls_out_take(c->tls, w->data, n);
    w->req.data = w;
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(w);
        conn_close(c);
        return false;
    }
    c->nwrites++;
    c->wbytes += w->len;
    return true;
}

/* Plaintext encrypted at a time on a TLS connection, and written out before the
 * next: the memory BIO never holds more than about this much (a 16 MiB frame does
 * not sit there twice, plaintext-sized). */
#define TLS_CHUNK (256u * 1024)
/* Small frames collect in a buffer of this size (one TLS record's worth of
 * plaintext) and are encrypted together: one record, not one per frame. */
#define TLS_RECORD 16384u

/* Encrypts what collected in c's plaintext buffer. False when c was refused. */
static bool tls_seal(link_conn *c)
{
    if (c->pt_len == 0)
        return true;
    size_t n = c->pt_len;
    c->pt_len = 0;
    if (avm_tls_write(c->tls, c->pt, n) != 0) {
        refuse(c, "%s", avm_tls_why(c->tls));
        return false;
    }
    return true;
}

/* The loop is about to poll: every TLS connection encrypts what collected and
 * writes it out. (A frame queued by another prepare callback run after this one
 * would wait for the next iteration, after a poll: nothing in avmd queues frames
 * from a prepare handle. An idle handle instead, which keeps the poll from
 * blocking, made avmd's replicated-controller puts 2-4x slower at one client.) */
static void on_flush(uv_prepare_t *h)
{
    avm_link *l = h->data;
    uv_prepare_stop(h);
    for (link_conn *c = l->inbound, *next; c != NULL; c = next) {
        next = c->next; /* a failed flush unlinks c */
        if (c->tls != NULL && !c->closing && tls_seal(c))
            conn_flush(c);
    }
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        if (p->conn != NULL && p->conn->tls != NULL && !p->conn->closing &&
            tls_seal(p->conn))
            conn_flush(p->conn);
}

/* Encrypts hdr and data on c's TLS session: small frames collect (written out
 * before the loop polls: the records of many frames in one write), large ones go
 * out TLS_CHUNK at a time. */
static bool tls_conn_write(link_conn *c, const uint8_t *hdr, size_t hlen,
                           const void *data, size_t len)
{
    if (!avm_tls_established(c->tls))
        return false;
    if (c->pt == NULL && (c->pt = malloc(TLS_RECORD)) == NULL)
        return false;
    if (hlen + len > TLS_RECORD - c->pt_len && !tls_seal(c))
        return false;
    if (hlen + len <= TLS_RECORD - c->pt_len) {
        memcpy(c->pt + c->pt_len, hdr, hlen);
        if (len > 0)
            memcpy(c->pt + c->pt_len + hlen, data, len);
        c->pt_len += hlen + len;
        if (c->pt_len == TLS_RECORD && !tls_seal(c))
            return false;
        if (avm_tls_out_pending(c->tls) >= TLS_CHUNK)
            return conn_flush(c);
        uv_prepare_start(&c->l->flusher, on_flush);
        return true;
    }
    const uint8_t *d = data;
    bool ok = avm_tls_write(c->tls, hdr, hlen) == 0;
    for (size_t off = 0; ok && off < len;) {
        size_t k = len - off < TLS_CHUNK ? len - off : TLS_CHUNK;
        ok = avm_tls_write(c->tls, d + off, k) == 0;
        off += k;
        if (ok && !conn_flush(c))
            return false;
    }
    if (!ok) {
        refuse(c, "%s", avm_tls_why(c->tls));
        return false;
    }
    return true;
}

/* Queues raw bytes on c; false when it cannot take them now. */
static bool conn_write(link_conn *c, const uint8_t *hdr, size_t hlen, const void *data,
                       size_t len)
{
    if (c->nwrites > 0 && (c->nwrites >= SEND_BUF || c->wbytes + len > SEND_BYTES))
        return false;
    if (c->tls != NULL)
        return tls_conn_write(c, hdr, hlen, data, len);
    link_write *w = malloc(sizeof(*w) + hlen + len);
    if (w == NULL)
        return false;
    w->c = c;
    w->len = hlen + len;
    memcpy(w->data, hdr, hlen);
    if (len > 0)
        memcpy(w->data + hlen, data, len);
    w->req.data = w;
    uv_buf_t buf = uv_buf_init((char *)w->data, (unsigned)w->len);
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(w);
        conn_close(c);
        return false;
    }
    c->nwrites++;
    c->wbytes += w->len;
    return true;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    link_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init((char *)c->l->rbuf, sizeof(c->l->rbuf));
}

/* The other side's SP header, byte by byte from p[n]; the bytes used, or -1 when
 * the header is wrong. */
static ssize_t take_header(link_conn *c, const uint8_t *p, size_t n)
{
    size_t k = SP_HDR_LEN - c->hdr_got;
    if (k > n)
        k = n;
    memcpy(c->hdr + c->hdr_got, p, k);
    c->hdr_got += k;
    if (c->hdr_got < SP_HDR_LEN)
        return (ssize_t)k;
    uint8_t want[SP_HDR_LEN];
    sp_header(want, c->peer != NULL ? SP_PULL0 : SP_PUSH0);
    if (memcmp(c->hdr, want, SP_HDR_LEN) != 0)
        return -1;
    c->ready = true;
    return (ssize_t)k;
}

/* Reports input from c that is dropped or refused, naming the cause, through
 * cfg.log as link.drop (routine: a duplicate a resend explains), at most DROP_LOG_MAX
 * times per DROP_LOG_MS for each of the two classes; the reports held back are
 * counted in the next one. */
#define DROP_LOG_MAX 10
#define DROP_LOG_MS 10000
static void drop_log(link_conn *c, bool routine, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void drop_log(link_conn *c, bool routine, const char *fmt, ...)
{
    avm_link *l = c->l;
    if (l->cfg.log == NULL)
        return;
    uint64_t now = mono_ms();
    int k = routine;
    if (now - l->drop_window_ms[k] >= DROP_LOG_MS) {
        l->drop_window_ms[k] = now;
        l->drop_logged[k] = 0;
    }
    if (l->drop_logged[k] >= DROP_LOG_MAX) {
        l->drop_unlogged[k]++;
        return;
    }
    l->drop_logged[k]++;
    char addr[INET6_ADDRSTRLEN + 8] = "?";
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        char host[INET6_ADDRSTRLEN] = "?";
        if (ss.ss_family == AF_INET6) {
            const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&ss;
            uv_ip6_name(a, host, sizeof(host));
            snprintf(addr, sizeof(addr), "[%s]:%u", host, ntohs(a->sin6_port));
        } else if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *a = (const struct sockaddr_in *)&ss;
            uv_ip4_name(a, host, sizeof(host));
            snprintf(addr, sizeof(addr), "%s:%u", host, ntohs(a->sin_port));
        }
    }
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    if (l->drop_unlogged[k] > 0 && n >= 0 && (size_t)n < sizeof(why)) {
        snprintf(why + n, sizeof(why) - (size_t)n, " (and %llu more dropped unreported)",
                 (unsigned long long)l->drop_unlogged[k]);
        l->drop_unlogged[k] = 0;
    }
    link_logf(l, routine ? AVM_LINK_LOG_DEBUG : AVM_LINK_LOG_WARN, "link.drop", "why",
              "from %s: %s", addr, why);
}

/* A whole frame arrived on inbound connection c. */
static void take_frame(link_conn *c, const uint8_t *data, size_t len)
{
    avm_link *l = c->l;
    link_frame f;
    const char *why = NULL;
    int rv = decode_frame(data, len, l->max_frame, &f, &why);
    if (rv != 0) {
        drop_log(c, false, "dropped a frame of %zu bytes: %s (%s)", len, why,
                 avm_strerror(rv));
        return;
    }
    bool routine = false;
    why = on_frame(l, &f, &routine);
    if (why != NULL)
        drop_log(c, routine, "dropped a frame (kind %llu, seq %llu) from \"%s\": %s",
                 (unsigned long long)f.kind, (unsigned long long)f.seq, f.from, why);
    avm_val_release(f.body);
}

/* Inbound bytes: length-prefixed frames. False when the connection must close. */
static bool take_frames(link_conn *c, const uint8_t *p, size_t n)
{
    avm_link *l = c->l;
    while (n > 0 && !c->closing && !l->stopped) {
        if (c->frame == NULL && c->len_got < 8) {
            size_t k = 8 - c->len_got;
            if (k > n)
                k = n;
            memcpy(c->lenb + c->len_got, p, k);
            c->len_got += k;
            p += k;
            n -= k;
            if (c->len_got < 8)
                return true;
            uint64_t len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | c->lenb[i];
            if (len > l->max_frame) {
                /* as nng does (NNG_OPT_RECVMAXSZ): drop the peer */
                drop_log(c, false,
                         "closed the connection: a frame of %llu bytes is over "
                         "max_frame (%zu)",
                         (unsigned long long)len, l->max_frame);
                return false;
            }
            c->frame_len = (size_t)len;
            c->frame_got = 0;
            /* Whole frames in the buffer are decoded in place. */
            if (len <= n) {
                c->len_got = 0;
                p += len;
                n -= (size_t)len;
                take_frame(c, p - len, (size_t)len);
                continue;
            }
            if ((c->frame = malloc(c->frame_len)) == NULL)
                return false;
        }
        size_t k = c->frame_len - c->frame_got;
        if (k > n)
            k = n;
        memcpy(c->frame + c->frame_got, p, k);
        c->frame_got += k;
        p += k;
        n -= k;
        if (c->frame_got == c->frame_len) {
            uint8_t *fr = c->frame;
            c->frame = NULL;
            c->len_got = 0;
            take_frame(c, fr, c->frame_len);
            free(fr);
        }
    }
    return true;
}

/* Why the other side's first bytes are not the header we want. */
static void refuse_header(link_conn *c)
{
    if (c->hdr[0] == 0x16 && c->hdr[1] == 0x03)
        refuse(c, "the peer speaks TLS (this node runs without --tls-cert)");
    else if (c->hdr[0] == 0x15 && c->hdr[1] == 0x03)
        refuse(c, "the peer sent a TLS alert (it requires TLS; this node runs without "
                  "--tls-cert)");
    else
        refuse(c, "not an avm link: its header is not SP %s",
               c->peer != NULL ? "pull0" : "push0");
}

/* Plaintext from the other side (after TLS, when on). */
static void conn_input(link_conn *c, const uint8_t *p, size_t n)
{
    if (!c->ready) {
        ssize_t k = take_header(c, p, n);
        if (k < 0) {
            refuse_header(c);
            return;
        }
        p += k;
        n -= (size_t)k;
        if (c->ready && c->peer != NULL) {
            /* Our dialled connection is up: resend what is unacknowledged. */
            link_peer *pr = c->peer;
            uv_timer_stop(&pr->redial);
            pr->backoff_ms = RECONN_MIN_MS;
            pr->unsent = pr->head;
            send_heartbeat(pr);
            pump_peer(pr, mono_ms());
        }
    }
    if (c->peer != NULL)
        return; /* a pull0 side sends nothing after its header */
    c->l->taking = c;
    if (n > 0 && !take_frames(c, p, n) && !c->closing)
        conn_close(c);
    c->l->taking = NULL;
    ack_soon(c->l);
}

/* The TLS session of c came up: the SP header goes first, as on a plaintext
 * connection. */
static bool tls_up(link_conn *c)
{
    uint8_t hdr[SP_HDR_LEN];
    sp_header(hdr, c->peer != NULL ? SP_PUSH0 : SP_PULL0);
    if (!conn_write(c, hdr, SP_HDR_LEN, NULL, 0)) {
        conn_close(c);
        return false;
    }
    return true;
}

/* Ciphertext from the other side: the handshake, then plaintext for conn_input. */
static void tls_input(link_conn *c, const uint8_t *p, size_t n)
{
    avm_link *l = c->l;
    avm_tls_feed(c->tls, p, n);
    if (!avm_tls_established(c->tls)) {
        int r = avm_tls_handshake(c->tls);
        if (r < 0) {
            refuse(c, "%s", avm_tls_why(c->tls));
            return;
        }
        if (!conn_flush(c) || r == 0 || !tls_up(c))
            return;
    }
    while (!c->closing && !l->stopped) {
        ssize_t k = avm_tls_read(c->tls, l->pbuf, sizeof(l->pbuf));
        if (k == 0)
            break;
        if (k < 0) {
            if (c->ready)
                conn_close(c); /* it was up: the peer closed, or broke the session */
            else
                refuse(c, "%s", avm_tls_why(c->tls));
            return;
        }
        conn_input(c, l->pbuf, (size_t)k);
    }
    if (!c->closing)
        conn_flush(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    link_conn *c = s->data;
    (void)buf;
    if (c->closing)
        return;
    if (nread < 0) {
        /* The other side closed, or the connection broke. Before the link was up,
         * it most likely refused us (a peer that needs TLS, or our certificate). */
        if (!c->ready && c->peer != NULL)
            refuse(c, "the peer closed the connection before the link was up (%s)",
                   c->tls != NULL ? "did it refuse our certificate, or run without TLS?"
                                  : "does it require TLS?");
        else if (c->peer == NULL && c->frame != NULL)
            drop_log(c, false, "the connection ended inside a frame (%zu of %zu bytes)",
                     c->frame_got, c->frame_len);
        else if (c->peer == NULL && c->len_got > 0)
            drop_log(c, false, "the connection ended inside a length header");
        conn_close(c);
        return;
    }
    if (c->tls != NULL)
        tls_input(c, c->l->rbuf, (size_t)nread);
    else
        conn_input(c, c->l->rbuf, (size_t)nread);
}

static void on_connection(uv_stream_t *server, int status)
{
    avm_link *l = server->data;
    if (status < 0 || l->stopped)
        return;
    link_conn *c = conn_new(l, NULL);
    if (c == NULL)
        return; /* stays in the backlog until the next accept */
    c->next = l->inbound;
    if (l->inbound != NULL)
        l->inbound->prev = c;
    l->inbound = c;
    uint8_t hdr[SP_HDR_LEN];
    sp_header(hdr, SP_PULL0);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_tcp_nodelay(&c->tcp, 1) != 0) {
        conn_close(c);
        return;
    }
    struct sockaddr_storage ss;
    int sl = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET6) {
            uv_ip6_name((struct sockaddr_in6 *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        } else {
            uv_ip4_name((struct sockaddr_in *)&ss, ip, sizeof(ip));
            port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        }
    }
    snprintf(c->remote, sizeof(c->remote), "%s:%d", ip, port);
    c->opened_ms = mono_ms();
    /* With TLS, the client speaks first; the header follows the handshake. */
    if (l->tls != NULL ? (c->tls = avm_tls_new(l->tls, true, NULL)) == NULL
                       : !conn_write(c, hdr, SP_HDR_LEN, NULL, 0)) {
        conn_close(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

static void on_connect(uv_connect_t *req, int status)
{
    link_conn *c = req->data;
    if (c->closing)
        return;
    uint8_t hdr[SP_HDR_LEN];
    sp_header(hdr, SP_PUSH0);
    if (status < 0 || uv_tcp_nodelay(&c->tcp, 1) != 0) {
        conn_close(c);
        return;
    }
    if (c->l->tls != NULL) {
        /* The ClientHello; the header follows the handshake (tls_up). */
        c->tls = avm_tls_new(c->l->tls, false, c->peer->name);
        if (c->tls == NULL || avm_tls_handshake(c->tls) < 0) {
            refuse(c, "%s", c->tls != NULL ? avm_tls_why(c->tls) : "out of memory");
            return;
        }
        if (!conn_flush(c))
            return;
    } else if (!conn_write(c, hdr, SP_HDR_LEN, NULL, 0)) {
        conn_close(c);
        return;
    }
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* Dials p (it has no connection); on failure, tries again later. */
static void dial(link_peer *p)
{
    avm_link *l = p->l;
    assert(p->conn == NULL && !l->stopped);
    link_conn *c = conn_new(l, p);
    if (c == NULL) {
        uv_timer_start(&p->redial, on_redial, RECONN_MAX_MS, 0);
        return;
    }
    p->conn = c;
    snprintf(c->remote, sizeof(c->remote), "%s", p->url);
    c->connect.data = c;
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&p->addr,
                       on_connect) != 0) {
        conn_close(c);
        return;
    }
    /* The handshake's deadline. */
    uv_timer_start(&p->redial, on_redial, HANDSHAKE_MS, 0);
}

static void on_redial(uv_timer_t *t)
{
    link_peer *p = t->data;
    if (p->l->stopped)
        return;
    if (p->conn != NULL) {
        if (p->conn->ready)
            return;
        conn_close(p->conn); /* no header in time: dial again (conn_close re-arms) */
        return;
    }
    dial(p);
}

/* --- Sending (loop thread) -------------------------------------------------- */

/* Queues a frame to the peer without waiting; false when it has no connection or
 * the connection's queue is full. */
static bool push_bytes(link_peer *p, const void *data, size_t len)
{
    link_conn *c = p->conn;
    if (c == NULL || !c->ready || c->closing)
        return false;
    uint8_t hdr[8];
    uint64_t n = len;
    for (int i = 7; i >= 0; i--, n >>= 8)
        hdr[i] = (uint8_t)n;
    return conn_write(c, hdr, sizeof(hdr), data, len);
}

static void send_heartbeat(link_peer *p)
{
    avm_link *l = p->l;
    avm_val items[4] = {avm_int((int64_t)l->session), avm_int((int64_t)p->session),
                        avm_int((int64_t)l->max_frame), avm_nil()};
    size_t n = 3;
    if (l->advertise != NULL && avm_cstr(AVM_STR, l->advertise, &items[3]) == 0)
        n = 4;
    avm_val body;
    if (avm_list_from(items, n, &body) != 0)
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

/* Pushes the peer's frames from p->unsent on, as far as its connection takes them
 * (the rest goes when writes complete or a connection comes up). */
static void pump_peer(link_peer *p, uint64_t now)
{
    if (p->session == 0)
        return; /* the peer's session is not known yet: hold */
    while (p->unsent != NULL) {
        link_out *o = p->unsent;
        if (!push_bytes(p, o->data, o->len))
            return;
        o->sent_ms = now;
        p->unsent = o->next;
        p->ack_owed = false;
    }
}

static void pump_all(avm_link *l)
{
    uint64_t now = mono_ms();
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        pump_peer(p, now);
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
    pump_peer(p, mono_ms());
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

static link_peer *find_peer(const avm_link *l, const char *name);

int avm_link_fail_requests(avm_link *l, const char *peer, const char *why)
{
    link_peer *p = find_peer(l, peer);
    if (p == NULL)
        return AVM_ENOTFOUND;
    /* Those pending now (callbacks may make new ones: they are left alone). */
    size_t n = 0;
    for (link_pending *pr = l->pending; pr != NULL; pr = pr->next)
        n += pr->peer == p;
    if (n == 0)
        return 0;
    link_pending **list = calloc(n, sizeof(*list));
    if (list == NULL)
        return AVM_ENOMEM;
    size_t k = 0;
    for (link_pending *pr = l->pending; pr != NULL && k < n; pr = pr->next)
        if (pr->peer == p)
            list[k++] = pr;
    for (size_t i = 0; i < k; i++) {
        pending_unlink(l, list[i]);
        char msg[NAME_MAX_LEN + 200];
        snprintf(msg, sizeof(msg), "%s: %s", peer, why);
        pending_complete(list[i], AVM_EIO, avm_nil(), msg);
        if (l->stopped)
            break; /* a callback stopped the link: the rest went with it */
    }
    free(list);
    return 0;
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
    if (p->l->cfg.on_restart != NULL)
        p->l->cfg.on_restart(p->l->cfg.arg, p->name);
}

/* --- The loop thread's side of receiving ---------------------------------- */

static link_peer *find_peer(const avm_link *l, const char *name)
{
    for (link_peer *p = l->peers; p != NULL; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

/* NULL, or why the heartbeat was ignored. */
static const char *on_heartbeat(avm_link *l, link_peer *p, const link_frame *f)
{
    avm_val b = f->body;
    if (b.kind != AVM_LIST || avm_list_len(b) < 3 || avm_list_at(b, 0).kind != AVM_INT ||
        avm_list_at(b, 1).kind != AVM_INT || avm_list_at(b, 2).kind != AVM_INT)
        return "malformed heartbeat body";
    uint64_t sess = (uint64_t)avm_list_at(b, 0).u.i;
    uint64_t yours = (uint64_t)avm_list_at(b, 1).u.i;
    int64_t maxf = avm_list_at(b, 2).u.i;
    if (sess == 0)
        return "heartbeat without a session";
    p->max_frame = maxf > 0 ? (size_t)maxf : 0;
    bool learned = false;
    if (sess != p->session) {
        if (p->session != 0)
            reset_pair(p);
        if (l->stopped)
            return NULL; /* a failed request's callback stopped the link */
        p->session = sess;
        learned = true;
    }
    p->synced = yours == l->session;
    if (p->synced)
        take_ack(p, f->ack);
    /* The peer's own word for its address: after a restart on another port, a peer
     * that still dials the old one would never hear it otherwise. */
    if (avm_list_len(b) >= 4 && avm_list_at(b, 3).kind == AVM_STR &&
        strcmp(avm_list_at(b, 3).u.s->data, p->url) != 0 && l->cfg.on_moved != NULL) {
        l->cfg.on_moved(l->cfg.arg, p->name, avm_list_at(b, 3).u.s->data);
        if (l->stopped)
            return NULL;
    }
    if (learned) {
        /* Tell it at once that we know it, then send what was held. */
        send_heartbeat(p);
        pump_all(l);
    }
    return NULL;
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

/* With TLS, whether the certificate of the connection being read names the machine
 * the frame claims to come from; else the connection is refused. */
static bool sender_is_certified(avm_link *l, const link_frame *f)
{
    link_conn *c = l->taking;
    if (c == NULL || c->tls == NULL || strcmp(c->tls_name, f->from) == 0)
        return true;
    if (!avm_tls_peer_is(c->tls, f->from)) {
        char cn[NAME_MAX_LEN + 1];
        avm_tls_peer_cn(c->tls, cn, sizeof(cn));
        refuse(c,
               "its certificate (CN=%s) does not name %s, the machine its frames "
               "claim to come from",
               cn, f->from);
        return false;
    }
    snprintf(c->tls_name, sizeof(c->tls_name), "%s", f->from);
    return true;
}

/* NULL, or why f was dropped (*routine: as joins, restarts and resends make). */
static const char *on_frame(avm_link *l, link_frame *f, bool *routine)
{
    if (!sender_is_certified(l, f))
        return NULL; /* refused, and logged as such */
    link_peer *p = find_peer(l, f->from);
    if (p == NULL) {
        *routine = f->kind == KIND_HB; /* a joining member's, before it is added */
        return "not a peer of ours";
    }
    p->last_heard = mono_ms();
    if (l->cfg.on_heard != NULL) {
        l->cfg.on_heard(l->cfg.arg, p->name, p->last_heard);
        if (l->stopped)
            return NULL;
    }
    if (f->kind == KIND_HB)
        return on_heartbeat(l, p, f);
    if (!p->synced) {
        /* sent to an older process of ours, or before it knew us */
        *routine = true;
        return "the sender's heartbeats do not name this node's current session";
    }
    take_ack(p, f->ack);
    p->ack_owed = true;
    if (f->seq != p->recv_next) {
        /* a duplicate, or after a gap: the sender pushes it again */
        *routine = f->seq < p->recv_next;
        return f->seq < p->recv_next ? "a duplicate (seq already received)"
                                     : "out of order (a gap before its seq)";
    }
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
    return NULL;
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

static void on_hb(uv_timer_t *t)
{
    avm_link *l = t->data;
    uint64_t now = mono_ms();
    uint64_t old = (uint64_t)RESEND_PERIODS * l->hb_ms;
    /* An accepted TLS connection whose handshake and header do not come in time
     * holds no more of the node's memory. */
    for (link_conn *c = l->inbound, *next; c != NULL; c = next) {
        next = c->next;
        if (c->tls != NULL && !c->ready && c->opened_ms + HANDSHAKE_MS <= now)
            refuse(c, "no TLS handshake and link header within %d ms", HANDSHAKE_MS);
    }
    for (link_peer *p = l->peers; p != NULL; p = p->next) {
        send_heartbeat(p);
        /* Push again what waited too long for its acknowledgement. */
        if (p->head != NULL && p->head != p->unsent && p->head->sent_ms + old <= now)
            p->unsent = p->head;
    }
    pump_all(l);
}

/* Acknowledge what came in a little later (unless a frame carries the ack first):
 * one heartbeat for many frames, not one per read. */
static void ack_soon(avm_link *l)
{
    if (!l->stopped && !uv_is_active((uv_handle_t *)&l->ackt))
        uv_timer_start(&l->ackt, on_ack_timer, ACK_DELAY_MS, 0);
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
    avm_tls_ctx_free(l->tls);
    free(l->self);
    free(l->advertise);
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

/* A peer's timer (its data is the peer, freed with the link). */
static void on_redial_closed(uv_handle_t *h)
{
    avm_link *l = ((link_peer *)h->data)->l;
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
    struct sockaddr_storage addr;
    int rv = parse_url(cfg->listen, &addr, errmsg, errlen);
    if (rv != 0)
        return rv;
    /* A write to a connection the peer has closed raises SIGPIPE (libuv writes
     * with write(2)); its default action would kill the node. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    avm_link *l = calloc(1, sizeof(*l));
    if (l == NULL || (l->self = strdup(cfg->self)) == NULL) {
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
    bool any_tls = cfg->tls_cert != NULL || cfg->tls_key != NULL || cfg->tls_ca != NULL;
    if (any_tls && (cfg->tls_cert == NULL || cfg->tls_key == NULL || cfg->tls_ca == NULL))
        rv = avm__failf(
            errmsg, errlen, AVM_EINVAL,
            "TLS needs a certificate, its key and the CA (all three, or none)");
    else if (any_tls)
        rv = avm_tls_ctx_new(cfg->tls_cert, cfg->tls_key, cfg->tls_ca, &l->tls, errmsg,
                             errlen);
    l->cfg.tls_cert = l->cfg.tls_key = l->cfg.tls_ca = NULL;
    if (rv == 0 && (rv = uv_tcp_init(loop, &l->listener)) != 0)
        rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot open a socket for %s: %s",
                        cfg->listen, uv_strerror(rv));
    if (rv != 0) {
        avm_tls_ctx_free(l->tls);
        free(l->self);
        free(l);
        return rv;
    }
    l->listener.data = l;
    l->open_handles = 1;
    if ((rv = uv_tcp_bind(&l->listener, (const struct sockaddr *)&addr, 0)) != 0 ||
        (rv = uv_listen((uv_stream_t *)&l->listener, 128, on_connection)) != 0) {
        rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot listen on %s: %s", cfg->listen,
                        uv_strerror(rv));
        uv_close((uv_handle_t *)&l->listener, on_handle_closed); /* frees l */
        return rv;
    }
    uv_timer_init(loop, &l->hb); /* cannot fail */
    uv_timer_init(loop, &l->ackt);
    uv_prepare_init(loop, &l->flusher);
    uv_unref((uv_handle_t *)&l->flusher); /* it never keeps the loop alive */
    l->hb.data = l->ackt.data = l->flusher.data = l;
    l->open_handles += 3;
    uv_timer_start(&l->hb, on_hb, l->hb_ms, l->hb_ms);
    *out = l;
    return 0;
}

int avm_link_port(const avm_link *l)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getsockname(&l->listener, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

void avm_link_stop(avm_link *l)
{
    if (l->stopped)
        return;
    l->stopped = true;
    uv_timer_stop(&l->hb);
    uv_timer_stop(&l->ackt);
    /* Nothing here waits: closing a connection drops what it had queued. */
    while (l->inbound != NULL)
        conn_close(l->inbound);
    for (link_peer *p = l->peers; p != NULL; p = p->next) {
        if (p->conn != NULL)
            conn_close(p->conn);
        uv_close((uv_handle_t *)&p->redial, on_redial_closed);
    }
    pending_fail_all(l, NULL, AVM_ESTATE, "link stopped (request to %s)");
    uv_close((uv_handle_t *)&l->listener, on_handle_closed);
    uv_close((uv_handle_t *)&l->hb, on_handle_closed);
    uv_close((uv_handle_t *)&l->ackt, on_handle_closed);
    uv_close((uv_handle_t *)&l->flusher, on_handle_closed);
}

int avm_link_set_advertise(avm_link *l, const char *url)
{
    char *u = url != NULL ? strdup(url) : NULL;
    if (url != NULL && u == NULL)
        return AVM_ENOMEM;
    free(l->advertise);
    l->advertise = u;
    return 0;
}

int avm_link_add_peer(avm_link *l, const char *name, const char *url, char *errmsg,
                      size_t errlen)
{
    if (l->stopped)
        return avm__failf(errmsg, errlen, AVM_ESTATE, "the link is stopped");
    if (name == NULL || name[0] == '\0' || strlen(name) > NAME_MAX_LEN || url == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "a peer needs a name and a URL");
    struct sockaddr_storage addr;
    int rv = parse_url(url, &addr, errmsg, errlen);
    if (rv != 0)
        return rv;
    link_peer *p = find_peer(l, name);
    if (p != NULL) {
        if (strcmp(p->url, url) == 0)
            return 0;
        char *u = strdup(url);
        if (u == NULL)
            return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
        free(p->url);
        p->url = u;
        p->addr = addr;
        /* Drop the old connection and dial the new address now. */
        if (p->conn != NULL)
            conn_close(p->conn);
        uv_timer_stop(&p->redial);
        p->backoff_ms = RECONN_MIN_MS;
        dial(p);
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
    p->addr = addr;
    p->next_seq = 1;
    p->recv_next = 1;
    p->backoff_ms = RECONN_MIN_MS;
    uv_timer_init(l->loop, &p->redial); /* cannot fail */
    p->redial.data = p;
    l->open_handles++;
    p->next = l->peers;
    l->peers = p;
    dial(p);
    return 0;
}
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
    out->connected = p->conn != NULL && p->conn->ready;
    out->last_heard_ms = p->last_heard;
    out->unacked = p->nunacked;
    return 0;
}
