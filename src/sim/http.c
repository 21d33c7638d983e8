/*
 * http.c - the simulator's HTTP side: libmicrohttpd in external epoll mode
 * on the libuv loop, Ollama's (gin's) routing rules, the loopback Host
 * check, and each request's lifecycle.
 *
 * Lifecycle of a request (struct sim_req):
 *   - created on the first access-handler call, body collected on the next
 *     ones, dispatched on the final call (PH_RECEIVING -> ...);
 *   - a handler either prepares a response at once (PH_READY, queued before
 *     the access handler returns) or leaves the request waiting (PH_WAITING):
 *     the connection is then suspended and a hang-up watch is started on its
 *     socket, because MHD 0.9.75 does not poll suspended connections;
 *   - streams use a callback response whose reader suspends the connection
 *     when it has nothing buffered; producers resume it (req_wake);
 *   - per-request state is released only from MHD's request-completed
 *     callback; uv handles are closed there and the memory goes back to a
 *     free list when the last close callback has run.
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

enum {
    MB_GET = 1,
    MB_HEAD = 2,
    MB_POST = 4,
    MB_PUT = 8,
    MB_DELETE = 16,
    MB_OPTIONS = 32,
    MB_PATCH = 64,
    MB_OTHER = 128,
};

struct route_def {
    const char *path;
    enum route id;
    unsigned methods;
    int param; /* path is a prefix followed by exactly one segment */
};

static const struct route_def ROUTES[] = {
    {"/", R_ROOT, MB_GET | MB_HEAD, 0},
    {"/api/version", R_VERSION, MB_GET | MB_HEAD, 0},
    {"/api/tags", R_TAGS, MB_GET | MB_HEAD, 0},
    {"/api/ps", R_PS, MB_GET, 0},
    {"/api/show", R_SHOW, MB_POST, 0},
    {"/api/generate", R_GENERATE, MB_POST, 0},
    {"/api/chat", R_CHAT, MB_POST, 0},
    {"/api/embed", R_EMBED, MB_POST, 0},
    {"/api/embeddings", R_EMBEDDINGS, MB_POST, 0},
    {"/api/pull", R_PULL, MB_POST, 0},
    {"/api/push", R_PUSH, MB_POST, 0},
    {"/api/create", R_CREATE, MB_POST, 0},
    {"/api/copy", R_COPY, MB_POST, 0},
    {"/api/delete", R_DELETE, MB_DELETE, 0},
    {"/api/me", R_ME, MB_POST, 0},
    {"/api/signout", R_SIGNOUT, MB_POST, 0},
    {"/api/user/keys/", R_USER_KEYS, MB_DELETE, 1},
    {"/api/blobs/", R_BLOB_HEAD, MB_HEAD, 1},
    {"/api/blobs/", R_BLOB_POST, MB_POST, 1},
    {"/v1/chat/completions", R_V1_CHAT, MB_POST, 0},
    {"/v1/completions", R_V1_COMPLETIONS, MB_POST, 0},
    {"/v1/embeddings", R_V1_EMBEDDINGS, MB_POST, 0},
    {"/v1/models", R_V1_MODELS, MB_GET, 0},
    {"/v1/models/", R_V1_MODEL, MB_GET, 1},
    {"/_sim/stats", R_SIM_STATS, MB_GET, 0},
    {"/_sim/reset", R_SIM_RESET, MB_POST, 0},
    {"/_sim/fault", R_SIM_FAULT, MB_GET | MB_POST, 0},
    {"/_sim/models", R_SIM_MODELS, MB_GET | MB_POST, 0},
};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

/* Addresses of this machine's interfaces (Ollama's isLocalIP). */
static struct in6_addr *g_local_ips;
static int g_nlocal;
static void (*g_shutdown_done)(void);
static uv_timer_t g_kick;
static int g_kick_init;

static void on_kick(uv_timer_t *t)
{
    (void)t;
    if (g_sim.daemon && !g_sim.shutting_down)
        sol_mhd_uv_run(&g_sim.glue);
}

/* MHD 0.9.75 drops its inter-thread channel when polled externally, so
 * MHD_resume_connection() does not make MHD's epoll fd readable: run MHD on
 * the next loop iteration ourselves. A separate timer, because this may be
 * called from inside MHD_run(), after which the glue re-arms its own. */
static void kick(void)
{
    if (g_kick_init && !uv_is_active((uv_handle_t *)&g_kick))
        uv_timer_start(&g_kick, on_kick, 0, 0);
}

int route_is_inference(enum route rt)
{
    return rt == R_GENERATE || rt == R_CHAT || rt == R_EMBED || rt == R_EMBEDDINGS ||
           route_is_v1(rt);
}

int route_is_v1(enum route rt)
{
    return rt == R_V1_CHAT || rt == R_V1_COMPLETIONS || rt == R_V1_EMBEDDINGS ||
           rt == R_V1_MODELS || rt == R_V1_MODEL;
}

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return MB_GET;
    if (strcmp(m, "POST") == 0)
        return MB_POST;
    if (strcmp(m, "HEAD") == 0)
        return MB_HEAD;
    if (strcmp(m, "DELETE") == 0)
        return MB_DELETE;
    if (strcmp(m, "PUT") == 0)
        return MB_PUT;
    if (strcmp(m, "OPTIONS") == 0)
        return MB_OPTIONS;
    if (strcmp(m, "PATCH") == 0)
        return MB_PATCH;
    return MB_OTHER;
}

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

/* ---- request objects ---- */

static struct sim_req *req_new(struct MHD_Connection *conn)
{
    struct sim_req *r = g_sim.freelist;
    if (r) {
        g_sim.freelist = r->next;
        g_sim.nfree--;
        /* Keep the buffers (their capacity), reset everything else. */
        struct sbuf body = r->body, out = r->out, text = r->text, lines = r->lines;
        memset(r, 0, sizeof *r);
        r->body = body;
        r->out = out;
        r->text = text;
        r->lines = lines;
        r->body.len = r->out.len = r->text.len = r->lines.len = 0;
    } else {
        r = calloc(1, sizeof *r);
        if (!r)
            abort();
    }
    r->conn = conn;
    r->id = ++g_sim.next_id;
    r->rec = -1;
    r->slot = -1;
    r->lines_limit = -1;
    r->stream_given = -1;
    r->body_fnv = FNV64_INIT;
    r->t_recv = now_ns();
    r->next = g_sim.live;
    if (g_sim.live)
        g_sim.live->prev = r;
    g_sim.live = r;
    return r;
}

static void shrink(struct sbuf *b)
{
    if (b->cap > 65536)
        sb_free(b);
}

static void req_free(struct sim_req *r)
{
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
        sb_free(&r->body);
        sb_free(&r->out);
        sb_free(&r->text);
        sb_free(&r->lines);
        free(r);
        return;
    }
    shrink(&r->body);
    shrink(&r->out);
    shrink(&r->text);
    shrink(&r->lines);
    r->next = g_sim.freelist;
    g_sim.freelist = r;
    g_sim.nfree++;
}

static void on_req_handle_closed(struct sim_req *r)
{
    if (--r->handles_open == 0)
        req_free(r);
}

static void on_timer_closed(uv_handle_t *h)
{
    on_req_handle_closed(h->data);
}

static void on_watch_closed(struct sol_hangup_watch *w)
{
    on_req_handle_closed(w->data);
}

static void on_req_timer(uv_timer_t *t)
{
    struct sim_req *r = t->data;
    r->timer_active = 0;
    if (r->timer_cb && !r->mhd_done && !r->cancelled)
        r->timer_cb(r);
}

void req_timer_start(struct sim_req *r, uint64_t delay_ns, void (*cb)(struct sim_req *r))
{
    if (!r->timer_init) {
        uv_timer_init(&g_sim.loop, &r->timer);
        r->timer.data = r;
        r->timer_init = 1;
        r->handles_open++;
    }
    r->timer_cb = cb;
    r->timer_active = 1;
    /* uv timers count whole milliseconds: round up so a token is never
     * early; callers catch up by emitting everything that is due. */
    uv_timer_start(&r->timer, on_req_timer, (delay_ns + 999999) / 1000000, 0);
}

void req_timer_stop(struct sim_req *r)
{
    if (r->timer_init && r->timer_active) {
        uv_timer_stop(&r->timer);
        r->timer_active = 0;
    }
}

static void resume(struct sim_req *r)
{
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        kick();
    }
}

static void on_hangup(struct sol_hangup_watch *w)
{
    struct sim_req *r = w->data;
    if (r->mhd_done || r->cancelled)
        return;
    SOL_INFO("request %llu: client went away", (unsigned long long)r->id);
    r->cancelled = 1;
    stats_outcome(r, "cancelled");
    infer_cancel(r);
    resume(r); /* MHD then closes it: the handler/reader report an error */
}

static void suspend(struct sim_req *r)
{

    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    if (!r->watch_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci &&
            sol_hangup_watch_init(&r->watch, &g_sim.loop, ci->connect_fd, on_hangup, r) == 0) {
            r->watch_init = 1;
            r->handles_open++;
        }
    }
    if (r->watch_init)
        sol_hangup_watch_start(&r->watch);
}

void req_ready(struct sim_req *r)
{
    if (r->phase == PH_STREAMING || r->phase == PH_SENT)
        return;
    if (!r->cb_resp && r->fault == F_STALL)
        return; /* a stalled non-streamed answer never comes */
    if (!r->cb_resp && r->fault == F_CLOSE) {
        r->drop = 1;
        stats_outcome(r, "fault:close");
    }
    r->phase = PH_READY;
    resume(r);
}

void req_wake(struct sim_req *r)
{
    if (r->phase == PH_STREAMING)
        resume(r);
}

void req_json_ok(struct sim_req *r)
{
    r->status = MHD_HTTP_OK;
    r->ctype = "application/json; charset=utf-8";
}

void req_error_oai(struct sim_req *r, int status, const char *type, const char *msg, int nl)
{
    r->out.len = 0;
    r->cb_resp = 0;
    sb_puts(&r->out, "{\"error\":{\"message\":");
    sb_json_str(&r->out, msg);
    sb_puts(&r->out, ",\"type\":");
    sb_json_str(&r->out, type);
    sb_puts(&r->out, ",\"param\":null,\"code\":null}}");
    if (nl)
        sb_putc(&r->out, '\n');
    r->status = status;
    /* Handler errors go through Ollama's OpenAI writer (plain JSON type and
     * a newline); middleware errors through gin's c.JSON. */
    r->ctype = nl ? "application/json" : "application/json; charset=utf-8";
    req_ready(r);
}

void req_error(struct sim_req *r, int status, const char *msg)
{
    if (route_is_v1(r->route)) {
        /* Ollama's OpenAI writer reports every handler error as api_error. */
        req_error_oai(r, status, "api_error", msg, 1);
        return;
    }
    r->out.len = 0;
    r->cb_resp = 0;
    sb_puts(&r->out, "{\"error\":");
    sb_json_str(&r->out, msg);
    sb_putc(&r->out, '}');
    r->status = status;
    r->ctype = "application/json; charset=utf-8";
    req_ready(r);
}

static void req_text(struct sim_req *r, int status, const char *ctype, const char *body)
{
    r->out.len = 0;
    sb_puts(&r->out, body);
    r->status = status;
    r->ctype = ctype;
    req_ready(r);
}

/* ---- MHD callbacks ---- */

/* MHD 0.9.75 marks a connection closed when a content reader returns
 * END_WITH_ERROR but leaves its idle loop without cleaning it up, so the
 * socket would stay open until shutdown. Connections with a non-default
 * timeout are visited on every MHD run (which cleans closed ones up): give
 * this one such a timeout and make sure MHD runs again. */
static ssize_t reader_error(struct sim_req *r)
{
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 86400u);
    kick();
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct sim_req *r = cls;
    (void)pos;
    if (r->cancelled)
        return reader_error(r);
    size_t avail = r->out.len - r->out_off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out.p + r->out_off, n);
        r->out_off += n;
        if (r->out_off == r->out.len)
            r->out_off = r->out.len = 0;
        return (ssize_t)n;
    }
    if (r->out_cut)
        return reader_error(r);
    if (r->out_done) {
        if (!r->is_control)
            stats_work_done(r);
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    suspend(r); /* resumed by req_wake when a producer appends */
    return 0;
}

static enum MHD_Result respond(struct sim_req *r)
{
    struct MHD_Response *resp;
    if (r->cb_resp) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        r->phase = PH_STREAMING;
    } else {
        /* The body lives in the request, which outlives the response: it is
         * released only after MHD's completion callback. */
        resp = MHD_create_response_from_buffer(r->out.len, r->out.len ? r->out.p : (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
        r->phase = PH_SENT;
    }
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    if (r->extra_hdr_name)
        MHD_add_response_header(resp, r->extra_hdr_name, r->extra_hdr_val);
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    if (!r->is_control) {
        stats_first_byte(r);
        if (!r->cb_resp)
            stats_work_done(r); /* the whole answer is handed over */
    }
    return ret;
}

static void apply_fault(struct sim_req *r)
{
    int64_t arg = 0;
    enum fault_mode f = fault_take(r, &arg);
    if (f == F_NONE)
        return;
    r->fault = f;
    r->fault_arg = arg;
    static const char *const names[] = {"none", "refuse", "500",   "503", "429",
                                        "hang", "stall",  "close", "404", "slow"};
    char outcome[32];
    snprintf(outcome, sizeof outcome, "fault:%s", names[f]);
    stats_outcome(r, outcome);
    SOL_DEBUG("request %llu: fault %s", (unsigned long long)r->id, names[f]);
    switch (f) {
    case F_500:
        req_error(r, 500, "llama runner process has terminated: exit status 2");
        break;
    case F_503:
        req_error(r, 503, "server busy, please try again.  maximum pending requests exceeded");
        break;
    case F_429:
        if (arg > 0) {
            r->extra_hdr_name = "Retry-After";
            snprintf(r->extra_hdr_val, sizeof r->extra_hdr_val, "%lld", (long long)arg);
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
        r->phase = PH_WAITING; /* never ready: held until the client goes */
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
    if (r->method != MB_POST && r->method != MB_DELETE)
        return;
    if (r->route == R_BLOB_POST || r->body.len == 0)
        return;
    r->json = cJSON_ParseWithLength(r->body.p, r->body.len);
    if (!cJSON_IsObject(r->json))
        return;
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

static void dispatch(struct sim_req *r, const char *method)
{
    r->phase = PH_WAITING;
    if (!r->is_control) {
        peek_request(r);
        stats_request_info(r);
    }
    if (r->route == R_REDIRECT) {
        /* gin redirects before any middleware runs */
        size_t len = strlen(r->path);
        if (r->path[len - 1] == '/')
            r->path[len - 1] = 0;
        else
            snprintf(r->path + len, sizeof r->path - len, "/");
        r->extra_hdr_name = "Location";
        str_copy(r->extra_hdr_val, sizeof r->extra_hdr_val, r->path);
        r->out.len = 0;
        if (r->method == MB_GET) {
            sb_printf(&r->out, "<a href=\"%s\">Moved Permanently</a>.\n\n", r->path);
            r->ctype = "text/html; charset=utf-8";
        }
        r->status = r->method == MB_GET ? 301 : 307;
        req_ready(r);
        return;
    }
    if (!r->is_control) {
        const char *host = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Host");
        if (!host_allowed(host)) {
            r->out.len = 0;
            r->status = 403;
            r->ctype = NULL;
            req_ready(r);
            return;
        }
        if (r->method == MB_OPTIONS) {
            r->out.len = 0;
            r->status = 204;
            r->ctype = NULL;
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
    (void)method;
    if (r->is_control) {
        control_handle(r);
        return;
    }
    if (r->body_too_large) {
        req_error(r, 413, "http: request body too large");
        return;
    }
    apply_fault(r);
    if (r->phase != PH_WAITING || r->fault == F_HANG)
        return;
    if (r->fault == F_CLOSE && !route_is_inference(r->route) && r->route != R_PULL &&
        r->route != R_PUSH && r->route != R_CREATE) {
        r->drop = 1; /* nothing streams here: cut before any byte */
        return;
    }
    if (route_is_inference(r->route) && r->route != R_V1_MODELS && r->route != R_V1_MODEL)
        infer_handle(r);
    else
        api_handle(r);
    if (r->fault == F_SLOW && r->phase == PH_READY && !r->cb_resp &&
        !route_is_inference(r->route)) {
        /* slow on a plain route: hold the prepared answer for arg ms */
        r->phase = PH_WAITING;
        req_timer_start(r, (uint64_t)(r->fault_arg > 0 ? r->fault_arg : 0) * 1000000ULL, req_ready);
    }
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)cls;
    (void)version;
    struct sim_req *r = *con_cls;
    if (!r) {
        if (g_sim.shutting_down)
            return MHD_NO;
        r = req_new(conn);
        *con_cls = r;
        r->method = method_bit(method);
        str_copy(r->path, sizeof r->path, url);
        const char *param = NULL;
        unsigned allowed = 0;
        r->route = route_lookup(url, r->method, &param, &allowed);
        if (param)
            str_copy(r->param, sizeof r->param, param);
        r->is_control =
            strncmp(url, "/_sim/", 6) == 0 &&
            (r->route == R_SIM_STATS || r->route == R_SIM_RESET || r->route == R_SIM_FAULT ||
             r->route == R_SIM_MODELS || r->route == R_NOT_ALLOWED || r->route == R_NOT_FOUND);
        if (r->route == R_BLOB_POST)
            sha256_init(&r->sha);
        if (!r->is_control)
            stats_begin(r);
        if (r->route == R_NOT_ALLOWED) {
            r->extra_hdr_name = "Allow";
            struct sbuf a = {0};
            static const char *const mn[] = {"GET",    "HEAD",    "POST", "PUT",
                                             "DELETE", "OPTIONS", "PATCH"};
            for (int i = 0; i < 7; i++)
                if (allowed & (1u << i)) {
                    if (a.len)
                        sb_puts(&a, ", ");
                    sb_puts(&a, mn[i]);
                }
            str_copy(r->extra_hdr_val, sizeof r->extra_hdr_val, a.p ? a.p : "");
            sb_free(&a);
        }
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        r->body_fnv = fnv1a64(r->body_fnv, upload_data, n);
        r->body_total += n;
        if (r->route == R_BLOB_POST)
            sha256_update(&r->sha, upload_data, n);
        else if (r->body.len + n <= MAX_BODY)
            sb_put(&r->body, upload_data, n);
        else
            r->body_too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->cancelled || g_sim.shutting_down)
        return MHD_NO;
    if (r->phase == PH_RECEIVING)
        dispatch(r, method);
    if (r->drop || r->cancelled)
        return MHD_NO;
    if (r->phase == PH_READY)
        return respond(r);
    if (r->phase == PH_WAITING)
        suspend(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    struct sim_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->mhd_done = 1;
    r->suspended = 0;
    if (!r->is_control && !r->finished) {
        if (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) {
            if (r->status >= 400) {
                char o[32];
                snprintf(o, sizeof o, "error:%d", r->status);
                stats_outcome(r, o);
            } else {
                stats_outcome(r, "completed");
            }
        } else {
            stats_outcome(r, "cancelled");
        }
    }
    infer_cancel(r); /* frees the slot / queue place if still held */
    req_timer_stop(r);
    if (!r->is_control)
        stats_end(r, toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    if (r->prev)
        r->prev->next = r->next;
    else
        g_sim.live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->next = r->prev = NULL;
    if (r->timer_init) {
        r->timer_init = 0;
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    }
    if (r->watch_init) {
        r->watch_init = 0;
        sol_hangup_watch_close(&r->watch, on_watch_closed);
    }
    if (r->handles_open == 0)
        req_free(r);
}

static enum MHD_Result accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    (void)cls;
    (void)addr;
    (void)len;
    if (g_sim.shutting_down)
        return MHD_NO;
    return fault_refuse_connection() ? MHD_NO : MHD_YES;
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    if (!sol_log_enabled(SOL_LOG_INFO))
        return;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = 0;
    SOL_INFO("mhd: %s", line);
}

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
    g_sim.daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, accept_policy, NULL,
        access_handler, NULL, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)16384, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0,
        /* MHD zeroes the whole pool between keep-alive requests: 16 KiB
         * (default 32) halves that cost and still fits large headers. */
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)16384, MHD_OPTION_END);
    if (!g_sim.daemon) {
        SOL_ERROR("cannot start libmicrohttpd");
        return -1;
    }
    uv_timer_init(&g_sim.loop, &g_kick);
    g_kick_init = 1;
    int rc = sol_mhd_uv_attach(&g_sim.glue, &g_sim.loop, g_sim.daemon);
    if (rc < 0) {
        SOL_ERROR("cannot attach libmicrohttpd to the loop: %s", uv_strerror(rc));
        MHD_stop_daemon(g_sim.daemon);
        g_sim.daemon = NULL;
        uv_close((uv_handle_t *)&g_kick, NULL);
        g_kick_init = 0;
        return -1;
    }
    return 0;
}

static void on_glue_closed(struct sol_mhd_uv *glue)
{
    (void)glue;
    /* Every suspended connection was resumed before the glue was closed, as
     * MHD_stop_daemon requires; completion callbacks run from in here. */
    MHD_stop_daemon(g_sim.daemon);
    g_sim.daemon = NULL;
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
    for (struct sim_req *r = g_sim.live; r; r = r->next) {
        r->cancelled = 1;
        if (r->q_model)
            model_release(r);
    }
    for (struct sim_req *r = g_sim.live; r; r = r->next) {
        infer_cancel(r);
        req_timer_stop(r);
        resume(r);
    }
    if (g_kick_init) {
        uv_close((uv_handle_t *)&g_kick, NULL);
        g_kick_init = 0;
    }
    if (g_sim.daemon)
        sol_mhd_uv_close(&g_sim.glue, on_glue_closed);
    else if (done)
        done();
}

void http_free(void)
{
    while (g_sim.freelist) {
        struct sim_req *r = g_sim.freelist;
        g_sim.freelist = r->next;
        sb_free(&r->body);
        sb_free(&r->out);
        sb_free(&r->text);
        sb_free(&r->lines);
        free(r);
    }
    g_sim.nfree = 0;
}
