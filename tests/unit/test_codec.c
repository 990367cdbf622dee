/* The value codec: canonical bytes, round trips, liberal decoding of non-canonical
 * forms, and refusal of hostile input without crashing, leaking or allocating what a
 * length prefix claims. Leaks are caught by running this under AddressSanitizer. */
#include <stdint.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "test.h"

/* Parses hexadecimal digits, ignoring spaces. */
static size_t unhex(const char *s, uint8_t *out)
{
    size_t n = 0;
    int hi = -1;
    for (; *s; s++) {
        int d;
        if (*s >= '0' && *s <= '9')
            d = *s - '0';
        else if (*s >= 'a' && *s <= 'f')
            d = *s - 'a' + 10;
        else
            continue;
        if (hi < 0) {
            hi = d;
        } else {
            out[n++] = (uint8_t)(hi << 4 | d);
            hi = -1;
        }
    }
    return n;
}

static avm_val str(const char *s)
{
    avm_val v;
    if (avm_cstr(AVM_STR, s, &v) != 0)
        abort();
    return v;
}

static avm_val ident(avm_kind k, const char *s)
{
    avm_val v;
    if (avm_cstr(k, s, &v) != 0)
        abort();
    return v;
}

/* A list of n values (ownership of each moves into the list). */
static avm_val list(size_t n, const avm_val *items)
{
    avm_val tmp[64], v;
    if (n > 64)
        abort();
    memcpy(tmp, items, n * sizeof(avm_val));
    if (avm_list_from(tmp, n, &v) != 0)
        abort();
    return v;
}

/* True if v encodes to exactly the bytes written in hex. Releases v. */
static bool encodes_to(avm_val v, const char *hex)
{
    uint8_t want[4096];
    size_t n = unhex(hex, want);
    avm_buf b;
    avm_buf_init(&b);
    int rv = avm_val_encode(&b, v);
    bool ok = rv == 0 && b.len == n && memcmp(b.data, want, n) == 0;
    if (!ok) {
        fprintf(stderr, "  encoding of ");
        avm_buf p;
        avm_buf_init(&p);
        avm_val_print(&p, v);
        fprintf(stderr, "%s:", avm_buf_cstr(&p));
        for (size_t i = 0; i < b.len && i < 40; i++)
            fprintf(stderr, " %02x", (uint8_t)b.data[i]);
        fprintf(stderr, "\n  expected: %s\n", hex);
        avm_buf_free(&p);
    }
    avm_buf_free(&b);
    avm_val_release(v);
    return ok;
}

/* Decode result of the bytes written in hex (the value, if any, is released). */
static int decode_hex(const char *hex)
{
    uint8_t in[4096];
    size_t n = unhex(hex, in);
    avm_val v;
    int rv = avm_val_decode_all(in, n, &v);
    if (rv == 0)
        avm_val_release(v);
    return rv;
}

/* Encode, decode, compare, re-encode to the same bytes. Releases v. */
static bool round_trips(avm_val v)
{
    avm_buf a, b;
    avm_buf_init(&a);
    avm_buf_init(&b);
    avm_val w = avm_nil();
    bool ok = avm_val_encode(&a, v) == 0 &&
              avm_val_decode_all((const uint8_t *)a.data, a.len, &w) == 0 &&
              avm_val_eq(v, w) && avm_val_cmp(v, w) == 0 &&
              avm_val_hash(v) == avm_val_hash(w) && avm_val_encode(&b, w) == 0 &&
              a.len == b.len && memcmp(a.data, b.data, a.len) == 0;
    avm_val_release(w);
    avm_val_release(v);
    avm_buf_free(&a);
    avm_buf_free(&b);
    return ok;
}

TEST(canonical_ints)
{
    static const struct {
        int64_t v;
        const char *hex;
    } cases[] = {
        {0, "00"},
        {1, "01"},
        {127, "7f"},
        {128, "cc 80"},
        {255, "cc ff"},
        {256, "cd 01 00"},
        {300, "cd 01 2c"},
        {65535, "cd ff ff"},
        {65536, "ce 00 01 00 00"},
        {4294967295, "ce ff ff ff ff"},
        {4294967296, "cf 00 00 00 01 00 00 00 00"},
        {INT64_MAX, "cf 7f ff ff ff ff ff ff ff"},
        {-1, "ff"},
        {-32, "e0"},
        {-33, "d0 df"},
        {-128, "d0 80"},
        {-129, "d1 ff 7f"},
        {-32768, "d1 80 00"},
        {-32769, "d2 ff ff 7f ff"},
        {INT32_MIN, "d2 80 00 00 00"},
        {(int64_t)INT32_MIN - 1, "d3 ff ff ff ff 7f ff ff ff"},
        {INT64_MIN, "d3 80 00 00 00 00 00 00 00"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK(encodes_to(avm_int(cases[i].v), cases[i].hex));
        CHECK(round_trips(avm_int(cases[i].v)));
    }
}

TEST(canonical_scalars_strings_lists)
{
    CHECK(encodes_to(avm_nil(), "c0"));
    CHECK(encodes_to(avm_bool(true), "c3"));
    CHECK(encodes_to(avm_bool(false), "c2"));
    CHECK(encodes_to(str(""), "a0"));
    CHECK(encodes_to(str("a"), "a1 61"));
    CHECK(encodes_to(str("0123456789012345678901234567890"), /* 31: fixstr */
                     "bf 30313233343536373839 30313233343536373839 30313233343536373839"
                     " 30"));
    CHECK(encodes_to(str("01234567890123456789012345678901"), /* 32: str8 */
                     "d9 20 30313233343536373839 30313233343536373839"
                     " 30313233343536373839 3031"));
    avm_val empty;
    REQUIRE(avm_list_new(0, &empty) == 0);
    CHECK(encodes_to(empty, "90"));
    avm_val items[] = {avm_int(1), str("a")};
    CHECK(encodes_to(list(2, items), "92 01 a1 61"));
    avm_val sixteen[16];
    for (int i = 0; i < 16; i++)
        sixteen[i] = avm_int(i);
    CHECK(encodes_to(list(16, sixteen), "dc 00 10 00 01 02 03 04 05 06 07 08 09 0a 0b "
                                        "0c 0d 0e 0f"));
    avm_val nested_inner[] = {avm_nil()};
    avm_val nested[] = {list(1, nested_inner), avm_bool(true)};
    CHECK(encodes_to(list(2, nested), "92 91 c0 c3"));
}

TEST(canonical_identifiers)
{
    /* Payload sizes 1, 2, 4, 8, 16 take fixext; others ext8. */
    CHECK(encodes_to(ident(AVM_OBJID, "node1/7"), "c7 07 01 6e6f6465312f37"));
    CHECK(encodes_to(ident(AVM_CTRLID, "main"), "d6 02 6d61696e"));
    CHECK(encodes_to(ident(AVM_MACHID, "n"), "d4 03 6e"));
    CHECK(encodes_to(ident(AVM_TXID, "ab"), "d5 04 6162"));
    CHECK(encodes_to(ident(AVM_TXID, ""), "c7 00 04"));
    CHECK(encodes_to(ident(AVM_OBJID, "node1/t3"), "d7 01 6e6f6465312f7433"));
    CHECK(encodes_to(ident(AVM_OBJID, "0123456789abcdef"),
                     "d8 01 30313233343536373839616263646566"));
    CHECK(encodes_to(ident(AVM_MACHID, "0123456789abcdefg"),
                     "c7 11 03 30313233343536373839616263646566 67"));
}

TEST(round_trip_every_kind)
{
    CHECK(round_trips(avm_nil()));
    CHECK(round_trips(avm_bool(true)));
    CHECK(round_trips(avm_bool(false)));
    CHECK(round_trips(avm_int(0)));
    CHECK(round_trips(avm_int(-4000000000)));
    CHECK(round_trips(str("")));
    CHECK(round_trips(str("hello, world")));
    CHECK(round_trips(ident(AVM_OBJID, "node1/7")));
    CHECK(round_trips(ident(AVM_CTRLID, "main")));
    CHECK(round_trips(ident(AVM_MACHID, "node1")));
    CHECK(round_trips(ident(AVM_TXID, "node1/t2")));

    /* A string with NUL and high bytes: the codec is byte-exact. */
    avm_val bin;
    REQUIRE(avm_str_new(AVM_STR, "a\0b\xff", 4, &bin) == 0);
    CHECK(round_trips(bin));

    /* Nested lists mixing every kind. */
    avm_val inner[] = {ident(AVM_TXID, "t"), avm_int(-1), str("x")};
    avm_val mid[] = {list(3, inner), avm_nil(), ident(AVM_CTRLID, "c")};
    avm_val outer[] = {avm_bool(false), list(3, mid), avm_int(1 << 20), str("")};
    CHECK(round_trips(list(4, outer)));
}

TEST(round_trip_large_forms)
{
    /* str16, str32, array16, array32 and ext16/ext32 payloads. */
    static char big[70001];
    memset(big, 'z', sizeof(big) - 1);
    CHECK(round_trips(str(big)));
    big[300] = '\0';
    CHECK(round_trips(str(big)));
    CHECK(round_trips(ident(AVM_OBJID, big)));
    big[300] = 'z';
    CHECK(round_trips(ident(AVM_MACHID, big)));

    avm_val l;
    REQUIRE(avm_list_new(70000, &l) == 0);
    for (size_t i = 0; i < 70000; i++)
        l.u.l->items[i] = avm_int((int64_t)i * 977);
    CHECK(round_trips(l));
    REQUIRE(avm_list_new(300, &l) == 0);
    CHECK(round_trips(l));
}

TEST(round_trip_max_depth)
{
    /* AVM_MAX_DEPTH nested lists encode and decode; one more is refused by both. */
    avm_val v = avm_int(7);
    for (int d = 0; d < AVM_MAX_DEPTH; d++)
        v = list(1, &v);
    avm_val copy = v;
    avm_val_retain(copy);
    CHECK(round_trips(copy));
    v = list(1, &v);
    avm_buf b;
    avm_buf_init(&b);
    CHECK_INT(avm_val_encode(&b, v), AVM_ETOODEEP);
    avm_buf_free(&b);
    avm_val_release(v);
}

TEST(determinism)
{
    avm_val a_items[] = {str("k"), avm_int(300), ident(AVM_OBJID, "o/1")};
    avm_val b_items[] = {str("k"), avm_int(300), ident(AVM_OBJID, "o/1")};
    avm_val a = list(3, a_items), b = list(3, b_items);
    avm_buf x, y, z;
    avm_buf_init(&x);
    avm_buf_init(&y);
    avm_buf_init(&z);
    CHECK(avm_val_encode(&x, a) == 0);
    CHECK(avm_val_encode(&y, b) == 0);
    CHECK(avm_val_encode(&z, a) == 0);
    CHECK(x.len == y.len && memcmp(x.data, y.data, x.len) == 0);
    CHECK(x.len == z.len && memcmp(x.data, z.data, x.len) == 0);
    avm_buf_free(&x);
    avm_buf_free(&y);
    avm_buf_free(&z);
    avm_val_release(a);
    avm_val_release(b);
}

TEST(liberal_decoding_of_noncanonical_forms)
{
    static const struct {
        const char *hex;
        const char *printed;
    } cases[] = {
        {"cc 01", "1"},
        {"cd 00 01", "1"},
        {"ce 00 00 00 01", "1"},
        {"cf 00 00 00 00 00 00 00 01", "1"},
        {"d0 05", "5"},
        {"d1 ff ff", "-1"},
        {"d2 ff ff ff ff", "-1"},
        {"d3 ff ff ff ff ff ff ff ff", "-1"},
        {"d3 7f ff ff ff ff ff ff ff", "9223372036854775807"},
        {"d0 80", "-128"},
        {"d9 01 61", "\"a\""},
        {"da 00 01 61", "\"a\""},
        {"db 00 00 00 01 61", "\"a\""},
        {"dc 00 01 01", "(1)"},
        {"dd 00 00 00 02 01 02", "(1 2)"},
        {"c7 01 01 61", "#obj\"a\""},
        {"c8 00 01 02 61", "#ctl\"a\""},
        {"c9 00 00 00 01 03 61", "#mach\"a\""},
        {"c7 04 04 74 78 2f 31", "#tx\"tx/1\""},
        {"cf 7f ff ff ff ff ff ff ff", "9223372036854775807"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t in[64];
        size_t n = unhex(cases[i].hex, in);
        avm_val v;
        int rv = avm_val_decode_all(in, n, &v);
        CHECK_INT(rv, 0);
        if (rv != 0)
            continue;
        avm_buf p;
        avm_buf_init(&p);
        avm_val_print(&p, v);
        CHECK_STR(avm_buf_cstr(&p), cases[i].printed);
        avm_buf_free(&p);
        avm_val_release(v);
    }
}

TEST(rejects_what_is_not_a_value)
{
    CHECK_INT(decode_hex("c1"), AVM_EMALFORMED);                         /* never used */
    CHECK_INT(decode_hex("ca 3f 80 00 00"), AVM_EMALFORMED);             /* float32 */
    CHECK_INT(decode_hex("cb 3f f0 00 00 00 00 00 00"), AVM_EMALFORMED); /* float64 */
    CHECK_INT(decode_hex("80"), AVM_EMALFORMED);                         /* fixmap */
    CHECK_INT(decode_hex("81 01 02"), AVM_EMALFORMED);
    CHECK_INT(decode_hex("de 00 00"), AVM_EMALFORMED);       /* map16 */
    CHECK_INT(decode_hex("df 00 00 00 00"), AVM_EMALFORMED); /* map32 */
    CHECK_INT(decode_hex("c4 01 61"), AVM_EMALFORMED);       /* bin8 */
    CHECK_INT(decode_hex("d4 00 61"), AVM_EMALFORMED);       /* ext type 0 */
    CHECK_INT(decode_hex("d4 05 61"), AVM_EMALFORMED);       /* ext type 5 */
    CHECK_INT(decode_hex("d4 ff 61"), AVM_EMALFORMED);       /* ext type -1 */
    CHECK_INT(decode_hex("c7 01 81 61"), AVM_EMALFORMED);    /* ext type -127 */
    CHECK_INT(decode_hex("c7 00 09"), AVM_EMALFORMED);
    CHECK_INT(decode_hex("92 01 c1"), AVM_EMALFORMED); /* inside a list */
    CHECK_INT(decode_hex("91 91 ca 00 00 00 00"), AVM_EMALFORMED);
    /* Above INT64_MAX: not an AVM integer. */
    CHECK_INT(decode_hex("cf 80 00 00 00 00 00 00 00"), AVM_EMALFORMED);
    CHECK_INT(decode_hex("cf ff ff ff ff ff ff ff ff"), AVM_EMALFORMED);
    CHECK_INT(decode_hex("93 01 02 cf 80 00 00 00 00 00 00 00"), AVM_EMALFORMED);
    /* Trailing bytes after a complete value. */
    CHECK_INT(decode_hex("01 02"), AVM_EMALFORMED);
    CHECK_INT(decode_hex(""), AVM_ETRUNCATED);
}

TEST(hostile_length_prefixes)
{
    /* Each announces far more than the input holds; nothing may be allocated for
     * it (a trusting decoder would reserve gigabytes here). */
    CHECK_INT(decode_hex("dd ff ff ff ff 00"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("dd 00 10 00 00 00"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("dc ff ff"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("db ff ff ff ff 61"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("da ff ff 61"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("c9 ff ff ff ff 01 61"), AVM_ETRUNCATED);
    CHECK_INT(decode_hex("91 92 93 dd ff ff ff ff"), AVM_ETRUNCATED);

    /* Lists and strings over the limits of value.h, with the bytes present. */
    size_t n = 5 + (size_t)AVM_MAX_LIST_LEN + 1;
    uint8_t *in = malloc(n);
    REQUIRE(in != NULL);
    uint32_t len = AVM_MAX_LIST_LEN + 1;
    in[0] = 0xdd;
    in[1] = (uint8_t)(len >> 24);
    in[2] = (uint8_t)(len >> 16);
    in[3] = (uint8_t)(len >> 8);
    in[4] = (uint8_t)len;
    memset(in + 5, 0xc0, len);
    avm_val v;
    CHECK_INT(avm_val_decode_all(in, n, &v), AVM_ETOOBIG);
    free(in);

    n = 5 + (size_t)AVM_MAX_STR_LEN + 1;
    in = malloc(n + 1);
    REQUIRE(in != NULL);
    len = AVM_MAX_STR_LEN + 1;
    in[0] = 0xdb;
    in[1] = (uint8_t)(len >> 24);
    in[2] = (uint8_t)(len >> 16);
    in[3] = (uint8_t)(len >> 8);
    in[4] = (uint8_t)len;
    memset(in + 5, 'x', len);
    CHECK_INT(avm_val_decode_all(in, n, &v), AVM_ETOOBIG);
    in[0] = 0xc9; /* the same as an identifier: ext32 has one more header byte */
    in[5] = AVM_EXT_OBJID;
    memset(in + 6, 'x', len);
    CHECK_INT(avm_val_decode_all(in, n + 1, &v), AVM_ETOOBIG);
    free(in);
}

TEST(deep_nesting)
{
    /* 10,000 levels of [x] must stop at AVM_MAX_DEPTH without recursing. */
    enum { LEVELS = 10000 };
    uint8_t *in = malloc(LEVELS + 1);
    REQUIRE(in != NULL);
    memset(in, 0x91, LEVELS);
    in[LEVELS] = 0xc0;
    avm_val v;
    CHECK_INT(avm_val_decode_all(in, LEVELS + 1, &v), AVM_ETOODEEP);
    /* Exactly AVM_MAX_DEPTH lists is fine; one more is not, even when empty. */
    memset(in, 0x91, AVM_MAX_DEPTH);
    in[AVM_MAX_DEPTH] = 0xc0;
    CHECK_INT(avm_val_decode_all(in, AVM_MAX_DEPTH + 1, &v), 0);
    avm_val_release(v);
    memset(in, 0x91, AVM_MAX_DEPTH - 1);
    in[AVM_MAX_DEPTH - 1] = 0x90;
    CHECK_INT(avm_val_decode_all(in, AVM_MAX_DEPTH, &v), 0);
    avm_val_release(v);
    memset(in, 0x91, AVM_MAX_DEPTH);
    in[AVM_MAX_DEPTH] = 0x90;
    CHECK_INT(avm_val_decode_all(in, AVM_MAX_DEPTH + 1, &v), AVM_ETOODEEP);
    /* Failure deep inside partially built lists frees them all: 50 levels of
     * (nil (nil (... 0xc1 ...))). */
    for (int i = 0; i < 50; i++) {
        in[2 * i] = 0x92;
        in[2 * i + 1] = 0xc0;
    }
    in[100] = 0xc1;
    in[101] = 0xc0;
    CHECK_INT(avm_val_decode_all(in, 102, &v), AVM_EMALFORMED);
    free(in);
}

TEST(every_truncation_fails)
{
    avm_val inner[] = {ident(AVM_OBJID, "node1/7"), avm_int(-70000), str("hello")};
    avm_val items[] = {avm_int(300),
                       list(3, inner),
                       avm_bool(true),
                       avm_nil(),
                       str("0123456789012345678901234567890123456789"),
                       ident(AVM_TXID, "0123456789abcdefghij"),
                       avm_int(INT64_MIN)};
    avm_val v = list(7, items);
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_val_encode(&b, v) == 0);
    for (size_t n = 0; n < b.len; n++) {
        avm_val w;
        size_t used;
        int rv = avm_val_decode((const uint8_t *)b.data, n, 0, &w, &used);
        CHECK_INT(rv, AVM_ETRUNCATED);
        if (rv == 0)
            avm_val_release(w);
    }
    avm_val w;
    size_t used = 0;
    CHECK_INT(avm_val_decode((const uint8_t *)b.data, b.len, 0, &w, &used), 0);
    CHECK_INT(used, b.len);
    CHECK(avm_val_eq(v, w));
    avm_val_release(w);
    avm_buf_free(&b);
    avm_val_release(v);
}

TEST(decode_reports_bytes_used)
{
    uint8_t in[8];
    size_t n = unhex("92 01 02 c3 ff", in);
    avm_val v;
    size_t used = 0;
    CHECK_INT(avm_val_decode(in, n, 0, &v, &used), 0);
    CHECK_INT(used, 3);
    avm_val_release(v);
    CHECK_INT(avm_val_decode(in + 3, n - 3, 0, &v, &used), 0);
    CHECK_INT(used, 1);
    CHECK(v.kind == AVM_BOOL && v.u.b);
}

TEST(memory_budget)
{
    /* 100 one-byte elements take 100 value slots: over a 256-byte budget. */
    uint8_t in[200];
    in[0] = 0xdc;
    in[1] = 0;
    in[2] = 100;
    memset(in + 3, 0x01, 100);
    avm_val v;
    size_t used;
    CHECK_INT(avm_val_decode(in, 103, 256, &v, &used), AVM_ETOOBIG);
    CHECK_INT(avm_val_decode(in, 103, 4096, &v, &used), 0);
    avm_val_release(v);
    /* Strings count too. */
    in[0] = 0xd9;
    in[1] = 150;
    memset(in + 2, 'q', 150);
    CHECK_INT(avm_val_decode(in, 152, 100, &v, &used), AVM_ETOOBIG);
    CHECK_INT(avm_val_decode(in, 152, 1000, &v, &used), 0);
    avm_val_release(v);
}

TEST(all_short_inputs)
{
    /* Every input of one and two bytes, and three-byte inputs with a list header:
     * each decodes or fails cleanly, and whatever decodes round-trips. */
    uint8_t in[3];
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            for (unsigned len = 1; len <= 2; len++) {
                in[0] = (uint8_t)a;
                in[1] = (uint8_t)b;
                avm_val v;
                size_t used;
                if (len == 1 && b > 0)
                    continue;
                if (avm_val_decode(in, len, 0, &v, &used) == 0) {
                    CHECK(used <= len);
                    CHECK(round_trips(v));
                }
            }
        }
    }
}

TEST(low_level_reader)
{
    uint8_t in[64];
    size_t n = unhex("ff 05 a3 61 62 63 c4 02 00 01 93 82 c0 c3 c2", in);
    avm_mp_reader r;
    avm_mp_reader_init(&r, in, n, 1024);
    uint64_t u;
    int64_t i;
    CHECK_INT(avm_mp_get_uint(&r, &u), AVM_EMALFORMED); /* -1 is not unsigned */
    avm_mp_reader_init(&r, in, n, 1024);
    CHECK_INT(avm_mp_get_int(&r, &i), 0);
    CHECK_INT(i, -1);
    CHECK_INT(avm_mp_get_uint(&r, &u), 0);
    CHECK_INT(u, 5);
    const char *s;
    uint32_t len;
    CHECK_INT(avm_mp_get_str(&r, &s, &len), 0);
    CHECK(len == 3 && memcmp(s, "abc", 3) == 0);
    const uint8_t *p;
    CHECK_INT(avm_mp_get_str(&r, &s, &len), AVM_EMALFORMED); /* bin is not str */
    CHECK_INT(avm_mp_get_bin(&r, &p, &len), 0);
    CHECK(len == 2 && p[0] == 0 && p[1] == 1);
    CHECK_INT(avm_mp_get_array(&r, &len), 0);
    CHECK_INT(len, 3);
    CHECK_INT(avm_mp_get_map(&r, &len), AVM_ETRUNCATED); /* 2 pairs need 4 bytes */
    avm_mp_reader_init(&r, in + 12, n - 12, 1024);
    CHECK(avm_mp_peek_nil(&r));
    CHECK_INT(avm_mp_get_nil(&r), 0);
    CHECK(!avm_mp_peek_nil(&r));
    bool bv = false;
    CHECK_INT(avm_mp_get_nil(&r), AVM_EMALFORMED);
    CHECK_INT(avm_mp_get_bool(&r, &bv), 0);
    CHECK(bv);
    CHECK_INT(avm_mp_get_bool(&r, &bv), 0);
    CHECK(!bv);
    CHECK_INT(avm_mp_get_bool(&r, &bv), AVM_ETRUNCATED);
    CHECK(!avm_mp_peek_nil(&r));

    /* The writers' canonical forms for the record helpers. */
    avm_buf b;
    avm_buf_init(&b);
    avm_mp_put_uint(&b, 200);
    avm_mp_put_bin(&b, "xy", 2);
    avm_mp_put_map(&b, 1);
    avm_mp_put_map(&b, 16);
    avm_mp_put_map(&b, 70000);
    avm_mp_put_array(&b, 70000);
    n = unhex("cc c8 c4 02 78 79 81 de 00 10 df 00 01 11 70 dd 00 01 11 70", in);
    CHECK(b.len == n && memcmp(b.data, in, n) == 0);
    avm_buf_free(&b);
}

TEST_MAIN(T(canonical_ints), T(canonical_scalars_strings_lists), T(canonical_identifiers),
          T(round_trip_every_kind), T(round_trip_large_forms), T(round_trip_max_depth),
          T(determinism), T(liberal_decoding_of_noncanonical_forms),
          T(rejects_what_is_not_a_value), T(hostile_length_prefixes), T(deep_nesting),
          T(every_truncation_fails), T(decode_reports_bytes_used), T(memory_budget),
          T(all_short_inputs), T(low_level_reader))
