/* Inside the cluster layer: what cluster.c (membership, links, objects) and
 * replicas.c (replicated controllers: Raft groups) offer each other. Not for use
 * outside node/cluster. */
#ifndef AVM_CLUSTER_INTERNAL_H
#define AVM_CLUSTER_INTERNAL_H
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cluster.h"
#include "link.h"
#include "lmdb_store.h"
#include "manager.h"

enum { CL_DEBUG, CL_INFO, CL_WARN, CL_ERROR };

/* Values for messages: a list of n owned values (nil on failure: the values are
 * released), a string of a kind (nil on failure). */
static inline avm_val lst(size_t n, ...)
{
    avm_val items[12];
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n && i < 12; i++)
        items[i] = va_arg(ap, avm_val);
    va_end(ap);
    avm_val out;
    if (n > 12 || avm_list_from(items, n, &out) != 0)
        return avm_nil();
    return out;
}

static inline avm_val str(avm_kind k, const void *s, size_t n)
{
    avm_val v;
    return avm_str_new(k, s, n, &v) == 0 ? v : avm_nil();
}

static inline avm_val cstr(const char *s)
{
    return str(AVM_STR, s, strlen(s));
}

/* Latency samples (µs): the last AVM_LAT_MAX, and their percentiles. */
#define AVM_LAT_MAX 65536
typedef struct avm_lat {
    uint64_t *v;
    size_t n;              /* samples taken (the ring holds the last AVM_LAT_MAX) */
    avm_cluster_hist hist; /* every sample, never reset (metrics) */
} avm_lat;

static inline void avm_lat_add(avm_lat *l, uint64_t us)
{
    l->hist.count++;
    l->hist.sum_us += us;
    for (size_t i = 0; i < AVM_CLUSTER_LAT_BUCKETS; i++) {
        if (us <= avm_cluster_lat_bounds_us[i]) {
            l->hist.bucket[i]++;
            break;
        }
    }
    if (l->v == NULL && (l->v = (uint64_t *)calloc(AVM_LAT_MAX, sizeof(*l->v))) == NULL)
        return;
    l->v[l->n++ % AVM_LAT_MAX] = us;
}

static int avm_lat_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The pct-th percentile of the samples, 0 when there are none. */
static inline uint64_t avm_lat_pct(const avm_lat *l, unsigned pct)
{
    size_t n = l->n < AVM_LAT_MAX ? l->n : AVM_LAT_MAX;
    if (n == 0 || l->v == NULL)
        return 0;
    uint64_t *c = (uint64_t *)malloc(n * sizeof(*c));
    if (c == NULL)
        return 0;
    memcpy(c, l->v, n * sizeof(*c));
    qsort(c, n, sizeof(*c), avm_lat_cmp);
    uint64_t v = c[n * pct / 100 < n ? n * pct / 100 : n - 1];
    free(c);
    return v;
}

/* --- cluster.c, for replicas.c --- */
avm_link *cl_link(avm_cluster *c);
uv_loop_t *cl_loop(avm_cluster *c);
avm_mgr *cl_mgr(avm_cluster *c); /* NULL until attached */
const char *cl_self(const avm_cluster *c);
/* executeSolver for the node (bundles settle their members' choices with it): the
 * contract of avm_platform.solve. */
int cl_solve(avm_cluster *c, avm_val problem, avm_val *model, avm_buf *why);
uint64_t cl_incarnation(const avm_cluster *c);
void cl_kick(avm_cluster *c);
/* Whether machine is this node or a member the failure detector deems reachable. */
bool cl_reachable(const avm_cluster *c, const char *machine);
/* Names of the members (this node excluded), for broadcasts. */
size_t cl_members(const avm_cluster *c, const char **names, size_t max);
/* Whether some member's default controller is named name. */
bool cl_default_ctrl_taken(const avm_cluster *c, const char *name);
void cl_logf(avm_cluster *c, int level, const char *event, const char *k, const char *fmt,
             ...) __attribute__((format(printf, 5, 6)));
/* Write sets as values (the obj.apply encoding) and back. cl_ws_from fills *ws with
 * arrays owned by *buf (free with cl_ws_free) and values borrowed from v. */
avm_val cl_ws_val(avm_cluster *c, const avm_writeset *ws);
int cl_ws_from(avm_cluster *c, avm_val v, avm_writeset *ws, void **buf, char *err,
               size_t en);
void cl_ws_free(void *buf);
/* [[oid, version], ...] and back (oids borrowed from l). */
avm_val cl_versions_val(const avm_read *v, size_t n);
avm_read *cl_versions_from(avm_val l, size_t *n);

/* --- replicas.c, for cluster.c --- */
typedef struct avm_rctl avm_rctl;
typedef struct avm_rctl_config {
    unsigned election_ms, heartbeat_ms; /* 0: 300, 50 */
    unsigned snapshot_every;            /* 0: 1024 */
    uint32_t request_ms;                /* one attempt of a forwarded proposal */
    uint32_t commit_ms;                 /* a proposal's whole deadline (0: 10000) */
} avm_rctl_config;
int avm_rctl_new(avm_cluster *c, const avm_rctl_config *cfg, avm_rctl **out, char *errmsg,
                 size_t errlen);
/* Once the manager is open: restarts the replicas found in its store. */
int avm_rctl_attach(avm_rctl *r, avm_mgr *m, avm_lmdb *db, char *errmsg, size_t errlen);
void avm_rctl_stop(avm_rctl *r);
void avm_rctl_free(avm_rctl *r);
/* Whether controller c is replicated (a group known here, as a replica or from
 * gossip). */
bool avm_rctl_replicated(avm_rctl *r, avm_val c);
/* Whether this node leads c's group. */
bool avm_rctl_leads(avm_rctl *r, avm_val c);
/* isReachableController for a replicated c: a leader is reachable from here and
 * has a quorum. */
bool avm_rctl_reachable(avm_rctl *r, avm_val c);
/* The replicated controller ws commits under (a create's controller, or that of a
 * record held here), or nil. */
avm_val avm_rctl_ws_ctrl(avm_rctl *r, const avm_writeset *ws);
/* Commits ws through c's group; the manager hears the outcome (avm_mgr_applied for
 * id/seq). 0 or an error (the instruction fails with errmsg). */
int avm_rctl_commit_exec(avm_rctl *r, avm_val c, const char *id, uint64_t seq,
                         const avm_writeset *ws, char *errmsg, size_t errlen);
/* The same for a write set forwarded by another node (obj.apply): the answer goes
 * to req as obj.apply's ([committed, versions]). */
void avm_rctl_commit_link(avm_rctl *r, avm_val c, avm_link_req *req,
                          const avm_writeset *ws);
/* Link traffic: one-way "raft" / "ctrls" messages and "raft.*" requests. */
void avm_rctl_on_frames(avm_rctl *r, const char *from, avm_val payload);
void avm_rctl_on_gossip(avm_rctl *r, const char *from, avm_val payload);
bool avm_rctl_on_request(avm_rctl *r, avm_link_req *req, const char *from, const char *op,
                         avm_val body);
/* Sends this node's view of its groups to every member (gossip). */
void avm_rctl_gossip(avm_rctl *r);
/* A member became unreachable or restarted. */
void avm_rctl_peer_lost(avm_rctl *r, const char *peer);
/* Control operations "ctrl.*". hops as avm_cluster_forward. */
void avm_rctl_control(avm_rctl *r, avm_ctl_req *req, const char *op, avm_val body,
                      unsigned hops);
/* Proposes cmd (a state machine command: [kind, request id, ...]) to group's log,
 * through its leader, retried with the same request id until the proposal's
 * deadline; cb (may be NULL) hears the outcome once the entry is applied: committed
 * is what the state machine answered, v the versions it made. 0, or an error with
 * errmsg (cb is then not called). */
typedef void (*avm_rctl_cb)(void *arg, int rv, bool committed, const avm_read *v,
                            size_t nv, const char *why);
int avm_rctl_submit(avm_rctl *r, const char *group, avm_val cmd, avm_rctl_cb cb,
                    void *arg, char *errmsg, size_t errlen);

/* --- txn.c: commits across controllers (two-phase commit over Raft groups) --- */
typedef struct avm_txn avm_txn;
typedef void (*avm_txn_done)(void *arg, int rv, bool committed, const avm_read *v,
                             size_t nv, const char *why);
typedef struct avm_txn_stats {
    uint64_t started, committed, aborted, unknown;   /* driven from this node */
    uint64_t prepared, finished, recovered, blocked; /* by the state machines here */
    size_t intents, inflight;                        /* now */
} avm_txn_stats;
int avm_txn_new(avm_cluster *c, avm_rctl *r, avm_mgr *m, avm_lmdb *db, avm_txn **out);
void avm_txn_stop(avm_txn *t);
void avm_txn_free(avm_txn *t);
/* The controllers ws involves (at most max names of 64 bytes). */
size_t avm_txn_participants(avm_txn *t, const avm_writeset *ws, char names[][64],
                            size_t max);
/* Commits ws across its controllers; done hears the outcome (rv 0: committed says
 * which; else the outcome is unknown, why says so). 0, or an error with errmsg. */
int avm_txn_commit(avm_txn *t, const avm_writeset *ws, avm_txn_done done, void *arg,
                   char *errmsg, size_t errlen);
/* The state machine: a "prep", "dec", "fin" or "forget" command of group at index. */
int avm_txn_apply(avm_txn *t, const char *group, uint64_t index, avm_val cmd,
                  bool *committed, avm_read **vers, size_t *nv);
/* Whether an intent held in group blocks the ordinary commit ws. */
bool avm_txn_blocks(avm_txn *t, const char *group, const avm_writeset *ws);
/* The group's records (intents, decisions) from the store: at start and after a
 * snapshot was installed; drop forgets them (the replica left). */
int avm_txn_load(avm_txn *t, const char *group);
void avm_txn_drop(avm_txn *t, const char *group);
void avm_txn_stats_get(avm_txn *t, avm_txn_stats *st);
/* How many intents and unforgotten decisions group holds here. */
void avm_txn_count(avm_txn *t, const char *group, size_t *intents, size_t *decisions);
/* --- bundle.c: composed commits --- */
typedef struct avm_bundles avm_bundles;
typedef void (*avm_bundle_view_cb)(void *arg, int rv, avm_val view, uint64_t seen,
                                   const char *errmsg);
int avm_bundles_new(avm_cluster *c, avm_rctl *r, avm_bundles **out);
void avm_bundles_stop(avm_bundles *b);
void avm_bundles_free(avm_bundles *b);
/* Execution exec's segment ws (its outermost commit, after `seen` segments) goes to
 * bundle id's home; the manager hears the bundle's outcome (avm_mgr_applied). */
int avm_bundle_contribute(avm_bundles *b, const char *id, const char *exec, uint64_t seq,
                          const avm_writeset *ws, uint64_t seen, char *errmsg,
                          size_t errlen);
void avm_bundle_abort(avm_bundles *b, const char *id, const char *exec);
int avm_bundle_view(avm_bundles *b, const char *id, avm_bundle_view_cb cb, void *arg,
                    char *errmsg, size_t errlen);
bool avm_bundle_on_request(avm_bundles *b, avm_link_req *req, const char *from,
                           const char *op, avm_val body);
void avm_bundle_on_message(avm_bundles *b, const char *from, avm_val body);
void avm_bundle_control(avm_bundles *b, avm_ctl_req *req, const char *op, avm_val body,
                        unsigned hops);
/* Whether controller k's objects live on this node (its own default controller). */
bool cl_local_ctrl(avm_cluster *c, avm_val k);
/* A commit across controllers of an execution here took us µs. */
void avm_rctl_cross_latency(avm_rctl *r, uint64_t us);
/* [[group, index, term]...]: the entries this node's replicas have applied, which
 * are committed: an execution that leaves for another node takes them along, and
 * that node's replicas apply up to them at once if their logs hold those entries
 * (avm_rhost_learn_commit), instead of waiting for the leader's next heartbeat. */
avm_val avm_rctl_commit_hints(avm_rctl *r);
void avm_rctl_learn_hints(avm_rctl *r, avm_val hints);
/* Whether every group replicated here knows its leader. */
bool avm_rctl_leaders_known(avm_rctl *r);
/* Whether this node holds a replica of group. */
bool avm_rctl_hosts(avm_rctl *r, const char *group);
/* The node's transaction layer (NULL before attach). */
avm_txn *avm_rctl_txn(avm_rctl *r);
/* For avm_cluster_each_group and avm_cluster_stats_get. */
void avm_rctl_each_group(avm_rctl *r, void (*fn)(void *arg, const avm_cluster_group *g),
                         void *arg);
void avm_rctl_latencies(avm_rctl *r, avm_cluster_hist *single, avm_cluster_hist *cross);
/* How many bundles homed here are open, committing, committed, aborted. */
void avm_bundles_count(avm_bundles *b, size_t out[4]);
#endif
