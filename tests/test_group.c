/* urt_group: members are collected exactly once each, in the order they end;
 * a group's collector may time out or be cancelled without losing a member;
 * destroy cancels and waits for every member. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>

#include "support/urt_test.h"

#if defined(URT_TSAN)
#define MANY 1000
#define DESTROY_BOUND_MS 5000   /* measured about 1 s here */
#elif defined(URT_ASAN)
#define MANY 5000
#define DESTROY_BOUND_MS 2000
#else
#define MANY 10000
#define DESTROY_BOUND_MS 250    /* measured 20-40 ms; an upper bound for a loaded machine */
#endif

#define MS 1000000ull

/* Run fn(arg) as a task of a new runtime of `workers` workers; fn returns
 * NULL, or the number of the step that failed. */
static void run_steps(unsigned workers, urt_fn fn, void *arg)
{
    urt_runtime *rt = rt_new(workers);
    void *r = (void *)99;
    cr_assert_eq(urt_runtime_block_on(rt, fn, arg, &r), 0);
    cr_assert_null(r, "%u workers: step %p failed", workers, r);
    urt_runtime_destroy(rt);
}

/* g has nothing left: next says -ECHILD, then destroy. NULL, or `step`. */
static void *finish_empty(urt_group *g, uintptr_t step)
{
    return urt_group_next(g, NULL, NULL) == -ECHILD && urt_group_destroy(g) == 0 ? NULL : (void *)step;
}

/* ---- every member exactly once ---------------------------------------------- */

static _Atomic uint64_t member_id[MANY];

static void *record_member(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    atomic_store(&member_id[i], urt_self_id());
    if (i % 3 == 0)
        urt_yield();
    return (void *)(i + 1);
}

static void *collect_all(void *arg)
{
    (void)arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    for (uintptr_t i = 0; i < MANY; i++)
        if (urt_group_spawn(g, record_member, (void *)i, NULL) != 0)
            return (void *)2;
    static unsigned char seen[MANY];
    memset(seen, 0, sizeof(seen));
    size_t got = 0;
    for (;;) {
        void *v = NULL;
        uint64_t id = 0;
        int r = urt_group_next(g, &v, &id);
        if (r == -ECHILD)
            break;
        if (r != 0)
            return (void *)3;
        uintptr_t i = (uintptr_t)v - 1;
        if (i >= MANY || seen[i] || atomic_load(&member_id[i]) != id || id == 0)
            return (void *)4;
        seen[i] = 1;
        got++;
        if (urt_group_len(g) != MANY - got)
            return (void *)5;
    }
    if (got != MANY || urt_group_len(g) != 0)
        return (void *)6;
    return finish_empty(g, 7);
}

Test(group, every_member_is_collected_exactly_once_with_its_id_and_value, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w)
        run_steps(w, collect_all, NULL);
}

/* ---- empty, cancelled, bad input ---------------------------------------------- */

static void *sleep_forever(void *arg)
{
    (void)arg;
    urt_sleep(UINT64_MAX);
    return (void *)7;
}

static void *empty_and_cancelled(void *arg)
{
    (void)arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    uint64_t id = 5;
    if (urt_group_next(g, NULL, &id) != -ECHILD || id != 0)
        return (void *)2;
    if (urt_group_spawn(g, sleep_forever, NULL, NULL) != 0 || urt_group_len(g) != 1)
        return (void *)3;
    urt_sleep(5 * MS);
    if (urt_group_cancel(g) != 0)
        return (void *)4;
    void *v = (void *)1;
    int r = urt_group_next(g, &v, &id);
    if (r != -ECANCELED || urt_cancelled() || id == 0)
        return (void *)5;
    if (urt_group_len(g) != 0)
        return (void *)6;
    return finish_empty(g, 7);
}

Test(group, empty_group_gives_echild_and_cancelled_member_gives_ecanceled, .timeout = 30)
{
    run_steps(2, empty_and_cancelled, NULL);
}

static void *spawn_self_destroy(void *arg)
{
    urt_group *g = arg;
    return (void *)(intptr_t)urt_group_destroy(g);
}

static void *bad_inputs(void *arg)
{
    (void)arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    if (urt_group_spawn(NULL, sleep_forever, NULL, NULL) != -EINVAL || urt_group_spawn(g, NULL, NULL, NULL) != -EINVAL)
        return (void *)2;
    urt_spawn_opts bad = {.flags = 0x80};
    if (urt_group_spawn(g, sleep_forever, NULL, &bad) != -EINVAL || urt_group_len(g) != 0)
        return (void *)3;
    /* a member cannot destroy its own group */
    if (urt_group_spawn(g, spawn_self_destroy, g, NULL) != 0)
        return (void *)4;
    void *v = NULL;
    if (urt_group_next(g, &v, NULL) != 0 || (intptr_t)v != -EDEADLK)
        return (void *)5;
    return urt_group_destroy(g) == 0 ? NULL : (void *)6;
}

Test(group, bad_input_gives_clear_errors, .timeout = 30)
{
    cr_assert_eq(urt_group_create(NULL), -EINVAL);
    cr_assert_eq(urt_group_next(NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_group_cancel(NULL), -EINVAL);
    cr_assert_eq(urt_group_destroy(NULL), -EINVAL);
    cr_assert_eq(urt_group_len(NULL), 0);
    urt_group *g;
    cr_assert_eq(urt_group_create(&g), 0);
    cr_assert_eq(urt_group_spawn(g, sleep_forever, NULL, NULL), -EPERM, "a plain thread names no runtime");
    cr_assert_eq(urt_group_next(g, NULL, NULL), -ECHILD);
    cr_assert_eq(urt_group_destroy(g), 0);
    run_steps(2, bad_inputs, NULL);
}

/* ---- destroy ------------------------------------------------------------------- */

#define SLEEPERS 1000
static atomic_int sleepers_ended, sleepers_dropped, sleepers_started;

static void *sleeper(void *arg)
{
    (void)arg;
    atomic_fetch_add(&sleepers_started, 1);
    urt_sleep(UINT64_MAX);
    atomic_fetch_add(&sleepers_ended, 1);
    return NULL;
}

static void count_drop(void *arg)
{
    (void)arg;
    atomic_fetch_add(&sleepers_dropped, 1);
}

static void reset_sleepers(void)
{
    atomic_store(&sleepers_ended, 0);
    atomic_store(&sleepers_dropped, 0);
    atomic_store(&sleepers_started, 0);
}

static void *destroy_sleepers(void *arg)
{
    uint64_t *took = arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    urt_spawn_opts o = {.name = "sleeper", .on_drop = count_drop};
    for (int i = 0; i < SLEEPERS; i++)
        if (urt_group_spawn(g, sleeper, NULL, &o) != 0)
            return (void *)2;
    for (int i = 0; i < 2000 && atomic_load(&sleepers_started) < SLEEPERS; i++)
        urt_sleep(MS);
    uint64_t t0 = urt_now();
    if (urt_group_destroy(g) != 0)
        return (void *)3;
    *took = urt_now() - t0;
    /* nothing outlives the group: every member has ended by now */
    if (atomic_load(&sleepers_ended) + atomic_load(&sleepers_dropped) != SLEEPERS)
        return (void *)4;
    return NULL;
}

Test(group, destroy_cancels_and_waits_for_a_thousand_sleeping_members, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        reset_sleepers();
        uint64_t took = 0;
        run_steps(w, destroy_sleepers, &took);
        cr_log_info("%u workers: destroy of %d sleeping members took %.3f ms", w, SLEEPERS, took / 1e6);
        cr_assert_lt(took, DESTROY_BOUND_MS * MS, "destroy took %llu ns", (unsigned long long)took);
    }
}

/* Members keep spawning siblings into their own group while another task
 * destroys it: a spawn that is past its check when the group closes still
 * lands, and destroy waits for it; so when destroy returns, every member
 * that a spawn reported has ended or been dropped, and none is running. */
#define BREEDERS 4
#if defined(URT_TSAN) || defined(URT_ASAN)
#define BRED_TARGET 300
#define BRED_ROUNDS 4
#else
#define BRED_TARGET 2000
#define BRED_ROUNDS 20
#endif
static atomic_int bred_spawned;   /* spawns that said 0; the sleeper counters count the members */

static void *breeder(void *arg)
{
    urt_group *g = arg;
    atomic_fetch_add(&sleepers_started, 1);
    urt_spawn_opts o = {.name = "bred", .on_drop = count_drop};
    for (unsigned i = 0;; i++) {
        int r = urt_group_spawn(g, sleeper, NULL, &o);
        if (r == -ESHUTDOWN)
            break;   /* the group is closing */
        if (r != 0) {
            atomic_fetch_add(&sleepers_ended, 1);
            return (void *)1;
        }
        atomic_fetch_add(&bred_spawned, 1);
        if (i % 8 == 0)
            urt_yield();
    }
    atomic_fetch_add(&sleepers_ended, 1);
    return NULL;
}

static void *destroy_while_members_spawn(void *arg)
{
    (void)arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    urt_spawn_opts o = {.name = "breeder", .on_drop = count_drop};
    for (int i = 0; i < BREEDERS; i++) {
        if (urt_group_spawn(g, breeder, g, &o) != 0)
            return (void *)2;
        atomic_fetch_add(&bred_spawned, 1);
    }
    /* let them breed a while, across the workers */
    for (int i = 0; i < 2000 && atomic_load(&bred_spawned) < BRED_TARGET; i++)
        urt_sleep(MS / 10);
    if (urt_group_destroy(g) != 0)
        return (void *)3;
    int spawned = atomic_load(&bred_spawned), started = atomic_load(&sleepers_started);
    int ended = atomic_load(&sleepers_ended), dropped = atomic_load(&sleepers_dropped);
    if (started != ended)
        return (void *)4;   /* a member still runs after destroy returned */
    if (spawned != ended + dropped)
        return (void *)5;   /* a member neither ended nor was dropped */
    return NULL;
}

Test(group, destroy_waits_for_members_spawned_while_it_runs, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        for (int round = 0; round < BRED_ROUNDS; round++) {
            atomic_store(&bred_spawned, 0);
            reset_sleepers();
            run_steps(w, destroy_while_members_spawn, NULL);
        }
    }
}

/* One spawn into the group from a task that is not a member is in flight
 * (held inside urt_spawn by the runtime's spawn hook) when destroy begins:
 * destroy waits for it, its member lands, is cancelled, and has ended when
 * destroy returns; the spawner's call returns after destroy began and is
 * its last use of the group. */
static atomic_int slow_armed, slow_inside, slow_destroying;

static void slow_spawn_hook(urt_task *t, void *data)
{
    (void)t, (void)data;
    if (!atomic_exchange(&slow_armed, 0))
        return;
    atomic_store(&slow_inside, 1);
    /* hooks must not suspend: spin until destroy has begun, and a little
     * longer so that it reaches its wait */
    while (!atomic_load(&slow_destroying))
        ;
    for (volatile int i = 0; i < 2000000; i++)
        ;
}

static void *lone_spawner(void *arg)
{
    urt_group *g = arg;
    urt_spawn_opts o = {.name = "lone", .on_drop = count_drop};
    atomic_store(&slow_armed, 1);
    return (void *)(intptr_t)urt_group_spawn(g, sleeper, NULL, &o);
}

/* From a plain thread, which destroys by blocking: a worker stuck in the
 * hook then holds up no part of the destroy. NULL, or the failed step. */
static void *destroy_during_a_spawn(urt_runtime *rt)
{
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    urt_task *sp;
    if (urt_spawn(rt, &sp, lone_spawner, g) != 0)
        return (void *)2;
    while (!atomic_load(&slow_inside))
        sched_yield();
    atomic_store(&slow_destroying, 1);
    if (urt_group_destroy(g) != 0)
        return (void *)3;
    int started = atomic_load(&sleepers_started), ended = atomic_load(&sleepers_ended);
    int dropped = atomic_load(&sleepers_dropped);
    void *r = NULL;
    if (urt_join(sp, &r) != 0)
        return (void *)4;
    if ((intptr_t)r == 0 && ended + dropped != 1)
        return (void *)5;   /* the spawn landed: its member must be over */
    if (started != ended)
        return (void *)6;   /* a member still runs after destroy returned */
    if ((intptr_t)r != 0 && (intptr_t)r != -ESHUTDOWN)
        return (void *)7;
    return NULL;
}

Test(group, destroy_waits_for_a_spawn_in_flight_from_a_non_member, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        for (int round = 0; round < 5; round++) {
            atomic_store(&slow_armed, 0);
            atomic_store(&slow_inside, 0);
            atomic_store(&slow_destroying, 0);
            reset_sleepers();
            urt_config cfg = {.workers = w, .on_task_spawn = slow_spawn_hook};
            urt_runtime *rt = rt_new_cfg(&cfg);
            void *r = destroy_during_a_spawn(rt);
            cr_assert_null(r, "%u workers: step %p failed", w, r);
            urt_runtime_destroy(rt);
        }
    }
}

/* A plain thread collects and destroys: it blocks. */
static void *spawn_into(void *arg)
{
    urt_group *g = arg;
    for (uintptr_t i = 0; i < 100; i++)
        if (urt_group_spawn(g, record_member, (void *)i, NULL) != 0)
            return (void *)1;
    if (urt_group_spawn(g, sleep_forever, NULL, NULL) != 0)
        return (void *)2;
    return NULL;
}

Test(group, a_plain_thread_collects_and_destroys_by_blocking, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    urt_group *g;
    cr_assert_eq(urt_group_create(&g), 0);
    void *r = (void *)99;
    cr_assert_eq(urt_runtime_block_on(rt, spawn_into, g, &r), 0);
    cr_assert_null(r);
    unsigned char seen[100] = {0};
    for (int k = 0; k < 100; k++) {
        void *v = NULL;
        cr_assert_eq(urt_group_next(g, &v, NULL), 0);
        uintptr_t i = (uintptr_t)v - 1;
        cr_assert_lt(i, 100);
        cr_assert_eq(seen[i], 0);
        seen[i] = 1;
    }
    cr_assert_eq(urt_group_len(g), 1, "the sleeper is left");
    cr_assert_eq(urt_group_destroy(g), 0);
    urt_runtime_destroy(rt);
}

/* ---- the collector's time bounds and cancellation -------------------------------- */

static void *wait_notify(void *arg)
{
    urt_notify *n = arg;
    return urt_notify_wait(n) == 0 ? (void *)42 : (void *)13;
}

/* A group with one member waiting on a new notify. */
static bool group_with_waiter(urt_group **g, urt_notify **n)
{
    if (urt_group_create(g) != 0)
        return false;
    if (urt_notify_create(n) != 0)
        return false;
    return urt_group_spawn(*g, wait_notify, *n, NULL) == 0;
}

/* Wake that member, collect its value, free both. */
static bool release_and_collect(urt_group *g, urt_notify *n, uint64_t *id)
{
    urt_notify_signal(n);
    void *v = NULL;
    bool ok = urt_group_next(g, &v, id) == 0 && v == (void *)42;
    urt_notify_destroy(n);
    return urt_group_destroy(g) == 0 && ok;
}

static void *bounded_collect(void *arg)
{
    (void)arg;
    urt_group *g;
    urt_notify *n;
    if (!group_with_waiter(&g, &n))
        return (void *)1;
    uint64_t old = urt_op_timeout(10 * MS);
    uint64_t id = 9;
    int r = urt_group_next(g, NULL, &id);
    urt_op_timeout(old);
    if (r != -ETIMEDOUT || id != 0 || urt_group_len(g) != 1)
        return (void *)3;
    uint64_t oldd = urt_deadline(urt_now() + 10 * MS);
    r = urt_group_next(g, NULL, NULL);
    urt_deadline(oldd);
    if (r != -ETIMEDOUT || urt_group_len(g) != 1)
        return (void *)4;
    urt_notify_signal(n);
    urt_sleep(20 * MS);   /* the member ends while nobody collects */
    if (!release_and_collect(g, n, &id) || id == 0)
        return (void *)5;
    return NULL;
}

Test(group, next_with_a_timeout_gives_etimedout_and_the_member_is_collected_later, .timeout = 30)
{
    run_steps(2, bounded_collect, NULL);
}

struct collector_arg {
    urt_group *g;
    int result;
    bool cancelled;
};

static void *collector(void *arg)
{
    struct collector_arg *c = arg;
    c->result = urt_group_next(c->g, NULL, NULL);
    c->cancelled = urt_cancelled();
    return NULL;
}

static void *cancel_collector(void *arg)
{
    (void)arg;
    urt_group *g;
    urt_notify *n;
    if (!group_with_waiter(&g, &n))
        return (void *)1;
    struct collector_arg c = {.g = g};
    urt_task *ct;
    if (urt_spawn(NULL, &ct, collector, &c) != 0)
        return (void *)3;
    for (int i = 0; i < 1000 && !task_waits_on(urt_current(), ct, "group"); i++)
        urt_sleep(MS);
    /* a second collector is refused while the first waits, and so is destroy */
    if (urt_group_next(g, NULL, NULL) != -EBUSY || urt_group_destroy(g) != -EBUSY)
        return (void *)4;
    urt_cancel(ct);
    /* the join says -ECANCELED too: the collector was asked to stop */
    if (urt_join(ct, NULL) != -ECANCELED || c.result != -ECANCELED || !c.cancelled)
        return (void *)5;
    if (urt_group_len(g) != 1)
        return (void *)6;
    return release_and_collect(g, n, NULL) ? NULL : (void *)7;
}

Test(group, a_cancelled_collector_loses_nothing_and_a_second_collector_gets_ebusy, .timeout = 30)
{
    run_steps(2, cancel_collector, NULL);
}

/* ---- members spawned from many tasks while one collects --------------------------- */

#define SPAWNERS 8
#define PER_SPAWNER (MANY / SPAWNERS)

static void *value_member(void *arg) { return arg; }

static void *spawner(void *arg)
{
    urt_group *g = arg;
    uintptr_t base = (uintptr_t)urt_self_id() << 20;
    for (uintptr_t i = 0; i < PER_SPAWNER; i++) {
        if (urt_group_spawn(g, value_member, (void *)(base | i), NULL) != 0)
            return (void *)1;
        if (i % 64 == 0)
            urt_yield();
    }
    return NULL;
}

static void *collect_from_spawners(void *arg)
{
    (void)arg;
    urt_group *g;
    if (urt_group_create(&g) != 0)
        return (void *)1;
    urt_task *sp[SPAWNERS];
    uint64_t ids[SPAWNERS];
    for (int i = 0; i < SPAWNERS; i++) {
        if (urt_spawn(NULL, &sp[i], spawner, g) != 0)
            return (void *)2;
        ids[i] = urt_task_id(sp[i]);
    }
    static unsigned char seen[SPAWNERS][PER_SPAWNER];
    memset(seen, 0, sizeof(seen));
    size_t got = 0;
    while (got < (size_t)SPAWNERS * PER_SPAWNER) {
        void *v;
        int r = urt_group_next(g, &v, NULL);
        if (r == -ECHILD) {
            urt_yield();   /* the spawners have not caught up */
            continue;
        }
        if (r != 0)
            return (void *)3;
        uintptr_t who = (uintptr_t)v >> 20, i = (uintptr_t)v & ((1u << 20) - 1);
        int s = -1;
        for (int k = 0; k < SPAWNERS; k++)
            if (ids[k] == who)
                s = k;
        if (s < 0 || i >= PER_SPAWNER || seen[s][i])
            return (void *)4;
        seen[s][i] = 1;
        got++;
    }
    for (int i = 0; i < SPAWNERS; i++)
        if (urt_join(sp[i], NULL) != 0)
            return (void *)5;
    return finish_empty(g, 6);
}

Test(group, members_spawned_from_other_tasks_are_each_collected_once, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w)
        run_steps(w, collect_from_spawners, NULL);
}
