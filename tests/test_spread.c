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
