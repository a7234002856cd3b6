/*
 * test_net_peer.c - what a misbehaving or half-closing peer does to a
 * server inside the runtime, for a plain server (urt_accept, urt_recv) and
 * a pooled one (urt_listener, urt_rx_recv):
 *  - a peer that resets its connection in the middle of a message ends
 *    that connection's receive with -ECONNRESET or 0, and the server goes
 *    on serving the others and accepting new ones;
 *  - a peer that shuts down its sending side gets everything back, then the
 *    end of the stream, from a server that reads to the end before it
 *    answers;
 *  - a peer that never reads blocks only its own connection's task in
 *    urt_send_all; the other connections, on the same worker too, keep
 *    working, and once the peer reads, every byte comes back.
 * Clients run on the test thread (blocking sockets, bounded by
 * SO_RCVTIMEO / SO_SNDTIMEO) or as tasks.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
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

#if defined(URT_TSAN)
#define SAN_DIV 8
#elif defined(URT_ASAN)
#define SAN_DIV 2
#else
#define SAN_DIV 1
#endif

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

#define FOR_EACH_SERVER(pooled) for (int pooled = 0; pooled < 2; pooled++)

static inline uint8_t pattern(uint32_t seed, uint64_t off)
{
    uint32_t x = (uint32_t)off * 2654435761u ^ (uint32_t)(off >> 32) ^ (seed + 1u) * 40503u;
    return (uint8_t)((x >> 24) ^ (x >> 13));
}

static void fill(uint8_t *buf, size_t n, uint32_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(seed, off + i);
}

/* offset of the first byte that differs, or UINT64_MAX */
static uint64_t first_bad(const uint8_t *buf, size_t n, uint32_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        if (buf[i] != pattern(seed, off + i))
            return off + i;
    return UINT64_MAX;
}

/* ---- the server ------------------------------------------------------------------------------------ */

#define MSG_LEN   4096
#define HOLD_MAX  ((size_t)4 << 20)
#define MAX_CONNS 8

/* MODE_FRAMED: echo each complete MSG_LEN message (at the end of the stream,
 * what is left of an incomplete one); MODE_HOLD: keep everything until the
 * end of the stream, then send it all back. Either way, close at the end. */
enum { MODE_FRAMED, MODE_HOLD };

typedef struct server server;

typedef struct srv_conn {
    server *s;
    int fd;
    atomic_ullong task_id;        /* written by the connection's task */
    atomic_ullong bytes_in;
    /* written by the connection's task before `done` */
    ssize_t recv_end;             /* what the last receive gave: 0 or -errno */
    ssize_t send_err;
    int other_err;
    atomic_int done;
} srv_conn;

struct server {
    int lfd;
    struct sockaddr_in addr;
    bool pooled;
    int mode;
    unsigned expect;
    srv_conn conns[MAX_CONNS];
    atomic_uint accepted;
    atomic_int err;
};

typedef struct inbox {            /* what a connection holds until it sends */
    uint8_t *buf;
    size_t len, cap;
} inbox;

/* Take n bytes; send back what is complete. false: stop (error recorded). */
static bool conn_take(srv_conn *c, inbox *in, const uint8_t *p, size_t n)
{
    atomic_fetch_add(&c->bytes_in, n);
    while (n) {
        if (c->s->mode == MODE_FRAMED) {
            size_t take = MSG_LEN - in->len < n ? MSG_LEN - in->len : n;
            memcpy(in->buf + in->len, p, take);
            in->len += take;
            p += take;
            n -= take;
            if (in->len == MSG_LEN) {
                ssize_t w = urt_send_all(c->fd, in->buf, MSG_LEN, 0);
                if (w != MSG_LEN) {
                    c->send_err = w;
                    return false;
                }
                in->len = 0;
            }
        } else {
            if (in->len + n > in->cap) {
                c->other_err = -EMSGSIZE;
                return false;
            }
            memcpy(in->buf + in->len, p, n);
            in->len += n;
            n = 0;
        }
    }
    return true;
}

static void conn_finish(srv_conn *c, inbox *in)
{
    if (c->recv_end == 0 && !c->send_err && !c->other_err && in->len) {
        ssize_t w = urt_send_all(c->fd, in->buf, in->len, 0);
        if (w != (ssize_t)in->len)
            c->send_err = w;
    }
    free(in->buf);
    int r = urt_close(c->fd);
    if (r != 0 && !c->other_err)
        c->other_err = r;
    atomic_store(&c->done, 1);
}

static bool inbox_init(srv_conn *c, inbox *in)
{
    in->len = 0;
    in->cap = c->s->mode == MODE_FRAMED ? MSG_LEN : HOLD_MAX;
    in->buf = malloc(in->cap);
    if (!in->buf)
        c->other_err = -ENOMEM;
    return in->buf != NULL;
}

static void *serve_plain(void *arg)
{
    srv_conn *c = arg;
    atomic_store(&c->task_id, urt_self_id());
    inbox in;
    c->recv_end = 1;
    if (inbox_init(c, &in)) {
        uint8_t *buf = malloc(MSG_LEN);
        for (int i = 0; buf && i < 100000000; i++) {
            ssize_t n = urt_recv(c->fd, buf, MSG_LEN, 0);
            if (n <= 0) {
                c->recv_end = n;
                break;
            }
            if (!conn_take(c, &in, buf, (size_t)n))
                break;
        }
        if (!buf)
            c->other_err = -ENOMEM;
        free(buf);
    }
    conn_finish(c, &in);
    return NULL;
}

static void *serve_pooled(void *arg)
{
    srv_conn *c = arg;
    atomic_store(&c->task_id, urt_self_id());
    inbox in;
    c->recv_end = 1;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, c->fd);
    if (r != 0)
        c->other_err = r;
    if (rx && inbox_init(c, &in)) {
        for (int i = 0; i < 100000000; i++) {
            urt_buf b;
            ssize_t n = urt_rx_recv(rx, &b);
            if (n <= 0) {
                c->recv_end = n;
                break;
            }
            bool more = conn_take(c, &in, b.data, b.len);
            urt_buf_release(&b);
            if (!more)
                break;
        }
    } else {
        in.buf = NULL;
        in.len = 0;
    }
    if (rx) {
        r = urt_rx_close(rx);
        if (r != 0 && !c->other_err)
            c->other_err = r;
    }
    conn_finish(c, &in);
    return NULL;
}

static void *acceptor(void *arg)
{
    server *s = arg;
    urt_listener *l = NULL;
    if (s->pooled) {
        int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
        if (r != 0) {
            atomic_store(&s->err, r);
            return NULL;
        }
    }
    urt_task *tasks[MAX_CONNS];
    unsigned n = 0;
    while (n < s->expect) {
        int fd = l ? urt_listener_accept(l) : urt_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            atomic_store(&s->err, fd);
            break;
        }
        srv_conn *c = &s->conns[n];
        c->s = s;
        c->fd = fd;
        int r = urt_spawn(NULL, &tasks[n], s->pooled ? serve_pooled : serve_plain, c);
        if (r != 0) {
            atomic_store(&s->err, r);
            close(fd);
            break;
        }
        n++;
        atomic_store(&s->accepted, n);
    }
    for (unsigned i = 0; i < n; i++)
        urt_join(tasks[i], NULL);
    if (l)
        urt_listener_close(l);
    return NULL;
}

static urt_task *server_start(urt_runtime *rt, server *s, bool pooled, int mode, unsigned expect)
{
    memset(s, 0, sizeof(*s));
    s->pooled = pooled;
    s->mode = mode;
    s->expect = expect;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s->lfd, 64), 0);
    socklen_t alen = sizeof(s->addr);
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&s->addr, &alen), 0);
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, acceptor, s), 0);
    return t;
}

static void wait_accepted(server *s, unsigned n)
{
    for (int i = 0; i < 10000 && atomic_load(&s->accepted) < n; i++)
        usleep(1000);
    cr_assert_geq(atomic_load(&s->accepted), n, "the server accepted %u of %u connections", atomic_load(&s->accepted),
                  n);
}

static void wait_done(srv_conn *c, const char *who)
{
    for (int i = 0; i < 10000 && !atomic_load(&c->done); i++)
        usleep(1000);
    cr_assert(atomic_load(&c->done), "%s: the server's connection did not end", who);
}

/* ---- clients on the test thread ------------------------------------------------------------------------ */

static int client_connect(const server *s, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (rcvbuf) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &rcvbuf, sizeof(rcvbuf));
    }
    cr_assert_eq(connect_nointr(fd, (const struct sockaddr *)&s->addr, sizeof(s->addr)), 0, "connect: %s",
                 strerror(errno));
    return fd;
}

static void send_exactly(int fd, const uint8_t *p, size_t n, const char *who)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = send_nointr(fd, p + done, n - done, MSG_NOSIGNAL);
        cr_assert_gt(r, 0, "%s: send: %s", who, r < 0 ? strerror(errno) : "0");
        done += (size_t)r;
    }
}

static void recv_exactly(int fd, uint8_t *p, size_t n, const char *who)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = recv_nointr(fd, p + done, n - done, 0);
        cr_assert_gt(r, 0, "%s: recv after %zu of %zu bytes: %s", who, done, n, r < 0 ? strerror(errno) : "end of stream");
        done += (size_t)r;
    }
}

/* Message `k` of stream `seed`, sent and echoed back. */
static void round_trip(int fd, uint32_t seed, unsigned k, const char *who)
{
    uint8_t out[MSG_LEN], in[MSG_LEN];
    fill(out, MSG_LEN, seed, (uint64_t)k * MSG_LEN);
    send_exactly(fd, out, MSG_LEN, who);
    recv_exactly(fd, in, MSG_LEN, who);
    uint64_t bad = first_bad(in, MSG_LEN, seed, (uint64_t)k * MSG_LEN);
    cr_assert_eq(bad, UINT64_MAX, "%s: message %u: byte %llu came back wrong", who, k, (unsigned long long)bad);
}

static void expect_eof(int fd, const char *who)
{
    uint8_t b;
    ssize_t r = recv_nointr(fd, &b, 1, 0);
    cr_assert_eq(r, 0, "%s: expected the end of the stream, recv gave %zd (%s)", who, r, r < 0 ? strerror(errno) : "data");
}

static void check_clean_end(srv_conn *c, const char *who)
{
    wait_done(c, who);
    cr_assert_eq(c->other_err, 0, "%s: server error %d", who, c->other_err);
    cr_assert_eq(c->send_err, 0, "%s: the server's send gave %zd", who, c->send_err);
    cr_assert_eq(c->recv_end, 0, "%s: the server's last receive gave %zd", who, c->recv_end);
}

/* ---- a peer that resets mid-message -------------------------------------------------------------------- */

Test(net_peer, peer_reset_mid_message_ends_only_that_connection, .timeout = 60)
{
    FOR_EACH_SERVER(pooled) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[64];
            snprintf(who, sizeof(who), "%s server, %u workers", pooled ? "pooled" : "plain", w);
            urt_runtime *rt = rt_new(w);
            server s;
            urt_task *acc = server_start(rt, &s, pooled, MODE_FRAMED, 3);

            int a = client_connect(&s, 0);
            round_trip(a, 1, 0, who);
            round_trip(a, 1, 1, who);
            wait_accepted(&s, 1);

            /* half a message, taken in by the server, then a reset */
            int b = client_connect(&s, 0);
            wait_accepted(&s, 2);
            uint8_t half[MSG_LEN / 2];
            fill(half, sizeof(half), 2, 0);
            send_exactly(b, half, sizeof(half), who);
            for (int i = 0; i < 10000 && atomic_load(&s.conns[1].bytes_in) < sizeof(half); i++)
                usleep(1000);
            cr_assert_eq(atomic_load(&s.conns[1].bytes_in), sizeof(half), "%s: the server took in %llu bytes", who,
                         (unsigned long long)atomic_load(&s.conns[1].bytes_in));
            struct linger lg = {.l_onoff = 1, .l_linger = 0};
            cr_assert_eq(setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
            cr_assert_eq(close(b), 0);
            wait_done(&s.conns[1], who);
            ssize_t end = s.conns[1].recv_end;
            cr_assert(end == -ECONNRESET || end == 0, "%s: the receive on the reset connection gave %zd", who, end);
            cr_assert_eq(s.conns[1].other_err, 0, "%s: server error %d", who, s.conns[1].other_err);

            /* the server goes on: the old connection and a new one */
            round_trip(a, 1, 2, who);
            int c = client_connect(&s, 0);
            round_trip(c, 3, 0, who);
            round_trip(a, 1, 3, who);
            round_trip(c, 3, 1, who);
            cr_assert_eq(shutdown(a, SHUT_WR), 0);
            cr_assert_eq(shutdown(c, SHUT_WR), 0);
            expect_eof(a, who);
            expect_eof(c, who);
            check_clean_end(&s.conns[0], who);
            check_clean_end(&s.conns[2], who);
            cr_assert_eq(urt_join(acc, NULL), 0);
            cr_assert_eq(atomic_load(&s.err), 0, "%s: accept gave %d", who, atomic_load(&s.err));
            close(a);
            close(c);
            close(s.lfd);
            urt_runtime_destroy(rt);
        }
    }
}

/* ---- half-close ------------------------------------------------------------------------------------------ */

static const size_t half_close_sizes[] = {1, 1000, 100000, (size_t)1 << 20};
#define NHALF (sizeof(half_close_sizes) / sizeof(half_close_sizes[0]))

typedef struct half_client {
    const server *s;
    uint32_t seed;
    size_t len;
    /* results */
    ssize_t err;
    const char *where;
    uint64_t received, bad;
    bool eof;
} half_client;

static void half_err(half_client *h, const char *where, ssize_t err)
{
    if (!h->err) {
        h->err = err ? err : -1000;
        h->where = where;
    }
}

/* Send everything, shut down the sending side, then read it all back. */
static void *half_close_task(void *arg)
{
    half_client *h = arg;
    urt_op_timeout(10 * SEC);
    h->bad = UINT64_MAX;
    uint8_t *buf = malloc(h->len + 1);   /* one more: room to see the end of the stream */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!buf || fd < 0) {
        half_err(h, "setup", -ENOMEM);
        free(buf);
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    int r = urt_connect(fd, (const struct sockaddr *)&h->s->addr, sizeof(h->s->addr));
    if (r != 0) {
        half_err(h, "urt_connect", r);
        goto out;
    }
    fill(buf, h->len, h->seed, 0);
    ssize_t n = urt_send_all(fd, buf, h->len, 0);
    if (n != (ssize_t)h->len) {
        half_err(h, "urt_send_all", n);
        goto out;
    }
    r = urt_shutdown(fd, SHUT_WR);
    if (r != 0) {
        half_err(h, "urt_shutdown", r);
        goto out;
    }
    memset(buf, 0, h->len);
    for (int i = 0; i < 10000000; i++) {
        n = urt_recv(fd, buf + h->received, h->len - h->received + (h->received == h->len), 0);
        if (n < 0) {
            half_err(h, "urt_recv", n);
            break;
        }
        if (n == 0) {
            h->eof = true;
            break;
        }
        h->received += (uint64_t)n;
        if (h->received > h->len) {
            half_err(h, "urt_recv past the end", -EPROTO);
            break;
        }
    }
    h->bad = first_bad(buf, h->received, h->seed, 0);
out:
    free(buf);
    urt_close(fd);
    return NULL;
}

Test(net_peer, half_closed_peer_gets_every_byte_back_then_the_end_of_the_stream, .timeout = 60)
{
    FOR_EACH_SERVER(pooled) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[96];
            urt_runtime *rt = rt_new(w);
            server s;
            /* NHALF task clients at once, then NHALF from the test thread one by one */
            urt_task *acc = server_start(rt, &s, pooled, MODE_HOLD, 2 * NHALF);
            half_client hs[NHALF];
            urt_task *ts[NHALF];
            for (unsigned i = 0; i < NHALF; i++) {
                hs[i] = (half_client){.s = &s, .seed = 10 + i, .len = half_close_sizes[i]};
                cr_assert_eq(urt_spawn(rt, &ts[i], half_close_task, &hs[i]), 0);
            }
            for (unsigned i = 0; i < NHALF; i++) {
                cr_assert_eq(urt_join(ts[i], NULL), 0);
                half_client *h = &hs[i];
                snprintf(who, sizeof(who), "%s server, %u workers, task client of %zu bytes", pooled ? "pooled" : "plain",
                         w, h->len);
                cr_assert_eq(h->err, 0, "%s: %s gave %zd", who, h->where, h->err);
                cr_assert_eq(h->received, h->len, "%s: %llu bytes came back", who, (unsigned long long)h->received);
                cr_assert_eq(h->bad, UINT64_MAX, "%s: byte %llu came back wrong", who, (unsigned long long)h->bad);
                cr_assert(h->eof, "%s: no end of stream", who);
            }
            for (unsigned i = 0; i < NHALF; i++) {
                size_t len = half_close_sizes[i];
                snprintf(who, sizeof(who), "%s server, %u workers, thread client of %zu bytes",
                         pooled ? "pooled" : "plain", w, len);
                uint8_t *buf = malloc(len);
                cr_assert_not_null(buf);
                int fd = client_connect(&s, 0);
                fill(buf, len, 20 + i, 0);
                send_exactly(fd, buf, len, who);
                cr_assert_eq(shutdown(fd, SHUT_WR), 0);
                memset(buf, 0, len);
                recv_exactly(fd, buf, len, who);
                uint64_t bad = first_bad(buf, len, 20 + i, 0);
                cr_assert_eq(bad, UINT64_MAX, "%s: byte %llu came back wrong", who, (unsigned long long)bad);
                expect_eof(fd, who);
                close(fd);
                free(buf);
            }
            cr_assert_eq(urt_join(acc, NULL), 0);
            cr_assert_eq(atomic_load(&s.err), 0, "accept gave %d", atomic_load(&s.err));
            for (unsigned i = 0; i < 2 * NHALF; i++) {
                snprintf(who, sizeof(who), "%s server, %u workers, connection %u", pooled ? "pooled" : "plain", w, i);
                check_clean_end(&s.conns[i], who);
            }
            close(s.lfd);
            urt_runtime_destroy(rt);
        }
    }
}

/* ---- a peer that never reads ------------------------------------------------------------------------------- */

#define STALL_ROUNDS (40 / SAN_DIV)
#define FLOOD_MAX    ((size_t)64 << 20)

Test(net_peer, peer_that_never_reads_blocks_only_its_own_connection, .timeout = 120)
{
    FOR_EACH_SERVER(pooled) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[64];
            snprintf(who, sizeof(who), "%s server, %u workers", pooled ? "pooled" : "plain", w);
            urt_runtime *rt = rt_new(w);
            server s;
            urt_task *acc = server_start(rt, &s, pooled, MODE_FRAMED, 4);
            int a = client_connect(&s, 0);
            round_trip(a, 1, 0, who);
            int b = client_connect(&s, 0);
            round_trip(b, 2, 0, who);
            wait_accepted(&s, 2);

            /* the stalled peer: small buffers, sends whole messages until
             * nothing more goes in, never reads */
            int z = client_connect(&s, 4096);
            wait_accepted(&s, 3);
            uint8_t msg[MSG_LEN];
            uint64_t sent = 0;
            int quiet = 0;
            uint64_t t0 = urt_now();
            while (sent < FLOOD_MAX && quiet < 100 && urt_now() - t0 < 20 * SEC) {
                fill(msg, MSG_LEN, 9, sent);
                ssize_t r = send(z, msg, MSG_LEN - (sent % MSG_LEN), MSG_DONTWAIT | MSG_NOSIGNAL);
                if (r > 0) {
                    sent += (uint64_t)r;
                    quiet = 0;
                    continue;
                }
                cr_assert(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "%s: flood send: %s", who,
                          strerror(errno));
                quiet++;
                usleep(2000);
            }
            cr_assert_lt(sent, FLOOD_MAX, "%s: the peer's sends never stopped", who);
            uint64_t zt = 0;
            for (int i = 0; i < 5000 && !(zt = atomic_load(&s.conns[2].task_id)); i++)
                usleep(1000);
            cr_assert_neq(zt, 0, "%s: the stalled connection's task never started", who);
            int seen = 0;
            for (int i = 0; i < 5000 && seen < 3; i++) {
                seen = task_id_waits_on(rt, zt, "send") ? seen + 1 : 0;
                usleep(seen ? 20000 : 1000);
            }
            cr_assert_eq(seen, 3, "%s: the stalled connection's task is not waiting in send", who);

            /* everyone else goes on, a new connection too */
            int c = client_connect(&s, 0);
            for (unsigned k = 1; k <= STALL_ROUNDS; k++) {
                round_trip(a, 1, k, who);
                round_trip(b, 2, k, who);
                round_trip(c, 3, k - 1, who);
            }
            cr_assert(task_id_waits_on(rt, zt, "send"), "%s: the stalled connection moved on by itself", who);
            cr_assert(!atomic_load(&s.conns[2].done), "%s: the stalled connection ended", who);

            /* the peer reads at last: every byte comes back, then the end */
            cr_assert_eq(shutdown(z, SHUT_WR), 0);
            uint8_t *back = malloc(sent ? sent : 1);
            cr_assert_not_null(back);
            recv_exactly(z, back, sent, who);
            uint64_t bad = first_bad(back, sent, 9, 0);
            free(back);
            cr_assert_eq(bad, UINT64_MAX, "%s: byte %llu of the stalled stream came back wrong", who,
                         (unsigned long long)bad);
            expect_eof(z, who);
            check_clean_end(&s.conns[2], who);

            cr_assert_eq(shutdown(a, SHUT_WR), 0);
            cr_assert_eq(shutdown(b, SHUT_WR), 0);
            cr_assert_eq(shutdown(c, SHUT_WR), 0);
            expect_eof(a, who);
            expect_eof(b, who);
            expect_eof(c, who);
            cr_assert_eq(urt_join(acc, NULL), 0);
            cr_assert_eq(atomic_load(&s.err), 0, "accept gave %d", atomic_load(&s.err));
            check_clean_end(&s.conns[0], who);
            check_clean_end(&s.conns[1], who);
            check_clean_end(&s.conns[3], who);
            close(a);
            close(b);
            close(c);
            close(z);
            close(s.lfd);
            urt_runtime_destroy(rt);
        }
    }
}
