/*
 * stack.c - task stacks and the stack-overflow reporter.
 *
 * Mapping. A stack is one private anonymous mapping of guard + size bytes,
 * both rounded to pages, with the guard at the low end (stacks grow down):
 *   1. mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE|MAP_STACK);
 *   2. make [base, lo) inaccessible: madvise(MADV_GUARD_INSTALL) when the
 *      kernel has it (6.13+; the mapping stays one VMA), else
 *      mprotect(PROT_NONE) (the mapping becomes two VMAs, which counts
 *      against vm.max_map_count). Which one the kernel has is probed once, on
 *      a scratch mapping; a stack whose madvise fails anyway (an mlock'd
 *      address space, say) falls back to mprotect.
 * Every failure unmaps what was mapped and returns -ENOMEM.
 *
 * Reuse. Stacks of the pool's size live in three places:
 *   cache (per worker, owner only): a LIFO array, no lock, no syscalls.
 *     get: pop the top. Empty: take up to URT_STACK_CACHE/2 from the pool in
 *          one lock (refill); the pool empty too: map a fresh one.
 *     put: push. Full: move the bottom (coldest) half to the pool (spill).
 *   pool (global, under pool->lock): a bounded LIFO array. A spill or drain
 *     first reads how full the pool is, then releases the memory of every
 *     stack that would land at or above dirty_max (MADV_DONTNEED of the
 *     usable range, outside the lock), then takes the lock again and keeps
 *     as many as fit; stacks that fit nowhere are unmapped. So at most
 *     URT_STACK_CACHE dirty stacks per worker plus about dirty_max in
 *     the pool keep their pages; the rest cost address space only.
 *   in use: owned by one task.
 * A stack of any other size bypasses both: mapped on get, unmapped on put.
 * Unmap failures (munmap says ENOMEM at vm.max_map_count when it must split
 * a merged VMA, or EPERM for a sealed one) leave the stack mapped and whole:
 * it goes on the pool's `stuck` list (a node written at its own low end, so
 * no memory is needed) and is counted; a get of its size takes it first.
 *
 * Registry. Every mapping the pool makes is recorded (base and length) in
 * a small open-addressing hash set under its own lock, taken only where a
 * stack is mapped or unmapped (next to a syscall), never on a cached get or
 * put. urt__stack_resident copies the set and asks mincore(2) which pages of
 * each mapping are resident: the stacks' touched pages, in use or cached.
 * An unmap leaves the set first and comes back if munmap refused, so the
 * set never holds an address that a new mapping could also have.
 *
 * Overflow. One SIGSEGV/SIGBUS handler per process (installed once, with
 * SA_ONSTACK so that it runs on the worker's alternate signal stack, never on
 * the overflowed one). Each worker keeps `cur` (thread-local) pointing at the
 * running task's urt_overflow_info. On a fault:
 *   1. kernel-generated (si_code > 0) and si_addr inside cur's guard: write
 *      "urt: stack overflow in task <id> (<name>)" to fd 2 with one write(2),
 *      restore SIG_DFL and re-raise; the signal stays blocked until the
 *      handler returns, then kills the process;
 *   2. anything else goes to the handler that was installed before ours: its
 *      sa_sigaction or sa_handler if it had one, else SIG_DFL is restored and
 *      the signal re-raised, as the default disposition would have done.
 * The handler calls only async-signal-safe functions (write, sigaction,
 * raise) and reads `cur`, an initial-exec TLS variable.
 */
#include "runtime/stack.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if (defined(URT_ASAN) && URT_ASAN) || defined(__SANITIZE_ADDRESS__)
#define STACK_ASAN 1
#include <sanitizer/asan_interface.h>
#define STACK_UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define STACK_ASAN 0
#define STACK_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif

#define COLD __attribute__((cold, noinline))

/* Stacks in the pool below this index may keep their pages: a refill soon
 * reuses them. Stacks put higher have their memory released first. */
#define POOL_DIRTY_MAX 4u

/* ---- probe: page size and guard mechanism -------------------------------- */

enum guard_kind { GUARD_MPROTECT, GUARD_MADV };

static pthread_once_t probe_ctl = PTHREAD_ONCE_INIT;
static size_t page_sz;          /* written once under probe_ctl, then read-only */
static size_t guard_sz;         /* URT_STACK_GUARD rounded up to pages */
static enum guard_kind guard_kind;

static void probe_once(void)
{
    long pg = sysconf(_SC_PAGESIZE);

    page_sz = pg > 0 ? (size_t)pg : 4096;
    guard_sz = (URT_STACK_GUARD + page_sz - 1) & ~(page_sz - 1);
    guard_kind = GUARD_MPROTECT;

    void *m = mmap(NULL, 2 * page_sz, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return;
    /* EINVAL: the kernel does not know the advice. Any other error: treat
     * it the same way; mprotect always works. */
    if (madvise(m, page_sz, MADV_GUARD_INSTALL) == 0)
        guard_kind = GUARD_MADV;
    munmap(m, 2 * page_sz);
}

static inline void probe(void)
{
    pthread_once(&probe_ctl, probe_once);
}

const char *urt__stack_guard_kind(void)
{
    probe();
    return guard_kind == GUARD_MADV ? "madv_guard" : "mprotect";
}

/* Usable size for a request: 0 means URT_STACK_DEFAULT; at least
 * URT_STACK_MIN; page-rounded. */
static int usable_size(size_t size, size_t *out)
{
    probe();
    if (size == 0)
        size = URT_STACK_DEFAULT;
    else if (size < URT_STACK_MIN)
        size = URT_STACK_MIN;
    if (size > SIZE_MAX / 2 - guard_sz - page_sz)
        return -ENOMEM;
    *out = (size + page_sz - 1) & ~(page_sz - 1);
    return 0;
}

/* ---- one stack ----------------------------------------------------------- */

static int map_usable(urt_stack *s, size_t usable)
{
    size_t total = guard_sz + usable;
    char *base = mmap(NULL, total, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);

    if (base == MAP_FAILED) {
        memset(s, 0, sizeof *s);
        return -ENOMEM;
    }
    if (!(guard_kind == GUARD_MADV && madvise(base, guard_sz, MADV_GUARD_INSTALL) == 0) &&
        mprotect(base, guard_sz, PROT_NONE) != 0) {
        munmap(base, total);
        memset(s, 0, sizeof *s);
        return -ENOMEM;
    }
    s->base = base;
    s->total = total;
    s->lo = base + guard_sz;
    s->hi = base + total;
    return 0;
}

int urt__stack_map(urt_stack *s, size_t size)
{
    size_t usable;

    if (usable_size(size, &usable) < 0) {
        memset(s, 0, sizeof *s);
        return -ENOMEM;
    }
    return map_usable(s, usable);
}

int urt__stack_unmap(urt_stack *s)
{
    if (s->base) {
        STACK_UNPOISON(s->lo, (size_t)((char *)s->hi - (char *)s->lo));
        if (munmap(s->base, s->total) != 0)
            return -errno;
    }
    memset(s, 0, sizeof *s);
    return 0;
}

/* ---- registry ------------------------------------------------------------ */

struct stack_reg_slot {
    uintptr_t base;   /* 0: empty */
    size_t total;
};

static size_t reg_hash(uintptr_t base, size_t cap) { return (size_t)((base >> 12) * 0x9e3779b97f4a7c15ull) & (cap - 1); }

/* under reg_lock */
static void reg_put(struct stack_reg_slot *tab, size_t cap, uintptr_t base, size_t total)
{
    size_t i = reg_hash(base, cap);
    while (tab[i].base)
        i = (i + 1) & (cap - 1);
    tab[i].base = base;
    tab[i].total = total;
}

/* Record a mapping; on no memory it is just not counted. */
static void reg_add(urt_stack_pool *p, const urt_stack *s)
{
    pthread_mutex_lock(&p->reg_lock);
    if (2 * (p->reg_n + 1) > p->reg_cap) {
        size_t cap = p->reg_cap ? 2 * p->reg_cap : 64;
        struct stack_reg_slot *tab = calloc(cap, sizeof(*tab));
        if (!tab) {
            pthread_mutex_unlock(&p->reg_lock);
            return;
        }
        for (size_t i = 0; i < p->reg_cap; i++)
            if (p->reg[i].base)
                reg_put(tab, cap, p->reg[i].base, p->reg[i].total);
        free(p->reg);
        p->reg = tab;
        p->reg_cap = cap;
    }
    reg_put(p->reg, p->reg_cap, (uintptr_t)s->base, s->total);
    p->reg_n++;
    pthread_mutex_unlock(&p->reg_lock);
}

/* Forget a mapping (linear probing: later entries of its run shift back). */
static void reg_del(urt_stack_pool *p, const void *base)
{
    pthread_mutex_lock(&p->reg_lock);
    size_t cap = p->reg_cap, i = cap ? reg_hash((uintptr_t)base, cap) : 0;
    while (cap && p->reg[i].base && p->reg[i].base != (uintptr_t)base)
        i = (i + 1) & (cap - 1);
    if (cap && p->reg[i].base) {
        p->reg[i].base = 0;
        p->reg_n--;
        for (size_t j = (i + 1) & (cap - 1); p->reg[j].base; j = (j + 1) & (cap - 1)) {
            struct stack_reg_slot e = p->reg[j];
            p->reg[j].base = 0;
            reg_put(p->reg, cap, e.base, e.total);
        }
    }
    pthread_mutex_unlock(&p->reg_lock);
}

/* map_usable for the pool: the mapping is recorded */
static int pool_map(urt_stack_pool *p, urt_stack *s, size_t usable)
{
    int r = map_usable(s, usable);
    if (r == 0)
        reg_add(p, s);
    return r;
}

size_t urt__stack_resident(urt_stack_pool *p)
{
    pthread_mutex_lock(&p->reg_lock);
    size_t n = 0, cap = p->reg_cap;
    struct stack_reg_slot *copy = cap ? malloc(p->reg_n * sizeof(*copy) + 1) : NULL;
    for (size_t i = 0; copy && i < cap; i++)
        if (p->reg[i].base)
            copy[n++] = p->reg[i];
    pthread_mutex_unlock(&p->reg_lock);
    size_t bytes = 0;
    unsigned char vec[1024];
    for (size_t i = 0; i < n; i++) {
        /* in chunks of sizeof(vec) pages; a range unmapped meanwhile fails
         * with ENOMEM and counts nothing */
        for (size_t off = 0; off < copy[i].total; off += sizeof(vec) * page_sz) {
            size_t len = copy[i].total - off;
            if (len > sizeof(vec) * page_sz)
                len = sizeof(vec) * page_sz;
            if (mincore((void *)(copy[i].base + off), len, vec) != 0)
                break;
            for (size_t k = 0; k < (len + page_sz - 1) / page_sz; k++)
                bytes += (vec[k] & 1) ? page_sz : 0;
        }
    }
    free(copy);
    return bytes;
}

/* A stack munmap refused: its own memory holds the list node. */
struct stuck_stack {
    urt_stack s;
    struct stuck_stack *next;
};

/* Unmap s; if that fails keep it on the stuck list. */
static void pool_unmap(urt_stack_pool *p, urt_stack *s)
{
    reg_del(p, s->base);
    if (urt__stack_unmap(s) == 0)
        return;
    reg_add(p, s);   /* still mapped */
    struct stuck_stack *n = s->lo;
    n->s = *s;
    pthread_mutex_lock(&p->lock);
    n->next = p->stuck;
    p->stuck = n;
    p->unmap_failures++;
    pthread_mutex_unlock(&p->lock);
    memset(s, 0, sizeof *s);
}

/* A stuck stack of the pool's size, if there is one. */
static bool pool_pop_stuck(urt_stack_pool *p, urt_stack *out)
{
    bool got = false;
    pthread_mutex_lock(&p->lock);
    for (struct stuck_stack **pp = &p->stuck; *pp; pp = &(*pp)->next) {
        struct stuck_stack *n = *pp;
        if ((size_t)((char *)n->s.hi - (char *)n->s.lo) == p->size) {
            *pp = n->next;
            *out = n->s;
            got = true;
            break;
        }
    }
    pthread_mutex_unlock(&p->lock);
    return got;
}

bool urt__stack_guard_hit(const urt_stack *s, const void *addr)
{
    uintptr_t a = (uintptr_t)addr;

    return s->base && a >= (uintptr_t)s->base && a < (uintptr_t)s->lo;
}

static size_t stack_usable(const urt_stack *s)
{
    return (size_t)((char *)s->hi - (char *)s->lo);
}

/* Give the stack's pages back; the next touch reads zeroes. The guard
 * (either kind) survives MADV_DONTNEED, which is not applied to it anyway. */
static void release_pages(const urt_stack *s)
{
    madvise(s->lo, stack_usable(s), MADV_DONTNEED);
}

/* ---- pool ---------------------------------------------------------------- */

int urt__stack_pool_init(urt_stack_pool *p, size_t size, unsigned cap)
{
    size_t usable;
    int err;

    memset(p, 0, sizeof *p);
    p->dirty_max = POOL_DIRTY_MAX;
    if (usable_size(size, &usable) < 0)
        return -EINVAL;
    if (cap) {
        p->free = calloc(cap, sizeof *p->free);
        if (!p->free)
            return -ENOMEM;
    }
    err = pthread_mutex_init(&p->lock, NULL);
    if (err) {
        free(p->free);
        p->free = NULL;
        return -err;
    }
    pthread_mutex_init(&p->reg_lock, NULL);
    p->size = usable;
    p->cap = cap;
    return 0;
}

/* The caller has drained every cache of this pool. */
void urt__stack_pool_destroy(urt_stack_pool *p)
{
    for (unsigned i = 0; i < p->nfree; i++)
        urt__stack_unmap(&p->free[i]);
    while (p->stuck) {   /* one more try; what still cannot go stays mapped */
        struct stuck_stack *n = p->stuck;
        p->stuck = n->next;
        urt_stack s = n->s;
        urt__stack_unmap(&s);
    }
    free(p->free);
    free(p->reg);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->reg_lock);
    memset(p, 0, sizeof *p);
}

/* Move n stacks from `v` into the pool; those that do not fit are unmapped.
 * See "Reuse" at the top for why the lock is taken twice. */
static COLD void pool_push(urt_stack_pool *p, urt_stack *v, unsigned n)
{
    unsigned have, fit, keep_dirty, ready, take, i;

    pthread_mutex_lock(&p->lock);
    have = p->nfree;
    pthread_mutex_unlock(&p->lock);

    fit = p->cap - have;                    /* have <= cap */
    if (fit > n)
        fit = n;
    keep_dirty = have < p->dirty_max ? p->dirty_max - have : 0;
    if (keep_dirty > n)
        keep_dirty = n;
    for (i = keep_dirty; i < fit; i++)
        release_pages(&v[i]);
    /* v[0, ready) may enter the pool: dirty ones within the allowance, then
     * released ones. */
    ready = fit > keep_dirty ? fit : keep_dirty;

    pthread_mutex_lock(&p->lock);
    take = p->cap - p->nfree;
    if (take > ready)
        take = ready;
    if (take) {
        memcpy(&p->free[p->nfree], v, take * sizeof *v);
        p->nfree += take;
    }
    pthread_mutex_unlock(&p->lock);

    for (i = take; i < n; i++)
        pool_unmap(p, &v[i]);
}

/* Take up to `want` stacks from the pool into v; returns how many. */
static unsigned pool_pop(urt_stack_pool *p, urt_stack *v, unsigned want)
{
    unsigned got;

    pthread_mutex_lock(&p->lock);
    got = p->nfree < want ? p->nfree : want;
    if (got) {
        p->nfree -= got;
        memcpy(v, &p->free[p->nfree], got * sizeof *v);
    }
    pthread_mutex_unlock(&p->lock);
    return got;
}

/* ---- cache (owner only) -------------------------------------------------- */

static COLD int get_slow(urt_stack_pool *p, urt_stack_cache *c, urt_stack *out)
{
    if (c) {
        c->n = pool_pop(p, c->s, URT_STACK_CACHE / 2);
        if (c->n) {
            *out = c->s[--c->n];
            return 0;
        }
    } else if (pool_pop(p, out, 1)) {
        return 0;
    }
    if (pool_pop_stuck(p, out))
        return 0;
    return pool_map(p, out, p->size);
}

int urt__stack_get(urt_stack_pool *p, urt_stack_cache *c, size_t size, urt_stack *out)
{
    size_t usable;

    if (!p)
        return urt__stack_map(out, size);
    if (size != p->size) {
        if (usable_size(size, &usable) < 0) {
            memset(out, 0, sizeof *out);
            return -ENOMEM;
        }
        if (usable != p->size)
            return pool_map(p, out, usable);
    }
    if (c && c->n) {
        *out = c->s[--c->n];
        return 0;
    }
    return get_slow(p, c, out);
}

static COLD void spill(urt_stack_pool *p, urt_stack_cache *c)
{
    const unsigned half = URT_STACK_CACHE / 2;

    pool_push(p, c->s, half);
    memmove(&c->s[0], &c->s[half], (c->n - half) * sizeof c->s[0]);
    c->n -= half;
}

void urt__stack_put(urt_stack_pool *p, urt_stack_cache *c, urt_stack *s)
{
    if (!s->base)
        return;
    if (!p || stack_usable(s) != p->size) {
        if (p)
            pool_unmap(p, s);
        else
            urt__stack_unmap(s);
        return;
    }
    STACK_UNPOISON(s->lo, p->size);
    if (c) {
        if (c->n == URT_STACK_CACHE)
            spill(p, c);
        c->s[c->n++] = *s;
    } else {
        pool_push(p, s, 1);
    }
    memset(s, 0, sizeof *s);
}

void urt__stack_cache_drain(urt_stack_pool *p, urt_stack_cache *c)
{
    if (c->n)
        pool_push(p, c->s, c->n);
    c->n = 0;
}

/* ---- overflow reporting -------------------------------------------------- */

/* The running task's info on this thread; read by the fault handler on the
 * same thread. volatile: a store here must not move past the task's stack
 * accesses that may fault. */
static __thread const urt_overflow_info *volatile cur
    __attribute__((tls_model("initial-exec")));

/* This thread's alternate signal stack, when we installed it, and the one it
 * replaced (a smaller one someone else installed), put back by fini. */
static __thread urt_stack altstack __attribute__((tls_model("initial-exec")));
static __thread stack_t prev_altstack __attribute__((tls_model("initial-exec")));

/* The actions ours replaced: written once under install_ctl, read by the
 * handler. */
static pthread_once_t install_ctl = PTHREAD_ONCE_INIT;
static struct sigaction old_segv, old_bus;

void urt__overflow_set_current(const urt_overflow_info *info)
{
    cur = info;
}

int urt__overflow_thread_init(void)
{
    size_t want = 4 * (size_t)SIGSTKSZ;
    stack_t old, ss;
    int err;

    if (want < 64 * 1024)
        want = 64 * 1024;
    if (altstack.base)
        return 0;
    if (sigaltstack(NULL, &old) != 0)
        return -errno;
    if (!(old.ss_flags & SS_DISABLE) && old.ss_size >= want)
        return 0;                       /* one big enough is already there */
    if (old.ss_flags & SS_ONSTACK)
        return -EPERM;
    err = urt__stack_map(&altstack, want);
    if (err)
        return err;
    ss.ss_sp = altstack.lo;
    ss.ss_size = stack_usable(&altstack);
    ss.ss_flags = 0;
    if (sigaltstack(&ss, NULL) != 0) {
        err = -errno;
        urt__stack_unmap(&altstack);
        return err;
    }
    prev_altstack = old;
    return 0;
}

void urt__overflow_thread_fini(void)
{
    stack_t off = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    stack_t *restore = &off;

    if (!altstack.base)
        return;
    if (!(prev_altstack.ss_flags & SS_DISABLE)) {
        prev_altstack.ss_flags = 0;
        restore = &prev_altstack;
    }
    /* EPERM: running on it; then it must stay mapped. */
    if (sigaltstack(restore, NULL) != 0)
        return;
    urt__stack_unmap(&altstack);
}

static void write_all(const char *b, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, b, n);

        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        b += w;
        n -= (size_t)w;
    }
}

static size_t put_str(char *b, size_t at, size_t cap, const char *s)
{
    while (*s && at < cap)
        b[at++] = *s++;
    return at;
}

static size_t put_u64(char *b, size_t at, size_t cap, uint64_t v)
{
    char d[20];
    size_t n = 0;

    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n && at < cap)
        b[at++] = d[--n];
    return at;
}

static void report_overflow(const urt_overflow_info *info)
{
    char b[256];
    const size_t cap = sizeof b - 2;    /* room for ")\n" */
    size_t at = 0;

    at = put_str(b, at, cap, "urt: stack overflow in task ");
    at = put_u64(b, at, cap, info->task_id);
    at = put_str(b, at, cap, " (");
    at = put_str(b, at, cap, info->name ? info->name : "unnamed");
    b[at++] = ')';
    b[at++] = '\n';
    write_all(b, at);
}

/* Restore the default action; the re-raised signal stays pending while the
 * handler runs (the signal is blocked) and kills the process when it returns.
 * Were it not delivered, the faulting instruction would fault again. */
static void die_by_default(int sig)
{
    struct sigaction dfl;

    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    raise(sig);
}

static void on_fault(int sig, siginfo_t *si, void *uctx)
{
    int saved_errno = errno;
    const urt_overflow_info *info = cur;
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;

    if (si && si->si_code > 0 && info && info->stack &&
        urt__stack_guard_hit(info->stack, si->si_addr)) {
        report_overflow(info);
        die_by_default(sig);
        errno = saved_errno;
        return;
    }

    /* SIG_DFL and SIG_IGN read the same through either union member. */
    if (old->sa_handler == SIG_IGN) {
        /* A fault cannot be ignored (the kernel kills); a sent signal can. */
        if (!si || si->si_code <= 0)
            return;
    } else if (old->sa_handler != SIG_DFL) {
        errno = saved_errno;
        if (old->sa_flags & SA_SIGINFO)
            old->sa_sigaction(sig, si, uctx);
        else
            old->sa_handler(sig);
        return;
    }
    die_by_default(sig);
    errno = saved_errno;
}

static void install_once(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    /* Swap in one call each, so a handler installed by someone else in the
     * meantime is not lost. A fault elsewhere in the instant before old_*
     * is filled in finds them zero, i.e. SIG_DFL. */
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
}

void urt__overflow_install(void)
{
#if STACK_ASAN
    /* ASan reports SEGVs itself (and owns the handler). */
    (void)install_ctl;
    (void)install_once;
#else
    pthread_once(&install_ctl, install_once);
#endif
}
