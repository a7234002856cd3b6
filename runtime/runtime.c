/*
 * runtime.c - creating, observing and shutting down a runtime.
 *
 * Start: the creator starts every worker thread with SIGINT/SIGTERM blocked;
 * each creates its own ring (SINGLE_ISSUER makes the creator the only
 * submitter) and reports; the creator waits for all reports, then either
 * lets them run (started) or, if any ring failed, stops them all and
 * returns that ring's error.
 *
 * Shutdown (urt_runtime_shutdown):
 *   1. closing = 1: new spawns get -ESHUTDOWN;
 *   2. wait up to grace_ns for every task to end by itself;
 *   3. cancel_all = 1 and cancel every live task (each one ends its pending
 *      op with -ECANCELED on its own ring and unwinds by itself; never-run
 *      tasks end without running);
 *   4. wait for live == 0 (up to 5 s: a task that ignores cancellation keeps
 *      its worker and its stack, which are reported and leaked);
 *   5. stop = 1, ring every worker's doorbell; each worker leaves its loop,
 *      reaps what is left, frees its stack cache and closes its ring;
 *   6. join the workers, stop the watchdog, drain the blocking pool.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define CANCEL_WAIT_NS (5ull * 1000 * 1000 * 1000)

static void destroy_parts(urt_runtime *rt)
{
    inject_destroy(&rt->inject);
    idle_destroy(&rt->idle);
    urt__stack_pool_destroy(&rt->stack_pool);
    for (unsigned i = 0; i < OWN_SHARDS; i++)
        pthread_mutex_destroy(&rt->shards[i].lock);
    pool_destroy(&rt->pool);
    if (rt->workers) {
        for (unsigned i = 0; i < rt->nworkers; i++)
            if (rt->workers[i].efd >= 0)
                close(rt->workers[i].efd);
        free(rt->workers);
    }
    pthread_mutex_destroy(&rt->sd_lock);
    pthread_cond_destroy(&rt->sd_cv);
    pthread_mutex_destroy(&rt->wd_lock);
    pthread_cond_destroy(&rt->wd_cv);
    free(rt);
}

static unsigned online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

int urt_runtime_create(urt_runtime **out, const urt_config *cfg)
{
    if (!out)
        return -EINVAL;
    *out = NULL;
    urt_config c;
    if (cfg)
        c = *cfg;
    else
        memset(&c, 0, sizeof(c));
    if (c.workers > 1024 || c.ring_entries > 32768 || (c.stack_size && (c.stack_size < URT_STACK_MIN || c.stack_size > URT_STACK_MAX)) ||
        c.global_queue_interval > 1u << 20 || c.max_blocking_threads > 1u << 16 ||
        (c.flags & ~(URT_CONFIG_PIN_WORKERS | URT_CONFIG_NO_LIFO | URT_CONFIG_NO_DEFER | URT_CONFIG_PLAIN_RING)))
        return -EINVAL;
    if (c.workers == 0)
        c.workers = online_cpus();
    if (c.ring_entries == 0)
        c.ring_entries = 256;
    if (c.stack_size == 0)
        c.stack_size = URT_STACK_DEFAULT;
    if (c.event_interval == 0)
        c.event_interval = 61;
    if (c.max_blocking_threads == 0)
        c.max_blocking_threads = 512;
    if (c.rx_buffers == 0)
        c.rx_buffers = 4096;
    if (c.rx_buffer_size == 0)
        c.rx_buffer_size = 4096;
    if ((c.rx_buffers & (c.rx_buffers - 1)) || c.rx_buffers > 32768 || c.rx_buffer_size > (1u << 24)) {
        return -EINVAL;
    }
    if (c.watchdog_ns == 0)
        c.watchdog_ns = 1000ull * 1000 * 1000;

    urt_runtime *rt = aligned_alloc(URT_CACHELINE, (sizeof(*rt) + URT_CACHELINE - 1) / URT_CACHELINE * URT_CACHELINE);
    if (!rt)
        return -ENOMEM;
    memset(rt, 0, sizeof(*rt));
    rt->cfg = c;
    rt->nworkers = c.workers;
    at_store_relaxed(&rt->next_id, 1);
    inject_init(&rt->inject);
    pthread_mutex_init(&rt->sd_lock, NULL);
    pthread_cond_init(&rt->sd_cv, NULL);
    pthread_mutex_init(&rt->wd_lock, NULL);
    pthread_cond_init(&rt->wd_cv, NULL);
    for (unsigned i = 0; i < OWN_SHARDS; i++)
        pthread_mutex_init(&rt->shards[i].lock, NULL);
    int err = idle_init(&rt->idle, c.workers);
    if (err == 0)
        err = urt__stack_pool_init(&rt->stack_pool, c.stack_size, 1024);
    /* Up to 256 pooled stacks keep their pages (a few KiB each for most
     * tasks): releasing and faulting them back cost several us per task when
     * thousands of tasks come and go (ping_pong). */
    rt->stack_pool.dirty_max = 256;
    if (err == 0)
        err = pool_init(&rt->pool, c.max_blocking_threads);
    if (err) {
        free(rt);
        return err;
    }
    urt__overflow_install();
    rt->ringless = ring_ringless_supported() && !getenv("URT_NO_RINGLESS");

    size_t wsz = sizeof(urt_worker) * c.workers;
    rt->workers = aligned_alloc(URT_CACHELINE, (wsz + URT_CACHELINE - 1) / URT_CACHELINE * URT_CACHELINE);
    if (!rt->workers) {
        destroy_parts(rt);
        return -ENOMEM;
    }
    memset(rt->workers, 0, wsz);
    for (unsigned i = 0; i < c.workers; i++) {
        urt_worker *w = &rt->workers[i];
        w->rt = rt;
        w->id = i;
        w->efd = -1;
        lq_init(&w->lq);
        mb_init(&w->mb);
        at_store_relaxed(&w->ring_fd, -1);
    }

    /* workers never take the process's SIGINT/SIGTERM: tools read them with a signalfd */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGQUIT);
    sigaddset(&block, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    unsigned started = 0;
    for (; started < c.workers; started++) {
        urt_worker *w = &rt->workers[started];
        int r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r) {
            err = -r;
            break;
        }
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    pthread_mutex_lock(&rt->sd_lock);
    for (unsigned i = 0; i < started; i++) {
        while (rt->workers[i].init_err == 0)
            pthread_cond_wait(&rt->sd_cv, &rt->sd_lock);
        if (rt->workers[i].init_err < 0 && err == 0)
            err = rt->workers[i].init_err;
    }
    if (err)
        at_store_release(&rt->stop, 1);
    else
        rt->started = true;
    pthread_cond_broadcast(&rt->sd_cv);
    pthread_mutex_unlock(&rt->sd_lock);

    if (err) {
        for (unsigned i = 0; i < started; i++)
            pthread_join(rt->workers[i].thread, NULL);
        for (unsigned i = 0; i < started; i++) {
            urt_worker *w = &rt->workers[i];
            if (w->init_err == 1)
                ring_exit(&w->ring);
        }
        destroy_parts(rt);
        return err;
    }
    if (c.watchdog_ns != UINT64_MAX)
        watchdog_start(rt);
    *out = rt;
    return 0;
}

static void cancel_everything(urt_runtime *rt)
{
    for (unsigned i = 0; i < OWN_SHARDS; i++) {
        own_shard *s = &rt->shards[i];
        pthread_mutex_lock(&s->lock);
        for (urt_task *t = s->head; t; t = t->own_next)
            urt_cancel(t);   /* t stays alive: it leaves this list only under our lock */
        pthread_mutex_unlock(&s->lock);
    }
}

/* Wait until no task is live or until deadline (absolute, urt__now). */
static bool wait_live_zero(urt_runtime *rt, uint64_t deadline)
{
    pthread_mutex_lock(&rt->sd_lock);
    for (;;) {
        if (owned_live(rt) == 0)
            break;
        uint64_t now = urt__now();
        if (now >= deadline)
            break;
        uint64_t slice = deadline - now;
        if (slice > 10 * 1000 * 1000)
            slice = 10 * 1000 * 1000;   /* re-check now and then, whatever the signals */
        struct timespec ts;
        urt__abstime(&ts, slice);
        pthread_cond_timedwait(&rt->sd_cv, &rt->sd_lock, &ts);
    }
    bool zero = owned_live(rt) == 0;
    pthread_mutex_unlock(&rt->sd_lock);
    return zero;
}

int urt_runtime_shutdown(urt_runtime *rt, uint64_t grace_ns)
{
    if (!rt)
        return -EINVAL;
    if (urt__cur_worker())
        return -EDEADLK;
    uint32_t exp = 0;
    if (!at_cas_seqcst(&rt->shutdown_started, &exp, 1))
        return rt->shutdown_result;   /* already done (one caller at a time) */
    at_store_seqcst(&rt->closing, 1);
    uint64_t now = urt__now();
    uint64_t deadline = grace_ns > UINT64_MAX - now ? UINT64_MAX : now + grace_ns;
    int result = 0;
    if (!wait_live_zero(rt, deadline)) {
        at_store_seqcst(&rt->cancel_all, 1);
        cancel_everything(rt);
        if (!wait_live_zero(rt, urt__now() + CANCEL_WAIT_NS)) {
            fprintf(stderr, "urt: shutdown: %llu task(s) ignored cancellation for 5 s; their workers "
                            "and stacks are left running:\n",
                    (unsigned long long)owned_live(rt));
            urt_runtime_dump(rt, 2);
            result = -ETIMEDOUT;
        }
    }
    at_store_seqcst(&rt->stop, 1);
    for (unsigned i = 0; i < rt->nworkers; i++)
        worker_ring_bell(rt, i);
    for (unsigned i = 0; i < rt->nworkers; i++) {
        urt_worker *w = &rt->workers[i];
        if (result == 0) {
            pthread_join(w->thread, NULL);
            continue;
        }
        struct timespec ts;
        urt__abstime(&ts, 1000000000ull);
        if (pthread_timedjoin_np(w->thread, NULL, &ts) != 0) {
            pthread_detach(w->thread);
            rt->leak_workers = true;
        }
    }
    watchdog_stop(rt);
    if (!pool_shutdown(rt, CANCEL_WAIT_NS)) {
        fprintf(stderr, "urt: shutdown: a blocking job has not returned after 5 s; its thread is left running\n");
        rt->leak_workers = true;
        result = -ETIMEDOUT;
    }
    rt->shutdown_result = result;
    return result;
}

void urt_runtime_destroy(urt_runtime *rt)
{
    if (!rt)
        return;
    if (urt__cur_worker()) {
        fprintf(stderr, "urt: urt_runtime_destroy called from a worker thread; ignored\n");
        return;
    }
    urt_runtime_shutdown(rt, 0);
    int64_t handles = 0;
    for (unsigned i = 0; i < OWN_SHARDS; i++)
        handles += at_load_relaxed(&rt->shards[i].handles);
    if (handles > 0)
        fprintf(stderr, "urt: %llu task handle(s) were never joined or detached\n", (unsigned long long)handles);
    if (rt->leak_workers)
        return;   /* a worker still runs a task that never ended: its memory stays */
    destroy_parts(rt);
}

int urt_runtime_block_on(urt_runtime *rt, urt_fn fn, void *arg, void **ret)
{
    if (!rt || !fn)
        return -EINVAL;
    if (urt__cur_worker())
        return -EDEADLK;
    urt_task *t;
    int r = urt_spawn(rt, &t, fn, arg);
    if (r)
        return r;
    return urt_join(t, ret);
}

int urt_runtime_stats(urt_runtime *rt, urt_worker_stats *out, unsigned n)
{
    if (!rt || (!out && n))
        return -EINVAL;
    for (unsigned i = 0; i < n && i < rt->nworkers; i++) {
        urt_worker *w = &rt->workers[i];
        worker_stats *s = &w->stats;
        urt_worker_stats *o = &out[i];
        memset(o, 0, sizeof(*o));
        o->polls = at_load_relaxed(&s->polls);
        o->lifo_polls = at_load_relaxed(&s->lifo_polls);
        o->local_schedules = at_load_relaxed(&s->local_schedules);
        o->inject_schedules = at_load_relaxed(&s->inject_schedules);
        o->overflows = at_load_relaxed(&s->overflows);
        o->steal_attempts = at_load_relaxed(&s->steal_attempts);
        o->steals = at_load_relaxed(&s->steals);
        o->tasks_stolen = at_load_relaxed(&s->tasks_stolen);
        o->mailbox_pushes = at_load_relaxed(&s->mailbox_pushes);
        o->parks = at_load_relaxed(&s->parks);
        o->wakes_sent = at_load_relaxed(&s->wakes_sent);
        o->wakes_received = at_load_relaxed(&s->wakes_received);
        o->busy_ns = at_load_relaxed(&s->busy_ns);
        o->watchdog_stalls = at_load_relaxed(&s->watchdog_stalls);
        o->sqes_submitted = at_load_relaxed(&w->r_sqes);
        o->cqes_reaped = at_load_relaxed(&w->r_cqes);
        o->enters = at_load_relaxed(&w->r_enters);
        o->ring_flags = at_load_relaxed(&w->ring_flags);
    }
    return (int)rt->nworkers;
}

static const char *state_name(uint32_t s)
{
    if (s & TS_COMPLETE)
        return "complete";
    if (s & TS_RUNNING)
        return "running";
    if (s & TS_SCHEDULED)
        return "runnable";
    return "suspended";
}

int urt_runtime_dump(urt_runtime *rt, int fd)
{
    if (!rt || fd < 0)
        return -EINVAL;
    int n = 0;
    for (unsigned i = 0; i < OWN_SHARDS; i++) {
        own_shard *s = &rt->shards[i];
        pthread_mutex_lock(&s->lock);
        for (urt_task *t = s->head; t; t = t->own_next) {
            uint32_t st = at_load_relaxed(&t->state);
            /* wait_what/wait_fd are written by the task itself: a racy snapshot */
            const char *what = __atomic_load_n(&t->wait_what, __ATOMIC_RELAXED);
            int wfd = __atomic_load_n(&t->wait_fd, __ATOMIC_RELAXED);
            dprintf(fd, "task %llu name=%s kind=%s home=%d state=%s%s", (unsigned long long)t->id,
                    t->name[0] ? t->name : "-", t->kind == TK_BLOCKING ? "blocking" : "fiber",
                    at_load_relaxed(&t->home), state_name(st), (st & TS_CANCELLED) ? ",cancelled" : "");
            if (what && !(st & (TS_RUNNING | TS_SCHEDULED)))
                dprintf(fd, " waits=%s fd=%d", what, wfd);
            dprintf(fd, "\n");
            n++;
        }
        pthread_mutex_unlock(&s->lock);
    }
    return n;
}
