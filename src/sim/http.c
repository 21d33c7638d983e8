/*
 * http.c - ollama-sim's HTTP side on the shared core (common/simhttp.h):
 * Ollama's (gin's) routing rules, the loopback Host check, faults applied
 * before a handler runs, and the request object's recycling.
 *
 * The request lifecycle (suspend/resume, hang-up watch, per-request timer,
 * streaming reader, completion, deferred release) is simhttp's; this file
 * gives it ollama-sim's hooks: statistics at each step, the stall/close
 * faults when an answer is ready, and a free list of request objects
 * (benchmarks run many thousands of requests a second).
 */
#include "sim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "sollol/log.h"

#define MAX_BODY  (64u << 20)
#define FREE_KEEP 256

struct route_def {
    const char *path;
    enum route id;
    unsigned methods;
    int param; /* path is a prefix followed by exactly one segment */
};

static const struct route_def ROUTES[] = {
    {"/", R_ROOT, SIMHTTP_GET | SIMHTTP_HEAD, 0},
    {"/api/version", R_VERSION, SIMHTTP_GET | SIMHTTP_HEAD, 0},
    {"/api/status", R_STATUS, SIMHTTP_GET, 0},
    {"/api/tags", R_TAGS, SIMHTTP_GET | SIMHTTP_HEAD, 0},
    {"/api/ps", R_PS, SIMHTTP_GET, 0},
    {"/api/show", R_SHOW, SIMHTTP_POST, 0},
    {"/api/generate", R_GENERATE, SIMHTTP_POST, 0},
    {"/api/chat", R_CHAT, SIMHTTP_POST, 0},
    {"/api/embed", R_EMBED, SIMHTTP_POST, 0},
    {"/api/embeddings", R_EMBEDDINGS, SIMHTTP_POST, 0},
    {"/api/pull", R_PULL, SIMHTTP_POST, 0},
    {"/api/push", R_PUSH, SIMHTTP_POST, 0},
    {"/api/create", R_CREATE, SIMHTTP_POST, 0},
    {"/api/copy", R_COPY, SIMHTTP_POST, 0},
    {"/api/delete", R_DELETE, SIMHTTP_DELETE, 0},
    {"/api/me", R_ME, SIMHTTP_POST, 0},
    {"/api/signout", R_SIGNOUT, SIMHTTP_POST, 0},
    {"/api/user/keys/", R_USER_KEYS, SIMHTTP_DELETE, 1},
    {"/api/blobs/", R_BLOB_HEAD, SIMHTTP_HEAD, 1},
    {"/api/blobs/", R_BLOB_POST, SIMHTTP_POST, 1},
    {"/v1/chat/completions", R_V1_CHAT, SIMHTTP_POST, 0},
    {"/v1/completions", R_V1_COMPLETIONS, SIMHTTP_POST, 0},
    {"/v1/embeddings", R_V1_EMBEDDINGS, SIMHTTP_POST, 0},
    {"/v1/models", R_V1_MODELS, SIMHTTP_GET, 0},
    {"/v1/models/", R_V1_MODEL, SIMHTTP_GET, 1},
    {"/_sim/stats", R_SIM_STATS, SIMHTTP_GET, 0},
    {"/_sim/reset", R_SIM_RESET, SIMHTTP_POST, 0},
    {"/_sim/fault", R_SIM_FAULT, SIMHTTP_GET | SIMHTTP_POST, 0},
    {"/_sim/models", R_SIM_MODELS, SIMHTTP_GET | SIMHTTP_POST, 0},
};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

/* Addresses of this machine's interfaces (Ollama's isLocalIP). */
static struct in6_addr *g_local_ips;
static int g_nlocal;
static void (*g_shutdown_done)(void);

static int route_matches(const struct route_def *d, const char *path, const char **param)
{
    if (!d->param)
        return strcmp(path, d->path) == 0;
    size_t n = strlen(d->path);
    if (strncmp(path, d->path, n) != 0 || !path[n] || strchr(path + n, '/'))
        return 0;
    *param = path + n;
    return 1;
}

/* Finds the route for (path, method) or, as gin does: a trailing-slash
 * redirect, 405 when another method has the path, else 404. */
static enum route route_lookup(const char *path, unsigned mb, const char **param, unsigned *allowed)
{
    *allowed = 0;
    for (size_t i = 0; i < NROUTES; i++)
        if ((ROUTES[i].methods & mb) && route_matches(&ROUTES[i], path, param))
            return ROUTES[i].id;
    size_t len = strlen(path);
    if (len > 1 && len < 500) {
        char alt[512];
        if (path[len - 1] == '/')
            snprintf(alt, sizeof alt, "%.*s", (int)(len - 1), path);
        else
            snprintf(alt, sizeof alt, "%s/", path);
        const char *p2;
        for (size_t i = 0; i < NROUTES; i++)
            if ((ROUTES[i].methods & mb) && route_matches(&ROUTES[i], alt, &p2))
                return R_REDIRECT;
    }
    for (size_t i = 0; i < NROUTES; i++)
        if (route_matches(&ROUTES[i], path, param))
            *allowed |= ROUTES[i].methods;
    return *allowed ? R_NOT_ALLOWED : R_NOT_FOUND;
}

/* ---- host check (Ollama's allowedHostsMiddleware) ---- */

/* Go's net.SplitHostPort; returns 0 on error. */
static int split_host_port(const char *hp, char *host, size_t hostlen)
{
    const char *colon = strrchr(hp, ':');
    if (!colon)
        return 0;
    size_t j = 0, k = 0;
    if (hp[0] == '[') {
        const char *end = strchr(hp, ']');
        if (!end || end + 1 != colon)
            return 0;
        snprintf(host, hostlen, "%.*s", (int)(end - hp - 1), hp + 1);
        j = 1;
        k = (size_t)(end - hp) + 1;
    } else {
        snprintf(host, hostlen, "%.*s", (int)(colon - hp), hp);
        if (strchr(host, ':'))
            return 0;
    }
    if (strchr(hp + j, '['))
        return 0;
    if (strchr(hp + k, ']'))
        return 0;
    return 1;
}

/* netip.ParseAddr into a v6 (v4-mapped for IPv4) address. */
static int parse_ip(const char *s, struct in6_addr *out, int *is4)
{
    struct in_addr a4;
    if (inet_pton(AF_INET, s, &a4) == 1) {
        memset(out, 0, sizeof *out);
        out->s6_addr[10] = out->s6_addr[11] = 0xff;
        memcpy(out->s6_addr + 12, &a4, 4);
        *is4 = 1;
        return 1;
    }
    char tmp[128];
    str_copy(tmp, sizeof tmp, s);
    char *pct = strchr(tmp, '%');
    if (pct)
        *pct = 0;
    *is4 = 0;
    return inet_pton(AF_INET6, tmp, out) == 1;
}

static int ip_allowed(const struct in6_addr *a, int is4)
{
    const uint8_t *b = a->s6_addr;
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    int v4 = memcmp(b, mapped, 12) == 0; /* IsLoopback/IsPrivate unmap 4in6 */
    if (v4) {
        const uint8_t *q = b + 12;
        if (q[0] == 127 || q[0] == 10 || (q[0] == 172 && (q[1] & 0xf0) == 16) ||
            (q[0] == 192 && q[1] == 168))
            return 1;
        if (is4 && q[0] == 0 && q[1] == 0 && q[2] == 0 && q[3] == 0)
            return 1;
    } else {
        static const uint8_t zero[16];
        if (memcmp(b, zero, 15) == 0 && (b[15] == 1 || b[15] == 0))
            return 1; /* ::1 and :: */
        if ((b[0] & 0xfe) == 0xfc)
            return 1; /* fc00::/7 */
    }
    for (int i = 0; i < g_nlocal; i++)
        if (memcmp(&g_local_ips[i], a, sizeof *a) == 0)
            return 1;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static int host_allowed(const char *hosthdr)
{
    if (g_sim.cfg.host_check == 0 || (g_sim.cfg.host_check < 0 && !g_sim.host_is_loopback))
        return 1;
    if (!hosthdr)
        hosthdr = "";
    char host[512];
    if (!split_host_port(hosthdr, host, sizeof host))
        str_copy(host, sizeof host, hosthdr);
    struct in6_addr a;
    int is4;
    if (parse_ip(host, &a, &is4) && ip_allowed(&a, is4))
        return 1;
    for (char *p = host; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    if (host[0] == 0 || strcmp(host, "localhost") == 0)
        return 1;
    if (g_sim.hostname[0] && strcmp(host, g_sim.hostname) == 0)
        return 1;
    return ends_with(host, ".localhost") || ends_with(host, ".local") ||
           ends_with(host, ".internal");
}

static void load_local_ips(void)
{
    struct ifaddrs *ifa = NULL;
    if (getifaddrs(&ifa) != 0)
        return;
    int n = 0;
    for (struct ifaddrs *p = ifa; p; p = p->ifa_next)
        if (p->ifa_addr &&
            (p->ifa_addr->sa_family == AF_INET || p->ifa_addr->sa_family == AF_INET6))
            n++;
    g_local_ips = calloc((size_t)n + 1, sizeof *g_local_ips);
    if (g_local_ips) {
        for (struct ifaddrs *p = ifa; p; p = p->ifa_next) {
            if (!p->ifa_addr)
                continue;
            struct in6_addr *a = &g_local_ips[g_nlocal];
            if (p->ifa_addr->sa_family == AF_INET) {
                memset(a, 0, sizeof *a);
                a->s6_addr[10] = a->s6_addr[11] = 0xff;
                memcpy(a->s6_addr + 12, &((struct sockaddr_in *)p->ifa_addr)->sin_addr, 4);
                g_nlocal++;
            } else if (p->ifa_addr->sa_family == AF_INET6) {
                *a = ((struct sockaddr_in6 *)p->ifa_addr)->sin6_addr;
                g_nlocal++;
            }
        }
    }
    freeifaddrs(ifa);
}
/* ---- request objects: recycled through a free list ---- */

static void shrink(struct sbuf *b)
{
    if (b->cap > 65536)
        sb_free(b);
}

_Static_assert(offsetof(struct sim_req, h) == 0, "simhttp_req comes first (simhttp.h)");

static struct simhttp_req *on_alloc(void)
{
    struct sim_req *r = g_sim.freelist;
    if (r) {
        g_sim.freelist = SIM_REQ_OR_NULL(r->h.next);
        g_sim.nfree--;
        /* Keep the buffers (their capacity), reset everything else. */
        struct sbuf body = r->h.body, out = r->h.out, text = r->text, lines = r->lines;
        memset(r, 0, sizeof *r);
        r->h.body = body;
        r->h.out = out;
        r->text = text;
        r->lines = lines;
        r->h.body.len = r->h.out.len = r->text.len = r->lines.len = 0;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            abort();
    }
    return &r->h;
}

static void free_buffers(struct sim_req *r)
{
    sb_free(&r->h.body);
    sb_free(&r->h.out);
    sb_free(&r->text);
    sb_free(&r->lines);
    free(r);
}

static void on_destroy(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    if (r->json) {
        cJSON_Delete(r->json);
        r->json = NULL;
    }
    if (r->msg_hash && r->msg_hash != r->msg_hash_inline) {
        free(r->msg_hash);
        free(r->msg_len);
    }
    r->msg_hash = NULL;
    r->msg_len = NULL;
    if (g_sim.nfree >= FREE_KEEP || g_sim.shutting_down) {
        free_buffers(r);
        return;
    }
    shrink(&r->h.body);
    shrink(&r->h.out);
    shrink(&r->text);
    shrink(&r->lines);
    r->h.next = g_sim.freelist ? &g_sim.freelist->h : NULL;
    g_sim.freelist = r;
    g_sim.nfree++;
}

static void on_begin(struct simhttp_req *h, const char *url)
{
    struct sim_req *r = SIM_REQ(h);
    r->id = ++g_sim.next_id;
    r->rec = -1;
    r->slot = -1;
    r->lines_limit = -1;
    r->stream_given = -1;
    r->body_fnv = FNV64_INIT;
    r->t_recv = now_ns();
    const char *param = NULL;
    unsigned allowed = 0;
    r->route = route_lookup(url, h->method, &param, &allowed);
    if (param)
        str_copy(r->param, sizeof r->param, param);
    r->is_control =
        strncmp(url, "/_sim/", 6) == 0 &&
        (r->route == R_SIM_STATS || r->route == R_SIM_RESET || r->route == R_SIM_FAULT ||
         r->route == R_SIM_MODELS || r->route == R_NOT_ALLOWED || r->route == R_NOT_FOUND);
    if (r->route == R_BLOB_POST)
        sol_sha256_init(&r->sha);
    if (!r->is_control)
        stats_begin(r);
    if (r->route == R_NOT_ALLOWED) {
        h->hdr_name = "Allow";
        struct sbuf a = {0};
        for (unsigned bit = SIMHTTP_GET; bit <= SIMHTTP_PATCH; bit <<= 1)
            if (allowed & bit) {
                if (a.len)
                    sb_puts(&a, ", ");
                sb_puts(&a, simhttp_method_name(bit));
            }
        str_copy(h->hdr_val, sizeof h->hdr_val, a.p ? a.p : "");
        sb_free(&a);
    }
}

/* Every byte counts for the body hash in the stats; a blob upload is
 * hashed (SHA-256) instead of kept. */
static int on_body(struct simhttp_req *h, const char *data, size_t n)
{
    struct sim_req *r = SIM_REQ(h);
    r->body_fnv = fnv1a64(r->body_fnv, data, n);
    r->body_total += n;
    if (r->route != R_BLOB_POST)
        return 0;
    sol_sha256_update(&r->sha, data, n);
    return 1;
}

/* ---- timer, responses ---- */

/* The stall, close and reset faults act on a non-streamed answer when it is ready. */
static int on_before_ready(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    if (!h->cb_resp && r->fault == F_STALL)
        return 0; /* a stalled non-streamed answer never comes */
    if (!h->cb_resp && fault_cuts(r->fault)) {
        h->drop = 1;
        if (r->fault == F_RESET)
            req_arm_reset(r);
        stats_outcome(r, r->fault == F_RESET ? "fault:reset" : "fault:close");
    }
    return 1;
}

static void on_sent(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    if (r->is_control)
        return;
    stats_first_byte(r);
    if (!h->cb_resp)
        stats_work_done(r); /* the whole answer is handed over */
}

static void on_stream_end(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    if (!r->is_control)
        stats_work_done(r);
}

static void on_end(struct simhttp_req *h, enum simhttp_end why)
{
    struct sim_req *r = SIM_REQ(h);
    switch (why) {
    case SIMHTTP_HANGUP:
        SOL_INFO("request %llu: client went away", (unsigned long long)r->id);
        stats_outcome(r, "cancelled");
        infer_cancel(r);
        break;
    case SIMHTTP_SHUTDOWN:
        infer_cancel(r);
        break;
    case SIMHTTP_DONE_OK:
    case SIMHTTP_DONE_ERROR:
        if (why == SIMHTTP_DONE_ERROR && r->fault == F_RESET)
            req_reset_now(r); /* before MHD's orderly shutdown sends a FIN */
        if (!r->is_control && !r->finished) {
            if (why == SIMHTTP_DONE_OK && h->status >= 400) {
                char o[32];
                snprintf(o, sizeof o, "error:%d", h->status);
                stats_outcome(r, o);
            } else {
                stats_outcome(r, why == SIMHTTP_DONE_OK ? "completed" : "cancelled");
            }
        }
        infer_cancel(r); /* frees the slot / queue place if still held */
        if (!r->is_control)
            stats_end(r, why != SIMHTTP_DONE_OK);
        break;
    }
}

static int on_accept(void)
{
    if (fault_refuse_connection())
        return 0;
    stats_connection();
    return 1;
}

static void req_text(struct sim_req *r, int status, const char *ctype, const char *body)
{
    simhttp_text(&r->h, status, ctype, body);
}

static void apply_fault(struct sim_req *r)
{
    int64_t arg = 0;
    enum fault_mode f = fault_take(r, &arg);
    if (f == F_NONE)
        return;
    r->fault = f;
    r->fault_arg = arg;
    char outcome[32];
    snprintf(outcome, sizeof outcome, "fault:%s", FAULT_NAMES[f]);
    stats_outcome(r, outcome);
    SOL_DEBUG("request %llu: fault %s", (unsigned long long)r->id, FAULT_NAMES[f]);
    switch (f) {
    case F_500:
        req_error(r, 500, "llama runner process has terminated: exit status 2");
        break;
    case F_503:
        req_error(r, 503, "server busy, please try again.  maximum pending requests exceeded");
        break;
    case F_429:
        if (arg > 0) {
            r->h.hdr_name = "Retry-After";
            snprintf(r->h.hdr_val, sizeof r->h.hdr_val, "%lld", (long long)arg);
        }
        req_error(r, 429, "too many requests, please try again later");
        break;
    case F_404: {
        char msg[SIM_NAME_MAX + 32];
        snprintf(msg, sizeof msg, "model '%s' not found", r->model_name);
        req_error(r, 404, msg);
        break;
    }
    case F_HANG:
        r->h.phase = SIMHTTP_WAITING; /* never ready: held until the client goes */
        break;
    default:
        break; /* stall, close, slow: applied while answering */
    }
}

/* Pulls "model" (or its aliases) out of a JSON body for faults and stats. */
static void peek_request(struct sim_req *r)
{
    if (r->route == R_V1_MODEL) {
        str_copy(r->model_name, sizeof r->model_name, r->param);
        return;
    }
    if (r->h.method != SIMHTTP_POST && r->h.method != SIMHTTP_DELETE)
        return;
    if (r->route == R_BLOB_POST || r->h.body.len == 0)
        return;
    r->json = cJSON_ParseWithLength(r->h.body.p, r->h.body.len);
    if (!cJSON_IsObject(r->json))
        return;
    go_json_fold(r->json); /* the handlers see the fields Go would */
    const char *keys[] = {"model", "name", "source"};
    for (size_t i = 0; i < 3; i++) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(r->json, keys[i]);
        if (cJSON_IsString(m) && m->valuestring[0]) {
            str_copy(r->model_name, sizeof r->model_name, m->valuestring);
            break;
        }
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->json, "stream");
    if (cJSON_IsBool(st))
        r->stream_given = cJSON_IsTrue(st) ? 1 : 0;
}

static void on_dispatch(struct simhttp_req *h)
{
    struct sim_req *r = SIM_REQ(h);
    if (!r->is_control) {
        peek_request(r);
        stats_request_info(r);
    }
    if (r->route == R_REDIRECT) {
        /* gin redirects before any middleware runs */
        size_t len = strlen(r->h.path);
        if (r->h.path[len - 1] == '/')
            r->h.path[len - 1] = 0;
        else
            snprintf(r->h.path + len, sizeof r->h.path - len, "/");
        r->h.hdr_name = "Location";
        str_copy(r->h.hdr_val, sizeof r->h.hdr_val, r->h.path);
        r->h.out.len = 0;
        if (r->h.method == SIMHTTP_GET) {
            sb_printf(&r->h.out, "<a href=\"%s\">Moved Permanently</a>.\n\n", r->h.path);
            r->h.ctype = "text/html; charset=utf-8";
        }
        r->h.status = r->h.method == SIMHTTP_GET ? 301 : 307;
        req_ready(r);
        return;
    }
    if (!r->is_control) {
        const char *host = MHD_lookup_connection_value(r->h.conn, MHD_HEADER_KIND, "Host");
        if (!host_allowed(host)) {
            r->h.out.len = 0;
            r->h.status = 403;
            r->h.ctype = NULL;
            req_ready(r);
            return;
        }
        if (r->h.method == SIMHTTP_OPTIONS) {
            r->h.out.len = 0;
            r->h.status = 204;
            r->h.ctype = NULL;
            req_ready(r);
            return;
        }
    }
    if (r->route == R_NOT_FOUND) {
        req_text(r, 404, "text/plain", "404 page not found");
        return;
    }
    if (r->route == R_NOT_ALLOWED) {
        req_text(r, 405, "text/plain", "405 method not allowed");
        return;
    }
    if (r->is_control) {
        control_handle(r);
        return;
    }
    if (r->h.body_too_large) {
        req_error(r, 413, "http: request body too large");
        return;
    }
    apply_fault(r);
    if (r->h.phase != SIMHTTP_WAITING || r->fault == F_HANG)
        return;
    if (fault_cuts(r->fault) && !route_is_inference(r->route) && r->route != R_PULL &&
        r->route != R_PUSH && r->route != R_CREATE) {
        r->h.drop = 1; /* nothing streams here: cut before any byte */
        if (r->fault == F_RESET)
            req_arm_reset(r);
        return;
    }
    if (route_is_inference(r->route) && r->route != R_V1_MODELS && r->route != R_V1_MODEL)
        infer_handle(r);
    else
        api_handle(r);
    if (r->fault == F_SLOW && r->h.phase == SIMHTTP_READY && !r->h.cb_resp &&
        !route_is_inference(r->route)) {
        /* slow on a plain route: hold the prepared answer for arg ms */
        r->h.phase = SIMHTTP_WAITING;
        req_timer_start(r, (uint64_t)(r->fault_arg > 0 ? r->fault_arg : 0) * 1000000ULL, req_ready);
    }
}

static const struct simhttp_ops OPS = {
    .alloc = on_alloc,
    .begin = on_begin,
    .body = on_body,
    .dispatch = on_dispatch,
    .before_ready = on_before_ready,
    .sent = on_sent,
    .stream_end = on_stream_end,
    .end = on_end,
    .destroy = on_destroy,
    .accept = on_accept,
};

int http_start(int listen_fd)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    g_sim.host_is_loopback = 0;
    if (getsockname(listen_fd, (struct sockaddr *)&ss, &sl) == 0) {
        if (ss.ss_family == AF_INET)
            g_sim.host_is_loopback =
                (ntohl(((struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24) == 127;
        else if (ss.ss_family == AF_INET6)
            g_sim.host_is_loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&ss)->sin6_addr);
    }
    load_local_ips();
    static const struct simhttp_config cfg = {
        .ops = &OPS,
        .max_body = MAX_BODY,
        .connection_limit = 16384,
        /* MHD zeroes the whole pool between keep-alive requests: 16 KiB
         * (default 32) halves that cost and still fits large headers. */
        .connection_memory = 16384,
        .log_errors = 1,
    };
    if (simhttp_start(&g_sim.http, &g_sim.loop, &cfg, listen_fd) < 0) {
        SOL_ERROR("cannot start libmicrohttpd on the loop");
        free(g_local_ips);
        g_local_ips = NULL;
        return -1;
    }
    return 0;
}

static void on_http_stopped(struct simhttp *s)
{
    (void)s;
    free(g_local_ips);
    g_local_ips = NULL;
    if (g_shutdown_done)
        g_shutdown_done();
}

void http_shutdown(void (*done)(void))
{
    g_sim.shutting_down = 1;
    g_shutdown_done = done;
    /* Leave the queues first so that freeing slots starts nobody. */
    for (struct simhttp_req *h = g_sim.http.live; h; h = h->next) {
        struct sim_req *r = SIM_REQ(h);
        h->cancelled = 1;
        if (r->q_model)
            model_release(r);
    }
    simhttp_shutdown(&g_sim.http, on_http_stopped);
}

void http_free(void)
{
    while (g_sim.freelist) {
        struct sim_req *r = g_sim.freelist;
        g_sim.freelist = SIM_REQ_OR_NULL(r->h.next);
        free_buffers(r);
    }
    g_sim.nfree = 0;
}
