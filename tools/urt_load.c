/*
 * urt-load - a TCP echo load generator, built on urt.
 *
 *   urt-load [--addr HOST:PORT] [--conns N] [--size BYTES] [--depth D]
 *            [--duration S | --messages N] [--warmup S] [--workers W] ...
 *
 * One task per connection. Each connection sends messages whose bytes are a
 * function of (connection id, message sequence number, offset), keeps
 * `depth` of them in flight, and compares every echoed byte with the same
 * function, so a corrupted, misplaced, stale or foreign byte is caught.
 *
 * A connection task:
 *   1. opens a socket with TCP_NODELAY and connects it (urt_connect, under
 *      the op timeout), makes one round trip, and waits at the start line
 *      (its own urt_notify) until the coordinator lets every task go;
 *   2. starts messages while fewer than `depth` are in flight: the message is
 *      generated into the send buffer and sent with MSG_DONTWAIT. A send that
 *      would block (the socket buffer is full) is not waited for: the task
 *      reads instead, because the peer may itself be blocked writing the echo
 *      of earlier bytes. Sending never blocks and reading only happens while
 *      bytes are outstanding, so the pair cannot deadlock;
 *   3. reads with a blocking urt_recv, checks each chunk against the pattern
 *      and completes messages in order; a message's round trip runs from its
 *      start (before its first byte is sent) to the arrival of its last byte,
 *      and goes into the task's own histogram;
 *   4. once the coordinator says STOP, starts nothing more, drains what is in
 *      flight and closes the socket.
 *
 * The coordinator (the block_on task):
 *   1. spawns the connection tasks in batches of --batch, from a blocking
 *      thread (urt_block_in_place) so that they go through the inject queue
 *      and spread over the workers; a batch is done when each of its
 *      connections has completed a first round trip or failed, so the server
 *      has accepted all of them before the next batch connects and its
 *      listen backlog never holds more than one batch (with --idle: when each
 *      is connected; --pace adds a pause between batches). The waiting tasks
 *      leave the workers idle for the next batch to spread over;
 *   2. releases the start line; WARMUP for --warmup seconds (traffic, not counted);
 *   3. MEASURE for --duration seconds, or until --messages messages counted;
 *   4. STOP: waits up to the drain grace for the tasks to end by themselves,
 *      then cancels the rest, joins every task and merges the per-task
 *      histograms and counters.
 * Each I/O op runs under urt_op_timeout (--timeout), so a dead peer turns
 * into an error instead of a hang.
 *
 * --idle opens the connections and sends nothing: it prints
 * "idle: N connections open" on stdout and holds them for --duration seconds
 * (or until SIGINT/SIGTERM; SIGUSR2 ends the hold as its end would, so
 * --idle-wake still runs). bench/echo.sh and bench/compare use it to measure
 * the server's memory per idle connection; --idle-wake N then times the
 * first message after idling of N of them, one at a time.
 *
 * SIGINT and SIGTERM end the measurement early (results are still printed);
 * a second one exits at once. They are taken by a dedicated thread with
 * sigwait, so no worker thread is ever interrupted.
 *
 * The last line on stdout, for scripts:
 *   msgs_per_s=... mb_per_s=... p50_us=... p99_us=... p999_us=... errors=... mismatches=...
 * mb_per_s counts payload one way (messages x size / 1e6 per second).
 * Exit status: 0; 1 on any mismatch or when no message was counted; 2 on a
 * usage or setup error.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "urt.h"

#define LINE 64   /* a cache line: the fields threads write apart go on lines apart */

#define NS_PER_S  1000000000ull
#define NS_PER_MS 1000000ull
#define NS_PER_US 1000ull

#define MAX_CONNS     1000000u
#define MAX_DEPTH     4096u
#define MAX_SIZE      (64u << 20)
#define RECV_BUF_MAX  (64u * 1024)
#define DRAIN_GRACE   (2 * NS_PER_S)
#define JOIN_TIMEOUT  (5 * NS_PER_S)
#define MESSAGES_CAP  (120.0)          /* seconds, when --messages has no --duration */
#define IDLE_HOLD     (10.0)           /* seconds, when --idle has no --duration */

/* ---- latency histogram ---------------------------------------------------------
 *
 * Log-linear buckets over nanoseconds, HdrHistogram's layout: values below
 * 2^H_SUB_BITS have a bucket each; above, every power of two [2^m, 2^(m+1))
 * is split into H_HALF equal buckets, so a bucket is at most 1/H_HALF
 * (0.78%) of its values wide. Values at or above 2^H_MAX_BITS ns (18 min)
 * land in the last bucket.
 */
#define H_SUB_BITS 8u
#define H_SUB      (1u << H_SUB_BITS)
#define H_HALF     (H_SUB / 2)
#define H_MAX_BITS 40u
#define H_BUCKETS  ((H_MAX_BITS - H_SUB_BITS + 2) * H_HALF)

typedef struct hist {
    uint64_t count, min, max, sum;
    uint32_t b[H_BUCKETS];       /* per-task; merged with hist_merge_into */
} hist;

typedef struct hist_total {
    uint64_t count, min, max, sum;
    uint64_t b[H_BUCKETS];
} hist_total;

static inline unsigned hist_index(uint64_t v)
{
    if (v >= (1ull << H_MAX_BITS))
        v = (1ull << H_MAX_BITS) - 1;
    if (v < H_SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - H_SUB_BITS + 1;
    return e * H_HALF + (unsigned)(v >> e);
}

/* The highest value that lands in bucket i. */
static uint64_t hist_bucket_high(unsigned i)
{
    if (i < H_SUB)
        return i;
    unsigned e = i / H_HALF - 1;
    uint64_t low = (uint64_t)(i - e * H_HALF) << e;
    return low + (1ull << e) - 1;
}

static inline void hist_record(hist *h, uint64_t v)
{
    h->b[hist_index(v)]++;
    if (h->count == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->count++;
    h->sum += v;
}

static void hist_merge_into(hist_total *t, const hist *h)
{
    if (!h->count)
        return;
    for (unsigned i = 0; i < H_BUCKETS; i++)
        t->b[i] += h->b[i];
    if (t->count == 0 || h->min < t->min)
        t->min = h->min;
    if (h->max > t->max)
        t->max = h->max;
    t->count += h->count;
    t->sum += h->sum;
}

/* The value at quantile q (0..1): the top of the bucket holding the
 * ceil(q * count)-th value, clamped to the largest value recorded. */
static uint64_t hist_quantile(const hist_total *t, double q)
{
    if (!t->count)
        return 0;
    uint64_t rank = (uint64_t)ceil(q * (double)t->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < H_BUCKETS; i++) {
        seen += t->b[i];
        if (seen >= rank) {
            uint64_t v = hist_bucket_high(i);
            return v > t->max ? t->max : v;
        }
    }
    return t->max;
}

/* ---- the byte pattern ---------------------------------------------------------- */

static inline uint64_t mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t msg_seed(uint32_t conn, uint64_t seq)
{
    return mix64(((uint64_t)conn << 40) ^ seq ^ 0x75727430ull);
}

static inline uint64_t pattern_word(uint64_t seed, uint64_t k)
{
    return seed ^ (k * 0xd6e8feb86659fd93ull);
}

/* Bytes [off, off + len) of the message with this seed: byte i is byte
 * (i % 8) (least significant first) of pattern_word(seed, i / 8). */
static void pattern_fill(uint8_t *dst, uint64_t seed, uint64_t off, size_t len)
{
    uint64_t k = off / 8;
    unsigned sh = (unsigned)(off % 8);
    if (sh) {
        uint64_t w = pattern_word(seed, k++);
        for (; sh < 8 && len; sh++, len--)
            *dst++ = (uint8_t)(w >> (8 * sh));
    }
    for (; len >= 8; len -= 8, dst += 8) {
        uint64_t w = pattern_word(seed, k++);
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        w = __builtin_bswap64(w);
#endif
        memcpy(dst, &w, 8);
    }
    if (len) {
        uint64_t w = pattern_word(seed, k);
        for (unsigned i = 0; i < len; i++)
            dst[i] = (uint8_t)(w >> (8 * i));
    }
}

/* ---- shared state -------------------------------------------------------------- */

enum phase { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_STOP };

enum err_kind { E_CONNECT, E_RESET, E_CLOSED, E_TIMEOUT, E_OTHER, E_KINDS };
static const char *const err_names[E_KINDS] = {"connect", "reset", "closed", "timeout", "other"};

typedef struct options {
    const char *addr;
    unsigned conns, depth, workers, batch;
    size_t size;
    double duration, warmup, timeout, pace;
    uint64_t messages;          /* 0: run for duration */
    unsigned idle_wake;         /* --idle-wake: connections timed after the hold */
    bool duration_set, idle, idle_talk, verbose;
} options;

typedef struct conn {
    /* written by the task, read (relaxed) by the coordinator for progress */
    _Atomic uint64_t counted;       /* messages completed and counted */
    _Atomic uint64_t completed;     /* every completed message, warm-up included */
    /* written by the task; read by the coordinator after joining it */
    uint64_t err[E_KINDS];
    uint64_t mismatches;
    bool undrained;                 /* cancelled at the end with bytes outstanding */
    hist *h;
    int worker;
    bool connected;
    /* written by the coordinator before the spawn, or after the join */
    struct load *lg;
    urt_notify *go;                 /* the start line, see conn_traffic; with
                                       --idle-wake, the wake of a picked connection */
    uint32_t id;
    bool wake_pick;                 /* --idle-wake: this one is timed after the hold */
    bool joined;
} __attribute__((aligned(LINE))) conn;

typedef struct load {
    options o;
    struct sockaddr_storage sa;
    socklen_t salen;
    conn *conns;
    /* written by the coordinator, read (relaxed) by every task: the phase
     * only orders what a task counts, nothing is published through it */
    _Atomic int phase __attribute__((aligned(LINE)));
    /* every task: relaxed counters, read by the coordinator */
    _Atomic uint32_t settled __attribute__((aligned(LINE)));   /* conns past their first round trip or failed */
    _Atomic uint32_t live;                            /* tasks not yet ended */
    _Atomic uint32_t open;                            /* connections established and not closed */
    _Atomic uint64_t claimed __attribute__((aligned(LINE)));   /* --messages: message slots handed out */
    _Atomic uint64_t claimed_done;                    /* --messages: claimed messages completed */
    urt_notify *wake_done;                            /* --idle-wake: a timed wake is over */
    /* coordinator only */
    uint32_t batch_target;
    uint64_t t_begin, t_connected, t_start, t_end, t_drained, t_joined;
    uint64_t spawn_errors;
    bool progress;
} load;

static _Atomic int stop_requested;   /* set by the signal thread */
static _Atomic int hold_over;        /* SIGUSR2: the idle hold ends now (set by the signal thread) */

/* ---- the connection task -------------------------------------------------------- */

typedef struct slot {
    uint64_t t0;
    bool counted;       /* --messages: claimed from the quota */
    bool bad;           /* a byte did not match */
} slot;

static inline void bump(_Atomic uint64_t *c)
{
    /* single writer: a load and a store, no locked instruction */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1, memory_order_relaxed);
}

static void settle(load *lg, bool *settled)
{
    if (!*settled) {
        *settled = true;
        atomic_fetch_add_explicit(&lg->settled, 1, memory_order_relaxed);
    }
}

static void count_error(load *lg, conn *c, ssize_t r)
{
    int ph = atomic_load_explicit(&lg->phase, memory_order_relaxed);
    switch (r) {
    case -ECANCELED:
        return;                         /* the coordinator stopped us */
    case -ETIMEDOUT:
        if (ph == PH_STOP)
            return;                     /* drain cut short: not the peer's fault */
        c->err[E_TIMEOUT]++;
        return;
    case -ECONNRESET:
    case -EPIPE:
    case -ECONNABORTED:
        c->err[E_RESET]++;
        return;
    default:
        c->err[E_OTHER]++;
        return;
    }
}

/* Take one message from the --messages quota; false when it is used up. */
static bool claim(load *lg)
{
    return atomic_fetch_add_explicit(&lg->claimed, 1, memory_order_relaxed) < lg->o.messages;
}

static void conn_traffic(load *lg, conn *c, int fd, bool *settled)
{
    const options *o = &lg->o;
    const size_t size = o->size;
    const unsigned depth = o->depth;
    const bool quota = o->messages > 0;
    uint64_t maxout = (uint64_t)size * depth;
    size_t rcap = maxout < RECV_BUF_MAX ? (size_t)maxout : RECV_BUF_MAX;
    uint8_t *sbuf = malloc(size);
    uint8_t *rbuf = malloc(rcap);
    uint8_t *xbuf = malloc(rcap);
    slot *slots = calloc(depth, sizeof(*slots));
    if (!sbuf || !rbuf || !xbuf || !slots) {
        c->err[E_OTHER]++;
        goto out;
    }

    uint64_t sseq = 0, soff = 0;    /* message being sent, bytes of it sent */
    bool sending = false;
    uint64_t rseq = 0, roff = 0;    /* oldest message in flight, bytes of it received */
    uint64_t sent = 0, rcvd = 0;    /* byte totals */
    bool no_more = false;           /* quota used up */

    for (;;) {
        int ph = atomic_load_explicit(&lg->phase, memory_order_relaxed);
        if (ph == PH_CONNECT && *settled && sent == rcvd) {
            /* The start line: connected tasks wait here, so that later
             * batches find idle workers and spread over them, and all
             * connections start together. The coordinator signals every
             * task's own notify; a signal that comes first is kept. */
            if (urt_notify_wait(c->go) < 0)
                goto out;
            continue;
        }
        bool stopping = ph == PH_STOP;
        uint64_t window = ph == PH_CONNECT ? 1 : depth;

        /* start and send messages while the window and the socket allow */
        for (;;) {
            if (!sending) {
                if (stopping || no_more || sseq - rseq >= window)
                    break;
                bool counted = false;
                if (quota && ph == PH_MEASURE) {
                    if (!claim(lg)) {
                        no_more = true;
                        break;
                    }
                    counted = true;
                }
                slot *s = &slots[sseq % depth];
                s->counted = counted;
                s->bad = false;
                pattern_fill(sbuf, msg_seed(c->id, sseq), 0, size);
                s->t0 = urt_now();
                sending = true;
                soff = 0;
            }
            ssize_t n = urt_send(fd, sbuf + soff, size - soff, MSG_DONTWAIT);
            if (n == -EAGAIN || n == -EWOULDBLOCK)
                break;
            if (n <= 0) {
                count_error(lg, c, n == 0 ? -EPIPE : n);
                goto out;
            }
            soff += (uint64_t)n;
            sent += (uint64_t)n;
            if (soff < size)
                break;              /* the socket buffer is full: read */
            sending = false;
            sseq++;
        }

        if (sent == rcvd) {
            if (!sending)
                break;              /* nothing in flight, nothing more to start: done */
            /* a would-block with nothing outstanding: nothing can come back
             * to read, so finish this message with a blocking send */
            ssize_t n = urt_send_all(fd, sbuf + soff, size - soff, 0);
            if (n < 0) {
                count_error(lg, c, n);
                goto out;
            }
            sent += size - soff;
            sending = false;
            sseq++;
            continue;
        }

        ssize_t n = urt_recv(fd, rbuf, rcap, 0);
        if (n <= 0) {
            if (n == 0)
                c->err[E_CLOSED]++;     /* peer closed with bytes outstanding */
            else if ((n == -ECANCELED || n == -ETIMEDOUT) && atomic_load_explicit(&lg->phase, memory_order_relaxed) == PH_STOP)
                c->undrained = true;
            else
                count_error(lg, c, n);
            goto out;
        }
        uint64_t now = urt_now();
        if ((uint64_t)n > sent - rcvd) {
            c->mismatches++;            /* more bytes than were sent */
            goto out;
        }
        rcvd += (uint64_t)n;
        ph = atomic_load_explicit(&lg->phase, memory_order_relaxed);
        size_t p = 0;
        while (p < (size_t)n) {
            slot *s = &slots[rseq % depth];
            size_t take = size - roff;
            if (take > (size_t)n - p)
                take = (size_t)n - p;
            pattern_fill(xbuf, msg_seed(c->id, rseq), roff, take);
            if (memcmp(xbuf, rbuf + p, take) != 0)
                s->bad = true;
            p += take;
            roff += take;
            if (roff < size)
                break;
            /* message rseq complete */
            roff = 0;
            rseq++;
            bump(&c->completed);
            if (quota && s->counted)
                atomic_fetch_add_explicit(&lg->claimed_done, 1, memory_order_relaxed);
            if (s->bad) {
                c->mismatches++;
            } else if (quota ? s->counted : ph == PH_MEASURE) {
                hist_record(c->h, now - s->t0);
                bump(&c->counted);
            }
            settle(lg, settled);
        }
    }
out:
    free(sbuf);
    free(rbuf);
    free(xbuf);
    free(slots);
}

/* --idle-wake: once the coordinator says so (after the hold), one timed
 * 4-byte echo: the first message after idling, which an echo server that
 * hibernated the connection's fiber answers only after bringing it back.
 * The coordinator wakes the picked connections one at a time, so the
 * figure is that latency alone, not a queue of wakes. */
static int idle_wake(load *lg, conn *c, int fd)
{
    uint64_t old = urt_op_timeout(0);   /* the hold has no bound */
    int r = urt_notify_wait(c->go);
    urt_op_timeout(old);
    if (r < 0)
        return r;                       /* cancelled: the run ended first */
    uint8_t msg[4] = {'w', 'a', 'k', 'e'}, back[4];
    size_t got = 0;
    uint64_t t0 = urt_now();
    ssize_t n = urt_send_all(fd, msg, sizeof(msg), 0);
    while (n > 0 && got < sizeof(back) && (n = urt_recv(fd, back + got, sizeof(back) - got, 0)) > 0)
        got += (size_t)n;
    if (n > 0) {
        hist_record(c->h, urt_now() - t0);
        bump(&c->counted);
        if (memcmp(msg, back, sizeof(msg)) != 0)
            c->mismatches++;
    } else if (n == 0) {
        c->err[E_CLOSED]++;
    } else {
        count_error(lg, c, n);
    }
    urt_notify_signal(lg->wake_done);
    return n > 0 ? 0 : -1;
}

static void conn_idle(load *lg, conn *c, int fd, bool *settled)
{
    uint8_t b;
    if (lg->o.idle_talk) {
        /* one 4-byte echo first: the server's connection has run and
         * touched its stack, as a real client's would */
        uint8_t msg[4] = {'p', 'i', 'n', 'g'}, back[4];
        size_t got = 0;
        ssize_t n = urt_send_all(fd, msg, sizeof(msg), 0);
        while (n > 0 && got < sizeof(back) && (n = urt_recv(fd, back + got, sizeof(back) - got, 0)) > 0)
            got += (size_t)n;
        if (n <= 0) {
            if (n == 0)
                c->err[E_CLOSED]++;
            else
                count_error(lg, c, n);
            settle(lg, settled);
            return;
        }
        if (memcmp(msg, back, sizeof(msg)) != 0)
            c->mismatches++;
    }
    settle(lg, settled);
    if (c->wake_pick && idle_wake(lg, c, fd) < 0)
        return;
    uint64_t old = urt_op_timeout(0);   /* wait until cancelled or closed */
    ssize_t n = urt_recv(fd, &b, 1, 0);
    urt_op_timeout(old);
    if (n == 0)
        c->err[E_CLOSED]++;
    else if (n > 0)
        c->mismatches++;                /* an echo server has nothing to say */
    else
        count_error(lg, c, n);
}

static void *conn_main(void *arg)
{
    conn *c = arg;
    load *lg = c->lg;
    bool settled = false;
    c->worker = urt_worker_id();
    c->h = calloc(1, sizeof(*c->h));
    urt_op_timeout((uint64_t)(lg->o.timeout * NS_PER_S));

    int fd = socket(lg->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || !c->h) {
        c->err[fd < 0 ? E_CONNECT : E_OTHER]++;
        goto out;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int r = urt_connect(fd, (struct sockaddr *)&lg->sa, lg->salen);
    if (r < 0) {
        if (r != -ECANCELED)
            c->err[E_CONNECT]++;
        goto out;
    }
    c->connected = true;
    atomic_fetch_add_explicit(&lg->open, 1, memory_order_relaxed);
    if (lg->o.idle)
        conn_idle(lg, c, fd, &settled);
    else
        conn_traffic(lg, c, fd, &settled);
    atomic_fetch_sub_explicit(&lg->open, 1, memory_order_relaxed);
out:
    if (fd >= 0)
        urt_close(fd);
    settle(lg, &settled);
    atomic_fetch_sub_explicit(&lg->live, 1, memory_order_relaxed);
    return NULL;
}

/* ---- the coordinator ------------------------------------------------------------- */

static bool should_stop(void)
{
    return atomic_load_explicit(&stop_requested, memory_order_relaxed) != 0;
}

static void sums(load *lg, uint64_t *counted, uint64_t *completed)
{
    uint64_t a = 0, b = 0;
    for (unsigned i = 0; i < lg->o.conns; i++) {
        a += atomic_load_explicit(&lg->conns[i].counted, memory_order_relaxed);
        b += atomic_load_explicit(&lg->conns[i].completed, memory_order_relaxed);
    }
    *counted = a;
    *completed = b;
}

typedef struct progress {
    uint64_t t_last, completed_last, t0;
} progress;

static void progress_tick(load *lg, progress *pr, const char *what)
{
    if (!lg->progress)
        return;
    uint64_t now = urt_now();
    if (now - pr->t_last < NS_PER_S)
        return;
    uint64_t counted, completed;
    sums(lg, &counted, &completed);
    double dt = (double)(now - pr->t_last) / NS_PER_S;
    double rate = (double)(completed - pr->completed_last) / dt;
    fprintf(stderr, "urt-load: %6.1fs %-8s %10.0f msg/s %9.2f MB/s  open %u/%u  counted %llu\n",
            (double)(now - pr->t0) / NS_PER_S, what, rate, rate * (double)lg->o.size / 1e6,
            atomic_load_explicit(&lg->open, memory_order_relaxed), lg->o.conns, (unsigned long long)counted);
    pr->t_last = now;
    pr->completed_last = completed;
}

/* Sleep until `until` (urt_now clock) in steps of at most `step`, or until
 * done(lg) says so, or (unless this is the drain) a signal asks to stop. */
static void wait_until(load *lg, progress *pr, const char *what, uint64_t until, uint64_t step,
                       bool (*done)(load *))
{
    bool draining = atomic_load_explicit(&lg->phase, memory_order_relaxed) == PH_STOP;
    for (uint64_t now = urt_now(); now < until; now = urt_now()) {
        if ((!draining && should_stop()) || (done && done(lg)))
            return;
        if (what)
            progress_tick(lg, pr, what);
        uint64_t left = until - now;
        if (urt_sleep(left < step ? left : step) < 0)
            return;
    }
}

static bool measure_done(load *lg)
{
    if (lg->o.idle && atomic_load_explicit(&hold_over, memory_order_relaxed))
        return true;
    if (atomic_load_explicit(&lg->live, memory_order_relaxed) == 0)
        return true;
    return lg->o.messages && atomic_load_explicit(&lg->claimed_done, memory_order_relaxed) >= lg->o.messages;
}

static bool all_ended(load *lg)
{
    return atomic_load_explicit(&lg->live, memory_order_relaxed) == 0;
}

static bool batch_settled(load *lg)
{
    return atomic_load_explicit(&lg->settled, memory_order_relaxed) >= lg->batch_target || atomic_load_explicit(&lg->live, memory_order_relaxed) == 0;
}

typedef struct batch {
    load *lg;
    urt_runtime *rt;
    urt_task **handles;
    unsigned from, to;
} batch;

/* Runs off the workers (urt_block_in_place), so every spawn goes through the
 * runtime's inject queue, from which each worker takes its share; spawned
 * from the coordinator's own worker, a small batch would be run there before
 * an idle worker woke up to steal it. */
static void *spawn_batch(void *arg)
{
    batch *b = arg;
    load *lg = b->lg;
    for (unsigned j = b->from; j < b->to; j++) {
        urt_task *t = NULL;
        atomic_fetch_add_explicit(&lg->live, 1, memory_order_relaxed);
        int r = urt_spawn(b->rt, &t, conn_main, &lg->conns[j]);
        if (r < 0) {
            atomic_fetch_sub_explicit(&lg->live, 1, memory_order_relaxed);
            atomic_fetch_add_explicit(&lg->settled, 1, memory_order_relaxed);
            lg->spawn_errors++;
            continue;
        }
        b->handles[j] = t;
    }
    return NULL;
}

/* Let every connection past the start line (see conn_traffic). */
static void release_all(load *lg, urt_task **handles)
{
    for (unsigned i = 0; i < lg->o.conns; i++)
        if (handles[i])
            urt_notify_signal(lg->conns[i].go);
}

/* --idle-wake: wake the picked connections one after the other, each
 * after the previous one's echo is back (or its op timeout passed). */
static void wake_picked(load *lg, urt_task **handles)
{
    uint64_t old = urt_op_timeout((uint64_t)(lg->o.timeout * NS_PER_S) + NS_PER_S);
    unsigned woken = 0;
    for (unsigned i = 0; i < lg->o.conns && !should_stop(); i++) {
        conn *c = &lg->conns[i];
        if (!c->wake_pick || !handles[i] || !c->connected)
            continue;
        urt_notify_signal(c->go);
        if (urt_notify_wait(lg->wake_done) < 0)
            break;
        woken++;
    }
    urt_op_timeout(old);
    printf("wake: %u idle connections woken one at a time\n", woken);
    fflush(stdout);
}

static void *coordinator(void *arg)
{
    load *lg = arg;
    const options *o = &lg->o;
    progress pr = {.t0 = urt_now()};
    pr.t_last = pr.t0;
    urt_task **handles = calloc(o->conns, sizeof(*handles));
    if (!handles)
        return (void *)(intptr_t)-ENOMEM;
    uint64_t op_ns = (uint64_t)(o->timeout * NS_PER_S);

    /* 1. connect in batches */
    lg->t_begin = urt_now();
    atomic_store_explicit(&lg->phase, PH_CONNECT, memory_order_relaxed);
    for (unsigned i = 0; i < o->conns && !should_stop();) {
        unsigned n = o->conns - i < o->batch ? o->conns - i : o->batch;
        batch b = {.lg = lg, .rt = urt_current(), .handles = handles, .from = i, .to = i + n};
        urt_block_in_place(spawn_batch, &b, NULL);
        i += n;
        lg->batch_target = i;
        /* a connect and a first round trip, each under the op timeout */
        wait_until(lg, &pr, "connect", urt_now() + 2 * op_ns + NS_PER_S, 200 * NS_PER_US,
                   batch_settled);
        if (o->pace > 0 && i < o->conns)
            wait_until(lg, &pr, "connect", urt_now() + (uint64_t)(o->pace * NS_PER_MS), NS_PER_S, NULL);
    }

    lg->t_connected = urt_now();

    /* 2. warm-up */
    if (o->warmup > 0) {
        atomic_store_explicit(&lg->phase, PH_WARMUP, memory_order_relaxed);
        release_all(lg, handles);
        wait_until(lg, &pr, "warmup", urt_now() + (uint64_t)(o->warmup * NS_PER_S), 10 * NS_PER_MS,
                   all_ended);
    }

    /* 3. measure (or hold the idle connections) */
    if (o->idle) {
        printf("idle: %u connections open\n", atomic_load_explicit(&lg->open, memory_order_relaxed));
        fflush(stdout);
    }
    lg->t_start = urt_now();
    atomic_store_explicit(&lg->phase, PH_MEASURE, memory_order_relaxed);
    if (o->warmup <= 0 && !o->idle)
        release_all(lg, handles);
    if (!should_stop()) {
        uint64_t until = lg->t_start + (uint64_t)(o->duration * NS_PER_S);
        wait_until(lg, &pr, o->idle ? "idle" : "measure", until,
                   o->messages ? NS_PER_MS / 4 : 10 * NS_PER_MS, measure_done);
    }
    lg->t_end = urt_now();
    if (o->idle_wake && !should_stop())
        wake_picked(lg, handles);

    /* 4. stop: drain, then cancel the stragglers */
    atomic_store_explicit(&lg->phase, PH_STOP, memory_order_relaxed);
    if (!o->idle)
        wait_until(lg, &pr, NULL, urt_now() + DRAIN_GRACE, NS_PER_MS, all_ended);
    lg->t_drained = urt_now();
    if (atomic_load_explicit(&lg->live, memory_order_relaxed) != 0) {
        for (unsigned i = 0; i < o->conns; i++)
            if (handles[i])
                urt_cancel(handles[i]);
    }
    uint64_t old = urt_op_timeout(JOIN_TIMEOUT);
    unsigned stuck = 0;
    for (unsigned i = 0; i < o->conns; i++) {
        if (!handles[i])
            continue;
        int r = urt_join(handles[i], NULL);
        if (r == 0 || r == -ECANCELED) {
            lg->conns[i].joined = true;
        } else {
            stuck++;
            urt_detach(handles[i]);
        }
    }
    urt_op_timeout(old);
    lg->t_joined = urt_now();
    if (stuck)
        fprintf(stderr, "urt-load: %u connection tasks did not end within %llu s of being cancelled\n",
                stuck, (unsigned long long)(JOIN_TIMEOUT / NS_PER_S));
    free(handles);
    return NULL;
}

/* ---- signals ---------------------------------------------------------------------- */

static void *signal_thread(void *arg)
{
    sigset_t *set = arg;
    for (int n = 0; n < 16; n++) {
        int sig = 0;
        if (sigwait(set, &sig) != 0)
            continue;
        if (sig == SIGUSR1)
            break;                              /* main says we are done */
        if (sig == SIGUSR2) {
            atomic_store_explicit(&hold_over, 1, memory_order_relaxed);    /* --idle: end the hold, go on as after --duration */
            continue;
        }
        if (atomic_exchange(&stop_requested, 1) != 0)
            _exit(128 + sig);                   /* the second one */
    }
    return NULL;
}

/* ---- command line ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
        "usage: urt-load [options]\n"
        "  --addr HOST:PORT   echo server (default 127.0.0.1:7777; IPv6 as [::1]:7777)\n"
        "  --conns N          connections, one task each (default 1)\n"
        "  --size BYTES       bytes per message (default 64)\n"
        "  --depth D          messages in flight per connection (default 1)\n"
        "  --duration S       seconds measured (default 5)\n"
        "  --messages N       stop after N messages in all instead (--duration then caps it)\n"
        "  --warmup S         seconds of traffic before measuring, not counted (default 0)\n"
        "  --workers W        runtime worker threads (default: one per CPU)\n"
        "  --timeout S        limit on each connect, send and receive (default 10)\n"
        "  --batch N          connections opened at a time (default 128); the next batch\n"
        "                     starts when each has made a first round trip (with --idle:\n"
        "                     when each is connected)\n"
        "  --pace MS          pause between batches (default 0)\n"
        "  --idle             open the connections, send nothing, hold them for --duration\n"
        "                     (default 10 s) or until SIGINT/SIGTERM\n"
        "  --idle-talk        as --idle, but each connection first echoes 4 bytes once\n"
        "  --idle-wake N      with --idle(-talk): after the hold, N connections spread over\n"
        "                     all of them send one 4-byte echo each, one at a time; its round\n"
        "                     trip (the first message after idling) is the last line's p50/p99\n"
        "  --verbose          per-worker connection counts and runtime counters\n"
        "  --help\n"
        "Also the flags of the common echo benchmark client: -a/--address = --addr,\n"
        "-c/--number = --conns, -l/--length = --size, -t/--duration.\n"
        "Last line: msgs_per_s= mb_per_s= p50_us= p99_us= p999_us= errors= mismatches=\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_secs(const char *s, double lo, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo) || v > 1e6)
        return false;
    *out = v;
    return true;
}

static int resolve(load *lg)
{
    char host[256];
    const char *a = lg->o.addr, *port;
    size_t hl;
    if (a[0] == '[') {
        const char *rb = strchr(a, ']');
        if (!rb || rb[1] != ':')
            return -EINVAL;
        hl = (size_t)(rb - a - 1);
        a++;
        port = rb + 2;
    } else {
        const char *colon = strrchr(a, ':');
        if (!colon)
            return -EINVAL;
        hl = (size_t)(colon - a);
        port = colon + 1;
    }
    if (hl == 0 || hl >= sizeof(host) || !*port)
        return -EINVAL;
    memcpy(host, a, hl);
    host[hl] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int r = getaddrinfo(host, port, &hints, &res);
    if (r != 0) {
        fprintf(stderr, "urt-load: %s: %s\n", lg->o.addr, gai_strerror(r));
        return -ENOENT;
    }
    memcpy(&lg->sa, res->ai_addr, res->ai_addrlen);
    lg->salen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static int parse_args(options *o, int argc, char **argv)
{
    enum { O_ADDR = 256, O_CONNS, O_SIZE, O_DEPTH, O_DURATION, O_MESSAGES, O_WARMUP, O_WORKERS,
           O_TIMEOUT, O_BATCH, O_PACE, O_IDLE, O_IDLE_TALK, O_IDLE_WAKE, O_VERBOSE, O_HELP };
    static const struct option longs[] = {
        {"addr", required_argument, NULL, O_ADDR},
        {"address", required_argument, NULL, O_ADDR},
        {"conns", required_argument, NULL, O_CONNS},
        {"number", required_argument, NULL, O_CONNS},
        {"size", required_argument, NULL, O_SIZE},
        {"length", required_argument, NULL, O_SIZE},
        {"depth", required_argument, NULL, O_DEPTH},
        {"duration", required_argument, NULL, O_DURATION},
        {"messages", required_argument, NULL, O_MESSAGES},
        {"warmup", required_argument, NULL, O_WARMUP},
        {"workers", required_argument, NULL, O_WORKERS},
        {"timeout", required_argument, NULL, O_TIMEOUT},
        {"batch", required_argument, NULL, O_BATCH},
        {"pace", required_argument, NULL, O_PACE},
        {"idle", no_argument, NULL, O_IDLE},
        {"idle-talk", no_argument, NULL, O_IDLE_TALK},
        {"idle-wake", required_argument, NULL, O_IDLE_WAKE},
        {"verbose", no_argument, NULL, O_VERBOSE},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    *o = (options){.addr = "127.0.0.1:7777", .conns = 1, .size = 64, .depth = 1, .batch = 128,
                   .duration = 5, .warmup = 0, .timeout = 10};
    int ch;
    uint64_t v;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "a:c:l:t:h", longs, NULL)) != -1) {
        const char *bad = NULL;
        switch (ch) {
        case 'a': case O_ADDR:
            o->addr = optarg;
            break;
        case 'c': case O_CONNS:
            if (!parse_u64(optarg, 1, MAX_CONNS, &v)) bad = "--conns"; else o->conns = (unsigned)v;
            break;
        case 'l': case O_SIZE:
            if (!parse_u64(optarg, 1, MAX_SIZE, &v)) bad = "--size"; else o->size = (size_t)v;
            break;
        case O_DEPTH:
            if (!parse_u64(optarg, 1, MAX_DEPTH, &v)) bad = "--depth"; else o->depth = (unsigned)v;
            break;
        case 't': case O_DURATION:
            if (!parse_secs(optarg, 0.001, &o->duration)) bad = "--duration"; else o->duration_set = true;
            break;
        case O_MESSAGES:
            if (!parse_u64(optarg, 1, UINT64_MAX / 2, &o->messages)) bad = "--messages";
            break;
        case O_WARMUP:
            if (!parse_secs(optarg, 0, &o->warmup)) bad = "--warmup";
            break;
        case O_WORKERS:
            if (!parse_u64(optarg, 1, 1024, &v)) bad = "--workers"; else o->workers = (unsigned)v;
            break;
        case O_TIMEOUT:
            if (!parse_secs(optarg, 0.001, &o->timeout)) bad = "--timeout";
            break;
        case O_BATCH:
            if (!parse_u64(optarg, 1, MAX_CONNS, &v)) bad = "--batch"; else o->batch = (unsigned)v;
            break;
        case O_PACE:
            if (!parse_secs(optarg, 0, &o->pace)) bad = "--pace";
            break;
        case O_IDLE:
            o->idle = true;
            break;
        case O_IDLE_TALK:
            o->idle = o->idle_talk = true;
            break;
        case O_IDLE_WAKE:
            if (!parse_u64(optarg, 0, MAX_CONNS, &v)) bad = "--idle-wake"; else o->idle_wake = (unsigned)v;
            break;
        case O_VERBOSE:
            o->verbose = true;
            break;
        case 'h': case O_HELP:
            usage(stdout);
            exit(0);
        default:
            fprintf(stderr, "urt-load: unknown or incomplete option '%s'\n", argv[optind - 1]);
            usage(stderr);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "urt-load: bad value '%s' for %s\n", optarg, bad);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "urt-load: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (o->messages && o->idle) {
        fprintf(stderr, "urt-load: --messages and --idle do not go together\n");
        return -1;
    }
    if (o->messages && !o->duration_set)
        o->duration = MESSAGES_CAP;
    if (o->idle && !o->duration_set)
        o->duration = IDLE_HOLD;
    if (o->idle_wake && !o->idle) {
        fprintf(stderr, "urt-load: --idle-wake goes with --idle or --idle-talk\n");
        return -1;
    }
    if (o->idle_wake > o->conns)
        o->idle_wake = o->conns;
    return 0;
}

static void raise_nofile(unsigned conns)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)conns + 64)
        fprintf(stderr, "urt-load: RLIMIT_NOFILE is %llu, fewer than %u connections need\n",
                (unsigned long long)rl.rlim_cur, conns + 64);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void print_verbose(load *lg, urt_runtime *rt)
{
    int nw = urt_runtime_stats(rt, NULL, 0);
    if (nw <= 0)
        return;
    urt_worker_stats *st = calloc((size_t)nw, sizeof(*st));
    unsigned *per = calloc((size_t)nw, sizeof(*per));
    if (st && per) {
        urt_runtime_stats(rt, st, (unsigned)nw);
        for (unsigned i = 0; i < lg->o.conns; i++)
            if (lg->conns[i].worker >= 0 && lg->conns[i].worker < nw)
                per[lg->conns[i].worker]++;
        for (int w = 0; w < nw; w++)
            printf("worker %d: conns %u polls %llu stolen %llu inject %llu enters %llu sqes %llu cqes %llu "
                   "parks %llu\n",
                   w, per[w], (unsigned long long)st[w].polls, (unsigned long long)st[w].tasks_stolen,
                   (unsigned long long)st[w].inject_schedules, (unsigned long long)st[w].enters,
                   (unsigned long long)st[w].sqes_submitted, (unsigned long long)st[w].cqes_reaped,
                   (unsigned long long)st[w].parks);
    }
    printf("phases: connect %.3f s, warmup %.3f s, measure %.3f s, drain %.3f s, join %.3f s\n",
           (double)(lg->t_connected - lg->t_begin) / NS_PER_S, (double)(lg->t_start - lg->t_connected) / NS_PER_S,
           (double)(lg->t_end - lg->t_start) / NS_PER_S, (double)(lg->t_drained - lg->t_end) / NS_PER_S,
           (double)(lg->t_joined - lg->t_drained) / NS_PER_S);
    free(st);
    free(per);

    /* fairness: how the counted messages spread over the connections */
    uint64_t *n = malloc(lg->o.conns * sizeof(*n));
    if (n && !lg->o.idle) {
        unsigned k = 0;
        for (unsigned i = 0; i < lg->o.conns; i++)
            if (lg->conns[i].joined && lg->conns[i].connected)
                n[k++] = atomic_load_explicit(&lg->conns[i].counted, memory_order_relaxed);
        if (k) {
            qsort(n, k, sizeof(*n), cmp_u64);
            printf("messages per connection: min %llu  p10 %llu  median %llu  p90 %llu  max %llu\n",
                   (unsigned long long)n[0], (unsigned long long)n[k / 10], (unsigned long long)n[k / 2],
                   (unsigned long long)n[k - 1 - (k - 1) / 10], (unsigned long long)n[k - 1]);
        }
    }
    free(n);
}

int main(int argc, char **argv)
{
    static load lg;
    if (parse_args(&lg.o, argc, argv) < 0)
        return 2;
    const options *o = &lg.o;
    if (resolve(&lg) < 0) {
        fprintf(stderr, "urt-load: bad --addr '%s' (want HOST:PORT, or [IPv6]:PORT)\n", o->addr);
        return 2;
    }
    raise_nofile(o->conns);
    signal(SIGPIPE, SIG_IGN);

    lg.conns = aligned_alloc(LINE, (size_t)o->conns * sizeof(conn));
    if (!lg.conns) {
        fprintf(stderr, "urt-load: out of memory\n");
        return 2;
    }
    memset(lg.conns, 0, (size_t)o->conns * sizeof(conn));
    for (unsigned i = 0; i < o->conns; i++) {
        lg.conns[i].lg = &lg;
        lg.conns[i].id = i;
        lg.conns[i].worker = -1;
    }
    lg.progress = isatty(STDERR_FILENO);

    /* signals go to one thread; every thread created from here inherits the mask */
    static sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    pthread_t sigthr;
    bool have_sigthr = pthread_create(&sigthr, NULL, signal_thread, &set) == 0;

    for (unsigned i = 0; i < o->conns; i++) {
        int r = urt_notify_create(&lg.conns[i].go);
        if (r < 0) {
            fprintf(stderr, "urt-load: urt_notify_create: %s\n", strerror(-r));
            return 2;
        }
    }
    if (o->idle_wake) {
        int r = urt_notify_create(&lg.wake_done);
        if (r < 0) {
            fprintf(stderr, "urt-load: urt_notify_create: %s\n", strerror(-r));
            return 2;
        }
        /* spread over all the connections: over every batch and worker */
        for (unsigned k = 0; k < o->idle_wake; k++)
            lg.conns[(uint64_t)k * o->conns / o->idle_wake].wake_pick = true;
    }
    urt_config cfg = {.workers = o->workers};
    urt_runtime *rt = NULL;
    int r = urt_runtime_create(&rt, &cfg);
    if (r < 0) {
        fprintf(stderr, "urt-load: urt_runtime_create: %s\n", strerror(-r));
        return 2;
    }
    int nworkers = urt_runtime_stats(rt, NULL, 0);
    if (o->idle)
        printf("urt-load: %s idle conns=%u workers=%d hold=%.1fs\n", o->addr, o->conns, nworkers, o->duration);
    else if (o->messages)
        printf("urt-load: %s conns=%u size=%zu depth=%u workers=%d messages=%llu warmup=%.1fs\n", o->addr,
               o->conns, o->size, o->depth, nworkers, (unsigned long long)o->messages, o->warmup);
    else
        printf("urt-load: %s conns=%u size=%zu depth=%u workers=%d duration=%.1fs warmup=%.1fs\n", o->addr,
               o->conns, o->size, o->depth, nworkers, o->duration, o->warmup);
    fflush(stdout);

    r = urt_runtime_block_on(rt, coordinator, &lg, NULL);
    if (r < 0)
        fprintf(stderr, "urt-load: urt_runtime_block_on: %s\n", strerror(-r));
    if (o->verbose)
        print_verbose(&lg, rt);
    urt_runtime_destroy(rt);

    if (have_sigthr) {
        pthread_kill(sigthr, SIGUSR1);
        pthread_join(sigthr, NULL);
    }

    /* merge */
    static hist_total tot;
    uint64_t err[E_KINDS] = {0}, mismatches = 0, errors = lg.spawn_errors;
    unsigned connected = 0, undrained = 0;
    for (unsigned i = 0; i < o->conns; i++) {
        conn *c = &lg.conns[i];
        if (!c->joined)
            continue;                       /* still running somewhere: leave it be */
        for (int k = 0; k < E_KINDS; k++)
            err[k] += c->err[k];
        mismatches += c->mismatches;
        connected += c->connected;
        undrained += c->undrained;
        urt_notify_destroy(c->go);
        if (c->h)
            hist_merge_into(&tot, c->h);
        free(c->h);
    }
    for (int k = 0; k < E_KINDS; k++)
        errors += err[k];

    double secs = (double)(lg.t_end - lg.t_start) / NS_PER_S;
    if (secs <= 0)
        secs = 1e-9;
    double mps = (double)tot.count / secs;
    double mbps = mps * (double)o->size / 1e6;
    double p50 = (double)hist_quantile(&tot, 0.50) / NS_PER_US;
    double p99 = (double)hist_quantile(&tot, 0.99) / NS_PER_US;
    double p999 = (double)hist_quantile(&tot, 0.999) / NS_PER_US;

    printf("connected %u/%u  errors %llu (", connected, o->conns, (unsigned long long)errors);
    for (int k = 0; k < E_KINDS; k++)
        printf("%s%s %llu", k ? ", " : "", err_names[k], (unsigned long long)err[k]);
    if (lg.spawn_errors)
        printf(", spawn %llu", (unsigned long long)lg.spawn_errors);
    printf(")  mismatches %llu\n", (unsigned long long)mismatches);
    if (undrained)
        printf("%u connections still had echoes outstanding %.1f s after the end (not counted as errors)\n",
               undrained, (double)DRAIN_GRACE / NS_PER_S);
    if (o->idle && o->idle_wake && tot.count)
        printf("first message after idling, %llu connections: p50 %.1f us  p99 %.1f us  max %.1f us\n",
               (unsigned long long)tot.count, p50, p99, (double)tot.max / NS_PER_US);
    if (!o->idle) {
        printf("messages %llu in %.3f s: %.0f msg/s, %.2f MB/s each way\n", (unsigned long long)tot.count, secs,
               mps, mbps);
        if (tot.count)
            printf("latency us: min %.1f  mean %.1f  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n",
                   (double)tot.min / NS_PER_US, (double)tot.sum / (double)tot.count / NS_PER_US, p50,
                   (double)hist_quantile(&tot, 0.90) / NS_PER_US, p99, p999, (double)tot.max / NS_PER_US);
    }
    printf("msgs_per_s=%.0f mb_per_s=%.3f p50_us=%.1f p99_us=%.1f p999_us=%.1f errors=%llu mismatches=%llu\n", mps,
           mbps, p50, p99, p999, (unsigned long long)errors, (unsigned long long)mismatches);
    fflush(stdout);
    free(lg.conns);
    if (lg.wake_done)
        urt_notify_destroy(lg.wake_done);

    if (mismatches)
        return 1;
    if (!o->idle && tot.count == 0)
        return 1;
    return 0;
}
