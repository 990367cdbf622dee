/* Frames between Raft hosts: a group name and one raft message in a compact binary
 * format of our own (see docs/protocol.md). Integers are fixed-width little-endian.
 *
 *   magic u8 (0xA7) | format version u8 (1) | group length u8 (1..63) | group bytes
 *   | message type u8 (raft_message_type, 1..6) | message version u8 | body
 *
 * The decoder is the network boundary: it reads nothing outside the given bytes,
 * checks every length against what remains before using it, and validates the whole
 * frame before allocating anything, so a malformed frame costs no allocation. */
#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "raft_host.h"

#define FRAME_MAGIC 0xA7
#define FRAME_VERSION 1
#define FRAME_MAX ((size_t)256 << 20)
#define MAX_ENTRIES (1u << 20)
#define MAX_SERVERS 64
#define MAX_ADDRESS 255

/* Wire sizes of the fixed parts. */
#define ENTRY_HEADER 13  /* term u64, type u8, len u32 */
#define SERVER_HEADER 10 /* id u64, role u8, address length u8 */

/* Encoding. */

static size_t header_size(size_t glen)
{
    return 3 + glen + 2;
}

/* The body size of m, or 0 with *rv set when m cannot be encoded. */
static size_t body_size(const struct raft_message *m, int *rv)
{
    *rv = 0;
    switch (m->type) {
    case RAFT_REQUEST_VOTE:
        return 4 * 8 + 2;
    case RAFT_REQUEST_VOTE_RESULT:
        return 8 + 2 + 2 * 2;
    case RAFT_APPEND_ENTRIES_RESULT:
        return 3 * 8 + 2 * 2;
    case RAFT_TIMEOUT_NOW:
        return 3 * 8;
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        if (a->n_entries > MAX_ENTRIES || (a->n_entries > 0 && a->entries == NULL))
            goto invalid;
        size_t n = 4 * 8 + 4;
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            if (e->type < RAFT_COMMAND || e->type > RAFT_CHANGE ||
                (e->buf.len > 0 && e->buf.base == NULL))
                goto invalid;
            /* n <= FRAME_MAX holds throughout, so nothing here can wrap. */
            if (e->buf.len > FRAME_MAX || ENTRY_HEADER + e->buf.len > FRAME_MAX - n) {
                *rv = AVM_ETOOBIG;
                return 0;
            }
            n += ENTRY_HEADER + e->buf.len;
        }
        return n;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *s = &m->install_snapshot;
        if (s->conf.n == 0 || s->conf.n > MAX_SERVERS || s->conf.servers == NULL)
            goto invalid;
        size_t n = 4 * 8 + 4 + 8;
        for (unsigned i = 0; i < s->conf.n; i++) {
            const struct raft_server *v = &s->conf.servers[i];
            size_t alen = v->address != NULL ? strlen(v->address) : 0;
            if (v->id == 0 || v->role < RAFT_STANDBY || v->role > RAFT_SPARE ||
                alen == 0 || alen > MAX_ADDRESS)
                goto invalid;
            n += SERVER_HEADER + alen;
        }
        if (s->data.len > 0 && s->data.base == NULL)
            goto invalid;
        if (s->data.len > FRAME_MAX - n) {
            *rv = AVM_ETOOBIG;
            return 0;
        }
        return n + s->data.len;
    }
    }
invalid:
    *rv = AVM_EINVAL;
    return 0;
}

static void put(uint8_t **w, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        (*w)[i] = (uint8_t)(v >> (8 * i));
    *w += width;
}

static void put_bytes(uint8_t **w, const void *p, size_t n)
{
    if (n > 0)
        memcpy(*w, p, n);
    *w += n;
}

static void put_body(uint8_t **w, const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_REQUEST_VOTE: {
        const struct raft_request_vote *v = &m->request_vote;
        put(w, v->term, 8);
        put(w, v->candidate_id, 8);
        put(w, v->last_log_index, 8);
        put(w, v->last_log_term, 8);
        put(w, v->disrupt_leader ? 1 : 0, 1);
        put(w, v->pre_vote ? 1 : 0, 1);
        break;
    }
    case RAFT_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *v = &m->request_vote_result;
        put(w, v->term, 8);
        put(w, v->vote_granted ? 1 : 0, 1);
        put(w, v->pre_vote ? 1 : 0, 1);
        put(w, v->features, 2);
        put(w, v->capacity, 2);
        break;
    }
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *a = &m->append_entries;
        put(w, a->term, 8);
        put(w, a->prev_log_index, 8);
        put(w, a->prev_log_term, 8);
        put(w, a->leader_commit, 8);
        put(w, a->n_entries, 4);
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            put(w, e->term, 8);
            put(w, (uint64_t)e->type, 1);
            put(w, e->buf.len, 4);
            put_bytes(w, e->buf.base, e->buf.len);
        }
        break;
    }
    case RAFT_APPEND_ENTRIES_RESULT: {
        const struct raft_append_entries_result *r = &m->append_entries_result;
        put(w, r->term, 8);
        put(w, r->rejected, 8);
        put(w, r->last_log_index, 8);
        put(w, r->features, 2);
        put(w, r->capacity, 2);
        break;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *s = &m->install_snapshot;
        put(w, s->term, 8);
        put(w, s->last_index, 8);
        put(w, s->last_term, 8);
        put(w, s->conf_index, 8);
        put(w, s->conf.n, 4);
        for (unsigned i = 0; i < s->conf.n; i++) {
            const struct raft_server *v = &s->conf.servers[i];
            size_t alen = strlen(v->address);
            put(w, v->id, 8);
            put(w, (uint64_t)v->role, 1);
            put(w, alen, 1);
            put_bytes(w, v->address, alen);
        }
        put(w, s->data.len, 8);
        put_bytes(w, s->data.base, s->data.len);
        break;
    }
    case RAFT_TIMEOUT_NOW: {
        const struct raft_timeout_now *t = &m->timeout_now;
        put(w, t->term, 8);
        put(w, t->last_log_index, 8);
        put(w, t->last_log_term, 8);
        break;
    }
    }
}

/* The version byte of m's type (every message struct has one). */
static unsigned char message_version(const struct raft_message *m)
{
    switch (m->type) {
    case RAFT_REQUEST_VOTE:
        return m->request_vote.version;
    case RAFT_REQUEST_VOTE_RESULT:
        return m->request_vote_result.version;
    case RAFT_APPEND_ENTRIES:
        return m->append_entries.version;
    case RAFT_APPEND_ENTRIES_RESULT:
        return m->append_entries_result.version;
    case RAFT_INSTALL_SNAPSHOT:
        return m->install_snapshot.version;
    case RAFT_TIMEOUT_NOW:
        return m->timeout_now.version;
    }
    return 0;
}

/* AVM_EINVAL when the group name or the message is outside what the format carries
 * (see the limits above), AVM_ETOOBIG beyond FRAME_MAX, AVM_ENOMEM. */
int avm_rframe_encode(const char *group, const struct raft_message *m, uint8_t **out,
                      size_t *len)
{
    size_t glen = group != NULL ? strlen(group) : 0;
    if (glen == 0 || glen >= AVM_RHOST_NAME_MAX)
        return AVM_EINVAL;
    int rv;
    size_t body = body_size(m, &rv);
    if (rv != 0)
        return rv;
    size_t n = header_size(glen) + body;
    if (n > FRAME_MAX)
        return AVM_ETOOBIG;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return AVM_ENOMEM;

    uint8_t *w = buf;
    put(&w, FRAME_MAGIC, 1);
    put(&w, FRAME_VERSION, 1);
    put(&w, glen, 1);
    put_bytes(&w, group, glen);
    put(&w, (uint64_t)m->type, 1);
    put(&w, message_version(m), 1);
    put_body(&w, m);
    assert(w == buf + n);
    *out = buf;
    *len = n;
    return 0;
}

/* Decoding. */

typedef struct reader {
    const uint8_t *p, *end;
    char *errmsg;
    size_t errlen;
} reader;

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static int
bad(reader *r, const char *fmt, ...)
{
    if (r->errmsg != NULL && r->errlen > 0) {
        int k = snprintf(r->errmsg, r->errlen, "raft frame: ");
        if (k > 0 && (size_t)k < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->errmsg + k, r->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    return AVM_EMALFORMED;
}

static size_t remaining(const reader *r)
{
    return (size_t)(r->end - r->p);
}

/* The next width bytes as a little-endian integer, or false (and 0) when fewer
 * remain. */
static bool take(reader *r, unsigned width, uint64_t *v)
{
    *v = 0;
    if (remaining(r) < width)
        return false;
    uint64_t x = 0;
    for (unsigned i = 0; i < width; i++)
        x |= (uint64_t)r->p[i] << (8 * i);
    r->p += width;
    *v = x;
    return true;
}

/* Fixed-width fields of a message named what ("request-vote"). */
static int get(reader *r, unsigned width, uint64_t *v, const char *what)
{
    return take(r, width, v) ? 0 : bad(r, "truncated %s message", what);
}

static int get_bool(reader *r, bool *v, const char *field, const char *what)
{
    uint64_t b;
    int rv = get(r, 1, &b, what);
    if (rv != 0)
        return rv;
    if (b > 1)
        return bad(r, "%s %s is %u, not 0 or 1", what, field, (unsigned)b);
    *v = b == 1;
    return 0;
}

static int finish(reader *r, const char *what)
{
    if (r->p != r->end)
        return bad(r, "trailing data (%zu bytes) after the %s message", remaining(r),
                   what);
    return 0;
}

static int nomem(reader *r)
{
    if (r->errmsg != NULL && r->errlen > 0)
        snprintf(r->errmsg, r->errlen, "raft frame: out of memory");
    return AVM_ENOMEM;
}

static int decode_request_vote(reader *r, struct raft_request_vote *v)
{
    const char *what = "request-vote";
    uint64_t term, cand, idx, lterm;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 || (rv = get(r, 8, &cand, what)) != 0 ||
        (rv = get(r, 8, &idx, what)) != 0 || (rv = get(r, 8, &lterm, what)) != 0 ||
        (rv = get_bool(r, &v->disrupt_leader, "disrupt_leader", what)) != 0 ||
        (rv = get_bool(r, &v->pre_vote, "pre_vote", what)) != 0)
        return rv;
    v->term = term;
    v->candidate_id = cand;
    v->last_log_index = idx;
    v->last_log_term = lterm;
    return finish(r, what);
}

static int decode_request_vote_result(reader *r, struct raft_request_vote_result *v)
{
    const char *what = "request-vote-result";
    uint64_t term, features, capacity;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 ||
        (rv = get_bool(r, &v->vote_granted, "vote_granted", what)) != 0 ||
        (rv = get_bool(r, &v->pre_vote, "pre_vote", what)) != 0 ||
        (rv = get(r, 2, &features, what)) != 0 || (rv = get(r, 2, &capacity, what)) != 0)
        return rv;
    v->term = term;
    v->features = (unsigned short)features;
    v->capacity = (unsigned short)capacity;
    return finish(r, what);
}

static int decode_append_entries_result(reader *r, struct raft_append_entries_result *v)
{
    const char *what = "append-entries-result";
    uint64_t term, rejected, last, features, capacity;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 || (rv = get(r, 8, &rejected, what)) != 0 ||
        (rv = get(r, 8, &last, what)) != 0 || (rv = get(r, 2, &features, what)) != 0 ||
        (rv = get(r, 2, &capacity, what)) != 0)
        return rv;
    v->term = term;
    v->rejected = rejected;
    v->last_log_index = last;
    v->features = (unsigned short)features;
    v->capacity = (unsigned short)capacity;
    return finish(r, what);
}

static int decode_timeout_now(reader *r, struct raft_timeout_now *v)
{
    const char *what = "timeout-now";
    uint64_t term, idx, lterm;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 || (rv = get(r, 8, &idx, what)) != 0 ||
        (rv = get(r, 8, &lterm, what)) != 0)
        return rv;
    v->term = term;
    v->last_log_index = idx;
    v->last_log_term = lterm;
    return finish(r, what);
}

/* Two passes over the entries: the first checks every header and length and sums
 * the data, the second (after the frame is known to be well formed) allocates the
 * array and the one batch raft expects of received entries, and copies. */
static int decode_append_entries(reader *r, struct raft_append_entries *a)
{
    const char *what = "append-entries";
    uint64_t term, prev_index, prev_term, commit, n;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 || (rv = get(r, 8, &prev_index, what)) != 0 ||
        (rv = get(r, 8, &prev_term, what)) != 0 || (rv = get(r, 8, &commit, what)) != 0 ||
        (rv = get(r, 4, &n, what)) != 0)
        return rv;
    if (n > MAX_ENTRIES)
        return bad(r, "append-entries has %llu entries, more than %u",
                   (unsigned long long)n, MAX_ENTRIES);

    const uint8_t *first = r->p;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t eterm, type, elen;
        if (!take(r, 8, &eterm) || !take(r, 1, &type) || !take(r, 4, &elen) ||
            elen > remaining(r))
            return bad(r, "truncated append-entries entry %llu", (unsigned long long)i);
        if (type < RAFT_COMMAND || type > RAFT_CHANGE)
            return bad(r, "append-entries entry %llu has type %u", (unsigned long long)i,
                       (unsigned)type);
        r->p += elen;
        total += (size_t)elen; /* bounded by the frame's length */
    }
    if ((rv = finish(r, what)) != 0)
        return rv;

    a->term = term;
    a->prev_log_index = prev_index;
    a->prev_log_term = prev_term;
    a->leader_commit = commit;
    a->entries = NULL;
    a->n_entries = 0;
    if (n == 0)
        return 0;

    struct raft_entry *entries = raft_malloc((size_t)n * sizeof(*entries));
    /* One byte at least: raft frees entries[0].batch and asserts it is not NULL. */
    uint8_t *batch = raft_malloc(total > 0 ? total : 1);
    if (entries == NULL || batch == NULL) {
        raft_free(entries);
        raft_free(batch);
        return nomem(r);
    }
    reader again = {first, r->end, NULL, 0};
    size_t off = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t eterm, type, elen;
        take(&again, 8, &eterm);
        take(&again, 1, &type);
        take(&again, 4, &elen);
        entries[i].term = eterm;
        entries[i].type = (enum raft_entry_type)type;
        entries[i].buf.base = batch + off;
        entries[i].buf.len = (size_t)elen;
        entries[i].batch = batch;
        if (elen > 0)
            memcpy(batch + off, again.p, (size_t)elen);
        again.p += elen;
        off += (size_t)elen;
    }
    assert(off == total && again.p == r->end);
    a->entries = entries;
    a->n_entries = (unsigned)n;
    return 0;
}

/* Validates the whole message (configuration, data, nothing after) before building
 * the configuration with raft's own functions and copying the data, so that
 * raft_configuration_add can only fail for memory. */
static int decode_install_snapshot(reader *r, struct raft_install_snapshot *s)
{
    const char *what = "install-snapshot";
    uint64_t term, last_index, last_term, conf_index, n, dlen;
    int rv;
    if ((rv = get(r, 8, &term, what)) != 0 || (rv = get(r, 8, &last_index, what)) != 0 ||
        (rv = get(r, 8, &last_term, what)) != 0 ||
        (rv = get(r, 8, &conf_index, what)) != 0 || (rv = get(r, 4, &n, what)) != 0)
        return rv;
    if (n == 0)
        return bad(r, "install-snapshot configuration has no servers");
    if (n > MAX_SERVERS)
        return bad(r, "install-snapshot configuration has %llu servers, more than %u",
                   (unsigned long long)n, MAX_SERVERS);

    uint64_t ids[MAX_SERVERS], roles[MAX_SERVERS], alens[MAX_SERVERS];
    const uint8_t *addrs[MAX_SERVERS];
    for (unsigned i = 0; i < n; i++) {
        if (!take(r, 8, &ids[i]) || !take(r, 1, &roles[i]) || !take(r, 1, &alens[i]) ||
            alens[i] > remaining(r))
            return bad(r, "truncated install-snapshot server %u", i);
        addrs[i] = r->p;
        r->p += alens[i];
        if (ids[i] == 0)
            return bad(r, "install-snapshot server %u has id 0", i);
        if (roles[i] > RAFT_SPARE)
            return bad(r, "install-snapshot server %u has role %u", i,
                       (unsigned)roles[i]);
        if (alens[i] == 0)
            return bad(r, "install-snapshot server %u has an empty address", i);
        if (memchr(addrs[i], '\0', alens[i]) != NULL)
            return bad(r, "install-snapshot server %u address contains a NUL byte", i);
        for (unsigned j = 0; j < i; j++) {
            if (ids[j] == ids[i])
                return bad(r, "install-snapshot servers %u and %u have the same id", j,
                           i);
            if (alens[j] == alens[i] && memcmp(addrs[j], addrs[i], alens[i]) == 0)
                return bad(r, "install-snapshot servers %u and %u have the same address",
                           j, i);
        }
    }
    if ((rv = get(r, 8, &dlen, what)) != 0)
        return rv;
    if (dlen > remaining(r))
        return bad(r, "truncated install-snapshot data");
    const uint8_t *data = r->p;
    r->p += dlen;
    if ((rv = finish(r, what)) != 0)
        return rv;

    s->term = term;
    s->last_index = last_index;
    s->last_term = last_term;
    s->conf_index = conf_index;
    raft_configuration_init(&s->conf);
    for (unsigned i = 0; i < n; i++) {
        char address[MAX_ADDRESS + 1];
        memcpy(address, addrs[i], alens[i]);
        address[alens[i]] = '\0';
        rv = raft_configuration_add(&s->conf, ids[i], address, (int)roles[i]);
        if (rv != 0) {
            assert(rv == RAFT_NOMEM);
            goto err_after_conf;
        }
    }
    s->data.len = (size_t)dlen;
    s->data.base = NULL;
    if (dlen > 0) {
        s->data.base = raft_malloc((size_t)dlen);
        if (s->data.base == NULL)
            goto err_after_conf;
        memcpy(s->data.base, data, (size_t)dlen);
    }
    return 0;

err_after_conf:
    raft_configuration_close(&s->conf);
    raft_configuration_init(&s->conf);
    return nomem(r);
}

/* Besides AVM_EMALFORMED, AVM_ENOMEM when a well-formed frame's memory cannot be
 * allocated (nothing is kept then either). *m is zeroed on any failure. */
int avm_rframe_decode(const uint8_t *p, size_t len, char *group, struct raft_message *m,
                      char *errmsg, size_t errlen)
{
    memset(m, 0, sizeof(*m));
    if (errmsg != NULL && errlen > 0)
        errmsg[0] = '\0';
    reader r = {p, p, errmsg, errlen};
    if (len == 0)
        return bad(&r, "empty frame");
    if (len > FRAME_MAX)
        return bad(&r, "frame of %zu bytes exceeds the limit of %zu", len, FRAME_MAX);
    r.end = p + len;

    uint64_t magic, version, glen, type, mversion;
    take(&r, 1, &magic);
    if (magic != FRAME_MAGIC)
        return bad(&r, "bad magic byte 0x%02x (expected 0x%02x)", (unsigned)magic,
                   FRAME_MAGIC);
    if (!take(&r, 1, &version) || !take(&r, 1, &glen))
        return bad(&r, "truncated header");
    if (version != FRAME_VERSION)
        return bad(&r, "unsupported format version %u (expected %u)", (unsigned)version,
                   FRAME_VERSION);
    if (glen == 0)
        return bad(&r, "empty group name");
    if (glen >= AVM_RHOST_NAME_MAX)
        return bad(&r, "group name too long (%u bytes, at most %u)", (unsigned)glen,
                   AVM_RHOST_NAME_MAX - 1);
    if (glen > remaining(&r))
        return bad(&r, "truncated group name");
    const uint8_t *name = r.p;
    r.p += glen;
    if (memchr(name, '\0', glen) != NULL)
        return bad(&r, "group name contains a NUL byte");
    if (!take(&r, 1, &type) || !take(&r, 1, &mversion))
        return bad(&r, "truncated header");

    int rv;
    switch (type) {
    case RAFT_REQUEST_VOTE:
        m->request_vote.version = (unsigned char)mversion;
        rv = decode_request_vote(&r, &m->request_vote);
        break;
    case RAFT_REQUEST_VOTE_RESULT:
        m->request_vote_result.version = (unsigned char)mversion;
        rv = decode_request_vote_result(&r, &m->request_vote_result);
        break;
    case RAFT_APPEND_ENTRIES:
        m->append_entries.version = (unsigned char)mversion;
        rv = decode_append_entries(&r, &m->append_entries);
        break;
    case RAFT_APPEND_ENTRIES_RESULT:
        m->append_entries_result.version = (unsigned char)mversion;
        rv = decode_append_entries_result(&r, &m->append_entries_result);
        break;
    case RAFT_INSTALL_SNAPSHOT:
        m->install_snapshot.version = (unsigned char)mversion;
        rv = decode_install_snapshot(&r, &m->install_snapshot);
        break;
    case RAFT_TIMEOUT_NOW:
        m->timeout_now.version = (unsigned char)mversion;
        rv = decode_timeout_now(&r, &m->timeout_now);
        break;
    default:
        return bad(&r, "unknown message type %u", (unsigned)type);
    }
    if (rv != 0) {
        memset(m, 0, sizeof(*m));
        return rv;
    }
    m->type = (enum raft_message_type)type;
    m->server_id = 0;
    m->server_address = NULL;
    memcpy(group, name, glen);
    group[glen] = '\0';
    return 0;
}

void avm_rframe_free(struct raft_message *m)
{
    switch (m->type) {
    case RAFT_APPEND_ENTRIES: {
        struct raft_append_entries *a = &m->append_entries;
        if (a->entries != NULL) {
            if (a->n_entries > 0)
                raft_free(a->entries[0].batch);
            raft_free(a->entries);
        }
        a->entries = NULL;
        a->n_entries = 0;
        break;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        struct raft_install_snapshot *s = &m->install_snapshot;
        raft_free(s->data.base);
        s->data.base = NULL;
        s->data.len = 0;
        raft_configuration_close(&s->conf);
        raft_configuration_init(&s->conf);
        break;
    }
    default:
        break;
    }
}
