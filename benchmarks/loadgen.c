/*
 * loadgen: the greensrv benchmark's load generator.
 *
 * One thread, one epoll set, many non-blocking TCP connections to 127.0.0.1:PORT. Every byte the
 * server echoes is compared with the byte that was sent at that position of that connection's
 * stream: a mismatch, a lost byte, an extra byte or an early close is an error (counted, described
 * on stderr and in the JSON, exit status 1), never a data point.
 *
 * Scenarios
 *   rr         CONNS connections, one line in flight on each (request/response)
 *   pipelined  CONNS connections, DEPTH lines in flight on each
 *   churn      connect, send one line, read its echo, close; CONNS such cycles at a time
 *   idle       open CONNS connections, one echoed line each, print a "ready" JSON line, then hold
 *              them open until a line (or EOF) arrives on stdin or --hold seconds pass
 *   bulk       BYTES of a pseudo-random byte stream echoed over CONNS connections
 *
 * Lines are LINE_SIZE bytes including "\r\n": 16 hex digits naming the connection and the line's
 * sequence number, a space, and alphanumeric filler that shifts with the sequence number, so a lost,
 * duplicated or reordered line never looks like the expected one.
 *
 * Output: one JSON object on stdout (idle prints a {"event":"ready"} line first). Latencies are
 * measured per line from the write that queued it to the read that completed its echo (churn: from
 * connect() to the echo), in a log-linear histogram with ~1.6% resolution.
 *
 * Build: cc -O2 -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>

enum { RR, PIPELINED, CHURN, IDLE, BULK };
enum { FREE, CONNECTING, ACTIVE, DONE };

#define READ_BUF (256 * 1024)
#define BULK_CHUNK (256 * 1024)
#define BULK_WINDOW (4 * 1024 * 1024) /* most unechoed bytes per bulk connection */
#define PAT_PERIOD 65521          /* prime: the bulk pattern's period */
#define HIST_SIZE 4096

typedef struct {
    int fd;
    int id;
    int state;
    int want_out;            /* EPOLLOUT currently registered */
    uint64_t sent_lines;     /* lines queued so far (also the next sequence number) */
    uint64_t recv_bytes;     /* echoed bytes verified so far */
    char *out;               /* bytes queued but not yet written */
    size_t out_len, out_off, out_cap;
    uint64_t *send_ts;       /* ring of DEPTH send times, indexed by seq % depth */
    uint64_t start_ns;       /* churn: connect() time; idle: unused */
    uint64_t generation;     /* churn: how many connections this slot has made */
    uint64_t bulk_share, bulk_sent, bulk_recv;
} conn_t;

/* ---- options ---------------------------------------------------------------------------- */
static const char *opt_host = "127.0.0.1";
static int opt_port = 0;
static int opt_scenario = RR;
static const char *scenario_name = "rr";
static int opt_conns = -1;
static int opt_depth = -1;
static int opt_line = 64;
static double opt_duration = 5.0;
static double opt_warmup = 1.0;
static uint64_t opt_bytes = 1000ULL * 1000 * 1000;
static uint64_t opt_warmup_bytes = 0;
static double opt_hold = -1.0;
static double opt_timeout = -1.0;
static int opt_connect_batch = 256;

/* ---- state ------------------------------------------------------------------------------ */
static int ep;
static conn_t *conns;
static int nconns;
static struct sockaddr_in addr;
static char *rbuf;
static char fill[256];
static unsigned char *pattern;
static uint64_t hist[HIST_SIZE];
static uint64_t hist_count;
static int measuring, sending = 1;
static uint64_t m_lines, m_conns, m_bytes, total_verified;
static uint64_t m_start_ns, m_end_ns;
static uint64_t errors, connect_errors;
static char first_error[512];
static uint64_t t0;
static int open_conns;      /* idle/churn: sockets currently open */
static int pending_connects;
static int next_idle;       /* idle: next connection index to open */
static int established;     /* idle: connections that echoed their line */

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void error_at(conn_t *c, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    errors++;
    if (errors <= 10)
        fprintf(stderr, "loadgen: error on connection %d: %s\n", c ? c->id : -1, msg);
    if (!first_error[0])
        snprintf(first_error, sizeof first_error, "connection %d: %s", c ? c->id : -1, msg);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "loadgen: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(2);
}

/* ---- latency histogram: exact below 128 ns, then 64 sub-buckets per power of two ---------- */
static int bucket_of(uint64_t v) {
    if (v < 128) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 6;
    int top = (int)(v >> shift); /* 64..127 */
    return 128 + (shift - 1) * 64 + (top - 64);
}

static double bucket_value(int idx) {
    if (idx < 128) return idx;
    int shift = (idx - 128) / 64 + 1;
    uint64_t top = (uint64_t)((idx - 128) % 64 + 64);
    return (double)(top << shift) + (double)(1ULL << shift) / 2.0;
}

static void record_latency(uint64_t ns) {
    int b = bucket_of(ns);
    if (b >= HIST_SIZE) b = HIST_SIZE - 1;
    hist[b]++;
    hist_count++;
}

static double percentile_us(double p) {
    if (!hist_count) return -1;
    uint64_t want = (uint64_t)(p * (double)hist_count);
    if (want < 1) want = 1;
    if (want > hist_count) want = hist_count;
    uint64_t seen = 0;
    for (int i = 0; i < HIST_SIZE; i++) {
        seen += hist[i];
        if (seen >= want) return bucket_value(i) / 1000.0;
    }
    return bucket_value(HIST_SIZE - 1) / 1000.0;
}

static double max_us(void) {
    for (int i = HIST_SIZE - 1; i >= 0; i--)
        if (hist[i]) return bucket_value(i) / 1000.0;
    return -1;
}

/* ---- line and byte-stream contents ------------------------------------------------------- */
static void gen_line(char *buf, int cid, uint64_t seq) {
    static const char hex[] = "0123456789abcdef";
    uint64_t tag = ((uint64_t)(uint32_t)cid << 40) | (seq & ((1ULL << 40) - 1));
    for (int i = 15; i >= 0; i--) {
        buf[i] = hex[tag & 15];
        tag >>= 4;
    }
    buf[16] = ' ';
    memcpy(buf + 17, fill + seq % 62, (size_t)opt_line - 19);
    buf[opt_line - 2] = '\r';
    buf[opt_line - 1] = '\n';
}

static void init_fill(void) {
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (size_t i = 0; i < sizeof fill; i++) fill[i] = alnum[i % 62];
}

static void init_pattern(void) {
    pattern = malloc(PAT_PERIOD + BULK_CHUNK + READ_BUF);
    if (!pattern) die("out of memory");
    uint64_t x = 0x9e3779b97f4a7c15ULL;
    for (int i = 0; i < PAT_PERIOD; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        pattern[i] = (unsigned char)(x >> 24);
    }
    for (int i = PAT_PERIOD; i < PAT_PERIOD + BULK_CHUNK + READ_BUF; i++)
        pattern[i] = pattern[i - PAT_PERIOD];
}

static const unsigned char *pattern_at(conn_t *c, uint64_t off) {
    return pattern + (off + (uint64_t)c->id * 4099) % PAT_PERIOD;
}

/* ---- output buffer ------------------------------------------------------------------------ */
static void out_reserve(conn_t *c, size_t more) {
    if (c->out_off && c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap) return;
    if (c->out_off) {
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap) return;
    }
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + more) cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out) die("out of memory");
    c->out_cap = cap;
}

static void set_events(conn_t *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
    c->want_out = want_out;
}

static void close_conn(conn_t *c, int state) {
    if (c->fd >= 0) {
        close(c->fd); /* also removes it from the epoll set */
        open_conns--;
    }
    c->fd = -1;
    c->state = state;
    c->want_out = 0;
    c->out_len = c->out_off = 0;
}

/* Returns 0 on success (possibly with bytes left, EPOLLOUT then armed), -1 if the connection died. */
static int flush_out(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return 0;
        } else {
            error_at(c, "send: %s", strerror(errno));
            close_conn(c, DONE);
            return -1;
        }
    }
    c->out_off = c->out_len = 0;
    set_events(c, 0);
    return 0;
}

/* ---- per-scenario behaviour ----------------------------------------------------------------- */
static void queue_lines(conn_t *c, uint64_t now) {
    uint64_t done = c->recv_bytes / (uint64_t)opt_line;
    int depth = opt_depth;
    if (!sending) return;
    while (c->sent_lines - done < (uint64_t)depth) {
        out_reserve(c, (size_t)opt_line);
        gen_line(c->out + c->out_len, c->id, c->sent_lines);
        c->out_len += (size_t)opt_line;
        c->send_ts[c->sent_lines % (uint64_t)depth] = now;
        c->sent_lines++;
    }
}

static void bulk_send(conn_t *c) {
    while (c->bulk_sent < c->bulk_share && c->bulk_sent - c->bulk_recv < BULK_WINDOW) {
        uint64_t n = c->bulk_share - c->bulk_sent;
        uint64_t room = BULK_WINDOW - (c->bulk_sent - c->bulk_recv);
        if (n > BULK_CHUNK) n = BULK_CHUNK;
        if (n > room) n = room;
        ssize_t w = send(c->fd, pattern_at(c, c->bulk_sent), (size_t)n, MSG_NOSIGNAL);
        if (w > 0) {
            c->bulk_sent += (uint64_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(c, 1);
            return;
        } else {
            error_at(c, "send: %s", strerror(errno));
            close_conn(c, DONE);
            return;
        }
    }
    set_events(c, 0);
}

static void start_connect(conn_t *c, uint64_t now) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket: %s (raise RLIMIT_NOFILE?)", strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->state = CONNECTING;
    c->want_out = 1;
    c->sent_lines = c->recv_bytes = 0;
    c->out_len = c->out_off = 0;
    c->start_ns = now;
    open_conns++;
    pending_connects++;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
        int e = errno;
        pending_connects--;
        connect_errors++;
        error_at(c, "connect: %s", strerror(e));
        close_conn(c, DONE);
        return;
    }
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl: %s", strerror(errno));
}

static void on_connected(conn_t *c, uint64_t now) {
    c->state = ACTIVE;
    /* idle counts a connection as pending until its line is echoed (the server has accepted and
       served it), so a server that accepts slowly never has more than --connect-batch
       connections waiting in its accept queue, where the kernel would drop them after a while */
    if (opt_scenario != IDLE) pending_connects--;
    switch (opt_scenario) {
    case RR:
    case PIPELINED:
        queue_lines(c, now);
        flush_out(c);
        break;
    case CHURN:
    case IDLE:
        out_reserve(c, (size_t)opt_line);
        gen_line(c->out, c->id, c->generation);
        c->out_len = (size_t)opt_line;
        c->sent_lines = 1;
        flush_out(c);
        break;
    case BULK:
        bulk_send(c);
        break;
    }
}

static void open_more_idle(uint64_t now) {
    while (next_idle < nconns && pending_connects < opt_connect_batch)
        start_connect(&conns[next_idle++], now);
}

static void on_line(conn_t *c, uint64_t seq, uint64_t now) {
    switch (opt_scenario) {
    case RR:
    case PIPELINED:
        if (measuring) {
            record_latency(now - c->send_ts[seq % (uint64_t)opt_depth]);
            m_lines++;
        }
        break;
    case CHURN:
        if (measuring) {
            record_latency(now - c->start_ns);
            m_lines++;
            m_conns++;
        }
        close_conn(c, FREE);
        c->generation++;
        if (sending) start_connect(c, now);
        break;
    case IDLE:
        established++;
        pending_connects--;
        break;
    }
}

/* Verify n echoed bytes of a line scenario; returns -1 if the connection was closed. */
static int verify_lines(conn_t *c, const char *d, size_t n, uint64_t now) {
    char tmp[4096];
    uint64_t limit = c->sent_lines * (uint64_t)opt_line;
    uint64_t base_seq = opt_scenario == RR || opt_scenario == PIPELINED ? 0 : c->generation;
    while (n) {
        if (c->recv_bytes >= limit) {
            error_at(c, "%zu unexpected bytes after the last line sent (first 0x%02x)", n,
                     (unsigned char)d[0]);
            close_conn(c, DONE);
            return -1;
        }
        uint64_t seq = c->recv_bytes / (uint64_t)opt_line;
        size_t off = (size_t)(c->recv_bytes % (uint64_t)opt_line);
        size_t m = (size_t)opt_line - off;
        if (m > n) m = n;
        gen_line(tmp, c->id, base_seq + seq);
        if (memcmp(tmp + off, d, m) != 0) {
            size_t i = 0;
            while (i < m && tmp[off + i] == d[i]) i++;
            error_at(c, "byte mismatch in line %" PRIu64 " at offset %zu: expected 0x%02x, got 0x%02x"
                     " (expected line \"%.*s\")", seq, off + i, (unsigned char)tmp[off + i],
                     (unsigned char)d[i], opt_line - 2, tmp);
            close_conn(c, DONE);
            return -1;
        }
        c->recv_bytes += m;
        total_verified += m;
        d += m;
        n -= m;
        if (off + m == (size_t)opt_line) {
            on_line(c, seq, now);
            if (c->state != ACTIVE) {
                if (n) {
                    error_at(c, "%zu unexpected bytes after the echoed line", n);
                    return -1;
                }
                return -1;
            }
        }
    }
    return 0;
}

static int verify_bulk(conn_t *c, const unsigned char *d, size_t n) {
    if (c->bulk_recv + n > c->bulk_sent) {
        error_at(c, "%" PRIu64 " more bytes echoed than sent", c->bulk_recv + n - c->bulk_sent);
        close_conn(c, DONE);
        return -1;
    }
    while (n) {
        size_t m = n > BULK_CHUNK ? BULK_CHUNK : n;
        const unsigned char *want = pattern_at(c, c->bulk_recv);
        if (memcmp(want, d, m) != 0) {
            size_t i = 0;
            while (i < m && want[i] == d[i]) i++;
            error_at(c, "byte mismatch at stream offset %" PRIu64 ": expected 0x%02x, got 0x%02x",
                     c->bulk_recv + i, want[i], d[i]);
            close_conn(c, DONE);
            return -1;
        }
        c->bulk_recv += m;
        total_verified += m;
        if (measuring) m_bytes += m;
        d += m;
        n -= m;
    }
    if (c->bulk_recv == c->bulk_share) close_conn(c, DONE);
    return 0;
}

static void on_readable(conn_t *c, uint64_t now) {
    for (int rounds = 0; rounds < 4 && c->state == ACTIVE; rounds++) {
        ssize_t n = recv(c->fd, rbuf, READ_BUF, 0);
        if (n > 0) {
            int r = opt_scenario == BULK ? verify_bulk(c, (unsigned char *)rbuf, (size_t)n)
                                         : verify_lines(c, rbuf, (size_t)n, now);
            if (r < 0 || c->state != ACTIVE) return;
            if ((size_t)n < READ_BUF) break;
        } else if (n == 0) {
            error_at(c, "server closed the connection early (%" PRIu64 " bytes echoed)",
                     opt_scenario == BULK ? c->bulk_recv : c->recv_bytes);
            close_conn(c, DONE);
            return;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else {
            error_at(c, "recv: %s", strerror(errno));
            close_conn(c, DONE);
            return;
        }
    }
    if (opt_scenario == RR || opt_scenario == PIPELINED) {
        queue_lines(c, now);
        flush_out(c);
    } else if (opt_scenario == BULK) {
        bulk_send(c);
    }
}

static void on_event(conn_t *c, uint32_t evs, uint64_t now) {
    if (c->state == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err) {
            pending_connects--;
            connect_errors++;
            error_at(c, "connect: %s", strerror(err));
            close_conn(c, DONE);
            return;
        }
        if (!(evs & (EPOLLOUT | EPOLLIN | EPOLLERR | EPOLLHUP))) return;
        on_connected(c, now);
        if (c->state != ACTIVE) return;
        if (!(evs & EPOLLIN)) return;
    }
    if (c->state != ACTIVE) return;
    if (evs & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(c, now);
    if (c->state != ACTIVE) return;
    if (evs & EPOLLOUT) {
        if (opt_scenario == BULK) bulk_send(c);
        else flush_out(c);
    }
}

/* ---- main loop ------------------------------------------------------------------------------ */
static void run_loop(int (*finished)(uint64_t now), uint64_t deadline, const char *what) {
    struct epoll_event evs[1024];
    for (;;) {
        uint64_t now = now_ns();
        if (finished(now)) return;
        if (now > deadline) {
            error_at(NULL, "timed out while %s: the server stopped answering", what);
            return;
        }
        int n = epoll_wait(ep, evs, 1024, 10);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) on_event(evs[i].data.ptr, evs[i].events, now_ns());
        if (opt_scenario == IDLE) open_more_idle(now_ns());
    }
}

static uint64_t phase_warm_end, phase_end;

static int timed_finished(uint64_t now) {
    if (errors && opt_scenario != CHURN) return 1;
    if (errors > 100) return 1;
    if (!measuring && now >= phase_warm_end && now < phase_end) {
        measuring = 1;
        m_start_ns = now;
    }
    if (now >= phase_end) {
        if (measuring) {
            measuring = 0;
            m_end_ns = now;
        }
        return 1;
    }
    return 0;
}

static int drained(uint64_t now) {
    (void)now;
    if (errors) return 1;
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        if (c->state == CONNECTING) return 0;
        if (c->state == ACTIVE && c->recv_bytes < c->sent_lines * (uint64_t)opt_line) return 0;
    }
    return 1;
}

static int idle_ready(uint64_t now) {
    (void)now;
    return errors || established == nconns;
}

static uint64_t bulk_total_recv(void) {
    uint64_t t = 0;
    for (int i = 0; i < nconns; i++) t += conns[i].bulk_recv;
    return t;
}

static int bulk_done(uint64_t now) {
    if (errors) return 1;
    if (!measuring && !m_end_ns && bulk_total_recv() >= opt_warmup_bytes) {
        measuring = 1;
        m_start_ns = now;
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].state != DONE) return 0;
    if (measuring) {
        measuring = 0;
        m_end_ns = now;
    }
    return 1;
}

/* Hold idle connections open; any readable event on one of them (data or EOF) is an error. */
static void idle_hold(void) {
    uint64_t end = opt_hold >= 0 ? now_ns() + (uint64_t)(opt_hold * 1e9) : UINT64_MAX;
    struct pollfd pfd[2] = {{.fd = opt_hold >= 0 ? -1 : 0, .events = POLLIN},
                            {.fd = ep, .events = POLLIN}};
    for (;;) {
        uint64_t now = now_ns();
        if (now >= end) return;
        int ms = end == UINT64_MAX ? 1000 : (int)((end - now) / 1000000 + 1);
        int n = poll(pfd, 2, ms);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) die("poll: %s", strerror(errno));
        if (pfd[1].revents) {
            struct epoll_event evs[16];
            int k = epoll_wait(ep, evs, 16, 0);
            for (int i = 0; i < k; i++) {
                conn_t *c = evs[i].data.ptr;
                char b[64];
                ssize_t r = recv(c->fd, b, sizeof b, 0);
                if (r == 0) error_at(c, "server closed an idle connection");
                else if (r > 0) error_at(c, "server sent %zd unexpected bytes", r);
                else if (errno != EAGAIN) error_at(c, "recv: %s", strerror(errno));
                close_conn(c, DONE);
            }
            if (errors) return;
        }
        if (pfd[0].revents) return; /* a line, EOF or a hang-up on stdin: release */
    }
}

static void json_num(const char *key, double v, int last) {
    if (v < 0) printf("\"%s\": null%s", key, last ? "" : ", ");
    else printf("\"%s\": %.6g%s", key, v, last ? "" : ", ");
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", (unsigned char)*s);
        else putchar(*s);
    }
    putchar('"');
}

static void report(void) {
    double secs = m_end_ns > m_start_ns ? (double)(m_end_ns - m_start_ns) / 1e9 : 0;
    printf("{\"scenario\": \"%s\", \"port\": %d, \"conns\": %d, ", scenario_name, opt_port, nconns);
    if (opt_scenario == RR || opt_scenario == PIPELINED)
        printf("\"depth\": %d, ", opt_depth);
    if (opt_scenario != BULK) printf("\"line_size\": %d, ", opt_line);
    json_num("seconds", secs, 0);
    printf("\"lines\": %" PRIu64 ", ", m_lines);
    json_num("lines_per_s", secs > 0 && opt_scenario != BULK ? (double)m_lines / secs : -1, 0);
    json_num("conns_per_s", secs > 0 && opt_scenario == CHURN ? (double)m_conns / secs : -1, 0);
    double mb = opt_scenario == BULK ? (double)m_bytes : (double)m_lines * opt_line;
    printf("\"bytes\": %.0f, ", mb);
    json_num("mb_per_s", secs > 0 ? mb / secs / 1e6 : -1, 0);
    json_num("p50_us", percentile_us(0.50), 0);
    json_num("p99_us", percentile_us(0.99), 0);
    json_num("p999_us", percentile_us(0.999), 0);
    json_num("max_us", max_us(), 0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
                 ru.ru_stime.tv_usec / 1e6;
    json_num("loadgen_cpu_s", cpu, 0);
    json_num("wall_s", (double)(now_ns() - t0) / 1e9, 0);
    printf("\"verified_bytes\": %" PRIu64 ", ", total_verified);
    printf("\"connect_errors\": %" PRIu64 ", ", connect_errors);
    printf("\"errors\": %" PRIu64 ", \"error\": ", errors);
    if (first_error[0]) json_string(first_error);
    else printf("null");
    printf("}\n");
    fflush(stdout);
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen --port N [--scenario rr|pipelined|churn|idle|bulk] [--conns N]\n"
            "               [--depth N] [--line-size N] [--duration S] [--warmup S]\n"
            "               [--bytes N] [--warmup-bytes N] [--hold S] [--timeout S]\n"
            "               [--connect-batch N] [--host 127.0.0.1]\n");
    exit(2);
}

static void parse_args(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *v = argv[++i];
        if (!strcmp(a, "--port")) opt_port = atoi(v);
        else if (!strcmp(a, "--host")) opt_host = v;
        else if (!strcmp(a, "--conns")) opt_conns = atoi(v);
        else if (!strcmp(a, "--depth")) opt_depth = atoi(v);
        else if (!strcmp(a, "--line-size")) opt_line = atoi(v);
        else if (!strcmp(a, "--duration")) opt_duration = atof(v);
        else if (!strcmp(a, "--warmup")) opt_warmup = atof(v);
        else if (!strcmp(a, "--bytes")) opt_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--warmup-bytes")) opt_warmup_bytes = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--hold")) opt_hold = atof(v);
        else if (!strcmp(a, "--timeout")) opt_timeout = atof(v);
        else if (!strcmp(a, "--connect-batch")) opt_connect_batch = atoi(v);
        else if (!strcmp(a, "--scenario")) {
            scenario_name = v;
            if (!strcmp(v, "rr")) opt_scenario = RR;
            else if (!strcmp(v, "pipelined")) opt_scenario = PIPELINED;
            else if (!strcmp(v, "churn")) opt_scenario = CHURN;
            else if (!strcmp(v, "idle")) opt_scenario = IDLE;
            else if (!strcmp(v, "bulk")) opt_scenario = BULK;
            else usage();
        } else usage();
    }
    if (opt_port <= 0 || opt_port > 65535) usage();
    if (opt_line < 19 || opt_line > 4096) die("--line-size must be 19..4096");
    static const int def_conns[] = {100, 10, 50, 10000, 10};
    static const int def_depth[] = {1, 64, 1, 1, 1};
    if (opt_conns < 0) opt_conns = def_conns[opt_scenario];
    if (opt_depth < 0) opt_depth = def_depth[opt_scenario];
    if (opt_conns < 1 || opt_depth < 1 || opt_connect_batch < 1) usage();
    if (opt_timeout < 0) opt_timeout = opt_duration + opt_warmup + 60;
}

static void raise_nofile(int need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) return;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if ((rlim_t)need > rl.rlim_cur)
        die("need %d file descriptors but RLIMIT_NOFILE is %llu", need,
            (unsigned long long)rl.rlim_cur);
}

int main(int argc, char **argv) {
    parse_args(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(opt_conns + 64);
    init_fill();
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)opt_port);
    if (inet_pton(AF_INET, opt_host, &addr.sin_addr) != 1) die("bad --host %s", opt_host);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1: %s", strerror(errno));
    rbuf = malloc(READ_BUF);
    nconns = opt_conns;
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!rbuf || !conns) die("out of memory");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        if (opt_scenario == RR || opt_scenario == PIPELINED) {
            conns[i].send_ts = calloc((size_t)opt_depth, sizeof(uint64_t));
            if (!conns[i].send_ts) die("out of memory");
        }
    }
    t0 = now_ns();
    uint64_t deadline = t0 + (uint64_t)(opt_timeout * 1e9);

    switch (opt_scenario) {
    case RR:
    case PIPELINED:
    case CHURN:
        phase_warm_end = t0 + (uint64_t)(opt_warmup * 1e9);
        phase_end = phase_warm_end + (uint64_t)(opt_duration * 1e9);
        if (opt_warmup <= 0) {
            measuring = 1;
            m_start_ns = t0;
        }
        for (int i = 0; i < nconns; i++) start_connect(&conns[i], t0);
        run_loop(timed_finished, deadline, "measuring");
        if (!m_end_ns) m_end_ns = now_ns();
        sending = 0;
        run_loop(drained, now_ns() + 10ULL * 1000000000ULL, "draining the last echoes");
        break;
    case IDLE:
        open_more_idle(t0);
        run_loop(idle_ready, deadline, "opening idle connections");
        m_start_ns = t0;
        m_end_ns = now_ns();
        m_conns = (uint64_t)established;
        if (!errors) {
            printf("{\"event\": \"ready\", \"conns\": %d, \"seconds\": %.3f}\n", established,
                   (double)(m_end_ns - t0) / 1e9);
            fflush(stdout);
            idle_hold();
        }
        break;
    case BULK: {
        uint64_t share = opt_bytes / (uint64_t)nconns;
        for (int i = 0; i < nconns; i++)
            conns[i].bulk_share = share + (i == 0 ? opt_bytes % (uint64_t)nconns : 0);
        init_pattern();
        if (opt_warmup_bytes == 0) {
            measuring = 1;
            m_start_ns = t0;
        }
        for (int i = 0; i < nconns; i++) start_connect(&conns[i], t0);
        run_loop(bulk_done, deadline, "echoing bulk data");
        if (!m_end_ns) m_end_ns = now_ns();
        if (!errors && bulk_total_recv() != opt_bytes)
            error_at(NULL, "%" PRIu64 " of %" PRIu64 " bytes echoed", bulk_total_recv(), opt_bytes);
        break;
    }
    }
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close_conn(&conns[i], DONE);
    report();
    return errors ? 1 : 0;
}
