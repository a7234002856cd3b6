/*
 * sync.h - what the sync primitives (notify, mutex, sem, chan, cond, rwlock)
 * share: a FIFO of waiters kept under the primitive's lock, and the wait
 * itself.
 *
 * Wait protocol (every primitive follows it):
 *   1. The waiter fills a urt_waiter on its own stack (task, or NULL for a
 *      thread that blocks) and calls sync_wait with the primitive's lock
 *      held; sync_wait links it at the tail and drops the lock.
 *   2. A waker, holding the lock, unlinks the oldest waiter, does the
 *      hand-off (ownership, a permit, an item) and completes the wait
 *      (waiter_wake_after) before it drops the lock; it wakes the task
 *      after (wake_after_run, below). What the waker hands over is the
 *      waiter's from that moment, whatever the waiter does next.
 *   3. A task reads its verdict under the lock each time it resumes:
 *      unlinked, a waker chose it, and it returns the hand-off (even if it
 *      was cancelled or timed out meanwhile); still linked and cancelled or
 *      timed out, it unlinks itself and took nothing (-ECANCELED /
 *      -ETIMEDOUT); else it suspends again. The futex word is only a hint
 *      for a task: a waker whose task_wake finds the task already queued to
 *      run does not order its futex store before that run, the lock does.
 *   4. A thread blocks on the futex word and then takes and drops the lock
 *      once. Either way the waiter holds the lock after its waker dropped
 *      it, so once the call returns the waker is done with the primitive,
 *      and the caller may destroy it.
 *
 * The lock is an at_lock (queues/atomic.h): one exchange takes it and a
 * release store gives it back, where a pthread mutex cost two calls and two
 * read-modify-writes; a zeroed one is free, so a primitive needs no init or
 * destroy for it. Whoever holds it does only list and counter work; a
 * contender spins briefly, then yields.
 *
 * Wakes after the lock: a task's wake may ring a sleeping worker's doorbell,
 * an io_uring_enter. Made under the lock it kept every contender spinning
 * for that long, and where the woken worker shared the waker's CPU it ran
 * at once, found the lock held by the thread it had preempted, and spun
 * until that one ran again (a cross-worker round trip on one CPU took 3x a
 * raw MSG_RING ping-pong's time). So a waker collects the tasks in a
 * wake_after on its stack and wakes them once it has given the lock back;
 * the waiter's verdict and hand-off are written under the lock as before,
 * and the registration's ref keeps each task alive until its wake. A plain
 * thread's FUTEX_WAKE (its waiter lives only until it takes the lock
 * again), an on_wake callback, and wakes past WAKE_AFTER_MAX in one
 * section are still made under the lock.
 */
#ifndef URT_RUNTIME_SYNC_H
#define URT_RUNTIME_SYNC_H

#include "runtime/runtime.h"

typedef struct waitq {
    urt_waiter *head, *tail;       /* under the owning primitive's lock */
} waitq;

static inline bool waitq_empty(const waitq *q) { return q->head == NULL; }

static inline void waitq_push(waitq *q, urt_waiter *w)
{
    w->next = NULL;
    w->prev = q->tail;
    if (q->tail)
        q->tail->next = w;
    else
        q->head = w;
    q->tail = w;
    w->linked = true;
}

static inline void waitq_unlink(waitq *q, urt_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        q->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        q->tail = w->prev;
    w->next = w->prev = NULL;
    w->linked = false;
}

/* The oldest waiter, unlinked; NULL when none waits. */
static inline urt_waiter *waitq_pop(waitq *q)
{
    urt_waiter *w = q->head;
    if (w)
        waitq_unlink(q, w);
    return w;
}

/* Complete the wait of every waiter queued now with `result`, oldest
 * first; the tasks' wakes go to wa (see "wakes after the lock"). */
static inline void waitq_wake_all(waitq *q, int result, wake_after *wa)
{
    urt_waiter *w;
    while ((w = waitq_pop(q)))
        waiter_wake_after(w, result, wa);
}

/*
 * Who may wait here: *t gets the task to suspend, or NULL for a thread that
 * blocks (a plain thread, or a task inside urt_block_in_place). -EPERM on a
 * worker thread outside a task.
 */
int sync_caller(urt_task **t);

/*
 * Steps 1-4 above. Call with `lock` held and w zeroed except for w->task
 * (from sync_caller) and whatever the primitive keeps next to w; returns
 * with `lock` released. Returns the result the waker handed over, or
 * -ECANCELED / -ETIMEDOUT when the task gave up before any waker chose it.
 * `what` names the wait in task dumps.
 */
int sync_wait(at_lock *lock, waitq *q, urt_waiter *w, const char *what);

/*
 * Entry of a call that may wait: *t and *block_err as sync_caller gives
 * them (the call returns *block_err where it would wait, so a worker thread
 * outside a task still gets what needs no waiting). -ECANCELED for a
 * cancelled task. Otherwise spends one unit of the cooperative budget: after
 * SYNC_COOP_BUDGET such calls on this thread with no suspension in one of
 * them, the task yields first, so a loop that always finds the primitive
 * ready cannot keep the other tasks of its worker from running.
 */
#define SYNC_COOP_BUDGET 128
int sync_enter(urt_task **t, int *block_err);

/*
 * The entry of a call that takes something (a lock, an item) or waits for
 * it: sync_enter, then now(obj, arg, wa) under `lock` tries to take it at
 * once (it returns 0 or -errno; the wakes it kept in wa are made once the
 * lock is given back, or before SYNC_MUST_WAIT returns with it still held:
 * rwlock's grant may let others in on the way to a wait).
 * Returns what now returned when that is not `busy`, or *block_err (from
 * sync_caller) when busy and the caller may not wait, with `lock` released
 * either way; or SYNC_MUST_WAIT with `lock` still held and *t set, when the
 * caller is to fill its waiter and call sync_wait.
 */
#define SYNC_MUST_WAIT 1
typedef int (*sync_now_fn)(void *obj, void *arg, wake_after *wa);
int sync_try(at_lock *lock, sync_now_fn now, void *obj, void *arg, int busy, urt_task **t);

#endif /* URT_RUNTIME_SYNC_H */
