/*
 * ring.h - one worker's io_uring ring: setup with feature probing, SQE
 * batching, CQE dispatch by tagged user_data, MSG_RING doorbells.
 *
 * This layer never names a task. An operation is a `ring_op` record that the
 * caller keeps alive until its CQE arrives; the CQE fills the record and the
 * layer calls back into its user (`ring_handlers`).
 *
 * user_data layout (64 bits):
 *   bits  0..2   tag (RING_TAG_*)
 *   bits  3..47  pointer bits of an 8-aligned record (x86-64 / aarch64 user space)
 *   bits 48..63  generation of the op record, so a cancel never hits a newer
 *                op that reuses the same address
 * For RING_TAG_BELL / RING_TAG_BELL_FAIL the pointer bits carry a worker index.
 */
#ifndef URT_URING_RING_H
#define URT_URING_RING_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

/* what liburing 2.3's header may lack */
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_SETUP_DEFER_TASKRUN
#define IORING_SETUP_DEFER_TASKRUN (1U << 13)
#endif
#ifndef IORING_REGISTER_SEND_MSG_RING
#define IORING_REGISTER_SEND_MSG_RING 31
#endif

enum {
    RING_TAG_OP = 0,        /* one-shot op: exactly one CQE, record = ring_op */
    RING_TAG_MULTI = 1,     /* multishot: record (starts with ring_multi) on the heap, freed after the last CQE */
    RING_TAG_IGNORE = 2,    /* linked timeouts, cancel requests */
    RING_TAG_BELL = 3,      /* a doorbell arrived (MSG_RING or eventfd read) */
    RING_TAG_BELL_FAIL = 4, /* our doorbell to worker <index> failed */
    RING_TAG_OP_TIMER = 5,  /* the LINK_TIMEOUT of a one-shot op: record = that op's ring_op */
};
#define RING_TAG_MASK 7ull
#define RING_PTR_MASK 0x0000fffffffffff8ull

typedef struct ring_op {
    int32_t res;            /* CQE result, valid once done */
    uint32_t cflags;        /* CQE flags */
    uint16_t gen;           /* from the ring's counter, set by ring_op_start */
    uint8_t nleft;          /* CQEs still to come: 1, or 2 with a linked timeout */
    bool done;              /* every CQE is in; set by the dispatcher on the owning ring's thread */
    bool cancel_sent;
    bool timer_fired;       /* the linked timeout expired (its CQE said anything but -ECANCELED) */
    void *owner;            /* opaque: the record's user (the runtime's task) */
} ring_op;

/* A multishot record (RING_TAG_MULTI) starts with this: the dispatcher calls
 * its own cqe function for each of its CQEs, so the ring's user needs no
 * table of record kinds. */
typedef struct ring_multi {
    void (*cqe)(struct ring_multi *rec, int32_t res, uint32_t flags);
} ring_multi;

typedef struct ring_handlers {
    void (*op_done)(void *ctx, ring_op *op);
    void (*bell)(void *ctx, int32_t res);
    void (*bell_fail)(void *ctx, unsigned target, int32_t res);
} ring_handlers;

typedef struct urt_ring {
    struct io_uring uring;
    unsigned setup_flags;   /* IORING_SETUP_* the kernel accepted */
    unsigned features;      /* IORING_FEAT_* */
    unsigned pending;       /* SQEs prepared, not yet submitted */
    bool taskrun_flag;      /* IORING_SQ_TASKRUN is set by the kernel when work waits */
    uint16_t gen_next;      /* generations for op records, owner only */
    uint8_t ops[32];        /* IORING_OP_* this kernel has (bitmap, probed at init) */
    /* counters, owner only */
    uint64_t sqes_submitted, enters, cqes_reaped;
} urt_ring;

/* ring_init's `want`: the flags to try first (falls back step by step). */
#define RING_WANT_DEFER 0x1u   /* SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG */
#define RING_WANT_COOP  0x2u   /* COOP_TASKRUN|TASKRUN_FLAG */

/* On the thread that will own the ring. entries: SQ size. 0 or -errno
 * (-ENOSYS, -EPERM, -ENOMEM ...). */
int  ring_init(urt_ring *r, unsigned entries, unsigned want);
void ring_exit(urt_ring *r);
static inline int ring_fd(const urt_ring *r) { return r->uring.ring_fd; }
/* Does the kernel have opcode op? Probed once per ring (io_uring_get_probe_ring);
 * the environment variable URT_RING_NO_OPS (IORING_OP_* numbers, comma
 * separated, or "all") takes opcodes away, to exercise syscall fallbacks.
 * Only calls that have a fallback ask. */
static inline bool ring_has_op(const urt_ring *r, unsigned op)
{
    return op < 256 && ((r->ops[op >> 3] >> (op & 7)) & 1u);
}

static inline uint64_t ring_tag(const void *p, unsigned tag, uint16_t gen)
{
    return (uint64_t)(uintptr_t)p | tag | ((uint64_t)gen << 48);
}
static inline uint64_t ring_op_data(const ring_op *op) { return ring_tag(op, RING_TAG_OP, op->gen); }

/* Get an SQE, submitting what is queued when the SQ is full. Never NULL
 * unless the ring is broken. */
struct io_uring_sqe *ring_sqe_slow(urt_ring *r);
static inline struct io_uring_sqe *ring_sqe(urt_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (__builtin_expect(sqe == NULL, 0))
        sqe = ring_sqe_slow(r);
    if (sqe)
        r->pending++;
    return sqe;
}
/* Make room for n SQEs at once (a linked pair must not be split by a flush).
 * False when the ring cannot give n (the caller reports -EBUSY). */
bool ring_reserve(urt_ring *r, unsigned n);

/* Prepare op for a new submission: a fresh generation (from the ring, so a
 * stale cancel never matches a later op at the same address), one CQE to
 * come, nothing done. */
static inline void ring_op_start(urt_ring *r, ring_op *op, void *owner)
{
    op->gen = ++r->gen_next;
    op->nleft = 1;
    op->done = false;
    op->cancel_sent = false;
    op->timer_fired = false;
    op->owner = owner;
}

/* Link a timeout of ts (IORING_TIMEOUT_* flags: relative, or absolute) to the SQE just prepared for op (which
 * gets IOSQE_IO_LINK): its CQE is counted into op, so op is done only when
 * both are in, and op->timer_fired tells whether the timeout expired. The
 * caller reserved the second SQE. */
void ring_link_timeout(urt_ring *r, ring_op *op, struct io_uring_sqe *op_sqe, struct __kernel_timespec *ts,
                       unsigned flags);

/* Submit what is pending (no syscall when nothing is). Returns submitted or -errno. */
int  ring_submit(urt_ring *r);
/* One enter that submits what is pending and runs the kernel's deferred task
 * work (GETEVENTS, no wait), so every completion it holds reaches the CQ.
 * Returns submitted or -errno. */
int  ring_get_events(urt_ring *r);
/* Submit and wait for at least one CQE, at most timeout_ns (0: no timeout):
 * one enter that submits, runs task work, reaps and sleeps. */
int  ring_submit_and_wait(urt_ring *r, uint64_t timeout_ns);
/* Is there anything to reap, or kernel work that needs an enter to post? */
static inline bool ring_cq_ready(urt_ring *r)
{
    return io_uring_cq_ready(&r->uring) != 0;
}
static inline bool ring_needs_enter(urt_ring *r)
{
    return r->taskrun_flag && (IO_URING_READ_ONCE(*r->uring.sq.kflags) & IORING_SQ_TASKRUN);
}
/* Dispatch every CQE already in the CQ (never enters: completions the kernel
 * still holds as task work need ring_get_events or a wait first). Returns
 * the number reaped. */
unsigned ring_reap(urt_ring *r, const ring_handlers *h, void *ctx);

/* Queue a cancel of the op (matched by user_data, generation included). */
void ring_cancel_op(urt_ring *r, ring_op *op);
/* Queue a cancel of whatever carries exactly this user_data (multishot records). */
void ring_cancel_data(urt_ring *r, uint64_t user_data);
/* Queue a cancel of every op on fd. */
void ring_cancel_fd(urt_ring *r, int fd);

/* Provided-buffer ring: nbufs (power of two) buffers of size bytes at mem,
 * registered as group bgid, with buffers 0 .. stocked - 1 given to the
 * kernel (the caller keeps the others and gives them with ring_bufs_put).
 * 0 or -errno. */
typedef struct ring_bufs {
    struct io_uring_buf_ring *br;
    size_t br_bytes;
    char *mem;
    unsigned nbufs, size, mask;
    uint16_t bgid;
} ring_bufs;
int  ring_bufs_init(urt_ring *r, ring_bufs *b, unsigned nbufs, unsigned size, uint16_t bgid, unsigned stocked);
void ring_bufs_fini(urt_ring *r, ring_bufs *b);
/* Give buffer bid back to the kernel (owner thread). */
static inline void ring_bufs_put(ring_bufs *b, unsigned bid)
{
    io_uring_buf_ring_add(b->br, b->mem + (size_t)bid * b->size, b->size, (unsigned short)bid, (int)b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}
static inline void *ring_bufs_addr(ring_bufs *b, unsigned bid) { return b->mem + (size_t)bid * b->size; }

/* Doorbell to another ring: queue a MSG_RING carrying (RING_TAG_BELL, res)
 * and submit at once. A failure comes back on this ring as RING_TAG_BELL_FAIL
 * naming `target_index`. Returns 0 or -errno from the submit. */
int  ring_bell(urt_ring *r, int target_fd, unsigned target_index);
/* Doorbell from a thread with no ring (kernel 6.13+). 0 or -errno. */
int  ring_bell_ringless(int target_fd);
/* Does this kernel take ring-less MSG_RING? (probed once) */
bool ring_ringless_supported(void);

#endif /* URT_URING_RING_H */
