/*
 * bufsend.c - urt_buf_send: send a received buffer and give it back once the
 * kernel is done with it, without the task waiting for the send.
 *
 * An echo or a proxy that answers each chunk with urt_send suspends twice per
 * message: once for the send's CQE, once for the next chunk. A raw ring
 * server waits for neither: it queues the send and recycles the buffer when
 * the send's CQE comes. urt_buf_send does the same for a task, so a chunk
 * costs one resume (the next chunk's), not two, whenever the send is done by
 * the time the next chunk is.
 *
 * Each task that uses it gets one record (buf_tx, made on first use, t->tx)
 * with at most one send in flight: a task's sends reach every socket in the
 * order it made them (two sends in flight on one socket could be reordered
 * by the kernel: one parked for POLLOUT while the next goes through), and
 * the one send is always an op that fdtrack counts, so a urt_close of its fd
 * from any task ends it before the fd number is freed.
 * Sends on the fd of the send in flight do not wait for it: their bytes are
 * copied into the record's queue (line 1 of the record, a heap buffer grown
 * to what is queued, at most URT_BUF_SEND_QUEUE bytes) and their buffers go
 * back to the pool at once; when the send in flight ends, the whole queue
 * goes as the next send. A pipelining peer's messages then leave in one
 * send per round instead of one per received chunk: on loopback a send costs
 * the sender's syscall work and the receiver's wake-up, whatever its size.
 * The queue is one send that has not started, so order, the fd count and the
 * close protocol stay those of the one send in flight.
 * The record is a RING_TAG_MULTI record of the task's ring, whose CQE handler
 * (tx_cqe, on that worker) gives the buffer back, starts the queue, keeps the
 * error for the task's next call, and wakes the task if it waits.
 * MSG_WAITALL makes the kernel finish a partial send itself; a result short
 * of the length (a cancel that came after some bytes went) ends the send
 * with -ECANCELED and is never resubmitted, and an error drops the queue, so
 * a close or a worker's exit is never outlived. Nor is the queue started on
 * an fd that a urt_close is ending (fdt_closing) or on a worker that exits.
 *
 *   urt_buf_send   queues behind the send in flight on the same fd while
 *                  the bytes fit; otherwise (another fd, a full queue, a
 *                  buffer larger than the queue) waits (pinned to its ring)
 *                  for room or for the send to end, then queues the SQE.
 *                  Returns 0, or the error of an earlier send (reported
 *                  once). An error before anything was queued leaves the
 *                  buffer with the caller (buf unchanged), so a cancelled
 *                  echo can still send it
 *   urt_buf_flush  waits until the task's sends have ended; the error or 0
 *   urt_close(fd)  lets the task's sends on fd end first (bufsend_close_fd),
 *                  so send-then-close delivers the data as send(2) and
 *                  close(2) would
 *   task end       a send still in flight keeps the record (task NULL); the
 *                  CQE that ends the last send frees it (bufsend_task_end);
 *                  the worker reaps it before it exits (multi_inflight)
 * Each wait ends early on cancellation and on the task's time bounds
 * (urt_op_timeout, urt_deadline): the buffer is the record's, so the send
 * may go on without its task (a close that follows then ends it).
 *
 * Only buffers of an rx on the task's own worker go through the ring: their
 * pool outlives every CQE of that ring. Elsewhere (a buffer from another
 * worker's rx, a migratable task, whose CQE could come on a worker it left,
 * a plain thread, no memory for the record) the call sends synchronously
 * (urt_send_all, or send(2)) and gives the buffer back before it returns:
 * the same bytes, later. Inside urt_block_in_place and in hooks, where the
 * ring cannot be waited on, a send still in flight makes the call refuse
 * (-EDEADLK) rather than overtake it.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "runtime/op.h"
#include "runtime/time.h"

/* Two cache lines, aligned: a send and its CQE touch line 0 only; line 1,
 * the queue, only when sends overlap. */
struct buf_tx {
    ring_multi m;                  /* first: the ring calls m.cqe */
    urt_worker *w;                 /* the task's ring (its home) */
    urt_task *task;                /* NULL once the task ended: the last CQE frees the record */
    /* the send in flight, field by field (an urt_buf's tail padding would
     * push them past one line): an rx buffer, or (rx NULL) a queue's heap
     * buffer that its CQE frees */
    void *data;
    size_t len;
    void *rx;
    uint32_t bid;
    int fd;
    int err;                       /* the error of the last send, until the task looks */
    bool inflight, tracked;
    bool waiting;                  /* the task waits for room or for the send to end */
    bool queued;                   /* q is set: a send's CQE reads line 1 only then */
    /* line 1: bytes queued behind the send in flight, for its fd */
    _Alignas(64) char *q;          /* NULL: nothing queued */
    uint32_t q_len, q_cap;
};
_Static_assert(offsetof(struct buf_tx, q) == 64, "buf_tx: the send in line 0, the queue in line 1");
_Static_assert(sizeof(struct buf_tx) == 128, "buf_tx: two cache lines");

#define TX_QUEUE_MIN 1024u         /* the queue's first size; it doubles up to URT_BUF_SEND_QUEUE */

static uint64_t tx_data(struct buf_tx *x) { return ring_tag(x, RING_TAG_MULTI, 0); }

/* The record holds no queue any more (its buffer was freed or became the send's). */
static void tx_queue_reset(struct buf_tx *x)
{
    x->q = NULL;
    x->q_len = x->q_cap = 0;
    x->queued = false;
}

static void tx_drop_queue(struct buf_tx *x)
{
    free(x->q);
    tx_queue_reset(x);
}

/* In tx_cqe, the send before has ended well: the queue goes as the next
 * send, the same op for fdtrack and the worker (their counts stay). False
 * (the queue is the caller's to drop) when its fd is being closed, the
 * worker exits, or no SQE is left. */
static bool tx_start_queue(struct buf_tx *x)
{
    urt_worker *w = x->w;
    if ((x->tracked && fdt_closing(w, x->fd)) || at_load_relaxed(&w->ring_fd) < 0)
        return false;
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return false;
    x->data = x->q;
    x->len = x->q_len;
    x->rx = NULL;
    tx_queue_reset(x);
    io_uring_prep_send(sqe, x->fd, x->data, x->len, MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, tx_data(x));
    return true;
}

static void tx_cqe(ring_multi *m, int32_t res, uint32_t flags)
{
    struct buf_tx *x = (struct buf_tx *)m;
    (void)flags;
    if (res >= 0 && (size_t)res < x->len)
        res = -ECANCELED;   /* cut short after some bytes went: never resubmitted */
    if (x->rx) {
        urt_buf b = {.data = x->data, .len = x->len, ._rx = x->rx, ._bid = x->bid};
        urt_buf_release(&b);
    } else {
        free(x->data);   /* a queue that went */
    }
    x->data = NULL;
    if (res < 0 && !x->err)
        x->err = res;
    bool next = false;
    if (x->queued) {
        next = res >= 0 && tx_start_queue(x);
        if (!next) {
            tx_drop_queue(x);   /* never sent: the bytes are lost, as the ones in flight */
            if (!x->err)
                x->err = -ECANCELED;
        }
    }
    if (!next) {
        if (x->tracked)
            fdt_dec(x->w, x->fd);
        x->tracked = false;
        x->w->multi_inflight--;
        x->inflight = false;
    }
    if (!x->task) {
        if (!next)
            free(x);   /* its task has ended, and so has its last send */
        return;
    }
    if (x->waiting)
        task_wake(x->task);
}

/* Must a send of len bytes on fd wait? Not when nothing is in flight, nor
 * when the bytes fit in the queue behind the send in flight on the same fd
 * (a tracked one: an untracked fd's close could not stop the queue). fd -1:
 * wait until every send has ended. */
static bool tx_busy(const struct buf_tx *x, int fd, size_t len)
{
    return x->inflight && !(fd >= 0 && fd == x->fd && x->tracked && len <= URT_BUF_SEND_QUEUE - x->q_len);
}

/* Queue len bytes behind the send in flight (tx_busy said they fit). 0, or
 * -ENOMEM with nothing queued. */
static int tx_enqueue(struct buf_tx *x, const void *data, size_t len)
{
    size_t need = x->q_len + len;
    if (need > x->q_cap) {
        size_t cap = x->q_cap ? x->q_cap : TX_QUEUE_MIN;
        while (cap < need)
            cap *= 2;
        if (cap > URT_BUF_SEND_QUEUE)
            cap = URT_BUF_SEND_QUEUE;
        char *q = realloc(x->q, cap);
        if (!q)
            return -ENOMEM;
        x->q = q;
        x->q_cap = (uint32_t)cap;
        x->queued = true;
    }
    memcpy(x->q + x->q_len, data, len);
    x->q_len = (uint32_t)need;
    return 0;
}

/* Wait (pinned to x->w, whose ring gets the CQE) until a send of len bytes
 * on fd need not wait (tx_busy; fd -1: until the task's sends have ended).
 * The buffer belongs to the record, not to the task's stack, so the wait
 * need not outlast the task's interest: it ends early with -ECANCELED
 * (cancelled, unless shielded) or -ETIMEDOUT (urt_op_timeout, urt_deadline);
 * the send then goes on. 0 once it need not wait. No submit here: the worker's
 * next enter takes a queued SQE, as for any op. */
static int tx_wait(urt_task *t, struct buf_tx *x, int fd, size_t len)
{
    if (!tx_busy(x, fd, len))
        return 0;
    bool pinned = t->op_pending, timer = false;
    int r = 0;
    t->op_pending = true;   /* its CQE comes to x->w: resume there */
    x->waiting = true;
    __atomic_store_n(&t->wait_what, "buf_send", __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, x->fd, __ATOMIC_RELAXED);
    while (tx_busy(x, fd, len)) {
        if (task_cancel_pending(t)) {
            r = -ECANCELED;
            break;
        }
        if (timer && task_timer_fired(t)) {
            r = -ETIMEDOUT;
            break;
        }
        if (!timer && task_bound(t, true)) {
            if (!(timer = task_timer_start(t, true))) {
                r = -EBUSY;
                break;
            }
            continue;   /* a bound already past has fired */
        }
        task_suspend(t, SW_PARK);
    }
    if (timer)
        task_timer_finish(t);
    __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
    x->waiting = false;
    t->op_pending = pinned;
    return r;
}

static int tx_take_err(struct buf_tx *x)
{
    int e = x->err;
    x->err = 0;
    return e;
}

/* The synchronous path: urt_send_all in a task (in a hook it refuses to
 * wait), send(2) in a loop on a plain thread or inside block_in_place. The
 * buffer is released, whatever the result. */
static int send_now(int fd, urt_buf *buf)
{
    urt_task *t = urt__cur_task();
    ssize_t r = 0;
    if (t && !t->in_bip) {
        r = urt_send_all(fd, buf->data, buf->len, 0);
    } else {
        for (size_t done = 0; done < buf->len;) {
            ssize_t n = send(fd, (const char *)buf->data + done, buf->len - done, MSG_NOSIGNAL);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                r = -errno;
                break;
            }
            done += (size_t)n;
        }
    }
    urt_buf_release(buf);
    return r < 0 ? (int)r : 0;
}

int urt_buf_send(int fd, urt_buf *buf)
{
    if (!buf || !buf->_rx || !buf->data)
        return -EINVAL;
    size_t cap;
    urt_worker *home = net_buf_home(buf, &cap);
    if (cap && buf->len > cap)
        return -EINVAL;   /* longer than the buffer holds */
    if (fd < 0)
        return -EBADF;
    if (buf->len == 0) {
        urt_buf_release(buf);
        return 0;
    }
    urt_task *t = urt__cur_task();
    urt_worker *w = urt__cur_worker();
    bool no_ring = !t || t->in_bip || urt__in_hook();   /* nothing here may wait on the ring */
    if (no_ring && t && t->tx && t->tx->inflight)
        return -EDEADLK;   /* a synchronous send would overtake the one in flight */
    if (no_ring || (t->flags & URT_TASK_MIGRATABLE) || w != home)
        return send_now(fd, buf);
    struct buf_tx *x = t->tx;
    if (!x) {
        x = aligned_alloc(64, sizeof(*x));
        if (!x)
            return send_now(fd, buf);
        memset(x, 0, sizeof(*x));
        x->m.cqe = tx_cqe;
        x->task = t;
        x->w = w;
        t->tx = x;
    }
    int e = tx_wait(t, x, fd, buf->len);
    if (e == 0)
        e = tx_take_err(x);
    if (e == 0 && task_cancel_pending(t))
        e = task_cancelled_now(t);
    if (e == 0 && x->inflight) {
        /* behind the send in flight on fd: copied, the buffer back at once */
        if (tx_enqueue(x, buf->data, buf->len) == 0) {
            urt_buf_release(buf);
            return 0;
        }
        e = tx_wait(t, x, -1, 0);   /* no memory for the queue: after the send, then */
        if (e == 0)
            e = tx_take_err(x);
    }
    if (e < 0)
        return e;   /* nothing was sent: buf is still the caller's */
    struct io_uring_sqe *sqe = ring_sqe(&w->ring);
    if (!sqe)
        return -EBUSY;
    x->data = buf->data;
    x->len = buf->len;
    x->rx = buf->_rx;
    x->bid = buf->_bid;
    x->fd = fd;
    io_uring_prep_send(sqe, fd, x->data, x->len, MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, tx_data(x));
    x->inflight = true;
    w->multi_inflight++;
    x->tracked = fdt_inc(w, fd);   /* a urt_close of fd on any worker ends it */
    buf->_rx = NULL;   /* the buffer is ours now, as after urt_buf_release */
    buf->data = NULL;
    return 0;
}

int urt_buf_flush(void)
{
    urt_task *t = urt__cur_task();
    if (!t)
        return urt__in_hook() ? -EDEADLK : -EPERM;
    struct buf_tx *x = t->tx;
    if (!x)
        return 0;
    if (t->in_bip || urt__in_hook())
        return x->inflight ? -EDEADLK : tx_take_err(x);
    int e = tx_wait(t, x, -1, 0);
    return e < 0 ? e : tx_take_err(x);
}

void bufsend_close_fd(urt_task *t, int fd)
{
    struct buf_tx *x = t->tx;
    if (x && x->inflight && x->fd == fd)
        (void)tx_wait(t, x, -1, 0);   /* cancelled or out of time: the close ends the send */
}

void bufsend_task_end(urt_task *t)
{
    struct buf_tx *x = t->tx;
    if (!x)
        return;
    t->tx = NULL;
    if (x->inflight)
        x->task = NULL;   /* tx_cqe frees it */
    else
        free(x);
}
