/*
 * test_enter_budget.c - the worker's syscall budget: an idle cycle costs at
 * most one io_uring_enter (submit, task work, reap and sleep together), and
 * nothing is submitted between the tasks of one pass.
 *
 * The counts come from the workers' own counters (urt_worker_stats.enters,
 * published when a worker parks), read from inside the task between two
 * points, so the runtime's start and end are not in them. Counts, not times:
 * a slow or loaded machine changes neither.
 */
#include <sys/socket.h>

#include "support/urt_test.h"

#define SLEEPS 100u
#define ROUND_TRIPS 400u

/* ring flag configurations: the default (DEFER_TASKRUN where it exists),
 * COOP_TASKRUN, and a ring with no flags */
static const unsigned ring_modes[] = {0, URT_CONFIG_NO_DEFER, URT_CONFIG_PLAIN_RING};
#define NMODES (sizeof(ring_modes) / sizeof(ring_modes[0]))

static urt_runtime *cur_rt;

static uint64_t enters_now(void)
{
    urt_worker_stats st[4];
    int n = urt_runtime_stats(cur_rt, st, 4);
    uint64_t e = 0;
    for (int i = 0; i < n && i < 4; i++)
        e += st[i].enters;
    return e;
}

static void *sleeper(void *arg)
{
    int64_t *used = arg;   /* enters, or -errno of a failed sleep */
    int r = urt_sleep(100000);   /* the counters are published from here on */
    uint64_t e0 = enters_now();
    for (unsigned i = 0; i < SLEEPS && r == 0; i++)
        r = urt_sleep(200000);
    *used = r < 0 ? r : (int64_t)(enters_now() - e0);
    return NULL;
}

Test(enter_budget, a_sleep_on_an_idle_worker_costs_one_enter, .timeout = 60)
{
    for (unsigned m = 0; m < NMODES; m++) {
        urt_config cfg = {.workers = 1, .spin_us = URT_SPIN_NONE, .flags = ring_modes[m]};
        cur_rt = rt_new_cfg(&cfg);
        int64_t used = 0;
        cr_assert_eq(urt_runtime_block_on(cur_rt, sleeper, &used, NULL), 0);
        cr_assert(used >= 0, "urt_sleep: %s", strerror((int)-used));
        /* each sleep: its timeout SQE is submitted by the park that waits
         * for it, one enter; a submit of its own first would make two */
        cr_assert(used >= SLEEPS / 2 && used <= SLEEPS + SLEEPS / 5 + 4,
                  "ring flags %#x: %lld enters for %u sleeps", ring_modes[m], (long long)used, SLEEPS);
        urt_runtime_destroy(cur_rt);
    }
}

typedef struct pingpong {
    int fds[2];
    ssize_t err;
    uint64_t enters;
} pingpong;

static void *ponger(void *arg)
{
    pingpong *p = arg;
    char c;
    for (unsigned i = 0; i < ROUND_TRIPS + 1; i++) {
        ssize_t n = urt_recv(p->fds[1], &c, 1, 0);
        if (n == 1)
            n = urt_send(p->fds[1], &c, 1, 0);
        if (n != 1) {
            p->err = n < 0 ? n : -EIO;
            return NULL;
        }
    }
    return NULL;
}

static bool round_trip(pingpong *p, unsigned i)
{
    char c = (char)i, back = 0;
    ssize_t n = urt_send(p->fds[0], &c, 1, 0);
    if (n == 1)
        n = urt_recv(p->fds[0], &back, 1, 0);
    if (n != 1 || back != c) {
        p->err = n < 0 ? n : -EIO;
        return false;
    }
    return true;
}

static void *pinger(void *arg)
{
    pingpong *p = arg;
    urt_task *peer = NULL;
    int r = urt_spawn(cur_rt, &peer, ponger, p);
    if (r < 0) {
        p->err = r;
        return NULL;
    }
    if (round_trip(p, 0)) {   /* the peer is running: the counters are published from here on */
        uint64_t e0 = enters_now();
        for (unsigned i = 1; i <= ROUND_TRIPS && round_trip(p, i); i++)
            ;
        p->enters = enters_now() - e0;
    }
    r = urt_join(peer, NULL);
    if (r < 0 && p->err == 0)
        p->err = r;
    return NULL;
}

Test(enter_budget, a_ping_pong_on_one_worker_enters_once_per_idle_cycle, .timeout = 60)
{
    for (unsigned m = 0; m < NMODES; m++) {
        urt_config cfg = {.workers = 1, .spin_us = URT_SPIN_NONE, .flags = ring_modes[m]};
        cur_rt = rt_new_cfg(&cfg);
        pingpong p;
        memset(&p, 0, sizeof(p));
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.fds), 0);
        cr_assert_eq(urt_runtime_block_on(cur_rt, pinger, &p, NULL), 0);
        cr_assert_eq(p.err, 0, "ring flags %#x: %zd", ring_modes[m], p.err);
        /* a round trip is four ops (two sends, two receives) by two tasks;
         * each time both wait, one enter submits what they queued and
         * sleeps: at most two idle cycles per round trip */
        cr_assert(p.enters <= 2 * ROUND_TRIPS + ROUND_TRIPS / 4,
                  "ring flags %#x: %llu enters for %u round trips", ring_modes[m], (unsigned long long)p.enters,
                  ROUND_TRIPS);
        close(p.fds[0]);
        close(p.fds[1]);
        urt_runtime_destroy(cur_rt);
    }
}
