/* URT_TASK_SPREAD starts tasks round-robin over the workers, so tasks that
 * one task spawns (a server's connections) do not all stay on its worker. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdatomic.h>
#include <urt.h>

#define N 64

static atomic_int ran_on[8];

static void *record(void *arg)
{
    int w = urt_worker_id();
    if (w >= 0 && w < 8)
        atomic_fetch_add(&ran_on[w], 1);
    uint64_t until = urt_now() + 1000 * 1000;   /* 1 ms of work, no yield */
    while (urt_now() < until)
        ;
    return arg;
}

static void *spawner(void *arg)
{
    unsigned flags = (unsigned)(uintptr_t)arg;
    urt_task *t[N];
    urt_spawn_opts o = {.name = "spread", .flags = flags};
    for (int i = 0; i < N; i++)
        if (urt_spawn_ex(NULL, &t[i], record, (void *)(uintptr_t)i, &o) != 0)
            return (void *)1;
    for (int i = 0; i < N; i++) {
        void *r;
        if (urt_join(t[i], &r) != 0 || (uintptr_t)r != (uintptr_t)i)
            return (void *)2;
    }
    return NULL;
}

Test(spread, spread_tasks_run_on_several_workers, .timeout = 60)
{
    static const unsigned counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        for (int i = 0; i < 8; i++)
            atomic_store(&ran_on[i], 0);
        urt_runtime *rt;
        urt_config cfg = {0};
        cfg.workers = counts[k];
        cr_assert_eq(urt_runtime_create(&rt, &cfg), 0);
        void *r = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, spawner, (void *)(uintptr_t)URT_TASK_SPREAD, &r), 0);
        cr_assert_null(r, "spawner failed: %p", r);
        int total = 0, distinct = 0;
        for (int i = 0; i < 8; i++) {
            total += atomic_load(&ran_on[i]);
            distinct += atomic_load(&ran_on[i]) > 0;
        }
        cr_assert_eq(total, N);
        cr_log_info("%u workers: tasks per worker %d %d %d %d", counts[k], atomic_load(&ran_on[0]),
                    atomic_load(&ran_on[1]), atomic_load(&ran_on[2]), atomic_load(&ran_on[3]));
        cr_assert_geq(distinct, counts[k] > 1 ? 2 : 1, "%u workers: all tasks ran on one worker", counts[k]);
        urt_runtime_destroy(rt);
    }
}

Test(spread, unknown_spawn_flags_give_einval, .timeout = 30)
{
    urt_runtime *rt;
    cr_assert_eq(urt_runtime_create(&rt, NULL), 0);
    urt_spawn_opts o = {.flags = 0x80};
    urt_task *t = (urt_task *)1;
    cr_assert_eq(urt_spawn_ex(rt, &t, record, NULL, &o), -EINVAL);
    cr_assert_null(t);
    urt_runtime_destroy(rt);
}

/* URT_TASK_LOCAL: every task starts on the spawner's worker and stays there,
 * even while the other workers are idle and looking for work to steal. */
#define NLOCAL 1000
static atomic_int local_ran, local_away;

static void *local_task(void *arg)
{
    int home = (int)(intptr_t)arg;
    if (urt_worker_id() != home)
        atomic_fetch_add(&local_away, 1);
    uint64_t until = urt_now() + 20 * 1000;   /* 20 us of work: the others go looking */
    while (urt_now() < until)
        ;
    urt_yield();
    if (urt_worker_id() != home)
        atomic_fetch_add(&local_away, 1);
    atomic_fetch_add(&local_ran, 1);
    return NULL;
}

static void *local_spawner(void *arg)
{
    unsigned flags = (unsigned)(uintptr_t)arg;
    static urt_task *t[NLOCAL];
    intptr_t me = urt_worker_id();
    urt_spawn_opts o = {.name = "local", .flags = flags};
    for (int i = 0; i < NLOCAL; i++)
        if (urt_spawn_ex(NULL, &t[i], local_task, (void *)me, &o) != 0)
            return (void *)1;
    for (int i = 0; i < NLOCAL; i++)
        if (urt_join(t[i], NULL) != 0)
            return (void *)2;
    return NULL;
}

Test(spread, local_tasks_run_only_on_the_spawners_worker, .timeout = 60)
{
    urt_runtime *rt;
    urt_config cfg = {.workers = 4};
    cr_assert_eq(urt_runtime_create(&rt, &cfg), 0);
    /* control: without the flag the idle workers take some */
    atomic_store(&local_ran, 0);
    atomic_store(&local_away, 0);
    void *r = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, local_spawner, (void *)0, &r), 0);
    cr_assert_null(r);
    cr_log_info("without URT_TASK_LOCAL: %d of %d runs away from the spawner's worker", atomic_load(&local_away),
                2 * NLOCAL);
    atomic_store(&local_ran, 0);
    atomic_store(&local_away, 0);
    cr_assert_eq(urt_runtime_block_on(rt, local_spawner, (void *)(uintptr_t)URT_TASK_LOCAL, &r), 0);
    cr_assert_null(r);
    cr_assert_eq(atomic_load(&local_ran), NLOCAL);
    cr_assert_eq(atomic_load(&local_away), 0, "%d runs of local tasks were on another worker",
                 atomic_load(&local_away));
    urt_worker_stats st[4];
    cr_assert_eq(urt_runtime_stats(rt, st, 4), 4);
    uint64_t attempts = 0;
    for (int i = 0; i < 4; i++)
        attempts += st[i].steal_attempts;
    cr_log_info("steal attempts meanwhile: %llu", (unsigned long long)attempts);
    urt_runtime_destroy(rt);
}

Test(spread, local_flag_cannot_be_combined_with_spread_or_migratable, .timeout = 30)
{
    urt_runtime *rt;
    cr_assert_eq(urt_runtime_create(&rt, NULL), 0);
    urt_spawn_opts o = {.flags = URT_TASK_LOCAL | URT_TASK_SPREAD};
    urt_task *t = (urt_task *)1;
    cr_assert_eq(urt_spawn_ex(rt, &t, record, NULL, &o), -EINVAL);
    cr_assert_null(t);
    o.flags = URT_TASK_LOCAL | URT_TASK_MIGRATABLE;
    cr_assert_eq(urt_spawn_ex(rt, &t, record, NULL, &o), -EINVAL);
    /* outside a worker the flag changes nothing */
    o.flags = URT_TASK_LOCAL;
    cr_assert_eq(urt_spawn_ex(rt, &t, record, (void *)5, &o), 0);
    void *v = NULL;
    cr_assert_eq(urt_join(t, &v), 0);
    cr_assert_eq(v, (void *)5);
    urt_runtime_destroy(rt);
}
