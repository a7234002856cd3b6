/*
 * blocking.c - the blocking pool: plain threads, grown on demand and ended
 * after 10 s idle, that run urt_spawn_blocking work and host fibers inside
 * urt_block_in_place.
 *
 * Two queues under one lock:
 *   bq  spawn_blocking tasks; at most max_blocking of them run at once, the
 *       rest wait in FIFO order
 *   pq  fibers in block_in_place; never limited (their own quota), so a
 *       block_in_place can never wait behind blocking work it depends on
 * A thread takes pq work first.
 *
 * Idle threads and wakeups (after Tokio's blocking pool, num_notify):
 *   nidle    threads waiting on cv that nobody has claimed yet
 *   nnotify  wakeups sent and not yet consumed
 * A submitter that finds nidle > 0 claims one (nidle--, nnotify++) and
 * signals; otherwise it starts a thread. A thread that wakes consumes a
 * wakeup if there is one, else (a timeout, a spurious wake) it takes itself
 * off nidle. So one idle thread is never counted for two jobs.
 * When no thread is idle and none can be started (pthread_create fails:
 * RLIMIT_NPROC, memory), the submit says -EAGAIN instead of queueing work
 * that nothing would run: always for block_in_place, and for
 * spawn_blocking when the pool has no thread at all.
 *
 * block_in_place protocol:
 *   1. the fiber sets bip_fn and switches out (SW_BIP); its state stays RUNNING
 *   2. its worker, on its own stack, calls pool_submit_bip and goes on (if
 *      that fails, it sets bip_err and resumes the fiber itself, which then
 *      returns -EAGAIN without calling fn)
 *   3. a pool thread switches into the fiber, which runs fn on its own stack
 *   4. the fiber switches back (SW_BIP_DONE); the pool thread marks it
 *      SCHEDULED and pushes it to its home worker's mailbox
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define KEEPALIVE_S 10

int pool_init(blocking_pool *p, unsigned max)
{
    memset(p, 0, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->max_blocking = max;
    return 0;
}

void pool_destroy(blocking_pool *p)
{
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->cv);
    pthread_cond_destroy(&p->done_cv);
    free(p->exited);
}

static void run_blocking(urt_task *t, int tid)
{
    if (at_load_acquire(&t->state) & TS_CANCELLED) {
        task_complete(t, NULL, -ECANCELED);
        return;
    }
    uint32_t s = at_load_relaxed(&t->state);
    while (!at_cas_acqrel(&t->state, &s, (s & ~TS_SCHEDULED) | TS_RUNNING))
        ;
    at_store_relaxed(&t->since_ns, urt__now());   /* for dumps: where and since when it runs */
    at_store_relaxed(&t->run_tid, tid);
    void *r = t->fn(t->arg);
    at_store_relaxed(&t->run_tid, 0);
    task_complete(t, r, 0);
}

static void run_bip(urt_task *t, urt_fiber *self, int tid)
{
    at_store_relaxed(&t->run_tid, tid);   /* for dumps: the fiber runs here now */
    t->resumer = self;
    urt__set_cur(NULL, t);
    urt__overflow_set_current(&t->ovf);
    fiber_switch(self, &t->fiber);
    urt__overflow_set_current(NULL);
    urt__set_cur(NULL, NULL);
    at_store_relaxed(&t->run_tid, 0);
    /* back: fn has returned (SW_BIP_DONE); send the fiber home */
    task_set_scheduled(t);
    worker_push_mailbox(t->rt, (unsigned)at_load_relaxed(&t->home), t);
}

static void *pool_main(void *arg)
{
    urt_runtime *rt = arg;
    blocking_pool *p = &rt->pool;
    urt_fiber self;
    fiber_init_thread(&self);
    urt__overflow_thread_init();   /* an overflow inside block_in_place is reported too */
    urt__set_pool_rt(rt);
    int tid = (int)syscall(SYS_gettid);   /* named in task dumps */
    pthread_mutex_lock(&p->lock);
    for (;;) {
        q_node *n = qf_pop(&p->pq);
        if (n) {
            pthread_mutex_unlock(&p->lock);
            run_bip(task_of(n), &self, tid);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (!qf_empty(&p->bq) && p->running_blocking < p->max_blocking) {
            n = qf_pop(&p->bq);
            p->running_blocking++;
            pthread_mutex_unlock(&p->lock);
            run_blocking(task_of(n), tid);
            pthread_mutex_lock(&p->lock);
            p->running_blocking--;
            continue;
        }
        if (p->shutdown)
            break;
        struct timespec ts;
        urt__abstime(&ts, KEEPALIVE_S * 1000000000ull);
        p->nidle++;
        int r = pthread_cond_timedwait(&p->cv, &p->lock, &ts);
        if (p->nnotify)
            p->nnotify--;   /* a submitter claimed us and took us off nidle */
        else
            p->nidle--;     /* timeout or spurious wake: we take ourselves off */
        if (r == ETIMEDOUT && qf_empty(&p->pq) && !(!qf_empty(&p->bq) && p->running_blocking < p->max_blocking))
            break;
    }
    /* leave our id for pool_shutdown to join */
    if (p->nexited == p->capexited) {
        unsigned cap = p->capexited ? p->capexited * 2 : 16;
        pthread_t *e = realloc(p->exited, cap * sizeof(*e));
        if (e) {
            p->exited = e;
            p->capexited = cap;
        }
    }
    if (p->nexited < p->capexited)
        p->exited[p->nexited++] = pthread_self();
    else
        pthread_detach(pthread_self());
    p->nthreads--;
    pthread_cond_broadcast(&p->done_cv);
    pthread_mutex_unlock(&p->lock);
    urt__set_pool_rt(NULL);
    urt__overflow_thread_fini();
    fiber_fini_thread(&self);
    return NULL;
}

/* under p->lock: start a thread; 0 or -EAGAIN */
static int grow(urt_runtime *rt)
{
    blocking_pool *p = &rt->pool;
    pthread_t th;
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int r = pthread_create(&th, NULL, pool_main, rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (r != 0)
        return -EAGAIN;
    p->nthreads++;
    return 0;
}

/* under p->lock: wake an idle thread that nobody has claimed; false if none */
static bool claim_idle(blocking_pool *p)
{
    if (p->nidle == 0)
        return false;
    p->nidle--;
    p->nnotify++;
    pthread_cond_signal(&p->cv);
    return true;
}

/* under p->lock: join threads that have ended */
static void reap_exited(blocking_pool *p)
{
    while (p->nexited) {
        pthread_t th = p->exited[--p->nexited];
        pthread_mutex_unlock(&p->lock);
        pthread_join(th, NULL);
        pthread_mutex_lock(&p->lock);
    }
}

int pool_submit_blocking(urt_runtime *rt, urt_task *t)
{
    blocking_pool *p = &rt->pool;
    int err = 0;
    pthread_mutex_lock(&p->lock);
    /* Over the limit the job waits its turn; under it, it needs a thread of
     * its own. If none can be started, a thread that exists will take it when
     * it is free; with no thread at all nothing would. */
    if (p->running_blocking < p->max_blocking && !claim_idle(p) && grow(rt) < 0 && p->nthreads == 0)
        err = -EAGAIN;
    if (err == 0)
        qf_push(&p->bq, &t->node);
    if (p->nexited > 8)
        reap_exited(p);
    pthread_mutex_unlock(&p->lock);
    return err;
}

int pool_submit_bip(urt_runtime *rt, urt_task *t)
{
    blocking_pool *p = &rt->pool;
    int err = 0;
    pthread_mutex_lock(&p->lock);
    /* never limited: an idle thread, or a new one, or -EAGAIN */
    if (!claim_idle(p) && grow(rt) < 0)
        err = -EAGAIN;
    else
        qf_push(&p->pq, &t->node);
    pthread_mutex_unlock(&p->lock);
    return err;
}

bool pool_shutdown(urt_runtime *rt, uint64_t wait_ns)
{
    blocking_pool *p = &rt->pool;
    pthread_mutex_lock(&p->lock);
    p->shutdown = true;
    pthread_cond_broadcast(&p->cv);
    struct timespec ts;
    urt__abstime(&ts, wait_ns);
    while (p->nthreads)
        if (pthread_cond_timedwait(&p->done_cv, &p->lock, &ts) == ETIMEDOUT)
            break;
    bool all = p->nthreads == 0;
    reap_exited(p);
    pthread_mutex_unlock(&p->lock);
    return all;   /* false: a blocking job never returned; its thread still runs */
}

int urt_block_in_place(urt_fn fn, void *arg, void **ret)
{
    if (!fn)
        return -EINVAL;
    urt_task *t = urt__cur_task();
    if (!t || t->in_bip || !urt__cur_worker()) {
        void *r = fn(arg);   /* outside a task, or nested: inline */
        if (ret)
            *ret = r;
        return 0;
    }
    if (urt__in_hook())
        return -EDEADLK;
    t->in_bip = true;
    t->bip_err = 0;
    task_suspend(t, SW_BIP);
    if (t->bip_err) {
        /* no thread could be had: still on our worker, fn not called */
        t->in_bip = false;
        return t->bip_err;
    }
    /* now on a pool thread, on our own stack */
    void *r = fn(arg);
    t->in_bip = false;
    task_suspend(t, SW_BIP_DONE);
    /* home again */
    if (ret)
        *ret = r;
    return 0;
}
