/*
 * sock_test.h - what the socket, poll and splice tests share: loopback UDP
 * sockets and TCP pairs, a file filled with a known pattern, and a
 * runtime created with some ring opcodes taken away (URT_RING_NO_OPS) so
 * that the syscall fallbacks run.
 */
#ifndef URT_TESTS_SOCK_TEST_H
#define URT_TESTS_SOCK_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/support/urt_test.h"

#if defined(URT_TSAN)
#define SAN_DIV 4
#elif defined(URT_ASAN)
#define SAN_DIV 2
#else
#define SAN_DIV 1
#endif

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

/* A UDP socket bound to 127.0.0.1 on a free port; *addr is its address. */
__attribute__((unused)) static int udp_loopback(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof(*addr);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
    return fd;
}

/* A connected TCP pair over loopback (fds[0] accepted, fds[1] connected). */
__attribute__((unused)) static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(l, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    cr_assert_eq(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(l, 4), 0);
    cr_assert_eq(getsockname(l, (struct sockaddr *)&a, &len), 0);
    fds[1] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fds[1], 0);
    cr_assert_eq(connect(fds[1], (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    fds[0] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    cr_assert_geq(fds[0], 0);
    close(l);
}

__attribute__((unused)) static uint8_t file_byte(size_t i) { return (uint8_t)(i * 131u + (i >> 11) * 17u + 3u); }

/* An unlinked temporary file of size bytes, byte i = file_byte(i); its
 * position is 0. */
__attribute__((unused)) static int pattern_file(size_t size)
{
    char path[] = "/tmp/urt-sock-test-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
    unlink(path);
    uint8_t buf[65536];
    for (size_t off = 0; off < size;) {
        size_t n = size - off < sizeof(buf) ? size - off : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = file_byte(off + i);
        cr_assert_eq(write(fd, buf, n), (ssize_t)n);
        off += n;
    }
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* A runtime of `workers` whose rings lack the opcodes in no_ops (the
 * URT_RING_NO_OPS syntax: "all", or numbers separated by commas). */
__attribute__((unused)) static urt_runtime *rt_new_no_ops(unsigned workers, const char *no_ops)
{
    cr_assert_eq(setenv("URT_RING_NO_OPS", no_ops, 1), 0);
    urt_runtime *rt = rt_new(workers);
    unsetenv("URT_RING_NO_OPS");   /* the rings probed at create; later runtimes are whole again */
    return rt;
}

/* check(rt) on runtimes of 1, 2 and 4 workers, then on one of fb_workers
 * workers for each of no_ops and no_ops2 that is not NULL (the rings lack
 * those opcodes). */
__attribute__((unused)) static void on_each_runtime(void (*check)(urt_runtime *rt), unsigned fb_workers,
                                                    const char *no_ops, const char *no_ops2)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        check(rt);
        urt_runtime_destroy(rt);
    }
    const char *sets[] = {no_ops, no_ops2};
    for (unsigned i = 0; i < 2; i++) {
        if (!sets[i])
            continue;
        urt_runtime *rt = rt_new_no_ops(fb_workers, sets[i]);
        check(rt);
        urt_runtime_destroy(rt);
    }
}

/* A connected stream pair: TCP over loopback, or AF_UNIX. */
__attribute__((unused)) static void stream_pair(int fds[2], bool tcp)
{
    if (tcp)
        tcp_pair(fds);
    else
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
}

/* Spawn fn(arg), wait until the dump shows it suspended in `what` (NULL: a
 * wait the dump does not name; 100 ms then), cancel it, and check that it
 * ended cancelled. */
__attribute__((unused)) static void cancel_while_waiting(urt_runtime *rt, urt_fn fn, void *arg, const char *what)
{
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, fn, arg), 0);
    if (what)
        await_waiting(rt, t, what);
    else
        usleep(100 * 1000);   /* a cancel that comes first gives the same -ECANCELED */
    cr_assert_eq(urt_cancel(t), 0);
    cr_assert_eq(urt_join(t, NULL), -ECANCELED, "a cancelled task joins -ECANCELED");
}

#endif
