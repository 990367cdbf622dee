/* The phi accrual failure detector. See detector.h. */
#include "detector.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "avm_err.h"

typedef struct peer {
    char *name;
    uint64_t last; /* ms of the last arrival (0: never) */
    uint32_t *iv;  /* ring of intervals, ms */
    uint32_t n, head;
    double sum, sumsq; /* of the intervals in the ring */
    struct peer *next;
} peer;

struct avm_fd {
    avm_fd_config cfg;
    peer *peers;
};

avm_fd *avm_fd_new(const avm_fd_config *cfg)
{
    avm_fd *fd = calloc(1, sizeof(*fd));
    if (fd == NULL)
        return NULL;
    fd->cfg = *cfg;
    if (fd->cfg.phi_threshold <= 0)
        fd->cfg.phi_threshold = 8;
    if (fd->cfg.min_std_ms == 0)
        fd->cfg.min_std_ms = 50;
    if (fd->cfg.max_silence_ms == 0)
        fd->cfg.max_silence_ms = 1000;
    if (fd->cfg.window == 0)
        fd->cfg.window = 100;
    if (fd->cfg.expected_ms == 0)
        fd->cfg.expected_ms = 100;
    return fd;
}

static void peer_free(peer *p)
{
    free(p->name);
    free(p->iv);
    free(p);
}

void avm_fd_free(avm_fd *fd)
{
    if (fd == NULL)
        return;
    for (peer *p = fd->peers, *nx; p != NULL; p = nx) {
        nx = p->next;
        peer_free(p);
    }
    free(fd);
}

static peer *find(const avm_fd *fd, const char *name)
{
    for (peer *p = fd->peers; p != NULL; p = p->next)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

int avm_fd_heard(avm_fd *fd, const char *name, uint64_t now_ms)
{
    peer *p = find(fd, name);
    if (p == NULL) {
        p = calloc(1, sizeof(*p));
        if (p == NULL || (p->name = strdup(name)) == NULL ||
            (p->iv = calloc(fd->cfg.window, sizeof(*p->iv))) == NULL) {
            if (p != NULL)
                peer_free(p);
            return AVM_ENOMEM;
        }
        p->next = fd->peers;
        fd->peers = p;
    }
    if (p->last != 0 && now_ms > p->last) {
        uint64_t d = now_ms - p->last;
        /* A gap longer than the bound is an outage, not a sample of the peer's
         * rhythm: it would teach the detector to wait that long next time. */
        if (d <= fd->cfg.max_silence_ms) {
            uint32_t v = (uint32_t)d;
            if (p->n == fd->cfg.window) {
                uint32_t old = p->iv[p->head];
                p->sum -= old;
                p->sumsq -= (double)old * old;
            } else {
                p->n++;
            }
            p->iv[p->head] = v;
            p->head = (p->head + 1) % fd->cfg.window;
            p->sum += v;
            p->sumsq += (double)v * v;
        }
    }
    if (now_ms > p->last)
        p->last = now_ms;
    return 0;
}

void avm_fd_forget(avm_fd *fd, const char *name)
{
    for (peer **pp = &fd->peers; *pp != NULL; pp = &(*pp)->next) {
        if (strcmp((*pp)->name, name) == 0) {
            peer *p = *pp;
            *pp = p->next;
            peer_free(p);
            return;
        }
    }
}

double avm_fd_phi(const avm_fd *fd, const char *name, uint64_t now_ms)
{
    const peer *p = find(fd, name);
    if (p == NULL || p->last == 0)
        return INFINITY;
    double t = now_ms > p->last ? (double)(now_ms - p->last) : 0;
    double mean = p->n ? p->sum / p->n : fd->cfg.expected_ms;
    double var = p->n ? p->sumsq / p->n - mean * mean : 0;
    double sd = var > 0 ? sqrt(var) : 0;
    if (sd < fd->cfg.min_std_ms)
        sd = fd->cfg.min_std_ms;
    /* P(interval > t) for a normal distribution, through erfc (accurate in the
     * tail, where 1 - cdf would cancel to 0). */
    double tail = 0.5 * erfc((t - mean) / (sd * sqrt(2.0)));
    if (tail <= 0)
        return INFINITY;
    return -log10(tail);
}

bool avm_fd_reachable(const avm_fd *fd, const char *name, uint64_t now_ms)
{
    const peer *p = find(fd, name);
    if (p == NULL || p->last == 0)
        return false;
    if (now_ms > p->last && now_ms - p->last >= fd->cfg.max_silence_ms)
        return false;
    return avm_fd_phi(fd, name, now_ms) < fd->cfg.phi_threshold;
}
