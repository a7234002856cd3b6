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
 *   1. closing = 1 and every shard of the owned-task list closed (under its
 *      lock): new spawns get -ESHUTDOWN, and one that got in before is in
 *      the list, so the live count can only fall from now on;
 *   2. wait up to grace_ns for every task to end by itself;
 *   3. cancel_all = 1 and cancel every live task (each one ends its pending
 *      op with -ECANCELED on its own ring and unwinds by itself; never-run
 *      tasks end without running, calling their on_drop);
 *   4. wait for live == 0, up to cfg.cancel_wait_ns (default 5 s): a task
 *      that ignores cancellation keeps its worker and its stack, which are
 *      reported and left alone;
 *   5. stop = 1, ring every worker's doorbell; each worker leaves its loop,
 *      reaps what is left, frees its stack cache and closes its ring;
 *   6. join the workers, stop the watchdog, drain the blocking pool.
 * Shutdown from inside the runtime (a worker, a blocking job, a fiber in
 * block_in_place, a hook) would wait for itself: -EDEADLK.
 *
 * Destroy: shutdown(0) if needed; then, unless something still runs, wait
 * for plain threads still inside urt_join (rt->blocked), free the handles
 * nobody joined (zombies left in the owned list; named on stderr), and free
 * everything. After a shutdown that gave up, destroy looks again: if the
 * stuck tasks and jobs have ended since, it frees everything after all.
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
#define MS_NS          (1000ull * 1000)
#define RING_MIN_ENTRIES 8u

static void destroy_parts(urt_runtime *rt)
{
    inject_destroy(&rt->inject);
    idle_destroy(&rt->idle);
    urt__stack_pool_destroy(&rt->stack_pool);
    free(rt->shards);
    pool_destroy(&rt->pool);
    if (rt->workers) {
        for (unsigned i = 0; i < rt->nworkers; i++) {
            if (rt->workers[i].efd >= 0)
                close(rt->workers[i].efd);
            slab_destroy(&rt->workers[i].slab);   /* every task header is back by now */
        }
        free(rt->workers);
    }
    pthread_mutex_destroy(&rt->sd_lock);
    pthread_cond_destroy(&rt->sd_cv);
    pthread_mutex_destroy(&rt->wd_lock);
    slab_destroy(&rt->slab);
    pthread_mutex_destroy(&rt->slab_lock);
    pthread_cond_destroy(&rt->wd_cv);
#if URT_CHECKED
    at_store_relaxed(&rt->magic, DEAD_MAGIC);
    urt__quarantine(rt, sizeof(*rt));
#else
    free(rt);
#endif
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
    if (c.ring_entries < RING_MIN_ENTRIES)
        c.ring_entries = RING_MIN_ENTRIES;   /* linked pairs and a close need room together */
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
    if (c.cancel_wait_ns == 0)
        c.cancel_wait_ns = CANCEL_WAIT_NS;
    if (c.hibernate_after_ns == 0)
        c.hibernate_after_ns = 1000ull * 1000 * 1000;

    urt_runtime *rt = aligned_alloc(URT_CACHELINE, (sizeof(*rt) + URT_CACHELINE - 1) / URT_CACHELINE * URT_CACHELINE);
    if (!rt)
        return -ENOMEM;
    memset(rt, 0, sizeof(*rt));
    rt->cfg = c;
    at_store_relaxed(&rt->magic, RT_MAGIC);
    rt->nworkers = c.workers;
    at_store_relaxed(&rt->next_id, 1);
    inject_init(&rt->inject);
    pthread_mutex_init(&rt->sd_lock, NULL);
    pthread_cond_init(&rt->sd_cv, NULL);
    pthread_mutex_init(&rt->wd_lock, NULL);
    pthread_cond_init(&rt->wd_cv, NULL);
    pthread_mutex_init(&rt->slab_lock, NULL);
    rt->nshards = c.workers + OWN_PLAIN_SHARDS;
    size_t ssz = sizeof(own_shard) * rt->nshards;
    rt->shards = aligned_alloc(URT_CACHELINE, (ssz + URT_CACHELINE - 1) / URT_CACHELINE * URT_CACHELINE);
    int err = rt->shards ? 0 : -ENOMEM;
    if (rt->shards)
        memset(rt->shards, 0, ssz);   /* unlocked, open, empty */
    if (err == 0)
        err = idle_init(&rt->idle, c.workers);
    if (err == 0)
        err = urt__stack_pool_init(&rt->stack_pool, c.stack_size, 1024);
    /* Up to 256 pooled stacks keep their pages (a few KiB each for most
     * tasks): releasing and faulting them back cost several us per task when
     * thousands of tasks come and go (ping_pong). */
    rt->stack_pool.dirty_max = 256;
    if (err == 0)
        err = pool_init(&rt->pool, c.max_blocking_threads);
    if (err) {
        free(rt->shards);
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
        mb_init(&w->ctl);
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
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        at_lock_take(&s->lock);
        for (urt_task *t = s->head; t; t = t->own_next)
            task_cancel(t);   /* t stays alive: it leaves this list only under our lock */
        at_lock_give(&s->lock);
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

/* Is the caller inside rt (so that waiting for rt's tasks waits for itself)? */
static bool inside_runtime(urt_runtime *rt)
{
    urt_task *t = urt__cur_task();
    return urt__cur_worker() || urt__in_hook() || urt__pool_rt() == rt || (t && t->rt == rt);
}

static void log_live_tasks(urt_runtime *rt)
{
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        at_lock_take(&s->lock);
        for (urt_task *t = s->head; t; t = t->own_next)
            if (!(at_load_relaxed(&t->own) & OWN_DONE) && !(at_load_relaxed(&t->state) & TS_COMPLETE))
                urt__log("urt:   task %llu (%s) on worker %d\n", (unsigned long long)t->id,
                         t->name[0] ? t->name : "unnamed", at_load_relaxed(&t->home));
        at_lock_give(&s->lock);
    }
}

/* Join the workers that have ended; true when all have. */
static bool join_workers(urt_runtime *rt, uint64_t wait_ns)
{
    bool all = true;
    uint64_t deadline = urt__now() + wait_ns;
    for (unsigned i = 0; i < rt->nworkers; i++) {
        urt_worker *w = &rt->workers[i];
        if (w->joined)
            continue;
        uint64_t now = urt__now();
        struct timespec ts;
        urt__abstime(&ts, deadline > now ? deadline - now : 0);
        if (pthread_timedjoin_np(w->thread, NULL, &ts) == 0)
            w->joined = true;
        else
            all = false;
    }
    return all;
}

int urt_runtime_shutdown(urt_runtime *rt, uint64_t grace_ns)
{
    if (!rt)
        return -EINVAL;
    CHECK_RT(rt, "urt_runtime_shutdown");
    if (inside_runtime(rt))
        return -EDEADLK;
    uint32_t exp = 0;
    if (!at_cas_seqcst(&rt->shutdown_started, &exp, 1))
        return rt->shutdown_result;   /* already done (one caller at a time) */
    at_store_seqcst(&rt->closing, 1);
    owned_close(rt);
    uint64_t now = urt__now();
    uint64_t deadline = grace_ns > UINT64_MAX - now ? UINT64_MAX : now + grace_ns;
    uint64_t wait = rt->cfg.cancel_wait_ns;
    int result = 0;
    if (!wait_live_zero(rt, deadline)) {
        at_store_seqcst(&rt->cancel_all, 1);
        cancel_everything(rt);
        now = urt__now();
        if (!wait_live_zero(rt, wait > UINT64_MAX - now ? UINT64_MAX : now + wait)) {
            urt__log("urt: shutdown: %llu task(s) ignored cancellation for %llu ms; their workers and "
                     "stacks are left running:\n",
                     (unsigned long long)owned_live(rt), (unsigned long long)(wait / MS_NS));
            log_live_tasks(rt);
            result = -ETIMEDOUT;
        }
    }
    at_store_seqcst(&rt->stop, 1);
    for (unsigned i = 0; i < rt->nworkers; i++)
        worker_ring_bell(rt, i);
    /* a worker whose task never ends is not waited for again: the wait above was it */
    if (!join_workers(rt, result == 0 ? UINT64_MAX / 2 : 0))
        rt->leak_workers = true;
    watchdog_stop(rt);
    if (!pool_shutdown(rt, result == 0 ? wait : 0)) {
        if (result == 0)
            urt__log("urt: shutdown: a blocking job has not returned after %llu ms; its thread is left running\n",
                     (unsigned long long)(wait / MS_NS));
        rt->leak_workers = true;
        result = -ETIMEDOUT;
    }
    rt->shutdown_result = result;
    return result;
}

/* Free the handles nobody joined or detached (their tasks are complete). */
static void free_zombies(urt_runtime *rt)
{
    /* every task has ended (destroy checked) and every worker has left:
     * completions nobody drained go first, then what is left is a zombie */
    for (unsigned i = 0; i < rt->nshards; i++)
        owned_drain(rt, i);
    unsigned n = 0;
    for (unsigned i = 0; i < rt->nshards; i++)
        for (urt_task *t = rt->shards[i].head; t; t = t->own_next)
            n++;
    if (n == 0)
        return;
    urt__log("urt: destroy: %u task handle(s) were never joined or detached; freeing them:\n", n);
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        while (s->head) {
            urt_task *t = s->head;
            urt__log("urt:   task %llu (%s)\n", (unsigned long long)t->id, t->name[0] ? t->name : "unnamed");
            handle_release(t);   /* a zombie: unlinks it and drops the handle's ref */
        }
    }
}

void urt_runtime_destroy(urt_runtime *rt)
{
    if (!rt)
        return;
    CHECK_RT(rt, "urt_runtime_destroy");
    if (inside_runtime(rt)) {
        urt__log("urt: urt_runtime_destroy called from inside the runtime (a worker, a blocking job or "
                 "a hook); ignored\n");
        return;
    }
    urt_runtime_shutdown(rt, 0);
    if (rt->leak_workers) {
        /* look again: what was stuck may have ended since */
        uint64_t wait = rt->cfg.cancel_wait_ns < 1000 * MS_NS ? rt->cfg.cancel_wait_ns : 1000 * MS_NS;
        if (!wait_live_zero(rt, urt__now() + wait) || !join_workers(rt, wait) || !pool_shutdown(rt, wait)) {
            urt__log("urt: destroy: a task or blocking job still runs; the runtime's memory is left allocated\n");
            return;
        }
        rt->leak_workers = false;
    }
    /* plain threads still in urt_join were woken when their tasks ended; wait
     * until they are done with our memory (acquire: pairs with their release) */
    while (at_load_acquire(&rt->blocked))
        usleep(100);
    free_zombies(rt);
    destroy_parts(rt);
}

int urt_runtime_block_on(urt_runtime *rt, urt_fn fn, void *arg, void **ret)
{
    if (!rt || !fn)
        return -EINVAL;
    CHECK_RT(rt, "urt_runtime_block_on");
    if (urt__cur_worker() || urt__in_hook())
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
        o->stack_retries = at_load_relaxed(&s->stack_retries);
        o->hibernations = at_load_relaxed(&s->hibernations);
        o->restores = at_load_relaxed(&s->restores);
        o->hibernated = at_load_relaxed(&s->hibernated);
    }
    return (int)rt->nworkers;
}
