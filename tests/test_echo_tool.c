/*
 * test_echo_tool.c - the urt-echo binary, run adversarially as a child
 * process on loopback (127.0.0.1, a port reserved by the test):
 *  - with stdout and stderr a pipe that is full before it starts and that
 *    nobody reads, it goes on serving new connections through SIGUSR1s and
 *    stderr lines provoked by --max-conns, SIGTERM still ends it with exit
 *    status 0, and once the pipe is read again the lines that got out say
 *    how many were dropped;
 *  - SIGTERM with 64 KiB in flight on each of 50 connections whose clients
 *    read nothing until then: every client gets back exactly a prefix of
 *    what it sent, at least everything it had sent before the signal, then
 *    EOF, never a reset; half of the clients keep sending while they read
 *    (a load generator that does not know the server stops), and those
 *    bytes are dropped, not answered with a reset;
 *  - --idle-timeout closes a connection that sends nothing (EOF), not one
 *    that keeps talking;
 *  - --send-timeout resets a connection whose peer never reads.
 * Every wait is bounded; a server the test leaves behind dies with it
 * (PR_SET_PDEATHSIG).
 * The binary is URT_ECHO_PATH (set by CMake), or $URT_ECHO_BIN if set (to
 * run these tests against another build).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/net_test.h"

#ifndef URT_ECHO_PATH
#define URT_ECHO_PATH "urt-echo"
#endif

#define KiB 1024u

/* ---- the server process ---------------------------------------------------- */

struct echo {
    pid_t pid;
    int port;
    int log_fd;   /* what it wrote, when the test gave it a memfd; else -1 */
};

/* A port for the server: bound here with SO_REUSEADDR and not listening, so
 * no other socket can take it, while the server (SO_REUSEADDR too) can bind
 * and listen on it. Closed once the server listens. */
static int reserve_port(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    int one = 1;
    cr_assert_eq(setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)), 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0, "bind: %s", strerror(errno));
    socklen_t len = sizeof(a);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

static const char *echo_bin(void)
{
    const char *b = getenv("URT_ECHO_BIN");
    return b && *b ? b : URT_ECHO_PATH;
}

static void dump_log(const struct echo *e)
{
    if (e->log_fd < 0)
        return;
    char buf[4096];
    ssize_t n = pread(e->log_fd, buf, sizeof(buf) - 1, 0);
    if (n > 0) {
        buf[n] = 0;
        fprintf(stderr, "---- urt-echo's output ----\n%s---- end ----\n", buf);
    }
}

/* Status of the exited server, or -1 if it is still running after wait_ms. */
static int wait_exit(struct echo *e, unsigned wait_ms)
{
    uint64_t end = now_ms() + wait_ms;
    for (;;) {
        int st;
        pid_t r = waitpid(e->pid, &st, WNOHANG);
        if (r == e->pid) {
            e->pid = -1;
            return st;
        }
        if (now_ms() >= end)
            return -1;
        sleep_ms(5);
    }
}

static void kill_server(struct echo *e)
{
    if (e->pid > 0) {
        kill(e->pid, SIGKILL);
        waitpid(e->pid, NULL, 0);
        e->pid = -1;
    }
}

/* Start urt-echo --addr 127.0.0.1:PORT --workers 2 ARGS... with its stdout
 * and stderr on out_fd and err_fd (-1: a memfd kept in e->log_fd), and wait
 * until it accepts connections. */
static void echo_start(struct echo *e, int out_fd, int err_fd, const char *const *args)
{
    int reserve = reserve_port(&e->port);
    e->log_fd = -1;
    if (out_fd < 0 || err_fd < 0) {
        e->log_fd = memfd_create("urt-echo-log", MFD_CLOEXEC);
        cr_assert_geq(e->log_fd, 0, "memfd_create: %s", strerror(errno));
        if (out_fd < 0)
            out_fd = e->log_fd;
        if (err_fd < 0)
            err_fd = e->log_fd;
    }
    char addr[32];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", e->port);
    const char *argv[32] = {echo_bin(), "--addr", addr, "--workers", "2"};
    size_t argc = 5;
    for (size_t i = 0; args && args[i] && argc < 31; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;

    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no server behind */
        if (getppid() != parent)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0)
            _exit(127);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    e->pid = pid;

    /* ready: it accepts a connection (the line on stdout may be stuck in a
     * full pipe, so it is not what the test waits for) */
    struct sockaddr_in a = loopback(e->port);
    uint64_t end = now_ms() + 10000;
    for (;;) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            e->pid = -1;
            dump_log(e);
            cr_assert_fail("%s exited at start (status 0x%x) instead of listening", argv[0], st);
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd, 0);
        bool up = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (up)
            break;
        if (now_ms() >= end) {
            kill_server(e);
            cr_assert_fail("%s did not listen on %s within 10 s", argv[0], addr);
        }
        sleep_ms(10);
    }
    close(reserve);
}

/* SIGTERM, then it must exit with status 0 within wait_ms. */
static void echo_stop(struct echo *e, unsigned wait_ms)
{
    cr_assert_eq(kill(e->pid, SIGTERM), 0);
    int st = wait_exit(e, wait_ms);
    if (st == -1) {
        kill_server(e);
        dump_log(e);
        cr_assert_fail("urt-echo still running %u ms after SIGTERM", wait_ms);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        dump_log(e);
    cr_assert(WIFEXITED(st), "urt-echo ended by signal %d", WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    cr_assert_eq(WEXITSTATUS(st), 0, "urt-echo exited with status %d after SIGTERM", WEXITSTATUS(st));
    if (e->log_fd >= 0)
        close(e->log_fd);
    e->log_fd = -1;
}

/* ---- clients ---------------------------------------------------------------- */

/* A blocking connection whose sends and receives give up after 5 s;
 * rcvbuf > 0 sets SO_RCVBUF before connecting. */
static int client(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0, "socket: %s", strerror(errno));
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (rcvbuf > 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct sockaddr_in a = loopback(port);
    cr_assert_eq(connect_nointr(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

/* Send a message and read its echo. 1: echoed; 0: the server closed the
 * connection first (EOF or reset); -errno otherwise (-EAGAIN: 5 s passed). */
static int roundtrip(int fd, unsigned seq)
{
    char msg[200], back[200];
    int len = snprintf(msg, sizeof(msg), "message %u of the urt-echo test, padded to make it longer..........", seq);
    if (send_nointr(fd, msg, (size_t)len, MSG_NOSIGNAL) != len)
        return errno == EPIPE || errno == ECONNRESET ? 0 : -errno;
    int got = 0;
    while (got < len) {
        ssize_t n = recv_nointr(fd, back + got, (size_t)(len - got), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return 0;
        if (n < 0)
            return -errno;
        got += (int)n;
    }
    cr_assert_eq(memcmp(msg, back, (size_t)len), 0, "the echo differs from the message");
    return 1;
}

/* A connection that is served: one that the server closes at once (over
 * --max-conns while the tasks of connections just closed are still ending)
 * is tried again, at most 50 times, 20 ms apart. */
static int served_client(int port, const char *what)
{
    for (int attempt = 0; attempt < 50; attempt++) {
        int fd = client(port, 0);
        int r = roundtrip(fd, 0);
        if (r == 1)
            return fd;
        close(fd);
        cr_assert_eq(r, 0, "%s: no echo within 5 s (%s): the server stopped serving", what, strerror(-r));
        sleep_ms(20);
    }
    cr_assert_fail("%s: closed at once 50 times in a row", what);
    return -1;
}

/* ---- a full log pipe -------------------------------------------------------- */

/* Read what is in the pipe now into text (NUL-terminated, the filler
 * bytes '#' left out); waits up to wait_ms for the first byte. */
static size_t read_pipe(int fd, char *text, size_t cap, size_t len, unsigned wait_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)wait_ms) <= 0)
        return len;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != '#' && len + 1 < cap)
                text[len++] = buf[i];
    }
    text[len] = 0;
    return len;
}

Test(echo_tool, a_full_log_pipe_does_not_stop_the_server, .timeout = 120)
{
    enum { MAX_CONNS = 20, FRESH = 50, BATCH = 10 };
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    /* fill it: pages, then single bytes until not even one fits (our own
     * O_NONBLOCK, taken off again before the server gets the pipe) */
    cr_assert_eq(fcntl(p[1], F_SETFL, O_NONBLOCK), 0);
    char page[4096];
    memset(page, '#', sizeof(page));
    size_t filled = 0;
    ssize_t n;
    while ((n = write(p[1], page, sizeof(page))) > 0)
        filled += (size_t)n;
    while ((n = write(p[1], page, 1)) > 0)
        filled += (size_t)n;
    cr_assert_eq(errno, EAGAIN);
    cr_assert_eq(fcntl(p[1], F_SETFL, 0), 0);

    struct echo e;
    char maxc[16];
    snprintf(maxc, sizeof(maxc), "%d", MAX_CONNS);
    const char *args[] = {"--max-conns", maxc, NULL};
    echo_start(&e, p[1], p[1], args);
    close(p[1]);

    /* stdout lines it cannot write */
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(kill(e.pid, SIGUSR1), 0);
        sleep_ms(10);
    }
    /* stderr lines: connections over --max-conns, in two rounds more than
     * the 1 s of the rate limit apart */
    int held[MAX_CONNS];
    for (int i = 0; i < MAX_CONNS; i++)
        held[i] = served_client(e.port, "a connection up to --max-conns");
    for (int round = 0; round < 2; round++) {
        if (round)
            sleep_ms(1100);
        for (int i = 0; i < 5; i++) {
            int fd = client(e.port, 0);
            char c;
            ssize_t r = recv_nointr(fd, &c, 1, 0);
            cr_assert(r == 0 || (r < 0 && errno == ECONNRESET),
                      "a connection over --max-conns was not closed within 5 s (%s)",
                      r < 0 ? strerror(errno) : "data");
            close(fd);
        }
    }
    for (int i = 0; i < MAX_CONNS; i++)
        close(held[i]);

    /* fresh connections are still served, a few messages each */
    for (int b = 0; b < FRESH / BATCH; b++) {
        int fds[BATCH];
        for (int i = 0; i < BATCH; i++)
            fds[i] = served_client(e.port, "a fresh connection");
        for (unsigned m = 1; m <= 3; m++)
            for (int i = 0; i < BATCH; i++) {
                int r = roundtrip(fds[i], m);
                cr_assert_eq(r, 1, "fresh connection %d: message %u not echoed (%s)", b * BATCH + i, m,
                             r == 0 ? "closed" : strerror(-r));
            }
        for (int i = 0; i < BATCH; i++)
            close(fds[i]);
    }
    for (int i = 0; i < 3; i++)
        cr_assert_eq(kill(e.pid, SIGUSR1), 0);

    /* read the pipe again: the next lines out say how many were dropped */
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    text[0] = 0;
    cr_assert_eq(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
    len = read_pipe(p[0], text, cap, len, 0);
    cr_assert_eq(kill(e.pid, SIGUSR1), 0);
    /* the ready line comes too, when the server next tries it (every 10 ms) */
    for (uint64_t end = now_ms() + 10000;
         !(strstr(text, "totals when=signal") && strstr(text, "listening on")) && now_ms() < end;)
        len = read_pipe(p[0], text, cap, len, 100);
    cr_assert(strstr(text, "totals when=signal"), "no totals line on SIGUSR1 once the pipe was read; got:\n%s",
              text);
    cr_assert(strstr(text, "dropped on stdout"), "no count of the stdout lines dropped; got:\n%s", text);
    cr_assert(strstr(text, "listening on"), "the ready line never got out; got:\n%s", text);

    cr_assert_eq(kill(e.pid, SIGTERM), 0);
    int st = -1;
    for (uint64_t end = now_ms() + 10000; now_ms() < end;) {
        len = read_pipe(p[0], text, cap, len, 50);
        if ((st = wait_exit(&e, 0)) != -1)
            break;
    }
    if (st == -1)
        kill_server(&e);
    len = read_pipe(p[0], text, cap, len, 0);
    cr_assert_neq(st, -1, "urt-echo still running 10 s after SIGTERM");
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "urt-echo ended with status 0x%x after SIGTERM", st);
    cr_assert(strstr(text, "dropped on stderr"), "no count of the stderr lines dropped; got:\n%s", text);
    cr_assert(strstr(text, "totals when=exit"), "no exit totals line; got:\n%s", text);
    free(text);
    close(p[0]);
}

/* ---- SIGTERM with data in flight --------------------------------------------- */

/* The byte at offset off of connection i's stream. */
static uint8_t pattern(unsigned i, uint64_t off)
{
    uint64_t h = ((off >> 3) + 1) * 0x9E3779B97F4A7C15ull ^ ((uint64_t)i + 1) * 0xD1B54A32D192ED03ull;
    h ^= h >> 29;
    return (uint8_t)(h >> ((off & 7) * 8));
}

static void fill_pattern(unsigned i, uint64_t off, uint8_t *buf, size_t len)
{
    for (size_t k = 0; k < len; k++)
        buf[k] = pattern(i, off + k);
}

#define INFLIGHT_CONNS 50
#define INFLIGHT_BYTES (64 * KiB)

struct flight {
    int fd;
    bool busy;        /* keeps sending after SIGTERM */
    uint64_t sent, got;
    bool eof;
    int err;          /* errno of a failed recv or send */
    bool mismatch;
};

/* Non-blocking send of the stream from f->sent, at most len bytes. */
static void flight_send(unsigned i, struct flight *f, size_t len)
{
    uint8_t buf[16 * KiB];
    if (len > sizeof(buf))
        len = sizeof(buf);
    fill_pattern(i, f->sent, buf, len);
    ssize_t n = send(f->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
        f->sent += (uint64_t)n;
    else if (n < 0 && errno != EAGAIN && errno != EINTR)
        f->err = errno;
}

static void sigterm_with_data_in_flight(const char *mode)
{
    struct echo e;
    const char *args[] = {"--mode", mode, NULL};
    echo_start(&e, -1, -1, args);
    static struct flight f[INFLIGHT_CONNS];
    memset(f, 0, sizeof(f));
    for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
        /* a small receive buffer: the echo backs up into the server */
        f[i].fd = client(e.port, 4096);
        f[i].busy = i % 2;
        fcntl(f[i].fd, F_SETFL, O_NONBLOCK);
    }
    /* 64 KiB each, nothing read */
    struct pollfd pf[INFLIGHT_CONNS];
    for (uint64_t end = now_ms() + 10000;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
            if (f[i].sent < INFLIGHT_BYTES)
                flight_send(i, &f[i], INFLIGHT_BYTES - f[i].sent);
            cr_assert_eq(f[i].err, 0, "connection %u: send: %s", i, strerror(f[i].err));
            left += f[i].sent < INFLIGHT_BYTES;
        }
        if (!left)
            break;
        cr_assert_lt(now_ms(), end, "%u connections could not send 64 KiB within 10 s", left);
        sleep_ms(1);
    }
    /* until the server's kernel has all of it (nothing unacknowledged) */
    for (uint64_t end = now_ms() + 10000;;) {
        unsigned left = 0;
        for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
            int outq = 0;
            cr_assert_eq(ioctl(f[i].fd, SIOCOUTQ, &outq), 0);
            left += outq > 0;
        }
        if (!left)
            break;
        cr_assert_lt(now_ms(), end, "%u connections still had unacknowledged data after 10 s", left);
        sleep_ms(5);
    }
    sleep_ms(100);   /* let the server's tasks get stuck in their sends */
    cr_assert_eq(kill(e.pid, SIGTERM), 0);

    /* read everything; the busy half keeps sending until its EOF */
    for (uint64_t end = now_ms() + 15000;;) {
        unsigned open = 0;
        for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
            pf[i].fd = f[i].eof || f[i].err ? -1 : f[i].fd;
            pf[i].events = POLLIN | (f[i].busy ? POLLOUT : 0);
            pf[i].revents = 0;
            open += pf[i].fd >= 0;
        }
        if (!open)
            break;
        cr_assert_lt(now_ms(), end, "%u connections saw no EOF within 15 s of SIGTERM", open);
        poll(pf, INFLIGHT_CONNS, 100);
        for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
            if (pf[i].fd < 0)
                continue;
            if (pf[i].revents & (POLLIN | POLLERR | POLLHUP)) {
                uint8_t buf[16 * KiB], want[16 * KiB];
                ssize_t n = recv(f[i].fd, buf, sizeof(buf), MSG_DONTWAIT);
                if (n == 0)
                    f[i].eof = true;
                else if (n < 0 && errno != EAGAIN && errno != EINTR)
                    f[i].err = errno;
                else if (n > 0) {
                    fill_pattern(i, f[i].got, want, (size_t)n);
                    if (memcmp(buf, want, (size_t)n) != 0)
                        f[i].mismatch = true;
                    f[i].got += (uint64_t)n;
                }
            }
            if (f[i].busy && !f[i].eof && !f[i].err && (pf[i].revents & POLLOUT))
                flight_send(i, &f[i], 4 * KiB);
        }
    }
    unsigned resets = 0, short_echo = 0;
    for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
        resets += f[i].err != 0;
        short_echo += !f[i].err && f[i].got < INFLIGHT_BYTES;
    }
    for (unsigned i = 0; i < INFLIGHT_CONNS; i++) {
        cr_assert_eq(f[i].err, 0, "%u of %d connections failed; connection %u (%s) got %s after %llu of %llu bytes",
                     resets, INFLIGHT_CONNS, i, f[i].busy ? "still sending" : "quiet", strerror(f[i].err),
                     (unsigned long long)f[i].got, (unsigned long long)f[i].sent);
        cr_assert_not(f[i].mismatch, "connection %u: the echo is not what it sent", i);
        cr_assert_geq(f[i].got, INFLIGHT_BYTES, "%u connections got less back than they had sent before SIGTERM; "
                      "connection %u: %llu bytes", short_echo, i, (unsigned long long)f[i].got);
        cr_assert_leq(f[i].got, f[i].sent, "connection %u got more than it sent", i);
        if (!f[i].busy)
            cr_assert_eq(f[i].got, f[i].sent, "quiet connection %u: %llu of %llu bytes back", i,
                         (unsigned long long)f[i].got, (unsigned long long)f[i].sent);
    }
    for (unsigned i = 0; i < INFLIGHT_CONNS; i++)
        close(f[i].fd);
    echo_stop(&e, 10000);
}

Test(echo_tool, sigterm_sends_back_what_was_received_then_eof_plain, .timeout = 120)
{
    sigterm_with_data_in_flight("plain");
}

Test(echo_tool, sigterm_sends_back_what_was_received_then_eof_pooled, .timeout = 120)
{
    sigterm_with_data_in_flight("pooled");
}

/* ---- --idle-timeout and --send-timeout ---------------------------------------- */

static void idle_timeout(const char *mode)
{
    struct echo e;
    const char *args[] = {"--mode", mode, "--idle-timeout", "300", NULL};
    echo_start(&e, -1, -1, args);
    /* a connection that sends nothing is closed: EOF within 5 s */
    int silent = client(e.port, 0);
    char c;
    ssize_t n = recv_nointr(silent, &c, 1, 0);
    cr_assert_eq(n, 0, "a silent connection was not closed (recv: %s)", n < 0 ? strerror(errno) : "data");
    close(silent);
    /* one that talks every 50 ms for 1.5 s is not */
    int talker = client(e.port, 0);
    for (unsigned m = 0; m < 30; m++) {
        int r = roundtrip(talker, m);
        cr_assert_eq(r, 1, "message %u on a busy connection: %s", m, r == 0 ? "closed" : strerror(-r));
        sleep_ms(50);
    }
    close(talker);
    echo_stop(&e, 10000);
}

Test(echo_tool, idle_timeout_closes_a_silent_connection_plain, .timeout = 60)
{
    idle_timeout("plain");
}

Test(echo_tool, idle_timeout_closes_a_silent_connection_pooled, .timeout = 60)
{
    idle_timeout("pooled");
}

static void send_timeout(const char *mode)
{
    struct echo e;
    const char *args[] = {"--mode", mode, "--send-timeout", "300", NULL};
    echo_start(&e, -1, -1, args);
    int fd = client(e.port, 4096);
    /* send until nothing more goes (the server's send is stuck, so it reads
     * no more either), and never read */
    uint8_t buf[64 * KiB];
    memset(buf, 'x', sizeof(buf));
    uint64_t sent = 0;
    for (uint64_t end = now_ms() + 20000;;) {
        cr_assert_lt(now_ms(), end, "still sending after 20 s (%llu bytes)", (unsigned long long)sent);
        ssize_t n = send(fd, buf, sizeof(buf), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            sent += (uint64_t)n;
            continue;
        }
        if (n < 0 && (errno == ECONNRESET || errno == EPIPE))
            break;   /* already reset */
        cr_assert(n < 0 && errno == EAGAIN, "send: %s", strerror(errno));
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 200) == 0)
            break;   /* stuck */
        if (p.revents & (POLLERR | POLLHUP))
            break;
    }
    /* the server gives up on it: a reset (or at least a FIN) within 10 s */
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};
    int r = poll(&p, 1, 10000);
    cr_assert_eq(r, 1, "a peer that never reads was still connected 10 s after its %llu bytes",
                 (unsigned long long)sent);
    cr_assert(p.revents & (POLLERR | POLLHUP | POLLRDHUP), "revents 0x%x", p.revents);
    close(fd);
    /* the server still serves others */
    int ok = client(e.port, 0);
    cr_assert_eq(roundtrip(ok, 1), 1, "no echo after the reset");
    close(ok);
    echo_stop(&e, 10000);
}

Test(echo_tool, send_timeout_resets_a_peer_that_never_reads_plain, .timeout = 60)
{
    send_timeout("plain");
}

Test(echo_tool, send_timeout_resets_a_peer_that_never_reads_pooled, .timeout = 60)
{
    send_timeout("pooled");
}

/* ---- SIGUSR1: the task dump on stderr; --stats: the metrics lines ----------- */

/* The log memfd's whole text (NUL-terminated; caller frees). */
static char *log_text_of(const struct echo *e)
{
    off_t len = lseek(e->log_fd, 0, SEEK_END);
    char *text = calloc(1, (size_t)len + 1);
    cr_assert_not_null(text);
    if (len > 0)
        cr_assert_eq(pread(e->log_fd, text, (size_t)len, 0), len);
    return text;
}

Test(echo_tool, sigusr1_writes_the_task_dump_and_stats_print_metrics, .timeout = 60)
{
    struct echo e;
    const char *args[] = {"--stats", "0.2", NULL};
    echo_start(&e, -1, -1, args);
    int fd = served_client(e.port, "a connection before the dump");
    /* a line that finds the log busy with another writer (the stats task
     * here) is dropped, by design: signal again until a dump got out */
    char *text = NULL;
    for (uint64_t end = now_ms() + 10000, next = 0; now_ms() < end; sleep_ms(20)) {
        if (now_ms() >= next) {
            cr_assert_eq(kill(e.pid, SIGUSR1), 0);
            next = now_ms() + 500;
        }
        free(text);
        text = log_text_of(&e);
        if (strstr(text, "runtime workers=2 ") && strstr(text, "metrics when=stats "))
            break;
    }
    cr_assert(strstr(text, "runtime workers=2 "), "no totals line of the dump after SIGUSR1; got:\n%s", text);
    cr_assert(strstr(text, "name=acceptor kind=fiber"), "the acceptor is not in the dump; got:\n%s", text);
    cr_assert(strstr(text, "name=signals kind=fiber home="), "the signal task is not in the dump; got:\n%s", text);
    cr_assert(strstr(text, "name=conn kind=fiber"), "the connection is not in the dump; got:\n%s", text);
    cr_assert(strstr(text, " waits="), "no task waits on anything in the dump; got:\n%s", text);
    cr_assert(strstr(text, "metrics when=stats live_tasks="), "no periodic metrics line; got:\n%s", text);
    free(text);
    close(fd);
    int keep = dup(e.log_fd);
    cr_assert_geq(keep, 0);
    echo_stop(&e, 10000);
    e.log_fd = keep;
    text = log_text_of(&e);
    cr_assert(strstr(text, "metrics when=exit live_tasks="), "no metrics line on exit; got:\n%s", text);
    free(text);
    close(keep);
}

/* SIGUSR2: the totals line alone, no dump (samplers send it ten times a
 * second; a dump of every task each time would load the server they measure) */
Test(echo_tool, sigusr2_prints_the_totals_without_a_dump, .timeout = 60)
{
    struct echo e;
    echo_start(&e, -1, -1, NULL);
    int fd = served_client(e.port, "a connection before the signals");
    char *text = NULL;
    for (uint64_t end = now_ms() + 10000, next = 0; now_ms() < end; sleep_ms(20)) {
        if (now_ms() >= next) {
            cr_assert_eq(kill(e.pid, SIGUSR2), 0);
            next = now_ms() + 200;
        }
        free(text);
        text = log_text_of(&e);
        if (strstr(text, "totals when=signal"))
            break;
    }
    cr_assert(strstr(text, "totals when=signal"), "no totals line after SIGUSR2; got:\n%s", text);
    cr_assert_null(strstr(text, "name=acceptor"), "SIGUSR2 wrote a task dump; got:\n%s", text);
    free(text);
    close(fd);
    echo_stop(&e, 10000);
}

/* ---- --stack-size ----------------------------------------------------------- */

/* The server's virtual size in KiB (VmSize in /proc/PID/status). */
static unsigned long vm_size_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    unsigned long kib = 0;
    while (fgets(line, sizeof(line), f))
        if (sscanf(line, "VmSize: %lu kB", &kib) == 1)
            break;
    fclose(f);
    cr_assert_gt(kib, 0, "no VmSize in %s", path);
    return kib;
}

/* VmSize of a server started with --stack-size kib while `conns` served
 * connections are open. */
static unsigned long vm_size_with(const char *kib, int *fds, unsigned conns)
{
    struct echo e;
    const char *args[] = {"--mode", "pooled", "--stack-size", kib, NULL};
    echo_start(&e, -1, -1, args);
    for (unsigned i = 0; i < conns; i++)
        fds[i] = served_client(e.port, "stack-size");
    unsigned long size = vm_size_kib(e.pid);
    for (unsigned i = 0; i < conns; i++)
        cr_assert_eq(roundtrip(fds[i], i + 1), 1, "connection %u lost its echo", i);
    for (unsigned i = 0; i < conns; i++)
        close(fds[i]);
    echo_stop(&e, 10000);
    return size;
}

/* Each connection's task gets a stack of the size asked for: 40 connections
 * on 64 MiB stacks map at least 40 x (65536 - 16) KiB more than on 16 KiB
 * ones. The stacks are that large so that the difference dwarfs what else
 * varies from run to run (glibc's 64 MiB malloc arenas, made per thread on
 * demand: two runs with the same stacks differed by 22 MiB). */
Test(echo_tool, stack_size_sets_the_connection_tasks_stacks, .timeout = 60)
{
    enum { CONNS = 40, BIG_KIB = 65536 };
    int fds[CONNS];
    unsigned long small = vm_size_with("16", fds, CONNS);
    unsigned long big = vm_size_with("65536", fds, CONNS);
    cr_assert_geq(big, small + (unsigned long)CONNS * (BIG_KIB - 16),
                  "VmSize %lu KiB with 64 MiB stacks, %lu KiB with 16 KiB ones: less than %u stacks apart",
                  big, small, CONNS);
}

Test(echo_tool, stack_size_out_of_range_is_refused, .timeout = 30)
{
    static const char *const bad[] = {"8", "1048577", "-16", "16k", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        pid_t pid = fork();
        cr_assert_geq(pid, 0);
        if (pid == 0) {
            int null = open("/dev/null", O_RDWR);
            if (null < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
                _exit(127);
            execl(echo_bin(), echo_bin(), "--addr", "127.0.0.1:0", "--stack-size", bad[i], (char *)NULL);
            _exit(127);
        }
        int st;
        cr_assert_eq(waitpid(pid, &st, 0), pid);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "--stack-size '%s': status 0x%x, not exit 2", bad[i], st);
    }
}
