/*
 * test_idle.c - the idle set: who is parked, how many search, whom to wake.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "queues/queues.h"

static const unsigned worker_counts[] = { 1, 2, 3, 4, 8 };
#define NCOUNTS (sizeof worker_counts / sizeof worker_counts[0])

static void init_ok(idle *s, unsigned n)
{
    cr_assert_eq(idle_init(s, n), 0, "idle_init(%u)", n);
}

Test(idle, init_counts_every_worker_unparked_and_none_searching, .timeout = 5)
{
    for (unsigned c = 0; c < NCOUNTS; c++) {
        idle s;
        init_ok(&s, worker_counts[c]);
        cr_assert_eq(idle_num_unparked(&s), worker_counts[c]);
        cr_assert_eq(idle_num_searching(&s), 0);
        for (unsigned id = 0; id < worker_counts[c]; id++)
            cr_assert(!idle_is_parked(&s, id));
        idle_destroy(&s);
    }
}

Test(idle, init_rejects_zero_workers_and_more_than_the_state_word_holds, .timeout = 5)
{
    idle s;
    cr_assert_eq(idle_init(&s, 0), -EINVAL);
    cr_assert_eq(idle_init(&s, 1u << 16), -EINVAL);
    cr_assert_eq(idle_init(&s, (1u << 16) - 1), 0);
    cr_assert_eq(idle_num_unparked(&s), (1u << 16) - 1);
    idle_destroy(&s);
}

Test(idle, notify_finds_nobody_when_no_worker_sleeps, .timeout = 5)
{
    for (unsigned c = 0; c < NCOUNTS; c++) {
        idle s;
        init_ok(&s, worker_counts[c]);
        cr_assert_eq(idle_worker_to_notify(&s), -1);
        cr_assert_eq(idle_num_searching(&s), 0);
        idle_destroy(&s);
    }
}

Test(idle, notify_picks_a_sleeper_and_counts_it_unparked_and_searching, .timeout = 5)
{
    idle s;
    init_ok(&s, 4);
    cr_assert(!idle_transition_to_parked(&s, 2, false));
    cr_assert(idle_is_parked(&s, 2));
    cr_assert_eq(idle_num_unparked(&s), 3);

    cr_assert_eq(idle_worker_to_notify(&s), 2);
    cr_assert(!idle_is_parked(&s, 2));
    cr_assert_eq(idle_num_unparked(&s), 4);
    cr_assert_eq(idle_num_searching(&s), 1);
    idle_destroy(&s);
}

Test(idle, notify_wakes_nobody_while_a_worker_searches, .timeout = 5)
{
    idle s;
    init_ok(&s, 4);
    cr_assert(!idle_transition_to_parked(&s, 0, false));
    cr_assert(!idle_transition_to_parked(&s, 1, false));
    cr_assert(idle_transition_to_searching(&s));

    /* The searcher will find the work; no sleeper is disturbed. */
    cr_assert_eq(idle_worker_to_notify(&s), -1);
    cr_assert(idle_is_parked(&s, 0));
    cr_assert(idle_is_parked(&s, 1));

    /* Once it stops searching, the next notify wakes one. */
    cr_assert(idle_transition_from_searching(&s));
    int id = idle_worker_to_notify(&s);
    cr_assert(id == 0 || id == 1);
    /* That worker now counts as searching, so a second notify waits. */
    cr_assert_eq(idle_worker_to_notify(&s), -1);
    cr_assert(idle_is_parked(&s, 1 - (unsigned)id));
    idle_destroy(&s);
}

Test(idle, successive_notifies_wake_each_sleeper_once, .timeout = 5)
{
    idle s;
    init_ok(&s, 8);
    for (unsigned id = 0; id < 8; id++)
        idle_transition_to_parked(&s, id, false);
    cr_assert_eq(idle_num_unparked(&s), 0);

    bool woken[8] = { false };
    for (unsigned k = 0; k < 8; k++) {
        int id = idle_worker_to_notify(&s);
        cr_assert(id >= 0 && id < 8);
        cr_assert(!woken[id], "worker %d woken twice", id);
        woken[id] = true;
        /* The woken worker finds work and stops searching. */
        cr_assert(idle_transition_from_searching(&s));
    }
    cr_assert_eq(idle_worker_to_notify(&s), -1);
    cr_assert_eq(idle_num_unparked(&s), 8);
    cr_assert_eq(idle_num_searching(&s), 0);
    idle_destroy(&s);
}

Test(idle, at_most_half_the_workers_search, .timeout = 5)
{
    for (unsigned c = 0; c < NCOUNTS; c++) {
        unsigned n = worker_counts[c];
        idle s;
        init_ok(&s, n);
        unsigned allowed = 0;
        while (idle_transition_to_searching(&s))
            allowed++;
        /* Admitted while 2 * searching < workers: half, rounded up, so a
         * single worker may still search. */
        cr_assert_eq(allowed, (n + 1) / 2, "%u workers", n);
        cr_assert_eq(idle_num_searching(&s), allowed);

        /* One stops, one more may start. */
        idle_transition_from_searching(&s);
        cr_assert(idle_transition_to_searching(&s));
        cr_assert(!idle_transition_to_searching(&s));
        idle_destroy(&s);
    }
}

Test(idle, transition_from_searching_reports_the_last_searcher, .timeout = 5)
{
    idle s;
    init_ok(&s, 8);
    for (int i = 0; i < 3; i++)
        cr_assert(idle_transition_to_searching(&s));
    cr_assert(!idle_transition_from_searching(&s));
    cr_assert(!idle_transition_from_searching(&s));
    cr_assert(idle_transition_from_searching(&s));
    cr_assert_eq(idle_num_searching(&s), 0);
    idle_destroy(&s);
}

Test(idle, transition_to_parked_reports_the_last_searcher, .timeout = 5)
{
    idle s;
    init_ok(&s, 8);

    /* A worker that was not searching is never the last searcher. */
    cr_assert(!idle_transition_to_parked(&s, 0, false));

    /* Two searchers park: only the second is the last. */
    cr_assert(idle_transition_to_searching(&s));
    cr_assert(idle_transition_to_searching(&s));
    cr_assert(!idle_transition_to_parked(&s, 1, true));
    cr_assert_eq(idle_num_searching(&s), 1);
    cr_assert(idle_transition_to_parked(&s, 2, true));
    cr_assert_eq(idle_num_searching(&s), 0);

    /* With no searcher left, a non-searcher parking is still not "last". */
    cr_assert(!idle_transition_to_parked(&s, 3, false));
    cr_assert_eq(idle_num_unparked(&s), 4);
    for (unsigned id = 0; id < 4; id++)
        cr_assert(idle_is_parked(&s, id));
    idle_destroy(&s);
}

Test(idle, unpark_by_id_takes_a_sleeper_off_the_list, .timeout = 5)
{
    idle s;
    init_ok(&s, 4);
    for (unsigned id = 0; id < 3; id++)
        idle_transition_to_parked(&s, id, false);
    cr_assert_eq(idle_num_unparked(&s), 1);

    /* From the middle of the list: the others stay parked. */
    cr_assert(idle_unpark_worker_by_id(&s, 1));
    cr_assert(!idle_is_parked(&s, 1));
    cr_assert(idle_is_parked(&s, 0));
    cr_assert(idle_is_parked(&s, 2));
    cr_assert_eq(idle_num_unparked(&s), 2);
    /* It woke by itself: it is not counted as searching. */
    cr_assert_eq(idle_num_searching(&s), 0);

    /* The remaining sleepers are still handed out by notify. */
    int a = idle_worker_to_notify(&s);
    idle_transition_from_searching(&s);
    int b = idle_worker_to_notify(&s);
    cr_assert((a == 0 && b == 2) || (a == 2 && b == 0));
    cr_assert_eq(idle_num_unparked(&s), 4);
    idle_destroy(&s);
}

Test(idle, unpark_by_id_is_false_after_a_notifier_took_the_worker, .timeout = 5)
{
    idle s;
    init_ok(&s, 4);
    idle_transition_to_parked(&s, 3, false);
    cr_assert_eq(idle_worker_to_notify(&s), 3);

    /* The worker wakes and finds it was chosen: it is already counted as
     * unparked and searching, and nothing changes. */
    cr_assert(!idle_unpark_worker_by_id(&s, 3));
    cr_assert_eq(idle_num_unparked(&s), 4);
    cr_assert_eq(idle_num_searching(&s), 1);
    idle_destroy(&s);
}

Test(idle, unpark_by_id_is_false_for_a_worker_that_never_parked, .timeout = 5)
{
    idle s;
    init_ok(&s, 4);
    cr_assert(!idle_unpark_worker_by_id(&s, 0));
    cr_assert_eq(idle_num_unparked(&s), 4);

    idle_transition_to_parked(&s, 1, false);
    cr_assert(idle_unpark_worker_by_id(&s, 1));
    cr_assert(!idle_unpark_worker_by_id(&s, 1));
    cr_assert_eq(idle_num_unparked(&s), 4);
    idle_destroy(&s);
}

/* ---- concurrent use: counts stay consistent ------------------------------ */

enum { IDLE_THREADS = 4, IDLE_ROUNDS = 20000 };

typedef struct idle_arg {
    idle *s;
    unsigned id;
} idle_arg;

/* One worker's life, much simplified: search a little, park, wake by itself
 * or be woken, and notify others now and then. */
static void *idle_worker(void *p)
{
    idle_arg *a = p;
    bool searching = false;
    for (unsigned r = 0; r < IDLE_ROUNDS; r++) {
        if (!searching && r % 3 == 0)
            searching = idle_transition_to_searching(a->s);
        if (searching && r % 5 == 0) {
            idle_transition_from_searching(a->s);
            searching = false;
        }
        idle_transition_to_parked(a->s, a->id, searching);
        searching = false;
        if (r % 7 == 0)
            sched_yield();
        /* Either this worker takes itself off the list, or a notifier
         * already did and counted it as searching. */
        if (!idle_unpark_worker_by_id(a->s, a->id))
            searching = true;
        if (r % 2 == 0)
            (void)idle_worker_to_notify(a->s);
    }
    if (searching)
        idle_transition_from_searching(a->s);
    return NULL;
}

Test(idle, counts_stay_consistent_under_concurrent_park_notify_and_unpark, .timeout = 60)
{
    idle s;
    init_ok(&s, IDLE_THREADS);
    pthread_t th[IDLE_THREADS];
    idle_arg args[IDLE_THREADS];
    for (unsigned i = 0; i < IDLE_THREADS; i++) {
        args[i] = (idle_arg){ &s, i };
        cr_assert_eq(pthread_create(&th[i], NULL, idle_worker, &args[i]), 0);
    }
    for (unsigned i = 0; i < IDLE_THREADS; i++)
        pthread_join(th[i], NULL);

    cr_assert_eq(idle_num_unparked(&s), IDLE_THREADS);
    cr_assert_eq(idle_num_searching(&s), 0);
    for (unsigned i = 0; i < IDLE_THREADS; i++)
        cr_assert(!idle_is_parked(&s, i));
    idle_destroy(&s);
}
