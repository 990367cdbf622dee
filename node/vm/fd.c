/* The finite-domain engine (fd.h): domains, propagators, the trail and its levels,
 * and the store's serialization. */
#include "fd.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "codec.h"

__extension__ typedef __int128 i128;

#define FD_NONE UINT32_MAX
#define FD_FORMAT 1

/* What a change did to a domain (a subscription wakes on one of them): some value
 * went, a bound moved, the variable became fixed. Each implies the ones before. */
enum { EV_DOM = 1, EV_BND = 2, EV_FIX = 4 };
/* A subscription is a constraint number shifted left by SUB_SHIFT, or'ed with the
 * event it waits for. */
#define SUB_SHIFT 3

/* A variable. A bitset domain has nw > 0 words at s->words[woff]: bit i is the value
 * base + i. An interval domain (nw == 0) has niv sorted disjoint non-adjacent
 * intervals; ivcap never shrinks, so a trailed state always fits back. min > max
 * when the domain is empty. */
typedef struct fd_var {
    int64_t min, max;
    int64_t base;
    uint32_t nw, woff;
    fd_iv *iv;
    uint32_t niv, ivcap;
    uint32_t *subs; /* subscriptions (constraint, event), in posting order */
    uint32_t nsub, subcap;
    uint32_t last_trail; /* 1 + index of its latest trail entry, 0 for none */
} fd_var;

/* A constraint. Binary kinds: a, b, k. Val kinds: a, k. AllDiff: n items from
 * s->items[item], of which the first nfixed are fixed and their values removed
 * from all the other items (the items after them are reordered as they get fixed;
 * nfixed is trailed like a domain). */
typedef struct fd_con {
    uint8_t kind;
    uint32_t a, b;
    int64_t k;
    uint32_t n, nfixed;
    size_t item;
    uint32_t last_ctrail; /* 1 + index of its latest s->ctrail entry, 0 for none */
} fd_con;

/* A saved AllDiff state: nfixed before its first change in a level. */
typedef struct fd_ctrail {
    uint32_t con, nfixed, prev;
} fd_ctrail;

typedef struct fd_item {
    uint32_t var;
    int64_t off;
} fd_item;

/* A saved domain: the variable's state before its first change in a level. Its
 * words or intervals are in s->tdata[off..]. */
typedef struct fd_trail {
    uint32_t var, prev; /* prev: the variable's last_trail before this entry */
    int64_t min, max;
    uint32_t n; /* words (bitset) or intervals */
    size_t off;
} fd_trail;

/* What a level must restore, and its choice point. */
typedef struct fd_level {
    uint32_t nvars, ncons;
    size_t nitems, nwords, ntrail, ntdata, nctrail;
    bool failed;
    bool has_choice;
    uint32_t cvar;
    int64_t cval;
} fd_level;

/* One interval of the Hall-interval algorithm (shifted bounds, exact). */
typedef struct fd_hiv {
    i128 min, max;
    int minrank, maxrank;
    uint32_t item;
} fd_hiv;

struct fd_store {
    fd_var *vars;
    uint32_t nvars, varcap;
    fd_con *cons;
    uint32_t ncons, concap;
    fd_item *items;
    size_t nitems, itemcap;
    /* For each AllDiff, at 2 * item: the orders of its items by min and by max of
     * its last Hall run, so that the next sort starts nearly sorted. A hint only:
     * any permutation gives the same result. */
    uint32_t *ord;
    size_t ordcap;
    uint64_t *words;
    size_t nwords, wordcap;
    fd_trail *trail;
    size_t ntrail, trailcap;
    uint64_t *tdata;
    size_t ntdata, tdcap;
    fd_ctrail *ctrail;
    size_t nctrail, ctrailcap;
    fd_level *lev;
    uint32_t nlev, levcap;
    bool failed, oom;

    /* Propagation queue: a ring of constraint numbers, each queued at most once. */
    uint32_t *queue;
    uint8_t *inq;
    uint32_t qhead, qn, qcap; /* qcap >= concap */
    uint32_t cur;             /* the running propagator, FD_NONE when none */

    /* Scratch, reused: runs of a domain, an interval merge, a bitset mask, and the
     * AllDiff arrays (sized when an AllDiff is posted). */
    fd_iv *runs, *tmp;
    size_t runcap, tmpcap;
    uint64_t mask[FD_BITS_MAX_WORDS];
    fd_hiv *hiv;
    fd_hiv **minsorted, **maxsorted;
    i128 *bounds, *d;
    int *t, *h;
    size_t adcap;
};

static const char *const kind_names[FD_KIND_COUNT] = {
    "Eq",      "Neq",   "Leq",    "Lt",    "Geq",    "Gt",
    "AllDiff", "ValEq", "ValLeq", "ValLt", "ValGeq", "ValGt",
};

const char *fd_kind_name(fd_kind k)
{
    return (unsigned)k < FD_KIND_COUNT ? kind_names[k] : "?";
}

int fd_kind_from_name(const char *name, size_t n)
{
    for (int k = 0; k < FD_KIND_COUNT; k++)
        if (strlen(kind_names[k]) == n && memcmp(kind_names[k], name, n) == 0)
            return k;
    return -1;
}

static bool is_binary(int kind)
{
    return kind >= FD_EQ && kind <= FD_GT;
}

/* Memory ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t elem, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 8;
    while (ncap < need)
        ncap *= 2;
    if (ncap > SIZE_MAX / elem)
        return AVM_ENOMEM;
    void *q = realloc(*p, ncap * elem);
    if (q == NULL)
        return AVM_ENOMEM;
    *p = q;
    *cap = ncap;
    return 0;
}

static int grow32(void **p, uint32_t *cap, size_t elem, size_t need)
{
    size_t c = *cap;
    if (need > UINT32_MAX)
        return AVM_ENOMEM;
    int rv = grow(p, &c, elem, need);
    if (rv == 0)
        *cap = c > UINT32_MAX ? UINT32_MAX : (uint32_t)c;
    return rv;
}

fd_store *fd_new(uint32_t levels)
{
    fd_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->cur = FD_NONE;
    for (uint32_t i = 0; i < levels; i++) {
        if (fd_level_push(s) != 0) {
            fd_free(s);
            return NULL;
        }
    }
    return s;
}

static void free_var(fd_var *v)
{
    free(v->iv);
    free(v->subs);
}

void fd_free(fd_store *s)
{
    if (s == NULL)
        return;
    for (uint32_t i = 0; i < s->nvars; i++)
        free_var(&s->vars[i]);
    free(s->vars);
    free(s->cons);
    free(s->items);
    free(s->ord);
    free(s->words);
    free(s->trail);
    free(s->tdata);
    free(s->ctrail);
    free(s->lev);
    free(s->queue);
    free(s->inq);
    free(s->runs);
    free(s->tmp);
    free(s->hiv);
    free(s->minsorted);
    free(s->maxsorted);
    free(s->bounds);
    free(s->t);
    free(s->d);
    free(s->h);
    free(s);
}

/* Intervals ----------------------------------------------------------------------- */

static int iv_cmp(const void *a, const void *b)
{
    const fd_iv *x = a, *y = b;
    return x->lo < y->lo ? -1 : x->lo > y->lo ? 1 : 0;
}

size_t fd_ivs_normalize(fd_iv *iv, size_t n)
{
    if (n == 0)
        return 0;
    bool sorted = true;
    for (size_t i = 1; i < n && sorted; i++)
        sorted = iv[i - 1].lo <= iv[i].lo;
    if (!sorted)
        qsort(iv, n, sizeof(*iv), iv_cmp);
    size_t m = 0;
    for (size_t i = 1; i < n; i++) {
        if ((i128)iv[i].lo <= (i128)iv[m].hi + 1) {
            if (iv[i].hi > iv[m].hi)
                iv[m].hi = iv[i].hi;
        } else {
            iv[++m] = iv[i];
        }
    }
    return m + 1;
}

/* Clamps [lo, hi] (exact) to int64; false when nothing of it is representable. */
static bool clamp_iv(i128 lo, i128 hi, fd_iv *out)
{
    if (lo < INT64_MIN)
        lo = INT64_MIN;
    if (hi > INT64_MAX)
        hi = INT64_MAX;
    if (lo > hi)
        return false;
    out->lo = (int64_t)lo;
    out->hi = (int64_t)hi;
    return true;
}

/* Bitsets --------------------------------------------------------------------------- */

static inline uint64_t *var_words(const fd_store *s, const fd_var *v)
{
    return s->words + v->woff;
}

/* The first set bit at or after bit i, or -1. */
static int64_t bits_next(const uint64_t *w, uint32_t nw, int64_t i)
{
    if (i < 0)
        i = 0;
    if (i >= (int64_t)nw * 64)
        return -1;
    size_t k = (size_t)i / 64;
    uint64_t x = w[k] & (~0ull << (i % 64));
    for (;;) {
        if (x != 0)
            return (int64_t)(k * 64 + (size_t)__builtin_ctzll(x));
        if (++k == nw)
            return -1;
        x = w[k];
    }
}

/* The last set bit at or before bit i, or -1. */
static int64_t bits_prev(const uint64_t *w, uint32_t nw, int64_t i)
{
    if (i < 0)
        return -1;
    if (i >= (int64_t)nw * 64)
        i = (int64_t)nw * 64 - 1;
    size_t k = (size_t)i / 64;
    unsigned r = (unsigned)(i % 64);
    uint64_t x = w[k] & (r == 63 ? ~0ull : ((1ull << (r + 1)) - 1));
    for (;;) {
        if (x != 0)
            return (int64_t)(k * 64 + 63 - (size_t)__builtin_clzll(x));
        if (k == 0)
            return -1;
        x = w[--k];
    }
}

/* The first clear bit at or after bit i (nw * 64 when none). */
static int64_t bits_next_clear(const uint64_t *w, uint32_t nw, int64_t i)
{
    if (i >= (int64_t)nw * 64)
        return (int64_t)nw * 64;
    size_t k = (size_t)i / 64;
    uint64_t x = ~w[k] & (~0ull << (i % 64));
    for (;;) {
        if (x != 0)
            return (int64_t)(k * 64 + (size_t)__builtin_ctzll(x));
        if (++k == nw)
            return (int64_t)nw * 64;
        x = ~w[k];
    }
}

/* Sets bits [a, b] (0 <= a <= b < nw * 64). */
static void bits_set_range(uint64_t *w, int64_t a, int64_t b)
{
    size_t ka = (size_t)a / 64, kb = (size_t)b / 64;
    uint64_t ma = ~0ull << (a % 64);
    uint64_t mb = (b % 64) == 63 ? ~0ull : ((1ull << ((b % 64) + 1)) - 1);
    if (ka == kb) {
        w[ka] |= ma & mb;
        return;
    }
    w[ka] |= ma;
    for (size_t k = ka + 1; k < kb; k++)
        w[k] = ~0ull;
    w[kb] |= mb;
}

/* Domains: queries ------------------------------------------------------------- */

static inline bool var_empty(const fd_var *v)
{
    return v->min > v->max;
}

/* Index of the last interval whose lo <= x, or -1. */
static long iv_find(const fd_var *v, int64_t x)
{
    long lo = 0, hi = (long)v->niv - 1, r = -1;
    while (lo <= hi) {
        long mid = lo + (hi - lo) / 2;
        if (v->iv[mid].lo <= x) {
            r = mid;
            lo = mid + 1;
        } else {
            hi = mid - 1;
        }
    }
    return r;
}

static bool var_has(const fd_store *s, const fd_var *v, int64_t x)
{
    if (x < v->min || x > v->max)
        return false;
    if (v->nw > 0)
        return (var_words(s, v)[(uint64_t)(x - v->base) / 64] >>
                ((uint64_t)(x - v->base) % 64)) &
               1;
    long i = iv_find(v, x);
    return i >= 0 && v->iv[i].hi >= x;
}

/* The runs of v's domain into s->runs; their count, or -1 when out of memory. */
static long var_runs(fd_store *s, const fd_var *v)
{
    size_t n = 0;
    if (var_empty(v))
        return 0;
    if (v->nw == 0) {
        if (grow((void **)&s->runs, &s->runcap, sizeof(fd_iv), v->niv) != 0)
            return -1;
        memcpy(s->runs, v->iv, v->niv * sizeof(fd_iv));
        return (long)v->niv;
    }
    const uint64_t *w = var_words(s, v);
    int64_t i = v->min - v->base, last = v->max - v->base;
    while (i >= 0 && i <= last) {
        int64_t e = bits_next_clear(w, v->nw, i);
        if (grow((void **)&s->runs, &s->runcap, sizeof(fd_iv), n + 1) != 0)
            return -1;
        s->runs[n].lo = v->base + i;
        s->runs[n].hi = v->base + (e - 1);
        n++;
        i = bits_next(w, v->nw, e);
    }
    return (long)n;
}

/* The trail ------------------------------------------------------------------------ */

/* Saves v's domain before its first change in the innermost level (nothing outside
 * levels, or for a variable created in the level). */
static int touch(fd_store *s, uint32_t vi)
{
    if (s->nlev == 0)
        return 0;
    const fd_level *l = &s->lev[s->nlev - 1];
    fd_var *v = &s->vars[vi];
    if (vi >= l->nvars || v->last_trail > l->ntrail)
        return 0;
    uint32_t n = v->nw > 0 ? v->nw : v->niv;
    size_t words = v->nw > 0 ? n : (size_t)n * 2;
    if (grow((void **)&s->trail, &s->trailcap, sizeof(fd_trail), s->ntrail + 1) != 0 ||
        grow((void **)&s->tdata, &s->tdcap, sizeof(uint64_t), s->ntdata + words) != 0)
        return AVM_ENOMEM;
    fd_trail *e = &s->trail[s->ntrail];
    e->var = vi;
    e->prev = v->last_trail;
    e->min = v->min;
    e->max = v->max;
    e->n = n;
    e->off = s->ntdata;
    if (words > 0)
        memcpy(s->tdata + s->ntdata, v->nw > 0 ? (void *)var_words(s, v) : (void *)v->iv,
               words * sizeof(uint64_t));
    s->ntdata += words;
    s->ntrail++;
    v->last_trail = (uint32_t)s->ntrail;
    return 0;
}

static void untrail_one(fd_store *s, const fd_trail *e)
{
    fd_var *v = &s->vars[e->var];
    v->min = e->min;
    v->max = e->max;
    if (v->nw > 0) {
        memcpy(var_words(s, v), s->tdata + e->off, (size_t)e->n * sizeof(uint64_t));
    } else {
        assert(e->n <= v->ivcap);
        if (e->n > 0)
            memcpy(v->iv, s->tdata + e->off, (size_t)e->n * sizeof(fd_iv));
        v->niv = e->n;
    }
    v->last_trail = e->prev;
}

/* Propagation queue ---------------------------------------------------------------- */

static void wake(fd_store *s, uint32_t vi, unsigned ev)
{
    const fd_var *v = &s->vars[vi];
    for (uint32_t i = 0; i < v->nsub; i++) {
        uint32_t c = v->subs[i] >> SUB_SHIFT;
        if (!(v->subs[i] & ev) || c == s->cur || s->inq[c])
            continue;
        s->inq[c] = 1;
        s->queue[(s->qhead + s->qn) % s->qcap] = c;
        s->qn++;
    }
}

static void queue_clear(fd_store *s)
{
    while (s->qn > 0) {
        s->inq[s->queue[s->qhead]] = 0;
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qn--;
    }
    s->qhead = 0;
}

/* After v's domain changed from bounds [omin, omax]: fail the store or wake the
 * constraints waiting for what happened. */
static void changed(fd_store *s, uint32_t vi, int64_t omin, int64_t omax)
{
    const fd_var *v = &s->vars[vi];
    if (var_empty(v)) {
        s->failed = true;
        return;
    }
    unsigned ev = EV_DOM;
    if (v->min != omin || v->max != omax)
        ev |= EV_BND;
    if (v->min == v->max)
        ev |= EV_FIX;
    wake(s, vi, ev);
}

/* Domains: changes. Each returns 1 when the domain changed, 0 when not, or -1
 * when out of memory (nothing changed then). They trail before changing and call
 * changed(). */

static void set_empty(fd_store *s, fd_var *v)
{
    if (v->nw > 0)
        memset(var_words(s, v), 0, (size_t)v->nw * sizeof(uint64_t));
    else
        v->niv = 0;
    v->min = 1;
    v->max = 0;
}

/* Restricts to [lo, hi] (exact bounds). */
static int dom_bounds(fd_store *s, uint32_t vi, i128 lo, i128 hi)
{
    fd_var *v = &s->vars[vi];
    if (var_empty(v) || (lo <= v->min && hi >= v->max))
        return 0;
    if (touch(s, vi) != 0)
        return -1;
    int64_t omin = v->min, omax = v->max;
    i128 nl = lo > v->min ? lo : v->min, nh = hi < v->max ? hi : v->max;
    if (nl > nh) {
        set_empty(s, v);
    } else if (v->nw > 0) {
        uint64_t *w = var_words(s, v);
        int64_t a = bits_next(w, v->nw, (int64_t)(nl - v->base));
        int64_t b = bits_prev(w, v->nw, (int64_t)(nh - v->base));
        if (a < 0 || b < 0 || a > b) {
            set_empty(s, v);
        } else {
            /* Clear the bits outside [a, b]. */
            size_t ka = (size_t)a / 64, kb = (size_t)b / 64;
            for (size_t k = 0; k < ka; k++)
                w[k] = 0;
            w[ka] &= ~0ull << (a % 64);
            w[kb] &= (b % 64) == 63 ? ~0ull : ((1ull << ((b % 64) + 1)) - 1);
            for (size_t k = kb + 1; k < v->nw; k++)
                w[k] = 0;
            v->min = v->base + a;
            v->max = v->base + b;
        }
    } else {
        /* First interval reaching nl, last starting at or before nh. */
        long first = iv_find(v, (int64_t)nl);
        if (first < 0 || v->iv[first].hi < nl)
            first++;
        long last = iv_find(v, (int64_t)nh);
        if (last < first) {
            set_empty(s, v);
        } else {
            long m = last - first + 1;
            memmove(v->iv, v->iv + first, (size_t)m * sizeof(fd_iv));
            v->niv = (uint32_t)m;
            if (v->iv[0].lo < nl)
                v->iv[0].lo = (int64_t)nl;
            if (v->iv[m - 1].hi > nh)
                v->iv[m - 1].hi = (int64_t)nh;
            v->min = v->iv[0].lo;
            v->max = v->iv[m - 1].hi;
        }
    }
    changed(s, vi, omin, omax);
    return 1;
}

/* Removes value x. */
static int dom_remove(fd_store *s, uint32_t vi, i128 x)
{
    fd_var *v = &s->vars[vi];
    if (x < v->min || x > v->max || !var_has(s, v, (int64_t)x))
        return 0;
    if (x == v->min)
        return dom_bounds(s, vi, x + 1, v->max);
    if (x == v->max)
        return dom_bounds(s, vi, v->min, x - 1);
    /* Strictly inside: min and max stay. */
    if (v->nw == 0 &&
        grow32((void **)&v->iv, &v->ivcap, sizeof(fd_iv), (size_t)v->niv + 1) != 0)
        return -1;
    if (touch(s, vi) != 0)
        return -1;
    v = &s->vars[vi];
    int64_t val = (int64_t)x;
    if (v->nw > 0) {
        uint64_t off = (uint64_t)(val - v->base);
        var_words(s, v)[off / 64] &= ~(1ull << (off % 64));
    } else {
        long i = iv_find(v, val);
        fd_iv *p = &v->iv[i];
        if (p->lo == val) {
            p->lo++;
        } else if (p->hi == val) {
            p->hi--;
        } else {
            memmove(p + 2, p + 1, (size_t)(v->niv - (uint32_t)i - 1) * sizeof(fd_iv));
            p[1].lo = val + 1;
            p[1].hi = p->hi;
            p->hi = val - 1;
            v->niv++;
        }
    }
    changed(s, vi, v->min, v->max);
    return 1;
}

/* Intersects with n normalized intervals. */
static int dom_intersect(fd_store *s, uint32_t vi, const fd_iv *iv, size_t n)
{
    fd_var *v = &s->vars[vi];
    if (var_empty(v))
        return 0;
    int64_t omin = v->min, omax = v->max;
    if (n == 0) {
        if (touch(s, vi) != 0)
            return -1;
        set_empty(s, v);
        changed(s, vi, omin, omax);
        return 1;
    }
    if (v->nw > 0) {
        i128 top = (i128)v->base + (i128)v->nw * 64 - 1;
        memset(s->mask, 0, (size_t)v->nw * sizeof(uint64_t));
        for (size_t i = 0; i < n; i++) {
            i128 lo = iv[i].lo > v->min ? iv[i].lo : v->min;
            i128 hi = iv[i].hi < top ? iv[i].hi : top;
            if (lo <= hi)
                bits_set_range(s->mask, (int64_t)(lo - v->base), (int64_t)(hi - v->base));
        }
        const uint64_t *w = var_words(s, v);
        bool diff = false;
        for (uint32_t k = 0; k < v->nw && !diff; k++)
            diff = (w[k] & s->mask[k]) != w[k];
        if (!diff)
            return 0;
        if (touch(s, vi) != 0)
            return -1;
        v = &s->vars[vi];
        uint64_t *ww = var_words(s, v);
        for (uint32_t k = 0; k < v->nw; k++)
            ww[k] &= s->mask[k];
        int64_t a = bits_next(ww, v->nw, 0);
        if (a < 0) {
            set_empty(s, v);
        } else {
            v->min = v->base + a;
            v->max = v->base + bits_prev(ww, v->nw, (int64_t)v->nw * 64 - 1);
        }
        changed(s, vi, omin, omax);
        return 1;
    }
    /* Interval lists: merge into s->tmp. */
    if (grow((void **)&s->tmp, &s->tmpcap, sizeof(fd_iv), (size_t)v->niv + n) != 0)
        return -1;
    size_t m = 0, i = 0, j = 0;
    while (i < v->niv && j < n) {
        int64_t lo = v->iv[i].lo > iv[j].lo ? v->iv[i].lo : iv[j].lo;
        int64_t hi = v->iv[i].hi < iv[j].hi ? v->iv[i].hi : iv[j].hi;
        if (lo <= hi)
            s->tmp[m++] = (fd_iv){lo, hi};
        if (v->iv[i].hi < iv[j].hi)
            i++;
        else
            j++;
    }
    if (m == v->niv && memcmp(s->tmp, v->iv, m * sizeof(fd_iv)) == 0)
        return 0;
    if (grow32((void **)&v->iv, &v->ivcap, sizeof(fd_iv), m) != 0 || touch(s, vi) != 0)
        return -1;
    v = &s->vars[vi];
    memcpy(v->iv, s->tmp, m * sizeof(fd_iv));
    v->niv = (uint32_t)m;
    if (m == 0) {
        set_empty(s, v);
    } else {
        v->min = v->iv[0].lo;
        v->max = v->iv[m - 1].hi;
    }
    changed(s, vi, omin, omax);
    return 1;
}

/* Propagators ----------------------------------------------------------------------- */

/* Each returns 0, or AVM_ENOMEM; a failure sets s->failed. */
#define STEP(expr)                                                                       \
    do {                                                                                 \
        if ((expr) < 0)                                                                  \
            return AVM_ENOMEM;                                                           \
        if (s->failed)                                                                   \
            return 0;                                                                    \
    } while (0)

/* a = b + k, domain consistent: D(a) &= D(b) + k; D(b) &= D(a) - k. */
static int prop_eq(fd_store *s, uint32_t a, uint32_t b, i128 k)
{
    for (int side = 0; side < 2; side++) {
        uint32_t from = side == 0 ? b : a, to = side == 0 ? a : b;
        i128 shift = side == 0 ? k : -k;
        long n = var_runs(s, &s->vars[from]);
        if (n < 0)
            return AVM_ENOMEM;
        size_t m = 0;
        for (long i = 0; i < n; i++) {
            fd_iv r;
            if (clamp_iv((i128)s->runs[i].lo + shift, (i128)s->runs[i].hi + shift, &r))
                s->runs[m++] = r;
        }
        STEP(dom_intersect(s, to, s->runs, m));
    }
    return 0;
}

/* a != b + k: a value is removed once the other side is fixed. */
static int prop_neq(fd_store *s, uint32_t a, uint32_t b, i128 k)
{
    const fd_var *va = &s->vars[a], *vb = &s->vars[b];
    if (vb->min == vb->max)
        STEP(dom_remove(s, a, (i128)vb->min + k));
    va = &s->vars[a];
    if (va->min == va->max)
        STEP(dom_remove(s, b, (i128)va->min - k));
    return 0;
}

/* a <= b + c, bounds consistent. */
static int prop_leq(fd_store *s, uint32_t a, uint32_t b, i128 c)
{
    STEP(dom_bounds(s, a, (i128)INT64_MIN, (i128)s->vars[b].max + c));
    STEP(dom_bounds(s, b, (i128)s->vars[a].min - c, (i128)INT64_MAX));
    return 0;
}

static int hiv_cmp_min(const void *a, const void *b)
{
    const fd_hiv *x = *(fd_hiv *const *)a, *y = *(fd_hiv *const *)b;
    return x->min < y->min ? -1 : x->min > y->min ? 1 : 0;
}

static int hiv_cmp_max(const void *a, const void *b)
{
    const fd_hiv *x = *(fd_hiv *const *)a, *y = *(fd_hiv *const *)b;
    return x->max < y->max ? -1 : x->max > y->max ? 1 : 0;
}

/* Insertion sort for the small arrays of most models (nearly sorted from one run
 * to the next), qsort beyond. */
static void sort_by(fd_hiv **p, size_t n, bool by_max)
{
    if (n > 32) {
        qsort(p, n, sizeof(*p), by_max ? hiv_cmp_max : hiv_cmp_min);
        return;
    }
    for (size_t i = 1; i < n; i++) {
        fd_hiv *x = p[i];
        i128 key = by_max ? x->max : x->min;
        size_t j = i;
        while (j > 0 && (by_max ? p[j - 1]->max : p[j - 1]->min) > key) {
            p[j] = p[j - 1];
            j--;
        }
        p[j] = x;
    }
}

static int pathmax(const int *a, int x)
{
    while (x < a[x])
        x = a[x];
    return x;
}

static int pathmin(const int *a, int x)
{
    while (a[x] < x)
        x = a[x];
    return x;
}

static void pathset(int *a, int x, int y, int z)
{
    int next = x, prev = x;
    while (prev != y) {
        next = a[prev];
        a[prev] = z;
        prev = next;
    }
}

/* Bounds consistency of AllDiff by Hall intervals: A. Lopez-Ortiz, C.-G. Quimper,
 * J. Tromp, P. van Beek, "A fast and simple algorithm for bounds consistency of the
 * alldifferent constraint" (IJCAI 2003), on the shifted bounds x_i + off_i. Sets
 * *again when its changes need another round. */
static int alldiff_hall(fd_store *s, const fd_con *c, bool *again)
{
    size_t n = c->n;
    const fd_item *it = s->items + c->item;
    uint32_t *minord = s->ord + 2 * c->item, *maxord = minord + n;
    for (size_t i = 0; i < n; i++) {
        const fd_var *v = &s->vars[it[i].var];
        s->hiv[i].min = (i128)v->min + it[i].off;
        s->hiv[i].max = (i128)v->max + it[i].off;
        s->hiv[i].item = (uint32_t)i;
        s->minsorted[i] = &s->hiv[minord[i]];
        s->maxsorted[i] = &s->hiv[maxord[i]];
    }
    sort_by(s->minsorted, n, false);
    sort_by(s->maxsorted, n, true);
    for (size_t i = 0; i < n; i++) {
        minord[i] = s->minsorted[i]->item;
        maxord[i] = s->maxsorted[i]->item;
    }
    /* Merge the sorted bounds (max + 1: half-open) into bounds[1..nb]. */
    i128 *bounds = s->bounds;
    i128 min = s->minsorted[0]->min, max = s->maxsorted[0]->max + 1, last = min - 2;
    int nb = 0;
    bounds[0] = last;
    for (size_t i = 0, j = 0;;) {
        if (i < n && min <= max) {
            if (min != last)
                bounds[++nb] = last = min;
            s->minsorted[i]->minrank = nb;
            if (++i < n)
                min = s->minsorted[i]->min;
        } else {
            if (max != last)
                bounds[++nb] = last = max;
            s->maxsorted[j]->maxrank = nb;
            if (++j == n)
                break;
            max = s->maxsorted[j]->max + 1;
        }
    }
    bounds[nb + 1] = bounds[nb] + 2;
    int *t = s->t, *h = s->h;
    i128 *d = s->d;
    /* Lower bounds, intervals by increasing max. */
    for (int i = 1; i <= nb + 1; i++) {
        t[i] = h[i] = i - 1;
        d[i] = bounds[i] - bounds[i - 1];
    }
    for (size_t i = 0; i < n; i++) {
        fd_hiv *p = s->maxsorted[i];
        int x = p->minrank, y = p->maxrank;
        int z = pathmax(t, x + 1), j = t[z];
        if (--d[z] == 0) {
            t[z] = z + 1;
            z = pathmax(t, t[z]);
            t[z] = j;
        }
        pathset(t, x + 1, z, z);
        if (d[z] < bounds[z] - bounds[y]) {
            s->failed = true;
            return 0;
        }
        if (h[x] > x) {
            int w = pathmax(h, h[x]);
            p->min = bounds[w];
            pathset(h, x, w, w);
        }
        if (d[z] == bounds[z] - bounds[y]) {
            pathset(h, h[y], j - 1, y);
            h[y] = j - 1;
        }
    }
    /* Upper bounds, intervals by decreasing min. */
    for (int i = 0; i <= nb; i++) {
        t[i] = h[i] = i + 1;
        d[i] = bounds[i + 1] - bounds[i];
    }
    for (size_t i = n; i-- > 0;) {
        fd_hiv *p = s->minsorted[i];
        int x = p->maxrank, y = p->minrank;
        int z = pathmin(t, x - 1), j = t[z];
        if (--d[z] == 0) {
            t[z] = z - 1;
            z = pathmin(t, t[z]);
            t[z] = j;
        }
        pathset(t, x - 1, z, z);
        if (d[z] < bounds[y] - bounds[z]) {
            s->failed = true;
            return 0;
        }
        if (h[x] < x) {
            int w = pathmin(h, h[x]);
            p->max = bounds[w] - 1;
            pathset(h, x, w, w);
        }
        if (d[z] == bounds[y] - bounds[z]) {
            pathset(h, h[y], j + 1, y);
            h[y] = j + 1;
        }
    }
    for (size_t i = 0; i < n; i++) {
        const fd_hiv *p = &s->hiv[i];
        const fd_item *e = &it[p->item];
        int r = dom_bounds(s, e->var, p->min - e->off, p->max - e->off);
        if (r < 0)
            return AVM_ENOMEM;
        if (s->failed)
            return 0;
        /* One pass gives bounds consistency, unless a new bound fell into a hole
         * (it moved further) or fixed the variable (its value must go). */
        const fd_var *v = &s->vars[e->var];
        if (r > 0 && (v->min == v->max || (i128)v->min + e->off != p->min ||
                      (i128)v->max + e->off != p->max))
            *again = true;
    }
    return 0;
}

/* Saves AllDiff ci's nfixed before its first change in the innermost level. */
static int ctouch(fd_store *s, uint32_t ci)
{
    if (s->nlev == 0)
        return 0;
    const fd_level *l = &s->lev[s->nlev - 1];
    fd_con *c = &s->cons[ci];
    if (ci >= l->ncons || c->last_ctrail > l->nctrail)
        return 0;
    if (grow((void **)&s->ctrail, &s->ctrailcap, sizeof(fd_ctrail), s->nctrail + 1) != 0)
        return AVM_ENOMEM;
    s->ctrail[s->nctrail++] = (fd_ctrail){ci, c->nfixed, c->last_ctrail};
    c->last_ctrail = (uint32_t)s->nctrail;
    return 0;
}

/* AllDiff: the value of each newly fixed item is removed from the items not yet
 * fixed, and the item joins the fixed prefix (the prefix's values are gone from
 * everything after it, so it is never scanned again); then Hall intervals prune
 * bounds; repeated until neither changes anything. */
static int prop_alldiff(fd_store *s, uint32_t ci)
{
    fd_con *c = &s->cons[ci];
    size_t n = c->n;
    if (n < 2)
        return 0;
    fd_item *it = s->items + c->item;
    for (;;) {
        size_t i = c->nfixed;
        while (i < n) {
            const fd_var *v = &s->vars[it[i].var];
            if (v->min != v->max) {
                i++;
                continue;
            }
            i128 val = (i128)v->min + it[i].off;
            for (size_t j = c->nfixed; j < n; j++)
                if (j != i)
                    STEP(dom_remove(s, it[j].var, val - it[j].off));
            if (ctouch(s, ci) != 0)
                return AVM_ENOMEM;
            fd_item t = it[i];
            it[i] = it[c->nfixed];
            it[c->nfixed++] = t;
            /* Removing the value may have fixed items before i. */
            i = c->nfixed;
        }
        bool again = false;
        int rv = alldiff_hall(s, c, &again);
        if (rv != 0 || s->failed || !again)
            return rv;
    }
}

static int prop_run(fd_store *s, uint32_t ci)
{
    const fd_con *c = &s->cons[ci];
    i128 k = c->k;
    switch (c->kind) {
    case FD_EQ:
        return prop_eq(s, c->a, c->b, k);
    case FD_NEQ:
        return prop_neq(s, c->a, c->b, k);
    case FD_LEQ:
        return prop_leq(s, c->a, c->b, k);
    case FD_LT:
        return prop_leq(s, c->a, c->b, k - 1);
    case FD_GEQ: /* a >= b + k  <=>  b <= a - k */
        return prop_leq(s, c->b, c->a, -k);
    case FD_GT:
        return prop_leq(s, c->b, c->a, -k - 1);
    case FD_ALLDIFF:
        return prop_alldiff(s, ci);
    }
    return 0;
}

/* Runs the queue to a fixed point (or a failure). */
static int propagate(fd_store *s)
{
    int rv = 0;
    while (s->qn > 0 && !s->failed && rv == 0) {
        uint32_t c = s->queue[s->qhead];
        s->qhead = (s->qhead + 1) % s->qcap;
        s->qn--;
        s->inq[c] = 0;
        s->cur = c;
        rv = prop_run(s, c);
        s->cur = FD_NONE;
    }
    queue_clear(s);
    return rv;
}

/* Operations ------------------------------------------------------------------------ */

/* A new variable slot, zeroed with an empty domain (not yet counted). */
static fd_var *push_var(fd_store *s)
{
    if (s->nvars >= FD_MAX_VARS ||
        grow32((void **)&s->vars, &s->varcap, sizeof(fd_var), (size_t)s->nvars + 1) != 0)
        return NULL;
    fd_var *v = &s->vars[s->nvars];
    memset(v, 0, sizeof(*v));
    v->min = 1;
    v->max = 0;
    return v;
}

/* Gives v a cleared bitset of nw words from base. */
static int var_set_bits(fd_store *s, fd_var *v, int64_t base, uint32_t nw)
{
    if (grow((void **)&s->words, &s->wordcap, sizeof(uint64_t), s->nwords + nw) != 0)
        return AVM_ENOMEM;
    v->nw = nw;
    v->base = base;
    v->woff = (uint32_t)s->nwords;
    memset(s->words + s->nwords, 0, (size_t)nw * sizeof(uint64_t));
    s->nwords += nw;
    return 0;
}

static int add_var(fd_store *s, const fd_iv *iv, size_t n, uint32_t *out)
{
    fd_var *v = push_var(s);
    if (v == NULL)
        return AVM_ENOMEM;
    i128 span = n > 0 ? (i128)iv[n - 1].hi - iv[0].lo + 1 : 0;
    if (n > 0 && span <= FD_BITS_MAX_WORDS * 64) {
        uint32_t nw = (uint32_t)((span + 63) / 64);
        int64_t base = iv[0].lo;
        if ((i128)base + (i128)nw * 64 - 1 > INT64_MAX)
            base = (int64_t)((i128)INT64_MAX - (i128)nw * 64 + 1);
        if (var_set_bits(s, v, base, nw) != 0)
            return AVM_ENOMEM;
        for (size_t i = 0; i < n; i++)
            bits_set_range(var_words(s, v), iv[i].lo - base, iv[i].hi - base);
    } else if (n > 0) {
        v->iv = malloc(n * sizeof(fd_iv));
        if (v->iv == NULL)
            return AVM_ENOMEM;
        memcpy(v->iv, iv, n * sizeof(fd_iv));
        v->niv = v->ivcap = (uint32_t)n;
    }
    if (n > 0) {
        v->min = iv[0].lo;
        v->max = iv[n - 1].hi;
    }
    *out = s->nvars++;
    return 0;
}

int fd_new_var(fd_store *s, const fd_iv *iv, size_t n, uint32_t *var)
{
    if (n > UINT32_MAX)
        return AVM_ENOMEM;
    int rv = add_var(s, iv, n, var);
    if (rv == 0 && n == 0)
        s->failed = true;
    return rv;
}

int fd_narrow(fd_store *s, uint32_t var, const fd_iv *iv, size_t n)
{
    assert(var < s->nvars);
    if (s->failed)
        return 0;
    if (dom_intersect(s, var, iv, n) < 0) {
        queue_clear(s);
        return AVM_ENOMEM;
    }
    return propagate(s);
}

/* The event a constraint's propagator needs: Eq any removal, Neq a fixed side,
 * the orders and AllDiff a moved bound (value elimination needs fixed variables,
 * which moved a bound; Hall intervals read bounds only). */
static unsigned wake_on(int kind)
{
    return kind == FD_EQ ? EV_DOM : kind == FD_NEQ ? EV_FIX : EV_BND;
}

static int subscribe(fd_store *s, uint32_t vi, uint32_t c)
{
    fd_var *v = &s->vars[vi];
    if (grow32((void **)&v->subs, &v->subcap, sizeof(uint32_t), (size_t)v->nsub + 1) != 0)
        return AVM_ENOMEM;
    v->subs[v->nsub++] = c << SUB_SHIFT | wake_on(s->cons[c].kind);
    return 0;
}

static void unsubscribe_con(fd_store *s, uint32_t ci)
{
    const fd_con *c = &s->cons[ci];
    if (is_binary(c->kind) && c->a != c->b) {
        s->vars[c->a].nsub--;
        s->vars[c->b].nsub--;
    } else if (c->kind == FD_ALLDIFF) {
        for (size_t i = 0; i < c->n; i++)
            s->vars[s->items[c->item + i].var].nsub--;
    }
}

static int resize(void **p, size_t n, size_t elem)
{
    void *q = realloc(*p, n * elem);
    if (q == NULL)
        return AVM_ENOMEM;
    *p = q;
    return 0;
}

/* Room for one more constraint in the queue arrays, and for an AllDiff of n. */
static int reserve_con(fd_store *s, size_t n)
{
    if (s->ncons >= FD_MAX_CONS ||
        grow32((void **)&s->cons, &s->concap, sizeof(fd_con), (size_t)s->ncons + 1) != 0)
        return AVM_ENOMEM;
    if (s->qcap < s->concap) {
        /* The queue is empty between operations: it can be reallocated. */
        assert(s->qn == 0);
        uint32_t *q = realloc(s->queue, (size_t)s->concap * sizeof(uint32_t));
        if (q == NULL)
            return AVM_ENOMEM;
        s->queue = q;
        uint8_t *f = realloc(s->inq, s->concap);
        if (f == NULL)
            return AVM_ENOMEM;
        memset(f + s->qcap, 0, s->concap - s->qcap);
        s->inq = f;
        s->qcap = s->concap;
        s->qhead = 0;
    }
    if (n > s->adcap) {
        size_t cap = s->adcap ? s->adcap : 8;
        while (cap < n)
            cap *= 2;
        /* The Hall arrays of 2n + 2 entries. */
        size_t nb = 2 * cap + 2;
        if (resize((void **)&s->hiv, cap, sizeof(fd_hiv)) != 0 ||
            resize((void **)&s->minsorted, cap, sizeof(fd_hiv *)) != 0 ||
            resize((void **)&s->maxsorted, cap, sizeof(fd_hiv *)) != 0 ||
            resize((void **)&s->bounds, nb, sizeof(i128)) != 0 ||
            resize((void **)&s->d, nb, sizeof(i128)) != 0 ||
            resize((void **)&s->t, nb, sizeof(int)) != 0 ||
            resize((void **)&s->h, nb, sizeof(int)) != 0)
            return AVM_ENOMEM;
        s->adcap = cap;
    }
    return 0;
}

/* Appends a constraint already checked and subscribes it (no propagation). */
static int add_con(fd_store *s, fd_kind kind, uint32_t a, uint32_t b, int64_t k,
                   const uint32_t *vars, const int64_t *offs, size_t n)
{
    int rv = reserve_con(s, kind == FD_ALLDIFF ? n : 0);
    if (rv != 0)
        return rv;
    uint32_t ci = s->ncons;
    fd_con *c = &s->cons[ci];
    memset(c, 0, sizeof(*c));
    c->kind = (uint8_t)kind;
    c->a = a;
    c->b = b;
    c->k = k;
    if (kind == FD_ALLDIFF) {
        if (grow((void **)&s->items, &s->itemcap, sizeof(fd_item), s->nitems + n) != 0 ||
            grow((void **)&s->ord, &s->ordcap, sizeof(uint32_t), 2 * (s->nitems + n)) !=
                0)
            return AVM_ENOMEM;
        c->item = s->nitems;
        c->n = (uint32_t)n;
        for (size_t i = 0; i < n; i++)
            s->ord[2 * s->nitems + i] = s->ord[2 * s->nitems + n + i] = (uint32_t)i;
        for (size_t i = 0; i < n; i++) {
            if (subscribe(s, vars[i], ci) != 0) {
                while (i-- > 0)
                    s->vars[vars[i]].nsub--;
                return AVM_ENOMEM;
            }
            s->items[s->nitems + i].var = vars[i];
            s->items[s->nitems + i].off = offs ? offs[i] : 0;
        }
        s->nitems += n;
    } else if (is_binary(kind) && a != b) {
        if (subscribe(s, a, ci) != 0)
            return AVM_ENOMEM;
        if (subscribe(s, b, ci) != 0) {
            s->vars[a].nsub--;
            return AVM_ENOMEM;
        }
    }
    s->ncons++;
    return 0;
}

/* A binary constraint on one variable is true or false whatever its value. */
static bool same_var_holds(fd_kind kind, int64_t k)
{
    switch (kind) {
    case FD_EQ:
        return k == 0;
    case FD_NEQ:
        return k != 0;
    case FD_LEQ:
        return k >= 0;
    case FD_LT:
        return k > 0;
    case FD_GEQ:
        return k <= 0;
    case FD_GT:
        return k < 0;
    default:
        return true;
    }
}

int fd_post(fd_store *s, fd_kind kind, uint32_t a, uint32_t b, int64_t k)
{
    assert(kind != FD_ALLDIFF && a < s->nvars && (!is_binary(kind) || b < s->nvars));
    if (!is_binary(kind))
        b = 0;
    int rv = add_con(s, kind, a, b, k, NULL, NULL, 0);
    if (rv != 0 || s->failed)
        return rv;
    int r = 0;
    switch (kind) {
    case FD_VAL_EQ:
        r = dom_bounds(s, a, k, k);
        break;
    case FD_VAL_LEQ:
        r = dom_bounds(s, a, INT64_MIN, k);
        break;
    case FD_VAL_LT:
        r = dom_bounds(s, a, INT64_MIN, (i128)k - 1);
        break;
    case FD_VAL_GEQ:
        r = dom_bounds(s, a, k, INT64_MAX);
        break;
    case FD_VAL_GT:
        r = dom_bounds(s, a, (i128)k + 1, INT64_MAX);
        break;
    default:
        if (a == b) {
            if (same_var_holds(kind, k))
                return 0;
            if (touch(s, a) != 0)
                return AVM_ENOMEM;
            set_empty(s, &s->vars[a]);
            changed(s, a, 0, 0);
            return 0;
        }
        s->inq[s->ncons - 1] = 1;
        s->queue[(s->qhead + s->qn) % s->qcap] = s->ncons - 1;
        s->qn++;
        break;
    }
    if (r < 0) {
        queue_clear(s);
        return AVM_ENOMEM;
    }
    return propagate(s);
}

int fd_post_alldiff(fd_store *s, const uint32_t *vars, const int64_t *offs, size_t n)
{
    if (n > FD_MAX_ALLDIFF)
        return AVM_ENOMEM;
    for (size_t i = 0; i < n; i++)
        assert(vars[i] < s->nvars);
    int rv = add_con(s, FD_ALLDIFF, 0, 0, 0, vars, offs, n);
    if (rv != 0 || s->failed)
        return rv;
    s->inq[s->ncons - 1] = 1;
    s->queue[(s->qhead + s->qn) % s->qcap] = s->ncons - 1;
    s->qn++;
    return propagate(s);
}

int fd_label(fd_store *s, uint32_t var, int64_t *value)
{
    assert(var < s->nvars && !var_empty(&s->vars[var]));
    int64_t x = s->vars[var].min;
    *value = x;
    if (dom_bounds(s, var, x, x) < 0)
        return AVM_ENOMEM;
    if (s->nlev > 0 && !s->lev[s->nlev - 1].has_choice) {
        fd_level *l = &s->lev[s->nlev - 1];
        l->has_choice = true;
        l->cvar = var;
        l->cval = x;
    }
    if (s->failed) {
        queue_clear(s);
        return 0;
    }
    return propagate(s);
}

/* Queries --------------------------------------------------------------------------- */

bool fd_failed(const fd_store *s)
{
    return s->failed;
}

bool fd_oom(const fd_store *s)
{
    return s->oom;
}

uint32_t fd_nvars(const fd_store *s)
{
    return s->nvars;
}

uint32_t fd_ncons(const fd_store *s)
{
    return s->ncons;
}

uint32_t fd_levels(const fd_store *s)
{
    return s->nlev;
}

bool fd_empty(const fd_store *s, uint32_t var)
{
    return var_empty(&s->vars[var]);
}

int64_t fd_min(const fd_store *s, uint32_t var)
{
    return s->vars[var].min;
}

int64_t fd_max(const fd_store *s, uint32_t var)
{
    return s->vars[var].max;
}

bool fd_contains(const fd_store *s, uint32_t var, int64_t v)
{
    return var_has(s, &s->vars[var], v);
}

int fd_runs(const fd_store *s, uint32_t var,
            int (*fn)(void *data, int64_t lo, int64_t hi), void *data)
{
    const fd_var *v = &s->vars[var];
    if (var_empty(v))
        return 0;
    if (v->nw == 0) {
        for (uint32_t i = 0; i < v->niv; i++) {
            int rv = fn(data, v->iv[i].lo, v->iv[i].hi);
            if (rv != 0)
                return rv;
        }
        return 0;
    }
    const uint64_t *w = var_words(s, v);
    int64_t i = v->min - v->base, last = v->max - v->base;
    while (i >= 0 && i <= last) {
        int64_t e = bits_next_clear(w, v->nw, i);
        int rv = fn(data, v->base + i, v->base + (e - 1));
        if (rv != 0)
            return rv;
        i = bits_next(w, v->nw, e);
    }
    return 0;
}

static int count_run(void *data, int64_t lo, int64_t hi)
{
    uint64_t *n = data;
    uint64_t len = (uint64_t)hi - (uint64_t)lo + 1; /* 0 for the full range */
    if (len == 0 || *n > UINT64_MAX - len)
        *n = UINT64_MAX;
    else
        *n += len;
    return 0;
}

uint64_t fd_size(const fd_store *s, uint32_t var)
{
    uint64_t n = 0;
    fd_runs(s, var, count_run, &n);
    return n;
}

/* Levels ----------------------------------------------------------------------------- */

int fd_level_push(fd_store *s)
{
    if (grow32((void **)&s->lev, &s->levcap, sizeof(fd_level), (size_t)s->nlev + 1) != 0)
        return AVM_ENOMEM;
    fd_level *l = &s->lev[s->nlev++];
    memset(l, 0, sizeof(*l));
    l->nvars = s->nvars;
    l->ncons = s->ncons;
    l->nitems = s->nitems;
    l->nwords = s->nwords;
    l->ntrail = s->ntrail;
    l->ntdata = s->ntdata;
    l->nctrail = s->nctrail;
    l->failed = s->failed;
    return 0;
}

void fd_level_commit(fd_store *s)
{
    assert(s->nlev > 0);
    s->nlev--;
    if (s->nlev > 0)
        return;
    /* Outside levels there is nothing to undo. */
    for (size_t i = 0; i < s->ntrail; i++)
        s->vars[s->trail[i].var].last_trail = 0;
    for (size_t i = 0; i < s->nctrail; i++)
        s->cons[s->ctrail[i].con].last_ctrail = 0;
    s->ntrail = s->ntdata = s->nctrail = 0;
}

void fd_level_abort(fd_store *s)
{
    assert(s->nlev > 0 && s->qn == 0);
    fd_level l = s->lev[--s->nlev];
    while (s->ntrail > l.ntrail)
        untrail_one(s, &s->trail[--s->ntrail]);
    s->ntdata = l.ntdata;
    while (s->nctrail > l.nctrail) {
        const fd_ctrail *e = &s->ctrail[--s->nctrail];
        s->cons[e->con].nfixed = e->nfixed;
        s->cons[e->con].last_ctrail = e->prev;
    }
    while (s->ncons > l.ncons)
        unsubscribe_con(s, --s->ncons);
    s->nitems = l.nitems;
    while (s->nvars > l.nvars)
        free_var(&s->vars[--s->nvars]);
    s->nwords = l.nwords;
    s->failed = l.failed;
    /* Decision 5: the value the level chose is not a solution of the parent. */
    if (!l.has_choice || l.cvar >= s->nvars)
        return;
    int rv = dom_remove(s, l.cvar, l.cval) < 0 ? AVM_ENOMEM : 0;
    if (rv == 0 && !s->failed)
        rv = propagate(s);
    queue_clear(s);
    if (rv != 0) {
        s->failed = true;
        s->oom = true;
    }
}

/* Serialization ---------------------------------------------------------------------
 *
 * [1, failed, vars, cons, levels, trail, ctrail] where
 *   var    = [base, bin words] (bitset) or [[ints lo hi lo hi ...]] (intervals)
 *   con    = [kind, a, b, k] (binary), [kind, a, k] (Val*),
 *            [kind, [vars], [offsets], nfixed] (AllDiff, items in their order)
 *   level  = [nvars, ncons, ntrail, nctrail, failed, nil | [var, value]]
 *   trail  = [var, bin words] or [var, [ints]], the form of the variable's domain
 *   ctrail = [con, nfixed]
 * Bounds, subscriptions, arena offsets, last_trail and the AllDiff sort hints are
 * recomputed. */

static void put_words(avm_buf *b, const uint64_t *w, uint32_t nw)
{
    uint8_t tmp[FD_BITS_MAX_WORDS * 8];
    for (uint32_t k = 0; k < nw; k++)
        for (int j = 0; j < 8; j++)
            tmp[k * 8 + (uint32_t)j] = (uint8_t)(w[k] >> (8 * j));
    avm_mp_put_bin(b, tmp, (size_t)nw * 8);
}

static void put_ivs(avm_buf *b, const fd_iv *iv, uint32_t n)
{
    avm_mp_put_array(b, n * 2);
    for (uint32_t i = 0; i < n; i++) {
        avm_mp_put_int(b, iv[i].lo);
        avm_mp_put_int(b, iv[i].hi);
    }
}

int fd_encode(const fd_store *s, avm_buf *b)
{
    avm_mp_put_array(b, 7);
    avm_mp_put_uint(b, FD_FORMAT);
    avm_mp_put_bool(b, s->failed);
    avm_mp_put_array(b, s->nvars);
    for (uint32_t i = 0; i < s->nvars; i++) {
        const fd_var *v = &s->vars[i];
        if (v->nw > 0) {
            avm_mp_put_array(b, 2);
            avm_mp_put_int(b, v->base);
            put_words(b, var_words(s, v), v->nw);
        } else {
            avm_mp_put_array(b, 1);
            put_ivs(b, v->iv, v->niv);
        }
    }
    avm_mp_put_array(b, s->ncons);
    for (uint32_t i = 0; i < s->ncons; i++) {
        const fd_con *c = &s->cons[i];
        if (c->kind == FD_ALLDIFF) {
            avm_mp_put_array(b, 4);
            avm_mp_put_uint(b, c->kind);
            avm_mp_put_array(b, c->n);
            for (uint32_t j = 0; j < c->n; j++)
                avm_mp_put_uint(b, s->items[c->item + j].var);
            avm_mp_put_array(b, c->n);
            for (uint32_t j = 0; j < c->n; j++)
                avm_mp_put_int(b, s->items[c->item + j].off);
            avm_mp_put_uint(b, c->nfixed);
        } else if (is_binary(c->kind)) {
            avm_mp_put_array(b, 4);
            avm_mp_put_uint(b, c->kind);
            avm_mp_put_uint(b, c->a);
            avm_mp_put_uint(b, c->b);
            avm_mp_put_int(b, c->k);
        } else {
            avm_mp_put_array(b, 3);
            avm_mp_put_uint(b, c->kind);
            avm_mp_put_uint(b, c->a);
            avm_mp_put_int(b, c->k);
        }
    }
    avm_mp_put_array(b, s->nlev);
    for (uint32_t i = 0; i < s->nlev; i++) {
        const fd_level *l = &s->lev[i];
        avm_mp_put_array(b, 6);
        avm_mp_put_uint(b, l->nvars);
        avm_mp_put_uint(b, l->ncons);
        avm_mp_put_uint(b, l->ntrail);
        avm_mp_put_uint(b, l->nctrail);
        avm_mp_put_bool(b, l->failed);
        if (l->has_choice) {
            avm_mp_put_array(b, 2);
            avm_mp_put_uint(b, l->cvar);
            avm_mp_put_int(b, l->cval);
        } else {
            avm_mp_put_nil(b);
        }
    }
    avm_mp_put_array(b, (uint32_t)s->ntrail);
    for (size_t i = 0; i < s->ntrail; i++) {
        const fd_trail *e = &s->trail[i];
        avm_mp_put_array(b, 2);
        avm_mp_put_uint(b, e->var);
        if (s->vars[e->var].nw > 0)
            put_words(b, s->tdata + e->off, e->n);
        else
            put_ivs(b, (const fd_iv *)(s->tdata + e->off), e->n);
    }
    avm_mp_put_array(b, (uint32_t)s->nctrail);
    for (size_t i = 0; i < s->nctrail; i++) {
        avm_mp_put_array(b, 2);
        avm_mp_put_uint(b, s->ctrail[i].con);
        avm_mp_put_uint(b, s->ctrail[i].nfixed);
    }
    return b->err;
}

typedef struct fd_dec {
    avm_mp_reader *r;
    char *err;
    size_t errlen;
} fd_dec;

static int dbad(fd_dec *d, int rv, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int dbad(fd_dec *d, int rv, const char *fmt, ...)
{
    if (d->errlen > 0) {
        int n = snprintf(d->err, d->errlen, "finite-domain store: ");
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < d->errlen)
            vsnprintf(d->err + n, d->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return rv ? rv : AVM_EMALFORMED;
}

static int get_arr(fd_dec *d, uint32_t *n, uint32_t want, const char *what)
{
    int rv = avm_mp_get_array(d->r, n);
    if (rv != 0)
        return dbad(d, rv, "%s", what);
    if (want != UINT32_MAX && *n != want)
        return dbad(d, AVM_EMALFORMED, "%s: %u fields", what, *n);
    return 0;
}

static int get_u32(fd_dec *d, uint32_t *v, uint64_t limit, const char *what)
{
    uint64_t u;
    int rv = avm_mp_get_uint(d->r, &u);
    if (rv != 0)
        return dbad(d, rv, "%s", what);
    if (u > limit)
        return dbad(d, AVM_EMALFORMED, "%s %llu out of range", what,
                    (unsigned long long)u);
    *v = (uint32_t)u;
    return 0;
}

static int get_i64(fd_dec *d, int64_t *v, const char *what)
{
    int rv = avm_mp_get_int(d->r, v);
    return rv ? dbad(d, rv, "%s", what) : 0;
}

/* Reads words of a bitset of nw words (nw == 0: any count up to the limit). */
static int get_words(fd_dec *d, uint64_t *w, uint32_t *nw, const char *what)
{
    const uint8_t *p;
    uint32_t n;
    int rv = avm_mp_get_bin(d->r, &p, &n);
    if (rv != 0)
        return dbad(d, rv, "%s", what);
    if (n == 0 || n % 8 != 0 || n / 8 > FD_BITS_MAX_WORDS || (*nw != 0 && n / 8 != *nw))
        return dbad(d, AVM_EMALFORMED, "%s: %u bytes of bitset", what, n);
    *nw = n / 8;
    for (uint32_t k = 0; k < *nw; k++) {
        uint64_t x = 0;
        for (int j = 0; j < 8; j++)
            x |= (uint64_t)p[k * 8 + (uint32_t)j] << (8 * j);
        w[k] = x;
    }
    return 0;
}

/* Reads a normalized interval list into s->tmp; its length in *n. */
static int get_ivs(fd_dec *d, fd_store *s, uint32_t *n, const char *what)
{
    uint32_t m;
    int rv = get_arr(d, &m, UINT32_MAX, what);
    if (rv != 0)
        return rv;
    if (m % 2 != 0)
        return dbad(d, AVM_EMALFORMED, "%s: odd interval bounds", what);
    if (grow((void **)&s->tmp, &s->tmpcap, sizeof(fd_iv), m / 2) != 0)
        return dbad(d, AVM_ENOMEM, "%s", what);
    for (uint32_t i = 0; i < m / 2; i++) {
        if ((rv = get_i64(d, &s->tmp[i].lo, what)) != 0 ||
            (rv = get_i64(d, &s->tmp[i].hi, what)) != 0)
            return rv;
        if (s->tmp[i].lo > s->tmp[i].hi ||
            (i > 0 && (i128)s->tmp[i - 1].hi + 1 >= s->tmp[i].lo))
            return dbad(d, AVM_EMALFORMED, "%s: intervals not sorted and disjoint", what);
    }
    *n = m / 2;
    return 0;
}

static void set_bounds_from_words(fd_var *v, const uint64_t *w)
{
    int64_t a = bits_next(w, v->nw, 0);
    if (a < 0) {
        v->min = 1;
        v->max = 0;
    } else {
        v->min = v->base + a;
        v->max = v->base + bits_prev(w, v->nw, (int64_t)v->nw * 64 - 1);
    }
}

static int dec_var(fd_dec *d, fd_store *s)
{
    uint32_t n;
    int rv = get_arr(d, &n, UINT32_MAX, "variable");
    if (rv != 0)
        return rv;
    if (n == 2) {
        int64_t base;
        uint64_t w[FD_BITS_MAX_WORDS];
        uint32_t nw = 0;
        if ((rv = get_i64(d, &base, "variable base")) != 0 ||
            (rv = get_words(d, w, &nw, "variable")) != 0)
            return rv;
        if ((i128)base + (i128)nw * 64 - 1 > INT64_MAX)
            return dbad(d, AVM_EMALFORMED, "variable %u: bitset beyond int64", s->nvars);
        fd_var *v = push_var(s);
        if (v == NULL || var_set_bits(s, v, base, nw) != 0)
            return dbad(d, AVM_ENOMEM, "variable");
        memcpy(var_words(s, v), w, (size_t)nw * sizeof(uint64_t));
        set_bounds_from_words(v, w);
        s->nvars++;
        return 0;
    }
    if (n != 1)
        return dbad(d, AVM_EMALFORMED, "variable: %u fields", n);
    uint32_t niv;
    if ((rv = get_ivs(d, s, &niv, "variable")) != 0)
        return rv;
    /* An interval domain keeps its form, even when small. */
    fd_var *v = push_var(s);
    if (v == NULL)
        return dbad(d, AVM_ENOMEM, "variable");
    if (niv > 0) {
        v->iv = malloc((size_t)niv * sizeof(fd_iv));
        if (v->iv == NULL)
            return dbad(d, AVM_ENOMEM, "variable");
        memcpy(v->iv, s->tmp, (size_t)niv * sizeof(fd_iv));
        v->niv = v->ivcap = niv;
        v->min = v->iv[0].lo;
        v->max = v->iv[niv - 1].hi;
    }
    s->nvars++;
    return 0;
}

static int dec_con(fd_dec *d, fd_store *s)
{
    uint32_t n, kind;
    int rv = get_arr(d, &n, UINT32_MAX, "constraint");
    if (rv == 0)
        rv = get_u32(d, &kind, FD_KIND_COUNT - 1, "constraint kind");
    if (rv != 0)
        return rv;
    if (kind == FD_ALLDIFF) {
        uint32_t m, m2, nfixed = 0;
        if (n != 4)
            return dbad(d, AVM_EMALFORMED, "AllDiff: %u fields", n);
        if ((rv = get_arr(d, &m, UINT32_MAX, "AllDiff variables")) != 0)
            return rv;
        if (m > FD_MAX_ALLDIFF)
            return dbad(d, AVM_EMALFORMED, "AllDiff of %u variables", m);
        uint32_t *vars = malloc(((size_t)m + 1) * sizeof(uint32_t));
        int64_t *offs = malloc(((size_t)m + 1) * sizeof(int64_t));
        if (vars == NULL || offs == NULL) {
            rv = dbad(d, AVM_ENOMEM, "AllDiff");
            goto out;
        }
        for (uint32_t i = 0; i < m && rv == 0; i++)
            rv = get_u32(d, &vars[i], s->nvars - 1u, "AllDiff variable");
        if (rv == 0 && s->nvars == 0 && m > 0)
            rv = dbad(d, AVM_EMALFORMED, "AllDiff variable without variables");
        if (rv == 0)
            rv = get_arr(d, &m2, m, "AllDiff offsets");
        for (uint32_t i = 0; i < m && rv == 0; i++)
            rv = get_i64(d, &offs[i], "AllDiff offset");
        if (rv == 0)
            rv = get_u32(d, &nfixed, m, "AllDiff fixed items");
        if (rv == 0 && add_con(s, FD_ALLDIFF, 0, 0, 0, vars, offs, m) != 0)
            rv = dbad(d, AVM_ENOMEM, "AllDiff");
        if (rv == 0)
            s->cons[s->ncons - 1].nfixed = nfixed;
    out:
        free(vars);
        free(offs);
        return rv;
    }
    uint32_t a, b = 0;
    int64_t k;
    if (s->nvars == 0)
        return dbad(d, AVM_EMALFORMED, "constraint without variables");
    if (n != (is_binary((int)kind) ? 4u : 3u))
        return dbad(d, AVM_EMALFORMED, "%s: %u fields", kind_names[kind], n);
    if ((rv = get_u32(d, &a, s->nvars - 1u, "constraint variable")) != 0 ||
        (is_binary((int)kind) &&
         (rv = get_u32(d, &b, s->nvars - 1u, "constraint variable")) != 0) ||
        (rv = get_i64(d, &k, "constraint value")) != 0)
        return rv;
    if (add_con(s, (fd_kind)kind, a, b, k, NULL, NULL, 0) != 0)
        return dbad(d, AVM_ENOMEM, "constraint");
    return 0;
}

/* The largest variable a constraint mentions, or -1. */
static long con_maxvar(const fd_store *s, const fd_con *c)
{
    long m = -1;
    if (c->kind == FD_ALLDIFF) {
        for (uint32_t i = 0; i < c->n; i++)
            if ((long)s->items[c->item + i].var > m)
                m = (long)s->items[c->item + i].var;
        return m;
    }
    m = (long)c->a;
    if (is_binary(c->kind) && (long)c->b > m)
        m = (long)c->b;
    return m;
}

/* Reads the level marks. The arena sizes at each mark come from prefix sums over
 * the variables and constraints, and every constraint before a mark must name only
 * variables before it. */
static int dec_levels(fd_dec *d, fd_store *s)
{
    uint32_t n;
    int rv = get_arr(d, &n, UINT32_MAX, "levels");
    if (rv != 0)
        return rv;
    size_t *words = malloc(((size_t)s->nvars + 1) * sizeof(size_t));
    size_t *items = malloc(((size_t)s->ncons + 1) * sizeof(size_t));
    long *maxvar = malloc(((size_t)s->ncons + 1) * sizeof(long));
    if (words == NULL || items == NULL || maxvar == NULL) {
        rv = dbad(d, AVM_ENOMEM, "levels");
        goto out;
    }
    words[0] = items[0] = 0;
    maxvar[0] = -1;
    for (uint32_t v = 0; v < s->nvars; v++)
        words[v + 1] = words[v] + s->vars[v].nw;
    for (uint32_t c = 0; c < s->ncons; c++) {
        long m = con_maxvar(s, &s->cons[c]);
        items[c + 1] = items[c] + (s->cons[c].kind == FD_ALLDIFF ? s->cons[c].n : 0);
        maxvar[c + 1] = m > maxvar[c] ? m : maxvar[c];
    }
    for (uint32_t i = 0; i < n && rv == 0; i++) {
        uint32_t f, nv, nc, nt, nct;
        bool failed;
        if ((rv = get_arr(d, &f, 6, "level")) != 0 ||
            (rv = get_u32(d, &nv, s->nvars, "level variables")) != 0 ||
            (rv = get_u32(d, &nc, s->ncons, "level constraints")) != 0 ||
            (rv = get_u32(d, &nt, UINT32_MAX, "level trail")) != 0 ||
            (rv = get_u32(d, &nct, UINT32_MAX, "level constraint trail")) != 0)
            break;
        if ((rv = avm_mp_get_bool(d->r, &failed)) != 0) {
            rv = dbad(d, rv, "level failed flag");
            break;
        }
        if (grow32((void **)&s->lev, &s->levcap, sizeof(fd_level), (size_t)s->nlev + 1) !=
            0) {
            rv = dbad(d, AVM_ENOMEM, "levels");
            break;
        }
        fd_level *l = &s->lev[s->nlev];
        memset(l, 0, sizeof(*l));
        if (i > 0 && (nv < l[-1].nvars || nc < l[-1].ncons || nt < l[-1].ntrail ||
                      nct < l[-1].nctrail)) {
            rv = dbad(d, AVM_EMALFORMED, "level %u starts before its parent", i);
            break;
        }
        if (i == 0 && (nt != 0 || nct != 0)) {
            rv = dbad(d, AVM_EMALFORMED, "trail before the first level");
            break;
        }
        if (maxvar[nc] >= (long)nv) {
            rv = dbad(d, AVM_EMALFORMED,
                      "a constraint before level %u names a later variable", i);
            break;
        }
        l->nvars = nv;
        l->ncons = nc;
        l->ntrail = nt;
        l->nctrail = nct;
        l->failed = failed;
        l->nwords = words[nv];
        l->nitems = items[nc];
        if (avm_mp_peek_nil(d->r)) {
            avm_mp_get_nil(d->r);
        } else {
            if ((rv = get_arr(d, &f, 2, "choice point")) != 0 ||
                (rv = get_u32(d, &l->cvar, UINT32_MAX, "choice variable")) != 0 ||
                (rv = get_i64(d, &l->cval, "choice value")) != 0)
                break;
            l->has_choice = true;
        }
        s->nlev++;
    }
out:
    free(words);
    free(items);
    free(maxvar);
    return rv;
}

/* Reads the AllDiff trail: entries of each level's segment name an AllDiff that
 * existed before the next level began. */
static int dec_ctrail(fd_dec *d, fd_store *s)
{
    uint32_t n;
    int rv = get_arr(d, &n, UINT32_MAX, "constraint trail");
    if (rv != 0)
        return rv;
    if ((s->nlev == 0 && n > 0) || (s->nlev > 0 && n < s->lev[s->nlev - 1].nctrail))
        return dbad(d, AVM_EMALFORMED, "constraint trail of %u entries", n);
    if (grow((void **)&s->ctrail, &s->ctrailcap, sizeof(fd_ctrail), n) != 0)
        return dbad(d, AVM_ENOMEM, "constraint trail");
    uint32_t lv = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t f, ci, nfixed;
        if ((rv = get_arr(d, &f, 2, "constraint trail entry")) != 0 ||
            (rv = get_u32(d, &ci, UINT32_MAX, "constraint trail entry")) != 0 ||
            (rv = get_u32(d, &nfixed, UINT32_MAX, "constraint trail entry")) != 0)
            return rv;
        while (lv + 1 < s->nlev && s->lev[lv + 1].nctrail <= i)
            lv++;
        uint32_t limit = lv + 1 < s->nlev ? s->lev[lv + 1].ncons : s->ncons;
        if (ci >= limit || s->cons[ci].kind != FD_ALLDIFF || nfixed > s->cons[ci].n)
            return dbad(d, AVM_EMALFORMED, "constraint trail entry %u", i);
        fd_con *c = &s->cons[ci];
        s->ctrail[i] = (fd_ctrail){ci, nfixed, c->last_ctrail};
        c->last_ctrail = i + 1;
        s->nctrail = i + 1;
    }
    return 0;
}

static int dec_trail(fd_dec *d, fd_store *s)
{
    uint32_t last_mark = s->nlev > 0 ? s->lev[s->nlev - 1].ntrail : 0;
    uint32_t n;
    int rv = get_arr(d, &n, UINT32_MAX, "trail");
    if (rv != 0)
        return rv;
    if (n < last_mark || (n > 0 && s->nlev == 0))
        return dbad(d, AVM_EMALFORMED, "trail of %u entries", n);
    uint32_t lv = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t f, vi;
        if ((rv = get_arr(d, &f, 2, "trail entry")) != 0 ||
            (rv = get_u32(d, &vi, UINT32_MAX, "trail variable")) != 0)
            return rv;
        /* The level whose segment holds entry i: it saves a variable that existed
         * before the next level began (a child merged into its parent leaves
         * entries for the parent's own variables), so that aborting the levels
         * above never frees a variable this entry restores. */
        while (lv + 1 < s->nlev && s->lev[lv + 1].ntrail <= i)
            lv++;
        uint32_t limit = lv + 1 < s->nlev ? s->lev[lv + 1].nvars : s->nvars;
        if (vi >= limit)
            return dbad(d, AVM_EMALFORMED, "trail entry %u names variable %u", i, vi);
        fd_var *v = &s->vars[vi];
        uint32_t cnt = v->nw;
        size_t words;
        if (v->nw > 0) {
            words = v->nw;
            if (grow((void **)&s->tdata, &s->tdcap, sizeof(uint64_t),
                     s->ntdata + words) != 0)
                return dbad(d, AVM_ENOMEM, "trail");
            if ((rv = get_words(d, s->tdata + s->ntdata, &cnt, "trail entry")) != 0)
                return rv;
        } else {
            if ((rv = get_ivs(d, s, &cnt, "trail entry")) != 0)
                return rv;
            words = (size_t)cnt * 2;
            if (grow((void **)&s->tdata, &s->tdcap, sizeof(uint64_t),
                     s->ntdata + words) != 0 ||
                grow32((void **)&v->iv, &v->ivcap, sizeof(fd_iv), cnt) != 0)
                return dbad(d, AVM_ENOMEM, "trail");
            if (cnt > 0)
                memcpy(s->tdata + s->ntdata, s->tmp, (size_t)cnt * sizeof(fd_iv));
        }
        if (grow((void **)&s->trail, &s->trailcap, sizeof(fd_trail), s->ntrail + 1) != 0)
            return dbad(d, AVM_ENOMEM, "trail");
        fd_trail *e = &s->trail[s->ntrail];
        e->var = vi;
        e->prev = v->last_trail;
        e->n = cnt;
        e->off = s->ntdata;
        if (v->nw > 0) {
            fd_var tmp = *v;
            set_bounds_from_words(&tmp, s->tdata + s->ntdata);
            e->min = tmp.min;
            e->max = tmp.max;
        } else {
            const fd_iv *iv = (const fd_iv *)(s->tdata + s->ntdata);
            e->min = cnt > 0 ? iv[0].lo : 1;
            e->max = cnt > 0 ? iv[cnt - 1].hi : 0;
        }
        s->ntdata += words;
        s->ntrail++;
        v->last_trail = (uint32_t)s->ntrail;
    }
    for (uint32_t i = 0; i < s->nlev; i++) {
        s->lev[i].ntdata =
            s->lev[i].ntrail < s->ntrail ? s->trail[s->lev[i].ntrail].off : s->ntdata;
    }
    return 0;
}

int fd_decode(avm_mp_reader *r, fd_store **out, char *err, size_t errlen)
{
    fd_dec d = {r, err, errlen};
    uint32_t n = 0, ver = 0, nv = 0, nc = 0;
    bool failed;
    *out = NULL;
    fd_store *s = fd_new(0);
    if (s == NULL)
        return dbad(&d, AVM_ENOMEM, "out of memory");
    int rv = get_arr(&d, &n, 7, "store");
    if (rv == 0)
        rv = get_u32(&d, &ver, UINT32_MAX, "format");
    if (rv == 0 && ver != FD_FORMAT)
        rv = dbad(&d, AVM_EMALFORMED, "format %u", ver);
    if (rv == 0 && (rv = avm_mp_get_bool(r, &failed)) != 0)
        rv = dbad(&d, rv, "failed flag");
    if (rv == 0)
        rv = get_arr(&d, &nv, UINT32_MAX, "variables");
    if (rv == 0 && nv > FD_MAX_VARS)
        rv = dbad(&d, AVM_EMALFORMED, "%u variables", nv);
    for (uint32_t i = 0; i < nv && rv == 0; i++)
        rv = dec_var(&d, s);
    if (rv == 0)
        rv = get_arr(&d, &nc, UINT32_MAX, "constraints");
    if (rv == 0 && nc > FD_MAX_CONS)
        rv = dbad(&d, AVM_EMALFORMED, "%u constraints", nc);
    for (uint32_t i = 0; i < nc && rv == 0; i++)
        rv = dec_con(&d, s);
    if (rv == 0)
        rv = dec_levels(&d, s);
    if (rv == 0)
        rv = dec_trail(&d, s);
    if (rv == 0)
        rv = dec_ctrail(&d, s);
    if (rv == 0) {
        s->failed = failed;
        bool empty = false;
        for (uint32_t i = 0; i < s->nvars; i++)
            empty = empty || var_empty(&s->vars[i]);
        if (empty && !failed)
            rv = dbad(&d, AVM_EMALFORMED, "an empty domain in a consistent store");
    }
    if (rv != 0) {
        fd_free(s);
        return rv;
    }
    *out = s;
    return 0;
}
