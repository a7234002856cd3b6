/*
 * test_net_echo.c - an echo server inside the runtime sends back every byte
 * it gets, in order, over 1, 100 and 1,000 loopback connections at once,
 * with sends from 1 B to 1 MiB: a plain server (urt_accept, urt_recv into a
 * per-connection buffer, urt_send_all) and a pooled one (urt_listener,
 * urt_rx_recv, urt_buf_release). Clients are tasks of the same runtime, or
 * plain threads with blocking sockets (on 127.0.0.1 and ::1).
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
#include <sys/resource.h>
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

/* a client op that waits this long means the server lost track of it */
#define CLIENT_OP_TIMEOUT (30 * SEC)

static const unsigned conn_counts[] = {1, 100 / SAN_DIV, 1000 / SAN_DIV};
#define NCONN_COUNTS (sizeof(conn_counts) / sizeof(conn_counts[0]))

/* Room for `want` descriptors: raise the soft limit toward the hard one. */
static void need_fds(rlim_t want)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur >= want)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < want)
        cr_skip_test("needs %llu descriptors, the hard limit is %llu", (unsigned long long)want,
                     (unsigned long long)rl.rlim_max);
    rl.rlim_cur = want;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
}

/* Byte `off` of connection `seed`'s stream. */
static inline uint8_t pattern(uint32_t seed, uint64_t off)
{
    uint32_t x = (uint32_t)off * 2654435761u ^ (uint32_t)(off >> 32) ^ (seed + 1u) * 40503u;
    return (uint8_t)((x >> 24) ^ (x >> 13));
}

static const size_t small_sizes[] = {1, 2, 3, 17, 100, 511, 1460, 4095, 4096, 4097, 16384, 65537};
#define NSMALL (sizeof(small_sizes) / sizeof(small_sizes[0]))
#define MSGS_PER_CONN 4

/* The j-th send of connection c: three small ones, then 1 MiB for one
 * connection in 50 (connection 0 among them), 256 KiB for one in 10, else
 * a fourth small one. */
static size_t msg_size(unsigned c, unsigned j)
{
    if (j < MSGS_PER_CONN - 1)
        return small_sizes[(c * 5u + j * 7u) % NSMALL];
    if (c % 50 == 0)
        return (size_t)1 << 20;
    if (c % 10 == 5)
        return (size_t)256 << 10;
    return small_sizes[(c * 3u + 1u) % NSMALL];
}

static uint64_t stream_bytes(unsigned c)
{
    uint64_t n = 0;
    for (unsigned j = 0; j < MSGS_PER_CONN; j++)
        n += msg_size(c, j);
    return n;
}

static void fill(uint8_t *buf, size_t n, uint32_t seed, uint64_t off)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = pattern(seed, off + i);
}

/* ---- a loopback listener ------------------------------------------------------------------------ */

typedef struct endpoint {
    int lfd;
    struct sockaddr_storage addr;
    socklen_t alen;
    int family;
} endpoint;

/* false when this host has no such loopback address */
static bool listen_loopback(endpoint *e, int family, int backlog)
{
    memset(e, 0, sizeof(*e));
    e->family = family;
    e->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (e->lfd < 0 && family == AF_INET6)
        return false;
    cr_assert_geq(e->lfd, 0, "socket: %s", strerror(errno));
    struct sockaddr_storage a;
    memset(&a, 0, sizeof(a));
    socklen_t alen;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        alen = sizeof(*in);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        alen = sizeof(*in6);
    }
    if (bind(e->lfd, (struct sockaddr *)&a, alen) != 0) {
        int err = errno;
        close(e->lfd);
        if (family == AF_INET6 && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT))
            return false;
        cr_assert_fail("bind: %s", strerror(err));
    }
    cr_assert_eq(listen(e->lfd, backlog), 0);
    e->alen = sizeof(e->addr);
    cr_assert_eq(getsockname(e->lfd, (struct sockaddr *)&e->addr, &e->alen), 0);
    return true;
}

/* ---- the servers --------------------------------------------------------------------------------- */

typedef enum { SERVER_PLAIN, SERVER_POOLED } server_kind;

typedef struct server {
    int lfd;
    server_kind kind;
    unsigned expect;            /* connections to accept, then serve to the end */
    atomic_uint accepted, finished;
    atomic_ullong echoed;
    atomic_int err;             /* first error, -errno */
    _Atomic(const char *) err_where;
} server;

/* more than any stream here needs, even one byte at a time */
#define MAX_CHUNKS (4l << 20)

typedef struct srv_conn {
    server *s;
    int fd;
    unsigned idx;
} srv_conn;

static void server_err(server *s, const char *where, long err)
{
    int zero = 0;
    if (atomic_compare_exchange_strong(&s->err, &zero, err ? (int)err : -1000))
        atomic_store(&s->err_where, where);
}

static void *serve_plain(void *arg)
{
    srv_conn *c = arg;
    server *s = c->s;
    /* 512 B .. 64 KiB: the server's reads cut the stream in different places */
    size_t cap = (size_t)512 << (c->idx % 8);
    uint8_t *buf = malloc(cap);
    if (!buf) {
        server_err(s, "server malloc", -ENOMEM);
        urt_close(c->fd);
        return NULL;
    }
    for (long i = 0; i < MAX_CHUNKS; i++) {
        ssize_t n = urt_recv(c->fd, buf, cap, 0);
        if (n == 0)
            break;
        if (n < 0) {
            server_err(s, "server urt_recv", n);
            break;
        }
        ssize_t w = urt_send_all(c->fd, buf, (size_t)n, 0);
        if (w != n) {
            server_err(s, "server urt_send_all", w);
            break;
        }
        atomic_fetch_add(&s->echoed, (unsigned long long)n);
    }
    free(buf);
    int r = urt_close(c->fd);
    if (r != 0)
        server_err(s, "server urt_close", r);
    atomic_fetch_add(&s->finished, 1);
    return NULL;
}

static void *serve_pooled(void *arg)
{
    srv_conn *c = arg;
    server *s = c->s;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, c->fd);
    if (r != 0) {
        server_err(s, "urt_rx_open", r);
        urt_close(c->fd);
        return NULL;
    }
    for (long i = 0; i < MAX_CHUNKS; i++) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n == 0)
            break;
        if (n < 0) {
            server_err(s, "urt_rx_recv", n);
            break;
        }
        if ((size_t)n != b.len || !b.data) {
            server_err(s, "urt_rx_recv length", -EPROTO);
            urt_buf_release(&b);
            break;
        }
        ssize_t w = urt_send_all(c->fd, b.data, b.len, 0);
        urt_buf_release(&b);
        if (w != n) {
            server_err(s, "server urt_send_all", w);
            break;
        }
        atomic_fetch_add(&s->echoed, (unsigned long long)n);
    }
    r = urt_rx_close(rx);
    if (r != 0)
        server_err(s, "urt_rx_close", r);
    r = urt_close(c->fd);
    if (r != 0)
        server_err(s, "server urt_close", r);
    atomic_fetch_add(&s->finished, 1);
    return NULL;
}

/* Accepts s->expect connections, a task each, and waits for all of them. */
static void *acceptor(void *arg)
{
    server *s = arg;
    srv_conn *conns = calloc(s->expect, sizeof(*conns));
    urt_task **tasks = calloc(s->expect, sizeof(*tasks));
    if (!conns || !tasks) {
        server_err(s, "acceptor malloc", -ENOMEM);
        free(conns);
        free(tasks);
        return NULL;
    }
    urt_listener *l = NULL;
    if (s->kind == SERVER_POOLED) {
        int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
        if (r != 0) {
            server_err(s, "urt_listener_open", r);
            s->expect = 0;
        }
    }
    unsigned n = 0;
    while (n < s->expect) {
        int fd = l ? urt_listener_accept(l) : urt_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            server_err(s, l ? "urt_listener_accept" : "urt_accept", fd);
            break;
        }
        conns[n] = (srv_conn){.s = s, .fd = fd, .idx = n};
        int r = urt_spawn(NULL, &tasks[n], l ? serve_pooled : serve_plain, &conns[n]);
        if (r != 0) {
            server_err(s, "urt_spawn", r);
            close(fd);
            break;
        }
        n++;
        atomic_store(&s->accepted, n);
    }
    for (unsigned i = 0; i < n; i++) {
        int r = urt_join(tasks[i], NULL);
        if (r != 0)
            server_err(s, "urt_join of a connection", r);
    }
    if (l) {
        int r = urt_listener_close(l);
        if (r != 0)
            server_err(s, "urt_listener_close", r);
    }
    free(tasks);
    free(conns);
    return NULL;
}

/* ---- clients ------------------------------------------------------------------------------------- */

typedef struct client {
    const endpoint *ep;
    unsigned idx;               /* picks the sizes and the pattern */
    uint64_t total;
    int fd;
    /* results */
    uint64_t sent, received, first_bad;
    bool eof;
    int err;
    const char *err_where;
} client;

static void client_init(client *c, const endpoint *ep, unsigned idx)
{
    memset(c, 0, sizeof(*c));
    c->ep = ep;
    c->idx = idx;
    c->total = stream_bytes(idx);
    c->fd = -1;
    c->first_bad = UINT64_MAX;
}

static void client_err(client *c, const char *where, long err)
{
    if (!c->err) {
        c->err = err ? (int)err : -1000;
        c->err_where = where;
    }
}

/* Both client kinds verify what comes back the same way. */
static void client_check(client *c, const uint8_t *buf, size_t n)
{
    if (c->first_bad == UINT64_MAX)
        for (size_t i = 0; i < n; i++)
            if (buf[i] != pattern(c->idx, c->received + i)) {
                c->first_bad = c->received + i;
                break;
            }
    c->received += n;
}

#define CLIENT_RECV_BUF (16u * 1024)

static void *task_sender(void *arg)
{
    client *c = arg;
    urt_op_timeout(CLIENT_OP_TIMEOUT);
    uint64_t off = 0;
    for (unsigned j = 0; j < MSGS_PER_CONN; j++) {
        size_t n = msg_size(c->idx, j);
        uint8_t *m = malloc(n);
        if (!m) {
            client_err(c, "client malloc", -ENOMEM);
            return NULL;
        }
        fill(m, n, c->idx, off);
        ssize_t r = urt_send_all(c->fd, m, n, 0);
        free(m);
        if (r != (ssize_t)n) {
            client_err(c, "client urt_send_all", r);
            return NULL;
        }
        off += n;
        c->sent = off;
    }
    int r = urt_shutdown(c->fd, SHUT_WR);
    if (r != 0)
        client_err(c, "client urt_shutdown", r);
    return NULL;
}

/* The receiving half; a sub-task sends, so neither direction waits on the other. */
static void *task_client(void *arg)
{
    client *c = arg;
    urt_op_timeout(CLIENT_OP_TIMEOUT);
    c->fd = socket(c->ep->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        client_err(c, "client socket", -errno);
        return NULL;
    }
    int r = urt_connect(c->fd, (const struct sockaddr *)&c->ep->addr, c->ep->alen);
    if (r != 0) {
        client_err(c, "client urt_connect", r);
        urt_close(c->fd);
        return NULL;
    }
    urt_task *tx = NULL;
    r = urt_spawn(NULL, &tx, task_sender, c);
    if (r != 0) {
        client_err(c, "client urt_spawn", r);
        urt_close(c->fd);
        return NULL;
    }
    uint8_t *buf = malloc(CLIENT_RECV_BUF);
    if (!buf)
        client_err(c, "client malloc", -ENOMEM);
    while (buf && c->received < c->total) {
        ssize_t n = urt_recv(c->fd, buf, CLIENT_RECV_BUF, 0);
        if (n <= 0) {
            client_err(c, n == 0 ? "client urt_recv: early end of stream" : "client urt_recv", n);
            break;
        }
        client_check(c, buf, (size_t)n);
    }
    if (buf && c->received == c->total) {
        ssize_t n = urt_recv(c->fd, buf, CLIENT_RECV_BUF, 0);
        if (n == 0)
            c->eof = true;
        else
            client_err(c, "client urt_recv past the end", n > 0 ? -EPROTO : n);
    }
    free(buf);
    if (c->received != c->total || !c->eof)
        urt_cancel(tx);   /* it may be stuck behind a server that stopped reading */
    r = urt_join(tx, NULL);
    if (r != 0 && r != -ECANCELED)
        client_err(c, "client urt_join", r);
    r = urt_close(c->fd);
    if (r != 0)
        client_err(c, "client urt_close", r);
    return NULL;
}

/* Checked before the acceptor is joined: a client that never connected
 * would leave it waiting. */
static void check_clients(client *cs, unsigned n, const char *what)
{
    for (unsigned i = 0; i < n; i++) {
        client *c = &cs[i];
        cr_assert_eq(c->err, 0, "%s: client %u: %s gave %s (sent %llu, received %llu of %llu)", what, i,
                     c->err_where, strerror(-c->err), (unsigned long long)c->sent,
                     (unsigned long long)c->received, (unsigned long long)c->total);
        cr_assert_eq(c->sent, c->total, "%s: client %u sent %llu of %llu", what, i, (unsigned long long)c->sent,
                     (unsigned long long)c->total);
        cr_assert_eq(c->received, c->total, "%s: client %u received %llu of %llu", what, i,
                     (unsigned long long)c->received, (unsigned long long)c->total);
        cr_assert_eq(c->first_bad, UINT64_MAX, "%s: client %u: byte %llu came back wrong", what, i,
                     (unsigned long long)c->first_bad);
        cr_assert(c->eof, "%s: client %u saw no end of stream", what, i);
    }
}

static void check_server(const server *s, unsigned n, const char *what)
{
    cr_assert_eq(atomic_load(&s->err), 0, "%s: server: %s gave %s", what, atomic_load(&s->err_where),
                 strerror(-atomic_load(&s->err)));
    cr_assert_eq(atomic_load(&s->accepted), n, "%s: the server accepted %u of %u", what,
                 atomic_load(&s->accepted), n);
    cr_assert_eq(atomic_load(&s->finished), n, "%s: %u of %u server connections ended", what,
                 atomic_load(&s->finished), n);
}

static void run_task_clients(server_kind kind)
{
    unsigned most = conn_counts[NCONN_COUNTS - 1];
    need_fds(2 * (rlim_t)most + 256);
    FOR_EACH_WORKER_COUNT(w) {
        for (size_t k = 0; k < NCONN_COUNTS; k++) {
            unsigned n = conn_counts[k];
            char what[96];
            snprintf(what, sizeof(what), "%s server, %u workers, %u connections",
                     kind == SERVER_PLAIN ? "plain" : "pooled", w, n);
            urt_runtime *rt = rt_new(w);
            endpoint ep;
            cr_assert(listen_loopback(&ep, AF_INET, (int)n + 64));
            server s = {.lfd = ep.lfd, .kind = kind, .expect = n};
            urt_task *acc = NULL;
            cr_assert_eq(urt_spawn(rt, &acc, acceptor, &s), 0);
            client *cs = calloc(n, sizeof(*cs));
            urt_task **ts = calloc(n, sizeof(*ts));
            cr_assert(cs && ts);
            for (unsigned i = 0; i < n; i++) {
                client_init(&cs[i], &ep, i);
                cr_assert_eq(urt_spawn(rt, &ts[i], task_client, &cs[i]), 0);
            }
            for (unsigned i = 0; i < n; i++)
                cr_assert_eq(urt_join(ts[i], NULL), 0, "%s: join of client %u", what, i);
            check_clients(cs, n, what);
            cr_assert_eq(urt_join(acc, NULL), 0);
            check_server(&s, n, what);
            uint64_t all = 0;
            for (unsigned i = 0; i < n; i++)
                all += cs[i].total;
            cr_assert_eq(atomic_load(&s.echoed), all, "%s: the server echoed %llu of %llu bytes", what,
                         (unsigned long long)atomic_load(&s.echoed), (unsigned long long)all);
            free(ts);
            free(cs);
            close(ep.lfd);
            urt_runtime_destroy(rt);
        }
    }
}

Test(net_echo, plain_server_echoes_every_byte_to_1_100_and_1000_task_clients, .timeout = 240)
{
    run_task_clients(SERVER_PLAIN);
}

Test(net_echo, pooled_server_echoes_every_byte_to_1_100_and_1000_task_clients, .timeout = 240)
{
    run_task_clients(SERVER_POOLED);
}

/* ---- clients on plain threads, blocking sockets ---------------------------------------------------- */

#define THREAD_CLIENTS 8

static void *thread_sender(void *arg)
{
    client *c = arg;
    uint64_t off = 0;
    for (unsigned j = 0; j < MSGS_PER_CONN; j++) {
        size_t n = msg_size(c->idx, j);
        uint8_t *m = malloc(n);
        if (!m) {
            client_err(c, "client malloc", -ENOMEM);
            return NULL;
        }
        fill(m, n, c->idx, off);
        size_t done = 0;
        while (done < n) {
            ssize_t r = send_nointr(c->fd, m + done, n - done, MSG_NOSIGNAL);
            if (r <= 0) {
                client_err(c, "client send", r < 0 ? -errno : -EPIPE);
                free(m);
                return NULL;
            }
            done += (size_t)r;
        }
        free(m);
        off += n;
        c->sent = off;
    }
    if (shutdown(c->fd, SHUT_WR) != 0)
        client_err(c, "client shutdown", -errno);
    return NULL;
}

static void *thread_client(void *arg)
{
    client *c = arg;
    c->fd = socket(c->ep->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        client_err(c, "client socket", -errno);
        return NULL;
    }
    /* a blocking socket, bounded: a stuck server shows as EAGAIN, not a hang */
    struct timeval tv = {.tv_sec = (time_t)(CLIENT_OP_TIMEOUT / SEC)};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect_nointr(c->fd, (const struct sockaddr *)&c->ep->addr, c->ep->alen) != 0) {
        client_err(c, "client connect", -errno);
        close(c->fd);
        return NULL;
    }
    pthread_t tx;
    int r = pthread_create(&tx, NULL, thread_sender, c);
    if (r != 0) {
        client_err(c, "pthread_create", -r);
        close(c->fd);
        return NULL;
    }
    uint8_t *buf = malloc(CLIENT_RECV_BUF);
    if (!buf)
        client_err(c, "client malloc", -ENOMEM);
    while (buf && c->received < c->total) {
        ssize_t n = recv_nointr(c->fd, buf, CLIENT_RECV_BUF, 0);
        if (n <= 0) {
            client_err(c, n == 0 ? "client recv: early end of stream" : "client recv", n < 0 ? -errno : 0);
            break;
        }
        client_check(c, buf, (size_t)n);
    }
    if (buf && c->received == c->total) {
        ssize_t n = recv_nointr(c->fd, buf, CLIENT_RECV_BUF, 0);
        if (n == 0)
            c->eof = true;
        else
            client_err(c, "client recv past the end", n > 0 ? -EPROTO : -errno);
    }
    free(buf);
    if (c->received != c->total || !c->eof)
        shutdown(c->fd, SHUT_RDWR);   /* unblocks the sender */
    pthread_join(tx, NULL);
    close(c->fd);
    return NULL;
}

Test(net_echo, both_servers_echo_every_byte_to_clients_on_plain_threads_over_ipv4_and_ipv6, .timeout = 120)
{
    static const unsigned thread_counts[] = {1, THREAD_CLIENTS};
    static const int families[] = {AF_INET, AF_INET6};
    for (int kind = SERVER_PLAIN; kind <= SERVER_POOLED; kind++) {
        FOR_EACH_WORKER_COUNT(w) {
            for (size_t f = 0; f < 2; f++) {
                for (size_t k = 0; k < 2; k++) {
                    unsigned n = thread_counts[k];
                    char what[112];
                    snprintf(what, sizeof(what), "%s server, %u workers, %u threads, %s",
                             kind == SERVER_PLAIN ? "plain" : "pooled", w, n,
                             families[f] == AF_INET ? "127.0.0.1" : "::1");
                    endpoint ep;
                    if (!listen_loopback(&ep, families[f], 64)) {
                        cr_log_warn("%s: no ::1 on this host; that part is left out", what);
                        continue;
                    }
                    urt_runtime *rt = rt_new(w);
                    server s = {.lfd = ep.lfd, .kind = (server_kind)kind, .expect = n};
                    urt_task *acc = NULL;
                    cr_assert_eq(urt_spawn(rt, &acc, acceptor, &s), 0);
                    client cs[THREAD_CLIENTS];
                    pthread_t th[THREAD_CLIENTS];
                    for (unsigned i = 0; i < n; i++) {
                        /* distinct from the task clients' sizes: 1 MiB for the first */
                        client_init(&cs[i], &ep, i * 10u);
                        cr_assert_eq(pthread_create(&th[i], NULL, thread_client, &cs[i]), 0);
                    }
                    for (unsigned i = 0; i < n; i++)
                        pthread_join(th[i], NULL);
                    check_clients(cs, n, what);
                    cr_assert_eq(urt_join(acc, NULL), 0);
                    check_server(&s, n, what);
                    close(ep.lfd);
                    urt_runtime_destroy(rt);
                }
            }
        }
    }
}
