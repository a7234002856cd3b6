/*
 * log.c - the library's own messages on stderr, without ever blocking.
 *
 * A worker (or the watchdog, or a shutdown) that blocks in write(2) on a
 * stderr pipe nobody reads stops the runtime. So a message is formatted into
 * one line of at most LOG_LINE bytes and written with one non-blocking call:
 *   1. pwritev2(RWF_NOWAIT): a full pipe says EAGAIN at once;
 *   2. where the file type does not take RWF_NOWAIT (EOPNOTSUPP: regular
 *      files, some ttys), poll(POLLOUT, 0) first, then one write(2) (a line
 *      shorter than PIPE_BUF is written whole or not at all);
 * A line that cannot be written now is dropped and counted; the next line
 * that gets out says how many were lost. The file description's flags are
 * never changed (stderr is shared with the rest of the program).
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

#include "runtime/runtime.h"

#define LOG_LINE 512   /* < PIPE_BUF: a pipe takes it whole or not at all */

static _Atomic uint64_t dropped;

static bool write_nowait(int fd, const char *b, size_t n)
{
    struct iovec v = {.iov_base = (void *)b, .iov_len = n};
    ssize_t r = pwritev2(fd, &v, 1, -1, RWF_NOWAIT);
    if (r < 0 && (errno == EOPNOTSUPP || errno == EINVAL)) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        if (poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
            return false;
        r = write(fd, b, n);
    }
    return r == (ssize_t)n;
}

void urt__log(const char *fmt, ...)
{
    char line[LOG_LINE];
    int saved = errno;
    int n = 0;
    uint64_t lost = at_xchg_acqrel(&dropped, 0);
    if (lost)
        n = snprintf(line, sizeof(line), "urt: (%llu earlier message(s) dropped: stderr was full)\n",
                     (unsigned long long)lost);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    size_t len = (size_t)n + (size_t)m;
    if (len >= sizeof(line) - 1) {
        len = sizeof(line) - 2;   /* cut: keep the newline */
        line[len++] = '\n';
    }
    if (!write_nowait(STDERR_FILENO, line, len))
        at_fadd_relaxed(&dropped, lost + 1);
    errno = saved;
}
