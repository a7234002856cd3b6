/*
 * test_net_timeout_cancel.c - a receive on a TCP connection that waits past
 * the task's urt_op_timeout returns -ETIMEDOUT and the connection stays
 * usable, for urt_recv and urt_rx_recv; urt_cancel from another task ends a
 * pending urt_recv, urt_rx_recv, urt_accept and urt_listener_accept with
 * -ECANCELED, and what was cancelled leaves the socket, the buffer pool and
 * the listening socket as they were: the next acceptor on that socket gets
 * the next connection.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/net_test.h"

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

/* A listening socket on 127.0.0.1, port chosen by the kernel. */
static int listen_loopback(struct sockaddr_in *addr)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, 16), 0);
    socklen_t alen = sizeof(*addr);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)addr, &alen), 0);
    return lfd;
}

/* A connected TCP pair on loopback: fds[0] the accepted end, fds[1] the client. */
static void tcp_pair(int fds[2])
{
    struct sockaddr_in addr;
    int lfd = listen_loopback(&addr);
    fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fds[1], 0);
    cr_assert_eq(connect(fds[1], (struct sockaddr *)&addr, sizeof(addr)), 0);
    fds[0] = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(fds[0], 0);
    close(lfd);
    /* the test thread's own reads on these never hang */
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fds[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fds[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* ---- urt_op_timeout ------------------------------------------------------------------------------- */

#define TIMEOUT_NS (20 * MS)

typedef struct timed {
    int fds[2];
    ssize_t first, second, third, fourth, eof;
    uint64_t elapsed_first, elapsed_third;
    bool cancelled;
    char got2[8], got4[8];
} timed;

/* Peer writes come from the task itself with plain send(): the order of
 * events does not depend on timing. */
static void *recv_times_out(void *arg)
{
    timed *t = arg;
    char buf[8];
    uint64_t old = urt_op_timeout(TIMEOUT_NS);
    uint64_t t0 = urt_now();
    t->first = urt_recv(t->fds[0], buf, sizeof(buf), 0);
    t->elapsed_first = urt_now() - t0;
    if (send(t->fds[1], "abc", 3, 0) != 3)
        return (void *)1;
    t->second = urt_recv(t->fds[0], t->got2, sizeof(t->got2), 0);   /* data waiting: no timeout */
    t0 = urt_now();
    t->third = urt_recv(t->fds[0], buf, sizeof(buf), 0);
    t->elapsed_third = urt_now() - t0;
    urt_op_timeout(old);
    t->cancelled = urt_cancelled();
    if (send(t->fds[1], "defg", 4, 0) != 4)
        return (void *)2;
    t->fourth = urt_recv(t->fds[0], t->got4, sizeof(t->got4), 0);
    shutdown(t->fds[1], SHUT_WR);
    t->eof = urt_recv(t->fds[0], buf, sizeof(buf), 0);
    return NULL;
}

static void *rx_recv_times_out(void *arg)
{
    timed *t = arg;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, t->fds[0]) != 0)
        return (void *)3;
    urt_buf b;
    uint64_t old = urt_op_timeout(TIMEOUT_NS);
    uint64_t t0 = urt_now();
    t->first = urt_rx_recv(rx, &b);
    t->elapsed_first = urt_now() - t0;
    if (t->first > 0)
        urt_buf_release(&b);
    if (send(t->fds[1], "abc", 3, 0) != 3)
        return (void *)1;
    t->second = urt_rx_recv(rx, &b);
    if (t->second > 0) {
        memcpy(t->got2, b.data, b.len < sizeof(t->got2) ? b.len : sizeof(t->got2));
        urt_buf_release(&b);
    }
    t0 = urt_now();
    t->third = urt_rx_recv(rx, &b);   /* the multishot receive is armed now */
    t->elapsed_third = urt_now() - t0;
    if (t->third > 0)
        urt_buf_release(&b);
    urt_op_timeout(old);
    t->cancelled = urt_cancelled();
    if (send(t->fds[1], "defg", 4, 0) != 4)
        return (void *)2;
    t->fourth = urt_rx_recv(rx, &b);
    if (t->fourth > 0) {
        memcpy(t->got4, b.data, b.len < sizeof(t->got4) ? b.len : sizeof(t->got4));
        urt_buf_release(&b);
    }
    shutdown(t->fds[1], SHUT_WR);
    t->eof = urt_rx_recv(rx, &b);
    if (t->eof > 0)
        urt_buf_release(&b);
    urt_rx_close(rx);
    return NULL;
}

static void run_timed(urt_fn fn, const char *name)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        timed t;
        memset(&t, 0, sizeof(t));
        t.first = t.second = t.third = t.fourth = t.eof = 12345;
        tcp_pair(t.fds);
        void *err = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, fn, &t, &err), 0, "the task itself is not cancelled");
        cr_assert_null(err, "%s: step %d failed", name, (int)(intptr_t)err);
        cr_assert_eq(t.first, -ETIMEDOUT, "%u workers: %s with nothing to read gave %zd", w, name, t.first);
        cr_assert_geq(t.elapsed_first, TIMEOUT_NS, "%s: the timeout fired early", name);
        cr_assert_eq(t.second, 3, "%u workers: %s of waiting data gave %zd", w, name, t.second);
        cr_assert_eq(memcmp(t.got2, "abc", 3), 0);
        cr_assert_eq(t.third, -ETIMEDOUT, "%u workers: the second timed %s gave %zd", w, name, t.third);
        cr_assert_geq(t.elapsed_third, TIMEOUT_NS, "%s: the second timeout fired early", name);
        cr_assert(!t.cancelled, "a timeout is not a cancellation");
        cr_assert_eq(t.fourth, 4, "%u workers: %s after the timeouts gave %zd", w, name, t.fourth);
        cr_assert_eq(memcmp(t.got4, "defg", 4), 0, "%s: got %.4s", name, t.got4);
        cr_assert_eq(t.eof, 0, "%u workers: %s at the end of the stream gave %zd", w, name, t.eof);
        close(t.fds[0]);
        close(t.fds[1]);
        urt_runtime_destroy(rt);
    }
}

Test(net_timeout_cancel, recv_past_its_op_timeout_returns_etimedout_and_the_connection_stays_usable, .timeout = 60)
{
    run_timed(recv_times_out, "urt_recv");
}

Test(net_timeout_cancel, rx_recv_past_its_op_timeout_returns_etimedout_and_the_connection_stays_usable,
     .timeout = 60)
{
    run_timed(rx_recv_times_out, "urt_rx_recv");
}

/* ---- urt_cancel from another task --------------------------------------------------------------- */

typedef struct victim {
    int fds[2];
    ssize_t res;
    bool after_cancel_fails;
} victim;

typedef struct canceller {
    urt_runtime *rt;
    urt_task *target;
    const char *what;
    uint64_t linger_ns;          /* how long to leave the target waiting first */
    int res;
    bool seen;
} canceller;

static void *cancel_when_waiting(void *arg)
{
    canceller *c = arg;
    for (int i = 0; i < 5000 && !c->seen; i++) {
        c->seen = task_waits_on(c->rt, c->target, c->what);
        if (!c->seen)
            urt_sleep(MS);
    }
    if (c->linger_ns)
        urt_sleep(c->linger_ns);
    c->res = urt_cancel(c->target);
    return NULL;
}

/* Spawns the target and a task that cancels it once it waits in `what`;
 * joins both; returns the target's join result. */
static int cancel_target(urt_runtime *rt, urt_fn fn, void *arg, const char *what, uint64_t linger_ns,
                         canceller *c)
{
    urt_task *t = NULL, *ct = NULL;
    *c = (canceller){.rt = rt, .what = what, .linger_ns = linger_ns, .res = 1};
    cr_assert_eq(urt_spawn(rt, &t, fn, arg), 0);
    c->target = t;
    cr_assert_eq(urt_spawn(rt, &ct, cancel_when_waiting, c), 0);
    cr_assert_eq(urt_join(ct, NULL), 0);
    cr_assert(c->seen, "the target never showed as waiting in %s", what);
    cr_assert_eq(c->res, 0, "urt_cancel gave %d", c->res);
    return urt_join(t, NULL);
}

static void *recv_until_cancelled(void *arg)
{
    victim *v = arg;
    char buf[16];
    v->res = urt_recv(v->fds[0], buf, sizeof(buf), 0);
    v->after_cancel_fails = urt_recv(v->fds[0], buf, sizeof(buf), 0) == -ECANCELED;
    return NULL;
}

Test(net_timeout_cancel, cancel_from_another_task_ends_a_pending_recv_and_leaves_the_data_in_the_socket,
     .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        victim v = {.res = 12345};
        tcp_pair(v.fds);
        canceller c;
        int jr = cancel_target(rt, recv_until_cancelled, &v, "recv", 0, &c);
        cr_assert_eq(jr, -ECANCELED, "%u workers: join of the cancelled task gave %d", w, jr);
        cr_assert_eq(v.res, -ECANCELED, "%u workers: the pending urt_recv gave %zd", w, v.res);
        cr_assert(v.after_cancel_fails, "a urt_recv after the cancel did not give -ECANCELED");
        /* nothing was taken from the stream: what comes next is all there */
        cr_assert_eq(send(v.fds[1], "after", 5, 0), 5);
        char buf[8] = {0};
        cr_assert_eq(recv_nointr(v.fds[0], buf, sizeof(buf), 0), 5);
        cr_assert_eq(memcmp(buf, "after", 5), 0);
        close(v.fds[0]);
        close(v.fds[1]);
        urt_runtime_destroy(rt);
    }
}

/* With a pool of 4 buffers of 64 bytes per worker, a stream of 64 KiB runs
 * through every buffer many times over. */
#define POOL_BUFS    4
#define POOL_BUF_LEN 64
#define AFTER_BYTES  (64u * 1024)

static uint8_t pattern(uint64_t off) { return (uint8_t)((uint32_t)off * 2654435761u >> 24); }

typedef struct rx_victim {
    int fds[2];
    ssize_t res;
    int close_res;
    bool after_cancel_fails;
    atomic_int phase2;
    /* the stream received after the cancel, under the cancel shield */
    uint64_t received, first_bad;
    ssize_t after_err;
} rx_victim;

static void rx_stream_sink(rx_victim *v)
{
    v->first_bad = UINT64_MAX;
    uint64_t old = urt_op_timeout(10 * SEC);
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, v->fds[0]);
    if (r != 0) {
        v->after_err = r;
        return;
    }
    for (int i = 0; i < 1000000 && v->received < AFTER_BYTES; i++) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n <= 0) {
            v->after_err = n == 0 ? -EPIPE : n;
            break;
        }
        const uint8_t *p = b.data;
        for (size_t k = 0; k < b.len; k++)
            if (p[k] != pattern(v->received + k) && v->first_bad == UINT64_MAX)
                v->first_bad = v->received + k;
        v->received += b.len;
        urt_buf_release(&b);
    }
    urt_rx_close(rx);
    urt_op_timeout(old);
}

/* The cancelled task then receives a stream through a new urt_rx on the same
 * socket, under the cancel shield: same worker, same pool of buffers. */
static void *rx_recv_until_cancelled(void *arg)
{
    rx_victim *v = arg;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, v->fds[0]);
    if (r != 0) {
        v->res = 1000 + r;
        atomic_store(&v->phase2, 1);
        return NULL;
    }
    urt_buf b;
    v->res = urt_rx_recv(rx, &b);
    if (v->res > 0)
        urt_buf_release(&b);
    ssize_t again = urt_rx_recv(rx, &b);
    if (again > 0)
        urt_buf_release(&b);
    v->after_cancel_fails = again == -ECANCELED;
    v->close_res = urt_rx_close(rx);
    bool old = urt_cancel_shield(true);
    atomic_store(&v->phase2, 1);
    rx_stream_sink(v);
    urt_cancel_shield(old);
    return NULL;
}

Test(net_timeout_cancel, cancel_from_another_task_ends_a_pending_rx_recv_and_the_pool_stays_whole, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_config cfg = {.workers = w, .rx_buffers = POOL_BUFS, .rx_buffer_size = POOL_BUF_LEN};
        urt_runtime *rt = rt_new_cfg(&cfg);
        rx_victim v;
        memset(&v, 0, sizeof(v));
        v.res = v.close_res = 12345;
        tcp_pair(v.fds);
        urt_task *t = NULL, *ct = NULL;
        cr_assert_eq(urt_spawn(rt, &t, rx_recv_until_cancelled, &v), 0);
        canceller c = {.rt = rt, .target = t, .what = "rx", .res = 1};
        cr_assert_eq(urt_spawn(rt, &ct, cancel_when_waiting, &c), 0);
        cr_assert_eq(urt_join(ct, NULL), 0);
        cr_assert(c.seen, "the receiver never showed as waiting in rx");
        cr_assert_eq(c.res, 0);
        for (int i = 0; i < 5000 && !atomic_load(&v.phase2); i++)
            usleep(1000);
        cr_assert(atomic_load(&v.phase2), "the cancelled receiver did not get past its cancel");
        cr_assert_eq(v.res, -ECANCELED, "%u workers: the pending urt_rx_recv gave %zd", w, v.res);
        /* send once the new receive is armed: the old one is surely gone by then */
        bool waiting = false;
        for (int i = 0; i < 5000 && !(waiting = task_waits_on(rt, t, "rx")); i++)
            usleep(1000);
        cr_assert(waiting, "the shielded receiver never waited for data");
        uint8_t *data = malloc(AFTER_BYTES);
        cr_assert_not_null(data);
        for (uint64_t k = 0; k < AFTER_BYTES; k++)
            data[k] = pattern(k);
        size_t off = 0;
        while (off < AFTER_BYTES) {
            ssize_t n = send(v.fds[1], data + off, AFTER_BYTES - off, MSG_NOSIGNAL);
            cr_assert_gt(n, 0, "send: %s", strerror(errno));
            off += (size_t)n;
        }
        free(data);
        int jr = urt_join(t, NULL);
        cr_assert_eq(jr, -ECANCELED, "%u workers: join of the cancelled task gave %d", w, jr);
        cr_assert(v.after_cancel_fails, "a urt_rx_recv after the cancel did not give -ECANCELED");
        cr_assert_eq(v.close_res, 0, "urt_rx_close in the cancelled task gave %d", v.close_res);
        cr_assert_eq(v.after_err, 0, "%u workers: the shielded receive got %zd after %llu bytes", w, v.after_err,
                     (unsigned long long)v.received);
        cr_assert_eq(v.received, AFTER_BYTES);
        cr_assert_eq(v.first_bad, UINT64_MAX, "byte %llu differs", (unsigned long long)v.first_bad);
        close(v.fds[0]);
        close(v.fds[1]);
        urt_runtime_destroy(rt);
    }
}

/* ---- accept ------------------------------------------------------------------------------------------ */

typedef struct acceptor {
    int lfd;
    bool multishot;
    uint64_t op_timeout;
    int res, close_res, open_res;
} acceptor;

static void *accept_until_cancelled(void *arg)
{
    acceptor *a = arg;
    urt_op_timeout(a->op_timeout);
    if (!a->multishot) {
        a->res = urt_accept(a->lfd, NULL, NULL, SOCK_CLOEXEC);
        return NULL;
    }
    urt_listener *l = NULL;
    a->open_res = urt_listener_open(&l, a->lfd, SOCK_CLOEXEC);
    if (a->open_res != 0)
        return NULL;
    a->res = urt_listener_accept(l);
    a->close_res = urt_listener_close(l);
    return NULL;
}

typedef struct serve_one {
    int lfd;
    bool multishot;
    int fd;
    ssize_t got;
    char buf[8];
    atomic_int accepted;
} serve_one;

static void *accept_one_and_read(void *arg)
{
    serve_one *s = arg;
    uint64_t old = urt_op_timeout(10 * SEC);
    urt_listener *l = NULL;
    if (s->multishot) {
        int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
        s->fd = r == 0 ? urt_listener_accept(l) : r;
    } else {
        s->fd = urt_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC);
    }
    atomic_store(&s->accepted, 1);
    if (s->fd >= 0) {
        s->got = urt_recv(s->fd, s->buf, sizeof(s->buf), 0);
        urt_close(s->fd);
    }
    if (l)
        urt_listener_close(l);
    urt_op_timeout(old);
    return NULL;
}

/* Each round cancels a pending accept; with `then_accept`, a new acceptor
 * on the same listening socket then takes the next connection. */
#define ACCEPT_ROUNDS 20

static void run_accept_cancel(bool multishot, bool then_accept)
{
    const char *name = multishot ? "urt_listener_accept" : "urt_accept";
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        struct sockaddr_in addr;
        int lfd = listen_loopback(&addr);
        for (int round = 0; round < ACCEPT_ROUNDS; round++) {
            /* urt_op_timeout does not bound urt_listener_accept: a timeout
             * shorter than the wait before the cancel changes nothing there */
            acceptor a = {.lfd = lfd, .multishot = multishot, .op_timeout = multishot ? 5 * MS : 0,
                          .res = 12345, .close_res = 12345};
            canceller c;
            int jr = cancel_target(rt, accept_until_cancelled, &a, "accept", multishot && round == 0 ? 50 * MS : 0, &c);
            cr_assert_eq(a.open_res, 0, "urt_listener_open gave %d", a.open_res);
            cr_assert_eq(jr, -ECANCELED, "%u workers: join of the cancelled acceptor gave %d", w, jr);
            cr_assert_eq(a.res, -ECANCELED, "%u workers, round %d: the pending %s gave %d", w, round, name, a.res);
            if (multishot)
                cr_assert_eq(a.close_res, 0, "urt_listener_close in the cancelled task gave %d", a.close_res);
            if (!then_accept)
                continue;

            serve_one s = {.lfd = lfd, .multishot = multishot, .fd = -1, .got = 12345};
            urt_task *st = NULL;
            cr_assert_eq(urt_spawn(rt, &st, accept_one_and_read, &s), 0);
            int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            cr_assert_geq(cfd, 0);
            cr_assert_eq(connect(cfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
            cr_assert_eq(send(cfd, "hello", 5, 0), 5);
            for (int i = 0; i < 5000 && !atomic_load(&s.accepted); i++)
                usleep(1000);
            if (!atomic_load(&s.accepted)) {
                struct pollfd pl = {.fd = lfd, .events = POLLIN};
                bool queued = poll(&pl, 1, 0) == 1;
                char b;
                ssize_t r = recv(cfd, &b, 1, MSG_DONTWAIT);
                cr_assert_fail("%u workers, round %d: the next %s never returned; the connection is %s the listen "
                               "backlog and the client's end is %s",
                               w, round, name, queued ? "still in" : "gone from",
                               r == 0 ? "closed by the server" : r < 0 && errno == ECONNRESET ? "reset" : "open");
            }
            cr_assert_eq(urt_join(st, NULL), 0);
            cr_assert_geq(s.fd, 0, "%u workers: %s after the cancelled one gave %d", w, name, s.fd);
            cr_assert_eq(s.got, 5, "recv on the accepted connection gave %zd", s.got);
            cr_assert_eq(memcmp(s.buf, "hello", 5), 0);
            close(cfd);
        }
        close(lfd);
        urt_runtime_destroy(rt);
    }
}

Test(net_timeout_cancel, cancel_from_another_task_ends_a_pending_listener_accept, .timeout = 60)
{
    run_accept_cancel(true, false);
}

Test(net_timeout_cancel, after_a_cancelled_listener_is_closed_the_next_acceptor_gets_the_next_connection, .timeout = 60)
{
    run_accept_cancel(true, true);
}

Test(net_timeout_cancel, cancel_from_another_task_ends_a_pending_accept_and_the_next_accept_gets_the_next_connection,
     .timeout = 60)
{
    run_accept_cancel(false, true);
}
