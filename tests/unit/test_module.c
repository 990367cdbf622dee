/* Modules: a hand-built module round-trips through the canonical encoding with a
 * stable hash; the verifier rejects each kind of broken code with a message naming
 * the cause; extraction and the unsafe query follow calls; decoding fails cleanly on
 * every truncation and on corrupted bytes. */
#include <stdint.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "module.h"
#include "sha256.h"
#include "test.h"

/* Bytecode assembly. Operands are little-endian. */
#define LO(x) (uint8_t)((unsigned)(x)&0xff)
#define HI(x) (uint8_t)(((unsigned)(x) >> 8) & 0xff)
#define I32(x)                                                                           \
    (uint8_t)((uint32_t)(x)), (uint8_t)((uint32_t)(x) >> 8),                             \
        (uint8_t)((uint32_t)(x) >> 16), (uint8_t)((uint32_t)(x) >> 24)
#define A_CONST(k) OP_CONST, LO(k), HI(k)
#define A_NIL OP_NIL
#define A_LOAD(s) OP_LOAD, LO(s), HI(s)
#define A_STORE(s) OP_STORE, LO(s), HI(s)
#define A_POP OP_POP
#define A_JMP(off) OP_JMP, I32(off)
#define A_JMPF(off) OP_JMPF, I32(off)
#define A_CALL(fn, argc) OP_CALL, LO(fn), HI(fn), (argc)
#define A_TAILCALL(fn, argc) OP_TAILCALL, LO(fn), HI(fn), (argc)
#define A_RET OP_RET
#define A_PRIM(p, argc) OP_PRIM, (p), (argc)
#define A_AVM(i, argc) OP_AVM, (i), (argc)
#define A_LIST(n) OP_LIST, LO(n), HI(n)
#define A_DUP OP_DUP

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

/* Fills the zeroed f; the module takes ownership of everything. */
static void set_func(avm_func *f, const char *name, avm_fn_kind kind, uint8_t nparams,
                     uint16_t nlocals, uint16_t max_stack, const uint8_t *code,
                     size_t code_len)
{
    f->name = str(name);
    f->kind = (uint8_t)kind;
    f->nparams = nparams;
    f->nlocals = nlocals;
    f->max_stack = max_stack;
    if (code_len > 0) {
        f->code = malloc(code_len);
        if (f->code == NULL)
            abort();
        memcpy(f->code, code, code_len);
    }
    f->code_len = (uint32_t)code_len;
}

static void set_consts(avm_func *f, size_t n, const avm_val *vals)
{
    f->consts = malloc(n * sizeof(avm_val));
    if (f->consts == NULL)
        abort();
    memcpy(f->consts, vals, n * sizeof(avm_val));
    f->nconsts = (uint32_t)n;
}

static void set_lines(avm_func *f, size_t n, const avm_line *lines)
{
    f->lines = malloc(n * sizeof(avm_line));
    if (f->lines == NULL)
        abort();
    memcpy(f->lines, lines, n * sizeof(avm_line));
    f->nlines = (uint32_t)n;
}

enum { F_MAIN, F_DOUBLE, F_QUAD, F_PING, F_RISKY, F_CALLS_RISKY, NFUNCS };

/* main computes (quad (+ 1 2)); quad and double are pure; ping is a behaviour with
 * a branch; risky uses an unsafe instruction and calls_risky reaches it by a tail
 * call. */
static avm_module *sample(void)
{
    avm_module *m = avm_module_new(NFUNCS);
    if (m == NULL)
        abort();
    m->source = str("sample.avm");
    m->main_fn = F_MAIN;

    static const uint8_t main_code[] = {A_CONST(0), A_CONST(1), A_PRIM(AVM_PRIM_ADD, 2),
                                        A_CALL(F_QUAD, 1), A_RET};
    set_func(&m->funcs[F_MAIN], "main", AVM_FN_MAIN, 0, 0, 2, main_code,
             sizeof(main_code));
    avm_val main_consts[] = {avm_int(1), avm_int(2)};
    set_consts(&m->funcs[F_MAIN], 2, main_consts);
    avm_line main_lines[] = {{0, 1, 1}, {6, 1, 2}, {9, 1, 8}};
    set_lines(&m->funcs[F_MAIN], 3, main_lines);

    static const uint8_t double_code[] = {A_LOAD(0), A_LOAD(0), A_PRIM(AVM_PRIM_ADD, 2),
                                          A_RET};
    set_func(&m->funcs[F_DOUBLE], "double", AVM_FN_PURE, 1, 1, 2, double_code,
             sizeof(double_code));

    static const uint8_t quad_code[] = {A_LOAD(0), A_CALL(F_DOUBLE, 1),
                                        A_TAILCALL(F_DOUBLE, 1)};
    set_func(&m->funcs[F_QUAD], "quad", AVM_FN_PURE, 1, 1, 1, quad_code,
             sizeof(quad_code));

    static const uint8_t ping_code[] = {
        A_AVM(AVM_I_INPUT, 0), /* pc 0 */
        A_JMPF(8),             /* pc 3: to pc 16 */
        A_CONST(0),            /* pc 8 */
        A_JMP(3),              /* pc 11: to pc 19 */
        A_CONST(1),            /* pc 16 */
        A_LIST(1),             /* pc 19 */
        A_RET,                 /* pc 22 */
    };
    set_func(&m->funcs[F_PING], "ping", AVM_FN_BEHAVIOR, 0, 0, 1, ping_code,
             sizeof(ping_code));
    avm_val ping_consts[] = {str("pong"), str("other")};
    set_consts(&m->funcs[F_PING], 2, ping_consts);
    avm_line ping_lines[] = {{0, 3, 1}, {8, 4, 3}, {16, 5, 3}};
    set_lines(&m->funcs[F_PING], 3, ping_lines);

    static const uint8_t risky_code[] = {A_LOAD(0), A_AVM(AVM_I_REFLECT, 1), A_RET};
    set_func(&m->funcs[F_RISKY], "risky", AVM_FN_FUNC, 1, 1, 1, risky_code,
             sizeof(risky_code));
    m->funcs[F_RISKY].uses_unsafe = true;

    static const uint8_t calls_risky_code[] = {A_LOAD(0), A_STORE(1), A_LOAD(1),
                                               A_TAILCALL(F_RISKY, 1)};
    set_func(&m->funcs[F_CALLS_RISKY], "calls_risky", AVM_FN_FUNC, 1, 2, 1,
             calls_risky_code, sizeof(calls_risky_code));
    return m;
}

static bool encode(const avm_module *m, avm_buf *b)
{
    avm_buf_init(b);
    return avm_module_encode(m, b) == 0;
}

TEST(sample_verifies)
{
    avm_module *m = sample();
    char msg[256] = "junk";
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), 0);
    CHECK_STR(msg, "");
    avm_module_release(m);
}

TEST(retain_release)
{
    avm_module *m = sample();
    avm_module_retain(m);
    CHECK_INT(m->rc, 2);
    avm_module_release(m);
    CHECK_INT(m->rc, 1);
    avm_module_release(m);
    avm_module *empty = avm_module_new(0);
    REQUIRE(empty != NULL);
    CHECK_INT(empty->main_fn, -1);
    avm_module_release(empty);
}

TEST(encode_decode_round_trip)
{
    avm_module *m = sample();
    avm_buf a, b;
    REQUIRE(encode(m, &a));
    avm_module *d = NULL;
    char msg[256];
    int rv = avm_module_decode((const uint8_t *)a.data, a.len, &d, msg, sizeof(msg));
    if (rv != 0)
        fprintf(stderr, "  %s\n", msg);
    REQUIRE(rv == 0);
    CHECK_INT(d->rc, 1);
    CHECK_INT(d->nfuncs, NFUNCS);
    CHECK_INT(d->main_fn, F_MAIN);
    CHECK(avm_val_eq(d->source, m->source));
    for (uint32_t i = 0; i < NFUNCS; i++) {
        const avm_func *x = &m->funcs[i], *y = &d->funcs[i];
        CHECK(avm_val_eq(x->name, y->name));
        CHECK(x->kind == y->kind && x->nparams == y->nparams &&
              x->nlocals == y->nlocals && x->max_stack == y->max_stack &&
              x->uses_unsafe == y->uses_unsafe);
        CHECK(x->code_len == y->code_len && memcmp(x->code, y->code, x->code_len) == 0);
        CHECK_INT(y->nconsts, x->nconsts);
        for (uint32_t k = 0; k < x->nconsts && k < y->nconsts; k++)
            CHECK(avm_val_eq(x->consts[k], y->consts[k]));
        CHECK_INT(y->nlines, x->nlines);
        if (x->nlines == y->nlines && x->nlines > 0)
            CHECK(memcmp(x->lines, y->lines, x->nlines * sizeof(avm_line)) == 0);
    }
    REQUIRE(encode(d, &b));
    CHECK(a.len == b.len && memcmp(a.data, b.data, a.len) == 0);

    /* The decoded module carries the hash of its canonical encoding. */
    uint8_t want[32];
    avm_sha256(a.data, a.len, want);
    CHECK(memcmp(d->hash, want, 32) == 0);

    avm_buf_free(&a);
    avm_buf_free(&b);
    avm_module_release(d);
    avm_module_release(m);
}

TEST(hash_stable_and_content_sensitive)
{
    avm_module *m1 = sample(), *m2 = sample();
    REQUIRE(avm_module_hash(m1) == 0);
    REQUIRE(avm_module_hash(m2) == 0);
    CHECK(memcmp(m1->hash, m2->hash, 32) == 0);
    uint8_t first[32];
    memcpy(first, m1->hash, 32);
    REQUIRE(avm_module_hash(m1) == 0);
    CHECK(memcmp(m1->hash, first, 32) == 0);

    /* Change one constant: the hash changes. */
    avm_val_release(m2->funcs[F_MAIN].consts[1]);
    m2->funcs[F_MAIN].consts[1] = avm_int(3);
    REQUIRE(avm_module_hash(m2) == 0);
    CHECK(memcmp(m1->hash, m2->hash, 32) != 0);
    /* And one line-table column. */
    avm_module *m3 = sample();
    m3->funcs[F_PING].lines[2].col = 4;
    REQUIRE(avm_module_hash(m3) == 0);
    CHECK(memcmp(m1->hash, m3->hash, 32) != 0);
    avm_module_release(m1);
    avm_module_release(m2);
    avm_module_release(m3);
}

TEST(find)
{
    avm_module *m = sample();
    CHECK_INT(avm_module_find(m, "ping", -1), F_PING);
    CHECK_INT(avm_module_find(m, "ping", AVM_FN_BEHAVIOR), F_PING);
    CHECK_INT(avm_module_find(m, "ping", AVM_FN_PURE), -1);
    CHECK_INT(avm_module_find(m, "double", AVM_FN_PURE), F_DOUBLE);
    CHECK_INT(avm_module_find(m, "doubl", -1), -1);
    CHECK_INT(avm_module_find(m, "", -1), -1);
    avm_module_release(m);
}

TEST(fn_unsafe_is_transitive)
{
    avm_module *m = sample();
    CHECK(!avm_module_fn_unsafe(m, F_MAIN));
    CHECK(!avm_module_fn_unsafe(m, F_QUAD));
    CHECK(!avm_module_fn_unsafe(m, F_PING));
    CHECK(avm_module_fn_unsafe(m, F_RISKY));
    CHECK(avm_module_fn_unsafe(m, F_CALLS_RISKY));
    avm_module_release(m);
}

TEST(extract_follows_calls)
{
    avm_module *m = sample();
    avm_module *x = NULL;
    REQUIRE(avm_module_extract(m, F_QUAD, &x) == 0);
    CHECK_INT(x->rc, 1);
    CHECK_INT(x->main_fn, -1);
    REQUIRE(x->nfuncs == 2);
    CHECK_STR(x->funcs[0].name.u.s->data, "quad");
    CHECK_STR(x->funcs[1].name.u.s->data, "double");
    /* quad's two calls now name index 1. */
    const uint8_t want[] = {A_LOAD(0), A_CALL(1, 1), A_TAILCALL(1, 1)};
    CHECK(x->funcs[0].code_len == sizeof(want) &&
          memcmp(x->funcs[0].code, want, sizeof(want)) == 0);
    char msg[256];
    CHECK_INT(avm_module_verify(x, msg, sizeof(msg)), 0);
    uint8_t h[32];
    memcpy(h, x->hash, 32);
    REQUIRE(avm_module_hash(x) == 0);
    CHECK(memcmp(h, x->hash, 32) == 0);
    /* The original is unchanged. */
    CHECK(m->funcs[F_QUAD].code[4] == F_DOUBLE);

    /* The extract is self-contained: it survives the original. */
    avm_module_release(m);
    avm_buf b;
    REQUIRE(encode(x, &b));
    avm_module *d = NULL;
    CHECK_INT(avm_module_decode((const uint8_t *)b.data, b.len, &d, msg, sizeof(msg)), 0);
    if (d != NULL)
        CHECK(memcmp(d->hash, x->hash, 32) == 0);
    avm_module_release(d);
    avm_buf_free(&b);
    avm_module_release(x);

    m = sample();
    REQUIRE(avm_module_extract(m, F_DOUBLE, &x) == 0);
    CHECK_INT(x->nfuncs, 1);
    avm_module_release(x);
    REQUIRE(avm_module_extract(m, F_CALLS_RISKY, &x) == 0);
    CHECK_INT(x->nfuncs, 2);
    CHECK(avm_module_fn_unsafe(x, 0));
    CHECK(x->funcs[0].code[x->funcs[0].code_len - 3] == 1);
    avm_module_release(x);
    REQUIRE(avm_module_extract(m, F_MAIN, &x) == 0);
    CHECK_INT(x->nfuncs, 3);
    CHECK_INT(x->main_fn, -1);
    CHECK_INT(avm_module_verify(x, msg, sizeof(msg)), 0);
    avm_module_release(x);
    CHECK_INT(avm_module_extract(m, NFUNCS, &x), AVM_EINVAL);
    avm_module_release(m);
}

/* Verification of broken code. The function under test is index 0, "f"; the module
 * also holds 1 "g" (pure, 1 parameter), 2 "b" (a behaviour) and 3 "h" (a helper,
 * no parameters), as call targets. */
typedef struct broken {
    const char *what;
    avm_fn_kind kind;
    uint8_t nparams;
    uint16_t nlocals, max_stack;
    bool uses_unsafe;
    uint8_t code[32];
    size_t len;
    const char *expect; /* substring of the message */
} broken;

static avm_module *module_with(const broken *c)
{
    avm_module *m = avm_module_new(4);
    if (m == NULL)
        abort();
    m->source = str("broken.avm");
    set_func(&m->funcs[0], "f", c->kind, c->nparams, c->nlocals, c->max_stack, c->code,
             c->len);
    m->funcs[0].uses_unsafe = c->uses_unsafe;
    avm_val consts[] = {avm_int(10), avm_int(20)};
    set_consts(&m->funcs[0], 2, consts);
    static const uint8_t g[] = {A_LOAD(0), A_RET};
    set_func(&m->funcs[1], "g", AVM_FN_PURE, 1, 1, 1, g, sizeof(g));
    static const uint8_t b[] = {A_AVM(AVM_I_INPUT, 0), A_RET};
    set_func(&m->funcs[2], "b", AVM_FN_BEHAVIOR, 0, 0, 1, b, sizeof(b));
    static const uint8_t h[] = {A_NIL, A_RET};
    set_func(&m->funcs[3], "h", AVM_FN_FUNC, 0, 0, 1, h, sizeof(h));
    return m;
}

#define CODE(...) {__VA_ARGS__}, sizeof((uint8_t[]){__VA_ARGS__})

static const broken broken_cases[] = {
    {"bad opcode", AVM_FN_FUNC, 0, 0, 4, false, CODE(0x3f), "pc 0: invalid opcode 63"},
    {"opcode zero", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, 0, A_RET),
     "pc 1: invalid opcode 0"},
    {"operands cut off", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, OP_CONST, 0),
     "pc 1: OP_CONST needs 2 operand bytes, only 1 remain"},
    {"jump past the end", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_JMP(100), A_NIL, A_RET),
     "pc 0: jump target 105 outside code (length 7)"},
    {"jump before the start", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_JMPF(-7), A_NIL, A_RET), "pc 1: jump target -1 outside code"},
    {"jump to the end", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_JMP(1), A_RET),
     "jump target 6 outside code (length 6)"},
    {"jump into an instruction", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_CONST(0), A_JMP(-7), A_RET), "pc 3: jump target 1 is inside an instruction"},
    {"pop from empty stack", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_POP, A_NIL, A_RET),
     "pc 0: stack underflow: OP_POP needs 1 values, the stack holds 0"},
    {"ret with empty stack", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_RET), "stack underflow"},
    {"dup on empty stack", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_DUP, A_RET),
     "stack underflow"},
    {"prim short of arguments", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_PRIM(AVM_PRIM_ADD, 2), A_RET), "pc 1: stack underflow"},
    {"list short of values", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, A_LIST(2), A_RET),
     "stack underflow: OP_LIST needs 2 values"},
    {"underflow on one branch only", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_NIL, A_JMPF(2), A_POP, A_POP, A_POP, A_NIL, A_RET), "stack underflow"},
    {"inconsistent heights at a join", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_JMPF(1), A_NIL, A_NIL, A_RET),
     "pc 7: stack height 1 when reached from pc 6, but 0 on another path"},
    {"loop that grows the stack", AVM_FN_FUNC, 0, 0, 8, false, CODE(A_NIL, A_JMP(-6)),
     "pc 0: stack height 1 when reached from pc 1, but 0"},
    {"above max_stack", AVM_FN_FUNC, 0, 0, 1, false, CODE(A_NIL, A_NIL, A_POP, A_RET),
     "pc 1: stack height 2 exceeds max_stack 1"},
    {"load slot out of range", AVM_FN_FUNC, 1, 1, 4, false, CODE(A_LOAD(5), A_RET),
     "pc 0: OP_LOAD slot 5 out of range (nlocals 1)"},
    {"store slot out of range", AVM_FN_FUNC, 0, 2, 4, false,
     CODE(A_NIL, A_STORE(2), A_NIL, A_RET), "OP_STORE slot 2 out of range (nlocals 2)"},
    {"constant out of range", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_CONST(2), A_RET),
     "pc 0: constant 2 out of range (2 constants)"},
    {"call to a missing function", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_CALL(9, 0), A_RET),
     "OP_CALL to function 9, but the module has 4 functions"},
    {"call argc mismatch", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_NIL, A_CALL(1, 2), A_RET),
     "OP_CALL 'g' with 2 arguments, but it takes 1"},
    {"tailcall argc mismatch", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_TAILCALL(1, 0)),
     "OP_TAILCALL 'g' with 0 arguments, but it takes 1"},
    {"tailcall to a behaviour", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_TAILCALL(2, 0)),
     "OP_TAILCALL to behaviour 'b'"},
    {"prim argc mismatch", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_PRIM(AVM_PRIM_ADD, 1), A_RET),
     "primitive '+' with 1 arguments, it takes 2"},
    {"variadic prim with no arguments", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_PRIM(AVM_PRIM_STR, 0), A_RET),
     "primitive 'str' with 0 arguments, it takes at least 1"},
    {"unknown prim", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, A_PRIM(200, 1), A_RET),
     "invalid primitive 200"},
    {"prim zero", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, A_PRIM(0, 1), A_RET),
     "invalid primitive 0"},
    {"unknown AVM instruction", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_AVM(250, 0), A_RET),
     "invalid AVM instruction 250"},
    {"AVM instruction zero", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_AVM(0, 0), A_RET),
     "invalid AVM instruction 0"},
    {"AVM instruction argc", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_NIL, A_NIL, A_AVM(AVM_I_CREATE_OBJ, 3), A_RET),
     "AVM instruction 'createObj' with 3 arguments, it takes 1 to 2"},
    {"pure function using OP_AVM", AVM_FN_PURE, 0, 0, 4, false,
     CODE(A_AVM(AVM_I_SELF, 0), A_RET),
     "pc 0: AVM instruction 'self' in a pure function"},
    {"pure function calling a helper", AVM_FN_PURE, 0, 0, 4, false,
     CODE(A_CALL(3, 0), A_RET), "pure function calls 'h', which is not pure"},
    {"missing RET at end", AVM_FN_FUNC, 0, 0, 4, false, CODE(A_NIL, A_POP, A_NIL),
     "pc 2: execution falls off the end of the code (missing OP_RET)"},
    {"branch falls off the end", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_NIL, A_JMPF(1), A_RET, A_NIL), "pc 7: execution falls off the end"},
    {"empty code", AVM_FN_FUNC, 0, 0, 4, false, {0}, 0, "empty code"},
    {"unsafe instruction not flagged", AVM_FN_FUNC, 0, 0, 4, false,
     CODE(A_AVM(AVM_I_SCRY_META, 0), A_RET),
     "uses_unsafe is clear, but the code contains"},
    {"flagged without unsafe instruction", AVM_FN_FUNC, 0, 0, 4, true, CODE(A_NIL, A_RET),
     "uses_unsafe is set, but the code contains no"},
    {"invalid kind", (avm_fn_kind)7, 0, 0, 4, false, CODE(A_NIL, A_RET),
     "function 'f': invalid function kind 7"},
    {"main with parameters", AVM_FN_MAIN, 1, 1, 4, false, CODE(A_NIL, A_RET),
     "a main function takes no parameters"},
    {"behaviour with parameters", AVM_FN_BEHAVIOR, 2, 2, 4, false, CODE(A_NIL, A_RET),
     "a behavior function takes no parameters, this one has 2"},
    {"fewer locals than parameters", AVM_FN_FUNC, 2, 1, 4, false, CODE(A_NIL, A_RET),
     "nlocals 1 is less than nparams 2"},
};

TEST(verify_rejects_broken_code)
{
    for (size_t i = 0; i < sizeof(broken_cases) / sizeof(broken_cases[0]); i++) {
        const broken *c = &broken_cases[i];
        avm_module *m = module_with(c);
        char msg[256] = "";
        int rv = avm_module_verify(m, msg, sizeof(msg));
        if (rv != AVM_EVERIFY || strstr(msg, c->expect) == NULL) {
            fprintf(stderr, "  case '%s': rv %d, message \"%s\", expected \"%s\"\n",
                    c->what, rv, msg, c->expect);
            *test_failed_ = 1;
        }
        avm_module_release(m);
    }
}

TEST(verify_accepts_edge_cases)
{
    static const broken ok[] = {
        {"variadic prim", AVM_FN_FUNC, 0, 0, 3, false,
         CODE(A_NIL, A_NIL, A_NIL, A_PRIM(AVM_PRIM_STR, 3), A_RET), ""},
        {"infinite loop at constant height", AVM_FN_FUNC, 0, 0, 1, false,
         CODE(A_NIL, A_POP, A_JMP(-7)), ""},
        {"unreachable tail without RET", AVM_FN_FUNC, 0, 0, 1, false,
         CODE(A_NIL, A_RET, A_NIL), ""},
        {"extra values left at RET", AVM_FN_FUNC, 0, 0, 3, false,
         CODE(A_NIL, A_DUP, A_DUP, A_RET), ""},
        {"tailcall with arguments", AVM_FN_FUNC, 0, 0, 1, false,
         CODE(A_NIL, A_TAILCALL(1, 1)), ""},
        {"pure calling pure", AVM_FN_PURE, 1, 1, 1, false,
         CODE(A_LOAD(0), A_TAILCALL(1, 1)), ""},
        {"unsafe instruction flagged", AVM_FN_BEHAVIOR, 0, 0, 1, true,
         CODE(A_AVM(AVM_I_SCRY_DEEP, 0), A_RET), ""},
        {"if/else joins at equal heights", AVM_FN_MAIN, 0, 0, 1, false,
         CODE(A_NIL, A_JMPF(8), A_CONST(0), A_JMP(3), A_CONST(1), A_RET), ""},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        avm_module *m = module_with(&ok[i]);
        char msg[256] = "";
        int rv = avm_module_verify(m, msg, sizeof(msg));
        if (rv != 0) {
            fprintf(stderr, "  case '%s': rv %d, message \"%s\"\n", ok[i].what, rv, msg);
            *test_failed_ = 1;
        }
        avm_module_release(m);
    }
}

TEST(verify_module_level)
{
    avm_module *m = sample();
    char msg[256];
    m->main_fn = F_PING;
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), AVM_EVERIFY);
    CHECK(strstr(msg, "main_fn 3 ('ping') is not a main function") != NULL);
    m->main_fn = NFUNCS;
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), AVM_EVERIFY);
    CHECK(strstr(msg, "main_fn 6 out of range") != NULL);
    m->main_fn = -1;
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), 0);

    /* Unsorted line table; a name that is not a string. */
    avm_line tmp = m->funcs[F_PING].lines[0];
    m->funcs[F_PING].lines[0] = m->funcs[F_PING].lines[1];
    m->funcs[F_PING].lines[1] = tmp;
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), AVM_EVERIFY);
    CHECK(strstr(msg, "function 'ping': line table not sorted by pc") != NULL);
    m->funcs[F_PING].lines[1] = m->funcs[F_PING].lines[0];
    m->funcs[F_PING].lines[0] = tmp;
    avm_val_release(m->funcs[F_QUAD].name);
    m->funcs[F_QUAD].name = avm_int(4);
    CHECK_INT(avm_module_verify(m, msg, sizeof(msg)), AVM_EVERIFY);
    CHECK_STR(msg, "function #2: name is not a string (kind int)");

    /* A tiny message buffer is filled without overflow; NULL is allowed. */
    char tiny[8];
    CHECK_INT(avm_module_verify(m, tiny, sizeof(tiny)), AVM_EVERIFY);
    CHECK_INT(strlen(tiny), 7);
    CHECK_INT(avm_module_verify(m, NULL, 0), AVM_EVERIFY);
    avm_module_release(m);
}

TEST(decode_every_truncation_fails)
{
    avm_module *m = sample();
    avm_buf b;
    REQUIRE(encode(m, &b));
    for (size_t n = 0; n < b.len; n++) {
        avm_module *d = NULL;
        char msg[256] = "";
        int rv = avm_module_decode((const uint8_t *)b.data, n, &d, msg, sizeof(msg));
        CHECK(rv != 0);
        CHECK(msg[0] != '\0');
        if (rv == 0)
            avm_module_release(d);
    }
    avm_buf_free(&b);
    avm_module_release(m);
}

/* Encodes m, lets edit change the bytes, and returns the decode result. */
static int decode_edited(avm_module *m, void (*edit)(avm_buf *), char *msg, size_t len)
{
    avm_buf b;
    avm_buf_init(&b);
    if (avm_module_encode(m, &b) != 0)
        abort();
    if (edit != NULL)
        edit(&b);
    avm_module *d = NULL;
    int rv = avm_module_decode((const uint8_t *)b.data, b.len, &d, msg, len);
    if (rv == 0)
        avm_module_release(d);
    avm_buf_free(&b);
    return rv;
}

static void edit_magic(avm_buf *b)
{
    b->data[2] = 'X'; /* 95 a6 'A' 'V' ... */
}

static void edit_version(avm_buf *b)
{
    b->data[8] = 2; /* after 95 a6 "AVMMOD" */
}

static void edit_append(avm_buf *b)
{
    avm_mp_put_nil(b);
}

TEST(decode_rejects_bad_modules)
{
    avm_module *m = sample();
    char msg[256];
    CHECK_INT(decode_edited(m, edit_magic, msg, sizeof(msg)), AVM_EMALFORMED);
    CHECK(strstr(msg, "not a module") != NULL);
    CHECK_INT(decode_edited(m, edit_version, msg, sizeof(msg)), AVM_EVERSION);
    CHECK_STR(msg, "module: format version 2, this node reads 1");
    CHECK_INT(decode_edited(m, edit_append, msg, sizeof(msg)), AVM_EMALFORMED);
    CHECK_STR(msg, "module: 1 bytes after the end of the module");
    CHECK_INT(decode_edited(m, NULL, msg, sizeof(msg)), 0);

    /* Code that does not verify is refused at decode with the verifier's message. */
    m->funcs[F_PING].code[4] = 100; /* JMPF offset */
    CHECK_INT(decode_edited(m, NULL, msg, sizeof(msg)), AVM_EVERIFY);
    CHECK_STR(msg, "function 'ping' pc 3: jump target 108 outside code (length 23)");
    m->funcs[F_PING].code[4] = 8;

    /* The source must be a string. */
    avm_val_release(m->source);
    m->source = avm_nil();
    CHECK_INT(decode_edited(m, NULL, msg, sizeof(msg)), AVM_EMALFORMED);
    CHECK(strstr(msg, "source") != NULL);
    avm_module_release(m);

    /* Not an array at all; a hostile function count. */
    const uint8_t junk[] = {0xc0};
    avm_module *d = NULL;
    CHECK_INT(avm_module_decode(junk, sizeof(junk), &d, msg, sizeof(msg)),
              AVM_EMALFORMED);
    const uint8_t hostile[] = {0x95, 0xa6, 'A',  'V',  'M',  'M',  'O',  'D', 0x01,
                               0xa0, 0xff, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x99};
    CHECK_INT(avm_module_decode(hostile, sizeof(hostile), &d, msg, sizeof(msg)),
              AVM_ETRUNCATED);
    CHECK(strstr(msg, "function list") != NULL);
}

TEST(decode_survives_corruption)
{
    /* Every byte of the encoding replaced by a few values: decode fails cleanly or
     * yields a module that verifies and re-encodes. */
    static const uint8_t subst[] = {0x00, 0x01, 0x7f, 0x80, 0xc0, 0xc1, 0xcc, 0xdd, 0xff};
    avm_module *m = sample();
    avm_buf b;
    REQUIRE(encode(m, &b));
    uint8_t *copy = malloc(b.len);
    REQUIRE(copy != NULL);
    int accepted = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (size_t k = 0; k < sizeof(subst); k++) {
            memcpy(copy, b.data, b.len);
            copy[i] = subst[k];
            avm_module *d = NULL;
            char msg[256];
            if (avm_module_decode(copy, b.len, &d, msg, sizeof(msg)) == 0) {
                accepted++;
                CHECK_INT(avm_module_verify(d, msg, sizeof(msg)), 0);
                avm_buf again;
                CHECK(encode(d, &again));
                avm_buf_free(&again);
                avm_module_release(d);
            } else {
                CHECK(msg[0] != '\0');
            }
        }
    }
    CHECK(accepted > 0); /* e.g. changed constants and line numbers */
    free(copy);
    avm_buf_free(&b);
    avm_module_release(m);
}

TEST_MAIN(T(sample_verifies), T(retain_release), T(encode_decode_round_trip),
          T(hash_stable_and_content_sensitive), T(find), T(fn_unsafe_is_transitive),
          T(extract_follows_calls), T(verify_rejects_broken_code),
          T(verify_accepts_edge_cases), T(verify_module_level),
          T(decode_every_truncation_fails), T(decode_rejects_bad_modules),
          T(decode_survives_corruption))
