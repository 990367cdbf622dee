/* The raft frame codec (consensus/raft_frame.c): round trips of every message type,
 * the memory layout raft expects of a received message, and refusal of every
 * truncation, of random corruptions and of each kind of bad input, with a message
 * naming the cause and nothing allocated. Leaks and out-of-bounds reads are caught
 * by running this under AddressSanitizer. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "avm_err.h"
#include "raft_host.h"
#include "test.h"

/* xorshift64*: deterministic across platforms. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

/* Messages with every field set (values with high bytes set, so that a field
 * written narrower than it is shows). */

static struct raft_message request_vote(bool flags)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_REQUEST_VOTE;
    m.server_id = 42;
    m.server_address = "sender";
    m.request_vote.version = 2;
    m.request_vote.term = 0x8102030405060708ull;
    m.request_vote.candidate_id = 0xfedcba9876543210ull;
    m.request_vote.last_log_index = 0x1122334455667788ull;
    m.request_vote.last_log_term = 0x8877665544332211ull;
    m.request_vote.disrupt_leader = flags;
    m.request_vote.pre_vote = !flags;
    return m;
}

static struct raft_message request_vote_result(bool flags)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_REQUEST_VOTE_RESULT;
    m.request_vote_result.version = 0xfe;
    m.request_vote_result.term = UINT64_MAX - 1;
    m.request_vote_result.vote_granted = flags;
    m.request_vote_result.pre_vote = !flags;
    m.request_vote_result.features = 0x8001;
    m.request_vote_result.capacity = 0xfffe;
    return m;
}

static struct raft_message append_entries_result(void)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES_RESULT;
    m.append_entries_result.version = 2;
    m.append_entries_result.term = 0x0a0b0c0d0e0f1011ull;
    m.append_entries_result.rejected = 0xa1b2c3d4e5f60718ull;
    m.append_entries_result.last_log_index = UINT64_MAX;
    m.append_entries_result.features = 0x1234;
    m.append_entries_result.capacity = 0xabcd;
    return m;
}

static struct raft_message timeout_now(void)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_TIMEOUT_NOW;
    m.timeout_now.version = 7;
    m.timeout_now.term = 0x0102030405060708ull;
    m.timeout_now.last_log_index = 0x1020304050607080ull;
    m.timeout_now.last_log_term = 0xf0e0d0c0b0a09080ull;
    return m;
}

/* Append-entries with n entries of the given lengths (lens NULL: random lengths
 * below 64), data filled with a pattern; the caller frees entries[i].buf.base and
 * the array (free_sent_entries). */
static struct raft_message append_entries(unsigned n, const size_t *lens)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES;
    m.append_entries.version = 3;
    m.append_entries.term = 0x8000000000000001ull;
    m.append_entries.prev_log_index = 0x7fffffffffffffffull;
    m.append_entries.prev_log_term = 0x0123456789abcdefull;
    m.append_entries.leader_commit = 0xfedcba9876543210ull;
    m.append_entries.n_entries = n;
    m.append_entries.entries = n > 0 ? xmalloc(n * sizeof(struct raft_entry)) : NULL;
    for (unsigned i = 0; i < n; i++) {
        struct raft_entry *e = &m.append_entries.entries[i];
        e->term = 0xff00000000000000ull + i;
        e->type = (enum raft_entry_type)(RAFT_COMMAND + i % 3);
        e->buf.len = lens != NULL ? lens[i] : (size_t)(rnd() % 64);
        e->buf.base = e->buf.len > 0 ? xmalloc(e->buf.len) : NULL;
        for (size_t j = 0; j < e->buf.len; j++)
            ((uint8_t *)e->buf.base)[j] = (uint8_t)(i * 31 + j);
        e->batch = NULL;
    }
    return m;
}

static void free_sent_entries(struct raft_message *m)
{
    for (unsigned i = 0; i < m->append_entries.n_entries; i++)
        free(m->append_entries.entries[i].buf.base);
    free(m->append_entries.entries);
}

/* Install-snapshot with n servers and len bytes of data; the caller frees it with
 * free_sent_snapshot. */
static struct raft_message install_snapshot(unsigned n, size_t len)
{
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_INSTALL_SNAPSHOT;
    m.install_snapshot.version = 1;
    m.install_snapshot.term = 0x0807060504030201ull;
    m.install_snapshot.last_index = 0xa0a0a0a0b0b0b0b0ull;
    m.install_snapshot.last_term = 0x0c0c0c0c0d0d0d0dull;
    m.install_snapshot.conf_index = 0x9999999988888888ull;
    raft_configuration_init(&m.install_snapshot.conf);
    for (unsigned i = 0; i < n; i++) {
        /* Unique addresses of lengths 1, 255 and in between. */
        char address[256];
        size_t alen = i == 0 ? 1 : i == 1 ? 255 : 4 + (i * 37) % 252;
        snprintf(address, sizeof(address), "%03u", i);
        if (alen > 3)
            memset(address + 3, 'a' + (int)(i % 26), alen - 3);
        address[alen] = '\0';
        if (raft_configuration_add(&m.install_snapshot.conf, 0xabc0000000000000ull + i,
                                   address, (int)(i % 3)) != 0)
            abort();
    }
    m.install_snapshot.data.len = len;
    m.install_snapshot.data.base = len > 0 ? xmalloc(len) : NULL;
    for (size_t j = 0; j < len; j++)
        ((uint8_t *)m.install_snapshot.data.base)[j] = (uint8_t)(j * 7 + 3);
    return m;
}

static void free_sent_snapshot(struct raft_message *m)
{
    raft_configuration_close(&m->install_snapshot.conf);
    free(m->install_snapshot.data.base);
}

/* Field-by-field equality of a sent and a decoded message. */
static bool same_message(const struct raft_message *a, const struct raft_message *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case RAFT_REQUEST_VOTE: {
        const struct raft_request_vote *x = &a->request_vote, *y = &b->request_vote;
        return x->version == y->version && x->term == y->term &&
               x->candidate_id == y->candidate_id &&
               x->last_log_index == y->last_log_index &&
               x->last_log_term == y->last_log_term &&
               x->disrupt_leader == y->disrupt_leader && x->pre_vote == y->pre_vote;
    }
    case RAFT_REQUEST_VOTE_RESULT: {
        const struct raft_request_vote_result *x = &a->request_vote_result,
                                              *y = &b->request_vote_result;
        return x->version == y->version && x->term == y->term &&
               x->vote_granted == y->vote_granted && x->pre_vote == y->pre_vote &&
               x->features == y->features && x->capacity == y->capacity;
    }
    case RAFT_APPEND_ENTRIES: {
        const struct raft_append_entries *x = &a->append_entries, *y = &b->append_entries;
        if (x->version != y->version || x->term != y->term ||
            x->prev_log_index != y->prev_log_index ||
            x->prev_log_term != y->prev_log_term ||
            x->leader_commit != y->leader_commit || x->n_entries != y->n_entries)
            return false;
        for (unsigned i = 0; i < x->n_entries; i++) {
            const struct raft_entry *e = &x->entries[i], *f = &y->entries[i];
            if (e->term != f->term || e->type != f->type || e->buf.len != f->buf.len ||
                (e->buf.len > 0 && memcmp(e->buf.base, f->buf.base, e->buf.len) != 0))
                return false;
        }
        return true;
    }
    case RAFT_APPEND_ENTRIES_RESULT: {
        const struct raft_append_entries_result *x = &a->append_entries_result,
                                                *y = &b->append_entries_result;
        return x->version == y->version && x->term == y->term &&
               x->rejected == y->rejected && x->last_log_index == y->last_log_index &&
               x->features == y->features && x->capacity == y->capacity;
    }
    case RAFT_INSTALL_SNAPSHOT: {
        const struct raft_install_snapshot *x = &a->install_snapshot,
                                           *y = &b->install_snapshot;
        if (x->version != y->version || x->term != y->term ||
            x->last_index != y->last_index || x->last_term != y->last_term ||
            x->conf_index != y->conf_index || x->conf.n != y->conf.n ||
            x->data.len != y->data.len ||
            (x->data.len > 0 && memcmp(x->data.base, y->data.base, x->data.len) != 0))
            return false;
        for (unsigned i = 0; i < x->conf.n; i++) {
            const struct raft_server *s = &x->conf.servers[i], *t = &y->conf.servers[i];
            if (s->id != t->id || s->role != t->role ||
                strcmp(s->address, t->address) != 0)
                return false;
        }
        return true;
    }
    case RAFT_TIMEOUT_NOW: {
        const struct raft_timeout_now *x = &a->timeout_now, *y = &b->timeout_now;
        return x->version == y->version && x->term == y->term &&
               x->last_log_index == y->last_log_index &&
               x->last_log_term == y->last_log_term;
    }
    }
    return false;
}

/* Decodes p[0..n) from an exactly sized copy, so that AddressSanitizer sees a read
 * past the end. */
static int decode_exact(const uint8_t *p, size_t n, char *group, struct raft_message *m,
                        char *errmsg, size_t errlen)
{
    uint8_t *copy = xmalloc(n);
    if (n > 0)
        memcpy(copy, p, n);
    int rv = avm_rframe_decode(copy, n, group, m, errmsg, errlen);
    free(copy);
    return rv;
}

/* Every proper prefix of a valid frame is refused with a message. Frames up to 4 KiB
 * are decoded from exact copies; longer ones in place (their prefixes cost no
 * copy, which keeps the test linear in the frame's entries). Returns the number of
 * prefixes not refused properly. */
static size_t bad_prefixes(const uint8_t *f, size_t n)
{
    size_t wrong = 0;
    for (size_t k = 0; k < n; k++) {
        char group[AVM_RHOST_NAME_MAX], msg[160];
        struct raft_message d;
        msg[0] = '\0';
        int rv = n <= 4096 ? decode_exact(f, k, group, &d, msg, sizeof(msg))
                           : avm_rframe_decode(f, k, group, &d, msg, sizeof(msg));
        if (rv == 0)
            avm_rframe_free(&d);
        if (rv != AVM_EMALFORMED || strncmp(msg, "raft frame: ", 12) != 0 ||
            msg[12] == '\0') {
            if (wrong++ == 0)
                fprintf(stderr, "  prefix %zu of %zu: rv %d, \"%s\"\n", k, n, rv, msg);
        }
    }
    return wrong;
}

/* Encodes m under group, decodes it back and compares; then checks the prefixes
 * (unless the frame is huge). */
static void round_trip(int *test_failed_, const char *group, const struct raft_message *m,
                       bool prefixes)
{
    uint8_t *f = NULL;
    size_t n = 0;
    REQUIRE(avm_rframe_encode(group, m, &f, &n) == 0);
    char got[AVM_RHOST_NAME_MAX], msg[160] = "";
    struct raft_message d;
    int rv = n <= 65536 ? decode_exact(f, n, got, &d, msg, sizeof(msg))
                        : avm_rframe_decode(f, n, got, &d, msg, sizeof(msg));
    if (rv != 0)
        fprintf(stderr, "  decode: %s\n", msg);
    CHECK_INT(rv, 0);
    if (rv == 0) {
        CHECK_STR(got, group);
        CHECK(same_message(m, &d));
        CHECK_INT(d.server_id, 0);
        CHECK(d.server_address == NULL);

        /* Re-encoding the decoded message gives the same bytes. */
        uint8_t *g = NULL;
        size_t gn = 0;
        CHECK(avm_rframe_encode(got, &d, &g, &gn) == 0 && gn == n &&
              memcmp(f, g, n) == 0);
        free(g);
        avm_rframe_free(&d);
    }
    if (prefixes)
        CHECK_INT(bad_prefixes(f, n), 0);
    free(f);
}

TEST(request_vote_round_trip)
{
    struct raft_message m = request_vote(true);
    round_trip(test_failed_, "g", &m, true);
    m = request_vote(false);
    round_trip(test_failed_, "controller/orders-7", &m, true);
}

TEST(request_vote_result_round_trip)
{
    struct raft_message m = request_vote_result(true);
    round_trip(test_failed_, "group", &m, true);
    m = request_vote_result(false);
    round_trip(test_failed_, "group", &m, true);
}

TEST(append_entries_result_round_trip)
{
    struct raft_message m = append_entries_result();
    round_trip(test_failed_, "a-group", &m, true);
}

TEST(timeout_now_round_trip)
{
    struct raft_message m = timeout_now();
    /* The longest group name: 63 bytes. */
    char group[AVM_RHOST_NAME_MAX];
    memset(group, 'x', AVM_RHOST_NAME_MAX - 1);
    group[AVM_RHOST_NAME_MAX - 1] = '\0';
    round_trip(test_failed_, group, &m, true);
}

TEST(append_entries_round_trip)
{
    /* A heartbeat: no entries. */
    struct raft_message m = append_entries(0, NULL);
    round_trip(test_failed_, "g1", &m, true);
    free_sent_entries(&m);

    /* 0-byte entries among others, and a large one. */
    size_t lens[] = {0, 1, 0, 100, (1u << 20) + 1, 0, 255};
    m = append_entries(sizeof(lens) / sizeof(lens[0]), lens);
    round_trip(test_failed_, "g1", &m, true);
    free_sent_entries(&m);

    /* Only empty entries (the batch still exists: raft frees entries[0].batch). */
    size_t zeros[] = {0, 0, 0};
    m = append_entries(3, zeros);
    round_trip(test_failed_, "g1", &m, true);
    free_sent_entries(&m);

    /* Many entries. */
    m = append_entries(2000, NULL);
    round_trip(test_failed_, "g1", &m, true);
    free_sent_entries(&m);
}

TEST(append_entries_limit)
{
    /* Exactly the most entries a frame may carry, each empty. */
    struct raft_message m;
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES;
    m.append_entries.n_entries = 1u << 20;
    m.append_entries.entries = calloc(1u << 20, sizeof(struct raft_entry));
    REQUIRE(m.append_entries.entries != NULL);
    for (unsigned i = 0; i < 1u << 20; i++) {
        m.append_entries.entries[i].type = RAFT_BARRIER;
        m.append_entries.entries[i].term = i;
    }
    round_trip(test_failed_, "big", &m, false);

    /* One more is refused by the encoder. */
    uint8_t *f = NULL;
    size_t n = 0;
    m.append_entries.n_entries = (1u << 20) + 1;
    CHECK_INT(avm_rframe_encode("big", &m, &f, &n), AVM_EINVAL);
    free(m.append_entries.entries);
}

TEST(install_snapshot_round_trip)
{
    struct raft_message m = install_snapshot(1, 0);
    round_trip(test_failed_, "snap", &m, true);
    free_sent_snapshot(&m);

    m = install_snapshot(5, 1000);
    round_trip(test_failed_, "snap", &m, true);
    free_sent_snapshot(&m);

    /* Every address length up to 255 and the most servers. */
    m = install_snapshot(64, 0);
    round_trip(test_failed_, "snap", &m, true);
    free_sent_snapshot(&m);

    m = install_snapshot(3, (1u << 20) + 3);
    round_trip(test_failed_, "snap", &m, true);
    free_sent_snapshot(&m);
}

/* What raft does with a received append-entries: it keeps entries that point into
 * the batch and eventually frees entries[0].batch and the array with raft_free. */
TEST(append_entries_layout)
{
    size_t lens[] = {5, 0, 17, 0, 1};
    struct raft_message m = append_entries(5, lens);
    uint8_t *f = NULL;
    size_t n = 0;
    REQUIRE(avm_rframe_encode("layout", &m, &f, &n) == 0);
    free_sent_entries(&m);

    char group[AVM_RHOST_NAME_MAX], msg[160];
    struct raft_message d;
    REQUIRE(avm_rframe_decode(f, n, group, &d, msg, sizeof(msg)) == 0);
    free(f);
    struct raft_entry *e = d.append_entries.entries;
    REQUIRE(e != NULL && d.append_entries.n_entries == 5);
    uint8_t *batch = e[0].batch;
    CHECK(batch != NULL);
    size_t off = 0;
    for (unsigned i = 0; i < 5; i++) {
        CHECK(e[i].batch == batch);
        CHECK(e[i].buf.base == batch + off);
        CHECK_INT(e[i].buf.len, lens[i]);
        off += lens[i];
    }
    raft_free(e[0].batch);
    raft_free(e);

    /* No entries: no array, nothing to free. */
    m = append_entries(0, NULL);
    REQUIRE(avm_rframe_encode("layout", &m, &f, &n) == 0);
    REQUIRE(avm_rframe_decode(f, n, group, &d, msg, sizeof(msg)) == 0);
    free(f);
    CHECK(d.append_entries.entries == NULL);
    CHECK_INT(d.append_entries.n_entries, 0);
    avm_rframe_free(&d);
}

/* What raft does with a received install-snapshot it will not take. */
TEST(install_snapshot_layout)
{
    struct raft_message m = install_snapshot(3, 10);
    uint8_t *f = NULL;
    size_t n = 0;
    REQUIRE(avm_rframe_encode("layout", &m, &f, &n) == 0);
    free_sent_snapshot(&m);
    char group[AVM_RHOST_NAME_MAX], msg[160];
    struct raft_message d;
    REQUIRE(avm_rframe_decode(f, n, group, &d, msg, sizeof(msg)) == 0);
    free(f);
    CHECK_INT(d.install_snapshot.conf.n, 3);
    raft_free(d.install_snapshot.data.base);
    raft_configuration_close(&d.install_snapshot.conf);
}

/* avm_rframe_free is safe on every type, twice, and on a refused decode's message. */
TEST(free_every_type)
{
    size_t lens[] = {4, 0};
    struct raft_message ms[] = {
        request_vote(true),      request_vote_result(true), append_entries(2, lens),
        append_entries_result(), install_snapshot(2, 8),    timeout_now(),
    };
    for (size_t i = 0; i < sizeof(ms) / sizeof(ms[0]); i++) {
        uint8_t *f = NULL;
        size_t n = 0;
        REQUIRE(avm_rframe_encode("free", &ms[i], &f, &n) == 0);
        char group[AVM_RHOST_NAME_MAX], msg[160];
        struct raft_message d;
        CHECK_INT(avm_rframe_decode(f, n, group, &d, msg, sizeof(msg)), 0);
        avm_rframe_free(&d);
        avm_rframe_free(&d);
        CHECK_INT(avm_rframe_decode(f, n - 1, group, &d, msg, sizeof(msg)),
                  AVM_EMALFORMED);
        avm_rframe_free(&d);
        free(f);
    }
    free_sent_entries(&ms[2]);
    free_sent_snapshot(&ms[4]);
}

/* Random corruptions of valid frames: every one is refused with a message, or
 * decodes to a message that re-encodes to exactly the corrupted bytes. */
TEST(corruptions)
{
    size_t lens[] = {3, 0, 9, 1};
    struct raft_message ms[] = {
        request_vote(true),      request_vote_result(false),
        append_entries(4, lens), append_entries(0, NULL),
        append_entries_result(), install_snapshot(3, 12),
        install_snapshot(1, 0),  timeout_now(),
    };
    size_t nms = sizeof(ms) / sizeof(ms[0]);
    unsigned n_ok = 0, n_refused = 0, wrong = 0;
    for (size_t i = 0; i < nms; i++) {
        uint8_t *f = NULL;
        size_t n = 0;
        REQUIRE(avm_rframe_encode("corrupt", &ms[i], &f, &n) == 0);
        uint8_t *buf = xmalloc(n + 16);
        for (unsigned it = 0; it < 1000; it++) {
            size_t len = n;
            memcpy(buf, f, n);
            unsigned edits = 1 + (unsigned)(rnd() % 3);
            for (unsigned e = 0; e < edits && len > 0; e++) {
                size_t at = (size_t)(rnd() % len);
                switch (rnd() % 6) {
                case 0:
                    buf[at] ^= (uint8_t)(1u << rnd() % 8);
                    break;
                case 1:
                    buf[at] = (uint8_t)rnd();
                    break;
                case 2:
                    buf[at] =
                        (uint8_t[]){0, 1, 2, 3, 4, 0x3f, 0x40, 0x7f, 0xff}[rnd() % 9];
                    break;
                case 3:
                    len = at;
                    break;
                case 4:
                    if (len < n + 16) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = (uint8_t)rnd();
                        len++;
                    }
                    break;
                default:
                    memmove(buf + at, buf + at + 1, len - at - 1);
                    len--;
                    break;
                }
            }
            char group[AVM_RHOST_NAME_MAX], msg[160] = "";
            struct raft_message d;
            int rv = decode_exact(buf, len, group, &d, msg, sizeof(msg));
            if (rv == 0) {
                n_ok++;
                uint8_t *g = NULL;
                size_t gn = 0;
                if (avm_rframe_encode(group, &d, &g, &gn) != 0 || gn != len ||
                    memcmp(g, buf, len) != 0)
                    wrong++;
                free(g);
                avm_rframe_free(&d);
            } else {
                n_refused++;
                if (rv != AVM_EMALFORMED || strncmp(msg, "raft frame: ", 12) != 0 ||
                    msg[12] == '\0')
                    wrong++;
            }
        }
        free(buf);
        free(f);
    }
    CHECK_INT(wrong, 0);
    CHECK(n_ok > 0 && n_refused > 0);
    free_sent_entries(&ms[2]);
    free_sent_snapshot(&ms[5]);
    free_sent_snapshot(&ms[6]);
}

/* A raft heap that fails every allocation after the first `budget`, and counts the
 * blocks still live, to check the decoder's out-of-memory paths. */
static long heap_budget, heap_live;

static void *failing_malloc(void *data, size_t size)
{
    if (heap_budget-- <= 0)
        return NULL;
    void *p = malloc(size);
    heap_live += p != NULL;
    return p;
}

static void failing_free(void *data, void *ptr)
{
    heap_live -= ptr != NULL;
    free(ptr);
}

static void *failing_calloc(void *data, size_t nmemb, size_t size)
{
    if (heap_budget-- <= 0)
        return NULL;
    void *p = calloc(nmemb, size);
    heap_live += p != NULL;
    return p;
}

static void *failing_realloc(void *data, void *ptr, size_t size)
{
    if (heap_budget-- <= 0)
        return NULL;
    void *p = realloc(ptr, size);
    heap_live += ptr == NULL && p != NULL;
    return p;
}

TEST(out_of_memory)
{
    size_t lens[] = {2, 0, 5};
    struct raft_message ms[] = {append_entries(3, lens), install_snapshot(4, 16)};
    struct raft_heap heap = {.malloc = failing_malloc,
                             .free = failing_free,
                             .calloc = failing_calloc,
                             .realloc = failing_realloc};
    for (size_t i = 0; i < 2; i++) {
        uint8_t *f = NULL;
        size_t n = 0;
        REQUIRE(avm_rframe_encode("oom", &ms[i], &f, &n) == 0);
        int rv = AVM_ENOMEM;
        for (long budget = 0; rv == AVM_ENOMEM && budget < 100; budget++) {
            char group[AVM_RHOST_NAME_MAX], msg[160];
            struct raft_message d;
            heap_budget = budget;
            heap_live = 0;
            raft_heap_set(&heap);
            rv = avm_rframe_decode(f, n, group, &d, msg, sizeof(msg));
            if (rv == AVM_ENOMEM) {
                CHECK_INT(heap_live, 0);
                CHECK_STR(msg, "raft frame: out of memory");
            } else {
                CHECK_INT(rv, 0);
                CHECK(same_message(&ms[i], &d));
                avm_rframe_free(&d);
                CHECK_INT(heap_live, 0);
            }
            raft_heap_set_default();
        }
        CHECK_INT(rv, 0);
        free(f);
    }
    free_sent_entries(&ms[0]);
    free_sent_snapshot(&ms[1]);
}

/* Frames written by hand, to name each kind of bad input. */

typedef struct bytes {
    uint8_t b[4096];
    size_t n;
} bytes;

static void put(bytes *w, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; i++)
        w->b[w->n++] = (uint8_t)(v >> (8 * i));
}

static void put_str(bytes *w, const char *s)
{
    size_t n = strlen(s);
    memcpy(w->b + w->n, s, n);
    w->n += n;
}

/* The header of a valid frame of group "g" and the given message type. */
static void header(bytes *w, unsigned type)
{
    w->n = 0;
    put(w, 0xA7, 1);
    put(w, 1, 1);
    put(w, 1, 1);
    put_str(w, "g");
    put(w, type, 1);
    put(w, 0, 1);
}

/* Decodes w and checks that it is refused with a message containing want. */
static void refused_with(int *test_failed_, const bytes *w, const char *want)
{
    char group[AVM_RHOST_NAME_MAX], msg[160] = "";
    struct raft_message d;
    int rv = decode_exact(w->b, w->n, group, &d, msg, sizeof(msg));
    if (rv == 0)
        avm_rframe_free(&d);
    CHECK_INT(rv, AVM_EMALFORMED);
    if (strstr(msg, want) == NULL || strncmp(msg, "raft frame: ", 12) != 0) {
        fprintf(stderr, "  got \"%s\", expected it to contain \"%s\"\n", msg, want);
        *test_failed_ = 1;
    }
}

static void accepted(int *test_failed_, const bytes *w)
{
    char group[AVM_RHOST_NAME_MAX], msg[160] = "";
    struct raft_message d;
    int rv = decode_exact(w->b, w->n, group, &d, msg, sizeof(msg));
    if (rv != 0)
        fprintf(stderr, "  refused: %s\n", msg);
    CHECK_INT(rv, 0);
    if (rv == 0)
        avm_rframe_free(&d);
}

TEST(bad_header)
{
    bytes w;
    header(&w, RAFT_TIMEOUT_NOW);
    put(&w, 1, 8);
    put(&w, 2, 8);
    put(&w, 3, 8);
    accepted(test_failed_, &w);

    w.b[0] = 0x00;
    refused_with(test_failed_, &w, "bad magic byte 0x00");
    w.b[0] = 0xA7;
    w.b[1] = 2;
    refused_with(test_failed_, &w, "unsupported format version 2");
    w.b[1] = 1;
    w.b[4] = 9;
    refused_with(test_failed_, &w, "unknown message type 9");
    w.b[4] = 0;
    refused_with(test_failed_, &w, "unknown message type 0");
    w.b[4] = RAFT_TIMEOUT_NOW;
    w.b[3] = '\0';
    refused_with(test_failed_, &w, "group name contains a NUL byte");
    w.b[3] = 'g';

    w.b[w.n++] = 0;
    refused_with(test_failed_, &w, "trailing data (1 bytes) after the timeout-now");

    w.n = 0;
    refused_with(test_failed_, &w, "empty frame");

    /* Group names of 0 and 64 bytes. */
    w.n = 0;
    put(&w, 0xA7, 1);
    put(&w, 1, 1);
    put(&w, 0, 1);
    put(&w, RAFT_TIMEOUT_NOW, 1);
    refused_with(test_failed_, &w, "empty group name");
    w.n = 0;
    put(&w, 0xA7, 1);
    put(&w, 1, 1);
    put(&w, 64, 1);
    for (int i = 0; i < 64; i++)
        put(&w, 'x', 1);
    put(&w, RAFT_TIMEOUT_NOW, 1);
    put(&w, 0, 1);
    put(&w, 1, 8);
    put(&w, 2, 8);
    put(&w, 3, 8);
    refused_with(test_failed_, &w, "group name too long (64 bytes, at most 63)");

    /* A length beyond the limit is refused before any byte is read. */
    char group[AVM_RHOST_NAME_MAX], msg[160] = "";
    struct raft_message d;
    CHECK_INT(
        avm_rframe_decode(w.b, ((size_t)256 << 20) + 1, group, &d, msg, sizeof(msg)),
        AVM_EMALFORMED);
    CHECK(strstr(msg, "exceeds the limit") != NULL);
}

TEST(bad_flags)
{
    bytes w;
    header(&w, RAFT_REQUEST_VOTE);
    put(&w, 1, 8);
    put(&w, 2, 8);
    put(&w, 3, 8);
    put(&w, 4, 8);
    put(&w, 1, 1);
    put(&w, 2, 1);
    refused_with(test_failed_, &w, "request-vote pre_vote is 2, not 0 or 1");

    header(&w, RAFT_REQUEST_VOTE_RESULT);
    put(&w, 1, 8);
    put(&w, 0xff, 1);
    put(&w, 0, 1);
    put(&w, 0, 2);
    put(&w, 0, 2);
    refused_with(test_failed_, &w, "request-vote-result vote_granted is 255");

    header(&w, RAFT_APPEND_ENTRIES_RESULT);
    put(&w, 1, 8);
    put(&w, 2, 8);
    refused_with(test_failed_, &w, "truncated append-entries-result message");
}

static void entries_header(bytes *w, uint64_t n)
{
    header(w, RAFT_APPEND_ENTRIES);
    put(w, 1, 8);
    put(w, 2, 8);
    put(w, 3, 8);
    put(w, 4, 8);
    put(w, n, 4);
}

TEST(bad_entries)
{
    bytes w;
    entries_header(&w, (1u << 20) + 1);
    refused_with(test_failed_, &w,
                 "append-entries has 1048577 entries, more than 1048576");
    entries_header(&w, UINT32_MAX);
    refused_with(test_failed_, &w, "more than 1048576");

    /* Claims 4 entries, holds 3 whole ones then part of a header. */
    entries_header(&w, 4);
    for (int i = 0; i < 3; i++) {
        put(&w, 7, 8);
        put(&w, RAFT_COMMAND, 1);
        put(&w, 2, 4);
        put(&w, 0xabab, 2);
    }
    put(&w, 7, 8);
    refused_with(test_failed_, &w, "truncated append-entries entry 3");

    /* An entry longer than what remains. */
    entries_header(&w, 1);
    put(&w, 7, 8);
    put(&w, RAFT_COMMAND, 1);
    put(&w, UINT32_MAX, 4);
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "truncated append-entries entry 0");

    /* Entry types 0 and 4. */
    for (unsigned type = 0; type <= 4; type += 4) {
        entries_header(&w, 2);
        put(&w, 7, 8);
        put(&w, RAFT_CHANGE, 1);
        put(&w, 0, 4);
        put(&w, 7, 8);
        put(&w, type, 1);
        put(&w, 0, 4);
        char want[64];
        snprintf(want, sizeof(want), "append-entries entry 1 has type %u", type);
        refused_with(test_failed_, &w, want);
    }

    /* Bytes after the last entry. */
    entries_header(&w, 1);
    put(&w, 7, 8);
    put(&w, RAFT_BARRIER, 1);
    put(&w, 1, 4);
    put(&w, 0, 1);
    accepted(test_failed_, &w);
    put(&w, 0, 2);
    refused_with(test_failed_, &w, "trailing data (2 bytes) after the append-entries");
}

static void snapshot_header(bytes *w, uint64_t n)
{
    header(w, RAFT_INSTALL_SNAPSHOT);
    put(w, 1, 8);
    put(w, 2, 8);
    put(w, 3, 8);
    put(w, 4, 8);
    put(w, n, 4);
}

static void server(bytes *w, uint64_t id, unsigned role, const char *address)
{
    put(w, id, 8);
    put(w, role, 1);
    put(w, strlen(address), 1);
    put_str(w, address);
}

TEST(bad_snapshot)
{
    bytes w;
    snapshot_header(&w, 2);
    server(&w, 1, RAFT_VOTER, "n1");
    server(&w, 2, RAFT_SPARE, "n2");
    put(&w, 3, 8);
    put_str(&w, "abc");
    accepted(test_failed_, &w);
    w.n--;
    refused_with(test_failed_, &w, "truncated install-snapshot data");

    snapshot_header(&w, 2);
    server(&w, 1, RAFT_VOTER, "n1");
    server(&w, 2, 3, "n2");
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "install-snapshot server 1 has role 3");

    snapshot_header(&w, 1);
    server(&w, 0, RAFT_VOTER, "n1");
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "install-snapshot server 0 has id 0");

    snapshot_header(&w, 2);
    server(&w, 5, RAFT_VOTER, "n1");
    server(&w, 5, RAFT_VOTER, "n2");
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "servers 0 and 1 have the same id");

    snapshot_header(&w, 2);
    server(&w, 5, RAFT_VOTER, "n1");
    server(&w, 6, RAFT_STANDBY, "n1");
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "servers 0 and 1 have the same address");

    snapshot_header(&w, 1);
    server(&w, 5, RAFT_VOTER, "");
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "server 0 has an empty address");

    snapshot_header(&w, 1);
    server(&w, 5, RAFT_VOTER, "n1");
    w.b[w.n - 1] = '\0';
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "server 0 address contains a NUL byte");

    snapshot_header(&w, 2);
    server(&w, 5, RAFT_VOTER, "n1");
    refused_with(test_failed_, &w, "truncated install-snapshot server 1");

    snapshot_header(&w, 0);
    put(&w, 0, 8);
    refused_with(test_failed_, &w, "configuration has no servers");
    snapshot_header(&w, 65);
    refused_with(test_failed_, &w, "configuration has 65 servers, more than 64");

    /* A data length that cannot fit. */
    snapshot_header(&w, 1);
    server(&w, 5, RAFT_VOTER, "n1");
    put(&w, UINT64_MAX, 8);
    refused_with(test_failed_, &w, "truncated install-snapshot data");
}

/* The encoder refuses what the format cannot carry. */
TEST(encode_refusals)
{
    uint8_t *f = NULL;
    size_t n = 0;
    struct raft_message m = timeout_now();
    char group[AVM_RHOST_NAME_MAX + 1];
    memset(group, 'x', AVM_RHOST_NAME_MAX);
    group[AVM_RHOST_NAME_MAX] = '\0';
    CHECK_INT(avm_rframe_encode(group, &m, &f, &n), AVM_EINVAL);
    CHECK_INT(avm_rframe_encode("", &m, &f, &n), AVM_EINVAL);
    m.type = (enum raft_message_type)7;
    CHECK_INT(avm_rframe_encode("g", &m, &f, &n), AVM_EINVAL);

    size_t lens[] = {1};
    m = append_entries(1, lens);
    m.append_entries.entries[0].type = (enum raft_entry_type)4;
    CHECK_INT(avm_rframe_encode("g", &m, &f, &n), AVM_EINVAL);
    /* Beyond 256 MiB (the data is never read: the size is checked first). */
    m.append_entries.entries[0].type = RAFT_COMMAND;
    m.append_entries.entries[0].buf.len = (size_t)256 << 20;
    CHECK_INT(avm_rframe_encode("g", &m, &f, &n), AVM_ETOOBIG);
    m.append_entries.entries[0].buf.len = 1;
    free_sent_entries(&m);

    m = install_snapshot(0, 0);
    CHECK_INT(avm_rframe_encode("g", &m, &f, &n), AVM_EINVAL);
    free_sent_snapshot(&m);
    m = install_snapshot(65, 0);
    CHECK_INT(avm_rframe_encode("g", &m, &f, &n), AVM_EINVAL);
    free_sent_snapshot(&m);
}

TEST_MAIN(T(request_vote_round_trip), T(request_vote_result_round_trip),
          T(append_entries_result_round_trip), T(timeout_now_round_trip),
          T(append_entries_round_trip), T(append_entries_limit),
          T(install_snapshot_round_trip), T(append_entries_layout),
          T(install_snapshot_layout), T(free_every_type), T(out_of_memory),
          T(corruptions), T(bad_header), T(bad_flags), T(bad_entries), T(bad_snapshot),
          T(encode_refusals))
