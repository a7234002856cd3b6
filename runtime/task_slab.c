/*
 * task_slab.c - where task headers come from: a per-worker cache of free
 * headers, so that a spawn on a worker and the free of a task that ran there
 * take no lock and no atomic, and malloc's arenas are not bounced between
 * threads (a task is often freed on another thread than the one that
 * spawned it: a plain thread's join drops the last reference, or another
 * worker stole and finished it).
 *
 * The memory is in chunks of SLAB_SLOTS header-sized slots, each chunk
 * aligned to its size, so a header finds its chunk by masking its address.
 * Slot 0 is the chunk's own head; it keeps which of the others are free as
 * a bitmap, and a spawn takes the lowest free slot of the cache's current
 * chunk. So headers are handed out in address order within a chunk,
 * whatever order tasks ended in. A free list threaded through the headers
 * (as this file once had) hands them out in the reverse order of their
 * frees; after a few thousand rounds of spawns that end out of order that
 * order is random, every header a spawn touches is a miss the prefetcher
 * cannot foresee, and spawn_many_local at 1 worker slowed from 190 to
 * 500-600 ns per task over 200 rounds.
 *
 *   cur      owner only: the chunk spawns take from, until it is full
 *   partial  owner only: a stack of the other chunks with a free slot (a
 *            chunk is on it iff it has a free slot and is not cur)
 *   chunks   owner only: every chunk, given back by runtime destroy
 *            (slab_destroy), after every task is gone
 *   a chunk's `remote` bitmap: slots freed by other threads (fetch-or,
 *            release). The free that turns it non-zero also pushes the
 *            chunk on the cache's `pending` stack (CAS, release). The owner,
 *            out of free slots, takes the whole stack with one exchange and
 *            each chunk's bits with another (acquire): no single pop, so no
 *            ABA, and a chunk is on the stack at most once (only the owner's
 *            exchange empties its bits, after it took the chunk off).
 *
 * A header remembers its home cache (t->slab_home: a worker's id), written
 * once when its chunk is made. Spawns from outside the workers (a plain
 * thread, a blocking job) share one more cache, the runtime's (slab_home =
 * nworkers), whose owner side is taken under rt->slab_lock; every free of
 * such a header goes through the remote bits. Without it, a plain thread
 * that spawns 10,000 tasks and joins them makes malloc grow and trim the
 * heap every round (the page faults showed in the profile).
 *
 * The checked build (URT_CHECKED) and any AddressSanitizer build bypass the
 * slab: there every header is malloc'd (slab_home = -1), and a freed one
 * waits in checked.c's quarantine with a DEAD magic, so a stale handle
 * aborts with a message and ASan reports any other use. A cache that hands
 * a header out again at once would defeat both (the next spawn would revive
 * the very address a stale handle points at); poisoning cached headers would
 * still catch the access but not the reuse.
 */
#include <stdint.h>
#include <stdlib.h>

#include "runtime/runtime.h"

#if URT_CHECKED || defined(__SANITIZE_ADDRESS__) || defined(URT_ASAN)
#define SLAB_ON 0
#else
#define SLAB_ON 1
#endif

#define SLAB_SLOTS  64u                                    /* one bitmap word */
#define CHUNK_BYTES (SLAB_SLOTS * sizeof(urt_task))

struct slab_chunk {
    uint64_t free;                       /* owner: bit i set: slot i is free (never bit 0) */
    struct slab_chunk *next_partial;     /* owner: in cache->partial */
    struct slab_chunk *next_all;         /* owner: in cache->chunks */
    _Atomic uint64_t remote urt_cacheline_aligned;   /* slots freed by other threads */
    struct slab_chunk *next_pending;     /* in cache->pending: written by the free that pushed it */
};

_Static_assert((CHUNK_BYTES & (CHUNK_BYTES - 1)) == 0, "a chunk is found by masking: a power of two");
_Static_assert(sizeof(struct slab_chunk) <= sizeof(urt_task), "the chunk's head fits slot 0");

static inline struct slab_chunk *chunk_of(urt_task *t)
{
    return (struct slab_chunk *)((uintptr_t)t & ~(uintptr_t)(CHUNK_BYTES - 1));
}

static inline unsigned slot_of(urt_task *t)
{
    return (unsigned)(((uintptr_t)t & (CHUNK_BYTES - 1)) / sizeof(urt_task));
}

static inline urt_task *slot(struct slab_chunk *ch, unsigned i) { return (urt_task *)ch + i; }

/* The cache's owner (or the holder of rt->slab_lock for the shared one). */
static void partial_push(slab_cache *c, struct slab_chunk *ch)
{
    ch->next_partial = c->partial;
    c->partial = ch;
}

/* Give a slot back: the owner side. */
static inline void chunk_put(slab_cache *c, struct slab_chunk *ch, uint64_t bits)
{
    if (!ch->free && ch != c->cur)
        partial_push(c, ch);   /* it was full: not on the stack */
    ch->free |= bits;
}

/* Take the slots other threads freed. */
static void drain_pending(slab_cache *c)
{
    /* acquire: pairs with the release CAS that pushed each chunk */
    struct slab_chunk *ch = at_load_relaxed(&c->pending) ? at_xchg_acqrel(&c->pending, NULL) : NULL;
    while (ch) {
        /* read before the exchange: a free after it may push the chunk
         * again, which rewrites this link */
        struct slab_chunk *next = ch->next_pending;
        /* acquire: pairs with the release fetch-or of each remote free; the
         * freeing thread's last writes to the header come before our reuse */
        chunk_put(c, ch, at_xchg_acqrel(&ch->remote, 0));
        ch = next;
    }
}

static struct slab_chunk *chunk_new(slab_cache *c, int home)
{
    struct slab_chunk *ch = aligned_alloc(CHUNK_BYTES, CHUNK_BYTES);
    if (!ch)
        return NULL;
    ch->free = ~(uint64_t)1;   /* every slot but the head's */
    at_store_relaxed(&ch->remote, 0);
    ch->next_partial = NULL;
    ch->next_all = c->chunks;
    c->chunks = ch;
    for (unsigned i = 1; i < SLAB_SLOTS; i++)
        slot(ch, i)->slab_home = home;   /* after the header's `name`: task_alloc leaves it */
    return ch;
}

static urt_task *cache_pop(slab_cache *c, int home)
{
    struct slab_chunk *ch = c->cur;
    if (!ch || !ch->free) {
        if (!c->partial)
            drain_pending(c);   /* (may refill cur itself) */
        if (!ch || !ch->free) {
            if (c->partial) {
                ch = c->partial;
                c->partial = ch->next_partial;
            } else if (!(ch = chunk_new(c, home))) {
                return NULL;
            }
            c->cur = ch;
        }
    }
    /* No prefetch of the next free slot: with spawns from a plain thread
     * the slot may be one a worker has just freed and still holds, and
     * taking it for writing early only moves the miss onto that worker */
    unsigned i = (unsigned)__builtin_ctzll(ch->free);
    ch->free &= ch->free - 1;
    return slot(ch, i);
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
    if (w)
        return cache_pop(&w->slab, (int)w->id);
    pthread_mutex_lock(&rt->slab_lock);
    t = cache_pop(&rt->slab, (int)rt->nworkers);
    pthread_mutex_unlock(&rt->slab_lock);
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
    struct slab_chunk *ch = chunk_of(t);
    uint64_t bit = (uint64_t)1 << slot_of(t);
    if (w && w->rt == rt && w->id == home) {
        chunk_put(c, ch, bit);
        return;
    }
    /* release half: our last writes to t come before the owner's reuse */
    if (at_for_acqrel(&ch->remote, bit))
        return;   /* the chunk is on the pending stack already */
    struct slab_chunk *top = at_load_relaxed(&c->pending);
    do {
        ch->next_pending = top;
        /* release: pairs with the acquire exchange in drain_pending */
    } while (!at_cas_acqrel(&c->pending, &top, ch));
}

void slab_destroy(slab_cache *c)
{
    struct slab_chunk *ch = c->chunks;
    while (ch) {
        struct slab_chunk *next = ch->next_all;
        free(ch);
        ch = next;
    }
    c->chunks = c->cur = c->partial = NULL;
    at_store_relaxed(&c->pending, NULL);
}
