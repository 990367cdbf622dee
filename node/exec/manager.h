/* The execution manager (Layer 2): many executions of AVM programs on one node.
 *
 * Executions have the lifecycle of the runtime guidance: running (runnable, or
 * parked while they wait for a message or for their commit's outcome), suspended,
 * terminated (done, failed or killed). The manager interleaves them in slices of a
 * configured instruction budget, round robin in the order they started, so an
 * endless loop in one execution does not starve the others; a slice ends between
 * instructions, so no execution sees another's half-done instruction.
 *
 * Commits are group commits: all the commits of a round (each write set with its
 * execution's checkpoint and the mailbox messages it consumed) are made durable by
 * one LMDB transaction. Validation is optimistic: every version a transaction read
 * is compared with the latest committed one, so of two executions that read the
 * same version of an object and both write it, the first to commit wins and the
 * second's commitTx returns false. By default (PIPELINED, below) a commit is
 * validated and applied when commitTx runs and the execution goes on at once; with
 * DURABLE the execution parks at its commitTx until the round's transaction is on
 * disk.
 *
 * Inputs (start, suspend, resume, kill, messages to objects) are events: they are
 * numbered as they arrive and applied at the start of the next round, in that order,
 * so the same inputs in the same order, at the same rounds, give the same traces.
 * Every object has a durable mailbox: a message is acknowledged once it is on disk,
 * delivered FIFO per sender to `receive`, and deleted only together with the
 * checkpoint of the execution that consumed it, so a crash redelivers it exactly to
 * the state that had not seen it.
 *
 * Single-threaded: every call on one manager comes from one thread (the daemon's
 * loop). No I/O but the store's. */
#ifndef AVM_MANAGER_H
#define AVM_MANAGER_H

#include <stdbool.h>
#include <stdint.h>

#include "embedded.h"
#include "module.h"
#include "vm.h"

typedef struct avm_mgr avm_mgr;

typedef enum {
    AVM_XS_RUNNING = 0,
    AVM_XS_SUSPENDED = 1,
    AVM_XS_TERMINATED = 2,
} avm_xstate;

typedef enum {
    AVM_XO_NONE = 0,
    AVM_XO_DONE = 1,
    AVM_XO_FAILED = 2,
    AVM_XO_KILLED = 3,
} avm_xoutcome;

const char *avm_xstate_name(avm_xstate s);
const char *avm_xoutcome_name(avm_xoutcome o);

/* Status bytes of execution records beyond avm_run_status (storage keeps one byte). */
#define AVM_XREC_SUSPENDED 16
#define AVM_XREC_KILLED 17

/* Runtime events, reported up to the daemon (logs, answering waiting clients). */
typedef enum {
    AVM_MEV_STARTED,
    AVM_MEV_SUSPENDED,
    AVM_MEV_RESUMED,
    AVM_MEV_TERMINATED,
    AVM_MEV_MESSAGE, /* a message entered a mailbox */
    AVM_MEV_STORE_ERROR,
} avm_mev_type;

typedef struct avm_mev {
    uint64_t seq; /* the node's event number */
    avm_mev_type type;
    const char *exec; /* execution id, or NULL */
    avm_val oid;      /* MESSAGE: the receiver */
    const char *detail;
} avm_mev;

const char *avm_mev_name(avm_mev_type t);

/* How commits become durable (see "Commits" above).
 *   PIPELINED: a commit is validated and applied at once into the round's staged
 *     LMDB transaction, and commitTx returns its outcome without waiting; the
 *     round's transaction is committed (one fsync) at the end of the round, or
 *     when it holds stage_max bytes. Nothing leaves the node before that: results,
 *     terminations and replies wait for the round's commit, and after a crash
 *     every execution resumes from its last durable checkpoint, which no lost
 *     commit is behind. Transactions read the latest state (staged commits
 *     included) rather than a read view; validation at commit keeps them
 *     serializable, but one that spans slices may read a state no serial order
 *     produces before its commit returns false.
 *   DURABLE: commitTx waits (the execution parks) until its group commit is on
 *     disk; transactions read from an LMDB read view taken when they begin. */
typedef enum { AVM_COMMIT_PIPELINED = 0, AVM_COMMIT_DURABLE = 1 } avm_commit_mode;

/* Causality. An execution remembers the versions its own writes made (`seen`,
 * the last AVM_MGR_SEEN objects it wrote): they travel with it, and a machine it
 * arrives on fetches again every copy older than what it has seen, so that an
 * execution always reads its own writes and placements, wherever it goes. A
 * forwarded write set's answer brings the versions it made. */
#define AVM_MGR_SEEN 64

/* Distribution: how the manager reaches other machines (the cluster layer above
 * implements it; every callback runs on the manager's thread). With it executions
 * roam (platform.roam): an execution runs on the machine its current frame is on,
 * so a call on an object of another machine, the return to a caller on another
 * machine, and teleport ship the execution's whole state (frames, transaction
 * overlay, trace) there, where it goes on. The machine that started an execution
 * owns it (its id names that machine): it keeps the execution's record, and its
 * result and trace come back to it. An execution away from its owner lives in the
 * memory of the machine it visits (a visitor, not checkpointed there); if that
 * machine is lost, the owner ends it with ErrMachineUnreachable.
 *
 * Objects live on the machine of their controller (the controller's host) or,
 * without a controller, on the machine that created them. An instruction that
 * touches an object this machine does not hold waits while `fetch` brings a
 * copy, which stays valid until the cluster refreshes it (the holder pushes
 * changes to those it served, `avm_mgr_fetched`) or drops it (`avm_mgr_forget`),
 * or a write set this machine forwarded makes it stale; "no such object" holds for
 * one round. Effects and commits on such objects are forwarded to their machine
 * (`forward`), the instruction waiting for the outcome. */
typedef struct avm_mgr_cluster {
    /* Execution id leaves for machine `to` with its state (avm_exec_encode): a
     * call, a return, a teleport, or a visitor that ended and goes home. Called
     * after the round's commit is durable, so nothing the state derives from can
     * be lost. Deliver it with avm_mgr_arrive on `to`, or report
     * avm_mgr_ship_failed. */
    void (*ship)(void *arg, const char *id, uint64_t visit, avm_val to,
                 const uint8_t *state, size_t len, const avm_read *seen, size_t nseen);
    /* Start fetching the record of oid for avm_mgr_fetched: 0 (fetching), or
     * AVM_ENOTFOUND when no machine can hold it (the instruction goes on and finds
     * no object), or another code with errmsg (the instruction fails with it).
     * It never answers from inside the call. freeze: the holder also refreshes
     * every replica (the instruction freeze). fetch and forward return
     * AVM_EUNREACHABLE with *unreachable (owned) naming the machine that holds the
     * objects when it cannot be reached. */
    int (*fetch)(void *arg, avm_val oid, bool freeze, avm_val *unreachable, char *errmsg,
                 size_t errlen);
    /* Forward ws (which touches objects of another machine: encode it now, it
     * lives for the call only) and answer with avm_mgr_applied(id, seq, ...).
     * 0, or an error code that the instruction fails with. */
    int (*forward)(void *arg, const char *id, uint64_t seq, const avm_writeset *ws,
                   avm_val *unreachable, char *errmsg, size_t errlen);
    /* Whether objects of controller c live on this machine. */
    bool (*local_ctrl)(void *arg, avm_val c);
    /* isReachableMachine / isReachableController. */
    bool (*reachable_machine)(void *arg, avm_val machine);
    bool (*reachable_controller)(void *arg, avm_val c);
    /* Optional: where new objects go (platform.place). */
    avm_val (*place)(void *arg);
    /* The record of oid, which lives here, changed (or is gone) and is durable:
     * the machine it is placed on keeps a replica, which the cluster refreshes. */
    void (*changed)(void *arg, avm_val oid);
    /* Optional: whether other machines hold copies of oid (then every change to
     * it goes to `changed`). */
    bool (*watched)(void *arg, avm_val oid);
    /* Optional: whether controller c is replicated (a Raft group): every write set
     * touching its objects is forwarded (`forward`), even when this machine holds
     * a replica of them, since only the group's log orders their commits. */
    bool (*replicated)(void *arg, avm_val c);
    /* Optional: execution id, a member of bundle (a composed commit), aborted its
     * outermost transaction: the bundle aborts. */
    void (*bundle_abort)(void *arg, const char *bundle, const char *id);
    void *arg;
} avm_mgr_cluster;

typedef struct avm_mgr_config {
    avm_embedded *node;  /* a durable embedded node (node->db set); borrowed */
    uint64_t slice;      /* instructions per slice (0: 20,000) */
    size_t batch_max;    /* write sets per group commit (0: 4096) */
    bool resume_on_open; /* resume interrupted executions found in the store */
    avm_commit_mode commit_mode;
    size_t stage_max; /* PIPELINED: bytes staged before committing (0: 8 MiB) */
    void (*on_event)(void *arg, const avm_mev *ev);
    void *arg;
    const avm_mgr_cluster *cluster; /* NULL: one machine */
} avm_mgr_config;

/* Opens a manager on cfg->node's store: loads the mailboxes and the execution
 * records, and (resume_on_open) makes interrupted and blocked executions run again
 * from their checkpoints; suspended ones stay suspended, terminated ones keep their
 * outcome. Executions whose records cannot be restored are reported (errmsg of the
 * first, and on_event STORE_ERROR) and left terminated-failed. */
int avm_mgr_open(const avm_mgr_config *cfg, avm_mgr **out, char *errmsg, size_t errlen);
/* The store the manager commits to (the node's). */
struct avm_lmdb *avm_mgr_db(avm_mgr *m);
/* Frees everything without writing (call avm_mgr_park_all first for a clean stop). */
void avm_mgr_close(avm_mgr *m);

/* --- Inputs (events) ---------------------------------------------------- */

/* Starts module m's entry program (fn -1) or function fn as a new execution named
 * name. The execution id ("MACHINE/xN") is written to id. It starts running at the
 * next round. Refusals (unsafe without grant, no entry) return their code with
 * errmsg. The manager keeps its own reference to m. */
int avm_mgr_start(avm_mgr *m, avm_module *mod, int fn, const avm_exec_config *cfg,
                  const char *name, char *id, size_t idlen, char *errmsg, size_t errlen);
/* The same, recording principal (who asked for it; NULL or "": nobody) in the
 * execution (avm_exec_set_principal): it travels and is checkpointed with it, and
 * the pure functions it registers are recorded as registered by it. */
int avm_mgr_start_by(avm_mgr *m, avm_module *mod, int fn, const avm_exec_config *cfg,
                     const char *name, const char *principal, char *id, size_t idlen,
                     char *errmsg, size_t errlen);
/* Suspends, resumes, kills: AVM_ENOTFOUND for an unknown id, AVM_ESTATE (errmsg
 * says why) when the execution is not in a state that allows it. They take effect
 * at the next round (a commit in flight finishes first). */
int avm_mgr_suspend(avm_mgr *m, const char *id, char *errmsg, size_t errlen);
int avm_mgr_resume(avm_mgr *m, const char *id, char *errmsg, size_t errlen);
int avm_mgr_kill(avm_mgr *m, const char *id, char *errmsg, size_t errlen);
/* Posts value to object oid's mailbox from sender (a string or object id); durable
 * when it returns 0. *seq is the message's number in the mailbox, *stamp its
 * Lamport time. AVM_ENOTFOUND when the object does not exist. */
int avm_mgr_send(avm_mgr *m, avm_val oid, avm_val sender, avm_val value, uint64_t *seq,
                 uint64_t *stamp, char *errmsg, size_t errlen);

/* --- Running ------------------------------------------------------------ */

/* One round: applies the queued inputs, runs one slice of every runnable
 * execution, and group-commits what they handed over. Returns whether there is
 * runnable work left (call again) or not (wait for an input). */
bool avm_mgr_round(avm_mgr *m);
/* Whether a round would do anything. */
bool avm_mgr_busy(const avm_mgr *m);
/* Whether an execution that arrived waits for this machine's replicas to catch up
 * with what it read: the caller then calls avm_mgr_catchup_tick every 50 ms or so
 * (after 20 ticks a waiting execution goes on anyway) and runs a round when
 * avm_mgr_busy says so. */
bool avm_mgr_catching_up(const avm_mgr *m);
void avm_mgr_catchup_tick(avm_mgr *m);
/* Non-NULL once a staged round could not be committed (disk full, I/O error): the
 * executions in memory are ahead of the store, so the manager stops (every later
 * round does nothing) and the process must restart to recover from the store.
 * The text names the cause. */
const char *avm_mgr_failure(const avm_mgr *m);

/* Clean stop: finishes commits in flight, then checkpoints every execution that has
 * not terminated (running ones as interrupted, so that a restart resumes them).
 * A commit decided elsewhere (forwarded) that is still in flight, or waits to go
 * out, keeps its write-ahead checkpoint as the execution's last record: the restart
 * proposes it again under the same name. 0 or the store's error. */
int avm_mgr_park_all(avm_mgr *m);

/* --- Distribution (with avm_mgr_config.cluster) ------------------------- */

/* An execution arrives with its state from another machine: its owner's own
 * execution coming back (accepted only for its current visit), or a visitor.
 * AVM_ESTATE for a stale visit, AVM_EMALFORMED (errmsg) for a state that does not
 * decode. */
int avm_mgr_arrive(avm_mgr *m, const char *id, uint64_t visit, const uint8_t *state,
                   size_t len, const avm_read *seen, size_t nseen, char *errmsg,
                   size_t errlen);
/* The state shipped for (id, visit) could not be delivered to machine: the owner
 * ends the execution with ErrMachineUnreachable; a visitor is dropped (its owner
 * notices the machine it was on is gone, or its visit is stale). */
void avm_mgr_ship_failed(avm_mgr *m, const char *id, uint64_t visit, avm_val machine);
/* Machine is unreachable: every execution this machine owns that is away there
 * ends with ErrMachineUnreachable. */
void avm_mgr_machine_lost(avm_mgr *m, avm_val machine);
/* The answer to cluster.fetch: the record (borrowed), or NULL when there is no
 * such object, or rv != 0 when it could not be fetched (the waiting
 * instructions fail with rv and errmsg; machine names the unreachable machine
 * for AVM_EUNREACHABLE). */
void avm_mgr_fetched(avm_mgr *m, avm_val oid, const avm_objrec *rec, int rv,
                     avm_val machine, const char *errmsg);
/* Before avm_mgr_applied of a bundle member's commit: the model that settled the
 * bundle's choices (borrowed), substituted into the execution's values
 * (avm_exec_commit_settle). Ignored unless execution id waits on commit seq. */
void avm_mgr_settle(avm_mgr *m, const char *id, uint64_t seq, avm_val model);
/* The outcome of a forwarded write set. */
void avm_mgr_applied(avm_mgr *m, const char *id, uint64_t seq, int rv, bool committed,
                     const avm_read *versions, size_t nversions, avm_val machine,
                     const char *errmsg);
/* A write set forwarded here by another machine: validated and applied with this
 * machine's commits; done(arg, rv, committed, errmsg) runs once it is durable
 * (pipelined: after the round's commit, so call avm_mgr_round). */
int avm_mgr_apply_remote(avm_mgr *m, const avm_writeset *ws,
                         void (*done)(void *arg, int rv, bool committed,
                                      const avm_read *versions, size_t nversions,
                                      const char *errmsg),
                         void *arg);
/* A replicated controller's state machine applies a committed write set: validated
 * against the latest state (versions read) and staged into the round's LMDB
 * transaction at once, with whatever the caller stages beside it (the group's
 * applied index), so that both become durable together. *committed says whether it
 * applied. 0, or an error that broke the round (the node then stops: fail-stop). */
int avm_mgr_stage_ws(avm_mgr *m, const avm_writeset *ws, bool *committed);
/* Puts execution id (started, not run yet) in bundle (a composed commit; its write
 * sets then carry the bundle's name to `forward`), with view ([[oid, state]...],
 * or nil): the states the bundle's first `seen` segments write, which it reads as
 * its own. 0, AVM_ENOTFOUND, AVM_EMALFORMED (view), or avm_exec_set_bundle's
 * error, with errmsg. bundle_seen: that `seen` (0 for others). */
int avm_mgr_set_bundle(avm_mgr *m, const char *id, const char *bundle, avm_val view,
                       uint64_t seen, char *errmsg, size_t errlen);
uint64_t avm_mgr_bundle_seen(avm_mgr *m, const char *id);
/* The view (borrowed, nil when none) and its segment count, which travel with the
 * execution when it roams; set_bundle_view gives them to the execution that
 * arrived (a malformed view is ignored). */
avm_val avm_mgr_bundle_view(avm_mgr *m, const char *id, uint64_t *seen);
void avm_mgr_set_bundle_view(avm_mgr *m, const char *id, avm_val view, uint64_t seen);
/* Cross-controller commits, staged like avm_mgr_stage_ws: the controller taking an
 * object over stores its whole record (avm_lmdb_stage_put); the one giving it away
 * deletes its record while it still names that controller (avm_lmdb_stage_release).
 * Subscribers of the object hear of the change. 0, or an error that broke the round
 * (fail-stop). */
int avm_mgr_stage_put(avm_mgr *m, const avm_objrec *rec);
/* oid, given away by a group replicated here, goes to another group replicated
 * here whose record of it has not come yet: executions that need it wait for
 * avm_mgr_stage_put instead of finding no object. */
void avm_mgr_in_transit(avm_mgr *m, avm_val oid);
int avm_mgr_stage_release(avm_mgr *m, avm_val oid, avm_val ctrl);
/* The versions the objects a write set created or changed have now (after it
 * applied), with owned oids: what the answer to a forwarded commit carries. NULL
 * (n 0) when out of memory. The caller releases the oids and frees the array. */
avm_read *avm_mgr_versions(avm_mgr *m, const avm_writeset *ws, size_t *n);
/* Runs fn(arg) once everything this machine has applied so far is durable: at
 * once when nothing is staged, else after the round's commit (so call
 * avm_mgr_round). What leaves the machine (records served to others) waits for
 * it, so no one sees a state a crash could take back. 0 or AVM_ENOMEM. */
int avm_mgr_when_durable(avm_mgr *m, void (*fn)(void *arg), void *arg);
/* The record of oid this machine holds (borrowed until the next call on m), or
 * NULL. */
const avm_objrec *avm_mgr_record(avm_mgr *m, avm_val oid);
/* Whether oid runs here: this machine holds its record and it is placed here, or
 * holds a replica of it placed here. Its mailbox is then here. */
bool avm_mgr_placed_here(avm_mgr *m, avm_val oid);
/* The record of oid as this machine knows it: its own, or a copy fetched from
 * another machine (borrowed as avm_mgr_record's), or NULL. */
const avm_objrec *avm_mgr_known(avm_mgr *m, avm_val oid);
/* Drops the copy of oid fetched from another machine (replica included). */
void avm_mgr_forget(avm_mgr *m, avm_val oid);

/* --- Inspection --------------------------------------------------------- */

typedef struct avm_mgr_info {
    const char *id, *name;
    const char *by; /* the principal that started it, or NULL */
    avm_xstate state;
    avm_xoutcome outcome;
    avm_wait waiting;   /* running but parked: what for */
    avm_val blocked_on; /* AVM_WAIT_MESSAGE: the object (borrowed) */
    avm_val result;     /* DONE: the result (borrowed) */
    const char *error;  /* FAILED / KILLED: text, or NULL */
    uint64_t steps, events, lamport;
    bool in_tx;
    avm_exec_txinfo tx; /* when in_tx (borrowed) */
    avm_val away;       /* the machine it is on when away from its owner, or nil */
    bool visitor;       /* owned by another machine, visiting this one */
} avm_mgr_info;

/* AVM_ENOTFOUND for an unknown id; restores a terminated execution's record from
 * the store when it was not in memory (errmsg when that fails). Borrowed fields stay
 * valid until the next call on m. */
int avm_mgr_info_get(avm_mgr *m, const char *id, avm_mgr_info *out, char *errmsg,
                     size_t errlen);
/* Calls fn for every execution in start order (terminated ones not in memory have
 * only id, name, state and outcome). */
void avm_mgr_each(avm_mgr *m, void (*fn)(void *arg, const avm_mgr_info *info), void *arg);
/* The execution's trace log (events and sequence-chart records). */
/* The unsettled nondeterministic problem of execution id's open transaction (the
 * constraint IR of platform.h; both lists empty when none is open). */
int avm_mgr_problem(avm_mgr *m, const char *id, avm_val *out, char *errmsg,
                    size_t errlen);
int avm_mgr_trace(avm_mgr *m, const char *id, avm_buf *out, char *errmsg, size_t errlen);
/* For observers that follow trace logs as they grow (avmd's /events), without a
 * copy: fn gets every execution whose state is in memory with its log as it is
 * there, borrowed for the call: the bytes from offset `base` of the whole log (0
 * but for a visitor, which carries only what it added) to `end`, the whole log's
 * length. Executions not in memory (terminated and saved, suspended) are skipped.
 * The log only grows, except that an effect forwarded to another machine takes
 * back the entries it logged until its outcome comes (they are logged again). */
void avm_mgr_each_log(avm_mgr *m,
                      void (*fn)(void *arg, const char *id, const uint8_t *log,
                                 size_t base, size_t end),
                      void *arg);
/* The same for execution id: 0, AVM_ENOTFOUND, or AVM_ESTATE when its state is
 * not in memory (avm_mgr_trace then reads the saved log). */
int avm_mgr_log(avm_mgr *m, const char *id, const uint8_t **log, size_t *base,
                size_t *end);

typedef struct avm_mgr_counts {
    size_t running, suspended, terminated;
    size_t runnable, waiting_message, waiting_commit;
    uint64_t rounds, slices, batches, commits, conflicts, messages;
    uint64_t ckpt_bytes; /* checkpoint states written with commits */
    uint64_t lamport;
} avm_mgr_counts;
void avm_mgr_counts_get(const avm_mgr *m, avm_mgr_counts *out);
/* The same but in constant time: the counters (rounds .. ckpt_bytes), runnable and
 * lamport, with the executions by state left 0; for callers that sample every
 * round. */
void avm_mgr_totals_get(const avm_mgr *m, avm_mgr_counts *out);

/* The transaction registry: every open transaction (fn gets the execution id and
 * its transaction; `stale` tells whether a version it read has since been
 * overwritten, so that its commit will return false). */
void avm_mgr_each_tx(avm_mgr *m,
                     void (*fn)(void *arg, const char *id, const avm_exec_txinfo *tx,
                                bool stale),
                     void *arg);

#endif
