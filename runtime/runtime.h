/*
 * runtime.h - internal shared state of the runtime: tasks, workers, the
 * scheduler's shared parts, the blocking pool.
 *
 * Task state word (task->state, 32 bits):
 *   TS_SCHEDULED  queued somewhere (LIFO slot, a run queue, a mailbox, the
 *                 inject queue, the defer list) or handed to a pool thread;
 *                 whoever sets it pushes the task exactly once
 *   TS_RUNNING    its fiber is on a CPU (a worker, or a pool thread inside
 *                 block_in_place); cleared only after the fiber has fully
 *                 switched out, on the scheduler's own stack
 *   TS_NOTIFIED   woken while RUNNING: rescheduled after it switches out
 *   TS_COMPLETE   fn returned (or the task was cancelled before it ran);
 *                 published with release after ret/result are written
 *   TS_CANCELLED  urt_cancel was called; sticky
 * Transitions (all CAS, acq_rel):
 *   wake:    idle -> SCHEDULED (+ push) | RUNNING -> RUNNING|NOTIFIED | else no-op
 *   run:     SCHEDULED -> RUNNING
 *   park:    RUNNING -> idle, or RUNNING|NOTIFIED -> SCHEDULED (+ push)
 *   yield:   RUNNING -> SCHEDULED (+ defer list)
 *   finish:  RUNNING -> COMPLETE
 *
 * Reference count (task->refs): one for the scheduler until the task
 * completes, one for the join handle until joined or detached, one for each
 * waiter registration that may be abandoned (a join). Freed at zero.
 *
 * Owned-task list (rt->shards, one list per shard under its lock): a task is
 * in its shard's list from spawn until it has both completed and lost its
 * handle (joined or detached). A task spawned on worker i is in shard i,
 * which only worker i inserts into (its lock stays in its cache, and its
 * counters need no atomic RMW); a spawn from elsewhere goes to one of the
 * plain shards after them, hashed by id. A completion on another thread
 * than the shard's worker goes through a lock-free stack that the worker
 * drains. A task spawned without a handle has nobody to race with at its
 * end: its completion unlinks it without touching `own` or `joiner`. A completed
 * task whose handle is still held stays as a "zombie" (not counted as live),
 * so destroy can free and name it. Which end links a task out is decided
 * without the lock: completion sets OWN_DONE and handle_release clears
 * OWN_HANDLE in t->own (atomic RMWs); whichever finds the other's change
 * made unlinks it (under the lock), so a joined task takes the lock once
 * after its insert, not twice. Inserting into a closed shard fails: once shutdown has closed every
 * shard (under each lock) no task can appear, so the live counts only fall.
 */
#ifndef URT_RUNTIME_RUNTIME_H
#define URT_RUNTIME_RUNTIME_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "include/urt.h"
#include "queues/queues.h"
#include "runtime/fiber.h"
#include "runtime/stack.h"
#include "uring/ring.h"

#define TS_SCHEDULED 0x01u
#define TS_RUNNING   0x02u
#define TS_NOTIFIED  0x04u
#define TS_COMPLETE  0x08u
#define TS_CANCELLED 0x10u

/* task->kind */
enum { TK_FIBER = 0, TK_BLOCKING = 1 };

/* why a fiber switched back to its scheduler (task->switch_reason) */
enum { SW_PARK = 0, SW_YIELD, SW_DONE, SW_BIP, SW_BIP_DONE };

#define TASK_NAME_MAX 32
#define URT_STACK_MAX ((size_t)1 << 30)   /* larger stack requests are -EINVAL */

typedef struct urt_waiter {
    urt_task *task;               /* NULL: a plain thread waiting on `futex` */
    _Atomic uint32_t futex;       /* 1 once woken; 2: a plain thread sleeps on it (task.c) */
    struct urt_waiter *next, *prev;   /* in a primitive's wait list, under its lock */
    bool linked;                  /* under the primitive's lock */
    int result;                   /* what the waker hands over */
    /* NULL: wake task or futex. Else waiter_wake calls it instead (a task
     * group's per-member waiter in the joiner slot); it may free nothing
     * the waker still uses. */
    void (*on_wake)(struct urt_waiter *w);
} urt_waiter;

#define TASK_MAGIC 0x7a5c7a5cu    /* a live task header (checked builds) */
#define RT_MAGIC   0x72756e74u    /* a live runtime (checked builds) */
#define DEAD_MAGIC 0xdeaddeadu

/* The bound timer of a task's waits that are not ring ops (time.c): one
 * TIMEOUT at a time, kept armed across waits (lazy), owner's worker only. */
typedef struct task_timer {
    ring_multi m;                 /* first: its CQEs come to time.c's handler */
    struct urt_worker *w;         /* the ring it is armed on (the task's worker) */
    struct __kernel_timespec ts;  /* the armed time: the kernel reads it when the SQE is submitted */
    uint64_t armed_at;            /* when the TIMEOUT in flight fires; 0: none in flight */
    uint64_t bound;               /* the bound of the timed wait in progress; 0: none */
    bool fired;                   /* that bound has passed (set by the CQE handler) */
    bool closing;                 /* removed: its owner waits for the last CQE */
} task_timer;

struct urt_task {
    /* Line 0: what a wake touches (state, queue link, home, the flags it
     * tests, the saved stack pointer) and urt_buf_send's record, so that the
     * waker reads one line and can start loading, all at once, what the
     * resume needs next: the saved stack top, line 1 and the send record. */
    _Atomic uint32_t magic;       /* TASK_MAGIC until freed; first: the checked build poisons the rest */
    _Atomic uint32_t state;       /* TS_* */
    q_node node;                  /* run queues; a task is in at most one */
    _Atomic uint32_t refs;
    uint8_t kind;                 /* TK_*; immutable */
    uint8_t switch_reason;        /* written by the fiber before it switches out */
    bool has_run;                 /* written by the first runner, read by it and later runners */
    bool in_bip;                  /* inside block_in_place (owner fiber only) */
    bool shield;                  /* cancel shield (owner fiber only) */
    bool op_pending;              /* an op of this task is in flight (owner fiber / its ring) */
    _Atomic uint8_t own;          /* OWN_HANDLE | OWN_DONE: which of the two ends links it out of
                                     the owned list (task.c); both set: a zombie */
    bool handled;                 /* spawned with a join handle; immutable */
    bool timer_used;              /* its bound timer was armed once (time.c): only then may its end
                                     have a TIMEOUT to remove (a flag here spares that line) */
    bool hibernated;              /* hib_img is set (home worker): a resume and a free look here,
                                     not at the hibernation line */
    bool hib_listed;              /* on its worker's list of hibernatable waits (hibernate.c) */
    unsigned flags;               /* URT_TASK_*; immutable */
    _Atomic int home;             /* worker that first ran it; -1 until then */
    urt_runtime *rt;              /* immutable */
    struct buf_tx *tx;            /* urt_buf_send's record (bufsend.c), NULL until first used */
    urt_fiber fiber;              /* sp, its first field (and all of it in a release
                                     build), ends line 0 */
    /* Line 1: what a resume and a wait write and read (the context to switch
     * back to, for dumps, hibernation, its time bounds): a pooled receive
     * and send (net.c, bufsend.c) touch lines 0 and 1 only. */
    urt_fiber *resumer;           /* the context that switched into it */
    const char *wait_what;        /* for dumps: what it waits on; racy read */
    int wait_fd;
    uint16_t cancel_fast;         /* owner fiber: -ECANCELED returned without suspending, in a row */
    uint64_t hib_since;           /* when the current hibernatable wait began; 0: not in one */
    _Atomic uint64_t since_ns;    /* for dumps: when it last started or stopped running or was
                                     woken (task_clock); written by whoever moves it, read racily */
    uint64_t op_timeout;          /* owner fiber only */
    uint64_t deadline;            /* urt_deadline, absolute urt__now ns, 0: none; owner fiber only */
    _Atomic int run_tid;          /* for dumps: the pool thread running it (blocking job or
                                     block_in_place), 0 when none; written by that thread */
    int bip_err;                  /* block_in_place could not get a thread (owner fiber / its worker) */
    /* Line 2 on. The record a waker writes for the task's one op, here
     * rather than on the fiber's stack so a wait that uses it may hibernate
     * (hibernate.c): a task waits on at most one op at a time (op.c), and
     * the CQE handler of its ring writes it. done is true whenever it is not
     * in flight. */
    ring_op op;                   /* its one-shot op: op_wait (owner fiber / its ring) */
    urt_waiter *_Atomic joiner;   /* JOINER_DONE once complete */
    uint64_t born_ns;             /* for dumps: spawn time (task_clock); immutable */
    /* read once, when it starts or ends (not by a wait or a resume) */
    void *ret;                    /* written before TS_COMPLETE (release) */
    int result;                   /* 0, -ECANCELED (never ran), -ENOMEM (no stack) */
    uint64_t nomem_since;         /* first failed stack mapping (its worker), 0: none */
    void (*on_drop)(void *arg);   /* immutable */
    uint64_t id;                  /* immutable */
    urt_fn fn;
    void *arg;
    urt_stack stack;
    size_t stack_size;
    urt_overflow_info ovf;
    /* block_in_place */
    urt_fn bip_fn;
    void *bip_arg, *bip_ret;
    /* The bound timer of waits that are not ring ops (time.c): at most one
     * armed, written by its ring's CQE handler, on the header for the same
     * reason as op. */
    task_timer timer;
    /* hibernation (hibernate.c), home worker only */
    void *hib_img;                /* the live frames while hibernated, else NULL */
    char *hib_from;               /* where they go back: [hib_from, stack.hi) */
    struct urt_task *hib_prev, *hib_next;   /* in the home worker's list of such waits */
    uint64_t hib_at;              /* when it was put on that list (its order) */
    /* owned-task list, under the shard lock */
    struct urt_task *own_prev, *own_next;
    unsigned shard;
    char name[TASK_NAME_MAX];
    /* after name: task_alloc's memset leaves it alone */
    int slab_home;                /* task_slab.c: the worker whose cache it came from, -1: malloc */
} __attribute__((aligned(64)));   /* each header starts a cache line */
_Static_assert(offsetof(urt_fiber, sp) == 0 && offsetof(struct urt_task, fiber) + sizeof(void *) <= 64,
               "a wake reads line 0 only, the saved sp included");
#if !defined(URT_ASAN) && !defined(URT_TSAN)   /* their fibers are bigger */
_Static_assert(offsetof(struct urt_task, bip_err) + sizeof(int) <= 128, "a resume and a wait touch lines 0 and 1");
#endif

#define JOINER_DONE ((urt_waiter *)(uintptr_t)1)

/* task->own: a join handle is held / the owned list has seen it complete */
#define OWN_HANDLE 0x1u
#define OWN_DONE   0x2u

/* A cache of free task headers (task_slab.c). */
typedef struct slab_cache {
    struct slab_chunk *cur;        /* spawns take headers from it; the owner's (or under
                                      rt->slab_lock), as the next two */
    struct slab_chunk *partial;    /* the other chunks with a free header (a stack) */
    struct slab_chunk *chunks;     /* every chunk, freed at destroy */
    struct slab_chunk *_Atomic pending urt_cacheline_aligned;  /* chunks with remote frees */
} slab_cache;

static inline urt_task *task_of(q_node *n) { return (urt_task *)((char *)n - __builtin_offsetof(urt_task, node)); }

/* Per-worker counters: written by the owner (relaxed load + store), read by
 * anyone (relaxed). watchdog_stalls is written by the watchdog only. */
typedef struct worker_stats {
    _Atomic uint64_t polls, lifo_polls, local_schedules, inject_schedules, overflows;
    _Atomic uint64_t steal_attempts, steals, tasks_stolen;
    _Atomic uint64_t mailbox_pushes;
    _Atomic uint64_t parks, wakes_sent, wakes_received;
    _Atomic uint64_t busy_ns, watchdog_stalls;
    _Atomic uint64_t stack_retries;
    _Atomic uint64_t hibernations, restores, hibernated;   /* hibernated: now */
} worker_stats;

#define STAT_ADD(w, f, n) at_store_relaxed(&(w)->stats.f, at_load_relaxed(&(w)->stats.f) + (n))
#define STAT_INC(w, f) STAT_ADD(w, f, 1)

#define FDT_CHUNK  1024u
#define FDT_CHUNKS 1024u   /* fds below 1M are tracked */
typedef struct close_part close_part;

typedef struct urt_worker {
    /* ---- owner only ---- */
    urt_runtime *rt;
    unsigned id;
    urt_ring ring;
    urt_task *lifo;
    unsigned lifo_polls;           /* LIFO polls in a row */
    q_fifo runq;                   /* pinned runnable tasks */
    q_fifo defer;                  /* yielded tasks, run after I/O is polled */
    uint64_t defer_ns;             /* when maintenance last put them back (YIELD_SLICE_NS) */
    q_fifo nomem;                  /* never-run tasks whose stack could not be mapped yet */
    uint64_t nomem_last;           /* when nomem was last retried */
    urt_task *cur;
    urt_fiber sched;               /* this thread's own context */
    unsigned ev_left, gqi_left;    /* ticks to the next maintenance / inject-first pick (countdowns:
                                      no division per task) */
    unsigned gqi;                  /* current global queue interval */
    bool searching;
    bool runq_first;               /* alternate runq / lq */
    uint64_t rng;
    uint64_t id_next, id_end;      /* task ids reserved in batches from rt->next_id */
    uint64_t maint_ns, maint_polls;    /* for the adaptive interval */
    urt_stack_cache stacks;
    int efd;                       /* eventfd doorbell (fallback), -1 if unused */
    uint64_t efd_buf;
    ring_op efd_op;
    bool efd_armed;
    bool bell_retry;               /* a doorbell we sent failed: resend later */
    struct rx_pool *rxp;           /* provided buffers for urt_rx, made on first use */
    struct sock_pipes *pipes;      /* idle pipes for urt_sendfile (sock.c), made on first use */
    unsigned multi_inflight;       /* multishot records the ring still holds */
    close_part *close_pending;     /* urt_close parts waiting for our ops on their fd to end */
    urt_task *hib_head, *hib_tail; /* tasks in a hibernatable wait, oldest first (hibernate.c) */
    bool hib_more;                 /* the last scan stopped with more due */
    pthread_t thread;
    bool joined;                   /* shutdown/destroy joined the thread */
    int init_err;
    /* ---- shared ---- */
    lq lq;                         /* never-run and migratable tasks; stealable */
    mailbox mb;                    /* tasks woken by other threads */
    mailbox ctl;                   /* close_parts from urt_close on other workers */
    _Atomic uint32_t *_Atomic fdt[FDT_CHUNKS];  /* ops in flight per fd (fdtrack.c) */
    _Atomic uint32_t sleeping urt_cacheline_aligned;  /* set (SeqCst) before the last re-check */
    _Atomic uint32_t bell;         /* a doorbell is pending; cleared by the owner on wake */
    _Atomic int ring_fd;           /* MSG_RING target; -1 until ready */
    _Atomic uint64_t run_seq;      /* bumped per task run (watchdog) */
    _Atomic uint64_t run_start;    /* ns when the current task started, 0 when none */
    _Atomic uint32_t exited;       /* the worker loop has ended */
    slab_cache slab;               /* task headers (task_slab.c): free/chunks owner only, remote shared */
    worker_stats stats;
    _Atomic uint64_t r_sqes, r_cqes, r_enters;  /* ring counters, published at maintenance */
    _Atomic unsigned ring_flags;
} urt_worker;

/* Shards of the owned-task list: one per worker (written by that worker
 * alone, but for the lock-taking links of other threads), then
 * OWN_PLAIN_SHARDS for spawns from outside the workers, hashed by id
 * (everything in those is done under the lock). */
#define OWN_PLAIN_SHARDS 16

typedef struct own_shard {
    at_lock lock;
    bool closed;                   /* under lock: shutdown refuses new tasks */
    urt_task *head;                /* under lock: live tasks and zombies (and remote completions
                                      not yet drained) */
    /* count, spawned and completed have one writer: the shard's worker, or
     * for a plain shard the holder of the lock (load + store, no RMW);
     * anybody reads them */
    _Atomic uint64_t count;        /* tasks inserted and not completed here; live = count - rdone */
    _Atomic uint64_t spawned;      /* total (metrics.c) */
    _Atomic uint64_t completed;    /* total, as count */
    /* written by other threads: a line of their own, so that a remote
     * completion does not take the owner's lock and counters' line away */
    _Alignas(URT_CACHELINE) _Atomic uint64_t rdone;   /* a worker's shard: completions on other
                                                         threads (atomic add) */
    q_node *_Atomic remote;        /* those tasks, for the shard's worker to link out (task.c) */
} urt_cacheline_aligned own_shard;

typedef struct blocking_pool {
    pthread_mutex_t lock;
    pthread_cond_t cv;             /* idle threads wait here */
    pthread_cond_t done_cv;        /* shutdown waits for threads to end */
    q_fifo bq;                     /* spawn_blocking jobs */
    q_fifo pq;                     /* block_in_place fibers */
    unsigned nthreads, nidle, nnotify, running_blocking, max_blocking;
    bool shutdown;
    pthread_t *exited;             /* threads that ended, to be joined */
    unsigned nexited, capexited;
} blocking_pool;

struct urt_runtime {
    _Atomic uint32_t magic;        /* RT_MAGIC until destroyed */
    urt_config cfg;
    unsigned nworkers;
    urt_worker *workers;
    inject inject;
    idle idle;
    urt_stack_pool stack_pool;
    own_shard *shards;             /* nshards: one per worker, then the plain threads' */
    unsigned nshards;
    slab_cache slab;               /* task headers for spawns from outside the workers */
    pthread_mutex_t slab_lock;     /* its free list */
    blocking_pool pool;
    _Atomic uint64_t next_id;
    _Atomic uint32_t spread_next;  /* round-robin worker for URT_TASK_SPREAD */
    _Atomic uint32_t closing;      /* spawns refused */
    _Atomic uint32_t cancel_all;   /* shutdown: cancel every task */
    _Atomic uint32_t stop;         /* workers leave their loop */
    _Atomic uint32_t shutdown_started;
    _Atomic uint32_t blocked;      /* plain threads blocked in urt_join: destroy waits for 0 */
    pthread_mutex_t sd_lock;       /* shutdown waits for no live task on sd_cv */
    pthread_cond_t sd_cv;
    bool started;                  /* under sd_lock: workers may start their loop */
    bool ringless;                 /* doorbells from ring-less threads via REGISTER_SEND_MSG_RING */
    bool leak_workers;             /* some worker never ended: keep memory */
    int shutdown_result;
    /* watchdog */
    pthread_t watchdog;
    bool watchdog_on;
    pthread_mutex_t wd_lock;
    pthread_cond_t wd_cv;
    bool wd_stop;
};

/* ---- thread-local context (read through out-of-line accessors) ---- */
urt_worker *urt__cur_worker(void);
urt_task *urt__cur_task(void);
void urt__set_cur(urt_worker *w, urt_task *t);

/* ---- task.c ---- */
/* The clock of task dump times: on a worker, its clock at its last
 * maintenance or wake (coarse: stale by at most one maintenance interval or
 * one long task run; no clock read per switch); elsewhere CLOCK_MONOTONIC_COARSE
 * (urt__now's clock, behind it by at most a kernel tick). */
uint64_t task_clock(void);
/* w: the calling worker when it is one of rt's, else NULL; handle: the
 * spawner keeps a join handle (the header starts with its ref) */
urt_task *task_alloc(urt_runtime *rt, urt_worker *w, urt_fn fn, void *arg, const urt_spawn_opts *o, uint8_t kind,
                     bool handle);
void task_ref(urt_task *t);
void task_unref(urt_task *t);
void task_wake(urt_task *t);
int  task_cancel(urt_task *t);                             /* urt_cancel without the handle check */
void task_complete(urt_task *t, void *ret, int result);   /* any thread */
/* From the task's fiber: switch to its resumer, which reads `reason`.
 * Inline: the caller's resume then starts with no `ret` out of a frame
 * that the return-stack predictor, left with the scheduler's return
 * addresses by the switch, would mispredict. */
static inline __attribute__((always_inline)) void task_suspend(urt_task *t, int reason)
{
    t->switch_reason = (uint8_t)reason;
    fiber_switch(&t->fiber, t->resumer);
}
/* RUNNING -> SCHEDULED (a pending NOTIFIED folded in) for a task that has
 * switched out and is about to be queued by the caller: a yield, the end of
 * a block_in_place, a first run put off. acq_rel: publishes its context. */
void task_set_scheduled(urt_task *t);
bool task_cancel_pending(urt_task *t);                     /* cancelled and not shielded */
int  owned_insert(urt_runtime *rt, urt_task *t);           /* -ESHUTDOWN once shutdown closed the list */
/* Tests only (NULL otherwise): called by a spawn between its check of
 * rt->closing and its insertion, to hold a shutdown in that window. */
extern void (*urt__test_spawn_gap)(void);
void owned_close(urt_runtime *rt);                         /* shutdown: refuse every later insert */
uint64_t owned_live(urt_runtime *rt);                      /* tasks not yet complete */
/* Shard `shard`'s worker (or destroy, alone): link out the tasks that
 * completed on other threads (a zombie stays for its handle). */
void owned_drain(urt_runtime *rt, unsigned shard);
void handle_release(urt_task *t);                          /* a join handle is given up */
/* Hooks and on_drop run "in a hook": calls that would wait return -EDEADLK. */
void urt__hook_enter(void);
void urt__hook_leave(void);
bool urt__in_hook(void);
/* The pool thread's runtime (NULL on other threads): a blocking job or a
 * fiber inside urt_block_in_place runs there. */
urt_runtime *urt__pool_rt(void);
void urt__set_pool_rt(urt_runtime *rt);
/* -ECANCELED for a call that returns at once in a cancelled task; a task
 * that keeps calling is slowed down (it naps) instead of spinning a core. */
int  task_cancelled_now(urt_task *t);
void waiter_wake(urt_waiter *w, int result);
void waiter_block(urt_waiter *w);                          /* plain thread: wait for waiter_wake */
/* Task wakes kept for after a primitive's lock (sync.h, "wakes after the
 * lock"): waiter_wake_after completes w's wait now, wake_after_run makes the
 * wakes it kept once the lock is given back. */
#define WAKE_AFTER_MAX 8
typedef struct wake_after {
    unsigned n;
    urt_task *t[WAKE_AFTER_MAX];
} wake_after;
void waiter_wake_after(urt_waiter *w, int result, wake_after *wa);
void wake_after_run(wake_after *wa);

/* ---- task_slab.c ---- */
/* A task header: from the calling worker's cache when it is one of rt's
 * workers, else malloc. Freed (slab_free) from any thread; the memory of
 * every worker's cache goes at destroy (slab_destroy, after every task). */
urt_task *slab_alloc(urt_runtime *rt, urt_worker *w);   /* w: as task_alloc's */
void slab_free(urt_task *t);
void slab_destroy(slab_cache *c);

/* ---- worker.c ---- */
void *worker_main(void *arg);
void worker_schedule_local(urt_worker *w, urt_task *t, bool lifo);
void worker_schedule_remote(urt_runtime *rt, urt_task *t);
void worker_push_mailbox(urt_runtime *rt, unsigned target, urt_task *t);
void worker_notify_parked(urt_runtime *rt);
void worker_ring_bell(urt_runtime *rt, unsigned target);
void worker_submit(urt_worker *w);

/* ---- time.c ---- */
/* The time bound of a wait that is not a ring op itself (join, sync, rx,
 * accept): the task's bound (its deadline, and its op timeout when
 * `op_timeout` applies to the wait), kept by t->timer, one TIMEOUT on the
 * task's ring that stays armed from one wait to the next (see time.c).
 * start returns false when there is no bound (or no SQE); finish ends the
 * wait's use of it; the task wakes (task_timer_fired) once the bound has
 * passed. task_timer_close, before the task ends, removes a timer still in
 * flight and waits for its CQE. */
bool task_timer_start(urt_task *t, bool op_timeout);
/* The same for a ring op of a task that is not migratable (op.c), with
 * its bound already reckoned: the op is cancelled once it fires. */
bool task_timer_watch(urt_task *t, uint64_t bound);
/* May t's bound timer stay armed between waits? Not for a migratable
 * task: it may next run on another worker, away from the timer's ring. */
static inline bool task_timer_lazy(const urt_task *t) { return !(t->flags & URT_TASK_MIGRATABLE); }
void task_timer_finish(urt_task *t);
void task_timer_close(urt_task *t);
/* Has the bound of the timed wait in progress passed? */
static inline bool task_timer_fired(const urt_task *t) { return t->timer.fired; }

/* ---- net.c ---- */
void net_pool_drain(urt_worker *w);                   /* buffers released elsewhere come home */
static inline bool net_pool_has_returns(urt_worker *w);
void net_pool_destroy(urt_worker *w);
void worker_kick(urt_runtime *rt, unsigned target);   /* ring target's doorbell if it sleeps */

/* ---- hibernate.c ---- */
/* Around the suspension of a wait whose wake path writes no stack memory
 * (owner fiber, on its home worker w): the wait may be hibernated
 * meanwhile. rec: the op record its CQE writes, NULL when none (a timer
 * armed by task_timer_start is t->timer). A wait that breaks the rule (a
 * record that is not t's own, a migratable or opted-out task, inside
 * block_in_place) is simply not listed. */
void hib_wait_begin(urt_worker *w, urt_task *t, const ring_op *rec);
bool hib_allowed(const urt_task *t);   /* may t hibernate at all (flags, config, block_in_place)? */
void hib_wait_end(urt_worker *w, urt_task *t);
/* Does [p, p + n) overlap t's stack (guard included)? Memory there that the
 * kernel reads or writes after submission keeps a wait from hibernating.
 * n == 0 asks about the one byte at p; NULL is never on a stack. */
static inline bool task_stack_holds(const urt_task *t, const void *p, size_t n)
{
    uintptr_t a = (uintptr_t)p, lo = (uintptr_t)t->stack.base, hi = (uintptr_t)t->stack.hi;
    return p && a < hi && (n ? a + n : a + 1) > lo;
}
void hib_scan(urt_worker *w, uint64_t now);   /* maintenance: hibernate waits older than the threshold */
void hib_restore(urt_worker *w, urt_task *t); /* before the fiber resumes */
void hib_drop(urt_task *t);                   /* a task freed while hibernated: its image goes */
void hib_forget(urt_worker *w, urt_task *t);  /* a task that ended: off the list */

/* ---- sock.c ---- */
void sock_worker_exit(urt_worker *w);                /* owner, at exit: close the sendfile pipes */

/* ---- fdtrack.c ---- */
bool fdt_inc(urt_worker *w, int fd);                 /* owner: an op on fd starts; false: not tracked */
void fdt_dec(urt_worker *w, int fd);                 /* owner: it ended (only after a true fdt_inc) */
bool fdt_closing(urt_worker *w, int fd);             /* owner: a urt_close is ending our ops on fd */
void fdt_drain_ctl(urt_worker *w);                   /* owner: close requests from other workers */
void fdt_close_wait(urt_worker *w, urt_task *t, int fd);  /* end every op on fd on every ring */
void fdt_destroy(urt_worker *w);

/* ---- net.c, for bufsend.c ---- */
urt_worker *net_buf_home(const urt_buf *buf, size_t *cap);   /* buf's rx worker; *cap: its most bytes */

/* ---- bufsend.c ---- */
void bufsend_close_fd(urt_task *t, int fd);   /* urt_close: the task's send on fd ends first */
void bufsend_task_end(urt_task *t);           /* the task's fiber, as it ends */

/* ---- blocking.c ---- */
int  pool_init(blocking_pool *p, unsigned max);
int  pool_submit_blocking(urt_runtime *rt, urt_task *t);  /* -EAGAIN: no thread exists or can start */
int  pool_submit_bip(urt_runtime *rt, urt_task *t);       /* -EAGAIN: no thread is idle or can start */
bool pool_shutdown(urt_runtime *rt, uint64_t wait_ns);   /* false: some job never returned */
void pool_destroy(blocking_pool *p);

/* ---- checked.c: the checked build (URT_CHECKED) ---- */
#ifndef URT_CHECKED
#define URT_CHECKED 0
#endif
#if URT_CHECKED
void urt__quarantine(void *p, size_t size);          /* free later; its first word (the magic) says
                                                        DEAD meanwhile, ASan poisons the rest */
void urt__check_handle(const urt_task *t, const char *call);  /* abort unless a live, held handle */
void urt__check_rt(const urt_runtime *rt, const char *call);  /* abort unless a live runtime */
void urt__check_rec_free(const urt_task *t, const ring_op *rec, const char *call);  /* abort if in flight */
#define CHECK_HANDLE(t, call) urt__check_handle((t), (call))
#define CHECK_RT(rt, call)    urt__check_rt((rt), (call))
#define CHECK_REC_FREE(t, rec, call) urt__check_rec_free((t), (rec), (call))
#else
#define CHECK_HANDLE(t, call) ((void)0)
#define CHECK_RT(rt, call)    ((void)0)
#define CHECK_REC_FREE(t, rec, call) ((void)0)
#endif

/* ---- log.c ---- */
/* One line to stderr (fmt ends with \n), never blocking: dropped and counted
 * when stderr is full. Any thread. */
void urt__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- watchdog.c ---- */
int  watchdog_start(urt_runtime *rt);
void watchdog_stop(urt_runtime *rt);

uint64_t urt__now(void);
/* CLOCK_REALTIME deadline ns_from_now ahead, for pthread timed waits. */
void urt__abstime(struct timespec *ts, uint64_t ns_from_now);

/* A buffer released on another thread than its rx's worker: its rx, and its
 * id (or RX_BID_HEAP for heap memory, already freed by the releaser). */
typedef struct rx_ret {
    struct urt_rx *rx;
    uint32_t bid;
} rx_ret;

typedef struct rx_pool {
    ring_bufs bufs;
    unsigned avail;                /* owner: buffers the kernel holds */
    unsigned stock;                /* owner: how many it should hold (net.c) */
    uint16_t *free;                /* owner: the other free buffers, a stack: last freed on top */
    unsigned nfree;
    struct urt_rx *starved;        /* owner: receivers waiting for buffers, FIFO */
    struct urt_rx *starved_tail;
    pthread_mutex_t ret_lock;
    rx_ret *ret;                   /* under ret_lock: buffers released on other threads */
    unsigned nret, retcap;
    _Atomic uint32_t has_ret;      /* nret != 0; read without the lock */
    unsigned owner;
} rx_pool;

static inline bool net_pool_has_returns(urt_worker *w)
{
    return w->rxp && at_load_relaxed(&w->rxp->has_ret);
}

#endif /* URT_RUNTIME_RUNTIME_H */
