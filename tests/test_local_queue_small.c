/*
 * test_local_queue_small.c - the local run queue built with capacity 4:
 * wrap-around of the slot index, wrap of the free-running u32 positions
 * through UINT32_MAX, overflow of a tiny queue, and a long random sequence
 * of operations checked against a plain model.
 *
 * Built on its own with URT_LQ_CAPACITY=4 (see CMakeLists.txt).
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

static lq *new_lq_at(uint32_t start)
{
    lq *q = aligned_alloc(URT_CACHELINE, sizeof(lq));
    cr_assert_not_null(q);
    lq_init_at(q, start);
    return q;
}

/* Start points: at zero, and a few positions before the u32 wrap so that
 * every test crosses it. */
static const uint32_t starts[] = { 0, UINT32_MAX - 2 * CAP, UINT32_MAX - CAP, UINT32_MAX - 1, UINT32_MAX };
#define NSTARTS (sizeof starts / sizeof starts[0])

Test(local_queue_small, build_has_capacity_four, .timeout = 5)
{
    cr_assert_eq(URT_LQ_CAPACITY, 4);
    cr_assert_eq(sizeof(((lq *)0)->buf) / sizeof(((lq *)0)->buf[0]), 4);
}

Test(local_queue_small, init_at_any_start_gives_an_empty_queue, .timeout = 5)
{
    for (unsigned s = 0; s < NSTARTS; s++) {
        lq *q = new_lq_at(starts[s]);
        cr_assert_eq(lq_len(q), 0);
        cr_assert_eq(lq_remaining(q), CAP);
        cr_assert_null(lq_pop_owner(q));
        free(q);
    }
}

Test(local_queue_small, push_and_pop_keep_order_across_many_slot_wraps, .timeout = 5)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    for (unsigned s = 0; s < NSTARTS; s++) {
        lq *q = new_lq_at(starts[s]);
        unsigned next = 0;
        /* Fill levels 1..CAP in turn, 1000 rounds: positions go around the
         * four slots thousands of times and through UINT32_MAX. */
        for (unsigned round = 0; round < 1000; round++) {
            unsigned k = 1 + round % CAP;
            for (unsigned i = 0; i < k; i++) {
                it[i].id = next + i;
                cr_assert_eq(lq_push_owner(q, &it[i].node, &inj), 0);
                cr_assert_eq(lq_len(q), i + 1);
            }
            for (unsigned i = 0; i < k; i++)
                cr_assert_eq(id_of(lq_pop_owner(q)), next + i, "start %u round %u", s, round);
            cr_assert_null(lq_pop_owner(q));
            next += k;
        }
        cr_assert(inject_is_empty(&inj));
        free(q);
    }

    inject_destroy(&inj);
    free(it);
}

Test(local_queue_small, len_stays_right_across_the_u32_wrap, .timeout = 5)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    /* Keep the queue partly full while tail and head cross UINT32_MAX at
     * different moments. */
    lq *q = new_lq_at(UINT32_MAX - 1);
    for (unsigned i = 0; i < CAP - 1; i++)
        lq_push_owner(q, &it[i].node, &inj);
    for (unsigned round = 0; round < 4 * CAP; round++) {
        cr_assert_eq(lq_len(q), CAP - 1);
        cr_assert_eq(lq_remaining(q), 1);
        q_node *n = lq_pop_owner(q);
        cr_assert_eq(lq_len(q), CAP - 2);
        cr_assert_eq(lq_push_owner(q, n, &inj), 0);
    }
    free(q);
    inject_destroy(&inj);
    free(it);
}

Test(local_queue_small, overflow_at_capacity_four_moves_three_to_inject, .timeout = 5)
{
    item *it = make_items(CAP + 1);

    for (unsigned s = 0; s < NSTARTS; s++) {
        inject inj;
        inject_init(&inj);
        lq *q = new_lq_at(starts[s]);

        for (unsigned i = 0; i < CAP; i++)
            cr_assert_eq(lq_push_owner(q, &it[i].node, &inj), 0);
        cr_assert_eq(lq_push_owner(q, &it[CAP].node, &inj), 3);
        cr_assert_eq(inject_len(&inj), 3);
        cr_assert_eq(id_of(inject_pop(&inj)), 0);
        cr_assert_eq(id_of(inject_pop(&inj)), 1);
        cr_assert_eq(id_of(inject_pop(&inj)), 4);
        cr_assert_null(inject_pop(&inj));
        cr_assert_eq(lq_len(q), 2);
        cr_assert_eq(lq_remaining(q), 2);
        cr_assert_eq(id_of(lq_pop_owner(q)), 2);
        cr_assert_eq(id_of(lq_pop_owner(q)), 3);
        cr_assert_null(lq_pop_owner(q));

        free(q);
        inject_destroy(&inj);
    }
    free(it);
}

Test(local_queue_small, steal_into_takes_half_rounded_up_across_the_u32_wrap, .timeout = 5)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);

    for (unsigned s = 0; s < NSTARTS; s++) {
        for (unsigned d = 0; d < NSTARTS; d++) {
            for (unsigned n = 1; n <= CAP; n++) {
                lq *src = new_lq_at(starts[s]), *dst = new_lq_at(starts[d]);
                for (unsigned i = 0; i < n; i++)
                    lq_push_owner(src, &it[i].node, &inj);
                unsigned want = n - n / 2, count;
                cr_assert_eq(id_of(lq_steal_into(src, dst, &count)), want - 1);
                cr_assert_eq(count, want);
                cr_assert_eq(lq_len(dst), want - 1);
                cr_assert_eq(lq_len(src), n - want);
                for (unsigned i = 0; i + 1 < want; i++)
                    cr_assert_eq(id_of(lq_pop_owner(dst)), i);
                for (unsigned i = want; i < n; i++)
                    cr_assert_eq(id_of(lq_pop_owner(src)), i);
                cr_assert_null(lq_pop_owner(dst));
                cr_assert_null(lq_pop_owner(src));
                free(src);
                free(dst);
            }
        }
    }
    inject_destroy(&inj);
    free(it);
}

Test(local_queue_small, steal_batch_takes_half_rounded_up_across_the_u32_wrap, .timeout = 5)
{
    inject inj;
    inject_init(&inj);
    item *it = make_items(CAP);
    q_node *out[CAP];

    for (unsigned s = 0; s < NSTARTS; s++) {
        for (unsigned n = 0; n <= CAP; n++) {
            for (unsigned max = 0; max <= CAP; max++) {
                lq *q = new_lq_at(starts[s]);
                for (unsigned i = 0; i < n; i++)
                    lq_push_owner(q, &it[i].node, &inj);
                unsigned want = n - n / 2;
                if (want > max)
                    want = max;
                cr_assert_eq(lq_steal_batch(q, out, max), want);
                for (unsigned i = 0; i < want; i++)
                    cr_assert_eq(id_of(out[i]), i);
                cr_assert_eq(lq_len(q), n - want);
                cr_assert_eq(lq_remaining(q), CAP - (n - want));
                free(q);
            }
        }
    }
    inject_destroy(&inj);
    free(it);
}

/* ---- random operations against a model ----------------------------------- */

#define MODEL_MAX (1u << 18)  /* more than the operations of the test */
typedef struct model {
    unsigned ids[MODEL_MAX];    /* ring of ids, oldest at [head % MODEL_MAX] */
    unsigned head, len;
} model;

static void m_push(model *m, unsigned id)
{
    cr_assert(m->len < MODEL_MAX);
    m->ids[(m->head + m->len++) % MODEL_MAX] = id;
}

static unsigned m_pop(model *m)
{
    cr_assert(m->len > 0);
    unsigned id = m->ids[m->head++ % MODEL_MAX];
    m->len--;
    return id;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

Test(local_queue_small, random_operations_match_a_model_across_the_u32_wrap, .timeout = 20)
{
    enum { NQ = 3, OPS = 200000 };
    item *it = make_items(OPS + 1);
    unsigned next_id = 0;
    inject inj;
    inject_init(&inj);
    model *minj = calloc(1, sizeof *minj);
    model *mq = calloc(NQ, sizeof *mq);
    cr_assert(minj && mq);
    lq *q[NQ];
    for (unsigned i = 0; i < NQ; i++)
        q[i] = new_lq_at(UINT32_MAX - 3 * i);

    for (unsigned op = 0; op < OPS; op++) {
        unsigned a = rnd(NQ), b = (a + 1 + rnd(NQ - 1)) % NQ;
        switch (rnd(6)) {
        case 0:
        case 1: {   /* push, twice as often as the rest */
            unsigned id = next_id++;
            unsigned moved = lq_push_owner(q[a], &it[id].node, &inj);
            if (mq[a].len < CAP) {
                cr_assert_eq(moved, 0);
                m_push(&mq[a], id);
            } else {
                cr_assert_eq(moved, HALF + 1);
                for (unsigned k = 0; k < HALF; k++)
                    m_push(minj, m_pop(&mq[a]));
                m_push(minj, id);
            }
            break;
        }
        case 2: {   /* pop */
            q_node *n = lq_pop_owner(q[a]);
            if (mq[a].len == 0)
                cr_assert_null(n);
            else
                cr_assert_eq(id_of(n), m_pop(&mq[a]), "op %u", op);
            break;
        }
        case 3: {   /* steal a into b */
            unsigned count;
            q_node *n = lq_steal_into(q[a], q[b], &count);
            unsigned want = mq[a].len - mq[a].len / 2;
            if (mq[b].len > HALF || want == 0) {
                cr_assert_null(n);
                cr_assert_eq(count, 0);
                break;
            }
            cr_assert_eq(count, want, "op %u", op);
            for (unsigned k = 0; k + 1 < want; k++)
                m_push(&mq[b], m_pop(&mq[a]));
            cr_assert_eq(id_of(n), m_pop(&mq[a]), "op %u", op);
            break;
        }
        case 4: {   /* steal a batch and put it in the inject queue */
            q_node *out[CAP];
            unsigned max = rnd(CAP + 1);
            unsigned want = mq[a].len - mq[a].len / 2;
            if (want > max)
                want = max;
            unsigned got = lq_steal_batch(q[a], out, max);
            cr_assert_eq(got, want, "op %u", op);
            for (unsigned k = 0; k < got; k++) {
                cr_assert_eq(id_of(out[k]), m_pop(&mq[a]));
                inject_push(&inj, out[k]);
                m_push(minj, id_of(out[k]));
            }
            break;
        }
        case 5: {   /* the inject queue feeds a local queue back */
            q_node *n = inject_pop(&inj);
            if (minj->len == 0) {
                cr_assert_null(n);
                break;
            }
            cr_assert_eq(id_of(n), m_pop(minj));
            if (mq[a].len < CAP) {
                cr_assert_eq(lq_push_owner(q[a], n, &inj), 0);
                m_push(&mq[a], id_of(n));
            }
            break;
        }
        }
        for (unsigned i = 0; i < NQ; i++) {
            cr_assert_eq(lq_len(q[i]), mq[i].len, "op %u queue %u", op, i);
            cr_assert_eq(lq_remaining(q[i]), CAP - mq[i].len);
        }
        cr_assert_eq(inject_len(&inj), minj->len);
    }

    for (unsigned i = 0; i < NQ; i++) {
        while (mq[i].len)
            cr_assert_eq(id_of(lq_pop_owner(q[i])), m_pop(&mq[i]));
        cr_assert_null(lq_pop_owner(q[i]));
        /* Every queue's positions went through UINT32_MAX. */
        cr_assert_lt(at_load_relaxed(&q[i]->tail), UINT32_MAX / 2);
        free(q[i]);
    }
    inject_destroy(&inj);
    free(minj);
    free(mq);
    free(it);
}
