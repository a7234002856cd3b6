/*
 * fdtrack.c - which rings have operations pending on an fd, so that
 * urt_close can end them all before the fd number is freed.
 *
 * Each worker counts, per fd, the ops of its tasks in flight on its ring
 * (one-shot ops while their task waits, multishot records while armed).
 * The counters are a two-level table: FDT_CHUNKS pointers to chunks of
 * FDT_CHUNK counters, allocated on first use by the owner and published
 * with a release store; only the owner writes a counter, anyone may read it
 * (relaxed: urt_close only needs to see ops started before it was called).
 * An fd past the table, or a chunk that could not be allocated, is simply
 * not tracked (urt_close then cancels on its own ring only).
 *
 * Close protocol (urt_close in a task on worker W, fd F):
 *   1. for every worker X whose counter for F is not 0: a close_part for X;
 *      W's own part is handled in place, the others go to X's control
 *      mailbox (and X's doorbell rings if it sleeps);
 *   2. X (on its own thread) queues an ASYNC_CANCEL of every op on F on its
 *      ring; the part is done once X's counter for F is 0 (at once, or when
 *      the last op on F there ends: fdt_dec looks at X's pending parts);
 *   3. the last part done wakes the closer, which then closes F. The fd
 *      number stays taken until every op on it has ended, so it cannot be
 *      reused under one.
 */
#include <errno.h>
#include <stdlib.h>

#include "runtime/runtime.h"

typedef struct close_req {
    int fd;
    urt_task *closer;
    _Atomic uint32_t left;         /* parts not done yet */
} close_req;

struct close_part {
    q_node node;                   /* in the target's control mailbox */
    close_req *req;
    int fd;
    struct close_part *next;       /* target's pending list (owner only) */
};

static _Atomic uint32_t *fdt_cell(urt_worker *w, int fd, bool make)
{
    if (fd < 0 || (unsigned)fd >= FDT_CHUNKS * FDT_CHUNK)
        return NULL;
    unsigned ci = (unsigned)fd / FDT_CHUNK;
    /* acquire: pairs with the release store below; the chunk's zeroes */
    _Atomic uint32_t *c = at_load_acquire(&w->fdt[ci]);
    if (!c && make) {
        c = calloc(FDT_CHUNK, sizeof(*c));
        if (!c)
            return NULL;
        at_store_release(&w->fdt[ci], c);
    }
    return c ? &c[(unsigned)fd % FDT_CHUNK] : NULL;
}

bool fdt_inc(urt_worker *w, int fd)
{
    _Atomic uint32_t *c = fdt_cell(w, fd, true);
    if (!c)
        return false;
    at_store_relaxed(c, at_load_relaxed(c) + 1);
    return true;
}

static void part_done(close_part *p)
{
    close_req *r = p->req;
    urt_task *closer = r->closer;   /* read before the decrement: r may vanish right after it */
    free(p);
    /* acq_rel: the closer's acquire load of left sees our cancel done */
    if (at_fsub_acqrel(&r->left, 1) == 1) {
        task_wake(closer);
        task_unref(closer);   /* the request's */
    }
}

void fdt_dec(urt_worker *w, int fd)
{
    _Atomic uint32_t *c = fdt_cell(w, fd, false);
    if (!c)
        return;
    uint32_t n = at_load_relaxed(c) - 1;
    at_store_relaxed(c, n);
    if (n || !w->close_pending)
        return;
    close_part **pp = &w->close_pending;
    while (*pp) {
        close_part *p = *pp;
        if (p->fd == fd) {
            *pp = p->next;
            part_done(p);
        } else {
            pp = &p->next;
        }
    }
}

bool fdt_closing(urt_worker *w, int fd)
{
    for (close_part *p = w->close_pending; p; p = p->next)
        if (p->fd == fd)
            return true;
    return false;
}

static uint32_t fdt_get(urt_worker *w, int fd)
{
    _Atomic uint32_t *c = fdt_cell(w, fd, false);
    return c ? at_load_relaxed(c) : 0;
}

/* On part's target worker: cancel every op on the fd; done now or later. */
static void part_start(urt_worker *w, close_part *p)
{
    if (fdt_get(w, p->fd) == 0) {
        part_done(p);
        return;
    }
    ring_cancel_fd(&w->ring, p->fd);
    worker_submit(w);
    p->next = w->close_pending;
    w->close_pending = p;
}

void fdt_drain_ctl(urt_worker *w)
{
    q_node *n = mb_take_all(&w->ctl);
    while (n) {
        q_node *next = n->next;
        part_start(w, (close_part *)n);
        n = next;
    }
}

void fdt_close_wait(urt_worker *w, urt_task *t, int fd)
{
    urt_runtime *rt = w->rt;
    close_req req = {.fd = fd, .closer = t};
    at_store_relaxed(&req.left, 1);   /* ours, dropped below once every part is out */
    task_ref(t);                      /* the request's, dropped by the last part_done */
    for (unsigned i = 0; i < rt->nworkers; i++) {
        urt_worker *x = &rt->workers[i];
        if (fdt_get(x, fd) == 0)
            continue;
        close_part *p = malloc(sizeof(*p));
        if (!p) {
            if (x == w)
                ring_cancel_fd(&w->ring, fd);   /* at least our own ring's */
            continue;
        }
        p->req = &req;
        p->fd = fd;
        at_fadd_relaxed(&req.left, 1);
        if (x == w) {
            part_start(w, p);
        } else {
            mb_push(&x->ctl, &p->node);
            worker_kick(rt, i);
        }
    }
    /* drop our own count; the last one out wakes us (or it is us) */
    if (at_fsub_acqrel(&req.left, 1) == 1) {
        task_unref(t);
        return;
    }
    /* acquire: pairs with the acq_rel decrement in part_done */
    while (at_load_acquire(&req.left))
        task_suspend(t, SW_PARK);
}

void fdt_destroy(urt_worker *w)
{
    for (unsigned i = 0; i < FDT_CHUNKS; i++)
        free((void *)at_load_relaxed(&w->fdt[i]));
}
