/*
 * tls_echo.c - TLS echo server and client with OpenSSL on non-blocking
 * sockets: OpenSSL does its own reads and writes, and when it says
 * SSL_ERROR_WANT_READ / WANT_WRITE the task waits with urt_poll (only the
 * task; the worker runs others meanwhile). The server's certificate is
 * made at start (EC P-256 key, self-signed X509), and the client trusts
 * exactly it. Self-test (the only mode): 1 MiB through the echo, every
 * byte checked.
 */
#include <arpa/inet.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <urt.h>

#define TOTAL (1u << 20)

static SSL_CTX *server_ctx, *client_ctx;
static struct sockaddr_in addr = {.sin_family = AF_INET};
static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 10)); }

static void make_contexts(void)   /* a fresh key and certificate for CN=localhost */
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *crt = X509_new();
    if (!key || !crt)
        errx(1, "key or certificate: out of memory");
    X509_set_version(crt, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(crt), 1);
    X509_gmtime_adj(X509_getm_notBefore(crt), -60);
    X509_gmtime_adj(X509_getm_notAfter(crt), 3600);
    X509_NAME *name = X509_get_subject_name(crt);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"localhost", -1, -1, 0);
    X509_set_issuer_name(crt, name);
    X509_set_pubkey(crt, key);
    if (!X509_sign(crt, key, EVP_sha256()))
        errx(1, "X509_sign failed");
    server_ctx = SSL_CTX_new(TLS_server_method());
    client_ctx = SSL_CTX_new(TLS_client_method());
    if (!server_ctx || !client_ctx || SSL_CTX_use_certificate(server_ctx, crt) != 1 ||
        SSL_CTX_use_PrivateKey(server_ctx, key) != 1 ||
        X509_STORE_add_cert(SSL_CTX_get_cert_store(client_ctx), crt) != 1)
        errx(1, "SSL_CTX setup failed");
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_PEER, NULL);
    X509_free(crt);
    EVP_PKEY_free(key);
}

/* After an SSL call returned r <= 0: the readiness OpenSSL waits for, or 0 when
 * it is not waiting (SSL_ERROR_ZERO_RETURN: the peer closed; or an error). */
static short ssl_want(SSL *ssl, int r)
{
    int e = SSL_get_error(ssl, r);
    return e == SSL_ERROR_WANT_READ ? POLLIN : e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
}
static int ssl_wait(SSL *ssl, int fd, int r) { return ssl_want(ssl, r) && urt_poll(fd, ssl_want(ssl, r)) > 0; }

static SSL *tls_open(SSL_CTX *ctx, int fd, bool server)
{
    SSL *ssl = SSL_new(ctx);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    SSL_set_fd(ssl, fd);
    if (!server)
        SSL_set1_host(ssl, "localhost");
    for (int r; (r = server ? SSL_accept(ssl) : SSL_connect(ssl)) != 1;)
        if (!ssl_wait(ssl, fd, r)) {
            SSL_free(ssl);
            return NULL;
        }
    return ssl;
}

static void *serve(void *arg)   /* one connection: echo until the peer's close_notify */
{
    int fd = urt_accept((int)(intptr_t)arg, NULL, NULL, SOCK_CLOEXEC);
    SSL *ssl = fd >= 0 ? tls_open(server_ctx, fd, true) : NULL;
    char buf[16384];
    for (int n; ssl;) {
        while ((n = SSL_read(ssl, buf, sizeof(buf))) <= 0)
            if (!ssl_wait(ssl, fd, n))
                goto done;
        for (int off = 0, w; off < n; off += w)
            while ((w = SSL_write(ssl, buf + off, n - off)) <= 0)
                if (!ssl_wait(ssl, fd, w))
                    goto done;
    }
done:
    if (ssl)
        SSL_free(ssl);
    urt_close(fd);
    return NULL;
}

static void *selftest(void *arg)   /* the client: writes and reads in one loop, so neither side stalls */
{
    urt_task *srv;
    if (urt_spawn(NULL, &srv, serve, arg) < 0)
        return (void *)1;
    int fd = urt_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    SSL *ssl = urt_connect(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0 ? tls_open(client_ctx, fd, false) : NULL;
    static unsigned char out[TOTAL];
    unsigned char in[16384];
    size_t sent = 0, got = 0, bad = 0;
    for (size_t i = 0; i < TOTAL; i++)
        out[i] = pattern(i);
    while (ssl && got < TOTAL) {
        int n;
        short want = 0, w;
        bool moved = false;
        if (sent < TOTAL) {   /* a retried SSL_write gets the same buffer and length, as OpenSSL wants */
            if ((n = SSL_write(ssl, out + sent, (int)(TOTAL - sent < 16384 ? TOTAL - sent : 16384))) > 0)
                sent += (size_t)n, moved = true;
            else if (!(want = ssl_want(ssl, n)))
                break;
        }
        if ((n = SSL_read(ssl, in, sizeof(in))) > 0) {
            for (int i = 0; i < n; i++)
                bad += in[i] != pattern(got + (size_t)i);
            got += (size_t)n, moved = true;
        } else if (!(w = ssl_want(ssl, n))) {
            break;
        } else {
            want |= w;
        }
        if (!moved && urt_poll(fd, want) < 0)   /* neither way could move: wait for either */
            break;
    }
    if (ssl) {
        SSL_shutdown(ssl);   /* close_notify: the server's SSL_read says the stream ended */
        SSL_free(ssl);
    }
    urt_close(fd);
    urt_join(srv, NULL);
    bool ok = got == TOTAL && bad == 0;
    printf("tls_echo: selftest %s, %zu of %u bytes echoed, %zu wrong\n", ok ? "passed" : "FAILED", got, TOTAL, bad);
    return ok ? NULL : (void *)1;
}

int main(void)
{
    make_contexts();
    socklen_t len = sizeof(addr);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (bind(lfd, (struct sockaddr *)&addr, len) < 0 || listen(lfd, 8) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &len) < 0)
        err(1, "listen");
    urt_runtime *rt;
    int r;
    if ((r = urt_runtime_create(&rt, NULL)) < 0)   /* exit 77: no io_uring here */
        errx(r == -ENOSYS || r == -EPERM ? 77 : 1, "urt_runtime_create: %s", strerror(-r));
    void *failed = NULL;
    r = urt_runtime_block_on(rt, selftest, (void *)(intptr_t)lfd, &failed);
    urt_runtime_destroy(rt);
    SSL_CTX_free(server_ctx);
    SSL_CTX_free(client_ctx);
    return r < 0 || failed ? 1 : 0;
}
