/* urt_runtime_metrics agrees with the task dump and with itself at quiet
 * moments; blocking-pool counts while jobs are held; urt_spawn_blocking_ex
 * names show in the dump. */
#include <alloca.h>
#include <pthread.h>
#include <stdatomic.h>

#include "support/urt_test.h"

#define MS 1000000ull

/* The dump as a string (caller frees), and its count of task lines. */
static char *dump_text(urt_runtime *rt, int *ntask_lines, int *ret)
{
    int fd = memfd_create("urt-dump", MFD_CLOEXEC);
    cr_assert_geq(fd, 0);
    *ret = urt_runtime_dump(rt, fd);
    off_t len = lseek(fd, 0, SEEK_END);
    char *buf = calloc(1, (size_t)len + 1);
    cr_assert_not_null(buf);
    cr_assert_eq(pread(fd, buf, (size_t)len, 0), len);
    close(fd);
    int n = 0;
    for (char *p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        n += strncmp(p, "task ", 5) == 0;
    *ntask_lines = n;
    return buf;
}

static unsigned count_str(const char *hay, const char *needle)
{
    unsigned n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void *wait_notify(void *arg)
{
    urt_notify *n = arg;
    /* touch 64 KiB of this task's stack, so it is resident */
    volatile char *p = alloca(64 * 1024);
    memset((char *)p, 1, 64 * 1024);
    urt_notify_wait(n);
    return (void *)(uintptr_t)p[100];
}

#define WAITERS 50

Test(metrics, live_tasks_agree_with_the_dump_and_with_spawned_minus_completed, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        urt_metrics m;
        cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
        cr_assert_eq(m.workers, w);
        cr_assert_eq(m.live_tasks, 0);
        cr_assert_eq(m.hibernated_tasks, 0);
        urt_notify *n[WAITERS];
        urt_task *t[WAITERS];
        for (int i = 0; i < WAITERS; i++) {
            cr_assert_eq(urt_notify_create(&n[i]), 0);
            urt_spawn_opts o = {.name = "metric-waiter"};
            cr_assert_eq(urt_spawn_ex(rt, &t[i], wait_notify, n[i], &o), 0);
        }
        for (int i = 0; i < WAITERS; i++)
            for (int k = 0; k < 5000 && !task_waits_on(rt, t[i], "notify"); k++)
                usleep(1000);
        /* quiet: every task waits */
        cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
        int lines, ret;
        char *d = dump_text(rt, &lines, &ret);
        cr_assert_eq(m.live_tasks, WAITERS);
        cr_assert_eq((uint64_t)lines, m.live_tasks, "dump:\n%s", d);
        cr_assert_eq(ret, lines);
        cr_assert_eq(m.spawned_total - m.completed_total, m.live_tasks);
        cr_assert_geq(m.spawned_total, WAITERS);
        cr_assert_eq(count_str(d, "name=metric-waiter kind=fiber"), WAITERS, "dump:\n%s", d);
        cr_assert_eq(count_str(d, " waits=notify "), WAITERS, "dump:\n%s", d);
        cr_assert_eq(count_str(d, " for="), WAITERS);
        cr_assert_eq(count_str(d, " age="), WAITERS);
        char want[64];
        snprintf(want, sizeof(want), "runtime workers=%u live_tasks=%d ", w, WAITERS);
        cr_assert_not_null(strstr(d, want), "no totals line '%s' in:\n%s", want, d);
        /* each waiter touched 64 KiB of its stack */
        cr_assert_geq(m.stack_bytes_resident, (uint64_t)WAITERS * 64 * 1024, "resident %llu",
                      (unsigned long long)m.stack_bytes_resident);
        free(d);
        for (int i = 0; i < WAITERS; i++) {
            urt_notify_signal(n[i]);
            void *v = NULL;
            cr_assert_eq(urt_join(t[i], &v), 0);
            cr_assert_eq(v, (void *)1);
            urt_notify_destroy(n[i]);
        }
        cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
        cr_assert_eq(m.live_tasks, 0);
        cr_assert_eq(m.spawned_total, m.completed_total);
        cr_assert_eq(m.spawned_total, WAITERS);
        d = dump_text(rt, &lines, &ret);
        cr_assert_eq(lines, 0, "dump:\n%s", d);
        free(d);
        urt_runtime_destroy(rt);
    }
}

/* ---- blocking pool ------------------------------------------------------------ */

static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static int gate_waiting;

static void *gated_job(void *arg)
{
    pthread_mutex_lock(&gate_lock);
    gate_waiting++;
    while (!gate_open)
        pthread_cond_wait(&gate_cv, &gate_lock);
    gate_waiting--;
    pthread_mutex_unlock(&gate_lock);
    return arg;
}

#define POOL_MAX 4
#define JOBS 6

Test(metrics, blocking_counts_while_jobs_are_held, .timeout = 60)
{
    urt_config cfg = {.workers = 2, .max_blocking_threads = POOL_MAX};
    urt_runtime *rt = rt_new_cfg(&cfg);
    gate_open = false;
    gate_waiting = 0;
    urt_task *t[JOBS];
    urt_spawn_opts o = {.name = "gated-job"};
    for (uintptr_t i = 0; i < JOBS; i++)
        cr_assert_eq(urt_spawn_blocking_ex(rt, &t[i], gated_job, (void *)i, &o), 0);
    urt_metrics m;
    bool steady = false;
    for (int k = 0; k < 10000 && !steady; k++) {
        cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
        pthread_mutex_lock(&gate_lock);
        int held = gate_waiting;
        pthread_mutex_unlock(&gate_lock);
        steady = held == POOL_MAX && m.blocking_queued == JOBS - POOL_MAX &&
                 m.blocking_threads - m.blocking_idle == POOL_MAX;
        if (!steady)
            usleep(1000);
    }
    cr_assert(steady, "threads %llu idle %llu queued %llu", (unsigned long long)m.blocking_threads,
              (unsigned long long)m.blocking_idle, (unsigned long long)m.blocking_queued);
    cr_assert_eq(m.live_tasks, JOBS);
    int lines, ret;
    char *d = dump_text(rt, &lines, &ret);
    cr_assert_eq(lines, JOBS, "dump:\n%s", d);
    cr_assert_eq(count_str(d, "name=gated-job kind=blocking"), JOBS, "dump:\n%s", d);
    cr_assert_eq(count_str(d, " on=pool-thread:"), POOL_MAX, "dump:\n%s", d);
    cr_assert_eq(count_str(d, "state=runnable"), JOBS - POOL_MAX, "dump:\n%s", d);
    free(d);
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_lock);
    for (uintptr_t i = 0; i < JOBS; i++) {
        void *v = NULL;
        cr_assert_eq(urt_join(t[i], &v), 0);
        cr_assert_eq(v, (void *)i);
    }
    cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
    cr_assert_eq(m.blocking_queued, 0);
    cr_assert_eq(m.live_tasks, 0);
    cr_assert_eq(m.spawned_total, JOBS);
    cr_assert_eq(m.completed_total, JOBS);
    urt_runtime_destroy(rt);
}

/* ---- block_in_place is shown where it runs ------------------------------------ */

static void *gate_fn(void *arg) { return gated_job(arg); }

static void *in_place(void *arg)
{
    void *r = NULL;
    int e = urt_block_in_place(gate_fn, arg, &r);
    return e == 0 ? r : (void *)(intptr_t)e;
}

Test(metrics, dump_shows_a_task_in_block_in_place_on_its_pool_thread, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    gate_open = false;
    gate_waiting = 0;
    urt_task *t;
    urt_spawn_opts o = {.name = "in-place"};
    cr_assert_eq(urt_spawn_ex(rt, &t, in_place, (void *)7, &o), 0);
    for (int k = 0; k < 5000; k++) {
        pthread_mutex_lock(&gate_lock);
        int held = gate_waiting;
        pthread_mutex_unlock(&gate_lock);
        if (held)
            break;
        usleep(1000);
    }
    int lines, ret;
    char *d = dump_text(rt, &lines, &ret);
    cr_assert_eq(lines, 1, "dump:\n%s", d);
    cr_assert_not_null(strstr(d, "name=in-place kind=fiber"), "dump:\n%s", d);
    cr_assert_not_null(strstr(d, " on=pool-thread:"), "dump:\n%s", d);
    cr_assert_not_null(strstr(d, " in=block_in_place"), "dump:\n%s", d);
    free(d);
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_lock);
    void *v = NULL;
    cr_assert_eq(urt_join(t, &v), 0);
    cr_assert_eq(v, (void *)7);
    urt_runtime_destroy(rt);
}

/* ---- bad input -------------------------------------------------------------------- */

static void *nothing(void *arg) { return arg; }
static atomic_int dropped;
static void on_drop(void *arg)
{
    (void)arg;
    atomic_fetch_add(&dropped, 1);
}

Test(metrics, bad_input_gives_einval, .timeout = 30)
{
    urt_metrics m;
    cr_assert_eq(urt_runtime_metrics(NULL, &m), -EINVAL);
    urt_runtime *rt = rt_new(1);
    cr_assert_eq(urt_runtime_metrics(rt, NULL), -EINVAL);
    urt_task *t = (urt_task *)1;
    urt_spawn_opts o = {.stack_size = 64 * 1024};
    cr_assert_eq(urt_spawn_blocking_ex(rt, &t, nothing, NULL, &o), -EINVAL, "stack_size does not apply");
    cr_assert_null(t);
    o = (urt_spawn_opts){.flags = URT_TASK_LOCAL};
    cr_assert_eq(urt_spawn_blocking_ex(rt, &t, nothing, NULL, &o), -EINVAL, "flags do not apply");
    cr_assert_eq(urt_spawn_blocking_ex(rt, &t, NULL, NULL, NULL), -EINVAL);
    cr_assert_eq(urt_spawn_blocking_ex(NULL, &t, nothing, NULL, NULL), -EINVAL, "no runtime outside a task");
    /* the fields that apply: a name, and on_drop for a job cancelled before it ran */
    o = (urt_spawn_opts){.name = "plain", .on_drop = on_drop};
    cr_assert_eq(urt_spawn_blocking_ex(rt, &t, nothing, (void *)3, &o), 0);
    void *v = NULL;
    cr_assert_eq(urt_join(t, &v), 0);
    cr_assert_eq(v, (void *)3);
    cr_assert_eq(urt_runtime_metrics(rt, &m), 0);
    cr_assert_eq(m.spawned_total, 1, "a refused spawn is not counted");
    cr_assert_eq(m.completed_total, 1);
    cr_assert_eq(atomic_load(&dropped), 0);
    urt_runtime_destroy(rt);
}
