/* SHA-256 against the FIPS 180-4 example vectors (NIST "SHA256.pdf", "SHA2
 * Additional Examples") and the incremental interface against the one-shot one. */
#include <stdint.h>
#include <string.h>

#include "sha256.h"
#include "test.h"

static void hex_of(const void *p, size_t n, char out[65])
{
    uint8_t d[32];
    avm_sha256(p, n, d);
    avm_hex32(d, out);
}

TEST(empty)
{
    char hex[65];
    hex_of("", 0, hex);
    CHECK_STR(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(abc)
{
    char hex[65];
    hex_of("abc", 3, hex);
    CHECK_STR(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(two_blocks_448_bits)
{
    const char *msg = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    char hex[65];
    CHECK_INT(strlen(msg) * 8, 448);
    hex_of(msg, strlen(msg), hex);
    CHECK_STR(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(two_blocks_896_bits)
{
    const char *msg = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                      "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    char hex[65];
    hex_of(msg, strlen(msg), hex);
    CHECK_STR(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

TEST(million_a_incremental)
{
    /* One million 'a', fed in uneven pieces to exercise the block buffer. */
    char chunk[997];
    memset(chunk, 'a', sizeof(chunk));
    avm_sha256_ctx c;
    avm_sha256_init(&c);
    size_t left = 1000000;
    size_t step = 1;
    while (left > 0) {
        size_t n = step < left ? step : left;
        avm_sha256_update(&c, chunk, n);
        left -= n;
        step = step % (sizeof(chunk) - 7) + 7; /* 7 .. sizeof(chunk) - 1 */
    }
    uint8_t d[32];
    char hex[65];
    avm_sha256_final(&c, d);
    avm_hex32(d, hex);
    CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(incremental_matches_oneshot_at_every_split)
{
    /* Lengths around the padding boundaries (55, 56, 63, 64 bytes). */
    uint8_t msg[130];
    for (size_t i = 0; i < sizeof(msg); i++)
        msg[i] = (uint8_t)(i * 31 + 7);
    for (size_t len = 0; len <= sizeof(msg); len++) {
        uint8_t want[32];
        avm_sha256(msg, len, want);
        for (size_t split = 0; split <= len; split++) {
            avm_sha256_ctx c;
            uint8_t got[32];
            avm_sha256_init(&c);
            avm_sha256_update(&c, msg, split);
            avm_sha256_update(&c, msg + split, len - split);
            avm_sha256_final(&c, got);
            CHECK(memcmp(got, want, 32) == 0);
        }
    }
}

TEST_MAIN(T(empty), T(abc), T(two_blocks_448_bits), T(two_blocks_896_bits),
          T(million_a_incremental), T(incremental_matches_oneshot_at_every_split))
