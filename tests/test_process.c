/*
 * test_process.c - urt_process_spawn starts children with a clean signal
 * state (a SIGTERM ends a child spawned from a task or a pool thread), and
 * urt_process_wait reaps them with waitpid's status, suspending only the
 * task: exit codes, signals, envp, file actions, 100 concurrent waits, bad
 * pids, op timeouts and deadlines that leave the child unreaped, cancel.
 * Every test runs on 1 and 2 workers, once with IORING_OP_WAITID and once
 * with the pidfd fallback forced (URT_RING_NO_OPS=50).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)
#define OP_WAITID 50   /* IORING_OP_WAITID, which liburing 2.3 does not name */

static const unsigned proc_workers[] = {1, 2};

/* A runtime of `workers` workers; with `fallback` its rings are told they
 * lack IORING_OP_WAITID, so urt_process_wait takes the pidfd path. */
static urt_runtime *rt_proc(unsigned workers, bool fallback)
{
    if (fallback)
        setenv("URT_RING_NO_OPS", "50", 1);
    urt_runtime *rt = rt_new(workers);
    unsetenv("URT_RING_NO_OPS");
    return rt;
}

/* Every (workers, fallback) configuration; `rt` in scope, destroyed after. */
#define FOR_EACH_CONFIG(rt, w, fb)                                                            \
    for (size_t ci_ = 0; ci_ < 2 * sizeof(proc_workers) / sizeof(proc_workers[0]); ci_++)    \
        for (unsigned w = proc_workers[ci_ / 2], once_ = 1; once_;)                          \
            for (bool fb = ci_ % 2; once_; once_ = 0)                                        \
                for (urt_runtime *rt = rt_proc(w, fb); rt; urt_runtime_destroy(rt), rt = NULL)

/* The kernel's own answer (not urt's): does io_uring have WAITID here? */
static bool kernel_has_waitid(void)
{
    struct io_uring_probe *p = io_uring_get_probe();
    bool has = p && io_uring_opcode_supported(p, OP_WAITID);
    if (p)
        io_uring_free_probe(p);
    return has;
}

static int spawn_sh(pid_t *pid, const char *script)
{
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    return urt_process_spawn(pid, "/bin/sh", argv, NULL, NULL);
}

static int spawn_sleep(pid_t *pid)
{
    char *argv[] = {"sleep", "30", NULL};
    return urt_process_spawn(pid, "/bin/sleep", argv, NULL, NULL);
}

/* Is pid a child of ours not reaped yet (running or ended)? Looks without reaping. */
static bool unreaped(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof(si));
    return waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT) == 0;
}

/* ---- exit status ------------------------------------------------------------------------ */

typedef struct exit_case {
    int spawn_res, wait_res, status;
} exit_case;

static void *spawn_and_wait_exit7(void *arg)
{
    exit_case *c = arg;
    pid_t pid = 0;
    c->spawn_res = spawn_sh(&pid, "exit 7");
    if (c->spawn_res == 0)
        c->wait_res = urt_process_wait(pid, &c->status);
    return NULL;
}

Test(process, wait_gives_the_exit_status, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        exit_case c = {.spawn_res = 1, .wait_res = 1, .status = -1};
        cr_assert_eq(urt_runtime_block_on(rt, spawn_and_wait_exit7, &c, NULL), 0);
        cr_assert_eq(c.spawn_res, 0, "spawn: %s", strerror(-c.spawn_res));
        cr_assert_eq(c.wait_res, 0, "%u workers%s: wait gave %d", w, fb ? " (pidfd)" : "", c.wait_res);
        cr_assert(WIFEXITED(c.status), "status %#x", c.status);
        cr_assert_eq(WEXITSTATUS(c.status), 7);
    }
}

Test(process, on_a_plain_thread_wait_is_waitpid, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);   /* a runtime exists, but this is main */
    exit_case c = {.wait_res = 1};
    pid_t pid = 0;
    cr_assert_eq(spawn_sh(&pid, "exit 7"), 0);
    c.wait_res = urt_process_wait(pid, &c.status);
    cr_assert_eq(c.wait_res, 0);
    cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 7, "status %#x", c.status);
    cr_assert_eq(urt_process_wait(pid, NULL), -ECHILD, "reaped once only");
    urt_runtime_destroy(rt);
}

/* Inside block_in_place and in a blocking job the wait is waitpid, on that thread. */
static void *wait_in_place(void *arg)
{
    return (void *)(intptr_t)urt_block_in_place(spawn_and_wait_exit7, arg, NULL);
}

/* fn(arg) as a blocking job of the calling task's runtime, joined: 0 or -errno */
static int run_blocking_job(urt_fn fn, void *arg)
{
    urt_task *job = NULL;
    int r = urt_spawn_blocking(NULL, &job, fn, arg);
    return r ? r : urt_join(job, NULL);
}

static void *wait_in_job(void *arg)
{
    return (void *)(intptr_t)run_blocking_job(spawn_and_wait_exit7, arg);
}

Test(process, inside_block_in_place_and_in_a_blocking_job_wait_is_waitpid, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        urt_fn where[] = {wait_in_place, wait_in_job};
        for (int i = 0; i < 2; i++) {
            exit_case c = {.spawn_res = 1, .wait_res = 1, .status = -1};
            void *ret = (void *)1;
            cr_assert_eq(urt_runtime_block_on(rt, where[i], &c, &ret), 0);
            cr_assert_null(ret);
            cr_assert_eq(c.wait_res, 0, "%s: wait gave %d", i ? "blocking job" : "block_in_place", c.wait_res);
            cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 7, "status %#x", c.status);
        }
    }
}

/* A hook must not wait: urt_process_wait there is -EDEADLK (spawning is fine). */
static _Atomic int hook_wait_res = 1;
static void wait_in_hook(urt_task *t, void *data)
{
    (void)t;
    (void)data;
    atomic_store(&hook_wait_res, urt_process_wait(1, NULL));
}

static void *nothing(void *arg)
{
    return arg;
}

Test(process, wait_in_a_hook_is_edeadlk, .timeout = 30)
{
    urt_config cfg = {.workers = 1, .on_task_terminate = wait_in_hook};
    urt_runtime *rt = rt_new_cfg(&cfg);
    cr_assert_eq(urt_runtime_block_on(rt, nothing, NULL, NULL), 0);
    urt_runtime_destroy(rt);
    cr_assert_eq(atomic_load(&hook_wait_res), -EDEADLK, "gave %d", atomic_load(&hook_wait_res));
}

/* ---- signals reach the child (the inherited-mask regression) --------------------------- */

typedef struct sig_case {
    int sig;
    pid_t pid;
    int spawn_res, wait_res, status;
} sig_case;

/* Send c->sig to the child and wait (at most 10 s: a child that ignores
 * the signal is killed, and the wait reports -ETIMEDOUT). In a task. */
static void kill_and_wait(sig_case *c)
{
    kill(c->pid, c->sig);
    uint64_t old = urt_op_timeout(10000 * MS);
    c->wait_res = urt_process_wait(c->pid, &c->status);
    urt_op_timeout(old);
    if (c->wait_res == -ETIMEDOUT) {
        kill(c->pid, SIGKILL);
        urt_process_wait(c->pid, NULL);
    }
}

static void *spawn_in_task(void *arg)
{
    sig_case *c = arg;
    c->spawn_res = spawn_sleep(&c->pid);
    if (c->spawn_res == 0)
        kill_and_wait(c);
    return NULL;
}

static void *spawn_job(void *arg)
{
    sig_case *c = arg;
    c->spawn_res = spawn_sleep(&c->pid);
    return NULL;
}

static void *spawn_from_pool_then_wait(void *arg)
{
    sig_case *c = arg;
    if (run_blocking_job(spawn_job, c) != 0)
        return (void *)1;
    if (c->spawn_res == 0)
        kill_and_wait(c);
    return NULL;
}

static void *spawn_in_place_then_wait(void *arg)
{
    sig_case *c = arg;
    if (urt_block_in_place(spawn_job, c, NULL) != 0)
        return (void *)1;
    if (c->spawn_res == 0)
        kill_and_wait(c);
    return NULL;
}

static void check_killed_by(const sig_case *c, const char *where, unsigned w, bool fb)
{
    cr_assert_eq(c->spawn_res, 0, "spawn %s: %s", where, strerror(-c->spawn_res));
    cr_assert_neq(c->wait_res, -ETIMEDOUT, "%u workers%s: a child spawned %s ignored signal %d", w,
                  fb ? " (pidfd)" : "", where, c->sig);
    cr_assert_eq(c->wait_res, 0, "wait gave %d", c->wait_res);
    cr_assert(WIFSIGNALED(c->status), "%s: status %#x", where, c->status);
    cr_assert_eq(WTERMSIG(c->status), c->sig, "%s: killed by %d", where, WTERMSIG(c->status));
}

/* In every configuration: spawn `sleep 30` where `spawner` does, SIGTERM it,
 * and the wait says it was killed by SIGTERM. */
static void sigterm_ends_child(urt_fn spawner, const char *where)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        sig_case c = {.sig = SIGTERM, .spawn_res = 1, .wait_res = 1};
        void *ret = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, spawner, &c, &ret), 0);
        cr_assert_null(ret);
        check_killed_by(&c, where, w, fb);
    }
}

Test(process, sigterm_ends_a_child_spawned_from_a_task, .timeout = 120)
{
    sigterm_ends_child(spawn_in_task, "from a task");
}

Test(process, sigterm_ends_a_child_spawned_from_a_blocking_job, .timeout = 120)
{
    sigterm_ends_child(spawn_from_pool_then_wait, "from a blocking job");
}

Test(process, sigterm_ends_a_child_spawned_inside_block_in_place, .timeout = 120)
{
    sigterm_ends_child(spawn_in_place_then_wait, "inside block_in_place");
}

/* Every worker-blocked signal reaches the child, and one the parent ignores
 * is back to its default action there (POSIX_SPAWN_SETSIGDEF). */
Test(process, blocked_and_ignored_signals_are_reset_in_the_child, .timeout = 120)
{
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    cr_assert_eq(sigaction(SIGINT, &ign, &old), 0);
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGUSR1};
    urt_runtime *rt = rt_new(2);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
        sig_case c = {.sig = sigs[i], .spawn_res = 1, .wait_res = 1};
        cr_assert_eq(urt_runtime_block_on(rt, spawn_in_task, &c, NULL), 0);
        check_killed_by(&c, "from a task", 2, false);
        c = (sig_case){.sig = sigs[i], .spawn_res = 1, .wait_res = 1};
        cr_assert_eq(urt_runtime_block_on(rt, spawn_from_pool_then_wait, &c, NULL), 0);
        check_killed_by(&c, "from a blocking job", 2, false);
    }
    urt_runtime_destroy(rt);
    sigaction(SIGINT, &old, NULL);
}

/* ---- envp and file actions ---------------------------------------------------------------- */

typedef struct env_case {
    int res_given, res_inherited, st_given, st_inherited;
} env_case;

static int run_sh_env(const char *script, char *const envp[], int *status)
{
    pid_t pid = 0;
    char *argv[] = {"sh", "-c", (char *)script, NULL};
    int r = urt_process_spawn(&pid, "/bin/sh", argv, envp, NULL);
    return r ? r : urt_process_wait(pid, status);
}

static void *env_task(void *arg)
{
    env_case *c = arg;
    char *envp[] = {"URT_PROC_GIVEN=abc", NULL};
    /* exit 5 only if the given variable is there and the inherited one is not */
    c->res_given = run_sh_env("[ \"$URT_PROC_GIVEN\" = abc ] && [ -z \"$URT_PROC_INHERIT\" ] && exit 5; exit 6",
                              envp, &c->st_given);
    c->res_inherited = run_sh_env("[ \"$URT_PROC_INHERIT\" = yes ] && exit 8; exit 9", NULL, &c->st_inherited);
    return NULL;
}

Test(process, envp_is_the_childs_whole_environment_and_null_inherits_environ, .timeout = 60)
{
    setenv("URT_PROC_INHERIT", "yes", 1);
    FOR_EACH_CONFIG(rt, w, fb) {
        env_case c = {.res_given = 1, .res_inherited = 1};
        cr_assert_eq(urt_runtime_block_on(rt, env_task, &c, NULL), 0);
        cr_assert_eq(c.res_given, 0);
        cr_assert_eq(c.res_inherited, 0);
        cr_assert(WIFEXITED(c.st_given) && WEXITSTATUS(c.st_given) == 5, "envp: status %#x", c.st_given);
        cr_assert(WIFEXITED(c.st_inherited) && WEXITSTATUS(c.st_inherited) == 8, "environ: status %#x",
                  c.st_inherited);
    }
    unsetenv("URT_PROC_INHERIT");
}

typedef struct pipe_case {
    int spawn_res, wait_res, status;
    char out[64];
    size_t n;
} pipe_case;

static void *pipe_task(void *arg)
{
    pipe_case *c = arg;
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return (void *)1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);   /* dup2 clears CLOEXEC on fd 1 */
    pid_t pid = 0;
    char *argv[] = {"sh", "-c", "echo from-$0-child", "urt", NULL};
    c->spawn_res = urt_process_spawn(&pid, "/bin/sh", argv, NULL, &fa);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (c->spawn_res == 0) {
        ssize_t n;
        while (c->n < sizeof(c->out) - 1 && (n = urt_read(p[0], c->out + c->n, sizeof(c->out) - 1 - c->n, -1)) > 0)
            c->n += (size_t)n;
        c->wait_res = urt_process_wait(pid, &c->status);
    }
    close(p[0]);
    return NULL;
}

Test(process, file_actions_redirect_the_childs_stdout_to_a_pipe, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        pipe_case c = {.spawn_res = 1, .wait_res = 1};
        void *ret = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, pipe_task, &c, &ret), 0);
        cr_assert_null(ret);
        cr_assert_eq(c.spawn_res, 0);
        cr_assert_str_eq(c.out, "from-urt-child\n");
        cr_assert_eq(c.wait_res, 0);
        cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0, "status %#x", c.status);
    }
}

/* ---- 100 children, 100 waiting tasks ------------------------------------------------------ */

#define NCHILD 100

typedef struct many {
    int gate;                 /* read end the children block on until it is closed */
    atomic_int spawned, waiting_done;
    int seen[NCHILD];         /* how many tasks reported child i's exit code */
    atomic_int bad;
} many;

typedef struct many_arg {
    many *m;
    int i;
} many_arg;

static void *many_child(void *arg)
{
    many_arg *a = arg;
    many *m = a->m;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, m->gate, 0);
    char script[64];
    snprintf(script, sizeof(script), "read x; exit %d", a->i);
    char *argv[] = {"sh", "-c", script, NULL};
    pid_t pid = 0;
    int r = urt_process_spawn(&pid, "/bin/sh", argv, NULL, &fa);
    posix_spawn_file_actions_destroy(&fa);
    atomic_fetch_add(&m->spawned, 1);
    if (r != 0) {
        atomic_fetch_add(&m->bad, 1);
        return NULL;
    }
    int st = 0;
    r = urt_process_wait(pid, &st);
    if (r != 0 || !WIFEXITED(st) || WEXITSTATUS(st) != a->i)
        atomic_fetch_add(&m->bad, 1);
    else
        __atomic_fetch_add(&m->seen[a->i], 1, __ATOMIC_RELAXED);
    return NULL;
}

Test(process, hundred_children_waited_by_hundred_tasks_each_exactly_once, .timeout = 120)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        many m;
        memset(&m, 0, sizeof(m));
        int gate[2];
        cr_assert_eq(pipe2(gate, O_CLOEXEC), 0);
        m.gate = gate[0];
        many_arg args[NCHILD];
        urt_task *tasks[NCHILD];
        for (int i = 0; i < NCHILD; i++) {
            args[i] = (many_arg){.m = &m, .i = i};
            cr_assert_eq(urt_spawn(rt, &tasks[i], many_child, &args[i]), 0);
        }
        while (atomic_load(&m.spawned) < NCHILD)
            usleep(1000);
        /* every child is running and every task is (or soon is) waiting: let them all end at once */
        close(gate[1]);
        for (int i = 0; i < NCHILD; i++)
            cr_assert_eq(urt_join(tasks[i], NULL), 0);
        close(gate[0]);
        cr_assert_eq(atomic_load(&m.bad), 0, "%u workers%s: %d children failed", w, fb ? " (pidfd)" : "",
                     atomic_load(&m.bad));
        for (int i = 0; i < NCHILD; i++)
            cr_assert_eq(m.seen[i], 1, "child %d's exit was reported %d times", i, m.seen[i]);
        errno = 0;
        cr_assert_eq(waitpid(-1, NULL, WNOHANG), -1, "a child was left unreaped");
        cr_assert_eq(errno, ECHILD);
    }
}

/* ---- bad pids and bad arguments ------------------------------------------------------------- */

typedef struct bad_case {
    int zero, neg, self, init, twice, enoent, nulls[3];
} bad_case;

static void *bad_task(void *arg)
{
    bad_case *c = arg;
    int st = 0;
    c->zero = urt_process_wait(0, &st);
    c->neg = urt_process_wait(-1, &st);
    c->self = urt_process_wait(getpid(), &st);
    c->init = urt_process_wait(1, &st);
    pid_t pid = 0;
    if (spawn_sh(&pid, "exit 0") == 0 && urt_process_wait(pid, &st) == 0)
        c->twice = urt_process_wait(pid, &st);
    char *argv[] = {"nothing", NULL};
    c->enoent = urt_process_spawn(&pid, "/nonexistent/urt-test-program", argv, NULL, NULL);
    c->nulls[0] = urt_process_spawn(NULL, "/bin/sh", argv, NULL, NULL);
    c->nulls[1] = urt_process_spawn(&pid, NULL, argv, NULL, NULL);
    c->nulls[2] = urt_process_spawn(&pid, "/bin/sh", NULL, NULL, NULL);
    return NULL;
}

static void check_bad(const bad_case *c, const char *where)
{
    cr_assert_eq(c->zero, -EINVAL, "%s: pid 0 gave %d", where, c->zero);
    cr_assert_eq(c->neg, -EINVAL, "%s: pid -1 gave %d", where, c->neg);
    cr_assert_eq(c->self, -ECHILD, "%s: our own pid gave %d", where, c->self);
    cr_assert_eq(c->init, -ECHILD, "%s: pid 1 gave %d", where, c->init);
    cr_assert_eq(c->twice, -ECHILD, "%s: a reaped child gave %d", where, c->twice);
    cr_assert_eq(c->enoent, -ENOENT, "%s: a missing program gave %d", where, c->enoent);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(c->nulls[i], -EINVAL, "%s: NULL argument %d gave %d", where, i, c->nulls[i]);
}

Test(process, bad_pids_give_echild_or_einval, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        bad_case c;
        memset(&c, 1, sizeof(c));
        cr_assert_eq(urt_runtime_block_on(rt, bad_task, &c, NULL), 0);
        check_bad(&c, fb ? "task (pidfd)" : "task");
    }
    bad_case c;
    memset(&c, 1, sizeof(c));
    bad_task(&c);
    check_bad(&c, "plain thread");
}

/* ---- time bounds leave the child unreaped ---------------------------------------------------- */

typedef struct bound_case {
    bool deadline;
    int spawn_res, timed_res, alive_after, later_res, status;
} bound_case;

static void *bounded_wait(void *arg)
{
    bound_case *c = arg;
    pid_t pid = 0;
    c->spawn_res = spawn_sleep(&pid);
    if (c->spawn_res != 0)
        return NULL;
    if (c->deadline) {
        uint64_t old = urt_deadline(urt_now() + 30 * MS);
        c->timed_res = urt_process_wait(pid, &c->status);
        urt_deadline(old);
    } else {
        uint64_t old = urt_op_timeout(30 * MS);
        c->timed_res = urt_process_wait(pid, &c->status);
        urt_op_timeout(old);
    }
    c->alive_after = unreaped(pid);
    kill(pid, SIGTERM);
    c->later_res = urt_process_wait(pid, &c->status);
    return NULL;
}

Test(process, a_timed_out_wait_leaves_the_child_to_be_waited_again, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        for (int d = 0; d < 2; d++) {
            bound_case c = {.deadline = d, .spawn_res = 1, .timed_res = 1, .later_res = 1};
            cr_assert_eq(urt_runtime_block_on(rt, bounded_wait, &c, NULL), 0);
            cr_assert_eq(c.spawn_res, 0);
            cr_assert_eq(c.timed_res, -ETIMEDOUT, "%u workers%s, %s: the bounded wait gave %d", w,
                         fb ? " (pidfd)" : "", d ? "deadline" : "op timeout", c.timed_res);
            cr_assert(c.alive_after, "the timed-out wait reaped the child");
            cr_assert_eq(c.later_res, 0, "the second wait gave %d", c.later_res);
            cr_assert(WIFSIGNALED(c.status) && WTERMSIG(c.status) == SIGTERM, "status %#x", c.status);
        }
    }
}

/* ---- cancel -------------------------------------------------------------------------------- */

typedef struct cancel_case {
    _Atomic pid_t pid;
    int wait_res;
    bool cancelled;
} cancel_case;

static void *cancelled_waiter(void *arg)
{
    cancel_case *c = arg;
    pid_t pid = 0;
    if (spawn_sleep(&pid) != 0)
        return (void *)1;
    atomic_store(&c->pid, pid);
    c->wait_res = urt_process_wait(pid, NULL);
    c->cancelled = urt_cancelled();
    return NULL;
}

Test(process, cancel_ends_a_wait_and_leaves_the_child_unreaped, .timeout = 60)
{
    FOR_EACH_CONFIG(rt, w, fb) {
        cancel_case c = {.wait_res = 1};
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, cancelled_waiter, &c), 0);
        await_waiting(rt, t, fb ? "pidfd" : "waitid");
        cr_assert_eq(urt_cancel(t), 0);
        void *ret = (void *)1;
        urt_join(t, &ret);
        cr_assert_null(ret);
        cr_assert_eq(c.wait_res, -ECANCELED, "%u workers%s: the cancelled wait gave %d", w, fb ? " (pidfd)" : "",
                     c.wait_res);
        cr_assert(c.cancelled);
        pid_t pid = atomic_load(&c.pid);
        cr_assert(unreaped(pid), "the cancelled wait reaped the child");
        kill(pid, SIGKILL);
        int st = 0;
        cr_assert_eq(urt_process_wait(pid, &st), 0);   /* main: waitpid */
        cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %#x", st);
    }
}

/* ---- which path ran --------------------------------------------------------------------------- */

/* The dump names the op a waiting task is in: WAITID where the kernel has
 * it, the pidfd poll where URT_RING_NO_OPS took it away. */
Test(process, wait_uses_waitid_where_the_kernel_has_it_and_the_pidfd_fallback_otherwise, .timeout = 60)
{
    bool has = kernel_has_waitid();
    cr_log_info("this kernel %s IORING_OP_WAITID", has ? "has" : "lacks");
    for (int fb = 0; fb < 2; fb++) {
        urt_runtime *rt = rt_proc(2, fb || !has);
        cancel_case c = {.wait_res = 1};
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, cancelled_waiter, &c), 0);
        const char *want = fb || !has ? "pidfd" : "waitid";
        await_waiting(rt, t, want);   /* the test's timeout says it never got there */
        kill(atomic_load(&c.pid), SIGTERM);
        cr_assert_eq(urt_join(t, NULL), 0);
        cr_assert_eq(c.wait_res, 0, "%s path: wait gave %d", want, c.wait_res);
        urt_runtime_destroy(rt);
    }
}
