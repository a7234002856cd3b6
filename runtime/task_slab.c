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
 * A header remembers its home cache (t->slab_home: a worker's id). Spawns
 * from outside the workers (a plain thread, a blocking job) share one more
 * cache, the runtime's (slab_home = nworkers), whose `free` list is taken
 * under rt->slab_lock; its remote list is the same lock-free stack, and
 * every free of such a header goes there. Without it, a plain thread that
 * spawns 10,000 tasks and joins them makes malloc grow and trim the heap
 * every round (the page faults showed in the profile).
 *
 * The checked build (URT_CHECKED) and any AddressSanitizer build bypass the
 * slab: there every header is malloc'd (slab_home = -1), and a freed one
 * waits in checked.c's quarantine with a DEAD magic, so a stale handle
 * aborts with a message and ASan reports any other use. A cache that hands a header out again at once
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

struct slab_chunk {
    struct slab_chunk *next;
};

/* a chunk: its link, then SLAB_CHUNK headers, the first aligned as a header wants */
#define CHUNK_HEAD \
    ((sizeof(struct slab_chunk) + _Alignof(urt_task) - 1) / _Alignof(urt_task) * _Alignof(urt_task))

/* The cache's owner (or the holder of rt->slab_lock for the shared one). */
static urt_task *cache_pop(slab_cache *c)
{
    urt_task *t = c->free;
    if (!t) {
        /* acquire: pairs with the release CAS in slab_free's remote push;
         * the freeing thread's last writes to each header come before our
         * reuse */
        q_node *n = at_load_relaxed(&c->remote) ? at_xchg_acqrel(&c->remote, NULL) : NULL;
        if (n) {
            t = task_of(n);
        } else {
            struct slab_chunk *ch = aligned_alloc(_Alignof(urt_task), CHUNK_HEAD + SLAB_CHUNK * sizeof(urt_task));
            if (!ch)
                return NULL;
            ch->next = c->chunks;
            c->chunks = ch;
            urt_task *ts = (urt_task *)((char *)ch + CHUNK_HEAD);
            for (unsigned i = 0; i + 1 < SLAB_CHUNK; i++)
                ts[i].node.next = &ts[i + 1].node;
            ts[SLAB_CHUNK - 1].node.next = NULL;
            t = &ts[0];
        }
    }
    c->free = t->node.next ? task_of(t->node.next) : NULL;
    if (c->free)
        __builtin_prefetch(c->free, 1);   /* the next spawn's header: its miss overlaps this task's run */
    return t;
}

urt_task *slab_alloc(urt_runtime *rt, urt_worker *w)
{
    urt_task *t;
    if (!SLAB_ON) {
        t = aligned_alloc(_Alignof(urt_task), sizeof(*t));
        if (t)
            t->slab_home = -1;
        return t;
    }
    if (w) {
        t = cache_pop(&w->slab);
        if (t)
            t->slab_home = (int)w->id;
        return t;
    }
    pthread_mutex_lock(&rt->slab_lock);
    t = cache_pop(&rt->slab);
    pthread_mutex_unlock(&rt->slab_lock);
    if (t)
        t->slab_home = (int)rt->nworkers;
    return t;
}

void slab_free(urt_task *t)
{
    if (t->slab_home < 0) {
        free(t);
        return;
    }
    urt_runtime *rt = t->rt;
    unsigned home = (unsigned)t->slab_home;
    urt_worker *w = urt__cur_worker();
    slab_cache *c = home == rt->nworkers ? &rt->slab : &rt->workers[home].slab;
    if (w && w->rt == rt && w->id == home) {
        t->node.next = c->free ? &c->free->node : NULL;
        c->free = t;
        return;
    }
    q_node *top = at_load_relaxed(&c->remote);
    do {
        t->node.next = top;
        /* release: our last writes to t come before the owner's reuse */
    } while (!at_cas_acqrel(&c->remote, &top, &t->node));
}

void slab_destroy(slab_cache *c)
{
    struct slab_chunk *ch = c->chunks;
    while (ch) {
        struct slab_chunk *next = ch->next;
        free(ch);
        ch = next;
    }
    c->chunks = NULL;
    c->free = NULL;
    at_store_relaxed(&c->remote, NULL);
}
