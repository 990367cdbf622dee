/* Multi-raft over raft_step() (raft_host.h). Each group is a struct raft driven by
 * events; the host turns the updates raft_step() returns into I/O calls, keeps the
 * group's log in memory since its last snapshot, applies committed entries in order,
 * compacts, and batches: every host entry point (receive, tick, synced, propose...)
 * ends with ONE sync for all the writes all groups staged in it, and one timer
 * request for all groups. */
#include "raft_host.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"

#define DEFAULT_ELECTION_MS 1000
#define DEFAULT_HEARTBEAT_MS 100
#define DEFAULT_INFLIGHT 1024
#define DEFAULT_SNAP_EVERY 1024
#define DEFAULT_SNAP_TRAILING 128
#define DEFAULT_TICK_MS 5

/* An entry of the in-memory log. */
typedef struct lentry {
    uint64_t term;
    uint8_t type;
    uint8_t *data;
    size_t len;
} lentry;

/* A durable write raft waits for: entries up to `index` (of `term`), or a snapshot
 * install, covered by sync number `seq`. */
typedef struct pending {
    uint64_t seq;
    bool snapshot;
    uint64_t index, term;
    struct raft_snapshot_metadata meta; /* snapshot: raft takes the configuration */
    struct pending *next;
} pending;

/* A frame held until the group's term and vote are durable. */
typedef struct held {
    char to[AVM_RHOST_NAME_MAX];
    uint8_t *frame;
    size_t len;
    struct held *next;
} held;

struct avm_rgroup {
    avm_rhost *h;
    char name[AVM_RHOST_NAME_MAX];
    struct raft r;
    bool started, stopped;
    char why[160];
    /* The in-memory log: entries first..first+n-1; the snapshot before it. */
    lentry *log;
    size_t n, cap;
    uint64_t first;
    uint64_t snap_index, snap_term;
    /* The configuration as of the snapshot (raft_configuration_encode bytes) and
     * the index of the entry that made it. */
    uint8_t *snap_conf;
    size_t snap_conf_len;
    uint64_t snap_conf_index;
    uint64_t applied; /* the host's apply cursor (configurations included) */
    uint64_t learned; /* a commit index the leader told us directly */
    char promote[AVM_RHOST_NAME_MAX]; /* a stand-by to make a voter once caught up */
    uint64_t fsm_applied; /* the state machine's durable applied index at start */
    pending *pend, **pend_tail;
    held *hold, **hold_tail;
    uint64_t hold_until; /* sync number that makes term and vote durable (0: none) */
    /* What `changed` last reported. */
    int last_state;
    uint64_t last_term;
    uint64_t last_leader;
};

/* When a node was last heard from (for quorum checks). */
typedef struct heard {
    char name[AVM_RHOST_NAME_MAX];
    uint64_t at;
} heard;

struct avm_rhost {
    avm_rhost_config cfg;
    char self[AVM_RHOST_NAME_MAX];
    avm_rhost_io io;
    uint64_t self_id;
    avm_rgroup **groups; /* sorted by name */
    size_t ngroups, capgroups;
    heard *heard;
    size_t nheard, capheard;
    unsigned depth;     /* nesting of host entry points */
    bool dirty;         /* staged writes since the last sync() */
    uint64_t sync_req;  /* sync() calls made */
    uint64_t sync_done; /* avm_rhost_synced() calls processed */
    uint64_t sync_in;   /* avm_rhost_synced() calls received */
    unsigned random;
    avm_rhost_stats st;
};

static int step(avm_rgroup *g, struct raft_event *ev);
static void promote(avm_rgroup *g);

static uint64_t now_ms(avm_rhost *h)
{
    return h->io.now(h->io.arg);
}

static void stop_group(avm_rgroup *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void stop_group(avm_rgroup *g, const char *fmt, ...)
{
    if (g->stopped)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->why, sizeof(g->why), fmt, ap);
    va_end(ap);
    g->stopped = true;
    if (g->h->io.changed != NULL)
        g->h->io.changed(g->h->io.arg, g);
}

uint64_t avm_rhost_node_id(const char *name)
{
    /* FNV-1a, 64 bits: stable across versions of anything. */
    uint64_t x = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        x ^= *p;
        x *= 1099511628211ULL;
    }
    return x != 0 ? x : 1;
}

/* --- The in-memory log ---------------------------------------------------- */

static uint64_t log_last(const avm_rgroup *g)
{
    return g->n > 0 ? g->first + g->n - 1 : g->snap_index;
}

static const lentry *log_at(const avm_rgroup *g, uint64_t index)
{
    if (g->n == 0 || index < g->first || index >= g->first + g->n)
        return NULL;
    return &g->log[index - g->first];
}

static uint64_t term_of(const avm_rgroup *g, uint64_t index)
{
    const lentry *e = log_at(g, index);
    if (e != NULL)
        return e->term;
    return index == g->snap_index ? g->snap_term : 0;
}

/* Drops entries from index on; an empty log then starts at index. */
static void log_truncate(avm_rgroup *g, uint64_t index)
{
    while (g->n > 0 && g->first + g->n - 1 >= index) {
        free(g->log[g->n - 1].data);
        g->n--;
    }
    if (g->n == 0)
        g->first = index;
}

/* Drops entries up to and including index. */
static void log_drop_upto(avm_rgroup *g, uint64_t index)
{
    size_t k = 0;
    while (k < g->n && g->first + k <= index)
        free(g->log[k++].data);
    memmove(g->log, g->log + k, (g->n - k) * sizeof(*g->log));
    g->n -= k;
    g->first += k;
}

static int log_append(avm_rgroup *g, uint64_t term, uint8_t type, const void *data,
                      size_t len)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 64;
        lentry *l = realloc(g->log, cap * sizeof(*l));
        if (l == NULL)
            return AVM_ENOMEM;
        g->log = l;
        g->cap = cap;
    }
    uint8_t *copy = malloc(len ? len : 1);
    if (copy == NULL)
        return AVM_ENOMEM;
    if (len)
        memcpy(copy, data, len);
    g->log[g->n++] = (lentry){term, type, copy, len};
    return 0;
}

static void log_clear(avm_rgroup *g)
{
    for (size_t i = 0; i < g->n; i++)
        free(g->log[i].data);
    g->n = 0;
}

/* Records the snapshot's configuration (bytes copied). */
static int set_snap_conf(avm_rgroup *g, const void *conf, size_t len, uint64_t index)
{
    uint8_t *c = malloc(len ? len : 1);
    if (c == NULL)
        return AVM_ENOMEM;
    if (len)
        memcpy(c, conf, len);
    free(g->snap_conf);
    g->snap_conf = c;
    g->snap_conf_len = len;
    g->snap_conf_index = index;
    return 0;
}

/* The configuration in force as of entry `index` (committed, as every index this
 * is asked for is): the last configuration entry at or before it in our own log,
 * else the snapshot's. Not raft's configuration_committed: raft 0.22.1 leaves that
 * behind when a follower holds two uncommitted changes, or after a restart until
 * the changes are applied again. Bytes borrowed from the log; NULL if unknown. */
static const uint8_t *conf_as_of(const avm_rgroup *g, uint64_t index, size_t *len,
                                 uint64_t *conf_index)
{
    for (uint64_t i = index; i >= g->first && g->n > 0 && i > 0; i--) {
        const lentry *e = log_at(g, i);
        if (e != NULL && e->type == RAFT_CHANGE) {
            *len = e->len;
            *conf_index = i;
            return e->data;
        }
    }
    if (g->snap_conf == NULL)
        return NULL;
    *len = g->snap_conf_len;
    *conf_index = g->snap_conf_index;
    return g->snap_conf;
}

/* --- Groups ----------------------------------------------------------------- */

static size_t group_pos(const avm_rhost *h, const char *name, bool *found)
{
    size_t lo = 0, hi = h->ngroups;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(h->groups[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

avm_rgroup *avm_rhost_group(avm_rhost *h, const char *name)
{
    bool found;
    size_t i = group_pos(h, name, &found);
    return found ? h->groups[i] : NULL;
}

static void group_free(avm_rgroup *g)
{
    if (g->started)
        raft_close(&g->r, NULL);
    log_clear(g);
    free(g->log);
    free(g->snap_conf);
    for (pending *p = g->pend; p != NULL;) {
        pending *next = p->next;
        if (p->snapshot)
            raft_configuration_close(&p->meta.configuration);
        free(p);
        p = next;
    }
    for (held *m = g->hold; m != NULL;) {
        held *next = m->next;
        free(m->frame);
        free(m);
        m = next;
    }
    free(g);
}

static int group_new(avm_rhost *h, const char *name, avm_rgroup **out, char *errmsg,
                     size_t errlen)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl >= AVM_RHOST_NAME_MAX) {
        snprintf(errmsg, errlen, "group name must be 1..%d bytes",
                 AVM_RHOST_NAME_MAX - 1);
        return AVM_EINVAL;
    }
    bool found;
    size_t pos = group_pos(h, name, &found);
    if (found) {
        snprintf(errmsg, errlen, "group %s exists on %s", name, h->self);
        return AVM_ESTATE;
    }
    if (h->ngroups == h->capgroups) {
        size_t cap = h->capgroups ? h->capgroups * 2 : 16;
        avm_rgroup **gs = realloc(h->groups, cap * sizeof(*gs));
        if (gs == NULL)
            return AVM_ENOMEM;
        h->groups = gs;
        h->capgroups = cap;
    }
    avm_rgroup *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return AVM_ENOMEM;
    g->h = h;
    memcpy(g->name, name, nl + 1);
    g->pend_tail = &g->pend;
    g->hold_tail = &g->hold;
    g->first = 1;
    if (raft_init(&g->r, NULL, NULL, h->self_id, h->self) != 0) {
        snprintf(errmsg, errlen, "raft_init: %s", raft_errmsg(&g->r));
        free(g);
        return AVM_ENOMEM;
    }
    g->r.data = g;
    raft_seed(&g->r, h->random = h->random * 1103515245u + 12345u + (unsigned)pos);
    raft_set_election_timeout(&g->r, h->cfg.election_ms);
    raft_set_heartbeat_timeout(&g->r, h->cfg.heartbeat_ms);
    raft_set_max_inflight_entries(&g->r, h->cfg.max_inflight);
    raft_set_pre_vote(&g->r, true);
    /* A lost InstallSnapshot is sent again after this (snapshots go in one frame). */
    raft_set_install_snapshot_timeout(
        &g->r, 4 * h->cfg.election_ms > 2000 ? 4 * h->cfg.election_ms : 2000);
    memmove(h->groups + pos + 1, h->groups + pos,
            (h->ngroups - pos) * sizeof(*h->groups));
    h->groups[pos] = g;
    h->ngroups++;
    *out = g;
    return 0;
}

void avm_rhost_drop(avm_rhost *h, const char *name)
{
    bool found;
    size_t i = group_pos(h, name, &found);
    if (!found)
        return;
    avm_rgroup *g = h->groups[i];
    memmove(h->groups + i, h->groups + i + 1, (h->ngroups - i - 1) * sizeof(*h->groups));
    h->ngroups--;
    group_free(g);
}

/* --- Host entry points and the end of each ---------------------------------- */

static void enter(avm_rhost *h)
{
    h->depth++;
}

static void process_synced(avm_rhost *h);

static void schedule(avm_rhost *h)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < h->ngroups; i++) {
        avm_rgroup *g = h->groups[i];
        if (!g->started || g->stopped)
            continue;
        uint64_t t = raft_timeout(&g->r);
        if (t != 0 && t < next)
            next = t;
    }
    if (next == UINT64_MAX || h->io.schedule == NULL)
        return;
    unsigned tick = h->cfg.tick_ms;
    next = (next + tick - 1) / tick * tick;
    h->io.schedule(h->io.arg, next);
}

static void leave(avm_rhost *h)
{
    if (h->depth > 1) {
        h->depth--;
        return;
    }
    /* Outermost: answer syncs that came in meanwhile, then one sync for all the
     * writes staged, then one timer for all groups. */
    while (h->sync_done < h->sync_in)
        process_synced(h);
    if (h->dirty) {
        h->dirty = false;
        h->sync_req++;
        h->depth--;
        h->io.sync(h->io.arg); /* may answer at once: synced() then nests */
        h->depth++;
        while (h->sync_done < h->sync_in)
            process_synced(h);
        if (h->dirty) {
            h->dirty = false;
            h->sync_req++;
            h->depth--;
            h->io.sync(h->io.arg);
            h->depth++;
        }
    }
    schedule(h);
    h->depth--;
}

/* --- Messages --------------------------------------------------------------- */

static void release_held(avm_rgroup *g);

static void emit_frame(avm_rgroup *g, const char *to, uint8_t *frame, size_t len)
{
    avm_rhost *h = g->h;
    if (g->hold_until > h->sync_done) {
        held *m = malloc(sizeof(*m));
        if (m == NULL) {
            free(frame);
            return; /* a lost message: raft sends again */
        }
        snprintf(m->to, sizeof(m->to), "%s", to);
        m->frame = frame;
        m->len = len;
        m->next = NULL;
        *g->hold_tail = m;
        g->hold_tail = &m->next;
        return;
    }
    release_held(g); /* older frames first */
    h->io.send(h->io.arg, to, frame, len);
    h->st.messages_out++;
    free(frame);
}

static void release_held(avm_rgroup *g)
{
    avm_rhost *h = g->h;
    if (g->hold_until > h->sync_done || g->hold == NULL)
        return;
    if (g->stopped) { /* a stopped group answers nothing more */
        for (held *m = g->hold; m != NULL;) {
            held *next = m->next;
            free(m->frame);
            free(m);
            m = next;
        }
        g->hold = NULL;
        g->hold_tail = &g->hold;
        return;
    }
    g->hold_until = 0;
    held *m = g->hold;
    g->hold = NULL;
    g->hold_tail = &g->hold;
    while (m != NULL) {
        held *next = m->next;
        h->io.send(h->io.arg, m->to, m->frame, m->len);
        h->st.messages_out++;
        free(m->frame);
        free(m);
        m = next;
    }
}

/* Fills an AppendEntries from the in-memory log and sends it. */
static void send_append(avm_rgroup *g, struct raft_message *msg)
{
    struct raft_append_entries *ae = &msg->append_entries;
    struct raft_entry *es = NULL;
    if (ae->n_entries > 0) {
        es = calloc(ae->n_entries, sizeof(*es));
        if (es == NULL)
            return;
        size_t bytes = 0;
        for (unsigned i = 0; i < ae->n_entries; i++) {
            const lentry *e = log_at(g, ae->prev_log_index + 1 + i);
            if (e != NULL && i > 0 && bytes + e->len > AVM_RHOST_MAX_FRAME_DATA) {
                /* One frame at most this big: the follower's answer shows what it
                 * got, and the leader sends the rest. */
                ae->n_entries = i;
                break;
            }
            bytes += e != NULL ? e->len : 0;
            if (e == NULL) {
                /* raft asked for an entry we compacted: it will send a snapshot. */
                free(es);
                return;
            }
            es[i] = (struct raft_entry){.term = e->term,
                                        .type = (enum raft_entry_type)e->type,
                                        .buf = {e->data, e->len}};
        }
    }
    ae->entries = es;
    uint8_t *frame;
    size_t len;
    if (avm_rframe_encode(g->name, msg, &frame, &len) == 0)
        emit_frame(g, msg->server_address, frame, len);
    ae->entries = NULL;
    free(es);
}

/* An InstallSnapshot carries the state machine as of its last applied index: the
 * message names that index and ITS term (raft filled in those of its last
 * snapshot, which may be older), and the configuration committed as of it. */
static void send_snapshot(avm_rgroup *g, struct raft_message *msg)
{
    avm_rhost *h = g->h;
    struct raft_install_snapshot *is = &msg->install_snapshot;
    uint8_t *data = NULL;
    size_t dlen = 0;
    if (h->io.snapshot_data(h->io.arg, g, &data, &dlen) != 0)
        return;
    /* After a restart the state machine may be ahead of the apply cursor (it
     * applied, durably, entries the cursor has not walked over again yet). */
    uint64_t at = g->applied > g->fsm_applied ? g->applied : g->fsm_applied;
    is->last_index = at;
    is->last_term = term_of(g, at);
    size_t clen = 0;
    uint64_t cidx = 0;
    const uint8_t *conf = conf_as_of(g, at, &clen, &cidx);
    struct raft_buffer cb = {(void *)conf, clen};
    raft_configuration_init(&is->conf);
    if (conf == NULL || raft_configuration_decode(&cb, &is->conf) != 0) {
        free(data);
        return; /* raft sends it again later */
    }
    is->conf_index = cidx;
    is->data = (struct raft_buffer){data, dlen};
    if (is->last_term != 0) {
        uint8_t *frame;
        size_t len;
        if (avm_rframe_encode(g->name, msg, &frame, &len) == 0) {
            emit_frame(g, msg->server_address, frame, len);
            h->st.snapshots_sent++;
        }
    }
    free(data);
    is->data = (struct raft_buffer){NULL, 0};
    raft_configuration_close(&is->conf);
    raft_configuration_init(&is->conf);
}

static void send_messages(avm_rgroup *g, struct raft_message *ms, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct raft_message *m = &ms[i];
        if (m->server_address == NULL)
            continue;
        switch (m->type) {
        case RAFT_APPEND_ENTRIES:
            send_append(g, m);
            break;
        case RAFT_INSTALL_SNAPSHOT:
            send_snapshot(g, m);
            break;
        default: {
            uint8_t *frame;
            size_t len;
            if (avm_rframe_encode(g->name, m, &frame, &len) == 0)
                emit_frame(g, m->server_address, frame, len);
            break;
        }
        }
    }
}

/* --- Applying, compacting ------------------------------------------------------ */

static void compact(avm_rgroup *g)
{
    avm_rhost *h = g->h;
    uint64_t index = g->applied;
    if (index <= g->snap_index || index - g->snap_index < h->cfg.snapshot_every ||
        g->r.snapshot.installing)
        return;
    uint64_t term = term_of(g, index);
    size_t clen = 0;
    uint64_t cidx = 0;
    const uint8_t *conf = conf_as_of(g, index, &clen, &cidx);
    if (term == 0 || conf == NULL)
        return;
    struct raft_event ev = {.type = RAFT_SNAPSHOT};
    struct raft_buffer cb = {(void *)conf, clen};
    if (raft_configuration_decode(&cb, &ev.snapshot.metadata.configuration) != 0) {
        stop_group(g, "entry %llu: a configuration that does not decode",
                   (unsigned long long)cidx);
        return;
    }
    unsigned trailing = h->cfg.snapshot_trailing;
    uint64_t upto = index > trailing ? index - trailing : 0;
    avm_rsnap snap = {index, term, cidx, conf, clen};
    int rv = h->io.save_compact(h->io.arg, g->name, &snap, upto);
    if (rv == 0)
        rv = set_snap_conf(g, conf, clen, cidx); /* before the log drops it */
    if (rv != 0) {
        raft_configuration_close(&ev.snapshot.metadata.configuration);
        stop_group(g, "saving a snapshot at %llu: %s", (unsigned long long)index,
                   avm_strerror(rv));
        return;
    }
    h->dirty = true;
    ev.snapshot.metadata.index = index;
    ev.snapshot.metadata.term = term;
    ev.snapshot.metadata.configuration_index = cidx;
    ev.snapshot.trailing = trailing;
    g->snap_index = index;
    g->snap_term = term;
    log_drop_upto(g, upto);
    h->st.snapshots_taken++;
    step(g, &ev);
}

static void apply_committed(avm_rgroup *g)
{
    avm_rhost *h = g->h;
    uint64_t commit = raft_commit_index(&g->r);
    if (g->learned > commit && term_of(g, g->learned) != 0)
        commit = g->learned;
    while (!g->stopped && g->applied < commit) {
        uint64_t index = g->applied + 1;
        const lentry *e = log_at(g, index);
        if (e == NULL)
            break; /* not here yet (a snapshot is being installed) */
        g->applied = index;
        if (e->type == RAFT_COMMAND && index > g->fsm_applied) {
            int rv = h->io.apply(h->io.arg, g, index, e->term, e->data, e->len);
            if (rv != 0) {
                stop_group(g, "applying entry %llu: %s", (unsigned long long)index,
                           avm_strerror(rv));
                return;
            }
            /* No sync of its own: the entry is durable in the log, so the state
             * machine's change may become durable with the next sync (a crash
             * before it replays the entry from the log). */
            h->st.applied++;
        } else if (e->type == RAFT_CHANGE) {
            struct raft_event ev = {.type = RAFT_CONFIGURATION};
            ev.configuration.index = index;
            struct raft_buffer b = {e->data, e->len};
            if (raft_configuration_decode(&b, &ev.configuration.conf) != 0) {
                stop_group(g, "entry %llu: a configuration that does not decode",
                           (unsigned long long)index);
                return;
            }
            step(g, &ev);
        }
    }
    compact(g);
}

/* --- Handling raft's updates ------------------------------------------------------ */

static void note_changes(avm_rgroup *g)
{
    raft_id lid = 0;
    const char *addr = NULL;
    raft_leader(&g->r, &lid, &addr);
    int st = raft_state(&g->r);
    uint64_t term = raft_current_term(&g->r);
    if (st == g->last_state && term == g->last_term && lid == g->last_leader)
        return;
    g->last_state = st;
    g->last_term = term;
    g->last_leader = lid;
    if (g->h->io.changed != NULL)
        g->h->io.changed(g->h->io.arg, g);
}

static void add_pending(avm_rgroup *g, pending *p)
{
    p->seq = g->h->sync_req + 1; /* the sync at the end of this entry point */
    p->next = NULL;
    *g->pend_tail = p;
    g->pend_tail = &p->next;
}

static void handle_update(avm_rgroup *g, struct raft_update *u)
{
    avm_rhost *h = g->h;
    if (u->flags & (RAFT_UPDATE_CURRENT_TERM | RAFT_UPDATE_VOTED_FOR)) {
        int rv = h->io.save_term_vote(h->io.arg, g->name, raft_current_term(&g->r),
                                      raft_voted_for(&g->r));
        if (rv != 0) {
            stop_group(g, "saving term and vote: %s", avm_strerror(rv));
            return;
        }
        h->dirty = true;
        g->hold_until = h->sync_req + 1;
    }
    if (u->flags & RAFT_UPDATE_ENTRIES) {
        struct raft_entry *es = u->entries.batch;
        unsigned n = u->entries.n;
        uint64_t index = u->entries.index;
        avm_rentry *re = calloc(n ? n : 1, sizeof(*re));
        int rv = re == NULL ? AVM_ENOMEM : 0;
        if (rv == 0)
            log_truncate(g, index);
        for (unsigned i = 0; rv == 0 && i < n; i++) {
            rv = log_append(g, es[i].term, (uint8_t)es[i].type, es[i].buf.base,
                            es[i].buf.len);
            re[i] = (avm_rentry){es[i].term, (uint8_t)es[i].type, es[i].buf.base,
                                 es[i].buf.len};
        }
        if (rv == 0)
            rv = h->io.save_entries(h->io.arg, g->name, index, re, n);
        free(re);
        if (n > 0)
            raft_free(es[0].batch);
        if (rv != 0) {
            stop_group(g, "saving entries at %llu: %s", (unsigned long long)index,
                       avm_strerror(rv));
            return;
        }
        h->dirty = true;
        pending *p = calloc(1, sizeof(*p));
        if (p == NULL) {
            stop_group(g, "out of memory");
            return;
        }
        p->index = index + n - 1;
        p->term = n > 0 ? es[n - 1].term : 0;
        add_pending(g, p);
    }
    if (u->flags & RAFT_UPDATE_SNAPSHOT) {
        struct raft_snapshot_metadata *md = &u->snapshot.metadata;
        struct raft_buffer conf = {NULL, 0};
        int rv = raft_configuration_encode(&md->configuration, &conf);
        if (rv == 0) {
            avm_rsnap snap = {md->index, md->term, md->configuration_index, conf.base,
                              conf.len};
            rv = h->io.save_install(h->io.arg, g->name, &snap, u->snapshot.chunk.base,
                                    u->snapshot.chunk.len);
            if (rv == 0)
                rv = set_snap_conf(g, conf.base, conf.len, md->configuration_index);
            raft_free(conf.base);
        } else {
            rv = AVM_ENOMEM;
        }
        raft_free(u->snapshot.chunk.base);
        pending *p = rv == 0 ? calloc(1, sizeof(*p)) : NULL;
        if (p == NULL) {
            raft_configuration_close(&md->configuration);
            stop_group(g, "installing a snapshot at %llu: %s",
                       (unsigned long long)md->index, avm_strerror(rv ? rv : AVM_ENOMEM));
            return;
        }
        h->dirty = true;
        /* The log is gone: the state machine is at the snapshot's index. */
        log_clear(g);
        g->snap_index = md->index;
        g->snap_term = md->term;
        g->first = md->index + 1;
        g->applied = md->index;
        g->fsm_applied = md->index;
        g->learned = 0;
        p->snapshot = true;
        p->meta = *md;
        add_pending(g, p);
        h->st.snapshots_installed++;
    }
    if (u->flags & RAFT_UPDATE_MESSAGES)
        send_messages(g, u->messages.batch, u->messages.n);
    if (u->flags & RAFT_UPDATE_COMMIT_INDEX)
        apply_committed(g);
    note_changes(g);
}

static int step(avm_rgroup *g, struct raft_event *ev)
{
    avm_rhost *h = g->h;
    if (g->stopped)
        return AVM_ESTATE;
    struct raft_update u;
    memset(&u, 0, sizeof(u));
    ev->time = now_ms(h);
    ev->capacity = 0;
    h->st.steps++;
    int rv = raft_step(&g->r, ev, &u);
    if (rv != 0) {
        if (rv == RAFT_NOTLEADER || rv == RAFT_CANTCHANGE || rv == RAFT_BADID ||
            rv == RAFT_NOTFOUND)
            return rv; /* a refused command: nothing happened */
        stop_group(g, "raft: %s (%s)", raft_strerror(rv), raft_errmsg(&g->r));
        return rv;
    }
    handle_update(g, &u);
    return 0;
}

/* --- Durability answers --------------------------------------------------------------
 */

static void process_synced(avm_rhost *h)
{
    h->sync_done++;
    for (size_t i = 0; i < h->ngroups; i++) {
        avm_rgroup *g = h->groups[i];
        while (g->pend != NULL && g->pend->seq <= h->sync_done) {
            pending *p = g->pend;
            g->pend = p->next;
            if (g->pend == NULL)
                g->pend_tail = &g->pend;
            if (p->snapshot) {
                struct raft_event ev = {.type = RAFT_PERSISTED_SNAPSHOT};
                ev.persisted_snapshot.metadata = p->meta;
                ev.persisted_snapshot.offset = 0;
                ev.persisted_snapshot.last = true;
                if (g->stopped)
                    raft_configuration_close(&p->meta.configuration);
                else
                    step(g, &ev);
            } else {
                /* Entries still in the log as written (same index and term, so
                 * the same prefix: log matching). If a later append replaced
                 * them, the sync of that append reports them. */
                uint64_t idx = p->index;
                if (!g->stopped && !g->r.snapshot.installing && idx > g->r.last_stored &&
                    idx <= log_last(g) && term_of(g, idx) == p->term) {
                    struct raft_event ev = {.type = RAFT_PERSISTED_ENTRIES};
                    ev.persisted_entries.index = idx;
                    step(g, &ev);
                }
            }
            free(p);
        }
        release_held(g);
    }
}

void avm_rhost_synced(avm_rhost *h)
{
    h->sync_in++;
    if (h->depth > 0)
        return; /* processed when the entry point in progress ends */
    enter(h);
    leave(h);
}

/* --- Public entry points -------------------------------------------------------------
 */

int avm_rhost_new(const avm_rhost_config *cfg, avm_rhost **out, char *errmsg,
                  size_t errlen)
{
    *out = NULL;
    if (cfg->self == NULL || strlen(cfg->self) == 0 ||
        strlen(cfg->self) >= AVM_RHOST_NAME_MAX) {
        snprintf(errmsg, errlen, "node name must be 1..%d bytes", AVM_RHOST_NAME_MAX - 1);
        return AVM_EINVAL;
    }
    const avm_rhost_io *io = &cfg->io;
    if (io->save_term_vote == NULL || io->save_entries == NULL ||
        io->save_compact == NULL || io->save_install == NULL || io->sync == NULL ||
        io->send == NULL || io->apply == NULL || io->snapshot_data == NULL ||
        io->now == NULL) {
        snprintf(errmsg, errlen, "raft host: an I/O callback is missing");
        return AVM_EINVAL;
    }
    avm_rhost *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return AVM_ENOMEM;
    h->cfg = *cfg;
    snprintf(h->self, sizeof(h->self), "%s", cfg->self);
    h->cfg.self = h->self;
    h->io = cfg->io;
    h->self_id = avm_rhost_node_id(h->self);
#define DEF(f, v)                                                                        \
    if (h->cfg.f == 0)                                                                   \
    h->cfg.f = (v)
    DEF(election_ms, DEFAULT_ELECTION_MS);
    DEF(heartbeat_ms, DEFAULT_HEARTBEAT_MS);
    DEF(max_inflight, DEFAULT_INFLIGHT);
    DEF(snapshot_every, DEFAULT_SNAP_EVERY);
    DEF(snapshot_trailing, DEFAULT_SNAP_TRAILING);
    DEF(tick_ms, DEFAULT_TICK_MS);
#undef DEF
    if (h->cfg.heartbeat_ms >= h->cfg.election_ms) {
        snprintf(errmsg, errlen,
                 "the heartbeat (%u ms) must be shorter than the election "
                 "timeout (%u ms)",
                 h->cfg.heartbeat_ms, h->cfg.election_ms);
        free(h);
        return AVM_EINVAL;
    }
    h->random = cfg->seed != 0 ? cfg->seed : (unsigned)h->self_id;
    *out = h;
    return 0;
}

void avm_rhost_free(avm_rhost *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; i < h->ngroups; i++)
        group_free(h->groups[i]);
    free(h->groups);
    free(h->heard);
    free(h);
}

/* Whether the configuration of the loaded state (its last configuration entry,
 * else its snapshot's) has one voter, this node. */
static bool sole_voter(const avm_rgroup *g, const avm_rload *st)
{
    const uint8_t *conf = NULL;
    size_t len = 0;
    for (size_t i = st->n; i > 0 && conf == NULL; i--)
        if (st->e[i - 1].type == RAFT_CHANGE) {
            conf = st->e[i - 1].data;
            len = st->e[i - 1].len;
        }
    if (conf == NULL && st->has_snap) {
        conf = st->snap.conf;
        len = st->snap.conf_len;
    }
    if (conf == NULL)
        return false;
    struct raft_configuration c;
    struct raft_buffer b = {(void *)conf, len};
    if (raft_configuration_decode(&b, &c) != 0)
        return false;
    unsigned voters = 0;
    bool me = false;
    for (unsigned i = 0; i < c.n; i++) {
        if (c.servers[i].role != RAFT_VOTER)
            continue;
        voters++;
        me |= c.servers[i].id == g->r.id;
    }
    raft_configuration_close(&c);
    return voters == 1 && me;
}

/* Starts g from loaded state (RAFT_START). */
static int start_group(avm_rgroup *g, const avm_rload *st, char *errmsg, size_t errlen)
{
    struct raft_event ev = {.type = RAFT_START};
    struct raft_snapshot_metadata md;
    struct raft_entry *es = NULL;
    ev.start.term = st->term;
    ev.start.voted_for = st->vote;
    ev.start.metadata = NULL;
    /* A sole voter elects itself at start without a new term (raft 0.22.1): after
     * losing unsynced entries it would append different ones under (index, term)
     * pairs a stand-by may already hold, breaking log matching. So it starts in a
     * term of its own: term + 1, voted for itself, durable before any message. */
    if (st->term > 0 && sole_voter(g, st)) {
        int rv = g->h->io.save_term_vote(g->h->io.arg, g->name, st->term + 1, g->r.id);
        if (rv != 0) {
            snprintf(errmsg, errlen, "group %s: saving its term: %s", g->name,
                     avm_strerror(rv));
            return rv;
        }
        g->h->dirty = true;
        g->hold_until = g->h->sync_req + 1;
        ev.start.term = st->term + 1;
        ev.start.voted_for = g->r.id;
    }
    if (st->has_snap) {
        memset(&md, 0, sizeof(md));
        md.index = st->snap.index;
        md.term = st->snap.term;
        md.configuration_index = st->snap.conf_index;
        struct raft_buffer b = {(void *)st->snap.conf, st->snap.conf_len};
        if (raft_configuration_decode(&b, &md.configuration) != 0) {
            snprintf(errmsg, errlen,
                     "group %s: its snapshot's configuration does not "
                     "decode",
                     g->name);
            return AVM_EMALFORMED;
        }
        ev.start.metadata = &md;
        g->snap_index = md.index;
        g->snap_term = md.term;
        if (set_snap_conf(g, st->snap.conf, st->snap.conf_len, st->snap.conf_index) !=
            0) {
            raft_configuration_close(&md.configuration);
            return AVM_ENOMEM;
        }
    }
    g->first = st->n > 0 ? st->first_index : g->snap_index + 1;
    if (st->n > 0 && (st->first_index == 0 || st->first_index > g->snap_index + 1 ||
                      (!st->has_snap && st->first_index != 1) ||
                      (!st->has_snap && st->e[0].type != RAFT_CHANGE))) {
        if (st->has_snap)
            raft_configuration_close(&md.configuration);
        snprintf(errmsg, errlen,
                 "group %s: its log (from %llu) does not follow its "
                 "snapshot (at %llu) or does not begin with a configuration",
                 g->name, (unsigned long long)st->first_index,
                 (unsigned long long)g->snap_index);
        return AVM_EMALFORMED;
    }
    /* raft reads the entries (and frees them if it fails): its own copies. */
    if (st->n > 0) {
        es = raft_calloc(st->n, sizeof(*es));
        int rv = es == NULL ? AVM_ENOMEM : 0;
        for (size_t i = 0; rv == 0 && i < st->n; i++) {
            rv = log_append(g, st->e[i].term, st->e[i].type, st->e[i].data, st->e[i].len);
            void *copy = rv == 0 ? raft_malloc(st->e[i].len ? st->e[i].len : 1) : NULL;
            if (copy == NULL) {
                rv = AVM_ENOMEM;
                break;
            }
            if (st->e[i].len)
                memcpy(copy, st->e[i].data, st->e[i].len);
            es[i] = (struct raft_entry){.term = st->e[i].term,
                                        .type = (enum raft_entry_type)st->e[i].type,
                                        .buf = {copy, st->e[i].len},
                                        .batch = copy};
        }
        if (rv != 0) {
            for (size_t i = 0; es != NULL && i < st->n; i++)
                raft_free(es[i].batch);
            raft_free(es);
            if (st->has_snap)
                raft_configuration_close(&md.configuration);
            return rv;
        }
    }
    ev.start.start_index = g->first;
    ev.start.entries = es;
    ev.start.n_entries = (unsigned)st->n;
    g->applied = g->snap_index;
    g->fsm_applied = st->applied;
    g->started = true;
    g->last_state = -1;
    int rv = step(g, &ev);
    if (rv == 0) {
        for (size_t i = 0; i < st->n; i++)
            raft_free(es[i].batch);
        raft_free(es);
    }
    if (rv != 0) {
        snprintf(errmsg, errlen, "group %s: %s", g->name, g->why);
        return AVM_EIO;
    }
    return 0;
}

int avm_rhost_start(avm_rhost *h, const char *group, const avm_rload *st, char *errmsg,
                    size_t errlen)
{
    avm_rgroup *g;
    int rv = group_new(h, group, &g, errmsg, errlen);
    if (rv != 0)
        return rv;
    enter(h);
    rv = start_group(g, st, errmsg, errlen);
    if (rv != 0)
        avm_rhost_drop(h, group);
    leave(h);
    return rv;
}

int avm_rhost_bootstrap(avm_rhost *h, const char *group, const char *const *members,
                        size_t n, char *errmsg, size_t errlen)
{
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    bool self = false;
    for (size_t i = 0; i < n; i++) {
        if (strlen(members[i]) == 0 || strlen(members[i]) >= AVM_RHOST_NAME_MAX) {
            raft_configuration_close(&conf);
            snprintf(errmsg, errlen, "a member name must be 1..%d bytes",
                     AVM_RHOST_NAME_MAX - 1);
            return AVM_EINVAL;
        }
        if (raft_configuration_add(&conf, avm_rhost_node_id(members[i]), members[i],
                                   RAFT_VOTER) != 0) {
            raft_configuration_close(&conf);
            snprintf(errmsg, errlen, "member %s is named twice", members[i]);
            return AVM_EINVAL;
        }
        self |= strcmp(members[i], h->self) == 0;
    }
    if (!self || n > 16) {
        raft_configuration_close(&conf);
        snprintf(errmsg, errlen,
                 n > 16 ? "at most 16 members"
                        : "this node (%s) is not among the members",
                 h->self);
        return AVM_EINVAL;
    }
    struct raft_buffer b;
    int rv = raft_configuration_encode(&conf, &b);
    raft_configuration_close(&conf);
    if (rv != 0)
        return AVM_ENOMEM;
    avm_rgroup *g;
    rv = group_new(h, group, &g, errmsg, errlen);
    if (rv != 0) {
        raft_free(b.base);
        return rv;
    }
    enter(h);
    avm_rentry e = {1, RAFT_CHANGE, b.base, b.len};
    rv = h->io.save_term_vote(h->io.arg, group, 1, 0);
    if (rv == 0)
        rv = h->io.save_entries(h->io.arg, group, 1, &e, 1);
    if (rv != 0) {
        snprintf(errmsg, errlen, "group %s: saving its first entry: %s", group,
                 avm_strerror(rv));
    } else {
        h->dirty = true;
        avm_rload st = {.term = 1, .first_index = 1, .e = &e, .n = 1};
        rv = start_group(g, &st, errmsg, errlen);
    }
    raft_free(b.base);
    if (rv != 0)
        avm_rhost_drop(h, group);
    leave(h);
    return rv;
}

int avm_rhost_join(avm_rhost *h, const char *group, char *errmsg, size_t errlen)
{
    avm_rgroup *g;
    int rv = group_new(h, group, &g, errmsg, errlen);
    if (rv != 0)
        return rv;
    enter(h);
    rv = h->io.save_term_vote(h->io.arg, group, 0, 0);
    if (rv == 0) {
        h->dirty = true;
        avm_rload st = {0};
        rv = start_group(g, &st, errmsg, errlen);
    } else {
        snprintf(errmsg, errlen, "group %s: %s", group, avm_strerror(rv));
    }
    if (rv != 0)
        avm_rhost_drop(h, group);
    leave(h);
    return rv;
}

static void note_heard(avm_rhost *h, const char *from)
{
    uint64_t t = now_ms(h);
    for (size_t i = 0; i < h->nheard; i++) {
        if (strcmp(h->heard[i].name, from) == 0) {
            h->heard[i].at = t;
            return;
        }
    }
    if (h->nheard == h->capheard) {
        size_t cap = h->capheard ? h->capheard * 2 : 8;
        heard *hs = realloc(h->heard, cap * sizeof(*hs));
        if (hs == NULL)
            return;
        h->heard = hs;
        h->capheard = cap;
    }
    snprintf(h->heard[h->nheard].name, sizeof(h->heard[h->nheard].name), "%s", from);
    h->heard[h->nheard++].at = t;
}

static uint64_t heard_at(const avm_rhost *h, const char *name)
{
    for (size_t i = 0; i < h->nheard; i++)
        if (strcmp(h->heard[i].name, name) == 0)
            return h->heard[i].at;
    return 0;
}

void avm_rhost_receive(avm_rhost *h, const char *from, const uint8_t *frame, size_t len)
{
    char group[AVM_RHOST_NAME_MAX];
    struct raft_message m;
    char err[160];
    h->st.messages_in++;
    if (strlen(from) == 0 || strlen(from) >= AVM_RHOST_NAME_MAX) {
        h->st.bad_frames++;
        snprintf(h->st.last_bad, sizeof(h->st.last_bad), "a frame from a bad node name");
        return;
    }
    if (avm_rframe_decode(frame, len, group, &m, err, sizeof(err)) != 0) {
        h->st.bad_frames++;
        snprintf(h->st.last_bad, sizeof(h->st.last_bad), "from %s: %s", from, err);
        return;
    }
    note_heard(h, from);
    avm_rgroup *g = avm_rhost_group(h, group);
    if (g == NULL || !g->started || g->stopped) {
        avm_rframe_free(&m);
        return; /* not a replica here (yet, or any more) */
    }
    m.server_id = avm_rhost_node_id(from);
    m.server_address = from;
    /* A pre-vote answer to a node that is no longer a candidate: raft 0.22.1 reads
     * candidate_state.in_pre_vote before checking the state, and that byte aliases a
     * byte of the follower's leader address (a heap pointer): depending on it, the
     * follower takes the answer's term (its own + 1) and disrupts a healthy leader.
     * raft would ignore it after its state check: it is dropped here. */
    if (m.type == RAFT_REQUEST_VOTE_RESULT && m.request_vote_result.pre_vote &&
        g->r.state != RAFT_CANDIDATE) {
        h->st.stale_dropped++;
        return;
    }
    /* A rejection of an index the follower has since acknowledged is stale (a
     * reordered or repeated answer): raft 0.22.1 would then set the follower's
     * next index at or below its match index, after which it computes a huge
     * number of entries in flight and never sends that follower an entry again. */
    if (m.type == RAFT_APPEND_ENTRIES_RESULT && m.append_entries_result.rejected > 0 &&
        m.append_entries_result.term <= g->r.current_term && g->r.state == RAFT_LEADER) {
        /* (one of a newer term is never stale: it makes this leader step down) */
        raft_index mi;
        if (raft_match_index(&g->r, m.server_id, &mi) == 0 &&
            m.append_entries_result.rejected <= mi) {
            h->st.stale_dropped++;
            return;
        }
    }
    /* An AppendEntries of an older term: raft 0.22.1 answers it with a result whose
     * last_log_index is never set. The host answers it instead, as raft means to:
     * rejected, with our (newer) term, which makes the sender step down. */
    if (m.type == RAFT_APPEND_ENTRIES && m.append_entries.term < g->r.current_term) {
        struct raft_message rep = {.type = RAFT_APPEND_ENTRIES_RESULT};
        rep.append_entries_result.version =
            2; /* MESSAGE__APPEND_ENTRIES_RESULT_VERSION */
        rep.append_entries_result.term = g->r.current_term;
        rep.append_entries_result.rejected =
            m.append_entries.prev_log_index > 0 ? m.append_entries.prev_log_index : 1;
        rep.append_entries_result.last_log_index = raft_last_index(&g->r);
        rep.append_entries_result.features = 1; /* MESSAGE__FEATURE_CAPACITY */
        rep.append_entries_result.capacity = g->r.capacity;
        avm_rframe_free(&m);
        uint8_t *out;
        size_t flen;
        if (avm_rframe_encode(g->name, &rep, &out, &flen) == 0) {
            enter(h);
            emit_frame(g, from, out, flen);
            leave(h);
        }
        h->st.stale_dropped++;
        return;
    }
    /* An InstallSnapshot of an older term: raft 0.22.1 answers it with a result
     * whose last_log_index is never set (stack garbage), which the sender, leader
     * again in a later term, could take for a match. Dropped: the sender learns
     * our term from any other answer. */
    if (m.type == RAFT_INSTALL_SNAPSHOT && m.install_snapshot.term < g->r.current_term) {
        avm_rframe_free(&m);
        h->st.stale_dropped++;
        return;
    }
    /* raft 0.22.1 records a configuration change carried by an AppendEntries at the
     * index of the message's FIRST new entry, not its own: the change would never
     * count as committed, and every snapshot would carry an old member list. So a
     * change goes to raft only as the first entry of a message: the message is cut
     * before any later one, and the leader sends the rest next (the answer shows
     * where the follower stopped). */
    if (m.type == RAFT_APPEND_ENTRIES) {
        struct raft_append_entries *ae = &m.append_entries;
        for (unsigned i = 1; i < ae->n_entries; i++) {
            if (ae->entries[i].type == RAFT_CHANGE) {
                ae->n_entries = i; /* the batch stays one allocation */
                h->st.cut++;
                break;
            }
        }
    }
    /* raft ignores an InstallSnapshot while it installs another, without taking
     * its data and configuration: they stay ours to free. */
    bool ignored_install = m.type == RAFT_INSTALL_SNAPSHOT && g->r.snapshot.installing &&
                           m.install_snapshot.term >= g->r.current_term;
    /* An AppendEntries anchored below our snapshot, at an entry compaction dropped:
     * raft 0.22.1 rejects it ("missing previous entry"), and the leader, which
     * knows it matched there, ignores the rejection: the follower would be stuck.
     * Entries up to the snapshot are committed, so they match the leader's; anchor
     * the message at the snapshot and drop the entries it already covers. */
    if (m.type == RAFT_APPEND_ENTRIES && g->r.state == RAFT_FOLLOWER &&
        m.append_entries.prev_log_index < g->snap_index &&
        log_at(g, m.append_entries.prev_log_index) == NULL) {
        struct raft_append_entries *ae = &m.append_entries;
        uint64_t skip = g->snap_index - ae->prev_log_index;
        if (skip >= ae->n_entries) {
            if (ae->n_entries > 0) {
                raft_free(ae->entries[0].batch);
                raft_free(ae->entries);
            }
            ae->entries = NULL;
            ae->n_entries = 0;
        } else {
            memmove(ae->entries, ae->entries + skip,
                    (ae->n_entries - skip) * sizeof(*ae->entries));
            ae->n_entries -= (unsigned)skip;
        }
        ae->prev_log_index = g->snap_index;
        ae->prev_log_term = g->snap_term;
        h->st.reanchored++;
    }
    /* A stand-by being promoted may not have received the entry that makes it a
     * voter when the leader that appended it loses its quorum; the candidates that
     * have the entry then need its vote, and raft 0.22.1 refuses to vote as a
     * stand-by: the group would never elect a leader again (the simulation found it
     * growing a group of one). The vote is safe to give (the term, vote-once and
     * up-to-date rules still apply, and a candidate that does not count it ignores
     * it), so a stand-by answers votes as a voter would. */
    struct raft_server *me = NULL;
    if (m.type == RAFT_REQUEST_VOTE) {
        for (unsigned i = 0; i < g->r.configuration.n; i++)
            if (g->r.configuration.servers[i].id == g->r.id &&
                g->r.configuration.servers[i].role == RAFT_STANDBY)
                me = &g->r.configuration.servers[i];
        if (me != NULL) {
            me->role = RAFT_VOTER;
            /* A stand-by never times out of its leader (raft keeps it a follower
             * with the leader it knew), so it would also refuse votes for "having a
             * leader": forget it once the election timeout has passed without news,
             * as a voter would have. */
            if (g->r.state == RAFT_FOLLOWER &&
                now_ms(h) - g->r.election_timer_start >= g->r.election_timeout) {
                g->r.follower_state.current_leader.id = 0;
                raft_free(g->r.follower_state.current_leader.address); /* raft's copy */
                g->r.follower_state.current_leader.address = NULL;
            }
        }
    }
    enter(h);
    struct raft_event ev = {.type = RAFT_RECEIVE};
    ev.receive.message = &m;
    int rv = step(g, &ev);
    if (me != NULL) {
        /* The step did not change the configuration (a vote request carries none). */
        for (unsigned i = 0; i < g->r.configuration.n; i++)
            if (g->r.configuration.servers[i].id == g->r.id &&
                g->r.configuration.servers[i].role == RAFT_VOTER)
                g->r.configuration.servers[i].role = RAFT_STANDBY;
    }
    switch (m.type) {
    case RAFT_APPEND_ENTRIES:
        /* raft took the batch (to persist) or freed it, on every path, failures
         * included; the array is ours. */
        if (m.append_entries.n_entries > 0)
            raft_free(m.append_entries.entries);
        (void)rv;
        break;
    case RAFT_INSTALL_SNAPSHOT:
        if (ignored_install)
            avm_rframe_free(&m);
        break; /* else raft owns the data and configuration now */
    default:
        break;
    }
    leave(h);
}

void avm_rhost_tick(avm_rhost *h)
{
    enter(h);
    uint64_t t = now_ms(h);
    for (size_t i = 0; i < h->ngroups; i++) {
        avm_rgroup *g = h->groups[i];
        if (!g->started || g->stopped)
            continue;
        uint64_t due = raft_timeout(&g->r);
        if (due != 0 && due <= t) {
            struct raft_event ev = {.type = RAFT_TIMEOUT};
            step(g, &ev);
        }
        promote(g);
    }
    leave(h);
}

void avm_rhost_learn_commit(avm_rhost *h, const char *group, uint64_t index,
                            uint64_t term)
{
    avm_rgroup *g = avm_rhost_group(h, group);
    if (g == NULL || !g->started || g->stopped || index <= g->applied ||
        term_of(g, index) != term || g->r.snapshot.installing)
        return;
    if (index > g->learned)
        g->learned = index;
    enter(h);
    apply_committed(g);
    leave(h);
}

uint64_t avm_rgroup_term_at(const avm_rgroup *g, uint64_t index)
{
    return term_of(g, index);
}

void avm_rhost_fail(avm_rhost *h, const char *why)
{
    for (size_t i = 0; i < h->ngroups; i++)
        stop_group(h->groups[i], "storage failed: %s", why);
}

void avm_rhost_each(avm_rhost *h, void (*fn)(void *arg, avm_rgroup *g), void *arg)
{
    for (size_t i = 0; i < h->ngroups; i++)
        fn(arg, h->groups[i]);
}

size_t avm_rhost_count(const avm_rhost *h)
{
    return h->ngroups;
}

void avm_rhost_stats_get(const avm_rhost *h, avm_rhost_stats *out)
{
    *out = h->st;
}

/* --- Commands ------------------------------------------------------------------------
 */

/* n entries of one type in ONE step (one AppendEntries per follower); their data in
 * one allocation, as raft frees a submitted batch through its first entry. */
static int submit(avm_rgroup *g, uint8_t type, const uint8_t *const *data,
                  const size_t *lens, size_t n, uint64_t *index, uint64_t *term)
{
    if (g->stopped)
        return AVM_ESTATE;
    if (n == 0 || n > 65536)
        return AVM_EINVAL;
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i] > AVM_RHOST_MAX_ENTRY)
            return AVM_ETOOBIG;
        total += lens[i];
    }
    if (raft_state(&g->r) != RAFT_LEADER || raft_transferee(&g->r) != 0)
        return AVM_ESTATE;
    struct raft_entry *es = calloc(n, sizeof(*es));
    uint8_t *batch = raft_malloc(total ? total : 1);
    if (es == NULL || batch == NULL) {
        free(es);
        raft_free(batch);
        return AVM_ENOMEM;
    }
    uint64_t tm = raft_current_term(&g->r);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        if (lens[i])
            memcpy(batch + at, data[i], lens[i]);
        es[i] = (struct raft_entry){.term = tm,
                                    .type = (enum raft_entry_type)type,
                                    .buf = {batch + at, lens[i]},
                                    .batch = batch};
        at += lens[i];
    }
    uint64_t idx = raft_last_index(&g->r) + 1;
    enter(g->h);
    struct raft_event ev = {.type = RAFT_SUBMIT};
    ev.submit.entries = es;
    ev.submit.n = (unsigned)n;
    int rv = step(g, &ev);
    if (rv != 0)
        raft_free(batch); /* refused: raft did not take it */
    leave(g->h);
    free(es);
    if (rv != 0)
        return rv == RAFT_CANTCHANGE ? AVM_ESTATE : g->stopped ? AVM_EIO : AVM_ESTATE;
    if (index != NULL)
        *index = idx;
    if (term != NULL)
        *term = tm;
    return 0;
}

int avm_rgroup_propose(avm_rgroup *g, const uint8_t *data, size_t len, uint64_t *index,
                       uint64_t *term)
{
    return submit(g, RAFT_COMMAND, &data, &len, 1, index, term);
}

int avm_rgroup_propose_many(avm_rgroup *g, const uint8_t *const *data, const size_t *lens,
                            size_t n, uint64_t *first, uint64_t *term)
{
    return submit(g, RAFT_COMMAND, data, lens, n, first, term);
}

/* A configuration change: role RAFT_VOTER or RAFT_STANDBY sets node's role (adding
 * it if new), -1 removes it. */
static int change(avm_rgroup *g, const char *node, int role, char *errmsg, size_t errlen)
{
    if (raft_state(&g->r) != RAFT_LEADER) {
        snprintf(errmsg, errlen, "%s is not the leader of %s", g->h->self, g->name);
        return AVM_ESTATE;
    }
    if (g->r.configuration_uncommitted_index != 0 || g->promote[0] != '\0') {
        snprintf(errmsg, errlen, "%s: another membership change is in progress", g->name);
        return AVM_ESTATE;
    }
    if (strlen(node) == 0 || strlen(node) >= AVM_RHOST_NAME_MAX) {
        snprintf(errmsg, errlen, "bad node name");
        return AVM_EINVAL;
    }
    uint64_t id = avm_rhost_node_id(node);
    struct raft_configuration conf;
    raft_configuration_init(&conf);
    int present = -1; /* its role now */
    int rv = 0;
    for (unsigned i = 0; rv == 0 && i < g->r.configuration.n; i++) {
        const struct raft_server *s = &g->r.configuration.servers[i];
        int r = s->role;
        if (s->id == id) {
            present = s->role;
            if (role < 0)
                continue;
            r = role;
        }
        rv = raft_configuration_add(&conf, s->id, s->address, r);
    }
    if (rv == 0 && role >= 0 && present < 0)
        rv = raft_configuration_add(&conf, id, node, role);
    if (rv != 0 || (role >= 0 && present == role) || (role < 0 && present < 0)) {
        raft_configuration_close(&conf);
        if (rv != 0)
            return AVM_ENOMEM;
        snprintf(errmsg, errlen, "%s %s a replica of %s", node,
                 role >= 0 ? "is already" : "is not", g->name);
        return AVM_ESTATE;
    }
    if (role < 0 && conf.n == 0) {
        raft_configuration_close(&conf);
        snprintf(errmsg, errlen, "%s is the last replica of %s", node, g->name);
        return AVM_ESTATE;
    }
    struct raft_buffer b;
    rv = raft_configuration_encode(&conf, &b);
    raft_configuration_close(&conf);
    if (rv != 0)
        return AVM_ENOMEM;
    const uint8_t *cd = b.base;
    size_t cl = b.len;
    rv = submit(g, RAFT_CHANGE, &cd, &cl, 1, NULL, NULL);
    raft_free(b.base);
    if (rv != 0)
        snprintf(errmsg, errlen, "%s: the change was refused (%s)", g->name,
                 raft_errmsg(&g->r));
    return rv;
}

/* A new member joins as a stand-by (it replicates, does not vote) and becomes a
 * voter once it has caught up (promote, from the timer): added as a voter at once,
 * an empty replica would be counted in the quorum before it can vote (raft 0.22.1
 * denies votes from a server that is not a voter in its own configuration, which an
 * empty replica has not received yet): a group of one would deadlock. */
int avm_rgroup_add(avm_rgroup *g, const char *node, char *errmsg, size_t errlen)
{
    int rv = change(g, node, RAFT_STANDBY, errmsg, errlen);
    if (rv == AVM_ESTATE && g->promote[0] == '\0') {
        /* Already a stand-by (a promotion that did not finish): promote it. */
        for (unsigned i = 0; i < g->r.configuration.n; i++) {
            const struct raft_server *s = &g->r.configuration.servers[i];
            if (s->role == RAFT_STANDBY && strcmp(s->address, node) == 0) {
                snprintf(g->promote, sizeof(g->promote), "%s", node);
                return 0;
            }
        }
    }
    if (rv == 0)
        snprintf(g->promote, sizeof(g->promote), "%s", node);
    return rv;
}

/* The stand-by being added has caught up: make it a voter. */
static void promote(avm_rgroup *g)
{
    if (g->promote[0] == '\0')
        return;
    if (g->stopped || g->r.state != RAFT_LEADER) {
        g->promote[0] = '\0'; /* a new leader does not know; add it again */
        return;
    }
    raft_index mi;
    if (g->r.configuration_uncommitted_index != 0 ||
        raft_match_index(&g->r, avm_rhost_node_id(g->promote), &mi) != 0 ||
        mi < g->r.commit_index)
        return;
    char node[AVM_RHOST_NAME_MAX], err[160];
    snprintf(node, sizeof(node), "%s", g->promote);
    g->promote[0] = '\0';
    if (change(g, node, RAFT_VOTER, err, sizeof(err)) != 0)
        snprintf(g->promote, sizeof(g->promote), "%s", node); /* again later */
}

int avm_rgroup_remove(avm_rgroup *g, const char *node, char *errmsg, size_t errlen)
{
    if (strcmp(g->promote, node) == 0)
        g->promote[0] = '\0';
    return change(g, node, -1, errmsg, errlen);
}

int avm_rgroup_transfer(avm_rgroup *g, const char *node, char *errmsg, size_t errlen)
{
    if (g->stopped || raft_state(&g->r) != RAFT_LEADER) {
        snprintf(errmsg, errlen, "%s is not the leader of %s", g->h->self, g->name);
        return AVM_ESTATE;
    }
    struct raft_event ev = {.type = RAFT_TRANSFER};
    ev.transfer.server_id = node != NULL && *node ? avm_rhost_node_id(node) : 0;
    enter(g->h);
    int rv = step(g, &ev);
    leave(g->h);
    if (rv != 0) {
        snprintf(errmsg, errlen, "%s: cannot transfer leadership to %s (%s)", g->name,
                 node && *node ? node : "any voter", raft_strerror(rv));
        return rv == RAFT_BADID || rv == RAFT_NOTFOUND ? AVM_EINVAL : AVM_ESTATE;
    }
    return 0;
}

/* --- Inspection ----------------------------------------------------------------------
 */

const char *avm_rgroup_name(const avm_rgroup *g)
{
    return g->name;
}

bool avm_rgroup_is_leader(const avm_rgroup *g)
{
    return !g->stopped && g->started && g->r.state == RAFT_LEADER;
}

const char *avm_rgroup_leader(const avm_rgroup *g)
{
    if (g->stopped || !g->started)
        return NULL;
    if (g->r.state == RAFT_LEADER)
        return g->h->self;
    if (g->r.state == RAFT_FOLLOWER)
        return g->r.follower_state.current_leader.address;
    return NULL;
}

bool avm_rgroup_has_quorum(const avm_rgroup *g)
{
    if (!avm_rgroup_is_leader(g))
        return false;
    const avm_rhost *h = g->h;
    uint64_t t = h->io.now(h->io.arg);
    unsigned voters = 0, ok = 0;
    for (unsigned i = 0; i < g->r.configuration.n; i++) {
        const struct raft_server *s = &g->r.configuration.servers[i];
        if (s->role != RAFT_VOTER)
            continue;
        voters++;
        if (s->id == h->self_id) {
            ok++;
            continue;
        }
        uint64_t at = heard_at(h, s->address);
        ok += at != 0 && t - at <= h->cfg.election_ms;
    }
    return ok > voters / 2;
}

void avm_rgroup_info_get(const avm_rgroup *g, avm_rgroup_info *out)
{
    memset(out, 0, sizeof(*out));
    out->state = g->started ? g->r.state : RAFT_UNAVAILABLE;
    const char *l = avm_rgroup_leader(g);
    snprintf(out->leader, sizeof(out->leader), "%s", l ? l : "");
    out->term = g->r.current_term;
    out->commit = g->r.commit_index;
    out->applied = g->applied > g->fsm_applied ? g->applied : g->fsm_applied;
    out->last_index = log_last(g);
    out->snapshot_index = g->snap_index;
    out->stopped = g->stopped;
    out->conf_committed = g->r.configuration_uncommitted_index == 0;
    snprintf(out->why, sizeof(out->why), "%s", g->why);
    for (unsigned i = 0; i < g->r.configuration.n && out->nmembers < 16; i++) {
        const struct raft_server *s = &g->r.configuration.servers[i];
        avm_rgroup_member *m = &out->members[out->nmembers++];
        snprintf(m->name, sizeof(m->name), "%s", s->address);
        m->role = s->role;
        raft_index mi;
        m->match = -1;
        if (g->r.state == RAFT_LEADER &&
            raft_match_index((struct raft *)&g->r, s->id, &mi) == 0)
            m->match = (int64_t)mi;
        m->last_contact_ms = s->id == g->h->self_id ? g->h->io.now(g->h->io.arg)
                                                    : heard_at(g->h, s->address);
    }
}
