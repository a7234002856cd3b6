/*
 * test_buf_send.c - urt_buf_send: a received buffer sent back without the
 * task waiting for the send, over a Unix stream socketpair or, where a send
 * must wait in the kernel for room, a loopback TCP connection with small
 * buffers (fd[0] is the server's, with a urt_rx on it; fd[1] the test's
 * peer):
 *  - a 4 MiB stream echoed chunk by chunk arrives whole and in order while
 *    the peer reads slowly (sends queue behind a full socket);
 *  - a send that fails shows its error once, later; every buffer comes back;
 *  - bad input: -EINVAL for a NULL or empty urt_buf, -EBADF for fd < 0 (the
 *    buffer still the caller's, who releases it: more chunks than the rx
 *    may hold pass through);
 *  - a task that ends with a send still in flight leaves it to finish;
 *  - urt_close right after urt_buf_send delivers the data, then the EOF;
 *  - sends on the fd of the send in flight queue behind it without a wait
 *    (up to URT_BUF_SEND_QUEUE bytes) and arrive in order, also when the
 *    task then ends or closes the fd; a send on another fd waits; a reset
 *    drops the queue and reports once;
 *  - outside a task (a plain thread) it sends synchronously.
 * A cut, reordered or lost send shows as a byte mismatch or a short count;
 * a buffer never given back as -ENOBUFS from urt_rx_recv, or a leak (ASan).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/sock_test.h"

#define STREAM_LEN ((size_t)4 << 20)

static uint8_t pat(size_t off) { return (uint8_t)((off * 2654435761u) >> 13); }

static void pair(int fd[2])
{
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd), 0);
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* A TCP connection over loopback (tcp_pair: fd[0] the accepted end, fd[1]
 * the client's) with small buffers, so that a few sends fill it. */
static void small_tcp_pair(int fd[2])
{
    tcp_pair(fd);
    int small = 4096;
    setsockopt(fd[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    setsockopt(fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* ---- the echo server task ------------------------------------------------------ */

typedef struct echo {
    int fd;
    int close_with_urt;          /* urt_close(fd) at the end (else the test closes it) */
    ssize_t recv_err;            /* the receive's last result (0: EOF) */
    int send_err;                /* first error urt_buf_send or urt_buf_flush returned */
    int errors;                  /* how many of their results were errors */
    int flush_after;             /* what a second urt_buf_flush returned */
    int enobufs;                 /* urt_rx_recv said -ENOBUFS */
    size_t bytes;
} echo;

static void note(echo *e, int r)
{
    if (r < 0) {
        if (!e->send_err)
            e->send_err = r;
        e->errors++;
    }
}

static void *echo_task(void *arg)
{
    echo *e = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, e->fd) != 0)
        return (void *)1;
    for (;;) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n == -ENOBUFS)
            e->enobufs++;
        if (n <= 0) {
            e->recv_err = n;
            break;
        }
        e->bytes += (size_t)n;
        int r = urt_buf_send(e->fd, &b);
        note(e, r);
        if (r == 0 && b.data)
            return (void *)2;   /* on success the buffer must have passed to urt */
        if (r < 0 && !b.data)
            return (void *)3;   /* on an error before the send it stays ours */
        urt_buf_release(&b);   /* (nothing when it passed) */
    }
    note(e, urt_buf_flush());
    e->flush_after = urt_buf_flush();
    urt_rx_close(rx);
    if (e->close_with_urt)
        urt_close(e->fd);
    return NULL;
}

typedef struct peer {
    int fd;
    size_t len;
    int slow;                    /* pause now and then while reading */
    size_t got;
    size_t bad_at;               /* first mismatching offset, or SIZE_MAX */
} peer;

static void *peer_write(void *arg)
{
    peer *p = arg;
    uint8_t *buf = malloc(65536);
    for (size_t off = 0; off < p->len;) {
        size_t n = p->len - off < 65536 ? p->len - off : 65536;
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(off + i);
        ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(p->fd, SHUT_WR);
    free(buf);
    return NULL;
}

/* Read to the end of the stream (or p->len bytes, when not 0), checking
 * the pattern. */
static void peer_read(peer *p)
{
    uint8_t buf[8192];
    p->got = 0;
    p->bad_at = SIZE_MAX;
    for (unsigned k = 0; !p->len || p->got < p->len; k++) {
        size_t want = p->len && p->len - p->got < sizeof(buf) ? p->len - p->got : sizeof(buf);
        ssize_t n = recv(p->fd, buf, want, 0);
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n && p->bad_at == SIZE_MAX; i++)
            if (buf[i] != pat(p->got + (size_t)i))
                p->bad_at = p->got + (size_t)i;
        p->got += (size_t)n;
        if (p->slow && k % 64 == 0) {
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
}

Test(buf_send, a_stream_echoed_chunk_by_chunk_arrives_whole_and_in_order, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        int fd[2];
        pair(fd);
        urt_runtime *rt = rt_new(w);
        echo e = {.fd = fd[0]};
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, echo_task, &e), 0);
        peer p = {.fd = fd[1], .len = STREAM_LEN, .slow = 1};
        pthread_t wr;
        cr_assert_eq(pthread_create(&wr, NULL, peer_write, &p), 0);
        /* the server never closes: read exactly what was sent */
        uint8_t buf[8192];
        size_t got = 0, bad = SIZE_MAX;
        for (unsigned k = 0; got < STREAM_LEN; k++) {
            ssize_t n = recv(fd[1], buf, sizeof(buf), 0);
            if (n <= 0)
                break;
            for (ssize_t i = 0; i < n && bad == SIZE_MAX; i++)
                if (buf[i] != pat(got + (size_t)i))
                    bad = got + (size_t)i;
            got += (size_t)n;
            if (k % 64 == 0) {
                struct timespec ts = {0, 2 * 1000 * 1000};
                nanosleep(&ts, NULL);
            }
        }
        pthread_join(wr, NULL);
        void *ret = (void *)9;
        cr_assert_eq(urt_join(t, &ret), 0);
        cr_assert_null(ret, "server task failed: %p", ret);
        cr_assert_eq(got, STREAM_LEN, "workers %u: %zu of %zu bytes came back", w, got, STREAM_LEN);
        cr_assert_eq(bad, SIZE_MAX, "workers %u: byte %zu differs", w, bad);
        cr_assert_eq(e.recv_err, 0);
        cr_assert_eq(e.send_err, 0, "send error %d", e.send_err);
        cr_assert_eq(e.enobufs, 0);
        urt_runtime_destroy(rt);
        close(fd[0]);
        close(fd[1]);
    }
}

Test(buf_send, a_failed_send_reports_its_error_once_and_gives_every_buffer_back, .timeout = 60)
{
    int fd[2];
    pair(fd);
    /* data waits for the server, and nobody will read its answers */
    static uint8_t data[65536];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = pat(i);
    cr_assert_eq(send(fd[1], data, sizeof(data), 0), (ssize_t)sizeof(data));
    close(fd[1]);
    urt_runtime *rt = rt_new(1);
    echo e = {.fd = fd[0]};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, echo_task, &e), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(e.bytes, sizeof(data), "the server received %zu bytes", e.bytes);
    cr_assert(e.send_err == -EPIPE || e.send_err == -ECONNRESET, "first error %d", e.send_err);
    /* one failed send, reported once, and every later chunk refused with it
     * or sent into the same closed socket: never more errors than chunks */
    cr_assert_geq(e.errors, 1);
    cr_assert_eq(e.flush_after, 0, "the error was reported twice");
    urt_runtime_destroy(rt);   /* ASan: no record or buffer left behind */
    close(fd[0]);
}

/* ---- bad input ------------------------------------------------------------------- */

typedef struct bad {
    int fd;
    atomic_int done;             /* the task needs no more chunks */
    int null_r, empty_r, badfd_r, badfd_count, enobufs, closed_r, flush_r;
} bad;

static void *bad_task(void *arg)
{
    bad *b = arg;
    b->null_r = urt_buf_send(b->fd, NULL);
    urt_buf empty = {0};
    b->empty_r = urt_buf_send(b->fd, &empty);
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, b->fd) != 0)
        return (void *)1;
    /* more chunks than one rx may hold: each must come back */
    for (int i = 0; i < 3 * URT_RX_MAX_HELD; i++) {
        urt_buf c;
        ssize_t n = urt_rx_recv(rx, &c);
        if (n == -ENOBUFS) {
            b->enobufs++;
            break;
        }
        if (n <= 0)
            return (void *)2;
        int r = urt_buf_send(-1, &c);
        if (r == -EBADF && c.data)
            b->badfd_count++;   /* refused, and still ours */
        b->badfd_r = r;
        urt_buf_release(&c);
    }
    /* an fd number that is not open: queued, then its error comes back */
    int spare = dup(b->fd);
    close(spare);
    urt_buf c;
    if (urt_rx_recv(rx, &c) <= 0)
        return (void *)3;
    b->closed_r = urt_buf_send(spare, &c);
    b->flush_r = urt_buf_flush();
    atomic_store(&b->done, 1);
    urt_rx_close(rx);
    return NULL;
}

Test(buf_send, bad_input_is_refused_and_loses_no_buffer, .timeout = 60)
{
    int fd[2];
    pair(fd);
    urt_runtime *rt = rt_new(1);
    bad b = {.fd = fd[0]};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, bad_task, &b), 0);
    /* one small message at a time, so each is a chunk of its own */
    /* until the task has had its chunks (some may arrive together as one) */
    for (int i = 0; !atomic_load(&b.done) && i < 100000; i++) {
        char m[8] = "chunk";
        cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
        struct timespec ts = {0, 200 * 1000};
        nanosleep(&ts, NULL);
    }
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), 0);
    cr_assert_null(ret, "bad_task failed at %p", ret);
    cr_assert_eq(b.null_r, -EINVAL);
    cr_assert_eq(b.empty_r, -EINVAL);
    cr_assert_eq(b.enobufs, 0, "a buffer refused with -EBADF could not be given back");
    cr_assert_eq(b.badfd_count, 3 * URT_RX_MAX_HELD);
    cr_assert_eq(b.closed_r, 0, "queued: the error comes later");
    cr_assert_eq(b.flush_r, -EBADF, "flush %d", b.flush_r);
    urt_runtime_destroy(rt);
    close(fd[0]);
    close(fd[1]);
}

/* Fill the socket toward the peer (who does not read) until not one byte
 * more fits, even after the kernel has moved what it could to the peer's
 * receive buffer: pass after pass, 20 ms apart, until a pass writes
 * nothing. gen(arg, off) gives the byte at stream offset off; returns the
 * bytes written. */
static size_t fill_socket(int fd, uint8_t (*gen)(size_t off), size_t off0)
{
    uint8_t tmp[4096];
    size_t total = 0;
    for (;;) {
        size_t pass = 0;
        for (size_t size = sizeof(tmp); size > 0; size /= 4) {
            for (;;) {
                for (size_t i = 0; i < size; i++)
                    tmp[i] = gen(off0 + total + pass + i);
                ssize_t w = send(fd, tmp, size, MSG_DONTWAIT | MSG_NOSIGNAL);
                if (w <= 0)
                    break;   /* full (EAGAIN) */
                pass += (size_t)w;
            }
        }
        total += pass;
        if (pass == 0 && total > 0)
            return total;
        urt_sleep(20ull * 1000 * 1000);
    }
}

static uint8_t gen_x(size_t off) { (void)off; return 'x'; }

/* ---- a send in flight when the task ends, or when it closes the fd ------------------- */

typedef struct late {
    int fd;
    int close_with_urt;
    size_t filled;               /* bytes written plainly before the chunk */
    int send_r;
    atomic_int queued;           /* the chunk is handed over: the peer may read */
} late;

/* Fill the socket toward the peer with the pattern so that the next send
 * parks in the kernel, then urt_buf_send one received chunk of the pattern's
 * next bytes, and end (or urt_close the fd) at once. */
static void *late_task(void *arg)
{
    late *l = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, l->fd) != 0)
        return (void *)1;
    urt_buf c;
    ssize_t n = urt_rx_recv(rx, &c);
    if (n <= 0)
        return (void *)2;
    l->filled = fill_socket(l->fd, pat, 0);
    /* the chunk holds the pattern from 0: rewrite it to continue the stream */
    for (ssize_t i = 0; i < n; i++)
        ((uint8_t *)c.data)[i] = pat(l->filled + (size_t)i);
    l->send_r = urt_buf_send(l->fd, &c);
    atomic_store(&l->queued, 1);
    urt_rx_close(rx);
    if (l->close_with_urt)
        urt_close(l->fd);
    return NULL;
}

static void late_case(int close_with_urt)
{
    int fd[2];
    small_tcp_pair(fd);
    urt_runtime *rt = rt_new(1);
    late l = {.fd = fd[0], .close_with_urt = close_with_urt};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, late_task, &l), 0);
    uint8_t m[1000];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = pat(i);
    cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
    peer p = {.fd = fd[1]};
    void *ret = (void *)9;
    if (!close_with_urt) {
        /* the task ends while its send waits in the kernel for room */
        cr_assert_eq(urt_join(t, &ret), 0);
        cr_assert_null(ret, "late_task failed at %p", ret);
        p.len = l.filled + sizeof(m);   /* the fd stays open: read what should come */
        peer_read(&p);
        /* nothing more: a short wait for a stray byte */
        struct timeval tv = {.tv_usec = 100 * 1000};
        setsockopt(fd[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        char extra;
        cr_assert_lt(recv(fd[1], &extra, 1, 0), 0, "more bytes than were sent");
    } else {
        /* urt_close waits for the send, which waits for us to read: once the
         * socket is full and the chunk handed over, read to the close's end
         * of the stream, then join */
        while (!atomic_load(&l.queued)) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        peer_read(&p);
        cr_assert_eq(urt_join(t, &ret), 0);
        cr_assert_null(ret, "late_task failed at %p", ret);
    }
    cr_assert_eq(l.send_r, 0);
    cr_assert_gt(l.filled, 0);
    cr_assert_eq(p.bad_at, SIZE_MAX, "byte %zu differs", p.bad_at);
    cr_assert_eq(p.got, l.filled + sizeof(m), "%zu bytes arrived, %zu plain + %zu sent with urt_buf_send", p.got,
                 l.filled, sizeof(m));
    urt_runtime_destroy(rt);   /* ASan: the record was freed by its CQE */
    if (!close_with_urt)
        close(fd[0]);
    close(fd[1]);
}

Test(buf_send, a_task_that_ends_with_a_send_in_flight_leaves_it_to_finish, .timeout = 60)
{
    late_case(0);
}

Test(buf_send, urt_close_after_urt_buf_send_delivers_the_data_then_the_end, .timeout = 60)
{
    late_case(1);
}

/* ---- sends queued behind the one in flight -------------------------------------------- */

#define QCHUNKS 3

typedef struct queue {
    int fd, other_fd;
    int close_with_urt;
    size_t filled;               /* bytes written plainly before the chunks */
    size_t sent;                 /* bytes handed to urt_buf_send */
    int send_r[QCHUNKS];
    int other_r;                 /* a send on another fd while one is in flight */
    int flush_r;
    atomic_int step;             /* chunks handed over: the peer sends the next */
} queue;

/* Fill the socket so that the first send parks in the kernel, then
 * urt_buf_send QCHUNKS received chunks rewritten to continue the pattern,
 * each within a 50 ms bound: the later ones must not wait for the first. */
static void *queue_task(void *arg)
{
    queue *q = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, q->fd) != 0)
        return (void *)1;
    for (int i = 0; i < QCHUNKS; i++) {
        urt_buf c;
        ssize_t n = urt_rx_recv(rx, &c);
        if (n <= 0)
            return (void *)2;
        if (i == 0)
            q->filled = fill_socket(q->fd, pat, 0);
        for (ssize_t k = 0; k < n; k++)
            ((uint8_t *)c.data)[k] = pat(q->filled + q->sent + (size_t)k);
        uint64_t old = urt_op_timeout(50ull * 1000 * 1000);
        q->send_r[i] = urt_buf_send(q->fd, &c);
        urt_op_timeout(old);
        if (q->send_r[i] == 0)
            q->sent += (size_t)n;
        else
            urt_buf_release(&c);
        atomic_store(&q->step, i + 1);
    }
    if (q->other_fd >= 0) {
        urt_buf o;
        if (urt_rx_recv(rx, &o) <= 0)
            return (void *)3;
        uint64_t old = urt_op_timeout(50ull * 1000 * 1000);
        q->other_r = urt_buf_send(q->other_fd, &o);   /* must wait for the first: out of time */
        urt_buf_release(&o);
        q->flush_r = urt_buf_flush();   /* out of time too */
        urt_op_timeout(old);
    }
    urt_rx_close(rx);
    if (q->close_with_urt)
        urt_close(q->fd);
    return NULL;
}

static void queue_case(int close_with_urt, int other)
{
    int fd[2], o[2] = {-1, -1};
    small_tcp_pair(fd);
    if (other)
        pair(o);
    urt_runtime *rt = rt_new(1);
    queue q = {.fd = fd[0], .other_fd = o[0], .close_with_urt = close_with_urt};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, queue_task, &q), 0);
    char m[300];
    memset(m, 'm', sizeof(m));
    for (int i = 0; i < QCHUNKS + other; i++) {   /* a chunk each, once the last is handed over */
        cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
        while (i < QCHUNKS && atomic_load(&q.step) < i + 1) {   /* chunk i handed over: the next is a chunk of its own */
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    while (atomic_load(&q.step) < QCHUNKS) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* the task's timed waits end without us reading; its urt_close (or its
     * end) waits for us: read to the end, then join */
    peer p = {.fd = fd[1], .len = close_with_urt ? 0 : q.filled + q.sent};
    peer_read(&p);
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), 0);
    cr_assert_null(ret, "queue_task failed at %p", ret);
    for (int i = 0; i < QCHUNKS; i++)
        cr_assert_eq(q.send_r[i], 0, "send %d behind the one in flight: %d", i, q.send_r[i]);
    cr_assert_eq(q.sent, (size_t)QCHUNKS * sizeof(m));
    if (other) {
        cr_assert_eq(q.other_r, -ETIMEDOUT, "a send on another fd did not wait: %d", q.other_r);
        cr_assert_eq(q.flush_r, -ETIMEDOUT, "flush %d", q.flush_r);
    }
    cr_assert_eq(p.bad_at, SIZE_MAX, "byte %zu differs", p.bad_at);
    cr_assert_eq(p.got, q.filled + q.sent, "%zu bytes arrived, %zu plain + %zu sent with urt_buf_send", p.got,
                 q.filled, q.sent);
    urt_runtime_destroy(rt);   /* ASan: the queue and the record were freed */
    if (!close_with_urt)
        close(fd[0]);
    close(fd[1]);
    if (other) {
        close(o[0]);
        close(o[1]);
    }
}

Test(buf_send, sends_behind_the_one_in_flight_queue_and_arrive_in_order_after_the_task_ends, .timeout = 60)
{
    queue_case(0, 0);
}

Test(buf_send, urt_close_delivers_the_queued_sends_then_the_end, .timeout = 60)
{
    queue_case(1, 0);
}

Test(buf_send, a_send_on_another_fd_waits_for_the_queue_to_drain, .timeout = 60)
{
    queue_case(1, 1);
}

/* A reset while sends are queued: the queue is dropped, the error reported
 * once (by the flush), every buffer given back. */
typedef struct reset {
    int fd;
    int send_r[QCHUNKS];
    int flush_r, flush_again;
    atomic_int step;
} reset;

static void *reset_task(void *arg)
{
    reset *r = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, r->fd) != 0)
        return (void *)1;
    for (int i = 0; i < QCHUNKS; i++) {
        urt_buf c;
        if (urt_rx_recv(rx, &c) <= 0)
            return (void *)2;
        if (i == 0)
            fill_socket(r->fd, gen_x, 0);
        r->send_r[i] = urt_buf_send(r->fd, &c);
        if (r->send_r[i])
            urt_buf_release(&c);
        atomic_store(&r->step, i + 1);
    }
    r->flush_r = urt_buf_flush();   /* the peer resets while it waits */
    r->flush_again = urt_buf_flush();
    urt_rx_close(rx);
    return NULL;
}

Test(buf_send, a_reset_drops_the_queued_sends_and_reports_once, .timeout = 60)
{
    int fd[2];
    small_tcp_pair(fd);
    urt_runtime *rt = rt_new(1);
    reset r = {.fd = fd[0]};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, reset_task, &r), 0);
    char m[300];
    memset(m, 'r', sizeof(m));
    for (int i = 0; i < QCHUNKS; i++) {
        cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
        while (atomic_load(&r.step) < i + 1) {
            struct timespec ts = {0, 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(fd[1]);   /* an RST toward the stuck send */
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), 0);
    cr_assert_null(ret, "reset_task failed at %p", ret);
    for (int i = 0; i < QCHUNKS; i++)
        cr_assert_eq(r.send_r[i], 0, "send %d: %d", i, r.send_r[i]);
    cr_assert(r.flush_r == -ECONNRESET || r.flush_r == -EPIPE, "flush %d", r.flush_r);
    cr_assert_eq(r.flush_again, 0, "the error came back twice: %d", r.flush_again);
    urt_runtime_destroy(rt);   /* ASan: the dropped queue was freed */
    close(fd[0]);
}

/* ---- outside a task ------------------------------------------------------------------ */

typedef struct handoff {
    int fd;
    urt_buf b;
    ssize_t n;
} handoff;

static void *take_one(void *arg)
{
    handoff *h = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, h->fd) != 0)
        return (void *)1;
    h->n = urt_rx_recv(rx, &h->b);
    urt_rx_close(rx);   /* the buffer stays valid until released */
    return NULL;
}

Test(buf_send, a_plain_thread_sends_synchronously, .timeout = 60)
{
    int fd[2];
    pair(fd);
    urt_runtime *rt = rt_new(1);
    handoff h = {.fd = fd[0]};
    uint8_t m[300];
    for (size_t i = 0; i < sizeof(m); i++)
        m[i] = pat(i);
    cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
    void *ret = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, take_one, &h, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(h.n, (ssize_t)sizeof(m));
    cr_assert_eq(urt_buf_send(fd[0], &h.b), 0);
    cr_assert_null(h.b.data);
    cr_assert_eq(urt_buf_flush(), -EPERM);
    uint8_t got[300];
    cr_assert_eq(recv(fd[1], got, sizeof(got), MSG_WAITALL), (ssize_t)sizeof(got));
    cr_assert_eq(memcmp(got, m, sizeof(m)), 0);
    urt_runtime_destroy(rt);
    close(fd[0]);
    close(fd[1]);
}

/* ---- a peer that never reads -------------------------------------------------------- */

typedef struct stuck {
    int fd;
    int second_r, close_r, flush_r;
} stuck;

static void *stuck_task(void *arg)
{
    stuck *k = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, k->fd) != 0)
        return (void *)1;
    urt_buf a, b;
    if (urt_rx_recv(rx, &a) <= 0)
        return (void *)2;
    fill_socket(k->fd, gen_x, 0);
    /* waits in the kernel for room that never comes */
    if (urt_buf_send(k->fd, &a) != 0)
        return (void *)3;
    if (urt_rx_recv(rx, &b) <= 0)
        return (void *)4;
    uint64_t old = urt_op_timeout(50ull * 1000 * 1000);
    k->second_r = urt_buf_send(k->fd, &b);   /* queued behind the first, no wait */
    urt_buf_release(&b);                     /* (nothing: it passed) */
    k->flush_r = urt_buf_flush();            /* waits for both: runs out of time */
    urt_rx_close(rx);
    k->close_r = urt_close(k->fd);   /* out of time too: the close ends the send */
    urt_op_timeout(old);
    return NULL;
}

static void stuck_case(void)
{
    int fd[2];
    small_tcp_pair(fd);
    urt_runtime *rt = rt_new(1);
    stuck k = {.fd = fd[0]};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, stuck_task, &k), 0);
    char m[4096] = "first";
    cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
    struct timespec ts = {0, 100 * 1000 * 1000};
    nanosleep(&ts, NULL);   /* the second arrives as a chunk of its own */
    cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), 0);
    cr_assert_null(ret, "stuck_task failed at %p", ret);
    cr_assert_eq(k.second_r, 0, "second send %d", k.second_r);
    cr_assert_eq(k.flush_r, -ETIMEDOUT, "flush %d", k.flush_r);
    cr_assert_eq(k.close_r, 0);
    urt_runtime_destroy(rt);   /* ASan: the cut send's record and buffer are freed */
    close(fd[1]);
}

Test(buf_send, a_peer_that_never_reads_times_out_the_flush_and_the_close, .timeout = 60)
{
    stuck_case();
}


/* ---- cancelled while it waits for the send before: the buffer stays the caller's ------- */

typedef struct full {
    int fd;
    int sent_ok;                 /* urt_buf_send calls that returned 0 */
    size_t queued;               /* bytes of those after the first (queued behind it) */
    size_t refused_len;          /* the chunk that had to wait for room */
    int last_r;
    int still_ours;              /* the refused buffer was left to the caller */
} full;

static void *full_task(void *arg)
{
    full *f = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, f->fd) != 0)
        return (void *)1;
    fill_socket(f->fd, gen_x, 0);
    for (;;) {
        urt_buf b;
        if (urt_rx_recv(rx, &b) <= 0)
            return (void *)2;
        size_t len = b.len;
        int r = urt_buf_send(f->fd, &b);   /* one in flight, a full queue, then a wait for room */
        f->last_r = r;
        if (r < 0) {
            f->still_ours = b.data != NULL;
            f->refused_len = len;
            urt_buf_release(&b);
            break;
        }
        if (f->sent_ok++)
            f->queued += len;
    }
    urt_rx_close(rx);
    return NULL;
}

Test(buf_send, a_send_cancelled_while_waiting_leaves_the_buffer_to_the_caller, .timeout = 60)
{
    int fd[2];
    small_tcp_pair(fd);
    urt_runtime *rt = rt_new(1);
    full f = {.fd = fd[0]};
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, full_task, &f), 0);
    char m[4000] = "chunk";
    for (int i = 0; i < 8; i++) {   /* each a chunk of its own, more than the queue holds */
        cr_assert_eq(send(fd[1], m, sizeof(m), 0), (ssize_t)sizeof(m));
        struct timespec ts = {0, 30 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    cr_assert_eq(urt_cancel(t), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_join(t, &ret), -ECANCELED);   /* cancelled before it finished */
    cr_assert_null(ret, "full_task failed at %p", ret);
    cr_assert_eq(f.last_r, -ECANCELED, "the wait for room ended with %d", f.last_r);
    cr_assert(f.still_ours, "the refused buffer was taken");
    cr_assert_geq(f.sent_ok, 2, "%d sends went through before the wait", f.sent_ok);
    cr_assert_leq(f.queued, URT_BUF_SEND_QUEUE, "%zu bytes queued", f.queued);
    cr_assert_gt(f.queued + f.refused_len, URT_BUF_SEND_QUEUE, "a chunk of %zu waited with %zu queued",
                 f.refused_len, f.queued);
    close(fd[1]);   /* the stuck sends now fail, and their records go */
    urt_runtime_destroy(rt);
    close(fd[0]);
}
