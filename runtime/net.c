/*
 * net.c - server-side I/O: a listener on multishot accept, and a receive
 * that takes buffers from the worker's provided-buffer ring (multishot recv).
 *
 * Both are "multishot records": heap objects tagged RING_TAG_MULTI whose
 * CQEs keep coming while IORING_CQE_F_MORE is set. A record lives while its
 * user holds it or the ring does (refs: one for the user, one while armed,
 * and for urt_rx one per buffer handed out). Their CQEs arrive on the ring
 * of the worker that armed them, which is the owning task's home (the task
 * is pinned), so every field of a record, refs included, is touched by that
 * one thread only: the task's fiber and the worker's CQE dispatch (a buffer
 * released elsewhere gives its ref back there, through the return list).
 *
 * Receive buffers (rx_pool, one per worker, made on first use):
 *   - the kernel holds `stock` of them (avail: how many it holds now) and
 *     takes one per CQE with IORING_CQE_F_BUFFER; the others wait on a
 *     free stack, most recently used on top, so the resident pages follow
 *     the buffers in flight, not the pool's size; stock doubles each time
 *     the kernel runs dry (POOL_STOCK_MIN first, at most rx_buffers);
 *   - urt_buf_release on the home worker puts it straight back (to the
 *     kernel while it holds fewer than stock, else on the free stack);
 *     released elsewhere, its rx and id go on the pool's return list (mutex)
 *     and the home worker is kicked when the list was empty; it drains the
 *     list in its loop (and urt_rx_recv before it counts what rx holds),
 *     giving back the buffer, its place under the cap and its ref on rx;
 *   - a receive that ends with -ENOBUFS (ring empty) waits on the pool's
 *     starved list and re-arms once buffers come back; the data stays in the
 *     socket meanwhile, nothing is lost;
 *   - one urt_rx holds at most URT_RX_MAX_HELD pool buffers (queued +
 *     handed out), and urt_rx_recv hands out at most that many chunks
 *     without a release. Three rules make the cap hold:
 *       1. each arm asks for no more than fits: a multishot recv with a byte
 *          limit (sqe->optlen, IORING_RECV_MSHOT_LIM, kernel 6.17+) of
 *          room x rx_buffer_size, room = cap - held. Data already waiting in
 *          the socket fills whole buffers, so the kernel itself ends the
 *          receive at the cap instead of taking what is there in one go;
 *       2. at the cap (or when the limit is reached) the multishot ends; the
 *          next urt_rx_recv after the caller released some re-arms it;
 *       3. a CQE that still arrives with no room (posted before the cancel
 *          took effect: small chunks under the byte limit, or a kernel
 *          without it) does not keep its buffer: its bytes are copied to the
 *          rx's spill (heap) and the buffer goes straight back to the ring.
 *          The spill is handed out, in order, as heap chunks (_bid
 *          RX_BID_HEAP, freed by urt_buf_release) once the caller released
 *          something, and no receive is armed while it holds bytes.
 *     Whether the kernel takes the limit is learnt from the first limited
 *     receive (older kernels refuse the SQE with -EINVAL; the receive is
 *     then armed again without it); URT_NO_RECV_LIMIT in the environment
 *     turns it off. When fewer than 1/8 of the buffers are left, a receiver
 *     whose owner is not waiting for data pauses as soon as it has
 *     something queued.
 *
 * A worker whose buffer ring cannot be registered (RLIMIT_MEMLOCK for a user
 * without CAP_IPC_LOCK, a kernel without provided-buffer rings) gets a pool
 * with no ring (bufs.br NULL) and says so once on stderr (urt__log: a full
 * pipe never blocks the worker). Its
 * urt_rx receive with one urt_recv per urt_rx_recv into a heap buffer of
 * rx_buffer_size, handed out as a heap chunk; the cap counts them the same.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "runtime/runtime.h"
#include "runtime/time.h"

enum { MR_LISTENER = 1, MR_RX = 2 };

/* Buffers the kernel holds at first; doubled each time it runs dry, up to
 * cfg.rx_buffers. The others wait on a free stack, so the pages that become
 * resident follow the most buffers ever in flight, not the pool's size (the
 * kernel takes buffers in ring order: given all of them, a single
 * connection would touch every one in turn). */
#define POOL_STOCK_MIN 64u

#define LQ_PAUSE 64   /* queued fds at which the multishot accept pauses */
_Static_assert((URT_RX_MAX_HELD & (URT_RX_MAX_HELD - 1)) == 0, "urt_rx's chunk ring is indexed with a mask");

/* urt_buf._bid of a chunk in heap memory (from the spill), not a pool buffer */
#define RX_BID_HEAP UINT32_MAX

/* Does the kernel take a byte limit on a multishot recv? Process-wide; any
 * worker may write it: UNKNOWN becomes YES (a limited receive delivered
 * data) or NO (one was refused with -EINVAL, or URT_NO_RECV_LIMIT), and a
 * YES is never changed. Relaxed: a stale value costs one refused SQE, or
 * one receive armed without the limit (rule 3 still holds the cap). */
enum { RECV_LIM_UNKNOWN = 0, RECV_LIM_YES = 1, RECV_LIM_NO = 2 };
static _Atomic uint32_t recv_limit;

/* What every multishot record starts with: the ring calls m.cqe for each of
 * its CQEs; kind tells the two records apart. */
typedef struct net_rec {
    ring_multi m;
    uint8_t kind;
} net_rec;

struct urt_listener {
    ring_multi m;                  /* net_rec: first */
    uint8_t kind;                  /* MR_LISTENER */
    uint32_t refs;
    urt_worker *w;
    int fd, flags;
    bool armed, closing;
    bool tracked;                  /* the armed accept is counted in fdtrack */
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

/* What a chunk's CQE, its receive and its release touch comes first, in the
 * record's first two cache lines (it is allocated on a line): the rest is
 * read only when a spill or a starved pool is in play. */
struct urt_rx {
    ring_multi m;                  /* net_rec: first */
    uint8_t kind;                  /* MR_RX */
    bool armed, cancel_sent, eof, closing, starving;
    bool tracked;                  /* the armed receive is counted in fdtrack */
    bool lim;                      /* the armed receive has a byte limit */
    uint32_t refs;
    /* buffers queued or handed out: +1 per buffer queued, -1 per buffer
     * back (released on rx's worker, or drained from the return list) */
    uint32_t held;
    urt_worker *w;
    rx_pool *pool;
    urt_task *waiter;
    int fd;
    int err;
    rx_chunk *q;                   /* ring of received chunks (pool buffers), never more
                                      than URT_RX_MAX_HELD: past it, CQEs go to the spill;
                                      qcap a power of two (a mask, not a division, per chunk) */
    unsigned qh, qn, qcap;
    size_t spill_len;              /* spill: [spill_off, spill_len) still to hand out */
    rx_chunk q0[URT_RX_MAX_HELD];  /* q's first ring, in the record: no line of its own */
    char *spill;                   /* bytes received with no room (rule 3), after q's */
    size_t spill_off, spill_cap;
    struct urt_rx *starved_next;
};

static uint64_t rec_data(void *rec) { return ring_tag(rec, RING_TAG_MULTI, 0); }

/* Buffers rx holds (queued or handed out); rx's worker only. A buffer
 * released elsewhere counts until the return list is drained: the count only
 * looks higher for a while (the cap holds; a receive is armed a little later). */
static inline uint32_t rx_held(const urt_rx *rx) { return rx->held; }

/* rx holds all it may, once buffers released elsewhere have left the count. */
static bool rx_at_cap(urt_rx *rx)
{
    if (rx->held < URT_RX_MAX_HELD)
        return false;
    net_pool_drain(rx->w);
    return rx->held >= URT_RX_MAX_HELD;
}

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
    bool old = t->shield, pinned = t->op_pending;
    t->shield = true;
    t->op_pending = true;   /* the record's CQEs come to w: resume here */
    *waiter = t;
    while (*armed)
        task_suspend(t, SW_PARK);
    *waiter = NULL;
    t->op_pending = pinned;
    t->shield = old;
}

static void rec_unref(void *rec)
{
    bool listener = ((net_rec *)rec)->kind == MR_LISTENER;
    uint32_t *refs = listener ? &((urt_listener *)rec)->refs : &((urt_rx *)rec)->refs;
    if (--*refs == 0) {   /* the home worker's only: no atomic */
        if (listener) {
            free(((urt_listener *)rec)->q);
        } else {
            urt_rx *rx = rec;
            if (rx->q != rx->q0)
                free(rx->q);
        }
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
            nq[i] = rx->q[(rx->qh + i) & (rx->qcap - 1)];
        if (rx->q != rx->q0)
            free(rx->q);
        rx->q = nq;
        rx->qh = 0;
        rx->qcap = ncap;
    }
    rx->q[(rx->qh + rx->qn++) & (rx->qcap - 1)] = c;
    return true;
}

static rx_chunk rx_pop(urt_rx *rx)
{
    rx_chunk c = rx->q[rx->qh];
    rx->qh = (rx->qh + 1) & (rx->qcap - 1);
    rx->qn--;
    return c;
}

/* Append n bytes to the spill; false when memory ran out. */
static bool spill_add(urt_rx *rx, const void *data, size_t n)
{
    if (rx->spill_len + n > rx->spill_cap) {
        size_t ncap = rx->spill_cap ? rx->spill_cap : 4096;
        while (ncap < rx->spill_len + n)
            ncap *= 2;
        char *ns = realloc(rx->spill, ncap);
        if (!ns)
            return false;
        rx->spill = ns;
        rx->spill_cap = ncap;
    }
    memcpy(rx->spill + rx->spill_len, data, n);
    rx->spill_len += n;
    return true;
}

static void spill_free(urt_rx *rx)
{
    free(rx->spill);
    rx->spill = NULL;
    rx->spill_off = rx->spill_len = rx->spill_cap = 0;
}

/* Hand out n bytes at mem (heap, the caller's from now on) as a chunk of rx. */
static ssize_t rx_give_heap(urt_rx *rx, urt_buf *buf, void *mem, size_t n)
{
    buf->data = mem;
    buf->len = n;
    buf->_rx = rx;
    buf->_bid = RX_BID_HEAP;
    rx->held++;
    rx->refs++;   /* the buffer's */
    return (ssize_t)n;
}

/* The next chunk of the spill, at most one buffer's size, as a heap chunk. */
static ssize_t spill_take(urt_rx *rx, urt_buf *buf)
{
    size_t n = rx->spill_len - rx->spill_off;
    if (n > rx->pool->bufs.size)
        n = rx->pool->bufs.size;
    void *mem = malloc(n);
    if (!mem)
        return -ENOMEM;
    memcpy(mem, rx->spill + rx->spill_off, n);
    rx->spill_off += n;
    if (rx->spill_off == rx->spill_len)
        spill_free(rx);
    return rx_give_heap(rx, buf, mem, n);
}

static urt_task *net_task(int *err)
{
    urt_task *t = urt__cur_task();
    if (urt__in_hook()) {
        *err = -EDEADLK;
        return NULL;
    }
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
    l->refs++;   /* the ring's */
    l->armed = true;
    l->cancel_sent = false;
    l->w->multi_inflight++;
    l->tracked = fdt_inc(l->w, l->fd);   /* a urt_close of fd on any worker ends it */
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

static void listener_cqe(ring_multi *m, int32_t res, uint32_t flags)
{
    urt_listener *l = (urt_listener *)m;
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
        if (l->tracked)
            fdt_dec(l->w, l->fd);
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
    l->m.cqe = listener_cqe;
    l->kind = MR_LISTENER;
    l->refs = 1;
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
    bool timer = false;
    int ret;
    for (;;) {
        if (l->qn) {
            ret = listener_pop(l);
            if (!l->armed && l->qn < LQ_PAUSE / 4 && !l->err)
                listener_arm(l);   /* paused: resume while some are still queued */
            break;
        }
        if (l->err) {
            ret = l->err;
            l->err = 0;
            break;
        }
        if (task_cancel_pending(t)) {
            ret = -ECANCELED;
            break;
        }
        if (timer ? task_timer_fired(t) : task_deadline_passed(t)) {
            ret = -ETIMEDOUT;   /* urt_deadline (the op timeout does not apply here) */
            break;
        }
        if (!l->armed)
            listener_arm(l);   /* the kernel ended it (an error, or a full CQ): again */
        if (!timer && t->deadline && !(timer = task_timer_start(t, false))) {
            ret = -EBUSY;
            break;
        }
        l->waiter = t;
        __atomic_store_n(&t->wait_what, "accept", __ATOMIC_RELAXED);
        __atomic_store_n(&t->wait_fd, l->fd, __ATOMIC_RELAXED);
        /* l and its queue are on the heap, the timer is t->timer: the wake writes no stack */
        hib_wait_begin(l->w, t, NULL);
        bool pinned = t->op_pending;
        t->op_pending = true;   /* a migratable task waits here: it must resume on l's worker */
        task_suspend(t, SW_PARK);
        t->op_pending = pinned;
        hib_wait_end(l->w, t);
        __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
        l->waiter = NULL;
    }
    if (timer)
        task_timer_finish(t);
    return ret;
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
    p->stock = n < POOL_STOCK_MIN ? n : POOL_STOCK_MIN;
    p->free = malloc((size_t)n * sizeof(*p->free));
    int r = p->free ? ring_bufs_init(&w->ring, &p->bufs, n, size, 1, p->stock) : -ENOMEM;
    if (r < 0) {
        /* no buffer ring here: this worker's urt_rx receive with plain recv */
        urt__log("urt: worker %u: cannot register its receive buffer ring (%s%s); "
                 "urt_rx on this worker falls back to plain recv\n",
                 w->id, strerror(-r), r == -ENOMEM ? ": RLIMIT_MEMLOCK too low?" : "");
        n = 0;
        p->stock = 0;
    }
    /* the buffers the kernel was not given wait on the free stack, lowest
     * ids (the first to be used again) on top */
    for (unsigned i = n; i > p->stock; i--)
        p->free[p->nfree++] = (uint16_t)(i - 1);
    pthread_mutex_init(&p->ret_lock, NULL);
    if (getenv("URT_NO_RECV_LIMIT"))
        at_store_relaxed(&recv_limit, RECV_LIM_NO);
    p->avail = p->stock;
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

/* Give the kernel buffers from the free stack (most recently used first)
 * until it holds `stock`. */
static void pool_refill(rx_pool *p)
{
    while (p->avail < p->stock && p->nfree) {
        ring_bufs_put(&p->bufs, p->free[--p->nfree]);
        p->avail++;
    }
}

/* Wake the receivers that waited longest, one per free buffer: waking them
 * all for one buffer would have most re-arm into -ENOBUFS again. */
static void wake_starved(rx_pool *p)
{
    pool_refill(p);
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
    if (p->avail < p->stock) {
        ring_bufs_put(&p->bufs, bid);
        p->avail++;
    } else {
        p->free[p->nfree++] = (uint16_t)bid;
    }
}

/* One buffer back home from the return list: to the pool, its place under
 * rx's cap and its ref on rx (the last frees rx). */
static void ret_home(rx_pool *p, rx_ret e)
{
    if (e.bid != RX_BID_HEAP)
        buf_home(p, e.bid);
    e.rx->held--;
    rec_unref(e.rx);
}

void net_pool_drain(urt_worker *w)
{
    rx_pool *p = w->rxp;
    if (!p || !at_load_relaxed(&p->has_ret))
        return;
    pthread_mutex_lock(&p->ret_lock);
    for (unsigned i = 0; i < p->nret; i++)
        ret_home(p, p->ret[i]);
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
    /* buffers released elsewhere since the last drain: their refs free what
     * nobody else holds */
    for (unsigned i = 0; i < p->nret; i++)
        ret_home(p, p->ret[i]);
    p->nret = 0;
    ring_bufs_fini(&w->ring, &p->bufs);
    free(p->free);
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
    /* rule 1: no more than the room under the cap (held < cap here; it only
     * drops meanwhile, on other threads) */
    rx->lim = at_load_relaxed(&recv_limit) != RECV_LIM_NO;
    if (rx->lim) {
        uint32_t room = URT_RX_MAX_HELD - rx_held(rx);
        sqe->file_index = room * rx->pool->bufs.size;   /* sqe->optlen in newer headers */
    }
    io_uring_sqe_set_data64(sqe, rec_data(rx));
    rx->refs++;   /* the ring's */
    rx->armed = true;
    rx->cancel_sent = false;
    rx->w->multi_inflight++;
    rx->tracked = fdt_inc(rx->w, rx->fd);   /* a urt_close of fd on any worker ends it */
}

static void rx_cqe(ring_multi *m, int32_t res, uint32_t flags)
{
    urt_rx *rx = (urt_rx *)m;
    rx_pool *p = rx->pool;
    if (flags & IORING_CQE_F_BUFFER) {
        unsigned bid = flags >> IORING_CQE_BUFFER_SHIFT;
        bool kept = false;
        p->avail--;
        if (p->avail < p->stock / 2)
            pool_refill(p);
        if (rx->lim && at_load_relaxed(&recv_limit) == RECV_LIM_UNKNOWN)
            at_store_relaxed(&recv_limit, RECV_LIM_YES);
        if (res > 0 && !rx->closing) {
            if (!rx->spill_len && rx_held(rx) < URT_RX_MAX_HELD) {
                kept = rx_push(rx, (rx_chunk){(uint16_t)bid, (uint32_t)res});
                if (kept)
                    rx->held++;
                else
                    rx->err = -ENOMEM;
            } else if (!spill_add(rx, ring_bufs_addr(&p->bufs, bid), (size_t)res)) {
                rx->err = -ENOMEM;   /* rule 3: no room, the bytes go to the spill */
            }
        }
        if (!kept) {
            buf_home(p, bid);   /* spilled, closing, an empty buffer, or no memory */
            wake_starved(p);
        }
    }
    if (res == 0) {
        rx->eof = true;
    } else if (res < 0) {
        if (res == -ENOBUFS) {
            /* the kernel ran dry: it gets more to hold from now on */
            if (p->stock < p->bufs.nbufs)
                p->stock = p->stock * 2 < p->bufs.nbufs ? p->stock * 2 : p->bufs.nbufs;
            pool_refill(p);
            if (!p->avail && !rx->closing)   /* a closing rx is not waited on: not on the list */
                starve_push(p, rx);
        } else if (res == -EINVAL && rx->lim && !(flags & IORING_CQE_F_BUFFER) &&
                   at_load_relaxed(&recv_limit) != RECV_LIM_YES) {
            /* a kernel without the byte limit refused the SQE: the next
             * urt_rx_recv arms again without it */
            at_store_relaxed(&recv_limit, RECV_LIM_NO);
        } else if (!(res == -ECANCELED && rx->cancel_sent)) {
            rx->err = res;
        }
    }
    /* at the cap, spilling, or when buffers run short while the owner is busy
     * elsewhere (not consuming): pause the receive; the data waits in the socket */
    if ((flags & IORING_CQE_F_MORE) && !rx->cancel_sent &&
        (rx_held(rx) >= URT_RX_MAX_HELD || rx->spill_len ||
         (!rx->waiter && rx->qn && p->avail + p->nfree < p->bufs.nbufs / 8))) {
        ring_cancel_data(&rx->w->ring, rec_data(rx));
        rx->cancel_sent = true;
    }
    if (!(flags & IORING_CQE_F_MORE)) {
        rx->armed = false;
        rx->w->multi_inflight--;
        if (rx->tracked)
            fdt_dec(rx->w, rx->fd);
        if (rx->waiter)
            task_wake(rx->waiter);
        rec_unref(rx);
        return;
    }
    if (rx->waiter)
        task_wake(rx->waiter);
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
    urt_rx *rx = aligned_alloc(64, (sizeof(*rx) + 63) & ~(size_t)63);
    if (!rx)
        return -ENOMEM;
    memset(rx, 0, sizeof(*rx));
    rx->qcap = URT_RX_MAX_HELD;
    rx->q = rx->q0;
    rx->m.cqe = rx_cqe;
    rx->kind = MR_RX;
    rx->refs = 1;
    rx->w = w;
    rx->pool = p;
    rx->fd = fd;
    *out = rx;   /* armed on the first urt_rx_recv: an idle connection holds nothing */
    return 0;
}

/* A worker without a buffer ring: one urt_recv per chunk into a heap
 * buffer. urt_recv does the waiting, cancellation and urt_op_timeout. */
static ssize_t rx_recv_plain(urt_rx *rx, urt_buf *buf)
{
    if (rx->eof)
        return 0;
    if (rx_at_cap(rx))
        return -ENOBUFS;
    size_t size = rx->w->rt->cfg.rx_buffer_size;
    void *mem = malloc(size);
    if (!mem)
        return -ENOMEM;
    ssize_t n = urt_recv(rx->fd, mem, size, 0);
    if (n <= 0) {
        free(mem);
        if (n == 0)
            rx->eof = true;
        return n;
    }
    return rx_give_heap(rx, buf, mem, (size_t)n);
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
    if (!rx->pool->bufs.br)
        return rx_recv_plain(rx, buf);
    bool timer = false;            /* t->timer is armed: the op timeout or deadline */
    ssize_t ret;
    for (;;) {
        if (rx->qn) {
            rx_chunk c = rx_pop(rx);
            buf->data = ring_bufs_addr(&rx->pool->bufs, c.bid);
            buf->len = c.len;
            buf->_rx = rx;
            buf->_bid = c.bid;
            rx->refs++;   /* the buffer's */
            ret = (ssize_t)c.len;
            break;
        }
        if (rx->spill_len) {
            /* after q's chunks, before anything newer; no receive is armed meanwhile */
            ret = rx_at_cap(rx) ? -ENOBUFS : spill_take(rx, buf);
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
        if (timer && task_timer_fired(t)) {
            ret = -ETIMEDOUT;
            break;
        }
        if (task_cancel_pending(t)) {
            ret = -ECANCELED;
            break;
        }
        if (!rx->armed && !rx->eof) {
            if (rx_at_cap(rx)) {
                ret = -ENOBUFS;   /* the caller holds every buffer it may: release some */
                break;
            }
            net_pool_drain(w);   /* buffers released elsewhere, before the refill */
            pool_refill(rx->pool);
            if (rx->pool->avail)
                rx_arm(rx);
            else
                starve_push(rx->pool, rx);
        }
        if (!timer && task_bound(t, true) && !(timer = task_timer_start(t, true))) {
            ret = -EBUSY;
            break;
        }
        rx->waiter = t;
        __atomic_store_n(&t->wait_what, "rx", __ATOMIC_RELAXED);
        __atomic_store_n(&t->wait_fd, rx->fd, __ATOMIC_RELAXED);
        hib_wait_begin(w, t, NULL);   /* rx is on the heap, the timer is t->timer: the wake writes no stack */
        bool pinned = t->op_pending;
        t->op_pending = true;   /* a migratable task waits here: it must resume on rx's worker */
        task_suspend(t, SW_PARK);
        t->op_pending = pinned;
        hib_wait_end(w, t);
        __atomic_store_n(&t->wait_what, NULL, __ATOMIC_RELAXED);
        rx->waiter = NULL;
    }
    rx_unstarve(rx);
    if (timer)
        task_timer_finish(t);
    return ret;
}

urt_worker *net_buf_home(const urt_buf *buf, size_t *cap)
{
    const urt_rx *rx = buf->_rx;
    /* a heap chunk (spill, or the ring-less path) is at most this big too */
    *cap = rx->pool->bufs.br ? rx->pool->bufs.size : rx->w->rt->cfg.rx_buffer_size;
    return rx->w;
}

void urt_buf_release(urt_buf *buf)
{
    if (!buf || !buf->_rx)
        return;
    urt_rx *rx = buf->_rx;
    rx_pool *p = rx->pool;
    unsigned bid = buf->_bid;
    void *data = buf->data;
    buf->_rx = NULL;
    buf->data = NULL;
    urt_worker *w = urt__cur_worker();
    if (w && w == rx->w) {
        if (bid == RX_BID_HEAP) {
            free(data);   /* a heap chunk: nothing goes back to the ring */
        } else {
            buf_home(p, bid);
            wake_starved(p);
        }
        rx->held--;
        rec_unref(rx);
        return;
    }
    /* another thread: the buffer travels home through the return list, and
     * the home worker gives back its place under the cap and its ref on rx */
    if (bid == RX_BID_HEAP)
        free(data);
    /* read before the push: once the entry is on the list, the home worker
     * may drain it and free rx */
    urt_runtime *rt = rx->w->rt;
    pthread_mutex_lock(&p->ret_lock);
    if (p->nret == p->retcap) {
        unsigned ncap = p->retcap ? p->retcap * 2 : 64;
        rx_ret *n = realloc(p->ret, ncap * sizeof(*n));
        if (n) {
            p->ret = n;
            p->retcap = ncap;
        }
    }
    /* out of memory: the entry is lost (the buffer to the ring, rx's memory
     * and its place under the cap: the receive ends in -ENOBUFS at the cap) */
    bool kick = p->nret == 0;
    if (p->nret < p->retcap)
        p->ret[p->nret++] = (rx_ret){rx, bid};
    at_store_relaxed(&p->has_ret, 1);
    pthread_mutex_unlock(&p->ret_lock);
    if (kick)   /* the list was empty: the home worker may be parked without it */
        worker_kick(rt, p->owner);
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
        rx->held--;
    }
    spill_free(rx);
    wake_starved(rx->pool);
    rec_unref(rx);
    return 0;
}
