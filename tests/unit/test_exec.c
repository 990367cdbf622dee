/* Executions as plain data: an execution serialized at any instruction and
 * resumed from the bytes ends exactly as an uninterrupted one (result, trace and
 * store), and damaged bytes are refused with an error, never run. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "compiler.h"
#include "embedded.h"
#include "module.h"
#include "test.h"
#include "vm.h"

#ifndef AVM_SOURCE_DIR
#error "AVM_SOURCE_DIR must name the source tree"
#endif

static char *slurp(const char *rel, size_t *len)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", AVM_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static avm_module *compile_path(const char *rel)
{
    size_t len;
    char *src = slurp(rel, &len);
    if (src == NULL)
        return NULL;
    avm_module *m = NULL;
    avm_diag d;
    int rv = avm_compile(rel, src, len, &m, &d);
    free(src);
    return rv == 0 ? m : NULL;
}

static avm_module *compile_str(const char *src)
{
    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("test.avm", src, strlen(src), &m, &d) != 0) {
        char msg[700];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "compile: %s\n", msg);
        return NULL;
    }
    return m;
}

/* Everything observable about a finished run, as text. */
static void outcome(avm_exec *x, avm_embedded *e, avm_buf *b)
{
    avm_buf_printf(b, "status %d\n", (int)avm_exec_status(x));
    if (avm_exec_status(x) == AVM_RUN_DONE)
        avm_val_print(b, avm_exec_result(x));
    else if (avm_exec_status(x) == AVM_RUN_FAILED)
        avm_error_print(b, avm_exec_error(x));
    avm_buf_puts(b, "\n");
    for (size_t i = 0; i < avm_exec_trace_len(x); i++) {
        avm_event_print(b, &avm_exec_trace(x)[i]);
        avm_buf_puts(b, "\n");
    }
    avm_embedded_dump(e, b, false);
}

static int start(avm_embedded *e, avm_module *m, int fn, avm_mode mode, avm_exec **out)
{
    avm_exec_config cfg = {.mode = mode, .keep_trace = true, .allow_unsafe = true};
    avm_exec *x = avm_exec_new(&e->plat, &cfg);
    avm_val self, input;
    avm_embedded_toplevel(&self, &input);
    char err[256];
    int rv = avm_exec_start(x, m, fn, self, input, err, sizeof(err));
    avm_val_release(self);
    avm_val_release(input);
    if (rv != 0) {
        avm_exec_free(x);
        return rv;
    }
    *out = x;
    return 0;
}

/* Runs m uninterrupted, then again serializing and resuming from bytes after every
 * `slice` instructions; both outcomes must be identical. Returns the number of
 * round trips made, or -1 on a mismatch. */
/* When set, roundtrip_run's nodes reach these controllers too. */
static bool (*rt_reach_ctrl)(void *data, avm_val c);

static int roundtrip_run(avm_module *m, int fn, avm_mode mode, uint64_t slice)
{
    avm_embedded e1, e2;
    avm_embedded_init(&e1, "node1", "main");
    avm_embedded_init(&e2, "node1", "main");
    if (rt_reach_ctrl != NULL)
        e1.plat.reachable_controller = e2.plat.reachable_controller = rt_reach_ctrl;
    avm_exec *x1, *x2;
    if (start(&e1, m, fn, mode, &x1) != 0 || start(&e2, m, fn, mode, &x2) != 0)
        return -1;
    avm_exec_run(x1, 0);

    int trips = 0;
    while (avm_exec_run(x2, slice) == AVM_RUN_YIELD) {
        avm_buf b;
        avm_buf_init(&b);
        if (avm_exec_encode(x2, &b) != 0) {
            fprintf(stderr, "encode failed\n");
            return -1;
        }
        avm_exec_free(x2);
        char err[256] = "";
        if (avm_exec_decode((const uint8_t *)b.data, b.len, &e2.plat, &x2, err,
                            sizeof(err)) != 0) {
            fprintf(stderr, "decode failed after %d trips: %s\n", trips, err);
            avm_buf_free(&b);
            return -1;
        }
        /* Encoding is deterministic: the decoded state encodes to the same bytes. */
        avm_buf b2;
        avm_buf_init(&b2);
        avm_exec_encode(x2, &b2);
        bool same = b.len == b2.len && memcmp(b.data, b2.data, b.len) == 0;
        avm_buf_free(&b);
        avm_buf_free(&b2);
        if (!same) {
            fprintf(stderr, "re-encoding differs after %d trips\n", trips);
            return -1;
        }
        trips++;
    }
    avm_buf o1, o2;
    avm_buf_init(&o1);
    avm_buf_init(&o2);
    outcome(x1, &e1, &o1);
    outcome(x2, &e2, &o2);
    int rv = strcmp(avm_buf_cstr(&o1), avm_buf_cstr(&o2)) == 0 ? trips : -1;
    if (rv < 0)
        fprintf(stderr, "outcomes differ:\n--- uninterrupted\n%s--- resumed\n%s",
                avm_buf_cstr(&o1), avm_buf_cstr(&o2));
    avm_buf_free(&o1);
    avm_buf_free(&o2);
    avm_exec_free(x1);
    avm_exec_free(x2);
    avm_embedded_close(&e1);
    avm_embedded_close(&e2);
    return rv;
}

/* A budget of 1 stops the run at every jump, call, return and AVM instruction:
 * the execution is serialized and resumed at each of them. */
TEST(ping_pong_resumes_at_every_stop)
{
    avm_module *m = compile_path("examples/ping_pong.avm");
    REQUIRE(m != NULL);
    for (avm_mode mode = AVM_MODE_DEFAULT; mode <= AVM_MODE_STRICT; mode++) {
        int trips = roundtrip_run(m, -1, mode, 1);
        printf("  %s: %d round trips\n", mode ? "strict" : "default", trips);
        CHECK(trips >= 40);
    }
    avm_module_release(m);
}

TEST(battleship_resumes_mid_transaction)
{
    avm_module *m = compile_path("examples/battleship.avm");
    REQUIRE(m != NULL);
    for (uint64_t slice = 1; slice < 40; slice += 7)
        CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, slice) > 0);
    int fn = avm_module_find(m, "game-with-rollback", AVM_FN_FUNC);
    REQUIRE(fn >= 0);
    CHECK(roundtrip_run(m, fn, AVM_MODE_DEFAULT, 3) > 0);
    /* A failing run (strict playFullGame) fails the same way after resuming. */
    fn = avm_module_find(m, "play-full-game", AVM_FN_FUNC);
    REQUIRE(fn >= 0);
    CHECK(roundtrip_run(m, fn, AVM_MODE_STRICT, 2) > 0);
    avm_module_release(m);
}

static const char *nested_src = "(pure add (a b) (+ a b))\n"
                                "(defun loop (n acc) (if (= n 0) acc (loop (- n 1) (+ "
                                "acc (callPure \"add\" (list n 1))))))\n"
                                "(behavior counter\n"
                                "  (let ((s (getState)) (n (if (null? s) 0 (head s))))\n"
                                "    (setState (list (+ n (input))))\n"
                                "    (list (+ n (input)))))\n"
                                "(main\n"
                                "  (let ((c (createObj \"counter\" #ctl\"main\"))\n"
                                "        (t (beginTx)))\n"
                                "    (call c 5)\n"
                                "    (let ((inner (beginTx)))\n"
                                "      (call c 7)\n"
                                "      (abortTx inner))\n"
                                "    (let ((inner2 (beginTx)))\n"
                                "      (call c 11)\n"
                                "      (commitTx inner2))\n"
                                "    (commitTx t)\n"
                                "    (list (getState) (call c 0) (loop 20 0))))\n";

TEST(nested_transactions_and_pure_calls_resume)
{
    avm_module *m = compile_str(nested_src);
    REQUIRE(m != NULL);
    CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, 1) > 50);
    CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, 5) > 10);
    avm_module_release(m);
}

/* An entry function that tail-calls another (its frame then runs that function)
 * resumes from bytes at every stop; so does a run that fails inside a call inside a
 * transaction (its failed state, which a node checkpoints, decodes). */
static const char *tail_src = "(behavior boom (do (beginTx) (head 5)))\n"
                              "(defun spin (i n) (if (< i n) (spin (+ i 1) n) i))\n"
                              "(defun counted () (spin 0 30))\n"
                              "(defun fails () (let ((b (createObj \"boom\" "
                              "#ctl\"main\")) (t (beginTx))) (call b 1)))\n"
                              "(main 0)\n";

TEST(tail_called_entry_and_failed_states_decode)
{
    avm_module *m = compile_str(tail_src);
    REQUIRE(m != NULL);
    int fn = avm_module_find(m, "counted", AVM_FN_FUNC);
    REQUIRE(fn >= 0);
    CHECK(roundtrip_run(m, fn, AVM_MODE_DEFAULT, 1) > 20);
    fn = avm_module_find(m, "fails", AVM_FN_FUNC);
    REQUIRE(fn >= 0);
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *x;
    REQUIRE(start(&e, m, fn, AVM_MODE_DEFAULT, &x) == 0);
    CHECK(avm_exec_run(x, 0) == AVM_RUN_FAILED);
    avm_buf b;
    avm_buf_init(&b);
    CHECK(avm_exec_encode(x, &b) == 0);
    avm_exec *y = NULL;
    char err[256] = "";
    int rv =
        avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &y, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "failed state does not decode: %s\n", err);
    CHECK(rv == 0);
    if (y != NULL) {
        CHECK(avm_exec_status(y) == AVM_RUN_FAILED);
        CHECK(avm_exec_error(y)->code == avm_exec_error(x)->code);
        avm_exec_free(y);
    }
    avm_buf_free(&b);
    avm_exec_free(x);
    avm_embedded_close(&e);
    avm_module_release(m);
}

/* Every truncation and many single-byte corruptions of a valid mid-run state are
 * either refused with an error, or decode to a state that runs to an end without
 * memory errors (the sanitizer build checks that). */
TEST(damaged_states_are_refused_or_safe)
{
    avm_module *m = compile_path("examples/ping_pong.avm");
    REQUIRE(m != NULL);
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *x;
    REQUIRE(start(&e, m, -1, AVM_MODE_DEFAULT, &x) == 0);
    avm_exec_run(x, 60); /* inside the nested calls */
    CHECK(avm_exec_status(x) == AVM_RUN_YIELD);
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_exec_encode(x, &b) == 0);
    avm_exec_free(x);

    int refused = 0, accepted = 0;
    for (size_t n = 0; n < b.len; n++) {
        avm_exec *y = NULL;
        char err[256];
        int rv =
            avm_exec_decode((const uint8_t *)b.data, n, &e.plat, &y, err, sizeof(err));
        CHECK(rv != 0);
        CHECK(err[0] != '\0');
        refused += rv != 0;
        if (rv == 0)
            avm_exec_free(y);
    }
    uint8_t *copy = malloc(b.len);
    uint32_t seed = 12345;
    for (int i = 0; i < 3000; i++) {
        memcpy(copy, b.data, b.len);
        seed = seed * 1103515245u + 12345u;
        size_t at = (seed >> 8) % b.len;
        seed = seed * 1103515245u + 12345u;
        copy[at] ^= (uint8_t)(1u << ((seed >> 16) % 8));
        avm_exec *y = NULL;
        char err[256];
        if (avm_exec_decode(copy, b.len, &e.plat, &y, err, sizeof(err)) == 0) {
            accepted++;
            avm_exec_run(y, 100000);
            avm_exec_free(y);
        } else {
            refused++;
        }
    }
    printf("  damaged states: %d refused, %d accepted and ran safely\n", refused,
           accepted);
    CHECK(refused > 0);
    free(copy);
    avm_buf_free(&b);
    avm_embedded_close(&e);
    avm_module_release(m);
}

TEST(wrong_version_is_refused_by_name)
{
    /* ["AVMEXEC", 99, nil...] */
    const uint8_t bytes[] = {0x9e, 0xa7, 'A',  'V',  'M',  'E',  'X',  'E',
                             'C',  99,   0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0,
                             0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0};
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *y = NULL;
    char err[256] = "";
    CHECK(avm_exec_decode(bytes, sizeof(bytes), &e.plat, &y, err, sizeof(err)) ==
          AVM_EVERSION);
    CHECK(strstr(err, "version 99") != NULL);
    avm_embedded_close(&e);
}

/* A store that keeps the checkpoint carried by each committed write set, as a
 * durable store does in the same atomic step. */
typedef struct ckstore {
    avm_store base;
    avm_store *inner;
    avm_buf ckpt;
    avm_buf log; /* the trace log, from the chunks that come with checkpoints */
    int commits;
    size_t ckpt_min, ckpt_max; /* sizes of the checkpoints seen */
} ckstore;

static ckstore the_ck;

static const avm_objrec *ck_get(avm_store *s, void *snap, avm_val oid)
{
    return the_ck.inner->ops->get(the_ck.inner, snap, oid);
}
static int ck_apply(avm_store *s, const avm_writeset *ws, bool *committed)
{
    int rv = the_ck.inner->ops->apply(the_ck.inner, ws, committed);
    if (rv == 0 && *committed && ws->ckpt_id != NULL) {
        the_ck.commits++;
        if (the_ck.ckpt_min == 0 || ws->ckpt_len < the_ck.ckpt_min)
            the_ck.ckpt_min = ws->ckpt_len;
        if (ws->ckpt_len > the_ck.ckpt_max)
            the_ck.ckpt_max = ws->ckpt_len;
        avm_buf_free(&the_ck.ckpt);
        avm_buf_init(&the_ck.ckpt);
        avm_buf_put(&the_ck.ckpt, ws->ckpt_state, ws->ckpt_len);
        /* A chunk replaces whatever the log held from its offset on, as a durable
         * store's keyed chunks do. */
        if (ws->ckpt_trace_at > the_ck.log.len)
            abort();
        the_ck.log.len = ws->ckpt_trace_at;
        if (ws->ckpt_trace_len > 0)
            avm_buf_put(&the_ck.log, ws->ckpt_trace, ws->ckpt_trace_len);
    }
    return rv;
}
static int ck_ids(avm_store *s, avm_val *out)
{
    return the_ck.inner->ops->ids(the_ck.inner, out);
}
static const avm_purefn *ck_pure_get(avm_store *s, avm_val name)
{
    return the_ck.inner->ops->pure_get(the_ck.inner, name);
}
static int ck_pure_put(avm_store *s, const avm_purefn *fn)
{
    return the_ck.inner->ops->pure_put(the_ck.inner, fn);
}
static uint64_t ck_next_seq(avm_store *s)
{
    return the_ck.inner->ops->next_seq(the_ck.inner);
}
static const struct avm_store_ops ck_ops = {.get = ck_get,
                                            .apply = ck_apply,
                                            .ids = ck_ids,
                                            .pure_get = ck_pure_get,
                                            .pure_put = ck_pure_put,
                                            .next_seq = ck_next_seq};

static const char *counter_src =
    "(behavior counter\n"
    "  (let ((s (getState)) (n (if (null? s) 0 (head s))))\n"
    "    (setState (list (+ n (input))))\n"
    "    (list (+ n (input)))))\n"
    "(defun loop (c i)\n"
    "  (if (= i 0) (call c 0)\n"
    "      (let ((t (beginTx))) (call c i) (commitTx t) (loop c (- i 1)))))\n"
    "(main (let ((c (createObj \"counter\" #ctl\"main\"))) (loop c 40)))\n";

/* Crash after k commits, resume from the last checkpoint: every commit applies
 * exactly once (the counter ends at 820 = 1 + ... + 40, not more). */
TEST(checkpoint_at_commit_resumes_exactly_once)
{
    avm_module *m = compile_str(counter_src);
    REQUIRE(m != NULL);
    for (int k = 1; k <= 40; k += 3) {
        avm_embedded e;
        avm_embedded_init(&e, "node1", "main");
        memset(&the_ck, 0, sizeof(the_ck));
        the_ck.base.ops = &ck_ops;
        the_ck.inner = e.store;
        avm_platform plat = e.plat;
        plat.store = &the_ck.base;
        avm_exec_config cfg = {.keep_trace = true};
        avm_exec *x = avm_exec_new(&plat, &cfg);
        avm_val self, input;
        avm_embedded_toplevel(&self, &input);
        REQUIRE(avm_exec_start(x, m, -1, self, input, NULL, 0) == 0);
        avm_val_release(self);
        avm_val_release(input);
        REQUIRE(avm_exec_set_checkpoint(x, "node1/e1") == 0);
        while (the_ck.commits < k && avm_exec_run(x, 1) == AVM_RUN_YIELD)
            ;
        /* Run a few more instructions past the commit, then crash. */
        avm_exec_run(x, 7);
        avm_exec_free(x);
        avm_exec *y = NULL;
        char err[256] = "";
        /* The checkpoint holds the state and the short tail of the trace not saved
         * yet; the rest of the log comes from the chunks, without which it does
         * not decode. */
        if (the_ck.log.len > 0)
            CHECK(avm_exec_decode((const uint8_t *)the_ck.ckpt.data, the_ck.ckpt.len,
                                  &plat, &y, err, sizeof(err)) != 0);
        REQUIRE(avm_exec_decode_ex((const uint8_t *)the_ck.ckpt.data, the_ck.ckpt.len,
                                   (const uint8_t *)the_ck.log.data, the_ck.log.len,
                                   &plat, &y, err, sizeof(err)) == 0);
        CHECK(avm_exec_run(y, 0) == AVM_RUN_DONE);
        avm_buf b;
        avm_buf_init(&b);
        avm_val_print(&b, avm_exec_result(y));
        CHECK_STR(avm_buf_cstr(&b), "820");
        avm_buf_free(&b);
        CHECK_INT(the_ck.commits, 40);
        /* Every event is in the log exactly once: the resumed run's trace is the
         * uninterrupted run's. */
        CHECK_INT(avm_exec_trace_len(y), 1 + 40 * 3 + 1); /* create, 10 x 3, last call */
        /* A checkpoint carries at most 1 KiB of the trace (the rest is in chunks)
         * and the bounded ring of finished transaction ids: it does not grow with
         * the log. */
        if (k == 40)
            printf("  checkpoints %zu..%zu bytes, trace log %zu bytes\n", the_ck.ckpt_min,
                   the_ck.ckpt_max, the_ck.log.len);
        CHECK(the_ck.ckpt_max - the_ck.ckpt_min < 1024 + 400);
        if (k == 40)
            CHECK(the_ck.log.len > 1024);
        avm_exec_free(y);
        avm_buf_free(&the_ck.ckpt);
        avm_buf_free(&the_ck.log);
        avm_embedded_close(&e);
    }
    avm_module_release(m);
}

/* Values never nest deeper than AVM_MAX_DEPTH: building a deeper one is an
 * EvalError naming the limit, and a state holding values at the limit serializes. */
TEST(value_depth_is_bounded)
{
    avm_module *m = compile_str(
        "(defun wrap (l n) (if (= n 0) l (wrap (list l) (- n 1))))\n"
        "(defun wrapc (l n) (if (= n 0) l (wrapc (cons l '()) (- n 1))))\n"
        "(defun deep-list () (wrap '() 128))\n"
        "(defun deep-cons () (wrapc '() 128))\n"
        "(defun deep-put () (put '() 'k (wrap '() 127)))\n"
        "(main (let ((v (wrap '() 127))) (beginTx) (list (length v) (wrap v 1))))\n");
    REQUIRE(m != NULL);
    const char *entries[] = {"deep-list", "deep-cons", "deep-put"};
    for (int i = 0; i < 3; i++) {
        avm_embedded e;
        avm_embedded_init(&e, "node1", "main");
        avm_exec *x;
        REQUIRE(start(&e, m, avm_module_find(m, entries[i], AVM_FN_FUNC),
                      AVM_MODE_DEFAULT, &x) == 0);
        CHECK(avm_exec_run(x, 0) == AVM_RUN_FAILED);
        CHECK(avm_exec_error(x)->code == AVM_ERR_EVAL);
        avm_buf b;
        avm_buf_init(&b);
        avm_error_print(&b, avm_exec_error(x));
        CHECK(strstr(avm_buf_cstr(&b), "deeper than 128 lists") != NULL);
        avm_buf_free(&b);
        avm_exec_free(x);
        avm_embedded_close(&e);
    }
    /* main holds a 127-deep value (and makes a 128-deep one): it round-trips at
     * every instruction. */
    CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, 1) > 0);
    avm_module_release(m);
}

/* A multi-controller transaction (its controller set, savepoints that keep it)
 * and a bundle survive serialization at every stop. */
static bool main_or_aux(void *data, avm_val c)
{
    (void)data;
    return c.kind == AVM_CTRLID &&
           (strcmp(c.u.s->data, "main") == 0 || strcmp(c.u.s->data, "aux") == 0);
}

static const char *multi_src =
    "(behavior acc (do (setState (list (input))) (list (input))))\n"
    "(main (let ((a (createObj \"acc\" #ctl\"main\")) (b (createObj \"acc\" "
    "#ctl\"aux\"))\n"
    "  (j (joinBundle \"b1\"))\n"
    "  (t (beginTx (list #ctl\"main\" #ctl\"aux\")))\n"
    "  (n (beginTx #ctl\"aux\")) (r1 (call b 1)) (x (abortTx n))\n"
    "  (n2 (beginTx)) (r2 (call a 2)) (c2 (commitTx n2))\n"
    "  (r3 (call b 3)) (c (createObj \"acc\" #ctl\"aux\")) (ok (commitTx t)))\n"
    "  (list r1 r2 r3 ok (getController c))))\n";

TEST(multi_controller_tx_and_bundle_resume)
{
    avm_module *m = compile_str(multi_src);
    REQUIRE(m != NULL);
    rt_reach_ctrl = main_or_aux;
    CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, 1) > 20);
    CHECK(roundtrip_run(m, -1, AVM_MODE_DEFAULT, 3) > 5);
    rt_reach_ctrl = NULL;

    /* Stopped inside the nested savepoint: the decoded execution has the set, the
     * bundle, and the set the savepoint restores. */
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    e.plat.reachable_controller = main_or_aux;
    avm_exec *x;
    REQUIRE(start(&e, m, -1, AVM_MODE_DEFAULT, &x) == 0);
    avm_exec_txinfo ti;
    while (avm_exec_status(x) == AVM_RUN_YIELD && !(avm_exec_tx(x, &ti) && ti.depth == 2))
        avm_exec_run(x, 1);
    REQUIRE(avm_exec_tx(x, &ti) && ti.depth == 2);
    CHECK_STR(avm_exec_bundle(x), "b1");
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_exec_encode(x, &b) == 0);
    avm_exec_free(x);
    avm_exec *y = NULL;
    char err[256] = "";
    int rv =
        avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &y, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "decode: %s\n", err);
    REQUIRE(rv == 0);
    CHECK_STR(avm_exec_bundle(y), "b1");
    REQUIRE(avm_exec_tx(y, &ti));
    CHECK(ti.depth == 2);
    CHECK_STR(ti.ctrl.u.s->data, "main");
    avm_buf pb;
    avm_buf_init(&pb);
    avm_val_print(&pb, ti.ctrls);
    CHECK_STR(avm_buf_cstr(&pb), "(#ctl\"main\" #ctl\"aux\")");
    avm_buf_free(&pb);
    CHECK(avm_exec_run(y, 0) == AVM_RUN_DONE);
    avm_buf_init(&pb);
    avm_val_print(&pb, avm_exec_result(y));
    CHECK_STR(avm_buf_cstr(&pb), "(1 2 3 #t #ctl\"aux\")");
    avm_buf_free(&pb);
    /* The API: set, clear, refused inside a transaction. */
    CHECK(avm_exec_set_bundle(y, NULL) == 0);
    CHECK(avm_exec_bundle(y) == NULL);
    CHECK(avm_exec_set_bundle(y, "b9") == 0);
    CHECK_STR(avm_exec_bundle(y), "b9");
    CHECK(avm_exec_set_bundle(y, "") == AVM_EINVAL);
    avm_exec_free(y);
    avm_buf_free(&b);
    avm_embedded_close(&e);
    avm_module_release(m);
}

/* States written by earlier formats still decode: version 2 (no controller set, no
 * bundle) and version 3 (no constraint layers). Made from a version 4 state of a
 * finished run with no transaction open, no bundle and no constraints, by removing
 * what the later versions added. */
static void downgrade(int *test_failed_, uint8_t *p, size_t *np, int to)
{
    size_t n = *np;
    *np = 0;
    REQUIRE(n > 10 && p[9] == 4);
    p[9] = (uint8_t)to;
    if (to == 2) {
        /* The transaction: [[] nil [] [] [] [] [] [] nil] -> without the final nil. */
        static const uint8_t tx3[] = {0x9a, 0x90, 0xc0, 0x90, 0x90,
                                      0x90, 0x90, 0x90, 0x90, 0xc0};
        size_t at = 0;
        for (at = 0; at + sizeof(tx3) <= n; at++)
            if (memcmp(p + at, tx3, sizeof(tx3)) == 0)
                break;
        REQUIRE(at + sizeof(tx3) <= n);
        p[at] = 0x99;
        memmove(p + at + sizeof(tx3) - 1, p + at + sizeof(tx3), n - at - sizeof(tx3));
        n--;
    }
    /* The outcome: [status(0) started(#t) ... bundle(nil) fd(nil) nd(nil)], an
     * array16 of 16 -> 13 (version 2) or 14 (version 3) elements, a fixarray. */
    int drop = to == 2 ? 3 : 2;
    for (int i = 0; i < drop; i++) {
        REQUIRE(p[n - 1] == 0xc0);
        n--;
    }
    size_t o = n;
    while (o-- > 0)
        if (p[o] == 0xdc && p[o + 1] == 0x00 && p[o + 2] == 0x10 && p[o + 3] == 0x00 &&
            p[o + 4] == 0xc3)
            break;
    REQUIRE(o < n);
    p[o] = to == 2 ? 0x9d : 0x9e;
    memmove(p + o + 1, p + o + 3, n - o - 3);
    *np = n - 2;
}

static void old_state_decodes(int *test_failed_, int to)
{
    avm_module *m = compile_str("(main (let ((t (beginTx))) (commitTx t) 7))");
    REQUIRE(m != NULL);
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *x;
    REQUIRE(start(&e, m, -1, AVM_MODE_DEFAULT, &x) == 0);
    REQUIRE(avm_exec_run(x, 0) == AVM_RUN_DONE);
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_exec_encode(x, &b) == 0);
    uint8_t *p = (uint8_t *)b.data;
    size_t n = b.len;
    downgrade(test_failed_, p, &n, to);
    REQUIRE(n > 0);
    avm_exec *y = NULL;
    char err[256] = "";
    int rv = avm_exec_decode(p, n, &e.plat, &y, err, sizeof(err));
    if (rv != 0)
        fprintf(stderr, "decode: %s\n", err);
    REQUIRE(rv == 0);
    CHECK(avm_exec_status(y) == AVM_RUN_DONE);
    CHECK(avm_exec_result(y).kind == AVM_INT && avm_exec_result(y).u.i == 7);
    CHECK(avm_exec_bundle(y) == NULL);
    CHECK(avm_exec_trace_len(y) == avm_exec_trace_len(x));
    /* Re-encoded, it is a version 4 state again. */
    avm_buf b2;
    avm_buf_init(&b2);
    CHECK(avm_exec_encode(y, &b2) == 0);
    CHECK(b2.len == b.len && ((const uint8_t *)b2.data)[9] == 4);
    avm_buf_free(&b2);
    avm_exec_free(y);
    avm_exec_free(x);
    avm_buf_free(&b);
    avm_embedded_close(&e);
    avm_module_release(m);
}

/* The principal that started an execution: absent, the state is encoded as before
 * (a config of six elements, so states written before principals existed are these
 * bytes and decode without one); set, it is a seventh element that survives a round
 * trip; a seventh element that is not a non-empty string is refused. */
TEST(principal_travels_with_the_state)
{
    avm_module *m = compile_str(tail_src);
    REQUIRE(m != NULL);
    int fn = avm_module_find(m, "counted", AVM_FN_FUNC);
    REQUIRE(fn >= 0);
    avm_embedded e;
    avm_embedded_init(&e, "node1", "main");
    avm_exec *x;
    REQUIRE(start(&e, m, fn, AVM_MODE_DEFAULT, &x) == 0);
    CHECK(avm_exec_principal(x) == NULL);
    CHECK_INT(avm_exec_set_principal(x, ""), AVM_EINVAL);
    avm_buf b;
    avm_buf_init(&b);
    REQUIRE(avm_exec_encode(x, &b) == 0);
    /* [ "AVMEXEC", 4, config ...]: 0x9e, 0xa7 + 7 magic bytes, 0x04, then config. */
    REQUIRE(b.len > 10);
    CHECK_INT((uint8_t)b.data[10], 0x96);
    avm_exec *y = NULL;
    char err[256] = "";
    REQUIRE(avm_exec_decode((const uint8_t *)b.data, b.len, &e.plat, &y, err,
                            sizeof(err)) == 0);
    CHECK(avm_exec_principal(y) == NULL);
    avm_exec_free(y);

    CHECK_INT(avm_exec_set_principal(x, "alice"), 0);
    avm_buf b2;
    avm_buf_init(&b2);
    REQUIRE(avm_exec_encode(x, &b2) == 0);
    CHECK_INT((uint8_t)b2.data[10], 0x97);
    y = NULL;
    REQUIRE(avm_exec_decode((const uint8_t *)b2.data, b2.len, &e.plat, &y, err,
                            sizeof(err)) == 0);
    CHECK_STR(avm_exec_principal(y), "alice");
    /* It runs on to the same end as the original. */
    CHECK(avm_exec_run(y, 0) == avm_exec_run(x, 0));
    avm_exec_free(y);

    /* The principal follows the six config values: mode (0x00), allow_unsafe,
     * keep_trace, msc (bools), max_frames and max_stack (uints). Find the string
     * "alice" (0xa5 'a' 'l' ...) right after them and damage it. */
    const char *at = NULL;
    for (size_t i = 11; i + 6 <= b2.len && i < 64; i++)
        if ((uint8_t)b2.data[i] == 0xa5 && memcmp(b2.data + i + 1, "alice", 5) == 0) {
            at = b2.data + i;
            break;
        }
    REQUIRE(at != NULL);
    size_t off = (size_t)(at - b2.data);
    char *bad = malloc(b2.len);
    REQUIRE(bad != NULL);
    memcpy(bad, b2.data, b2.len);
    /* An empty string: a5 -> a0 and the five bytes dropped. */
    size_t blen = 0;
    memcpy(bad, b2.data, off);
    bad[off] = (char)0xa0;
    memcpy(bad + off + 1, b2.data + off + 6, b2.len - off - 6);
    blen = b2.len - 5;
    y = NULL;
    CHECK_INT(avm_exec_decode((const uint8_t *)bad, blen, &e.plat, &y, err, sizeof(err)),
              AVM_EMALFORMED);
    CHECK(strstr(err, "config principal") != NULL);
    /* An integer instead: a5 'alice' -> 0x05 and the five bytes dropped. */
    bad[off] = 0x05;
    y = NULL;
    CHECK_INT(avm_exec_decode((const uint8_t *)bad, blen, &e.plat, &y, err, sizeof(err)),
              AVM_EMALFORMED);
    CHECK(strstr(err, "config principal") != NULL);
    free(bad);
    avm_buf_free(&b);
    avm_buf_free(&b2);
    avm_exec_free(x);
    avm_embedded_close(&e);
    avm_module_release(m);
}

TEST(old_states_decode)
{
    old_state_decodes(test_failed_, 2);
    old_state_decodes(test_failed_, 3);
}

TEST_MAIN(T(multi_controller_tx_and_bundle_resume), T(old_states_decode),
          T(principal_travels_with_the_state),
          T(tail_called_entry_and_failed_states_decode), T(value_depth_is_bounded),
          T(checkpoint_at_commit_resumes_exactly_once),
          T(ping_pong_resumes_at_every_stop), T(battleship_resumes_mid_transaction),
          T(nested_transactions_and_pure_calls_resume),
          T(damaged_states_are_refused_or_safe), T(wrong_version_is_refused_by_name))
