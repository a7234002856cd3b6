/*
 * embed_threads.c - urt inside a program that already has its own threads.
 *
 * main() starts four ordinary pthreads, as an existing program might (a
 * thread per client, a thread pool of its own). They share one runtime:
 * each thread spawns tasks into it with urt_spawn(rt, ...) and collects
 * their results with urt_join, which blocks that pthread (it is not a
 * worker) until the task ends. The tasks count primes in a range, yielding
 * to the other tasks of their worker now and then. Each thread checks the
 * tasks' answers against its own count.
 *
 *     ./embed_threads      exits 0 when every answer is right
 */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <urt.h>

#define THREADS          4
#define TASKS_PER_THREAD 8
#define SPAN             5000   /* numbers per task */

struct range {
    uint32_t lo, hi;
};

struct client {                 /* one pthread's work, owned by main */
    pthread_t thread;
    urt_runtime *rt;
    unsigned index;
    uint64_t primes;            /* written by the thread, read by main after pthread_join */
    int err;
};

static bool is_prime(uint32_t n)
{
    if (n < 2)
        return false;
    for (uint32_t d = 2; d * d <= n; d++)
        if (n % d == 0)
            return false;
    return true;
}

static void *count_primes(void *arg)   /* a task */
{
    const struct range *r = arg;
    uintptr_t count = 0;
    for (uint32_t n = r->lo; n < r->hi; n++) {
        count += is_prime(n);
        if (n % 1024 == 0)
            urt_yield();   /* let the other tasks of this worker run */
    }
    return (void *)count;
}

static void *client_main(void *arg)   /* a plain pthread, not a task */
{
    struct client *c = arg;
    struct range ranges[TASKS_PER_THREAD];   /* read by the tasks until they are joined */
    urt_task *tasks[TASKS_PER_THREAD];
    int spawned = 0;
    for (; spawned < TASKS_PER_THREAD; spawned++) {
        struct range *r = &ranges[spawned];
        r->lo = (c->index * TASKS_PER_THREAD + (uint32_t)spawned) * SPAN;
        r->hi = r->lo + SPAN;
        c->err = urt_spawn(c->rt, &tasks[spawned], count_primes, r);   /* rt named: not a task */
        if (c->err < 0)
            break;
    }
    uint64_t total = 0, want = 0;
    for (int i = 0; i < spawned; i++) {
        void *count = NULL;
        int err = urt_join(tasks[i], &count);   /* blocks this pthread */
        if (err < 0 && c->err == 0)
            c->err = err;
        total += (uintptr_t)count;
        for (uint32_t n = ranges[i].lo; n < ranges[i].hi; n++)
            want += is_prime(n);
    }
    c->primes = total;
    if (c->err == 0 && total != want)
        c->err = -EPROTO;   /* the tasks disagree with this thread's count */
    return NULL;
}

int main(void)
{
    urt_runtime *rt;
    urt_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.workers = 2;   /* fewer workers than client threads: that is fine */
    int err = urt_runtime_create(&rt, &cfg);
    if (err < 0) {
        fprintf(stderr, "embed_threads: urt_runtime_create: %s\n", strerror(-err));
        return err == -ENOSYS || err == -EPERM ? 77 : 1;   /* 77: no io_uring here */
    }
    struct client clients[THREADS];
    int started = 0, failed = 0;
    for (; started < THREADS; started++) {
        struct client *c = &clients[started];
        memset(c, 0, sizeof(*c));
        c->rt = rt;
        c->index = (unsigned)started;
        if ((err = pthread_create(&c->thread, NULL, client_main, c)) != 0) {
            fprintf(stderr, "embed_threads: pthread_create: %s\n", strerror(err));
            failed = 1;
            break;
        }
    }
    uint64_t primes = 0;
    for (int i = 0; i < started; i++) {
        pthread_join(clients[i].thread, NULL);
        if (clients[i].err < 0) {
            fprintf(stderr, "embed_threads: thread %d: %s\n", i, strerror(-clients[i].err));
            failed = 1;
        }
        primes += clients[i].primes;
    }
    urt_runtime_destroy(rt);   /* after every thread is done with it */
    printf("embed_threads: %d threads x %d tasks found %ju primes below %d\n", started,
           TASKS_PER_THREAD, (uintmax_t)primes, THREADS * TASKS_PER_THREAD * SPAN);
    return failed;
}
