/*
 * idle.c - which workers sleep and how many search for work (after Tokio's
 * runtime/scheduler/multi_thread/idle.rs).
 *
 * State word `state` (u32), read without the lock:
 *   bits  0..15  num_searching  workers looking for work to steal; changed
 *                               with or without the lock
 *   bits 16..31  num_unparked   workers not on the sleeper list; changed only
 *                               under `lock`
 * Under `lock`: sleepers[0..num_sleepers) is a stack of parked worker ids,
 * is_sleeper[id] says whether id is on it, and
 *   num_unparked + num_sleepers == num_workers.
 *
 * Throttling. A worker out of work may search (steal) only while fewer than
 * half the workers search; the check and the increment are separate steps,
 * so a race can let one or two more through, which costs only contention. A
 * notifier wakes a sleeper only when nobody searches: a searcher either finds
 * the new work or, when the last one stops searching, wakes a sleeper itself.
 * The sleeper a notifier picks is counted as unparked and searching at once,
 * before it even wakes, so a burst of pushes wakes one worker, not one per
 * push.
 *
 * Lost wake-ups, and why SeqCst. Two parties, each a store then a load:
 *   notifier        publish work (a queue push), then read state
 *                   (idle_worker_to_notify)
 *   last searcher   write state (idle_transition_to_parked or
 *   or parker       idle_transition_from_searching, returning true), then
 *                   re-check every queue
 * If the notifier's read missed the state write and the re-check missed the
 * work, the work would wait with everybody asleep. Every access to `state` on
 * these paths is a SeqCst read-modify-write; the notifier reads with
 * fetch_add(0) instead of a plain load, so that its read, like the other
 * side's decrement, is a full barrier on the targets urt builds for (a locked
 * instruction on x86-64; on AArch64 its acquire and release halves stay
 * ordered against release stores before it and acquire loads after it). The
 * queues keep their half: a push ends with a release store or CAS (lq tail,
 * the inject queue's `incoming` stack after its add to len, mailbox top)
 * and a re-check is an acquire load (lq_len, inject_len, mb_is_empty). That much is what Tokio relies on. The C11
 * model by itself does not order a release store to one object before a
 * SeqCst operation on another; a caller that wants the pairing from the
 * model rather than from the hardware puts at_fence_seqcst() between its
 * push and idle_worker_to_notify, and between idle_transition_to_parked and
 * its re-check.
 */
#include <errno.h>
#include <stdlib.h>

#include "queues/queues.h"

#define UNPARK_SHIFT 16
#define SEARCH_MASK  ((1u << UNPARK_SHIFT) - 1)
#define ONE_UNPARKED (1u << UNPARK_SHIFT)
#define MAX_WORKERS  SEARCH_MASK

static inline unsigned st_searching(uint32_t st) { return st & SEARCH_MASK; }
static inline unsigned st_unparked(uint32_t st)  { return st >> UNPARK_SHIFT; }

int idle_init(idle *s, unsigned num_workers)
{
    if (num_workers == 0 || num_workers > MAX_WORKERS)
        return -EINVAL;
    s->sleepers = calloc(num_workers, sizeof *s->sleepers);
    s->is_sleeper = calloc(num_workers, sizeof *s->is_sleeper);
    if (!s->sleepers || !s->is_sleeper) {
        free(s->sleepers);
        free(s->is_sleeper);
        return -ENOMEM;
    }
    int err = pthread_mutex_init(&s->lock, NULL);
    if (err) {
        free(s->sleepers);
        free(s->is_sleeper);
        return -err;
    }
    s->num_workers = num_workers;
    s->num_sleepers = 0;
    /* Relaxed: not shared yet. All workers start unparked, none searching. */
    at_store_relaxed(&s->state, (uint32_t)num_workers << UNPARK_SHIFT);
    return 0;
}

void idle_destroy(idle *s)
{
    pthread_mutex_destroy(&s->lock);
    free(s->sleepers);
    free(s->is_sleeper);
    s->sleepers = NULL;
    s->is_sleeper = NULL;
}

/* Wake one sleeper? Only if nobody searches and somebody sleeps. */
static bool notify_should_wake(idle *s)
{
    /* SeqCst read-modify-write adding nothing: the notifier's half of the
     * lost wake-up pairing (see the top of the file). It pairs with the
     * SeqCst decrements in idle_transition_to_parked and
     * idle_transition_from_searching: either this read sees the decrement,
     * or the decrementing thread's re-check sees the caller's push. */
    uint32_t st = at_fadd_seqcst(&s->state, 0);
    return st_searching(st) == 0 && st_unparked(st) < s->num_workers;
}

int idle_worker_to_notify(idle *s)
{
    /* Cheap check first: most of the time somebody searches or nobody
     * sleeps, and the lock is not needed. */
    if (!notify_should_wake(s))
        return -1;

    pthread_mutex_lock(&s->lock);
    /* Again under the lock: another notifier may have taken the last sleeper
     * or made itself a searcher meanwhile. */
    if (!notify_should_wake(s)) {
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    /* num_unparked < num_workers under the lock means a sleeper exists. */
    unsigned id = s->sleepers[--s->num_sleepers];
    s->is_sleeper[id] = false;
    /* One unparked and one searching in a single add, so no notifier sees
     * the worker unparked but not yet searching and wakes a second one.
     * SeqCst: placed in the same total order as the reads of
     * notify_should_wake, which must see the new searcher and stop. */
    at_fadd_seqcst(&s->state, ONE_UNPARKED | 1u);
    pthread_mutex_unlock(&s->lock);
    return (int)id;
}

bool idle_transition_to_searching(idle *s)
{
    /* SeqCst, as the notifier's read: the throttle check. A stale value only
     * lets a little more or less than half search. */
    uint32_t st = at_load_seqcst(&s->state);
    if (2 * st_searching(st) >= s->num_workers)
        return false;
    /* SeqCst: a notifier that reads this searcher (notify_should_wake) skips
     * waking anyone and relies on us to find its work or, if we stop as the
     * last searcher, to wake somebody; the increment must sit in the same
     * total order as that read. */
    at_fadd_seqcst(&s->state, 1u);
    return true;
}

bool idle_transition_from_searching(idle *s)
{
    /* SeqCst: the last searcher's half of the lost wake-up pairing; pairs
     * with the fetch_add(0) in notify_should_wake. */
    uint32_t prev = at_fsub_seqcst(&s->state, 1u);
    return st_searching(prev) == 1;
}

bool idle_transition_to_parked(idle *s, unsigned id, bool is_searching)
{
    pthread_mutex_lock(&s->lock);
    /* SeqCst: the park announce, the parker's half of the lost wake-up
     * pairing; pairs with the fetch_add(0) in notify_should_wake. The caller
     * re-checks every queue after this returns. */
    uint32_t prev = at_fsub_seqcst(&s->state, ONE_UNPARKED | (is_searching ? 1u : 0u));
    s->sleepers[s->num_sleepers++] = id;
    s->is_sleeper[id] = true;
    pthread_mutex_unlock(&s->lock);
    return is_searching && st_searching(prev) == 1;
}

bool idle_unpark_worker_by_id(idle *s, unsigned id)
{
    bool found = false;
    pthread_mutex_lock(&s->lock);
    if (s->is_sleeper[id]) {
        for (unsigned i = 0; i < s->num_sleepers; i++) {
            if (s->sleepers[i] == id) {
                s->sleepers[i] = s->sleepers[--s->num_sleepers];
                break;
            }
        }
        s->is_sleeper[id] = false;
        /* SeqCst: in the same total order as the notifiers' reads, so none
         * of them counts this worker as a sleeper once it is off the list. */
        at_fadd_seqcst(&s->state, ONE_UNPARKED);
        found = true;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

bool idle_is_parked(idle *s, unsigned id)
{
    pthread_mutex_lock(&s->lock);
    bool parked = s->is_sleeper[id];
    pthread_mutex_unlock(&s->lock);
    return parked;
}

unsigned idle_num_searching(idle *s)
{
    /* SeqCst: a snapshot in the same total order as the transitions, for
     * callers that decide on it (and for statistics and tests). */
    return st_searching(at_load_seqcst(&s->state));
}

unsigned idle_num_unparked(idle *s)
{
    /* SeqCst: as idle_num_searching. */
    return st_unparked(at_load_seqcst(&s->state));
}
