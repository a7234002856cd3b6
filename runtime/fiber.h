/*
 * fiber.h - stackful fibers: a saved stack pointer and, for sanitizer
 * builds, what ASan and TSan need to follow a switch (a release build's
 * fiber is its sp alone: one word of a task header's first line).
 *
 * Protocol of a switch from A to B (fiber_switch):
 *   1. ASan: __sanitizer_start_switch_fiber(&A.fake, B.bottom, B.size)
 *      (NULL instead of &A.fake when A is finished: its fake stack is freed)
 *   2. TSan: __tsan_switch_to_fiber(B.tsan, 0) (synchronising: A's writes
 *      happen before B runs)
 *   3. urt__ctx_switch(&A.sp, B.sp)
 *   4. back in A, later: ASan __sanitizer_finish_switch_fiber(A.fake, ...)
 * A new fiber starts in fiber_entry_begin(), which does step 4 for itself.
 * A thread's own context (a worker's or a pool thread's scheduler) is a
 * urt_fiber too, described by fiber_init_thread().
 */
#ifndef URT_RUNTIME_FIBER_H
#define URT_RUNTIME_FIBER_H

#include <stdbool.h>
#include <stddef.h>

#if defined(URT_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(URT_TSAN)
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

typedef struct urt_fiber {
    void *sp;
#if defined(URT_ASAN)
    const void *bottom;   /* lowest usable address of its stack */
    size_t size;
    void *fake;
#endif
#if defined(URT_TSAN)
    void *tsan;
#endif
} urt_fiber;

void urt__ctx_switch(void **save_sp, void *to_sp);
void urt__ctx_trampoline(void);

/* Bytes a suspended fiber's saved context takes at its sp, as the switch in
 * arch/switch_*.S lays it out: the callee-saved registers and the resume
 * address. */
#if defined(__x86_64__)
#define FIBER_SAVED_BYTES 56    /* rbp rbx r12-r15, resume address */
#elif defined(__aarch64__)
#define FIBER_SAVED_BYTES 160   /* x19-x30, d8-d15 */
#endif

/* Start loading what a switch into the suspended fiber f reads first: its
 * saved context and the word above it (the frame it resumes in). A fiber
 * that never ran has no saved sp (NULL): nothing to load. */
static inline void fiber_prefetch_saved(const urt_fiber *f)
{
    const char *sp = f->sp;
    if (!sp)
        return;
    for (size_t off = 0; off < FIBER_SAVED_BYTES; off += 64)
        __builtin_prefetch(sp + off);
    __builtin_prefetch(sp + FIBER_SAVED_BYTES);
}

/* Describe the calling thread's own stack as a fiber to switch back to. */
void fiber_init_thread(urt_fiber *f);
void fiber_fini_thread(urt_fiber *f);
/* Make f start entry(arg) on [lo, hi) when first switched to. entry must
 * never return: it ends by switching away for good (fiber_switch_final). */
void fiber_init(urt_fiber *f, void *lo, void *hi, void (*entry)(void *), void *arg);
/* Release sanitizer state of a fiber that will never run again (call from
 * another context). */
void fiber_destroy(urt_fiber *f);

static inline __attribute__((always_inline)) void fiber_switch_ex(urt_fiber *from, urt_fiber *to, bool final)
{
#if defined(URT_ASAN)
    __sanitizer_start_switch_fiber(final ? NULL : &from->fake, to->bottom, to->size);
#endif
#if defined(URT_TSAN)
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
    (void)final;
    urt__ctx_switch(&from->sp, to->sp);
#if defined(URT_ASAN)
    __sanitizer_finish_switch_fiber(from->fake, NULL, NULL);
#endif
}

static inline __attribute__((always_inline)) void fiber_switch(urt_fiber *from, urt_fiber *to)
{
    fiber_switch_ex(from, to, false);
}

/* First thing a new fiber's entry function calls. */
static inline __attribute__((always_inline)) void fiber_entry_begin(void)
{
#if defined(URT_ASAN)
    __sanitizer_finish_switch_fiber(NULL, NULL, NULL);
#endif
}

#endif /* URT_RUNTIME_FIBER_H */
