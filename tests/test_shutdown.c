/*
 * test_shutdown.c - urt_runtime_shutdown cancels whatever is still running
 * (after the grace period), refuses new spawns with -ESHUTDOWN, ends
 * never-started tasks without running them, and destroy is clean.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS   (1000ull * 1000)
#define HOUR (3600ull * 1000 * MS)

#if defined(URT_TSAN)
#define SAN_DIV 5
#elif defined(URT_ASAN)
#define SAN_DIV 2
#else
#define SAN_DIV 1
#endif

#define SLEEPERS (10000u / SAN_DIV)

/* ---- cancelling sleepers ------------------------------------------------------------- */

typedef struct sleepers {
    atomic_uint asleep, cancelled, other, ended;
} sleepers;

static void *sleep_for_an_hour(void *arg)
{
    sleepers *s = arg;
    atomic_fetch_add(&s->asleep, 1);
    int r = urt_sleep(HOUR);
    atomic_fetch_add(r == -ECANCELED ? &s->cancelled : &s->other, 1);
    atomic_fetch_add(&s->ended, 1);
    return NULL;
}

Test(shutdown, shutdown_cancels_every_sleeping_task, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        sleepers s = {0};
        for (unsigned i = 0; i < SLEEPERS; i++)
            cr_assert_eq(urt_spawn(rt, NULL, sleep_for_an_hour, &s), 0);
        while (atomic_load(&s.asleep) < SLEEPERS)
            usleep(1000);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        cr_assert_eq(atomic_load(&s.cancelled), SLEEPERS, "%u workers: %u of %u sleeps ended with -ECANCELED", w,
                     atomic_load(&s.cancelled), SLEEPERS);
        cr_assert_eq(atomic_load(&s.other), 0);
        cr_assert_eq(atomic_load(&s.ended), SLEEPERS);
        urt_runtime_destroy(rt);
    }
}

Test(shutdown, destroy_alone_cancels_sleeping_tasks, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    sleepers s = {0};
    for (unsigned i = 0; i < 100; i++)
        cr_assert_eq(urt_spawn(rt, NULL, sleep_for_an_hour, &s), 0);
    while (atomic_load(&s.asleep) < 100)
        usleep(1000);
    urt_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&s.cancelled), 100);
}

/* ---- grace period ---------------------------------------------------------------------- */

typedef struct graceful {
    atomic_uint started, normal, cancelled;
    atomic_int long_result;
} graceful;

static void *short_work(void *arg)
{
    graceful *g = arg;
    atomic_fetch_add(&g->started, 1);
    int r = 0;
    for (int i = 0; i < 3 && r == 0; i++)
        r = urt_sleep(MS);
    atomic_fetch_add(r == 0 ? &g->normal : &g->cancelled, 1);
    return NULL;
}

static void *long_work(void *arg)
{
    graceful *g = arg;
    atomic_fetch_add(&g->started, 1);
    atomic_store(&g->long_result, urt_sleep(HOUR));
    return NULL;
}

Test(shutdown, grace_period_lets_short_tasks_finish, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        graceful g = {0};
        for (int i = 0; i < 100; i++)
            cr_assert_eq(urt_spawn(rt, NULL, short_work, &g), 0);
        cr_assert_eq(urt_runtime_shutdown(rt, 30000 * MS), 0);
        cr_assert_eq(atomic_load(&g.normal), 100, "%u workers: %u of 100 short tasks ended normally", w,
                     atomic_load(&g.normal));
        cr_assert_eq(atomic_load(&g.cancelled), 0);
        urt_runtime_destroy(rt);
    }
}

Test(shutdown, grace_period_ends_by_cancelling_the_tasks_still_running, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    graceful g = {.long_result = 1};
    cr_assert_eq(urt_spawn(rt, NULL, long_work, &g), 0);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(urt_spawn(rt, NULL, short_work, &g), 0);
    while (atomic_load(&g.started) < 51)
        usleep(1000);
    cr_assert_eq(urt_runtime_shutdown(rt, 1000 * MS), 0);
    cr_assert_eq(atomic_load(&g.normal), 50, "%u of 50 short tasks ended normally", atomic_load(&g.normal));
    cr_assert_eq(atomic_load(&g.long_result), -ECANCELED, "the long sleep gave %d", atomic_load(&g.long_result));
    urt_runtime_destroy(rt);
}

/* ---- spawns after shutdown ------------------------------------------------------------------ */

static void *never_runs(void *arg)
{
    atomic_int *ran = arg;
    atomic_store(ran, 1);
    return NULL;
}

typedef struct late_spawner {
    atomic_int asleep;
    int sleep_res, spawn_res, blocking_res;
    atomic_int child_ran;
} late_spawner;

static void *spawn_when_cancelled(void *arg)
{
    late_spawner *l = arg;
    atomic_store(&l->asleep, 1);
    l->sleep_res = urt_sleep(HOUR);
    urt_task *t = (urt_task *)1;
    l->spawn_res = urt_spawn(NULL, &t, never_runs, &l->child_ran);
    if (t)
        l->spawn_res = 1000;   /* *t must be NULL on failure */
    l->blocking_res = urt_spawn_blocking(NULL, NULL, never_runs, &l->child_ran);
    return NULL;
}

Test(shutdown, spawn_after_shutdown_fails_with_eshutdown, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        late_spawner l = {.sleep_res = 1, .spawn_res = 1, .blocking_res = 1};
        cr_assert_eq(urt_spawn(rt, NULL, spawn_when_cancelled, &l), 0);
        while (!atomic_load(&l.asleep))
            usleep(1000);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        /* during shutdown, from the task being cancelled */
        cr_assert_eq(l.sleep_res, -ECANCELED);
        cr_assert_eq(l.spawn_res, -ESHUTDOWN, "%u workers: spawn during shutdown gave %d", w, l.spawn_res);
        cr_assert_eq(l.blocking_res, -ESHUTDOWN);

        /* after shutdown, from this thread */
        atomic_int ran = 0;
        urt_task *t = (urt_task *)1;
        cr_assert_eq(urt_spawn(rt, &t, never_runs, &ran), -ESHUTDOWN);
        cr_assert_null(t);
        cr_assert_eq(urt_spawn(rt, NULL, never_runs, &ran), -ESHUTDOWN);
        urt_spawn_opts o = {.name = "late"};
        cr_assert_eq(urt_spawn_ex(rt, NULL, never_runs, &ran, &o), -ESHUTDOWN);
        cr_assert_eq(urt_spawn_blocking(rt, NULL, never_runs, &ran), -ESHUTDOWN);
        cr_assert_eq(urt_runtime_block_on(rt, never_runs, &ran, NULL), -ESHUTDOWN);
        cr_assert_eq(atomic_load(&ran), 0);
        cr_assert_eq(atomic_load(&l.child_ran), 0);
        /* idempotent */
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        urt_runtime_destroy(rt);
    }
}

/* ---- never-started tasks ----------------------------------------------------------------------- */

typedef struct unstarted {
    atomic_int ran;
    int join_res;
    void *join_ret;
} unstarted;

static void *return_marker(void *arg)
{
    unstarted *u = arg;
    atomic_store(&u->ran, 1);
    return (void *)(uintptr_t)0x77;
}

static void *spawn_cancel_join(void *arg)
{
    unstarted *u = arg;
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, return_marker, u) != 0)
        return (void *)1;
    /* t sits in this worker's queue: this task has not let it run yet */
    urt_cancel(t);
    u->join_ret = (void *)(uintptr_t)0xdead;
    u->join_res = urt_join(t, &u->join_ret);
    return NULL;
}

Test(shutdown, never_started_task_that_is_cancelled_joins_with_ecanceled, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        unstarted u = {.join_res = 1};
        void *err = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, spawn_cancel_join, &u, &err), 0);
        cr_assert_null(err);
        if (atomic_load(&u.ran)) {
            /* with other workers an idle one may steal and run it before the
             * cancel: then it ran to the end and hands back its value */
            cr_assert_gt(w, 1, "on one worker the cancelled task ran");
            cr_assert(u.join_res == 0 || u.join_res == -ECANCELED, "%u workers: join gave %d", w, u.join_res);
            cr_assert_eq((uintptr_t)u.join_ret, 0x77);
        } else {
            cr_assert_eq(u.join_res, -ECANCELED, "%u workers: join gave %d", w, u.join_res);
            cr_assert_null(u.join_ret, "a task that never ran hands back NULL");
        }
        urt_runtime_destroy(rt);
    }
}

/* ---- destroy ---------------------------------------------------------------------------------------- */

Test(shutdown, destroy_with_no_tasks_is_clean, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        urt_runtime_destroy(rt);

        rt = rt_new(w);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        cr_assert_eq(urt_runtime_shutdown(rt, UINT64_MAX), 0);
        urt_runtime_destroy(rt);
    }
    urt_runtime_destroy(NULL);
}

static void *nothing(void *arg) { return arg; }

Test(shutdown, destroy_after_joined_tasks_is_clean, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        for (uintptr_t i = 0; i < 100; i++) {
            void *r = NULL;
            cr_assert_eq(urt_runtime_block_on(rt, nothing, (void *)i, &r), 0);
            cr_assert_eq((uintptr_t)r, i);
        }
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        urt_runtime_destroy(rt);
    }
}

static void *sleep_for_an_hour_plain(void *arg)
{
    urt_sleep(HOUR);
    return arg;
}

/* ---- spawns racing shutdown ---------------------------------------------------------------- */

#define RACE_ROUNDS (1000u / SAN_DIV)
#define RACERS 4

typedef struct racer {
    urt_runtime *rt;
    atomic_uint *ran;
    unsigned accepted, refused, joined_ok, joined_cancelled, other;
} racer;

static void *count_run(void *arg)
{
    atomic_fetch_add((atomic_uint *)arg, 1);
    return NULL;
}

static void *race_spawns(void *arg)
{
    racer *r = arg;
    for (;;) {
        urt_task *t = NULL;
        int e = urt_spawn(r->rt, &t, count_run, r->ran);
        if (e == -ESHUTDOWN) {
            r->refused++;
            return NULL;
        }
        if (e != 0) {
            r->other++;
            return NULL;
        }
        r->accepted++;
        e = urt_join(t, NULL);   /* hangs if the task was accepted but never queued */
        if (e == 0)
            r->joined_ok++;
        else if (e == -ECANCELED)
            r->joined_cancelled++;
        else
            r->other++;
    }
}

/* Every spawn either is refused with -ESHUTDOWN or its task runs (or is
 * cancelled) and its join returns. */
Test(shutdown, spawns_from_plain_threads_racing_shutdown_are_refused_or_joined, .timeout = 300)
{
    for (unsigned round = 0; round < RACE_ROUNDS; round++) {
        urt_runtime *rt = rt_new(1 + round % 4);
        atomic_uint ran = 0;
        racer r[RACERS];
        pthread_t th[RACERS];
        for (int i = 0; i < RACERS; i++) {
            r[i] = (racer){.rt = rt, .ran = &ran};
            cr_assert_eq(pthread_create(&th[i], NULL, race_spawns, &r[i]), 0);
        }
        if (round % 3)
            usleep(round % 500);
        cr_assert_eq(urt_runtime_shutdown(rt, round % 2 ? 1000 * MS : 0), 0);
        unsigned accepted = 0, ok = 0, cancelled = 0;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(th[i], NULL);
            cr_assert_eq(r[i].other, 0, "round %u: an unexpected result", round);
            cr_assert_eq(r[i].refused, 1);
            accepted += r[i].accepted;
            ok += r[i].joined_ok;
            cancelled += r[i].joined_cancelled;
        }
        cr_assert_eq(ok + cancelled, accepted, "round %u: %u accepted, %u joined", round, accepted, ok + cancelled);
        /* a task may run and still join as -ECANCELED (cancelled while it ran) */
        cr_assert(atomic_load(&ran) >= ok && atomic_load(&ran) <= accepted, "round %u: %u ran, %u joined with 0, %u accepted",
                  round, atomic_load(&ran), ok, accepted);
        urt_runtime_destroy(rt);
    }
}

/* A spawn held (by a test hook inside the library) between its check of
 * "shutdown has started" and its insertion into the task list while a
 * shutdown with no live task runs to the end: the spawn must be refused,
 * or its task must run (or be cancelled) and its join return. Before the
 * list could be closed the spawn returned 0 and the join never returned. */
extern void (*urt__test_spawn_gap)(void);
static _Thread_local bool in_gap_thread;
static atomic_int gap_entered;

static void hold_in_gap(void)
{
    if (!in_gap_thread)
        return;
    atomic_store(&gap_entered, 1);
    usleep(200 * 1000);   /* the shutdown runs meanwhile */
}

typedef struct gap_spawn {
    urt_runtime *rt;
    int spawn_res, join_res;
    atomic_int done;
} gap_spawn;

static void *noop(void *arg) { return arg; }

static void *spawn_through_gap(void *arg)
{
    gap_spawn *g = arg;
    in_gap_thread = true;
    urt_task *t = NULL;
    g->spawn_res = urt_spawn(g->rt, &t, noop, NULL);
    if (g->spawn_res == 0)
        g->join_res = urt_join(t, NULL);
    atomic_store(&g->done, 1);
    return NULL;
}

Test(shutdown, a_spawn_held_across_a_whole_shutdown_is_refused_not_lost, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        gap_spawn g = {.rt = rt, .spawn_res = 1, .join_res = 1};
        atomic_store(&gap_entered, 0);
        urt__test_spawn_gap = hold_in_gap;
        pthread_t th;
        cr_assert_eq(pthread_create(&th, NULL, spawn_through_gap, &g), 0);
        while (!atomic_load(&gap_entered))
            usleep(100);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        for (int i = 0; i < 5000 && !atomic_load(&g.done); i++)
            usleep(1000);
        cr_assert(atomic_load(&g.done), "%u workers: the spawn or its join never returned", w);
        pthread_join(th, NULL);
        urt__test_spawn_gap = NULL;
        cr_assert(g.spawn_res == -ESHUTDOWN || (g.spawn_res == 0 && (g.join_res == 0 || g.join_res == -ECANCELED)),
                  "spawn %d, join %d", g.spawn_res, g.join_res);
        urt_runtime_destroy(rt);
    }
}

/* ---- destroy with plain threads still waiting ------------------------------------------------ */

typedef struct blocked {
    urt_runtime *rt;
    urt_task *t;
    int res;
    atomic_int entered;
} blocked;

static void *join_from_thread(void *arg)
{
    blocked *b = arg;
    atomic_store(&b->entered, 1);
    b->res = urt_join(b->t, NULL);
    return NULL;
}

static void *block_on_from_thread(void *arg)
{
    blocked *b = arg;
    atomic_store(&b->entered, 1);
    b->res = urt_runtime_block_on(b->rt, sleep_for_an_hour_plain, NULL, NULL);
    return NULL;
}

Test(shutdown, destroy_wakes_plain_threads_blocked_in_join_and_block_on_with_ecanceled, .timeout = 60)
{
    for (int round = 0; round < 20; round++) {
        urt_runtime *rt = rt_new(2);
        blocked j = {.rt = rt, .res = 1}, b = {.rt = rt, .res = 1};
        cr_assert_eq(urt_spawn(rt, &j.t, sleep_for_an_hour_plain, NULL), 0);
        pthread_t tj, tb;
        cr_assert_eq(pthread_create(&tj, NULL, join_from_thread, &j), 0);
        cr_assert_eq(pthread_create(&tb, NULL, block_on_from_thread, &b), 0);
        while (!atomic_load(&j.entered) || !atomic_load(&b.entered))
            usleep(100);
        usleep(1000 * (2 + round % 5));   /* they are blocked by now */
        urt_runtime_destroy(rt);   /* TSan: nothing they touch is freed under them */
        pthread_join(tj, NULL);
        pthread_join(tb, NULL);
        cr_assert_eq(j.res, -ECANCELED, "join gave %d", j.res);
        cr_assert_eq(b.res, -ECANCELED, "block_on gave %d", b.res);
    }
}

/* ---- handles nobody joined ------------------------------------------------------------------- */

Test(shutdown, destroy_frees_unjoined_handles_and_names_their_tasks, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    urt_spawn_opts o = {.name = "orphan-one"};
    urt_task *a = NULL, *b = NULL;
    cr_assert_eq(urt_spawn_ex(rt, &a, nothing, NULL, &o), 0);
    o.name = "orphan-two";
    cr_assert_eq(urt_spawn_ex(rt, &b, sleep_for_an_hour_plain, NULL, &o), 0);
    while (task_listed(rt, a))
        usleep(1000);
    int saved = stderr_capture_begin();
    urt_runtime_destroy(rt);   /* LeakSanitizer: both headers are freed */
    char *err = stderr_capture_end(saved);
    cr_assert(strstr(err, "2 task handle(s)") != NULL, "destroy said: %s", err);
    cr_assert(strstr(err, "orphan-one") && strstr(err, "orphan-two"), "destroy did not name them: %s", err);
    free(err);
}

/* ---- a task that ignores cancellation --------------------------------------------------------- */

typedef struct stubborn {
    atomic_bool release;
    atomic_ulong calls;
    atomic_int started;
} stubborn;

static void *ignore_cancellation(void *arg)
{
    stubborn *s = arg;
    atomic_store(&s->started, 1);
    while (!atomic_load(&s->release)) {
        urt_sleep(10 * MS);   /* -ECANCELED at once once cancelled: ignored */
        atomic_fetch_add(&s->calls, 1);
    }
    return NULL;
}

Test(shutdown, task_ignoring_cancellation_is_waited_for_as_configured_and_does_not_spin, .timeout = 60)
{
    urt_config cfg = {.workers = 2, .cancel_wait_ns = 300 * MS};
    urt_runtime *rt = rt_new_cfg(&cfg);
    stubborn s = {0};
    urt_spawn_opts o = {.name = "stubborn"};
    cr_assert_eq(urt_spawn_ex(rt, NULL, ignore_cancellation, &s, &o), 0);
    while (!atomic_load(&s.started))
        usleep(1000);
    int saved = stderr_capture_begin();
    uint64_t t0 = urt_now();
    int r = urt_runtime_shutdown(rt, 100 * MS);
    uint64_t took = urt_now() - t0;
    unsigned long calls = atomic_load(&s.calls);
    char *err = stderr_capture_end(saved);
    cr_assert_eq(r, -ETIMEDOUT);
    cr_assert_lt(took, 3000 * MS, "shutdown took %llu ms for 100 ms grace + 300 ms cancel wait",
                 (unsigned long long)(took / MS));
    cr_assert(strstr(err, "300 ms") != NULL, "the message does not say the wait: %s", err);
    cr_assert(strstr(err, "stubborn") != NULL, "the message does not name the task: %s", err);
    free(err);
    /* cancelled, it gets -ECANCELED at once from every call: it is slowed
     * down instead of spinning a core (a few hundred calls, not millions) */
    cr_assert_lt(calls, 100000, "the cancelled task looped %lu times", calls);
    atomic_store(&s.release, true);
    urt_runtime_destroy(rt);   /* the task has ended by now: everything is freed */
}
