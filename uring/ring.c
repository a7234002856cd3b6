/*
 * ring.c - per-worker ring setup, submission and CQE dispatch.
 *
 * Setup tries, in order, the flags the caller wants and falls back cleanly:
 *   1. SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG   (task work runs only when
 *      we enter; the kernel raises IORING_SQ_TASKRUN when some is waiting)
 *   2. COOP_TASKRUN | TASKRUN_FLAG
 *   3. no flags
 * each with a CQ four times the SQ (at most 65536) and SUBMIT_ALL. The ring
 * must be created on its owner's thread: with SINGLE_ISSUER the creator is
 * the only thread allowed to submit or, with DEFER_TASKRUN, to wait.
 *
 * Enters: every io_uring_enter this layer makes is one of three calls, and
 * its user decides when each is worth a syscall:
 *   ring_submit           hand the queued SQEs to the kernel (nothing queued:
 *                         no syscall)
 *   ring_get_events       submit what is queued AND run the kernel's pending
 *                         task work (IORING_ENTER_GETEVENTS, no wait), so the
 *                         completions it holds are posted to the CQ
 *   ring_submit_and_wait  the same, then sleep until a CQE (or the timeout)
 * ring_reap never enters: it only walks what is already in the CQ.
 *
 * Dispatch: ring_reap walks the CQ once, decodes each user_data tag and calls
 * the owner's handlers; the CQ head is advanced after the walk, so handlers
 * may queue new SQEs (never wait) while it runs.
 */
#include "uring/ring.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static int try_setup(urt_ring *r, unsigned entries, unsigned flags)
{
    struct io_uring_params p;
    memset(&p, 0, sizeof(p));
    unsigned cq = entries * 4;
    if (cq > 65536)
        cq = 65536;
    p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = cq;
    int ret = io_uring_queue_init_params(entries, &r->uring, &p);
    if (ret == 0) {
        r->setup_flags = flags;
        r->features = p.features;
    }
    return ret;
}

/* Which opcodes this kernel has, once per ring. URT_RING_NO_OPS takes
 * opcodes away (a comma-separated list of IORING_OP_* numbers, or "all"), so
 * tests and users can run the syscall fallbacks on a kernel that has them. */
static void probe_ops(urt_ring *r)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->uring);
    if (p) {
        for (unsigned i = 0; i <= p->last_op && i < 256u; i++)
            if (p->ops[i].flags & IO_URING_OP_SUPPORTED)
                r->ops[i >> 3] |= (uint8_t)(1u << (i & 7));
        io_uring_free_probe(p);
    }
    const char *no = getenv("URT_RING_NO_OPS");
    if (!no || !*no)
        return;
    if (strcmp(no, "all") == 0) {
        memset(r->ops, 0, sizeof(r->ops));
        return;
    }
    for (const char *c = no; *c;) {
        char *end;
        unsigned long op = strtoul(c, &end, 10);
        if (end == c)
            break;
        if (op < 256)
            r->ops[op >> 3] &= (uint8_t)~(1u << (op & 7));
        c = *end == ',' ? end + 1 : end;
    }
}

int ring_init(urt_ring *r, unsigned entries, unsigned want)
{
    memset(r, 0, sizeof(*r));
    if (entries == 0)
        entries = 256;
    static const unsigned defer = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
                                  IORING_SETUP_TASKRUN_FLAG;
    static const unsigned coop = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    int ret = -EINVAL;
    if (want & RING_WANT_DEFER)
        ret = try_setup(r, entries, defer);
    if (ret == -EINVAL && (want & (RING_WANT_DEFER | RING_WANT_COOP)))
        ret = try_setup(r, entries, coop);
    if (ret == -EINVAL)
        ret = try_setup(r, entries, 0);
    if (ret < 0)
        return ret;
    r->taskrun_flag = (r->setup_flags & IORING_SETUP_TASKRUN_FLAG) != 0;
    /* a fork()ed child must not write into our rings */
    io_uring_ring_dontfork(&r->uring);
    /* enter with the registered index instead of the fd: cheaper enters */
    if (io_uring_register_ring_fd(&r->uring) < 0) {
        /* older kernel: plain fd, nothing lost */
    }
    probe_ops(r);
    return 0;
}

void ring_exit(urt_ring *r)
{
    if (r->uring.ring_fd >= 0)
        io_uring_queue_exit(&r->uring);
    r->uring.ring_fd = -1;
}

__attribute__((cold)) struct io_uring_sqe *ring_sqe_slow(urt_ring *r)
{
    for (int i = 0; i < 1000; i++) {
        ring_submit(r);
        struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
        if (sqe)
            return sqe;
        /* the kernel did not consume the SQ (it cannot fail with SUBMIT_ALL
         * unless memory is short): give it a moment */
        sched_yield();
    }
    return NULL;
}

bool ring_reserve(urt_ring *r, unsigned n)
{
    if (io_uring_sq_space_left(&r->uring) < n)
        ring_submit(r);
    return io_uring_sq_space_left(&r->uring) >= n;
}

void ring_link_timeout(urt_ring *r, ring_op *op, struct io_uring_sqe *op_sqe, struct __kernel_timespec *ts,
                       unsigned flags)
{
    op_sqe->flags |= IOSQE_IO_LINK;
    struct io_uring_sqe *tsqe = ring_sqe(r);   /* reserved: never NULL, never a flush between */
    io_uring_prep_link_timeout(tsqe, ts, flags);
    io_uring_sqe_set_data64(tsqe, ring_tag(op, RING_TAG_OP_TIMER, op->gen));
    op->nleft++;
}

/* ret SQEs went to the kernel */
static void submitted(urt_ring *r, int ret)
{
    if (ret > 0) {
        r->sqes_submitted += (unsigned)ret;
        r->pending = r->pending > (unsigned)ret ? r->pending - (unsigned)ret : 0;
    }
}

int ring_submit(urt_ring *r)
{
    if (r->pending == 0)
        return 0;
    int ret = io_uring_submit(&r->uring);
    r->enters++;
    submitted(r, ret);
    return ret;
}

int ring_get_events(urt_ring *r)
{
    /* one io_uring_enter(to_submit = queued, GETEVENTS, min_complete = 0):
     * the kernel submits, then runs the deferred task work that posts CQEs */
    int ret = io_uring_submit_and_get_events(&r->uring);
    r->enters++;
    submitted(r, ret);
    return ret;
}

int ring_submit_and_wait(urt_ring *r, uint64_t timeout_ns)
{
    struct io_uring_cqe *cqe = NULL;
    unsigned pending = r->pending;
    int ret;
    r->enters++;
    if (timeout_ns) {
        struct __kernel_timespec ts = {
            .tv_sec = (long long)(timeout_ns / 1000000000u),
            .tv_nsec = (long long)(timeout_ns % 1000000000u),
        };
        ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, &ts, NULL);
    } else {
        ret = io_uring_submit_and_wait(&r->uring, 1);
    }
    /* Either way every queued SQE was handed to the kernel (SUBMIT_ALL). */
    if (ret >= 0 || ret == -ETIME || ret == -EINTR) {
        r->sqes_submitted += pending;
        r->pending = 0;
    }
    return ret;
}

unsigned ring_reap(urt_ring *r, const ring_handlers *h, void *ctx)
{
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    unsigned ready = io_uring_cq_ready(&r->uring);
    io_uring_for_each_cqe(&r->uring, head, cqe) {
        uint64_t ud = cqe->user_data;
        void *p = (void *)(uintptr_t)(ud & RING_PTR_MASK);
        n++;
        /* the next CQE's record (an op on its fiber's stack, a multishot
         * record on the heap) is likely not in cache: start loading it
         * while this one is handled */
        if (n < ready) {
            const struct io_uring_cqe *next =
                &r->uring.cq.cqes[io_uring_cqe_index(&r->uring, head + 1, r->uring.cq.ring_mask)];
            __builtin_prefetch((const void *)(uintptr_t)(next->user_data & RING_PTR_MASK), 1);
        }
        switch (ud & RING_TAG_MASK) {
        case RING_TAG_OP:
        case RING_TAG_OP_TIMER: {
            ring_op *op = p;
            if (op == NULL)
                break;
            if ((ud & RING_TAG_MASK) == RING_TAG_OP) {
                op->res = cqe->res;
                op->cflags = cqe->flags;
            } else if (cqe->res != -ECANCELED) {
                /* The linked timeout says -ECANCELED when the op ended
                 * first (or both were cancelled); anything else means it
                 * fired: -ETIME, or the result of the kernel's cancel of
                 * the op where it reports that instead (1, a count, for a
                 * WAITID op: measured on 6.18). */
                op->timer_fired = true;
            }
            if (--op->nleft == 0) {
                op->done = true;
                h->op_done(ctx, op);
            }
            break;
        }
        case RING_TAG_MULTI:
            if (p)
                ((ring_multi *)p)->cqe(p, cqe->res, cqe->flags);
            break;
        case RING_TAG_BELL:
            h->bell(ctx, cqe->res);
            break;
        case RING_TAG_BELL_FAIL:
            h->bell_fail(ctx, (unsigned)((ud & RING_PTR_MASK) >> 3), cqe->res);
            break;
        default: /* RING_TAG_IGNORE, liburing's own timeout records */
            break;
        }
    }
    if (n) {
        io_uring_cq_advance(&r->uring, n);
        r->cqes_reaped += n;
    }
    return n;
}

void ring_cancel_op(urt_ring *r, ring_op *op)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, ring_op_data(op), 0);
    /* the cancel's own CQE (0, -ENOENT or -EALREADY) is not interesting:
     * the op's CQE tells what happened */
    io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
    op->cancel_sent = true;
}

void ring_cancel_fd(urt_ring *r, int fd)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return;
    io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
    io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
}

static void prep_bell(struct io_uring_sqe *sqe, int target_fd)
{
    /* target gets user_data = off, res = len */
    io_uring_prep_msg_ring(sqe, target_fd, 0, ring_tag(NULL, RING_TAG_BELL, 0), 0);
}

int ring_bell(urt_ring *r, int target_fd, unsigned target_index)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return -EBUSY;
    prep_bell(sqe, target_fd);
    /* success is silent; a failure CQE names the target so it can be retried */
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, (uint64_t)target_index << 3 | RING_TAG_BELL_FAIL);
    return ring_submit(r);
}

int ring_bell_ringless(int target_fd)
{
    struct io_uring_sqe sqe;
    memset(&sqe, 0, sizeof(sqe));
    prep_bell(&sqe, target_fd);
    long ret = syscall(__NR_io_uring_register, -1, IORING_REGISTER_SEND_MSG_RING, &sqe, 1);
    return ret < 0 ? -errno : 0;
}

static bool ringless_ok;
static pthread_once_t ringless_once = PTHREAD_ONCE_INIT;

static void probe_ringless(void)
{
    struct io_uring ring;
    if (io_uring_queue_init(4, &ring, 0) < 0)
        return;
    if (ring_bell_ringless(ring.ring_fd) == 0) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 100000000};
        if (io_uring_wait_cqe_timeout(&ring, &cqe, &ts) == 0) {
            ringless_ok = (cqe->user_data & RING_TAG_MASK) == RING_TAG_BELL;
            io_uring_cqe_seen(&ring, cqe);
        }
    }
    io_uring_queue_exit(&ring);
}

static void *probe_thread(void *arg)
{
    (void)arg;
    probe_ringless();
    return NULL;
}

/* The probe runs on a thread of its own: tearing down a ring interrupts the
 * next timed wait of the thread that owned it (a spurious EINTR the caller
 * of urt_runtime_create would otherwise see). */
static void probe_once(void)
{
    pthread_t th;
    if (pthread_create(&th, NULL, probe_thread, NULL) == 0)
        pthread_join(th, NULL);
}

bool ring_ringless_supported(void)
{
    pthread_once(&ringless_once, probe_once);
    return ringless_ok;
}

void ring_cancel_data(urt_ring *r, uint64_t user_data)
{
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, user_data, 0);
    io_uring_sqe_set_data64(sqe, ring_tag(NULL, RING_TAG_IGNORE, 0));
}

int ring_bufs_init(urt_ring *r, ring_bufs *b, unsigned nbufs, unsigned size, uint16_t bgid, unsigned stocked)
{
    memset(b, 0, sizeof(*b));
    if (nbufs == 0 || (nbufs & (nbufs - 1)) || nbufs > 32768 || size == 0)
        return -EINVAL;
    b->br_bytes = (sizeof(struct io_uring_buf) * nbufs + 4095) & ~(size_t)4095;
    b->br = mmap(NULL, b->br_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (b->br == MAP_FAILED) {
        b->br = NULL;
        return -ENOMEM;
    }
    /* buffers: only the pages the kernel writes into ever become resident */
    b->mem = mmap(NULL, (size_t)nbufs * size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE | MAP_NORESERVE, -1, 0);
    if (b->mem == MAP_FAILED) {
        munmap(b->br, b->br_bytes);
        b->br = NULL;
        b->mem = NULL;
        return -ENOMEM;
    }
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)b->br;
    reg.ring_entries = nbufs;
    reg.bgid = bgid;
    int ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
    if (ret < 0) {
        munmap(b->mem, (size_t)nbufs * size);
        munmap(b->br, b->br_bytes);
        b->br = NULL;
        b->mem = NULL;
        return ret;
    }
    b->nbufs = nbufs;
    b->size = size;
    b->mask = nbufs - 1;
    b->bgid = bgid;
    io_uring_buf_ring_init(b->br);
    if (stocked > nbufs)
        stocked = nbufs;
    for (unsigned i = 0; i < stocked; i++)
        io_uring_buf_ring_add(b->br, ring_bufs_addr(b, i), size, (unsigned short)i, (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)stocked);
    return 0;
}

void ring_bufs_fini(urt_ring *r, ring_bufs *b)
{
    if (!b->br)
        return;
    io_uring_unregister_buf_ring(&r->uring, b->bgid);
    munmap(b->mem, (size_t)b->nbufs * b->size);
    munmap(b->br, b->br_bytes);
    b->br = NULL;
    b->mem = NULL;
}
