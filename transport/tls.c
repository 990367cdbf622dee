/* Mutual TLS for the node-to-node links (tls.h): OpenSSL with two memory BIOs per
 * connection. The link feeds what it reads into the read BIO and writes out what
 * collects in the write BIO; OpenSSL never touches the socket. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "avm_err.h"
#include "transport_internal.h"

/* The first byte of a TLS handshake record, and of an SP header (plaintext link). */
#define TLS_HANDSHAKE_RECORD 0x16
#define TLS_ALERT_RECORD 0x15
#define NAME_FLAGS (X509_CHECK_FLAG_ALWAYS_CHECK_SUBJECT | X509_CHECK_FLAG_NO_WILDCARDS)

struct avm_tls_ctx {
    SSL_CTX *ssl;
};

struct avm_tls {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool server, established;
    bool fed;            /* some input arrived */
    unsigned char first; /* the first byte of the input */
    char expect[256];    /* client: the name the server must carry */
    char peer_cn[256];   /* the CN of the peer's certificate, as verified */
    char why[1024];
};

/* OpenSSL's reason for the last failure on this thread ("unknown" when none), and
 * clears the queue. */
static void ossl_reason(char *out, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    if (r != NULL)
        snprintf(out, cap, "%s", r);
    else if (e != 0)
        ERR_error_string_n(e, out, cap);
    else
        snprintf(out, cap, "unknown reason");
    ERR_clear_error();
}

/* Whether path can be opened for reading; else errmsg says why. */
static bool readable(const char *what, const char *path, char *errmsg, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        avm__failf(errmsg, errlen, AVM_EINVAL, "%s %s: %s", what, path, strerror(errno));
        return false;
    }
    fclose(f);
    return true;
}

static int ctx_fail(SSL_CTX *s, char *errmsg, size_t errlen, const char *what,
                    const char *path)
{
    char r[256];
    ossl_reason(r, sizeof(r));
    SSL_CTX_free(s);
    return avm__failf(errmsg, errlen, AVM_EINVAL, "%s %s: %s", what, path, r);
}

/* Verifies the node's own certificate against the CA now, so that an expired
 * certificate or one from another CA stops the node at start with a clear error
 * rather than every connection later. */
static int check_own(SSL_CTX *s, const char *cert, const char *ca, char *errmsg,
                     size_t errlen)
{
    X509 *x = SSL_CTX_get0_certificate(s);
    X509_STORE_CTX *vc = X509_STORE_CTX_new();
    if (x == NULL || vc == NULL ||
        X509_STORE_CTX_init(vc, SSL_CTX_get_cert_store(s), x, NULL) != 1) {
        X509_STORE_CTX_free(vc);
        return ctx_fail(s, errmsg, errlen, "certificate", cert);
    }
    int ok = X509_verify_cert(vc);
    int v = X509_STORE_CTX_get_error(vc);
    X509_STORE_CTX_free(vc);
    if (ok != 1) {
        ERR_clear_error();
        SSL_CTX_free(s);
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "certificate %s is not valid for CA %s: %s", cert, ca,
                          X509_verify_cert_error_string(v));
    }
    return 0;
}

/* Notes the CN of the peer's certificate as it is verified (OpenSSL keeps no peer
 * certificate of a handshake that fails), for the reason of a refusal. */
static int on_verify(int ok, X509_STORE_CTX *store)
{
    SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
    avm_tls *t = ssl != NULL ? SSL_get_app_data(ssl) : NULL;
    X509 *leaf = X509_STORE_CTX_get0_cert(store);
    if (t != NULL && leaf != NULL && t->peer_cn[0] == '\0' &&
        X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, t->peer_cn,
                                  (int)sizeof(t->peer_cn)) < 0)
        snprintf(t->peer_cn, sizeof(t->peer_cn), "?");
    return ok;
}

int avm_tls_ctx_new(const char *cert, const char *key, const char *ca, avm_tls_ctx **out,
                    char *errmsg, size_t errlen)
{
    *out = NULL;
    if (!readable("certificate", cert, errmsg, errlen) ||
        !readable("key", key, errmsg, errlen) || !readable("CA", ca, errmsg, errlen))
        return AVM_EINVAL;
    ERR_clear_error();
    SSL_CTX *s = SSL_CTX_new(TLS_method());
    if (s == NULL)
        return ctx_fail(NULL, errmsg, errlen, "TLS context for", cert);
    if (SSL_CTX_set_min_proto_version(s, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(s, TLS1_3_VERSION) != 1)
        return ctx_fail(s, errmsg, errlen, "TLS 1.3 for", cert);
    if (SSL_CTX_use_certificate_chain_file(s, cert) != 1)
        return ctx_fail(s, errmsg, errlen, "certificate", cert);
    if (SSL_CTX_use_PrivateKey_file(s, key, SSL_FILETYPE_PEM) != 1) {
        char r[256];
        ossl_reason(r, sizeof(r));
        SSL_CTX_free(s);
        return avm__failf(errmsg, errlen, AVM_EINVAL, "key %s (of certificate %s): %s",
                          key, cert, r);
    }
    if (SSL_CTX_check_private_key(s) != 1) {
        char r[256];
        ossl_reason(r, sizeof(r));
        SSL_CTX_free(s);
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "key %s does not match certificate %s: %s", key, cert, r);
    }
    if (SSL_CTX_load_verify_locations(s, ca, NULL) != 1)
        return ctx_fail(s, errmsg, errlen, "CA", ca);
    int rv = check_own(s, cert, ca, errmsg, errlen);
    if (rv != 0)
        return rv;
    SSL_CTX_set_verify(s, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, on_verify);
    SSL_CTX_set_options(s, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
    SSL_CTX_set_num_tickets(s, 0);
    /* AES-128-GCM first: as safe here, and cheaper than TLS 1.3's default order. */
    SSL_CTX_set_ciphersuites(s, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                                "TLS_CHACHA20_POLY1305_SHA256");
    /* The peer has the CA: send only our certificate (and a chain given in cert). */
    SSL_CTX_set_mode(s, SSL_MODE_NO_AUTO_CHAIN);
    SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
    avm_tls_ctx *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        SSL_CTX_free(s);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    c->ssl = s;
    *out = c;
    return 0;
}

void avm_tls_ctx_free(avm_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->ssl); /* connections still open hold a reference */
    free(ctx);
}

bool avm_tls_ctx_is(const avm_tls_ctx *ctx, const char *name)
{
    X509 *x = SSL_CTX_get0_certificate(ctx->ssl);
    return x != NULL && X509_check_host(x, name, strlen(name), NAME_FLAGS, NULL) == 1;
}

avm_tls *avm_tls_new(avm_tls_ctx *ctx, bool server, const char *expect_name)
{
    avm_tls *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->server = server;
    t->ssl = SSL_new(ctx->ssl);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (t->ssl == NULL || t->rbio == NULL || t->wbio == NULL) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        free(t);
        ERR_clear_error();
        return NULL;
    }
    /* An empty read BIO means "more later", not the end of the stream. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    SSL_set_app_data(t->ssl, t);
    if (server) {
        SSL_set_accept_state(t->ssl);
    } else {
        SSL_set_connect_state(t->ssl);
        if (expect_name != NULL) {
            snprintf(t->expect, sizeof(t->expect), "%s", expect_name);
            SSL_set_hostflags(t->ssl, NAME_FLAGS);
            if (SSL_set1_host(t->ssl, expect_name) != 1) {
                avm_tls_free(t);
                ERR_clear_error();
                return NULL;
            }
        }
    }
    return t;
}

void avm_tls_free(avm_tls *t)
{
    if (t == NULL)
        return;
    SSL_free(t->ssl); /* and its BIOs */
    free(t);
}

void avm_tls_feed(avm_tls *t, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (!t->fed) {
        t->fed = true;
        t->first = *(const unsigned char *)p;
    }
    BIO_write(t->rbio, p, (int)n); /* a memory BIO takes it all */
}

/* Why the handshake or a read failed, into t->why. */
static void set_why(avm_tls *t, const char *what)
{
    if (t->fed && !t->established && t->first != TLS_HANDSHAKE_RECORD &&
        t->first != TLS_ALERT_RECORD) {
        ERR_clear_error();
        snprintf(t->why, sizeof(t->why), "%s",
                 t->first == 0 ? "the peer speaks plaintext (it runs without TLS)"
                               : "the peer does not speak TLS");
        return;
    }
    char r[256];
    ossl_reason(r, sizeof(r));
    long v = SSL_get_verify_result(t->ssl);
    const char *cn = t->peer_cn;
    if (v == X509_V_ERR_HOSTNAME_MISMATCH)
        snprintf(t->why, sizeof(t->why),
                 "%s: the certificate (CN=%s) does not name %s, the machine dialled",
                 what, cn, t->expect);
    else if (v != X509_V_OK && cn[0] != '\0')
        snprintf(t->why, sizeof(t->why), "%s: %s: %s (certificate CN=%s)", what, r,
                 X509_verify_cert_error_string(v), cn);
    else if (v != X509_V_OK)
        snprintf(t->why, sizeof(t->why), "%s: %s: %s", what, r,
                 X509_verify_cert_error_string(v));
    else
        snprintf(t->why, sizeof(t->why), "%s: %s", what, r);
}

int avm_tls_handshake(avm_tls *t)
{
    if (t->established)
        return 1;
    ERR_clear_error();
    int r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->established = true;
        return 1;
    }
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    set_why(t, "TLS handshake failed");
    return -1;
}

bool avm_tls_established(const avm_tls *t)
{
    return t->established;
}

ssize_t avm_tls_read(avm_tls *t, void *buf, size_t cap)
{
    ERR_clear_error();
    size_t got = 0;
    int r = SSL_read_ex(t->ssl, buf, cap, &got);
    if (r == 1)
        return (ssize_t)got;
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
        return 0;
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        snprintf(t->why, sizeof(t->why), "the peer closed the TLS session");
        return -1;
    }
    set_why(t, "TLS failed");
    return -1;
}

int avm_tls_write(avm_tls *t, const void *p, size_t n)
{
    if (n == 0)
        return 0;
    ERR_clear_error();
    size_t done = 0;
    if (SSL_write_ex(t->ssl, p, n, &done) != 1 || done != n) {
        set_why(t, "TLS write failed");
        return -1;
    }
    return 0;
}

size_t avm_tls_out_pending(const avm_tls *t)
{
    return BIO_ctrl_pending(t->wbio);
}

size_t avm_tls_out_take(avm_tls *t, void *buf, size_t cap)
{
    if (cap > (size_t)0x7fffffff)
        cap = 0x7fffffff;
    int r = BIO_read(t->wbio, buf, (int)cap);
    return r > 0 ? (size_t)r : 0;
}

bool avm_tls_peer_is(const avm_tls *t, const char *name)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    return x != NULL && X509_check_host(x, name, strlen(name), NAME_FLAGS, NULL) == 1;
}

void avm_tls_peer_cn(const avm_tls *t, char *out, size_t cap)
{
    X509 *x = SSL_get0_peer_certificate(t->ssl);
    if (cap == 0)
        return;
    if (x == NULL && t->peer_cn[0] != '\0') {
        snprintf(out, cap, "%s", t->peer_cn);
        return;
    }
    if (x == NULL || X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
                                               out, (int)cap) < 0)
        snprintf(out, cap, "?");
}

const char *avm_tls_why(const avm_tls *t)
{
    return t->why[0] ? t->why : "unknown reason";
}
