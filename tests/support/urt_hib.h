/* Helpers shared by the hibernation tests (test_hibernate*.c). */
#ifndef URT_TEST_HIB_H
#define URT_TEST_HIB_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#ifndef MS
#define MS (1000ull * 1000)
#endif

static inline urt_runtime *rt_hib(unsigned workers, uint64_t after)
{
    urt_config c;
    memset(&c, 0, sizeof(c));
    c.workers = workers;
    c.hibernate_after_ns = after;
    return rt_new_cfg(&c);
}

static inline uint64_t stat_sum(urt_runtime *rt, int which)
{
    urt_worker_stats st[8];
    int n = urt_runtime_stats(rt, st, 8);
    uint64_t s = 0;
    for (int i = 0; i < n && i < 8; i++)
        s += which == 0 ? st[i].hibernated : which == 1 ? st[i].hibernations : st[i].restores;
    return s;
}

/* Wait until `n` tasks are hibernated, at most about `ms` milliseconds. */
static inline bool await_hibernated_for(urt_runtime *rt, uint64_t n, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        if (stat_sum(rt, 0) >= n)
            return true;
        usleep(1000);
    }
    return false;
}

static void *hib_noop(void *arg) { return arg; }

/* await_hibernated_for, with a task spawned every 20 ms meanwhile: the
 * spawn wakes a parked worker, and a worker scans for waits to hibernate
 * when it wakes (else only about once a second while idle). */
static inline bool await_hibernated_poked(urt_runtime *rt, uint64_t n, unsigned ms)
{
    for (unsigned i = 0; i < ms; i++) {
        if (stat_sum(rt, 0) >= n)
            return true;
        if (i % 20 == 0)
            urt_spawn(rt, NULL, hib_noop, NULL);
        usleep(1000);
    }
    return false;
}

/* Wait until `n` tasks are hibernated, at most ~5 s. */
static inline bool await_hibernated(urt_runtime *rt, uint64_t n) { return await_hibernated_for(rt, n, 5000); }

/* A TCP listener on 127.0.0.1 at an ephemeral port; *a is its address. */
static inline int hib_listen_loopback(struct sockaddr_in *a)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    *a = (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(*a);
    cr_assert_eq(bind(lfd, (struct sockaddr *)a, sizeof(*a)), 0);
    cr_assert_eq(listen(lfd, 8), 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)a, &al), 0);
    return lfd;
}

/* Pages of [lo, hi) resident in memory. */
static inline size_t resident_pages(const void *lo, const void *hi)
{
    long pg = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)lo & ~(uintptr_t)(pg - 1), b = ((uintptr_t)hi + pg - 1) & ~(uintptr_t)(pg - 1);
    size_t n = (b - a) / (size_t)pg;
    unsigned char vec[n];
    if (mincore((void *)a, b - a, vec) != 0)
        return (size_t)-1;
    size_t r = 0;
    for (size_t i = 0; i < n; i++)
        r += vec[i] & 1;
    return r;
}

#endif /* URT_TEST_HIB_H */
