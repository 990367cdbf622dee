/* A minimal test harness: each test file is one executable; each TEST runs in order,
 * and a failed CHECK prints its location and marks the test failed. main() comes from
 * TEST_MAIN(). ctest runs every executable with a timeout. */
#ifndef AVM_TEST_H
#define AVM_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*test_fn)(int *failed);
struct test_case {
    const char *name;
    test_fn fn;
};

#define TEST(name) static void test_##name(int *test_failed_)
#define CHECK(cond)                                                                      \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);     \
            *test_failed_ = 1;                                                           \
        }                                                                                \
    } while (0)
#define REQUIRE(cond)                                                                    \
    do {                                                                                 \
        if (!(cond)) {                                                                   \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);   \
            *test_failed_ = 1;                                                           \
            return;                                                                      \
        }                                                                                \
    } while (0)
#define CHECK_STR(a, b)                                                                  \
    do {                                                                                 \
        const char *a_ = (a), *b_ = (b);                                                 \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                           \
            fprintf(stderr,                                                              \
                    "%s:%d: CHECK_STR failed:\n  got:      %s\n  expected: %s\n",        \
                    __FILE__, __LINE__, a_ ? a_ : "(null)", b_ ? b_ : "(null)");         \
            *test_failed_ = 1;                                                           \
        }                                                                                \
    } while (0)
#define CHECK_INT(a, b)                                                                  \
    do {                                                                                 \
        long long a_ = (long long)(a), b_ = (long long)(b);                              \
        if (a_ != b_) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n",      \
                    __FILE__, __LINE__, #a, a_, b_);                                     \
            *test_failed_ = 1;                                                           \
        }                                                                                \
    } while (0)

#define T(name)                                                                          \
    {                                                                                    \
#name, test_##name                                                               \
    }
#define TEST_MAIN(...)                                                                   \
    int main(int argc, char **argv)                                                      \
    {                                                                                    \
        struct test_case cases[] = {__VA_ARGS__};                                        \
        int nfail = 0, nrun = 0;                                                         \
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {                  \
            if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)                         \
                continue;                                                                \
            int failed = 0;                                                              \
            cases[i].fn(&failed);                                                        \
            nrun++;                                                                      \
            printf("%s %s\n", failed ? "FAIL" : "ok  ", cases[i].name);                  \
            nfail += failed;                                                             \
        }                                                                                \
        printf("%d passed, %d failed\n", nrun - nfail, nfail);                           \
        return nfail ? 1 : 0;                                                            \
    }

#endif
