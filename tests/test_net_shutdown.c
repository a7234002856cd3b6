/*
 * test_net_shutdown.c - shutting down a runtime with thousands of loopback
 * connections open, their tasks suspended in urt_recv and urt_rx_recv (and
 * the acceptor in urt_accept or urt_listener_accept), returns 0: every task
 * gets -ECANCELED, closes its socket and ends; afterwards the process holds
 * exactly the descriptors it held before the runtime was created (the ASan
 * build's leak checker covers memory).
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/net_test.h"

#if defined(URT_TSAN)
#define SAN_DIV 8
#elif defined(URT_ASAN)
#define SAN_DIV 2
#else
#define SAN_DIV 1
#endif

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

#define PAIRS (2000u / SAN_DIV)

/* The soft descriptor limit up to the hard one; skip when even that is too low. */
static void raise_nofile(rlim_t need)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
        cr_skip_test("needs %llu descriptors, the hard limit is %llu", (unsigned long long)need,
                     (unsigned long long)rl.rlim_cur);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d, "/proc/self/fd: %s", strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;   /* the directory's own descriptor */
}

/* Tasks of the dump that wait in recv or rx. */
static unsigned count_waiting(urt_runtime *rt)
{
    int fd = memfd_create("urt-dump", MFD_CLOEXEC);
    if (fd < 0)
        return 0;
    unsigned n = 0;
    if (urt_runtime_dump(rt, fd) >= 0) {
        off_t len = lseek(fd, 0, SEEK_END);
        char *buf = calloc(1, (size_t)len + 1);
        if (buf && pread(fd, buf, (size_t)len, 0) == len) {
            char *save = NULL;
            for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strstr(line, " waits=recv ") || strstr(line, " waits=rx "))
                    n++;
        }
        free(buf);
    }
    close(fd);
    return n;
}

static int listen_loopback(struct sockaddr_in *addr, int backlog)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(listen(lfd, backlog), 0);
    socklen_t alen = sizeof(*addr);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)addr, &alen), 0);
    return lfd;
}

/* ---- tasks that wait for data that never comes ------------------------------------------------------- */

typedef struct tally {
    int lfd;
    struct sockaddr_in addr;
    bool listener;
    atomic_uint accepted, started, cancelled, eof, closed, other;
    atomic_int other_err;
    atomic_int acceptor_res;
} tally;

typedef struct conn_arg {
    tally *t;
    int fd;
} conn_arg;

static void ended(tally *t, ssize_t res, int close_res)
{
    if (res == -ECANCELED)
        atomic_fetch_add(&t->cancelled, 1);
    else if (res == 0)
        atomic_fetch_add(&t->eof, 1);   /* the other end, cancelled first, closed */
    else {
        atomic_fetch_add(&t->other, 1);
        atomic_store(&t->other_err, (int)res);
    }
    if (close_res == 0)
        atomic_fetch_add(&t->closed, 1);
}

static void *wait_in_recv(void *arg)
{
    conn_arg a = *(conn_arg *)arg;
    free(arg);
    char buf[64];
    atomic_fetch_add(&a.t->started, 1);
    ssize_t r = urt_recv(a.fd, buf, sizeof(buf), 0);
    ended(a.t, r, urt_close(a.fd));
    return NULL;
}

static void *wait_in_rx_recv(void *arg)
{
    conn_arg a = *(conn_arg *)arg;
    free(arg);
    urt_rx *rx = NULL;
    ssize_t r = urt_rx_open(&rx, a.fd);
    atomic_fetch_add(&a.t->started, 1);
    if (r == 0) {
        urt_buf b;
        r = urt_rx_recv(rx, &b);
        if (r > 0)
            urt_buf_release(&b);
        urt_rx_close(rx);
    }
    ended(a.t, r, urt_close(a.fd));
    return NULL;
}

/* Even connections wait in urt_recv, odd ones in urt_rx_recv. */
static int spawn_waiter(tally *t, int fd, unsigned i)
{
    conn_arg *a = malloc(sizeof(*a));
    if (!a)
        return -ENOMEM;
    *a = (conn_arg){.t = t, .fd = fd};
    int r = urt_spawn(NULL, NULL, i % 2 ? wait_in_rx_recv : wait_in_recv, a);
    if (r != 0)
        free(a);
    return r;
}

/* Accepts until cancelled, a detached waiter per connection. */
static void *acceptor(void *arg)
{
    tally *t = arg;
    urt_listener *l = NULL;
    if (t->listener) {
        int r = urt_listener_open(&l, t->lfd, SOCK_CLOEXEC);
        if (r != 0) {
            atomic_store(&t->acceptor_res, r);
            return NULL;
        }
    }
    int res = 0;
    for (unsigned i = 0; i < 10 * PAIRS; i++) {
        int fd = l ? urt_listener_accept(l) : urt_accept(t->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            res = fd;
            break;
        }
        int r = spawn_waiter(t, fd, i);
        if (r != 0) {
            close(fd);
            res = r;
            break;
        }
        atomic_fetch_add(&t->accepted, 1);
    }
    if (l)
        urt_listener_close(l);
    atomic_store(&t->acceptor_res, res);
    return NULL;
}

/* A client task: connects, then waits for data too. */
static void *client_waiter(void *arg)
{
    tally *t = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        ended(t, -errno, -1);
        return NULL;
    }
    int r = urt_connect(fd, (const struct sockaddr *)&t->addr, sizeof(t->addr));
    if (r != 0) {
        ended(t, r, urt_close(fd));
        return NULL;
    }
    char buf[16];
    atomic_fetch_add(&t->started, 1);
    ssize_t n = urt_recv(fd, buf, sizeof(buf), 0);
    ended(t, n, urt_close(fd));
    return NULL;
}

static void wait_all_waiting(urt_runtime *rt, tally *t, unsigned tasks, const char *who)
{
    for (int i = 0; i < 2000 && atomic_load(&t->started) < tasks; i++)
        usleep(5000);
    cr_assert_eq(atomic_load(&t->started), tasks, "%s: %u of %u tasks started", who, atomic_load(&t->started), tasks);
    unsigned waiting = 0;
    for (int i = 0; i < 1000 && (waiting = count_waiting(rt)) < tasks; i++)
        usleep(10000);
    cr_assert_eq(waiting, tasks, "%s: %u of %u tasks wait for data", who, waiting, tasks);
}

/* both_ends: a wait may also end with 0, when the peer's task was cancelled
 * and closed its end first */
static void check_ended(tally *t, unsigned tasks, bool both_ends, const char *who)
{
    cr_assert_eq(atomic_load(&t->other), 0, "%s: %u waits ended otherwise, e.g. with %d", who, atomic_load(&t->other),
                 atomic_load(&t->other_err));
    if (!both_ends)
        cr_assert_eq(atomic_load(&t->eof), 0, "%s: %u waits saw the end of the stream", who, atomic_load(&t->eof));
    cr_assert_eq(atomic_load(&t->cancelled) + atomic_load(&t->eof), tasks,
                 "%s: %u waits ended with -ECANCELED, %u with the end of the stream, of %u", who,
                 atomic_load(&t->cancelled), atomic_load(&t->eof), tasks);
    cr_assert_geq(atomic_load(&t->cancelled), tasks / 2, "%s: only %u of %u waits were cancelled", who,
                  atomic_load(&t->cancelled), tasks);
    cr_assert_eq(atomic_load(&t->closed), tasks, "%s: %u of %u sockets closed", who, atomic_load(&t->closed), tasks);
    cr_assert_eq(atomic_load(&t->acceptor_res), -ECANCELED, "%s: the acceptor ended with %d", who,
                 atomic_load(&t->acceptor_res));
}

Test(net_shutdown, shutdown_with_thousands_of_server_connections_waiting_returns_0_and_closes_them_all,
     .timeout = 120)
{
    raise_nofile(2 * PAIRS + 256);
    for (int listener = 0; listener < 2; listener++) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[64];
            snprintf(who, sizeof(who), "%s, %u workers", listener ? "urt_listener" : "urt_accept", w);
            int fds_before = count_fds();
            urt_runtime *rt = rt_new(w);
            tally t = {.listener = listener, .acceptor_res = 1};
            t.lfd = listen_loopback(&t.addr, (int)PAIRS);
            cr_assert_eq(urt_spawn(rt, NULL, acceptor, &t), 0);
            int *cl = malloc(PAIRS * sizeof(*cl));
            cr_assert_not_null(cl);
            struct timeval tv = {.tv_sec = 10};
            for (unsigned i = 0; i < PAIRS; i++) {
                cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                cr_assert_geq(cl[i], 0, "%s: socket %u: %s", who, i, strerror(errno));
                setsockopt(cl[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
                cr_assert_eq(connect(cl[i], (struct sockaddr *)&t.addr, sizeof(t.addr)), 0, "%s: connect %u: %s", who,
                             i, strerror(errno));
            }
            wait_all_waiting(rt, &t, PAIRS, who);
            for (int i = 0; i < 1000 && atomic_load(&t.accepted) < PAIRS; i++)
                usleep(1000);
            cr_assert_eq(atomic_load(&t.accepted), PAIRS);

            uint64_t t0 = urt_now();
            int r = urt_runtime_shutdown(rt, 0);
            uint64_t took = urt_now() - t0;
            cr_assert_eq(r, 0, "%s: urt_runtime_shutdown gave %d", who, r);
            cr_log_info("%s: shutdown with %u connections took %llu ms", who, PAIRS,
                        (unsigned long long)(took / MS));
            check_ended(&t, PAIRS, false, who);
            /* each server end is closed: its peer reads the end of the stream */
            for (unsigned i = 0; i < PAIRS; i++) {
                char b;
                cr_assert_eq(recv_nointr(cl[i], &b, 1, 0), 0, "%s: connection %u is still open on the server side", who, i);
                close(cl[i]);
            }
            free(cl);
            close(t.lfd);
            urt_runtime_destroy(rt);
            cr_assert_eq(count_fds(), fds_before, "%s: %d descriptors before, %d after", who, fds_before, count_fds());
        }
    }
}

Test(net_shutdown, shutdown_after_a_grace_period_with_both_ends_of_thousands_of_connections_in_tasks_returns_0,
     .timeout = 120)
{
    raise_nofile(2 * PAIRS + 256);
    for (int listener = 0; listener < 2; listener++) {
        FOR_EACH_WORKER_COUNT(w) {
            char who[64];
            snprintf(who, sizeof(who), "%s, %u workers", listener ? "urt_listener" : "urt_accept", w);
            int fds_before = count_fds();
            urt_runtime *rt = rt_new(w);
            tally t = {.listener = listener, .acceptor_res = 1};
            t.lfd = listen_loopback(&t.addr, (int)PAIRS);
            cr_assert_eq(urt_spawn(rt, NULL, acceptor, &t), 0);
            for (unsigned i = 0; i < PAIRS; i++)
                cr_assert_eq(urt_spawn(rt, NULL, client_waiter, &t), 0);
            wait_all_waiting(rt, &t, 2 * PAIRS, who);
            for (int i = 0; i < 1000 && atomic_load(&t.accepted) < PAIRS; i++)
                usleep(1000);
            cr_assert_eq(atomic_load(&t.accepted), PAIRS);

            uint64_t t0 = urt_now();
            int r = urt_runtime_shutdown(rt, 20 * MS);
            uint64_t took = urt_now() - t0;
            cr_assert_eq(r, 0, "%s: urt_runtime_shutdown gave %d", who, r);
            cr_assert_geq(took, 20 * MS, "%s: shutdown did not wait for the grace period", who);
            cr_log_info("%s: shutdown with %u connections, both ends in tasks, took %llu ms", who, PAIRS,
                        (unsigned long long)(took / MS));
            check_ended(&t, 2 * PAIRS, true, who);
            close(t.lfd);
            urt_runtime_destroy(rt);
            cr_assert_eq(count_fds(), fds_before, "%s: %d descriptors before, %d after", who, fds_before, count_fds());
        }
    }
}
