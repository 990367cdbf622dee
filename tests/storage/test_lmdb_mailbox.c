/* Mailboxes in the LMDB store: message numbers (increasing per mailbox, never
 * reused: not after the mailbox empties, not after a reopen), group puts, the walk
 * for recovery, acknowledgements that commit with a checkpoint (and only with a
 * write set that commits), the size limit, an environment made before mailboxes
 * existed, and durability of every acknowledged put across a SIGKILL. Each test
 * uses its own temporary directory. */
#include <errno.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage_test.h"
#include "test.h"

/* ---- Fixture ---------------------------------------------------------------- */

typedef struct fixture {
    char dir[256];
    avm_lmdb *db;
    avm_module *mod;
    avm_val node, ctrl, beh;
    avm_val a, b; /* two object ids, a before b */
} fixture;

static void fx_begin(fixture *f)
{
    memset(f, 0, sizeof(*f));
    if (st_mkdtemp(f->dir, sizeof(f->dir)) == NULL)
        abort();
    f->mod = st_compile("(behavior counter (list 0))");
    if (f->mod == NULL)
        abort();
    f->node = st_id(AVM_MACHID, "node1");
    f->ctrl = st_id(AVM_CTRLID, "main");
    f->beh = st_id(AVM_STR, "counter");
    f->a = st_id(AVM_OBJID, "node1/a");
    f->b = st_id(AVM_OBJID, "node1/b");
    f->db = st_open(f->dir, 0, 0);
}

static void fx_reopen(fixture *f, size_t map_size)
{
    avm_lmdb_close(f->db);
    f->db = st_open(f->dir, map_size, 0);
}

static void fx_end(fixture *f)
{
    avm_lmdb_close(f->db);
    avm_val_release(f->node);
    avm_val_release(f->ctrl);
    avm_val_release(f->beh);
    avm_val_release(f->a);
    avm_val_release(f->b);
    avm_module_release(f->mod);
    st_rmtree(f->dir);
}

static int put_str(avm_lmdb *db, avm_val oid, const char *s, uint64_t *seq)
{
    return avm_lmdb_mbox_put(db, oid, (const uint8_t *)s, strlen(s), seq);
}

/* What a walk saw: one line per message, "oid seq msg". */
typedef struct seen {
    avm_buf lines;
    size_t n, stop_at; /* stop_at: return 99 from that call on (0: never) */
} seen;

static int collect(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg, size_t len)
{
    seen *s = arg;
    s->n++;
    avm_buf_printf(&s->lines, "%.*s %llu %.*s\n", (int)oid.u.s->len, oid.u.s->data,
                   (unsigned long long)seq, (int)len, (const char *)msg);
    return s->stop_at != 0 && s->n >= s->stop_at ? 99 : 0;
}

/* Every message of the store as text. */
static const char *walk(avm_lmdb *db, seen *s)
{
    avm_buf_free(&s->lines);
    avm_buf_init(&s->lines);
    s->n = 0;
    int rv = avm_lmdb_mbox_each(db, collect, s);
    if (rv != 0 && rv != 99)
        return "(walk failed)";
    return avm_buf_cstr(&s->lines);
}

static size_t count(avm_lmdb *db, avm_val oid)
{
    size_t n = 12345;
    if (avm_lmdb_mbox_count(db, oid, &n) != 0)
        return 12345;
    return n;
}

/* A checkpoint-only write set: always commits. */
static avm_writeset ckpt_ws(const char *id)
{
    avm_writeset w = {.ckpt_id = id,
                      .ckpt_state = (const uint8_t *)"S",
                      .ckpt_len = 1,
                      .ckpt_status = 1};
    return w;
}

/* Deletes one message as a checkpoint's acknowledgement; returns committed. */
static bool ack1(avm_lmdb *db, avm_val oid, uint64_t seq)
{
    avm_writeset w = ckpt_ws("exec-ack");
    const avm_writeset *wp = &w;
    avm_lmdb_ack a = {oid, seq};
    const avm_lmdb_ack *ap = &a;
    size_t na = 1;
    bool ok = false;
    return avm_lmdb_apply_batch_ex(db, &wp, &ap, &na, 1, &ok) == 0 && ok;
}

static bool contains(const char *hay, const char *needle)
{
    return hay != NULL && strstr(hay, needle) != NULL;
}

/* ---- Numbers and order ------------------------------------------------------ */

TEST(put_and_walk_in_oid_then_seq_order)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    uint64_t s1, s2, s3, s4, s5;
    CHECK_INT(put_str(f.db, f.b, "b-first", &s1), 0);
    CHECK_INT(put_str(f.db, f.a, "a-first", &s2), 0);
    CHECK_INT(put_str(f.db, f.b, "b-second", &s3), 0);
    CHECK_INT(put_str(f.db, f.a, "a-second", &s4), 0);
    CHECK_INT(avm_lmdb_mbox_put(f.db, f.a, NULL, 0, &s5), 0); /* an empty message */
    CHECK(s1 == 1 && s2 == 1 && s3 == 2 && s4 == 2 && s5 == 3);
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/a 1 a-first\n"
                              "node1/a 2 a-second\n"
                              "node1/a 3 \n"
                              "node1/b 1 b-first\n"
                              "node1/b 2 b-second\n");
    CHECK_INT(count(f.db, f.a), 3);
    CHECK_INT(count(f.db, f.b), 2);
    avm_val none = st_id(AVM_OBJID, "node1/none");
    CHECK_INT(count(f.db, none), 0);
    avm_lmdb_stats st;
    CHECK_INT(avm_lmdb_stats_get(f.db, &st), 0);
    CHECK_INT(st.mailbox, 5);

    /* The callback stops the walk with a value of its own. */
    s.stop_at = 2;
    avm_buf_free(&s.lines);
    avm_buf_init(&s.lines);
    s.n = 0;
    CHECK_INT(avm_lmdb_mbox_each(f.db, collect, &s), 99);
    CHECK_INT(s.n, 2);
    s.stop_at = 0;

    /* An id that extends another with a NUL byte has a mailbox of its own. */
    avm_val ext;
    REQUIRE(avm_str_new(AVM_OBJID, "node1/a\0\0x", 10, &ext) == 0);
    uint64_t se;
    CHECK_INT(put_str(f.db, ext, "ext", &se), 0);
    CHECK_INT(se, 1);
    CHECK_INT(count(f.db, f.a), 3);
    CHECK_INT(count(f.db, ext), 1);
    CHECK_INT(put_str(f.db, f.a, "a-fourth", &se), 0);
    CHECK_INT(se, 4);
    CHECK_INT(count(f.db, f.a), 4);
    CHECK_INT(count(f.db, ext), 1);

    /* Bad ids. */
    avm_val str = st_id(AVM_STR, "node1/a"), empty;
    REQUIRE(avm_str_new(AVM_OBJID, "", 0, &empty) == 0);
    CHECK_INT(put_str(f.db, str, "x", &se), AVM_EINVAL);
    CHECK(contains(avm_lmdb_errmsg(f.db), f.dir));
    CHECK_INT(put_str(f.db, empty, "x", &se), AVM_EINVAL);
    size_t n;
    CHECK_INT(avm_lmdb_mbox_count(f.db, str, &n), AVM_EINVAL);
    char longid[600];
    memset(longid, 'k', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    avm_val lo = st_id(AVM_OBJID, longid);
    CHECK_INT(put_str(f.db, lo, "x", &se), AVM_ETOOBIG);
    CHECK(contains(avm_lmdb_errmsg(f.db), "key limit"));
    CHECK_INT(count(f.db, lo), 0);
    CHECK(ack1(f.db, lo, 1)); /* no such message: nothing to delete */
    CHECK_INT(avm_lmdb_stats_get(f.db, &st), 0);
    CHECK_INT(st.mailbox, 7);

    avm_val_release(none);
    avm_val_release(ext);
    avm_val_release(str);
    avm_val_release(empty);
    avm_val_release(lo);
    avm_buf_free(&s.lines);
    fx_end(&f);
}

TEST(numbers_are_never_reused)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    uint64_t seq;
    for (int i = 1; i <= 3; i++) {
        CHECK_INT(put_str(f.db, f.a, "m", &seq), 0);
        CHECK_INT(seq, i);
    }
    for (uint64_t i = 1; i <= 3; i++)
        CHECK(ack1(f.db, f.a, i));
    CHECK_INT(count(f.db, f.a), 0);
    /* Emptied: the next number follows the last one handed out. */
    CHECK_INT(put_str(f.db, f.a, "after-empty", &seq), 0);
    CHECK_INT(seq, 4);
    CHECK(ack1(f.db, f.a, 4));
    fx_reopen(&f, 0);
    REQUIRE(f.db != NULL);
    CHECK_INT(count(f.db, f.a), 0);
    CHECK_INT(put_str(f.db, f.a, "after-reopen", &seq), 0);
    CHECK_INT(seq, 5);
    CHECK_INT(put_str(f.db, f.b, "other", &seq), 0);
    CHECK_INT(seq, 1);
    fx_reopen(&f, 0);
    REQUIRE(f.db != NULL);
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/a 5 after-reopen\nnode1/b 1 other\n");
    avm_buf_free(&s.lines);
    fx_end(&f);
}

TEST(group_put)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    avm_val c = st_id(AVM_OBJID, "node1/c");
    avm_val oids[5] = {f.b, f.a, f.b, c, f.b};
    const char *txt[5] = {"b1", "a1", "b2", "c1", "b3"};
    const uint8_t *msgs[5];
    size_t lens[5];
    for (int i = 0; i < 5; i++) {
        msgs[i] = (const uint8_t *)txt[i];
        lens[i] = strlen(txt[i]);
    }
    uint64_t seqs[5];
    avm_lmdb_stats st0, st1;
    avm_lmdb_stats_get(f.db, &st0);
    CHECK_INT(avm_lmdb_mbox_put_batch(f.db, oids, msgs, lens, 5, seqs), 0);
    CHECK(seqs[0] == 1 && seqs[1] == 1 && seqs[2] == 2 && seqs[3] == 1 && seqs[4] == 3);
    avm_lmdb_stats_get(f.db, &st1);
    CHECK_INT(st1.mailbox, 5);
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/a 1 a1\n"
                              "node1/b 1 b1\nnode1/b 2 b2\nnode1/b 3 b3\n"
                              "node1/c 1 c1\n");
    /* All or nothing: one bad message and none is stored, no number is used. */
    avm_val bad = st_id(AVM_STR, "not-an-object-id");
    oids[3] = bad;
    CHECK_INT(avm_lmdb_mbox_put_batch(f.db, oids, msgs, lens, 5, seqs), AVM_EINVAL);
    for (int i = 0; i < 5; i++)
        CHECK_INT(seqs[i], 0);
    oids[3] = c;
    lens[2] = AVM_LMDB_MSG_MAX + 1; /* refused before the bytes are read */
    CHECK_INT(avm_lmdb_mbox_put_batch(f.db, oids, msgs, lens, 5, seqs), AVM_ETOOBIG);
    avm_lmdb_stats_get(f.db, &st1);
    CHECK_INT(st1.mailbox, 5);
    CHECK_INT(avm_lmdb_mbox_put_batch(f.db, oids, msgs, lens, 0, seqs), 0);
    lens[2] = 2;
    CHECK_INT(avm_lmdb_mbox_put_batch(f.db, oids, msgs, lens, 2, seqs), 0);
    CHECK(seqs[0] == 4 && seqs[1] == 2);
    avm_val_release(c);
    avm_val_release(bad);
    avm_buf_free(&s.lines);
    fx_end(&f);
}

/* ---- Acknowledgements ------------------------------------------------------- */

TEST(acks_go_with_committed_write_sets_only)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    avm_store *st = avm_lmdb_store(f.db);
    /* Object x at version 1. */
    avm_val x = st_id(AVM_OBJID, "node1/x");
    avm_create cr = {.oid = x,
                     .beh = {.name = f.beh, .mod = f.mod, .fn = 0},
                     .meta = {.machine = f.node, .creating = f.ctrl, .current = f.ctrl}};
    avm_writeset wc = {.creates = &cr, .ncreates = 1};
    bool ok;
    REQUIRE(st->ops->apply(st, &wc, &ok) == 0 && ok);
    uint64_t seq;
    for (int i = 0; i < 4; i++)
        REQUIRE(put_str(f.db, x, "m", &seq) == 0);
    REQUIRE(put_str(f.db, f.a, "a", &seq) == 0);

    /* w1 reads x at its version and commits, acking x#1 and a#1; w2 read a stale
     * version and fails, so x#2 stays; w3 has no acks (NULL); w4 acks nothing. */
    avm_val list;
    REQUIRE(avm_list_new(0, &list) == 0);
    avm_read good = {x, 1}, stale = {x, 1};
    avm_pair stw = {x, list};
    avm_writeset w1 = {.reads = &good,
                       .nreads = 1,
                       .states = &stw,
                       .nstates = 1,
                       .ckpt_id = "e1",
                       .ckpt_state = (const uint8_t *)"1",
                       .ckpt_len = 1};
    avm_writeset w2 = {.reads = &stale,
                       .nreads = 1,
                       .states = &stw,
                       .nstates = 1,
                       .ckpt_id = "e2",
                       .ckpt_state = (const uint8_t *)"2",
                       .ckpt_len = 1};
    avm_writeset w3 = ckpt_ws("e3"), w4 = ckpt_ws("e4");
    avm_lmdb_ack a1[2] = {{x, 1}, {f.a, 1}}, a2[1] = {{x, 2}}, a4[1] = {{x, 3}};
    const avm_writeset *ws[4] = {&w1, &w2, &w3, &w4};
    const avm_lmdb_ack *acks[4] = {a1, a2, NULL, a4};
    size_t nacks[4] = {2, 1, 7, 0};
    bool oks[4];
    CHECK_INT(avm_lmdb_apply_batch_ex(f.db, ws, acks, nacks, 4, oks), 0);
    CHECK(oks[0] && !oks[1] && oks[2] && oks[3]);
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/x 2 m\nnode1/x 3 m\nnode1/x 4 m\n");
    CHECK_INT(st->ops->get(st, NULL, x)->version, 2);

    /* Durable, with the checkpoint of the committed write set only. */
    fx_reopen(&f, 0);
    REQUIRE(f.db != NULL);
    st = avm_lmdb_store(f.db);
    CHECK_STR(walk(f.db, &s), "node1/x 2 m\nnode1/x 3 m\nnode1/x 4 m\n");
    uint8_t status;
    avm_buf e;
    CHECK_INT(avm_lmdb_exec_get(f.db, "e1", &status, &e), 0);
    avm_buf_free(&e);
    CHECK_INT(avm_lmdb_exec_get(f.db, "e2", &status, &e), AVM_ENOTFOUND);
    avm_buf_free(&e);

    /* Retried at the current version, w2 commits and its ack goes with it. */
    stale.version = 2;
    bool ok2;
    const avm_writeset *w2p = &w2;
    const avm_lmdb_ack *a2p = a2;
    size_t n2 = 1;
    CHECK_INT(avm_lmdb_apply_batch_ex(f.db, &w2p, &a2p, &n2, 1, &ok2), 0);
    CHECK(ok2);
    CHECK_STR(walk(f.db, &s), "node1/x 3 m\nnode1/x 4 m\n");

    /* apply_batch (no acks) still works, and plain apply too. */
    const avm_writeset *w3p = &w3;
    CHECK_INT(avm_lmdb_apply_batch(f.db, &w3p, 1, &ok2), 0);
    CHECK(ok2);
    CHECK_INT(st->ops->apply(st, &w4, &ok2), 0);
    CHECK(ok2);
    CHECK_INT(count(f.db, x), 2);

    /* An ack that is not an object id fails the whole batch up front. */
    avm_val bad = st_id(AVM_STR, "node1/x");
    avm_lmdb_ack ab[2] = {{x, 3}, {bad, 4}};
    const avm_lmdb_ack *abp = ab;
    size_t nb = 2;
    ok2 = true;
    CHECK_INT(avm_lmdb_apply_batch_ex(f.db, &w3p, &abp, &nb, 1, &ok2), AVM_EINVAL);
    CHECK(!ok2);
    CHECK_INT(count(f.db, x), 2);

    avm_val_release(bad);
    avm_val_release(list);
    avm_val_release(x);
    avm_buf_free(&s.lines);
    fx_end(&f);
}

TEST(acks_are_idempotent)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    uint64_t seq;
    for (int i = 0; i < 3; i++)
        REQUIRE(put_str(f.db, f.a, "m", &seq) == 0);
    /* The same message twice in one write set, then again in a later one; a number
     * never handed out; a mailbox that never existed. */
    avm_val none = st_id(AVM_OBJID, "node1/none");
    avm_lmdb_ack a[5] = {{f.a, 2}, {f.a, 2}, {f.a, 99}, {none, 1}, {f.b, 0}};
    avm_writeset w = ckpt_ws("e");
    const avm_writeset *wp[2] = {&w, &w};
    const avm_lmdb_ack *ap[2] = {a, a};
    size_t na[2] = {5, 1};
    bool ok[2];
    CHECK_INT(avm_lmdb_apply_batch_ex(f.db, wp, ap, na, 2, ok), 0);
    CHECK(ok[0] && ok[1]);
    CHECK(ack1(f.db, f.a, 2));
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/a 1 m\nnode1/a 3 m\n");
    CHECK(ack1(f.db, f.a, 1));
    CHECK(ack1(f.db, f.a, 3));
    CHECK(ack1(f.db, f.a, 3));
    CHECK_STR(walk(f.db, &s), "");
    avm_lmdb_stats st;
    avm_lmdb_stats_get(f.db, &st);
    CHECK_INT(st.mailbox, 0);
    avm_val_release(none);
    avm_buf_free(&s.lines);
    fx_end(&f);
}

/* The walk reads in chunks of about 1 MiB so that its callback may write: here it
 * acks each message as it sees it (as a recovering manager might). */
typedef struct acker {
    avm_lmdb *db;
    uint64_t next; /* the seq expected next */
    int fails;
} acker;

static int ack_each(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg, size_t len)
{
    acker *k = arg;
    if (seq != k->next || len != 100000 || msg[0] != (uint8_t)seq || msg[len - 1] != 'z')
        k->fails++;
    k->next++;
    if (!ack1(k->db, oid, seq))
        k->fails++;
    return 0;
}

TEST(walk_in_chunks_while_the_callback_acks)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    enum { N = 40, LEN = 100000 }; /* about 4 MiB: several chunks */
    uint8_t *buf = malloc(LEN);
    memset(buf, 'z', LEN);
    for (int i = 1; i <= N; i++) {
        buf[0] = (uint8_t)i;
        uint64_t seq;
        REQUIRE(avm_lmdb_mbox_put(f.db, f.a, buf, LEN, &seq) == 0);
        REQUIRE(seq == (uint64_t)i);
    }
    acker k = {f.db, 1, 0};
    CHECK_INT(avm_lmdb_mbox_each(f.db, ack_each, &k), 0);
    CHECK_INT(k.fails, 0);
    CHECK_INT(k.next, N + 1);
    CHECK_INT(count(f.db, f.a), 0);
    free(buf);
    fx_end(&f);
}

/* ---- Limits and formats ----------------------------------------------------- */

static int check_big(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg, size_t len)
{
    int *good = arg;
    *good = seq == 1 && len == AVM_LMDB_MSG_MAX && msg[0] == 'q' && msg[len - 1] == 'Q';
    return 0;
}

TEST(message_size_limit)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    fx_reopen(&f, 1 << 20); /* a 1 MiB map: the biggest message makes it grow */
    REQUIRE(f.db != NULL);
    size_t len = AVM_LMDB_MSG_MAX + 1;
    uint8_t *big = malloc(len);
    REQUIRE(big != NULL);
    memset(big, 'q', len);
    uint64_t seq = 7;
    avm_lmdb_stats st0, st1;
    avm_lmdb_stats_get(f.db, &st0);
    CHECK_INT(avm_lmdb_mbox_put(f.db, f.a, big, len, &seq), AVM_ETOOBIG);
    CHECK_INT(seq, 0);
    CHECK(contains(avm_lmdb_errmsg(f.db), "exceeds the limit"));
    CHECK(contains(avm_lmdb_errmsg(f.db), f.dir));
    printf("  refused: %s\n", avm_lmdb_errmsg(f.db));
    CHECK_INT(count(f.db, f.a), 0);
    avm_lmdb_stats_get(f.db, &st1);
    CHECK_INT(st1.mailbox, 0);
    CHECK_INT(st1.map_used, st0.map_used); /* nothing written */

    /* Exactly the limit is accepted, numbered 1 (the refused one took no number),
     * through map growth. */
    big[len - 2] = 'Q';
    CHECK_INT(avm_lmdb_mbox_put(f.db, f.a, big, len - 1, &seq), 0);
    CHECK_INT(seq, 1);
    avm_lmdb_stats_get(f.db, &st1);
    CHECK(st1.map_size > AVM_LMDB_MSG_MAX);
    fx_reopen(&f, 1 << 20);
    REQUIRE(f.db != NULL);
    int good = 0;
    CHECK_INT(avm_lmdb_mbox_each(f.db, check_big, &good), 0);
    CHECK(good);
    free(big);
    fx_end(&f);
}

/* Removes the mailbox databases with LMDB itself, leaving an environment as a
 * build without mailboxes wrote it. Returns an LMDB code. */
static int raw_drop_mailboxes(const char *dir)
{
    MDB_env *env;
    MDB_txn *txn;
    int rc = mdb_env_create(&env);
    if (rc != 0)
        return rc;
    mdb_env_set_maxdbs(env, 16);
    if ((rc = mdb_env_open(env, dir, 0, 0644)) == 0 &&
        (rc = mdb_txn_begin(env, NULL, 0, &txn)) == 0) {
        const char *names[2] = {"mailboxes", "mailbox_seq"};
        for (int i = 0; rc == 0 && i < 2; i++) {
            MDB_dbi dbi;
            if ((rc = mdb_dbi_open(txn, names[i], 0, &dbi)) == 0)
                rc = mdb_drop(txn, dbi, 1);
        }
        rc = rc == 0 ? mdb_txn_commit(txn) : (mdb_txn_abort(txn), rc);
    }
    mdb_env_close(env);
    return rc;
}

static bool raw_has_db(const char *dir, const char *name)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    bool has = false;
    if (mdb_env_create(&env) != 0)
        return false;
    mdb_env_set_maxdbs(env, 16);
    if (mdb_env_open(env, dir, MDB_RDONLY, 0644) == 0 &&
        mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        has = mdb_dbi_open(txn, name, 0, &dbi) == 0;
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return has;
}

TEST(environment_without_mailboxes_gets_them)
{
    fixture f;
    fx_begin(&f);
    REQUIRE(f.db != NULL);
    avm_store *st = avm_lmdb_store(f.db);
    avm_val x = st_id(AVM_OBJID, "node1/x");
    avm_create cr = {.oid = x,
                     .beh = {.name = f.beh, .mod = f.mod, .fn = 0},
                     .meta = {.machine = f.node, .creating = f.ctrl, .current = f.ctrl}};
    avm_writeset wc = {.creates = &cr, .ncreates = 1};
    bool ok;
    REQUIRE(st->ops->apply(st, &wc, &ok) == 0 && ok);
    uint64_t seq;
    REQUIRE(put_str(f.db, f.a, "gone with the database", &seq) == 0);
    avm_lmdb_close(f.db);
    f.db = NULL;

    REQUIRE(raw_drop_mailboxes(f.dir) == 0);
    CHECK(!raw_has_db(f.dir, "mailboxes"));
    CHECK(!raw_has_db(f.dir, "mailbox_seq"));
    CHECK(raw_has_db(f.dir, "objects"));

    /* Same format: opened as is, the databases added, the objects all there. */
    f.db = st_open(f.dir, 0, 0);
    REQUIRE(f.db != NULL);
    st = avm_lmdb_store(f.db);
    CHECK(st->ops->get(st, NULL, x) != NULL);
    CHECK_INT(count(f.db, f.a), 0);
    CHECK_INT(put_str(f.db, f.a, "new", &seq), 0);
    CHECK_INT(seq, 1);
    avm_lmdb_close(f.db); /* LMDB: one open of an environment per process */
    CHECK(raw_has_db(f.dir, "mailboxes"));
    CHECK(raw_has_db(f.dir, "mailbox_seq"));
    f.db = st_open(f.dir, 0, 0);
    REQUIRE(f.db != NULL);
    seen s = {0};
    CHECK_STR(walk(f.db, &s), "node1/a 1 new\n");
    avm_val_release(x);
    avm_buf_free(&s.lines);
    fx_end(&f);
}

/* ---- Durability across SIGKILL ---------------------------------------------- */

/* The child's report of one acknowledged message: written to a pipe (atomically,
 * being smaller than PIPE_BUF) after put returned 0. */
typedef struct report {
    uint32_t box;
    uint32_t n; /* the child's counter, also in the message */
    uint64_t seq;
} report;

#define NBOX 3
#define MAX_REPORTS 100000

static avm_val box_id(unsigned i)
{
    char b[32];
    snprintf(b, sizeof(b), "node1/box-%u", i);
    return st_id(AVM_OBJID, b);
}

static void msg_text(char *buf, size_t cap, unsigned box, unsigned n)
{
    /* Some messages are large, so that the map grows under the kill. */
    int len = snprintf(buf, cap, "box %u message %u ", box, n);
    size_t pad = n % 7 == 0 ? 3000 : 0;
    memset(buf + len, '.', pad);
    buf[len + pad] = '\0';
}

static void child_put(const char *dir, int fd, unsigned first)
{
    avm_lmdb *db = st_open(dir, 64 << 10, 0);
    if (db == NULL)
        _exit(3);
    avm_val ids[NBOX];
    for (unsigned i = 0; i < NBOX; i++)
        ids[i] = box_id(i);
    srand((unsigned)getpid());
    char text[4][4096];
    for (unsigned n = first;;) {
        /* Half the time a group put of 2 to 4 messages. */
        unsigned k = rand() % 2 ? 1 : 2 + (unsigned)rand() % 3;
        avm_val oids[4];
        const uint8_t *msgs[4];
        size_t lens[4];
        uint64_t seqs[4];
        report r[4];
        for (unsigned i = 0; i < k; i++) {
            r[i].box = (uint32_t)rand() % NBOX;
            r[i].n = n++;
            msg_text(text[i], sizeof(text[i]), r[i].box, r[i].n);
            oids[i] = ids[r[i].box];
            msgs[i] = (const uint8_t *)text[i];
            lens[i] = strlen(text[i]);
        }
        int rv = k == 1 ? avm_lmdb_mbox_put(db, oids[0], msgs[0], lens[0], seqs)
                        : avm_lmdb_mbox_put_batch(db, oids, msgs, lens, k, seqs);
        if (rv != 0) {
            fprintf(stderr, "child: %s\n", avm_lmdb_errmsg(db));
            _exit(4);
        }
        for (unsigned i = 0; i < k; i++) {
            r[i].seq = seqs[i];
            if (write(fd, &r[i], sizeof(r[i])) != (ssize_t)sizeof(r[i]))
                _exit(5);
        }
    }
}

/* What the parent knows: every message acknowledged so far, by box and seq. */
typedef struct ledger {
    report *r;
    size_t n;
    unsigned next_n;
    uint64_t last_seq[NBOX]; /* the highest number stored in each box */
} ledger;

typedef struct verify_walk {
    ledger *l;
    uint64_t prev_seq[NBOX];
    int prev_box;
    size_t found, stored, bad;
} verify_walk;

static int verify_each(void *arg, avm_val oid, uint64_t seq, const uint8_t *msg,
                       size_t len)
{
    verify_walk *v = arg;
    unsigned box, n;
    char id[64], head[64];
    snprintf(id, sizeof(id), "%.*s", (int)oid.u.s->len, oid.u.s->data);
    snprintf(head, sizeof(head), "%.*s", (int)(len < 40 ? len : 40), (const char *)msg);
    v->stored++;
    if (sscanf(id, "node1/box-%u", &box) != 1 || box >= NBOX || (int)box < v->prev_box ||
        seq <= v->prev_seq[box] || sscanf(head, "box %*u message %u ", &n) != 1) {
        fprintf(stderr, "unexpected message %.*s #%llu\n", (int)oid.u.s->len,
                oid.u.s->data, (unsigned long long)seq);
        v->bad++;
        return 0;
    }
    v->prev_box = (int)box;
    v->prev_seq[box] = seq;
    if (seq > v->l->last_seq[box])
        v->l->last_seq[box] = seq;
    char want[4096];
    msg_text(want, sizeof(want), box, n);
    if (len != strlen(want) || memcmp(msg, want, len) != 0) {
        fprintf(stderr, "message %u of box %u is damaged\n", n, box);
        v->bad++;
    }
    if (n >= v->l->next_n)
        v->l->next_n = n + 1; /* stored but not reported: the kill came between */
    for (size_t i = 0; i < v->l->n; i++)
        if (v->l->r[i].box == box && v->l->r[i].seq == seq) {
            v->found++;
            if (v->l->r[i].n != n) {
                fprintf(stderr, "box %u #%llu holds message %u, acknowledged %u\n", box,
                        (unsigned long long)seq, n, v->l->r[i].n);
                v->bad++;
            }
        }
    return 0;
}

TEST(acknowledged_messages_survive_sigkill)
{
    char dir[256];
    REQUIRE(st_mkdtemp(dir, sizeof(dir)) != NULL);
    ledger l = {.r = calloc(MAX_REPORTS, sizeof(report))};
    REQUIRE(l.r != NULL);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    unsigned cycles = 0, empty = 0;
    for (; cycles < 30 && l.n + 5000 < MAX_REPORTS; cycles++) {
        int p[2];
        REQUIRE(pipe(p) == 0);
        fflush(NULL);
        pid_t pid = fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            close(p[0]);
            child_put(dir, p[1], l.next_n);
            _exit(0);
        }
        close(p[1]);
        /* Kill after a random number of acknowledgements, or at a random moment
         * (then possibly before the first). */
        size_t want = rand() % 2 ? 1 + (size_t)(rand() % 150) : 0, got = 0;
        if (want == 0)
            usleep((useconds_t)(rand() % 20000));
        uint64_t seen_before = l.n;
        while (got < want) {
            report r;
            ssize_t k = read(p[0], &r, sizeof(r));
            if (k != (ssize_t)sizeof(r))
                break;
            l.r[l.n++] = r;
            got++;
        }
        kill(pid, SIGKILL);
        int wst;
        REQUIRE(waitpid(pid, &wst, 0) == pid);
        CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
        /* Reports written before the kill are acknowledgements too. */
        for (;;) {
            report r;
            ssize_t k = read(p[0], &r, sizeof(r));
            if (k != (ssize_t)sizeof(r) || l.n == MAX_REPORTS)
                break;
            l.r[l.n++] = r;
        }
        close(p[0]);
        empty += l.n == seen_before;
        /* Numbers must go on increasing: each report beyond the last stored. */
        for (size_t i = seen_before; i < l.n; i++) {
            if (l.r[i].seq <= l.last_seq[l.r[i].box]) {
                fprintf(stderr, "box %u #%llu handed out again\n", l.r[i].box,
                        (unsigned long long)l.r[i].seq);
                CHECK(false);
            }
            if (l.r[i].n >= l.next_n)
                l.next_n = l.r[i].n + 1;
        }

        avm_lmdb *db = st_open(dir, 0, 0);
        REQUIRE(db != NULL);
        verify_walk v = {.l = &l, .prev_box = -1};
        CHECK_INT(avm_lmdb_mbox_each(db, verify_each, &v), 0);
        CHECK_INT(v.bad, 0);
        CHECK_INT(v.found, l.n); /* every acknowledged message is there */
        CHECK(v.stored >= l.n && v.stored <= l.n + 4 * (cycles + 1));
        size_t total = 0;
        for (unsigned i = 0; i < NBOX; i++) {
            avm_val id = box_id(i);
            size_t n = 0;
            CHECK_INT(avm_lmdb_mbox_count(db, id, &n), 0);
            total += n;
            avm_val_release(id);
        }
        CHECK_INT(total, v.stored);
        avm_lmdb_close(db);
        if (v.bad != 0 || v.found != l.n)
            break;
    }
    printf("  %u kill/reopen cycles: %zu acknowledged messages all present; %u kills "
           "before any acknowledgement\n",
           cycles, l.n, empty);
    CHECK(l.n > 0);
    free(l.r);
    st_rmtree(dir);
}

TEST_MAIN(T(put_and_walk_in_oid_then_seq_order), T(numbers_are_never_reused),
          T(group_put), T(acks_go_with_committed_write_sets_only), T(acks_are_idempotent),
          T(walk_in_chunks_while_the_callback_acks), T(message_size_limit),
          T(environment_without_mailboxes_gets_them),
          T(acknowledged_messages_survive_sigkill))
