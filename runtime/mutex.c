/*
 * mutex.c - urt_mutex: a lock that suspends a task (blocks a plain thread)
 * while another holds it, and hands it to its waiters in FIFO order.
 *
 * State word (m->state):
 *   MX_UNLOCKED   nobody holds it and nobody waits
 *   MX_LOCKED     held; nobody waits
 *   MX_CONTENDED  held; waiters may be queued (or were, and gave up)
 * Transitions:
 *   lock, fast:    UNLOCKED -> LOCKED (CAS, acquire), any thread, no lock
 *   lock, slow:    under m->lock: UNLOCKED -> LOCKED, or LOCKED -> CONTENDED
 *                  and queue a waiter (sync.h)
 *   unlock, fast:  LOCKED -> UNLOCKED (CAS, release), no lock
 *   unlock, slow:  under m->lock, from CONTENDED: pop the oldest waiter and
 *                  hand it the mutex (state LOCKED if the queue is now empty,
 *                  else CONTENDED); with nobody queued, UNLOCKED
 * CONTENDED is left only under m->lock, so a waiter queued under the lock
 * is always seen by the unlock that follows. Ownership goes straight to the
 * oldest waiter: UNLOCKED implies an empty queue, so a newcomer's fast path
 * never overtakes a waiter.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

enum { MX_UNLOCKED = 0, MX_LOCKED = 1, MX_CONTENDED = 2 };

struct urt_mutex {
    _Atomic uint32_t state;        /* MX_*; see above */
    at_lock lock;                  /* guards q, and state while CONTENDED */
    waitq q;                       /* under lock */
};

int urt_mutex_create(urt_mutex **out)
{
    if (!out)
        return -EINVAL;
    urt_mutex *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    at_store_relaxed(&m->state, MX_UNLOCKED);
    *out = m;
    return 0;
}

void urt_mutex_destroy(urt_mutex *m)
{
    if (!m)
        return;
    free(m);
}

static inline bool lock_fast(urt_mutex *m)
{
    uint32_t s = MX_UNLOCKED;
    /* acquire: pairs with the release store/CAS to UNLOCKED in unlock;
     * publishes the previous owner's critical section */
    return at_cas_strong_acqrel(&m->state, &s, MX_LOCKED);
}

int urt_mutex_try_lock(urt_mutex *m)
{
    if (!m)
        return -EINVAL;
    return lock_fast(m) ? 0 : -EBUSY;
}

__attribute__((cold, noinline)) static int lock_slow(urt_mutex *m, urt_task *t, int block_err)
{
    at_lock_take(&m->lock);
    uint32_t s = at_load_relaxed(&m->state);
    for (;;) {
        if (s == MX_UNLOCKED) {
            /* acquire: as in lock_fast */
            if (at_cas_strong_acqrel(&m->state, &s, MX_LOCKED)) {
                at_lock_give(&m->lock);
                return 0;
            }
        } else if (s == MX_LOCKED) {
            if (block_err) {
                at_lock_give(&m->lock);
                return block_err;
            }
            /* the owner's fast unlock (LOCKED -> UNLOCKED) fails from here
             * on and takes the lock, where it finds us queued */
            if (at_cas_strong_acqrel(&m->state, &s, MX_CONTENDED))
                break;
        } else {
            if (block_err) {
                at_lock_give(&m->lock);
                return block_err;
            }
            break;
        }
    }
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    w.task = t;
    /* 0: the unlocker handed us the mutex (even if we were cancelled or
     * timed out meanwhile); else we gave up while still queued */
    return sync_wait(&m->lock, &m->q, &w, "mutex");
}

int urt_mutex_lock(urt_mutex *m)
{
    if (!m)
        return -EINVAL;
    urt_task *t;
    int block_err;
    int r = sync_enter(&t, &block_err);
    if (r < 0)
        return r;
    if (lock_fast(m))
        return 0;
    return lock_slow(m, t, block_err);
}

__attribute__((cold, noinline)) static int unlock_slow(urt_mutex *m)
{
    at_lock_take(&m->lock);
    uint32_t s = at_load_relaxed(&m->state);
    for (;;) {
        if (s == MX_UNLOCKED) {
            at_lock_give(&m->lock);
            return -EPERM;
        }
        if (s == MX_LOCKED) {
            /* release: as in urt_mutex_unlock */
            if (at_cas_strong_acqrel(&m->state, &s, MX_UNLOCKED)) {
                at_lock_give(&m->lock);
                return 0;
            }
            continue;
        }
        break;
    }
    urt_waiter *w = waitq_pop(&m->q);
    wake_after wa = {0};
    if (w) {
        /* the new owner learns of it through the release store of
         * waiter_wake_after; the state only steers later fast paths */
        at_store_relaxed(&m->state, waitq_empty(&m->q) ? MX_LOCKED : MX_CONTENDED);
        waiter_wake_after(w, 0, &wa);
    } else {
        /* release: pairs with the acquire CAS in lock_fast / lock_slow;
         * publishes our critical section */
        at_store_release(&m->state, MX_UNLOCKED);
    }
    at_lock_give(&m->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_mutex_unlock(urt_mutex *m)
{
    if (!m)
        return -EINVAL;
    uint32_t s = MX_LOCKED;
    /* release: pairs with the acquire CAS in lock_fast / lock_slow;
     * publishes our critical section to the next owner */
    if (at_cas_strong_acqrel(&m->state, &s, MX_UNLOCKED))
        return 0;
    if (s == MX_UNLOCKED)
        return -EPERM;
    return unlock_slow(m);
}
