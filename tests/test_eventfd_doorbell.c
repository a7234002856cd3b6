/* On kernels without ring-less MSG_RING (before 6.13) threads outside the
 * runtime wake parked workers through an eventfd each worker keeps a read
 * armed on. URT_NO_RINGLESS forces that path here. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <urt.h>

#define ROUNDS 2000

static void *echo_task(void *arg)
{
    urt_notify **n = arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (urt_notify_wait(n[0]) != 0)
            return (void *)1;
        urt_notify_signal(n[1]);
    }
    return NULL;
}

Test(eventfd_doorbell, plain_thread_wakes_parked_workers_through_the_eventfd, .timeout = 60)
{
    cr_assert_eq(setenv("URT_NO_RINGLESS", "1", 1), 0);
    static const unsigned counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        urt_runtime *rt;
        urt_config cfg = {0};
        cfg.workers = counts[k];
        cr_assert_eq(urt_runtime_create(&rt, &cfg), 0);
        urt_notify *n[2];
        cr_assert_eq(urt_notify_create(&n[0]), 0);
        cr_assert_eq(urt_notify_create(&n[1]), 0);
        urt_task *t;
        cr_assert_eq(urt_spawn(rt, &t, echo_task, n), 0);
        for (int i = 0; i < ROUNDS; i++) {   /* this thread has no ring */
            cr_assert_eq(urt_notify_signal(n[0]), 0);
            cr_assert_eq(urt_notify_wait(n[1]), 0);
        }
        void *r = (void *)1;
        cr_assert_eq(urt_join(t, &r), 0);
        cr_assert_null(r);
        unsigned long long received = 0;
        urt_worker_stats st[4];
        int nw = urt_runtime_stats(rt, st, 4);
        for (int i = 0; i < nw; i++)
            received += st[i].wakes_received;
        /* the worker parks between rounds: eventfd reads woke it */
        cr_assert_gt(received, 0);
        urt_runtime_destroy(rt);
        urt_notify_destroy(n[0]);
        urt_notify_destroy(n[1]);
    }
}
