/* The control endpoint (control.h): frames and bodies, the rep0 server that hands
 * requests to the node's loop, and the blocking req0 client.
 *
 * Threads. nng completes the server's receives and sends on its own threads; the
 * handler, avm_ctl_reply and avm_ctl_server_stop run on the loop thread (STYLE.md
 * 9). A request is decoded on the nng thread that received it (decoding is pure, and
 * a malformed frame is answered there without bothering the loop); a well-formed
 * one goes through a mutex-protected queue and a uv_async_t to the loop. Every
 * request slot (one nng context and one aio, reused for receive and send) has an
 * explicit state, changed under the server's mutex, so that stop knows which slots
 * owe a reply and which operations it must wait for.
 *
 * TLS. tls+tcp:// listeners and dialers get an nng TLS configuration made from the
 * PEM files of avm_ctl_tls ("TLS" below): mutual authentication, TLS 1.2. */
#include "control.h"

#include <assert.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>

#include <mbedtls/error.h>
#include <mbedtls/pk.h>
#include <mbedtls/version.h>
#include <mbedtls/x509_crt.h>

#include "avm_err.h"
#include "codec.h"
#include "transport_internal.h"

#define CTL_MAGIC "avm-ctl"
#define CTL_MAGIC_LEN (sizeof(CTL_MAGIC) - 1)
#define OP_MAX (sizeof(((avm_ctl_frame *)0)->word) - 1)

/* nng counts the protocol's routing header (4 bytes per hop, at most 15 hops) in
 * the size it checks against NNG_OPT_RECVMAXSZ; our limit is on the frame alone.
 * Frames that pass nng's check but not ours get an error reply (ETOOBIG). */
#define ROUTING_SLACK 64
/* An error reply's message is cut to this many bytes, so that an error reply is
 * always small (it is not checked against the frame limit). */
#define ERR_MSG_MAX 1024
/* How long a reply may wait for its pipe (busy sending an earlier reply to a client
 * that does not read). Past it the reply is dropped and the context serves again. */
#define SEND_TIMEOUT_MS 30000
/* How long stop waits for the replies being sent (its own included). */
#define STOP_SEND_TIMEOUT_MS 1000
/* How long stop lets its replies be collected before it closes the connections
 * (see avm_ctl_server_stop). */
#define STOP_GRACE_MS 100
#define CLIENT_DEFAULT_TIMEOUT_MS 10000
/* How often the ipc listeners are checked (see "ipc listeners"). */
#define WATCH_MS 1000

static const char shutdown_msg[] = "node is shutting down";

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- Bodies ----------------------------------------------------------------- */

/* True when v is a (key value) list with a string key. */
static bool is_pair(avm_val v)
{
    return v.kind == AVM_LIST && avm_list_len(v) == 2 &&
           avm_list_at(v, 0).kind == AVM_STR;
}

/* True when body is a list of pairs; then *found is the value of the first pair
 * whose key is key (borrowed), or nil. */
static bool alist_find(avm_val body, const char *key, avm_val *found)
{
    *found = avm_nil();
    if (body.kind != AVM_LIST)
        return false;
    size_t klen = strlen(key);
    bool have = false;
    for (size_t i = 0; i < avm_list_len(body); i++) {
        avm_val p = avm_list_at(body, i);
        if (!is_pair(p))
            return false;
        const avm_str *k = avm_list_at(p, 0).u.s;
        if (!have && k->len == klen && memcmp(k->data, key, klen) == 0) {
            *found = avm_list_at(p, 1);
            have = true;
        }
    }
    return true;
}

avm_val avm_ctl_get(avm_val body, const char *key)
{
    avm_val v;
    return alist_find(body, key, &v) ? v : avm_nil();
}

/* The value under key, which must be there and of kind want. */
static int get_kind(avm_val body, const char *key, avm_kind want, avm_val *v,
                    char *errmsg, size_t errlen)
{
    if (!alist_find(body, key, v))
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "the body is not an association list of (key value) pairs");
    if (v->kind == AVM_NIL && want != AVM_NIL)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "key \"%s\" is missing (%s expected)", key,
                          avm_kind_name(want));
    if (v->kind != want)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "key \"%s\" should be %s %s, not %s", key,
                          want == AVM_INT ? "an" : "a", avm_kind_name(want),
                          avm_kind_name((avm_kind)v->kind));
    return 0;
}

int avm_ctl_get_str(avm_val body, const char *key, const char **s, char *errmsg,
                    size_t errlen)
{
    avm_val v;
    int rv = get_kind(body, key, AVM_STR, &v, errmsg, errlen);
    if (rv != 0)
        return rv;
    /* Callers use *s as a C string (a path, an id): a NUL inside would cut it. */
    if (memchr(v.u.s->data, '\0', v.u.s->len) != NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "key \"%s\" contains a NUL byte",
                          key);
    *s = v.u.s->data;
    return 0;
}

int avm_ctl_get_int(avm_val body, const char *key, int64_t *out, char *errmsg,
                    size_t errlen)
{
    avm_val v;
    int rv = get_kind(body, key, AVM_INT, &v, errmsg, errlen);
    if (rv == 0)
        *out = v.u.i;
    return rv;
}

void avm_ctl_body_init(avm_ctl_body *b)
{
    b->items = NULL;
    b->n = b->cap = 0;
    b->err = 0;
}

void avm_ctl_put(avm_ctl_body *b, const char *key, avm_val v)
{
    /* The body is a list of pairs: v sits two lists deep, and the whole body must
     * stay within what the codec encodes. */
    if (b->err == 0 && avm_val_depth(v) + 2 > AVM_MAX_DEPTH)
        b->err = AVM_ETOODEEP;
    if (b->err == 0 && b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 8;
        avm_val *items = realloc(b->items, cap * sizeof(*items));
        if (items == NULL) {
            b->err = AVM_ENOMEM;
        } else {
            b->items = items;
            b->cap = cap;
        }
    }
    avm_val pair[2];
    if (b->err == 0 && avm_cstr(AVM_STR, key, &pair[0]) != 0)
        b->err = AVM_ENOMEM;
    if (b->err != 0) {
        avm_val_release(v);
        return;
    }
    pair[1] = v;
    if (avm_list_from(pair, 2, &b->items[b->n]) != 0) {
        b->err = AVM_ENOMEM; /* avm_list_from released the key and v */
        return;
    }
    b->n++;
}

void avm_ctl_put_str(avm_ctl_body *b, const char *key, const char *s)
{
    avm_val v;
    if (b->err == 0 && avm_cstr(AVM_STR, s, &v) != 0)
        b->err = AVM_ENOMEM;
    if (b->err == 0)
        avm_ctl_put(b, key, v);
}

void avm_ctl_put_int(avm_ctl_body *b, const char *key, int64_t v)
{
    avm_ctl_put(b, key, avm_int(v));
}

void avm_ctl_put_bool(avm_ctl_body *b, const char *key, bool v)
{
    avm_ctl_put(b, key, avm_bool(v));
}

int avm_ctl_body_finish(avm_ctl_body *b, avm_val *out)
{
    *out = avm_nil();
    int rv = b->err;
    if (rv == 0) {
        rv = avm_list_from(b->items, b->n, out); /* takes the items, even on error */
        b->n = 0;
    }
    avm_ctl_body_free(b);
    return rv;
}

void avm_ctl_body_free(avm_ctl_body *b)
{
    for (size_t i = 0; i < b->n; i++)
        avm_val_release(b->items[i]);
    free(b->items);
    avm_ctl_body_init(b);
}

static bool key_is(avm_val pair, const char *key)
{
    if (key == NULL || !is_pair(pair))
        return false;
    avm_val k = avm_list_at(pair, 0);
    size_t n = strlen(key);
    return k.kind == AVM_STR && k.u.s->len == n && memcmp(k.u.s->data, key, n) == 0;
}

int avm_ctl_body_edit(avm_val body, const char *drop1, const char *drop2, const char *key,
                      avm_val v, avm_val *out)
{
    *out = avm_nil();
    if (body.kind != AVM_NIL && body.kind != AVM_LIST) {
        avm_val_retain(body);
        *out = body;
        return 0;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    size_t n = body.kind == AVM_LIST ? avm_list_len(body) : 0;
    b.items = malloc((n + 1) * sizeof(*b.items));
    if (b.items == NULL)
        return AVM_ENOMEM;
    b.cap = n + 1;
    for (size_t i = 0; i < n; i++) {
        avm_val p = avm_list_at(body, i);
        if (key_is(p, drop1) || key_is(p, drop2))
            continue;
        avm_val_retain(p);
        b.items[b.n++] = p;
    }
    if (key != NULL) {
        avm_val_retain(v);
        avm_ctl_put(&b, key, v);
    }
    return avm_ctl_body_finish(&b, out);
}

/* --- Authentication --------------------------------------------------------- */

static const struct {
    const char *name;
    unsigned bit;
} perm_names[] = {
    {"read", AVM_CTL_PERM_READ},
    {"run", AVM_CTL_PERM_RUN},
    {"unsafe", AVM_CTL_PERM_UNSAFE},
    {"admin", AVM_CTL_PERM_ADMIN},
};

const char *avm_ctl_perm_name(unsigned perm)
{
    for (size_t i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++)
        if (perm_names[i].bit == perm)
            return perm_names[i].name;
    return "?";
}

const char *avm_ctl_perms_str(unsigned perms, char *buf, size_t len)
{
    size_t at = 0;
    if (len == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++) {
        if (!(perms & perm_names[i].bit))
            continue;
        int w = snprintf(buf + at, len - at, "%s%s", at ? "," : "", perm_names[i].name);
        if (w < 0 || (size_t)w >= len - at)
            break;
        at += (size_t)w;
    }
    if (at == 0)
        snprintf(buf, len, "none");
    return buf;
}

/* The permission of every operation (docs/operations.md has the same table). */
static const struct {
    const char *op;
    unsigned perm;
} op_perms[] = {
    {"status", AVM_CTL_PERM_READ},
    {"exec.ls", AVM_CTL_PERM_READ},
    {"exec.show", AVM_CTL_PERM_READ},
    {"exec.result", AVM_CTL_PERM_READ},
    {"exec.trace", AVM_CTL_PERM_READ},
    {"exec.constraints", AVM_CTL_PERM_READ},
    {"obj.ls", AVM_CTL_PERM_READ},
    {"obj.show", AVM_CTL_PERM_READ},
    {"txs", AVM_CTL_PERM_READ},
    {"pure.ls", AVM_CTL_PERM_READ},
    {"cluster.status", AVM_CTL_PERM_READ},
    {"ctrl.ls", AVM_CTL_PERM_READ},
    {"ctrl.status", AVM_CTL_PERM_READ},
    {"ctrl.get", AVM_CTL_PERM_READ},
    {"ctrl.latency", AVM_CTL_PERM_READ},
    {"bundle.status", AVM_CTL_PERM_READ},
    {"run", AVM_CTL_PERM_RUN},
    {"send", AVM_CTL_PERM_RUN},
    {"exec.suspend", AVM_CTL_PERM_RUN},
    {"exec.resume", AVM_CTL_PERM_RUN},
    {"exec.kill", AVM_CTL_PERM_RUN},
    {"bundle.create", AVM_CTL_PERM_RUN},
    {"ctrl.put", AVM_CTL_PERM_RUN},
    {"cluster.join", AVM_CTL_PERM_ADMIN},
    {"ctrl.create", AVM_CTL_PERM_ADMIN},
    {"ctrl.add", AVM_CTL_PERM_ADMIN},
    {"ctrl.remove", AVM_CTL_PERM_ADMIN},
    {"ctrl.transfer", AVM_CTL_PERM_ADMIN},
    {"ctrl.bench", AVM_CTL_PERM_ADMIN},
};

unsigned avm_ctl_op_perm(const char *op)
{
    for (size_t i = 0; i < sizeof(op_perms) / sizeof(op_perms[0]); i++)
        if (strcmp(op, op_perms[i].op) == 0)
            return op_perms[i].perm;
    return 0;
}

void avm_ctl_tokens_free(avm_ctl_tokens *t)
{
    if (t == NULL)
        return;
    if (t->v != NULL) {
        /* The tokens are secrets: wipe them before the memory goes back. */
        volatile unsigned char *p = (volatile unsigned char *)t->v;
        for (size_t i = 0; i < t->n * sizeof(*t->v); i++)
            p[i] = 0;
    }
    free(t->v);
    free(t);
}

static bool principal_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.' || c == '@';
}

/* The next blank-separated field of [*p, end) in (*f, *n); false at the end. */
static bool next_field(const char **p, const char *end, const char **f, size_t *n)
{
    while (*p < end && (**p == ' ' || **p == '\t'))
        (*p)++;
    if (*p >= end)
        return false;
    *f = *p;
    while (*p < end && **p != ' ' && **p != '\t')
        (*p)++;
    *n = (size_t)(*p - *f);
    return true;
}

static int parse_perms(const char *f, size_t n, unsigned *out)
{
    *out = 0;
    const char *end = f + n;
    while (f <= end) {
        const char *c = memchr(f, ',', (size_t)(end - f));
        if (c == NULL)
            c = end;
        size_t k = (size_t)(c - f);
        bool ok = false;
        for (size_t i = 0; i < sizeof(perm_names) / sizeof(perm_names[0]); i++) {
            if (k == strlen(perm_names[i].name) &&
                memcmp(f, perm_names[i].name, k) == 0) {
                *out |= perm_names[i].bit;
                ok = true;
            }
        }
        if (!ok)
            return -1;
        f = c + 1;
    }
    return 0;
}

int avm_ctl_tokens_parse(const char *text, size_t len, const char *file,
                         avm_ctl_tokens **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    avm_ctl_tokens *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    size_t cap = 0;
    int rv = 0;
    unsigned line = 0;
    const char *p = text, *end = text + len;
    while (rv == 0 && p < end) {
        line++;
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        const char *le = eol;
        if (le > p && le[-1] == '\r')
            le--;
        const char *q = p;
        p = eol + 1;
        const char *fp, *ft, *fm, *extra;
        size_t np, nt, nm, nx;
        if (!next_field(&q, le, &fp, &np) || fp[0] == '#')
            continue;
        if (memchr(fp, '\0', (size_t)(le - fp)) != NULL) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL, "%s:%u: a NUL byte", file, line);
            break;
        }
        if (!next_field(&q, le, &ft, &nt) || !next_field(&q, le, &fm, &nm)) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: expected PRINCIPAL TOKEN PERMS (PERMS: read, run, "
                            "unsafe, admin, comma-separated)",
                            file, line);
            break;
        }
        if (next_field(&q, le, &extra, &nx)) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: more than three fields (PRINCIPAL TOKEN PERMS; "
                            "permissions are separated by commas, without blanks)",
                            file, line);
            break;
        }
        bool pok = np <= AVM_CTL_PRINCIPAL_MAX;
        for (size_t i = 0; pok && i < np; i++)
            pok = principal_char(fp[i]);
        if (!pok) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: principal \"%.*s\" is not 1-63 letters, digits and "
                            "-_.@",
                            file, line, (int)(np > 64 ? 64 : np), fp);
            break;
        }
        /* The names the node records for requests without a principal. */
        if ((np == 9 && memcmp(fp, "anonymous", 9) == 0) ||
            (np == 5 && memcmp(fp, "local", 5) == 0)) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: principal %.*s is reserved (it names requests "
                            "without a token)",
                            file, line, (int)np, fp);
            break;
        }
        bool tok = nt >= AVM_CTL_TOKEN_MIN && nt <= AVM_CTL_TOKEN_MAX;
        for (size_t i = 0; tok && i < nt; i++)
            tok = (unsigned char)ft[i] > 0x20 && (unsigned char)ft[i] < 0x7f;
        if (!tok) {
            /* Never the token itself: the message goes to logs. */
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: the token of %.*s has %zu bytes: a token is %d to %d "
                            "printable bytes without blanks",
                            file, line, (int)np, fp, nt, AVM_CTL_TOKEN_MIN,
                            AVM_CTL_TOKEN_MAX);
            break;
        }
        unsigned perms;
        if (parse_perms(fm, nm, &perms) != 0) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s:%u: permissions \"%.*s\" of %.*s: each must be read, "
                            "run, unsafe or admin, separated by commas",
                            file, line, (int)(nm > 80 ? 80 : nm), fm, (int)np, fp);
            break;
        }
        for (size_t i = 0; rv == 0 && i < t->n; i++) {
            if (strlen(t->v[i].principal) == np && memcmp(t->v[i].principal, fp, np) == 0)
                rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                                "%s:%u: principal %.*s appears twice", file, line,
                                (int)np, fp);
            else if (t->v[i].len == nt && memcmp(t->v[i].token, ft, nt) == 0)
                rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                                "%s:%u: the token of %.*s is also %s's", file, line,
                                (int)np, fp, t->v[i].principal);
        }
        if (rv != 0)
            break;
        if (t->n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            avm_ctl_token *nv = realloc(t->v, nc * sizeof(*nv));
            if (nv == NULL) {
                rv = avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
                break;
            }
            t->v = nv;
            cap = nc;
        }
        avm_ctl_token *e = &t->v[t->n++];
        memset(e, 0, sizeof(*e));
        memcpy(e->principal, fp, np);
        memcpy(e->token, ft, nt);
        e->len = nt;
        e->perms = perms;
    }
    if (rv == 0 && t->n == 0)
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "%s: no PRINCIPAL TOKEN PERMS line: nobody could use the node",
                        file);
    if (rv != 0) {
        avm_ctl_tokens_free(t);
        return rv;
    }
    *out = t;
    return 0;
}

int avm_ctl_tokens_load(const char *path, avm_ctl_tokens **out, char *errmsg,
                        size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return avm__failf(errmsg, errlen, AVM_EIO, "cannot open token file %s: %s", path,
                          strerror(errno));
    struct stat st;
    int rv = 0;
    if (fstat(fileno(f), &st) != 0)
        rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot stat token file %s: %s", path,
                        strerror(errno));
    else if (!S_ISREG(st.st_mode))
        rv = avm__failf(errmsg, errlen, AVM_EINVAL, "token file %s is not a regular file",
                        path);
    else if ((st.st_mode & 077) != 0)
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "token file %s has mode %04o: the group or others may use it "
                        "(chmod 600 %s)",
                        path, (unsigned)(st.st_mode & 07777), path);
    else if (st.st_size > 1024 * 1024)
        rv = avm__failf(errmsg, errlen, AVM_ETOOBIG, "token file %s is larger than 1 MiB",
                        path);
    char *buf = NULL;
    size_t n = 0;
    if (rv == 0) {
        buf = malloc((size_t)st.st_size + 1);
        if (buf == NULL)
            rv = avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
        else
            n = fread(buf, 1, (size_t)st.st_size, f);
        if (rv == 0 && ferror(f))
            rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot read token file %s", path);
    }
    fclose(f);
    if (rv == 0)
        rv = avm_ctl_tokens_parse(buf, n, path, out, errmsg, errlen);
    if (buf != NULL) {
        volatile char *p = buf;
        for (size_t i = 0; i < n; i++)
            p[i] = 0;
    }
    free(buf);
    return rv;
}

const avm_ctl_token *avm_ctl_tokens_find(const avm_ctl_tokens *t, const char *tok,
                                         size_t n)
{
    if (t == NULL)
        return NULL;
    const avm_ctl_token *found = NULL;
    for (size_t i = 0; i < t->n; i++) {
        /* Every byte of every entry of the same length is looked at, whatever
         * matched before: no early exit that would tell how much was right. */
        unsigned diff = t->v[i].len != n;
        size_t m = t->v[i].len < n ? t->v[i].len : n;
        for (size_t k = 0; k < m; k++)
            diff |= (unsigned char)(t->v[i].token[k] ^ tok[k]);
        if (diff == 0)
            found = &t->v[i];
    }
    return found;
}

/* --- Frames ----------------------------------------------------------------- */

static void put_header(avm_buf *out, uint64_t id, const char *word, size_t wlen)
{
    avm_mp_put_array(out, 5);
    avm_mp_put_str(out, CTL_MAGIC, CTL_MAGIC_LEN);
    avm_mp_put_uint(out, AVM_CTL_VERSION);
    avm_mp_put_uint(out, id);
    avm_mp_put_str(out, word, wlen);
}

int avm_ctl_encode(avm_buf *out, uint64_t id, const char *word, avm_val body)
{
    size_t wlen = strlen(word);
    if (wlen > OP_MAX)
        return AVM_EINVAL;
    put_header(out, id, word, wlen);
    return avm_val_encode(out, body);
}

/* An error reply, written with the low-level writers (it is the same bytes as
 * encoding the body as a value): nothing to allocate but the buffer. msg is cut
 * to ERR_MSG_MAX bytes, on a UTF-8 character boundary. */
static void encode_error(avm_buf *out, uint64_t id, int code, const char *msg)
{
    const char *name = avm_err_name(code);
    if (code == AVM_EOK || name == NULL)
        name = "EIO"; /* a handler's bug; still an error, and one the client knows */
    size_t mlen = strlen(msg);
    if (mlen > ERR_MSG_MAX) {
        mlen = ERR_MSG_MAX;
        while (mlen > 0 && ((unsigned char)msg[mlen] & 0xc0) == 0x80)
            mlen--;
    }
    put_header(out, id, "error", 5);
    avm_mp_put_array(out, 2);
    avm_mp_put_array(out, 2);
    avm_mp_put_str(out, "code", 4);
    avm_mp_put_str(out, name, strlen(name));
    avm_mp_put_array(out, 2);
    avm_mp_put_str(out, "message", 7);
    avm_mp_put_str(out, msg, mlen);
}

int avm_ctl_decode(const uint8_t *p, size_t n, avm_ctl_frame *f, char *errmsg,
                   size_t errlen)
{
    return avm_ctl_decode_ex(p, n, AVM_CTL_MAX_FRAME, f, errmsg, errlen);
}

int avm_ctl_decode_ex(const uint8_t *p, size_t n, size_t max_frame, avm_ctl_frame *f,
                      char *errmsg, size_t errlen)
{
    f->version = 0;
    f->id = 0;
    f->word[0] = '\0';
    f->body = avm_nil();
    if (max_frame == 0)
        max_frame = AVM_CTL_MAX_FRAME;

    /* Decoded values take more memory than their bytes (an empty list is one byte
     * and a few dozen in memory): the budget bounds that, whatever the frame. */
    size_t budget = AVM_DECODE_DEFAULT_MAX;
    if (max_frame <= SIZE_MAX / 4 && 4 * max_frame > budget)
        budget = 4 * max_frame;
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, budget);

    uint32_t items;
    int rv = avm_mp_get_array(&r, &items);
    if (rv == AVM_ETRUNCATED)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          n == 0
                              ? "frame is empty"
                              : "frame ends early (its array announces more items than "
                                "there are bytes)");
    if (rv != 0)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame is not a msgpack array (it starts with byte 0x%02x)",
                          p[0]);
    if (items < 3)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame is not an array of 5 (it has %u items)", items);

    /* The header, read as far as the id so that an error (even the size's) can be
     * addressed to the request; the version is checked after the id (another
     * version may have another shape, but likely keeps the id where it is). */
    const char *s;
    uint32_t slen;
    if (avm_mp_get_str(&r, &s, &slen) != 0 || slen != CTL_MAGIC_LEN ||
        memcmp(s, CTL_MAGIC, CTL_MAGIC_LEN) != 0)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame does not start with \"" CTL_MAGIC "\"");
    if (avm_mp_get_uint(&r, &f->version) != 0)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame version is not an unsigned integer");
    bool have_id = avm_mp_get_uint(&r, &f->id) == 0;
    if (n > max_frame)
        return avm__failf(errmsg, errlen, AVM_ETOOBIG,
                          "frame of %zu bytes exceeds the limit of %zu bytes", n,
                          max_frame);
    if (f->version != AVM_CTL_VERSION)
        return avm__failf(errmsg, errlen, AVM_EVERSION,
                          "version %llu is not supported (this node speaks %d)",
                          (unsigned long long)f->version, AVM_CTL_VERSION);
    if (!have_id)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "request id is not an unsigned integer");
    if (items != 5)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame is not an array of 5 (it has %u items)", items);

    rv = avm_mp_get_str(&r, &s, &slen);
    if (rv == AVM_ETRUNCATED && r.p == r.end)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame ends early (op missing)");
    if (rv != 0)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED, "op is not a string");
    if (slen > OP_MAX)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED, "op is longer than %zu bytes",
                          OP_MAX);
    if (memchr(s, '\0', slen) != NULL)
        return avm__failf(errmsg, errlen, AVM_EMALFORMED, "op contains a NUL byte");

    avm_val body;
    rv = avm_mp_get_val(&r, &body);
    switch (rv) {
    case 0:
        break;
    case AVM_ETRUNCATED:
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "frame ends early (the body is missing or cut short)");
    case AVM_ETOODEEP:
        return avm__failf(errmsg, errlen, AVM_ETOODEEP,
                          "body nests more than %d lists deep", AVM_MAX_DEPTH);
    case AVM_ETOOBIG:
        return avm__failf(
            errmsg, errlen, AVM_ETOOBIG,
            "body exceeds a size limit (strings up to %u bytes, lists up to %u "
            "items, %zu bytes decoded)",
            AVM_MAX_STR_LEN, AVM_MAX_LIST_LEN, budget);
    case AVM_ENOMEM:
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory decoding the body");
    default:
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "body is not an AVM value (maps, floats, binary and unknown "
                          "extension types are not values)");
    }
    if (r.p != r.end) {
        avm_val_release(body);
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "%zu unexpected bytes after the frame", (size_t)(r.end - r.p));
    }
    memcpy(f->word, s, slen);
    f->word[slen] = '\0';
    f->body = body;
    return 0;
}

/* --- Server ----------------------------------------------------------------- */

/* A request slot: one nng context and its aio, used in turn to receive a request
 * and to send its reply.
 *
 *   IDLE ──► RECV ──► QUEUED ──► HANDLER ──► SEND ──► RECV ...
 *             │ │                             ▲ │
 *             │ └─────────────────────────────┘ └──► IDLE (stopping)
 *             └──► IDLE (the context closed)
 *
 * IDLE: no operation (before start, and once stop began and the last operation
 * ended); RECV: a receive is pending (a failed one is posted again: RECV ──►
 * RECV); QUEUED: decoded, in the queue to the loop thread, holding the body;
 * HANDLER: the handler owes a reply; SEND: a reply is being sent. RECV goes
 * straight to SEND with the error reply to a malformed frame, or to a request
 * that arrives while the server stops. */
typedef enum {
    REQ_IDLE,
    REQ_RECV,
    REQ_QUEUED,
    REQ_HANDLER,
    REQ_SEND,
} req_state;

/* The allowed transitions: req_next[from] has bit `to` set. Checked by assert. */
#define BIT(s) (1u << (s))
static const unsigned req_next[] __attribute__((unused)) = {
    [REQ_IDLE] = BIT(REQ_RECV),
    [REQ_RECV] = BIT(REQ_RECV) | BIT(REQ_QUEUED) | BIT(REQ_SEND) | BIT(REQ_IDLE),
    [REQ_QUEUED] = BIT(REQ_HANDLER),
    [REQ_HANDLER] = BIT(REQ_SEND),
    [REQ_SEND] = BIT(REQ_RECV) | BIT(REQ_IDLE),
};

struct avm_ctl_req {
    avm_ctl_server *s;
    nng_ctx ctx;
    nng_aio *aio;
    /* Under s->mu. Only the slot's own aio callback moves it out of RECV and
     * SEND, and only the loop thread out of QUEUED and HANDLER. */
    req_state state;
    bool abandoned; /* the request's pipe closed (under s->mu) */
    uint32_t pipe;  /* the nng pipe the request came on */
    uint32_t lid;   /* the nng listener that accepted that pipe */
    uint64_t id;
    char op[OP_MAX + 1];
    avm_val body;             /* owned while QUEUED */
    struct avm_ctl_req *next; /* in the queue to the loop thread */
    /* A local request (avm_ctl_req_local): s is NULL and the answer goes here. */
    avm_ctl_local_cb local;
    void *local_arg;
};

/* One address the server listens on. */
typedef struct ctl_listener {
    nng_listener l; /* the current listener */
    char *url;      /* as configured */
    /* ipc:// only (see "ipc listeners" below); path is NULL for other URLs. */
    char *path;           /* the socket file */
    unsigned gen;         /* listeners made so far (their temporary names) */
    uint64_t other;       /* l's count of "other" accept errors, last seen */
    nng_listener retired; /* replaced at the last check; closed at the next */
    dev_t dev;            /* the socket file we put at path, so that stop */
    ino_t ino;            /* removes it only if it is still ours */
    /* tls+tcp:// only: the listener's handshake failure counts, last seen (see
     * tls_refused). */
    bool tls;
    uint64_t refused[5];
} ctl_listener;

struct avm_ctl_server {
    uv_async_t async; /* wakes the loop thread for the queue */
    uv_timer_t watch; /* loop thread: checks the ipc listeners */
    int open_handles; /* of the two above; the memory goes with the last */
    nng_socket sock;
    ctl_listener *listeners;
    size_t nlisteners;
    avm_ctl_handler handler;
    void *arg;
    nng_tls_config *tls; /* of the tls+tcp:// listeners, or NULL */
    void (*refused)(void *arg, const char *url, uint64_t n, const char *cause);
    size_t max_frame;
    avm_ctl_req *reqs;
    unsigned nreqs;
    bool stopped; /* loop thread: stop was called */

    pthread_mutex_t mu;
    /* Under mu: */
    bool stopping;
    /* Open connections per listener (by listener id), so that a replaced ipc
     * listener is closed only once its last connection ended. */
    struct {
        uint32_t lid;
        int n;
    } conns[32];
    unsigned nconns;
    avm_ctl_req *head, *tail; /* the queue to the loop thread */
};

/* With s->mu held. */
static void req_set(avm_ctl_req *r, req_state to)
{
    assert(req_next[r->state] & BIT(to));
    /* Invariant: only a queued request holds a body. */
    assert(to == REQ_QUEUED || r->body.kind == AVM_NIL);
    r->state = to;
}

static void lock(avm_ctl_server *s)
{
    pthread_mutex_lock(&s->mu);
}

static void unlock(avm_ctl_server *s)
{
    pthread_mutex_unlock(&s->mu);
}

/* Posts a receive on the slot, unless the server is stopping. */
static void req_recv(avm_ctl_req *r)
{
    avm_ctl_server *s = r->s;
    lock(s);
    if (s->stopping) {
        req_set(r, REQ_IDLE);
        unlock(s);
        return;
    }
    req_set(r, REQ_RECV);
    unlock(s);
    nng_aio_set_timeout(r->aio, NNG_DURATION_INFINITE);
    nng_ctx_recv(r->ctx, r->aio);
}

/* Sends the frame in b on the slot (state SEND). The aio callback completes it. If
 * no message can be made, the reply is dropped (the client times out) and the slot
 * receives again: a rep0 context may receive without having replied. */
static void req_send(avm_ctl_req *r, const avm_buf *b, int timeout_ms)
{
    nng_msg *m;
    if (b->err != 0 || nng_msg_alloc(&m, b->len) != 0) {
        req_recv(r);
        return;
    }
    memcpy(nng_msg_body(m), b->data, b->len);
    nng_aio_set_msg(r->aio, m);
    nng_aio_set_timeout(r->aio, timeout_ms);
    nng_ctx_send(r->ctx, r->aio);
}

static void req_send_error(avm_ctl_req *r, int code, const char *msg, int timeout_ms)
{
    avm_buf b;
    avm_buf_init(&b);
    encode_error(&b, r->id, code, msg);
    req_send(r, &b, timeout_ms);
    avm_buf_free(&b);
}

/* nng thread: a receive completed. */
static void recv_done(avm_ctl_req *r)
{
    avm_ctl_server *s = r->s;
    int rv = nng_aio_result(r->aio);
    if (rv != 0) {
        /* Closed or cancelled: the server is stopping. Anything else (out of
         * memory) is worth another try. */
        if (rv == NNG_ECLOSED || rv == NNG_ECANCELED) {
            lock(s);
            req_set(r, REQ_IDLE);
            unlock(s);
            return;
        }
        req_recv(r);
        return;
    }

    nng_msg *m = nng_aio_get_msg(r->aio);
    nng_aio_set_msg(r->aio, NULL);
    avm_ctl_frame f;
    char emsg[256];
    int drv = avm_ctl_decode_ex(nng_msg_body(m), nng_msg_len(m), s->max_frame, &f, emsg,
                                sizeof(emsg));
    nng_pipe np = nng_msg_get_pipe(m);
    uint32_t pipe = nng_pipe_id(np);
    int lid = nng_listener_id(nng_pipe_listener(np));
    nng_msg_free(m);

    lock(s);
    r->id = f.id;
    r->pipe = pipe;
    r->lid = lid > 0 ? (uint32_t)lid : 0;
    r->abandoned = false;
    if (drv == 0 && !s->stopping) {
        memcpy(r->op, f.word, sizeof(r->op));
        r->body = f.body;
        req_set(r, REQ_QUEUED);
        r->next = NULL;
        if (s->tail != NULL)
            s->tail->next = r;
        else
            s->head = r;
        s->tail = r;
        unlock(s);
        /* Safe after unlocking: stop waits for this callback (nng_aio_stop) before
         * it closes the async handle. */
        uv_async_send(&s->async);
        return;
    }
    req_set(r, REQ_SEND);
    unlock(s);
    if (drv == 0) {
        avm_val_release(f.body);
        req_send_error(r, AVM_ESTATE, shutdown_msg, STOP_SEND_TIMEOUT_MS);
    } else {
        req_send_error(r, drv, emsg, SEND_TIMEOUT_MS);
    }
}

/* nng thread: a send completed (or failed: the message is still ours). */
static void send_done(avm_ctl_req *r)
{
    if (nng_aio_result(r->aio) != 0) {
        nng_msg *m = nng_aio_get_msg(r->aio);
        nng_aio_set_msg(r->aio, NULL);
        if (m != NULL)
            nng_msg_free(m);
    }
    req_recv(r);
}

static void on_aio(void *arg)
{
    avm_ctl_req *r = arg;
    lock(r->s);
    req_state st = r->state;
    unlock(r->s);
    assert(st == REQ_RECV || st == REQ_SEND);
    if (st == REQ_RECV)
        recv_done(r);
    else
        send_done(r);
}

/* nng thread: a pipe was removed. The requests that came on it are abandoned: a
 * reply would be dropped (rep0 discards a reply to a pipe that is gone). */
/* With s->mu held: the connection count of listener lid changes by d. */
static void conns_add(avm_ctl_server *s, uint32_t lid, int d)
{
    if (lid == 0)
        return;
    for (unsigned i = 0; i < s->nconns; i++) {
        if (s->conns[i].lid == lid) {
            s->conns[i].n += d;
            if (s->conns[i].n <= 0)
                s->conns[i] = s->conns[--s->nconns];
            return;
        }
    }
    if (d > 0 && s->nconns < sizeof(s->conns) / sizeof(s->conns[0])) {
        s->conns[s->nconns].lid = lid;
        s->conns[s->nconns++].n = d;
    }
}

static void on_pipe_added(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    avm_ctl_server *s = arg;
    (void)ev;
    lock(s);
    conns_add(s, (uint32_t)nng_listener_id(nng_pipe_listener(p)), 1);
    unlock(s);
}

static void on_pipe_removed(nng_pipe p, nng_pipe_ev ev, void *arg)
{
    avm_ctl_server *s = arg;
    uint32_t id = nng_pipe_id(p);
    lock(s);
    conns_add(s, (uint32_t)nng_listener_id(nng_pipe_listener(p)), -1);
    for (unsigned i = 0; i < s->nreqs; i++) {
        avm_ctl_req *r = &s->reqs[i];
        if ((r->state == REQ_QUEUED || r->state == REQ_HANDLER) && r->pipe == id)
            r->abandoned = true;
    }
    unlock(s);
}

/* Loop thread: hands the queued requests to the handler. One at a time, so that a
 * handler that stops the server finds the rest of the queue answered by stop. */
static void on_async(uv_async_t *h)
{
    avm_ctl_server *s = h->data;
    for (;;) {
        lock(s);
        /* Once answered, the slot may receive the next request while the handler
         * is still running: the handler gets its own copies of op and body. */
        avm_ctl_req *r = s->head;
        avm_val body = avm_nil();
        char op[OP_MAX + 1];
        if (r != NULL) {
            s->head = r->next;
            if (s->head == NULL)
                s->tail = NULL;
            body = r->body;
            r->body = avm_nil();
            memcpy(op, r->op, sizeof(op));
            req_set(r, REQ_HANDLER);
        }
        unlock(s);
        if (r == NULL)
            return;
        s->handler(s->arg, r, op, body);
        avm_val_release(body);
    }
}

static void server_free(avm_ctl_server *s)
{
    if (s->tls != NULL)
        nng_tls_config_free(s->tls);
    pthread_mutex_destroy(&s->mu);
    for (size_t i = 0; i < s->nlisteners; i++) {
        free(s->listeners[i].url);
        free(s->listeners[i].path);
    }
    free(s->listeners);
    free(s->reqs);
    free(s);
}

static void on_handle_closed(uv_handle_t *h)
{
    avm_ctl_server *s = h->data;
    if (--s->open_handles == 0)
        server_free(s);
}

/* --- TLS -------------------------------------------------------------------
 *
 * nng's TLS engine (mbedTLS in Debian's nng 1.5.2) takes PEM text; the files are
 * read here so that a failure names the file and its cause, each file on its own
 * (nng reports only NNG_ECRYPTO). */

/* Larger files are not certificates. */
#define TLS_FILE_MAX (1u << 20)

bool avm_ctl_url_is_tls(const char *url)
{
    return url != NULL && strncmp(url, "tls+tcp://", 10) == 0;
}

/* The NUL-terminated text of the PEM file at path (what names it in messages),
 * in *out (free it). A key file the group or others may read is refused. */
static int tls_read(const char *path, const char *what, bool secret, char **out,
                    char *errmsg, size_t errlen)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "cannot read the %s %s: %s", what,
                          path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return avm__failf(errmsg, errlen, AVM_EINVAL, "the %s %s is not a regular file",
                          what, path);
    }
    if (secret && (st.st_mode & 077) != 0) {
        fclose(f);
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "the %s %s has mode %04o: the group or others may read it "
                          "(chmod 600 it)",
                          what, path, (unsigned)(st.st_mode & 07777));
    }
    if (st.st_size > (off_t)TLS_FILE_MAX) {
        fclose(f);
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "the %s %s is larger than %u bytes: not a PEM file", what, path,
                          TLS_FILE_MAX);
    }
    char *text = malloc((size_t)st.st_size + 1);
    if (text == NULL) {
        fclose(f);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }
    size_t n = fread(text, 1, (size_t)st.st_size, f);
    int bad = ferror(f);
    fclose(f);
    text[n] = '\0';
    if (bad) {
        free(text);
        return avm__failf(errmsg, errlen, AVM_EINVAL, "cannot read the %s %s", what,
                          path);
    }
    if (strlen(text) != n || strstr(text, "-----BEGIN ") == NULL) {
        free(text);
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "the %s %s is not PEM text (no -----BEGIN line; convert DER "
                          "with openssl x509/pkey -inform der)",
                          what, path);
    }
    *out = text;
    return 0;
}

/* Frees a buffer that may hold a private key, wiping it first. */
static void tls_wipe_free(char *p)
{
    if (p == NULL)
        return;
    volatile char *v = p;
    for (size_t i = 0; v[i] != '\0'; i++)
        v[i] = 0;
    free(p);
}

/* The first certificate in the PEM text cert (its file certfile) must be valid
 * now and its public key must match the private key in key (keyfile): mbedTLS
 * would load either way, and every handshake would fail. */
static int tls_check_pair(const char *cert, const char *key, const char *certfile,
                          const char *keyfile, char *errmsg, size_t errlen)
{
    mbedtls_x509_crt crt;
    mbedtls_pk_context pk;
    mbedtls_x509_crt_init(&crt);
    mbedtls_pk_init(&pk);
    char why[160];
    int rv = 0, mrv;
    if ((mrv = mbedtls_x509_crt_parse(&crt, (const unsigned char *)cert,
                                      strlen(cert) + 1)) < 0) {
        mbedtls_strerror(mrv, why, sizeof(why));
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the certificate file %s holds no certificate mbedTLS can read "
                        "(%s)",
                        certfile, why);
        goto out;
    }
#if MBEDTLS_VERSION_MAJOR < 3
    mrv = mbedtls_pk_parse_key(&pk, (const unsigned char *)key, strlen(key) + 1, NULL, 0);
#else
    mrv = -1; /* mbedTLS 3 wants a random generator here: left to nng */
#endif
    if (mrv != 0 && MBEDTLS_VERSION_MAJOR < 3) {
        mbedtls_strerror(mrv, why, sizeof(why));
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the private key in %s cannot be read by mbedTLS (%s): give an "
                        "unencrypted RSA or EC key in PEM",
                        keyfile, why);
        goto out;
    }
    if (mrv == 0 && mbedtls_pk_check_pair(&crt.pk, &pk) != 0) {
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the private key in %s is not the key of the certificate in %s",
                        keyfile, certfile);
        goto out;
    }
    if (mbedtls_x509_time_is_past(&crt.valid_to)) {
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the certificate in %s expired on %04d-%02d-%02d", certfile,
                        crt.valid_to.year, crt.valid_to.mon, crt.valid_to.day);
        goto out;
    }
    if (mbedtls_x509_time_is_future(&crt.valid_from)) {
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the certificate in %s is not valid before %04d-%02d-%02d "
                        "(is this host's clock right?)",
                        certfile, crt.valid_from.year, crt.valid_from.mon,
                        crt.valid_from.day);
        goto out;
    }
out:
    mbedtls_x509_crt_free(&crt);
    mbedtls_pk_free(&pk);
    return rv;
}

/* A TLS configuration for mode from t: own certificate and key (when t->cert),
 * the CA the peer must chain to, the peer's certificate checked as auth says
 * (required, but for the client's diagnosis), TLS 1.2 at least; a client checks
 * server_name (when not NULL). 0 or AVM_EINVAL / AVM_ENOMEM naming the file at fault. */
static int tls_config_make(const avm_ctl_tls *t, nng_tls_mode mode,
                           nng_tls_auth_mode auth, const char *server_name,
                           nng_tls_config **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    if (t->ca == NULL || t->ca[0] == '\0')
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "no CA file: the peer's certificate cannot be checked");
    if (mode == NNG_TLS_MODE_SERVER && (t->cert == NULL || t->cert[0] == '\0'))
        return avm__failf(errmsg, errlen, AVM_EINVAL, "no certificate file");
    if (t->key != NULL && t->key[0] != '\0' && (t->cert == NULL || t->cert[0] == '\0'))
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "a key file (%s) without a certificate file", t->key);
    char *ca = NULL, *cert = NULL, *key = NULL;
    nng_tls_config *cfg = NULL, *probe = NULL;
    int rv, nrv;
    if ((rv = tls_read(t->ca, "CA file", false, &ca, errmsg, errlen)) != 0)
        goto out;
    bool has_cert = t->cert != NULL && t->cert[0] != '\0';
    bool split = t->key != NULL && t->key[0] != '\0';
    if (has_cert) {
        /* The key may be in the certificate's file: then that file is secret. */
        if ((rv = tls_read(t->cert, "certificate file", false, &cert, errmsg, errlen)) !=
            0)
            goto out;
        /* With the key in it, it is as secret as a key file. */
        if (!split && strstr(cert, "PRIVATE KEY-----") != NULL &&
            (rv = tls_read(t->cert, "certificate and key file", true, &key, errmsg,
                           errlen)) != 0)
            goto out;
        tls_wipe_free(key);
        key = NULL;
        if (split && (rv = tls_read(t->key, "key file", true, &key, errmsg, errlen)) != 0)
            goto out;
        const char *k = split ? key : cert;
        const char *kf = split ? t->key : t->cert;
        if (strstr(k, "PRIVATE KEY-----") == NULL) {
            rv = avm__failf(
                errmsg, errlen, AVM_EINVAL,
                "%s holds no private key (no -----BEGIN ... PRIVATE KEY----- "
                "line)%s",
                kf,
                split ? "" : ": give the key file too (--tls-key, --control-tls-key)");
            goto out;
        }
        if (strstr(k, "ENCRYPTED") != NULL) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "the private key in %s is encrypted: give an unencrypted "
                            "key (openssl pkey -in KEY -out PLAIN), readable by this "
                            "user only",
                            kf);
            goto out;
        }
    }
    if ((nrv = nng_tls_config_alloc(&cfg, mode)) != 0 ||
        (has_cert && (nrv = nng_tls_config_alloc(&probe, NNG_TLS_MODE_CLIENT)) != 0)) {
        rv = avm__failf(errmsg, errlen, nrv == NNG_ENOMEM ? AVM_ENOMEM : AVM_EINVAL,
                        "cannot set up TLS: %s%s", nng_strerror(nrv),
                        nrv == NNG_ENOTSUP ? " (this nng is built without TLS)" : "");
        goto out;
    }
    if ((nrv = nng_tls_config_ca_chain(cfg, ca, NULL)) != 0) {
        rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                        "the CA file %s holds no certificate mbedTLS can read (%s)",
                        t->ca, nng_strerror(nrv));
        goto out;
    }
    if (has_cert) {
        /* The certificate alone first, so that a failure names the right file. */
        if ((nrv = nng_tls_config_ca_chain(probe, cert, NULL)) != 0) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "the certificate file %s holds no certificate mbedTLS can "
                            "read (%s)",
                            t->cert, nng_strerror(nrv));
            goto out;
        }
        if ((rv = tls_check_pair(cert, split ? key : cert, t->cert,
                                 split ? t->key : t->cert, errmsg, errlen)) != 0)
            goto out;
        if ((nrv = nng_tls_config_own_cert(cfg, cert, split ? key : cert, NULL)) != 0) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "the private key in %s cannot be read by mbedTLS (%s): give "
                            "an unencrypted RSA or EC key in PEM",
                            split ? t->key : t->cert, nng_strerror(nrv));
            goto out;
        }
    }
    if ((nrv = nng_tls_config_auth_mode(cfg, auth)) != 0 ||
        (nrv = nng_tls_config_version(cfg, NNG_TLS_1_2, NNG_TLS_1_3)) != 0 ||
        (server_name != NULL &&
         (nrv = nng_tls_config_server_name(cfg, server_name)) != 0)) {
        rv = avm__failf(errmsg, errlen, nrv == NNG_ENOMEM ? AVM_ENOMEM : AVM_EINVAL,
                        "cannot set up TLS: %s", nng_strerror(nrv));
        goto out;
    }
    *out = cfg;
    cfg = NULL;
    rv = 0;
out:
    if (cfg != NULL)
        nng_tls_config_free(cfg);
    if (probe != NULL)
        nng_tls_config_free(probe);
    free(ca);
    tls_wipe_free(cert); /* may hold the key */
    tls_wipe_free(key);
    return rv;
}

int avm_ctl_tls_check(const avm_ctl_tls *t, bool server, char *errmsg, size_t errlen)
{
    nng_tls_config *cfg;
    int rv = tls_config_make(t, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT,
                             NNG_TLS_AUTH_MODE_REQUIRED, NULL, &cfg, errmsg, errlen);
    if (rv == 0)
        nng_tls_config_free(cfg);
    return rv;
}

/* --- ipc listeners ------------------------------------------------------------
 *
 * nng 1.5.2 (Debian's) has a bug, nanomsg/nng#1518 (fixed in 1.6.0): when a peer
 * connects to an ipc listener and closes before the SP handshake, the listener
 * takes the peer's EOF for its own closing and never accepts again. A raw probe of
 * the socket does that, a client that exits while connecting does it, and so does
 * nng itself when another process tries to listen on the same path (it probes the
 * file to see if it is stale): a second avmd started by mistake would cut the
 * first one's ipc endpoint for good. (tcp is not affected: its EOF is another
 * error code.)
 *
 * The only trace is the listener's count of "other" accept errors in nng's
 * statistics, so a timer looks at it every WATCH_MS and replaces a listener whose
 * count rose. Closing a listener that still accepts races, in 1.5.2, with a
 * connection being accepted (the pipe is left half attached, and both ends hang),
 * so a listener is never closed while it is reachable: each listener is bound at
 * a temporary name next to the socket file and renamed over it, which atomically
 * sends new connections to the new listener; the old one, unreachable, is closed
 * at the next check, once anything it was accepting is done. nng unlinks a
 * listener's own path when it closes, which is the temporary name, gone since the
 * rename; the socket file itself is removed by stop. Binding at the path directly
 * would also let nng's stale-file probe wedge another server, so the server probes
 * the path itself first, with a complete handshake (ipc_path_live). */

/* The accept error counts nng keeps per listener (nni_listener_bump_error), with
 * what they mean for a tls+tcp:// listener, whose accepts include the handshakes
 * (TLS, then SP). */
static const struct {
    const char *stat, *cause;
} tls_causes[5] = {
    {"auth", "TLS handshake failed: no client certificate, one not signed by the "
             "control CA, or not TLS at all"},
    {"proto", "not an nng req peer after the TLS handshake"},
    {"disconnect", "connection reset during the handshake"},
    {"timeout", "handshake not finished within 10 s"},
    {"other", "connection closed during the handshake"},
};

static uint64_t listener_stat(nng_stat *all, nng_listener l, const char *name);

/* Loop thread: reports the handshake failures of the tls+tcp:// listeners since
 * the last check (cfg->refused). */
static void tls_refused(avm_ctl_server *s, nng_stat *all)
{
    for (size_t i = 0; i < s->nlisteners; i++) {
        ctl_listener *cl = &s->listeners[i];
        if (!cl->tls)
            continue;
        for (size_t k = 0; k < 5; k++) {
            uint64_t n = listener_stat(all, cl->l, tls_causes[k].stat);
            if (n > cl->refused[k] && s->refused != NULL)
                s->refused(s->arg, cl->url, n - cl->refused[k], tls_causes[k].cause);
            cl->refused[k] = n;
        }
    }
}

/* The count of "other" accept errors of listener l, from a stats snapshot. Not
 * with nng_stat_find_listener: in nng 1.5.2 it returns the first listener's
 * statistics whatever the id (its search recurses without the id). */
static uint64_t listener_other(nng_stat *all, nng_listener l)
{
    return listener_stat(all, l, "other");
}

/* Listener l's statistic name (a counter), from a stats snapshot. */
static uint64_t listener_stat(nng_stat *all, nng_listener l, const char *name)
{
    uint64_t id = (uint64_t)nng_listener_id(l);
    for (nng_stat *c = nng_stat_child(all); c != NULL; c = nng_stat_next(c)) {
        if (nng_stat_type(c) != NNG_STAT_SCOPE ||
            strcmp(nng_stat_name(c), "listener") != 0)
            continue;
        nng_stat *sid = nng_stat_find(c, "id");
        if (sid == NULL || nng_stat_value(sid) != id)
            continue;
        nng_stat *v = nng_stat_find(c, name);
        return v != NULL ? nng_stat_value(v) : 0;
    }
    return 0;
}

/* 0 when the unix socket path is free to take (absent, or a file left by a
 * dead process), EADDRINUSE when something listens there, or the errno that
 * says why it cannot be told. The probe completes the SP handshake (an 8-byte
 * header each way: 0, 'S', 'P', 0, the protocol number, 0, 0) before closing, so
 * that an nng 1.5.2 listener there is not wedged by it; it waits at most PROBE_MS
 * for the other side's header. */
#define PROBE_MS 1000
static int ipc_path_live(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, path, strlen(path) + 1); /* the caller checked the length */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return errno;
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int e = errno;
        close(fd);
        return e == ENOENT || e == ECONNREFUSED ? 0 : e;
    }
    static const uint8_t hello[8] = {0, 'S', 'P', 0, 0x30, 0, 0, 0}; /* req0 */
    uint8_t reply[8];
    size_t got = 0;
    if (write(fd, hello, sizeof(hello)) == (ssize_t)sizeof(hello)) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        while (got < sizeof(reply) && poll(&pfd, 1, PROBE_MS) == 1) {
            ssize_t n = read(fd, reply + got, sizeof(reply) - got);
            if (n <= 0)
                break;
            got += (size_t)n;
        }
    }
    close(fd);
    return EADDRINUSE;
}

/* The longest socket path, and room for the temporary names' suffix. */
#define SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path) - 1)
#define TMP_SUFFIX_MAX 24

/* Listens on cl's path through a new listener bound at a temporary name and
 * renamed over the path. 0 or an nng error code. */
static int ipc_listen(avm_ctl_server *s, ctl_listener *cl, nng_listener *out)
{
    char tmp[SUN_PATH_MAX + 1], url[sizeof(tmp) + 8];
    /* With the pid, so that no one else's file is in the way (a file left by a
     * process that died between bind and rename is removed by nng as stale). */
    int n = snprintf(tmp, sizeof(tmp), "%s.%ld.%u", cl->path, (long)getpid(), cl->gen++);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return NNG_EADDRINVAL;
    snprintf(url, sizeof(url), "ipc://%s", tmp);
    int rv = nng_listen(s->sock, url, out, 0);
    if (rv != 0)
        return rv;
    struct stat st;
    if (rename(tmp, cl->path) != 0 || stat(cl->path, &st) != 0) {
        rv = NNG_ESYSERR + errno;
        nng_listener_close(*out); /* unreachable: nothing to race with */
        return rv;
    }
    cl->dev = st.st_dev;
    cl->ino = st.st_ino;
    cl->other = 0; /* a new listener's count starts at 0 */
    return 0;
}

/* Whether listener l still has a connection, or a request that came through it is
 * queued or being handled. */
static bool listener_busy(avm_ctl_server *s, nng_listener l)
{
    bool busy = false;
    lock(s);
    for (unsigned i = 0; i < s->nconns; i++)
        busy |= s->conns[i].lid == (uint32_t)nng_listener_id(l) && s->conns[i].n > 0;
    for (unsigned i = 0; i < s->nreqs && !busy; i++) {
        avm_ctl_req *r = &s->reqs[i];
        if ((r->state != REQ_QUEUED && r->state != REQ_HANDLER && r->state != REQ_SEND) ||
            r->abandoned)
            continue;
        nng_pipe p = NNG_PIPE_INITIALIZER;
        p.id = r->pipe;
        busy = nng_listener_id(nng_pipe_listener(p)) == nng_listener_id(l);
    }
    unlock(s);
    return busy;
}

/* Loop thread, every WATCH_MS: closes the listeners replaced at the last check,
 * and replaces those whose "other" error count rose. */
static void on_watch(uv_timer_t *t)
{
    avm_ctl_server *s = t->data;
    for (size_t i = 0; i < s->nlisteners; i++) {
        ctl_listener *cl = &s->listeners[i];
        /* Closing a listener closes its connections: wait until the last one
         * ended (a client between two requests, or a slow request: a commit
         * waiting for a new Raft leader, say). */
        if (nng_listener_id(cl->retired) > 0 && !listener_busy(s, cl->retired)) {
            nng_listener_close(cl->retired);
            cl->retired = (nng_listener)NNG_LISTENER_INITIALIZER;
        }
    }
    nng_stat *all;
    if (nng_stats_get(&all) != 0)
        return;
    tls_refused(s, all);
    for (size_t i = 0; i < s->nlisteners; i++) {
        ctl_listener *cl = &s->listeners[i];
        if (cl->path == NULL || listener_other(all, cl->l) <= cl->other ||
            nng_listener_id(cl->retired) > 0)
            continue; /* (one still retiring: replace at a later check) */
        /* Replace it (a false alarm, an error nng would retry by itself, costs
         * only a new listener). On failure the old one stays and the next check
         * tries again. */
        nng_listener old = cl->l, fresh;
        uint64_t seen = cl->other;
        if (ipc_listen(s, cl, &fresh) == 0) {
            cl->retired = old;
            cl->l = fresh;
        } else {
            cl->other = seen;
        }
    }
    nng_stats_free(all);
}

/* Starts listening on cl->url. */
static int listen_on(avm_ctl_server *s, ctl_listener *cl, char *errmsg, size_t errlen)
{
    int rv;
    const char *path = cl->url + 6;
    /* A path too long for a temporary name beside it is left to nng (and goes
     * without the watch). */
    if (strncmp(cl->url, "ipc://", 6) == 0 && path[0] != '\0' &&
        strlen(path) + TMP_SUFFIX_MAX <= SUN_PATH_MAX) {
        if ((cl->path = strdup(path)) == NULL)
            return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
        if ((rv = ipc_path_live(cl->path)) != 0)
            return avm__failf(errmsg, errlen, AVM_EIO, "cannot listen on %s: %s", cl->url,
                              rv == EADDRINUSE ? "another process is listening there"
                                               : strerror(rv));
        rv = ipc_listen(s, cl, &cl->l);
    } else if (avm_ctl_url_is_tls(cl->url)) {
        cl->tls = true;
        if ((rv = nng_listener_create(&cl->l, s->sock, cl->url)) == 0 &&
            ((rv = nng_listener_set_ptr(cl->l, NNG_OPT_TLS_CONFIG, s->tls)) != 0 ||
             (rv = nng_listener_start(cl->l, 0)) != 0))
            nng_listener_close(cl->l);
    } else {
        rv = nng_listen(s->sock, cl->url, &cl->l, 0);
    }
    if (rv != 0)
        return avm__nng_fail(errmsg, errlen, rv, "cannot listen on", cl->url);
    return 0;
}

/* Stop: removes the socket files this server put in place (nng removed only the
 * temporary names), unless another process has replaced them since. */
static void ipc_unlink(avm_ctl_server *s)
{
    for (size_t i = 0; i < s->nlisteners; i++) {
        ctl_listener *cl = &s->listeners[i];
        struct stat st;
        if (cl->path != NULL && cl->ino != 0 && stat(cl->path, &st) == 0 &&
            st.st_dev == cl->dev && st.st_ino == cl->ino)
            unlink(cl->path);
    }
}

int avm_ctl_server_start(uv_loop_t *loop, const avm_ctl_server_config *cfg,
                         avm_ctl_server **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    if (cfg->nurls == 0 || cfg->urls == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "no control address to listen on");
    if (cfg->handler == NULL)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "no request handler");

    avm_ctl_server *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    s->handler = cfg->handler;
    s->arg = cfg->arg;
    s->refused = cfg->refused;
    s->max_frame = cfg->max_frame ? cfg->max_frame : AVM_CTL_MAX_FRAME;
    s->nreqs = cfg->contexts ? cfg->contexts : 64;
    s->reqs = calloc(s->nreqs, sizeof(*s->reqs));
    s->listeners = calloc(cfg->nurls, sizeof(*s->listeners));
    if (s->reqs == NULL || s->listeners == NULL ||
        pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s->reqs);
        free(s->listeners);
        free(s);
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    }

    int rv;
    bool any_tls = false;
    for (size_t i = 0; i < cfg->nurls; i++)
        any_tls |= avm_ctl_url_is_tls(cfg->urls[i]);
    for (size_t i = 0; i < cfg->nurls && any_tls; i++) {
        if (!avm_ctl_url_is_tls(cfg->urls[i]))
            continue;
        if (cfg->tls == NULL) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s needs TLS files: a certificate, its key and a CA",
                            cfg->urls[i]);
            goto err_free;
        }
        char terr[512];
        if ((rv = tls_config_make(cfg->tls, NNG_TLS_MODE_SERVER,
                                  NNG_TLS_AUTH_MODE_REQUIRED, NULL, &s->tls, terr,
                                  sizeof(terr))) != 0) {
            rv = avm__failf(errmsg, errlen, rv, "%s: %s", cfg->urls[i], terr);
            goto err_free;
        }
        break;
    }
    rv = nng_rep0_open(&s->sock);
    if (rv != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot open the control socket for",
                           cfg->urls[0]);
        goto err_free;
    }
    size_t maxsz = s->max_frame <= SIZE_MAX - ROUTING_SLACK ? s->max_frame + ROUTING_SLACK
                                                            : SIZE_MAX;
    if ((rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, maxsz)) != 0 ||
        (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_REM_POST, on_pipe_removed, s)) != 0 ||
        (rv = nng_pipe_notify(s->sock, NNG_PIPE_EV_ADD_POST, on_pipe_added, s)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot set up the control socket for",
                           cfg->urls[0]);
        goto err_close;
    }
    for (unsigned i = 0; i < s->nreqs; i++) {
        avm_ctl_req *r = &s->reqs[i];
        r->s = s;
        r->state = REQ_IDLE;
        r->body = avm_nil();
        if ((rv = nng_aio_alloc(&r->aio, on_aio, r)) != 0 ||
            (rv = nng_ctx_open(&r->ctx, s->sock)) != 0) {
            rv = avm__nng_fail(errmsg, errlen, rv, "cannot set up the control socket for",
                               cfg->urls[0]);
            goto err_close;
        }
    }
    bool any_ipc = false;
    for (size_t i = 0; i < cfg->nurls; i++) {
        ctl_listener *cl = &s->listeners[i];
        if ((cl->url = strdup(cfg->urls[i])) == NULL) {
            rv = avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
            goto err_close;
        }
        s->nlisteners++;
        if ((rv = listen_on(s, cl, errmsg, errlen)) != 0)
            goto err_close;
        any_ipc |= cl->path != NULL;
    }
    /* Last, so that a failure before needs no loop iteration to clean up. */
    if ((rv = uv_async_init(loop, &s->async, on_async)) != 0) {
        rv = avm__failf(errmsg, errlen, AVM_EIO, "cannot start the control server: %s",
                        uv_strerror(rv));
        goto err_close;
    }
    s->async.data = s;
    uv_timer_init(loop, &s->watch); /* cannot fail */
    s->watch.data = s;
    s->open_handles = 2;
    if (any_ipc || (any_tls && s->refused != NULL)) {
        uv_timer_start(&s->watch, on_watch, WATCH_MS, WATCH_MS);
        uv_unref((uv_handle_t *)&s->watch); /* the async handle keeps the loop */
    }

    for (unsigned i = 0; i < s->nreqs; i++)
        req_recv(&s->reqs[i]);
    *out = s;
    return 0;

err_close:
    /* Closing the socket closes its contexts and listeners; no aio was started. */
    nng_close(s->sock);
    ipc_unlink(s);
    for (unsigned i = 0; i < s->nreqs; i++)
        nng_aio_free(s->reqs[i].aio);
err_free:
    server_free(s);
    return rv;
}

int avm_ctl_server_port(const avm_ctl_server *s, size_t i)
{
    int port;
    if (i >= s->nlisteners ||
        nng_listener_get_int(s->listeners[i].l, NNG_OPT_TCP_BOUND_PORT, &port) != 0)
        return 0;
    return port;
}

void avm_ctl_server_stop(avm_ctl_server *s)
{
    if (s->stopped)
        return;
    s->stopped = true;

    /* From now on no slot receives again, and nothing new is queued: a request
     * that arrives is answered with the shutdown error by the nng thread. */
    lock(s);
    s->stopping = true;
    for (avm_ctl_req *r = s->head; r != NULL; r = r->next) {
        avm_val_release(r->body);
        r->body = avm_nil();
        req_set(r, REQ_HANDLER); /* and so answered just below */
    }
    s->head = s->tail = NULL;
    unlock(s);

    /* Every request the handler owes an answer gets the shutdown error. Only this
     * thread moves a slot out of HANDLER, so the state read here stays true. */
    bool answered = false;
    for (unsigned i = 0; i < s->nreqs; i++) {
        avm_ctl_req *r = &s->reqs[i];
        lock(s);
        bool owed = r->state == REQ_HANDLER;
        if (owed)
            req_set(r, REQ_SEND);
        unlock(s);
        if (owed)
            req_send_error(r, AVM_ESTATE, shutdown_msg, STOP_SEND_TIMEOUT_MS);
        answered |= owed;
    }
    /* Let the replies reach their pipes before the socket closes them: a send
     * completes when its message is handed to the pipe, and then the slot goes
     * IDLE instead of receiving. A send that waits for a busy pipe (a client that
     * does not read) is cancelled at the deadline, so that stop stays short. A
     * pending receive would never complete, so only sends are waited for. */
    int64_t deadline = now_ms() + STOP_SEND_TIMEOUT_MS;
    for (unsigned i = 0; i < s->nreqs; i++) {
        avm_ctl_req *r = &s->reqs[i];
        for (;;) {
            lock(s);
            bool sending = r->state == REQ_SEND;
            unlock(s);
            if (!sending)
                break;
            answered = true;
            if (now_ms() >= deadline) {
                nng_aio_cancel(r->aio);
                nng_aio_wait(r->aio);
                break;
            }
            uv_sleep(1);
        }
    }
    /* A reply on the wire is not yet a reply collected: nng 1.5.2's req0 drops a
     * reply that arrived before the client posted its receive if the connection
     * closes in between (req0_recv_cb leaves the context on the pipe's list, and
     * req0_pipe_close, with resends off, resets it). A client posts its receive
     * right after its send returns, so a short grace covers requests answered
     * (here, or by the handler just before) just after they arrived. */
    if (answered)
        uv_sleep(STOP_GRACE_MS);

    /* nng_close returns once every pipe is gone, and so every pipe callback has
     * run; the aio callbacks may still be due (a closed context completes its
     * receive with NNG_ECLOSED): nng_aio_stop waits for them. */
    nng_close(s->sock);
    ipc_unlink(s);
    for (unsigned i = 0; i < s->nreqs; i++) {
        avm_ctl_req *r = &s->reqs[i];
        nng_aio_stop(r->aio);
        /* A send started after the aio stopped never ran: its message is here. */
        nng_msg *m = nng_aio_get_msg(r->aio);
        if (m != NULL)
            nng_msg_free(m);
        nng_aio_free(r->aio);
        r->aio = NULL;
        assert(r->body.kind == AVM_NIL);
    }
    /* The memory goes with the handles (on_handle_closed), so that a handler that
     * answers between stop and the close callbacks touches live memory. */
    uv_close((uv_handle_t *)&s->watch, on_handle_closed);
    uv_close((uv_handle_t *)&s->async, on_handle_closed);
}

/* Loop thread: the request's slot, moved to SEND; false when the server stopped
 * (stop answered the request already). */
static bool reply_begin(avm_ctl_req *req)
{
    avm_ctl_server *s = req->s;
    if (s->stopped)
        return false;
    lock(s);
    /* Answering twice, or a request that is not the handler's, is a bug. */
    assert(req->state == REQ_HANDLER);
    req_set(req, REQ_SEND);
    unlock(s);
    return true;
}

const char *avm_ctl_req_endpoint(const avm_ctl_req *req)
{
    if (req->local != NULL || req->s == NULL)
        return "forwarded";
    const avm_ctl_server *s = req->s;
    for (size_t i = 0; i < s->nlisteners; i++) {
        const ctl_listener *cl = &s->listeners[i];
        if ((uint32_t)nng_listener_id(cl->l) == req->lid ||
            (uint32_t)nng_listener_id(cl->retired) == req->lid)
            return cl->url;
    }
    return "?";
}

avm_ctl_req *avm_ctl_req_local(avm_ctl_local_cb cb, void *arg)
{
    avm_ctl_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->local = cb;
    r->local_arg = arg;
    r->body = avm_nil();
    return r;
}

void avm_ctl_reply(avm_ctl_req *req, avm_val body)
{
    if (req->local != NULL) {
        req->local(req->local_arg, 0, body, NULL);
        free(req);
        return;
    }
    if (!reply_begin(req))
        return;
    avm_ctl_server *s = req->s;
    avm_buf b;
    avm_buf_init(&b);
    int rv = avm_ctl_encode(&b, req->id, "ok", body);
    if (rv == 0 && b.len > s->max_frame) {
        size_t len = b.len;
        b.len = 0;
        char msg[128];
        snprintf(msg, sizeof(msg),
                 "the reply of %zu bytes exceeds the limit of %zu bytes", len,
                 s->max_frame);
        encode_error(&b, req->id, AVM_ETOOBIG, msg);
    } else if (rv != 0) {
        avm_buf_free(&b);
        avm_buf_init(&b);
        char msg[128];
        snprintf(msg, sizeof(msg), "the reply cannot be encoded: %s", avm_strerror(rv));
        encode_error(&b, req->id, rv, msg);
    }
    req_send(req, &b, SEND_TIMEOUT_MS);
    avm_buf_free(&b);
}

void avm_ctl_reply_error(avm_ctl_req *req, int code, const char *fmt, ...)
{
    if (req->local == NULL && !reply_begin(req))
        return;
    char small[256], *msg = small;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(small)) {
        size_t len = (size_t)n < ERR_MSG_MAX ? (size_t)n : ERR_MSG_MAX;
        char *big = malloc(len + 1);
        if (big != NULL) {
            va_start(ap, fmt);
            vsnprintf(big, len + 1, fmt, ap);
            va_end(ap);
            msg = big;
        }
    } else if (n < 0) {
        snprintf(small, sizeof(small), "%s", avm_strerror(code));
    }
    if (req->local != NULL) {
        req->local(req->local_arg, code, avm_nil(), msg);
        free(req);
    } else {
        req_send_error(req, code, msg, SEND_TIMEOUT_MS);
    }
    if (msg != small)
        free(msg);
}

bool avm_ctl_req_abandoned(const avm_ctl_req *req)
{
    if (req->local != NULL)
        return false;
    avm_ctl_server *s = req->s;
    lock(s);
    bool v = req->abandoned;
    unlock(s);
    return v;
}

/* --- Client ----------------------------------------------------------------- */

struct avm_ctl_client {
    nng_socket sock;
    /* The dialer. For tls+tcp:// it is started by the first call (client_connect),
     * so that a failed handshake is reported with its cause instead of retried in
     * the background until the call times out; other addresses dial in the
     * background from the start. */
    nng_dialer dialer;
    bool tls, connected, dial_failed, has_cert;
    /* For client_diagnose: without checking the node's certificate, and checking
     * it but not its name. */
    nng_tls_config *probe_none, *probe_noname;
    char server_name[256], ca[1024];
    uint64_t next_id;
    char *token; /* sent as "auth" (avm_ctl_client_set_token), or NULL */
    char url[];  /* the normalised address */
};

/* True for HOST:PORT with a non-empty host and a port in 1..65535. */
static bool is_host_port(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || strchr(addr, '/') != NULL)
        return false;
    const char *p = colon + 1;
    if (*p == '\0' || strlen(p) > 5)
        return false;
    long port = 0;
    for (; *p; p++) {
        if (*p < '0' || *p > '9')
            return false;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535;
}

int avm_ctl_normalize_addr(const char *addr, char *url, size_t len, char *errmsg,
                           size_t errlen)
{
    const char *prefix = "";
    if (addr == NULL || addr[0] == '\0')
        return avm__failf(errmsg, errlen, AVM_EINVAL, "no node address given");
    if (strstr(addr, "://") != NULL)
        prefix = "";
    else if (addr[0] == '/' || addr[0] == '.')
        prefix = "ipc://";
    else if (is_host_port(addr))
        prefix = "tcp://";
    else
        return avm__failf(
            errmsg, errlen, AVM_EINVAL,
            "node address \"%s\" is not an nng URL (ipc://PATH, tcp://HOST:PORT, "
            "tls+tcp://HOST:PORT), "
            "HOST:PORT or a socket path",
            addr);
    int n = snprintf(url, len, "%s%s", prefix, addr);
    if (n < 0 || (size_t)n >= len)
        return avm__failf(errmsg, errlen, AVM_EINVAL,
                          "node address \"%.64s...\" is too long", addr);
    return 0;
}

static void client_free_tls(avm_ctl_client *c)
{
    if (c->probe_none != NULL)
        nng_tls_config_free(c->probe_none);
    if (c->probe_noname != NULL)
        nng_tls_config_free(c->probe_noname);
    c->probe_none = c->probe_noname = NULL;
}

/* The host of a tls+tcp://HOST:PORT URL in buf (without IPv6 brackets). */
static int url_host(const char *url, char *buf, size_t len, char *errmsg, size_t errlen)
{
    const char *h = strstr(url, "://") + 3;
    const char *end = strrchr(h, ':');
    if (end == NULL || end == h)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s has no HOST:PORT", url);
    if (h[0] == '[' && end[-1] == ']') {
        h++;
        end--;
    }
    size_t n = (size_t)(end - h);
    if (n == 0 || n >= len)
        return avm__failf(errmsg, errlen, AVM_EINVAL, "%s has no usable host", url);
    memcpy(buf, h, n);
    buf[n] = '\0';
    return 0;
}

int avm_ctl_client_open(const char *addr, avm_ctl_client **out, char *errmsg,
                        size_t errlen)
{
    return avm_ctl_client_open_tls(addr, NULL, out, errmsg, errlen);
}

int avm_ctl_client_open_tls(const char *addr, const avm_ctl_tls *tls,
                            avm_ctl_client **out, char *errmsg, size_t errlen)
{
    *out = NULL;
    size_t cap = (addr ? strlen(addr) : 0) + sizeof("ipc://");
    avm_ctl_client *c = malloc(sizeof(*c) + cap);
    if (c == NULL)
        return avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    c->next_id = 0;
    c->token = NULL;
    c->tls = c->connected = c->dial_failed = c->has_cert = false;
    c->probe_none = c->probe_noname = NULL;
    nng_tls_config *tcfg = NULL;
    int rv = avm_ctl_normalize_addr(addr, c->url, cap, errmsg, errlen);
    if (rv != 0)
        goto err_free;
    if (avm_ctl_url_is_tls(c->url)) {
        char host[256], terr[512];
        if (tls == NULL) {
            rv = avm__failf(errmsg, errlen, AVM_EINVAL,
                            "%s needs TLS files: at least the CA that signed the "
                            "node's certificate, and this client's certificate and key",
                            c->url);
            goto err_free;
        }
        if ((rv = url_host(c->url, host, sizeof(host), errmsg, errlen)) != 0)
            goto err_free;
        const char *name = tls->server_name != NULL && tls->server_name[0] != '\0'
                               ? tls->server_name
                               : host;
        if ((rv = tls_config_make(tls, NNG_TLS_MODE_CLIENT, NNG_TLS_AUTH_MODE_REQUIRED,
                                  name, &tcfg, terr, sizeof(terr))) != 0) {
            rv = avm__failf(errmsg, errlen, rv, "%s: %s", c->url, terr);
            goto err_free;
        }
        /* For the diagnosis of a failed handshake (client_diagnose); the files
         * loaded once already. */
        if ((rv = tls_config_make(tls, NNG_TLS_MODE_CLIENT, NNG_TLS_AUTH_MODE_NONE, NULL,
                                  &c->probe_none, terr, sizeof(terr))) != 0 ||
            (rv = tls_config_make(tls, NNG_TLS_MODE_CLIENT, NNG_TLS_AUTH_MODE_REQUIRED,
                                  NULL, &c->probe_noname, terr, sizeof(terr))) != 0) {
            rv = avm__failf(errmsg, errlen, rv, "%s: %s", c->url, terr);
            goto err_free;
        }
        c->has_cert = tls->cert != NULL && tls->cert[0] != '\0';
        snprintf(c->server_name, sizeof(c->server_name), "%s", name);
        snprintf(c->ca, sizeof(c->ca), "%s", tls->ca);
        c->tls = true;
    }
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot open a socket for", c->url);
        goto err_free;
    }
    /* No resend: an operation such as run must not happen twice because a
     * connection dropped; the caller sees the failure instead. */
    if ((rv = nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ,
                                  AVM_CTL_MAX_FRAME + ROUTING_SLACK)) != 0 ||
        (rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME,
                                NNG_DURATION_INFINITE)) != 0) {
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot set up a socket for", c->url);
        goto err_close;
    }
    if (c->tls) {
        /* Started by the first call (client_connect). */
        if ((rv = nng_dialer_create(&c->dialer, c->sock, c->url)) != 0 ||
            (rv = nng_dialer_set_ptr(c->dialer, NNG_OPT_TLS_CONFIG, tcfg)) != 0) {
            rv = avm__nng_fail(errmsg, errlen, rv, "cannot connect to", c->url);
            goto err_close;
        }
        nng_tls_config_free(tcfg); /* the dialer holds it */
        tcfg = NULL;
    } else if ((rv = nng_dial(c->sock, c->url, &c->dialer, NNG_FLAG_NONBLOCK)) != 0) {
        /* Non-blocking: the dialer connects (and reconnects) in the background, so
         * that a missing node shows as a call's timeout rather than a hang here. */
        rv = avm__nng_fail(errmsg, errlen, rv, "cannot connect to", c->url);
        goto err_close;
    }
    *out = c;
    return 0;

err_close:
    nng_close(c->sock);
err_free:
    if (tcfg != NULL)
        nng_tls_config_free(tcfg);
    client_free_tls(c);
    free(c);
    return rv;
}

/* The first connection of a tls+tcp:// client: a synchronous dial (which reports
 * why it failed, where a background one would retry) on a thread, so that the
 * caller's deadline bounds it (a peer that does not answer the handshake, a TCP
 * connection that hangs). */
typedef struct dial_job {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    nng_dialer d;
    bool done;
    int rv;
} dial_job;

static void *dial_thread(void *arg)
{
    dial_job *j = arg;
    int rv = nng_dialer_start(j->d, 0);
    pthread_mutex_lock(&j->mu);
    j->rv = rv;
    j->done = true;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    return NULL;
}

static int dial_fail(const avm_ctl_client *c, int rv, char *errmsg, size_t errlen)
{
    const char *why;
    switch (rv) {
    case NNG_ECRYPTO:
    case NNG_EPEERAUTH:
        why = "the TLS handshake failed: the node refused this client's certificate "
              "(or this client has none: give --tls-cert and --tls-key), or the "
              "node's certificate is not signed by the CA given with --tls-ca or does "
              "not name the host (--tls-server-name)";
        break;
    case NNG_ECONNREFUSED:
        why = "connection refused (is avmd running, with this tls+tcp:// control "
              "address?)";
        break;
    case NNG_ECONNSHUT:
    case NNG_ECONNRESET:
    case NNG_ECLOSED:
        why = "the node closed the connection during the TLS handshake (it refused "
              "this client's certificate, or this is not a tls+tcp:// endpoint)";
        break;
    case NNG_EPROTO:
        why = "the peer is not an avm control endpoint (protocol mismatch)";
        break;
    case NNG_ETIMEDOUT:
        why = "the handshake did not finish in time";
        break;
    default:
        why = nng_strerror(rv);
        break;
    }
    return avm__failf(errmsg, errlen, AVM_EIO, "cannot connect to %s: %s (nng: %s)",
                      c->url, why, nng_strerror(rv));
}

/* Starts dialer d synchronously, for at most timeout_ms: nng's result, or
 * NNG_ETIMEDOUT after closing d (the dial ends then). */
static int dial_bounded(nng_dialer d, int timeout_ms)
{
    dial_job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NNG_ENOMEM;
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->d = d;
    pthread_t th;
    if (pthread_create(&th, NULL, dial_thread, j) != 0) {
        pthread_cond_destroy(&j->cv);
        pthread_mutex_destroy(&j->mu);
        free(j);
        return NNG_ENOMEM;
    }
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&j->mu);
    while (!j->done)
        if (pthread_cond_timedwait(&j->cv, &j->mu, &until) == ETIMEDOUT)
            break;
    bool done = j->done;
    int rv = j->rv;
    pthread_mutex_unlock(&j->mu);
    if (!done)
        nng_dialer_close(d); /* ends the dial: the thread returns */
    pthread_join(th, NULL);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
    return done ? rv : NNG_ETIMEDOUT;
}

/* Dials the client's URL on a socket of its own with cfg, for at most
 * timeout_ms, and closes it at once (nothing is sent): nng's result. */
static int probe_dial(const avm_ctl_client *c, nng_tls_config *cfg, int timeout_ms)
{
    nng_socket sock;
    nng_dialer d;
    int rv = nng_req0_open(&sock);
    if (rv != 0)
        return rv;
    if ((rv = nng_dialer_create(&d, sock, c->url)) == 0 &&
        (rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) == 0)
        rv = dial_bounded(d, timeout_ms);
    nng_close(sock);
    return rv;
}

/* Why the handshake failed (NNG_ECRYPTO and NNG_EPEERAUTH say nothing of it): a
 * dial that does not check the node's certificate tells whether the node refuses
 * this client; one that checks the certificate but not its name, whether the CA
 * or the name is wrong. Neither sends anything. NULL when it cannot be told. */
static const char *client_diagnose(const avm_ctl_client *c, int timeout_ms, char *buf,
                                   size_t len)
{
    int rv = probe_dial(c, c->probe_none, timeout_ms);
    if (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH || rv == NNG_ECONNSHUT ||
        rv == NNG_ECONNRESET || rv == NNG_ECLOSED) {
        /* A TLS alert is a TLS endpoint's refusal; a closed connection may also
         * be an endpoint that does not speak TLS. */
        const char *or_not = rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH
                                 ? ""
                                 : ", or the address is not a tls+tcp:// endpoint";
        if (!c->has_cert)
            snprintf(buf, len,
                     "the node requires a client certificate: give --tls-cert and "
                     "--tls-key (or $AVM_TLS_CERT, $AVM_TLS_KEY)%s",
                     or_not);
        else
            snprintf(buf, len,
                     "the node refused this client's certificate (it must be signed by "
                     "the CA of the node's --control-tls-ca)%s",
                     or_not);
        return buf;
    }
    if (rv != 0)
        return NULL;
    rv = probe_dial(c, c->probe_noname, timeout_ms);
    if (rv == 0) {
        bool ip = strspn(c->server_name, "0123456789.") == strlen(c->server_name) ||
                  strchr(c->server_name, ':') != NULL;
        snprintf(buf, len, "the node's certificate does not carry the name %s%s",
                 c->server_name,
                 ip ? " (mbedTLS 2.28 does not match IP addresses against certificates: "
                      "connect by a DNS name in the certificate, or give "
                      "--tls-server-name NAME)"
                    : " (give the name it carries with --tls-server-name)");
        return buf;
    }
    if (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH) {
        snprintf(buf, len, "the node's certificate is not signed by the CA in %.400s",
                 c->ca);
        return buf;
    }
    return NULL;
}

static int client_connect(avm_ctl_client *c, int timeout_ms, char *errmsg, size_t errlen)
{
    if (c->dial_failed)
        return avm__failf(errmsg, errlen, AVM_EIO,
                          "cannot connect to %s: an earlier attempt failed", c->url);
    int64_t start = now_ms();
    int rv = dial_bounded(c->dialer, timeout_ms);
    if (rv == NNG_ETIMEDOUT) {
        c->dial_failed = true; /* the dialer is closed */
        return avm__failf(errmsg, errlen, AVM_EIO,
                          "no answer from %s within %d ms (is avmd running? no TLS "
                          "connection could be made)",
                          c->url, timeout_ms);
    }
    if (rv == NNG_ECRYPTO || rv == NNG_EPEERAUTH || rv == NNG_ECONNSHUT ||
        rv == NNG_ECONNRESET) {
        char why[1400];
        int64_t left = timeout_ms - (now_ms() - start);
        const char *w = left > 0 ? client_diagnose(c, (int)left, why, sizeof(why)) : NULL;
        if (w != NULL)
            return avm__failf(errmsg, errlen, AVM_EIO,
                              "cannot connect to %s: TLS handshake failed: %s", c->url,
                              w);
    }
    if (rv != 0)
        return dial_fail(c, rv, errmsg, errlen);
    c->connected = true;
    return 0;
}

const char *avm_ctl_client_url(const avm_ctl_client *c)
{
    return c->url;
}

void avm_ctl_client_close(avm_ctl_client *c)
{
    if (c == NULL)
        return;
    nng_close(c->sock);
    client_free_tls(c);
    if (c->token != NULL) {
        volatile char *p = c->token;
        for (size_t i = 0; p[i] != '\0'; i++)
            p[i] = 0;
    }
    free(c->token);
    free(c);
}

int avm_ctl_client_set_token(avm_ctl_client *c, const char *token)
{
    char *t = NULL;
    if (token != NULL && (t = strdup(token)) == NULL)
        return AVM_ENOMEM;
    free(c->token);
    c->token = t;
    return 0;
}

/* How many connections the client's dialer made that the peer closed, reset or
 * failed in the handshake (from nng's statistics; 0 when they cannot be read). */
static uint64_t dialer_failed_handshakes(const avm_ctl_client *c)
{
    nng_stat *all;
    uint64_t n = 0, id = (uint64_t)nng_dialer_id(c->dialer);
    if (nng_dialer_id(c->dialer) <= 0 || nng_stats_get(&all) != 0)
        return 0;
    for (nng_stat *st = nng_stat_child(all); st != NULL; st = nng_stat_next(st)) {
        if (nng_stat_type(st) != NNG_STAT_SCOPE ||
            strcmp(nng_stat_name(st), "dialer") != 0)
            continue;
        nng_stat *sid = nng_stat_find(st, "id");
        if (sid == NULL || nng_stat_value(sid) != id)
            continue;
        static const char *const names[] = {"disconnect", "proto", "auth", "other"};
        for (size_t k = 0; k < 4; k++) {
            nng_stat *v = nng_stat_find(st, names[k]);
            n += v != NULL ? nng_stat_value(v) : 0;
        }
    }
    nng_stats_free(all);
    return n;
}

static int call_fail(const avm_ctl_client *c, int rv, int timeout_ms, char *errmsg,
                     size_t errlen)
{
    if (rv == NNG_ETIMEDOUT && !c->tls && strncmp(c->url, "tcp://", 6) == 0 &&
        dialer_failed_handshakes(c) > 0)
        return avm__failf(errmsg, errlen, AVM_EIO,
                          "no answer from %s within %d ms: something listens there but "
                          "closes every connection during the handshake (a tls+tcp:// "
                          "control endpoint? then connect with tls+tcp://)",
                          c->url, timeout_ms);
    if (rv == NNG_ETIMEDOUT)
        return avm__failf(errmsg, errlen, AVM_EIO,
                          "no answer from %s within %d ms (is avmd running?)", c->url,
                          timeout_ms);
    if (rv == NNG_ECONNRESET || rv == NNG_ECLOSED)
        return avm__failf(
            errmsg, errlen, AVM_EIO,
            "the connection to %s closed before the reply (the node stopped, "
            "or dropped the connection: for a frame over its size limit, say)",
            c->url);
    return avm__nng_fail(errmsg, errlen, rv, "cannot talk to", c->url);
}

/* Turns an error reply's body into its code and message. */
static int remote_error(const avm_ctl_client *c, avm_val body, char *errmsg,
                        size_t errlen)
{
    avm_val code = avm_ctl_get(body, "code"), msg = avm_ctl_get(body, "message");
    const char *text = msg.kind == AVM_STR ? msg.u.s->data : NULL;
    int rv = code.kind == AVM_STR ? avm_err_from_name(code.u.s->data, code.u.s->len) : -1;
    if (rv <= 0) {
        /* A code this client does not know (a newer node): keep its name. */
        return avm__failf(errmsg, errlen, AVM_EIO, "%s answered with error %s: %s",
                          c->url, code.kind == AVM_STR ? code.u.s->data : "(no code)",
                          text ? text : "(no message)");
    }
    return avm__failf(errmsg, errlen, rv, "%s", text ? text : avm_strerror(rv));
}

int avm_ctl_call(avm_ctl_client *c, const char *op, avm_val body, int timeout_ms,
                 avm_val *reply, char *errmsg, size_t errlen)
{
    *reply = avm_nil();
    if (timeout_ms <= 0)
        timeout_ms = CLIENT_DEFAULT_TIMEOUT_MS;
    uint64_t id = ++c->next_id;

    avm_buf b;
    avm_buf_init(&b);
    avm_val sent = avm_nil();
    int rv = 0;
    if (c->token != NULL) {
        avm_val tv;
        rv = avm_cstr(AVM_STR, c->token, &tv);
        if (rv == 0) {
            rv = avm_ctl_body_edit(body, "auth", NULL, "auth", tv, &sent);
            avm_val_release(tv);
        }
        if (rv != 0)
            return avm__failf(errmsg, errlen, rv, "out of memory");
        body = sent;
    }
    rv = avm_ctl_encode(&b, id, op, body);
    avm_val_release(sent);
    if (rv == AVM_EINVAL)
        rv = avm__failf(errmsg, errlen, rv, "op \"%.64s\" is longer than %zu bytes", op,
                        OP_MAX);
    else if (rv != 0)
        rv = avm__failf(errmsg, errlen, rv, "cannot encode the request: %s",
                        avm_strerror(rv));
    else if (b.len > AVM_CTL_MAX_FRAME)
        rv = avm__failf(errmsg, errlen, AVM_ETOOBIG,
                        "the request of %zu bytes exceeds the limit of %u bytes", b.len,
                        AVM_CTL_MAX_FRAME);
    nng_msg *m = NULL;
    if (rv == 0 && nng_msg_alloc(&m, b.len) != 0)
        rv = avm__failf(errmsg, errlen, AVM_ENOMEM, "out of memory");
    if (rv != 0) {
        avm_buf_free(&b);
        return rv;
    }
    memcpy(nng_msg_body(m), b.data, b.len);
    avm_buf_free(&b);

    /* One deadline for both halves: the send waits for a connection, the receive
     * for the node. */
    int64_t deadline = now_ms() + timeout_ms;
    if (c->tls && !c->connected &&
        (rv = client_connect(c, timeout_ms, errmsg, errlen)) != 0) {
        nng_msg_free(m);
        return rv;
    }
    int64_t send_left = deadline - now_ms();
    if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_SENDTIMEO,
                                send_left > 0 ? (int)send_left : 1)) != 0 ||
        (rv = nng_sendmsg(c->sock, m, 0)) != 0) {
        nng_msg_free(m);
        return call_fail(c, rv, timeout_ms, errmsg, errlen);
    }
    int64_t left = deadline - now_ms();
    if ((rv = nng_socket_set_ms(c->sock, NNG_OPT_RECVTIMEO, left > 0 ? (int)left : 1)) !=
            0 ||
        (rv = nng_recvmsg(c->sock, &m, 0)) != 0)
        return call_fail(c, rv, timeout_ms, errmsg, errlen);

    avm_ctl_frame f;
    char emsg[256];
    rv = avm_ctl_decode(nng_msg_body(m), nng_msg_len(m), &f, emsg, sizeof(emsg));
    nng_msg_free(m);
    if (rv != 0)
        return avm__failf(errmsg, errlen, rv, "bad reply from %s: %s", c->url, emsg);
    /* An error reply with id 0 answers a request whose id the node could not read:
     * req0 delivers only the reply to this request, so it is ours. */
    if (f.id != id && !(f.id == 0 && strcmp(f.word, "error") == 0)) {
        avm_val_release(f.body);
        return avm__failf(errmsg, errlen, AVM_EMALFORMED,
                          "bad reply from %s: id %llu answers no request (expected %llu)",
                          c->url, (unsigned long long)f.id, (unsigned long long)id);
    }
    if (strcmp(f.word, "ok") == 0) {
        *reply = f.body;
        return 0;
    }
    if (strcmp(f.word, "error") == 0)
        rv = remote_error(c, f.body, errmsg, errlen);
    else
        rv =
            avm__failf(errmsg, errlen, AVM_EMALFORMED,
                       "bad reply from %s: status \"%s\" is neither \"ok\" nor \"error\"",
                       c->url, f.word);
    avm_val_release(f.body);
    return rv;
}
