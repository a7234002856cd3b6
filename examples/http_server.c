/*
 * http_server.c - a small HTTP/1.1 server: one task accepts (urt_listener),
 * one task per connection receives (urt_rx), answers, and keeps it open.
 *   ./http_server [-p PORT] [-w WORKERS] [-d DIR] [-t IDLE_MS]
 * Port 0 (the default): a free one, printed as "listening on 127.0.0.1:PORT".
 * / and /hello answer "hello"; /files/NAME sends the file NAME of DIR (no '/'
 * in NAME, not starting with '.'). Keep-alive and pipelining (the answers to
 * the requests of one read go out in one send), Connection: close, HTTP/1.0
 * (closes unless asked to keep alive), Content-Length bodies read and dropped
 * (over 1 MiB: 413 and close), 400 for a malformed request (then close). A
 * connection silent for IDLE_MS (default 10 s; 0: never) is closed. SIGINT or
 * SIGTERM stops the server (exit status 0).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urt.h>

#define IN_SIZE  8192           /* a request head must fit */
#define RX_SIZE  4096           /* the runtime's receive buffers (urt_config.rx_buffer_size) */
#define OUT_SIZE 8192           /* answers to pipelined requests gather here */
#define MAX_BODY (1u << 20)

static int files_dir = -1;      /* -d DIR, opened once; -1: no file route */
static uint64_t idle_ns = 10000000000ull;

struct conn {
    int fd;
    size_t in_len, out_len;
    uint64_t skip;              /* body bytes still to drop */
    char in[IN_SIZE + RX_SIZE], out[OUT_SIZE];   /* a received chunk always fits after IN_SIZE */
};

struct request {
    const char *target;
    size_t target_len;
    int minor;                  /* HTTP/1.0 or 1.1 */
    bool head, keep_alive;      /* HEAD: no body in the answer */
    uint64_t body_len;
};

/* Bound the next waits: a peer silent (or not reading) for idle_ns is dropped. */
static void arm(void) { urt_deadline(idle_ns ? urt_now() + idle_ns : 0); }

static bool flush(struct conn *c)
{
    if (c->out_len == 0)
        return true;
    /* it mostly fits at once: a try with no timer, a bounded wait for the rest */
    ssize_t n = urt_send(c->fd, c->out, c->out_len, MSG_DONTWAIT);
    n = n == -EAGAIN ? 0 : n;
    if (n >= 0 && (size_t)n < c->out_len) {
        arm();
        n = urt_send_all(c->fd, c->out + n, c->out_len - (size_t)n, 0) < 0 ? -1 : (ssize_t)c->out_len;
        urt_deadline(0);
    }
    bool ok = n == (ssize_t)c->out_len;
    c->out_len = 0;
    return ok;
}

static bool put(struct conn *c, const char *s, size_t n)
{
    if (c->out_len + n > OUT_SIZE && !flush(c))
        return false;
    memcpy(c->out + c->out_len, s, n);   /* every piece put here is shorter than OUT_SIZE */
    c->out_len += n;
    return true;
}
#define PUT(c, lit) put(c, lit, sizeof(lit) - 1)

/* Queue a status line and headers for a body of len bytes, then body (NULL: none here). */
static bool reply(struct conn *c, const char *status, const char *type, const char *body, uint64_t len,
                  const struct request *r)
{
    char num[24], *d = num + sizeof(num);
    *--d = '\n', *--d = '\r';
    do
        *--d = (char)('0' + len % 10);
    while (len /= 10);
    bool ok = PUT(c, "HTTP/1.1 ") && put(c, status, strlen(status)) && PUT(c, "\r\nContent-Type: ") &&
              put(c, type, strlen(type)) && PUT(c, "\r\nContent-Length: ") &&
              put(c, d, (size_t)(num + sizeof(num) - d));
    if (ok && !r->keep_alive)
        ok = PUT(c, "Connection: close\r\n");
    else if (ok && r->minor == 0)
        ok = PUT(c, "Connection: keep-alive\r\n");
    return ok && PUT(c, "\r\n") && (!body || r->head || put(c, body, strlen(body)));
}

static bool token_is(const char *s, size_t n, const char *word)
{
    return n == strlen(word) && strncasecmp(s, word, n) == 0;
}

/* Parse the head h[0..n) (it ends with the blank line) into r; false: malformed. */
static bool parse(const char *h, size_t n, struct request *r)
{
    const char *end = h + n - 2, *eol = memmem(h, n, "\r\n", 2);
    const char *sp1 = memchr(h, ' ', (size_t)(eol - h));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp2 || sp1 == h || sp2 == sp1 + 1 || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
        (sp2[8] != '0' && sp2[8] != '1'))
        return false;
    for (const char *p = h; p < sp2; p++)
        if ((unsigned char)*p <= ' ' && p != sp1)
            return false;   /* control characters or a third space */
    *r = (struct request){.target = sp1 + 1, .target_len = (size_t)(sp2 - sp1 - 1), .minor = sp2[8] - '0',
                          .head = sp1 - h == 4 && memcmp(h, "HEAD", 4) == 0, .keep_alive = sp2[8] == '1'};
    bool have_len = false;
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        const char *colon = memchr(line, ':', (size_t)(eol - line)), *v, *ve = eol;
        if (!colon || colon == line)
            return false;
        for (const char *p = line; p < eol; p++)
            if (((unsigned char)*p < ' ' && *p != '\t') || (p < colon && (*p == ' ' || *p == '\t')))
                return false;
        for (v = colon + 1; v < ve && (*v == ' ' || *v == '\t'); v++)
            ;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t name_len = (size_t)(colon - line), vlen = (size_t)(ve - v);
        if (token_is(line, name_len, "content-length")) {
            uint64_t len = 0;
            if (vlen == 0 || vlen > 18 || have_len)
                return false;
            for (const char *p = v; p < ve; p++) {
                if (*p < '0' || *p > '9')
                    return false;
                len = len * 10 + (uint64_t)(*p - '0');
            }
            r->body_len = len, have_len = true;
        } else if (token_is(line, name_len, "connection")) {
            if (token_is(v, vlen, "close"))
                r->keep_alive = false;
            else if (token_is(v, vlen, "keep-alive"))
                r->keep_alive = true;
        } else if (token_is(line, name_len, "transfer-encoding")) {
            return false;   /* chunked bodies are not taken here */
        }
    }
    return true;
}

/* GET /files/NAME: the headers, then the file's bytes. */
static bool send_file(struct conn *c, const struct request *r, const char *name, size_t len)
{
    char path[256];
    if (len == 0 || len >= sizeof(path) || memchr(name, '/', len) || name[0] == '.')
        return reply(c, "403 Forbidden", "text/plain", "", 0, r);
    memcpy(path, name, len);
    path[len] = 0;
    struct statx st;
    int fd = files_dir < 0 ? -1 : urt_openat(files_dir, path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW, 0);
    if (fd < 0 || urt_statx(fd, "", AT_EMPTY_PATH, STATX_TYPE | STATX_SIZE, &st) < 0 || !S_ISREG(st.stx_mode)) {
        if (fd >= 0)
            close(fd);
        return reply(c, "404 Not Found", "text/plain", "", 0, r);
    }
    int64_t size = (int64_t)st.stx_size;
    bool ok = reply(c, "200 OK", "application/octet-stream", NULL, (uint64_t)size, r) && flush(c);
    arm();
    /* the body: file -> socket in the kernel, no copy through user space */
    for (int64_t off = 0; ok && !r->head && off < size; arm()) {
        ssize_t n = urt_sendfile(c->fd, fd, off, (size_t)(size - off));
        ok = n > 0;   /* a shrunk file ends the connection */
        off += n;
    }
    urt_deadline(0);
    close(fd);
    return ok;
}

/* Answer one request; false: close the connection after what is queued. */
static bool answer(struct conn *c, const char *head, size_t n)
{
    struct request r;
    bool good = parse(head, n, &r);
    if (!good || r.body_len > MAX_BODY) {
        r = (struct request){.minor = 1, .keep_alive = false};
        reply(c, good ? "413 Content Too Large" : "400 Bad Request", "text/plain", "", 0, &r);
        return false;
    }
    c->skip = r.body_len;
    const char *t = r.target, *q = memchr(t, '?', r.target_len);
    size_t tl = q ? (size_t)(q - t) : r.target_len;
    bool ok;
    if ((tl == 1 && t[0] == '/') || (tl == 6 && memcmp(t, "/hello", 6) == 0))
        ok = reply(c, "200 OK", "text/plain", "hello", 5, &r);
    else if (tl > 7 && memcmp(t, "/files/", 7) == 0)
        ok = send_file(c, &r, t + 7, tl - 7);
    else
        ok = reply(c, "404 Not Found", "text/plain", "", 0, &r);
    return ok && r.keep_alive;
}

static void *serve(void *arg)   /* owns the connection */
{
    int fd = (int)(intptr_t)arg, one = 1;
    struct conn *c = malloc(sizeof(*c));
    urt_rx *rx = NULL;              /* pooled receive: one multishot recv for the connection */
    if (c)
        c->fd = fd, c->in_len = c->out_len = 0, c->skip = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    for (bool more = c && urt_rx_open(&rx, fd) == 0; more;) {
        if (c->in_len >= IN_SIZE) {   /* a head that does not fit */
            struct request r = {.minor = 1, .keep_alive = false};
            reply(c, "431 Request Header Fields Too Large", "text/plain", "", 0, &r);
            flush(c);
            break;
        }
        urt_buf b;
        arm();   /* for this receive only */
        ssize_t got = urt_rx_recv(rx, &b);
        urt_deadline(0);
        if (got <= 0)
            break;   /* the peer closed, an error, or -ETIMEDOUT: idle too long */
        memcpy(c->in + c->in_len, b.data, (size_t)got);
        urt_buf_release(&b);
        c->in_len += (size_t)got;
        size_t used = 0;
        while (more) {   /* every complete request in the buffer; answers gather in out */
            uint64_t drop = c->skip < c->in_len - used ? c->skip : c->in_len - used;
            used += (size_t)drop, c->skip -= drop;
            char *end = c->skip ? NULL : memmem(c->in + used, c->in_len - used, "\r\n\r\n", 4);
            if (!end)
                break;
            size_t n = (size_t)(end + 4 - (c->in + used));
            more = answer(c, c->in + used, n);
            used += n;
        }
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= used;
        more = flush(c) && more;
    }
    urt_rx_close(rx);
    urt_close(fd);   /* a FIN after the last answer */
    free(c);
    return NULL;
}

static void close_fd(void *arg) { close((int)(intptr_t)arg); }

static void *signals(void *arg)   /* SIGINT or SIGTERM: close the listen socket */
{
    int *fds = arg;               /* listen socket, signalfd */
    struct signalfd_siginfo si;
    urt_read(fds[1], &si, sizeof(si), -1);
    urt_close(fds[0]);            /* ends the accept below with -ECANCELED */
    return NULL;
}

static void *root(void *arg)   /* accept until the listen socket is closed */
{
    int *fds = arg;
    urt_listener *l;
    if (urt_listener_open(&l, fds[0], SOCK_CLOEXEC) < 0 || urt_spawn(NULL, NULL, signals, fds) < 0)
        return (void *)1;
    urt_spawn_opts so = {.name = "conn", .flags = URT_TASK_SPREAD, .on_drop = close_fd};
    for (;;) {
        int fd = urt_listener_accept(l);
        if (fd == -ECANCELED || fd == -EINVAL)
            break;
        if (fd < 0)
            urt_sleep(10 * 1000 * 1000);  /* -EMFILE and the like: back off 10 ms */
        else if (urt_spawn_ex(NULL, NULL, serve, (void *)(intptr_t)fd, &so) < 0)
            urt_close(fd);
    }
    urt_listener_close(l);
    return NULL;
}

int main(int argc, char **argv)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    urt_config cfg = {.rx_buffer_size = RX_SIZE};
    for (int o; (o = getopt(argc, argv, "p:w:d:t:")) != -1;) {
        if (o == 'p')
            addr.sin_port = htons((uint16_t)atoi(optarg));
        else if (o == 'w')
            cfg.workers = (unsigned)atoi(optarg);
        else if (o == 'd' && (files_dir = open(optarg, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
            err(2, "%s", optarg);
        else if (o == 't')
            idle_ns = strtoull(optarg, NULL, 10) * 1000000ull;
        else if (o == '?')
            errx(2, "usage: http_server [-p PORT] [-w WORKERS] [-d DIR] [-t IDLE_MS]");
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigprocmask(SIG_BLOCK, &sigs, NULL);   /* before the workers start: they inherit it */
    socklen_t len = sizeof(addr);
    int one = 1, r, fds[2] = {socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), signalfd(-1, &sigs, SFD_CLOEXEC)};
    setsockopt(fds[0], SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (fds[1] < 0 || bind(fds[0], (struct sockaddr *)&addr, len) < 0 || listen(fds[0], 1024) < 0 ||
        getsockname(fds[0], (struct sockaddr *)&addr, &len) < 0)
        err(1, "listen on port %d", ntohs(addr.sin_port));
    urt_runtime *rt;
    if ((r = urt_runtime_create(&rt, &cfg)) < 0)   /* exit 77: no io_uring here */
        errx(r == -ENOSYS || r == -EPERM ? 77 : 1, "urt_runtime_create: %s", strerror(-r));
    printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    void *failed = NULL;
    r = urt_runtime_block_on(rt, root, fds, &failed);
    urt_runtime_destroy(rt);   /* cancels the connections still open */
    return r < 0 || failed ? 1 : 0;
}
