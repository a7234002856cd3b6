/*
 * inject.c - the global run queue: a mutex and an intrusive singly linked
 * list, with an atomic length so that an empty queue costs a load, not a
 * lock.
 *
 * Protocol:
 *   - head, tail, and the next pointers of nodes while they are queued, are
 *     touched only under `lock`.
 *   - len is written only under `lock` (relaxed load of the old value, then
 *     store release) and read anywhere (inject_len, load acquire). A reader
 *     that sees len > 0 still has to take the lock to get a node, and may
 *     find the list empty by then; one that sees 0 may miss a node pushed a
 *     moment ago. The length is a hint; the lock is the truth.
 *   - A pusher links its batch before taking the lock, and a popper clears
 *     the next pointers of what it took after releasing it; the lock orders
 *     both against everybody else's use of the list.
 */
#include <stddef.h>

#include "queues/queues.h"

void inject_init(inject *q)
{
    pthread_mutex_init(&q->lock, NULL);
    q->head = NULL;
    q->tail = NULL;
    /* Relaxed: not shared yet. */
    at_store_relaxed(&q->len, 0);
}

void inject_destroy(inject *q)
{
    pthread_mutex_destroy(&q->lock);
}

/* Caller holds q->lock. */
static inline void set_len(inject *q, uint64_t len)
{
    /* Release: pairs with the acquire load in inject_len. A lock-free reader
     * that sees the new count also sees what this thread wrote before the
     * push; to take a node it still goes through the lock. */
    at_store_release(&q->len, len);
}

void inject_push_batch(inject *q, q_node *first, q_node *last, uint64_t n)
{
    if (n == 0)
        return;
    last->next = NULL;

    pthread_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = first;
    else
        q->head = first;
    q->tail = last;
    /* Relaxed load: len is written only under the lock we hold. */
    set_len(q, at_load_relaxed(&q->len) + n);
    pthread_mutex_unlock(&q->lock);
}

void inject_push(inject *q, q_node *n)
{
    inject_push_batch(q, n, n, 1);
}

unsigned inject_pop_batch(inject *q, q_node **out, unsigned max)
{
    if (max == 0 || inject_is_empty(q))
        return 0;

    unsigned got = 0;
    pthread_mutex_lock(&q->lock);
    q_node *n = q->head;
    while (n && got < max) {
        out[got++] = n;
        n = n->next;
    }
    q->head = n;
    if (!n)
        q->tail = NULL;
    if (got) {
        /* Relaxed load: len is written only under the lock we hold. */
        set_len(q, at_load_relaxed(&q->len) - got);
    }
    pthread_mutex_unlock(&q->lock);

    for (unsigned i = 0; i < got; i++)
        out[i]->next = NULL;
    return got;
}

q_node *inject_pop(inject *q)
{
    q_node *n;
    return inject_pop_batch(q, &n, 1) ? n : NULL;
}
