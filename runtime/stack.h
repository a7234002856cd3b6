/*
 * stack.h - task stacks: mmap'd regions with a guard below, cached per
 * worker and pooled globally, and the stack-overflow reporter.
 *
 * Layout of one stack (addresses grow upwards):
 *   [base, base + guard)          guard region (MADV_GUARD_INSTALL, else PROT_NONE)
 *   [lo = base + guard, hi)       usable stack, hi = top (initial sp)
 */
#ifndef URT_RUNTIME_STACK_H
#define URT_RUNTIME_STACK_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define URT_STACK_DEFAULT (256u * 1024u)
#define URT_STACK_MIN     (16u * 1024u)
#define URT_STACK_GUARD   (64u * 1024u)   /* guard size; -fstack-clash-protection keeps frames from jumping it */

typedef struct urt_stack {
    void *base;       /* mmap start (guard included); NULL: no stack */
    size_t total;     /* mapped bytes, guard included */
    void *lo, *hi;    /* usable range */
} urt_stack;

/* Map a stack of at least `size` usable bytes (rounded up to pages). 0 or -ENOMEM. */
int  urt__stack_map(urt_stack *s, size_t size);
/* 0, or -errno when munmap failed (vm.max_map_count, a sealed mapping): then
 * the stack is still mapped and usable, and *s is left as it was. */
int  urt__stack_unmap(urt_stack *s);
/* Is addr inside s's guard region? */
bool urt__stack_guard_hit(const urt_stack *s, const void *addr);
/* Which guard mechanism this kernel gave: "madv_guard" or "mprotect". */
const char *urt__stack_guard_kind(void);

/* A global pool of free stacks of one size (the runtime default), shared by
 * workers under a mutex, and a small per-worker cache in front of it. */
typedef struct urt_stack_pool {
    pthread_mutex_t lock;
    size_t size;                /* usable size of pooled stacks */
    urt_stack *free;            /* under lock */
    unsigned nfree, cap;        /* under lock; cap: most kept, extra unmapped */
    unsigned dirty_max;         /* set after init, before use: pooled stacks that keep
                                   their pages (default 4) */
    struct stuck_stack *stuck;  /* under lock: stacks munmap refused, kept for reuse */
    unsigned long unmap_failures;   /* under lock: how many munmaps failed */
    pthread_mutex_t reg_lock;   /* the registry of the pool's mappings (resident bytes) */
    struct stack_reg_slot *reg; /* under reg_lock: open-addressing set keyed by base */
    size_t reg_cap, reg_n;      /* under reg_lock */
} urt_stack_pool;

#define URT_STACK_CACHE 64
typedef struct urt_stack_cache {    /* owner thread only */
    urt_stack s[URT_STACK_CACHE];
    unsigned n;
} urt_stack_cache;

int  urt__stack_pool_init(urt_stack_pool *p, size_t size, unsigned cap);
void urt__stack_pool_destroy(urt_stack_pool *p);      /* unmaps everything it holds */
/* Get a stack of size `size`: from the cache when size == pool size, else
 * the pool, else a fresh mapping. 0 or -ENOMEM. */
int  urt__stack_get(urt_stack_pool *p, urt_stack_cache *c, size_t size, urt_stack *out);
/* Give a stack back: to the cache, spilling half to the pool when full;
 * stacks of another size are unmapped. */
void urt__stack_put(urt_stack_pool *p, urt_stack_cache *c, urt_stack *s);
void urt__stack_cache_drain(urt_stack_pool *p, urt_stack_cache *c);
/* Bytes of the pool's stacks (in use, cached, pooled, stuck) whose pages
 * are resident now, by mincore(2) over every mapping the pool made. A
 * snapshot: stacks mapped or unmapped meanwhile may be missed. Any thread. */
size_t urt__stack_resident(urt_stack_pool *p);

/* Stack-overflow reporting. Each worker thread calls urt__overflow_thread_init
 * (an alternate signal stack) once; a process-wide SIGSEGV/SIGBUS handler is
 * installed once (chaining to the previous handler for faults that are not
 * guard hits). The worker keeps `urt__overflow_cur` pointing at the running
 * task's info; a fault inside that stack's guard prints
 * "urt: stack overflow in task <id> (<name>)" and aborts. */
typedef struct urt_overflow_info {
    const urt_stack *stack;
    uint64_t task_id;
    const char *name;
} urt_overflow_info;

int  urt__overflow_thread_init(void);    /* per thread: sigaltstack */
void urt__overflow_thread_fini(void);
void urt__overflow_install(void);        /* process-wide, idempotent, thread-safe */
void urt__overflow_set_current(const urt_overflow_info *info);  /* NULL: none */

#endif /* URT_RUNTIME_STACK_H */
