/*
 * sock.c - readiness, sockets, datagrams and zero-copy transfers:
 * urt_poll, urt_socket, urt_recvfrom / urt_sendto, urt_recvmsg /
 * urt_sendmsg, urt_splice and urt_sendfile.
 *
 * The ring path. Each call is one op on the calling worker's ring through
 * op.c (time bounds, cancellation, fd tracking for urt_close), with the
 * opcode named next to it:
 *   urt_poll        IORING_OP_POLL_ADD (one-shot): the CQE's result is the
 *                   revents mask
 *   urt_socket      IORING_OP_SOCKET (Linux 5.19+)
 *   urt_recvmsg     IORING_OP_RECVMSG; urt_recvfrom is a recvmsg with a
 *                   msghdr and an iovec in its own frame (or on the heap,
 *                   so that the wait may hibernate, see hibernate.c), which
 *                   the kernel reads and writes while the op is in flight:
 *                   they live until op_wait returns
 *   urt_sendmsg     IORING_OP_SENDMSG (MSG_NOSIGNAL added, as urt_send);
 *                   urt_sendto likewise
 *   urt_splice      IORING_OP_SPLICE
 *   urt_sendfile    IORING_OP_SPLICE twice per chunk: file -> pipe, then
 *                   pipe -> out_fd until the pipe is empty, one after the
 *                   other (not linked: the second length is the first
 *                   result), each pipe -> out_fd after a POLLOUT wait.
 *                   The pipe comes from a small per-worker cache (made on
 *                   first use, closed when the worker exits). A
 *                   pipe that still holds bytes after an error is closed,
 *                   never reused, and with off -1 the file position is moved
 *                   back by what it held, so the position is advanced by
 *                   exactly the bytes sent, as sendfile(2) does.
 *
 * Waits that a SPLICE op cannot end. The kernel runs a SPLICE op on one of
 * its io-wq threads, blocking; measured on 6.18, a splice that waits there
 * (an empty pipe or socket to read, no room to write) is ended neither by
 * its linked timeout nor by ASYNC_CANCEL. So urt_splice first waits for
 * fd_in to be readable and fd_out writable with POLL_ADD (ended by bounds,
 * cancel and urt_close like any op; a regular file is always ready), and
 * urt_sendfile waits for POLLOUT before each pipe -> out_fd splice and
 * moves at most a quarter of the socket's send buffer in one (POLLOUT
 * means a third is free), so the splice seldom has to wait. One that
 * still does (another writer took the room) ends when the peer reads or
 * goes away, not at a bound.
 *
 * Fallbacks, where the ring lacks the opcode (probed once per ring;
 * URT_RING_NO_OPS forces them):
 *   - socket: socket(2) in place (it never blocks);
 *   - recvmsg / sendmsg (and recvfrom / sendto): the syscall with
 *     MSG_DONTWAIT in place; when it says EAGAIN (and the caller did not
 *     pass MSG_DONTWAIT), wait for readiness as urt_poll does, then again;
 *   - poll (and so the readiness waits above): poll(2) with no timeout in
 *     place; if nothing is ready, ppoll(2) on a blocking-pool thread
 *     (urt_block_in_place) in slices of SLICE_NS, so the task's deadline,
 *     op timeout and cancellation still end the wait (within a slice);
 *   - splice and sendfile: the same readiness waits as on the ring path,
 *     then splice(2) / sendfile(2) on a blocking-pool thread
 *     (urt_block_in_place); a sendfile moves at most what out_fd has room
 *     for per call (the caller loops, as with sendfile(2)). A syscall that
 *     still has to wait there ends when it returns, not at a bound.
 * Every path returns the same results as the syscall, with -errno.
 * Inside urt_block_in_place all of them are the plain blocking syscalls.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "runtime/op.h"
#include "runtime/time.h"

#define POLL_EVENTS (POLLIN | POLLOUT | POLLPRI | POLLRDHUP | POLLERR | POLLHUP)
#define SLICE_NS    (10ull * 1000 * 1000)   /* a fallback ppoll looks at cancel and bounds this often */
#define SPLICE_OK   (SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT)
#define PIPES_MAX   4                       /* idle sendfile pipes a worker keeps */
#define PIPE_BYTES  (1 << 20)               /* asked for; the kernel may give less */

#define SOCK_FALLBACK 2   /* sock_task's *err: the ring lacks the opcode */

/* The current task and how a call with `opcode` goes: *err 0 (a ring op),
 * SOCK_FALLBACK (the ring lacks the opcode: the fallback, in this task), or
 * with NULL, IO_PLAIN (inside block_in_place: the plain syscall) or -errno. */
static urt_task *sock_task(unsigned opcode, int *err)
{
    *err = 0;
    urt_task *t = io_task(err);
    if (t && !op_have(opcode))
        *err = SOCK_FALLBACK;
    return t;
}

static ssize_t sys_ret(ssize_t r) { return r < 0 ? -errno : r; }

/* ---- readiness ---------------------------------------------------------------------------- */

/* poll(2)'s answer as urt_poll's: revents, -EBADF for POLLNVAL, or -errno. */
static int poll_result(int r, short revents)
{
    if (r < 0)
        return -errno;
    if (revents & POLLNVAL)
        return -EBADF;
    return revents;
}

static int poll_ring(urt_task *t, int fd, short events, const char *what)
{
    struct io_uring_sqe *sqe = op_sqe(t, true);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_poll_add(sqe, fd, (unsigned)(unsigned short)events);
    return op_wait_mem(t, &t->op, sqe, what, fd, NULL, 0);   /* no memory: it may hibernate */
}

typedef struct poll_job {
    urt_task *t;
    uint64_t bound;               /* absolute urt__now ns, 0: none */
    struct pollfd p;
    int res;
} poll_job;

/* On a blocking-pool thread: ppoll in slices until ready, the bound, or a
 * cancel. */
static void *poll_sliced(void *arg)
{
    poll_job *j = arg;
    for (;;) {
        if (task_cancel_pending(j->t)) {
            j->res = -ECANCELED;
            return NULL;
        }
        uint64_t now = urt__now(), slice = SLICE_NS;
        if (j->bound) {
            if (now >= j->bound) {
                j->res = -ETIMEDOUT;
                return NULL;
            }
            if (j->bound - now < slice)
                slice = j->bound - now;
        }
        struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)slice};
        j->p.revents = 0;
        int r = ppoll(&j->p, 1, &ts, NULL);
        if (r < 0 && errno == EINTR)
            continue;
        if (r != 0) {
            j->res = poll_result(r, j->p.revents);
            return NULL;
        }
    }
}

static int poll_fallback(urt_task *t, int fd, short events)
{
    poll_job j = {.t = t, .bound = task_bound(t, true), .p = {.fd = fd, .events = events}};
    int r = poll(&j.p, 1, 0);
    if (r != 0)
        return poll_result(r, j.p.revents);
    int e = urt_block_in_place(poll_sliced, &j, NULL);
    return e ? e : j.res;
}

/* Wait until fd has one of events (t from io_task): on the ring where it
 * has POLL_ADD, else poll(2) as the fallback says. `what` names the wait in
 * task dumps. */
static int wait_ready(urt_task *t, int fd, short events, const char *what)
{
    return op_have(IORING_OP_POLL_ADD) ? poll_ring(t, fd, events, what) : poll_fallback(t, fd, events);
}

int urt_poll(int fd, short events)
{
    if (fd < 0)
        return -EBADF;
    if (!events || (events & ~POLL_EVENTS))
        return -EINVAL;
    int err = 0;
    urt_task *t = io_task(&err);
    if (!t) {
        if (err != IO_PLAIN)
            return err;
        struct pollfd p = {.fd = fd, .events = events};
        int r;
        do
            r = poll(&p, 1, -1);
        while (r < 0 && errno == EINTR);
        return poll_result(r, p.revents);
    }
    return wait_ready(t, fd, events, "poll");
}

/* ---- sockets ------------------------------------------------------------------------------ */

int urt_socket(int domain, int type, int protocol)
{
    int err;
    urt_task *t = sock_task(IORING_OP_SOCKET, &err);
    if (err)
        return err == IO_PLAIN || err == SOCK_FALLBACK ? (int)sys_ret(socket(domain, type, protocol)) : err;
    struct io_uring_sqe *sqe = op_sqe(t, true);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_socket(sqe, domain, type, protocol, 0);
    return op_wait(t, &t->op, sqe, "socket", -1);
}

/* -EBADF / -EINVAL for what no recvmsg/sendmsg could take, else 0. */
static int msg_check(int fd, const struct msghdr *msg)
{
    if (fd < 0)
        return -EBADF;
    if (!msg || msg->msg_iovlen > IOV_MAX || (msg->msg_iovlen && !msg->msg_iov) ||
        (msg->msg_controllen && !msg->msg_control))
        return -EINVAL;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        if (!msg->msg_iov[i].iov_base && msg->msg_iov[i].iov_len)
            return -EINVAL;
    return 0;
}

/* The fallback of recvmsg/sendmsg: the syscall without blocking; on EAGAIN
 * (unless the caller asked for MSG_DONTWAIT) a readiness wait, then again.
 * Like the ring op, it waits on an O_NONBLOCK socket too (the kernel's
 * RECVMSG/SENDMSG ops do, on the kernels measured). */
static ssize_t msg_fallback(urt_task *t, int fd, struct msghdr *msg, int flags, bool send)
{
    bool wait = !(flags & MSG_DONTWAIT);
    for (;;) {
        ssize_t r = send ? sendmsg(fd, msg, flags | MSG_DONTWAIT) : recvmsg(fd, msg, flags | MSG_DONTWAIT);
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || !wait)
            return -errno;
        int p = wait_ready(t, fd, send ? POLLOUT : POLLIN, "poll");
        if (p < 0)
            return p;
    }
}

/* Does any memory of msg (the msghdr itself, which a recvmsg's completion
 * writes; its iovec array, buffers, name and control) lie in t's stack? */
static bool msg_on_stack(urt_task *t, const struct msghdr *msg)
{
    if (task_stack_holds(t, msg, sizeof(*msg)) || task_stack_holds(t, msg->msg_name, msg->msg_namelen) ||
        task_stack_holds(t, msg->msg_control, msg->msg_controllen) ||
        task_stack_holds(t, msg->msg_iov, msg->msg_iovlen * sizeof(struct iovec)))
        return true;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        if (task_stack_holds(t, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len))
            return true;
    return false;
}

/* recvmsg or sendmsg (MSG_NOSIGNAL added), on whichever path applies. */
static ssize_t msg_call(int fd, struct msghdr *msg, int flags, bool send)
{
    int e = msg_check(fd, msg);
    if (e)
        return e;
    if (send)
        flags |= MSG_NOSIGNAL;
    int err;
    urt_task *t = sock_task(send ? IORING_OP_SENDMSG : IORING_OP_RECVMSG, &err);
    if (err == IO_PLAIN)
        return sys_ret(send ? sendmsg(fd, msg, flags) : recvmsg(fd, msg, flags));
    if (err == SOCK_FALLBACK)
        return msg_fallback(t, fd, msg, flags, send);
    if (err)
        return err;
    struct io_uring_sqe *sqe = op_sqe(t, true);
    if (!sqe)
        return -EBUSY;
    if (send)
        io_uring_prep_sendmsg(sqe, fd, msg, (unsigned)flags);
    else
        io_uring_prep_recvmsg(sqe, fd, msg, (unsigned)flags);
    unsigned f = OP_TIMED | (msg_on_stack(t, msg) ? 0 : OP_HIB);
    return op_wait_ex(t, &t->op, sqe, send ? "sendmsg" : "recvmsg", fd, f);
}

ssize_t urt_recvmsg(int fd, struct msghdr *msg, int flags) { return msg_call(fd, msg, flags, false); }

/* The kernel only reads a sendmsg's msghdr: the cast drops const for the shared path. */
ssize_t urt_sendmsg(int fd, const struct msghdr *msg, int flags) { return msg_call(fd, (struct msghdr *)msg, flags, true); }

typedef struct from_msg {
    struct msghdr m;
    struct iovec iov;
} from_msg;

ssize_t urt_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *srclen)
{
    if ((!buf && len) || (src && !srclen))
        return -EINVAL;
    /* The kernel reads the iovec and writes the msghdr back while the op is
     * in flight: in this frame until urt_recvmsg returns. Where the caller's
     * buffer and address are off the stack and the task may hibernate, they
     * go on the heap instead, so the wait may hibernate too. */
    from_msg here, *fm = &here;
    urt_task *t = urt__cur_task();
    if (t && urt__cur_worker() && hib_allowed(t) && !task_stack_holds(t, buf, len) &&
        !(src && task_stack_holds(t, src, *srclen))) {
        fm = malloc(sizeof(*fm));
        if (!fm)
            fm = &here;   /* it works all the same, without hibernating */
    }
    fm->iov = (struct iovec){.iov_base = buf, .iov_len = io_len(len)};
    fm->m = (struct msghdr){.msg_name = src, .msg_namelen = src ? *srclen : 0, .msg_iov = &fm->iov, .msg_iovlen = 1};
    ssize_t r = urt_recvmsg(fd, &fm->m, flags);
    if (r >= 0 && src)
        *srclen = fm->m.msg_namelen;   /* the address's full length, as recvfrom(2) says it */
    if (fm != &here)
        free(fm);
    return r;
}

ssize_t urt_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst, socklen_t dstlen)
{
    if (!buf && len)
        return -EINVAL;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = io_len(len)};
    struct msghdr m = {.msg_name = (void *)dst, .msg_namelen = dst ? dstlen : 0, .msg_iov = &iov, .msg_iovlen = 1};
    return urt_sendmsg(fd, &m, flags);
}

/* ---- splice and sendfile ------------------------------------------------------------------ */

/* One SPLICE op; fd_in and fd_out are both counted for urt_close. */
static ssize_t splice_ring(urt_task *t, int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len,
                           unsigned flags, const char *what)
{
    struct io_uring_sqe *sqe = op_sqe(t, true);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_splice(sqe, fd_in, off_in, fd_out, off_out, (unsigned)len, flags);
    urt_worker *w = urt__cur_worker();   /* the op pins the task here until op_wait returns */
    bool tracked = fdt_inc(w, fd_in);
    int r = op_wait(t, &t->op, sqe, what, fd_out);
    if (tracked)
        fdt_dec(w, fd_in);
    return r;
}

typedef struct splice_args {
    int fd_in, fd_out;
    int64_t off_in, off_out;
    size_t len;
    unsigned flags;
    bool sendfile;
    ssize_t res;
} splice_args;

/* The plain syscall: splice(2), or sendfile(2) (fd_out <- fd_in at off_in). */
static void *splice_plain(void *arg)
{
    splice_args *a = arg;
    loff_t oi = a->off_in, oo = a->off_out;
    if (a->sendfile)
        a->res = sys_ret(sendfile(a->fd_out, a->fd_in, a->off_in < 0 ? NULL : &oi, a->len));
    else
        a->res = sys_ret(splice(a->fd_in, a->off_in < 0 ? NULL : &oi, a->fd_out, a->off_out < 0 ? NULL : &oo,
                                a->len, a->flags));
    return NULL;
}

/* Inside block_in_place: in place; where the ring lacks SPLICE: on a
 * blocking-pool thread. */
static ssize_t splice_sys(int err, splice_args *a)
{
    if (err == IO_PLAIN) {
        splice_plain(a);
        return a->res;
    }
    if (err != SOCK_FALLBACK)
        return err;
    int e = urt_block_in_place(splice_plain, a, NULL);
    return e ? e : a->res;
}

ssize_t urt_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len, unsigned flags)
{
    if (fd_in < 0 || fd_out < 0)
        return -EBADF;
    if (off_in < -1 || off_out < -1 || (flags & ~(unsigned)SPLICE_OK))
        return -EINVAL;
    len = io_len(len);
    splice_args a = {.fd_in = fd_in, .fd_out = fd_out, .off_in = off_in, .off_out = off_out, .len = len,
                     .flags = flags};
    int err;
    urt_task *t = sock_task(IORING_OP_SPLICE, &err);
    if (err && err != SOCK_FALLBACK)
        return splice_sys(err, &a);
    /* readiness first: the SPLICE op itself, once it waits in the kernel, is
     * not ended by a cancel or a linked timeout (see the top of the file);
     * nor is the fallback's splice(2) */
    if (!(flags & SPLICE_F_NONBLOCK)) {
        int r = wait_ready(t, fd_in, POLLIN, "splice");
        if (r >= 0)
            r = wait_ready(t, fd_out, POLLOUT, "splice");
        if (r < 0)
            return r;
    }
    return err ? splice_sys(err, &a) : splice_ring(t, fd_in, off_in, fd_out, off_out, len, flags, "splice");
}

/* How much one splice into out_fd may move so that it seldom waits in the
 * kernel, where no bound or cancel would end the wait: a socket that says
 * POLLOUT has room for at least a third of its send buffer (which grows as
 * TCP tunes it: ask each time), so a quarter of it. `dflt` for an fd that
 * is not a socket. */
static size_t send_room(int out_fd, size_t dflt)
{
    int sndbuf = 0;
    socklen_t sl = sizeof(sndbuf);
    if (getsockopt(out_fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) == 0 && sndbuf >= 16384)
        return (size_t)sndbuf / 4 < dflt ? (size_t)sndbuf / 4 : dflt;
    return dflt;
}

/* A worker's idle sendfile pipes (owner only). */
struct sock_pipes {
    unsigned n;
    struct { int r, w; size_t cap; } p[PIPES_MAX];
};

static int pipe_get(urt_worker *w, int *r, int *wr, size_t *cap)
{
    struct sock_pipes *c = w->pipes;
    if (c && c->n) {
        c->n--;
        *r = c->p[c->n].r;
        *wr = c->p[c->n].w;
        *cap = c->p[c->n].cap;
        return 0;
    }
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -errno;
    int sz = fcntl(fds[1], F_SETPIPE_SZ, PIPE_BYTES);
    if (sz < 0)
        sz = fcntl(fds[1], F_GETPIPE_SZ);
    *r = fds[0];
    *wr = fds[1];
    *cap = sz > 0 ? (size_t)sz : 65536;
    return 0;
}

/* Back to the calling worker's cache when it is empty (clean), else closed. */
static void pipe_put(int r, int wr, size_t cap, bool clean)
{
    urt_worker *w = urt__cur_worker();
    if (clean && !w->pipes)
        w->pipes = calloc(1, sizeof(*w->pipes));
    struct sock_pipes *c = w->pipes;
    if (clean && c && c->n < PIPES_MAX) {
        c->p[c->n].r = r;
        c->p[c->n].w = wr;
        c->p[c->n].cap = cap;
        c->n++;
        return;
    }
    close(r);
    close(wr);
}

void sock_worker_exit(urt_worker *w)
{
    struct sock_pipes *c = w->pipes;
    if (!c)
        return;
    for (unsigned i = 0; i < c->n; i++) {
        close(c->p[i].r);
        close(c->p[i].w);
    }
    free(c);
    w->pipes = NULL;
}

ssize_t urt_sendfile(int out_fd, int in_fd, int64_t off, size_t len)
{
    if (out_fd < 0 || in_fd < 0)
        return -EBADF;
    if (off < -1)
        return -EINVAL;
    len = io_len(len);
    splice_args a = {.fd_in = in_fd, .fd_out = out_fd, .off_in = off, .len = len, .sendfile = true};
    int err;
    urt_task *t = sock_task(IORING_OP_SPLICE, &err);
    if (err && err != SOCK_FALLBACK)
        return splice_sys(err, &a);
    if (err) {
        /* the fallback: one sendfile(2) on the pool of what out_fd has room for */
        int r = wait_ready(t, out_fd, POLLOUT, "sendfile");
        if (r < 0)
            return r;
        a.len = send_room(out_fd, len);
        return splice_sys(err, &a);
    }
    int pr = -1, pw = -1;
    size_t cap = 0;
    int e = pipe_get(urt__cur_worker(), &pr, &pw, &cap);
    if (e)
        return e;
    size_t sent = 0;      /* bytes that reached out_fd */
    ssize_t res = 0;      /* the error that ended the loop, 0 at the end of the file */
    size_t held = 0;      /* bytes left in the pipe */
    while (sent < len) {
        size_t chunk = len - sent < cap ? len - sent : cap;
        ssize_t n = splice_ring(t, in_fd, off < 0 ? -1 : off + (int64_t)sent, pw, -1, chunk, SPLICE_F_MOVE,
                                "sendfile");
        if (n <= 0) {
            res = n;
            break;
        }
        size_t room = send_room(out_fd, cap);
        size_t left = (size_t)n;
        while (left) {
            ssize_t m = wait_ready(t, out_fd, POLLOUT, "sendfile");   /* see urt_splice */
            size_t step = left < room ? left : room;
            if (m >= 0)
                m = splice_ring(t, pr, -1, out_fd, -1, step, SPLICE_F_MOVE | (sent + step < len ? SPLICE_F_MORE : 0),
                                "sendfile");
            if (m <= 0) {
                res = m ? m : -EPIPE;
                break;
            }
            left -= (size_t)m;
            sent += (size_t)m;
        }
        if (left) {
            /* how much really stayed in the pipe (an op that raced a cancel may have moved some) */
            int q = 0;
            held = ioctl(pr, FIONREAD, &q) == 0 && q >= 0 ? (size_t)q : left;
            if (held < left)
                sent += left - held;
            break;
        }
    }
    if (held && off < 0)
        lseek(in_fd, -(off_t)held, SEEK_CUR);   /* the position advances by the bytes sent only */
    pipe_put(pr, pw, cap, held == 0);
    return sent ? (ssize_t)sent : res;
}
