/* The interpreter: one execution of an AVM program.
 *
 * An execution runs a module's entry program (or any behaviour) as a stack of VM
 * frames; a nested `call` pushes a frame rather than recursing in C, so any
 * instruction at any depth can suspend the execution. avm_exec_run() runs until the
 * program ends, fails, blocks (receive on an empty mailbox) or spends its
 * instruction budget; the caller decides when to run it again. The whole state
 * (frames, values, the transaction overlay, the trace) is plain data and
 * serializes with avm_exec_encode(). */
#ifndef AVM_VM_H
#define AVM_VM_H

#include <stdint.h>

#include "avm_error.h"
#include "bytecode.h"
#include "platform.h"
#include "value.h"

typedef enum {
    AVM_MODE_DEFAULT = 0, /* the decisions of DESIGN.md section 3 */
    AVM_MODE_STRICT = 1,  /* the literal Interpreter.lagda.md */
} avm_mode;

typedef struct avm_exec_config {
    avm_mode mode;
    bool allow_unsafe;   /* the grant for unsafe instructions */
    bool keep_trace;     /* keep the trace in memory (avm_exec_trace) */
    bool msc;            /* with keep_trace: sequence-chart records in the log */
    uint32_t max_frames; /* call depth limit (0: 10,000) */
    uint32_t max_stack;  /* value stack limit in values (0: 1,000,000) */
} avm_exec_config;

typedef enum {
    AVM_RUN_DONE = 0,    /* the program returned; avm_exec_result() */
    AVM_RUN_FAILED = 1,  /* an AVM error or EvalError; avm_exec_error() */
    AVM_RUN_YIELD = 2,   /* budget spent; run again to continue */
    AVM_RUN_BLOCKED = 3, /* waiting (avm_exec_waiting); run again later */
    AVM_RUN_MOVED = 4,   /* platform.roam: it must continue on avm_exec_machine() */
} avm_run_status;

/* Event types of Context.lagda.md. */
#define AVM_EVENT_MAP(X)                                                                 \
    X(OBJECT_CREATED, "ObjectCreated")         /* oid, behaviour name */                 \
    X(OBJECT_DESTROYED, "ObjectDestroyed")     /* oid */                                 \
    X(OBJECT_CALLED, "ObjectCalled")           /* oid, input, output (maybe) */          \
    X(MESSAGE_RECEIVED, "MessageReceived")     /* oid, input */                          \
    X(OBJECT_MOVED, "ObjectMoved")             /* oid, from machine, to machine */       \
    X(EXECUTION_MOVED, "ExecutionMoved")       /* to machine, from machine */            \
    X(OBJECT_FETCHED, "ObjectFetched")         /* oid, machine */                        \
    X(OBJECT_TRANSFERRED, "ObjectTransferred") /* oid, from ctrl, to ctrl */             \
    X(OBJECT_FROZEN, "ObjectFrozen")           /* oid, ctrl */                           \
    X(FUNCTION_UPDATED, "FunctionUpdated")     /* name */                                \
    X(TRANSACTION_STARTED, "TransactionStarted")                                         \
    X(TRANSACTION_COMMITTED, "TransactionCommitted")                                     \
    X(TRANSACTION_ABORTED, "TransactionAborted")                                         \
    X(ERROR_OCCURRED, "ErrorOccurred") /* error code + args */                           \
    /* The constraint layers (default mode only; not in the specification) */            \
    X(VAR_CREATED, "VarCreated")               /* var, domain */                         \
    X(DOMAIN_NARROWED, "DomainNarrowed")       /* var, domain given, result */           \
    X(CONSTRAINT_POSTED, "ConstraintPosted")   /* constraint, result */                  \
    X(VAR_LABELED, "VarLabeled")               /* var, value */                          \
    X(CHOICE_MADE, "ChoiceMade")               /* symbolic variable, values */           \
    X(REQUIREMENT_ADDED, "RequirementAdded")   /* assertion */                           \
    X(CONSTRAINTS_SOLVED, "ConstraintsSolved") /* outcome, model or reason */

typedef enum {
#define AVM__EV_ENUM(id, name) AVM_EV_##id,
    AVM_EVENT_MAP(AVM__EV_ENUM)
#undef AVM__EV_ENUM
        AVM_EV_COUNT
} avm_event_type;

const char *avm_event_name(avm_event_type t);

/* Message-sequence-chart records, kept in the trace log beside the events (types
 * from 64; docs/protocol.md gives their fields) when the execution runs with
 * cfg.msc. avm_exec_trace() leaves them out; avm_exec_trace_bytes() has them. */
#define AVM_MSC_CALL 64
#define AVM_MSC_RETURN 65
#define AVM_MSC_MESSAGE 66
#define AVM_MSC_RUNTIME 67

/* A LogEntry: timestamp (the event counter), event type and arguments, and the
 * executing controller (nil for nothing). */
typedef struct avm_event {
    uint64_t ts;
    uint8_t type;
    bool has_output; /* OBJECT_CALLED: output is `just a[2]` */
    uint16_t ecode;  /* ERROR_OCCURRED: avm_error_code, args in a[] */
    avm_val ctrl;
    avm_val a[3];
} avm_event;

void avm_event_print(avm_buf *b, const avm_event *e);
void avm_event_json(avm_buf *b, const avm_event *e);

typedef struct avm_exec avm_exec;

/* A new execution bound to a platform (borrowed: it must outlive the execution).
 * NULL on allocation failure. */
avm_exec *avm_exec_new(const avm_platform *p, const avm_exec_config *cfg);
void avm_exec_free(avm_exec *x);

/* Loads the module's entry program, or with fn >= 0 its function fn (a `defun`
 * without parameters, run as an entry program), (self and input are the top-level
 * frame's; the specification's runners use an "orchestrator" object id and an empty
 * input). Registers the module's `pure` functions that the registry does not hold yet.
 * Returns AVM_EUNSAFE (with a message in errmsg naming the function and the
 * instruction) when the module uses an unsafe instruction without the grant,
 * AVM_EINVAL when it has no entry program. */
int avm_exec_start(avm_exec *x, avm_module *m, int fn, avm_val self, avm_val input,
                   char *errmsg, size_t errlen);

/* Runs about `budget` VM instructions (0: no limit): the budget is checked at
 * jumps, calls, returns and AVM instructions, so a run ends at the first of those
 * past its budget (a straight stretch of code runs to its end), and a run always
 * executes at least one instruction. */
avm_run_status avm_exec_run(avm_exec *x, uint64_t budget);

avm_run_status avm_exec_status(const avm_exec *x);
/* Borrowed; valid once the status is AVM_RUN_DONE. */
avm_val avm_exec_result(const avm_exec *x);
/* Borrowed; valid once the status is AVM_RUN_FAILED. */
const avm_error *avm_exec_error(const avm_exec *x);
/* Borrowed; the object whose receive blocks, once the status is AVM_RUN_BLOCKED. */
avm_val avm_exec_blocked_on(const avm_exec *x);

/* What a blocked execution waits for. */
typedef enum {
    AVM_WAIT_NONE = 0,
    AVM_WAIT_MESSAGE = 1, /* receive on an empty mailbox: avm_exec_blocked_on */
    AVM_WAIT_COMMIT = 2,  /* its store answered a commit or an effect with EPENDING */
    AVM_WAIT_FETCH = 3,   /* platform.prepare is fetching avm_exec_blocked_on */
} avm_wait;
avm_wait avm_exec_waiting(const avm_exec *x);

/* Hands an execution waiting for AVM_WAIT_COMMIT its outcome: rv 0 and whether the
 * write set committed, or the store's error code. The next avm_exec_run finishes the
 * commitTx with it. AVM_ESTATE when the execution waits for no commit. */
int avm_exec_commit_done(avm_exec *x, int rv, bool committed);
/* Before avm_exec_commit_done of a bundle member's commit whose write set carried a
 * problem (avm_writeset.problem): the model that settled the bundle's merged
 * problem ((name value) ...), taken; substituted into every value the execution
 * holds. 0, AVM_ESTATE (no commit waits) or AVM_ENOMEM. */
int avm_exec_commit_settle(avm_exec *x, avm_val model);
/* The open transaction's unsettled nondeterministic problem (the constraint IR of
 * platform.h: (choices requirements), both empty outside one); owned. */
int avm_exec_problem(const avm_exec *x, avm_val *out);
/* v (any value, borrowed) with every symbolic value in it replaced by its value under
 * model ((name value) ...), evaluated with the language's 64-bit arithmetic; a
 * bool requirement evaluates to #t or #f. 0 with an owned *out, AVM_ENOTFOUND (a
 * choice the model does not settle), AVM_ETOOBIG (64-bit overflow), AVM_EINVAL (not
 * a model) or AVM_ENOMEM. */
int avm_sym_subst(avm_val v, avm_val model, avm_val *out);

/* The machine the execution runs on now (borrowed). */
avm_val avm_exec_machine(const avm_exec *x);

/* An execution decoded on another machine (it moved there): registers the pure
 * functions of its modules that this machine's registry does not hold yet, as
 * avm_exec_start does. 0 or the store's error. */
int avm_exec_adopt(avm_exec *x);

/* Ends an execution that cannot go on because the machine it was on is gone: it
 * fails with ErrMachineUnreachable (machine) and an ErrorOccurred entry. For an
 * execution that has not terminated and waits for nothing. 0 or AVM_ESTATE. */
int avm_exec_abandon(avm_exec *x, avm_val machine);

/* The commit the execution waits for was stored without its checkpoint (it was
 * forwarded to another machine): the trace log is not saved up to it. Call before
 * avm_exec_commit_done. */
void avm_exec_commit_unsaved(avm_exec *x);

/* Appends a runtime record (AVM_MSC_RUNTIME: "ExecutionStarted", ...) to the
 * execution's log: event names the event, id the execution, detail anything (nil).
 * No-op without cfg.msc. 0 or AVM_ENOMEM. */
int avm_exec_log_runtime(avm_exec *x, const char *event, const char *id, avm_val detail);
/* The execution's Lamport clock (ticks with every sequence-chart record). */
uint64_t avm_exec_lamport(const avm_exec *x);

/* The open transaction, for a transaction registry: its id, controller (nil until
 * resolved), nesting depth, the read set and the number of writes (states, creates,
 * destroys, transfers, moves). Values are borrowed. false when none is open. */
typedef struct avm_exec_txinfo {
    avm_val txid, ctrl;
    size_t depth;
    const avm_read *reads;
    size_t nreads;
    const avm_pair *states;
    size_t nstates;
    size_t nwrites;
    /* A multi-controller transaction: the LIST of its controllers (ctrl is the
     * first); nil for a single-controller one. */
    avm_val ctrls;
} avm_exec_txinfo;
bool avm_exec_tx(const avm_exec *x, avm_exec_txinfo *out);

size_t avm_exec_trace_len(const avm_exec *x);
const avm_event *avm_exec_trace(const avm_exec *x);
uint64_t avm_exec_event_counter(const avm_exec *x);
uint64_t avm_exec_steps(const avm_exec *x);

/* Checkpoints: with an id set, every outermost commit in default mode carries the
 * execution's state in its write set (avm_writeset.ckpt_*), so a durable store
 * records it in the same atomic step as the commit. The state is taken just
 * before the commit with a mark that the commit is decided: an execution decoded
 * from it continues after the commit without applying it again (exactly once). */
int avm_exec_set_checkpoint(avm_exec *x, const char *id);

/* Bundles (composed commits, an extension of this runtime): an execution in a
 * bundle hands the write set of each outermost commit to the store marked with
 * the bundle's name (avm_writeset.bundle), and the store commits it together with
 * the other members' segments. set_bundle puts x in the named bundle (NULL: in
 * none), as the instruction joinBundle does: 0, AVM_EINVAL for an empty name,
 * AVM_ESTATE while a transaction is open, AVM_ENOMEM. bundle gives the name, NULL
 * when x is in none (borrowed). Serialized with the execution. */
int avm_exec_set_bundle(avm_exec *x, const char *name);
const char *avm_exec_bundle(const avm_exec *x);

/* Who started the execution (the principal the node's control endpoint
 * authenticated, "anonymous" without authentication): metadata that the
 * interpreter keeps and serializes with the execution but never looks at.
 * set_principal: 0, AVM_EINVAL for an empty name, AVM_ENOMEM; NULL clears it.
 * principal: the name, or NULL when none was set (borrowed). */
int avm_exec_set_principal(avm_exec *x, const char *name);
const char *avm_exec_principal(const avm_exec *x);

/* Execution state as bytes (msgpack, versioned), and back. An execution waiting
 * for a commit's outcome, or holding one not yet consumed by avm_exec_run, cannot
 * be encoded (AVM_ESTATE): its state would lose the decision. The platform given to
 * decode must be equivalent to the one the execution ran on (same store
 * contents). Decoded modules are verified. */
int avm_exec_encode(const avm_exec *x, avm_buf *out);
int avm_exec_decode(const uint8_t *p, size_t n, const avm_platform *plat, avm_exec **out,
                    char *errmsg, size_t errlen);

/* The same, with the trace log split off: encode_ex leaves out the first
 * trace_from bytes of the log (the state records the log's length and where its
 * own part starts), and decode_ex takes those bytes back as `prefix`, which must be
 * exactly that long. A store keeps the log in chunks next to the checkpoints
 * (avm_writeset.ckpt_trace*), so a checkpoint costs what changed, not the whole
 * trace. avm_exec_trace_bytes() gives the log. */
int avm_exec_encode_ex(const avm_exec *x, avm_buf *out, size_t trace_from);
int avm_exec_decode_ex(const uint8_t *p, size_t n, const uint8_t *prefix,
                       size_t prefix_len, const avm_platform *plat, avm_exec **out,
                       char *errmsg, size_t errlen);
/* A state encoded with encode_ex, decoded without the log's first trace_from
 * bytes (they stay where the execution came from): the execution's log is that
 * part only (avm_exec_trace and the trace bytes show it), and encode_ex with
 * trace_from >= avm_exec_trace_base() works as if the whole log were there. An
 * execution visiting another machine travels so, not with its whole log. */
int avm_exec_decode_part(const uint8_t *p, size_t n, const avm_platform *plat,
                         avm_exec **out, char *errmsg, size_t errlen);
/* x was decoded with decode_part from a state encoded at the end of old's log (it
 * left with all of it and comes back with what it added): x takes old's log (old
 * keeps none) and appends its part, so that x has the whole log again, in time
 * proportional to the part. AVM_EINVAL when x's part does not start where old's
 * log ends. */
int avm_exec_rejoin(avm_exec *x, avm_exec *old);
/* Where the log in memory starts (0 but after decode_part), and where it ends: the
 * whole log's length in bytes. */
size_t avm_exec_trace_base(const avm_exec *x);
size_t avm_exec_trace_end(const avm_exec *x);

/* A checkpoint of x as it is now, as a write set for its store: fills the ckpt_*
 * fields of ws (which the caller zeroed) with x's checkpoint id (set with
 * avm_exec_set_checkpoint), its state without the trace log (in *state, which the
 * caller frees), its status, and the part of the trace log not saved yet. Once the
 * store committed ws, avm_exec_checkpoint_saved(x, ws) records that the log is
 * saved up to there. AVM_ESTATE when x has no checkpoint id. */
int avm_exec_checkpoint(avm_exec *x, avm_buf *state, avm_writeset *ws);
void avm_exec_checkpoint_saved(avm_exec *x, const avm_writeset *ws);

/* The write-ahead checkpoint of a commit that is decided elsewhere (a replicated
 * controller's group, a commit across controllers): called by the store from
 * within its apply of x's outermost commitTx (the write set has ckpt_id set), it
 * fills ws like avm_exec_checkpoint with x's state AT that commitTx, NOT decided
 * (status AVM_RUN_YIELD): an execution restored from it runs the commitTx again,
 * with the same overlay, and so hands the store the same write set. key gets the
 * commit's name, stable over such restarts and distinct between x's commits:
 * "<checkpoint id>@<the outermost transaction's id>" (transaction ids are never
 * reused). AVM_ESTATE when x is not inside such an apply or has no checkpoint id;
 * AVM_ETOOBIG when the key does not fit in keylen. */
int avm_exec_checkpoint_commit(avm_exec *x, avm_buf *state, avm_writeset *ws, char *key,
                               size_t keylen);

/* Borrowed: the encoded trace log (msgpack events one after the other). */
const uint8_t *avm_exec_trace_bytes(const avm_exec *x, size_t *len);

#endif
