/*
 * test_hibernate_waits.c - every kind of wait whose waker writes only the
 * task header hibernates (sleeps, intervals, urt_poll, one-shot receives,
 * reads and accepts into memory off the task's stack) and resumes with its
 * result and its stack intact; a receive into a buffer on the task's stack
 * never hibernates. Wakes that race a hibernated task: its CQE, a cancel
 * from another thread, a deadline, a shutdown. A stress of 10,000 tasks
 * hibernating and waking at random, and 100,000 live hibernated tasks that
 * stay far below vm.max_map_count and cost little resident memory.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_hib.h"
#include "tests/support/urt_test.h"

#define DEEP 4096   /* bytes of stack each waiter fills with its pattern */

enum kind {
    K_SLEEP,
    K_SLEEP_UNTIL,
    K_TICK,
    K_POLL,
    K_RECV_HEAP,
    K_RECV_STACK,
    K_READ_HEAP,
    K_RECVFROM_HEAP,
    K_ACCEPT,
    K_SEND_HEAP,
};

typedef struct job {
    enum kind kind;
    int fd;
    uint64_t ns;          /* how long a sleep or a tick waits */
    uint64_t deadline;    /* urt_deadline set first (absolute), 0: none */
    char *heap;           /* a buffer off the task's stack */
    size_t len;           /* K_SEND_HEAP: bytes of heap to send */
    struct sockaddr_un *from;
    socklen_t fromlen;
    int res;              /* the call's result (or revents) */
    char got[8];
    uint64_t waited;
    bool intact;
} job;

__attribute__((noinline)) static void wait_one(job *j)
{
    volatile char deep[DEEP];
    for (size_t i = 0; i < DEEP; i++)
        deep[i] = (char)(i * 31 + j->kind);
    char local[8] = {0};   /* on the task's stack */
    if (j->deadline)
        urt_deadline(j->deadline);
    uint64_t t0 = urt_now();
    switch (j->kind) {
    case K_SLEEP:
        j->res = urt_sleep(j->ns);
        break;
    case K_SLEEP_UNTIL:
        j->res = urt_sleep_until(t0 + j->ns);
        break;
    case K_TICK: {
        urt_interval iv;
        urt_interval_init(&iv, j->ns);
        j->res = urt_interval_tick(&iv);
        break;
    }
    case K_POLL:
        j->res = urt_poll(j->fd, POLLIN);
        break;
    case K_RECV_HEAP:
        j->res = (int)urt_recv(j->fd, j->heap, 8, 0);
        memcpy(j->got, j->heap, 8);
        break;
    case K_RECV_STACK:
        j->res = (int)urt_recv(j->fd, local, sizeof(local), 0);
        memcpy(j->got, local, 8);
        break;
    case K_READ_HEAP:
        j->res = (int)urt_read(j->fd, j->heap, 8, -1);
        memcpy(j->got, j->heap, 8);
        break;
    case K_RECVFROM_HEAP:
        j->fromlen = sizeof(*j->from);
        j->res = (int)urt_recvfrom(j->fd, j->heap, 8, 0, (struct sockaddr *)j->from, &j->fromlen);
        memcpy(j->got, j->heap, 8);
        break;
    case K_ACCEPT:
        j->res = urt_accept(j->fd, NULL, NULL, SOCK_CLOEXEC);
        break;
    case K_SEND_HEAP:
        __atomic_store_n(&j->res, (int)urt_send(j->fd, j->heap, j->len, 0), __ATOMIC_RELEASE);   /* read by the test */
        break;
    }
    j->waited = urt_now() - t0;
    bool ok = true;
    for (size_t i = 0; i < DEEP; i++)
        ok &= deep[i] == (char)(i * 31 + j->kind);
    j->intact = ok;
}

static void *waiter_task(void *arg)
{
    wait_one(arg);
    return NULL;
}

/* One worker, a 20 ms threshold. */
static urt_runtime *rt_one(void) { return rt_hib(1, 20 * MS); }

/* Spawn a job and wait until it is hibernated. */
static urt_task *spawn_hibernated(urt_runtime *rt, job *j, const char *what)
{
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, waiter_task, j), 0);
    cr_assert(await_hibernated_poked(rt, 1, 10000), "a %s wait was never hibernated", what);
    return t;
}

/* The job has woken and its stack came back whole. */
static void joined_restored(urt_runtime *rt, urt_task *t, job *j)
{
    int r = urt_join(t, NULL);
    cr_assert(r == 0 || r == -ECANCELED, "join gave %d", r);
    cr_assert(j->intact, "the stack changed across hibernation");
    cr_assert_geq(stat_sum(rt, 2), 1, "the wake restored the stack");
    cr_assert_eq(stat_sum(rt, 0), 0, "no task is left hibernated");
}

/* ---- one per kind of wait ------------------------------------------------------------- */

static void sleep_kind(enum kind k, const char *what)
{
    urt_runtime *rt = rt_one();
    job j = {.kind = k, .ns = 1500 * MS};
    urt_task *t = spawn_hibernated(rt, &j, what);
    joined_restored(rt, t, &j);
    cr_assert_geq(j.res, 0, "%s gave %d", what, j.res);
    cr_assert_geq(j.waited, 1500 * MS, "%s ended early: after %llu ns", what, (unsigned long long)j.waited);
    cr_assert_lt(j.waited, 30000 * MS, "%s ended far too late", what);
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_sleep_hibernates_and_ends_on_time, .timeout = 60) { sleep_kind(K_SLEEP, "urt_sleep"); }

Test(hibernate_waits, a_sleep_until_hibernates_and_ends_on_time, .timeout = 60)
{
    sleep_kind(K_SLEEP_UNTIL, "urt_sleep_until");
}

Test(hibernate_waits, an_interval_tick_hibernates_and_ticks_on_time, .timeout = 60)
{
    sleep_kind(K_TICK, "urt_interval_tick");
}

Test(hibernate_waits, a_poll_hibernates_and_reports_readiness, .timeout = 60)
{
    urt_runtime *rt = rt_one();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    job j = {.kind = K_POLL, .fd = sv[0]};
    urt_task *t = spawn_hibernated(rt, &j, "urt_poll");
    cr_assert_eq(send(sv[1], "p", 1, 0), 1);
    joined_restored(rt, t, &j);
    cr_assert(j.res > 0 && (j.res & POLLIN), "urt_poll gave %d", j.res);
    char c;
    cr_assert_eq(recv(sv[0], &c, 1, 0), 1, "the byte is still there to read");
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

static void recv_into_heap(enum kind k, const char *what, bool pipe_fd)
{
    urt_runtime *rt = rt_one();
    int sv[2];
    if (pipe_fd)
        cr_assert_eq(pipe(sv), 0);
    else
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    job j = {.kind = k, .fd = sv[0], .heap = calloc(1, 8)};
    cr_assert_not_null(j.heap);
    urt_task *t = spawn_hibernated(rt, &j, what);
    cr_assert_eq(write(sv[1], "hello", 5), 5);
    joined_restored(rt, t, &j);
    cr_assert_eq(j.res, 5, "%s gave %d", what, j.res);
    cr_assert_eq(memcmp(j.got, "hello", 5), 0, "%s got the wrong bytes", what);
    free(j.heap);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_recv_into_a_heap_buffer_hibernates_and_gets_its_bytes, .timeout = 60)
{
    recv_into_heap(K_RECV_HEAP, "urt_recv", false);
}

Test(hibernate_waits, a_read_into_a_heap_buffer_hibernates_and_gets_its_bytes, .timeout = 60)
{
    recv_into_heap(K_READ_HEAP, "urt_read", true);
}

Test(hibernate_waits, a_recvfrom_into_heap_memory_hibernates_and_gets_bytes_and_address, .timeout = 60)
{
    urt_runtime *rt = rt_one();
    char path[2][108];
    int fd[2];
    struct sockaddr_un a[2];
    for (int i = 0; i < 2; i++) {
        snprintf(path[i], sizeof(path[i]), "/tmp/urt-hib-%d-%d", (int)getpid(), i);
        unlink(path[i]);
        fd[i] = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        cr_assert_geq(fd[i], 0);
        memset(&a[i], 0, sizeof(a[i]));
        a[i].sun_family = AF_UNIX;
        strcpy(a[i].sun_path, path[i]);
        cr_assert_eq(bind(fd[i], (struct sockaddr *)&a[i], sizeof(a[i])), 0);
    }
    job j = {.kind = K_RECVFROM_HEAP, .fd = fd[0], .heap = calloc(1, 8), .from = calloc(1, sizeof(struct sockaddr_un))};
    urt_task *t = spawn_hibernated(rt, &j, "urt_recvfrom");
    cr_assert_eq(sendto(fd[1], "dgram", 5, 0, (struct sockaddr *)&a[0], sizeof(a[0])), 5);
    joined_restored(rt, t, &j);
    cr_assert_eq(j.res, 5, "urt_recvfrom gave %d", j.res);
    cr_assert_eq(memcmp(j.got, "dgram", 5), 0);
    cr_assert_str_eq(j.from->sun_path, path[1], "the sender's address");
    free(j.heap);
    free(j.from);
    for (int i = 0; i < 2; i++) {
        close(fd[i]);
        unlink(path[i]);
    }
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_one_shot_accept_hibernates_and_accepts, .timeout = 60)
{
    urt_runtime *rt = rt_one();
    struct sockaddr_in a;
    int lfd = hib_listen_loopback(&a);
    job j = {.kind = K_ACCEPT, .fd = lfd};
    urt_task *t = spawn_hibernated(rt, &j, "urt_accept");
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
    joined_restored(rt, t, &j);
    cr_assert_geq(j.res, 0, "urt_accept gave %d", j.res);
    close(j.res);
    close(c);
    close(lfd);
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_send_from_a_heap_buffer_waits_for_room_hibernated_and_sends_it_whole, .timeout = 60)
{
    enum { LEN = 65536 };
    urt_runtime *rt = rt_one();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* fill the socket so that the task's send has to wait for room */
    static char junk[4096];
    size_t filled = 0;
    for (;;) {
        ssize_t n = send(sv[0], junk, sizeof(junk), MSG_DONTWAIT);
        if (n <= 0)
            break;
        filled += (size_t)n;
    }
    job j = {.kind = K_SEND_HEAP, .fd = sv[0], .heap = malloc(LEN), .len = LEN};
    cr_assert_not_null(j.heap);
    for (size_t i = 0; i < LEN; i++)
        j.heap[i] = (char)(i * 7 + 1);
    urt_task *t = spawn_hibernated(rt, &j, "urt_send");
    /* drain: the kernel reads the rest of the task's buffer only now */
    char *got = malloc(filled + LEN);
    size_t have = 0;
    while (have < filled + LEN) {
        ssize_t n = recv(sv[1], got + have, filled + LEN - have, have >= filled ? MSG_DONTWAIT : 0);
        if (n < 0 && have >= filled && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (__atomic_load_n(&j.res, __ATOMIC_ACQUIRE) != 0 && have - filled >= (size_t)j.res)
                break;   /* a short send: all it sent is here */
            usleep(1000);
            continue;
        }
        cr_assert_gt(n, 0);
        have += (size_t)n;
    }
    joined_restored(rt, t, &j);
    cr_assert_gt(j.res, 0, "urt_send gave %d", j.res);
    cr_assert_eq(have - filled, (size_t)j.res, "the peer got what the send says it sent");
    cr_assert_eq(memcmp(got + filled, j.heap, (size_t)j.res), 0, "the bytes sent after hibernation are the buffer's");
    free(got);
    free(j.heap);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_recv_into_a_buffer_on_the_stack_is_never_hibernated, .timeout = 60)
{
    urt_runtime *rt = rt_one();
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    job j = {.kind = K_RECV_STACK, .fd = sv[0]};
    urt_task *t;
    cr_assert_eq(urt_spawn(rt, &t, waiter_task, &j), 0);
    await_waiting(rt, t, "recv");
    /* 75 thresholds, with the worker woken every 20 ms to scan */
    cr_assert_not(await_hibernated_poked(rt, 1, 1500), "a recv into its own stack was hibernated");
    cr_assert_eq(stat_sum(rt, 1), 0);
    cr_assert_eq(send(sv[1], "stack", 5, 0), 5);
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_eq(j.res, 5);
    cr_assert_eq(memcmp(j.got, "stack", 5), 0, "the kernel wrote the bytes into the live stack");
    cr_assert(j.intact);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

/* ---- wakes that race a hibernated task ------------------------------------------------ */

/* A hibernated wait of `kind` is cancelled from this thread: it resumes
 * with -ECANCELED and its stack intact. */
static void cancel_kind(enum kind k, const char *what)
{
    urt_runtime *rt = rt_hib(2, 20 * MS);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    job j = {.kind = k, .fd = sv[0], .ns = 600000 * MS};
    urt_task *t = spawn_hibernated(rt, &j, what);
    cr_assert_eq(urt_cancel(t), 0);
    joined_restored(rt, t, &j);
    cr_assert_eq(j.res, -ECANCELED, "the cancelled %s gave %d", what, j.res);
    close(sv[0]);
    close(sv[1]);
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_cancel_from_another_thread_wakes_a_hibernated_sleep, .timeout = 60)
{
    cancel_kind(K_SLEEP, "urt_sleep");
}

Test(hibernate_waits, a_cancel_from_another_thread_wakes_a_hibernated_poll, .timeout = 60)
{
    cancel_kind(K_POLL, "urt_poll");
}

Test(hibernate_waits, a_deadline_firing_wakes_a_hibernated_sleep, .timeout = 60)
{
    urt_runtime *rt = rt_one();
    job j = {.kind = K_SLEEP, .ns = 600000 * MS, .deadline = urt_now() + 1500 * MS};
    urt_task *t = spawn_hibernated(rt, &j, "urt_sleep");
    joined_restored(rt, t, &j);
    cr_assert_eq(j.res, -ETIMEDOUT, "the sleep past its deadline gave %d", j.res);
    cr_assert_geq(j.waited + 50 * MS, 1500 * MS, "the deadline fired early");
    urt_runtime_destroy(rt);
}

Test(hibernate_waits, a_shutdown_ends_every_hibernated_sleeper_once, .timeout = 60)
{
    enum { N = 200 };
    urt_runtime *rt = rt_hib(2, 5 * MS);
    static job j[N];
    for (int i = 0; i < N; i++) {
        j[i] = (job){.kind = i % 2 ? K_SLEEP : K_TICK, .ns = 600000 * MS, .res = 1};
        cr_assert_eq(urt_spawn(rt, NULL, waiter_task, &j[i]), 0);
    }
    cr_assert(await_hibernated_poked(rt, N, 10000), "only %llu of %d hibernated",
              (unsigned long long)stat_sum(rt, 0), N);
    cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
    for (int i = 0; i < N; i++) {
        cr_assert_eq(j[i].res, -ECANCELED, "sleeper %d ended with %d", i, j[i].res);
        cr_assert(j[i].intact, "sleeper %d's stack changed", i);
    }
    cr_assert_eq(stat_sum(rt, 0), 0);
    cr_assert_eq(stat_sum(rt, 1), stat_sum(rt, 2), "every hibernation was restored");
    urt_runtime_destroy(rt);
}

/* ---- stress: 10,000 tasks hibernating and waking at random ---------------------------- */

typedef struct sleeper {
    unsigned seed;
    _Atomic unsigned rounds;   /* sleeps that ended on time */
    _Atomic unsigned ended;    /* times the task reached its end: exactly once */
    int last;                  /* what ended the final, long wait */
    _Atomic unsigned *final;   /* counts the tasks that reached it */
    bool intact;
} sleeper;

#define ROUNDS 4

__attribute__((noinline)) static void sleep_at_random(sleeper *s)
{
    volatile char deep[1024];
    for (size_t i = 0; i < sizeof(deep); i++)
        deep[i] = (char)(i ^ s->seed);
    unsigned rng = s->seed;
    for (int r = 0; r < ROUNDS; r++) {
        rng = rng * 1103515245u + 12345u;
        uint64_t ns = (1 + (rng >> 8) % 60) * MS;   /* 1 .. 60 ms: some wake before a scan, some after */
        uint64_t t0 = urt_now();
        int e = (rng >> 20) & 1 ? urt_sleep(ns) : urt_sleep_until(t0 + ns);
        if (e == 0 && urt_now() - t0 >= ns)
            __atomic_fetch_add(&s->rounds, 1, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(s->final, 1, __ATOMIC_RELEASE);
    s->last = urt_sleep(600000 * MS);   /* until cancelled, hibernated by then */
    bool ok = true;
    for (size_t i = 0; i < sizeof(deep); i++)
        ok &= deep[i] == (char)(i ^ s->seed);
    s->intact = ok;
    __atomic_fetch_add(&s->ended, 1, __ATOMIC_RELAXED);
}

static void *sleeper_task(void *arg)
{
    sleep_at_random(arg);
    return NULL;
}

Test(hibernate_waits, stress_ten_thousand_tasks_hibernate_and_wake_at_random, .timeout = 240)
{
#if defined(URT_TSAN)
    enum { N = 2000 };
#elif defined(URT_ASAN)
    enum { N = 3000 };
#else
    enum { N = 10000 };
#endif
    urt_runtime *rt = rt_hib(2, 1 * MS);
    static sleeper s[N];
    static urt_task *t[N];
    static _Atomic unsigned final;
    for (int i = 0; i < N; i++) {
        s[i] = (sleeper){.seed = (unsigned)i * 2654435761u + 1, .final = &final};
        cr_assert_eq(urt_spawn(rt, &t[i], sleeper_task, &s[i]), 0);
    }
    /* every task ends its rounds and is hibernated in its long sleep */
    for (int spin = 0; __atomic_load_n(&final, __ATOMIC_ACQUIRE) < N && spin < 120000; spin++)
        usleep(1000);
    cr_assert_eq(__atomic_load_n(&final, __ATOMIC_ACQUIRE), N, "not every task reached its last sleep");
    cr_assert(await_hibernated_poked(rt, N, 120000), "only %llu of %d hibernated",
              (unsigned long long)stat_sum(rt, 0), N);
    uint64_t hib = stat_sum(rt, 1);
    for (int i = 0; i < N; i++)
        cr_assert_eq(urt_cancel(t[i]), 0);
    for (int i = 0; i < N; i++) {
        int r = urt_join(t[i], NULL);
        cr_assert(r == 0 || r == -ECANCELED, "task %d joined %d", i, r);
        cr_assert_eq(s[i].rounds, ROUNDS, "task %d: %u of %d sleeps ended on time", i, s[i].rounds, ROUNDS);
        cr_assert_eq(s[i].ended, 1, "task %d ended %u times", i, s[i].ended);
        cr_assert_eq(s[i].last, -ECANCELED, "task %d's long sleep gave %d", i, s[i].last);
        cr_assert(s[i].intact, "task %d's stack changed", i);
    }
    cr_assert_geq(hib, (uint64_t)N, "only %llu hibernations for %d tasks", (unsigned long long)hib, N);
    cr_assert_eq(stat_sum(rt, 1), stat_sum(rt, 2), "a hibernation was never restored");
    cr_assert_eq(stat_sum(rt, 0), 0);
    urt_runtime_destroy(rt);
}

/* ---- hibernated before its SQE was submitted ----------------------------------------- */

typedef struct quick {
    _Atomic unsigned early;   /* sleeps that ended before their time */
    _Atomic unsigned done;
} quick;

static void *quick_sleeper(void *arg)
{
    quick *q = arg;
    for (int i = 0; i < 40; i++) {
        uint64_t ns = (uint64_t)(1 + i % 3) * MS, t0 = urt_now();
        int e = urt_sleep(ns);
        if (e != 0 || urt_now() - t0 < ns)
            __atomic_fetch_add(&q->early, 1, __ATOMIC_RELAXED);
        if (i % 4 == 0)
            urt_yield();   /* keep the worker's ticks (and so its maintenance) coming */
    }
    __atomic_fetch_add(&q->done, 1, __ATOMIC_RELAXED);
    return NULL;
}

/* With a threshold of 1 ns a sleep is due for hibernation as soon as it
 * suspends, before its worker has submitted the sleep's SQE: the kernel
 * reads the timespec in the sleeper's frame only at submission, so a scan
 * that hibernated it first would make it read a dropped (zero) page and
 * wake at once. (Today the worker submits before each scan anyway; this
 * holds whichever order, and hib_scan's own check, keeps it.) */
Test(hibernate_waits, sleeps_hibernated_as_soon_as_they_suspend_never_end_early, .timeout = 120)
{
#if defined(URT_TSAN) || defined(URT_ASAN)
    enum { N = 100 };
#else
    enum { N = 400 };
#endif
    urt_config c = {.workers = 2, .hibernate_after_ns = 1, .event_interval = 2};
    urt_runtime *rt = rt_new_cfg(&c);
    quick q = {0};
    for (int i = 0; i < N; i++)
        cr_assert_eq(urt_spawn(rt, NULL, quick_sleeper, &q), 0);
    for (int spin = 0; __atomic_load_n(&q.done, __ATOMIC_RELAXED) < N && spin < 100000; spin++)
        usleep(1000);
    cr_assert_eq(q.done, N);
    cr_assert_eq(q.early, 0, "%u sleeps ended early", q.early);
    cr_assert_gt(stat_sum(rt, 1), 0, "nothing was hibernated");
    urt_runtime_destroy(rt);
}

/* ---- 100,000 live hibernated tasks ---------------------------------------------------- */

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':') {
            kb = strtol(line + n + 1, NULL, 10);
            break;
        }
    if (f)
        fclose(f);
    return kb;
}

static long maps_lines(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f)
        return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f && fscanf(f, "%ld", &v) != 1)
        v = -1;
    if (f)
        fclose(f);
    return v;
}

typedef struct idler {
    _Atomic unsigned ended;
    int last;
} idler;

__attribute__((noinline)) static void idle_long(idler *d)
{
    volatile char deep[256];   /* a connection-sized frame */
    for (size_t i = 0; i < sizeof(deep); i++)
        deep[i] = (char)i;
    d->last = urt_sleep(600000 * MS);
    bool ok = true;
    for (size_t i = 0; i < sizeof(deep); i++)
        ok &= deep[i] == (char)i;
    __atomic_fetch_add(&d->ended, ok ? 1 : 1000, __ATOMIC_RELAXED);
}

static void *idler_task(void *arg)
{
    idle_long(arg);
    return NULL;
}

Test(hibernate_waits, a_hundred_thousand_hibernated_tasks_stay_far_below_the_map_limit, .timeout = 300)
{
#if defined(URT_TSAN)
    enum { N = 2000 };   /* TSan follows at most about 8,000 live fibers, at ~0.9 MB each */
#elif defined(URT_ASAN)
    enum { N = 20000 };
#else
    enum { N = 100000 };
#endif
    long max_maps = read_long("/proc/sys/vm/max_map_count");
    if (max_maps <= 0)
        max_maps = 65530;
    urt_runtime *rt = rt_hib(2, 5 * MS);
    idler *d = calloc(N, sizeof(*d));
    urt_task **t = calloc(N, sizeof(*t));
    cr_assert(d && t);
    urt_spawn_opts small = {.stack_size = 16 * 1024};
    long maps0 = maps_lines(), rss0 = status_kb("VmRSS");
    for (int i = 0; i < N; i++)
        cr_assert_eq(urt_spawn_ex(rt, &t[i], idler_task, &d[i], &small), 0, "spawn %d", i);
    cr_assert(await_hibernated_poked(rt, N, 200000), "only %llu of %d hibernated", (unsigned long long)stat_sum(rt, 0),
              N);
    long maps1 = maps_lines(), rss1 = status_kb("VmRSS");
    urt_metrics m;
    cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
    cr_log_info("%d hibernated tasks: /proc/self/maps %ld -> %ld lines (vm.max_map_count %ld), RSS %ld -> %ld KiB "
                "(%ld B per task), metrics: hibernated %llu, stack bytes resident %llu",
                N, maps0, maps1, max_maps, rss0, rss1, (rss1 - rss0) * 1024 / N,
                (unsigned long long)m.hibernated_tasks, (unsigned long long)m.stack_bytes_resident);
    cr_assert_eq(m.hibernated_tasks, (uint64_t)N);
#if !defined(URT_TSAN)
    /* one stack per task and no VMA split by its guard: far below the
     * limit (TSan maps several regions of its own per fiber) */
    cr_assert_lt(maps1, max_maps / 4, "%ld mappings for %d stacks", maps1, N);
    cr_assert_lt(maps1 - maps0, N / 10, "%ld more mappings for %d stacks", maps1 - maps0, N);
#endif
#if !defined(URT_TSAN) && !defined(URT_ASAN)
    /* header + image + allocator overhead; a task that kept its stack's
     * pages would hold at least one 4 KiB page more */
    cr_assert_leq((rss1 - rss0) * 1024 / N, 3 * 1024, "RSS per hibernated task");
#endif
    for (int i = 0; i < N; i++)
        cr_assert_eq(urt_cancel(t[i]), 0);
    for (int i = 0; i < N; i++) {
        int r = urt_join(t[i], NULL);
        cr_assert(r == 0 || r == -ECANCELED, "task %d joined %d", i, r);
        cr_assert_eq(d[i].ended, 1, "task %d ended %u times (1000s: its stack changed)", i, d[i].ended);
        cr_assert_eq(d[i].last, -ECANCELED);
    }
    cr_assert_eq(stat_sum(rt, 0), 0);
    free(d);
    free(t);
    urt_runtime_destroy(rt);
}
