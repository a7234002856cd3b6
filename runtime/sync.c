/*
 * sync.c - urt_notify, an auto-reset event with a FIFO of waiters.
 *
 * Waiters are urt_waiter records on the waiter's own stack, linked under the
 * notify's lock. signal pops the oldest and wakes it while still holding the
 * lock, so a waiter that gives up (cancelled) and unlinks itself under the
 * same lock can never be woken after it returned. A plain thread waits on
 * the waiter's futex word.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/runtime.h"

struct urt_notify {
    pthread_mutex_t lock;
    bool permit;                   /* under lock */
    urt_waiter *head, *tail;       /* under lock */
};

int urt_notify_create(urt_notify **out)
{
    if (!out)
        return -EINVAL;
    urt_notify *n = calloc(1, sizeof(*n));
    if (!n)
        return -ENOMEM;
    pthread_mutex_init(&n->lock, NULL);
    *out = n;
    return 0;
}

void urt_notify_destroy(urt_notify *n)
{
    if (!n)
        return;
    pthread_mutex_destroy(&n->lock);
    free(n);
}

static void unlink_waiter(urt_notify *n, urt_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        n->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        n->tail = w->prev;
    w->linked = false;
}

int urt_notify_signal(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    pthread_mutex_lock(&n->lock);
    urt_waiter *w = n->head;
    if (w) {
        unlink_waiter(n, w);
        waiter_wake(w, 0);
    } else {
        n->permit = true;
    }
    pthread_mutex_unlock(&n->lock);
    return 0;
}

int urt_notify_try_wait(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    pthread_mutex_lock(&n->lock);
    bool had = n->permit;
    n->permit = false;
    pthread_mutex_unlock(&n->lock);
    return had ? 0 : -EAGAIN;
}

int urt_notify_wait(urt_notify *n)
{
    if (!n)
        return -EINVAL;
    urt_task *t = urt__cur_task();
    bool in_task = t && !t->in_bip;
    if (!in_task && urt__cur_worker())
        return -EPERM;
    if (in_task && task_cancel_pending(t))
        return -ECANCELED;
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    pthread_mutex_lock(&n->lock);
    if (n->permit) {
        n->permit = false;
        pthread_mutex_unlock(&n->lock);
        return 0;
    }
    w.task = in_task ? t : NULL;
    if (in_task)
        task_ref(t);   /* dropped by waiter_wake, or by us if we give up */
    w.prev = n->tail;
    if (n->tail)
        n->tail->next = &w;
    else
        n->head = &w;
    n->tail = &w;
    w.linked = true;
    pthread_mutex_unlock(&n->lock);
    if (!in_task) {
        waiter_block(&w);
        pthread_mutex_lock(&n->lock);   /* the signaller is done with n (see below) */
        pthread_mutex_unlock(&n->lock);
        return 0;
    }
    __atomic_store_n(&t->wait_what, "notify", __ATOMIC_RELAXED);
    ring_op top;
    struct __kernel_timespec ts;
    bool timer = task_timer_start(t, &top, &ts);
    int res = 0;
    while (at_load_acquire(&w.futex) == 0) {
        int why = task_cancel_pending(t) ? -ECANCELED : (timer && top.done) ? -ETIMEDOUT : 0;
        if (why) {
            pthread_mutex_lock(&n->lock);
            bool mine = w.linked;
            if (mine)
                unlink_waiter(n, &w);
            pthread_mutex_unlock(&n->lock);
            if (mine) {
                task_unref(t);
                res = why;
                break;
            }
            /* a signal already chose us: the wake is done (under the lock), take it */
            continue;
        }
        task_suspend(t, SW_PARK);
    }
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    if (timer)
        task_timer_finish(t, &top);
    if (res == 0) {
        /* the signaller wakes us under the lock: once we hold it, it is done
         * with n, and the caller may destroy n */
        pthread_mutex_lock(&n->lock);
        pthread_mutex_unlock(&n->lock);
    }
    return res;
}
