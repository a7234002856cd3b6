/*
 * urt-echo - a TCP echo server on urt, one task per connection.
 *
 *   urt-echo [--addr HOST:PORT] [--workers N] [--mode plain|pooled]
 *            [--max-conns N] [--stats SECONDS] [--spin-us US|none] [--pin]
 *            [--accept single|multishot] [--rx-buffers N] [--rx-buffer-size B]
 *            [--idle-timeout MS] [--send-timeout MS] [--hibernate-after MS]
 *            [--stack-size KIB]
 *
 * Tasks:
 *   root      (urt_runtime_block_on) starts the others, prints "listening
 *             on ..." (retrying every 10 ms while stdout is full), waits on
 *             `stop`, then cancels and joins the acceptor, the signal task
 *             and the stats task, waits (at most 100 ms) until every
 *             connection task the acceptor spawned has started, and
 *             returns; main then calls urt_runtime_shutdown(rt, 0), whose
 *             cancellation tells every connection to stop (see conn).
 *   signals   urt_read on a signalfd for SIGINT/SIGTERM/SIGUSR1/SIGUSR2 (blocked
 *             in every thread: main blocks them before the runtime starts
 *             its threads); SIGINT or SIGTERM sets the end of the grace
 *             period (now + 2 s) and signals `stop`, SIGUSR1 prints the
 *             totals line (below) and the runtime's task dump, SIGUSR2
 *             the totals line alone (for samplers that ask often)
 *             (urt_runtime_dump: every task, then the runtime metrics) on
 *             stderr. The dump is written into a memfd first (memory only:
 *             the runtime's locks are never held across a write that could
 *             block) and copied out with the non-blocking log writes.
 *   acceptor  urt_accept in a loop (--accept single, the default) or
 *             urt_listener (--accept multishot; urt_accept if
 *             urt_listener_open fails); spawns one detached task per
 *             connection.
 *             Past --max-conns a new connection is closed at once. Out of
 *             descriptors (EMFILE/ENFILE) it backs off 10 ms .. 1 s and
 *             keeps going; a broken listen socket signals `stop` with exit
 *             status 1.
 *   conn      plain:  urt_recv into a 16 KiB buffer, urt_send it all back;
 *             pooled: urt_rx_recv a provided buffer, urt_buf_send it back
 *                     (the buffer returns to the ring once sent; the task
 *                     waits only for a previous send still in flight).
 *             The receive runs under urt_op_timeout(--idle-timeout), each
 *             send (pooled: each wait for the previous one) under
 *             urt_op_timeout(--send-timeout).
 *             Ends on 0 (everything received was already sent back: the
 *             echo of a half-closed peer is complete), on a peer error, on
 *             the idle timeout (closed: the peer reads EOF), or on the
 *             send timeout (the peer stopped reading: closed with a reset,
 *             which frees the data its socket still held at once).
 *             On -ECANCELED (the shutdown) it drains, with
 *             urt_cancel_shield on and every call bounded by what is left
 *             of the grace period: it takes the count of bytes the kernel
 *             had received on the socket (TCP_INFO), receives and sends
 *             back the ones it has not echoed yet (nothing that came
 *             later), urt_shutdown(SHUT_WR)s, then reads and drops what
 *             the peer still sends until the peer's EOF. Then, and on
 *             every other end, it closes the socket; a socket closed with
 *             nothing unread in it ends with a FIN, not a reset.
 *   stats     every --stats seconds, per-worker rates from
 *             urt_runtime_stats and the echo counters, and a metrics line
 *             (below); with --stats the metrics line is printed once more
 *             on exit (when=exit), after the shutdown.
 *
 * The totals line, on stdout on SIGUSR1 or SIGUSR2 and once more on exit (when=signal
 * or when=exit), for scripts:
 *   totals when=W t_ns=T workers=N conns=C accepted=A msgs=M bytes=B
 *          enters=E sqes=S cqes=Q polls=P parks=K steals=X wakes_sent=Y hibernated=H
 * counters summed over the workers since the start; t_ns is CLOCK_MONOTONIC
 * (urt_now). msgs counts received chunks sent back whole, bytes the bytes
 * the kernel took from the sends (never more than was actually sent; in
 * pooled mode both count a chunk when urt_buf_send hands it over);
 * hibernated is not a sum since the start but the tasks whose stacks are
 * hibernated at that moment.
 * bench/compare takes the difference of two such lines.
 *
 * The metrics line (urt_runtime_metrics), on stdout with each --stats
 * report (when=stats) and once more on exit (when=exit) with --stats:
 *   metrics when=W live_tasks=L spawned=S completed=C blocking_threads=T
 *          blocking_idle=I blocking_queued=Q inject_queued=J stack_resident=R
 *
 * Output: no worker ever blocks on stdout or stderr (a pipe nobody reads
 * would stop that worker and every connection on it). Each line goes out
 * in one non-blocking write or not at all: lines that find the stream full
 * are dropped and counted, and the next line that gets out on that stream
 * comes after a line saying how many were dropped (see log_put). Only
 * main() writes blocking: its error lines before the runtime starts, and
 * the exit totals line, which waits at most 0.5 s for room.
 *
 * Memory per connection is the task stack (--stack-size; a connection's
 * frames take under 4 KiB, so 16 KiB is enough) plus, in plain mode, a
 * 16 KiB buffer; a peer that never reads blocks only its own task in its
 * send (until --send-timeout, if set). In pooled mode such a connection
 * also keeps up to URT_RX_MAX_HELD of its worker's provided buffers
 * (--rx-buffers sizes the pool). Error lines that a peer or the system can
 * repeat (too many connections, out of descriptors, odd socket errors) go
 * to stderr at most once a second each, with a count of the ones left out.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <linux/sockios.h>
#include <linux/tcp.h>   /* TCP_NODELAY, and struct tcp_info with tcpi_bytes_received (glibc's lacks it) */
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <urt.h>

#define NS_PER_MS        1000000ull
#define NS_PER_SEC       1000000000ull
#define CONN_BUF_SIZE    (16u * 1024u)
#define LISTEN_BACKLOG   4096
#define GRACE_NS         (2 * NS_PER_SEC)
#define BACKOFF_MIN_NS   (10 * NS_PER_MS)
#define BACKOFF_MAX_NS   (1 * NS_PER_SEC)
#define MAX_WORKERS      1024u
#define STACK_MIN_KIB    16u                  /* urt_config.stack_size's range */
#define STACK_MAX_KIB    (1024u * 1024u)
#define MAX_TIMEOUT_MS   (365ul * 24 * 3600 * 1000)   /* --idle-timeout, --send-timeout: a year */
#define READY_RETRY_NS   (10 * NS_PER_MS)
#define START_WAIT_NS    (100 * NS_PER_MS)
#define EXIT_LINE_WAIT_MS 500

enum mode { MODE_PLAIN, MODE_POOLED };

struct options {
    const char *addr;
    unsigned workers;
    enum mode mode;
    unsigned long max_conns;
    double stats_s;
    unsigned spin_us;
    bool pin;
    bool single_accept;
    unsigned rx_buffers, rx_buffer_size;
    uint64_t idle_ns, send_ns;   /* --idle-timeout, --send-timeout; 0: none */
    uint64_t hibernate_ns;       /* --hibernate-after; 0: the library's default */
    size_t stack_size;           /* --stack-size in bytes; 0: the library's default */
};

/* One per worker, each on its own cache line. Written only by tasks running
 * on that worker (a connection task never leaves the worker that first ran
 * it), so a relaxed load + store is the increment; read, relaxed, by the
 * stats task on any worker. */
struct worker_count {
    _Alignas(64) uint64_t msgs;
    uint64_t bytes;
};

/* Stderr lines a peer or the system can repeat: at most one a second. */
struct ratelimit {
    uint64_t last_ns;     /* CAS by whoever prints */
    uint64_t suppressed;  /* atomic add by whoever is left out */
};

struct server {
    struct options opt;
    urt_runtime *rt;
    int listen_fd;
    int sig_fd;
    char addr_text[NI_MAXHOST + NI_MAXSERV + 4];
    unsigned nworkers;
    struct worker_count *counts;
    urt_notify *stop;
    int exit_code;           /* written before `stop` is signalled */
    uint64_t stop_deadline;  /* end of the grace period (urt_now), 0 until stopping: written once by
                                begin_stop before `stop` is signalled, read by the draining
                                connections (release / acquire) */
    uint64_t active;         /* connections with a task: atomic */
    uint64_t unstarted;      /* connection tasks spawned that have not run yet: atomic */
    uint64_t accepted;       /* atomic */
    uint64_t refused;        /* closed at once over --max-conns: atomic */
};

static struct server srv = {.listen_fd = -1, .sig_fd = -1};
static struct ratelimit rl_maxconns, rl_nofile, rl_accept_err, rl_conn_err;

static const char *prog = "urt-echo";

/* ---- output that never blocks a worker -------------------------------------
 *
 * A line goes out in one write of at most LOG_MAX (PIPE_BUF) bytes, which a
 * pipe takes whole or not at all, or is dropped:
 *   1. the sink's kind is found on its first use: a pipe, FIFO or socket is
 *      written with pwritev2(RWF_NOWAIT) (-EAGAIN: full), which needs no
 *      O_NONBLOCK on the file description (that would change it for every
 *      other process sharing it); a regular file, tty or device, or a
 *      kernel that answers EOPNOTSUPP, gets poll(POLLOUT, 0) and then one
 *      write(2), serialised by log_poll_busy so two threads cannot both use
 *      the room one poll saw (a thread that finds it taken drops its line);
 *   2. a line that cannot go out is added to the sink's `dropped`;
 *   3. the next line that goes out takes `dropped` (exchange) and is
 *      preceded, in the same write, by a line saying how many were dropped
 *      (if that write fails too the count goes back, plus the new line).
 */
#define LOG_MAX    PIPE_BUF
#define LOG_NOTICE 160   /* room kept for the dropped-lines notice */

enum sink_kind { SINK_UNKNOWN, SINK_NOWAIT, SINK_POLL };

struct log_sink {
    int fd;
    const char *name;
    int kind;           /* enum sink_kind: relaxed atomic, set by the first write */
    uint64_t dropped;   /* lines dropped since the last notice: atomic */
};

static struct log_sink log_out = {STDOUT_FILENO, "stdout", SINK_UNKNOWN, 0};
static struct log_sink log_err = {STDERR_FILENO, "stderr", SINK_UNKNOWN, 0};
static int log_poll_busy;   /* test-and-set lock of the SINK_POLL path; never waited for */

static enum sink_kind sink_kind(struct log_sink *k)
{
    int kind = __atomic_load_n(&k->kind, __ATOMIC_RELAXED);
    if (kind != SINK_UNKNOWN)
        return (enum sink_kind)kind;
    struct stat st;
    kind = SINK_POLL;
    if (fstat(k->fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
        kind = SINK_NOWAIT;
    __atomic_store_n(&k->kind, kind, __ATOMIC_RELAXED);
    return (enum sink_kind)kind;
}

/* One non-blocking write of p[0 .. len): the count written, 0 when the sink
 * is full (nothing written), or -errno. */
static ssize_t sink_write(struct log_sink *k, const char *p, size_t len)
{
    if (sink_kind(k) == SINK_NOWAIT) {
        struct iovec v = {.iov_base = (void *)p, .iov_len = len};
        ssize_t n = pwritev2(k->fd, &v, 1, -1, RWF_NOWAIT);
        if (n >= 0)
            return n;
        if (errno == EAGAIN)
            return 0;
        if (errno != EOPNOTSUPP && errno != EINVAL && errno != ENOSYS)
            return -errno;
        /* no RWF_NOWAIT for this file here: poll from now on */
        __atomic_store_n(&k->kind, SINK_POLL, __ATOMIC_RELAXED);
    }
    if (__atomic_exchange_n(&log_poll_busy, 1, __ATOMIC_ACQUIRE))   /* pairs with the release below */
        return 0;
    ssize_t r = 0;
    struct pollfd pfd = {.fd = k->fd, .events = POLLOUT};
    int ready = poll(&pfd, 1, 0);
    if (ready < 0)
        r = -errno;
    else if (ready == 1 && (pfd.revents & (POLLERR | POLLNVAL)))
        r = -EPIPE;
    else if (ready == 1 && (pfd.revents & POLLOUT)) {
        r = write(k->fd, p, len);
        if (r < 0)
            r = errno == EAGAIN ? 0 : -errno;
    }
    __atomic_store_n(&log_poll_busy, 0, __ATOMIC_RELEASE);   /* pairs with the exchange above */
    return r;
}

static uint64_t count_lines(const char *p, size_t len)
{
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] == '\n';
    return n ? n : 1;
}

/* Write text (whole lines, at most LOG_MAX - LOG_NOTICE bytes; longer is cut)
 * to k in one non-blocking write, after the notice of the lines dropped
 * before it. Returns true if it went out; if not and count is set, its
 * lines are added to the dropped ones. */
static bool log_put(struct log_sink *k, const char *text, size_t len, bool count)
{
    char buf[LOG_MAX];
    if (len > LOG_MAX - LOG_NOTICE)
        len = LOG_MAX - LOG_NOTICE;
    uint64_t dropped = __atomic_exchange_n(&k->dropped, 0, __ATOMIC_RELAXED);
    size_t off = 0;
    if (dropped) {
        int n = snprintf(buf, LOG_NOTICE, "%s: %llu line%s dropped on %s before this one: it was full\n", prog,
                         (unsigned long long)dropped, dropped == 1 ? "" : "s", k->name);
        off = n > 0 && n < LOG_NOTICE ? (size_t)n : 0;
    }
    memcpy(buf + off, text, len);
    if (len && text[len - 1] != '\n')
        buf[off + len - 1] = '\n';   /* a cut line still ends its line */
    /* a short write (none on a pipe at this size) still counts as out */
    bool out = sink_write(k, buf, off + len) > 0;
    uint64_t back = 0;
    if (!out || !off)
        back += dropped;   /* not reported (not written, or the notice did not fit) */
    if (!out && count)
        back += count_lines(text, len);
    if (back)
        __atomic_fetch_add(&k->dropped, back, __ATOMIC_RELAXED);
    return out;
}

/* Text of many lines: in pieces of whole lines that each fit one log_put. */
static void log_text(struct log_sink *k, const char *text, size_t len)
{
    while (len) {
        size_t piece = len < LOG_MAX - LOG_NOTICE ? len : LOG_MAX - LOG_NOTICE;
        if (piece < len) {
            const char *nl = memrchr(text, '\n', piece);
            if (nl)
                piece = (size_t)(nl - text) + 1;
        }
        log_put(k, text, piece, true);
        text += piece;
        len -= piece;
    }
}

/* For main() only (a plain thread, not a worker): wait up to wait_ms for
 * room, then drop. */
static void log_put_wait(struct log_sink *k, const char *text, size_t len, int wait_ms)
{
    uint64_t end = urt_now() + (uint64_t)wait_ms * NS_PER_MS;
    while (!log_put(k, text, len, false)) {
        uint64_t now = urt_now();
        if (now >= end) {
            __atomic_fetch_add(&k->dropped, count_lines(text, len), __ATOMIC_RELAXED);
            return;
        }
        struct pollfd pfd = {.fd = k->fd, .events = POLLOUT};
        int ms = (int)((end - now + NS_PER_MS - 1) / NS_PER_MS);
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
            return;
        if (pfd.revents & (POLLERR | POLLNVAL))
            return;   /* nobody will ever read it */
    }
}

static void vlog_line(struct log_sink *k, const char *fmt, va_list ap)
{
    char line[LOG_MAX];
    int n = snprintf(line, sizeof(line), "%s: ", prog);
    if (n < 0)
        return;
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        return;
    size_t len = (size_t)n + (size_t)m;
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    log_put(k, line, len, true);
}

/* "urt-echo: ..." on stderr, never blocking. */
static void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_msg(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog_line(&log_err, fmt, ap);
    va_end(ap);
}

static void rl_log(struct ratelimit *rl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void rl_log(struct ratelimit *rl, const char *fmt, ...)
{
    uint64_t now = urt_now();
    uint64_t last = __atomic_load_n(&rl->last_ns, __ATOMIC_RELAXED);
    if ((last != 0 && now - last < NS_PER_SEC) ||
        !__atomic_compare_exchange_n(&rl->last_ns, &last, now, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        __atomic_fetch_add(&rl->suppressed, 1, __ATOMIC_RELAXED);
        return;
    }
    uint64_t left_out = __atomic_exchange_n(&rl->suppressed, 0, __ATOMIC_RELAXED);
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (left_out)
        log_msg("%s (and %llu more like it since the last report)", line, (unsigned long long)left_out);
    else
        log_msg("%s", line);
}

/* Errors that mean the peer went away: the connection ends without a word. */
static bool peer_gone(long err)
{
    switch (-err) {
    case ECANCELED:
    case ECONNRESET:
    case EPIPE:
    case ENOTCONN:
    case ETIMEDOUT:
    case ECONNABORTED:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case ENETDOWN:
        return true;
    default:
        return false;
    }
}

static struct worker_count *my_count(struct server *s)
{
    int w = urt_worker_id();
    if (w < 0 || (unsigned)w >= s->nworkers)
        return NULL;
    return &s->counts[w];
}

static void count_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* ---- connections ---------------------------------------------------------- */

/* How a connection ended: decides how its socket is closed. */
enum conn_end {
    END_EOF,       /* the peer closed and got everything back */
    END_ERROR,     /* a peer or socket error */
    END_IDLE,      /* nothing received for --idle-timeout */
    END_STALLED,   /* a send made no progress for --send-timeout: reset */
    END_DRAINED,   /* stopping: echoed, half-closed, and the peer closed */
    END_GRACE,     /* stopping: the grace period ran out first */
};

struct conn {
    struct server *s;
    int fd;
    char *buf;            /* plain: CONN_BUF_SIZE bytes on the heap */
    urt_rx *rx;           /* pooled */
    urt_buf b;            /* pooled: the buffer in hand (b.data NULL: none) */
    const char *data;     /* the chunk in hand: data[0 .. len), of which done went back */
    size_t len, done;
    uint64_t rcvd;        /* bytes taken from the socket */
    uint64_t deadline;    /* stopping: end of the grace period; 0 before */
    uint64_t target;      /* stopping: echo until rcvd reaches it */
};

/* The op timeout for the next call: per_call (0: none), cut to what is left
 * of the grace period once stopping. False when the grace period is over. */
static bool call_timeout(const struct conn *c, uint64_t per_call, uint64_t *out)
{
    uint64_t t = per_call;
    if (c->deadline) {
        uint64_t now = urt_now();
        if (now >= c->deadline)
            return false;
        if (t == 0 || c->deadline - now < t)
            t = c->deadline - now;
    }
    *out = t;
    return true;
}

static void drop_chunk(struct conn *c)
{
    if (c->b.data)
        urt_buf_release(&c->b);
    c->data = NULL;
    c->len = c->done = 0;
}

/* Take the next chunk (at most max bytes in plain mode; a pooled chunk comes
 * as it is), under urt_op_timeout(timeout). > 0: the chunk is in hand; 0:
 * the peer closed; -errno. */
static ssize_t conn_recv(struct conn *c, size_t max, uint64_t timeout)
{
    drop_chunk(c);
    uint64_t old = urt_op_timeout(timeout);
    ssize_t n;
    if (c->rx) {
        n = urt_rx_recv(c->rx, &c->b);
        if (n > 0)
            c->data = c->b.data;
    } else {
        n = urt_recv(c->fd, c->buf, max, 0);
        c->data = c->buf;
    }
    urt_op_timeout(old);
    if (n > 0) {
        c->len = (size_t)n;
        c->rcvd += (uint64_t)n;
    }
    return n;
}

/* Send the rest of the chunk in hand back; every byte the kernel takes is
 * counted at once, the chunk as a message when it is all out. 0, or the
 * -errno of the send that stopped: -ECANCELED (told to stop: c->done says
 * how far it got), -ETIMEDOUT (no progress for --send-timeout, or the grace
 * period is over), a peer error. */
static int send_chunk(struct conn *c)
{
    struct worker_count *wc = my_count(c->s);
    if (c->b.data && c->done == 0 && c->len) {
        /* pooled: the buffer goes to the kernel and comes back to the ring
         * when sent (urt_buf_send), so the task goes on to the next chunk
         * at once; only a send of the previous chunk still in flight is
         * waited for, under --send-timeout. Counted when handed over. */
        uint64_t to;
        if (!call_timeout(c, c->s->opt.send_ns, &to))
            return -ETIMEDOUT;
        size_t n = c->len;
        c->b.len = n;   /* drain may have cut it short */
        uint64_t old = urt_op_timeout(to);
        int r = urt_buf_send(c->fd, &c->b);
        urt_op_timeout(old);
        if (r < 0) {
            if (!c->b.data)
                drop_chunk(c);   /* released by the synchronous path */
            return r;            /* else still ours (cancelled: drain sends it) */
        }
        c->data = NULL;
        c->len = c->done = 0;
        if (wc) {
            count_add(&wc->bytes, (uint64_t)n);
            count_add(&wc->msgs, 1);
        }
        return 0;
    }
    while (c->done < c->len) {
        uint64_t to;
        if (!call_timeout(c, c->s->opt.send_ns, &to))
            return -ETIMEDOUT;
        uint64_t old = urt_op_timeout(to);
        ssize_t n = urt_send(c->fd, c->data + c->done, c->len - c->done, 0);
        urt_op_timeout(old);
        if (n < 0)
            return (int)n;
        if (n == 0)
            return -EPIPE;
        c->done += (size_t)n;
        if (wc)
            count_add(&wc->bytes, (uint64_t)n);
    }
    if (wc && c->len)
        count_add(&wc->msgs, 1);
    drop_chunk(c);   /* a pooled buffer goes back at once: an idle connection holds none */
    return 0;
}

static enum conn_end failed(const char *what, long err)
{
    if (!peer_gone(err))
        rl_log(&rl_conn_err, "%s: %s", what, strerror((int)-err));
    return END_ERROR;
}

/* Bytes the kernel has received on c's socket so far, read or not. */
static uint64_t received_total(const struct conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);
    memset(&ti, 0, sizeof(ti));
    if (getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 &&
        len >= offsetof(struct tcp_info, tcpi_bytes_received) + sizeof(ti.tcpi_bytes_received))
        return ti.tcpi_bytes_received;
    /* an older kernel: what is still in the socket (in pooled mode chunks
     * the receive already took but nobody asked for are missed) */
    int inq = 0;
    if (ioctl(c->fd, SIOCINQ, &inq) < 0 || inq < 0)
        inq = 0;
    return c->rcvd + (uint64_t)inq;
}

/* Told to stop (cancelled by the shutdown): send back what had been
 * received, half-close, wait for the peer to close; all of it within the
 * grace period, cancellation held back. */
static enum conn_end drain(struct conn *c)
{
    struct server *s = c->s;
    urt_cancel_shield(true);   /* for the rest of the task */
    uint64_t d = __atomic_load_n(&s->stop_deadline, __ATOMIC_ACQUIRE);   /* pairs with begin_stop */
    c->deadline = d ? d : urt_now() + GRACE_NS;
    c->target = received_total(c);
    int r = send_chunk(c);
    while (r == 0 && c->rcvd < c->target) {
        uint64_t to, want = c->target - c->rcvd;
        if (!call_timeout(c, 0, &to))
            return END_GRACE;
        ssize_t n = conn_recv(c, want < CONN_BUF_SIZE ? (size_t)want : CONN_BUF_SIZE, to);
        if (n == 0)
            break;   /* the peer half-closed: nothing more comes */
        if (n < 0)
            return n == -ETIMEDOUT ? END_GRACE : failed("recv", n);
        if (c->rcvd > c->target)
            c->len -= (size_t)(c->rcvd - c->target);   /* pooled: came after the stop */
        r = send_chunk(c);
    }
    if (r == -ETIMEDOUT)
        return urt_now() >= c->deadline ? END_GRACE : END_STALLED;
    if (r < 0)
        return failed("send", r);
    drop_chunk(c);
    if (c->rx) {
        /* the half-close must follow the last queued send */
        uint64_t to;
        if (!call_timeout(c, s->opt.send_ns, &to))
            return END_GRACE;
        uint64_t old = urt_op_timeout(to);
        r = urt_buf_flush();
        urt_op_timeout(old);
        if (r == -ETIMEDOUT)
            return urt_now() >= c->deadline ? END_GRACE : END_STALLED;
        if (r < 0)
            return failed("send", r);
    }
    r = urt_shutdown(c->fd, SHUT_WR);
    if (r < 0)
        return failed("shutdown", r);
    /* read and drop until the peer's EOF: closing with data unread would
     * reset the connection, and the peer might lose the end of its echo */
    for (;;) {
        uint64_t to;
        if (!call_timeout(c, s->opt.idle_ns, &to))
            return END_GRACE;
        ssize_t n = conn_recv(c, CONN_BUF_SIZE, to);
        if (n == 0)
            return END_DRAINED;
        if (n == -ETIMEDOUT)
            return urt_now() >= c->deadline ? END_GRACE : END_IDLE;
        if (n < 0)
            return failed("recv", n);
    }
}

static enum conn_end serve(struct conn *c)
{
    for (;;) {
        ssize_t n = conn_recv(c, CONN_BUF_SIZE, c->s->opt.idle_ns);
        if (n == -ECANCELED)
            return drain(c);
        if (n == -ETIMEDOUT)
            return END_IDLE;
        if (n == 0)
            return END_EOF;
        if (n < 0)
            return failed(c->rx ? "urt_rx_recv" : "recv", n);
        int r = send_chunk(c);
        if (r == -ECANCELED)
            return drain(c);
        if (r == -ETIMEDOUT)
            return END_STALLED;
        if (r < 0)
            return failed("send", r);
    }
}

/* A connection task that ended without running (no stack could be had, or
 * the shutdown came first): its socket is still ours to close. */
static void conn_dropped(void *arg)
{
    struct server *s = &srv;
    close((int)(intptr_t)arg);
    __atomic_fetch_sub(&s->unstarted, 1, __ATOMIC_RELEASE);
    __atomic_fetch_sub(&s->active, 1, __ATOMIC_RELAXED);
}

/* The buffer is on the heap, not the stack: stack-clash probing would touch
 * all of it at once, while heap pages are touched only when data comes. */
static void *conn_task(void *arg)
{
    struct server *s = &srv;
    __atomic_fetch_sub(&s->unstarted, 1, __ATOMIC_RELEASE);   /* pairs with the acquire in root_task */
    struct conn c = {.s = s, .fd = (int)(intptr_t)arg};
    enum conn_end end = END_ERROR;
    if (s->opt.mode == MODE_POOLED) {
        int err = urt_rx_open(&c.rx, c.fd);
        if (err < 0)
            failed("urt_rx_open", err);
        else
            end = serve(&c);
    } else if (!(c.buf = malloc(CONN_BUF_SIZE))) {
        rl_log(&rl_conn_err, "out of memory for a connection buffer: closing it");
    } else {
        end = serve(&c);
    }
    drop_chunk(&c);
    if (c.rx)
        urt_rx_close(c.rx);
    free(c.buf);
    if (end == END_STALLED) {
        /* the peer does not read: reset, so its unsent data is freed now
         * instead of lingering in the kernel after the close */
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    /* pooled: urt_close lets the last urt_buf_send finish first, within
     * --send-timeout after a clean end; after any other end it cuts it */
    bool clean = end == END_EOF || end == END_DRAINED || end == END_IDLE;
    uint64_t old = urt_op_timeout(clean ? s->opt.send_ns : 1);
    urt_close(c.fd);
    urt_op_timeout(old);
    __atomic_fetch_sub(&s->active, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* ---- acceptor ------------------------------------------------------------- */

/* Start the shutdown: the grace period ends GRACE_NS from now. Called once,
 * by the signal task or by the acceptor on a fatal error (the acceptor is
 * cancelled before it could call it a second time after a signal: the
 * first deadline stays). */
static void begin_stop(struct server *s, int exit_code)
{
    uint64_t none = 0;
    if (exit_code)
        s->exit_code = exit_code;
    /* publishes the deadline to the draining connections (acquire in drain) */
    __atomic_compare_exchange_n(&s->stop_deadline, &none, urt_now() + GRACE_NS, false, __ATOMIC_RELEASE,
                                __ATOMIC_RELAXED);
    urt_notify_signal(s->stop);
}

static void start_conn(struct server *s, int fd)
{
    __atomic_fetch_add(&s->accepted, 1, __ATOMIC_RELAXED);
    if (__atomic_load_n(&s->active, __ATOMIC_RELAXED) >= s->opt.max_conns) {
        close(fd);
        uint64_t n = __atomic_add_fetch(&s->refused, 1, __ATOMIC_RELAXED);
        rl_log(&rl_maxconns, "%lu connections open (--max-conns): closing new ones (%llu so far)",
               s->opt.max_conns, (unsigned long long)n);
        return;
    }
    __atomic_fetch_add(&s->active, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&s->unstarted, 1, __ATOMIC_RELAXED);
    urt_spawn_opts so = {.name = "conn", .flags = URT_TASK_SPREAD, .on_drop = conn_dropped};
    int err = urt_spawn_ex(NULL, NULL, conn_task, (void *)(intptr_t)fd, &so);
    if (err < 0) {
        __atomic_fetch_sub(&s->unstarted, 1, __ATOMIC_RELAXED);
        __atomic_fetch_sub(&s->active, 1, __ATOMIC_RELAXED);
        close(fd);
        if (err != -ESHUTDOWN)
            rl_log(&rl_accept_err, "cannot start a connection task: %s", strerror(-err));
    }
}

static void *acceptor_task(void *arg)
{
    struct server *s = arg;
    urt_listener *l = NULL;
    if (!s->opt.single_accept) {
        int err = urt_listener_open(&l, s->listen_fd, SOCK_CLOEXEC);
        if (err < 0) {
            log_msg("urt_listener_open: %s; accepting with urt_accept", strerror(-err));
            l = NULL;
        }
    }
    uint64_t backoff = 0;
    for (;;) {
        int fd = l ? urt_listener_accept(l) : urt_accept(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            backoff = 0;
            start_conn(s, fd);
            continue;
        }
        if (fd == -ECANCELED)
            break;
        switch (-fd) {
        case EMFILE:
        case ENFILE:
        case ENOBUFS:
        case ENOMEM:
            backoff = backoff ? backoff * 2 : BACKOFF_MIN_NS;
            if (backoff > BACKOFF_MAX_NS)
                backoff = BACKOFF_MAX_NS;
            if (fd == -EMFILE || fd == -ENFILE)
                rl_log(&rl_nofile,
                       "accept: %s (%llu connections open); new connections wait in the backlog, "
                       "retrying in %llu ms (raise `ulimit -n` or lower --max-conns)",
                       strerror(-fd), (unsigned long long)__atomic_load_n(&s->active, __ATOMIC_RELAXED),
                       (unsigned long long)(backoff / NS_PER_MS));
            else
                rl_log(&rl_nofile, "accept: %s; retrying in %llu ms", strerror(-fd),
                       (unsigned long long)(backoff / NS_PER_MS));
            if (urt_sleep(backoff) == -ECANCELED)
                goto out;
            continue;
        case ECONNABORTED:
        case EINTR:
        case EAGAIN:
        case EPROTO:
        case EPERM:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;   /* that one connection failed; accept(2) says retry */
        case EBADF:
        case EINVAL:
        case ENOTSOCK:
        case EFAULT:
            log_msg("accept on the listen socket failed: %s; stopping", strerror(-fd));
            begin_stop(s, 1);
            goto out;
        default:
            rl_log(&rl_accept_err, "accept: %s", strerror(-fd));
            if (urt_sleep(BACKOFF_MIN_NS) == -ECANCELED)
                goto out;
            continue;
        }
    }
out:
    if (l)
        urt_listener_close(l);
    urt_close(s->listen_fd);
    s->listen_fd = -1;
    return NULL;
}

/* ---- signals -------------------------------------------------------------- */

static size_t format_totals(struct server *s, const char *when, char *line, size_t cap);

/* The task dump on stderr: into a memfd (no write there blocks for long,
 * so the runtime's locks are held only for memory copies), then out in
 * non-blocking pieces of whole lines; what finds stderr full is dropped and
 * counted like any other line. */
static void dump_tasks(struct server *s)
{
    int fd = memfd_create("urt-echo-dump", MFD_CLOEXEC);
    if (fd < 0) {
        log_msg("SIGUSR1: no task dump: memfd_create: %s", strerror(errno));
        return;
    }
    int n = urt_runtime_dump(s->rt, fd);
    off_t len = lseek(fd, 0, SEEK_END);
    char *text = n >= 0 && len > 0 ? malloc((size_t)len) : NULL;
    if (text && pread(fd, text, (size_t)len, 0) == len)
        log_text(&log_err, text, (size_t)len);
    else
        log_msg("SIGUSR1: no task dump: %s", n < 0 ? strerror(-n) : "out of memory");
    free(text);
    close(fd);
}

/* True when the signal asks the server to stop; SIGUSR1 prints the totals
 * and the task dump, SIGUSR2 the totals alone (a dump of every task is far
 * too much for a sampler that asks ten times a second). */
static bool take_signal(struct server *s, const struct signalfd_siginfo *si)
{
    if (si->ssi_signo == SIGUSR1 || si->ssi_signo == SIGUSR2) {
        char line[512];
        size_t len = format_totals(s, "signal", line, sizeof(line));
        if (len)
            log_put(&log_out, line, len, true);
        if (si->ssi_signo == SIGUSR1)
            dump_tasks(s);
        return false;
    }
    log_msg("%s, shutting down: the %llu open connections get back what they sent, then a FIN (%.1f s grace)",
            si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM",
            (unsigned long long)__atomic_load_n(&s->active, __ATOMIC_RELAXED), (double)GRACE_NS / NS_PER_SEC);
    return true;
}

static void *signal_task(void *arg)
{
    struct server *s = arg;
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = urt_read(s->sig_fd, &si, sizeof(si), -1);
        if (n == -ECANCELED)
            return NULL;
        if (n == (ssize_t)sizeof(si)) {
            if (take_signal(s, &si))
                goto stop;
            continue;
        }
        if (n == -EINTR)
            continue;
        /* io_uring refused the read: look at the signalfd now and then instead */
        log_msg("reading the signalfd through io_uring: %s; polling it every 100 ms",
                n < 0 ? strerror((int)-n) : "short read");
        for (;;) {
            if (urt_sleep(100 * NS_PER_MS) == -ECANCELED)
                return NULL;
            struct pollfd p = {.fd = s->sig_fd, .events = POLLIN};
            if (poll(&p, 1, 0) == 1 && read(s->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si) &&
                take_signal(s, &si))
                goto stop;
        }
    }
stop:
    begin_stop(s, 0);
    return NULL;
}

/* ---- stats ---------------------------------------------------------------- */

struct sample {
    uint64_t polls, steals, parks, wakes_tx, wakes_rx, sqes, cqes, enters, msgs, bytes;
};

static void take_samples(struct server *s, urt_worker_stats *ws, struct sample *out)
{
    urt_runtime_stats(s->rt, ws, s->nworkers);
    for (unsigned i = 0; i < s->nworkers; i++) {
        out[i] = (struct sample){
            .polls = ws[i].polls,
            .steals = ws[i].steals,
            .parks = ws[i].parks,
            .wakes_tx = ws[i].wakes_sent,
            .wakes_rx = ws[i].wakes_received,
            .sqes = ws[i].sqes_submitted,
            .cqes = ws[i].cqes_reaped,
            .enters = ws[i].enters,
            .msgs = __atomic_load_n(&s->counts[i].msgs, __ATOMIC_RELAXED),
            .bytes = __atomic_load_n(&s->counts[i].bytes, __ATOMIC_RELAXED),
        };
    }
}

/* The machine-readable line (into line[0 .. cap), newline included) with
 * the counters summed over the workers since the start: for SIGUSR1 and
 * once more on exit. t_ns is CLOCK_MONOTONIC. Returns its length, 0 if it
 * could not be made. */
static size_t format_totals(struct server *s, const char *when, char *line, size_t cap)
{
    struct sample sum = {0};
    unsigned nw = s->nworkers;
    urt_worker_stats *ws = calloc(nw, sizeof(*ws));
    struct sample *cur = calloc(nw, sizeof(*cur));
    if (!ws || !cur) {
        free(ws);
        free(cur);
        return 0;
    }
    take_samples(s, ws, cur);
    unsigned long long hibernated = 0;
    for (unsigned i = 0; i < nw; i++) {
        hibernated += ws[i].hibernated;
        sum.polls += cur[i].polls;
        sum.steals += cur[i].steals;
        sum.parks += cur[i].parks;
        sum.wakes_tx += cur[i].wakes_tx;
        sum.wakes_rx += cur[i].wakes_rx;
        sum.sqes += cur[i].sqes;
        sum.cqes += cur[i].cqes;
        sum.enters += cur[i].enters;
        sum.msgs += cur[i].msgs;
        sum.bytes += cur[i].bytes;
    }
    free(ws);
    free(cur);
    int len = snprintf(line, cap,
                       "totals when=%s t_ns=%llu workers=%u conns=%llu accepted=%llu msgs=%llu bytes=%llu "
                       "enters=%llu sqes=%llu cqes=%llu polls=%llu parks=%llu steals=%llu wakes_sent=%llu "
                       "hibernated=%llu\n",
                       when, (unsigned long long)urt_now(), nw,
                       (unsigned long long)__atomic_load_n(&s->active, __ATOMIC_RELAXED),
                       (unsigned long long)__atomic_load_n(&s->accepted, __ATOMIC_RELAXED),
                       (unsigned long long)sum.msgs, (unsigned long long)sum.bytes, (unsigned long long)sum.enters,
                       (unsigned long long)sum.sqes, (unsigned long long)sum.cqes, (unsigned long long)sum.polls,
                       (unsigned long long)sum.parks, (unsigned long long)sum.steals,
                       (unsigned long long)sum.wakes_tx, hibernated);
    if (len <= 0 || (size_t)len >= cap)
        return 0;   /* cannot happen at 512 bytes: 15 numbers of at most 20 digits */
    return (size_t)len;
}

/* The metrics line (into line[0 .. cap), newline included): its length, or
 * 0 if it could not be made. */
static size_t format_metrics(struct server *s, const char *when, char *line, size_t cap)
{
    urt_metrics m;
    if (urt_runtime_metrics(s->rt, &m) < 0)
        return 0;
    int len = snprintf(line, cap,
                       "metrics when=%s live_tasks=%llu spawned=%llu completed=%llu blocking_threads=%llu "
                       "blocking_idle=%llu blocking_queued=%llu inject_queued=%llu stack_resident=%llu\n",
                       when, (unsigned long long)m.live_tasks, (unsigned long long)m.spawned_total,
                       (unsigned long long)m.completed_total, (unsigned long long)m.blocking_threads,
                       (unsigned long long)m.blocking_idle, (unsigned long long)m.blocking_queued,
                       (unsigned long long)m.inject_queued, (unsigned long long)m.stack_bytes_resident);
    return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

static void *stats_task(void *arg)
{
    struct server *s = arg;
    unsigned nw = s->nworkers;
    urt_worker_stats *ws = calloc(nw, sizeof(*ws));
    struct sample *prev = calloc(nw, sizeof(*prev));
    struct sample *cur = calloc(nw, sizeof(*cur));
    size_t cap = 768 + (size_t)nw * 160;   /* the header, a line per worker, the metrics line */
    char *text = malloc(cap);
    if (!ws || !prev || !cur || !text) {
        log_msg("--stats: out of memory");
        goto out;
    }
    uint64_t period = (uint64_t)(s->opt.stats_s * (double)NS_PER_SEC);
    uint64_t start = urt_now(), last = start, next = start + period;
    take_samples(s, ws, prev);
    for (;;) {
        uint64_t now = urt_now();
        if (next > now && urt_sleep(next - now) == -ECANCELED)
            break;
        now = urt_now();
        next += period;
        if (next <= now)
            next = now + period;
        take_samples(s, ws, cur);
        double dt = (double)(now - last) / NS_PER_SEC;
        last = now;
        uint64_t msgs = 0, bytes = 0;
        for (unsigned i = 0; i < nw; i++) {
            msgs += cur[i].msgs - prev[i].msgs;
            bytes += cur[i].bytes - prev[i].bytes;
        }
        size_t len = 0;
        len += (size_t)snprintf(text + len, cap - len,
                                "[%8.1f s] conns=%llu accepted=%llu refused=%llu  %.0f msg/s  %.2f MiB/s\n"
                                "  worker    polls/s   steals/s    parks/s wakes_tx/s wakes_rx/s     sqes/s"
                                "     cqes/s   enters/s      msg/s\n",
                                (double)(now - start) / NS_PER_SEC,
                                (unsigned long long)__atomic_load_n(&s->active, __ATOMIC_RELAXED),
                                (unsigned long long)__atomic_load_n(&s->accepted, __ATOMIC_RELAXED),
                                (unsigned long long)__atomic_load_n(&s->refused, __ATOMIC_RELAXED),
                                (double)msgs / dt, (double)bytes / dt / (1024.0 * 1024.0));
        for (unsigned i = 0; i < nw && len < cap; i++) {
#define RATE(f) ((double)(cur[i].f - prev[i].f) / dt)
            len += (size_t)snprintf(text + len, cap - len,
                                    "  %6u %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f %10.0f\n", i,
                                    RATE(polls), RATE(steals), RATE(parks), RATE(wakes_tx), RATE(wakes_rx),
                                    RATE(sqes), RATE(cqes), RATE(enters), RATE(msgs));
#undef RATE
        }
        if (len < cap)
            len += format_metrics(s, "stats", text + len, cap - len);
        if (len >= cap)
            len = cap - 1;
        log_text(&log_out, text, len);   /* dropped, not waited for, when stdout is full */
        struct sample *t = prev;
        prev = cur;
        cur = t;
    }
out:
    free(text);
    free(cur);
    free(prev);
    free(ws);
    return NULL;
}

/* ---- root ----------------------------------------------------------------- */

/* Can this library receive into pooled buffers? Checked once on a socketpair
 * so that --mode pooled fails at start rather than on every connection. */
static int pooled_probe(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -errno;
    urt_rx *rx;
    int err = urt_rx_open(&rx, sv[0]);
    if (err == 0)
        urt_rx_close(rx);
    close(sv[0]);
    close(sv[1]);
    return err;
}

static void *root_task(void *arg)
{
    struct server *s = arg;
    urt_task *acc = NULL, *sig = NULL, *st = NULL;
    int err;
    if (s->opt.mode == MODE_POOLED && (err = pooled_probe()) < 0) {
        log_msg("--mode pooled needs urt_rx (multishot receive into provided buffers), "
                "which fails here: urt_rx_open: %s", strerror(-err));
        s->exit_code = 1;
        return NULL;
    }
    err = urt_spawn_ex(NULL, &sig, signal_task, s, &(urt_spawn_opts){.name = "signals"});
    if (err == 0)
        err = urt_spawn_ex(NULL, &acc, acceptor_task, s, &(urt_spawn_opts){.name = "acceptor"});
    if (err == 0 && s->opt.stats_s > 0)
        err = urt_spawn_ex(NULL, &st, stats_task, s, &(urt_spawn_opts){.name = "stats"});
    if (err < 0) {
        log_msg("cannot start a task: %s", strerror(-err));
        s->exit_code = 1;
    } else {
        char line[sizeof(s->addr_text) + 64];
        int len = snprintf(line, sizeof(line), "listening on %s (mode=%s, workers=%u)\n", s->addr_text,
                           s->opt.mode == MODE_POOLED ? "pooled" : "plain", s->nworkers);
        bool stopped = false;
        /* scripts wait for this line: while stdout is full, try again every
         * 10 ms (a wait on `stop` with a timeout) instead of dropping it */
        while (len > 0 && !log_put(&log_out, line, (size_t)len, false)) {
            uint64_t old = urt_op_timeout(READY_RETRY_NS);
            int r = urt_notify_wait(s->stop);
            urt_op_timeout(old);
            if (r != -ETIMEDOUT) {
                stopped = true;
                break;
            }
        }
        if (!stopped)
            urt_notify_wait(s->stop);
    }
    urt_task *tasks[] = {acc, sig, st};   /* the acceptor first: stop accepting */
    for (size_t i = 0; i < sizeof(tasks) / sizeof(tasks[0]); i++) {
        if (!tasks[i])
            continue;
        urt_cancel(tasks[i]);
        urt_join(tasks[i], NULL);
    }
    /* the connections learn to stop from the shutdown's cancellation, which
     * a task that has not run yet would never see (it would end unrun with
     * its socket open): give those a moment to start */
    for (uint64_t waited = 0; __atomic_load_n(&s->unstarted, __ATOMIC_ACQUIRE) > 0 && waited < START_WAIT_NS;
         waited += NS_PER_MS)
        urt_sleep(NS_PER_MS);   /* acquire pairs with the release in conn_task */
    if (s->listen_fd >= 0) {
        close(s->listen_fd);
        s->listen_fd = -1;
    }
    return NULL;
}

/* ---- start-up ------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s [options]\n"
            "TCP echo server on urt (one task per connection, one io_uring per worker).\n"
            "\n"
            "  --addr HOST:PORT      listen address (default 127.0.0.1:7777; IPv6: [::1]:7777;\n"
            "                        port 0 picks a free port, printed in the ready line)\n"
            "  --workers N           worker threads (default 0: one per CPU)\n"
            "  --mode plain|pooled   plain: urt_recv into a 16 KiB buffer per connection;\n"
            "                        pooled: urt_rx multishot receive into per-worker buffers\n"
            "  --max-conns N         connections served at once (default 100000); past it new\n"
            "                        connections are accepted and closed at once\n"
            "  --stats SECONDS       print per-worker rates and the runtime metrics every SECONDS\n"
            "                        (fractions allowed), and the metrics once more on exit\n"
            "  --spin-us US|none     spin this long before a worker parks (0: library default)\n"
            "  --pin                 pin worker i to CPU i\n"
            "  --accept single|multishot\n"
            "                        single: urt_accept per connection (default);\n"
            "                        multishot: urt_listener (one multishot accept)\n"
            "  --rx-buffers N        pooled: provided buffers per worker (power of two; default 4096)\n"
            "  --rx-buffer-size B    pooled: bytes per buffer (default 4096)\n"
            "  --idle-timeout MS     close a connection that received nothing for MS ms (0: never)\n"
            "  --send-timeout MS     reset a connection whose send made no progress for MS ms, as\n"
            "                        a peer that stopped reading (0: never)\n"
            "  --hibernate-after MS  hibernate the stack of a connection idle this long (default\n"
            "                        1000; 0: never)\n"
            "  --stack-size KIB      each task's stack, %u .. %u KiB (default 0: the library's,\n"
            "                        256 KiB)\n"
            "  --help                this text\n"
            "\n"
            "Prints \"listening on ADDR (mode=M, workers=N)\" on stdout once ready. SIGINT or\n"
            "SIGTERM stops accepting and reading; each open connection gets back what the server\n"
            "had received, then a FIN, and is closed when the peer closes, or after %.0f s; exit 0.\n"
            "SIGUSR1 prints a line \"totals when=signal t_ns=... msgs=... enters=... ...\" (counters\n"
            "since the start, summed over the workers); the same line with when=exit ends the run.\n"
            "SIGUSR1 also writes the task dump (every task, then the runtime metrics) to stderr;\n"
            "SIGUSR2 prints the totals line alone.\n"
            "Output never stalls the server: lines that find stdout or stderr full are dropped,\n"
            "and the next line that gets out says how many.\n",
            prog, STACK_MIN_KIB, STACK_MAX_KIB, (double)GRACE_NS / NS_PER_SEC);
}

static bool parse_ulong(const char *s, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"addr", required_argument, NULL, 'a'},
        {"workers", required_argument, NULL, 'w'},
        {"mode", required_argument, NULL, 'm'},
        {"max-conns", required_argument, NULL, 'c'},
        {"stats", required_argument, NULL, 's'},
        {"spin-us", required_argument, NULL, 'p'},
        {"pin", no_argument, NULL, 'P'},
        {"accept", required_argument, NULL, 'A'},
        {"rx-buffers", required_argument, NULL, 'B'},
        {"rx-buffer-size", required_argument, NULL, 'S'},
        {"idle-timeout", required_argument, NULL, 'I'},
        {"send-timeout", required_argument, NULL, 'T'},
        {"hibernate-after", required_argument, NULL, 'H'},
        {"stack-size", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (struct options){.addr = "127.0.0.1:7777", .mode = MODE_PLAIN, .max_conns = 100000, .single_accept = true};
    int c;
    unsigned long v;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'a':
            o->addr = optarg;
            break;
        case 'w':
            if (!parse_ulong(optarg, MAX_WORKERS, &v)) {
                fprintf(stderr, "%s: --workers: expected 0..%u, got '%s'\n", prog, MAX_WORKERS, optarg);
                return 2;
            }
            o->workers = (unsigned)v;
            break;
        case 'm':
            if (strcmp(optarg, "plain") == 0)
                o->mode = MODE_PLAIN;
            else if (strcmp(optarg, "pooled") == 0)
                o->mode = MODE_POOLED;
            else {
                fprintf(stderr, "%s: --mode: expected plain or pooled, got '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'c':
            if (!parse_ulong(optarg, ULONG_MAX, &v) || v == 0) {
                fprintf(stderr, "%s: --max-conns: expected a positive number, got '%s'\n", prog, optarg);
                return 2;
            }
            o->max_conns = v;
            break;
        case 's': {
            char *end;
            double d = strtod(optarg, &end);
            if (end == optarg || *end || !(d >= 0.01 && d <= 86400)) {
                fprintf(stderr, "%s: --stats: expected seconds between 0.01 and 86400, got '%s'\n", prog, optarg);
                return 2;
            }
            o->stats_s = d;
            break;
        }
        case 'p':
            if (strcmp(optarg, "none") == 0)
                o->spin_us = URT_SPIN_NONE;
            else if (!parse_ulong(optarg, URT_SPIN_NONE - 1, &v)) {
                fprintf(stderr, "%s: --spin-us: expected microseconds or 'none', got '%s'\n", prog, optarg);
                return 2;
            } else
                o->spin_us = (unsigned)v;
            break;
        case 'P':
            o->pin = true;
            break;
        case 'A':
            if (strcmp(optarg, "multishot") == 0)
                o->single_accept = false;
            else if (strcmp(optarg, "single") == 0)
                o->single_accept = true;
            else {
                fprintf(stderr, "%s: --accept: expected multishot or single, got '%s'\n", prog, optarg);
                return 2;
            }
            break;
        case 'B':
            if (!parse_ulong(optarg, 32768, &v) || v == 0 || (v & (v - 1))) {
                fprintf(stderr, "%s: --rx-buffers: expected a power of two up to 32768, got '%s'\n", prog, optarg);
                return 2;
            }
            o->rx_buffers = (unsigned)v;
            break;
        case 'S':
            if (!parse_ulong(optarg, 1u << 20, &v) || v == 0) {
                fprintf(stderr, "%s: --rx-buffer-size: expected 1 .. 1048576 bytes, got '%s'\n", prog, optarg);
                return 2;
            }
            o->rx_buffer_size = (unsigned)v;
            break;
        case 'H':
            if (!parse_ulong(optarg, MAX_TIMEOUT_MS, &v)) {
                fprintf(stderr, "%s: --hibernate-after: expected milliseconds (0: never), got '%s'\n", prog, optarg);
                return 2;
            }
            o->hibernate_ns = v ? (uint64_t)v * NS_PER_MS : URT_HIBERNATE_NEVER;
            break;
        case 'K':
            if (!parse_ulong(optarg, STACK_MAX_KIB, &v) || (v && v < STACK_MIN_KIB)) {
                fprintf(stderr, "%s: --stack-size: expected %u .. %u KiB (0: the library's default), got '%s'\n",
                        prog, STACK_MIN_KIB, STACK_MAX_KIB, optarg);
                return 2;
            }
            o->stack_size = (size_t)v * 1024;
            break;
        case 'I':
        case 'T':
            if (!parse_ulong(optarg, MAX_TIMEOUT_MS, &v)) {
                fprintf(stderr, "%s: --%s-timeout: expected milliseconds (0: none), got '%s'\n", prog,
                        c == 'I' ? "idle" : "send", optarg);
                return 2;
            }
            *(c == 'I' ? &o->idle_ns : &o->send_ns) = (uint64_t)v * NS_PER_MS;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", prog, argv[optind]);
        return 2;
    }
    return -1;
}

/* "HOST:PORT" or "[V6]:PORT" into host and port strings. */
static bool split_addr(const char *addr, char *host, size_t hlen, char *port, size_t plen)
{
    const char *colon;
    size_t n;
    if (addr[0] == '[') {
        const char *close_br = strchr(addr, ']');
        if (!close_br || close_br[1] != ':')
            return false;
        n = (size_t)(close_br - addr - 1);
        if (n == 0 || n >= hlen)
            return false;
        memcpy(host, addr + 1, n);
        host[n] = 0;
        colon = close_br + 1;
    } else {
        colon = strrchr(addr, ':');
        if (!colon || memchr(addr, ':', (size_t)(colon - addr)))
            return false;   /* no port, or a bare IPv6 address */
        n = (size_t)(colon - addr);
        if (n == 0 || n >= hlen)
            return false;
        memcpy(host, addr, n);
        host[n] = 0;
    }
    if (!colon[1] || strlen(colon + 1) >= plen)
        return false;
    strcpy(port, colon + 1);
    return true;
}

static void format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t outlen)
{
    char host[NI_MAXHOST], serv[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof(host), serv, sizeof(serv), NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, outlen, "?");
        return;
    }
    if (sa->sa_family == AF_INET6)
        snprintf(out, outlen, "[%s]:%s", host, serv);
    else
        snprintf(out, outlen, "%s:%s", host, serv);
}

/* Bound, listening socket, or -1 after saying why on stderr. */
static int open_listen_socket(const char *addr, char *text, size_t textlen)
{
    char host[256], port[32];
    if (!split_addr(addr, host, sizeof(host), port, sizeof(port))) {
        fprintf(stderr, "%s: --addr '%s': expected HOST:PORT or [IPV6]:PORT\n", prog, addr);
        return -1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int gai = getaddrinfo(host, port, &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "%s: --addr '%s': %s\n", prog, addr, gai == EAI_SYSTEM ? strerror(errno) : gai_strerror(gai));
        return -1;
    }
    int fd = -1, err = 0;
    const char *what = "socket";
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno, what = "socket";
            continue;
        }
        int one = 1;
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0) {
            err = errno, what = "setsockopt(SO_REUSEADDR)";
        } else if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
            err = errno, what = "setsockopt(TCP_NODELAY)";
        } else if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno, what = "bind";
        } else if (listen(fd, LISTEN_BACKLOG) < 0) {
            err = errno, what = "listen";
        } else {
            break;
        }
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        if (err == EADDRINUSE)
            fprintf(stderr, "%s: cannot listen on %s: port taken (another process is listening there; "
                            "stop it or pick another --addr)\n", prog, addr);
        else if (err == EADDRNOTAVAIL)
            fprintf(stderr, "%s: cannot listen on %s: no local interface has that address\n", prog, addr);
        else if (err == EACCES)
            fprintf(stderr, "%s: cannot listen on %s: permission denied (ports below 1024 need "
                            "CAP_NET_BIND_SERVICE)\n", prog, addr);
        else
            fprintf(stderr, "%s: cannot listen on %s: %s: %s\n", prog, addr, what, strerror(err));
        return -1;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        format_addr((struct sockaddr *)&ss, sl, text, textlen);
    else
        snprintf(text, textlen, "%s", addr);
    return fd;
}

static void raise_limits(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max;
        rl.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
            /* an unlimited hard limit still stops at fs.nr_open */
            FILE *f = fopen("/proc/sys/fs/nr_open", "r");
            unsigned long nr_open;
            if (f && fscanf(f, "%lu", &nr_open) == 1 && nr_open < want) {
                rl.rlim_cur = nr_open;
                if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
                    fprintf(stderr, "%s: cannot raise RLIMIT_NOFILE: %s\n", prog, strerror(errno));
            }
            if (f)
                fclose(f);
        }
    }
    /* ring memory counts against RLIMIT_MEMLOCK for unprivileged users */
    if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &rl);
    }
}

static void explain_runtime_error(int err, unsigned workers)
{
    fprintf(stderr, "%s: cannot start the runtime: %s\n", prog, strerror(-err));
    switch (-err) {
    case ENOSYS:
        fprintf(stderr, "  This kernel has no io_uring (older than 5.1, or built without CONFIG_IO_URING),\n"
                        "  or a seccomp filter answers io_uring_setup with ENOSYS (some container runtimes).\n"
                        "  Run on a kernel with io_uring, or outside the sandbox that hides the syscall.\n");
        break;
    case EPERM:
        fprintf(stderr, "  io_uring is switched off for this process. Check:\n"
                        "   - sysctl kernel.io_uring_disabled: 0 allows everyone, 1 only members of\n"
                        "     kernel.io_uring_group (and root), 2 nobody; e.g. sysctl -w kernel.io_uring_disabled=0\n"
                        "   - seccomp: Docker's and podman's default profiles block io_uring_setup;\n"
                        "     run with --security-opt seccomp=<profile allowing io_uring_setup,\n"
                        "     io_uring_enter and io_uring_register> (or seccomp=unconfined to test)\n");
        break;
    case ENOMEM: {
        struct rlimit rl;
        char cur[32] = "?";
        if (getrlimit(RLIMIT_MEMLOCK, &rl) == 0) {
            if (rl.rlim_cur == RLIM_INFINITY)
                snprintf(cur, sizeof(cur), "unlimited");
            else
                snprintf(cur, sizeof(cur), "%llu KiB", (unsigned long long)(rl.rlim_cur / 1024));
        }
        fprintf(stderr, "  Not enough locked memory for %u rings (RLIMIT_MEMLOCK is %s; unprivileged\n"
                        "  io_uring memory counts against it), or the machine is out of memory.\n"
                        "  Raise it (ulimit -l unlimited; LimitMEMLOCK=infinity in a systemd unit;\n"
                        "  docker run --ulimit memlock=-1) or start fewer --workers.\n",
                workers, cur);
        break;
    }
    case EAGAIN:
        fprintf(stderr, "  Could not start the worker threads (RLIMIT_NPROC or memory); try fewer --workers.\n");
        break;
    case EINVAL:
        fprintf(stderr, "  The kernel refused the ring setup (an io_uring too old for urt?).\n");
        break;
    default:
        break;
    }
}

int main(int argc, char **argv)
{
    struct server *s = &srv;
    int rc = parse_options(argc, argv, &s->opt);
    if (rc >= 0)
        return rc;

    raise_limits();
    signal(SIGPIPE, SIG_IGN);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0 || (s->sig_fd = signalfd(-1, &set, SFD_CLOEXEC)) < 0) {
        fprintf(stderr, "%s: signalfd: %s\n", prog, strerror(errno));
        return 1;
    }

    s->listen_fd = open_listen_socket(s->opt.addr, s->addr_text, sizeof(s->addr_text));
    if (s->listen_fd < 0)
        return 1;

    urt_config cfg = {
        .workers = s->opt.workers,
        .spin_us = s->opt.spin_us,
        .flags = s->opt.pin ? URT_CONFIG_PIN_WORKERS : 0,
        .rx_buffers = s->opt.rx_buffers,
        .rx_buffer_size = s->opt.rx_buffer_size,
        .cancel_wait_ns = GRACE_NS + NS_PER_SEC,   /* longer than a connection's drain */
        .hibernate_after_ns = s->opt.hibernate_ns,
        .stack_size = s->opt.stack_size,
    };
    int err = urt_runtime_create(&s->rt, &cfg);
    if (err < 0) {
        unsigned long ncpu = (unsigned long)sysconf(_SC_NPROCESSORS_ONLN);
        explain_runtime_error(err, s->opt.workers ? s->opt.workers : (unsigned)ncpu);
        return 1;
    }
    int nw = urt_runtime_stats(s->rt, NULL, 0);
    s->nworkers = nw > 0 ? (unsigned)nw : 1;
    s->counts = aligned_alloc(64, sizeof(*s->counts) * s->nworkers);
    if (!s->counts || (err = urt_notify_create(&s->stop)) < 0) {
        fprintf(stderr, "%s: out of memory\n", prog);
        urt_runtime_destroy(s->rt);
        return 1;
    }
    memset(s->counts, 0, sizeof(*s->counts) * s->nworkers);

    err = urt_runtime_block_on(s->rt, root_task, s, NULL);
    if (err < 0) {
        char line[256];
        int n = snprintf(line, sizeof(line), "%s: urt_runtime_block_on: %s\n", prog, strerror(-err));
        if (n > 0)
            log_put_wait(&log_err, line, (size_t)n, EXIT_LINE_WAIT_MS);
        s->exit_code = 1;
    }
    /* No grace here: the cancellation is what tells each connection to
     * stop; it then drains within the grace period by itself (drain). */
    err = urt_runtime_shutdown(s->rt, 0);
    if (err < 0)
        s->exit_code = 1;
    char line[512];
    size_t len = format_totals(s, "exit", line, sizeof(line));
    if (len)
        log_put_wait(&log_out, line, len, EXIT_LINE_WAIT_MS);
    if (s->opt.stats_s > 0 && (len = format_metrics(s, "exit", line, sizeof(line))))
        log_put_wait(&log_out, line, len, EXIT_LINE_WAIT_MS);
    urt_runtime_destroy(s->rt);
    urt_notify_destroy(s->stop);
    free(s->counts);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    close(s->sig_fd);
    return s->exit_code;
}
