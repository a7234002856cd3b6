/*
 * test_rwlock.c - urt_rwlock lets readers in together and a writer alone
 * (under a stress of tasks and plain threads, every operation counted once;
 * a plain thread and a task inside urt_block_in_place block in it),
 * prefers a waiting writer to new readers, lets writers in in FIFO order and
 * the readers queued between two writers in together, and a queued writer
 * that is cancelled or times out lets the readers behind it in.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/urt_test.h"

#define MS (1000ull * 1000)

#if defined(URT_ASAN) || defined(URT_TSAN)
#define STRESS_OPS 1500
#else
#define STRESS_OPS 20000
#endif

/* A task sleeps 1 ms, a plain thread (or anything else) sleeps 1 ms too. */
static void nap_1ms(void)
{
    if (urt_sleep(MS) == -EPERM)
        usleep(1000);
}

/* l is free (nobody holds it, nobody waits): check, then destroy it. */
static void free_and_destroy(urt_rwlock *l)
{
    cr_assert_eq(urt_rwlock_try_wrlock(l), 0, "the lock was left held");
    cr_assert_eq(urt_rwlock_unlock(l), 0);
    cr_assert_eq(urt_rwlock_unlock(l), -EPERM);
    urt_rwlock_destroy(l);
}

/* ---- readers overlap ------------------------------------------------------------------------------ */

#define OVERLAP_TASKS 6
#define OVERLAP_THREADS 2
#define OVERLAP_READERS (OVERLAP_TASKS + OVERLAP_THREADS)

typedef struct overlap {
    urt_rwlock *l;
    atomic_int inside, met, errors;
} overlap;

static void *overlap_reader(void *arg)
{
    overlap *o = arg;
    if (urt_rwlock_rdlock(o->l) != 0) {
        atomic_fetch_add(&o->errors, 1);
        return NULL;
    }
    atomic_fetch_add(&o->inside, 1);
    /* every reader waits inside until all of them are inside at once */
    uint64_t t0 = urt_now();
    while (atomic_load(&o->inside) < OVERLAP_READERS && urt_now() - t0 < 20000 * MS)
        nap_1ms();
    if (atomic_load(&o->inside) == OVERLAP_READERS)
        atomic_fetch_add(&o->met, 1);
    /* nobody leaves before everyone has looked */
    t0 = urt_now();
    while (atomic_load(&o->met) < OVERLAP_READERS && urt_now() - t0 < 20000 * MS)
        nap_1ms();
    if (urt_rwlock_unlock(o->l) != 0)
        atomic_fetch_add(&o->errors, 1);
    return NULL;
}

Test(rwlock, readers_of_tasks_and_plain_threads_are_inside_together, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        overlap o;
        memset(&o, 0, sizeof(o));
        cr_assert_eq(urt_rwlock_create(&o.l), 0);
        urt_task *t[OVERLAP_TASKS];
        pthread_t th[OVERLAP_THREADS];
        for (int i = 0; i < OVERLAP_TASKS; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], overlap_reader, &o), 0);
        for (int i = 0; i < OVERLAP_THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, overlap_reader, &o), 0);
        for (int i = 0; i < OVERLAP_TASKS; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < OVERLAP_THREADS; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(atomic_load(&o.errors), 0);
        cr_assert_eq(atomic_load(&o.met), OVERLAP_READERS, "%u workers: only %d readers saw all %d inside", w,
                     atomic_load(&o.met), OVERLAP_READERS);
        free_and_destroy(o.l);
        urt_runtime_destroy(rt);
    }
}

/* ---- a writer is alone: stress --------------------------------------------------------------------- */

typedef struct stress {
    urt_rwlock *l;
    atomic_int readers_in, writers_in;
    uint64_t a, b;                 /* under l (written by writers only): always equal outside a writer */
    atomic_ulong reads, writes;
    atomic_int overlaps, errors;
} stress;

static void stress_ops(stress *s, unsigned seed)
{
    for (unsigned i = 0; i < STRESS_OPS; i++) {
        seed = seed * 1103515245u + 12345u;
        bool write = (seed >> 16) % 4 == 0;
        int r = write ? urt_rwlock_wrlock(s->l) : urt_rwlock_rdlock(s->l);
        if (r != 0) {
            atomic_fetch_add(&s->errors, 1);
            continue;
        }
        if (write) {
            if (atomic_fetch_add(&s->writers_in, 1) != 0 || atomic_load(&s->readers_in) != 0)
                atomic_fetch_add(&s->overlaps, 1);
            s->a++;
            if ((i & 15) == 0)
                urt_yield();   /* hold it across a yield: others queue up */
            s->b++;
            atomic_fetch_add(&s->writes, 1);
            atomic_fetch_sub(&s->writers_in, 1);
        } else {
            atomic_fetch_add(&s->readers_in, 1);
            if (atomic_load(&s->writers_in) != 0)
                atomic_fetch_add(&s->overlaps, 1);
            uint64_t a = s->a;
            if ((i & 15) == 0)
                urt_yield();
            if (s->b != a)
                atomic_fetch_add(&s->overlaps, 1);
            atomic_fetch_add(&s->reads, 1);
            atomic_fetch_sub(&s->readers_in, 1);
        }
        if (urt_rwlock_unlock(s->l) != 0)
            atomic_fetch_add(&s->errors, 1);
    }
}

typedef struct stress_arg {
    stress *s;
    unsigned seed;
} stress_arg;

static void *stress_worker(void *arg)
{
    stress_arg *a = arg;
    stress_ops(a->s, a->seed);
    return NULL;
}

#define STRESS_TASKS 8
#define STRESS_THREADS 2

Test(rwlock, mixed_readers_and_writers_never_overlap_a_writer_and_every_operation_counts_once, .timeout = 240)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        stress s;
        memset(&s, 0, sizeof(s));
        cr_assert_eq(urt_rwlock_create(&s.l), 0);
        stress_arg args[STRESS_TASKS + STRESS_THREADS];
        urt_task *t[STRESS_TASKS];
        pthread_t th[STRESS_THREADS];
        for (int i = 0; i < STRESS_TASKS + STRESS_THREADS; i++)
            args[i] = (stress_arg){&s, 77u * (unsigned)i + 1};
        for (int i = 0; i < STRESS_TASKS; i++)
            cr_assert_eq(urt_spawn(rt, &t[i], stress_worker, &args[i]), 0);
        for (int i = 0; i < STRESS_THREADS; i++)
            cr_assert_eq(pthread_create(&th[i], NULL, stress_worker, &args[STRESS_TASKS + i]), 0);
        for (int i = 0; i < STRESS_TASKS; i++)
            cr_assert_eq(urt_join(t[i], NULL), 0);
        for (int i = 0; i < STRESS_THREADS; i++)
            cr_assert_eq(pthread_join(th[i], NULL), 0);
        cr_assert_eq(atomic_load(&s.errors), 0, "%u workers: %d lock/unlock errors", w, atomic_load(&s.errors));
        cr_assert_eq(atomic_load(&s.overlaps), 0, "%u workers: %d overlaps with a writer", w,
                     atomic_load(&s.overlaps));
        unsigned long reads = atomic_load(&s.reads), writes = atomic_load(&s.writes);
        cr_assert_eq(reads + writes, (unsigned long)(STRESS_TASKS + STRESS_THREADS) * STRESS_OPS,
                     "%u workers: %lu reads + %lu writes", w, reads, writes);
        cr_assert_eq(s.a, writes, "every write counted once");
        cr_assert_eq(s.b, writes);
        cr_assert_gt(writes, 0);
        cr_assert_gt(reads, 0);
        free_and_destroy(s.l);
        urt_runtime_destroy(rt);
    }
}

/* ---- order: writer preference, FIFO writers, readers between writers together ---------------------------- */

#define LOG_MAX 32

typedef struct order {
    urt_runtime *rt;
    urt_rwlock *l;
    pthread_mutex_t log_lock;
    int log[LOG_MAX];              /* under log_lock: +id on entry, -id on exit (ids from 1) */
    int n;                         /* under log_lock */
    atomic_int readers_in, readers_met;
    int errors;
} order;

typedef struct entrant {
    order *o;
    int id;
    bool writer;
    int pair;                      /* a reader: readers expected inside with it (0: none) */
    int res;
} entrant;

static void log_event(order *o, int ev)
{
    pthread_mutex_lock(&o->log_lock);
    if (o->n < LOG_MAX)
        o->log[o->n++] = ev;
    pthread_mutex_unlock(&o->log_lock);
}

static int log_pos(order *o, int ev)
{
    for (int i = 0; i < o->n; i++)
        if (o->log[i] == ev)
            return i;
    return -1;
}

static void *enter_and_leave(void *arg)
{
    entrant *e = arg;
    e->res = e->writer ? urt_rwlock_wrlock(e->o->l) : urt_rwlock_rdlock(e->o->l);
    if (e->res != 0)
        return NULL;
    log_event(e->o, e->id);
    if (e->pair) {
        /* wait (bounded) until the readers let in with us are inside too */
        atomic_fetch_add(&e->o->readers_in, 1);
        uint64_t t0 = urt_now();
        while (atomic_load(&e->o->readers_in) < e->pair && urt_now() - t0 < 20000 * MS)
            urt_sleep(MS);
        if (atomic_load(&e->o->readers_in) >= e->pair)
            atomic_fetch_add(&e->o->readers_met, 1);
    } else {
        urt_sleep(5 * MS);   /* stay a while: whoever may not overlap us shows it */
    }
    log_event(e->o, -e->id);
    urt_rwlock_unlock(e->o->l);
    return NULL;
}

/* Queue, behind the caller's hold of o->l, the entrants in this order
 * (each is queued before the next comes), release that hold, join them all. */
static void *queue_all(order *o, entrant *e, int n)
{
    urt_task *t[LOG_MAX];
    for (int i = 0; i < n; i++) {
        e[i].o = o;
        e[i].res = 1;
        if (urt_spawn(NULL, &t[i], enter_and_leave, &e[i]) != 0)
            return (void *)1;
        await_waiting(o->rt, t[i], e[i].writer ? "rwlock-write" : "rwlock-read");
    }
    if (urt_rwlock_unlock(o->l) != 0)
        return (void *)2;
    for (int i = 0; i < n; i++)
        if (urt_join(t[i], NULL) != 0 || e[i].res != 0)
            return (void *)3;
    return NULL;
}

typedef struct preference {
    order o;
    int try_rd, try_wr;
} preference;

static void *writer_preference(void *arg)
{
    preference *p = arg;
    order *o = &p->o;
    if (urt_rwlock_rdlock(o->l) != 0)
        return (void *)10;
    /* W (1) queues behind our read hold; then a new reader may not get in */
    entrant e[2] = {{.id = 1, .writer = true}, {.id = 2, .writer = false}};
    urt_task *w = NULL;
    e[0].o = e[1].o = o;
    if (urt_spawn(NULL, &w, enter_and_leave, &e[0]) != 0)
        return (void *)11;
    await_waiting(o->rt, w, "rwlock-write");
    p->try_rd = urt_rwlock_try_rdlock(o->l);
    p->try_wr = urt_rwlock_try_wrlock(o->l);
    urt_task *r = NULL;
    if (urt_spawn(NULL, &r, enter_and_leave, &e[1]) != 0)
        return (void *)12;
    /* held back although only readers are inside */
    for (;;) {
        pthread_mutex_lock(&o->log_lock);
        bool got_in = log_pos(o, 2) >= 0;
        pthread_mutex_unlock(&o->log_lock);
        if (got_in)
            return (void *)14;   /* the new reader overtook the waiting writer */
        if (task_waits_on(o->rt, r, "rwlock-read"))
            break;
        urt_sleep(MS);
    }
    urt_rwlock_unlock(o->l);
    if (urt_join(w, NULL) != 0 || urt_join(r, NULL) != 0 || e[0].res != 0 || e[1].res != 0)
        return (void *)13;
    return NULL;
}

Test(rwlock, a_waiting_writer_stops_new_readers_and_goes_first, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        preference p;
        memset(&p, 0, sizeof(p));
        p.o.rt = rt;
        pthread_mutex_init(&p.o.log_lock, NULL);
        cr_assert_eq(urt_rwlock_create(&p.o.l), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, writer_preference, &p, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(p.try_rd, -EBUSY, "a new reader got in past a waiting writer (%d)", p.try_rd);
        cr_assert_eq(p.try_wr, -EBUSY);
        cr_assert_eq(p.o.n, 4);
        int wout = log_pos(&p.o, -1), rin = log_pos(&p.o, 2);
        cr_assert(log_pos(&p.o, 1) == 0 && wout == 1 && rin == 2, "%u workers: the reader overlapped or overtook the writer", w);
        pthread_mutex_destroy(&p.o.log_lock);
        urt_rwlock_destroy(p.o.l);
        urt_runtime_destroy(rt);
    }
}

#define FIFO_N 7

static void *fifo_order(void *arg)
{
    order *o = arg;
    /* under our write hold: W1 W2 R3 R4 W5 R6 W7 queue in this order */
    entrant e[FIFO_N] = {
        {.id = 1, .writer = true}, {.id = 2, .writer = true},  {.id = 3, .pair = 2},
        {.id = 4, .pair = 2},      {.id = 5, .writer = true}, {.id = 6},
        {.id = 7, .writer = true},
    };
    if (urt_rwlock_wrlock(o->l) != 0)
        return (void *)10;
    return queue_all(o, e, FIFO_N);
}

Test(rwlock, writers_go_in_fifo_order_and_the_readers_between_two_writers_go_in_together, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        order o;
        memset(&o, 0, sizeof(o));
        o.rt = rt;
        pthread_mutex_init(&o.log_lock, NULL);
        cr_assert_eq(urt_rwlock_create(&o.l), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, fifo_order, &o, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(o.n, 2 * FIFO_N);
        /* W1 alone, W2 alone, R3 + R4 together, W5 alone, R6, W7 alone */
        int in[FIFO_N + 1], out[FIFO_N + 1];
        for (int id = 1; id <= FIFO_N; id++) {
            in[id] = log_pos(&o, id);
            out[id] = log_pos(&o, -id);
            cr_assert(in[id] >= 0 && out[id] > in[id]);
        }
        cr_assert(out[1] < in[2], "%u workers: W2 overlapped W1", w);
        cr_assert(out[2] < in[3] && out[2] < in[4], "%u workers: a reader overlapped W2", w);
        cr_assert(in[3] < out[4] && in[4] < out[3], "%u workers: R3 and R4 were not inside together", w);
        cr_assert_eq(atomic_load(&o.readers_met), 2);
        cr_assert(out[3] < in[5] && out[4] < in[5], "%u workers: W5 overlapped a reader", w);
        cr_assert(out[5] < in[6], "%u workers: R6 (queued behind W5) overtook it", w);
        cr_assert(out[6] < in[7], "%u workers: W7 overlapped R6", w);
        pthread_mutex_destroy(&o.log_lock);
        free_and_destroy(o.l);
        urt_runtime_destroy(rt);
    }
}

/* ---- a queued writer that gives up lets the readers behind it in -------------------------------------- */

enum { GIVE_UP_CANCEL, GIVE_UP_OP_TIMEOUT, GIVE_UP_DEADLINE };

typedef struct giving_up {
    urt_runtime *rt;
    urt_rwlock *l;
    int how;
    uint64_t bound;                /* the writer's op timeout / deadline from now */
    int wres;
    atomic_int rres[2];
    bool readers_done_while_held;
} giving_up;

static void *bounded_writer(void *arg)
{
    giving_up *g = arg;
    uint64_t old = 0;
    if (g->how == GIVE_UP_OP_TIMEOUT)
        old = urt_op_timeout(g->bound);
    else if (g->how == GIVE_UP_DEADLINE)
        old = urt_deadline(urt_now() + g->bound);
    g->wres = urt_rwlock_wrlock(g->l);
    if (g->how == GIVE_UP_OP_TIMEOUT)
        urt_op_timeout(old);
    else if (g->how == GIVE_UP_DEADLINE)
        urt_deadline(old);
    if (g->wres == 0)
        urt_rwlock_unlock(g->l);
    return NULL;
}

typedef struct gu_reader {
    giving_up *g;
    int i;
} gu_reader;

static void *queued_reader(void *arg)
{
    gu_reader *r = arg;
    int res = urt_rwlock_rdlock(r->g->l);
    atomic_store(&r->g->rres[r->i], res);
    if (res == 0)
        urt_rwlock_unlock(r->g->l);
    return NULL;
}

static void *give_up_case(void *arg)
{
    giving_up *g = arg;
    if (urt_rwlock_rdlock(g->l) != 0)
        return (void *)10;
    urt_task *w = NULL, *r[2] = {NULL, NULL};
    gu_reader ra[2] = {{g, 0}, {g, 1}};
    if (urt_spawn(NULL, &w, bounded_writer, g) != 0)
        return (void *)11;
    await_waiting(g->rt, w, "rwlock-write");
    for (int i = 0; i < 2; i++) {
        if (urt_spawn(NULL, &r[i], queued_reader, &ra[i]) != 0)
            return (void *)12;
    }
    /* queued behind the writer, unless the writer's bound passed first (a
     * slow machine): then they got in at once, and the caller tries again
     * with a longer bound */
    for (int i = 0; i < 2; i++)
        while (atomic_load(&g->rres[i]) == 1 && !task_waits_on(g->rt, r[i], "rwlock-read"))
            urt_sleep(MS);
    bool too_slow = atomic_load(&g->rres[0]) != 1 || atomic_load(&g->rres[1]) != 1 ||
                    !task_waits_on(g->rt, w, "rwlock-write");
    if (g->how == GIVE_UP_CANCEL)
        urt_cancel(w);
    int jw = urt_join(w, NULL);
    if (jw != (g->how == GIVE_UP_CANCEL ? -ECANCELED : 0))
        return (void *)13;
    /* we still hold our read lock: the readers get in beside it */
    for (int i = 0; i < 2; i++)
        if (urt_join(r[i], NULL) != 0)
            return (void *)14;
    g->readers_done_while_held = true;
    if (urt_rwlock_unlock(g->l) != 0)
        return (void *)15;
    return too_slow && g->how != GIVE_UP_CANCEL ? (void *)99 : NULL;
}

static void check_give_up(int how, int expect)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        giving_up g;
        void *err = (void *)99;
        for (uint64_t bound = 20 * MS; err == (void *)99 && bound < 10000 * MS; bound *= 4) {
            memset(&g, 0, sizeof(g));
            g.rt = rt;
            g.how = how;
            g.bound = bound;
            g.wres = 1;
            atomic_store(&g.rres[0], 1);
            atomic_store(&g.rres[1], 1);
            cr_assert_eq(urt_rwlock_create(&g.l), 0);
            cr_assert_eq(urt_runtime_block_on(rt, give_up_case, &g, &err), 0);
            if (err == (void *)99)
                urt_rwlock_destroy(g.l);
        }
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(g.wres, expect, "%u workers: the queued writer gave %d", w, g.wres);
        cr_assert(g.readers_done_while_held);
        cr_assert_eq(atomic_load(&g.rres[0]), 0);
        cr_assert_eq(atomic_load(&g.rres[1]), 0);
        free_and_destroy(g.l);
        urt_runtime_destroy(rt);
    }
}

Test(rwlock, a_cancelled_queued_writer_lets_the_readers_behind_it_in, .timeout = 60)
{
    check_give_up(GIVE_UP_CANCEL, -ECANCELED);
}

Test(rwlock, a_queued_writer_past_its_op_timeout_lets_the_readers_behind_it_in, .timeout = 60)
{
    check_give_up(GIVE_UP_OP_TIMEOUT, -ETIMEDOUT);
}

Test(rwlock, a_queued_writer_past_its_deadline_lets_the_readers_behind_it_in, .timeout = 60)
{
    check_give_up(GIVE_UP_DEADLINE, -ETIMEDOUT);
}

static void *cancelled_reader_case(void *arg)
{
    giving_up *g = arg;
    if (urt_rwlock_wrlock(g->l) != 0)
        return (void *)10;
    urt_task *r = NULL;
    gu_reader ra = {g, 0};
    if (urt_spawn(NULL, &r, queued_reader, &ra) != 0)
        return (void *)11;
    await_waiting(g->rt, r, "rwlock-read");
    urt_cancel(r);
    if (urt_join(r, NULL) != -ECANCELED)
        return (void *)12;
    if (urt_rwlock_unlock(g->l) != 0)
        return (void *)13;
    return NULL;
}

Test(rwlock, a_cancelled_queued_reader_takes_nothing, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        giving_up g;
        memset(&g, 0, sizeof(g));
        g.rt = rt;
        atomic_store(&g.rres[0], 1);
        cr_assert_eq(urt_rwlock_create(&g.l), 0);
        void *err = (void *)1;
        cr_assert_eq(urt_runtime_block_on(rt, cancelled_reader_case, &g, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(atomic_load(&g.rres[0]), -ECANCELED);
        free_and_destroy(g.l);
        urt_runtime_destroy(rt);
    }
}

/* ---- a plain thread blocks; bad input; unlock of a free lock ------------------------------------------- */

typedef struct blocker {
    urt_rwlock *l;
    atomic_int got;
    int res, bip_res;
} blocker;

static void *thread_writer(void *arg)
{
    blocker *b = arg;
    b->res = urt_rwlock_wrlock(b->l);
    atomic_store(&b->got, 1);
    if (b->res == 0)
        urt_rwlock_unlock(b->l);
    return NULL;
}

static void *writer_in_place(void *arg)
{
    blocker *b = arg;
    void *ret = NULL;
    b->bip_res = urt_block_in_place(thread_writer, &b[1], &ret);
    return NULL;
}

/* b[0]: a plain thread's writer, b[1]: a writer inside urt_block_in_place. */
static void *hold_read_then_release(void *arg)
{
    blocker *b = arg;
    if (urt_rwlock_rdlock(b->l) != 0)
        return (void *)1;
    pthread_t th;
    urt_task *t = NULL;
    if (pthread_create(&th, NULL, thread_writer, &b[0]) != 0)
        return (void *)2;
    if (urt_spawn(NULL, &t, writer_in_place, b) != 0)
        return (void *)4;
    urt_sleep(30 * MS);
    bool early = atomic_load(&b[0].got) || atomic_load(&b[1].got);
    urt_rwlock_unlock(b->l);
    pthread_join(th, NULL);   /* they get the lock one after the other now */
    if (urt_join(t, NULL) != 0)
        return (void *)5;
    return early ? (void *)3 : NULL;
}

Test(rwlock, writers_on_a_plain_thread_and_inside_block_in_place_block_while_a_task_reads, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        blocker b[2];
        memset(b, 0, sizeof(b));
        b[0].res = b[1].res = b[0].bip_res = 1;
        cr_assert_eq(urt_rwlock_create(&b[0].l), 0);
        b[1].l = b[0].l;
        void *err = (void *)9;
        cr_assert_eq(urt_runtime_block_on(rt, hold_read_then_release, b, &err), 0);
        cr_assert_null(err, "%u workers: step %d failed", w, (int)(intptr_t)err);
        cr_assert_eq(b[0].res, 0);
        cr_assert_eq(b[0].bip_res, 0);
        cr_assert_eq(b[1].res, 0);
        urt_rwlock_destroy(b[0].l);
        urt_runtime_destroy(rt);
    }
}

Test(rwlock, bad_input_is_einval_and_unlock_of_a_lock_nobody_holds_is_eperm, .timeout = 30)
{
    cr_assert_eq(urt_rwlock_create(NULL), -EINVAL);
    urt_rwlock_destroy(NULL);
    cr_assert_eq(urt_rwlock_rdlock(NULL), -EINVAL);
    cr_assert_eq(urt_rwlock_wrlock(NULL), -EINVAL);
    cr_assert_eq(urt_rwlock_try_rdlock(NULL), -EINVAL);
    cr_assert_eq(urt_rwlock_try_wrlock(NULL), -EINVAL);
    cr_assert_eq(urt_rwlock_unlock(NULL), -EINVAL);
    urt_rwlock *l = NULL;
    cr_assert_eq(urt_rwlock_create(&l), 0);
    cr_assert_eq(urt_rwlock_unlock(l), -EPERM);
    /* two readers (plain thread: no runtime needed where nothing waits) */
    cr_assert_eq(urt_rwlock_rdlock(l), 0);
    cr_assert_eq(urt_rwlock_try_rdlock(l), 0);
    cr_assert_eq(urt_rwlock_try_wrlock(l), -EBUSY);
    cr_assert_eq(urt_rwlock_unlock(l), 0);
    cr_assert_eq(urt_rwlock_try_wrlock(l), -EBUSY, "one reader is still inside");
    cr_assert_eq(urt_rwlock_unlock(l), 0);
    cr_assert_eq(urt_rwlock_unlock(l), -EPERM);
    /* a writer */
    cr_assert_eq(urt_rwlock_wrlock(l), 0);
    cr_assert_eq(urt_rwlock_try_rdlock(l), -EBUSY);
    cr_assert_eq(urt_rwlock_try_wrlock(l), -EBUSY);
    cr_assert_eq(urt_rwlock_unlock(l), 0);
    cr_assert_eq(urt_rwlock_unlock(l), -EPERM);
    cr_assert_eq(urt_rwlock_try_wrlock(l), 0);
    cr_assert_eq(urt_rwlock_unlock(l), 0);
    urt_rwlock_destroy(l);
}
