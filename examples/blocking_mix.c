/*
 * blocking_mix.c - file work on the blocking pool, network I/O in tasks.
 *
 * A sender task streams 256 KiB through one end of a socketpair. The root
 * task receives from the other end and hands each chunk to a blocking task
 * (urt_spawn_blocking) that appends it to a temporary file with plain
 * write(2) calls, while the root task goes on receiving the next chunk.
 * Joining a blocking task suspends the joiner only; the workers never wait
 * for the disk. At the end a last blocking task reads the file back and
 * checksums it.
 *
 * A blocking task runs on a plain pool thread, not as a fiber: it uses
 * ordinary syscalls (urt I/O calls there return -EPERM).
 *
 *     ./blocking_mix       exits 0 when the file matches what was sent
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <urt.h>

#define TOTAL (256 * 1024)
#define CHUNK 4096

struct job {   /* one append; lives in the root task's frame until joined */
    int fd;
    size_t len;
    char data[CHUNK];
};

static uint64_t checksum(uint64_t h, const unsigned char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)   /* FNV-1a */
        h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void *sender(void *arg)   /* a task: network I/O through the ring */
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[CHUNK];
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t sent = 0; sent < TOTAL; sent += sizeof(buf)) {
        for (size_t i = 0; i < sizeof(buf); i++)
            buf[i] = (unsigned char)((sent + i) * 2654435761u >> 13);
        h = checksum(h, buf, sizeof(buf));
        if (urt_send_all(fd, buf, sizeof(buf), 0) < 0)
            break;
    }
    urt_shutdown(fd, SHUT_WR);   /* the receiver sees the end of the stream */
    return (void *)(uintptr_t)h;
}

static void *append(void *arg)   /* a blocking task: plain syscalls */
{
    struct job *j = arg;
    for (size_t off = 0; off < j->len;) {
        ssize_t n = write(j->fd, j->data + off, j->len - off);
        if (n < 0)
            return (void *)(intptr_t)-errno;
        off += (size_t)n;
    }
    return NULL;
}

static void *read_back(void *arg)   /* a blocking task: checksum the whole file */
{
    int fd = (int)(intptr_t)arg;
    unsigned char buf[CHUNK];
    uint64_t h = 0xcbf29ce484222325ull;
    ssize_t n;
    for (off_t off = 0; (n = pread(fd, buf, sizeof(buf), off)) > 0; off += n)
        h = checksum(h, buf, (size_t)n);
    return (void *)(uintptr_t)h;
}

static void *root(void *arg)
{
    int file = (int)(intptr_t)arg, sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return (void *)"socketpair failed";
    urt_task *snd, *pending = NULL;
    if (urt_spawn(NULL, &snd, sender, (void *)(intptr_t)sv[0]) < 0)
        return (void *)"urt_spawn failed";

    struct job jobs[2];   /* double buffer: fill one while the other is written */
    const char *failure = NULL;
    size_t received = 0;
    for (int k = 0;; k ^= 1) {
        struct job *j = &jobs[k];
        j->fd = file;
        j->len = 0;
        ssize_t n;
        while (j->len < CHUNK && (n = urt_recv(sv[1], j->data + j->len, CHUNK - j->len, 0)) > 0)
            j->len += (size_t)n;
        void *r = NULL;
        if (pending && (urt_join(pending, &r) < 0 || r))   /* the previous append */
            failure = "append failed";
        pending = NULL;
        if (failure || j->len == 0)
            break;   /* 0: the sender shut its end down */
        received += j->len;
        if (urt_spawn_blocking(NULL, &pending, append, j) < 0) {
            failure = "urt_spawn_blocking failed";
            break;
        }
    }
    void *sent_sum = NULL, *file_sum = NULL;
    urt_join(snd, &sent_sum);
    urt_close(sv[0]);
    urt_close(sv[1]);
    if (failure)
        return (void *)failure;

    urt_task *rb;
    if (urt_spawn_blocking(NULL, &rb, read_back, (void *)(intptr_t)file) < 0 ||
        urt_join(rb, &file_sum) < 0)
        return (void *)"read back failed";
    printf("blocking_mix: %zu bytes socketpair -> task -> blocking pool -> file, checksum %016jx %s\n",
           received, (uintmax_t)(uintptr_t)file_sum, file_sum == sent_sum ? "matches" : "DIFFERS");
    if (received != TOTAL || file_sum != sent_sum)
        return (void *)"the file differs from what was sent";
    return NULL;
}

int main(void)
{
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/urt-blocking-mix-XXXXXX", dir && *dir ? dir : "/tmp");
    int file = mkstemp(path);
    if (file < 0) {
        perror("blocking_mix: mkstemp");
        return 1;
    }
    unlink(path);   /* the file lives as long as the descriptor */

    urt_runtime *rt;
    int err = urt_runtime_create(&rt, NULL);
    if (err < 0) {
        fprintf(stderr, "blocking_mix: urt_runtime_create: %s\n", strerror(-err));
        return err == -ENOSYS || err == -EPERM ? 77 : 1;   /* 77: no io_uring here */
    }
    void *failure = NULL;
    err = urt_runtime_block_on(rt, root, (void *)(intptr_t)file, &failure);
    urt_runtime_destroy(rt);
    close(file);
    if (err < 0 || failure) {
        fprintf(stderr, "blocking_mix: %s\n", err < 0 ? strerror(-err) : (const char *)failure);
        return 1;
    }
    return 0;
}
