/*
 * test_splice.c - urt_splice and urt_sendfile: a 50 MB file sent over a
 * socketpair and over TCP loopback arrives byte for byte; an offset leaves
 * the file position alone, -1 uses and advances it; several sendfiles at
 * once on one worker each get their own pipe; a peer that closes mid-way
 * gives the bytes sent, then -EPIPE / -ECONNRESET; EOF, bad fds and flags;
 * time bounds and cancel of a splice that waits; lengths past 4 GiB are
 * clamped; the fallback (no SPLICE op) and block_in_place give the same.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#include "tests/support/sock_test.h"

#define NO_SPLICE "30"   /* IORING_OP_SPLICE */
#define BIG ((size_t)50 * 1000 * 1000 / SAN_DIV)

/* ---- the receiving side -------------------------------------------------------------------- */

typedef struct sink {
    int fd;
    size_t want, got;
    size_t first_bad;        /* SIZE_MAX: every byte right */
    size_t base;             /* file offset of the first byte expected */
    ssize_t err;
    bool eof;
    size_t close_after;      /* > 0: close after this many bytes (a peer that goes away) */
} sink;

static void *sink_run(void *arg)
{
    sink *k = arg;
    enum { BUF = 65536 };
    uint8_t *b = malloc(BUF);   /* its own: several sinks may wait on one worker */
    if (!b) {
        k->err = -ENOMEM;
        return NULL;
    }
    k->first_bad = SIZE_MAX;
    while (!k->want || k->got < k->want) {
        ssize_t n = urt_recv(k->fd, b, BUF, 0);
        if (n == 0) {
            k->eof = true;
            break;
        }
        if (n < 0) {
            k->err = n;
            break;
        }
        for (ssize_t i = 0; i < n; i++)
            if (b[i] != file_byte(k->base + k->got + (size_t)i) && k->first_bad == SIZE_MAX)
                k->first_bad = k->got + (size_t)i;
        k->got += (size_t)n;
        if (k->close_after && k->got >= k->close_after) {
            urt_close(k->fd);
            k->fd = -1;
            break;
        }
    }
    free(b);
    return NULL;
}

/* ---- 50 MB, byte for byte --------------------------------------------------------------------- */

typedef struct send_run {
    int out, file;
    int64_t off;
    size_t len;
    ssize_t res;
    unsigned calls;
} send_run;

/* urt_sendfile until len is sent (a call may send less), or an error */
static void *send_all_of_it(void *arg)
{
    send_run *s = arg;
    size_t done = 0;
    while (done < s->len) {
        ssize_t n = urt_sendfile(s->out, s->file, s->off < 0 ? -1 : s->off + (int64_t)done, s->len - done);
        s->calls++;
        if (n <= 0) {
            s->res = n;
            return NULL;
        }
        done += (size_t)n;
    }
    s->res = (ssize_t)done;
    return NULL;
}

static void send_big(urt_runtime *rt, int fds[2], int file, const char *what)
{
    sink k = {.fd = fds[1], .want = BIG};
    send_run s = {.out = fds[0], .file = file, .off = 0, .len = BIG};
    urt_task *r = NULL, *t = NULL;
    cr_assert_eq(urt_spawn(rt, &r, sink_run, &k), 0);
    cr_assert_eq(urt_spawn(rt, &t, send_all_of_it, &s), 0);
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_eq(urt_join(r, NULL), 0);
    cr_assert_eq(s.res, (ssize_t)BIG, "%s: urt_sendfile gave %zd after %u calls", what, s.res, s.calls);
    cr_assert_eq(k.err, 0, "%s: recv gave %zd", what, k.err);
    cr_assert_eq(k.got, BIG, "%s: received %zu of %zu", what, k.got, BIG);
    cr_assert_eq(k.first_bad, SIZE_MAX, "%s: byte %zu differs", what, k.first_bad);
    cr_assert_eq(lseek(file, 0, SEEK_CUR), 0, "%s: an offset was given: the position must not move", what);
}

static void check_big(unsigned w, const char *no_ops)
{
    int file = pattern_file(BIG);
    urt_runtime *rt = rt_new_no_ops(w, no_ops);
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    send_big(rt, fds, file, "socketpair");
    close(fds[0]);
    close(fds[1]);
    tcp_pair(fds);
    send_big(rt, fds, file, "tcp");
    close(fds[0]);
    close(fds[1]);
    urt_runtime_destroy(rt);
    close(file);
}

Test(splice, sendfile_moves_50_mb_byte_for_byte_over_a_socketpair_and_tcp, .timeout = 120)
{
    FOR_EACH_WORKER_COUNT(w)
        check_big(w, "");
}

Test(splice, sendfile_fallback_moves_50_mb_byte_for_byte, .timeout = 120)
{
    check_big(2, NO_SPLICE);
}

/* ---- offsets ------------------------------------------------------------------------------------ */

typedef struct off_run {
    int fds[2], file;
    ssize_t at, cur, cur2;
    off_t pos_after_at, pos_after_cur, pos_after_cur2;
    ssize_t eof, eof_cur;
    char got_at[100], got_cur[50], got_cur2[30];
} off_run;

static void *offsets(void *arg)
{
    off_run *o = arg;
    lseek(o->file, 7, SEEK_SET);
    o->at = urt_sendfile(o->fds[0], o->file, 1000, 100);
    o->pos_after_at = lseek(o->file, 0, SEEK_CUR);
    if (urt_recv(o->fds[1], o->got_at, sizeof(o->got_at), MSG_WAITALL) != 100)
        return (void *)1;
    o->cur = urt_sendfile(o->fds[0], o->file, -1, 50);
    o->pos_after_cur = lseek(o->file, 0, SEEK_CUR);
    if (urt_recv(o->fds[1], o->got_cur, sizeof(o->got_cur), MSG_WAITALL) != 50)
        return (void *)2;
    o->cur2 = urt_sendfile(o->fds[0], o->file, -1, 30);
    o->pos_after_cur2 = lseek(o->file, 0, SEEK_CUR);
    if (urt_recv(o->fds[1], o->got_cur2, sizeof(o->got_cur2), MSG_WAITALL) != 30)
        return (void *)3;
    /* end of file: 0 */
    o->eof = urt_sendfile(o->fds[0], o->file, 4096, 10);
    lseek(o->file, 0, SEEK_END);
    o->eof_cur = urt_sendfile(o->fds[0], o->file, -1, 10);
    return NULL;
}

static void check_offsets(urt_runtime *rt)
{
    off_run o;
    memset(&o, 0, sizeof(o));
    o.file = pattern_file(4096);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, o.fds), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, offsets, &o, &ret), 0);
    cr_assert_null(ret, "a receive came up short (%d)", (int)(intptr_t)ret);
    cr_assert_eq(o.at, 100);
    cr_assert_eq(o.pos_after_at, 7, "sendfile at an offset moved the position to %lld", (long long)o.pos_after_at);
    for (int i = 0; i < 100; i++)
        cr_assert_eq((uint8_t)o.got_at[i], file_byte(1000 + (size_t)i));
    cr_assert_eq(o.cur, 50);
    cr_assert_eq(o.pos_after_cur, 57, "sendfile(-1) left the position at %lld", (long long)o.pos_after_cur);
    for (int i = 0; i < 50; i++)
        cr_assert_eq((uint8_t)o.got_cur[i], file_byte(7 + (size_t)i));
    cr_assert_eq(o.cur2, 30);
    cr_assert_eq(o.pos_after_cur2, 87);
    for (int i = 0; i < 30; i++)
        cr_assert_eq((uint8_t)o.got_cur2[i], file_byte(57 + (size_t)i));
    cr_assert_eq(o.eof, 0, "sendfile at the end of the file gave %zd", o.eof);
    cr_assert_eq(o.eof_cur, 0);
    close(o.fds[0]);
    close(o.fds[1]);
    close(o.file);
}

Test(splice, sendfile_offset_leaves_the_position_and_minus_one_advances_it, .timeout = 30)
{
    on_each_runtime(check_offsets, 1, NO_SPLICE, NULL);
}

/* ---- several at once on one worker ------------------------------------------------------------- */

#define MANY 3
#define MANY_BYTES ((size_t)(6u << 20) / SAN_DIV)

Test(splice, concurrent_sendfiles_on_one_worker_each_arrive_whole, .timeout = 60)
{
    int file = pattern_file(MANY_BYTES);
    urt_runtime *rt = rt_new(1);
    sink k[MANY];
    send_run s[MANY];
    urt_task *rt_[MANY], *st[MANY];
    int fds[MANY][2];
    for (int i = 0; i < MANY; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds[i]), 0);
        k[i] = (sink){.fd = fds[i][1], .want = MANY_BYTES};
        s[i] = (send_run){.out = fds[i][0], .file = file, .off = 0, .len = MANY_BYTES};
        cr_assert_eq(urt_spawn(rt, &rt_[i], sink_run, &k[i]), 0);
        cr_assert_eq(urt_spawn(rt, &st[i], send_all_of_it, &s[i]), 0);
    }
    for (int i = 0; i < MANY; i++) {
        cr_assert_eq(urt_join(st[i], NULL), 0);
        cr_assert_eq(urt_join(rt_[i], NULL), 0);
        cr_assert_eq(s[i].res, (ssize_t)MANY_BYTES, "sender %d gave %zd", i, s[i].res);
        cr_assert_eq(k[i].got, MANY_BYTES);
        cr_assert_eq(k[i].first_bad, SIZE_MAX, "stream %d: byte %zu differs (pipes shared?)", i, k[i].first_bad);
        close(fds[i][0]);
        close(fds[i][1]);
    }
    urt_runtime_destroy(rt);
    close(file);
}

/* ---- a peer that closes mid-way --------------------------------------------------------------- */

typedef struct gone_run {
    int out, file;
    ssize_t first, second;     /* the last call that sent something, and the one after it */
    size_t total;
    off_t pos;
} gone_run;

/* sendfile from the file position until a call fails (the fallback sends
 * what the socket has room for per call; the ring path goes on until the
 * error, then says what it sent before it) */
static void *send_to_leaver(void *arg)
{
    gone_run *g = arg;
    for (;;) {
        ssize_t n = urt_sendfile(g->out, g->file, -1, BIG - g->total);
        if (n <= 0) {
            g->second = n;
            break;
        }
        g->first = n;
        g->total += (size_t)n;
        g->pos = lseek(g->file, 0, SEEK_CUR);
    }
    return NULL;
}

static void check_peer_gone_on(urt_runtime *rt, bool tcp, const char *what)
{
    int file = pattern_file(BIG);
    int fds[2];
    stream_pair(fds, tcp);
    sink k = {.fd = fds[1], .close_after = 1 << 20};
    gone_run g = {.out = fds[0], .file = file};
    urt_task *r = NULL, *t = NULL;
    cr_assert_eq(urt_spawn(rt, &r, sink_run, &k), 0);
    cr_assert_eq(urt_spawn(rt, &t, send_to_leaver, &g), 0);
    cr_assert_eq(urt_join(t, NULL), 0);
    cr_assert_eq(urt_join(r, NULL), 0);
    cr_assert_geq(k.got, (size_t)1 << 20);
    cr_assert_eq(k.first_bad, SIZE_MAX);
    /* the last call that succeeded said what it sent before the peer left; the one after it fails */
    cr_assert_gt(g.first, 0, "%s: the last sendfile that sent gave %zd", what, g.first);
    cr_assert_geq(g.total, k.got, "%s: sent %zu, but %zu arrived", what, g.total, k.got);
    cr_assert_lt(g.total, BIG, "%s: sent all %zu into a closed peer", what, g.total);
    cr_assert_eq(g.pos, (off_t)g.total, "%s: the position (%lld) must advance by the bytes sent (%zu)", what,
                 (long long)g.pos, g.total);
    cr_assert(g.second == -EPIPE || g.second == -ECONNRESET, "%s: the next sendfile gave %zd", what, g.second);
    close(fds[0]);
    if (k.fd >= 0)
        close(k.fd);
    close(file);
}

static void check_peer_gone(urt_runtime *rt)
{
    check_peer_gone_on(rt, false, "socketpair");
    check_peer_gone_on(rt, true, "tcp");
}

Test(splice, sendfile_to_a_peer_that_closes_gives_the_bytes_sent_then_epipe, .timeout = 120)
{
    on_each_runtime(check_peer_gone, 2, NO_SPLICE, NULL);
}

/* ---- urt_splice: pipes, EOF, errors ------------------------------------------------------------ */

typedef struct splice_run {
    int file, p[2], sock[2];
    ssize_t in, out, eof, both_files, badf, badflags, badoff, notopen, big;
    off_t pos;
    char got[64];
} splice_run;

static void *splices(void *arg)
{
    splice_run *s = arg;
    s->in = urt_splice(s->file, 100, s->p[1], -1, 64, SPLICE_F_MOVE);   /* file -> pipe at 100 */
    s->pos = lseek(s->file, 0, SEEK_CUR);
    s->out = urt_splice(s->p[0], -1, s->sock[0], -1, 64, SPLICE_F_MOVE);  /* pipe -> socket */
    if (urt_recv(s->sock[1], s->got, sizeof(s->got), MSG_WAITALL) != 64)
        return (void *)1;
    s->eof = urt_splice(s->file, 4096, s->p[1], -1, 64, 0);
    s->both_files = urt_splice(s->file, 0, s->file, 200, 10, 0);
    s->badf = urt_splice(-1, -1, s->p[1], -1, 1, 0);
    s->badflags = urt_splice(s->file, 0, s->p[1], -1, 1, 0x100);
    s->badoff = urt_splice(s->file, -2, s->p[1], -1, 1, 0);
    int d = dup(s->file);
    close(d);
    s->notopen = urt_splice(d, 0, s->p[1], -1, 1, 0);
    s->big = urt_splice(s->file, 0, s->p[1], -1, (size_t)1 << 32, 0);   /* 4 GiB: clamped, not 0 */
    return NULL;
}

static void check_splices(urt_runtime *rt)
{
    splice_run s;
    memset(&s, 0, sizeof(s));
    s.file = pattern_file(4096);
    cr_assert_eq(pipe2(s.p, O_CLOEXEC), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sock), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, splices, &s, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(s.in, 64, "file -> pipe gave %zd", s.in);
    cr_assert_eq(s.pos, 0, "splice at an offset moved the position");
    cr_assert_eq(s.out, 64, "pipe -> socket gave %zd", s.out);
    for (int i = 0; i < 64; i++)
        cr_assert_eq((uint8_t)s.got[i], file_byte(100 + (size_t)i));
    cr_assert_eq(s.eof, 0, "splice at the end of the file gave %zd", s.eof);
    cr_assert_eq(s.both_files, -EINVAL, "splice between two files gave %zd", s.both_files);
    cr_assert_eq(s.badf, -EBADF);
    cr_assert_eq(s.badflags, -EINVAL);
    cr_assert_eq(s.badoff, -EINVAL);
    cr_assert_eq(s.notopen, -EBADF, "splice from a closed fd gave %zd", s.notopen);
    cr_assert_gt(s.big, 0, "splice(1 << 32) gave %zd", s.big);
    close(s.file);
    close(s.p[0]);
    close(s.p[1]);
    close(s.sock[0]);
    close(s.sock[1]);
}

Test(splice, splice_moves_file_pipe_socket_and_reports_eof_and_errors, .timeout = 30)
{
    on_each_runtime(check_splices, 1, NO_SPLICE, NULL);
    cr_assert_eq(urt_splice(0, -1, 1, -1, 1, 0), -EPERM, "outside a task");
    cr_assert_eq(urt_sendfile(1, 0, 0, 1), -EPERM, "outside a task");
}

/* ---- time bounds and cancel of a splice that waits --------------------------------------------- */

typedef struct wait_run {
    int p[2], sock[2];
    ssize_t timed, deadlined, cancelled, sf_timed;
    uint64_t took;
} wait_run;

static void *splice_bounded(void *arg)
{
    wait_run *s = arg;
    uint64_t old = urt_op_timeout(20 * MS);
    uint64_t t0 = urt_now();
    s->timed = urt_splice(s->p[0], -1, s->sock[0], -1, 10, 0);   /* the pipe is empty: it waits */
    s->took = urt_now() - t0;
    urt_op_timeout(old);
    uint64_t od = urt_deadline(urt_now() + 20 * MS);
    s->deadlined = urt_splice(s->sock[1], -1, s->p[1], -1, 10, 0);   /* nothing to read on the socket */
    urt_deadline(od);
    return NULL;
}

static void *splice_until_cancelled(void *arg)
{
    wait_run *s = arg;
    s->cancelled = urt_splice(s->p[0], -1, s->sock[0], -1, 10, 0);
    return NULL;
}

Test(splice, op_timeout_deadline_and_cancel_end_a_waiting_splice, .timeout = 60)
{
    FOR_EACH_WORKER_COUNT(w) {
        urt_runtime *rt = rt_new(w);
        wait_run s = {.timed = 1, .deadlined = 1, .cancelled = 1};
        cr_assert_eq(pipe2(s.p, O_CLOEXEC), 0);
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s.sock), 0);
        cr_assert_eq(urt_runtime_block_on(rt, splice_bounded, &s, NULL), 0);
        cr_assert_eq(s.timed, -ETIMEDOUT, "%u workers: splice under a 20 ms op timeout gave %zd", w, s.timed);
        cr_assert_geq(s.took, 20 * MS);
        cr_assert_lt(s.took, 10 * SEC);
        cr_assert_eq(s.deadlined, -ETIMEDOUT, "splice past its deadline gave %zd", s.deadlined);
        cancel_while_waiting(rt, splice_until_cancelled, &s, "splice");
        cr_assert_eq(s.cancelled, -ECANCELED, "a cancelled splice gave %zd", s.cancelled);
        /* the pipe is still usable */
        cr_assert_eq(write(s.p[1], "k", 1), 1);
        char c = 0;
        cr_assert_eq(read(s.p[0], &c, 1), 1);
        cr_assert_eq(c, 'k');
        close(s.p[0]);
        close(s.p[1]);
        close(s.sock[0]);
        close(s.sock[1]);
        urt_runtime_destroy(rt);
    }
}

/* ---- lengths past 4 GiB, and block_in_place ----------------------------------------------------- */

typedef struct bip_run {
    int fds[2], file;
    ssize_t big, plain;
    off_t pos;
} bip_run;

static void *plain_sendfile(void *arg)
{
    bip_run *b = arg;
    b->plain = urt_sendfile(b->fds[0], b->file, -1, 1000);
    b->pos = lseek(b->file, 0, SEEK_CUR);
    return NULL;
}

static void *big_and_plain(void *arg)
{
    bip_run *b = arg;
    b->big = urt_sendfile(b->fds[0], b->file, 0, SIZE_MAX);   /* the whole (small) file */
    return (void *)(intptr_t)urt_block_in_place(plain_sendfile, b, NULL);
}

Test(splice, sendfile_clamps_huge_lengths_and_is_plain_inside_block_in_place, .timeout = 30)
{
    urt_runtime *rt = rt_new(2);
    bip_run b = {.big = 1, .plain = 1};
    b.file = pattern_file(3000);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b.fds), 0);
    void *ret = (void *)9;
    cr_assert_eq(urt_runtime_block_on(rt, big_and_plain, &b, &ret), 0);
    cr_assert_null(ret);
    cr_assert_eq(b.big, 3000, "sendfile(SIZE_MAX) gave %zd", b.big);
    cr_assert_eq(b.plain, 1000);
    cr_assert_eq(b.pos, 1000);
    char buf[4000];
    size_t got = 0;
    while (got < 4000) {
        ssize_t n = recv(b.fds[1], buf + got, sizeof(buf) - got, 0);
        cr_assert_gt(n, 0);
        got += (size_t)n;
    }
    for (size_t i = 0; i < 3000; i++)
        cr_assert_eq((uint8_t)buf[i], file_byte(i));
    for (size_t i = 0; i < 1000; i++)
        cr_assert_eq((uint8_t)buf[3000 + i], file_byte(i));
    close(b.fds[0]);
    close(b.fds[1]);
    close(b.file);
    urt_runtime_destroy(rt);
}

/* ---- a peer that stops reading: bounds and cancel end sendfile -------------------------------------- */

typedef struct stall_run {
    int out, file;
    ssize_t first, second, cancelled;
} stall_run;

static void *send_into_stall(void *arg)
{
    stall_run *s = arg;
    uint64_t old = urt_op_timeout(100 * MS);
    s->first = urt_sendfile(s->out, s->file, 0, BIG);           /* fills the socket, then times out */
    s->second = urt_sendfile(s->out, s->file, s->first > 0 ? s->first : 0, BIG);   /* no room at all */
    urt_op_timeout(old);
    return NULL;
}

static void *sendfile_until_cancelled(void *arg)
{
    stall_run *s = arg;
    s->cancelled = urt_sendfile(s->out, s->file, 0, BIG);
    return NULL;
}

static void check_stall_on(urt_runtime *rt, bool tcp)
{
    int file = pattern_file(BIG);
    int fds[2];
    stream_pair(fds, tcp);
    stall_run s = {.out = fds[0], .file = file, .first = 1, .second = 1, .cancelled = 1};
    cr_assert_eq(urt_runtime_block_on(rt, send_into_stall, &s, NULL), 0);
    cr_assert_gt(s.first, 0, "sendfile into a stalled peer gave %zd", s.first);
    cr_assert_lt(s.first, (ssize_t)BIG);
    cr_assert_eq(s.second, -ETIMEDOUT, "sendfile with no room gave %zd", s.second);
    cancel_while_waiting(rt, sendfile_until_cancelled, &s, "sendfile");
    cr_assert_eq(s.cancelled, -ECANCELED, "a cancelled sendfile gave %zd", s.cancelled);
    /* what the first call said it sent is what arrives, in order */
    shutdown(fds[0], SHUT_WR);
    uint8_t *buf = malloc(65536);
    size_t got = 0, bad = SIZE_MAX;
    for (;;) {
        ssize_t n = recv(fds[1], buf, 65536, 0);
        cr_assert_geq(n, 0);
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] != file_byte(got + (size_t)i) && bad == SIZE_MAX)
                bad = got + (size_t)i;
        got += (size_t)n;
    }
    free(buf);
    cr_assert_eq(got, (size_t)s.first, "sendfile said %zd, %zu arrived", s.first, got);
    cr_assert_eq(bad, SIZE_MAX, "byte %zu differs", bad);
    close(fds[0]);
    close(fds[1]);
    close(file);
}

static void check_stall(urt_runtime *rt)
{
    check_stall_on(rt, false);
    check_stall_on(rt, true);
}

Test(splice, op_timeout_and_cancel_end_a_sendfile_to_a_peer_that_stopped_reading, .timeout = 60)
{
    on_each_runtime(check_stall, 0, NULL, NULL);
}
