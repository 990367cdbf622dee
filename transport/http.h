/* A small HTTP/1.1 server on a libuv loop, for the node's observability endpoints
 * (avmd: /metrics, /healthz, /events). It is reachable from the network, so it
 * trusts nothing: GET only (other methods: 405), no request bodies (400), the
 * request head bounded (AVM_HTTP_MAX_HEAD, else 431), a head that does not come in
 * time (10 s) or garbage gets an answer or a closed connection, at most
 * max_conns connections at once (the next ones get 503 and are closed), and a
 * streaming client that does not read is dropped once max_pending bytes wait for
 * it, so a slow client never grows the node's memory without bound nor blocks the
 * loop.
 *
 * Every response closes its connection after it is written ("Connection: close";
 * no keep-alive): the clients are scrapers and event readers, and one request per
 * connection keeps the state machine of a connection to reading -> answering ->
 * closing (or streaming -> closing).
 *
 * Why libuv and not nng's HTTP server: the daemon's state (manager, cluster) lives
 * on its libuv loop and is not thread-safe; nng's server runs handlers on nng's
 * threads, so every request would have to be handed to the loop and back (as the
 * control endpoint does), and a long-lived event stream would hold an nng worker
 * and its own buffering outside our bounds. On the loop, a handler reads the state
 * directly and a stream is fed from the loop that makes the events.
 *
 * Single-threaded: every call comes from the loop's thread. */
#ifndef AVM_HTTP_H
#define AVM_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include <uv.h>

#define AVM_HTTP_MAX_HEAD 8192 /* request line and headers, bytes */

typedef struct avm_http avm_http;           /* a server */
typedef struct avm_http_conn avm_http_conn; /* one client's connection */

typedef struct avm_http_config {
    const char *addr;   /* "HOST:PORT" (port 0: any free port; see avm_http_port) */
    size_t max_conns;   /* connections at once (0: 64) */
    size_t max_pending; /* bytes queued to one client before it is dropped (0: 4 MiB) */
    /* A GET request for path (decoded of nothing: as sent, without the query) with
     * query (the text after '?', "" when none). The handler answers before it
     * returns: with avm_http_reply, or by starting a stream (avm_http_stream)
     * that it feeds later, until avm_http_end or `closed`. */
    void (*handler)(void *arg, avm_http_conn *c, const char *path, const char *query);
    /* Optional: c closed (the client went away, was dropped, or the server stops)
     * while it carried a stream or user data; c is invalid after this call. */
    void (*closed)(void *arg, avm_http_conn *c);
    /* Optional: everything sent on stream c so far is written (the client keeps
     * up): a producer that paces itself by avm_http_pending sends more now. */
    void (*drained)(void *arg, avm_http_conn *c);
    void *arg;
} avm_http_config;

/* Listens at cfg->addr on loop. 0, or AVM_EINVAL (an address that is not
 * HOST:PORT), AVM_EIO (bind or listen failed), AVM_ENOMEM, with errmsg. */
int avm_http_start(uv_loop_t *loop, const avm_http_config *cfg, avm_http **out,
                   char *errmsg, size_t errlen);
/* The port it listens on (the one picked for port 0). */
int avm_http_port(const avm_http *s);
/* Stops listening and closes every connection (`closed` runs during the call for
 * those that carry a stream or user data, and never after it); the server frees
 * itself once the loop has closed its handles. s is invalid after the call. */
void avm_http_stop(avm_http *s);

/* Answers c with status, a content type and a body of len bytes (copied), then
 * closes the connection once written. c is invalid after the call. */
void avm_http_reply(avm_http_conn *c, int status, const char *ctype, const char *body,
                    size_t len);
/* Starts a response whose body is streamed until avm_http_end (its end is the
 * connection's: no Content-Length). 0, or AVM_ENOMEM (c is then answered 503). */
int avm_http_stream(avm_http_conn *c, const char *ctype);
/* Sends len bytes (copied) on a stream. 0; AVM_ESTATE when the connection is
 * closing; AVM_ETOOBIG when the client is too far behind (more than max_pending
 * bytes wait for it): the connection is then closed and `closed` runs later. */
int avm_http_send(avm_http_conn *c, const char *data, size_t len);
/* Ends a stream: the connection closes once what was sent is written. `closed`
 * still runs (later). */
void avm_http_end(avm_http_conn *c);
/* Bytes sent on c that are not written yet. */
size_t avm_http_pending(const avm_http_conn *c);

/* The caller's data for c (NULL at first). */
void avm_http_set_data(avm_http_conn *c, void *data);
void *avm_http_data(const avm_http_conn *c);

/* The value of key in a query string ("a=1&b=x%2Fy"), percent-decoded ('+' as a
 * space) into out. true when key is there (and its value fit: else false). */
bool avm_http_query(const char *query, const char *key, char *out, size_t outlen);

#endif
