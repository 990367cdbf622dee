/* The embedded single node: an in-memory store, this machine, and its default
 * controller, with the reachability the embedded node can honestly claim: only
 * itself and its own controller are reachable. avmctl run, the tests and the
 * benchmarks run programs through it. */
#ifndef AVM_EMBEDDED_H
#define AVM_EMBEDDED_H

#include "lmdb_store.h"
#include "platform.h"
#include "vm.h"

typedef struct avm_embedded {
    avm_platform plat;
    avm_store *store;
    avm_lmdb *db; /* NULL: in memory */
    /* executeSolver's time limit (0: 5000 ms): plat.solve settles the choices of
     * nondeterministic transactions with Z3. */
    uint32_t solver_timeout_ms;
} avm_embedded;

/* An in-memory node. machine: this node's machine id (e.g. "node1"); controller:
 * its default controller (e.g. "main"). Returns 0 or AVM_ENOMEM. */
int avm_embedded_init(avm_embedded *e, const char *machine, const char *controller);
/* A durable node whose store is the LMDB environment in dir (created with its
 * parents if missing). Returns 0, or an error code with errmsg naming the cause and
 * the path. */
int avm_embedded_open(avm_embedded *e, const char *machine, const char *controller,
                      const char *dir, char *errmsg, size_t errlen);
void avm_embedded_close(avm_embedded *e);

/* The default data directory of machine: $AVM_DATA if set, else
 * $XDG_DATA_HOME/avm/MACHINE, else $HOME/.local/share/avm/MACHINE. */
int avm_embedded_default_dir(const char *machine, char *out, size_t n);

/* Execution records (durable nodes): status names for AVM_RUN_* */
const char *avm_embedded_status_name(int status);

/* The top-level frame of an entry program, as the specification's runners set it:
 * self = #obj"root/orchestrator", input = "". */
int avm_embedded_toplevel(avm_val *self, avm_val *input);

/* Starts m's entry program (fn -1) or its parameterless function fn in a new
 * execution without running it. */
int avm_embedded_start(avm_embedded *e, avm_module *m, int fn, const avm_exec_config *cfg,
                       avm_exec **out, char *errmsg, size_t errlen);

/* Runs m's entry program (fn -1) or its parameterless function fn to its end (or until it
 * blocks) in a new execution, which the caller frees. errmsg receives load-time refusals
 * (unsafe program, no entry). */
int avm_embedded_run(avm_embedded *e, avm_module *m, int fn, const avm_exec_config *cfg,
                     avm_exec **out, char *errmsg, size_t errlen);

/* An object record as JSON: {"object", "behavior", "machine",
 * "creatingController", "currentController", "version"[, "module" (the behaviour's
 * module hash)][, "state"]}. */
void avm_objrec_json(avm_buf *b, const avm_objrec *r, bool with_module, bool with_state);

/* The store's objects as text (one per line) or as a JSON array. */
void avm_embedded_dump(avm_embedded *e, avm_buf *b, bool json);

#endif
