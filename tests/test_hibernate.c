/*
 * test_hibernate.c - a task that waits long in a pooled receive or a
 * listener accept has its stack hibernated (pages given back, live frames
 * kept on the heap) and resumes with every byte of its stack as it was;
 * waits whose wake path may write the stack, and tasks that opt out, are
 * never hibernated; the list of waits, kept lazily, still finds a
 * connection that talked often and then idles, and forgets tasks that end.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_hib.h"
#include "tests/support/urt_test.h"



static inline void at_fadd_relaxed_u(_Atomic unsigned *p, unsigned v) { __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
static inline unsigned at_load_relaxed_u(_Atomic unsigned *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
#define DEEP 16384   /* bytes of stack each waiter fills with its pattern */

typedef struct waiter {
    int fd;
    unsigned seed;
    uint64_t flags;
    bool use_timeout;
    char *deep_lo, *deep_hi;   /* the pattern's range on its stack (atomic: read by the test thread) */
    ssize_t got;
    char byte;
    bool intact;
} waiter;

/* Fill DEEP bytes of this frame with a pattern, wait in urt_rx_recv, check
 * the pattern after the wake. noinline: the array is a live frame. */
__attribute__((noinline)) static void wait_with_pattern(waiter *wt)
{
    volatile char deep[DEEP];
    for (size_t i = 0; i < DEEP; i++)
        deep[i] = (char)(i * 7 + wt->seed);
    __atomic_store_n(&wt->deep_hi, (char *)deep + DEEP, __ATOMIC_RELEASE);
    __atomic_store_n(&wt->deep_lo, (char *)deep, __ATOMIC_RELEASE);
    urt_rx *rx = NULL;
    if (urt_rx_open(&rx, wt->fd) != 0) {
        wt->got = -999;
        return;
    }
    if (wt->use_timeout)
        urt_op_timeout(10000 * MS);
    urt_buf b;
    wt->got = urt_rx_recv(rx, &b);
    if (wt->got > 0) {
        wt->byte = *(char *)b.data;
        urt_buf_release(&b);
    }
    urt_rx_close(rx);
    bool ok = true;
    for (size_t i = 0; i < DEEP; i++)
        ok &= deep[i] == (char)(i * 7 + wt->seed);
    wt->intact = ok;
}

static void *rx_waiter(void *arg)
{
    wait_with_pattern(arg);
    return NULL;
}

Test(hibernate, an_idle_pooled_receive_gives_its_pages_back_and_resumes_intact, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(nw) {
        urt_runtime *rt = rt_hib(nw, 20 * MS);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        waiter wt = {.fd = sv[0], .seed = 3};
        urt_task *t;
        cr_assert_eq(urt_spawn(rt, &t, rx_waiter, &wt), 0);
        await_waiting(rt, t, "rx");
        cr_assert(await_hibernated(rt, 1), "%u workers: the waiting task was never hibernated", nw);
        size_t res = resident_pages(__atomic_load_n(&wt.deep_lo, __ATOMIC_ACQUIRE),
                                    __atomic_load_n(&wt.deep_hi, __ATOMIC_ACQUIRE));
        cr_assert_leq(res, 1, "%zu of the pattern's pages are still resident after hibernation", res);
        cr_assert_eq(send(sv[1], "k", 1, 0), 1);
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(wt.got, 1);
        cr_assert_eq(wt.byte, 'k');
        cr_assert(wt.intact, "the stack's contents changed across hibernation");
        cr_assert_eq(stat_sum(rt, 0), 0, "no task is left hibernated");
        cr_assert_geq(stat_sum(rt, 2), 1, "the wake restored the stack");
        close(sv[0]);
        close(sv[1]);
        urt_runtime_destroy(rt);
    }
}

Test(hibernate, a_thousand_hibernated_receivers_each_wake_once_with_their_own_stack, .timeout = 120)
{
#if defined(URT_TSAN) || defined(URT_ASAN)
    enum { N = 200 };
#else
    enum { N = 1000 };
#endif
    urt_runtime *rt = rt_hib(2, 20 * MS);
    static int sv[N][2];
    static waiter wt[N];
    static urt_task *t[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        wt[i] = (waiter){.fd = sv[i][0], .seed = (unsigned)i};
        cr_assert_eq(urt_spawn(rt, &t[i], rx_waiter, &wt[i]), 0);
    }
    cr_assert(await_hibernated(rt, N), "only %llu of %d hibernated", (unsigned long long)stat_sum(rt, 0), N);
    for (int i = 0; i < N; i++) {
        char c = (char)('a' + i % 26);
        cr_assert_eq(send(sv[i][1], &c, 1, 0), 1);
    }
    for (int i = 0; i < N; i++) {
        cr_assert_eq(urt_join(t[i], NULL), 0);
        cr_assert_eq(wt[i].got, 1, "task %d got %zd", i, wt[i].got);
        cr_assert_eq(wt[i].byte, (char)('a' + i % 26), "task %d got another task's byte", i);
        cr_assert(wt[i].intact, "task %d's stack changed", i);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    cr_assert_eq(stat_sum(rt, 1), stat_sum(rt, 2), "every hibernation was restored");
    urt_runtime_destroy(rt);
}

Test(hibernate, a_cancelled_hibernated_task_resumes_and_ends, .timeout = 60)
{
    urt_runtime *rt = rt_hib(2, 20 * MS);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    waiter wt = {.fd = sv[0], .seed = 9};
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, rx_waiter, &wt), 0);
    cr_assert(await_hibernated(rt, 1));
    cr_assert_eq(urt_cancel(t), 0);
    cr_assert_eq(urt_join(t, NULL), -ECANCELED);
    cr_assert_eq(wt.got, -ECANCELED);
    cr_assert(wt.intact);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

Test(hibernate, a_pooled_receive_with_a_time_bound_hibernates_and_gets_its_byte, .timeout = 60)
{
    urt_runtime *rt = rt_hib(2, 20 * MS);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    waiter wt = {.fd = sv[0], .seed = 5, .use_timeout = true};   /* its timer record is t->timer */
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, rx_waiter, &wt), 0);
    cr_assert(await_hibernated(rt, 1), "a timed pooled receive was never hibernated");
    cr_assert_eq(send(sv[1], "q", 1, 0), 1);
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_eq(wt.got, 1);
    cr_assert_eq(wt.byte, 'q');
    cr_assert(wt.intact);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

typedef struct timed_rx {
    int fd;
    ssize_t got;
    uint64_t waited;
} timed_rx;

static void *rx_times_out(void *arg)
{
    timed_rx *x = arg;
    urt_rx *rx;
    if (urt_rx_open(&rx, x->fd) != 0) {
        x->got = -999;
        return NULL;
    }
    urt_op_timeout(1500 * MS);
    uint64_t t0 = urt_now();
    urt_buf b;
    x->got = urt_rx_recv(rx, &b);
    x->waited = urt_now() - t0;
    if (x->got > 0)
        urt_buf_release(&b);
    urt_rx_close(rx);
    return NULL;
}

Test(hibernate, an_op_timeout_firing_while_hibernated_ends_the_receive, .timeout = 60)
{
    urt_runtime *rt = rt_hib(1, 20 * MS);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    timed_rx x = {.fd = sv[0]};
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, rx_times_out, &x), 0);
    cr_assert(await_hibernated_poked(rt, 1, 10000), "the timed receive was never hibernated");
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_eq(x.got, -ETIMEDOUT, "got %zd", x.got);
    cr_assert_geq(x.waited, 1500 * MS, "the timeout fired early: %llu ns", (unsigned long long)x.waited);
    cr_assert_geq(stat_sum(rt, 2), 1, "the timer's wake restored the stack");
    cr_assert_eq(stat_sum(rt, 0), 0);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

/* ---- waits and tasks that must not hibernate -------------------------------------------- */

static void *notify_waiter(void *arg)
{
    urt_notify_wait(arg);
    return NULL;
}

Test(hibernate, sync_waits_and_opted_out_or_migratable_tasks_keep_their_stacks, .timeout = 60)
{
    urt_runtime *rt = rt_hib(2, 10 * MS);
    int sv[2][2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
    waiter optout = {.fd = sv[0][0]};
    waiter migr = {.fd = sv[1][0]};
    urt_task *t[3];
    urt_spawn_opts no = {.flags = URT_TASK_NO_HIBERNATE}, mg = {.flags = URT_TASK_MIGRATABLE};
    urt_notify *n;
    cr_assert_eq(urt_notify_create(&n), 0);
    cr_assert_eq(urt_spawn_ex(rt, &t[0], rx_waiter, &optout, &no), 0);
    cr_assert_eq(urt_spawn_ex(rt, &t[1], rx_waiter, &migr, &mg), 0);
    cr_assert_eq(urt_spawn(rt, &t[2], notify_waiter, n), 0);   /* its waiter node is on its stack */
    for (int i = 0; i < 2; i++)
        await_waiting(rt, t[i], "rx");
    await_waiting(rt, t[2], "notify");
    usleep(1500 * 1000);   /* 150 thresholds; an idle worker scans at least once a second */
    cr_assert_eq(stat_sum(rt, 1), 0, "a wait that may write its stack, or an opted-out task, was hibernated");
    for (int i = 0; i < 2; i++)
        cr_assert_eq(send(sv[i][1], "x", 1, 0), 1);
    urt_notify_signal(n);
    for (int i = 0; i < 3; i++)
        urt_join(t[i], NULL);
    cr_assert(optout.intact && migr.intact);
    urt_notify_destroy(n);
    for (int i = 0; i < 2; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    urt_runtime_destroy(rt);
}

Test(hibernate, never_means_never, .timeout = 30)
{
    urt_runtime *rt = rt_hib(1, URT_HIBERNATE_NEVER);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    waiter wt = {.fd = sv[0]};
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, rx_waiter, &wt), 0);
    await_waiting(rt, t, "rx");
    usleep(1300 * 1000);
    cr_assert_eq(stat_sum(rt, 1), 0);
    cr_assert_eq(send(sv[1], "x", 1, 0), 1);
    cr_assert_eq(urt_join(t, NULL), 0);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

/* ---- listener accept -------------------------------------------------------------------- */

typedef struct acc {
    int lfd, fd;
    bool intact;
} acc;

__attribute__((noinline)) static void accept_with_pattern(acc *a)
{
    volatile char deep[DEEP];
    for (size_t i = 0; i < DEEP; i++)
        deep[i] = (char)(i * 13);
    urt_listener *l;
    a->fd = urt_listener_open(&l, a->lfd, 0) == 0 ? urt_listener_accept(l) : -999;
    urt_listener_close(l);
    bool ok = true;
    for (size_t i = 0; i < DEEP; i++)
        ok &= deep[i] == (char)(i * 13);
    a->intact = ok;
}

static void *acceptor(void *arg)
{
    accept_with_pattern(arg);
    return NULL;
}

static void *acceptor_with_deadline(void *arg)
{
    urt_deadline(urt_now() + 30000 * MS);   /* armed as t->timer: the wait still hibernates */
    accept_with_pattern(arg);
    return NULL;
}

/* A task accepting in fn hibernates, then accepts a connection. */
static void accept_case(urt_fn fn, const char *what)
{
    urt_runtime *rt = rt_hib(2, 20 * MS);
    struct sockaddr_in a;
    int lfd = hib_listen_loopback(&a);
    acc ac = {.lfd = lfd, .fd = -1};
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, fn, &ac), 0);
    cr_assert(await_hibernated(rt, 1), "%s was never hibernated", what);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_geq(ac.fd, 0, "accept gave %d", ac.fd);
    cr_assert(ac.intact);
    close(ac.fd);
    close(c);
    close(lfd);
    urt_runtime_destroy(rt);
}

Test(hibernate, an_idle_listener_accept_hibernates_and_accepts_after_waking, .timeout = 60)
{
    accept_case(acceptor, "the accepting task");
}

Test(hibernate, a_listener_accept_with_a_deadline_hibernates_and_accepts, .timeout = 60)
{
    accept_case(acceptor_with_deadline, "the accept with a deadline");
}

/* ---- stress: hibernate and wake at random ----------------------------------------------- */

typedef struct looper {
    int fd;
    unsigned seed;
    _Atomic unsigned got;     /* bytes received */
    bool intact;
    int end;                  /* what ended the loop */
} looper;

__attribute__((noinline)) static void loop_with_pattern(looper *lp)
{
    volatile char deep[2048];
    for (size_t i = 0; i < sizeof(deep); i++)
        deep[i] = (char)(i ^ lp->seed);
    urt_rx *rx;
    if (urt_rx_open(&rx, lp->fd) != 0) {
        lp->end = -999;
        return;
    }
    for (;;) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n <= 0) {
            lp->end = (int)n;
            break;
        }
        at_fadd_relaxed_u(&lp->got, (unsigned)n);
        urt_buf_release(&b);
        if (urt_cancelled())
            break;
    }
    urt_rx_close(rx);
    bool ok = true;
    for (size_t i = 0; i < sizeof(deep); i++)
        ok &= deep[i] == (char)(i ^ lp->seed);
    lp->intact = ok;
}

static void *looper_task(void *arg)
{
    loop_with_pattern(arg);
    return NULL;
}

Test(hibernate, stress_thousands_of_tasks_hibernate_and_wake_at_random, .timeout = 300)
{
#if defined(URT_TSAN) || defined(URT_ASAN)
    enum { N = 1000, SENDS = 5000 };
#else
    enum { N = 9000, SENDS = 50000 };   /* two fds each: under a 20,000 RLIMIT_NOFILE */
#endif
    urt_runtime *rt = rt_hib(2, 1 * MS);
    static int sv[N][2];
    static looper lp[N];
    static urt_task *t[N];
    static unsigned sent[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        lp[i] = (looper){.fd = sv[i][0], .seed = (unsigned)i * 2654435761u};
        cr_assert_eq(urt_spawn(rt, &t[i], looper_task, &lp[i]), 0);
    }
    unsigned rng = 12345;
    for (int k = 0; k < SENDS; k++) {
        rng = rng * 1103515245u + 12345u;
        int i = (int)((rng >> 8) % N);
        cr_assert_eq(send(sv[i][1], "z", 1, 0), 1);
        sent[i]++;
        if ((k & 1023) == 0)
            usleep(2000);   /* let the idle ones hibernate again */
    }
    /* every byte arrives exactly once, hibernated or not */
    for (int i = 0; i < N; i++)
        for (int spin = 0; at_load_relaxed_u(&lp[i].got) < sent[i] && spin < 10000; spin++)
            usleep(500);
    uint64_t hib = stat_sum(rt, 1);
    /* a third are cancelled while (most likely) hibernated, the rest see EOF */
    for (int i = 0; i < N; i++) {
        if (i % 3 == 0)
            urt_cancel(t[i]);
        else
            shutdown(sv[i][1], SHUT_WR);
    }
    for (int i = 0; i < N; i++) {
        int r = urt_join(t[i], NULL);
        cr_assert(r == 0 || r == -ECANCELED, "task %d joined %d", i, r);
        cr_assert_eq(at_load_relaxed_u(&lp[i].got), sent[i], "task %d got %u of %u bytes", i, lp[i].got, sent[i]);
        cr_assert(lp[i].intact, "task %d's stack changed", i);
        cr_assert(i % 3 == 0 ? (lp[i].end == -ECANCELED || lp[i].end == 0) : lp[i].end == 0, "task %d ended with %d", i,
                  lp[i].end);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    cr_assert_geq(hib, (uint64_t)N / 2, "only %llu hibernations for %d tasks", (unsigned long long)hib, N);
    cr_assert_eq(stat_sum(rt, 1), stat_sum(rt, 2), "a hibernation was never restored");
    urt_runtime_destroy(rt);
}

Test(hibernate, a_shutdown_with_hibernated_tasks_ends_them_all, .timeout = 60)
{
    enum { N = 100 };
    urt_runtime *rt = rt_hib(2, 5 * MS);
    static int sv[N][2];
    static looper lp[N];
    for (int i = 0; i < N; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        lp[i] = (looper){.fd = sv[i][0], .seed = (unsigned)i};
        cr_assert_eq(urt_spawn(rt, NULL, looper_task, &lp[i]), 0);
    }
    cr_assert(await_hibernated(rt, N));
    cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(lp[i].end, -ECANCELED, "task %d ended with %d", i, lp[i].end);
        cr_assert(lp[i].intact);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    cr_assert_eq(stat_sum(rt, 0), 0);
    urt_runtime_destroy(rt);
}

/* ---- the list of waits is kept lazily -------------------------------------
 * A wait per message only stamps the task; the scan drops or re-queues stale
 * entries. A connection that talked many times and then goes idle is still
 * hibernated, and a task that waited and then ended is off the list before
 * it is freed (the scans that follow never touch it: ASan would see it). */

#define AFTER (30 * MS)   /* hibernation threshold of these runtimes */

typedef struct talker {
    int fd;
    int rounds;      /* chunks to echo before it returns */
    int echoed;      /* chunks it echoed */
    int err;         /* first failure, 0: none */
} talker;

/* Echo `rounds` one-byte chunks through a pooled receive (a hibernatable
 * wait each time), then return. */
static void *talk(void *arg)
{
    talker *tk = arg;
    urt_rx *rx = NULL;
    int r = urt_rx_open(&rx, tk->fd);
    if (r != 0) {
        tk->err = r;
        return NULL;
    }
    for (int i = 0; i < tk->rounds; i++) {
        urt_buf b;
        ssize_t n = urt_rx_recv(rx, &b);
        if (n <= 0) {
            tk->err = n ? (int)n : -EPIPE;
            break;
        }
        char c = *(char *)b.data;
        urt_buf_release(&b);
        if (urt_send(tk->fd, &c, 1, 0) != 1) {
            tk->err = -EIO;
            break;
        }
        tk->echoed++;
    }
    urt_rx_close(rx);
    return NULL;
}

/* One round trip from the test thread: a byte out, the same byte back. */
static void round_trip(int fd, char c)
{
    char back = 0;
    cr_assert_eq(send(fd, &c, 1, 0), 1);
    cr_assert_eq(recv(fd, &back, 1, 0), 1);
    cr_assert_eq(back, c);
}

Test(hibernate, a_connection_that_talked_often_and_then_idles_is_hibernated, .timeout = 60)
{
    const unsigned workers[] = {1, 2};
    for (unsigned k = 0; k < sizeof(workers) / sizeof(workers[0]); k++) {
        urt_runtime *rt = rt_hib(workers[k], AFTER);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        talker tk = {.fd = sv[0], .rounds = 41};
        urt_task *t;
        cr_assert_eq(urt_spawn(rt, &t, talk, &tk), 0);
        /* 40 waits spread over more than a threshold: the task is listed
         * once and re-stamped; scans meet it between waits */
        for (int i = 0; i < 40; i++) {
            round_trip(sv[1], (char)('a' + i % 26));
            if (i % 10 == 9)
                usleep(AFTER / 1000 / 2);
        }
        cr_assert(await_hibernated(rt, 1), "%u workers: the idle talker was never hibernated", workers[k]);
        round_trip(sv[1], 'z');   /* the 41st: restored, echoes, returns */
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(tk.err, 0, "talker failed: %d", tk.err);
        cr_assert_eq(tk.echoed, 41);
        cr_assert_eq(stat_sum(rt, 0), 0, "no task is left hibernated");
        cr_assert_eq(stat_sum(rt, 1), stat_sum(rt, 2), "every hibernation was restored");
        close(sv[0]);
        close(sv[1]);
        urt_runtime_destroy(rt);
    }
}

#define ENDED 64

Test(hibernate, tasks_that_waited_and_ended_leave_the_list, .timeout = 60)
{
    urt_runtime *rt = rt_hib(1, AFTER);
    static int sv[ENDED][2];
    static talker tk[ENDED];
    urt_task *t[ENDED];
    for (int i = 0; i < ENDED; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]), 0);
        tk[i] = (talker){.fd = sv[i][0], .rounds = 3};
        cr_assert_eq(urt_spawn(rt, &t[i], talk, &tk[i]), 0);
    }
    for (int r = 0; r < 3; r++)
        for (int i = 0; i < ENDED; i++)
            round_trip(sv[i][1], (char)('0' + r));
    for (int i = 0; i < ENDED; i++) {
        cr_assert_eq(urt_join(t[i], NULL), 0);   /* freed: each was listed by its waits */
        cr_assert_eq(tk[i].err, 0);
        cr_assert_eq(tk[i].echoed, 3);
    }
    cr_assert_eq(stat_sum(rt, 0), 0, "an ended task counts as hibernated");
    /* a slow machine may have hibernated some between their waits */
    uint64_t before = stat_sum(rt, 1);
    /* A new waiter idles past the threshold: the scans that hibernate it walk
     * the list the ended tasks were on. */
    int one[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, one), 0);
    talker idle = {.fd = one[0], .rounds = 1};
    urt_task *w;
    cr_assert_eq(urt_spawn(rt, &w, talk, &idle), 0);
    cr_assert(await_hibernated(rt, 1), "the idle waiter was never hibernated");
    usleep(3 * AFTER / 1000);   /* more scans over the list */
    cr_assert_eq(stat_sum(rt, 1) - before, 1, "only the idle waiter was hibernated, once");
    round_trip(one[1], 'q');
    cr_assert_eq(urt_join(w, NULL), 0);
    cr_assert_eq(idle.echoed, 1);
    for (int i = 0; i < ENDED; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
    close(one[0]);
    close(one[1]);
    urt_runtime_destroy(rt);
}
