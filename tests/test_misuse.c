/*
 * test_misuse.c - in the checked build (URT_CHECKED, the ASan test build),
 * misusing a handle aborts with a message that names the call, instead of a
 * silent use-after-free: joining a task twice or after detaching it,
 * detaching twice, destroying a runtime twice, spawning on a destroyed one.
 * Each misuse runs in a child process; the test reads its stderr and status.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#ifdef URT_CHECKED
#define URT_CHECKED_BUILD 1
#else
#define URT_CHECKED_BUILD 0
#endif

static void *nothing(void *arg) { return arg; }

enum { JOIN_TWICE, JOIN_AFTER_DETACH, DETACH_TWICE, DESTROY_TWICE, SPAWN_AFTER_DESTROY };

static void misuse(int what)
{
    urt_runtime *rt = NULL;
    if (urt_runtime_create(&rt, &(urt_config){.workers = 1}) != 0)
        _exit(77);
    urt_task *t = NULL;
    if (what != DESTROY_TWICE && what != SPAWN_AFTER_DESTROY && urt_spawn(rt, &t, nothing, NULL) != 0)
        _exit(78);
    switch (what) {
    case JOIN_TWICE:
        urt_join(t, NULL);
        urt_join(t, NULL);
        break;
    case JOIN_AFTER_DETACH:
        urt_detach(t);
        usleep(20 * 1000);   /* it has ended and is freed */
        urt_join(t, NULL);
        break;
    case DETACH_TWICE:
        urt_join(t, NULL);
        urt_detach(t);
        break;
    case DESTROY_TWICE:
        urt_runtime_destroy(rt);
        urt_runtime_destroy(rt);
        break;
    case SPAWN_AFTER_DESTROY:
        urt_runtime_destroy(rt);
        urt_spawn(rt, NULL, nothing, NULL);
        break;
    }
    _exit(0);   /* not caught */
}

static void expect_abort_naming(int what, const char *call)
{
#if !URT_CHECKED_BUILD
    cr_skip_test("not a checked build (cmake -DURT_CHECKED=ON)");
#endif
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        misuse(what);
    }
    close(p[1]);
    char buf[4096] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(p[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    close(p[0]);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGABRT, "the misuse was not caught (status %#x): %s", st, buf);
    cr_assert(strstr(buf, call) != NULL, "the message does not name %s: %s", call, buf);
}

Test(misuse, joining_a_task_twice_aborts_naming_urt_join, .timeout = 30) { expect_abort_naming(JOIN_TWICE, "urt_join:"); }
Test(misuse, joining_a_detached_task_aborts_naming_urt_join, .timeout = 30) { expect_abort_naming(JOIN_AFTER_DETACH, "urt_join:"); }
Test(misuse, detaching_a_joined_task_aborts_naming_urt_detach, .timeout = 30) { expect_abort_naming(DETACH_TWICE, "urt_detach:"); }
Test(misuse, destroying_a_runtime_twice_aborts_naming_urt_runtime_destroy, .timeout = 30) { expect_abort_naming(DESTROY_TWICE, "urt_runtime_destroy:"); }
Test(misuse, spawning_on_a_destroyed_runtime_aborts_naming_urt_spawn, .timeout = 30) { expect_abort_naming(SPAWN_AFTER_DESTROY, "urt_spawn:"); }
