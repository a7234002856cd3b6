/*
 * test_sleep.c - urt_sleep never returns early, suspends only the task,
 * ends with -ECANCELED when the task is cancelled, and is -EPERM outside a
 * task.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#if defined(URT_TSAN)
#define SAN_DIV 4
#elif defined(URT_ASAN)
#define SAN_DIV 2
#else
#define SAN_DIV 1
#endif

#define MS           (1000ull * 1000)
#define HOUR         (3600ull * 1000 * MS)
#define SLEEPERS     (200u / SAN_DIV)
#define SLEEPS_EACH  5u

/* task_waits_on (tests/support/urt_test.h), but a dump that cannot be read fails the test. */
static bool task_waits_on_strict(urt_runtime *rt, urt_task *t, const char *what)
{
    int fd = memfd_create("urt-dump", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    cr_assert_geq(urt_runtime_dump(rt, fd), 0);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    char head[64], wait[64];
    snprintf(head, sizeof(head), "task %llu ", (unsigned long long)urt_task_id(t));
    snprintf(wait, sizeof(wait), " waits=%s ", what);
    bool found = false;
    for (char *line = strtok(buf, "\n"); line && !found; line = strtok(NULL, "\n"))
        found = strncmp(line, head, strlen(head)) == 0 && strstr(line, wait) != NULL;
    free(buf);
    return found;
}

static void wait_until_waiting(urt_runtime *rt, urt_task *t, const char *what)
{
    while (!task_waits_on_strict(rt, t, what))
        usleep(1000);
}

/* ---- never early ------------------------------------------------------------------ */

typedef struct early {
    atomic_uint early, errors, done;
    _Atomic uint64_t worst_early_ns;
} early;

static void *sleep_and_measure(void *arg)
{
    early *e = arg;
    unsigned seed = (unsigned)urt_self_id();
    for (unsigned i = 0; i < SLEEPS_EACH; i++) {
        uint64_t want = (1 + (seed + i) % 5) * MS;
        uint64_t t0 = urt_now();
        int r = urt_sleep(want);
        uint64_t got = urt_now() - t0;
        if (r != 0)
            atomic_fetch_add(&e->errors, 1);
        if (got < want) {
            atomic_fetch_add(&e->early, 1);
            uint64_t short_by = want - got, cur = atomic_load(&e->worst_early_ns);
            while (short_by > cur && !atomic_compare_exchange_weak(&e->worst_early_ns, &cur, short_by))
                ;
        }
    }
    atomic_fetch_add(&e->done, 1);
    return NULL;
}

Test(sleep, sleep_never_returns_early, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        early e = {0};
        urt_task *ts[SLEEPERS];
        for (unsigned i = 0; i < SLEEPERS; i++)
            cr_assert_eq(urt_spawn(rt, &ts[i], sleep_and_measure, &e), 0);
        for (unsigned i = 0; i < SLEEPERS; i++)
            cr_assert_eq(urt_join(ts[i], NULL), 0);
        cr_assert_eq(atomic_load(&e.done), SLEEPERS);
        cr_assert_eq(atomic_load(&e.errors), 0, "%u workers: %u sleeps failed", w, atomic_load(&e.errors));
        cr_assert_eq(atomic_load(&e.early), 0, "%u workers: %u of %u sleeps returned early (worst by %llu ns)", w,
                     atomic_load(&e.early), SLEEPERS * SLEEPS_EACH,
                     (unsigned long long)atomic_load(&e.worst_early_ns));
        urt_runtime_destroy(rt);
    }
}

static void *sleep_zero(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)urt_sleep(0);
}

Test(sleep, sleep_of_zero_returns_zero, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    void *r = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, sleep_zero, NULL, &r), 0);
    cr_assert_eq((intptr_t)r, 0);
    urt_runtime_destroy(rt);
}

/* ---- only the task sleeps -------------------------------------------------------------- */

typedef struct sharing {
    atomic_int other_ran;
    int seen_after_sleep;
} sharing;

static void *sleep_then_look(void *arg)
{
    sharing *s = arg;
    urt_sleep(50 * MS);
    s->seen_after_sleep = atomic_load(&s->other_ran);
    return NULL;
}

static void *mark_ran(void *arg)
{
    sharing *s = arg;
    atomic_store(&s->other_ran, 1);
    return NULL;
}

static void *sleeper_and_other(void *arg)
{
    urt_task *a = NULL, *b = NULL;
    urt_spawn(NULL, &a, sleep_then_look, arg);
    urt_yield();   /* let the sleeper start its sleep first */
    urt_spawn(NULL, &b, mark_ran, arg);
    urt_join(a, NULL);
    urt_join(b, NULL);
    return NULL;
}

Test(sleep, sleeping_task_does_not_block_its_worker, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    sharing s = {0};
    cr_assert_eq(urt_runtime_block_on(rt, sleeper_and_other, &s, NULL), 0);
    cr_assert_eq(s.seen_after_sleep, 1, "the other task did not run while the only worker's task slept");
    urt_runtime_destroy(rt);
}

/* ---- cancellation ------------------------------------------------------------------------ */

typedef struct long_sleep {
    atomic_int started;
    int result;
} long_sleep;

static void *sleep_an_hour(void *arg)
{
    long_sleep *ls = arg;
    atomic_store(&ls->started, 1);
    ls->result = urt_sleep(HOUR);
    return (void *)(intptr_t)0x5eed;
}

typedef struct canceller {
    urt_runtime *rt;
    long_sleep ls;
    int join_res;
    void *join_ret;
} canceller;

static void *cancel_sleeper_from_task(void *arg)
{
    canceller *c = arg;
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, sleep_an_hour, &c->ls) != 0)
        return (void *)1;
    while (!task_waits_on_strict(c->rt, t, "sleep"))
        urt_sleep(MS);
    urt_cancel(t);
    c->join_res = urt_join(t, &c->join_ret);
    return NULL;
}

Test(sleep, cancelling_a_sleeping_task_ends_its_sleep_with_ecanceled, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);

        /* cancelled and joined by a plain thread */
        long_sleep ls = {.result = 1};
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, sleep_an_hour, &ls), 0);
        wait_until_waiting(rt, t, "sleep");
        cr_assert_eq(urt_cancel(t), 0);
        void *ret = NULL;
        cr_assert_eq(urt_join(t, &ret), -ECANCELED, "%u workers: join of a cancelled task", w);
        cr_assert_eq(ls.result, -ECANCELED, "%u workers: urt_sleep gave %d", w, ls.result);
        cr_assert_eq((intptr_t)ret, 0x5eed, "the task ran to its end: join hands back its value");

        /* cancelled and joined by a task */
        canceller c = {.rt = rt, .ls = {.result = 1}};
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, cancel_sleeper_from_task, &c, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(c.join_res, -ECANCELED, "%u workers: join in a task gave %d", w, c.join_res);
        cr_assert_eq(c.ls.result, -ECANCELED, "%u workers: urt_sleep gave %d", w, c.ls.result);
        cr_assert_eq((intptr_t)c.join_ret, 0x5eed);
        urt_runtime_destroy(rt);
    }
}

typedef struct after_cancel {
    urt_notify *gate;
    int wait_res, sleep_res;
} after_cancel;

static void *wait_then_sleep(void *arg)
{
    after_cancel *a = arg;
    a->wait_res = urt_notify_wait(a->gate);
    a->sleep_res = urt_sleep(HOUR);
    return NULL;
}

Test(sleep, sleep_in_an_already_cancelled_task_returns_ecanceled, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        after_cancel a = {.wait_res = 1, .sleep_res = 1};
        cr_assert_eq(urt_notify_create(&a.gate), 0);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, wait_then_sleep, &a), 0);
        wait_until_waiting(rt, t, "notify");
        cr_assert_eq(urt_cancel(t), 0);
        cr_assert_eq(urt_join(t, NULL), -ECANCELED);
        cr_assert_eq(a.wait_res, -ECANCELED, "%u workers: urt_notify_wait gave %d", w, a.wait_res);
        cr_assert_eq(a.sleep_res, -ECANCELED, "%u workers: urt_sleep after cancellation gave %d", w, a.sleep_res);
        urt_notify_destroy(a.gate);
        urt_runtime_destroy(rt);
    }
}

/* ---- outside a task ------------------------------------------------------------------------ */

static void *sleep_on_plain_thread(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)urt_sleep(MS);
}

Test(sleep, sleep_outside_a_task_returns_eperm, .timeout = 30)
{
    cr_assert_eq(urt_sleep(MS), -EPERM);
    cr_assert_eq(urt_sleep(0), -EPERM);
    urt_runtime *rt = rt_new(2);
    cr_assert_eq(urt_sleep(MS), -EPERM, "the main thread is no task even while a runtime exists");
    pthread_t th;
    void *r = NULL;
    cr_assert_eq(pthread_create(&th, NULL, sleep_on_plain_thread, NULL), 0);
    cr_assert_eq(pthread_join(th, &r), 0);
    cr_assert_eq((intptr_t)r, -EPERM);
    urt_runtime_destroy(rt);
}

/* ---- relative times that overflow ------------------------------------------------------- */

typedef struct forever {
    atomic_int returned;
    int res;
    uint64_t ns;
} forever;

static void *sleep_ns(void *arg)
{
    forever *f = arg;
    f->res = urt_sleep(f->ns);
    atomic_store(&f->returned, 1);
    return NULL;
}

/* urt_sleep(UINT64_MAX) (now + ns overflows) sleeps until cancelled; it
 * never returns early. */
Test(sleep, sleep_of_uint64_max_lasts_until_cancelled, .timeout = 30)
{
    static const uint64_t lengths[] = {UINT64_MAX, UINT64_MAX - 1000, UINT64_MAX / 2, (uint64_t)INT64_MAX + 1};
    urt_runtime *rt = rt_new(2);
    for (unsigned i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        forever f = {.res = 1, .ns = lengths[i]};
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, sleep_ns, &f), 0);
        usleep(100 * 1000);
        cr_assert_eq(atomic_load(&f.returned), 0, "urt_sleep(%#llx) returned %d at once",
                     (unsigned long long)lengths[i], f.res);
        cr_assert_eq(urt_cancel(t), 0);
        cr_assert_eq(urt_join(t, NULL), -ECANCELED);
        cr_assert_eq(f.res, -ECANCELED);
    }
    urt_runtime_destroy(rt);
}
