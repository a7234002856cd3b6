/*
 * test_steal.c - work spawned by one task spreads to the other workers by
 * stealing: the stats show steals on some worker and polls on more than one.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#if defined(URT_TSAN)
#define SAN_DIV 10
#elif defined(URT_ASAN)
#define SAN_DIV 4
#else
#define SAN_DIV 1
#endif

#define NTASKS  (10000u / SAN_DIV)
#define BATCH   64u          /* well below the local queue's capacity: no overflow to inject */
#define SPIN_NS 20000u

typedef struct work {
    atomic_uint ran;
    _Atomic uint64_t worker_mask;   /* bit i: a task ran on worker i */
    unsigned errors;
} work;

static void *spin_20us(void *arg)
{
    work *wk = arg;
    int id = urt_worker_id();
    if (id >= 0 && id < 64)
        atomic_fetch_or(&wk->worker_mask, (uint64_t)1 << id);
    uint64_t until = urt_now() + SPIN_NS;
    while (urt_now() < until)
        ;
    atomic_fetch_add(&wk->ran, 1);
    return NULL;
}

static void *spawn_all_work(void *arg)
{
    work *wk = arg;
    urt_task *batch[BATCH];
    for (unsigned done = 0; done < NTASKS; done += BATCH) {
        unsigned n = NTASKS - done < BATCH ? NTASKS - done : BATCH;
        for (unsigned i = 0; i < n; i++)
            if (urt_spawn(NULL, &batch[i], spin_20us, wk) != 0) {
                batch[i] = NULL;
                wk->errors++;
            }
        for (unsigned i = 0; i < n; i++)
            if (batch[i] && urt_join(batch[i], NULL) != 0)
                wk->errors++;
    }
    return NULL;
}

static void run_and_check(unsigned workers)
{
    urt_runtime *rt = rt_new(workers);
    work wk = {0};
    cr_assert_eq(urt_runtime_block_on(rt, spawn_all_work, &wk, NULL), 0);
    cr_assert_eq(wk.errors, 0, "%u workers: %u spawn/join errors", workers, wk.errors);
    cr_assert_eq(atomic_load(&wk.ran), NTASKS);

    urt_worker_stats st[4];
    memset(st, 0, sizeof(st));
    cr_assert_eq(urt_runtime_stats(rt, st, workers), (int)workers);
    uint64_t steals = 0, stolen = 0;
    unsigned polled = 0, stealers = 0;
    for (unsigned i = 0; i < workers; i++) {
        cr_log_info("%u workers: worker %u: polls %llu lifo_polls %llu steal_attempts %llu steals %llu "
                    "tasks_stolen %llu inject_schedules %llu overflows %llu parks %llu wakes_sent %llu "
                    "wakes_received %llu",
                    workers, i, (unsigned long long)st[i].polls, (unsigned long long)st[i].lifo_polls,
                    (unsigned long long)st[i].steal_attempts, (unsigned long long)st[i].steals,
                    (unsigned long long)st[i].tasks_stolen, (unsigned long long)st[i].inject_schedules,
                    (unsigned long long)st[i].overflows, (unsigned long long)st[i].parks,
                    (unsigned long long)st[i].wakes_sent, (unsigned long long)st[i].wakes_received);
        steals += st[i].steals;
        stolen += st[i].tasks_stolen;
        polled += st[i].polls > 0;
        stealers += st[i].steals > 0 && st[i].tasks_stolen > 0;
        cr_assert_geq(st[i].tasks_stolen, st[i].steals, "worker %u: fewer tasks stolen than steals", i);
    }
    uint64_t mask = atomic_load(&wk.worker_mask);
    cr_log_info("%u workers: steals %llu tasks_stolen %llu, workers that polled %u, worker mask %#llx", workers,
                (unsigned long long)steals, (unsigned long long)stolen, polled, (unsigned long long)mask);
    cr_assert_gt(stealers, 0, "%u workers: no worker stole anything", workers);
    cr_assert_gt(polled, 1, "%u workers: only one worker ran tasks", workers);
    cr_assert_gt(__builtin_popcountll(mask), 1, "%u workers: every task ran on the same worker", workers);
    urt_runtime_destroy(rt);
}

Test(steal, work_spawned_by_one_task_is_stolen_with_two_workers, .timeout = 60)
{
    run_and_check(2);
}

Test(steal, work_spawned_by_one_task_is_stolen_with_four_workers, .timeout = 60)
{
    run_and_check(4);
}

/* A migratable task that waits in a pooled receive is woken from another
 * thread (its wake goes through its worker's mailbox, where idle workers
 * could steal it): it must resume on the receive's worker, whose ring and
 * buffers the receive uses, and close it there. */
typedef struct mig_rx {
    int fd;
    int opened_on, resumed_on;
    ssize_t got;
    int closed;
    _Atomic int waiting;
} mig_rx;

static void *mig_rx_task(void *arg)
{
    mig_rx *m = arg;
    urt_rx *rx;
    if (urt_rx_open(&rx, m->fd) != 0)
        return (void *)1;
    m->opened_on = urt_worker_id();
    atomic_store(&m->waiting, 1);
    urt_buf b;
    m->got = urt_rx_recv(rx, &b);
    m->resumed_on = urt_worker_id();
    m->closed = urt_rx_close(rx);
    return NULL;
}

Test(steal, a_migratable_task_woken_in_a_pooled_receive_resumes_on_its_worker, .timeout = 120)
{
    urt_runtime *rt = rt_new(4);
    urt_spawn_opts mg = {.flags = URT_TASK_MIGRATABLE};
    for (int round = 0; round < 200; round++) {
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        mig_rx m = {.fd = sv[0], .opened_on = -1, .resumed_on = -1, .closed = 1};
        urt_task *t;
        cr_assert_eq(urt_spawn_ex(rt, &t, mig_rx_task, &m, &mg), 0);
        while (!atomic_load(&m.waiting))
            sched_yield();
        usleep(200);
        urt_cancel(t);   /* a wake from a plain thread */
        urt_join(t, NULL);
        cr_assert_eq(m.got, -ECANCELED, "round %d: the receive gave %zd", round, m.got);
        cr_assert_eq(m.resumed_on, m.opened_on, "round %d: opened on worker %d, resumed on %d", round, m.opened_on,
                     m.resumed_on);
        cr_assert_eq(m.closed, 0, "round %d: urt_rx_close gave %d", round, m.closed);
        close(sv[0]);
        close(sv[1]);
    }
    urt_runtime_destroy(rt);
}
