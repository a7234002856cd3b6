/* Helpers shared by the Criterion tests (tests/test_*.c).
 *
 * Works with real Criterion and with the TSan build's fork-per-test shim
 * (tests/support/tsan/criterion/criterion.h): it only uses cr_skip_test and
 * cr_assert_eq. */
#ifndef URT_TEST_SUPPORT_H
#define URT_TEST_SUPPORT_H

#include <criterion/criterion.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <urt.h>

__attribute__((unused)) static const unsigned worker_counts[] = {1, 2, 4};
#define FOR_EACH_WORKER_COUNT(w) \
    for (size_t wi_ = 0; wi_ < sizeof(worker_counts) / sizeof(worker_counts[0]); wi_++) \
        for (unsigned w = worker_counts[wi_], once_ = 1; once_; once_ = 0)

/* A runtime from cfg; skips the test where io_uring is not usable. */
static inline urt_runtime *rt_new_cfg(const urt_config *cfg)
{
    urt_runtime *rt = NULL;
    int r = urt_runtime_create(&rt, cfg);
    if (r == -ENOSYS || r == -EPERM)
        cr_skip_test("io_uring is not usable here: urt_runtime_create gave %s", strerror(-r));
    cr_assert_eq(r, 0, "urt_runtime_create: %s", strerror(-r));
    return rt;
}

static inline urt_runtime *rt_new(unsigned workers)
{
    urt_config cfg = {.workers = workers};
    return rt_new_cfg(&cfg);
}

/* Does the runtime's task dump show the task with this id suspended in `what`
 * (what NULL: listed at all)? Any thread. */
static inline bool task_id_waits_on(urt_runtime *rt, uint64_t id, const char *what)
{
    int fd = memfd_create("urt-dump", MFD_CLOEXEC);
    if (fd < 0)
        return false;
    bool found = false;
    if (urt_runtime_dump(rt, fd) >= 0) {
        off_t len = lseek(fd, 0, SEEK_END);
        char *buf = calloc(1, (size_t)len + 1);
        if (buf && pread(fd, buf, (size_t)len, 0) == len) {
            char head[64], wait[64];
            snprintf(head, sizeof(head), "task %llu ", (unsigned long long)id);
            snprintf(wait, sizeof(wait), " waits=%s ", what ? what : "");
            char *save = NULL;
            for (char *line = strtok_r(buf, "\n", &save); line && !found; line = strtok_r(NULL, "\n", &save))
                found = strncmp(line, head, strlen(head)) == 0 && (!what || strstr(line, wait) != NULL);
        }
        free(buf);
    }
    close(fd);
    return found;
}

/* Does the runtime's task dump list task t (a live task)? Any thread. */
static inline bool task_listed(urt_runtime *rt, urt_task *t)
{
    return task_id_waits_on(rt, urt_task_id(t), NULL);
}

/* Does the runtime's task dump show task t suspended in `what`? Any thread. */
static inline bool task_waits_on(urt_runtime *rt, urt_task *t, const char *what)
{
    return task_id_waits_on(rt, urt_task_id(t), what);
}

/* Until t is suspended in `what`: sleeps the calling task (1 ms), or the thread. */
static inline void await_waiting(urt_runtime *rt, urt_task *t, const char *what)
{
    while (!task_waits_on(rt, t, what)) {
        if (urt_sleep(1000ull * 1000) == -EPERM)
            usleep(1000);
    }
}

/* Send fd 2 into a memfd until stderr_capture_end; returns the saved fd 2. */
static inline int stderr_capture_begin(void)
{
    fflush(stderr);
    int saved = dup(2);
    int m = memfd_create("urt-stderr", MFD_CLOEXEC);
    cr_assert(saved >= 0 && m >= 0);
    dup2(m, 2);
    close(m);
    return saved;
}

/* Put fd 2 back; returns what was written meanwhile (malloc'd, NUL-terminated). */
static inline char *stderr_capture_end(int saved)
{
    fflush(stderr);
    off_t len = lseek(2, 0, SEEK_END);
    char *buf = calloc(1, len > 0 ? (size_t)len + 1 : 1);
    cr_assert_not_null(buf);
    if (len > 0 && pread(2, buf, (size_t)len, 0) != len)
        buf[0] = 0;
    dup2(saved, 2);
    close(saved);
    return buf;
}

/* Become an unprivileged user (nobody) if root, so that resource limits
 * (RLIMIT_NPROC, RLIMIT_MEMLOCK) apply to this test process. Irreversible:
 * use only in a test of its own (each test runs in its own process). */
static inline void become_unprivileged(void)
{
    if (geteuid() != 0)
        return;
    cr_assert_eq(setgid(65534), 0, "setgid: %s", strerror(errno));
    cr_assert_eq(setuid(65534), 0, "setuid: %s", strerror(errno));
}

#endif
