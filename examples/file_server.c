/*
 * file_server.c - a small static file server: one request line per
 * connection, "GET /name\n"; the answer is "OK <size>\n" and the file's
 * bytes, sent with urt_sendfile (file -> socket, no copy through user
 * space), or "ERR <reason>\n". Files are opened with urt_openat relative to
 * the served directory (plain names only: no '/', no leading '.') and
 * sized with urt_statx.
 *   ./file_server DIR [port]     serve DIR on 127.0.0.1:port (default 8080)
 *   ./file_server --selftest     serve a temporary directory holding a
 *                                50 MB file, fetch it, compare every byte
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* struct statx, AT_EMPTY_PATH */
#endif
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <urt.h>

#define BIG (50u * 1000 * 1000)

static struct sockaddr_in addr = {.sin_family = AF_INET};
static int dirfd_ = -1;
static unsigned char pattern(size_t i) { return (unsigned char)(i * 13 + (i >> 12)); }

static void *serve(void *arg)   /* one connection, one request */
{
    int fd = (int)(intptr_t)arg, file = -1;
    char line[256], head[64];
    size_t n = 0;
    while (n < sizeof(line) - 1 && (n == 0 || line[n - 1] != '\n')) {
        ssize_t r = urt_recv(fd, line + n, sizeof(line) - 1 - n, 0);
        if (r <= 0)
            goto out;
        n += (size_t)r;
    }
    line[n] = 0;
    line[strcspn(line, "\r\n")] = 0;
    const char *name = strncmp(line, "GET /", 5) == 0 ? line + 5 : NULL, *why = "bad request";
    struct statx stx;
    int r = -EINVAL;
    if (name && *name && name[0] != '.' && !strchr(name, '/') &&
        (file = r = urt_openat(dirfd_, name, O_RDONLY | O_CLOEXEC, 0)) >= 0 &&
        (r = urt_statx(file, "", AT_EMPTY_PATH, STATX_SIZE | STATX_TYPE, &stx)) == 0 && !S_ISREG(stx.stx_mode))
        r = -EISDIR;
    if (r < 0) {
        int len = snprintf(head, sizeof(head), "ERR %s\n", name ? strerror(-r) : why);
        urt_send_all(fd, head, (size_t)len, 0);
        goto out;
    }
    int len = snprintf(head, sizeof(head), "OK %llu\n", (unsigned long long)stx.stx_size);
    if (urt_send_all(fd, head, (size_t)len, 0) != len)
        goto out;
    for (uint64_t off = 0; off < stx.stx_size;) {   /* a call may send less than asked */
        ssize_t s = urt_sendfile(fd, file, (int64_t)off, stx.stx_size - off);
        if (s <= 0)
            break;
        off += (uint64_t)s;
    }
out:
    if (file >= 0)
        urt_close(file);
    urt_close(fd);
    return NULL;
}

static void *accept_loop(void *arg)
{
    for (;;) {
        int fd = urt_accept((int)(intptr_t)arg, NULL, NULL, SOCK_CLOEXEC);
        if (fd == -ECANCELED)
            return NULL;
        if (fd < 0)
            urt_sleep(10 * 1000 * 1000);   /* -EMFILE and the like: back off 10 ms */
        else if (urt_spawn(NULL, NULL, serve, (void *)(intptr_t)fd) < 0)
            urt_close(fd);
    }
}

static void *selftest(void *arg)   /* the client: fetch "big" and check it */
{
    if (urt_spawn(NULL, NULL, accept_loop, arg) < 0)
        return (void *)1;
    int fd = urt_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    static char buf[65536];
    size_t have = 0, got = 0, bad = 0;
    unsigned long long size = 0;
    char *nl = NULL;
    if (urt_connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 && urt_send_all(fd, "GET /big\n", 9, 0) == 9)
        while (!(nl = memchr(buf, '\n', have))) {
            ssize_t r = urt_recv(fd, buf + have, 256 - have, 0);   /* the header is short */
            if (r <= 0)
                break;
            have += (size_t)r;
        }
    if (nl && sscanf(buf, "OK %llu", &size) == 1) {
        size_t body = have - (size_t)(nl + 1 - buf);   /* bytes of the file that came with the header */
        memmove(buf, nl + 1, body);
        for (ssize_t r = (ssize_t)body;;) {
            for (ssize_t i = 0; i < r; i++)
                bad += (unsigned char)buf[i] != pattern(got + (size_t)i);
            got += (size_t)r;
            if (got >= size || (r = urt_recv(fd, buf, sizeof(buf), 0)) <= 0)
                break;
        }
    }
    urt_close(fd);
    bool ok = size == BIG && got == BIG && bad == 0;
    printf("file_server: selftest %s, %zu of %u bytes, %zu wrong\n", ok ? "passed" : "FAILED", got, BIG, bad);
    return ok ? NULL : (void *)1;
}

static void make_big_file(char *dir)   /* dir: a mkdtemp template, filled in */
{
    if (!mkdtemp(dir) || (dirfd_ = open(dir, O_DIRECTORY | O_CLOEXEC)) < 0)
        err(1, "temporary directory");
    int f = openat(dirfd_, "big", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    static unsigned char chunk[1 << 16];
    for (size_t off = 0; f >= 0 && off < BIG; off += sizeof(chunk)) {
        size_t n = BIG - off < sizeof(chunk) ? BIG - off : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = pattern(off + i);
        if (write(f, chunk, n) != (ssize_t)n)
            err(1, "write");
    }
    close(f);
}

int main(int argc, char **argv)
{
    bool test = argc > 1 && strcmp(argv[1], "--selftest") == 0;
    char dir[] = "/tmp/urt-file-server-XXXXXX";
    if (test)
        make_big_file(dir);
    else if (argc < 2 || (dirfd_ = open(argv[1], O_DIRECTORY | O_CLOEXEC)) < 0)
        errx(2, "usage: file_server DIR [port] | --selftest");
    addr.sin_port = htons((uint16_t)(test ? 0 : argc > 2 ? atoi(argv[2]) : 8080));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    int one = 1, r, lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(lfd, (struct sockaddr *)&addr, len) < 0 || listen(lfd, 128) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) < 0)
        err(1, "listen");
    urt_runtime *rt;
    if ((r = urt_runtime_create(&rt, NULL)) < 0)   /* exit 77: no io_uring here */
        errx(r == -ENOSYS || r == -EPERM ? 77 : 1, "urt_runtime_create: %s", strerror(-r));
    printf("file_server: serving on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    void *failed = NULL;
    r = urt_runtime_block_on(rt, test ? selftest : accept_loop, (void *)(intptr_t)lfd, &failed);
    urt_runtime_destroy(rt);
    if (test) {
        unlinkat(dirfd_, "big", 0);
        rmdir(dir);
    }
    return r < 0 || failed ? 1 : 0;
}
