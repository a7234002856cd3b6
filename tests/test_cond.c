/*
 * test_cond.c - urt_cond loses no signal (a ping-pong of a million rounds
 * between two tasks, and between a task and a plain thread), broadcast wakes
 * every waiter (tasks and plain threads mixed), a wait inside
 * urt_block_in_place blocks its thread, and urt_cond_wait returns
 * with the mutex held after a cancellation, an op timeout and a deadline;
 * a signalled waiter that was also cancelled consumed the signal or left it
 * to the next waiter, never both and never neither.
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

/* Rounds per worker count. A round with a plain thread costs a futex wake
 * one way and a doorbell the other: that test spreads a million rounds over
 * its three worker counts. */
#if defined(URT_ASAN) || defined(URT_TSAN)
#define PINGPONG_ROUNDS 100000ul
#define PINGPONG_THREAD_ROUNDS 20000ul
#else
#define PINGPONG_ROUNDS 1000000ul
#define PINGPONG_THREAD_ROUNDS 333334ul
#endif

/* ---- no lost signal: ping-pong ----------------------------------------------------------------- */

typedef struct pingpong {
    urt_mutex *m;
    urt_cond *c;
    unsigned long rounds;          /* immutable: turns in all */
    unsigned long n;               /* under m: the turn; side n % 2 moves next */
    unsigned long moves[2];        /* under m */
    atomic_int errors;
} pingpong;

/* Take rounds / 2 turns; each turn waits for the other side's signal. */
static void play(pingpong *p, unsigned side)
{
    for (;;) {
        if (urt_mutex_lock(p->m) != 0) {
            atomic_fetch_add(&p->errors, 1);
            return;
        }
        while (p->n < p->rounds && p->n % 2 != side) {
            if (urt_cond_wait(p->c, p->m) != 0)
                atomic_fetch_add(&p->errors, 1);
        }
        if (p->n >= p->rounds) {
            urt_mutex_unlock(p->m);
            return;
        }
        p->n++;
        p->moves[side]++;
        if (urt_cond_signal(p->c) != 0)
            atomic_fetch_add(&p->errors, 1);
        if (urt_mutex_unlock(p->m) != 0)
            atomic_fetch_add(&p->errors, 1);
    }
}

static void *play_even(void *arg)
{
    play(arg, 0);
    return NULL;
}

static void *play_odd(void *arg)
{
    play(arg, 1);
    return NULL;
}

/* One ping-pong of `rounds` turns on w workers: play_even in a task, play_odd
 * in a task or a plain thread. */
static void pingpong_run(unsigned w, unsigned long rounds, bool odd_in_thread)
{
    urt_runtime *rt = rt_new(w);
    pingpong p;
    memset(&p, 0, sizeof(p));
    p.rounds = rounds;
    cr_assert_eq(urt_mutex_create(&p.m), 0);
    cr_assert_eq(urt_cond_create(&p.c), 0);
    urt_task *a = NULL, *b = NULL;
    pthread_t th;
    cr_assert_eq(urt_spawn(rt, &a, play_even, &p), 0);
    if (odd_in_thread)
        cr_assert_eq(pthread_create(&th, NULL, play_odd, &p), 0);
    else
        cr_assert_eq(urt_spawn(rt, &b, play_odd, &p), 0);
    cr_assert_eq(urt_join(a, NULL), 0);
    if (odd_in_thread)
        cr_assert_eq(pthread_join(th, NULL), 0);
    else
        cr_assert_eq(urt_join(b, NULL), 0);
    cr_assert_eq(atomic_load(&p.errors), 0, "%u workers: %d errors", w, atomic_load(&p.errors));
    cr_assert_eq(p.n, p.rounds, "%u workers: %lu turns", w, p.n);
    cr_assert_eq(p.moves[0], p.rounds / 2);
    cr_assert_eq(p.moves[1], p.rounds / 2);
    cr_assert_eq(urt_mutex_try_lock(p.m), 0, "the mutex was left locked");
    cr_assert_eq(urt_mutex_unlock(p.m), 0);
    urt_cond_destroy(p.c);
    urt_mutex_destroy(p.m);
    urt_runtime_destroy(rt);
}

Test(cond, a_ping_pong_of_a_million_rounds_between_two_tasks_loses_no_signal, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w)
        pingpong_run(w, PINGPONG_ROUNDS, false);
}

Test(cond, a_ping_pong_of_a_million_rounds_between_a_task_and_a_plain_thread_loses_no_signal, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w)
        pingpong_run(w, PINGPONG_THREAD_ROUNDS, true);
}

/* ---- broadcast wakes every waiter, tasks and plain threads; signal wakes one ----------------------- */

#define CROWD_TASKS 12
#define CROWD_THREADS 4

typedef struct crowd {
    urt_mutex *m;
    urt_cond *c;
    int waiting;                   /* under m: waiters that checked the predicate and wait */
    bool go;                       /* under m: the waiters' predicate */
    bool once;                     /* immutable: wait once, not until go */
    atomic_int woken, errors;
} crowd;

static void crowd_open(crowd *x)
{
    memset(x, 0, sizeof(*x));
    cr_assert_eq(urt_mutex_create(&x->m), 0);
    cr_assert_eq(urt_cond_create(&x->c), 0);
}

static void crowd_close(crowd *x)
{
    cr_assert_eq(atomic_load(&x->errors), 0);
    urt_cond_destroy(x->c);
    urt_mutex_destroy(x->m);
}

/* Until n waiters wait. A waiter counted itself under m and keeps m until
 * it is queued on c: once we see n of them under m, all n are queued. */
static void crowd_await(crowd *x, int n)
{
    for (;;) {
        cr_assert_eq(urt_mutex_lock(x->m), 0);
        bool all = x->waiting == n;
        cr_assert_eq(urt_mutex_unlock(x->m), 0);
        if (all)
            return;
        usleep(1000);
    }
}

/* Wait until go, or with `once` a single wait: this implementation has no
 * spurious wakeups, so each return is then one signal's (a caller must not
 * count on that). */
static void *crowd_waiter(void *arg)
{
    crowd *x = arg;
    if (urt_mutex_lock(x->m) != 0) {
        atomic_fetch_add(&x->errors, 1);
        return NULL;
    }
    x->waiting++;
    do {
        if (urt_cond_wait(x->c, x->m) != 0)
            atomic_fetch_add(&x->errors, 1);
    } while (!x->once && !x->go);
    atomic_fetch_add(&x->woken, 1);
    if (urt_mutex_unlock(x->m) != 0)
        atomic_fetch_add(&x->errors, 1);
    return NULL;
}

Test(cond, broadcast_wakes_every_waiter_of_tasks_and_plain_threads, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        crowd x;
        crowd_open(&x);
        urt_task *t[CROWD_TASKS];
        pthread_t th[CROWD_THREADS];
        for (int i = 0; i < CROWD_TASKS; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], crowd_waiter, &x), 0);
        for (int i = 0; i < CROWD_THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, crowd_waiter, &x), 0);
        crowd_await(&x, CROWD_TASKS + CROWD_THREADS);
        cr_assert_eq(urt_mutex_lock(x.m), 0);
        x.go = true;
        cr_assert_eq(urt_cond_broadcast(x.c), 0);
        cr_assert_eq(urt_mutex_unlock(x.m), 0);
        /* the one broadcast must wake them all: nothing else will */
        uint64_t t0 = urt_now();
        while (atomic_load(&x.woken) < CROWD_TASKS + CROWD_THREADS && urt_now() - t0 < 30000 * MS)
            usleep(1000);
        int woken = atomic_load(&x.woken);
        if (woken < CROWD_TASKS + CROWD_THREADS)
            urt_cond_broadcast(x.c);   /* let the test end, then fail */
        for (int i = 0; i < CROWD_TASKS; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < CROWD_THREADS; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(woken, CROWD_TASKS + CROWD_THREADS, "%u workers: one broadcast woke %d waiters", w, woken);
        crowd_close(&x);
        urt_runtime_destroy(rt);
    }
}


Test(cond, each_signal_wakes_one_waiter_and_a_signal_with_nobody_waiting_is_not_kept, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        crowd x;
        crowd_open(&x);
        x.once = true;
        cr_assert_eq(urt_cond_signal(x.c), 0, "a signal with nobody waiting is fine (and not stored)");
        urt_task *t[4];
        for (int i = 0; i < 4; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], crowd_waiter, &x), 0);
        crowd_await(&x, 4);
        usleep(5000);
        cr_assert_eq(atomic_load(&x.woken), 0, "%u workers: the signal sent before anyone waited was kept", w);
        for (int k = 1; k <= 4; k++) {
            cr_assert_eq(urt_cond_signal(x.c), 0);
            while (atomic_load(&x.woken) < k)
                usleep(1000);
            usleep(5000);
            cr_assert_eq(atomic_load(&x.woken), k, "%u workers: signal %d let %d through", w, k,
                         atomic_load(&x.woken));
        }
        for (int i = 0; i < 4; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        crowd_close(&x);
        urt_runtime_destroy(rt);
    }
}

/* ---- inside urt_block_in_place the wait blocks the pool thread, not the worker ------------------------ */

static void *bystander(void *arg) { return arg; }

static void *wait_in_place(void *arg)
{
    crowd *x = arg;
    if (urt_mutex_lock(x->m) != 0)
        return (void *)1;
    x->waiting++;
    while (!x->go) {
        if (urt_cond_wait(x->c, x->m) != 0)
            atomic_fetch_add(&x->errors, 1);
    }
    atomic_fetch_add(&x->woken, 1);
    urt_mutex_unlock(x->m);
    return NULL;
}

static void *task_waiting_in_place(void *arg)
{
    void *ret = (void *)1;
    int r = urt_block_in_place(wait_in_place, arg, &ret);
    return r != 0 ? (void *)(intptr_t)r : ret;
}

Test(cond, a_wait_inside_block_in_place_blocks_its_thread_and_a_signal_wakes_it, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        crowd x;
        crowd_open(&x);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, task_waiting_in_place, &x), 0);
        crowd_await(&x, 1);
        /* every worker still runs tasks meanwhile: 16 of them all end */
        urt_task *others[16];
        for (uintptr_t i = 0; i < 16; i++)
            cr_assert_eq(urt_spawn(rt, &others[i], bystander, (void *)(i + 1)), 0);
        for (uintptr_t i = 0; i < 16; i++) {
            void *r = NULL;
            cr_assert_eq(urt_join(others[i], &r), 0);
            cr_assert_eq((uintptr_t)r, i + 1);
        }
        cr_assert_eq(atomic_load(&x.woken), 0);
        cr_assert_eq(urt_mutex_lock(x.m), 0);
        x.go = true;
        cr_assert_eq(urt_cond_signal(x.c), 0);
        cr_assert_eq(urt_mutex_unlock(x.m), 0);
        void *ret = (void *)9;
        cr_assert_eq(urt_join(t, &ret), 0);
        cr_assert_null(ret, "%u workers: the in-place wait gave %p", w, ret);
        cr_assert_eq(atomic_load(&x.woken), 1);
        crowd_close(&x);
        urt_runtime_destroy(rt);
    }
}

/* ---- the mutex is held on return after a cancellation, a timeout, a deadline ------------------------ */

enum { END_CANCEL, END_OP_TIMEOUT, END_DEADLINE };

typedef struct ended {
    urt_runtime *rt;
    urt_mutex *m;
    urt_cond *c;
    int how;
    int res;
    uint64_t restored;             /* the bound the waiter found when it restored its own */
    bool cancelled;
    atomic_int locked;             /* the waiter holds m and is about to wait */
    atomic_int returned;           /* the waiter's wait returned */
    uint64_t main_id;              /* end_a_wait's task */
} ended;

static void *wait_and_keep_the_mutex(void *arg)
{
    ended *e = arg;
    if (urt_mutex_lock(e->m) != 0)
        return (void *)1;
    atomic_store(&e->locked, 1);
    /* start the bound only once end_a_wait is queued for m: the wait's
     * release of m then hands it m, so the bound cannot pass while m is
     * free (the re-lock would not have to wait) */
    while (!task_id_waits_on(e->rt, e->main_id, "mutex"))
        urt_sleep(MS);
    uint64_t old = 0;
    if (e->how == END_OP_TIMEOUT)
        old = urt_op_timeout(10 * MS);
    else if (e->how == END_DEADLINE)
        old = urt_deadline(urt_now() + 10 * MS);
    e->res = urt_cond_wait(e->c, e->m);   /* nobody signals */
    if (e->how == END_OP_TIMEOUT)
        e->restored = urt_op_timeout(old);
    else if (e->how == END_DEADLINE)
        e->restored = urt_deadline(old);
    e->cancelled = urt_cancelled();
    atomic_store(&e->returned, 1);
    return NULL;   /* returns with m locked, if the wait kept its promise */
}

static void *end_a_wait(void *arg)
{
    ended *e = arg;
    urt_task *t = NULL;
    e->main_id = urt_self_id();
    if (urt_spawn(NULL, &t, wait_and_keep_the_mutex, e) != 0)
        return (void *)1;
    while (!atomic_load(&e->locked))
        urt_yield();
    /* m is ours once the waiter's wait has released it (it is queued on c
     * by then): its re-lock, after the wait ends, has to wait for us */
    if (urt_mutex_lock(e->m) != 0)
        return (void *)2;
    if (e->how == END_CANCEL)
        urt_cancel(t);
    /* its wait ended (cancelled or past its bound); now it waits for m,
     * neither cancelled by the pending request nor bounded by its timeout */
    while (!task_waits_on(e->rt, t, "mutex")) {
        if (atomic_load(&e->returned))
            return (void *)6;   /* it returned without m: we hold it */
        urt_sleep(MS);
    }
    urt_sleep(30 * MS);
    if (!task_waits_on(e->rt, t, "mutex"))
        return (void *)3;
    if (urt_mutex_unlock(e->m) != 0)
        return (void *)4;
    int j = urt_join(t, NULL);
    if (j != (e->how == END_CANCEL ? -ECANCELED : 0))
        return (void *)5;
    return NULL;
}

static void check_end(int how, int expect)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        ended e;
        memset(&e, 0, sizeof(e));
        e.rt = rt;
        e.how = how;
        e.res = 1;
        cr_assert_eq(urt_mutex_create(&e.m), 0);
        cr_assert_eq(urt_cond_create(&e.c), 0);
        void *err = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, end_a_wait, &e, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(e.res, expect, "%u workers: the wait gave %d", w, e.res);
        cr_assert_eq(e.cancelled, how == END_CANCEL);
        if (how == END_OP_TIMEOUT)
            cr_assert_eq(e.restored, 10 * MS, "the op timeout was not the waiter's own after the wait");
        if (how == END_DEADLINE)
            cr_assert_neq(e.restored, 0, "the deadline was not the waiter's own after the wait");
        /* the waiter ended holding m: it is locked, and unlocks exactly once */
        cr_assert_eq(urt_mutex_try_lock(e.m), -EBUSY, "%u workers: m was not held after the wait", w);
        cr_assert_eq(urt_mutex_unlock(e.m), 0);
        cr_assert_eq(urt_mutex_unlock(e.m), -EPERM);
        cr_assert_eq(urt_mutex_try_lock(e.m), 0);
        cr_assert_eq(urt_mutex_unlock(e.m), 0);
        urt_cond_destroy(e.c);
        urt_mutex_destroy(e.m);
        urt_runtime_destroy(rt);
    }
}

Test(cond, a_cancelled_wait_returns_ecanceled_with_the_mutex_held, .timeout = 60)
{
    check_end(END_CANCEL, -ECANCELED);
}

Test(cond, an_op_timeout_returns_etimedout_with_the_mutex_held, .timeout = 60)
{
    check_end(END_OP_TIMEOUT, -ETIMEDOUT);
}

Test(cond, a_deadline_returns_etimedout_with_the_mutex_held, .timeout = 60)
{
    check_end(END_DEADLINE, -ETIMEDOUT);
}

/* ---- a signalled waiter that was also cancelled -------------------------------------------------------- */

typedef struct racer {
    urt_mutex *m;
    urt_cond *c;
    int res;
    atomic_int done;
} racer;

static void *wait_once(void *arg)
{
    racer *r = arg;
    if (urt_mutex_lock(r->m) != 0)
        return (void *)1;
    r->res = urt_cond_wait(r->c, r->m);
    urt_mutex_unlock(r->m);
    atomic_store(&r->done, 1);
    return NULL;
}

typedef struct race {
    urt_runtime *rt;
    urt_mutex *m;
    urt_cond *c;
    racer a, b;
    int a_took;                    /* the signal went to a */
} race;

static void *cancel_and_signal(void *arg)
{
    race *x = arg;
    urt_task *a = NULL, *b = NULL;
    memset(&x->a, 0, sizeof(x->a));
    memset(&x->b, 0, sizeof(x->b));
    x->a.m = x->b.m = x->m;
    x->a.c = x->b.c = x->c;
    x->a.res = x->b.res = 1;
    if (urt_spawn(NULL, &a, wait_once, &x->a) != 0)
        return (void *)1;
    await_waiting(x->rt, a, "cond");
    if (urt_spawn(NULL, &b, wait_once, &x->b) != 0)
        return (void *)1;
    await_waiting(x->rt, b, "cond");
    urt_cancel(a);
    urt_cond_signal(x->c);   /* races a's cancellation */
    if (urt_join(a, NULL) != -ECANCELED)
        return (void *)2;
    x->a_took = x->a.res == 0;
    if (x->a.res != 0 && x->a.res != -ECANCELED)
        return (void *)3;
    if (x->a_took) {
        /* a consumed the signal: b must still wait */
        urt_sleep(10 * MS);
        if (atomic_load(&x->b.done) || !task_waits_on(x->rt, b, "cond"))
            return (void *)4;
        urt_cond_signal(x->c);
    }
    /* else the signal was b's: no second one is sent */
    if (urt_join(b, NULL) != 0 || x->b.res != 0)
        return (void *)5;
    return NULL;
}

Test(cond, a_signal_racing_a_cancellation_is_consumed_or_passed_on_never_lost, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        race x;
        memset(&x, 0, sizeof(x));
        x.rt = rt;
        cr_assert_eq(urt_mutex_create(&x.m), 0);
        cr_assert_eq(urt_cond_create(&x.c), 0);
        for (int round = 0; round < 20; round++) {
            void *err = (void *)9;
            cr_assert_eq(urt_runtime_block_on(rt, cancel_and_signal, &x, &err), 0);
            cr_assert_null(err, "%u workers, round %d: step %d failed", w, round, (int)(intptr_t)err);
            if (w == 1)
                cr_assert(x.a_took, "on one worker the signal reaches a before its cancellation is seen");
        }
        urt_cond_destroy(x.c);
        urt_mutex_destroy(x.m);
        urt_runtime_destroy(rt);
    }
}

/* ---- bad input and calls that return at once ------------------------------------------------------------ */

typedef struct quick {
    urt_mutex *m;
    urt_cond *c;
    int unlocked_res, cancelled_res, try_after_cancel;
    atomic_int started;
} quick;

static void *quick_calls(void *arg)
{
    quick *q = arg;
    q->unlocked_res = urt_cond_wait(q->c, q->m);   /* m is not locked */
    return NULL;
}

static void *cancelled_wait(void *arg)
{
    quick *q = arg;
    if (urt_mutex_lock(q->m) != 0)
        return (void *)1;
    atomic_store(&q->started, 1);
    while (!urt_cancelled())
        urt_yield();
    q->cancelled_res = urt_cond_wait(q->c, q->m);   /* at once, m never released */
    q->try_after_cancel = urt_mutex_try_lock(q->m);
    urt_mutex_unlock(q->m);
    return NULL;
}

Test(cond, bad_input_is_einval_an_unlocked_mutex_is_eperm_and_a_cancelled_task_keeps_the_mutex, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    cr_assert_eq(urt_cond_create(NULL), -EINVAL);
    urt_cond_destroy(NULL);
    cr_assert_eq(urt_cond_signal(NULL), -EINVAL);
    cr_assert_eq(urt_cond_broadcast(NULL), -EINVAL);
    quick q;
    memset(&q, 0, sizeof(q));
    q.unlocked_res = q.cancelled_res = q.try_after_cancel = 1;
    cr_assert_eq(urt_cond_create(&q.c), 0);
    cr_assert_eq(urt_mutex_create(&q.m), 0);
    cr_assert_eq(urt_cond_wait(NULL, q.m), -EINVAL);
    cr_assert_eq(urt_cond_wait(q.c, NULL), -EINVAL);
    cr_assert_eq(urt_cond_wait(q.c, q.m), -EPERM, "a plain thread waiting with an unlocked mutex");
    void *err = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, quick_calls, &q, &err), 0);
    cr_assert_null(err);
    cr_assert_eq(q.unlocked_res, -EPERM, "a task waiting with an unlocked mutex gave %d", q.unlocked_res);
    cr_assert_eq(urt_mutex_try_lock(q.m), 0, "a failed wait left the mutex locked");
    cr_assert_eq(urt_mutex_unlock(q.m), 0);

    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, cancelled_wait, &q), 0);
    while (!atomic_load(&q.started))
        usleep(1000);
    cr_assert_eq(urt_cancel(t), 0);
    cr_assert_eq(urt_join(t, NULL), -ECANCELED);
    cr_assert_eq(q.cancelled_res, -ECANCELED);
    cr_assert_eq(q.try_after_cancel, -EBUSY, "a cancelled task's wait released the mutex");
    cr_assert_eq(urt_mutex_try_lock(q.m), 0);
    cr_assert_eq(urt_mutex_unlock(q.m), 0);
    urt_cond_destroy(q.c);
    urt_mutex_destroy(q.m);
    urt_runtime_destroy(rt);
}
