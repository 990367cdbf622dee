/* The HTTP/1.1 server of http.h: one request per connection, on the loop.
 *
 * A connection is a small state machine:
 *
 *   READING --(a whole, valid GET head)--> handler --> ANSWERED | STREAMING
 *   READING --(garbage, other method, too big, too slow)--> ANSWERED (4xx)
 *   ANSWERED --(written)--> shutdown --> CLOSING
 *   STREAMING --(avm_http_end, written)--> shutdown --> CLOSING
 *   any --(client closed, write error, too far behind, server stop)--> CLOSING
 *
 * CLOSING frees the connection in the close callback of its last handle. While a
 * response is written the connection keeps reading (and discards), so that a
 * client that sent more than we read does not get a reset before our answer. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "avm_err.h"
#include "http.h"
#include "transport_internal.h"

#define HEAD_TIMEOUT_MS 10000     /* a request head must arrive within this */
#define LINGER_MS 2000            /* after our answer, wait this long for the peer */
#define MAX_OVERFLOW 16           /* connections past max_conns that get a 503 */
#define SNDBUF_BYTES (128 * 1024) /* the kernel's send buffer of a connection */

typedef enum { C_READING, C_ANSWERED, C_STREAMING, C_CLOSING } cstate;

struct avm_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shut;
    avm_http *s;
    avm_http_conn *prev, *next; /* the server's connections */
    cstate st;
    bool ending;   /* close (shutdown) once every write is done */
    bool shutting; /* shutdown requested */
    int open;      /* handles not closed yet */
    size_t pending, writes;
    void *data;
    size_t len;
    char head[AVM_HTTP_MAX_HEAD];
};

struct avm_http {
    uv_loop_t *loop;
    uv_tcp_t listener;
    avm_http_config cfg;
    avm_http_conn *conns;
    size_t nconns;
    bool stopping, listener_closed;
    int port;
};

typedef struct wreq {
    uv_write_t w;
    avm_http_conn *c;
    size_t len;
    char data[];
} wreq;

/* --- Closing -------------------------------------------------------------------- */

static void server_maybe_free(avm_http *s)
{
    if (s->stopping && s->listener_closed && s->nconns == 0)
        free(s);
}

static void conn_closed(uv_handle_t *h)
{
    avm_http_conn *c = h->data;
    if (--c->open > 0)
        return;
    avm_http *s = c->s;
    bool notify = c->data != NULL && !s->stopping;
    if (notify && s->cfg.closed != NULL)
        s->cfg.closed(s->cfg.arg, c);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
    free(c);
    server_maybe_free(s);
}

static void conn_close(avm_http_conn *c)
{
    if (c->st == C_CLOSING)
        return;
    c->st = C_CLOSING;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, conn_closed);
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void linger_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void shutdown_done(uv_shutdown_t *r, int status)
{
    avm_http_conn *c = r->data;
    (void)status;
    /* Our side is done; the peer normally closes now (EOF in on_read). Do not wait
     * for it for ever. */
    if (c->st != C_CLOSING)
        uv_timer_start(&c->timer, linger_timeout, LINGER_MS, 0);
}

static void conn_finish(avm_http_conn *c)
{
    if (c->st == C_CLOSING || c->shutting)
        return;
    c->shutting = true;
    c->shut.data = c;
    if (uv_shutdown(&c->shut, (uv_stream_t *)&c->tcp, shutdown_done) != 0)
        conn_close(c);
}

/* --- Writing ---------------------------------------------------------------------- */

static void write_done(uv_write_t *w, int status)
{
    wreq *r = (wreq *)w;
    avm_http_conn *c = r->c;
    c->pending -= r->len;
    c->writes--;
    free(r);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (c->ending && c->writes == 0)
        conn_finish(c);
    else if (c->st == C_STREAMING && c->writes == 0 && c->s->cfg.drained != NULL)
        c->s->cfg.drained(c->s->cfg.arg, c);
}

static int conn_write(avm_http_conn *c, const char *data, size_t len)
{
    if (c->st == C_CLOSING || c->ending)
        return AVM_ESTATE;
    wreq *r = malloc(sizeof(*r) + len);
    if (r == NULL)
        return AVM_ENOMEM;
    r->c = c;
    r->len = len;
    memcpy(r->data, data, len);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)len);
    if (uv_write(&r->w, (uv_stream_t *)&c->tcp, &b, 1, write_done) != 0) {
        free(r);
        conn_close(c);
        return AVM_ESTATE;
    }
    c->pending += len;
    c->writes++;
    return 0;
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Payload Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

/* The status line and headers; len < 0: a streamed body. */
static int put_head(avm_http_conn *c, int status, const char *ctype, long long len)
{
    char h[512];
    int n =
        snprintf(h, sizeof(h),
                 "HTTP/1.1 %d %s\r\n"
                 "Content-Type: %s\r\n"
                 "Cache-Control: no-store\r\n"
                 "Connection: close\r\n"
                 "%s",
                 status, reason(status), ctype, status == 405 ? "Allow: GET\r\n" : "");
    if (len >= 0)
        n += snprintf(h + n, sizeof(h) - (size_t)n, "Content-Length: %lld\r\n\r\n", len);
    else
        n += snprintf(h + n, sizeof(h) - (size_t)n, "X-Accel-Buffering: no\r\n\r\n");
    return conn_write(c, h, (size_t)n);
}

void avm_http_reply(avm_http_conn *c, int status, const char *ctype, const char *body,
                    size_t len)
{
    if (c->st != C_READING)
        return; /* answered already */
    uv_timer_stop(&c->timer);
    c->st = C_ANSWERED;
    if (put_head(c, status, ctype, (long long)len) != 0 ||
        (len > 0 && conn_write(c, body, len) != 0)) {
        conn_close(c);
        return;
    }
    c->ending = true;
    if (c->writes == 0)
        conn_finish(c);
}

static void reply_text(avm_http_conn *c, int status, const char *text)
{
    avm_http_reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

int avm_http_stream(avm_http_conn *c, const char *ctype)
{
    if (c->st != C_READING)
        return AVM_ESTATE;
    uv_timer_stop(&c->timer);
    c->st = C_STREAMING;
    int rv = put_head(c, 200, ctype, -1);
    if (rv != 0)
        conn_close(c);
    return rv;
}

int avm_http_send(avm_http_conn *c, const char *data, size_t len)
{
    if (c->st != C_STREAMING || c->ending)
        return AVM_ESTATE;
    if (c->pending + len > c->s->cfg.max_pending) {
        /* Too far behind: drop it rather than queue without bound. */
        conn_close(c);
        return AVM_ETOOBIG;
    }
    return conn_write(c, data, len);
}

void avm_http_end(avm_http_conn *c)
{
    if (c->st != C_STREAMING || c->ending)
        return;
    c->ending = true;
    if (c->writes == 0)
        conn_finish(c);
}

size_t avm_http_pending(const avm_http_conn *c)
{
    return c->pending;
}

void avm_http_set_data(avm_http_conn *c, void *data)
{
    c->data = data;
}

void *avm_http_data(const avm_http_conn *c)
{
    return c->data;
}

/* --- Reading and parsing ------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
    return isalnum(ch) || (ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* The end of the head in c->head[0..len) (just past the blank line), or 0. */
static size_t head_end(const avm_http_conn *c)
{
    for (size_t i = 0; i + 1 < c->len; i++) {
        if (c->head[i] != '\n')
            continue;
        if (c->head[i + 1] == '\n')
            return i + 2;
        if (i + 2 < c->len && c->head[i + 1] == '\r' && c->head[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Whether what came so far can still begin a request line: a method of capital
 * letters, so that a binary blob is refused at once. */
static bool plausible(const avm_http_conn *c)
{
    for (size_t i = 0; i < c->len; i++) {
        unsigned char ch = (unsigned char)c->head[i];
        if (ch == ' ')
            return i > 0 && i <= 16;
        if (ch < 'A' || ch > 'Z' || i >= 16)
            return false;
    }
    return true;
}

static void dispatch(avm_http_conn *c, size_t end)
{
    /* Lines end with LF (CR LF or a bare LF); make them strings. */
    char *p = c->head, *stop = c->head + end;
    for (char *q = p; q < stop; q++)
        if (*q == '\r' || *q == '\n')
            *q = '\0';
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    char *method = p;
    char *sp1 = strchr(method, ' ');
    if (sp1 == NULL) {
        reply_text(c, 400, "bad request line\n");
        return;
    }
    *sp1 = '\0';
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (sp2 == NULL || target[0] != '/') {
        reply_text(c, 400, "bad request line: expected METHOD /PATH HTTP/1.x\n");
        return;
    }
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0) {
        reply_text(c, 400, "bad request line: HTTP/1.0 or HTTP/1.1 only\n");
        return;
    }
    for (const char *t = target; *t != '\0'; t++) {
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) {
            reply_text(c, 400, "bad request target\n");
            return;
        }
    }
    if (strcmp(method, "GET") != 0) {
        reply_text(c, 405, "only GET is served here\n");
        return;
    }
    /* Headers: NAME: VALUE. A body is refused (we read none). */
    char *line = (char *)version + strlen(version);
    while (line < stop && *line == '\0')
        line++;
    while (line < stop) {
        char *colon = strchr(line, ':');
        if (colon == NULL || colon == line) {
            reply_text(c, 400, "bad header line\n");
            return;
        }
        for (char *k = line; k < colon; k++) {
            if (!is_tchar((unsigned char)*k)) {
                reply_text(c, 400, "bad header name\n");
                return;
            }
        }
        *colon = '\0';
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (strcasecmp(line, "transfer-encoding") == 0 ||
            (strcasecmp(line, "content-length") == 0 && strcmp(v, "0") != 0)) {
            reply_text(c, 400, "request bodies are not accepted\n");
            return;
        }
        line = (char *)v + strlen(v);
        while (line < stop && *line == '\0')
            line++;
    }
    char *query = strchr(target, '?');
    if (query != NULL)
        *query++ = '\0';
    c->s->cfg.handler(c->s->cfg.arg, c, target, query ? query : "");
    if (c->st == C_READING)
        reply_text(c, 500, "no answer\n"); /* a handler bug: still answer */
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char discard[16384]; /* one loop thread: what we do not keep */
    avm_http_conn *c = h->data;
    (void)suggested;
    if (c->st == C_READING && c->len < sizeof(c->head))
        *buf = uv_buf_init(c->head + c->len, (unsigned)(sizeof(c->head) - c->len));
    else
        *buf = uv_buf_init(discard, sizeof(discard));
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    avm_http_conn *c = st->data;
    (void)buf;
    if (nread < 0) {
        conn_close(c); /* EOF or error: the client is gone */
        return;
    }
    if (c->st != C_READING || nread == 0)
        return;
    c->len += (size_t)nread;
    size_t end = head_end(c);
    if (end > 0) {
        dispatch(c, end);
    } else if (!plausible(c)) {
        reply_text(c, 400, "not an HTTP request\n");
    } else if (c->len >= sizeof(c->head)) {
        char msg[80];
        snprintf(msg, sizeof(msg), "request head larger than %d bytes\n",
                 AVM_HTTP_MAX_HEAD);
        reply_text(c, 431, msg);
    }
}

static void head_timeout(uv_timer_t *t)
{
    avm_http_conn *c = t->data;
    if (c->st == C_READING)
        reply_text(c, 408, "request head not received in time\n");
}

static void on_connection(uv_stream_t *server, int status)
{
    avm_http *s = server->data;
    if (status < 0 || s->stopping)
        return;
    avm_http_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return;
    c->s = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open = 2;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (s->nconns > s->cfg.max_conns + MAX_OVERFLOW) {
        conn_close(c); /* a flood: not even an answer */
        return;
    }
    if (s->nconns > s->cfg.max_conns) {
        reply_text(c, 503, "too many connections\n");
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    /* The kernel's buffer for a client counts too: keep it small, so that a
     * client that does not read is noticed (avm_http_pending grows) before the
     * kernel holds megabytes for it. */
    int sndbuf = SNDBUF_BYTES;
    uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
    uv_timer_start(&c->timer, head_timeout, HEAD_TIMEOUT_MS, 0);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        conn_close(c);
}

/* --- The server ------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h)
{
    avm_http *s = h->data;
    s->listener_closed = true;
    server_maybe_free(s);
}

int avm_http_start(uv_loop_t *loop, const avm_http_config *cfg, avm_http **out,
                   char *errmsg, size_t errlen)
{
    *out = NULL;
    const char *colon = cfg->addr ? strrchr(cfg->addr, ':') : NULL;
    if (colon == NULL || colon[1] == '\0' || strlen(cfg->addr) > 255)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "http address must be HOST:PORT, not '%s'",
                          cfg->addr ? cfg->addr : "");
    char host[256];
    size_t hlen = (size_t)(colon - cfg->addr);
    memcpy(host, cfg->addr, hlen);
    host[hlen] = '\0';
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "http address '%s': bad port",
                          cfg->addr);
    /* A write to a connection the client has closed raises SIGPIPE (libuv writes
     * with write(2)); its default action would kill the node (as in link.c). */
    struct sigaction pipe_sa;
    if (sigaction(SIGPIPE, NULL, &pipe_sa) == 0 && pipe_sa.sa_handler == SIG_DFL) {
        pipe_sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &pipe_sa, NULL);
    }
    avm_http *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    s->loop = loop;
    s->cfg = *cfg;
    if (s->cfg.max_conns == 0)
        s->cfg.max_conns = 64;
    if (s->cfg.max_pending == 0)
        s->cfg.max_pending = 4u << 20;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    uv_getaddrinfo_t gai;
    int rv = uv_getaddrinfo(loop, &gai, NULL,
                            host[0] == '\0' || strcmp(host, "*") == 0 ? NULL : host,
                            colon + 1, &hints);
    if (rv != 0) {
        free(s);
        return avm__failf(errmsg, errlen, AVM_EINVAL, "http address '%s': %s", cfg->addr,
                          uv_strerror(rv));
    }
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    rv = uv_tcp_bind(&s->listener, gai.addrinfo->ai_addr, 0);
    uv_freeaddrinfo(gai.addrinfo);
    if (rv == 0)
        rv = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rv != 0) {
        int code = avm__failf(errmsg, errlen, AVM_EIO, "http listen on %s: %s", cfg->addr,
                              uv_strerror(rv));
        /* s is freed once the loop has closed the listener. */
        s->stopping = true;
        uv_close((uv_handle_t *)&s->listener, listener_closed);
        return code;
    }
    struct sockaddr_storage sa;
    int salen = sizeof(sa);
    if (uv_tcp_getsockname(&s->listener, (struct sockaddr *)&sa, &salen) == 0)
        s->port = sa.ss_family == AF_INET6
                      ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                      : ntohs(((struct sockaddr_in *)&sa)->sin_port);
    *out = s;
    return 0;
}

int avm_http_port(const avm_http *s)
{
    return s->port;
}

void avm_http_stop(avm_http *s)
{
    if (s == NULL || s->stopping)
        return;
    /* Tell the owner now: after this call it hears nothing more. */
    for (avm_http_conn *c = s->conns; c != NULL; c = c->next) {
        if (c->data != NULL && s->cfg.closed != NULL)
            s->cfg.closed(s->cfg.arg, c);
        c->data = NULL;
    }
    s->stopping = true;
    for (avm_http_conn *c = s->conns; c != NULL; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->listener, listener_closed);
}

/* --- Queries ---------------------------------------------------------------------- */

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

bool avm_http_query(const char *query, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = query;
    while (p != NULL && *p != '\0') {
        const char *amp = strchr(p, '&');
        const char *pend = amp ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(pend - p));
        const char *kend = eq ? eq : pend;
        if ((size_t)(kend - p) == klen && memcmp(p, key, klen) == 0) {
            size_t n = 0;
            for (const char *v = eq ? eq + 1 : pend; v < pend; v++) {
                char ch = *v;
                if (ch == '+') {
                    ch = ' ';
                } else if (ch == '%' && v + 2 < pend && hexval(v[1]) >= 0 &&
                           hexval(v[2]) >= 0) {
                    ch = (char)(hexval(v[1]) * 16 + hexval(v[2]));
                    v += 2;
                }
                if (n + 1 >= outlen)
                    return false;
                out[n++] = ch;
            }
            if (outlen == 0)
                return false;
            out[n] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}
