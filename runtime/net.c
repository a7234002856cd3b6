/*
 * net.c - server-side I/O: a listener on multishot accept, and a receive
 * that takes buffers from the worker's provided-buffer ring (multishot recv).
 *
 * Both are "multishot records": heap objects tagged RING_TAG_MULTI whose
 * CQEs keep coming while IORING_CQE_F_MORE is set. A record lives while its
 * user holds it or the ring does (refs: one for the user, one while armed,
 * and for urt_rx one per buffer handed out). Their CQEs arrive on the ring
 * of the worker that armed them, which is the owning task's home (the task
 * is pinned), so a record's fields other than refs and `held` are touched
 * by that one thread only: the task's fiber and the worker's CQE dispatch.
 *
 * Receive buffers (rx_pool, one per worker, made on first use):
 *   - the kernel takes a buffer per CQE with IORING_CQE_F_BUFFER (avail--);
 *   - urt_buf_release on the home worker puts it straight back (avail++);
 *     released elsewhere, its id goes on the pool's return list (mutex) and
 *     the home worker is kicked; it drains the list in its loop;
 *   - a receive that ends with -ENOBUFS (ring empty) waits on the pool's
 *     starved list and re-arms once buffers come back; the data stays in the
 *     socket meanwhile, nothing is lost;
 *   - one urt_rx holds at most URT_RX_MAX_HELD buffers (queued + handed
 *     out): at the cap its multishot is cancelled; the next urt_rx_recv after
 *     the caller released some re-arms it. When fewer than 1/8 of the
 *     buffers are left, a receiver whose owner is not waiting for data
 *     pauses as soon as it has something queued. Data already waiting in
 *     the socket when the receive is armed can overshoot the cap: the kernel
 *     takes what is there in one go.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/runtime.h"

enum { MR_LISTENER = 1, MR_RX = 2 };

#define LQ_PAUSE 64   /* queued fds at which the multishot accept pauses */

struct urt_listener {
    uint8_t kind;                  /* MR_LISTENER; first field of every record */
    _Atomic uint32_t refs;
    urt_worker *w;
    int fd, flags;
    bool armed, closing;
    bool cancel_sent;
    int err;                       /* an error to hand out once */
    int *q;                        /* accepted fds in order; grows past LQ_PAUSE only for
                                      CQEs already posted when the pause took effect */
    unsigned qh, qn, qcap;
    urt_task *waiter;
};

typedef struct rx_chunk {
    uint16_t bid;
    uint32_t len;
} rx_chunk;

struct urt_rx {
    uint8_t kind;                  /* MR_RX */
    _Atomic uint32_t refs;
    _Atomic uint32_t held;         /* buffers queued or handed out; released on any thread */
    urt_worker *w;
    rx_pool *pool;
    int fd;
    bool armed, cancel_sent, eof, closing, starving;
    int err;
    rx_chunk *q;                   /* ring of received chunks; grows past the cap only for
                                      CQEs already posted when the pause took effect */
    unsigned qh, qn, qcap;
    urt_task *waiter;
    struct urt_rx *starved_next;
};

static uint64_t rec_data(void *rec) { return ring_tag(rec, RING_TAG_MULTI, 0); }

/* Close of a multishot record whose cancel is queued: submit it now and, in a
 * task, wait (shielded from cancellation) for the record's last CQE, which
 * clears *armed and wakes *waiter. */
static void wait_disarmed(urt_worker *w, bool *armed, urt_task **waiter)
{
    if (!*armed)
        return;
    worker_submit(w);
    urt_task *t = urt__cur_task();
    if (!t || t->in_bip)
        return;
    bool old = t->shield;
    t->shield = true;
    *waiter = t;
    while (*armed)
        task_suspend(t, SW_PARK);
    *waiter = NULL;
    t->shield = old;
}

static void rec_unref(void *rec)
{
    bool listener = ((uint8_t *)rec)[0] == MR_LISTENER;
    _Atomic uint32_t *refs = listener ? &((urt_listener *)rec)->refs : &((urt_rx *)rec)->refs;
    /* acq_rel: the last owner sees every write made under the other refs */
    if (at_fsub_acqrel(refs, 1) == 1) {
        if (listener)
            free(((urt_listener *)rec)->q);
        else
            free(((urt_rx *)rec)->q);
        free(rec);
    }
}

/* Append a chunk; false when memory ran out. */
static bool rx_push(urt_rx *rx, rx_chunk c)
{
    if (rx->qn == rx->qcap) {
        unsigned ncap = rx->qcap * 2;
        rx_chunk *nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            return false;
        for (unsigned i = 0; i < rx->qn; i++)
            nq[i] = rx->q[(rx->qh + i) % rx->qcap];
        free(rx->q);
        rx->q = nq;
        rx->qh = 0;
        rx->qcap = ncap;
    }
    rx->q[(rx->qh + rx->qn++) % rx->qcap] = c;
    return true;
}

static rx_chunk rx_pop(urt_rx *rx)
{
    rx_chunk c = rx->q[rx->qh];
    rx->qh = (rx->qh + 1) % rx->qcap;
    rx->qn--;
    return c;
}

static urt_task *net_task(int *err)
{
    urt_task *t = urt__cur_task();
    if (!t || t->in_bip || !urt__cur_worker()) {
        *err = -EPERM;
        return NULL;
    }
    return t;
}

/* ---- listener ---------------------------------------------------------------- */

static void listener_arm(urt_listener *l)
{
    urt_ring *r = &l->w->ring;
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return;   /* the next accept call tries again */
    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, l->flags);
    io_uring_sqe_set_data64(sqe, rec_data(l));
    at_fadd_relaxed(&l->refs, 1);   /* the ring's */
    l->armed = true;
    l->cancel_sent = false;
    l->w->multi_inflight++;
}

static bool listener_push(urt_listener *l, int fd)
{
    if (l->qn == l->qcap) {
        unsigned ncap = l->qcap * 2;
        int *nq = malloc(ncap * sizeof(*nq));
        if (!nq)
            return false;
        for (unsigned i = 0; i < l->qn; i++)
            nq[i] = l->q[(l->qh + i) % l->qcap];
        free(l->q);
        l->q = nq;
        l->qh = 0;
        l->qcap = ncap;
    }
    l->q[(l->qh + l->qn++) % l->qcap] = fd;
    return true;
}

static int listener_pop(urt_listener *l)
{
    int fd = l->q[l->qh];
    l->qh = (l->qh + 1) % l->qcap;
    l->qn--;
    return fd;
}

static void listener_cqe(urt_listener *l, int32_t res, uint32_t flags)
{
    if (res >= 0) {
        if (l->closing)
            close(res);   /* nobody will take it */
        else if (!listener_push(l, res)) {
            close(res);
            l->err = -ENOMEM;
        }
    } else if (!(res == -ECANCELED && (l->closing || l->cancel_sent))) {
        l->err = res;
    }
    /* nobody takes them fast enough: pause, the kernel's backlog holds the rest */
    if ((flags & IORING_CQE_F_MORE) && !l->cancel_sent && l->qn >= LQ_PAUSE) {
        ring_cancel_data(&l->w->ring, rec_data(l));
        l->cancel_sent = true;
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        l->armed = false;
        l->w->multi_inflight--;
        if (l->waiter)
            task_wake(l->waiter);
        rec_unref(l);
        return;
    }
    if (l->waiter)
        task_wake(l->waiter);
}

int urt_listener_open(urt_listener **out, int listen_fd, int flags)
{
    if (!out || listen_fd < 0 || (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)))
        return -EINVAL;
    *out = NULL;
    int err = 0;
    if (!net_task(&err))
        return err;
    /* refuse now what the accept would refuse later: not a socket, or one
     * that does not listen (unbound, not yet listen(2)ed, or not a stream) */
    int listening = 0;
    socklen_t optlen = sizeof(listening);
    if (getsockopt(listen_fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) != 0)
        return errno == ENOTSOCK || errno == EBADF ? -errno : -EINVAL;
    if (!listening)
        return -EINVAL;
    urt_listener *l = calloc(1, sizeof(*l));
    if (!l)
        return -ENOMEM;
    l->qcap = LQ_PAUSE * 2;
    l->q = malloc(l->qcap * sizeof(*l->q));
    if (!l->q) {
        free(l);
        return -ENOMEM;
    }
    l->kind = MR_LISTENER;
    at_store_relaxed(&l->refs, 1);
    l->w = urt__cur_worker();
    l->fd = listen_fd;
    l->flags = flags;
    listener_arm(l);
    *out = l;
    return 0;
}

int urt_listener_accept(urt_listener *l)
{
    if (!l || l->closing)
        return -EINVAL;
    int err = 0;
    urt_task *t = net_task(&err);
    if (!t)
        return err;
    if (urt__cur_worker() != l->w)
        return -EXDEV;   /* only on the worker that opened it */
    for (;;) {
        if (l->qn) {
            int fd = listener_pop(l);
            if (!l->armed && l->qn < LQ_PAUSE / 4 && !l->err)
                listener_arm(l);   /* paused: resume while some are still queued */
            return fd;
        }
        if (l->err) {
            int e = l->err;
            l->err = 0;
            return e;
        }
        if (task_cancel_pending(t))
            return -ECANCELED;
        if (!l->armed)
            listener_arm(l);   /* the kernel ended it (an error, or a full CQ): again */
        l->waiter = t;
        __atomic_store_n(&t->wait_what, "accept", __ATOMIC_RELAXED);
        __atomic_store_n(&t->wait_fd, l->fd, __ATOMIC_RELAXED);
        task_suspend(t, SW_PARK);
        __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
        l->waiter = NULL;
    }
}

int urt_listener_close(urt_listener *l)
{
    if (!l)
        return -EINVAL;
    urt_worker *w = urt__cur_worker();
    if (w != l->w)
        return -EXDEV;
    l->closing = true;
    if (l->armed && !l->cancel_sent) {
        ring_cancel_data(&w->ring, rec_data(l));
        l->cancel_sent = true;
    }
    /* An armed accept still sits on the socket's wait queue and would take
     * (and lose) the next connection meant for whoever accepts next: wait
     * for its last CQE. */
    wait_disarmed(w, &l->armed, &l->waiter);
    while (l->qn)
        close(listener_pop(l));
    rec_unref(l);
    return 0;
}

/* ---- receive buffers ------------------------------------------------------------ */

static rx_pool *pool_get(urt_worker *w, int *err)
{
    if (w->rxp)
        return w->rxp;
    urt_runtime *rt = w->rt;
    rx_pool *p = calloc(1, sizeof(*p));
    if (!p) {
        *err = -ENOMEM;
        return NULL;
    }
    unsigned n = rt->cfg.rx_buffers, size = rt->cfg.rx_buffer_size;
    int r = ring_bufs_init(&w->ring, &p->bufs, n, size, 1);
    if (r < 0) {
        free(p);
        *err = r;
        return NULL;
    }
    pthread_mutex_init(&p->ret_lock, NULL);
    p->avail = n;
    p->owner = w->id;
    w->rxp = p;
    return p;
}

static void starve_push(rx_pool *p, urt_rx *rx)
{
    if (rx->starving)
        return;
    rx->starving = true;
    rx->starved_next = NULL;
    if (p->starved_tail)
        p->starved_tail->starved_next = rx;
    else
        p->starved = rx;
    p->starved_tail = rx;
}

/* Wake the receivers that waited longest, one per free buffer: waking them
 * all for one buffer would have most re-arm into -ENOBUFS again. */
static void wake_starved(rx_pool *p)
{
    unsigned n = p->avail;
    while (p->starved && n) {
        urt_rx *rx = p->starved;
        p->starved = rx->starved_next;
        if (!p->starved)
            p->starved_tail = NULL;
        rx->starving = false;
        n--;
        if (rx->waiter)
            task_wake(rx->waiter);
    }
}

static void buf_home(rx_pool *p, unsigned bid)
{
    ring_bufs_put(&p->bufs, bid);
    p->avail++;
}

void net_pool_drain(urt_worker *w)
{
    rx_pool *p = w->rxp;
    if (!p || !at_load_relaxed(&p->has_ret))
        return;
    pthread_mutex_lock(&p->ret_lock);
    for (unsigned i = 0; i < p->nret; i++)
        buf_home(p, p->ret[i]);
    p->nret = 0;
    at_store_relaxed(&p->has_ret, 0);
    pthread_mutex_unlock(&p->ret_lock);
    wake_starved(p);
}

void net_pool_destroy(urt_worker *w)
{
    rx_pool *p = w->rxp;
    if (!p)
        return;
    ring_bufs_fini(&w->ring, &p->bufs);
    pthread_mutex_destroy(&p->ret_lock);
    free(p->ret);
    free(p);
    w->rxp = NULL;
}

/* ---- urt_rx ------------------------------------------------------------------------ */

static void rx_arm(urt_rx *rx)
{
    urt_ring *r = &rx->w->ring;
    struct io_uring_sqe *sqe = ring_sqe(r);
    if (!sqe)
        return;   /* the next receive call tries again */
    io_uring_prep_recv_multishot(sqe, rx->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = rx->pool->bufs.bgid;
    io_uring_sqe_set_data64(sqe, rec_data(rx));
    at_fadd_relaxed(&rx->refs, 1);   /* the ring's */
    rx->armed = true;
    rx->cancel_sent = false;
    rx->w->multi_inflight++;
}

static void rx_cqe(urt_rx *rx, int32_t res, uint32_t flags)
{
    rx_pool *p = rx->pool;
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        p->avail--;
        if (res > 0 && !rx->closing && rx_push(rx, (rx_chunk){(uint16_t)bid, (uint32_t)res})) {
            at_fadd_relaxed(&rx->held, 1);
        } else {
            buf_home(p, bid);   /* closing, an empty buffer, or no memory */
            if (res > 0 && !rx->closing)
                rx->err = -ENOMEM;
        }
    }
    if (res == 0) {
        rx->eof = true;
    } else if (res < 0) {
        if (res == -ENOBUFS) {
            if (!p->avail)
                starve_push(p, rx);
        } else if (!(res == -ECANCELED && rx->cancel_sent)) {
            rx->err = res;
        }
    }
    /* at the cap, or when buffers run short while the owner is busy elsewhere
     * (not consuming): pause the receive; the data waits in the socket */
    if ((flags & IORING_CQE_F_MORE) && !rx->cancel_sent &&
        (at_load_relaxed(&rx->held) >= URT_RX_MAX_HELD ||
         (!rx->waiter && rx->qn && p->avail < p->bufs.nbufs / 8))) {
        ring_cancel_data(&rx->w->ring, rec_data(rx));
        rx->cancel_sent = true;
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        rx->armed = false;
        rx->w->multi_inflight--;
        if (rx->waiter)
            task_wake(rx->waiter);
        rec_unref(rx);
        return;
    }
    if (rx->waiter)
        task_wake(rx->waiter);
}

void net_multi_cqe(urt_worker *w, void *rec, int32_t res, uint32_t flags)
{
    if (!rec)
        return;
    if (((uint8_t *)rec)[0] == MR_LISTENER)
        listener_cqe(rec, res, flags);
    else
        rx_cqe(rec, res, flags);
}

int urt_rx_open(urt_rx **out, int fd)
{
    if (!out || fd < 0)
        return -EINVAL;
    *out = NULL;
    int err = 0;
    if (!net_task(&err))
        return err;
    urt_worker *w = urt__cur_worker();
    rx_pool *p = pool_get(w, &err);
    if (!p)
        return err;
    urt_rx *rx = calloc(1, sizeof(*rx));
    if (!rx)
        return -ENOMEM;
    rx->qcap = URT_RX_MAX_HELD;
    rx->q = malloc(rx->qcap * sizeof(*rx->q));
    if (!rx->q) {
        free(rx);
        return -ENOMEM;
    }
    rx->kind = MR_RX;
    at_store_relaxed(&rx->refs, 1);
    rx->w = w;
    rx->pool = p;
    rx->fd = fd;
    *out = rx;   /* armed on the first urt_rx_recv: an idle connection holds nothing */
    return 0;
}

static void rx_unstarve(urt_rx *rx)
{
    if (!rx->starving)
        return;
    rx_pool *p = rx->pool;
    urt_rx *prev = NULL, *cur = p->starved;
    while (cur && cur != rx) {
        prev = cur;
        cur = cur->starved_next;
    }
    if (cur) {
        if (prev)
            prev->starved_next = rx->starved_next;
        else
            p->starved = rx->starved_next;
        if (p->starved_tail == rx)
            p->starved_tail = prev;
    }
    rx->starving = false;
}

ssize_t urt_rx_recv(urt_rx *rx, urt_buf *buf)
{
    if (!rx || !buf || rx->closing)
        return -EINVAL;
    int err = 0;
    urt_task *t = net_task(&err);
    if (!t)
        return err;
    urt_worker *w = urt__cur_worker();
    if (w != rx->w)
        return -EXDEV;
    ring_op top;              /* the per-task op timeout, when set */
    bool timer = false;
    struct __kernel_timespec ts;
    ssize_t ret;
    for (;;) {
        if (rx->qn) {
            rx_chunk c = rx_pop(rx);
            buf->data = ring_bufs_addr(&rx->pool->bufs, c.bid);
            buf->len = c.len;
            buf->_rx = rx;
            buf->_bid = c.bid;
            at_fadd_relaxed(&rx->refs, 1);   /* the buffer's */
            ret = (ssize_t)c.len;
            break;
        }
        if (rx->err) {
            ret = rx->err;
            rx->err = 0;
            break;
        }
        if (rx->eof && !rx->armed) {
            ret = 0;
            break;
        }
        if (timer && top.done) {
            ret = -ETIMEDOUT;
            break;
        }
        if (task_cancel_pending(t)) {
            ret = -ECANCELED;
            break;
        }
        if (!rx->armed && !rx->eof) {
            if (at_load_relaxed(&rx->held) >= URT_RX_MAX_HELD) {
                ret = -ENOBUFS;   /* the caller holds every buffer it may: release some */
                break;
            }
            net_pool_drain(w);
            if (rx->pool->avail)
                rx_arm(rx);
            else
                starve_push(rx->pool, rx);
        }
        if (!timer && t->op_timeout && !(timer = task_timer_start(t, &top, &ts))) {
            ret = -EBUSY;
            break;
        }
        rx->waiter = t;
        __atomic_store_n(&t->wait_what, "rx", __ATOMIC_RELAXED);
        __atomic_store_n(&t->wait_fd, rx->fd, __ATOMIC_RELAXED);
        task_suspend(t, SW_PARK);
        __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
        rx->waiter = NULL;
    }
    rx_unstarve(rx);
    if (timer)
        task_timer_finish(t, &top);
    return ret;
}

void urt_buf_release(urt_buf *buf)
{
    if (!buf || !buf->_rx)
        return;
    urt_rx *rx = buf->_rx;
    rx_pool *p = rx->pool;
    unsigned bid = buf->_bid;
    buf->_rx = NULL;
    buf->data = NULL;
    urt_worker *w = urt__cur_worker();
    at_fsub_relaxed(&rx->held, 1);
    if (w && w == rx->w) {
        buf_home(p, bid);
        wake_starved(p);
    } else {
        /* another thread: the id travels home through the return list */
        pthread_mutex_lock(&p->ret_lock);
        if (p->nret == p->retcap) {
            unsigned ncap = p->retcap ? p->retcap * 2 : 64;
            uint16_t *n = realloc(p->ret, ncap * sizeof(*n));
            if (n) {
                p->ret = n;
                p->retcap = ncap;
            }
        }
        if (p->nret < p->retcap)   /* else out of memory: the buffer is lost to the ring */
            p->ret[p->nret++] = (uint16_t)bid;
        at_store_relaxed(&p->has_ret, 1);
        pthread_mutex_unlock(&p->ret_lock);
        worker_kick(rx->w->rt, p->owner);
    }
    rec_unref(rx);
}

int urt_rx_close(urt_rx *rx)
{
    if (!rx)
        return -EINVAL;
    urt_worker *w = urt__cur_worker();
    if (w != rx->w)
        return -EXDEV;
    rx->closing = true;
    rx_unstarve(rx);
    if (rx->armed && !rx->cancel_sent) {
        ring_cancel_data(&w->ring, rec_data(rx));
        rx->cancel_sent = true;
    }
    /* an armed receive would go on taking data the caller may read next
     * with something else: wait for its last CQE */
    wait_disarmed(w, &rx->armed, &rx->waiter);
    while (rx->qn) {
        buf_home(rx->pool, rx_pop(rx).bid);
        at_fsub_relaxed(&rx->held, 1);
    }
    wake_starved(rx->pool);
    rec_unref(rx);
    return 0;
}
