/* Internals of the interpreter shared by vm.c (the dispatch loop), vm_ops.c (the
 * AVM instructions) and exec_codec.c (serialization). Not a public header. */
#ifndef AVM_VM_INTERNAL_H
#define AVM_VM_INTERNAL_H

#include "codec.h"
#include "vm.h"

/* Frame kinds. A boundary frame starts an activation with its own AVM context
 * (self, input, sender, machine) and has an entry in the context stack. */
enum {
    FR_PLAIN = 0,    /* a defun or pure function called with OP_CALL */
    FR_MAIN = 1,     /* the entry program */
    FR_BEHAVIOR = 2, /* an object's behaviour, entered by `call` */
    FR_PURE = 3,     /* a registered pure function, entered by `callPure` */
};

typedef struct vm_frame {
    avm_module *mod; /* one reference held by the frame */
    uint32_t fn, pc, base;
    uint8_t kind;
} vm_frame;

/* What a boundary frame saved of its caller, and why it was entered. */
typedef struct vm_ctx {
    avm_val self, input, sender, machine; /* the caller's, restored on return */
    avm_val oid, inp;                     /* FR_BEHAVIOR: the call */
    bool in_tx;                           /* FR_BEHAVIOR: caller was in a tx */
    uint32_t txdepth;                     /* transaction depth at entry */
} vm_ctx;

/* A savepoint: one open (possibly nested) transaction. */
typedef struct vm_savept {
    avm_val txid;
    avm_val ctrl_before; /* txController when this level began */
    avm_val set_before;  /* the controller set (x->txset) when this level began */
    uint32_t nctx;       /* context depth of the frame that began it */
    size_t nreads, ncreates, ntransfers, nstates, ndestroys, nwrites;
} vm_savept;

#define VEC(T)                                                                           \
    struct {                                                                             \
        T *v;                                                                            \
        size_t n, cap;                                                                   \
    }

typedef struct vm_finished {
    avm_val txid;
    bool committed;
} vm_finished;

#define VM_FINISHED_RING 16

struct avm_exec {
    const avm_platform *plat;
    avm_exec_config cfg;

    /* Values: locals and operand stacks of all frames. */
    avm_val *stack;
    size_t sp, stack_cap;
    VEC(vm_frame) frames;
    VEC(vm_ctx) ctxs;

    /* The current activation (the specification's execution frame). */
    avm_val self, input, sender, machine;

    /* The transaction: savepoints (depth = number of open levels), the
     * controller, and the overlay. */
    VEC(vm_savept) tx;
    avm_val txctrl;
    /* A multi-controller transaction (default mode, `(beginTx (list c1 c2 ...))`):
     * the LIST of its distinct controller ids, txctrl being the first; nil for an
     * ordinary transaction (and outside transactions). Objects of any controller of
     * the set may be touched. */
    avm_val txset;
    VEC(avm_read) reads; /* the specification's `observed` */
    VEC(avm_create) creates;
    VEC(avm_pair) transfers;
    VEC(avm_pair) states;
    VEC(avm_val) destroys;
    VEC(avm_pair) writes; /* the specification's txLog */
    void *snap;           /* the store's read view while a transaction is open */
    bool tx_detached;     /* the transaction may write states of record-less ids */

    /* States of activations that have no object record (the top-level
     * orchestrator): the specification's StateStore is total. */
    VEC(avm_pair) detached;

    vm_finished finished[VM_FINISHED_RING];
    uint32_t nfinished;

    uint64_t counter; /* eventCounter */
    uint64_t steps;
    /* The trace: events encoded one after the other (msgpack arrays [ts, type,
     * has_output, ecode, ctrl, a0, a1, a2]). Keeping bytes rather than events
     * that hold references keeps the trace small, lets the values it mentions die
     * when the program drops them, and makes it ready to persist as it is. */
    avm_buf tlog;
    uint64_t tcount;
    /* Decoded view for avm_exec_trace(), filled on demand from tlog. */
    VEC(avm_event) tview;
    size_t tview_off;  /* bytes of tlog already decoded into tview */
    size_t tlog_saved; /* bytes of tlog a store already holds (checkpoint chunks) */
    /* A log decoded without its first bytes (avm_exec_decode_part, an execution
     * visiting another machine): tlog holds the log from byte tlog_base on, and
     * tcount/mcount count its records only; the part before has tbase_count
     * records, tbase_mcount of them sequence-chart records. */
    size_t tlog_base;
    uint64_t tbase_count, tbase_mcount;

    avm_run_status status;
    avm_val result;
    avm_error error;
    avm_val blocked_on;
    bool started;
    avm_val ckpt_id; /* AVM_STR or nil: checkpoint with each commit */
    /* AVM_STR or nil: the bundle (composed commit) this execution's outermost
     * commits belong to (joinBundle, avm_exec_set_bundle). */
    avm_val bundle;
    /* AVM_STR or nil: who started the execution (the control endpoint's
     * authenticated principal), avm_exec_set_principal. */
    avm_val principal;
    bool resume_commit; /* the commitTx at the current pc is already durable */

    /* A commit the store deferred (AVM_EPENDING): CW_PENDING until
     * avm_exec_commit_done, then CW_DONE with the outcome until commitTx runs
     * again and consumes it. */
    uint8_t commit_wait;
    bool commit_ok, commit_ckpt;
    int commit_rv;
    size_t commit_logged; /* the log's length when the write set was handed over */

    /* platform.roam: the last call, return or teleport left the execution on
     * another machine; the run stops after the instruction (AVM_RUN_MOVED). */
    bool moved;
    bool fetch_wait; /* blocked until platform.prepare has blocked_on's record */
    /* An effect the store deferred blocks its instruction, which runs again once
     * the outcome is in: what it logged is taken back (the log's length, event
     * counts and clocks when the instruction began). */
    bool undo_log;
    size_t mark_log;
    uint64_t mark_tcount, mark_mcount, mark_counter, mark_lamport;

    uint64_t lamport; /* the sequence chart's clock */
    uint64_t mcount;  /* sequence-chart records in tlog (tcount counts them too) */

    /* The constraint layers (default mode; NULL until first used): the finite-domain
     * store (vm_fd.c) and the nondeterministic choices and requirements (vm_nd.c).
     * Both follow the transaction levels through the vm__fd_tx_* / vm__nd_tx_*
     * hooks below. */
    struct vm_fd *fd;
    struct vm_nd *nd;
    /* A bundle member's unsettled problem, handed over with its outermost commit's
     * write set (avm_writeset.problem) and kept until the transaction ends. */
    avm_val problem;
};

enum { CW_NONE = 0, CW_PENDING = 1, CW_DONE = 2 };

/* A commit's checkpoint carries the unsaved part of the trace log inline up to
 * this many bytes, and as a separate chunk beyond. */
#define VM_TRACE_INLINE_MAX 1024

/* Appends a sequence-chart record (cfg.msc) with the next Lamport time; values
 * borrowed. */
void vm__msc(avm_exec *x, int type, avm_val machine, avm_val a0, avm_val a1, avm_val a2);

/* Appends one event to the trace log (values borrowed). 0 or AVM_ENOMEM. */
int vm__log(avm_exec *x, uint64_t ts, int type, bool has_output, int ecode, avm_val ctrl,
            avm_val a0, avm_val a1, avm_val a2);
/* Decodes one event of a trace log at *p (advanced past it); owned values. */
int vm__log_decode(avm_mp_reader *r, avm_event *e);

/* Grows a vector to hold one more element; 0 or AVM_ENOMEM. */
int vm__vec_grow(void **v, size_t *cap, size_t elem, size_t need);
/* A pointer to a new last element (uninitialized), or NULL when out of memory.
 * Filling it in place avoids building the element on the C stack and copying it,
 * which stalls store forwarding (the copy reads 16 bytes back from narrower
 * stores). */
#define VEC_SLOT(vec)                                                                    \
    ((vec).n < (vec).cap || vm__vec_grow((void **)&(vec).v, &(vec).cap,                  \
                                         sizeof(*(vec).v), (vec).n + 1) == 0             \
         ? &(vec).v[(vec).n++]                                                           \
         : NULL)
#define VEC_PUSH(x, vec, val)                                                            \
    ((vec).n < (vec).cap || vm__vec_grow((void **)&(vec).v, &(vec).cap,                  \
                                         sizeof(*(vec).v), (vec).n + 1) == 0             \
         ? ((vec).v[(vec).n++] = (val), 0)                                               \
         : AVM_ENOMEM)

/* Executes AVM instruction `op` whose argc arguments are args[0..argc) (borrowed).
 * Returns:
 *   VM_OK with an owned result in *out,
 *   VM_FAIL with x->error set,
 *   VM_BLOCK (nothing consumed; run the instruction again later),
 *   VM_ENTERED when it pushed a frame (call, callPure): the result comes when
 *   that frame returns. */
enum { VM_OK = 0, VM_FAIL = 1, VM_BLOCK = 2, VM_ENTERED = 3 };
int vm__instr(avm_exec *x, int op, avm_val *args, int argc, avm_val *out);

/* Pushes a frame for function fn of mod with argc arguments already on the stack.
 * VM_OK or VM_FAIL (depth or stack limit, memory). */
int vm__push_frame(avm_exec *x, avm_module *mod, uint32_t fn, uint32_t argc,
                   uint8_t kind);

/* Makes room for `need` values on the stack: 0, AVM_ETOOBIG or AVM_ENOMEM. */
int vm__ensure_stack(avm_exec *x, size_t need);

/* Called when a boundary frame of this kind has returned value v (owned; a list
 * for a behaviour) and been popped. Pushes the caller's result
 * or ends the execution. VM_OK or VM_FAIL. */
int vm__boundary_return(avm_exec *x, uint8_t kind, avm_val v);

/* Appends a log entry: type, arguments (owned), controller = x->txctrl now, and
 * increments the event counter (unless no_increment: the specification's
 * transferObject of a pending create). */
int vm__event(avm_exec *x, int type, avm_val a0, avm_val a1, avm_val a2);
int vm__event_ctrl(avm_exec *x, int type, avm_val ctrl, avm_val a0, avm_val a1,
                   avm_val a2, bool increment);

/* Sets an EvalError with the current source position. Returns VM_FAIL. */
int vm__eval_error(avm_exec *x, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
int vm__fail(avm_exec *x, avm_error_code c, avm_val a0, avm_val a1, avm_val a2);
/* Error c whose one argument is the formatted message. VM_FAIL. */
int vm__failf(avm_exec *x, avm_error_code c, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int vm__oom(avm_exec *x);
/* EvalError: a value would nest deeper than AVM_MAX_DEPTH lists. */
int vm__too_deep(avm_exec *x);
/* Records the depth of a list just filled; VM_FAIL (and *l released to nil) when it
 * is deeper than AVM_MAX_DEPTH. */
int vm__seal(avm_exec *x, avm_val *l);
/* A store call failed with code rv: ErrStoreFailure with the store's message. */
int vm__store_error(avm_exec *x, int rv);
/* platform.roam: notes that x->machine may have changed (call, return, teleport). */
void vm__placed(avm_exec *x);

/* Aborts every open transaction level at or above depth (used when a frame that
 * began a transaction returns), logging TransactionAborted for the outermost. */
void vm__abort_from(avm_exec *x, size_t depth);
void vm__tx_clear(avm_exec *x);

/* Finite domains (vm_fd.c). vm__fd_instr runs newVar, narrow, post and label;
 * vm__fd_reify is reifyConstraints. The tx hooks are called in default mode when a
 * level was pushed (x->tx.n is the new depth), when the innermost level commits
 * (nested: merges into its parent; outermost: the transaction is done) and when it
 * aborts (also a commit that returned false), before x->tx.n drops.
 * vm__fd_tx_failed tells whether the innermost level's store is inconsistent (its
 * commit must return false). encode writes exactly one msgpack value; decode reads
 * it (0 or AVM_E*, with a message naming the cause in err). */
int vm__fd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out);
int vm__fd_reify(avm_exec *x, avm_val *out);
int vm__fd_tx_begin(avm_exec *x);
bool vm__fd_tx_failed(const avm_exec *x);
void vm__fd_tx_commit(avm_exec *x);
void vm__fd_tx_abort(avm_exec *x);
void vm__fd_free(avm_exec *x);
int vm__fd_encode(const avm_exec *x, avm_buf *b);
int vm__fd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen);

/* Nondeterminism (vm_nd.c): choose, require, and the settlement at the outermost
 * commit. Same hook discipline as above. */
int vm__nd_instr(avm_exec *x, int op, avm_val *a, int argc, avm_val *out);
int vm__nd_tx_begin(avm_exec *x);
void vm__nd_tx_commit(avm_exec *x);
void vm__nd_tx_abort(avm_exec *x);
void vm__nd_free(avm_exec *x);
/* A primitive applied to a symbolic argument: builds the symbolic result (VM_OK),
 * fails (VM_FAIL: a primitive that would need the value now), or returns -1 when
 * the primitive only carries the value as data (cons, put: run it as usual). */
int vm__nd_prim(avm_exec *x, int p, const char *name, avm_val *a, int argc, avm_val *out);
/* Whether v holds a symbolic value (anywhere in its lists). */
bool vm__nd_has_sym(avm_val v);
/* NondetError.ErrUnsettled: `what` needs the value of v now. VM_FAIL. */
int vm__nd_unsettled(avm_exec *x, avm_val v, const char *what);
/* Settles the transaction's choices before the outermost commit hands its write
 * set over: 0 to go on (settled and substituted everywhere, nothing to settle, or
 * a bundle member's problem in *deferred for the bundle to settle), VM_ND_FALSE
 * when the commit must say false (the reason is logged), VM_FAIL on an error. */
#define VM_ND_FALSE (-2)
int vm__nd_settle(avm_exec *x, avm_val *deferred);
/* Checks a model against the requirements and substitutes it (takes model). */
int vm__nd_apply_model(avm_exec *x, avm_val model);
int vm__nd_encode(const avm_exec *x, avm_buf *b);
int vm__nd_decode(avm_exec *x, avm_mp_reader *r, char *err, size_t errlen);

/* An association list ((key value) ...) of n string keys and owned values (taken
 * even on failure). VM_OK or VM_FAIL. */
int vm__alist(avm_exec *x, const char **keys, avm_val *vals, int n, avm_val *out);

static inline avm_val vm__ref(avm_val v)
{
    avm_val_retain(v);
    return v;
}

#endif
