/*
 * c_echo: a minimal epoll echo server, the benchmark's ceiling.
 *
 * Usage: c_echo PORT [--bulk]    (listens on 127.0.0.1:PORT; prints "listening" once ready;
 *                                 --bulk changes nothing: every byte is echoed either way)
 *
 * Echoes every byte it reads, so it serves the line scenarios and bulk alike (lines end in \r\n
 * and come back byte for byte). Level-triggered epoll, one 256 KiB read buffer; when a write is
 * short the rest is kept for that connection and reading from it pauses until it drains.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct {
    int fd;
    char *pend;      /* bytes read but not yet written */
    size_t len, off;
} client_t;

static int ep;

static void drop(client_t *c) {
    close(c->fd);
    free(c->pend);
    free(c);
}

static void watch(client_t *c, int op, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, op, c->fd, &ev);
}

/* Write what is pending; returns -1 if the client is gone, 0 otherwise. */
static int drain(client_t *c) {
    while (c->off < c->len) {
        ssize_t n = send(c->fd, c->pend + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (n > 0) c->off += (size_t)n;
        else if (n < 0 && errno == EINTR) continue;
        else if (n < 0 && errno == EAGAIN) return 0;
        else return -1;
    }
    c->off = c->len = 0;
    watch(c, EPOLL_CTL_MOD, EPOLLIN);
    return 0;
}

static void on_client(client_t *c, uint32_t events, char *buf, size_t cap) {
    if (c->len) { /* waiting for the socket to take the rest of an echo */
        if (drain(c) < 0) drop(c);
        return;
    }
    (void)events;
    ssize_t n = recv(c->fd, buf, cap, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        drop(c);
        return;
    }
    if (n < 0) return;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(c->fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && errno == EAGAIN) break;
        else {
            drop(c);
            return;
        }
    }
    if (off < (size_t)n) {
        c->len = (size_t)n - off;
        c->off = 0;
        c->pend = realloc(c->pend, c->len);
        memcpy(c->pend, buf + off, c->len);
        watch(c, EPOLL_CTL_MOD, EPOLLOUT);
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: c_echo PORT [--bulk]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 4096) < 0) {
        perror("c_echo: bind/listen");
        return 1;
    }
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    printf("listening\n");
    fflush(stdout);
    static char buf[256 * 1024];
    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0 && errno == EINTR) continue;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == NULL) {
                for (int k = 0; k < 64; k++) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (fd < 0) break;
                    client_t *c = calloc(1, sizeof *c);
                    c->fd = fd;
                    watch(c, EPOLL_CTL_ADD, EPOLLIN);
                }
            } else {
                on_client(evs[i].data.ptr, evs[i].events, buf, sizeof buf);
            }
        }
    }
}
