/*
 * atomic.h - the one place urt's lock-free code gets its atomics from, so a
 * TSan or model-checking build can swap them. Thin names over C11
 * <stdatomic.h>; every use site names its pairing in a comment.
 */
#ifndef URT_QUEUES_ATOMIC_H
#define URT_QUEUES_ATOMIC_H

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define URT_CACHELINE 64
#define urt_cacheline_aligned __attribute__((aligned(URT_CACHELINE)))

#define at_load_relaxed(p)      atomic_load_explicit((p), memory_order_relaxed)
#define at_load_acquire(p)      atomic_load_explicit((p), memory_order_acquire)
#define at_load_seqcst(p)       atomic_load_explicit((p), memory_order_seq_cst)
#define at_store_relaxed(p, v)  atomic_store_explicit((p), (v), memory_order_relaxed)
#define at_store_release(p, v)  atomic_store_explicit((p), (v), memory_order_release)
#define at_store_seqcst(p, v)   atomic_store_explicit((p), (v), memory_order_seq_cst)
#define at_xchg_acqrel(p, v)    atomic_exchange_explicit((p), (v), memory_order_acq_rel)
#define at_xchg_seqcst(p, v)    atomic_exchange_explicit((p), (v), memory_order_seq_cst)
#define at_fadd_relaxed(p, v)   atomic_fetch_add_explicit((p), (v), memory_order_relaxed)
#define at_fadd_acqrel(p, v)    atomic_fetch_add_explicit((p), (v), memory_order_acq_rel)
#define at_fadd_seqcst(p, v)    atomic_fetch_add_explicit((p), (v), memory_order_seq_cst)
#define at_fsub_relaxed(p, v)   atomic_fetch_sub_explicit((p), (v), memory_order_relaxed)
#define at_fsub_acqrel(p, v)    atomic_fetch_sub_explicit((p), (v), memory_order_acq_rel)
#define at_fsub_release(p, v)   atomic_fetch_sub_explicit((p), (v), memory_order_release)
#define at_fsub_seqcst(p, v)    atomic_fetch_sub_explicit((p), (v), memory_order_seq_cst)
#define at_for_relaxed(p, v)    atomic_fetch_or_explicit((p), (v), memory_order_relaxed)
#define at_for_acqrel(p, v)     atomic_fetch_or_explicit((p), (v), memory_order_acq_rel)
#define at_fand_acqrel(p, v)    atomic_fetch_and_explicit((p), (v), memory_order_acq_rel)
/* compare-exchange: *expected is updated on failure */
#define at_cas_acqrel(p, e, d)  atomic_compare_exchange_weak_explicit((p), (e), (d), memory_order_acq_rel, memory_order_acquire)
#define at_cas_strong_acqrel(p, e, d) atomic_compare_exchange_strong_explicit((p), (e), (d), memory_order_acq_rel, memory_order_acquire)
#define at_cas_seqcst(p, e, d)  atomic_compare_exchange_strong_explicit((p), (e), (d), memory_order_seq_cst, memory_order_seq_cst)
#if defined(URT_TSAN)
/* TSan does not model fences: a seq_cst read-modify-write on one shared word
 * orders the same way for the Dekker-style uses here, and TSan sees it */
extern _Atomic uint64_t urt__tsan_fence_word;
#define at_fence_seqcst()       ((void)atomic_fetch_add_explicit(&urt__tsan_fence_word, 0, memory_order_seq_cst))
#else
#define at_fence_seqcst()       atomic_thread_fence(memory_order_seq_cst)
#endif
#define at_fence_acquire()      atomic_thread_fence(memory_order_acquire)
#define at_fence_release()      atomic_thread_fence(memory_order_release)

static inline void at_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield" ::: "memory");
#endif
}

/* A test-and-set lock for short sections that are rarely contended (the
 * owned-task lists: one worker takes its own on every spawn and completion,
 * other threads now and then). Taking it is one exchange and giving it back
 * a plain release store, where a pthread mutex pays a second atomic (and a
 * call) to unlock. A waiter spins a while, then yields its CPU to whoever
 * holds the lock, so a holder that was preempted gets to run. */
typedef struct at_lock {
    _Atomic uint32_t held;
} at_lock;

static inline bool at_lock_try(at_lock *l)
{
    /* acquire: pairs with the release store of at_lock_give; we see what
     * the last holder wrote under the lock */
    return !atomic_exchange_explicit(&l->held, 1, memory_order_acquire);
}

static inline void at_lock_take(at_lock *l)
{
    while (!at_lock_try(l)) {
        for (unsigned i = 0; i < 64 && at_load_relaxed(&l->held); i++)
            at_cpu_relax();
        if (at_load_relaxed(&l->held))
            sched_yield();
    }
}

static inline void at_lock_give(at_lock *l)
{
    /* release: what we wrote under the lock comes before the next holder's
     * acquire exchange */
    at_store_release(&l->held, 0);
}

#endif
