/* The execution manager on a durable store: concurrent transactions (bank
 * invariant, conflicts as false commits), fairness, suspend/resume/kill, receive
 * and send, determinism of traces, and restart. */
#include <stdarg.h>

#include "manager.h"
#include "storage_test.h"
#include "test.h"

/* Every test runs in both commit modes. */
static avm_commit_mode g_mode;

typedef struct fixture {
    char dir[256];
    avm_embedded node;
    avm_mgr *m;
} fixture;

static int fx_open(fixture *f, bool fresh, uint64_t slice)
{
    char err[512] = "";
    if (fresh && st_mkdtemp(f->dir, sizeof(f->dir)) == NULL)
        return -1;
    if (avm_embedded_open(&f->node, "node1", "main", f->dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    avm_mgr_config cfg = {
        .node = &f->node, .slice = slice, .resume_on_open = true, .commit_mode = g_mode};
    if (avm_mgr_open(&cfg, &f->m, err, sizeof(err)) != 0) {
        fprintf(stderr, "manager: %s\n", err);
        avm_embedded_close(&f->node);
        return -1;
    }
    return 0;
}

static void fx_close(fixture *f, bool remove)
{
    avm_mgr_close(f->m);
    avm_embedded_close(&f->node);
    if (remove)
        st_rmtree(f->dir);
}

/* Rounds until nothing is runnable, at most max. Returns the rounds run. */
static int settle(avm_mgr *m, int max)
{
    int n = 0;
    while (n < max && avm_mgr_round(m))
        n++;
    return n;
}

static int start_src(avm_mgr *m, const char *src, char *id, size_t idlen)
{
    avm_module *mod = st_compile(src);
    if (mod == NULL)
        return -1;
    avm_exec_config cfg = {.mode = AVM_MODE_DEFAULT};
    char err[512] = "";
    int rv = avm_mgr_start(m, mod, -1, &cfg, "test.avm", id, idlen, err, sizeof(err));
    avm_module_release(mod);
    if (rv != 0)
        fprintf(stderr, "start: %s\n", err);
    return rv;
}

static int startf(avm_mgr *m, char *id, size_t idlen, const char *f, ...)
    __attribute__((format(printf, 4, 5)));
static int startf(avm_mgr *m, char *id, size_t idlen, const char *f, ...)
{
    char src[4096];
    va_list ap;
    va_start(ap, f);
    vsnprintf(src, sizeof(src), f, ap);
    va_end(ap);
    return start_src(m, src, id, idlen);
}

static avm_mgr_info info(avm_mgr *m, const char *id)
{
    avm_mgr_info i;
    char err[256];
    if (avm_mgr_info_get(m, id, &i, err, sizeof(err)) != 0) {
        fprintf(stderr, "info %s: %s\n", id, err);
        memset(&i, 0, sizeof(i));
        i.state = (avm_xstate)-1;
    }
    return i;
}

static const char *bank_behavior =
    "(behavior account\n"
    "  (let ((s (getState)) (bal (if (null? s) 100 (head s))))\n"
    "    (if (= (input) 'get) (list bal)\n"
    "        (do (setState (list (+ bal (input)))) (list (+ bal (input)))))))\n";

enum { ACCOUNTS = 8 };

/* Creates the accounts; their ids as strings in ids[]. */
static int make_accounts(avm_mgr *m, char ids[ACCOUNTS][64])
{
    char src[2048], id[64];
    snprintf(src, sizeof(src),
             "%s(main (let ((t (beginTx)) (l (list "
             "(createObj \"account\") (createObj \"account\") (createObj \"account\") "
             "(createObj \"account\") (createObj \"account\") (createObj \"account\") "
             "(createObj \"account\") (createObj \"account\")))) (commitTx t) l))",
             bank_behavior);
    if (start_src(m, src, id, sizeof(id)) != 0)
        return -1;
    settle(m, 1000);
    avm_mgr_info i = info(m, id);
    if (i.outcome != AVM_XO_DONE || i.result.kind != AVM_LIST ||
        avm_list_len(i.result) != ACCOUNTS)
        return -1;
    for (int k = 0; k < ACCOUNTS; k++)
        snprintf(ids[k], 64, "%s", avm_list_at(i.result, k).u.s->data);
    return 0;
}

static int64_t balance(fixture *f, const char *oid)
{
    avm_val o = st_id(AVM_OBJID, oid);
    const avm_objrec *r = f->node.store->ops->get(f->node.store, NULL, o);
    avm_val_release(o);
    if (r == NULL)
        return -1;
    if (avm_list_len(r->state) == 0)
        return 100;
    return avm_list_at(r->state, 0).u.i;
}

/* Hundreds of executions transfer between shared accounts, retrying on conflict:
 * every transfer applies exactly once, so each balance is 100 plus the deltas of
 * the transfers into and out of it, whatever the interleaving; every retry is a
 * commit that returned false. */
TEST(bank_retry_serializable)
{
    fixture f;
    REQUIRE(fx_open(&f, true, 500) == 0);
    char acct[ACCOUNTS][64];
    REQUIRE(make_accounts(f.m, acct) == 0);
    enum { N = 300 };
    static char ids[N][64];
    int64_t expect[ACCOUNTS];
    for (int k = 0; k < ACCOUNTS; k++)
        expect[k] = 100;
    avm_mgr_counts c0;
    avm_mgr_counts_get(f.m, &c0);
    for (int i = 0; i < N; i++) {
        int a = i % ACCOUNTS, b = (i * 3 + 1) % ACCOUNTS, amt = i % 7 + 1;
        if (a == b)
            b = (b + 1) % ACCOUNTS;
        expect[a] -= amt;
        expect[b] += amt;
        REQUIRE(startf(f.m, ids[i], sizeof(ids[i]),
                       "(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n"
                       "(defun go (n)\n"
                       "  (let ((t (beginTx)))\n"
                       "    (do (call #obj\"%s\" %d) (wait 200) (call #obj\"%s\" %d)\n"
                       "        (if (commitTx t) n (go (+ n 1))))))\n"
                       "(main (go 1))",
                       acct[a], -amt, acct[b], amt) == 0);
    }
    settle(f.m, 100000);
    int64_t attempts = 0;
    for (int i = 0; i < N; i++) {
        avm_mgr_info in = info(f.m, ids[i]);
        CHECK_INT(in.outcome, AVM_XO_DONE);
        if (in.result.kind == AVM_INT)
            attempts += in.result.u.i;
    }
    int64_t total = 0;
    for (int k = 0; k < ACCOUNTS; k++) {
        CHECK_INT(balance(&f, acct[k]), expect[k]);
        total += balance(&f, acct[k]);
    }
    CHECK_INT(total, 100 * ACCOUNTS);
    avm_mgr_counts c1;
    avm_mgr_counts_get(f.m, &c1);
    CHECK_INT(c1.commits - c0.commits, N);
    CHECK_INT(c1.conflicts - c0.conflicts, attempts - N);
    printf("  %d transfers: %lld attempts, %llu group commits\n", N, (long long)attempts,
           (unsigned long long)(c1.batches - c0.batches));
    CHECK(attempts > N);                                     /* they did race */
    CHECK(c1.batches - c0.batches < (uint64_t)attempts / 4); /* group commits */
    fx_close(&f, true);
}

/* Without retries: of executions racing on one object, the commits that return
 * true are exactly those applied. */
TEST(race_false_commits)
{
    fixture f;
    REQUIRE(fx_open(&f, true, 1000) == 0);
    char acct[ACCOUNTS][64];
    REQUIRE(make_accounts(f.m, acct) == 0);
    enum { N = 64 };
    char ids[N][64];
    for (int i = 0; i < N; i++)
        REQUIRE(startf(f.m, ids[i], sizeof(ids[i]),
                       "(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n"
                       "(main (let ((t (beginTx)))\n"
                       "  (do (call #obj\"%s\" 1) (wait 2000) (commitTx t))))",
                       acct[0]) == 0);
    settle(f.m, 10000);
    int yes = 0, no = 0;
    for (int i = 0; i < N; i++) {
        avm_mgr_info in = info(f.m, ids[i]);
        CHECK_INT(in.outcome, AVM_XO_DONE);
        yes += in.result.kind == AVM_BOOL && in.result.u.b;
        no += in.result.kind == AVM_BOOL && !in.result.u.b;
    }
    CHECK_INT(yes + no, N);
    CHECK(yes >= 1);
    CHECK(no >= 1);
    CHECK_INT(balance(&f, acct[0]), 100 + yes);
    fx_close(&f, true);
}

typedef struct txs_seen {
    int n;
    bool stale;
    size_t reads, writes, depth;
    char id[64];
} txs_seen;

static void tx_one(void *arg, const char *id, const avm_exec_txinfo *tx, bool stale)
{
    txs_seen *t = arg;
    t->n++;
    t->stale = stale;
    t->reads = tx->nreads;
    t->writes = tx->nwrites;
    t->depth = tx->depth;
    snprintf(t->id, sizeof(t->id), "%s", id);
}

/* The transaction registry lists an open transaction with its reads and writes,
 * and says when a version it read has been overwritten since. */
TEST(registry)
{
    fixture f;
    REQUIRE(fx_open(&f, true, 200) == 0);
    char acct[ACCOUNTS][64], slow[64], fast[64];
    REQUIRE(make_accounts(f.m, acct) == 0);
    /* A transaction that reads and writes one account, then waits a long time. */
    REQUIRE(startf(f.m, slow, sizeof(slow),
                   "(defun wait (i) (if (= i 0) 0 (wait (- i 1))))\n"
                   "(main (let ((t (beginTx))) (do (call #obj\"%s\" 5) (wait 100000) "
                   "(commitTx t))))",
                   acct[0]) == 0);
    for (int i = 0; i < 5; i++)
        avm_mgr_round(f.m);
    txs_seen t = {0};
    avm_mgr_each_tx(f.m, tx_one, &t);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.id, slow);
    CHECK_INT(t.reads, 1);
    CHECK_INT(t.writes, 1);
    CHECK_INT(t.depth, 1);
    CHECK(!t.stale);
    /* Another execution commits to the same account: the first is now doomed. */
    REQUIRE(startf(f.m, fast, sizeof(fast),
                   "(main (let ((t (beginTx))) (do (call #obj\"%s\" 1) (commitTx t))))",
                   acct[0]) == 0);
    for (int i = 0; i < 3; i++)
        avm_mgr_round(f.m);
    CHECK_INT(info(f.m, fast).outcome, AVM_XO_DONE);
    memset(&t, 0, sizeof(t));
    avm_mgr_each_tx(f.m, tx_one, &t);
    CHECK_INT(t.n, 1);
    CHECK(t.stale);
    settle(f.m, 100000);
    avm_mgr_info s = info(f.m, slow);
    CHECK(s.result.kind == AVM_BOOL && !s.result.u.b); /* its commit said false */
    memset(&t, 0, sizeof(t));
    avm_mgr_each_tx(f.m, tx_one, &t);
    CHECK_INT(t.n, 0);
    CHECK_INT(balance(&f, acct[0]), 101);
    fx_close(&f, true);
}

/* An endless loop does not starve others; suspend stops it, resume continues it,
 * kill ends it. */
TEST(fairness_suspend_resume_kill)
{
    fixture f;
    REQUIRE(fx_open(&f, true, 1000) == 0);
    char spin[64], quick[64], err[256];
    REQUIRE(start_src(f.m, "(defun spin (i) (spin (+ i 1))) (main (spin 0))", spin,
                      sizeof(spin)) == 0);
    REQUIRE(start_src(f.m,
                      "(defun count (i) (if (= i 20000) i (count (+ i 1)))) "
                      "(main (count 0))",
                      quick, sizeof(quick)) == 0);
    int rounds = 0;
    while (rounds < 1000 && info(f.m, quick).state != AVM_XS_TERMINATED) {
        avm_mgr_round(f.m);
        rounds++;
    }
    avm_mgr_info q = info(f.m, quick);
    CHECK_INT(q.outcome, AVM_XO_DONE);
    CHECK(q.result.kind == AVM_INT && q.result.u.i == 20000);
    CHECK(rounds < 200);
    CHECK_INT(info(f.m, spin).state, AVM_XS_RUNNING);

    REQUIRE(avm_mgr_suspend(f.m, spin, err, sizeof(err)) == 0);
    avm_mgr_round(f.m);
    avm_mgr_info s = info(f.m, spin);
    CHECK_INT(s.state, AVM_XS_SUSPENDED);
    uint64_t steps = s.steps;
    for (int i = 0; i < 5; i++)
        avm_mgr_round(f.m);
    CHECK_INT(info(f.m, spin).steps, steps);
    CHECK(!avm_mgr_busy(f.m));
    CHECK_INT(avm_mgr_suspend(f.m, spin, err, sizeof(err)), AVM_ESTATE);

    REQUIRE(avm_mgr_resume(f.m, spin, err, sizeof(err)) == 0);
    for (int i = 0; i < 5; i++)
        avm_mgr_round(f.m);
    s = info(f.m, spin);
    CHECK_INT(s.state, AVM_XS_RUNNING);
    CHECK(s.steps > steps);

    REQUIRE(avm_mgr_kill(f.m, spin, err, sizeof(err)) == 0);
    settle(f.m, 100);
    s = info(f.m, spin);
    CHECK_INT(s.state, AVM_XS_TERMINATED);
    CHECK_INT(s.outcome, AVM_XO_KILLED);
    CHECK_INT(avm_mgr_kill(f.m, spin, err, sizeof(err)), AVM_ESTATE);
    CHECK_INT(avm_mgr_kill(f.m, "node1/x999999", err, sizeof(err)), AVM_ENOTFOUND);
    CHECK(!avm_mgr_busy(f.m));
    fx_close(&f, true);
}

static const char *inbox_src =
    "(behavior inbox (let ((a (receive)) (b (receive))) (list (list a b))))\n"
    "(main (let ((t (beginTx)) (o (createObj \"inbox\"))) (commitTx t) o))";

/* Sets up an inbox, blocks a receiver on it, sends two messages; returns the
 * receiver's trace log in out. */
static int inbox_script(fixture *f, avm_buf *out, char *rid, size_t rlen)
{
    char setup[64], err[256];
    if (start_src(f->m, inbox_src, setup, sizeof(setup)) != 0)
        return -1;
    settle(f->m, 100);
    avm_mgr_info s = info(f->m, setup);
    if (s.result.kind != AVM_OBJID)
        return -1;
    avm_val box = s.result;
    avm_val_retain(box);
    char src[256];
    snprintf(src, sizeof(src), "(main (call #obj\"%s\" 'go))", box.u.s->data);
    if (start_src(f->m, src, rid, rlen) != 0)
        return -1;
    settle(f->m, 100);
    avm_mgr_info r = info(f->m, rid);
    if (r.state != AVM_XS_RUNNING || r.waiting != AVM_WAIT_MESSAGE ||
        !avm_val_eq(r.blocked_on, box))
        return -2;
    avm_val alice = st_id(AVM_STR, "alice");
    for (int i = 1; i <= 2; i++) {
        uint64_t seq, stamp;
        if (avm_mgr_send(f->m, box, alice, avm_int(i * 10), &seq, &stamp, err,
                         sizeof(err)) != 0 ||
            seq != (uint64_t)i)
            return -3;
    }
    avm_val_release(alice);
    avm_val_release(box);
    settle(f->m, 100);
    return avm_mgr_trace(f->m, rid, out, err, sizeof(err));
}

TEST(receive_send_deterministic)
{
    fixture f, g;
    REQUIRE(fx_open(&f, true, 0) == 0);
    avm_buf t1, t2;
    char r1[64], r2[64];
    REQUIRE(inbox_script(&f, &t1, r1, sizeof(r1)) == 0);
    avm_mgr_info r = info(f.m, r1);
    CHECK_INT(r.outcome, AVM_XO_DONE);
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, r.result);
    CHECK_STR(avm_buf_cstr(&b), "(10 20)");
    avm_buf_free(&b);
    /* A message to no object is refused; nothing is posted. */
    char err[256];
    uint64_t seq, stamp;
    avm_val ghost = st_id(AVM_OBJID, "node1/424242");
    CHECK_INT(
        avm_mgr_send(f.m, ghost, avm_nil(), avm_int(1), &seq, &stamp, err, sizeof(err)),
        AVM_ENOTFOUND);
    CHECK(strstr(err, "node1/424242") != NULL);
    avm_val_release(ghost);
    fx_close(&f, true);

    /* The same inputs in the same order: the same trace, byte for byte. */
    REQUIRE(fx_open(&g, true, 0) == 0);
    REQUIRE(inbox_script(&g, &t2, r2, sizeof(r2)) == 0);
    CHECK_STR(r1, r2);
    CHECK_INT(t1.len, t2.len);
    CHECK(t1.len == t2.len && memcmp(t1.data, t2.data, t1.len) == 0);
    CHECK(t1.len > 0);
    avm_buf_free(&t1);
    avm_buf_free(&t2);
    fx_close(&g, true);
}

/* Park everything, reopen: terminated results stay, a blocked receiver waits
 * again and completes, a suspended execution stays suspended, an interrupted one
 * resumes and commits every transaction exactly once. */
TEST(restart_resumes)
{
    fixture f;
    REQUIRE(fx_open(&f, true, 200) == 0);
    char setup[64], recv[64], susp[64], counter[64], err[256];
    REQUIRE(start_src(f.m, inbox_src, setup, sizeof(setup)) == 0);
    settle(f.m, 100);
    avm_val box = info(f.m, setup).result;
    REQUIRE(box.kind == AVM_OBJID);
    avm_val_retain(box);
    REQUIRE(startf(f.m, recv, sizeof(recv), "(main (call #obj\"%s\" 'go))",
                   box.u.s->data) == 0);
    REQUIRE(start_src(f.m, "(defun spin (i) (spin (+ i 1))) (main (spin 0))", susp,
                      sizeof(susp)) == 0);
    /* A counter incremented in 300 transactions. */
    REQUIRE(
        startf(f.m, counter, sizeof(counter),
               "%s(defun loop (c i) (if (= i 0) (call c 'get)"
               "  (let ((t (beginTx))) (do (call c 1) (commitTx t) (loop c (- i 1))))))"
               "(main (let ((t (beginTx)) (c (createObj \"account\"))) "
               "  (do (commitTx t) (loop c 300))))",
               bank_behavior) == 0);
    for (int i = 0; i < 20; i++)
        avm_mgr_round(f.m);
    REQUIRE(avm_mgr_suspend(f.m, susp, err, sizeof(err)) == 0);
    avm_mgr_round(f.m);
    avm_mgr_info c = info(f.m, counter);
    CHECK_INT(c.state, AVM_XS_RUNNING); /* still going: interrupted by the stop */
    CHECK_INT(avm_mgr_park_all(f.m), 0);
    fx_close(&f, false);

    REQUIRE(fx_open(&f, false, 200) == 0);
    CHECK_INT(info(f.m, setup).outcome, AVM_XO_DONE);
    CHECK(avm_val_eq(info(f.m, setup).result, box));
    CHECK_STR(info(f.m, setup).name, "test.avm"); /* names survive restarts */
    CHECK_STR(info(f.m, counter).name, "test.avm");
    CHECK_INT(info(f.m, susp).state, AVM_XS_SUSPENDED);
    settle(f.m, 100000);
    c = info(f.m, counter);
    CHECK_INT(c.outcome, AVM_XO_DONE);
    CHECK(c.result.kind == AVM_INT && c.result.u.i == 400);
    avm_mgr_info r = info(f.m, recv);
    CHECK_INT(r.waiting, AVM_WAIT_MESSAGE);
    uint64_t seq, stamp;
    avm_val bob = st_id(AVM_STR, "bob");
    REQUIRE(avm_mgr_send(f.m, box, bob, avm_int(1), &seq, &stamp, err, sizeof(err)) == 0);
    /* A message posted and not consumed survives a restart too. */
    fx_close(&f, false);
    REQUIRE(fx_open(&f, false, 200) == 0);
    REQUIRE(avm_mgr_send(f.m, box, bob, avm_int(2), &seq, &stamp, err, sizeof(err)) == 0);
    CHECK_INT(seq, 2);
    settle(f.m, 1000);
    r = info(f.m, recv);
    CHECK_INT(r.outcome, AVM_XO_DONE);
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, r.result);
    CHECK_STR(avm_buf_cstr(&b), "(1 2)");
    avm_buf_free(&b);
    avm_val_release(bob);
    avm_val_release(box);
    REQUIRE(avm_mgr_kill(f.m, susp, err, sizeof(err)) == 0);
    settle(f.m, 100);
    CHECK_INT(info(f.m, susp).outcome, AVM_XO_KILLED);
    fx_close(&f, true);
}

/* --- Commits decided elsewhere (a replicated controller) ---------------------------
 * A fake cluster in which controller R is replicated: every commit touching its
 * objects is forwarded. The fake group applies a commit the first time it sees its
 * name (avm_writeset.commit_key) and answers every later proposal of that name with
 * the first outcome, as replicas.c's deduplication does. The node "crashes" (the
 * manager is closed without parking, after the group applied and before its answer
 * came) the first time each commit is forwarded: the execution resumes from its
 * write-ahead checkpoint, proposes the same commit under the same name, and every
 * effect applies once. */
enum { FG_MAX = 16 };
typedef struct fgroup {
    avm_mgr *m;
    char keys[FG_MAX][200];
    bool outcome[FG_MAX];
    size_t nkeys, applied, forwards, unnamed;
    bool crash; /* a new name was applied: crash before answering */
    /* The answer to deliver after the round. */
    bool answer, answer_ok;
    char id[64];
    uint64_t seq;
} fgroup;

static bool fg_is_r(avm_val c)
{
    return AVM_KIND_HAS_STR(c.kind) && c.u.s->len == 1 && c.u.s->data[0] == 'R';
}
static bool fg_true(void *arg, avm_val v)
{
    (void)arg;
    (void)v;
    return true;
}
static bool fg_replicated(void *arg, avm_val c)
{
    (void)arg;
    return fg_is_r(c);
}
static int fg_fetch(void *arg, avm_val oid, bool freeze, avm_val *unreachable,
                    char *errmsg, size_t errlen)
{
    (void)arg, (void)oid, (void)freeze, (void)unreachable, (void)errmsg, (void)errlen;
    return AVM_ENOTFOUND;
}
static void fg_changed(void *arg, avm_val oid)
{
    (void)arg, (void)oid;
}
static int fg_forward(void *arg, const char *id, uint64_t seq, const avm_writeset *ws,
                      avm_val *unreachable, char *errmsg, size_t errlen)
{
    (void)unreachable, (void)errmsg, (void)errlen;
    fgroup *g = arg;
    g->forwards++;
    snprintf(g->id, sizeof(g->id), "%s", id);
    g->seq = seq;
    /* An unnamed commit gets a fresh name, as a request id of the node's
     * incarnation was. */
    char anon[32];
    snprintf(anon, sizeof(anon), "anon/%zu", g->unnamed);
    const char *key = ws->commit_key != NULL ? ws->commit_key : anon;
    g->unnamed += ws->commit_key == NULL;
    for (size_t i = 0; i < g->nkeys; i++) {
        if (strcmp(g->keys[i], key) == 0) {
            g->answer = true; /* proposed again: the first outcome */
            g->answer_ok = g->outcome[i];
            return 0;
        }
    }
    if (g->nkeys == FG_MAX)
        return AVM_ENOMEM;
    /* What goes over the wire: no checkpoint (cl_ws_val). */
    avm_writeset w = *ws;
    w.ckpt_id = NULL;
    w.ckpt_state = NULL;
    w.ckpt_len = 0;
    w.ckpt_trace = NULL;
    w.ckpt_trace_len = 0;
    w.ckpt_label = NULL;
    bool ok = false;
    if (avm_mgr_stage_ws(g->m, &w, &ok) != 0)
        return AVM_EIO;
    snprintf(g->keys[g->nkeys], sizeof(g->keys[0]), "%s", key);
    g->outcome[g->nkeys++] = ok;
    g->applied += ok;
    g->crash = true;
    return 0;
}

static const avm_mgr_cluster fg_cluster_proto = {
    .fetch = fg_fetch,
    .forward = fg_forward,
    .local_ctrl = fg_true,
    .reachable_machine = fg_true,
    .reachable_controller = fg_true,
    .changed = fg_changed,
    .replicated = fg_replicated,
};

static int fg_open(fixture *f, bool fresh, const avm_mgr_cluster *cl, fgroup *g)
{
    char err[512] = "";
    if (fresh && st_mkdtemp(f->dir, sizeof(f->dir)) == NULL)
        return -1;
    if (avm_embedded_open(&f->node, "node1", "main", f->dir, err, sizeof(err)) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    avm_mgr_config cfg = {
        .node = &f->node, .resume_on_open = true, .commit_mode = g_mode, .cluster = cl};
    if (avm_mgr_open(&cfg, &f->m, err, sizeof(err)) != 0) {
        fprintf(stderr, "manager: %s\n", err);
        avm_embedded_close(&f->node);
        return -1;
    }
    g->m = f->m;
    return 0;
}

TEST(forwarded_commit_once)
{
    fgroup g = {0};
    avm_mgr_cluster cl = fg_cluster_proto;
    cl.arg = &g;
    fixture f;
    REQUIRE(fg_open(&f, true, &cl, &g) == 0);
    char id[64];
    REQUIRE(
        startf(f.m, id, sizeof(id),
               "(behavior lst (let ((m (input)))\n"
               "  (if (= (nth m 0) 'a) (do (setState (append (getState) (list (nth m "
               "1)))) (list 0))\n"
               "      (list (getState)))))\n"
               "(defun app (o v) (let ((t (beginTx #ctl\"R\"))) (call o (list 'a v)) "
               "(commitTx t)))\n"
               "(main (let ((t (beginTx #ctl\"R\")) (o (createObj \"lst\" #ctl\"R\")))\n"
               "  (list (commitTx t) (app o 7) (app o 8) o)))") == 0);
    int crashes = 0;
    for (int i = 0; i < 2000 && crashes < 10 && info(f.m, id).state == AVM_XS_RUNNING;
         i++) {
        avm_mgr_round(f.m);
        if (g.crash) {
            /* The group applied it; the node dies before the answer comes. */
            g.crash = false;
            avm_mgr_round(f.m); /* the group's apply is durable (other nodes) */
            fx_close(&f, false);
            crashes++;
            REQUIRE(fg_open(&f, false, &cl, &g) == 0);
            continue;
        }
        if (g.answer) {
            g.answer = false;
            avm_mgr_applied(f.m, g.id, g.seq, 0, g.answer_ok, NULL, 0, avm_nil(), NULL);
        }
    }
    avm_mgr_info r = info(f.m, id);
    CHECK_INT(r.outcome, AVM_XO_DONE);
    CHECK_INT(crashes, 3);
    CHECK_INT(g.nkeys, 3);    /* three commits, three names */
    CHECK_INT(g.applied, 3);  /* each applied once */
    CHECK_INT(g.forwards, 6); /* each proposed again once, after its crash */
    CHECK_INT(g.unnamed, 0);  /* every forwarded commit carried its name */
    CHECK(strcmp(g.keys[0], g.keys[1]) != 0 && strcmp(g.keys[1], g.keys[2]) != 0);
    CHECK(strncmp(g.keys[0], id, strlen(id)) == 0 && g.keys[0][strlen(id)] == '@');
    /* The program saw every commit succeed, and the list has each value once. */
    REQUIRE(r.result.kind == AVM_LIST && avm_list_len(r.result) == 4);
    CHECK(avm_truthy(avm_list_at(r.result, 0)) && avm_truthy(avm_list_at(r.result, 1)) &&
          avm_truthy(avm_list_at(r.result, 2)));
    const avm_objrec *rec =
        f.node.store->ops->get(f.node.store, NULL, avm_list_at(r.result, 3));
    REQUIRE(rec != NULL);
    avm_buf b;
    avm_buf_init(&b);
    avm_val_print(&b, rec->state);
    CHECK_STR(avm_buf_cstr(&b), "(7 8)");
    avm_buf_free(&b);
    fx_close(&f, true);
}

#define BOTH(name)                                                                       \
    TEST(name##_both)                                                                    \
    {                                                                                    \
        g_mode = AVM_COMMIT_PIPELINED;                                                   \
        printf("  pipelined\n");                                                         \
        test_##name(test_failed_);                                                       \
        g_mode = AVM_COMMIT_DURABLE;                                                     \
        printf("  durable\n");                                                           \
        test_##name(test_failed_);                                                       \
    }
BOTH(bank_retry_serializable)
BOTH(race_false_commits)
BOTH(fairness_suspend_resume_kill)
BOTH(receive_send_deterministic)
BOTH(restart_resumes)
BOTH(registry)
BOTH(forwarded_commit_once)

TEST_MAIN(T(bank_retry_serializable_both), T(race_false_commits_both),
          T(fairness_suspend_resume_kill_both), T(receive_send_deterministic_both),
          T(restart_resumes_both), T(registry_both), T(forwarded_commit_once_both))
