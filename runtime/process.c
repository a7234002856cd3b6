/*
 * process.c - child processes: urt_process_spawn starts one, and
 * urt_process_wait waits for it to end while suspending only the task.
 *
 * Spawning. posix_spawn (a vfork-like clone, then exec) with two attributes
 * that matter here: POSIX_SPAWN_SETSIGMASK with an empty mask and
 * POSIX_SPAWN_SETSIGDEF with every catchable signal. Worker threads block
 * HUP/INT/QUIT/PIPE/TERM and pool threads block everything (runtime.c,
 * blocking.c); a child inherits its parent thread's mask and its ignored
 * dispositions across exec, so without them a `sleep` started from a task
 * would ignore SIGTERM. The spawn holds the calling thread only until the
 * child has exec'd, so it runs where it is called; no ring op is involved.
 *
 * Waiting, in a task (through op.h, so time bounds, cancellation and the
 * task dump work as for every ring op):
 *   - IORING_OP_WAITID (Linux 6.7+; probed with op_have): one SQE,
 *     waitid(P_PID, pid, WEXITED) done by the kernel. The kernel writes the
 *     child's siginfo into our memory when the child ends, possibly long
 *     after the SQE was submitted: the siginfo lives in urt_process_wait's
 *     frame, which op_wait keeps alive until the op's CQE is in (the task
 *     is runnable only through that CQE). Since the kernel writes into the
 *     task's stack, this wait must never be one whose stack is hibernated
 *     (plain op_wait: hibernate.c); the pidfd wait below may be. A cancel or timeout ends the op without reaping the
 *     child.
 *   - else: a pidfd of the child (pidfd_open), a non-blocking
 *     waitid(P_PIDFD, WNOHANG) to reap it if it has already ended, and a
 *     one-shot POLL_ADD on the pidfd (readable once the child has ended),
 *     then the waitid again. Waiting by pidfd, not by pid, cannot reap a
 *     different process that reused the number.
 * Both give a siginfo, turned into waitpid's status word. On a plain thread
 * (a blocking job) and inside urt_block_in_place the wait is waitpid(2).
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "runtime/op.h"

extern char **environ;

/* What liburing 2.3 lacks: IORING_OP_WAITID (Linux 6.7) has number 50 in
 * the kernel's enum io_uring_op, and no prep helper. The SQE fields, as the
 * kernel reads them: fd = the id, len = the idtype, file_index = waitid's
 * options, addr2 = the siginfo_t to fill; addr, buf_index, addr3 and the op
 * flags must be 0 (io_uring_prep_rw clears them). Named here rather than
 * after the kernel's enumerator so a newer liburing header cannot clash. */
#define PROC_OP_WAITID 50u

static inline void prep_waitid(struct io_uring_sqe *sqe, idtype_t idtype, id_t id, siginfo_t *info, int options)
{
    io_uring_prep_rw((int)PROC_OP_WAITID, sqe, (int)id, NULL, (unsigned)idtype, (uint64_t)(uintptr_t)info);
    sqe->file_index = (uint32_t)options;
}

#ifndef P_PIDFD
#define P_PIDFD 3   /* waitid on a pidfd (Linux 5.4); glibc before 2.36 lacks the name */
#endif

int urt_process_spawn(pid_t *pid, const char *path, char *const argv[], char *const envp[],
                      const posix_spawn_file_actions_t *actions)
{
    if (!pid || !path || !argv)
        return -EINVAL;
    posix_spawnattr_t attr;
    int r = posix_spawnattr_init(&attr);
    if (r)
        return -r;
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    sigdelset(&all, SIGKILL);   /* their action cannot be changed anyway */
    sigdelset(&all, SIGSTOP);
    r = posix_spawnattr_setsigmask(&attr, &none);
    if (!r)
        r = posix_spawnattr_setsigdefault(&attr, &all);
    if (!r)
        r = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t child = 0;
    if (!r)
        r = posix_spawn(&child, path, actions, &attr, argv, envp ? envp : environ);
    posix_spawnattr_destroy(&attr);
    if (r)
        return -r;
    *pid = child;
    return 0;
}

/* waitpid's status word from the siginfo of an ended child */
static int status_of(const siginfo_t *si)
{
    switch (si->si_code) {
    case CLD_EXITED:
        return (si->si_status & 0xff) << 8;
    case CLD_DUMPED:
        return (si->si_status & 0x7f) | 0x80;
    default:   /* CLD_KILLED: WEXITED asks for nothing else */
        return si->si_status & 0x7f;
    }
}

static int wait_plain(pid_t pid, int *status)
{
    int st = 0;
    pid_t r;
    do
        r = waitpid(pid, &st, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    if (status)
        *status = st;
    return 0;
}

/* The fallback: poll a pidfd of the child until it has ended, then reap it. */
static int wait_pidfd(urt_task *t, pid_t pid, siginfo_t *si)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return errno == ESRCH ? -ECHILD : -errno;   /* ESRCH: no such process at all */
    int r;
    for (;;) {
        memset(si, 0, sizeof(*si));
        if (waitid((idtype_t)P_PIDFD, (id_t)pfd, si, WEXITED | WNOHANG) < 0) {
            r = -errno;
            if (r == -EINTR)
                continue;
            break;   /* -ECHILD: not our child, or another waiter reaped it */
        }
        if (si->si_pid != 0) {
            r = 0;   /* reaped */
            break;
        }
        struct io_uring_sqe *sqe = op_sqe(t, true);
        if (!sqe) {
            r = -EBUSY;
            break;
        }
        io_uring_prep_poll_add(sqe, pfd, POLLIN);
        r = op_wait_mem(t, &t->op, sqe, "pidfd", -1, NULL, 0);   /* no memory: it may hibernate */
        if (r < 0)
            break;   /* -ECANCELED, -ETIMEDOUT: the child stays unreaped */
    }
    close(pfd);   /* no op is pending on it any more */
    return r;
}

int urt_process_wait(pid_t pid, int *status)
{
    if (pid <= 0)
        return -EINVAL;
    int err = 0;
    urt_task *t = io_task(&err);
    if (!t)
        return err == IO_PLAIN || err == -EPERM ? wait_plain(pid, status) : err;
    siginfo_t si;   /* written by the kernel until the op's CQE: stays in this frame */
    memset(&si, 0, sizeof(si));
    int r;
    if (op_have(PROC_OP_WAITID)) {
        struct io_uring_sqe *sqe = op_sqe(t, true);
        if (!sqe)
            return -EBUSY;
        prep_waitid(sqe, P_PID, (id_t)pid, &si, WEXITED);
        r = op_wait(t, &t->op, sqe, "waitid", -1);   /* si is in this frame: never hibernates */
    } else {
        r = wait_pidfd(t, pid, &si);
    }
    if (r < 0)
        return r;
    if (status)
        *status = status_of(&si);
    return 0;
}
