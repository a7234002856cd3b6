/*
 * chan_pipeline.c - a three-stage pipeline over two bounded channels.
 *
 *   producer task --c1--> 3 squarer tasks --c2--> main thread (not a task)
 *
 * The producer sends 1..N into c1 and closes it. Each squarer receives from
 * c1 until urt_chan_recv returns -EPIPE (closed and drained) and sends n*n
 * into c2; a closer task joins the squarers, then closes c2. main() is a
 * plain thread: its urt_chan_recv blocks the thread instead of suspending a
 * task. The channels hold 8 items, so a fast stage waits for a slow one.
 *
 *     ./chan_pipeline      prints the sum of squares, exits 0 if it is right
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <urt.h>

#define N        10000
#define SQUARERS 3
#define CAPACITY 8

struct pipeline {
    urt_chan *c1, *c2;                 /* items are uint64_t */
    urt_task *squarers[SQUARERS];
};

static void *producer(void *arg)
{
    struct pipeline *p = arg;
    for (uint64_t n = 1; n <= N; n++)
        if (urt_chan_send(p->c1, &n) < 0)   /* copies the item; waits while c1 is full */
            break;
    urt_chan_close(p->c1);   /* receivers drain what is buffered, then get -EPIPE */
    return NULL;
}

static void *squarer(void *arg)
{
    struct pipeline *p = arg;
    uint64_t n, count = 0;
    while (urt_chan_recv(p->c1, &n) == 0) {
        uint64_t sq = n * n;
        if (urt_chan_send(p->c2, &sq) < 0)
            break;
        count++;
    }
    return (void *)(uintptr_t)count;
}

static void *closer(void *arg)
{
    struct pipeline *p = arg;
    uint64_t total = 0;
    for (int i = 0; i < SQUARERS; i++) {
        void *count = NULL;
        urt_join(p->squarers[i], &count);   /* suspends this task only */
        total += (uintptr_t)count;
    }
    urt_chan_close(p->c2);   /* every squarer is done: the consumer may stop */
    return (void *)(uintptr_t)total;
}

int main(void)
{
    urt_runtime *rt;
    int err = urt_runtime_create(&rt, NULL);
    if (err < 0) {
        fprintf(stderr, "chan_pipeline: urt_runtime_create: %s\n", strerror(-err));
        return err == -ENOSYS || err == -EPERM ? 77 : 1;   /* 77: no io_uring here */
    }
    struct pipeline p;
    memset(&p, 0, sizeof(p));
    urt_task *prod = NULL, *clo = NULL;
    int held = 0;   /* squarer handles main still owns (until the closer takes them) */
    int failed = 1;
    if ((err = urt_chan_create(&p.c1, sizeof(uint64_t), CAPACITY)) < 0 ||
        (err = urt_chan_create(&p.c2, sizeof(uint64_t), CAPACITY)) < 0)
        goto out;
    /* any thread may spawn into a runtime it names */
    for (; held < SQUARERS; held++)
        if ((err = urt_spawn(rt, &p.squarers[held], squarer, &p)) < 0)
            goto out;
    if ((err = urt_spawn(rt, &clo, closer, &p)) < 0)
        goto out;
    held = 0;   /* the closer joins them */
    if ((err = urt_spawn(rt, &prod, producer, &p)) < 0)
        goto out;

    uint64_t sq, sum = 0, items = 0;
    while ((err = urt_chan_recv(p.c2, &sq)) == 0) {   /* blocks this thread */
        sum += sq;
        items++;
    }
    if (err != -EPIPE)   /* -EPIPE: c2 is closed and drained, the normal end */
        goto out;
    err = 0;
    void *handled = NULL;
    urt_join(prod, NULL);   /* blocks this thread; consumes the handle */
    urt_join(clo, &handled);
    prod = clo = NULL;

    uint64_t want = (uint64_t)N * (N + 1) * (2 * N + 1) / 6;
    printf("chan_pipeline: %ju items through %d squarers, sum of squares %ju\n", (uintmax_t)items,
           SQUARERS, (uintmax_t)sum);
    failed = sum != want || items != N || (uintptr_t)handled != N;
    if (failed)
        fprintf(stderr, "chan_pipeline: expected %ju from %d items\n", (uintmax_t)want, N);
out:
    if (err < 0) {
        fprintf(stderr, "chan_pipeline: %s\n", strerror(-err));
        if (p.c1)
            urt_chan_close(p.c1);   /* the stages that started wind down by themselves */
    }
    while (held > 0)
        urt_detach(p.squarers[--held]);
    urt_detach(prod);   /* NULL: nothing to do */
    urt_detach(clo);
    urt_runtime_destroy(rt);   /* first: no task may use the channels after this */
    urt_chan_destroy(p.c1);
    urt_chan_destroy(p.c2);
    return failed;
}
