/*
 * group.c - urt_group: a set of tasks that ends together (Tokio's JoinSet, a
 * nursery). The group spawns its members, holds their join handles (the user
 * never sees them), hands them out in the order they end, and never lets one
 * outlive it.
 *
 * Members and their completion. Each member has a record (gmember) on the
 * heap, holding the member's handle and a urt_waiter whose on_wake hook is
 * member_done. The group publishes that waiter in the task's `joiner` slot,
 * the same slot urt_join uses (task.c), so task_complete calls member_done
 * exactly once when the member ends; no second completion path exists. If
 * the member ended before the group could publish the waiter (the CAS finds
 * JOINER_DONE), the spawner moves it to the done list itself.
 *
 * Lists, all under g->lock:
 *   run   members still running (doubly linked: member_done unlinks any one)
 *   done  members that ended and are not collected yet (FIFO)
 *   q     the one task or thread waiting in urt_group_next or destroy
 * `len` (run + done) is also kept in an atomic so urt_group_len needs no lock.
 *
 * Collecting (urt_group_next): one caller at a time (`busy`; a second gets
 * -EBUSY). A done member is taken at once; otherwise the caller waits on q
 * through sync_wait (sync.h), which gives op timeouts, deadlines and
 * cancellation for free. member_done only wakes it: the member stays on the
 * done list until the collector takes it under the lock, so a collector that
 * gave up (-ECANCELED, -ETIMEDOUT) loses nothing. Taking a member is a
 * urt_join of a complete task: it returns at once with the task's value or
 * -ECANCELED, and frees the handle.
 *
 * Spawning: urt_spawn runs outside g->lock (it allocates, may run the
 * runtime's spawn hook and takes other locks); `spawning` counts the spawns
 * between their check and their link, and collectors and destroyers treat
 * them as running members. A spawn that links its member after destroy
 * closed the group cancels it itself.
 *
 * Destroy: close the group (urt_group_spawn says -ESHUTDOWN from then on, so
 * a member cannot add an unseen sibling), cancel every running member, wait
 * on q until run is empty and no spawn is in flight (member_done and a failed
 * spawn wake a destroyer only then), collect what is left. A task waits shielded from cancellation and with its op
 * timeout and deadline lifted: no member may outlive the group.
 *
 * Who may call: members are spawned from tasks only (the group takes its
 * runtime from the calling task; all members share one runtime); next and
 * destroy may also be called from plain threads, which block.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/sync.h"

typedef struct gmember {
    urt_waiter w;                  /* in the task's joiner slot; on_wake = member_done */
    struct urt_group *g;
    urt_task *t;                   /* the handle; consumed when collected */
    struct gmember *next, *prev;   /* in run (doubly) or done (next only); under g->lock */
} gmember;

struct urt_group {
    at_lock lock;
    gmember *run;                  /* under lock: running members */
    gmember *done, *done_tail;     /* under lock: ended, not collected, FIFO */
    size_t nrunning;               /* under lock */
    size_t spawning;               /* under lock: spawns between their two lock sections */
    _Atomic size_t len;            /* running + done: written under lock, read without */
    waitq q;                       /* under lock: the collector or destroyer */
    urt_runtime *rt;               /* under lock: the members' runtime, set by the first spawn */
    bool busy;                     /* under lock: a collector or destroyer is inside */
    bool wait_all;                 /* under lock: the waiter is a destroyer (wake it when run is empty) */
    bool closed;                   /* under lock: destroy has begun, spawns refused */
};

/* under g->lock */
static void run_unlink(urt_group *g, gmember *m)
{
    if (m->prev)
        m->prev->next = m->next;
    else
        g->run = m->next;
    if (m->next)
        m->next->prev = m->prev;
    m->next = m->prev = NULL;
}

/* under g->lock: a running member ended; wake the waiter if it waits for
 * it (its task's wake goes to wa, made once the lock is given back) */
static void move_to_done(urt_group *g, gmember *m, wake_after *wa)
{
    run_unlink(g, m);
    g->nrunning--;
    if (g->done_tail)
        g->done_tail->next = m;
    else
        g->done = m;
    g->done_tail = m;
    if (!waitq_empty(&g->q) && (!g->wait_all || (g->nrunning == 0 && g->spawning == 0)))
        waiter_wake_after(waitq_pop(&g->q), 0, wa);
}

/* task_complete's wake of the member's joiner waiter: any thread, after the
 * member's state says COMPLETE */
static void member_done(urt_waiter *w)
{
    gmember *m = (gmember *)((char *)w - offsetof(gmember, w));
    urt_group *g = m->g;
    wake_after wa = {0};
    at_lock_take(&g->lock);
    move_to_done(g, m, &wa);
    at_lock_give(&g->lock);
    wake_after_run(&wa);
}

/* under g->lock: the oldest ended member, off the done list */
static gmember *done_pop(urt_group *g)
{
    gmember *m = g->done;
    if (!m)
        return NULL;
    g->done = m->next;
    if (!g->done)
        g->done_tail = NULL;
    m->next = NULL;
    at_store_relaxed(&g->len, at_load_relaxed(&g->len) - 1);
    return m;
}

/* Hand out an ended member: its value and id; frees its record and handle. */
static int collect(gmember *m, void **ret, uint64_t *task_id)
{
    urt_task *t = m->t;
    if (task_id)
        *task_id = t->id;
    free(m);
    return urt_join(t, ret);   /* complete: returns at once, consumes the handle */
}

int urt_group_create(urt_group **out)
{
    if (!out)
        return -EINVAL;
    urt_group *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    *out = g;
    return 0;
}

int urt_group_spawn(urt_group *g, urt_fn fn, void *arg, const urt_spawn_opts *opts)
{
    if (!g || !fn)
        return -EINVAL;
    urt_task *cur = urt__cur_task();
    if (!cur)
        return -EPERM;
    gmember *m = calloc(1, sizeof(*m));
    if (!m)
        return -ENOMEM;
    m->g = g;
    m->w.on_wake = member_done;
    /* The spawn itself runs outside the lock (it allocates, may run the
     * spawn hook, takes other locks); `spawning` counts it meanwhile, so a
     * collector does not say -ECHILD and a destroyer does not return while
     * a member may still be added. The runtime is claimed first, so two
     * spawns from different runtimes cannot both pass the check. */
    at_lock_take(&g->lock);
    int r = g->closed ? -ESHUTDOWN : (g->rt && g->rt != cur->rt) ? -EINVAL : 0;
    bool claimed = false;
    if (r == 0) {
        claimed = !g->rt;
        g->rt = cur->rt;
        g->spawning++;
    }
    at_lock_give(&g->lock);
    if (r < 0) {
        free(m);
        return r;
    }
    r = urt_spawn_ex(cur->rt, &m->t, fn, arg, opts);
    wake_after wa = {0};
    at_lock_take(&g->lock);
    g->spawning--;
    if (r < 0) {
        if (claimed && !g->spawning && !g->run && !g->done)
            g->rt = NULL;   /* as if this spawn had never been tried */
        /* a collector or destroyer waiting for this spawn: nothing comes */
        if (!waitq_empty(&g->q) && g->nrunning == 0 && g->spawning == 0)
            waiter_wake_after(waitq_pop(&g->q), 0, &wa);
        at_lock_give(&g->lock);
        wake_after_run(&wa);
        free(m);
        return r;
    }
    m->next = g->run;
    if (g->run)
        g->run->prev = m;
    g->run = m;
    g->nrunning++;
    at_store_relaxed(&g->len, at_load_relaxed(&g->len) + 1);
    /* destroy began meanwhile: its cancel pass did not see this member */
    if (g->closed)
        task_cancel(m->t);
    /* acq_rel: pairs with task_complete's exchange of the joiner slot; a
     * member_done that follows waits for our lock, so it sees m in run */
    urt_waiter *exp = NULL;
    if (!at_cas_strong_acqrel(&m->t->joiner, &exp, &m->w))
        move_to_done(g, m, &wa);   /* it has ended already (exp == JOINER_DONE) */
    at_lock_give(&g->lock);
    wake_after_run(&wa);
    return 0;
}

int urt_group_next(urt_group *g, void **ret, uint64_t *task_id)
{
    if (task_id)
        *task_id = 0;
    if (!g)
        return -EINVAL;
    urt_task *cur;
    int block_err;
    int r = sync_enter(&cur, &block_err);
    if (r < 0)
        return r;
    at_lock_take(&g->lock);
    if (g->busy) {
        at_lock_give(&g->lock);
        return -EBUSY;
    }
    for (;;) {
        gmember *m = done_pop(g);
        if (m) {
            at_lock_give(&g->lock);
            return collect(m, ret, task_id);
        }
        bool none = g->nrunning == 0 && g->spawning == 0;
        if (none || block_err) {
            /* decided under the lock: a spawn right after the unlock must
             * not turn -ECHILD into a 0 that hands back no member */
            int why = none ? -ECHILD : block_err;
            at_lock_give(&g->lock);
            return why;
        }
        g->busy = true;
        g->wait_all = false;
        urt_waiter w;
        memset(&w, 0, sizeof(w));
        w.task = cur;
        r = sync_wait(&g->lock, &g->q, &w, "group");
        at_lock_take(&g->lock);
        g->busy = false;
        if (r < 0) {
            at_lock_give(&g->lock);
            return r;   /* cancelled or timed out: what ended stays collectable */
        }
    }
}

int urt_group_cancel(urt_group *g)
{
    if (!g)
        return -EINVAL;
    at_lock_take(&g->lock);
    for (gmember *m = g->run; m; m = m->next)
        task_cancel(m->t);   /* wakes it at most; completion happens elsewhere */
    at_lock_give(&g->lock);
    return 0;
}

size_t urt_group_len(const urt_group *g)
{
    return g ? at_load_relaxed(&g->len) : 0;
}

int urt_group_destroy(urt_group *g)
{
    if (!g)
        return -EINVAL;
    urt_task *cur;
    int err = sync_caller(&cur);
    if (err < 0)
        return err;   /* a hook, or a worker thread outside a task: could not wait */
    urt_task *self = urt__cur_task();   /* also inside urt_block_in_place, where cur is NULL */
    at_lock_take(&g->lock);
    for (gmember *m = g->run; m && self; m = m->next) {
        if (m->t == self) {
            at_lock_give(&g->lock);
            return -EDEADLK;   /* a member would wait for itself */
        }
    }
    if (g->busy) {
        at_lock_give(&g->lock);
        return -EBUSY;
    }
    g->closed = true;
    for (gmember *m = g->run; m; m = m->next)
        task_cancel(m->t);
    if (g->nrunning || g->spawning) {
        bool shield = false;
        uint64_t op_to = 0, dl = 0;
        if (cur) {
            shield = urt_cancel_shield(true);
            op_to = urt_op_timeout(0);
            dl = urt_deadline(0);
        }
        while (g->nrunning || g->spawning) {
            g->busy = true;
            g->wait_all = true;
            urt_waiter w;
            memset(&w, 0, sizeof(w));
            w.task = cur;
            sync_wait(&g->lock, &g->q, &w, "group_destroy");   /* unbounded, shielded: only a wake ends it */
            at_lock_take(&g->lock);
            g->busy = false;
        }
        if (cur) {
            urt_deadline(dl);
            urt_op_timeout(op_to);
            urt_cancel_shield(shield);
        }
    }
    at_lock_give(&g->lock);
    /* every member has ended and member_done is finished with g (it held the
     * lock we took after it) */
    gmember *m;
    while ((m = done_pop(g)))
        collect(m, NULL, NULL);
    free(g);
    return 0;
}
