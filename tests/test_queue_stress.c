/*
 * test_queue_stress.c - the queues under real concurrency: every node pushed
 * is seen exactly once, nothing is lost or duplicated, and the mailbox keeps
 * each producer's order.
 *
 *   local queue  one owner pushes (and pops some of) 1,000,000 nodes while
 *                three stealers steal half into their own queues and steal
 *                from each other; overflow goes to an inject queue that
 *                everybody drains
 *   mailbox      four producers push 250,000 nodes each, one consumer
 *   inject       three producers (single pushes and batches), two consumers
 *                (single pops and batches); and the order: push order from
 *                one thread, each producer's order with three
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>

#include "queues/queues.h"

typedef struct item {
    q_node node;
    unsigned producer;
    unsigned seq;
    unsigned payload;   /* written plainly by the pusher, checked by the taker */
} item;

#define PAYLOAD(seq) ((seq) * 2654435761u)

static item *item_of(q_node *n)
{
    return (item *)((char *)n - offsetof(item, node));
}

/* Each node's counter goes from 0 to 1 when it is seen; `seen` counts them
 * all and tells the threads when to stop. */
typedef struct tally {
    item *items;
    _Atomic uint32_t *count;
    unsigned n;
    _Atomic uint64_t seen;
    _Atomic unsigned bad_payload;   /* a node taken before its contents */
} tally;

static void tally_init(tally *t, unsigned n)
{
    t->items = calloc(n, sizeof *t->items);
    t->count = calloc(n, sizeof *t->count);
    cr_assert(t->items && t->count);
    t->n = n;
    for (unsigned i = 0; i < n; i++)
        t->items[i].seq = i;
    at_store_relaxed(&t->seen, 0);
    at_store_relaxed(&t->bad_payload, 0);
}

/* Stamp the payload just before pushing: a plain write that TSan reports if
 * the queue fails to order it before the taker's read in tally_see. */
static q_node *stamp(item *it)
{
    it->payload = PAYLOAD(it->seq);
    return &it->node;
}

static void tally_see(tally *t, q_node *n)
{
    item *it = item_of(n);
    if (it->payload != PAYLOAD(it->seq))
        at_fadd_relaxed(&t->bad_payload, 1);
    /* Relaxed: a counter; the final check runs after pthread_join. */
    at_fadd_relaxed(&t->count[it - t->items], 1);
    at_fadd_relaxed(&t->seen, 1);
}

static bool tally_done(tally *t)
{
    /* Relaxed: only decides when to stop looping. */
    return at_load_relaxed(&t->seen) >= t->n;
}

static void tally_check_each_once(tally *t)
{
    cr_assert_eq(at_load_relaxed(&t->bad_payload), 0);
    cr_assert_eq(at_load_relaxed(&t->seen), t->n);
    for (unsigned i = 0; i < t->n; i++) {
        uint32_t c = at_load_relaxed(&t->count[i]);
        if (c != 1)
            cr_assert_fail("node %u seen %u times", i, c);
    }
}

static void tally_free(tally *t)
{
    free(t->items);
    free((void *)t->count);
}

/* ---- local queue: one owner, three stealers ------------------------------ */

enum { LQ_NODES = 1000000, STEALERS = 3 };

typedef struct lq_world {
    tally t;
    lq *owner_q;
    lq *thief_q[STEALERS];
    inject inj;
    _Atomic unsigned started;
    _Atomic uint64_t stolen, overflowed;
    _Atomic unsigned errors;            /* mistakes seen by other threads */
} lq_world;

typedef struct thief_arg {
    lq_world *w;
    unsigned idx;
} thief_arg;

static lq *new_lq(void)
{
    lq *q = aligned_alloc(URT_CACHELINE, sizeof(lq));
    cr_assert_not_null(q);
    lq_init(q);
    return q;
}

static bool drain_inject_one(lq_world *w)
{
    q_node *n = inject_pop(&w->inj);
    if (n)
        tally_see(&w->t, n);
    return n != NULL;
}

static void *owner_main(void *p)
{
    lq_world *w = p;
    /* Relaxed: a start line, so the stealers are running before the pushes
     * begin; nothing is published through it. */
    while (at_load_relaxed(&w->started) < STEALERS)
        sched_yield();

    uint64_t overflowed = 0;
    for (unsigned i = 0; i < LQ_NODES; i++) {
        overflowed += lq_push_owner(w->owner_q, stamp(&w->t.items[i]), &w->inj);
        if (i % 3 == 0) {
            q_node *n = lq_pop_owner(w->owner_q);
            if (n)
                tally_see(&w->t, n);
        }
        if (i % 1024 == 0)
            drain_inject_one(w);
        /* Without a pause now and then the owner can push everything
         * within one time slice, before the stealers get a core. */
        if (i % 256 == 255)
            sched_yield();
    }
    while (!tally_done(&w->t)) {
        q_node *n = lq_pop_owner(w->owner_q);
        if (n)
            tally_see(&w->t, n);
        else if (!drain_inject_one(w))
            sched_yield();
    }
    at_fadd_relaxed(&w->overflowed, overflowed);
    return NULL;
}

static void *thief_main(void *p)
{
    thief_arg *a = p;
    lq_world *w = a->w;
    lq *mine = w->thief_q[a->idx];
    unsigned rng = 12345u + a->idx;
    uint64_t stolen = 0;

    at_fadd_relaxed(&w->started, 1);
    while (!tally_done(&w->t)) {
        rng = rng * 1103515245u + 12345u;
        unsigned pick = (rng >> 16) % 8;
        bool got = false;

        if (pick < 5) {
            /* Mostly from the owner. */
            unsigned count;
            q_node *n = lq_steal_into(w->owner_q, mine, &count);
            if (n) {
                tally_see(&w->t, n);
                stolen += count;
                got = true;
            }
        } else if (pick < 7) {
            /* From another thief, whose queue is also being popped. */
            unsigned victim = (a->idx + 1 + pick % (STEALERS - 1)) % STEALERS;
            unsigned count;
            q_node *n = lq_steal_into(w->thief_q[victim], mine, &count);
            if (n) {
                tally_see(&w->t, n);
                stolen += count;
                got = true;
            }
        } else {
            /* A rescue-style batch steal into an array. */
            q_node *out[16];
            unsigned k = lq_steal_batch(w->owner_q, out, 16);
            for (unsigned i = 0; i < k; i++)
                tally_see(&w->t, out[i]);
            stolen += k;
            got = k > 0;
        }

        /* Run (part of) what we hold, leaving some to be stolen from us. */
        unsigned budget = 1 + (rng >> 8) % 8;
        q_node *n;
        while (budget-- && (n = lq_pop_owner(mine)) != NULL)
            tally_see(&w->t, n);
        got |= drain_inject_one(w);
        if (!got)
            sched_yield();
    }
    /* Everything was seen, so our queue must be empty. Assertions stay in
     * the test's own thread; here a mistake is only counted. */
    if (lq_pop_owner(mine))
        at_fadd_relaxed(&w->errors, 1);
    at_fadd_relaxed(&w->stolen, stolen);
    return NULL;
}

Test(queue_stress, local_queue_owner_and_three_stealers_see_each_node_once, .timeout = 120)
{
    lq_world *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    tally_init(&w->t, LQ_NODES);
    w->owner_q = new_lq();
    for (unsigned i = 0; i < STEALERS; i++)
        w->thief_q[i] = new_lq();
    inject_init(&w->inj);

    pthread_t owner, thief[STEALERS];
    thief_arg args[STEALERS];
    for (unsigned i = 0; i < STEALERS; i++) {
        args[i] = (thief_arg){ w, i };
        cr_assert_eq(pthread_create(&thief[i], NULL, thief_main, &args[i]), 0);
    }
    cr_assert_eq(pthread_create(&owner, NULL, owner_main, w), 0);
    pthread_join(owner, NULL);
    for (unsigned i = 0; i < STEALERS; i++)
        pthread_join(thief[i], NULL);

    cr_assert_eq(at_load_relaxed(&w->errors), 0);
    tally_check_each_once(&w->t);
    cr_assert(lq_is_empty(w->owner_q));
    cr_assert(inject_is_empty(&w->inj));
    cr_log_info("stolen %llu, overflowed %llu",
                (unsigned long long)at_load_relaxed(&w->stolen),
                (unsigned long long)at_load_relaxed(&w->overflowed));

    inject_destroy(&w->inj);
    free(w->owner_q);
    for (unsigned i = 0; i < STEALERS; i++)
        free(w->thief_q[i]);
    tally_free(&w->t);
    free(w);
}

/* ---- mailbox: four producers, one consumer -------------------------------- */

enum { MB_PRODUCERS = 4, MB_PER_PRODUCER = 250000 };

typedef struct mb_world {
    mailbox mb;
    item *items;                        /* producer p owns [p * MB_PER_PRODUCER, ...) */
    _Atomic uint64_t pushed_onto_empty; /* mb_push returned true */
} mb_world;

typedef struct mb_arg {
    mb_world *w;
    unsigned p;
} mb_arg;

static void *mb_producer(void *p)
{
    mb_arg *a = p;
    uint64_t onto_empty = 0;
    for (unsigned s = 0; s < MB_PER_PRODUCER; s++) {
        item *it = &a->w->items[a->p * MB_PER_PRODUCER + s];
        it->producer = a->p;
        it->seq = s;
        onto_empty += mb_push(&a->w->mb, &it->node);
        if (s % 4096 == 0)
            sched_yield();
    }
    at_fadd_relaxed(&a->w->pushed_onto_empty, onto_empty);
    return NULL;
}

Test(queue_stress, mailbox_four_producers_lose_nothing_and_keep_each_order, .timeout = 120)
{
    mb_world *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    w->items = calloc((size_t)MB_PRODUCERS * MB_PER_PRODUCER, sizeof *w->items);
    cr_assert_not_null(w->items);
    mb_init(&w->mb);

    pthread_t th[MB_PRODUCERS];
    mb_arg args[MB_PRODUCERS];
    for (unsigned p = 0; p < MB_PRODUCERS; p++) {
        args[p] = (mb_arg){ w, p };
        cr_assert_eq(pthread_create(&th[p], NULL, mb_producer, &args[p]), 0);
    }

    /* Consumer: the next sequence number expected from each producer. Seeing
     * exactly that number every time proves each node arrives once and in
     * its producer's order. */
    unsigned next_seq[MB_PRODUCERS] = { 0 };
    uint64_t total = 0, batches = 0;
    while (total < (uint64_t)MB_PRODUCERS * MB_PER_PRODUCER) {
        q_node *n = mb_take_all(&w->mb);
        if (!n) {
            sched_yield();
            continue;
        }
        batches++;
        while (n) {
            q_node *next = n->next;
            item *it = item_of(n);
            cr_assert_lt(it->producer, MB_PRODUCERS);
            if (it->seq != next_seq[it->producer])
                cr_assert_fail("producer %u: got seq %u, expected %u",
                               it->producer, it->seq, next_seq[it->producer]);
            next_seq[it->producer]++;
            total++;
            n = next;
        }
    }
    for (unsigned p = 0; p < MB_PRODUCERS; p++)
        pthread_join(th[p], NULL);

    cr_assert_null(mb_take_all(&w->mb));
    cr_assert(mb_is_empty(&w->mb));
    for (unsigned p = 0; p < MB_PRODUCERS; p++)
        cr_assert_eq(next_seq[p], MB_PER_PRODUCER);
    /* The oldest node of every batch was pushed onto an empty mailbox, and
     * only those were: the "was empty" result rings exactly one doorbell per
     * batch. */
    cr_assert_eq(at_load_relaxed(&w->pushed_onto_empty), batches);

    free(w->items);
    free(w);
}

/* ---- inject: three producers, two consumers ------------------------------- */

enum { INJ_PRODUCERS = 3, INJ_CONSUMERS = 2, INJ_PER_PRODUCER = 200000 };

typedef struct inj_world {
    tally t;
    inject inj;
    _Atomic unsigned errors;            /* mistakes seen by other threads */
} inj_world;

typedef struct inj_arg {
    inj_world *w;
    unsigned idx;
} inj_arg;

static void *inj_producer(void *p)
{
    inj_arg *a = p;
    item *mine = &a->w->t.items[a->idx * INJ_PER_PRODUCER];
    unsigned i = 0, round = 0;
    while (i < INJ_PER_PRODUCER) {
        unsigned k = 1 + round++ % 8;       /* batch sizes 1..8 */
        if (k > INJ_PER_PRODUCER - i)
            k = INJ_PER_PRODUCER - i;
        if (k == 1) {
            inject_push(&a->w->inj, stamp(&mine[i]));
        } else {
            for (unsigned j = 0; j + 1 < k; j++)
                mine[i + j].node.next = stamp(&mine[i + j + 1]);
            stamp(&mine[i]);
            inject_push_batch(&a->w->inj, &mine[i].node, &mine[i + k - 1].node, k);
        }
        i += k;
    }
    return NULL;
}

static void *inj_consumer(void *p)
{
    inj_arg *a = p;
    inj_world *w = a->w;
    unsigned round = 0;
    while (!tally_done(&w->t)) {
        if (inject_is_empty(&w->inj)) {
            sched_yield();
            continue;
        }
        if (round++ % 2 == a->idx) {
            q_node *n = inject_pop(&w->inj);
            if (n) {
                if (n->next)
                    at_fadd_relaxed(&w->errors, 1);
                tally_see(&w->t, n);
            }
        } else {
            q_node *out[16];
            unsigned k = inject_pop_batch(&w->inj, out, 1 + round % 16, round % 3);
            for (unsigned j = 0; j < k; j++)
                tally_see(&w->t, out[j]);
        }
    }
    return NULL;
}

Test(queue_stress, inject_three_producers_two_consumers_see_each_node_once, .timeout = 120)
{
    inj_world *w = calloc(1, sizeof *w);
    cr_assert_not_null(w);
    tally_init(&w->t, INJ_PRODUCERS * INJ_PER_PRODUCER);
    inject_init(&w->inj);

    pthread_t prod[INJ_PRODUCERS], cons[INJ_CONSUMERS];
    inj_arg pa[INJ_PRODUCERS], ca[INJ_CONSUMERS];
    for (unsigned i = 0; i < INJ_CONSUMERS; i++) {
        ca[i] = (inj_arg){ w, i };
        cr_assert_eq(pthread_create(&cons[i], NULL, inj_consumer, &ca[i]), 0);
    }
    for (unsigned i = 0; i < INJ_PRODUCERS; i++) {
        pa[i] = (inj_arg){ w, i };
        cr_assert_eq(pthread_create(&prod[i], NULL, inj_producer, &pa[i]), 0);
    }
    for (unsigned i = 0; i < INJ_PRODUCERS; i++)
        pthread_join(prod[i], NULL);
    for (unsigned i = 0; i < INJ_CONSUMERS; i++)
        pthread_join(cons[i], NULL);

    cr_assert_eq(at_load_relaxed(&w->errors), 0);
    tally_check_each_once(&w->t);
    cr_assert(inject_is_empty(&w->inj));
    cr_assert_null(inject_pop(&w->inj));

    inject_destroy(&w->inj);
    tally_free(&w->t);
    free(w);
}

/* ---- inject: order ---------------------------------------------------------- */

/* One thread: singles and batches pushed, then popped in batches of every
 * size, come out exactly in push order, also when pushes land between the
 * pops (the FIFO runs out mid-batch and the newer pushes follow it). */
Test(queue_stress, inject_pops_in_push_order)
{
    enum { N = 5000 };
    item *it = calloc(N, sizeof *it);
    cr_assert_not_null(it);
    inject q;
    inject_init(&q);
    unsigned pushed = 0, popped = 0, round = 0;
    while (popped < N) {
        for (unsigned b = 0; b < 3 && pushed < N; b++) {
            unsigned k = 1 + (round + b) % 7;
            if (k > N - pushed)
                k = N - pushed;
            for (unsigned j = 0; j < k; j++) {
                it[pushed + j].seq = pushed + j;
                it[pushed + j].node.next = j + 1 < k ? &it[pushed + j + 1].node : NULL;
            }
            if (k == 1)
                inject_push(&q, &it[pushed].node);
            else
                inject_push_batch(&q, &it[pushed].node, &it[pushed + k - 1].node, k);
            pushed += k;
        }
        q_node *out[16];
        unsigned got = inject_pop_batch(&q, out, 1 + round % 16, round % 4);
        for (unsigned j = 0; j < got; j++) {
            cr_assert_eq(item_of(out[j])->seq, popped, "popped %u where %u was due", item_of(out[j])->seq, popped);
            cr_assert_null(out[j]->next);
            popped++;
        }
        round++;
    }
    cr_assert(inject_is_empty(&q));
    inject_destroy(&q);
    free(it);
}

/* Three producers, one consumer: each producer's nodes come out in the
 * order it pushed them. */
enum { ORD_PRODUCERS = 3, ORD_PER_PRODUCER = 100000 };

typedef struct ord_arg {
    inject *q;
    item *mine;
} ord_arg;

static void *ord_producer(void *p)
{
    ord_arg *a = p;
    for (unsigned i = 0; i < ORD_PER_PRODUCER;) {
        unsigned k = 1 + i % 5;
        if (k > ORD_PER_PRODUCER - i)
            k = ORD_PER_PRODUCER - i;
        for (unsigned j = 0; j + 1 < k; j++)
            a->mine[i + j].node.next = &a->mine[i + j + 1].node;
        inject_push_batch(a->q, &a->mine[i].node, &a->mine[i + k - 1].node, k);
        i += k;
    }
    return NULL;
}

Test(queue_stress, inject_keeps_each_producers_order, .timeout = 120)
{
    item *it = calloc(ORD_PRODUCERS * ORD_PER_PRODUCER, sizeof *it);
    cr_assert_not_null(it);
    inject q;
    inject_init(&q);
    pthread_t th[ORD_PRODUCERS];
    ord_arg a[ORD_PRODUCERS];
    for (unsigned p = 0; p < ORD_PRODUCERS; p++) {
        for (unsigned i = 0; i < ORD_PER_PRODUCER; i++) {
            it[p * ORD_PER_PRODUCER + i].producer = p;
            it[p * ORD_PER_PRODUCER + i].seq = i;
        }
        a[p] = (ord_arg){ &q, &it[p * ORD_PER_PRODUCER] };
        cr_assert_eq(pthread_create(&th[p], NULL, ord_producer, &a[p]), 0);
    }
    unsigned next[ORD_PRODUCERS] = { 0 }, total = 0, round = 0;
    while (total < ORD_PRODUCERS * ORD_PER_PRODUCER) {
        q_node *out[16];
        unsigned got = inject_pop_batch(&q, out, 1 + round++ % 16, 2);
        if (!got)
            sched_yield();
        for (unsigned j = 0; j < got; j++) {
            item *x = item_of(out[j]);
            cr_assert_eq(x->seq, next[x->producer], "producer %u: %u came where %u was due", x->producer, x->seq,
                         next[x->producer]);
            next[x->producer]++;
            total++;
        }
    }
    for (unsigned p = 0; p < ORD_PRODUCERS; p++)
        pthread_join(th[p], NULL);
    cr_assert(inject_is_empty(&q));
    inject_destroy(&q);
    free(it);
}
