/*
 * epoll-echo: a TCP echo server written the way a C programmer writes one by
 * hand with epoll, as a comparison peer for urt.
 *
 *   epoll-echo [--addr HOST:PORT] [--workers N] [--backlog N]
 *
 * One thread per worker (default: one per CPU this process may run on), each
 * with its own epoll instance and its own listening socket bound with
 * SO_REUSEPORT, so the kernel spreads connections over the workers and no
 * worker ever touches another's connections. Sockets are non-blocking and
 * TCP_NODELAY is set on the listener (accepted sockets inherit it). Each
 * connection owns one 64 KiB buffer: it reads into it and writes back what it
 * read.
 *
 * Edge-triggered epoll. Every connection is registered once, for EPOLLIN,
 * EPOLLOUT and EPOLLRDHUP with EPOLLET, and its interest set never changes
 * afterwards: back-pressure costs no epoll_ctl calls. With level triggering
 * the connection would have to drop EPOLLIN and add EPOLLOUT whenever its
 * peer stops reading (two epoll_ctl calls per stall), and every reported
 * descriptor would be polled again on the next epoll_wait. Edge triggering
 * obliges the server to consume readiness fully before it waits again; a
 * short read on a stream socket already says the receive queue was empty, so
 * the common case costs one recv and one send per message, no extra recv that
 * returns EAGAIN. (Not so once the peer's FIN has been reported: a FIN queued
 * behind the data raises no further edge, so such a connection reads until
 * recv returns 0 or EAGAIN.) To stay fair, a connection that keeps filling
 * the whole buffer is served at most READ_BUDGET times per wakeup and then
 * goes on a ready list that is served after the next (non-blocking)
 * epoll_wait.
 * The listening socket is level-triggered: accepting stops after a batch and
 * resumes on the next round without bookkeeping.
 *
 * Back-pressure: while a connection has unsent output it does not read; a
 * send that cannot finish leaves the rest in the buffer and the EPOLLOUT
 * edge (the socket gets write space) resumes it. Memory per connection is
 * therefore bounded by the 64 KiB buffer whatever the peer does.
 *
 * Half-close: recv returns 0 only once everything the peer sent before its
 * FIN has been read, and a connection reads only when its earlier output has
 * been handed to the socket; so at that point the socket is closed, and the
 * kernel sends our FIN after the echoed data still in the send queue. Resets
 * and other errors close the connection at once.
 *
 * Accept failures for lack of descriptors or memory (EMFILE, ENFILE,
 * ENOBUFS, ENOMEM) make the worker stop watching its listener for
 * ACCEPT_BACKOFF_MS, while the connections already open keep being served;
 * pending connections wait in the listen backlog.
 *
 * `--addr` takes IPv4 (127.0.0.1:7777, the default) or IPv6 ([::1]:7777);
 * port 0 picks a free port (every worker then binds the same one). Once all
 * workers are ready the server prints `listening on <addr> (...)` on stdout.
 * SIGINT or SIGTERM stops it with exit status 0: the signals are blocked in
 * every thread and a signalfd, which nobody reads, sits in every worker's
 * epoll set, so all workers see it.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (64 * 1024)
#define MAX_EVENTS 256
#define ACCEPT_BATCH 64
#define READ_BUDGET 4
#define ACCEPT_BACKOFF_MS 10
#define MAX_WORKERS 1024

struct conn {
    int fd;
    unsigned len;           /* bytes in buf */
    unsigned off;           /* bytes of buf already sent */
    int hup;                /* an event reported EPOLLRDHUP, EPOLLHUP or EPOLLERR */
    int on_ready;           /* linked in the worker's ready list */
    unsigned ready_round;   /* the worker's round when it was put there */
    struct conn *rnext, *rprev;
    char *buf;
};

struct worker {
    int id;
    int lfd;                /* this worker's listening socket */
    int epfd;
    int sigfd;
    int accept_paused;
    struct timespec accept_resume;
    long nconns;
    struct conn *ready_head, *ready_tail;
    unsigned round;
    pthread_t thread;
};

/* epoll_event.data.ptr of the listener and the signalfd point at these. */
static char listen_tag, signal_tag;

static struct sockaddr_storage bind_addr;
static socklen_t bind_len;
static int backlog = 1024;

static void usage(void)
{
    fprintf(stderr, "usage: epoll-echo [--addr HOST:PORT] [--workers N] [--backlog N]\n");
    exit(2);
}

static int parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[128];
    const char *port;
    memset(ss, 0, sizeof(*ss));
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':' || (size_t)(end - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, end - s - 1);
        host[end - s - 1] = 0;
        port = end + 2;
    } else {
        const char *colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host))
            return -1;
        memcpy(host, s, colon - s);
        host[colon - s] = 0;
        port = colon + 1;
    }
    char *endp;
    long p = strtol(port, &endp, 10);
    if (*port == 0 || *endp || p < 0 || p > 65535)
        return -1;
    struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)p);
        *len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)p);
        *len = sizeof(*v6);
        return 0;
    }
    return -1;
}

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t n)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const void *)ss;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(out, n, "[%s]:%u", host, ntohs(v6->sin6_port));
    } else {
        const struct sockaddr_in *v4 = (const void *)ss;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(out, n, "%s:%u", host, ntohs(v4->sin_port));
    }
}

static long parse_positive(const char *flag, const char *v)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n <= 0) {
        fprintf(stderr, "epoll-echo: %s needs a positive number\n", flag);
        usage();
    }
    return n;
}

static int default_workers(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
        return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* A listening socket on bind_addr with SO_REUSEPORT; the first one fixes the
 * port when port 0 was asked for. */
static int make_listener(void)
{
    int fd = socket(bind_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        bind(fd, (struct sockaddr *)&bind_addr, bind_len) < 0 ||
        listen(fd, backlog) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    struct sockaddr_storage got;
    socklen_t gl = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &gl) == 0) {
        if (got.ss_family == AF_INET6)
            ((struct sockaddr_in6 *)&bind_addr)->sin6_port = ((struct sockaddr_in6 *)&got)->sin6_port;
        else
            ((struct sockaddr_in *)&bind_addr)->sin_port = ((struct sockaddr_in *)&got)->sin_port;
    }
    return fd;
}

static void ready_push(struct worker *w, struct conn *c)
{
    if (c->on_ready)
        return;
    c->on_ready = 1;
    c->ready_round = w->round;
    c->rnext = NULL;
    c->rprev = w->ready_tail;
    if (w->ready_tail)
        w->ready_tail->rnext = c;
    else
        w->ready_head = c;
    w->ready_tail = c;
}

static void ready_unlink(struct worker *w, struct conn *c)
{
    if (!c->on_ready)
        return;
    if (c->rprev)
        c->rprev->rnext = c->rnext;
    else
        w->ready_head = c->rnext;
    if (c->rnext)
        c->rnext->rprev = c->rprev;
    else
        w->ready_tail = c->rprev;
    c->on_ready = 0;
    c->rnext = c->rprev = NULL;
}

static void conn_close(struct worker *w, struct conn *c)
{
    ready_unlink(w, c);
    close(c->fd);           /* also leaves the epoll set: the fd has no duplicates */
    free(c->buf);
    free(c);
    w->nconns--;
}

/* Moves data until the socket says "later": flushes pending output, then reads
 * and echoes. Called on every edge and for connections on the ready list. */
static void conn_service(struct worker *w, struct conn *c)
{
    int reads = 0;
    int drained = 0;        /* the last recv here came back short: queue empty */
    for (;;) {
        while (c->off < c->len) {
            ssize_t n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
            if (n > 0) {
                c->off += (unsigned)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;                     /* the EPOLLOUT edge resumes us */
            conn_close(w, c);               /* reset, EPIPE, ... */
            return;
        }
        c->len = c->off = 0;
        if (drained)
            return;
        if (reads == READ_BUDGET) {
            ready_push(w, c);               /* more may be waiting: come back soon */
            return;
        }
        ssize_t n = recv(c->fd, c->buf, BUF_SIZE, 0);
        if (n > 0) {
            reads++;
            c->len = (unsigned)n;
            /* A short read means the queue held no more data, but a FIN may
             * sit behind it and raises no new edge once reported. */
            drained = n < BUF_SIZE && !c->hup;
            continue;
        }
        if (n == 0) {
            /* Peer finished sending; nothing is pending (we only read with an
             * empty buffer), so close: our FIN follows the echoed data. */
            conn_close(w, c);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        conn_close(w, c);
        return;
    }
}

static void now_plus_ms(struct timespec *ts, long ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_nsec += ms * 1000000L;
    while (ts->tv_nsec >= 1000000000L) {
        ts->tv_nsec -= 1000000000L;
        ts->tv_sec++;
    }
}

static long ms_until(const struct timespec *ts)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (ts->tv_sec - now.tv_sec) * 1000L + (ts->tv_nsec - now.tv_nsec) / 1000000L;
    return ms < 0 ? 0 : ms + 1;
}

static void accept_pause(struct worker *w)
{
    struct epoll_event ev = { .events = 0, .data.ptr = &listen_tag };
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->lfd, &ev);
    w->accept_paused = 1;
    now_plus_ms(&w->accept_resume, ACCEPT_BACKOFF_MS);
}

static void accept_resume(struct worker *w)
{
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &listen_tag };
    epoll_ctl(w->epfd, EPOLL_CTL_MOD, w->lfd, &ev);
    w->accept_paused = 0;
}

static void accept_batch(struct worker *w)
{
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            switch (errno) {
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return;
            case EMFILE:
            case ENFILE:
            case ENOBUFS:
            case ENOMEM:
                accept_pause(w);
                return;
            default:                        /* ECONNABORTED, EINTR, EPROTO, ...: next one */
                continue;
            }
        }
        struct conn *c = calloc(1, sizeof(*c));
        char *buf = c ? malloc(BUF_SIZE) : NULL;
        if (!buf) {
            free(c);
            close(fd);
            accept_pause(w);
            return;
        }
        c->fd = fd;
        c->buf = buf;
        struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c };
        if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            free(buf);
            free(c);
            close(fd);
            accept_pause(w);
            return;
        }
        w->nconns++;
        /* Data that arrived before the registration still raises an edge
         * (registering polls the socket), so nothing to do here. */
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct epoll_event events[MAX_EVENTS];

    for (;;) {
        int timeout = -1;
        if (w->ready_head)
            timeout = 0;
        else if (w->accept_paused)
            timeout = (int)ms_until(&w->accept_resume);

        int n = epoll_wait(w->epfd, events, MAX_EVENTS, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            perror("epoll-echo: epoll_wait");
            exit(1);
        }
        if (w->accept_paused && ms_until(&w->accept_resume) == 0)
            accept_resume(w);

        w->round++;
        for (int i = 0; i < n; i++) {
            void *p = events[i].data.ptr;
            if (p == &signal_tag)
                goto out;
            if (p == &listen_tag) {
                accept_batch(w);
                continue;
            }
            struct conn *c = p;
            if (events[i].events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
                c->hup = 1;
            ready_unlink(w, c);
            conn_service(w, c);
        }
        /* Serve the connections queued in earlier rounds; the ones queued
         * in this round (at the tail) wait for the next. */
        while (w->ready_head && w->ready_head->ready_round != w->round) {
            struct conn *c = w->ready_head;
            ready_unlink(w, c);
            conn_service(w, c);
        }
    }
out:
    while (w->ready_head)
        ready_unlink(w, w->ready_head);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *addr = "127.0.0.1:7777";
    int nworkers = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = NULL;
        char flag[32];
        const char *eq = strchr(a, '=');
        if (a[0] == '-' && a[1] == '-' && eq && (size_t)(eq - a) < sizeof(flag)) {
            memcpy(flag, a, eq - a);
            flag[eq - a] = 0;
            v = eq + 1;
            a = flag;
        }
#define VALUE() (v ? v : (i + 1 < argc ? argv[++i] : (usage(), "")))
        if (!strcmp(a, "--addr"))
            addr = VALUE();
        else if (!strcmp(a, "--workers")) {
            long n = parse_positive("--workers", VALUE());
            nworkers = n > MAX_WORKERS ? MAX_WORKERS : (int)n;
        } else if (!strcmp(a, "--backlog"))
            backlog = (int)parse_positive("--backlog", VALUE());
        else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
            usage();
        else {
            fprintf(stderr, "epoll-echo: unknown argument '%s'\n", argv[i]);
            usage();
        }
#undef VALUE
    }
    if (parse_addr(addr, &bind_addr, &bind_len) < 0) {
        fprintf(stderr, "epoll-echo: bad --addr '%s' (want 127.0.0.1:7777 or [::1]:7777)\n", addr);
        usage();
    }
    if (nworkers == 0)
        nworkers = default_workers();

    /* Blocked before any thread starts, so every thread inherits the mask
     * and the signals stay pending for the signalfd. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    int sigfd = signalfd(-1, &sigs, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        perror("epoll-echo: signalfd");
        return 1;
    }

    struct worker *workers = calloc((size_t)nworkers, sizeof(*workers));
    if (!workers) {
        perror("epoll-echo: calloc");
        return 1;
    }
    for (int i = 0; i < nworkers; i++) {
        struct worker *w = &workers[i];
        w->id = i;
        w->sigfd = sigfd;
        w->lfd = make_listener();
        if (w->lfd < 0) {
            char s[80];
            format_addr(&bind_addr, s, sizeof(s));
            fprintf(stderr, "epoll-echo: cannot listen on %s: %s\n", s, strerror(errno));
            return 1;
        }
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event lev = { .events = EPOLLIN, .data.ptr = &listen_tag };
        struct epoll_event sev = { .events = EPOLLIN, .data.ptr = &signal_tag };
        if (w->epfd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->lfd, &lev) < 0 ||
            epoll_ctl(w->epfd, EPOLL_CTL_ADD, sigfd, &sev) < 0) {
            perror("epoll-echo: epoll");
            return 1;
        }
    }
    for (int i = 0; i < nworkers; i++) {
        int e = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
        if (e) {
            fprintf(stderr, "epoll-echo: pthread_create: %s\n", strerror(e));
            return 1;
        }
    }

    char s[80];
    format_addr(&bind_addr, s, sizeof(s));
    printf("listening on %s (epoll workers=%d)\n", s, nworkers);
    fflush(stdout);

    for (int i = 0; i < nworkers; i++)
        pthread_join(workers[i].thread, NULL);

    struct signalfd_siginfo si;
    const char *name = "signal";
    if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
        name = si.ssi_signo == SIGINT ? "SIGINT" : si.ssi_signo == SIGTERM ? "SIGTERM" : "signal";
    long open_conns = 0;
    for (int i = 0; i < nworkers; i++)
        open_conns += workers[i].nconns;
    fprintf(stderr, "epoll-echo: %s received, shutting down (%ld connections open)\n", name, open_conns);
    for (int i = 0; i < nworkers; i++)
        close(workers[i].lfd);
    free(workers);
    return 0;
}
