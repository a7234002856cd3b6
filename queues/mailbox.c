/*
 * mailbox.c - a worker's inbox: many threads push, the owner takes everything
 * at once. A Treiber stack (LIFO) whose owner reverses what it takes, so the
 * owner sees each producer's nodes in the order that producer pushed them.
 *
 * Protocol:
 *   push      n->next = top; CAS top: old -> n (release), retry on failure
 *   take_all  exchange top with NULL (acquire), reverse the list
 *
 * There is no pop of a single node, so the stack has no ABA problem: a node
 * leaves only with the whole list, and a CAS that sees the same `top` twice
 * sees the same list.
 *
 * `top`: written by producers (CAS) and the owner (exchange); read by
 * producers and by mb_is_empty. A node's `next` is written by its producer
 * before the CAS that publishes it and read by the owner after the exchange.
 */
#include <stddef.h>

#include "queues/queues.h"

void mb_init(mailbox *m)
{
    /* Relaxed: not shared yet. */
    at_store_relaxed(&m->top, NULL);
}

bool mb_push(mailbox *m, q_node *n)
{
    /* Relaxed: only a guess for the first CAS, which reloads on failure. */
    q_node *top = at_load_relaxed(&m->top);
    do {
        n->next = top;
        /* Release: publishes n->next and whatever the caller wrote into the
         * node's container before pushing. Pairs with the acquire exchange
         * in mb_take_all (and the acquire load in mb_is_empty). Every change
         * of `top` is a read-modify-write, so the exchange synchronizes with
         * every push whose node it takes, not just the last one. The shim's
         * CAS also acquires, which a push does not need. */
    } while (!at_cas_acqrel(&m->top, &top, n));
    return top == NULL;
}

q_node *mb_take_all(mailbox *m)
{
    /* Relaxed: only spares the locked exchange when the mailbox looks
     * empty; the exchange below does the synchronizing. A push that lands
     * after this load is taken by the next call. */
    if (at_load_relaxed(&m->top) == NULL)
        return NULL;

    /* Acquire: pairs with the release CAS in mb_push: every node in the list
     * and its next pointer are visible. Release half unused. */
    q_node *n = at_xchg_acqrel(&m->top, NULL);

    /* The stack is newest first; reverse it into push order. */
    return q_reverse(n);
}
