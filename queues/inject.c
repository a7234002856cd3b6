/*
 * inject.c - the global run queue: many threads push, any worker pops.
 *
 * Pushers never take a lock: they push onto `incoming`, a lock-free stack
 * (one CAS), so a plain thread spawning in a loop never sleeps on a lock a
 * worker holds while it pops (with one mutex for both sides, the pop's
 * unlock woke the blocked pusher with a futex call, ~10% of such a run).
 * Poppers take `lock` and pop from `head..tail`, a FIFO; when it runs out
 * they take the whole stack with one exchange and reverse it onto the FIFO.
 *
 * Order: the stack holds nodes newest first, so reversing it restores push
 * order, and a stack taken later holds only nodes pushed after the ones of
 * an earlier take. A batch push (first..last, in order) is reversed before
 * it goes on the stack so that it comes out in its own order. Nodes come
 * out in the order their pushes took effect.
 *
 * Protocol:
 *   - incoming: a pusher links its nodes, then CASes them on (release); a
 *     popper takes the whole stack with an exchange (acquire), so it sees
 *     the next pointers written before the push. No single-node pop from
 *     the stack, so no ABA.
 *   - head, tail, and the next pointers of nodes on the FIFO, only under
 *     `lock`.
 *   - len counts every node pushed and not popped. A pusher adds before its
 *     CAS and a popper subtracts after it took nodes, so len is never below
 *     the true count (a popper that trusts len > 0 may still find nothing
 *     and return 0). A pusher's add comes before the caller's seq_cst fence,
 *     so a worker that announces its sleep, fences, and reads len 0 cannot
 *     miss a push whose pusher then saw it awake (worker.c).
 *   - A popper clears the next pointers of what it took after unlocking.
 *   - Cost of the add-first order: a pusher preempted between its add and
 *     its CAS leaves len > 0 with nothing to pop, and idle workers then
 *     loop without parking (each pop finds nothing) until it runs again. A
 *     wake is never lost. Adding after the CAS instead would let a popper
 *     subtract first and len wrap, which breaks the sleepers' check.
 */
#include <stddef.h>

#include "queues/queues.h"

void inject_init(inject *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = NULL;
    q->tail = NULL;
    /* Relaxed: not shared yet. */
    at_store_relaxed(&q->incoming, NULL);
    at_store_relaxed(&q->len, 0);
}

void inject_destroy(inject *q)
{
    pthread_mutex_destroy(&q->lock);
}

/* top..bottom, already linked newest first: onto the stack. */
static void push_stack(inject *q, q_node *top, q_node *bottom)
{
    q_node *old = at_load_relaxed(&q->incoming);
    do {
        bottom->next = old;
        /* release: the links written above come before a popper's acquire
         * exchange that takes them */
    } while (!at_cas_acqrel(&q->incoming, &old, top));
}

void inject_push_batch(inject *q, q_node *first, q_node *last, uint64_t n)
{
    if (n == 0)
        return;
    last->next = NULL;
    /* relaxed: only a count; the CAS below publishes the nodes, and the
     * caller's fence orders the add before its look at the sleepers */
    at_fadd_relaxed(&q->len, n);
    /* reversed, so that the stack gives it back in order */
    q_reverse(first);
    push_stack(q, last, first);
}

void inject_push(inject *q, q_node *n)
{
    at_fadd_relaxed(&q->len, 1);
    push_stack(q, n, n);
}

/* Under q->lock: move the stack, reversed, to the FIFO's tail. */
static void take_incoming(inject *q)
{
    if (!at_load_relaxed(&q->incoming))
        return;
    /* acquire: pairs with the release CAS in push_stack */
    q_node *s = at_xchg_acqrel(&q->incoming, NULL);
    q_node *end = s, *fifo = q_reverse(s);
    if (!fifo)
        return;
    if (q->tail)
        q->tail->next = fifo;
    else
        q->head = fifo;
    q->tail = end;   /* the newest: the stack's top before reversing */
}

unsigned inject_pop_batch(inject *q, q_node **out, unsigned max, unsigned share)
{
    if (max == 0 || inject_is_empty(q))
        return 0;

    pthread_mutex_lock(&q->lock);
    if (share) {
        /* a fair share of what is queued now, the stack included (its
         * pushers added to len first): len / share + 1 */
        uint64_t fair = at_load_relaxed(&q->len) / share + 1;
        if (fair < max)
            max = (unsigned)fair;
    }
    unsigned got = 0;
    q_node *n = q->head;
    for (;;) {
        while (n && got < max) {
            out[got++] = n;
            n = n->next;
        }
        if (n || got == max)
            break;
        /* the FIFO ran out (or was empty) before max: take the stack */
        q->head = q->tail = NULL;
        take_incoming(q);
        n = q->head;
        if (!n)
            break;
    }
    q->head = n;
    if (!n)
        q->tail = NULL;
    if (got) {
        /* relaxed: a count; pushers add to it concurrently */
        at_fsub_relaxed(&q->len, got);
    }
    pthread_mutex_unlock(&q->lock);

    for (unsigned i = 0; i < got; i++)
        out[i]->next = NULL;
    return got;
}

q_node *inject_pop(inject *q)
{
    q_node *n;
    return inject_pop_batch(q, &n, 1, 0) ? n : NULL;
}
