/*
 * io.c - I/O calls as one SQE each on the calling task's worker ring.
 *
 * An op's record (ring_op) lives on the task's stack in op_wait's caller; the
 * task becomes runnable only through that op's CQE, so the record outlives
 * the kernel's use of it:
 *   1. op_sqe reserves room (two SQEs when a per-task timeout links a
 *      LINK_TIMEOUT, so a flush never splits the pair) and returns the SQE;
 *   2. the caller preps it; op_wait tags it with (record, generation);
 *   3. the task suspends; woken early (cancel), it queues an ASYNC_CANCEL of
 *      that exact op on its own ring (the op's ring: a task with an op in
 *      flight never moves) and suspends again until the op's CQE;
 *   4. the CQE's result is returned: -ECANCELED after a cancel, -ETIMEDOUT
 *      when the linked timeout fired (the kernel says -ECANCELED; we know
 *      which we asked for).
 * Inside urt_block_in_place the calls are plain blocking syscalls.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

static inline struct __kernel_timespec ns_to_ts(uint64_t ns)
{
    struct __kernel_timespec ts = {.tv_sec = (long long)(ns / 1000000000u), .tv_nsec = (long long)(ns % 1000000000u)};
    return ts;
}

/* The current task, if it may start a ring op now. *err says why not. */
static inline urt_task *io_task(int *err)
{
    urt_task *t = urt__cur_task();
    if (!t) {
        *err = -EPERM;
        return NULL;
    }
    if (t->in_bip) {
        *err = 1;   /* plain syscall */
        return NULL;
    }
    if (task_cancel_pending(t)) {
        *err = -ECANCELED;
        return NULL;
    }
    return t;
}

static struct io_uring_sqe *op_sqe(urt_task *t, bool timed)
{
    urt_worker *w = urt__cur_worker();
    ring_reserve(&w->ring, timed && t->op_timeout ? 2 : 1);
    return ring_sqe(&w->ring);
}

static int op_wait_ex(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd, bool timed)
{
    urt_worker *w = urt__cur_worker();
    struct __kernel_timespec ts;
    bool has_timeout = timed && t->op_timeout;
    ring_op_start(op, t);
    io_uring_sqe_set_data64(sqe, ring_op_data(op));
    if (has_timeout) {
        sqe->flags |= IOSQE_IO_LINK;
        ts = ns_to_ts(t->op_timeout);
        struct io_uring_sqe *tsqe = ring_sqe(&w->ring);
        io_uring_prep_link_timeout(tsqe, &ts, 0);
        io_uring_sqe_set_data64(tsqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
        tsqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    }
    t->op_pending = true;
    __atomic_store_n(&t->wait_what, what, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, fd, __ATOMIC_RELAXED);
    while (!op->done) {
        if (!op->cancel_sent && task_cancel_pending(t)) {
            w = urt__cur_worker();
            ring_cancel_op(&w->ring, op);
        }
        task_suspend(t, SW_PARK);
    }
    t->op_pending = false;
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, -1, __ATOMIC_RELAXED);
    int res = op->res;
    if (res == -ECANCELED && !op->cancel_sent && has_timeout)
        res = -ETIMEDOUT;
    return res;
}

bool task_timer_start(urt_task *t, ring_op *op, struct __kernel_timespec *ts)
{
    urt_worker *w = urt__cur_worker();
    if (!t->op_timeout || !w)
        return false;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return false;
    *ts = ns_to_ts(t->op_timeout);
    ring_op_start(op, t);
    io_uring_prep_timeout(sqe, ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ring_op_data(op));
    t->op_pending = true;   /* a migratable task stays by its ring while the timer is armed */
    return true;
}

void task_timer_finish(urt_task *t, ring_op *op)
{
    if (!op->done) {
        /* the record is on the caller's stack: end it and wait for its CQE */
        ring_cancel_op(&urt__cur_worker()->ring, op);
        bool old = t->shield;
        t->shield = true;
        while (!op->done)
            task_suspend(t, SW_PARK);
        t->shield = old;
    }
    t->op_pending = false;
}

#define IO_PROLOGUE(plain)                          \
    int err_ = 0;                                   \
    urt_task *t = io_task(&err_);                   \
    if (!t) {                                       \
        if (err_ == 1) {                            \
            ssize_t r_ = (plain);                   \
            return r_ < 0 ? -errno : r_;            \
        }                                           \
        return err_;                                \
    }                                               \
    ring_op op;                                     \
    struct io_uring_sqe *sqe = op_sqe(t, true);     \
    if (!sqe)                                       \
        return -EBUSY;

ssize_t urt_recv(int fd, void *buf, size_t len, int flags)
{
    if (!buf && len)
        return -EINVAL;
    IO_PROLOGUE(recv(fd, buf, len, flags));
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    return op_wait_ex(t, &op, sqe, "recv", fd, true);
}

ssize_t urt_send(int fd, const void *buf, size_t len, int flags)
{
    if (!buf && len)
        return -EINVAL;
    IO_PROLOGUE(send(fd, buf, len, flags | MSG_NOSIGNAL));
    io_uring_prep_send(sqe, fd, buf, len, flags | MSG_NOSIGNAL);
    return op_wait_ex(t, &op, sqe, "send", fd, true);
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    IO_PROLOGUE(off < 0 ? read(fd, buf, len) : pread(fd, buf, len, off));
    io_uring_prep_read(sqe, fd, buf, (unsigned)(len > 0x7ffff000 ? 0x7ffff000 : len), (uint64_t)off);
    return op_wait_ex(t, &op, sqe, "read", fd, true);
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    IO_PROLOGUE(off < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, off));
    io_uring_prep_write(sqe, fd, buf, (unsigned)(len > 0x7ffff000 ? 0x7ffff000 : len), (uint64_t)off);
    return op_wait_ex(t, &op, sqe, "write", fd, true);
}

int urt_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if ((addr && !len) || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
        return -EINVAL;
    IO_PROLOGUE(accept4(fd, addr, len, flags));
    io_uring_prep_accept(sqe, fd, addr, len, flags);
    return op_wait_ex(t, &op, sqe, "accept", fd, true);
}

int urt_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!addr)
        return -EINVAL;
    IO_PROLOGUE(connect(fd, addr, len));
    io_uring_prep_connect(sqe, fd, addr, len);
    return op_wait_ex(t, &op, sqe, "connect", fd, true);
}

int urt_close(int fd)
{
    if (fd < 0)
        return -EBADF;
    urt_task *t = urt__cur_task();
    if (!t || t->in_bip)
        return close(fd) < 0 ? -errno : 0;
    /* cancel first (a recv pending on a closed socket never completes), then
     * close; both even in a cancelled task */
    bool old = t->shield;
    t->shield = true;
    urt_worker *w = urt__cur_worker();
    ring_reserve(&w->ring, 2);
    struct io_uring_sqe *c = ring_sqe(&w->ring);
    if (!c) {
        t->shield = old;
        return -EBUSY;
    }
    io_uring_prep_cancel_fd(c, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(c, ring_tag(NULL, RING_TAG_IGNORE, 0));
    c->flags |= IOSQE_IO_HARDLINK;   /* the close runs whatever the cancel found */
    ring_op op;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    io_uring_prep_close(sqe, fd);
    int r = op_wait_ex(t, &op, sqe, "close", fd, false);
    t->shield = old;
    return r;
}

int urt_sleep(uint64_t ns)
{
    int err_ = 0;
    urt_task *t = io_task(&err_);
    if (!t) {
        if (err_ == 1) {
            struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
            return 0;
        }
        return err_;
    }
    /* an absolute deadline on CLOCK_MONOTONIC: never early */
    uint64_t deadline = urt__now() + ns;
    struct __kernel_timespec ts = ns_to_ts(deadline);
    ring_op op;
    struct io_uring_sqe *sqe = op_sqe(t, false);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_timeout(sqe, &ts, 0, IORING_TIMEOUT_ABS);
    int r = op_wait_ex(t, &op, sqe, "sleep", -1, false);
    if (r == -ETIME || r == 0)
        return 0;
    return r;
}

ssize_t urt_send_all(int fd, const void *buf, size_t len, int flags)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = urt_send(fd, (const char *)buf + done, len - done, flags);
        if (n < 0)
            return n;
        if (n == 0)
            return -EPIPE;
        done += (size_t)n;
    }
    return (ssize_t)len;
}

int urt_shutdown(int fd, int how)
{
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    IO_PROLOGUE(shutdown(fd, how));
    io_uring_prep_shutdown(sqe, fd, how);
    return op_wait_ex(t, &op, sqe, "shutdown", fd, true);
}
