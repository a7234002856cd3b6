/*
 * test_block_in_place.c - urt_block_in_place runs its function on another
 * thread, on the task's own stack, while the worker goes on running other
 * tasks; the value comes back; nested calls run inline; the task ends up on
 * its home worker again.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

/* ---- the worker keeps running other tasks ------------------------------------------ */

typedef struct blocker {
    int pipe[2];
    pthread_t worker_thread, fn_thread;
    int worker_before, worker_after, writer_worker;
    int bip_res;
    void *bip_ret;
    ssize_t writer_res;
    atomic_int in_fn;
} blocker;

/* Blocks its thread (no urt call) until the pipe has a byte: gives up after 20 s. */
static void *wait_for_pipe(void *arg)
{
    blocker *b = arg;
    b->fn_thread = pthread_self();
    atomic_store(&b->in_fn, 1);
    struct pollfd p = {.fd = b->pipe[0], .events = POLLIN};
    if (poll(&p, 1, 20000) != 1)
        return (void *)(uintptr_t)0xbad;
    char c;
    if (read(b->pipe[0], &c, 1) != 1 || c != 'x')
        return (void *)(uintptr_t)0xbad;
    return (void *)(uintptr_t)0x600d;
}

static void *blocking_task(void *arg)
{
    blocker *b = arg;
    b->worker_thread = pthread_self();
    b->worker_before = urt_worker_id();
    b->bip_res = urt_block_in_place(wait_for_pipe, b, &b->bip_ret);
    b->worker_after = urt_worker_id();
    return NULL;
}

static void *pipe_writer(void *arg)
{
    blocker *b = arg;
    b->writer_worker = urt_worker_id();
    b->writer_res = write(b->pipe[1], "x", 1);
    return NULL;
}

static void *blocker_and_writer(void *arg)
{
    blocker *b = arg;
    urt_task *a = NULL, *w = NULL;
    if (urt_spawn(NULL, &a, blocking_task, b) != 0)
        return (void *)1;
    /* wait (suspending, never blocking) until the blocker is inside its function */
    while (!atomic_load(&b->in_fn))
        urt_sleep(1000 * 1000);
    if (urt_spawn(NULL, &w, pipe_writer, b) != 0)
        return (void *)1;
    urt_join(w, NULL);
    urt_join(a, NULL);
    return NULL;
}

Test(block_in_place, blocking_function_does_not_stop_other_tasks_on_a_single_worker, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    blocker b;
    memset(&b, 0, sizeof(b));
    b.worker_before = b.worker_after = b.writer_worker = -2;
    b.bip_res = 1;
    cr_assert_eq(pipe2(b.pipe, O_CLOEXEC), 0);
    void *err = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, blocker_and_writer, &b, &err), 0);
    cr_assert_null(err, "spawn failed");
    cr_assert_eq(b.writer_res, 1);
    cr_assert_eq(b.writer_worker, 0, "the writer ran on worker %d", b.writer_worker);
    cr_assert_eq(b.bip_res, 0);
    cr_assert_eq((uintptr_t)b.bip_ret, 0x600d, "the blocking function never saw the byte the other task wrote");
    cr_assert(!pthread_equal(b.fn_thread, b.worker_thread), "the function ran on the worker thread itself");
    cr_assert_eq(b.worker_before, 0);
    cr_assert_eq(b.worker_after, 0);
    close(b.pipe[0]);
    close(b.pipe[1]);
    urt_runtime_destroy(rt);
}

/* ---- return value, stack, nesting ------------------------------------------------------ */

typedef struct nest {
    uintptr_t task_local_addr;
    uintptr_t outer_local_addr, inner_local_addr;
    pthread_t outer_thread, inner_thread;
    int inner_res;
    void *inner_ret;
} nest;

static void *inner_fn(void *arg)
{
    nest *n = arg;
    volatile int here = 0;
    n->inner_local_addr = (uintptr_t)&here;
    n->inner_thread = pthread_self();
    return (void *)(uintptr_t)0x1234;
}

static void *outer_fn(void *arg)
{
    nest *n = arg;
    volatile int here = 0;
    n->outer_local_addr = (uintptr_t)&here;
    n->outer_thread = pthread_self();
    n->inner_res = urt_block_in_place(inner_fn, n, &n->inner_ret);
    return (void *)(uintptr_t)0xabcd;
}

static void *plain_value(void *arg)
{
    (void)arg;
    return (void *)(uintptr_t)0x99;
}

static void *nesting_task(void *arg)
{
    nest *n = arg;
    volatile int here = 0;
    n->task_local_addr = (uintptr_t)&here;
    void *ret = NULL;
    int r = urt_block_in_place(outer_fn, n, &ret);
    if (r != 0)
        return (void *)(uintptr_t)1;
    /* a NULL ret pointer is allowed */
    if (urt_block_in_place(plain_value, NULL, NULL) != 0)
        return (void *)(uintptr_t)2;
    return ret;
}

static uintptr_t distance(uintptr_t a, uintptr_t b) { return a > b ? a - b : b - a; }

Test(block_in_place, value_comes_back_and_nested_calls_run_inline_on_the_task_stack, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        nest n;
        memset(&n, 0, sizeof(n));
        n.inner_res = 1;
        void *ret = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, nesting_task, &n, &ret), 0);
        cr_assert_eq((uintptr_t)ret, 0xabcd, "%u workers: block_in_place handed back %p", w, ret);
        cr_assert_eq(n.inner_res, 0);
        cr_assert_eq((uintptr_t)n.inner_ret, 0x1234);
        cr_assert(pthread_equal(n.outer_thread, n.inner_thread), "the nested call moved to another thread");
        /* all three frames are on the one task stack (default 256 KiB) */
        cr_assert_lt(distance(n.task_local_addr, n.outer_local_addr), 256 * 1024,
                     "block_in_place's function ran on another stack");
        cr_assert_lt(distance(n.outer_local_addr, n.inner_local_addr), 256 * 1024,
                     "the nested function ran on another stack");
        urt_runtime_destroy(rt);
    }
}

Test(block_in_place, outside_a_task_the_function_runs_inline, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    nest n;
    memset(&n, 0, sizeof(n));
    void *ret = NULL;
    cr_assert_eq(urt_block_in_place(inner_fn, &n, &ret), 0);
    cr_assert_eq((uintptr_t)ret, 0x1234);
    cr_assert(pthread_equal(n.inner_thread, pthread_self()));
    urt_runtime_destroy(rt);
}

/* ---- back on the home worker ----------------------------------------------------------- */

#define HOMING_TASKS 64

typedef struct homing {
    atomic_uint moved, failed, ran;
} homing;

static void *short_block(void *arg)
{
    (void)arg;
    usleep(1000);
    return NULL;
}

static void *block_and_compare(void *arg)
{
    homing *h = arg;
    for (int i = 0; i < 3; i++) {
        int before = urt_worker_id();
        uint64_t id = urt_self_id();
        if (urt_block_in_place(short_block, NULL, NULL) != 0)
            atomic_fetch_add(&h->failed, 1);
        if (urt_worker_id() != before || urt_self_id() != id)
            atomic_fetch_add(&h->moved, 1);
        urt_yield();
    }
    atomic_fetch_add(&h->ran, 1);
    return NULL;
}

Test(block_in_place, task_resumes_on_its_home_worker, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        homing h = {0};
        urt_task *ts[HOMING_TASKS];
        for (int i = 0; i < HOMING_TASKS; i++)
            cr_assert_eq(urt_spawn(rt, &ts[i], block_and_compare, &h), 0);
        for (int i = 0; i < HOMING_TASKS; i++)
            cr_assert_eq(urt_join(ts[i], NULL), 0);
        cr_assert_eq(atomic_load(&h.ran), HOMING_TASKS);
        cr_assert_eq(atomic_load(&h.failed), 0);
        cr_assert_eq(atomic_load(&h.moved), 0, "%u workers: %u block_in_place calls came back on another worker",
                     w, atomic_load(&h.moved));
        urt_runtime_destroy(rt);
    }
}

/* ---- urt calls inside are plain syscalls ------------------------------------------------- */

typedef struct plain {
    int pipe[2];
    ssize_t wres, rres;
    int sres;
    char buf[4];
} plain;

static void *plain_io(void *arg)
{
    plain *p = arg;
    p->sres = urt_sleep(1000 * 1000);
    p->wres = urt_write(p->pipe[1], "abc", 3, -1);
    p->rres = urt_read(p->pipe[0], p->buf, 3, -1);
    return NULL;
}

static void *plain_io_task(void *arg)
{
    return (void *)(intptr_t)urt_block_in_place(plain_io, arg, NULL);
}

Test(block_in_place, urt_io_inside_runs_as_plain_syscalls, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    plain p;
    memset(&p, 0, sizeof(p));
    p.sres = 1;
    cr_assert_eq(pipe2(p.pipe, O_CLOEXEC), 0);
    void *r = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, plain_io_task, &p, &r), 0);
    cr_assert_eq((intptr_t)r, 0);
    cr_assert_eq(p.sres, 0);
    cr_assert_eq(p.wres, 3);
    cr_assert_eq(p.rres, 3);
    cr_assert_eq(memcmp(p.buf, "abc", 3), 0);
    close(p.pipe[0]);
    close(p.pipe[1]);
    urt_runtime_destroy(rt);
}

/* ---- two block_in_place calls overlap ----------------------------------------------------- */

typedef struct meeting {
    atomic_int arrived, met;
} meeting;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *meet_in_place(void *arg)
{
    meeting *m = arg;
    atomic_fetch_add(&m->arrived, 1);
    uint64_t give_up = now_ns() + 2000000000ull;
    while (atomic_load(&m->arrived) < 2 && now_ns() < give_up)
        usleep(200);
    if (atomic_load(&m->arrived) >= 2)
        atomic_fetch_add(&m->met, 1);
    return NULL;
}

static void *bip_meet(void *arg)
{
    urt_block_in_place(meet_in_place, arg, NULL);
    return NULL;
}

static void *bip_nothing(void *arg)
{
    urt_block_in_place(plain_value, arg, NULL);
    return NULL;
}

/* block_in_place is never limited: two calls made while one pool thread is
 * idle both get a thread at once (with one thread counted twice, the second
 * waits for the first, and a rendezvous between them never happens). */
Test(block_in_place, two_calls_made_while_one_thread_is_idle_run_at_the_same_time, .timeout = 60)
{
    urt_runtime *rt = rt_new(2);
    for (int round = 0; round < 10; round++) {
        urt_task *w = NULL;
        cr_assert_eq(urt_spawn(rt, &w, bip_nothing, NULL), 0);
        cr_assert_eq(urt_join(w, NULL), 0);
        usleep(20 * 1000);   /* its thread is idle again */
        meeting m = {0};
        urt_task *a = NULL, *b = NULL;
        cr_assert_eq(urt_spawn(rt, &a, bip_meet, &m), 0);
        cr_assert_eq(urt_spawn(rt, &b, bip_meet, &m), 0);
        cr_assert_eq(urt_join(a, NULL), 0);
        cr_assert_eq(urt_join(b, NULL), 0);
        cr_assert_eq(atomic_load(&m.met), 2, "round %d: the two calls ran one after the other", round);
    }
    urt_runtime_destroy(rt);
}
