/*
 * cond.c - urt_cond: a condition variable used with a urt_mutex, on the
 * waiter queue of sync.h.
 *
 * Wait, step by step:
 *   1. Take c->lock, then release the caller's mutex m (its unlock may hand
 *      m to one of m's waiters at once).
 *   2. sync_wait queues the waiter on c->q and drops c->lock. Because c->lock
 *      was held from before m was released until the waiter was queued, a
 *      signal sent by anyone who took m after us finds the waiter queued:
 *      no signal is lost in the gap.
 *   3. A signal pops the oldest waiter under c->lock and wakes it with 0; a
 *      broadcast pops them all. A waiter still queued when its task is
 *      cancelled or its time bound passes unlinks itself and returns
 *      -ECANCELED / -ETIMEDOUT; it took no signal, so none is lost. A waiter
 *      popped by a signal before it noticed its cancellation or timeout
 *      consumed that signal: it returns 0 (the cancellation stays pending
 *      and ends the next suspending call).
 *   4. Whatever the wait gave, m is locked again before the call returns.
 *      A task re-locks with cancellation shielded and its op timeout and
 *      deadline put aside for that lock alone (then put back), so the lock
 *      cannot fail: the caller always holds m on return, also after
 *      -ECANCELED / -ETIMEDOUT (as after pthread_cond_timedwait, the re-lock
 *      may take longer than the bound).
 * Lock order: c->lock, then m's internal lock (step 1); nothing takes them
 * the other way round. Nothing here wakes a waiter without a signal, but
 * the contract allows spurious wakeups, so callers re-check their predicate
 * in a loop.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

struct urt_cond {
    at_lock lock;
    waitq q;                       /* under lock */
};

int urt_cond_create(urt_cond **out)
{
    if (!out)
        return -EINVAL;
    *out = calloc(1, sizeof(urt_cond));   /* a zeroed at_lock is free */
    return *out ? 0 : -ENOMEM;
}

void urt_cond_destroy(urt_cond *c) { free(c); }

/* Step 4: lock m again, unbounded and not cancellable, so it cannot fail. */
static void relock(urt_task *t, urt_mutex *m)
{
    if (!t) {
        urt_mutex_lock(m);   /* a thread that blocks: no cancellation, no bound */
        return;
    }
    bool shield = t->shield;
    uint64_t op_timeout = t->op_timeout, deadline = t->deadline;
    t->shield = true;
    t->op_timeout = 0;
    t->deadline = 0;
    urt_mutex_lock(m);
    t->shield = shield;
    t->op_timeout = op_timeout;
    t->deadline = deadline;
}

int urt_cond_wait(urt_cond *c, urt_mutex *m)
{
    if (!c || !m)
        return -EINVAL;
    urt_task *t;
    int block_err;
    int r = sync_enter(&t, &block_err);   /* -ECANCELED here: m was never released */
    if (r < 0)
        return r;
    if (block_err)
        return block_err;
    at_lock_take(&c->lock);
    r = urt_mutex_unlock(m);   /* step 1 */
    if (r < 0) {
        at_lock_give(&c->lock);
        return r;   /* m was not locked */
    }
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    w.task = t;
    r = sync_wait(&c->lock, &c->q, &w, "cond");   /* steps 2-3 */
    relock(t, m);
    return r;
}

int urt_cond_signal(urt_cond *c)
{
    if (!c)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&c->lock);
    urt_waiter *w = waitq_pop(&c->q);
    if (w)
        waiter_wake_after(w, 0, &wa);
    at_lock_give(&c->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_cond_broadcast(urt_cond *c)
{
    if (!c)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&c->lock);
    waitq_wake_all(&c->q, 0, &wa);
    at_lock_give(&c->lock);
    wake_after_run(&wa);
    return 0;
}
