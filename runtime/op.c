/*
 * op.c - the one way a task's call becomes an op on its worker's ring and
 * waits for it (see op.h for how a call uses it).
 *
 * An op's record (ring_op) is the task's own t->op, in its header (not on
 * its stack: a wait that writes no stack memory may then hibernate, see
 * hibernate.c); a task has one op in flight at a time (the checked build
 * aborts on a second), and it becomes runnable only through that op's CQE,
 * so the record outlives the kernel's use of it:
 *   1. op_sqe reserves room (two SQEs when a time bound links a
 *      LINK_TIMEOUT, so a flush never splits the pair) and returns the SQE;
 *   2. the caller preps it; op_wait tags it with (record, generation) and
 *      bounds it by the earlier of the task's deadline and now + its op
 *      timeout, an absolute CLOCK_MONOTONIC time: with the task's bound
 *      timer (time.c), kept armed across waits, which when it fires wakes
 *      the task to cancel the op (-ETIMEDOUT); a migratable task, which may
 *      next run elsewhere, links a LINK_TIMEOUT to the op instead;
 *   3. the task suspends; woken early (cancel), it queues an ASYNC_CANCEL of
 *      that exact op on its own ring (the op's ring: a task with an op in
 *      flight never moves) and suspends again until the op's CQE;
 *   4. the CQE's result is returned: -ECANCELED after a cancel (also when
 *      the kernel says -EINTR or a restart code: the op was interrupted in
 *      its worker thread), -ETIMEDOUT when the bound timer's cancel
 *      ended it, or when the linked timeout fired (the kernel says -ECANCELED; the
 *      timeout's own CQE, counted into the same record, says -ETIME, or 1
 *      for a WAITID op, and -ECANCELED only when it did not fire, so a
 *      cancel from elsewhere, urt_close say, is never taken for a timeout).
 * While an op on an fd is in flight the worker counts it (fdtrack.c), so a
 * urt_close on any worker can end it first.
 */
#include "runtime/op.h"
#include "runtime/time.h"

urt_task *io_task(int *err)
{
    urt_task *t = urt__cur_task();
    if (urt__in_hook()) {
        *err = -EDEADLK;
        return NULL;
    }
    if (!t) {
        *err = -EPERM;
        return NULL;
    }
    if (t->in_bip) {
        *err = IO_PLAIN;
        return NULL;
    }
    if (task_cancel_pending(t)) {
        *err = task_cancelled_now(t);
        return NULL;
    }
    if (task_deadline_passed(t)) {
        *err = -ETIMEDOUT;
        return NULL;
    }
    return t;
}

struct io_uring_sqe *op_sqe(urt_task *t, bool timed)
{
    urt_worker *w = urt__cur_worker();
    if (!ring_reserve(&w->ring, timed && (t->op_timeout || t->deadline) ? 2 : 1))
        return NULL;
    return ring_sqe(&w->ring);
}

int op_wait_ex(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd, unsigned flags)
{
    urt_worker *w = urt__cur_worker();
    struct __kernel_timespec ts;   /* copied by the kernel at submission */
    uint64_t bound = (flags & OP_TIMED) ? task_bound(t, true) : 0;
    CHECK_REC_FREE(t, op, what);
    ring_op_start(&w->ring, op, t);
    io_uring_sqe_set_data64(sqe, ring_op_data(op));
    /* a task that stays on this worker uses its bound timer, kept armed
     * across ops; a migratable one links a timeout to each op */
    bool watched = bound && task_timer_lazy(t) && task_timer_watch(t, bound);
    if (bound && !watched) {
        ts = ns_to_ts(bound);
        ring_link_timeout(&w->ring, op, sqe, &ts, IORING_TIMEOUT_ABS);
    }
    bool tracked = fdt_inc(w, fd);
    t->op_pending = true;
    __atomic_store_n(&t->wait_what, what, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, fd, __ATOMIC_RELAXED);
    bool hib = (flags & OP_HIB) != 0;
    if (hib)
        hib_wait_begin(w, t, op);
    bool timed_out = false;   /* the bound timer fired: the cancel below is the timeout's */
    while (!op->done) {
        bool ending = false;   /* the op must be cancelled now */
        if (!op->cancel_sent) {
            if (task_cancel_pending(t)) {
                ending = true;
                ring_cancel_op(&w->ring, op);   /* w: the op pins the task to this worker */
            } else if (watched && task_timer_fired(t)) {
                ending = timed_out = true;
                ring_cancel_op(&w->ring, op);
            }
        }
        /* a cancel that found no SQE (a full SQ the kernel will not take)
         * is tried again next round: nothing else would wake us for it */
        task_suspend(t, ending && !op->cancel_sent ? SW_YIELD : SW_PARK);
    }
    if (watched)
        task_timer_finish(t);
    if (hib)
        hib_wait_end(w, t);
    t->op_pending = false;
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, -1, __ATOMIC_RELAXED);
    if (tracked)
        fdt_dec(w, fd);
    int res = op->res;
    /* An op that was running in one of the kernel's worker threads when the
     * cancel or the timeout came (a blocking open, say) is interrupted like
     * a syscall by a signal, and its CQE can carry the kernel's internal
     * restart codes (ERESTARTSYS 512 .. ERESTART_RESTARTBLOCK 516), never
     * meant for user space, or -EINTR: that is the cancel's -ECANCELED. */
    if ((res <= -512 && res >= -516) || (res == -EINTR && (op->cancel_sent || op->timer_fired)))
        res = -ECANCELED;
    if (res == -ECANCELED && ((!op->cancel_sent && op->timer_fired) || timed_out))
        res = -ETIMEDOUT;
    return res;
}
