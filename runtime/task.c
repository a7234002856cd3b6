/*
 * task.c - task headers, the state word, wake, completion, join, cancel.
 *
 * Wake protocol (see the state diagram in runtime.h):
 *   1. task_wake CASes the state. Only the caller that moves the task from
 *      idle to SCHEDULED pushes it, so a task is never queued twice.
 *   2. A wake that finds the task RUNNING sets NOTIFIED instead; the
 *      scheduler that switched the fiber out sees it after the switch, on its
 *      own stack, and queues the task then. Nobody can resume a half-saved
 *      fiber, and no wake is lost.
 *   3. Where a woken task goes: a task that never ran, or a migratable task
 *      with no op in flight, may run anywhere; every other task goes back to
 *      its home worker (its own run queue when the waker runs there, else the
 *      home mailbox, which rings a doorbell if the home worker sleeps).
 *
 * Join: the joiner publishes a urt_waiter in task->joiner; completion swaps
 * in JOINER_DONE and wakes whatever waiter it found. A joiner that gives up
 * (cancelled) takes its waiter back with a CAS; if the CAS fails the
 * completer owns the waiter and the joiner must wait for waiter->futex.
 */
#include <errno.h>
#include <linux/futex.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "runtime/runtime.h"

static __thread urt_worker *tls_worker;
static __thread urt_task *tls_task;
static __thread unsigned tls_in_hook;
static __thread urt_runtime *tls_pool_rt;

__attribute__((noinline)) void urt__hook_enter(void) { tls_in_hook++; }
__attribute__((noinline)) void urt__hook_leave(void) { tls_in_hook--; }
__attribute__((noinline)) bool urt__in_hook(void) { return tls_in_hook != 0; }
__attribute__((noinline)) urt_runtime *urt__pool_rt(void) { return tls_pool_rt; }
__attribute__((noinline)) void urt__set_pool_rt(urt_runtime *rt) { tls_pool_rt = rt; }

__attribute__((noinline)) urt_worker *urt__cur_worker(void) { return tls_worker; }
__attribute__((noinline)) urt_task *urt__cur_task(void) { return tls_task; }
__attribute__((noinline)) void urt__set_cur(urt_worker *w, urt_task *t)
{
    tls_worker = w;
    tls_task = t;
}

urt_task *task_alloc(urt_runtime *rt, urt_worker *w, urt_fn fn, void *arg, const urt_spawn_opts *o, uint8_t kind,
                     bool handle)
{
    urt_task *t = slab_alloc(rt, w);   /* on a cache line of its own (see the layout in runtime.h) */
    if (!t)
        return NULL;
    /* The size goes through an empty asm so that the compiler calls the C
     * library's memset (vector stores) instead of inlining `rep stos`, whose
     * start-up cost was most of task_alloc's time in the spawn profile. */
    size_t zero = offsetof(urt_task, name);
    __asm__("" : "+r"(zero));
    memset(t, 0, zero);
    t->name[0] = 0;
    if (o && o->name) {
        strncpy(t->name, o->name, TASK_NAME_MAX - 1);
        t->name[TASK_NAME_MAX - 1] = 0;
    }
    at_store_relaxed(&t->magic, TASK_MAGIC);
    at_store_relaxed(&t->state, TS_SCHEDULED);
    /* the scheduler's, and the handle's if there is one */
    at_store_relaxed(&t->refs, handle ? 2 : 1);
    t->handled = handle;
    /* published by the insert's lock */
    at_store_relaxed(&t->own, handle ? OWN_HANDLE : 0);
    at_store_relaxed(&t->home, -1);
    at_store_relaxed(&t->joiner, NULL);
    t->kind = kind;
    t->flags = o ? o->flags : 0;
    t->on_drop = o ? o->on_drop : NULL;
    t->rt = rt;
    t->fn = fn;
    t->arg = arg;
    t->wait_fd = -1;
    t->op.done = true;   /* not in flight */
    t->stack_size = (o && o->stack_size) ? o->stack_size : rt->cfg.stack_size;
    if (w) {
        /* ids in batches: no shared counter bounced per spawn */
        if (w->id_next == w->id_end) {
            w->id_next = at_fadd_relaxed(&rt->next_id, 1024);
            w->id_end = w->id_next + 1024;
        }
        t->id = w->id_next++;
        /* the spawning worker's own shard: its lock stays in this core's
         * cache and is taken by others only to walk the list (shutdown,
         * dumps) or to link out a joined zombie */
        t->shard = w->id;
    } else {
        t->id = at_fadd_relaxed(&rt->next_id, 1);
        t->shard = rt->nworkers + (unsigned)(t->id % OWN_PLAIN_SHARDS);
    }
    t->born_ns = w ? w->maint_ns : task_clock();   /* task_clock's value, without its lookup */
    at_store_relaxed(&t->since_ns, t->born_ns);
    return t;
}

void task_ref(urt_task *t) { at_fadd_relaxed(&t->refs, 1); }

void task_unref(urt_task *t)
{
    /* acquire: a count of 1 is ours alone (a ref is only ever taken by a
     * holder of one), and the release RMWs of those who dropped theirs come
     * before it; else acq_rel: the last owner sees every write made under
     * the other refs */
    if (at_load_acquire(&t->refs) == 1 || at_fsub_acqrel(&t->refs, 1) == 1) {
        if (t->hibernated)
            hib_drop(t);
#if URT_CHECKED
        at_store_relaxed(&t->magic, DEAD_MAGIC);
        urt__quarantine(t, sizeof(*t));   /* the checked build bypasses the slab (task_slab.c) */
#else
        slab_free(t);
#endif
    }
}

bool task_cancel_pending(urt_task *t)
{
    return !t->shield && (at_load_relaxed(&t->state) & TS_CANCELLED);
}

/* ---- owned-task list ------------------------------------------------------- */

void (*urt__test_spawn_gap)(void);

/* A shard counter's one writer (see own_shard) adds to it. */
static inline void shard_add(_Atomic uint64_t *c, uint64_t d)
{
    at_store_relaxed(c, at_load_relaxed(c) + d);
}

int owned_insert(urt_runtime *rt, urt_task *t)
{
    own_shard *s = &rt->shards[t->shard];
    at_lock_take(&s->lock);
    if (s->closed) {
        at_lock_give(&s->lock);
        return -ESHUTDOWN;
    }
    t->own_prev = NULL;
    t->own_next = s->head;
    if (s->head)
        s->head->own_prev = t;
    s->head = t;
    /* a worker's shard: only that worker inserts; a plain shard: under lock */
    shard_add(&s->count, 1);
    shard_add(&s->spawned, 1);
    at_lock_give(&s->lock);
    return 0;
}

/* under s->lock */
static void own_unlink(own_shard *s, urt_task *t)
{
    if (t->own_prev)
        t->own_prev->own_next = t->own_next;
    else
        s->head = t->own_next;
    if (t->own_next)
        t->own_next->own_prev = t->own_prev;
    t->own_prev = t->own_next = NULL;
}

/* Undo owned_insert for a task that was never queued (no one else saw it);
 * the inserting thread, so the counters' writer. */
static void owned_withdraw(urt_runtime *rt, urt_task *t)
{
    own_shard *s = &rt->shards[t->shard];
    at_lock_take(&s->lock);
    own_unlink(s, t);
    shard_add(&s->count, (uint64_t)-1);
    shard_add(&s->spawned, (uint64_t)-1);   /* it never was */
    at_lock_give(&s->lock);
}

void owned_close(urt_runtime *rt)
{
    /* Every insert takes the shard lock and looks at `closed`: after this
     * loop no task can be added, and one added before it is counted. */
    for (unsigned i = 0; i < rt->nshards; i++) {
        own_shard *s = &rt->shards[i];
        at_lock_take(&s->lock);
        s->closed = true;
        at_lock_give(&s->lock);
    }
}

/* Is the caller the worker whose shard this is? */
static inline bool shard_is_mine(urt_runtime *rt, unsigned shard)
{
    urt_worker *w = urt__cur_worker();
    return w && w->rt == rt && w->id == shard;
}

/* Does the completion of t unlink it (rather than the release of its
 * handle, later)? For a task with a handle, the second of this and
 * handle_release does; one spawned without has nobody to race with. */
static inline bool complete_unlinks(urt_task *t)
{
    /* acq_rel: in one order with handle_release's RMW */
    return !t->handled || !(at_for_acqrel(&t->own, OWN_DONE) & OWN_HANDLE);
}

/* The task completed: it stops counting as live, and leaves the list unless
 * its handle is still held (then it stays as a zombie for destroy). On a
 * worker's own shard, by that worker: the unlink under the lock, which no
 * other thread takes but now and then, and the counters without an atomic
 * RMW. Any other thread (a worker that stole the task, a pool thread) must
 * not write the owner's counters: it counts the completion in `rdone` and
 * pushes the task on the shard's `remote` stack (lock-free), and the owner
 * links it out in batches (owned_drain). The list keeps a reference
 * meanwhile, so walkers (shutdown, dumps) never meet a freed task. A plain
 * shard's completion does it all under the lock. */
static void owned_complete(urt_runtime *rt, urt_task *t)
{
    own_shard *s = &rt->shards[t->shard];
    if (t->shard >= rt->nworkers) {
        bool unlink = complete_unlinks(t);
        at_lock_take(&s->lock);
        if (unlink)
            own_unlink(s, t);
        shard_add(&s->count, (uint64_t)-1);
        shard_add(&s->completed, 1);
        at_lock_give(&s->lock);
    } else if (!shard_is_mine(rt, t->shard)) {
        task_ref(t);   /* the list's, dropped by owned_drain */
        q_node *top = at_load_relaxed(&s->remote);
        do {
            t->node.next = top;   /* the run queues are done with the node */
            /* release: pairs with the acquire exchange in owned_drain */
        } while (!at_cas_acqrel(&s->remote, &top, &t->node));
        /* release: pairs with owned_live's acquire load; the insert that
         * counted this task comes before */
        at_fadd_acqrel(&s->rdone, 1);
    } else {
        if (complete_unlinks(t)) {
            at_lock_take(&s->lock);
            own_unlink(s, t);
            at_lock_give(&s->lock);
        }
        shard_add(&s->count, (uint64_t)-1);
        shard_add(&s->completed, 1);
    }
    /* seq_cst: pairs with the seq_cst store of shutdown_started; shutdown
     * also re-checks every few ms, so a missed signal costs only latency */
    if (at_load_seqcst(&rt->shutdown_started) && owned_live(rt) == 0) {
        pthread_mutex_lock(&rt->sd_lock);
        pthread_cond_broadcast(&rt->sd_cv);
        pthread_mutex_unlock(&rt->sd_lock);
        /* a task shutdown gave up on has ended: the workers may leave now */
        if (at_load_seqcst(&rt->stop))
            for (unsigned i = 0; i < rt->nworkers; i++)
                worker_ring_bell(rt, i);
    }
}

void owned_drain(urt_runtime *rt, unsigned shard)
{
    own_shard *s = &rt->shards[shard];
    if (!at_load_relaxed(&s->remote))
        return;
    /* acquire: pairs with the release CAS in owned_complete */
    q_node *n = at_xchg_acqrel(&s->remote, NULL);
    at_lock_take(&s->lock);
    for (q_node *m = n; m; m = m->next) {
        urt_task *t = task_of(m);
        /* as in owned_complete */
        if (complete_unlinks(t))
            own_unlink(s, t);
    }
    at_lock_give(&s->lock);
    while (n) {
        q_node *next = n->next;
        task_unref(task_of(n));   /* the list's */
        n = next;
    }
}

void handle_release(urt_task *t)
{
    own_shard *s = &t->rt->shards[t->shard];
    /* acquire: a completion that has set OWN_DONE saw our OWN_HANDLE and
     * left the unlink to us, and nobody but us writes `own` after it: a
     * plain store (a join of a task that has ended). Else acq_rel: see
     * complete_unlinks; a completed task (a zombie) leaves now */
    bool zombie;
    if (at_load_acquire(&t->own) & OWN_DONE) {
        at_store_relaxed(&t->own, OWN_DONE);
        zombie = true;
    } else {
        zombie = at_fand_acqrel(&t->own, (uint8_t)~OWN_HANDLE) & OWN_DONE;
    }
    if (zombie) {
        at_lock_take(&s->lock);
        own_unlink(s, t);
        at_lock_give(&s->lock);
    }
    task_unref(t);   /* the handle's ref */
}

uint64_t owned_live(urt_runtime *rt)
{
    /* Not one snapshot; exact once the list is closed: the counts can then
     * only fall, so a sum of 0 means every shard was and stays empty. Per
     * shard rdone first (acquire): every remote completion it counts had
     * its insert counted in `count`, read after it, so count >= rdone. */
    uint64_t n = 0;
    for (unsigned i = 0; i < rt->nshards; i++) {
        uint64_t r = at_load_acquire(&rt->shards[i].rdone);
        n += at_load_relaxed(&rt->shards[i].count) - r;
    }
    return n;
}

/* ---- waiters ---------------------------------------------------------------- */

/* A plain thread's waiter word: 0 waiting (maybe spinning), WAITER_ASLEEP
 * in FUTEX_WAIT, 1 woken. The waker makes the FUTEX_WAKE call only for a
 * waiter that went to sleep, and the waiter spins for WAITER_SPIN_NS before
 * it does: a join that a worker completes within the spin costs neither
 * side a syscall (a plain thread joining remote spawns in a row mostly
 * does), and the waiter keeps its CPU. One that slept is woken by the
 * worker's FUTEX_WAKE, and the kernel may wake it on the worker's own CPU,
 * where the two then take turns (spawn_many_remote_busy1 ran as fast as
 * with the two pinned apart once the spin was longer). It used to be 128 pauses
 * (about 4 us here, a pause being 30 ns on this machine and 10-140 cycles
 * elsewhere); 16 us made bench/sched's spawn_many_remote_busy1 at 1 worker
 * 0.84x and spawn_many_remote_idle 0.89x as long, and is counted in time so
 * that it does not depend on what a pause costs. */
#define WAITER_ASLEEP  2u
#define WAITER_SPIN_NS 16000u

void waiter_wake(urt_waiter *w, int result)
{
    if (w->on_wake) {
        w->result = result;
        w->on_wake(w);
        return;
    }
    urt_task *t = w->task;   /* read before the store: w may vanish right after it */
    w->result = result;
    if (t) {
        /* release: pairs with the acquire load of futex by the waiter;
         * publishes result (and whatever the waker wrote before calling us) */
        at_store_release(&w->futex, 1);
        task_wake(t);
        task_unref(t);   /* the registration's ref */
        return;
    }
    /* acq_rel: the release half publishes result as above; the exchange
     * tells whether the waiter announced its sleep (its CAS comes first) */
    if (at_xchg_acqrel(&w->futex, 1) == WAITER_ASLEEP)
        syscall(SYS_futex, &w->futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

void waiter_wake_after(urt_waiter *w, int result, wake_after *wa)
{
    urt_task *t = w->task;
    if (w->on_wake || !t || wa->n == WAKE_AFTER_MAX) {
        waiter_wake(w, result);   /* a callback, a plain thread, or no room: now */
        return;
    }
    w->result = result;
    /* release: as in waiter_wake; the waiter reads its verdict under the
     * lock, which it takes after us, so w stays valid until we give it */
    at_store_release(&w->futex, 1);
    wa->t[wa->n++] = t;   /* with the registration's ref, dropped by wake_after_run */
}

void wake_after_run(wake_after *wa)
{
    for (unsigned i = 0; i < wa->n; i++) {
        task_wake(wa->t[i]);
        task_unref(wa->t[i]);
    }
    wa->n = 0;
}

void waiter_block(urt_waiter *w)
{
    /* acquire: pairs with the release half of waiter_wake's exchange */
    uint64_t start = urt__now();
    for (unsigned i = 1;; i++) {
        if (at_load_acquire(&w->futex) == 1)
            return;
        at_cpu_relax();
        if (i % 64 == 0 && urt__now() - start >= WAITER_SPIN_NS)
            break;   /* the clock every 64 pauses: about 2 us here */
    }
    uint32_t exp = 0;
    /* acq_rel: either we announce the sleep before the waker's exchange
     * (which then sees it and wakes us), or the CAS fails on its 1 */
    if (!at_cas_strong_acqrel(&w->futex, &exp, WAITER_ASLEEP))
        return;
    while (at_load_acquire(&w->futex) == WAITER_ASLEEP)
        syscall(SYS_futex, &w->futex, FUTEX_WAIT_PRIVATE, WAITER_ASLEEP, NULL, NULL, 0);
}

/* ---- wake ------------------------------------------------------------------- */

uint64_t task_clock(void)
{
    urt_worker *w = urt__cur_worker();
    if (w)
        return w->maint_ns;
    /* elsewhere (a plain thread's spawn or wake) the kernel's tick-coarse
     * clock: the same clock as urt__now, behind it by at most a tick, read
     * without the TSC (a plain thread spawning in a loop paid ~5% for it) */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void schedule(urt_task *t)
{
    urt_runtime *rt = t->rt;
    urt_worker *w = urt__cur_worker();
    int home = at_load_relaxed(&t->home);
    /* only the caller that queues the task gets here, before it is queued:
     * nobody else writes since_ns meanwhile (task_clock's value, from the w
     * read above) */
    at_store_relaxed(&t->since_ns, w ? w->maint_ns : urt__now());
    if (w && w->rt == rt) {
        if (home < 0 || home == (int)w->id) {
            worker_schedule_local(w, t, true);
            return;
        }
    } else if (home < 0) {
        worker_schedule_remote(rt, t);
        return;
    }
    worker_push_mailbox(rt, (unsigned)home, t);
}

void task_wake(urt_task *t)
{
    uint32_t s = at_load_relaxed(&t->state);
    uint32_t ns;
    do {
        if (s & TS_COMPLETE)
            return;
        if (s & TS_RUNNING)
            ns = s | TS_NOTIFIED;
        else if (s & TS_SCHEDULED)
            ns = s;   /* already queued: still a read-modify-write, see below */
        else
            ns = s | TS_SCHEDULED;
        /* acq_rel, and always a read-modify-write, even when nothing changes:
         * the scheduler's next transition of this word (run: SCHEDULED ->
         * RUNNING, park: RUNNING -> idle) then comes after ours and sees what
         * the waker wrote before calling us (the event the task waits for),
         * or ours comes after it and sees RUNNING and leaves NOTIFIED. A plain
         * load here let a task run on an earlier wake, miss the event, and
         * park for good. */
    } while (!at_cas_acqrel(&t->state, &s, ns));
    if (!(s & (TS_RUNNING | TS_SCHEDULED)))
        schedule(t);
}

void task_set_scheduled(urt_task *t)
{
    uint32_t s = at_load_relaxed(&t->state);
    /* acq_rel: publishes the fiber's saved context to the next runner, and
     * pairs with task_wake's CAS (a wake meanwhile only set NOTIFIED) */
    while (!at_cas_acqrel(&t->state, &s, (s & ~(TS_RUNNING | TS_NOTIFIED)) | TS_SCHEDULED))
        ;
}

void task_complete(urt_task *t, void *ret, int result)
{
    urt_runtime *rt = t->rt;
    t->ret = ret;
    t->result = result;
    if ((result != 0 && t->on_drop) || rt->cfg.on_task_terminate) {
        urt__hook_enter();
        if (result != 0 && t->on_drop)
            t->on_drop(t->arg);   /* fn never ran: release what arg owns */
        if (rt->cfg.on_task_terminate)
            rt->cfg.on_task_terminate(t, rt->cfg.hook_data);
        urt__hook_leave();
    }
    owned_complete(rt, t);
    uint32_t s = at_load_relaxed(&t->state);
    /* release: publishes ret/result to whoever sees COMPLETE (join) */
    while (!at_cas_acqrel(&t->state, &s, (s & TS_CANCELLED) | TS_COMPLETE))
        ;
    /* acq_rel: pairs with the joiner's CAS that published its waiter; only
     * a holder of the handle can publish one (a join, a group) */
    urt_waiter *j = t->handled ? at_xchg_acqrel(&t->joiner, JOINER_DONE) : NULL;
    if (j)
        waiter_wake(j, 0);
    task_unref(t);
}

/* ---- public: spawn, join, cancel, detach ------------------------------------- */

static int spawn_common(urt_runtime *rt, urt_task **out, urt_fn fn, void *arg,
                        const urt_spawn_opts *o, uint8_t kind)
{
    if (out)
        *out = NULL;
    if (!fn)
        return -EINVAL;
    if (!rt) {
        urt_task *cur = urt__cur_task();
        rt = cur ? cur->rt : NULL;
        if (!rt)
            return -EINVAL;
    }
    CHECK_RT(rt, kind == TK_BLOCKING ? "urt_spawn_blocking" : "urt_spawn");
    if (o && o->stack_size && (o->stack_size < URT_STACK_MIN || o->stack_size > URT_STACK_MAX))
        return -EINVAL;
    if (o && (o->flags & ~(URT_TASK_MIGRATABLE | URT_TASK_SPREAD | URT_TASK_LOCAL | URT_TASK_NO_HIBERNATE)))
        return -EINVAL;
    if (o && (o->flags & URT_TASK_LOCAL) && (o->flags & (URT_TASK_MIGRATABLE | URT_TASK_SPREAD)))
        return -EINVAL;   /* "never stolen" contradicts both */
    if (kind == TK_BLOCKING && o && (o->flags || o->stack_size))
        return -EINVAL;   /* a blocking job runs on a pool thread's own stack, placed by the pool */
    if (at_load_acquire(&rt->closing))
        return -ESHUTDOWN;
    if (__builtin_expect(urt__test_spawn_gap != NULL, 0))
        urt__test_spawn_gap();   /* tests: widen the window a shutdown may fall into */
    urt_worker *w = urt__cur_worker();
    if (w && w->rt != rt)
        w = NULL;   /* a worker of another runtime: here it is a plain thread */
    urt_task *t = task_alloc(rt, w, fn, arg, o, kind, out != NULL);
    if (!t)
        return -ENOMEM;
    /* under the shard lock: either shutdown sees this task (and waits for
     * it), or we see the list closed */
    if (owned_insert(rt, t) < 0) {
        slab_free(t);
        return -ESHUTDOWN;
    }
    if (at_load_acquire(&rt->cancel_all))
        at_for_relaxed(&t->state, TS_CANCELLED);
    if (rt->cfg.on_task_spawn) {
        urt__hook_enter();
        rt->cfg.on_task_spawn(t, rt->cfg.hook_data);
        urt__hook_leave();
    }
    if (kind == TK_BLOCKING) {
        int err = pool_submit_blocking(rt, t);
        if (err < 0) {
            /* nothing will ever run it: take it back; fn is never called */
            owned_withdraw(rt, t);
            slab_free(t);
            return err;
        }
        if (out)
            *out = t;
        return 0;
    }
    if (out)
        *out = t;
    /* A task spawned by a task goes to its worker's LIFO slot, as in Tokio:
     * it runs next, while what the spawner touched is in cache (the task it
     * displaces goes to the stealable queue). It then stays on this worker,
     * so tasks that should spread (a server's connections) say so with
     * URT_TASK_SPREAD, or come from a urt_listener. From elsewhere (a plain
     * thread, a blocking job), the back of the stealable queue. */
    if (t->flags & URT_TASK_LOCAL) {
        if (w) {
            /* home from the start: worker.c's stealable() keeps it off the
             * stealable queue, and every wake sends it here */
            at_store_relaxed(&t->home, (int)w->id);
        } else {
            t->flags &= ~URT_TASK_LOCAL;   /* outside a worker the flag changes nothing */
        }
    }
    if (t->flags & URT_TASK_SPREAD) {
        unsigned target = at_fadd_relaxed(&rt->spread_next, 1) % rt->nworkers;
        if (!w || target != w->id) {
            /* never run, so the target's mailbox drain puts it in its stealable queue */
            worker_push_mailbox(rt, target, t);
            return 0;
        }
    }
    if (w)
        worker_schedule_local(w, t, w->cur != NULL);   /* spawned by the task running on w */
    else
        worker_schedule_remote(rt, t);
    return 0;
}

int urt_spawn_ex(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg, const urt_spawn_opts *opts)
{
    return spawn_common(rt, t, fn, arg, opts, TK_FIBER);
}

int urt_spawn(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg)
{
    return spawn_common(rt, t, fn, arg, NULL, TK_FIBER);
}

int urt_spawn_blocking(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg)
{
    return spawn_common(rt, t, fn, arg, NULL, TK_BLOCKING);
}

int urt_spawn_blocking_ex(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg, const urt_spawn_opts *opts)
{
    return spawn_common(rt, t, fn, arg, opts, TK_BLOCKING);
}

static int join_finish(urt_task *t, void **ret)
{
    /* acquire: pairs with the release CAS to COMPLETE in task_complete */
    uint32_t s = at_load_acquire(&t->state);
    int res = t->result;
    if (ret)
        *ret = t->ret;
    /* a fiber that was asked to stop before it finished reports it; a
     * blocking job cannot see the request, so one that ran is a success */
    if (res == 0 && (s & TS_CANCELLED) && t->kind == TK_FIBER)
        res = -ECANCELED;
    handle_release(t);
    return res;
}

/* urt_join consumes its handle whatever it returns (but -EINVAL and
 * -EDEADLK, calls that could never wait): the target of a join that gives
 * up is detached (it runs on and is freed when it ends). */
static int join_give_up(urt_task *t, int why)
{
    handle_release(t);
    return why;
}

int urt_join(urt_task *t, void **ret)
{
    if (!t)
        return -EINVAL;
    CHECK_HANDLE(t, "urt_join");
    urt_task *cur = urt__cur_task();
    if (cur == t || urt__in_hook())
        return -EDEADLK;   /* could never wait: t is left alone, as for -EINVAL */
    if (at_load_acquire(&t->state) & TS_COMPLETE)
        return join_finish(t, ret);
    urt_waiter w;
    memset(&w, 0, sizeof(w));
    if (cur && !cur->in_bip) {
        if (task_cancel_pending(cur))
            return join_give_up(t, task_cancelled_now(cur));
        w.task = cur;
        task_ref(cur);   /* the registration's ref, dropped by waiter_wake */
        urt_waiter *exp = NULL;
        if (!at_cas_strong_acqrel(&t->joiner, &exp, &w)) {
            task_unref(cur);
            return join_finish(t, ret);   /* exp == JOINER_DONE */
        }
        __atomic_store_n(&cur->wait_what, "join", __ATOMIC_RELAXED);
        bool timer = task_timer_start(cur, true);
        bool gave_up = false;
        int why = 0;
        while (at_load_acquire(&w.futex) == 0) {
            if (!gave_up) {
                why = task_cancel_pending(cur) ? -ECANCELED : (timer && task_timer_fired(cur)) ? -ETIMEDOUT : 0;
                if (why) {
                    exp = &w;
                    if (at_cas_strong_acqrel(&t->joiner, &exp, NULL))
                        break;   /* took our waiter back */
                    gave_up = true;   /* the completer has our waiter: wait for it */
                    why = 0;
                }
            }
            task_suspend(cur, SW_PARK);
        }
        __atomic_store_n(&cur->wait_what, NULL, __ATOMIC_RELAXED);
        if (timer)
            task_timer_finish(cur);
        if (why) {
            task_unref(cur);
            return join_give_up(t, why);
        }
        return join_finish(t, ret);   /* it ended: its result, even if we were cancelled meanwhile */
    }
    if (urt__cur_worker())
        return -EDEADLK;   /* a worker thread outside a task must not block; t left alone */
    /* A plain thread blocks. `blocked` tells destroy that we still touch the
     * runtime; raised before the waiter is published (the completer, and so
     * shutdown, then sees it), dropped after our last touch. */
    urt_runtime *rt = t->rt;
    at_fadd_acqrel(&rt->blocked, 1);
    int res;
    urt_waiter *exp = NULL;
    if (!at_cas_strong_acqrel(&t->joiner, &exp, &w)) {
        res = join_finish(t, ret);
    } else {
        waiter_block(&w);
        res = join_finish(t, ret);
    }
    /* release: pairs with destroy's acquire load; everything we did with the
     * runtime's memory comes before it */
    at_fsub_release(&rt->blocked, 1);
    return res;
}

int urt_cancel(urt_task *t)
{
    if (!t)
        return -EINVAL;
    CHECK_HANDLE(t, "urt_cancel");
    return task_cancel(t);
}

int task_cancel(urt_task *t)
{
    /* acq_rel CAS: a task that has completed is left alone (its result
     * stands); otherwise task_complete's CAS comes after ours and keeps the
     * bit, and the wake below makes the task look at its state */
    uint32_t s = at_load_relaxed(&t->state);
    do {
        if (s & (TS_COMPLETE | TS_CANCELLED))
            return 0;
    } while (!at_cas_acqrel(&t->state, &s, s | TS_CANCELLED));
    if (t->kind == TK_FIBER)
        task_wake(t);
    return 0;
}

void urt_detach(urt_task *t)
{
    if (t) {
        CHECK_HANDLE(t, "urt_detach");
        handle_release(t);
    }
}

uint64_t urt_task_id(const urt_task *t) { return t ? t->id : 0; }

uint64_t urt_self_id(void)
{
    urt_task *t = urt__cur_task();
    return t ? t->id : 0;
}

bool urt_cancelled(void)
{
    urt_task *t = urt__cur_task();
    return t && (at_load_relaxed(&t->state) & TS_CANCELLED);
}

bool urt_cancel_shield(bool on)
{
    urt_task *t = urt__cur_task();
    if (!t)
        return false;
    bool old = t->shield;
    t->shield = on;
    return old;
}

urt_runtime *urt_current(void)
{
    urt_task *t = urt__cur_task();
    return t ? t->rt : NULL;
}

int urt_worker_id(void)
{
    urt_worker *w = urt__cur_worker();
    return w ? (int)w->id : -1;
}

void urt_yield(void)
{
    urt_task *t = urt__cur_task();
    if (urt__in_hook())
        return;
    if (!t || t->in_bip || !urt__cur_worker()) {
        sched_yield();
        return;
    }
    task_suspend(t, SW_YIELD);
}

const char *urt_version(void) { return "0.1.0"; }
