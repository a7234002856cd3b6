/*
 * test_hibernate_lazy.c - the list of hibernatable waits is kept lazily (a
 * wait per message only stamps the task; the scan drops or re-queues stale
 * entries): a connection that talked many times and then goes idle is still
 * hibernated, and a task that waited and then ended is off the list before
 * it is freed (the scans that follow never touch it: ASan would see it).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)
#define AFTER (30 * MS)   /* hibernation threshold of these runtimes */

static urt_runtime *rt_hib(unsigned workers)
{
    urt_config c;
    memset(&c, 0, sizeof(c));
    c.workers = workers;
    c.hibernate_after_ns = AFTER;
    return rt_new_cfg(&c);
}

static uint64_t stat_sum(urt_runtime *rt, int which)
{
    urt_worker_stats st[8];
    int n = urt_runtime_stats(rt, st, 8);
    uint64_t s = 0;
    for (int i = 0; i < n && i < 8; i++)
        s += which == 0 ? st[i].hibernated : which == 1 ? st[i].hibernations : st[i].restores;
    return s;
}

static bool await_hibernated(urt_runtime *rt, uint64_t n)
{
    for (int i = 0; i < 5000; i++) {
        if (stat_sum(rt, 0) >= n)
            return true;
        usleep(1000);
    }
    return false;
}

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

Test(hibernate_lazy, a_connection_that_talked_often_and_then_idles_is_hibernated, .timeout = 60)
{
    const unsigned workers[] = {1, 2};
    for (unsigned k = 0; k < sizeof(workers) / sizeof(workers[0]); k++) {
        urt_runtime *rt = rt_hib(workers[k]);
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

Test(hibernate_lazy, tasks_that_waited_and_ended_leave_the_list, .timeout = 60)
{
    urt_runtime *rt = rt_hib(1);
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
