/* The control endpoint: avmctl (and tools) talk to a node over nng request/reply.
 *
 * Frames are canonical msgpack (node/vm/codec.h):
 *   request  [ "avm-ctl", version, id, op,     body ]
 *   reply    [ "avm-ctl", version, id, status, body ]
 * version is AVM_CTL_VERSION; id is the client's request number, echoed; op is a
 * string such as "exec.ls"; status is "ok" or "error"; body is an AVM value, by
 * convention an association list: a list of (key value) lists whose keys are
 * strings (avm_ctl_get / avm_ctl_put). An error body has ("code" NAME) with NAME an
 * avm_err name such as "ENOTFOUND", and ("message" TEXT) naming the cause.
 * docs/protocol.md lists the operations.
 *
 * Frames larger than the endpoint's limit are refused by nng before they are read
 * (NNG_OPT_RECVMAXSZ); a frame that does not decode, has another version or an
 * unknown shape is answered with an error reply and never reaches the handler. */
#ifndef AVM_CONTROL_H
#define AVM_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "value.h"

#define AVM_CTL_VERSION 1
/* Default limit on one frame, each way. */
#define AVM_CTL_MAX_FRAME (16u * 1024 * 1024)

/* --- Bodies: association lists ------------------------------------------ */

/* The value under key in an association list (borrowed), or nil when absent or
 * when body is not an association list. */
avm_val avm_ctl_get(avm_val body, const char *key);
/* Convenience getters: 0, or AVM_EINVAL when the key is absent or of another kind
 * (then errmsg names the key and the kind expected). *s is borrowed. */
int avm_ctl_get_str(avm_val body, const char *key, const char **s, char *errmsg,
                    size_t errlen);
int avm_ctl_get_int(avm_val body, const char *key, int64_t *v, char *errmsg,
                    size_t errlen);

/* A builder for association lists. */
typedef struct avm_ctl_body {
    avm_val *items; /* (key value) lists */
    size_t n, cap;
    int err; /* first error (AVM_ENOMEM; AVM_ETOODEEP for a value nested more than
              * AVM_MAX_DEPTH - 2 lists, which the body could not encode), sticky */
} avm_ctl_body;
void avm_ctl_body_init(avm_ctl_body *b);
/* Appends (key v); takes the reference to v (released at once after an error). */
void avm_ctl_put(avm_ctl_body *b, const char *key, avm_val v);
void avm_ctl_put_str(avm_ctl_body *b, const char *key, const char *s);
void avm_ctl_put_int(avm_ctl_body *b, const char *key, int64_t v);
void avm_ctl_put_bool(avm_ctl_body *b, const char *key, bool v);
/* The list (owned by the caller) or the builder's error; resets the builder. */
int avm_ctl_body_finish(avm_ctl_body *b, avm_val *out);
void avm_ctl_body_free(avm_ctl_body *b);
/* A copy of body (an association list, or nil for none) without the pairs whose
 * key is drop1 or drop2 (either may be NULL), with (key v) appended when key is
 * not NULL (v borrowed). A body that is not a list is returned as it is (another
 * reference), without the new pair. 0 or AVM_ENOMEM; *out owned. */
int avm_ctl_body_edit(avm_val body, const char *drop1, const char *drop2, const char *key,
                      avm_val v, avm_val *out);

/* --- Authentication (docs/operations.md, "Authentication") -------------- */

/* Permissions of a principal. */
enum {
    AVM_CTL_PERM_READ = 1 << 0,   /* looking: status, listings, traces */
    AVM_CTL_PERM_RUN = 1 << 1,    /* running programs and changing executions */
    AVM_CTL_PERM_UNSAFE = 1 << 2, /* run with allow_unsafe */
    AVM_CTL_PERM_ADMIN = 1 << 3,  /* cluster and controller membership */
};
/* A token of at least this many bytes. */
#define AVM_CTL_TOKEN_MIN 32
#define AVM_CTL_TOKEN_MAX 256
#define AVM_CTL_PRINCIPAL_MAX 63

typedef struct avm_ctl_token {
    char principal[AVM_CTL_PRINCIPAL_MAX + 1];
    char token[AVM_CTL_TOKEN_MAX + 1];
    size_t len; /* of token */
    unsigned perms;
} avm_ctl_token;

typedef struct avm_ctl_tokens {
    avm_ctl_token *v;
    size_t n;
} avm_ctl_tokens;

/* Parses a token file's text (len bytes; `file` names it in messages): one
 * `PRINCIPAL TOKEN PERMS` line per principal, separated by blanks, PERMS a
 * comma-separated list of read, run, unsafe, admin; blank lines and lines whose
 * first non-blank is `#` are skipped. Principals are 1-63 letters, digits and
 * `-_.@` but not "anonymous" or "local" (reserved); tokens 32-256 printable
 * non-blank bytes; principals and tokens unique.
 * 0, or AVM_EINVAL naming the file, the line and what is wrong (never the token),
 * AVM_ENOMEM. *out: free with avm_ctl_tokens_free. An empty file is refused too
 * (nobody could talk to the node). */
int avm_ctl_tokens_parse(const char *text, size_t len, const char *file,
                         avm_ctl_tokens **out, char *errmsg, size_t errlen);
/* Reads and parses the file at path, refusing one that the group or others may
 * read or write (its mode in the message: chmod 600 it), or that is not a regular
 * file. 0, AVM_EIO (cannot read), AVM_EINVAL, AVM_ENOMEM with errmsg. */
int avm_ctl_tokens_load(const char *path, avm_ctl_tokens **out, char *errmsg,
                        size_t errlen);
void avm_ctl_tokens_free(avm_ctl_tokens *t);
/* The entry whose token is the n bytes at tok, or NULL. Compares with every entry
 * in time that depends only on n and the entries' lengths, never on where the
 * bytes differ. */
const avm_ctl_token *avm_ctl_tokens_find(const avm_ctl_tokens *t, const char *tok,
                                         size_t n);
/* The permission op needs (one AVM_CTL_PERM_*), or 0 for an unknown op (refused
 * as unknown by the node, after authentication). */
unsigned avm_ctl_op_perm(const char *op);
/* "read", "run", "unsafe", "admin" for one permission bit; "?" otherwise. */
const char *avm_ctl_perm_name(unsigned perm);
/* perms as "read,run" ("none" for 0) in buf. */
const char *avm_ctl_perms_str(unsigned perms, char *buf, size_t len);

/* --- Frames ------------------------------------------------------------- */

typedef struct avm_ctl_frame {
    uint64_t version;
    uint64_t id;
    char word[64]; /* the op of a request, the status of a reply */
    avm_val body;  /* owned */
} avm_ctl_frame;

/* Appends the frame [magic, version, id, word, body] to out (body borrowed). 0,
 * AVM_EINVAL when word is longer than 63 bytes, or avm_val_encode's error. */
int avm_ctl_encode(avm_buf *out, uint64_t id, const char *word, avm_val body);
/* Decodes one frame of at most max bytes (AVM_CTL_MAX_FRAME here; the server uses
 * avm_ctl_decode_ex with its own limit). 0, or AVM_EMALFORMED / AVM_ETOOBIG /
 * AVM_ETOODEEP / AVM_EVERSION / AVM_ENOMEM with errmsg naming the cause (for
 * example "frame is not an array of 5", "version 7 is not supported (this node
 * speaks 1)"). On error f->body is nil (nothing to free) and f->id holds the id
 * when it could be read (0 otherwise), so that an error reply can be addressed. */
int avm_ctl_decode(const uint8_t *p, size_t n, avm_ctl_frame *f, char *errmsg,
                   size_t errlen);
/* The same with a limit of max_frame bytes (0: AVM_CTL_MAX_FRAME). Decoded values
 * may take up to max(64 MiB, 4 * max_frame) bytes of memory. */
int avm_ctl_decode_ex(const uint8_t *p, size_t n, size_t max_frame, avm_ctl_frame *f,
                      char *errmsg, size_t errlen);

/* --- TLS (tls+tcp:// addresses) ------------------------------------------ */

/* The files of one side of a mutually authenticated TLS connection (PEM; TLS 1.2,
 * the version nng's mbedTLS engine speaks; docs/operations.md "Control over TLS").
 * The peer must present a certificate that chains to a certificate in ca. */
typedef struct avm_ctl_tls {
    const char *cert;        /* this side's certificate (with intermediates after it);
                              * a client may go without (NULL), a server may not */
    const char *key;         /* its private key, unencrypted (PKCS#8 "PRIVATE KEY" or
                              * "RSA/EC PRIVATE KEY"); NULL: in the cert file; a file the
                              * group or others may read is refused (chmod 600) */
    const char *ca;          /* the certificate(s) the peer's must chain to */
    const char *server_name; /* client: the name the node's certificate must carry
                              * (NULL: the URL's host) */
} avm_ctl_tls;

/* Whether url is a tls+tcp:// address. */
bool avm_ctl_url_is_tls(const char *url);
/* Loads the files of t as a server (cert required) or a client would, and checks
 * them: readable PEM, the key unencrypted, not readable by the group or others,
 * matching the certificate, which is valid now. 0, or AVM_EINVAL / AVM_ENOMEM
 * with errmsg naming the file and the cause. */
int avm_ctl_tls_check(const avm_ctl_tls *t, bool server, char *errmsg, size_t errlen);

/* --- Server (in the node, on its libuv loop) ---------------------------- */

typedef struct avm_ctl_server avm_ctl_server;
typedef struct avm_ctl_req avm_ctl_req;

/* Called on the loop thread for each well-formed request. body is borrowed for the
 * call. The handler must answer req exactly once, now or later, with
 * avm_ctl_reply / avm_ctl_reply_error (also on the loop thread). */
typedef void (*avm_ctl_handler)(void *arg, avm_ctl_req *req, const char *op,
                                avm_val body);

typedef struct avm_ctl_server_config {
    const char *const *urls; /* nng URLs to listen on: "ipc:///path", "tcp://h:p",
                              * "tls+tcp://h:p" */
    size_t nurls;
    /* The files of the tls+tcp:// listeners (required when there is one; cert
     * required): clients must present a certificate signed by tls->ca. */
    const avm_ctl_tls *tls;
    /* Called on the loop thread, at most once a second per listener, with the
     * number of connections a tls+tcp:// listener dropped during the TLS or SP
     * handshake since the last call (NULL: not reported). nng does not say who
     * they came from, nor why beyond the class in cause. */
    void (*refused)(void *arg, const char *url, uint64_t n, const char *cause);
    size_t max_frame;  /* 0: AVM_CTL_MAX_FRAME */
    unsigned contexts; /* requests served at once (0: 64) */
    avm_ctl_handler handler;
    void *arg;
} avm_ctl_server_config;

/* Listens on every URL and starts serving; call on the loop thread (or before the
 * loop runs). 0, or AVM_EINVAL (no URL, no handler, a malformed URL, a tls+tcp URL
 * without cfg->tls, a TLS file that does not load: errmsg names it) / AVM_EIO
 * (the address is in use, ...) / AVM_ENOMEM with errmsg naming the URL; on error
 * nothing is left to close. The config and its strings are not kept.
 * An ipc:// socket file is put in place by rename (and removed by stop); a path
 * where another process listens is refused (AVM_EIO), one left by a dead process
 * is replaced. ipc listeners are checked every second and replaced if nng stopped
 * accepting on them (nng 1.5.2's bug nanomsg/nng#1518; control.c explains). */
int avm_ctl_server_start(uv_loop_t *loop, const avm_ctl_server_config *cfg,
                         avm_ctl_server **out, char *errmsg, size_t errlen);
/* The TCP port that listener i (cfg->urls[i]) is bound to, which is how to learn
 * the port of "tcp://HOST:0" (or "tls+tcp://HOST:0"); 0 when urls[i] is not a TCP
 * URL. */
int avm_ctl_server_port(const avm_ctl_server *s, size_t i);
/* Stops listening; requests not answered yet (with the handler, or queued for it)
 * get an error reply AVM_ESTATE "node is shutting down" where the client is still
 * there, and so do requests that arrive while it stops. It blocks briefly (about a
 * second at most) for those replies to be handed to their connections. Call on the
 * loop thread (a handler may call it); the handler is not called again. The loop
 * must run until the server's handles are closed (uv_run after stop): the memory
 * of the server and of its requests is freed then. Until that, another stop, or
 * answering a request of the stopped server, does nothing; after it, s and every
 * avm_ctl_req pointer are dangling, so cancel pending work (timers) that would
 * answer later. */
void avm_ctl_server_stop(avm_ctl_server *s);

/* Answers with status "ok" and body (borrowed). A body that cannot be encoded, or
 * whose frame exceeds the server's max_frame, is answered with that error instead
 * (AVM_ETOODEEP, AVM_ETOOBIG, ...). After the call req belongs to the server again:
 * do not use it. */
void avm_ctl_reply(avm_ctl_req *req, avm_val body);
/* Answers with status "error", code (an AVM_E* value) and a formatted message (cut
 * to 1 KiB). */
void avm_ctl_reply_error(avm_ctl_req *req, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The client went away (its pipe closed): the reply will be dropped. Handlers of
 * long operations may check it and stop early. Best effort: true only when the
 * pipe did close, but a pipe that closes at the very moment its request is
 * received may go unnoticed. Loop thread, while the handler owns req. */
bool avm_ctl_req_abandoned(const avm_ctl_req *req);
/* The URL of the listener the request came on, as configured ("ipc:///...",
 * "tcp://..."), or "forwarded" for a request that did not come over the wire.
 * Loop thread, while the handler owns req. */
const char *avm_ctl_req_endpoint(const avm_ctl_req *req);

/* A request that did not come over the wire (one forwarded by another node): the
 * handler answers it as any other, and the answer goes to cb (code 0 and the body,
 * borrowed; or an error code and its message) instead of a socket. The request is
 * freed after cb. NULL when out of memory. */
typedef void (*avm_ctl_local_cb)(void *arg, int code, avm_val body, const char *errmsg);
avm_ctl_req *avm_ctl_req_local(avm_ctl_local_cb cb, void *arg);

/* --- Client (avmctl; blocking) ------------------------------------------ */

typedef struct avm_ctl_client avm_ctl_client;

/* addr: an nng URL (ipc://, tcp://, tls+tcp://), or HOST:PORT for tcp://HOST:PORT, or a
 * path for ipc://PATH (one starting with '/' or '.'). Connects in the background: opening
 * succeeds whether or not a node is there (a call then times out). 0, or AVM_EINVAL for
 * an address of none of these forms. One thread at a time uses a client. */
int avm_ctl_client_open(const char *addr, avm_ctl_client **out, char *errmsg,
                        size_t errlen);
/* The same with the TLS files for a tls+tcp:// address (tls->ca required; ignored
 * for other addresses). The files are loaded here: AVM_EINVAL naming a file that
 * does not load, or for a tls+tcp:// address without tls. The first call then
 * connects, within its deadline, and fails with AVM_EIO naming the cause when the
 * TLS handshake fails (the node refused this client's certificate, or it has
 * none; the node's certificate is not signed by tls->ca or does not carry the
 * server name; the address is not a TLS endpoint). */
int avm_ctl_client_open_tls(const char *addr, const avm_ctl_tls *tls,
                            avm_ctl_client **out, char *errmsg, size_t errlen);
void avm_ctl_client_close(avm_ctl_client *c);
/* Every later call sends token (copied; NULL: none) as the request's "auth"
 * field, for a node started with --auth-tokens. 0 or AVM_ENOMEM. */
int avm_ctl_client_set_token(avm_ctl_client *c, const char *token);
/* The nng URL the client talks to (owned by c). */
const char *avm_ctl_client_url(const avm_ctl_client *c);
/* The address normalisation of avm_ctl_client_open: the URL for addr in url[len].
 * 0, or AVM_EINVAL with errmsg. */
int avm_ctl_normalize_addr(const char *addr, char *url, size_t len, char *errmsg,
                           size_t errlen);
/* Sends op with body (borrowed) and waits up to timeout_ms (0: 10 s) for the reply.
 * Returns 0 with the ok reply's body in *reply (owned); the remote error's code with
 * its message in errmsg for an error reply (AVM_EIO naming the code when this client
 * does not know it); AVM_EIO with errmsg "no answer from ADDR within N ms (is avmd
 * running?)" or naming the connection failure (a connection that closes before the
 * reply fails at once: requests are never resent, so an op runs at most once);
 * AVM_ETOOBIG for a request over AVM_CTL_MAX_FRAME; AVM_EMALFORMED and friends for
 * a reply that does not decode or answers another id. *reply is nil on error. */
int avm_ctl_call(avm_ctl_client *c, const char *op, avm_val body, int timeout_ms,
                 avm_val *reply, char *errmsg, size_t errlen);

#endif
