/*
 * test_cancel.c - urt_cancel ends a task's pending suspending call with
 * -ECANCELED, whoever calls it (a task on the same worker, a task on another
 * worker, a plain thread); every later suspending call fails the same way,
 * urt_close still works, and the cancel shield holds cancellation back.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS   (1000ull * 1000)
#define HOUR (3600ull * 1000 * MS)

static void cpu_relax(void)
{
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/* ---- a task blocked in urt_recv ------------------------------------------------------------ */

typedef struct receiver {
    int fds[2];
    ssize_t res;
    int worker;
    ssize_t after_res;   /* a second recv after the cancel */
} receiver;

static void *recv_forever(void *arg)
{
    receiver *r = arg;
    char buf[16];
    r->worker = urt_worker_id();
    r->res = urt_recv(r->fds[0], buf, sizeof(buf), 0);
    r->after_res = urt_recv(r->fds[0], buf, sizeof(buf), 0);
    return (void *)(uintptr_t)0xca11;
}

static void receiver_init(receiver *r)
{
    memset(r, 0, sizeof(*r));
    r->res = r->after_res = 12345;
    r->worker = -2;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, r->fds), 0);
}

static void receiver_check(receiver *r, int join_res, void *ret, const char *who)
{
    cr_assert_eq(join_res, -ECANCELED, "%s: join of the cancelled task gave %d", who, join_res);
    cr_assert_eq(r->res, -ECANCELED, "%s: the pending urt_recv gave %zd", who, r->res);
    cr_assert_eq(r->after_res, -ECANCELED, "%s: a urt_recv after cancellation gave %zd", who, r->after_res);
    cr_assert_eq((uintptr_t)ret, 0xca11, "%s: the task ran to its end, join hands back its value", who);
    close(r->fds[0]);
    close(r->fds[1]);
}

typedef struct same_worker {
    urt_runtime *rt;
    receiver r;
    int join_res, canceller_worker;
    void *ret;
} same_worker;

static void *cancel_receiver_here(void *arg)
{
    same_worker *s = arg;
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, recv_forever, &s->r) != 0)
        return (void *)1;
    while (!task_waits_on(s->rt, t, "recv"))
        urt_sleep(MS);
    s->canceller_worker = urt_worker_id();
    urt_cancel(t);
    s->join_res = urt_join(t, &s->ret);
    return NULL;
}

Test(cancel, cancel_from_a_task_on_the_same_worker_ends_a_pending_recv, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    same_worker s = {.rt = rt, .join_res = 1};
    receiver_init(&s.r);
    void *err = NULL;
    cr_assert_eq(urt_runtime_block_on(rt, cancel_receiver_here, &s, &err), 0);
    cr_assert_null(err);
    cr_assert_eq(s.r.worker, 0);
    cr_assert_eq(s.canceller_worker, 0);
    receiver_check(&s.r, s.join_res, s.ret, "same worker");
    urt_runtime_destroy(rt);
}

/* The canceller occupies its worker (no yield) until the receiver, which
 * therefore runs on another worker, waits in urt_recv. */
typedef struct other_worker {
    urt_runtime *rt;
    receiver r;
    atomic_int canceller_ready;
    urt_task *_Atomic target;
    int canceller_worker;
} other_worker;

static void *cancel_from_elsewhere(void *arg)
{
    other_worker *o = arg;
    o->canceller_worker = urt_worker_id();
    atomic_store(&o->canceller_ready, 1);
    urt_task *t;
    while (!(t = atomic_load(&o->target)))
        cpu_relax();
    while (!task_waits_on(o->rt, t, "recv"))
        cpu_relax();
    return (void *)(intptr_t)urt_cancel(t);
}

Test(cancel, cancel_from_a_task_on_another_worker_ends_a_pending_recv, .timeout = 60)
{
    static const unsigned counts[] = {2, 4};
    for (int k = 0; k < 2; k++) {
        urt_runtime *rt = rt_new(counts[k]);
        other_worker o = {.rt = rt, .canceller_worker = -2};
        receiver_init(&o.r);
        urt_task *c = NULL, *t = NULL;
        cr_assert_eq(urt_spawn(rt, &c, cancel_from_elsewhere, &o), 0);
        while (!atomic_load(&o.canceller_ready))
            sched_yield();
        cr_assert_eq(urt_spawn(rt, &t, recv_forever, &o.r), 0);
        atomic_store(&o.target, t);
        void *cres = (void *)1;
        cr_assert_eq(urt_join(c, &cres), 0);
        cr_assert_eq((intptr_t)cres, 0, "urt_cancel gave %zd", (ssize_t)(intptr_t)cres);
        void *ret = NULL;
        int jr = urt_join(t, &ret);
        cr_assert_neq(o.r.worker, o.canceller_worker, "receiver and canceller both ran on worker %d", o.r.worker);
        receiver_check(&o.r, jr, ret, counts[k] == 2 ? "another worker of 2" : "another worker of 4");
        urt_runtime_destroy(rt);
    }
}

Test(cancel, cancel_from_a_plain_thread_ends_a_pending_recv, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        receiver r;
        receiver_init(&r);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, recv_forever, &r), 0);
        while (!task_waits_on(rt, t, "recv"))
            usleep(1000);
        cr_assert_eq(urt_cancel(t), 0);
        cr_assert_eq(urt_cancel(t), 0, "cancelling twice is harmless");
        void *ret = NULL;
        int jr = urt_join(t, &ret);
        receiver_check(&r, jr, ret, "plain thread");
        urt_runtime_destroy(rt);
    }
}

/* ---- every later suspending call fails; close still works ------------------------------------- */

typedef struct after {
    urt_notify *gate;
    int fds[2];
    int wait_res, sleep_res, notify_res, join_res, close_res;
    ssize_t recv_res, send_res;
    bool cancelled_seen;
} after;

static void *quick(void *arg) { return arg; }

static void *fail_everything(void *arg)
{
    after *a = arg;
    a->wait_res = urt_notify_wait(a->gate);   /* the cancel ends this one */
    a->cancelled_seen = urt_cancelled();
    char buf[4] = "x";
    a->sleep_res = urt_sleep(HOUR);
    a->recv_res = urt_recv(a->fds[0], buf, sizeof(buf), 0);
    a->send_res = urt_send(a->fds[0], buf, 1, 0);
    a->notify_res = urt_notify_wait(a->gate);
    urt_task *t = NULL;
    if (urt_spawn(NULL, &t, quick, NULL) == 0)
        a->join_res = urt_join(t, NULL);   /* consumes t even when the joiner gives up */
    a->close_res = urt_close(a->fds[0]);
    return NULL;
}

Test(cancel, cancelled_task_gets_ecanceled_from_every_suspending_call_but_can_close, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        after a;
        memset(&a, 0, sizeof(a));
        a.wait_res = a.sleep_res = a.notify_res = a.join_res = a.close_res = 1;
        a.recv_res = a.send_res = 1;
        cr_assert_eq(urt_notify_create(&a.gate), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a.fds), 0);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, fail_everything, &a), 0);
        while (!task_waits_on(rt, t, "notify"))
            usleep(1000);
        cr_assert_eq(urt_cancel(t), 0);
        cr_assert_eq(urt_join(t, NULL), -ECANCELED);
        cr_assert_eq(a.wait_res, -ECANCELED, "%u workers: pending notify_wait gave %d", w, a.wait_res);
        cr_assert(a.cancelled_seen, "urt_cancelled() is false in a cancelled task");
        cr_assert_eq(a.sleep_res, -ECANCELED, "sleep gave %d", a.sleep_res);
        cr_assert_eq(a.recv_res, -ECANCELED, "recv gave %zd", a.recv_res);
        cr_assert_eq(a.send_res, -ECANCELED, "send gave %zd", a.send_res);
        cr_assert_eq(a.notify_res, -ECANCELED, "notify_wait gave %d", a.notify_res);
        cr_assert(a.join_res == -ECANCELED || a.join_res == 0, "join gave %d", a.join_res);
        cr_assert_eq(a.close_res, 0, "urt_close in a cancelled task gave %d", a.close_res);
        cr_assert_eq(fcntl(a.fds[0], F_GETFD), -1, "the descriptor is still open");
        /* the notify keeps no waiter behind: a permit stored now stays */
        cr_assert_eq(urt_notify_signal(a.gate), 0);
        cr_assert_eq(urt_notify_try_wait(a.gate), 0);
        close(a.fds[1]);
        urt_notify_destroy(a.gate);
        urt_runtime_destroy(rt);
    }
}

/* ---- a joiner that is cancelled ------------------------------------------------------------------ */

typedef struct joiner {
    urt_notify *gate;
    urt_task *target;
    int join_res;
} joiner;

static void *wait_gate(void *arg)
{
    joiner *j = arg;
    urt_notify_wait(j->gate);
    return (void *)(uintptr_t)0x71;
}

static void *join_target(void *arg)
{
    joiner *j = arg;
    j->join_res = urt_join(j->target, NULL);
    return NULL;
}

/* The joiner is cancelled: urt_join consumes the handle all the same (the
 * target is detached and goes on), so nothing is left for the caller to
 * free or join again, and destroy finds no handle left over. */
Test(cancel, cancelled_joiner_gets_ecanceled_and_its_handle_is_consumed, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        joiner j = {.join_res = 1};
        cr_assert_eq(urt_notify_create(&j.gate), 0);
        cr_assert_eq(urt_spawn(rt, &j.target, wait_gate, &j), 0);
        urt_task *jt = NULL;
        cr_assert_eq(urt_spawn(rt, &jt, join_target, &j), 0);
        while (!task_waits_on(rt, jt, "join"))
            usleep(1000);
        cr_assert_eq(urt_cancel(jt), 0);
        cr_assert_eq(urt_join(jt, NULL), -ECANCELED);
        cr_assert_eq(j.join_res, -ECANCELED, "%u workers: the cancelled joiner got %d", w, j.join_res);
        /* the target runs on, detached, and ends when signalled */
        cr_assert_eq(urt_notify_signal(j.gate), 0);
        int saved = stderr_capture_begin();
        urt_runtime_destroy(rt);
        char *err = stderr_capture_end(saved);
        cr_assert(strstr(err, "never joined") == NULL, "destroy found a handle left over: %s", err);
        free(err);
        urt_notify_destroy(j.gate);
    }
}

/* Both the joiner and its target cancelled (what every shutdown does): the
 * handle is consumed exactly once whatever happens first. ASan reports a
 * double free or a leak if not. */
typedef struct both {
    urt_task *target;
    atomic_int joined;
    int res;
} both;

static void *sleep_long(void *arg)
{
    urt_sleep(HOUR);
    return arg;
}

static void *join_both(void *arg)
{
    both *b = arg;
    b->res = urt_join(b->target, NULL);
    atomic_store(&b->joined, 1);
    return NULL;
}

Test(cancel, joiner_and_target_cancelled_together_consume_the_handle_once, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        for (int round = 0; round < 50; round++) {
            urt_runtime *rt = rt_new(w);
            both b = {.res = 1};
            cr_assert_eq(urt_spawn(rt, &b.target, sleep_long, NULL), 0);
            urt_task *jt = NULL;
            cr_assert_eq(urt_spawn(rt, &jt, join_both, &b), 0);
            if (round & 1)
                await_waiting(rt, jt, "join");
            urt_detach(jt);
            int saved = stderr_capture_begin();
            cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
            urt_runtime_destroy(rt);
            char *err = stderr_capture_end(saved);
            if (atomic_load(&b.joined)) {
                cr_assert_eq(b.res, -ECANCELED, "join gave %d", b.res);
                cr_assert(strstr(err, "never joined") == NULL, "a handle was left over: %s", err);
            } else {
                /* the joiner was cancelled before it ran: the handle is destroy's to free */
                cr_assert(strstr(err, "1 task handle(s)") != NULL, "destroy said: %s", err);
            }
            free(err);
        }
    }
}

/* ---- cancelling a task that has ended ----------------------------------------------------------- */

static void *return_42(void *arg)
{
    atomic_store((atomic_int *)arg, 1);
    return (void *)42;
}

Test(cancel, cancel_after_the_task_ended_leaves_its_result_alone, .timeout = 30)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        atomic_int done = 0;
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, return_42, &done), 0);
        while (task_listed(rt, t))   /* the dump lists live tasks only */
            usleep(1000);
        cr_assert_eq(urt_cancel(t), 0);
        cr_assert_eq(urt_cancel(t), 0);
        void *r = NULL;
        cr_assert_eq(urt_join(t, &r), 0, "%u workers: a finished task's value wins over a later cancel", w);
        cr_assert_eq((uintptr_t)r, 42);
        /* shutdown cancels every task it finds: a finished, unjoined one keeps its value */
        cr_assert_eq(urt_spawn(rt, &t, return_42, &done), 0);
        while (task_listed(rt, t))
            usleep(1000);
        cr_assert_eq(urt_runtime_shutdown(rt, 0), 0);
        r = NULL;
        cr_assert_eq(urt_join(t, &r), 0);
        cr_assert_eq((uintptr_t)r, 42);
        urt_runtime_destroy(rt);
    }
}

/* ---- the cancel shield ------------------------------------------------------------------------------ */

typedef struct shielded {
    urt_notify *gate;
    bool old_on, old_off, cancelled_inside;
    int wait_res, sleep_res, unshielded_sleep_res;
    ssize_t recv_res;
    int fds[2];
    char got;
} shielded;

static void *work_under_shield(void *arg)
{
    shielded *s = arg;
    s->old_on = urt_cancel_shield(true);
    s->wait_res = urt_notify_wait(s->gate);        /* cancelled while here: must go on waiting */
    s->cancelled_inside = urt_cancelled();
    s->sleep_res = urt_sleep(5 * MS);              /* cleanup work still suspends normally */
    s->recv_res = urt_recv(s->fds[0], &s->got, 1, 0);
    s->old_off = urt_cancel_shield(false);
    s->unshielded_sleep_res = urt_sleep(HOUR);     /* now the held-back cancellation lands */
    return (void *)(uintptr_t)0x5a;
}

Test(cancel, cancel_shield_holds_cancellation_back, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        shielded s;
        memset(&s, 0, sizeof(s));
        s.wait_res = s.sleep_res = s.unshielded_sleep_res = 1;
        s.recv_res = 1;
        s.old_on = s.old_off = false;
        cr_assert_eq(urt_notify_create(&s.gate), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.fds), 0);
        cr_assert_eq(write(s.fds[1], "k", 1), 1);
        urt_task *t = NULL;
        cr_assert_eq(urt_spawn(rt, &t, work_under_shield, &s), 0);
        while (!task_waits_on(rt, t, "notify"))
            usleep(1000);
        cr_assert_eq(urt_cancel(t), 0);
        /* give the cancelled task every chance to (wrongly) leave its wait */
        for (int i = 0; i < 20; i++) {
            usleep(1000);
            cr_assert_eq(s.wait_res, 1, "%u workers: the shielded wait ended (%d) before the signal", w, s.wait_res);
        }
        cr_assert_eq(urt_notify_signal(s.gate), 0);
        void *ret = NULL;
        cr_assert_eq(urt_join(t, &ret), -ECANCELED);
        cr_assert_eq((uintptr_t)ret, 0x5a);
        cr_assert(!s.old_on, "the shield starts off");
        cr_assert(s.old_off, "urt_cancel_shield(false) returns the old value, true");
        cr_assert_eq(s.wait_res, 0, "%u workers: the shielded wait gave %d", w, s.wait_res);
        cr_assert(s.cancelled_inside, "urt_cancelled() reports the request even under the shield");
        cr_assert_eq(s.sleep_res, 0, "%u workers: a shielded sleep gave %d", w, s.sleep_res);
        cr_assert_eq(s.recv_res, 1, "%u workers: a shielded recv gave %zd", w, s.recv_res);
        cr_assert_eq(s.got, 'k');
        cr_assert_eq(s.unshielded_sleep_res, -ECANCELED, "%u workers: sleep after dropping the shield gave %d", w,
                     s.unshielded_sleep_res);
        close(s.fds[0]);
        close(s.fds[1]);
        urt_notify_destroy(s.gate);
        urt_runtime_destroy(rt);
    }
}

Test(cancel, cancel_shield_outside_a_task_is_off, .timeout = 10)
{
    urt_runtime *rt = rt_new(1);
    cr_assert(!urt_cancel_shield(true));
    cr_assert(!urt_cancel_shield(false));
    urt_runtime_destroy(rt);
}
