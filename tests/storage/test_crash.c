/* Crash consistency (the storage issue's central test).
 *
 * A child process (this binary with --child DIR) runs a bank workload on the LMDB
 * store: N accounts created once in one write set, each an object whose state is
 * (balance), then transfers forever. A transfer is one write set that reads both
 * accounts (their versions) and writes both new balances, conserving the total;
 * half the time several transfers go through one group commit. After apply says
 * committed, the child appends the transfer (sequence number, and each account's
 * new version and balance) to a side file with write() + fsync(): the
 * acknowledged log.
 *
 * The parent SIGKILLs the child after a random 0-30 ms, and once it is dead opens
 * the store itself and checks: the accounts exist all or none; the total is
 * conserved (no partial transfer is visible); every acknowledged transfer is
 * present (each account's stored version is at least its last acknowledged
 * version, and where the two versions are equal the balances are too). Then it
 * starts the child again.
 *
 * 200 cycles (bounded to about 60 s); AVM_SOAK_CYCLES=N for a longer soak. The
 * directory must not be on tmpfs, so that fsync is real. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "storage_test.h"
#include "test.h"

#define NACCT 16
#define START_BALANCE 1000
#define TMPFS_MAGIC_ 0x01021994

/* One acknowledged transfer: fixed size, with a checksum so that a record torn
 * by the kill is recognized (and is not an acknowledgement). */
typedef struct ack {
    uint64_t seq;
    uint32_t acct[2];
    uint64_t version[2];
    int64_t balance[2];
    uint64_t sum;
} ack;

static uint64_t ack_sum(const ack *a)
{
    const uint8_t *p = (const uint8_t *)a;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < offsetof(ack, sum); i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static avm_val acct_id(unsigned i)
{
    char b[32];
    snprintf(b, sizeof(b), "bank/acct-%02u", i);
    return st_id(AVM_OBJID, b);
}

static avm_val balance_state(int64_t bal)
{
    avm_val v = avm_int(bal), l;
    if (avm_list_from(&v, 1, &l) != 0)
        abort();
    return l;
}

/* Reads the acknowledged log: the valid records (a torn tail is dropped). */
static ack *read_acks(const char *path, size_t *n)
{
    *n = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat sb;
    fstat(fd, &sb);
    size_t cnt = (size_t)sb.st_size / sizeof(ack);
    ack *v = malloc((cnt + 1) * sizeof(ack));
    ssize_t got = pread(fd, v, cnt * sizeof(ack), 0);
    close(fd);
    cnt = got > 0 ? (size_t)got / sizeof(ack) : 0;
    while (*n < cnt && v[*n].sum == ack_sum(&v[*n]))
        (*n)++;
    return v;
}

/* ---- The child -------------------------------------------------------------- */

static int child_main(const char *dir)
{
    char dbdir[600], logpath[600];
    snprintf(dbdir, sizeof(dbdir), "%s/db", dir);
    snprintf(logpath, sizeof(logpath), "%s/ack.log", dir);
    size_t nacks;
    ack *acks = read_acks(logpath, &nacks);
    uint64_t seq = nacks ? acks[nacks - 1].seq : 0;
    free(acks);
    int logfd = open(logpath, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (logfd < 0)
        return 2;
    srand((unsigned)getpid() ^ (unsigned)now_ms());

    avm_lmdb *db = st_open(dbdir, 0, 0);
    if (db == NULL)
        return 3;
    avm_store *s = avm_lmdb_store(db);
    avm_module *m = st_compile("(behavior account (list 0))");
    if (m == NULL)
        return 4;
    avm_val ids[NACCT];
    for (unsigned i = 0; i < NACCT; i++)
        ids[i] = acct_id(i);
    avm_val node = st_id(AVM_MACHID, "node1"), ctrl = st_id(AVM_CTRLID, "main");
    avm_val beh = st_id(AVM_STR, "account");

    if (s->ops->get(s, NULL, ids[0]) == NULL) {
        avm_create cr[NACCT];
        avm_pair st[NACCT];
        for (unsigned i = 0; i < NACCT; i++) {
            cr[i] = (avm_create){
                .oid = ids[i],
                .beh = {.name = beh, .mod = m, .fn = 0},
                .meta = {.machine = node, .creating = ctrl, .current = ctrl}};
            st[i] = (avm_pair){ids[i], balance_state(START_BALANCE)};
        }
        avm_writeset ws = {
            .creates = cr, .ncreates = NACCT, .states = st, .nstates = NACCT};
        bool ok;
        if (s->ops->apply(s, &ws, &ok) != 0 || !ok)
            return 5;
        for (unsigned i = 0; i < NACCT; i++)
            avm_val_release(st[i].b);
    }

    for (;;) {
        /* 1 to 8 transfers planned from the same committed state. */
        enum { MAXB = 8 };
        size_t nb = rand() % 2 ? 1 : 1 + (size_t)(rand() % MAXB);
        avm_read rd[MAXB][2];
        avm_pair st[MAXB][2];
        avm_writeset ws[MAXB];
        const avm_writeset *wp[MAXB];
        ack pending[MAXB];
        for (size_t t = 0; t < nb; t++) {
            unsigned a = (unsigned)rand() % NACCT, b = (unsigned)rand() % (NACCT - 1);
            if (b >= a)
                b++;
            const avm_objrec *ra = s->ops->get(s, NULL, ids[a]);
            uint64_t va = ra->version;
            int64_t ba = avm_list_at(ra->state, 0).u.i;
            const avm_objrec *rb = s->ops->get(s, NULL, ids[b]);
            uint64_t vb = rb->version;
            int64_t bb = avm_list_at(rb->state, 0).u.i;
            int64_t amt = ba > 0 ? rand() % (ba + 1) : 0;
            rd[t][0] = (avm_read){ids[a], va};
            rd[t][1] = (avm_read){ids[b], vb};
            st[t][0] = (avm_pair){ids[a], balance_state(ba - amt)};
            st[t][1] = (avm_pair){ids[b], balance_state(bb + amt)};
            ws[t] = (avm_writeset){
                .reads = rd[t], .nreads = 2, .states = st[t], .nstates = 2};
            wp[t] = &ws[t];
            /* Each account's version goes up by one with its state write. */
            pending[t] = (ack){.acct = {a, b},
                               .version = {va + 1, vb + 1},
                               .balance = {ba - amt, bb + amt}};
        }
        bool ok[MAXB];
        int rv = nb == 1 ? s->ops->apply(s, wp[0], &ok[0])
                         : avm_lmdb_apply_batch(db, wp, nb, ok);
        if (rv != 0) {
            fprintf(stderr, "child: %s\n", avm_lmdb_errmsg(db));
            return 6;
        }
        for (size_t t = 0; t < nb; t++) {
            avm_val_release(st[t][0].b);
            avm_val_release(st[t][1].b);
            if (!ok[t])
                continue;
            pending[t].seq = ++seq;
            pending[t].sum = ack_sum(&pending[t]);
            if (write(logfd, &pending[t], sizeof(ack)) != (ssize_t)sizeof(ack))
                return 7;
        }
        if (fsync(logfd) != 0)
            return 8;
    }
}

/* ---- The parent ------------------------------------------------------------- */

typedef struct figures {
    unsigned cycles, before_accounts, idle, acked, checks;
    uint64_t max_seq;
} figures;

/* Opens the store after a kill and checks everything; returns false on a
 * violation (printed). */
static bool verify(const char *dir, figures *fg)
{
    char dbdir[600], logpath[600];
    snprintf(dbdir, sizeof(dbdir), "%s/db", dir);
    snprintf(logpath, sizeof(logpath), "%s/ack.log", dir);
    size_t n;
    ack *acks = read_acks(logpath, &n);
    /* Drop a torn tail so that the next child appends whole records. */
    if (truncate(logpath, (off_t)(n * sizeof(ack))) != 0 && errno != ENOENT)
        return false;
    avm_lmdb *db = st_open(dbdir, 0, 0);
    if (db == NULL) {
        free(acks);
        return false;
    }
    avm_store *s = avm_lmdb_store(db);
    bool good = true;
    uint64_t version[NACCT];
    int64_t balance[NACCT], total = 0;
    unsigned present = 0;
    for (unsigned i = 0; i < NACCT; i++) {
        avm_val id = acct_id(i);
        const avm_objrec *r = s->ops->get(s, NULL, id);
        avm_val_release(id);
        version[i] = r ? r->version : 0;
        balance[i] = r ? avm_list_at(r->state, 0).u.i : 0;
        total += balance[i];
        present += r != NULL;
    }
    fg->checks++;
    if (present != 0 && present != NACCT) {
        fprintf(stderr, "partial creation: %u of %u accounts\n", present, NACCT);
        good = false;
    }
    if (present == 0) {
        fg->before_accounts++;
        if (n != 0) {
            fprintf(stderr, "%zu acknowledged transfers but no accounts\n", n);
            good = false;
        }
    } else if (total != (int64_t)NACCT * START_BALANCE) {
        fprintf(stderr, "total %lld, expected %d: a partial transfer is visible\n",
                (long long)total, NACCT * START_BALANCE);
        good = false;
    }
    fg->checks++;
    /* Each account's last acknowledged (version, balance). */
    uint64_t ackv[NACCT] = {0};
    int64_t ackb[NACCT] = {0};
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < 2; k++) {
            unsigned a = acks[i].acct[k];
            if (a >= NACCT || acks[i].version[k] <= ackv[a]) {
                fprintf(stderr, "acknowledged log out of order at seq %llu\n",
                        (unsigned long long)acks[i].seq);
                good = false;
                continue;
            }
            ackv[a] = acks[i].version[k];
            ackb[a] = acks[i].balance[k];
        }
    }
    for (unsigned a = 0; a < NACCT; a++) {
        fg->checks++;
        if (version[a] < ackv[a]) {
            fprintf(stderr,
                    "account %u: stored version %llu < acknowledged %llu: an "
                    "acknowledged commit is lost\n",
                    a, (unsigned long long)version[a], (unsigned long long)ackv[a]);
            good = false;
        } else if (ackv[a] != 0 && version[a] == ackv[a] && balance[a] != ackb[a]) {
            fprintf(stderr,
                    "account %u at acknowledged version %llu has balance %lld, "
                    "acknowledged %lld\n",
                    a, (unsigned long long)version[a], (long long)balance[a],
                    (long long)ackb[a]);
            good = false;
        }
    }
    fg->acked = (unsigned)n;
    fg->max_seq = n ? acks[n - 1].seq : 0;
    free(acks);
    avm_lmdb_close(db);
    return good;
}

/* A directory for the test, not on tmpfs (fsync must reach a disk). */
static bool make_dir(char *buf, size_t len)
{
    const char *t = getenv("TMPDIR");
    const char *cands[] = {t && *t ? t : "/tmp", "/var/tmp", "."};
    for (size_t i = 0; i < sizeof(cands) / sizeof(cands[0]); i++) {
        struct statfs sf;
        if (statfs(cands[i], &sf) != 0 || sf.f_type == TMPFS_MAGIC_)
            continue;
        snprintf(buf, len, "%s/avm-crash-XXXXXX", cands[i]);
        if (mkdtemp(buf) != NULL)
            return true;
    }
    return false;
}

static const char *self_exe;

TEST(kill_restart_cycles)
{
    char dir[512];
    REQUIRE(make_dir(dir, sizeof(dir)));
    const char *soak = getenv("AVM_SOAK_CYCLES");
    unsigned want = soak && atoi(soak) > 0 ? (unsigned)atoi(soak) : 200;
    uint64_t deadline = soak ? UINT64_MAX : now_ms() + 60 * 1000;
    figures fg = {0};
    uint64_t t0 = now_ms();
    srand((unsigned)time(NULL));
    while (fg.cycles < want && now_ms() < deadline) {
        pid_t pid = fork();
        if (pid == 0) {
            execl(self_exe, self_exe, "--child", dir, (char *)NULL);
            _exit(127);
        }
        REQUIRE(pid > 0);
        /* After the first ten cycles (which may land anywhere, the creation of the
         * accounts included), seven kills in eight land in the workload: wait (at
         * most 2 s) until the child acknowledges something, since starting takes
         * longer than the kill window on a slow machine or under the sanitizers;
         * the eighth may land anywhere. Then 0-30 ms more. */
        if (fg.cycles >= 10 && rand() % 8 != 0) {
            char logpath[600];
            snprintf(logpath, sizeof(logpath), "%s/ack.log", dir);
            struct stat sb;
            off_t before = stat(logpath, &sb) == 0 ? sb.st_size : 0;
            for (int w = 0; w < 2000; w++) {
                if (stat(logpath, &sb) == 0 && sb.st_size > before)
                    break;
                usleep(1000);
            }
        }
        unsigned delay_us = (unsigned)(rand() % 30001);
        usleep(delay_us);
        kill(pid, SIGKILL);
        int wst;
        waitpid(pid, &wst, 0);
        if (!(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL)) {
            fprintf(stderr, "child ended by itself: status %d\n",
                    WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
            CHECK(false);
            break;
        }
        unsigned before = fg.acked;
        bool good = verify(dir, &fg);
        fg.idle += fg.acked == before; /* killed while starting or in its first commit */
        CHECK(good);
        if (!good)
            break;
        fg.cycles++;
    }
    double secs = (double)(now_ms() - t0) / 1000.0;
    printf("  %u kill/restart cycles in %.1f s (%s): %u acknowledged commits, %u checks; "
           "%u kills before any acknowledgement of their child, %u before the accounts "
           "existed\n",
           fg.cycles, secs, dir, fg.acked, fg.checks, fg.idle, fg.before_accounts);
    CHECK(fg.cycles >= want || (!soak && fg.cycles >= 100));
    CHECK(fg.acked > fg.cycles); /* the workload did make progress */
    st_rmtree(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv[2]);
    self_exe = "/proc/self/exe";
    static char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) {
        exe[n] = '\0';
        self_exe = exe;
    }
    struct test_case cases[] = {T(kill_restart_cycles)};
    int failed = 0;
    cases[0].fn(&failed);
    printf("%s %s\n%d passed, %d failed\n", failed ? "FAIL" : "ok  ", cases[0].name,
           !failed, failed);
    return failed;
}
