/*
 * test_bad_input.c - bad arguments give -EINVAL, calls made where they
 * cannot work give -EPERM or -EDEADLK, closed descriptors give -EBADF, and
 * a stack that cannot be mapped fails the task cleanly; nothing crashes and
 * the runtime keeps working afterwards.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

static void *identity(void *arg) { return arg; }

/* ---- urt_runtime_create ------------------------------------------------------------ */

static void expect_create_einval(const urt_config *cfg, const char *what)
{
    urt_runtime *rt = (urt_runtime *)1;
    int r = urt_runtime_create(&rt, cfg);
    cr_assert_eq(r, -EINVAL, "%s: urt_runtime_create gave %d", what, r);
    cr_assert_null(rt, "%s: *out was set on failure", what);
}

Test(bad_input, runtime_create_rejects_bad_arguments_with_einval, .timeout = 30)
{
    cr_assert_eq(urt_runtime_create(NULL, NULL), -EINVAL);
    urt_config ok = {.workers = 1};
    cr_assert_eq(urt_runtime_create(NULL, &ok), -EINVAL);

    expect_create_einval(&(urt_config){.workers = 100000}, "workers = 100000");
    expect_create_einval(&(urt_config){.workers = 1, .stack_size = 1}, "stack_size = 1");
    expect_create_einval(&(urt_config){.workers = 1, .stack_size = 4096}, "stack_size = 4096");
    expect_create_einval(&(urt_config){.workers = 1, .ring_entries = 1u << 30}, "ring_entries = 2^30");
    expect_create_einval(&(urt_config){.workers = 1, .max_blocking_threads = 1u << 30}, "max_blocking_threads = 2^30");
    expect_create_einval(&(urt_config){.workers = 1, .global_queue_interval = 1u << 30},
                         "global_queue_interval = 2^30");
    expect_create_einval(&(urt_config){.workers = 1, .flags = 0x80000000u}, "unknown flag");

    /* and a good one still works */
    urt_runtime *rt = rt_new(1);
    void *r = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)5, &r), 0);
    cr_assert_eq((uintptr_t)r, 5);
    urt_runtime_destroy(rt);
}

/* ---- NULL handles and functions ----------------------------------------------------- */

static void *null_args_in_task(void *arg)
{
    (void)arg;
    unsigned bad = 0;
    urt_task *t = (urt_task *)1;
    bad += urt_spawn(NULL, &t, NULL, NULL) != -EINVAL;
    bad += t != NULL;
    bad += urt_block_in_place(NULL, NULL, NULL) != -EINVAL;
    bad += urt_join(NULL, NULL) != -EINVAL;
    bad += urt_cancel(NULL) != -EINVAL;
    bad += urt_notify_wait(NULL) != -EINVAL;
    char buf[4];
    bad += urt_recv(0, NULL, 10, 0) != -EINVAL;
    bad += urt_send(0, NULL, 10, 0) != -EINVAL;
    bad += urt_read(0, NULL, 10, 0) != -EINVAL;
    bad += urt_write(0, NULL, 10, 0) != -EINVAL;
    bad += urt_read(0, buf, sizeof(buf), -2) != -EINVAL;
    bad += urt_write(1, buf, sizeof(buf), -5) != -EINVAL;
    bad += urt_connect(0, NULL, 0) != -EINVAL;
    bad += urt_accept(0, NULL, NULL, 0x40000000) != -EINVAL;
    struct sockaddr_in sa;
    bad += urt_accept(0, (struct sockaddr *)&sa, NULL, 0) != -EINVAL;
    return (void *)(uintptr_t)bad;
}

Test(bad_input, null_and_out_of_range_arguments_give_einval, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    urt_task *t = (urt_task *)1;

    cr_assert_eq(urt_spawn(rt, &t, NULL, NULL), -EINVAL);
    cr_assert_null(t, "*t must be NULL after a failed spawn");
    cr_assert_eq(urt_spawn(rt, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_spawn(NULL, &t, identity, NULL), -EINVAL, "rt NULL outside a task has no current runtime");
    cr_assert_eq(urt_spawn_blocking(rt, &t, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_spawn_blocking(NULL, &t, identity, NULL), -EINVAL);
    urt_spawn_opts small = {.stack_size = 1024};
    cr_assert_eq(urt_spawn_ex(rt, &t, identity, NULL, &small), -EINVAL);
    urt_spawn_opts flags = {.flags = 0x80};
    cr_assert_eq(urt_spawn_ex(rt, &t, identity, NULL, &flags), -EINVAL);
    cr_assert_eq(urt_spawn_ex(rt, &t, NULL, NULL, NULL), -EINVAL);

    cr_assert_eq(urt_join(NULL, NULL), -EINVAL);
    cr_assert_eq(urt_cancel(NULL), -EINVAL);
    urt_detach(NULL);
    cr_assert_eq(urt_task_id(NULL), 0);
    cr_assert_eq(urt_block_in_place(NULL, NULL, NULL), -EINVAL);

    cr_assert_eq(urt_runtime_block_on(NULL, identity, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_runtime_block_on(rt, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_runtime_shutdown(NULL, 0), -EINVAL);
    urt_runtime_destroy(NULL);
    urt_worker_stats st;
    cr_assert_eq(urt_runtime_stats(NULL, &st, 1), -EINVAL);
    cr_assert_eq(urt_runtime_stats(rt, NULL, 1), -EINVAL);
    cr_assert_eq(urt_runtime_stats(rt, NULL, 0), 2, "n = 0 only asks for the worker count");
    cr_assert_eq(urt_runtime_dump(NULL, 2), -EINVAL);
    cr_assert_eq(urt_runtime_dump(rt, -1), -EINVAL);

    cr_assert_eq(urt_notify_create(NULL), -EINVAL);
    cr_assert_eq(urt_notify_signal(NULL), -EINVAL);
    cr_assert_eq(urt_notify_wait(NULL), -EINVAL);
    cr_assert_eq(urt_notify_try_wait(NULL), -EINVAL);
    urt_notify_destroy(NULL);

    cr_assert_eq(urt_close(-1), -EBADF);

    void *bad = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, null_args_in_task, NULL, &bad), 0);
    cr_assert_null(bad, "%zu bad-argument checks failed inside a task", (size_t)(uintptr_t)bad);

    /* still works */
    void *r = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)9, &r), 0);
    cr_assert_eq((uintptr_t)r, 9);
    urt_runtime_destroy(rt);
}

/* ---- suspending calls outside a task ------------------------------------------------------ */

Test(bad_input, suspending_calls_outside_a_task_give_eperm, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char buf[8] = "abc";
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);

    cr_assert_eq(urt_sleep(1000), -EPERM);
    cr_assert_eq(urt_recv(sv[0], buf, sizeof(buf), 0), -EPERM);
    cr_assert_eq(urt_send(sv[0], buf, 3, 0), -EPERM);
    cr_assert_eq(urt_read(sv[0], buf, sizeof(buf), -1), -EPERM);
    cr_assert_eq(urt_write(sv[0], buf, 3, -1), -EPERM);
    cr_assert_eq(urt_accept(sv[0], (struct sockaddr *)&sa, &len, 0), -EPERM);
    cr_assert_eq(urt_connect(sv[0], (struct sockaddr *)&sa, sizeof(sa)), -EPERM);

    /* nothing was sent by the refused calls */
    char peek[8];
    cr_assert_eq(recv(sv[1], peek, sizeof(peek), MSG_DONTWAIT), -1);
    cr_assert_eq(errno, EAGAIN);

    cr_assert_eq(urt_current(), NULL);
    cr_assert_eq(urt_worker_id(), -1);
    cr_assert_eq(urt_self_id(), 0);
    cr_assert(!urt_cancelled());
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

/* ---- calls that would deadlock ---------------------------------------------------------------- */

typedef struct deadlock {
    urt_runtime *rt;
    int block_on_res, shutdown_res, join_self_res, spawn_after_destroy_res;
    void *spawn_after_destroy_ret;
    urt_notify *handle_ready;
    urt_task *_Atomic self;
} deadlock;

static void *join_self(void *arg)
{
    deadlock *d = arg;
    urt_notify_wait(d->handle_ready);
    d->join_self_res = urt_join(atomic_load(&d->self), NULL);
    return (void *)(uintptr_t)0x5e1f;
}

static void *blocking_calls_in_task(void *arg)
{
    deadlock *d = arg;
    d->block_on_res = urt_runtime_block_on(d->rt, identity, NULL, NULL);
    d->shutdown_res = urt_runtime_shutdown(d->rt, 0);

    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, join_self, d) != 0)
        return (void *)1;
    atomic_store(&d->self, t);
    urt_notify_signal(d->handle_ready);
    void *r = NULL;
    if (urt_join(t, &r) != 0 || (uintptr_t)r != 0x5e1f)
        return (void *)2;

    urt_runtime_destroy(d->rt);   /* refused from a worker thread: nothing is freed */
    t = NULL;
    d->spawn_after_destroy_res = urt_spawn(NULL, &t, identity, (void *)(uintptr_t)0x42);
    if (t)
        urt_join(t, &d->spawn_after_destroy_ret);
    return NULL;
}

Test(bad_input, blocking_runtime_calls_and_joining_yourself_inside_a_task_give_edeadlk, .timeout = 30)
{
    static const unsigned counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        urt_runtime *rt = rt_new(counts[k]);
        deadlock d = {.rt = rt, .block_on_res = 1, .shutdown_res = 1, .join_self_res = 1,
                      .spawn_after_destroy_res = 1};
        cr_assert_eq(urt_notify_create(&d.handle_ready), 0);
        void *err = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, blocking_calls_in_task, &d, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(d.block_on_res, -EDEADLK, "block_on in a task gave %d", d.block_on_res);
        cr_assert_eq(d.shutdown_res, -EDEADLK, "shutdown in a task gave %d", d.shutdown_res);
        cr_assert_eq(d.join_self_res, -EDEADLK, "joining yourself gave %d", d.join_self_res);
        cr_assert_eq(d.spawn_after_destroy_res, 0, "the runtime stopped working after destroy in a task (%d)",
                     d.spawn_after_destroy_res);
        cr_assert_eq((uintptr_t)d.spawn_after_destroy_ret, 0x42);
        urt_notify_destroy(d.handle_ready);
        urt_runtime_destroy(rt);
    }
}

/* A worker thread outside any task: on_task_terminate runs there. */
typedef struct hook_checks {
    atomic_int armed, done;
    urt_runtime *rt;
    urt_task *blocked;
    urt_notify *n;
    int join_res, block_on_res, shutdown_res, notify_res, sleep_res, worker;
} hook_checks;

static hook_checks *hc;

static void checking_terminate_hook(urt_task *t, void *data)
{
    (void)t;
    hook_checks *h = data;
    if (urt_worker_id() < 0)
        return;   /* blocking-pool threads may block */
    int one = 1;
    if (!atomic_compare_exchange_strong(&h->armed, &one, 0))
        return;
    h->worker = urt_worker_id();
    h->join_res = urt_join(h->blocked, NULL);
    h->block_on_res = urt_runtime_block_on(h->rt, identity, NULL, NULL);
    h->shutdown_res = urt_runtime_shutdown(h->rt, 0);
    h->notify_res = urt_notify_wait(h->n);
    h->sleep_res = urt_sleep(1000);
    atomic_store(&h->done, 1);
}

static void *wait_on_notify(void *arg)
{
    hook_checks *h = arg;
    return (void *)(intptr_t)urt_notify_wait(h->n);
}

Test(bad_input, blocking_calls_in_a_hook_on_a_worker_thread_are_refused, .timeout = 30)
{
    static hook_checks h;
    memset(&h, 0, sizeof(h));
    hc = &h;
    h.join_res = h.block_on_res = h.shutdown_res = h.notify_res = h.sleep_res = 1;
    urt_config cfg = {.workers = 2, .on_task_terminate = checking_terminate_hook, .hook_data = &h};
    urt_runtime *rt = rt_new_cfg(&cfg);
    h.rt = rt;
    cr_assert_eq(urt_notify_create(&h.n), 0);
    cr_assert_eq(urt_spawn(rt, &h.blocked, wait_on_notify, &h), 0);

    atomic_store(&h.armed, 1);
    while (!atomic_load(&h.done)) {
        urt_task *q = NULL;
        cr_assert_eq(urt_spawn(rt, &q, identity, NULL), 0);
        cr_assert_eq(urt_join(q, NULL), 0);
    }
    cr_assert_geq(h.worker, 0);
    cr_assert_eq(h.join_res, -EDEADLK, "a blocking join on a worker thread gave %d", h.join_res);
    cr_assert_eq(h.block_on_res, -EDEADLK, "block_on on a worker thread gave %d", h.block_on_res);
    cr_assert_eq(h.shutdown_res, -EDEADLK, "shutdown on a worker thread gave %d", h.shutdown_res);
    cr_assert_eq(h.notify_res, -EDEADLK, "notify_wait in a hook gave %d", h.notify_res);
    cr_assert_eq(h.sleep_res, -EDEADLK);

    /* -EDEADLK leaves the handle to its owner */
    cr_assert_eq(urt_notify_signal(h.n), 0);
    void *r = (void *)1;
    cr_assert_eq(urt_join(h.blocked, &r), 0);
    cr_assert_eq((intptr_t)r, 0);
    urt_notify_destroy(h.n);
    urt_runtime_destroy(rt);
}

/* ---- closed descriptors ------------------------------------------------------------------------- */

typedef struct closed {
    int fd;
    ssize_t recv_res, send_res, read_res, write_res;
    int close_res;
} closed;

static void *io_on_closed_fd(void *arg)
{
    closed *c = arg;
    char buf[16] = "x";
    c->recv_res = urt_recv(c->fd, buf, sizeof(buf), 0);
    c->send_res = urt_send(c->fd, buf, 1, 0);
    c->read_res = urt_read(c->fd, buf, sizeof(buf), 0);
    c->write_res = urt_write(c->fd, buf, 1, -1);
    c->close_res = urt_close(c->fd);
    return NULL;
}

Test(bad_input, io_on_a_closed_descriptor_gives_ebadf, .timeout = 30)
{
    static const unsigned counts[] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        urt_runtime *rt = rt_new(counts[k]);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        close(sv[1]);
        close(sv[0]);
        cr_assert_eq(fcntl(sv[0], F_GETFD), -1, "fd %d was reused", sv[0]);
        closed c = {.fd = sv[0]};
        cr_assert_eq(urt_runtime_block_on(rt, io_on_closed_fd, &c, NULL), 0);
        cr_assert_eq(c.recv_res, -EBADF, "urt_recv gave %zd", c.recv_res);
        cr_assert_eq(c.send_res, -EBADF, "urt_send gave %zd", c.send_res);
        cr_assert_eq(c.read_res, -EBADF, "urt_read gave %zd", c.read_res);
        cr_assert_eq(c.write_res, -EBADF, "urt_write gave %zd", c.write_res);
        cr_assert_eq(c.close_res, -EBADF, "urt_close gave %d", c.close_res);
        void *r = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)3, &r), 0);
        cr_assert_eq((uintptr_t)r, 3);
        urt_runtime_destroy(rt);
    }
}

/* ---- a stack that cannot be had ----------------------------------------------------------------- */

typedef struct huge {
    atomic_int ran;
    int res;
    void *ret;
} huge;

static void *mark_huge(void *arg)
{
    huge *h = arg;
    atomic_store(&h->ran, 1);
    return (void *)(uintptr_t)0x1;
}

static void spawn_with_stack(urt_runtime *rt, size_t size, huge *h)
{
    urt_spawn_opts o = {.name = "huge-stack", .stack_size = size};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn_ex(rt, &t, mark_huge, h, &o), 0, "spawn itself succeeds; the stack comes when it runs");
    h->ret = (void *)(uintptr_t)0xdead;
    h->res = urt_join(t, &h->ret);
}

static uint64_t vm_size_bytes(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    cr_assert_not_null(f);
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %llu kB", &kb) == 1)
            break;
    fclose(f);
    cr_assert_gt(kb, 0);
    return kb * 1024;
}

Test(bad_input, stack_sizes_out_of_range_give_einval_at_spawn, .timeout = 60)
{
    static const size_t sizes[] = {(size_t)1 << 46, (size_t)1 << 47, SIZE_MAX / 2, SIZE_MAX - 4096,
                                   ((size_t)1 << 30) + 1, 16 * 1024 - 1, 1};
    urt_runtime *rt = rt_new(2);
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        urt_spawn_opts o = {.name = "bad-stack", .stack_size = sizes[i]};
        urt_task *t = (urt_task *)0x1;
        cr_assert_eq(urt_spawn_ex(rt, &t, identity, NULL, &o), -EINVAL, "stack of %#zx bytes", sizes[i]);
        cr_assert_null(t);
    }
    void *r = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)7, &r), 0);
    cr_assert_eq((uintptr_t)r, 7);
    urt_runtime_destroy(rt);
}

/* Address space capped (RLIMIT_AS, this test's process only): the stack of
 * the big task cannot be mapped, its join says -ENOMEM, and the runtime goes on. */
Test(bad_input, task_whose_stack_cannot_be_mapped_fails_with_enomem, .timeout = 60)
{
#if defined(URT_ASAN) || defined(URT_TSAN)
    cr_skip_test("sanitizer runtimes reserve address space that RLIMIT_AS would cap");
#endif
    static const unsigned counts[] = {1, 2};
    for (int k = 0; k < 2; k++) {
        urt_runtime *rt = rt_new(counts[k]);
        void *r = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)1, &r), 0);   /* stacks cached */
        struct rlimit old, lim;
        cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
        lim = old;
        lim.rlim_cur = vm_size_bytes() + ((rlim_t)64 << 20);
        cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);

        huge h = {0};
        spawn_with_stack(rt, (size_t)512 << 20, &h);   /* retried for a while, then given up */
        cr_assert_eq(h.res, -ENOMEM, "%u workers: join gave %d (task ran: %d)", counts[k], h.res,
                     atomic_load(&h.ran));
        cr_assert_eq(atomic_load(&h.ran), 0);
        cr_assert_null(h.ret, "a task that never ran hands back NULL");

        /* the runtime keeps working with normal stacks */
        cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)(uintptr_t)(k + 10), &r), 0);
        cr_assert_eq((uintptr_t)r, (uintptr_t)(k + 10));
        cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
        urt_runtime_destroy(rt);
    }
}

static atomic_int huge_drops;

static void drop_huge(void *arg)
{
    if (arg)
        atomic_fetch_add(&huge_drops, 1);
}

typedef struct huge_later {
    urt_runtime *rt;
    huge h;
    urt_task *t;
} huge_later;

/* The stack cannot be had for a moment: the task is not failed at once but
 * retried, and runs when memory comes back; on_drop is not called. When it
 * never comes back, the join says -ENOMEM and on_drop(arg) runs once. */
Test(bad_input, task_whose_stack_cannot_be_mapped_yet_runs_once_memory_comes_back, .timeout = 60)
{
#if defined(URT_ASAN) || defined(URT_TSAN)
    cr_skip_test("sanitizer runtimes reserve address space that RLIMIT_AS would cap");
#endif
    urt_runtime *rt = rt_new(1);
    void *r = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, identity, (void *)1, &r), 0);
    struct rlimit old, lim;
    cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
    lim = old;
    lim.rlim_cur = vm_size_bytes() + ((rlim_t)64 << 20);
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);

    huge h = {0};
    urt_spawn_opts o = {.name = "huge-later", .stack_size = (size_t)512 << 20, .on_drop = drop_huge};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn_ex(rt, &t, mark_huge, &h, &o), 0);
    usleep(200 * 1000);
    cr_assert_eq(atomic_load(&h.ran), 0);
    cr_assert_eq(atomic_load(&huge_drops), 0, "given up within 200 ms");
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);   /* memory comes back */
    h.ret = NULL;
    cr_assert_eq(urt_join(t, &h.ret), 0);
    cr_assert_eq(atomic_load(&h.ran), 1);
    cr_assert_eq(atomic_load(&huge_drops), 0);

    /* never comes back: -ENOMEM and on_drop once */
    cr_assert_eq(setrlimit(RLIMIT_AS, &lim), 0);
    huge g = {0};
    cr_assert_eq(urt_spawn_ex(rt, &t, mark_huge, &g, &o), 0);
    cr_assert_eq(urt_join(t, NULL), -ENOMEM);
    cr_assert_eq(atomic_load(&g.ran), 0);
    cr_assert_eq(atomic_load(&huge_drops), 1);
    cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
    urt_runtime_destroy(rt);
}
