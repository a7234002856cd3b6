/*
 * test_chan.c - urt_chan moves every item exactly once and in order between
 * any mix of tasks and plain threads, closes as in Go, and stays consistent
 * (no item lost or delivered twice) when a waiting sender or receiver is
 * cancelled or times out.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

#if defined(URT_TSAN)
#define FLOW_ITEMS 100000u
#elif defined(URT_ASAN)
#define FLOW_ITEMS 250000u
#else
#define FLOW_ITEMS 1000000u
#endif

static void *bystander(void *arg) { return arg; }

typedef struct item {
    uint32_t v;
    uint32_t check;                /* ~v: the bytes arrive whole */
} item;

static item mk(uint32_t v) { return (item){v, ~v}; }

/* ---- a million items, tasks and threads on both ends -------------------------------------------- */

#define PRODUCERS 4
#define CONSUMERS 4
#define PER_PRODUCER (FLOW_ITEMS / PRODUCERS)

typedef struct flow {
    urt_chan *c;
    atomic_uchar *seen;            /* per item: how many times it was received */
    atomic_long received;
    atomic_int errors, order_errors;
} flow;

typedef struct producer {
    flow *f;
    uint32_t first;
} producer;

typedef struct consumer {
    flow *f;
    int64_t last[PRODUCERS];       /* the last item seen from each producer */
    int end;                       /* what ended the loop */
} consumer;

static void *produce(void *arg)
{
    producer *p = arg;
    for (uint32_t i = 0; i < PER_PRODUCER; i++) {
        item it = mk(p->first + i);
        if (urt_chan_send(p->f->c, &it) != 0)
            atomic_fetch_add(&p->f->errors, 1);
    }
    return NULL;
}

static void *consume(void *arg)
{
    consumer *c = arg;
    flow *f = c->f;
    for (int p = 0; p < PRODUCERS; p++)
        c->last[p] = -1;
    for (;;) {
        item it;
        int r = urt_chan_recv(f->c, &it);
        if (r != 0) {
            c->end = r;
            break;
        }
        if (it.v >= FLOW_ITEMS || it.check != ~it.v) {
            atomic_fetch_add(&f->errors, 1);
            continue;
        }
        atomic_fetch_add(&f->seen[it.v], 1);
        atomic_fetch_add(&f->received, 1);
        /* the channel is FIFO: what one producer sent, one consumer sees in order */
        unsigned p = it.v / PER_PRODUCER;
        if ((int64_t)it.v <= c->last[p])
            atomic_fetch_add(&f->order_errors, 1);
        c->last[p] = it.v;
    }
    return NULL;
}

Test(chan, a_million_items_between_tasks_and_threads_each_arrive_exactly_once, .timeout = 300)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        flow f;
        memset(&f, 0, sizeof(f));
        f.seen = calloc(FLOW_ITEMS, sizeof(*f.seen));
        cr_assert_not_null(f.seen);
        cr_assert_eq(urt_chan_create(&f.c, sizeof(item), 64), 0);
        producer prod[PRODUCERS];
        consumer cons[CONSUMERS];
        urt_task *pt[2], *ct[2];
        pthread_t pth[2], cth[2];
        memset(cons, 0, sizeof(cons));
        for (int i = 0; i < PRODUCERS; i++)
            prod[i] = (producer){&f, (uint32_t)i * PER_PRODUCER};
        for (int i = 0; i < CONSUMERS; i++)
            cons[i].f = &f;
        /* producers 0, 1 and consumers 0, 1 are tasks; the rest plain threads */
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(urt_spawn(rt, &ct[i], consume, &cons[i]), 0);
            cr_assert_eq(pthread_create(&cth[i], NULL, consume, &cons[2 + i]), 0);
        }
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(urt_spawn(rt, &pt[i], produce, &prod[i]), 0);
            cr_assert_eq(pthread_create(&pth[i], NULL, produce, &prod[2 + i]), 0);
        }
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(urt_join(pt[i], NULL), 0);
            cr_assert_eq(pthread_join(pth[i], NULL), 0);
        }
        cr_assert_eq(urt_chan_close(f.c), 0);
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(urt_join(ct[i], NULL), 0);
            cr_assert_eq(pthread_join(cth[i], NULL), 0);
        }
        for (int i = 0; i < CONSUMERS; i++)
            cr_assert_eq(cons[i].end, -EPIPE, "%u workers: consumer %d ended with %d", w, i, cons[i].end);
        cr_assert_eq(atomic_load(&f.errors), 0, "%u workers: %d send/recv errors", w, atomic_load(&f.errors));
        cr_assert_eq(atomic_load(&f.order_errors), 0, "%u workers: %d items out of order", w,
                     atomic_load(&f.order_errors));
        cr_assert_eq(atomic_load(&f.received), (long)FLOW_ITEMS, "%u workers: %ld items received", w,
                     atomic_load(&f.received));
        for (uint32_t v = 0; v < FLOW_ITEMS; v++)
            cr_assert_eq(atomic_load(&f.seen[v]), 1, "%u workers: item %u received %d times", w, v,
                         atomic_load(&f.seen[v]));
        cr_assert_eq(urt_chan_len(f.c), 0);
        urt_chan_destroy(f.c);
        free(f.seen);
        urt_runtime_destroy(rt);
    }
}

/* ---- FIFO among waiters --------------------------------------------------------------------------- */

#define WAITERS 4

typedef struct order_case {
    urt_runtime *rt;
    urt_chan *c;
    item got[WAITERS];
    int res[WAITERS];
    int errors;
} order_case;

typedef struct waiter_arg {
    order_case *o;
    int id;
} waiter_arg;

static void *recv_one(void *arg)
{
    waiter_arg *a = arg;
    a->o->res[a->id] = urt_chan_recv(a->o->c, &a->o->got[a->id]);
    return NULL;
}

static void *send_one(void *arg)
{
    waiter_arg *a = arg;
    item it = mk(100 + (uint32_t)a->id);
    a->o->res[a->id] = urt_chan_send(a->o->c, &it);
    return NULL;
}

static void *receivers_in_order(void *arg)
{
    order_case *o = arg;
    waiter_arg args[WAITERS];
    urt_task *t[WAITERS];
    for (int i = 0; i < WAITERS; i++) {
        args[i] = (waiter_arg){o, i};
        if (urt_spawn(NULL, &t[i], recv_one, &args[i]) != 0)
            return (void *)1;
        await_waiting(o->rt, t[i], "chan_recv");
    }
    for (int i = 0; i < WAITERS; i++) {
        item it = mk((uint32_t)i);
        o->errors += urt_chan_send(o->c, &it) != 0;
    }
    for (int i = 0; i < WAITERS; i++)
        o->errors += urt_join(t[i], NULL) != 0;
    return NULL;
}

static void *senders_in_order(void *arg)
{
    order_case *o = arg;
    waiter_arg args[WAITERS];
    urt_task *t[WAITERS];
    item first = mk(7);
    o->errors += urt_chan_send(o->c, &first) != 0;   /* capacity 1: now full */
    for (int i = 0; i < WAITERS; i++) {
        args[i] = (waiter_arg){o, i};
        if (urt_spawn(NULL, &t[i], send_one, &args[i]) != 0)
            return (void *)1;
        await_waiting(o->rt, t[i], "chan_send");
    }
    for (int i = 0; i < WAITERS + 1; i++)
        o->errors += urt_chan_recv(o->c, &o->got[i == 0 ? 0 : i - 1]) != 0 || (i == 0 && o->got[0].v != 7);
    for (int i = 0; i < WAITERS; i++)
        o->errors += urt_join(t[i], NULL) != 0;
    return NULL;
}

Test(chan, waiting_receivers_and_senders_are_served_in_the_order_they_came, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        order_case o;
        memset(&o, 0, sizeof(o));
        o.rt = rt;
        cr_assert_eq(urt_chan_create(&o.c, sizeof(item), 1), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, receivers_in_order, &o, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(o.errors, 0);
        for (int i = 0; i < WAITERS; i++) {
            cr_assert_eq(o.res[i], 0);
            cr_assert_eq(o.got[i].v, (uint32_t)i, "%u workers: receiver %d got item %u", w, i, o.got[i].v);
            cr_assert_eq(o.got[i].check, ~(uint32_t)i);
        }
        memset(o.got, 0, sizeof(o.got));
        memset(o.res, 0xff, sizeof(o.res));
        cr_assert_eq(urt_runtime_block_on(rt, senders_in_order, &o, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(o.errors, 0);
        for (int i = 0; i < WAITERS; i++) {
            cr_assert_eq(o.res[i], 0);
            cr_assert_eq(o.got[i].v, 100u + (uint32_t)i, "%u workers: place %d got item %u", w, i, o.got[i].v);
        }
        cr_assert_eq(urt_chan_len(o.c), 0);
        urt_chan_destroy(o.c);
        urt_runtime_destroy(rt);
    }
}

/* ---- close ------------------------------------------------------------------------------------------ */

typedef struct close_case {
    urt_chan *c;
    int res[WAITERS];
} close_case;

typedef struct close_arg {
    close_case *k;
    int id;
} close_arg;

static void *close_recv(void *arg)
{
    close_arg *a = arg;
    item it;
    a->k->res[a->id] = urt_chan_recv(a->k->c, &it);
    return NULL;
}

static void *close_send(void *arg)
{
    close_arg *a = arg;
    item it = mk(200 + (uint32_t)a->id);
    a->k->res[a->id] = urt_chan_send(a->k->c, &it);
    return NULL;
}

/* WAITERS - 1 tasks and one plain thread wait in fn; then close. */
static void close_under_waiters(urt_runtime *rt, close_case *k, urt_fn fn, const char *what)
{
    close_arg args[WAITERS];
    urt_task *t[WAITERS - 1];
    pthread_t th;
    for (int i = 0; i < WAITERS; i++) {
        args[i] = (close_arg){k, i};
        k->res[i] = 1;
    }
    for (int i = 0; i < WAITERS - 1; i++) {
        cr_assert_eq(urt_spawn(rt, &t[i], fn, &args[i]), 0);
        await_waiting(rt, t[i], what);
    }
    cr_assert_eq(pthread_create(&th, NULL, fn, &args[WAITERS - 1]), 0);
    usleep(20 * 1000);
    cr_assert_eq(urt_chan_close(k->c), 0);
    for (int i = 0; i < WAITERS - 1; i++)
        cr_assert_eq(urt_join(t[i], NULL), 0);
    cr_assert_eq(pthread_join(th, NULL), 0);
    for (int i = 0; i < WAITERS; i++)
        cr_assert_eq(k->res[i], -EPIPE, "%s: waiter %d gave %d after close", what, i, k->res[i]);
    cr_assert_eq(urt_chan_close(k->c), -EPIPE, "a second close");
}

Test(chan, close_wakes_every_waiting_receiver_and_sender_with_epipe, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        close_case k;
        cr_assert_eq(urt_chan_create(&k.c, sizeof(item), 1), 0);
        close_under_waiters(rt, &k, close_recv, "chan_recv");
        item it = mk(1);
        cr_assert_eq(urt_chan_send(k.c, &it), -EPIPE);
        cr_assert_eq(urt_chan_recv(k.c, &it), -EPIPE);
        urt_chan_destroy(k.c);

        cr_assert_eq(urt_chan_create(&k.c, sizeof(item), 1), 0);
        it = mk(7);
        cr_assert_eq(urt_chan_send(k.c, &it), 0);
        close_under_waiters(rt, &k, close_send, "chan_send");
        /* what was buffered before close is still received, then -EPIPE */
        cr_assert_eq(urt_chan_len(k.c), 1, "a woken sender's item went in after close");
        memset(&it, 0, sizeof(it));
        cr_assert_eq(urt_chan_try_recv(k.c, &it), 0);
        cr_assert_eq(it.v, 7);
        cr_assert_eq(urt_chan_recv(k.c, &it), -EPIPE);
        cr_assert_eq(urt_chan_try_recv(k.c, &it), -EPIPE);
        cr_assert_eq(urt_chan_try_send(k.c, &it), -EPIPE);
        cr_assert_eq(urt_chan_send(k.c, &it), -EPIPE);
        urt_chan_destroy(k.c);
        urt_runtime_destroy(rt);
    }
}

static void *drain_after_close(void *arg)
{
    urt_chan *c = arg;
    item it;
    uint32_t want = 0;
    int r;
    while ((r = urt_chan_recv(c, &it)) == 0) {
        if (it.v != want++)
            return (void *)1;
    }
    return r == -EPIPE && want == 3 ? NULL : (void *)2;
}

Test(chan, recv_drains_a_closed_channel_before_it_reports_epipe, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    urt_chan *c = NULL;
    cr_assert_eq(urt_chan_create(&c, sizeof(item), 4), 0);
    for (uint32_t i = 0; i < 3; i++) {
        item it = mk(i);
        cr_assert_eq(urt_chan_send(c, &it), 0);
    }
    cr_assert_eq(urt_chan_close(c), 0);
    void *r = (void *)3;
    cr_assert_eq(urt_runtime_block_on(rt, drain_after_close, c, &r), 0);
    cr_assert_null(r, "the drain in a task failed (%d)", (int)(intptr_t)r);
    urt_chan_destroy(c);
    urt_runtime_destroy(rt);
}

/* ---- inside urt_block_in_place ------------------------------------------------------------------------ */

typedef struct in_place {
    urt_chan *c;
    atomic_int entered;
    item got;
    int res;
} in_place;

static void *recv_blocking(void *arg)
{
    in_place *p = arg;
    atomic_store(&p->entered, 1);
    p->res = urt_chan_recv(p->c, &p->got);
    return NULL;
}

static void *recv_in_place(void *arg)
{
    return (void *)(intptr_t)urt_block_in_place(recv_blocking, arg, NULL);
}

Test(chan, recv_inside_block_in_place_blocks_its_thread_and_leaves_the_worker_free, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    in_place p = {.res = 1};
    cr_assert_eq(urt_chan_create(&p.c, sizeof(item), 1), 0);
    urt_task *t = NULL;
    cr_assert_eq(urt_spawn(rt, &t, recv_in_place, &p), 0);
    while (!atomic_load(&p.entered))
        usleep(1000);
    /* the only worker still runs tasks while the receive blocks a pool thread */
    urt_task *b = NULL;
    void *r = NULL;
    cr_assert_eq(urt_spawn(rt, &b, bystander, (void *)0x5a), 0);
    cr_assert_eq(urt_join(b, &r), 0);
    cr_assert_eq((uintptr_t)r, 0x5a);
    item it = mk(77);
    cr_assert_eq(urt_chan_send(p.c, &it), 0);
    r = (void *)1;
    cr_assert_eq(urt_join(t, &r), 0);
    cr_assert_null(r);
    cr_assert_eq(p.res, 0);
    cr_assert_eq(p.got.v, 77);
    urt_chan_destroy(p.c);
    urt_runtime_destroy(rt);
}

/* ---- try variants, len/cap, bad input ------------------------------------------------------------------ */

static void *try_in_task(void *arg)
{
    urt_chan *c = arg;
    int bad = 0;
    item it = mk(5);
    bad += urt_chan_try_send(c, &it) != 0;
    bad += urt_chan_try_send(c, &it) != -EAGAIN;   /* capacity 1 */
    bad += urt_chan_len(c) != 1;
    bad += urt_chan_try_recv(c, &it) != 0 || it.v != 5;
    bad += urt_chan_try_recv(c, &it) != -EAGAIN;
    return (void *)(intptr_t)bad;
}

Test(chan, try_send_and_try_recv_never_wait_and_len_counts_buffered_items, .timeout = 30)
{
    urt_runtime *rt = rt_new(1);
    urt_chan *c = NULL;
    item it = mk(0);
    cr_assert_eq(urt_chan_create(NULL, 8, 1), -EINVAL);
    cr_assert_eq(urt_chan_create(&c, 0, 1), -EINVAL);
    cr_assert_eq(urt_chan_create(&c, 8, 0), -EINVAL);
    cr_assert_eq(urt_chan_create(&c, SIZE_MAX / 2, 4), -EINVAL);
    cr_assert_eq(urt_chan_send(NULL, &it), -EINVAL);
    cr_assert_eq(urt_chan_recv(NULL, &it), -EINVAL);
    cr_assert_eq(urt_chan_try_send(NULL, &it), -EINVAL);
    cr_assert_eq(urt_chan_try_recv(NULL, &it), -EINVAL);
    cr_assert_eq(urt_chan_close(NULL), -EINVAL);
    cr_assert_eq(urt_chan_len(NULL), -EINVAL);
    cr_assert_eq(urt_chan_cap(NULL), -EINVAL);
    urt_chan_destroy(NULL);

    cr_assert_eq(urt_chan_create(&c, sizeof(item), 3), 0);
    cr_assert_eq(urt_chan_send(c, NULL), -EINVAL);
    cr_assert_eq(urt_chan_recv(c, NULL), -EINVAL);
    cr_assert_eq(urt_chan_try_send(c, NULL), -EINVAL);
    cr_assert_eq(urt_chan_try_recv(c, NULL), -EINVAL);
    cr_assert_eq(urt_chan_cap(c), 3);
    cr_assert_eq(urt_chan_len(c), 0);
    cr_assert_eq(urt_chan_try_recv(c, &it), -EAGAIN);
    /* wrap around the ring a few times */
    uint32_t next_in = 0, next_out = 0;
    for (int round = 0; round < 5; round++) {
        for (;;) {
            it = mk(next_in);
            int r = urt_chan_try_send(c, &it);
            if (r == -EAGAIN)
                break;
            cr_assert_eq(r, 0);
            next_in++;
        }
        cr_assert_eq(urt_chan_len(c), 3);
        for (int k = 0; k < 2; k++) {
            cr_assert_eq(urt_chan_try_recv(c, &it), 0);
            cr_assert_eq(it.v, next_out, "got %u, want %u", it.v, next_out);
            cr_assert_eq(it.check, ~next_out);
            next_out++;
        }
        cr_assert_eq(urt_chan_len(c), 1);
    }
    cr_assert_eq(urt_chan_recv(c, &it), 0, "a plain thread receives a buffered item");
    cr_assert_eq(it.v, next_out);
    urt_chan_destroy(c);

    cr_assert_eq(urt_chan_create(&c, sizeof(item), 1), 0);
    void *bad = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, try_in_task, c, &bad), 0);
    cr_assert_null(bad, "%d checks failed in a task", (int)(intptr_t)bad);
    urt_chan_destroy(c);
    urt_runtime_destroy(rt);
}

/* ---- cancellation and timeout ------------------------------------------------------------------------------ */

typedef struct victim {
    urt_chan *c;
    item it;                       /* what a sender sends / where a receiver receives */
    int res, again;
} victim;

static void *victim_recv(void *arg)
{
    victim *v = arg;
    v->res = urt_chan_recv(v->c, &v->it);
    if (v->res != 0) {
        item junk;
        v->again = urt_chan_recv(v->c, &junk);   /* a cancelled task: -ECANCELED at once */
    }
    return NULL;
}

static void *victim_send(void *arg)
{
    victim *v = arg;
    v->res = urt_chan_send(v->c, &v->it);
    if (v->res != 0)
        v->again = urt_chan_send(v->c, &v->it);
    return NULL;
}

typedef struct cancel_case {
    urt_runtime *rt;
    urt_chan *c;
    victim a, b;
    item out[2];
    int errors;
    ssize_t len_after;
} cancel_case;

/* Receivers a, b wait on an empty channel; a is cancelled; one send goes to b. */
static void *cancel_a_queued_receiver(void *arg)
{
    cancel_case *k = arg;
    urt_task *a = NULL, *b = NULL;
    k->a = (victim){.c = k->c, .res = 1, .again = 1};
    k->b = (victim){.c = k->c, .res = 1, .again = 1};
    if (urt_spawn(NULL, &a, victim_recv, &k->a) != 0 || (await_waiting(k->rt, a, "chan_recv"), 0))
        return (void *)1;
    if (urt_spawn(NULL, &b, victim_recv, &k->b) != 0 || (await_waiting(k->rt, b, "chan_recv"), 0))
        return (void *)2;
    urt_cancel(a);
    k->errors += urt_join(a, NULL) != -ECANCELED;
    item it = mk(42);
    k->errors += urt_chan_send(k->c, &it) != 0;
    k->errors += urt_join(b, NULL) != 0;
    k->len_after = urt_chan_len(k->c);
    return NULL;
}

/* Capacity 1, full with item 1; senders a (item 2) and b (item 3) wait; a is
 * cancelled; two receives give 1 then 3, and nothing else is left. */
static void *cancel_a_queued_sender(void *arg)
{
    cancel_case *k = arg;
    urt_task *a = NULL, *b = NULL;
    item one = mk(1);
    k->errors += urt_chan_send(k->c, &one) != 0;
    k->a = (victim){.c = k->c, .it = mk(2), .res = 1, .again = 1};
    k->b = (victim){.c = k->c, .it = mk(3), .res = 1, .again = 1};
    if (urt_spawn(NULL, &a, victim_send, &k->a) != 0 || (await_waiting(k->rt, a, "chan_send"), 0))
        return (void *)1;
    if (urt_spawn(NULL, &b, victim_send, &k->b) != 0 || (await_waiting(k->rt, b, "chan_send"), 0))
        return (void *)2;
    urt_cancel(a);
    k->errors += urt_join(a, NULL) != -ECANCELED;
    k->errors += urt_chan_recv(k->c, &k->out[0]) != 0;
    k->errors += urt_join(b, NULL) != 0;
    k->errors += urt_chan_recv(k->c, &k->out[1]) != 0;
    k->len_after = urt_chan_len(k->c);
    return NULL;
}

Test(chan, a_cancelled_receiver_or_sender_moves_no_item_and_the_next_waiter_is_served, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        cancel_case k;
        memset(&k, 0, sizeof(k));
        k.rt = rt;
        cr_assert_eq(urt_chan_create(&k.c, sizeof(item), 1), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, cancel_a_queued_receiver, &k, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(k.errors, 0);
        cr_assert_eq(k.a.res, -ECANCELED, "%u workers: the cancelled recv gave %d", w, k.a.res);
        cr_assert_eq(k.a.again, -ECANCELED);
        cr_assert_eq(k.b.res, 0);
        cr_assert_eq(k.b.it.v, 42, "the item went to the cancelled receiver");
        cr_assert_eq(k.len_after, 0);

        memset(&k.errors, 0, sizeof(k.errors));
        cr_assert_eq(urt_runtime_block_on(rt, cancel_a_queued_sender, &k, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(k.errors, 0);
        cr_assert_eq(k.a.res, -ECANCELED, "%u workers: the cancelled send gave %d", w, k.a.res);
        cr_assert_eq(k.a.again, -ECANCELED);
        cr_assert_eq(k.b.res, 0);
        cr_assert_eq(k.out[0].v, 1);
        cr_assert_eq(k.out[1].v, 3, "after the buffered item came %u, not the waiting sender's", k.out[1].v);
        cr_assert_eq(k.len_after, 0, "the cancelled sender's item went in");
        urt_chan_destroy(k.c);
        urt_runtime_destroy(rt);
    }
}

typedef struct late_cancel {
    urt_runtime *rt;
    urt_chan *c;
    victim v;
    item out;
    int moved;                     /* the receive in the sender case */
    ssize_t len_after;
} late_cancel;

static void *cancel_then_send(void *arg)
{
    late_cancel *l = arg;
    urt_task *t = NULL;
    l->v = (victim){.c = l->c, .res = 1, .again = 1};
    if (urt_spawn(NULL, &t, victim_recv, &l->v) != 0)
        return (void *)1;
    await_waiting(l->rt, t, "chan_recv");
    urt_cancel(t);
    item it = mk(9);
    if (urt_chan_send(l->c, &it) != 0)   /* races the cancellation */
        return (void *)2;
    urt_join(t, NULL);
    l->len_after = urt_chan_len(l->c);
    return NULL;
}

static void *cancel_then_recv(void *arg)
{
    late_cancel *l = arg;
    urt_task *t = NULL;
    item full = mk(1);
    if (urt_chan_send(l->c, &full) != 0)
        return (void *)1;
    l->v = (victim){.c = l->c, .it = mk(2), .res = 1, .again = 1};
    if (urt_spawn(NULL, &t, victim_send, &l->v) != 0)
        return (void *)2;
    await_waiting(l->rt, t, "chan_send");
    urt_cancel(t);
    l->moved = urt_chan_recv(l->c, &l->out);   /* races the cancellation */
    urt_join(t, NULL);
    l->len_after = urt_chan_len(l->c);
    return NULL;
}

Test(chan, a_waiter_cancelled_after_the_handoff_returns_0_and_no_item_is_lost_or_doubled, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        late_cancel l;
        memset(&l, 0, sizeof(l));
        l.rt = rt;
        cr_assert_eq(urt_chan_create(&l.c, sizeof(item), 1), 0);
        for (int round = 0; round < 20; round++) {
            void *err = (void *)1;
            cr_assert_eq(urt_runtime_block_on(rt, cancel_then_send, &l, &err), 0);
            cr_assert_null(err);
            if (w == 1)
                cr_assert_eq(l.v.res, 0, "the item was handed over before the receiver ran: recv gave %d", l.v.res);
            if (l.v.res == 0) {
                cr_assert_eq(l.v.it.v, 9);
                cr_assert_eq(l.len_after, 0, "the item was received and is still buffered");
            } else {
                cr_assert_eq(l.v.res, -ECANCELED, "recv gave %d", l.v.res);
                cr_assert_eq(l.len_after, 1, "the item was lost");
                item it;
                cr_assert_eq(urt_chan_try_recv(l.c, &it), 0);
                cr_assert_eq(it.v, 9);
            }

            cr_assert_eq(urt_runtime_block_on(rt, cancel_then_recv, &l, &err), 0);
            cr_assert_null(err);
            cr_assert_eq(l.moved, 0);
            cr_assert_eq(l.out.v, 1);
            if (w == 1)
                cr_assert_eq(l.v.res, 0, "the item was taken before the sender ran: send gave %d", l.v.res);
            if (l.v.res == 0) {
                cr_assert_eq(l.len_after, 1, "the sent item is not in the channel");
                item it;
                cr_assert_eq(urt_chan_try_recv(l.c, &it), 0);
                cr_assert_eq(it.v, 2);
            } else {
                cr_assert_eq(l.v.res, -ECANCELED, "send gave %d", l.v.res);
                cr_assert_eq(l.len_after, 0, "a cancelled send put its item in");
            }
        }
        urt_chan_destroy(l.c);
        urt_runtime_destroy(rt);
    }
}

typedef struct timed {
    urt_chan *c;
    int recv_res, send_res;
    uint64_t recv_elapsed, send_elapsed;
    bool cancelled;
} timed;

static void *ops_with_timeout(void *arg)
{
    timed *tm = arg;
    uint64_t old = urt_op_timeout(10 * MS);
    item it;
    uint64_t t0 = urt_now();
    tm->recv_res = urt_chan_recv(tm->c, &it);   /* empty */
    tm->recv_elapsed = urt_now() - t0;
    it = mk(1);
    if (urt_chan_send(tm->c, &it) != 0)       /* capacity 1: now full */
        return (void *)1;
    it = mk(2);
    t0 = urt_now();
    tm->send_res = urt_chan_send(tm->c, &it);
    tm->send_elapsed = urt_now() - t0;
    urt_op_timeout(old);
    tm->cancelled = urt_cancelled();
    return NULL;
}

Test(chan, op_timeout_makes_send_and_recv_return_etimedout_and_moves_nothing, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        timed tm = {.recv_res = 1, .send_res = 1};
        cr_assert_eq(urt_chan_create(&tm.c, sizeof(item), 1), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, ops_with_timeout, &tm, &err), 0);
        cr_assert_null(err);
        cr_assert_eq(tm.recv_res, -ETIMEDOUT, "%u workers: recv with a 10 ms timeout gave %d", w, tm.recv_res);
        cr_assert_eq(tm.send_res, -ETIMEDOUT, "%u workers: send with a 10 ms timeout gave %d", w, tm.send_res);
        cr_assert_geq(tm.recv_elapsed, 10 * MS);
        cr_assert_geq(tm.send_elapsed, 10 * MS);
        cr_assert(!tm.cancelled);
        cr_assert_eq(urt_chan_len(tm.c), 1);
        item it;
        cr_assert_eq(urt_chan_try_recv(tm.c, &it), 0);
        cr_assert_eq(it.v, 1);
        cr_assert_eq(urt_chan_try_recv(tm.c, &it), -EAGAIN, "the timed-out send put its item in");
        urt_chan_destroy(tm.c);
        urt_runtime_destroy(rt);
    }
}

/* ---- inside a hook (on a worker thread); cooperative yield ----------------------------------------------------- */

typedef struct hook_checks {
    atomic_int armed, done;
    urt_chan *c;
    int recv_empty, send_room, send_full, recv_item;
    item got;
} hook_checks;

static void checking_terminate_hook(urt_task *t, void *data)
{
    (void)t;
    hook_checks *h = data;
    if (urt_worker_id() < 0)
        return;
    int one = 1;
    if (!atomic_compare_exchange_strong(&h->armed, &one, 0))
        return;
    item it = mk(11);
    h->recv_empty = urt_chan_recv(h->c, &h->got);
    h->send_room = urt_chan_send(h->c, &it);
    h->send_full = urt_chan_send(h->c, &it);
    h->recv_item = urt_chan_recv(h->c, &h->got);
    atomic_store(&h->done, 1);
}

Test(chan, send_and_recv_in_a_hook_are_edeadlk_only_when_they_would_wait, .timeout = 30)
{
    static hook_checks h;
    memset(&h, 0, sizeof(h));
    h.recv_empty = h.send_room = h.send_full = h.recv_item = 1;
    urt_config cfg = {.workers = 2, .on_task_terminate = checking_terminate_hook, .hook_data = &h};
    urt_runtime *rt = rt_new_cfg(&cfg);
    cr_assert_eq(urt_chan_create(&h.c, sizeof(item), 1), 0);
    atomic_store(&h.armed, 1);
    while (!atomic_load(&h.done)) {
        urt_task *q = NULL;
        cr_assert_eq(urt_spawn(rt, &q, bystander, NULL), 0);
        cr_assert_eq(urt_join(q, NULL), 0);
    }
    cr_assert_eq(h.recv_empty, -EDEADLK, "recv on an empty channel gave %d", h.recv_empty);
    cr_assert_eq(h.send_room, 0);
    cr_assert_eq(h.send_full, -EDEADLK, "send on a full channel gave %d", h.send_full);
    cr_assert_eq(h.recv_item, 0);
    cr_assert_eq(h.got.v, 11);
    urt_runtime_destroy(rt);
    urt_chan_destroy(h.c);
}

typedef struct spinner {
    urt_chan *c;
    atomic_int other_ran;
    unsigned long rounds;
} spinner;

static void *mark_ran(void *arg)
{
    spinner *s = arg;
    atomic_store(&s->other_ran, 1);
    return NULL;
}

static void *ping_pong_alone(void *arg)
{
    spinner *s = arg;
    urt_task *o = NULL;
    if (urt_spawn(NULL, &o, mark_ran, s) != 0)
        return (void *)1;
    /* never waits: send then recv on a channel with room. Only the budget lets o run. */
    while (!atomic_load(&s->other_ran) && s->rounds < 100000000ul) {
        item it = mk((uint32_t)s->rounds);
        if (urt_chan_send(s->c, &it) != 0 || urt_chan_recv(s->c, &it) != 0)
            return (void *)2;
        s->rounds++;
    }
    urt_join(o, NULL);
    return NULL;
}

Test(chan, a_task_looping_over_a_ready_channel_lets_its_worker_run_other_tasks, .timeout = 60)
{
    urt_runtime *rt = rt_new(1);
    spinner s;
    memset(&s, 0, sizeof(s));
    cr_assert_eq(urt_chan_create(&s.c, sizeof(item), 1), 0);
    void *err = (void *)1;
    cr_assert_eq(urt_runtime_block_on(rt, ping_pong_alone, &s, &err), 0);
    cr_assert_null(err);
    cr_assert_eq(atomic_load(&s.other_ran), 1);
    cr_assert_lt(s.rounds, 100000000ul, "the other task never ran while the loop went on");
    urt_chan_destroy(s.c);
    urt_runtime_destroy(rt);
}
