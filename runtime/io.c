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
 *      when the linked timeout fired (the kernel says -ECANCELED; the
 *      timeout's own CQE, counted into the same record, says -ETIME, so a
 *      cancel from elsewhere, urt_close say, is never taken for a timeout).
 * While an op on an fd is in flight the worker counts it (fdtrack.c), so a
 * urt_close on any worker can end it first.
 * Lengths above IO_MAX (what the kernel takes in one call) are clamped, the
 * same way in every call and on every path.
 * Inside urt_block_in_place the calls are plain blocking syscalls.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define IO_MAX 0x7ffff000u   /* MAX_RW_COUNT: the most one read/write/recv/send moves */
#define NAP_NS (1000ull * 1000)
#define CANCEL_FAST_MAX 64   /* immediate -ECANCELED returns before a task naps */

static inline size_t io_len(size_t len) { return len > IO_MAX ? IO_MAX : len; }

static inline struct __kernel_timespec ns_to_ts(uint64_t ns)
{
    struct __kernel_timespec ts = {.tv_sec = (long long)(ns / 1000000000u), .tv_nsec = (long long)(ns % 1000000000u)};
    return ts;
}

/* The current task, if it may start a ring op now. *err says why not. */
static inline urt_task *io_task(int *err)
{
    urt_task *t = urt__cur_task();
    if (urt__in_hook()) {
        *err = -EDEADLK;
        return NULL;
    }
    if (!t) {
        *err = -EPERM;
        return NULL;
    }
    if (t->in_bip) {
        *err = 1;   /* plain syscall */
        return NULL;
    }
    if (task_cancel_pending(t)) {
        *err = task_cancelled_now(t);
        return NULL;
    }
    return t;
}

/* An SQE for the op, and a second one reserved for its linked timeout when
 * `timed` and the task has an op timeout; NULL (-EBUSY) when the ring
 * cannot give them together. */
static struct io_uring_sqe *op_sqe(urt_task *t, bool timed)
{
    urt_worker *w = urt__cur_worker();
    if (!ring_reserve(&w->ring, timed && t->op_timeout ? 2 : 1))
        return NULL;
    return ring_sqe(&w->ring);
}

/* Submit the op prepared in sqe and wait (fiber suspended) for its end. */
static int op_wait_ex(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd, bool timed)
{
    urt_worker *w = urt__cur_worker();
    struct __kernel_timespec ts;
    bool has_timeout = timed && t->op_timeout;
    ring_op_start(&w->ring, op, t);
    io_uring_sqe_set_data64(sqe, ring_op_data(op));
    if (has_timeout) {
        ts = ns_to_ts(t->op_timeout);
        ring_link_timeout(&w->ring, op, sqe, &ts);
    }
    bool tracked = fdt_inc(w, fd);
    t->op_pending = true;
    __atomic_store_n(&t->wait_what, what, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, fd, __ATOMIC_RELAXED);
    while (!op->done) {
        if (!op->cancel_sent && task_cancel_pending(t))
            ring_cancel_op(&w->ring, op);   /* w: the op pins the task to this worker */
        task_suspend(t, SW_PARK);
    }
    t->op_pending = false;
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, -1, __ATOMIC_RELAXED);
    if (tracked)
        fdt_dec(w, fd);
    int res = op->res;
    if (res == -ECANCELED && !op->cancel_sent && op->timer_fired)
        res = -ETIMEDOUT;
    return res;
}

/* A shielded nap on the ring (cancellation cannot cut it short). */
static void nap(urt_task *t, uint64_t ns)
{
    bool old = t->shield;
    t->shield = true;
    struct io_uring_sqe *sqe = op_sqe(t, false);
    if (sqe) {
        ring_op op;
        struct __kernel_timespec ts = ns_to_ts(ns);
        io_uring_prep_timeout(sqe, &ts, 0, 0);
        op_wait_ex(t, &op, sqe, "nap", -1, false);
    }
    t->shield = old;
}

int task_cancelled_now(urt_task *t)
{
    /* A cancelled task that ignores -ECANCELED and calls again would spin
     * its worker's core: after a few such calls each one naps first. */
    if (t->cancel_fast < CANCEL_FAST_MAX)
        t->cancel_fast++;
    else if (!t->in_bip && urt__cur_worker())
        nap(t, NAP_NS);
    return -ECANCELED;
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
    ring_op_start(&w->ring, op, t);
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
    len = io_len(len);
    IO_PROLOGUE(recv(fd, buf, len, flags));
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    return op_wait_ex(t, &op, sqe, "recv", fd, true);
}

ssize_t urt_send(int fd, const void *buf, size_t len, int flags)
{
    if (!buf && len)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(send(fd, buf, len, flags | MSG_NOSIGNAL));
    io_uring_prep_send(sqe, fd, buf, len, flags | MSG_NOSIGNAL);
    return op_wait_ex(t, &op, sqe, "send", fd, true);
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(off < 0 ? read(fd, buf, len) : pread(fd, buf, len, off));
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, (uint64_t)off);
    return op_wait_ex(t, &op, sqe, "read", fd, true);
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(off < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, off));
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, (uint64_t)off);
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
    urt_worker *w = urt__cur_worker();
    if (!t || t->in_bip || !w || urt__in_hook())
        return close(fd) < 0 ? -errno : 0;
    /* End every op on fd on every ring first (a recv pending on a closed
     * socket never completes, and the fd number must not be reused under
     * one), then close; both even in a cancelled task. */
    bool old = t->shield;
    t->shield = true;
    fdt_close_wait(w, t, fd);
    int r;
    struct io_uring_sqe *sqe = op_sqe(t, false);
    if (sqe) {
        ring_op op;
        io_uring_prep_close(sqe, fd);
        r = op_wait_ex(t, &op, sqe, "close", -1, false);
    } else {
        r = close(fd) < 0 ? -errno : 0;   /* no SQE: the fd is consumed all the same */
    }
    t->shield = old;
    return r;
}

/* Sleep until deadline (absolute urt__now time): never early. */
static int sleep_until(urt_task *t, uint64_t deadline)
{
    if (deadline > (uint64_t)INT64_MAX)
        deadline = INT64_MAX;   /* about 292 years of uptime: until cancelled */
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

int urt_sleep(uint64_t ns)
{
    int err_ = 0;
    urt_task *t = io_task(&err_);
    if (!t) {
        if (err_ == 1) {
            if (ns > (uint64_t)INT64_MAX)
                ns = INT64_MAX;
            struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u), .tv_nsec = (long)(ns % 1000000000u)};
            while (clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR)
                ;
            return 0;
        }
        return err_;
    }
    /* an absolute deadline on CLOCK_MONOTONIC: never early; now + ns saturates */
    uint64_t now = urt__now();
    return sleep_until(t, ns > UINT64_MAX - now ? UINT64_MAX : now + ns);
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
