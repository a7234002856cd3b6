/*
 * watchdog.c - notices a worker stuck in one task (a blocking call that
 * should have been urt_block_in_place, or a busy loop).
 *
 * Every tick (watchdog_ns / 4, between 10 ms and 250 ms) the monitor reads
 * each worker's run_seq (bumped per task run) and run_start (1 while a task
 * runs). A worker whose task has not changed for watchdog_ns is stalled:
 * the monitor counts it (watchdog_stalls), prints one line, and moves the
 * worker's stealable (never-run) tasks to the inject queue, batch by batch,
 * waking sleepers to take them, so they are not held hostage. Pinned tasks
 * stay: they can only run at home.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "runtime/runtime.h"

static void rescue(urt_runtime *rt, urt_worker *w)
{
    q_node *buf[128];
    unsigned n;
    while ((n = lq_steal_batch(&w->lq, buf, 128)) > 0) {
        for (unsigned i = 0; i + 1 < n; i++)
            buf[i]->next = buf[i + 1];
        buf[n - 1]->next = NULL;
        inject_push_batch(&rt->inject, buf[0], buf[n - 1], n);
        at_fence_seqcst();   /* pairs with the fence in park(), as worker_schedule_remote */
        worker_notify_parked(rt);
    }
}

static void *wd_main(void *arg)
{
    urt_runtime *rt = arg;
    unsigned n = rt->nworkers;
    uint64_t *seq = calloc(n, sizeof(*seq));
    uint64_t *since = calloc(n, sizeof(*since));
    bool *stalled = calloc(n, sizeof(*stalled));
    uint64_t limit = rt->cfg.watchdog_ns, tick = limit / 4;
    if (tick < 10 * 1000 * 1000)
        tick = 10 * 1000 * 1000;
    if (tick > 250 * 1000 * 1000)
        tick = 250 * 1000 * 1000;
    pthread_mutex_lock(&rt->wd_lock);
    while (!rt->wd_stop && seq && since && stalled) {
        struct timespec ts;
        urt__abstime(&ts, tick);
        pthread_cond_timedwait(&rt->wd_cv, &rt->wd_lock, &ts);
        if (rt->wd_stop)
            break;
        uint64_t now = urt__now();
        for (unsigned i = 0; i < n; i++) {
            urt_worker *w = &rt->workers[i];
            uint64_t s = at_load_relaxed(&w->run_seq);
            bool in_task = at_load_relaxed(&w->run_start) != 0;
            if (!in_task || s != seq[i]) {
                seq[i] = s;
                since[i] = now;
                stalled[i] = false;
                continue;
            }
            if (now - since[i] < limit)
                continue;
            if (!stalled[i]) {
                stalled[i] = true;
                at_fadd_relaxed(&w->stats.watchdog_stalls, 1);
                urt__log("urt: worker %u has been running one task for %llu ms (a blocking call? "
                         "use urt_block_in_place); moving its queued tasks to other workers\n",
                         i, (unsigned long long)((now - since[i]) / 1000000));
            }
            rescue(rt, w);
        }
    }
    pthread_mutex_unlock(&rt->wd_lock);
    free(seq);
    free(since);
    free(stalled);
    return NULL;
}

int watchdog_start(urt_runtime *rt)
{
    sigset_t block, old;
    sigfillset(&block);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int r = pthread_create(&rt->watchdog, NULL, wd_main, rt);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    rt->watchdog_on = r == 0;
    return -r;
}

void watchdog_stop(urt_runtime *rt)
{
    if (!rt->watchdog_on)
        return;
    pthread_mutex_lock(&rt->wd_lock);
    rt->wd_stop = true;
    pthread_cond_broadcast(&rt->wd_cv);
    pthread_mutex_unlock(&rt->wd_lock);
    pthread_join(rt->watchdog, NULL);
    rt->watchdog_on = false;
}
