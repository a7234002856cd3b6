/*
 * sched.c - the scheduler benchmark: Tokio's benches/rt_multi_threaded.rs
 * workloads, at the same sizes, on urt, then three micro benchmarks.
 *
 * Workloads (each on a fresh runtime per worker count; 2 warm-up and --iters
 * timed iterations; one key=value line each):
 *   spawn_many_local         a task spawns 10,000 tasks that count down; the
 *                            last one signals the waiting root task
 *   spawn_many_remote_idle   a plain thread spawns 10,000 tasks with handles
 *                            and joins them all
 *   spawn_many_remote_busy1  the same while 8 tasks (started round-robin)
 *                            loop: yield, stall 10 us
 *   spawn_many_remote_busy2  1,000 remote spawns + joins while 4 chains of
 *                            tasks stall 10 us and respawn themselves
 *   ping_pong                1,000 pings, each a task that spawns a partner
 *                            and trades two urt_notify signals with it
 *   yield_many               200 tasks x 1,000 urt_yield()
 *   chained_spawn            a chain of 1,000 tasks, each spawning the next
 *
 * Micro benchmarks:
 *   switch      raw fiber_switch between a thread and one fiber; two tasks
 *               yielding to each other on a 1-worker runtime
 *   spawn_join  spawn + run + join of an empty task, inside a task, 1 worker
 *   wake_rtt    round trip through two urt_notify between tasks on two
 *               different workers, and two plain threads on two futex words;
 *               with two CPUs or more both pairs are pinned to the first
 *               two CPUs the process may use
 *   wake_cold   one worker, 500 and then 5,000 tasks each parked on its own
 *               urt_notify; a driver task signals every one in a shuffled
 *               order, 64 at a time, and waits until those have run and
 *               parked again: the
 *               user-space cost of waking and resuming a task whose header
 *               and stack are out of the nearer caches, as a server's
 *               connection task is between two messages (ns per wake,
 *               median of the rounds)
 *
 * Each workload and micro benchmark runs on its own thread (the "main
 * thread" of the workload: a plain, non-runtime thread). The program's main
 * thread waits for it with a deadline (--timeout-s); past it, the line reads
 * TIMEOUT, the runtime's live tasks go to stderr, background load is told to
 * stop and the program goes on with the next item. The exit status is 1 when
 * anything failed or timed out.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "include/urt.h"
#include "runtime/fiber.h"
#include "runtime/stack.h"

#define NUM_SPAWN       10000u
#define NUM_SPAWN_BUSY2 1000u
#define NUM_PINGS       1000u
#define YIELD_TASKS     200u
#define YIELDS_PER_TASK 1000u
#define CHAIN_LEN       1000u
#define STALL_NS        10000u
#define BUSY1_TASKS     8u     /* upstream: 2 x its 4 workers */
#define BUSY2_TASKS     4u     /* upstream: its 4 workers */
#define STOP_GRACE_S    10
#define MAX_WORKER_COUNTS 16
#define MAX_ROWS        128

/* ------------------------------------------------------------------------ */
/* helpers                                                                    */
/* ------------------------------------------------------------------------ */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "sched: %s failed: %s\n", what, strerror(rc < 0 ? -rc : rc));
    fflush(stdout);
    abort();
}

#define CHECK(call)                   \
    do {                              \
        int rc_ = (call);             \
        if (rc_ < 0)                  \
            die(#call, rc_);          \
    } while (0)

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v in place. */
static double median_u64(uint64_t *v, unsigned n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof(*v), cmp_u64);
    if (n % 2)
        return (double)v[n / 2];
    return ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2.0;
}

/* Busy-wait about 10 us, giving the CPU away in between, as the upstream
 * benchmark's stall() does with thread::yield_now(). */
static void stall(void)
{
    uint64_t start = now_ns();
    while (now_ns() - start < STALL_NS)
        sched_yield();
}

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* ------------------------------------------------------------------------ */
/* options                                                                    */
/* ------------------------------------------------------------------------ */

static struct {
    unsigned workers[MAX_WORKER_COUNTS];
    unsigned nworkers;
    unsigned iters, warmups;
    double timeout_s;
    bool quick, no_micro;
    unsigned busy1_tasks, busy2_tasks;
    unsigned spin_us;          /* urt_config.spin_us of every runtime (0: the default) */
    char **only;
    unsigned nonly;
} opt;

/* ------------------------------------------------------------------------ */
/* results table                                                              */
/* ------------------------------------------------------------------------ */

typedef struct row {
    char name[48];
    unsigned workers;
    char status[16];     /* "" when measured */
    double med, min, max;   /* ns per op */
} row;

static row rows[MAX_ROWS];
static unsigned nrows;

typedef struct micro_row {
    char what[64];
    char value[96];
} micro_row;

static micro_row micro_rows[32];
static unsigned nmicro_rows;

static void add_micro_row(const char *what, const char *fmt, ...)
{
    if (nmicro_rows >= sizeof(micro_rows) / sizeof(micro_rows[0]))
        return;
    micro_row *m = &micro_rows[nmicro_rows++];
    snprintf(m->what, sizeof(m->what), "%s", what);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(m->value, sizeof(m->value), fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* jobs: one workload or micro benchmark on its own thread, under a deadline  */
/* ------------------------------------------------------------------------ */

typedef struct job job;
typedef void (*job_fn)(job *j);

struct job {
    const char *name;
    unsigned workers;
    job_fn run;
    const void *arg;
    /* set by the job thread before it finishes */
    uint64_t *samples;
    unsigned nsamples;
    char fail[160];                  /* non-empty: the job failed */
    urt_worker_stats stats_sum;
    bool has_stats;
    uint64_t tasks_per_iter;         /* lower bound on polls per iteration */
    /* shared with the main thread */
    _Atomic int stop;                /* main: timed out; background load ends */
    _Atomic unsigned done_iters;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    bool finished;                   /* under lock */
    urt_runtime *rt;                 /* under lock; NULL once it is being destroyed */
};

static void job_set_rt(job *j, urt_runtime *rt)
{
    pthread_mutex_lock(&j->lock);
    j->rt = rt;
    pthread_mutex_unlock(&j->lock);
}

static void job_failf(job *j, const char *fmt, ...)
{
    if (j->fail[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->fail, sizeof(j->fail), fmt, ap);
    va_end(ap);
}

static void *job_thread(void *p)
{
    job *j = p;
    j->run(j);
    pthread_mutex_lock(&j->lock);
    j->finished = true;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->lock);
    return NULL;
}

static void add_ns(struct timespec *ts, uint64_t ns)
{
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec += (long)(ns % 1000000000u);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

static bool wait_finished(job *j, uint64_t ns)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    add_ns(&dl, ns);
    pthread_mutex_lock(&j->lock);
    while (!j->finished) {
        if (pthread_cond_timedwait(&j->cv, &j->lock, &dl) == ETIMEDOUT)
            break;
    }
    bool f = j->finished;
    pthread_mutex_unlock(&j->lock);
    return f;
}

/* Print the first `max_lines` lines of the runtime's task dump to stderr. */
static void dump_head(urt_runtime *rt, unsigned max_lines)
{
    FILE *tmp = tmpfile();
    if (!tmp)
        return;
    int n = urt_runtime_dump(rt, fileno(tmp));
    rewind(tmp);
    fprintf(stderr, "sched: %d live task(s):\n", n);
    char line[256];
    unsigned k = 0;
    while (k < max_lines && fgets(line, sizeof(line), tmp)) {
        fputs("  ", stderr);
        fputs(line, stderr);
        k++;
    }
    if (n > (int)k)
        fprintf(stderr, "  ... %d more\n", n - (int)k);
    fclose(tmp);
}

static void sum_stats(urt_runtime *rt, urt_worker_stats *sum)
{
    urt_worker_stats st[64];
    int n = urt_runtime_stats(rt, st, 64);
    memset(sum, 0, sizeof(*sum));
    for (int i = 0; i < n && i < 64; i++) {
        sum->polls += st[i].polls;
        sum->lifo_polls += st[i].lifo_polls;
        sum->local_schedules += st[i].local_schedules;
        sum->inject_schedules += st[i].inject_schedules;
        sum->overflows += st[i].overflows;
        sum->steal_attempts += st[i].steal_attempts;
        sum->steals += st[i].steals;
        sum->tasks_stolen += st[i].tasks_stolen;
        sum->mailbox_pushes += st[i].mailbox_pushes;
        sum->parks += st[i].parks;
        sum->wakes_sent += st[i].wakes_sent;
        sum->wakes_received += st[i].wakes_received;
        sum->sqes_submitted += st[i].sqes_submitted;
        sum->cqes_reaped += st[i].cqes_reaped;
        sum->enters += st[i].enters;
        sum->busy_ns += st[i].busy_ns;
        sum->watchdog_stalls += st[i].watchdog_stalls;
    }
}

static void print_stats(const char *name, unsigned workers, const urt_worker_stats *s, uint64_t min_polls)
{
    printf("stats workload=%s workers=%u polls=%llu lifo_polls=%llu local_schedules=%llu "
           "inject_schedules=%llu overflows=%llu steal_attempts=%llu steals=%llu tasks_stolen=%llu "
           "mailbox_pushes=%llu parks=%llu wakes_sent=%llu wakes_received=%llu enters=%llu "
           "watchdog_stalls=%llu min_polls=%llu check=%s\n",
           name, workers, (unsigned long long)s->polls, (unsigned long long)s->lifo_polls,
           (unsigned long long)s->local_schedules, (unsigned long long)s->inject_schedules,
           (unsigned long long)s->overflows, (unsigned long long)s->steal_attempts,
           (unsigned long long)s->steals, (unsigned long long)s->tasks_stolen,
           (unsigned long long)s->mailbox_pushes, (unsigned long long)s->parks,
           (unsigned long long)s->wakes_sent, (unsigned long long)s->wakes_received,
           (unsigned long long)s->enters, (unsigned long long)s->watchdog_stalls,
           (unsigned long long)min_polls, min_polls == 0 ? "n/a" : s->polls >= min_polls ? "ok" : "LOW_POLLS");
}

static int exit_status;

/* Run j on its own thread under the deadline. Returns true when it finished
 * (successfully or not); false on timeout (j is then leaked). */
static bool run_job(job *j, const char *head)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&j->lock, NULL);

    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    int rc = pthread_create(&th, &attr, job_thread, j);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        printf("%s FAILED reason=pthread_create\n", head);
        exit_status = 1;
        return true;
    }
    if (wait_finished(j, (uint64_t)(opt.timeout_s * 1e9))) {
        pthread_join(th, NULL);
        return true;
    }
    unsigned done = atomic_load(&j->done_iters);
    printf("%s TIMEOUT timeout_s=%g completed_iters=%u\n", head, opt.timeout_s, done);
    fflush(stdout);
    exit_status = 1;
    pthread_mutex_lock(&j->lock);
    if (j->rt) {
        urt_worker_stats s;
        sum_stats(j->rt, &s);
        print_stats(j->name, j->workers, &s, 0);
        dump_head(j->rt, 40);
    }
    pthread_mutex_unlock(&j->lock);
    atomic_store(&j->stop, 1);
    if (!wait_finished(j, (uint64_t)STOP_GRACE_S * 1000000000u)) {
        fprintf(stderr, "sched: %s still running %ds after being told to stop; later results may be disturbed\n",
                j->name, STOP_GRACE_S);
        pthread_detach(th);
    } else {
        pthread_join(th, NULL);
    }
    return false;
}

static urt_runtime *make_runtime_flags(job *j, unsigned workers, unsigned flags)
{
    urt_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.workers = workers;
    cfg.flags = flags;
    cfg.spin_us = opt.spin_us;
    urt_runtime *rt = NULL;
    int rc = urt_runtime_create(&rt, &cfg);
    if (rc < 0) {
        job_failf(j, "urt_runtime_create(workers=%u): %s", workers, strerror(-rc));
        return NULL;
    }
    job_set_rt(j, rt);
    return rt;
}

static urt_runtime *make_runtime(job *j, unsigned workers) { return make_runtime_flags(j, workers, 0); }

/* Shut down with a grace period for background tasks to see their stop flag,
 * read the counters, destroy. */
static void finish_runtime(job *j, urt_runtime *rt)
{
    int rc = urt_runtime_shutdown(rt, 2000000000ull);
    if (rc < 0)
        job_failf(j, "urt_runtime_shutdown: %s", strerror(-rc));
    sum_stats(rt, &j->stats_sum);
    j->has_stats = true;
    job_set_rt(j, NULL);
    urt_runtime_destroy(rt);
}

/* ------------------------------------------------------------------------ */
/* workloads                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct wctx {
    urt_runtime *rt;
    job *j;
    urt_notify *done;             /* the last task of an iteration signals it */
    _Atomic unsigned remaining;   /* tasks of the iteration not yet finished */
    _Atomic int stop;             /* background load ends */
    unsigned chain_left;          /* chained_spawn: written by one task, then the next it spawns */
    urt_task **handles;
    urt_task **busy;
    unsigned nbusy;
} wctx;

typedef struct workload {
    const char *name;
    unsigned ops;
    uint64_t tasks_per_iter;
    void (*start)(wctx *c);       /* background load; may be NULL */
    int (*iter)(wctx *c);         /* one iteration: 0 or -errno */
    void (*stop)(wctx *c);        /* may be NULL */
} workload;

static bool stop_requested(wctx *c)
{
    return atomic_load_explicit(&c->stop, memory_order_relaxed) ||
           atomic_load_explicit(&c->j->stop, memory_order_relaxed);
}

/* The last of c->remaining to finish signals c->done. */
static void count_down(wctx *c)
{
    /* acq_rel: the last decrement sees every earlier task's, and the
     * waiter's wake (through the notify's lock) sees them all */
    if (atomic_fetch_sub_explicit(&c->remaining, 1, memory_order_acq_rel) == 1)
        CHECK(urt_notify_signal(c->done));
}

/* spawn_many_local ------------------------------------------------------- */

static void *sml_child(void *p)
{
    count_down(p);
    return NULL;
}

static void *sml_root(void *p)
{
    wctx *c = p;
    for (unsigned i = 0; i < NUM_SPAWN; i++)
        CHECK(urt_spawn(NULL, NULL, sml_child, c));
    CHECK(urt_notify_wait(c->done));
    return NULL;
}

static int sml_iter(wctx *c)
{
    atomic_store(&c->remaining, NUM_SPAWN);
    int rc = urt_runtime_block_on(c->rt, sml_root, c, NULL);
    if (rc == 0 && atomic_load(&c->remaining) != 0)
        rc = -EPROTO;
    return rc;
}

/* spawn_many_remote_* ---------------------------------------------------- */

static void *ret_arg(void *p) { return p; }

static int remote_spawn_join(wctx *c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        int rc = urt_spawn(c->rt, &c->handles[i], ret_arg, (void *)(uintptr_t)(i + 1));
        if (rc < 0)
            return rc;
    }
    for (unsigned i = 0; i < n; i++) {
        void *ret = NULL;
        int rc = urt_join(c->handles[i], &ret);
        if (rc < 0)
            return rc;
        if ((uintptr_t)ret != i + 1)
            return -EPROTO;
    }
    return 0;
}

static int remote_iter(wctx *c) { return remote_spawn_join(c, NUM_SPAWN); }
static int remote_busy2_iter(wctx *c) { return remote_spawn_join(c, NUM_SPAWN_BUSY2); }

static void *busy1_task(void *p)
{
    wctx *c = p;
    while (!stop_requested(c)) {
        urt_yield();
        stall();
    }
    return NULL;
}

static void busy1_start(wctx *c)
{
    c->nbusy = opt.busy1_tasks;
    c->busy = calloc(c->nbusy, sizeof(*c->busy));
    if (!c->busy)
        die("calloc", -ENOMEM);
    /* long-lived tasks, which urt keeps on the worker that first runs them:
     * started round-robin (URT_TASK_SPREAD, what urt.h advises for them),
     * as Tokio's end up spread by stealing. Plain spawns from this thread
     * mostly all start on the first worker to wake (8 of 8 in 5 of 6 runs
     * at 4 workers), which then spends 80 us of every slice on them. */
    const urt_spawn_opts o = {.flags = URT_TASK_SPREAD};
    for (unsigned i = 0; i < c->nbusy; i++)
        CHECK(urt_spawn_ex(c->rt, &c->busy[i], busy1_task, c, &o));
}

static void busy1_stop(wctx *c)
{
    atomic_store(&c->stop, 1);
    for (unsigned i = 0; i < c->nbusy; i++)
        CHECK(urt_join(c->busy[i], NULL));
    free(c->busy);
    c->busy = NULL;
}

static void *busy2_task(void *p)
{
    wctx *c = p;
    if (!stop_requested(c)) {
        stall();
        int rc = urt_spawn(NULL, NULL, busy2_task, c);
        if (rc < 0 && rc != -ESHUTDOWN)
            die("urt_spawn(busy2_task)", rc);
    }
    return NULL;
}

static void *busy2_starter(void *p)
{
    CHECK(urt_spawn(NULL, NULL, busy2_task, p));
    return NULL;
}

static void busy2_start(wctx *c)
{
    for (unsigned i = 0; i < opt.busy2_tasks; i++)
        CHECK(urt_spawn(c->rt, NULL, busy2_starter, c));
}

static void busy2_stop(wctx *c) { atomic_store(&c->stop, 1); }

/* ping_pong -------------------------------------------------------------- */

/* Shared by a ping and its partner. urt_notify_signal may still hold the
 * notify's lock when the woken side runs, so neither side frees the pair
 * alone: the last of the two to let go does. */
typedef struct pp_pair {
    _Atomic unsigned refs;   /* the ping and its partner */
    urt_notify *to_partner, *to_ping;
} pp_pair;

static void pp_put(pp_pair *pp)
{
    /* acq_rel: the last owner sees the other's last use of the pair */
    if (atomic_fetch_sub_explicit(&pp->refs, 1, memory_order_acq_rel) == 1) {
        urt_notify_destroy(pp->to_partner);
        urt_notify_destroy(pp->to_ping);
        free(pp);
    }
}

static void *pp_partner(void *p)
{
    pp_pair *pp = p;
    CHECK(urt_notify_wait(pp->to_partner));
    CHECK(urt_notify_signal(pp->to_ping));
    pp_put(pp);
    return NULL;
}

static void *pp_ping(void *p)
{
    wctx *c = p;
    pp_pair *pp = malloc(sizeof(*pp));
    if (!pp)
        die("malloc", -ENOMEM);
    atomic_init(&pp->refs, 2);
    CHECK(urt_notify_create(&pp->to_partner));
    CHECK(urt_notify_create(&pp->to_ping));
    CHECK(urt_spawn(NULL, NULL, pp_partner, pp));
    CHECK(urt_notify_signal(pp->to_partner));
    CHECK(urt_notify_wait(pp->to_ping));
    pp_put(pp);
    count_down(c);
    return NULL;
}

static void *pp_root(void *p)
{
    for (unsigned i = 0; i < NUM_PINGS; i++)
        CHECK(urt_spawn(NULL, NULL, pp_ping, p));
    return NULL;
}

static int pp_iter(wctx *c)
{
    atomic_store(&c->remaining, NUM_PINGS);
    int rc = urt_spawn(c->rt, NULL, pp_root, c);
    if (rc < 0)
        return rc;
    return urt_notify_wait(c->done);
}

/* yield_many ------------------------------------------------------------- */

static void *ym_task(void *p)
{
    for (unsigned i = 0; i < YIELDS_PER_TASK; i++)
        urt_yield();
    count_down(p);
    return NULL;
}

static int ym_iter(wctx *c)
{
    atomic_store(&c->remaining, YIELD_TASKS);
    for (unsigned i = 0; i < YIELD_TASKS; i++) {
        int rc = urt_spawn(c->rt, NULL, ym_task, c);
        if (rc < 0)
            return rc;
    }
    return urt_notify_wait(c->done);
}

/* chained_spawn ---------------------------------------------------------- */

static void *chain_task(void *p)
{
    wctx *c = p;
    /* the spawn below hands chain_left to the next task (the run queue's
     * release/acquire); nobody else touches it meanwhile */
    if (--c->chain_left == 0)
        CHECK(urt_notify_signal(c->done));
    else
        CHECK(urt_spawn(NULL, NULL, chain_task, c));
    return NULL;
}

static int chain_iter(wctx *c)
{
    c->chain_left = CHAIN_LEN;
    int rc = urt_spawn(c->rt, NULL, chain_task, c);
    if (rc < 0)
        return rc;
    rc = urt_notify_wait(c->done);
    if (rc == 0 && c->chain_left != 0)
        rc = -EPROTO;
    return rc;
}

static const workload workloads[] = {
    { "spawn_many_local", NUM_SPAWN, NUM_SPAWN + 1, NULL, sml_iter, NULL },
    { "spawn_many_remote_idle", NUM_SPAWN, NUM_SPAWN, NULL, remote_iter, NULL },
    { "spawn_many_remote_busy1", NUM_SPAWN, NUM_SPAWN, busy1_start, remote_iter, busy1_stop },
    { "spawn_many_remote_busy2", NUM_SPAWN_BUSY2, NUM_SPAWN_BUSY2, busy2_start, remote_busy2_iter, busy2_stop },
    { "ping_pong", NUM_PINGS, 2 * NUM_PINGS + 1, NULL, pp_iter, NULL },
    { "yield_many", YIELD_TASKS * YIELDS_PER_TASK, YIELD_TASKS * (YIELDS_PER_TASK + 1), NULL, ym_iter, NULL },
    { "chained_spawn", CHAIN_LEN, CHAIN_LEN, NULL, chain_iter, NULL },
};
#define NWORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

static void workload_job(job *j)
{
    const workload *w = j->arg;
    urt_runtime *rt = make_runtime(j, j->workers);
    if (!rt)
        return;
    wctx *c = calloc(1, sizeof(*c));
    if (!c)
        die("calloc", -ENOMEM);
    c->rt = rt;
    c->j = j;
    CHECK(urt_notify_create(&c->done));
    c->handles = calloc(NUM_SPAWN, sizeof(*c->handles));
    j->samples = calloc(opt.iters, sizeof(*j->samples));
    if (!c->handles || !j->samples)
        die("calloc", -ENOMEM);
    j->tasks_per_iter = w->tasks_per_iter;

    if (w->start)
        w->start(c);
    for (unsigned i = 0; i < opt.warmups + opt.iters; i++) {
        if (atomic_load(&j->stop))
            break;
        uint64_t t0 = now_ns();
        int rc = w->iter(c);
        uint64_t dt = now_ns() - t0;
        if (rc < 0) {
            job_failf(j, "iteration %u: %s", i, strerror(-rc));
            break;
        }
        if (i >= opt.warmups) {
            j->samples[j->nsamples++] = dt;
            atomic_fetch_add(&j->done_iters, 1);
        }
    }
    if (w->stop)
        w->stop(c);
    finish_runtime(j, rt);
    urt_notify_destroy(c->done);
    free(c->handles);
    free(c);
}

static void run_workload(const workload *w, unsigned workers)
{
    char head[160];
    snprintf(head, sizeof(head), "workload=%s workers=%u iters=%u", w->name, workers, opt.iters);
    job *j = calloc(1, sizeof(*j));
    if (!j)
        die("calloc", -ENOMEM);
    j->name = w->name;
    j->workers = workers;
    j->run = workload_job;
    j->arg = w;

    row *r = nrows < MAX_ROWS ? &rows[nrows++] : NULL;
    if (r) {
        memset(r, 0, sizeof(*r));
        snprintf(r->name, sizeof(r->name), "%s", w->name);
        r->workers = workers;
    }
    if (!run_job(j, head)) {
        if (r)
            snprintf(r->status, sizeof(r->status), "TIMEOUT");
        return;
    }
    if (j->fail[0] || j->nsamples == 0) {
        printf("%s FAILED reason=\"%s\"\n", head, j->fail[0] ? j->fail : "no samples");
        if (r)
            snprintf(r->status, sizeof(r->status), "FAILED");
        exit_status = 1;
    } else {
        double med = median_u64(j->samples, j->nsamples);
        uint64_t mn = j->samples[0], mx = j->samples[j->nsamples - 1];
        printf("%s median_ns=%.0f per_op_ns=%.2f min_ns=%llu max_ns=%llu\n", head, med, med / w->ops,
               (unsigned long long)mn, (unsigned long long)mx);
        unsigned outliers = 0;
        for (unsigned k = 0; k < j->nsamples; k++)
            if (j->samples[k] >= 500000000u && (double)j->samples[k] > 20.0 * med)
                outliers++;
        if (outliers)
            fprintf(stderr, "sched: %s workers=%u: %u iteration(s) over 0.5 s and 20x the median (max %.3f s): "
                            "a wake-up that only the workers' 1 s park timeout delivered?\n",
                    w->name, workers, outliers, (double)mx / 1e9);
        if (r) {
            r->med = med / w->ops;
            r->min = (double)mn / w->ops;
            r->max = (double)mx / w->ops;
        }
    }
    if (j->has_stats) {
        uint64_t min_polls = j->tasks_per_iter * (uint64_t)(opt.warmups + j->nsamples);
        print_stats(w->name, workers, &j->stats_sum, min_polls);
        if (j->stats_sum.polls < min_polls)
            exit_status = 1;
    }
    free(j->samples);
    free(j);
}

/* ------------------------------------------------------------------------ */
/* micro: switch                                                              */
/* ------------------------------------------------------------------------ */

static struct {
    unsigned fiber_round_trips;
    unsigned task_yields;
    unsigned spawn_joins;
    unsigned rtt_round_trips;
} micro_n;

#define BATCHES 10u

static urt_fiber sw_thread, sw_fiber;

static void sw_entry(void *arg)
{
    (void)arg;
    fiber_entry_begin();
    for (;;)
        fiber_switch(&sw_fiber, &sw_thread);
}

typedef struct yield_ctx {
    unsigned per_task;
    uint64_t ns;
} yield_ctx;

static void *yield_loop(void *p)
{
    const yield_ctx *y = p;
    for (unsigned i = 0; i < y->per_task; i++)
        urt_yield();
    return NULL;
}

static void *yield_root(void *p)
{
    yield_ctx *y = p;
    urt_task *a, *b;
    uint64_t t0 = now_ns();
    CHECK(urt_spawn(NULL, &a, yield_loop, y));
    CHECK(urt_spawn(NULL, &b, yield_loop, y));
    CHECK(urt_join(a, NULL));
    CHECK(urt_join(b, NULL));
    y->ns = now_ns() - t0;
    return NULL;
}

static void switch_job(job *j)
{
    /* raw fibers: BATCHES batches of round trips thread -> fiber -> thread */
    urt_stack st;
    int rc = urt__stack_map(&st, 64 * 1024);
    if (rc < 0) {
        job_failf(j, "urt__stack_map: %s", strerror(-rc));
        return;
    }
    memset(&sw_thread, 0, sizeof(sw_thread));
    memset(&sw_fiber, 0, sizeof(sw_fiber));
    fiber_init_thread(&sw_thread);
    fiber_init(&sw_fiber, st.lo, st.hi, sw_entry, NULL);
    fiber_switch(&sw_thread, &sw_fiber);   /* first entry, off the clock */
    unsigned per = micro_n.fiber_round_trips / BATCHES;
    uint64_t batch[BATCHES];
    uint64_t total = 0;
    for (unsigned b = 0; b < BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < per; i++)
            fiber_switch(&sw_thread, &sw_fiber);
        batch[b] = now_ns() - t0;
        total += batch[b];
    }
    fiber_destroy(&sw_fiber);
    fiber_fini_thread(&sw_thread);
    urt__stack_unmap(&st);
    double med = median_u64(batch, BATCHES) / (2.0 * per);
    double mn = (double)batch[0] / (2.0 * per);
    printf("micro=switch kind=fiber round_trips=%u switches=%llu ns_per_switch=%.2f min_batch_ns_per_switch=%.2f mean_ns_per_switch=%.2f\n",
           per * BATCHES, (unsigned long long)per * BATCHES * 2, med, mn, (double)total / (2.0 * per * BATCHES));
    add_micro_row("switch: fiber_switch", "%.2f ns/switch (one direction)", med);

    /* task level: two tasks yielding to each other on one worker */
    urt_runtime *rt = make_runtime(j, 1);
    if (!rt)
        return;
    yield_ctx y = { .per_task = micro_n.task_yields / 2, .ns = 0 };
    uint64_t runs[5];
    unsigned nruns = 0;
    for (unsigned r = 0; r < 1 + 5 && !atomic_load(&j->stop); r++) {
        rc = urt_runtime_block_on(rt, yield_root, &y, NULL);
        if (rc < 0) {
            job_failf(j, "urt_runtime_block_on: %s", strerror(-rc));
            break;
        }
        if (r > 0)
            runs[nruns++] = y.ns;
    }
    finish_runtime(j, rt);
    if (nruns == 0)
        return;
    uint64_t yields = (uint64_t)y.per_task * 2;
    double ymed = median_u64(runs, nruns) / (double)yields;
    printf("micro=switch kind=task_yield workers=1 tasks=2 yields=%llu runs=%u ns_per_yield=%.2f min_ns_per_yield=%.2f\n",
           (unsigned long long)yields, nruns, ymed, (double)runs[0] / (double)yields);
    add_micro_row("switch: task yield (1 worker)", "%.2f ns/yield", ymed);
}

/* ------------------------------------------------------------------------ */
/* micro: spawn_join                                                          */
/* ------------------------------------------------------------------------ */

static void *empty_task(void *p) { return p; }

typedef struct sj_ctx {
    unsigned per_batch;
    uint64_t batch[BATCHES];
} sj_ctx;

static void *sj_root(void *p)
{
    sj_ctx *s = p;
    for (unsigned b = 0; b < BATCHES; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < s->per_batch; i++) {
            urt_task *t;
            CHECK(urt_spawn(NULL, &t, empty_task, NULL));
            CHECK(urt_join(t, NULL));
        }
        s->batch[b] = now_ns() - t0;
    }
    return NULL;
}

static void spawn_join_job(job *j)
{
    urt_runtime *rt = make_runtime(j, 1);
    if (!rt)
        return;
    sj_ctx s = { .per_batch = micro_n.spawn_joins / BATCHES };
    /* warm the stack cache */
    sj_ctx warm = { .per_batch = 100 };
    int rc = urt_runtime_block_on(rt, sj_root, &warm, NULL);
    if (rc == 0)
        rc = urt_runtime_block_on(rt, sj_root, &s, NULL);
    finish_runtime(j, rt);
    if (rc < 0) {
        job_failf(j, "urt_runtime_block_on: %s", strerror(-rc));
        return;
    }
    uint64_t total = 0;
    for (unsigned b = 0; b < BATCHES; b++)
        total += s.batch[b];
    double med = median_u64(s.batch, BATCHES) / s.per_batch;
    printf("micro=spawn_join workers=1 n=%u ns_per_spawn_join=%.2f min_batch_ns=%.2f mean_ns=%.2f\n",
           s.per_batch * BATCHES, med, (double)s.batch[0] / s.per_batch,
           (double)total / ((double)s.per_batch * BATCHES));
    add_micro_row("spawn_join (1 worker)", "%.2f ns/spawn+join", med);
}

/* ------------------------------------------------------------------------ */
/* micro: wake_rtt                                                            */
/* ------------------------------------------------------------------------ */

#define RTT_BATCH 1000u

typedef struct rtt_ctx {
    job *j;
    urt_notify *ping, *pong;
    urt_notify *a_started, *b_started, *go_a, *go_b;
    _Atomic int wid_a, wid_b;
    _Atomic int abort_pair;
    unsigned batches;
    uint64_t *batch_ns;
} rtt_ctx;

static void *rtt_a(void *p)
{
    rtt_ctx *r = p;
    atomic_store(&r->wid_a, urt_worker_id());
    CHECK(urt_notify_signal(r->a_started));
    /* hold this worker until B has started, so B starts on another one */
    uint64_t until = now_ns() + 500000000u;
    while (atomic_load(&r->wid_b) < 0 && now_ns() < until && !atomic_load(&r->j->stop))
        cpu_relax();
    CHECK(urt_notify_wait(r->go_a));
    if (atomic_load(&r->abort_pair))
        return NULL;
    for (unsigned b = 0; b < r->batches; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < RTT_BATCH; i++) {
            CHECK(urt_notify_signal(r->ping));
            CHECK(urt_notify_wait(r->pong));
        }
        r->batch_ns[b] = now_ns() - t0;
    }
    return (void *)(intptr_t)urt_worker_id();
}

static void *rtt_b(void *p)
{
    rtt_ctx *r = p;
    atomic_store(&r->wid_b, urt_worker_id());
    CHECK(urt_notify_signal(r->b_started));
    CHECK(urt_notify_wait(r->go_b));
    if (atomic_load(&r->abort_pair))
        return NULL;
    unsigned n = r->batches * RTT_BATCH;
    for (unsigned i = 0; i < n; i++) {
        CHECK(urt_notify_wait(r->ping));
        CHECK(urt_notify_signal(r->pong));
    }
    return (void *)(intptr_t)urt_worker_id();
}

static _Atomic uint32_t fx_ping, fx_pong;

static long futex(_Atomic uint32_t *w, int op, uint32_t val)
{
    return syscall(SYS_futex, (uint32_t *)w, op, val, NULL, NULL, 0);
}

static void fx_wait_take(_Atomic uint32_t *w)
{
    while (atomic_load_explicit(w, memory_order_acquire) == 0)
        futex(w, FUTEX_WAIT_PRIVATE, 0);
    atomic_store_explicit(w, 0, memory_order_relaxed);
}

static void fx_give(_Atomic uint32_t *w)
{
    atomic_store_explicit(w, 1, memory_order_release);
    futex(w, FUTEX_WAKE_PRIVATE, 1);
}

/* wake_rtt pins both pairs to the first two CPUs the job thread may run on:
 * the CPUs URT_CONFIG_PIN_WORKERS gives workers 0 and 1 of a runtime it
 * creates (they inherit its mask). rtt_pinned: two such CPUs, and the
 * futex threads' pins took. */
static bool rtt_pinned;
static int rtt_cpu[2] = {-1, -1};

static bool rtt_find_cpus(void)
{
    cpu_set_t set;
    rtt_cpu[0] = rtt_cpu[1] = -1;
    if (pthread_getaffinity_np(pthread_self(), sizeof(set), &set) != 0)
        return false;
    for (int c = 0, k = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            rtt_cpu[k++] = c;
    return rtt_cpu[1] >= 0;
}

static bool pin_to(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof(set), &set) == 0;
}

static void *fx_pong_thread(void *p)
{
    unsigned n = *(unsigned *)p;
    if (rtt_pinned && !pin_to(rtt_cpu[1]))
        rtt_pinned = false;   /* read after the join: the row then says "unpinned" */
    for (unsigned i = 0; i < n; i++) {
        fx_wait_take(&fx_ping);
        fx_give(&fx_pong);
    }
    return NULL;
}

static void wake_rtt_job(job *j)
{
    unsigned batches = micro_n.rtt_round_trips / RTT_BATCH;
    if (batches == 0)
        batches = 1;
    rtt_ctx *r = calloc(1, sizeof(*r));
    uint64_t *fx_batch = calloc(batches, sizeof(uint64_t));
    if (!r || !fx_batch)
        die("calloc", -ENOMEM);
    r->j = j;
    r->batches = batches;
    r->batch_ns = calloc(batches, sizeof(uint64_t));
    if (!r->batch_ns)
        die("calloc", -ENOMEM);
    CHECK(urt_notify_create(&r->ping));
    CHECK(urt_notify_create(&r->pong));
    CHECK(urt_notify_create(&r->a_started));
    CHECK(urt_notify_create(&r->b_started));
    CHECK(urt_notify_create(&r->go_a));
    CHECK(urt_notify_create(&r->go_b));

    /* Both pairs cross the same two CPUs: urt's workers pinned to CPUs 0
     * and 1, the futex threads likewise. Left free, the scheduler sometimes
     * puts both threads of a pair on one CPU, where a wake costs a tenth of
     * one across CPUs, and the two medians then measure placement. */
    rtt_pinned = rtt_find_cpus();
    urt_runtime *rt = make_runtime_flags(j, 2, rtt_pinned ? URT_CONFIG_PIN_WORKERS : 0);
    if (!rt) {
        free(r->batch_ns);
        free(r);
        free(fx_batch);
        return;
    }
    unsigned respawns = 0;
    urt_task *ta = NULL, *tb = NULL;
    for (;;) {
        atomic_store(&r->wid_a, -1);
        atomic_store(&r->wid_b, -1);
        atomic_store(&r->abort_pair, 0);
        CHECK(urt_spawn(rt, &ta, rtt_a, r));
        CHECK(urt_notify_wait(r->a_started));
        CHECK(urt_spawn(rt, &tb, rtt_b, r));
        CHECK(urt_notify_wait(r->b_started));
        if (atomic_load(&r->wid_a) != atomic_load(&r->wid_b))
            break;
        atomic_store(&r->abort_pair, 1);
        CHECK(urt_notify_signal(r->go_a));
        CHECK(urt_notify_signal(r->go_b));
        CHECK(urt_join(ta, NULL));
        CHECK(urt_join(tb, NULL));
        if (++respawns >= 100 || atomic_load(&j->stop)) {
            job_failf(j, "tasks kept landing on one worker (%u respawns)", respawns);
            finish_runtime(j, rt);
            return;
        }
    }
    int wa = atomic_load(&r->wid_a), wb = atomic_load(&r->wid_b);
    CHECK(urt_notify_signal(r->go_a));
    CHECK(urt_notify_signal(r->go_b));
    void *ra = NULL, *rb = NULL;
    CHECK(urt_join(ta, &ra));
    CHECK(urt_join(tb, &rb));
    urt_worker_stats st;
    sum_stats(rt, &st);
    finish_runtime(j, rt);
    if ((intptr_t)ra != wa || (intptr_t)rb != wb)
        job_failf(j, "a task changed worker (a %d -> %d, b %d -> %d)", wa, (int)(intptr_t)ra, wb,
                  (int)(intptr_t)rb);

    /* futex baseline: two plain threads */
    unsigned n = batches * RTT_BATCH;
    atomic_store(&fx_ping, 0);
    atomic_store(&fx_pong, 0);
    cpu_set_t was;
    bool restore = rtt_pinned && pthread_getaffinity_np(pthread_self(), sizeof(was), &was) == 0;
    if (rtt_pinned && !(restore && pin_to(rtt_cpu[0])))
        rtt_pinned = false;
    pthread_t th;
    if (pthread_create(&th, NULL, fx_pong_thread, &n) != 0) {
        if (restore)
            (void)pthread_setaffinity_np(pthread_self(), sizeof(was), &was);
        job_failf(j, "pthread_create");
        return;
    }
    for (unsigned b = 0; b < batches; b++) {
        uint64_t t0 = now_ns();
        for (unsigned i = 0; i < RTT_BATCH; i++) {
            fx_give(&fx_ping);
            fx_wait_take(&fx_pong);
        }
        fx_batch[b] = now_ns() - t0;
    }
    pthread_join(th, NULL);
    if (restore)
        (void)pthread_setaffinity_np(pthread_self(), sizeof(was), &was);

    uint64_t urt_total = 0, fx_total = 0;
    for (unsigned b = 0; b < batches; b++) {
        urt_total += r->batch_ns[b];
        fx_total += fx_batch[b];
    }
    double urt_med = median_u64(r->batch_ns, batches) / RTT_BATCH;
    double fx_med = median_u64(fx_batch, batches) / RTT_BATCH;
    double urt_mean = (double)urt_total / n, fx_mean = (double)fx_total / n;
    printf("micro=wake_rtt workers=2 pinned=%d round_trips=%u batch=%u worker_a=%d worker_b=%d respawns=%u "
           "urt_median_rtt_ns=%.0f urt_mean_rtt_ns=%.0f futex_median_rtt_ns=%.0f futex_mean_rtt_ns=%.0f "
           "ratio_urt_futex=%.2f parks=%llu wakes_sent=%llu wakes_received=%llu mailbox_pushes=%llu "
           "enters=%llu enters_per_round_trip=%.2f futex_syscalls_per_round_trip=4\n",
           (int)rtt_pinned, n, RTT_BATCH, wa, wb, respawns, urt_med, urt_mean, fx_med, fx_mean, fx_med > 0 ? urt_med / fx_med : 0.0,
           (unsigned long long)st.parks, (unsigned long long)st.wakes_sent,
           (unsigned long long)st.wakes_received, (unsigned long long)st.mailbox_pushes,
           (unsigned long long)st.enters, (double)st.enters / n);
    char lu[48] = "wake_rtt: urt, unpinned", lf[48] = "wake_rtt: futex, unpinned";
    if (rtt_pinned) {
        snprintf(lu, sizeof(lu), "wake_rtt: urt, CPUs %d/%d", rtt_cpu[0], rtt_cpu[1]);
        snprintf(lf, sizeof(lf), "wake_rtt: futex, CPUs %d/%d", rtt_cpu[0], rtt_cpu[1]);
    }
    add_micro_row(lu, "%.0f ns/round trip (mean %.0f)", urt_med, urt_mean);
    add_micro_row(lf, "%.0f ns/round trip (mean %.0f)", fx_med, fx_mean);
    add_micro_row("wake_rtt: urt / futex", "%.2f", fx_med > 0 ? urt_med / fx_med : 0.0);
    add_micro_row("wake_rtt: urt enters/trip", "%.2f io_uring_enter (futex pair: 4 syscalls)", (double)st.enters / n);

    urt_notify_destroy(r->ping);
    urt_notify_destroy(r->pong);
    urt_notify_destroy(r->a_started);
    urt_notify_destroy(r->b_started);
    urt_notify_destroy(r->go_a);
    urt_notify_destroy(r->go_b);
    free(r->batch_ns);
    free(r);
    free(fx_batch);
}

/* ------------------------------------------------------------------------ */
/* micro: wake_cold                                                           */
/* ------------------------------------------------------------------------ */

#define COLD_ROUNDS 41u
#define COLD_BATCH  64u

typedef struct cold_ctx {
    unsigned n;
    urt_notify **bell;        /* one per parked task */
    urt_notify *all_done;     /* the last task of a round signals it */
    unsigned *order;          /* the shuffled order the driver rings them in */
    unsigned left;            /* tasks of this round not yet run (one worker: plain) */
    unsigned parked;          /* tasks that reached their first wait */
    bool stop;
    uint64_t round_ns[COLD_ROUNDS];
} cold_ctx;

typedef struct cold_arg {
    cold_ctx *c;
    unsigned i;
} cold_arg;

static void *cold_task(void *p)
{
    cold_arg *a = p;
    cold_ctx *c = a->c;
    c->parked++;
    for (;;) {
        CHECK(urt_notify_wait(c->bell[a->i]));
        if (c->stop)
            return NULL;
        if (--c->left == 0)
            CHECK(urt_notify_signal(c->all_done));
    }
}

static void *cold_driver(void *p)
{
    cold_ctx *c = p;
    urt_task **t = calloc(c->n, sizeof(*t));
    cold_arg *args = calloc(c->n, sizeof(*args));
    if (!t || !args)
        die("calloc", -ENOMEM);
    for (unsigned i = 0; i < c->n; i++) {
        args[i] = (cold_arg){c, i};
        CHECK(urt_spawn(NULL, &t[i], cold_task, &args[i]));
    }
    while (c->parked < c->n)
        urt_yield();   /* until each has run once and parked on its bell */
    for (unsigned r = 0; r < COLD_ROUNDS; r++) {
        uint64_t t0 = now_ns();
        /* in batches, as a worker wakes the tasks of one reap of its CQ
         * (and within the local run queue's room) */
        for (unsigned k = 0; k < c->n; k += COLD_BATCH) {
            unsigned m = c->n - k < COLD_BATCH ? c->n - k : COLD_BATCH;
            c->left = m;
            for (unsigned b = 0; b < m; b++)
                CHECK(urt_notify_signal(c->bell[c->order[k + b]]));
            CHECK(urt_notify_wait(c->all_done));
        }
        c->round_ns[r] = now_ns() - t0;
    }
    c->stop = true;
    for (unsigned i = 0; i < c->n; i++)
        CHECK(urt_notify_signal(c->bell[i]));
    for (unsigned i = 0; i < c->n; i++)
        CHECK(urt_join(t[i], NULL));
    free(t);
    free(args);
    return NULL;
}

static void wake_cold_job(job *j)
{
    static const unsigned sizes[] = {500, 5000};
    for (unsigned z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        cold_ctx *c = calloc(1, sizeof(*c));
        if (!c)
            die("calloc", -ENOMEM);
        c->n = sizes[z];
        c->bell = calloc(c->n, sizeof(*c->bell));
        c->order = calloc(c->n, sizeof(*c->order));
        if (!c->bell || !c->order)
            die("calloc", -ENOMEM);
        for (unsigned i = 0; i < c->n; i++) {
            CHECK(urt_notify_create(&c->bell[i]));
            c->order[i] = i;
        }
        CHECK(urt_notify_create(&c->all_done));
        uint64_t seed = 0x9e3779b97f4a7c15u;   /* the same order on every run */
        for (unsigned i = c->n - 1; i > 0; i--) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            unsigned k = (unsigned)(seed % (i + 1)), tmp = c->order[i];
            c->order[i] = c->order[k];
            c->order[k] = tmp;
        }
        urt_runtime *rt = make_runtime(j, 1);
        int rc = rt ? urt_runtime_block_on(rt, cold_driver, c, NULL) : -1;
        if (rt)
            finish_runtime(j, rt);
        if (rt && rc < 0)
            job_failf(j, "urt_runtime_block_on: %s", strerror(-rc));
        if (rt && rc == 0) {
            double med = median_u64(c->round_ns, COLD_ROUNDS) / c->n;   /* sorts round_ns */
            printf("micro=wake_cold workers=1 tasks=%u rounds=%u ns_per_wake=%.1f min_ns_per_wake=%.1f "
                   "max_ns_per_wake=%.1f\n",
                   c->n, COLD_ROUNDS, med, (double)c->round_ns[0] / c->n,
                   (double)c->round_ns[COLD_ROUNDS - 1] / c->n);
            add_micro_row(c->n == 500 ? "wake_cold (500 tasks)" : "wake_cold (5000 tasks)", "%.1f ns/wake+resume",
                          med);
        }
        for (unsigned i = 0; i < c->n; i++)
            urt_notify_destroy(c->bell[i]);
        urt_notify_destroy(c->all_done);
        free(c->bell);
        free(c->order);
        free(c);
        if (!rt)
            return;
    }
}

typedef struct micro {
    const char *name;
    job_fn run;
    unsigned workers;
} micro;

static const micro micros[] = {
    { "switch", switch_job, 1 },
    { "spawn_join", spawn_join_job, 1 },
    { "wake_rtt", wake_rtt_job, 2 },
    { "wake_cold", wake_cold_job, 1 },
};
#define NMICROS (sizeof(micros) / sizeof(micros[0]))

static void run_micro(const micro *m)
{
    char head[128];
    snprintf(head, sizeof(head), "micro=%s workers=%u", m->name, m->workers);
    job *j = calloc(1, sizeof(*j));
    if (!j)
        die("calloc", -ENOMEM);
    j->name = m->name;
    j->workers = m->workers;
    j->run = m->run;
    if (!run_job(j, head)) {
        add_micro_row(m->name, "TIMEOUT");
        return;
    }
    if (j->fail[0]) {
        printf("%s FAILED reason=\"%s\"\n", head, j->fail);
        add_micro_row(m->name, "FAILED");
        exit_status = 1;
    }
    free(j);
}

/* ------------------------------------------------------------------------ */
/* main                                                                       */
/* ------------------------------------------------------------------------ */

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: sched [--workers N[,N...]] [--iters K] [--warmups W] [--only NAME[,NAME...]]\n"
            "             [--timeout-s S] [--quick] [--no-micro] [--busy1-tasks N] [--busy2-tasks N]\n"
            "             [--spin-us US] [--list]\n"
            "  --workers     worker counts to run every workload at (default 2,4)\n"
            "  --iters       timed iterations per workload (default 20; 5 with --quick)\n"
            "  --warmups     untimed iterations first (default 2)\n"
            "  --only        workloads and/or micro benchmarks to run (default: all)\n"
            "  --timeout-s   per workload / micro benchmark deadline (default 60)\n"
            "  --quick       5 iterations, micro loops 10x shorter (CI smoke)\n"
            "  --no-micro    skip the micro benchmarks\n"
            "  --busy1-tasks background tasks of spawn_many_remote_busy1 (default 8)\n"
            "  --busy2-tasks background chains of spawn_many_remote_busy2 (default 4)\n"
            "  --spin-us     urt_config.spin_us of every runtime: spin this long before a worker\n"
            "                parks (default 0: the library's default, no spin)\n");
    exit(status);
}

static bool known_name(const char *s)
{
    for (unsigned i = 0; i < NWORKLOADS; i++)
        if (strcmp(workloads[i].name, s) == 0)
            return true;
    for (unsigned i = 0; i < NMICROS; i++)
        if (strcmp(micros[i].name, s) == 0)
            return true;
    return false;
}

static bool selected(const char *s)
{
    if (opt.nonly == 0)
        return true;
    for (unsigned i = 0; i < opt.nonly; i++)
        if (strcmp(opt.only[i], s) == 0)
            return true;
    return false;
}

static unsigned parse_uint(const char *flag, const char *v, unsigned lo)
{
    char *end;
    errno = 0;
    unsigned long n = v ? strtoul(v, &end, 10) : 0;
    if (!v || errno || *end || n < lo || n > UINT_MAX) {
        fprintf(stderr, "sched: %s needs a number >= %u\n", flag, lo);
        usage(2);
    }
    return (unsigned)n;
}

static void parse_args(int argc, char **argv)
{
    opt.workers[0] = 2;
    opt.workers[1] = 4;
    opt.nworkers = 2;
    opt.iters = 20;
    opt.warmups = 2;
    opt.timeout_s = 60;
    opt.busy1_tasks = BUSY1_TASKS;
    opt.busy2_tasks = BUSY2_TASKS;
    bool iters_set = false;

    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        char *v = NULL;
        char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) == 0 && eq) {
            *eq = 0;
            v = eq + 1;
        }
#define VALUE() (v ? v : (i + 1 < argc ? argv[++i] : NULL))
        if (strcmp(a, "--workers") == 0) {
            char *list = VALUE();
            if (!list)
                usage(2);
            opt.nworkers = 0;
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (opt.nworkers == MAX_WORKER_COUNTS) {
                    fprintf(stderr, "sched: at most %d worker counts\n", MAX_WORKER_COUNTS);
                    usage(2);
                }
                opt.workers[opt.nworkers++] = parse_uint("--workers", tok, 1);
            }
            if (opt.nworkers == 0)
                usage(2);
        } else if (strcmp(a, "--iters") == 0) {
            opt.iters = parse_uint("--iters", VALUE(), 1);
            iters_set = true;
        } else if (strcmp(a, "--warmups") == 0) {
            opt.warmups = parse_uint("--warmups", VALUE(), 0);
        } else if (strcmp(a, "--timeout-s") == 0) {
            char *s = VALUE(), *end;
            opt.timeout_s = s ? strtod(s, &end) : 0;
            if (!s || *end || !(opt.timeout_s > 0)) {
                fprintf(stderr, "sched: --timeout-s must be a positive number\n");
                usage(2);
            }
        } else if (strcmp(a, "--only") == 0) {
            char *list = VALUE();
            if (!list)
                usage(2);
            for (char *save = NULL, *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
                if (!known_name(tok)) {
                    fprintf(stderr, "sched: unknown workload '%s'\n", tok);
                    usage(2);
                }
                opt.only = realloc(opt.only, (opt.nonly + 1) * sizeof(*opt.only));
                if (!opt.only)
                    die("realloc", -ENOMEM);
                opt.only[opt.nonly++] = tok;
            }
        } else if (strcmp(a, "--busy1-tasks") == 0) {
            opt.busy1_tasks = parse_uint("--busy1-tasks", VALUE(), 0);
        } else if (strcmp(a, "--busy2-tasks") == 0) {
            opt.busy2_tasks = parse_uint("--busy2-tasks", VALUE(), 0);
        } else if (strcmp(a, "--spin-us") == 0) {
            opt.spin_us = parse_uint("--spin-us", VALUE(), 0);
        } else if (strcmp(a, "--quick") == 0) {
            opt.quick = true;
        } else if (strcmp(a, "--no-micro") == 0) {
            opt.no_micro = true;
        } else if (strcmp(a, "--list") == 0) {
            for (unsigned k = 0; k < NWORKLOADS; k++)
                printf("%s\n", workloads[k].name);
            for (unsigned k = 0; k < NMICROS; k++)
                printf("%s\n", micros[k].name);
            exit(0);
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(0);
        } else {
            fprintf(stderr, "sched: unknown argument '%s'\n", a);
            usage(2);
        }
#undef VALUE
    }
    if (opt.quick && !iters_set)
        opt.iters = 5;
    unsigned div = opt.quick ? 10 : 1;
    micro_n.fiber_round_trips = 10000000u / div;
    micro_n.task_yields = 1000000u / div;
    micro_n.spawn_joins = 1000000u / div;
    micro_n.rtt_round_trips = 100000u / div;
}

static void print_table(void)
{
    if (nrows) {
        printf("\n%-26s %7s %14s %12s %12s\n", "workload", "workers", "median ns/op", "min ns/op", "max ns/op");
        for (unsigned i = 0; i < nrows; i++) {
            const row *r = &rows[i];
            if (r->status[0])
                printf("%-26s %7u %14s %12s %12s\n", r->name, r->workers, r->status, "-", "-");
            else
                printf("%-26s %7u %14.2f %12.2f %12.2f\n", r->name, r->workers, r->med, r->min, r->max);
        }
    }
    if (nmicro_rows) {
        printf("\n%-32s %s\n", "micro benchmark", "result");
        for (unsigned i = 0; i < nmicro_rows; i++)
            printf("%-32s %s\n", micro_rows[i].what, micro_rows[i].value);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv);
    printf("# urt %s sched: workers=", urt_version());
    for (unsigned i = 0; i < opt.nworkers; i++)
        printf("%s%u", i ? "," : "", opt.workers[i]);
    printf(" iters=%u warmups=%u timeout_s=%g busy1_tasks=%u busy2_tasks=%u spin_us=%u cpus=%ld%s\n", opt.iters,
           opt.warmups, opt.timeout_s, opt.busy1_tasks, opt.busy2_tasks, opt.spin_us, sysconf(_SC_NPROCESSORS_ONLN),
           opt.quick ? " quick" : "");

    for (unsigned k = 0; k < opt.nworkers; k++)
        for (unsigned i = 0; i < NWORKLOADS; i++)
            if (selected(workloads[i].name))
                run_workload(&workloads[i], opt.workers[k]);
    if (!opt.no_micro)
        for (unsigned i = 0; i < NMICROS; i++)
            if (selected(micros[i].name))
                run_micro(&micros[i]);

    print_table();
    fflush(stdout);
    fflush(stderr);
    /* a timed-out job may still hold threads: leave without waiting for them */
    _exit(exit_status);
}
