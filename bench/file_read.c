/*
 * file_read.c - reading a file that is in the page cache, 64 KiB at a time,
 * from 8 readers, three ways:
 *   urt_read  8 tasks, each urt_read (one IORING_OP_READ) per chunk
 *   pool      8 tasks, each reading through urt_spawn_blocking jobs: one job
 *             per chunk (pread on a pool thread, joined by the task)
 *   threads   8 plain pthreads calling pread
 * Each reader reads its eighth of the file, one pass per measurement; the
 * three modes take turns for --rounds rounds (urt_read, pool, threads,
 * urt_read, ...) so drift of the machine lands on all alike. The file is
 * created once (filled, then read once to warm the cache) and removed at
 * the end unless --file names an existing one.
 *
 * Output: one line per measurement
 *     file_read_run mode=<m> round=<r> mb_per_s=<x> seconds=<s>
 * and at the end
 *     file_read urt_read_mb_s=<median> pool_mb_s=<median> threads_mb_s=<median>
 *               urt_over_threads=<ratio> pool_over_threads=<ratio> ...
 * MB is 10^6 bytes. Every chunk read is checked (its first word says its
 * offset); a wrong byte fails the run (exit 1).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "include/urt.h"

#define CHUNK   (64u * 1024)
#define READERS 8

enum { MODE_URT, MODE_POOL, MODE_THREADS, NMODES };
static const char *const mode_name[NMODES] = {"urt_read", "pool", "threads"};

static int g_fd;
static uint64_t g_size;
static unsigned g_workers;

typedef struct reader {
    uint64_t from, to;
    int err;
    char *buf;
} reader;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* the chunk at off starts with its own offset */
static int check_chunk(const char *buf, uint64_t off)
{
    uint64_t w;
    memcpy(&w, buf, sizeof(w));
    return w == off ? 0 : -EILSEQ;
}

static void *read_threads(void *arg)
{
    reader *r = arg;
    for (uint64_t off = r->from; off < r->to && !r->err; off += CHUNK) {
        ssize_t n = pread(g_fd, r->buf, CHUNK, (off_t)off);
        r->err = n != CHUNK ? (n < 0 ? -errno : -EIO) : check_chunk(r->buf, off);
    }
    return NULL;
}

static void *read_urt(void *arg)
{
    reader *r = arg;
    for (uint64_t off = r->from; off < r->to && !r->err; off += CHUNK) {
        ssize_t n = urt_read(g_fd, r->buf, CHUNK, (int64_t)off);
        r->err = n != CHUNK ? (n < 0 ? (int)n : -EIO) : check_chunk(r->buf, off);
    }
    return NULL;
}

typedef struct job {
    char *buf;
    uint64_t off;
} job;

static void *pread_job(void *arg)
{
    job *j = arg;
    ssize_t n = pread(g_fd, j->buf, CHUNK, (off_t)j->off);
    return (void *)(intptr_t)(n < 0 ? -errno : n);
}

static void *read_pool(void *arg)
{
    reader *r = arg;
    for (uint64_t off = r->from; off < r->to && !r->err; off += CHUNK) {
        job j = {r->buf, off};
        urt_task *t;
        int e = urt_spawn_blocking(NULL, &t, pread_job, &j);
        void *ret = NULL;
        if (e == 0)
            e = urt_join(t, &ret);
        ssize_t n = (ssize_t)(intptr_t)ret;
        r->err = e ? e : n != CHUNK ? (n < 0 ? (int)n : -EIO) : check_chunk(r->buf, off);
    }
    return NULL;
}

typedef struct pass {
    reader rd[READERS];
    int spawn_err;
    urt_fn fn;
} pass;

static void *urt_root(void *arg)
{
    pass *p = arg;
    urt_task *t[READERS];
    for (int i = 0; i < READERS; i++)
        if ((p->spawn_err = urt_spawn(NULL, &t[i], p->fn, &p->rd[i])) < 0)
            return NULL;   /* the runtime's destroy frees the ones started */
    for (int i = 0; i < READERS; i++)
        urt_join(t[i], NULL);
    return NULL;
}

/* One pass over the file in mode m; seconds, or < 0 on failure. */
static double one_pass(urt_runtime *rt, int m, char **bufs)
{
    pass p;
    memset(&p, 0, sizeof(p));
    uint64_t slice = g_size / READERS;
    for (int i = 0; i < READERS; i++)
        p.rd[i] = (reader){.from = slice * (unsigned)i, .to = slice * (unsigned)(i + 1), .buf = bufs[i]};
    uint64_t t0 = now_ns();
    if (m == MODE_THREADS) {
        pthread_t th[READERS];
        for (int i = 0; i < READERS; i++)
            if (pthread_create(&th[i], NULL, read_threads, &p.rd[i]) != 0)
                return -1;
        for (int i = 0; i < READERS; i++)
            pthread_join(th[i], NULL);
    } else {
        p.fn = m == MODE_URT ? read_urt : read_pool;
        if (urt_runtime_block_on(rt, urt_root, &p, NULL) != 0 || p.spawn_err)
            return -1;
    }
    double s = (double)(now_ns() - t0) / 1e9;
    for (int i = 0; i < READERS; i++)
        if (p.rd[i].err) {
            fprintf(stderr, "file_read: %s reader %d: %s\n", mode_name[m], i, strerror(-p.rd[i].err));
            return -1;
        }
    return s;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int make_file(const char *path, uint64_t size)
{
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -errno;
    char *buf = calloc(1, CHUNK);
    if (!buf) {
        close(fd);
        return -ENOMEM;
    }
    for (uint64_t off = 0; off < size; off += CHUNK) {
        memcpy(buf, &off, sizeof(off));
        memset(buf + sizeof(off), (int)(off / CHUNK) & 0xff, 64);
        if (pwrite(fd, buf, CHUNK, (off_t)off) != CHUNK) {
            free(buf);
            close(fd);
            return -EIO;
        }
    }
    free(buf);
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: file_read [--quick] [--size-mib N] [--rounds R] [--passes P] [--workers W] [--file PATH]\n"
                    "  --size-mib N  file size (default 256; 64 with --quick)\n"
                    "  --rounds R    rounds, the three modes in turn (default 5; 3 with --quick)\n"
                    "  --passes P    passes over the file per measurement (default 8)\n"
                    "  --workers W   runtime workers (default: one per CPU)\n"
                    "  --file PATH   the file: made there when missing and kept; an existing one must\n"
                    "                have been made by an earlier run (default: a new one in /tmp, removed)\n");
}

int main(int argc, char **argv)
{
    unsigned size_mib = 0, rounds = 0, passes = 0;
    const char *path = NULL;
    int quick = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned *num = !strcmp(a, "--size-mib") ? &size_mib : !strcmp(a, "--rounds") ? &rounds
                      : !strcmp(a, "--passes") ? &passes : !strcmp(a, "--workers") ? &g_workers : NULL;
        if (!strcmp(a, "--quick")) {
            quick = 1;
        } else if (num && v) {
            *num = (unsigned)strtoul(v, NULL, 10);
            i++;
        } else if (!strcmp(a, "--file") && v) {
            path = v;
            i++;
        } else {
            usage();
            return 2;
        }
    }
    if (!size_mib)
        size_mib = quick ? 64 : 256;
    if (!rounds)
        rounds = quick ? 3 : 5;
    if (!passes)
        passes = 8;
    if (rounds > 100) {
        usage();
        return 2;
    }
    g_size = (uint64_t)size_mib << 20;
    g_size -= g_size % ((uint64_t)CHUNK * READERS);
    if (!g_size) {
        usage();
        return 2;
    }

    char tmp[64] = "";
    int created = 0;
    struct stat st;
    if (path && stat(path, &st) == 0 && (uint64_t)st.st_size < g_size) {
        fprintf(stderr, "file_read: %s is smaller than %u MiB (not overwritten)\n", path, size_mib);
        return 1;
    }
    if (path && stat(path, &st) == 0) {
        g_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (g_fd < 0) {
            fprintf(stderr, "file_read: %s: %s\n", path, strerror(errno));
            return 1;
        }
    } else {
        if (!path) {
            snprintf(tmp, sizeof(tmp), "/tmp/urt-file-read-%d", (int)getpid());
            path = tmp;
        }
        g_fd = make_file(path, g_size);
        if (g_fd < 0) {
            fprintf(stderr, "file_read: creating %s: %s\n", path, strerror(-g_fd));
            return 1;
        }
        created = 1;
    }

    urt_config cfg = {.workers = g_workers};
    urt_runtime *rt = NULL;
    int e = urt_runtime_create(&rt, &cfg);
    if (e < 0) {
        fprintf(stderr, "file_read: urt_runtime_create: %s\n", strerror(-e));
        return 1;
    }
    char *bufs[READERS];
    for (int i = 0; i < READERS; i++)
        if (!(bufs[i] = aligned_alloc(4096, CHUNK)))
            return 1;

    /* warm the cache and every path once */
    int failed = 0;
    for (int m = 0; m < NMODES && !failed; m++)
        failed = one_pass(rt, m, bufs) < 0;

    double mbs[NMODES][100];
    for (unsigned r = 0; r < rounds && !failed; r++) {
        for (int m = 0; m < NMODES && !failed; m++) {
            double s = 0;
            for (unsigned k = 0; k < passes && !failed; k++) {
                double one = one_pass(rt, m, bufs);
                failed = one < 0;
                s += one;
            }
            if (failed)
                break;
            mbs[m][r] = (double)g_size * passes / 1e6 / s;
            printf("file_read_run mode=%s round=%u mb_per_s=%.0f seconds=%.3f\n", mode_name[m], r + 1, mbs[m][r], s);
            fflush(stdout);
        }
    }
    if (!failed) {
        double med[NMODES];
        for (int m = 0; m < NMODES; m++)
            med[m] = median(mbs[m], (int)rounds);
        printf("file_read urt_read_mb_s=%.0f pool_mb_s=%.0f threads_mb_s=%.0f urt_over_threads=%.2f "
               "pool_over_threads=%.2f urt_over_pool=%.2f size_mib=%u readers=%d chunk_kib=%u rounds=%u passes=%u "
               "workers=%d\n",
               med[MODE_URT], med[MODE_POOL], med[MODE_THREADS], med[MODE_URT] / med[MODE_THREADS],
               med[MODE_POOL] / med[MODE_THREADS], med[MODE_URT] / med[MODE_POOL], (unsigned)(g_size >> 20), READERS,
               CHUNK / 1024, rounds, passes, urt_runtime_stats(rt, NULL, 0));
    } else {
        printf("file_read FAILED\n");
    }
    for (int i = 0; i < READERS; i++)
        free(bufs[i]);
    urt_runtime_destroy(rt);
    close(g_fd);
    if (created && tmp[0])
        unlink(tmp);
    return failed;
}
