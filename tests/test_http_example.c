/*
 * test_http_example.c - examples/http_server run as a child process on an
 * ephemeral loopback port (it prints the port it bound), driven by a small
 * blocking client on the test's thread; every byte of every response is
 * compared with what the server must send:
 *  - pipelining: several requests in one write get their answers in order;
 *  - fragments: a request sent a byte at a time, requests split across
 *    writes at every point of a pipelined pair;
 *  - HTTP/1.0 (close unless keep-alive), Connection: close (EOF after the
 *    answer, nothing answered after it), HEAD;
 *  - bodies with Content-Length dropped (inside one write, across writes,
 *    larger than the server's buffer), a too-large one: 413 and close;
 *  - malformed requests: 400 and close; unknown paths: 404, kept open;
 *  - the file route, compared with the file; names that would leave the
 *    directory: 403; missing files: 404;
 *  - the idle timeout closes a silent connection, not a talking one, and
 *    bounds the wait to send to a peer that stopped reading;
 *  - SIGTERM ends the server with exit status 0.
 * The binary is URT_HTTP_SERVER_PATH (set by CMake); without the examples
 * built the tests are skipped. Every wait is bounded; a server the test
 * leaves behind dies with it (PR_SET_PDEATHSIG).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/support/net_test.h"

#define HELLO "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
#define HELLO_HEAD "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
#define HELLO_CLOSE HELLO_HEAD "Connection: close\r\n\r\nhello"
#define HELLO_KEEP HELLO_HEAD "Connection: keep-alive\r\n\r\nhello"
#define BAD "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#define NOT_FOUND "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
#define FORBIDDEN "HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
#define TOO_LARGE \
    "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
#define GET(path) "GET " path " HTTP/1.1\r\nHost: t\r\n\r\n"

/* ---- the server process ---------------------------------------------------- */

static pid_t server_pid = -1;
static int server_port;

/* Skip the test when the example was not built (before it allocates). */
static void need_server(void)
{
#ifndef URT_HTTP_SERVER_PATH
    cr_skip_test("examples are not built (URT_BUILD_EXAMPLES=OFF)");
#endif
}

/* Start http_server -p 0 -w 2 [-d dir] [-t idle_ms] and read its port from
 * the "listening on 127.0.0.1:PORT" line (10 s at most). */
static void server_start(const char *dir, const char *idle_ms)
{
#ifndef URT_HTTP_SERVER_PATH
    (void)dir, (void)idle_ms;
    cr_skip_test("examples are not built (URT_BUILD_EXAMPLES=OFF)");
#else
    const char *argv[10] = {URT_HTTP_SERVER_PATH, "-p", "0", "-w", "2"};
    int argc = 5, out[2];
    if (dir)
        argv[argc++] = "-d", argv[argc++] = dir;
    if (idle_ms)
        argv[argc++] = "-t", argv[argc++] = idle_ms;
    cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed test leaves no server behind */
        if (getppid() != parent || dup2(out[1], 1) < 0)
            _exit(127);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(out[1]);
    server_pid = pid;
    char line[128];
    size_t len = 0;
    uint64_t end = now_ms() + 10000;
    while (!memchr(line, '\n', len) && len < sizeof(line) - 1 && now_ms() < end) {
        struct pollfd p = {.fd = out[0], .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t n = read(out[0], line + len, sizeof(line) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(out[0]);
    line[len] = 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
        server_pid = -1;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
            cr_skip_test("io_uring is not usable here");
        cr_assert_fail("http_server exited at start (status 0x%x)", st);
    }
    cr_assert_eq(sscanf(line, "listening on 127.0.0.1:%d", &server_port), 1, "first line: '%s'", line);
#endif
}

/* SIGTERM, then it must exit with status 0 within 10 s. */
static void server_stop(void)
{
    cr_assert_eq(kill(server_pid, SIGTERM), 0);
    int st = 0;
    uint64_t end = now_ms() + 10000;
    while (waitpid(server_pid, &st, WNOHANG) != server_pid) {
        if (now_ms() >= end) {
            kill(server_pid, SIGKILL);
            waitpid(server_pid, NULL, 0);
            cr_assert_fail("http_server still running 10 s after SIGTERM");
        }
        sleep_ms(5);
    }
    server_pid = -1;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "http_server's exit status: 0x%x", st);
}

/* ---- the client ------------------------------------------------------------- */

static int client(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
    cr_assert_geq(fd, 0);
    struct timeval tv = {.tv_sec = 10};   /* every receive is bounded */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)server_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(connect_nointr(fd, (struct sockaddr *)&a, sizeof(a)), 0, "connect: %s", strerror(errno));
    return fd;
}

static void send_bytes(int fd, const void *buf, size_t len)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = send_nointr(fd, (const char *)buf + done, len - done, MSG_NOSIGNAL);
        cr_assert_gt(n, 0, "send: %s", strerror(errno));
        done += (size_t)n;
    }
}

static void send_str(int fd, const char *s) { send_bytes(fd, s, strlen(s)); }

/* Receive exactly len bytes and compare them with want. */
static void expect_bytes(int fd, const void *want, size_t len, const char *what)
{
    char *got = malloc(len + 1);
    cr_assert_not_null(got);
    size_t have = 0;
    while (have < len) {
        ssize_t n = recv_nointr(fd, got + have, len - have, 0);
        cr_assert_gt(n, 0, "%s: %zu of %zu bytes, then %s", what, have, len, n == 0 ? "EOF" : strerror(errno));
        have += (size_t)n;
    }
    for (size_t i = 0; i < len; i++)
        cr_assert_eq(got[i], ((const char *)want)[i], "%s: byte %zu of %zu differs", what, i, len);
    free(got);
}

static void expect_str(int fd, const char *want, const char *what) { expect_bytes(fd, want, strlen(want), what); }

/* The server closes: EOF, with nothing before it. */
static void expect_eof(int fd, const char *what)
{
    char c;
    ssize_t n = recv_nointr(fd, &c, 1, 0);
    cr_assert_eq(n, 0, "%s: expected EOF, got %s", what, n > 0 ? "a byte" : strerror(errno));
}

/* On a new connection: send req, get exactly want back, then EOF. */
static void answer_then_eof(const char *req, const char *want, const char *what)
{
    int fd = client();
    send_str(fd, req);
    expect_str(fd, want, what);
    expect_eof(fd, what);
    close(fd);
}

/* ---- files for the file route -------------------------------------------------- */

/* Write size bytes of data to dir/name. */
static void write_file(const char *dir, const char *name, const void *data, size_t size)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(data, 1, size, f), size);
    cr_assert_eq(fclose(f), 0);
}

/* Remove dir/name (a file or an empty directory). */
static void remove_in(const char *dir, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cr_assert_eq(remove(path), 0, "%s: %s", path, strerror(errno));
}

/* ---- tests -------------------------------------------------------------------- */

Test(http_example, pipelined_requests_get_their_answers_in_order, .timeout = 60)
{
    server_start(NULL, NULL);
    int fd = client();
    send_str(fd, GET("/") GET("/hello") GET("/?q=1") GET("/nothing") GET("/"));
    expect_str(fd, HELLO HELLO HELLO NOT_FOUND HELLO, "five pipelined answers");
    for (int i = 0; i < 100; i++) {   /* a keep-alive connection goes on */
        send_str(fd, GET("/hello"));
        expect_str(fd, HELLO, "request after the pipeline");
    }
    send_str(fd, "HEAD / HTTP/1.1\r\n\r\n" GET("/"));
    expect_str(fd, HELLO_HEAD "\r\n" HELLO, "HEAD, GET");
    close(fd);
    server_stop();
}

Test(http_example, fragmented_requests_are_answered_whole, .timeout = 60)
{
    server_start(NULL, NULL);
    int fd = client();
    static const char req[] = "GET /hello HTTP/1.1\r\nHost: t\r\nUser-Agent: bytewise\r\n\r\n";
    for (size_t i = 0; i < sizeof(req) - 1; i++) {
        send_bytes(fd, req + i, 1);
        sleep_ms(1);
    }
    expect_str(fd, HELLO, "a request sent byte by byte");
    static const char pair[] = GET("/") "POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody";
    for (size_t cut = 1; cut < sizeof(pair) - 1; cut++) {   /* every split point of a pipelined pair */
        send_bytes(fd, pair, cut);
        sleep_ms(1);
        send_bytes(fd, pair + cut, sizeof(pair) - 1 - cut);
        expect_str(fd, HELLO HELLO, "a pair split in two writes");
    }
    close(fd);
    server_stop();
}

Test(http_example, http10_and_connection_close_end_the_connection, .timeout = 60)
{
    server_start(NULL, NULL);
    answer_then_eof("GET / HTTP/1.0\r\n\r\n", HELLO_CLOSE, "HTTP/1.0 without keep-alive");
    int fd = client();
    send_str(fd, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
                 "GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_str(fd, HELLO_KEEP HELLO_KEEP, "HTTP/1.0 keep-alive");
    send_str(fd, "GET / HTTP/1.0\r\n\r\n");
    expect_str(fd, HELLO_CLOSE, "HTTP/1.0 after keep-alive");
    expect_eof(fd, "HTTP/1.0 without keep-alive");
    close(fd);
    answer_then_eof(GET("/") "GET / HTTP/1.1\r\nConnection: close\r\n\r\n" GET("/"), HELLO HELLO_CLOSE,
                    "Connection: close, and nothing answered after it");
    server_stop();
}

Test(http_example, bodies_are_dropped_and_a_too_large_one_gets_413, .timeout = 60)
{
    server_start(NULL, NULL);
    int fd = client();
    send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello worldGET /hello HTTP/1.1\r\n\r\n");
    expect_str(fd, HELLO HELLO, "a body in the same write");
    send_str(fd, "PUT /hello HTTP/1.1\r\ncontent-length:  7 \r\n\r\nabc");
    sleep_ms(5);
    send_str(fd, "defg" GET("/"));
    expect_str(fd, HELLO HELLO, "a body across writes");

    size_t big = 300 * 1024;   /* far larger than the server's buffer */
    char *body = malloc(big);
    cr_assert_not_null(body);
    for (size_t i = 0; i < big; i++)
        body[i] = (char)("\r\nGET / HTTP/1.1"[i % 16]);   /* looks like requests: must not be parsed */
    char head[96];
    snprintf(head, sizeof(head), "POST / HTTP/1.1\r\nContent-Length: %zu\r\n\r\n", big);
    send_str(fd, head);
    send_bytes(fd, body, big);
    send_str(fd, GET("/hello"));
    expect_str(fd, HELLO HELLO, "a 300 KiB body");
    free(body);

    send_str(fd, "POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n");
    expect_str(fd, TOO_LARGE, "a body over 1 MiB");
    expect_eof(fd, "after 413");
    close(fd);
    server_stop();
}

Test(http_example, malformed_requests_get_400_and_close, .timeout = 60)
{
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon here\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 12x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length:\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        "GET / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET /\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\x01z\r\n\r\n",
    };
    server_start(NULL, NULL);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int fd = client();
        send_str(fd, GET("/"));
        expect_str(fd, HELLO, "a good request first");
        send_str(fd, bad[i]);
        char what[64];
        snprintf(what, sizeof(what), "malformed request %zu", i);
        expect_str(fd, BAD, what);
        expect_eof(fd, what);
        close(fd);
    }
    int fd = client();   /* a head that does not fit the server's buffer */
    send_str(fd, "GET / HTTP/1.1\r\n");
    char line[1022];   /* 16 + 8 x 1022 bytes: exactly the 8 KiB buffer, nothing left unread */
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Long: ", 8);
    memcpy(line + sizeof(line) - 2, "\r\n", 2);
    for (int i = 0; i < 8; i++)
        send_bytes(fd, line, sizeof(line));
    expect_str(fd, "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n"
               "Connection: close\r\n\r\n", "8 KiB of headers");
    expect_eof(fd, "after 431");
    close(fd);
    server_stop();
}

Test(http_example, file_route_sends_the_file_and_refuses_escapes, .timeout = 60)
{
    need_server();
    char dir[] = "/tmp/urt-http-test-XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    size_t size = 200 * 1024 + 17;
    unsigned char *data = malloc(size);
    cr_assert_not_null(data);
    uint32_t x = 12345;
    for (size_t i = 0; i < size; i++)
        data[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    write_file(dir, "data.bin", data, size);
    write_file(dir, "empty", "", 0);
    snprintf(path, sizeof(path), "%s/sub", dir);
    cr_assert_eq(mkdir(path, 0700), 0);

    server_start(dir, NULL);
    int fd = client();
    for (int round = 0; round < 3; round++) {
        send_str(fd, GET("/files/data.bin") GET("/"));
        char head[160];
        snprintf(head, sizeof(head),
                 "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n", size);
        expect_str(fd, head, "the file's head");
        expect_bytes(fd, data, size, "the file's bytes");
        expect_str(fd, HELLO, "the answer after the file");
    }
    send_str(fd, GET("/files/empty") GET("/files/missing") GET("/files/sub") GET("/files/../etc/passwd")
             GET("/files/..") GET("/files/.hidden") GET("/files/sub/x") GET("/files/"));
    expect_str(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 0\r\n\r\n"
               NOT_FOUND NOT_FOUND FORBIDDEN FORBIDDEN FORBIDDEN FORBIDDEN NOT_FOUND,
               "empty, missing, a directory, escapes");
    close(fd);
    server_stop();

    remove_in(dir, "sub");
    remove_in(dir, "data.bin");
    remove_in(dir, "empty");
    cr_assert_eq(rmdir(dir), 0);
    free(data);
}

Test(http_example, idle_timeout_closes_a_silent_connection_not_a_talking_one, .timeout = 60)
{
    server_start(NULL, "400");
    int quiet = client(), talker = client();
    uint64_t t0 = now_ms();
    for (int i = 0; i < 10; i++) {   /* 1 s of a request every 100 ms: never idle for 400 ms */
        send_str(talker, GET("/"));
        expect_str(talker, HELLO, "a talking connection");
        sleep_ms(100);
    }
    expect_eof(quiet, "a connection silent for 400 ms");   /* SO_RCVTIMEO bounds it: 10 s */
    cr_assert_lt(now_ms() - t0, 10000);
    send_str(talker, GET("/"));
    expect_str(talker, HELLO, "the talking connection is still open");
    int half = client();   /* half a request, then silence: closed too */
    send_str(half, "GET / HT");
    expect_eof(half, "a connection silent in the middle of a request");
    close(quiet);
    close(talker);
    close(half);
    server_stop();
}

Test(http_example, a_peer_that_stops_reading_is_dropped, .timeout = 60)
{
    need_server();
    char dir[] = "/tmp/urt-http-test-XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    size_t size = 256 * 1024;
    char *data = calloc(1, size);
    cr_assert_not_null(data);
    write_file(dir, "big", data, size);
    server_start(dir, "400");
    int fd = client(), small = 64 * 1024;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));   /* no autotuning: the window stays small */
    enum { REQUESTS = 100 };   /* 25 MiB of answers: far more than the socket buffers hold */
    for (int i = 0; i < REQUESTS; i++)
        send_str(fd, GET("/files/big"));
    sleep_ms(1500);            /* read nothing for longer than the idle timeout */
    size_t got = 0;
    for (ssize_t n; (n = recv_nointr(fd, data, size, 0)) != 0;) {
        cr_assert(n > 0 || errno == ECONNRESET, "recv: %s (an answer still coming after 10 s?)", strerror(errno));
        if (n < 0)
            break;
        got += (size_t)n;
    }
    cr_assert_lt(got, (size_t)REQUESTS * size, "all %zu bytes came: the send was never given up", got);
    close(fd);
    server_stop();
    remove_in(dir, "big");
    cr_assert_eq(rmdir(dir), 0);
    free(data);
}
