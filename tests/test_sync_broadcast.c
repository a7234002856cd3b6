/*
 * test_sync_broadcast.c - urt_notify_broadcast wakes every waiter waiting
 * at that moment (tasks and plain threads), stores no permit (a wait that
 * starts later is not woken by it), and leaves a permit stored earlier as
 * it was.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

#define WAITERS 12

typedef struct crowd {
    urt_notify *n;
    atomic_int woken, errors;
} crowd;

static void *wait_once(void *arg)
{
    crowd *c = arg;
    if (urt_notify_wait(c->n) != 0)
        atomic_fetch_add(&c->errors, 1);
    atomic_fetch_add(&c->woken, 1);
    return NULL;
}

/* A new notify, and WAITERS tasks waiting on it (seen in the task dump). */
static void crowd_start(urt_runtime *rt, crowd *c, urt_task **t)
{
    memset(c, 0, sizeof(*c));
    cr_assert_eq(urt_notify_create(&c->n), 0);
    for (int i = 0; i < WAITERS; i++)
        cr_assert_eq(urt_spawn(rt, &t[i], wait_once, c), 0);
    for (int i = 0; i < WAITERS; i++)
        await_waiting(rt, t[i], "notify");
}

Test(notify_broadcast, one_broadcast_wakes_every_task_waiting_now, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        crowd c;
        urt_task *t[WAITERS];
        crowd_start(rt, &c, t);
        cr_assert_eq(urt_notify_broadcast(c.n), 0);
        /* nothing else wakes them: wait (bounded) for all, then say how many */
        uint64_t t0 = urt_now();
        while (atomic_load(&c.woken) < WAITERS && urt_now() - t0 < 20000 * MS)
            usleep(1000);
        int woken = atomic_load(&c.woken);
        for (int i = woken; i < WAITERS; i++)
            urt_notify_signal(c.n);   /* let the test end, then fail */
        for (int i = 0; i < WAITERS; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        cr_assert_eq(woken, WAITERS, "%u workers: one broadcast woke %d of %d waiters", w, woken, WAITERS);
        cr_assert_eq(atomic_load(&c.errors), 0);
        cr_assert_eq(urt_notify_try_wait(c.n), -EAGAIN, "the broadcast left a permit");
        urt_notify_destroy(c.n);
        urt_runtime_destroy(rt);
    }
}

#define THREADS 4

Test(notify_broadcast, broadcasts_wake_plain_threads_and_tasks_each_once, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        crowd c;
        urt_task *t[WAITERS];
        pthread_t th[THREADS];
        crowd_start(rt, &c, t);
        for (int i = 0; i < THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, wait_once, &c), 0);
        /* a plain thread's wait cannot be seen from outside: broadcast until
         * every waiter is through (each wakes exactly once, with 0) */
        while (atomic_load(&c.woken) < WAITERS + THREADS) {
            cr_assert_eq(urt_notify_broadcast(c.n), 0);
            usleep(10 * 1000);
        }
        for (int i = 0; i < WAITERS; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < THREADS; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(atomic_load(&c.woken), WAITERS + THREADS);
        cr_assert_eq(atomic_load(&c.errors), 0);
        cr_assert_eq(urt_notify_try_wait(c.n), -EAGAIN, "a broadcast left a permit");
        urt_notify_destroy(c.n);
        urt_runtime_destroy(rt);
    }
}

/* ---- an earlier broadcast does not wake a later waiter --------------------------------------------- */

typedef struct later {
    urt_notify *n;
    int first, second, after_signal;
} later;

/* A wait bounded by a 20 ms op timeout. */
static int wait_20ms(urt_notify *n)
{
    uint64_t old = urt_op_timeout(20 * MS);
    int r = urt_notify_wait(n);
    urt_op_timeout(old);
    return r;
}

static void *wait_after_broadcast(void *arg)
{
    later *l = arg;
    urt_notify_broadcast(l->n);   /* nobody waits: nothing happens */
    l->first = wait_20ms(l->n);
    return NULL;
}

static void *wait_bounded(void *arg)
{
    later *l = arg;
    l->second = wait_20ms(l->n);
    return NULL;
}

static void *broadcast_then_wait_again(void *arg)
{
    later *l = arg;
    crowd c;
    memset(&c, 0, sizeof(c));
    c.n = l->n;
    urt_task *a = NULL, *b = NULL;
    if (urt_spawn(NULL, &a, wait_once, &c) != 0)
        return (void *)1;
    while (!task_waits_on(urt_current(), a, "notify"))
        urt_sleep(MS);
    urt_notify_broadcast(l->n);   /* wakes a only */
    if (urt_join(a, NULL) != 0 || atomic_load(&c.woken) != 1 || atomic_load(&c.errors) != 0)
        return (void *)2;
    if (urt_spawn(NULL, &b, wait_bounded, l) != 0)
        return (void *)3;
    if (urt_join(b, NULL) != 0)
        return (void *)4;
    /* a permit stored before a broadcast stays stored */
    urt_notify_signal(l->n);
    urt_notify_broadcast(l->n);
    l->after_signal = urt_notify_try_wait(l->n);
    return NULL;
}

Test(notify_broadcast, a_wait_that_starts_after_a_broadcast_is_not_woken_by_it, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        later l;
        memset(&l, 0, sizeof(l));
        l.first = l.second = l.after_signal = 1;
        cr_assert_eq(urt_notify_create(&l.n), 0);
        void *err = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, wait_after_broadcast, &l, &err), 0);
        cr_assert_eq(l.first, -ETIMEDOUT, "%u workers: a broadcast with nobody waiting woke a later wait (%d)", w,
                     l.first);
        cr_assert_eq(urt_runtime_block_on(rt, broadcast_then_wait_again, &l, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(l.second, -ETIMEDOUT, "%u workers: a wait after a broadcast gave %d", w, l.second);
        cr_assert_eq(l.after_signal, 0, "a broadcast took the stored permit");
        cr_assert_eq(urt_notify_try_wait(l.n), -EAGAIN);
        urt_notify_destroy(l.n);
        urt_runtime_destroy(rt);
    }
}

Test(notify_broadcast, broadcast_of_null_is_einval, .timeout = 10)
{
    cr_assert_eq(urt_notify_broadcast(NULL), -EINVAL);
    urt_notify *n = NULL;
    cr_assert_eq(urt_notify_create(&n), 0);
    cr_assert_eq(urt_notify_broadcast(n), 0, "nobody waits: nothing happens");
    cr_assert_eq(urt_notify_try_wait(n), -EAGAIN, "and no permit is stored");
    urt_notify_destroy(n);
}
