/*
 * test_net_listener_open.c - urt_listener_open checks its descriptor at
 * once: a TCP socket that is bound but not listening, one that is not even
 * bound, and a UDP socket give -EINVAL; a descriptor that is not a socket
 * gives -ENOTSOCK and a closed one -EBADF; *out is NULL after each. The
 * same socket, once it listens, opens and accepts a connection.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/net_test.h"

typedef struct probe {
    int unbound_tcp, bound_tcp, udp, pipe_rd, closed;
    int r_unbound, r_bound, r_udp, r_pipe, r_closed;
    bool out_null;
    /* after listen(2) on bound_tcp */
    struct sockaddr_in addr;
    int r_listening, accepted;
} probe;

static int open_expect_fail(int fd, bool *out_null)
{
    urt_listener *l = (urt_listener *)(uintptr_t)1;   /* must come back NULL */
    int r = urt_listener_open(&l, fd, SOCK_CLOEXEC);
    if (l != NULL) {
        *out_null = false;
        if (r == 0)
            urt_listener_close(l);
    }
    return r;
}

static void *open_them(void *arg)
{
    probe *p = arg;
    p->out_null = true;
    p->r_unbound = open_expect_fail(p->unbound_tcp, &p->out_null);
    p->r_bound = open_expect_fail(p->bound_tcp, &p->out_null);
    p->r_udp = open_expect_fail(p->udp, &p->out_null);
    p->r_pipe = open_expect_fail(p->pipe_rd, &p->out_null);
    p->r_closed = open_expect_fail(p->closed, &p->out_null);

    /* the check must not refuse a socket that does listen */
    if (listen(p->bound_tcp, 4) != 0) {
        p->r_listening = -errno;
        return NULL;
    }
    urt_listener *l = NULL;
    p->r_listening = urt_listener_open(&l, p->bound_tcp, SOCK_CLOEXEC);
    if (p->r_listening != 0)
        return NULL;
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    p->accepted = -1;
    if (c >= 0 && urt_connect(c, (struct sockaddr *)&p->addr, sizeof(p->addr)) == 0) {
        urt_op_timeout(10ull * 1000 * 1000 * 1000);
        p->accepted = urt_listener_accept(l);
        urt_op_timeout(0);
    }
    if (p->accepted >= 0)
        urt_close(p->accepted);
    if (c >= 0)
        urt_close(c);
    urt_listener_close(l);
    return NULL;
}

Test(net_listener_open, a_socket_that_is_not_listening_is_refused_at_once, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        probe p;
        memset(&p, 0, sizeof(p));
        p.unbound_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        p.bound_tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        p.udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert(p.unbound_tcp >= 0 && p.bound_tcp >= 0 && p.udp >= 0);
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(bind(p.bound_tcp, (struct sockaddr *)&a, sizeof(a)), 0);
        socklen_t alen = sizeof(p.addr);
        cr_assert_eq(getsockname(p.bound_tcp, (struct sockaddr *)&p.addr, &alen), 0);
        cr_assert_eq(bind(p.udp, (struct sockaddr *)&a, sizeof(a)), 0);
        int pfd[2];
        cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
        p.pipe_rd = pfd[0];
        p.closed = dup(pfd[1]);
        cr_assert_geq(p.closed, 0);
        close(p.closed);   /* a descriptor number that is not open */

        cr_assert_eq(urt_runtime_block_on(rt, open_them, &p, NULL), 0);
        cr_assert_eq(p.r_unbound, -EINVAL, "%u workers: unbound TCP socket gave %d", w, p.r_unbound);
        cr_assert_eq(p.r_bound, -EINVAL, "%u workers: bound, not listening TCP socket gave %d", w, p.r_bound);
        cr_assert_eq(p.r_udp, -EINVAL, "%u workers: UDP socket gave %d", w, p.r_udp);
        cr_assert_eq(p.r_pipe, -ENOTSOCK, "%u workers: a pipe gave %d", w, p.r_pipe);
        cr_assert_eq(p.r_closed, -EBADF, "%u workers: a closed descriptor gave %d", w, p.r_closed);
        cr_assert(p.out_null, "%u workers: *out was not NULL after a refused open", w);
        cr_assert_eq(p.r_listening, 0, "%u workers: the same socket once listening gave %d", w, p.r_listening);
        cr_assert_geq(p.accepted, 0, "%u workers: accept on it gave %d", w, p.accepted);

        close(p.unbound_tcp);
        close(p.bound_tcp);
        close(p.udp);
        close(pfd[0]);
        close(pfd[1]);
        urt_runtime_destroy(rt);
    }
}
