/*
 * time.c - the clock, sleeps, intervals, and the time bounds of a task's
 * waits: its op timeout and its deadline (see time.h).
 *
 * A ring op that honours the bounds links a LINK_TIMEOUT at the bound
 * (op.c). A wait that is not a ring op itself (a join, a sync primitive, a
 * pooled receive, a listener accept) uses the task's bound timer, t->timer
 * (in the header, so the wait may hibernate): one TIMEOUT on the task's
 * ring, which stays armed from one wait to the next. A wait whose bound is
 * at or after the armed time submits nothing: when the timer fires early,
 * its CQE arms it again for the bound of the wait then in progress, or does
 * nothing between waits. Only a bound earlier than the armed time moves it
 * (TIMEOUT_UPDATE). A server that pushes a connection's deadline on with
 * every request thus makes one timer op per idle period, not two SQEs, two
 * CQEs and a resumption per wait. The timer is removed when the task ends
 * (task_timer_close), and after each wait of a migratable task, which may
 * then run on another worker. Every timer is absolute CLOCK_MONOTONIC (the
 * clock of urt_now), so a bound never drifts however often a wait resumes,
 * and sums saturate instead of overflowing: a time past about 292 years of
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

/* ---- the bound timer ------------------------------------------------------------- */

/* The task whose header holds tm. */
static inline urt_task *timer_task(task_timer *tm)
{
    return (urt_task *)((char *)tm - __builtin_offsetof(urt_task, timer));
}

/* Arm (or, when one is in flight, move) the task's TIMEOUT to `at`. False
 * when the ring has no SQE. */
static bool timer_arm(urt_worker *w, task_timer *tm, uint64_t at)
{
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return false;
    tm->ts = ns_to_ts(at);
    uint64_t ud = ring_tag(&tm->m, RING_TAG_MULTI, 0);
    if (tm->armed_at) {
        /* earlier than the one in flight: move it. If it fired meanwhile
         * the update finds nothing (-ENOENT) and the CQE on its way arms
         * again, for the bound then in force */
        io_uring_prep_timeout_update(sqe, &tm->ts, ud, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
    } else {
        io_uring_prep_timeout(sqe, &tm->ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, ud);
        tm->w = w;
        timer_task(tm)->timer_used = true;
    }
    tm->armed_at = at;
    return true;
}

/* The TIMEOUT's CQE, on the task's worker: it fired (-ETIME) or was
 * removed (-ECANCELED). Nothing in flight any more; the task is woken only
 * if the bound of the wait it is in has passed, or if it waits for the
 * removal. A bound that moved later since it was armed is armed again. */
static void timer_cqe(ring_multi *m, int32_t res, uint32_t flags)
{
    (void)res;
    (void)flags;
    task_timer *tm = (task_timer *)m;
    urt_task *t = timer_task(tm);
    tm->armed_at = 0;
    if (tm->closing) {
        task_wake(t);
        return;
    }
    if (!tm->bound)
        return;   /* between waits: the next timed wait arms it again */
    if (urt__now() >= tm->bound) {
        tm->fired = true;
        task_wake(t);
    } else if (!timer_arm(tm->w, tm, tm->bound)) {
        tm->fired = true;   /* no SQE to wait on: end the wait now rather than never */
        task_wake(t);
    }
}

bool task_timer_watch(urt_task *t, uint64_t bound)
{
    urt_worker *w = urt__cur_worker();
    if (!w || !bound)
        return false;
    task_timer *tm = &t->timer;
    tm->m.cqe = timer_cqe;
    /* One in flight at or before the bound will do: when it fires early
     * its CQE arms it again for this bound. So a wait whose bound moved
     * later than the last one's (a deadline pushed on per request, an op
     * timeout counted from now) submits nothing. */
    if (!tm->armed_at || tm->armed_at > bound) {
        if (!timer_arm(w, tm, bound))
            return false;
    }
    tm->bound = bound;
    tm->fired = false;
    return true;
}

bool task_timer_start(urt_task *t, bool op_timeout)
{
    if (!task_timer_watch(t, task_bound(t, op_timeout)))
        return false;
    if (!task_timer_lazy(t))
        t->op_pending = true;   /* a migratable task stays by its ring while the timer is armed */
    return true;
}

/* Remove the timer in flight and wait (shielded) for its CQE. A remove
 * that finds no SQE (a full SQ the kernel will not take) is tried again
 * next round rather than waiting for the timer to fire. */
static void timer_remove(urt_task *t)
{
    task_timer *tm = &t->timer;
    if (!tm->armed_at)
        return;
    urt_worker *w = tm->w;
    tm->closing = true;
    bool old = t->shield, sent = false;
    t->shield = true;
    while (tm->armed_at) {
        struct io_uring_sqe *sqe = sent ? NULL : ring_sqe(&w->ring);
        if (sqe) {
            io_uring_prep_timeout_remove(sqe, ring_tag(&tm->m, RING_TAG_MULTI, 0), 0);
            io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
            sent = true;
        }
        task_suspend(t, sent ? SW_PARK : SW_YIELD);
    }
    t->shield = old;
    tm->closing = false;
}

void task_timer_finish(urt_task *t)
{
    task_timer *tm = &t->timer;
    tm->bound = 0;
    tm->fired = false;
    if (!task_timer_lazy(t)) {
        timer_remove(t);
        t->op_pending = false;
    }
}

void task_timer_close(urt_task *t)
{
    if (t->timer_used && t->timer.armed_at && urt__cur_worker() == t->timer.w)
        timer_remove(t);
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
