/*
 * test_op_timeout.c - urt_op_timeout bounds each following I/O op, join and
 * wait of the calling task: the call returns -ETIMEDOUT, the task is not
 * cancelled, and what it waited for stays usable.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

/* ---- recv ------------------------------------------------------------------------------- */

typedef struct timed_recv {
    int fds[2];
    uint64_t first_old, restored_old;
    ssize_t timed_res, later_res;
    uint64_t elapsed;
    bool cancelled;
    char got;
} timed_recv;

static void *recv_with_timeout(void *arg)
{
    timed_recv *tr = arg;
    char buf[8];
    tr->first_old = urt_op_timeout(10 * MS);
    uint64_t t0 = urt_now();
    tr->timed_res = urt_recv(tr->fds[0], buf, sizeof(buf), 0);
    tr->elapsed = urt_now() - t0;
    tr->restored_old = urt_op_timeout(tr->first_old);
    tr->cancelled = urt_cancelled();
    /* with the timeout restored, data that arrives later is received */
    if (send(tr->fds[1], "z", 1, 0) != 1)
        return (void *)1;
    tr->later_res = urt_recv(tr->fds[0], &tr->got, 1, 0);
    return NULL;
}

Test(op_timeout, op_timeout_makes_a_recv_return_etimedout, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        timed_recv tr;
        memset(&tr, 0, sizeof(tr));
        tr.timed_res = tr.later_res = 1;
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, tr.fds), 0);
        void *err = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, recv_with_timeout, &tr, &err), 0, "the task itself is not cancelled");
        cr_assert_null(err);
        cr_assert_eq(tr.first_old, 0, "a task starts with no op timeout");
        cr_assert_eq(tr.timed_res, -ETIMEDOUT, "%u workers: recv with a 10 ms timeout gave %zd", w, tr.timed_res);
        cr_assert_geq(tr.elapsed, 10 * MS, "the timeout fired early");
        cr_assert_eq(tr.restored_old, 10 * MS, "urt_op_timeout returns the previous value");
        cr_assert(!tr.cancelled, "a timeout is not a cancellation");
        cr_assert_eq(tr.later_res, 1);
        cr_assert_eq(tr.got, 'z');
        close(tr.fds[0]);
        close(tr.fds[1]);
        urt_runtime_destroy(rt);
    }
}

Test(op_timeout, op_timeout_outside_a_task_is_zero, .timeout = 10)
{
    urt_runtime *rt = rt_new(1);
    cr_assert_eq(urt_op_timeout(5 * MS), 0);
    cr_assert_eq(urt_op_timeout(0), 0);
    urt_runtime_destroy(rt);
}

/* ---- join and notify wait ------------------------------------------------------------------- */

static void *sleep_then_return(void *arg)
{
    urt_sleep(2000 * MS);
    return arg;
}

typedef struct timed_join {
    int timed_res, later_res;
    void *ret;
} timed_join;

static void *join_with_timeout(void *arg)
{
    timed_join *tj = arg;
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, sleep_then_return, (void *)(uintptr_t)0x3e) != 0)
        return (void *)1;
    uint64_t old = urt_op_timeout(10 * MS);
    tj->timed_res = urt_join(t, &tj->ret);   /* consumes t, whatever it returns */
    urt_op_timeout(old);
    return NULL;
}

/* A join that times out detaches the target (join always consumes its
 * handle): the target runs on, ends and is freed, and destroy finds no
 * handle left over. */
Test(op_timeout, op_timeout_makes_a_join_return_etimedout_and_detaches_the_target, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    timed_join tj = {.timed_res = 1};
    void *err = NULL;
    int r = urt_runtime_block_on(rt, join_with_timeout, &tj, &err);
    cr_assert_eq(r, 0);
    cr_assert_null(err);
    cr_assert_eq(tj.timed_res, -ETIMEDOUT, "a join with a 10 ms op timeout on a 2 s task gave %d", tj.timed_res);
    int saved = stderr_capture_begin();
    cr_assert_eq(urt_runtime_shutdown(rt, 5000 * MS), 0);   /* the detached target ends by itself */
    urt_runtime_destroy(rt);
    char *text = stderr_capture_end(saved);
    cr_assert(strstr(text, "never joined") == NULL, "the timed-out join left the handle behind: %s", text);
    free(text);
}

typedef struct timed_wait {
    urt_notify *n;
    int timed_res;
} timed_wait;

static void *signal_later(void *arg)
{
    timed_wait *tw = arg;
    urt_sleep(2000 * MS);
    urt_notify_signal(tw->n);
    return NULL;
}

static void *wait_with_timeout(void *arg)
{
    timed_wait *tw = arg;
    urt_task *s = NULL;
    if (urt_spawn(NULL, &s, signal_later, tw) != 0)
        return (void *)1;
    uint64_t old = urt_op_timeout(10 * MS);
    tw->timed_res = urt_notify_wait(tw->n);
    urt_op_timeout(old);
    urt_join(s, NULL);
    return NULL;
}

Test(op_timeout, op_timeout_makes_a_notify_wait_return_etimedout, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    timed_wait tw = {.timed_res = 1};
    cr_assert_eq(urt_notify_create(&tw.n), 0);
    void *err = NULL;
    int r = urt_runtime_block_on(rt, wait_with_timeout, &tw, &err);
    /* the timed-out waiter left the queue: the later signal stored a permit */
    int permit = urt_notify_try_wait(tw.n);
    urt_runtime_destroy(rt);
    urt_notify_destroy(tw.n);
    cr_assert_eq(r, 0);
    cr_assert_null(err);
    cr_assert_eq(tw.timed_res, -ETIMEDOUT, "a notify wait with a 10 ms op timeout gave %d", tw.timed_res);
    cr_assert_eq(permit, 0, "the signal after the timeout found a waiter still queued");
}
