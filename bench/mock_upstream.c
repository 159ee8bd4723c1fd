/*
 * mock_upstream: a small, fast, single-threaded LLM upstream for benchmarks.
 *
 * Speaks just enough HTTP/1.1 (keep-alive, pipelining, Content-Length and chunked request
 * bodies) to answer:
 *   POST /v1/chat/completions   OpenAI chat: JSON, or SSE when the body has "stream": true
 *                               (content chunks, a finish chunk, a usage chunk, data: [DONE])
 *   POST /v1/messages           Anthropic messages: JSON, or the SSE event sequence
 *                               message_start ... message_stop
 *   POST /v1/responses          OpenAI Responses: JSON (the direct baseline of scenario g)
 *   POST /v1/embeddings         OpenAI embeddings: one 64-dimension vector per input string, a
 *                               hashed bag of its lowercased words (texts sharing words are
 *                               similar), answered at once (no --latency-ms)
 *   GET  /v1/models             OpenAI model list
 *   GET  /health                200
 *
 * Every delay (upstream latency, gap between stream chunks) is a timer in the epoll loop
 * (one timerfd armed to the earliest deadline of a min-heap), never a sleep, so one thread
 * serves thousands of concurrent slow responses.
 *
 *   mock_upstream [--host 127.0.0.1] [--port 9000] [--latency-ms 0] [--size 64]
 *                 [--chunks 16] [--gap-ms 0] [--model NAME]
 *
 * --size is the number of characters of generated text; a stream splits it over --chunks
 * content chunks, the first sent after --latency-ms, the rest --gap-ms apart.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_FDS 65536
#define MAX_REQUEST (16 * 1024 * 1024)
#define MAX_MODEL 128

/* ---- configuration ------------------------------------------------------------------ */

static struct {
    const char *host;
    int port;
    double latency_ms;
    long size;
    int chunks;
    double gap_ms;
    const char *model;
} cfg = {"127.0.0.1", 9000, 0.0, 64, 16, 0.0, NULL};

static char *text;          /* cfg.size characters of JSON-safe text */
static unsigned long long served;
static volatile sig_atomic_t stopping;

/* ---- growable byte buffer ---------------------------------------------------------- */

typedef struct {
    char *data;
    size_t len, cap, off; /* off: bytes already consumed from the front */
} buf_t;

static void buf_reserve(buf_t *b, size_t extra) {
    if (b->off && b->off == b->len) b->off = b->len = 0;
    if (b->len + extra <= b->cap) return;
    if (b->off) { /* compact before growing */
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + extra <= b->cap) return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + extra) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) { perror("realloc"); exit(1); }
    b->data = d;
    b->cap = cap;
}

static void buf_put(buf_t *b, const char *s, size_t n) {
    buf_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        size_t room = b->cap - b->len;
        va_start(ap, fmt);
        int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n < room) { b->len += (size_t)n; return; }
        buf_reserve(b, (size_t)n + 1);
    }
}

/* ---- connections ---------------------------------------------------------------------- */

enum kind { K_NONE, K_OPENAI_STREAM, K_ANTHROPIC_STREAM, K_OPENAI_JSON, K_ANTHROPIC_JSON, K_RESPONSES_JSON };

typedef struct {
    int fd;
    uint32_t gen;        /* bumps on close, so stale timers are ignored */
    int busy;            /* a response is pending or streaming: later requests wait */
    int close_after;     /* Connection: close */
    int want_out;        /* EPOLLOUT registered */
    buf_t in, out;
    /* the response in progress */
    enum kind kind;
    int chunk;           /* next stream chunk index */
    long prompt_tokens;
    unsigned long long id;
    char model[MAX_MODEL];
} conn_t;

static conn_t *conns[MAX_FDS];
static int epfd, tfd, lfd;

/* ---- timers: a min-heap of (deadline, fd, gen) ---------------------------------------- */

typedef struct { uint64_t at; int fd; uint32_t gen; } timer_t_;
static timer_t_ *heap;
static size_t heap_len, heap_cap;
static uint64_t armed_at;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void heap_push(uint64_t at, int fd, uint32_t gen) {
    if (heap_len == heap_cap) {
        heap_cap = heap_cap ? heap_cap * 2 : 1024;
        heap = realloc(heap, heap_cap * sizeof *heap);
        if (!heap) { perror("realloc"); exit(1); }
    }
    size_t i = heap_len++;
    while (i) {
        size_t p = (i - 1) / 2;
        if (heap[p].at <= at) break;
        heap[i] = heap[p];
        i = p;
    }
    heap[i] = (timer_t_){at, fd, gen};
}

static timer_t_ heap_pop(void) {
    timer_t_ top = heap[0], last = heap[--heap_len];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= heap_len) break;
        if (c + 1 < heap_len && heap[c + 1].at < heap[c].at) c++;
        if (heap[c].at >= last.at) break;
        heap[i] = heap[c];
        i = c;
    }
    if (heap_len) heap[i] = last;
    return top;
}

static void arm_timerfd(void) {
    uint64_t at = heap_len ? heap[0].at : 0;
    if (at == armed_at) return;
    struct itimerspec its = {0};
    if (at) {
        its.it_value.tv_sec = (time_t)(at / 1000000000ull);
        its.it_value.tv_nsec = (long)(at % 1000000000ull);
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
    armed_at = at;
}

static void schedule(conn_t *c, double delay_ms) {
    heap_push(now_ns() + (uint64_t)(delay_ms * 1e6), c->fd, c->gen);
}

/* ---- I/O ------------------------------------------------------------------------------- */

static void conn_close(conn_t *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->gen++;
    c->busy = c->close_after = c->want_out = 0;
    c->in.len = c->in.off = 0;
    c->out.len = c->out.off = 0;
    c->kind = K_NONE;
}

static void set_out_interest(conn_t *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0), .data.fd = c->fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Returns 0 if the connection is still open. */
static int flush_out(conn_t *c) {
    while (c->out.off < c->out.len) {
        ssize_t n = write(c->fd, c->out.data + c->out.off, c->out.len - c->out.off);
        if (n > 0) { c->out.off += (size_t)n; continue; }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) { set_out_interest(c, 1); return 0; }
        conn_close(c);
        return -1;
    }
    c->out.off = c->out.len = 0;
    set_out_interest(c, 0);
    if (!c->busy && c->close_after) { conn_close(c); return -1; }
    return 0;
}

/* ---- response bodies ----------------------------------------------------------------- */

static const char *WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod ";

static void make_text(void) {
    text = malloc((size_t)cfg.size + 1);
    size_t wl = strlen(WORDS);
    for (long i = 0; i < cfg.size; i++) text[i] = WORDS[i % wl];
    text[cfg.size] = 0;
}

/* The slice of generated text carried by stream chunk i of n. */
static void chunk_slice(int i, int n, const char **s, long *len) {
    long base = cfg.size / n, extra = cfg.size % n;
    long start = i * base + (i < extra ? i : extra);
    *len = base + (i < extra ? 1 : 0);
    *s = text + start;
}

static long completion_tokens(void) { return cfg.size / 4 + 1; }

static void http_head(conn_t *c, int status, const char *reason, const char *ctype, long length) {
    buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n", status, reason, ctype);
    if (length >= 0)
        buf_printf(&c->out, "Content-Length: %ld\r\n", length);
    else
        buf_printf(&c->out, "Transfer-Encoding: chunked\r\nCache-Control: no-cache\r\n");
    buf_printf(&c->out, "Connection: %s\r\n\r\n", c->close_after ? "close" : "keep-alive");
}

static void respond_simple(conn_t *c, int status, const char *reason, const char *body) {
    http_head(c, status, reason, "application/json", (long)strlen(body));
    buf_put(&c->out, body, strlen(body));
}

/* Append one HTTP chunk whose payload is built by the caller into scratch. */
static buf_t scratch;

static void put_http_chunk(conn_t *c) {
    buf_printf(&c->out, "%zx\r\n", scratch.len);
    buf_put(&c->out, scratch.data, scratch.len);
    buf_put(&c->out, "\r\n", 2);
    scratch.len = 0;
}

static void openai_json(conn_t *c) {
    scratch.len = 0;
    long ct = completion_tokens();
    buf_printf(&scratch,
               "{\"id\":\"chatcmpl-mock%llu\",\"object\":\"chat.completion\",\"created\":1700000000,"
               "\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
               "\"content\":\"%s\"},\"logprobs\":null,\"finish_reason\":\"stop\"}],"
               "\"usage\":{\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
               c->id, c->model, text, c->prompt_tokens, ct, c->prompt_tokens + ct);
    http_head(c, 200, "OK", "application/json", (long)scratch.len);
    buf_put(&c->out, scratch.data, scratch.len);
    scratch.len = 0;
}

static void anthropic_json(conn_t *c) {
    scratch.len = 0;
    buf_printf(&scratch,
               "{\"id\":\"msg_mock%llu\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\","
               "\"content\":[{\"type\":\"text\",\"text\":\"%s\"}],\"stop_reason\":\"end_turn\","
               "\"stop_sequence\":null,\"usage\":{\"input_tokens\":%ld,\"output_tokens\":%ld}}",
               c->id, c->model, text, c->prompt_tokens, completion_tokens());
    http_head(c, 200, "OK", "application/json", (long)scratch.len);
    buf_put(&c->out, scratch.data, scratch.len);
    scratch.len = 0;
}

static void responses_json(conn_t *c) {
    scratch.len = 0;
    long ct = completion_tokens();
    buf_printf(&scratch,
               "{\"id\":\"resp_mock%llu\",\"object\":\"response\",\"created_at\":1700000000,"
               "\"status\":\"completed\",\"model\":\"%s\",\"output\":[{\"type\":\"message\","
               "\"id\":\"msg_mock%llu\",\"status\":\"completed\",\"role\":\"assistant\",\"content\":"
               "[{\"type\":\"output_text\",\"text\":\"%s\",\"annotations\":[]}]}],"
               "\"usage\":{\"input_tokens\":%ld,\"input_tokens_details\":{\"cached_tokens\":0},"
               "\"output_tokens\":%ld,\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":%ld}}",
               c->id, c->model, c->id, text, c->prompt_tokens, ct, c->prompt_tokens + ct);
    http_head(c, 200, "OK", "application/json", (long)scratch.len);
    buf_put(&c->out, scratch.data, scratch.len);
    scratch.len = 0;
}

static void openai_chunk(conn_t *c, int i) {
    const char *s;
    long n;
    chunk_slice(i, cfg.chunks, &s, &n);
    buf_printf(&scratch,
               "data: {\"id\":\"chatcmpl-mock%llu\",\"object\":\"chat.completion.chunk\","
               "\"created\":1700000000,\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{%s"
               "\"content\":\"%.*s\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n",
               c->id, c->model, i == 0 ? "\"role\":\"assistant\"," : "", (int)n, s);
    if (i == cfg.chunks - 1) {
        long ct = completion_tokens();
        buf_printf(&scratch,
                   "data: {\"id\":\"chatcmpl-mock%llu\",\"object\":\"chat.completion.chunk\","
                   "\"created\":1700000000,\"model\":\"%s\",\"choices\":[{\"index\":0,\"delta\":{},"
                   "\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n"
                   "data: {\"id\":\"chatcmpl-mock%llu\",\"object\":\"chat.completion.chunk\","
                   "\"created\":1700000000,\"model\":\"%s\",\"choices\":[],\"usage\":{"
                   "\"prompt_tokens\":%ld,\"completion_tokens\":%ld,\"total_tokens\":%ld}}\n\n"
                   "data: [DONE]\n\n",
                   c->id, c->model, c->id, c->model, c->prompt_tokens, ct, c->prompt_tokens + ct);
    }
    put_http_chunk(c);
}

static void anthropic_chunk(conn_t *c, int i) {
    const char *s;
    long n;
    chunk_slice(i, cfg.chunks, &s, &n);
    if (i == 0)
        buf_printf(&scratch,
                   "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{"
                   "\"id\":\"msg_mock%llu\",\"type\":\"message\",\"role\":\"assistant\","
                   "\"model\":\"%s\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
                   "\"usage\":{\"input_tokens\":%ld,\"output_tokens\":1}}}\n\n"
                   "event: content_block_start\ndata: {\"type\":\"content_block_start\","
                   "\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
                   c->id, c->model, c->prompt_tokens);
    buf_printf(&scratch,
               "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
               "\"delta\":{\"type\":\"text_delta\",\"text\":\"%.*s\"}}\n\n",
               (int)n, s);
    if (i == cfg.chunks - 1)
        buf_printf(&scratch,
                   "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
                   "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{"
                   "\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{"
                   "\"output_tokens\":%ld}}\n\n"
                   "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
                   completion_tokens());
    put_http_chunk(c);
}


/* ---- embeddings: a hashed bag of words per input string ------------------------------------ */

#define EMBED_DIMS 64

static void embed_text(const char *p, const char *end, double *v) {
    memset(v, 0, sizeof(double) * EMBED_DIMS);
    uint32_t h = 2166136261u;
    int in_word = 0;
    for (; p <= end; p++) {
        int ch = p < end ? (unsigned char)*p : ' ';
        if (ch == '\\' && p + 1 < end) { p++; ch = ' '; } /* an escape ends a word */
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (alnum) {
            if (ch >= 'A' && ch <= 'Z') ch += 32;
            h = (h ^ (uint32_t)ch) * 16777619u;
            in_word = 1;
        } else if (in_word) {
            v[h % EMBED_DIMS] += 1.0;
            h = 2166136261u;
            in_word = 0;
        }
    }
}

/* The end of the JSON string starting after its opening quote at p (the closing quote). */
static const char *string_end(const char *p, const char *end) {
    while (p < end && *p != '"') p += (*p == '\\') ? 2 : 1;
    return p < end ? p : end;
}

static void respond_embeddings(conn_t *c, const char *b, size_t n) {
    const char *end = b + n, *p = memmem(b, n, "\"input\"", 7);
    double v[EMBED_DIMS];
    int count = 0;
    long tokens = 0;
    scratch.len = 0;
    buf_printf(&scratch, "{\"object\":\"list\",\"data\":[");
    if (p) {
        p += 7;
        while (p < end && *p != '"' && *p != '[') p++;
        int list = p < end && *p == '[';
        for (; p < end; p++) {
            if (*p == ']' && list) break;
            if (*p != '"') continue;
            const char *s = p + 1, *e = string_end(s, end);
            embed_text(s, e, v);
            tokens += (long)(e - s) / 4 + 1;
            buf_printf(&scratch, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":[", count ? "," : "", count);
            for (int i = 0; i < EMBED_DIMS; i++) buf_printf(&scratch, i ? ",%.1f" : "%.1f", v[i]);
            buf_printf(&scratch, "]}");
            count++;
            p = e;
            if (!list) break;
        }
    }
    buf_printf(&scratch, "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%ld,\"total_tokens\":%ld}}",
               cfg.model ? cfg.model : "mock-embed", tokens, tokens);
    http_head(c, 200, "OK", "application/json", (long)scratch.len);
    buf_put(&c->out, scratch.data, scratch.len);
    scratch.len = 0;
}

static void process_input(conn_t *c);

/* Called when a pending response is due (immediately when there is no delay). */
static void advance(conn_t *c) {
    switch (c->kind) {
    case K_OPENAI_JSON: openai_json(c); c->busy = 0; break;
    case K_ANTHROPIC_JSON: anthropic_json(c); c->busy = 0; break;
    case K_RESPONSES_JSON: responses_json(c); c->busy = 0; break;
    case K_OPENAI_STREAM:
    case K_ANTHROPIC_STREAM:
        if (c->chunk == 0)
            http_head(c, 200, "OK", "text/event-stream", -1);
        for (;;) {
            if (c->kind == K_OPENAI_STREAM) openai_chunk(c, c->chunk);
            else anthropic_chunk(c, c->chunk);
            c->chunk++;
            if (c->chunk >= cfg.chunks) {
                buf_put(&c->out, "0\r\n\r\n", 5);
                c->busy = 0;
                break;
            }
            if (cfg.gap_ms > 0) { schedule(c, cfg.gap_ms); break; }
        }
        break;
    default: c->busy = 0; break;
    }
    if (!c->busy) { c->kind = K_NONE; served++; }
    if (flush_out(c) == 0 && !c->busy) process_input(c);
}

/* ---- request parsing ------------------------------------------------------------------ */

static const char *find_header(const char *h, size_t hlen, const char *name, size_t *vlen) {
    size_t nl = strlen(name);
    const char *p = h, *end = h + hlen;
    while (p < end) {
        const char *eol = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!eol) eol = end;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t')) v++;
            *vlen = (size_t)(eol - v);
            return v;
        }
        p = eol + 2;
    }
    return NULL;
}

/* Decode a chunked body starting at p; returns bytes consumed or 0 if incomplete, -1 bad.
 * The decoded body is written into dst (which must have room for avail bytes). */
static long dechunk(const char *p, size_t avail, char *dst, size_t *dlen) {
    size_t i = 0;
    *dlen = 0;
    for (;;) {
        const char *eol = memmem(p + i, avail - i, "\r\n", 2);
        if (!eol) return 0;
        char *endp;
        unsigned long sz = strtoul(p + i, &endp, 16);
        if (endp == p + i) return -1;
        i = (size_t)(eol - p) + 2;
        if (sz == 0) {
            /* skip trailers up to the blank line */
            for (;;) {
                const char *e2 = memmem(p + i, avail - i, "\r\n", 2);
                if (!e2) return 0;
                size_t l = (size_t)(e2 - (p + i));
                i += l + 2;
                if (l == 0) return (long)i;
            }
        }
        if (avail - i < sz + 2) return 0;
        memcpy(dst + *dlen, p + i, sz);
        *dlen += sz;
        i += sz + 2;
    }
}

static int body_wants_stream(const char *b, size_t n) {
    const char *p = b, *end = b + n;
    while ((p = memmem(p, (size_t)(end - p), "\"stream\"", 8))) {
        p += 8;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (p >= end || *p != ':') continue;
        p++;
        while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
        if (end - p >= 4 && memcmp(p, "true", 4) == 0) return 1;
    }
    return 0;
}

static void body_model(const char *b, size_t n, char *out) {
    const char *p = memmem(b, n, "\"model\"", 7), *end = b + n;
    strcpy(out, cfg.model ? cfg.model : "mock-model");
    if (cfg.model || !p) return;
    p += 7;
    while (p < end && (*p == ' ' || *p == ':' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    if (p >= end || *p != '"') return;
    p++;
    size_t i = 0;
    while (p < end && *p != '"' && *p != '\\' && i < MAX_MODEL - 1) out[i++] = *p++;
    out[i] = 0;
}

static const char *MODELS_BODY =
    "{\"object\":\"list\",\"data\":[{\"id\":\"mock-model\",\"object\":\"model\","
    "\"created\":1700000000,\"owned_by\":\"mock\"}]}";

static unsigned long long next_id;
static buf_t body_scratch;

/* Parse and dispatch as many complete requests as possible (one at a time: a pending
 * response blocks the next one, as HTTP/1.1 ordering requires). */
static void process_input(conn_t *c) {
    while (!c->busy && c->in.len > c->in.off) {
        const char *req = c->in.data + c->in.off;
        size_t avail = c->in.len - c->in.off;
        const char *hend = memmem(req, avail, "\r\n\r\n", 4);
        if (!hend) {
            if (avail > 65536) { conn_close(c); }
            return;
        }
        size_t hlen = (size_t)(hend - req) + 4;
        const char *line_end = memmem(req, hlen, "\r\n", 2);
        const char *sp1 = memchr(req, ' ', (size_t)(line_end - req));
        if (!sp1) { conn_close(c); return; }
        const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(line_end - sp1 - 1));
        if (!sp2) { conn_close(c); return; }
        const char *method = req;
        size_t mlen = (size_t)(sp1 - req);
        const char *path = sp1 + 1;
        size_t plen = (size_t)(sp2 - path);
        const char *q = memchr(path, '?', plen);
        if (q) plen = (size_t)(q - path);
        int http10 = (line_end - sp2 - 1 == 8) && memcmp(sp2 + 1, "HTTP/1.0", 8) == 0;

        const char *hdrs = line_end + 2;
        size_t hdrs_len = (size_t)(hend + 2 - hdrs);
        size_t vlen;
        const char *v;
        const char *body = req + hlen;
        size_t blen = 0, consumed = hlen;
        if ((v = find_header(hdrs, hdrs_len, "transfer-encoding", &vlen)) && vlen >= 7 &&
            strncasecmp(v, "chunked", 7) == 0) {
            buf_reserve(&body_scratch, avail);
            long used = dechunk(req + hlen, avail - hlen, body_scratch.data, &blen);
            if (used < 0) { conn_close(c); return; }
            if (used == 0) {
                if (avail > MAX_REQUEST) conn_close(c);
                return;
            }
            body = body_scratch.data;
            consumed += (size_t)used;
        } else if ((v = find_header(hdrs, hdrs_len, "content-length", &vlen))) {
            blen = strtoul(v, NULL, 10);
            if (blen > MAX_REQUEST) { conn_close(c); return; }
            if (avail - hlen < blen) return; /* wait for the rest of the body */
            consumed += blen;
        }
        v = find_header(hdrs, hdrs_len, "connection", &vlen);
        if (http10)
            c->close_after = !(v && vlen >= 10 && strncasecmp(v, "keep-alive", 10) == 0);
        else
            c->close_after = v && vlen >= 5 && strncasecmp(v, "close", 5) == 0;

        /* dispatch (body still points into c->in or body_scratch; consume afterwards) */
        c->kind = K_NONE;
        int is_post = mlen == 4 && memcmp(method, "POST", 4) == 0;
        int is_get = mlen == 3 && memcmp(method, "GET", 3) == 0;
        if (is_post && plen == 20 && memcmp(path, "/v1/chat/completions", 20) == 0)
            c->kind = body_wants_stream(body, blen) ? K_OPENAI_STREAM : K_OPENAI_JSON;
        else if (is_post && plen == 12 && memcmp(path, "/v1/messages", 12) == 0)
            c->kind = body_wants_stream(body, blen) ? K_ANTHROPIC_STREAM : K_ANTHROPIC_JSON;
        else if (is_post && plen == 13 && memcmp(path, "/v1/responses", 13) == 0)
            c->kind = K_RESPONSES_JSON;

        if (c->kind != K_NONE) {
            body_model(body, blen, c->model);
            c->prompt_tokens = (long)(blen / 4) + 1;
            c->id = ++next_id;
            c->chunk = 0;
            c->busy = 1;
            c->in.off += consumed;
            if (cfg.latency_ms > 0) {
                schedule(c, cfg.latency_ms);
                return;
            }
            advance(c); /* may recurse into process_input for pipelined requests */
            return;
        }
        int embeddings = is_post && plen == 14 && memcmp(path, "/v1/embeddings", 14) == 0;
        if (embeddings)
            respond_embeddings(c, body, blen); /* before consuming: body may point into c->in */
        c->in.off += consumed;
        if (embeddings)
            ; /* answered above */
        else if (is_get && plen == 10 && memcmp(path, "/v1/models", 10) == 0)
            respond_simple(c, 200, "OK", MODELS_BODY);
        else if (is_get && plen == 7 && memcmp(path, "/health", 7) == 0)
            respond_simple(c, 200, "OK", "{\"status\":\"ok\"}");
        else
            respond_simple(c, 404, "Not Found",
                           "{\"error\":{\"message\":\"not found\",\"type\":\"invalid_request_error\"}}");
        served++;
        if (flush_out(c) != 0) return;
    }
    if (c->in.off == c->in.len) c->in.off = c->in.len = 0;
}

static void on_readable(conn_t *c) {
    for (;;) {
        buf_reserve(&c->in, 16384);
        size_t room = c->in.cap - c->in.len;
        ssize_t n = read(c->fd, c->in.data + c->in.len, room);
        if (n > 0) {
            c->in.len += (size_t)n;
            if ((size_t)n < room) break; /* drained the socket */
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        conn_close(c); /* EOF or error */
        return;
    }
    process_input(c);
}

static void on_accept(void) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR) continue;
            return; /* EAGAIN, or EMFILE etc.: try again on the next event */
        }
        if (fd >= MAX_FDS) { close(fd); continue; }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        conn_t *c = conns[fd];
        if (!c) {
            c = calloc(1, sizeof *c);
            if (!c) { close(fd); continue; }
            conns[fd] = c;
        }
        c->fd = fd;
        c->busy = c->close_after = c->want_out = 0;
        c->in.len = c->in.off = c->out.len = c->out.off = 0;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = fd};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

static void on_timers(void) {
    uint64_t expirations;
    if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) perror("timerfd read");
    armed_at = 0; /* the kernel disarmed it */
    uint64_t now = now_ns();
    while (heap_len && heap[0].at <= now) {
        timer_t_ t = heap_pop();
        conn_t *c = conns[t.fd];
        if (c && c->gen == t.gen && c->busy) advance(c);
    }
}

/* ---- main ----------------------------------------------------------------------------- */

static void on_signal(int sig) { (void)sig; stopping = 1; }

static void usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--host H] [--port P] [--latency-ms MS] [--size CHARS] [--chunks N]\n"
            "          [--gap-ms MS] [--model NAME]\n",
            argv0);
    exit(2);
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(a, "--host")) cfg.host = v;
        else if (!strcmp(a, "--port")) cfg.port = atoi(v);
        else if (!strcmp(a, "--latency-ms")) cfg.latency_ms = atof(v);
        else if (!strcmp(a, "--size")) cfg.size = atol(v);
        else if (!strcmp(a, "--chunks")) cfg.chunks = atoi(v);
        else if (!strcmp(a, "--gap-ms")) cfg.gap_ms = atof(v);
        else if (!strcmp(a, "--model")) cfg.model = v;
        else usage(argv[0]);
    }
    if (cfg.chunks < 1) cfg.chunks = 1;
    if (cfg.size < 0) cfg.size = 0;
    make_text();

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)cfg.port)};
    if (inet_pton(AF_INET, cfg.host, &addr.sin_addr) != 1) { fprintf(stderr, "bad --host\n"); return 2; }
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("bind"); return 1; }
    if (listen(lfd, 4096) < 0) { perror("listen"); return 1; }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    ev.data.fd = tfd;
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);

    printf("mock_upstream listening on %s:%d latency_ms=%g size=%ld chunks=%d gap_ms=%g\n",
           cfg.host, ntohs(addr.sin_port), cfg.latency_ms, cfg.size, cfg.chunks, cfg.gap_ms);
    fflush(stdout);

    struct epoll_event events[512];
    while (!stopping) {
        arm_timerfd();
        int n = epoll_wait(epfd, events, 512, 1000);
        if (n < 0) {
            if (errno == EINTR) continue;
            perror("epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) { on_accept(); continue; }
            if (fd == tfd) { on_timers(); continue; }
            conn_t *c = conns[fd];
            if (!c) continue;
            uint32_t gen = c->gen;
            if (events[i].events & EPOLLOUT) {
                if (flush_out(c) != 0 || c->gen != gen) continue;
                if (!c->busy) process_input(c);
                if (c->gen != gen) continue;
            }
            if (events[i].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) on_readable(c);
        }
    }
    printf("mock_upstream served %llu responses\n", served);
    return 0;
}
