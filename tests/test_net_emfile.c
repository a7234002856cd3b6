/*
 * test_net_emfile.c - a server inside the runtime that runs out of
 * descriptors: with RLIMIT_NOFILE lowered (each test runs in its own
 * process) and every descriptor under it taken, accepting a connection
 * fails with -EMFILE, from urt_accept and from urt_listener_accept; the
 * server backs off and keeps going, its open connections keep working, and
 * once descriptors are freed the waiting connection is accepted and served.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/net_test.h"

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

/* The highest descriptor open in this process. */
static int max_open_fd(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d, "/proc/self/fd: %s", strerror(errno));
    int self = dirfd(d), most = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        int fd = atoi(e->d_name);
        if (fd != self && fd > most)
            most = fd;
    }
    closedir(d);
    return most;
}

/* ---- descriptors: lower the limit, fill every slot under it ----------------------------------------- */

#define HEADROOM 8
#define MAX_BALLAST 4096

typedef struct fd_squeeze {
    struct rlimit saved;
    int ballast[MAX_BALLAST];
    int n;
} fd_squeeze;

/* Afterwards exactly `free_slots` descriptors can still be opened. */
static void squeeze(fd_squeeze *q, int free_slots)
{
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &q->saved), 0);
    struct rlimit low = q->saved;
    low.rlim_cur = (rlim_t)max_open_fd() + 1 + HEADROOM;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &low), 0);
    q->n = 0;
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            cr_assert_eq(errno, EMFILE, "open: %s", strerror(errno));
            break;
        }
        cr_assert_lt(q->n, MAX_BALLAST, "the descriptor table never filled");
        q->ballast[q->n++] = fd;
    }
    cr_assert_geq(q->n, free_slots);
    for (int i = 0; i < free_slots; i++)
        close(q->ballast[--q->n]);
}

static void release(fd_squeeze *q, int k)
{
    for (int i = 0; i < k && q->n > 0; i++)
        close(q->ballast[--q->n]);
}

static void unsqueeze(fd_squeeze *q)
{
    release(q, q->n);
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &q->saved), 0);
}

/* ---- the server: accept with back-off, an echo task per connection ------------------------------------ */

#define CONNS 3

typedef struct server {
    int lfd;
    bool listener;
    atomic_uint accepted, emfile, conns_done;
    atomic_int err;                  /* anything but -EMFILE / -ENFILE */
    _Atomic(const char *) err_where;
} server;

typedef struct srv_conn {
    server *s;
    int fd;
} srv_conn;

static void server_err(server *s, const char *where, long err)
{
    int zero = 0;
    if (atomic_compare_exchange_strong(&s->err, &zero, err ? (int)err : -1000))
        atomic_store(&s->err_where, where);
}

static void *echo_plain(void *arg)
{
    srv_conn *c = arg;
    char buf[256];
    for (int i = 0; i < 100000; i++) {
        ssize_t n = urt_recv(c->fd, buf, sizeof(buf), 0);
        if (n == 0)
            break;
        if (n < 0) {
            server_err(c->s, "urt_recv", n);
            break;
        }
        ssize_t w = urt_send_all(c->fd, buf, (size_t)n, 0);
        if (w != n) {
            server_err(c->s, "urt_send_all", w);
            break;
        }
    }
    urt_close(c->fd);
    atomic_fetch_add(&c->s->conns_done, 1);
    return NULL;
}

static void *echo_pooled(void *arg)
{
    srv_conn *c = arg;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, c->fd);
    if (r != 0)
        server_err(c->s, "urt_rx_open", r);
    for (int i = 0; rx && i < 100000; i++) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n == 0)
            break;
        if (n < 0) {
            server_err(c->s, "urt_rx_recv", n);
            break;
        }
        ssize_t w = urt_send_all(c->fd, b.data, b.len, 0);
        urt_buf_release(&b);
        if (w != n) {
            server_err(c->s, "urt_send_all", w);
            break;
        }
    }
    if (rx)
        urt_rx_close(rx);
    urt_close(c->fd);
    atomic_fetch_add(&c->s->conns_done, 1);
    return NULL;
}

/* At most this many failed accepts, each followed by a short sleep. */
#define MAX_EMFILE 20000

static void *acceptor(void *arg)
{
    server *s = arg;
    urt_listener *l = NULL;
    if (s->listener) {
        int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
        if (r != 0) {
            server_err(s, "urt_listener_open", r);
            return NULL;
        }
    }
    srv_conn conns[CONNS];
    urt_task *tasks[CONNS];
    unsigned n = 0;
    while (n < CONNS) {
        int fd = l ? urt_listener_accept(l) : urt_accept(s->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd == -EMFILE || fd == -ENFILE) {
            if (atomic_fetch_add(&s->emfile, 1) + 1 >= MAX_EMFILE) {
                server_err(s, "accept kept failing", fd);
                break;
            }
            urt_sleep(MS);
            continue;
        }
        if (fd < 0) {
            server_err(s, l ? "urt_listener_accept" : "urt_accept", fd);
            break;
        }
        conns[n] = (srv_conn){.s = s, .fd = fd};
        int r = urt_spawn(NULL, &tasks[n], l ? echo_pooled : echo_plain, &conns[n]);
        if (r != 0) {
            server_err(s, "urt_spawn", r);
            close(fd);
            break;
        }
        n++;
        atomic_store(&s->accepted, n);
    }
    for (unsigned i = 0; i < n; i++)
        urt_join(tasks[i], NULL);
    if (l)
        urt_listener_close(l);
    return NULL;
}

/* ---- clients on the test thread --------------------------------------------------------------------------- */

static void round_trip(int fd, unsigned k, const char *who)
{
    char out[32], in[32];
    int len = snprintf(out, sizeof(out), "message %u", k);
    cr_assert_eq(send_nointr(fd, out, (size_t)len, MSG_NOSIGNAL), len, "%s: send: %s", who, strerror(errno));
    int got = 0;
    while (got < len) {
        ssize_t r = recv_nointr(fd, in + got, (size_t)(len - got), 0);
        cr_assert_gt(r, 0, "%s: no echo of message %u: %s", who, k, r < 0 ? strerror(errno) : "end of stream");
        got += (int)r;
    }
    cr_assert_eq(memcmp(in, out, (size_t)len), 0, "%s: message %u came back as %.*s", who, k, len, in);
}

static void wait_for(atomic_uint *v, unsigned at_least, const char *what, const char *who)
{
    for (int i = 0; i < 10000 && atomic_load(v) < at_least; i++)
        usleep(1000);
    cr_assert_geq(atomic_load(v), at_least, "%s: %s: %u, expected at least %u", who, what, atomic_load(v), at_least);
}

static void run_emfile(bool listener)
{
    FOR_EACH_WORKER_COUNT(w) {
        char who[64];
        snprintf(who, sizeof(who), "%s, %u workers", listener ? "urt_listener" : "urt_accept", w);
        urt_runtime *rt = rt_new(w);
        server s = {.listener = listener};
        s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(s.lfd, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        cr_assert_eq(bind(s.lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
        cr_assert_eq(listen(s.lfd, 16), 0);
        socklen_t alen = sizeof(addr);
        cr_assert_eq(getsockname(s.lfd, (struct sockaddr *)&addr, &alen), 0);
        /* the clients' sockets exist before the table fills */
        int cl[CONNS];
        struct timeval tv = {.tv_sec = 10};
        for (int i = 0; i < CONNS; i++) {
            cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            cr_assert_geq(cl[i], 0);
            setsockopt(cl[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
            setsockopt(cl[i], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        }

        /* one free slot, and the server starts after the limit is lowered
         * (the kernel reads the limit when the accept is submitted) */
        fd_squeeze q;
        squeeze(&q, 1);
        urt_task *acc = NULL;
        cr_assert_eq(urt_spawn(rt, &acc, acceptor, &s), 0);

        cr_assert_eq(connect_nointr(cl[0], (struct sockaddr *)&addr, sizeof(addr)), 0, "connect: %s", strerror(errno));
        round_trip(cl[0], 0, who);
        wait_for(&s.accepted, 1, "connections accepted", who);

        /* no slot left: the next connection waits in the backlog, accept fails */
        cr_assert_eq(connect_nointr(cl[1], (struct sockaddr *)&addr, sizeof(addr)), 0, "connect: %s", strerror(errno));
        wait_for(&s.emfile, 3, "accepts that failed with EMFILE", who);
        for (unsigned k = 1; k <= 5; k++)
            round_trip(cl[0], k, who);
        unsigned failed = atomic_load(&s.emfile);
        wait_for(&s.emfile, failed + 2, "accepts that failed with EMFILE (still)", who);
        cr_assert_eq(atomic_load(&s.accepted), 1, "%s: accepted with no descriptor free", who);
        cr_assert_eq(atomic_load(&s.err), 0, "%s: %s gave %s", who, atomic_load(&s.err_where),
                     strerror(-atomic_load(&s.err)));

        /* descriptors come back: the waiting connection and a new one are served */
        release(&q, 2);
        wait_for(&s.accepted, 2, "connections accepted", who);
        round_trip(cl[1], 100, who);
        round_trip(cl[0], 6, who);
        cr_assert_eq(connect_nointr(cl[2], (struct sockaddr *)&addr, sizeof(addr)), 0, "connect: %s", strerror(errno));
        round_trip(cl[2], 200, who);
        wait_for(&s.accepted, 3, "connections accepted", who);

        for (int i = 0; i < CONNS; i++)
            cr_assert_eq(shutdown(cl[i], SHUT_WR), 0);
        cr_assert_eq(urt_join(acc, NULL), 0);
        cr_assert_eq(atomic_load(&s.err), 0, "%s: %s gave %s", who, atomic_load(&s.err_where),
                     strerror(-atomic_load(&s.err)));
        cr_assert_eq(atomic_load(&s.conns_done), CONNS);
        for (int i = 0; i < CONNS; i++) {
            char b;
            cr_assert_eq(recv_nointr(cl[i], &b, 1, 0), 0, "%s: connection %d did not end", who, i);
            close(cl[i]);
        }
        unsqueeze(&q);
        close(s.lfd);
        urt_runtime_destroy(rt);
    }
}

Test(net_emfile, accept_loop_survives_emfile_and_accepts_again_once_descriptors_are_freed, .timeout = 60)
{
    run_emfile(false);
}

Test(net_emfile, listener_survives_emfile_and_accepts_again_once_descriptors_are_freed, .timeout = 60)
{
    run_emfile(true);
}
