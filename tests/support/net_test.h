/*
 * net_test.h - blocking socket calls for the network tests' plain-thread
 * clients, retried on EINTR (a test's own thread may be interrupted; the
 * behaviour under test is the server's, not the client's), and the clock
 * their bounded waits use.
 */
#ifndef URT_TESTS_NET_TEST_H
#define URT_TESTS_NET_TEST_H

#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* CLOCK_MONOTONIC in milliseconds. */
__attribute__((unused)) static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Sleep ms milliseconds, through interruptions. */
__attribute__((unused)) static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

__attribute__((unused)) static ssize_t recv_nointr(int fd, void *buf, size_t len, int flags)
{
    for (int i = 0;; i++) {
        ssize_t r = recv(fd, buf, len, flags);
        if (r >= 0 || errno != EINTR || i == 100)
            return r;
    }
}

__attribute__((unused)) static ssize_t send_nointr(int fd, const void *buf, size_t len, int flags)
{
    for (int i = 0;; i++) {
        ssize_t r = send(fd, buf, len, flags);
        if (r >= 0 || errno != EINTR || i == 100)
            return r;
    }
}

/* connect(2) on a blocking socket with SO_SNDTIMEO set: an interrupted
 * connect goes on in the background (EINTR); wait until it is through. */
__attribute__((unused)) static int connect_nointr(int fd, const struct sockaddr *addr, socklen_t alen)
{
    int r = connect(fd, addr, alen);
    for (int i = 0; r != 0 && (errno == EINTR || errno == EALREADY) && i < 10000; i++) {
        if (errno == EALREADY)
            usleep(1000);
        r = connect(fd, addr, alen);
        if (r != 0 && errno == EISCONN)
            r = 0;
    }
    return r;
}

#endif
