/*
 * urt.h - the public interface of urt, a multi-threaded work-stealing task
 * executor for Linux in which every worker thread owns an io_uring ring.
 *
 * Conventions:
 *  - Every call that can fail returns 0 (or a count) on success and -errno on
 *    failure. No urt call reads or writes errno.
 *  - Handles are opaque; the caller owns what it creates and releases it with
 *    the matching call. NULL or out-of-range arguments give -EINVAL.
 *  - Calls that suspend (I/O, sleep, join, sync primitives) may be made only
 *    inside a task; outside one they return -EPERM unless their description
 *    says they block the calling thread instead.
 *  - A cancelled task gets -ECANCELED from every suspending call from then on
 *    and is expected to return. Nothing is unwound behind its back.
 *  - No urt call is async-signal-safe. After fork() the child must not use
 *    the parent's runtimes; it may create its own.
 *  - Signal masks: worker threads block SIGHUP, SIGINT, SIGQUIT, SIGPIPE
 *    and SIGTERM, and blocking-pool threads (spawn_blocking,
 *    block_in_place) block every signal. A child process started from a
 *    task or a blocking job (fork/exec, posix_spawn, system) inherits that
 *    mask, so e.g. SIGTERM would not end it: start children with
 *    urt_process_spawn, which resets it, or reset the mask in the child
 *    yourself (posix_spawnattr_setsigmask with an empty set and
 *    POSIX_SPAWN_SETSIGMASK, or sigprocmask before exec).
 *  - Library messages (watchdog, shutdown, destroy) go to stderr without
 *    ever blocking: when stderr is a full pipe they are dropped and counted.
 *
 * Where a call may be made (the "Context:" of each description):
 *  - "in a task": code running as a urt task, a fiber on a worker thread.
 *    A task stays on the worker that first ran it (unless spawned
 *    URT_TASK_MIGRATABLE). Inside urt_block_in_place a task runs on a
 *    pool thread instead; the descriptions say what changes there.
 *  - "a plain thread": any thread that is not a worker: main(), the
 *    program's own threads, and the pool threads that run urt_spawn_blocking
 *    tasks (those are not fibers; urt_current() is NULL there).
 *  - "any thread": either of the above, and worker threads outside a task
 *    (the urt_config hooks).
 *
 * Pointers: a pointer argument is borrowed for the duration of the call
 * unless its description says otherwise; urt keeps no copy of it. Pointers
 * urt hands out (*out of the create and open calls, task handles) belong to
 * the caller until it gives them back with the matching call.
 */
#ifndef URT_H
#define URT_H

#include <stdbool.h>
#include <stddef.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

#define URT_VERSION_MAJOR 0
#define URT_VERSION_MINOR 1
#define URT_VERSION_PATCH 0

#if defined(__GNUC__)
#define URT_API __attribute__((visibility("default")))
#else
#define URT_API
#endif

/*
 * The version of the library actually loaded, "MAJOR.MINOR.PATCH" (compare
 * with the URT_VERSION_* of the header a program was compiled against).
 * Context: any thread; no runtime needed.
 * Returns a static string, never NULL; the caller must not free it.
 */
URT_API const char *urt_version(void);

/* ------------------------------------------------------------------------ */
/* Runtime                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct urt_runtime urt_runtime;
typedef struct urt_task urt_task;
typedef void *(*urt_fn)(void *arg);

/* urt_config.flags */
#define URT_CONFIG_PIN_WORKERS 0x1u /* pin worker i to online CPU i % ncpu */
#define URT_CONFIG_NO_LIFO     0x2u /* disable the LIFO slot */
#define URT_CONFIG_NO_DEFER    0x4u /* do not ask for IORING_SETUP_DEFER_TASKRUN */
#define URT_CONFIG_PLAIN_RING  0x8u /* ring with no setup flags (for comparison) */

typedef struct urt_config {
    unsigned workers;               /* 0: one per online CPU (at most 1024) */
    unsigned ring_entries;          /* SQ entries; 0: library default (256); values below 8 are
                                       raised to 8 and the kernel rounds up to a power of two,
                                       so an op and its linked timeout always fit together */
    size_t   stack_size;            /* task stack; 0: default (256 KiB virtual); 16 KiB .. 1 GiB */
    unsigned event_interval;        /* 0: default (61) */
    unsigned global_queue_interval; /* 0: adaptive (aims at 200 us between inject checks) */
    unsigned max_blocking_threads;  /* 0: default (512) */
    unsigned flags;                 /* URT_CONFIG_* bits */
    /* Hooks, may be NULL. on_task_spawn runs inside urt_spawn*, before the
     * task can run, on the spawning thread: in the spawning task when a task
     * spawns (urt_current() is its runtime then), else on the plain thread.
     * on_task_terminate runs after fn returned (or when the task ended
     * without running), on the thread it ends on: its worker thread outside
     * any task, or the pool thread of a blocking task. t is borrowed for the
     * call; data is hook_data. They must be quick and must not suspend or
     * block: every urt call that would wait (urt_join, urt_sleep, I/O, the
     * sync primitives when they would wait, urt_block_in_place,
     * urt_runtime_block_on / shutdown) returns -EDEADLK there instead. */
    void (*on_task_spawn)(urt_task *t, void *data);
    void (*on_task_terminate)(urt_task *t, void *data);
    void *hook_data;
    unsigned spin_us;               /* spin this long before parking; 0: default (0 = no spin
                                       beyond a few re-checks); URT_SPIN_NONE for none */
    unsigned rx_buffers;            /* provided buffers per worker for urt_rx; 0: 4096 (power of two) */
    unsigned rx_buffer_size;        /* bytes each; 0: 4096 */
    uint64_t watchdog_ns;           /* a worker stuck in one task this long counts as a stall;
                                       0: default (1 s); UINT64_MAX: no watchdog */
    uint64_t cancel_wait_ns;        /* how long urt_runtime_shutdown waits for cancelled tasks
                                       (and blocking jobs) to end before it gives up on them;
                                       0: default (5 s) */
    uint64_t hibernate_after_ns;    /* a task waiting this long in a wait that allows it
                                       (a receive, accept, poll or sleep whose memory is off
                                       its stack; docs/stacks.md lists them) has its
                                       stack hibernated: its live frames are copied to the heap
                                       and the stack's pages given back, until it wakes; 0:
                                       default (1 s); URT_HIBERNATE_NEVER: never. While
                                       hibernated its stack must not be read or written by
                                       anyone else (share memory through the heap, or spawn
                                       it with URT_TASK_NO_HIBERNATE) */
} urt_config;

#define URT_HIBERNATE_NEVER UINT64_MAX

#define URT_SPIN_NONE 0xffffffffu

/*
 * Create a runtime and start its worker threads (and its watchdog); each
 * worker creates its ring on its own thread before this returns. Worker
 * threads block SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE (read signals
 * with a signalfd in a task).
 * Context: any thread; it blocks the caller until the workers are up. A
 * program may run several runtimes.
 * cfg: NULL for the defaults; read during the call only (urt keeps a copy).
 * Ownership: on success *out is a new runtime that the caller owns and
 * frees with urt_runtime_destroy; on failure *out is NULL.
 * Returns 0, or -EINVAL (out NULL, a field out of range, unknown flags),
 * -ENOSYS (no io_uring in this kernel), -EPERM (io_uring disabled by sysctl
 * or blocked by seccomp), -ENOMEM (RLIMIT_MEMLOCK or memory), -EAGAIN
 * (threads).
 */
URT_API int urt_runtime_create(urt_runtime **out, const urt_config *cfg);

/*
 * Run fn(arg) as a task of rt and block the calling thread until it ends
 * (urt_spawn, then a blocking urt_join). Several threads may do so at once.
 * Context: a plain thread (also inside urt_block_in_place); from a worker
 * thread, in a task or not, it returns -EDEADLK instead of hanging.
 * Ownership: arg is handed to fn untouched; ret may be NULL, else *ret gets
 * fn's return value (as urt_join gives it).
 * Returns 0; -EINVAL (rt or fn NULL); -ESHUTDOWN (shutdown has started);
 * -ENOMEM; -ECANCELED (the task was cancelled, e.g. by a shutdown).
 */
URT_API int urt_runtime_block_on(urt_runtime *rt, urt_fn fn, void *arg, void **ret);

/*
 * Wait up to grace_ns for every task to end by itself, then cancel the rest,
 * wait for them to unwind, and stop the workers and the blocking pool. New
 * spawns fail with -ESHUTDOWN from the moment this is called. rt stays
 * allocated (urt_runtime_stats still works); free it with
 * urt_runtime_destroy. Blocking tasks already running cannot be
 * interrupted and are waited for, like tasks that ignore cancellation.
 * Context: a plain thread that is not part of rt: -EDEADLK (at once) from
 * a worker thread, a blocking task of rt, inside urt_block_in_place or in a
 * hook.
 * Returns 0; -EINVAL (rt NULL); -ETIMEDOUT when some task (or blocking job)
 * had not ended cfg.cancel_wait_ns (default 5 s) after cancellation: it is
 * named on stderr, its worker goes on serving it (a cancelled task that
 * keeps calling is slowed down to a call per millisecond or so, it does not
 * spin), and its memory is left alone. Idempotent: later calls return the
 * first call's result (make them from one thread at a time).
 */
URT_API int urt_runtime_shutdown(urt_runtime *rt, uint64_t grace_ns);

/*
 * urt_runtime_shutdown(rt, 0) if that has not been done (tasks still running
 * are cancelled), then free rt and everything it owns. Plain threads still
 * blocked in urt_join or urt_runtime_block_on get their result (-ECANCELED
 * for a cancelled task) and are done with rt before it is freed. Task
 * handles that were never joined or detached are freed, and counted and
 * named on stderr. rt NULL: nothing. After a shutdown that returned
 * -ETIMEDOUT, destroy looks again: if the stuck tasks have ended by now it
 * frees everything, else the memory is left allocated on purpose (a worker
 * may still be using it) and a line says so.
 * Context: a plain thread; from inside rt (a worker, a blocking task, a
 * hook) it prints a message to stderr and does nothing.
 * Ownership: rt and every handle of its tasks are invalid afterwards.
 */
URT_API void urt_runtime_destroy(urt_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Tasks                                                                      */
/* ------------------------------------------------------------------------ */

#define URT_TASK_MIGRATABLE 0x1u
/* Start the task on the next worker in round-robin order instead of the
 * spawner's queue: for long-lived tasks such as a server's connections,
 * which stay on the worker that first runs them, so they spread over all
 * workers even when one acceptor spawns them all. */
#define URT_TASK_SPREAD     0x2u
/* Never hibernate this task's stack (see urt_config.hibernate_after_ns):
 * for a task that lets other tasks or threads use memory on its stack
 * while it waits. */
#define URT_TASK_NO_HIBERNATE 0x8u

typedef struct urt_spawn_opts {
    const char *name;     /* shown in task dumps; copied (up to 31 bytes) */
    size_t stack_size;    /* 0: runtime default; at most 1 GiB */
    unsigned flags;       /* URT_TASK_* */
    void (*on_drop)(void *arg);  /* may be NULL: called with arg, once, when the task ends
                             without fn having run (cancelled before it ran, no stack
                             could be had, the runtime shut down), so that whatever arg
                             owns (an fd, memory) is released. It runs like a hook: on
                             the thread where the task ends, and must not wait. */
} urt_spawn_opts;

/*
 * Spawn fn(arg) as a new task of rt (NULL: the runtime of the calling task).
 * The task is queued, not run: spawned on a worker of rt it goes to that
 * worker's queue (an idle worker may steal it before it first runs), from
 * any other thread to the runtime's shared queue. fn's return value is what
 * urt_join hands back.
 * Context: any thread; rt NULL only in a task.
 * Ownership: arg is handed to fn untouched and must stay valid as long as
 * fn uses it. t NULL: the task is detached from the start. Else *t is a
 * handle the caller owns: give it up with a urt_join that consumes it or
 * with urt_detach, exactly once. *t is NULL on failure.
 * Returns 0; -EINVAL (fn NULL; rt NULL outside a task); -ESHUTDOWN (rt is
 * shutting down); -ENOMEM. On failure neither fn nor opts->on_drop is
 * called (arg is still the caller's). Once 0 is returned, exactly one of
 * fn(arg) and opts->on_drop(arg) runs (unless a shutdown gives up on a
 * runtime before the task's turn comes).
 *
 * urt_spawn_ex: the same, with options (opts NULL: as urt_spawn). opts is
 * read during the call only; its name is copied. -EINVAL also for a
 * stack_size outside 16 KiB .. 1 GiB (0 is the runtime default) and for
 * unknown flags.
 */
URT_API int urt_spawn(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg);
URT_API int urt_spawn_ex(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg,
                         const urt_spawn_opts *opts);

/*
 * Wait for t (a task or a blocking task) to end.
 * Context: any thread. In a task it suspends the task (urt_op_timeout
 * applies); on a plain thread or inside urt_block_in_place it blocks the
 * thread (no timeout). In a hook, or on a worker thread outside a task:
 * -EDEADLK.
 * Ownership: urt_join consumes t whatever it returns, except -EINVAL and
 * -EDEADLK (calls that could never wait leave t to the caller): do not use
 * t again. When the join gives up (the joiner was cancelled or its timeout
 * passed) t is detached: the task runs on and is freed when it ends. ret may be NULL, else *ret gets fn's return
 * value (NULL if fn never ran).
 * Returns 0: fn ran to the end (a cancel that came after it ended changes
 * nothing; a blocking task that ran joins as 0 even if a shutdown came
 * meanwhile). -ECANCELED with urt_cancelled() false: the task was cancelled
 * before it finished, or never ran. -ENOMEM: it never ran because no stack
 * could be mapped for it (tried again for about a second first). The
 * joiner gave up: -ECANCELED with urt_cancelled() true (the joiner was
 * cancelled), -ETIMEDOUT (its urt_op_timeout passed). -EINVAL (t NULL);
 * -EDEADLK (joining yourself; a blocking join on a worker thread; a hook).
 * Checked builds (URT_CHECKED) abort with a message when t was already
 * joined or detached.
 */
URT_API int  urt_join(urt_task *t, void **ret);
/*
 * Ask t to stop: its pending suspending call and every later one return
 * -ECANCELED (held back while it has urt_cancel_shield on); urt_cancelled()
 * turns true for it. Nothing is unwound: the task decides when to return.
 * A blocking task that has not started yet never runs; one that runs
 * cannot see the request and runs to the end (its join then says 0).
 * Cancelling a task that has ended, or twice, does nothing: the result of
 * one that ended stands.
 * Context: any thread. t is borrowed: the caller still joins or detaches it.
 * Returns 0, or -EINVAL (t NULL).
 */
URT_API int  urt_cancel(urt_task *t);
/*
 * Give up the handle t: the task runs on and is freed when it ends; its
 * return value is lost. t NULL: nothing.
 * Context: any thread. t is consumed: the caller must not use it again.
 */
URT_API void urt_detach(urt_task *t);
/*
 * Let the other runnable tasks of this worker run: the caller goes to the
 * back of the worker's queue and runs again after the worker has polled its
 * ring; while other work stays ready, yielded tasks go back to the queue at
 * most once per 200 us time slice (at once when nothing else is ready). Does
 * not look at cancellation.
 * Context: in a task; anywhere else it is sched_yield(2).
 */
URT_API void urt_yield(void);
/*
 * Suspend the calling task for at least ns nanoseconds (CLOCK_MONOTONIC,
 * never early): urt_sleep_until(urt_now() + ns), the sum saturating, so a
 * length whose end would overflow (UINT64_MAX, say) sleeps until
 * cancelled. urt_op_timeout does not shorten it; urt_deadline does
 * (-ETIMEDOUT).
 * Context: in a task; inside urt_block_in_place it sleeps the thread.
 * Returns 0; -ECANCELED (cancelled, before or while sleeping); -ETIMEDOUT
 * (the task's urt_deadline came first); -EPERM (not in a task); -EDEADLK
 * (in a hook); -EBUSY (no submission queue entry free in the ring).
 */
URT_API int  urt_sleep(uint64_t ns);
/*
 * Suspend the calling task until urt_now() >= deadline_ns (absolute,
 * CLOCK_MONOTONIC; never early). A time already past returns at once; a
 * time past about 292 years of uptime sleeps until cancelled.
 * Context: in a task; inside urt_block_in_place it sleeps the thread.
 * Returns 0; -ETIMEDOUT (the task's urt_deadline comes first: it returns at
 * that deadline); -ECANCELED; -EPERM (not in a task); -EDEADLK (in a
 * hook); -EBUSY (no submission queue entry free).
 */
URT_API int  urt_sleep_until(uint64_t deadline_ns);
/*
 * Set an absolute deadline (urt_now() time; 0: none) for every following
 * suspending call of the calling task: I/O, urt_rx_recv,
 * urt_listener_accept, urt_join, urt_group_next, the sync primitives and
 * the sleeps. A call that would pass it returns -ETIMEDOUT at the deadline
 * (at once when it has passed already, before it starts anything); with an
 * urt_op_timeout too, the earlier bound wins. urt_close ignores it.
 * Context: in a task; elsewhere it does nothing and returns 0.
 * Returns the previous deadline, which the caller restores (library code
 * must not leave it changed).
 */
URT_API uint64_t urt_deadline(uint64_t deadline_ns);
/*
 * A periodic timer for one task: urt_interval_init sets the first tick one
 * period from now; each urt_interval_tick sleeps until the next tick. A
 * caller that is late gets the due tick at once, and the ticks that also
 * passed meanwhile are skipped (never a burst of catch-up ticks): ticks
 * stay on the grid of init time + k * period.
 * The struct is the caller's; its fields may be read (next_ns: the next
 * tick, urt_now() time).
 */
typedef struct urt_interval {
    uint64_t next_ns, period_ns;
} urt_interval;
/*
 * Start iv with a period of period_ns (> 0, else urt_interval_tick gives
 * -EINVAL). Context: any thread; iv NULL does nothing.
 */
URT_API void urt_interval_init(urt_interval *iv, uint64_t period_ns);
/*
 * Wait for iv's next tick. Context: as urt_sleep_until.
 * Returns the number of ticks skipped because the caller, or its wake from
 * the sleep (a busy worker), was late (0 when on time); -EINVAL (iv NULL or period 0); else as urt_sleep_until. A late
 * tick in a task yields once, so a loop of late ticks cannot starve the
 * worker.
 */
URT_API int  urt_interval_tick(urt_interval *iv);
/*
 * Whether the calling task has been asked to stop (urt_cancel, or a
 * shutdown). Once true it stays true, also while urt_cancel_shield is on.
 * Context: any thread; false where there is no calling task (plain threads,
 * blocking tasks).
 */
URT_API bool urt_cancelled(void);
/*
 * The runtime of the calling task, or NULL outside a task (plain threads,
 * blocking tasks). Context: any thread. The pointer is borrowed: it
 * stays valid while the task runs; never destroy it from inside.
 */
URT_API urt_runtime *urt_current(void);
/*
 * Index (0 .. workers - 1) of the worker thread the caller runs on, or -1
 * on any other thread (plain threads, blocking tasks, inside
 * urt_block_in_place). Context: any thread.
 */
URT_API int  urt_worker_id(void);
/*
 * Task ids: unique within a runtime, from 1 upwards, never reused (not in
 * spawn order: workers take them in batches); shown by urt_runtime_dump.
 * urt_task_id gives the id of the task behind handle t (0 for NULL; t must
 * be a handle the caller still owns); urt_self_id that of the calling task,
 * 0 outside a task (and in blocking tasks).
 * Context: any thread.
 */
URT_API uint64_t urt_task_id(const urt_task *t);
URT_API uint64_t urt_self_id(void);
/*
 * Set the calling task's timeout for each following suspending call (0:
 * none): the I/O calls (not urt_close), urt_rx_recv, urt_join, and the
 * waits of urt_notify and the other sync primitives; not urt_sleep, not
 * urt_listener_accept. Each call gets the whole timeout anew (urt_send_all
 * per send). A call that runs out returns -ETIMEDOUT. With a urt_deadline
 * too, the earlier bound wins.
 * Context: in a task; elsewhere it does nothing and returns 0.
 * Returns the previous value, which the caller restores (library code must
 * not leave it changed).
 */
URT_API uint64_t urt_op_timeout(uint64_t ns);
/*
 * While on, cancellation is held back from the calling task: its
 * suspending calls complete as if it had not been cancelled (for cleanup
 * I/O that must finish). Turning it off lets a request that came meanwhile
 * through at the next suspending call; urt_cancelled() reports it all along.
 * Context: in a task; elsewhere it does nothing and returns false.
 * Returns the previous value, which the caller restores.
 */
URT_API bool urt_cancel_shield(bool on);
/* Monotonic time (CLOCK_MONOTONIC) in nanoseconds. Context: any thread. */
URT_API uint64_t urt_now(void);

/* ------------------------------------------------------------------------ */
/* Blocking work                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Run fn(arg) as a blocking task on a thread of rt's blocking pool, for
 * work that would stall a worker: file I/O, fsync, DNS, long computation in
 * a library. At most max_blocking_threads run at once; the rest wait in
 * FIFO order. fn runs on a plain thread, not as a fiber: it uses ordinary
 * syscalls (urt I/O calls and urt_sleep return -EPERM there; urt_join and
 * the sync primitives block the thread); to spawn from it, name rt.
 * Context: any thread; rt NULL only in a task (its runtime).
 * Ownership, handle and errors as for urt_spawn: *t (t NULL: detached) is
 * joined with urt_join like any task; arg must stay valid while fn uses it.
 * Returns 0; -EINVAL; -ESHUTDOWN; -ENOMEM; -EAGAIN (the pool has no thread
 * and none can be started: RLIMIT_NPROC, memory; fn is never called). When
 * a thread exists but no new one can start, the job waits for it.
 */
URT_API int urt_spawn_blocking(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg);

/*
 * Run fn(arg) on the calling task's stack but on a thread of the blocking
 * pool, so the worker goes on running other tasks meanwhile; then resume
 * the task on its home worker. For a blocking step in the middle of a
 * task's work: its locals stay where they are and no second task needs
 * joining, unlike urt_spawn_blocking.
 * Inside fn, urt I/O and sleep calls are plain blocking syscalls, and
 * urt_join / the sync primitives block the thread; urt_cancel does not
 * interrupt them (urt_cancelled() still tells).
 * Context: in a task; nested calls, and calls outside a task, run fn inline.
 * Ownership: arg is handed to fn untouched; ret may be NULL, else *ret gets
 * fn's return value.
 * Returns 0 (fn ran), -EINVAL (fn NULL), -EAGAIN (no pool thread was idle
 * and none could be started: RLIMIT_NPROC, memory; the task goes on on its
 * worker), -EDEADLK (in a hook). fn is not called on an error.
 */
URT_API int urt_block_in_place(urt_fn fn, void *arg, void **ret);

/* ------------------------------------------------------------------------ */
/* I/O (inside a task; results as the syscall's, or -errno)                   */
/* ------------------------------------------------------------------------ */

/*
 * Common to urt_accept .. urt_shutdown:
 *  - Context: in a task. Each call puts one operation on the calling
 *    worker's ring and suspends the task until it completes; the worker
 *    runs other tasks meanwhile. The result is the syscall's of the same
 *    name, with -errno in place of -1 and errno. Inside urt_block_in_place
 *    they are the plain blocking syscalls. On a plain thread: -EPERM
 *    (except urt_close).
 *  - A cancelled task gets -ECANCELED (the operation is cancelled in the
 *    kernel; it may have taken effect in part, e.g. bytes sent); under
 *    urt_op_timeout, -ETIMEDOUT. -EBUSY: no submission queue entry could be
 *    had from the ring (rare).
 *  - Buffers and addresses are borrowed until the call returns (the task's
 *    stack is fine). fd is borrowed: only urt_close closes it.
 *  - Lengths above 0x7ffff000 (what the kernel moves in one call) are
 *    clamped to it by every call, never truncated; the count returned says
 *    what was moved.
 *  - In a hook: -EDEADLK.
 */

/* Accept a connection on listening socket fd, as accept4(2). addr and len
 * may be NULL (both or addr only); flags: SOCK_NONBLOCK | SOCK_CLOEXEC.
 * Returns the new fd, which the caller owns; -EINVAL (addr without len,
 * other flags), or -errno. */
URT_API int     urt_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags);
/* Connect socket fd to addr (len bytes), as connect(2). 0, -EINVAL (addr
 * NULL), or -errno (-ECONNREFUSED ...). */
URT_API int     urt_connect(int fd, const struct sockaddr *addr, socklen_t len);
/* Receive up to len bytes into buf (NULL only with len 0), as recv(2)
 * (at most 0x7ffff000 per call).
 * Returns the count (0: the peer closed), -EINVAL, or -errno. */
URT_API ssize_t urt_recv(int fd, void *buf, size_t len, int flags);
/* Send up to len bytes from buf (NULL only with len 0), as send(2) with
 * MSG_NOSIGNAL always added (a closed peer gives -EPIPE, never SIGPIPE).
 * Returns the count sent, which may be short; -EINVAL, or -errno. */
URT_API ssize_t urt_send(int fd, const void *buf, size_t len, int flags);
/* Read up to len bytes into buf at file offset off, as pread(2); off -1:
 * at the file position, as read(2). At most 0x7ffff000 bytes per call.
 * Returns the count (0: end of file), -EINVAL (off < -1, buf NULL with
 * len > 0), or -errno. */
URT_API ssize_t urt_read(int fd, void *buf, size_t len, int64_t off);
/* Write up to len bytes from buf at file offset off, as pwrite(2); off -1:
 * at the file position, as write(2). At most 0x7ffff000 bytes per call.
 * Returns the count written (may be short), -EINVAL, or -errno. */
URT_API ssize_t urt_write(int fd, const void *buf, size_t len, int64_t off);
/* End every operation pending on fd on every worker's ring (tasks on any
 * worker waiting on fd, urt_rx and listeners included, get -ECANCELED),
 * wait until they have ended, then close fd: the fd number is not freed
 * (and cannot be reused) while an op on it runs. Runs to the end in a
 * cancelled task and ignores urt_op_timeout. Outside a task (and inside
 * urt_block_in_place, and in a hook) it is close(2), which ends nothing on
 * the rings. fd is consumed even when an error is returned. Returns 0,
 * -EBADF (fd < 0), or -errno of the close. */
URT_API int     urt_close(int fd);

/* Send all len bytes of buf, calling urt_send until done. Returns len, or
 * -errno with nothing said about how much was sent (-EPIPE also when a
 * send made no progress). */
URT_API ssize_t urt_send_all(int fd, const void *buf, size_t len, int flags);
/* Shut down part of a full-duplex connection, as shutdown(2); how:
 * SHUT_RD, SHUT_WR or SHUT_RDWR. 0, -EINVAL (other how), or -errno. */
URT_API int     urt_shutdown(int fd, int how);

/* ---- Servers: multishot accept, and receive into pooled buffers ---------- */

/*
 * A listener accepts with one multishot accept armed on the ring of the
 * worker that opened it (re-armed whenever the kernel ends it). Accepted fds
 * queue in the listener until urt_listener_accept takes them; when 64 are
 * waiting the accept pauses (the kernel's backlog holds the rest) and
 * resumes as they are taken. A listener belongs to the worker that opened
 * it: use it from the task that opened it (not from a URT_TASK_MIGRATABLE
 * one); on another worker its calls return -EXDEV.
 */
typedef struct urt_listener urt_listener;
/*
 * Open a listener on listen_fd, which must be a socket that listens
 * (listen(2) done; checked at once with SO_ACCEPTCONN). flags:
 * SOCK_CLOEXEC / SOCK_NONBLOCK for the accepted sockets.
 * Context: in a task (not inside urt_block_in_place: -EPERM).
 * Ownership: listen_fd stays the caller's (urt_listener_close does not close
 * it; close it after). On success *out is a new listener the caller owns
 * and frees with urt_listener_close; on failure *out is set to NULL.
 * Returns 0, -EINVAL (out NULL, listen_fd < 0, other flags, or a socket
 * that is not listening: unbound, not yet listen(2)ed, a datagram socket),
 * -ENOTSOCK (listen_fd is not a socket), -EBADF (not an open descriptor),
 * -EPERM, -ENOMEM.
 */
URT_API int urt_listener_open(urt_listener **out, int listen_fd, int flags);
/*
 * Take the next accepted connection, suspending until there is one.
 * urt_op_timeout does not apply. Context: in a task on l's worker.
 * Returns the new fd, which the caller owns (close it), or -errno:
 * -ECANCELED; -EMFILE / -ENFILE when out of descriptors (back off and call
 * again); other accept errors; -EINVAL (l NULL or closing); -EPERM (not in
 * a task); -EXDEV (another worker).
 */
URT_API int urt_listener_accept(urt_listener *l);
/*
 * Cancel the multishot accept, close the queued fds nobody took, and free
 * l (its memory goes when the kernel has ended the accept). Called in a
 * task, it waits (cancellation held back) until the kernel has ended the
 * accept, so the next connection goes to whoever accepts next. listen_fd
 * stays open. Context: l's worker thread, in a task or not.
 * Returns 0, -EINVAL (l NULL), or -EXDEV (another thread; l is untouched).
 */
URT_API int urt_listener_close(urt_listener *l);

/*
 * Pooled receive: a multishot recv on fd that takes buffers from a ring of
 * provided buffers owned by the calling task's worker (config rx_buffers x
 * rx_buffer_size). An idle connection holds no buffer. Each received chunk
 * (at most rx_buffer_size bytes) comes as a urt_buf that the caller owns
 * until urt_buf_release, which gives the buffer back to its ring (released
 * on another thread, it travels home).
 * At most URT_RX_MAX_HELD buffers are held per urt_rx (queued + handed out),
 * and urt_rx_recv hands out at most URT_RX_MAX_HELD chunks that were not
 * released: past that the receive pauses until the caller releases some,
 * so N connections whose tasks do not read hold at most N x URT_RX_MAX_HELD
 * buffers and cannot drain the ring for the others. Each receive is armed
 * with a byte limit of what still fits under the cap (kernel 6.17+; on older
 * kernels, or with URT_NO_RECV_LIMIT set in the environment, it is armed
 * without). Bytes the kernel delivers past the cap all the same (posted
 * before the pause took effect) are copied out of their buffer, which goes
 * straight back to the ring, and come, in order, as chunks in heap memory
 * once the caller has released some; to the caller every chunk looks the
 * same. Use an urt_rx from the task that opened it.
 */
#define URT_RX_MAX_HELD 4
typedef struct urt_rx urt_rx;
typedef struct urt_buf {
    void *data;          /* the bytes received; valid until urt_buf_release */
    size_t len;
    void *_rx;           /* private */
    uint32_t _bid;       /* private */
} urt_buf;
/*
 * Open a pooled receive on connected socket fd. Nothing is armed (and no
 * buffer held) until the first urt_rx_recv. The worker's buffer ring is set
 * up on the first urt_rx_open on that worker. A worker that cannot register
 * it (RLIMIT_MEMLOCK too low for a user without CAP_IPC_LOCK, a kernel
 * without provided-buffer rings) says so once on stderr, in one line naming
 * the worker and the error (written by its ring, so a stderr that does not
 * take it never blocks the worker; the line is then dropped), and its
 * urt_rx receive with a plain recv per urt_rx_recv into a heap buffer of
 * rx_buffer_size: the calls, the cap and urt_buf_release stay the same.
 * Context: in a task (not inside urt_block_in_place: -EPERM); the urt_rx
 * belongs to that task's worker, like a listener (-EXDEV elsewhere).
 * Ownership: fd stays the caller's (urt_rx_close does not close it; close
 * it after). On success *out is a new urt_rx the caller owns and frees with
 * urt_rx_close; on failure *out is set to NULL.
 * Returns 0, -EINVAL (out NULL, fd < 0), -EPERM, -ENOMEM.
 */
URT_API int     urt_rx_open(urt_rx **out, int fd);
/*
 * Take the next received chunk, suspending until there is one.
 * Context: in a task on rx's worker; urt_op_timeout applies.
 * Ownership: buf is the caller's struct, filled in on success; the buffer
 * at buf->data (buf->len bytes) then belongs to the caller until it passes
 * buf to urt_buf_release, once.
 * Returns > 0: the byte count; 0: the peer closed (after every chunk before
 * it); -errno: -ECANCELED, -ETIMEDOUT, a receive error (-ECONNRESET ...),
 * -ENOBUFS (the caller already holds URT_RX_MAX_HELD buffers of this rx:
 * release some, then call again), -EINVAL (NULL, or rx closing), -EPERM (not
 * in a task), -EXDEV (another worker), -EBUSY (ring full).
 */
URT_API ssize_t urt_rx_recv(urt_rx *rx, urt_buf *buf);
/*
 * Give the buffer described by buf back to its ring, and clear buf->data;
 * releasing the same urt_buf again, or one never filled (_rx NULL), does
 * nothing. The buffer may be released after urt_rx_close (the urt_rx's
 * memory lasts until its last buffer is back), but not after the runtime
 * is destroyed.
 * Context: any thread (from another thread than rx's worker the buffer
 * travels home through that worker's mailbox).
 */
URT_API void    urt_buf_release(urt_buf *buf);
/*
 * Send buf's bytes (buf->data, buf->len) on fd and give the buffer back
 * (as urt_buf_release) once the kernel has sent them, without waiting for
 * the send: an echo or a proxy answers each chunk with no suspension of its
 * own. A task's sends go out in the order it made them, on any fd. While
 * its previous send is still in flight, a send on the same fd does not wait:
 * its bytes are copied into a queue behind it (at most URT_BUF_SEND_QUEUE
 * bytes per task; the buffer goes back to the pool at once) and the whole
 * queue goes as one send when the one in flight ends; a send on another fd,
 * or one that does not fit, waits for the send (or for room) first. An
 * error of a send shows up later, once: as the result of the task's next
 * urt_buf_send or urt_buf_flush; what was queued behind a failed send is
 * dropped with it. urt_close(fd) in the same task lets its sends on fd
 * finish first; a plain close(2) does not (call urt_buf_flush first). A
 * task that ends with sends in flight or queued leaves them to finish. The
 * waits for a previous send (or for room) end early on cancellation (-ECANCELED) and on
 * urt_op_timeout / urt_deadline (-ETIMEDOUT; for urt_close: the close then
 * ends the send); the send in flight goes on meanwhile. A send that a
 * urt_close of its fd ends after only part of it went is not resumed, nor
 * is what was queued behind it.
 * Context: in a task; for a buffer of another worker's urt_rx, in a
 * migratable task, inside urt_block_in_place, in a hook (where it may not
 * wait: -EDEADLK) or on a plain thread it sends synchronously (urt_send_all,
 * or send(2)) and returns when it is done; inside urt_block_in_place and in
 * a hook a send of the task still in flight makes it refuse (-EDEADLK)
 * rather than overtake it. Errors are the task's, not the fd's: a failed
 * send's error comes back from the next call whatever its fd.
 * Ownership: on 0 the buffer has passed to urt (buf->data is cleared; buf,
 * the caller's struct, may be reused at once); an empty one (len 0) is
 * released. On an error before anything was sent buf is unchanged and the
 * buffer still the caller's, to send again or release; after the
 * synchronous send's own error it has been released (buf->data cleared).
 * Returns 0 (queued or sent), or -errno: -EINVAL (buf NULL or not filled,
 * or buf->len larger than the buffer),
 * -EBADF (fd < 0), the error of the task's earlier send (-EPIPE,
 * -ECONNRESET, -ECANCELED when a urt_close of its fd ended it ...),
 * -ECANCELED (the task is cancelled), -ETIMEDOUT, -EBUSY (ring full), or
 * the synchronous send's error.
 */
URT_API int     urt_buf_send(int fd, urt_buf *buf);
/* The bytes a task's urt_buf_sends may queue behind its send in flight. */
#define URT_BUF_SEND_QUEUE 16384
/*
 * Wait until the calling task's urt_buf_sends are done (the queued ones too).
 * Context: in a task; in a hook or inside urt_block_in_place only when
 * nothing is in flight.
 * Returns 0, or the error of a send not yet reported (once), -ECANCELED,
 * -ETIMEDOUT (urt_op_timeout, urt_deadline: the send goes on), -EPERM (not
 * in a task), -EDEADLK (in a hook or inside urt_block_in_place with a send
 * in flight).
 */
URT_API int     urt_buf_flush(void);
/*
 * Cancel the receive, give the queued chunks nobody took back to the ring
 * (their data is dropped), and free rx once the kernel has ended the
 * receive. Called in a task, it waits (cancellation held back) until the
 * kernel has ended it, so data that arrives afterwards stays in the socket
 * for whoever reads next. Buffers the caller holds stay valid until
 * released. fd stays open.
 * Context: rx's worker thread, in a task or not.
 * Returns 0, -EINVAL (rx NULL), or -EXDEV (another thread; rx untouched).
 */
URT_API int     urt_rx_close(urt_rx *rx);

/* ------------------------------------------------------------------------ */
/* Sync primitives (suspend the task, never the worker)                       */
/* ------------------------------------------------------------------------ */

/*
 * urt_notify: an auto-reset event holding at most one permit. signal hands
 * the permit to the oldest waiter, or stores it when nobody waits; wait takes
 * the permit, or suspends (in a task) / blocks (on any other thread) until
 * one is signalled. Waiters are served in FIFO order.
 */
typedef struct urt_notify urt_notify;
/*
 * Create a notify with no permit. It belongs to no runtime: tasks of any
 * runtime and plain threads may share it.
 * Context: any thread.
 * Ownership: on success *out is a new notify the caller owns and frees with
 * urt_notify_destroy.
 * Returns 0, -EINVAL (out NULL), -ENOMEM.
 */
URT_API int  urt_notify_create(urt_notify **out);
/*
 * Free n (NULL: nothing). Nobody may wait on n or signal it any more; a
 * waiter whose wait returned 0 may destroy it.
 * Context: any thread. n is invalid afterwards.
 */
URT_API void urt_notify_destroy(urt_notify *n);
/*
 * Hand the permit to the oldest waiter, or store it when nobody waits (a
 * stored permit absorbs further signals: there is at most one). Never waits.
 * Context: any thread, in a task or not.
 * Returns 0, or -EINVAL (n NULL).
 */
URT_API int  urt_notify_signal(urt_notify *n);
/*
 * Take the permit, waiting until one is signalled if none is stored.
 * Context: in a task it suspends the task (urt_op_timeout applies); on a
 * plain thread or inside urt_block_in_place it blocks the thread (no
 * timeout, no cancellation).
 * Returns 0 (the permit is taken); -ECANCELED (the waiting task was
 * cancelled; no permit is consumed); -ETIMEDOUT (the task's urt_op_timeout
 * passed; none consumed); -EINVAL (n NULL); -EPERM on a worker thread
 * outside a task.
 */
URT_API int  urt_notify_wait(urt_notify *n);
/*
 * Take the permit if one is stored; never waits. Context: any thread.
 * Returns 0 (taken), -EAGAIN (none stored), or -EINVAL (n NULL).
 */
URT_API int  urt_notify_try_wait(urt_notify *n);

/*
 * Common to urt_mutex, urt_sem and urt_chan:
 *  - A call that waits suspends the calling task (its worker runs other
 *    tasks meanwhile) or, on any thread that is not a worker (and inside
 *    urt_block_in_place), blocks it. On a worker thread outside a task it
 *    returns -EPERM instead of waiting; what needs no waiting still works.
 *  - Waiters are served in FIFO order: what is freed (the mutex, a permit,
 *    an item, room for one) goes straight to the oldest waiter, so a
 *    newcomer cannot overtake it.
 *  - A waiting call returns -ECANCELED when its task is cancelled and
 *    -ETIMEDOUT when the task's urt_op_timeout passes, having taken nothing.
 *    If the mutex, a permit or an item was handed to the waiter before it
 *    noticed, the call returns 0 with it instead; nothing is ever lost. A
 *    cancelled task gets -ECANCELED at once from a call that may wait, as
 *    from every suspending call.
 *  - A task whose calls that may wait keep finding the primitive ready
 *    yields inside one of them now and then (after 128 such calls on its
 *    worker with no wait between), so a tight producer/consumer loop does
 *    not starve the other tasks of its worker.
 *  - destroy: nobody may wait on it or use it any more; a waiter whose call
 *    returned may destroy it.
 */

/*
 * urt_mutex: a lock that is not tied to a thread (a task keeps it across
 * suspensions, and any task or thread may unlock it). unlock hands it to
 * the oldest waiter, so no waiter starves.
 */
typedef struct urt_mutex urt_mutex;
/* A new mutex, unlocked: 0, -EINVAL, -ENOMEM. destroy: nobody may hold it. */
URT_API int  urt_mutex_create(urt_mutex **out);
URT_API void urt_mutex_destroy(urt_mutex *m);
/* 0 (the caller holds m), -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL. */
URT_API int  urt_mutex_lock(urt_mutex *m);
/* 0, or -EBUSY when someone holds it. Never waits. */
URT_API int  urt_mutex_try_lock(urt_mutex *m);
/* 0, or -EPERM when m is not locked. Any thread. */
URT_API int  urt_mutex_unlock(urt_mutex *m);

/*
 * urt_sem: a counting semaphore (at most INT_MAX permits). release hands
 * permits to the oldest waiters, one each, and keeps the rest.
 */
typedef struct urt_sem urt_sem;
/* -EINVAL when initial > INT_MAX. */
URT_API int  urt_sem_create(urt_sem **out, unsigned initial);
URT_API void urt_sem_destroy(urt_sem *s);
/* Take one permit: 0, -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL. */
URT_API int  urt_sem_acquire(urt_sem *s);
/* 0, or -EAGAIN when no permit is free. Never waits. */
URT_API int  urt_sem_try_acquire(urt_sem *s);
/* Add n permits (n 0: nothing). -EINVAL when n > INT_MAX, -EOVERFLOW (and
 * nothing released) when more than INT_MAX would be free. Any thread. */
URT_API int  urt_sem_release(urt_sem *s, unsigned n);
/* Free permits now (a snapshot), or -EINVAL. */
URT_API int  urt_sem_value(urt_sem *s);

/*
 * urt_chan: a bounded channel of fixed-size items (copied in and out), for
 * any number of senders and receivers, tasks and threads alike. Items come
 * out in the order they went in. A send that finds a receiver waiting hands
 * the item straight to it.
 * close, as in Go: sends fail with -EPIPE from then on; receives drain the
 * items still buffered, then fail with -EPIPE; every waiting sender and
 * receiver is woken with -EPIPE (a sender woken so did not send its item).
 */
typedef struct urt_chan urt_chan;
/* item_size >= 1 bytes, capacity >= 1 items; -EINVAL, -ENOMEM. */
URT_API int  urt_chan_create(urt_chan **out, size_t item_size, size_t capacity);
/* Items still buffered are dropped. */
URT_API void urt_chan_destroy(urt_chan *c);
/* Copy item_size bytes from item into c; waits while c is full. 0, -EPIPE
 * (closed; not sent), -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL. */
URT_API int  urt_chan_send(urt_chan *c, const void *item);
/* Take the oldest item into item (item_size bytes); waits while c is empty.
 * 0, -EPIPE (closed and empty), -ECANCELED, -ETIMEDOUT, -EPERM, -EINVAL. */
URT_API int  urt_chan_recv(urt_chan *c, void *item);
/* As send / recv, but -EAGAIN instead of waiting (full / empty and open). */
URT_API int  urt_chan_try_send(urt_chan *c, const void *item);
URT_API int  urt_chan_try_recv(urt_chan *c, void *item);
/* 0, or -EPIPE when c was already closed. Any thread. */
URT_API int  urt_chan_close(urt_chan *c);
/* Items buffered now (a snapshot) / the capacity; -EINVAL for NULL. */
URT_API ssize_t urt_chan_len(urt_chan *c);
URT_API ssize_t urt_chan_cap(const urt_chan *c);

/* ------------------------------------------------------------------------ */
/* Observability                                                              */
/* ------------------------------------------------------------------------ */

typedef struct urt_worker_stats {
    uint64_t polls, lifo_polls, local_schedules, inject_schedules, overflows;
    uint64_t steal_attempts, steals, tasks_stolen;
    uint64_t mailbox_pushes;                      /* tasks woken from other threads */
    uint64_t parks, wakes_sent, wakes_received;   /* MSG_RING doorbells */
    uint64_t sqes_submitted, cqes_reaped, enters; /* enters: io_uring_enter calls */
    uint64_t busy_ns, watchdog_stalls;
    unsigned ring_flags;                          /* IORING_SETUP_* the ring got */
    uint64_t stack_retries;                       /* first runs put off: no stack could be mapped */
    uint64_t hibernations, restores;              /* stacks hibernated / brought back */
    uint64_t hibernated;                          /* tasks of this worker hibernated now */
} urt_worker_stats;

/*
 * Copy the counters of workers 0 .. min(n, workers) - 1 into out[0 ..].
 * The workers keep running: each counter is read atomically, but the set
 * is not one snapshot. Works until urt_runtime_destroy, also after
 * urt_runtime_shutdown.
 * Context: any thread.
 * Ownership: out is the caller's array of n entries (NULL with n 0: just
 * ask for the worker count).
 * Returns the number of workers (which may exceed n), or -EINVAL (rt NULL,
 * out NULL with n > 0).
 */
URT_API int urt_runtime_stats(urt_runtime *rt, urt_worker_stats *out, unsigned n);
/*
 * Write one line per live task to fd: id, name, kind (fiber or blocking),
 * home worker, state, time in that state ("for") and since spawn ("age"),
 * both coarse (a worker's clock is read at its maintenance, not per task
 * switch), the operation and fd or the primitive it waits on ("waits"), and
 * for a blocking job or a task inside urt_block_in_place the pool thread
 * running it ("on"); then one "runtime" line with the urt_runtime_metrics
 * totals. The states are read while the tasks run, so a line may be stale
 * by the time it is read.
 * Context: any thread; it writes with plain blocking write(2) calls (use
 * it from a debugging thread or a signalfd task, never a signal handler).
 * fd is borrowed.
 * Returns the number of tasks written, or -EINVAL (rt NULL, fd < 0).
 */
URT_API int urt_runtime_dump(urt_runtime *rt, int fd);

/* ---- Readiness, sockets, splice and sendfile (runtime/sock.c) -------------- */

/*
 * Common to urt_poll .. urt_sendfile:
 *  - Context: in a task; each call is one operation on the calling worker's
 *    ring (the opcode is named at each call) and suspends only the task.
 *    The result is the syscall's of the same name, with -errno in place of
 *    -1 and errno. Inside urt_block_in_place they are the plain blocking
 *    syscalls. On a plain thread: -EPERM. In a hook: -EDEADLK.
 *  - They honour urt_op_timeout and urt_deadline (-ETIMEDOUT) and
 *    cancellation (-ECANCELED), like urt_recv; urt_close(fd) from any task
 *    ends a call pending on fd with -ECANCELED first.
 *  - Where the kernel lacks the opcode (probed once per ring), the call
 *    falls back to the syscall, with the same results: socket(2) at once;
 *    recvmsg/sendmsg without blocking, and on EAGAIN a readiness wait as
 *    urt_poll's, then again; poll(2) on a blocking-pool thread, in slices,
 *    so bounds and cancellation still end it (within about 10 ms);
 *    splice(2) and sendfile(2) on a blocking-pool thread after the same
 *    readiness waits as below (a sendfile then moves at most what the
 *    socket has room for per call).
 *  - urt_splice first waits (POLL_ADD) until fd_in is readable and fd_out
 *    writable, and urt_sendfile until out_fd is writable before each step:
 *    a splice that has to wait inside the kernel is not ended by a cancel
 *    or a time bound (measured on Linux 6.18), so these waits are where
 *    bounds and cancellation take effect. A splice that still has to wait
 *    (another writer took the room) ends when the peer reads or closes.
 *  - The socket calls wait for data or room even on an O_NONBLOCK socket
 *    (the kernel's ring ops do); pass MSG_DONTWAIT for -EAGAIN instead. A
 *    library that does its own non-blocking I/O waits with urt_poll.
 *  - Buffers, addresses and msghdrs are borrowed until the call returns (the
 *    task's stack is fine); fds are borrowed. Bad input gives -EBADF (an fd
 *    < 0) or -EINVAL (NULL where a pointer is needed with a length > 0,
 *    out-of-range flags) without any syscall.
 *  - Lengths above 0x7ffff000 are clamped to it, never truncated, as by
 *    urt_recv; in a msghdr the kernel clamps the iovec total the same way.
 */

/* Wait until fd is ready for one of events (a mask of POLLIN, POLLOUT,
 * POLLPRI, POLLRDHUP, POLLERR, POLLHUP; others, or 0, give -EINVAL), with
 * one one-shot IORING_OP_POLL_ADD. For libraries that do their own
 * non-blocking I/O (OpenSSL, c-ares, libcurl): call it on EAGAIN or
 * SSL_ERROR_WANT_READ/WRITE, then try the I/O again.
 * Returns the revents seen (> 0; POLLERR and POLLHUP may be in it though
 * not asked for), -EBADF for an fd that is not open (never POLLNVAL: the
 * fallback turns poll(2)'s POLLNVAL into -EBADF too), -ETIMEDOUT,
 * -ECANCELED, or -errno. */
URT_API int     urt_poll(int fd, short events);
/* Create a socket, as socket(2) (type may carry SOCK_NONBLOCK and
 * SOCK_CLOEXEC), with IORING_OP_SOCKET (Linux 5.19+; else socket(2)).
 * Returns the new fd, which the caller owns (close it with urt_close), or
 * -errno (-EAFNOSUPPORT, -EINVAL ...). */
URT_API int     urt_socket(int domain, int type, int protocol);
/* Receive one datagram (or stream bytes) of up to len into buf, as
 * recvfrom(2), with IORING_OP_RECVMSG. src and srclen may be NULL; with
 * src, *srclen is the room at src on entry and the sender's address length
 * on return (more than the room if the address was cut, as recvfrom(2)).
 * Returns the count (0: the peer closed a stream, or an empty datagram),
 * -EINVAL (buf NULL with len > 0, src without srclen), or -errno. */
URT_API ssize_t urt_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *src, socklen_t *srclen);
/* Send up to len bytes from buf to dst (dstlen bytes; NULL on a connected
 * socket), as sendto(2) with MSG_NOSIGNAL added, with IORING_OP_SENDMSG.
 * Returns the count sent, -EINVAL (buf NULL with len > 0), or -errno
 * (-EPIPE on a closed stream, never SIGPIPE). */
URT_API ssize_t urt_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *dst, socklen_t dstlen);
/* Receive into msg's iovecs (and its name and control buffers), as
 * recvmsg(2), with IORING_OP_RECVMSG: msg_namelen, msg_controllen and
 * msg_flags are written back as recvmsg(2) does (ancillary data such as
 * IP_PKTINFO arrives in msg_control). Returns the count, -EINVAL (msg
 * NULL, msg_iovlen > IOV_MAX, a NULL iovec base with a length, control
 * NULL with a length), or -errno. */
URT_API ssize_t urt_recvmsg(int fd, struct msghdr *msg, int flags);
/* Send msg, as sendmsg(2) with MSG_NOSIGNAL added, with IORING_OP_SENDMSG.
 * Returns the count sent (may be short on a stream), -EINVAL (as
 * urt_recvmsg), or -errno (-EPIPE, never SIGPIPE). */
URT_API ssize_t urt_sendmsg(int fd, const struct msghdr *msg, int flags);
/* Move up to len bytes from fd_in to fd_out, one of which must be a pipe,
 * as splice(2), with IORING_OP_SPLICE. off_in / off_out: the offset in a
 * file that is not a pipe (its position is then not changed), or -1 for
 * the fd's current position (advanced); a pipe needs -1. flags:
 * SPLICE_F_MOVE, SPLICE_F_NONBLOCK, SPLICE_F_MORE, SPLICE_F_GIFT.
 * Returns the count moved (0: end of input), -EBADF, -EINVAL (offset
 * < -1, other flags), or -errno. */
URT_API ssize_t urt_splice(int fd_in, int64_t off_in, int fd_out, int64_t off_out, size_t len, unsigned flags);
/* Send up to len bytes of file in_fd from offset off to out_fd (a socket,
 * or any fd splice can write), as sendfile(2), with no copy through user
 * space: IORING_OP_SPLICE file -> pipe, then pipe -> out_fd, in chunks of
 * a pipe's size, until len, the end of the file, or an error (the pipe is
 * the worker's own; urt keeps a few, closed when the runtime ends). off -1:
 * from the file's current position, which is advanced by the bytes sent
 * (sendfile with a NULL offset); otherwise the position is not changed.
 * Returns the bytes sent (fewer than len at the end of the file, or when an
 * error, a time bound or a cancel came after some were sent: the next call
 * then reports it, e.g. -EPIPE when the peer closed), 0 at the end of the
 * file, -EBADF, -EINVAL (off < -1), or -errno. */
URT_API ssize_t urt_sendfile(int out_fd, int in_fd, int64_t off, size_t len);


/* ---- Files (runtime/fs.c) -------------------------------------------------- */

struct iovec;
struct statx;

/*
 * Common to urt_readv .. urt_mkdirat:
 *  - Context: in a task. Each call is one operation on the calling worker's
 *    ring (IORING_OP_READV, _WRITEV, _OPENAT, _STATX, _FSYNC, _FALLOCATE,
 *    _FTRUNCATE, _UNLINKAT, _RENAMEAT, _MKDIRAT) and suspends the task until
 *    it completes. The result is the syscall's of the same name, with
 *    -errno in place of -1 and errno. On a plain thread: -EPERM; inside
 *    urt_block_in_place: the plain blocking syscall; in a hook: -EDEADLK.
 *  - urt_op_timeout, urt_deadline and cancellation end a pending call as
 *    they end urt_recv: -ETIMEDOUT, -ECANCELED. An operation the kernel had
 *    already completed when the cancel came returns its result (an fd
 *    opened anyway is returned, and is the caller's). One limit, the
 *    kernel's: an operation that blocks inside one of the kernel's worker
 *    threads is ended by a cancel but not by its time bound (measured on
 *    Linux 6.18 with an O_CREAT open of a FIFO: the linked timeout never
 *    fired; other operations that block there, a slow fsync say, may do
 *    the same); the call then ends when the operation does, with its
 *    result.
 *  - Where the running kernel lacks the opcode (probed once per ring; e.g.
 *    FTRUNCATE before Linux 6.9), the call runs the syscall on a blocking
 *    pool thread (as urt_block_in_place), with the same results; -EAGAIN
 *    when no pool thread could be had. There a bound or cancel is checked
 *    before the syscall starts; a readv or writev at the current position
 *    of a blocking fd first waits for it to be ready and can end there with
 *    -ETIMEDOUT or -ECANCELED; a syscall that has started blocking (an
 *    O_CREAT open of a FIFO) is waited for.
 *  - Paths, iovec arrays, the buffers they point to and the statx buffer
 *    are borrowed and must stay valid and unchanged until the call returns
 *    (the kernel reads them after the submission; the task's stack is
 *    fine). fd and dirfd are borrowed; dirfd may be AT_FDCWD.
 *  - Bad input: -EBADF for a negative fd or dirfd (other than AT_FDCWD);
 *    -EINVAL for a NULL path, iov or out.
 *  - -EBUSY: no submission queue entry could be had from the ring (rare).
 */

/* Read into the iovcnt buffers of iov from file offset off, as preadv(2);
 * off -1: at the file position, as readv(2). iovcnt: 1 .. IOV_MAX. As in
 * the kernel, one call moves at most 0x7ffff000 bytes in all (a longer
 * vector is used that far), and one buffer longer than SSIZE_MAX is
 * -EINVAL.
 * Returns the count (0: end of file), -EINVAL (iov NULL, iovcnt out of
 * range, off < -1), -EBADF, or -errno. */
URT_API ssize_t urt_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off);
/* Write the iovcnt buffers of iov at file offset off, as pwritev(2); off
 * -1: at the file position, as writev(2). Lengths and errors as for
 * urt_readv. Returns the count written (may be short), or -errno. */
URT_API ssize_t urt_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off);
/* Open path relative to dirfd, as openat(2) with flags (O_*) and mode
 * (used with O_CREAT / O_TMPFILE). One difference, the kernel's: a FIFO
 * opened without O_CREAT, O_TRUNC or O_TMPFILE does not wait for its other
 * end (the ring op tries a non-blocking open first): a reader gets its fd
 * at once, a writer with no reader -ENXIO; the fd is not left O_NONBLOCK.
 * Returns the new fd, which the caller owns (close it with urt_close),
 * -EINVAL (path NULL), -EBADF, or -errno (-ENOENT, -EISDIR, -EEXIST ...). */
URT_API int     urt_openat(int dirfd, const char *path, int flags, mode_t mode);
/* File status of path relative to dirfd into *out, as statx(2): flags
 * AT_* (AT_EMPTY_PATH with path "" for dirfd itself, AT_SYMLINK_NOFOLLOW
 * ...), mask STATX_* (what to fill; out->stx_mask says what was). Returns
 * 0, -EINVAL (path or out NULL), -EBADF, or -errno. */
URT_API int     urt_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out);

#define URT_FSYNC_DATASYNC 0x1u   /* urt_fsync: as fdatasync(2) */

/* Flush fd's data and metadata to the device, as fsync(2); with
 * URT_FSYNC_DATASYNC as fdatasync(2). Returns 0, -EBADF, -EINVAL (other
 * flags), or -errno. */
URT_API int     urt_fsync(int fd, unsigned flags);
/* Allocate (or, with FALLOC_FL_* mode bits, punch, zero ...) the byte
 * range off .. off + len of fd, as fallocate(2). Returns 0, -EBADF,
 * -EINVAL (off or len negative), or -errno (-EOPNOTSUPP ...). */
URT_API int     urt_fallocate(int fd, int mode, int64_t off, int64_t len);
/* Set the size of fd's file to len bytes, as ftruncate(2)
 * (IORING_OP_FTRUNCATE is Linux 6.9+; older kernels take the fallback).
 * Returns 0, -EBADF, -EINVAL (len negative; also from the kernel for an fd
 * not open for writing), or -errno. */
URT_API int     urt_ftruncate(int fd, int64_t len);
/* Remove path relative to dirfd, as unlinkat(2); flags AT_REMOVEDIR for an
 * empty directory. Returns 0, -EINVAL (path NULL), -EBADF, or -errno
 * (-ENOENT, -EISDIR, -ENOTEMPTY ...). */
URT_API int     urt_unlinkat(int dirfd, const char *path, int flags);
/* Rename oldpath (relative to olddirfd) to newpath (relative to newdirfd),
 * as renameat2(2); flags RENAME_NOREPLACE, RENAME_EXCHANGE ... (0: as
 * renameat(2)). Returns 0, -EINVAL (a path NULL), -EBADF, or -errno. */
URT_API int     urt_renameat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned flags);
/* Make directory path relative to dirfd with mode, as mkdirat(2). Returns
 * 0, -EINVAL (path NULL), -EBADF, or -errno (-EEXIST, -ENOENT ...). */
URT_API int     urt_mkdirat(int dirfd, const char *path, mode_t mode);


/* ---- Child processes (runtime/process.c) ----------------------------------- */

/*
 * Start a child process with a clean signal state, as posix_spawn(3).
 * It runs the program at path with argv (NULL-terminated; argv[0] is by
 * custom the program's name) and envp (NULL-terminated; NULL: the caller's
 * environ). path is used as given: the PATH variable is not searched (pass
 * "/bin/sh", not "sh"). actions
 * (may be NULL) are applied in the child before the exec: dup2 a pipe onto
 * its stdout, close or open files (posix_spawn_file_actions_*(3)).
 * The child starts with an empty signal mask and every signal's action set
 * back to the default, whatever the calling thread blocks or ignores
 * (worker and pool threads block signals; a child must not inherit that).
 * File descriptors without FD_CLOEXEC are inherited, as with posix_spawn
 * (urt's own descriptors all have it).
 * Context: any thread: a task, a blocking job, a plain thread, a hook. The
 * calling thread is held until the child has started the new program (the
 * spawn is vfork-like: typically well under a millisecond); nothing else is
 * suspended.
 * Ownership: path, argv, envp and actions are borrowed for the call. The
 * child is the caller's: wait for it with urt_process_wait (or waitpid(2)),
 * or it stays a zombie until the process ends.
 * Returns 0 with the child's id in *pid; -EINVAL (pid, path or argv NULL);
 * or -errno from posix_spawn, e.g. -ENOENT or -EACCES when the program
 * cannot be run, -EAGAIN at the process limit.
 */
URT_API int urt_process_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                              const posix_spawn_file_actions_t *actions);
/*
 * Wait for child process pid to end and reap it, as waitpid(pid, status, 0).
 * pid is a child of this process (as urt_process_spawn starts). In a task
 * only the task waits: one IORING_OP_WAITID on the worker's ring where the kernel
 * has it (Linux 6.7+), else a pidfd of the child polled on the ring. Exactly
 * one waiter reaps a child; a second one waiting on it gets -ECHILD.
 * Context: in a task it suspends, honouring urt_op_timeout, urt_deadline and
 * cancellation like urt_recv. On a plain thread (a blocking job included)
 * and inside urt_block_in_place it is waitpid(2), which blocks the thread.
 * In a hook: -EDEADLK.
 * Ownership: status (may be NULL) is written only when 0 is returned.
 * Returns 0 with *status as waitpid gives it (test with WIFEXITED /
 * WEXITSTATUS, WIFSIGNALED / WTERMSIG / WCOREDUMP); -EINVAL (pid <= 0: no
 * process groups here); -ECHILD (not a child of this process, or already
 * reaped; also for every child when SIGCHLD is set to SIG_IGN, which reaps
 * them behind everyone's back); -ECANCELED (the task was cancelled);
 * -ETIMEDOUT (its op timeout or deadline passed). After -ECANCELED or
 * -ETIMEDOUT the child has not been reaped: wait for it again (or it stays
 * a zombie). -EBUSY: no submission queue entry could be had (rare).
 */
URT_API int urt_process_wait(pid_t pid, int *status);


/* ---- Task groups (runtime/group.c) ----------------------------------------- */

/* Spawn flag: start the task on the spawning task's worker and never let
 * another worker steal it, so a connection's tasks share one ring and one
 * cache. Spawned from outside a worker of the runtime it changes nothing.
 * It cannot be combined with URT_TASK_SPREAD or URT_TASK_MIGRATABLE
 * (-EINVAL). */
#define URT_TASK_LOCAL      0x4u

/*
 * urt_group: a set of tasks that ends together (Tokio's JoinSet, a
 * nursery). The group owns its members' join handles; urt_group_next hands
 * members out in the order they end, each exactly once, and
 * urt_group_destroy never returns while a member still runs. A group is
 * used by one collecting task at a time; members may be spawned from any
 * task of one runtime, members included. Destroy every group before its
 * runtime (urt_runtime_destroy frees the members' handles).
 */
typedef struct urt_group urt_group;

/*
 * A new, empty group.
 * Context: any thread.
 * Ownership: *out is the caller's, freed by urt_group_destroy.
 * Returns 0, -EINVAL (out NULL), -ENOMEM.
 */
URT_API int urt_group_create(urt_group **out);

/*
 * Spawn fn(arg) as a member of g, in the calling task's runtime, as
 * urt_spawn_ex does (opts may be NULL; the same fields and flags apply).
 * Context: in a task (every member of a group belongs to one runtime; the
 * first spawn fixes it); also inside urt_block_in_place.
 * Ownership: the member's handle is g's; arg as for urt_spawn.
 * Returns 0; -EINVAL (g or fn NULL, bad opts, a task of another runtime);
 * -EPERM (not in a task); -ESHUTDOWN (g is being destroyed, or the runtime
 * shuts down); -ENOMEM. On an error fn is never called.
 */
URT_API int urt_group_spawn(urt_group *g, urt_fn fn, void *arg, const urt_spawn_opts *opts);

/*
 * Wait for any member of g to end and collect it: members come out in the
 * order they ended, each once. In a task it suspends (honouring
 * urt_op_timeout, urt_deadline and cancellation); a plain thread blocks.
 * Context: a task or a plain thread, one at a time per group.
 * Ownership: ret and task_id may be NULL; else *ret gets the member's return
 * value (only on 0) and *task_id its id (0 when no member was collected).
 * Returns 0 (a member ran to the end), -ECANCELED with *task_id set (that
 * member was cancelled before it finished or never ran), -ECHILD (g has no
 * member left to collect); without collecting anything: -ECANCELED with
 * urt_cancelled() true (the caller was cancelled), -ETIMEDOUT (its op
 * timeout or deadline passed), -EBUSY (another caller is collecting or
 * destroying g), -EPERM (a worker thread outside a task, with nothing
 * ended yet), -EDEADLK (in a hook), -EINVAL (g NULL). A member that ends
 * after a collector gave up stays collectable.
 */
URT_API int urt_group_next(urt_group *g, void **ret, uint64_t *task_id);

/*
 * Ask every member of g still running to stop (urt_cancel of each); they
 * end with -ECANCELED in urt_group_next unless they finished first. Members
 * spawned later are not affected. Never waits.
 * Context: any thread.
 * Returns 0, or -EINVAL (g NULL).
 */
URT_API int urt_group_cancel(urt_group *g);

/*
 * Members of g not yet collected by urt_group_next (running or ended), a
 * snapshot. Context: any thread. Returns the count; 0 for g NULL.
 */
URT_API size_t urt_group_len(const urt_group *g);

/*
 * Cancel the members still running, wait until every member has ended
 * (also when the caller is cancelled or its op timeout or deadline passes:
 * no member outlives its group), drop the results nobody collected, and
 * free g. Spawns into g from its members meanwhile fail with -ESHUTDOWN.
 * In a task it suspends; a plain thread blocks.
 * Context: a task or a plain thread; not a member of g.
 * Ownership: consumes g on 0; on an error g is untouched and stays the
 * caller's.
 * Returns 0; -EINVAL (g NULL); -EBUSY (a urt_group_next on g is waiting);
 * -EDEADLK (called by a member of g, or in a hook); -EPERM (a worker thread
 * outside a task).
 */
URT_API int urt_group_destroy(urt_group *g);


/* ---- More sync primitives (runtime/cond.c, runtime/rwlock.c) --------------- */

/*
 * urt_notify_broadcast: wake every waiter waiting on n at this moment (each
 * wait returns 0). It stores no permit: with nobody waiting it does nothing,
 * and a wait that starts afterwards is not woken by it. A permit stored
 * earlier by urt_notify_signal stays as it was (there is none while anyone
 * waits).
 * Context: any thread, in a task or not; never waits.
 * Returns 0, or -EINVAL (n NULL).
 */
URT_API int  urt_notify_broadcast(urt_notify *n);

/*
 * urt_cond: a condition variable for a urt_mutex, like pthread_cond_t.
 * Waiting and cancellation follow the rules common to urt_mutex, urt_sem and
 * urt_chan above (a task suspends, a plain thread or a task inside
 * urt_block_in_place blocks; urt_op_timeout and urt_deadline bound a task's
 * wait). Wakeups may be spurious: wait in a loop that re-checks the
 * predicate under the mutex, as with pthread_cond_wait. It belongs to no
 * runtime, and waiters may wait with different mutexes.
 */
typedef struct urt_cond urt_cond;
/*
 * Create a condition variable with no waiters.
 * Context: any thread.
 * Ownership: on success *out is a new cond the caller owns and frees with
 * urt_cond_destroy.
 * Returns 0, -EINVAL (out NULL), -ENOMEM.
 */
URT_API int  urt_cond_create(urt_cond **out);
/*
 * Free c (NULL: nothing). Nobody may wait on c any more (destroying it with
 * waiters is the caller's bug); a waiter whose wait returned may destroy it.
 * Context: any thread. c is invalid afterwards.
 */
URT_API void urt_cond_destroy(urt_cond *c);
/*
 * Release m (which the caller has locked), wait until c is signalled, and
 * lock m again before returning. The waiter is queued before m is released,
 * so a signal or broadcast made after m is released (by whoever locks m
 * next, or anyone else) wakes it: none is lost.
 * m is locked again on every path that released it, also when the wait
 * ends with -ECANCELED or -ETIMEDOUT: that re-lock is shielded from
 * cancellation and not bounded by urt_op_timeout / urt_deadline, so it
 * always succeeds, possibly after the bound. A waiter that was signalled
 * before it noticed its cancellation or timeout consumed that signal and
 * returns 0 (the cancellation ends its next suspending call); one that gave
 * up while still waiting consumed none.
 * Context: in a task it suspends the task; on a plain thread or inside
 * urt_block_in_place it blocks the thread (no timeout, no cancellation).
 * Returns 0 (woken by a signal or broadcast, or spuriously: re-check the
 * predicate), -ECANCELED (the task was cancelled; a task already cancelled
 * on entry gets it at once, m never released), -ETIMEDOUT (the task's
 * urt_op_timeout or urt_deadline passed), with m held in all three; and,
 * without touching m: -EINVAL (c or m NULL), -EPERM (m not locked, or a
 * worker thread outside a task), -EDEADLK (in a hook).
 */
URT_API int  urt_cond_wait(urt_cond *c, urt_mutex *m);
/*
 * Wake the oldest waiter of c (nothing when none waits: a signal is not
 * stored). Change the predicate with the waiters' mutex held; the signal
 * may be sent with it held or after unlocking it.
 * Context: any thread, in a task or not; never waits.
 * Returns 0, or -EINVAL (c NULL).
 */
URT_API int  urt_cond_signal(urt_cond *c);
/*
 * Wake every waiter of c waiting now (nothing is stored for later ones).
 * Context: any thread, in a task or not; never waits.
 * Returns 0, or -EINVAL (c NULL).
 */
URT_API int  urt_cond_broadcast(urt_cond *c);

/*
 * urt_rwlock: a reader-writer lock that prefers writers. Many readers may
 * hold it at once, a writer alone. A writer that waits stops new readers
 * (they queue behind it), so writers never starve; waiting readers and
 * writers are served in arrival order: writers one by one in FIFO order,
 * and when the head of the queue is a reader, it and every reader queued
 * before the next writer get in together. A waiter that is cancelled or
 * times out while queued takes nothing and lets in whoever it held back
 * (the readers queued behind a writer that gave up). Waiting follows the
 * rules common to urt_mutex, urt_sem and urt_chan above. Like urt_mutex it
 * is not tied to a thread: a task keeps it across suspensions, and the
 * lock does not record who holds it.
 */
typedef struct urt_rwlock urt_rwlock;
/*
 * Create an unlocked rwlock.
 * Context: any thread.
 * Ownership: on success *out is a new rwlock the caller owns and frees with
 * urt_rwlock_destroy.
 * Returns 0, -EINVAL (out NULL), -ENOMEM.
 */
URT_API int  urt_rwlock_create(urt_rwlock **out);
/*
 * Free l (NULL: nothing). Nobody may hold it or wait on it any more
 * (destroying it with waiters is the caller's bug).
 * Context: any thread. l is invalid afterwards.
 */
URT_API void urt_rwlock_destroy(urt_rwlock *l);
/*
 * Lock l for reading (shared) / for writing (exclusive), waiting while it
 * is not free for that. rdlock waits while a writer holds l or anyone is
 * queued (a waiting writer); wrlock waits while anyone holds it or is
 * queued.
 * Context: in a task it suspends the task (urt_op_timeout and urt_deadline
 * apply); on a plain thread or inside urt_block_in_place it blocks.
 * Returns 0 (held), -ECANCELED, -ETIMEDOUT (not held; as for urt_mutex, a
 * waiter let in before it noticed returns 0 instead), -EAGAIN (rdlock:
 * INT_MAX readers hold it already), -EPERM / -EDEADLK (on a worker thread
 * outside a task / in a hook, where it would have to wait), -EINVAL (l NULL).
 */
URT_API int  urt_rwlock_rdlock(urt_rwlock *l);
URT_API int  urt_rwlock_wrlock(urt_rwlock *l);
/*
 * As rdlock / wrlock, but never wait: -EBUSY where they would wait.
 * Context: any thread.
 * Returns 0 (held), -EBUSY, -EAGAIN (try_rdlock: INT_MAX readers), -EINVAL.
 */
URT_API int  urt_rwlock_try_rdlock(urt_rwlock *l);
URT_API int  urt_rwlock_try_wrlock(urt_rwlock *l);
/*
 * Release l: the writer's hold if a writer holds it, else one reader's;
 * then let in the waiters that may now enter. The caller must hold l (the
 * lock does not check that it is the caller who does).
 * Context: any thread, in a task or not; never waits.
 * Returns 0, -EPERM (nobody holds l), -EINVAL (l NULL).
 */
URT_API int  urt_rwlock_unlock(urt_rwlock *l);


/* ---- Runtime metrics (runtime/metrics.c) ----------------------------------- */

/* Runtime-wide totals. Each field is read atomically while the runtime
 * runs, but the set is not one snapshot. */
typedef struct urt_metrics {
    uint64_t workers;
    uint64_t live_tasks;               /* spawned and not yet ended (fibers and blocking jobs) */
    uint64_t spawned_total, completed_total;   /* since create; spawned - completed == live when quiet */
    uint64_t blocking_threads;         /* blocking-pool threads alive */
    uint64_t blocking_idle;            /* of those, waiting for work */
    uint64_t blocking_queued;          /* blocking jobs and block_in_place calls waiting for a thread */
    uint64_t inject_queued;            /* tasks in the shared (inject) queue */
    uint64_t hibernated_tasks;         /* tasks whose stack is hibernated now (see
                                          urt_config.hibernate_after_ns) */
    uint64_t stack_bytes_resident;     /* task stacks' touched pages, in use or cached, by mincore(2)
                                          over the runtime's stack mappings */
} urt_metrics;

/*
 * Fill *out with rt's totals. Reading them costs a pass over rt's internal
 * shards and a mincore(2) per task stack mapping: for monitoring, not for
 * every request.
 * Context: any thread, until urt_runtime_destroy (also after shutdown).
 * Ownership: out is the caller's.
 * Returns 0, or -EINVAL (rt or out NULL).
 */
URT_API int urt_runtime_metrics(urt_runtime *rt, urt_metrics *out);

/*
 * urt_spawn_blocking with options. Of urt_spawn_opts only `name` (shown in
 * task dumps) and `on_drop` (called when the job is cancelled before a
 * thread takes it, or the runtime shuts down first) apply; `stack_size`
 * must be 0 and `flags` 0 (a job runs on a pool thread's own stack, wherever
 * the pool puts it), else -EINVAL. opts may be NULL.
 * Context, ownership and returns as for urt_spawn_blocking.
 */
URT_API int urt_spawn_blocking_ex(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg,
                                  const urt_spawn_opts *opts);


#ifdef __cplusplus
}
#endif
#endif /* URT_H */
