/*
 * echo_server.c - TCP echo server: one task accepts, one task per connection.
 *   ./echo_server [port [addr]]  listen on addr:port (default 127.0.0.1:7777)
 *   ./echo_server --selftest     serve a free loopback port, echo one message, exit
 */
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <urt.h>

static struct sockaddr_in addr = {.sin_family = AF_INET};

static void *serve(void *arg)   /* owns the connection; echoes until the peer closes */
{
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (ssize_t n; (n = urt_recv(fd, buf, sizeof(buf), 0)) > 0 && urt_send_all(fd, buf, (size_t)n, 0) == n;)
        ;
    urt_close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    for (;;) {
        int fd = urt_accept((int)(intptr_t)arg, NULL, NULL, SOCK_CLOEXEC);
        if (fd == -ECANCELED)
            return NULL;                  /* urt_cancel, or the runtime shuts down */
        if (fd < 0)
            urt_sleep(10 * 1000 * 1000);  /* -EMFILE and the like: back off 10 ms */
        else if (urt_spawn(NULL, NULL, serve, (void *)(intptr_t)fd) < 0)   /* detached */
            urt_close(fd);
    }
}

static void *selftest(void *arg)   /* the client; the server runs detached beside it */
{
    static const char msg[] = "hello, echo";
    char back[sizeof(msg)];
    size_t got = 0;
    if (urt_spawn(NULL, NULL, accept_loop, arg) < 0)
        return (void *)1;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (urt_connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 &&
        urt_send_all(fd, msg, sizeof(msg), 0) == (ssize_t)sizeof(msg))
        for (ssize_t n; got < sizeof(msg) && (n = urt_recv(fd, back + got, sizeof(msg) - got, 0)) > 0;)
            got += (size_t)n;
    urt_close(fd);
    bool ok = got == sizeof(msg) && memcmp(back, msg, got) == 0;
    printf("echo_server: selftest %s, %zu of %zu bytes echoed\n", ok ? "passed" : "FAILED", got, sizeof(msg));
    return ok ? NULL : (void *)1;
}

int main(int argc, char **argv)
{
    bool test = argc > 1 && strcmp(argv[1], "--selftest") == 0;
    addr.sin_port = htons((uint16_t)(test ? 0 : argc > 1 ? atoi(argv[1]) : 7777));
    if (inet_pton(AF_INET, !test && argc > 2 ? argv[2] : "127.0.0.1", &addr.sin_addr) != 1)
        errx(2, "usage: echo_server [port [IPv4 address]] | --selftest");
    socklen_t len = sizeof(addr);
    int one = 1, r, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, len) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) < 0)
        err(1, "listen on %s:%d", inet_ntoa(addr.sin_addr), ntohs(addr.sin_port));
    urt_runtime *rt;
    if ((r = urt_runtime_create(&rt, NULL)) < 0)   /* exit 77: no io_uring here */
        errx(r == -ENOSYS || r == -EPERM ? 77 : 1, "urt_runtime_create: %s", strerror(-r));
    printf("echo_server: listening on %s:%d\n", inet_ntoa(addr.sin_addr), ntohs(addr.sin_port));
    void *failed = NULL;
    r = urt_runtime_block_on(rt, test ? selftest : accept_loop, (void *)(intptr_t)lfd, &failed);
    urt_runtime_destroy(rt);   /* cancels what still runs: the accept loop, open connections */
    return r < 0 || failed ? 1 : 0;
}
