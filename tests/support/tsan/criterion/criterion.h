/*
 * A small stand-in for the part of Criterion's API that urt's tests use,
 * for the TSan build only: Criterion 2.4's runner places a shared arena at a
 * random address that ThreadSanitizer has reserved, and aborts at start
 * under TSan. The test files are the same; this header gives them a runner
 * that forks one child per test (with a timeout), like Criterion does.
 *
 * Supported: Test(suite, name, .timeout, .signal, .exit_code, .init, .fini,
 * .disabled, .description), cr_assert* / cr_expect* (eq, neq, lt, leq, gt,
 * geq, null, not_null, not, str_eq, str_neq, str_empty, fail), cr_skip_test, cr_log_*.
 * A test binary takes --filter=SUBSTRING and ignores Criterion's own flags
 * (--jobs, --verbose ...).
 */
#ifndef URT_TSAN_CRITERION_H
#define URT_TSAN_CRITERION_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

struct criterion_test_opts {
    double timeout;
    int signal;
    int exit_code;
    void (*init)(void);
    void (*fini)(void);
    bool disabled;
    const char *description;
};

struct criterion_test_rec {
    const char *suite, *name;
    void (*fn)(void);
    struct criterion_test_opts opts;
    struct criterion_test_rec *next;
};

extern struct criterion_test_rec *criterion_shim_tests;
extern int criterion_shim_expect_failed;

#define Test(S_, N_, ...)                                                           \
    static void S_##_##N_##_impl(void);                                             \
    static struct criterion_test_rec S_##_##N_##_rec;                               \
    __attribute__((constructor)) static void S_##_##N_##_register(void)             \
    {                                                                                    \
        struct criterion_test_opts o = {__VA_ARGS__};                                   \
        S_##_##N_##_rec.suite = #S_;                                             \
        S_##_##N_##_rec.name = #N_;                                               \
        S_##_##N_##_rec.fn = S_##_##N_##_impl;                                 \
        S_##_##N_##_rec.opts = o;                                                   \
        S_##_##N_##_rec.next = criterion_shim_tests;                                \
        criterion_shim_tests = &S_##_##N_##_rec;                                    \
    }                                                                                    \
    static void S_##_##N_##_impl(void)

#define cr_shim_report_(fatal, cond, ...)                                             \
    do {                                                                              \
        fprintf(stderr, "%s:%d: Assertion failed: %s", __FILE__, __LINE__, cond);     \
        fprintf(stderr, " " __VA_ARGS__);                                             \
        fprintf(stderr, "\n");                                                        \
        if (fatal) {                                                                  \
            fflush(NULL);                                                             \
            _exit(1);                                                                 \
        }                                                                             \
        criterion_shim_expect_failed = 1;                                             \
    } while (0)

#define cr_shim_check_(fatal, c, text, ...) \
    do {                                    \
        if (!(c))                           \
            cr_shim_report_(fatal, text, "" __VA_ARGS__); \
    } while (0)

#define cr_assert(c, ...)            cr_shim_check_(1, (c), #c, __VA_ARGS__)
#define cr_expect(c, ...)            cr_shim_check_(0, (c), #c, __VA_ARGS__)
#define cr_assert_not(c, ...)        cr_shim_check_(1, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_expect_not(c, ...)        cr_shim_check_(0, !(c), "!(" #c ")", __VA_ARGS__)
#define cr_assert_eq(a, b, ...)      cr_shim_check_(1, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...)     cr_shim_check_(1, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...)      cr_shim_check_(1, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...)     cr_shim_check_(1, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...)      cr_shim_check_(1, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...)     cr_shim_check_(1, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_assert_null(a, ...)       cr_shim_check_(1, (a) == NULL, #a " == NULL", __VA_ARGS__)
#define cr_assert_not_null(a, ...)   cr_shim_check_(1, (a) != NULL, #a " != NULL", __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...)  cr_shim_check_(1, strcmp((a), (b)) == 0, #a " eq " #b, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_shim_check_(1, strcmp((a), (b)) != 0, #a " neq " #b, __VA_ARGS__)
#define cr_assert_str_empty(a, ...)     cr_shim_check_(1, (a)[0] == 0, #a " is empty", __VA_ARGS__)
#define cr_assert_str_not_empty(a, ...) cr_shim_check_(1, (a)[0] != 0, #a " is not empty", __VA_ARGS__)
#define cr_expect_eq(a, b, ...)      cr_shim_check_(0, (a) == (b), #a " == " #b, __VA_ARGS__)
#define cr_expect_neq(a, b, ...)     cr_shim_check_(0, (a) != (b), #a " != " #b, __VA_ARGS__)
#define cr_expect_lt(a, b, ...)      cr_shim_check_(0, (a) < (b), #a " < " #b, __VA_ARGS__)
#define cr_expect_leq(a, b, ...)     cr_shim_check_(0, (a) <= (b), #a " <= " #b, __VA_ARGS__)
#define cr_expect_gt(a, b, ...)      cr_shim_check_(0, (a) > (b), #a " > " #b, __VA_ARGS__)
#define cr_expect_geq(a, b, ...)     cr_shim_check_(0, (a) >= (b), #a " >= " #b, __VA_ARGS__)
#define cr_expect_null(a, ...)       cr_shim_check_(0, (a) == NULL, #a " == NULL", __VA_ARGS__)
#define cr_expect_not_null(a, ...)   cr_shim_check_(0, (a) != NULL, #a " != NULL", __VA_ARGS__)
#define cr_assert_fail(...)          cr_shim_report_(1, "fail", "" __VA_ARGS__)
#define cr_expect_fail(...)          cr_shim_report_(0, "fail", "" __VA_ARGS__)

#define cr_log_info(...)  do { fprintf(stderr, "[----] "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } while (0)
#define cr_log_warn(...)  do { fprintf(stderr, "[WARN] "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } while (0)
#define cr_log_error(...) do { fprintf(stderr, "[ERR ] "); fprintf(stderr, __VA_ARGS__); fprintf(stderr, "\n"); } while (0)

/* exit code 77: skipped */
#define cr_skip_test(...) do { fprintf(stderr, "[SKIP] " __VA_ARGS__); fprintf(stderr, "\n"); fflush(NULL); _exit(77); } while (0)

#ifndef CRITERION_SHIM_NO_MAIN
struct criterion_test_rec *criterion_shim_tests;
int criterion_shim_expect_failed;

int main(int argc, char **argv)
{
    const char *filter = NULL;   /* --filter=SUBSTRING; Criterion's own flags are ignored */
    for (int i = 1; i < argc; i++)
        if (strncmp(argv[i], "--filter=", 9) == 0)
            filter = argv[i] + 9;
    int total = 0, passed = 0, failed = 0, skipped = 0;
    for (struct criterion_test_rec *t = criterion_shim_tests; t; t = t->next) {
        if (filter && !strstr(t->name, filter) && !strstr(t->suite, filter))
            continue;
        if (t->opts.disabled)
            continue;
        total++;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            unsigned secs = t->opts.timeout > 0 ? (unsigned)(t->opts.timeout + 0.999) : 0;
            if (secs)
                alarm(secs);
            if (t->opts.init)
                t->opts.init();
            t->fn();
            if (t->opts.fini)
                t->opts.fini();
            fflush(NULL);
            _exit(criterion_shim_expect_failed ? 1 : t->opts.exit_code);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0)
            ;
        const char *verdict;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
            skipped++;
            verdict = "SKIP";
        } else if (t->opts.signal ? (WIFSIGNALED(st) && WTERMSIG(st) == t->opts.signal)
                                  : (WIFEXITED(st) && WEXITSTATUS(st) == t->opts.exit_code)) {
            passed++;
            verdict = "PASS";
        } else {
            failed++;
            verdict = "FAIL";
            if (WIFSIGNALED(st))
                fprintf(stderr, "%s::%s: killed by signal %d%s\n", t->suite, t->name, WTERMSIG(st),
                        WTERMSIG(st) == SIGALRM ? " (timed out)" : "");
        }
        printf("[%s] %s::%s\n", verdict, t->suite, t->name);
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Skipped: %d\n", total, passed, failed, skipped);
    return failed ? 1 : 0;
}
#endif
#endif
