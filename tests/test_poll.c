/*
 * test_poll.c - urt_poll: POLLIN once the peer writes, POLLOUT on a fresh
 * socket, POLLHUP when the peer closes, -ETIMEDOUT under an op timeout or a
 * deadline, -ECANCELED when cancelled or when urt_close ends it from
 * another task, -EBADF on an fd that is not open, -EINVAL for bad events;
 * a non-blocking socket driven to EAGAIN and then polled; and the same on
 * the fallback (no POLL_ADD on the ring: poll(2) on the blocking pool).
 */
#include <criterion/criterion.h>

#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/sock_test.h"

#define NO_POLL "6"   /* IORING_OP_POLL_ADD */

/* ---- readiness ------------------------------------------------------------------------------ */

typedef struct ready_run {
    int fds[2];
    int in, out, hup, wrote;
} ready_run;

static void *write_later(void *arg)
{
    ready_run *r = arg;
    urt_sleep(20 * MS);
    r->wrote = (int)write(r->fds[1], "r", 1);
    return NULL;
}

static void *poll_ready(void *arg)
{
    ready_run *r = arg;
    urt_task *wr = NULL;
    if (urt_spawn(NULL, &wr, write_later, r) != 0)
        return (void *)1;
    r->in = urt_poll(r->fds[0], POLLIN);
    urt_join(wr, NULL);
    r->out = urt_poll(r->fds[0], POLLOUT);
    char c;
    if (read(r->fds[0], &c, 1) != 1)
        return (void *)2;
    close(r->fds[1]);
    r->hup = urt_poll(r->fds[0], POLLIN | POLLRDHUP);
    return NULL;
}

static void check_ready(urt_runtime *rt, unsigned w)
{
    ready_run r = {.in = -1, .out = -1, .hup = -1};
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r.fds), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, poll_ready, &r, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(r.wrote, 1);
    cr_assert_eq(r.in, POLLIN, "%u workers: poll(POLLIN) after the peer wrote gave %d", w, r.in);
    cr_assert_eq(r.out, POLLOUT, "%u workers: poll(POLLOUT) on a fresh socket gave %d", w, r.out);
    cr_assert_gt(r.hup, 0, "poll after the peer closed gave %d", r.hup);
    cr_assert(r.hup & (POLLHUP | POLLRDHUP), "poll after the peer closed gave %#x", r.hup);
    close(r.fds[0]);
}

Test(poll, pollin_after_the_peer_writes_pollout_on_a_fresh_socket_hup_after_close, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        check_ready(rt, w);
        urt_runtime_destroy(rt);
    }
}

Test(poll, readiness_is_the_same_on_the_fallback, .timeout = 30)
{
    const char *sets[] = {NO_POLL, "all"};
    for (unsigned i = 0; i < 2; i++) {
        urt_runtime *rt = rt_new_no_ops(2, sets[i]);
        check_ready(rt, 2);
        urt_runtime_destroy(rt);
    }
}

/* ---- non-blocking socket: EAGAIN, then poll -------------------------------------------------- */

typedef struct nb_run {
    int fds[2];
    size_t filled, drained;
    int out_ready, in_ready, after_in;
    ssize_t got;
} nb_run;

static void *drain_later(void *arg)
{
    nb_run *n = arg;
    urt_sleep(20 * MS);
    char buf[65536];
    for (;;) {
        ssize_t r = recv(n->fds[1], buf, sizeof(buf), MSG_DONTWAIT);
        if (r <= 0)
            break;
        n->drained += (size_t)r;
    }
    urt_sleep(20 * MS);
    if (write(n->fds[1], "x", 1) != 1)
        return (void *)1;
    return NULL;
}

static void *drive_nonblocking(void *arg)
{
    nb_run *n = arg;
    char buf[4096];
    memset(buf, 'a', sizeof(buf));
    /* fill the socket until it says EAGAIN, with the plain syscalls of a
     * library that does its own non-blocking I/O */
    for (;;) {
        ssize_t r = send(n->fds[0], buf, sizeof(buf), 0);
        if (r < 0 && errno == EAGAIN)
            break;
        if (r <= 0)
            return (void *)1;
        n->filled += (size_t)r;
    }
    urt_task *d = NULL;
    if (urt_spawn(NULL, &d, drain_later, n) != 0)
        return (void *)2;
    n->out_ready = urt_poll(n->fds[0], POLLOUT);
    /* nothing to read yet: EAGAIN, then poll until the peer writes */
    n->got = recv(n->fds[0], buf, sizeof(buf), 0);
    if (n->got < 0 && errno == EAGAIN) {
        n->in_ready = urt_poll(n->fds[0], POLLIN);
        n->got = recv(n->fds[0], buf, sizeof(buf), 0);
    }
    urt_join(d, NULL);
    return NULL;
}

Test(poll, a_nonblocking_socket_driven_to_eagain_becomes_ready_when_polled, .timeout = 30)
{
    const char *sets[] = {"", "all"};
    for (unsigned i = 0; i < 2; i++) {
        FOR_EACH_WORKER_COUNT(w) {
            urt_runtime *rt = rt_new_no_ops(w, sets[i]);
            nb_run n;
            memset(&n, 0, sizeof(n));
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, n.fds), 0);
            void *ret = (void *)9;
            cr_assert_eq(urt_runtime_block_on(rt, drive_nonblocking, &n, &ret), 0);
            cr_assert_null(ret, "%s: the non-blocking socket did not reach EAGAIN", sets[i]);
            cr_assert_gt(n.filled, 0);
            cr_assert_eq(n.out_ready & POLLOUT, POLLOUT, "%u workers: poll(POLLOUT) gave %d", w, n.out_ready);
            cr_assert_eq(n.in_ready, POLLIN, "%u workers: poll(POLLIN) gave %d", w, n.in_ready);
            cr_assert_eq(n.got, 1, "recv after POLLIN gave %zd", n.got);
            cr_assert_eq(n.drained, n.filled, "the peer drained every byte");
            close(n.fds[0]);
            close(n.fds[1]);
            urt_runtime_destroy(rt);
        }
    }
}

/* ---- time bounds, cancel, close, bad fds ------------------------------------------------------- */

typedef struct bound_run {
    int fd;
    int timed, deadlined, cancelled, closed;
    uint64_t took;
} bound_run;

static void *poll_bounded(void *arg)
{
    bound_run *b = arg;
    uint64_t old = urt_op_timeout(20 * MS);
    uint64_t t0 = urt_now();
    b->timed = urt_poll(b->fd, POLLIN);
    b->took = urt_now() - t0;
    urt_op_timeout(old);
    uint64_t od = urt_deadline(urt_now() + 20 * MS);
    b->deadlined = urt_poll(b->fd, POLLIN | POLLPRI);
    urt_deadline(od);
    return NULL;
}

static void *poll_until_cancelled(void *arg)
{
    bound_run *b = arg;
    b->cancelled = urt_poll(b->fd, POLLIN);
    return NULL;
}

static void *poll_until_closed(void *arg)
{
    bound_run *b = arg;
    b->closed = urt_poll(b->fd, POLLIN);
    return NULL;
}

static void check_bounds(urt_runtime *rt, bool dump_shows_poll)
{
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    bound_run b = {.fd = fds[0], .timed = 1, .deadlined = 1, .cancelled = 1, .closed = 1};
    cr_assert_eq(urt_runtime_block_on(rt, poll_bounded, &b, NULL), 0);
    cr_assert_eq(b.timed, -ETIMEDOUT, "poll under a 20 ms op timeout gave %d", b.timed);
    cr_assert_geq(b.took, 20 * MS);
    cr_assert_lt(b.took, 10 * SEC);
    cr_assert_eq(b.deadlined, -ETIMEDOUT, "poll past its deadline gave %d", b.deadlined);
    cancel_while_waiting(rt, poll_until_cancelled, &b, dump_shows_poll ? "poll" : NULL);
    cr_assert_eq(b.cancelled, -ECANCELED, "a cancelled poll gave %d", b.cancelled);
    close(fds[0]);
    close(fds[1]);
}

Test(poll, op_timeout_deadline_and_cancel_end_a_poll, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        check_bounds(rt, true);
        urt_runtime_destroy(rt);
    }
    urt_runtime *rt = rt_new_no_ops(2, NO_POLL);
    check_bounds(rt, false);
    urt_runtime_destroy(rt);
}

static void *close_it(void *arg)
{
    bound_run *b = arg;
    return (void *)(intptr_t)urt_close(b->fd);
}

static void *poll_then_close_elsewhere(void *arg)
{
    bound_run *b = arg;
    urt_runtime *rt = urt_current();
    urt_task *p = NULL, *c = NULL;
    urt_spawn_opts spread = {.flags = URT_TASK_SPREAD};
    if (urt_spawn_ex(NULL, &p, poll_until_closed, b, &spread) != 0)
        return (void *)1;
    await_waiting(rt, p, "poll");
    if (urt_spawn_ex(NULL, &c, close_it, b, &spread) != 0)
        return (void *)2;
    void *cr = (void *)1;
    urt_join(c, &cr);
    urt_join(p, NULL);
    return cr;
}

Test(poll, urt_close_from_another_task_ends_a_pending_poll, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        int fds[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
        bound_run b = {.fd = fds[0], .closed = 1};
        void *ret = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, poll_then_close_elsewhere, &b, &ret), 0);
        cr_assert_null(ret, "urt_close gave %d", (int)(intptr_t)ret);
        cr_assert_eq(b.closed, -ECANCELED, "%u workers: a poll whose fd was closed gave %d", w, b.closed);
        close(fds[1]);
        urt_runtime_destroy(rt);
    }
}

typedef struct bad_run {
    int closed_fd;
    int r[6];
} bad_run;

static void *poll_bad(void *arg)
{
    bad_run *b = arg;
    b->r[0] = urt_poll(b->closed_fd, POLLIN);
    b->r[1] = urt_poll(-1, POLLIN);
    b->r[2] = urt_poll(0, 0);
    b->r[3] = urt_poll(0, (short)0x8000);
    b->r[4] = urt_poll(0, POLLIN | POLLNVAL);
    b->r[5] = urt_poll(0, POLLWRBAND);
    return NULL;
}

Test(poll, a_closed_fd_gives_ebadf_and_bad_events_give_einval, .timeout = 30)
{
    const char *sets[] = {"", "all"};
    for (unsigned i = 0; i < 2; i++) {
        urt_runtime *rt = rt_new_no_ops(1, sets[i]);
        bad_run b;
        memset(&b, 0, sizeof(b));
        b.closed_fd = dup(0);
        close(b.closed_fd);
        cr_assert_eq(urt_runtime_block_on(rt, poll_bad, &b, NULL), 0);
        cr_assert_eq(b.r[0], -EBADF, "%s: poll on a closed fd gave %d", sets[i], b.r[0]);
        cr_assert_eq(b.r[1], -EBADF);
        for (int k = 2; k < 6; k++)
            cr_assert_eq(b.r[k], -EINVAL, "bad events %d gave %d", k, b.r[k]);
        cr_assert_eq(urt_poll(0, POLLIN), -EPERM, "outside a task");
        urt_runtime_destroy(rt);
    }
}

/* ---- inside urt_block_in_place ----------------------------------------------------------------- */

typedef struct bip_poll {
    int fds[2];
    int out, bad;
} bip_poll;

static void *plain_poll(void *arg)
{
    bip_poll *p = arg;
    p->out = urt_poll(p->fds[0], POLLOUT);
    int d = dup(p->fds[0]);
    close(d);
    p->bad = urt_poll(d, POLLIN);
    return NULL;
}

static void *poll_in_place(void *arg) { return (void *)(intptr_t)urt_block_in_place(plain_poll, arg, NULL); }

Test(poll, poll_inside_block_in_place_is_plain_poll, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    bip_poll p = {.out = -1, .bad = 1};
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, p.fds), 0);
    void *ret = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, poll_in_place, &p, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(p.out, POLLOUT);
    cr_assert_eq(p.bad, -EBADF, "POLLNVAL is reported as -EBADF, gave %d", p.bad);
    close(p.fds[0]);
    close(p.fds[1]);
    urt_runtime_destroy(rt);
}
