/*
 * test_wake.c - a task woken from another thread runs: parked workers are
 * woken by MSG_RING doorbells, no wakeup is lost in long cross-worker and
 * thread-to-task ping-pongs, and a task parked on I/O runs when data sent
 * from another worker arrives.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#if defined(URT_TSAN)
#define SAN_DIV 20
#elif defined(URT_ASAN)
#define SAN_DIV 5
#else
#define SAN_DIV 1
#endif

#define PINGPONG_ROUNDS (100000u / SAN_DIV)

static void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/*
 * Two tasks on two different workers. `first` starts, then occupies its
 * worker without yielding until `second` has started, so `second` cannot
 * run on the same worker; both are pinned from then on.
 */
typedef struct pair {
    atomic_int first_worker, second_worker;
    atomic_int first_ready, second_started;
    void *ctx;
    void *(*first_body)(void *ctx);
    void *(*second_body)(void *ctx);
} pair;

static void *pair_first(void *arg)
{
    pair *p = arg;
    atomic_store(&p->first_worker, urt_worker_id());
    atomic_store(&p->first_ready, 1);
    while (!atomic_load(&p->second_started))
        cpu_relax();
    return p->first_body(p->ctx);
}

static void *pair_second(void *arg)
{
    pair *p = arg;
    atomic_store(&p->second_worker, urt_worker_id());
    atomic_store(&p->second_started, 1);
    return p->second_body(p->ctx);
}

/* Run both bodies on different workers; their return values go to r1 and r2. */
static void run_pair(urt_runtime *rt, pair *p, void **r1, void **r2)
{
    urt_task *a = NULL, *b = NULL;
    atomic_store(&p->first_worker, -1);
    atomic_store(&p->second_worker, -1);
    cr_assert_eq(urt_spawn(rt, &a, pair_first, p), 0);
    while (!atomic_load(&p->first_ready))
        sched_yield();
    cr_assert_eq(urt_spawn(rt, &b, pair_second, p), 0);
    cr_assert_eq(urt_join(a, r1), 0);
    cr_assert_eq(urt_join(b, r2), 0);
    int fw = atomic_load(&p->first_worker), sw = atomic_load(&p->second_worker);
    cr_assert(fw >= 0 && sw >= 0, "a task ran outside a worker (%d, %d)", fw, sw);
    cr_assert_neq(fw, sw, "both tasks ran on worker %d", fw);
}

/* ---- notify ping-pong ----------------------------------------------------------- */

typedef struct pingpong {
    urt_notify *ping, *pong;
    unsigned rounds;
} pingpong;

static void *pinger(void *arg)
{
    pingpong *pp = arg;
    for (unsigned i = 0; i < pp->rounds; i++) {
        if (urt_notify_signal(pp->ping) != 0 || urt_notify_wait(pp->pong) != 0)
            return (void *)(uintptr_t)(i + 1);
    }
    return NULL;
}

static void *ponger(void *arg)
{
    pingpong *pp = arg;
    for (unsigned i = 0; i < pp->rounds; i++) {
        if (urt_notify_wait(pp->ping) != 0 || urt_notify_signal(pp->pong) != 0)
            return (void *)(uintptr_t)(i + 1);
    }
    return NULL;
}

static void pingpong_init(pingpong *pp, unsigned rounds)
{
    pp->rounds = rounds;
    cr_assert_eq(urt_notify_create(&pp->ping), 0);
    cr_assert_eq(urt_notify_create(&pp->pong), 0);
}

static void pingpong_fini(pingpong *pp)
{
    cr_assert_eq(urt_notify_try_wait(pp->ping), -EAGAIN, "a ping permit was left over");
    cr_assert_eq(urt_notify_try_wait(pp->pong), -EAGAIN, "a pong permit was left over");
    urt_notify_destroy(pp->ping);
    urt_notify_destroy(pp->pong);
}

static void log_stats(urt_runtime *rt, const char *what)
{
    urt_worker_stats st[4];
    int n = urt_runtime_stats(rt, st, 4);
    for (int i = 0; i < n && i < 4; i++)
        cr_log_info("%s: worker %d: polls %llu parks %llu wakes_sent %llu wakes_received %llu mailbox_pushes %llu",
                    what, i, (unsigned long long)st[i].polls, (unsigned long long)st[i].parks,
                    (unsigned long long)st[i].wakes_sent, (unsigned long long)st[i].wakes_received,
                    (unsigned long long)st[i].mailbox_pushes);
}

Test(wake, parked_workers_are_woken_by_msg_ring_doorbells, .timeout = 60)
{
    urt_config cfg = {.workers = 2, .spin_us = URT_SPIN_NONE};
    urt_runtime *rt = rt_new_cfg(&cfg);
    pingpong pp;
    pingpong_init(&pp, 1000);
    pair p = {.ctx = &pp, .first_body = pinger, .second_body = ponger};
    void *r1 = (void *)1, *r2 = (void *)1;
    run_pair(rt, &p, &r1, &r2);
    cr_assert_null(r1, "pinger failed in round %zu", (size_t)(uintptr_t)r1);
    cr_assert_null(r2, "ponger failed in round %zu", (size_t)(uintptr_t)r2);
    pingpong_fini(&pp);

    urt_worker_stats st[2];
    cr_assert_eq(urt_runtime_stats(rt, st, 2), 2);
    log_stats(rt, "doorbells");
    uint64_t sent = st[0].wakes_sent + st[1].wakes_sent;
    uint64_t received = st[0].wakes_received + st[1].wakes_received;
    uint64_t parks = st[0].parks + st[1].parks;
    cr_assert_gt(parks, 0, "no worker ever parked");
    cr_assert_gt(sent, 0, "no doorbell was sent between the workers");
    cr_assert_gt(received, 0, "no doorbell was received");
    urt_runtime_destroy(rt);
}

static void cross_worker_pingpong(unsigned workers)
{
    urt_runtime *rt = rt_new(workers);
    pingpong pp;
    pingpong_init(&pp, PINGPONG_ROUNDS);
    pair p = {.ctx = &pp, .first_body = pinger, .second_body = ponger};
    void *r1 = (void *)1, *r2 = (void *)1;
    run_pair(rt, &p, &r1, &r2);
    cr_assert_null(r1, "%u workers: pinger failed in round %zu", workers, (size_t)(uintptr_t)r1);
    cr_assert_null(r2, "%u workers: ponger failed in round %zu", workers, (size_t)(uintptr_t)r2);
    pingpong_fini(&pp);
    log_stats(rt, workers == 2 ? "cross-worker ping-pong, 2 workers" : "cross-worker ping-pong, 4 workers");
    urt_runtime_destroy(rt);
}

Test(wake, cross_worker_notify_pingpong_loses_no_wakeup_with_two_workers, .timeout = 120)
{
    cross_worker_pingpong(2);
}

Test(wake, cross_worker_notify_pingpong_loses_no_wakeup_with_four_workers, .timeout = 120)
{
    cross_worker_pingpong(4);
}

/* ---- a waiter frees what it waited on at once --------------------------------------- */

/* Each round the waiter makes a fresh notify, hands it over through `slot`,
 * waits on it and destroys it the moment the wait returns, while the
 * signaller, on the other worker, may still be finishing urt_notify_signal
 * (a task's wake is made after the notify's lock is given back, and must
 * touch nothing of the notify then: ASan sees it if it does). */
#define FREE_ROUNDS (20000u / SAN_DIV)

typedef struct free_race {
    _Atomic(urt_notify *) slot;
    atomic_uint waited, signalled;
} free_race;

static void *free_waiter(void *arg)
{
    free_race *f = arg;
    for (unsigned i = 0; i < FREE_ROUNDS; i++) {
        urt_notify *n = NULL;
        if (urt_notify_create(&n) != 0)
            return (void *)(uintptr_t)(i + 1);
        atomic_store(&f->slot, n);
        if (urt_notify_wait(n) != 0)
            return (void *)(uintptr_t)(i + 1);
        urt_notify_destroy(n);
        atomic_fetch_add(&f->waited, 1);
    }
    return NULL;
}

static void *free_signaller(void *arg)
{
    free_race *f = arg;
    for (unsigned i = 0; i < FREE_ROUNDS; i++) {
        urt_notify *n;
        while (!(n = atomic_exchange(&f->slot, NULL)))
            urt_yield();
        if (urt_notify_signal(n) != 0)
            return (void *)(uintptr_t)(i + 1);
        atomic_fetch_add(&f->signalled, 1);
    }
    return NULL;
}

Test(wake, a_waiter_that_destroys_its_notify_as_soon_as_it_is_woken_races_no_signaller, .timeout = 120)
{
    urt_runtime *rt = rt_new(2);
    free_race f = {.slot = NULL};
    pair p = {.ctx = &f, .first_body = free_waiter, .second_body = free_signaller};
    void *r1 = (void *)1, *r2 = (void *)1;
    run_pair(rt, &p, &r1, &r2);
    cr_assert_null(r1, "the waiter failed in round %zu", (size_t)(uintptr_t)r1);
    cr_assert_null(r2, "the signaller failed in round %zu", (size_t)(uintptr_t)r2);
    cr_assert_eq(atomic_load(&f.waited), FREE_ROUNDS);
    cr_assert_eq(atomic_load(&f.signalled), FREE_ROUNDS);
    urt_runtime_destroy(rt);
}

/* ---- plain thread <-> task ping-pong ------------------------------------------------ */

static void thread_task_pingpong(unsigned workers, bool thread_pings)
{
    urt_runtime *rt = rt_new(workers);
    pingpong pp;
    pingpong_init(&pp, PINGPONG_ROUNDS / 2);
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, thread_pings ? ponger : pinger, &pp), 0);
    void *mine = thread_pings ? pinger(&pp) : ponger(&pp);   /* this thread blocks in urt_notify_wait */
    void *theirs = (void *)1;
    cr_assert_eq(urt_join(t, &theirs), 0);
    cr_assert_null(mine, "%u workers: the thread failed in round %zu", workers, (size_t)(uintptr_t)mine);
    cr_assert_null(theirs, "%u workers: the task failed in round %zu", workers, (size_t)(uintptr_t)theirs);
    pingpong_fini(&pp);
    urt_runtime_destroy(rt);
}

Test(wake, pingpong_between_a_plain_thread_and_a_task_loses_no_wakeup, .timeout = 120)
{
    static const unsigned counts[] = {1, 2, 4};
    for (size_t i = 0; i < 3; i++) {
        thread_task_pingpong(counts[i], true);
        thread_task_pingpong(counts[i], false);
    }
}

/* ---- I/O completion wakes a task parked on another worker ------------------------- */

typedef struct io_wake {
    int fds[2];
    char got[8];
    ssize_t recv_res, send_res;
    atomic_int receiver_started;
} io_wake;

static void *receiver(void *arg)
{
    io_wake *io = arg;
    atomic_store(&io->receiver_started, 1);
    io->recv_res = urt_recv(io->fds[0], io->got, sizeof(io->got), 0);
    return NULL;
}

static void *sender(void *arg)
{
    io_wake *io = arg;
    /* give the receiver time to submit its recv and park its worker; correctness
     * does not depend on it */
    urt_sleep(20 * 1000 * 1000);
    io->send_res = urt_send(io->fds[1], "wake!", 5, 0);
    return NULL;
}

Test(wake, task_parked_on_recv_runs_when_another_worker_sends, .timeout = 60)
{
    static const unsigned counts[] = {2, 4};
    for (size_t i = 0; i < 2; i++) {
        urt_runtime *rt = rt_new(counts[i]);
        io_wake io;
        memset(&io, 0, sizeof(io));
        io.recv_res = io.send_res = -12345;
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, io.fds), 0);
        pair p = {.ctx = &io, .first_body = receiver, .second_body = sender};
        run_pair(rt, &p, NULL, NULL);
        cr_assert_eq(io.send_res, 5, "send gave %zd", io.send_res);
        cr_assert_eq(io.recv_res, 5, "recv gave %zd", io.recv_res);
        cr_assert_eq(memcmp(io.got, "wake!", 5), 0);
        close(io.fds[0]);
        close(io.fds[1]);
        urt_runtime_destroy(rt);
    }
}
