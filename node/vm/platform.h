/* The platform as the interpreter sees it: a store of objects and pure functions,
 * reachability predicates, mailboxes. The interpreter calls down through these
 * function pointers and knows nothing of what implements them (memory, LMDB, a
 * cluster), so the same interpreter runs embedded, in tests and in the daemon.
 *
 * Records returned by a store are borrowed: valid until the next call on the same
 * store. */
#ifndef AVM_PLATFORM_H
#define AVM_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

#include "bytecode.h"
#include "value.h"

/* ObjectMeta minus the id (the record carries it). nil means `nothing`. */
typedef struct avm_meta {
    avm_val machine;  /* AVM_MACHID */
    avm_val creating; /* AVM_CTRLID or nil */
    avm_val current;  /* AVM_CTRLID or nil */
} avm_meta;

/* An object behaviour: a behaviour function of a module, and its name. */
typedef struct avm_behavior {
    avm_val name; /* AVM_STR */
    avm_module *mod;
    uint32_t fn;
} avm_behavior;

typedef struct avm_objrec {
    avm_val oid;
    avm_behavior beh;
    avm_meta meta;
    avm_val state;    /* AVM_LIST */
    uint64_t version; /* changes on every committed write to the object */
} avm_objrec;

/* A pure function: self-contained code (function 0 of `code`), its version and the
 * content hash of the code (= code->hash). by, exec and machine record who made
 * this version (the principal, AVM_STR; the execution id, AVM_STR; the machine,
 * AVM_MACHID), each nil when unknown (the interpreter leaves them nil; the node's
 * execution manager fills them in). */
typedef struct avm_purefn {
    avm_val name; /* AVM_STR */
    avm_module *code;
    uint64_t version;
    avm_val by, exec, machine;
} avm_purefn;

/* A read: the version seen, or AVM_VERSION_EXISTS when only existence matters (the
 * specification's validateObserved, used in strict mode). */
#define AVM_VERSION_EXISTS UINT64_MAX

typedef struct avm_read {
    avm_val oid;
    uint64_t version;
} avm_read;

typedef struct avm_create {
    avm_val oid;
    avm_behavior beh;
    avm_meta meta;
} avm_create;

typedef struct avm_pair {
    avm_val a, b;
} avm_pair;

/* Everything one commit (or one immediate effect outside a transaction) does.
 * Applied all or nothing, in the order: validate reads, creates, transfers,
 * machine moves, states, destroys (decision 12: a destroy removes the state too, and
 * a state write to an object the same commit destroys is dropped). With
 * spec_order the literal specification's order is used instead: states are applied
 * after destroys and destroys leave the state in place. */
typedef struct avm_writeset {
    const avm_read *reads;
    size_t nreads;
    const avm_create *creates;
    size_t ncreates;
    const avm_pair *transfers; /* (oid, controller) */
    size_t ntransfers;
    const avm_pair *moves; /* (oid, machine) */
    size_t nmoves;
    const avm_pair *states; /* (oid, list); later entries win */
    size_t nstates;
    const avm_val *destroys;
    size_t ndestroys;
    bool spec_order;
    /* Set on the write set of an outermost commitTx: the store may answer apply
     * with AVM_EPENDING, keeping the write set (and copying the checkpoint bytes,
     * which live only for the call) until it decides; the execution then waits
     * (avm_exec_waiting) until avm_exec_commit_done hands it the outcome. Every
     * array the write set points to stays valid and unchanged while it waits. */
    bool deferrable;
    /* Optional: an execution checkpoint written in the same atomic step when (and
     * only when) the write set commits, so that a restarted node resumes the
     * execution exactly after this commit. Stores without durability ignore it. */
    const char *ckpt_id;
    const uint8_t *ckpt_state;
    size_t ckpt_len;
    uint8_t ckpt_status;
    /* With the checkpoint: the part of the execution's trace log that no earlier
     * checkpoint carried, starting at byte ckpt_trace_at of the log. The checkpoint
     * itself holds only the log's length (avm_exec_encode_ex). */
    const uint8_t *ckpt_trace;
    size_t ckpt_trace_len;
    uint64_t ckpt_trace_at;
    /* Optional, with the checkpoint: a label for the execution (the name of its
     * program), kept by the store beside the execution's record. */
    const char *ckpt_label;
    /* AVM_STR or nil (a zeroed write set has nil). Set on the write set of an
     * outermost commitTx of an execution that is in a bundle (joinBundle,
     * avm_exec_set_bundle): the store must not commit this write set alone: it is
     * one member's segment of the named composed commit; the outcome comes back
     * through avm_exec_commit_done like any deferred commit. Borrowed, like the
     * arrays. A store without composed commits (memstore) applies it as usual: a
     * bundle of one member simply commits. */
    avm_val bundle;
    /* nil, or (bundle members only) the transaction's unsettled nondeterministic
     * problem (the IR below): the store settles it together with the other
     * members' problems (avm_platform.solve), substitutes the model into every
     * member's write set, and hands each execution the model with
     * avm_exec_commit_settle before avm_exec_commit_done. Borrowed. */
    avm_val problem;
    /* Optional (NULL: none): the commit's name, stable over the executing node's
     * restarts (avm_exec_checkpoint_commit). A store that has the commit decided
     * elsewhere names it so there (the request id of a replicated controller's
     * proposal, the transaction id of a commit across controllers), so that the
     * same commit proposed again after a restart gets the first outcome instead of
     * applying twice. Borrowed, like the arrays. */
    const char *commit_key;
} avm_writeset;

/* The constraint IR of nondeterminism (executeSolver's input), a plain value:
 *   (choices requirements)
 *   choices:      ((var values) ...)  var a symbolic variable (AVM_SYM_VAR), values
 *                                     the non-empty list of ints or of bools it
 *                                     may take
 *   requirements: (b ...)             #t, #f or a bool-typed symbolic value
 * A solution (model) is the list ((name value) ...) giving every choice's name (an
 * AVM_STR) one of its values such that every requirement holds. */
enum {
    AVM_SOLVE_SAT = 0,     /* *model set */
    AVM_SOLVE_UNSAT = 1,   /* no solution */
    AVM_SOLVE_UNKNOWN = 2, /* the solver gave up (its time limit): why says so */
};

typedef struct avm_store avm_store;

struct avm_store_ops {
    /* The committed record of oid, or NULL. Borrowed. With snap NULL, the latest
     * committed state; otherwise the state as of the snapshot. */
    const avm_objrec *(*get)(avm_store *s, void *snap, avm_val oid);
    /* Optional (may be NULL, or return NULL when unsupported): a consistent read
     * view. The interpreter takes one when a transaction begins and releases it
     * when the transaction ends, so that every read of a transaction comes from
     * one snapshot; commit validation still checks the versions read. */
    void *(*snapshot)(avm_store *s);
    void (*snapshot_release)(avm_store *s, void *snap);
    /* Validates the reads against current versions and, if they all hold, applies
     * the write set; *committed tells which. Returns 0 or an AVM_E* code (then
     * nothing was applied). A store may also answer AVM_EPENDING for any write set
     * (the deferrable commit below, or an effect it forwards to another machine):
     * the execution then waits (avm_exec_waiting: AVM_WAIT_COMMIT) for
     * avm_exec_commit_done. Only a deferrable write set stays valid while it
     * waits; a store deferring another one copies what it needs before returning. */
    int (*apply)(avm_store *s, const avm_writeset *ws, bool *committed);
    /* A new list of every object id, in a stable order. */
    int (*ids)(avm_store *s, avm_val *out);
    /* The registry entry for name (AVM_STR), or NULL. Borrowed. */
    const avm_purefn *(*pure_get)(avm_store *s, avm_val name);
    /* Inserts or replaces the entry (the store takes its own references). */
    int (*pure_put)(avm_store *s, const avm_purefn *fn);
    /* A node-unique, never reused sequence number for identifiers. */
    uint64_t (*next_seq)(avm_store *s);
    /* Optional: the message of the last failing call, naming cause and path. */
    const char *(*last_error)(avm_store *s);
    /* Optional: after a call failed with AVM_EUNREACHABLE, the machine that could
     * not be reached (borrowed; nil when unknown). */
    avm_val (*last_machine)(avm_store *s);
};

struct avm_store {
    const struct avm_store_ops *ops;
};

typedef struct avm_platform {
    avm_store *store;
    avm_val node;         /* AVM_MACHID: this machine */
    avm_val default_ctrl; /* AVM_CTRLID: the node's default controller */
    void *data;           /* passed to the callbacks below */
    /* isReachableMachine / isReachableController. */
    bool (*reachable_machine)(void *data, avm_val machine);
    bool (*reachable_controller)(void *data, avm_val ctrl);
    /* Optional: the program aborted (abortTx) an outermost transaction while its
     * execution is in the named bundle (AVM_STR, borrowed): the composed commit
     * cannot include this member's segment. */
    void (*bundle_abort)(void *data, avm_val bundle);
    /* Optional: resolves a behaviour name that the executing module does not
     * define. Returns 0 and fills *out (a borrowed module) or AVM_ENOTFOUND. */
    int (*resolve_behavior)(void *data, avm_val name, avm_behavior *out);
    /* Optional: takes the next message for object self. Returns 1 and owned values
     * when there was one (the message, its sender: a string or an object id, and
     * the sender's Lamport stamp), 0 when the mailbox is empty (the execution
     * blocks until the platform runs it again), or a negated AVM_E* code. Without
     * it, receive blocks. */
    int (*mailbox_pop)(void *data, avm_val self, avm_val *msg, avm_val *sender,
                       uint64_t *stamp);
    /* Optional, for a cluster: called before an instruction reads object oid (its
     * argument, or self for getState/setState). Returns 0 when the store can answer
     * for oid now (it holds the record, a fresh copy of it, or knows there is
     * none), 1 when the record lives on another machine and is being fetched (the
     * execution blocks with AVM_WAIT_FETCH and the instruction runs again when the
     * platform runs the execution again), or a negated AVM_E* code
     * (-AVM_EUNREACHABLE: the machine holding it cannot be reached; the store's
     * last_machine names it). */
    int (*prepare)(void *data, avm_val oid);
    /* Executions run on their own machine only: when a call, a return or a
     * teleport leaves the execution on a machine other than `node`, avm_exec_run
     * stops with AVM_RUN_MOVED so that the platform ships it there. Without it the
     * machine is only a value (the embedded node). */
    bool roam;
    /* Optional: the machine a new object is placed on (an owned AVM_MACHID), or
     * nil for the machine the creating execution runs on (the specification's
     * rule). A cluster may spread objects over its members. */
    avm_val (*place)(void *data);
    /* Optional, for a cluster: freeze oid (reconcile its replicas through its
     * controller). 0 when done, 1 while it waits (the execution blocks with
     * AVM_WAIT_FETCH and the instruction runs again), or a negated AVM_E* code. */
    int (*freeze)(void *data, avm_val oid);
    /* Optional: modules already decoded and verified, by their encoding, so that
     * executions arriving again and again (a cluster) do not decode the same code
     * each time. lookup returns a borrowed module or NULL; keep offers one (the
     * cache takes its own reference, or none). */
    avm_module *(*module_lookup)(void *data, const uint8_t *p, size_t n);
    void (*module_keep)(void *data, const uint8_t *p, size_t n, avm_module *m);
    /* Optional: executeSolver. Settles problem (the IR above, borrowed): returns
     * AVM_SOLVE_SAT with an owned *model, AVM_SOLVE_UNSAT, AVM_SOLVE_UNKNOWN with
     * the reason appended to why, or a negated AVM_E* code (why says what failed).
     * Without it, a commit with unsettled choices fails with NondetError.ErrNoSolver.
     * The interpreter checks the model itself (every requirement evaluated with the
     * language's 64-bit arithmetic) before it commits. */
    int (*solve)(void *data, avm_val problem, avm_val *model, avm_buf *why);
    /* The store settles the problems of bundle members' write sets
     * (avm_writeset.problem) itself; without it a bundle member settles its own. */
    bool settles_bundles;
} avm_platform;

#endif
