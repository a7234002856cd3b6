/*
 * test_local_queue.c - single-thread semantics of the local run queue: FIFO
 * pop, length, overflow into the inject queue, steal half, steal batch.
 * Written against URT_LQ_CAPACITY, so it holds for any capacity.
 */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdlib.h>

#include "queues/queues.h"

#define CAP  ((unsigned)URT_LQ_CAPACITY)
#define HALF (CAP / 2)

typedef struct item {
    q_node node;
    unsigned id;
} item;

static unsigned id_of(q_node *n)
{
    cr_assert_not_null(n);
    return ((item *)((char *)n - offsetof(item, node)))->id;
}

static item *make_items(unsigned n)
{
    item *it = calloc(n, sizeof *it);
    cr_assert_not_null(it);
    for (unsigned i = 0; i < n; i++)
        it[i].id = i;
    return it;
}

static lq *new_lq(void)
{
    lq *q = aligned_alloc(URT_CACHELINE, sizeof(lq));
    cr_assert_not_null(q);
    lq_init(q);
    return q;
}

/* Push items [from, to) and check that none overflows. */
static void push_range(lq *q, item *it, unsigned from, unsigned to, inject *inj)
{
    for (unsigned i = from; i < to; i++)
        cr_assert_eq(lq_push_owner(q, &it[i].node, inj), 0, "push %u overflowed", i);
}

/* Pop exactly the ids [from, to) in order, then expect the queue empty. */
static void expect_pops(lq *q, unsigned from, unsigned to)
{
    for (unsigned i = from; i < to; i++)
        cr_assert_eq(id_of(lq_pop_owner(q)), i);
    cr_assert_null(lq_pop_owner(q));
}

Test(local_queue, new_queue_is_empty, .timeout = 5)
{
    lq *q = new_lq();
    cr_assert_eq(lq_len(q), 0);
    cr_assert(lq_is_empty(q));
    cr_assert_eq(lq_remaining(q), CAP);
    cr_assert_null(lq_pop_owner(q));
    free(q);
}

Test(local_queue, pop_returns_nodes_in_push_order, .timeout = 5)
{
    lq *q = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    push_range(q, it, 0, CAP, &inj);
    expect_pops(q, 0, CAP);

    /* Interleaved: push two, pop one, many times over the buffer. */
    unsigned next_push = 0, next_pop = 0;
    for (unsigned round = 0; round < 10 * CAP; round++) {
        if (lq_len(q) + 2 <= CAP) {
            for (int k = 0; k < 2; k++) {
                it[next_push % CAP].id = next_push;
                cr_assert_eq(lq_push_owner(q, &it[next_push % CAP].node, &inj), 0);
                next_push++;
            }
        }
        cr_assert_eq(id_of(lq_pop_owner(q)), next_pop);
        next_pop++;
    }
    while (next_pop < next_push)
        cr_assert_eq(id_of(lq_pop_owner(q)), next_pop++);
    cr_assert_null(lq_pop_owner(q));
    cr_assert(inject_is_empty(&inj));

    inject_destroy(&inj);
    free(it);
    free(q);
}

Test(local_queue, len_and_remaining_follow_pushes_and_pops, .timeout = 5)
{
    lq *q = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    for (unsigned i = 0; i < CAP; i++) {
        cr_assert_eq(lq_len(q), i);
        cr_assert_eq(lq_remaining(q), CAP - i);
        lq_push_owner(q, &it[i].node, &inj);
    }
    cr_assert_eq(lq_len(q), CAP);
    cr_assert_eq(lq_remaining(q), 0);
    for (unsigned i = 0; i < CAP; i++) {
        lq_pop_owner(q);
        cr_assert_eq(lq_len(q), CAP - i - 1);
        cr_assert_eq(lq_remaining(q), i + 1);
    }
    cr_assert(lq_is_empty(q));

    inject_destroy(&inj);
    free(it);
    free(q);
}

Test(local_queue, push_into_full_queue_moves_half_plus_the_new_node_to_inject, .timeout = 5)
{
    lq *q = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP + 1);

    push_range(q, it, 0, CAP, &inj);
    cr_assert(inject_is_empty(&inj));

    cr_assert_eq(lq_push_owner(q, &it[CAP].node, &inj), HALF + 1);
    cr_assert_eq(inject_len(&inj), HALF + 1);
    cr_assert_eq(lq_len(q), CAP - HALF);

    /* The inject queue got the oldest half, in order, then the new node. */
    for (unsigned i = 0; i < HALF; i++)
        cr_assert_eq(id_of(inject_pop(&inj)), i);
    cr_assert_eq(id_of(inject_pop(&inj)), CAP);
    cr_assert_null(inject_pop(&inj));

    /* The local queue kept the newer half. */
    expect_pops(q, HALF, CAP);

    inject_destroy(&inj);
    free(it);
    free(q);
}

Test(local_queue, push_into_full_queue_during_a_steal_moves_only_the_new_node, .timeout = 5)
{
    lq *q = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP + 1);

    push_range(q, it, 0, CAP, &inj);
    /* Pretend a stealer has claimed position 0 and is copying it: head is
     * (steal << 32) | real, see queues.h. */
    at_store_relaxed(&q->head, ((uint64_t)0 << 32) | 1u);

    cr_assert_eq(lq_push_owner(q, &it[CAP].node, &inj), 1);
    cr_assert_eq(inject_len(&inj), 1);
    cr_assert_eq(id_of(inject_pop(&inj)), CAP);
    cr_assert_eq(lq_len(q), CAP - 1);

    /* The owner still pops past the claimed position; steal stays put. */
    cr_assert_eq(id_of(lq_pop_owner(q)), 1);
    cr_assert_eq(at_load_relaxed(&q->head), ((uint64_t)0 << 32) | 2u);

    /* The stealer commits: steal catches up with real, room appears. */
    at_store_relaxed(&q->head, ((uint64_t)2 << 32) | 2u);
    cr_assert_eq(lq_remaining(q), 2);
    cr_assert_eq(lq_push_owner(q, &it[0].node, &inj), 0);
    for (unsigned i = 2; i < CAP; i++)
        cr_assert_eq(id_of(lq_pop_owner(q)), i);
    expect_pops(q, 0, 1);

    inject_destroy(&inj);
    free(it);
    free(q);
}

Test(local_queue, steal_is_refused_while_another_steal_is_in_progress, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);
    q_node *out[CAP];

    push_range(src, it, 0, 4, &inj);
    at_store_relaxed(&src->head, ((uint64_t)0 << 32) | 1u);

    unsigned count = 99;
    cr_assert_null(lq_steal_into(src, dst, &count));
    cr_assert_eq(count, 0);
    cr_assert_eq(lq_steal_batch(src, out, CAP), 0);
    cr_assert_eq(lq_len(src), 3);

    inject_destroy(&inj);
    free(it);
    free(src);
    free(dst);
}

Test(local_queue, steal_into_takes_half_rounded_up_and_returns_one, .timeout = 10)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    for (unsigned n = 1; n <= CAP; n++) {
        lq *src = new_lq(), *dst = new_lq();
        push_range(src, it, 0, n, &inj);

        unsigned want = n - n / 2, count = 0;
        q_node *ret = lq_steal_into(src, dst, &count);
        cr_assert_eq(count, want, "n=%u", n);
        /* The newest stolen node runs now; the older ones wait in dst. */
        cr_assert_eq(id_of(ret), want - 1, "n=%u", n);
        cr_assert_eq(lq_len(dst), want - 1, "n=%u", n);
        cr_assert_eq(lq_len(src), n - want, "n=%u", n);
        expect_pops(dst, 0, want - 1);
        expect_pops(src, want, n);
        free(src);
        free(dst);
    }

    inject_destroy(&inj);
    free(it);
}

Test(local_queue, steal_into_accepts_a_null_count, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(2);

    push_range(src, it, 0, 2, &inj);
    cr_assert_eq(id_of(lq_steal_into(src, dst, NULL)), 0);
    cr_assert_null(lq_steal_into(dst, src, NULL));

    inject_destroy(&inj);
    free(it);
    free(src);
    free(dst);
}

Test(local_queue, steal_from_empty_queue_returns_null_and_zero, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    q_node *out[4];
    unsigned count = 99;

    cr_assert_null(lq_steal_into(src, dst, &count));
    cr_assert_eq(count, 0);
    cr_assert_eq(lq_steal_batch(src, out, 4), 0);
    cr_assert(lq_is_empty(dst));

    free(src);
    free(dst);
}

Test(local_queue, steal_into_refuses_a_destination_more_than_half_full, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(2 * CAP);

    /* src holds ids [0, CAP), dst holds [CAP, CAP + HALF + 1). */
    push_range(src, it, 0, CAP, &inj);
    push_range(dst, it, CAP, CAP + HALF + 1, &inj);
    unsigned count = 99;
    cr_assert_null(lq_steal_into(src, dst, &count));
    cr_assert_eq(count, 0);
    cr_assert_eq(lq_len(src), CAP);
    cr_assert_eq(lq_len(dst), HALF + 1);

    /* Exactly half full is room enough for the largest steal. */
    cr_assert_eq(id_of(lq_pop_owner(dst)), CAP);
    cr_assert_eq(id_of(lq_steal_into(src, dst, &count)), HALF - 1);
    cr_assert_eq(count, HALF);
    cr_assert_eq(lq_len(dst), CAP - 1);
    for (unsigned i = CAP + 1; i < CAP + HALF + 1; i++)
        cr_assert_eq(id_of(lq_pop_owner(dst)), i);
    expect_pops(dst, 0, HALF - 1);
    expect_pops(src, HALF, CAP);

    inject_destroy(&inj);
    free(it);
    free(src);
    free(dst);
}

Test(local_queue, stolen_nodes_follow_what_the_thief_already_had, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    /* dst holds ids [0, HALF/2); src holds [HALF/2, HALF/2 + HALF). */
    unsigned mine = HALF / 2;
    push_range(dst, it, 0, mine, &inj);
    push_range(src, it, mine, mine + HALF, &inj);

    unsigned count;
    q_node *ret = lq_steal_into(src, dst, &count);
    unsigned want = HALF - HALF / 2;
    cr_assert_eq(count, want);
    cr_assert_eq(id_of(ret), mine + want - 1);
    expect_pops(dst, 0, mine + want - 1);

    inject_destroy(&inj);
    free(it);
    free(src);
    free(dst);
}

Test(local_queue, steal_batch_takes_half_rounded_up_at_most_max, .timeout = 10)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);
    q_node *out[CAP];

    for (unsigned n = 1; n <= CAP; n++) {
        for (unsigned max = 0; max <= HALF + 1; max += (max < 4 ? 1 : HALF / 2)) {
            lq *src = new_lq();
            push_range(src, it, 0, n, &inj);
            unsigned want = n - n / 2;
            if (want > max)
                want = max;
            cr_assert_eq(lq_steal_batch(src, out, max), want, "n=%u max=%u", n, max);
            for (unsigned i = 0; i < want; i++)
                cr_assert_eq(id_of(out[i]), i);
            cr_assert_eq(lq_len(src), n - want);
            expect_pops(src, want, n);
            free(src);
        }
    }

    inject_destroy(&inj);
    free(it);
}

Test(local_queue, owner_can_push_after_everything_was_stolen, .timeout = 5)
{
    lq *src = new_lq(), *dst = new_lq();
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);
    q_node *out[CAP];

    push_range(src, it, 0, CAP, &inj);
    unsigned total = 0, n;
    while ((n = lq_steal_batch(src, out, CAP)) > 0) {
        for (unsigned i = 0; i < n; i++)
            cr_assert_eq(id_of(out[i]), total + i);
        total += n;
    }
    cr_assert_eq(total, CAP);
    cr_assert(lq_is_empty(src));
    cr_assert_eq(lq_remaining(src), CAP);
    push_range(src, it, 0, CAP, &inj);
    expect_pops(src, 0, CAP);

    inject_destroy(&inj);
    free(it);
    free(src);
    free(dst);
}
