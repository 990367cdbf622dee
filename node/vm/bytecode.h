/* Portable bytecode: the contract between the compiler, the verifier and the VM.
 *
 * A module is the compiled form of one .avm file: a list of functions, each with its
 * own code, constants and line table. Modules are plain data: they serialize with
 * msgpack (module.h) and are checked by the verifier before they run, so bytecode
 * from a file or a peer can never make the VM read out of bounds.
 *
 * The VM is a stack machine. A frame owns `nlocals` slots (parameters first, then
 * let-bound slots) followed by an operand stack of at most `max_stack` values.
 * Operands are little-endian; jump offsets are relative to the end of the jump
 * instruction. */
#ifndef AVM_BYTECODE_H
#define AVM_BYTECODE_H

#include <stdint.h>

#include "value.h"

/* Format version of serialized modules and execution states. */
#define AVM_BYTECODE_VERSION 1

/* Opcodes. "pop a, b" means b was on top. */
typedef enum {
    OP_CONST = 1,    /* u16 k: push consts[k] */
    OP_NIL = 2,      /* push nil */
    OP_LOAD = 3,     /* u16 slot: push locals[slot] */
    OP_STORE = 4,    /* u16 slot: pop into locals[slot] */
    OP_POP = 5,      /* pop and discard */
    OP_JMP = 6,      /* i32 off: pc += off */
    OP_JMPF = 7,     /* i32 off: pop v; if v is nil or #f, pc += off */
    OP_CALL = 8,     /* u16 fn, u8 argc: call funcs[fn] of this module with the top
                        argc values as its first argc locals; push its result */
    OP_TAILCALL = 9, /* u16 fn, u8 argc: like OP_CALL, but replaces this frame
                        (constant stack for tail recursion); the callee must not be
                        a behaviour */
    OP_RET = 10,     /* pop v; return v to the caller */
    OP_PRIM = 11,    /* u8 prim, u8 argc: pop argc values, push prim(values) */
    OP_AVM = 12,     /* u8 instr, u8 argc: pop argc values, push the result of the
                        AVM instruction (may suspend the execution) */
    OP_LIST = 13,    /* u16 n: pop n values, push the list of them in order */
    OP_DUP = 14,     /* push a copy of the top */
} avm_opcode;

/* Operand bytes after each opcode (index by opcode). */
#define AVM_OP_OPERAND_BYTES                                                             \
    {                                                                                    \
        0, 2, 0, 2, 2, 0, 4, 4, 3, 3, 0, 2, 2, 2, 0                                      \
    }
#define AVM_OP_MAX OP_DUP

/* Primitives (OP_PRIM). Arity -1 means variadic (argc operand, at least the minimum
 * given in the second column). A primitive applied to values of the wrong kind, or
 * division by zero, or an out-of-range index, stops the program with an EvalError
 * naming the primitive (inside a pure function: callPure returns nothing). */
#define AVM_PRIM_MAP(X)                                                                  \
    X(ADD, "+", 2)                                                                       \
    X(SUB, "-", 2)                                                                       \
    X(MUL, "*", 2)                                                                       \
    X(DIV, "/", 2)   /* truncating; error on zero or INT64_MIN / -1 */                   \
    X(MOD, "mod", 2) /* sign of the dividend, as C */                                    \
    X(NEG, "neg", 1)                                                                     \
    X(LT, "<", 2) /* ints, or strings (bytewise) */                                      \
    X(LE, "<=", 2)                                                                       \
    X(GT, ">", 2)                                                                        \
    X(GE, ">=", 2)                                                                       \
    X(EQ, "=", 2) /* structural equality on all values */                                \
    X(NE, "!=", 2)                                                                       \
    X(NOT, "not", 1)       /* #t iff the value is nil or #f */                           \
    X(CONS, "cons", 2)     /* (cons x l): new list with x in front */                    \
    X(HEAD, "head", 1)     /* first element; error on () */                              \
    X(TAIL, "tail", 1)     /* all but the first; error on () */                          \
    X(NTH, "nth", 2)       /* (nth l i), 0-based */                                      \
    X(LENGTH, "length", 1) /* of a list or a string */                                   \
    X(APPEND, "append", 2) /* (append l1 l2) */                                          \
    X(REVERSE, "reverse", 1)                                                             \
    X(IS_NULL, "null?", 1) /* #t for () and nil */                                       \
    X(IS_NIL, "nil?", 1)                                                                 \
    X(IS_INT, "int?", 1)                                                                 \
    X(IS_STR, "string?", 1)                                                              \
    X(IS_LIST, "list?", 1)                                                               \
    X(IS_BOOL, "bool?", 1)                                                               \
    X(GET, "get", 2)          /* (get alist key): value of the first (key v) entry, or   \
                                 nil */                                                  \
    X(PUT, "put", 3)          /* (put alist key v): alist with key's entry replaced (or  \
                                 appended) */                                            \
    X(STR, "str", -1)         /* concatenation of the printed forms; strings as-is */    \
    X(SUBSTR, "substring", 3) /* (substring s start end), bytes */                       \
    X(TO_INT, "string->int", 1) /* nil when not a decimal integer */                     \
    X(MK_OBJID, "object-id", 1) /* identifier from a string */                           \
    X(MK_CTRLID, "controller", 1)                                                        \
    X(MK_MACHID, "machine", 1)                                                           \
    X(MK_TXID, "tx-id", 1)                                                               \
    X(ID_NAME, "id-name", 1) /* string of an identifier */                               \
    X(ERROR, "error", 1)     /* stop with an EvalError carrying the value */             \
    X(MIN, "min", 2)                                                                     \
    X(MAX, "max", 2)                                                                     \
    X(ABS, "abs", 1)                                                                     \
    X(ALL, "all", -1) /* #t when no argument is nil or #f (symbolic: their `and`) */     \
    X(ANY, "any", -1) /* #t when some argument is neither nil nor #f (symbolic: `or`) */

typedef enum {
    AVM_PRIM_NONE = 0,
#define AVM__PRIM_ENUM(id, name, arity) AVM_PRIM_##id,
    AVM_PRIM_MAP(AVM__PRIM_ENUM)
#undef AVM__PRIM_ENUM
        AVM_PRIM_COUNT
} avm_prim;

/* AVM instructions (OP_AVM): spec name, family, safety, allowed argc range, and the
 * stack arguments in order. Unsafe instructions need a grant at load time. */
#define AVM_INSTR_MAP(X)                                                                 \
    /* Obj */                                                                            \
    X(CREATE_OBJ, "createObj", OBJ, SAFE, 1, 2)   /* name [controller-or-nil] */         \
    X(DESTROY_OBJ, "destroyObj", OBJ, SAFE, 1, 1) /* oid */                              \
    X(CALL, "call", OBJ, SAFE, 2, 2)              /* oid input */                        \
    X(RECEIVE, "receive", OBJ, SAFE, 0, 0)                                               \
    /* Introspect */                                                                     \
    X(SELF, "self", INTROSPECT, SAFE, 0, 0)                                              \
    X(INPUT, "input", INTROSPECT, SAFE, 0, 0)                                            \
    X(GET_CURRENT_MACHINE, "getCurrentMachine", INTROSPECT, SAFE, 0, 0)                  \
    X(GET_STATE, "getState", INTROSPECT, SAFE, 0, 0)                                     \
    X(SET_STATE, "setState", INTROSPECT, SAFE, 1, 1) /* list */                          \
    X(SENDER, "sender", INTROSPECT, SAFE, 0, 0)                                          \
    /* Reflect: scryMeta/scryDeep push every candidate, the compiler filters them        \
       with the program's predicate */                                                   \
    X(REFLECT, "reflect", REFLECT, UNSAFE, 1, 1) /* oid */                               \
    X(SCRY_META, "scryMeta", REFLECT, UNSAFE, 0, 0)                                      \
    X(SCRY_DEEP, "scryDeep", REFLECT, UNSAFE, 0, 0)                                      \
    /* Reify */                                                                          \
    X(REIFY_CONTEXT, "reifyContext", REIFY, SAFE, 0, 0)                                  \
    X(REIFY_TX_STATE, "reifyTxState", REIFY, UNSAFE, 0, 0)                               \
    X(REIFY_CONSTRAINTS, "reifyConstraints", REIFY, UNSAFE, 0, 0)                        \
    /* Tx */                                                                             \
    X(BEGIN_TX, "beginTx", TX, SAFE, 0, 1) /* [controller-or-nil] */                     \
    X(COMMIT_TX, "commitTx", TX, SAFE, 1, 1)                                             \
    X(ABORT_TX, "abortTx", TX, SAFE, 1, 1)                                               \
    /* Pure: the function operand of registerPure/updatePure is an int, the index of     \
       a pure function of the executing module */                                        \
    X(CALL_PURE, "callPure", PURE, SAFE, 2, 2)           /* name args-list */            \
    X(REGISTER_PURE, "registerPure", PURE, UNSAFE, 2, 2) /* name fn-index */             \
    X(UPDATE_PURE, "updatePure", PURE, SAFE, 2, 2)       /* name fn-index */             \
    /* Machine */                                                                        \
    X(GET_MACHINE, "getMachine", MACHINE, SAFE, 1, 1)                                    \
    X(TELEPORT, "teleport", MACHINE, SAFE, 1, 1)                                         \
    X(MOVE_OBJECT, "moveObject", MACHINE, SAFE, 2, 2)                                    \
    X(FETCH, "fetch", MACHINE, SAFE, 1, 1)                                               \
    /* Controller */                                                                     \
    X(GET_CURRENT_CONTROLLER, "getCurrentController", CONTROLLER, SAFE, 0, 0)            \
    X(GET_CONTROLLER, "getController", CONTROLLER, SAFE, 1, 1)                           \
    X(TRANSFER_OBJECT, "transferObject", CONTROLLER, SAFE, 2, 2)                         \
    X(FREEZE, "freeze", CONTROLLER, SAFE, 1, 1)                                          \
    /* FD */                                                                             \
    X(NEW_VAR, "newVar", FD, SAFE, 1, 1)                                                 \
    X(NARROW, "narrow", FD, SAFE, 2, 2)                                                  \
    X(POST, "post", FD, SAFE, 1, 1)                                                      \
    X(LABEL, "label", FD, SAFE, 1, 1)                                                    \
    /* Nondet */                                                                         \
    X(CHOOSE, "choose", NONDET, SAFE, 1, 1)                                              \
    X(REQUIRE, "require", NONDET, SAFE, 1, 1)                                            \
    /* Extensions of this runtime (not in the specification); appended so that the       \
       numbers of the instructions above never change */                                 \
    X(JOIN_BUNDLE, "joinBundle", TX, SAFE, 1, 1) /* name-or-nil */

typedef enum {
    AVM_INSTR_NONE = 0,
#define AVM__INSTR_ENUM(id, name, fam, safety, lo, hi) AVM_I_##id,
    AVM_INSTR_MAP(AVM__INSTR_ENUM)
#undef AVM__INSTR_ENUM
        AVM_INSTR_COUNT
} avm_instr;

typedef enum {
    AVM_FAM_OBJ,
    AVM_FAM_INTROSPECT,
    AVM_FAM_REFLECT,
    AVM_FAM_REIFY,
    AVM_FAM_TX,
    AVM_FAM_PURE,
    AVM_FAM_MACHINE,
    AVM_FAM_CONTROLLER,
    AVM_FAM_FD,
    AVM_FAM_NONDET,
} avm_family;

typedef struct avm_instr_info {
    const char *name; /* the specification's name */
    avm_family family;
    bool unsafe;
    uint8_t min_argc, max_argc;
} avm_instr_info;

typedef struct avm_prim_info {
    const char *name; /* the language's name */
    int8_t arity;     /* -1: variadic */
} avm_prim_info;

/* Tables indexed by avm_instr / avm_prim; entry 0 is unused. */
extern const avm_instr_info avm_instr_table[AVM_INSTR_COUNT];
extern const avm_prim_info avm_prim_table[AVM_PRIM_COUNT];

typedef enum {
    AVM_FN_MAIN = 0,     /* the entry program: no parameters */
    AVM_FN_BEHAVIOR = 1, /* an object behaviour: no parameters, reads (input);
                            returns a list of outputs */
    AVM_FN_PURE = 2,     /* a pure function: parameters; no OP_AVM, calls only pure
                            functions */
    AVM_FN_FUNC = 3,     /* a helper function: parameters; may use AVM instructions
                            in the frame of the behaviour or entry that calls it */
} avm_fn_kind;

/* Source position of the instruction starting at `pc` (and following ones up to
 * the next entry). */
typedef struct avm_line {
    uint32_t pc;
    uint32_t line, col;
} avm_line;

typedef struct avm_func {
    avm_val name; /* AVM_STR */
    uint8_t kind; /* avm_fn_kind */
    uint8_t nparams;
    uint16_t nlocals;   /* >= nparams */
    uint16_t max_stack; /* operand stack bound, checked by the verifier */
    uint32_t code_len;
    uint8_t *code;
    uint32_t nconsts;
    avm_val *consts;
    uint32_t nlines;
    avm_line *lines;
    bool uses_unsafe; /* this function itself contains an unsafe OP_AVM */
} avm_func;

/* A compiled program. Reference counted: executions, objects (their behaviour) and
 * registry entries hold references. Immutable once built. */
typedef struct avm_module {
    uint32_t rc;
    uint32_t nfuncs;
    avm_func *funcs;
    int32_t main_fn;  /* index of the AVM_FN_MAIN function, or -1 */
    avm_val source;   /* AVM_STR: file name for error messages */
    uint8_t hash[32]; /* SHA-256 of the canonical encoding (module.h) */
} avm_module;

#endif
