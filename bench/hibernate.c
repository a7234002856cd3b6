/*
 * hibernate.c - what waking a hibernated task costs: the time from its wake
 * (a byte sent, or a sleep's due time) to the task running again, for tasks
 * whose stacks are hibernated and, side by side in the same run, for tasks
 * that never hibernate (URT_HIBERNATE_NEVER). The difference is the
 * restore: copying the image back and faulting its pages in. Also the
 * resident memory per waiting task in both cases.
 *
 *   bench/hibernate [--tasks N] [--rounds R] [--deep BYTES] [--wait rx|poll|sleep]
 *
 * Each task fills --deep bytes of its stack (default 1024: a 1 KiB image
 * plus the frames above it), then waits: in urt_rx_recv on a socketpair
 * (rx, the default), in urt_poll for POLLIN on one (poll), both woken by a
 * byte sent from the main thread, one task at a time; or in urt_sleep_until
 * a due time of its own, 50 us apart (sleep), its latency counted from
 * that time. Rounds alternate between the two runtimes (ABAB). Prints one
 * line per mode, then the difference:
 *   mode=hibernate wait=rx tasks=N deep=1024 wake_p50_ns=... wake_p99_ns=... rss_per_task_b=...
 *   mode=never ...
 *   restore_added_p50_ns=... restore_added_p99_ns=...
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#define MS (1000ull * 1000)

enum { W_RX, W_POLL, W_SLEEP };

typedef struct waiter {
    int fd;
    int kind;
    size_t deep;
    uint64_t due;     /* W_SLEEP: when it wakes (urt_now ns) */
    uint64_t woke;
} waiter;

__attribute__((noinline)) static void wait_deep(waiter *w)
{
    volatile char frame[w->deep];
    for (size_t i = 0; i < w->deep; i++)
        frame[i] = (char)i;
    if (w->kind == W_POLL) {
        if (urt_poll(w->fd, POLLIN) > 0)
            __atomic_store_n(&w->woke, urt_now(), __ATOMIC_RELEASE);
    } else if (w->kind == W_SLEEP) {
        if (urt_sleep_until(w->due) == 0)
            __atomic_store_n(&w->woke, urt_now(), __ATOMIC_RELEASE);
    } else {
        urt_rx *rx;
        if (urt_rx_open(&rx, w->fd) != 0)
            return;
        urt_buf b;
        if (urt_rx_recv(rx, &b) > 0) {
            __atomic_store_n(&w->woke, urt_now(), __ATOMIC_RELEASE);
            urt_buf_release(&b);
        }
        urt_rx_close(rx);
    }
    (void)frame[0];
}

static void *task(void *arg)
{
    wait_deep(arg);
    return NULL;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

#define SETTLE_NS  (1500 * MS)    /* threshold 10 ms; an idle worker scans at least once a second */
#define SLEEP_GAP  (50 * 1000ull) /* W_SLEEP: one task due every 50 us */

/* One round: n tasks wait, sit past the threshold, are woken one by one. */
static int round_once(bool hib, int kind, unsigned n, size_t deep, uint64_t *lat, long *rss_per)
{
    urt_config c = {.workers = 1, .hibernate_after_ns = hib ? 10 * MS : URT_HIBERNATE_NEVER};
    urt_runtime *rt;
    if (urt_runtime_create(&rt, &c) != 0)
        return -1;
    int (*sv)[2] = calloc(n, sizeof(*sv));
    waiter *w = calloc(n, sizeof(*w));
    urt_task **t = calloc(n, sizeof(*t));
    long before = rss_kb();
    uint64_t start = urt_now();
    for (unsigned i = 0; i < n; i++) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv[i]) != 0)
            return -1;
        w[i] = (waiter){.fd = sv[i][0], .kind = kind, .deep = deep, .due = start + SETTLE_NS + 100 * MS + i * SLEEP_GAP};
        urt_spawn(rt, &t[i], task, &w[i]);
    }
    usleep((useconds_t)(SETTLE_NS / 1000));
    *rss_per = (rss_kb() - before) * 1024 / (long)n;
    for (unsigned i = 0; i < n; i++) {
        uint64_t t0 = w[i].due;
        if (kind != W_SLEEP) {
            t0 = urt_now();
            if (send(sv[i][1], "x", 1, 0) != 1)
                return -1;
        }
        while (!__atomic_load_n(&w[i].woke, __ATOMIC_ACQUIRE))
            ;
        lat[i] = w[i].woke - t0;
    }
    for (unsigned i = 0; i < n; i++) {
        urt_join(t[i], NULL);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    urt_runtime_destroy(rt);
    free(sv);
    free(w);
    free(t);
    return 0;
}

int main(int argc, char **argv)
{
    unsigned n = 1000, rounds = 3;
    size_t deep = 1024;
    int kind = W_RX;
    static const char *const kinds[] = {"rx", "poll", "sleep"};
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tasks") == 0)
            n = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = (unsigned)strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--deep") == 0)
            deep = strtoul(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--wait") == 0) {
            for (kind = 0; kind < 3 && strcmp(argv[i + 1], kinds[kind]) != 0; kind++)
                ;
        } else
            kind = -1;
        if (kind < 0 || kind > 2) {
            fprintf(stderr, "usage: hibernate [--tasks N] [--rounds R] [--deep BYTES] [--wait rx|poll|sleep]\n");
            return 2;
        }
    }
    if (!n || !rounds || deep > (1u << 20)) {
        fprintf(stderr, "hibernate: bad arguments\n");
        return 2;
    }
    uint64_t *lat[2];
    long rss[2] = {0, 0};
    for (int m = 0; m < 2; m++)
        lat[m] = calloc((size_t)n * rounds, sizeof(uint64_t));
    for (unsigned r = 0; r < rounds; r++)
        for (int m = 0; m < 2; m++) {
            long per;
            if (round_once(m == 0, kind, n, deep, lat[m] + (size_t)r * n, &per) != 0) {
                fprintf(stderr, "hibernate: round failed: %s\n", strerror(errno));
                return 1;
            }
            rss[m] += per;
        }
    size_t k = (size_t)n * rounds;
    for (int m = 0; m < 2; m++) {
        qsort(lat[m], k, sizeof(uint64_t), cmp_u64);
        printf("mode=%s wait=%s tasks=%u deep=%zu wake_p50_ns=%llu wake_p99_ns=%llu rss_per_task_b=%ld\n",
               m == 0 ? "hibernate" : "never", kinds[kind], n, deep, (unsigned long long)lat[m][k / 2],
               (unsigned long long)lat[m][k * 99 / 100], rss[m] / (long)rounds);
    }
    /* what hibernation adds to a wake, quantile by quantile */
    printf("restore_added_p50_ns=%lld restore_added_p99_ns=%lld\n",
           (long long)lat[0][k / 2] - (long long)lat[1][k / 2],
           (long long)lat[0][k * 99 / 100] - (long long)lat[1][k * 99 / 100]);
    return 0;
}
