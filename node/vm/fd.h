/* The finite-domain (FD) constraint engine: integer variables with finite domains,
 * the constraints of the specification's Constraint type (Eq, Neq, Leq, Lt, Geq, Gt,
 * AllDiff, ValEq, ValLeq, ValLt, ValGeq, ValGt) with their propagators, and a trail
 * that follows nested levels (the interpreter's transaction levels) so that a level
 * can be undone exactly.
 *
 * The engine knows nothing of executions, values or events: vm_fd.c maps the AVM
 * instructions onto it. No I/O, no clock, no globals.
 *
 * Variables are numbered 0, 1, 2, ... in creation order. Domains are sets of int64
 * values, kept as a bitset (a base value and up to FD_BITS_MAX_WORDS words) when
 * their span allows, else as a sorted list of disjoint intervals. Arithmetic on
 * values and offsets is exact (128-bit), so no offset ever overflows.
 *
 * Propagation is eager: every operation that changes a domain runs the propagators
 * of the constraints watching the variables it changed, to a fixed point. Once a
 * domain is empty the store is *failed*: post and narrow then do no work (the
 * constraint is still recorded), and only undoing a level can make it consistent
 * again.
 *
 * Levels. fd_level_push marks the store; fd_level_commit merges the innermost level
 * into its parent (what it changed is undone by an abort of the parent); with no
 * level left the trail is dropped. fd_level_abort restores the store exactly as it
 * was at the level's push (domains, variables, constraints, failed flag), then
 * applies the level's choice point (DESIGN.md decision 5): if a label at that level
 * chose v := x, x is removed from v's domain in the restored store and propagated.
 *
 * Every function returning int returns 0 or AVM_ENOMEM. Out of memory during a
 * level's abort (void) cannot be reported: the store is then marked failed and
 * fd_oom() says so, for the caller to report at its next operation. */
#ifndef AVM_FD_H
#define AVM_FD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "value.h"

/* A domain of more than FD_BITS_MAX_WORDS * 64 values' span is an interval list. */
#define FD_BITS_MAX_WORDS 64
/* Limits of a store (checked when posting and when decoding). */
#define FD_MAX_VARS (1u << 24)
#define FD_MAX_CONS (1u << 24)
#define FD_MAX_ALLDIFF (1u << 20) /* variables of one AllDiff */

typedef struct fd_store fd_store;

/* An inclusive interval of values. */
typedef struct fd_iv {
    int64_t lo, hi;
} fd_iv;

typedef enum {
    FD_EQ = 0,  /* a = b + k */
    FD_NEQ = 1, /* a != b + k */
    FD_LEQ = 2, /* a <= b + k */
    FD_LT = 3,  /* a < b + k */
    FD_GEQ = 4, /* a >= b + k */
    FD_GT = 5,  /* a > b + k */
    FD_ALLDIFF = 6,
    FD_VAL_EQ = 7, /* a = k */
    FD_VAL_LEQ = 8,
    FD_VAL_LT = 9,
    FD_VAL_GEQ = 10,
    FD_VAL_GT = 11,
    FD_KIND_COUNT
} fd_kind;

/* The specification's constructor name ("Eq", "AllDiff", ...). */
const char *fd_kind_name(fd_kind k);
/* The kind named by the n bytes at name, or -1. */
int fd_kind_from_name(const char *name, size_t n);

/* A new empty store with `levels` open levels, all at the empty state (a store
 * first used inside nested transactions); NULL when out of memory. */
fd_store *fd_new(uint32_t levels);
void fd_free(fd_store *s);

/* Sorts and merges n intervals in place (each lo <= hi): afterwards they are
 * increasing, disjoint and not adjacent; returns the new count. */
size_t fd_ivs_normalize(fd_iv *iv, size_t n);

/* A new variable whose domain is the union of n normalized intervals (n == 0: an
 * empty domain, which fails the store). Its number in *var. */
int fd_new_var(fd_store *s, const fd_iv *iv, size_t n, uint32_t *var);
/* Intersects var's domain with the n normalized intervals and propagates (nothing
 * when the store has failed). */
int fd_narrow(fd_store *s, uint32_t var, const fd_iv *iv, size_t n);
/* Posts a binary constraint (a, b, offset k) or a Val* one (variable a, value k; b
 * ignored) and propagates. Variables must exist. */
int fd_post(fd_store *s, fd_kind kind, uint32_t a, uint32_t b, int64_t k);
/* Posts AllDiff over n variables with offsets (offs NULL: all 0): the values
 * vars[i] + offs[i] are pairwise distinct. */
int fd_post_alldiff(fd_store *s, const uint32_t *vars, const int64_t *offs, size_t n);
/* Fixes var (non-empty domain) to its smallest value, returned in *value, and
 * propagates (a failure only marks the store failed). The first label at the
 * innermost level is that level's choice point. */
int fd_label(fd_store *s, uint32_t var, int64_t *value);

bool fd_failed(const fd_store *s);
bool fd_oom(const fd_store *s);
uint32_t fd_nvars(const fd_store *s);
uint32_t fd_ncons(const fd_store *s);
uint32_t fd_levels(const fd_store *s);
bool fd_empty(const fd_store *s, uint32_t var);
int64_t fd_min(const fd_store *s, uint32_t var);
int64_t fd_max(const fd_store *s, uint32_t var);
bool fd_contains(const fd_store *s, uint32_t var, int64_t v);
/* The number of values, saturated at UINT64_MAX. */
uint64_t fd_size(const fd_store *s, uint32_t var);
/* Calls fn for each maximal run of var's domain in increasing order until it
 * returns non-zero, which it returns. */
int fd_runs(const fd_store *s, uint32_t var,
            int (*fn)(void *data, int64_t lo, int64_t hi), void *data);

int fd_level_push(fd_store *s);
void fd_level_commit(fd_store *s);
void fd_level_abort(fd_store *s);

/* Serialization: one msgpack value holding the whole store (variables,
 * constraints, level marks, choice points and the trail). */
int fd_encode(const fd_store *s, avm_buf *b);
/* Decodes a value written by fd_encode (not nil); 0 with a new store in *out, or
 * AVM_EMALFORMED / AVM_ETRUNCATED / AVM_ENOMEM ... with the cause in err. */
struct avm_mp_reader;
int fd_decode(struct avm_mp_reader *r, fd_store **out, char *err, size_t errlen);

#endif
