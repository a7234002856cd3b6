/*
 * op.h - how a urt call becomes one SQE on the calling task's worker ring
 * and waits for its CQE (op.c). Every family of calls (io.c, sock.c, fs.c,
 * process.c ...) goes through these, so submit, wait, time bounds and
 * cancellation behave the same in all of them.
 *
 * A call is:
 *     IO_PROLOGUE(plain syscall expression);   // t, op, sqe in scope
 *     io_uring_prep_xxx(sqe, ...);
 *     return op_wait(t, op, sqe, "what", fd);
 * op is the task's own record, t->op (in the header, not on the stack: the
 * CQE handler writes it, and a wait that writes no stack memory may
 * hibernate). A task has one op in flight at a time. op_wait_mem instead of
 * op_wait says which memory the kernel reads or writes after submission:
 * where none of it lies in the task's stack, the wait may hibernate.
 * IO_PROLOGUE returns early with -EDEADLK (in a hook), -EPERM (no task),
 * -ECANCELED (cancelled), -ETIMEDOUT (the task's deadline has passed),
 * -EBUSY (no SQE), or runs the plain syscall inside urt_block_in_place.
 */
#ifndef URT_RUNTIME_OP_H
#define URT_RUNTIME_OP_H

#include <errno.h>

#include "runtime/runtime.h"

#define IO_MAX 0x7ffff000u   /* MAX_RW_COUNT: the most one read/write/recv/send moves */

/* Lengths above what the kernel moves in one call are clamped, the same way
 * in every call and on every path (never truncated to 32 bits). */
static inline size_t io_len(size_t len) { return len > IO_MAX ? IO_MAX : len; }

#define IO_PLAIN 1   /* io_task's *err: run the plain syscall instead */

/* The current task, if it may start a ring op now; else NULL and *err says
 * why (IO_PLAIN inside urt_block_in_place, or -errno). */
urt_task *io_task(int *err);

/* An SQE for an op that honours the task's time bounds (`timed`), with room
 * for its linked timeout; NULL when the ring cannot give them (-EBUSY). */
struct io_uring_sqe *op_sqe(urt_task *t, bool timed);

/* op_wait_ex's flags */
#define OP_TIMED 0x1u   /* the task's time bounds apply (its bound timer, or a LINK_TIMEOUT for a
                           migratable task, at the earlier) */
#define OP_HIB   0x2u   /* the wait may hibernate: nothing the kernel reads or writes
                           after submission lies in the task's stack */

/* Submit the op prepared in sqe and suspend until it ends; returns its
 * result: -ECANCELED after a cancel, -ETIMEDOUT when the bound (op timeout
 * or deadline, the earlier, for an OP_TIMED op) fired. A result that raced
 * the cancel is returned, not lost. fd (or -1) is counted for urt_close.
 * op is t->op (a record elsewhere is allowed but never hibernates). What
 * the kernel reads stays valid: the caller's frame lives until this
 * returns, and nothing still unsubmitted is hibernated (hibernate.c). */
int op_wait_ex(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd, unsigned flags);
static inline int op_wait(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd)
{
    return op_wait_ex(t, op, sqe, what, fd, OP_TIMED);
}

/* op_wait for an op whose only user memory touched after submission is
 * [p, p + n) (n == 0: none besides the record): it may hibernate when that
 * lies outside the task's stack. */
static inline int op_wait_mem(urt_task *t, ring_op *op, struct io_uring_sqe *sqe, const char *what, int fd,
                              const void *p, size_t n)
{
    bool off = !p || !task_stack_holds(t, p, n);
    return op_wait_ex(t, op, sqe, what, fd, OP_TIMED | (off ? OP_HIB : 0));
}

/* Does the calling worker's ring have the opcode? (False: use the call's
 * syscall fallback; see ring_has_op.) Only with a task from io_task. */
static inline bool op_have(unsigned opcode) { return ring_has_op(&urt__cur_worker()->ring, opcode); }

/* The common entry of a call: plain syscall inside block_in_place, -errno
 * where no op can start, else t, op and sqe in scope. */
#define IO_PROLOGUE(plain)                          \
    int err_ = 0;                                   \
    urt_task *t = io_task(&err_);                   \
    if (!t) {                                       \
        if (err_ == IO_PLAIN) {                     \
            ssize_t r_ = (plain);                   \
            return r_ < 0 ? -errno : r_;            \
        }                                           \
        return err_;                                \
    }                                               \
    ring_op *op = &t->op;                           \
    struct io_uring_sqe *sqe = op_sqe(t, true);     \
    if (!sqe)                                       \
        return -EBUSY;

#endif /* URT_RUNTIME_OP_H */
