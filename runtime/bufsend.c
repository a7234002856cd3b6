/*
 * bufsend.c - urt_buf_send: send a received buffer and give it back once the
 * kernel is done with it, without the task waiting for the send.
 *
 * An echo or a proxy that answers each chunk with urt_send suspends twice per
 * message: once for the send's CQE, once for the next chunk. A raw ring
 * server waits for neither: it queues the send and recycles the buffer when
 * the send's CQE comes. urt_buf_send does the same for a task, so a chunk
 * costs one resume (the next chunk's), not two.
 *
 * Each task that uses it gets one record (buf_tx, on the heap, made on first
 * use, t->tx): at most one send of the task is in flight and up to TX_QMAX
 * wait behind it, so a task's sends reach every socket in the order it made
 * them (two sends in flight on one socket could be reordered by the kernel:
 * one parked for POLLOUT while the next goes through). The record is a
 * RING_TAG_MULTI record of the task's ring, whose CQE handler (tx_cqe, on
 * that worker) gives the buffer back, keeps the first error for the task's
 * next call, starts the next queued send (dropping those for a socket whose
 * send failed), and wakes the task if it waits. MSG_WAITALL makes the kernel finish a partial
 * send itself; a short result that still comes (a signal, a shutdown) is sent
 * on from where it stopped.
 *
 *   urt_buf_send   queues the send (an SQE, or a place behind the one in
 *                  flight) and returns 0, or the error of an earlier send
 *                  (reported once); waits (pinned to its ring) only when
 *                  TX_QMAX are queued already
 *   urt_buf_flush  waits until the task's sends have ended; an error or 0
 *   urt_close(fd)  lets the task's sends end first when one is for fd
 *                  (bufsend_close_fd),
 *                  so send-then-close delivers the data as send(2) and
 *                  close(2) would
 * Each wait ends early on cancellation and on the task's time bounds
 * (urt_op_timeout, urt_deadline): the buffer is the record's, so the send
 * may go on without its task (a close that follows then ends it).
 *   task end       sends still in flight or queued keep the record (task
 *                  NULL); the last one's CQE frees it (bufsend_task_end)
 * The send is tracked in fdtrack like any op, so a urt_close of the fd from
 * another task ends it (-ECANCELED: the rest of the data is dropped), and it
 * counts in the worker's multi_inflight, so a worker that exits reaps it.
 *
 * Where the task cannot queue a ring op (a migratable task, whose CQE could
 * come on a worker it left; inside urt_block_in_place; a plain thread; no
 * memory for the record) the call sends synchronously (urt_send_all) and
 * gives the buffer back before it returns: the same result, later.
 */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "runtime/op.h"
#include "runtime/time.h"

/* Sends a task may have queued behind the one in flight. Their buffers
 * count against their urt_rx's URT_RX_MAX_HELD until sent: with at most
 * URT_RX_MAX_HELD - 1 of them out, the task can still take a chunk. */
#define TX_QMAX (URT_RX_MAX_HELD - 2)
_Static_assert(TX_QMAX >= 1, "room for one queued send");

typedef struct tx_item {
    urt_buf buf;
    int fd;
} tx_item;

struct buf_tx {
    ring_multi m;                  /* first: the ring calls m.cqe */
    urt_worker *w;                 /* the task's ring (its home) */
    urt_task *task;                /* NULL once the task ended: the last CQE frees the record */
    urt_task *waiter;              /* the task, while it waits for room or for the end */
    tx_item cur;                   /* the send in flight, while inflight */
    uint32_t off;                  /* bytes of cur already sent */
    int err;                       /* the first error since the task last looked */
    bool inflight, tracked;
    uint8_t qh, qn;                /* queued behind cur, oldest first */
    tx_item q[TX_QMAX];
};

static uint64_t tx_data(struct buf_tx *x) { return ring_tag(x, RING_TAG_MULTI, 0); }

static bool tx_queue(struct buf_tx *x)
{
    struct io_uring_sqe *sqe = ring_sqe(&x->w->ring);
    if (!sqe)
        return false;
    io_uring_prep_send(sqe, x->cur.fd, (const char *)x->cur.buf.data + x->off, x->cur.buf.len - x->off,
                       MSG_NOSIGNAL | MSG_WAITALL);
    io_uring_sqe_set_data64(sqe, tx_data(x));
    return true;
}

/* Send it now (x idle): false, with it released, when there is no SQE. */
static bool tx_start(struct buf_tx *x, tx_item it)
{
    x->cur = it;
    x->off = 0;
    if (!tx_queue(x)) {
        urt_buf_release(&x->cur.buf);
        return false;
    }
    x->inflight = true;
    x->w->multi_inflight++;
    x->tracked = fdt_inc(x->w, it.fd);   /* a urt_close of fd on any worker ends it */
    return true;
}

static void tx_cqe(ring_multi *m, int32_t res, uint32_t flags)
{
    struct buf_tx *x = (struct buf_tx *)m;
    (void)flags;
    if (res > 0 && x->off + (uint32_t)res < x->cur.buf.len) {
        x->off += (uint32_t)res;
        if (tx_queue(x))
            return;   /* the rest, from where it stopped */
        res = -EBUSY;   /* no SQE for the rest: the data is cut short */
    }
    if (x->tracked)
        fdt_dec(x->w, x->cur.fd);
    x->tracked = false;
    x->w->multi_inflight--;
    x->inflight = false;
    int failed_fd = res < 0 ? x->cur.fd : -1;
    if (res < 0 && !x->err)
        x->err = res;
    urt_buf_release(&x->cur.buf);
    /* the next in order; what was queued for a socket whose send failed is
     * dropped (its error is reported once) */
    while (x->qn && !x->inflight) {
        tx_item it = x->q[x->qh];
        x->qh = (uint8_t)((x->qh + 1) % TX_QMAX);
        x->qn--;
        if (it.fd == failed_fd) {
            urt_buf_release(&it.buf);
        } else if (!tx_start(x, it)) {
            if (!x->err)
                x->err = -EBUSY;
        }
    }
    if (!x->task) {
        if (!x->inflight)
            free(x);   /* its task has ended and nothing is left */
        return;
    }
    if (x->waiter)
        task_wake(x->waiter);
}

/* Wait (pinned to x->w, whose ring gets the CQEs) until x has room for one
 * more send (all false) or has sent everything (all true). The buffers
 * belong to the record, not to the task's stack, so the wait need not
 * outlast the task's interest: it ends early with -ECANCELED (cancelled,
 * unless shielded) or -ETIMEDOUT (urt_op_timeout, urt_deadline); the sends
 * then go on. 0 once the condition holds. No submit here: the worker's
 * next enter takes the queued SQE, as for any op. */
static int tx_wait(urt_task *t, struct buf_tx *x, bool all)
{
    if (all ? !x->inflight : x->qn < TX_QMAX)
        return 0;
    bool pinned = t->op_pending, timer = false;
    int r = 0;
    t->op_pending = true;   /* its CQEs come to x->w: resume there */
    x->waiter = t;
    __atomic_store_n(&t->wait_what, "buf_send", __ATOMIC_RELAXED);
    __atomic_store_n(&t->wait_fd, x->cur.fd, __ATOMIC_RELAXED);
    while (all ? x->inflight : x->qn == TX_QMAX) {
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
    x->waiter = NULL;
    t->op_pending = pinned;
    return r;
}

static int tx_take_err(struct buf_tx *x)
{
    int e = x->err;
    x->err = 0;
    return e;
}

/* The task that may queue a send on its ring now, else NULL (send plainly). */
static urt_task *tx_task(void)
{
    urt_task *t = urt__cur_task();
    if (!t || t->in_bip || urt__in_hook() || (t->flags & URT_TASK_MIGRATABLE) || !urt__cur_worker())
        return NULL;
    return t;
}

/* The synchronous path: urt_send_all in a task (in a hook it refuses to
 * wait), send(2) in a loop on a plain thread or inside block_in_place. */
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
    if (fd < 0) {
        urt_buf_release(buf);
        return -EBADF;
    }
    if (buf->len == 0) {
        urt_buf_release(buf);
        return 0;
    }
    urt_task *t = tx_task();
    if (!t)
        return send_now(fd, buf);
    struct buf_tx *x = t->tx;
    if (!x) {
        x = calloc(1, sizeof(*x));
        if (!x)
            return send_now(fd, buf);
        x->m.cqe = tx_cqe;
        x->task = t;
        x->w = urt__cur_worker();
        t->tx = x;
    }
    int e = tx_take_err(x);
    if (e == 0 && task_cancel_pending(t))
        e = task_cancelled_now(t);
    if (e == 0)
        e = tx_wait(t, x, false);   /* TX_QMAX queued: wait for room */
    if (e == 0)
        e = tx_take_err(x);
    if (e < 0) {
        urt_buf_release(buf);
        return e;
    }
    tx_item it = {*buf, fd};
    buf->_rx = NULL;   /* the buffer is ours now, as after urt_buf_release */
    buf->data = NULL;
    if (x->inflight) {
        x->q[(x->qh + x->qn) % TX_QMAX] = it;   /* goes when those before it have */
        x->qn++;
        return 0;
    }
    return tx_start(x, it) ? 0 : -EBUSY;
}

int urt_buf_flush(void)
{
    urt_task *t = urt__cur_task();
    if (!t)
        return urt__in_hook() ? -EDEADLK : -EPERM;
    struct buf_tx *x = t->tx;
    if (!x)
        return 0;
    if (urt__in_hook())
        return x->inflight ? -EDEADLK : tx_take_err(x);
    int e = tx_wait(t, x, true);
    return e < 0 ? e : tx_take_err(x);
}

void bufsend_close_fd(urt_task *t, int fd)
{
    struct buf_tx *x = t->tx;
    if (!x || !x->inflight)
        return;
    bool mine = x->cur.fd == fd;
    for (unsigned i = 0; i < x->qn && !mine; i++)
        mine = x->q[(x->qh + i) % TX_QMAX].fd == fd;
    if (mine)
        (void)tx_wait(t, x, true);   /* cancelled or out of time: the close ends the send */
}

void bufsend_task_end(urt_task *t)
{
    struct buf_tx *x = t->tx;
    if (!x)
        return;
    t->tx = NULL;
    if (x->inflight)
        x->task = NULL;   /* tx_cqe frees it after the last send */
    else
        free(x);
}
