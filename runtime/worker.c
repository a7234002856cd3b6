/*
 * worker.c - the worker loop, after Tokio's multi_thread worker (Context::run).
 *
 *   tick++
 *   every event_interval ticks: maintenance (one poll of the ring, below;
 *       deferred (yielded) tasks back to the run queue once YIELD_SLICE_NS
 *       has passed since they last went back, mailbox drained,
 *       adaptive global_queue_interval recomputed, ring counters published)
 *   next task: every global_queue_interval ticks the inject queue first;
 *       otherwise LIFO slot (at most 3 in a row), the run queues (pinned
 *       runq and stealable lq, alternating), the mailbox, the inject queue
 *   run it until it suspends, yields or ends; then act on why it switched out
 *   nothing ready: the idle cycle (below)
 *
 * Syscall budget: at most ONE io_uring_enter per idle cycle, as a raw
 * liburing loop makes one io_uring_submit_and_wait per pass. A task's op
 * is only queued as an SQE when it suspends; nothing is submitted between
 * tasks, so the SQEs of the tasks run in one pass go to the kernel together.
 *
 * The idle cycle (the run queues, LIFO slot and mailbox are empty):
 *   1. poll_io: if the kernel holds completions as task work
 *      (IORING_SQ_TASKRUN, one load of a shared word) or CQEs wait in the CQ
 *      while SQEs are queued: ONE enter (ring_get_events: submit + run task
 *      work, no wait), then reap. CQEs already in the CQ with nothing queued
 *      are reaped with no enter. Work found: back to the top (the cycle's
 *      one enter, if any, is spent).
 *   2. steal (throttled: at most half the workers search; random first
 *      victim; take half of its stealable tasks), then the inject queue,
 *      all in user space. Work found: submit what the ended pass queued
 *      (the cycle's one enter) and run it.
 *   3. park: announce as sleeper (SeqCst), re-check the run queues, the
 *      mailbox, the inject queue, the CQ and the stop flag, then ONE enter,
 *      io_uring_submit_and_wait(wait_nr = 1) with a 1 s safety timeout:
 *      it submits the queued SQEs, runs the task work, and sleeps only if
 *      no CQE came of that. A doorbell (MSG_RING or the eventfd read) is a
 *      CQE, so it ends the wait like any completion; the safety timeout only
 *      bounds a lost one. After it: reap (no enter), drain the mailbox.
 *      A re-check that finds work (or the stop flag) skips the wait; the
 *      queued SQEs are then submitted on their own, the cycle's one enter.
 * A busy worker (its queues never empty) makes no enter between tasks: at
 * maintenance it peeks the CQ (5 ns) and enters once only if task work is
 * flagged or SQEs are queued, so no queued op waits longer than
 * event_interval tasks. An optional spin before park (spin_us) submits
 * first, so queued SQEs do not wait out the spin.
 *
 * Two local queues, because a fiber that has run stays on its home worker:
 *   lq    never-run tasks and migratable tasks: other workers steal from it
 *   runq  pinned tasks woken here (owner only, unbounded intrusive FIFO)
 *
 * Doorbell protocol (at most one pending per worker):
 *   waker:  push to the mailbox; SeqCst fence; if target->sleeping: CAS
 *           target->bell 0 -> 1 and, if it won, send a MSG_RING (from its own
 *           ring, or ring-less / eventfd from a thread with no ring)
 *   owner:  sleeping = 1 (SeqCst); fence; re-check the mailbox; wait;
 *           sleeping = 0; bell = 0; drain the mailbox
 *   The fences pair with each other: either the waker sees sleeping = 1, or
 *   the owner sees the pushed task before it waits.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>


#include "runtime/runtime.h"

#define MAX_LIFO_POLLS 3
#define PARK_SAFETY_NS (1000ull * 1000 * 1000)
#define TARGET_GQI_NS 200000ull
/* Yielded tasks go back to the run queue at most once per slice while other
 * work is ready: fairness by time, not by polls. Tokio's rule (every
 * event_interval polls) gives eight tasks that yield and then compute 10 us
 * 80 us of every 85 and a flood of short tasks the rest; with the slice the
 * short ones get what the slice leaves. The slice is Tokio's latency target
 * for remote tasks (TARGET_GQI_NS); with nothing else ready the yielders run
 * again at once. */
#define YIELD_SLICE_NS TARGET_GQI_NS
#define STACK_RETRY_NS (10ull * 1000 * 1000)        /* a task with no stack tries again this often */
#define STACK_GIVE_UP_NS (1000ull * 1000 * 1000)    /* and is failed with -ENOMEM after this long */

static void h_op_done(void *ctx, ring_op *op);
static void h_bell(void *ctx, int32_t res);
static void h_bell_fail(void *ctx, unsigned target, int32_t res);
static const ring_handlers handlers = {
    .op_done = h_op_done,
    .bell = h_bell,
    .bell_fail = h_bell_fail,
};

/* ---- local queues ----------------------------------------------------------- */

static inline bool stealable(urt_task *t, urt_worker *w)
{
    if (t->flags & URT_TASK_LOCAL)
        return false;   /* its home was set at spawn (task.c): runs only there */
    if (!t->has_run)
        return true;
    return (t->flags & URT_TASK_MIGRATABLE) && !t->op_pending && at_load_relaxed(&t->home) == (int)w->id;
}

static inline void runq_push(urt_worker *w, urt_task *t) { qf_push(&w->runq, &t->node); }

static inline urt_task *runq_pop(urt_worker *w)
{
    q_node *n = qf_pop(&w->runq);
    return n ? task_of(n) : NULL;
}

static void push_queue(urt_worker *w, urt_task *t)
{
    if (stealable(t, w)) {
        unsigned moved = lq_push_owner(&w->lq, &t->node, &w->rt->inject);
        STAT_INC(w, local_schedules);
        if (moved)
            STAT_INC(w, overflows);
        /* something to steal: wake a sleeper if nobody is searching (one
         * atomic load when every worker is busy or one already searches) */
        worker_notify_parked(w->rt);
    } else {
        runq_push(w, t);
        STAT_INC(w, local_schedules);
    }
}

/* Start loading, all at once, what resuming t reads first: the top of its
 * saved stack (none for a task that never ran), its header's line 1 and its
 * urt_buf_send record (NULL unless it sends with it: a prefetch of NULL
 * does nothing). Only line 0, which its waker has just read, is loaded
 * here: no miss waits on another. */
static inline void prefetch_resume(const urt_task *t)
{
    fiber_prefetch_saved(&t->fiber);
    __builtin_prefetch((const char *)t + 64);
    __builtin_prefetch(t->tx);
}

void worker_schedule_local(urt_worker *w, urt_task *t, bool lifo)
{
    if (lifo && !(w->rt->cfg.flags & URT_CONFIG_NO_LIFO)) {
        urt_task *prev = w->lifo;
        w->lifo = t;
        prefetch_resume(t);   /* it runs next */
        if (!prev)
            return;
        t = prev;
    }
    push_queue(w, t);
}

void worker_schedule_remote(urt_runtime *rt, urt_task *t)
{
    inject_push(&rt->inject, &t->node);
    /* seq_cst: pairs with the fence in park() after the sleeper announce;
     * either a parking worker sees the task, or we see it in the idle set */
    at_fence_seqcst();
    worker_notify_parked(rt);
}

void worker_push_mailbox(urt_runtime *rt, unsigned target, urt_task *t)
{
    urt_worker *tw = &rt->workers[target];
    mb_push(&tw->mb, &t->node);
    at_fadd_relaxed(&tw->stats.mailbox_pushes, 1);
    /* seq_cst: pairs with the fence after `sleeping = 1` in park() */
    at_fence_seqcst();
    if (at_load_relaxed(&tw->sleeping))
        worker_ring_bell(rt, target);
}

void worker_kick(urt_runtime *rt, unsigned target)
{
    /* seq_cst: pairs with the fence after `sleeping = 1` in park() */
    at_fence_seqcst();
    if (at_load_relaxed(&rt->workers[target].sleeping))
        worker_ring_bell(rt, target);
}

void worker_notify_parked(urt_runtime *rt)
{
    int id = idle_worker_to_notify(&rt->idle);
    if (id >= 0)
        worker_ring_bell(rt, (unsigned)id);
}

void worker_ring_bell(urt_runtime *rt, unsigned target)
{
    urt_worker *tw = &rt->workers[target];
    uint32_t exp = 0;
    /* acq_rel: pairs with the owner's release store of bell = 0 after waking */
    if (!at_cas_strong_acqrel(&tw->bell, &exp, 1))
        return;   /* one is already on its way */
    int fd = at_load_acquire(&tw->ring_fd);
    if (fd < 0)
        return;
    urt_worker *w = urt__cur_worker();
    int r;
    if (w && w->rt == rt) {
        r = ring_bell(&w->ring, fd, target);
        STAT_INC(w, wakes_sent);
    } else if (rt->ringless) {
        r = ring_bell_ringless(fd);
    } else {
        uint64_t one = 1;
        r = write(tw->efd, &one, sizeof(one)) == sizeof(one) ? 0 : -EIO;
    }
    if (r < 0)   /* not sent: the next waker tries again (the park timeout bounds the delay) */
        at_store_release(&tw->bell, 0);
}

void worker_submit(urt_worker *w)
{
    if (w->ring.pending) {
        int r = ring_submit(&w->ring);
        if (r == -EBUSY || r == -EAGAIN)   /* CQ backlog: reap, then the next submit goes through */
            ring_reap(&w->ring, &handlers, w);
    }
}

/* ---- CQE handlers -------------------------------------------------------------- */

static void arm_eventfd(urt_worker *w)
{
    if (w->efd < 0 || w->efd_armed)
        return;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return;
    ring_op_start(&w->ring, &w->efd_op, NULL);
    io_uring_prep_read(sqe, w->efd, &w->efd_buf, sizeof(w->efd_buf), 0);
    io_uring_sqe_set_data64(sqe, ring_op_data(&w->efd_op));
    w->efd_armed = true;
}

static void h_op_done(void *ctx, ring_op *op)
{
    urt_worker *w = ctx;
    if (op == &w->efd_op) {
        w->efd_armed = false;
        h_bell(w, op->res);
        return;
    }
    urt_task *t = op->owner;
    if (t)
        task_wake(t);   /* home is here: goes to the LIFO slot */
}

static void h_bell(void *ctx, int32_t res)
{
    urt_worker *w = ctx;
    STAT_INC(w, wakes_received);
    /* release: pairs with the CAS in worker_ring_bell; the doorbell has
     * arrived, so the next one must be sent */
    at_store_release(&w->bell, 0);
}

static void h_bell_fail(void *ctx, unsigned target, int32_t res)
{
    urt_worker *w = ctx;
    urt_runtime *rt = w->rt;
    if (target >= rt->nworkers)
        return;
    /* the doorbell never arrived: let the next waker (or our retry) ring again */
    at_store_release(&rt->workers[target].bell, 0);
    w->bell_retry = true;
}

/* ---- finding work ------------------------------------------------------------------ */

static void drain_defer(urt_worker *w)
{
    qf_append(&w->runq, &w->defer);
}

/* Anything in the mailbox (woken tasks) or the control mailbox (close requests)? */
static inline bool mail_waiting(urt_worker *w)
{
    return !mb_is_empty(&w->mb) || !mb_is_empty(&w->ctl);
}

static void drain_mailbox(urt_worker *w)
{
    if (!mb_is_empty(&w->ctl))
        fdt_drain_ctl(w);
    q_node *n = mb_take_all(&w->mb);
    while (n) {
        q_node *next = n->next;
        urt_task *t = task_of(n);
        if (stealable(t, w))
            push_queue(w, t);
        else
            runq_push(w, t);
        n = next;
    }
}

static urt_task *pull_inject(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    if (inject_is_empty(&rt->inject))
        return NULL;
    /* take a fair share, as Tokio does: len / workers + 1 (counted by the
     * pop, under its lock), bounded by the room left in the local queue */
    unsigned n = lq_remaining(&w->lq) / 2;
    if (n > 64)
        n = 64;
    if (n == 0)
        n = 1;
    q_node *buf[64];
    unsigned got = inject_pop_batch(&rt->inject, buf, n, rt->nworkers);
    if (got == 0)
        return NULL;
    STAT_ADD(w, inject_schedules, got);
    for (unsigned i = 1; i < got; i++)
        lq_push_owner(&w->lq, buf[i], &rt->inject);
    return task_of(buf[0]);
}

static urt_task *pop_local(urt_worker *w)
{
    urt_task *t;
    w->runq_first = !w->runq_first;
    if (w->runq_first) {
        if ((t = runq_pop(w)))
            return t;
        q_node *n = lq_pop_owner(&w->lq);
        return n ? task_of(n) : NULL;
    }
    q_node *n = lq_pop_owner(&w->lq);
    if (n)
        return task_of(n);
    return runq_pop(w);
}

static void publish_ring_stats(urt_worker *w)
{
    at_store_relaxed(&w->r_sqes, w->ring.sqes_submitted);
    at_store_relaxed(&w->r_cqes, w->ring.cqes_reaped);
    at_store_relaxed(&w->r_enters, w->ring.enters);
}

/* A doorbell we sent failed: ring every sleeper again (it may be the one). */
static void retry_bells(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    if (!w->bell_retry)
        return;
    w->bell_retry = false;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (at_load_relaxed(&rt->workers[i].sleeping))
            worker_ring_bell(rt, i);
}

/* Tasks whose stack could not be mapped wait in nomem; every STACK_RETRY_NS
 * they go back to the run queue for another try. */
static void retry_stacks(urt_worker *w)
{
    if (qf_empty(&w->nomem))
        return;
    uint64_t t = urt__now();
    if (t - w->nomem_last < STACK_RETRY_NS)
        return;
    w->nomem_last = t;
    q_node *n;
    while ((n = qf_pop(&w->nomem)))
        push_queue(w, task_of(n));
}

/* Post and dispatch what the ring holds with at most one enter. The enter
 * (ring_get_events: submit + run the kernel's task work, no wait) is made
 * when the kernel holds completions as task work (IORING_SQ_TASKRUN, one
 * load of a shared word), or when SQEs are queued and `submit` asks for
 * them to go now, or when SQEs are queued and the CQ already has work (the
 * pass that follows must not hold them back). Otherwise the CQ is only
 * peeked. Returns the CQEs reaped. */
static unsigned poll_ring(urt_worker *w, bool submit)
{
    urt_ring *r = &w->ring;
    bool ready = ring_cq_ready(r);
    if (ring_needs_enter(r) || (r->pending && (submit || ready))) {
        ring_get_events(r);   /* -EBUSY (CQ backlog) included: the reap below makes room */
        ready = ring_cq_ready(r);
    }
    return ready ? ring_reap(r, &handlers, w) : 0;
}

static void maintenance(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    /* a busy worker's only enter: its queued SQEs wait at most
     * event_interval tasks, and task work is run only when flagged */
    poll_ring(w, true);
    uint64_t now = urt__now();
    if (!qf_empty(&w->defer) && now - w->defer_ns >= YIELD_SLICE_NS) {
        drain_defer(w);
        w->defer_ns = now;
    }
    if (mail_waiting(w))
        drain_mailbox(w);
    owned_drain(rt, w->id);   /* our tasks that completed elsewhere */
    net_pool_drain(w);
    retry_bells(w);
    retry_stacks(w);
    uint64_t polls = at_load_relaxed(&w->stats.polls);
    uint64_t dt = now - w->maint_ns, dp = polls - w->maint_polls;
    STAT_ADD(w, busy_ns, dt);
    if (rt->cfg.global_queue_interval == 0 && dp > 0) {
        /* aim at TARGET_GQI_NS between inject checks, as Tokio does */
        uint64_t avg = dt / dp;
        uint64_t gqi = avg ? TARGET_GQI_NS / avg : 127;
        if (gqi < 2)
            gqi = 2;
        if (gqi > 127)
            gqi = 127;
        w->gqi = (unsigned)gqi;
        if (w->gqi_left > w->gqi)
            w->gqi_left = w->gqi;
    }
    w->maint_ns = now;
    w->maint_polls = polls;
    if (w->hib_head)
        hib_scan(w, now);
    publish_ring_stats(w);
}

/* Local work besides the LIFO slot. */
static inline bool has_queued_work(urt_worker *w)
{
    return !qf_empty(&w->runq) || !lq_is_empty(&w->lq) || mail_waiting(w);
}

/* The task that likely runs after this one is the head of the pinned run
 * queue: after a reap has woken a batch, the queue holds them in order.
 * Start loading its saved context while this one runs, so that its resume
 * does not wait on memory. The queue is the owner's own, and a task on it
 * stays alive; a hibernated one's stack pages may be gone, which a
 * prefetch ignores.
 * Measured in ABBA pairs of urt-echo pooled under urt-load: user CPU per
 * message 0.76-0.85x at 50 and 500 connections, depth 1 (README). */
static inline void prefetch_next(urt_worker *w)
{
    q_node *n = qf_peek(&w->runq);
    if (n)
        prefetch_resume(task_of(n));
}

static urt_task *next_task(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    urt_task *t;
    if (--w->ev_left == 0) {
        w->ev_left = rt->cfg.event_interval;
        maintenance(w);
    }
    if (--w->gqi_left == 0) {
        w->gqi_left = w->gqi;
        if ((t = pull_inject(w)))
            return t;   /* a fair share, so a busy worker still drains remote spawns */
    }
    if (w->lifo) {
        t = w->lifo;
        w->lifo = NULL;
        /* Three in a row at most while other local work waits (two tasks
         * waking each other through the slot must not starve the queue);
         * with nothing else queued there is nobody to let run first, and
         * pushing it would announce it to the sleepers (push_queue), whose
         * steal would only move a chain of spawns to a cold worker. */
        if (w->lifo_polls < MAX_LIFO_POLLS || !has_queued_work(w)) {
            w->lifo_polls++;
            STAT_INC(w, lifo_polls);
            return t;
        }
        push_queue(w, t);   /* let the queue run */
    }
    w->lifo_polls = 0;
    if ((t = pop_local(w)))
        return t;
    if (mail_waiting(w)) {
        drain_mailbox(w);
        if ((t = pop_local(w)))
            return t;
    }
    return pull_inject(w);
}

static bool has_local_work(urt_worker *w)
{
    return w->lifo || has_queued_work(w);
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static urt_task *steal_work(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    if (rt->nworkers > 1) {
        if (!w->searching) {
            if (!idle_transition_to_searching(&rt->idle))
                goto inject;
            w->searching = true;
        }
        STAT_INC(w, steal_attempts);
        unsigned n = rt->nworkers, start = (unsigned)(xorshift(&w->rng) % n);
        for (unsigned i = 0; i < n; i++) {
            unsigned v = (start + i) % n;
            if (v == w->id)
                continue;
            unsigned cnt = 0;
            q_node *got = lq_steal_into(&rt->workers[v].lq, &w->lq, &cnt);
            if (got) {
                STAT_INC(w, steals);
                STAT_ADD(w, tasks_stolen, cnt);
                return task_of(got);
            }
        }
    }
inject:
    return pull_inject(w);
}

/* Non-blocking poll of the ring, the first step of an idle cycle (with
 * nothing else to run, yielded tasks run again at once): no enter
 * unless completions wait as task work or in the CQ (then one, which also
 * submits). Queued SQEs with nothing to collect are left for park's wait,
 * which submits them in the same enter. True when something became
 * runnable here. */
static bool poll_io(urt_worker *w)
{
    unsigned n = poll_ring(w, false);
    bool deferred = !qf_empty(&w->defer);
    drain_defer(w);
    net_pool_drain(w);
    if (n && lq_len(&w->lq) > 0)
        worker_notify_parked(w->rt);   /* once per batch, not per CQE */
    return deferred || has_local_work(w);
}

static bool work_pending_anywhere(urt_runtime *rt)
{
    if (!inject_is_empty(&rt->inject))
        return true;
    for (unsigned i = 0; i < rt->nworkers; i++)
        if (!lq_is_empty(&rt->workers[i].lq))
            return true;
    return false;
}

static void park(urt_worker *w)
{
    urt_runtime *rt = w->rt;
    arm_eventfd(w);
    publish_ring_stats(w);
    /* optional spin: a wake that lands within spin_us costs no syscall */
    if (rt->cfg.spin_us && rt->cfg.spin_us != URT_SPIN_NONE) {
        worker_submit(w);   /* queued SQEs must not wait out the spin */
        uint64_t until = urt__now() + (uint64_t)rt->cfg.spin_us * 1000;
        do {
            for (int i = 0; i < 64; i++)
                at_cpu_relax();
            if (has_local_work(w) || ring_cq_ready(&w->ring) || ring_needs_enter(&w->ring) ||
                !inject_is_empty(&rt->inject) || at_load_relaxed(&rt->stop))
                return;
        } while (urt__now() < until);
    }
    retry_bells(w);   /* a failed doorbell must not leave its target asleep */
    /* a submit above (spin, doorbell) may have reaped CQEs that made tasks
     * runnable here */
    if (has_local_work(w) || !qf_empty(&w->defer))
        return;
    bool last = idle_transition_to_parked(&rt->idle, w->id, w->searching);
    w->searching = false;
    if (last && work_pending_anywhere(rt))
        worker_notify_parked(rt);
    /* a doorbell from before this park (already reaped, or about to be) must
     * not stop the next notifier from ringing: at worst one extra wake */
    at_store_release(&w->bell, 0);
    at_store_seqcst(&w->sleeping, 1);
    /* seq_cst: pairs with the fences in worker_push_mailbox and
     * worker_schedule_remote (Dekker: push-then-check vs announce-then-check) */
    at_fence_seqcst();
    uint64_t t0 = urt__now();
    STAT_ADD(w, busy_ns, t0 - w->maint_ns);
    if (!has_local_work(w) && qf_empty(&w->defer) && inject_is_empty(&rt->inject) && !ring_cq_ready(&w->ring) &&
        !net_pool_has_returns(w) && !at_load_seqcst(&rt->stop)) {
        STAT_INC(w, parks);
        arm_eventfd(w);   /* a reap above may have consumed the armed read */
        /* the idle cycle's one enter: submit what the last pass queued, run
         * the task work, sleep until a CQE (a doorbell is one) */
        ring_submit_and_wait(&w->ring, qf_empty(&w->nomem) && !w->hib_more ? PARK_SAFETY_NS : STACK_RETRY_NS);
    }
    at_store_relaxed(&w->sleeping, 0);
    /* release: pairs with the CAS in worker_ring_bell; a doorbell sent from
     * now on is a new one */
    at_store_release(&w->bell, 0);
    w->maint_ns = urt__now();
    w->maint_polls = at_load_relaxed(&w->stats.polls);
    if (!idle_unpark_worker_by_id(&rt->idle, w->id))
        w->searching = true;   /* a notifier chose us and counted us as searching */
    ring_reap(&w->ring, &handlers, w);
    if (mail_waiting(w))
        drain_mailbox(w);
    owned_drain(rt, w->id);
    retry_stacks(w);
    if (w->hib_head)
        hib_scan(w, w->maint_ns);   /* an idle worker wakes at least once a second */
}

/* ---- running a task ------------------------------------------------------------------ */

static void task_entry(void *p)
{
    urt_task *t = p;
    fiber_entry_begin();
    void *r = t->fn(t->arg);
    task_timer_close(t);   /* a bound timer still armed must not outlive the header */
    bufsend_task_end(t);   /* a send still in flight keeps its record, not the header */
    t->ret = r;
    t->switch_reason = SW_DONE;
    fiber_switch_ex(&t->fiber, t->resumer, true);
    __builtin_unreachable();
}

static void after_switch(urt_worker *w, urt_task *t)
{
    urt_runtime *rt = w->rt;
    uint32_t s;
    int e;
    switch (t->switch_reason) {
    case SW_DONE:
        hib_forget(w, t);   /* the list of waits keeps a task until a scan or its end */
        fiber_destroy(&t->fiber);
        urt__stack_put(&rt->stack_pool, &w->stacks, &t->stack);
        task_complete(t, t->ret, 0);
        break;
    case SW_YIELD:
        task_set_scheduled(t);
        qf_push(&w->defer, &t->node);
        break;
    case SW_PARK: {
        s = at_load_relaxed(&t->state);
        uint32_t ns;
        do {
            ns = (s & TS_NOTIFIED) ? ((s & ~(TS_RUNNING | TS_NOTIFIED)) | TS_SCHEDULED) : (s & ~TS_RUNNING);
            /* acq_rel: pairs with task_wake's CAS; publishes the saved context */
        } while (!at_cas_acqrel(&t->state, &s, ns));
        if (s & TS_NOTIFIED)
            push_queue(w, t);
        break;
    }
    case SW_BIP:
        /* bip_err is written only on failure: on success a pool thread may
         * already run the fiber, which reads it */
        e = pool_submit_bip(rt, t);
        if (e < 0) {
            t->bip_err = e;
            /* no pool thread: resume it here; it returns the error */
            task_set_scheduled(t);
            runq_push(w, t);
        }
        break;
    default:
        abort();
    }
}

/* Inlined into the worker's loop, its one caller: a switch back from a task
 * leaves the return-stack predictor holding the task's return addresses, so
 * every `ret` the scheduler makes after the switch mispredicts; with no
 * frame between the loop and the switch there is none to make. */
static inline __attribute__((always_inline)) void run_task(urt_worker *w, urt_task *t)
{
    urt_runtime *rt = w->rt;
    if (w->searching) {
        w->searching = false;
        /* the last searcher to find work wakes another to keep looking */
        if (idle_transition_from_searching(&rt->idle))
            worker_notify_parked(rt);
    }
    uint32_t s = at_load_relaxed(&t->state);
    /* acq_rel: pairs with the scheduler that queued it; we see its context */
    while (!at_cas_acqrel(&t->state, &s, (s & ~(TS_SCHEDULED | TS_NOTIFIED)) | TS_RUNNING))
        ;
    STAT_INC(w, polls);
    if (!t->has_run) {
        if (s & TS_CANCELLED) {
            task_complete(t, NULL, -ECANCELED);
            return;
        }
        if (urt__stack_get(&rt->stack_pool, &w->stacks, t->stack_size, &t->stack) < 0) {
            /* memory may come back (other tasks end): try again later, and
             * give up (-ENOMEM, on_drop) only after STACK_GIVE_UP_NS */
            uint64_t now = urt__now();
            STAT_INC(w, stack_retries);
            if (!t->nomem_since)
                t->nomem_since = now;
            if (now - t->nomem_since >= STACK_GIVE_UP_NS) {
                task_complete(t, NULL, -ENOMEM);
                return;
            }
            task_set_scheduled(t);
            if (qf_empty(&w->nomem))
                w->nomem_last = now;
            qf_push(&w->nomem, &t->node);
            return;
        }
        fiber_init(&t->fiber, t->stack.lo, t->stack.hi, task_entry, t);
        t->ovf.stack = &t->stack;
        t->ovf.task_id = t->id;
        t->ovf.name = t->name;
        t->has_run = true;
        at_store_relaxed(&t->home, (int)w->id);
    } else if (t->flags & URT_TASK_MIGRATABLE) {
        at_store_relaxed(&t->home, (int)w->id);
    } else if (t->hibernated) {
        /* (a flag in the first line: the header's hibernation line stays unread) */
        hib_restore(w, t);   /* its live frames back in place before it resumes */
    }
    t->resumer = &w->sched;
    w->cur = t;
    urt__set_cur(w, t);
    urt__overflow_set_current(&t->ovf);
    at_store_relaxed(&w->run_seq, at_load_relaxed(&w->run_seq) + 1);
    at_store_relaxed(&w->run_start, 1);
    at_store_relaxed(&t->since_ns, w->maint_ns);   /* for dumps; see task_clock */
    prefetch_next(w);
    fiber_switch(&w->sched, &t->fiber);
    at_store_relaxed(&t->since_ns, w->maint_ns);   /* still RUNNING: nobody else writes it yet */
    at_store_relaxed(&w->run_start, 0);
    urt__overflow_set_current(NULL);
    urt__set_cur(w, NULL);
    w->cur = NULL;
    after_switch(w, t);
}

/* ---- the thread ------------------------------------------------------------------------ */

static void pin_self(unsigned id)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) != 0)
        return;
    int n = CPU_COUNT(&set);
    if (n <= 0)
        return;
    int want = (int)(id % (unsigned)n), k = 0;
    for (int c = 0; c < CPU_SETSIZE; c++) {
        if (!CPU_ISSET(c, &set))
            continue;
        if (k++ == want) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(c, &one);
            sched_setaffinity(0, sizeof(one), &one);
            return;
        }
    }
}

void *worker_main(void *arg)
{
    urt_worker *w = arg;
    urt_runtime *rt = w->rt;
    urt__set_cur(w, NULL);
    if (rt->cfg.flags & URT_CONFIG_PIN_WORKERS)
        pin_self(w->id);
    unsigned want = RING_WANT_DEFER | RING_WANT_COOP;
    if (rt->cfg.flags & URT_CONFIG_NO_DEFER)
        want = RING_WANT_COOP;
    if (rt->cfg.flags & URT_CONFIG_PLAIN_RING)
        want = 0;
    int err = ring_init(&w->ring, rt->cfg.ring_entries, want);
    if (err == 0 && !rt->ringless) {
        w->efd = eventfd(0, EFD_CLOEXEC);
        if (w->efd < 0)
            err = -errno;
    }
    if (err == 0) {
        fiber_init_thread(&w->sched);
        urt__overflow_thread_init();
        at_store_relaxed(&w->ring_flags, w->ring.setup_flags);
        at_store_release(&w->ring_fd, ring_fd(&w->ring));
    }
    /* tell the creator, then wait for the go (or the abort) */
    pthread_mutex_lock(&rt->sd_lock);
    w->init_err = err ? err : 1;
    pthread_cond_broadcast(&rt->sd_cv);
    while (!at_load_relaxed(&rt->stop) && !rt->started)
        pthread_cond_wait(&rt->sd_cv, &rt->sd_lock);
    pthread_mutex_unlock(&rt->sd_lock);
    if (err) {
        at_store_release(&w->exited, 1);
        return NULL;
    }
    w->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(w->id + 1) * 0xbf58476d1ce4e5b9ull);
    w->gqi = rt->cfg.global_queue_interval ? rt->cfg.global_queue_interval : 31;
    w->gqi_left = w->gqi;
    w->ev_left = rt->cfg.event_interval;
    w->maint_ns = urt__now();
    arm_eventfd(w);

    for (;;) {
        urt_task *t = next_task(w);
        if (!t) {
            if (poll_io(w))
                continue;
            /* leave only when no task is left: after a shutdown that gave
             * up on a task, its worker goes on serving it (and the others
             * idle) until it ends; the last task to end rings every worker */
            if (at_load_acquire(&rt->stop) && owned_live(rt) == 0)
                break;
            t = steal_work(w);
            if (!t)
                park(w);
            /* Found by a steal: the pass that ended queued SQEs, and they
             * go before the found tasks run (this idle cycle's one enter).
             * After a park that found work instead of waiting (or whose
             * wait failed) the SQEs are still queued too: they go now,
             * before that work runs; after a wait nothing is queued and
             * this makes no syscall. Without it a worker spinning through
             * park at shutdown would never submit the cancels its tasks
             * wait for. */
            worker_submit(w);
            if (!t)
                continue;
        }
        run_task(w, t);   /* its one call site: inlined (see run_task) */
    }

    /* Every task has ended (or shutdown gave up on one). Cancel what is left
     * on the ring (the eventfd read), reap, close. */
    /* no doorbell may be sent to this ring any more (a late one would go to
     * whatever reuses the fd number); senders see -1 and skip */
    at_store_release(&w->ring_fd, -1);
    if (w->efd_armed || w->multi_inflight) {
        /* whatever is still armed: the eventfd read, records nobody closed */
        struct io_uring_sqe *sqe = ring_sqe(&w->ring);
        if (sqe) {
            io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
            io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
        }
    }
    /* multishot records whose owners closed them: their final CQEs free them */
    worker_submit(w);
    for (int i = 0; i < 100 && (w->efd_armed || w->multi_inflight); i++) {
        ring_submit_and_wait(&w->ring, 10 * 1000 * 1000);
        ring_reap(&w->ring, &handlers, w);
    }
    net_pool_destroy(w);
    sock_worker_exit(w);
    fdt_destroy(w);
    publish_ring_stats(w);
    urt__stack_cache_drain(&rt->stack_pool, &w->stacks);
    ring_exit(&w->ring);
    urt__overflow_thread_fini();
    at_store_release(&w->exited, 1);
    return NULL;
}
