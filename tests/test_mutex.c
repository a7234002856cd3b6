/*
 * test_mutex.c - urt_mutex excludes, hands itself to waiters in FIFO order
 * so every contender gets through, suspends a task without blocking its
 * worker, blocks a plain thread, and stays consistent when a waiter is
 * cancelled or times out.
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
#define LOCKS_PER_CONTENDER 2000
#else
#define LOCKS_PER_CONTENDER 10000
#endif

/* ---- exclusion and no starvation ---------------------------------------------------------- */

typedef struct contention {
    urt_mutex *m;
    uint64_t counter;              /* under m, deliberately not atomic */
    unsigned holders;              /* under m: must never exceed 1 */
    atomic_int errors;
    atomic_int finished;
} contention;

static void *contend(void *arg)
{
    contention *c = arg;
    for (unsigned i = 0; i < LOCKS_PER_CONTENDER; i++) {
        int r = urt_mutex_lock(c->m);
        if (r != 0) {
            atomic_fetch_add(&c->errors, 1);
            continue;
        }
        if (++c->holders != 1)
            atomic_fetch_add(&c->errors, 1);
        c->counter++;
        if ((i & 63) == 0)
            urt_yield();   /* hold it across a yield: the others queue up behind */
        c->holders--;
        if (urt_mutex_unlock(c->m) != 0)
            atomic_fetch_add(&c->errors, 1);
    }
    atomic_fetch_add(&c->finished, 1);
    return NULL;
}

Test(mutex, eight_contending_tasks_all_finish_and_the_counter_is_exact, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        contention c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(urt_mutex_create(&c.m), 0);
        urt_task *t[8];
        for (int i = 0; i < 8; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], contend, &c), 0);
        for (int i = 0; i < 8; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        cr_assert_eq(atomic_load(&c.errors), 0, "%u workers: %d lock/unlock errors or overlaps", w,
                     atomic_load(&c.errors));
        cr_assert_eq(atomic_load(&c.finished), 8);
        cr_assert_eq(c.counter, 8ull * LOCKS_PER_CONTENDER, "%u workers: counter %llu", w,
                     (unsigned long long)c.counter);
        cr_assert_eq(urt_mutex_try_lock(c.m), 0, "the mutex was left locked");
        cr_assert_eq(urt_mutex_unlock(c.m), 0);
        urt_mutex_destroy(c.m);
        urt_runtime_destroy(rt);
    }
}

static void *contend_thread(void *arg)
{
    contend(arg);
    return NULL;
}

Test(mutex, tasks_and_plain_threads_contending_all_finish_and_the_counter_is_exact, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        contention c;
        memset(&c, 0, sizeof(c));
        cr_assert_eq(urt_mutex_create(&c.m), 0);
        urt_task *t[6];
        pthread_t th[2];
        for (int i = 0; i < 6; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], contend, &c), 0);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, contend_thread, &c), 0);
        for (int i = 0; i < 6; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < 2; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(atomic_load(&c.errors), 0, "%u workers: %d errors", w, atomic_load(&c.errors));
        cr_assert_eq(atomic_load(&c.finished), 8);
        cr_assert_eq(c.counter, 8ull * LOCKS_PER_CONTENDER);
        urt_mutex_destroy(c.m);
        urt_runtime_destroy(rt);
    }
}

/* ---- FIFO hand-off ------------------------------------------------------------------------- */

#define FIFO_WAITERS 6

typedef struct fifo {
    urt_runtime *rt;
    urt_mutex *m;
    int order[FIFO_WAITERS];
    int n;                         /* under m */
    int ids[FIFO_WAITERS];
    int errors;                    /* under m, or after the joins */
} fifo;

typedef struct fifo_arg {
    fifo *f;
    int id;
} fifo_arg;

static void *fifo_waiter(void *arg)
{
    fifo_arg *a = arg;
    if (urt_mutex_lock(a->f->m) != 0)
        return (void *)1;
    a->f->order[a->f->n++] = a->id;
    urt_mutex_unlock(a->f->m);
    return NULL;
}

static void *fifo_main(void *arg)
{
    fifo *f = arg;
    fifo_arg args[FIFO_WAITERS];
    urt_task *t[FIFO_WAITERS];
    if (urt_mutex_lock(f->m) != 0)
        return (void *)1;
    for (int i = 0; i < FIFO_WAITERS; i++) {
        args[i] = (fifo_arg){f, i};
        if (urt_spawn(NULL, &t[i], fifo_waiter, &args[i]) != 0)
            return (void *)2;
        await_waiting(f->rt, t[i], "mutex");   /* queued in spawn order */
    }
    /* a newcomer cannot overtake the queue */
    if (urt_mutex_try_lock(f->m) != -EBUSY)
        f->errors++;
    urt_mutex_unlock(f->m);
    for (int i = 0; i < FIFO_WAITERS; i++) {
        void *r = (void *)1;
        if (urt_join(t[i], &r) != 0 || r != NULL)
            f->errors++;
    }
    return NULL;
}

Test(mutex, unlock_hands_the_mutex_to_waiters_in_the_order_they_came, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        fifo f;
        memset(&f, 0, sizeof(f));
        f.rt = rt;
        cr_assert_eq(urt_mutex_create(&f.m), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, fifo_main, &f, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(f.errors, 0);
        cr_assert_eq(f.n, FIFO_WAITERS);
        for (int i = 0; i < FIFO_WAITERS; i++)
            cr_assert_eq(f.order[i], i, "%u workers: waiter %d got the mutex in place %d", w, f.order[i], i);
        urt_mutex_destroy(f.m);
        urt_runtime_destroy(rt);
    }
}

/* ---- plain threads block, tasks do not block their worker ----------------------------------- */

typedef struct mixed {
    urt_mutex *m;
    atomic_int thread_got, task_got;
    int thread_res, task_res;
} mixed;

static void *thread_locker(void *arg)
{
    mixed *x = arg;
    x->thread_res = urt_mutex_lock(x->m);
    atomic_store(&x->thread_got, 1);
    urt_mutex_unlock(x->m);
    return NULL;
}

static void *task_locker(void *arg)
{
    mixed *x = arg;
    x->task_res = urt_mutex_lock(x->m);
    atomic_store(&x->task_got, 1);
    urt_mutex_unlock(x->m);
    return NULL;
}

static void *bystander(void *arg) { return arg; }

Test(mutex, a_plain_thread_blocks_and_a_task_suspends_until_the_holder_unlocks, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        mixed x;
        memset(&x, 0, sizeof(x));
        x.thread_res = x.task_res = 1;
        cr_assert_eq(urt_mutex_create(&x.m), 0);
        cr_assert_eq(urt_mutex_lock(x.m), 0, "a plain thread locks a free mutex");
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, task_locker, &x), 0);
        await_waiting(rt, t, "mutex");
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, thread_locker, &x), 0);
        /* every worker still runs tasks while one task waits for the mutex */
        for (unsigned i = 0; i < 4 * w; i++) {
            urt_task *b = NULL;
            void *r = NULL;
            cr_assert_eq(urt_spawn(rt, &b, bystander, (void *)(uintptr_t)(i + 1)), 0);
            cr_assert_eq(urt_join(b, &r), 0);
            cr_assert_eq((uintptr_t)r, i + 1);
        }
        usleep(20 * 1000);
        cr_assert_eq(atomic_load(&x.thread_got), 0);
        cr_assert_eq(atomic_load(&x.task_got), 0);
        cr_assert_eq(urt_mutex_unlock(x.m), 0);
        cr_assert_eq(pthread_join(th, NULL), 0);
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(x.thread_res, 0);
        cr_assert_eq(x.task_res, 0);
        cr_assert_eq(urt_mutex_try_lock(x.m), 0);
        cr_assert_eq(urt_mutex_unlock(x.m), 0);
        urt_mutex_destroy(x.m);
        urt_runtime_destroy(rt);
    }
}

/* ---- try_lock, unlock, bad input ------------------------------------------------------------ */

static void *try_in_task(void *arg)
{
    urt_mutex *m = arg;
    int bad = 0;
    bad += urt_mutex_try_lock(m) != -EBUSY;   /* held by the caller of block_on */
    return (void *)(intptr_t)bad;
}

Test(mutex, try_lock_takes_only_a_free_mutex_and_unlock_of_a_free_one_is_eperm, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    cr_assert_eq(urt_mutex_create(NULL), -EINVAL);
    cr_assert_eq(urt_mutex_lock(NULL), -EINVAL);
    cr_assert_eq(urt_mutex_try_lock(NULL), -EINVAL);
    cr_assert_eq(urt_mutex_unlock(NULL), -EINVAL);
    urt_mutex_destroy(NULL);

    urt_mutex *m = NULL;
    cr_assert_eq(urt_mutex_create(&m), 0);
    cr_assert_eq(urt_mutex_unlock(m), -EPERM);
    cr_assert_eq(urt_mutex_try_lock(m), 0);
    cr_assert_eq(urt_mutex_try_lock(m), -EBUSY);
    void *bad = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, try_in_task, m, &bad), 0);
    cr_assert_null(bad);
    cr_assert_eq(urt_mutex_unlock(m), 0);
    cr_assert_eq(urt_mutex_unlock(m), -EPERM);
    cr_assert_eq(urt_mutex_lock(m), 0);
    cr_assert_eq(urt_mutex_unlock(m), 0);
    urt_mutex_destroy(m);
    urt_runtime_destroy(rt);
}

/* ---- cancellation and timeout ----------------------------------------------------------------- */

typedef struct victim {
    urt_mutex *m;
    int res, again;
} victim;

static void *lock_then_unlock(void *arg)
{
    victim *v = arg;
    v->res = urt_mutex_lock(v->m);
    if (v->res == 0) {
        urt_mutex_unlock(v->m);
        return NULL;
    }
    v->again = urt_mutex_lock(v->m);   /* a cancelled task: -ECANCELED at once */
    if (v->again == 0)
        urt_mutex_unlock(v->m);
    return NULL;
}

typedef struct cancel_case {
    urt_runtime *rt;
    urt_mutex *m;
    victim a, b;
    int join_a, join_b, try_after;
} cancel_case;

static void *cancel_a_queued_locker(void *arg)
{
    cancel_case *c = arg;
    urt_task *a = NULL, *b = NULL;
    if (urt_mutex_lock(c->m) != 0)
        return (void *)1;
    c->a.m = c->b.m = c->m;
    c->a.res = c->b.res = c->a.again = 1;
    if (urt_spawn(NULL, &a, lock_then_unlock, &c->a) != 0)
        return (void *)2;
    await_waiting(c->rt, a, "mutex");
    if (urt_spawn(NULL, &b, lock_then_unlock, &c->b) != 0)
        return (void *)3;
    await_waiting(c->rt, b, "mutex");
    urt_cancel(a);
    c->join_a = urt_join(a, NULL);   /* a gave up while we hold the mutex */
    urt_mutex_unlock(c->m);          /* goes to b, the next in line */
    c->join_b = urt_join(b, NULL);
    c->try_after = urt_mutex_try_lock(c->m);
    if (c->try_after == 0)
        urt_mutex_unlock(c->m);
    return NULL;
}

Test(mutex, a_cancelled_waiter_gets_ecanceled_and_the_next_waiter_gets_the_mutex, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        cancel_case c;
        memset(&c, 0, sizeof(c));
        c.rt = rt;
        cr_assert_eq(urt_mutex_create(&c.m), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, cancel_a_queued_locker, &c, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(c.join_a, -ECANCELED);
        cr_assert_eq(c.a.res, -ECANCELED, "%u workers: the cancelled lock gave %d", w, c.a.res);
        cr_assert_eq(c.a.again, -ECANCELED, "a lock in a cancelled task gave %d", c.a.again);
        cr_assert_eq(c.join_b, 0);
        cr_assert_eq(c.b.res, 0, "%u workers: the waiter behind the cancelled one gave %d", w, c.b.res);
        cr_assert_eq(c.try_after, 0, "the mutex was left locked");
        urt_mutex_destroy(c.m);
        urt_runtime_destroy(rt);
    }
}

typedef struct late_cancel {
    urt_runtime *rt;
    urt_mutex *m;
    victim v;
    int try_after;
} late_cancel;

static void *cancel_then_unlock(void *arg)
{
    late_cancel *l = arg;
    urt_task *t = NULL;
    if (urt_mutex_lock(l->m) != 0)
        return (void *)1;
    l->v.m = l->m;
    l->v.res = l->v.again = 1;
    if (urt_spawn(NULL, &t, lock_then_unlock, &l->v) != 0)
        return (void *)2;
    await_waiting(l->rt, t, "mutex");
    urt_cancel(t);
    urt_mutex_unlock(l->m);   /* races the cancellation; on one worker the hand-off wins */
    urt_join(t, NULL);
    l->try_after = urt_mutex_try_lock(l->m);
    if (l->try_after == 0)
        urt_mutex_unlock(l->m);
    return NULL;
}

Test(mutex, a_waiter_cancelled_after_the_handoff_owns_the_mutex_and_returns_0, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        late_cancel l;
        memset(&l, 0, sizeof(l));
        l.rt = rt;
        cr_assert_eq(urt_mutex_create(&l.m), 0);
        for (int round = 0; round < 20; round++) {
            void *err = (void *)1;
            cr_assert_eq(urt_runtime_block_on(rt, cancel_then_unlock, &l, &err), 0);
            cr_assert_null(err);
            if (w == 1)
                cr_assert_eq(l.v.res, 0, "the mutex was handed over before the waiter ran: lock gave %d", l.v.res);
            else
                cr_assert(l.v.res == 0 || l.v.res == -ECANCELED, "lock gave %d", l.v.res);
            cr_assert_eq(l.try_after, 0, "%u workers: the mutex was left locked (lock gave %d)", w, l.v.res);
        }
        urt_mutex_destroy(l.m);
        urt_runtime_destroy(rt);
    }
}

typedef struct timed {
    urt_mutex *m;
    int res;
    uint64_t elapsed;
    bool cancelled;
} timed;

static void *lock_with_timeout(void *arg)
{
    timed *tm = arg;
    uint64_t old = urt_op_timeout(10 * MS);
    uint64_t t0 = urt_now();
    tm->res = urt_mutex_lock(tm->m);
    tm->elapsed = urt_now() - t0;
    urt_op_timeout(old);
    tm->cancelled = urt_cancelled();
    if (tm->res == 0)
        urt_mutex_unlock(tm->m);
    return NULL;
}

Test(mutex, op_timeout_makes_a_lock_return_etimedout_and_the_mutex_stays_usable, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        timed tm = {.res = 1};
        cr_assert_eq(urt_mutex_create(&tm.m), 0);
        cr_assert_eq(urt_mutex_lock(tm.m), 0);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, lock_with_timeout, &tm), 0);
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(tm.res, -ETIMEDOUT, "%u workers: lock with a 10 ms timeout gave %d", w, tm.res);
        cr_assert_geq(tm.elapsed, 10 * MS);
        cr_assert(!tm.cancelled, "a timeout is not a cancellation");
        cr_assert_eq(urt_mutex_unlock(tm.m), 0);
        cr_assert_eq(urt_mutex_try_lock(tm.m), 0, "the timed-out waiter left the mutex locked");
        cr_assert_eq(urt_mutex_unlock(tm.m), 0);
        urt_mutex_destroy(tm.m);
        urt_runtime_destroy(rt);
    }
}

/* ---- inside a hook (on a worker thread); cooperative yield ------------------------------------------ */

typedef struct hook_checks {
    atomic_int armed, done;
    urt_mutex *held, *free_m;
    int lock_held, try_held, lock_free, unlock_free;
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
    h->lock_held = urt_mutex_lock(h->held);
    h->try_held = urt_mutex_try_lock(h->held);
    h->lock_free = urt_mutex_lock(h->free_m);
    h->unlock_free = urt_mutex_unlock(h->free_m);
    atomic_store(&h->done, 1);
}

Test(mutex, lock_in_a_hook_is_edeadlk_only_when_it_would_wait, .timeout = 30)
{
    static hook_checks h;
    memset(&h, 0, sizeof(h));
    h.lock_held = h.try_held = h.lock_free = h.unlock_free = 1;
    urt_config cfg = {.workers = 2, .on_task_terminate = checking_terminate_hook, .hook_data = &h};
    urt_runtime *rt = rt_new_cfg(&cfg);
    cr_assert_eq(urt_mutex_create(&h.held), 0);
    cr_assert_eq(urt_mutex_create(&h.free_m), 0);
    cr_assert_eq(urt_mutex_lock(h.held), 0);
    atomic_store(&h.armed, 1);
    while (!atomic_load(&h.done)) {
        urt_task *q = NULL;
        cr_assert_eq(urt_spawn(rt, &q, bystander, NULL), 0);
        cr_assert_eq(urt_join(q, NULL), 0);
    }
    cr_assert_eq(h.lock_held, -EDEADLK, "lock of a held mutex in a hook gave %d", h.lock_held);
    cr_assert_eq(h.try_held, -EBUSY);
    cr_assert_eq(h.lock_free, 0, "lock of a free mutex needs no waiting (%d)", h.lock_free);
    cr_assert_eq(h.unlock_free, 0);
    cr_assert_eq(urt_mutex_unlock(h.held), 0);
    urt_runtime_destroy(rt);
    urt_mutex_destroy(h.held);
    urt_mutex_destroy(h.free_m);
}

typedef struct spinner {
    urt_mutex *m;
    atomic_int other_ran;
    unsigned long rounds;
} spinner;

static void *mark_ran(void *arg)
{
    spinner *s = arg;
    atomic_store(&s->other_ran, 1);
    return NULL;
}

static void *lock_loop(void *arg)
{
    spinner *s = arg;
    urt_task *o = NULL;
    if (urt_spawn(NULL, &o, mark_ran, s) != 0)
        return (void *)1;
    /* never waits: the mutex is always free. Only the budget lets o run. */
    while (!atomic_load(&s->other_ran) && s->rounds < 100000000ul) {
        urt_mutex_lock(s->m);
        urt_mutex_unlock(s->m);
        s->rounds++;
    }
    urt_join(o, NULL);
    return NULL;
}

Test(mutex, a_task_locking_a_free_mutex_in_a_loop_lets_its_worker_run_other_tasks, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    spinner s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(urt_mutex_create(&s.m), 0);
    void *err = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, lock_loop, &s, &err), 0);
    cr_assert_null(err);
    cr_assert_eq(atomic_load(&s.other_ran), 1);
    cr_assert_lt(s.rounds, 100000000ul, "the other task never ran while the loop went on");
    urt_mutex_destroy(s.m);
    urt_runtime_destroy(rt);
}
