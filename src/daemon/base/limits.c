/*
 * limits.c - per-connection limits on what a client may cost (see
 * limits.h).
 */
#include "base/limits.h"

#include "sollol/log.h"

#include <math.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

struct sol_limits_addr {
    struct sol_limits_addr *next;
    unsigned char bytes[16];
    unsigned char len;             /* 4 (IPv4) or 16 (IPv6); 0 = unknown (e.g. a UNIX socket) */
    unsigned count;                /* open connections from this address */
    unsigned long long body_bytes; /* body bytes of its requests held (the per-client budget) */
};

void sol_limits_init(struct sol_limits *l, uv_loop_t *loop, const struct sol_limits_conf *conf)
{
    memset(l, 0, sizeof *l);
    l->loop = loop;
    l->conf = *conf;
    l->mhd_per_ip = sol_limits_mhd_per_ip(l);
    l->mhd_pool = sol_limits_mhd_pool(l);
}

unsigned sol_limits_mhd_per_ip(const struct sol_limits *l)
{
    unsigned n = l->conf.max_per_client;
    return n == 0 ? 0 : n > 0x7fffffffu ? 0xffffffffu : 2 * n;
}

size_t sol_limits_mhd_pool(const struct sol_limits *l)
{
    /* The pool holds the request line, the header fields and the read and
     * write buffers (the response's body blocks are allocated apart). MHD
     * zeroes all of it after every request, so its size is paid per
     * request (128 KiB: ~190,000 instructions, half of a small request's
     * cost in bench/profile): the limits plus 4 KiB, at least 16 KiB. */
    size_t n = (size_t)(l->conf.max_url_bytes + l->conf.max_header_bytes) + 4 * 1024;
    return n < 16 * 1024 ? 16 * 1024 : n;
}

void sol_limits_set_conf(struct sol_limits *l, const struct sol_limits_conf *conf)
{
    l->conf = *conf;
}

void sol_limits_free(struct sol_limits *l)
{
    free(l->authfail);
    l->authfail = NULL;
}

static uint64_t now_ms(const struct sol_limits *l)
{
    return uv_now(l->loop);
}

/* Sets a connection's header deadline (see sol_limits_sweep). */
static void set_deadline(struct sol_limits *l, struct sol_limits_conn *c, uint64_t at_ms)
{
    c->deadline_ms = at_ms;
    if (at_ms < l->next_deadline_ms)
        l->next_deadline_ms = at_ms;
}

static void addr_of(struct MHD_Connection *conn, unsigned char out[16], unsigned char *len)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    *len = 0;
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        *len = 4;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        *len = 16;
    }
}

static unsigned bucket_of(const unsigned char *b, unsigned char len)
{
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    return h % SOL_LIMITS_BUCKETS;
}

static struct sol_limits_addr *addr_get(struct sol_limits *l, const unsigned char *b,
                                        unsigned char len)
{
    unsigned i = bucket_of(b, len);
    for (struct sol_limits_addr *a = l->buckets[i]; a; a = a->next)
        if (a->len == len && memcmp(a->bytes, b, len) == 0)
            return a;
    struct sol_limits_addr *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    memcpy(a->bytes, b, len);
    a->len = len;
    a->next = l->buckets[i];
    l->buckets[i] = a;
    return a;
}

static void addr_put(struct sol_limits *l, struct sol_limits_addr *a)
{
    if (!a || --a->count)
        return;
    struct sol_limits_addr **pp = &l->buckets[bucket_of(a->bytes, a->len)];
    while (*pp != a)
        pp = &(*pp)->next;
    *pp = a->next;
    free(a);
}

void sol_limits_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    struct sol_limits *l = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED) {
        struct sol_limits_conn *c = calloc(1, sizeof *c);
        *socket_context = c;
        if (!c)
            return; /* untracked: only the hard limits apply to it */
        c->conn = conn;
        set_deadline(l, c, now_ms(l) + l->conf.header_timeout_ms);
        unsigned char b[16];
        unsigned char len;
        addr_of(conn, b, &len);
        if (len && (c->addr = addr_get(l, b, len)) != NULL) {
            c->addr->count++;
            c->over = l->conf.max_per_client && c->addr->count > l->conf.max_per_client;
        }
        c->next = l->conns;
        if (c->next)
            c->next->prev = c;
        l->conns = c;
        l->n_conns++;
        return;
    }
    struct sol_limits_conn *c = *socket_context;
    *socket_context = NULL;
    if (!c)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    l->n_conns--;
    if (c->body_charged) {
        l->body_total -= c->body_charged;
        if (c->addr)
            c->addr->body_bytes -= c->body_charged;
    }
    addr_put(l, c->addr);
    free(c);
}

static struct sol_limits_conn *record_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

struct arg_sum {
    size_t bytes;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    (void)kind;
    struct arg_sum *s = cls;
    s->bytes += 2 + (k ? strlen(k) : 0) + (v ? strlen(v) : 0); /* "?k=v" or "&k=v" */
    return MHD_YES;
}

unsigned sol_limits_check_request(struct sol_limits *l, struct MHD_Connection *conn,
                                  const char *url, char *msg, size_t msglen)
{
    struct sol_limits_conn *c = record_of(conn);
    if (c) {
        c->deadline_ms = 0;
        if (c->over) {
            l->refused_per_client++;
            snprintf(msg, msglen,
                     "too many connections from this client address (limit %u); reuse "
                     "connections or close idle ones",
                     l->conf.max_per_client);
            return 429;
        }
    }
    /* MHD hands over the path and the query decoded: their decoded size is
     * at most what was sent, and close to it for any real request. */
    struct arg_sum s = {strlen(url)};
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, add_arg, &s);
    if (s.bytes > l->conf.max_url_bytes) {
        snprintf(msg, msglen, "request target too long (%zu bytes, limit %llu)", s.bytes,
                 l->conf.max_url_bytes);
        return 414;
    }
    const union MHD_ConnectionInfo *hs =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t head = hs ? hs->header_size : 0;
    size_t fields = head > s.bytes ? head - s.bytes : 0;
    if (fields > l->conf.max_header_bytes) {
        snprintf(msg, msglen, "request header fields too large (%zu bytes, limit %llu)", fields,
                 l->conf.max_header_bytes);
        return 431;
    }
    return 0;
}

void sol_limits_request_done(struct sol_limits *l, struct MHD_Connection *conn)
{
    struct sol_limits_conn *c = record_of(conn);
    if (!c)
        return;
    sol_limits_body_release(l, conn);
    c->in_body = 0;
    c->body_bytes = 0;
    set_deadline(l, c, now_ms(l) + l->conf.idle_timeout_ms + l->conf.header_timeout_ms);
}

/* When the body on c falls behind the minimum rate unless more arrives. */
static uint64_t body_due(const struct sol_limits *l, const struct sol_limits_conn *c)
{
    uint64_t need_ms = (c->body_bytes + 1) * 1000ull / l->conf.min_body_rate;
    return c->body_start_ms + l->conf.body_grace_ms + need_ms;
}

static int charge(struct sol_limits *l, struct sol_limits_conn *c, unsigned long long n)
{
    if (l->conf.body_budget_bytes && l->body_total + n > l->conf.body_budget_bytes)
        return -1;
    if (c->addr && l->conf.body_budget_per_client &&
        c->addr->body_bytes + n > l->conf.body_budget_per_client)
        return -1;
    l->body_total += n;
    if (c->addr)
        c->addr->body_bytes += n;
    c->body_charged += n;
    return 0;
}

unsigned sol_limits_body_begin(struct sol_limits *l, struct MHD_Connection *conn,
                               unsigned long long declared, unsigned *retry_s, char *msg,
                               size_t msglen)
{
    struct sol_limits_conn *c = record_of(conn);
    if (!c)
        return 0;
    uint64_t now = now_ms(l);
    c->in_body = 1;
    c->body_bytes = 0;
    c->body_start_ms = c->body_progress_ms = now;
    if (l->conf.min_body_rate)
        set_deadline(l, c, body_due(l, c));
    if (!declared)
        return 0;
    unsigned long long whole = l->conf.body_budget_bytes;
    if (l->conf.body_budget_per_client && (!whole || l->conf.body_budget_per_client < whole))
        whole = l->conf.body_budget_per_client;
    if (whole && declared > whole) {
        snprintf(msg, msglen,
                 "request body too large: %llu bytes exceed the memory for request bodies "
                 "(limit %llu bytes)",
                 declared, whole);
        c->in_body = 0;
        return 413;
    }
    if (charge(l, c, declared) < 0) {
        l->refused_body_budget++;
        c->in_body = 0;
        *retry_s = 1;
        snprintf(msg, msglen,
                 "server busy: the memory for request bodies is in use (%s); retry shortly",
                 c->addr && l->conf.body_budget_per_client &&
                         c->addr->body_bytes + declared > l->conf.body_budget_per_client
                     ? "limits.max_body_bytes_per_client"
                     : "limits.max_body_total_bytes");
        return 503;
    }
    return 0;
}

int sol_limits_body_data(struct sol_limits *l, struct MHD_Connection *conn, size_t n, int charge_it)
{
    struct sol_limits_conn *c = record_of(conn);
    if (!c)
        return 0;
    c->body_bytes += n;
    c->body_progress_ms = now_ms(l);
    if (c->in_body && l->conf.min_body_rate)
        c->deadline_ms = body_due(l, c); /* later than before: the sweep finds it */
    if (charge_it && c->body_bytes > c->body_charged) {
        if (charge(l, c, c->body_bytes - c->body_charged) < 0) {
            l->refused_body_budget++;
            return -1;
        }
    }
    return 0;
}

void sol_limits_body_release(struct sol_limits *l, struct MHD_Connection *conn)
{
    struct sol_limits_conn *c = record_of(conn);
    if (!c || !c->body_charged)
        return;
    l->body_total -= c->body_charged;
    if (c->addr)
        c->addr->body_bytes -= c->body_charged;
    c->body_charged = 0;
}

void sol_limits_body_done(struct sol_limits *l, struct MHD_Connection *conn)
{
    struct sol_limits_conn *c = record_of(conn);
    if (!c || !c->in_body)
        return;
    c->in_body = 0;
    c->deadline_ms = 0;
}

/* Ends conn's stream and makes MHD close it within a second or two even
 * if it reads nothing more from it. */
static int cut_conn(struct sol_limits_conn *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci || ci->connect_fd < 0)
        return 0;
    shutdown(ci->connect_fd, SHUT_RDWR);
    return 1;
}

unsigned sol_limits_cut_stalled(struct sol_limits *l, uint64_t since_ms, uint64_t now)
{
    (void)now;
    unsigned n = 0;
    for (struct sol_limits_conn *c = l->conns; c; c = c->next) {
        if (!c->in_body || c->body_progress_ms > since_ms)
            continue;
        const union MHD_ConnectionInfo *si =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
        if (si && si->suspended)
            continue;
        c->in_body = 0;
        c->deadline_ms = 0;
        cut_conn(c);
        MHD_set_connection_option(c->conn, MHD_CONNECTION_OPTION_TIMEOUT, 1u);
        l->cut_no_progress++;
        n++;
    }
    if (n)
        SOL_WARN("cut %u connection(s) whose request body kept the HTTP server busy without "
                 "progress (e.g. a chunk-size line longer than its buffer); %llu so far",
                 n, (unsigned long long)l->cut_no_progress);
    return n;
}

/* The failed-authentication slot of conn's address (IPv6: its /64). */
static struct sol_limits_authfail *authfail_of(struct sol_limits *l, struct MHD_Connection *conn,
                                               uint64_t now, int create)
{
    unsigned char b[16];
    unsigned char len;
    addr_of(conn, b, &len);
    if (!len)
        return NULL;
    if (len == 16 && !(memcmp(b, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0)) {
        memset(b + 8, 0, 8);
    }
    if (!l->authfail) {
        if (!create)
            return NULL;
        l->authfail = calloc(SOL_LIMITS_AUTHFAIL_SLOTS, sizeof *l->authfail);
        if (!l->authfail)
            return NULL;
    }
    uint32_t h = 2166136261u;
    for (unsigned i = 0; i < len; i++)
        h = (h ^ b[i]) * 16777619u;
    struct sol_limits_authfail *f = &l->authfail[h % SOL_LIMITS_AUTHFAIL_SLOTS];
    if (f->len == len && memcmp(f->bytes, b, len) == 0)
        return f;
    if (!create)
        return NULL;
    /* A direct-mapped table: a new address takes the slot. */
    memcpy(f->bytes, b, len);
    f->len = len;
    f->tokens = l->conf.auth_fail_burst;
    f->last_ms = now;
    return f;
}

static void refill(const struct sol_limits *l, struct sol_limits_authfail *f, uint64_t now)
{
    if (now > f->last_ms) {
        f->tokens += (double)(now - f->last_ms) * l->conf.auth_fail_per_ms;
        if (f->tokens > l->conf.auth_fail_burst)
            f->tokens = l->conf.auth_fail_burst;
    }
    f->last_ms = now;
}

unsigned sol_limits_auth_blocked(struct sol_limits *l, struct MHD_Connection *conn, uint64_t now)
{
    if (l->conf.auth_fail_burst <= 0)
        return 0;
    struct sol_limits_authfail *f = authfail_of(l, conn, now, 0);
    if (!f)
        return 0;
    refill(l, f, now);
    if (f->tokens >= 1.0)
        return 0;
    double wait_ms = (1.0 - f->tokens) / l->conf.auth_fail_per_ms;
    unsigned s = (unsigned)ceil(wait_ms / 1000.0 - 1e-6);
    l->refused_auth_failures++;
    return s ? s : 1;
}

void sol_limits_auth_failed(struct sol_limits *l, struct MHD_Connection *conn, uint64_t now)
{
    if (l->conf.auth_fail_burst <= 0)
        return;
    struct sol_limits_authfail *f = authfail_of(l, conn, now, 1);
    if (!f)
        return;
    refill(l, f, now);
    f->tokens = f->tokens >= 1.0 ? f->tokens - 1.0 : 0.0;
}

/* Shuts down, once a second at most, connections whose client is gone
 * but whose end MHD has not read (see sol_limits_sweep in the header). */
static void end_hung_up(struct sol_limits *l, uint64_t now)
{
    if (now - l->peer_check_ms < 1000)
        return;
    l->peer_check_ms = now;
    for (struct sol_limits_conn *c = l->conns; c; c = c->next) {
        const union MHD_ConnectionInfo *si =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_SUSPENDED);
        if (si && si->suspended)
            continue;
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        char byte;
        if (ci && ci->connect_fd >= 0 &&
            recv(ci->connect_fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
            shutdown(ci->connect_fd, SHUT_RDWR); /* a new event: MHD reads the end */
            l->closed_by_peer++;
        }
    }
}

static int cut_conn(struct sol_limits_conn *c);

unsigned sol_limits_sweep(struct sol_limits *l, uint64_t now)
{
    unsigned cut = 0, slow_body = 0;
    end_hung_up(l, now);
    /* Streams past their headers have no deadline: with 10,000 of them,
     * walk only when one is due (set_deadline keeps the earliest). */
    if (now < l->next_deadline_ms)
        return 0;
    l->next_deadline_ms = UINT64_MAX;
    for (struct sol_limits_conn *c = l->conns; c; c = c->next) {
        if (!c->deadline_ms)
            continue;
        if (now < c->deadline_ms) {
            if (c->deadline_ms < l->next_deadline_ms)
                l->next_deadline_ms = c->deadline_ms;
            continue;
        }
        if (c->in_body) {
            /* The body's deadline moves with every piece (body_data); it
             * is behind the minimum rate only when still due now. */
            uint64_t due = l->conf.min_body_rate ? body_due(l, c) : 0;
            if (due > now) {
                c->deadline_ms = due;
                if (due < l->next_deadline_ms)
                    l->next_deadline_ms = due;
                continue;
            }
            c->deadline_ms = 0;
            c->in_body = 0;
            if (cut_conn(c)) {
                l->cut_slow_body++;
                slow_body++;
            }
            continue;
        }
        c->deadline_ms = 0;
        /* The descriptor stays MHD's: only its stream is ended, and MHD
         * closes it when it reads the end. */
        if (cut_conn(c)) {
            l->cut_slow_headers++;
            cut++;
        }
    }
    if (slow_body)
        SOL_INFO("cut %u connection(s) whose request body arrived slower than "
                 "limits.min_body_rate (%u bytes/s after %u ms; %llu so far)",
                 slow_body, l->conf.min_body_rate, l->conf.body_grace_ms,
                 (unsigned long long)l->cut_slow_body);
    /* One line per sweep at most, so a slowloris flood cannot flood the log. */
    if (cut)
        SOL_INFO("cut %u connection(s) that did not send their request headers in time "
                 "(limits.header_timeout_ms %u; %llu so far)",
                 cut, l->conf.header_timeout_ms, (unsigned long long)l->cut_slow_headers);
    return cut;
}

unsigned sol_limits_connections(const struct sol_limits *l)
{
    return l->n_conns;
}
