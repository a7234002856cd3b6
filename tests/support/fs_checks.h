/* The checks of the file calls (urt_readv .. urt_mkdirat), shared by
 * tests/test_fs.c (ring ops) and tests/test_fs_fallback.c (every opcode
 * taken away with URT_RING_NO_OPS=all: the syscall fallbacks). The including
 * file defines FS_SUITE (the Criterion suite name) and FS_FALLBACK (0 or 1)
 * first. Each test runs in a process of its own, so fs_mode() may set the
 * environment before the runtime is created. */
#ifndef URT_TEST_FS_CHECKS_H
#define URT_TEST_FS_CHECKS_H

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

/* Test() with FS_SUITE expanded first (a runner may stringify its argument) */
#define FS_TEST(...) Test(__VA_ARGS__)

#if defined(URT_ASAN) || defined(URT_TSAN)
#define COPY_BYTES (32u << 20)
#else
#define COPY_BYTES (200u << 20)
#endif
#define COPY_TASKS 8

static void fs_mode(void)
{
    if (FS_FALLBACK)
        cr_assert_eq(setenv("URT_RING_NO_OPS", "all", 1), 0);
}

/* A fresh directory under /tmp; rm_tree removes it with what is in it. */
static void tmp_dir(char *out, size_t n)
{
    snprintf(out, n, "/tmp/urt-fs-XXXXXX");
    cr_assert_not_null(mkdtemp(out), "mkdtemp: %s", strerror(errno));
}

static void rm_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    char p[PATH_MAX];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert_not_null(d);
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n;
}

/* The result of a plain syscall as urt gives it. */
static long plain(long r) { return r < 0 ? -errno : r; }

/* ---- every call's success and error paths --------------------------------------------- */

typedef struct fs_ctx {
    char dir[64];
    int fails;
    char why[256];
} fs_ctx;

/* A runtime of `workers`, a fresh context (with a temp dir when `dir`), fn(c)
 * as a task; asserts that none of its CHECKs failed; cleans up. */
static void run_checks(unsigned workers, urt_fn fn, bool dir)
{
    urt_runtime *rt = rt_new(workers);
    fs_ctx c;
    memset(&c, 0, sizeof(c));
    if (dir)
        tmp_dir(c.dir, sizeof(c.dir));
    cr_assert_eq(urt_runtime_block_on(rt, fn, &c, NULL), 0);
    cr_assert_eq(c.fails, 0, "%u workers: %d failed, first: %s", workers, c.fails, c.why);
    urt_runtime_destroy(rt);
    if (dir)
        rm_tree(c.dir);
}

#define CHECK(ctx, cond, ...)                                              \
    do {                                                                   \
        if (!(cond) && !(ctx)->fails++)                                    \
            snprintf((ctx)->why, sizeof((ctx)->why), __VA_ARGS__);         \
    } while (0)

static void *file_calls(void *arg)
{
    fs_ctx *c = arg;
    int dfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    CHECK(c, dfd >= 0, "open dir");
    long r;

    /* mkdirat, and again: -EEXIST; a missing parent: -ENOENT */
    CHECK(c, (r = urt_mkdirat(dfd, "sub", 0755)) == 0, "mkdirat: %ld", r);
    CHECK(c, (r = urt_mkdirat(dfd, "sub", 0755)) == -EEXIST, "mkdirat twice: %ld", r);
    CHECK(c, (r = urt_mkdirat(dfd, "none/sub", 0755)) == -ENOENT, "mkdirat no parent: %ld", r);

    /* openat: create, -EEXIST with O_EXCL, -ENOENT, -EISDIR */
    int fd = urt_openat(dfd, "sub/f", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    CHECK(c, fd >= 0, "openat create: %d", fd);
    CHECK(c, (r = urt_openat(dfd, "sub/f", O_RDWR | O_CREAT | O_EXCL, 0644)) == -EEXIST, "O_EXCL: %ld", r);
    CHECK(c, (r = urt_openat(dfd, "nothing", O_RDONLY, 0)) == -ENOENT, "openat missing: %ld", r);
    CHECK(c, (r = urt_openat(dfd, "sub", O_WRONLY, 0)) == -EISDIR, "openat dir for writing: %ld", r);
    CHECK(c, (r = urt_openat(AT_FDCWD, c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0)) >= 0, "AT_FDCWD: %ld", r);
    if (r >= 0)
        close((int)r);

    /* writev at offset 0 (3 buffers), readv back (2 buffers) */
    char a[5] = "hello", b[1] = {' '}, w[6] = "world!";
    struct iovec wv[3] = {{a, 5}, {b, 1}, {w, 6}};
    CHECK(c, (r = urt_writev(fd, wv, 3, 0)) == 12, "writev: %ld", r);
    char x[7] = {0}, y[16] = {0};
    struct iovec rv[2] = {{x, 7}, {y, sizeof(y)}};
    CHECK(c, (r = urt_readv(fd, rv, 2, 0)) == 12, "readv: %ld", r);
    CHECK(c, memcmp(x, "hello w", 7) == 0 && memcmp(y, "orld!", 5) == 0, "readv bytes");
    /* at the end: 0 */
    CHECK(c, (r = urt_readv(fd, rv, 2, 12)) == 0, "readv at EOF: %ld", r);
    CHECK(c, (r = urt_readv(fd, rv, 2, 1000)) == 0, "readv past EOF: %ld", r);
    /* off -1: the file position (still 0 after the positioned calls), which moves */
    memset(x, 0, sizeof(x));
    struct iovec one = {x, 5};
    CHECK(c, (r = urt_readv(fd, &one, 1, -1)) == 5 && !memcmp(x, "hello", 5), "readv at position: %ld", r);
    CHECK(c, lseek(fd, 0, SEEK_CUR) == 5, "position after readv");
    lseek(fd, 0, SEEK_END);
    struct iovec tail = {(char *)"??", 2};
    CHECK(c, (r = urt_writev(fd, &tail, 1, -1)) == 2, "writev at position: %ld", r);
    CHECK(c, lseek(fd, 0, SEEK_CUR) == 14, "position after writev");

    /* statx matches stat */
    struct statx sx;
    memset(&sx, 0, sizeof(sx));
    struct stat st;
    CHECK(c, (r = urt_statx(dfd, "sub/f", 0, STATX_BASIC_STATS, &sx)) == 0, "statx: %ld", r);
    CHECK(c, fstat(fd, &st) == 0 && sx.stx_size == 14 && (off_t)sx.stx_size == st.st_size &&
                 sx.stx_ino == st.st_ino && (sx.stx_mask & STATX_SIZE),
          "statx size %llu", (unsigned long long)sx.stx_size);
    CHECK(c, (r = urt_statx(fd, "", AT_EMPTY_PATH, STATX_SIZE, &sx)) == 0 && sx.stx_size == 14, "statx empty path: %ld", r);
    CHECK(c, (r = urt_statx(dfd, "nothing", 0, STATX_SIZE, &sx)) == -ENOENT, "statx missing: %ld", r);

    /* fsync, fdatasync */
    CHECK(c, (r = urt_fsync(fd, 0)) == 0, "fsync: %ld", r);
    CHECK(c, (r = urt_fsync(fd, URT_FSYNC_DATASYNC)) == 0, "fdatasync: %ld", r);

    /* fallocate grows the file (as the plain syscall does here, or fails as it does) */
    r = urt_fallocate(fd, 0, 0, 1 << 20);
    int pfd = open(c->dir, O_RDONLY | O_DIRECTORY);
    int tfd = openat(pfd, "probe", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    long pr = plain(fallocate(tfd, 0, 0, 1 << 20));
    close(tfd);
    unlinkat(pfd, "probe", 0);
    close(pfd);
    CHECK(c, r == pr, "fallocate %ld, plain %ld", r, pr);
    if (r == 0)
        CHECK(c, fstat(fd, &st) == 0 && st.st_size == (1 << 20), "size after fallocate %lld", (long long)st.st_size);
    /* ftruncate shrinks it; the bytes before stay */
    CHECK(c, (r = urt_ftruncate(fd, 3)) == 0, "ftruncate: %ld", r);
    CHECK(c, fstat(fd, &st) == 0 && st.st_size == 3, "size after ftruncate %lld", (long long)st.st_size);
    char three[4] = {0};
    CHECK(c, pread(fd, three, 3, 0) == 3 && !memcmp(three, "hel", 3), "bytes after ftruncate");
    /* ftruncate of a read-only fd: what the syscall says */
    int ro = open(c->dir, O_RDONLY | O_DIRECTORY);
    int rofd = openat(ro, "sub/f", O_RDONLY | O_CLOEXEC);
    CHECK(c, (r = urt_ftruncate(rofd, 0)) == plain(ftruncate(rofd, 0)) && r < 0, "ftruncate read-only: %ld", r);
    close(rofd);
    close(ro);

    /* a closed fd: -EBADF from every fd call */
    /* a high number: a closed low one may be handed out again at once to
     * whatever the runtime opens meanwhile */
    int dead = fcntl(fd, F_DUPFD_CLOEXEC, 4000);
    close(dead);
    CHECK(c, (r = urt_readv(dead, rv, 1, 0)) == -EBADF, "readv closed fd: %ld", r);
    CHECK(c, (r = urt_writev(dead, wv, 1, 0)) == -EBADF, "writev closed fd: %ld", r);
    CHECK(c, (r = urt_fsync(dead, 0)) == -EBADF, "fsync closed fd: %ld", r);
    CHECK(c, (r = urt_ftruncate(dead, 0)) == -EBADF, "ftruncate closed fd: %ld", r);
    CHECK(c, (r = urt_fallocate(dead, 0, 0, 1)) == -EBADF, "fallocate closed fd: %ld", r);
    CHECK(c, (r = urt_openat(dead, "x", O_RDONLY, 0)) == -EBADF, "openat closed dirfd: %ld", r);
    /* readv of a directory: -EISDIR */
    CHECK(c, (r = urt_readv(dfd, rv, 1, 0)) == -EISDIR, "readv dir: %ld", r);
    close(fd);

    /* renameat: plain, onto an existing name with RENAME_NOREPLACE, missing */
    CHECK(c, (r = urt_renameat(dfd, "sub/f", dfd, "sub/g", 0)) == 0, "renameat: %ld", r);
    CHECK(c, faccessat(dfd, "sub/f", F_OK, 0) != 0 && errno == ENOENT, "old name gone");
    CHECK(c, faccessat(dfd, "sub/g", F_OK, 0) == 0, "new name there");
    int h = openat(dfd, "sub/h", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(h);
    CHECK(c, (r = urt_renameat(dfd, "sub/g", dfd, "sub/h", RENAME_NOREPLACE)) == -EEXIST, "NOREPLACE: %ld", r);
    CHECK(c, (r = urt_renameat(dfd, "sub/nothing", AT_FDCWD, "/tmp/urt-fs-never", 0)) == -ENOENT, "rename missing: %ld", r);

    /* unlinkat: a non-empty dir, a dir without AT_REMOVEDIR, files, then the dir */
    CHECK(c, (r = urt_unlinkat(dfd, "sub", AT_REMOVEDIR)) == -ENOTEMPTY, "rmdir non-empty: %ld", r);
    CHECK(c, (r = urt_unlinkat(dfd, "sub", 0)) == -EISDIR, "unlink dir: %ld", r);
    CHECK(c, (r = urt_unlinkat(dfd, "sub/g", 0)) == 0, "unlink g: %ld", r);
    CHECK(c, (r = urt_unlinkat(dfd, "sub/h", 0)) == 0, "unlink h: %ld", r);
    CHECK(c, (r = urt_unlinkat(dfd, "sub/h", 0)) == -ENOENT, "unlink twice: %ld", r);
    CHECK(c, (r = urt_unlinkat(dfd, "sub", AT_REMOVEDIR)) == 0, "rmdir: %ld", r);
    CHECK(c, faccessat(dfd, "sub", F_OK, 0) != 0 && errno == ENOENT, "dir gone");
    close(dfd);
    return NULL;
}

FS_TEST(FS_SUITE, every_call_does_what_its_syscall_does, .timeout = 60)
{
    fs_mode();
    FOR_EACH_WORKER_COUNT(w)
        run_checks(w, file_calls, true);
}

/* ---- bad input -------------------------------------------------------------------------- */

static void *bad_input(void *arg)
{
    fs_ctx *c = arg;
    char buf[4];
    struct iovec iov = {buf, sizeof(buf)};
    struct statx sx;
    long r;
    CHECK(c, (r = urt_readv(-1, &iov, 1, 0)) == -EBADF, "readv fd -1: %ld", r);
    CHECK(c, (r = urt_writev(-5, &iov, 1, 0)) == -EBADF, "writev fd -5: %ld", r);
    CHECK(c, (r = urt_readv(0, NULL, 1, 0)) == -EINVAL, "readv iov NULL: %ld", r);
    CHECK(c, (r = urt_readv(0, &iov, 0, 0)) == -EINVAL, "readv iovcnt 0: %ld", r);
    CHECK(c, (r = urt_writev(1, &iov, -1, 0)) == -EINVAL, "writev iovcnt -1: %ld", r);
    CHECK(c, (r = urt_readv(0, &iov, IOV_MAX + 1, 0)) == -EINVAL, "readv iovcnt > IOV_MAX: %ld", r);
    CHECK(c, (r = urt_readv(0, &iov, 1, -2)) == -EINVAL, "readv off -2: %ld", r);
    CHECK(c, (r = urt_writev(1, &iov, 1, INT64_MIN)) == -EINVAL, "writev off INT64_MIN: %ld", r);
    CHECK(c, (r = urt_openat(AT_FDCWD, NULL, O_RDONLY, 0)) == -EINVAL, "openat NULL: %ld", r);
    CHECK(c, (r = urt_openat(-7, "/tmp", O_RDONLY, 0)) == -EBADF, "openat dirfd -7: %ld", r);
    CHECK(c, (r = urt_statx(AT_FDCWD, "/tmp", 0, STATX_SIZE, NULL)) == -EINVAL, "statx out NULL: %ld", r);
    CHECK(c, (r = urt_statx(AT_FDCWD, NULL, 0, STATX_SIZE, &sx)) == -EINVAL, "statx path NULL: %ld", r);
    CHECK(c, (r = urt_statx(-2, "x", 0, STATX_SIZE, &sx)) == -EBADF, "statx dirfd -2: %ld", r);
    CHECK(c, (r = urt_fsync(-1, 0)) == -EBADF, "fsync -1: %ld", r);
    CHECK(c, (r = urt_fsync(0, 2)) == -EINVAL, "fsync flags 2: %ld", r);
    CHECK(c, (r = urt_fsync(0, ~0u)) == -EINVAL, "fsync flags ~0: %ld", r);
    CHECK(c, (r = urt_fallocate(-1, 0, 0, 1)) == -EBADF, "fallocate -1: %ld", r);
    CHECK(c, (r = urt_fallocate(0, 0, 0, -1)) == -EINVAL, "fallocate len -1: %ld", r);
    CHECK(c, (r = urt_fallocate(0, 0, -1, 1)) == -EINVAL, "fallocate off -1: %ld", r);
    CHECK(c, (r = urt_ftruncate(-1, 0)) == -EBADF, "ftruncate -1: %ld", r);
    CHECK(c, (r = urt_ftruncate(0, -1)) == -EINVAL, "ftruncate len -1: %ld", r);
    CHECK(c, (r = urt_unlinkat(AT_FDCWD, NULL, 0)) == -EINVAL, "unlinkat NULL: %ld", r);
    CHECK(c, (r = urt_unlinkat(-3, "x", 0)) == -EBADF, "unlinkat dirfd -3: %ld", r);
    CHECK(c, (r = urt_renameat(AT_FDCWD, NULL, AT_FDCWD, "x", 0)) == -EINVAL, "renameat old NULL: %ld", r);
    CHECK(c, (r = urt_renameat(AT_FDCWD, "x", AT_FDCWD, NULL, 0)) == -EINVAL, "renameat new NULL: %ld", r);
    CHECK(c, (r = urt_renameat(AT_FDCWD, "x", -4, "y", 0)) == -EBADF, "renameat newdirfd -4: %ld", r);
    CHECK(c, (r = urt_mkdirat(AT_FDCWD, NULL, 0755)) == -EINVAL, "mkdirat NULL: %ld", r);
    CHECK(c, (r = urt_mkdirat(-9, "x", 0755)) == -EBADF, "mkdirat dirfd -9: %ld", r);
    return NULL;
}

FS_TEST(FS_SUITE, bad_input_gives_a_clear_errno, .timeout = 30)
{
    fs_mode();
    run_checks(1, bad_input, false);
    /* outside a task: -EPERM */
    char buf[4];
    struct iovec iov = {buf, sizeof(buf)};
    cr_assert_eq(urt_readv(0, &iov, 1, 0), -EPERM);
    cr_assert_eq(urt_fsync(1, 0), -EPERM);
    cr_assert_eq(urt_mkdirat(AT_FDCWD, "/tmp/urt-fs-never", 0755), -EPERM);
}

/* ---- lengths -------------------------------------------------------------------------------- */

typedef struct long_vec {
    int null_fd;
    char *base;
    long big, huge, plain_big, plain_huge;
} long_vec;

static void *write_long_vectors(void *arg)
{
    long_vec *v = arg;
    /* 3 GiB in two buffers: /dev/null takes what the kernel passes, 0x7ffff000 */
    struct iovec two[2] = {{v->base, 1536u << 20}, {v->base + (1536u << 20), 1536u << 20}};
    v->big = urt_writev(v->null_fd, two, 2, -1);
    v->plain_big = plain(writev(v->null_fd, two, 2));
    /* one buffer longer than SSIZE_MAX */
    struct iovec one = {v->base, (size_t)SSIZE_MAX + 1};
    v->huge = urt_writev(v->null_fd, &one, 1, -1);
    v->plain_huge = plain(writev(v->null_fd, &one, 1));
    return NULL;
}

FS_TEST(FS_SUITE, a_vector_longer_than_the_kernel_moves_is_clamped_as_the_kernel_does, .timeout = 30)
{
    fs_mode();
#ifdef URT_TSAN
    cr_skip_test("TSan's writev interceptor reads every buffer: 3 GiB of it");
#endif
    long_vec v = {.null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC)};
    cr_assert_geq(v.null_fd, 0);
    /* reserved, never touched: writes to /dev/null do not read the buffers */
    v.base = mmap(NULL, 3ul << 30, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (v.base == MAP_FAILED)
        cr_skip_test("no 3 GiB of address space here");
    urt_runtime *rt = rt_new(1);
    cr_assert_eq(urt_runtime_block_on(rt, write_long_vectors, &v, NULL), 0);
    cr_assert_eq(v.plain_big, 0x7ffff000, "the kernel moved %ld", v.plain_big);
    cr_assert_eq(v.big, 0x7ffff000, "urt_writev moved %ld", v.big);
    cr_assert_eq(v.plain_huge, -EINVAL);
    cr_assert_eq(v.huge, -EINVAL, "got %ld", v.huge);
    urt_runtime_destroy(rt);
    munmap(v.base, 3ul << 30);
    close(v.null_fd);
}

/* ---- time bounds and cancellation --------------------------------------------------------- */

typedef struct pending {
    int pipe[2];
    char fifo[96];
    uint64_t timeout, deadline_in;
    _Atomic int started;
    long res;
    uint64_t elapsed;
    char got[4];
} pending;

static void *readv_pipe(void *arg)
{
    pending *p = arg;
    struct iovec iov = {p->got, sizeof(p->got)};
    uint64_t old_to = p->timeout ? urt_op_timeout(p->timeout) : 0;
    uint64_t old_dl = p->deadline_in ? urt_deadline(urt_now() + p->deadline_in) : 0;
    atomic_store(&p->started, 1);
    uint64_t t0 = urt_now();
    p->res = urt_readv(p->pipe[0], &iov, 1, -1);
    p->elapsed = urt_now() - t0;
    if (p->timeout)
        urt_op_timeout(old_to);
    if (p->deadline_in)
        urt_deadline(old_dl);
    return NULL;
}

static void *open_fifo(void *arg)
{
    pending *p = arg;
    uint64_t old_to = p->timeout ? urt_op_timeout(p->timeout) : 0;
    atomic_store(&p->started, 1);
    uint64_t t0 = urt_now();
    /* O_CREAT: the ring op goes to a kernel worker thread and blocks there */
    p->res = urt_openat(AT_FDCWD, p->fifo, O_RDONLY | O_CREAT | O_CLOEXEC, 0600);
    p->elapsed = urt_now() - t0;
    if (p->timeout)
        urt_op_timeout(old_to);
    return NULL;
}

/* Wait until the task is in its call: in the task dump (ring op), or a
 * while after it said it starts (the fallback runs on a pool thread). */
static void await_call(urt_runtime *rt, urt_task *t, pending *p, const char *what)
{
    while (!atomic_load(&p->started))
        usleep(1000);
    if (!FS_FALLBACK) {
        await_waiting(rt, t, what);
    } else {
        usleep(50 * 1000);
        cr_assert(!task_waits_on(rt, t, what), "the fallback is not a ring op");
    }
}

FS_TEST(FS_SUITE, op_timeout_and_deadline_end_a_pending_readv, .timeout = 60)
{
    fs_mode();
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        for (int kind = 0; kind < 2; kind++) {
            pending p;
            memset(&p, 0, sizeof(p));
            cr_assert_eq(pipe2(p.pipe, O_CLOEXEC), 0);
            if (kind == 0)
                p.timeout = 20 * MS;
            else
                p.deadline_in = 20 * MS;
            cr_assert_eq(urt_runtime_block_on(rt, readv_pipe, &p, NULL), 0);
            cr_assert_eq(p.res, -ETIMEDOUT, "%u workers, %s: readv gave %ld", w, kind ? "deadline" : "op timeout", p.res);
            cr_assert_geq(p.elapsed, 19 * MS, "the bound fired early: %llu ns", (unsigned long long)p.elapsed);
            /* nothing was consumed: data written now is read by the next call */
            cr_assert_eq(write(p.pipe[1], "abc", 3), 3);
            p.timeout = p.deadline_in = 0;
            cr_assert_eq(urt_runtime_block_on(rt, readv_pipe, &p, NULL), 0);
            cr_assert_eq(p.res, 3);
            cr_assert_eq(memcmp(p.got, "abc", 3), 0);
            close(p.pipe[0]);
            close(p.pipe[1]);
        }
        urt_runtime_destroy(rt);
    }
}

static void *fsync_past_deadline(void *arg)
{
    long *res = arg;
    uint64_t old = urt_deadline(urt_now() - 1);
    res[0] = urt_fsync(1, 0);
    res[1] = urt_mkdirat(AT_FDCWD, "/tmp/urt-fs-never", 0755);
    urt_deadline(old);
    res[2] = urt_mkdirat(AT_FDCWD, "/tmp", 0755);
    return NULL;
}

FS_TEST(FS_SUITE, a_passed_deadline_gives_etimedout_before_the_call, .timeout = 30)
{
    fs_mode();
    urt_runtime *rt = rt_new(2);
    long res[3] = {1, 1, 1};
    cr_assert_eq(urt_runtime_block_on(rt, fsync_past_deadline, res, NULL), 0);
    cr_assert_eq(res[0], -ETIMEDOUT);
    cr_assert_eq(res[1], -ETIMEDOUT);
    cr_assert_neq(access("/tmp/urt-fs-never", F_OK), 0, "the call did not run");
    cr_assert_eq(res[2], -EEXIST, "the deadline restored, calls run again");
    urt_runtime_destroy(rt);
}

FS_TEST(FS_SUITE, cancel_ends_a_pending_readv, .timeout = 60)
{
    fs_mode();
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        pending p;
        memset(&p, 0, sizeof(p));
        p.res = 1;
        cr_assert_eq(pipe2(p.pipe, O_CLOEXEC), 0);
        urt_task *t;
        cr_assert_eq(urt_spawn(rt, &t, readv_pipe, &p), 0);
        await_call(rt, t, &p, "readv");
        cr_assert_eq(urt_cancel(t), 0);
        urt_join(t, NULL);
        cr_assert_eq(p.res, -ECANCELED, "%u workers: readv gave %ld", w, p.res);
        /* nothing consumed */
        cr_assert_eq(write(p.pipe[1], "z", 1), 1);
        char z = 0;
        cr_assert_eq(read(p.pipe[0], &z, 1), 1);
        cr_assert_eq(z, 'z');
        close(p.pipe[0]);
        close(p.pipe[1]);
        urt_runtime_destroy(rt);
    }
}

/* A FIFO opened without O_CREAT does not wait for its other end (the
 * ring op's non-blocking first try, which the fallback copies). */
static void *open_fifo_ends(void *arg)
{
    pending *p = arg;
    int rd = urt_openat(AT_FDCWD, p->fifo, O_RDONLY | O_CLOEXEC, 0);
    p->res = rd < 0 ? rd : fcntl(rd, F_GETFL) & O_NONBLOCK;
    int wr = urt_openat(AT_FDCWD, p->fifo, O_WRONLY | O_CLOEXEC, 0);   /* a reader now: opens */
    if (rd >= 0)
        close(rd);
    int wr2 = urt_openat(AT_FDCWD, p->fifo, O_WRONLY | O_CLOEXEC, 0);   /* no reader: -ENXIO */
    p->elapsed = (uint64_t)(wr >= 0) | (uint64_t)(wr2 == -ENXIO) << 1;
    if (wr >= 0)
        close(wr);
    if (wr2 >= 0)
        close(wr2);
    return NULL;
}

FS_TEST(FS_SUITE, a_fifo_opens_without_waiting_for_its_other_end, .timeout = 30)
{
    fs_mode();
    char dir[64];
    tmp_dir(dir, sizeof(dir));
    urt_runtime *rt = rt_new(2);
    pending p;
    memset(&p, 0, sizeof(p));
    snprintf(p.fifo, sizeof(p.fifo), "%s/fifo", dir);
    cr_assert_eq(mkfifo(p.fifo, 0600), 0);
    cr_assert_eq(urt_runtime_block_on(rt, open_fifo_ends, &p, NULL), 0);
    cr_assert_eq(p.res, 0, "the reader opens at once, not left O_NONBLOCK: %ld", p.res);
    cr_assert_eq(p.elapsed, 3, "writer with a reader opens, without one -ENXIO: %llu", (unsigned long long)p.elapsed);
    urt_runtime_destroy(rt);
    rm_tree(dir);
}

/* A FIFO opened for reading with O_CREAT blocks until a writer comes (the
 * ring op in a kernel worker thread, the fallback in open(2)). A cancel
 * ends the ring op (-ECANCELED), and so does its time bound (-ETIMEDOUT):
 * the task's bound timer cancels the op when it fires (a linked timeout
 * would not: Linux arms it only after an op running in a worker thread
 * returns). The fallback's open(2), once it has started blocking, cannot
 * be cut short: it ends when a writer comes, and the fd opened is
 * returned, never lost. */
static void fifo_case(bool cancel)
{
    fs_mode();
    char dir[64];
    tmp_dir(dir, sizeof(dir));
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        pending p;
        memset(&p, 0, sizeof(p));
        p.res = 1;
        snprintf(p.fifo, sizeof(p.fifo), "%s/fifo", dir);
        unlink(p.fifo);
        cr_assert_eq(mkfifo(p.fifo, 0600), 0);
        p.timeout = cancel ? 0 : 30 * MS;
        urt_task *t;
        cr_assert_eq(urt_spawn(rt, &t, open_fifo, &p), 0);
        await_call(rt, t, &p, "openat");
        if (cancel)
            cr_assert_eq(urt_cancel(t), 0);
        bool ends_by_itself = !FS_FALLBACK;
        int wfd = -1;
        if (!ends_by_itself) {
            usleep(100 * 1000);   /* the bound has passed; the open goes on */
            wfd = open(p.fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            cr_assert_geq(wfd, 0, "%u workers: the open still waits for a writer: %s", w, strerror(errno));
        }
        urt_join(t, NULL);
        if (ends_by_itself) {
            cr_assert_eq(p.res, cancel ? -ECANCELED : -ETIMEDOUT, "%u workers: openat gave %ld", w, p.res);
            if (!cancel)
                cr_assert_geq(p.elapsed, 30 * MS, "%u workers: ended before its bound", w);
            /* the open has ended: no reader is left for a writer */
            wfd = open(p.fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
            cr_assert_eq(wfd, -1);
            cr_assert_eq(errno, ENXIO);
        } else {
            cr_assert_geq(p.res, 0, "%u workers: the fd opened is returned, got %ld", w, p.res);
            cr_assert_geq(p.elapsed, 100 * MS);
            close((int)p.res);
            close(wfd);
        }
        urt_runtime_destroy(rt);
    }
    rm_tree(dir);
}

FS_TEST(FS_SUITE, an_openat_blocked_in_the_kernel_ends_at_its_op_timeout_on_the_ring_and_outlasts_it_in_the_fallback, .timeout = 60)
{
    fifo_case(false);
}
FS_TEST(FS_SUITE, cancel_ends_an_openat_of_a_fifo, .timeout = 60) { fifo_case(true); }

/* Opens cancelled at every point of their life: each ends with its fd
 * (closed here) or -ECANCELED, and no fd is left open behind the caller. */
typedef struct open_race {
    const char *path;
    int flags;
    _Atomic int started, opened, cancelled, other, done;
} open_race;

static void *open_and_close(void *arg)
{
    open_race *o = arg;
    atomic_fetch_add(&o->started, 1);
    /* O_CREAT (the file exists): the kernel runs the open in a worker
     * thread, where a cancel finds it queued, running or done */
    int fd = urt_openat(AT_FDCWD, o->path, o->flags | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        atomic_fetch_add(&o->opened, 1);
        close(fd);
    } else if (fd == -ECANCELED) {
        atomic_fetch_add(&o->cancelled, 1);
    } else {
        atomic_fetch_add(&o->other, 1);
    }
    atomic_store(&o->done, 1);
    return NULL;
}

/* A writer's non-blocking open of the FIFO: it completes an open for
 * reading that waits (or fails, -ENXIO, when none does). */
static void fifo_poke(const char *fifo)
{
    int wfd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (wfd >= 0)
        close(wfd);
}

FS_TEST(FS_SUITE, a_cancelled_openat_never_leaks_its_fd, .timeout = 90)
{
    fs_mode();
#if defined(URT_ASAN) || defined(URT_TSAN)
    enum { N = 100 };
#else
    enum { N = 400 };
#endif
    char dir[64], path[96], fifo[96];
    tmp_dir(dir, sizeof(dir));
    snprintf(path, sizeof(path), "%s/f", dir);
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    int f = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    close(f);
    cr_assert_eq(mkfifo(fifo, 0600), 0);
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        int before = count_fds();
        /* a regular file, and a FIFO whose open a writer completes while
         * the cancel comes: before it, after it, at the same time */
        for (int kind = 0; kind < 2; kind++) {
            open_race o = {.path = kind ? fifo : path, .flags = O_RDONLY};
            for (int i = 0; i < N; i++) {
                urt_task *t;
                int ran = atomic_load(&o.started);   /* the tasks before have been joined */
                atomic_store(&o.done, 0);
                cr_assert_eq(urt_spawn(rt, &t, open_and_close, &o), 0);
                /* every third at once (before the task runs, or as it
                 * submits); the others once it runs, after a varying spin */
                if (i % 3) {
                    while (atomic_load(&o.started) == ran)
                        ;
                    for (volatile int spin = 0; spin < (i % 16) * 100; spin++)
                        ;
                }
                if (kind && (i & 1))
                    fifo_poke(fifo);
                urt_cancel(t);
                if (kind && !(i & 1))
                    fifo_poke(fifo);
                /* an open that was not cut short waits for a writer */
                while (kind && atomic_load(&o.started) != ran && !atomic_load(&o.done)) {
                    usleep(500);
                    fifo_poke(fifo);
                }
                urt_join(t, NULL);
            }
            /* every task that ran ended with its fd (closed) or -ECANCELED */
            cr_assert_eq(o.opened + o.cancelled, o.started, "%u workers, %s: %d ran, %d opened, %d cancelled, %d other",
                         w, kind ? "fifo" : "file", o.started, o.opened, o.cancelled, o.other);
        }
        cr_assert_eq(count_fds(), before, "%u workers: an fd was left open", w);
        urt_runtime_destroy(rt);
    }
    rm_tree(dir);
}

/* ---- a big copy through readv/writev at offsets, 8 tasks ------------------------------------- */

typedef struct copy_job {
    int src, dst;
    int64_t from, to;
    unsigned seed;
    int err;
    uint64_t moved;
} copy_job;

static void *copy_slice(void *arg)
{
    copy_job *j = arg;
    enum { BUF = 96 * 1024 };
    char *buf = malloc(BUF);
    if (!buf) {
        j->err = -ENOMEM;
        return NULL;
    }
    unsigned s = j->seed;
    int64_t off = j->from;
    while (off < j->to) {
        /* 2 to 4 buffers of uneven sizes inside buf */
        s = s * 1103515245u + 12345u;
        int n = 2 + (int)((s >> 16) % 3);
        struct iovec iov[4];
        size_t used = 0;
        for (int i = 0; i < n; i++) {
            s = s * 1103515245u + 12345u;
            size_t len = 1 + (s >> 8) % (BUF / 4 - 1);
            iov[i].iov_base = buf + used;
            iov[i].iov_len = len;
            used += len;
        }
        /* not past the slice: trim the vector */
        int64_t left = j->to - off;
        size_t total = 0;
        int cnt = 0;
        while (cnt < n && total < (size_t)left) {
            if (total + iov[cnt].iov_len > (size_t)left)
                iov[cnt].iov_len = (size_t)left - total;
            total += iov[cnt].iov_len;
            cnt++;
        }
        ssize_t r = urt_readv(j->src, iov, cnt, off);
        if (r <= 0) {
            j->err = r < 0 ? (int)r : -EIO;
            break;
        }
        /* write what was read: the same vector cut at r */
        size_t have = (size_t)r, acc = 0;
        int wc = 0;
        while (wc < cnt && acc < have) {
            if (acc + iov[wc].iov_len > have)
                iov[wc].iov_len = have - acc;
            acc += iov[wc].iov_len;
            wc++;
        }
        int64_t woff = off;
        struct iovec *wv = iov;
        while (have) {
            ssize_t m = urt_writev(j->dst, wv, wc, woff);
            if (m <= 0) {
                j->err = m < 0 ? (int)m : -EIO;
                goto out;
            }
            have -= (size_t)m;
            woff += m;
            /* a short write: step over what went */
            size_t skip = (size_t)m;
            while (wc && skip >= wv->iov_len) {
                skip -= wv->iov_len;
                wv++;
                wc--;
            }
            if (wc) {
                wv->iov_base = (char *)wv->iov_base + skip;
                wv->iov_len -= skip;
            }
        }
        j->moved += (uint64_t)r;
        off += r;
    }
out:
    free(buf);
    return NULL;
}

typedef struct copy_all {
    copy_job jobs[COPY_TASKS];
    int spawn_err;
} copy_all;

static void *copy_root(void *arg)
{
    copy_all *c = arg;
    urt_task *t[COPY_TASKS];
    for (int i = 0; i < COPY_TASKS; i++) {
        int r = urt_spawn(NULL, &t[i], copy_slice, &c->jobs[i]);
        if (r < 0) {
            c->spawn_err = r;
            t[i] = NULL;
        }
    }
    for (int i = 0; i < COPY_TASKS; i++)
        if (t[i])
            urt_join(t[i], NULL);
    return NULL;
}

FS_TEST(FS_SUITE, a_copy_by_eight_tasks_through_readv_and_writev_is_exact, .timeout = 110)
{
    fs_mode();
    char dir[64], sp[96], dp[96];
    tmp_dir(dir, sizeof(dir));
    snprintf(sp, sizeof(sp), "%s/src", dir);
    snprintf(dp, sizeof(dp), "%s/dst", dir);
    int src = open(sp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    cr_assert_geq(src, 0);
    /* a pattern no shifted copy matches: each 8-byte word its own offset, mixed */
    enum { CH = 1 << 20 };
    uint64_t *chunk = malloc(CH);
    cr_assert_not_null(chunk);
    for (uint64_t off = 0; off < COPY_BYTES; off += CH) {
        for (size_t i = 0; i < CH / 8; i++)
            chunk[i] = (off / 8 + i) * 0x9e3779b97f4a7c15ull;
        cr_assert_eq(pwrite(src, chunk, CH, (off_t)off), CH);
    }
    char *a = malloc(CH), *b = malloc(CH);
    cr_assert(a && b);
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        int dst = open(dp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        cr_assert_geq(dst, 0);
        copy_all c;
        memset(&c, 0, sizeof(c));
        uint64_t slice = COPY_BYTES / COPY_TASKS;
        for (int i = 0; i < COPY_TASKS; i++) {
            c.jobs[i] = (copy_job){.src = src, .dst = dst, .from = (int64_t)(slice * (unsigned)i),
                                   .to = (int64_t)(slice * (unsigned)(i + 1)), .seed = 7u * (unsigned)i + w};
        }
        cr_assert_eq(urt_runtime_block_on(rt, copy_root, &c, NULL), 0);
        cr_assert_eq(c.spawn_err, 0);
        for (int i = 0; i < COPY_TASKS; i++) {
            cr_assert_eq(c.jobs[i].err, 0, "%u workers, task %d: %s", w, i, strerror(-c.jobs[i].err));
            cr_assert_eq(c.jobs[i].moved, slice, "%u workers, task %d moved %llu", w, i,
                         (unsigned long long)c.jobs[i].moved);
        }
        struct stat st;
        cr_assert_eq(fstat(dst, &st), 0);
        cr_assert_eq((uint64_t)st.st_size, (uint64_t)COPY_BYTES);
        for (uint64_t off = 0; off < COPY_BYTES; off += CH) {
            cr_assert_eq(pread(src, a, CH, (off_t)off), CH);
            cr_assert_eq(pread(dst, b, CH, (off_t)off), CH);
            cr_assert_eq(memcmp(a, b, CH), 0, "%u workers: the copy differs in the MiB at %llu", w,
                         (unsigned long long)off);
        }
        close(dst);
        urt_runtime_destroy(rt);
    }
    free(a);
    free(b);
    free(chunk);
    close(src);
    rm_tree(dir);
}

/* ---- inside urt_block_in_place: plain syscalls ------------------------------------------------ */

static void *in_place(void *arg)
{
    fs_ctx *c = arg;
    char p[96];
    snprintf(p, sizeof(p), "%s/bip", c->dir);
    long r;
    CHECK(c, (r = urt_mkdirat(AT_FDCWD, p, 0700)) == 0, "mkdirat in place: %ld", r);
    CHECK(c, (r = urt_mkdirat(AT_FDCWD, p, 0700)) == -EEXIST, "mkdirat twice in place: %ld", r);
    struct statx sx;
    CHECK(c, (r = urt_statx(AT_FDCWD, p, 0, STATX_TYPE, &sx)) == 0 && S_ISDIR(sx.stx_mode), "statx: %ld", r);
    CHECK(c, (r = urt_unlinkat(AT_FDCWD, p, AT_REMOVEDIR)) == 0, "rmdir in place: %ld", r);
    return NULL;
}

static void *bip_root(void *arg)
{
    urt_block_in_place(in_place, arg, NULL);
    return NULL;
}

FS_TEST(FS_SUITE, inside_block_in_place_the_calls_are_plain_syscalls, .timeout = 30)
{
    fs_mode();
    run_checks(2, bip_root, true);
}

#endif
