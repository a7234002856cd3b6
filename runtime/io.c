/*
 * io.c - the basic I/O calls (recv, send, read, write, accept, connect,
 * shutdown, close): one SQE each on the calling task's worker ring, through
 * the shared op path of op.c (time bounds, cancellation, fd tracking).
 * Lengths above IO_MAX (what the kernel takes in one call) are clamped, the
 * same way in every call and on every path.
 * Inside urt_block_in_place the calls are plain blocking syscalls.
 */
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/op.h"

ssize_t urt_recv(int fd, void *buf, size_t len, int flags)
{
    if (!buf && len)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(recv(fd, buf, len, flags));
    io_uring_prep_recv(sqe, fd, buf, len, flags);
    return op_wait_mem(t, op, sqe, "recv", fd, buf, len);   /* a heap buffer: it may hibernate */
}

ssize_t urt_send(int fd, const void *buf, size_t len, int flags)
{
    if (!buf && len)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(send(fd, buf, len, flags | MSG_NOSIGNAL));
    io_uring_prep_send(sqe, fd, buf, len, flags | MSG_NOSIGNAL);
    return op_wait_mem(t, op, sqe, "send", fd, buf, len);   /* the kernel reads buf until it is sent */
}

ssize_t urt_read(int fd, void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(off < 0 ? read(fd, buf, len) : pread(fd, buf, len, off));
    io_uring_prep_read(sqe, fd, buf, (unsigned)len, (uint64_t)off);
    return op_wait_mem(t, op, sqe, "read", fd, buf, len);
}

ssize_t urt_write(int fd, const void *buf, size_t len, int64_t off)
{
    if ((!buf && len) || off < -1)
        return -EINVAL;
    len = io_len(len);
    IO_PROLOGUE(off < 0 ? write(fd, buf, len) : pwrite(fd, buf, len, off));
    io_uring_prep_write(sqe, fd, buf, (unsigned)len, (uint64_t)off);
    return op_wait_mem(t, op, sqe, "write", fd, buf, len);
}

int urt_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags)
{
    if ((addr && !len) || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
        return -EINVAL;
    IO_PROLOGUE(accept4(fd, addr, len, flags));
    io_uring_prep_accept(sqe, fd, addr, len, flags);
    /* the kernel writes *addr and *len when a connection comes */
    bool on_stack = addr && (task_stack_holds(t, addr, *len) || task_stack_holds(t, len, sizeof(*len)));
    return op_wait_ex(t, op, sqe, "accept", fd, OP_TIMED | (on_stack ? 0 : OP_HIB));
}

int urt_connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (!addr)
        return -EINVAL;
    IO_PROLOGUE(connect(fd, addr, len));
    io_uring_prep_connect(sqe, fd, addr, len);
    return op_wait(t, op, sqe, "connect", fd);
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
    bufsend_close_fd(t, fd);   /* this task's urt_buf_send on fd goes out first (time bounds and cancel apply) */
    bool old = t->shield;
    t->shield = true;
    fdt_close_wait(w, t, fd);
    int r;
    struct io_uring_sqe *sqe = op_sqe(t, false);
    if (sqe) {
        io_uring_prep_close(sqe, fd);
        r = op_wait_ex(t, &t->op, sqe, "close", -1, 0);
    } else {
        r = close(fd) < 0 ? -errno : 0;   /* no SQE: the fd is consumed all the same */
    }
    t->shield = old;
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
    return op_wait(t, op, sqe, "shutdown", fd);
}
