/*
 * test_net_rx_fallback.c - a worker whose provided-buffer ring cannot be
 * registered falls back to plain receive: urt_rx_open and urt_rx_recv work
 * there, every byte of an echo over many connections arrives, on that
 * worker and on one whose ring was registered before; the cap still holds
 * there (-ENOBUFS after URT_RX_MAX_HELD chunks not released); and each
 * failing worker says so in one line on stderr, not one per connection.
 *
 * The failure is a real one: the registration pins the ring's pages, which
 * the kernel charges to RLIMIT_MEMLOCK for a user without CAP_IPC_LOCK. A
 * forked child becomes such a user (root: setuid to nobody), creates the
 * runtime while the limit still lets it create its rings, then lowers the
 * limit to 0 and serves; its stderr goes to a pipe that the test reads.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"
#include "tests/support/net_test.h"

#if defined(URT_ASAN)
int __lsan_do_recoverable_leak_check(void);
#endif

#if defined(URT_TSAN)
#define SAN_DIV 4
#else
#define SAN_DIV 1
#endif

#define MS  (1000ull * 1000)
#define SEC (1000ull * MS)

#define CONNS      (40 / SAN_DIV)
#define CONN_BYTES ((size_t)48 << 10)
#define BUF_SIZE   512
#define NOBODY     65534

/* What the child found, in memory shared with the parent. */
typedef struct outcome {
    int stage;                  /* how far it got */
    char msg[512];              /* why it stopped, when it did */
    bool skipped;
    int preregistered;          /* worker whose ring was registered before the limit; -1 none */
    unsigned served[8];         /* connections per worker */
    unsigned plain_held;        /* chunks held before -ENOBUFS on a fallback worker */
    ssize_t plain_held_end;
} outcome;

static outcome *out;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->msg, sizeof(out->msg), fmt, ap);
    va_end(ap);
    _exit(1);
}

static uint8_t pattern(uint32_t conn, uint64_t off)
{
    uint32_t x = (uint32_t)off * 2654435761u ^ (conn + 1u) * 40503u;
    return (uint8_t)((x >> 24) ^ (x >> 11));
}

/* ---- the server: one task per connection, echoing through urt_rx ---------------------------------------- */

typedef struct server {
    int lfd;
    struct sockaddr_in addr;
    unsigned expect;
    atomic_int err;
    atomic_uint served[8];
} server;

typedef struct conn_arg {
    server *s;
    int fd;
} conn_arg;

static void *echo_conn(void *arg)
{
    conn_arg *a = arg;
    urt_op_timeout(20 * SEC);
    int wid = urt_worker_id();
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, a->fd);
    if (r != 0) {
        atomic_store(&a->s->err, r);
        urt_close(a->fd);
        return NULL;
    }
    for (;;) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n <= 0) {
            if (n < 0)
                atomic_store(&a->s->err, (int)n);
            break;
        }
        ssize_t sent = urt_send_all(a->fd, b.data, b.len, 0);
        urt_buf_release(&b);
        if (sent < 0) {
            atomic_store(&a->s->err, (int)sent);
            break;
        }
    }
    if (wid >= 0 && wid < 8)
        atomic_fetch_add(&a->s->served[wid], 1);
    urt_rx_close(rx);
    urt_close(a->fd);
    return NULL;
}

static void *acceptor(void *arg)
{
    server *s = arg;
    urt_listener *l = NULL;
    int r = urt_listener_open(&l, s->lfd, SOCK_CLOEXEC);
    if (r != 0) {
        atomic_store(&s->err, r);
        return NULL;
    }
    conn_arg args[CONNS];
    urt_task *tasks[CONNS];
    urt_spawn_opts o = {.name = "echo", .flags = URT_TASK_SPREAD};
    unsigned n = 0;
    while (n < s->expect) {
        int fd = urt_listener_accept(l);
        if (fd < 0) {
            atomic_store(&s->err, fd);
            break;
        }
        args[n] = (conn_arg){.s = s, .fd = fd};
        r = urt_spawn_ex(NULL, &tasks[n], echo_conn, &args[n], &o);
        if (r != 0) {
            atomic_store(&s->err, r);
            close(fd);
            break;
        }
        n++;
    }
    for (unsigned i = 0; i < n; i++)
        urt_join(tasks[i], NULL);
    urt_listener_close(l);
    return NULL;
}

/* ---- the clients: plain threads, one connection each, send a piece, read its echo --------------------------- */

typedef struct client {
    const server *s;
    uint32_t id;
    char err[160];
} client;

static void *client_run(void *arg)
{
    client *c = arg;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(c->err, sizeof(c->err), "socket: %s", strerror(errno));
        return NULL;
    }
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect_nointr(fd, (const struct sockaddr *)&c->s->addr, sizeof(c->s->addr)) != 0) {
        snprintf(c->err, sizeof(c->err), "connect: %s", strerror(errno));
        close(fd);
        return NULL;
    }
    uint8_t out_buf[3000], in_buf[3000];
    uint64_t off = 0;
    while (off < CONN_BYTES) {
        size_t want = 1 + (off * 7919u + c->id * 131u) % sizeof(out_buf);
        if (want > CONN_BYTES - off)
            want = CONN_BYTES - off;
        for (size_t k = 0; k < want; k++)
            out_buf[k] = pattern(c->id, off + k);
        if (send_nointr(fd, out_buf, want, MSG_NOSIGNAL) != (ssize_t)want) {
            snprintf(c->err, sizeof(c->err), "send at %llu: %s", (unsigned long long)off, strerror(errno));
            break;
        }
        size_t got = 0;
        while (got < want) {
            ssize_t r = recv_nointr(fd, in_buf + got, want - got, 0);
            if (r <= 0) {
                snprintf(c->err, sizeof(c->err), "echo of byte %llu: %s", (unsigned long long)(off + got),
                         r < 0 ? strerror(errno) : "connection closed");
                close(fd);
                return NULL;
            }
            got += (size_t)r;
        }
        if (memcmp(in_buf, out_buf, want) != 0) {
            snprintf(c->err, sizeof(c->err), "the echo of bytes %llu..%llu differs", (unsigned long long)off,
                     (unsigned long long)(off + want));
            break;
        }
        off += want;
    }
    shutdown(fd, SHUT_WR);
    char tail;
    if (!c->err[0] && recv_nointr(fd, &tail, 1, 0) != 0)
        snprintf(c->err, sizeof(c->err), "no end of stream after the echo");
    close(fd);
    return NULL;
}

/* ---- in a task: what the worker does with urt_rx ------------------------------------------------------------ */

/* Open (and close) a urt_rx on the task's worker: that sets up its pool. */
static void *touch_pool(void *arg)
{
    int *wid = arg;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return (void *)(intptr_t)-errno;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, sv[0]);
    *wid = urt_worker_id();
    if (r == 0)
        urt_rx_close(rx);
    close(sv[0]);
    close(sv[1]);
    return (void *)(intptr_t)r;
}

/* On a fallback worker: chunks not released count against the cap too. */
static void *hold_until_enobufs(void *arg)
{
    (void)arg;
    urt_op_timeout(10 * SEC);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return NULL;
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, sv[0]) != 0)
        return NULL;
    urt_buf held[URT_RX_MAX_HELD + 2];
    ssize_t n = 0;
    char data[BUF_SIZE];
    memset(data, 'x', sizeof(data));
    while (out->plain_held < URT_RX_MAX_HELD + 2) {
        if (send(sv[1], data, sizeof(data), MSG_DONTWAIT) != (ssize_t)sizeof(data))
            break;
        n = urt_rx_recv(rx, &held[out->plain_held]);
        if (n <= 0)
            break;
        out->plain_held++;
    }
    out->plain_held_end = n;
    for (unsigned i = 0; i < out->plain_held; i++)
        urt_buf_release(&held[i]);
    urt_rx_close(rx);
    close(sv[0]);
    close(sv[1]);
    return NULL;
}

/* ---- the child ---------------------------------------------------------------------------------------------- */

static void child(unsigned workers, bool preregister, bool full_stderr)
{
    alarm(100);   /* never outlive the test */
    out->preregistered = -1;
    /* a limit that still lets the workers create their rings (a 256-entry
     * ring costs about 28 KiB of it) */
    struct rlimit rl;
    if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        fail("getrlimit: %s", strerror(errno));
    if (rl.rlim_cur < (1u << 20) && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_MEMLOCK, &rl);
    }
    if (geteuid() == 0) {
        /* root has CAP_IPC_LOCK: nothing is charged. Become nobody. */
        if (setgroups(0, NULL) != 0 || setgid(NOBODY) != 0 || setuid(NOBODY) != 0) {
            out->skipped = true;
            fail("cannot become uid %d: %s", NOBODY, strerror(errno));
        }
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);   /* LeakSanitizer needs to ptrace us */
    }
    out->stage = 1;
    urt_config cfg = {.workers = workers, .rx_buffers = 64, .rx_buffer_size = BUF_SIZE};
    urt_runtime *rt = NULL;
    int r = urt_runtime_create(&rt, &cfg);
    if (r != 0) {
        out->skipped = r == -ENOSYS || r == -EPERM;
        fail("urt_runtime_create: %s", strerror(-r));
    }
    out->stage = 2;
    if (preregister) {
        int wid = -1;
        void *ret = NULL;
        r = urt_runtime_block_on(rt, touch_pool, &wid, &ret);
        if (r != 0 || ret != NULL)
            fail("urt_rx_open before the limit was lowered gave %d (block_on %d)", (int)(intptr_t)ret, r);
        out->preregistered = wid;
    }
    /* from now on no buffer ring can be registered */
    rl.rlim_cur = rl.rlim_max = 0;
    if (setrlimit(RLIMIT_MEMLOCK, &rl) != 0)
        fail("setrlimit(RLIMIT_MEMLOCK, 0): %s", strerror(errno));
    out->stage = 3;

    server s;
    memset(&s, 0, sizeof(s));
    s.expect = CONNS;
    s.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int one = 1;
    setsockopt(s.lfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    socklen_t alen = sizeof(s.addr);
    if (s.lfd < 0 || bind(s.lfd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(s.lfd, 128) != 0 ||
        getsockname(s.lfd, (struct sockaddr *)&s.addr, &alen) != 0)
        fail("listening socket: %s", strerror(errno));
    urt_task *acc = NULL;
    if ((r = urt_spawn(rt, &acc, acceptor, &s)) != 0)
        fail("urt_spawn: %s", strerror(-r));
    client cs[CONNS];
    pthread_t th[CONNS];
    for (unsigned i = 0; i < CONNS; i++) {
        cs[i] = (client){.s = &s, .id = i};
        if (pthread_create(&th[i], NULL, client_run, &cs[i]) != 0)
            fail("pthread_create: %s", strerror(errno));
    }
    for (unsigned i = 0; i < CONNS; i++)
        pthread_join(th[i], NULL);
    out->stage = 4;
    for (unsigned i = 0; i < CONNS; i++)
        if (cs[i].err[0])
            fail("client %u: %s", i, cs[i].err);
    if ((r = urt_join(acc, NULL)) != 0)
        fail("join of the acceptor: %s", strerror(-r));
    if (atomic_load(&s.err) != 0)
        fail("the server: %s", strerror(-atomic_load(&s.err)));
    for (unsigned i = 0; i < 8; i++)
        out->served[i] = atomic_load(&s.served[i]);
    close(s.lfd);
    out->stage = 5;

    /* the cap, on a worker that falls back (any worker, when none was registered before) */
    if (!preregister) {
        if ((r = urt_runtime_block_on(rt, hold_until_enobufs, NULL, NULL)) != 0)
            fail("block_on: %s", strerror(-r));
    }
    urt_runtime_destroy(rt);
    out->stage = 6;
#if defined(URT_ASAN)
    /* not with a full stderr: LeakSanitizer's own notes (it cannot stop the
     * kernel's io-wq threads) would wait for it forever */
    if (!full_stderr && __lsan_do_recoverable_leak_check())
        fail("LeakSanitizer found leaks (see stderr)");
#endif
    _exit(0);   /* not exit(): the test runner's atexit handlers are the parent's */
}

/* ---- the test --------------------------------------------------------------------------------------------- */

static unsigned count_lines(const char *text, const char *needle)
{
    unsigned n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* full_stderr: the child's stderr is a pipe that is full and that nobody
 * reads until the child has exited; the line must not block the worker. */
static void run(unsigned workers, bool preregister, bool full_stderr)
{
    out = mmap(NULL, sizeof(*out), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(out, MAP_FAILED);
    memset(out, 0, sizeof(*out));
    int errp[2];
    cr_assert_eq(pipe(errp), 0);
    if (full_stderr) {
        cr_assert_eq(fcntl(errp[1], F_SETFL, O_NONBLOCK), 0);
        char fill[4096];
        memset(fill, '.', sizeof(fill));
        while (write(errp[1], fill, sizeof(fill)) > 0)
            ;
        cr_assert_eq(fcntl(errp[1], F_SETFL, 0), 0);   /* a full, blocking pipe, as a shell makes it */
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        close(errp[0]);
        dup2(errp[1], STDERR_FILENO);
        close(errp[1]);
        child(workers, preregister, full_stderr);
    }
    close(errp[1]);
    int st = 0;
    if (full_stderr) {
        pid_t done = 0;
        for (int i = 0; i < 60 * 100 && done == 0; i++) {
            done = waitpid(pid, &st, WNOHANG);
            if (done == 0)
                usleep(10000);
        }
        if (done == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
        }
        cr_assert_neq(done, 0, "%u workers: with stderr a full pipe the child did not finish in 60 s (stage %d)",
                      workers, out->stage);
    }
    size_t cap = 1 << 16, len = 0;
    char *text = malloc(cap + 1);
    cr_assert_not_null(text);
    for (;;) {
        if (len == cap) {
            cap *= 2;
            text = realloc(text, cap + 1);
            cr_assert_not_null(text);
        }
        ssize_t r = read(errp[0], text + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    text[len] = 0;
    close(errp[0]);
    while (!full_stderr && waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (out->skipped)
        cr_skip_test("%s", out->msg);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "%u workers: the child %s %d at stage %d: %s\nits stderr:\n%s", workers,
              WIFEXITED(st) ? "exited with" : "died of signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st),
              out->stage, out->msg, text);

    cr_assert(!strstr(text, "WARNING: ThreadSanitizer") && !strstr(text, "ERROR: AddressSanitizer") &&
                  !strstr(text, "runtime error:"),
              "%u workers: a sanitizer reported in the child:\n%s", workers, text);

    /* one line per worker that fell back, whatever the number of connections
     * (none came through a full pipe: they were dropped) */
    for (unsigned w = 0; w < workers && !full_stderr; w++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "urt: worker %u: cannot register", w);
        unsigned want = (int)w == out->preregistered ? 0 : 1;
        cr_assert_eq(count_lines(text, needle), want, "%u workers: worker %u said it falls back %u times, not %u:\n%s",
                     workers, w, count_lines(text, needle), want, text);
    }
    for (unsigned w = 0; w < workers; w++)
        cr_assert_gt(out->served[w], 0, "%u workers: worker %u served no connection (%u in all)", workers, w, CONNS);
    if (!full_stderr)
        cr_assert_eq(count_lines(text, "falls back to plain recv"), workers - (out->preregistered >= 0),
                     "%u workers: stderr:\n%s", workers, text);
    if (!preregister) {
        cr_assert_eq(out->plain_held, URT_RX_MAX_HELD, "%u workers: a fallback urt_rx handed out %u chunks unreleased",
                     workers, out->plain_held);
        cr_assert_eq(out->plain_held_end, -ENOBUFS, "%u workers: then urt_rx_recv gave %zd, not -ENOBUFS", workers,
                     out->plain_held_end);
    }
    free(text);
    munmap(out, sizeof(*out));
}

Test(net_rx_fallback, a_worker_without_a_buffer_ring_receives_with_plain_recv_and_loses_no_byte, .timeout = 120)
{
    run(1, false, false);
    run(2, false, false);
}

Test(net_rx_fallback, one_worker_falls_back_while_the_other_keeps_its_ring_and_both_echo_every_byte, .timeout = 120)
{
    run(2, true, false);
}

Test(net_rx_fallback, the_fallback_line_never_blocks_a_worker_whose_stderr_is_a_full_pipe, .timeout = 120)
{
    run(2, false, true);
}
