/*
 * test_bound_timer.c - the bound timer of waits that are not ring ops (a
 * sync wait, a join, a pooled receive, an accept) stays armed from one wait
 * to the next (time.c): a wait whose bound moved later submits nothing, a
 * bound moved earlier still ends its wait on time, a bound moved later is
 * never cut short by the timer armed for the earlier one, and a task that
 * ends with the timer armed leaves nothing behind.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)
#define ROUNDS 200u

typedef struct pp {
    urt_notify *a, *b;
    unsigned rounds;
    int bad;                 /* a wait that did not return 0 */
    uint64_t sqes;           /* SQEs the worker submitted over the rounds */
} pp;

static uint64_t sqes_now(void)
{
    urt_worker_stats ws[8];
    int n = urt_runtime_stats(urt_current(), ws, 8);
    uint64_t s = 0;
    for (int i = 0; i < n && i < 8; i++)
        s += ws[i].sqes_submitted;
    return s;
}

/* The other side: no deadline, so no timer of its own. */
static void *pinger(void *arg)
{
    pp *p = arg;
    for (unsigned i = 0; i < p->rounds; i++) {
        urt_notify_signal(p->a);
        if (urt_notify_wait(p->b) != 0)
            p->bad++;
    }
    return NULL;
}

/* Each round a fresh deadline 10 s on, as a server pushes a connection's
 * idle timeout on with every request, then a wait that is woken. */
static void *ponger(void *arg)
{
    pp *p = arg;
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(NULL, &t, pinger, p), 0);
    uint64_t s0 = sqes_now();
    for (unsigned i = 0; i < p->rounds; i++) {
        urt_deadline(urt_now() + 10000 * MS);
        if (urt_notify_wait(p->a) != 0)
            p->bad++;
        urt_deadline(0);
        urt_notify_signal(p->b);
    }
    p->sqes = sqes_now() - s0;
    urt_join(t, NULL);
    return NULL;
}

Test(bound_timer, waits_whose_deadline_moves_later_submit_no_timer_op_each)
{
    urt_runtime *rt = rt_new(1);
    pp p = {.rounds = ROUNDS};
    cr_assert_eq(urt_notify_create(&p.a), 0);
    cr_assert_eq(urt_notify_create(&p.b), 0);
    cr_assert_eq(urt_runtime_block_on(rt, ponger, &p, NULL), 0);
    cr_assert_eq(p.bad, 0, "%d waits failed", p.bad);
    /* a timer armed and removed per wait is two SQEs a round (400); kept
     * armed it is one for the whole run */
    cr_assert_lt(p.sqes, ROUNDS / 10, "%llu SQEs for %u timed waits", (unsigned long long)p.sqes, ROUNDS);
    urt_notify_destroy(p.a);
    urt_notify_destroy(p.b);
    urt_runtime_destroy(rt);
}

typedef struct moved {
    urt_notify *n, *never;
    int first, second;
    uint64_t elapsed;
    unsigned long long first_ms, second_ms;
} moved;

/* A first wait (woken at once) leaves the timer armed at first_ms; the
 * second wait's deadline is second_ms, before or after it, and nobody
 * wakes it. */
static void *moved_bound(void *arg)
{
    moved *m = arg;
    urt_notify_signal(m->n);
    urt_deadline(urt_now() + m->first_ms * MS);
    m->first = urt_notify_wait(m->n);
    uint64_t t0 = urt_now();
    urt_deadline(t0 + m->second_ms * MS);
    m->second = urt_notify_wait(m->never);
    m->elapsed = urt_now() - t0;
    urt_deadline(0);
    return NULL;
}

static void run_moved(unsigned workers, unsigned long long first_ms, unsigned long long second_ms, moved *m)
{
    urt_runtime *rt = rt_new(workers);
    memset(m, 0, sizeof(*m));
    m->first_ms = first_ms, m->second_ms = second_ms;
    cr_assert_eq(urt_notify_create(&m->n), 0);
    cr_assert_eq(urt_notify_create(&m->never), 0);
    cr_assert_eq(urt_runtime_block_on(rt, moved_bound, m, NULL), 0);
    urt_notify_destroy(m->n);
    urt_notify_destroy(m->never);
    urt_runtime_destroy(rt);
}

Test(bound_timer, a_bound_moved_earlier_than_the_armed_timer_ends_its_wait_on_time)
{
    FOR_EACH_WORKER_COUNT(w) {
        moved m;
        run_moved(w, 30000, 100, &m);
        cr_assert_eq(m.first, 0);
        cr_assert_eq(m.second, -ETIMEDOUT, "%d workers: %s", w, strerror(-m.second));
        cr_assert_geq(m.elapsed, 100 * MS, "%d workers: ended %llu ns early", w,
                      (unsigned long long)(100 * MS - m.elapsed));
        cr_assert_lt(m.elapsed, 10000 * MS, "%d workers: the 100 ms bound took %llu ms", w,
                     (unsigned long long)(m.elapsed / MS));
    }
}

Test(bound_timer, a_bound_moved_later_is_not_cut_short_by_the_timer_armed_for_the_earlier_one)
{
    FOR_EACH_WORKER_COUNT(w) {
        moved m;
        run_moved(w, 50, 400, &m);
        cr_assert_eq(m.first, 0);
        cr_assert_eq(m.second, -ETIMEDOUT, "%d workers: %s", w, strerror(-m.second));
        cr_assert_geq(m.elapsed, 400 * MS, "%d workers: the 400 ms wait ended after %llu ms", w,
                      (unsigned long long)(m.elapsed / MS));
        cr_assert_lt(m.elapsed, 10000 * MS);
    }
}

/* ---- tasks that end with the timer armed ----------------------------------------------------- */

#if defined(URT_TSAN) || defined(URT_ASAN)
#define ENDERS 200u
#else
#define ENDERS 2000u
#endif

typedef struct ender {
    urt_notify *n;
    _Atomic unsigned *done;
    unsigned flags;
} ender;

static void *end_armed(void *arg)
{
    ender *e = arg;
    urt_deadline(urt_now() + 60000 * MS);   /* armed for a minute; the task ends long before */
    urt_notify_signal(e->n);
    int r = urt_notify_wait(e->n);
    urt_deadline(0);
    if (r == 0)
        atomic_fetch_add(e->done, 1);
    return NULL;
}

static void *spawn_enders(void *arg)
{
    ender *es = arg;
    urt_task **ts = calloc(ENDERS, sizeof(*ts));
    cr_assert(ts);
    for (unsigned i = 0; i < ENDERS; i++) {
        urt_spawn_opts o = {.flags = es[i].flags};
        cr_assert_eq(urt_spawn_ex(NULL, &ts[i], end_armed, &es[i], &o), 0);
    }
    for (unsigned i = 0; i < ENDERS; i++)
        cr_assert_eq(urt_join(ts[i], NULL), 0);
    free(ts);
    return NULL;
}

Test(bound_timer, tasks_that_end_with_the_timer_armed_are_each_joined_and_leave_nothing_behind)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        _Atomic unsigned done = 0;
        ender *es = calloc(ENDERS, sizeof(*es));
        cr_assert(es);
        for (unsigned i = 0; i < ENDERS; i++) {
            cr_assert_eq(urt_notify_create(&es[i].n), 0);
            es[i].done = &done;
            es[i].flags = i % 3 == 0 ? URT_TASK_MIGRATABLE : 0;   /* a migratable one removes it per wait */
        }
        uint64_t t0 = urt_now();
        cr_assert_eq(urt_runtime_block_on(rt, spawn_enders, es, NULL), 0);
        /* no task waited out its minute: each removed its timer when it ended */
        cr_assert_lt(urt_now() - t0, 30000 * MS);
        cr_assert_eq(atomic_load(&done), ENDERS, "%u of %u", atomic_load(&done), ENDERS);
        urt_metrics mt;
        cr_assert_eq(urt_runtime_metrics(rt, &mt), 0);
        cr_assert_eq(mt.live_tasks, 0, "%llu tasks still live", (unsigned long long)mt.live_tasks);
        cr_assert_eq(urt_runtime_shutdown(rt, 5000 * MS), 0);
        urt_runtime_destroy(rt);
        for (unsigned i = 0; i < ENDERS; i++)
            urt_notify_destroy(es[i].n);
        free(es);
    }
}

/* ---- ring ops under an op timeout ------------------------------------------------------------- */

typedef struct opt_run {
    int sv[2];
    unsigned rounds;
    int bad;
    uint64_t sqes;
    int last;
    uint64_t last_elapsed;
} opt_run;

/* Receives that find their byte at once, each under a 50 ms op timeout
 * counted from its own start, then one that gets nothing. */
static void *recvs_under_op_timeout(void *arg)
{
    opt_run *o = arg;
    urt_op_timeout(50 * MS);
    uint64_t s0 = sqes_now();
    for (unsigned i = 0; i < o->rounds; i++) {
        char c = 'x', back = 0;
        if (write(o->sv[1], &c, 1) != 1 || urt_recv(o->sv[0], &back, 1, 0) != 1 || back != 'x')
            o->bad++;
    }
    o->sqes = sqes_now() - s0;
    /* the timer armed for the first receive fired long ago or fires early
     * for this one: it must not end it before its own 50 ms */
    char c;
    uint64_t t0 = urt_now();
    o->last = (int)urt_recv(o->sv[0], &c, 1, 0);
    o->last_elapsed = urt_now() - t0;
    urt_op_timeout(0);
    return NULL;
}

Test(bound_timer, ring_ops_under_an_op_timeout_share_one_timer_and_each_still_gets_its_full_bound)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        opt_run o = {.rounds = ROUNDS};
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, o.sv), 0);
        cr_assert_eq(urt_runtime_block_on(rt, recvs_under_op_timeout, &o, NULL), 0);
        cr_assert_eq(o.bad, 0);
        /* a linked timeout per receive is two SQEs each (400) */
        cr_assert_lt(o.sqes, ROUNDS + ROUNDS / 4, "%u workers: %llu SQEs for %u receives", w,
                     (unsigned long long)o.sqes, ROUNDS);
        cr_assert_eq(o.last, -ETIMEDOUT, "%u workers: %s", w, strerror(-o.last));
        cr_assert_geq(o.last_elapsed, 50 * MS, "%u workers: timed out after %llu ns", w,
                      (unsigned long long)o.last_elapsed);
        close(o.sv[0]);
        close(o.sv[1]);
        urt_runtime_destroy(rt);
    }
}
