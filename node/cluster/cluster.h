/* The cluster layer (Layer 3): this node among the others. It joins the execution
 * manager to the node-to-node links:
 *
 *   membership   peers from the configuration, a join through any member's control
 *                endpoint, and gossip of the member list (name, link address,
 *                controller) every second;
 *   reachability heartbeats on every link feed a phi-accrual failure detector with
 *                a hard bound (transport/fd.h): isReachableMachine(m) is false within
 *                fd_bound_ms of m crashing or being cut off, true again once it is
 *                heard; isReachableController(c) is whether c's host is reachable;
 *   objects      an object lives on its controller's host (or, without a
 *                controller, on the machine that created it). A node finds it by a
 *                location cache, then the machine its id names (ids are prefixed by
 *                the machine that made them), then by asking every reachable member;
 *                a node that does not hold it answers "not here", which drops the
 *                cached location (a redirect). Whoever serves a record pushes its
 *                later changes to those it served (subscribers) and to the machine
 *                it is placed on (its replica);
 *   executions   roam (manager.h): states travel as one-way "exec.visit" messages;
 *   control      requests for another node's executions or programs are forwarded
 *                to it ("ctl" requests), so that any node answers for all.
 *
 * Everything runs on the loop thread. */
#ifndef AVM_CLUSTER_H
#define AVM_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "control.h"
#include "manager.h"
#include "value.h"

typedef struct avm_cluster avm_cluster;

typedef struct avm_cluster_config {
    const char *self;         /* this machine's name */
    const char *controller;   /* the controller this machine hosts */
    const char *listen;       /* link address, "tcp://HOST:PORT" */
    const char *advertise;    /* the address others dial (NULL: listen) */
    const char *const *peers; /* "NAME=URL" */
    size_t npeers;
    uint32_t heartbeat_ms; /* 0: 100 */
    uint32_t fd_bound_ms;  /* silence after which a peer is unreachable (0: 1000) */
    double phi;            /* 0: 8 */
    uint32_t request_ms;   /* deadline of object requests (0: 5000) */
    uint32_t forward_ms;   /* deadline of a forwarded control request (0: 10000) */
    /* Where new objects go: false, the machine that creates them (the
     * specification's rule); true, spread round-robin over this node and the
     * reachable members (used to run programs with their objects spread). */
    bool spread;
    /* Replicated controllers (Raft groups): election timeout and heartbeat
     * (0: 300 and 50 ms), and how many applied entries between snapshots (0:
     * 1024). */
    unsigned raft_election_ms, raft_heartbeat_ms, raft_snapshot_every;
    /* The solver's time limit when a bundle's home settles its members' choices
     * (0: 5000 ms). */
    uint32_t solver_timeout_ms;
    /* Mutual TLS on every link (PEM files: all three, or none; link.h). */
    const char *tls_cert, *tls_key, *tls_ca;
    /* Up-calls to the daemon. */
    void (*kick)(void *arg); /* the manager has work: run rounds */
    /* A control request forwarded from another node: answer it through req. */
    /* hops: how many members forwarded it so far (1 or more). */
    void (*control)(void *arg, avm_ctl_req *req, const char *op, avm_val body,
                    unsigned hops);
    /* Logs: event and NULL-terminated key/value pairs. */
    void (*log)(void *arg, int level, const char *event, const char *k, const char *v);
    void *arg;
} avm_cluster_config;

/* Starts the links (listening at cfg->listen). The manager's configuration then
 * takes avm_cluster_manager_hooks(); call avm_cluster_attach once it is open. */
int avm_cluster_start(uv_loop_t *loop, const avm_cluster_config *cfg, avm_cluster **out,
                      char *errmsg, size_t errlen);
const avm_mgr_cluster *avm_cluster_manager_hooks(avm_cluster *c);
/* Attaches the open manager, and restarts the Raft replicas found in its store.
 * 0, or an error with errmsg (a replica's state could not be read). */
int avm_cluster_attach(avm_cluster *c, avm_mgr *m, char *errmsg, size_t errlen);
/* Control operations on replicated controllers: "ctrl.create" (name, replicas),
 * "ctrl.ls", "ctrl.status" (name), "ctrl.add" / "ctrl.remove" / "ctrl.transfer"
 * (name, node), "ctrl.put" (controller, key, value), "ctrl.get" (controller, key).
 * hops as avm_cluster_forward. */
void avm_cluster_op_ctrl(avm_cluster *c, avm_ctl_req *req, const char *op, avm_val body,
                         unsigned hops);
/* Composed commits: "bundle.create" (name, members, timeout_ms), "bundle.status"
 * (bundle). hops as avm_cluster_forward. */
void avm_cluster_op_bundle(avm_cluster *c, avm_ctl_req *req, const char *op, avm_val body,
                           unsigned hops);
/* The writes of bundle's segments so far, for an execution that starts in it:
 * cb(arg, 0, [[oid, state]...] (borrowed for the call), how many segments) later or
 * at once, or cb(arg, rv, nil, 0, why). 0, or an error with errmsg (cb not called). */
int avm_cluster_bundle_view(avm_cluster *c, const char *bundle,
                            void (*cb)(void *arg, int rv, avm_val view, uint64_t seen,
                                       const char *errmsg),
                            void *arg, char *errmsg, size_t errlen);
/* Whether the node has settled after its start: every controller it replicates
 * knows its leader (or 3 s passed). Until then the daemon holds its executions
 * back, so that one resumed after a restart does not find its controllers
 * unreachable only because no heartbeat has come yet. */
bool avm_cluster_settled(avm_cluster *c);
/* Stops the links and timers (the loop must run until their handles close). */
void avm_cluster_stop(avm_cluster *c);
void avm_cluster_free(avm_cluster *c);

/* Joins through a member's control endpoint (blocking, at startup): sends this
 * node's name, address and controller, and learns the members. */
int avm_cluster_join(avm_cluster *c, const char *control_addr, char *errmsg,
                     size_t errlen);
/* The same, sending token (NULL: none) for a member started with --auth-tokens
 * (cluster.join needs the admin permission there). */
int avm_cluster_join_as(avm_cluster *c, const char *control_addr, const char *token,
                        char *errmsg, size_t errlen);
/* The "cluster.join" control operation on the member side: body {name, url,
 * controller}; the reply lists the members. */
void avm_cluster_op_join(avm_cluster *c, avm_ctl_req *req, avm_val body);
/* "cluster.status": every member, its address and controller, and reachability as
 * each member sees it (asked of every reachable member, at most request_ms). */
void avm_cluster_op_status(avm_cluster *c, avm_ctl_req *req);
/* Sends a control request to machine's node and answers req with its answer.
 * false when machine is not a member (req is not answered). */
/* hops: how many times req was forwarded to reach this node (0: from a client). */
bool avm_cluster_forward(avm_cluster *c, avm_ctl_req *req, unsigned hops,
                         const char *machine, const char *op, avm_val body);

bool avm_cluster_is_member(const avm_cluster *c, const char *machine);
int avm_cluster_port(const avm_cluster *c);

/* --- Inspection (read-only, for the daemon's metrics) --------------------------- */

/* Every member but this node, as the failure detector sees it now. */
typedef struct avm_cluster_peer {
    const char *name;
    bool reachable;
    double phi;        /* suspicion now (capped at 1e6) */
    int64_t silent_ms; /* since it was last heard, -1 never */
} avm_cluster_peer;
void avm_cluster_each_peer(avm_cluster *c,
                           void (*fn)(void *arg, const avm_cluster_peer *p), void *arg);

/* Every replicated controller this node holds a replica of, as its replica knows
 * it (strings borrowed for the call). */
typedef struct avm_cluster_group {
    const char *name;
    const char *role;   /* "leader", "follower", "candidate", "unavailable", "stopped" */
    const char *leader; /* the leader's node, "" unknown */
    bool is_leader;     /* this node leads it */
    uint64_t term, commit, applied, last_index, snapshot_index;
    size_t members;
} avm_cluster_group;
void avm_cluster_each_group(avm_cluster *c,
                            void (*fn)(void *arg, const avm_cluster_group *g), void *arg);

/* Commit latencies of this node's executions through replicated controllers, as
 * histograms with fixed buckets: bucket[i] counts the samples above bound i-1 and
 * at most bound i (µs); samples above the last bound count in `count` only.
 * Unlike `controller latency`'s percentiles they are never reset. */
#define AVM_CLUSTER_LAT_BUCKETS 15
extern const uint64_t avm_cluster_lat_bounds_us[AVM_CLUSTER_LAT_BUCKETS];
typedef struct avm_cluster_hist {
    uint64_t count, sum_us;
    uint64_t bucket[AVM_CLUSTER_LAT_BUCKETS];
} avm_cluster_hist;

typedef struct avm_cluster_stats {
    avm_cluster_hist commit_single; /* through one controller's group */
    avm_cluster_hist commit_cross;  /* across controllers (two-phase) */
    /* Transactions across controllers driven from this node, and what the state
     * machines here did (txn.c). */
    uint64_t tx_started, tx_committed, tx_aborted, tx_unknown;
    uint64_t tx_prepared, tx_finished, tx_recovered;
    size_t tx_intents, tx_inflight;
    /* Composed commits homed here that this node remembers, by state: open,
     * committing, committed, aborted. */
    size_t bundles[4];
} avm_cluster_stats;
void avm_cluster_stats_get(avm_cluster *c, avm_cluster_stats *out);

#endif
