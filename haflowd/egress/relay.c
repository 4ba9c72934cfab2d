/*
 * haflow-egress-relay: the only program in the haflow-egress sidecar image.
 *
 * The sidecar runs with --network none; the agent joins its network
 * namespace, so the pair has nothing but loopback. This relay is the one way
 * out: it listens on 127.0.0.1 and hands every connection to the daemon's
 * CONNECT proxy through a Unix socket bind-mounted from the host.
 *
 *   haflow-egress-relay SOCKET PROXY_PORT [LOCAL_PORT...]
 *
 * PROXY_PORT (3128) is passed through untouched: the agent speaks CONNECT to
 * the daemon's proxy. Each LOCAL_PORT is a tunnel: the relay itself sends
 * "CONNECT localhost:LOCAL_PORT", waits for a 200 and then splices, so the
 * agent reaches a model server on the daemon's host as 127.0.0.1:LOCAL_PORT
 * with plain HTTP and no proxy settings. The proxy decides every time.
 *
 * One forked child per connection (the container's --pids-limit caps them);
 * "ready" is printed once every listener is bound.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_LISTENERS 33
#define BUF 16384

static int listen_on(int port) {
    struct sockaddr_in a;
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || listen(fd, 64) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int dial(const char *path) {
    struct sockaddr_un a;
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Ask the proxy for localhost:port; 0 once it answered 200 and its head is consumed. */
static int tunnel(int up, int port) {
    char req[96], head[4096];
    size_t n = 0;
    snprintf(req, sizeof req, "CONNECT localhost:%d HTTP/1.1\r\nHost: localhost:%d\r\n\r\n", port, port);
    if (write_all(up, req, strlen(req)) < 0) return -1;
    while (n < sizeof head - 1) { /* byte by byte: nothing past the head is eaten */
        ssize_t r = read(up, head + n, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        n++;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) break;
    }
    head[n] = 0;
    return strncmp(head, "HTTP/1.1 200", 12) == 0 ? 0 : -1;
}

static void splice_both(int a, int b) {
    struct pollfd p[2];
    char buf[BUF];
    int open_a = 1, open_b = 1;
    while (open_a || open_b) {
        p[0].fd = open_a ? a : -1;
        p[0].events = POLLIN;
        p[1].fd = open_b ? b : -1;
        p[1].events = POLLIN;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        for (int i = 0; i < 2; i++) {
            int from = i ? b : a, to = i ? a : b;
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
            ssize_t r = read(from, buf, sizeof buf);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) { /* half-close: pass the end of stream on */
                shutdown(to, SHUT_WR);
                if (i) open_b = 0; else open_a = 0;
                if (r < 0) return;
                continue;
            }
            if (write_all(to, buf, (size_t)r) < 0) return;
        }
    }
}

static int port_arg(const char *s) {
    char *end;
    long v = strtol(s, &end, 10);
    return (*s && !*end && v > 0 && v < 65536) ? (int)v : -1;
}

int main(int argc, char **argv) {
    int fds[MAX_LISTENERS], ports[MAX_LISTENERS], n = argc - 2;
    struct pollfd p[MAX_LISTENERS];
    if (argc < 3 || n > MAX_LISTENERS || strlen(argv[1]) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        fprintf(stderr, "usage: %s SOCKET PROXY_PORT [LOCAL_PORT...] (at most %d ports)\n", argv[0], MAX_LISTENERS);
        return 2;
    }
    signal(SIGCHLD, SIG_IGN); /* children are reaped by the kernel */
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < n; i++) {
        ports[i] = port_arg(argv[i + 2]);
        if (ports[i] < 0 || (fds[i] = listen_on(ports[i])) < 0) {
            fprintf(stderr, "cannot listen on 127.0.0.1:%s: %s\n", argv[i + 2], strerror(errno));
            return 1;
        }
        p[i].fd = fds[i];
        p[i].events = POLLIN;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR) continue;
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (!(p[i].revents & POLLIN)) continue;
            int c = accept(fds[i], NULL, NULL);
            if (c < 0) continue;
            pid_t pid = fork();
            if (pid == 0) {
                for (int j = 0; j < n; j++) close(fds[j]);
                int up = dial(argv[1]);
                if (up >= 0 && (i == 0 || tunnel(up, ports[i]) == 0)) splice_both(c, up);
                _exit(0);
            }
            close(c); /* fork failed (pids limit) or parent: either way the parent is done with it */
        }
    }
}
