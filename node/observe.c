/* avmd's observability endpoints (observe.h): metrics, health, event streams.
 *
 * Event streams. While at least one /events stream is open the module follows the
 * executions' trace logs: after every round it reads the part of each execution's
 * log that it has not seen (avm_mgr_each_log: no copy, O(executions in memory)),
 * renders every new record as `avmctl exec trace --format json` renders an entry,
 * numbers it (the node's feed sequence) and keeps it in a ring of the last
 * RING_MAX entries (at most RING_BYTES). Every stream is a cursor over that ring:
 * a client that falls behind the ring's oldest entry gets a `dropped` event saying
 * how many it missed, and no client ever has more than PUMP_HIGH bytes queued, so
 * neither the loop nor memory waits for a slow reader. A stream of one execution
 * (?exec=ID) first replays that execution's whole log (from a copy, paced the same
 * way), then follows the ring; it ends when the execution has terminated. When the
 * last stream closes, following stops (the ring keeps its history).
 *
 * The module calls down only: the manager and the cluster's read-only accessors,
 * the store's statistics, and the HTTP server it owns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "http.h"
#include "lmdb_store.h"
#include "msc.h"
#include "observe.h"

#define RING_MAX 10000         /* entries kept for ?since */
#define RING_BYTES (16u << 20) /* and at most this many bytes of them */
#define PUMP_HIGH (256u << 10) /* bytes queued to a client before we wait */
#define CLIENT_MAX_PENDING (1u << 20)
#define MAX_CONNS 64
#define ID_MAX 48
#define TRACK_BUCKETS 1024
#define OFF_UNKNOWN SIZE_MAX /* known at the start of following, not in memory */

enum { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* One entry of the feed. body is `"exec":ID,"index":N,...}`: an entry object
 * without its opening brace and without seq, which each stream adds. */
typedef struct entry {
    uint64_t seq;
    uint64_t index;
    char exec[ID_MAX];
    char *body;
    size_t len;
} entry;

/* Where following stands for one execution. */
typedef struct track {
    char id[ID_MAX];
    size_t off;       /* bytes of its log seen (OFF_UNKNOWN: not yet) */
    uint64_t index;   /* entries seen */
    uint64_t lamport; /* the last chart record's stamp (spec events carry it) */
    bool seen;        /* met in this poll */
    struct track *next;
} track;

typedef struct stream {
    avmd_obs *o;
    avm_http_conn *c;
    struct stream *prev, *next;
    bool one;          /* ?exec=ID */
    char exec[ID_MAX]; /* when one */
    uint64_t cursor;   /* the next feed seq to look at */
    /* Replay of one execution's log (one): a copy, read from pos. */
    avm_buf log;
    size_t pos;
    bool replaying;
    uint64_t index, since, lamport;
    bool ending; /* the execution terminated: end once caught up */
} stream;

struct avmd_obs {
    avmd_obs_config cfg;
    char name[64], version[32];
    avm_http *http;
    /* Commit latency measured by rounds. */
    avm_cluster_hist local;
    uint64_t last_commits;
    /* The feed. */
    entry *ring;                  /* RING_MAX slots; seq s at ring[s % RING_MAX] */
    uint64_t first_seq, next_seq; /* entries [first_seq, next_seq) are held */
    size_t ring_bytes;
    stream *streams;
    size_t nstreams;
    bool following;
    track *tracks[TRACK_BUCKETS];
    uint64_t streams_total, dropped_total, clients_dropped;
};

static void logf1(avmd_obs *o, int level, const char *event, const char *k, const char *v)
{
    if (o->cfg.log != NULL)
        o->cfg.log(o->cfg.arg, level, event, k, v);
}

/* --- Rendering a trace record ------------------------------------------------- */

/* The record at p[0..n) (one msgpack array): its length in *used, its stamp and
 * type. 0, or an error (a log that does not decode: the rest is skipped). */
static int record_head(const uint8_t *p, size_t n, size_t *used, uint64_t *ts,
                       uint64_t *type)
{
    avm_val v;
    int rv = avm_val_decode(p, n, 0, &v, used);
    if (rv != 0)
        return rv;
    rv = AVM_EMALFORMED;
    if (v.kind == AVM_LIST && avm_list_len(v) == 8 && avm_list_at(v, 0).kind == AVM_INT &&
        avm_list_at(v, 1).kind == AVM_INT) {
        *ts = (uint64_t)avm_list_at(v, 0).u.i;
        *type = (uint64_t)avm_list_at(v, 1).u.i;
        rv = 0;
    }
    avm_val_release(v);
    return rv;
}

/* Appends the body of entry (exec, index) for the record p[0..n) to out: the
 * entry exactly as avmctl's JSON chart shows it, with the execution and its
 * index first. *lamport carries the stamp of the latest chart record. */
static int render_record(const char *exec, uint64_t index, const uint8_t *p, size_t n,
                         uint64_t ts, uint64_t type, uint64_t *lamport, avm_buf *out)
{
    avm_buf tmp;
    avm_buf_init(&tmp);
    char err[160];
    int rv = avm_msc_render(p, n, AVM_MSC_JSON, NULL, &tmp, err, sizeof(err));
    static const char pre[] = "{\"execution\":null,\"entries\":[";
    static const char ev[] = "{\"kind\":\"event\",\"lamport\":0,";
    size_t pl = sizeof(pre) - 1;
    if (rv != 0 || tmp.len < pl + 3 || memcmp(tmp.data, pre, pl) != 0) {
        avm_buf_free(&tmp);
        return rv != 0 ? rv : AVM_EMALFORMED;
    }
    const char *e = tmp.data + pl; /* the entry, up to "]}" */
    size_t elen = tmp.len - pl - 2;
    avm_buf_puts(out, "\"exec\":");
    avm_json_str(out, exec, strlen(exec));
    avm_buf_printf(out, ",\"index\":%llu,", (unsigned long long)index);
    if (type >= AVM_MSC_CALL) {
        *lamport = ts;
        avm_buf_put(out, e + 1, elen - 1);
    } else if (elen > sizeof(ev) - 1 && memcmp(e, ev, sizeof(ev) - 1) == 0) {
        avm_buf_printf(out, "\"kind\":\"event\",\"lamport\":%llu,",
                       (unsigned long long)*lamport);
        avm_buf_put(out, e + sizeof(ev) - 1, elen - (sizeof(ev) - 1));
    } else {
        avm_buf_put(out, e + 1, elen - 1);
    }
    avm_buf_free(&tmp);
    return out->err;
}

/* Counts the records of log[0..n) and finds the last chart stamp. */
static void count_records(const uint8_t *log, size_t n, uint64_t *count,
                          uint64_t *lamport)
{
    size_t pos = 0;
    *count = 0;
    while (pos < n) {
        size_t used;
        uint64_t ts, type;
        if (record_head(log + pos, n - pos, &used, &ts, &type) != 0)
            break;
        if (type >= AVM_MSC_CALL)
            *lamport = ts;
        (*count)++;
        pos += used;
    }
}

/* --- The feed ----------------------------------------------------------------- */

static entry *ring_at(avmd_obs *o, uint64_t seq)
{
    return &o->ring[seq % RING_MAX];
}

static void ring_drop_oldest(avmd_obs *o)
{
    entry *e = ring_at(o, o->first_seq);
    o->ring_bytes -= e->len;
    free(e->body);
    e->body = NULL;
    o->first_seq++;
}

static void pump(stream *s);

static void publish(avmd_obs *o, const char *exec, uint64_t index, avm_buf *body)
{
    if (body->err != 0 || body->len == 0)
        return;
    while (o->next_seq - o->first_seq >= RING_MAX ||
           (o->next_seq > o->first_seq && o->ring_bytes + body->len > RING_BYTES))
        ring_drop_oldest(o);
    entry *e = ring_at(o, o->next_seq);
    e->body = malloc(body->len);
    if (e->body == NULL)
        return;
    memcpy(e->body, body->data, body->len);
    e->len = body->len;
    e->seq = o->next_seq++;
    e->index = index;
    snprintf(e->exec, sizeof(e->exec), "%s", exec);
    o->ring_bytes += e->len;
}

static track *track_find(avmd_obs *o, const char *id, bool add)
{
    uint32_t h = 2166136261u;
    for (const char *p = id; *p; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    track **b = &o->tracks[h % TRACK_BUCKETS];
    for (track *t = *b; t != NULL; t = t->next)
        if (strcmp(t->id, id) == 0)
            return t;
    if (!add)
        return NULL;
    track *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    snprintf(t->id, sizeof(t->id), "%s", id);
    t->next = *b;
    *b = t;
    return t;
}

static void tracks_clear(avmd_obs *o)
{
    for (size_t i = 0; i < TRACK_BUCKETS; i++) {
        while (o->tracks[i] != NULL) {
            track *t = o->tracks[i];
            o->tracks[i] = t->next;
            free(t);
        }
    }
}

/* Reads what execution id added to its log (in memory: log[0..end-base) holds
 * bytes base..end of the whole log) and publishes it. */
static void follow_one(avmd_obs *o, const char *id, const uint8_t *log, size_t base,
                       size_t end)
{
    track *t = track_find(o, id, true);
    if (t == NULL)
        return;
    if (t->off == OFF_UNKNOWN || t->off > end) {
        /* Known before we followed (its past is history, not news), or its log
         * was cut back (a forwarded effect's entries, logged again later): start
         * at its end. */
        uint64_t n = 0, lamport = t->lamport;
        if (base == 0) {
            count_records(log, end, &n, &lamport);
            t->index = n;
            t->lamport = lamport;
        }
        t->off = end;
        return;
    }
    if (t->off < base)
        t->off = base; /* a visitor: its earlier part is on its owner */
    avm_buf body;
    avm_buf_init(&body);
    while (t->off < end) {
        size_t used;
        uint64_t ts, type;
        const uint8_t *p = log + (t->off - base);
        if (record_head(p, end - t->off, &used, &ts, &type) != 0) {
            t->off = end;
            break;
        }
        body.len = 0;
        if (render_record(id, t->index, p, used, ts, type, &t->lamport, &body) == 0)
            publish(o, id, t->index, &body);
        t->index++;
        t->off += used;
    }
    avm_buf_free(&body);
}

static void follow_cb(void *arg, const char *id, const uint8_t *log, size_t base,
                      size_t end)
{
    follow_one(arg, id, log, base, end);
}

static void pump_all(avmd_obs *o)
{
    stream *s = o->streams;
    while (s != NULL) {
        stream *next = s->next; /* pump may close s (not free it: closed does) */
        pump(s);
        s = next;
    }
}

static void poll_traces(avmd_obs *o)
{
    if (!o->following)
        return;
    avm_mgr_each_log(o->cfg.m, follow_cb, o);
    pump_all(o);
}

/* Following starts: every execution known now is history. */
static void mark_known(void *arg, const avm_mgr_info *i)
{
    avmd_obs *o = arg;
    track *t = track_find(o, i->id, true);
    if (t != NULL)
        t->off = OFF_UNKNOWN;
}

static void follow_start(avmd_obs *o)
{
    if (o->following)
        return;
    tracks_clear(o);
    avm_mgr_each(o->cfg.m, mark_known, o);
    o->following = true;
    avm_mgr_each_log(o->cfg.m, follow_cb, o); /* sets the known ones' ends */
}

static void follow_stop(avmd_obs *o)
{
    o->following = false;
    tracks_clear(o);
}

/* --- Streams -------------------------------------------------------------------- */

static void send_frame(stream *s, avm_buf *out, uint64_t seq, const entry *e)
{
    avm_buf_printf(out, "id: %llu\ndata: {\"seq\":%llu,", (unsigned long long)seq,
                   (unsigned long long)seq);
    avm_buf_put(out, e->body, e->len);
    avm_buf_puts(out, "\n\n");
    (void)s;
}

/* Sends what s may send now: the rest of its replay, then the feed from its
 * cursor, until PUMP_HIGH bytes wait for the client. */
static void pump(stream *s)
{
    avmd_obs *o = s->o;
    if (s->c == NULL)
        return;
    avm_buf out;
    avm_buf_init(&out);
    size_t budget =
        avm_http_pending(s->c) < PUMP_HIGH ? PUMP_HIGH - avm_http_pending(s->c) : 0;
    while (s->replaying && out.len < budget) {
        if (s->pos >= s->log.len) {
            s->replaying = false;
            avm_buf_free(&s->log);
            break;
        }
        size_t used;
        uint64_t ts, type;
        const uint8_t *p = (const uint8_t *)s->log.data + s->pos;
        if (record_head(p, s->log.len - s->pos, &used, &ts, &type) != 0) {
            s->pos = s->log.len;
            continue;
        }
        if (s->index >= s->since) {
            avm_buf body;
            avm_buf_init(&body);
            entry e = {0};
            if (render_record(s->exec, s->index, p, used, ts, type, &s->lamport, &body) ==
                0) {
                e.body = body.data;
                e.len = body.len;
                send_frame(s, &out, s->index, &e);
            }
            avm_buf_free(&body);
        } else if (type >= AVM_MSC_CALL) {
            s->lamport = ts;
        }
        s->index++;
        s->pos += used;
    }
    if (!s->replaying) {
        if (s->cursor < o->first_seq) {
            uint64_t lost = o->first_seq - s->cursor;
            o->dropped_total += lost;
            avm_buf_printf(
                &out, "event: dropped\ndata: {\"dropped\":%llu,\"next_seq\":%llu}\n\n",
                (unsigned long long)lost, (unsigned long long)o->first_seq);
            s->cursor = o->first_seq;
        }
        while (s->cursor < o->next_seq && out.len < budget) {
            const entry *e = ring_at(o, s->cursor);
            uint64_t seq = s->cursor++;
            if (s->one) {
                if (strcmp(e->exec, s->exec) != 0 || e->index < s->index ||
                    e->index < s->since)
                    continue;
                s->index = e->index + 1;
                send_frame(s, &out, e->index, e);
            } else {
                send_frame(s, &out, seq, e);
            }
        }
    }
    bool done = s->ending && !s->replaying && s->cursor == o->next_seq;
    avm_http_conn *c = s->c;
    if (out.err == 0 && out.len > 0 && avm_http_send(c, out.data, out.len) != 0) {
        o->clients_dropped++;
        logf1(o, LOG_DEBUG, "http.events.dropped", "reason", "client too slow");
        s->c = NULL; /* closing: `closed` frees s */
        done = false;
    }
    avm_buf_free(&out);
    if (done) {
        avm_http_end(c);
        s->c = NULL; /* ended: `closed` frees s */
    }
}

static void stream_free(stream *s)
{
    avmd_obs *o = s->o;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        o->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    o->nstreams--;
    avm_buf_free(&s->log);
    free(s);
    if (o->nstreams == 0)
        follow_stop(o);
}

static void on_closed(void *arg, avm_http_conn *c)
{
    (void)arg;
    stream *s = avm_http_data(c);
    if (s != NULL)
        stream_free(s);
}

static void on_drained(void *arg, avm_http_conn *c)
{
    (void)arg;
    stream *s = avm_http_data(c);
    if (s != NULL)
        pump(s);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    if (*s == '\0')
        return false;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static void reply_text(avm_http_conn *c, int status, const char *text)
{
    avm_http_reply(c, status, "text/plain; charset=utf-8", text, strlen(text));
}

static void serve_events(avmd_obs *o, avm_http_conn *c, const char *query)
{
    char exec[256] = "", since_s[32] = "";
    uint64_t since = 0;
    bool has_exec = avm_http_query(query, "exec", exec, sizeof(exec));
    bool has_since = avm_http_query(query, "since", since_s, sizeof(since_s));
    if ((has_exec && exec[0] == '\0') || (has_since && !parse_u64(since_s, &since)) ||
        (!has_exec && strstr(query, "exec=") != NULL)) {
        reply_text(c, 400, "usage: /events[?exec=ID][&since=N]\n");
        return;
    }
    if (has_exec && strlen(exec) >= ID_MAX) {
        reply_text(c, 404, "no such execution\n");
        return;
    }
    stream *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        reply_text(c, 503, "out of memory\n");
        return;
    }
    s->o = o;
    avm_buf_init(&s->log);
    bool terminated = false;
    if (has_exec) {
        avm_mgr_info info;
        char err[256] = "";
        int rv = avm_mgr_info_get(o->cfg.m, exec, &info, err, sizeof(err));
        if (rv == 0)
            terminated = info.state == AVM_XS_TERMINATED;
        if (rv == 0)
            rv = avm_mgr_trace(o->cfg.m, exec, &s->log, err, sizeof(err));
        if (rv != 0) {
            avm_buf_free(&s->log);
            free(s);
            char msg[320];
            snprintf(msg, sizeof(msg), "%s\n", err[0] ? err : avm_strerror(rv));
            reply_text(c, rv == AVM_ENOTFOUND ? 404 : 503, msg);
            return;
        }
        s->one = true;
        memcpy(s->exec, exec, strlen(exec) + 1); /* shorter than ID_MAX: checked */
        s->replaying = true;
        s->since = since;
        s->ending = terminated;
    }
    if (avm_http_stream(c, "text/event-stream") != 0) {
        avm_buf_free(&s->log);
        free(s);
        return;
    }
    /* Following first: the ring's news starts after the replay's copy (both are
     * taken now, on the loop, with nothing in between). */
    follow_start(o);
    s->c = c;
    s->cursor = has_exec || !has_since ? o->next_seq : since;
    if (!has_exec && has_since && since > o->next_seq)
        s->cursor = o->next_seq;
    avm_http_set_data(c, s);
    s->next = o->streams;
    if (o->streams != NULL)
        o->streams->prev = s;
    o->streams = s;
    o->nstreams++;
    o->streams_total++;
    /* A comment first, so that clients see the stream open at once. */
    const char hello[] = ": avmd event stream\n\n";
    if (avm_http_send(c, hello, sizeof(hello) - 1) == 0)
        pump(s);
}

/* --- Metrics ------------------------------------------------------------------ */

static void label_val(avm_buf *b, const char *v)
{
    for (; *v != '\0'; v++) {
        if (*v == '\\' || *v == '"')
            avm_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            avm_buf_puts(b, "\\n");
        else
            avm_buf_put(b, v, 1);
    }
}

static void head(avm_buf *b, const char *name, const char *type, const char *help)
{
    avm_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{key="val"} v (key NULL: no labels). */
static void sample(avm_buf *b, const char *name, const char *key, const char *val,
                   double v)
{
    avm_buf_puts(b, name);
    if (key != NULL) {
        avm_buf_printf(b, "{%s=\"", key);
        label_val(b, val);
        avm_buf_puts(b, "\"}");
    }
    avm_buf_printf(b, " %.17g\n", v);
}

static void metric(avm_buf *b, const char *name, const char *type, const char *help,
                   double v)
{
    head(b, name, type, help);
    sample(b, name, NULL, NULL, v);
}

static void hist(avm_buf *b, const char *name, const char *key, const char *val,
                 const avm_cluster_hist *h)
{
    uint64_t cum = 0;
    for (size_t i = 0; i < AVM_CLUSTER_LAT_BUCKETS; i++) {
        cum += h->bucket[i];
        avm_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"%g\"} %llu\n", name, key, val,
                       (double)avm_cluster_lat_bounds_us[i] / 1e6,
                       (unsigned long long)cum);
    }
    avm_buf_printf(b, "%s_bucket{%s=\"%s\",le=\"+Inf\"} %llu\n", name, key, val,
                   (unsigned long long)h->count);
    avm_buf_printf(b, "%s_sum{%s=\"%s\"} %.9g\n", name, key, val,
                   (double)h->sum_us / 1e6);
    avm_buf_printf(b, "%s_count{%s=\"%s\"} %llu\n", name, key, val,
                   (unsigned long long)h->count);
}

static void hist_add(avm_cluster_hist *h, uint64_t us, uint64_t n)
{
    h->count += n;
    h->sum_us += us * n;
    for (size_t i = 0; i < AVM_CLUSTER_LAT_BUCKETS; i++) {
        if (us <= avm_cluster_lat_bounds_us[i]) {
            h->bucket[i] += n;
            break;
        }
    }
}

typedef struct group_rows {
    avm_buf *b;
    int which;
} group_rows;

static void group_row(void *arg, const avm_cluster_group *g)
{
    group_rows *x = arg;
    avm_buf *b = x->b;
    switch (x->which) {
    case 0:
        sample(b, "avm_raft_term", "controller", g->name, (double)g->term);
        break;
    case 1:
        sample(b, "avm_raft_is_leader", "controller", g->name, g->is_leader);
        break;
    case 2:
        sample(b, "avm_raft_commit_index", "controller", g->name, (double)g->commit);
        break;
    case 3:
        sample(b, "avm_raft_last_applied", "controller", g->name, (double)g->applied);
        break;
    case 4:
        sample(b, "avm_raft_last_index", "controller", g->name, (double)g->last_index);
        break;
    case 5:
        sample(b, "avm_raft_members", "controller", g->name, (double)g->members);
        break;
    case 6:
        avm_buf_puts(b, "avm_raft_leader{controller=\"");
        label_val(b, g->name);
        avm_buf_puts(b, "\",leader=\"");
        label_val(b, g->leader);
        avm_buf_puts(b, "\",role=\"");
        label_val(b, g->role);
        avm_buf_puts(b, "\"} 1\n");
        break;
    }
}

static void peer_row(void *arg, const avm_cluster_peer *p)
{
    group_rows *x = arg;
    switch (x->which) {
    case 0:
        sample(x->b, "avm_peer_reachable", "peer", p->name, p->reachable);
        break;
    case 1:
        sample(x->b, "avm_peer_phi", "peer", p->name, p->phi);
        break;
    case 2:
        sample(x->b, "avm_peer_silence_seconds", "peer", p->name,
               p->silent_ms < 0 ? -1.0 : (double)p->silent_ms / 1e3);
        break;
    }
}

static void serve_metrics(avmd_obs *o, avm_http_conn *c)
{
    avm_buf b;
    avm_buf_init(&b);
    avm_mgr_counts n;
    avm_mgr_counts_get(o->cfg.m, &n);

    head(&b, "avm_build_info", "gauge",
         "avmd's version and this node's name (always 1).");
    avm_buf_puts(&b, "avm_build_info{version=\"");
    label_val(&b, o->version);
    avm_buf_puts(&b, "\",node=\"");
    label_val(&b, o->name);
    avm_buf_puts(&b, "\"} 1\n");
    metric(&b, "avm_process_start_time_seconds", "gauge",
           "When the process started, in seconds since the Unix epoch.",
           (double)o->cfg.start_unix_ms / 1e3);

    metric(&b, "avm_commits_total", "counter",
           "Transactions committed by this node's executions.", (double)n.commits);
    metric(&b, "avm_commit_conflicts_total", "counter",
           "Commits refused by validation (commitTx returned false).",
           (double)n.conflicts);
    metric(&b, "avm_group_commits_total", "counter",
           "Group commits: LMDB write transactions made durable (one fsync each).",
           (double)n.batches);
    metric(&b, "avm_rounds_total", "counter", "Scheduling rounds of the manager.",
           (double)n.rounds);
    metric(&b, "avm_slices_total", "counter", "Slices run (one execution, one budget).",
           (double)n.slices);
    metric(&b, "avm_messages_total", "counter", "Messages posted to mailboxes.",
           (double)n.messages);
    metric(&b, "avm_checkpoint_bytes_total", "counter",
           "Bytes of execution states checkpointed with commits.", (double)n.ckpt_bytes);
    metric(&b, "avm_lamport_clock", "gauge", "The node's Lamport clock.",
           (double)n.lamport);

    head(&b, "avm_executions", "gauge",
         "Executions by status (running: running and not parked; the statuses are "
         "disjoint).");
    size_t parked = n.waiting_message + n.waiting_commit;
    sample(&b, "avm_executions", "status", "running",
           (double)(n.running > parked ? n.running - parked : 0));
    sample(&b, "avm_executions", "status", "waiting_message", (double)n.waiting_message);
    sample(&b, "avm_executions", "status", "waiting_commit", (double)n.waiting_commit);
    sample(&b, "avm_executions", "status", "suspended", (double)n.suspended);
    sample(&b, "avm_executions", "status", "terminated", (double)n.terminated);
    metric(&b, "avm_executions_runnable", "gauge",
           "Executions in the run queue (runnable at the next round).",
           (double)n.runnable);

    if (o->cfg.db != NULL) {
        avm_lmdb_stats st = {0};
        if (avm_lmdb_stats_get(o->cfg.db, &st) == 0) {
            metric(&b, "avm_objects", "gauge", "Object records in this node's store.",
                   (double)st.objects);
            metric(&b, "avm_store_map_used_bytes", "gauge",
                   "Bytes of the LMDB map in use.", (double)st.map_used);
            metric(&b, "avm_store_map_size_bytes", "gauge", "Size of the LMDB map.",
                   (double)st.map_size);
        }
    }

    head(&b, "avm_commit_duration_seconds", "histogram",
         "Commit latency. path=local: the round that made the commit durable (an "
         "upper bound from commitTx to disk); replicated: through one replicated "
         "controller's group, proposal to applied; cross: across controllers "
         "(two-phase commit).");
    hist(&b, "avm_commit_duration_seconds", "path", "local", &o->local);
    avm_cluster_stats cs = {0};
    if (o->cfg.cl != NULL)
        avm_cluster_stats_get(o->cfg.cl, &cs);
    hist(&b, "avm_commit_duration_seconds", "path", "replicated", &cs.commit_single);
    hist(&b, "avm_commit_duration_seconds", "path", "cross", &cs.commit_cross);

    head(&b, "avm_cross_tx_total", "counter",
         "Transactions across controllers driven from this node, by outcome.");
    sample(&b, "avm_cross_tx_total", "outcome", "committed", (double)cs.tx_committed);
    sample(&b, "avm_cross_tx_total", "outcome", "aborted", (double)cs.tx_aborted);
    sample(&b, "avm_cross_tx_total", "outcome", "unknown", (double)cs.tx_unknown);
    metric(&b, "avm_cross_tx_started_total", "counter",
           "Transactions across controllers started from this node.",
           (double)cs.tx_started);
    head(&b, "avm_cross_tx_steps_total", "counter",
         "Two-phase commit steps applied by the state machines of this node's "
         "replicas.");
    sample(&b, "avm_cross_tx_steps_total", "step", "prepared", (double)cs.tx_prepared);
    sample(&b, "avm_cross_tx_steps_total", "step", "finished", (double)cs.tx_finished);
    sample(&b, "avm_cross_tx_steps_total", "step", "recovered", (double)cs.tx_recovered);
    metric(&b, "avm_cross_tx_intents", "gauge",
           "Prepared intents held by this node's replicas.", (double)cs.tx_intents);
    metric(&b, "avm_cross_tx_inflight", "gauge",
           "Transactions across controllers in flight from this node.",
           (double)cs.tx_inflight);
    head(&b, "avm_bundles", "gauge", "Composed commits homed here, by state.");
    static const char *const bstates[4] = {"open", "committing", "committed", "aborted"};
    for (int i = 0; i < 4; i++)
        sample(&b, "avm_bundles", "state", bstates[i], (double)cs.bundles[i]);

    metric(&b, "avm_cluster_member", "gauge",
           "1 when the node is a cluster member (started with --listen).",
           o->cfg.cl != NULL);
    if (o->cfg.cl != NULL) {
        static const char *const gnames[7][3] = {
            {"avm_raft_term", "gauge", "Current Raft term of the controller's replica."},
            {"avm_raft_is_leader", "gauge", "1 when this node leads the controller."},
            {"avm_raft_commit_index", "gauge", "Commit index of the replica."},
            {"avm_raft_last_applied", "gauge", "Last index the replica applied."},
            {"avm_raft_last_index", "gauge", "Last index of the replica's log."},
            {"avm_raft_members", "gauge", "Members of the group's configuration."},
            {"avm_raft_leader", "gauge",
             "The leader the replica knows (label leader, \"\" unknown) and its role "
             "(always 1)."}};
        for (int k = 0; k < 7; k++) {
            head(&b, gnames[k][0], gnames[k][1], gnames[k][2]);
            group_rows x = {&b, k};
            avm_cluster_each_group(o->cfg.cl, group_row, &x);
        }
        static const char *const pnames[3][3] = {
            {"avm_peer_reachable", "gauge",
             "1 when the failure detector deems the member reachable."},
            {"avm_peer_phi", "gauge", "Phi-accrual suspicion of the member now."},
            {"avm_peer_silence_seconds", "gauge",
             "Seconds since the member was last heard (-1: never)."}};
        for (int k = 0; k < 3; k++) {
            head(&b, pnames[k][0], pnames[k][1], pnames[k][2]);
            group_rows x = {&b, k};
            avm_cluster_each_peer(o->cfg.cl, peer_row, &x);
        }
    }

    metric(&b, "avm_event_streams", "gauge", "Open /events streams.",
           (double)o->nstreams);
    metric(&b, "avm_event_streams_total", "counter", "/events streams opened.",
           (double)o->streams_total);
    metric(&b, "avm_event_stream_dropped_total", "counter",
           "Trace entries that streams missed because they fell behind the ring.",
           (double)o->dropped_total);
    metric(&b, "avm_event_stream_clients_dropped_total", "counter",
           "Stream clients disconnected for not reading.", (double)o->clients_dropped);

    if (b.err != 0) {
        avm_buf_free(&b);
        reply_text(c, 503, "out of memory\n");
        return;
    }
    avm_http_reply(c, 200, "text/plain; version=0.0.4; charset=utf-8", b.data, b.len);
    avm_buf_free(&b);
}

/* --- Health ----------------------------------------------------------------------- */

typedef struct leaderless {
    char name[64];
} leaderless;

static void find_leaderless(void *arg, const avm_cluster_group *g)
{
    leaderless *x = arg;
    if (x->name[0] == '\0' && (g->leader[0] == '\0' || strcmp(g->role, "stopped") == 0))
        snprintf(x->name, sizeof(x->name), "%s", g->name);
}

/* Why the node does not serve, or NULL when it does. */
static const char *unhealthy(avmd_obs *o, char *why, size_t len)
{
    const char *failure = avm_mgr_failure(o->cfg.m);
    if (failure != NULL) {
        snprintf(why, len, "store failure: %s", failure);
        return why;
    }
    if (o->cfg.cl != NULL) {
        leaderless x = {""};
        avm_cluster_each_group(o->cfg.cl, find_leaderless, &x);
        if (x.name[0] != '\0') {
            snprintf(why, len, "controller %s has no known leader", x.name);
            return why;
        }
    }
    return NULL;
}

static void serve_health(avmd_obs *o, avm_http_conn *c, bool ready)
{
    char why[400];
    const char *bad = unhealthy(o, why, sizeof(why));
    if (bad == NULL && ready && o->cfg.cl != NULL && !avm_cluster_settled(o->cfg.cl))
        bad = "starting: waiting for the controllers' leaders";
    if (bad != NULL) {
        char msg[420];
        snprintf(msg, sizeof(msg), "%s\n", bad);
        reply_text(c, 503, msg);
        return;
    }
    reply_text(c, 200, "ok\n");
}

/* --- Requests ----------------------------------------------------------------------- */

static void on_request(void *arg, avm_http_conn *c, const char *path, const char *query)
{
    avmd_obs *o = arg;
    if (strcmp(path, "/metrics") == 0)
        serve_metrics(o, c);
    else if (strcmp(path, "/healthz") == 0)
        serve_health(o, c, false);
    else if (strcmp(path, "/readyz") == 0)
        serve_health(o, c, true);
    else if (strcmp(path, "/events") == 0)
        serve_events(o, c, query);
    else
        reply_text(c, 404, "not found: try /metrics, /healthz, /readyz or /events\n");
}

int avmd_obs_start(const avmd_obs_config *cfg, avmd_obs **out, char *errmsg,
                   size_t errlen)
{
    *out = NULL;
    avmd_obs *o = calloc(1, sizeof(*o));
    entry *ring = calloc(RING_MAX, sizeof(*ring));
    if (o == NULL || ring == NULL) {
        free(o);
        free(ring);
        snprintf(errmsg, errlen, "out of memory");
        return AVM_ENOMEM;
    }
    o->cfg = *cfg;
    o->ring = ring;
    snprintf(o->name, sizeof(o->name), "%s", cfg->name ? cfg->name : "");
    snprintf(o->version, sizeof(o->version), "%s", cfg->version ? cfg->version : "");
    o->cfg.name = o->name;
    o->cfg.version = o->version;
    avm_mgr_counts n;
    avm_mgr_totals_get(cfg->m, &n);
    o->last_commits = n.commits;
    avm_http_config hc = {.addr = cfg->addr,
                          .max_conns = MAX_CONNS,
                          .max_pending = CLIENT_MAX_PENDING,
                          .handler = on_request,
                          .closed = on_closed,
                          .drained = on_drained,
                          .arg = o};
    int rv = avm_http_start(cfg->loop, &hc, &o->http, errmsg, errlen);
    if (rv != 0) {
        free(o->ring);
        free(o);
        return rv;
    }
    *out = o;
    return 0;
}

int avmd_obs_port(const avmd_obs *o)
{
    return avm_http_port(o->http);
}

void avmd_obs_round(avmd_obs *o, uint64_t round_us)
{
    if (o == NULL)
        return;
    avm_mgr_counts n;
    avm_mgr_totals_get(o->cfg.m, &n);
    if (n.commits > o->last_commits)
        hist_add(&o->local, round_us, n.commits - o->last_commits);
    o->last_commits = n.commits;
    poll_traces(o);
}

void avmd_obs_exec_event(avmd_obs *o, const char *id, bool terminated)
{
    if (o == NULL || !o->following || id == NULL)
        return;
    const uint8_t *log;
    size_t base, end;
    if (avm_mgr_log(o->cfg.m, id, &log, &base, &end) == 0)
        follow_one(o, id, log, base, end);
    if (terminated)
        for (stream *s = o->streams; s != NULL; s = s->next)
            if (s->one && strcmp(s->exec, id) == 0)
                s->ending = true;
    pump_all(o);
}

void avmd_obs_stop(avmd_obs *o)
{
    if (o == NULL)
        return;
    avm_http_stop(o->http); /* closes every stream: on_closed frees them */
    follow_stop(o);
    for (uint64_t s = o->first_seq; s < o->next_seq; s++)
        free(ring_at(o, s)->body);
    free(o->ring);
    free(o);
}
