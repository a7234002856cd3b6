/*
 * time.h - the clock and the time bounds of a task's waits (time.c).
 *
 * A task has two bounds: its op timeout (relative, each call gets it anew;
 * I/O, join and sync waits) and its deadline (absolute; every suspending
 * call, sleeps and accepts included). A wait is bounded by the earlier of
 * the two that apply to it, as one absolute CLOCK_MONOTONIC time.
 */
#ifndef URT_RUNTIME_TIME_H
#define URT_RUNTIME_TIME_H

#include "runtime/runtime.h"

static inline struct __kernel_timespec ns_to_ts(uint64_t ns)
{
    if (ns > (uint64_t)INT64_MAX)
        ns = INT64_MAX;   /* about 292 years of uptime: never */
    struct __kernel_timespec ts = {.tv_sec = (long long)(ns / 1000000000u), .tv_nsec = (long long)(ns % 1000000000u)};
    return ts;
}

/* a + b, saturating at UINT64_MAX */
static inline uint64_t time_add(uint64_t a, uint64_t b) { return b > UINT64_MAX - a ? UINT64_MAX : a + b; }

/* The absolute bound (urt__now ns) of the task's next wait: the earlier of
 * its deadline and now + op timeout (when `op_timeout` applies to the
 * wait); 0 when there is none. */
uint64_t task_bound(urt_task *t, bool op_timeout);

/* Has the task's deadline passed? (A wait then returns -ETIMEDOUT at once.) */
static inline bool task_deadline_passed(urt_task *t) { return t->deadline && urt__now() >= t->deadline; }

#endif /* URT_RUNTIME_TIME_H */
