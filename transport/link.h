/* Node-to-node links (the distribution issue's transport): messages between avmd
 * nodes over TCP (nng's push0/pull0 wire format, driven by libuv), FIFO per
 * sender-receiver pair, delivered at most once, with request/response correlation and
 * deadlines, reconnects, and heartbeats.
 *
 * Frames are canonical msgpack (node/vm/codec.h):
 *   [ "avm-link", version, from, kind, seq, ack, corr, word, body ]
 * from: the sender's machine name; kind: 0 message, 1 request, 2 reply,
 * 3 error reply, 4 heartbeat; seq: the sender's per-pair sequence number (1, 2, ...;
 * 0 for heartbeats); ack: the highest seq received in order from the destination;
 * corr: a request's correlation id (echoed by its reply; 0 otherwise); word: a
 * request's op, an error reply's code name ("ENOTFOUND"), else ""; body: an AVM
 * value. A connection that carries a frame larger than max_frame is closed.
 *
 * Delivery: each side keeps its unacknowledged frames per peer and sends them again
 * after a reconnect; the receiver delivers seq n only after n - 1 and drops
 * duplicates, so while both sides are up every message and request arrives once,
 * in order. A node that restarts starts a new session (a random session id carried
 * in its heartbeats and in the first frame after a connect) and both sides reset
 * their sequence numbers for the pair: what was in flight to or from the old process
 * is lost, never delivered twice.
 *
 * Sessions on the wire: a heartbeat's body is [session, the session of the
 * destination as the sender knows it (0: none yet), the sender's max_frame, and,
 * when set, the sender's address]. A
 * sender pushes sequenced frames to a peer only once it has heard the peer's
 * session; a receiver accepts them only once the peer's heartbeats name the
 * receiver's current session (so frames meant for an older process are dropped).
 * Frames to a peer are also checked against the peer's advertised max_frame
 * (AVM_ETOOBIG), so that one frame the peer would refuse cannot block the pair.
 *
 * TLS. With tls_cert, tls_key and tls_ca set, every connection (dialled or
 * accepted) is mutual TLS 1.3 (tls.h) before anything else is sent: both sides
 * present a certificate signed by the cluster CA. A dialled peer's certificate must
 * name the peer (subject CN or DNS SAN); an accepted connection's certificate must
 * name the machine its frames come from. A connection that fails any of this (no
 * certificate, another CA, expired, a name mismatch, a plaintext peer, garbage) is
 * refused: logged as a warning "link.refused" naming the remote address and the
 * reason, and closed; nothing it carried is delivered.
 *
 * All callbacks run on the loop thread; every call must come from it. */
#ifndef AVM_LINK_H
#define AVM_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "value.h"

#define AVM_LINK_VERSION 1
#define AVM_LINK_MAX_FRAME (16u * 1024 * 1024)

typedef struct avm_link avm_link;
typedef struct avm_link_req avm_link_req;

/* Log levels of avm_link_config.log (as avmd's). */
enum { AVM_LINK_LOG_DEBUG, AVM_LINK_LOG_INFO, AVM_LINK_LOG_WARN, AVM_LINK_LOG_ERROR };

typedef struct avm_link_config {
    const char *self;      /* this machine's name */
    const char *listen;    /* "tcp://HOST:PORT" (port 0: any; avm_link_port) */
    size_t max_frame;      /* 0: AVM_LINK_MAX_FRAME */
    uint32_t heartbeat_ms; /* heartbeat period to every peer (0: 100) */
    size_t max_unacked;    /* frames kept per peer for resending (0: 65536) */
    /* A one-way message from peer `from` (body borrowed for the call). */
    void (*on_message)(void *arg, const char *from, avm_val body);
    /* A request: answer it exactly once (now or later) with avm_link_reply or
     * avm_link_reply_error. */
    void (*on_request)(void *arg, avm_link_req *req, const char *from, const char *op,
                       avm_val body);
    /* Any frame (heartbeats included) arrived from peer at monotonic time now_ms;
     * feeds the failure detector. May be NULL. */
    void (*on_heard)(void *arg, const char *peer, uint64_t now_ms);
    /* The peer restarted (a new session after an older one): what either side
     * knew of the other's state is void. May be NULL. */
    void (*on_restart)(void *arg, const char *peer);
    /* The peer's heartbeats name an address other than the one we dial (it
     * restarted elsewhere, see avm_link_set_advertise). May be NULL. */
    void (*on_moved)(void *arg, const char *peer, const char *url);
    /* Mutual TLS on every connection (all three PEM files, or none: plaintext). */
    const char *tls_cert, *tls_key, *tls_ca;
    /* The link's log: an event and one key/value pair. May be NULL. Events:
     * link.refused (warn, key error: a connection refused, TLS or its header, then
     * closed), link.drop (key why, "from HOST:PORT: cause": input dropped: a
     * malformed frame, a frame from an unknown peer or for another session, a
     * duplicate, an oversized frame, a connection cut inside a frame; warn, or debug
     * for what joins, restarts and resends make; at most 10 of each per 10 s, the
     * rest counted in the next). */
    void (*log)(void *arg, int level, const char *event, const char *k, const char *v);
    void *arg;
} avm_link_config;

/* Starts a link: listens on cfg->listen (a host name there or in avm_link_add_peer
 * is resolved at once, blocking). The TLS files are read now: AVM_EINVAL naming the
 * file and the reason when one is missing, unreadable or invalid. Unless the program
 * handles SIGPIPE, the first start sets it to be ignored: a peer that goes away must not
 * kill the process. */
int avm_link_start(uv_loop_t *loop, const avm_link_config *cfg, avm_link **out,
                   char *errmsg, size_t errlen);
/* The bound TCP port (useful with port 0). */
int avm_link_port(const avm_link *l);
/* Stops: pending requests complete with AVM_ESTATE ("link stopped"); the loop must run
 * until the link's handles are closed. Requests the handler still holds may be
 * answered until then (the answer is dropped); after that their avm_link_req
 * pointers dangle (the link frees them). May be called from a callback. */
void avm_link_stop(avm_link *l);

/* The address this node is reached at, carried in its heartbeats (as their 4th
 * element): a peer that dials another one hears of it (on_moved). */
int avm_link_set_advertise(avm_link *l, const char *url);
/* Adds (or updates the address of) a peer; the link dials it and keeps redialling. */
int avm_link_add_peer(avm_link *l, const char *name, const char *url, char *errmsg,
                      size_t errlen);

/* Queues a one-way message to peer (body borrowed). AVM_ENOTFOUND for an unknown
 * peer, AVM_ETOOBIG over max_frame, AVM_EIO when max_unacked frames are waiting. */
int avm_link_send(avm_link *l, const char *peer, avm_val body, char *errmsg,
                  size_t errlen);

/* Sends a request; cb runs exactly once on the loop thread: rv 0 with the reply
 * (borrowed), the remote error's code with its message, or AVM_EIO "no answer from
 * PEER within N ms" at the deadline (the request may still run there; at most
 * once). */
typedef void (*avm_link_reply_cb)(void *arg, int rv, avm_val reply, const char *errmsg);
/* It fails at once (cb is not called) with AVM_ENOTFOUND for an unknown peer,
 * AVM_EINVAL for an op over 63 bytes, or avm_link_send's errors. When the peer
 * restarts, its pending requests fail with AVM_EIO "PEER restarted". */
int avm_link_request(avm_link *l, const char *peer, const char *op, avm_val body,
                     uint32_t deadline_ms, avm_link_reply_cb cb, void *arg, char *errmsg,
                     size_t errlen);
/* Fails every request now pending to peer at once with AVM_EIO "PEER: why" (the
 * failure detector gave up on it: waiting for the deadlines would only delay the
 * askers; a late answer is dropped). AVM_ENOTFOUND for an unknown peer. */
int avm_link_fail_requests(avm_link *l, const char *peer, const char *why);
/* Answers req (body borrowed); req is freed. The answer is dropped when the link
 * stopped or the requester restarted since the request arrived. A reply that cannot
 * be sent (over the frame limit, say) is answered with that error instead. */
void avm_link_reply(avm_link_req *req, avm_val body);
void avm_link_reply_error(avm_link_req *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Per peer: whether a connection is up, the last time anything was heard
 * (monotonic ms, 0: never), frames waiting for an acknowledgement. */
typedef struct avm_link_peer_info {
    bool connected;
    uint64_t last_heard_ms;
    size_t unacked;
} avm_link_peer_info;
int avm_link_peer(const avm_link *l, const char *peer, avm_link_peer_info *out);

#endif
