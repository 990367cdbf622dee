/* In-memory store: an open-addressing hash table of object records keyed by id, and
 * a second one for the pure-function registry. */
#include "memstore.h"

#include <stdlib.h>
#include <string.h>

#include "avm_err.h"
#include "module.h"

typedef struct rec {
    avm_objrec r;
    uint64_t order; /* creation order, for ids() */
} rec;

typedef struct memstore {
    avm_store base;
    rec **slots; /* NULL or TOMB or a record */
    size_t cap, count, used;
    avm_purefn **pslots;
    size_t pcap, pcount;
    uint64_t seq, order;
    /* The last record found, and the id value it was found by (held, so that its
     * address cannot be reused by another string while it is cached): programs
     * look the same object up several times in a row. */
    avm_val mru_key;
    rec *mru_rec;
} memstore;

static rec tomb_rec;
#define TOMB (&tomb_rec)

static void meta_release(avm_meta *m)
{
    avm_val_release(m->machine);
    avm_val_release(m->creating);
    avm_val_release(m->current);
}

static void meta_copy(avm_meta *dst, const avm_meta *src)
{
    *dst = *src;
    avm_val_retain(dst->machine);
    avm_val_retain(dst->creating);
    avm_val_retain(dst->current);
}

static void rec_free(rec *r)
{
    avm_val_release(r->r.oid);
    avm_val_release(r->r.beh.name);
    if (r->r.beh.mod)
        avm_module_release(r->r.beh.mod);
    meta_release(&r->r.meta);
    avm_val_release(r->r.state);
    free(r);
}

/* Object ids are strings whose hash is computed once; and the id a program holds is
 * usually the very string the record holds, so pointer equality answers first. */
static inline uint32_t key_hash(avm_val oid)
{
    return AVM_KIND_HAS_STR(oid.kind) ? avm_str_hash(oid.u.s) : avm_val_hash(oid);
}

static inline bool key_eq(avm_val a, avm_val b)
{
    if (a.kind != b.kind)
        return false;
    if (AVM_KIND_HAS_STR(a.kind) && a.u.s == b.u.s)
        return true;
    return avm_val_eq(a, b);
}

static size_t find_slot(const memstore *m, avm_val oid, bool *found)
{
    size_t mask = m->cap - 1;
    size_t i = key_hash(oid) & mask;
    size_t first_tomb = SIZE_MAX;
    for (;;) {
        rec *r = m->slots[i];
        if (r == NULL) {
            *found = false;
            return first_tomb != SIZE_MAX ? first_tomb : i;
        }
        if (r == TOMB) {
            if (first_tomb == SIZE_MAX)
                first_tomb = i;
        } else if (key_eq(r->r.oid, oid)) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
}

static int grow(memstore *m)
{
    size_t ncap = m->cap * 2;
    while (m->count * 2 >= ncap)
        ncap *= 2;
    rec **old = m->slots;
    size_t ocap = m->cap;
    m->slots = calloc(ncap, sizeof(rec *));
    if (m->slots == NULL) {
        m->slots = old;
        return AVM_ENOMEM;
    }
    m->cap = ncap;
    m->used = m->count;
    for (size_t i = 0; i < ocap; i++) {
        if (old[i] != NULL && old[i] != TOMB) {
            bool found;
            m->slots[find_slot(m, old[i]->r.oid, &found)] = old[i];
        }
    }
    free(old);
    return 0;
}

static rec *lookup(memstore *m, avm_val oid)
{
    if (m->mru_rec != NULL && oid.u.s == m->mru_key.u.s && oid.kind == m->mru_key.kind)
        return m->mru_rec;
    bool found;
    size_t i = find_slot(m, oid, &found);
    if (!found)
        return NULL;
    if (AVM_KIND_HAS_STR(oid.kind)) {
        avm_val_retain(oid);
        avm_val_release(m->mru_key);
        m->mru_key = oid;
        m->mru_rec = m->slots[i];
    }
    return m->slots[i];
}

static const avm_objrec *ms_get(avm_store *s, void *snap, avm_val oid)
{
    rec *r = lookup((memstore *)s, oid);
    return r ? &r->r : NULL;
}

static bool in_creates(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ncreates; i++)
        if (avm_val_eq(ws->creates[i].oid, oid))
            return true;
    return false;
}

static bool is_destroyed(const avm_writeset *ws, avm_val oid)
{
    for (size_t i = 0; i < ws->ndestroys; i++)
        if (avm_val_eq(ws->destroys[i], oid))
            return true;
    return false;
}

static void remove_rec(memstore *m, avm_val oid)
{
    bool found;
    size_t i = find_slot(m, oid, &found);
    if (!found)
        return;
    if (m->slots[i] == m->mru_rec)
        m->mru_rec = NULL;
    rec_free(m->slots[i]);
    m->slots[i] = TOMB;
    m->count--;
}

static void set_state(rec *r, avm_val st)
{
    avm_val_retain(st);
    avm_val_release(r->r.state);
    r->r.state = st;
    r->r.version++;
}

/* The embedded store has no composed commits: a write set marked with a bundle
 * (ws->bundle) is the only member's segment and simply commits as any other. */
static int ms_apply(avm_store *s, const avm_writeset *ws, bool *committed)
{
    memstore *m = (memstore *)s;
    *committed = false;
    for (size_t i = 0; i < ws->nreads; i++) {
        const avm_read *rd = &ws->reads[i];
        rec *r = lookup(m, rd->oid);
        if (r == NULL) {
            if (in_creates(ws, rd->oid))
                continue;
            return 0;
        }
        if (rd->version != AVM_VERSION_EXISTS && r->r.version != rd->version)
            return 0;
    }
    /* Reserve room first so that nothing below can fail halfway. */
    while ((m->used + ws->ncreates) * 4 >= m->cap * 3)
        if (grow(m) != 0)
            return AVM_ENOMEM;
    rec **fresh = NULL;
    if (ws->ncreates > 0) {
        fresh = calloc(ws->ncreates, sizeof(rec *));
        if (fresh == NULL)
            return AVM_ENOMEM;
        for (size_t i = 0; i < ws->ncreates; i++) {
            fresh[i] = calloc(1, sizeof(rec));
            if (fresh[i] == NULL) {
                for (size_t j = 0; j < i; j++)
                    free(fresh[j]);
                free(fresh);
                return AVM_ENOMEM;
            }
        }
    }
    avm_val empty;
    if (avm_list_new(0, &empty) != 0) {
        for (size_t i = 0; i < ws->ncreates; i++)
            free(fresh[i]);
        free(fresh);
        return AVM_ENOMEM;
    }
    for (size_t i = 0; i < ws->ncreates; i++) {
        const avm_create *c = &ws->creates[i];
        remove_rec(m, c->oid); /* createWithMeta overwrites */
        rec *r = fresh[i];
        r->r.oid = c->oid;
        avm_val_retain(c->oid);
        r->r.beh = c->beh;
        avm_val_retain(c->beh.name);
        if (c->beh.mod)
            avm_module_retain(c->beh.mod);
        meta_copy(&r->r.meta, &c->meta);
        r->r.state = empty;
        avm_val_retain(empty);
        r->r.version = 1;
        r->order = ++m->order;
        bool found;
        size_t slot = find_slot(m, c->oid, &found);
        if (m->slots[slot] == NULL)
            m->used++;
        m->slots[slot] = r;
        m->count++;
    }
    free(fresh);
    avm_val_release(empty);
    for (size_t i = 0; i < ws->ntransfers; i++) {
        rec *r = lookup(m, ws->transfers[i].a);
        if (r == NULL)
            continue; /* applyTransfer: nothing when the object is gone */
        avm_val_retain(ws->transfers[i].b);
        avm_val_release(r->r.meta.current);
        r->r.meta.current = ws->transfers[i].b;
        r->r.version++;
    }
    for (size_t i = 0; i < ws->nmoves; i++) {
        rec *r = lookup(m, ws->moves[i].a);
        if (r == NULL)
            continue;
        avm_val_retain(ws->moves[i].b);
        avm_val_release(r->r.meta.machine);
        r->r.meta.machine = ws->moves[i].b;
        r->r.version++;
    }
    if (!ws->spec_order) {
        for (size_t i = 0; i < ws->nstates; i++) {
            rec *r = lookup(m, ws->states[i].a);
            if (r != NULL && !is_destroyed(ws, ws->states[i].a))
                set_state(r, ws->states[i].b);
        }
        for (size_t i = 0; i < ws->ndestroys; i++)
            remove_rec(m, ws->destroys[i]);
    } else {
        /* The literal specification keeps states in a separate map that destroy
         * leaves alone, and writes them after the destroys. Our records hold the
         * state, so a state written to a destroyed object has nowhere to go; the
         * specification's store would keep it, unreachable, under the dead id. */
        for (size_t i = 0; i < ws->ndestroys; i++)
            remove_rec(m, ws->destroys[i]);
        for (size_t i = 0; i < ws->nstates; i++) {
            rec *r = lookup(m, ws->states[i].a);
            if (r != NULL)
                set_state(r, ws->states[i].b);
        }
    }
    *committed = true;
    return 0;
}

static int cmp_order(const void *a, const void *b)
{
    const rec *x = *(rec *const *)a, *y = *(rec *const *)b;
    return x->order < y->order ? -1 : x->order > y->order;
}

static int ms_ids(avm_store *s, avm_val *out)
{
    memstore *m = (memstore *)s;
    rec **all = malloc((m->count + 1) * sizeof(rec *));
    if (all == NULL)
        return AVM_ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i] != NULL && m->slots[i] != TOMB)
            all[n++] = m->slots[i];
    qsort(all, n, sizeof(rec *), cmp_order);
    int rv = avm_list_new(n, out);
    if (rv == 0) {
        for (size_t i = 0; i < n; i++) {
            out->u.l->items[i] = all[i]->r.oid;
            avm_val_retain(all[i]->r.oid);
        }
    }
    free(all);
    return rv;
}

static size_t pfind(const memstore *m, avm_val name, bool *found)
{
    size_t mask = m->pcap - 1;
    size_t i = key_hash(name) & mask;
    while (m->pslots[i] != NULL) {
        if (key_eq(m->pslots[i]->name, name)) {
            *found = true;
            return i;
        }
        i = (i + 1) & mask;
    }
    *found = false;
    return i;
}

static const avm_purefn *ms_pure_get(avm_store *s, avm_val name)
{
    memstore *m = (memstore *)s;
    bool found;
    size_t i = pfind(m, name, &found);
    return found ? m->pslots[i] : NULL;
}

static void purefn_free(avm_purefn *f)
{
    avm_val_release(f->name);
    avm_module_release(f->code);
    avm_val_release(f->by);
    avm_val_release(f->exec);
    avm_val_release(f->machine);
    free(f);
}

static int ms_pure_put(avm_store *s, const avm_purefn *fn)
{
    memstore *m = (memstore *)s;
    if ((m->pcount + 1) * 2 >= m->pcap) {
        size_t ncap = m->pcap * 2;
        avm_purefn **old = m->pslots;
        avm_purefn **ns = calloc(ncap, sizeof(*ns));
        if (ns == NULL)
            return AVM_ENOMEM;
        size_t ocap = m->pcap;
        m->pslots = ns;
        m->pcap = ncap;
        for (size_t i = 0; i < ocap; i++) {
            if (old[i] != NULL) {
                bool found;
                m->pslots[pfind(m, old[i]->name, &found)] = old[i];
            }
        }
        free(old);
    }
    avm_purefn *e = malloc(sizeof(*e));
    if (e == NULL)
        return AVM_ENOMEM;
    *e = *fn;
    avm_val_retain(e->name);
    avm_module_retain(e->code);
    avm_val_retain(e->by);
    avm_val_retain(e->exec);
    avm_val_retain(e->machine);
    bool found;
    size_t i = pfind(m, fn->name, &found);
    if (found)
        purefn_free(m->pslots[i]);
    else
        m->pcount++;
    m->pslots[i] = e;
    return 0;
}

static uint64_t ms_next_seq(avm_store *s)
{
    return ++((memstore *)s)->seq;
}

static const struct avm_store_ops memstore_ops = {
    .get = ms_get,
    .snapshot = NULL,
    .snapshot_release = NULL,
    .apply = ms_apply,
    .ids = ms_ids,
    .pure_get = ms_pure_get,
    .pure_put = ms_pure_put,
    .next_seq = ms_next_seq,
};

avm_store *avm_memstore_new(void)
{
    memstore *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->base.ops = &memstore_ops;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof(rec *));
    m->pcap = 16;
    m->pslots = calloc(m->pcap, sizeof(avm_purefn *));
    if (m->slots == NULL || m->pslots == NULL) {
        free(m->slots);
        free(m->pslots);
        free(m);
        return NULL;
    }
    return &m->base;
}

void avm_memstore_free(avm_store *s)
{
    if (s == NULL)
        return;
    memstore *m = (memstore *)s;
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i] != NULL && m->slots[i] != TOMB)
            rec_free(m->slots[i]);
    for (size_t i = 0; i < m->pcap; i++)
        if (m->pslots[i] != NULL)
            purefn_free(m->pslots[i]);
    avm_val_release(m->mru_key);
    free(m->slots);
    free(m->pslots);
    free(m);
}

size_t avm_memstore_count(avm_store *s)
{
    return ((memstore *)s)->count;
}

bool avm_memstore_touch(avm_store *s, avm_val oid)
{
    rec *r = lookup((memstore *)s, oid);
    if (r == NULL)
        return false;
    r->r.version++;
    return true;
}
