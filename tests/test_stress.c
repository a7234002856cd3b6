/*
 * test_stress.c - many tasks, random sleeps, random cancellation: every
 * task runs at most once, and every join result is accounted for (ran to
 * the end, cancelled while sleeping, or cancelled before it ran).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include <urt.h>

#include "tests/support/urt_test.h"

/* TSan keeps a history per fiber it was told about: a million of them take
 * it beyond ten minutes and 5 GB here, so that build runs a tenth */
#if defined(URT_TSAN)
#define TASKS  100000u
#else
#define TASKS  1000000u
#endif
#define WINDOW 2000u      /* live at once: TSan follows at most ~8000 fibers */
#define MS     (1000ull * 1000)

typedef struct slot {
    atomic_uchar started, finished, cancelled_sleep;
    uint32_t sleep_us;
} slot;

typedef struct stress {
    slot *slots;
    unsigned ran, cancelled_running, cancelled_unrun, bad;
} stress;

static void *sleeper(void *arg)
{
    slot *s = arg;
    if (atomic_fetch_add(&s->started, 1) != 0)
        return (void *)2;   /* ran twice */
    int r = urt_sleep((uint64_t)s->sleep_us * 1000);
    if (r == -ECANCELED)
        atomic_store(&s->cancelled_sleep, 1);
    else if (r != 0)
        return (void *)3;
    atomic_store(&s->finished, 1);
    return (void *)1;
}

static uint64_t rnd(uint64_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static void *stress_root(void *arg)
{
    stress *st = arg;
    static urt_task *h[WINDOW];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    for (unsigned base = 0; base < TASKS; base += WINDOW) {
        unsigned n = TASKS - base < WINDOW ? TASKS - base : WINDOW;
        for (unsigned i = 0; i < n; i++) {
            slot *s = &st->slots[base + i];
            s->sleep_us = (uint32_t)(rnd(&seed) % 10001);   /* 0 .. 10 ms */
            if (urt_spawn(NULL, &h[i], sleeper, s) != 0)
                return (void *)1;
        }
        urt_sleep(rnd(&seed) % (2 * MS));
        for (unsigned i = 0; i < n; i++)
            if (rnd(&seed) % 3 == 0)
                urt_cancel(h[i]);
        for (unsigned i = 0; i < n; i++) {
            slot *s = &st->slots[base + i];
            void *r = NULL;
            int e = urt_join(h[i], &r);
            bool started = atomic_load(&s->started) != 0;
            if (e == 0 && r == (void *)1 && atomic_load(&s->finished) && !atomic_load(&s->cancelled_sleep))
                st->ran++;
            else if (e == -ECANCELED && started && r == (void *)1 && atomic_load(&s->finished))
                st->cancelled_running++;   /* cancelled during its sleep (or as it returned) */
            else if (e == -ECANCELED && !started && r == NULL)
                st->cancelled_unrun++;
            else
                st->bad++;
        }
    }
    return NULL;
}

Test(stress, a_million_sleeping_tasks_cancelled_at_random_are_each_accounted_for, .timeout = 1200)
{
    stress st = {.slots = calloc(TASKS, sizeof(slot))};
    cr_assert_not_null(st.slots);
    urt_runtime *rt = rt_new(4);
    void *r = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, stress_root, &st, &r), 0);
    cr_assert_null(r, "a spawn failed");
    urt_runtime_destroy(rt);
    cr_assert_eq(st.bad, 0, "%u join results fit no outcome", st.bad);
    cr_assert_eq(st.ran + st.cancelled_running + st.cancelled_unrun, TASKS);
    cr_assert_gt(st.ran, 0);
    cr_assert_gt(st.cancelled_running + st.cancelled_unrun, 0);
    free(st.slots);
}
