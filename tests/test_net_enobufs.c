/*
 * test_net_enobufs.c - pooled receive with a tiny buffer ring (2 or 4
 * buffers of 64 bytes per worker) runs out of buffers all the time (the
 * kernel's -ENOBUFS, the per-receiver cap) and loses no byte: streams of
 * 1 MiB in all, over one connection and over several at once, arrive
 * complete and in order, whether the receiving task releases each buffer
 * itself or hands it to a plain thread that releases it there.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

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
