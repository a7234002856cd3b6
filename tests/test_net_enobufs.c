/*
 * test_net_enobufs.c - pooled receive with a tiny buffer ring (2 or 4
 * buffers of 64 bytes per worker) runs out of buffers all the time (the
 * kernel's -ENOBUFS, the per-receiver cap) and loses no byte: streams of
 * 1 MiB in all, over one connection and over several at once, arrive
 * complete and in order, whether the receiving task releases each buffer
 * itself or hands it to a plain thread that releases it there.
 *
 * The per-receiver cap holds: with a pool of 64 buffers, each of twelve
 * server tasks whose peer floods (data in the socket before the receive is
 * armed, and more all the time) gets at most URT_RX_MAX_HELD chunks from
 * urt_rx_recv without releasing any before -ENOBUFS, so the twelve leave
 * the rest of the pool to a normal connection, which is still served; once
 * they release and read on, every flooded byte arrives in order. Run with
 * the kernel's byte limit on the multishot receive and without it (as on
 * kernels before 6.17, URT_NO_RECV_LIMIT).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
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

static const unsigned pool_sizes[] = {2, 4};
#define BUF_LEN     64
#define TOTAL_BYTES (((size_t)1 << 20) / SAN_DIV)
#define MAX_CONNS   8

static urt_runtime *rt_new_pool(unsigned workers, unsigned bufs)
{
    urt_config cfg = {.workers = workers, .rx_buffers = bufs, .rx_buffer_size = BUF_LEN};
    return rt_new_cfg(&cfg);
}

/* Byte `off` of the stream of connection `id`. The first 4 bytes of each
 * stream are its id, so the receiver knows which stream it checks. */
static inline uint8_t pattern(uint32_t id, uint64_t off)
{
    uint32_t x = (uint32_t)off * 2654435761u ^ (uint32_t)(off >> 32) ^ (id + 1u) * 40503u;
    return (uint8_t)((x >> 24) ^ (x >> 13));
}

static uint8_t stream_byte(uint32_t id, uint64_t off)
{
    return off < 4 ? (uint8_t)(id >> (8 * off)) : pattern(id, off);
}

/* ---- the receiving side: checks a stream chunk by chunk ----------------------------------------------- */

typedef struct checker {
    uint32_t id;                /* from the first 4 bytes */
    uint64_t received, first_bad;
    bool eof;
    ssize_t err;
} checker;

static void check_chunk(checker *k, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t off = k->received + i;
        if (off < 4) {
            k->id |= (uint32_t)p[i] << (8 * off);
            continue;
        }
        if (p[i] != stream_byte(k->id, off) && k->first_bad == UINT64_MAX)
            k->first_bad = off;
    }
    k->received += n;
}

/* ---- handing buffers to a plain thread ------------------------------------------------------------------ */

#define QCAP 256

typedef struct handoff_item {
    unsigned conn;
    bool eof;
    ssize_t err;
    urt_buf buf;
} handoff_item;

typedef struct handoff {
    pthread_mutex_t lock;
    pthread_cond_t cv;
    handoff_item q[QCAP];
    unsigned head, n;
    bool overflow;
    urt_notify *released[MAX_CONNS];   /* per connection: signalled after each release of its buffers */
} handoff;

static void handoff_push(handoff *h, handoff_item it)
{
    pthread_mutex_lock(&h->lock);
    if (h->n == QCAP) {
        h->overflow = true;
        if (!it.eof && it.buf.data)
            urt_buf_release(&it.buf);
    } else {
        h->q[(h->head + h->n++) % QCAP] = it;
    }
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->lock);
}

/* false: nothing came for 10 s */
static bool handoff_pop(handoff *h, handoff_item *out)
{
    pthread_mutex_lock(&h->lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 10;
    while (h->n == 0)
        if (pthread_cond_timedwait(&h->cv, &h->lock, &until) != 0)
            break;
    bool got = h->n > 0;
    if (got) {
        *out = h->q[h->head];
        h->head = (h->head + 1) % QCAP;
        h->n--;
    }
    pthread_mutex_unlock(&h->lock);
    return got;
}

/* ---- server ------------------------------------------------------------------------------------------ */

typedef struct server {
    int lfd;
    struct sockaddr_in addr;
    unsigned expect;
    handoff *h;                 /* NULL: each task checks and releases its own buffers */
    checker checks[MAX_CONNS];  /* by accept order, when the tasks check */
    unsigned enobufs[MAX_CONNS];
    atomic_int err;
} server;

typedef struct sink_arg {
    server *s;
    unsigned conn;
    int fd;
} sink_arg;

#define MAX_CHUNKS 10000000

static void *sink(void *arg)
{
    sink_arg *a = arg;
    server *s = a->s;
    checker *k = &s->checks[a->conn];
    k->first_bad = UINT64_MAX;
    urt_op_timeout(10 * SEC);
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, a->fd);
    if (r != 0) {
        k->err = r;
        if (s->h)
            handoff_push(s->h, (handoff_item){.conn = a->conn, .eof = true, .err = r});
        urt_close(a->fd);
        return NULL;
    }
    for (int i = 0; i < MAX_CHUNKS; i++) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n == -ENOBUFS && s->h) {
            /* holding all it may: wait until the thread gives one back */
            s->enobufs[a->conn]++;
            int wr = urt_notify_wait(s->h->released[a->conn]);
            if (wr != 0) {
                k->err = wr;
                break;
            }
            continue;
        }
        if (n <= 0) {
            if (n == 0)
                k->eof = true;
            else
                k->err = n;
            break;
        }
        if (s->h) {
            handoff_push(s->h, (handoff_item){.conn = a->conn, .buf = b});
        } else {
            check_chunk(k, b.data, b.len);
            urt_buf_release(&b);
        }
    }
    if (s->h)
        handoff_push(s->h, (handoff_item){.conn = a->conn, .eof = k->eof, .err = k->err ? k->err : (k->eof ? 0 : -EIO)});
    urt_rx_close(rx);
    urt_close(a->fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    server *s = arg;
    urt_listener *l = NULL;
    int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
    if (r != 0) {
        atomic_store(&s->err, r);
        return NULL;
    }
    sink_arg args[MAX_CONNS];
    urt_task *tasks[MAX_CONNS];
    unsigned n = 0;
    while (n < s->expect) {
        int fd = urt_listener_accept(l);
        if (fd < 0) {
            atomic_store(&s->err, fd);
            break;
        }
        args[n] = (sink_arg){.s = s, .conn = n, .fd = fd};
        r = urt_spawn(NULL, &tasks[n], sink, &args[n]);
        if (r != 0) {
            atomic_store(&s->err, r);
            close(fd);
            break;
        }
        n++;
    }
    for (unsigned i = 0; i < n; i++)
        urt_join(tasks[i], NULL);
    urt_listener_close(l);
    return NULL;
}

/* ---- senders: tasks of the same runtime, sends of 1 B .. 8 KiB -------------------------------------------- */

typedef struct sender {
    const server *s;
    uint32_t id;
    size_t len;
    ssize_t err;
    size_t sent;
} sender;

static void *send_stream(void *arg)
{
    sender *c = arg;
    urt_op_timeout(10 * SEC);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        c->err = -errno;
        return NULL;
    }
    int r = urt_connect(fd, (const struct sockaddr *)&c->s->addr, sizeof(c->s->addr));
    if (r != 0) {
        c->err = r;
        urt_close(fd);
        return NULL;
    }
    uint8_t buf[8192];
    for (int i = 0; i < MAX_CHUNKS && c->sent < c->len; i++) {
        size_t want = 1 + ((c->sent * 7919u + c->id * 31u) % sizeof(buf));
        if (want > c->len - c->sent)
            want = c->len - c->sent;
        for (size_t k = 0; k < want; k++)
            buf[k] = stream_byte(c->id, c->sent + k);
        ssize_t n = urt_send_all(fd, buf, want, 0);
        if (n != (ssize_t)want) {
            c->err = n;
            break;
        }
        c->sent += want;
    }
    urt_close(fd);
    return NULL;
}

/* ---- the runs ---------------------------------------------------------------------------------------------- */

static void server_listen(server *s, unsigned conns, handoff *h)
{
    memset(s, 0, sizeof(*s));
    s->expect = conns;
    s->h = h;
    s->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(s->lfd, 64), 0);
    socklen_t alen = sizeof(s->addr);
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&s->addr, &alen), 0);
}

/* On the test thread: check and release the handed-over buffers until every
 * connection has ended; results by the id in each stream. */
static void drain_handoff(handoff *h, checker *by_id, unsigned conns, const char *who)
{
    checker by_conn[MAX_CONNS];
    memset(by_conn, 0, sizeof(by_conn));
    for (unsigned i = 0; i < MAX_CONNS; i++)
        by_conn[i].first_bad = UINT64_MAX;
    unsigned ended = 0;
    while (ended < conns) {
        handoff_item it;
        cr_assert(handoff_pop(h, &it), "%s: nothing handed over for 10 s (%u of %u streams ended)", who, ended, conns);
        cr_assert_lt(it.conn, conns);
        checker *k = &by_conn[it.conn];
        if (it.eof || it.err) {
            k->eof = it.eof;
            k->err = it.err;
            ended++;
            continue;
        }
        check_chunk(k, it.buf.data, it.buf.len);
        urt_buf_release(&it.buf);
        cr_assert_eq(urt_notify_signal(h->released[it.conn]), 0);
    }
    cr_assert(!h->overflow, "%s: the hand-over queue overflowed", who);
    for (unsigned i = 0; i < conns; i++) {
        cr_assert_lt(by_conn[i].id, conns, "%s: a stream began with id %u", who, by_conn[i].id);
        by_id[by_conn[i].id] = by_conn[i];
    }
}

static void run(unsigned conns, bool hand_over)
{
    size_t per_conn = TOTAL_BYTES / conns;
    for (size_t p = 0; p < sizeof(pool_sizes) / sizeof(pool_sizes[0]); p++) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[96];
            snprintf(who, sizeof(who), "%u buffers of %u bytes, %u workers, %u connections", pool_sizes[p], BUF_LEN, w,
                     conns);
            urt_runtime *rt = rt_new_pool(w, pool_sizes[p]);
            handoff h;
            if (hand_over) {
                memset(&h, 0, sizeof(h));
                pthread_mutex_init(&h.lock, NULL);
                pthread_cond_init(&h.cv, NULL);
                for (unsigned i = 0; i < conns; i++)
                    cr_assert_eq(urt_notify_create(&h.released[i]), 0);
            }
            server s;
            server_listen(&s, conns, hand_over ? &h : NULL);
            urt_task *acc = NULL;
            cr_assert_eq(urt_spawn(rt, &acc, acceptor, &s), 0);
            sender cs[MAX_CONNS];
            urt_task *ts[MAX_CONNS];
            for (unsigned i = 0; i < conns; i++) {
                cs[i] = (sender){.s = &s, .id = i, .len = per_conn};
                cr_assert_eq(urt_spawn(rt, &ts[i], send_stream, &cs[i]), 0);
            }
            checker by_id[MAX_CONNS];
            memset(by_id, 0, sizeof(by_id));
            if (hand_over)
                drain_handoff(&h, by_id, conns, who);
            for (unsigned i = 0; i < conns; i++)
                cr_assert_eq(urt_join(ts[i], NULL), 0);
            /* before the acceptor is joined: a sender that never connected would leave it waiting */
            for (unsigned i = 0; i < conns; i++) {
                cr_assert_eq(cs[i].err, 0, "%s: sender %u: %s", who, i, strerror((int)-cs[i].err));
                cr_assert_eq(cs[i].sent, per_conn);
            }
            cr_assert_eq(urt_join(acc, NULL), 0);
            cr_assert_eq(atomic_load(&s.err), 0, "%s: accept gave %d", who, atomic_load(&s.err));
            if (!hand_over)
                for (unsigned i = 0; i < conns; i++) {
                    cr_assert_lt(s.checks[i].id, conns, "%s: a stream began with id %u", who, s.checks[i].id);
                    by_id[s.checks[i].id] = s.checks[i];
                }
            for (unsigned i = 0; i < conns; i++) {
                checker *k = &by_id[i];
                cr_assert_eq(k->err, 0, "%s: stream %u: the receive gave %s after %llu bytes", who, i,
                             strerror((int)-k->err), (unsigned long long)k->received);
                cr_assert_eq(k->received, per_conn, "%s: stream %u: %llu of %zu bytes arrived", who, i,
                             (unsigned long long)k->received, per_conn);
                cr_assert_eq(k->first_bad, UINT64_MAX, "%s: stream %u: byte %llu differs", who, i,
                             (unsigned long long)k->first_bad);
                cr_assert(k->eof, "%s: stream %u: no end of stream", who, i);
            }
            close(s.lfd);
            if (hand_over) {
                for (unsigned i = 0; i < conns; i++)
                    urt_notify_destroy(h.released[i]);
                pthread_cond_destroy(&h.cv);
                pthread_mutex_destroy(&h.lock);
            }
            urt_runtime_destroy(rt);
        }
    }
}

Test(net_enobufs, tiny_buffer_ring_loses_no_byte_on_one_connection, .timeout = 120)
{
    run(1, false);
}

Test(net_enobufs, tiny_buffer_ring_loses_no_byte_on_eight_connections_at_once, .timeout = 120)
{
    run(8, false);
}

Test(net_enobufs, buffers_released_on_a_plain_thread_come_home_and_no_byte_is_lost, .timeout = 120)
{
    run(4, true);
}

/* ---- the per-receiver cap: peers that flood, server tasks that hold what they got ---------------------- */

#define CAP_POOL    64          /* buffers per worker */
#define CAP_BUF     64          /* bytes each */
#define HOGS        12          /* 12 x URT_RX_MAX_HELD = 48 < 64, even if all land on one worker */
#define NORMALS     4
#define HOG_BURST   16384       /* in each socket before its receive is armed */
#define HOG_FLOOD_MAX (256u << 10)  /* and at most this much in all while the tasks count */
#define NORMAL_MSG  100
#define NORMAL_ROUNDS 20

typedef struct cap_run {
    int hog_lfd, normal_lfd;
    struct sockaddr_in hog_addr, normal_addr;
    atomic_int measured;        /* hogs that have counted what they hold */
    atomic_int normals_done;    /* the normal clients are through: hogs may release */
    atomic_int err;
    struct hog {
        checker k;
        int held;               /* chunks urt_rx_recv gave without a release, before -ENOBUFS */
        ssize_t held_end;       /* what ended the count: -ENOBUFS expected */
        int worker;
    } hogs[HOGS];
    ssize_t normal_err[NORMALS];
} cap_run;

typedef struct cap_conn {
    cap_run *c;
    unsigned idx;
    int fd;
} cap_conn;

static void *hog_serve(void *arg)
{
    cap_conn *a = arg;
    struct hog *h = &a->c->hogs[a->idx];
    h->k.first_bad = UINT64_MAX;
    h->worker = urt_worker_id();
    urt_op_timeout(10 * SEC);
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, a->fd);
    if (r != 0) {
        h->held_end = r;
        atomic_fetch_add(&a->c->measured, 1);
        urt_close(a->fd);
        return NULL;
    }
    /* the burst is in the socket (the client sent it before connecting the
     * next peer); take one chunk, give what is in flight time to land, then
     * count what else comes without releasing anything */
    urt_buf held[CAP_POOL + 1];
    ssize_t n = urt_rx_recv(rx, &held[0]);
    if (n > 0) {
        h->held = 1;
        urt_sleep(50 * MS);
        for (;;) {
            n = urt_rx_recv(rx, &held[h->held]);
            if (n <= 0)
                break;
            if (++h->held == CAP_POOL + 1)
                break;
        }
    }
    h->held_end = n;
    atomic_fetch_add(&a->c->measured, 1);
    while (!atomic_load(&a->c->normals_done))
        urt_sleep(MS);
    /* release, then read the rest of the stream */
    for (int i = 0; i < h->held; i++) {
        check_chunk(&h->k, held[i].data, held[i].len);
        urt_buf_release(&held[i]);
    }
    for (int i = 0; i < MAX_CHUNKS; i++) {
        urt_buf b;
        n = urt_rx_recv(rx, &b);
        if (n <= 0) {
            if (n == 0)
                h->k.eof = true;
            else
                h->k.err = n;
            break;
        }
        check_chunk(&h->k, b.data, b.len);
        urt_buf_release(&b);
    }
    urt_rx_close(rx);
    urt_close(a->fd);
    return NULL;
}

static void *normal_serve(void *arg)
{
    cap_conn *a = arg;
    urt_op_timeout(10 * SEC);
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, a->fd);
    if (r != 0) {
        atomic_store(&a->c->err, r);
        urt_close(a->fd);
        return NULL;
    }
    for (;;) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n <= 0)
            break;
        ssize_t s = urt_send_all(a->fd, b.data, b.len, 0);
        urt_buf_release(&b);
        if (s < 0)
            break;
    }
    urt_rx_close(rx);
    urt_close(a->fd);
    return NULL;
}

typedef struct cap_acceptor {
    cap_run *c;
    int lfd;
    unsigned n;
    urt_fn fn;
} cap_acceptor;

static void *cap_accept(void *arg)
{
    cap_acceptor *ca = arg;
    urt_listener *l = NULL;
    int r = urt_listener_open(&l, ca->lfd, SOCK_CLOEXEC);
    if (r != 0) {
        atomic_store(&ca->c->err, r);
        return NULL;
    }
    cap_conn conns[HOGS > NORMALS ? HOGS : NORMALS];
    urt_task *tasks[HOGS > NORMALS ? HOGS : NORMALS];
    unsigned n = 0;
    urt_spawn_opts o = {.name = "cap-conn", .flags = URT_TASK_SPREAD};
    while (n < ca->n) {
        int fd = urt_listener_accept(l);
        if (fd < 0) {
            atomic_store(&ca->c->err, fd);
            break;
        }
        conns[n] = (cap_conn){.c = ca->c, .idx = n, .fd = fd};
        r = urt_spawn_ex(NULL, &tasks[n], ca->fn, &conns[n], &o);
        if (r != 0) {
            atomic_store(&ca->c->err, r);
            close(fd);
            break;
        }
        n++;
    }
    for (unsigned i = 0; i < n; i++)
        urt_join(tasks[i], NULL);
    urt_listener_close(l);
    return NULL;
}

static int cap_listen(struct sockaddr_in *addr)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    /* the echo comes back in 64-byte chunks: no Nagle wait for the ACK of the first */
    int one = 1;
    cr_assert_eq(setsockopt(lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)), 0);
    cr_assert_eq(listen(lfd, 64), 0);
    socklen_t alen = sizeof(*addr);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)addr, &alen), 0);
    return lfd;
}

static int cap_connect(const struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    cr_assert_eq(connect_nointr(fd, (const struct sockaddr *)addr, sizeof(*addr)), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Send stream `id` from offset *sent on, at most `max` bytes, without blocking. */
static void flood_some(int fd, uint32_t id, uint64_t *sent, size_t max)
{
    uint8_t buf[4096];
    while (max) {
        size_t want = max < sizeof(buf) ? max : sizeof(buf);
        for (size_t k = 0; k < want; k++)
            buf[k] = stream_byte(id, *sent + k);
        ssize_t r = send(fd, buf, want, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r <= 0)
            return;
        *sent += (uint64_t)r;
        max -= (size_t)r;
    }
}

static void run_cap(void)
{
    for (unsigned w = 1; w <= 2; w++) {
        char who[64];
        snprintf(who, sizeof(who), "%u worker(s), %u buffers of %u bytes", w, CAP_POOL, CAP_BUF);
        urt_config cfg = {.workers = w, .rx_buffers = CAP_POOL, .rx_buffer_size = CAP_BUF};
        urt_runtime *rt = rt_new_cfg(&cfg);
        cap_run *c = calloc(1, sizeof(*c));
        cr_assert_not_null(c);
        c->hog_lfd = cap_listen(&c->hog_addr);
        c->normal_lfd = cap_listen(&c->normal_addr);
        cap_acceptor ha = {.c = c, .lfd = c->hog_lfd, .n = HOGS, .fn = hog_serve};
        cap_acceptor na = {.c = c, .lfd = c->normal_lfd, .n = NORMALS, .fn = normal_serve};
        urt_task *hat = NULL, *nat = NULL;
        cr_assert_eq(urt_spawn(rt, &hat, cap_accept, &ha), 0);
        cr_assert_eq(urt_spawn(rt, &nat, cap_accept, &na), 0);

        /* the flooding peers: each sends its burst before it connects the next */
        int hog_fd[HOGS];
        uint64_t sent[HOGS] = {0};
        for (unsigned i = 0; i < HOGS; i++) {
            hog_fd[i] = cap_connect(&c->hog_addr);
            flood_some(hog_fd[i], i, &sent[i], HOG_BURST);
        }
        /* and go on flooding while the server tasks count what they hold */
        uint64_t t0 = urt_now();
        while (atomic_load(&c->measured) < HOGS && urt_now() - t0 < 20 * SEC) {
            for (unsigned i = 0; i < HOGS; i++)
                if (sent[i] < HOG_FLOOD_MAX)
                    flood_some(hog_fd[i], i, &sent[i], 512);
            usleep(500);
        }
        cr_assert_eq(atomic_load(&c->measured), HOGS, "%s: only %d of %d flooded tasks got as far as counting", who,
                     atomic_load(&c->measured), HOGS);
        for (unsigned i = 0; i < HOGS; i++) {
            struct hog *h = &c->hogs[i];
            cr_assert_leq(h->held, URT_RX_MAX_HELD,
                          "%s: a flooded connection got %d chunks from urt_rx_recv without releasing any (cap %d)", who,
                          h->held, URT_RX_MAX_HELD);
            cr_assert_geq(h->held, 1, "%s: a flooded connection got nothing (%zd)", who, h->held_end);
            cr_assert_eq(h->held_end, -ENOBUFS, "%s: after %d chunks held urt_rx_recv gave %zd, not -ENOBUFS", who,
                         h->held, h->held_end);
        }

        /* the hogs hold what they may: a normal connection is still served */
        for (unsigned j = 0; j < NORMALS; j++) {
            int fd = cap_connect(&c->normal_addr);
            for (unsigned k = 0; k < NORMAL_ROUNDS; k++) {
                uint8_t out[NORMAL_MSG], in[NORMAL_MSG];
                for (unsigned b = 0; b < NORMAL_MSG; b++)
                    out[b] = (uint8_t)(j * 31 + k * 7 + b);
                cr_assert_eq(send_nointr(fd, out, sizeof(out), MSG_NOSIGNAL), (ssize_t)sizeof(out));
                size_t got = 0;
                while (got < sizeof(in)) {
                    ssize_t r = recv_nointr(fd, in + got, sizeof(in) - got, 0);
                    cr_assert_gt(r, 0,
                                 "%s: normal connection %u, round %u: no echo (%s) while the flooded ones hold "
                                 "their buffers",
                                 who, j, k, r < 0 ? strerror(errno) : "closed");
                    got += (size_t)r;
                }
                cr_assert_eq(memcmp(in, out, sizeof(in)), 0, "%s: normal connection %u: wrong echo", who, j);
            }
            shutdown(fd, SHUT_WR);
            close(fd);
        }
        atomic_store(&c->normals_done, 1);

        /* the hogs read on: every flooded byte arrives, in order */
        for (unsigned i = 0; i < HOGS; i++) {
            flood_some(hog_fd[i], i, &sent[i], 4096);
            cr_assert_eq(shutdown(hog_fd[i], SHUT_WR), 0);
        }
        cr_assert_eq(urt_join(hat, NULL), 0);
        cr_assert_eq(urt_join(nat, NULL), 0);
        cr_assert_eq(atomic_load(&c->err), 0, "%s: the server gave %d", who, atomic_load(&c->err));
        for (unsigned i = 0; i < HOGS; i++) {
            checker *k = &c->hogs[i].k;
            cr_assert_lt(k->id, HOGS, "%s: a flooded stream began with id %u", who, k->id);
            cr_assert_eq(k->err, 0, "%s: flooded stream %u: the receive gave %s", who, k->id, strerror((int)-k->err));
            cr_assert(k->eof, "%s: flooded stream %u: no end of stream", who, k->id);
            cr_assert_eq(k->received, sent[k->id], "%s: flooded stream %u: %llu of %llu bytes arrived", who, k->id,
                         (unsigned long long)k->received, (unsigned long long)sent[k->id]);
            cr_assert_eq(k->first_bad, UINT64_MAX, "%s: flooded stream %u: byte %llu differs", who, k->id,
                         (unsigned long long)k->first_bad);
        }
        for (unsigned i = 0; i < HOGS; i++)
            close(hog_fd[i]);
        close(c->hog_lfd);
        close(c->normal_lfd);
        free(c);
        urt_runtime_destroy(rt);
    }
}

Test(net_enobufs, flooding_peers_whose_tasks_hold_their_buffers_get_at_most_the_cap_and_others_are_served,
     .timeout = 120)
{
    run_cap();
}

Test(net_enobufs, the_cap_holds_also_without_the_kernels_byte_limit_on_multishot_receive, .timeout = 120)
{
    setenv("URT_NO_RECV_LIMIT", "1", 1);
    run_cap();
}
