/* The interpreter on the LMDB store: the examples end exactly as on the in-memory
 * store (result, trace and objects), in both modes and for every entry, and the
 * objects they created are all there after the store is closed and reopened. */
#include <stdint.h>

#include "avm_error.h"
#include "storage_test.h"
#include "test.h"
#include "vm.h"

#ifndef AVM_SOURCE_DIR
#error "AVM_SOURCE_DIR must name the source tree"
#endif

static avm_module *compile_src(const char *src)
{
    avm_module *m = NULL;
    avm_diag d;
    if (avm_compile("race.avm", src, strlen(src), &m, &d) != 0) {
        char msg[700];
        avm_diag_format(&d, msg, sizeof(msg));
        fprintf(stderr, "compile: %s\n", msg);
        return NULL;
    }
    return m;
}

static avm_module *compile_path(const char *rel)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", AVM_SOURCE_DIR, rel);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *src = malloc(1 << 20);
    size_t len = fread(src, 1, (1 << 20) - 1, f);
    fclose(f);
    avm_module *m = NULL;
    avm_diag d;
    int rv = avm_compile(rel, src, len, &m, &d);
    free(src);
    return rv == 0 ? m : NULL;
}

/* The embedded node's platform (node/embed/embedded.c) over any store. */
static bool reach_machine(void *data, avm_val m)
{
    return avm_val_eq(m, ((avm_platform *)data)->node);
}

static bool reach_ctrl(void *data, avm_val c)
{
    return avm_val_eq(c, ((avm_platform *)data)->default_ctrl);
}

static void plat_init(avm_platform *p, avm_store *s)
{
    memset(p, 0, sizeof(*p));
    p->store = s;
    p->node = st_id(AVM_MACHID, "node1");
    p->default_ctrl = st_id(AVM_CTRLID, "main");
    p->data = p;
    p->reachable_machine = reach_machine;
    p->reachable_controller = reach_ctrl;
}

static void plat_fini(avm_platform *p)
{
    avm_val_release(p->node);
    avm_val_release(p->default_ctrl);
}

/* Runs entry fn of m to its end; everything observable as text into out. */
static int run(avm_platform *p, avm_module *m, int fn, avm_mode mode, avm_buf *out)
{
    avm_exec_config cfg = {.mode = mode, .keep_trace = true, .allow_unsafe = true};
    avm_exec *x = avm_exec_new(p, &cfg);
    if (x == NULL)
        return AVM_ENOMEM;
    avm_val self = st_id(AVM_OBJID, "root/orchestrator"), input = st_id(AVM_STR, "");
    char err[256];
    int rv = avm_exec_start(x, m, fn, self, input, err, sizeof(err));
    avm_val_release(self);
    avm_val_release(input);
    if (rv != 0) {
        fprintf(stderr, "start: %s\n", err);
        avm_exec_free(x);
        return rv;
    }
    avm_run_status st = avm_exec_run(x, 0);
    avm_buf_printf(out, "status %d\n", (int)st);
    if (st == AVM_RUN_DONE)
        avm_val_print(out, avm_exec_result(x));
    else if (st == AVM_RUN_FAILED)
        avm_error_print(out, avm_exec_error(x));
    avm_buf_puts(out, "\n");
    for (size_t i = 0; i < avm_exec_trace_len(x); i++) {
        avm_event_print(out, &avm_exec_trace(x)[i]);
        avm_buf_puts(out, "\n");
    }
    avm_exec_free(x);
    avm_buf_puts(out, "-- objects\n");
    return st_dump(p->store, out);
}

static const char *entries_pp[] = {NULL, "test-simple"};
static const char *entries_bs[] = {NULL,
                                   "test-hit",
                                   "test-miss",
                                   "setup-game",
                                   "play-full-game",
                                   "play-game-with-player-type",
                                   "game-with-rollback"};

/* Returns the number of runs compared, or -1 on a mismatch. */
static int compare_example(const char *rel, const char *const *entries, size_t nentries)
{
    avm_module *m = compile_path(rel);
    if (m == NULL) {
        fprintf(stderr, "cannot compile %s\n", rel);
        return -1;
    }
    int runs = 0;
    for (size_t e = 0; e < nentries; e++) {
        for (int mode = 0; mode < 2; mode++) {
            int fn = -1;
            if (entries[e] != NULL && (fn = avm_module_find(m, entries[e], -1)) < 0) {
                fprintf(stderr, "%s: no entry %s\n", rel, entries[e]);
                runs = -1;
                goto out;
            }
            /* In memory. */
            avm_store *ms = avm_memstore_new();
            avm_platform pm;
            plat_init(&pm, ms);
            avm_buf want;
            avm_buf_init(&want);
            int rv = run(&pm, m, fn, (avm_mode)mode, &want);
            plat_fini(&pm);
            avm_memstore_free(ms);

            /* On LMDB, then reopened. */
            char dir[256];
            st_mkdtemp(dir, sizeof(dir));
            avm_lmdb *db = st_open(dir, 0, 0);
            avm_buf got, before, after;
            avm_buf_init(&got);
            avm_buf_init(&before);
            avm_buf_init(&after);
            if (db != NULL) {
                avm_platform pl;
                plat_init(&pl, avm_lmdb_store(db));
                rv |= run(&pl, m, fn, (avm_mode)mode, &got);
                st_dump(avm_lmdb_store(db), &before);
                plat_fini(&pl);
                avm_lmdb_close(db);
                db = st_open(dir, 0, 0);
            }
            if (db != NULL) {
                st_dump(avm_lmdb_store(db), &after);
                avm_lmdb_close(db);
            }
            st_rmtree(dir);
            const char *name = entries[e] ? entries[e] : "main";
            if (rv != 0 || db == NULL) {
                fprintf(stderr, "%s %s: run failed\n", rel, name);
                runs = -1;
            } else if (strcmp(avm_buf_cstr(&want), avm_buf_cstr(&got)) != 0) {
                fprintf(stderr, "%s %s mode %d differs:\n--- memory\n%s--- lmdb\n%s", rel,
                        name, mode, avm_buf_cstr(&want), avm_buf_cstr(&got));
                runs = -1;
            } else if (strcmp(avm_buf_cstr(&before), avm_buf_cstr(&after)) != 0 ||
                       before.len == 0) {
                fprintf(stderr, "%s %s: objects differ after reopening:\n%s---\n%s", rel,
                        name, avm_buf_cstr(&before), avm_buf_cstr(&after));
                runs = -1;
            } else if (runs >= 0) {
                runs++;
            }
            avm_buf_free(&want);
            avm_buf_free(&got);
            avm_buf_free(&before);
            avm_buf_free(&after);
        }
    }
out:
    avm_module_release(m);
    return runs;
}

TEST(ping_pong_on_lmdb)
{
    int n = compare_example("examples/ping_pong.avm", entries_pp, 2);
    CHECK_INT(n, 4);
}

TEST(battleship_on_lmdb)
{
    int n = compare_example("examples/battleship.avm", entries_bs,
                            sizeof(entries_bs) / sizeof(entries_bs[0]));
    CHECK_INT(n, 14);
}

/* Objects made by one process are there for the next, which uses them. */
TEST(objects_outlive_the_process_handle)
{
    const char *src = "(behavior counter\n"
                      "  (let ((st (getState))\n"
                      "        (n (if (null? st) 1 (+ (head st) 1))))\n"
                      "    (setState (list n))\n"
                      "    (list n)))\n"
                      "(main\n"
                      "  (let ((tx (beginTx)) (c (createObj \"counter\")))\n"
                      "    (call c 0)\n"
                      "    (commitTx tx)\n"
                      "    c))\n";
    avm_module *m = st_compile(src);
    REQUIRE(m != NULL);
    char dir[256];
    st_mkdtemp(dir, sizeof(dir));
    avm_buf out;
    avm_buf_init(&out);
    avm_lmdb *db = st_open(dir, 0, 0);
    REQUIRE(db != NULL);
    avm_platform p;
    plat_init(&p, avm_lmdb_store(db));
    CHECK_INT(run(&p, m, -1, AVM_MODE_DEFAULT, &out), 0);
    plat_fini(&p);
    avm_val ids;
    REQUIRE(avm_lmdb_store(db)->ops->ids(avm_lmdb_store(db), &ids) == 0);
    REQUIRE(avm_list_len(ids) == 1);
    char bump[512];
    snprintf(bump, sizeof(bump),
             "(main (let ((tx (beginTx)) (r (call (object-id \"%s\") 0)))\n"
             "        (commitTx tx) r))\n",
             avm_list_at(ids, 0).u.s->data);
    avm_val_release(ids);
    avm_lmdb_close(db);
    /* The behaviour comes from the store: the bump module does not define it. */
    avm_module *mb = st_compile(bump);
    REQUIRE(mb != NULL);
    for (int i = 0; i < 3; i++) {
        db = st_open(dir, 0, 0);
        REQUIRE(db != NULL);
        plat_init(&p, avm_lmdb_store(db));
        out.len = 0;
        CHECK_INT(run(&p, mb, -1, AVM_MODE_DEFAULT, &out), 0);
        plat_fini(&p);
        avm_lmdb_close(db);
    }
    CHECK(strncmp(avm_buf_cstr(&out), "status 0\n4\n", 11) == 0);
    avm_buf_free(&out);
    st_rmtree(dir);
    avm_module_release(m);
    avm_module_release(mb);
}

static size_t count_commits(const avm_exec *x)
{
    size_t n = 0;
    for (size_t i = 0; i < avm_exec_trace_len(x); i++)
        n += avm_exec_trace(x)[i].type == AVM_EV_TRANSACTION_COMMITTED;
    return n;
}

/* A node that dies right after the k-th commit of an execution resumes it from the
 * checkpoint that commit carried: the execution ends with the uninterrupted run's
 * result and objects (versions included, so no commit was applied twice). */
TEST(checkpoint_resumes_after_every_commit)
{
    avm_module *m = compile_path("examples/battleship.avm");
    REQUIRE(m != NULL);
    int fn = avm_module_find(m, "play-full-game", -1);
    REQUIRE(fn >= 0);
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT, .keep_trace = true};
    avm_val self = st_id(AVM_OBJID, "root/orchestrator"), input = st_id(AVM_STR, "");
    char err[256];

    /* The uninterrupted run. */
    avm_store *ms = avm_memstore_new();
    avm_platform pm;
    plat_init(&pm, ms);
    avm_exec *x = avm_exec_new(&pm, &cfg);
    REQUIRE(avm_exec_start(x, m, fn, self, input, err, sizeof(err)) == 0);
    REQUIRE(avm_exec_run(x, 0) == AVM_RUN_DONE);
    size_t ncommits = count_commits(x);
    avm_buf want, want_objs;
    avm_buf_init(&want);
    avm_buf_init(&want_objs);
    avm_val_print(&want, avm_exec_result(x));
    st_dump(ms, &want_objs);
    avm_exec_free(x);
    plat_fini(&pm);
    avm_memstore_free(ms);
    CHECK(ncommits >= 5);

    for (size_t k = 1; k <= ncommits; k++) {
        char dir[256];
        st_mkdtemp(dir, sizeof(dir));
        avm_lmdb *db = st_open(dir, 0, 0);
        REQUIRE(db != NULL);
        avm_platform p;
        plat_init(&p, avm_lmdb_store(db));
        x = avm_exec_new(&p, &cfg);
        REQUIRE(avm_exec_start(x, m, fn, self, input, err, sizeof(err)) == 0);
        REQUIRE(avm_exec_set_checkpoint(x, "exec-1") == 0);
        while (count_commits(x) < k && avm_exec_run(x, 1) == AVM_RUN_YIELD)
            ;
        CHECK_INT(count_commits(x), k);
        avm_exec_free(x); /* the node dies here */
        plat_fini(&p);
        avm_lmdb_close(db);

        db = st_open(dir, 0, 0);
        REQUIRE(db != NULL);
        plat_init(&p, avm_lmdb_store(db));
        uint8_t status;
        avm_buf ck;
        REQUIRE(avm_lmdb_exec_get(db, "exec-1", &status, &ck) == 0);
        CHECK_INT(status, AVM_RUN_YIELD);
        x = NULL;
        /* The checkpoint is the state without its trace log, whose chunks were
         * written with each checkpoint. */
        avm_buf log;
        REQUIRE(avm_lmdb_trace_log(db, "exec-1", &log) == 0);
        int rv = avm_exec_decode_ex((const uint8_t *)ck.data, ck.len,
                                    (const uint8_t *)log.data, log.len, &p, &x, err,
                                    sizeof(err));
        avm_buf_free(&ck);
        avm_buf_free(&log);
        if (rv != 0)
            fprintf(stderr, "decode after commit %zu: %s\n", k, err);
        REQUIRE(rv == 0);
        CHECK_INT(avm_exec_run(x, 0), AVM_RUN_DONE);
        avm_buf got, got_objs;
        avm_buf_init(&got);
        avm_buf_init(&got_objs);
        if (avm_exec_status(x) == AVM_RUN_DONE)
            avm_val_print(&got, avm_exec_result(x));
        else
            avm_error_print(&got, avm_exec_error(x));
        st_dump(avm_lmdb_store(db), &got_objs);
        CHECK_STR(avm_buf_cstr(&got), avm_buf_cstr(&want));
        CHECK_STR(avm_buf_cstr(&got_objs), avm_buf_cstr(&want_objs));
        avm_buf_free(&got);
        avm_buf_free(&got_objs);
        avm_exec_free(x);
        plat_fini(&p);
        avm_lmdb_close(db);
        st_rmtree(dir);
    }
    printf("  resumed after each of %zu commits\n", ncommits);
    avm_buf_free(&want);
    avm_buf_free(&want_objs);
    avm_val_release(self);
    avm_val_release(input);
    avm_module_release(m);
}

static bool has_event(avm_exec *x, int type)
{
    const avm_event *ev = avm_exec_trace(x);
    for (size_t i = 0; i < avm_exec_trace_len(x); i++)
        if (ev[i].type == type)
            return true;
    return false;
}

/* Two executions race on one object of the durable store: A reads it inside its
 * transaction (from its snapshot), B commits a write to it, then A commits. Exactly
 * one commit returns true: A's returns #f, logs the conflict and aborts, and the
 * object holds B's write only. */
TEST(racing_transactions_on_lmdb)
{
    char dir[256];
    REQUIRE(st_mkdtemp(dir, sizeof(dir)) != NULL);
    avm_lmdb *db = st_open(dir, 0, 0);
    REQUIRE(db != NULL);
    avm_platform p;
    plat_init(&p, avm_lmdb_store(db));
    avm_exec_config cfg = {.keep_trace = true};
    char err[256];

    avm_module *setup = compile_src(
        "(behavior counter\n"
        "  (let ((s (getState)) (n (if (null? s) 0 (head s))))\n"
        "    (setState (list (+ n 1))) (list (+ n 1))))\n"
        "(main (let ((t (beginTx)) (c (createObj \"counter\"))) (commitTx t) c))\n");
    REQUIRE(setup != NULL);
    avm_exec *x = avm_exec_new(&p, &cfg);
    avm_val self = st_id(AVM_OBJID, "root/orchestrator"), input = st_id(AVM_STR, "");
    REQUIRE(avm_exec_start(x, setup, -1, self, input, err, sizeof(err)) == 0);
    REQUIRE(avm_exec_run(x, 0) == AVM_RUN_DONE);
    avm_val oid = avm_exec_result(x);
    REQUIRE(oid.kind == AVM_OBJID);
    char src[512];
    snprintf(src, sizeof(src),
             "(main (let ((t (beginTx))) (call #obj\"%s\" 1) (commitTx t)))\n",
             oid.u.s->data);
    avm_val keep_oid = oid;
    avm_val_retain(keep_oid);
    avm_exec_free(x);
    avm_module *racer = compile_src(src);
    REQUIRE(racer != NULL);

    avm_exec *a = avm_exec_new(&p, &cfg), *b = avm_exec_new(&p, &cfg);
    REQUIRE(avm_exec_start(a, racer, -1, self, input, err, sizeof(err)) == 0);
    REQUIRE(avm_exec_start(b, racer, -1, self, input, err, sizeof(err)) == 0);
    /* A runs until it has called the object (read and written it in its
     * transaction), not further. */
    while (!has_event(a, AVM_EV_OBJECT_CALLED))
        REQUIRE(avm_exec_run(a, 1) == AVM_RUN_YIELD);
    CHECK(avm_exec_run(b, 0) == AVM_RUN_DONE);
    CHECK(avm_exec_result(b).kind == AVM_BOOL && avm_exec_result(b).u.b);
    CHECK(avm_exec_run(a, 0) == AVM_RUN_DONE);
    CHECK(avm_exec_result(a).kind == AVM_BOOL && !avm_exec_result(a).u.b);
    CHECK(has_event(a, AVM_EV_ERROR_OCCURRED) &&
          has_event(a, AVM_EV_TRANSACTION_ABORTED));
    const avm_objrec *r = p.store->ops->get(p.store, NULL, keep_oid);
    REQUIRE(r != NULL);
    avm_buf b1;
    avm_buf_init(&b1);
    avm_val_print(&b1, r->state);
    CHECK_STR(avm_buf_cstr(&b1), "(1)"); /* B's write only: A's was not applied */
    avm_buf_free(&b1);

    avm_exec_free(a);
    avm_exec_free(b);
    avm_val_release(keep_oid);
    avm_val_release(self);
    avm_val_release(input);
    avm_module_release(setup);
    avm_module_release(racer);
    plat_fini(&p);
    avm_lmdb_close(db);
    st_rmtree(dir);
}

TEST_MAIN(T(ping_pong_on_lmdb), T(battleship_on_lmdb),
          T(objects_outlive_the_process_handle), T(checkpoint_resumes_after_every_commit),
          T(racing_transactions_on_lmdb))
