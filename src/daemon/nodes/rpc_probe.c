/*
 * rpc_probe.c - the socket side of the rpc-server pre-flight (see
 * rpc_probe.h). One probe = at most two TCP connections (the v4 HELLO,
 * then the empty form) and one timer; it frees itself once every handle
 * has closed.
 */
#include "nodes/rpc_probe.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum step { ST_RESOLVE, ST_CONNECT, ST_HELLO, ST_COUNT, ST_MEMORY, ST_DONE };

struct sol_rpc_probe {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_connect_t conn_req;
    uv_write_t write_req;
    uv_getaddrinfo_t gai;
    struct sockaddr_storage addr;
    int port;
    char host[256];
    int connect_only;
    sol_rpc_probe_cb cb;
    void *ud;

    enum step step;
    int v4;        /* HELLO form of the current connection */
    int tcp_open;  /* tcp handle initialised and not yet closed */
    int reconnect; /* a close is on the way to a second connection */
    int gai_running;
    int cancelled, finished;
    int handles;     /* open handles (timer, tcp) */
    int in_start;    /* inside sol_rpc_probe_start(): report later */
    int deferred;    /* finished during start: the timer reports it */
    unsigned device; /* GET_DEVICE_MEMORY in progress for this device */
    unsigned char wbuf[SOL_RPC_REQ_MAX];
    unsigned char rbuf[64];
    size_t rlen;
    struct sol_rpc_probe_result res;
};

static void start_connect(struct sol_rpc_probe *p);

static void maybe_free(struct sol_rpc_probe *p)
{
    if (p->handles == 0 && !p->gai_running && p->finished)
        free(p);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sol_rpc_probe *p = h->data;
    if (h == (uv_handle_t *)&p->tcp)
        p->tcp_open = 0;
    p->handles--;
    if (h == (uv_handle_t *)&p->tcp && p->reconnect && !p->finished) {
        p->reconnect = 0;
        start_connect(p);
        return;
    }
    maybe_free(p);
}

static void close_tcp(struct sol_rpc_probe *p)
{
    if (p->tcp_open && !uv_is_closing((uv_handle_t *)&p->tcp))
        uv_close((uv_handle_t *)&p->tcp, on_handle_closed);
}

static void finish(struct sol_rpc_probe *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void on_timeout(uv_timer_t *t);
static void report(struct sol_rpc_probe *p);
static void finish(struct sol_rpc_probe *p, const char *fmt, ...)
{
    if (p->finished || p->deferred)
        return;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->res.error, sizeof p->res.error, fmt, ap);
        va_end(ap);
    }
    if (p->in_start) {
        /* The caller does not hold the probe yet: report from the loop. */
        p->deferred = 1;
        uv_timer_start(&p->timer, on_timeout, 0, 0);
        return;
    }
    report(p);
}

static void report(struct sol_rpc_probe *p)
{
    p->finished = 1;
    p->step = ST_DONE;
    if (!p->cancelled && p->cb)
        p->cb(&p->res, p->ud);
    close_tcp(p);
    if (!uv_is_closing((uv_handle_t *)&p->timer))
        uv_close((uv_handle_t *)&p->timer, on_handle_closed);
    if (p->gai_running)
        uv_cancel((uv_req_t *)&p->gai);
    maybe_free(p);
}

static void on_timeout(uv_timer_t *t)
{
    struct sol_rpc_probe *p = t->data;
    if (p->deferred) {
        report(p);
        return;
    }
    if (p->res.connected && !p->res.answered)
        finish(p, "%s:%d: connected but HELLO not answered (busy with another client, or hung)",
               p->host, p->port);
    else if (p->res.connected)
        finish(p, "%s:%d: timed out reading device information", p->host, p->port);
    else
        finish(p, "%s:%d: connect timed out", p->host, p->port);
}

static void on_written(uv_write_t *w, int status)
{
    struct sol_rpc_probe *p = w->data;
    if (status < 0 && !p->finished && !p->reconnect)
        finish(p, "%s:%d: write failed: %s", p->host, p->port, uv_strerror(status));
}

static int send_bytes(struct sol_rpc_probe *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p->wbuf, (unsigned)n);
    p->write_req.data = p;
    p->rlen = 0;
    int rc = uv_write(&p->write_req, (uv_stream_t *)&p->tcp, &b, 1, on_written);
    if (rc < 0)
        finish(p, "%s:%d: write failed: %s", p->host, p->port, uv_strerror(rc));
    return rc;
}

static void send_memory(struct sol_rpc_probe *p)
{
    p->step = ST_MEMORY;
    send_bytes(p, sol_rpc_encode_device_memory(p->wbuf, p->device, p->res.version.major));
}

/* Consumes complete replies in rbuf for the current step. */
static void on_reply(struct sol_rpc_probe *p)
{
    for (;;) {
        size_t expect = p->step == ST_HELLO   ? sol_rpc_hello_reply_size(p->v4)
                        : p->step == ST_COUNT ? 4
                                              : 16;
        const unsigned char *pl;
        long used = sol_rpc_frame_reply(p->rbuf, p->rlen, expect, &pl);
        if (used == 0)
            return;
        if (used < 0) {
            finish(p, "%s:%d: unexpected reply size (not a ggml rpc-server, or another protocol)",
                   p->host, p->port);
            return;
        }
        switch (p->step) {
        case ST_HELLO:
            sol_rpc_decode_hello(pl, expect, p->v4, &p->res.version);
            p->res.answered = 1;
            p->res.v4_form = p->v4;
            p->step = ST_COUNT;
            send_bytes(p, sol_rpc_encode_device_count(p->wbuf));
            break;
        case ST_COUNT: {
            uint32_t c;
            sol_rpc_decode_device_count(pl, expect, &c);
            p->res.n_devices = c > SOL_RPC_MAX_DEVICES ? SOL_RPC_MAX_DEVICES : c;
            p->device = 0;
            if (p->res.n_devices == 0) {
                p->res.complete = 1;
                finish(p, NULL);
                return;
            }
            send_memory(p);
            break;
        }
        case ST_MEMORY: {
            uint64_t f, t;
            sol_rpc_decode_device_memory(pl, expect, &f, &t);
            p->res.free_bytes[p->device] = f;
            p->res.total_bytes[p->device] = t;
            p->res.free_sum += f;
            p->res.total_sum += t;
            if (++p->device >= p->res.n_devices || p->res.version.major < 3) {
                /* Before protocol 3 the command has no device argument: one answer. */
                p->res.n_devices = p->device;
                p->res.complete = 1;
                finish(p, NULL);
                return;
            }
            send_memory(p);
            break;
        }
        default:
            return;
        }
        /* Each request waits for its reply: nothing more is buffered. */
        return;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sol_rpc_probe *p = h->data;
    buf->base = (char *)p->rbuf + p->rlen;
    buf->len = sizeof p->rbuf - p->rlen;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct sol_rpc_probe *p = s->data;
    if (p->finished || p->reconnect)
        return;
    if (n > 0) {
        p->rlen += (size_t)n;
        on_reply(p);
        if (!p->finished && p->rlen >= sizeof p->rbuf)
            finish(p, "%s:%d: reply too large", p->host, p->port);
        return;
    }
    if (n == 0)
        return;
    if (p->step == ST_HELLO && p->v4 && p->rlen == 0) {
        /* Closed without a reply: an older server that wants the empty
         * HELLO. Reconnect and try that form. */
        p->v4 = 0;
        p->reconnect = 1;
        uv_read_stop(s);
        close_tcp(p);
        return;
    }
    if (p->step == ST_HELLO)
        finish(p, "%s:%d: connection closed during HELLO (%s)", p->host, p->port,
               n == UV_EOF ? "not a ggml rpc-server of a known protocol" : uv_strerror((int)n));
    else
        finish(p, "%s:%d: connection closed: %s", p->host, p->port,
               n == UV_EOF ? "end of stream" : uv_strerror((int)n));
}

static void on_connected(uv_connect_t *req, int status)
{
    struct sol_rpc_probe *p = req->data;
    if (p->finished || p->reconnect)
        return;
    if (status < 0) {
        finish(p, "%s:%d: connect failed: %s", p->host, p->port, uv_strerror(status));
        return;
    }
    p->res.connected = 1;
    if (p->addr.ss_family == AF_INET6)
        uv_ip6_name((const struct sockaddr_in6 *)&p->addr, p->res.peer, sizeof p->res.peer);
    else
        uv_ip4_name((const struct sockaddr_in *)&p->addr, p->res.peer, sizeof p->res.peer);
    if (p->connect_only) {
        finish(p, NULL);
        return;
    }
    p->step = ST_HELLO;
    uv_tcp_nodelay(&p->tcp, 1);
    uv_read_start((uv_stream_t *)&p->tcp, on_alloc, on_read);
    send_bytes(p, sol_rpc_encode_hello(p->wbuf, p->v4));
}

static void start_connect(struct sol_rpc_probe *p)
{
    p->step = ST_CONNECT;
    p->rlen = 0;
    if (uv_tcp_init(p->loop, &p->tcp) < 0) {
        finish(p, "%s:%d: cannot create a socket", p->host, p->port);
        return;
    }
    p->tcp.data = p;
    p->tcp_open = 1;
    p->handles++;
    p->conn_req.data = p;
    int rc = uv_tcp_connect(&p->conn_req, &p->tcp, (const struct sockaddr *)&p->addr, on_connected);
    if (rc < 0)
        finish(p, "%s:%d: connect failed: %s", p->host, p->port, uv_strerror(rc));
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai)
{
    struct sol_rpc_probe *p = req->data;
    p->gai_running = 0;
    if (p->finished) {
        uv_freeaddrinfo(ai);
        maybe_free(p);
        return;
    }
    if (status < 0 || !ai) {
        uv_freeaddrinfo(ai);
        finish(p, "%s: cannot resolve: %s", p->host, uv_strerror(status));
        return;
    }
    memcpy(&p->addr, ai->ai_addr, ai->ai_addrlen);
    uv_freeaddrinfo(ai);
    if (p->addr.ss_family == AF_INET)
        ((struct sockaddr_in *)&p->addr)->sin_port = htons((uint16_t)p->port);
    else
        ((struct sockaddr_in6 *)&p->addr)->sin6_port = htons((uint16_t)p->port);
    start_connect(p);
}

struct sol_rpc_probe *sol_rpc_probe_start(uv_loop_t *loop, const char *host, int port,
                                          unsigned timeout_ms, int connect_only,
                                          sol_rpc_probe_cb cb, void *ud)
{
    struct sol_rpc_probe *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->loop = loop;
    p->port = port;
    snprintf(p->host, sizeof p->host, "%s", host);
    p->connect_only = connect_only;
    p->cb = cb;
    p->ud = ud;
    p->v4 = 1;
    p->in_start = 1;
    uv_timer_init(loop, &p->timer);
    p->timer.data = p;
    p->handles = 1;
    uv_timer_start(&p->timer, on_timeout, timeout_ms, 0);
    struct sockaddr_in a4;
    struct sockaddr_in6 a6;
    if (uv_ip4_addr(host, port, &a4) == 0) {
        memcpy(&p->addr, &a4, sizeof a4);
        start_connect(p);
    } else if (uv_ip6_addr(host, port, &a6) == 0) {
        memcpy(&p->addr, &a6, sizeof a6);
        start_connect(p);
    } else {
        struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        p->gai.data = p;
        p->step = ST_RESOLVE;
        if (uv_getaddrinfo(loop, &p->gai, on_resolved, host, NULL, &hints) == 0)
            p->gai_running = 1;
        else
            finish(p, "%s: cannot resolve", host);
    }
    p->in_start = 0;
    return p;
}

void sol_rpc_probe_cancel(struct sol_rpc_probe *p)
{
    if (!p || p->finished)
        return;
    p->cancelled = 1;
    if (p->deferred)
        report(p);
    else
        finish(p, "cancelled");
}
