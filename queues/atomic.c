/* atomic.c - storage the atomics shim needs in some builds. */
#include "queues/atomic.h"

#if defined(URT_TSAN)
_Atomic uint64_t urt__tsan_fence_word;
#endif
