/*
 * test_spawn.c - every spawned task runs exactly once, whoever spawns it
 * (a task or a plain thread), joined or detached; join hands back the
 * task's value; spawn trees complete; the spawn/terminate hooks fire once
 * per task.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#if defined(URT_TSAN)
#define SAN_DIV 20
#elif defined(URT_ASAN)
#define SAN_DIV 5
#else
#define SAN_DIV 1
#endif

#define NTASKS     (100000u / SAN_DIV)
#define TREE_DEPTH (SAN_DIV == 1 ? 12u : 9u)

static const unsigned worker_counts[] = {1, 2, 4};
#define FOR_EACH_WORKER_COUNT(w) \
    for (size_t wi_ = 0; wi_ < sizeof(worker_counts) / sizeof(worker_counts[0]); wi_++) \
        for (unsigned w = worker_counts[wi_], once_ = 1; once_; once_ = 0)

static urt_runtime *rt_new_cfg(const urt_config *cfg)
{
    urt_runtime *rt = NULL;
    int r = urt_runtime_create(&rt, cfg);
    if (r == -ENOSYS || r == -EPERM)
        cr_skip_test("io_uring is not usable here: urt_runtime_create gave %s", strerror(-r));
    cr_assert_eq(r, 0, "urt_runtime_create: %s", strerror(-r));
    cr_assert_not_null(rt);
    return rt;
}

static urt_runtime *rt_new(unsigned workers)
{
    urt_config cfg = {.workers = workers};
    return rt_new_cfg(&cfg);
}

static void *value_of(unsigned i) { return (void *)(uintptr_t)(i * 7u + 3u); }

/* ---- every task runs exactly once ------------------------------------------ */

static _Atomic uint32_t *counts;

static void *count_once(void *arg)
{
    unsigned i = (unsigned)(uintptr_t)arg;
    atomic_fetch_add_explicit(&counts[i], 1, memory_order_relaxed);
    return value_of(i);
}

typedef struct spawn_all {
    urt_runtime *rt;      /* NULL: spawn into the current runtime */
    unsigned n;
    urt_task **handles;
    unsigned spawn_errors, join_errors, wrong_values;
} spawn_all;

/* Spawn n count_once tasks with handles, then join them all, checking values. */
static void *spawn_and_join_all(void *arg)
{
    spawn_all *s = arg;
    for (unsigned i = 0; i < s->n; i++)
        if (urt_spawn(s->rt, &s->handles[i], count_once, (void *)(uintptr_t)i) != 0)
            s->spawn_errors++;
    for (unsigned i = 0; i < s->n; i++) {
        if (!s->handles[i])
            continue;
        void *ret = NULL;
        if (urt_join(s->handles[i], &ret) != 0)
            s->join_errors++;
        else if (ret != value_of(i))
            s->wrong_values++;
    }
    return NULL;
}

static void check_counts(unsigned n, unsigned workers)
{
    unsigned zero = 0, many = 0, first_bad = n;
    for (unsigned i = 0; i < n; i++) {
        uint32_t c = atomic_load(&counts[i]);
        if (c != 1 && first_bad == n)
            first_bad = i;
        zero += c == 0;
        many += c > 1;
    }
    cr_assert_eq(zero + many, 0,
                 "%u workers: %u task(s) never ran, %u ran more than once (first: index %u)",
                 workers, zero, many, first_bad);
}

Test(spawn, every_task_spawned_from_a_task_runs_exactly_once, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        counts = calloc(NTASKS, sizeof(*counts));
        spawn_all s = {.rt = NULL, .n = NTASKS, .handles = calloc(NTASKS, sizeof(urt_task *))};
        cr_assert(counts && s.handles);

        cr_assert_eq(urt_runtime_block_on(rt, spawn_and_join_all, &s, NULL), 0);

        cr_assert_eq(s.spawn_errors, 0, "%u workers: %u spawns failed", w, s.spawn_errors);
        cr_assert_eq(s.join_errors, 0, "%u workers: %u joins failed", w, s.join_errors);
        cr_assert_eq(s.wrong_values, 0, "%u workers: %u joins returned a wrong value", w, s.wrong_values);
        check_counts(NTASKS, w);
        free(s.handles);
        free(counts);
        urt_runtime_destroy(rt);
    }
}

Test(spawn, every_task_spawned_from_the_main_thread_runs_exactly_once, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        counts = calloc(NTASKS, sizeof(*counts));
        spawn_all s = {.rt = rt, .n = NTASKS, .handles = calloc(NTASKS, sizeof(urt_task *))};
        cr_assert(counts && s.handles);

        spawn_and_join_all(&s);   /* on this thread: spawns go through the inject queue, joins block */

        cr_assert_eq(s.spawn_errors, 0, "%u workers: %u spawns failed", w, s.spawn_errors);
        cr_assert_eq(s.join_errors, 0, "%u workers: %u joins failed", w, s.join_errors);
        cr_assert_eq(s.wrong_values, 0, "%u workers: %u joins returned a wrong value", w, s.wrong_values);
        check_counts(NTASKS, w);
        free(s.handles);
        free(counts);
        urt_runtime_destroy(rt);
    }
}

/* ---- join hands back the value ------------------------------------------------- */

static void *return_arg(void *arg) { return arg; }

static void *join_values_in_task(void *arg)
{
    (void)arg;
    static const uintptr_t vals[] = {0, 1, 42, UINTPTR_MAX, (uintptr_t)&join_values_in_task};
    uintptr_t bad = 0;
    for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
        urt_task *t = NULL;
        void *ret = (void *)(uintptr_t)0xdead;
        if (urt_spawn(NULL, &t, return_arg, (void *)vals[i]) != 0 || urt_join(t, &ret) != 0 ||
            ret != (void *)vals[i])
            bad |= (uintptr_t)1 << i;
    }
    return (void *)bad;
}

Test(spawn, join_returns_the_task_value, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);

        /* from a plain thread */
        for (uintptr_t v = 0; v < 64; v++) {
            urt_task *t = NULL;
            cr_assert_eq(urt_spawn(rt, &t, return_arg, (void *)(v * 0x1001)), 0);
            cr_assert_not_null(t);
            void *ret = NULL;
            cr_assert_eq(urt_join(t, &ret), 0);
            cr_assert_eq(ret, (void *)(v * 0x1001), "%u workers: join gave %p for %p", w, ret,
                         (void *)(v * 0x1001));
        }
        /* a NULL ret pointer is allowed */
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, return_arg, (void *)7), 0);
        cr_assert_eq(urt_join(t, NULL), 0);

        /* from inside a task (suspending join), and block_on's own ret */
        void *bad = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, join_values_in_task, NULL, &bad), 0);
        cr_assert_eq(bad, NULL, "%u workers: joins in a task returned wrong values (mask %p)", w, bad);

        urt_runtime_destroy(rt);
    }
}

/* ---- spawn trees ------------------------------------------------------------------ */

static atomic_uint tree_nodes, tree_errors;

static void *tree_node(void *arg)
{
    unsigned depth = (unsigned)(uintptr_t)arg;
    atomic_fetch_add_explicit(&tree_nodes, 1, memory_order_relaxed);
    if (depth == 0)
        return (void *)(uintptr_t)1;
    urt_task *l = NULL, *r = NULL;
    uintptr_t sum = 1;
    if (urt_spawn(NULL, &l, tree_node, (void *)(uintptr_t)(depth - 1)) != 0)
        atomic_fetch_add(&tree_errors, 1);
    if (urt_spawn(NULL, &r, tree_node, (void *)(uintptr_t)(depth - 1)) != 0)
        atomic_fetch_add(&tree_errors, 1);
    urt_task *kids[2] = {l, r};
    for (int i = 0; i < 2; i++) {
        void *v = NULL;
        if (kids[i] && urt_join(kids[i], &v) == 0)
            sum += (uintptr_t)v;
        else
            atomic_fetch_add(&tree_errors, 1);
    }
    return (void *)sum;
}

Test(spawn, recursive_binary_spawn_tree_runs_every_node, .timeout = 120)
{
    const uintptr_t expect = ((uintptr_t)1 << (TREE_DEPTH + 1)) - 1;
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        atomic_store(&tree_nodes, 0);
        atomic_store(&tree_errors, 0);
        void *sum = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, tree_node, (void *)(uintptr_t)TREE_DEPTH, &sum), 0);
        cr_assert_eq(atomic_load(&tree_errors), 0, "%u workers: %u spawn/join errors in the tree", w,
                     atomic_load(&tree_errors));
        cr_assert_eq((uintptr_t)sum, expect, "%u workers: tree sum %zu, expected %zu", w, (size_t)(uintptr_t)sum,
                     (size_t)expect);
        cr_assert_eq(atomic_load(&tree_nodes), expect, "%u workers: %u nodes ran, expected %zu", w,
                     atomic_load(&tree_nodes), (size_t)expect);
        urt_runtime_destroy(rt);
    }
}

/* ---- detached tasks ------------------------------------------------------------------ */

typedef struct detached {
    atomic_uint ran;
    unsigned total;
    urt_notify *all_done;
    unsigned spawn_errors;
} detached;

static void *detached_body(void *arg)
{
    detached *d = arg;
    if (atomic_fetch_add(&d->ran, 1) + 1 == d->total)
        urt_notify_signal(d->all_done);
    return NULL;
}

static void *spawn_detached_from_task(void *arg)
{
    detached *d = arg;
    for (unsigned i = 0; i < d->total / 4; i++) {
        urt_task *t = NULL;
        if (i % 2 == 0) {
            if (urt_spawn(NULL, NULL, detached_body, d) != 0)
                d->spawn_errors++;
        } else if (urt_spawn(NULL, &t, detached_body, d) == 0) {
            urt_detach(t);
        } else {
            d->spawn_errors++;
        }
    }
    return NULL;
}

Test(spawn, detached_tasks_still_run, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        detached d = {.total = 4000};
        cr_assert_eq(urt_notify_create(&d.all_done), 0);

        /* half from this thread (t NULL, and handle + urt_detach), half from a task */
        for (unsigned i = 0; i < d.total / 2; i++) {
            urt_task *t = NULL;
            if (i % 2 == 0) {
                cr_assert_eq(urt_spawn(rt, NULL, detached_body, &d), 0);
            } else {
                cr_assert_eq(urt_spawn(rt, &t, detached_body, &d), 0);
                urt_detach(t);
            }
        }
        for (int k = 0; k < 2; k++)
            cr_assert_eq(urt_runtime_block_on(rt, spawn_detached_from_task, &d, NULL), 0);
        cr_assert_eq(d.spawn_errors, 0);

        cr_assert_eq(urt_notify_wait(d.all_done), 0);
        cr_assert_eq(atomic_load(&d.ran), d.total, "%u workers: %u of %u detached tasks ran", w,
                     atomic_load(&d.ran), d.total);
        urt_runtime_shutdown(rt, UINT64_MAX);
        cr_assert_eq(atomic_load(&d.ran), d.total, "%u workers: a detached task ran twice", w);
        urt_notify_destroy(d.all_done);
        urt_runtime_destroy(rt);
    }
}

/* ---- hooks ---------------------------------------------------------------------------- */

#define HOOK_TASKS 3000u
#define HOOK_IDS   (2 * HOOK_TASKS + 16)

typedef struct hooks {
    _Atomic uint32_t spawned[HOOK_IDS];
    _Atomic uint32_t terminated[HOOK_IDS];
    atomic_uint out_of_range, terminate_before_spawn;
} hooks;

static void on_spawn(urt_task *t, void *data)
{
    hooks *h = data;
    uint64_t id = urt_task_id(t);
    if (id >= HOOK_IDS) {
        atomic_fetch_add(&h->out_of_range, 1);
        return;
    }
    atomic_fetch_add(&h->spawned[id], 1);
}

static void on_terminate(urt_task *t, void *data)
{
    hooks *h = data;
    uint64_t id = urt_task_id(t);
    if (id >= HOOK_IDS) {
        atomic_fetch_add(&h->out_of_range, 1);
        return;
    }
    if (atomic_load(&h->spawned[id]) != 1)
        atomic_fetch_add(&h->terminate_before_spawn, 1);
    atomic_fetch_add(&h->terminated[id], 1);
}

static void *noop(void *arg) { return arg; }

typedef struct hook_run {
    urt_task *handles[HOOK_TASKS];
    uint64_t ids[HOOK_TASKS];
    unsigned errors;
} hook_run;

static void *hook_spawner(void *arg)
{
    hook_run *r = arg;
    for (unsigned i = HOOK_TASKS / 2; i < HOOK_TASKS; i++) {
        if (urt_spawn(NULL, &r->handles[i], noop, NULL) != 0) {
            r->errors++;
            continue;
        }
        r->ids[i] = urt_task_id(r->handles[i]);
    }
    return NULL;
}

Test(spawn, hooks_are_called_once_per_task, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        hooks *h = calloc(1, sizeof(*h));
        hook_run *r = calloc(1, sizeof(*r));
        cr_assert(h && r);
        urt_config cfg = {.workers = w, .on_task_spawn = on_spawn, .on_task_terminate = on_terminate,
                          .hook_data = h};
        urt_runtime *rt = rt_new_cfg(&cfg);

        /* half from this thread (a third of those on the blocking pool), half from a task */
        for (unsigned i = 0; i < HOOK_TASKS / 2; i++) {
            int e = i % 3 == 0 ? urt_spawn_blocking(rt, &r->handles[i], noop, NULL)
                               : urt_spawn(rt, &r->handles[i], noop, NULL);
            cr_assert_eq(e, 0);
            r->ids[i] = urt_task_id(r->handles[i]);
        }
        urt_task *root = NULL;
        cr_assert_eq(urt_spawn(rt, &root, hook_spawner, r), 0);
        uint64_t root_id = urt_task_id(root);
        cr_assert_eq(urt_join(root, NULL), 0);
        cr_assert_eq(r->errors, 0);
        for (unsigned i = 0; i < HOOK_TASKS; i++)
            cr_assert_eq(urt_join(r->handles[i], NULL), 0);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);

        cr_assert_eq(atomic_load(&h->out_of_range), 0, "a hook saw a task id beyond the tasks spawned");
        cr_assert_eq(atomic_load(&h->terminate_before_spawn), 0,
                     "on_task_terminate ran for a task whose on_task_spawn had not run once");
        cr_assert_eq(atomic_load(&h->spawned[root_id]), 1);
        cr_assert_eq(atomic_load(&h->terminated[root_id]), 1);
        unsigned total_spawned = 0, total_terminated = 0;
        for (unsigned i = 0; i < HOOK_IDS; i++) {
            total_spawned += atomic_load(&h->spawned[i]);
            total_terminated += atomic_load(&h->terminated[i]);
        }
        for (unsigned i = 0; i < HOOK_TASKS; i++) {
            uint64_t id = r->ids[i];
            cr_assert(id > 0 && id < HOOK_IDS);
            cr_assert_eq(atomic_load(&h->spawned[id]), 1, "%u workers: on_task_spawn ran %u times for task %llu",
                         w, atomic_load(&h->spawned[id]), (unsigned long long)id);
            cr_assert_eq(atomic_load(&h->terminated[id]), 1,
                         "%u workers: on_task_terminate ran %u times for task %llu", w,
                         atomic_load(&h->terminated[id]), (unsigned long long)id);
        }
        cr_assert_eq(total_spawned, HOOK_TASKS + 1, "%u workers: %u spawn hook calls for %u tasks", w,
                     total_spawned, HOOK_TASKS + 1);
        cr_assert_eq(total_terminated, HOOK_TASKS + 1, "%u workers: %u terminate hook calls for %u tasks", w,
                     total_terminated, HOOK_TASKS + 1);
        urt_runtime_destroy(rt);
        free(r);
        free(h);
    }
}

/* ---- hooks must not wait ------------------------------------------------------------------ */

#define VICTIMS 16

typedef struct waiting_hooks {
    atomic_int armed;
    urt_task *victims[VICTIMS];
    atomic_int next_victim;
    urt_notify *never;
    urt_mutex *held;
    atomic_int calls, join_res, sleep_res, notify_res, lock_res, wrong;
} waiting_hooks;

static waiting_hooks *wh;

static void *sleep_hour(void *arg)
{
    urt_sleep(3600ull * 1000 * 1000 * 1000);
    return arg;
}

/* each waiting call made inside a hook must return -EDEADLK at once */
static void try_to_wait(void)
{
    if (!atomic_load(&wh->armed))
        return;
    int k = atomic_fetch_add(&wh->next_victim, 1);
    if (k >= VICTIMS)
        return;
    atomic_fetch_add(&wh->calls, 1);
    int r = urt_join(wh->victims[k], NULL);   /* -EDEADLK leaves the handle to us */
    if (r != -EDEADLK)
        atomic_store(&wh->join_res, r ? r : 99), atomic_fetch_add(&wh->wrong, 1);
    if ((r = urt_sleep(1000)) != -EDEADLK)
        atomic_store(&wh->sleep_res, r ? r : 99), atomic_fetch_add(&wh->wrong, 1);
    if ((r = urt_notify_wait(wh->never)) != -EDEADLK)
        atomic_store(&wh->notify_res, r ? r : 99), atomic_fetch_add(&wh->wrong, 1);
    if ((r = urt_mutex_lock(wh->held)) != -EDEADLK)
        atomic_store(&wh->lock_res, r ? r : 99), atomic_fetch_add(&wh->wrong, 1);
}

static void waiting_on_spawn(urt_task *t, void *data) { try_to_wait(); }
static void waiting_on_terminate(urt_task *t, void *data) { try_to_wait(); }

static void *spawn_one_from_task(void *arg)
{
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, noop, NULL) != 0)
        return (void *)1;
    return (void *)(intptr_t)urt_join(t, NULL);
}

Test(spawn, waiting_calls_inside_hooks_give_edeadlk_instead_of_hanging, .timeout = 30)
{
    wh = calloc(1, sizeof(*wh));
    cr_assert_not_null(wh);
    cr_assert_eq(urt_notify_create(&wh->never), 0);
    cr_assert_eq(urt_mutex_create(&wh->held), 0);
    cr_assert_eq(urt_mutex_lock(wh->held), 0);
    urt_config cfg = {.workers = 2, .on_task_spawn = waiting_on_spawn, .on_task_terminate = waiting_on_terminate};
    urt_runtime *rt = rt_new_cfg(&cfg);
    for (int i = 0; i < VICTIMS; i++)
        cr_assert_eq(urt_spawn(rt, &wh->victims[i], sleep_hour, NULL), 0);
    atomic_store(&wh->armed, 1);
    /* on_task_spawn on this plain thread, on_task_terminate on a worker */
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, noop, NULL), 0);
    cr_assert_eq(urt_join(t, NULL), 0);
    /* on_task_spawn inside a task */
    void *r = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, spawn_one_from_task, NULL, &r), 0);
    cr_assert_eq((intptr_t)r, 0);
    atomic_store(&wh->armed, 0);
    cr_assert_geq(atomic_load(&wh->calls), 4);
    cr_assert_eq(atomic_load(&wh->wrong), 0, "join %d, sleep %d, notify %d, lock %d instead of -EDEADLK",
                 atomic_load(&wh->join_res), atomic_load(&wh->sleep_res), atomic_load(&wh->notify_res),
                 atomic_load(&wh->lock_res));
    for (int i = 0; i < VICTIMS; i++)
        urt_detach(wh->victims[i]);
    urt_runtime_destroy(rt);
    urt_mutex_unlock(wh->held);
    urt_mutex_destroy(wh->held);
    urt_notify_destroy(wh->never);
    free(wh);
}

/* ---- on_drop: fn never ran ---------------------------------------------------------------- */

typedef struct dropped {
    atomic_int dropped, ran;
} dropped;

static dropped *drops;

static void count_drop(void *arg)
{
    if (arg == (void *)drops)
        atomic_fetch_add(&drops->dropped, 1);
}

static void *count_ran(void *arg)
{
    atomic_fetch_add(&((dropped *)arg)->ran, 1);
    return NULL;
}

static atomic_int hold_started, hold_go;

/* Keeps the one worker busy until told, so the tasks spawned meanwhile
 * are still queued when they are cancelled. */
static void *hold_worker(void *arg)
{
    (void)arg;
    atomic_store(&hold_started, 1);
    while (!atomic_load(&hold_go))
        ;
    return NULL;
}

/* A task cancelled before it ran, and the never-run tasks a shutdown
 * ends, call on_drop(arg) instead of fn (so what arg owns is released);
 * a task that ran never calls it. Exactly one of the two, once. */
Test(spawn, on_drop_is_called_once_for_every_task_that_never_ran, .timeout = 60)
{
    drops = calloc(1, sizeof(*drops));
    cr_assert_not_null(drops);
    urt_runtime *rt = rt_new(1);
    urt_spawn_opts o = {.name = "dropme", .on_drop = count_drop};
    /* the worker is held by a task while this thread spawns many and
     * cancels every other one: those are cancelled before they run */
    atomic_store(&hold_started, 0);
    atomic_store(&hold_go, 0);
    urt_task *h;
    cr_assert_eq(urt_spawn(rt, &h, hold_worker, NULL), 0);
    while (!atomic_load(&hold_started))
        usleep(100);
    urt_task *t[200];
    for (int i = 0; i < 200; i++)
        cr_assert_eq(urt_spawn_ex(rt, &t[i], count_ran, drops, &o), 0);
    for (int i = 0; i < 200; i += 2)
        urt_cancel(t[i]);
    atomic_store(&hold_go, 1);
    cr_assert_eq(urt_join(h, NULL), 0);
    int ran = 0, cancelled = 0;
    for (int i = 0; i < 200; i++) {
        int r = urt_join(t[i], NULL);
        cr_assert(r == 0 || r == -ECANCELED, "join gave %d", r);
        r == 0 ? ran++ : cancelled++;
    }
    /* exactly one of fn and on_drop per task; a task cancelled while it ran
     * joins as -ECANCELED but ran fn, so it is not dropped */
    int ndropped = atomic_load(&drops->dropped);
    cr_assert_eq(ndropped, 100, "%d of the 100 cancelled before they ran were dropped", ndropped);
    cr_assert_eq(atomic_load(&drops->ran) + ndropped, 200, "%d ran, %d dropped", atomic_load(&drops->ran), ndropped);
    cr_assert_leq(ndropped, cancelled, "%d dropped but only %d joined as cancelled", ndropped, cancelled);
    cr_assert_geq(atomic_load(&drops->ran), ran);
    urt_runtime_shutdown(rt, 0);
    urt_runtime_destroy(rt);
    free(drops);
}
