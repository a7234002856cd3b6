/*
 * uring-echo: a TCP echo server on raw liburing with no runtime and no
 * scheduler, as the upper bound urt is compared with.
 *
 *   uring-echo [--addr HOST:PORT] [--workers N] [--backlog N]
 *              [--flags none|coop|defer] [--fixed-files] [--bufring]
 *              [--no-bufring] [--register-ring]
 *              [--buf-size BYTES] [--buf-count N] [--stats]
 *
 * One thread per worker (default: one per CPU this process may run on), each
 * with its own ring, created on that thread, and its own listening socket
 * bound with SO_REUSEPORT. Each worker keeps one multishot accept armed on its
 * listener; each connection has at most one receive and one send in flight.
 * A worker loop is: submit what was queued and wait for one completion (one
 * io_uring_enter), then handle every completion that is there.
 *
 * Each kernel feature is a flag, so that a table can show what it is worth:
 *
 *   --flags none   ring set up with no task-run flags
 *   --flags coop   IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG:
 *                  completions run as task work when the worker enters the
 *                  kernel instead of interrupting it
 *   --flags defer  IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
 *                  IORING_SETUP_TASKRUN_FLAG: completion work is deferred
 *                  until the worker waits for completions (the default)
 *   --fixed-files  a sparse registered file table per ring; the multishot
 *                  accept installs connections straight into it and every
 *                  receive, send and close uses the fixed slot (no fd table
 *                  lookup, no file reference counting per operation)
 *   --bufring      multishot receive into a provided-buffer ring (one
 *                  receive request per connection for its whole life, the
 *                  kernel picks the buffer); on by default, --no-bufring
 *                  gives one single-shot receive per message into a 64 KiB
 *                  buffer owned by the connection
 *   --register-ring  io_uring_register_ring_fd: io_uring_enter uses the
 *                  registered ring index instead of looking the fd up
 *
 * Default: --flags defer --bufring. Every ring also gets SUBMIT_ALL and a
 * completion queue of CQ_ENTRIES. --stats prints per-worker counters at exit
 * (waits = io_uring_enter calls that waited, completions, -ENOBUFS ends,
 * receives parked for lack of buffers, cap cancels, accept back-offs).
 *
 * Provided buffers: each worker registers one ring of --buf-count buffers of
 * --buf-size bytes (default 4096 x 4 KiB). A connection queues the buffers it
 * received and sends them in order (several at once with sendmsg), giving
 * each buffer back to the ring once sent. A connection that holds BUF_CAP
 * buffers (its peer reads slower than it writes) has its receive cancelled, so
 * a peer that never reads cannot drain the shared ring; the receive is
 * re-armed when the queue has drained to BUF_CAP / 2. With 4 KiB buffers the
 * cap is 64 KiB, the same as the per-connection buffer of the other peers.
 * A receive that ends with -ENOBUFS (ring empty) is re-armed only once
 * buffers have come back; until then the connection waits on a list.
 * Memory is bounded by the pool (16 MiB per worker by default) whatever the
 * peers do; the price is that buf_count / BUF_CAP peers that never read (256
 * per worker by default) can hold every buffer of a worker, and its other
 * connections then wait for buffers until those peers read or go away.
 *
 * Back-pressure without buffer rings: a connection receives again only after
 * its previous data was sent in full, so each connection holds at most its
 * 64 KiB buffer.
 *
 * Half-close: the receive ends with 0 once the peer's FIN is read; the queued
 * data is sent and the socket closed, so our FIN follows the echoed data.
 * Resets and other errors cancel the connection's requests and close it once
 * they have completed (a socket is never closed under a pending request).
 *
 * Accept failures for lack of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM) end the multishot accept; it is re-armed after
 * ACCEPT_BACKOFF_MS by a timeout request while the open connections keep
 * being served. Errors that would repeat forever (EINVAL, EBADF, ...) are
 * fatal. With --fixed-files the table (as large as RLIMIT_NOFILE allows) must
 * never be full when an accept runs, because the kernel would drop the
 * connection it has already taken off the queue: see accept_update().
 *
 * `--addr` takes IPv4 (127.0.0.1:7777, the default) or IPv6 ([::1]:7777);
 * port 0 picks a free port. Once every worker's ring is up the server prints
 * `listening on <addr> (...)` on stdout. SIGINT or SIGTERM stops it with
 * exit status 0: the signals are blocked in every thread and every ring has a
 * poll request on one signalfd, which nobody reads, so all workers see it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192
#define PLAIN_BUF (64 * 1024)
#define BUF_CAP 16
#define SEND_IOV 16
#define BGID 0
#define ACCEPT_BACKOFF_MS 10
#define ACCEPT_RETRIES 16
#define MAX_FIXED 65536
#define MAX_WORKERS 1024
#define BATCH 256

/* user_data: a pointer with the operation in its low three bits. */
enum { OP_ACCEPT = 1, OP_RECV, OP_SEND, OP_CLOSE, OP_TIMER, OP_SIGNAL, OP_IGNORE };
#define OP_MASK 7u

enum { MODE_NONE, MODE_COOP, MODE_DEFER };

/* Accept side: a multishot accept, a single-shot one, a cancel of the
 * multishot under way, a back-off timer, or nothing. */
enum { ACC_IDLE, ACC_MULTI, ACC_SINGLE, ACC_CANCEL, ACC_TIMER };

static struct {
    int mode;
    int fixed;
    int bufring;
    int reg_ring;
    int stats;
    unsigned buf_size;
    unsigned buf_count;
    int backlog;
} opt = { MODE_DEFER, 0, 1, 0, 0, 4096, 4096, 1024 };

struct qent {
    uint32_t len;
    uint16_t bid;
};

struct conn {
    int fd;                     /* descriptor, or slot in the fixed table */
    uint8_t recv_armed;         /* a receive (single or multishot) is in flight */
    uint8_t send_inflight;
    uint8_t eof;                /* the peer's FIN was read */
    uint8_t closing;            /* finished or failed: close once idle */
    uint8_t close_issued;
    uint8_t starved;            /* on the worker's list, waiting for buffers */
    uint8_t cap_cancel;         /* receive cancelled for holding BUF_CAP buffers */
    /* without buffer rings */
    char *buf;
    uint32_t len, off;
    /* with buffer rings: received buffers not yet sent, in order */
    struct qent *q;
    uint32_t qcap, qhead, qcount, qoff;
    struct conn *snext, *sprev;
    struct msghdr msg;
    struct iovec iov[SEND_IOV];
};

struct worker {
    int id;
    int lfd;
    int sigfd;
    struct io_uring ring;
    int ring_ok;
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *bufs;
    unsigned mask;
    unsigned held;              /* buffers handed to us and not yet given back */
    unsigned adds;              /* given back but not yet published */
    unsigned returned;          /* given back since the last enter */
    int starve_kick;            /* a timed wait ran out while receives were parked */
    struct conn *starved_head, *starved_tail;
    int accept_fails;
    int acc;                    /* ACC_*: what the accept side has in flight */
    unsigned table_size;        /* fixed-file slots */
    unsigned slots_used;        /* slots holding a connection or awaiting its close */
    unsigned slot_guard;        /* multishot accept only while more slots are free */
    int stopping;
    struct __kernel_timespec backoff;
    long nconns;
    struct {
        unsigned long enters, cqes, enobufs, cap_cancels, starved, accept_backoffs;
    } st;
    pthread_t thread;
    char err[200];
};

static struct sockaddr_storage bind_addr;
static socklen_t bind_len;

static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;
static int started, start_failed;

static void usage(void)
{
    fprintf(stderr,
            "usage: uring-echo [--addr HOST:PORT] [--workers N] [--backlog N]\n"
            "                  [--flags none|coop|defer] [--fixed-files] [--bufring | --no-bufring]\n"
            "                  [--register-ring] [--buf-size BYTES] [--buf-count N] [--stats]\n");
    exit(2);
}

static inline uint64_t ud(void *p, unsigned op)
{
    return (uint64_t)(uintptr_t)p | op;
}

/* ---- addresses and listeners ------------------------------------------- */

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *port;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, end - s - 1);
        host[end - s - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            return -1;
        memcpy(host, s, colon - s);
        host[colon - s] = 0;
        port = colon + 1;
    }
    char *endp;
    long p = strtol(port, &endp, 10);
    if (*port == 0 || *endp || p < 0 || p > 65535)
        return -1;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)ss;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(out, n, "[%s]:%u", host, ntohs(v6->sin6_port));
    } else {
        const struct sockaddr_in *v4 = (const void *)ss;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(out, n, "%s:%u", host, ntohs(v4->sin_port));
    }
}

/* A blocking listening socket (io_uring does its own non-blocking attempts)
 * with SO_REUSEPORT; the first one fixes the port when port 0 was asked for.
 * TCP_NODELAY is set here because a fixed descriptor cannot be passed to
 * setsockopt; accepted sockets inherit it. */
static int make_listener(void)
{
    int fd = socket(bind_addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&bind_addr, bind_len) < 0 ||
        listen(fd, opt.backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0) {
        if (got.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&bind_addr)->sin6_port = ((struct sockaddr_in6 *)&got)->sin6_port;
        else
            ((struct sockaddr_in *)&bind_addr)->sin_port = ((struct sockaddr_in *)&got)->sin_port;
    }
    return fd;
}

/* ---- submission helpers ------------------------------------------------- */

static void buf_publish(struct worker *w)
{
    if (w->adds) {
        io_uring_buf_ring_advance(w->br, (int)w->adds);
        w->adds = 0;
    }
}

static struct io_uring_sqe *get_sqe(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    while (!sqe) {
        buf_publish(w);
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

static inline void set_file(struct io_uring_sqe *sqe)
{
    if (opt.fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
}

static void backoff_arm(struct worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    w->backoff.tv_sec = 0;
    w->backoff.tv_nsec = ACCEPT_BACKOFF_MS * 1000000L;
    io_uring_prep_timeout(sqe, &w->backoff, 0, 0);
    io_uring_sqe_set_data64(sqe, ud(w, OP_TIMER));
    w->acc = ACC_TIMER;
}

/* With fixed files the kernel takes the connection off the listen queue
 * before it looks for a free slot: an accept into a full table drops the
 * connection. So the multishot accept (which takes everything queued in one
 * go) stays armed only while more than slot_guard slots are free, which
 * covers a full listen backlog; below that, one single-shot accept at a time,
 * and only while a slot is free; none when the table is full (connections
 * wait in the backlog until a close frees a slot). Without fixed files an
 * accept that finds no descriptor leaves the connection queued, so the
 * multishot accept is always armed, apart from back-off after EMFILE. */
static void accept_update(struct worker *w)
{
    if (w->stopping)
        return;
    unsigned free_slots = opt.fixed ? w->table_size - w->slots_used : 0;
    if (w->acc == ACC_MULTI) {
        if (opt.fixed && free_slots <= w->slot_guard) {
            struct io_uring_sqe *sqe = get_sqe(w);
            io_uring_prep_cancel64(sqe, ud(w, OP_ACCEPT), 0);
            io_uring_sqe_set_data64(sqe, ud(NULL, OP_IGNORE));
            w->acc = ACC_CANCEL;
        }
        return;
    }
    if (w->acc != ACC_IDLE)
        return;                         /* wait for what is in flight */
    struct io_uring_sqe *sqe;
    if (!opt.fixed) {
        sqe = get_sqe(w);
        io_uring_prep_multishot_accept(sqe, w->lfd, NULL, NULL, SOCK_CLOEXEC);
        w->acc = ACC_MULTI;
    } else if (free_slots > w->slot_guard) {
        /* No SOCK_CLOEXEC: with a direct accept it fails with EINVAL. */
        sqe = get_sqe(w);
        io_uring_prep_multishot_accept_direct(sqe, w->lfd, NULL, NULL, 0);
        w->acc = ACC_MULTI;
    } else if (free_slots > 0) {
        sqe = get_sqe(w);
        /* liburing 2.3 adds 1 to the index it is given. */
        io_uring_prep_accept_direct(sqe, w->lfd, NULL, NULL, 0, IORING_FILE_INDEX_ALLOC - 1);
        w->acc = ACC_SINGLE;
    } else {
        return;                         /* table full: a close calls us again */
    }
    io_uring_sqe_set_data64(sqe, ud(w, OP_ACCEPT));
}

/* ---- provided buffers --------------------------------------------------- */

static inline char *buf_addr(struct worker *w, unsigned bid)
{
    return w->bufs + (size_t)bid * opt.buf_size;
}

static void buf_return(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, buf_addr(w, bid), opt.buf_size, (unsigned short)bid,
                          (int)w->mask, (int)w->adds);
    w->adds++;
    w->returned++;
    w->held--;
}

static int q_push(struct conn *c, unsigned bid, unsigned len)
{
    if (c->qcount == c->qcap) {
        uint32_t ncap = c->qcap ? c->qcap * 2 : 32;
        struct qent *nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            return -1;
        for (uint32_t i = 0; i < c->qcount; i++)
            nq[i] = c->q[(c->qhead + i) & (c->qcap - 1)];
        free(c->q);
        c->q = nq;
        c->qcap = ncap;
        c->qhead = 0;
    }
    struct qent *e = &c->q[(c->qhead + c->qcount) & (c->qcap - 1)];
    e->bid = (uint16_t)bid;
    e->len = len;
    c->qcount++;
    return 0;
}

static inline struct qent *q_at(struct conn *c, unsigned i)
{
    return &c->q[(c->qhead + i) & (c->qcap - 1)];
}

static void q_pop_return(struct worker *w, struct conn *c)
{
    buf_return(w, q_at(c, 0)->bid);
    c->qhead = (c->qhead + 1) & (c->qcap - 1);
    c->qcount--;
    c->qoff = 0;
}

static void starve_push(struct worker *w, struct conn *c)
{
    c->starved = 1;
    c->snext = NULL;
    c->sprev = w->starved_tail;
    if (w->starved_tail)
        w->starved_tail->snext = c;
    else
        w->starved_head = c;
    w->starved_tail = c;
}

static void starve_unlink(struct worker *w, struct conn *c)
{
    if (!c->starved)
        return;
    if (c->sprev)
        c->sprev->snext = c->snext;
    else
        w->starved_head = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    else
        w->starved_tail = c->sprev;
    c->starved = 0;
    c->snext = c->sprev = NULL;
}

/* ---- connections -------------------------------------------------------- */

static void conn_free(struct worker *w, struct conn *c)
{
    free(c->buf);
    free(c->q);
    free(c);
    w->nconns--;
}

/* Closes a closing connection once none of its requests is in flight. */
static void conn_maybe_finish(struct worker *w, struct conn *c)
{
    if (!c->closing || c->recv_armed || c->send_inflight || c->close_issued)
        return;
    while (c->qcount)
        q_pop_return(w, c);
    if (opt.fixed) {
        /* The slot is freed by this close; the connection goes when it
         * completes. */
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_close_direct(sqe, (unsigned)c->fd);
        io_uring_sqe_set_data64(sqe, ud(c, OP_CLOSE));
        c->close_issued = 1;
    } else {
        close(c->fd);
        conn_free(w, c);
    }
}

/* Reset, error, or done: cancel what is in flight, then close. */
static void conn_fail(struct worker *w, struct conn *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    starve_unlink(w, c);
    if (c->recv_armed || c->send_inflight) {
        struct io_uring_sqe *sqe = get_sqe(w);
        io_uring_prep_cancel_fd(sqe, c->fd,
                                IORING_ASYNC_CANCEL_ALL | (opt.fixed ? IORING_ASYNC_CANCEL_FD_FIXED : 0));
        io_uring_sqe_set_data64(sqe, ud(NULL, OP_IGNORE));
    }
    conn_maybe_finish(w, c);
}

/* The peer's FIN was read and everything before it was sent back. */
static void conn_check_done(struct worker *w, struct conn *c)
{
    if (c->eof && !c->closing && !c->recv_armed && !c->send_inflight &&
        c->qcount == 0 && c->len == 0) {
        c->closing = 1;
        starve_unlink(w, c);
        conn_maybe_finish(w, c);
    }
}

static void conn_want_recv(struct worker *w, struct conn *c)
{
    if (c->recv_armed || c->eof || c->closing || c->starved)
        return;
    struct io_uring_sqe *sqe;
    if (opt.bufring) {
        if (c->qcount > BUF_CAP / 2)
            return;                     /* re-armed when the sends drain it */
        if (w->held >= opt.buf_count) {
            w->st.starved++;
            starve_push(w, c);          /* re-armed when buffers come back */
            return;
        }
        sqe = get_sqe(w);
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
    } else {
        if (c->len)
            return;
        sqe = get_sqe(w);
        io_uring_prep_recv(sqe, c->fd, c->buf, PLAIN_BUF, 0);
    }
    set_file(sqe);
    io_uring_sqe_set_data64(sqe, ud(c, OP_RECV));
    c->recv_armed = 1;
    c->cap_cancel = 0;
}

static void conn_send(struct worker *w, struct conn *c)
{
    if (c->send_inflight || c->closing)
        return;
    struct io_uring_sqe *sqe;
    if (opt.bufring) {
        if (c->qcount == 0)
            return;
        unsigned n = c->qcount < SEND_IOV ? c->qcount : SEND_IOV;
        sqe = get_sqe(w);
        if (n == 1) {
            struct qent *e = q_at(c, 0);
            io_uring_prep_send(sqe, c->fd, buf_addr(w, e->bid) + c->qoff, e->len - c->qoff,
                               MSG_NOSIGNAL | MSG_WAITALL);
        } else {
            for (unsigned i = 0; i < n; i++) {
                struct qent *e = q_at(c, i);
                unsigned skip = i == 0 ? c->qoff : 0;
                c->iov[i].iov_base = buf_addr(w, e->bid) + skip;
                c->iov[i].iov_len = e->len - skip;
            }
            memset(&c->msg, 0, sizeof(c->msg));
            c->msg.msg_iov = c->iov;
            c->msg.msg_iovlen = n;
            io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL | MSG_WAITALL);
        }
    } else {
        if (c->off >= c->len)
            return;
        sqe = get_sqe(w);
        io_uring_prep_send(sqe, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_WAITALL);
    }
    set_file(sqe);
    io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
    c->send_inflight = 1;
}

static void conn_new(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c && !opt.bufring && !(c->buf = malloc(PLAIN_BUF))) {
        free(c);
        c = NULL;
    }
    if (!c) {
        if (opt.fixed) {
            struct io_uring_sqe *sqe = get_sqe(w);
            io_uring_prep_close_direct(sqe, (unsigned)fd);
            io_uring_sqe_set_data64(sqe, ud(NULL, OP_CLOSE));   /* frees the slot count */
        } else {
            close(fd);
        }
        return;
    }
    c->fd = fd;
    w->nconns++;
    conn_want_recv(w, c);
}

/* ---- completions -------------------------------------------------------- */

static void on_recv(struct worker *w, struct conn *c, int res, unsigned flags)
{
    int more = flags & IORING_CQE_F_MORE;
    if (!more) {
        c->recv_armed = 0;
        c->cap_cancel = 0;
    }
    if (opt.bufring && (flags & IORING_CQE_F_BUFFER)) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        w->held++;
        if (res <= 0 || c->closing || q_push(c, bid, (unsigned)res) < 0) {
            buf_return(w, bid);
            if (res > 0 && !c->closing) {
                conn_fail(w, c);        /* out of memory for the queue */
                return;
            }
        }
    }
    if (c->closing) {
        conn_maybe_finish(w, c);
        return;
    }
    if (res > 0) {
        if (!opt.bufring) {
            c->len = (uint32_t)res;
            c->off = 0;
        }
        conn_send(w, c);
        if (opt.bufring && more && c->qcount >= BUF_CAP && !c->cap_cancel) {
            struct io_uring_sqe *sqe = get_sqe(w);
            io_uring_prep_cancel64(sqe, ud(c, OP_RECV), 0);
            io_uring_sqe_set_data64(sqe, ud(NULL, OP_IGNORE));
            c->cap_cancel = 1;
            w->st.cap_cancels++;
        }
        if (!more)
            conn_want_recv(w, c);
        return;
    }
    if (res == 0) {
        c->eof = 1;
        conn_check_done(w, c);
        return;
    }
    if (res == -ENOBUFS)
        w->st.enobufs++;
    switch (res) {
    case -ENOBUFS:
        /* The ring was empty. Wait for buffers to come back: re-arming now
         * would only meet an empty ring again. */
        w->st.starved++;
        starve_push(w, c);
        return;
    case -ECANCELED:    /* our cap: re-armed once the queue has drained */
    case -EINTR:
    case -EAGAIN:
        conn_want_recv(w, c);
        return;
    default:            /* ECONNRESET, ... */
        conn_fail(w, c);
        return;
    }
}

static void on_send(struct worker *w, struct conn *c, int res)
{
    c->send_inflight = 0;
    if (c->closing) {
        conn_maybe_finish(w, c);
        return;
    }
    if (res == -EINTR || res == -EAGAIN) {
        conn_send(w, c);
        return;
    }
    if (res <= 0) {
        conn_fail(w, c);                /* EPIPE, ECONNRESET, ... */
        return;
    }
    if (opt.bufring) {
        unsigned left = (unsigned)res;
        while (left && c->qcount) {
            struct qent *e = q_at(c, 0);
            unsigned avail = e->len - c->qoff;
            if (left >= avail) {
                left -= avail;
                q_pop_return(w, c);
            } else {
                c->qoff += left;
                left = 0;
            }
        }
    } else {
        c->off += (uint32_t)res;
        if (c->off >= c->len)
            c->len = c->off = 0;
    }
    conn_send(w, c);
    conn_want_recv(w, c);
    conn_check_done(w, c);
}

static void on_accept(struct worker *w, int res, unsigned flags)
{
    if (res >= 0) {
        w->accept_fails = 0;
        if (opt.fixed)
            w->slots_used++;
        conn_new(w, res);
    }
    if (flags & IORING_CQE_F_MORE) {
        accept_update(w);               /* may cancel it if slots run short */
        return;
    }
    w->acc = ACC_IDLE;
    if (w->stopping)
        return;
    switch (res) {
    case -EMFILE:
    case -ENFILE:
    case -ENOBUFS:
    case -ENOMEM:
        w->st.accept_backoffs++;
        backoff_arm(w);
        return;
    case -EINVAL:
    case -EBADF:
    case -ENOTSOCK:
    case -EOPNOTSUPP:
    case -EFAULT:
        fprintf(stderr, "uring-echo: worker %d: accept failed: %s\n", w->id, strerror(-res));
        exit(1);
    default:
        /* Done (single-shot), cancelled by us, or a passing error such as
         * ECONNABORTED; a run of errors backs off. */
        if (res < 0 && res != -ECANCELED && ++w->accept_fails > ACCEPT_RETRIES) {
            w->accept_fails = 0;
            w->st.accept_backoffs++;
            backoff_arm(w);
            return;
        }
        accept_update(w);
        return;
    }
}

static void handle(struct worker *w, uint64_t data, int res, unsigned flags)
{
    void *p = (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
    switch ((unsigned)(data & OP_MASK)) {
    case OP_ACCEPT:
        on_accept(w, res, flags);
        break;
    case OP_RECV:
        on_recv(w, p, res, flags);
        break;
    case OP_SEND:
        on_send(w, p, res);
        break;
    case OP_CLOSE:
        /* Only now is the slot free (a slot must not be counted free while
         * its close is queued). */
        if (p)
            conn_free(w, p);
        if (opt.fixed) {
            w->slots_used--;
            accept_update(w);
        }
        break;
    case OP_TIMER:
        w->acc = ACC_IDLE;
        accept_update(w);
        break;
    case OP_SIGNAL:
        w->stopping = 1;
        break;
    default:
        break;
    }
}

/* Before each enter: publish given-back buffers, then re-arm parked
 * receives, one per buffer that came back since the last enter. Our count of
 * held buffers lags the kernel (it may have filled buffers whose completions
 * we have not seen), so it cannot say the ring is not empty; a buffer given
 * back after the -ENOBUFS can. If a timed wait runs out while receives are
 * parked and the count says buffers are free, they are re-armed too: that
 * covers a buffer given back just before the -ENOBUFS was seen. */
static void before_submit(struct worker *w)
{
    if (!opt.bufring)
        return;
    buf_publish(w);
    unsigned budget = w->returned;
    w->returned = 0;
    if (w->starve_kick) {
        w->starve_kick = 0;
        budget = opt.buf_count - w->held;
    }
    while (w->starved_head && budget--) {
        struct conn *c = w->starved_head;
        starve_unlink(w, c);
        conn_want_recv(w, c);
    }
    buf_publish(w);
}

/* ---- worker ------------------------------------------------------------- */

static int worker_setup(struct worker *w)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = CQ_ENTRIES;
    if (opt.mode == MODE_COOP)
        p.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    else if (opt.mode == MODE_DEFER)
        p.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int ret = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &p);
    if (ret < 0) {
        snprintf(w->err, sizeof(w->err), "io_uring_queue_init: %s%s", strerror(-ret),
                 ret == -EPERM || ret == -ENOSYS
                     ? " (io_uring disabled: see /proc/sys/kernel/io_uring_disabled, or blocked by seccomp)"
                     : ret == -ENOMEM ? " (RLIMIT_MEMLOCK too low?)" : "");
        return -1;
    }
    w->ring_ok = 1;
    if (opt.reg_ring) {
        ret = io_uring_register_ring_fd(&w->ring);
        if (ret != 1) {
            snprintf(w->err, sizeof(w->err), "io_uring_register_ring_fd: %s",
                     ret < 0 ? strerror(-ret) : "not registered");
            return -1;
        }
    }
    if (opt.fixed) {
        /* A sparse table larger than RLIMIT_NOFILE is refused with EMFILE. */
        struct rlimit rl;
        unsigned n = MAX_FIXED;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
            n = (unsigned)rl.rlim_cur;
        ret = io_uring_register_files_sparse(&w->ring, n);
        if (ret < 0) {
            snprintf(w->err, sizeof(w->err), "io_uring_register_files_sparse(%u): %s", n, strerror(-ret));
            return -1;
        }
        w->table_size = n;
        w->slot_guard = (unsigned)opt.backlog + 64;
    }
    if (opt.bufring) {
        w->br_bytes = (size_t)opt.buf_count * sizeof(struct io_uring_buf);
        w->br = mmap(NULL, w->br_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (w->br == MAP_FAILED) {
            w->br = NULL;
            snprintf(w->err, sizeof(w->err), "mmap buffer ring: %s", strerror(errno));
            return -1;
        }
        w->bufs = mmap(NULL, (size_t)opt.buf_count * opt.buf_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (w->bufs == MAP_FAILED) {
            w->bufs = NULL;
            snprintf(w->err, sizeof(w->err), "mmap buffers: %s", strerror(errno));
            return -1;
        }
        io_uring_buf_ring_init(w->br);
        struct io_uring_buf_reg reg;
        memset(&reg, 0, sizeof(reg));
        reg.ring_addr = (uint64_t)(uintptr_t)w->br;
        reg.ring_entries = opt.buf_count;
        reg.bgid = BGID;
        ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
        if (ret < 0) {
            snprintf(w->err, sizeof(w->err), "io_uring_register_buf_ring: %s", strerror(-ret));
            return -1;
        }
        w->mask = (unsigned)io_uring_buf_ring_mask(opt.buf_count);
        w->held = opt.buf_count;
        for (unsigned i = 0; i < opt.buf_count; i++)
            buf_return(w, i);
        buf_publish(w);
    }
    accept_update(w);
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_poll_add(sqe, w->sigfd, POLLIN);
    io_uring_sqe_set_data64(sqe, ud(w, OP_SIGNAL));
    ret = io_uring_submit(&w->ring);
    if (ret < 0) {
        snprintf(w->err, sizeof(w->err), "io_uring_submit: %s", strerror(-ret));
        return -1;
    }
    return 0;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    int ok = worker_setup(w) == 0;

    pthread_mutex_lock(&start_lock);
    started++;
    if (!ok)
        start_failed = 1;
    pthread_cond_broadcast(&start_cond);
    pthread_mutex_unlock(&start_lock);
    if (!ok) {
        if (w->ring_ok)
            io_uring_queue_exit(&w->ring);
        return NULL;
    }

    struct { uint64_t data; int32_t res; uint32_t flags; } batch[BATCH];
    while (!w->stopping) {
        before_submit(w);
        int ret;
        if (w->starved_head && w->held < opt.buf_count) {
            struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 1000000 };
            struct io_uring_cqe *cqe;
            ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
            if (ret == -ETIME)
                w->starve_kick = 1;
        } else {
            ret = io_uring_submit_and_wait(&w->ring, 1);
        }
        w->st.enters++;
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
            fprintf(stderr, "uring-echo: worker %d: io_uring_submit_and_wait: %s\n", w->id, strerror(-ret));
            exit(1);
        }
        for (;;) {
            unsigned head, n = 0;
            struct io_uring_cqe *cqe;
            io_uring_for_each_cqe(&w->ring, head, cqe) {
                batch[n].data = cqe->user_data;
                batch[n].res = cqe->res;
                batch[n].flags = cqe->flags;
                if (++n == BATCH)
                    break;
            }
            io_uring_cq_advance(&w->ring, n);
            w->st.cqes += n;
            for (unsigned i = 0; i < n; i++)
                handle(w, batch[i].data, batch[i].res, batch[i].flags);
            if (n < BATCH)
                break;
        }
    }
    /* Tearing the ring down cancels whatever is still in flight. */
    io_uring_queue_exit(&w->ring);
    return NULL;
}

/* ---- main --------------------------------------------------------------- */

static long parse_positive(const char *flag, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n <= 0) {
        fprintf(stderr, "uring-echo: %s needs a positive number\n", flag);
        usage();
    }
    return n;
}

static int default_workers(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:7777";
    int nworkers = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char flag[32];
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof(flag)) {
            memcpy(flag, a, eq - a);
            flag[eq - a] = 0;
            v = eq + 1;
            a = flag;
        }
#define VALUE() (v ? v : (i + 1 < argc ? argv[++i] : (usage(), "")))
        if (!strcmp(a, "--addr"))
            addr = VALUE();
        else if (!strcmp(a, "--workers")) {
            long n = parse_positive("--workers", VALUE());
            nworkers = n > MAX_WORKERS ? MAX_WORKERS : (int)n;
        } else if (!strcmp(a, "--backlog"))
            opt.backlog = (int)parse_positive("--backlog", VALUE());
        else if (!strcmp(a, "--flags")) {
            const char *m = VALUE();
            if (!strcmp(m, "none"))
                opt.mode = MODE_NONE;
            else if (!strcmp(m, "coop"))
                opt.mode = MODE_COOP;
            else if (!strcmp(m, "defer"))
                opt.mode = MODE_DEFER;
            else {
                fprintf(stderr, "uring-echo: --flags takes none, coop or defer\n");
                usage();
            }
        } else if (!strcmp(a, "--fixed-files"))
            opt.fixed = 1;
        else if (!strcmp(a, "--bufring"))
            opt.bufring = 1;
        else if (!strcmp(a, "--no-bufring"))
            opt.bufring = 0;
        else if (!strcmp(a, "--register-ring"))
            opt.reg_ring = 1;
        else if (!strcmp(a, "--stats"))
            opt.stats = 1;
        else if (!strcmp(a, "--buf-size")) {
            long n = parse_positive("--buf-size", VALUE());
            if (n > (1L << 20)) {
                fprintf(stderr, "uring-echo: --buf-size is at most 1 MiB\n");
                usage();
            }
            opt.buf_size = (unsigned)n;
        } else if (!strcmp(a, "--buf-count")) {
            long n = parse_positive("--buf-count", VALUE());
            if (n > 32768 || (n & (n - 1))) {
                fprintf(stderr, "uring-echo: --buf-count must be a power of two up to 32768\n");
                usage();
            }
            opt.buf_count = (unsigned)n;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage();
        else {
            fprintf(stderr, "uring-echo: unknown argument '%s'\n", argv[i]);
            usage();
        }
#undef VALUE
    }
    if (parse_addr(addr, &bind_addr, &bind_len) < 0) {
        fprintf(stderr, "uring-echo: bad --addr '%s' (want 127.0.0.1:7777 or [::1]:7777)\n", addr);
        usage();
    }
    if (nworkers == 0)
        nworkers = default_workers();

    /* Blocked before any thread starts, so every thread inherits the mask
     * and the signals stay pending for the signalfd. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        perror("uring-echo: signalfd");
        return 1;
    }

    struct worker *workers = calloc((size_t)nworkers, sizeof(*workers));
    if (!workers) {
        perror("uring-echo: calloc");
        return 1;
    }
    for (int i = 0; i < nworkers; i++) {
        workers[i].id = i;
        workers[i].sigfd = sigfd;
        workers[i].lfd = make_listener();
        if (workers[i].lfd < 0) {
            char s[80];
            format_addr(&bind_addr, s, sizeof(s));
            fprintf(stderr, "uring-echo: cannot listen on %s: %s\n", s, strerror(errno));
            return 1;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        int e = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        if (e) {
            fprintf(stderr, "uring-echo: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }
    pthread_mutex_lock(&start_lock);
    while (started < nworkers)
        pthread_cond_wait(&start_cond, &start_lock);
    pthread_mutex_unlock(&start_lock);
    if (start_failed) {
        for (int i = 0; i < nworkers; i++)
            if (workers[i].err[0]) {
                fprintf(stderr, "uring-echo: worker %d: %s\n", i, workers[i].err);
                break;
            }
        return 1;
    }

    char s[80];
    format_addr(&bind_addr, s, sizeof(s));
    printf("listening on %s (io_uring workers=%d flags=%s%s%s%s)\n", s, nworkers,
           opt.mode == MODE_NONE ? "none" : opt.mode == MODE_COOP ? "coop" : "defer",
           opt.fixed ? " fixed-files" : "", opt.bufring ? " bufring" : "",
           opt.reg_ring ? " register-ring" : "");
    fflush(stdout);

    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);

    struct signalfd_siginfo si;
    const char *name = "signal";
    if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        name = si.ssi_signo == SIGINT ? "SIGINT" : si.ssi_signo == SIGTERM ? "SIGTERM" : "signal";
    long open_conns = 0;
    for (int i = 0; i < nworkers; i++)
        open_conns += workers[i].nconns;
    fprintf(stderr, "uring-echo: %s received, shutting down (%ld connections open)\n", name, open_conns);
    for (int i = 0; opt.stats && i < nworkers; i++)
        fprintf(stderr, "uring-echo: worker %d: waits=%lu cqes=%lu enobufs=%lu starved=%lu cap_cancels=%lu "
                "accept_backoffs=%lu\n", i, workers[i].st.enters, workers[i].st.cqes, workers[i].st.enobufs,
                workers[i].st.starved, workers[i].st.cap_cancels, workers[i].st.accept_backoffs);
    for (int i = 0; i < nworkers; i++)
        close(workers[i].lfd);
    free(workers);
    return 0;
}
