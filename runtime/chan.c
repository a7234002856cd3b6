/*
 * chan.c - urt_chan: a bounded MPMC channel of fixed-size items, with FIFO
 * queues of blocked senders and receivers; close as in Go.
 *
 * Everything is under c->lock. Invariants:
 *   - receivers wait only while the buffer is empty, senders only while it
 *     is full, and nobody waits on a closed channel;
 *   - send with a receiver waiting copies the item straight into that
 *     receiver's slot and wakes it (the buffer is empty then, so order holds);
 *   - recv from a full buffer with a sender waiting takes the head item,
 *     then moves the oldest sender's item into the freed tail slot and wakes
 *     that sender;
 *   - close wakes every waiter with -EPIPE; the buffer keeps what it has,
 *     and recv drains it before it reports -EPIPE.
 * A hand-off happens under the lock together with the unlink of its waiter
 * (sync.h): a waiter chosen before it noticed its cancellation or timeout
 * returns 0, with the item received (or its item sent); one that gave up
 * while still queued moved nothing. No item is lost or delivered twice.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

typedef struct chan_waiter {
    urt_waiter w;
    void *item;                    /* sender: its item; receiver: where the item goes */
} chan_waiter;

struct urt_chan {
    at_lock lock;
    size_t item_size, cap;         /* immutable */
    size_t head, count;            /* under lock: a ring of cap slots, head < cap */
    bool closed;                   /* under lock */
    waitq sendq, recvq;            /* under lock: chan_waiter.w */
    unsigned char *buf;            /* cap * item_size bytes; slots under lock */
};

static inline chan_waiter *cw_of(urt_waiter *w) { return (chan_waiter *)((char *)w - offsetof(chan_waiter, w)); }

static inline unsigned char *slot(urt_chan *c, size_t i)
{
    if (i >= c->cap)
        i -= c->cap;
    return c->buf + i * c->item_size;
}

int urt_chan_create(urt_chan **out, size_t item_size, size_t capacity)
{
    if (!out || item_size == 0 || capacity == 0 || capacity > (size_t)SSIZE_MAX / item_size)
        return -EINVAL;
    urt_chan *c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->buf = malloc(item_size * capacity);
    if (!c->buf) {
        free(c);
        return -ENOMEM;
    }
    c->item_size = item_size;
    c->cap = capacity;
    *out = c;
    return 0;
}

void urt_chan_destroy(urt_chan *c)
{
    if (!c)
        return;
    free(c->buf);
    free(c);
}

/* Under the lock (sync_now_fn; item is only read). 0 or -EPIPE when it is done;
 * -EAGAIN: full, nobody waits to receive. */
static int send_now(void *obj, void *item, wake_after *wa)
{
    urt_chan *c = obj;
    if (c->closed)
        return -EPIPE;
    urt_waiter *w = waitq_pop(&c->recvq);
    if (w) {
        memcpy(cw_of(w)->item, item, c->item_size);
        waiter_wake_after(w, 0, wa);
        return 0;
    }
    if (c->count == c->cap)
        return -EAGAIN;
    memcpy(slot(c, c->head + c->count), item, c->item_size);
    c->count++;
    return 0;
}

/* Under the lock (sync_now_fn). 0 or -EPIPE (closed and drained); -EAGAIN: empty. */
static int recv_now(void *obj, void *out, wake_after *wa)
{
    urt_chan *c = obj;
    if (c->count == 0)
        return c->closed ? -EPIPE : -EAGAIN;
    memcpy(out, slot(c, c->head), c->item_size);
    c->head = c->head + 1 == c->cap ? 0 : c->head + 1;
    c->count--;
    urt_waiter *w = waitq_pop(&c->sendq);
    if (w) {
        memcpy(slot(c, c->head + c->count), cw_of(w)->item, c->item_size);
        c->count++;
        waiter_wake_after(w, 0, wa);
    }
    return 0;
}

int urt_chan_try_send(urt_chan *c, const void *item)
{
    if (!c || !item)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&c->lock);
    int r = send_now(c, (void *)item, &wa);
    at_lock_give(&c->lock);
    wake_after_run(&wa);
    return r;
}

int urt_chan_try_recv(urt_chan *c, void *item)
{
    if (!c || !item)
        return -EINVAL;
    wake_after wa = {0};
    at_lock_take(&c->lock);
    int r = recv_now(c, item, &wa);
    at_lock_give(&c->lock);
    wake_after_run(&wa);
    return r;
}

int urt_chan_send(urt_chan *c, const void *item)
{
    if (!c || !item)
        return -EINVAL;
    urt_task *t;
    int r = sync_try(&c->lock, send_now, c, (void *)item, -EAGAIN, &t);
    if (r != SYNC_MUST_WAIT)
        return r;
    chan_waiter cw;
    memset(&cw, 0, sizeof(cw));
    cw.w.task = t;
    cw.item = (void *)item;
    return sync_wait(&c->lock, &c->sendq, &cw.w, "chan_send");
}

int urt_chan_recv(urt_chan *c, void *item)
{
    if (!c || !item)
        return -EINVAL;
    urt_task *t;
    int r = sync_try(&c->lock, recv_now, c, item, -EAGAIN, &t);
    if (r != SYNC_MUST_WAIT)
        return r;
    chan_waiter cw;
    memset(&cw, 0, sizeof(cw));
    cw.w.task = t;
    cw.item = item;
    return sync_wait(&c->lock, &c->recvq, &cw.w, "chan_recv");
}

int urt_chan_close(urt_chan *c)
{
    if (!c)
        return -EINVAL;
    at_lock_take(&c->lock);
    if (c->closed) {
        at_lock_give(&c->lock);
        return -EPIPE;
    }
    c->closed = true;
    wake_after wa = {0};
    waitq_wake_all(&c->recvq, -EPIPE, &wa);
    waitq_wake_all(&c->sendq, -EPIPE, &wa);
    at_lock_give(&c->lock);
    wake_after_run(&wa);
    return 0;
}

ssize_t urt_chan_len(urt_chan *c)
{
    if (!c)
        return -EINVAL;
    at_lock_take(&c->lock);
    size_t n = c->count;
    at_lock_give(&c->lock);
    return (ssize_t)n;
}

ssize_t urt_chan_cap(const urt_chan *c)
{
    if (!c)
        return -EINVAL;
    return (ssize_t)c->cap;
}
