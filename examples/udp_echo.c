/*
 * udp_echo.c - UDP echo server on urt_recvmsg / urt_sendmsg, and a client
 * that checks 10,000 datagrams come back, each exactly once.
 *   ./udp_echo              self-test: server and client on a free loopback port
 *   ./udp_echo --serve PORT serve 127.0.0.1:PORT until interrupted
 * The server answers each datagram to the address recvmsg reported, from
 * the address it arrived at (IP_PKTINFO in, IP_PKTINFO out), as a server
 * bound to 0.0.0.0 on a host with many addresses must.
 */
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urt.h>

#define COUNT  10000
#define WINDOW 32      /* client: datagrams in flight at most, so no socket buffer overflows */

static void *serve(void *arg)   /* echoes until cancelled */
{
    int fd = (int)(intptr_t)arg;
    char data[2048];
    union { char buf[CMSG_SPACE(sizeof(struct in_pktinfo))]; struct cmsghdr align; } ctl;
    for (;;) {
        struct sockaddr_in peer;
        struct iovec iov = {data, sizeof(data)};
        struct msghdr m = {.msg_name = &peer, .msg_namelen = sizeof(peer), .msg_iov = &iov, .msg_iovlen = 1,
                           .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = urt_recvmsg(fd, &m, 0);
        if (n == -ECANCELED)
            return NULL;
        if (n < 0)
            continue;   /* e.g. -ECONNREFUSED from an earlier reply: go on */
        iov.iov_len = (size_t)n;   /* the same msghdr goes back: peer address, and pktinfo as the source */
        m.msg_flags = 0;
        urt_sendmsg(fd, &m, 0);
    }
}

static int udp_socket(struct sockaddr_in *addr)   /* bound to addr (port 0: any free one); *addr updated */
{
    int fd = urt_socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), one = 1;
    socklen_t len = sizeof(*addr);
    if (fd < 0)
        return fd;
    setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)addr, len) < 0 || getsockname(fd, (struct sockaddr *)addr, &len) < 0)
        return -errno;
    return fd;
}

static void *client(void *arg)
{
    struct sockaddr_in *srv = arg, me = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int fd = udp_socket(&me);
    static unsigned char seen[COUNT];
    unsigned sent = 0, back = 0, dups = 0;
    uint64_t old = urt_op_timeout(5ull * 1000 * 1000 * 1000);   /* a lost datagram ends the test, not hangs it */
    while (fd >= 0 && back < COUNT) {
        if (sent < COUNT && sent - back < WINDOW) {
            uint32_t seq = sent;
            if (urt_sendto(fd, &seq, sizeof(seq), 0, (struct sockaddr *)srv, sizeof(*srv)) != sizeof(seq))
                break;
            sent++;
            continue;
        }
        uint32_t seq;
        struct sockaddr_in from;
        socklen_t fl = sizeof(from);
        ssize_t n = urt_recvfrom(fd, &seq, sizeof(seq), 0, (struct sockaddr *)&from, &fl);
        if (n != sizeof(seq) || seq >= COUNT || from.sin_port != srv->sin_port)
            break;
        dups += seen[seq]++ != 0;
        back++;
    }
    urt_op_timeout(old);
    urt_close(fd);
    bool ok = back == COUNT && dups == 0;
    printf("udp_echo: selftest %s, %u of %d datagrams echoed, %u duplicates\n", ok ? "passed" : "FAILED", back,
           COUNT, dups);
    return ok ? NULL : (void *)1;
}

static struct sockaddr_in srv_addr = {.sin_family = AF_INET};

static void *run(void *arg)
{
    int fd = udp_socket(&srv_addr);
    if (fd < 0)
        return (void *)1;
    if (!arg)   /* --serve */
        return serve((void *)(intptr_t)fd);
    urt_task *srv = NULL;
    if (urt_spawn(NULL, &srv, serve, (void *)(intptr_t)fd) < 0)
        return (void *)1;
    void *failed = client(&srv_addr);
    urt_cancel(srv);
    urt_join(srv, NULL);
    urt_close(fd);
    return failed;
}

int main(int argc, char **argv)
{
    bool serve_only = argc > 2 && strcmp(argv[1], "--serve") == 0;
    if (argc > 1 && !serve_only)
        errx(2, "usage: udp_echo [--serve PORT]");
    srv_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    srv_addr.sin_port = htons((uint16_t)(serve_only ? atoi(argv[2]) : 0));
    urt_runtime *rt;
    int r = urt_runtime_create(&rt, NULL);
    if (r < 0)   /* exit 77: no io_uring here */
        errx(r == -ENOSYS || r == -EPERM ? 77 : 1, "urt_runtime_create: %s", strerror(-r));
    void *failed = NULL;
    r = urt_runtime_block_on(rt, run, serve_only ? NULL : (void *)1, &failed);
    urt_runtime_destroy(rt);
    return r < 0 || failed ? 1 : 0;
}
