/*
 * checked.c - the checked build (cmake -DURT_CHECKED=ON; on in the ASan test
 * build): misuse of a handle aborts with a message naming the call instead
 * of a silent use-after-free.
 *
 * Task headers and runtimes carry a magic word. In the checked build the
 * memory of a freed task or a destroyed runtime is not given back at once:
 * its magic turns DEAD and it waits in a bounded quarantine (FIFO, the
 * oldest really freed), reachable from a static so LeakSanitizer does not
 * count it. A call handed such a pointer, or a task handle that was already
 * joined or detached, aborts:
 *   "urt: urt_join: task handle 0x... was already joined or detached"
 *   "urt: urt_spawn: runtime 0x... was already destroyed"
 * Release builds compile none of this (the CHECK_* macros are empty).
 */
#include <stdio.h>
#include <stdlib.h>

#include "runtime/runtime.h"

#if URT_CHECKED

#define QUARANTINE 4096

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   __asan_poison_memory_region((p), (n))
#define UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

static pthread_mutex_t q_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    void *p;
    size_t size;
} quarantine[QUARANTINE];   /* under q_lock */
static unsigned q_next;

void urt__quarantine(void *p, size_t size)
{
    /* the magic word stays readable; any other use of the memory is still
     * an ASan report */
    POISON((char *)p + sizeof(uint32_t), size - sizeof(uint32_t));
    pthread_mutex_lock(&q_lock);
    void *old = quarantine[q_next].p;
    size_t old_size = quarantine[q_next].size;
    quarantine[q_next].p = p;
    quarantine[q_next].size = size;
    q_next = (q_next + 1) % QUARANTINE;
    pthread_mutex_unlock(&q_lock);
    if (old) {
        UNPOISON(old, old_size);
        free(old);
    }
}

__attribute__((noreturn)) static void misuse(const char *call, const char *what, const void *p, const char *why)
{
    urt__log("urt: %s: %s %p %s\n", call, what, p, why);
    abort();
}

#define HANDLE_GONE "was already joined or detached (or is no task handle)"

void urt__check_handle(const urt_task *t, const char *call)
{
    if (at_load_relaxed(&((urt_task *)t)->magic) != TASK_MAGIC)
        misuse(call, "task handle", t, HANDLE_GONE);
    bool held = at_load_relaxed(&((urt_task *)t)->own) & OWN_HANDLE;
    if (!held)
        misuse(call, "task handle", t, HANDLE_GONE);
}

void urt__check_rt(const urt_runtime *rt, const char *call)
{
    if (at_load_relaxed(&((urt_runtime *)rt)->magic) != RT_MAGIC)
        misuse(call, "runtime", rt, "was already destroyed (or is no runtime)");
}

void urt__check_rec_free(const urt_task *t, const ring_op *rec, const char *call)
{
    /* a task waits on one op and arms one timer at a time: a second start
     * while the record is in flight would lose the first one's CQE */
    if (!rec->done)
        misuse(call, "task", t, "started a ring op whose record is still in flight");
}

#endif
