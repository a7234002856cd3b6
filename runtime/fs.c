/*
 * fs.c - file operations and vectored I/O: readv, writev, openat, statx,
 * fsync, fallocate, ftruncate, unlinkat, renameat, mkdirat.
 *
 * Each call fills one fs_args (what to do, with which arguments) and hands
 * it to fs_run, which takes one of three paths:
 *   1. ring: the calling worker's ring has the opcode (op_have): one SQE,
 *      prepared by fs_prep, submitted and waited for by op.c's op_wait, so
 *      urt_op_timeout, urt_deadline and cancellation end it as they end a
 *      urt_recv (a linked timeout, an ASYNC_CANCEL; a result that raced the
 *      cancel is returned: an fd opened anyway is the caller's, not leaked).
 *      One limit, measured on Linux 6.18: an op that blocks in a kernel
 *      worker thread (an O_CREAT open of a FIFO) is interrupted by a
 *      cancel (op_wait turns the -ERESTARTSYS it then gives into
 *      -ECANCELED), but its linked timeout never fired, so a time bound
 *      does not end it.
 *      The kernel may read the path, the iovec array and the statx buffer
 *      after submission (in its worker threads): they live in the caller's
 *      frame, which stays until op_wait returns.
 *   2. fallback: the ring lacks the opcode (an old kernel, or
 *      URT_RING_NO_OPS): fs_plain, the plain syscall, runs through
 *      urt_block_in_place, so a syscall that blocks on the disk blocks a
 *      pool thread, never the worker. The results are the syscall's, which
 *      are the op's. A time bound or cancel is seen before the syscall
 *      starts; a syscall cannot be cut short from outside, so a readv or
 *      writev at the current position (a pipe, a socket: what can wait
 *      indefinitely) first waits for readiness with poll(2) in 10 ms
 *      slices, checking the bound and the cancel between them; an open
 *      that blocks (O_CREAT on a FIFO) waits for its end. An openat
 *      copies the ring op's non-blocking first try (fs_openat_as_ring).
 *   3. plain: inside urt_block_in_place the call is fs_plain itself.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "runtime/op.h"
#include "runtime/time.h"

/* liburing 2.3's header stops at IORING_OP_SENDMSG_ZC (48); the kernel's
 * numbers are fixed. FTRUNCATE came with Linux 6.9. (A newer header names
 * it in an enum, which #ifndef cannot see; the macro then stands for the
 * same number.) */
#ifndef IORING_OP_FTRUNCATE
#define IORING_OP_FTRUNCATE 55
#endif

/* liburing 2.3 has no io_uring_prep_ftruncate: the kernel takes the fd and
 * the new length in off, every other field zero. */
static inline void fs_prep_ftruncate(struct io_uring_sqe *sqe, int fd, int64_t len)
{
    io_uring_prep_rw(IORING_OP_FTRUNCATE, sqe, fd, NULL, 0, (uint64_t)len);
}

#define READY_SLICE_MS 10   /* fallback readiness wait: how often it looks at the bound and the cancel */

typedef struct fs_args {
    unsigned opcode;          /* IORING_OP_*: which call */
    const char *what;         /* for the task dump */
    int fd;                   /* the fd, or the (old) dirfd */
    int fd2;                  /* renameat: the new dirfd */
    const char *path, *path2; /* renameat: old, new */
    const struct iovec *iov;
    int iovcnt;
    int flags;                /* open/statx/unlink flags, fallocate mode */
    unsigned uflags;          /* statx mask, rename flags, fsync flags */
    mode_t mode;
    int64_t off, len;
    struct statx *stx;
    urt_task *t;              /* fallback: the caller, whose bound and cancel it watches */
    uint64_t bound;           /* fallback: absolute urt__now ns, 0: none */
} fs_args;

/* The plain syscall; its result or -errno. */
static long fs_plain(const fs_args *a)
{
    long r;
    switch (a->opcode) {
    case IORING_OP_READV:
        r = a->off < 0 ? readv(a->fd, a->iov, a->iovcnt) : preadv(a->fd, a->iov, a->iovcnt, a->off);
        break;
    case IORING_OP_WRITEV:
        r = a->off < 0 ? writev(a->fd, a->iov, a->iovcnt) : pwritev(a->fd, a->iov, a->iovcnt, a->off);
        break;
    case IORING_OP_OPENAT:
        r = openat(a->fd, a->path, a->flags, a->mode);
        break;
    case IORING_OP_STATX:
        r = statx(a->fd, a->path, a->flags, a->uflags, a->stx);
        break;
    case IORING_OP_FSYNC:
        r = (a->uflags & URT_FSYNC_DATASYNC) ? fdatasync(a->fd) : fsync(a->fd);
        break;
    case IORING_OP_FALLOCATE:
        r = fallocate(a->fd, a->flags, a->off, a->len);
        break;
    case IORING_OP_FTRUNCATE:
        r = ftruncate(a->fd, a->len);
        break;
    case IORING_OP_UNLINKAT:
        r = unlinkat(a->fd, a->path, a->flags);
        break;
    case IORING_OP_RENAMEAT:
        r = renameat2(a->fd, a->path, a->fd2, a->path2, a->uflags);
        break;
    case IORING_OP_MKDIRAT:
        r = mkdirat(a->fd, a->path, a->mode);
        break;
    default:
        return -EINVAL;
    }
    return r < 0 ? -errno : r;
}

static void fs_prep(struct io_uring_sqe *sqe, const fs_args *a)
{
    switch (a->opcode) {
    case IORING_OP_READV:
        io_uring_prep_readv(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)a->off);
        break;
    case IORING_OP_WRITEV:
        io_uring_prep_writev(sqe, a->fd, a->iov, (unsigned)a->iovcnt, (uint64_t)a->off);
        break;
    case IORING_OP_OPENAT:
        io_uring_prep_openat(sqe, a->fd, a->path, a->flags, a->mode);
        break;
    case IORING_OP_STATX:
        io_uring_prep_statx(sqe, a->fd, a->path, a->flags, a->uflags, a->stx);
        break;
    case IORING_OP_FSYNC:
        io_uring_prep_fsync(sqe, a->fd, (a->uflags & URT_FSYNC_DATASYNC) ? IORING_FSYNC_DATASYNC : 0);
        break;
    case IORING_OP_FALLOCATE:
        io_uring_prep_fallocate(sqe, a->fd, a->flags, (off_t)a->off, (off_t)a->len);
        break;
    case IORING_OP_FTRUNCATE:
        fs_prep_ftruncate(sqe, a->fd, a->len);
        break;
    case IORING_OP_UNLINKAT:
        io_uring_prep_unlinkat(sqe, a->fd, a->path, a->flags);
        break;
    case IORING_OP_RENAMEAT:
        io_uring_prep_renameat(sqe, a->fd, a->path, a->fd2, a->path2, a->uflags);
        break;
    case IORING_OP_MKDIRAT:
        io_uring_prep_mkdirat(sqe, a->fd, a->path, a->mode);
        break;
    }
}

/* Fallback, on the pool thread: wait until a stream fd can be read or
 * written (what the ring op waits for inside the kernel), watching the
 * task's bound and cancel. 0: go on with the syscall (also when poll fails:
 * the syscall then reports the fd's trouble). */
static int fs_wait_ready(const fs_args *a)
{
    int fl = fcntl(a->fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK))
        return 0;   /* a non-blocking fd says -EAGAIN at once, as the op does */
    struct pollfd p = {.fd = a->fd, .events = a->opcode == IORING_OP_READV ? POLLIN : POLLOUT};
    for (;;) {
        if (task_cancel_pending(a->t))
            return -ECANCELED;
        int ms = READY_SLICE_MS;
        if (a->bound) {
            uint64_t now = urt__now();
            if (now >= a->bound)
                return -ETIMEDOUT;
            uint64_t left = (a->bound - now + 999999u) / 1000000u;
            if (left < (uint64_t)ms)
                ms = (int)left;
        }
        int r = poll(&p, 1, ms);
        if (r > 0 || (r < 0 && errno != EINTR))
            return 0;
    }
}

/* Fallback openat, with the ring op's result. The kernel's OPENAT first
 * tries without blocking: with O_NONBLOCK added (taken off the file again
 * once it is open) and only cached path lookups, and only on -EAGAIN
 * again in a worker thread, blocking; O_CREAT, O_TRUNC and O_TMPFILE opens
 * go to the worker thread at once. So a FIFO opens there as with
 * O_NONBLOCK (no wait for the other end), and the same is done here. */
static long fs_openat_as_ring(const fs_args *a)
{
    if (a->flags & (O_CREAT | O_TRUNC | O_TMPFILE | O_NONBLOCK))
        return fs_plain(a);
    int fd = openat(a->fd, a->path, a->flags | O_NONBLOCK, a->mode);
    if (fd < 0)
        return errno == EAGAIN ? fs_plain(a) : -errno;
    int fl = fcntl(fd, F_GETFL);
    if (fl >= 0)
        fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
    return fd;
}

static void *fs_fallback_fn(void *arg)
{
    fs_args *a = arg;
    long r = 0;
    if ((a->opcode == IORING_OP_READV || a->opcode == IORING_OP_WRITEV) && a->off < 0)
        r = fs_wait_ready(a);
    if (r == 0)
        r = a->opcode == IORING_OP_OPENAT ? fs_openat_as_ring(a) : fs_plain(a);
    return (void *)(intptr_t)r;
}

static long fs_run(fs_args *a)
{
    int err = 0;
    urt_task *t = io_task(&err);
    if (!t)
        return err == IO_PLAIN ? fs_plain(a) : err;
    if (!op_have(a->opcode)) {
        a->t = t;
        a->bound = task_bound(t, true);
        void *r = NULL;
        err = urt_block_in_place(fs_fallback_fn, a, &r);
        return err < 0 ? err : (long)(intptr_t)r;
    }
    struct io_uring_sqe *sqe = op_sqe(t, true);
    if (!sqe)
        return -EBUSY;
    fs_prep(sqe, a);
    return op_wait(t, &t->op, sqe, a->what, a->fd);
}

/* ---- the calls: check the arguments, then fs_run -------------------------------- */

static bool bad_dirfd(int dirfd) { return dirfd < 0 && dirfd != AT_FDCWD; }

/* The path calls: their checks (a path: -EINVAL; a dirfd: -EBADF, for
 * renameat both pairs), then fs_run. */
static long path_call(fs_args *a)
{
    if (!a->path || (a->opcode == IORING_OP_RENAMEAT && !a->path2))
        return -EINVAL;
    if (bad_dirfd(a->fd) || (a->opcode == IORING_OP_RENAMEAT && bad_dirfd(a->fd2)))
        return -EBADF;
    return fs_run(a);
}

static ssize_t fs_rw(unsigned opcode, const char *what, int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
    if (fd < 0)
        return -EBADF;
    if (!iov || iovcnt <= 0 || iovcnt > IOV_MAX || off < -1)
        return -EINVAL;
    fs_args a = {.opcode = opcode, .what = what, .fd = fd, .iov = iov, .iovcnt = iovcnt, .off = off};
    return fs_run(&a);
}

ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
    return fs_rw(IORING_OP_READV, "readv", fd, iov, iovcnt, off);
}

ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
    return fs_rw(IORING_OP_WRITEV, "writev", fd, iov, iovcnt, off);
}

int urt_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    fs_args a = {.opcode = IORING_OP_OPENAT, .what = "openat", .fd = dirfd, .path = path, .flags = flags,
                 .mode = mode};
    return (int)path_call(&a);
}

int urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
    if (!out)
        return -EINVAL;
    fs_args a = {.opcode = IORING_OP_STATX, .what = "statx", .fd = dirfd, .path = path, .flags = flags,
                 .uflags = mask, .stx = out};
    return (int)path_call(&a);
}

int urt_fsync(int fd, unsigned flags)
{
    if (fd < 0)
        return -EBADF;
    if (flags & ~URT_FSYNC_DATASYNC)
        return -EINVAL;
    fs_args a = {.opcode = IORING_OP_FSYNC, .what = "fsync", .fd = fd, .uflags = flags};
    return (int)fs_run(&a);
}

int urt_fallocate(int fd, int mode, int64_t off, int64_t len)
{
    if (fd < 0)
        return -EBADF;
    if (off < 0 || len < 0)
        return -EINVAL;
    fs_args a = {.opcode = IORING_OP_FALLOCATE, .what = "fallocate", .fd = fd, .flags = mode, .off = off,
                 .len = len};
    return (int)fs_run(&a);
}

int urt_ftruncate(int fd, int64_t len)
{
    if (fd < 0)
        return -EBADF;
    if (len < 0)
        return -EINVAL;
    fs_args a = {.opcode = IORING_OP_FTRUNCATE, .what = "ftruncate", .fd = fd, .len = len};
    return (int)fs_run(&a);
}

int urt_unlinkat(int dirfd, const char *path, int flags)
{
    fs_args a = {.opcode = IORING_OP_UNLINKAT, .what = "unlinkat", .fd = dirfd, .path = path, .flags = flags};
    return (int)path_call(&a);
}

int urt_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags)
{
    fs_args a = {.opcode = IORING_OP_RENAMEAT, .what = "renameat", .fd = olddirfd, .fd2 = newdirfd,
                 .path = oldpath, .path2 = newpath, .uflags = flags};
    return (int)path_call(&a);
}

int urt_mkdirat(int dirfd, const char *path, mode_t mode)
{
    fs_args a = {.opcode = IORING_OP_MKDIRAT, .what = "mkdirat", .fd = dirfd, .path = path, .mode = mode};
    return (int)path_call(&a);
}
