/*
 * test_sock.c - urt_socket, urt_recvfrom / urt_sendto and urt_recvmsg /
 * urt_sendmsg: datagrams over loopback each arrive exactly once with the
 * sender's address, ancillary data (IP_PKTINFO) comes back, streams move
 * scattered iovecs, errors are the syscall's (-EBADF, -ENOTSOCK, a closed
 * peer), bad input is -EINVAL, time bounds and cancellation end a pending
 * receive, lengths past 4 GiB are clamped, and the syscall fallback (ring
 * opcodes taken away) gives the same results.
 */
#include <criterion/criterion.h>

#include <limits.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/sock_test.h"

/* the opcodes the socket calls use: SENDMSG 9, RECVMSG 10, SOCKET 45 */
#define NO_SOCK_OPS "9,10,45"

/* ---- urt_socket --------------------------------------------------------------------------- */

typedef struct sock_made {
    int udp, tcp, bad;
    int fl_nonblock;
} sock_made;

static void *make_sockets(void *arg)
{
    sock_made *m = arg;
    m->udp = urt_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    m->tcp = urt_socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK, 0);
    m->fl_nonblock = m->tcp >= 0 ? fcntl(m->tcp, F_GETFL) & O_NONBLOCK : -1;
    m->bad = urt_socket(12345, SOCK_STREAM, 0);
    return NULL;
}

static void check_sockets(urt_runtime *rt)
{
    sock_made m = {0};
    cr_assert_eq(urt_runtime_block_on(rt, make_sockets, &m, NULL), 0);
    cr_assert_geq(m.udp, 0, "urt_socket(udp) gave %d", m.udp);
    int type = 0;
    socklen_t tl = sizeof(type);
    cr_assert_eq(getsockopt(m.udp, SOL_SOCKET, SO_TYPE, &type, &tl), 0);
    cr_assert_eq(type, SOCK_DGRAM);
    cr_assert_eq(fcntl(m.udp, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    if (m.tcp != -EAFNOSUPPORT) {   /* a kernel without IPv6 */
        cr_assert_geq(m.tcp, 0, "urt_socket(tcp6) gave %d", m.tcp);
        cr_assert_eq(m.fl_nonblock, O_NONBLOCK, "SOCK_NONBLOCK was not applied");
        close(m.tcp);
    }
    cr_assert_eq(m.bad, -EAFNOSUPPORT, "urt_socket(bad domain) gave %d", m.bad);
    close(m.udp);
}

Test(sock, socket_creates_sockets_with_their_flags_and_reports_bad_domains_also_on_the_fallback, .timeout = 30)
{
    on_each_runtime(check_sockets, 2, NO_SOCK_OPS, NULL);
    cr_assert_eq(urt_socket(AF_INET, SOCK_DGRAM, 0), -EPERM, "outside a task");
}

/* ---- 10,000 datagrams, each seen once ------------------------------------------------------ */

#define DGRAMS (10000 / SAN_DIV)
#define WINDOW 64      /* datagrams in flight at most: the receiver's buffer cannot overflow */
#define ACK_EVERY 16

typedef struct dgram_run {
    int rx, tx;                        /* data: tx -> rx; acks: rx -> tx */
    struct sockaddr_in rx_addr, tx_addr;
    unsigned char seen[DGRAMS];
    unsigned received, dups, wrong_src, bad_len;
    ssize_t rx_err, tx_err;
} dgram_run;

typedef struct dgram {
    uint32_t seq;
    char pad[60];
} dgram;

static void *dgram_receive(void *arg)
{
    dgram_run *d = arg;
    uint64_t old = urt_op_timeout(20 * SEC);   /* a lost datagram fails the test instead of hanging it */
    while (d->received < DGRAMS) {
        dgram g;
        struct sockaddr_in src;
        socklen_t sl = sizeof(src);
        ssize_t n = urt_recvfrom(d->rx, &g, sizeof(g), 0, (struct sockaddr *)&src, &sl);
        if (n < 0) {
            d->rx_err = n;
            break;
        }
        if (n != (ssize_t)sizeof(g) || g.seq >= DGRAMS) {
            d->bad_len++;
            continue;
        }
        if (sl != sizeof(src) || src.sin_port != d->tx_addr.sin_port || src.sin_addr.s_addr != d->tx_addr.sin_addr.s_addr)
            d->wrong_src++;
        if (d->seen[g.seq]++)
            d->dups++;
        d->received++;
        if (d->received % ACK_EVERY == 0 || d->received == DGRAMS) {
            uint32_t ack = d->received;
            ssize_t s = urt_sendto(d->rx, &ack, sizeof(ack), 0, (struct sockaddr *)&src, sl);
            if (s != sizeof(ack)) {
                d->rx_err = s;
                break;
            }
        }
    }
    urt_op_timeout(old);
    return NULL;
}

static void *dgram_send(void *arg)
{
    dgram_run *d = arg;
    uint64_t old = urt_op_timeout(20 * SEC);
    uint32_t acked = 0;
    for (uint32_t seq = 0; seq < DGRAMS;) {
        if (seq - acked >= WINDOW) {
            uint32_t ack;
            ssize_t n = urt_recvfrom(d->tx, &ack, sizeof(ack), 0, NULL, NULL);
            if (n != sizeof(ack)) {
                d->tx_err = n < 0 ? n : -EPROTO;
                break;
            }
            if (ack > acked)
                acked = ack;
            continue;
        }
        dgram g = {.seq = seq};
        ssize_t n = urt_sendto(d->tx, &g, sizeof(g), 0, (struct sockaddr *)&d->rx_addr, sizeof(d->rx_addr));
        if (n != sizeof(g)) {
            d->tx_err = n;
            break;
        }
        seq++;
    }
    urt_op_timeout(old);
    return NULL;
}

static void run_datagrams(urt_runtime *rt, unsigned w)
{
    dgram_run *d = calloc(1, sizeof(*d));
    cr_assert_not_null(d);
    d->rx = udp_loopback(&d->rx_addr);
    d->tx = udp_loopback(&d->tx_addr);
    urt_task *r = NULL, *s = NULL;
    cr_assert_eq(urt_spawn(rt, &r, dgram_receive, d), 0);
    cr_assert_eq(urt_spawn(rt, &s, dgram_send, d), 0);
    cr_assert_eq(urt_join(s, NULL), 0);
    cr_assert_eq(urt_join(r, NULL), 0);
    cr_assert_eq(d->tx_err, 0, "%u workers: sender: %zd", w, d->tx_err);
    cr_assert_eq(d->rx_err, 0, "%u workers: receiver: %zd after %u", w, d->rx_err, d->received);
    cr_assert_eq(d->received, DGRAMS);
    cr_assert_eq(d->dups, 0);
    cr_assert_eq(d->bad_len, 0);
    cr_assert_eq(d->wrong_src, 0, "recvfrom reported a wrong source address");
    for (unsigned i = 0; i < DGRAMS; i++)
        cr_assert_eq(d->seen[i], 1, "datagram %u seen %u times", i, d->seen[i]);
    close(d->rx);
    close(d->tx);
    free(d);
}

Test(sock, udp_datagrams_over_loopback_arrive_each_exactly_once, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        run_datagrams(rt, w);
        urt_runtime_destroy(rt);
    }
}

Test(sock, udp_datagrams_arrive_each_exactly_once_on_the_fallback, .timeout = 120)
{
    /* "all": no POLL_ADD either, so the readiness waits run poll(2) on the pool */
    const char *sets[] = {NO_SOCK_OPS, "all"};
    for (unsigned i = 0; i < 2; i++) {
        urt_runtime *rt = rt_new_no_ops(2, sets[i]);
        run_datagrams(rt, 2);
        urt_runtime_destroy(rt);
    }
}

/* ---- recvmsg with ancillary data ----------------------------------------------------------- */

typedef struct pktinfo_run {
    int rx, tx;
    struct sockaddr_in rx_addr, tx_addr;
    ssize_t got, sent;
    char data[16];
    struct sockaddr_in src;
    socklen_t namelen;
    size_t controllen;
    bool have_info;
    struct in_addr dst;
    int flags;
} pktinfo_run;

static void *pktinfo_receive(void *arg)
{
    pktinfo_run *p = arg;
    struct iovec iov[2] = {{p->data, 4}, {p->data + 4, sizeof(p->data) - 4}};
    union {
        char buf[CMSG_SPACE(sizeof(struct in_pktinfo))];
        struct cmsghdr align;
    } ctl;
    struct msghdr m = {.msg_name = &p->src, .msg_namelen = sizeof(p->src), .msg_iov = iov, .msg_iovlen = 2,
                       .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
    const char hello[] = "pktinfo-check";
    p->sent = urt_sendto(p->tx, hello, sizeof(hello), 0, (struct sockaddr *)&p->rx_addr, sizeof(p->rx_addr));
    p->got = urt_recvmsg(p->rx, &m, 0);
    p->namelen = m.msg_namelen;
    p->controllen = m.msg_controllen;
    p->flags = m.msg_flags;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
        if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo info;
            memcpy(&info, CMSG_DATA(c), sizeof(info));
            p->dst = info.ipi_addr;
            p->have_info = true;
        }
    return NULL;
}

static void check_pktinfo(urt_runtime *rt)
{
    pktinfo_run p;
    memset(&p, 0, sizeof(p));
    p.rx = udp_loopback(&p.rx_addr);
    p.tx = udp_loopback(&p.tx_addr);
    int on = 1;
    cr_assert_eq(setsockopt(p.rx, IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)), 0);
    cr_assert_eq(urt_runtime_block_on(rt, pktinfo_receive, &p, NULL), 0);
    cr_assert_eq(p.sent, 14);
    cr_assert_eq(p.got, 14, "urt_recvmsg gave %zd", p.got);
    cr_assert_str_eq(p.data, "pktinfo-check", "the datagram was split over two iovecs in order");
    cr_assert_eq(p.namelen, sizeof(struct sockaddr_in), "msg_namelen was not written back");
    cr_assert_eq(p.src.sin_port, p.tx_addr.sin_port);
    cr_assert_gt(p.controllen, 0, "msg_controllen was not written back");
    cr_assert(p.have_info, "no IP_PKTINFO control message");
    cr_assert_eq(p.dst.s_addr, htonl(INADDR_LOOPBACK), "IP_PKTINFO destination %s", inet_ntoa(p.dst));
    cr_assert_eq(p.flags & (MSG_TRUNC | MSG_CTRUNC), 0);
    close(p.rx);
    close(p.tx);
}

Test(sock, recvmsg_returns_ip_pktinfo_with_the_destination_address_also_on_the_fallback, .timeout = 30)
{
    on_each_runtime(check_pktinfo, 1, NO_SOCK_OPS, "all");
}

/* ---- streams: iovecs, EOF, a closed peer, errors ---------------------------------------------- */

typedef struct stream_run {
    int fds[2], gone[2];
    int file;
    ssize_t dontwait, sent, got, eof, epipe, epipe_msg, badf, badf_closed, notsock, notsock_msg;
    char buf[32];
} stream_run;

static void *stream_calls(void *arg)
{
    stream_run *s = arg;
    struct iovec out[3] = {{"ab", 2}, {"", 0}, {"cdef", 4}};
    struct msghdr mo = {.msg_iov = out, .msg_iovlen = 3};
    s->dontwait = urt_recvfrom(s->fds[0], s->buf, 1, MSG_DONTWAIT, NULL, NULL);   /* nothing there yet */
    s->sent = urt_sendmsg(s->fds[1], &mo, 0);
    shutdown(s->fds[1], SHUT_WR);
    struct iovec in[2] = {{s->buf, 3}, {s->buf + 3, 10}};
    struct msghdr mi = {.msg_iov = in, .msg_iovlen = 2};
    s->got = urt_recvmsg(s->fds[0], &mi, MSG_WAITALL);   /* WAITALL: 13 bytes, or what came before EOF */
    s->eof = urt_recvfrom(s->fds[0], s->buf + 16, 8, 0, NULL, NULL);
    /* the peer is gone: -EPIPE, and no SIGPIPE kills the test */
    s->epipe = urt_sendto(s->gone[1], "x", 1, 0, NULL, 0);
    s->epipe_msg = urt_sendmsg(s->gone[1], &mo, 0);
    s->badf = urt_recvfrom(-1, s->buf, 1, 0, NULL, NULL);
    int d = dup(s->file);
    close(d);   /* a number that is not open */
    s->badf_closed = urt_sendto(d, "x", 1, 0, NULL, 0);
    s->notsock = urt_recvfrom(s->file, s->buf, 1, 0, NULL, NULL);
    s->notsock_msg = urt_sendmsg(s->file, &mo, 0);
    return NULL;
}

static void check_stream(urt_runtime *rt)
{
    stream_run s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.fds), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.gone), 0);
    close(s.gone[0]);
    s.file = pattern_file(16);
    cr_assert_eq(urt_runtime_block_on(rt, stream_calls, &s, NULL), 0);
    cr_assert_eq(s.dontwait, -EAGAIN, "recvfrom(MSG_DONTWAIT) on an empty socket gave %zd", s.dontwait);
    cr_assert_eq(s.sent, 6, "sendmsg of 3 iovecs gave %zd", s.sent);
    cr_assert_eq(s.got, 6, "recvmsg gave %zd", s.got);
    cr_assert_eq(memcmp(s.buf, "abcdef", 6), 0, "the bytes were not scattered in order");
    cr_assert_eq(s.eof, 0, "recvfrom after the peer's shutdown gave %zd", s.eof);
    cr_assert_eq(s.epipe, -EPIPE, "sendto to a closed peer gave %zd", s.epipe);
    cr_assert_eq(s.epipe_msg, -EPIPE, "sendmsg to a closed peer gave %zd", s.epipe_msg);
    cr_assert_eq(s.badf, -EBADF);
    cr_assert_eq(s.badf_closed, -EBADF, "sendto on a closed fd gave %zd", s.badf_closed);
    cr_assert_eq(s.notsock, -ENOTSOCK, "recvfrom on a file gave %zd", s.notsock);
    cr_assert_eq(s.notsock_msg, -ENOTSOCK, "sendmsg on a file gave %zd", s.notsock_msg);
    close(s.fds[0]);
    close(s.fds[1]);
    close(s.gone[1]);
    close(s.file);
}

Test(sock, stream_iovecs_eof_closed_peer_and_bad_fds_give_the_syscall_results_also_on_the_fallback, .timeout = 30)
{
    on_each_runtime(check_stream, 1, NO_SOCK_OPS, "all");
}

/* ---- bad input ------------------------------------------------------------------------------ */

typedef struct bad_run {
    int fd;
    ssize_t r[12];
} bad_run;

static void *bad_calls(void *arg)
{
    bad_run *b = arg;
    char c;
    socklen_t sl = 0;
    struct iovec iov = {NULL, 4};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    struct msghdr many = {.msg_iov = &iov, .msg_iovlen = (size_t)IOV_MAX + 1};
    struct msghdr noiov = {.msg_iov = NULL, .msg_iovlen = 2};
    struct iovec ok = {&c, 1};
    struct msghdr noctl = {.msg_iov = &ok, .msg_iovlen = 1, .msg_control = NULL, .msg_controllen = 16};
    b->r[0] = urt_recvfrom(b->fd, NULL, 4, 0, NULL, NULL);
    b->r[1] = urt_sendto(b->fd, NULL, 4, 0, NULL, 0);
    b->r[2] = urt_recvfrom(b->fd, &c, 1, 0, (struct sockaddr *)&c, NULL);
    b->r[3] = urt_recvmsg(b->fd, NULL, 0);
    b->r[4] = urt_sendmsg(b->fd, NULL, 0);
    b->r[5] = urt_recvmsg(b->fd, &m, 0);
    b->r[6] = urt_sendmsg(b->fd, &many, 0);
    b->r[7] = urt_recvmsg(b->fd, &noiov, 0);
    b->r[8] = urt_recvmsg(b->fd, &noctl, 0);
    struct msghdr good = {.msg_iov = &ok, .msg_iovlen = 1};
    b->r[9] = urt_recvmsg(-3, &good, 0);
    b->r[10] = urt_sendto(-1, &c, 1, 0, NULL, 0);
    b->r[11] = urt_recvfrom(-1, &c, 1, 0, NULL, &sl);
    return NULL;
}

Test(sock, bad_input_gives_einval_or_ebadf_without_a_syscall, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    bad_run b;
    memset(&b, 0, sizeof(b));
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, fds), 0);
    b.fd = fds[0];
    cr_assert_eq(urt_runtime_block_on(rt, bad_calls, &b, NULL), 0);
    for (int i = 0; i <= 8; i++)
        cr_assert_eq(b.r[i], -EINVAL, "bad call %d gave %zd", i, b.r[i]);
    for (int i = 9; i <= 11; i++)
        cr_assert_eq(b.r[i], -EBADF, "bad call %d gave %zd", i, b.r[i]);
    char c;
    cr_assert_eq(urt_recvfrom(fds[0], &c, 1, 0, NULL, NULL), -EPERM, "outside a task");
    cr_assert_eq(urt_sendmsg(fds[0], &(struct msghdr){0}, 0), -EPERM, "outside a task");
    close(fds[0]);
    close(fds[1]);
    urt_runtime_destroy(rt);
}

/* ---- time bounds and cancellation ---------------------------------------------------------------- */

typedef struct bound_run {
    int fd;
    ssize_t timed, deadlined, cancelled;
    uint64_t took_timed, took_deadline;
} bound_run;

static void *bounded_receives(void *arg)
{
    bound_run *b = arg;
    char c;
    uint64_t old = urt_op_timeout(20 * MS);
    uint64_t t0 = urt_now();
    b->timed = urt_recvfrom(b->fd, &c, 1, 0, NULL, NULL);
    b->took_timed = urt_now() - t0;
    urt_op_timeout(old);
    struct iovec iov = {&c, 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    t0 = urt_now();
    uint64_t od = urt_deadline(t0 + 20 * MS);
    b->deadlined = urt_recvmsg(b->fd, &m, 0);
    b->took_deadline = urt_now() - t0;
    urt_deadline(od);
    return NULL;
}

static void *receive_until_cancelled(void *arg)
{
    bound_run *b = arg;
    char c;
    b->cancelled = urt_recvfrom(b->fd, &c, 1, 0, NULL, NULL);
    return NULL;
}

static void check_bounds(urt_runtime *rt, const char *wait_name)
{
    bound_run b = {.timed = 1, .deadlined = 1, .cancelled = 1};
    struct sockaddr_in a;
    b.fd = udp_loopback(&a);
    cr_assert_eq(urt_runtime_block_on(rt, bounded_receives, &b, NULL), 0);
    cr_assert_eq(b.timed, -ETIMEDOUT, "recvfrom under a 20 ms op timeout gave %zd", b.timed);
    cr_assert_geq(b.took_timed, 20 * MS, "the op timeout fired early");
    cr_assert_lt(b.took_timed, 10 * SEC);
    cr_assert_eq(b.deadlined, -ETIMEDOUT, "recvmsg past its deadline gave %zd", b.deadlined);
    cr_assert_geq(b.took_deadline, 19 * MS);
    cr_assert_lt(b.took_deadline, 10 * SEC);
    cancel_while_waiting(rt, receive_until_cancelled, &b, wait_name);   /* NULL: poll(2) on the pool */
    cr_assert_eq(b.cancelled, -ECANCELED, "a cancelled recvfrom gave %zd", b.cancelled);
    close(b.fd);
}

Test(sock, op_timeout_deadline_and_cancel_end_a_pending_receive, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        check_bounds(rt, "recvmsg");
        urt_runtime_destroy(rt);
    }
}

Test(sock, op_timeout_deadline_and_cancel_end_a_fallback_receive, .timeout = 60)
{
    urt_runtime *rt = rt_new_no_ops(2, NO_SOCK_OPS);   /* the wait is a POLL_ADD on the ring */
    check_bounds(rt, "poll");
    urt_runtime_destroy(rt);
    rt = rt_new_no_ops(2, "all");                       /* the wait is poll(2) on the blocking pool */
    check_bounds(rt, NULL);
    urt_runtime_destroy(rt);
}

/* ---- lengths past 4 GiB ------------------------------------------------------------------------- */

typedef struct big_run {
    int fds[2];
    char *buf;
    ssize_t recv4g, recvmsg4g, send4g;
} big_run;

static void *big_lengths(void *arg)
{
    big_run *b = arg;
    b->recv4g = urt_recvfrom(b->fds[0], b->buf, (size_t)1 << 32, 0, NULL, NULL);
    send(b->fds[1], "67890", 5, 0);
    struct iovec iov = {b->buf, ((size_t)1 << 32) + 7};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    b->recvmsg4g = urt_recvmsg(b->fds[0], &m, 0);
    b->send4g = urt_sendto(b->fds[0], b->buf, (size_t)1 << 32, MSG_DONTWAIT, NULL, 0);
    return NULL;
}

Test(sock, lengths_past_4_gib_are_clamped_not_truncated, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    big_run b = {0};
    size_t span = ((size_t)1 << 32) + 4096;
    b.buf = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    cr_assert_neq(b.buf, MAP_FAILED);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.fds), 0);
    cr_assert_eq(send(b.fds[1], "12345", 5, 0), 5);
    cr_assert_eq(urt_runtime_block_on(rt, big_lengths, &b, NULL), 0);
    cr_assert_eq(b.recv4g, 5, "urt_recvfrom(1 << 32) gave %zd", b.recv4g);
    cr_assert_eq(b.recvmsg4g, 5, "urt_recvmsg(1 << 32 + 7) gave %zd", b.recvmsg4g);
    cr_assert_gt(b.send4g, 0, "urt_sendto(1 << 32) gave %zd", b.send4g);
    close(b.fds[0]);
    close(b.fds[1]);
    munmap(b.buf, span);
    urt_runtime_destroy(rt);
}

/* ---- inside urt_block_in_place -------------------------------------------------------------------- */

typedef struct bip_run {
    int rx, tx;
    struct sockaddr_in rx_addr, tx_addr;
    ssize_t sent, got;
    int sock;
    socklen_t sl;
    struct sockaddr_in src;
    char buf[8];
} bip_run;

static void *plain_calls(void *arg)
{
    bip_run *b = arg;
    b->sent = urt_sendto(b->tx, "bip", 3, 0, (struct sockaddr *)&b->rx_addr, sizeof(b->rx_addr));
    b->sl = sizeof(b->src);
    b->got = urt_recvfrom(b->rx, b->buf, sizeof(b->buf), 0, (struct sockaddr *)&b->src, &b->sl);
    b->sock = urt_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    return NULL;
}

static void *in_place(void *arg) { return (void *)(intptr_t)urt_block_in_place(plain_calls, arg, NULL); }

Test(sock, calls_inside_block_in_place_are_plain_syscalls, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    bip_run b;
    memset(&b, 0, sizeof(b));
    b.rx = udp_loopback(&b.rx_addr);
    b.tx = udp_loopback(&b.tx_addr);
    void *ret = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, in_place, &b, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(b.sent, 3);
    cr_assert_eq(b.got, 3);
    cr_assert_eq(memcmp(b.buf, "bip", 3), 0);
    cr_assert_eq(b.sl, sizeof(struct sockaddr_in));
    cr_assert_eq(b.src.sin_port, b.tx_addr.sin_port);
    cr_assert_geq(b.sock, 0);
    close(b.sock);
    close(b.rx);
    close(b.tx);
    urt_runtime_destroy(rt);
}
