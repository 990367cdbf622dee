/* Extensions of this runtime for cross-controller transactions and composed
 * commits (not in the specification): `(beginTx (list c1 c2 ...))`, a transaction
 * that may touch objects of every controller of the list (default mode only), and
 * `(joinBundle name)`, which marks the execution's outermost commits as segments of
 * a named composed commit. The widened node (CONF_WIDE) reaches #ctl"main" and
 * #ctl"aux"; objects of #ctl"third" are created outside transactions, where the
 * controller's reachability is not checked. */
#include "conf.h"
#include "test.h"

#define BEHAVIORS "(behavior echo (list (input)))\n"

/* Objects of two controllers change in one transaction and commit together (the
 * embedded memstore); the trace carries the first controller. */
TEST(multi_tx_commits_both)
{
    const char *src =
        BEHAVIORS "(main (let ((a (createObj `echo` #ctl`main`)) (b (createObj `echo` "
                  "#ctl`aux`))"
                  "  (t (beginTx (list #ctl`main` #ctl`aux` #ctl`main`))))"
                  "  (list (call a 1) (call b 2) (getCurrentController) (commitTx t)"
                  "  (getCurrentController))))";
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(1 2 #ctl`main` #t nil)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 ObjectCreated #obj`node1/2` `echo`\n"
                   "2 TransactionStarted #tx`node1/t3`\n"
                   "3 ObjectCalled #obj`node1/1` 1 -> 1 [#ctl`main`]\n"
                   "4 ObjectCalled #obj`node1/2` 2 -> 2 [#ctl`main`]\n"
                   "5 TransactionCommitted #tx`node1/t3` [#ctl`main`]");
}

/* Both controllers' objects are written by the commit (state changes visible in the
 * store dump). */
TEST(multi_tx_writes_both_states)
{
    const char *src =
        "(behavior acc (do (setState (list (input))) (list (input))))\n"
        "(main (let ((a (createObj `acc` #ctl`main`)) (b (createObj `acc` #ctl`aux`))"
        "  (t (beginTx (list #ctl`aux` #ctl`main`))))"
        "  (call a 5) (call b 7) (list (getCurrentController) (commitTx t))))";
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(#ctl`aux` #t)");
    CHECK_STORE(r, "#obj`node1/1` `acc` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=(5)\n"
                   "#obj`node1/2` `acc` machine=#mach`node1` creating=#ctl`aux` "
                   "current=#ctl`aux` state=(7)");
    /* Aborted: neither is written. */
    src = "(behavior acc (do (setState (list (input))) (list (input))))\n"
          "(main (let ((a (createObj `acc` #ctl`main`)) (b (createObj `acc` #ctl`aux`))"
          "  (t (beginTx (list #ctl`aux` #ctl`main`))))"
          "  (call a 5) (call b 7) (abortTx t) (getCurrentController)))";
    r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "nil");
    CHECK_STORE(r, "#obj`node1/1` `acc` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()\n"
                   "#obj`node1/2` `acc` machine=#mach`node1` creating=#ctl`aux` "
                   "current=#ctl`aux` state=()");
}

/* An object of a controller outside the set: ErrCrossControllerTx, as a
 * single-controller transaction that strays. */
TEST(multi_tx_stray_third_controller)
{
    const char *src =
        BEHAVIORS "(main (let ((c (createObj `echo` #ctl`third`))"
                  "  (t (beginTx (list #ctl`main` #ctl`aux`)))) (call c 1)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`third`");
    /* A single-controller transaction still fails on the other's object. */
    src = BEHAVIORS "(main (let ((b (createObj `echo` #ctl`aux`))"
                    "  (t (beginTx #ctl`main`))) (call b 1)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`aux`");
    /* createObj under a controller outside the set. */
    src = BEHAVIORS "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`))))"
                    "  (createObj `echo` #ctl`third`)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrControllerUnreachable #ctl`third`");
}

/* createObj with a controller of the set creates under it; without one, under the
 * first controller. */
TEST(multi_tx_create_under_second)
{
    const char *src =
        BEHAVIORS "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`)))"
                  "  (a (createObj `echo` #ctl`aux`)) (b (createObj `echo`)))"
                  "  (list (getController a) (getController b) (commitTx t)"
                  "  (getController a) (getController b))))";
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(#ctl`aux` #ctl`main` #t #ctl`aux` #ctl`main`)");
    CHECK_STORE(r, "#obj`node1/2` `echo` machine=#mach`node1` creating=#ctl`aux` "
                   "current=#ctl`aux` state=()\n"
                   "#obj`node1/3` `echo` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

/* transferObject inside a multi-controller transaction: the source is the object's
 * controller. */
TEST(multi_tx_transfer_source)
{
    const char *src = BEHAVIORS
        "(main (let ((b (createObj `echo` #ctl`aux`))"
        "  (t (beginTx (list #ctl`main` #ctl`aux`))))"
        "  (transferObject b #ctl`main`) (list (commitTx t) (getController b))))";
    conf_result *r = conf_run(src, CONF_DEFAULT | CONF_WIDE);
    CHECK_RESULT(r, "(#t #ctl`main`)");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `echo`\n"
                   "1 TransactionStarted #tx`node1/t2`\n"
                   "2 ObjectTransferred #obj`node1/1` #ctl`aux` #ctl`main` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t2` [#ctl`main`]");
}

/* Nested: (beginTx), (beginTx c) with c in the set and a sub-list open savepoints
 * that keep the set; an abort of a savepoint restores it; the set ends with the
 * outermost transaction. */
TEST(multi_tx_nested_keeps_and_restores_set)
{
    const char *src = BEHAVIORS
        "(main (let ((a (createObj `echo` #ctl`main`)) (b (createObj `echo` #ctl`aux`))"
        "  (t (beginTx (list #ctl`main` #ctl`aux`)))"
        "  (n1 (beginTx)) (r1 (call b 1)) (c1 (abortTx n1))"
        "  (n2 (beginTx #ctl`aux`)) (r2 (call a 2)) (g2 (getCurrentController))"
        "  (c2 (commitTx n2))"
        "  (n3 (beginTx (list #ctl`aux`))) (r3 (call b 3)) (c3 (abortTx n3))"
        "  (n4 (beginTx (list #ctl`aux` #ctl`main`))) (r4 (call a 4)) (c4 (commitTx n4))"
        "  (r5 (call b 5)) (done (commitTx t)))"
        "  (list r1 r2 g2 r3 r4 r5 done (getCurrentController))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                 "(1 2 #ctl`main` 3 4 5 #t nil)");
    /* After the outermost ends, a single-controller transaction is single again. */
    src = BEHAVIORS "(main (let ((b (createObj `echo` #ctl`aux`))"
                    "  (t (beginTx (list #ctl`main` #ctl`aux`))) (c (commitTx t))"
                    "  (t2 (beginTx #ctl`main`))) (call b 1)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`aux`");
    /* A savepoint opened inside an unresolved transaction with a list widens it
     * until it is aborted. */
    src = BEHAVIORS
        "(main (let ((b (createObj `echo` #ctl`aux`)) (t (beginTx))"
        "  (n (beginTx (list #ctl`main` #ctl`aux`))) (r (call b 1)) (x (abortTx n)))"
        "  (list r (getCurrentController))))";
    CHECK_RESULT(conf_run(src, CONF_DEFAULT | CONF_WIDE), "(1 nil)");
}

/* A nested controller outside the set, or a list that is not a subset:
 * ErrInvalidDuringTx with a message, as the nested mismatch. */
TEST(multi_tx_nested_mismatch)
{
    const char *src = "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`))))"
                      "  (beginTx #ctl`third`)))";
    /* Reachability is checked first. */
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrControllerUnreachable #ctl`third`");
    src = "(main (let ((t (beginTx #ctl`main`))) (beginTx (list #ctl`main` "
          "#ctl`aux`))))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "TxError.ErrInvalidDuringTx `beginTx: a nested transaction under several "
                "controllers inside a transaction of controller \\`main\\``");
    src = "(main (let ((t (beginTx (list #ctl`main` #ctl`main`)))) (beginTx #ctl`aux`)))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "TxError.ErrInvalidDuringTx `beginTx: a nested transaction under "
                "controller \\`aux\\` inside a transaction of controller \\`main\\``");
}

/* The nested mismatch with a set needs a third reachable controller. */
static bool three_ctrl(void *data, avm_val c)
{
    (void)data;
    return c.kind == AVM_CTRLID &&
           (strcmp(c.u.s->data, "main") == 0 || strcmp(c.u.s->data, "aux") == 0 ||
            strcmp(c.u.s->data, "third") == 0);
}

static conf_result *run_three(const char *src)
{
    static conf_result r;
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0)
        exit(2);
    conf_widen(&e);
    e.plat.reachable_controller = three_ctrl;
    conf_run_on(&e, src, NULL, CONF_DEFAULT, &r);
    avm_embedded_close(&e);
    return &r;
}

TEST(multi_tx_nested_outside_set)
{
    const char *src = "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`))))"
                      "  (beginTx #ctl`third`)))";
    CHECK_ERROR(run_three(src),
                "TxError.ErrInvalidDuringTx `beginTx: a nested transaction under "
                "controller \\`third\\`, which is not one of the enclosing "
                "transaction's controllers`");
    src = "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`))))"
          "  (beginTx (list #ctl`aux` #ctl`third`))))";
    CHECK_ERROR(run_three(src),
                "TxError.ErrInvalidDuringTx `beginTx: a nested transaction under "
                "controller \\`third\\`, which is not one of the enclosing "
                "transaction's controllers`");
    /* createObj under the third controller inside the set's transaction. */
    src = "(behavior echo (list (input)))\n"
          "(main (let ((t (beginTx (list #ctl`main` #ctl`aux`))))"
          "  (createObj `echo` #ctl`third`)))";
    CHECK_ERROR(run_three(src),
                "ControllerError.ErrCrossControllerTx #obj`node1/2` #ctl`third`");
}

/* Refused lists: empty, a non-controller element (EvalError, as a wrong kind), an
 * unreachable controller (named). */
TEST(multi_tx_bad_lists)
{
    CHECK_ERROR(conf_run("(main (beginTx (list)))", CONF_DEFAULT | CONF_WIDE),
                "EvalError `beginTx expects a controller, nil or a non-empty list of "
                "controllers, got an empty list`");
    CHECK_ERROR(
        conf_run("(main (beginTx (list #ctl`main` 3)))", CONF_DEFAULT | CONF_WIDE),
        "EvalError `beginTx: element 2 of the controller list is int, not a "
        "controller`");
    CHECK_ERROR(conf_run("(main (beginTx (list #ctl`main` #ctl`nowhere`)))",
                         CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrControllerUnreachable #ctl`nowhere`");
    /* A wrong kind is refused as before. */
    CHECK_ERROR(conf_run("(main (beginTx 3))", CONF_DEFAULT),
                "EvalError `beginTx expects controller-id or nil, got int`");
}

/* Strict mode is the literal specification: a list is a wrong argument. */
TEST(multi_tx_strict_refuses_list)
{
    CHECK_ERROR(
        conf_run("(main (beginTx (list #ctl`main` #ctl`aux`)))", CONF_STRICT | CONF_WIDE),
        "EvalError `beginTx expects controller-id or nil, got list`");
}

/* A list of one distinct controller is an ordinary transaction. */
TEST(multi_tx_single_element)
{
    const char *src = BEHAVIORS "(main (let ((b (createObj `echo` #ctl`aux`))"
                                "  (t (beginTx (list #ctl`main` #ctl`main`)))) (list "
                                "(getCurrentController) (call b 1))))";
    CHECK_ERROR(conf_run(src, CONF_DEFAULT | CONF_WIDE),
                "ControllerError.ErrCrossControllerTx #obj`node1/1` #ctl`aux`");
}

/* joinBundle ------------------------------------------------------------------- */

/* joinBundle sets and clears the bundle; in the embedded runtime a bundle of one
 * member simply commits. */
TEST(join_bundle_sets_and_clears)
{
    const char *src =
        "(behavior acc (do (setState (list (input))) (list (input))))\n"
        "(main (let ((a (createObj `acc` #ctl`main`)) (j (joinBundle `b1`))"
        "  (t (beginTx)) (r (call a 4)) (ok (commitTx t)) (k (joinBundle nil))"
        "  (t2 (beginTx)) (r2 (call a 5)) (ok2 (commitTx t2)))"
        "  (list j r ok k ok2)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = conf_run(src, f);
        CHECK_RESULT(r, "(#t 4 #t #t #t)");
        CHECK(strstr(r->store, "state=(5)") != NULL);
    }
}

TEST(join_bundle_refused_in_tx)
{
    for (int f = 0; f < 2; f++)
        CHECK_ERROR(conf_run("(main (let ((t (beginTx))) (joinBundle `b1`)))", f),
                    "TxError.ErrInvalidDuringTx `joinBundle: a transaction is open`");
    CHECK_ERROR(conf_run("(main (joinBundle 3))", CONF_DEFAULT),
                "EvalError `joinBundle expects string or nil, got int`");
    CHECK_ERROR(conf_run("(main (joinBundle ``))", CONF_DEFAULT),
                "EvalError `joinBundle expects a bundle name, got an empty string`");
}

/* The write set of an outermost commit carries the bundle; the store sees it; an
 * outermost abort by the program calls platform.bundle_abort. */
typedef struct spy {
    avm_store base;
    avm_store *inner;
    int commits, marked, nested_marked;
    char last[64];
    int aborts;
    char aborted[64];
} spy;

static spy the_spy;

static const avm_objrec *spy_get(avm_store *s, void *snap, avm_val oid)
{
    spy *p = (spy *)s;
    return p->inner->ops->get(p->inner, snap, oid);
}
static void *spy_snapshot(avm_store *s)
{
    spy *p = (spy *)s;
    return p->inner->ops->snapshot ? p->inner->ops->snapshot(p->inner) : NULL;
}
static void spy_snapshot_release(avm_store *s, void *snap)
{
    spy *p = (spy *)s;
    p->inner->ops->snapshot_release(p->inner, snap);
}
static int spy_apply(avm_store *s, const avm_writeset *ws, bool *ok)
{
    spy *p = (spy *)s;
    if (ws->deferrable) {
        p->commits++;
        if (ws->bundle.kind == AVM_STR) {
            p->marked++;
            snprintf(p->last, sizeof(p->last), "%s", ws->bundle.u.s->data);
        }
    } else if (ws->bundle.kind != AVM_NIL) {
        p->nested_marked++; /* an immediate effect is never part of a bundle */
    }
    return p->inner->ops->apply(p->inner, ws, ok);
}
static int spy_ids(avm_store *s, avm_val *out)
{
    spy *p = (spy *)s;
    return p->inner->ops->ids(p->inner, out);
}
static const avm_purefn *spy_pure_get(avm_store *s, avm_val name)
{
    spy *p = (spy *)s;
    return p->inner->ops->pure_get(p->inner, name);
}
static int spy_pure_put(avm_store *s, const avm_purefn *fn)
{
    spy *p = (spy *)s;
    return p->inner->ops->pure_put(p->inner, fn);
}
static uint64_t spy_next_seq(avm_store *s)
{
    spy *p = (spy *)s;
    return p->inner->ops->next_seq(p->inner);
}
static const struct avm_store_ops spy_ops = {
    .get = spy_get,
    .snapshot = spy_snapshot,
    .snapshot_release = spy_snapshot_release,
    .apply = spy_apply,
    .ids = spy_ids,
    .pure_get = spy_pure_get,
    .pure_put = spy_pure_put,
    .next_seq = spy_next_seq,
};

static void spy_bundle_abort(void *data, avm_val bundle)
{
    (void)data;
    the_spy.aborts++;
    snprintf(the_spy.aborted, sizeof(the_spy.aborted), "%s", bundle.u.s->data);
}

static conf_result *run_spied(const char *src, int flags)
{
    static conf_result r;
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0)
        exit(2);
    memset(&the_spy, 0, sizeof(the_spy));
    the_spy.base.ops = &spy_ops;
    the_spy.inner = e.plat.store;
    e.plat.store = &the_spy.base;
    e.plat.bundle_abort = spy_bundle_abort;
    conf_run_on(&e, src, NULL, flags, &r);
    e.plat.store = the_spy.inner;
    avm_embedded_close(&e);
    return &r;
}

TEST(join_bundle_marks_outermost_commits)
{
    const char *src = "(behavior acc (do (setState (list (input))) (list (input))))\n"
                      "(main (let ((a (createObj `acc` #ctl`main`)) (j (joinBundle `b1`))"
                      "  (t (beginTx)) (n (beginTx)) (r (call a 4)) (c (commitTx n))"
                      "  (ok (commitTx t)) (z (setState (list 1))) (k (joinBundle nil))"
                      "  (t2 (beginTx)) (ok2 (commitTx t2)))"
                      "  (list ok ok2)))";
    /* Strict mode: the literal nested beginTx replaces the transaction, so no
     * savepoint there. */
    const char *strict =
        "(behavior acc (do (setState (list (input))) (list (input))))\n"
        "(main (let ((a (createObj `acc` #ctl`main`)) (j (joinBundle `b1`))"
        "  (t (beginTx)) (r (call a 4))"
        "  (ok (commitTx t)) (z (setState (list 1))) (k (joinBundle nil))"
        "  (t2 (beginTx)) (ok2 (commitTx t2)))"
        "  (list ok ok2)))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = run_spied(f == CONF_STRICT ? strict : src, f);
        CHECK_RESULT(r, "(#t #t)");
        CHECK_INT(the_spy.commits, 2);
        CHECK_INT(the_spy.marked, 1);
        CHECK_INT(the_spy.nested_marked, 0);
        CHECK_STR(the_spy.last, "b1");
        CHECK_INT(the_spy.aborts, 0);
    }
}

TEST(join_bundle_abort_notifies_platform)
{
    /* Only the outermost abort by the program, and only in a bundle. */
    const char *src = "(main (let ((j (joinBundle `b2`)) (t (beginTx)) (n (beginTx)))"
                      "  (abortTx n) (abortTx t) (let ((t2 (beginTx))) (commitTx t2))))";
    for (int f = 0; f < 2; f++) {
        conf_result *r = run_spied(src, f);
        CHECK_RESULT(r, "#t");
        CHECK_INT(the_spy.aborts, 1);
        CHECK_STR(the_spy.aborted, "b2");
    }
    src = "(main (let ((t (beginTx))) (abortTx t)))";
    run_spied(src, CONF_DEFAULT);
    CHECK_INT(the_spy.aborts, 0);
}

/* A store whose replica of the object a transaction calls moves on between the call
 * (which records the version read) and the behaviour's getState: what the execution
 * sees when it moves between machines whose replicas differ. The read must never
 * validate (the commit returns false), and a controller that changed meanwhile is a
 * conflict, not ErrCrossControllerTx. */
typedef struct drift {
    avm_store base;
    avm_store *inner;
    int gets;         /* gets of the drifting object since it was created */
    bool armed;       /* the object exists */
    bool other_ctrl;  /* the later view names another controller */
    avm_objrec later; /* what later gets return */
} drift;

static drift the_drift;

static const avm_objrec *drift_get(avm_store *s, void *snap, avm_val oid)
{
    drift *d = (drift *)s;
    const avm_objrec *r = d->inner->ops->get(d->inner, snap, oid);
    if (r == NULL || !d->armed || r->beh.name.kind != AVM_STR ||
        strcmp(r->beh.name.u.s->data, "acc") != 0 || ++d->gets == 1)
        return r;
    d->later = *r;
    d->later.version = r->version + 1;
    d->later.state = d->other_ctrl ? r->state : avm_nil();
    if (d->other_ctrl)
        d->later.meta.current = the_drift.later.meta.creating; /* set by the test */
    return &d->later;
}
static int drift_apply(avm_store *s, const avm_writeset *ws, bool *ok)
{
    drift *d = (drift *)s;
    int rv = d->inner->ops->apply(d->inner, ws, ok);
    if (ws->ncreates > 0)
        d->armed = true;
    return rv;
}
static void *drift_snapshot(avm_store *s)
{
    drift *d = (drift *)s;
    return d->inner->ops->snapshot ? d->inner->ops->snapshot(d->inner) : NULL;
}
static void drift_snapshot_release(avm_store *s, void *snap)
{
    drift *d = (drift *)s;
    d->inner->ops->snapshot_release(d->inner, snap);
}
static int drift_ids(avm_store *s, avm_val *out)
{
    drift *d = (drift *)s;
    return d->inner->ops->ids(d->inner, out);
}
static const avm_purefn *drift_pure_get(avm_store *s, avm_val name)
{
    drift *d = (drift *)s;
    return d->inner->ops->pure_get(d->inner, name);
}
static int drift_pure_put(avm_store *s, const avm_purefn *fn)
{
    drift *d = (drift *)s;
    return d->inner->ops->pure_put(d->inner, fn);
}
static uint64_t drift_next_seq(avm_store *s)
{
    drift *d = (drift *)s;
    return d->inner->ops->next_seq(d->inner);
}
static const struct avm_store_ops drift_ops = {
    .get = drift_get,
    .snapshot = drift_snapshot,
    .snapshot_release = drift_snapshot_release,
    .apply = drift_apply,
    .ids = drift_ids,
    .pure_get = drift_pure_get,
    .pure_put = drift_pure_put,
    .next_seq = drift_next_seq,
};

static conf_result *run_drifting(const char *src, bool other_ctrl)
{
    static conf_result r;
    avm_embedded e;
    if (avm_embedded_init(&e, "node1", "main") != 0)
        exit(2);
    memset(&the_drift, 0, sizeof(the_drift));
    the_drift.base.ops = &drift_ops;
    the_drift.inner = e.plat.store;
    the_drift.other_ctrl = other_ctrl;
    avm_val other;
    if (avm_cstr(AVM_CTRLID, "other", &other) != 0)
        exit(2);
    the_drift.later.meta.creating = other; /* the controller the later view names */
    e.plat.store = &the_drift.base;
    conf_run_on(&e, src, NULL, CONF_DEFAULT, &r);
    e.plat.store = the_drift.inner;
    avm_embedded_close(&e);
    avm_val_release(other);
    return &r;
}

TEST(read_state_at_another_version_never_validates)
{
    /* The call records version v; getState then reads the state of version v + 1:
     * the commit returns false instead of writing a value computed from it. */
    const char *src =
        "(behavior acc (let ((s (getState))) (setState (list 1)) (list s)))\n"
        "(main (let ((a (createObj `acc` #ctl`main`)) (t (beginTx)))"
        "  (call a 0) (commitTx t)))";
    CHECK_RESULT(run_drifting(src, false), "#f");
    /* The later view names another controller (a concurrent transfer): still a
     * conflict, not ErrCrossControllerTx. */
    CHECK_RESULT(run_drifting(src, true), "#f");
}

TEST_MAIN(T(multi_tx_commits_both), T(multi_tx_writes_both_states),
          T(multi_tx_stray_third_controller), T(multi_tx_create_under_second),
          T(multi_tx_transfer_source), T(multi_tx_nested_keeps_and_restores_set),
          T(multi_tx_nested_mismatch), T(multi_tx_nested_outside_set),
          T(multi_tx_bad_lists), T(multi_tx_strict_refuses_list),
          T(multi_tx_single_element), T(join_bundle_sets_and_clears),
          T(join_bundle_refused_in_tx), T(join_bundle_marks_outermost_commits),
          T(join_bundle_abort_notifies_platform),
          T(read_state_at_another_version_never_validates))
