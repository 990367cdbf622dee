/* The failure detector behind isReachableMachine: phi accrual (Hayashibara et al.,
 * "The phi accrual failure detector", 2004) with a hard bound.
 *
 * For every peer it keeps the intervals between the last `window` arrivals of
 * anything from it (heartbeats come every heartbeat period; any frame counts). phi
 * is the suspicion that the peer is gone given the silence since its last arrival:
 * phi = -log10(P(an interval at least this long)), with intervals taken as normally
 * distributed with the window's mean and standard deviation (at least min_std_ms,
 * so that a perfectly regular peer is not suspected on the first late heartbeat). A
 * peer is unreachable when phi exceeds phi_threshold, or in any case once it has been
 * silent for max_silence_ms: that is the bound on how long a crashed or cut-off
 * peer stays reachable. A peer never heard from is unreachable; one heard again is
 * reachable at once.
 *
 * No I/O and no clock: the caller passes monotonic milliseconds. */
#ifndef AVM_FD_H
#define AVM_FD_H

#include <stdbool.h>
#include <stdint.h>

typedef struct avm_fd_config {
    double phi_threshold;    /* 0: 8 (about 1 false suspicion in 10^8 intervals) */
    uint32_t min_std_ms;     /* 0: 50 */
    uint32_t max_silence_ms; /* 0: 1000 */
    uint32_t window;         /* intervals kept per peer (0: 100) */
    uint32_t expected_ms; /* the heartbeat period, assumed before any interval (0: 100) */
} avm_fd_config;

typedef struct avm_fd avm_fd;

avm_fd *avm_fd_new(const avm_fd_config *cfg); /* NULL when out of memory */
void avm_fd_free(avm_fd *fd);

/* Something arrived from peer at now_ms. 0 or AVM_ENOMEM. */
int avm_fd_heard(avm_fd *fd, const char *peer, uint64_t now_ms);
/* Forget a peer (it left the cluster). */
void avm_fd_forget(avm_fd *fd, const char *peer);

double avm_fd_phi(const avm_fd *fd, const char *peer, uint64_t now_ms);
bool avm_fd_reachable(const avm_fd *fd, const char *peer, uint64_t now_ms);

#endif
