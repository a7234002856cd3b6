/*
 * fiber.c - building a new fiber's first frame, describing thread stacks.
 */
#include "runtime/fiber.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

void fiber_init_thread(urt_fiber *f)
{
    memset(f, 0, sizeof(*f));
#if defined(URT_ASAN)
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        void *addr;
        size_t size;
        if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
            f->bottom = addr;
            f->size = size;
        }
        pthread_attr_destroy(&attr);
    }
#endif
#if defined(URT_TSAN)
    f->tsan = __tsan_get_current_fiber();
#endif
}

void fiber_fini_thread(urt_fiber *f) { (void)f; }

void fiber_init(urt_fiber *f, void *lo, void *hi, void (*entry)(void *), void *arg)
{
#if defined(URT_ASAN)
    f->bottom = lo;
    f->size = (size_t)((char *)hi - (char *)lo);
#endif
    uintptr_t top = (uintptr_t)hi & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* After urt__ctx_switch pops six registers and jumps to the
     * trampoline, rsp must be 16-aligned for its call: the return address
     * sits at top-24, so rsp = top-16 once the switch has popped it. */
    uint64_t *sp = (uint64_t *)(top - 24);
    sp[0] = (uint64_t)(uintptr_t)urt__ctx_trampoline;  /* return address */
    sp[1] = 0;                                         /* end of frame chain */
    sp[2] = 0;
    sp -= 6;
    sp[0] = 0;                               /* r15 */
    sp[1] = 0;                               /* r14 */
    sp[2] = (uint64_t)(uintptr_t)entry;      /* r13 */
    sp[3] = (uint64_t)(uintptr_t)arg;        /* r12 */
    sp[4] = 0;                               /* rbx */
    sp[5] = 0;                               /* rbp */
    f->sp = sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(top - 160);
    memset(sp, 0, 160);
    sp[0] = (uint64_t)(uintptr_t)arg;        /* x19 */
    sp[1] = (uint64_t)(uintptr_t)entry;      /* x20 */
    sp[11] = (uint64_t)(uintptr_t)urt__ctx_trampoline; /* x30 */
    f->sp = sp;
#else
#error "unsupported architecture"
#endif
#if defined(URT_ASAN)
    f->fake = NULL;
#endif
#if defined(URT_TSAN)
    if (!f->tsan)
        f->tsan = __tsan_create_fiber(0);
#endif
}

void fiber_destroy(urt_fiber *f)
{
#if defined(URT_TSAN)
    if (f->tsan) {
        __tsan_destroy_fiber(f->tsan);
        f->tsan = NULL;
    }
#endif
    (void)f;
}
