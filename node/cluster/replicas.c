/* Replicated controllers: every controller made with `controller create` is a Raft
 * group (consensus/raft_host.h) whose replicas live on several nodes. This file is
 * the node's side of it:
 *
 *   I/O          the group's log, term, vote, snapshot metadata and applied index in
 *                the node's LMDB store, staged in the execution manager's round and
 *                made durable by its group commit (one fsync for every group and
 *                every execution of the round); raft frames over the links, batched
 *                per peer per loop iteration; one libuv timer for every group.
 *   state machine  a committed entry is a write set (or a key/value put): it is
 *                validated in log order (read versions, and the authority rule: only
 *                the object's current controller may change it) and staged with the
 *                applied index, so a restart never applies an entry twice. Every
 *                entry carries a request id: a retried proposal (after a leader
 *                change) finds its first outcome instead of applying again.
 *   proposals    a commit from any node goes to the group's leader; the outcome
 *                comes back once the entry is committed and applied. A leader change
 *                while it is in flight makes the proposer try again with the same
 *                request id, until its deadline, then it fails with a clear error.
 *   registry     nodes tell each other which groups they replicate and who leads
 *                them (gossip), so that any node can route to a group.
 *   control      ctrl.create / ls / status / add / remove / transfer / put / get. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "cluster_internal.h"
#include "codec.h"
#include "raft_host.h"

#define NAME_LEN 64
#define MAX_REPLICAS 16
#define MAX_REGS 4096

typedef enum { P_EXEC, P_LINK, P_CTL, P_REMOTE, P_BENCH, P_TXN } prop_kind;

/* ctrl.bench: a load generator inside the leader, keeping `depth` puts in flight
 * (the same puts as ctrl.put, without the control connection in the way), so that
 * the replication layer can be measured beside bare canonical/raft at equal depth. */
typedef struct benchrun {
    avm_ctl_req *req;
    char group[64];
    size_t total, started, done, failed;
    size_t size;
    uint64_t t0;
    uint64_t *lat; /* µs per completed put */
} benchrun;

/* A proposal in flight from (or through) this node. */
typedef struct prop {
    struct prop *next;
    prop_kind kind;
    char group[NAME_LEN];
    uint8_t *entry;
    size_t len;
    char exec[48]; /* P_EXEC */
    uint64_t seq;
    avm_link_req *lreq; /* P_LINK, P_REMOTE */
    avm_ctl_req *creq;  /* P_CTL */
    benchrun *bench;    /* P_BENCH */
    avm_rctl_cb cb;     /* P_TXN (may be NULL) */
    bool nowait;        /* P_TXN: answer without waiting for the replica here */
    void *cbarg;
    uint64_t t_us; /* P_BENCH: when it started */
    bool local;    /* proposed here, as leader: waiting for apply(index) */
    uint64_t index, term;
    bool inflight;         /* a raft.propose to another node is out */
    char target[NAME_LEN]; /* where it went */
    unsigned gen;          /* attempts made: a late answer to an older one is ignored */
    unsigned outstanding;  /* raft.propose requests not answered yet (kept till 0) */
    bool queued;           /* waiting for this iteration's submit (leader here) */
    struct prop *qnext;
    uint64_t deadline, attempt_at, attempt_deadline;
    char hint[NAME_LEN]; /* the leader a redirect named */
    unsigned rotate;     /* which replica to try next when no leader is known */
    bool waiting;        /* outcome known: waiting for the local replica to apply */
    uint64_t wait_until;
    bool committed;
    avm_read *versions;
    size_t nversions;
    bool done;
} prop;

/* A group as gossip tells it. */
typedef struct reg {
    char name[NAME_LEN];
    char leader[NAME_LEN];
    uint64_t term;
    char replicas[MAX_REPLICAS][NAME_LEN];
    size_t nrep;
    uint64_t heard_ms;
} reg;

/* Frames waiting to go to a peer at the end of this loop iteration. */
typedef struct outbox {
    char peer[NAME_LEN];
    avm_val *frames;
    size_t n, cap;
} outbox;

struct avm_rctl {
    avm_cluster *c;
    avm_rctl_config cfg;
    avm_rhost *h;
    avm_mgr *m;
    avm_lmdb *db;
    uv_timer_t timer, retry;
    uv_check_t check;
    uv_idle_t submit; /* runs the queued submissions at the next loop iteration */
    prop *subq, **subq_tail;
    bool handles;
    outbox *boxes;
    size_t nboxes, capboxes;
    prop *props;
    reg *regs;
    size_t nregs, capregs;
    uint64_t next_req;
    avm_txn *txn;                  /* commits across controllers (txn.c) */
    avm_lat lat_single, lat_cross; /* commit latencies of executions (ctrl.latency) */
    bool stopped;
};

static uint64_t now_us(void)
{
    return uv_hrtime() / 1000;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000;
}

/* --- Values ---------------------------------------------------------------------------
 */

static avm_val ctrl_val(const char *name)
{
    return str(AVM_CTRLID, name, strlen(name));
}

static bool is_kind(avm_val v, avm_kind k)
{
    return v.kind == k;
}

static const char *str_at(avm_val l, size_t i)
{
    if (l.kind != AVM_LIST || i >= avm_list_len(l) ||
        !is_kind(avm_list_at(l, i), AVM_STR))
        return NULL;
    return avm_list_at(l, i).u.s->data;
}

static bool valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= NAME_LEN)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' || ch == '.'))
            return false;
    }
    return true;
}

static const char *ctrl_name(avm_val c)
{
    if (c.kind != AVM_CTRLID || c.u.s->len == 0 || c.u.s->len >= NAME_LEN)
        return NULL;
    return c.u.s->data;
}

/* A list of n names laid out `stride` bytes apart from `first` (the members of an
 * avm_rgroup_info, the replicas of a registry entry), or nil. */
static avm_val names_val(const char *first, size_t stride, size_t n)
{
    avm_val l;
    if (avm_list_new(n, &l) != 0)
        return avm_nil();
    for (size_t k = 0; k < n; k++)
        l.u.l->items[k] = cstr(first + k * stride);
    avm_list_seal(l);
    return l;
}

static avm_val members_val(const avm_rgroup_info *in)
{
    return names_val(in->members[0].name, sizeof(in->members[0]), in->nmembers);
}

/* --- Registry -------------------------------------------------------------------------
 */

static reg *reg_find(avm_rctl *r, const char *name)
{
    for (size_t i = 0; i < r->nregs; i++)
        if (strcmp(r->regs[i].name, name) == 0)
            return &r->regs[i];
    return NULL;
}

static reg *reg_get(avm_rctl *r, const char *name)
{
    reg *g = reg_find(r, name);
    if (g != NULL || r->nregs >= MAX_REGS)
        return g;
    if (r->nregs == r->capregs) {
        size_t cap = r->capregs ? r->capregs * 2 : 16;
        reg *rs = realloc(r->regs, cap * sizeof(*rs));
        if (rs == NULL)
            return NULL;
        r->regs = rs;
        r->capregs = cap;
    }
    g = &r->regs[r->nregs++];
    memset(g, 0, sizeof(*g));
    snprintf(g->name, sizeof(g->name), "%s", name);
    return g;
}

static const char *leader_of(avm_rctl *r, const char *group)
{
    avm_rgroup *g = r->h ? avm_rhost_group(r->h, group) : NULL;
    const char *l = g != NULL ? avm_rgroup_leader(g) : NULL;
    if (l != NULL)
        return l;
    reg *e = reg_find(r, group);
    return e != NULL && e->leader[0] && now_ms() - e->heard_ms < 5000 ? e->leader : NULL;
}

/* --- I/O for the raft host --------------------------------------------------------- */

static int io_save_tv(void *arg, const char *group, uint64_t term, uint64_t vote)
{
    avm_rctl *r = arg;
    return avm_lmdb_raft_save_tv(r->db, group, term, vote);
}

static int io_save_entries(void *arg, const char *group, uint64_t index,
                           const avm_rentry *e, size_t n)
{
    avm_rctl *r = arg;
    avm_lmdb_rentry *le = calloc(n ? n : 1, sizeof(*le));
    if (le == NULL)
        return AVM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        le[i] = (avm_lmdb_rentry){e[i].term, e[i].type, e[i].data, e[i].len};
    int rv = avm_lmdb_raft_save_entries(r->db, group, index, le, n);
    free(le);
    return rv;
}

static int io_save_compact(void *arg, const char *group, const avm_rsnap *s,
                           uint64_t upto)
{
    avm_rctl *r = arg;
    int rv = avm_lmdb_raft_save_snapmeta(r->db, group, s->index, s->term, s->conf_index,
                                         s->conf, s->conf_len);
    if (rv == 0 && upto > 0)
        rv = avm_lmdb_raft_delete_upto(r->db, group, upto);
    return rv;
}

static int io_save_install(void *arg, const char *group, const avm_rsnap *s,
                           const uint8_t *data, size_t len)
{
    avm_rctl *r = arg;
    avm_val c = ctrl_val(group);
    int rv = avm_lmdb_ctrl_restore(r->db, group, c, data, len);
    avm_val_release(c);
    if (rv == 0)
        rv = avm_lmdb_raft_delete_log(r->db, group);
    if (rv == 0)
        rv = avm_lmdb_raft_save_snapmeta(r->db, group, s->index, s->term, s->conf_index,
                                         s->conf, s->conf_len);
    if (rv == 0)
        rv = avm_lmdb_raft_set_applied(r->db, group, s->index);
    if (rv == 0)
        rv = avm_txn_load(r->txn, group); /* the intents and decisions it carries */
    if (rv != 0)
        cl_logf(r->c, CL_ERROR, "raft.install", "error", "%s: %s", group,
                avm_lmdb_errmsg(r->db));
    else
        cl_logf(r->c, CL_INFO, "raft.install", "group", "%s at %llu", group,
                (unsigned long long)s->index);
    return rv;
}

static void flush_boxes(uv_check_t *h);

/* What a host call queued for other nodes leaves now, not at the end of the loop
 * iteration: the loop may next block in poll until a timer. */
static void flush_now(avm_rctl *r)
{
    flush_boxes(&r->check);
}

static void on_durable(void *arg)
{
    avm_rctl *r = arg;
    if (r->stopped)
        return;
    /* The execution manager runs what waited for durability even when the round's
     * commit failed (disk full: the round is lost): then nothing of it is durable,
     * and raft must not answer for it (tests/consensus/test_sim --nospc-acks). */
    const char *failure = avm_mgr_failure(r->m);
    if (failure != NULL) {
        avm_rhost_fail(r->h, failure);
        return;
    }
    avm_rhost_synced(r->h);
    flush_now(r);
}

static void io_sync(void *arg)
{
    avm_rctl *r = arg;
    /* What goes to the other replicas leaves before this node's own fsync, so
     * that theirs and ours overlap. */
    flush_boxes(&r->check);
    if (avm_mgr_when_durable(r->m, on_durable, r) != 0)
        avm_rhost_fail(r->h, "out of memory");
    cl_kick(r->c);
}

static void io_send(void *arg, const char *to, const uint8_t *frame, size_t len)
{
    avm_rctl *r = arg;
    outbox *b = NULL;
    for (size_t i = 0; i < r->nboxes; i++)
        if (strcmp(r->boxes[i].peer, to) == 0)
            b = &r->boxes[i];
    if (b == NULL) {
        if (r->nboxes == r->capboxes) {
            size_t cap = r->capboxes ? r->capboxes * 2 : 8;
            outbox *bs = realloc(r->boxes, cap * sizeof(*bs));
            if (bs == NULL)
                return;
            r->boxes = bs;
            r->capboxes = cap;
        }
        b = &r->boxes[r->nboxes++];
        memset(b, 0, sizeof(*b));
        snprintf(b->peer, sizeof(b->peer), "%s", to);
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 16;
        avm_val *fs = realloc(b->frames, cap * sizeof(*fs));
        if (fs == NULL)
            return;
        b->frames = fs;
        b->cap = cap;
    }
    avm_val f = str(AVM_STR, frame, len);
    if (f.kind != AVM_NIL)
        b->frames[b->n++] = f;
}

/* End of a loop iteration: one link message per peer with all its frames. */
static void flush_boxes(uv_check_t *h)
{
    avm_rctl *r = h->data;
    for (size_t i = 0; i < r->nboxes; i++) {
        outbox *b = &r->boxes[i];
        size_t at = 0;
        while (at < b->n) {
            /* Link messages of at most ~8 MiB of frames (the link's limit is 16). */
            size_t k = at, bytes = 0;
            while (k < b->n && (k == at || bytes + b->frames[k].u.s->len <= (8u << 20)))
                bytes += b->frames[k++].u.s->len;
            avm_val l;
            if (avm_list_from(b->frames + at, k - at, &l) == 0) {
                avm_val msg = lst(2, cstr("raft"), l);
                char err[256];
                if (!r->stopped && cl_reachable(r->c, b->peer))
                    avm_link_send(cl_link(r->c), b->peer, msg, err, sizeof(err));
                avm_val_release(msg);
            } /* else: avm_list_from released the frames */
            at = k;
        }
        b->n = 0;
    }
}

static int io_snapshot_data(void *arg, avm_rgroup *g, uint8_t **data, size_t *len)
{
    avm_rctl *r = arg;
    avm_buf b;
    avm_buf_init(&b);
    avm_val c = ctrl_val(avm_rgroup_name(g));
    int rv = avm_lmdb_ctrl_dump(r->db, avm_rgroup_name(g), c, &b);
    avm_val_release(c);
    if (rv != 0) {
        avm_buf_free(&b);
        return rv;
    }
    *data = (uint8_t *)b.data;
    *len = b.len;
    return 0;
}

static void on_tick(uv_timer_t *t)
{
    avm_rctl *r = t->data;
    if (!r->stopped) {
        avm_rhost_tick(r->h);
        flush_now(r);
    }
}

static void io_schedule(void *arg, uint64_t at)
{
    avm_rctl *r = arg;
    if (r->stopped)
        return;
    uint64_t t = now_ms();
    uv_timer_start(&r->timer, on_tick, at > t ? at - t : 0, 0);
}

static uint64_t io_now(void *arg)
{
    return now_ms();
}

static void retry_props(avm_rctl *r);
static void arm_retry(avm_rctl *r);
static void abandon_attempts(avm_rctl *r, const char *group, const char *peer,
                             bool except);

static void io_changed(void *arg, avm_rgroup *g)
{
    avm_rctl *r = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    cl_logf(r->c, in.stopped ? CL_ERROR : CL_INFO, "raft.state", "group",
            "%s: %s, term %llu, leader %s%s%s", avm_rgroup_name(g),
            in.stopped                  ? "stopped"
            : raft_state_name(in.state) ? raft_state_name(in.state)
                                        : "?",
            (unsigned long long)in.term, in.leader[0] ? in.leader : "unknown",
            in.stopped ? ": " : "", in.why);
    reg *e = reg_get(r, avm_rgroup_name(g));
    if (e != NULL && in.leader[0] && in.term >= e->term) {
        snprintf(e->leader, sizeof(e->leader), "%s", in.leader);
        e->term = in.term;
        e->heard_ms = now_ms();
    }
    if (in.state == RAFT_LEADER)
        avm_rctl_gossip(r);
    if (in.leader[0]) /* a new leader: what went to the old one goes again */
        abandon_attempts(r, avm_rgroup_name(g), in.leader, true);
    arm_retry(r);
}

/* --- The state machine ----------------------------------------------------------------
 */

static void prop_complete(avm_rctl *r, prop *p);
static void prop_retry_now(prop *p);

static void versions_free(avm_read *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        avm_val_release(v[i].oid);
    free(v);
}

/* The authority rule (R5), at commit time and in log order: every object the write
 * set changes must have this group's controller as its current controller, and
 * every object it creates must name it. NULL when it holds, else why not. */
static const char *authority(avm_rctl *r, avm_val ctrl, const avm_writeset *ws)
{
    for (size_t i = 0; i < ws->ncreates; i++)
        if (!avm_val_eq(ws->creates[i].meta.current, ctrl))
            return "a create under another controller";
#define CHECK(oid)                                                                       \
    do {                                                                                 \
        const avm_objrec *rec_ = avm_mgr_record(r->m, (oid));                            \
        if (rec_ != NULL && !avm_val_eq(rec_->meta.current, ctrl))                       \
            return "a change to an object of another controller";                        \
    } while (0)
    for (size_t i = 0; i < ws->nstates; i++)
        CHECK(ws->states[i].a);
    for (size_t i = 0; i < ws->ndestroys; i++)
        CHECK(ws->destroys[i]);
    for (size_t i = 0; i < ws->ntransfers; i++) {
        CHECK(ws->transfers[i].a);
        if (!avm_val_eq(ws->transfers[i].b, ctrl))
            return "a transfer to another controller";
    }
    for (size_t i = 0; i < ws->nmoves; i++)
        CHECK(ws->moves[i].a);
#undef CHECK
    return NULL;
}

static int kv_key(char *out, size_t n, const char *prefix, const char *s, size_t sl)
{
    if (strlen(prefix) + sl >= n)
        return -1;
    size_t pl = strlen(prefix);
    memcpy(out, prefix, pl);
    memcpy(out + pl, s, sl);
    return (int)(pl + sl);
}

/* Request ids are remembered for DEDUP_WINDOW entries: entry i records "i/<i>"
 * -> its request key and forgets the request of entry i - DEDUP_WINDOW, so the
 * table stays bounded and every replica forgets the same ids at the same entry. A
 * proposal is retried for at most its deadline (10 s), far less than the window at
 * any commit rate this node reaches. */
#define DEDUP_WINDOW 262144

static int dedup_window(avm_rctl *r, const char *group, uint64_t index, const char *key,
                        size_t kl)
{
    char ik[32];
    int il = snprintf(ik, sizeof(ik), "i/%llu", (unsigned long long)index);
    int rv = avm_lmdb_raft_kv_put(r->db, group, (const uint8_t *)ik, (size_t)il,
                                  (const uint8_t *)key, kl);
    if (rv != 0 || index <= DEDUP_WINDOW)
        return rv;
    il = snprintf(ik, sizeof(ik), "i/%llu", (unsigned long long)(index - DEDUP_WINDOW));
    avm_buf old;
    avm_buf_init(&old);
    if (avm_lmdb_raft_kv_get(r->db, group, (const uint8_t *)ik, (size_t)il, &old) == 0) {
        rv = avm_lmdb_raft_kv_del(r->db, group, (const uint8_t *)old.data, old.len);
        if (rv == AVM_ENOTFOUND)
            rv = 0;
        if (rv == 0)
            rv = avm_lmdb_raft_kv_del(r->db, group, (const uint8_t *)ik, (size_t)il);
    }
    avm_buf_free(&old);
    return rv;
}

/* Applies committed command `index` of group g. */
static int io_apply(void *arg, avm_rgroup *g, uint64_t index, uint64_t term,
                    const uint8_t *data, size_t len)
{
    avm_rctl *r = arg;
    const char *group = avm_rgroup_name(g);
    avm_val v = avm_nil();
    bool committed = false;
    avm_read *vers = NULL;
    size_t nv = 0;
    int rv = 0;
    const char *kind = NULL, *reqid = NULL;
    if (avm_val_decode_all(data, len, &v) == 0) {
        kind = str_at(v, 0);
        reqid = str_at(v, 1);
    }
    bool txk = kind != NULL && (strcmp(kind, "prep") == 0 || strcmp(kind, "dec") == 0 ||
                                strcmp(kind, "fin") == 0 || strcmp(kind, "forget") == 0);
    if (txk && reqid != NULL) {
        /* A step of a commit across controllers (txn.c), applied once per request
         * id like a write set. */
        char key[256];
        int kl = kv_key(key, sizeof(key), "d/", reqid, strlen(reqid));
        avm_buf prev;
        avm_buf_init(&prev);
        if (kl > 0 && avm_lmdb_raft_kv_get(r->db, group, (const uint8_t *)key, (size_t)kl,
                                           &prev) == 0) {
            committed = prev.len == 1 && prev.data[0] == 1;
        } else {
            rv = avm_txn_apply(r->txn, group, index, v, &committed, &vers, &nv);
            if (rv == 0 && kl > 0) {
                uint8_t b = committed ? 1 : 0;
                rv = avm_lmdb_raft_kv_put(r->db, group, (const uint8_t *)key, (size_t)kl,
                                          &b, 1);
            }
            if (rv == 0 && kl > 0)
                rv = dedup_window(r, group, index, key, (size_t)kl);
        }
        avm_buf_free(&prev);
    } else if (kind != NULL && reqid != NULL && strcmp(kind, "ws") == 0 &&
               avm_list_len(v) == 3) {
        char key[256];
        int kl = kv_key(key, sizeof(key), "d/", reqid, strlen(reqid));
        avm_buf prev;
        avm_buf_init(&prev);
        avm_val ctrl = ctrl_val(group);
        avm_writeset ws;
        void *wb = NULL;
        char err[256] = "";
        int drv = cl_ws_from(r->c, avm_list_at(v, 2), &ws, &wb, err, sizeof(err));
        if (kl > 0 && avm_lmdb_raft_kv_get(r->db, group, (const uint8_t *)key, (size_t)kl,
                                           &prev) == 0) {
            committed = prev.len == 1 && prev.data[0] == 1; /* a retried proposal */
        } else if (drv != 0) {
            cl_logf(r->c, CL_WARN, "raft.apply", "error", "%s entry %llu: %s", group,
                    (unsigned long long)index, err);
        } else {
            const char *why = authority(r, ctrl, &ws);
            if (why == NULL && avm_txn_blocks(r->txn, group, &ws))
                cl_logf(r->c, CL_DEBUG, "raft.apply", "refused",
                        "%s entry %llu: an intent of a commit across controllers holds "
                        "an object it uses",
                        group, (unsigned long long)index);
            else if (why != NULL)
                cl_logf(r->c, CL_WARN, "raft.apply", "refused",
                        "%s entry %llu: %s (authority)", group, (unsigned long long)index,
                        why);
            else
                rv = avm_mgr_stage_ws(r->m, &ws, &committed);
            if (rv == 0 && kl > 0) {
                uint8_t b = committed ? 1 : 0;
                rv = avm_lmdb_raft_kv_put(r->db, group, (const uint8_t *)key, (size_t)kl,
                                          &b, 1);
            }
            if (rv == 0 && kl > 0)
                rv = dedup_window(r, group, index, key, (size_t)kl);
        }
        if (rv == 0 && drv == 0 && committed)
            vers = avm_mgr_versions(r->m, &ws, &nv);
        cl_ws_free(wb);
        avm_buf_free(&prev);
        avm_val_release(ctrl);
    } else if (kind != NULL && strcmp(kind, "put") == 0 && avm_list_len(v) == 4 &&
               str_at(v, 2) != NULL && str_at(v, 3) != NULL) {
        avm_val k = avm_list_at(v, 2), val = avm_list_at(v, 3);
        char key[600];
        int kl = kv_key(key, sizeof(key), "k/", k.u.s->data, k.u.s->len);
        if (kl > 0)
            rv = avm_lmdb_raft_kv_put(r->db, group, (const uint8_t *)key, (size_t)kl,
                                      (const uint8_t *)val.u.s->data, val.u.s->len);
        committed = kl > 0;
    } else {
        cl_logf(r->c, CL_WARN, "raft.apply", "error",
                "%s entry %llu: not a command this node knows (applied as nothing)",
                group, (unsigned long long)index);
    }
    if (rv == 0)
        rv = avm_lmdb_raft_set_applied(r->db, group, index);
    avm_val_release(v);
    if (rv != 0) {
        versions_free(vers, nv);
        return rv;
    }
    /* Proposals waiting for this index. */
    for (prop *p = r->props; p != NULL; p = p->next) {
        if (p->done || strcmp(p->group, group) != 0)
            continue;
        if (p->local && p->index == index) {
            p->local = false;
            if (p->term != term) {
                prop_retry_now(p); /* another entry took the index */
                continue;
            }
            p->committed = committed;
            versions_free(p->versions, p->nversions);
            p->versions = NULL;
            p->nversions = 0;
            if (committed && nv > 0) {
                p->versions = calloc(nv, sizeof(*p->versions));
                for (size_t i = 0; p->versions != NULL && i < nv; i++) {
                    avm_val_retain(vers[i].oid);
                    p->versions[p->nversions++] = vers[i];
                }
            }
            p->index = index;
            prop_complete(r, p);
        } else if (p->waiting && p->index <= index) {
            prop_complete(r, p);
        }
    }
    versions_free(vers, nv);
    return 0;
}

/* --- Proposals
 * ---------------------------------------------------------------------------- */

static void prop_free(prop *p)
{
    versions_free(p->versions, p->nversions);
    free(p->entry);
    free(p);
}

static void bench_done(avm_rctl *r, prop *p, int rv);

static void prop_finish(avm_rctl *r, prop *p, int rv, const char *why)
{
    p->done = true;
    switch (p->kind) {
    case P_EXEC:
        if (rv == 0)
            avm_lat_add(&r->lat_single, now_us() - p->t_us);
        if (r->m != NULL) {
            /* The controller that could not commit (ErrControllerUnreachable). */
            avm_val mach = rv == AVM_EUNREACHABLE ? ctrl_val(p->group) : avm_nil();
            avm_mgr_applied(r->m, p->exec, p->seq, rv, rv == 0 && p->committed,
                            p->versions, p->nversions, mach, rv ? why : NULL);
            avm_val_release(mach);
            cl_kick(r->c);
        }
        break;
    case P_LINK:
        if (rv != 0) {
            avm_link_reply_error(p->lreq, rv, "%s", why);
        } else {
            avm_val b = lst(2, avm_bool(p->committed),
                            cl_versions_val(p->versions, p->nversions));
            avm_link_reply(p->lreq, b);
            avm_val_release(b);
        }
        break;
    case P_REMOTE:
        if (rv != 0) {
            const char *l = leader_of(r, p->group);
            avm_val b = lst(2, cstr("redirect"), l ? cstr(l) : avm_nil());
            avm_link_reply(p->lreq, b);
            avm_val_release(b);
        } else {
            avm_val b = lst(5, cstr("done"), avm_bool(p->committed),
                            cl_versions_val(p->versions, p->nversions),
                            avm_int((int64_t)p->index), avm_int((int64_t)p->term));
            avm_link_reply(p->lreq, b);
            avm_val_release(b);
        }
        break;
    case P_BENCH:
        bench_done(r, p, rv);
        break;
    case P_TXN:
        if (p->cb != NULL)
            p->cb(p->cbarg, rv, rv == 0 && p->committed, p->versions, p->nversions, why);
        break;
    case P_CTL:
        if (rv != 0) {
            avm_ctl_reply_error(p->creq, rv, "%s", why);
        } else {
            avm_ctl_body b;
            avm_ctl_body_init(&b);
            avm_ctl_put_str(&b, "controller", p->group);
            avm_ctl_put_int(&b, "index", (int64_t)p->index);
            avm_val out;
            if (avm_ctl_body_finish(&b, &out) == 0) {
                avm_ctl_reply(p->creq, out);
                avm_val_release(out);
            } else {
                avm_ctl_reply_error(p->creq, AVM_ENOMEM, "out of memory");
            }
        }
        break;
    }
}

static void prop_complete(avm_rctl *r, prop *p)
{
    /* A proposer that replicates the group answers once its own replica has the
     * entry, so that the execution reads its own writes here. */
    avm_rgroup *g = avm_rhost_group(r->h, p->group);
    if (!p->waiting && p->kind != P_REMOTE && !p->nowait && g != NULL) {
        avm_rgroup_info in;
        avm_rgroup_info_get(g, &in);
        if (in.applied < p->index && !in.stopped) {
            p->waiting = true;
            p->wait_until = now_ms() + 2000;
            return;
        }
    }
    p->waiting = false;
    prop_finish(r, p, 0, NULL);
}

static void prop_retry_now(prop *p)
{
    p->local = false;
    p->attempt_at = 0;
}

static void propose_reply(void *arg, int rv, avm_val reply, const char *errmsg);

typedef struct pref {
    avm_rctl *r;
    prop *p;
    unsigned gen;
} pref;

static void attempt(avm_rctl *r, prop *p);

/* The queued proposals, group by group, each group's in one step. */
static void on_submit(uv_idle_t *h)
{
    avm_rctl *r = h->data;
    uv_idle_stop(h);
    prop *q = r->subq;
    r->subq = NULL;
    r->subq_tail = &r->subq;
    while (q != NULL) {
        /* The run of this group's proposals at the head of the queue... */
        const char *group = q->group;
        size_t n = 0;
        for (prop *p = q; p != NULL && n < 4096; p = p->qnext)
            n += strcmp(p->group, group) == 0;
        const uint8_t **data = calloc(n ? n : 1, sizeof(*data));
        size_t *lens = calloc(n ? n : 1, sizeof(*lens));
        prop **ps = calloc(n ? n : 1, sizeof(*ps));
        size_t k = 0;
        prop **pp = &q;
        while (*pp != NULL && k < n) {
            prop *p = *pp;
            if (strcmp(p->group, group) != 0) {
                pp = &p->qnext;
                continue;
            }
            *pp = p->qnext; /* out of the queue */
            p->queued = false;
            if (p->done)
                continue;
            if (data != NULL && lens != NULL && ps != NULL) {
                data[k] = p->entry;
                lens[k] = p->len;
                ps[k++] = p;
            } else {
                p->attempt_at = now_ms() + 50;
            }
        }
        avm_rgroup *g = avm_rhost_group(r->h, group);
        uint64_t first = 0, term = 0;
        int rv = k == 0      ? 0
                 : g != NULL ? avm_rgroup_propose_many(g, data, lens, k, &first, &term)
                             : AVM_ESTATE;
        uint64_t t = now_ms();
        for (size_t i = 0; i < k; i++) {
            prop *p = ps[i];
            if (rv == 0) {
                p->local = true;
                p->index = first + i;
                p->term = term;
                p->attempt_deadline = t + 3 * r->cfg.election_ms;
            } else if (p->kind == P_REMOTE) {
                prop_finish(r, p, AVM_ESTATE, "not the leader");
            } else {
                p->attempt_at = t; /* not the leader any more: route it again */
                attempt(r, p);
            }
        }
        free(data);
        free(lens);
        free(ps);
    }
    flush_now(r);
    arm_retry(r);
}

/* One attempt: propose here if this node leads the group, else send it to the
 * leader (or, not knowing one, to a replica, which redirects). */
static void attempt(avm_rctl *r, prop *p)
{
    uint64_t t = now_ms();
    avm_rgroup *g = avm_rhost_group(r->h, p->group);
    if (g != NULL && avm_rgroup_is_leader(g)) {
        /* Proposals of one loop iteration go to raft together: one entry batch,
         * one AppendEntries per follower. */
        p->queued = true;
        p->qnext = NULL;
        *r->subq_tail = p;
        r->subq_tail = &p->qnext;
        if (!uv_is_active((uv_handle_t *)&r->submit))
            uv_idle_start(&r->submit, on_submit);
        return;
    }
    if (p->kind == P_REMOTE) {
        prop_finish(r, p, AVM_ESTATE, "not the leader");
        return;
    }
    const char *to = p->hint[0] ? p->hint : leader_of(r, p->group);
    if (to == NULL || strcmp(to, cl_self(r->c)) == 0 || !cl_reachable(r->c, to)) {
        /* No leader known: ask a replica in turn. */
        to = NULL;
        reg *e = reg_find(r, p->group);
        for (size_t k = 0; e != NULL && k < e->nrep && to == NULL; k++) {
            const char *cand = e->replicas[(p->rotate + k) % e->nrep];
            if (strcmp(cand, cl_self(r->c)) != 0 && cl_reachable(r->c, cand))
                to = cand;
        }
        p->rotate++;
    }
    p->hint[0] = '\0';
    if (to == NULL) {
        p->attempt_at = t + 50; /* an election is on, or nobody is reachable */
        return;
    }
    pref *pr = malloc(sizeof(*pr));
    avm_val body = lst(2, cstr(p->group), str(AVM_STR, p->entry, p->len));
    char err[256];
    int rv =
        pr == NULL || body.kind == AVM_NIL
            ? AVM_ENOMEM
            : avm_link_request(cl_link(r->c), to, "raft.propose", body, r->cfg.request_ms,
                               propose_reply, pr, err, sizeof(err));
    avm_val_release(body);
    if (rv != 0) {
        free(pr);
        p->attempt_at = t + 50;
        return;
    }
    *pr = (pref){r, p, ++p->gen};
    p->inflight = true;
    p->outstanding++;
    snprintf(p->target, sizeof(p->target), "%s", to);
    snprintf(p->hint, sizeof(p->hint), "%s", to); /* who has it, for errors */
}

static void propose_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    pref *pr = arg;
    avm_rctl *r = pr->r;
    prop *p = pr->p;
    unsigned pr_gen = pr->gen;
    free(pr);
    p->outstanding--;
    if (r->stopped || p->done || pr_gen != p->gen)
        return; /* ended, or given up on: another attempt is out */
    p->inflight = false;
    const char *kind = rv == 0 ? str_at(reply, 0) : NULL;
    if (kind != NULL && strcmp(kind, "done") == 0 && avm_list_len(reply) == 5 &&
        avm_list_at(reply, 3).kind == AVM_INT && avm_list_at(reply, 4).kind == AVM_INT) {
        p->committed = avm_truthy(avm_list_at(reply, 1));
        size_t n = 0;
        avm_read *vs = cl_versions_from(avm_list_at(reply, 2), &n);
        versions_free(p->versions, p->nversions);
        p->versions = NULL;
        p->nversions = 0;
        if (vs != NULL && n > 0) {
            p->versions = calloc(n, sizeof(*p->versions));
            for (size_t i = 0; p->versions != NULL && i < n; i++) {
                avm_val_retain(vs[i].oid);
                p->versions[p->nversions++] = vs[i];
            }
        }
        free(vs);
        p->index = (uint64_t)avm_list_at(reply, 3).u.i;
        p->term = (uint64_t)avm_list_at(reply, 4).u.i;
        /* Our replica, if we have one, may apply up to it now (read your writes
         * here without waiting for the next heartbeat). */
        avm_rhost_learn_commit(r->h, p->group, p->index, p->term);
        flush_now(r);
        if (!p->done)
            prop_complete(r, p);
        return;
    }
    if (kind != NULL && strcmp(kind, "redirect") == 0) {
        const char *l = str_at(reply, 1);
        snprintf(p->hint, sizeof(p->hint), "%s", l ? l : "");
        p->attempt_at = l != NULL ? 0 : now_ms() + 50;
    } else {
        p->hint[0] = '\0';
        p->attempt_at = now_ms() + 50; /* no answer, or it restarted: try again */
        (void)errmsg;
    }
    arm_retry(r);
}

static void sweep_props(avm_rctl *r)
{
    prop **pp = &r->props;
    while (*pp != NULL) {
        prop *p = *pp;
        if (p->done && p->outstanding == 0 && !p->queued) {
            *pp = p->next;
            prop_free(p);
        } else {
            pp = &p->next;
        }
    }
}

static void retry_props(avm_rctl *r)
{
    uint64_t t = now_ms();
    for (prop *p = r->props; p != NULL; p = p->next) {
        if (p->done || p->inflight || p->queued)
            continue;
        if (p->waiting) {
            if (t >= p->wait_until) {
                p->waiting = false;
                prop_finish(r, p, 0, NULL);
            }
            continue;
        }
        if (p->local && t < p->attempt_deadline)
            continue;
        if (t >= p->deadline) {
            char why[300];
            snprintf(why, sizeof(why),
                     "controller %s: no leader committed the write within %u ms (the "
                     "outcome is unknown if a leader changed meanwhile)",
                     p->group, r->cfg.commit_ms);
            prop_finish(r, p, p->kind == P_REMOTE ? AVM_ESTATE : AVM_EUNREACHABLE, why);
            continue;
        }
        if (p->local) {
            /* The leader that took it has not applied it in time: try again (the
             * request id makes a second apply impossible). */
            p->local = false;
            if (p->kind == P_REMOTE) {
                prop_finish(r, p, AVM_ESTATE, "leadership lost");
                continue;
            }
        }
        if (t >= p->attempt_at)
            attempt(r, p);
    }
    sweep_props(r);
}

static void on_retry(uv_timer_t *t)
{
    avm_rctl *r = t->data;
    if (r->stopped)
        return;
    retry_props(r);
    if (r->props == NULL)
        uv_timer_stop(&r->retry);
}

static void arm_retry(avm_rctl *r)
{
    if (!r->stopped && r->handles && r->props != NULL &&
        !uv_is_active((uv_handle_t *)&r->retry))
        uv_timer_start(&r->retry, on_retry, 20, 20);
}

static prop *prop_new(avm_rctl *r, prop_kind kind, const char *group, avm_val cmd)
{
    avm_buf b;
    avm_buf_init(&b);
    if (avm_val_encode(&b, cmd) != 0 || b.err) {
        avm_buf_free(&b);
        return NULL;
    }
    prop *p = calloc(1, sizeof(*p));
    if (p == NULL) {
        avm_buf_free(&b);
        return NULL;
    }
    p->kind = kind;
    snprintf(p->group, sizeof(p->group), "%s", group);
    p->entry = (uint8_t *)b.data;
    p->len = b.len;
    p->deadline = now_ms() + r->cfg.commit_ms;
    p->next = r->props;
    r->props = p;
    return p;
}

static avm_val new_reqid(avm_rctl *r);
static prop *prop_new(avm_rctl *r, prop_kind kind, const char *group, avm_val cmd);

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void bench_start_one(avm_rctl *r, benchrun *b)
{
    char key[48];
    snprintf(key, sizeof(key), "bench-%zu", b->started);
    char *val = malloc(b->size + 1);
    if (val == NULL) {
        b->started++;
        b->failed++;
        b->done++;
        return;
    }
    memset(val, 'v', b->size);
    val[b->size] = '\0';
    avm_val cmd = lst(4, cstr("put"), new_reqid(r), cstr(key), cstr(val));
    free(val);
    prop *p = cmd.kind != AVM_NIL ? prop_new(r, P_BENCH, b->group, cmd) : NULL;
    avm_val_release(cmd);
    b->started++;
    if (p == NULL) {
        b->failed++;
        b->done++;
        return;
    }
    p->bench = b;
    p->t_us = now_us();
    attempt(r, p);
}

static void bench_done(avm_rctl *r, prop *p, int rv)
{
    benchrun *b = p->bench;
    if (rv == 0)
        b->lat[b->done - b->failed] = now_us() - p->t_us;
    else
        b->failed++;
    b->done++;
    if (b->started < b->total)
        bench_start_one(r, b);
    if (b->done < b->total)
        return;
    size_t n = b->done - b->failed;
    double secs = (double)(now_us() - b->t0) / 1e6;
    qsort(b->lat, n, sizeof(*b->lat), cmp_u64);
    avm_ctl_body out;
    avm_ctl_body_init(&out);
    avm_ctl_put_str(&out, "controller", b->group);
    avm_ctl_put_int(&out, "n", (int64_t)n);
    avm_ctl_put_int(&out, "failed", (int64_t)b->failed);
    avm_ctl_put_int(&out, "ops_per_s", secs > 0 ? (int64_t)((double)n / secs) : 0);
    avm_ctl_put_int(&out, "p50_us", n ? (int64_t)b->lat[n / 2] : -1);
    avm_ctl_put_int(&out, "p99_us", n ? (int64_t)b->lat[n * 99 / 100] : -1);
    avm_ctl_put_int(&out, "elapsed_us", (int64_t)(secs * 1e6));
    avm_val v;
    if (avm_ctl_body_finish(&out, &v) == 0) {
        avm_ctl_reply(b->req, v);
        avm_val_release(v);
    } else {
        avm_ctl_reply_error(b->req, AVM_ENOMEM, "out of memory");
    }
    free(b->lat);
    free(b);
}

/* A request id unique over every node and restart. */
static avm_val new_reqid(avm_rctl *r)
{
    char id[96];
    snprintf(id, sizeof(id), "%s/%llu/%llu", cl_self(r->c),
             (unsigned long long)cl_incarnation(r->c), (unsigned long long)++r->next_req);
    return cstr(id);
}

static int commit_ws(avm_rctl *r, avm_val c, prop_kind kind, const avm_writeset *ws,
                     prop **out, char *errmsg, size_t errlen)
{
    const char *group = ctrl_name(c);
    if (group == NULL) {
        snprintf(errmsg, errlen, "not a controller name");
        return AVM_EINVAL;
    }
    for (size_t i = 0; i < ws->ntransfers; i++) {
        if (!avm_val_eq(ws->transfers[i].b, c)) {
            snprintf(errmsg, errlen,
                     "a transfer from controller %s to another controller is a commit "
                     "across controllers, not one of %s alone",
                     group, group);
            return AVM_ESTATE;
        }
    }
    avm_val wsv = cl_ws_val(r->c, ws);
    /* A commit named by its execution (write-ahead, manager.c) keeps its request id
     * over the executing node's restarts: proposed again, it gets the first
     * outcome from the deduplication below instead of applying twice. */
    avm_val rid = avm_nil();
    if (ws->commit_key != NULL) {
        char id[256];
        int il = snprintf(id, sizeof(id), "x:%s", ws->commit_key);
        if (il < 0 || (size_t)il >= sizeof(id)) {
            avm_val_release(wsv);
            snprintf(errmsg, errlen, "a commit name longer than %zu bytes",
                     sizeof(id) - 8);
            return AVM_EINVAL;
        }
        rid = cstr(id);
    } else {
        rid = new_reqid(r);
    }
    avm_val cmd = lst(3, cstr("ws"), rid, wsv);
    prop *p = cmd.kind != AVM_NIL ? prop_new(r, kind, group, cmd) : NULL;
    avm_val_release(cmd);
    if (p == NULL)
        return AVM_ENOMEM;
    *out = p;
    attempt(r, p);
    arm_retry(r);
    return 0;
}

int avm_rctl_commit_exec(avm_rctl *r, avm_val c, const char *id, uint64_t seq,
                         const avm_writeset *ws, char *errmsg, size_t errlen)
{
    prop *p;
    int rv = commit_ws(r, c, P_EXEC, ws, &p, errmsg, errlen);
    if (rv != 0)
        return rv;
    snprintf(p->exec, sizeof(p->exec), "%s", id);
    p->seq = seq;
    p->t_us = now_us();
    return 0;
}

void avm_rctl_commit_link(avm_rctl *r, avm_val c, avm_link_req *req,
                          const avm_writeset *ws)
{
    prop *p;
    char err[256];
    int rv = commit_ws(r, c, P_LINK, ws, &p, err, sizeof(err));
    if (rv != 0) {
        avm_link_reply_error(req, rv, "%s", err);
        return;
    }
    p->lreq = req;
}

int avm_rctl_submit(avm_rctl *r, const char *group, avm_val cmd, avm_rctl_cb cb,
                    void *arg, char *errmsg, size_t errlen)
{
    if (r->stopped || r->h == NULL) {
        snprintf(errmsg, errlen, "%s is stopping", cl_self(r->c));
        return AVM_ESTATE;
    }
    if (!valid_name(group)) {
        snprintf(errmsg, errlen, "not a controller name");
        return AVM_EINVAL;
    }
    prop *p = prop_new(r, P_TXN, group, cmd);
    if (p == NULL)
        return AVM_ENOMEM;
    p->cb = cb;
    p->cbarg = arg;
    /* A vote or a forget changes nothing the proposer reads: no need to wait for
     * its own replica to apply it. */
    const char *kind = str_at(cmd, 0);
    p->nowait =
        kind != NULL && (strcmp(kind, "prep") == 0 || strcmp(kind, "forget") == 0);
    attempt(r, p);
    arm_retry(r);
    return 0;
}

typedef struct hint_ctx {
    avm_val items[256];
    size_t n;
} hint_ctx;

static void hint_row(void *arg, avm_rgroup *g)
{
    hint_ctx *x = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    uint64_t term = in.applied > 0 ? avm_rgroup_term_at(g, in.applied) : 0;
    if (term == 0 || x->n == sizeof(x->items) / sizeof(x->items[0]))
        return;
    x->items[x->n++] = lst(3, cstr(avm_rgroup_name(g)), avm_int((int64_t)in.applied),
                           avm_int((int64_t)term));
}

avm_val avm_rctl_commit_hints(avm_rctl *r)
{
    hint_ctx x = {.n = 0};
    if (r == NULL || r->h == NULL)
        return avm_nil();
    avm_rhost_each(r->h, hint_row, &x);
    avm_val l;
    if (avm_list_from(x.items, x.n, &l) != 0)
        return avm_nil();
    return l;
}

void avm_rctl_learn_hints(avm_rctl *r, avm_val hints)
{
    if (r == NULL || r->h == NULL || hints.kind != AVM_LIST)
        return;
    for (size_t i = 0; i < avm_list_len(hints); i++) {
        avm_val h = avm_list_at(hints, i);
        const char *g = str_at(h, 0);
        if (g == NULL || avm_list_len(h) != 3 || avm_list_at(h, 1).kind != AVM_INT ||
            avm_list_at(h, 2).kind != AVM_INT || avm_list_at(h, 1).u.i <= 0 ||
            avm_list_at(h, 2).u.i <= 0)
            continue;
        avm_rhost_learn_commit(r->h, g, (uint64_t)avm_list_at(h, 1).u.i,
                               (uint64_t)avm_list_at(h, 2).u.i);
    }
    flush_now(r);
}

static void leader_row(void *arg, avm_rgroup *g)
{
    bool *all = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    if (!in.stopped && avm_rgroup_leader(g) == NULL)
        *all = false;
}

bool avm_rctl_leaders_known(avm_rctl *r)
{
    bool all = true;
    if (r != NULL && r->h != NULL)
        avm_rhost_each(r->h, leader_row, &all);
    return all;
}

bool avm_rctl_hosts(avm_rctl *r, const char *group)
{
    return r != NULL && r->h != NULL && avm_rhost_group(r->h, group) != NULL;
}

void avm_rctl_cross_latency(avm_rctl *r, uint64_t us)
{
    avm_lat_add(&r->lat_cross, us);
}

avm_txn *avm_rctl_txn(avm_rctl *r)
{
    return r != NULL ? r->txn : NULL;
}

/* --- Inspection (metrics) ------------------------------------------------------------
 */

typedef struct each_group_ctx {
    void (*fn)(void *arg, const avm_cluster_group *g);
    void *arg;
} each_group_ctx;

static void each_group_row(void *arg, avm_rgroup *g)
{
    each_group_ctx *x = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    const char *role = raft_state_name(in.state);
    avm_cluster_group out = {
        .name = avm_rgroup_name(g),
        .role = in.stopped ? "stopped"
                : role     ? role
                           : "unknown",
        .leader = in.leader,
        .is_leader = !in.stopped && in.state == RAFT_LEADER,
        .term = in.term,
        .commit = in.commit,
        .applied = in.applied,
        .last_index = in.last_index,
        .snapshot_index = in.snapshot_index,
        .members = in.nmembers,
    };
    x->fn(x->arg, &out);
}

void avm_rctl_each_group(avm_rctl *r, void (*fn)(void *arg, const avm_cluster_group *g),
                         void *arg)
{
    if (r == NULL || r->h == NULL)
        return;
    each_group_ctx x = {fn, arg};
    avm_rhost_each(r->h, each_group_row, &x);
}

void avm_rctl_latencies(avm_rctl *r, avm_cluster_hist *single, avm_cluster_hist *cross)
{
    *single = r->lat_single.hist;
    *cross = r->lat_cross.hist;
}

/* --- Queries for the manager ----------------------------------------------------------
 */

bool avm_rctl_replicated(avm_rctl *r, avm_val c)
{
    const char *name = ctrl_name(c);
    if (name == NULL || r == NULL)
        return false;
    return (r->h != NULL && avm_rhost_group(r->h, name) != NULL) || reg_find(r, name);
}

bool avm_rctl_leads(avm_rctl *r, avm_val c)
{
    const char *name = ctrl_name(c);
    avm_rgroup *g = name != NULL && r->h != NULL ? avm_rhost_group(r->h, name) : NULL;
    return g != NULL && avm_rgroup_is_leader(g);
}

bool avm_rctl_reachable(avm_rctl *r, avm_val c)
{
    const char *name = ctrl_name(c);
    if (name == NULL)
        return false;
    avm_rgroup *g = r->h != NULL ? avm_rhost_group(r->h, name) : NULL;
    if (g != NULL && avm_rgroup_is_leader(g))
        return avm_rgroup_has_quorum(g);
    const char *l = leader_of(r, name);
    return l != NULL && strcmp(l, cl_self(r->c)) != 0 && cl_reachable(r->c, l);
}

avm_val avm_rctl_ws_ctrl(avm_rctl *r, const avm_writeset *ws)
{
    if (r == NULL || r->m == NULL)
        return avm_nil();
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_rctl_replicated(r, ws->creates[i].meta.current)) {
            avm_val_retain(ws->creates[i].meta.current);
            return ws->creates[i].meta.current;
        }
#define TRY(oid)                                                                         \
    do {                                                                                 \
        const avm_objrec *rec_ = avm_mgr_known(r->m, (oid));                             \
        if (rec_ != NULL && avm_rctl_replicated(r, rec_->meta.current)) {                \
            avm_val c_ = rec_->meta.current;                                             \
            avm_val_retain(c_);                                                          \
            return c_;                                                                   \
        }                                                                                \
    } while (0)
    for (size_t i = 0; i < ws->nstates; i++)
        TRY(ws->states[i].a);
    for (size_t i = 0; i < ws->ndestroys; i++)
        TRY(ws->destroys[i]);
    for (size_t i = 0; i < ws->ntransfers; i++)
        TRY(ws->transfers[i].a);
    for (size_t i = 0; i < ws->nmoves; i++)
        TRY(ws->moves[i].a);
    for (size_t i = 0; i < ws->nreads; i++)
        TRY(ws->reads[i].oid);
#undef TRY
    return avm_nil();
}

/* A known replica of c to send to (the leader if known), or NULL. */
static const char *route_of(avm_rctl *r, avm_val c)
{
    const char *name = ctrl_name(c);
    if (name == NULL)
        return NULL;
    const char *l = leader_of(r, name);
    if (l != NULL)
        return l;
    reg *e = reg_find(r, name);
    for (size_t k = 0; e != NULL && k < e->nrep; k++)
        if (cl_reachable(r->c, e->replicas[k]))
            return e->replicas[k];
    return NULL;
}

/* --- Link traffic
 * ----------------------------------------------------------------------- */

void avm_rctl_on_frames(avm_rctl *r, const char *from, avm_val payload)
{
    if (r->stopped || r->h == NULL || payload.kind != AVM_LIST)
        return;
    for (size_t i = 0; i < avm_list_len(payload); i++) {
        avm_val f = avm_list_at(payload, i);
        if (f.kind == AVM_STR)
            avm_rhost_receive(r->h, from, (const uint8_t *)f.u.s->data, f.u.s->len);
    }
    flush_now(r);
}

typedef struct gossip_ctx {
    avm_val l;
    size_t i;
} gossip_ctx;

/* [group, leader, term, [replicas...]] */
static void gossip_row(void *arg, avm_rgroup *g)
{
    gossip_ctx *gc = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    avm_val reps = members_val(&in);
    if (reps.kind == AVM_NIL)
        return;
    gc->l.u.l->items[gc->i++] = lst(4, cstr(avm_rgroup_name(g)), cstr(in.leader),
                                    avm_int((int64_t)in.term), reps);
}

/* ["ctrls", [row, ...]] to every reachable member. */
void avm_rctl_gossip(avm_rctl *r)
{
    if (r->stopped || r->h == NULL)
        return;
    size_t n = avm_rhost_count(r->h);
    gossip_ctx gc = {avm_nil(), 0};
    if (avm_list_new(n, &gc.l) != 0)
        return;
    avm_rhost_each(r->h, gossip_row, &gc);
    /* rows that failed stay nil */
    avm_list_seal(gc.l);
    avm_val msg = lst(2, cstr("ctrls"), gc.l);
    const char *names[256];
    size_t nm = cl_members(r->c, names, 256);
    char err[256];
    for (size_t i = 0; i < nm; i++)
        if (cl_reachable(r->c, names[i]))
            avm_link_send(cl_link(r->c), names[i], msg, err, sizeof(err));
    avm_val_release(msg);
}

void avm_rctl_on_gossip(avm_rctl *r, const char *from, avm_val payload)
{
    if (payload.kind != AVM_LIST)
        return;
    for (size_t i = 0; i < avm_list_len(payload); i++) {
        avm_val e = avm_list_at(payload, i);
        const char *name = str_at(e, 0), *leader = str_at(e, 1);
        if (name == NULL || leader == NULL || !valid_name(name) || avm_list_len(e) != 4 ||
            avm_list_at(e, 2).kind != AVM_INT || avm_list_at(e, 3).kind != AVM_LIST)
            continue;
        reg *g = reg_get(r, name);
        if (g == NULL)
            continue;
        uint64_t term = (uint64_t)avm_list_at(e, 2).u.i;
        if (leader[0] && strlen(leader) < NAME_LEN && term >= g->term) {
            snprintf(g->leader, sizeof(g->leader), "%s", leader);
            g->term = term;
            g->heard_ms = now_ms();
        }
        avm_val reps = avm_list_at(e, 3);
        if (avm_list_len(reps) > 0 && avm_list_len(reps) <= MAX_REPLICAS) {
            g->nrep = 0;
            for (size_t k = 0; k < avm_list_len(reps); k++) {
                const char *nm = str_at(reps, k);
                if (nm != NULL && strlen(nm) < NAME_LEN)
                    snprintf(g->replicas[g->nrep++], NAME_LEN, "%s", nm);
            }
        }
    }
    (void)from;
}

/* Attempts out to `peer` (or, with except, to anyone but it) for group (NULL:
 * any) are given up on and made again at once: the answer may never come. The
 * request id makes the outcome the same whichever attempt applies it. */
static void abandon_attempts(avm_rctl *r, const char *group, const char *peer,
                             bool except)
{
    for (prop *p = r->props; p != NULL; p = p->next) {
        if (p->done || !p->inflight || (group != NULL && strcmp(p->group, group) != 0))
            continue;
        if ((strcmp(p->target, peer) == 0) != except) {
            p->inflight = false;
            p->gen++;
            p->hint[0] = '\0';
            p->attempt_at = 0;
        }
    }
    arm_retry(r);
}

void avm_rctl_peer_lost(avm_rctl *r, const char *peer)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nregs; i++)
        if (strcmp(r->regs[i].leader, peer) == 0)
            r->regs[i].leader[0] = '\0';
    abandon_attempts(r, NULL, peer, false);
}

static void on_propose(avm_rctl *r, avm_link_req *req, avm_val body)
{
    const char *group = str_at(body, 0);
    avm_val entry = body.kind == AVM_LIST && avm_list_len(body) == 2
                        ? avm_list_at(body, 1)
                        : avm_nil();
    if (group == NULL || entry.kind != AVM_STR) {
        avm_link_reply_error(req, AVM_EMALFORMED,
                             "raft.propose: expected [group, entry]");
        return;
    }
    avm_rgroup *g = r->h != NULL ? avm_rhost_group(r->h, group) : NULL;
    if (g == NULL || !avm_rgroup_is_leader(g)) {
        const char *l = leader_of(r, group);
        avm_val b =
            lst(2, cstr("redirect"), l && strcmp(l, cl_self(r->c)) ? cstr(l) : avm_nil());
        avm_link_reply(req, b);
        avm_val_release(b);
        return;
    }
    prop *p = calloc(1, sizeof(*p));
    if (p != NULL)
        p->entry = malloc(entry.u.s->len ? entry.u.s->len : 1);
    if (p == NULL || p->entry == NULL) {
        free(p);
        avm_link_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    memcpy(p->entry, entry.u.s->data, entry.u.s->len);
    p->len = entry.u.s->len;
    p->kind = P_REMOTE;
    p->lreq = req;
    snprintf(p->group, sizeof(p->group), "%s", group);
    p->deadline = now_ms() + r->cfg.commit_ms;
    p->next = r->props;
    r->props = p;
    attempt(r, p);
    arm_retry(r);
}

static int parse_names(avm_val l, const char **names, size_t max, size_t *n)
{
    *n = 0;
    if (l.kind != AVM_LIST || avm_list_len(l) == 0 || avm_list_len(l) > max)
        return AVM_EINVAL;
    for (size_t i = 0; i < avm_list_len(l); i++) {
        const char *s = str_at(l, i);
        if (s == NULL || !valid_name(s))
            return AVM_EINVAL;
        for (size_t k = 0; k < *n; k++)
            if (strcmp(names[k], s) == 0)
                return AVM_EINVAL;
        names[(*n)++] = s;
    }
    return 0;
}

bool avm_rctl_on_request(avm_rctl *r, avm_link_req *req, const char *from, const char *op,
                         avm_val body)
{
    if (strncmp(op, "raft.", 5) != 0)
        return false;
    if (r->h == NULL || r->m == NULL) {
        avm_link_reply_error(req, AVM_ESTATE, "%s is starting", cl_self(r->c));
        return true;
    }
    char err[256] = "";
    int rv = 0;
    if (strcmp(op, "raft.propose") == 0) {
        on_propose(r, req, body);
        return true;
    } else if (strcmp(op, "raft.bootstrap") == 0) {
        const char *name = str_at(body, 0);
        const char *names[MAX_REPLICAS];
        size_t n;
        if (name == NULL || !valid_name(name) || avm_list_len(body) != 2 ||
            parse_names(avm_list_at(body, 1), names, MAX_REPLICAS, &n) != 0) {
            avm_link_reply_error(req, AVM_EMALFORMED,
                                 "raft.bootstrap: expected [name, [replicas]]");
            return true;
        }
        rv = avm_rhost_bootstrap(r->h, name, names, n, err, sizeof(err));
    } else if (strcmp(op, "raft.drop") == 0) {
        /* This node left the group: its replica and the data of its controller go. */
        const char *name = str_at(body, 0);
        if (name == NULL || !valid_name(name)) {
            avm_link_reply_error(req, AVM_EMALFORMED, "raft.drop: expected [name]");
            return true;
        }
        avm_rgroup *g = avm_rhost_group(r->h, name);
        if (g == NULL) {
            avm_link_reply_error(req, AVM_ENOTFOUND, "%s has no replica of %s",
                                 cl_self(r->c), name);
            return true;
        }
        avm_rgroup_info in;
        avm_rgroup_info_get(g, &in);
        bool member = false;
        for (size_t i = 0; i < in.nmembers; i++)
            member |= strcmp(in.members[i].name, cl_self(r->c)) == 0;
        if (member && in.state != RAFT_UNAVAILABLE && !in.stopped &&
            avm_rgroup_is_leader(g)) {
            avm_link_reply_error(req, AVM_ESTATE, "%s still leads %s", cl_self(r->c),
                                 name);
            return true;
        }
        avm_rhost_drop(r->h, name);
        avm_txn_drop(r->txn, name);
        avm_val cv = ctrl_val(name);
        rv = avm_lmdb_raft_drop(r->db, name);
        if (rv == 0)
            rv = avm_lmdb_ctrl_clear(r->db, name, cv);
        avm_val_release(cv);
        if (rv != 0)
            snprintf(err, sizeof(err), "dropping %s: %s", name, avm_lmdb_errmsg(r->db));
        else
            cl_logf(r->c, CL_INFO, "raft.dropped", "group", "%s", name);
        cl_kick(r->c); /* the round commits it */
    } else if (strcmp(op, "raft.join") == 0) {
        const char *name = str_at(body, 0);
        if (name == NULL || !valid_name(name)) {
            avm_link_reply_error(req, AVM_EMALFORMED, "raft.join: expected [name]");
            return true;
        }
        rv = avm_rhost_join(r->h, name, err, sizeof(err));
    } else {
        avm_link_reply_error(req, AVM_EINVAL, "unknown request '%s' from %s", op, from);
        return true;
    }
    if (rv != 0) {
        avm_link_reply_error(req, rv, "%s", err);
    } else {
        avm_val b = cstr(cl_self(r->c));
        avm_link_reply(req, b);
        avm_val_release(b);
        avm_rctl_gossip(r);
    }
    return true;
}

/* --- Control operations
 * ------------------------------------------------------------------ */

/* A removed replica is told to drop its data once the change is committed (it is
 * then out of every later configuration); asked again until it answers. */
typedef struct dropper {
    avm_rctl *r;
    uv_timer_t t;
    char group[NAME_LEN], node[NAME_LEN];
    unsigned tries;
} dropper;

static void drop_closed(uv_handle_t *h)
{
    free(h->data);
}

static void drop_tick(uv_timer_t *t);

static void drop_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    dropper *d = arg;
    (void)reply;
    if (d->r->stopped || rv == 0 || rv == AVM_ENOTFOUND || d->tries >= 30) {
        if (rv != 0 && rv != AVM_ENOTFOUND && !d->r->stopped)
            cl_logf(d->r->c, CL_WARN, "raft.drop", "error", "%s on %s: %s", d->group,
                    d->node, errmsg ? errmsg : avm_strerror(rv));
        uv_close((uv_handle_t *)&d->t, drop_closed);
        return;
    }
    uv_timer_start(&d->t, drop_tick, 1000, 0);
}

/* Only once the leader's committed configuration no longer has the node: a voter
 * that dropped its log while still counted could help elect a leader without
 * committed entries. */
static void drop_tick(uv_timer_t *t)
{
    dropper *d = t->data;
    avm_rctl *r = d->r;
    if (r->stopped || ++d->tries > 30) {
        uv_close((uv_handle_t *)t, drop_closed);
        return;
    }
    avm_rgroup *g = avm_rhost_group(r->h, d->group);
    avm_rgroup_info in;
    if (g == NULL || !avm_rgroup_is_leader(g)) {
        uv_timer_start(t, drop_tick, 1000, 0);
        return;
    }
    avm_rgroup_info_get(g, &in);
    bool present = false;
    for (size_t i = 0; i < in.nmembers; i++)
        present |= strcmp(in.members[i].name, d->node) == 0;
    if (present) {
        /* The removal was lost (a leader change): the node stays a replica. */
        uv_close((uv_handle_t *)t, drop_closed);
        return;
    }
    if (!in.conf_committed) {
        uv_timer_start(t, drop_tick, 200, 0);
        return;
    }
    avm_val b = lst(1, cstr(d->group));
    char err[256];
    if (avm_link_request(cl_link(r->c), d->node, "raft.drop", b, r->cfg.request_ms,
                         drop_reply, d, err, sizeof(err)) != 0)
        uv_timer_start(t, drop_tick, 1000, 0);
    avm_val_release(b);
}

static void drop_later(avm_rctl *r, const char *group, const char *node)
{
    if (strcmp(node, cl_self(r->c)) == 0)
        return; /* the leader removed itself: it steps down; it keeps its data */
    dropper *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return;
    d->r = r;
    snprintf(d->group, sizeof(d->group), "%s", group);
    snprintf(d->node, sizeof(d->node), "%s", node);
    uv_timer_init(cl_loop(r->c), &d->t);
    d->t.data = d;
    uv_timer_start(&d->t, drop_tick, 2 * r->cfg.election_ms, 0);
}

typedef struct create_op {
    avm_rctl *r;
    avm_ctl_req *req;
    char name[NAME_LEN];
    size_t pending;
    char err[512];
} create_op;

static void create_done(create_op *op)
{
    if (op->err[0]) {
        avm_ctl_reply_error(op->req, AVM_EIO, "controller %s: %s", op->name, op->err);
    } else {
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put_str(&b, "name", op->name);
        avm_val out;
        if (avm_ctl_body_finish(&b, &out) == 0) {
            avm_ctl_reply(op->req, out);
            avm_val_release(out);
        }
    }
    free(op);
}

static void create_reply(void *arg, int rv, avm_val reply, const char *errmsg)
{
    create_op *op = arg;
    if (rv != 0) {
        size_t l = strlen(op->err);
        snprintf(op->err + l, sizeof(op->err) - l, "%s%s", l ? "; " : "",
                 errmsg ? errmsg : avm_strerror(rv));
    }
    if (--op->pending == 0)
        create_done(op);
}

static void create_reply_ignore(void *arg, int rv, avm_val reply, const char *errmsg)
{
    (void)arg;
    (void)rv;
    (void)reply;
    (void)errmsg;
}

static void reply_body(avm_ctl_req *req, avm_ctl_body *b)
{
    avm_val out;
    if (avm_ctl_body_finish(b, &out) != 0) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    avm_ctl_reply(req, out);
    avm_val_release(out);
}

static void op_create(avm_rctl *r, avm_ctl_req *req, avm_val body)
{
    const char *name = NULL;
    char err[256];
    if (avm_ctl_get_str(body, "name", &name, err, sizeof(err)) != 0 ||
        !valid_name(name)) {
        avm_ctl_reply_error(req, AVM_EINVAL,
                            "ctrl.create: name: 1 to 63 letters, digits, - _ .");
        return;
    }
    const char *names[MAX_REPLICAS];
    size_t n;
    if (parse_names(avm_ctl_get(body, "replicas"), names, 7, &n) != 0) {
        avm_ctl_reply_error(req, AVM_EINVAL,
                            "ctrl.create: replicas: 1 to 7 distinct member names");
        return;
    }
    avm_val cv = ctrl_val(name);
    bool taken = cl_default_ctrl_taken(r->c, name) || avm_rctl_replicated(r, cv);
    avm_val_release(cv);
    if (taken) {
        avm_ctl_reply_error(req, AVM_ESTATE, "controller %s exists", name);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (!avm_cluster_is_member(r->c, names[i]) || !cl_reachable(r->c, names[i])) {
            avm_ctl_reply_error(req, AVM_EUNREACHABLE,
                                "replica %s is not a reachable member of the cluster",
                                names[i]);
            return;
        }
    }
    create_op *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    op->r = r;
    op->req = req;
    snprintf(op->name, sizeof(op->name), "%s", name);
    op->pending = 1; /* held until every request is out */
    avm_val reps;
    if (avm_list_new(n, &reps) != 0) {
        free(op);
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++)
        reps.u.l->items[i] = cstr(names[i]);
    avm_list_seal(reps);
    avm_val rb = lst(2, cstr(name), reps);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(names[i], cl_self(r->c)) == 0) {
            if (avm_rhost_bootstrap(r->h, name, names, n, err, sizeof(err)) != 0)
                snprintf(op->err, sizeof(op->err), "%s", err);
            continue;
        }
        op->pending++;
        if (avm_link_request(cl_link(r->c), names[i], "raft.bootstrap", rb,
                             r->cfg.request_ms, create_reply, op, err, sizeof(err)) != 0)
            create_reply(op, AVM_EIO, avm_nil(), err);
    }
    avm_val_release(rb);
    reg *e = reg_get(r, name);
    if (e != NULL) {
        e->nrep = 0;
        for (size_t i = 0; i < n; i++)
            snprintf(e->replicas[e->nrep++], NAME_LEN, "%s", names[i]);
    }
    if (--op->pending == 0)
        create_done(op);
}

static avm_val info_val(avm_rctl *r, avm_rgroup *g, avm_ctl_body *b)
{
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    avm_ctl_put_str(b, "name", avm_rgroup_name(g));
    avm_ctl_put_str(b, "self", cl_self(r->c));
    avm_ctl_put_str(b, "state",
                    in.stopped                  ? "stopped"
                    : raft_state_name(in.state) ? raft_state_name(in.state)
                                                : "unavailable");
    if (in.leader[0])
        avm_ctl_put_str(b, "leader", in.leader);
    else
        avm_ctl_put(b, "leader", avm_nil());
    avm_ctl_put_int(b, "term", (int64_t)in.term);
    avm_ctl_put_int(b, "commit", (int64_t)in.commit);
    avm_ctl_put_int(b, "applied", (int64_t)in.applied);
    avm_ctl_put_int(b, "last_index", (int64_t)in.last_index);
    avm_ctl_put_int(b, "snapshot_index", (int64_t)in.snapshot_index);
    avm_ctl_put_bool(b, "quorum", avm_rgroup_has_quorum(g));
    size_t nint = 0, ndec = 0;
    avm_txn_count(r->txn, avm_rgroup_name(g), &nint, &ndec);
    avm_ctl_put_int(b, "intents", (int64_t)nint);
    avm_ctl_put_int(b, "decisions", (int64_t)ndec);
    if (in.stopped)
        avm_ctl_put_str(b, "why", in.why);
    avm_val ms;
    if (avm_list_new(in.nmembers, &ms) != 0)
        return avm_nil();
    for (size_t i = 0; i < in.nmembers; i++) {
        const avm_rgroup_member *m = &in.members[i];
        const char *role = raft_role_name(m->role);
        ms.u.l->items[i] = lst(4, cstr(m->name), cstr(role ? role : "?"),
                               avm_bool(cl_reachable(r->c, m->name)), avm_int(m->match));
    }
    avm_list_seal(ms);
    avm_ctl_put(b, "members", ms);
    return avm_nil();
}

/* Forwards req to node (hops permitting); false when it cannot. */
static bool forward_to(avm_rctl *r, avm_ctl_req *req, unsigned hops, const char *node,
                       const char *op, avm_val body)
{
    if (node == NULL || strcmp(node, cl_self(r->c)) == 0 || hops >= 2)
        return false;
    return avm_cluster_forward(r->c, req, hops, node, op, body);
}

typedef struct ls_ctx {
    avm_rctl *r;
    avm_val *rows;
    size_t n, cap;
} ls_ctx;

static void ls_row(avm_rctl *r, ls_ctx *x, const char *name, const char *leader,
                   uint64_t term, const char *here, avm_val reps)
{
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        avm_val *rows = realloc(x->rows, cap * sizeof(*rows));
        if (rows == NULL) {
            avm_val_release(reps);
            return;
        }
        x->rows = rows;
        x->cap = cap;
    }
    x->rows[x->n++] = lst(5, cstr(name), leader && *leader ? cstr(leader) : avm_nil(),
                          avm_int((int64_t)term), reps, cstr(here));
}

static void ls_local(void *arg, avm_rgroup *g)
{
    ls_ctx *x = arg;
    avm_rgroup_info in;
    avm_rgroup_info_get(g, &in);
    avm_val reps = members_val(&in);
    if (reps.kind == AVM_NIL)
        return;
    const char *st = in.stopped ? "stopped" : raft_state_name(in.state);
    ls_row(x->r, x, avm_rgroup_name(g), in.leader, in.term, st ? st : "?", reps);
}

static void op_ls(avm_rctl *r, avm_ctl_req *req)
{
    ls_ctx x = {r, NULL, 0, 0};
    avm_rhost_each(r->h, ls_local, &x);
    for (size_t i = 0; i < r->nregs; i++) {
        reg *e = &r->regs[i];
        if (avm_rhost_group(r->h, e->name) != NULL)
            continue;
        avm_val reps = names_val(e->replicas[0], NAME_LEN, e->nrep);
        if (reps.kind == AVM_NIL)
            continue;
        ls_row(r, &x, e->name, e->leader, e->term, "-", reps);
    }
    avm_val l;
    int rv = avm_list_from(x.rows, x.n, &l); /* takes the rows */
    free(x.rows);
    if (rv != 0) {
        avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        return;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put(&b, "controllers", l);
    reply_body(req, &b);
}

void avm_rctl_control(avm_rctl *r, avm_ctl_req *req, const char *op, avm_val body,
                      unsigned hops)
{
    if (r->h == NULL || r->m == NULL) {
        avm_ctl_reply_error(req, AVM_ESTATE, "node is starting");
        return;
    }
    char err[256] = "";
    if (strcmp(op, "ctrl.create") == 0) {
        op_create(r, req, body);
        return;
    }
    if (strcmp(op, "ctrl.ls") == 0) {
        op_ls(r, req);
        return;
    }
    if (strcmp(op, "ctrl.latency") == 0) {
        /* Commit latencies of this node's executions: through one controller's
         * group, and across controllers (two-phase). */
        avm_ctl_body o;
        avm_ctl_body_init(&o);
        avm_lat *ls[2] = {&r->lat_single, &r->lat_cross};
        const char *names[2] = {"single", "cross"};
        for (int k = 0; k < 2; k++) {
            avm_ctl_body kb;
            avm_ctl_body_init(&kb);
            avm_ctl_put_int(&kb, "n", (int64_t)ls[k]->n);
            avm_ctl_put_int(&kb, "p50_us", (int64_t)avm_lat_pct(ls[k], 50));
            avm_ctl_put_int(&kb, "p99_us", (int64_t)avm_lat_pct(ls[k], 99));
            avm_val kv;
            if (avm_ctl_body_finish(&kb, &kv) == 0)
                avm_ctl_put(&o, names[k], kv);
            if (avm_truthy(avm_ctl_get(body, "reset")))
                ls[k]->n = 0;
        }
        /* The transaction layer's counts on this node. */
        avm_txn_stats ts;
        avm_txn_stats_get(r->txn, &ts);
        avm_ctl_body tb;
        avm_ctl_body_init(&tb);
        avm_ctl_put_int(&tb, "started", (int64_t)ts.started);
        avm_ctl_put_int(&tb, "committed", (int64_t)ts.committed);
        avm_ctl_put_int(&tb, "aborted", (int64_t)ts.aborted);
        avm_ctl_put_int(&tb, "unknown", (int64_t)ts.unknown);
        avm_ctl_put_int(&tb, "prepared", (int64_t)ts.prepared);
        avm_ctl_put_int(&tb, "finished", (int64_t)ts.finished);
        avm_ctl_put_int(&tb, "recovered", (int64_t)ts.recovered);
        avm_ctl_put_int(&tb, "blocked", (int64_t)ts.blocked);
        avm_ctl_put_int(&tb, "intents", (int64_t)ts.intents);
        avm_ctl_put_int(&tb, "inflight", (int64_t)ts.inflight);
        avm_val tv;
        if (avm_ctl_body_finish(&tb, &tv) == 0)
            avm_ctl_put(&o, "txn", tv);
        avm_val out;
        if (avm_ctl_body_finish(&o, &out) == 0) {
            avm_ctl_reply(req, out);
            avm_val_release(out);
        } else {
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
        }
        return;
    }
    const char *name = NULL;
    const char *key = strcmp(op, "ctrl.put") == 0 || strcmp(op, "ctrl.get") == 0
                          ? "controller"
                          : "name";
    if (avm_ctl_get_str(body, key, &name, err, sizeof(err)) != 0 || !valid_name(name)) {
        avm_ctl_reply_error(req, AVM_EINVAL, "%s: %s: a controller name", op, key);
        return;
    }
    avm_rgroup *g = avm_rhost_group(r->h, name);
    avm_val cv = ctrl_val(name);
    bool known = avm_rctl_replicated(r, cv);
    const char *route = route_of(r, cv);
    avm_val_release(cv);
    if (!known) {
        avm_ctl_reply_error(req, AVM_ENOTFOUND, "no replicated controller named %s",
                            name);
        return;
    }
    const char *leader = leader_of(r, name);
    if (strcmp(op, "ctrl.status") == 0) {
        /* The leader's view has the members' progress. */
        if ((g == NULL || !avm_rgroup_is_leader(g)) &&
            forward_to(r, req, hops, g != NULL && leader ? leader : route, op, body))
            return;
        if (g == NULL) {
            avm_ctl_reply_error(req, AVM_EUNREACHABLE,
                                "no replica of %s is reachable from %s", name,
                                cl_self(r->c));
            return;
        }
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        info_val(r, g, &b);
        reply_body(req, &b);
        return;
    }
    if (strcmp(op, "ctrl.get") == 0) {
        const char *k = NULL;
        if (avm_ctl_get_str(body, "key", &k, err, sizeof(err)) != 0) {
            avm_ctl_reply_error(req, AVM_EINVAL, "ctrl.get: key: a string");
            return;
        }
        /* Read from the leader: it has applied every write acknowledged so far. */
        if ((g == NULL || !avm_rgroup_is_leader(g)) &&
            forward_to(r, req, hops, leader ? leader : route, op, body))
            return;
        if (g == NULL) {
            avm_ctl_reply_error(req, AVM_EUNREACHABLE, "no replica of %s reachable",
                                name);
            return;
        }
        char kk[600];
        int kl = kv_key(kk, sizeof(kk), "k/", k, strlen(k));
        avm_buf v;
        avm_buf_init(&v);
        int rv = kl > 0 ? avm_lmdb_raft_kv_get(r->db, name, (const uint8_t *)kk,
                                               (size_t)kl, &v)
                        : AVM_ETOOBIG;
        if (rv != 0) {
            avm_buf_free(&v);
            avm_ctl_reply_error(req, rv, "%s: key %s: %s", name, k, avm_strerror(rv));
            return;
        }
        avm_ctl_body b;
        avm_ctl_body_init(&b);
        avm_ctl_put(&b, "value", str(AVM_STR, v.data, v.len));
        avm_buf_free(&v);
        reply_body(req, &b);
        return;
    }
    if (strcmp(op, "ctrl.bench") == 0) {
        int64_t count = 0, depth = 0, size = 64;
        if (avm_ctl_get_int(body, "count", &count, err, sizeof(err)) != 0 ||
            avm_ctl_get_int(body, "depth", &depth, err, sizeof(err)) != 0 || count < 1 ||
            count > 10000000 || depth < 1 || depth > 4096 ||
            (avm_ctl_get(body, "size").kind == AVM_INT &&
             (size = avm_ctl_get(body, "size").u.i) < 0) ||
            size > 65536) {
            avm_ctl_reply_error(req, AVM_EINVAL,
                                "ctrl.bench: count (1..1e7), depth (1..4096), optional "
                                "size (0..65536)");
            return;
        }
        if (g == NULL || !avm_rgroup_is_leader(g)) {
            if (!forward_to(r, req, hops, leader ? leader : route, op, body))
                avm_ctl_reply_error(req, AVM_ESTATE, "%s has no reachable leader", name);
            return;
        }
        benchrun *b = calloc(1, sizeof(*b));
        if (b != NULL)
            b->lat = calloc((size_t)count, sizeof(*b->lat));
        if (b == NULL || b->lat == NULL) {
            free(b);
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
            return;
        }
        b->req = req;
        snprintf(b->group, sizeof(b->group), "%s", name);
        b->total = (size_t)count;
        b->size = (size_t)size;
        b->t0 = now_us();
        for (int64_t i = 0; i < depth && b->started < b->total; i++)
            bench_start_one(r, b);
        arm_retry(r);
        return;
    }
    if (strcmp(op, "ctrl.put") == 0) {
        const char *k = NULL, *v = NULL;
        if (avm_ctl_get_str(body, "key", &k, err, sizeof(err)) != 0 ||
            avm_ctl_get_str(body, "value", &v, err, sizeof(err)) != 0 ||
            strlen(k) > 500) {
            avm_ctl_reply_error(req, AVM_EINVAL,
                                "ctrl.put: key (at most 500 bytes) and value: strings");
            return;
        }
        avm_val cmd = lst(4, cstr("put"), new_reqid(r), cstr(k), cstr(v));
        prop *p = cmd.kind != AVM_NIL ? prop_new(r, P_CTL, name, cmd) : NULL;
        avm_val_release(cmd);
        if (p == NULL) {
            avm_ctl_reply_error(req, AVM_ENOMEM, "out of memory");
            return;
        }
        p->creq = req;
        attempt(r, p);
        arm_retry(r);
        return;
    }
    /* Membership and leadership: on the leader. */
    if (g == NULL || !avm_rgroup_is_leader(g)) {
        if (!forward_to(r, req, hops, leader ? leader : route, op, body))
            avm_ctl_reply_error(req, AVM_ESTATE, "%s has no reachable leader", name);
        return;
    }
    const char *node = NULL;
    int grv = avm_ctl_get_str(body, "node", &node, err, sizeof(err));
    /* transfer with "" hands leadership to the most up-to-date voter */
    bool any = strcmp(op, "ctrl.transfer") == 0 && grv == 0 && *node == '\0';
    if (!any && (grv != 0 || !valid_name(node))) {
        avm_ctl_reply_error(req, AVM_EINVAL, "%s: node: a member name", op);
        return;
    }
    int rv;
    if (strcmp(op, "ctrl.add") == 0) {
        if (!avm_cluster_is_member(r->c, node) || !cl_reachable(r->c, node)) {
            avm_ctl_reply_error(req, AVM_EUNREACHABLE, "%s is not a reachable member",
                                node);
            return;
        }
        /* The new replica starts empty; the leader adds it once it exists. A join
         * that finds the group there already (a retry) is fine. */
        if (strcmp(node, cl_self(r->c)) != 0) {
            avm_val jb = lst(1, cstr(name));
            char jerr[256];
            avm_link_request(cl_link(r->c), node, "raft.join", jb, r->cfg.request_ms,
                             create_reply_ignore, NULL, jerr, sizeof(jerr));
            avm_val_release(jb);
        }
        rv = avm_rgroup_add(g, node, err, sizeof(err));
    } else if (strcmp(op, "ctrl.remove") == 0) {
        rv = avm_rgroup_remove(g, node, err, sizeof(err));
        if (rv == 0)
            drop_later(r, name, node);
    } else if (strcmp(op, "ctrl.transfer") == 0) {
        rv = avm_rgroup_transfer(g, node, err, sizeof(err));
    } else {
        avm_ctl_reply_error(req, AVM_EINVAL, "unknown operation %s", op);
        return;
    }
    flush_now(r);
    if (rv != 0) {
        avm_ctl_reply_error(req, rv, "%s", err);
        return;
    }
    avm_ctl_body b;
    avm_ctl_body_init(&b);
    avm_ctl_put_str(&b, "name", name);
    avm_ctl_put_str(&b, "node", node);
    reply_body(req, &b);
}

/* --- Lifecycle
 * ---------------------------------------------------------------------------- */

int avm_rctl_new(avm_cluster *c, const avm_rctl_config *cfg, avm_rctl **out, char *errmsg,
                 size_t errlen)
{
    avm_rctl *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return AVM_ENOMEM;
    r->c = c;
    r->cfg = *cfg;
    if (r->cfg.election_ms == 0)
        r->cfg.election_ms = 300;
    if (r->cfg.heartbeat_ms == 0)
        r->cfg.heartbeat_ms = 50;
    if (r->cfg.request_ms == 0)
        r->cfg.request_ms = 5000;
    if (r->cfg.commit_ms == 0)
        r->cfg.commit_ms = 10000;
    if (r->cfg.heartbeat_ms >= r->cfg.election_ms) {
        snprintf(errmsg, errlen,
                 "the raft heartbeat (%u ms) must be shorter than the "
                 "election timeout (%u ms)",
                 r->cfg.heartbeat_ms, r->cfg.election_ms);
        free(r);
        return AVM_EINVAL;
    }
    uv_loop_t *loop = cl_loop(c);
    uv_timer_init(loop, &r->timer);
    uv_timer_init(loop, &r->retry);
    uv_check_init(loop, &r->check);
    uv_idle_init(loop, &r->submit);
    r->subq_tail = &r->subq;
    r->timer.data = r->retry.data = r->check.data = r->submit.data = r;
    uv_check_start(&r->check, flush_boxes);
    uv_unref((uv_handle_t *)&r->check);
    r->handles = true;
    *out = r;
    return 0;
}

typedef struct load_ctx {
    avm_rctl *r;
    int rv;
    char *err;
    size_t errlen;
} load_ctx;

static int load_group(void *arg, const char *group)
{
    load_ctx *x = arg;
    avm_lmdb_rstate st;
    int rv = avm_lmdb_raft_load(x->r->db, group, &st);
    if (rv != 0) {
        snprintf(x->err, x->errlen, "raft group %s: %s", group,
                 avm_lmdb_errmsg(x->r->db));
        x->rv = rv;
        return 1;
    }
    avm_rentry *es = calloc(st.n ? st.n : 1, sizeof(*es));
    if (es == NULL) {
        avm_lmdb_rstate_free(&st);
        x->rv = AVM_ENOMEM;
        return 1;
    }
    for (size_t i = 0; i < st.n; i++)
        es[i] = (avm_rentry){st.e[i].term, st.e[i].type, st.e[i].data, st.e[i].len};
    avm_rload ld = {.term = st.term,
                    .vote = st.vote,
                    .applied = st.applied,
                    .has_snap = st.has_snap,
                    .snap = {st.snap_index, st.snap_term, st.snap_conf_index,
                             st.snap_conf, st.snap_conf_len},
                    .first_index = st.first_index,
                    .e = es,
                    .n = st.n};
    rv = avm_rhost_start(x->r->h, group, &ld, x->err, x->errlen);
    free(es);
    avm_lmdb_rstate_free(&st);
    if (rv == 0 && (rv = avm_txn_load(x->r->txn, group)) != 0)
        snprintf(x->err, x->errlen, "raft group %s: its transactions: %s", group,
                 avm_lmdb_errmsg(x->r->db));
    if (rv != 0) {
        x->rv = rv;
        return 1;
    }
    return 0;
}

int avm_rctl_attach(avm_rctl *r, avm_mgr *m, avm_lmdb *db, char *errmsg, size_t errlen)
{
    r->m = m;
    r->db = db;
    avm_rhost_config hc = {.self = cl_self(r->c),
                           .io = {.arg = r,
                                  .save_term_vote = io_save_tv,
                                  .save_entries = io_save_entries,
                                  .save_compact = io_save_compact,
                                  .save_install = io_save_install,
                                  .sync = io_sync,
                                  .send = io_send,
                                  .apply = io_apply,
                                  .snapshot_data = io_snapshot_data,
                                  .changed = io_changed,
                                  .schedule = io_schedule,
                                  .now = io_now},
                           .election_ms = r->cfg.election_ms,
                           .heartbeat_ms = r->cfg.heartbeat_ms,
                           .snapshot_every = r->cfg.snapshot_every};
    int rv = avm_rhost_new(&hc, &r->h, errmsg, errlen);
    if (rv != 0)
        return rv;
    if ((rv = avm_txn_new(r->c, r, m, db, &r->txn)) != 0) {
        snprintf(errmsg, errlen, "the transaction layer: %s", avm_strerror(rv));
        return rv;
    }
    load_ctx x = {r, 0, errmsg, errlen};
    rv = avm_lmdb_raft_groups(db, load_group, &x);
    if (x.rv != 0)
        return x.rv;
    if (rv != 0) {
        snprintf(errmsg, errlen, "listing raft groups: %s", avm_lmdb_errmsg(db));
        return rv;
    }
    return 0;
}

void avm_rctl_stop(avm_rctl *r)
{
    if (r == NULL || r->stopped)
        return;
    r->stopped = true;
    avm_txn_stop(r->txn);
    /* Proposals in flight get no answer from here: their askers' deadlines and the
     * link's restart handling end them. */
    if (r->handles) {
        uv_close((uv_handle_t *)&r->timer, NULL);
        uv_close((uv_handle_t *)&r->retry, NULL);
        uv_close((uv_handle_t *)&r->check, NULL);
        uv_close((uv_handle_t *)&r->submit, NULL);
    }
}

void avm_rctl_free(avm_rctl *r)
{
    if (r == NULL)
        return;
    avm_rhost_free(r->h);
    /* Steps of commits across controllers still in flight end now, so that the
     * transaction layer frees what it keeps for them. */
    for (prop *p = r->props; p != NULL; p = p->next) {
        if (p->kind == P_TXN && !p->done) {
            p->done = true;
            if (p->cb != NULL)
                p->cb(p->cbarg, AVM_ESTATE, false, NULL, 0, "the node is stopping");
        }
    }
    avm_txn_free(r->txn);
    while (r->props != NULL) {
        prop *p = r->props;
        r->props = p->next;
        prop_free(p);
    }
    for (size_t i = 0; i < r->nboxes; i++) {
        for (size_t k = 0; k < r->boxes[i].n; k++)
            avm_val_release(r->boxes[i].frames[k]);
        free(r->boxes[i].frames);
    }
    free(r->boxes);
    free(r->regs);
    free(r->lat_single.v);
    free(r->lat_cross.v);
    free(r);
}
