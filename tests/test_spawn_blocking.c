/*
 * test_spawn_blocking.c - urt_spawn_blocking runs work on the blocking pool,
 * at most max_blocking_threads at once and the rest in FIFO order; join hands
 * back the value; any thread may spawn it; it never occupies a worker.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- the concurrency limit ---------------------------------------------------------- */

#define LIMIT 4
#define JOBS  8

typedef struct limit {
    atomic_int cur, max;
    atomic_int started;
} limit;

static void *concurrent_job(void *arg)
{
    limit *l = arg;
    int c = atomic_fetch_add(&l->cur, 1) + 1;
    int m = atomic_load(&l->max);
    while (c > m && !atomic_compare_exchange_weak(&l->max, &m, c))
        ;
    atomic_fetch_add(&l->started, 1);
    /* hold the slot until the limit has been reached (or 5 s passed), then a
     * further 50 ms so that a job beyond the limit would overlap */
    uint64_t give_up = mono_ns() + 5000 * MS;
    while (atomic_load(&l->max) < LIMIT && mono_ns() < give_up)
        usleep(1000);
    usleep(50 * 1000);
    atomic_fetch_sub(&l->cur, 1);
    return (void *)(uintptr_t)(0x100 + (uintptr_t)c);
}

Test(spawn_blocking, runs_at_most_max_blocking_threads_at_once, .timeout = 60)
{
    urt_config cfg = {.workers = 2, .max_blocking_threads = LIMIT};
    urt_runtime *rt = rt_new_cfg(&cfg);
    limit l = {0};
    urt_task *ts[JOBS];
    for (int i = 0; i < JOBS; i++)
        cr_assert_eq(urt_spawn_blocking(rt, &ts[i], concurrent_job, &l), 0);
    for (int i = 0; i < JOBS; i++) {
        void *ret = NULL;
        cr_assert_eq(urt_join(ts[i], &ret), 0);
        uintptr_t c = (uintptr_t)ret - 0x100;
        cr_assert(c >= 1 && c <= LIMIT, "job %d saw %zu jobs running", i, (size_t)c);
    }
    cr_log_info("max concurrency seen: %d", atomic_load(&l.max));
    cr_assert_eq(atomic_load(&l.started), JOBS);
    cr_assert_eq(atomic_load(&l.max), LIMIT, "at most %d jobs should run at once, and %d can", LIMIT, LIMIT);
    cr_assert_eq(atomic_load(&l.cur), 0);
    urt_runtime_destroy(rt);
}

/* ---- FIFO beyond the limit ----------------------------------------------------------------- */

#define FIFO_JOBS 32

typedef struct fifo {
    atomic_uint next;
    unsigned order[FIFO_JOBS];
} fifo;

typedef struct fifo_job {
    fifo *f;
    unsigned idx;
} fifo_job;

static void *record_order(void *arg)
{
    fifo_job *j = arg;
    unsigned at = atomic_fetch_add(&j->f->next, 1);
    if (at < FIFO_JOBS)
        j->f->order[at] = j->idx;
    return NULL;
}

Test(spawn_blocking, queued_work_runs_in_fifo_order, .timeout = 30)
{
    urt_config cfg = {.workers = 1, .max_blocking_threads = 1};
    urt_runtime *rt = rt_new_cfg(&cfg);
    fifo f;
    memset(&f, 0, sizeof(f));
    fifo_job jobs[FIFO_JOBS];
    urt_task *ts[FIFO_JOBS];
    for (unsigned i = 0; i < FIFO_JOBS; i++) {
        jobs[i] = (fifo_job){&f, i};
        cr_assert_eq(urt_spawn_blocking(rt, &ts[i], record_order, &jobs[i]), 0);
    }
    for (unsigned i = 0; i < FIFO_JOBS; i++)
        cr_assert_eq(urt_join(ts[i], NULL), 0);
    cr_assert_eq(atomic_load(&f.next), FIFO_JOBS);
    for (unsigned i = 0; i < FIFO_JOBS; i++)
        cr_assert_eq(f.order[i], i, "job %u ran in position %u", f.order[i], i);
    urt_runtime_destroy(rt);
}

/* ---- join values, from a task and from plain threads ------------------------------------- */

static void *times_three(void *arg) { return (void *)((uintptr_t)arg * 3); }

static void *join_blocking_in_task(void *arg)
{
    (void)arg;
    uintptr_t bad = 0;
    for (uintptr_t i = 1; i <= 16; i++) {
        urt_task *t = NULL;
        void *ret = NULL;
        if (urt_spawn_blocking(NULL, &t, times_three, (void *)i) != 0 || urt_join(t, &ret) != 0 ||
            (uintptr_t)ret != 3 * i)
            bad++;
    }
    return (void *)bad;
}

typedef struct from_thread {
    urt_runtime *rt;
    unsigned bad;
} from_thread;

static void *plain_thread_spawns(void *arg)
{
    from_thread *ft = arg;
    for (uintptr_t i = 1; i <= 16; i++) {
        urt_task *t = NULL;
        void *ret = NULL;
        if (urt_spawn_blocking(ft->rt, &t, times_three, (void *)i) != 0 || urt_join(t, &ret) != 0 ||
            (uintptr_t)ret != 3 * i)
            ft->bad++;
    }
    return NULL;
}

Test(spawn_blocking, join_returns_the_value_whoever_spawned_it, .timeout = 30)
{
    static const unsigned counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        urt_config cfg = {.workers = counts[k]};
        urt_runtime *rt = rt_new_cfg(&cfg);

        /* from the main thread */
        urt_task *t = NULL;
        void *ret = NULL;
        cr_assert_eq(urt_spawn_blocking(rt, &t, times_three, (void *)(uintptr_t)14), 0);
        cr_assert_eq(urt_join(t, &ret), 0);
        cr_assert_eq((uintptr_t)ret, 42);

        /* from a task, joined there */
        void *bad = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, join_blocking_in_task, NULL, &bad), 0);
        cr_assert_null(bad, "%u workers: %zu blocking jobs joined from a task went wrong", counts[k],
                       (size_t)(uintptr_t)bad);

        /* from other plain threads at once */
        from_thread ft[3] = {{rt, 0}, {rt, 0}, {rt, 0}};
        pthread_t th[3];
        for (int i = 0; i < 3; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, plain_thread_spawns, &ft[i]), 0);
        for (int i = 0; i < 3; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(ft[i].bad, 0, "%u workers: thread %d: %u jobs went wrong", counts[k], i, ft[i].bad);
        }
        urt_runtime_destroy(rt);
    }
}

/* ---- blocking work never holds a worker ---------------------------------------------------- */

typedef struct pipe_wait {
    int pipe[2];
    ssize_t wres;
} pipe_wait;

static void *blocking_read(void *arg)
{
    pipe_wait *p = arg;
    struct pollfd pfd = {.fd = p->pipe[0], .events = POLLIN};
    if (poll(&pfd, 1, 20000) != 1)
        return (void *)(uintptr_t)0xbad;
    char c = 0;
    return read(p->pipe[0], &c, 1) == 1 && c == 'y' ? (void *)(uintptr_t)0x600d : (void *)(uintptr_t)0xbad;
}

static void *spawn_blocking_then_write(void *arg)
{
    pipe_wait *p = arg;
    urt_task *t = NULL;
    if (urt_spawn_blocking(NULL, &t, blocking_read, p) != 0)
        return (void *)(uintptr_t)1;
    urt_sleep(5 * MS);
    p->wres = urt_write(p->pipe[1], "y", 1, -1);
    void *ret = NULL;
    if (urt_join(t, &ret) != 0)
        return (void *)(uintptr_t)2;
    return ret;
}

Test(spawn_blocking, blocking_work_leaves_the_single_worker_free, .timeout = 60)
{
    urt_config cfg = {.workers = 1};
    urt_runtime *rt = rt_new_cfg(&cfg);
    pipe_wait p = {.wres = -1};
    cr_assert_eq(pipe2(p.pipe, O_CLOEXEC), 0);
    void *ret = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, spawn_blocking_then_write, &p, &ret), 0);
    cr_assert_eq(p.wres, 1);
    cr_assert_eq((uintptr_t)ret, 0x600d, "the blocking job never saw the byte the task wrote (%p)", ret);
    close(p.pipe[0]);
    close(p.pipe[1]);
    urt_runtime_destroy(rt);
}

/* ---- an idle pool thread is counted once ---------------------------------------------- */

/* Two jobs that can only finish together: each waits (up to 2 s) for the
 * other to arrive. Run one after the other, the first gives up. */
typedef struct rendezvous {
    atomic_int arrived;
    atomic_int met;
} rendezvous;

static void *meet(void *arg)
{
    rendezvous *r = arg;
    atomic_fetch_add(&r->arrived, 1);
    uint64_t give_up = mono_ns() + 2000 * MS;
    while (atomic_load(&r->arrived) < 2 && mono_ns() < give_up)
        usleep(200);
    if (atomic_load(&r->arrived) >= 2)
        atomic_fetch_add(&r->met, 1);
    return NULL;
}

static void *nothing(void *arg) { return arg; }

Test(spawn_blocking, two_jobs_submitted_while_one_thread_is_idle_run_at_the_same_time, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    for (int round = 0; round < 5; round++) {
        /* leave exactly one idle pool thread behind */
        urt_task *w = NULL;
        cr_assert_eq(urt_spawn_blocking(rt, &w, nothing, NULL), 0);
        cr_assert_eq(urt_join(w, NULL), 0);
        usleep(20 * 1000);
        rendezvous r = {0};
        urt_task *a = NULL, *b = NULL;
        cr_assert_eq(urt_spawn_blocking(rt, &a, meet, &r), 0);
        cr_assert_eq(urt_spawn_blocking(rt, &b, meet, &r), 0);
        cr_assert_eq(urt_join(a, NULL), 0);
        cr_assert_eq(urt_join(b, NULL), 0);
        cr_assert_eq(atomic_load(&r.met), 2, "round %d: the two jobs ran one after the other", round);
    }
    urt_runtime_destroy(rt);
}

/* ---- no thread can be started --------------------------------------------------------- */

typedef struct bip_try {
    int res;
    bool ran;
} bip_try;

static void *mark_ran(void *arg)
{
    *(bool *)arg = true;
    return NULL;
}

static void *try_block_in_place(void *arg)
{
    bip_try *b = arg;
    b->res = urt_block_in_place(mark_ran, &b->ran, NULL);
    return NULL;
}

/* RLIMIT_NPROC applies to unprivileged users: with the limit reached no
 * pool thread can be created, and both entries say -EAGAIN instead of
 * queueing work that nothing will ever run. */
Test(spawn_blocking, spawn_blocking_and_block_in_place_give_eagain_when_no_thread_can_be_started, .timeout = 60)
{
    become_unprivileged();
    urt_runtime *rt = rt_new(1);
    struct rlimit old;
    cr_assert_eq(getrlimit(RLIMIT_NPROC, &old), 0);
    struct rlimit low = {.rlim_cur = 1, .rlim_max = old.rlim_max};
    cr_assert_eq(setrlimit(RLIMIT_NPROC, &low), 0);

    urt_task *t = (urt_task *)0x1;
    cr_assert_eq(urt_spawn_blocking(rt, &t, nothing, NULL), -EAGAIN);
    cr_assert_null(t);
    bip_try b = {.res = 1};
    cr_assert_eq(urt_runtime_block_on(rt, try_block_in_place, &b, NULL), 0);
    cr_assert_eq(b.res, -EAGAIN);
    cr_assert(!b.ran, "fn ran although block_in_place failed");

    /* threads can be had again: both work */
    cr_assert_eq(setrlimit(RLIMIT_NPROC, &old), 0);
    void *r = NULL;
    cr_assert_eq(urt_spawn_blocking(rt, &t, nothing, (void *)5), 0);
    cr_assert_eq(urt_join(t, &r), 0);
    cr_assert_eq((uintptr_t)r, 5);
    b.res = 1;
    cr_assert_eq(urt_runtime_block_on(rt, try_block_in_place, &b, NULL), 0);
    cr_assert_eq(b.res, 0);
    cr_assert(b.ran);
    urt_runtime_destroy(rt);
}

/* ---- shutdown from the pool ----------------------------------------------------------- */

static void *shutdown_own_runtime(void *arg)
{
    return (void *)(intptr_t)urt_runtime_shutdown((urt_runtime *)arg, 0);
}

static void *shutdown_in_place(void *arg)
{
    void *r = NULL;
    urt_block_in_place(shutdown_own_runtime, arg, &r);
    return r;
}

Test(spawn_blocking, shutdown_from_a_blocking_job_or_block_in_place_gives_edeadlk_at_once, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    urt_task *t = NULL;
    void *r = NULL;
    cr_assert_eq(urt_spawn_blocking(rt, &t, shutdown_own_runtime, rt), 0);
    cr_assert_eq(urt_join(t, &r), 0);
    cr_assert_eq((intptr_t)r, -EDEADLK);
    cr_assert_eq(urt_runtime_block_on(rt, shutdown_in_place, rt, &r), 0);
    cr_assert_eq((intptr_t)r, -EDEADLK);
    /* the runtime still works */
    cr_assert_eq(urt_runtime_block_on(rt, nothing, (void *)3, &r), 0);
    cr_assert_eq((uintptr_t)r, 3);
    urt_runtime_destroy(rt);
}

/* ---- a finished job's value survives a shutdown ---------------------------------------- */

static void *slow_42(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
    usleep(200 * 1000);
    return (void *)42;
}

Test(spawn_blocking, job_that_returns_during_shutdown_joins_with_its_value, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    atomic_int started = 0;
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn_blocking(rt, &t, slow_42, &started), 0);
    while (!atomic_load(&started))
        usleep(1000);
    cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
    void *r = NULL;
    cr_assert_eq(urt_join(t, &r), 0, "a job that ran to the end joins as 0");
    cr_assert_eq((uintptr_t)r, 42);
    urt_runtime_destroy(rt);
}
