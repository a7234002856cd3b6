/*
 * sem.c - urt_sem: a counting semaphore with a FIFO of waiters.
 *
 * release hands permits to the oldest waiters first, one each, under the
 * lock, and only what is left over is counted; so permits is non-zero only
 * while nobody waits, and a newcomer never takes a permit ahead of a waiter.
 * A permit handed to a waiter is its own from that moment: a waiter that was
 * cancelled or timed out after it was chosen returns 0 with the permit (see
 * sync.h), and one that gave up while still queued took nothing.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

struct urt_sem {
    at_lock lock;
    unsigned permits;              /* under lock; 0 while q is not empty; at most INT_MAX */
    waitq q;                       /* under lock */
};

int urt_sem_create(urt_sem **out, unsigned initial)
{
    if (!out || initial > INT_MAX)
        return -EINVAL;
    urt_sem *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->permits = initial;
    *out = s;
    return 0;
}

void urt_sem_destroy(urt_sem *s)
{
    if (!s)
        return;
    free(s);
}

int urt_sem_try_acquire(urt_sem *s)
{
    if (!s)
        return -EINVAL;
    at_lock_take(&s->lock);
    bool got = s->permits > 0;
    if (got)
        s->permits--;
    at_lock_give(&s->lock);
    return got ? 0 : -EAGAIN;
}

int urt_sem_acquire(urt_sem *s)
{
    if (!s)
        return -EINVAL;
    urt_task *t;
    int block_err;
    int r = sync_enter(&t, &block_err);
    if (r < 0)
        return r;
    at_lock_take(&s->lock);
    if (s->permits > 0) {
        s->permits--;
        at_lock_give(&s->lock);
        return 0;
    }
    if (block_err) {
        at_lock_give(&s->lock);
        return block_err;
    }
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    w.task = t;
    return sync_wait(&s->lock, &s->q, &w, "sem");
}

int urt_sem_release(urt_sem *s, unsigned n)
{
    if (!s || n > INT_MAX)
        return -EINVAL;
    at_lock_take(&s->lock);
    /* with waiters queued permits is 0 and at most n is left over */
    if (waitq_empty(&s->q) && n > INT_MAX - s->permits) {
        at_lock_give(&s->lock);
        return -EOVERFLOW;
    }
    urt_waiter *w;
    wake_after wa = {0};
    while (n > 0 && (w = waitq_pop(&s->q))) {
        waiter_wake_after(w, 0, &wa);
        n--;
    }
    s->permits += n;
    at_lock_give(&s->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_sem_value(urt_sem *s)
{
    if (!s)
        return -EINVAL;
    at_lock_take(&s->lock);
    int v = (int)s->permits;
    at_lock_give(&s->lock);
    return v;
}
