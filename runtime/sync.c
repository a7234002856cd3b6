/*
 * sync.c - the wait shared by the sync primitives (see sync.h for the
 * protocol), the cooperative budget, and urt_notify, an auto-reset event
 * with a FIFO of waiters (signal wakes the oldest or stores the one permit;
 * broadcast wakes every waiter queued at that moment and stores nothing).
 *
 * A task waits by suspending: its worker goes on with other tasks. A plain
 * thread (or a task inside urt_block_in_place) blocks on the waiter's futex
 * word. A task whose urt_op_timeout is set arms a TIMEOUT on its worker's
 * ring for the wait; its record is the task's t->timer (time.c), and the
 * task stays on that worker until the timer's CQE is in. The waiter node
 * itself lives on the waiting task's stack and other threads write it, so
 * these waits never hibernate (hibernate.c).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

/* ---- shared wait ------------------------------------------------------------ */

/* Calls that may suspend, made on this thread since its last suspension in
 * one of them. Thread-local and reached only through these out-of-line
 * functions: a migratable task may resume on another thread. */
static __thread unsigned coop_used;

__attribute__((noinline)) static bool coop_spend(void)
{
    if (++coop_used < SYNC_COOP_BUDGET)
        return false;
    coop_used = 0;
    return true;
}

__attribute__((noinline)) static void coop_reset(void) { coop_used = 0; }

int sync_caller(urt_task **t)
{
    urt_task *cur = urt__cur_task();
    if (urt__in_hook()) {
        *t = NULL;
        return -EDEADLK;   /* hooks must not wait */
    }
    bool in_task = cur && !cur->in_bip;
    *t = in_task ? cur : NULL;
    return !in_task && urt__cur_worker() ? -EPERM : 0;
}

int sync_enter(urt_task **t, int *block_err)
{
    *block_err = sync_caller(t);
    if (!*t)
        return 0;
    if (task_cancel_pending(*t))
        return task_cancelled_now(*t);
    if (coop_spend())
        urt_yield();
    return 0;
}

int sync_try(at_lock *lock, sync_now_fn now, void *obj, void *arg, int busy, urt_task **t)
{
    int block_err;
    int r = sync_enter(t, &block_err);
    if (r < 0)
        return r;
    wake_after wa = {0};
    at_lock_take(lock);
    r = now(obj, arg, &wa);
    if (r == busy && !block_err) {
        wake_after_run(&wa);   /* whom now() let in on the way (rwlock's grant): under the lock, as before */
        return SYNC_MUST_WAIT;
    }
    at_lock_give(lock);
    wake_after_run(&wa);
    return r == busy ? block_err : r;
}

int sync_wait(at_lock *lock, waitq *q, urt_waiter *w, const char *what)
{
    urt_task *t = w->task;
    if (t)
        task_ref(t);   /* the registration's: dropped by waiter_wake, or below if we give up */
    waitq_push(q, w);
    at_lock_give(lock);
    if (!t) {
        waiter_block(w);
        at_lock_take(lock);   /* step 4 */
        at_lock_give(lock);
        return w->result;
    }
    __atomic_store_n(&t->wait_what, what, __ATOMIC_RELAXED);
    bool timer = task_timer_start(t, true);
    if (timer)
        t->op_pending = true;   /* the timer's CQE comes to this worker's ring: do not migrate */
    int res;
    for (;;) {
        /* acquire: pairs with the release store in waiter_wake. Only a hint
         * that spares a suspension: the verdict is taken under the lock */
        if (!at_load_acquire(&w->futex))
            task_suspend(t, SW_PARK);
        /* step 3: the verdict, under the lock where the waker unlinked us.
         * A waker whose task_wake found us already queued (a wake left over
         * from an earlier wait) leaves the state word alone, so nothing but
         * the lock orders its futex store before this run of ours */
        at_lock_take(lock);
        if (!w->linked) {
            res = w->result;
            at_lock_give(lock);
            break;
        }
        int why = task_cancel_pending(t) ? -ECANCELED : (timer && task_timer_fired(t)) ? -ETIMEDOUT : 0;
        if (why)
            waitq_unlink(q, w);
        at_lock_give(lock);
        if (why) {
            task_unref(t);
            res = why;
            break;
        }
    }
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    if (timer) {
        task_timer_finish(t);
        t->op_pending = false;
    }
    coop_reset();
    return res;
}

/* ---- urt_notify ------------------------------------------------------------- */

struct urt_notify {
    at_lock lock;
    bool permit;                   /* under lock; never set while a waiter is queued */
    waitq q;                       /* under lock */
};

int urt_notify_create(urt_notify **out)
{
    if (!out)
        return -EINVAL;
    *out = calloc(1, sizeof(urt_notify));   /* a zeroed at_lock is free */
    return *out ? 0 : -ENOMEM;
}

void urt_notify_destroy(urt_notify *n) { free(n); }

int urt_notify_signal(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&n->lock);
    urt_waiter *w = waitq_pop(&n->q);
    if (w)
        waiter_wake_after(w, 0, &wa);
    else
        n->permit = true;
    at_lock_give(&n->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_notify_broadcast(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&n->lock);
    /* the permit is never set while a waiter is queued, and stays as it is:
     * with nobody waiting this does nothing */
    waitq_wake_all(&n->q, 0, &wa);
    at_lock_give(&n->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_notify_try_wait(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    at_lock_take(&n->lock);
    bool had = n->permit;
    n->permit = false;
    at_lock_give(&n->lock);
    return had ? 0 : -EAGAIN;
}

int urt_notify_wait(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    urt_task *t;
    int r = sync_caller(&t);
    if (r < 0)
        return r;
    if (t && task_cancel_pending(t))
        return task_cancelled_now(t);
    at_lock_take(&n->lock);
    if (n->permit) {
        n->permit = false;
        at_lock_give(&n->lock);
        return 0;
    }
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    w.task = t;
    return sync_wait(&n->lock, &n->q, &w, "notify");
}
