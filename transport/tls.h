/* Mutual TLS for the node-to-node links (link.c), on OpenSSL with memory BIOs: the
 * link owns the socket (libuv) and moves bytes; this module turns ciphertext read
 * from the socket into plaintext and plaintext into ciphertext to write.
 *
 * A context holds this node's certificate and key and the cluster CA. Every
 * connection made from it is TLS 1.3 only, presents the node's certificate, and
 * requires one from the other side, signed by the CA (SSL_VERIFY_PEER |
 * SSL_VERIFY_FAIL_IF_NO_PEER_CERT). A client connection also requires the server's
 * certificate to name the machine it dials (subject CN or a DNS SAN). No session
 * tickets, no resumption, no renegotiation.
 *
 * Not thread-safe per connection; contexts may be shared by the connections of one
 * loop. */
#ifndef AVM_TLS_H
#define AVM_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

typedef struct avm_tls_ctx avm_tls_ctx;
typedef struct avm_tls avm_tls;

/* Loads cert (PEM, the chain may follow), key (PEM) and ca (PEM, the trusted
 * cluster CA). 0, or AVM_EINVAL with errmsg naming the file and OpenSSL's reason
 * (unreadable, not PEM, the key does not match the certificate, the certificate is
 * not signed by ca or has expired). */
int avm_tls_ctx_new(const char *cert, const char *key, const char *ca, avm_tls_ctx **out,
                    char *errmsg, size_t errlen);
void avm_tls_ctx_free(avm_tls_ctx *ctx);
/* Whether the context's own certificate names `name` (as avm_tls_peer_is). */
bool avm_tls_ctx_is(const avm_tls_ctx *ctx, const char *name);

/* A connection's TLS state; server: it accepted the connection. expect_name
 * (client side): the name the server's certificate must carry. NULL when out of
 * memory. */
avm_tls *avm_tls_new(avm_tls_ctx *ctx, bool server, const char *expect_name);
void avm_tls_free(avm_tls *t);

/* Ciphertext read from the socket. */
void avm_tls_feed(avm_tls *t, const void *p, size_t n);
/* Advances the handshake: 1 done (now or before), 0 needs more input, -1 refused
 * (avm_tls_why says why; the output may hold an alert for the peer). */
int avm_tls_handshake(avm_tls *t);
bool avm_tls_established(const avm_tls *t);
/* Plaintext: >0 bytes read, 0 needs more input, -1 the peer closed (close_notify) or
 * an error (avm_tls_why). */
ssize_t avm_tls_read(avm_tls *t, void *buf, size_t cap);
/* Encrypts all of p into the output; 0, or -1 (avm_tls_why). Only once established. */
int avm_tls_write(avm_tls *t, const void *p, size_t n);
/* Ciphertext waiting for the socket, and taking it (up to cap bytes). */
size_t avm_tls_out_pending(const avm_tls *t);
size_t avm_tls_out_take(avm_tls *t, void *buf, size_t cap);

/* Whether the peer's certificate names `name` (subject CN or a DNS SAN, exactly,
 * ignoring ASCII case; no wildcards). */
bool avm_tls_peer_is(const avm_tls *t, const char *name);
/* The peer certificate's subject CN into out ("?" when none). */
void avm_tls_peer_cn(const avm_tls *t, char *out, size_t cap);
/* Why the last call failed (a static or per-connection string). */
const char *avm_tls_why(const avm_tls *t);

#endif
