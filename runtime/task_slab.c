/*
 * task_slab.c - where task headers come from: a per-worker cache of free
 * headers, so that a spawn on a worker and the free of a task that ran there
 * take no lock and no atomic, and malloc's arenas are not bounced between
 * threads (a task is often freed on another thread than the one that
 * spawned it: a plain thread's join drops the last reference, or another
 * worker stole and finished it).
 *
 *   free     owner only: a singly linked stack of free headers (node.next)
 *   remote   any thread: a Treiber stack (push: CAS, release) of headers of
 *            this worker freed elsewhere; the owner takes it whole with one
 *            exchange (acquire) when `free` is empty. No single pop, so no
 *            ABA: the exchange takes whatever list is there.
 *   chunks   owner only: the memory, SLAB_CHUNK headers per malloc, given
 *            back by runtime destroy (slab_destroy), after every task is gone
 *
 * A header remembers its home worker (t->slab_home); a header from a plain
 * thread's spawn (or a blocking job spawned outside the workers) comes from
 * malloc (slab_home = -1) and goes back with free.
 *
 * The checked build (URT_CHECKED) and any AddressSanitizer build bypass the
 * slab: there every header is malloc'd, and a freed one waits in checked.c's
 * quarantine with a DEAD magic, so a stale handle aborts with a message and
 * ASan reports any other use. A cache that hands a header out again at once
 * would defeat both (the next spawn would revive the very address a stale
 * handle points at); poisoning cached headers would still catch the access
 * but not the reuse.
 */
#include <stdlib.h>

#include "runtime/runtime.h"

#if URT_CHECKED || defined(__SANITIZE_ADDRESS__) || defined(URT_ASAN)
#define SLAB_ON 0
#else
#define SLAB_ON 1
#endif

#define SLAB_CHUNK 64u   /* headers per malloc */

typedef struct slab_chunk {
    struct slab_chunk *next;
} slab_chunk;

/* a chunk: its link, then SLAB_CHUNK headers, the first aligned as a header wants */
#define CHUNK_HEAD ((sizeof(slab_chunk) + _Alignof(urt_task) - 1) / _Alignof(urt_task) * _Alignof(urt_task))

static urt_task *refill(urt_worker *w)
{
    /* acquire: pairs with the release CAS in slab_free's remote push; the
     * freeing thread's last writes to each header come before our reuse */
    q_node *n = at_load_relaxed(&w->slab_remote) ? at_xchg_acqrel(&w->slab_remote, NULL) : NULL;
    if (n)
        return task_of(n);
    slab_chunk *c = malloc(CHUNK_HEAD + SLAB_CHUNK * sizeof(urt_task));
    if (!c)
        return NULL;
    c->next = w->slab_chunks;
    w->slab_chunks = c;
    urt_task *ts = (urt_task *)((char *)c + CHUNK_HEAD);
    for (unsigned i = 0; i + 1 < SLAB_CHUNK; i++)
        ts[i].node.next = &ts[i + 1].node;
    ts[SLAB_CHUNK - 1].node.next = NULL;
    return &ts[0];
}

urt_task *slab_alloc(urt_runtime *rt)
{
    urt_worker *w = SLAB_ON ? urt__cur_worker() : NULL;
    if (!w || w->rt != rt) {
        urt_task *t = malloc(sizeof(*t));
        if (t)
            t->slab_home = -1;
        return t;
    }
    urt_task *t = w->slab_free;
    if (!t && !(t = refill(w)))
        return NULL;
    w->slab_free = t->node.next ? task_of(t->node.next) : NULL;
    t->slab_home = (int)w->id;
    return t;
}

void slab_free(urt_task *t)
{
    if (t->slab_home < 0) {
        free(t);
        return;
    }
    urt_worker *home = &t->rt->workers[t->slab_home];
    if (urt__cur_worker() == home) {
        t->node.next = home->slab_free ? &home->slab_free->node : NULL;
        home->slab_free = t;
        return;
    }
    q_node *top = at_load_relaxed(&home->slab_remote);
    do {
        t->node.next = top;
        /* release: our last writes to t come before the owner's reuse */
    } while (!at_cas_acqrel(&home->slab_remote, &top, &t->node));
}

void slab_destroy(urt_worker *w)
{
    slab_chunk *c = w->slab_chunks;
    while (c) {
        slab_chunk *next = c->next;
        free(c);
        c = next;
    }
    w->slab_chunks = NULL;
    w->slab_free = NULL;
    at_store_relaxed(&w->slab_remote, NULL);
}
