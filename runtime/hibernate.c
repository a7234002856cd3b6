/*
 * hibernate.c - stack hibernation: an idle connection costs its live frames,
 * not its stack's pages.
 *
 * A fiber that waits long for something that may take minutes (a receive,
 * an accept, a poll, a sleep) still holds every stack page it ever touched.
 * Its home worker, during maintenance, hibernates such a fiber once it has
 * waited cfg.hibernate_after_ns: the live part of its stack, from the saved
 * stack pointer (less the red zone) up to the top, is copied into a
 * right-sized heap block and the stack's pages are given back with
 * MADV_DONTNEED. The mapping stays the task's, so pointers into the stack
 * stay valid; when the task is next run (run_task), the image is copied
 * back to the same addresses before the fiber resumes.
 *
 * The rule: nothing may write into (or read from) a hibernated stack, not
 * the kernel, not another thread. A wait is hibernatable when its wake path
 * writes only the task header and heap memory:
 *   - the records a CQE handler writes are in the header: t->op for the one
 *     op a task waits on (op.c), t->timer for the bound timer of a wait
 *     that is not a ring op (time.c); hib_wait_begin refuses any other
 *     record (one on the stack);
 *   - the memory the kernel reads or writes after submission (a buffer, an
 *     iovec, a msghdr, a sockaddr) lies outside the task's stack
 *     (task_stack_holds; op_wait_mem and OP_HIB in op.h);
 *   - timespecs (of a sleep, a linked timeout, a bound timer) are read by
 *     the kernel when the SQE is submitted, so hib_scan submits the ring's
 *     queued SQEs before it hibernates anything (and hibernates nothing
 *     while any remain unsubmitted).
 * So these waits hibernate: urt_sleep, urt_sleep_until, urt_interval_tick;
 * urt_poll (and the readiness waits built on it); urt_recv, urt_read,
 * urt_send, urt_write, urt_recvmsg, urt_sendmsg, urt_recvfrom (its msghdr
 * then goes on the heap), urt_accept, where their memory is off the stack;
 * urt_rx_recv and urt_listener_accept, with or without a time bound; a
 * urt_process_wait on the pidfd path. Not: the sync primitives, joins and
 * task groups (their waiter node is on the waiter's stack and another
 * thread writes it, under the primitive's lock, at any time), urt_sleep
 * inside urt_block_in_place, a waitid wait (siginfo on the stack), file
 * ops (short), a migratable task (it may run elsewhere), a task spawned
 * with URT_TASK_NO_HIBERNATE, and every wait when hibernate_after_ns is
 * URT_HIBERNATE_NEVER. A wait outside the rule is simply never listed.
 *
 * The list of waits (per worker, w->hib_head .. hib_tail) is kept lazily,
 * so that a connection that waits once per message pays one store, not the
 * unlinking of its neighbours: hib_wait_begin puts a task on the list only
 * when it is not on it yet (in the order of hib_at, the time it was put
 * there) and stamps hib_since; hib_wait_end only clears hib_since. hib_scan
 * walks from the oldest entry while hib_at is a threshold old: an entry no
 * longer waiting leaves the list, one whose current wait began later moves
 * to the tail (hib_at = now), one due is hibernated. A task is hibernated
 * after it has waited at least the threshold, at most about twice that. A
 * task that ends leaves the list (hib_forget, from its worker).
 *
 * Threads: everything here runs on the task's home worker thread. Only a
 * non-migratable task may hibernate and such a task, once it has run, runs
 * only there; a wake from another thread (a cancel) just queues it to that
 * worker, which restores it before running it, and the CQE handler of
 * that worker's ring writes only the header before it queues the task.
 *
 * ASan: the copy (raw_copy) is not instrumented, so the red zones ASan
 * poisons in the live frames are copied as words and their shadow, which
 * describes the addresses, not the pages, stays as it was.
 */
#include <stdlib.h>
#include <sys/mman.h>

#include "runtime/runtime.h"

#define RED_ZONE 128           /* below the saved sp that the ABI lets a leaf use (x86-64) */
#define SCAN_MAX 256           /* hibernations per scan: a scan stays well under a millisecond */
#define SCAN_VISITS 1024       /* entries a scan looks at (stale ones included), for the same reason */

static void list_unlink(urt_worker *w, urt_task *t)
{
    if (t->hib_prev)
        t->hib_prev->hib_next = t->hib_next;
    else
        w->hib_head = t->hib_next;
    if (t->hib_next)
        t->hib_next->hib_prev = t->hib_prev;
    else
        w->hib_tail = t->hib_prev;
    t->hib_prev = t->hib_next = NULL;
    t->hib_listed = false;
    if (!w->hib_head)
        w->hib_more = false;   /* nothing left to scan: the idle worker sleeps its full second */
}

bool hib_allowed(const urt_task *t)
{
    return !t->in_bip && !(t->flags & (URT_TASK_MIGRATABLE | URT_TASK_NO_HIBERNATE)) &&
           t->rt->cfg.hibernate_after_ns != URT_HIBERNATE_NEVER;
}

static void list_append(urt_worker *w, urt_task *t, uint64_t at)
{
    t->hib_at = at;
    t->hib_next = NULL;
    t->hib_prev = w->hib_tail;
    if (w->hib_tail)
        w->hib_tail->hib_next = t;
    else
        w->hib_head = t;
    w->hib_tail = t;
    t->hib_listed = true;
}

void hib_wait_begin(urt_worker *w, urt_task *t, const ring_op *rec)
{
    /* the rule (see the top): only the header's records may be in flight */
    if (!hib_allowed(t) || (rec && rec != &t->op))
        return;
    /* maint_ns: the worker's coarse clock, read at every maintenance and
     * wake-up; exact enough for a threshold of about a second (| 1: never
     * 0, which means "not waiting") */
    t->hib_since = w->maint_ns | 1;
    if (!t->hib_listed)
        list_append(w, t, w->maint_ns);
}

void hib_wait_end(urt_worker *w, urt_task *t)
{
    (void)w;
    t->hib_since = 0;   /* it stays listed: the next scan (or hib_forget) takes it off */
}

void hib_forget(urt_worker *w, urt_task *t)
{
    if (t->hib_listed)
        list_unlink(w, t);
}

/* A copy that sanitizers do not see: the live frames hold ASan's poisoned
 * red zones, and the words are the fiber's own (the switch that suspended it
 * ordered them before us). volatile keeps the compiler from making it a
 * memcpy call, which ASan would check. */
__attribute__((no_sanitize_address, no_sanitize_thread, noinline)) static void raw_copy(void *dst, const void *src,
                                                                                        size_t n)
{
    volatile uint64_t *d = dst;
    const volatile uint64_t *s = src;
    for (size_t i = 0; i < n / 8; i++)
        d[i] = s[i];
}

static bool hibernate(urt_worker *w, urt_task *t)
{
    char *lo = t->stack.lo, *hi = t->stack.hi;
    char *from = (char *)((uintptr_t)((char *)t->fiber.sp - RED_ZONE) & ~(uintptr_t)15);
    if (from < lo)
        from = lo;
    size_t len = (size_t)(hi - from);
    void *img = malloc(len);
    if (!img)
        return false;   /* no memory for the image: it keeps its pages */
    raw_copy(img, from, len);
    if (madvise(lo, (size_t)(hi - lo), MADV_DONTNEED) != 0) {
        free(img);
        return false;
    }
    t->hib_from = from;
    __atomic_store_n(&t->hib_img, img, __ATOMIC_RELAXED);   /* atomic: the dump reads it */
    t->hibernated = true;
    STAT_INC(w, hibernations);
    STAT_INC(w, hibernated);
    return true;
}

void hib_scan(urt_worker *w, uint64_t now)
{
    w->hib_more = false;
    uint64_t after = w->rt->cfg.hibernate_after_ns;
    if (!w->hib_head || now - w->hib_head->hib_at < after)
        return;
    /* an SQE still queued may point at a timespec in a waiting fiber's
     * frame (the kernel copies it at submission): submit them first, and
     * hibernate nothing while any remain. (Both callers, maintenance and
     * the wake from a park, have submitted just before; this holds it when
     * that submit failed, a full CQ say, or if the order ever changes.) */
    if (w->ring.pending && (ring_submit(&w->ring), w->ring.pending)) {
        w->hib_more = true;
        return;
    }
    unsigned done = 0, visits = 0;
    urt_task *t;
    while ((t = w->hib_head) && now - t->hib_at >= after) {
        if (done == SCAN_MAX || visits++ == SCAN_VISITS) {
            w->hib_more = true;   /* the rest soon: the worker parks briefly, not for a second */
            return;
        }
        list_unlink(w, t);
        if (!t->hib_since)
            continue;   /* not waiting any more */
        if (now - t->hib_since < after) {
            list_append(w, t, now);   /* a later wait: it comes round again a threshold from now */
            continue;
        }
        /* woken already (queued to run here): leave it as it is */
        if (at_load_acquire(&t->state) & (TS_SCHEDULED | TS_RUNNING | TS_COMPLETE))
            continue;
        if (hibernate(w, t))
            done++;
    }
}

void hib_restore(urt_worker *w, urt_task *t)
{
    raw_copy(t->hib_from, t->hib_img, (size_t)((char *)t->stack.hi - t->hib_from));
    free(t->hib_img);
    __atomic_store_n(&t->hib_img, NULL, __ATOMIC_RELAXED);
    t->hibernated = false;
    STAT_INC(w, restores);
    STAT_ADD(w, hibernated, (uint64_t)-1);
}

void hib_drop(urt_task *t)
{
    free(t->hib_img);
    t->hib_img = NULL;
    t->hibernated = false;
}
