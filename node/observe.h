/* avmd's observability endpoints, served over HTTP (transport/http.h) on the
 * daemon's loop:
 *
 *   GET /metrics   Prometheus text exposition (format 0.0.4) of the node: commits,
 *                  conflicts, commit latencies, executions by status, Raft groups,
 *                  peers' reachability, cross-controller transactions, bundles;
 *   GET /healthz   200 "ok" while the node serves, else 503 and the reason;
 *   GET /readyz    as /healthz, and the node has settled after its start;
 *   GET /events    the trace entries of executions as Server-Sent Events.
 *
 * The daemon owns this module and calls down into the manager and the cluster for
 * what it reports (read-only accessors); nothing below calls it. It costs nothing
 * while nobody listens to /events: traces are followed only while a stream is open.
 * docs/operations.md lists every metric. */
#ifndef AVMD_OBSERVE_H
#define AVMD_OBSERVE_H

#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "cluster.h"
#include "manager.h"

typedef struct avmd_obs avmd_obs;

typedef struct avmd_obs_config {
    uv_loop_t *loop;
    const char *addr; /* HOST:PORT to listen on (port 0: any) */
    avm_mgr *m;
    avm_cluster *cl;        /* NULL: the node runs on its own */
    struct avm_lmdb *db;    /* the node's store (objects count) */
    const char *name;       /* this node's machine name */
    const char *version;    /* avmd's version */
    uint64_t start_unix_ms; /* when the process started (wall clock) */
    /* Logs (event, one key and value), as avm_cluster_config.log. */
    void (*log)(void *arg, int level, const char *event, const char *k, const char *v);
    void *arg;
} avmd_obs_config;

/* Listens at cfg->addr. 0, or an error code with errmsg (bad address, bind). */
int avmd_obs_start(const avmd_obs_config *cfg, avmd_obs **out, char *errmsg,
                   size_t errlen);
/* The port it listens on. */
int avmd_obs_port(const avmd_obs *o);
/* After every round of the manager: how long it took (µs), which times the
 * commits it made durable, and (while someone listens) what the executions added
 * to their traces. */
void avmd_obs_round(avmd_obs *o, uint64_t round_us);
/* The manager reported an event for execution id (its TERMINATED event comes just
 * before its state leaves memory: its last entries are taken now). */
void avmd_obs_exec_event(avmd_obs *o, const char *id, bool terminated);
/* Stops serving (streams end, connections close) and frees o. */
void avmd_obs_stop(avmd_obs *o);

#endif
