/* The failure detector (transport/fd.h) on synthetic arrival times. */
#include <math.h>

#include "detector.h"
#include "test.h"

static avm_fd *fd_default(void)
{
    avm_fd_config cfg = {0};
    return avm_fd_new(&cfg);
}

TEST(never_heard_is_unreachable)
{
    avm_fd *fd = fd_default();
    REQUIRE(fd != NULL);
    CHECK(!avm_fd_reachable(fd, "node2", 1000));
    CHECK(isinf(avm_fd_phi(fd, "node2", 1000)));
    avm_fd_free(fd);
}

/* Regular heartbeats with jitter: never suspected, phi stays low. */
TEST(regular_heartbeats)
{
    avm_fd *fd = fd_default();
    REQUIRE(fd != NULL);
    uint64_t t = 10000;
    unsigned seed = 1;
    for (int i = 0; i < 2000; i++) {
        seed = seed * 1103515245u + 12345u;
        t += 90 + (seed >> 16) % 21; /* 90..110 ms */
        REQUIRE(avm_fd_heard(fd, "node2", t) == 0);
        /* Checked just before the next heartbeat is due. */
        CHECK(avm_fd_reachable(fd, "node2", t + 110));
    }
    CHECK(avm_fd_phi(fd, "node2", t + 100) < 1.0);
    avm_fd_free(fd);
}

/* A peer that stops: unreachable within the bound, and phi rises with the silence;
 * heard again, reachable at once. */
TEST(crash_detected_within_bound_and_recovers)
{
    avm_fd *fd = fd_default();
    REQUIRE(fd != NULL);
    uint64_t t = 5000;
    for (int i = 0; i < 100; i++)
        avm_fd_heard(fd, "node3", t += 100);
    uint64_t down = t, flipped = 0;
    double prev = 0;
    for (uint64_t now = down; now <= down + 2000; now += 10) {
        double phi = avm_fd_phi(fd, "node3", now);
        CHECK(phi >= prev);
        prev = phi;
        if (flipped == 0 && !avm_fd_reachable(fd, "node3", now))
            flipped = now;
    }
    CHECK(flipped != 0);
    CHECK(flipped - down <= 1000); /* the configured bound */
    CHECK(flipped - down >= 150);  /* not before a heartbeat is clearly late */
    avm_fd_heard(fd, "node3", down + 3000);
    CHECK(avm_fd_reachable(fd, "node3", down + 3000));
    CHECK(avm_fd_reachable(fd, "node3", down + 3050));
    /* The outage did not teach it to wait longer: the next crash is seen as fast. */
    for (int i = 0; i < 20; i++)
        avm_fd_heard(fd, "node3", down + 3000 + 100 * (uint64_t)(i + 1));
    uint64_t down2 = down + 3000 + 2000;
    CHECK(!avm_fd_reachable(fd, "node3", down2 + 1000));
    avm_fd_free(fd);
}

/* The hard bound holds even for a peer whose rhythm is slow and irregular. */
TEST(hard_bound)
{
    avm_fd_config cfg = {.max_silence_ms = 500};
    avm_fd *fd = avm_fd_new(&cfg);
    REQUIRE(fd != NULL);
    uint64_t t = 1000;
    for (int i = 0; i < 50; i++)
        avm_fd_heard(fd, "slow", t += (i % 2) ? 50 : 450);
    CHECK(avm_fd_reachable(fd, "slow", t + 300));
    CHECK(!avm_fd_reachable(fd, "slow", t + 500));
    avm_fd_forget(fd, "slow");
    CHECK(!avm_fd_reachable(fd, "slow", t + 1));
    avm_fd_free(fd);
}

/* Peers are independent. */
TEST(several_peers)
{
    avm_fd *fd = fd_default();
    REQUIRE(fd != NULL);
    uint64_t t = 100;
    for (int i = 0; i < 50; i++) {
        t += 100;
        avm_fd_heard(fd, "a", t);
        if (i < 20)
            avm_fd_heard(fd, "b", t);
    }
    CHECK(avm_fd_reachable(fd, "a", t + 50));
    CHECK(!avm_fd_reachable(fd, "b", t + 50));
    avm_fd_free(fd);
}

TEST_MAIN(T(never_heard_is_unreachable), T(regular_heartbeats),
          T(crash_detected_within_bound_and_recovers), T(hard_bound), T(several_peers))
