// nqueens_gecode: the peer of fd_bench.sh. The first solution of N-Queens with
// Gecode (Debian's libgecode-dev 6.2.0), the same model and the same search as the
// AVM program it is compared with (examples/n_queens.avm):
//
//   variables    q[0..N-1] in 1..N, q[i] = the column of the queen of row i
//   constraints  distinct(q); distinct(q[i] + i); distinct(q[i] - i), each at
//                Gecode's default propagation level (IPL_DEF: value propagation)
//   search       depth-first, rows in input order (INT_VAR_NONE), smallest column
//                first (INT_VAL_MIN), stop at the first solution
//
// Usage: nqueens_gecode N [REPEAT]
//
// Prints one line:
//   N=8 solution=1,5,8,6,3,7,2,4 nodes=.. fails=.. depth=.. search_s=.. total_s=.. repeat=..
// search_s is the time of the search alone (the DFS engine's construction and
// next()), total_s that of the model's construction (variables, propagators,
// branching, the first status()) plus the search, both with
// clock_gettime(CLOCK_MONOTONIC) and averaged over REPEAT runs (default 1). nodes,
// fails and depth are the engine's statistics (the same in every run). The solution
// is checked (N columns in 1..N, no two queens on a column or a diagonal): exit 1
// when it is wrong or when no solution is found, 2 on bad usage.

#include <gecode/int.hh>
#include <gecode/search.hh>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <vector>

using namespace Gecode;

namespace {

class Queens : public Space {
  public:
    IntVarArray q;

    explicit Queens(int n) : q(*this, n, 1, n)
    {
        IntArgs up(n), down(n);
        for (int i = 0; i < n; i++) {
            up[i] = i;
            down[i] = -i;
        }
        distinct(*this, q, IPL_DEF);
        distinct(*this, up, q, IPL_DEF);   // q[i] + i
        distinct(*this, down, q, IPL_DEF); // q[i] - i
        branch(*this, q, INT_VAR_NONE(), INT_VAL_MIN());
    }

    Queens(Queens &s) : Space(s) { q.update(*this, s.q); }

    Space *copy() override { return new Queens(*this); }
};

double now_s()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// The queens' columns (1-based, one per row) attack each other: the reason, or NULL.
const char *attack(const std::vector<int> &col)
{
    int n = static_cast<int>(col.size());
    for (int i = 0; i < n; i++) {
        if (col[i] < 1 || col[i] > n)
            return "a column outside 1..N";
        for (int j = i + 1; j < n; j++) {
            if (col[i] == col[j])
                return "two queens on one column";
            if (col[j] - col[i] == j - i || col[i] - col[j] == j - i)
                return "two queens on one diagonal";
        }
    }
    return nullptr;
}

bool parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    long v = std::strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = static_cast<int>(v);
    return true;
}

} // namespace

int main(int argc, char **argv)
{
    int n = 0, repeat = 1;
    if (argc < 2 || argc > 3 || !parse_int(argv[1], 1, 10000, &n) ||
        (argc == 3 && !parse_int(argv[2], 1, 1000000, &repeat))) {
        std::fprintf(stderr, "usage: nqueens_gecode N [REPEAT]  (N in 1..10000)\n");
        return 2;
    }

    std::vector<int> first;
    Search::Statistics stats;
    double search_s = 0, total_s = 0;
    for (int r = 0; r < repeat; r++) {
        double t0 = now_s();
        Queens *model = new Queens(n);
        // Propagate at the root before the clock for the search starts, so that
        // search_s is the search alone (the engine would do this in next() too).
        SpaceStatus root = model->status();
        double t1 = now_s();
        Queens *sol = nullptr;
        Search::Statistics st;
        if (root != SS_FAILED) {
            DFS<Queens> engine(model);
            sol = engine.next();
            st = engine.statistics();
        }
        double t2 = now_s();
        delete model;
        search_s += t2 - t1;
        total_s += t2 - t0;
        if (sol == nullptr) {
            std::printf("N=%d solution=none\n", n);
            std::fprintf(stderr, "nqueens_gecode: no solution for N=%d\n", n);
            return 1;
        }
        std::vector<int> col(static_cast<size_t>(n));
        for (int i = 0; i < n; i++)
            col[static_cast<size_t>(i)] = sol->q[i].val();
        delete sol;
        const char *why = attack(col);
        if (why != nullptr) {
            std::fprintf(stderr, "nqueens_gecode: wrong solution for N=%d: %s\n", n, why);
            return 1;
        }
        if (r == 0) {
            first = col;
            stats = st;
        } else if (col != first) {
            std::fprintf(stderr, "nqueens_gecode: run %d found another solution\n", r + 1);
            return 1;
        }
    }

    std::printf("N=%d solution=", n);
    for (int i = 0; i < n; i++)
        std::printf("%s%d", i > 0 ? "," : "", first[static_cast<size_t>(i)]);
    std::printf(" nodes=%lu fails=%lu depth=%lu search_s=%.9f total_s=%.9f repeat=%d\n",
                static_cast<unsigned long>(stats.node), static_cast<unsigned long>(stats.fail),
                static_cast<unsigned long>(stats.depth), search_s / repeat, total_s / repeat,
                repeat);
    return 0;
}
