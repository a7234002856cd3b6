/* Task headers that are spawned on one thread and freed on another (a plain
 * thread's join, a worker that stole or was sent the task), and owned-list
 * entries of tasks that complete away from the worker that spawned them:
 * every task is counted once, its result arrives intact, the metrics add up,
 * and handles never joined are freed by destroy (the ASan build's leak check
 * sees any header left behind). */
#include <pthread.h>
#include <stdatomic.h>

#include "support/urt_test.h"

#if defined(URT_TSAN) || defined(URT_ASAN)
#define ROUNDS 5
#define PER_ROUND 300
#else
#define ROUNDS 20
#define PER_ROUND 2000
#endif

typedef struct fan {
    urt_task *h[PER_ROUND];
    _Atomic unsigned ran;
    _Atomic unsigned seen[PER_ROUND];
    unsigned flags;
} fan;

typedef struct child_arg {
    fan *f;
    unsigned i;
} child_arg;

static child_arg args[PER_ROUND];

static void *child(void *p)
{
    child_arg *a = p;
    atomic_fetch_add(&a->f->seen[a->i], 1);
    atomic_fetch_add(&a->f->ran, 1);
    if (a->i % 7 == 0)
        urt_yield();   /* some end after another trip through a queue */
    return (void *)(uintptr_t)(a->i + 1);
}

/* Spawns the round's children with handles from inside a task: their
 * headers come from this worker's cache and their owned-list entries from
 * its shard; SPREAD sends some to the other workers, which complete them. */
static void *spawner(void *p)
{
    fan *f = p;
    urt_spawn_opts o = {.flags = f->flags};
    for (unsigned i = 0; i < PER_ROUND; i++) {
        args[i].f = f;
        args[i].i = i;
        cr_assert_eq(urt_spawn_ex(NULL, &f->h[i], child, &args[i], &o), 0);
    }
    return NULL;
}

static void check_metrics_settle(urt_runtime *rt, uint64_t want_spawned)
{
    urt_metrics m;
    /* a task's completion is counted before its joiner wakes: exact at once */
    cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
    cr_assert_eq(m.live_tasks, 0, "live_tasks=%llu", (unsigned long long)m.live_tasks);
    cr_assert_eq(m.spawned_total, want_spawned);
    cr_assert_eq(m.completed_total, want_spawned);
}

Test(task_slab, headers_freed_by_a_plain_threads_join_come_back_and_every_result_is_intact, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        for (unsigned spread = 0; spread < 2; spread++) {
            urt_runtime *rt = rt_new(w);
            fan *f = calloc(1, sizeof(*f));
            cr_assert_not_null(f);
            f->flags = spread ? URT_TASK_SPREAD : 0;
            uint64_t spawned = 0;
            for (unsigned r = 0; r < ROUNDS; r++) {
                atomic_store(&f->ran, 0);
                for (unsigned i = 0; i < PER_ROUND; i++)
                    atomic_store(&f->seen[i], 0);
                cr_assert_eq(urt_runtime_block_on(rt, spawner, f, NULL), 0);
                spawned += 1 + PER_ROUND;
                for (unsigned i = 0; i < PER_ROUND; i++) {
                    void *ret = NULL;
                    cr_assert_eq(urt_join(f->h[i], &ret), 0);
                    cr_assert_eq((uintptr_t)ret, i + 1);
                }
                cr_assert_eq(atomic_load(&f->ran), PER_ROUND);
                for (unsigned i = 0; i < PER_ROUND; i++)
                    cr_assert_eq(atomic_load(&f->seen[i]), 1, "child %u ran %u times", i,
                                 atomic_load(&f->seen[i]));
                check_metrics_settle(rt, spawned);
            }
            cr_assert_eq(urt_runtime_shutdown(rt, 1000ull * 1000 * 1000), 0);
            urt_runtime_destroy(rt);
            free(f);
        }
    }
}

/* Plain-thread spawns (the shared header cache) from two threads at once,
 * joined by the other thread: headers cross threads both ways. */
typedef struct remote_ctx {
    urt_runtime *rt;
    urt_task **h;
    unsigned n;
} remote_ctx;

static void *ret_arg(void *p) { return p; }

static void *remote_spawner(void *p)
{
    remote_ctx *c = p;
    for (unsigned i = 0; i < c->n; i++)
        cr_assert_eq(urt_spawn(c->rt, &c->h[i], ret_arg, (void *)(uintptr_t)(i + 1)), 0);
    return NULL;
}

Test(task_slab, two_plain_threads_spawn_and_a_third_joins_each_task_once, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        remote_ctx c[2];
        for (unsigned k = 0; k < 2; k++) {
            c[k].rt = rt;
            c[k].n = PER_ROUND;
            c[k].h = calloc(PER_ROUND, sizeof(urt_task *));
            cr_assert_not_null(c[k].h);
        }
        uint64_t spawned = 0;
        for (unsigned r = 0; r < ROUNDS; r++) {
            pthread_t th[2];
            for (unsigned k = 0; k < 2; k++)
                cr_assert_eq(pthread_create(&th[k], NULL, remote_spawner, &c[k]), 0);
            for (unsigned k = 0; k < 2; k++)
                cr_assert_eq(pthread_join(th[k], NULL), 0);
            for (unsigned k = 0; k < 2; k++)
                for (unsigned i = 0; i < PER_ROUND; i++) {
                    void *ret = NULL;
                    cr_assert_eq(urt_join(c[k].h[i], &ret), 0);
                    cr_assert_eq((uintptr_t)ret, i + 1);
                }
            spawned += 2 * PER_ROUND;
            check_metrics_settle(rt, spawned);
        }
        urt_runtime_destroy(rt);
        for (unsigned k = 0; k < 2; k++)
            free(c[k].h);
    }
}

/* Handles never joined, of tasks that completed on other workers than their
 * spawner's: destroy names and frees them (a header left behind is a leak
 * in the ASan build), and the dump never lists them as live. */
Test(task_slab, unjoined_handles_of_tasks_completed_elsewhere_are_freed_by_destroy, .timeout = 60)
{
    urt_runtime *rt = rt_new(4);
    fan *f = calloc(1, sizeof(*f));
    cr_assert_not_null(f);
    f->flags = URT_TASK_SPREAD;
    cr_assert_eq(urt_runtime_block_on(rt, spawner, f, NULL), 0);
    while (atomic_load(&f->ran) < PER_ROUND)
        usleep(1000);
    urt_metrics m;
    for (int tries = 0; tries < 5000; tries++) {
        cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
        if (m.live_tasks == 0)
            break;
        usleep(1000);
    }
    cr_assert_eq(m.live_tasks, 0);
    cr_assert_eq(m.completed_total, m.spawned_total);
    for (unsigned i = 0; i < PER_ROUND; i += 97)
        cr_assert(!task_listed(rt, f->h[i]), "a completed task is listed as live");
    int saved = stderr_capture_begin();
    urt_runtime_destroy(rt);
    char *err = stderr_capture_end(saved);
    cr_assert_not_null(strstr(err, "never joined or detached"), "destroy said: %s", err);
    free(err);
    free(f);
}
