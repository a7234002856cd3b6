/*
 * metrics.c - runtime-wide totals (urt_runtime_metrics) and the task dump
 * (urt_runtime_dump), which ends with the same totals.
 *
 * Where each number comes from, read without stopping anything:
 *   live_tasks, spawned_total, completed_total
 *       sums over the owned-task shards (task.c): each shard's counters
 *       have one writer (its worker, or the lock's holder for the plain
 *       threads' shards), so the spawn path gains no shared counter. Within a shard spawned -
 *       completed == live always; the sums are exact whenever nothing is
 *       spawned or ends while they are read.
 *   blocking_threads, blocking_idle, blocking_queued
 *       the blocking pool's own fields, under its lock: threads alive,
 *       threads waiting for work that no submitter has claimed, and jobs
 *       (spawn_blocking and block_in_place) not yet taken by a thread.
 *   inject_queued    the inject queue's length.
 *   hibernated_tasks tasks whose stack is hibernated now (hibernate.c):
 *       the workers' counters, summed.
 *   stack_bytes_resident
 *       mincore(2) over every stack mapping the stack pool made (stack.c's
 *       registry): touched pages of stacks in use, in the worker caches and
 *       in the pool. Exact for the moment each mapping is looked at.
 *
 * The dump walks the owned-task shards under their locks, one line per
 * live task. Times ("for", "age") use the task clock (task_clock in
 * task.c): on workers it is the worker's clock at its last maintenance, so
 * they are coarse, by at most one maintenance interval (or one long task
 * run), and never read the clock per task switch.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "runtime/runtime.h"

int urt_runtime_metrics(urt_runtime *rt, urt_metrics *out)
{
    if (!rt || !out)
        return -EINVAL;
    CHECK_RT(rt, "urt_runtime_metrics");
    memset(out, 0, sizeof(*out));
    out->workers = rt->nworkers;
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        uint64_t rdone = at_load_acquire(&s->rdone);   /* first: see owned_live */
        out->live_tasks += at_load_relaxed(&s->count) - rdone;
        out->spawned_total += at_load_relaxed(&s->spawned);
        out->completed_total += at_load_relaxed(&s->completed) + rdone;
    }
    blocking_pool *p = &rt->pool;
    pthread_mutex_lock(&p->lock);
    out->blocking_threads = p->nthreads;
    out->blocking_idle = p->nidle;
    for (q_node *n = p->bq.head; n; n = n->next)
        out->blocking_queued++;
    for (q_node *n = p->pq.head; n; n = n->next)
        out->blocking_queued++;
    pthread_mutex_unlock(&p->lock);
    out->inject_queued = inject_len(&rt->inject);
    for (unsigned i = 0; i < rt->nworkers; i++)
        out->hibernated_tasks += at_load_relaxed(&rt->workers[i].stats.hibernated);
    out->stack_bytes_resident = urt__stack_resident(&rt->stack_pool);
    return 0;
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

/* ns as milliseconds with three decimals: "12.345ms" */
static void put_ms(int fd, const char *key, uint64_t ns)
{
    dprintf(fd, " %s=%llu.%03llums", key, (unsigned long long)(ns / 1000000u),
            (unsigned long long)(ns / 1000u % 1000u));
}

static void dump_task(int fd, const urt_task *t, uint64_t now)
{
    uint32_t st = at_load_relaxed(&t->state);
    /* written by the task or whoever moves it: a racy snapshot */
    const char *what = __atomic_load_n(&t->wait_what, __ATOMIC_RELAXED);
    int wfd = __atomic_load_n(&t->wait_fd, __ATOMIC_RELAXED);
    int tid = at_load_relaxed(&t->run_tid);
    uint64_t since = at_load_relaxed(&t->since_ns);
    dprintf(fd, "task %llu name=%s kind=%s home=%d state=%s%s", (unsigned long long)t->id,
            t->name[0] ? t->name : "-", t->kind == TK_BLOCKING ? "blocking" : "fiber",
            at_load_relaxed(&t->home), state_name(st), (st & TS_CANCELLED) ? ",cancelled" : "");
    put_ms(fd, "for", now > since ? now - since : 0);
    put_ms(fd, "age", now > t->born_ns ? now - t->born_ns : 0);
    if (what && !(st & (TS_RUNNING | TS_SCHEDULED)))
        dprintf(fd, " waits=%s fd=%d", what, wfd);
    if (__atomic_load_n(&t->hib_img, __ATOMIC_RELAXED))
        dprintf(fd, " hibernated");
    if (tid)
        dprintf(fd, " on=pool-thread:%d%s", tid, t->kind == TK_FIBER ? " in=block_in_place" : "");
    else if (t->kind == TK_BLOCKING)
        dprintf(fd, " on=blocking-pool");
    dprintf(fd, "\n");
}

int urt_runtime_dump(urt_runtime *rt, int fd)
{
    if (!rt || fd < 0)
        return -EINVAL;
    CHECK_RT(rt, "urt_runtime_dump");
    uint64_t now = urt__now();
    int n = 0;
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        at_lock_take(&s->lock);
        for (urt_task *t = s->head; t; t = t->own_next) {
            if ((at_load_relaxed(&t->own) & OWN_DONE) || (at_load_relaxed(&t->state) & TS_COMPLETE))
                continue;   /* complete: only its handle is left, or it waits for its worker's drain */
            dump_task(fd, t, now);
            n++;
        }
        at_lock_give(&s->lock);
    }
    urt_metrics m;
    urt_runtime_metrics(rt, &m);
    dprintf(fd,
            "runtime workers=%llu live_tasks=%llu spawned_total=%llu completed_total=%llu "
            "blocking_threads=%llu blocking_idle=%llu blocking_queued=%llu inject_queued=%llu "
            "hibernated_tasks=%llu stack_bytes_resident=%llu\n",
            (unsigned long long)m.workers, (unsigned long long)m.live_tasks, (unsigned long long)m.spawned_total,
            (unsigned long long)m.completed_total, (unsigned long long)m.blocking_threads,
            (unsigned long long)m.blocking_idle, (unsigned long long)m.blocking_queued,
            (unsigned long long)m.inject_queued, (unsigned long long)m.hibernated_tasks,
            (unsigned long long)m.stack_bytes_resident);
    return n;
}
