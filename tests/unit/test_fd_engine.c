/* The finite-domain engine (node/vm/fd.h) on its own: domains in both forms, every
 * propagator, AllDiff's Hall pruning and pigeonhole failure, exact restoration over
 * nested levels, the choice point of an aborted level (decision 5), and the
 * serialization: round trips mid-search and refusal of damaged bytes.
 * (The target is test_fd_engine: test_fd is the transport's failure detector.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"
#include "fd.h"
#include "test.h"

/* Fixture ---------------------------------------------------------------------- */

static uint32_t var_iv(fd_store *s, int64_t lo, int64_t hi)
{
    fd_iv iv = {lo, hi};
    uint32_t v = UINT32_MAX;
    if (fd_new_var(s, &iv, 1, &v) != 0)
        abort();
    return v;
}

static uint32_t var_vals(fd_store *s, const int64_t *vals, size_t n)
{
    fd_iv iv[16];
    for (size_t i = 0; i < n; i++)
        iv[i].lo = iv[i].hi = vals[i];
    n = fd_ivs_normalize(iv, n);
    uint32_t v = UINT32_MAX;
    if (fd_new_var(s, iv, n, &v) != 0)
        abort();
    return v;
}

static int print_run(void *data, int64_t lo, int64_t hi)
{
    avm_buf *b = data;
    if (lo == hi)
        avm_buf_printf(b, " %lld", (long long)lo);
    else
        avm_buf_printf(b, " %lld..%lld", (long long)lo, (long long)hi);
    return 0;
}

/* The whole visible store as text: "failed? ncons | v0: runs | v1: ...". */
static const char *dump(const fd_store *s)
{
    static char out[4096];
    avm_buf b;
    avm_buf_init(&b);
    avm_buf_printf(&b, "%s%u", fd_failed(s) ? "F " : "", fd_ncons(s));
    for (uint32_t v = 0; v < fd_nvars(s); v++) {
        avm_buf_printf(&b, " |");
        fd_runs(s, v, print_run, &b);
    }
    snprintf(out, sizeof(out), "%s", avm_buf_cstr(&b));
    avm_buf_free(&b);
    return out;
}

static char *dup_dump(const fd_store *s)
{
    return strdup(dump(s));
}

/* Domains ---------------------------------------------------------------------- */

TEST(domains_both_forms)
{
    fd_store *s = fd_new(0);
    fd_iv iv[] = {{5, 7}, {1, 2}, {3, 3}, {10, 10}};
    size_t n = fd_ivs_normalize(iv, 4);
    CHECK_INT(n, 3); /* 1..3, 5..7 and 10 */
    uint32_t a;
    REQUIRE(fd_new_var(s, iv, n, &a) == 0);
    uint32_t big = var_iv(s, -1000000, 1000000); /* an interval list */
    uint32_t top = var_iv(s, INT64_MAX - 3, INT64_MAX);
    CHECK_STR(dump(s), "0 | 1..3 5..7 10 | -1000000..1000000 | "
                       "9223372036854775804..9223372036854775807");
    CHECK_INT(fd_size(s, a), 7);
    CHECK_INT(fd_size(s, big), 2000001);
    CHECK(fd_contains(s, a, 10) && !fd_contains(s, a, 9));
    fd_iv keep[] = {{-5, 5}, {7, 20}};
    REQUIRE(fd_narrow(s, big, keep, 2) == 0);
    REQUIRE(fd_narrow(s, a, keep, 2) == 0);
    CHECK_STR(dump(s),
              "0 | 1..3 5 7 10 | -5..5 7..20 | 9223372036854775804..9223372036854775807");
    /* Removing inside an interval splits it (ValLt/ValGt and Neq take values). */
    REQUIRE(fd_post(s, FD_VAL_LT, top, 0, INT64_MAX) == 0);
    REQUIRE(fd_post(s, FD_VAL_GT, big, 0, -3) == 0);
    CHECK_STR(dump(s),
              "2 | 1..3 5 7 10 | -2..5 7..20 | 9223372036854775804..9223372036854775806");
    CHECK(!fd_failed(s));
    fd_iv none[] = {{100, 200}};
    REQUIRE(fd_narrow(s, a, none, 1) == 0);
    CHECK(fd_failed(s) && fd_empty(s, a));
    fd_free(s);

    /* An empty domain fails the store at once. */
    s = fd_new(0);
    uint32_t e;
    REQUIRE(fd_new_var(s, NULL, 0, &e) == 0);
    CHECK(fd_failed(s) && fd_empty(s, e));
    fd_free(s);
}

/* Binary constraints ------------------------------------------------------------- */

TEST(eq_with_offset_is_domain_consistent)
{
    fd_store *s = fd_new(0);
    uint32_t x = var_iv(s, 1, 10);
    uint32_t y = var_vals(s, (int64_t[]){3, 5, 20}, 3);
    REQUIRE(fd_post(s, FD_EQ, x, y, 2) == 0); /* x = y + 2 */
    CHECK_STR(dump(s), "1 | 5 7 | 3 5");
    REQUIRE(fd_post(s, FD_NEQ, x, y, 2) == 0); /* contradiction appears on fixing */
    CHECK(!fd_failed(s));
    fd_iv five = {5, 5};
    REQUIRE(fd_narrow(s, x, &five, 1) == 0);
    CHECK(fd_failed(s));
    fd_free(s);

    /* Eq on big interval domains shifts intervals, never enumerates values. */
    s = fd_new(0);
    x = var_iv(s, 0, INT64_MAX);
    y = var_iv(s, -1000000000000, 1000000000000);
    REQUIRE(fd_post(s, FD_EQ, x, y, -7) == 0);
    CHECK_STR(dump(s), "1 | 0..999999999993 | 7..1000000000000");
    fd_free(s);
}

TEST(neq_removes_once_fixed)
{
    fd_store *s = fd_new(0);
    uint32_t x = var_iv(s, 1, 5), y = var_iv(s, 1, 5);
    REQUIRE(fd_post(s, FD_NEQ, y, x, 1) == 0); /* y != x + 1 */
    CHECK_STR(dump(s), "1 | 1..5 | 1..5");
    int64_t v;
    REQUIRE(fd_label(s, x, &v) == 0);
    CHECK_INT(v, 1);
    CHECK_STR(dump(s), "1 | 1 | 1 3..5");
    fd_free(s);
}

TEST(orders_are_bounds_consistent)
{
    fd_store *s = fd_new(0);
    uint32_t x = var_iv(s, 0, 10), y = var_iv(s, 0, 10);
    REQUIRE(fd_post(s, FD_LEQ, x, y, -3) == 0); /* x <= y - 3 */
    CHECK_STR(dump(s), "1 | 0..7 | 3..10");
    REQUIRE(fd_post(s, FD_LT, x, y, -5) == 0); /* x < y - 5 */
    CHECK_STR(dump(s), "2 | 0..4 | 6..10");
    REQUIRE(fd_post(s, FD_GEQ, x, y, -8) == 0); /* x >= y - 8 */
    CHECK_STR(dump(s), "3 | 0..4 | 6..10");
    REQUIRE(fd_post(s, FD_VAL_LEQ, y, 0, 9) == 0);
    REQUIRE(fd_post(s, FD_GT, x, y, -8) == 0); /* x > y - 8 */
    CHECK_STR(dump(s), "5 | 0..3 | 6..9");
    REQUIRE(fd_post(s, FD_VAL_GEQ, x, 0, 2) == 0);
    CHECK_STR(dump(s), "6 | 2..3 | 8..9"); /* y > x + 5 with x >= 2 */
    REQUIRE(fd_post(s, FD_VAL_EQ, y, 0, 9) == 0);
    CHECK_STR(dump(s), "7 | 2..3 | 9");
    /* Offsets at the ends of int64 are exact: x <= y + INT64_MIN cannot hold. */
    REQUIRE(fd_post(s, FD_LEQ, x, y, INT64_MIN) == 0);
    CHECK(fd_failed(s));
    fd_free(s);

    /* A constraint on one variable is true or false. */
    s = fd_new(0);
    x = var_iv(s, 0, 3);
    REQUIRE(fd_post(s, FD_LT, x, x, 1) == 0);
    REQUIRE(fd_post(s, FD_EQ, x, x, 0) == 0);
    CHECK(!fd_failed(s));
    REQUIRE(fd_post(s, FD_NEQ, x, x, 0) == 0);
    CHECK(fd_failed(s));
    fd_free(s);
}

/* AllDiff ------------------------------------------------------------------------- */

TEST(alldiff_pigeonhole_fails)
{
    fd_store *s = fd_new(0);
    uint32_t v[3];
    for (int i = 0; i < 3; i++)
        v[i] = var_iv(s, 1, 2);
    REQUIRE(fd_post_alldiff(s, v, NULL, 3) == 0);
    CHECK(fd_failed(s));
    fd_free(s);
}

TEST(alldiff_hall_interval_prunes)
{
    fd_store *s = fd_new(0);
    uint32_t v[4] = {var_iv(s, 1, 2), var_iv(s, 1, 2), var_iv(s, 1, 3), var_iv(s, 1, 4)};
    REQUIRE(fd_post_alldiff(s, v, NULL, 3) == 0);
    CHECK_STR(dump(s), "1 | 1..2 | 1..2 | 3 | 1..4");
    REQUIRE(fd_post_alldiff(s, v, NULL, 4) == 0); /* then {1,2,3} is a Hall set */
    CHECK_STR(dump(s), "2 | 1..2 | 1..2 | 3 | 4");
    fd_free(s);

    /* Value elimination follows the variables it fixes. */
    s = fd_new(0);
    uint32_t w[3] = {var_iv(s, 1, 3), var_vals(s, (int64_t[]){1, 3}, 2),
                     var_vals(s, (int64_t[]){3, 7}, 2)};
    REQUIRE(fd_post_alldiff(s, w, NULL, 3) == 0);
    fd_iv one = {1, 1};
    REQUIRE(fd_narrow(s, w[0], &one, 1) == 0);
    CHECK_STR(dump(s), "1 | 1 | 3 | 7");
    fd_free(s);
}

TEST(alldiff_with_offsets)
{
    /* Queens' diagonals: q_i + i distinct. */
    fd_store *s = fd_new(0);
    uint32_t q[3] = {var_iv(s, 1, 3), var_iv(s, 1, 3), var_iv(s, 1, 3)};
    int64_t up[3] = {0, 1, 2}, down[3] = {0, -1, -2};
    REQUIRE(fd_post_alldiff(s, q, NULL, 3) == 0);
    REQUIRE(fd_post_alldiff(s, q, up, 3) == 0);
    REQUIRE(fd_post_alldiff(s, q, down, 3) == 0);
    CHECK(!fd_failed(s));
    int64_t v;
    REQUIRE(fd_label(s, q[0], &v) == 0); /* 3 queens have no solution */
    CHECK_INT(v, 1);
    CHECK(fd_failed(s));
    fd_free(s);

    /* x + 0 and y + 1 distinct: x = 1 removes 0 from y. Hall on shifted bounds:
     * a + 0, b + 0 in {1,2} and c + 10 in {11, 12, 13} makes c + 10 = 13 when they
     * share the values. */
    s = fd_new(0);
    uint32_t x = var_iv(s, 1, 1), y = var_iv(s, 0, 3);
    REQUIRE(fd_post_alldiff(s, (uint32_t[]){x, y}, (int64_t[]){0, 1}, 2) == 0);
    CHECK_STR(dump(s), "1 | 1 | 1..3");
    uint32_t a = var_iv(s, 1, 2), b = var_iv(s, 1, 2), c = var_iv(s, -9, -7);
    REQUIRE(fd_post_alldiff(s, (uint32_t[]){a, b, c}, (int64_t[]){0, 0, 10}, 3) == 0);
    CHECK_STR(dump(s), "2 | 1 | 1..3 | 1..2 | 1..2 | -7");
    fd_free(s);
}

/* Levels ------------------------------------------------------------------------- */

TEST(levels_restore_exactly)
{
    fd_store *s = fd_new(0);
    uint32_t x = var_iv(s, 1, 9), y = var_iv(s, 1, 9), big = var_iv(s, 0, 100000);
    REQUIRE(fd_post(s, FD_LT, x, y, 0) == 0);
    char *d0 = dup_dump(s);
    REQUIRE(fd_level_push(s) == 0);
    REQUIRE(fd_post(s, FD_VAL_GEQ, x, 0, 4) == 0);
    REQUIRE(fd_post(s, FD_NEQ, big, x, 0) == 0);
    fd_iv holes[] = {{0, 10}, {20, 30}, {50000, 50001}};
    REQUIRE(fd_narrow(s, big, holes, 3) == 0);
    char *d1 = dup_dump(s);
    REQUIRE(fd_level_push(s) == 0);
    uint32_t z = var_iv(s, 5, 6);
    REQUIRE(fd_post(s, FD_EQ, z, x, 0) == 0);
    REQUIRE(fd_post(s, FD_VAL_EQ, big, 0, 25) == 0);
    CHECK_STR(dump(s), "5 | 5..6 | 6..9 | 25 | 5..6");
    REQUIRE(fd_level_push(s) == 0);
    REQUIRE(fd_post(s, FD_VAL_EQ, y, 0, 5) == 0); /* fails */
    CHECK(fd_failed(s));
    fd_level_abort(s); /* back to the second level, consistent */
    CHECK_STR(dump(s), "5 | 5..6 | 6..9 | 25 | 5..6");
    fd_level_commit(s); /* merged into the first level */
    CHECK_INT(fd_levels(s), 1);
    fd_level_abort(s); /* undoes the merged child too */
    CHECK_STR(dump(s), d0);
    CHECK_INT(fd_nvars(s), 3);
    (void)d1;
    /* The constraints removed no longer propagate. */
    fd_iv seven = {7, 7};
    REQUIRE(fd_narrow(s, x, &seven, 1) == 0);
    CHECK_STR(dump(s), "1 | 7 | 8..9 | 0..100000");
    fd_free(s);
    free(d0);
    free(d1);
}

TEST(abort_removes_the_choice)
{
    fd_store *s = fd_new(0);
    uint32_t x = var_iv(s, 1, 3), y = var_iv(s, 1, 3);
    REQUIRE(fd_post(s, FD_LT, x, y, 0) == 0);
    REQUIRE(fd_level_push(s) == 0);
    int64_t v;
    REQUIRE(fd_label(s, x, &v) == 0);
    CHECK_INT(v, 1);
    REQUIRE(fd_label(s, y, &v) == 0); /* not the level's choice point */
    CHECK_STR(dump(s), "1 | 1 | 2");
    fd_level_abort(s);
    CHECK_STR(dump(s), "1 | 2 | 3"); /* x != 1, propagated */
    /* Aborting the level that chose the last value fails the parent. */
    REQUIRE(fd_level_push(s) == 0);
    REQUIRE(fd_level_push(s) == 0);
    REQUIRE(fd_label(s, x, &v) == 0);
    fd_level_abort(s);
    CHECK(fd_failed(s));
    fd_level_abort(s); /* the middle level had no choice */
    CHECK_STR(dump(s), "1 | 2 | 3");
    fd_free(s);

    /* A store created inside nested levels undoes them all. */
    s = fd_new(2);
    x = var_iv(s, 1, 2);
    REQUIRE(fd_label(s, x, &v) == 0);
    fd_level_abort(s);
    CHECK_STR(dump(s), "0");
    fd_level_commit(s);
    CHECK_INT(fd_levels(s), 0);
    fd_free(s);
}

/* Serialization --------------------------------------------------------------------- */

/* A store in the middle of an 8-queens search: three levels, a failed one. */
static fd_store *midsearch(void)
{
    fd_store *s = fd_new(0);
    uint32_t q[8];
    int64_t up[8], down[8];
    for (int i = 0; i < 8; i++) {
        q[i] = var_iv(s, 1, 8);
        up[i] = i;
        down[i] = -i;
    }
    var_iv(s, -5000, 5000); /* an interval domain */
    fd_post_alldiff(s, q, NULL, 8);
    fd_post_alldiff(s, q, up, 8);
    fd_post_alldiff(s, q, down, 8);
    fd_post(s, FD_LEQ, q[0], q[1], 3);
    int64_t v;
    for (int i = 0; i < 3; i++) {
        fd_level_push(s);
        fd_label(s, q[i], &v);
    }
    fd_iv hole[] = {{-5000, -1}, {1, 5000}};
    fd_narrow(s, 8, hole, 2);
    return s;
}

static void encode(const fd_store *s, avm_buf *b)
{
    avm_buf_init(b);
    fd_encode(s, b);
}

TEST(round_trip_mid_search)
{
    fd_store *s = midsearch();
    avm_buf b;
    encode(s, &b);
    REQUIRE(b.err == 0);
    avm_mp_reader r;
    avm_mp_reader_init(&r, (const uint8_t *)b.data, b.len, AVM_DECODE_DEFAULT_MAX);
    fd_store *t;
    char err[200] = "";
    int rv = fd_decode(&r, &t, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "decode: %s\n", err);
    REQUIRE(rv == 0);
    CHECK(r.p == r.end);
    avm_buf b2;
    encode(t, &b2);
    CHECK(b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0);
    CHECK_STR(dump(t), dump(s));
    /* Both continue the same way: abort twice (decision 5 each time), label on. */
    fd_store *both[2] = {s, t};
    char *out[2];
    for (int k = 0; k < 2; k++) {
        fd_store *u = both[k];
        int64_t v;
        fd_level_abort(u);
        fd_level_abort(u);
        fd_level_push(u);
        fd_label(u, 1, &v);
        fd_level_commit(u);
        fd_level_abort(u);
        out[k] = dup_dump(u);
    }
    CHECK_STR(out[1], out[0]);
    free(out[0]);
    free(out[1]);
    avm_buf_free(&b);
    avm_buf_free(&b2);
    fd_free(s);
    fd_free(t);
}

static int decode_bytes(const uint8_t *p, size_t n, char *err, size_t errlen)
{
    avm_mp_reader r;
    avm_mp_reader_init(&r, p, n, AVM_DECODE_DEFAULT_MAX);
    fd_store *t = NULL;
    int rv = fd_decode(&r, &t, err, errlen);
    if (rv == 0) {
        /* Whatever decodes must be usable: undo every level, label what is left. */
        while (fd_levels(t) > 0)
            fd_level_abort(t);
        for (uint32_t v = 0; v < fd_nvars(t); v++) {
            int64_t x;
            if (!fd_empty(t, v))
                fd_label(t, v, &x);
        }
        fd_free(t);
    }
    return rv;
}

TEST(damaged_bytes_are_refused)
{
    fd_store *s = midsearch();
    avm_buf b;
    encode(s, &b);
    fd_free(s);
    char err[200];
    /* Every truncation fails. */
    for (size_t n = 0; n < b.len; n++)
        CHECK(decode_bytes((const uint8_t *)b.data, n, err, sizeof(err)) != 0);
    /* Every single-byte change either fails or decodes to a usable store. */
    uint8_t *copy = malloc(b.len);
    for (size_t i = 0; i < b.len; i++) {
        static const uint8_t flips[] = {0x00, 0x01, 0x7f, 0x80, 0xc0, 0xcc, 0xdc, 0xff};
        for (size_t f = 0; f < sizeof(flips); f++) {
            memcpy(copy, b.data, b.len);
            copy[i] = flips[f];
            decode_bytes(copy, b.len, err, sizeof(err));
        }
    }
    free(copy);
    avm_buf_free(&b);

    /* A constraint naming a variable that does not exist. */
    avm_buf c;
    avm_buf_init(&c);
    avm_mp_put_array(&c, 7);
    avm_mp_put_uint(&c, 1);
    avm_mp_put_bool(&c, false);
    avm_mp_put_array(&c, 1); /* one variable, 1..3 as intervals */
    avm_mp_put_array(&c, 1);
    avm_mp_put_array(&c, 2);
    avm_mp_put_int(&c, 1);
    avm_mp_put_int(&c, 3);
    avm_mp_put_array(&c, 1); /* Neq 0 5 */
    avm_mp_put_array(&c, 4);
    avm_mp_put_uint(&c, FD_NEQ);
    avm_mp_put_uint(&c, 0);
    avm_mp_put_uint(&c, 5);
    avm_mp_put_int(&c, 0);
    avm_mp_put_array(&c, 0);
    avm_mp_put_array(&c, 0);
    avm_mp_put_array(&c, 0);
    err[0] = '\0';
    CHECK(decode_bytes((const uint8_t *)c.data, c.len, err, sizeof(err)) ==
          AVM_EMALFORMED);
    CHECK(strstr(err, "constraint variable") != NULL);
    avm_buf_free(&c);

    /* Intervals out of order. */
    avm_buf_init(&c);
    avm_mp_put_array(&c, 7);
    avm_mp_put_uint(&c, 1);
    avm_mp_put_bool(&c, false);
    avm_mp_put_array(&c, 1);
    avm_mp_put_array(&c, 1);
    avm_mp_put_array(&c, 4);
    avm_mp_put_int(&c, 5);
    avm_mp_put_int(&c, 6);
    avm_mp_put_int(&c, 1);
    avm_mp_put_int(&c, 2);
    for (int i = 0; i < 4; i++)
        avm_mp_put_array(&c, 0);
    CHECK(decode_bytes((const uint8_t *)c.data, c.len, err, sizeof(err)) ==
          AVM_EMALFORMED);
    CHECK(strstr(err, "sorted") != NULL);
    avm_buf_free(&c);
}

TEST_MAIN(T(domains_both_forms), T(eq_with_offset_is_domain_consistent),
          T(neq_removes_once_fixed), T(orders_are_bounds_consistent),
          T(alldiff_pigeonhole_fails), T(alldiff_hall_interval_prunes),
          T(alldiff_with_offsets), T(levels_restore_exactly), T(abort_removes_the_choice),
          T(round_trip_mid_search), T(damaged_bytes_are_refused))
