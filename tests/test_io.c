/*
 * test_io.c - the I/O calls move the right bytes: send/recv over a
 * socketpair between tasks on any workers, read/write of a file at offsets
 * and at the current position, accept/connect on loopback, close.
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

static uint8_t pattern(size_t i) { return (uint8_t)(i * 31u + (i >> 8) * 7u + 1u); }

/* ---- send / recv --------------------------------------------------------------------------- */

#define STREAM_BYTES ((size_t)(4u << 20) / SAN_DIV)

typedef struct stream {
    int fds[2];
    size_t sent, received;
    ssize_t send_err, recv_err;
    size_t first_mismatch;
    bool eof_seen;
} stream;

static void *stream_sender(void *arg)
{
    stream *s = arg;
    uint8_t buf[8192];
    size_t off = 0;
    while (off < STREAM_BYTES) {
        size_t chunk = STREAM_BYTES - off;
        /* vary the chunk size so that boundaries fall everywhere */
        size_t want = 1 + (off * 7919u) % sizeof(buf);
        if (chunk > want)
            chunk = want;
        for (size_t i = 0; i < chunk; i++)
            buf[i] = pattern(off + i);
        ssize_t n = urt_send(s->fds[1], buf, chunk, 0);
        if (n <= 0) {
            s->send_err = n;
            break;
        }
        off += (size_t)n;   /* a short send is not an error: the rest goes next time */
        s->sent = off;
    }
    shutdown(s->fds[1], SHUT_WR);
    return NULL;
}

static void *stream_receiver(void *arg)
{
    stream *s = arg;
    uint8_t buf[5000];
    s->first_mismatch = SIZE_MAX;
    for (;;) {
        ssize_t n = urt_recv(s->fds[0], buf, sizeof(buf), 0);
        if (n == 0) {
            s->eof_seen = true;
            break;
        }
        if (n < 0) {
            s->recv_err = n;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != pattern(s->received + (size_t)i) && s->first_mismatch == SIZE_MAX)
                s->first_mismatch = s->received + (size_t)i;
        s->received += (size_t)n;
    }
    return NULL;
}

Test(io, send_and_recv_move_every_byte_in_order_over_a_socketpair, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        stream s;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.fds), 0);
        urt_task *rx = NULL, *tx = NULL;
        cr_assert_eq(urt_spawn(rt, &rx, stream_receiver, &s), 0);
        cr_assert_eq(urt_spawn(rt, &tx, stream_sender, &s), 0);
        cr_assert_eq(urt_join(tx, NULL), 0);
        cr_assert_eq(urt_join(rx, NULL), 0);
        cr_assert_eq(s.send_err, 0, "%u workers: urt_send gave %zd", w, s.send_err);
        cr_assert_eq(s.recv_err, 0, "%u workers: urt_recv gave %zd", w, s.recv_err);
        cr_assert_eq(s.sent, STREAM_BYTES);
        cr_assert_eq(s.received, STREAM_BYTES, "%u workers: received %zu of %zu bytes", w, s.received,
                     STREAM_BYTES);
        cr_assert_eq(s.first_mismatch, SIZE_MAX, "%u workers: byte %zu differs", w, s.first_mismatch);
        cr_assert(s.eof_seen, "recv did not return 0 at end of stream");
        close(s.fds[0]);
        close(s.fds[1]);
        urt_runtime_destroy(rt);
    }
}

typedef struct datagrams {
    int fds[2];
    unsigned got, wrong;
    ssize_t err;
} datagrams;

static void *dgram_sender(void *arg)
{
    datagrams *d = arg;
    for (unsigned i = 0; i < 1000; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof(msg), "message %u", i);
        ssize_t n = urt_send(d->fds[1], msg, (size_t)len, 0);
        if (n != len) {
            d->err = n;
            break;
        }
    }
    return NULL;
}

static void *dgram_receiver(void *arg)
{
    datagrams *d = arg;
    for (unsigned i = 0; i < 1000; i++) {
        char msg[64], want[32];
        int len = snprintf(want, sizeof(want), "message %u", i);
        ssize_t n = urt_recv(d->fds[0], msg, sizeof(msg), 0);
        if (n < 0) {
            d->err = n;
            break;
        }
        if (n != len || memcmp(msg, want, (size_t)len) != 0)
            d->wrong++;
        d->got++;
    }
    return NULL;
}

Test(io, recv_keeps_message_boundaries_on_a_seqpacket_pair, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        datagrams d;
        memset(&d, 0, sizeof(d));
        cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, d.fds), 0);
        urt_task *rx = NULL, *tx = NULL;
        cr_assert_eq(urt_spawn(rt, &rx, dgram_receiver, &d), 0);
        cr_assert_eq(urt_spawn(rt, &tx, dgram_sender, &d), 0);
        cr_assert_eq(urt_join(tx, NULL), 0);
        cr_assert_eq(urt_join(rx, NULL), 0);
        cr_assert_eq(d.err, 0, "%u workers: error %zd", w, d.err);
        cr_assert_eq(d.got, 1000);
        cr_assert_eq(d.wrong, 0, "%u workers: %u messages came wrong", w, d.wrong);
        close(d.fds[0]);
        close(d.fds[1]);
        urt_runtime_destroy(rt);
    }
}

/* ---- files ------------------------------------------------------------------------------------ */

typedef struct file_io {
    int fd;
    ssize_t w_far, w_near, w_cur1, w_cur2;
    ssize_t r_far, r_near, r_gap, r_eof, r_cur;
    char far[16], near[16], gap[8], eof[8], cur[16];
} file_io;

static void *file_ops(void *arg)
{
    file_io *f = arg;
    f->w_far = urt_write(f->fd, "far away", 8, 8192);
    f->w_near = urt_write(f->fd, "near", 4, 0);
    f->r_far = urt_read(f->fd, f->far, 8, 8192);
    f->r_near = urt_read(f->fd, f->near, 4, 0);
    f->r_gap = urt_read(f->fd, f->gap, 4, 100);          /* the hole reads as zeros */
    f->r_eof = urt_read(f->fd, f->eof, sizeof(f->eof), 8200);
    /* the current position: offset -1 */
    if (lseek(f->fd, 20000, SEEK_SET) != 20000)
        return (void *)1;
    f->w_cur1 = urt_write(f->fd, "abc", 3, -1);
    f->w_cur2 = urt_write(f->fd, "def", 3, -1);
    if (lseek(f->fd, 20000, SEEK_SET) != 20000)
        return (void *)2;
    f->r_cur = urt_read(f->fd, f->cur, 6, -1);
    return NULL;
}

Test(io, write_and_read_a_file_at_offsets_and_at_the_current_position, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        char path[] = "/tmp/urt-test-io-XXXXXX";
        int fd = mkstemp(path);
        cr_assert_geq(fd, 0);
        unlink(path);
        file_io f;
        memset(&f, 0, sizeof(f));
        memset(f.gap, 'x', sizeof(f.gap));
        f.fd = fd;
        void *err = NULL;
        cr_assert_eq(urt_runtime_block_on(rt, file_ops, &f, &err), 0);
        cr_assert_null(err, "lseek failed");
        cr_assert_eq(f.w_far, 8);
        cr_assert_eq(f.w_near, 4);
        cr_assert_eq(f.r_far, 8);
        cr_assert_eq(memcmp(f.far, "far away", 8), 0);
        cr_assert_eq(f.r_near, 4);
        cr_assert_eq(memcmp(f.near, "near", 4), 0);
        cr_assert_eq(f.r_gap, 4);
        cr_assert_eq(memcmp(f.gap, "\0\0\0\0", 4), 0);
        cr_assert_eq(f.r_eof, 0, "a read at end of file gave %zd", f.r_eof);
        cr_assert_eq(f.w_cur1, 3);
        cr_assert_eq(f.w_cur2, 3);
        cr_assert_eq(f.r_cur, 6);
        cr_assert_eq(memcmp(f.cur, "abcdef", 6), 0, "writes at the current position: %.6s", f.cur);

        /* what the kernel holds agrees */
        char check[8];
        cr_assert_eq(pread(fd, check, 8, 8192), 8);
        cr_assert_eq(memcmp(check, "far away", 8), 0);
        cr_assert_eq(pread(fd, check, 6, 20000), 6);
        cr_assert_eq(memcmp(check, "abcdef", 6), 0);
        close(fd);
        urt_runtime_destroy(rt);
    }
}

/* ---- accept / connect --------------------------------------------------------------------------- */

#define CLIENTS 8

typedef struct net {
    int lfd;
    struct sockaddr_in addr;
    atomic_uint served, client_ok;
    atomic_int err;
} net;

static void note_err(net *n, int where)
{
    int zero = 0;
    atomic_compare_exchange_strong(&n->err, &zero, where);
}

static void *serve_one(void *arg)
{
    net *n = arg;
    struct sockaddr_in peer;
    socklen_t plen = sizeof(peer);
    int c = urt_accept(n->lfd, (struct sockaddr *)&peer, &plen, SOCK_CLOEXEC);
    if (c < 0) {
        note_err(n, 1000 - c);
        return NULL;
    }
    if (plen != sizeof(peer) || peer.sin_family != AF_INET || peer.sin_addr.s_addr != htonl(INADDR_LOOPBACK))
        note_err(n, 2);
    char buf[16];
    ssize_t r = urt_recv(c, buf, sizeof(buf), 0);
    if (r != 4 || memcmp(buf, "ping", 4) != 0)
        note_err(n, 3);
    else if (urt_send(c, "pong", 4, 0) != 4)
        note_err(n, 4);
    else
        atomic_fetch_add(&n->served, 1);
    if (urt_close(c) != 0)
        note_err(n, 5);
    return NULL;
}

static void *client(void *arg)
{
    net *n = arg;
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        note_err(n, 10);
        return NULL;
    }
    int r = urt_connect(s, (struct sockaddr *)&n->addr, sizeof(n->addr));
    if (r != 0) {
        note_err(n, 2000 - r);
        urt_close(s);
        return NULL;
    }
    char buf[16];
    if (urt_send(s, "ping", 4, 0) != 4)
        note_err(n, 11);
    else if (urt_recv(s, buf, sizeof(buf), 0) != 4 || memcmp(buf, "pong", 4) != 0)
        note_err(n, 12);
    else if (urt_recv(s, buf, sizeof(buf), 0) != 0)
        note_err(n, 13);   /* the server closed: end of stream */
    else
        atomic_fetch_add(&n->client_ok, 1);
    if (urt_close(s) != 0)
        note_err(n, 14);
    return NULL;
}

Test(io, accept_and_connect_on_loopback, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        net n;
        memset(&n, 0, sizeof(n));
        n.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(n.lfd, 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(bind(n.lfd, (struct sockaddr *)&a, sizeof(a)), 0);
        cr_assert_eq(listen(n.lfd, 64), 0);
        socklen_t alen = sizeof(n.addr);
        cr_assert_eq(getsockname(n.lfd, (struct sockaddr *)&n.addr, &alen), 0);
        cr_assert_neq(n.addr.sin_port, 0);

        urt_task *servers[CLIENTS], *clients[CLIENTS];
        for (int i = 0; i < CLIENTS; i++)
            cr_assert_eq(urt_spawn(rt, &servers[i], serve_one, &n), 0);
        for (int i = 0; i < CLIENTS; i++)
            cr_assert_eq(urt_spawn(rt, &clients[i], client, &n), 0);
        for (int i = 0; i < CLIENTS; i++) {
            cr_assert_eq(urt_join(clients[i], NULL), 0);
            cr_assert_eq(urt_join(servers[i], NULL), 0);
        }
        cr_assert_eq(atomic_load(&n.err), 0, "%u workers: error code %d", w, atomic_load(&n.err));
        cr_assert_eq(atomic_load(&n.served), CLIENTS);
        cr_assert_eq(atomic_load(&n.client_ok), CLIENTS);
        close(n.lfd);
        urt_runtime_destroy(rt);
    }
}

Test(io, connect_to_a_closed_port_gives_econnrefused, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    /* a port that was just free: bind, read the port, close */
    int tmp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(tmp, (struct sockaddr *)&a, sizeof(a)), 0);
    net n;
    memset(&n, 0, sizeof(n));
    socklen_t alen = sizeof(n.addr);
    cr_assert_eq(getsockname(tmp, (struct sockaddr *)&n.addr, &alen), 0);
    close(tmp);
    urt_task *c = NULL;
    cr_assert_eq(urt_spawn(rt, &c, client, &n), 0);
    cr_assert_eq(urt_join(c, NULL), 0);
    cr_assert_eq(atomic_load(&n.err), 2000 + ECONNREFUSED, "connect gave %d", 2000 - atomic_load(&n.err));
    urt_runtime_destroy(rt);
}

/* ---- close --------------------------------------------------------------------------------------- */

typedef struct closing {
    int fds[2];
    ssize_t recv_res;
    int close_res;
} closing;

static void *recv_until_closed(void *arg)
{
    closing *c = arg;
    char buf[8];
    c->recv_res = urt_recv(c->fds[0], buf, sizeof(buf), 0);
    return NULL;
}

static void *close_under_a_pending_recv(void *arg)
{
    closing *c = arg;
    urt_task *r = NULL;
    if (urt_spawn(NULL, &r, recv_until_closed, c) != 0)
        return (void *)1;
    urt_sleep(20 * 1000 * 1000);   /* the receiver is parked in urt_recv by now; correctness does not depend on it */
    c->close_res = urt_close(c->fds[0]);
    urt_join(r, NULL);
    return NULL;
}

Test(io, close_ends_a_recv_pending_on_the_same_worker_and_closes_the_fd, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    closing c = {.recv_res = 12345, .close_res = 1};
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.fds), 0);
    void *err = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, close_under_a_pending_recv, &c, &err), 0);
    cr_assert_null(err);
    cr_assert_eq(c.close_res, 0, "urt_close gave %d", c.close_res);
    cr_assert_lt(c.recv_res, 0, "the pending recv returned %zd after its fd was closed", c.recv_res);
    cr_assert_eq(c.recv_res, -ECANCELED, "the pending recv gave %zd", c.recv_res);
    cr_assert_eq(fcntl(c.fds[0], F_GETFD), -1, "the descriptor is still open");
    close(c.fds[1]);
    urt_runtime_destroy(rt);
}

static void *close_in_task(void *arg)
{
    int fd = (int)(intptr_t)arg;
    return (void *)(intptr_t)urt_close(fd);
}

Test(io, close_in_a_task_closes_the_descriptor, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        cr_assert_geq(fd, 0);
        void *r = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, close_in_task, (void *)(intptr_t)fd, &r), 0);
        cr_assert_eq((intptr_t)r, 0);
        cr_assert_eq(fcntl(fd, F_GETFD), -1);
        /* outside a task it is a plain close */
        fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        cr_assert_eq(urt_close(fd), 0);
        cr_assert_eq(fcntl(fd, F_GETFD), -1);
        urt_runtime_destroy(rt);
    }
}

/* ---- close from another worker ------------------------------------------------------------------- */

typedef struct xclose {
    int fds[2];
    atomic_int recv_worker;
    ssize_t recv_res;
    uint64_t recv_timeout;
    int close_res;
    int close_worker;
} xclose;

static void *xrecv(void *arg)
{
    xclose *c = arg;
    char buf[8];
    uint64_t old = urt_op_timeout(c->recv_timeout);
    atomic_store(&c->recv_worker, urt_worker_id());
    c->recv_res = urt_recv(c->fds[0], buf, sizeof(buf), 0);
    urt_op_timeout(old);
    return NULL;
}

#define NOT_HERE ((void *)(intptr_t)7777)

static void *xclose_elsewhere(void *arg)
{
    xclose *c = arg;
    if (urt_worker_id() == atomic_load(&c->recv_worker))
        return NOT_HERE;   /* same worker: try again with another task */
    c->close_worker = urt_worker_id();
    c->close_res = urt_close(c->fds[0]);
    return NULL;
}

static void *xclose_here(void *arg)
{
    xclose *c = arg;
    if (urt_worker_id() != atomic_load(&c->recv_worker))
        return NOT_HERE;
    c->close_res = urt_close(c->fds[0]);
    return NULL;
}

/* Close a socket while a task on `where` (another worker / the same one)
 * waits in urt_recv on it: the receiver gets -ECANCELED (not a timeout,
 * even under an op timeout), the peer sees the end of the stream, and the
 * fd is closed once urt_close returns. */
static void close_under_recv(unsigned workers, urt_fn closer, uint64_t recv_timeout)
{
    urt_runtime *rt = rt_new(workers);
    xclose c = {.recv_res = 12345, .close_res = 1, .recv_timeout = recv_timeout};
    atomic_store(&c.recv_worker, -1);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, c.fds), 0);
    urt_task *r = NULL;
    cr_assert_eq(urt_spawn(rt, &r, xrecv, &c), 0);
    await_waiting(rt, r, "recv");
    void *res = NOT_HERE;
    for (int tries = 0; res == NOT_HERE && tries < 1000; tries++) {
        urt_task *k = NULL;
        cr_assert_eq(urt_spawn(rt, &k, closer, &c), 0);
        cr_assert_eq(urt_join(k, &res), 0);
    }
    cr_assert_null(res, "never ran the closer where it had to run");
    cr_assert_eq(c.close_res, 0, "urt_close gave %d", c.close_res);
    cr_assert_eq(fcntl(c.fds[0], F_GETFD), -1, "the descriptor is still open after urt_close returned");
    char b;
    cr_assert_eq(recv(c.fds[1], &b, 1, 0), 0, "the peer does not see the end of the stream");
    cr_assert_eq(urt_join(r, NULL), 0);
    cr_assert_eq(c.recv_res, -ECANCELED, "the pending recv gave %zd", c.recv_res);
    close(c.fds[1]);
    urt_runtime_destroy(rt);
}

Test(io, close_from_another_worker_ends_the_pending_recv_there_and_closes_the_socket, .timeout = 60)
{
    close_under_recv(2, xclose_elsewhere, 0);
    close_under_recv(4, xclose_elsewhere, 0);
}

Test(io, close_under_a_recv_with_an_op_timeout_gives_ecanceled_not_etimedout, .timeout = 60)
{
    close_under_recv(1, xclose_here, 3600ull * 1000 * 1000 * 1000);
    close_under_recv(2, xclose_elsewhere, 3600ull * 1000 * 1000 * 1000);
}

/* ---- lengths past 32 bits ------------------------------------------------------------------------- */

typedef struct biglen {
    int fds[2];
    char *buf;
    ssize_t recv4g, recvmax, send4g, read4g;
    int file;
} biglen;

static void *big_lengths(void *arg)
{
    biglen *b = arg;
    b->recv4g = urt_recv(b->fds[0], b->buf, (size_t)1 << 32, 0);
    send(b->fds[1], "67890", 5, 0);
    b->recvmax = urt_recv(b->fds[0], b->buf, SIZE_MAX, 0);
    b->send4g = urt_send(b->fds[0], b->buf, (size_t)1 << 32, MSG_DONTWAIT);
    b->read4g = urt_read(b->file, b->buf, (size_t)1 << 32, 0);
    return NULL;
}

/* Lengths larger than the kernel takes are clamped the same way by every
 * call, never truncated to 32 bits (1 << 32 would become 0: "peer closed"). */
Test(io, lengths_past_4_gib_are_clamped_not_truncated, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    biglen b = {0};
    size_t span = ((size_t)1 << 32) + 4096;
    b.buf = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(b.buf, MAP_FAILED);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.fds), 0);
    cr_assert_eq(send(b.fds[1], "12345", 5, 0), 5);
    char path[] = "/tmp/urt-biglen-XXXXXX";
    b.file = mkstemp(path);
    cr_assert_geq(b.file, 0);
    unlink(path);
    cr_assert_eq(write(b.file, "abc", 3), 3);
    cr_assert_eq(urt_runtime_block_on(rt, big_lengths, &b, NULL), 0);
    cr_assert_eq(b.recv4g, 5, "urt_recv(1 << 32) gave %zd", b.recv4g);
    cr_assert_eq(b.recvmax, 5, "urt_recv(SIZE_MAX) gave %zd", b.recvmax);
    cr_assert_gt(b.send4g, 0, "urt_send(1 << 32) gave %zd", b.send4g);
    cr_assert_eq(b.read4g, 3, "urt_read(1 << 32) gave %zd", b.read4g);
    close(b.file);
    close(b.fds[0]);
    close(b.fds[1]);
    munmap(b.buf, span);
    urt_runtime_destroy(rt);
}

/* ---- tiny rings ---------------------------------------------------------------------------------- */

typedef struct tiny {
    int fds[2];
    ssize_t res;
    uint64_t took;
} tiny;

static void *timed_recv(void *arg)
{
    tiny *t = arg;
    char b[4];
    uint64_t old = urt_op_timeout(200ull * 1000 * 1000);
    uint64_t t0 = urt_now();
    t->res = urt_recv(t->fds[0], b, sizeof(b), 0);
    t->took = urt_now() - t0;
    urt_op_timeout(old);
    return NULL;
}

/* Any ring_entries is taken (rounded up to what the runtime needs), and an
 * op with its linked timeout still goes to the kernel as one pair. */
Test(io, tiny_ring_sizes_still_keep_op_and_linked_timeout_together, .timeout = 60)
{
    static const unsigned sizes[] = {1, 2, 3, 5};
    for (unsigned i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        urt_config cfg = {.workers = 1, .ring_entries = sizes[i]};
        urt_runtime *rt = rt_new_cfg(&cfg);
        for (int round = 0; round < 3; round++) {
            tiny t = {.res = 1};
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, t.fds), 0);
            cr_assert_eq(urt_runtime_block_on(rt, timed_recv, &t, NULL), 0);
            cr_assert_eq(t.res, -ETIMEDOUT, "ring_entries %u: recv gave %zd", sizes[i], t.res);
            cr_assert_lt(t.took, 3000ull * 1000 * 1000, "ring_entries %u: a 200 ms timeout took %llu ms", sizes[i],
                         (unsigned long long)(t.took / 1000000));
            close(t.fds[0]);
            close(t.fds[1]);
        }
        urt_runtime_destroy(rt);
    }
}
