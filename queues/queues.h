/*
 * queues.h - lock-free and lock-light structures of the scheduler. They know
 * nothing of tasks or rings: every queue holds intrusive `q_node`s that the
 * runtime embeds in its task header (one node per task; a task is in at most
 * one queue at a time, which the runtime's task state guarantees).
 *
 *   lq       local run queue: fixed capacity, one owner pushes and pops,
 *            any thread steals half (after Tokio's queue.rs)
 *   inject   global queue: multi-producer multi-consumer, lock-free
 *            push and emptiness check, batch push / batch pop
 *   mailbox  per-worker multi-producer single-consumer list
 *   idle     who is searching, who is parked (after Tokio's idle.rs)
 */
#ifndef URT_QUEUES_H
#define URT_QUEUES_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "queues/atomic.h"

typedef struct q_node {
    struct q_node *next;
} q_node;

/* Reverse the NULL-terminated list that starts at n (a lock-free stack's
 * newest-first order into push order); returns its new first node. */
static inline q_node *q_reverse(q_node *n)
{
    q_node *rev = NULL;
    while (n) {
        q_node *next = n->next;
        n->next = rev;
        rev = n;
        n = next;
    }
    return rev;
}

/* ---- FIFO list, no synchronisation -------------------------------------- */

/* An intrusive FIFO of q_nodes for one owner (or the holder of some lock). */
typedef struct q_fifo {
    q_node *head, *tail;
} q_fifo;

static inline bool qf_empty(const q_fifo *f) { return f->head == NULL; }
static inline q_node *qf_peek(const q_fifo *f) { return f->head; }   /* the next qf_pop, left in place */

static inline void qf_push(q_fifo *f, q_node *n)
{
    n->next = NULL;
    if (f->tail)
        f->tail->next = n;
    else
        f->head = n;
    f->tail = n;
}

static inline q_node *qf_pop(q_fifo *f)
{
    q_node *n = f->head;
    if (n) {
        f->head = n->next;
        if (!f->head)
            f->tail = NULL;
    }
    return n;
}

/* Move everything in src to the end of dst; src ends empty. */
static inline void qf_append(q_fifo *dst, q_fifo *src)
{
    if (!src->head)
        return;
    if (dst->tail)
        dst->tail->next = src->head;
    else
        dst->head = src->head;
    dst->tail = src->tail;
    src->head = src->tail = NULL;
}

/* ---- local run queue (SPMC, steal half) -------------------------------- */

#ifndef URT_LQ_CAPACITY
#define URT_LQ_CAPACITY 256
#endif
_Static_assert((URT_LQ_CAPACITY & (URT_LQ_CAPACITY - 1)) == 0, "capacity is a power of two");

typedef struct inject inject;

typedef struct lq {
    /* head packs two 32-bit indices: (steal << 32) | real. Written by the
     * owner (pop) and by stealers (CAS). tail: written by the owner only. */
    _Atomic uint64_t head urt_cacheline_aligned;
    _Atomic uint32_t tail urt_cacheline_aligned;
    q_node *_Atomic buf[URT_LQ_CAPACITY] urt_cacheline_aligned;
} lq;

void lq_init(lq *q);
/* lq_init with every index starting at `start` instead of 0: lets tests run
 * the free-running u32 indices through their wrap at UINT32_MAX. */
void lq_init_at(lq *q, uint32_t start);
/* Owner only. Push n at the back; when the queue is full, move half of it plus
 * n to `overflow` in one batch. Returns the number of tasks moved to the
 * inject queue (0 in the common case). */
unsigned lq_push_owner(lq *q, q_node *n, inject *overflow);
/* Owner only. Pop from the front (FIFO); NULL when empty. */
q_node *lq_pop_owner(lq *q);
/* Any thread other than dst's owner steals half of src (rounded up) into dst,
 * which the caller owns and which must be empty enough (at most half full).
 * Returns one stolen task to run at once (NULL if nothing stolen) and sets
 * *count to the number stolen including it. */
q_node *lq_steal_into(lq *src, lq *dst_owner, unsigned *count);
/* Any thread: steal half of src (rounded up, at most max) into out[]. Returns
 * the count. Used by the watchdog to rescue a stuck worker's tasks. */
unsigned lq_steal_batch(lq *src, q_node **out, unsigned max);
/* Any thread; approximate when racing. */
unsigned lq_len(lq *q);
static inline bool lq_is_empty(lq *q) { return lq_len(q) == 0; }
/* Owner only: free slots. */
unsigned lq_remaining(lq *q);

/* ---- inject queue (MPMC) -------------------------------------------------- */

struct inject {
    q_node *_Atomic incoming;       /* pushers: a lock-free stack, newest first */
    _Atomic uint64_t len;           /* pushed and not popped (never below the truth) */
    pthread_mutex_t lock;           /* poppers */
    q_node *head, *tail;            /* under lock: a FIFO, taken from `incoming` */
};

void inject_init(inject *q);
void inject_destroy(inject *q);
void inject_push(inject *q, q_node *n);
/* Push a NULL-terminated, already linked list first..last of n nodes. */
void inject_push_batch(inject *q, q_node *first, q_node *last, uint64_t n);
q_node *inject_pop(inject *q);
/* Pop up to max nodes into out[], oldest first; returns the count. With
 * share > 0, no more than len / share + 1 of them (a worker's fair part
 * when `share` workers pull). */
unsigned inject_pop_batch(inject *q, q_node **out, unsigned max, unsigned share);
static inline uint64_t inject_len(inject *q) { return at_load_acquire(&q->len); }
static inline bool inject_is_empty(inject *q) { return inject_len(q) == 0; }

/* ---- mailbox (MPSC) ------------------------------------------------------- */

typedef struct mailbox {
    q_node *_Atomic top urt_cacheline_aligned;  /* Treiber stack, LIFO */
} mailbox;

void mb_init(mailbox *m);
/* Any thread. Returns true when the mailbox was empty before this push. */
bool mb_push(mailbox *m, q_node *n);
/* Owner only. Takes everything, returned in push (FIFO) order, NULL-terminated. */
q_node *mb_take_all(mailbox *m);
static inline bool mb_is_empty(mailbox *m) { return at_load_acquire(&m->top) == NULL; }

/* ---- idle set (after Tokio's idle.rs) ------------------------------------- */

typedef struct idle {
    /* (num_unparked << 16) | num_searching; read without the lock */
    _Atomic uint32_t state urt_cacheline_aligned;
    unsigned num_workers;
    pthread_mutex_t lock;
    unsigned *sleepers;             /* under lock: stack of parked worker ids */
    unsigned num_sleepers;          /* under lock */
    bool *is_sleeper;               /* under lock, indexed by worker id */
} idle;

int  idle_init(idle *s, unsigned num_workers);  /* all workers start unparked, none searching */
void idle_destroy(idle *s);
/* Somebody has work for a sleeper: if nobody is searching and some worker is
 * parked, pop one sleeper, count it as unparked and searching, return its id;
 * else -1. The caller then wakes that worker. */
int  idle_worker_to_notify(idle *s);
/* At most half the workers search at once. Returns true if the caller may
 * start searching (and counts it). */
bool idle_transition_to_searching(idle *s);
/* A searcher stops searching. Returns true when it was the last searcher
 * (then the caller should notify another sleeper if work is left). */
bool idle_transition_from_searching(idle *s);
/* Worker id goes to sleep. Returns true when it was the last searcher. */
bool idle_transition_to_parked(idle *s, unsigned id, bool is_searching);
/* Worker id woke by itself (its own I/O, a timer): if it is still on the
 * sleeper list, take it off and count it as unparked, return true. Returns
 * false if a notifier already took it off (it was counted as searching). */
bool idle_unpark_worker_by_id(idle *s, unsigned id);
bool idle_is_parked(idle *s, unsigned id);
unsigned idle_num_searching(idle *s);
unsigned idle_num_unparked(idle *s);

#endif /* URT_QUEUES_H */
