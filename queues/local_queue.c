/*
 * local_queue.c - the per-worker run queue: fixed capacity, one owner pushes
 * and pops at its two ends, any other thread steals half (after Tokio's
 * runtime/scheduler/multi_thread/queue.rs).
 *
 * Indices. `tail` and the two halves of `head` are free-running u32
 * positions; a position p lives in slot p & LQ_MASK. They are only ever
 * compared by unsigned difference, so they may wrap through UINT32_MAX.
 *
 *   head = (steal << 32) | real
 *     real   first position the owner may still pop; stealers claim by
 *            advancing it
 *     steal  first position whose slot may still be read by a stealer;
 *            equal to real except while a steal is copying
 *   tail   one past the last pushed position; written by the owner only
 *
 *   steal <= real <= tail,  tail - steal <= LQ_CAP   (all modulo 2^32)
 *
 * Positions [real, tail) hold queued nodes; positions [steal, real) are
 * being copied out by one stealer. The owner writes a position only while it
 * is below steal + LQ_CAP, so the slot it reuses last held a position below
 * steal, which no stealer reads any more.
 *
 * Who writes what:
 *   tail     the owner (store release); read by everyone (load acquire)
 *   head     the owner (pop CAS, overflow CAS) and stealers (claim and commit
 *            CAS); read by everyone
 *   buf      the owner, at positions in [tail, steal + LQ_CAP) (push, and
 *            the copy of lq_steal_into into its own queue); read by the owner
 *            (pop, overflow) and by the one stealer that claimed the position
 *
 * Steal, in three steps (steal_claim, the copy, steal_commit):
 *   1. load head; if steal != real another steal is under way: give up (one
 *      steal at a time per queue). Load tail, n = half of tail - real
 *      rounded up. CAS head (steal, real) -> (steal, real + n). The claimed
 *      nodes are now invisible to the owner's pop and to other stealers.
 *   2. copy slots [steal, steal + n) out.
 *   3. CAS head (steal, r) -> (r, r), r being whatever real is by then (the
 *      owner may have popped meanwhile). The slots are free for the owner.
 *
 * Owner pop: CAS head (steal, real) -> (steal, real + 1), or (real + 1,
 * real + 1) when no steal is under way, then read the slot.
 *
 * Owner push: if tail - steal < LQ_CAP, write slot tail and publish tail + 1.
 * Otherwise the queue is full:
 *   - steal != real: a stealer is about to free space; the new node goes
 *     alone to the inject queue;
 *   - else: CAS head (real, real) -> (real + LQ_CAP/2, real + LQ_CAP/2) to take
 *     the older half, link those nodes and the new one through q_node.next
 *     and push them to the inject queue in one batch. If the CAS fails a
 *     stealer got in first: start over.
 *
 * Orderings. Slots are atomics accessed relaxed; head and tail order them.
 *   - tail: the owner writes slots, then stores tail with release; a reader
 *     loads tail with acquire before reading slots below it.
 *   - head: every change is an acq_rel CAS, and every load that another
 *     thread's slot accesses depend on is acquire. Two facts ride on it:
 *     (a) whoever moves real forward has seen a tail at least that far (the
 *         owner wrote it; a stealer loaded it), and its release passes that
 *         on: a thread that acquires head and then loads tail never sees
 *         tail behind real;
 *     (b) a stealer's commit releases its reads of the copied slots; the
 *         owner's acquire load of head before it pushes orders its overwrite
 *         after them.
 */
#include <assert.h>
#include <stddef.h>

#include "queues/queues.h"

#define LQ_CAP  ((uint32_t)URT_LQ_CAPACITY)
#define LQ_MASK (LQ_CAP - 1)
#define LQ_HALF (LQ_CAP / 2)

_Static_assert(URT_LQ_CAPACITY >= 2, "a steal takes half, so at least two slots");
_Static_assert(URT_LQ_CAPACITY <= (1u << 30), "positions are compared by u32 difference");
_Static_assert(offsetof(lq, tail) - offsetof(lq, head) >= URT_CACHELINE,
               "head (shared) and tail (owner-written) on separate cache lines");
_Static_assert(offsetof(lq, buf) - offsetof(lq, tail) >= URT_CACHELINE,
               "tail and the slots on separate cache lines");

static inline uint64_t pack(uint32_t steal, uint32_t real)
{
    return ((uint64_t)steal << 32) | real;
}

static inline uint32_t head_steal(uint64_t head) { return (uint32_t)(head >> 32); }
static inline uint32_t head_real(uint64_t head)  { return (uint32_t)head; }

static inline q_node *slot_get(lq *q, uint32_t pos)
{
    /* Relaxed: the ordering comes from head and tail (see each caller). */
    return at_load_relaxed(&q->buf[pos & LQ_MASK]);
}

static inline void slot_set(lq *q, uint32_t pos, q_node *n)
{
    /* Relaxed: published by the release store of tail that follows. */
    at_store_relaxed(&q->buf[pos & LQ_MASK], n);
}

void lq_init_at(lq *q, uint32_t start)
{
    /* Relaxed: the queue is not shared yet; whatever hands it to other
     * threads (thread creation, a mutex) publishes these stores. */
    at_store_relaxed(&q->head, pack(start, start));
    at_store_relaxed(&q->tail, start);
    for (uint32_t i = 0; i < LQ_CAP; i++)
        at_store_relaxed(&q->buf[i], NULL);
}

void lq_init(lq *q)
{
    lq_init_at(q, 0);
}

/* ---- owner side --------------------------------------------------------- */

/* The queue is full and no steal is under way: move the older half and n to
 * the inject queue. Returns the number moved, or 0 when a stealer changed
 * head first (the caller starts over). */
static __attribute__((cold, noinline)) unsigned
push_overflow(lq *q, q_node *n, uint32_t real, uint32_t tail, inject *overflow)
{
    assert(tail - real == LQ_CAP);
    (void)tail;
    uint64_t expect = pack(real, real);
    /* Claim [real, real + LQ_HALF) for ourselves. The slots were written by
     * this thread, and every stealer whose reads we must not overtake has
     * committed with a release CAS that the acquire load of head in
     * lq_push_owner read, so no acquire is needed here. Release: fact (a) of
     * the protocol, pairs with the acquire load of head in steal_claim. */
    if (!at_cas_strong_acqrel(&q->head, &expect, pack(real + LQ_HALF, real + LQ_HALF)))
        return 0;

    /* The CAS made these slots ours: no stealer can claim below real. */
    q_node *first = slot_get(q, real);
    q_node *last = first;
    for (uint32_t i = 1; i < LQ_HALF; i++) {
        q_node *x = slot_get(q, real + i);
        last->next = x;
        last = x;
    }
    last->next = n;
    n->next = NULL;
    inject_push_batch(overflow, first, n, LQ_HALF + 1);
    return LQ_HALF + 1;
}

unsigned lq_push_owner(lq *q, q_node *n, inject *overflow)
{
    /* Relaxed: only this thread writes tail. */
    uint32_t tail = at_load_relaxed(&q->tail);

    for (;;) {
        /* Acquire: pairs with the release CAS of steal_commit. A stealer's
         * reads of the slots it copied happen before we overwrite them. */
        uint64_t head = at_load_acquire(&q->head);
        uint32_t steal = head_steal(head), real = head_real(head);

        if (tail - steal < LQ_CAP)
            break;
        if (steal != real) {
            /* A steal is copying out and will free room; we cannot take
             * half under it, so only this node overflows. */
            inject_push(overflow, n);
            return 1;
        }
        unsigned moved = push_overflow(q, n, real, tail, overflow);
        if (moved)
            return moved;
    }

    slot_set(q, tail, n);
    /* Release: publishes the slot written above. Pairs with the acquire load
     * of tail in steal_claim (and in lq_len). */
    at_store_release(&q->tail, tail + 1);
    return 0;
}

q_node *lq_pop_owner(lq *q)
{
    /* Relaxed: only this thread writes tail. */
    uint32_t tail = at_load_relaxed(&q->tail);
    /* Relaxed: the slot we pop was written by this thread, and a stale value
     * only makes the CAS below fail and reload. */
    uint64_t head = at_load_relaxed(&q->head);

    for (;;) {
        uint32_t steal = head_steal(head), real = head_real(head);
        if (real == tail)
            return NULL;
        uint32_t next_real = real + 1;
        /* With no steal under way both halves move; otherwise steal stays
         * where the stealer's commit expects it. */
        uint64_t next = steal == real ? pack(next_real, next_real) : pack(steal, next_real);
        /* Release: fact (a) of the protocol; a stealer that acquires this
         * head (steal_claim, lq_len) then sees our tail >= next_real.
         * Acquire on failure: the reloaded head comes with the same fact
         * from a stealer's claim, which this thread does not need but the
         * shim's CAS gives anyway. */
        if (at_cas_acqrel(&q->head, &head, next))
            return slot_get(q, real);
    }
}

unsigned lq_remaining(lq *q)
{
    /* Acquire: pairs with the release CAS of steal_commit, as in
     * lq_push_owner: a caller that pushes after seeing room overwrites only
     * slots whose stealer is done with them. */
    uint32_t steal = head_steal(at_load_acquire(&q->head));
    /* Relaxed: only the owner (this thread) writes tail. */
    uint32_t tail = at_load_relaxed(&q->tail);
    return LQ_CAP - (tail - steal);
}

/* ---- any thread ---------------------------------------------------------- */

unsigned lq_len(lq *q)
{
    /* Acquire on head: fact (a) of the protocol, pairs with the release CAS
     * that last moved real, so the tail loaded next is not behind real.
     * Acquire on tail: pairs with the release store in lq_push_owner and
     * lq_steal_into; a caller that sees nodes may go and steal them. */
    uint64_t head = at_load_acquire(&q->head);
    uint32_t tail = at_load_acquire(&q->tail);
    uint32_t len = tail - head_real(head);
    /* Pushes and pops between the two loads can make the difference exceed
     * the capacity for a racing reader. */
    return len > LQ_CAP ? LQ_CAP : len;
}

/* Step 1 of a steal: claim half of src's nodes (rounded up, at most max) by
 * advancing real. Returns the count and the first claimed position in
 * *first; 0 when src is empty or another steal is under way. */
static uint32_t steal_claim(lq *src, uint32_t max, uint32_t *first)
{
    /* Acquire: pairs with the release half of whichever CAS last moved real
     * (the owner's pop or overflow, another stealer's claim): fact (a), the
     * tail we load next is not behind real. Without it tail - real could
     * wrap to a huge count and claim slots that were never pushed. */
    uint64_t head = at_load_acquire(&src->head);

    for (;;) {
        uint32_t steal = head_steal(head), real = head_real(head);
        if (steal != real)
            return 0;

        /* Acquire: pairs with the release store of tail in lq_push_owner and
         * lq_steal_into; the slots below tail are written and visible. */
        uint32_t tail = at_load_acquire(&src->tail);
        uint32_t avail = tail - real;
        uint32_t n = avail - avail / 2;
        if (n > max)
            n = max;
        if (n == 0)
            return 0;

        /* Success means head did not change since our load, and the owner
         * keeps tail - real <= LQ_CAP while steal == real, so n <= LQ_HALF.
         * Release: fact (a) for the next thread to acquire head (we loaded a
         * tail >= real + n). Acquire on failure: the reloaded head is paired
         * as the load above, for the retry's tail load. */
        if (at_cas_acqrel(&src->head, &head, pack(steal, real + n))) {
            assert(n <= LQ_HALF);
            *first = real;
            return n;
        }
    }
}

/* Step 3 of a steal: move steal up to real, handing the copied slots back to
 * the owner. Nobody else changes steal while it differs from real; the owner
 * may still pop, which moves real, hence the loop. */
static void steal_commit(lq *src, uint32_t first, uint32_t n)
{
    uint64_t head = pack(first, first + n);

    for (;;) {
        assert(head_steal(head) == first);
        uint32_t real = head_real(head);
        /* Release: our reads of the claimed slots happen before the owner
         * reuses them. Pairs with the acquire load of head in lq_push_owner
         * (and in lq_steal_into, for a thread filling its own queue). */
        if (at_cas_acqrel(&src->head, &head, pack(real, real)))
            return;
    }
}

q_node *lq_steal_into(lq *src, lq *dst, unsigned *count)
{
    assert(src != dst);
    unsigned dummy;
    if (!count)
        count = &dummy;
    *count = 0;

    /* Relaxed: the caller owns dst and is the only writer of its tail. */
    uint32_t dst_tail = at_load_relaxed(&dst->tail);
    /* Acquire: pairs with the release CAS of steal_commit by a thread
     * stealing from dst: its reads of dst's slots happen before we write
     * them below. */
    uint32_t dst_steal = head_steal(at_load_acquire(&dst->head));

    /* A steal brings at most LQ_HALF nodes; with more than half of dst in
     * use (some of it possibly being copied out by a stealer) they might not
     * fit. */
    if (dst_tail - dst_steal > LQ_HALF)
        return NULL;

    uint32_t first;
    uint32_t n = steal_claim(src, LQ_HALF, &first);
    if (n == 0)
        return NULL;

    /* Step 2: copy. The claimed slots of src are ours to read until the
     * commit. In dst, positions [dst_tail, dst_tail + n - 1) are past tail,
     * so no stealer of dst reads them, and they stay below dst_steal + LQ_CAP,
     * so no slot a stealer of dst is copying gets overwritten. The last node
     * is not queued: it is returned to run at once. */
    for (uint32_t i = 0; i + 1 < n; i++)
        slot_set(dst, dst_tail + i, slot_get(src, first + i));
    q_node *ret = slot_get(src, first + n - 1);

    steal_commit(src, first, n);

    if (n > 1) {
        /* Release: publishes the slots written above to dst's owner-side
         * readers and stealers. Pairs with the acquire load of tail in
         * steal_claim and lq_len. */
        at_store_release(&dst->tail, dst_tail + n - 1);
    }
    *count = n;
    return ret;
}

unsigned lq_steal_batch(lq *src, q_node **out, unsigned max)
{
    if (max == 0)
        return 0;
    uint32_t first;
    uint32_t n = steal_claim(src, max, &first);
    for (uint32_t i = 0; i < n; i++)
        out[i] = slot_get(src, first + i);
    if (n)
        steal_commit(src, first, n);
    return n;
}
