/* The reader and compiler of the .avm language: module shape, exact bytecode of
 * small expressions (through a small disassembler), every class of error with its
 * position, and robustness on truncated and mutated sources. The VM is not needed:
 * compiled modules are checked structurally and by the verifier. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "compiler.h"
#include "module.h"
#include "reader.h"
#include "test.h"

static const char example_src[] =
    "; The examples of the language reference.\n"
    "(behavior ping\n"
    "  (let ((msg (input)))\n"
    "    (if (< (get msg 'counter) (get msg 'max))\n"
    "        (do (call (get msg 'partner)\n"
    "                  (list (list 'type 'pong) (list 'counter (+ (get msg 'counter) "
    "1))\n"
    "                        (list 'partner (self)) (list 'max (get msg 'max))))\n"
    "            (list \"ping-continue\"))\n"
    "        (list \"ping-done\"))))\n"
    "(pure add (a b) (+ a b))\n"
    "(defun count-down (n acc) (if (<= n 0) acc (count-down (- n 1) (cons n acc))))\n"
    "(main\n"
    "  (let ((tx (beginTx))\n"
    "        (p (createObj \"ping\")))\n"
    "    (commitTx tx)\n"
    "    (list (callPure \"add\" (list 1 2)) (count-down 3 '()))))\n";

/* Helpers. */

static avm_module *compile(const char *src)
{
    avm_module *m = NULL;
    avm_diag d;
    int rv = avm_compile("ex.avm", src, strlen(src), &m, &d);
    if (rv != 0) {
        char buf[1024];
        avm_diag_format(&d, buf, sizeof(buf));
        fprintf(stderr, "unexpected compile error %d: %s\n", rv, buf);
        return NULL;
    }
    return m;
}

/* Compiles src, expecting failure; returns the formatted diagnostic (static). */
static const char *compile_error(const char *src, int *code)
{
    static char buf[1024];
    avm_module *m = NULL;
    avm_diag d;
    int rv = avm_compile("ex.avm", src, strlen(src), &m, &d);
    if (code != NULL)
        *code = rv;
    if (rv == 0) {
        avm_module_release(m);
        return "(compiled without error)";
    }
    if (m != NULL)
        return "(module set on error)";
    avm_diag_format(&d, buf, sizeof(buf));
    return buf;
}

static uint32_t rd16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static int32_t rd32(const uint8_t *p)
{
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                 (uint32_t)p[3] << 24;
    return (int32_t)u;
}

/* "OP operands; OP operands; ..." with constants printed and jump targets as
 * absolute pcs ("@17"). */
static void disasm(const avm_module *m, const avm_func *f, avm_buf *b)
{
    static const char *const names[] = {
        [OP_CONST] = "CONST", [OP_NIL] = "NIL",   [OP_LOAD] = "LOAD",
        [OP_STORE] = "STORE", [OP_POP] = "POP",   [OP_JMP] = "JMP",
        [OP_JMPF] = "JMPF",   [OP_CALL] = "CALL", [OP_TAILCALL] = "TAILCALL",
        [OP_RET] = "RET",     [OP_PRIM] = "PRIM", [OP_AVM] = "AVM",
        [OP_LIST] = "LIST",   [OP_DUP] = "DUP",
    };
    static const uint8_t operand_bytes[] = AVM_OP_OPERAND_BYTES;
    for (uint32_t pc = 0; pc < f->code_len;) {
        uint8_t op = f->code[pc];
        const uint8_t *o = f->code + pc + 1;
        if (pc > 0)
            avm_buf_puts(b, "; ");
        if (op == 0 || op > AVM_OP_MAX) {
            avm_buf_printf(b, "?%u", op);
            return;
        }
        avm_buf_puts(b, names[op]);
        switch (op) {
        case OP_CONST:
            avm_buf_puts(b, " ");
            avm_val_print(b, f->consts[rd16(o)]);
            break;
        case OP_LOAD:
        case OP_STORE:
        case OP_LIST:
            avm_buf_printf(b, " %u", rd16(o));
            break;
        case OP_JMP:
        case OP_JMPF:
            avm_buf_printf(b, " @%d", (int)(pc + 5 + (uint32_t)rd32(o)));
            break;
        case OP_CALL:
        case OP_TAILCALL:
            avm_buf_printf(b, " %s %u", m->funcs[rd16(o)].name.u.s->data, o[2]);
            break;
        case OP_PRIM:
            avm_buf_printf(b, " %s %u", avm_prim_table[o[0]].name, o[1]);
            break;
        case OP_AVM:
            avm_buf_printf(b, " %s %u", avm_instr_table[o[0]].name, o[1]);
            break;
        default:
            break;
        }
        pc += 1u + operand_bytes[op];
    }
}

static int find(const avm_module *m, const char *name)
{
    return avm_module_find(m, name, -1);
}

static bool has_op(const avm_func *f, uint8_t want)
{
    static const uint8_t operand_bytes[] = AVM_OP_OPERAND_BYTES;
    for (uint32_t pc = 0; pc < f->code_len; pc += 1u + operand_bytes[f->code[pc]])
        if (f->code[pc] == want)
            return true;
    return false;
}

/* Disassembly of function `fn` of the module compiled from src (static buffer). */
static const char *code_of(const char *src, const char *fn)
{
    static char out[4096];
    avm_module *m = compile(src);
    if (m == NULL)
        return "(compile failed)";
    int i = fn ? find(m, fn) : m->main_fn;
    if (i < 0) {
        avm_module_release(m);
        return "(no such function)";
    }
    avm_buf b;
    avm_buf_init(&b);
    disasm(m, &m->funcs[i], &b);
    snprintf(out, sizeof(out), "%s", avm_buf_cstr(&b));
    avm_buf_free(&b);
    avm_module_release(m);
    return out;
}

/* The module shape. */

TEST(example_module)
{
    avm_module *m = compile(example_src);
    REQUIRE(m != NULL);
    CHECK_INT(m->nfuncs, 4);
    CHECK_INT(m->main_fn, 3);
    CHECK_STR(m->source.u.s->data, "ex.avm");
    CHECK_INT(m->rc, 1);

    int ping = find(m, "ping"), add = find(m, "add"), cd = find(m, "count-down");
    CHECK_INT(ping, 0);
    CHECK_INT(add, 1);
    CHECK_INT(cd, 2);
    CHECK_INT(m->funcs[0].kind, AVM_FN_BEHAVIOR);
    CHECK_INT(m->funcs[1].kind, AVM_FN_PURE);
    CHECK_INT(m->funcs[2].kind, AVM_FN_FUNC);
    CHECK_INT(m->funcs[3].kind, AVM_FN_MAIN);
    CHECK_STR(m->funcs[3].name.u.s->data, "main");
    CHECK_INT(m->funcs[0].nparams, 0);
    CHECK_INT(m->funcs[1].nparams, 2);
    CHECK_INT(m->funcs[2].nparams, 2);
    CHECK_INT(m->funcs[3].nparams, 0);

    CHECK(has_op(&m->funcs[2], OP_TAILCALL));
    for (int i = 0; i < 4; i++) {
        CHECK(!m->funcs[i].uses_unsafe);
        CHECK(m->funcs[i].code[m->funcs[i].code_len - 1] == OP_RET);
    }
    /* Tail calls never leave main or a behaviour. */
    CHECK(!has_op(&m->funcs[0], OP_TAILCALL));
    CHECK(!has_op(&m->funcs[3], OP_TAILCALL));
    CHECK(has_op(&m->funcs[3], OP_CALL));

    /* ping: msg in slot 0; the deepest operand stack is the message list. */
    CHECK_INT(m->funcs[0].nlocals, 1);
    CHECK_INT(m->funcs[2].nlocals, 2);
    CHECK_INT(m->funcs[3].nlocals, 2);

    CHECK_INT(avm_module_verify(m, NULL, 0), 0);
    uint8_t zero[32] = {0};
    CHECK(memcmp(m->hash, zero, 32) != 0);
    avm_module_release(m);
}

TEST(example_bytecode)
{
    CHECK_STR(code_of(example_src, "add"), "LOAD 0; LOAD 1; PRIM + 2; RET");
    CHECK_STR(code_of(example_src, "count-down"),
              "LOAD 0; CONST 0; PRIM <= 2; JMPF @22; LOAD 1; JMP @44; "
              "LOAD 0; CONST 1; PRIM - 2; LOAD 0; LOAD 1; PRIM cons 2; "
              "TAILCALL count-down 2; RET");
    CHECK_STR(code_of(example_src, NULL),
              "AVM beginTx 0; STORE 0; CONST \"ping\"; AVM createObj 1; STORE 1; "
              "LOAD 0; AVM commitTx 1; POP; CONST \"add\"; CONST 1; CONST 2; LIST 2; "
              "AVM callPure 2; CONST 3; CONST (); CALL count-down 2; LIST 2; RET");
}

/* The same source gives the same module bytes and hash; the module survives the
 * encoding that stores and peers use. */
TEST(deterministic_and_decodable)
{
    avm_module *a = compile(example_src), *b = compile(example_src);
    REQUIRE(a != NULL && b != NULL);
    CHECK(memcmp(a->hash, b->hash, 32) == 0);
    avm_buf enc;
    avm_buf_init(&enc);
    REQUIRE(avm_module_encode(a, &enc) == 0);
    avm_module *d = NULL;
    char err[256];
    int rv = avm_module_decode((const uint8_t *)enc.data, enc.len, &d, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "decode: %s\n", err);
    CHECK_INT(rv, 0);
    if (d != NULL) {
        CHECK(memcmp(d->hash, a->hash, 32) == 0);
        avm_module_release(d);
    }
    avm_buf_free(&enc);
    avm_module_release(a);
    avm_module_release(b);
}

TEST(no_main)
{
    avm_module *m = compile("(pure id (x) x)");
    REQUIRE(m != NULL);
    CHECK_INT(m->main_fn, -1);
    CHECK_INT(m->nfuncs, 1);
    avm_module_release(m);
    m = compile("");
    REQUIRE(m != NULL);
    CHECK_INT(m->nfuncs, 0);
    CHECK_INT(m->main_fn, -1);
    avm_module_release(m);
}

TEST(behaviour_spellings)
{
    avm_module *m = compile("(behaviour a (list 1))\n"
                            "(behavior b () (list 2))\n" /* empty parameter list */
                            "(main () 3)");
    REQUIRE(m != NULL);
    CHECK_INT(m->funcs[0].kind, AVM_FN_BEHAVIOR);
    CHECK_INT(m->funcs[1].kind, AVM_FN_BEHAVIOR);
    avm_module_release(m);
    CHECK_STR(code_of("(behavior b () (list 2))", "b"), "CONST 2; LIST 1; RET");
    CHECK_STR(code_of("(behavior b)", "b"), "NIL; RET");
}

TEST(unsafe_flag)
{
    avm_module *m = compile("(defun peek (o) (reflect o))\n"
                            "(main (peek (self)))");
    REQUIRE(m != NULL);
    CHECK(m->funcs[0].uses_unsafe);
    CHECK(!m->funcs[1].uses_unsafe);
    CHECK(avm_module_fn_unsafe(m, (uint32_t)m->main_fn));
    avm_module_release(m);

    m = compile("(pure p (x) x)\n(main (registerPure \"p\" p) (updatePure \"p\" p))");
    REQUIRE(m != NULL);
    CHECK(m->funcs[1].uses_unsafe); /* registerPure is unsafe */
    avm_module_release(m);
    m = compile("(pure p (x) x)\n(main (updatePure \"p\" p))");
    REQUIRE(m != NULL);
    CHECK(!m->funcs[1].uses_unsafe);
    avm_module_release(m);
}

TEST(register_pure_passes_index)
{
    CHECK_STR(
        code_of("(pure p (x) x)\n(pure q (x) x)\n(main (registerPure \"q\" q))", NULL),
        "CONST \"q\"; CONST 1; AVM registerPure 2; RET");
}

TEST(scry_helpers)
{
    avm_module *m =
        compile("(pure big? (meta) (> (length meta) 2))\n"
                "(defun named? (beh meta) (= beh \"ping\"))\n"
                "(main (list (scryMeta big?) (scryDeep named?) (scryMeta big?)))");
    REQUIRE(m != NULL);
    int hm = find(m, "__scryMeta_big?"), hd = find(m, "__scryDeep_named?");
    REQUIRE(hm >= 0 && hd >= 0);
    CHECK_INT(m->nfuncs, 5); /* one helper per predicate, shared by both uses */
    CHECK_INT(m->funcs[hm].kind, AVM_FN_FUNC);
    CHECK_INT(m->funcs[hm].nparams, 2);
    CHECK(!m->funcs[hm].uses_unsafe);
    CHECK(m->funcs[m->main_fn].uses_unsafe);
    avm_module_release(m);

    CHECK_STR(code_of("(pure p (m) m)\n(main (scryMeta p))", NULL),
              "AVM scryMeta 0; LIST 0; CALL __scryMeta_p 2; RET");
    CHECK_STR(code_of("(pure p (m) m)\n(main (scryMeta p))", "__scryMeta_p"),
              "LOAD 0; PRIM null? 1; JMPF @22; LOAD 1; PRIM reverse 1; JMP @83; "
              "LOAD 0; PRIM head 1; CONST 1; PRIM nth 2; CALL p 1; JMPF @70; "
              "LOAD 0; PRIM tail 1; LOAD 0; PRIM head 1; LOAD 1; PRIM cons 2; "
              "TAILCALL __scryMeta_p 2; JMP @83; "
              "LOAD 0; PRIM tail 1; LOAD 1; TAILCALL __scryMeta_p 2; RET");
    CHECK_STR(code_of("(defun p (b m) m)\n(main (scryDeep p))", "__scryDeep_p"),
              "LOAD 0; PRIM null? 1; JMPF @22; LOAD 1; PRIM reverse 1; JMP @95; "
              "LOAD 0; PRIM head 1; CONST 1; PRIM nth 2; LOAD 0; PRIM head 1; "
              "CONST 2; PRIM nth 2; CALL p 2; JMPF @82; "
              "LOAD 0; PRIM tail 1; LOAD 0; PRIM head 1; LOAD 1; PRIM cons 2; "
              "TAILCALL __scryDeep_p 2; JMP @95; "
              "LOAD 0; PRIM tail 1; LOAD 1; TAILCALL __scryDeep_p 2; RET");
    /* User code cannot call a helper, even once it exists. */
    CHECK_STR(
        compile_error("(pure p (m) m)\n(main (scryMeta p) (__scryMeta_p '() '()))", NULL),
        "ex.avm:2:21: unknown function '__scryMeta_p'");
    /* In tail position of a defun the helper is tail-called. */
    CHECK_STR(code_of("(pure p (m) m)\n(defun f () (scryMeta p))", "f"),
              "AVM scryMeta 0; LIST 0; TAILCALL __scryMeta_p 2; RET");
}

/* Bytecode of small expressions. */

TEST(arithmetic)
{
    CHECK_STR(code_of("(main (+ 1 2 3))", NULL),
              "CONST 1; CONST 2; PRIM + 2; CONST 3; PRIM + 2; RET");
    CHECK_STR(code_of("(defun f (x) (+ x))", "f"), "LOAD 0; RET");
    CHECK_STR(code_of("(defun f (x) (- x))", "f"), "LOAD 0; PRIM neg 1; RET");
    CHECK_STR(code_of("(defun f (x y) (- x y 1))", "f"),
              "LOAD 0; LOAD 1; PRIM - 2; CONST 1; PRIM - 2; RET");
    CHECK_STR(code_of("(defun f (x y) (* x y x))", "f"),
              "LOAD 0; LOAD 1; PRIM * 2; LOAD 0; PRIM * 2; RET");
    CHECK_STR(code_of("(main (str \"a\" 1 'b))", NULL),
              "CONST \"a\"; CONST 1; CONST \"b\"; PRIM str 3; RET");
    CHECK_STR(code_of("(main (str 1))", NULL), "CONST 1; PRIM str 1; RET");
    CHECK_STR(code_of("(defun f (l) (put l 'k (not (null? l))))", "f"),
              "LOAD 0; CONST \"k\"; LOAD 0; PRIM null? 1; PRIM not 1; PRIM put 3; RET");
}

TEST(conditionals)
{
    CHECK_STR(code_of("(defun f (x) (if x 1))", "f"),
              "LOAD 0; JMPF @16; CONST 1; JMP @17; NIL; RET");
    CHECK_STR(code_of("(defun f (x) (if x 1 2))", "f"),
              "LOAD 0; JMPF @16; CONST 1; JMP @19; CONST 2; RET");
    CHECK_STR(code_of("(defun f (x y) (and x y))", "f"),
              "LOAD 0; DUP; JMPF @13; POP; LOAD 1; RET");
    CHECK_STR(code_of("(defun f (x y) (or x y))", "f"),
              "LOAD 0; DUP; JMPF @14; JMP @18; POP; LOAD 1; RET");
    CHECK_STR(code_of("(main (and))", NULL), "CONST #t; RET");
    CHECK_STR(code_of("(main (or))", NULL), "NIL; RET");
    CHECK_STR(code_of("(defun f (x) (and x))", "f"), "LOAD 0; RET");
    CHECK_STR(code_of("(defun f (x) (when x 1 2))", "f"),
              "LOAD 0; JMPF @20; CONST 1; POP; CONST 2; JMP @21; NIL; RET");
    CHECK_STR(code_of("(defun f (x) (when x))", "f"),
              "LOAD 0; JMPF @14; NIL; JMP @15; NIL; RET");
    CHECK_STR(code_of("(defun f (x) (unless x 1))", "f"),
              "LOAD 0; JMPF @14; NIL; JMP @17; CONST 1; RET");
    CHECK_STR(code_of("(defun f (x y) (cond (x 1) (y 2) (else 3)))", "f"),
              "LOAD 0; JMPF @16; CONST 1; JMP @35; LOAD 1; JMPF @32; CONST 2; "
              "JMP @35; CONST 3; RET");
    CHECK_STR(code_of("(defun f (x) (cond (x 1)))", "f"),
              "LOAD 0; JMPF @16; CONST 1; JMP @17; NIL; RET");
    CHECK_STR(code_of("(defun f (x) (cond (x)))", "f"),
              "LOAD 0; DUP; JMPF @14; JMP @16; POP; NIL; RET");
    CHECK_STR(code_of("(main (cond))", NULL), "NIL; RET");
    CHECK_STR(code_of("(main (cond (else)))", NULL), "NIL; RET");
}

TEST(sequencing_and_locals)
{
    CHECK_STR(code_of("(main (do))", NULL), "NIL; RET");
    CHECK_STR(code_of("(main (begin 1 2))", NULL), "CONST 1; POP; CONST 2; RET");
    CHECK_STR(code_of("(main (let ((a 1) (b a)) (set! a 2) b))", NULL),
              "CONST 1; STORE 0; LOAD 0; STORE 1; CONST 2; DUP; STORE 0; POP; "
              "LOAD 1; RET");
    CHECK_STR(code_of("(main (let ((a 1)) (let ((a (+ a 1))) a)))", NULL),
              "CONST 1; STORE 0; LOAD 0; CONST 1; PRIM + 2; STORE 1; LOAD 1; RET");
    CHECK_STR(code_of("(main (let () 5))", NULL), "CONST 5; RET");

    /* Slots are reused once a let ends; nlocals is the deepest nesting. */
    avm_module *m = compile("(defun f (a b)\n"
                            "  (let ((x 1)) (let ((y 2)) y))\n"
                            "  (let ((z 3)) z))");
    REQUIRE(m != NULL);
    CHECK_INT(m->funcs[0].nlocals, 4);
    avm_buf b;
    avm_buf_init(&b);
    disasm(m, &m->funcs[0], &b);
    CHECK_STR(avm_buf_cstr(&b), "CONST 1; STORE 2; CONST 2; STORE 3; LOAD 3; POP; "
                                "CONST 3; STORE 2; LOAD 2; RET");
    avm_buf_free(&b);
    avm_module_release(m);
}

TEST(scoping)
{
    /* A let shadows a parameter until it ends. */
    CHECK_STR(code_of("(defun f (x) (let ((x 1)) x) x)", "f"),
              "CONST 1; STORE 1; LOAD 1; POP; LOAD 0; RET");
    /* Variables and functions live in separate namespaces. */
    CHECK_STR(code_of("(defun f (f) (f f))", "f"), "LOAD 0; TAILCALL f 1; RET");
    /* Bindings do not leak from one function into the next. */
    CHECK_STR(compile_error("(defun f (x) x)\n(defun g () x)", NULL),
              "ex.avm:2:13: unknown variable 'x'");
    CHECK_STR(compile_error("(defun f (x) (let ((y 1)) y) y)", NULL),
              "ex.avm:1:30: unknown variable 'y'");
}

/* A large program: name resolution must not be quadratic. */
TEST(large_program)
{
    avm_buf b;
    avm_buf_init(&b);
    avm_buf_puts(&b, "(defun f0 (x) x)\n");
    for (int i = 1; i < 20000; i++)
        avm_buf_printf(&b, "(defun f%d (x) (f%d x))\n", i, i - 1);
    avm_buf_puts(&b, "(main (let (");
    for (int i = 0; i < 20000; i++)
        avm_buf_printf(&b, "(v%d %d) ", i, i);
    avm_buf_puts(&b, ") (list");
    for (int k = 0; k < 5; k++)
        for (int i = 0; i < 20000; i += 7)
            avm_buf_printf(&b, " (f19999 v%d)", i);
    avm_buf_puts(&b, ")))");
    avm_module *m = compile(avm_buf_cstr(&b));
    REQUIRE(m != NULL);
    CHECK_INT(m->nfuncs, 20001);
    CHECK_INT(m->funcs[m->main_fn].nlocals, 20000);
    CHECK_INT(m->funcs[m->main_fn].nconsts, 20000);
    avm_module_release(m);
    avm_buf_free(&b);
}

TEST(max_stack_exact)
{
    struct {
        const char *src;
        int max_stack;
    } cases[] = {
        {"(main 1)", 1},
        {"(main (list 1 2 3))", 3},
        {"(main (list 1 (list 2 3 4) 5))", 4},
        {"(main (+ 1 2 3 4))", 2},
        {"(defun f (x y) (or x y))", 2},
        {"(defun f (x) (f x))", 1},
        {"(defun f () (f))", 0}, /* nothing is ever pushed */
        {"(main (let ((a 1)) (set! a 2)))", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        avm_module *m = compile(cases[i].src);
        REQUIRE(m != NULL);
        if (m->funcs[0].max_stack != cases[i].max_stack)
            fprintf(stderr, "  for %s\n", cases[i].src);
        CHECK_INT(m->funcs[0].max_stack, cases[i].max_stack);
        avm_module_release(m);
    }
}

TEST(tail_calls)
{
    CHECK_STR(code_of("(defun f (n) (f n))", "f"), "LOAD 0; TAILCALL f 1; RET");
    /* Through if, let, do, cond, when. */
    CHECK_STR(code_of("(defun f (n) (let ((m n)) (do 1 (if m (f m) (cond (n (f n)) (else "
                      "(when n (f n))))))))",
                      "f"),
              "LOAD 0; STORE 1; CONST 1; POP; LOAD 1; JMPF @30; LOAD 1; TAILCALL f 1; "
              "JMP @71; LOAD 0; JMPF @50; LOAD 0; TAILCALL f 1; JMP @71; "
              "LOAD 0; JMPF @70; LOAD 0; TAILCALL f 1; JMP @71; NIL; RET");
    /* Not in operand position, not under and/or, not in main or a behaviour. */
    CHECK_STR(code_of("(defun f (n) (+ 1 (f n)))", "f"),
              "CONST 1; LOAD 0; CALL f 1; PRIM + 2; RET");
    CHECK_STR(code_of("(defun f (n) (and n (f n)))", "f"),
              "LOAD 0; DUP; JMPF @17; POP; LOAD 0; CALL f 1; RET");
    CHECK_STR(code_of("(defun f (n) n)\n(main (f 1))", NULL), "CONST 1; CALL f 1; RET");
    CHECK_STR(code_of("(defun f (n) n)\n(behavior b (f 1))", "b"),
              "CONST 1; CALL f 1; RET");
    /* Pure functions tail-call pure functions. */
    CHECK_STR(code_of("(pure g (n) n)\n(pure f (n) (g n))", "f"),
              "LOAD 0; TAILCALL g 1; RET");
    /* Use before definition. */
    CHECK_STR(code_of("(defun a () (b))\n(defun b () 1)", "a"), "TAILCALL b 0; RET");
}

TEST(literals)
{
    avm_module *m =
        compile("(main (list 'sym '(a 1 \"x\" (b) nil #t) \"a\\n\\t\\r\\\\\\\"\\x41\"\n"
                "  #obj\"node1/3\" #ctl\"main\" #mach\"node1\" #tx\"node1/t2\"\n"
                "  -9223372036854775808 9223372036854775807 -0 #f nil '() ''x))");
    REQUIRE(m != NULL);
    avm_buf b;
    avm_buf_init(&b);
    disasm(m, &m->funcs[0], &b);
    CHECK_STR(avm_buf_cstr(&b),
              "CONST \"sym\"; CONST (\"a\" 1 \"x\" (\"b\") nil #t); "
              "CONST \"a\\n\\t\\r\\\\\\\"A\"; CONST #obj\"node1/3\"; CONST #ctl\"main\"; "
              "CONST #mach\"node1\"; CONST #tx\"node1/t2\"; "
              "CONST -9223372036854775808; CONST 9223372036854775807; CONST 0; "
              "CONST #f; NIL; CONST (); CONST (\"quote\" \"x\"); LIST 14; RET");
    avm_buf_free(&b);
    const avm_func *f = &m->funcs[0];
    CHECK_INT(f->consts[3].kind, AVM_OBJID);
    CHECK_INT(f->consts[4].kind, AVM_CTRLID);
    CHECK_INT(f->consts[5].kind, AVM_MACHID);
    CHECK_INT(f->consts[6].kind, AVM_TXID);
    avm_module_release(m);

    /* \x00 gives a NUL byte inside the string. */
    m = compile("(main \"a\\x00b\")");
    REQUIRE(m != NULL);
    CHECK_INT(m->funcs[0].consts[0].u.s->len, 3);
    CHECK(memcmp(m->funcs[0].consts[0].u.s->data, "a\0b", 3) == 0);
    avm_module_release(m);

    /* Symbols are any run of non-delimiters that is not a number. */
    CHECK_STR(
        code_of("(defun f (a->b x<=y -x 1+ - +5) (list a->b x<=y -x 1+ - +5))", "f"),
        "LOAD 0; LOAD 1; LOAD 2; LOAD 3; LOAD 4; LOAD 5; LIST 6; RET");
    /* Comments, and symbols ending at a comment or a quote. */
    CHECK_STR(code_of("(defun f (x) ; a comment\n x;another\n)", "f"), "LOAD 0; RET");
}

TEST(constants_deduplicated)
{
    avm_module *m = compile("(main (list \"a\" \"a\" 1 1 'a '(1 2) '(1 2) #obj\"a\" 2))");
    REQUIRE(m != NULL);
    /* "a" (also 'a), 1, (1 2), #obj"a", 2; ids differ from strings. */
    CHECK_INT(m->funcs[0].nconsts, 5);
    avm_module_release(m);
}

TEST(line_table)
{
    avm_module *m = compile("(main\n"
                            "  (list (+ 1 2)\n"
                            "        (self)))");
    REQUIRE(m != NULL);
    const avm_func *f = &m->funcs[0];
    REQUIRE(f->nlines == 2);
    /* CONST 1; CONST 2; PRIM + 2 (pc 6); AVM self 0 (pc 9) */
    CHECK_INT(f->lines[0].pc, 6);
    CHECK_INT(f->lines[0].line, 2);
    CHECK_INT(f->lines[0].col, 9);
    CHECK_INT(f->lines[1].pc, 9);
    CHECK_INT(f->lines[1].line, 3);
    CHECK_INT(f->lines[1].col, 9);
    avm_module_release(m);

    /* Every fold of a variadic + gets an entry; calls get one too. */
    m = compile("(defun g (x) x)\n(defun f (x)\n  (g (+ x x x)))");
    REQUIRE(m != NULL);
    f = &m->funcs[1];
    REQUIRE(f->nlines == 3);
    CHECK_INT(f->lines[2].line, 3);
    CHECK_INT(f->lines[2].col, 3);
    CHECK(f->code[f->lines[2].pc] == OP_TAILCALL);
    CHECK(f->code[f->lines[0].pc] == OP_PRIM);
    CHECK(f->code[f->lines[1].pc] == OP_PRIM);
    avm_module_release(m);
}

TEST(nesting_limits)
{
    /* 256 nested lists are fine, 257 are not. */
    avm_buf b;
    avm_buf_init(&b);
    avm_buf_puts(&b, "(main ");
    for (int i = 1; i < 256; i++)
        avm_buf_puts(&b, "(list ");
    avm_buf_puts(&b, "1");
    for (int i = 0; i < 256; i++)
        avm_buf_puts(&b, ")");
    avm_module *m = compile(avm_buf_cstr(&b));
    CHECK(m != NULL);
    avm_module_release(m);

    b.len = 0;
    avm_buf_puts(&b, "(main ");
    for (int i = 1; i < 257; i++)
        avm_buf_puts(&b, "(list ");
    int code;
    /* The 257th '(' is at column 6 + 255 * 6 + 1. */
    CHECK_STR(compile_error(avm_buf_cstr(&b), &code),
              "ex.avm:1:1537: nesting deeper than 256 levels");
    CHECK_INT(code, AVM_ECOMPILE);

    /* Quote prefixes count as nesting too. */
    b.len = 0;
    avm_buf_puts(&b, "(main ");
    for (int i = 0; i < 100000; i++)
        avm_buf_puts(&b, "'");
    avm_buf_puts(&b, "x)");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:262: nesting deeper than 256 levels");

    /* A million open parentheses: an error, not a stack overflow. */
    b.len = 0;
    for (int i = 0; i < 1000000; i++)
        avm_buf_puts(&b, "(");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:257: nesting deeper than 256 levels");

    /* Quoted constants nest at most as deep as values may (AVM_MAX_DEPTH). */
    b.len = 0;
    avm_buf_puts(&b, "(main '");
    for (int i = 0; i < AVM_MAX_DEPTH; i++)
        avm_buf_puts(&b, "(");
    for (int i = 0; i < AVM_MAX_DEPTH; i++)
        avm_buf_puts(&b, ")");
    avm_buf_puts(&b, ")");
    m = compile(avm_buf_cstr(&b));
    CHECK(m != NULL);
    avm_module_release(m);
    b.len = 0;
    avm_buf_puts(&b, "(main '");
    for (int i = 0; i <= AVM_MAX_DEPTH; i++)
        avm_buf_puts(&b, "(");
    for (int i = 0; i <= AVM_MAX_DEPTH; i++)
        avm_buf_puts(&b, ")");
    avm_buf_puts(&b, ")");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:136: quoted constant nests deeper than 128 lists");
    avm_buf_free(&b);
}

TEST(too_big)
{
    size_t n = AVM_MAX_SOURCE + 1;
    char *src = malloc(n);
    REQUIRE(src != NULL);
    memset(src, ' ', n);
    avm_module *m = NULL;
    avm_diag d;
    CHECK_INT(avm_compile("big.avm", src, n, &m, &d), AVM_ETOOBIG);
    CHECK(m == NULL);
    CHECK_STR(d.file, "big.avm");
    /* Exactly the limit is fine. */
    CHECK_INT(avm_compile("big.avm", src, n - 1, &m, &d), 0);
    avm_module_release(m);
    free(src);
}

/* Errors: the exact message and position of each class. */

TEST(errors_reader)
{
    struct {
        const char *src, *want;
    } cases[] = {
        {"(main \"abc", "ex.avm:1:7: unterminated string"},
        {"(main \"abc\\", "ex.avm:1:7: unterminated string"},
        {"(main\n  (list 1 2", "ex.avm:2:3: unterminated list"},
        {"(main\n  (list 1 2)", "ex.avm:1:1: unterminated list"},
        {"(main 1))", "ex.avm:1:9: unexpected ')'"},
        {")", "ex.avm:1:1: unexpected ')'"},
        {"(main \"a\\qb\")", "ex.avm:1:9: bad escape '\\q' in string"},
        {"(main \"a\\x4g\")",
         "ex.avm:1:9: bad escape in string: \\x needs two hex digits"},
        {"(main #foo)",
         "ex.avm:1:7: bad '#' literal '#foo' (expected #t, #f, #obj\"..\", #ctl\"..\", "
         "#mach\"..\" or #tx\"..\")"},
        {"(main #obj 1)", "ex.avm:1:7: bad '#' literal '#obj': expected #obj\"...\""},
        {"(main #)", "ex.avm:1:7: bad '#' literal '#' (expected #t, #f, #obj\"..\", "
                     "#ctl\"..\", #mach\"..\" or #tx\"..\")"},
        {"(main\n 9223372036854775808)",
         "ex.avm:2:2: integer literal 9223372036854775808 is out of range"},
        {"(main -9223372036854775809)",
         "ex.avm:1:7: integer literal -9223372036854775809 is out of range"},
        {"(main 1 ')", "ex.avm:1:9: quote (') needs an expression after it"},
        {"(main ')", "ex.avm:1:7: quote (') needs an expression after it"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code;
        CHECK_STR(compile_error(cases[i].src, &code), cases[i].want);
        CHECK_INT(code, AVM_ECOMPILE);
    }
}

TEST(errors_compiler)
{
    struct {
        const char *src, *want;
    } cases[] = {
        /* Names. */
        {"(main\n  (let ((msg 1))\n    (+ mgs 1)))",
         "ex.avm:3:8: unknown variable 'mgs'"},
        {"(main (set! x 1))", "ex.avm:1:13: unknown variable 'x'"},
        {"(main (let ((a 1)) a) a)", "ex.avm:1:23: unknown variable 'a'"},
        {"(main (nope 1))", "ex.avm:1:8: unknown function 'nope'"},
        {"(main else)", "ex.avm:1:7: unknown variable 'else'"},
        /* Arity of primitives, instructions and functions. */
        {"(main (get 1))", "ex.avm:1:7: 'get' takes 2 arguments, got 1"},
        {"(main (not 1 2))", "ex.avm:1:7: 'not' takes 1 argument, got 2"},
        {"(main (+))", "ex.avm:1:7: '+' needs at least 1 argument"},
        {"(main (-))", "ex.avm:1:7: '-' needs at least 1 argument"},
        {"(main (str))", "ex.avm:1:7: 'str' needs at least 1 argument"},
        {"(main (createObj))", "ex.avm:1:7: 'createObj' takes 1 to 2 arguments, got 0"},
        {"(main (self 1))", "ex.avm:1:7: 'self' takes 0 arguments, got 1"},
        {"(main (call 1))", "ex.avm:1:7: 'call' takes 2 arguments, got 1"},
        {"(main (beginTx 1 2))", "ex.avm:1:7: 'beginTx' takes 0 to 1 arguments, got 2"},
        {"(defun f (a b) a)\n(main (f 1))",
         "ex.avm:2:7: function 'f' takes 2 arguments, got 1"},
        {"(defun f () 1)\n(main (f 1))",
         "ex.avm:2:7: function 'f' takes 0 arguments, got 1"},
        {"(main (registerPure \"x\"))",
         "ex.avm:1:7: 'registerPure' takes 2 arguments, got 1"},
        /* Pure functions. */
        {"(pure p (x)\n  (createObj \"a\"))",
         "ex.avm:2:3: pure function 'p' cannot use the AVM instruction 'createObj'"},
        {"(pure p () (input))",
         "ex.avm:1:12: pure function 'p' cannot use the AVM instruction 'input'"},
        {"(pure q (m) m)\n(pure p () (scryMeta q))",
         "ex.avm:2:12: pure function 'p' cannot use the AVM instruction 'scryMeta'"},
        {"(defun g () 1)\n(pure p () (g))",
         "ex.avm:2:12: pure function 'p' cannot call the non-pure function 'g'"},
        /* Definitions. */
        {"(pure a () 1)\n(defun a () 2)",
         "ex.avm:2:8: duplicate definition of 'a' (first defined at 1:1)"},
        {"(behavior a 1)\n(pure a () 2)",
         "ex.avm:2:7: duplicate definition of 'a' (first defined at 1:1)"},
        {"(main 1)\n(main 2)", "ex.avm:2:1: duplicate main (first at 1:1)"},
        {"(main 1)\n(foo 1)",
         "ex.avm:2:2: unknown top-level form 'foo'; expected behavior, pure, defun or "
         "main"},
        {"(main 1)\n42",
         "ex.avm:2:1: expected a top-level form: (behavior ...), (pure ...), (defun ...) "
         "or (main ...)"},
        {"()", "ex.avm:1:1: expected a top-level form: (behavior ...), (pure ...), "
               "(defun ...) or (main ...)"},
        {"(defun list (x) x)", "ex.avm:1:8: 'list' is a reserved name"},
        {"(pure + (x) x)", "ex.avm:1:7: '+' is a reserved name"},
        {"(defun call (x) x)", "ex.avm:1:8: 'call' is a reserved name"},
        {"(defun __x () 1)", "ex.avm:1:8: names starting with '__' are reserved: '__x'"},
        {"(defun f (a a) 1)", "ex.avm:1:13: duplicate parameter 'a'"},
        {"(defun f (a 1) 1)", "ex.avm:1:13: a parameter must be a name"},
        {"(defun f)", "ex.avm:1:1: defun needs a name and parameters: (defun NAME "
                      "(PARAMS...) body...)"},
        {"(defun 1 ())", "ex.avm:1:1: defun needs a name: (defun NAME ...)"},
        {"(behavior)", "ex.avm:1:1: behavior needs a name: (behavior NAME body...)"},
        {"(main (defun f () 1))", "ex.avm:1:7: 'defun' is only allowed at top level"},
        /* Calls. */
        {"(behavior b 1)\n(main (b))",
         "ex.avm:2:7: behaviour 'b' is not a function; use (call obj input)"},
        {"(main 1 ())", "ex.avm:1:9: empty form (); write '() for the empty list"},
        {"(main (1 2))", "ex.avm:1:7: the first element of a form must be a name"},
        {"(main (scryMeta))",
         "ex.avm:1:7: scryMeta takes the name of a predicate function: (scryMeta PRED)"},
        {"(main (scryMeta nope))", "ex.avm:1:17: unknown function 'nope'"},
        {"(pure p (a b) a)\n(main (scryMeta p))",
         "ex.avm:2:17: scryMeta predicate 'p' must take 1 argument, not 2"},
        {"(pure p (a) a)\n(main (scryDeep p))",
         "ex.avm:2:17: scryDeep predicate 'p' must take 2 arguments, not 1"},
        {"(behavior p 1)\n(main (scryMeta p))",
         "ex.avm:2:17: scryMeta predicate 'p' is a behaviour; it must be a pure function "
         "or defun"},
        {"(defun f (x) x)\n(main (registerPure \"f\" f))",
         "ex.avm:2:25: 'f' is not a pure function of this file"},
        {"(main (updatePure \"f\" \"f\"))",
         "ex.avm:1:23: the second argument of updatePure must name a pure function of "
         "this file"},
        /* Special forms. */
        {"(main (if 1))", "ex.avm:1:7: if takes 2 or 3 arguments: (if test then [else])"},
        {"(main (let (x 1) x))", "ex.avm:1:13: a let binding must be (name expr)"},
        {"(main (let x x))",
         "ex.avm:1:7: let needs a list of bindings: (let ((name expr) ...) body...)"},
        {"(main (cond (else 1) (2 3)))",
         "ex.avm:1:13: else must be the last cond clause"},
        {"(main (cond 1))", "ex.avm:1:13: a cond clause must be (test body...)"},
        {"(main (quote))", "ex.avm:1:7: quote takes 1 argument, got 0"},
        {"(main (set! 1 2))",
         "ex.avm:1:7: set! takes a variable and a value: (set! name expr)"},
        {"(main (when))", "ex.avm:1:7: when needs a test: (when test body...)"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code;
        CHECK_STR(compile_error(cases[i].src, &code), cases[i].want);
        CHECK_INT(code, AVM_ECOMPILE);
    }
}

TEST(limits)
{
    avm_buf b;
    avm_buf_init(&b);
    /* 255 parameters are allowed, 256 are not. */
    avm_buf_puts(&b, "(defun f (");
    for (int i = 0; i < 255; i++)
        avm_buf_printf(&b, "p%d ", i);
    avm_buf_puts(&b, ") p254)");
    avm_module *m = compile(avm_buf_cstr(&b));
    REQUIRE(m != NULL);
    CHECK_INT(m->funcs[0].nparams, 255);
    avm_module_release(m);
    b.len = 0;
    avm_buf_puts(&b, "(defun f (");
    for (int i = 0; i < 256; i++)
        avm_buf_printf(&b, "p%d ", i);
    avm_buf_puts(&b, ") 1)");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:10: more than 255 parameters");

    /* str takes at most 255 arguments (its argc is a byte). */
    b.len = 0;
    avm_buf_puts(&b, "(main (str");
    for (int i = 0; i < 256; i++)
        avm_buf_puts(&b, " 1");
    avm_buf_puts(&b, "))");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:7: 'str' takes at most 255 arguments, got 256");

    /* A list wider than the operand stack may be. */
    b.len = 0;
    avm_buf_puts(&b, "(main (list");
    for (int i = 0; i < 70000; i++)
        avm_buf_puts(&b, " 1");
    avm_buf_puts(&b, "))");
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:7: list takes at most 65535 arguments, got 70000");
    b.len = 0;
    avm_buf_puts(&b, "(main (list");
    for (int i = 0; i < 65535; i++)
        avm_buf_puts(&b, " 1");
    avm_buf_puts(&b, "))");
    m = compile(avm_buf_cstr(&b));
    CHECK(m != NULL);
    if (m != NULL)
        CHECK_INT(m->funcs[0].max_stack, 65535);
    avm_module_release(m);
    b.len = 0;
    avm_buf_puts(&b, "(main (list 1 (list");
    for (int i = 0; i < 65535; i++)
        avm_buf_puts(&b, " 1");
    avm_buf_puts(&b, ")))");
    /* Reported at the value that does not fit. */
    CHECK_STR(compile_error(avm_buf_cstr(&b), NULL),
              "ex.avm:1:131089: expression needs more than 65535 operand stack slots");
    avm_buf_free(&b);
}

TEST(diag_format)
{
    avm_diag d = {.file = "f.avm", .line = 0, .col = 0, .msg = "out of memory"};
    char buf[64];
    avm_diag_format(&d, buf, sizeof(buf));
    CHECK_STR(buf, "f.avm: out of memory");
    d.line = 3;
    d.col = 7;
    snprintf(d.msg, sizeof(d.msg), "unknown variable 'mgs'");
    avm_diag_format(&d, buf, sizeof(buf));
    CHECK_STR(buf, "f.avm:3:7: unknown variable 'mgs'");
    /* Truncates, NUL-terminated. */
    avm_diag_format(&d, buf, 8);
    CHECK_STR(buf, "f.avm:3");
}

TEST(reader_positions)
{
    avm_ast_doc *doc;
    avm_read_error err;
    const char *src = "(a\n  \"s\" 'q)\n#t";
    REQUIRE(avm_read(src, strlen(src), &doc, &err) == 0);
    REQUIRE(doc->nforms == 2);
    const avm_ast *l = doc->forms[0];
    CHECK_INT(l->type, AVM_AST_LIST);
    CHECK_INT(l->u.list.n, 3);
    CHECK_INT(l->u.list.items[1]->type, AVM_AST_STR);
    CHECK_INT(l->u.list.items[1]->line, 2);
    CHECK_INT(l->u.list.items[1]->col, 3);
    const avm_ast *q = l->u.list.items[2];
    CHECK_INT(q->type, AVM_AST_LIST);
    CHECK(avm_ast_is_sym(q->u.list.items[0], "quote"));
    CHECK(avm_ast_is_sym(q->u.list.items[1], "q"));
    CHECK_INT(q->u.list.items[1]->col, 8);
    CHECK_INT(doc->forms[1]->type, AVM_AST_BOOL);
    CHECK_INT(doc->forms[1]->line, 3);
    avm_ast_doc_free(doc);
}

/* Robustness: nothing crashes or leaks (the sanitizer build checks the latter). */

static void compile_quietly(const char *src, size_t len)
{
    avm_module *m = NULL;
    avm_diag d;
    int rv = avm_compile("p.avm", src, len, &m, &d);
    if (rv == 0)
        avm_module_release(m);
    else if (m != NULL)
        abort();
}

static const char *const robust_sources[] = {
    example_src,
    "(pure big? (meta) (> (length meta) 2))\n"
    "(defun named? (beh meta) (= beh \"ping\"))\n"
    "(defun f (x) (cond ((> x 1) (scryMeta big?)) ((< x 0)) (else (scryDeep named?))))\n"
    "(main (let ((a 1) (b '(1 \"x\" #obj\"o/1\"))) (set! a (str a \"\\x41\"))\n"
    "  (when a (unless b (or a b (and a b)))) (registerPure \"big\" big?) (f a)))\n",
};

TEST(prefixes_and_mutations)
{
    for (size_t s = 0; s < sizeof(robust_sources) / sizeof(robust_sources[0]); s++) {
        const char *src = robust_sources[s];
        size_t n = strlen(src);
        /* Every prefix, as an exact-length buffer so that the sanitizer sees reads
         * past the end. */
        for (size_t i = 0; i <= n; i++) {
            char *p = malloc(i ? i : 1);
            REQUIRE(p != NULL);
            memcpy(p, src, i);
            compile_quietly(p, i);
            free(p);
        }
        /* Deterministic single-byte mutations and deletions. */
        uint32_t seed = 12345u + (uint32_t)s;
        static const char alphabet[] = "()'\"\\;#x1- \n";
        char *p = malloc(n + 1);
        REQUIRE(p != NULL);
        for (int k = 0; k < 3000; k++) {
            memcpy(p, src, n);
            size_t len = n;
            for (int j = 0; j < 3; j++) {
                seed = seed * 1103515245u + 12345u;
                size_t at = (seed >> 8) % len;
                seed = seed * 1103515245u + 12345u;
                if ((seed >> 16) & 1) {
                    p[at] = alphabet[(seed >> 8) % (sizeof(alphabet) - 1)];
                } else if (len > 1) {
                    memmove(p + at, p + at + 1, len - at - 1);
                    len--;
                }
            }
            compile_quietly(p, len);
        }
        free(p);
    }
}

TEST_MAIN(T(example_module), T(example_bytecode), T(deterministic_and_decodable),
          T(no_main), T(behaviour_spellings), T(unsafe_flag),
          T(register_pure_passes_index), T(scry_helpers), T(arithmetic), T(conditionals),
          T(sequencing_and_locals), T(scoping), T(large_program), T(max_stack_exact),
          T(tail_calls), T(literals), T(constants_deduplicated), T(line_table),
          T(nesting_limits), T(too_big), T(errors_reader), T(errors_compiler), T(limits),
          T(diag_format), T(reader_positions), T(prefixes_and_mutations))
