/*
 * hello.c - spawn a few tasks and join them.
 *
 * main() hands one root task to the runtime with urt_runtime_block_on and
 * waits for it. The root task spawns greeters (they may run on any worker),
 * then joins each: urt_join suspends the root task, never its worker thread.
 *
 *     ./hello          prints one line per task, exits 0
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <urt.h>

#define NTASKS 4

static void *greet(void *arg)
{
    uintptr_t i = (uintptr_t)arg;
    urt_sleep(1000000);   /* 1 ms: suspends this task only */
    printf("hello from task %ju (id %llu) on worker %d\n", (uintmax_t)i,
           (unsigned long long)urt_self_id(), urt_worker_id());
    return (void *)(i * i);
}

static void *root(void *arg)
{
    (void)arg;
    urt_task *t[NTASKS];
    for (uintptr_t i = 0; i < NTASKS; i++) {
        int err = urt_spawn(NULL, &t[i], greet, (void *)i);   /* NULL: this task's runtime */
        if (err < 0) {
            fprintf(stderr, "hello: urt_spawn: %s\n", strerror(-err));
            while (i > 0)
                urt_join(t[--i], NULL);   /* every handle is joined or detached */
            return (void *)UINTPTR_MAX;
        }
    }
    uintptr_t sum = 0;
    for (int i = 0; i < NTASKS; i++) {
        void *r;
        int err = urt_join(t[i], &r);   /* consumes t[i] */
        if (err < 0) {
            fprintf(stderr, "hello: urt_join: %s\n", strerror(-err));
            return (void *)UINTPTR_MAX;
        }
        sum += (uintptr_t)r;
    }
    return (void *)sum;
}

int main(void)
{
    urt_runtime *rt;
    int err = urt_runtime_create(&rt, NULL);   /* one worker per CPU */
    if (err < 0) {
        fprintf(stderr, "hello: urt_runtime_create: %s (is io_uring enabled?)\n", strerror(-err));
        return err == -ENOSYS || err == -EPERM ? 77 : 1;
    }
    void *sum = NULL;
    err = urt_runtime_block_on(rt, root, NULL, &sum);
    urt_runtime_destroy(rt);
    if (err < 0) {
        fprintf(stderr, "hello: urt_runtime_block_on: %s\n", strerror(-err));
        return 1;
    }
    uintptr_t want = 0;
    for (uintptr_t i = 0; i < NTASKS; i++)
        want += i * i;
    if ((uintptr_t)sum != want) {
        fprintf(stderr, "hello: joined %ju, expected %ju\n", (uintmax_t)(uintptr_t)sum, (uintmax_t)want);
        return 1;
    }
    printf("hello: %d tasks spawned and joined, sum of squares %ju (urt %s)\n", NTASKS,
           (uintmax_t)want, urt_version());
    return 0;
}
