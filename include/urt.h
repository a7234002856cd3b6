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
 *  - No urt call is async-signal-safe.
 */
#ifndef URT_H
#define URT_H

#include <stdbool.h>
#include <stddef.h>
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

/* "MAJOR.MINOR.PATCH" of the library actually loaded. */
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
    unsigned ring_entries;          /* SQ entries; 0: library default (256) */
    size_t   stack_size;            /* task stack; 0: default (256 KiB virtual); 16 KiB .. 1 GiB */
    unsigned event_interval;        /* 0: default (61) */
    unsigned global_queue_interval; /* 0: adaptive (aims at 200 us between inject checks) */
    unsigned max_blocking_threads;  /* 0: default (512) */
    unsigned flags;                 /* URT_CONFIG_* bits */
    void (*on_task_spawn)(urt_task *t, void *data);     /* hooks, may be NULL */
    void (*on_task_terminate)(urt_task *t, void *data);
    void *hook_data;
    unsigned spin_us;               /* spin this long before parking; 0: default (0 = no spin
                                       beyond a few re-checks); URT_SPIN_NONE for none */
    unsigned rx_buffers;            /* provided buffers per worker for urt_rx; 0: 1024 (power of two) */
    unsigned rx_buffer_size;        /* bytes each; 0: 4096 */
    uint64_t watchdog_ns;           /* a worker stuck in one task this long counts as a stall;
                                       0: default (1 s); UINT64_MAX: no watchdog */
} urt_config;

#define URT_SPIN_NONE 0xffffffffu

/*
 * Create a runtime and start its worker threads. cfg NULL: defaults.
 * Each worker creates its ring on its own thread. Errors: -EINVAL (bad cfg),
 * -ENOSYS (no io_uring in this kernel), -EPERM (io_uring disabled by sysctl
 * or blocked by seccomp), -ENOMEM (RLIMIT_MEMLOCK or memory), -EAGAIN
 * (threads). *out is set only on success.
 */
URT_API int urt_runtime_create(urt_runtime **out, const urt_config *cfg);

/*
 * Run fn(arg) as a task and block the calling thread until it ends; *ret
 * (may be NULL) gets its return value. Must not be called from a worker
 * thread (-EDEADLK). -ESHUTDOWN once shutdown started.
 */
URT_API int urt_runtime_block_on(urt_runtime *rt, urt_fn fn, void *arg, void **ret);

/*
 * Wait up to grace_ns for every task to end by itself, then cancel the rest,
 * wait for them to unwind, and stop the workers. New spawns fail with
 * -ESHUTDOWN from the moment this is called. Returns 0, or -ETIMEDOUT when
 * some task ignored cancellation for 5 s (its worker and stack are leaked
 * and reported on stderr). Idempotent. -EDEADLK from a worker thread.
 */
URT_API int urt_runtime_shutdown(urt_runtime *rt, uint64_t grace_ns);

/* shutdown(rt, 0) if needed, then free everything. Not from a worker thread. */
URT_API void urt_runtime_destroy(urt_runtime *rt);

/* ------------------------------------------------------------------------ */
/* Tasks                                                                      */
/* ------------------------------------------------------------------------ */

#define URT_TASK_MIGRATABLE 0x1u

typedef struct urt_spawn_opts {
    const char *name;     /* shown in task dumps; copied (up to 31 bytes) */
    size_t stack_size;    /* 0: runtime default; at most 1 GiB */
    unsigned flags;       /* URT_TASK_* */
} urt_spawn_opts;

/*
 * Spawn fn(arg) as a task. rt NULL: the runtime of the calling task.
 * t NULL: detached; else *t is a handle the caller must urt_join or
 * urt_detach. Any thread may call this. Errors: -EINVAL, -ESHUTDOWN, -ENOMEM.
 */
URT_API int urt_spawn(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg);
URT_API int urt_spawn_ex(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg,
                         const urt_spawn_opts *opts);

/*
 * Wait for t to end. In a task: suspends; on any other thread: blocks.
 * On 0, *ret (may be NULL) is fn's return value and t is consumed.
 * If t was cancelled, returns -ECANCELED and t is consumed; *ret is fn's
 * return value if fn ran to the end, NULL if it never started.
 * If the *joiner* is cancelled (or its urt_op_timeout expires), returns
 * -ECANCELED (-ETIMEDOUT) and t stays owned by the caller.
 * -EDEADLK: joining yourself, or a blocking join from a worker thread.
 */
URT_API int  urt_join(urt_task *t, void **ret);
/* Ask t to stop: its pending and future suspending calls return -ECANCELED. */
URT_API int  urt_cancel(urt_task *t);
/* Give up the handle; the task runs on and is freed when it ends. */
URT_API void urt_detach(urt_task *t);
/* Let other tasks run; the caller runs again after I/O has been polled. */
URT_API void urt_yield(void);
/* Sleep at least ns nanoseconds. 0, -ECANCELED, or -EPERM outside a task. */
URT_API int  urt_sleep(uint64_t ns);
URT_API bool urt_cancelled(void);
URT_API urt_runtime *urt_current(void);
URT_API int  urt_worker_id(void);
/* Task id of the calling task (0 outside a task) and of a handle. */
URT_API uint64_t urt_task_id(const urt_task *t);
URT_API uint64_t urt_self_id(void);
/*
 * Per-task timeout (0: none) for each following suspending call: the I/O
 * ops, urt_rx_recv, urt_join and urt_notify_wait (not urt_sleep, not
 * urt_listener_accept). A call that runs out returns -ETIMEDOUT. Returns
 * the previous value, which the caller restores.
 */
URT_API uint64_t urt_op_timeout(uint64_t ns);
/* While on, cancellation is held back; returns the old value. */
URT_API bool urt_cancel_shield(bool on);
URT_API uint64_t urt_now(void);

/* ------------------------------------------------------------------------ */
/* Blocking work                                                              */
/* ------------------------------------------------------------------------ */

/*
 * Run fn(arg) on a thread of the blocking pool (at most
 * max_blocking_threads at once; the rest wait in FIFO order). *t as for
 * urt_spawn (NULL: detached). Any thread may call this.
 */
URT_API int urt_spawn_blocking(urt_runtime *rt, urt_task **t, urt_fn fn, void *arg);

/*
 * Run fn(arg) on the calling task's stack on a blocking thread, so the
 * worker goes on running other tasks; then resume on the home worker.
 * Inside fn, urt I/O and sleep calls are plain blocking syscalls. Nested
 * calls run inline. Outside a task, fn runs inline. *ret may be NULL.
 */
URT_API int urt_block_in_place(urt_fn fn, void *arg, void **ret);

/* ------------------------------------------------------------------------ */
/* I/O (inside a task; results as the syscall's, or -errno)                   */
/* ------------------------------------------------------------------------ */

URT_API int     urt_accept(int fd, struct sockaddr *addr, socklen_t *len, int flags);
URT_API int     urt_connect(int fd, const struct sockaddr *addr, socklen_t len);
URT_API ssize_t urt_recv(int fd, void *buf, size_t len, int flags);
URT_API ssize_t urt_send(int fd, const void *buf, size_t len, int flags);
URT_API ssize_t urt_read(int fd, void *buf, size_t len, int64_t off);   /* off -1: current position */
URT_API ssize_t urt_write(int fd, const void *buf, size_t len, int64_t off);
/* Cancels the fd's pending ops on the caller's ring first, then closes; works in a cancelled task. */
URT_API int     urt_close(int fd);

/* Send all len bytes (finishing short writes). Returns len, or -errno with
 * nothing said about how much was sent. */
URT_API ssize_t urt_send_all(int fd, const void *buf, size_t len, int flags);
URT_API int     urt_shutdown(int fd, int how);

/* ---- Servers: multishot accept, and receive into pooled buffers ---------- */

/*
 * A listener accepts with one multishot accept armed on the ring of the
 * worker that opened it (re-armed whenever the kernel ends it). Accepted fds
 * queue in the listener until urt_listener_accept takes them; when 64 are
 * waiting the accept pauses (the kernel's backlog holds the rest) and
 * resumes as they are taken. Use it from
 * the task that opened it. listen_fd must be bound and listening; it is not
 * closed by urt_listener_close. flags: SOCK_CLOEXEC / SOCK_NONBLOCK for the
 * accepted sockets.
 */
typedef struct urt_listener urt_listener;
URT_API int urt_listener_open(urt_listener **out, int listen_fd, int flags);
/* Next connection: fd >= 0, or -errno (-ECANCELED; -EMFILE/-ENFILE when out
 * of descriptors: the caller may back off and call again). Suspends. */
URT_API int urt_listener_accept(urt_listener *l);
/* Cancel the multishot accept, close queued fds nobody took, free l. */
URT_API int urt_listener_close(urt_listener *l);

/*
 * Pooled receive: a multishot recv on fd that takes buffers from a ring of
 * provided buffers owned by the calling task's worker (config rx_buffers x
 * rx_buffer_size). An idle connection holds no buffer. Each received chunk
 * comes as a urt_buf that the caller owns until urt_buf_release, which gives
 * the buffer back to its ring (released on another thread, it travels home).
 * At most URT_RX_MAX_HELD buffers are held per urt_rx (queued + handed out):
 * past that the receive pauses until the caller releases some, so one peer
 * that floods cannot drain the ring for the others (data already waiting
 * in the socket when the receive is armed can overshoot the cap: the kernel
 * takes what is there in one go). Use an urt_rx from the task that opened it.
 */
#define URT_RX_MAX_HELD 4
typedef struct urt_rx urt_rx;
typedef struct urt_buf {
    void *data;          /* the bytes received; valid until urt_buf_release */
    size_t len;
    void *_rx;           /* private */
    uint32_t _bid;       /* private */
} urt_buf;
URT_API int     urt_rx_open(urt_rx **out, int fd);
/* > 0: bytes in *buf (release it); 0: the peer closed; -errno (-ECANCELED,
 * -ETIMEDOUT under urt_op_timeout, -ECONNRESET ...). Suspends. */
URT_API ssize_t urt_rx_recv(urt_rx *rx, urt_buf *buf);
URT_API void    urt_buf_release(urt_buf *buf);
/* Cancel the receive, give back queued buffers, free rx. Does not close fd. */
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
URT_API int  urt_notify_create(urt_notify **out);
/* Nobody may wait on n any more; a waiter whose wait returned 0 may destroy it. */
URT_API void urt_notify_destroy(urt_notify *n);
/* Any thread. */
URT_API int  urt_notify_signal(urt_notify *n);
/* 0, -ECANCELED (the waiting task was cancelled; no permit is consumed),
 * -ETIMEDOUT (the task's urt_op_timeout passed), -EINVAL; -EPERM on a
 * worker thread outside a task. */
URT_API int  urt_notify_wait(urt_notify *n);
/* Take the permit if it is there: 0, or -EAGAIN. */
URT_API int  urt_notify_try_wait(urt_notify *n);

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
} urt_worker_stats;

/* Fill up to n entries of out; returns the number of workers. */
URT_API int urt_runtime_stats(urt_runtime *rt, urt_worker_stats *out, unsigned n);
/* Write one line per live task (id, name, home worker, state, op + fd it waits on) to fd. */
URT_API int urt_runtime_dump(urt_runtime *rt, int fd);

#ifdef __cplusplus
}
#endif
#endif /* URT_H */
