/* The LMDB store's Raft side: group state (term and vote, log, snapshot metadata,
 * applied index, key/value table) round trips, log truncation and deletion, the
 * contiguity check, atomicity with the staged round (close without commit, and
 * SIGKILL), the listing and dropping of groups, an environment without the raft
 * databases, and controller snapshots: dump, restore into a fresh environment and
 * over different objects, the decoded cache after a restore, and malformed dumps
 * (every truncation, random corruption, corruption behind a valid checksum). Each
 * test uses its own temporary directory. */
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "avm_error.h"
#include "sha256.h"
#include "storage_test.h"
#include "test.h"
#include "vm.h"

/* ---- Fixture ---------------------------------------------------------------- */

static const char *src_a = "(behavior counter\n"
                           "  (let ((s (getState)))\n"
                           "    (setState (list (+ (head s) (input))))\n"
                           "    (list (+ (head s) (input)))))\n"
                           "(behavior other (list 1))\n"
                           "(main 0)\n";
static const char *src_b = "(behavior echo (list (input)))\n"
                           "(main 1)\n";

typedef struct fixture {
    char dir[256];
    avm_module *ma, *mb;
    uint32_t fn_counter, fn_other, fn_echo;
    avm_val node, ca, cb, cmain, sc, so, se, empty;
} fixture;

static void fx_begin(fixture *f)
{
    memset(f, 0, sizeof(*f));
    if (st_mkdtemp(f->dir, sizeof(f->dir)) == NULL)
        abort();
    f->ma = st_compile(src_a);
    f->mb = st_compile(src_b);
    if (f->ma == NULL || f->mb == NULL)
        abort();
    f->fn_counter = (uint32_t)avm_module_find(f->ma, "counter", AVM_FN_BEHAVIOR);
    f->fn_other = (uint32_t)avm_module_find(f->ma, "other", AVM_FN_BEHAVIOR);
    f->fn_echo = (uint32_t)avm_module_find(f->mb, "echo", AVM_FN_BEHAVIOR);
    f->node = st_id(AVM_MACHID, "node1");
    f->ca = st_id(AVM_CTRLID, "ctlA");
    f->cb = st_id(AVM_CTRLID, "ctlB");
    f->cmain = st_id(AVM_CTRLID, "main");
    f->sc = st_id(AVM_STR, "counter");
    f->so = st_id(AVM_STR, "other");
    f->se = st_id(AVM_STR, "echo");
    avm_list_new(0, &f->empty);
}

static void fx_end(fixture *f)
{
    avm_val v[] = {f->node, f->ca, f->cb, f->cmain, f->sc, f->so, f->se, f->empty};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        avm_val_release(v[i]);
    avm_module_release(f->ma);
    avm_module_release(f->mb);
    st_rmtree(f->dir);
}

static char *subdir(fixture *f, const char *name)
{
    static char buf[4][512];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 512, "%s/%s", f->dir, name);
    return b;
}

static avm_val oidn(unsigned n)
{
    return st_oidn(n);
}

static avm_val ilist(int64_t a)
{
    avm_val v = avm_int(a), l;
    avm_list_from(&v, 1, &l);
    return l;
}

/* One object: kind 0 counter (module a), 1 other (module a), 2 echo (module b), 3
 * no module; created by main, then moved to ctrl, with state (x). */
static avm_writeset *mkobj(fixture *f, avm_create *c, avm_pair *tr, avm_pair *st,
                           avm_writeset *ws, avm_val oid, int kind, avm_val ctrl,
                           avm_val state)
{
    avm_val names[4] = {f->sc, f->so, f->se, f->so};
    avm_module *mods[4] = {f->ma, f->ma, f->mb, NULL};
    uint32_t fns[4] = {f->fn_counter, f->fn_other, f->fn_echo, 7};
    *c = (avm_create){
        .oid = oid,
        .beh = {.name = names[kind], .mod = mods[kind], .fn = fns[kind]},
        .meta = {.machine = f->node, .creating = f->cmain, .current = f->cmain}};
    if (kind == 3)
        c->meta.creating = avm_nil();
    *tr = (avm_pair){oid, ctrl};
    *st = (avm_pair){oid, state};
    *ws = (avm_writeset){.creates = c,
                         .ncreates = 1,
                         .transfers = tr,
                         .ntransfers = 1,
                         .states = st,
                         .nstates = 1};
    return ws;
}

/* Creates (applies) one object; true on success. */
static bool create(fixture *f, avm_lmdb *db, unsigned n, int kind, avm_val ctrl,
                   int64_t x)
{
    avm_create c;
    avm_pair tr, st;
    avm_writeset ws;
    avm_val oid = oidn(n), state = ilist(x);
    mkobj(f, &c, &tr, &st, &ws, oid, kind, ctrl, state);
    bool ok = false;
    int rv = avm_lmdb_store(db)->ops->apply(avm_lmdb_store(db), &ws, &ok);
    avm_val_release(oid);
    avm_val_release(state);
    return rv == 0 && ok;
}

/* Stages a state write (x) to object n; true when it committed. */
static bool stage_state(avm_lmdb *db, unsigned n, int64_t x)
{
    avm_val oid = oidn(n), state = ilist(x);
    avm_pair st = {oid, state};
    avm_writeset ws = {.states = &st, .nstates = 1};
    bool ok = false;
    int rv = avm_lmdb_stage(db, &ws, NULL, 0, &ok);
    avm_val_release(oid);
    avm_val_release(state);
    return rv == 0 && ok;
}

/* The record of object n as a line ("NONE" when absent), into a static buffer. */
static const char *rec_of(avm_lmdb *db, unsigned n)
{
    static char out[4][1024];
    static int k;
    char *o = out[k++ % 4];
    avm_val oid = oidn(n);
    avm_store *s = avm_lmdb_store(db);
    const avm_objrec *r = s->ops->get(s, NULL, oid);
    avm_val_release(oid);
    avm_buf b;
    avm_buf_init(&b);
    if (r == NULL)
        avm_buf_puts(&b, "NONE");
    else
        st_rec_line(&b, r);
    snprintf(o, 1024, "%s", avm_buf_cstr(&b));
    avm_buf_free(&b);
    return o;
}

/* Every object, and every group with its state and kv entries, as text (caller
 * frees). */
typedef struct walk {
    avm_lmdb *db;
    avm_buf *b;
} walk;

static const char *const probe_keys[] = {"k1", "k2", "k3", "stale", ""};

static int group_line(void *arg, const char *group)
{
    walk *w = arg;
    avm_buf_printf(w->b, "%s:", group);
    avm_lmdb_rstate st;
    int rv = avm_lmdb_raft_load(w->db, group, &st);
    avm_buf_printf(w->b, " load=%d", rv);
    if (rv == 0)
        avm_buf_printf(w->b, " t=%llu v=%llu a=%llu first=%llu n=%zu",
                       (unsigned long long)st.term, (unsigned long long)st.vote,
                       (unsigned long long)st.applied, (unsigned long long)st.first_index,
                       st.n);
    avm_lmdb_rstate_free(&st);
    for (size_t i = 0; i < sizeof(probe_keys) / sizeof(probe_keys[0]); i++) {
        avm_buf v;
        rv = avm_lmdb_raft_kv_get(w->db, group, (const uint8_t *)probe_keys[i],
                                  strlen(probe_keys[i]), &v);
        if (rv == 0)
            avm_buf_printf(w->b, " %s=%s", probe_keys[i], avm_buf_cstr(&v));
        avm_buf_free(&v);
    }
    avm_buf_puts(w->b, "\n");
    return 0;
}

static char *everything(avm_lmdb *db)
{
    avm_buf b;
    avm_buf_init(&b);
    st_dump(avm_lmdb_store(db), &b);
    avm_buf_puts(&b, "-- groups\n");
    walk w = {db, &b};
    avm_lmdb_raft_groups(db, group_line, &w);
    char *s = strdup(avm_buf_cstr(&b));
    avm_buf_free(&b);
    return s;
}

static int kv_put_s(avm_lmdb *db, const char *group, const char *k, const char *v)
{
    return avm_lmdb_raft_kv_put(db, group, (const uint8_t *)k, strlen(k),
                                (const uint8_t *)v, strlen(v));
}

/* The value of k as a string ("ENOTFOUND" etc. on error), static buffer. */
static const char *kv_get_s(avm_lmdb *db, const char *group, const char *k)
{
    static char out[4][256];
    static int n;
    char *o = out[n++ % 4];
    avm_buf v;
    int rv = avm_lmdb_raft_kv_get(db, group, (const uint8_t *)k, strlen(k), &v);
    snprintf(o, 256, "%s", rv == 0 ? avm_buf_cstr(&v) : avm_err_name(rv));
    avm_buf_free(&v);
    return o;
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

/* Entries index..index+n-1 of term, each data "<index>" (or len bytes of fill). */
static int save_n(avm_lmdb *db, const char *group, uint64_t index, size_t n,
                  uint64_t term)
{
    avm_lmdb_rentry e[64];
    char data[64][24];
    for (size_t i = 0; i < n; i++) {
        snprintf(data[i], sizeof(data[i]), "%llu", (unsigned long long)(index + i));
        e[i] = (avm_lmdb_rentry){.term = term,
                                 .type = 1,
                                 .data = (const uint8_t *)data[i],
                                 .len = strlen(data[i])};
    }
    return avm_lmdb_raft_save_entries(db, group, index, e, n);
}

/* The log as "index:term:data," text. */
static void log_text(const avm_lmdb_rstate *st, char *out, size_t len)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < st->n && o < len; i++)
        o += (size_t)snprintf(out + o, len - o, "%llu:%llu:%.*s,",
                              (unsigned long long)(st->first_index + i),
                              (unsigned long long)st->e[i].term, (int)st->e[i].len,
                              (const char *)st->e[i].data);
}

/* ---- Round trips ------------------------------------------------------------ */

TEST(state_roundtrip)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    size_t big = (size_t)1 << 20;
    uint8_t *mb = malloc(big);
    for (size_t i = 0; i < big; i++)
        mb[i] = (uint8_t)(i * 7 + 3);
    avm_lmdb_rentry e[3] = {
        {.term = 3, .type = 2, .data = NULL, .len = 0},
        {.term = 3, .type = 1, .data = mb, .len = big},
        {.term = 4, .type = 0, .data = (const uint8_t *)"hello", .len = 5}};
    const uint8_t conf[] = {1, 2, 3, 0, 255};
    CHECK(!avm_lmdb_staged_any(db));
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g1", 5, 2), 0);
    CHECK(avm_lmdb_staged_any(db));
    CHECK_INT(avm_lmdb_raft_save_snapmeta(db, "g1", 10, 3, 8, conf, sizeof(conf)), 0);
    CHECK_INT(avm_lmdb_raft_set_applied(db, "g1", 12), 0);
    CHECK_INT(avm_lmdb_raft_save_entries(db, "g1", 11, e, 3), 0);
    CHECK(avm_lmdb_staged_bytes(db) > big);
    /* A group that has only metadata. */
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g2", 1, 0), 0);

    for (int round = 0; round < 3; round++) {
        /* 0: staged (reads see the round); 1: committed; 2: after a reopen. */
        if (round == 1)
            CHECK_INT(avm_lmdb_stage_commit(db), 0);
        if (round == 2) {
            avm_lmdb_close(db);
            db = st_open(f.dir, 0, 0);
            REQUIRE(db != NULL);
        }
        avm_lmdb_rstate st;
        REQUIRE(avm_lmdb_raft_load(db, "g1", &st) == 0);
        CHECK_INT(st.term, 5);
        CHECK_INT(st.vote, 2);
        CHECK_INT(st.applied, 12);
        CHECK(st.has_snap);
        CHECK_INT(st.snap_index, 10);
        CHECK_INT(st.snap_term, 3);
        CHECK_INT(st.snap_conf_index, 8);
        CHECK_INT(st.snap_conf_len, sizeof(conf));
        CHECK(st.snap_conf != NULL && memcmp(st.snap_conf, conf, sizeof(conf)) == 0);
        CHECK_INT(st.first_index, 11);
        REQUIRE(st.n == 3);
        for (int i = 0; i < 3; i++) {
            CHECK_INT(st.e[i].term, e[i].term);
            CHECK_INT(st.e[i].type, e[i].type);
            CHECK_INT(st.e[i].len, e[i].len);
            CHECK(st.e[i].data != NULL);
            CHECK(e[i].len == 0 || memcmp(st.e[i].data, e[i].data, e[i].len) == 0);
        }
        avm_lmdb_rstate_free(&st);
        CHECK(st.e == NULL && st.n == 0);

        REQUIRE(avm_lmdb_raft_load(db, "g2", &st) == 0);
        CHECK_INT(st.term, 1);
        CHECK_INT(st.vote, 0);
        CHECK_INT(st.applied, 0);
        CHECK(!st.has_snap);
        CHECK_INT(st.n, 0);
        CHECK_INT(st.first_index, 1);
        avm_lmdb_rstate_free(&st);

        CHECK_INT(avm_lmdb_raft_load(db, "g", &st), AVM_ENOTFOUND);
        CHECK_INT(avm_lmdb_raft_load(db, "g10", &st), AVM_ENOTFOUND);
        CHECK_INT(avm_lmdb_raft_load(db, "", &st), AVM_EINVAL);
    }
    /* Replacing term/vote, applied and snapshot metadata. */
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g1", 6, 0), 0);
    CHECK_INT(avm_lmdb_raft_set_applied(db, "g1", 13), 0);
    CHECK_INT(avm_lmdb_raft_save_snapmeta(db, "g1", 12, 4, 11, NULL, 0), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    avm_lmdb_rstate st;
    REQUIRE(avm_lmdb_raft_load(db, "g1", &st) == 0);
    CHECK_INT(st.term, 6);
    CHECK_INT(st.vote, 0);
    CHECK_INT(st.applied, 13);
    CHECK_INT(st.snap_index, 12);
    CHECK_INT(st.snap_conf_len, 0);
    CHECK_INT(st.n, 3);
    avm_lmdb_rstate_free(&st);
    free(mb);
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(argument_errors_keep_the_round)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g", 1, 1), 0);
    char longname[700];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_INT(avm_lmdb_raft_save_tv(db, "", 1, 1), AVM_EINVAL);
    CHECK_INT(avm_lmdb_raft_save_tv(db, NULL, 1, 1), AVM_EINVAL);
    CHECK_INT(avm_lmdb_raft_save_tv(db, longname, 1, 1), AVM_ETOOBIG);
    CHECK_INT(save_n(db, "g", 0, 1, 1), AVM_EINVAL);
    CHECK_INT(avm_lmdb_raft_save_entries(db, "g", UINT64_MAX, NULL, 0), 0);
    avm_lmdb_rentry e = {.term = 1, .data = NULL, .len = 3};
    CHECK_INT(avm_lmdb_raft_save_entries(db, "g", 1, &e, 1), AVM_EINVAL);
    uint8_t key[600] = {0};
    CHECK_INT(avm_lmdb_raft_kv_put(db, "g", key, sizeof(key), NULL, 0), AVM_ETOOBIG);
    CHECK_INT(avm_lmdb_raft_kv_del(db, "g", key, 2), AVM_ENOTFOUND);
    CHECK_INT(avm_lmdb_ctrl_restore(db, "g", f.ca, NULL, 0), AVM_EINVAL);
    CHECK(!avm_lmdb_stage_broken(db));
    CHECK(avm_lmdb_staged_any(db));
    /* Writes that refuse at once are refused outside a round too (no round opens). */
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_INT(avm_lmdb_raft_save_tv(db, "", 1, 1), AVM_EINVAL);
    CHECK(!avm_lmdb_staged_any(db));
    avm_lmdb_rstate st;
    REQUIRE(avm_lmdb_raft_load(db, "g", &st) == 0);
    CHECK_INT(st.term, 1);
    avm_lmdb_rstate_free(&st);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* A failure inside the round (the map is full) loses the round, as for stage. */
TEST(failure_breaks_the_round)
{
    fixture f;
    fx_begin(&f);
    size_t map = (size_t)2 << 20;
    avm_lmdb *db = st_open(f.dir, map, map);
    REQUIRE(db != NULL);
    CHECK_INT(save_n(db, "g", 1, 3, 1), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g", 9, 9), 0);
    size_t big = (size_t)4 << 20;
    uint8_t *mb = calloc(1, big);
    avm_lmdb_rentry e = {.term = 2, .type = 1, .data = mb, .len = big};
    int rv = avm_lmdb_raft_save_entries(db, "g", 2, &e, 1);
    CHECK(rv != 0 && rv != AVM_EINVAL && rv != AVM_ETOOBIG);
    CHECK(contains(avm_lmdb_errmsg(db), "map full"));
    CHECK(avm_lmdb_stage_broken(db));
    CHECK(!avm_lmdb_staged_any(db));
    CHECK_INT(avm_lmdb_raft_save_tv(db, "g", 10, 1), AVM_EIO);
    CHECK_INT(avm_lmdb_raft_set_applied(db, "g", 1), AVM_EIO);
    CHECK_INT(kv_put_s(db, "g", "k", "v"), AVM_EIO);
    CHECK_INT(avm_lmdb_stage_commit(db), AVM_EIO);
    avm_lmdb_close(db);
    db = st_open(f.dir, map, map);
    REQUIRE(db != NULL);
    CHECK(!avm_lmdb_stage_broken(db));
    avm_lmdb_rstate st;
    REQUIRE(avm_lmdb_raft_load(db, "g", &st) == 0);
    CHECK_INT(st.term, 0); /* the lost round's term too */
    CHECK_INT(st.n, 3);
    avm_lmdb_rstate_free(&st);
    free(mb);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- The log ---------------------------------------------------------------- */

TEST(truncation_and_deletion)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    char txt[2048];
    avm_lmdb_rstate st;
    /* Neighbouring names: a group's keys never mix with another's. */
    CHECK_INT(save_n(db, "a", 1, 10, 1), 0);
    CHECK_INT(save_n(db, "ab", 1, 3, 7), 0);
    CHECK_INT(save_n(db, "a b", 4, 2, 8), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);

    /* Overwrite from the middle: 5.. goes, 5..7 of term 2 come. */
    CHECK_INT(save_n(db, "a", 5, 3, 2), 0);
    REQUIRE(avm_lmdb_raft_load(db, "a", &st) == 0);
    log_text(&st, txt, sizeof(txt));
    CHECK_STR(txt, "1:1:1,2:1:2,3:1:3,4:1:4,5:2:5,6:2:6,7:2:7,");
    avm_lmdb_rstate_free(&st);
    /* Truncation alone, past the end (nothing) and in the middle. */
    CHECK_INT(save_n(db, "a", 9, 0, 0), 0);
    CHECK_INT(save_n(db, "a", 7, 0, 0), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(avm_lmdb_raft_load(db, "a", &st) == 0);
    log_text(&st, txt, sizeof(txt));
    CHECK_STR(txt, "1:1:1,2:1:2,3:1:3,4:1:4,5:2:5,6:2:6,");
    avm_lmdb_rstate_free(&st);
    /* Appending after the end. */
    CHECK_INT(save_n(db, "a", 7, 2, 3), 0);

    /* delete_upto: compaction keeps what follows. */
    CHECK_INT(avm_lmdb_raft_save_snapmeta(db, "a", 4, 1, 1, NULL, 0), 0);
    CHECK_INT(avm_lmdb_raft_delete_upto(db, "a", 0), 0);
    CHECK_INT(avm_lmdb_raft_delete_upto(db, "a", 3), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    REQUIRE(avm_lmdb_raft_load(db, "a", &st) == 0);
    log_text(&st, txt, sizeof(txt));
    CHECK_STR(txt, "4:1:4,5:2:5,6:2:6,7:3:7,8:3:8,");
    CHECK_INT(st.first_index, 4);
    avm_lmdb_rstate_free(&st);

    /* The neighbours are untouched. */
    REQUIRE(avm_lmdb_raft_load(db, "ab", &st) == 0);
    log_text(&st, txt, sizeof(txt));
    CHECK_STR(txt, "1:7:1,2:7:2,3:7:3,");
    avm_lmdb_rstate_free(&st);
    REQUIRE(avm_lmdb_raft_load(db, "a b", &st) == 0);
    log_text(&st, txt, sizeof(txt));
    CHECK_STR(txt, "4:8:4,5:8:5,");
    CHECK_INT(st.first_index, 4);
    avm_lmdb_rstate_free(&st);

    /* delete_log: everything; first_index follows the snapshot. */
    CHECK_INT(avm_lmdb_raft_delete_log(db, "a"), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    REQUIRE(avm_lmdb_raft_load(db, "a", &st) == 0);
    CHECK_INT(st.n, 0);
    CHECK_INT(st.first_index, 5);
    avm_lmdb_rstate_free(&st);
    REQUIRE(avm_lmdb_raft_load(db, "ab", &st) == 0);
    CHECK_INT(st.n, 3);
    avm_lmdb_rstate_free(&st);
    /* A group with nothing but a deleted log has no state. */
    CHECK_INT(avm_lmdb_raft_delete_log(db, "ab"), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_INT(avm_lmdb_raft_load(db, "ab", &st), AVM_ENOTFOUND);
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(contiguity_check)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_lmdb_rstate st;
    /* A gap between the snapshot and the first entry (reachable through the API). */
    CHECK_INT(save_n(db, "s", 1, 9, 1), 0);
    CHECK_INT(avm_lmdb_raft_save_snapmeta(db, "s", 2, 1, 1, NULL, 0), 0);
    CHECK_INT(avm_lmdb_raft_delete_upto(db, "s", 4), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_INT(avm_lmdb_raft_load(db, "s", &st), AVM_EIO);
    CHECK(st.e == NULL && st.n == 0 && st.snap_conf == NULL);
    CHECK(contains(avm_lmdb_errmsg(db), "\"s\""));
    CHECK(contains(avm_lmdb_errmsg(db), "entry 3 is missing"));
    /* A gap between entries, made with LMDB itself. */
    CHECK_INT(save_n(db, "grp", 1, 9, 1), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    avm_lmdb_close(db);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 32);
    REQUIRE(mdb_env_open(env, f.dir, 0, 0644) == 0);
    REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    REQUIRE(mdb_dbi_open(txn, "raft_log", 0, &dbi) == 0);
    uint8_t kb[12] = {'g', 'r', 'p', 0, 0, 0, 0, 0, 0, 0, 0, 5};
    MDB_val k = {.mv_size = sizeof(kb), .mv_data = kb};
    CHECK_INT(mdb_del(txn, dbi, &k, NULL), 0);
    REQUIRE(mdb_txn_commit(txn) == 0);
    mdb_env_close(env);

    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK_INT(avm_lmdb_raft_load(db, "grp", &st), AVM_EIO);
    CHECK(contains(avm_lmdb_errmsg(db), "\"grp\""));
    CHECK(contains(avm_lmdb_errmsg(db), "entry 5 is missing"));
    /* Truncating past the gap repairs it. */
    CHECK_INT(save_n(db, "grp", 5, 1, 2), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    REQUIRE(avm_lmdb_raft_load(db, "grp", &st) == 0);
    CHECK_INT(st.n, 5);
    avm_lmdb_rstate_free(&st);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Groups and the key/value table ------------------------------------------ */

static int collect(void *arg, const char *group)
{
    avm_buf_printf(arg, "%s,", group);
    return 0;
}

static int stop_at_b(void *arg, const char *group)
{
    avm_buf_printf(arg, "%s,", group);
    return strcmp(group, "b") == 0 ? 42 : 0;
}

TEST(groups_kv_and_drop)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    avm_buf b;
    avm_buf_init(&b);
    CHECK_INT(avm_lmdb_raft_groups(db, collect, &b), 0);
    CHECK_STR(avm_buf_cstr(&b), "");
    CHECK_INT(avm_lmdb_raft_save_tv(db, "b", 1, 1), 0);
    CHECK_INT(save_n(db, "b", 1, 2, 1), 0);
    CHECK_INT(kv_put_s(db, "b", "k1", "v1"), 0);
    CHECK_INT(avm_lmdb_raft_set_applied(db, "a", 3), 0);
    CHECK_INT(save_n(db, "ab", 1, 1, 1), 0);     /* only a log */
    CHECK_INT(kv_put_s(db, "c", "k1", "c1"), 0); /* only a table */
    CHECK_INT(avm_lmdb_raft_save_tv(db, "a\x01", 1, 1), 0);
    /* Reads see the staged round. */
    b.len = 0;
    CHECK_INT(avm_lmdb_raft_groups(db, collect, &b), 0);
    CHECK_STR(avm_buf_cstr(&b), "a,a\x01,ab,b,c,");
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    b.len = 0;
    CHECK_INT(avm_lmdb_raft_groups(db, stop_at_b, &b), 42);
    CHECK_STR(avm_buf_cstr(&b), "a,a\x01,ab,b,");

    /* The table: put, replace, empty key and value, get, del. */
    CHECK_STR(kv_get_s(db, "b", "k1"), "v1");
    CHECK_STR(kv_get_s(db, "b", "k2"), "ENOTFOUND");
    CHECK_STR(kv_get_s(db, "c", "k1"), "c1");
    CHECK_INT(kv_put_s(db, "b", "k1", "v1b"), 0);
    CHECK_INT(kv_put_s(db, "b", "", ""), 0);
    CHECK_INT(kv_put_s(db, "b", "k2", "v2"), 0);
    CHECK_STR(kv_get_s(db, "b", "k1"), "v1b");
    CHECK_INT(avm_lmdb_raft_kv_del(db, "b", (const uint8_t *)"k2", 2), 0);
    CHECK_INT(avm_lmdb_raft_kv_del(db, "b", (const uint8_t *)"k2", 2), AVM_ENOTFOUND);
    CHECK(!avm_lmdb_stage_broken(db));
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK_STR(kv_get_s(db, "b", "k1"), "v1b");
    CHECK_STR(kv_get_s(db, "b", ""), "");
    CHECK_STR(kv_get_s(db, "b", "k2"), "ENOTFOUND");
    avm_lmdb_rstate st;
    CHECK_INT(avm_lmdb_raft_load(db, "c", &st), 0); /* a table is state */
    avm_lmdb_rstate_free(&st);

    /* Drop: everything of b goes; its neighbours stay. */
    CHECK_INT(avm_lmdb_raft_drop(db, "b"), 0);
    CHECK_INT(avm_lmdb_raft_drop(db, "nosuch"), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    b.len = 0;
    CHECK_INT(avm_lmdb_raft_groups(db, collect, &b), 0);
    CHECK_STR(avm_buf_cstr(&b), "a,a\x01,ab,c,");
    CHECK_INT(avm_lmdb_raft_load(db, "b", &st), AVM_ENOTFOUND);
    CHECK_STR(kv_get_s(db, "b", "k1"), "ENOTFOUND");
    REQUIRE(avm_lmdb_raft_load(db, "a", &st) == 0);
    CHECK_INT(st.applied, 3);
    avm_lmdb_rstate_free(&st);
    REQUIRE(avm_lmdb_raft_load(db, "ab", &st) == 0);
    CHECK_INT(st.n, 1);
    avm_lmdb_rstate_free(&st);
    avm_buf_free(&b);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* An environment of the current format written before the raft databases existed
 * opens, and gets them. */
TEST(environment_without_raft_databases)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(create(&f, db, 1, 0, f.ca, 5));
    avm_lmdb_close(db);
    MDB_env *env;
    MDB_txn *txn;
    REQUIRE(mdb_env_create(&env) == 0);
    mdb_env_set_maxdbs(env, 32);
    REQUIRE(mdb_env_open(env, f.dir, 0, 0644) == 0);
    REQUIRE(mdb_txn_begin(env, NULL, 0, &txn) == 0);
    const char *names[] = {"raft_log", "raft_meta", "raft_kv"};
    for (int i = 0; i < 3; i++) {
        MDB_dbi dbi;
        REQUIRE(mdb_dbi_open(txn, names[i], 0, &dbi) == 0);
        CHECK_INT(mdb_drop(txn, dbi, 1), 0);
    }
    REQUIRE(mdb_txn_commit(txn) == 0);
    REQUIRE(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0);
    MDB_dbi dbi;
    CHECK_INT(mdb_dbi_open(txn, "raft_log", 0, &dbi), MDB_NOTFOUND);
    mdb_txn_abort(txn);
    mdb_env_close(env);

    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(contains(rec_of(db, 1), "state=(5)"));
    avm_buf b;
    avm_buf_init(&b);
    CHECK_INT(avm_lmdb_raft_groups(db, collect, &b), 0);
    CHECK_STR(avm_buf_cstr(&b), "");
    CHECK_INT(save_n(db, "g", 1, 2, 1), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_INT(avm_lmdb_raft_groups(db, collect, &b), 0);
    CHECK_STR(avm_buf_cstr(&b), "g,");
    avm_buf_free(&b);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Atomicity with the staged round ------------------------------------------ */

/* Stages a write set on object 1 (state 99), the applied index, two entries and a
 * table entry; commits when asked. */
static bool stage_group_round(avm_lmdb *db, bool commit)
{
    bool ok = stage_state(db, 1, 99);
    ok = ok && avm_lmdb_raft_set_applied(db, "ctlA", 7) == 0;
    ok = ok && save_n(db, "ctlA", 6, 2, 2) == 0;
    ok = ok && avm_lmdb_raft_save_tv(db, "ctlA", 2, 1) == 0;
    ok = ok && kv_put_s(db, "ctlA", "k1", "dedup") == 0;
    return ok && (!commit || avm_lmdb_stage_commit(db) == 0);
}

static bool round_there(avm_lmdb *db, bool *none)
{
    avm_lmdb_rstate st;
    int rv = avm_lmdb_raft_load(db, "ctlA", &st);
    bool all = rv == 0 && st.applied == 7 && st.term == 2 && st.n == 7 &&
               contains(rec_of(db, 1), "state=(99)") &&
               strcmp(kv_get_s(db, "ctlA", "k1"), "dedup") == 0;
    *none = rv == 0 && st.applied == 5 && st.term == 1 && st.n == 5 &&
            contains(rec_of(db, 1), "state=(1)") &&
            strcmp(kv_get_s(db, "ctlA", "k1"), "ENOTFOUND") == 0;
    avm_lmdb_rstate_free(&st);
    return all;
}

static bool setup_group(fixture *f, avm_lmdb *db)
{
    bool ok = create(f, db, 1, 0, f->ca, 1);
    ok = ok && avm_lmdb_raft_save_tv(db, "ctlA", 1, 1) == 0;
    ok = ok && save_n(db, "ctlA", 1, 5, 1) == 0;
    ok = ok && avm_lmdb_raft_set_applied(db, "ctlA", 5) == 0;
    return ok && avm_lmdb_stage_commit(db) == 0;
}

TEST(atomic_with_the_round_close)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(setup_group(&f, db));
    bool none;
    CHECK(stage_group_round(db, false));
    CHECK(round_there(db, &none)); /* the round's reads see it */
    avm_lmdb_close(db);            /* without stage_commit: lost */
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(!round_there(db, &none));
    CHECK(none);
    CHECK(stage_group_round(db, true));
    avm_lmdb_close(db);
    db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    CHECK(round_there(db, &none));
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST(atomic_with_the_round_sigkill)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(setup_group(&f, db));
    avm_lmdb_close(db);
    for (int commit = 0; commit < 2; commit++) {
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            avm_lmdb *c = st_open(f.dir, 0, 0);
            if (c == NULL || !stage_group_round(c, commit))
                _exit(3);
            kill(getpid(), SIGKILL);
            _exit(4);
        }
        int wst;
        waitpid(pid, &wst, 0);
        CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
        db = st_open(f.dir, 0, 0);
        REQUIRE(db != NULL);
        bool none;
        bool all = round_there(db, &none);
        CHECK(commit ? all : none);
        avm_lmdb_close(db);
    }
    fx_end(&f);
}

/* ---- Controller snapshots ----------------------------------------------------- */

/* Objects 1-4 of A (counter, other, echo, no module), 5-6 of B, 7 of main; tables
 * of both groups. */
static bool populate(fixture *f, avm_lmdb *db)
{
    bool ok = create(f, db, 1, 0, f->ca, 10) && create(f, db, 2, 1, f->ca, 20) &&
              create(f, db, 3, 2, f->ca, 30) && create(f, db, 4, 3, f->ca, 40) &&
              create(f, db, 5, 0, f->cb, 50) && create(f, db, 6, 2, f->cb, 60) &&
              create(f, db, 7, 0, f->cmain, 70);
    /* Versions beyond the first commit's. */
    ok = ok && stage_state(db, 1, 11) && stage_state(db, 1, 12);
    ok = ok && kv_put_s(db, "ctlA", "k1", "a1") == 0 &&
         kv_put_s(db, "ctlA", "k2", "a2") == 0;
    ok = ok && kv_put_s(db, "ctlA", "", "empty") == 0;
    ok = ok && kv_put_s(db, "ctlB", "k1", "b1") == 0;
    return ok && avm_lmdb_stage_commit(db) == 0;
}

static bool reach_machine(void *data, avm_val m)
{
    return avm_val_eq(m, ((avm_platform *)data)->node);
}

static bool reach_ctrl(void *data, avm_val c)
{
    return avm_val_eq(c, ((avm_platform *)data)->default_ctrl);
}

/* Runs (main (call #obj"node1/1" 5)) on db as controller ctlA; the result as text. */
static void run_call(fixture *f, avm_lmdb *db, char *out, size_t len)
{
    avm_module *m = st_compile("(main (call #obj\"node1/1\" 5))\n");
    snprintf(out, len, "no module");
    if (m == NULL)
        return;
    avm_platform p;
    memset(&p, 0, sizeof(p));
    p.store = avm_lmdb_store(db);
    p.node = f->node;
    p.default_ctrl = f->ca;
    p.data = &p;
    p.reachable_machine = reach_machine;
    p.reachable_controller = reach_ctrl;
    avm_exec_config cfg = {.mode = 0, .keep_trace = false, .allow_unsafe = true};
    avm_exec *x = avm_exec_new(&p, &cfg);
    avm_val self = st_id(AVM_OBJID, "root/orchestrator"), input = st_id(AVM_STR, "");
    char err[256];
    int rv = avm_exec_start(x, m, -1, self, input, err, sizeof(err));
    avm_buf b;
    avm_buf_init(&b);
    if (rv != 0) {
        avm_buf_printf(&b, "start: %s", err);
    } else {
        avm_run_status s = avm_exec_run(x, 0);
        avm_buf_printf(&b, "status %d ", (int)s);
        if (s == AVM_RUN_DONE)
            avm_val_print(&b, avm_exec_result(x));
        else if (s == AVM_RUN_FAILED)
            avm_error_print(&b, avm_exec_error(x));
    }
    snprintf(out, len, "%s", avm_buf_cstr(&b));
    avm_buf_free(&b);
    avm_val_release(self);
    avm_val_release(input);
    avm_exec_free(x);
    avm_module_release(m);
}

static int dump_of(avm_lmdb *db, fixture *f, avm_buf *out)
{
    return avm_lmdb_ctrl_dump(db, "ctlA", f->ca, out);
}

TEST(dump_and_restore)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *src = st_open(subdir(&f, "src"), 0, 0);
    REQUIRE(src != NULL);
    REQUIRE(populate(&f, src));
    char *src_before = everything(src);
    avm_buf d1, d2;
    REQUIRE(dump_of(src, &f, &d1) == 0);
    REQUIRE(dump_of(src, &f, &d2) == 0);
    CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0); /* deterministic */
    avm_buf_free(&d2);
    CHECK_INT(avm_lmdb_ctrl_dump(src, "ctlA", f.cb, &d2), AVM_EINVAL);
    CHECK_INT(d2.len, 0);
    avm_buf_free(&d2);
    char *src_after = everything(src);
    CHECK_STR(src_after, src_before); /* a dump is a read */
    free(src_after);

    /* Into a fresh environment. */
    avm_lmdb *dst = st_open(subdir(&f, "dst"), 0, 0);
    REQUIRE(dst != NULL);
    CHECK_INT(avm_lmdb_ctrl_restore(dst, "ctlA", f.ca, (const uint8_t *)d1.data, d1.len),
              0);
    CHECK(avm_lmdb_staged_any(dst));
    CHECK_STR(rec_of(dst, 1), rec_of(src, 1)); /* the round's reads see it */
    CHECK_INT(avm_lmdb_raft_set_applied(dst, "ctlA", 40), 0);
    CHECK_INT(avm_lmdb_stage_commit(dst), 0);
    for (int pass = 0; pass < 2; pass++) {
        for (unsigned n = 1; n <= 4; n++)
            CHECK_STR(rec_of(dst, n), rec_of(src, n));
        CHECK(contains(rec_of(dst, 1), "v=5 state=(12)"));
        for (unsigned n = 5; n <= 7; n++)
            CHECK_STR(rec_of(dst, n), "NONE");
        CHECK_STR(kv_get_s(dst, "ctlA", "k1"), "a1");
        CHECK_STR(kv_get_s(dst, "ctlA", "k2"), "a2");
        CHECK_STR(kv_get_s(dst, "ctlA", ""), "empty");
        CHECK_STR(kv_get_s(dst, "ctlB", "k1"), "ENOTFOUND");
        avm_lmdb_stats stats;
        CHECK_INT(avm_lmdb_stats_get(dst, &stats), 0);
        CHECK_INT(stats.objects, 4);
        CHECK_INT(stats.modules, 2);
        /* The dump of the copy is the dump. */
        REQUIRE(dump_of(dst, &f, &d2) == 0);
        CHECK(d1.len == d2.len && memcmp(d1.data, d2.data, d1.len) == 0);
        avm_buf_free(&d2);
        /* Reopened: the modules come back from the behaviours database. */
        avm_lmdb_close(dst);
        dst = st_open(subdir(&f, "dst"), 0, 0);
        REQUIRE(dst != NULL);
    }
    /* The behaviour runs on the copy: counter adds its input to its state. */
    char res[512];
    run_call(&f, dst, res, sizeof(res));
    CHECK_STR(res, "status 0 17");
    CHECK(contains(rec_of(dst, 1), "v=6 state=(17)"));
    run_call(&f, src, res, sizeof(res));
    CHECK_STR(res, "status 0 17");
    /* The source is untouched but for that call. */
    src_after = everything(src);
    avm_lmdb_close(src);
    src = NULL;
    char *p1 = strstr(src_before, "node1/2"), *p2 = strstr(src_after, "node1/2");
    CHECK(p1 != NULL && p2 != NULL && strcmp(p1, p2) == 0);
    free(src_after);
    free(src_before);
    avm_lmdb_close(dst);
    avm_buf_free(&d1);
    fx_end(&f);
}

TEST(restore_over_other_objects)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *src = st_open(subdir(&f, "src"), 0, 0);
    REQUIRE(src != NULL);
    REQUIRE(populate(&f, src));
    avm_buf d;
    REQUIRE(dump_of(src, &f, &d) == 0);

    /* A's objects here: 1 (older), 9 (not in the dump), 2 (moved to B here); B's
     * 10; main's 7; a stale table entry. */
    avm_lmdb *db = st_open(subdir(&f, "dst"), 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(create(&f, db, 1, 1, f.ca, 500));
    REQUIRE(create(&f, db, 9, 0, f.ca, 900));
    REQUIRE(create(&f, db, 2, 0, f.cb, 200));
    REQUIRE(create(&f, db, 10, 2, f.cb, 1000));
    REQUIRE(create(&f, db, 7, 1, f.cmain, 700));
    CHECK_INT(kv_put_s(db, "ctlA", "stale", "x"), 0);
    CHECK_INT(kv_put_s(db, "ctlA", "k1", "old"), 0);
    CHECK_INT(kv_put_s(db, "ctlB", "k1", "b-here"), 0);
    CHECK_INT(avm_lmdb_raft_save_tv(db, "ctlA", 3, 1), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    /* Records in the decoded cache, and a snapshot, before the restore. */
    CHECK(contains(rec_of(db, 9), "state=(900)"));
    CHECK(contains(rec_of(db, 1), "state=(500)"));
    avm_store *s = avm_lmdb_store(db);
    void *snap = s->ops->snapshot(s);
    REQUIRE(snap != NULL);
    /* An object staged into A in the same round goes too. */
    {
        avm_create c;
        avm_pair tr, st;
        avm_writeset ws;
        avm_val oid = oidn(11), state = ilist(1100);
        mkobj(&f, &c, &tr, &st, &ws, oid, 0, f.ca, state);
        bool ok = false;
        CHECK_INT(avm_lmdb_stage(db, &ws, NULL, 0, &ok), 0);
        CHECK(ok);
        avm_val_release(oid);
        avm_val_release(state);
    }
    CHECK(contains(rec_of(db, 11), "state=(1100)"));
    CHECK_INT(avm_lmdb_ctrl_restore(db, "ctlA", f.ca, (const uint8_t *)d.data, d.len), 0);
    CHECK_STR(rec_of(db, 9), "NONE");
    CHECK_STR(rec_of(db, 11), "NONE");
    CHECK_INT(avm_lmdb_stage_commit(db), 0);

    for (int pass = 0; pass < 2; pass++) {
        for (unsigned n = 1; n <= 4; n++)
            CHECK_STR(rec_of(db, n), rec_of(src, n)); /* 2 taken back from B */
        CHECK_STR(rec_of(db, 9), "NONE");
        CHECK_STR(rec_of(db, 11), "NONE");
        CHECK(contains(rec_of(db, 10), "state=(1000)"));
        CHECK(contains(rec_of(db, 7), "state=(700)"));
        CHECK_STR(kv_get_s(db, "ctlA", "stale"), "ENOTFOUND");
        CHECK_STR(kv_get_s(db, "ctlA", "k1"), "a1");
        CHECK_STR(kv_get_s(db, "ctlB", "k1"), "b-here");
        avm_lmdb_rstate st;
        REQUIRE(avm_lmdb_raft_load(db, "ctlA", &st) == 0);
        CHECK_INT(st.term, 3); /* raft state untouched */
        avm_lmdb_rstate_free(&st);
        if (pass == 0) {
            /* The snapshot still reads the state it was taken at. */
            avm_val o9 = oidn(9), o1 = oidn(1);
            const avm_objrec *r = s->ops->get(s, snap, o9);
            CHECK(r != NULL && r->version == 3);
            r = s->ops->get(s, snap, o1);
            CHECK(r != NULL && r->beh.fn == f.fn_other);
            avm_val_release(o9);
            avm_val_release(o1);
            s->ops->snapshot_release(s, snap);
            avm_lmdb_close(db);
            db = st_open(subdir(&f, "dst"), 0, 0);
            REQUIRE(db != NULL);
            s = avm_lmdb_store(db);
        }
    }
    avm_buf_free(&d);
    avm_lmdb_close(db);
    avm_lmdb_close(src);
    fx_end(&f);
}

TEST(dump_sees_the_round)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *db = st_open(f.dir, 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(populate(&f, db));
    CHECK(stage_state(db, 2, 21));
    CHECK_INT(kv_put_s(db, "ctlA", "k3", "a3"), 0);
    avm_buf d;
    REQUIRE(dump_of(db, &f, &d) == 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    avm_lmdb *dst = st_open(subdir(&f, "dst"), 0, 0);
    REQUIRE(dst != NULL);
    CHECK_INT(avm_lmdb_ctrl_restore(dst, "ctlA", f.ca, (const uint8_t *)d.data, d.len),
              0);
    CHECK_INT(avm_lmdb_stage_commit(dst), 0);
    CHECK(contains(rec_of(dst, 2), "state=(21)"));
    CHECK_STR(rec_of(dst, 2), rec_of(db, 2));
    CHECK_STR(kv_get_s(dst, "ctlA", "k3"), "a3");
    /* A controller with nothing: an empty dump empties A elsewhere. */
    avm_buf e;
    avm_val cz = st_id(AVM_CTRLID, "ctlZ");
    REQUIRE(avm_lmdb_ctrl_dump(db, "ctlZ", cz, &e) == 0);
    CHECK_INT(avm_lmdb_ctrl_restore(dst, "ctlA", f.ca, (const uint8_t *)e.data, e.len),
              AVM_EINVAL); /* another group's */
    CHECK(contains(avm_lmdb_errmsg(dst), "ctlZ"));
    CHECK_INT(avm_lmdb_ctrl_restore(dst, "ctlZ", cz, (const uint8_t *)e.data, e.len), 0);
    CHECK_INT(avm_lmdb_stage_commit(dst), 0);
    CHECK(contains(rec_of(dst, 2), "state=(21)"));
    avm_val_release(cz);
    avm_buf_free(&e);
    avm_buf_free(&d);
    avm_lmdb_close(dst);
    avm_lmdb_close(db);
    fx_end(&f);
}

/* ---- Malformed dumps ---------------------------------------------------------- */

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void reseal(uint8_t *p, size_t len)
{
    avm_sha256(p, len - 32, p + len - 32);
}

TEST(malformed_dumps)
{
    fixture f;
    fx_begin(&f);
    avm_lmdb *src = st_open(subdir(&f, "src"), 0, 0);
    REQUIRE(src != NULL);
    REQUIRE(populate(&f, src));
    avm_buf d;
    REQUIRE(dump_of(src, &f, &d) == 0);
    avm_lmdb_close(src);

    avm_lmdb *db = st_open(subdir(&f, "dst"), 0, 0);
    REQUIRE(db != NULL);
    REQUIRE(create(&f, db, 1, 1, f.ca, 500));
    REQUIRE(create(&f, db, 9, 0, f.ca, 900));
    CHECK_INT(kv_put_s(db, "ctlA", "stale", "x"), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    char *before = everything(db);
    size_t len = d.len;
    uint8_t *buf = malloc(len);

    /* Every truncation. */
    int bad = 0;
    for (size_t n = 0; n < len; n++) {
        memcpy(buf, d.data, n);
        int rv = avm_lmdb_ctrl_restore(db, "ctlA", f.ca, buf, n);
        bad += rv != AVM_EMALFORMED;
    }
    CHECK_INT(bad, 0);
    CHECK(!avm_lmdb_staged_any(db));
    CHECK(contains(avm_lmdb_errmsg(db), "ctlA"));

    /* Random corruption: 1-4 bytes changed. */
    for (int i = 0; i < 3000; i++) {
        memcpy(buf, d.data, len);
        int nb = 1 + (int)(rnd() % 4);
        for (int j = 0; j < nb; j++)
            buf[rnd() % len] ^= (uint8_t)(1 + rnd() % 255);
        if (memcmp(buf, d.data, len) == 0)
            continue;
        int rv = avm_lmdb_ctrl_restore(db, "ctlA", f.ca, buf, len);
        bad += rv != AVM_EMALFORMED && rv != AVM_EVERSION;
    }
    CHECK_INT(bad, 0);
    CHECK(!avm_lmdb_staged_any(db));

    /* A newer format; another group. */
    memcpy(buf, d.data, len);
    buf[11] = 2;
    reseal(buf, len);
    CHECK_INT(avm_lmdb_ctrl_restore(db, "ctlA", f.ca, buf, len), AVM_EVERSION);
    CHECK(contains(avm_lmdb_errmsg(db), "format 2"));
    CHECK_INT(avm_lmdb_ctrl_restore(db, "ctlB", f.cb, (const uint8_t *)d.data, len),
              AVM_EINVAL);
    CHECK(!avm_lmdb_staged_any(db));
    char *after = everything(db);
    CHECK_STR(after, before);
    free(after);

    /* Corruption behind a valid checksum: the body's own checks refuse it, or it is
     * a dump that still holds (then it is staged, and dropped by a reopen). */
    int refused = 0, accepted = 0;
    for (int i = 0; i < 400; i++) {
        memcpy(buf, d.data, len);
        int nb = 1 + (int)(rnd() % 3);
        for (int j = 0; j < nb; j++)
            buf[12 + rnd() % (len - 44)] ^= (uint8_t)(1 + rnd() % 255);
        reseal(buf, len);
        int rv = avm_lmdb_ctrl_restore(db, "ctlA", f.ca, buf, len);
        if (rv == 0) {
            accepted++;
            avm_lmdb_close(db);
            db = st_open(subdir(&f, "dst"), 0, 0);
            REQUIRE(db != NULL);
            continue;
        }
        refused++;
        bad += rv != AVM_EMALFORMED && rv != AVM_EVERSION && rv != AVM_EINVAL;
        bad += avm_lmdb_staged_any(db);
    }
    CHECK_INT(bad, 0);
    CHECK(refused > 200);
    after = everything(db);
    CHECK_STR(after, before);
    free(after);
    printf("  behind a valid checksum: %d refused, %d accepted\n", refused, accepted);

    /* The valid dump still restores after all that. */
    CHECK_INT(avm_lmdb_ctrl_restore(db, "ctlA", f.ca, (const uint8_t *)d.data, len), 0);
    CHECK_INT(avm_lmdb_stage_commit(db), 0);
    CHECK_STR(rec_of(db, 9), "NONE");
    CHECK(contains(rec_of(db, 1), "state=(12)"));
    free(before);
    free(buf);
    avm_buf_free(&d);
    avm_lmdb_close(db);
    fx_end(&f);
}

TEST_MAIN(T(state_roundtrip), T(argument_errors_keep_the_round),
          T(failure_breaks_the_round), T(truncation_and_deletion), T(contiguity_check),
          T(groups_kv_and_drop), T(environment_without_raft_databases),
          T(atomic_with_the_round_close), T(atomic_with_the_round_sigkill),
          T(dump_and_restore), T(restore_over_other_objects), T(dump_sees_the_round),
          T(malformed_dumps))
