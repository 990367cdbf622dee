/* Fuzz target: arbitrary bytes as a value, through the low-level reader, and as a
 * module. Properties checked (abort() on violation):
 *   - a decoded value re-encodes canonically: decoding the encoding gives an equal
 *     value whose encoding is the same bytes;
 *   - a decoded module verifies, re-encodes to bytes that decode to the same hash,
 *     and every extract of one of its functions verifies;
 *   - a refused module comes with a message.
 * Crashes, leaks and sanitizer reports are findings too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "fuzz.h"
#include "module.h"

static void check_value(const uint8_t *data, size_t size)
{
    avm_val v, w;
    size_t used;
    if (avm_val_decode(data, size, 1u << 20, &v, &used) != 0)
        return;
    if (used == 0 || used > size)
        abort();

    avm_buf a, b, text;
    avm_buf_init(&a);
    avm_buf_init(&b);
    avm_buf_init(&text);
    if (avm_val_encode(&a, v) != 0)
        abort();
    if (avm_val_decode_all((const uint8_t *)a.data, a.len, &w) != 0)
        abort();
    if (!avm_val_eq(v, w) || avm_val_cmp(v, w) != 0 || avm_val_hash(v) != avm_val_hash(w))
        abort();
    if (avm_val_encode(&b, w) != 0 || a.len != b.len ||
        memcmp(a.data, b.data, a.len) != 0)
        abort();
    /* Every non-canonical form is longer than or as long as the canonical one. */
    if (a.len > used)
        abort();
    avm_val_print(&text, v);
    avm_val_json(&text, v);
    avm_val_release(w);
    avm_val_release(v);
    avm_buf_free(&a);
    avm_buf_free(&b);
    avm_buf_free(&text);
}

/* Walks the input with every low-level getter, skipping a byte when none applies. */
static void check_reader(const uint8_t *data, size_t size)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, data, size, 1u << 16);
    while (r.p < r.end) {
        const uint8_t *before = r.p;
        uint64_t u;
        int64_t i;
        bool bv;
        const char *s;
        const uint8_t *p;
        uint32_t n;
        avm_val v;
        if (avm_mp_peek_nil(&r) && avm_mp_get_nil(&r) == 0)
            continue;
        r.p = before;
        if (avm_mp_get_uint(&r, &u) == 0)
            continue;
        r.p = before;
        if (avm_mp_get_int(&r, &i) == 0)
            continue;
        r.p = before;
        if (avm_mp_get_bool(&r, &bv) == 0)
            continue;
        r.p = before;
        if (avm_mp_get_str(&r, &s, &n) == 0) {
            if ((const uint8_t *)s + n != r.p)
                abort();
            continue;
        }
        r.p = before;
        if (avm_mp_get_bin(&r, &p, &n) == 0) {
            if (p + n != r.p)
                abort();
            continue;
        }
        r.p = before;
        if (avm_mp_get_map(&r, &n) == 0) {
            if ((size_t)n * 2 > (size_t)(r.end - r.p))
                abort();
            continue;
        }
        r.p = before;
        if (avm_mp_get_array(&r, &n) == 0) {
            if (n > (size_t)(r.end - r.p))
                abort();
            continue;
        }
        r.p = before;
        if (avm_mp_get_val(&r, &v) == 0) {
            avm_val_release(v);
            continue;
        }
        r.p = before + 1;
    }
}

static void check_module(const uint8_t *data, size_t size)
{
    avm_module *m = NULL;
    char msg[256];
    msg[0] = '\0';
    if (avm_module_decode(data, size, &m, msg, sizeof(msg)) != 0) {
        if (msg[0] == '\0')
            abort(); /* every refusal names its cause */
        return;
    }
    if (m->rc != 1 || avm_module_verify(m, msg, sizeof(msg)) != 0)
        abort();

    avm_buf a;
    avm_buf_init(&a);
    if (avm_module_encode(m, &a) != 0)
        abort();
    avm_module *d = NULL;
    if (avm_module_decode((const uint8_t *)a.data, a.len, &d, msg, sizeof(msg)) != 0)
        abort();
    if (memcmp(d->hash, m->hash, sizeof(m->hash)) != 0)
        abort();
    avm_module_release(d);
    avm_buf_free(&a);

    for (uint32_t i = 0; i < m->nfuncs && i < 16; i++) {
        avm_module *x = NULL;
        bool unsafe = avm_module_fn_unsafe(m, i);
        if (avm_module_extract(m, i, &x) != 0)
            abort();
        if (avm_module_verify(x, msg, sizeof(msg)) != 0)
            abort();
        if (avm_module_fn_unsafe(x, 0) != unsafe)
            abort();
        /* find takes a C string: names holding a NUL byte cannot be looked up. */
        const avm_str *name = x->funcs[0].name.u.s;
        if (strlen(name->data) == name->len &&
            avm_module_find(m, name->data, m->funcs[i].kind) < 0)
            abort();
        avm_module_release(x);
    }
    avm_module_release(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_value(data, size);
    check_reader(data, size);
    check_module(data, size);
    return 0;
}

/* Seeds. */

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

static void set_func(avm_func *f, const char *name, avm_fn_kind kind, uint8_t nparams,
                     uint16_t nlocals, uint16_t max_stack, const uint8_t *code,
                     size_t len)
{
    f->name = str(name);
    f->kind = (uint8_t)kind;
    f->nparams = nparams;
    f->nlocals = nlocals;
    f->max_stack = max_stack;
    f->code = malloc(len);
    if (f->code == NULL)
        abort();
    memcpy(f->code, code, len);
    f->code_len = (uint32_t)len;
}

/* A module using every opcode: main computes (double (+ 1 2)) with a branch and a
 * loop; double is pure; ping is a behaviour; risky uses an unsafe instruction. */
static avm_module *seed_module(void)
{
    avm_module *m = avm_module_new(4);
    if (m == NULL)
        abort();
    m->source = str("seed.avm");
    m->main_fn = 0;
    static const uint8_t main_code[] = {
        OP_CONST, 0,
        0, /* 0 */
        OP_CONST, 1,
        0, /* 3 */
        OP_PRIM,  AVM_PRIM_ADD,
        2, /* 6 */
        OP_STORE, 0,
        0, /* 9 */
        OP_LOAD,  0,
        0,      /* 12: loop head, height 0 */
        OP_DUP, /* 15 */
        OP_JMPF,  10,
        0,        0,
        0,      /* 16: to 31 */
        OP_POP, /* 21 */
        OP_NIL, /* 22 */
        OP_STORE, 0,
        0, /* 23 */
        OP_JMP,   0xed,
        0xff,     0xff,
        0xff, /* 26: -19, to 12 */
        OP_CALL,  1,
        0,        1, /* 31: height 1 */
        OP_NIL,      /* 35 */
        OP_LIST,  2,
        0,      /* 36 */
        OP_RET, /* 39 */
    };
    set_func(&m->funcs[0], "main", AVM_FN_MAIN, 0, 1, 2, main_code, sizeof(main_code));
    m->funcs[0].consts = malloc(2 * sizeof(avm_val));
    if (m->funcs[0].consts == NULL)
        abort();
    m->funcs[0].consts[0] = avm_int(1);
    m->funcs[0].consts[1] = avm_int(2);
    m->funcs[0].nconsts = 2;
    m->funcs[0].lines = malloc(2 * sizeof(avm_line));
    if (m->funcs[0].lines == NULL)
        abort();
    m->funcs[0].lines[0] = (avm_line){0, 1, 1};
    m->funcs[0].lines[1] = (avm_line){12, 2, 5};
    m->funcs[0].nlines = 2;

    static const uint8_t double_code[] = {OP_LOAD,      0, 0,     OP_LOAD, 0, 0, OP_PRIM,
                                          AVM_PRIM_ADD, 2, OP_RET};
    set_func(&m->funcs[1], "double", AVM_FN_PURE, 1, 1, 2, double_code,
             sizeof(double_code));

    static const uint8_t ping_code[] = {OP_AVM, AVM_I_INPUT, 0, OP_LIST, 1, 0, OP_RET};
    set_func(&m->funcs[2], "ping", AVM_FN_BEHAVIOR, 0, 0, 1, ping_code,
             sizeof(ping_code));

    static const uint8_t risky_code[] = {OP_LOAD, 0,           0, OP_AVM, AVM_I_REFLECT,
                                         1,       OP_TAILCALL, 1, 0,      1};
    set_func(&m->funcs[3], "risky", AVM_FN_FUNC, 1, 1, 1, risky_code, sizeof(risky_code));
    m->funcs[3].uses_unsafe = true;
    return m;
}

static char *to_hex_seed(const avm_buf *b)
{
    static const char digits[] = "0123456789abcdef";
    char *s = malloc(4 + 2 * b->len + 1);
    if (s == NULL)
        abort();
    memcpy(s, "hex:", 4);
    for (size_t i = 0; i < b->len; i++) {
        s[4 + 2 * i] = digits[(uint8_t)b->data[i] >> 4];
        s[4 + 2 * i + 1] = digits[(uint8_t)b->data[i] & 0x0f];
    }
    s[4 + 2 * b->len] = '\0';
    return s;
}

/* Valid encodings: values of every kind and form (canonical and not), and modules
 * built here (so they follow the current format). */
static const char *const value_seeds[] = {
    "hex:c0",
    "hex:c3",
    "hex:c2",
    "hex:00",
    "hex:7f",
    "hex:ff",
    "hex:e0",
    "hex:cd 01 2c",
    "hex:d0 df",
    "hex:d1 ff 7f",
    "hex:d2 80 00 00 00",
    "hex:cf 7f ff ff ff ff ff ff ff",
    "hex:d3 80 00 00 00 00 00 00 00",
    "hex:ce 00 01 00 00",
    "hex:a1 61",
    "hex:d9 05 68 65 6c 6c 6f",
    "hex:da 00 02 68 69",
    "hex:db 00 00 00 01 7a",
    "hex:90",
    "hex:92 01 a1 61",
    "hex:dc 00 03 01 02 03",
    "hex:dd 00 00 00 02 c0 c3",
    "hex:93 91 91 90 c7 07 01 6e 6f 64 65 31 2f 37 d6 02 6d 61 69 6e",
    "hex:d4 03 6e",
    "hex:d5 04 74 31",
    "hex:d7 01 6e 6f 64 65 31 2f 74 33",
    "hex:d8 02 30 31 32 33 34 35 36 37 38 39 61 62 63 64 65 66",
    "hex:c7 00 04",
    "hex:c8 00 01 03 6d",
    "hex:c9 00 00 00 01 01 6f",
    "hex:94 92 a1 6b cd 01 2c 92 a1 6c 93 01 02 03 c0 d6 04 6e 2f 74 31",
    "hex:91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 91 c0",
};

const char *const *fuzz_seeds(size_t *n)
{
    enum { NVALUES = sizeof(value_seeds) / sizeof(value_seeds[0]) };
    static const char *seeds[NVALUES + 2];
    static bool built;
    if (!built) {
        memcpy(seeds, value_seeds, sizeof(value_seeds));
        avm_module *m = seed_module();
        char msg[256];
        if (avm_module_verify(m, msg, sizeof(msg)) != 0) {
            fprintf(stderr, "fuzz_decode: seed module does not verify: %s\n", msg);
            abort();
        }
        avm_buf b;
        avm_buf_init(&b);
        if (avm_module_encode(m, &b) != 0)
            abort();
        seeds[NVALUES] = to_hex_seed(&b);
        avm_buf_free(&b);
        avm_module *x = NULL;
        if (avm_module_extract(m, 3, &x) != 0)
            abort();
        avm_buf_init(&b);
        if (avm_module_encode(x, &b) != 0)
            abort();
        seeds[NVALUES + 1] = to_hex_seed(&b);
        avm_buf_free(&b);
        avm_module_release(x);
        avm_module_release(m);
        built = true;
    }
    *n = sizeof(seeds) / sizeof(seeds[0]);
    return seeds;
}
