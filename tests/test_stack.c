/*
 * test_stack.c - task stacks: mapping and guard, the per-worker cache and the
 * global pool, and the stack-overflow report.
 *
 * Tests that expect a process to die run the dying part in a fork()ed child
 * whose stderr is a pipe; the parent checks how it died and what it wrote.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "runtime/stack.h"

#if (defined(URT_ASAN) && URT_ASAN) || defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#define SKIP_UNDER_ASAN() \
    cr_skip_test("ASan owns SIGSEGV: urt__overflow_install is a no-op under ASan")
#else
#define UNDER_ASAN 0
#define SKIP_UNDER_ASAN() ((void)0)
#endif

/* Under ASan and TSan the "default" action for SIGSEGV is the sanitizer's
 * report and exit, not death by the signal. */
#if UNDER_ASAN || (defined(URT_TSAN) && URT_TSAN) || defined(__SANITIZE_THREAD__)
#define SANITIZER_HANDLES_SEGV 1
#else
#define SANITIZER_HANDLES_SEGV 0
#endif

#define OVERFLOW_42 "urt: stack overflow in task 42 (name)\n"

/* ---- helpers ------------------------------------------------------------- */

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Is the page holding addr mapped at all? */
static bool is_mapped(const void *addr)
{
    unsigned char v;
    uintptr_t a = (uintptr_t)addr & ~(uintptr_t)(page() - 1);

    return mincore((void *)a, page(), &v) == 0 || errno != ENOMEM;
}

/* How many pages of [lo, hi) are resident. */
static size_t resident_pages(const urt_stack *s)
{
    size_t n = (size_t)((char *)s->hi - (char *)s->lo) / page(), r = 0;
    unsigned char *v = malloc(n);

    cr_assert_not_null(v);
    cr_assert_eq(mincore(s->lo, n * page(), v), 0);
    for (size_t i = 0; i < n; i++)
        r += v[i] & 1;
    free(v);
    return r;
}

/* The /proc/self/maps line that holds addr: its range and permissions. */
static bool vma_of(const void *addr, uintptr_t *start, uintptr_t *end, char perms[5])
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    bool found = false;

    cr_assert_not_null(f);
    while (!found && fgets(line, sizeof line, f)) {
        unsigned long s, e;

        if (sscanf(line, "%lx-%lx %4s", &s, &e, perms) == 3 &&
            (uintptr_t)addr >= s && (uintptr_t)addr < e) {
            *start = s;
            *end = e;
            found = true;
        }
    }
    fclose(f);
    return found;
}

struct child {
    int status;
    char out[4096];     /* what it wrote to stderr, NUL-terminated */
};

/* Run fn(arg) in a child with stderr on a pipe; the child exits 0 if fn
 * returns. */
static void run_child(void (*fn)(void *), void *arg, struct child *res)
{
    int fd[2];
    size_t got = 0;
    pid_t pid;

    cr_assert_eq(pipe(fd), 0);
    fflush(NULL);
    pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        close(fd[0]);
        dup2(fd[1], STDERR_FILENO);
        close(fd[1]);
        fn(arg);
        _exit(0);
    }
    close(fd[1]);
    for (;;) {
        ssize_t r = read(fd[0], res->out + got, sizeof res->out - 1 - got);

        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    res->out[got] = '\0';
    close(fd[0]);
    cr_assert_eq(waitpid(pid, &res->status, 0), pid);
}

static bool died_of(const struct child *c, int sig)
{
    return WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig;
}

/* Died of a fault that is no overflow: by SIGSEGV, or through the
 * sanitizer's own report; never with urt's overflow message. */
static void assert_plain_segv(const struct child *c)
{
    if (SANITIZER_HANDLES_SEGV)
        cr_assert_not(WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0,
                      "the fault did not stop the child");
    else {
        cr_assert(died_of(c, SIGSEGV), "status %#x, stderr: %s", c->status, c->out);
        cr_assert_str_empty(c->out);
    }
    cr_assert_null(strstr(c->out, "stack overflow"), "stderr: %s", c->out);
}

static bool died_of_overflow_signal(const struct child *c)
{
    return died_of(c, SIGSEGV) || died_of(c, SIGABRT);
}

static void touch(volatile char *p)
{
    *p = 1;
}

/* ---- mapping and guard --------------------------------------------------- */

Test(stack, map_gives_a_writable_range_above_a_guard, .timeout = 30)
{
    urt_stack s;
    char *lo, *hi;

    cr_assert_eq(urt__stack_map(&s, URT_STACK_DEFAULT), 0);
    lo = s.lo;
    hi = s.hi;
    cr_assert_eq((uintptr_t)s.base % page(), 0);
    cr_assert_eq((uintptr_t)lo % page(), 0);
    cr_assert_eq((uintptr_t)hi % page(), 0);
    cr_assert_eq((size_t)(hi - lo), URT_STACK_DEFAULT);
    cr_assert_geq((size_t)(lo - (char *)s.base), URT_STACK_GUARD);
    cr_assert_eq((char *)s.base + s.total, hi);

    memset(lo, 0xa5, (size_t)(hi - lo));
    for (char *q = lo; q < hi; q += 997)
        cr_assert_eq((unsigned char)*q, 0xa5);
    cr_assert_eq((unsigned char)hi[-1], 0xa5);

    cr_assert(urt__stack_guard_hit(&s, s.base));
    cr_assert(urt__stack_guard_hit(&s, lo - 1));
    cr_assert_not(urt__stack_guard_hit(&s, lo));
    cr_assert_not(urt__stack_guard_hit(&s, hi - 1));
    cr_assert_not(urt__stack_guard_hit(&s, (char *)s.base - 1));

    urt__stack_unmap(&s);
    cr_assert_null(s.base);
    cr_assert_not(is_mapped(lo));
}

Test(stack, map_rounds_zero_small_and_odd_sizes_up, .timeout = 30)
{
    urt_stack s;

    cr_assert_eq(urt__stack_map(&s, 0), 0);
    cr_assert_eq((size_t)((char *)s.hi - (char *)s.lo), URT_STACK_DEFAULT);
    urt__stack_unmap(&s);

    cr_assert_eq(urt__stack_map(&s, 1), 0);
    cr_assert_eq((size_t)((char *)s.hi - (char *)s.lo), URT_STACK_MIN);
    urt__stack_unmap(&s);

    cr_assert_eq(urt__stack_map(&s, 100001), 0);
    cr_assert_geq((size_t)((char *)s.hi - (char *)s.lo), 100001);
    cr_assert_eq((size_t)((char *)s.hi - (char *)s.lo) % page(), 0);
    memset(s.lo, 1, 100001);
    urt__stack_unmap(&s);
}

Test(stack, map_of_an_impossible_size_returns_enomem, .timeout = 30)
{
    urt_stack s;

    cr_assert_eq(urt__stack_map(&s, SIZE_MAX), -ENOMEM);
    cr_assert_null(s.base);
    cr_assert_eq(urt__stack_map(&s, SIZE_MAX / 2), -ENOMEM);
    cr_assert_null(s.base);
    cr_assert_eq(urt__stack_map(&s, (size_t)1 << 60), -ENOMEM);
    cr_assert_null(s.base);
}

Test(stack, unmap_of_an_empty_stack_is_harmless, .timeout = 30)
{
    urt_stack s = { 0 };

    urt__stack_unmap(&s);
    cr_assert_null(s.base);
    cr_assert_not(urt__stack_guard_hit(&s, NULL));
}

Test(stack, guard_kind_is_reported_and_madv_guard_keeps_one_vma, .timeout = 30)
{
    const char *kind = urt__stack_guard_kind();
    uintptr_t start = 0, end = 0;
    char perms[5];
    urt_stack s;

    cr_log_info("guard mechanism: %s", kind);
    cr_assert(strcmp(kind, "madv_guard") == 0 || strcmp(kind, "mprotect") == 0, "kind %s", kind);
    cr_assert_eq(urt__stack_map(&s, URT_STACK_DEFAULT), 0);
    cr_assert(vma_of(s.base, &start, &end, perms));
    if (strcmp(kind, "madv_guard") == 0) {
        /* The guard lives in the page tables: one read-write VMA holds it all. */
        cr_assert_eq(strncmp(perms, "rw", 2), 0, "perms %s", perms);
        cr_assert_leq(start, (uintptr_t)s.base);
        cr_assert_geq(end, (uintptr_t)s.hi);
    } else {
        cr_assert_eq(strncmp(perms, "---", 3), 0, "perms %s", perms);
        cr_assert_eq(end, (uintptr_t)s.lo);
    }
    urt__stack_unmap(&s);
}

static void write_guard_low(void *arg)
{
    urt_stack *s = arg;

    touch(s->base);
}

static void write_guard_high(void *arg)
{
    urt_stack *s = arg;

    touch((char *)s->lo - 1);
}

Test(stack, writing_into_the_guard_faults, .timeout = 30)
{
    void (*fns[])(void *) = { write_guard_low, write_guard_high };
    urt_stack s;

    cr_assert_eq(urt__stack_map(&s, URT_STACK_DEFAULT), 0);
    for (unsigned i = 0; i < 2; i++) {
        struct child c;

        run_child(fns[i], &s, &c);
        assert_plain_segv(&c);
    }
    urt__stack_unmap(&s);
}

/* ---- overflow report ----------------------------------------------------- */

static urt_stack child_stack;
static urt_overflow_info child_info;

/* In the child: alternate stack, handler, and child_stack as task 42. */
static void arm(void)
{
    if (urt__stack_map(&child_stack, URT_STACK_DEFAULT) != 0)
        _exit(20);
    if (urt__overflow_thread_init() != 0)
        _exit(21);
    urt__overflow_install();
    child_info = (urt_overflow_info){ .stack = &child_stack, .task_id = 42, .name = "name" };
    urt__overflow_set_current(&child_info);
}

static void guard_hit_child(void *arg)
{
    arm();
    touch((char *)child_stack.lo - 1 - *(size_t *)arg);
}

Test(overflow, guard_hit_prints_the_task_and_aborts, .timeout = 30)
{
    size_t offsets[] = { 0, 4096, URT_STACK_GUARD - 1 };

    SKIP_UNDER_ASAN();
    for (unsigned i = 0; i < 3; i++) {
        struct child c;

        run_child(guard_hit_child, &offsets[i], &c);
        cr_assert(died_of_overflow_signal(&c), "status %#x, stderr: %s", c.status, c.out);
        cr_assert_str_eq(c.out, OVERFLOW_42);
    }
}

static ucontext_t main_uc, task_uc;
static volatile int stop_depth = -1;

/* Keeps the compiler from shrinking or dropping the array behind p. */
static void __attribute__((noinline)) escape(char *p)
{
    __asm__ __volatile__("" : : "r"(p) : "memory");
}

static int recurse(int depth)
{
    char pad[512];

    pad[0] = (char)depth;
    escape(pad);
    if (depth == stop_depth)
        return pad[0];
    return recurse(depth + 1) + pad[0];
}

static void recurse_entry(void)
{
    recurse(0);
}

static void __attribute__((noinline)) huge_frame(void)
{
    /* Bigger than the whole stack and its guard: without stack-clash
     * probing the first write would land below the guard. */
    char big[2 * (URT_STACK_DEFAULT + URT_STACK_GUARD)];

    big[0] = 1;
    escape(big);
}

static void huge_frame_entry(void)
{
    huge_frame();
}

static void run_on_task_stack(void *arg)
{
    static char fail[] = "returned from the task stack\n";

    arm();
    if (getcontext(&task_uc) != 0)
        _exit(32);
    task_uc.uc_stack.ss_sp = child_stack.lo;
    task_uc.uc_stack.ss_size = (size_t)((char *)child_stack.hi - (char *)child_stack.lo);
    task_uc.uc_link = &main_uc;
    makecontext(&task_uc, (void (*)(void))arg, 0);
    swapcontext(&main_uc, &task_uc);
    if (write(STDERR_FILENO, fail, sizeof fail - 1) < 0)
        _exit(31);
    _exit(30);
}

Test(overflow, deep_recursion_on_a_task_stack_is_reported, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(run_on_task_stack, (void *)recurse_entry, &c);
    cr_assert(died_of_overflow_signal(&c), "status %#x, stderr: %s", c.status, c.out);
    cr_assert_str_eq(c.out, OVERFLOW_42);
}

Test(overflow, huge_frame_cannot_jump_the_guard, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(run_on_task_stack, (void *)huge_frame_entry, &c);
    cr_assert(died_of_overflow_signal(&c), "status %#x, stderr: %s", c.status, c.out);
    cr_assert_str_eq(c.out, OVERFLOW_42);
}

static void *trap_page(void)
{
    void *p = mmap(NULL, page(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        _exit(22);
    return p;
}

static void stray_fault_child(void *arg)
{
    arm();
    touch(trap_page());
}

Test(overflow, a_fault_outside_the_guard_is_no_overflow, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(stray_fault_child, NULL, &c);
    assert_plain_segv(&c);
}

static void other_guard_child(void *arg)
{
    urt_stack other;

    arm();
    if (urt__stack_map(&other, URT_STACK_DEFAULT) != 0)
        _exit(23);
    touch((char *)other.lo - 1);
}

Test(overflow, the_guard_of_a_stack_that_is_not_running_is_no_overflow, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(other_guard_child, NULL, &c);
    assert_plain_segv(&c);
}

static void no_current_child(void *arg)
{
    arm();
    urt__overflow_set_current(NULL);
    touch((char *)child_stack.lo - 1);
}

Test(overflow, no_report_when_no_task_is_current, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(no_current_child, NULL, &c);
    assert_plain_segv(&c);
}

static void bus_fault_child(void *arg)
{
    int fd = memfd_create("urt-test-bus", 0);
    char *m;

    arm();
    if (fd < 0 || ftruncate(fd, (off_t)page()) != 0)
        _exit(26);
    m = mmap(NULL, 2 * page(), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED)
        _exit(27);
    touch(m + page());          /* past the end of the file */
}

Test(overflow, a_sigbus_goes_to_the_default_action, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(bus_fault_child, NULL, &c);
    if (SANITIZER_HANDLES_SEGV)
        cr_assert_not(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0);
    else
        cr_assert(died_of(&c, SIGBUS), "status %#x, stderr: %s", c.status, c.out);
    cr_assert_null(strstr(c.out, "stack overflow"), "stderr: %s", c.out);
}

static void ignored_sigsegv_child(void *arg)
{
    signal(SIGSEGV, SIG_IGN);
    arm();
    /* Sent, not a fault: the previous disposition ignores it. */
    raise(SIGSEGV);
}

Test(overflow, a_sent_signal_that_was_ignored_stays_ignored, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(ignored_sigsegv_child, NULL, &c);
    cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 0,
              "status %#x, stderr: %s", c.status, c.out);
    cr_assert_str_empty(c.out);
}

static void prev_sigaction(int sig, siginfo_t *si, void *uc)
{
    static const char msg[] = "previous handler\n";

    if (write(STDERR_FILENO, msg, sizeof msg - 1) < 0)
        _exit(8);
    _exit(7);
}

static void prev_handler(int sig)
{
    prev_sigaction(sig, NULL, NULL);
}

static void set_previous(bool siginfo)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    if (siginfo) {
        sa.sa_sigaction = prev_sigaction;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = prev_handler;
    }
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
}

static void chain_child(void *arg)
{
    set_previous(*(bool *)arg);
    arm();
    touch(trap_page());
}

Test(overflow, other_faults_go_to_the_previous_handler, .timeout = 30)
{
    bool siginfo[] = { true, false };

    SKIP_UNDER_ASAN();
    for (unsigned i = 0; i < 2; i++) {
        struct child c;

        run_child(chain_child, &siginfo[i], &c);
        cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 7,
                  "status %#x, stderr: %s", c.status, c.out);
        cr_assert_str_eq(c.out, "previous handler\n");
    }
}

static void guard_hit_with_previous_child(void *arg)
{
    set_previous(true);
    arm();
    touch((char *)child_stack.lo - 1);
}

Test(overflow, a_guard_hit_is_not_passed_to_the_previous_handler, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    run_child(guard_hit_with_previous_child, NULL, &c);
    cr_assert(died_of_overflow_signal(&c), "status %#x, stderr: %s", c.status, c.out);
    cr_assert_str_eq(c.out, OVERFLOW_42);
}

static void *install_thread(void *arg)
{
    pthread_barrier_t *b = arg;

    if (urt__overflow_thread_init() != 0)
        return (void *)1;
    pthread_barrier_wait(b);
    urt__overflow_install();
    urt__overflow_thread_fini();
    return NULL;
}

static void install_race_child(void *arg)
{
    enum { N = 8 };
    pthread_t t[N];
    pthread_barrier_t b;

    set_previous(true);
    pthread_barrier_init(&b, NULL, N);
    for (int i = 0; i < N; i++)
        if (pthread_create(&t[i], NULL, install_thread, &b) != 0)
            _exit(24);
    for (int i = 0; i < N; i++) {
        void *r;

        pthread_join(t[i], &r);
        if (r)
            _exit(25);
    }
    arm();      /* installs again: still once */
    touch(trap_page());
}

Test(overflow, install_from_many_threads_installs_once, .timeout = 30)
{
    struct child c;

    SKIP_UNDER_ASAN();
    /* Were ours installed twice, it would chain to itself instead of to
     * the previous handler. */
    run_child(install_race_child, NULL, &c);
    cr_assert(WIFEXITED(c.status) && WEXITSTATUS(c.status) == 7,
              "status %#x, stderr: %s", c.status, c.out);
    cr_assert_str_eq(c.out, "previous handler\n");
}

static void *altstack_thread(void *arg)
{
    stack_t before, during, after;
    int *ok = arg;

    *ok = 0;
    if (sigaltstack(NULL, &before) != 0)
        return NULL;
    if (urt__overflow_thread_init() != 0)
        return NULL;
    if (urt__overflow_thread_init() != 0)      /* a second call is harmless */
        return NULL;
    if (sigaltstack(NULL, &during) != 0 || (during.ss_flags & SS_DISABLE) ||
        during.ss_size < 4 * (size_t)SIGSTKSZ)
        return NULL;
    urt__overflow_thread_fini();
    if (sigaltstack(NULL, &after) != 0)
        return NULL;
    if ((after.ss_flags & SS_DISABLE) != (before.ss_flags & SS_DISABLE))
        return NULL;
    if (!(after.ss_flags & SS_DISABLE) && after.ss_sp != before.ss_sp)
        return NULL;
    *ok = 1;
    return NULL;
}

Test(overflow, thread_init_sets_an_alternate_stack_and_fini_restores, .timeout = 30)
{
    pthread_t t;
    int ok = 0;

    cr_assert_eq(pthread_create(&t, NULL, altstack_thread, &ok), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(ok, 1);
}

/* ---- pool and cache ------------------------------------------------------ */

Test(pool, a_put_stack_comes_back_from_the_cache, .timeout = 30)
{
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack s;
    void *base;

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 32), 0);
    cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s), 0);
    base = s.base;
    cr_assert_eq((size_t)((char *)s.hi - (char *)s.lo), URT_STACK_DEFAULT);
    urt__stack_put(&p, &c, &s);
    cr_assert_null(s.base);
    cr_assert_eq(c.n, 1);
    cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s), 0);
    cr_assert_eq(s.base, base);
    cr_assert_eq(c.n, 0);
    /* A request that rounds to the pool's size is the pool's size. */
    urt__stack_put(&p, &c, &s);
    cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT - 100, &s), 0);
    cr_assert_eq(s.base, base);
    urt__stack_put(&p, &c, &s);
    urt__stack_cache_drain(&p, &c);
    urt__stack_pool_destroy(&p);
}

Test(pool, a_stack_put_without_a_cache_comes_back_from_the_pool, .timeout = 30)
{
    urt_stack_pool p;
    urt_stack s;
    void *base;

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 32), 0);
    cr_assert_eq(urt__stack_get(&p, NULL, URT_STACK_DEFAULT, &s), 0);
    base = s.base;
    urt__stack_put(&p, NULL, &s);
    cr_assert_eq(p.nfree, 1);
    cr_assert_eq(urt__stack_get(&p, NULL, URT_STACK_DEFAULT, &s), 0);
    cr_assert_eq(s.base, base);
    cr_assert_eq(p.nfree, 0);
    urt__stack_put(&p, NULL, &s);
    urt__stack_pool_destroy(&p);
    cr_assert_not(is_mapped(base));
}

Test(pool, other_sizes_bypass_cache_and_pool, .timeout = 30)
{
    size_t sizes[] = { URT_STACK_MIN, URT_STACK_DEFAULT * 2, 1 << 20 };
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack held, s;

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 32), 0);
    /* One of the pool's size, cached, must not be handed out for another. */
    cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &held), 0);
    urt__stack_put(&p, &c, &held);
    cr_assert_eq(c.n, 1);
    for (unsigned i = 0; i < 3; i++) {
        void *base;

        cr_assert_eq(urt__stack_get(&p, &c, sizes[i], &s), 0);
        cr_assert_eq((size_t)((char *)s.hi - (char *)s.lo), sizes[i]);
        cr_assert_neq(s.base, c.s[0].base);
        cr_assert_eq(c.n, 1);
        memset(s.lo, 7, sizes[i]);
        base = s.base;
        urt__stack_put(&p, &c, &s);
        cr_assert_null(s.base);
        cr_assert_eq(c.n, 1);
        cr_assert_eq(p.nfree, 0);
        cr_assert_not(is_mapped(base));
    }
    urt__stack_cache_drain(&p, &c);
    urt__stack_pool_destroy(&p);
}

Test(pool, a_full_cache_spills_half_to_the_pool, .timeout = 30)
{
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack s[URT_STACK_CACHE + 1];

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 64), 0);
    for (unsigned i = 0; i <= URT_STACK_CACHE; i++)
        cr_assert_eq(urt__stack_map(&s[i], URT_STACK_DEFAULT), 0);
    for (unsigned i = 0; i < URT_STACK_CACHE; i++)
        urt__stack_put(&p, &c, &s[i]);
    cr_assert_eq(c.n, URT_STACK_CACHE);
    cr_assert_eq(p.nfree, 0);
    urt__stack_put(&p, &c, &s[URT_STACK_CACHE]);
    cr_assert_eq(c.n, URT_STACK_CACHE / 2 + 1);
    cr_assert_eq(p.nfree, URT_STACK_CACHE / 2);
    urt__stack_cache_drain(&p, &c);
    urt__stack_pool_destroy(&p);
}

Test(pool, an_empty_cache_refills_a_batch_from_the_pool, .timeout = 30)
{
    enum { N = URT_STACK_CACHE / 2 + 4 };
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack s;

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 64), 0);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(urt__stack_map(&s, URT_STACK_DEFAULT), 0);
        urt__stack_put(&p, NULL, &s);
    }
    cr_assert_eq(p.nfree, N);
    cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s), 0);
    cr_assert_eq(c.n, URT_STACK_CACHE / 2 - 1);
    cr_assert_eq(p.nfree, N - URT_STACK_CACHE / 2);
    urt__stack_put(&p, &c, &s);
    urt__stack_cache_drain(&p, &c);
    cr_assert_eq(p.nfree, N);
    urt__stack_pool_destroy(&p);
}

Test(pool, drain_empties_the_cache_into_the_pool, .timeout = 30)
{
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack s[5];

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 64), 0);
    for (unsigned i = 0; i < 5; i++)
        cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s[i]), 0);
    for (unsigned i = 0; i < 5; i++)
        urt__stack_put(&p, &c, &s[i]);
    cr_assert_eq(c.n, 5);
    urt__stack_cache_drain(&p, &c);
    cr_assert_eq(c.n, 0);
    cr_assert_eq(p.nfree, 5);
    urt__stack_cache_drain(&p, &c);
    cr_assert_eq(p.nfree, 5);
    urt__stack_pool_destroy(&p);
}

Test(pool, the_pool_keeps_at_most_cap_and_unmaps_the_rest, .timeout = 30)
{
    unsigned caps[] = { 0, 4 };

    for (unsigned k = 0; k < 2; k++) {
        urt_stack_pool p;
        urt_stack_cache c = { .n = 0 };
        urt_stack s[10];
        void *base[10];
        unsigned mapped = 0;

        cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, caps[k]), 0);
        for (unsigned i = 0; i < 10; i++) {
            cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s[i]), 0);
            base[i] = s[i].base;
        }
        for (unsigned i = 0; i < 10; i++)
            urt__stack_put(&p, &c, &s[i]);
        urt__stack_cache_drain(&p, &c);
        cr_assert_eq(p.nfree, caps[k]);
        for (unsigned i = 0; i < 10; i++)
            mapped += is_mapped(base[i]);
        cr_assert_eq(mapped, caps[k]);
        urt__stack_pool_destroy(&p);
        for (unsigned i = 0; i < 10; i++)
            cr_assert_not(is_mapped(base[i]));
    }
}

Test(pool, ten_thousand_stacks_map_and_unmap, .timeout = 120)
{
    enum { N = 10000 };
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack *s = calloc(N, sizeof *s);
    void **base = calloc(N, sizeof *base);

    cr_assert(s && base);
    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 64), 0);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s[i]), 0, "stack %u", i);
        base[i] = s[i].base;
        ((char *)s[i].hi)[-1] = (char)i;
        *(char *)s[i].lo = (char)i;
    }
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(*(char *)s[i].lo, (char)i);
        urt__stack_put(&p, &c, &s[i]);
    }
    cr_assert_leq(c.n, URT_STACK_CACHE);
    cr_assert_eq(p.nfree, 64);
    urt__stack_cache_drain(&p, &c);
    urt__stack_pool_destroy(&p);
    for (unsigned i = 0; i < N; i++)
        cr_assert_not(is_mapped(base[i]), "stack %u still mapped", i);
    free(s);
    free(base);
}

Test(pool, pooled_stacks_beyond_a_few_give_their_memory_back, .timeout = 60)
{
    enum { N = 32 };
    urt_stack_pool p;
    urt_stack_cache c = { .n = 0 };
    urt_stack s[N];
    unsigned dirty = 0;

    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 64), 0);
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(urt__stack_get(&p, &c, URT_STACK_DEFAULT, &s[i]), 0);
        memset(s[i].lo, 0x5a, URT_STACK_DEFAULT);
        cr_assert_eq(resident_pages(&s[i]), URT_STACK_DEFAULT / page());
    }
    for (unsigned i = 0; i < N; i++)
        urt__stack_put(&p, &c, &s[i]);
    urt__stack_cache_drain(&p, &c);
    cr_assert_eq(p.nfree, N);
    for (unsigned i = 0; i < p.nfree; i++)
        dirty += resident_pages(&p.free[i]) != 0;
    cr_assert_leq(dirty, 8, "%u of %u pooled stacks still hold pages", dirty, N);
    /* Released stacks work as before. */
    for (unsigned i = 0; i < N; i++) {
        cr_assert_eq(urt__stack_get(&p, NULL, URT_STACK_DEFAULT, &s[i]), 0);
        memset(s[i].lo, 0x3c, URT_STACK_DEFAULT);
    }
    for (unsigned i = 0; i < N; i++)
        urt__stack_put(&p, NULL, &s[i]);
    urt__stack_pool_destroy(&p);
}

struct worker_arg {
    urt_stack_pool *p;
    unsigned id, bad;
};

static void *pool_worker(void *arg)
{
    struct worker_arg *w = arg;
    urt_stack_cache c = { .n = 0 };
    urt_stack held[URT_STACK_CACHE + 4];

    for (unsigned round = 0; round < 2000; round++) {
        unsigned k = 1 + round % (sizeof held / sizeof held[0]);

        for (unsigned i = 0; i < k; i++) {
            if (urt__stack_get(w->p, round % 3 ? &c : NULL, URT_STACK_DEFAULT, &held[i]) != 0) {
                w->bad++;
                return NULL;
            }
            ((unsigned *)held[i].hi)[-1] = w->id;
            *(unsigned *)held[i].lo = round;
        }
        for (unsigned i = 0; i < k; i++) {
            if (((unsigned *)held[i].hi)[-1] != w->id || *(unsigned *)held[i].lo != round)
                w->bad++;
            urt__stack_put(w->p, round % 5 ? &c : NULL, &held[i]);
        }
    }
    urt__stack_cache_drain(w->p, &c);
    return NULL;
}

Test(pool, concurrent_workers_never_share_a_stack, .timeout = 120)
{
    unsigned nthreads[] = { 1, 2, 4, 8 };

    for (unsigned k = 0; k < 4; k++) {
        urt_stack_pool p;
        pthread_t t[8];
        struct worker_arg w[8];

        cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 24), 0);
        for (unsigned i = 0; i < nthreads[k]; i++) {
            w[i] = (struct worker_arg){ .p = &p, .id = i + 1 };
            cr_assert_eq(pthread_create(&t[i], NULL, pool_worker, &w[i]), 0);
        }
        for (unsigned i = 0; i < nthreads[k]; i++) {
            cr_assert_eq(pthread_join(t[i], NULL), 0);
            cr_assert_eq(w[i].bad, 0, "thread %u saw a stack used by another", i);
        }
        cr_assert_leq(p.nfree, 24);
        urt__stack_pool_destroy(&p);
    }
}

Test(pool, init_rejects_an_impossible_size, .timeout = 30)
{
    urt_stack_pool p;

    cr_assert_eq(urt__stack_pool_init(&p, SIZE_MAX, 8), -EINVAL);
}

/* munmap can fail (vm.max_map_count when a merged VMA must be split, or a
 * sealed mapping): the stack is still whole and usable, so the pool keeps
 * it, counts it, and hands it out again instead of losing it. A sealed
 * mapping (mseal, 6.10+) makes munmap fail here for sure. */
Test(pool, a_stack_that_cannot_be_unmapped_is_kept_and_reused, .timeout = 30)
{
#ifndef SYS_mseal
#define SYS_mseal 462
#endif
    urt_stack_pool p;
    cr_assert_eq(urt__stack_pool_init(&p, URT_STACK_DEFAULT, 0), 0);   /* cap 0: every put unmaps */
    urt_stack s;
    cr_assert_eq(urt__stack_get(&p, NULL, URT_STACK_DEFAULT, &s), 0);
    void *base = s.base;
    if (syscall(SYS_mseal, s.base, s.total, 0) != 0)
        cr_skip_test("mseal is not available here: %s", strerror(errno));
    memset(s.lo, 0x5a, 4096);
    urt__stack_put(&p, NULL, &s);
    cr_assert_eq(p.unmap_failures, 1, "the failed munmap is counted");
    cr_assert(is_mapped(base));
    urt_stack again;
    cr_assert_eq(urt__stack_get(&p, NULL, URT_STACK_DEFAULT, &again), 0);
    cr_assert_eq(again.base, base, "the kept stack is handed out again");
    memset(again.lo, 0, (size_t)((char *)again.hi - (char *)again.lo));   /* usable, whole */
    urt__stack_put(&p, NULL, &again);
    cr_assert_eq(p.unmap_failures, 2);
    urt__stack_pool_destroy(&p);   /* tries once more; a sealed stack stays mapped */
}
