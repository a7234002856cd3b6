/*
 * test_yield.c - urt_yield lets the other runnable tasks of the worker run
 * before the caller runs again.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include <urt.h>

#include "tests/support/urt_test.h"

/* ---- two yielding tasks on one worker alternate ------------------------------- */

#define ROUNDS 50

typedef struct trace {
    char log[2 * ROUNDS + 1];
    atomic_uint len;
    int worker[2];
} trace;

typedef struct yielder {
    trace *tr;
    char letter;
    int slot;
} yielder;

static void *yield_and_log(void *arg)
{
    yielder *y = arg;
    y->tr->worker[y->slot] = urt_worker_id();
    for (int i = 0; i < ROUNDS; i++) {
        unsigned at = atomic_fetch_add(&y->tr->len, 1);
        if (at < 2 * ROUNDS)
            y->tr->log[at] = y->letter;
        urt_yield();
    }
    return NULL;
}

static void *start_two_yielders(void *arg)
{
    yielder *ys = arg;
    urt_task *a = NULL, *b = NULL;
    if (urt_spawn(NULL, &a, yield_and_log, &ys[0]) != 0 || urt_spawn(NULL, &b, yield_and_log, &ys[1]) != 0)
        return (void *)1;
    urt_join(a, NULL);
    urt_join(b, NULL);
    return NULL;
}

Test(yield, two_yielding_tasks_on_one_worker_interleave, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    trace tr;
    memset(&tr, 0, sizeof(tr));
    yielder ys[2] = {{&tr, 'A', 0}, {&tr, 'B', 1}};
    void *err = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, start_two_yielders, ys, &err), 0);
    cr_assert_null(err, "spawn failed");
    cr_assert_eq(atomic_load(&tr.len), 2 * ROUNDS);
    cr_assert_eq(tr.worker[0], 0);
    cr_assert_eq(tr.worker[1], 0);
    unsigned na = 0, nb = 0;
    for (unsigned i = 0; i < 2 * ROUNDS; i++) {
        na += tr.log[i] == 'A';
        nb += tr.log[i] == 'B';
    }
    cr_assert_eq(na, ROUNDS);
    cr_assert_eq(nb, ROUNDS);
    for (unsigned i = 1; i < 2 * ROUNDS; i++)
        cr_assert_neq(tr.log[i], tr.log[i - 1], "no alternation at step %u: %.*s", i, 2 * ROUNDS, tr.log);
    urt_runtime_destroy(rt);
}

/* ---- a yielding spinner does not starve the task it waits for -------------------- */

typedef struct spin {
    atomic_int flag;
    unsigned long yields;
} spin;

static void *spin_until_flag(void *arg)
{
    spin *s = arg;
    while (!atomic_load(&s->flag)) {
        urt_yield();
        s->yields++;
    }
    return NULL;
}

static void *set_flag(void *arg)
{
    spin *s = arg;
    atomic_store(&s->flag, 1);
    return NULL;
}

static void *spinner_then_setter(void *arg)
{
    urt_task *a = NULL, *b = NULL;
    /* the spinner first: it runs before the setter on the same worker */
    if (urt_spawn(NULL, &a, spin_until_flag, arg) != 0)
        return (void *)1;
    urt_yield();
    if (urt_spawn(NULL, &b, set_flag, arg) != 0)
        return (void *)1;
    urt_join(a, NULL);
    urt_join(b, NULL);
    return NULL;
}

Test(yield, yielding_spinner_lets_the_task_it_waits_for_run, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        spin s = {0};
        void *err = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, spinner_then_setter, &s, &err), 0);
        cr_assert_null(err, "spawn failed");
        cr_assert_eq(atomic_load(&s.flag), 1);
        urt_runtime_destroy(rt);
    }
}

/* ---- a yielder is not starved by work that never runs out ------------------------ */

#define STARVE_YIELDS 200

typedef struct flood {
    atomic_int done;
    atomic_ulong links;    /* chain tasks run */
    unsigned long yields;
} flood;

/* Each link spawns the next before it ends: one worker always has a fresh
 * task ready, until the yielder is done. */
static void *chain_link(void *arg)
{
    flood *f = arg;
    atomic_fetch_add(&f->links, 1);
    if (!atomic_load(&f->done) && urt_spawn(NULL, NULL, chain_link, f) != 0)
        atomic_store(&f->done, -1);
    return NULL;
}

static void *yield_count(void *arg)
{
    flood *f = arg;
    while (f->yields < STARVE_YIELDS) {
        urt_yield();
        f->yields++;
    }
    atomic_store(&f->done, 1);
    return NULL;
}

static void *yielder_beside_a_chain(void *arg)
{
    flood *f = arg;
    urt_task *y = NULL;
    if (urt_spawn(NULL, &y, yield_count, f) != 0 || urt_spawn(NULL, NULL, chain_link, f) != 0)
        return (void *)1;
    urt_join(y, NULL);
    return NULL;
}

Test(yield, yielder_runs_on_while_fresh_tasks_never_run_out, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    flood f = {0};
    void *err = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, yielder_beside_a_chain, &f, &err), 0);
    cr_assert_null(err, "spawn failed");
    cr_assert_eq(f.yields, STARVE_YIELDS);
    cr_assert_eq(atomic_load(&f.done), 1, "a link failed to spawn");
    /* the chain ran between the yields (one link at least per yield) */
    cr_assert_geq(atomic_load(&f.links), STARVE_YIELDS, "links %lu", atomic_load(&f.links));
    urt_runtime_destroy(rt);
}

/* ---- outside a task urt_yield is harmless ----------------------------------------- */

Test(yield, yield_outside_a_task_returns, .timeout = 10)
{
    urt_runtime *rt = rt_new(1);
    for (int i = 0; i < 10; i++)
        urt_yield();
    cr_assert_eq(urt_self_id(), 0);
    urt_runtime_destroy(rt);
}
