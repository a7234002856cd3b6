/*
 * test_sem.c - urt_sem bounds how many hold a permit, hands released
 * permits to waiters in FIFO order, suspends a task and blocks a plain
 * thread, and loses no permit when a waiter is cancelled or times out.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

#if defined(URT_ASAN) || defined(URT_TSAN)
#define ROUNDS_PER_CONTENDER 2000
#else
#define ROUNDS_PER_CONTENDER 10000
#endif

static void *bystander(void *arg) { return arg; }

/* ---- bounded concurrency, no starvation ------------------------------------------------------ */

#define SEM_PERMITS 3

typedef struct pool {
    urt_sem *s;
    atomic_int inside, max_inside, errors, finished;
} pool;

static void *use_permit(void *arg)
{
    pool *p = arg;
    for (unsigned i = 0; i < ROUNDS_PER_CONTENDER; i++) {
        if (urt_sem_acquire(p->s) != 0) {
            atomic_fetch_add(&p->errors, 1);
            continue;
        }
        int n = atomic_fetch_add(&p->inside, 1) + 1;
        int m = atomic_load(&p->max_inside);
        while (n > m && !atomic_compare_exchange_weak(&p->max_inside, &m, n))
            ;
        if ((i & 63) == 0)
            urt_yield();   /* hold the permit across a yield: the others queue up */
        atomic_fetch_sub(&p->inside, 1);
        if (urt_sem_release(p->s, 1) != 0)
            atomic_fetch_add(&p->errors, 1);
    }
    atomic_fetch_add(&p->finished, 1);
    return NULL;
}

Test(sem, at_most_the_initial_permits_are_held_at_once_and_every_contender_finishes, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        pool p;
        memset(&p, 0, sizeof(p));
        cr_assert_eq(urt_sem_create(&p.s, SEM_PERMITS), 0);
        urt_task *t[8];
        pthread_t th[2];
        for (int i = 0; i < 8; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], use_permit, &p), 0);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, use_permit, &p), 0);
        for (int i = 0; i < 8; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(atomic_load(&p.errors), 0, "%u workers: %d errors", w, atomic_load(&p.errors));
        cr_assert_eq(atomic_load(&p.finished), 10);
        cr_assert_leq(atomic_load(&p.max_inside), SEM_PERMITS, "%u workers: %d held permits at once", w,
                      atomic_load(&p.max_inside));
        cr_assert_geq(atomic_load(&p.max_inside), 1);
        cr_assert_eq(urt_sem_value(p.s), SEM_PERMITS, "%u workers: %d permits at the end", w, urt_sem_value(p.s));
        urt_sem_destroy(p.s);
        urt_runtime_destroy(rt);
    }
}

/* ---- FIFO hand-off ---------------------------------------------------------------------------- */

#define FIFO_WAITERS 6

typedef struct fifo {
    urt_runtime *rt;
    urt_sem *s;
    int order[FIFO_WAITERS];
    atomic_int n;
    int errors;
    int value_after_extra;
} fifo;

typedef struct fifo_arg {
    fifo *f;
    int id;
} fifo_arg;

static void *fifo_waiter(void *arg)
{
    fifo_arg *a = arg;
    if (urt_sem_acquire(a->f->s) != 0)
        return (void *)1;
    a->f->order[atomic_fetch_add(&a->f->n, 1)] = a->id;
    return NULL;
}

static void *fifo_main(void *arg)
{
    fifo *f = arg;
    fifo_arg args[FIFO_WAITERS];
    urt_task *t[FIFO_WAITERS];
    for (int i = 0; i < FIFO_WAITERS; i++) {
        args[i] = (fifo_arg){f, i};
        if (urt_spawn(NULL, &t[i], fifo_waiter, &args[i]) != 0)
            return (void *)2;
        await_waiting(f->rt, t[i], "sem");
    }
    for (int k = 0; k < FIFO_WAITERS - 2; k++) {
        if (urt_sem_release(f->s, 1) != 0)
            f->errors++;
        /* the permit went to the oldest waiter: a newcomer finds none */
        if (urt_sem_try_acquire(f->s) != -EAGAIN)
            f->errors++;
        while (atomic_load(&f->n) < k + 1)
            urt_sleep(MS);
    }
    /* more permits than waiters: one each, the rest are kept */
    if (urt_sem_release(f->s, 5) != 0)
        f->errors++;
    for (int i = 0; i < FIFO_WAITERS; i++) {
        void *r = (void *)1;
        if (urt_join(t[i], &r) != 0 || r != NULL)
            f->errors++;
    }
    f->value_after_extra = urt_sem_value(f->s);
    return NULL;
}

Test(sem, release_hands_permits_to_waiters_in_the_order_they_came, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        fifo f;
        memset(&f, 0, sizeof(f));
        f.rt = rt;
        cr_assert_eq(urt_sem_create(&f.s, 0), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, fifo_main, &f, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(f.errors, 0);
        cr_assert_eq(atomic_load(&f.n), FIFO_WAITERS);
        for (int i = 0; i < FIFO_WAITERS - 2; i++)
            cr_assert_eq(f.order[i], i, "%u workers: waiter %d got permit %d", w, f.order[i], i);
        cr_assert_eq(f.value_after_extra, 3, "release(5) with 2 waiters left %d permits", f.value_after_extra);
        urt_sem_destroy(f.s);
        urt_runtime_destroy(rt);
    }
}

/* ---- plain threads ------------------------------------------------------------------------------ */

typedef struct thread_wait {
    urt_sem *s;
    atomic_int got;
    int res;
} thread_wait;

static void *thread_acquire(void *arg)
{
    thread_wait *tw = arg;
    tw->res = urt_sem_acquire(tw->s);
    atomic_store(&tw->got, 1);
    return NULL;
}

static void *release_one(void *arg)
{
    return (void *)(intptr_t)urt_sem_release(arg, 1);
}

Test(sem, a_plain_thread_blocks_in_acquire_until_a_task_releases, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        thread_wait tw = {.res = 1};
        cr_assert_eq(urt_sem_create(&tw.s, 0), 0);
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_acquire, &tw), 0);
        usleep(20 * 1000);
        cr_assert_eq(atomic_load(&tw.got), 0);
        urt_task *t = NULL;
        void *r = (void *)1;
        cr_assert_eq(urt_spawn(rt, &t, release_one, tw.s), 0);
        cr_assert_eq(urt_join(t, &r), 0);
        cr_assert_null(r);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(tw.res, 0);
        cr_assert_eq(urt_sem_value(tw.s), 0);
        urt_sem_destroy(tw.s);
        urt_runtime_destroy(rt);
    }
}

/* ---- try_acquire, release limits, bad input ------------------------------------------------------- */

Test(sem, try_acquire_takes_only_free_permits_and_release_refuses_overflow, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    urt_sem *s = NULL;
    cr_assert_eq(urt_sem_create(NULL, 1), -EINVAL);
    cr_assert_eq(urt_sem_create(&s, (unsigned)INT32_MAX + 1u), -EINVAL);
    cr_assert_eq(urt_sem_acquire(NULL), -EINVAL);
    cr_assert_eq(urt_sem_try_acquire(NULL), -EINVAL);
    cr_assert_eq(urt_sem_release(NULL, 1), -EINVAL);
    cr_assert_eq(urt_sem_value(NULL), -EINVAL);
    urt_sem_destroy(NULL);

    cr_assert_eq(urt_sem_create(&s, 2), 0);
    cr_assert_eq(urt_sem_value(s), 2);
    cr_assert_eq(urt_sem_try_acquire(s), 0);
    cr_assert_eq(urt_sem_acquire(s), 0, "a plain thread takes a free permit");
    cr_assert_eq(urt_sem_try_acquire(s), -EAGAIN);
    cr_assert_eq(urt_sem_value(s), 0);
    cr_assert_eq(urt_sem_release(s, 0), 0);
    cr_assert_eq(urt_sem_value(s), 0);
    cr_assert_eq(urt_sem_release(s, INT32_MAX), 0);
    cr_assert_eq(urt_sem_release(s, 1), -EOVERFLOW);
    cr_assert_eq(urt_sem_release(s, (unsigned)INT32_MAX + 1u), -EINVAL);
    cr_assert_eq(urt_sem_value(s), INT32_MAX, "a refused release changed the count");
    cr_assert_eq(urt_sem_try_acquire(s), 0);
    cr_assert_eq(urt_sem_release(s, 1), 0);
    urt_sem_destroy(s);
    urt_runtime_destroy(rt);
}

/* ---- cancellation and timeout ----------------------------------------------------------------------- */

typedef struct victim {
    urt_sem *s;
    int res, again;
} victim;

static void *acquire_once(void *arg)
{
    victim *v = arg;
    v->res = urt_sem_acquire(v->s);
    if (v->res != 0)
        v->again = urt_sem_acquire(v->s);   /* a cancelled task: -ECANCELED at once */
    return NULL;
}

typedef struct cancel_case {
    urt_runtime *rt;
    urt_sem *s;
    victim a, b;
    int join_a, join_b, value_after;
} cancel_case;

static void *cancel_a_queued_acquirer(void *arg)
{
    cancel_case *c = arg;
    urt_task *a = NULL, *b = NULL;
    c->a = (victim){c->s, 1, 1};
    c->b = (victim){c->s, 1, 1};
    if (urt_spawn(NULL, &a, acquire_once, &c->a) != 0)
        return (void *)1;
    await_waiting(c->rt, a, "sem");
    if (urt_spawn(NULL, &b, acquire_once, &c->b) != 0)
        return (void *)2;
    await_waiting(c->rt, b, "sem");
    urt_cancel(a);
    c->join_a = urt_join(a, NULL);
    urt_sem_release(c->s, 1);   /* to b: a is gone */
    c->join_b = urt_join(b, NULL);
    c->value_after = urt_sem_value(c->s);
    return NULL;
}

Test(sem, a_cancelled_waiter_takes_no_permit_and_the_next_waiter_gets_it, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        cancel_case c;
        memset(&c, 0, sizeof(c));
        c.rt = rt;
        cr_assert_eq(urt_sem_create(&c.s, 0), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, cancel_a_queued_acquirer, &c, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(c.join_a, -ECANCELED);
        cr_assert_eq(c.a.res, -ECANCELED, "%u workers: the cancelled acquire gave %d", w, c.a.res);
        cr_assert_eq(c.a.again, -ECANCELED);
        cr_assert_eq(c.join_b, 0);
        cr_assert_eq(c.b.res, 0, "%u workers: the waiter behind the cancelled one gave %d", w, c.b.res);
        cr_assert_eq(c.value_after, 0);
        cr_assert_eq(urt_sem_release(c.s, 1), 0);
        cr_assert_eq(urt_sem_value(c.s), 1);
        urt_sem_destroy(c.s);
        urt_runtime_destroy(rt);
    }
}

typedef struct late_cancel {
    urt_runtime *rt;
    urt_sem *s;
    victim v;
    int value_after;
} late_cancel;

static void *cancel_then_release(void *arg)
{
    late_cancel *l = arg;
    urt_task *t = NULL;
    l->v = (victim){l->s, 1, 1};
    if (urt_spawn(NULL, &t, acquire_once, &l->v) != 0)
        return (void *)1;
    await_waiting(l->rt, t, "sem");
    urt_cancel(t);
    urt_sem_release(l->s, 1);   /* races the cancellation; on one worker the hand-off wins */
    urt_join(t, NULL);
    l->value_after = urt_sem_value(l->s);
    return NULL;
}

Test(sem, a_waiter_cancelled_after_the_handoff_keeps_the_permit_and_returns_0, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        late_cancel l;
        memset(&l, 0, sizeof(l));
        l.rt = rt;
        cr_assert_eq(urt_sem_create(&l.s, 0), 0);
        for (int round = 0; round < 20; round++) {
            void *err = (void *)1;
            cr_assert_eq(urt_runtime_block_on(rt, cancel_then_release, &l, &err), 0);
            cr_assert_null(err);
            if (w == 1)
                cr_assert_eq(l.v.res, 0, "the permit was handed over before the waiter ran: acquire gave %d", l.v.res);
            if (l.v.res == 0) {
                cr_assert_eq(l.value_after, 0, "the waiter took a permit and it is still counted");
            } else {
                cr_assert_eq(l.v.res, -ECANCELED, "acquire gave %d", l.v.res);
                cr_assert_eq(l.value_after, 1, "the released permit was lost");
                cr_assert_eq(urt_sem_try_acquire(l.s), 0);
            }
        }
        urt_sem_destroy(l.s);
        urt_runtime_destroy(rt);
    }
}

typedef struct timed {
    urt_sem *s;
    int res;
    uint64_t elapsed;
    bool cancelled;
} timed;

static void *acquire_with_timeout(void *arg)
{
    timed *tm = arg;
    uint64_t old = urt_op_timeout(10 * MS);
    uint64_t t0 = urt_now();
    tm->res = urt_sem_acquire(tm->s);
    tm->elapsed = urt_now() - t0;
    urt_op_timeout(old);
    tm->cancelled = urt_cancelled();
    return NULL;
}

Test(sem, op_timeout_makes_an_acquire_return_etimedout_and_takes_no_permit, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        timed tm = {.res = 1};
        cr_assert_eq(urt_sem_create(&tm.s, 0), 0);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, acquire_with_timeout, &tm), 0);
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(tm.res, -ETIMEDOUT, "%u workers: acquire with a 10 ms timeout gave %d", w, tm.res);
        cr_assert_geq(tm.elapsed, 10 * MS);
        cr_assert(!tm.cancelled);
        cr_assert_eq(urt_sem_release(tm.s, 1), 0);
        cr_assert_eq(urt_sem_value(tm.s), 1, "the timed-out waiter was still queued and took the permit");
        urt_sem_destroy(tm.s);
        urt_runtime_destroy(rt);
    }
}

/* ---- inside a hook (on a worker thread) ------------------------------------------------------------------ */

typedef struct hook_checks {
    atomic_int armed, done;
    urt_sem *empty, *one;
    int acquire_empty, acquire_one, try_empty;
} hook_checks;

static void checking_terminate_hook(urt_task *t, void *data)
{
    (void)t;
    hook_checks *h = data;
    if (urt_worker_id() < 0)
        return;
    int one = 1;
    if (!atomic_compare_exchange_strong(&h->armed, &one, 0))
        return;
    h->acquire_empty = urt_sem_acquire(h->empty);
    h->try_empty = urt_sem_try_acquire(h->empty);
    h->acquire_one = urt_sem_acquire(h->one);
    atomic_store(&h->done, 1);
}

Test(sem, acquire_in_a_hook_is_edeadlk_only_when_it_would_wait, .timeout = 30)
{
    static hook_checks h;
    memset(&h, 0, sizeof(h));
    h.acquire_empty = h.acquire_one = h.try_empty = 1;
    urt_config cfg = {.workers = 2, .on_task_terminate = checking_terminate_hook, .hook_data = &h};
    urt_runtime *rt = rt_new_cfg(&cfg);
    cr_assert_eq(urt_sem_create(&h.empty, 0), 0);
    cr_assert_eq(urt_sem_create(&h.one, 1), 0);
    atomic_store(&h.armed, 1);
    while (!atomic_load(&h.done)) {
        urt_task *q = NULL;
        cr_assert_eq(urt_spawn(rt, &q, bystander, NULL), 0);
        cr_assert_eq(urt_join(q, NULL), 0);
    }
    cr_assert_eq(h.acquire_empty, -EDEADLK, "acquire of an empty sem in a hook gave %d",
                 h.acquire_empty);
    cr_assert_eq(h.try_empty, -EAGAIN);
    cr_assert_eq(h.acquire_one, 0, "a free permit needs no waiting (%d)", h.acquire_one);
    cr_assert_eq(urt_sem_value(h.one), 0);
    urt_runtime_destroy(rt);
    urt_sem_destroy(h.empty);
    urt_sem_destroy(h.one);
}
