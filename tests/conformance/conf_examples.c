/* The specification's examples (examples/ping_pong.avm, examples/battleship.avm)
 * against /work/shared/conformance/spec-oracle.md. Strict mode must give exactly the
 * oracle's results, traces and final stores (ids spelled obj-N and tx "N" instead of
 * the oracle's spelling; the oracle's `just v` is v and `nothing` is nil). Default
 * mode must give the results Game.lagda.md's comments describe (DESIGN.md
 * decisions 1 and 4). The example files are read from the source tree. */
#include "conf.h"
#include "test.h"

/* The example files, read once (kept until exit). */
static const char *example(const char *path)
{
    static const char *paths[2];
    static char *texts[2];
    for (int i = 0; i < 2; i++) {
        if (paths[i] != NULL && strcmp(paths[i], path) == 0)
            return texts[i];
        if (paths[i] == NULL) {
            paths[i] = path;
            texts[i] = conf_read_source(path);
            return texts[i];
        }
    }
    return conf_read_source(path); /* not reached: two examples */
}

#define ping_pong example("examples/ping_pong.avm")
#define battleship example("examples/battleship.avm")

static conf_result *run_example(const char *src, const char *entry, int flags)
{
    return conf_run_entry(src, entry, flags | CONF_RAW);
}

/* The expected texts below are built from macros inside string concatenations, which
 * clang-format cannot lay out: keep them as written. */
/* clang-format off */

/* Ping-pong ----------------------------------------------------------------------- */

/* One ObjectCalled entry of the ping-pong trace: timestamp, object, the message
 * (type, counter, partner, max) and the output. */
#define CALLED(ts, obj, type, n, partner, max, out)                                   \
    #ts " ObjectCalled #obj`" obj "` (`" type "` " #n " #obj`" partner "` " #max ")"  \
    " -> `" out "`"

/* `test`: the objects are created in a transaction, then ping is called with max 5;
 * the calls nest, innermost entry first; no controller on any entry. */
TEST(ping_pong_test_strict)
{
    conf_result *r = run_example(ping_pong, NULL, CONF_STRICT);
    CHECK_RESULT(r, "(`complete` `ping-continue`)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `pong`\n"
                   "2 ObjectCreated #obj`obj-2` `ping`\n"
                   "3 TransactionCommitted #tx`0`\n"
                   CALLED(4, "obj-1", "pong", 5, "obj-2", 5, "pong-done") "\n"
                   CALLED(5, "obj-2", "ping", 4, "obj-1", 5, "ping-continue") "\n"
                   CALLED(6, "obj-1", "pong", 3, "obj-2", 5, "pong-continue") "\n"
                   CALLED(7, "obj-2", "ping", 2, "obj-1", 5, "ping-continue") "\n"
                   CALLED(8, "obj-1", "pong", 1, "obj-2", 5, "pong-continue") "\n"
                   CALLED(9, "obj-2", "ping", 0, "obj-1", 5, "ping-continue"));
    CHECK_INT(r->counter, 10);
    CHECK_STORE(r, "#obj`obj-1` `pong` machine=#mach`node1` creating=nil current=nil "
                   "state=()\n"
                   "#obj`obj-2` `ping` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
}

/* Default: the same calls; the transaction's creates resolve to the node's
 * controller (decision 4), identifiers are node-prefixed (decision 9). */
TEST(ping_pong_test_default)
{
    conf_result *r = run_example(ping_pong, NULL, CONF_DEFAULT);
    CHECK_RESULT(r, "(`complete` `ping-continue`)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`node1/t1`\n"
                   "1 ObjectCreated #obj`node1/2` `pong` [#ctl`main`]\n"
                   "2 ObjectCreated #obj`node1/3` `ping` [#ctl`main`]\n"
                   "3 TransactionCommitted #tx`node1/t1` [#ctl`main`]\n"
                   CALLED(4, "node1/2", "pong", 5, "node1/3", 5, "pong-done") "\n"
                   CALLED(5, "node1/3", "ping", 4, "node1/2", 5, "ping-continue") "\n"
                   CALLED(6, "node1/2", "pong", 3, "node1/3", 5, "pong-continue") "\n"
                   CALLED(7, "node1/3", "ping", 2, "node1/2", 5, "ping-continue") "\n"
                   CALLED(8, "node1/2", "pong", 1, "node1/3", 5, "pong-continue") "\n"
                   CALLED(9, "node1/3", "ping", 0, "node1/2", 5, "ping-continue"));
    CHECK_INT(r->counter, 10);
    CHECK_STORE(r, "#obj`node1/2` `pong` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()\n"
                   "#obj`node1/3` `ping` machine=#mach`node1` creating=#ctl`main` "
                   "current=#ctl`main` state=()");
}

/* `testSimple`: one pong object, outside transactions, answering itself. */
TEST(ping_pong_test_simple)
{
    conf_result *r = run_example(ping_pong, "test-simple", CONF_STRICT);
    CHECK_RESULT(r, "`pong-continue`");
    CHECK_TRACE(r, "0 ObjectCreated #obj`obj-0` `pong`\n"
                   CALLED(1, "obj-0", "ping", 1, "obj-0", 1, "pong-done") "\n"
                   CALLED(2, "obj-0", "ping", 0, "obj-0", 1, "pong-continue"));
    CHECK_INT(r->counter, 3);
    CHECK_STORE(r, "#obj`obj-0` `pong` machine=#mach`node1` creating=nil current=nil "
                   "state=()");
    r = run_example(ping_pong, "test-simple", CONF_DEFAULT);
    CHECK_RESULT(r, "`pong-continue`");
    CHECK_TRACE(r, "0 ObjectCreated #obj`node1/1` `pong`\n"
                   CALLED(1, "node1/1", "ping", 1, "node1/1", 1, "pong-done") "\n"
                   CALLED(2, "node1/1", "ping", 0, "node1/1", 1, "pong-continue"));
    CHECK_INT(r->counter, 3);
}

/* Battleship ---------------------------------------------------------------------- */

#define BOARD(id, ctl, state)                                                         \
    "#obj`" id "` `PlayerBoard` machine=#mach`node1` creating=" ctl " current=" ctl  \
    " state=" state

/* The default-mode setup (setupGame) and its final store, shared by the games. */
#define SETUP_DEFAULT_TRACE                                                           \
    "0 TransactionStarted #tx`node1/t1`\n"                                            \
    "1 ObjectCreated #obj`node1/2` `PlayerBoard` [#ctl`main`]\n"                      \
    "2 ObjectCreated #obj`node1/3` `PlayerBoard` [#ctl`main`]\n"                      \
    "3 ObjectCalled #obj`node1/2` (`ship` 0 0 3) -> (`ship` 0 0 3) [#ctl`main`]\n"    \
    "4 ObjectCalled #obj`node1/2` (`ship` 2 2 2) -> (`ship` 2 2 2) [#ctl`main`]\n"    \
    "5 ObjectCalled #obj`node1/3` (`ship` 1 1 3) -> (`ship` 1 1 3) [#ctl`main`]\n"    \
    "6 ObjectCalled #obj`node1/3` (`ship` 4 4 2) -> (`ship` 4 4 2) [#ctl`main`]\n"    \
    "7 TransactionCommitted #tx`node1/t1` [#ctl`main`]"

#define BOARDS_DEFAULT                                                                \
    BOARD("node1/2", "#ctl`main`", "((`ship` 2 2 2) (`ship` 0 0 3))") "\n"            \
    BOARD("node1/3", "#ctl`main`", "((`ship` 4 4 2) (`ship` 1 1 3))")

/* testHit / testMiss: outside transactions; the state keeps the ship. */
TEST(battleship_test_hit_miss)
{
    for (int f = 0; f < 2; f++) {
        const char *o = f == CONF_STRICT ? "obj-0" : "node1/1";
        char trace[1024], store[512];
        conf_result *r = run_example(battleship, "test-hit", f);
        CHECK_RESULT(r, "(`coord` 0 1)");
        snprintf(trace, sizeof(trace),
                 "0 ObjectCreated #obj`%s` `PlayerBoard`\n"
                 "1 ObjectCalled #obj`%s` (`ship` 0 0 3) -> (`ship` 0 0 3)\n"
                 "2 ObjectCalled #obj`%s` (`coord` 0 1) -> (`coord` 0 1)",
                 o, o, o);
        CHECK_TRACE(r, trace);
        snprintf(store, sizeof(store),
                 "#obj`%s` `PlayerBoard` machine=#mach`node1` creating=nil current=nil "
                 "state=((`ship` 0 0 3))", o);
        CHECK_STORE(r, store);
        r = run_example(battleship, "test-miss", f);
        CHECK_RESULT(r, "nil");
        snprintf(trace, sizeof(trace),
                 "0 ObjectCreated #obj`%s` `PlayerBoard`\n"
                 "1 ObjectCalled #obj`%s` (`ship` 0 0 3) -> (`ship` 0 0 3)\n"
                 "2 ObjectCalled #obj`%s` (`coord` 5 5) -> nothing",
                 o, o, o);
        CHECK_TRACE(r, trace);
        CHECK_STORE(r, store);
    }
}

/* setupGame. Strict: getState inside the transaction does not see the pending
 * setState, so each board keeps only its last ship, and the boards have no
 * controller. Default: both ships (decision 1), and the node's controller
 * (decision 4). */
TEST(battleship_setup_game)
{
    conf_result *r = run_example(battleship, "setup-game", CONF_STRICT);
    CHECK_RESULT(r, "(#obj`obj-1` #obj`obj-2`)");
    CHECK_TRACE(r, "0 TransactionStarted #tx`0`\n"
                   "1 ObjectCreated #obj`obj-1` `PlayerBoard`\n"
                   "2 ObjectCreated #obj`obj-2` `PlayerBoard`\n"
                   "3 ObjectCalled #obj`obj-1` (`ship` 0 0 3) -> (`ship` 0 0 3)\n"
                   "4 ObjectCalled #obj`obj-1` (`ship` 2 2 2) -> (`ship` 2 2 2)\n"
                   "5 ObjectCalled #obj`obj-2` (`ship` 1 1 3) -> (`ship` 1 1 3)\n"
                   "6 ObjectCalled #obj`obj-2` (`ship` 4 4 2) -> (`ship` 4 4 2)\n"
                   "7 TransactionCommitted #tx`0`");
    CHECK_STORE(r, BOARD("obj-1", "nil", "((`ship` 2 2 2))") "\n"
                   BOARD("obj-2", "nil", "((`ship` 4 4 2))"));
    r = run_example(battleship, "setup-game", CONF_DEFAULT);
    CHECK_RESULT(r, "(#obj`node1/2` #obj`node1/3`)");
    CHECK_TRACE(r, SETUP_DEFAULT_TRACE);
    CHECK_STORE(r, BOARDS_DEFAULT);
}

/* playFullGame, playGameWithPlayerType, gameWithRollback. Strict: the first attack
 * (a call to board 2 inside `beginTx nothing`) fails with ErrObjectHasNoController
 * obj-2, a failure result. */
TEST(battleship_games_strict)
{
    static const char *entries[] = {"play-full-game", "play-game-with-player-type",
                                    "game-with-rollback"};
    for (int i = 0; i < 3; i++) {
        conf_result *r = run_example(battleship, entries[i], CONF_STRICT);
        CHECK_ERROR(r, "ControllerError.ErrObjectHasNoController #obj`obj-2`");
        /* The setup committed before the failure; the store shows it. (The
         * specification's failure result carries no state to compare with.) */
        CHECK_STORE(r, BOARD("obj-1", "nil", "((`ship` 2 2 2))") "\n"
                       BOARD("obj-2", "nil", "((`ship` 4 4 2))"));
    }
}

/* Default: turn 1 hit, turn 2 hit, turn 3 miss, turn 4 hit (Game.lagda.md). */
TEST(battleship_play_full_game_default)
{
    static const char *entries[] = {"play-full-game", "play-game-with-player-type"};
    for (int i = 0; i < 2; i++) {
        conf_result *r = run_example(battleship, entries[i], CONF_DEFAULT);
        CHECK_RESULT(r, "((#obj`node1/2` #obj`node1/3`) "
                        "((`coord` 1 1) (`coord` 0 0) nil (`coord` 2 2)))");
        CHECK_TRACE(r, SETUP_DEFAULT_TRACE "\n"
            "8 TransactionStarted #tx`node1/t4`\n"
            "9 ObjectCalled #obj`node1/3` (`coord` 1 1) -> (`coord` 1 1) [#ctl`main`]\n"
            "10 TransactionCommitted #tx`node1/t4` [#ctl`main`]\n"
            "11 TransactionStarted #tx`node1/t5`\n"
            "12 ObjectCalled #obj`node1/2` (`coord` 0 0) -> (`coord` 0 0) [#ctl`main`]\n"
            "13 TransactionCommitted #tx`node1/t5` [#ctl`main`]\n"
            "14 TransactionStarted #tx`node1/t6`\n"
            "15 ObjectCalled #obj`node1/3` (`coord` 5 5) -> nothing [#ctl`main`]\n"
            "16 TransactionCommitted #tx`node1/t6` [#ctl`main`]\n"
            "17 TransactionStarted #tx`node1/t7`\n"
            "18 ObjectCalled #obj`node1/2` (`coord` 2 2) -> (`coord` 2 2) [#ctl`main`]\n"
            "19 TransactionCommitted #tx`node1/t7` [#ctl`main`]");
        CHECK_STORE(r, BOARDS_DEFAULT);
    }
}

/* Default: the aborted turn leaves nothing; the valid one hits. */
TEST(battleship_game_with_rollback_default)
{
    conf_result *r = run_example(battleship, "game-with-rollback", CONF_DEFAULT);
    CHECK_RESULT(r, "((#obj`node1/2` #obj`node1/3`) (`coord` 1 1))");
    CHECK_TRACE(r, SETUP_DEFAULT_TRACE "\n"
        "8 TransactionStarted #tx`node1/t4`\n"
        "9 ObjectCalled #obj`node1/3` (`coord` 1 1) -> (`coord` 1 1) [#ctl`main`]\n"
        "10 TransactionAborted #tx`node1/t4` [#ctl`main`]\n"
        "11 TransactionStarted #tx`node1/t5`\n"
        "12 ObjectCalled #obj`node1/3` (`coord` 1 1) -> (`coord` 1 1) [#ctl`main`]\n"
        "13 TransactionCommitted #tx`node1/t5` [#ctl`main`]");
    CHECK_STORE(r, BOARDS_DEFAULT);
}

/* The file's main runs both games. */
TEST(battleship_main)
{
    conf_result *r = run_example(battleship, NULL, CONF_DEFAULT);
    CHECK_RESULT(r, "(((#obj`node1/2` #obj`node1/3`) "
                    "((`coord` 1 1) (`coord` 0 0) nil (`coord` 2 2))) "
                    "((#obj`node1/9` #obj`node1/10`) (`coord` 1 1)))");
    CHECK_ERROR(run_example(battleship, NULL, CONF_STRICT),
                "ControllerError.ErrObjectHasNoController #obj`obj-2`");
}

/* clang-format on */

TEST_MAIN(T(ping_pong_test_strict), T(ping_pong_test_default), T(ping_pong_test_simple),
          T(battleship_test_hit_miss), T(battleship_setup_game),
          T(battleship_games_strict), T(battleship_play_full_game_default),
          T(battleship_game_with_rollback_default), T(battleship_main))
