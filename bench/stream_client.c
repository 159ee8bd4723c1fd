/*
 * stream_client: N concurrent SSE streams over keep-alive HTTP/1.1 connections, measuring
 * time to first token and the gaps between token events, printed as one JSON object.
 *
 *   stream_client --port P [--host 127.0.0.1] [--path /v1/chat/completions]
 *                 --body-file F [--header 'Name: value']... [--concurrency 100]
 *                 [--duration 10] [--grace 30] [--stall-ms 100] [--stagger-ms 0]
 *
 * A "token event" is an SSE event (text up to a blank line) that carries non-empty text:
 * `"content":"x` (OpenAI delta) or `"text":"x` (Anthropic text_delta). Its time is the
 * moment the read() that completed it returned. TTFT is measured from just before the
 * request is written. A stream is complete when the HTTP body ends and it carried
 * `[DONE]` or `message_stop`; a stall is a stream with a gap above --stall-ms, or one
 * unfinished when the grace period ends. Each connection runs streams back to back until
 * --duration has passed, then finishes the one in flight.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct { uint32_t *v; size_t len, cap; } vec_t;

static void vec_push(vec_t *a, uint32_t x) {
    if (a->len == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 4096;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v) { perror("realloc"); exit(1); }
    }
    a->v[a->len++] = x;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

enum body_mode { B_CHUNKED, B_LENGTH, B_CLOSE };
enum chunk_state { CS_SIZE, CS_DATA, CS_DATA_CRLF, CS_TRAILER };

typedef struct {
    int fd;
    int id;
    /* request */
    size_t sent;
    uint64_t t_send, t_last_token;
    /* response parsing */
    char head[8192];
    size_t head_len;
    int head_done, status, server_close;
    enum body_mode mode;
    long remaining;        /* B_LENGTH: body bytes left; chunked: bytes left in chunk */
    enum chunk_state cs;
    char line[64];
    size_t line_len;
    char *event;           /* the SSE event being accumulated */
    size_t event_len, event_cap;
    int tokens, finished_marker;
    uint32_t max_gap_us;
    int active;
} conn_t;

static struct {
    const char *host, *path;
    int port, concurrency;
    double duration, grace, stall_ms, stagger_ms;
    char *request;
    size_t request_len;
} opt = {"127.0.0.1", "/v1/chat/completions", 0, 100, 10, 30, 100, 0, NULL, 0};

static int epfd;
static vec_t ttft, gaps;
static long streams_ok, streams_started, stalls, incomplete, http_errors, conn_errors, tokens_total;
static uint64_t t_start, t_stop;
static int open_streams;

static void start_stream(conn_t *c);

static int connect_to(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt.port)};
    inet_pton(AF_INET, opt.host, &a.sin_addr);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

static void conn_reset_response(conn_t *c) {
    c->head_len = 0;
    c->head_done = c->status = c->server_close = 0;
    c->cs = CS_SIZE;
    c->line_len = 0;
    c->event_len = 0;
    c->tokens = c->finished_marker = 0;
    c->max_gap_us = 0;
    c->remaining = 0;
}

static void reconnect(conn_t *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = connect_to();
    if (c->fd < 0) { conn_errors++; return; }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
}

static void want_out(conn_t *c, int on) {
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* The stream ended (ok or not): record it, then start the next one or go idle. */
static void end_stream(conn_t *c, int ok, int need_reconnect) {
    if (!c->active) return;
    c->active = 0;
    open_streams--;
    if (ok) {
        streams_ok++;
        if (c->max_gap_us > opt.stall_ms * 1000) stalls++;
    } else {
        incomplete++;
    }
    if (need_reconnect || c->server_close) {
        reconnect(c);
        if (c->fd < 0) return;
    }
    if (now_ns() < t_stop) start_stream(c);
}

static void fail(conn_t *c) {
    conn_errors++;
    end_stream(c, 0, 1);
}

static void try_send(conn_t *c) {
    while (c->sent < opt.request_len) {
        uint64_t t = now_ns();
        ssize_t n = write(c->fd, opt.request + c->sent, opt.request_len - c->sent);
        if (n > 0) {
            if (c->sent == 0) c->t_send = t; /* not counting a connect still in progress */
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == ENOTCONN)) { want_out(c, 1); return; }
        fail(c);
        return;
    }
    want_out(c, 0);
}

static void start_stream(conn_t *c) {
    conn_reset_response(c);
    c->sent = 0;
    c->active = 1;
    open_streams++;
    streams_started++;
    c->t_send = now_ns();
    try_send(c);
}

static int event_has_token(const char *e, size_t n) {
    static const char *keys[] = {"\"content\":\"", "\"text\":\""};
    for (int k = 0; k < 2; k++) {
        size_t kl = strlen(keys[k]);
        const char *p = e, *end = e + n;
        while ((p = memmem(p, (size_t)(end - p), keys[k], kl))) {
            p += kl;
            if (p < end && *p != '"') return 1;
        }
    }
    return 0;
}

static void on_event(conn_t *c, uint64_t t) {
    const char *e = c->event;
    size_t n = c->event_len;
    if (memmem(e, n, "[DONE]", 6) || memmem(e, n, "message_stop", 12)) c->finished_marker = 1;
    if (!event_has_token(e, n)) return;
    tokens_total++;
    if (c->tokens == 0) {
        vec_push(&ttft, (uint32_t)((t - c->t_send) / 1000));
    } else {
        uint32_t g = (uint32_t)((t - c->t_last_token) / 1000);
        vec_push(&gaps, g);
        if (g > c->max_gap_us) c->max_gap_us = g;
    }
    c->tokens++;
    c->t_last_token = t;
}

/* Feed decoded body bytes to the SSE splitter. */
static void sse_feed(conn_t *c, const char *p, size_t n, uint64_t t) {
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '\r') continue;
        if (c->event_len + 1 > c->event_cap) {
            c->event_cap = c->event_cap ? c->event_cap * 2 : 4096;
            c->event = realloc(c->event, c->event_cap);
            if (!c->event) { perror("realloc"); exit(1); }
        }
        c->event[c->event_len++] = ch;
        if (ch == '\n' && c->event_len >= 2 && c->event[c->event_len - 2] == '\n') {
            on_event(c, t);
            c->event_len = 0;
        }
    }
}

static void body_done(conn_t *c) {
    if (c->event_len) { /* a last event without the blank line */
        on_event(c, now_ns());
        c->event_len = 0;
    }
    int ok = c->status == 200 && c->finished_marker && c->tokens > 0;
    if (c->status != 200) http_errors++;
    end_stream(c, ok, 0);
}

/* Returns 1 when the response body has ended. */
static int body_feed(conn_t *c, const char *p, size_t n, uint64_t t) {
    size_t i = 0;
    if (c->mode == B_CLOSE) { sse_feed(c, p, n, t); return 0; }
    if (c->mode == B_LENGTH) {
        size_t take = (size_t)c->remaining < n ? (size_t)c->remaining : n;
        sse_feed(c, p, take, t);
        c->remaining -= (long)take;
        return c->remaining == 0;
    }
    while (i < n) {
        switch (c->cs) {
        case CS_SIZE:
        case CS_TRAILER:
        case CS_DATA_CRLF: {
            char ch = p[i++];
            if (ch != '\n') {
                if (c->line_len < sizeof c->line - 1) c->line[c->line_len++] = ch;
                continue;
            }
            c->line[c->line_len] = 0;
            if (c->line_len && c->line[c->line_len - 1] == '\r') c->line[--c->line_len] = 0;
            if (c->cs == CS_DATA_CRLF) { c->cs = CS_SIZE; c->line_len = 0; continue; }
            if (c->cs == CS_TRAILER) {
                if (c->line_len == 0) return 1;
                c->line_len = 0;
                continue;
            }
            c->remaining = strtol(c->line, NULL, 16);
            c->line_len = 0;
            c->cs = c->remaining == 0 ? CS_TRAILER : CS_DATA;
            continue;
        }
        case CS_DATA: {
            size_t take = n - i < (size_t)c->remaining ? n - i : (size_t)c->remaining;
            sse_feed(c, p + i, take, t);
            i += take;
            c->remaining -= (long)take;
            if (c->remaining == 0) c->cs = CS_DATA_CRLF;
            continue;
        }
        }
    }
    return 0;
}

static const char *hdr(const char *h, const char *name, size_t *vl) {
    size_t nl = strlen(name);
    const char *p = strstr(h, "\r\n");
    while (p) {
        p += 2;
        if (!strncasecmp(p, name, nl) && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            *vl = e ? (size_t)(e - v) : strlen(v);
            return v;
        }
        p = strstr(p, "\r\n");
    }
    return NULL;
}

static void on_readable(conn_t *c) {
    char buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof buf);
        uint64_t t = now_ns();
        if (n == 0) {
            if (c->active && c->head_done && c->mode == B_CLOSE) {
                c->server_close = 1;
                body_done(c);
            } else if (c->active) {
                fail(c);
            } else if (now_ns() < t_stop) {
                reconnect(c);
            } else { /* the run is over: let the idle connection go */
                close(c->fd);
                c->fd = -1;
            }
            return;
        }
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) return;
            fail(c);
            return;
        }
        if (!c->active) continue; /* stray bytes after the run ended */
        size_t off = 0;
        if (!c->head_done) {
            size_t take = (size_t)n;
            if (c->head_len + take > sizeof c->head - 1) take = sizeof c->head - 1 - c->head_len;
            memcpy(c->head + c->head_len, buf, take);
            c->head_len += take;
            c->head[c->head_len] = 0;
            char *e = strstr(c->head, "\r\n\r\n");
            if (!e) {
                if (c->head_len >= sizeof c->head - 1) { fail(c); return; }
                continue;
            }
            size_t hl = (size_t)(e - c->head) + 4;
            off = take - (c->head_len - hl);
            c->head[hl - 2] = 0;
            c->head_done = 1;
            c->status = atoi(c->head + 9);
            size_t vl;
            const char *v;
            if ((v = hdr(c->head, "connection", &vl)) && vl >= 5 && !strncasecmp(v, "close", 5))
                c->server_close = 1;
            if ((v = hdr(c->head, "transfer-encoding", &vl)) && vl >= 7 && !strncasecmp(v, "chunked", 7))
                c->mode = B_CHUNKED;
            else if ((v = hdr(c->head, "content-length", &vl))) {
                c->mode = B_LENGTH;
                c->remaining = atol(v);
                if (c->remaining == 0) { body_done(c); return; }
            } else {
                c->mode = B_CLOSE;
                c->server_close = 1;
            }
        }
        if (body_feed(c, buf + off, (size_t)n - off, t)) {
            body_done(c);
            return;
        }
    }
}

static void pct_json(const char *name, vec_t *a, int last) {
    qsort(a->v, a->len, sizeof *a->v, cmp_u32);
    double sum = 0;
    for (size_t i = 0; i < a->len; i++) sum += a->v[i];
    printf("\"%s\":{\"count\":%zu", name, a->len);
    if (a->len) {
        const double ps[] = {50, 90, 99, 99.9};
        const char *pn[] = {"p50", "p90", "p99", "p999"};
        for (int i = 0; i < 4; i++) {
            size_t idx = (size_t)(ps[i] / 100.0 * (double)(a->len - 1) + 0.5);
            printf(",\"%s_us\":%u", pn[i], a->v[idx]);
        }
        printf(",\"mean_us\":%.1f,\"max_us\":%u", sum / (double)a->len, a->v[a->len - 1]);
    }
    printf("}%s", last ? "" : ",");
}

static void usage(void) {
    fprintf(stderr, "usage: stream_client --port P --body-file F [--host H] [--path P] "
                    "[--header 'K: V']... [--concurrency N] [--duration S] [--grace S] "
                    "[--stall-ms MS] [--stagger-ms MS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *body_file = NULL;
    char headers[8192] = "";
    size_t hlen = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *a = argv[i], *v = argv[++i];
        if (!strcmp(a, "--host")) opt.host = v;
        else if (!strcmp(a, "--port")) opt.port = atoi(v);
        else if (!strcmp(a, "--path")) opt.path = v;
        else if (!strcmp(a, "--body-file")) body_file = v;
        else if (!strcmp(a, "--concurrency")) opt.concurrency = atoi(v);
        else if (!strcmp(a, "--duration")) opt.duration = atof(v);
        else if (!strcmp(a, "--grace")) opt.grace = atof(v);
        else if (!strcmp(a, "--stall-ms")) opt.stall_ms = atof(v);
        else if (!strcmp(a, "--stagger-ms")) opt.stagger_ms = atof(v);
        else if (!strcmp(a, "--header")) {
            int w = snprintf(headers + hlen, sizeof headers - hlen, "%s\r\n", v);
            if (w < 0 || (size_t)w >= sizeof headers - hlen) usage();
            hlen += (size_t)w;
        } else usage();
    }
    if (!opt.port || !body_file) usage();
    FILE *f = fopen(body_file, "rb");
    if (!f) { perror(body_file); return 1; }
    fseek(f, 0, SEEK_END);
    long blen = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc((size_t)blen + 1);
    if (fread(body, 1, (size_t)blen, f) != (size_t)blen) { perror("read body"); return 1; }
    fclose(f);
    size_t cap = (size_t)blen + hlen + 512;
    opt.request = malloc(cap);
    int w = snprintf(opt.request, cap,
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Accept: text/event-stream\r\nContent-Length: %ld\r\n%s\r\n",
                     opt.path, opt.host, opt.port, blen, headers);
    memcpy(opt.request + w, body, (size_t)blen);
    opt.request_len = (size_t)w + (size_t)blen;

    signal(SIGPIPE, SIG_IGN);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    conn_t *conns = calloc((size_t)opt.concurrency, sizeof *conns);
    t_start = now_ns();
    t_stop = t_start + (uint64_t)(opt.duration * 1e9);
    uint64_t t_hard = t_stop + (uint64_t)(opt.grace * 1e9);
    for (int i = 0; i < opt.concurrency; i++) {
        conns[i].fd = -1;
        conns[i].id = i;
        reconnect(&conns[i]);
    }
    /* Connection i opens its first stream i/N of --stagger-ms late, so that streams with
     * equal chunk gaps do not all emit their chunks in the same instant. */
    int next_start = 0;
    struct epoll_event evs[256];
    while (open_streams > 0 || next_start < opt.concurrency) {
        uint64_t now = now_ns();
        if (now >= t_hard) break;
        int timeout_ms = 100;
        while (next_start < opt.concurrency) {
            uint64_t at = t_start + (uint64_t)(opt.stagger_ms * 1e6 * next_start / opt.concurrency);
            if (at > now) {
                timeout_ms = (int)((at - now) / 1000000);
                break;
            }
            if (conns[next_start].fd >= 0) start_stream(&conns[next_start]);
            next_start++;
        }
        int n = epoll_wait(epfd, evs, 256, timeout_ms);
        for (int i = 0; i < n; i++) {
            conn_t *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) {
                if (c->active && c->sent < opt.request_len) try_send(c);
                else want_out(c, 0);
            }
            if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
    uint64_t t_end = now_ns();
    long unfinished = 0;
    for (int i = 0; i < opt.concurrency; i++) {
        if (conns[i].active) unfinished++;
        if (conns[i].fd >= 0) close(conns[i].fd);
    }
    printf("{\"concurrency\":%d,\"duration_s\":%.3f,\"streams_started\":%ld,\"streams_ok\":%ld,"
           "\"incomplete\":%ld,\"unfinished\":%ld,\"stalls\":%ld,\"http_errors\":%ld,"
           "\"conn_errors\":%ld,\"token_events\":%ld,\"streams_per_s\":%.2f,",
           opt.concurrency, (double)(t_end - t_start) / 1e9, streams_started, streams_ok,
           incomplete, unfinished, stalls + unfinished, http_errors, conn_errors, tokens_total,
           (double)streams_ok / ((double)(t_end - t_start) / 1e9));
    pct_json("ttft", &ttft, 0);
    pct_json("gap", &gaps, 1);
    printf("}\n");
    return 0;
}
