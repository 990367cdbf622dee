/* Fuzz target: arbitrary bytes as a raft frame (consensus/raft_frame.c). Properties
 * checked (abort() on violation):
 *   - a refused frame gives AVM_EMALFORMED and a message naming the cause;
 *   - a decoded frame has a group name of 1..63 bytes, no sender, and memory laid
 *     out as raft expects (one batch for all entries, each entry's data inside it);
 *   - it re-encodes to exactly the input bytes (the format has one encoding).
 * Crashes, leaks and sanitizer reports are findings too. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "fuzz.h"
#include "raft_host.h"

static void check_layout(const struct raft_message *m)
{
    if (m->type == RAFT_APPEND_ENTRIES) {
        const struct raft_append_entries *a = &m->append_entries;
        if ((a->n_entries == 0) != (a->entries == NULL))
            abort();
        size_t off = 0;
        for (unsigned i = 0; i < a->n_entries; i++) {
            const struct raft_entry *e = &a->entries[i];
            if (e->batch == NULL || e->batch != a->entries[0].batch ||
                (const uint8_t *)e->buf.base != (const uint8_t *)e->batch + off)
                abort();
            off += e->buf.len;
        }
    } else if (m->type == RAFT_INSTALL_SNAPSHOT) {
        const struct raft_install_snapshot *s = &m->install_snapshot;
        if (s->conf.n == 0 || s->conf.n > 64 ||
            (s->data.len > 0) != (s->data.base != NULL))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char group[AVM_RHOST_NAME_MAX], msg[160];
    struct raft_message m;
    msg[0] = '\0';
    int rv = avm_rframe_decode(data, size, group, &m, msg, sizeof(msg));
    if (rv != 0) {
        if (rv != AVM_EMALFORMED || strncmp(msg, "raft frame: ", 12) != 0 ||
            msg[12] == '\0')
            abort();
        return 0;
    }
    size_t glen = strlen(group);
    if (glen == 0 || glen >= AVM_RHOST_NAME_MAX || m.server_id != 0 ||
        m.server_address != NULL)
        abort();
    check_layout(&m);

    uint8_t *out = NULL;
    size_t len = 0;
    if (avm_rframe_encode(group, &m, &out, &len) != 0 || len != size ||
        memcmp(out, data, size) != 0)
        abort();
    free(out);
    avm_rframe_free(&m);
    return 0;
}

/* Seeds: frames of every message type, built by the encoder so that they follow the
 * current format. */

static char *to_hex_seed(const uint8_t *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(4 + 2 * n + 1);
    if (s == NULL)
        abort();
    memcpy(s, "hex:", 4);
    for (size_t i = 0; i < n; i++) {
        s[4 + 2 * i] = digits[p[i] >> 4];
        s[4 + 2 * i + 1] = digits[p[i] & 0x0f];
    }
    s[4 + 2 * n] = '\0';
    return s;
}

static char *seed(const char *group, const struct raft_message *m)
{
    uint8_t *f = NULL;
    size_t n = 0;
    if (avm_rframe_encode(group, m, &f, &n) != 0) {
        fprintf(stderr, "fuzz_rframe: a seed message does not encode\n");
        abort();
    }
    char *s = to_hex_seed(f, n);
    free(f);
    return s;
}

enum { NSEEDS = 9 };

static void build_seeds(const char **seeds)
{
    struct raft_message m;
    size_t k = 0;

    memset(&m, 0, sizeof(m));
    m.type = RAFT_REQUEST_VOTE;
    m.request_vote = (struct raft_request_vote){.version = 2,
                                                .term = 5,
                                                .candidate_id = 3,
                                                .last_log_index = 100,
                                                .last_log_term = 4,
                                                .disrupt_leader = true};
    seeds[k++] = seed("g", &m);

    memset(&m, 0, sizeof(m));
    m.type = RAFT_REQUEST_VOTE_RESULT;
    m.request_vote_result = (struct raft_request_vote_result){.version = 2,
                                                              .term = 5,
                                                              .vote_granted = true,
                                                              .pre_vote = true,
                                                              .features = 1,
                                                              .capacity = 512};
    seeds[k++] = seed("group-a", &m);

    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES_RESULT;
    m.append_entries_result = (struct raft_append_entries_result){.version = 2,
                                                                  .term = 9,
                                                                  .rejected = 17,
                                                                  .last_log_index = 16,
                                                                  .features = 1,
                                                                  .capacity = 64};
    seeds[k++] = seed("orders", &m);

    memset(&m, 0, sizeof(m));
    m.type = RAFT_TIMEOUT_NOW;
    m.timeout_now =
        (struct raft_timeout_now){.term = 3, .last_log_index = 40, .last_log_term = 2};
    seeds[k++] = seed("t", &m);

    /* A heartbeat, and entries of every type (one empty). */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_APPEND_ENTRIES;
    m.append_entries = (struct raft_append_entries){
        .term = 7, .prev_log_index = 10, .prev_log_term = 6, .leader_commit = 9};
    seeds[k++] = seed("hb", &m);
    char cmd[] = "set x 1", conf[] = "\x01\x02\x03";
    struct raft_entry entries[] = {
        {7, RAFT_COMMAND, {cmd, sizeof(cmd) - 1}, NULL},
        {7, RAFT_BARRIER, {NULL, 0}, NULL},
        {7, RAFT_CHANGE, {conf, sizeof(conf) - 1}, NULL},
    };
    m.append_entries.entries = entries;
    m.append_entries.n_entries = 3;
    seeds[k++] = seed("orders", &m);

    /* Snapshots with several servers and data, and with one server and none. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_INSTALL_SNAPSHOT;
    m.install_snapshot.term = 4;
    m.install_snapshot.last_index = 1000;
    m.install_snapshot.last_term = 3;
    m.install_snapshot.conf_index = 900;
    raft_configuration_init(&m.install_snapshot.conf);
    if (raft_configuration_add(&m.install_snapshot.conf, 11, "node-1", RAFT_VOTER) != 0 ||
        raft_configuration_add(&m.install_snapshot.conf, 12, "node-2", RAFT_STANDBY) !=
            0 ||
        raft_configuration_add(&m.install_snapshot.conf, 13, "node-3", RAFT_SPARE) != 0)
        abort();
    char state[] = "state machine bytes";
    m.install_snapshot.data = (struct raft_buffer){state, sizeof(state) - 1};
    seeds[k++] = seed("snap", &m);
    raft_configuration_close(&m.install_snapshot.conf);
    raft_configuration_init(&m.install_snapshot.conf);
    if (raft_configuration_add(&m.install_snapshot.conf, 1, "n", RAFT_VOTER) != 0)
        abort();
    m.install_snapshot.data = (struct raft_buffer){NULL, 0};
    seeds[k++] = seed("snap", &m);
    raft_configuration_close(&m.install_snapshot.conf);

    /* The longest group name. */
    memset(&m, 0, sizeof(m));
    m.type = RAFT_TIMEOUT_NOW;
    seeds[k++] =
        seed("123456789012345678901234567890123456789012345678901234567890123", &m);
    if (k != NSEEDS)
        abort();
}

const char *const *fuzz_seeds(size_t *n)
{
    static const char *seeds[NSEEDS];
    static bool built;
    if (!built) {
        build_seeds(seeds);
        built = true;
    }
    *n = NSEEDS;
    return seeds;
}
