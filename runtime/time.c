/*
 * time.c - the clock, sleeps, intervals, and the time bounds of a task's
 * waits: its op timeout and its deadline (see time.h).
 *
 * A ring op that honours the bounds links a LINK_TIMEOUT at the bound
 * (op.c). A wait that is not a ring op itself (a join, a sync primitive, a
 * pooled receive, a listener accept) arms a TIMEOUT op of its own at the
 * bound with task_timer_start; its record is the task's t->timer (in the
 * header, so the wait may hibernate), and the task stays by its ring until
 * the timer's CQE is in (task_timer_finish). Every timer is absolute CLOCK_MONOTONIC (the clock
 * of urt_now), so a bound never drifts however often a wait resumes, and
 * sums saturate instead of overflowing: a time past about 292 years of
 * uptime means "never".
 */
#include <errno.h>
#include <time.h>

#include "runtime/op.h"
#include "runtime/time.h"

#define NAP_NS (1000ull * 1000)
#define CANCEL_FAST_MAX 64   /* immediate -ECANCELED returns before a task naps */

uint64_t urt__now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t urt_now(void) { return urt__now(); }

void urt__abstime(struct timespec *ts, uint64_t ns_from_now)
{
    clock_gettime(CLOCK_REALTIME, ts);
    /* saturate: about 290 years is forever, and the sum cannot overflow */
    if (ns_from_now > (uint64_t)INT64_MAX / 2)
        ns_from_now = (uint64_t)INT64_MAX / 2;
    uint64_t ns = (uint64_t)ts->tv_nsec + ns_from_now;
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

/* ---- the bounds of a wait ------------------------------------------------------- */

uint64_t urt_op_timeout(uint64_t ns)
{
    urt_task *t = urt__cur_task();
    if (!t)
        return 0;
    uint64_t old = t->op_timeout;
    t->op_timeout = ns;
    return old;
}

uint64_t urt_deadline(uint64_t deadline_ns)
{
    urt_task *t = urt__cur_task();
    if (!t)
        return 0;
    uint64_t old = t->deadline;
    t->deadline = deadline_ns;
    return old;
}

uint64_t task_bound(urt_task *t, bool op_timeout)
{
    uint64_t b = t->deadline;
    if (op_timeout && t->op_timeout) {
        uint64_t e = time_add(urt__now(), t->op_timeout);
        if (!b || e < b)
            b = e;
    }
    return b;
}

bool task_timer_start(urt_task *t, struct __kernel_timespec *ts, bool op_timeout)
{
    urt_worker *w = urt__cur_worker();
    ring_op *op = &t->timer;
    CHECK_REC_FREE(t, op, "task_timer_start");
    if (!w)
        return false;
    uint64_t bound = task_bound(t, op_timeout);
    if (!bound)
        return false;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return false;
    *ts = ns_to_ts(bound);
    ring_op_start(&w->ring, op, t);
    io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
    io_uring_sqe_set_data64(sqe, ring_op_data(op));
    t->op_pending = true;   /* a migratable task stays by its ring while the timer is armed */
    return true;
}

void task_timer_finish(urt_task *t)
{
    ring_op *op = &t->timer;
    if (!op->done) {
        /* the record is the task's, for its next wait: end it and wait for its CQE */
        ring_cancel_op(&urt__cur_worker()->ring, op);
        bool old = t->shield;
        t->shield = true;
        while (!op->done)
            task_suspend(t, SW_PARK);
        t->shield = old;
    }
    t->op_pending = false;
}

/* ---- sleeps ------------------------------------------------------------------ */

/* Suspend until `until` (absolute urt__now time) on the ring: never early.
 * It may hibernate: the kernel copies ts when the SQE is submitted, which
 * hib_scan makes sure of before it hibernates anything. */
static int ring_sleep(urt_task *t, uint64_t until, const char *what)
{
    struct __kernel_timespec ts = ns_to_ts(until);
    struct io_uring_sqe *sqe = op_sqe(t, false);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_timeout(sqe, &ts, 0, IORING_TIMEOUT_ABS);
    int r = op_wait_ex(t, &t->op, sqe, what, -1, OP_HIB);
    return r == -ETIME || r == 0 ? 0 : r;
}

/* A shielded nap on the ring (cancellation cannot cut it short). */
static void nap(urt_task *t, uint64_t ns)
{
    bool old = t->shield;
    t->shield = true;
    ring_sleep(t, time_add(urt__now(), ns), "nap");
    t->shield = old;
}

int task_cancelled_now(urt_task *t)
{
    /* A cancelled task that ignores -ECANCELED and calls again would spin
     * its worker's core: after a few such calls each one naps first. */
    if (t->cancel_fast < CANCEL_FAST_MAX)
        t->cancel_fast++;
    else if (!t->in_bip && urt__cur_worker())
        nap(t, NAP_NS);
    return -ECANCELED;
}

/* Sleep the thread until `until` (absolute CLOCK_MONOTONIC): inside
 * urt_block_in_place. */
static int thread_sleep_until(uint64_t until)
{
    struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u), .tv_nsec = (long)(until % 1000000000u)};
    if (until > (uint64_t)INT64_MAX)
        ts.tv_sec = (time_t)(INT64_MAX / 1000000000);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
    return 0;
}

int urt_sleep_until(uint64_t deadline_ns)
{
    int err = 0;
    urt_task *t = io_task(&err);
    if (!t)
        return err == IO_PLAIN ? thread_sleep_until(deadline_ns) : err;
    /* the task's deadline cuts the sleep short, and says so */
    if (t->deadline && t->deadline < deadline_ns) {
        int r = ring_sleep(t, t->deadline, "sleep");
        return r < 0 ? r : -ETIMEDOUT;
    }
    return ring_sleep(t, deadline_ns, "sleep");
}

int urt_sleep(uint64_t ns)
{
    /* an absolute deadline on CLOCK_MONOTONIC: never early; now + ns saturates */
    return urt_sleep_until(time_add(urt__now(), ns));
}

/* ---- intervals ----------------------------------------------------------------- */

void urt_interval_init(urt_interval *iv, uint64_t period_ns)
{
    if (!iv)
        return;
    iv->period_ns = period_ns;
    iv->next_ns = time_add(urt__now(), period_ns);
}

/* The tick due at iv->next_ns is handed out at `now` (>= it): the ticks
 * whose time also passed are skipped (never a burst of catch-up ticks), and
 * the next one is the first still in the future, on the original grid.
 * Returns how many were skipped. */
static int interval_advance(urt_interval *iv, uint64_t now)
{
    uint64_t skipped = now > iv->next_ns ? (now - iv->next_ns) / iv->period_ns : 0;
    uint64_t step = skipped + 1;
    iv->next_ns = step > (UINT64_MAX - iv->next_ns) / iv->period_ns ? UINT64_MAX : iv->next_ns + step * iv->period_ns;
    return skipped > INT32_MAX ? INT32_MAX : (int)skipped;
}

int urt_interval_tick(urt_interval *iv)
{
    if (!iv || !iv->period_ns)
        return -EINVAL;
    uint64_t now = urt__now();
    if (now < iv->next_ns) {
        int r = urt_sleep_until(iv->next_ns);
        if (r < 0)
            return r;
        /* the wake itself may come late (a busy worker): the ticks that
         * passed meanwhile are skipped as for a late caller */
        return interval_advance(iv, urt__now());
    }
    /* Late caller: this tick is due now. */
    int err = 0;
    urt_task *t = io_task(&err);
    if (!t && err != IO_PLAIN && err != -EPERM)
        return err;   /* cancelled, a passed deadline, a hook */
    int skipped = interval_advance(iv, now);
    if (t)
        urt_yield();   /* a tick that never suspends must not starve its worker's other tasks */
    return skipped;
}
