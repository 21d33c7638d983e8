/*
 * bench_stream - a load client for streamed responses that timestamps every
 * NDJSON line as it arrives, for many concurrent streams at once.
 *
 * It opens --streams connections (round-robin over the ports given) (at most --rate new ones per
 * second, all at once by default), sends the same POST on each (Connection: close), parses the
 * HTTP/1.1 response (chunked or Content-Length) and records, per stream, the time from the start of
 * its connect to its first complete line (time to first token) and the gap between consecutive
 * lines (inter-token delay). One thread, one epoll set, no allocation per chunk: the client's own
 * cost stays far below a millisecond per line even with 10,000 streams, and it is the same for
 * every contender it is pointed at.
 *
 * Prints one JSON object on stdout:
 *   {"streams":N,"completed":C,"failed":F,"lines":L,"wall_s":W,
 *    "ttft_ms":{"p50":..,"p90":..,"p99":..,"max":..},
 *    "gap_ms":{"p50":..,"p90":..,"p99":..,"p999":..,"max":..},
 *    "errors":{"connect":..,"status":..,"error_line":..,"reset":..,"timeout":..}}
 *
 * Usage: bench_stream --host 127.0.0.1 --port P[,P2,...] --path /api/chat
 *            --body JSON --streams N [--rate R] [--timeout S]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum phase { P_IDLE, P_CONNECTING, P_WRITING, P_HEAD, P_BODY, P_DONE };
enum body_mode { B_CHUNK_SIZE, B_CHUNK_EXT, B_CHUNK_DATA, B_CHUNK_CRLF, B_TRAILER, B_LENGTH };

struct conn {
    int fd;
    enum phase phase;
    size_t wrote;
    double t_start, t_last;
    unsigned lines;
    int status;
    /* head parsing: the status line's first bytes, and the header end */
    char first[16];
    unsigned first_len;
    unsigned crlf_state; /* matched bytes of "\r\n\r\n" */
    int chunked;
    long long remaining; /* chunk or Content-Length bytes left */
    enum body_mode mode;
    char hdr_line[64]; /* the current header line's start, for the framing headers */
    unsigned hdr_len;
    char line_start[8]; /* first bytes of the current body line: {"error" lines fail */
    unsigned line_len;
    int error_line;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

struct samples {
    double *v;
    size_t n, cap;
};

static void push(struct samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) {
            perror("realloc");
            exit(2);
        }
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const struct samples *s, double p)
{
    if (!s->n)
        return -1;
    size_t i = (size_t)(p / 100.0 * (double)(s->n - 1) + 0.5);
    return s->v[i < s->n ? i : s->n - 1];
}

static struct samples ttft, gaps;
static unsigned completed, failed, n_lines;
static unsigned err_connect, err_status, err_error_line, err_reset, err_timeout;
static struct sockaddr_in addrs[64];
static unsigned n_addrs;
static char *request;
static size_t request_len;
static int ep;

static void finish(struct conn *c, int ok)
{
    if (c->fd >= 0) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->phase = P_DONE;
    if (ok && c->status == 200 && !c->error_line && c->lines > 0) {
        completed++;
        return;
    }
    failed++;
    if (ok && c->status != 200)
        err_status++;
    else if (ok && c->error_line)
        err_error_line++;
}

static int start_conn(struct conn *c, unsigned idx)
{
    const struct sockaddr_in *addr = &addrs[idx % n_addrs];
    memset(c, 0, sizeof *c);
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    c->t_start = now_ms();
    if (c->fd < 0) {
        err_connect++;
        c->phase = P_DONE;
        failed++;
        return -1;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int rc = connect(c->fd, (const struct sockaddr *)addr, sizeof *addr);
    if (rc < 0 && errno != EINPROGRESS) {
        err_connect++;
        finish(c, 0);
        return -1;
    }
    c->phase = P_CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN | EPOLLRDHUP, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static void on_line_byte(struct conn *c, char ch, double t)
{
    if (ch == '\n') {
        if (c->line_len == 0)
            return; /* blank line (SSE separators): not a token */
        if (c->line_len >= 8 && memcmp(c->line_start, "{\"error\"", 8) == 0)
            c->error_line = 1;
        if (c->lines == 0)
            push(&ttft, t - c->t_start);
        else
            push(&gaps, t - c->t_last);
        c->t_last = t;
        c->lines++;
        n_lines++;
        c->line_len = 0;
        return;
    }
    if (c->line_len < sizeof c->line_start)
        c->line_start[c->line_len] = ch;
    c->line_len++;
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Returns 1 when the response is complete. */
static int parse_body(struct conn *c, const char *p, size_t n, double t)
{
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        switch (c->mode) {
        case B_LENGTH:
            on_line_byte(c, ch, t);
            if (--c->remaining == 0)
                return 1;
            break;
        case B_CHUNK_SIZE: {
            int h = hexval(ch);
            if (h >= 0)
                c->remaining = c->remaining * 16 + h;
            else if (ch == ';')
                c->mode = B_CHUNK_EXT;
            else if (ch == '\n')
                c->mode = c->remaining ? B_CHUNK_DATA : B_TRAILER;
            break;
        }
        case B_CHUNK_EXT:
            if (ch == '\n')
                c->mode = c->remaining ? B_CHUNK_DATA : B_TRAILER;
            break;
        case B_CHUNK_DATA: {
            size_t take = n - i;
            if ((long long)take > c->remaining)
                take = (size_t)c->remaining;
            for (size_t k = 0; k < take; k++)
                on_line_byte(c, p[i + k], t);
            c->remaining -= (long long)take;
            i += take - 1;
            if (c->remaining == 0)
                c->mode = B_CHUNK_CRLF;
            break;
        }
        case B_CHUNK_CRLF:
            if (ch == '\n') {
                c->mode = B_CHUNK_SIZE;
                c->remaining = 0;
            }
            break;
        case B_TRAILER:
            /* "0\r\n" was seen; the trailer section ends with an empty line.
             * remaining counts the bytes of the current trailer line. */
            if (ch == '\n') {
                if (c->remaining == 0)
                    return 1;
                c->remaining = 0;
            } else if (ch != '\r') {
                c->remaining++;
            }
            break;
        }
    }
    return 0;
}

static void header_line(struct conn *c)
{
    char *l = c->hdr_line;
    if (c->hdr_len >= 26 && strncasecmp(l, "transfer-encoding: chunked", 26) == 0)
        c->chunked = 1;
    else if (c->hdr_len > 15 && strncasecmp(l, "content-length:", 15) == 0)
        c->remaining = atoll(l + 15);
}

/* Returns 1 when the response is complete. */
static int on_data(struct conn *c, const char *p, size_t n, double t)
{
    size_t i = 0;
    while (c->phase == P_HEAD && i < n) {
        char ch = p[i++];
        if (c->first_len < sizeof c->first - 1)
            c->first[c->first_len++] = ch;
        if (ch == '\n') {
            c->hdr_line[c->hdr_len < sizeof c->hdr_line ? c->hdr_len : sizeof c->hdr_line - 1] =
                '\0';
            header_line(c);
            c->hdr_len = 0;
        } else if (ch != '\r' && c->hdr_len < sizeof c->hdr_line - 1) {
            c->hdr_line[c->hdr_len++] = ch;
        }
        static const char end[] = "\r\n\r\n";
        c->crlf_state = ch == end[c->crlf_state] ? c->crlf_state + 1 : (ch == '\r' ? 1 : 0);
        if (c->crlf_state == 4) {
            c->first[c->first_len] = '\0';
            c->status = c->first_len > 12 ? atoi(c->first + 9) : 0;
            c->phase = P_BODY;
            if (c->chunked) {
                c->mode = B_CHUNK_SIZE;
                c->remaining = 0;
            } else {
                c->mode = B_LENGTH;
                if (c->remaining <= 0)
                    return 1;
            }
        }
    }
    if (c->phase == P_BODY && i < n)
        return parse_body(c, p + i, n - i, t);
    return 0;
}

static void on_event(struct conn *c, uint32_t events)
{
    static char buf[65536];
    if (c->phase == P_CONNECTING) {
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err) {
            err_connect++;
            finish(c, 0);
            return;
        }
        c->phase = P_WRITING;
    }
    if (c->phase == P_WRITING) {
        ssize_t w = write(c->fd, request + c->wrote, request_len - c->wrote);
        if (w < 0 && errno != EAGAIN) {
            err_reset++;
            finish(c, 0);
            return;
        }
        if (w > 0)
            c->wrote += (size_t)w;
        if (c->wrote == request_len) {
            c->phase = P_HEAD;
            struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.ptr = c};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
        return;
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf);
        if (r > 0) {
            if (on_data(c, buf, (size_t)r, now_ms())) {
                finish(c, 1);
                return;
            }
            if ((size_t)r < sizeof buf)
                return;
            continue;
        }
        if (r < 0 && errno == EAGAIN)
            return;
        /* EOF or reset before the response was complete */
        err_reset++;
        finish(c, 0);
        return;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_stream --port P --body JSON --streams N [--host H] [--path P] "
                    "[--rate R] [--timeout S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *path = "/api/chat", *body = NULL;
    const char *ports = NULL;
    unsigned streams = 1;
    double rate = 0, timeout_s = 120;
    for (int i = 1; i < argc; i += 2) { /* --flag value pairs */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        if (!strcmp(a, "--host"))
            host = v;
        else if (!strcmp(a, "--port"))
            ports = v;
        else if (!strcmp(a, "--path"))
            path = v;
        else if (!strcmp(a, "--body"))
            body = v;
        else if (!strcmp(a, "--streams"))
            streams = (unsigned)atoi(v);
        else if (!strcmp(a, "--rate"))
            rate = atof(v);
        else if (!strcmp(a, "--timeout"))
            timeout_s = atof(v);
        else
            usage();
    }
    if (!body || !ports || streams == 0)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Streams go round-robin over the ports (several nodes for "direct"). */
    int port = 0;
    for (const char *q = ports; *q && n_addrs < sizeof addrs / sizeof *addrs;) {
        port = atoi(q);
        if (port <= 0 || port > 65535)
            usage();
        struct sockaddr_in *a = &addrs[n_addrs++];
        memset(a, 0, sizeof *a);
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            usage();
        q = strchr(q, ',');
        if (!q)
            break;
        q++;
    }
    if (!n_addrs)
        usage();
    size_t blen = strlen(body);
    request_len = (size_t)snprintf(NULL, 0,
                                   "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                                   "application/json\r\nContent-Length: %zu\r\nConnection: "
                                   "close\r\n\r\n%s",
                                   path, host, port, blen, body);
    request = malloc(request_len + 1);
    if (!request)
        return 2;
    snprintf(request, request_len + 1,
             "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nContent-Length: "
             "%zu\r\nConnection: close\r\n\r\n%s",
             path, host, port, blen, body);

    struct conn *conns = calloc(streams, sizeof *conns);
    if (!conns)
        return 2;
    ep = epoll_create1(EPOLL_CLOEXEC);
    double t0 = now_ms();
    double deadline = t0 + timeout_s * 1000.0;
    unsigned started = 0, done = 0;
    struct epoll_event evs[512];
    while (done < streams) {
        double t = now_ms();
        if (t >= deadline)
            break;
        unsigned want = rate > 0 ? (unsigned)((t - t0) * rate / 1000.0) + 1 : streams;
        if (want > streams)
            want = streams;
        while (started < want) {
            start_conn(&conns[started], started);
            started++;
        }
        int wait_ms = started < streams ? 1 : 100;
        int n = epoll_wait(ep, evs, 512, wait_ms);
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
        done = completed + failed;
    }
    double wall = (now_ms() - t0) / 1000.0;
    for (unsigned i = 0; i < streams; i++) {
        if (conns[i].phase != P_DONE) {
            if (conns[i].phase != P_IDLE)
                finish(&conns[i], 0);
            else
                failed++;
            err_timeout++;
        }
    }
    qsort(ttft.v, ttft.n, sizeof *ttft.v, cmp_double);
    qsort(gaps.v, gaps.n, sizeof *gaps.v, cmp_double);
    printf("{\"streams\":%u,\"completed\":%u,\"failed\":%u,\"lines\":%u,\"wall_s\":%.3f,"
           "\"ttft_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"max\":%.3f},"
           "\"gap_ms\":{\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,\"p999\":%.3f,\"max\":%.3f},"
           "\"errors\":{\"connect\":%u,\"status\":%u,\"error_line\":%u,\"reset\":%u,"
           "\"timeout\":%u}}\n",
           streams, completed, failed, n_lines, wall, pct(&ttft, 50), pct(&ttft, 90),
           pct(&ttft, 99), pct(&ttft, 100), pct(&gaps, 50), pct(&gaps, 90), pct(&gaps, 99),
           pct(&gaps, 99.9), pct(&gaps, 100), err_connect, err_status, err_error_line, err_reset,
           err_timeout);
    free(conns);
    free(request);
    free(ttft.v);
    free(gaps.v);
    close(ep);
    return completed == streams ? 0 : 1;
}
