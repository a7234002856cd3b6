/*
 * test_time.c - urt_deadline bounds every suspending call of its task
 * (I/O, join, sync waits, sleeps, accept) and combines with urt_op_timeout
 * (the earlier wins); urt_sleep_until never returns early; urt_interval
 * ticks on its grid and skips, never bursts, when its caller is late.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

static int fds[2];

/* ---- the deadline on each kind of wait ----------------------------------------------------- */

typedef struct dl_result {
    int recv, join, notify, sleep, accept, rx, mutex, after;
    uint64_t recv_elapsed, sleep_elapsed;
    uint64_t old, restored;
} dl_result;

static void *sleeper(void *arg)
{
    urt_sleep(10000 * MS);
    return arg;
}

static void *deadline_on_every_wait(void *arg)
{
    dl_result *r = arg;
    char buf[8];
    uint64_t t0 = urt_now();
    r->old = urt_deadline(t0 + 20 * MS);
    r->recv = (int)urt_recv(fds[0], buf, sizeof(buf), 0);
    r->recv_elapsed = urt_now() - t0;

    urt_deadline(urt_now() + 20 * MS);
    urt_task *t = NULL;
    if (urt_spawn(urt_current(), &t, sleeper, NULL) == 0)
        r->join = urt_join(t, NULL);   /* consumes t: the sleeper is detached */

    urt_deadline(urt_now() + 20 * MS);
    urt_notify *n = NULL;
    urt_notify_create(&n);
    r->notify = urt_notify_wait(n);
    urt_notify_destroy(n);

    urt_deadline(urt_now() + 20 * MS);
    urt_mutex *m = NULL;
    urt_mutex_create(&m);
    urt_mutex_lock(m);
    r->mutex = urt_mutex_lock(m);   /* held by us: waits until the deadline */
    urt_mutex_unlock(m);
    urt_mutex_destroy(m);

    uint64_t s0 = urt_now();
    urt_deadline(s0 + 20 * MS);
    r->sleep = urt_sleep(10000 * MS);
    r->sleep_elapsed = urt_now() - s0;

    urt_listener *l = NULL;
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(lfd, (struct sockaddr *)&a, sizeof(a));
    listen(lfd, 8);
    urt_deadline(urt_now() + 20 * MS);
    r->accept = urt_listener_open(&l, lfd, 0) == 0 ? urt_listener_accept(l) : -999;
    if (l)
        urt_listener_close(l);
    close(lfd);

    urt_rx *rx = NULL;
    urt_deadline(urt_now() + 20 * MS);
    if (urt_rx_open(&rx, fds[0]) == 0) {
        urt_buf b;
        r->rx = urt_rx_recv(rx, &b);
        urt_rx_close(rx);
    }

    /* a deadline in the past: at once, before anything starts */
    urt_deadline(urt_now() - 1);
    r->after = (int)urt_recv(fds[0], buf, sizeof(buf), MSG_DONTWAIT);
    r->restored = urt_deadline(0);
    return NULL;
}

Test(deadline, a_deadline_ends_every_kind_of_wait_with_etimedout, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        dl_result r;
        memset(&r, 0, sizeof(r));
        cr_assert_eq(urt_runtime_block_on(rt, deadline_on_every_wait, &r, NULL), 0);
        cr_assert_eq(r.old, 0, "a task starts with no deadline");
        cr_assert_eq(r.recv, -ETIMEDOUT, "%u workers: recv gave %d", w, r.recv);
        cr_assert_geq(r.recv_elapsed, 20 * MS, "the deadline fired early");
        cr_assert_eq(r.join, -ETIMEDOUT, "join gave %d", r.join);
        cr_assert_eq(r.notify, -ETIMEDOUT, "notify wait gave %d", r.notify);
        cr_assert_eq(r.mutex, -ETIMEDOUT, "mutex lock gave %d", r.mutex);
        cr_assert_eq(r.sleep, -ETIMEDOUT, "sleep gave %d", r.sleep);
        cr_assert_geq(r.sleep_elapsed, 20 * MS);
        cr_assert_lt(r.sleep_elapsed, 5000 * MS, "the sleep was not cut short by the deadline");
        cr_assert_eq(r.accept, -ETIMEDOUT, "listener accept gave %d", r.accept);
        cr_assert_eq(r.rx, -ETIMEDOUT, "rx recv gave %d", r.rx);
        cr_assert_eq(r.after, -ETIMEDOUT, "a passed deadline gave %d", r.after);
        cr_assert_neq(r.restored, 0, "urt_deadline returns the previous deadline");
        close(fds[0]);
        close(fds[1]);
        urt_runtime_shutdown(rt, 0);
        urt_runtime_destroy(rt);
    }
}

/* ---- the earlier bound wins -------------------------------------------------------------- */

typedef struct both {
    uint64_t op, dl;        /* relative ns; 0: not set */
    int res;
    uint64_t elapsed;
} both;

static void *recv_bounded(void *arg)
{
    both *b = arg;
    char c;
    uint64_t t0 = urt_now();
    if (b->op)
        urt_op_timeout(b->op);
    if (b->dl)
        urt_deadline(t0 + b->dl);
    b->res = (int)urt_recv(fds[0], &c, 1, 0);
    b->elapsed = urt_now() - t0;
    return NULL;
}

Test(deadline, with_an_op_timeout_too_the_earlier_bound_wins, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    both cases[2] = {{.op = 20 * MS, .dl = 3000 * MS}, {.op = 3000 * MS, .dl = 20 * MS}};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(urt_runtime_block_on(rt, recv_bounded, &cases[i], NULL), 0);
        cr_assert_eq(cases[i].res, -ETIMEDOUT);
        cr_assert_geq(cases[i].elapsed, 20 * MS);
        cr_assert_lt(cases[i].elapsed, 2500 * MS, "case %d: the later bound (3 s) was the one that fired", i);
    }
    close(fds[0]);
    close(fds[1]);
    urt_runtime_destroy(rt);
}

/* ---- sleep_until --------------------------------------------------------------------------- */

typedef struct su {
    int res[3];
    uint64_t target, woke, past_elapsed;
} su;

static void *sleep_until_task(void *arg)
{
    su *s = arg;
    s->target = urt_now() + 15 * MS;
    s->res[0] = urt_sleep_until(s->target);
    s->woke = urt_now();
    uint64_t t0 = urt_now();
    s->res[1] = urt_sleep_until(t0 - 1);   /* already past: at once */
    s->past_elapsed = urt_now() - t0;
    return NULL;
}

Test(sleep_until, never_returns_early_and_a_past_time_returns_at_once, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        su s;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(urt_runtime_block_on(rt, sleep_until_task, &s, NULL), 0);
        cr_assert_eq(s.res[0], 0);
        cr_assert_geq(s.woke, s.target, "woke %llu ns early", (unsigned long long)(s.target - s.woke));
        cr_assert_eq(s.res[1], 0);
        cr_assert_lt(s.past_elapsed, 1000 * MS);
        urt_runtime_destroy(rt);
    }
}

static void *sleep_forever(void *arg)
{
    *(int *)arg = urt_sleep_until(UINT64_MAX);
    return NULL;
}

Test(sleep_until, a_time_beyond_the_clock_sleeps_until_cancelled, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    int res = 1;
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, sleep_forever, &res), 0);
    await_waiting(rt, t, "sleep");
    usleep(20000);
    cr_assert_eq(res, 1, "a sleep until UINT64_MAX returned (%d)", res);
    cr_assert_eq(urt_cancel(t), 0);
    cr_assert_eq(urt_join(t, NULL), -ECANCELED);
    cr_assert_eq(res, -ECANCELED, "the sleep ended with %d", res);
    urt_runtime_destroy(rt);
}

Test(sleep_until, outside_a_task_is_eperm, .timeout = 10)
{
    urt_runtime *rt = rt_new(1);
    cr_assert_eq(urt_sleep_until(urt_now() + MS), -EPERM);
    cr_assert_eq(urt_deadline(123), 0, "outside a task urt_deadline does nothing");
    urt_runtime_destroy(rt);
}

/* ---- intervals ------------------------------------------------------------------------------- */

typedef struct iv_run {
    int on_time[5];
    uint64_t at[5];
    uint64_t start;
    int late, after_late, bad;
    uint64_t late_at, next_after_late;
    urt_interval iv;
} iv_run;

static void *interval_task(void *arg)
{
    iv_run *r = arg;
    r->start = urt_now();
    urt_interval_init(&r->iv, 10 * MS);
    for (int i = 0; i < 5; i++) {
        r->on_time[i] = urt_interval_tick(&r->iv);
        r->at[i] = urt_now();
    }
    /* the last tick was at start + 50 ms, the next is due at + 60; at + 85
     * or later the due tick comes at once and + 70 and + 80 are skipped */
    urt_sleep(35 * MS);
    r->late = urt_interval_tick(&r->iv);
    r->late_at = urt_now();
    r->next_after_late = r->iv.next_ns;
    r->after_late = urt_interval_tick(&r->iv);
    urt_interval z;
    urt_interval_init(&z, 0);
    r->bad = urt_interval_tick(&z);
    return NULL;
}

Test(interval, ticks_on_the_grid_and_a_late_caller_skips_instead_of_bursting, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    iv_run r;
    memset(&r, 0, sizeof(r));
    cr_assert_eq(urt_runtime_block_on(rt, interval_task, &r, NULL), 0);
    for (int i = 0; i < 5; i++) {
        cr_assert_geq(r.on_time[i], 0);
        cr_assert_geq(r.at[i], r.start + (uint64_t)(i + 1) * 10 * MS, "tick %d came early", i);
    }
    cr_assert_geq(r.late, 2, "a caller 2.5 periods late skipped %d ticks", r.late);
    cr_assert_lt(r.late, 100);
    /* the grid holds: next tick is start + k * period, in the future */
    cr_assert_eq((r.next_after_late - r.start) % (10 * MS) < MS || (r.next_after_late - r.start) % (10 * MS) > 9 * MS, 1,
                 "the next tick left the grid");
    cr_assert_gt(r.next_after_late, r.late_at, "the next tick after a late one is in the future (no burst)");
    cr_assert_geq(r.after_late, 0);
    cr_assert_eq(r.bad, -EINVAL);
    cr_assert_eq(urt_interval_tick(NULL), -EINVAL);
    urt_runtime_destroy(rt);
}

/* A tick whose sleep ends late (its worker was busy with another task for
 * several periods) must not leave the next tick in the past: that would
 * hand out a second, catch-up tick at once (a burst). */
#define LATE_PERIOD (20 * MS)

typedef struct late_wake {
    urt_interval iv;
    uint64_t due;              /* the first tick's time */
    int tick, next_tick;
    uint64_t woke_at, next_after;
} late_wake;

static void *hog(void *arg)
{
    late_wake *lw = arg;
    uint64_t until = lw->due + 3 * LATE_PERIOD;
    while (urt_now() < until)
        ;   /* keeps the only worker busy: the ticker's wake comes late */
    return NULL;
}

static void *late_ticker(void *arg)
{
    late_wake *lw = arg;
    urt_interval_init(&lw->iv, LATE_PERIOD);
    lw->due = lw->iv.next_ns;
    urt_task *h;
    if (urt_spawn(NULL, &h, hog, lw) != 0)
        return NULL;
    lw->tick = urt_interval_tick(&lw->iv);   /* the hog runs while we sleep */
    lw->woke_at = urt_now();
    lw->next_after = lw->iv.next_ns;
    urt_join(h, NULL);
    lw->next_tick = urt_interval_tick(&lw->iv);
    return lw;
}

Test(interval, a_tick_woken_late_skips_the_missed_ticks_instead_of_bursting, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    late_wake lw;
    memset(&lw, 0, sizeof(lw));
    void *ret = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, late_ticker, &lw, &ret), 0);
    cr_assert_eq(ret, &lw);
    cr_assert_geq(lw.woke_at, lw.due + 3 * LATE_PERIOD, "the hog did not delay the wake");
    cr_assert_gt(lw.next_after, lw.woke_at,
                 "after a tick that woke %llu ms late the next tick (%llu ms after the first) is already due: a burst",
                 (unsigned long long)((lw.woke_at - lw.due) / MS), (unsigned long long)((lw.next_after - lw.due) / MS));
    cr_assert_eq((lw.next_after - lw.due) % LATE_PERIOD, 0, "the next tick left the grid");
    cr_assert_geq(lw.tick, 2, "a wake three periods late skipped only %d ticks", lw.tick);
    cr_assert_geq(lw.next_tick, 0);
    urt_runtime_destroy(rt);
}
