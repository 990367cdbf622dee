/* A standalone driver for libFuzzer targets, so that every target also runs in the
 * ordinary test suite with any compiler. It feeds the target every file of its
 * regression folder (tests/fuzz/regress/TARGET: inputs that once crashed it) and
 * of its corpus (tests/fuzz/corpus/TARGET), its seeds (fuzz.h), every prefix of
 * each seed, then a deterministic stream of mutated seeds, until a count or a time
 * limit is reached. A crash or abort() in the target fails the run.
 *
 *   fuzz_X_smoke [iterations [seconds [rng-seed]]]   defaults 200000, 5, 1
 *   fuzz_X_smoke --write-seeds DIR                   the seeds as files in DIR,
 *                                                    a corpus for the libFuzzer build
 *
 * The mutations are libFuzzer's simplest ones (bit flips, byte sets from a list of
 * interesting values, inserts, deletes, copies, splices, truncation). They are
 * nowhere near coverage guidance, but they reach the error paths of decoders that
 * structured seeds lead into. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fuzz.h"

#define DRIVER_MAX_INPUT 4096

typedef struct input {
    uint8_t *data;
    size_t len;
} input;

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Turns a seed string into its bytes (see fuzz.h). Exits on a malformed hex seed:
 * that is a bug in the target file. */
static input seed_bytes(const char *s)
{
    input in;
    size_t n = strlen(s);
    in.data = malloc(n + 1);
    if (in.data == NULL) {
        fprintf(stderr, "fuzz_driver: out of memory\n");
        exit(2);
    }
    if (strncmp(s, "hex:", 4) != 0) {
        memcpy(in.data, s, n);
        in.len = n;
        return in;
    }
    in.len = 0;
    int hi = -1;
    for (s += 4; *s; s++) {
        if (*s == ' ' || *s == '\n' || *s == '\t')
            continue;
        int d = hex_digit(*s);
        if (d < 0) {
            fprintf(stderr, "fuzz_driver: bad hex digit '%c' in a seed\n", *s);
            exit(2);
        }
        if (hi < 0) {
            hi = d;
        } else {
            in.data[in.len++] = (uint8_t)(hi << 4 | d);
            hi = -1;
        }
    }
    if (hi >= 0) {
        fprintf(stderr, "fuzz_driver: odd number of hex digits in a seed\n");
        exit(2);
    }
    return in;
}

/* Runs the target on a private, exactly sized copy, so that AddressSanitizer sees
 * any read past the end, as under libFuzzer. */
static void run(const uint8_t *p, size_t n)
{
    uint8_t *copy = malloc(n > 0 ? n : 1);
    if (copy == NULL) {
        fprintf(stderr, "fuzz_driver: out of memory\n");
        exit(2);
    }
    if (n > 0)
        memcpy(copy, p, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
}

/* xorshift64*: small, fast and the same on every platform. */
static uint64_t rng_state;

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dull;
}

static size_t rnd_below(size_t n)
{
    return n == 0 ? 0 : (size_t)(rnd() % n);
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Interesting byte values: boundaries, and type bytes of common encodings
 * (msgpack headers for nil, never-used, long lengths, floats, ext). */
static const uint8_t interesting[] = {
    0x00, 0x01, 0x02, 0x0f, 0x10, 0x1f, 0x20, 0x7e, 0x7f, 0x80, 0x81, 0xfe,
    0xff, 0x90, 0x91, 0xa0, 0xc0, 0xc1, 0xc4, 0xc7, 0xc9, 0xca, 0xcb, 0xcc,
    0xcf, 0xd3, 0xd4, 0xd9, 0xdb, 0xdc, 0xdd, 0xdf, 0xe0, '(',  ')',  '"'};

/* One random edit of buf[0..*len) (capacity DRIVER_MAX_INPUT). */
static void mutate(uint8_t *buf, size_t *len, const input *seeds, size_t nseeds)
{
    size_t n = *len;
    switch (rnd_below(9)) {
    case 0: /* flip a bit */
        if (n > 0)
            buf[rnd_below(n)] ^= (uint8_t)(1u << rnd_below(8));
        break;
    case 1: /* set a byte to a random value */
        if (n > 0)
            buf[rnd_below(n)] = (uint8_t)rnd();
        break;
    case 2: /* set a byte to an interesting value */
        if (n > 0)
            buf[rnd_below(n)] = interesting[rnd_below(sizeof(interesting))];
        break;
    case 3: /* insert a byte */
        if (n < DRIVER_MAX_INPUT) {
            size_t at = rnd_below(n + 1);
            memmove(buf + at + 1, buf + at, n - at);
            buf[at] = rnd_below(2) ? (uint8_t)rnd()
                                   : interesting[rnd_below(sizeof(interesting))];
            *len = n + 1;
        }
        break;
    case 4: /* delete a run of bytes */
        if (n > 0) {
            size_t at = rnd_below(n);
            size_t k = 1 + rnd_below(n - at < 8 ? n - at : 8);
            memmove(buf + at, buf + at + k, n - at - k);
            *len = n - k;
        }
        break;
    case 5: /* copy a run of bytes over another place */
        if (n > 1) {
            size_t from = rnd_below(n), to = rnd_below(n);
            size_t k = 1 + rnd_below(16);
            if (k > n - from)
                k = n - from;
            if (k > n - to)
                k = n - to;
            memmove(buf + to, buf + from, k);
        }
        break;
    case 6: /* overwrite with 0xff: huge lengths and counts */
        if (n > 0) {
            size_t at = rnd_below(n);
            size_t k = 1 + rnd_below(4);
            for (size_t i = at; i < n && i < at + k; i++)
                buf[i] = 0xff;
        }
        break;
    case 7: /* splice: keep a prefix, append a suffix of another seed */
        if (nseeds > 0) {
            const input *o = &seeds[rnd_below(nseeds)];
            size_t keep = rnd_below(n + 1);
            size_t from = rnd_below(o->len + 1);
            size_t k = o->len - from;
            if (keep + k > DRIVER_MAX_INPUT)
                k = DRIVER_MAX_INPUT - keep;
            if (k > 0)
                memcpy(buf + keep, o->data + from, k);
            *len = keep + k;
        }
        break;
    default: /* truncate */
        *len = rnd_below(n + 1);
        break;
    }
}

/* Runs the target on every regular file of dir (sorted by name, so that a failure
 * names the same file each time); a missing dir is empty. The number of files. */
static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static unsigned long replay_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || strcmp(e->d_name, "README") == 0)
            continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof(*names));
            if (nn == NULL)
                exit(2);
            names = nn;
        }
        if ((names[n] = strdup(e->d_name)) == NULL)
            exit(2);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp_names);
    unsigned long runs = 0;
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
            fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
            exit(2);
        }
        static uint8_t buf[1 << 20];
        size_t len = fread(buf, 1, sizeof(buf), f);
        fclose(f);
        run(buf, len);
        runs++;
        free(names[i]);
    }
    free(names);
    return runs;
}

static int write_seeds(const char *dir, const input *seeds, size_t nseeds)
{
    for (size_t i = 0; i < nseeds; i++) {
        char path[4096];
        snprintf(path, sizeof(path), "%s/seed-%03zu", dir, i);
        FILE *f = fopen(path, "wb");
        if (f == NULL) {
            fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
            return 1;
        }
        if (seeds[i].len > 0 &&
            fwrite(seeds[i].data, 1, seeds[i].len, f) != seeds[i].len) {
            fprintf(stderr, "fuzz_driver: %s: write failed\n", path);
            fclose(f);
            return 1;
        }
        if (fclose(f) != 0) {
            fprintf(stderr, "fuzz_driver: %s: %s\n", path, strerror(errno));
            return 1;
        }
    }
    printf("wrote %zu seeds to %s\n", nseeds, dir);
    return 0;
}

int main(int argc, char **argv)
{
    size_t nseeds = 0;
    const char *const *strs = fuzz_seeds(&nseeds);
    input *seeds = calloc(nseeds > 0 ? nseeds : 1, sizeof(*seeds));
    if (seeds == NULL)
        return 2;
    for (size_t i = 0; i < nseeds; i++)
        seeds[i] = seed_bytes(strs[i]);

    if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0) {
        int rc = write_seeds(argv[2], seeds, nseeds);
        for (size_t i = 0; i < nseeds; i++)
            free(seeds[i].data);
        free(seeds);
        return rc;
    }

    unsigned long iterations = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
    double seconds = argc > 2 ? strtod(argv[2], NULL) : 5.0;
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 10) : 1;
    if (rng_state == 0)
        rng_state = 1; /* xorshift's one fixed point */

    double start = now_seconds();
    unsigned long runs = 0, replayed = 0;
#ifdef AVM_FUZZ_REGRESS_DIR
    replayed += replay_dir(AVM_FUZZ_REGRESS_DIR);
#endif
#ifdef AVM_FUZZ_CORPUS_DIR
    replayed += replay_dir(AVM_FUZZ_CORPUS_DIR);
#endif
    runs += replayed;
    for (size_t i = 0; i < nseeds; i++) {
        for (size_t n = 0; n <= seeds[i].len; n++) {
            run(seeds[i].data, n);
            runs++;
        }
    }

    static uint8_t buf[DRIVER_MAX_INPUT];
    unsigned long done = 0;
    for (; done < iterations && nseeds > 0; done++) {
        if (done % 256 == 0 && now_seconds() - start > seconds)
            break;
        const input *s = &seeds[rnd_below(nseeds)];
        size_t len = s->len < DRIVER_MAX_INPUT ? s->len : DRIVER_MAX_INPUT;
        memcpy(buf, s->data, len);
        size_t nmut = 1 + rnd_below(4);
        for (size_t k = 0; k < nmut; k++)
            mutate(buf, &len, seeds, nseeds);
        run(buf, len);
        runs++;
    }

    printf("%s: %lu regression and corpus files, %zu seeds, %lu inputs (%lu mutated) in "
           "%.2f s\n",
           argv[0], replayed, nseeds, runs, done, now_seconds() - start);
    for (size_t i = 0; i < nseeds; i++)
        free(seeds[i].data);
    free(seeds);
    return 0;
}
