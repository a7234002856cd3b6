/* A worker stuck in one task is noticed, counted, and its queued tasks move on. */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <urt.h>

static atomic_int ran_elsewhere;
static atomic_int stuck_done;

static void *queued(void *arg)
{
    int stuck_worker = (int)(long)arg;
    if (urt_worker_id() != stuck_worker)
        atomic_fetch_add(&ran_elsewhere, 1);
    return NULL;
}

/* Spawns work onto its own worker, then blocks that worker without yielding. */
static void *stuck(void *arg)
{
    urt_task **ts = arg;
    int me = urt_worker_id();
    for (int i = 0; i < 64; i++)
        cr_assert_eq(urt_spawn(NULL, &ts[i], queued, (void *)(long)me), 0);
    uint64_t until = urt_now() + 600ull * 1000 * 1000;
    while (urt_now() < until)
        ;   /* a blocking call that should have been urt_block_in_place */
    atomic_store(&stuck_done, 1);
    return NULL;
}

Test(watchdog, stuck_worker_is_counted_and_its_queued_tasks_run_elsewhere, .timeout = 60)
{
    urt_runtime *rt;
    urt_config cfg = {0};
    cfg.workers = 2;
    cfg.watchdog_ns = 100ull * 1000 * 1000;
    cr_assert_eq(urt_runtime_create(&rt, &cfg), 0);
    urt_task *ts[64];
    urt_task *s;
    cr_assert_eq(urt_spawn(rt, &s, stuck, ts), 0);
    cr_assert_eq(urt_join(s, NULL), 0);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(urt_join(ts[i], NULL), 0);
    cr_assert_eq(atomic_load(&stuck_done), 1);
    urt_worker_stats st[2];
    cr_assert_eq(urt_runtime_stats(rt, st, 2), 2);
    cr_log_info("watchdog_stalls: w0=%llu w1=%llu, tasks run on the other worker: %d",
                (unsigned long long)st[0].watchdog_stalls, (unsigned long long)st[1].watchdog_stalls,
                atomic_load(&ran_elsewhere));
    cr_assert_geq(st[0].watchdog_stalls + st[1].watchdog_stalls, 1);
    /* the LIFO slot holds one task that only its own worker can run; the rest moved */
    cr_assert_geq(atomic_load(&ran_elsewhere), 32);
    urt_runtime_destroy(rt);
}

Test(watchdog, can_be_turned_off, .timeout = 60)
{
    urt_runtime *rt;
    urt_config cfg = {0};
    cfg.workers = 1;
    cfg.watchdog_ns = UINT64_MAX;
    cr_assert_eq(urt_runtime_create(&rt, &cfg), 0);
    urt_task *ts[64];
    urt_task *s;
    cr_assert_eq(urt_spawn(rt, &s, stuck, ts), 0);
    cr_assert_eq(urt_join(s, NULL), 0);
    for (int i = 0; i < 64; i++)
        cr_assert_eq(urt_join(ts[i], NULL), 0);
    urt_worker_stats st;
    urt_runtime_stats(rt, &st, 1);
    cr_assert_eq(st.watchdog_stalls, 0);
    urt_runtime_destroy(rt);
}
