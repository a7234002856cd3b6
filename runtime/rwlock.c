/*
 * rwlock.c - urt_rwlock: a reader-writer lock that prefers writers, on the
 * waiter queue of sync.h.
 *
 * Everything is under l->lock: the readers inside, whether a writer is
 * inside, and one FIFO of waiting readers and writers in arrival order.
 *
 * grant() is the one place that lets waiters in. It runs after every change
 * (an unlock, a waiter that gave up) and before every entry, and walks the
 * queue from its head while no writer is inside:
 *   - a writer at the head gets in when no reader is inside, else it stays
 *     at the head and the walk stops;
 *   - a reader at the head gets in (with the readers already inside), and
 *     the walk goes on, so every reader queued before the next writer gets
 *     in together; the readers queued behind that writer wait for it.
 * So after grant(), a non-empty queue means a writer is inside or a writer
 * waits at the head for the readers to leave. Entry, after grant():
 *   - rdlock gets in at once only when no writer is inside and nobody is
 *     queued: a waiting writer stops new readers (writers are preferred,
 *     and cannot starve);
 *   - wrlock gets in at once only when the lock is free and nobody is queued;
 *   - anyone else queues at the tail, so writers get in in FIFO order.
 * What grant() hands over is the waiter's from that moment (sync.h): a
 * waiter let in before it noticed its cancellation or timeout returns 0
 * holding the lock. One that gives up while still queued unlinks itself
 * (sync_wait) and then runs grant(), so whoever it held back (the readers
 * queued behind a writer that gave up) gets in.
 * The lock does not record who holds it: unlock releases the writer if one
 * is inside, else one reader; with nobody inside it is -EPERM.
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

#define RW_READERS_MAX INT_MAX

typedef struct rw_waiter {
    urt_waiter w;
    bool writer;                   /* immutable while queued */
} rw_waiter;

struct urt_rwlock {
    at_lock lock;
    unsigned readers;              /* under lock: readers inside, at most RW_READERS_MAX */
    bool writer;                   /* under lock: a writer is inside (then readers is 0) */
    waitq q;                       /* under lock: rw_waiter.w, readers and writers in arrival order */
};

static inline rw_waiter *rw_of(urt_waiter *w) { return (rw_waiter *)((char *)w - offsetof(rw_waiter, w)); }

int urt_rwlock_create(urt_rwlock **out)
{
    if (!out)
        return -EINVAL;
    *out = calloc(1, sizeof(urt_rwlock));   /* a zeroed at_lock is free */
    return *out ? 0 : -ENOMEM;
}

void urt_rwlock_destroy(urt_rwlock *l) { free(l); }

/* Let in whom the head of the queue allows (see above). Under l->lock;
 * their tasks' wakes go to wa, made once the lock is given back. */
static void grant(urt_rwlock *l, wake_after *wa)
{
    while (!l->writer && !waitq_empty(&l->q)) {
        if (rw_of(l->q.head)->writer) {
            if (l->readers)
                return;
            l->writer = true;
        } else {
            if (l->readers == RW_READERS_MAX)
                return;   /* the next reader to leave lets it in */
            l->readers++;
        }
        waiter_wake_after(waitq_pop(&l->q), 0, wa);
    }
}

/* Get in now if allowed: 0, -EBUSY (must wait), -EAGAIN (too many readers). Under l->lock. */
static int enter_now(urt_rwlock *l, bool writer, wake_after *wa)
{
    grant(l, wa);
    if (l->writer || !waitq_empty(&l->q))
        return -EBUSY;
    if (writer) {
        if (l->readers)
            return -EBUSY;
        l->writer = true;
        return 0;
    }
    if (l->readers == RW_READERS_MAX)
        return -EAGAIN;
    l->readers++;
    return 0;
}

static int read_now(void *l, void *unused, wake_after *wa) { (void)unused; return enter_now(l, false, wa); }
static int write_now(void *l, void *unused, wake_after *wa) { (void)unused; return enter_now(l, true, wa); }

static int lock_as(urt_rwlock *l, bool writer)
{
    if (!l)
        return -EINVAL;
    urt_task *t;
    int r = sync_try(&l->lock, writer ? write_now : read_now, l, NULL, -EBUSY, &t);
    if (r != SYNC_MUST_WAIT)
        return r;
    rw_waiter rw;
    memset(&rw, 0, sizeof(rw));
    rw.w.task = t;
    rw.writer = writer;
    /* 0: grant() let us in (even if we were cancelled or timed out
     * meanwhile); else we gave up while still queued */
    r = sync_wait(&l->lock, &l->q, &rw.w, writer ? "rwlock-write" : "rwlock-read");
    if (r < 0) {
        /* we may have held back those queued behind us */
        wake_after wa = {0};
        at_lock_take(&l->lock);
        grant(l, &wa);
        at_lock_give(&l->lock);
        wake_after_run(&wa);
    }
    return r;
}

int urt_rwlock_rdlock(urt_rwlock *l) { return lock_as(l, false); }

int urt_rwlock_wrlock(urt_rwlock *l) { return lock_as(l, true); }

static int try_as(urt_rwlock *l, bool writer)
{
    if (!l)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&l->lock);
    int r = enter_now(l, writer, &wa);
    at_lock_give(&l->lock);
    wake_after_run(&wa);
    return r;
}

int urt_rwlock_try_rdlock(urt_rwlock *l) { return try_as(l, false); }

int urt_rwlock_try_wrlock(urt_rwlock *l) { return try_as(l, true); }

int urt_rwlock_unlock(urt_rwlock *l)
{
    if (!l)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&l->lock);
    int r = 0;
    if (l->writer)
        l->writer = false;
    else if (l->readers)
        l->readers--;
    else
        r = -EPERM;
    grant(l, &wa);
    at_lock_give(&l->lock);
    wake_after_run(&wa);
    return r;
}
