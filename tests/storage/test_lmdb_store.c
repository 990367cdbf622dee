/* The LMDB store: round trips of every record kind, versions and validation,
 * group commit against sequential apply on the in-memory store, snapshots, how
 * checkpoints are stored (superseded ones deleted, sparse blobs compacted), the
 * format check and the migration of format 1, the single-writer lock, and the disk
 * problems of the storage issue
 * (map growth and map full, a corrupt file, permission denied, not a directory,
 * disk full). Each test uses its own temporary directory. */
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "codec.h"
#include "storage_test.h"
#include "test.h"

/* ---- Fixture ---------------------------------------------------------------- */

static const char *module_src = "(behavior counter (list (input)))\n"
                                "(behavior other (list 1))\n"
                                "(pure add (a b) (+ a b))\n"
                                "(main 0)\n";

/* Values made by a test, released by fx_end. */
static avm_val *kept;
static size_t nkept, capkept;

static avm_val keep(avm_val v)
{
    if (nkept == capkept) {
        capkept = capkept ? capkept * 2 : 256;
        kept = realloc(kept, capkept * sizeof(*kept));
    }
    kept[nkept++] = v;
    return v;
}

typedef struct fixture {
    char dir[256];
    avm_module *mod;
    int fn_counter, fn_other;
    avm_val node, main_ctrl, other_ctrl, m2;
} fixture;

static void fx_begin(fixture *f)
{
    memset(f, 0, sizeof(*f));
    if (st_mkdtemp(f->dir, sizeof(f->dir)) == NULL)
        abort();
    f->mod = st_compile(module_src);
    if (f->mod == NULL)
        abort();
    f->fn_counter = avm_module_find(f->mod, "counter", AVM_FN_BEHAVIOR);
    f->fn_other = avm_module_find(f->mod, "other", AVM_FN_BEHAVIOR);
    f->node = keep(st_id(AVM_MACHID, "node1"));
    f->m2 = keep(st_id(AVM_MACHID, "node2"));
    f->main_ctrl = keep(st_id(AVM_CTRLID, "main"));
    f->other_ctrl = keep(st_id(AVM_CTRLID, "other"));
}

static void fx_end(fixture *f)
{
    for (size_t i = 0; i < nkept; i++)
        avm_val_release(kept[i]);
    nkept = 0;
    avm_module_release(f->mod);
    st_rmtree(f->dir);
}

static char *subdir(fixture *f, const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof(buf), "%s/%s", f->dir, name);
    return buf;
}

static avm_create mkcreate(fixture *f, avm_val oid, bool other)
{
    avm_create c = {
        .oid = oid,
        .beh = {.name = keep(st_id(AVM_STR, other ? "other" : "counter")),
                .mod = f->mod,
                .fn = (uint32_t)(other ? f->fn_other : f->fn_counter)},
        .meta = {.machine = f->node, .creating = f->main_ctrl, .current = f->main_ctrl}};
    return c;
}

static avm_val int_list(int n, int64_t base)
{
    avm_val l;
    avm_list_new((size_t)n, &l);
    for (int i = 0; i < n; i++)
        l.u.l->items[i] = avm_int(base + i);
    return keep(l);
}

/* A list holding one string of len bytes. */
static avm_val blob_state(size_t len, char fill)
{
    char *s = malloc(len);
    memset(s, fill, len);
    avm_val str, l;
    avm_str_new(AVM_STR, s, len, &str);
    free(s);
    avm_list_from(&str, 1, &l);
    return keep(l);
}

static int apply1(avm_store *s, const avm_writeset *ws, bool *ok)
{
    return s->ops->apply(s, ws, ok);
}

/* Creates object oid with a state; asserts success. */
static bool create_with_state(fixture *f, avm_store *s, avm_val oid, avm_val state)
{
    avm_create c = mkcreate(f, oid, false);
    avm_pair st = {oid, state};
    avm_writeset ws = {.creates = &c, .ncreates = 1, .states = &st, .nstates = 1};
    bool ok = false;
    return apply1(s, &ws, &ok) == 0 && ok;
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

/* ---- Round trips ------------------------------------------------------------ */

static void collect_exec(void *arg, const char *id, uint8_t status)
{
    avm_buf *b = arg;
    avm_buf_printf(b, "%s=%u;", id, status);
}

TEST(roundtrip_every_record_kind)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);

    avm_val o1 = keep(st_oidn(1)), o2 = keep(st_oidn(2)), o10 = keep(st_oidn(10));
    avm_create cr[3] = {mkcreate(&f, o1, false), mkcreate(&f, o2, true),
                        mkcreate(&f, o10, false)};
    cr[2].meta.creating = avm_nil();
    avm_pair states[2] = {{o1, int_list(3, 7)}, {o10, blob_state(3000, 'x')}};
    avm_pair tr = {o2, f.other_ctrl}, mv = {o10, f.m2};
    avm_writeset ws = {.creates = cr,
                       .ncreates = 3,
                       .states = states,
                       .nstates = 2,
                       .transfers = &tr,
                       .ntransfers = 1,
                       .moves = &mv,
                       .nmoves = 1};
    bool ok = false;
    CHECK_INT(apply1(s, &ws, &ok), 0);
    CHECK(ok);

    const avm_objrec *r = s->ops->get(s, NULL, o1);
    REQUIRE(r != NULL);
    CHECK(avm_val_eq(r->oid, o1));
    CHECK(r->beh.mod == f.mod);
    CHECK_INT(r->beh.fn, f.fn_counter);
    CHECK(avm_val_eq(r->state, states[0].b));
    CHECK_INT(r->version, 2);
    r = s->ops->get(s, NULL, o2);
    REQUIRE(r != NULL);
    CHECK(avm_val_eq(r->meta.current, f.other_ctrl));
    CHECK(avm_val_eq(r->meta.creating, f.main_ctrl));
    CHECK_INT(avm_list_len(r->state), 0);
    r = s->ops->get(s, NULL, o10);
    REQUIRE(r != NULL);
    CHECK(avm_val_eq(r->meta.machine, f.m2));
    CHECK(r->meta.creating.kind == AVM_NIL);
    CHECK_INT(r->version, 3);
    CHECK(s->ops->get(s, NULL, keep(st_oidn(3))) == NULL);

    /* ids() in key order: bytewise, so node1/10 sorts before node1/2. */
    avm_val ids;
    REQUIRE(s->ops->ids(s, &ids) == 0);
    REQUIRE(avm_list_len(ids) == 3);
    CHECK(avm_val_eq(avm_list_at(ids, 0), o1));
    CHECK(avm_val_eq(avm_list_at(ids, 1), o10));
    CHECK(avm_val_eq(avm_list_at(ids, 2), o2));
    avm_val_release(ids);

    /* The pure registry. */
    avm_val pname = keep(st_id(AVM_STR, "add"));
    avm_purefn pf = {.name = pname, .code = f.mod, .version = 3};
    CHECK_INT(s->ops->pure_put(s, &pf), 0);
    const avm_purefn *pg = s->ops->pure_get(s, pname);
    REQUIRE(pg != NULL);
    CHECK_INT(pg->version, 3);
    CHECK(memcmp(pg->code->hash, f.mod->hash, 32) == 0);
    CHECK(s->ops->pure_get(s, keep(st_id(AVM_STR, "nope"))) == NULL);

    /* Executions. */
    CHECK_INT(avm_lmdb_exec_put(db, "exec-b", 1, (const uint8_t *)"bbb", 3), 0);
    CHECK_INT(avm_lmdb_exec_put(db, "exec-a", 2, (const uint8_t *)"a\0a", 3), 0);
    CHECK_INT(avm_lmdb_exec_put(db, "exec-c", 0, NULL, 0), 0);
    CHECK_INT(avm_lmdb_exec_put(db, "exec-b", 4, (const uint8_t *)"bb", 2), 0);
    CHECK_INT(avm_lmdb_exec_del(db, "exec-c"), 0);
    CHECK_INT(avm_lmdb_exec_del(db, "exec-c"), AVM_ENOTFOUND);
    uint8_t status = 0;
    avm_buf eb;
    CHECK_INT(avm_lmdb_exec_get(db, "exec-a", &status, &eb), 0);
    CHECK_INT(status, 2);
    CHECK(eb.len == 3 && memcmp(eb.data, "a\0a", 3) == 0);
    avm_buf_free(&eb);
    CHECK_INT(avm_lmdb_exec_get(db, "exec-c", &status, &eb), AVM_ENOTFOUND);
    avm_buf_free(&eb);
    avm_buf each;
    avm_buf_init(&each);
    CHECK_INT(avm_lmdb_exec_each(db, collect_exec, &each), 0);
    CHECK_STR(avm_buf_cstr(&each), "exec-a=2;exec-b=4;");
    avm_buf_free(&each);

    /* Trace logs: chunks written with checkpoints; "t" and "t2" share a prefix but
     * not a range. */
    {
        static const uint8_t st8[] = {0x90};
        avm_writeset w1 = {.ckpt_id = "t",
                           .ckpt_state = st8,
                           .ckpt_len = 1,
                           .ckpt_trace = (const uint8_t *)"abc",
                           .ckpt_trace_len = 3,
                           .ckpt_trace_at = 0};
        avm_writeset w2 = {.ckpt_id = "t2",
                           .ckpt_state = st8,
                           .ckpt_len = 1,
                           .ckpt_trace = (const uint8_t *)"zz",
                           .ckpt_trace_len = 2,
                           .ckpt_trace_at = 0};
        avm_writeset w3 = {.ckpt_id = "t",
                           .ckpt_state = st8,
                           .ckpt_len = 1,
                           .ckpt_trace = (const uint8_t *)"de",
                           .ckpt_trace_len = 2,
                           .ckpt_trace_at = 3};
        bool okc;
        CHECK_INT(s->ops->apply(s, &w1, &okc), 0);
        CHECK_INT(s->ops->apply(s, &w2, &okc), 0);
        CHECK_INT(s->ops->apply(s, &w3, &okc), 0);
    }
    avm_buf tl;
    REQUIRE(avm_lmdb_trace_log(db, "t", &tl) == 0);
    CHECK(tl.len == 5 && memcmp(tl.data, "abcde", 5) == 0);
    avm_buf_free(&tl);
    REQUIRE(avm_lmdb_trace_log(db, "none", &tl) == 0);
    CHECK_INT(tl.len, 0);
    avm_buf_free(&tl);

    uint64_t seq_max = 0;
    for (int i = 0; i < 5; i++) {
        uint64_t q = s->ops->next_seq(s);
        CHECK(q > seq_max);
        seq_max = q;
    }

    avm_lmdb_stats st;
    REQUIRE(avm_lmdb_stats_get(db, &st) == 0);
    CHECK_INT(st.objects, 3);
    CHECK_INT(st.modules, 1);
    CHECK_INT(st.pure, 1);
    CHECK_INT(st.executions, 4); /* exec-a, exec-b, and the checkpoints t and t2 */
    CHECK_INT(st.commits, 4);
    CHECK(st.map_used > 0 && st.map_used <= st.map_size);

    avm_buf before, after;
    avm_buf_init(&before);
    avm_buf_init(&after);
    st_dump(s, &before);
    avm_lmdb_close(db);

    /* Everything is there after a reopen, decoded from LMDB. */
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    st_dump(s, &after);
    CHECK_STR(avm_buf_cstr(&after), avm_buf_cstr(&before));
    r = s->ops->get(s, NULL, o1);
    CHECK(r != NULL && r->beh.mod != f.mod && r->beh.mod->nfuncs == f.mod->nfuncs);
    pg = s->ops->pure_get(s, pname);
    REQUIRE(pg != NULL);
    CHECK_INT(pg->version, 3);
    CHECK(r != NULL && pg->code == r->beh.mod); /* one decoded module per hash */
    CHECK_INT(avm_lmdb_exec_get(db, "exec-b", &status, &eb), 0);
    CHECK(status == 4 && eb.len == 2);
    avm_buf_free(&eb);
    REQUIRE(avm_lmdb_trace_log(db, "t", &tl) == 0);
    CHECK(tl.len == 5 && memcmp(tl.data, "abcde", 5) == 0);
    avm_buf_free(&tl);
    /* A gap between chunks is corruption, named as such. */
    {
        static const uint8_t st8[] = {0x90};
        avm_writeset gap = {.ckpt_id = "t",
                            .ckpt_state = st8,
                            .ckpt_len = 1,
                            .ckpt_trace = (const uint8_t *)"x",
                            .ckpt_trace_len = 1,
                            .ckpt_trace_at = 9};
        bool okc;
        CHECK_INT(s->ops->apply(s, &gap, &okc), 0);
    }
    CHECK_INT(avm_lmdb_trace_log(db, "t", &tl), AVM_EIO);
    CHECK(strstr(avm_lmdb_errmsg(db), "corrupt trace log") != NULL);
    CHECK_INT(avm_lmdb_trace_clear(db, "t"), 0);
    REQUIRE(avm_lmdb_trace_log(db, "t", &tl) == 0);
    CHECK_INT(tl.len, 0);
    avm_buf_free(&tl);
    REQUIRE(avm_lmdb_trace_log(db, "t2", &tl) == 0);
    CHECK(tl.len == 2 && memcmp(tl.data, "zz", 2) == 0);
    avm_buf_free(&tl);
    CHECK_INT(avm_lmdb_exec_del(db, "t2"), 0); /* deletes its log too */
    REQUIRE(avm_lmdb_trace_log(db, "t2", &tl) == 0);
    CHECK_INT(tl.len, 0);
    avm_buf_free(&tl);
    /* Identifiers are never reused across a restart. */
    CHECK(s->ops->next_seq(s) > seq_max);

    avm_buf_free(&before);
    avm_buf_free(&after);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Versions and validation ------------------------------------------------ */

TEST(versions_bump_on_every_committed_write)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val x = keep(st_oidn(1));
    avm_create c = mkcreate(&f, x, false);
    avm_writeset wc = {.creates = &c, .ncreates = 1};
    bool ok;
    CHECK(apply1(s, &wc, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 1);

    avm_pair st2[2] = {{x, int_list(1, 1)}, {x, int_list(1, 2)}};
    avm_writeset w1 = {.states = st2, .nstates = 1};
    CHECK(apply1(s, &w1, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 2);
    avm_writeset w2 = {.states = st2, .nstates = 2}; /* later entries win; each bumps */
    CHECK(apply1(s, &w2, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 4);
    CHECK(avm_val_eq(s->ops->get(s, NULL, x)->state, st2[1].b));

    avm_pair tr = {x, f.other_ctrl}, mv = {x, f.m2};
    avm_writeset w3 = {.transfers = &tr, .ntransfers = 1};
    CHECK(apply1(s, &w3, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 5);
    avm_writeset w4 = {.moves = &mv,
                       .nmoves = 1,
                       .transfers = &tr,
                       .ntransfers = 1,
                       .states = st2,
                       .nstates = 1};
    CHECK(apply1(s, &w4, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 8);

    /* A rejected write set changes nothing. */
    avm_read stale = {x, 7};
    avm_writeset w5 = {.reads = &stale, .nreads = 1, .states = st2, .nstates = 1};
    CHECK(apply1(s, &w5, &ok) == 0 && !ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 8);

    /* Versions are durable. */
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 8);
    avm_read cur = {x, 8};
    avm_writeset w6 = {.reads = &cur, .nreads = 1, .states = st2, .nstates = 1};
    CHECK(apply1(s, &w6, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 9);

    /* Destroy and re-create starts again at 1 (as the in-memory store does). */
    avm_writeset wd = {.destroys = &x, .ndestroys = 1};
    CHECK(apply1(s, &wd, &ok) == 0 && ok);
    CHECK(s->ops->get(s, NULL, x) == NULL);
    CHECK(apply1(s, &wc, &ok) == 0 && ok);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 1);
    CHECK_INT(avm_list_len(s->ops->get(s, NULL, x)->state), 0);
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(exactly_one_of_two_conflicting_commits)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val x = keep(st_oidn(1)), y = keep(st_oidn(2));
    REQUIRE(create_with_state(&f, s, x, int_list(1, 0)));
    REQUIRE(create_with_state(&f, s, y, int_list(1, 0)));
    CHECK_INT(s->ops->get(s, NULL, x)->version, 2);

    /* Two transactions both read x at version 2 and write it: one by one. */
    avm_read rx = {x, 2};
    avm_pair sa = {x, int_list(1, 100)}, sb = {x, int_list(1, 200)};
    avm_writeset a = {.reads = &rx, .nreads = 1, .states = &sa, .nstates = 1};
    avm_writeset b = {.reads = &rx, .nreads = 1, .states = &sb, .nstates = 1};
    bool oka, okb;
    CHECK_INT(apply1(s, &a, &oka), 0);
    CHECK_INT(apply1(s, &b, &okb), 0);
    CHECK(oka && !okb);
    CHECK(avm_val_eq(s->ops->get(s, NULL, x)->state, sa.b));

    /* The same race inside one group commit. */
    avm_read ry = {y, 2};
    avm_pair sya = {y, int_list(1, 1)}, syb = {y, int_list(1, 2)};
    avm_writeset ya = {.reads = &ry, .nreads = 1, .states = &sya, .nstates = 1};
    avm_writeset yb = {.reads = &ry, .nreads = 1, .states = &syb, .nstates = 1};
    const avm_writeset *batch[2] = {&yb, &ya};
    bool ok[2];
    CHECK_INT(avm_lmdb_apply_batch(db, batch, 2, ok), 0);
    CHECK(ok[0] && !ok[1]);
    CHECK(avm_val_eq(s->ops->get(s, NULL, y)->state, syb.b));
    CHECK_INT(s->ops->get(s, NULL, y)->version, 3);

    /* Existence-only reads; a read of an object the same write set creates. */
    avm_val z = keep(st_oidn(3));
    avm_read ex[2] = {{x, AVM_VERSION_EXISTS}, {z, 1}};
    avm_create cz = mkcreate(&f, z, false);
    avm_writeset w = {.reads = ex, .nreads = 2, .creates = &cz, .ncreates = 1};
    CHECK(apply1(s, &w, &oka) == 0 && oka);
    avm_val gone = keep(st_oidn(99));
    avm_read rg = {gone, AVM_VERSION_EXISTS};
    avm_writeset wg = {.reads = &rg, .nreads = 1, .states = &sa, .nstates = 1};
    CHECK(apply1(s, &wg, &oka) == 0 && !oka);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Group commit equals sequential apply (property) ------------------------ */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state % n);
}

#define POOL 10

typedef struct gen_ws {
    avm_read reads[4];
    avm_create creates[2];
    avm_pair transfers[2], moves[2], states[4];
    avm_val destroys[2];
    char ckpt[16];
    uint8_t ckstate[4];
    avm_writeset ws;
} gen_ws;

static void gen(fixture *f, avm_store *ms, const avm_val *pool, gen_ws *g, int idx)
{
    memset(g, 0, sizeof(*g));
    avm_writeset *w = &g->ws;
    size_t n = rnd(4);
    for (size_t i = 0; i < n; i++) {
        avm_val o = pool[rnd(POOL)];
        const avm_objrec *r = ms->ops->get(ms, NULL, o);
        uint64_t v = r ? r->version : 1;
        switch (rnd(5)) {
        case 0:
            v = v > 1 ? v - 1 : 5; /* stale */
            break;
        case 1:
            v = AVM_VERSION_EXISTS;
            break;
        default:
            break; /* current */
        }
        g->reads[w->nreads++] = (avm_read){o, v};
    }
    n = rnd(5) == 0 ? 1 + rnd(2) : 0;
    for (size_t i = 0; i < n; i++)
        g->creates[w->ncreates++] = mkcreate(f, pool[rnd(POOL)], rnd(2));
    n = rnd(3);
    for (size_t i = 0; i < n; i++)
        g->transfers[w->ntransfers++] =
            (avm_pair){pool[rnd(POOL)], rnd(2) ? f->other_ctrl : f->main_ctrl};
    n = rnd(4) == 0 ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        g->moves[w->nmoves++] = (avm_pair){pool[rnd(POOL)], rnd(2) ? f->m2 : f->node};
    n = rnd(4);
    for (size_t i = 0; i < n; i++)
        g->states[w->nstates++] =
            (avm_pair){pool[rnd(POOL)], int_list((int)rnd(4), (int64_t)rnd(1000))};
    n = rnd(6) == 0 ? 1 : 0;
    for (size_t i = 0; i < n; i++)
        g->destroys[w->ndestroys++] = pool[rnd(POOL)];
    w->spec_order = rnd(4) == 0;
    if (rnd(3) == 0) {
        snprintf(g->ckpt, sizeof(g->ckpt), "e%u", rnd(4));
        g->ckstate[0] = (uint8_t)idx;
        w->ckpt_id = g->ckpt;
        w->ckpt_state = g->ckstate;
        w->ckpt_len = 1;
        w->ckpt_status = (uint8_t)rnd(3);
    }
    w->reads = g->reads;
    w->creates = g->creates;
    w->transfers = g->transfers;
    w->moves = g->moves;
    w->states = g->states;
    w->destroys = g->destroys;
}

static void line_of(avm_store *s, void *snap, avm_val oid, avm_buf *b)
{
    const avm_objrec *r = s->ops->get(s, snap, oid);
    if (r == NULL)
        avm_buf_puts(b, "absent\n");
    else
        st_rec_line(b, r);
}

static bool same_stores(avm_store *ms, avm_store *ls, const avm_val *pool)
{
    bool same = true;
    for (int i = 0; i < POOL; i++) {
        avm_buf a, b;
        avm_buf_init(&a);
        avm_buf_init(&b);
        line_of(ms, NULL, pool[i], &a);
        line_of(ls, NULL, pool[i], &b);
        if (strcmp(avm_buf_cstr(&a), avm_buf_cstr(&b)) != 0) {
            fprintf(stderr, "memstore: %slmdb:     %s", avm_buf_cstr(&a),
                    avm_buf_cstr(&b));
            same = false;
        }
        avm_buf_free(&a);
        avm_buf_free(&b);
    }
    return same;
}

TEST(group_commit_equals_sequential_apply)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *ls = avm_lmdb_store(db);
    avm_store *ms = avm_memstore_new();
    avm_val pool[POOL];
    for (int i = 0; i < POOL; i++)
        pool[i] = keep(st_oidn((unsigned)i + 1));
    /* Expected checkpoints: the last committed write set's, per id. */
    int ck_idx[4], ck_status[4];
    for (int i = 0; i < 4; i++)
        ck_idx[i] = -1;

    gen_ws *g = calloc(64, sizeof(gen_ws));
    int rounds = 400, committed = 0, rejected = 0, snap_checks = 0;
    for (int round = 0; round < rounds && !*test_failed_; round++) {
        size_t n = rnd(4) == 0 ? 1 + rnd(64) : 1 + rnd(8);
        for (size_t i = 0; i < n; i++)
            gen(&f, ms, pool, &g[i], round * 64 + (int)i); /* all from the same state */

        /* A snapshot taken before the batch must keep showing that state. */
        void *snap = ls->ops->snapshot(ls);
        avm_buf pre;
        avm_buf_init(&pre);
        for (int i = 0; i < POOL; i++)
            line_of(ms, NULL, pool[i], &pre);

        bool mok[64], lok[64];
        for (size_t i = 0; i < n; i++) {
            CHECK_INT(ms->ops->apply(ms, &g[i].ws, &mok[i]), 0);
            if (mok[i] && g[i].ws.ckpt_id != NULL) {
                int e = g[i].ckpt[1] - '0';
                ck_idx[e] = g[i].ckstate[0];
                ck_status[e] = g[i].ws.ckpt_status;
            }
        }
        const avm_writeset *ptrs[64];
        for (size_t i = 0; i < n; i++)
            ptrs[i] = &g[i].ws;
        if (n == 1 && rnd(2)) {
            CHECK_INT(ls->ops->apply(ls, ptrs[0], &lok[0]), 0);
        } else {
            CHECK_INT(avm_lmdb_apply_batch(db, ptrs, n, lok), 0);
        }
        for (size_t i = 0; i < n; i++) {
            CHECK(mok[i] == lok[i]);
            committed += lok[i];
            rejected += !lok[i];
        }
        CHECK(same_stores(ms, ls, pool));

        avm_buf post;
        avm_buf_init(&post);
        for (int i = 0; i < POOL; i++)
            line_of(ls, snap, pool[i], &post);
        CHECK_STR(avm_buf_cstr(&post), avm_buf_cstr(&pre));
        snap_checks++;
        avm_buf_free(&pre);
        avm_buf_free(&post);
        ls->ops->snapshot_release(ls, snap);

        if (round % 100 == 99) {
            avm_lmdb_close(db);
            db = st_open(f.dir, 0, 0);
            REQUIRE(db != NULL);
            ls = avm_lmdb_store(db);
            CHECK(same_stores(ms, ls, pool));
        }
    }
    for (int e = 0; e < 4; e++) {
        char id[8];
        snprintf(id, sizeof(id), "e%d", e);
        uint8_t status;
        avm_buf b;
        int rv = avm_lmdb_exec_get(db, id, &status, &b);
        if (ck_idx[e] < 0) {
            CHECK_INT(rv, AVM_ENOTFOUND);
        } else {
            CHECK_INT(rv, 0);
            CHECK(b.len == 1 && (uint8_t)b.data[0] == (uint8_t)ck_idx[e]);
            CHECK_INT(status, ck_status[e]);
        }
        avm_buf_free(&b);
    }
    printf("  %d rounds: %d write sets committed, %d rejected, %d snapshot checks\n",
           rounds, committed, rejected, snap_checks);
    CHECK(committed > 100 && rejected > 100);
    free(g);
    avm_memstore_free(ms);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Snapshots -------------------------------------------------------------- */

TEST(snapshot_reads_are_consistent)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val x = keep(st_oidn(1)), y = keep(st_oidn(2));
    REQUIRE(create_with_state(&f, s, x, int_list(1, 1)));
    void *snap = s->ops->snapshot(s);
    REQUIRE(snap != NULL);
    avm_pair st = {x, int_list(1, 2)};
    avm_writeset w = {.states = &st, .nstates = 1};
    bool ok;
    CHECK(apply1(s, &w, &ok) == 0 && ok);
    REQUIRE(create_with_state(&f, s, y, int_list(1, 3)));

    const avm_objrec *old = s->ops->get(s, snap, x);
    REQUIRE(old != NULL);
    CHECK_INT(old->version, 2);
    CHECK(avm_val_eq(old->state, int_list(1, 1)));
    CHECK(s->ops->get(s, snap, y) == NULL);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 3);
    CHECK(s->ops->get(s, NULL, y) != NULL);

    /* A record read through a snapshot outlives later commits. */
    void *snap2 = s->ops->snapshot(s);
    const avm_objrec *r2 = s->ops->get(s, snap2, x);
    REQUIRE(r2 != NULL);
    CHECK(apply1(s, &w, &ok) == 0 && ok);
    CHECK(apply1(s, &w, &ok) == 0 && ok);
    CHECK_INT(r2->version, 3);
    CHECK(s->ops->get(s, snap2, x) == r2);
    CHECK_INT(s->ops->get(s, NULL, x)->version, 5);
    s->ops->snapshot_release(s, snap);
    s->ops->snapshot_release(s, snap2);

    /* Many snapshots open at once, and one left open at close. */
    void *many[40];
    for (int i = 0; i < 40; i++) {
        many[i] = s->ops->snapshot(s);
        CHECK(many[i] != NULL);
        CHECK(s->ops->get(s, many[i], x) != NULL);
    }
    for (int i = 0; i < 39; i++)
        s->ops->snapshot_release(s, many[i]);
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(snapshot_survives_map_growth)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 64 << 10, 64 << 20);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    for (unsigned i = 1; i <= 20; i++)
        REQUIRE(create_with_state(&f, s, keep(st_oidn(i)), int_list(2, i)));
    avm_lmdb_close(db);
    db = st_open(f.dir, 64 << 10, 64 << 20); /* an empty cache: reads go to LMDB */
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    avm_lmdb_stats st0, st1;
    avm_lmdb_stats_get(db, &st0);
    void *snap = s->ops->snapshot(s);
    REQUIRE(snap != NULL);
    CHECK(s->ops->get(s, snap, keep(st_oidn(1))) != NULL);
    avm_val big = blob_state(2000, 'g');
    for (unsigned i = 100; i < 400; i++)
        REQUIRE(create_with_state(&f, s, keep(st_oidn(i)), big));
    avm_pair ch = {keep(st_oidn(2)), int_list(1, -1)};
    avm_writeset w = {.states = &ch, .nstates = 1};
    bool ok;
    CHECK(apply1(s, &w, &ok) == 0 && ok);
    avm_lmdb_stats_get(db, &st1);
    CHECK(st1.map_size > st0.map_size);
    for (unsigned i = 1; i <= 20; i++) {
        const avm_objrec *r = s->ops->get(s, snap, keep(st_oidn(i)));
        REQUIRE(r != NULL);
        CHECK(avm_val_eq(r->state, int_list(2, i)));
    }
    CHECK(s->ops->get(s, snap, keep(st_oidn(150))) == NULL);
    s->ops->snapshot_release(s, snap);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Checkpoints with commits ----------------------------------------------- */

TEST(checkpoint_only_with_its_commit)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val x = keep(st_oidn(1));
    REQUIRE(create_with_state(&f, s, x, int_list(1, 0)));
    avm_pair st = {x, int_list(1, 1)};
    avm_read good = {x, 2}, bad = {x, 1};
    avm_writeset w1 = {.reads = &good,
                       .nreads = 1,
                       .states = &st,
                       .nstates = 1,
                       .ckpt_id = "exec1",
                       .ckpt_state = (const uint8_t *)"S1",
                       .ckpt_len = 2,
                       .ckpt_status = 3};
    avm_writeset w2 = {.reads = &bad,
                       .nreads = 1,
                       .states = &st,
                       .nstates = 1,
                       .ckpt_id = "exec2",
                       .ckpt_state = (const uint8_t *)"S2",
                       .ckpt_len = 2,
                       .ckpt_status = 3};
    const avm_writeset *b[2] = {&w1, &w2};
    bool ok[2];
    CHECK_INT(avm_lmdb_apply_batch(db, b, 2, ok), 0);
    CHECK(ok[0] && !ok[1]);
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    uint8_t status;
    avm_buf e;
    CHECK_INT(avm_lmdb_exec_get(db, "exec1", &status, &e), 0);
    CHECK(status == 3 && e.len == 2 && memcmp(e.data, "S1", 2) == 0);
    avm_buf_free(&e);
    CHECK_INT(avm_lmdb_exec_get(db, "exec2", &status, &e), AVM_ENOTFOUND);
    avm_buf_free(&e);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Keys beyond LMDB's limit ----------------------------------------------- */

TEST(keys_beyond_the_limit)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    char longid[700];
    memset(longid, 'k', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    avm_val lo = keep(st_id(AVM_OBJID, longid));
    CHECK(s->ops->get(s, NULL, lo) == NULL);
    void *snap = s->ops->snapshot(s);
    CHECK(s->ops->get(s, snap, lo) == NULL);
    s->ops->snapshot_release(s, snap);
    avm_create c = mkcreate(&f, lo, false);
    avm_writeset w = {.creates = &c, .ncreates = 1};
    bool ok = true;
    CHECK_INT(apply1(s, &w, &ok), AVM_ETOOBIG);
    CHECK(!ok);
    CHECK(contains(avm_lmdb_errmsg(db), "key limit"));
    CHECK(contains(avm_lmdb_errmsg(db), f.dir));
    /* Writes to such an object find nothing, as for any absent object. */
    avm_pair st = {lo, int_list(1, 1)};
    avm_writeset w2 = {.states = &st, .nstates = 1};
    CHECK(apply1(s, &w2, &ok) == 0 && ok);
    avm_read rd = {lo, AVM_VERSION_EXISTS};
    avm_writeset w3 = {.reads = &rd, .nreads = 1};
    CHECK(apply1(s, &w3, &ok) == 0 && !ok);
    CHECK_INT(avm_lmdb_exec_put(db, longid, 0, NULL, 0), AVM_ETOOBIG);
    uint8_t status;
    avm_buf e;
    CHECK_INT(avm_lmdb_exec_get(db, longid, &status, &e), AVM_ENOTFOUND);
    avm_buf_free(&e);
    avm_buf tl;
    CHECK_INT(avm_lmdb_trace_log(db, longid, &tl), 0);
    CHECK_INT(tl.len, 0);
    avm_buf_free(&tl);
    avm_purefn pf = {.name = keep(st_id(AVM_STR, longid)), .code = f.mod, .version = 1};
    CHECK_INT(s->ops->pure_put(s, &pf), AVM_ETOOBIG);
    CHECK(s->ops->pure_get(s, pf.name) == NULL);
    avm_lmdb_stats stt;
    avm_lmdb_stats_get(db, &stt);
    CHECK_INT(stt.objects, 0);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Checkpoint storage ----------------------------------------------------- */

/* The keys (8-byte numbers) of database name, read by hand after the store closed:
 * how many (at most max are stored in keys), or -1 when there is no such database. */
static long raw_numbers(const char *dir, const char *name, uint64_t *keys, size_t max)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *cur;
    long n = -1;
    if (mdb_env_create(&env) != 0)
        return -1;
    mdb_env_set_maxdbs(env, 16);
    if (mdb_env_open(env, dir, MDB_RDONLY, 0644) == 0 &&
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open(txn, name, 0, &dbi) == 0 &&
            mdb_cursor_open(txn, dbi, &cur) == 0) {
            MDB_val k, v;
            n = 0;
            for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
                 rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++) {
                uint64_t x = 0;
                for (size_t i = 0; i < k.mv_size && i < 8; i++)
                    x = x << 8 | ((const uint8_t *)k.mv_data)[i];
                if ((size_t)n < max)
                    keys[n] = x;
            }
            mdb_cursor_close(cur);
        }
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return n;
}

/* What an execution should have in the store: its latest checkpoint and its log. */
typedef struct xmodel {
    char id[32];
    uint8_t status;
    avm_buf state, log;
} xmodel;

#define NX 64

/* One checkpoint of x in w: a new state (of a size that changes each round, as
 * the manager's do) and, every seventh round, a chunk of its trace log. The
 * bytes live in x until its next checkpoint. */
static void ck_next(xmodel *x, int round, int i, avm_writeset *w, avm_buf *chunk)
{
    size_t len = 600 + (size_t)(round * 170 + i * 13) % 1200;
    x->state.len = 0;
    for (size_t j = 0; j < len; j++) {
        uint8_t c = (uint8_t)(round * 31 + i + j);
        avm_buf_put(&x->state, &c, 1);
    }
    x->status = (uint8_t)(round % 5);
    *w = (avm_writeset){.ckpt_id = x->id,
                        .ckpt_state = (const uint8_t *)x->state.data,
                        .ckpt_len = x->state.len,
                        .ckpt_status = x->status};
    chunk->len = 0;
    if ((round + i) % 7 == 0) {
        for (int j = 0; j < 100 + i; j++)
            avm_buf_put(chunk, &"0123456789"[(round + j) % 10], 1);
        w->ckpt_trace = (const uint8_t *)chunk->data;
        w->ckpt_trace_len = chunk->len;
        w->ckpt_trace_at = x->log.len;
        avm_buf_put(&x->log, chunk->data, chunk->len);
    }
}

/* One group commit of the checkpoints of xs[lo, hi); with twice, xs[lo]
 * checkpoints twice in it (the later one is the latest). */
static bool ck_round(avm_lmdb *db, xmodel *xs, int lo, int hi, int round, bool twice)
{
    avm_writeset w[NX + 1];
    const avm_writeset *wp[NX + 1];
    avm_buf chunks[NX + 1], first;
    bool ok[NX + 1];
    size_t n = 0;
    avm_buf_init(&first);
    for (int i = lo; i < hi; i++) {
        avm_buf_init(&chunks[n]);
        ck_next(&xs[i], round, i, &w[n], &chunks[n]);
        if (twice && i == lo) {
            /* The first state must stay valid: the model keeps only the second. */
            avm_buf_put(&first, xs[i].state.data, xs[i].state.len);
            w[n].ckpt_state = (const uint8_t *)first.data;
            wp[n] = &w[n];
            n++;
            avm_buf_init(&chunks[n]);
            ck_next(&xs[i], round + 7 - (round + i) % 7, i, &w[n], &chunks[n]);
        }
        wp[n] = &w[n];
        n++;
    }
    int rv = avm_lmdb_apply_batch(db, wp, n, ok);
    bool all = rv == 0;
    for (size_t i = 0; i < n; i++) {
        all = all && ok[i];
        avm_buf_free(&chunks[i]);
    }
    avm_buf_free(&first);
    if (!all)
        fprintf(stderr, "round %d: %s\n", round, avm_lmdb_errmsg(db));
    return all;
}

/* Every execution's latest checkpoint and whole log are what the model says. */
static bool ck_match(avm_lmdb *db, xmodel *xs, int n)
{
    bool same = true;
    for (int i = 0; i < n; i++) {
        uint8_t status = 0xff;
        avm_buf st, log;
        int rv = avm_lmdb_exec_get(db, xs[i].id, &status, &st);
        int rv2 = avm_lmdb_trace_log(db, xs[i].id, &log);
        if (rv != 0 || rv2 != 0 || status != xs[i].status || st.len != xs[i].state.len ||
            memcmp(st.data, xs[i].state.data, st.len) != 0 || log.len != xs[i].log.len ||
            (log.len > 0 && memcmp(log.data, xs[i].log.data, log.len) != 0)) {
            fprintf(stderr, "%s: %d %d status %d, state %zu bytes, log %zu bytes: %s\n",
                    xs[i].id, rv, rv2, status, st.len, log.len, avm_lmdb_errmsg(db));
            same = false;
        }
        avm_buf_free(&st);
        avm_buf_free(&log);
    }
    return same;
}

TEST(checkpoints_are_reclaimed_and_compacted)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    static xmodel xs[NX];
    for (int i = 0; i < NX; i++) {
        snprintf(xs[i].id, sizeof(xs[i].id), "node1/e%d", i + 1);
        avm_buf_init(&xs[i].state);
        avm_buf_init(&xs[i].log);
    }
    uint64_t keys[16];
    int round = 0;

    /* All checkpoint every round: each round's blob supersedes the last whole. */
    for (int r = 0; r < 30; r++)
        REQUIRE(ck_round(db, xs, 0, NX, round++, r == 11));
    CHECK(ck_match(db, xs, NX));
    avm_lmdb_close(db);
    CHECK_INT(raw_numbers(f.dir, "checkpoints", keys, 16), 1);
    CHECK_INT(raw_numbers(f.dir, "execs", keys, 16), NX);

    /* After a reopen (what the handle knew of blobs is gone), a quarter go on: the
     * blob the others last wrote stays, three quarters live. */
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    for (int r = 0; r < 10; r++)
        REQUIRE(ck_round(db, xs, 0, NX / 4, round++, false));
    CHECK(ck_match(db, xs, NX));
    avm_lmdb_close(db);
    CHECK_INT(raw_numbers(f.dir, "checkpoints", keys, 16), 2);

    /* All but four go on: that blob is then a sixteenth live; its four entries
     * move to a blob of their own, which the busy ones' rounds leave alone. */
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    for (int r = 0; r < 3; r++)
        REQUIRE(ck_round(db, xs, 0, NX - 4, round++, r == 1));
    avm_lmdb_close(db);
    CHECK_INT(raw_numbers(f.dir, "checkpoints", keys, 16), 2);
    uint64_t cold = keys[0];
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    for (int r = 0; r < 10; r++)
        REQUIRE(ck_round(db, xs, 0, NX - 4, round++, false));
    /* One by itself, and a log cleared. */
    avm_buf_free(&xs[3].state);
    avm_buf_init(&xs[3].state);
    avm_buf_put(&xs[3].state, "put", 3);
    xs[3].status = 9;
    CHECK_INT(avm_lmdb_exec_put(db, xs[3].id, 9, (const uint8_t *)"put", 3), 0);
    CHECK_INT(avm_lmdb_trace_clear(db, xs[4].id), 0);
    xs[4].log.len = 0;
    CHECK(ck_match(db, xs, NX));
    avm_lmdb_close(db);
    CHECK_INT(raw_numbers(f.dir, "checkpoints", keys, 16), 3);
    CHECK(keys[0] == cold);

    /* Deleted, an execution takes its checkpoint and its log along. */
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(ck_match(db, xs, NX));
    for (int i = 0; i < NX; i++)
        CHECK_INT(avm_lmdb_exec_del(db, xs[i].id), 0);
    avm_lmdb_close(db);
    CHECK_INT(raw_numbers(f.dir, "checkpoints", keys, 16), 0);
    CHECK_INT(raw_numbers(f.dir, "trace_chunks", keys, 16), 0);
    CHECK_INT(raw_numbers(f.dir, "execs", keys, 16), 0);
    for (int i = 0; i < NX; i++) {
        avm_buf_free(&xs[i].state);
        avm_buf_free(&xs[i].log);
    }
    fx_end(&f);
}

TEST(checkpoints_survive_map_growth)
{
    fixture f;
    fx_begin(&f);
    /* Each round's states alone are several times the first map. */
    avm_lmdb *db = st_open(f.dir, 64 << 10, 0);
    REQUIRE(db != NULL);
    static xmodel xs[NX];
    for (int i = 0; i < NX; i++) {
        snprintf(xs[i].id, sizeof(xs[i].id), "node1/g%d", i + 1);
        avm_buf_init(&xs[i].state);
        avm_buf_init(&xs[i].log);
    }
    for (int r = 0; r < 20; r++)
        REQUIRE(ck_round(db, xs, 0, r % 3 == 2 ? NX / 8 : NX, r, r == 4));
    CHECK(ck_match(db, xs, NX));
    avm_lmdb_stats st;
    REQUIRE(avm_lmdb_stats_get(db, &st) == 0);
    CHECK(st.map_size > (64 << 10));
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(ck_match(db, xs, NX));
    avm_lmdb_close(db);
    for (int i = 0; i < NX; i++) {
        avm_buf_free(&xs[i].state);
        avm_buf_free(&xs[i].log);
    }
    fx_end(&f);
}

/* ---- The pure registry records who made each version ------------------------- */

static void collect_pure(void *arg, const avm_lmdb_pureinfo *p)
{
    avm_buf *b = arg;
    avm_buf_printf(b, "%s v%llu by=%s exec=%s machine=%s;", p->name.u.s->data,
                   (unsigned long long)p->version,
                   p->by.kind == AVM_STR ? p->by.u.s->data : "nil",
                   p->exec.kind == AVM_STR ? p->exec.u.s->data : "nil",
                   p->machine.kind == AVM_MACHID ? p->machine.u.s->data : "nil");
}

static int raw_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v,
                   size_t vlen);

/* Writes name -> value into the "pure" table of the closed environment at dir. */
static int raw_pure(const char *dir, const char *name, const avm_buf *v)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "pure", 0, &dbi);
        if (rc == 0)
            rc = raw_put(txn, dbi, name, strlen(name), v->data, v->len);
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return rc;
}

TEST(pure_records_say_who)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val pname = keep(st_id(AVM_STR, "scale"));
    avm_purefn pf = {.name = pname,
                     .code = f.mod,
                     .version = 1,
                     .by = keep(st_id(AVM_STR, "alice")),
                     .exec = keep(st_id(AVM_STR, "node1/x4")),
                     .machine = f.node};
    CHECK_INT(s->ops->pure_put(s, &pf), 0);
    const avm_purefn *pg = s->ops->pure_get(s, pname);
    REQUIRE(pg != NULL);
    CHECK(avm_val_eq(pg->by, pf.by) && avm_val_eq(pg->exec, pf.exec) &&
          avm_val_eq(pg->machine, f.node));
    /* Without who: nil stays nil. */
    avm_purefn anon = {.name = keep(st_id(AVM_STR, "anon")), .code = f.mod};
    CHECK_INT(s->ops->pure_put(s, &anon), 0);
    /* by must be a string. */
    avm_purefn wrong = pf;
    wrong.by = avm_int(3);
    CHECK_INT(s->ops->pure_put(s, &wrong), AVM_EINVAL);
    avm_lmdb_close(db);

    /* A record as written before `by` existed: [hash, version]; and a damaged one
     * of three elements. */
    avm_buf old, damaged;
    avm_buf_init(&old);
    avm_mp_put_array(&old, 2);
    avm_mp_put_bin(&old, f.mod->hash, 32);
    avm_mp_put_uint(&old, 7);
    avm_buf_init(&damaged);
    avm_mp_put_array(&damaged, 3);
    avm_mp_put_bin(&damaged, f.mod->hash, 32);
    avm_mp_put_uint(&damaged, 7);
    avm_mp_put_uint(&damaged, 7);
    CHECK_INT(raw_pure(f.dir, "old", &old), 0);
    CHECK_INT(raw_pure(f.dir, "zbad", &damaged), 0);
    avm_buf_free(&old);
    avm_buf_free(&damaged);

    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    pg = s->ops->pure_get(s, keep(st_id(AVM_STR, "old")));
    REQUIRE(pg != NULL);
    CHECK_INT(pg->version, 7);
    CHECK(pg->by.kind == AVM_NIL && pg->exec.kind == AVM_NIL &&
          pg->machine.kind == AVM_NIL);
    pg = s->ops->pure_get(s, pname);
    REQUIRE(pg != NULL);
    CHECK(avm_val_eq(pg->by, pf.by)); /* from disk this time */
    CHECK(s->ops->pure_get(s, keep(st_id(AVM_STR, "zbad"))) == NULL);
    CHECK(contains(avm_lmdb_errmsg(db), "pure-function entry"));
    /* The listing names the damaged record. */
    avm_buf each;
    avm_buf_init(&each);
    CHECK_INT(avm_lmdb_pure_each(db, collect_pure, &each), AVM_EIO);
    CHECK(contains(avm_lmdb_errmsg(db), "zbad"));
    avm_buf_free(&each);
    avm_lmdb_close(db);
    /* Without it, every record in name order. */
    avm_buf fine;
    avm_buf_init(&fine);
    avm_mp_put_array(&fine, 2);
    avm_mp_put_bin(&fine, f.mod->hash, 32);
    avm_mp_put_uint(&fine, 2);
    CHECK_INT(raw_pure(f.dir, "zbad", &fine), 0);
    avm_buf_free(&fine);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_buf_init(&each);
    CHECK_INT(avm_lmdb_pure_each(db, collect_pure, &each), 0);
    CHECK_STR(avm_buf_cstr(&each),
              "anon v0 by=nil exec=nil machine=nil;old v7 by=nil exec=nil machine=nil;"
              "scale v1 by=alice exec=node1/x4 machine=node1;zbad v2 by=nil exec=nil "
              "machine=nil;");
    avm_buf_free(&each);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Format 1 --------------------------------------------------------------- */

/* A format 1 environment, written by hand: records [status, state bin] in
 * "executions", chunks under (id, 0x00, 8-byte offset) in "traces". */
static int raw_put(MDB_txn *txn, MDB_dbi dbi, const void *k, size_t klen, const void *v,
                   size_t vlen)
{
    MDB_val kv = {klen, (void *)k}, vv = {vlen, (void *)v};
    return mdb_put(txn, dbi, &kv, &vv, 0);
}

static int raw_exec1(MDB_txn *txn, MDB_dbi dbi, const char *id, int status,
                     const char *state)
{
    avm_buf b;
    avm_buf_init(&b);
    avm_mp_put_array(&b, 2);
    avm_mp_put_uint(&b, (uint64_t)status);
    avm_mp_put_bin(&b, state, strlen(state));
    int rc = raw_put(txn, dbi, id, strlen(id), b.data, b.len);
    avm_buf_free(&b);
    return rc;
}

static int raw_chunk1(MDB_txn *txn, MDB_dbi dbi, const char *id, uint64_t at,
                      const char *bytes)
{
    char k[64];
    size_t n = strlen(id);
    memcpy(k, id, n);
    k[n] = '\0';
    for (int i = 0; i < 8; i++)
        k[n + 1 + i] = (char)(at >> (56 - 8 * i));
    return raw_put(txn, dbi, k, n + 9, bytes, strlen(bytes));
}

static int raw_format1(const char *dir, bool damaged)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, ex, tr;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0) {
        mdb_env_close(env);
        return rc;
    }
    uint8_t one = 1, seq[3] = {0xcd, 0x04, 0x00}; /* msgpack 1 and 1024 */
    if ((rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &meta)) == 0)
        rc = raw_put(txn, meta, "format", 6, &one, 1);
    if (rc == 0)
        rc = raw_put(txn, meta, "seq", 3, seq, 3);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "executions", MDB_CREATE, &ex);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "traces", MDB_CREATE, &tr);
    if (rc == 0)
        rc = raw_exec1(txn, ex, "node1/e1", 3, "state one");
    if (rc == 0)
        rc = raw_exec1(txn, ex, "node1/e2", 1, "");
    if (rc == 0)
        rc = raw_exec1(txn, ex, "node1/e3", 2, "s3");
    if (rc == 0 && damaged)
        rc = raw_put(txn, ex, "node1/e4", 8, "\x92\x01", 2);
    if (rc == 0)
        rc = raw_chunk1(txn, tr, "node1/e1", 3, "de");
    if (rc == 0)
        rc = raw_chunk1(txn, tr, "node1/e1", 0, "abc");
    if (rc == 0)
        rc = raw_chunk1(txn, tr, "node1/e2", 0, "zz");
    if (rc == 0)
        rc = raw_chunk1(txn, tr, "node1/e9", 0, "orphan");
    rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
    mdb_env_close(env);
    return rc;
}

static bool exec_is(avm_lmdb *db, const char *id, int status, const char *state,
                    const char *log)
{
    uint8_t st = 0xff;
    avm_buf s, l;
    int rv = avm_lmdb_exec_get(db, id, &st, &s);
    int rv2 = avm_lmdb_trace_log(db, id, &l);
    bool same = rv == 0 && rv2 == 0 && st == status && s.len == strlen(state) &&
                (s.len == 0 || memcmp(s.data, state, s.len) == 0) &&
                l.len == strlen(log) && (l.len == 0 || memcmp(l.data, log, l.len) == 0);
    if (!same)
        fprintf(stderr, "%s: %d %d: %s\n", id, rv, rv2, avm_lmdb_errmsg(db));
    avm_buf_free(&s);
    avm_buf_free(&l);
    return same;
}

TEST(format_1_is_migrated)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(raw_format1(f.dir, false) == 0);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(exec_is(db, "node1/e1", 3, "state one", "abcde"));
    CHECK(exec_is(db, "node1/e2", 1, "", "zz"));
    CHECK(exec_is(db, "node1/e3", 2, "s3", ""));
    avm_buf l;
    CHECK_INT(avm_lmdb_trace_log(db, "node1/e9", &l), 0); /* dropped: no record */
    CHECK_INT(l.len, 0);
    avm_buf_free(&l);
    avm_buf each;
    avm_buf_init(&each);
    CHECK_INT(avm_lmdb_exec_each(db, collect_exec, &each), 0);
    CHECK_STR(avm_buf_cstr(&each), "node1/e1=3;node1/e2=1;node1/e3=2;");
    avm_buf_free(&each);
    /* The logs go on from where format 1 left them. */
    avm_writeset w = {.ckpt_id = "node1/e1",
                      .ckpt_state = (const uint8_t *)"state two",
                      .ckpt_len = 9,
                      .ckpt_status = 4,
                      .ckpt_trace = (const uint8_t *)"fg",
                      .ckpt_trace_len = 2,
                      .ckpt_trace_at = 5};
    bool ok;
    CHECK(avm_lmdb_store(db)->ops->apply(avm_lmdb_store(db), &w, &ok) == 0 && ok);
    CHECK(exec_is(db, "node1/e1", 4, "state two", "abcdefg"));
    CHECK(avm_lmdb_store(db)->ops->next_seq(avm_lmdb_store(db)) > 1024);
    avm_lmdb_close(db);
    uint64_t keys[4];
    CHECK_INT(raw_numbers(f.dir, "executions", keys, 4), -1);
    CHECK_INT(raw_numbers(f.dir, "traces", keys, 4), -1);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(exec_is(db, "node1/e1", 4, "state two", "abcdefg"));
    CHECK(exec_is(db, "node1/e2", 1, "", "zz"));
    avm_lmdb_close(db);

    /* A damaged format 1 record: refused, named, and nothing changed. */
    char *dir = subdir(&f, "damaged");
    mkdir(dir, 0755);
    REQUIRE(raw_format1(dir, true) == 0);
    avm_lmdb_config cfg = {.path = dir};
    char err[512];
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EIO);
    CHECK(db == NULL);
    CHECK(contains(err, "node1/e4") && contains(err, dir));
    CHECK(contains(err, "format 1") && contains(err, "format 2"));
    printf("  refused: %s\n", err);
    CHECK_INT(raw_numbers(dir, "executions", keys, 4), 4);
    fx_end(&f);
}

/* ---- Format version and the single-writer lock ------------------------------ */

/* Writes meta "format" by hand (value: msgpack uint), or deletes it (v < 0). */
static int raw_set_format(const char *dir, int v)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    int rc = mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 16);
    if (rc == 0)
        rc = mdb_env_open(env, dir, 0, 0644);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc == 0) {
        rc = mdb_dbi_open(txn, "meta", 0, &dbi);
        MDB_val k = {6, "format"};
        uint8_t b = (uint8_t)v;
        MDB_val d = {1, &b};
        if (rc == 0)
            rc = v < 0 ? mdb_del(txn, dbi, &k, NULL) : mdb_put(txn, dbi, &k, &d, 0);
        rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
    }
    mdb_env_close(env);
    return rc;
}

TEST(format_version_checked_at_open)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(create_with_state(&f, avm_lmdb_store(db), keep(st_oidn(1)), int_list(1, 1)));
    avm_lmdb_close(db);

    REQUIRE(raw_set_format(f.dir, AVM_LMDB_FORMAT + 1) == 0);
    avm_lmdb_config cfg = {.path = f.dir};
    char err[512], newer[32], ours[32];
    snprintf(newer, sizeof(newer), "format %d", AVM_LMDB_FORMAT + 1);
    snprintf(ours, sizeof(ours), "format %d", AVM_LMDB_FORMAT);
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EVERSION);
    CHECK(db == NULL);
    CHECK(contains(err, f.dir));
    CHECK(contains(err, newer));
    CHECK(contains(err, ours));
    printf("  refused: %s\n", err);

    REQUIRE(raw_set_format(f.dir, -1) == 0);
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EVERSION);
    CHECK(contains(err, f.dir));
    CHECK(contains(err, "without a storage format version"));

    /* Written back, the data is all there. */
    REQUIRE(raw_set_format(f.dir, AVM_LMDB_FORMAT) == 0);
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), 0);
    if (db != NULL) {
        CHECK(avm_lmdb_store(db)->ops->get(avm_lmdb_store(db), NULL, keep(st_oidn(1))));
        avm_lmdb_close(db);
    }

    /* Any other LMDB environment is not ours. */
    char *other = subdir(&f, "other");
    mkdir(other, 0755);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    REQUIRE(mdb_env_open(env, other, 0, 0644) == 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, NULL, 0, &dbi);
    MDB_val k = {3, "key"}, d = {3, "val"};
    mdb_put(txn, dbi, &k, &d, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
    cfg.path = other;
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EVERSION);
    CHECK(contains(err, other));
    fx_end(&f);
}

TEST(second_open_is_refused)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_lmdb_config cfg = {.path = f.dir};
    avm_lmdb *db2 = NULL;
    char err[512], want[600];
    snprintf(want, sizeof(want), "data directory %s is in use by another process", f.dir);
    CHECK_INT(avm_lmdb_open(&cfg, &db2, err, sizeof(err)), AVM_ESTATE);
    CHECK(db2 == NULL);
    CHECK_STR(err, want);

    /* From another process too. */
    pid_t pid = fork();
    if (pid == 0) {
        avm_lmdb *d3 = NULL;
        char e3[512];
        int rv = avm_lmdb_open(&cfg, &d3, e3, sizeof(e3));
        _exit(rv == AVM_ESTATE && strcmp(e3, want) == 0 ? 0 : 1);
    }
    int wst;
    waitpid(pid, &wst, 0);
    CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);

    /* The first handle still works; after it closes the directory opens again. */
    CHECK(create_with_state(&f, avm_lmdb_store(db), keep(st_oidn(1)), int_list(1, 1)));
    avm_lmdb_close(db);
    CHECK_INT(avm_lmdb_open(&cfg, &db2, err, sizeof(err)), 0);
    avm_lmdb_close(db2);
    fx_end(&f);
}

/* ---- Map growth and map full ------------------------------------------------ */

TEST(map_grows_on_demand)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 64 << 10, 256 << 20);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_lmdb_stats st0, st1;
    avm_lmdb_stats_get(db, &st0);
    avm_val state = blob_state(300, 's');
    /* 3000 objects, in group commits of 50 and single commits. */
    avm_create cr[50];
    avm_pair sp[50];
    for (unsigned base = 0; base < 3000; base += 50) {
        for (unsigned i = 0; i < 50; i++) {
            cr[i] = mkcreate(&f, keep(st_oidn(base + i)), false);
            sp[i] = (avm_pair){cr[i].oid, state};
        }
        avm_writeset w = {.creates = cr, .ncreates = 50, .states = sp, .nstates = 50};
        bool ok = false;
        REQUIRE(apply1(s, &w, &ok) == 0 && ok);
    }
    avm_lmdb_stats_get(db, &st1);
    printf("  map grew from %zu to %zu bytes (%zu used)\n", st0.map_size, st1.map_size,
           st1.map_used);
    CHECK_INT(st0.map_size, 64 << 10);
    CHECK(st1.map_size >= 1 << 20);
    CHECK_INT(st1.objects, 3000);
    avm_lmdb_close(db);
    db = st_open(f.dir, 64 << 10, 256 << 20);
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    for (unsigned i = 0; i < 3000; i += 7) {
        const avm_objrec *r = s->ops->get(s, NULL, keep(st_oidn(i)));
        CHECK(r != NULL && avm_val_eq(r->state, state));
    }
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(map_full_beyond_the_limit)
{
    fixture f;
    fx_begin(&f);
    size_t max = 256 << 10;
    avm_lmdb *db = st_open(f.dir, 64 << 10, max);
    REQUIRE(db != NULL);
    avm_store *s = avm_lmdb_store(db);
    avm_val state = blob_state(1000, 'm');
    unsigned n = 0;
    int rv = 0;
    bool ok = false;
    for (; n < 10000; n++) {
        avm_val oid = keep(st_oidn(n));
        avm_create c = mkcreate(&f, oid, false);
        avm_pair sp = {oid, state};
        avm_writeset w = {.creates = &c, .ncreates = 1, .states = &sp, .nstates = 1};
        ok = true;
        if ((rv = apply1(s, &w, &ok)) != 0)
            break;
        REQUIRE(ok);
    }
    char want[600];
    snprintf(want, sizeof(want), "map full: %s reached its limit of %zu bytes", f.dir,
             max);
    printf("  %u commits fitted; then: %s\n", n, avm_lmdb_errmsg(db));
    CHECK(n > 10 && n < 10000);
    CHECK_INT(rv, AVM_EIO);
    CHECK(!ok);
    CHECK_STR(avm_lmdb_errmsg(db), want);
    CHECK(s->ops->get(s, NULL, keep(st_oidn(n))) == NULL);
    for (unsigned i = 0; i < n; i++)
        CHECK(s->ops->get(s, NULL, keep(st_oidn(i))) != NULL);
    /* Other writes report the same; reads keep working. */
    uint8_t *huge = calloc(1, 300000);
    REQUIRE(huge != NULL);
    CHECK_INT(avm_lmdb_exec_put(db, "t", 2, huge, 300000), AVM_EIO);
    free(huge);
    CHECK(contains(avm_lmdb_errmsg(db), "map full"));
    avm_lmdb_close(db);
    db = st_open(f.dir, 64 << 10, max);
    REQUIRE(db != NULL);
    s = avm_lmdb_store(db);
    for (unsigned i = 0; i < n; i++) {
        const avm_objrec *r = s->ops->get(s, NULL, keep(st_oidn(i)));
        CHECK(r != NULL && avm_val_eq(r->state, state));
    }
    CHECK(s->ops->get(s, NULL, keep(st_oidn(n))) == NULL);
    /* With a higher limit, the next commit fits. */
    avm_lmdb_close(db);
    db = st_open(f.dir, 64 << 10, 4 * max);
    REQUIRE(db != NULL);
    CHECK(create_with_state(&f, avm_lmdb_store(db), keep(st_oidn(n)), state));
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Corrupt files, permissions, disk full ---------------------------------- */

TEST(corrupt_file_is_refused)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(create_with_state(&f, avm_lmdb_store(db), keep(st_oidn(1)), int_list(1, 1)));
    avm_lmdb_close(db);
    char data[600];
    snprintf(data, sizeof(data), "%s/data.mdb", f.dir);
    int fd = open(data, O_WRONLY);
    REQUIRE(fd >= 0);
    char junk[8192];
    memset(junk, 0xa5, sizeof(junk));
    CHECK(pwrite(fd, junk, sizeof(junk), 0) == (ssize_t)sizeof(junk));
    close(fd);
    avm_lmdb_config cfg = {.path = f.dir};
    char err[512];
    int rv = avm_lmdb_open(&cfg, &db, err, sizeof(err));
    printf("  refused: %s\n", err);
    CHECK_INT(rv, AVM_EIO);
    CHECK(db == NULL);
    CHECK(contains(err, f.dir));
    CHECK(contains(err, "corrupt"));

    /* A truncated file too. */
    CHECK(truncate(data, 100) == 0);
    rv = avm_lmdb_open(&cfg, &db, err, sizeof(err));
    CHECK_INT(rv, AVM_EIO);
    CHECK(contains(err, "corrupt"));
    fx_end(&f);
}

TEST(permission_denied_and_not_a_directory)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = NULL;
    char err[512];

    /* A path under a regular file fails even for root. */
    char *file = subdir(&f, "file");
    char filepath[600], under[700];
    snprintf(filepath, sizeof(filepath), "%s", file);
    int fd = open(filepath, O_CREAT | O_WRONLY, 0644);
    REQUIRE(fd >= 0);
    close(fd);
    snprintf(under, sizeof(under), "%s/data", filepath);
    avm_lmdb_config cfg = {.path = under};
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EIO);
    printf("  refused: %s\n", err);
    CHECK(contains(err, under));
    CHECK(contains(err, "not a directory"));
    cfg.path = filepath;
    CHECK_INT(avm_lmdb_open(&cfg, &db, err, sizeof(err)), AVM_EIO);
    CHECK(contains(err, filepath));
    CHECK(contains(err, "not a directory"));

    /* A read-only directory, and an existing store this user may not write. Root
     * bypasses permissions: then the checks run in a child that drops to nobody. */
    char ro[600], inside[700], probe[800], store[600];
    snprintf(ro, sizeof(ro), "%s/ro", f.dir);
    mkdir(ro, 0500);
    snprintf(inside, sizeof(inside), "%s/data", ro);
    snprintf(store, sizeof(store), "%s/store", f.dir);
    db = st_open(store, 0, 0);
    REQUIRE(db != NULL);
    avm_lmdb_close(db);
    snprintf(probe, sizeof(probe), "%s/probe", ro);
    int pfd = open(probe, O_CREAT | O_WRONLY, 0644);
    bool as_root = pfd >= 0;
    if (as_root) {
        close(pfd);
        unlink(probe);
        chmod(f.dir, 0755);
    }
    fflush(stdout);
    pid_t pid = as_root ? fork() : 0;
    if (pid == 0) {
        if (as_root && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(77);
        int bad = 0;
        const char *paths[2] = {inside, store};
        for (int i = 0; i < 2; i++) {
            cfg.path = paths[i];
            int rv = avm_lmdb_open(&cfg, &db, err, sizeof(err));
            printf("  refused%s: %s\n", as_root ? " (as nobody)" : "", err);
            bad |= rv != AVM_EIO || db != NULL || !contains(err, paths[i]) ||
                   !contains(err, "permission denied");
        }
        if (as_root) {
            fflush(stdout);
            _exit(bad);
        }
        CHECK(!bad);
    } else if (pid > 0) {
        int wst;
        waitpid(pid, &wst, 0);
        if (WIFEXITED(wst) && WEXITSTATUS(wst) == 77)
            printf("  skipped: read-only directory (cannot drop root privileges)\n");
        else
            CHECK(WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    }
    chmod(ro, 0755);
    fx_end(&f);
}

TEST(disk_full_fails_the_commit_not_the_data)
{
    fixture f;
    fx_begin(&f);
    char *mnt = subdir(&f, "tmpfs");
    mkdir(mnt, 0755);
    if (mount("tmpfs", mnt, "tmpfs", 0, "size=1m") != 0) {
        printf("  skipped: cannot mount tmpfs (%s)\n", strerror(errno));
        fx_end(&f);
        return;
    }
    char dir[700];
    snprintf(dir, sizeof(dir), "%s/db", mnt);
    avm_lmdb *db = st_open(dir, 8 << 20, 64 << 20);
    if (db == NULL) {
        umount2(mnt, MNT_DETACH);
        REQUIRE(db != NULL);
    }
    avm_store *s = avm_lmdb_store(db);
    unsigned n = 0;
    int rv = 0;
    bool ok = false;
    for (; n < 1000; n++) {
        avm_val oid = keep(st_oidn(n));
        avm_create c = mkcreate(&f, oid, false);
        avm_pair sp = {oid, blob_state(12000, (char)('a' + n % 26))};
        avm_writeset w = {.creates = &c, .ncreates = 1, .states = &sp, .nstates = 1};
        ok = true;
        if ((rv = apply1(s, &w, &ok)) != 0)
            break;
        if (!ok)
            break;
    }
    printf("  %u commits fitted; then: %s\n", n, avm_lmdb_errmsg(db));
    CHECK(n > 5 && n < 1000);
    CHECK_INT(rv, AVM_EIO);
    CHECK(!ok);
    CHECK(contains(avm_lmdb_errmsg(db), "disk full"));
    CHECK(contains(avm_lmdb_errmsg(db), dir));
    CHECK(s->ops->get(s, NULL, keep(st_oidn(n))) == NULL);
    for (unsigned i = 0; i < n; i++) {
        const avm_objrec *r = s->ops->get(s, NULL, keep(st_oidn(i)));
        CHECK(r != NULL && avm_list_len(r->state) == 1 &&
              avm_list_at(r->state, 0).u.s->data[0] == (char)('a' + i % 26));
    }
    avm_lmdb_close(db);

    db = st_open(dir, 8 << 20, 64 << 20);
    CHECK(db != NULL);
    if (db != NULL) {
        s = avm_lmdb_store(db);
        for (unsigned i = 0; i < n; i++) {
            const avm_objrec *r = s->ops->get(s, NULL, keep(st_oidn(i)));
            CHECK(r != NULL && avm_list_len(r->state) == 1 &&
                  avm_list_at(r->state, 0).u.s->data[0] == (char)('a' + i % 26));
        }
        CHECK(s->ops->get(s, NULL, keep(st_oidn(n))) == NULL);
        avm_lmdb_close(db);
    }
    CHECK(umount2(mnt, 0) == 0 || umount2(mnt, MNT_DETACH) == 0);
    fx_end(&f);
}

TEST_MAIN(T(pure_records_say_who), T(roundtrip_every_record_kind),
          T(versions_bump_on_every_committed_write),
          T(exactly_one_of_two_conflicting_commits),
          T(group_commit_equals_sequential_apply), T(snapshot_reads_are_consistent),
          T(snapshot_survives_map_growth), T(checkpoint_only_with_its_commit),
          T(checkpoints_are_reclaimed_and_compacted), T(checkpoints_survive_map_growth),
          T(format_1_is_migrated), T(keys_beyond_the_limit),
          T(format_version_checked_at_open), T(second_open_is_refused),
          T(map_grows_on_demand), T(map_full_beyond_the_limit),
          T(corrupt_file_is_refused), T(permission_denied_and_not_a_directory),
          T(disk_full_fails_the_commit_not_the_data))
