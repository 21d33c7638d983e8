/*
 * metrics.c - GET /metrics in the Prometheus text format (see metrics.h).
 */
#include "base/metrics.h"

#include "base/aggregate.h"
#include "base/breaker.h"
#include "base/http_reply.h"
#include "base/model_name.h"
#include "base/scorer.h"

#include <dirent.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

/* ---- buckets ------------------------------------------------------------- */

/* Upper bounds in seconds, as written in `le` (the text is the label). */
static const char *const duration_le[SOL_METRICS_DURATION_BUCKETS] = {
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
    "2.5",   "5",    "10",    "30",   "60",  "120",  "300"};
static const double duration_bound[SOL_METRICS_DURATION_BUCKETS] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300};

static const char *const ttfb_le[SOL_METRICS_TTFB_BUCKETS] = {
    "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
    "0.25",  "0.5",    "1",     "2.5",  "5",     "10",   "30"};
static const double ttfb_bound[SOL_METRICS_TTFB_BUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

static const char *const queue_le[SOL_METRICS_QUEUE_BUCKETS] = {
    "0.001", "0.005", "0.01", "0.05", "0.1", "0.5", "1", "2.5", "5", "10", "30", "60"};
static const double queue_bound[SOL_METRICS_QUEUE_BUCKETS] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
                                                              1,     2.5,   5,    10,   30,  60};

static const char *const code_names[SOL_METRICS_CODES] = {"none", "1xx", "2xx",  "3xx",
                                                          "4xx",  "5xx", "other"};

static void hist_observe(struct sol_metrics_hist *h, const double *bound, unsigned n, double v)
{
    if (!(v >= 0)) /* NaN or negative */
        v = 0;
    unsigned i = 0;
    while (i < n && v > bound[i])
        i++;
    h->counts[i]++; /* i == n: +Inf */
    h->count++;
    h->sum += v;
}

/* ---- init / free ---------------------------------------------------------- */

static size_t token_slots(unsigned n_nodes)
{
    return (size_t)(n_nodes ? n_nodes : 1) * (SOL_METRICS_MAX_MODELS + 1);
}

int sol_metrics_init(struct sol_metrics *m, unsigned n_nodes)
{
    memset(m, 0, sizeof *m);
    m->n_nodes = n_nodes;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    m->start_time_unix = (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
    m->n_routes = 1;
    m->n_models = 1;
    m->model_names = calloc(SOL_METRICS_MAX_MODELS + 1, sizeof *m->model_names);
    m->model_keys = calloc(SOL_METRICS_MAX_MODELS + 1, sizeof *m->model_keys);
    m->series = calloc(SOL_METRICS_SERIES_CAP, sizeof *m->series);
    m->gen_tokens = calloc(token_slots(n_nodes), sizeof *m->gen_tokens);
    m->prompt_tokens = calloc(token_slots(n_nodes), sizeof *m->prompt_tokens);
    if (!m->model_names || !m->model_keys || !m->series || !m->gen_tokens || !m->prompt_tokens) {
        sol_metrics_free(m);
        return -1;
    }
    snprintf(m->model_names[0], SOL_MODEL_NAME_MAX, "other");
    return 0;
}

void sol_metrics_free(struct sol_metrics *m)
{
    free(m->model_names);
    free(m->model_keys);
    free(m->series);
    free(m->gen_tokens);
    free(m->prompt_tokens);
    m->model_names = NULL;
    m->model_keys = NULL;
    m->series = NULL;
    m->gen_tokens = m->prompt_tokens = NULL;
}

/* ---- recording ------------------------------------------------------------ */

static int is_generic_route(const struct sol_route *r)
{
    return strcmp(r->path, "/v1/") == 0; /* routes.c: any other POST /v1/... */
}

static unsigned route_index(struct sol_metrics *m, const struct sol_route *r)
{
    if (is_generic_route(r))
        return 0;
    for (unsigned i = 1; i < m->n_routes; i++)
        if (m->routes[i] == r)
            return i;
    if (m->n_routes > SOL_METRICS_MAX_ROUTES)
        return 0;
    m->routes[m->n_routes] = r;
    return m->n_routes++;
}

/* The node label "other": a name not in the table. A fixed index rather
 * than n_nodes + 1, so that series recorded before the table grew keep
 * their meaning. */
#define NODE_OTHER 0xFFFFFu

/* Makes room for the token counters of `want` nodes (nodes that joined
 * after start: reload, discovery). 0, or -1 when memory runs out. */
static int grow_nodes(struct sol_metrics *m, unsigned want)
{
    if (want <= m->n_nodes)
        return 0;
    if (want >= NODE_OTHER)
        return -1;
    size_t old = token_slots(m->n_nodes), now = token_slots(want);
    uint64_t *gen = realloc(m->gen_tokens, now * sizeof *gen);
    if (!gen)
        return -1;
    m->gen_tokens = gen;
    uint64_t *prompt = realloc(m->prompt_tokens, now * sizeof *prompt);
    if (!prompt)
        return -1;
    m->prompt_tokens = prompt;
    memset(gen + old, 0, (now - old) * sizeof *gen);
    memset(prompt + old, 0, (now - old) * sizeof *prompt);
    m->n_nodes = want;
    return 0;
}

/* 0 = none, 1..n = table nodes, NODE_OTHER = a name not in the table. */
static unsigned node_index(struct sol_metrics *m, const struct sol_node_table *t, const char *name)
{
    if (!name || !name[0])
        return 0;
    for (unsigned i = 0; i < t->count; i++)
        if (strcmp(t->nodes[i]->name, name) == 0)
            return i < m->n_nodes || grow_nodes(m, t->count) == 0 ? i + 1 : NODE_OTHER;
    return NODE_OTHER;
}

/* A model some node's probe table knows (installed or loaded). */
static int model_known(const struct sol_node_table *t, uint64_t key)
{
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node_model *nm = sol_node_find_model(t->nodes[i], key);
        if (nm && (nm->installed || nm->loaded))
            return 1;
    }
    return 0;
}

static unsigned model_index(struct sol_metrics *m, const struct sol_node_table *t, const char *name)
{
    if (!name || !name[0] || strlen(name) >= SOL_MODEL_NAME_MAX)
        return 0;
    uint64_t key = sol_model_key(name);
    for (unsigned i = 1; i < m->n_models; i++)
        if (m->model_keys[i] == key && strcmp(m->model_names[i], name) == 0)
            return i;
    if (m->n_models > SOL_METRICS_MAX_MODELS || !model_known(t, key))
        return 0;
    memcpy(m->model_names[m->n_models], name, strlen(name) + 1);
    m->model_keys[m->n_models] = key;
    return m->n_models++;
}

static unsigned code_index(unsigned status)
{
    if (status == 0)
        return 0;
    if (status >= 100 && status < 600)
        return status / 100;
    return 6;
}

/* Packed label set: code 3 bits, route 6, model 9, node the rest. */
static uint64_t series_key(unsigned route, unsigned model, unsigned node, unsigned code)
{
    return (((((uint64_t)node << 9 | model) << 6 | route) << 3) | code) + 1;
}

static void series_unpack(uint64_t key, unsigned *route, unsigned *model, unsigned *node,
                          unsigned *code)
{
    key -= 1;
    *code = (unsigned)(key & 7);
    *route = (unsigned)((key >> 3) & 63);
    *model = (unsigned)((key >> 9) & 511);
    *node = (unsigned)(key >> 18);
}

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* Slots kept for the overflow label sets (route, other, other, code):
 * at most (SOL_METRICS_MAX_ROUTES + 1) * SOL_METRICS_CODES of them. */
#define SERIES_RESERVE ((SOL_METRICS_MAX_ROUTES + 1) * SOL_METRICS_CODES + 64)

static struct sol_metrics_series *series_find(struct sol_metrics *m, uint64_t key, int may_add)
{
    unsigned mask = SOL_METRICS_SERIES_CAP - 1;
    for (unsigned i = (unsigned)mix64(key) & mask;; i = (i + 1) & mask) {
        struct sol_metrics_series *s = &m->series[i];
        if (s->key == key)
            return s;
        if (s->key == 0) {
            if (!may_add)
                return NULL;
            s->key = key;
            m->n_series++;
            return s;
        }
    }
}

void sol_metrics_record(struct sol_metrics *m, const struct sol_node_table *t,
                        const struct sol_metrics_sample *s)
{
    if (!m->series || !s->route)
        return;
    unsigned route = route_index(m, s->route);
    unsigned model = model_index(m, t, s->model);
    unsigned node = node_index(m, t, s->node);
    unsigned code = code_index(s->status);

    uint64_t key = series_key(route, model, node, code);
    struct sol_metrics_series *ser =
        series_find(m, key, m->n_series < SOL_METRICS_SERIES_CAP - SERIES_RESERVE);
    if (!ser) /* table full: fold into (route, other, other, code) */
        ser = series_find(m, series_key(route, 0, NODE_OTHER, code), 1);
    ser->count++;

    hist_observe(&m->duration[route], duration_bound, SOL_METRICS_DURATION_BUCKETS, s->duration_s);
    if (s->ttfb_s > 0)
        hist_observe(&m->ttfb[route], ttfb_bound, SOL_METRICS_TTFB_BUCKETS, s->ttfb_s);
    if (s->ttft_s > 0)
        hist_observe(&m->ttft[route], ttfb_bound, SOL_METRICS_TTFB_BUCKETS, s->ttft_s);
    if (s->waited || s->queue_s > 0)
        hist_observe(&m->queue_wait, queue_bound, SOL_METRICS_QUEUE_BUCKETS, s->queue_s);
    m->bytes_out[route] += s->bytes_out;
    if (s->attempts > 1)
        m->retries[route] += s->attempts - 1;
    /* A failover: a node answered (2xx/3xx) after an earlier attempt failed. */
    if (s->attempts > 1 && s->status >= 200 && s->status < 400 && s->node && s->node[0])
        m->failovers[route]++;

    if (node >= 1 && node <= m->n_nodes && (s->eval_count || s->prompt_eval_count)) {
        size_t slot = (size_t)(node - 1) * (SOL_METRICS_MAX_MODELS + 1) + model;
        m->gen_tokens[slot] += s->eval_count;
        m->prompt_tokens[slot] += s->prompt_eval_count;
    }
}

void sol_metrics_continuation(struct sol_metrics *m, enum sol_cont_why why)
{
    if ((unsigned)why < SOL_CONT_KINDS)
        m->continuations[why]++;
}

void sol_metrics_refused(struct sol_metrics *m, enum sol_refusal why)
{
    if ((unsigned)why < SOL_REFUSAL_KINDS)
        m->refused[why]++;
}

enum sol_refusal sol_metrics_refusal_of(unsigned status, int from_auth)
{
    switch (status) {
    case 401:
        return SOL_REFUSED_UNAUTHORIZED;
    case 403:
        return SOL_REFUSED_FORBIDDEN;
    case 413:
        return SOL_REFUSED_BODY_TOO_LARGE;
    case 414:
        return SOL_REFUSED_URI_TOO_LONG;
    case 431:
        return SOL_REFUSED_HEADERS_TOO_LARGE;
    default: /* 429 */
        return from_auth ? SOL_REFUSED_RATE_LIMITED : SOL_REFUSED_TOO_MANY_CONNECTIONS;
    }
}

static const char *const refusal_names[SOL_REFUSAL_KINDS] = {
    [SOL_REFUSED_TOO_MANY_CONNECTIONS] = "too_many_connections",
    [SOL_REFUSED_URI_TOO_LONG] = "uri_too_long",
    [SOL_REFUSED_HEADERS_TOO_LARGE] = "headers_too_large",
    [SOL_REFUSED_BODY_TOO_LARGE] = "body_too_large",
    [SOL_REFUSED_UNAUTHORIZED] = "unauthorized",
    [SOL_REFUSED_FORBIDDEN] = "forbidden",
    [SOL_REFUSED_RATE_LIMITED] = "rate_limited",
    [SOL_REFUSED_BODY_BUDGET] = "body_budget",
    [SOL_REFUSED_AUTH_FAILURES] = "auth_failures",
};

/* ---- rendering ------------------------------------------------------------ */

struct out {
    struct sol_buf *b;
    int rc;
};

static void put(struct out *o, const char *s)
{
    o->rc |= sol_buf_append_str(o->b, s);
}

static void putf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(struct out *o, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp) {
        o->rc = -1;
        return;
    }
    o->rc |= sol_buf_append(o->b, tmp, (size_t)n);
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the NUL */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return n;
}

int sol_metrics_append_label_value(struct sol_buf *out, const char *s)
{
    int rc = 0;
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        size_t run = 0;
        /* Copy plain runs in one append. */
        while (p[run] && p[run] != '\\' && p[run] != '"' && p[run] != '\n' && p[run] < 0x80)
            run++;
        if (run) {
            rc |= sol_buf_append(out, p, run);
            p += run;
            continue;
        }
        if (*p == '\\') {
            rc |= sol_buf_append(out, "\\\\", 2);
            p++;
        } else if (*p == '"') {
            rc |= sol_buf_append(out, "\\\"", 2);
            p++;
        } else if (*p == '\n') {
            rc |= sol_buf_append(out, "\\n", 2);
            p++;
        } else {
            size_t n = utf8_len(p);
            if (n) {
                rc |= sol_buf_append(out, p, n);
                p += n;
            } else {
                rc |= sol_buf_append(out, "\xef\xbf\xbd", 3);
                p++;
            }
        }
    }
    return rc ? -1 : 0;
}

static void label(struct out *o, int first, const char *name, const char *value)
{
    putf(o, "%s%s=\"", first ? "{" : ",", name);
    o->rc |= sol_metrics_append_label_value(o->b, value);
    put(o, "\"");
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
    putf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void value_u64(struct out *o, uint64_t v)
{
    putf(o, " %" PRIu64 "\n", v);
}

static void value_f(struct out *o, double v)
{
    if (isnan(v))
        put(o, " NaN\n");
    else if (isinf(v))
        put(o, v > 0 ? " +Inf\n" : " -Inf\n");
    else {
        /* Shortest form that reads back as the same double. */
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.15g", v);
        if (strtod(tmp, NULL) != v)
            snprintf(tmp, sizeof tmp, "%.17g", v);
        putf(o, " %s\n", tmp);
    }
}

static const char *node_label(const struct sol_metrics *m, const struct sol_node_table *t,
                              unsigned idx)
{
    if (idx == 0)
        return "none";
    if (idx != NODE_OTHER && idx <= t->count)
        return t->nodes[idx - 1]->name;
    return "other";
}

static const char *route_label(const struct sol_metrics *m, unsigned idx)
{
    return idx == 0 || idx >= m->n_routes ? "other" : m->routes[idx]->path;
}

/* Whether model label index idx is shown to the view's key: "other" (and
 * requests without a model) stand for models the key may not use too, so
 * a restricted key does not see them. */
static int model_shown(const struct sol_metrics *m, const struct sol_metrics_view *v, unsigned idx)
{
    if (!sol_key_restricted(v->key))
        return 1;
    return idx > 0 && idx < m->n_models && sol_model_visible(v->key, m->model_names[idx]);
}

static void render_hist(struct out *o, const char *name, const char *lname, const char *lvalue,
                        const struct sol_metrics_hist *h, const char *const *le, unsigned n)
{
    uint64_t cum = 0;
    for (unsigned i = 0; i <= n; i++) {
        cum += h->counts[i];
        putf(o, "%s_bucket", name);
        if (lname)
            label(o, 1, lname, lvalue);
        label(o, lname == NULL, "le", i < n ? le[i] : "+Inf");
        put(o, "}");
        value_u64(o, cum);
    }
    putf(o, "%s_sum", name);
    if (lname) {
        label(o, 1, lname, lvalue);
        put(o, "}");
    }
    value_f(o, h->sum);
    putf(o, "%s_count", name);
    if (lname) {
        label(o, 1, lname, lvalue);
        put(o, "}");
    }
    value_u64(o, h->count);
}

static void render_requests(struct out *o, const struct sol_metrics *m,
                            const struct sol_metrics_view *v)
{
    family(o, "sollol_requests_total", "counter",
           "Requests finished, by route, model, answering node and status class.");
    for (unsigned i = 0; i < SOL_METRICS_SERIES_CAP; i++) {
        const struct sol_metrics_series *s = &m->series[i];
        if (!s->key)
            continue;
        unsigned route, model, node, code;
        series_unpack(s->key, &route, &model, &node, &code);
        if (!model_shown(m, v, model))
            continue;
        put(o, "sollol_requests_total");
        label(o, 1, "route", route_label(m, route));
        label(o, 0, "model", model < m->n_models ? m->model_names[model] : "other");
        label(o, 0, "node", node_label(m, v->table, node));
        label(o, 0, "code", code_names[code < SOL_METRICS_CODES ? code : 6]);
        put(o, "}");
        value_u64(o, s->count);
    }

    family(o, "sollol_request_duration_seconds", "histogram",
           "Time from a request's arrival to its completion, by route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->duration[r].count)
            render_hist(o, "sollol_request_duration_seconds", "route", route_label(m, r),
                        &m->duration[r], duration_le, SOL_METRICS_DURATION_BUCKETS);

    family(o, "sollol_request_ttfb_seconds", "histogram",
           "Time from sending a request to the answering node to its first response byte, by "
           "route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->ttfb[r].count)
            render_hist(o, "sollol_request_ttfb_seconds", "route", route_label(m, r), &m->ttfb[r],
                        ttfb_le, SOL_METRICS_TTFB_BUCKETS);

    family(o, "sollol_request_ttft_seconds", "histogram",
           "Streamed inference: time from a request's arrival (queue wait and failed attempts "
           "included) to the first streamed chunk (the first token), by route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->ttft[r].count)
            render_hist(o, "sollol_request_ttft_seconds", "route", route_label(m, r), &m->ttft[r],
                        ttfb_le, SOL_METRICS_TTFB_BUCKETS);

    family(o, "sollol_queue_wait_seconds", "histogram",
           "Time requests waited in the admission queue for a node slot.");
    render_hist(o, "sollol_queue_wait_seconds", NULL, NULL, &m->queue_wait, queue_le,
                SOL_METRICS_QUEUE_BUCKETS);

    family(o, "sollol_response_bytes_total", "counter",
           "Response body bytes sent to clients, by route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->duration[r].count) {
            put(o, "sollol_response_bytes_total");
            label(o, 1, "route", route_label(m, r));
            put(o, "}");
            value_u64(o, m->bytes_out[r]);
        }

    family(o, "sollol_refused_requests_total", "counter",
           "Requests refused before reaching a node (limits and access control), by reason.");
    for (unsigned k = 0; k < SOL_REFUSAL_KINDS; k++) {
        put(o, "sollol_refused_requests_total");
        label(o, 1, "reason", refusal_names[k]);
        put(o, "}");
        value_u64(o, m->refused[k]);
    }
    family(o, "sollol_stream_continuations_total", "counter",
           "Answers whose node failed after the first byte: continued on another node "
           "(outcome=\"continued\") or ended with the error line, by reason (routing.md).");
    for (unsigned k = 0; k < SOL_CONT_KINDS; k++) {
        put(o, "sollol_stream_continuations_total");
        label(o, 1, "outcome", sol_cont_why_name((enum sol_cont_why)k));
        put(o, "}");
        value_u64(o, m->continuations[k]);
    }
    family(o, "sollol_connections_cut_total", "counter",
           "Client connections closed by the daemon, by reason (slow_headers, slow_body: "
           "below limits.header_timeout_ms, limits.min_body_rate; no_progress: unusable input).");
    const char *cut_names[] = {"slow_headers", "slow_body", "no_progress"};
    uint64_t cut_counts[] = {v->cut_slow_headers, v->cut_slow_body, v->cut_no_progress};
    for (unsigned k = 0; k < 3; k++) {
        put(o, "sollol_connections_cut_total");
        label(o, 1, "reason", cut_names[k]);
        put(o, "}");
        value_u64(o, cut_counts[k]);
    }

    family(o, "sollol_request_retries_total", "counter",
           "Attempts after the first of finished requests, by route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->duration[r].count) {
            put(o, "sollol_request_retries_total");
            label(o, 1, "route", route_label(m, r));
            put(o, "}");
            value_u64(o, m->retries[r]);
        }

    family(o, "sollol_request_failovers_total", "counter",
           "Requests answered by a node after an earlier attempt on another node failed, by "
           "route.");
    for (unsigned r = 0; r < m->n_routes; r++)
        if (m->duration[r].count) {
            put(o, "sollol_request_failovers_total");
            label(o, 1, "route", route_label(m, r));
            put(o, "}");
            value_u64(o, m->failovers[r]);
        }
}

static void render_tokens(struct out *o, const struct sol_metrics *m,
                          const struct sol_metrics_view *v)
{
    static const char *const names[2] = {"sollol_generated_tokens_total",
                                         "sollol_prompt_tokens_total"};
    static const char *const helps[2] = {
        "Tokens generated (eval_count, or usage.completion_tokens on OpenAI routes), by node "
        "and model.",
        "Prompt tokens evaluated (prompt_eval_count, or usage.prompt_tokens), by node and model."};
    for (int k = 0; k < 2; k++) {
        const uint64_t *arr = k ? m->prompt_tokens : m->gen_tokens;
        family(o, names[k], "counter", helps[k]);
        unsigned nn = v->table->count < m->n_nodes ? v->table->count : m->n_nodes;
        for (unsigned n = 0; n < nn; n++)
            for (unsigned j = 0; j < m->n_models && !v->table->nodes[n]->removed; j++) {
                size_t slot = (size_t)n * (SOL_METRICS_MAX_MODELS + 1) + j;
                if ((!m->gen_tokens[slot] && !m->prompt_tokens[slot]) || !model_shown(m, v, j))
                    continue;
                put(o, names[k]);
                label(o, 1, "node", v->table->nodes[n]->name);
                label(o, 0, "model", m->model_names[j]);
                put(o, "}");
                value_u64(o, arr[slot]);
            }
    }
}

/* The next node at or after *i that is in service: one that left (reload.h)
 * is not shown, and its name may be in use by its successor. */
static const struct sol_node *live_node(const struct sol_node_table *t, unsigned *i)
{
    while (*i < t->count && t->nodes[*i]->removed)
        (*i)++;
    return *i < t->count ? t->nodes[*i] : NULL;
}

static const char *state_label(enum sol_node_state s)
{
    return s == SOL_NODE_UP ? "up" : s == SOL_NODE_DOWN ? "down" : "misconfigured";
}

static void node_gauge(struct out *o, const char *name, const char *type, const char *help,
                       const struct sol_metrics_view *v, int which)
{
    family(o, name, type, help);
    const struct sol_node *n;
    for (unsigned ni = 0; (n = live_node(v->table, &ni)) != NULL; ni++) {
        put(o, name);
        label(o, 1, "node", n->name);
        put(o, "}");
        switch (which) {
        case 0:
            value_u64(o, n->state == SOL_NODE_UP);
            break;
        case 1:
            value_f(o, n->rtt_ms / 1000.0);
            break;
        case 2:
            value_u64(o, (uint64_t)sol_breaker_state_at(&n->breaker, v->now_ms));
            break;
        case 3:
            value_u64(o, n->breaker.opens_total);
            break;
        case 4:
            value_u64(o, n->in_flight);
            break;
        case 5:
            value_u64(o, n->max_concurrent);
            break;
        case 6:
            value_u64(o, n->requests_total);
            break;
        case 7:
            value_u64(o, n->failures_total);
            break;
        }
    }
}

static void render_nodes(struct out *o, const struct sol_metrics_view *v)
{
    const struct sol_node *n;
    node_gauge(o, "sollol_node_up", "gauge", "1 when the node answers probes, else 0.", v, 0);

    family(o, "sollol_node_state", "gauge",
           "The node's probe state, one-hot over up, down and misconfigured.");
    for (unsigned ni = 0; (n = live_node(v->table, &ni)) != NULL; ni++) {
        static const enum sol_node_state states[3] = {SOL_NODE_UP, SOL_NODE_DOWN,
                                                      SOL_NODE_MISCONFIGURED};
        for (int i = 0; i < 3; i++) {
            put(o, "sollol_node_state");
            label(o, 1, "node", n->name);
            label(o, 0, "state", state_label(states[i]));
            put(o, "}");
            value_u64(o, n->state == states[i]);
        }
    }

    node_gauge(o, "sollol_node_probe_rtt_seconds", "gauge",
               "Moving average of the node's probe round trips (0 = unknown).", v, 1);
    node_gauge(o, "sollol_node_breaker_state", "gauge",
               "The node's circuit breaker: 0 closed, 1 open, 2 half-open.", v, 2);
    node_gauge(o, "sollol_node_breaker_opens_total", "counter",
               "Times the node's circuit breaker opened.", v, 3);
    node_gauge(o, "sollol_node_in_flight", "gauge", "Requests running on the node now.", v, 4);
    node_gauge(o, "sollol_node_max_concurrent", "gauge",
               "Requests the daemon lets run on the node at once.", v, 5);
    node_gauge(o, "sollol_node_attempts_total", "counter",
               "Attempts dispatched to the node (retries included).", v, 6);
    node_gauge(o, "sollol_node_attempt_failures_total", "counter",
               "Attempts on the node that failed through the node's fault.", v, 7);

    family(o, "sollol_node_model_loaded", "gauge",
           "1 when the node's last /api/ps listed the model, 0 when only installed.");
    for (unsigned ni = 0; (n = live_node(v->table, &ni)) != NULL; ni++)
        for (unsigned j = 0; j < n->n_models; j++) {
            const struct sol_node_model *nm = &n->models[j];
            if ((!nm->installed && !nm->loaded) || !sol_model_visible(v->key, nm->name))
                continue;
            put(o, "sollol_node_model_loaded");
            label(o, 1, "node", n->name);
            label(o, 0, "model", nm->name);
            put(o, "}");
            value_u64(o, nm->loaded);
        }

    static const char *const tps_names[2] = {"sollol_node_model_generate_tokens_per_second",
                                             "sollol_node_model_prompt_tokens_per_second"};
    static const char *const tps_helps[2] = {
        "Learned generation speed of the model on the node (moving average).",
        "Learned prompt evaluation speed of the model on the node (moving average)."};
    for (int k = 0; k < 2; k++) {
        family(o, tps_names[k], "gauge", tps_helps[k]);
        for (unsigned ni = 0; (n = live_node(v->table, &ni)) != NULL; ni++)
            for (unsigned j = 0; j < n->n_models; j++) {
                const struct sol_node_model *nm = &n->models[j];
                double tps = k ? nm->prompt_tps : nm->gen_tps;
                if (!nm->samples || tps <= 0 || !sol_model_visible(v->key, nm->name))
                    continue;
                put(o, tps_names[k]);
                label(o, 1, "node", n->name);
                label(o, 0, "model", nm->name);
                put(o, "}");
                value_f(o, tps);
            }
    }
}

static void scalar(struct out *o, const char *name, const char *type, const char *help,
                   double value, int integer)
{
    family(o, name, type, help);
    put(o, name);
    if (integer)
        value_u64(o, (uint64_t)value);
    else
        value_f(o, value);
}

static void render_daemon(struct out *o, const struct sol_metrics *m,
                          const struct sol_metrics_view *v)
{
    family(o, "sollol_build_info", "gauge", "Always 1; the version is a label.");
    put(o, "sollol_build_info");
    label(o, 1, "version", SOLLOL_VERSION);
    put(o, "} 1\n");
    scalar(o, "sollol_uptime_seconds", "gauge", "Seconds since the daemon started.", v->uptime_s,
           0);
    scalar(o, "sollol_requests_in_flight", "gauge", "Client requests being served now.",
           v->requests_live, 1);
    scalar(o, "sollol_retries_total", "counter",
           "Attempts after the first, over all requests (a node failed before the first byte).",
           (double)v->retries_total, 1);

    const struct sol_queue_stats *q = &v->queue;
    scalar(o, "sollol_queue_length", "gauge", "Requests waiting for a node slot now.",
           (double)q->length, 1);
    scalar(o, "sollol_queue_oldest_wait_seconds", "gauge",
           "How long the oldest waiting request has waited (0 when empty).",
           (double)q->oldest_wait_ms / 1000.0, 0);
    scalar(o, "sollol_queue_enqueued_total", "counter", "Requests that entered the queue.",
           (double)q->enqueued_total, 1);
    scalar(o, "sollol_queue_dispatched_total", "counter", "Queued requests that got a node slot.",
           (double)q->dispatched_total, 1);
    scalar(o, "sollol_queue_expired_total", "counter",
           "Queued requests that waited past the maximum wait.", (double)q->expired_total, 1);
    scalar(o, "sollol_queue_rejected_total", "counter",
           "Requests refused because the queue was full.", (double)q->rejected_total, 1);
    scalar(o, "sollol_queue_removed_total", "counter", "Queued requests whose client went away.",
           (double)q->removed_total, 1);

    const struct sol_affinity_stats *a = &v->affinity;
    int on = v->affinity_on;
    scalar(o, "sollol_affinity_hits_total", "counter",
           "Prefix affinity lookups that found the node holding the conversation.",
           on ? (double)a->hits : 0, 1);
    scalar(o, "sollol_affinity_misses_total", "counter",
           "Prefix affinity lookups that found no live entry.", on ? (double)a->misses : 0, 1);
    scalar(o, "sollol_affinity_evictions_total", "counter",
           "Affinity entries pushed out by capacity.", on ? (double)a->evictions : 0, 1);
    scalar(o, "sollol_affinity_entries", "gauge", "Affinity entries stored now.",
           on ? (double)a->entries : 0, 1);
    scalar(o, "sollol_affinity_capacity", "gauge", "Affinity table capacity (0 = disabled).",
           on ? (double)a->capacity : 0, 1);

    scalar(o, "process_start_time_seconds", "gauge",
           "Start time of the process since the Unix epoch, in seconds.", m->start_time_unix, 0);
}

static void render_process(struct out *o)
{
    long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        unsigned long size = 0, resident = 0;
        if (fscanf(f, "%lu %lu", &size, &resident) == 2 && page > 0) {
            scalar(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.",
                   (double)size * (double)page, 1);
            scalar(o, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
                   (double)resident * (double)page, 1);
        }
        fclose(f);
    }
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        unsigned long n = 0;
        struct dirent *e;
        while ((e = readdir(dir)))
            if (e->d_name[0] != '.')
                n++;
        closedir(dir);
        if (n)
            n--; /* the directory stream's own descriptor */
        scalar(o, "process_open_fds", "gauge", "Number of open file descriptors.", (double)n, 1);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        scalar(o, "process_max_fds", "gauge", "Maximum number of open file descriptors.",
               (double)rl.rlim_cur, 1);
}

/* RPC backends and the coordinator, from the coordinator's status object.
 * Backend labels are the configured addresses (bounded by the config). */
static void render_rpc(struct out *o, const cJSON *rpc)
{
    if (!cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(rpc, "enabled")))
        return;
    const cJSON *backends = cJSON_GetObjectItemCaseSensitive(rpc, "backends");
    static const struct {
        const char *name, *help, *key;
    } fams[] = {
        {"sollol_rpc_backend_up", "1 when the RPC backend answered its last check, else 0.",
         "reachable"},
        {"sollol_rpc_backend_in_use", "1 when the running sharded model uses the backend.",
         "in_use"},
        {"sollol_rpc_backend_excluded", "1 when the backend is left out (incompatible, too small).",
         "excluded"},
        {"sollol_rpc_backend_free_bytes", "Free device memory the backend reported.", "free_bytes"},
        {"sollol_rpc_backend_total_bytes", "Device memory the backend reported.", "total_bytes"},
        {"sollol_rpc_backend_down_seconds",
         "Seconds the backend has been down (0 while up; a held backend is judged from "
         "llama-server, never probed).",
         "down_for_s"},
    };
    for (size_t k = 0; k < sizeof fams / sizeof fams[0]; k++) {
        family(o, fams[k].name, "gauge", fams[k].help);
        const cJSON *b;
        cJSON_ArrayForEach(b, backends)
        {
            const cJSON *addr = cJSON_GetObjectItemCaseSensitive(b, "address");
            if (!cJSON_IsString(addr))
                continue;
            const cJSON *val = cJSON_GetObjectItemCaseSensitive(b, fams[k].key);
            put(o, fams[k].name);
            label(o, 1, "backend", addr->valuestring);
            put(o, "}");
            value_f(o, cJSON_IsNumber(val) ? val->valuedouble : cJSON_IsTrue(val) ? 1 : 0);
        }
    }
    family(o, "sollol_rpc_backend_info", "gauge",
           "Always 1; the backend's RPC protocol version is a label (\"unknown\" before a check).");
    const cJSON *b;
    cJSON_ArrayForEach(b, backends)
    {
        const cJSON *addr = cJSON_GetObjectItemCaseSensitive(b, "address");
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(b, "version");
        if (!cJSON_IsString(addr))
            continue;
        put(o, "sollol_rpc_backend_info");
        label(o, 1, "backend", addr->valuestring);
        label(o, 0, "version", cJSON_IsString(ver) ? ver->valuestring : "unknown");
        put(o, "} 1\n");
    }

    const cJSON *co = cJSON_GetObjectItemCaseSensitive(rpc, "coordinator");
    if (!cJSON_IsObject(co))
        return;
    static const char *const states[] = {"stopped", "starting", "ready", "restarting", "failed"};
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(co, "state");
    family(o, "sollol_coordinator_state", "gauge",
           "The coordinator (llama-server over RPC backends), one-hot over its states.");
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) {
        put(o, "sollol_coordinator_state");
        label(o, 1, "state", states[i]);
        put(o, "}");
        value_u64(o, cJSON_IsString(st) && strcmp(st->valuestring, states[i]) == 0);
    }
    const cJSON *restarts = cJSON_GetObjectItemCaseSensitive(co, "restarts");
    scalar(o, "sollol_coordinator_restarts_total", "counter",
           "Times the coordinator was restarted.",
           cJSON_IsNumber(restarts) && restarts->valuedouble > 0 ? restarts->valuedouble : 0, 1);
    const cJSON *up = cJSON_GetObjectItemCaseSensitive(co, "uptime_s");
    scalar(o, "sollol_coordinator_uptime_seconds", "gauge",
           "Seconds since the running coordinator started (0 when not running).",
           cJSON_IsNumber(up) && up->valuedouble > 0 ? up->valuedouble : 0, 0);
}

int sol_metrics_render(const struct sol_metrics *m, const struct sol_metrics_view *v,
                       struct sol_buf *out)
{
    if (!m->series)
        return -1;
    struct out o = {out, 0};
    render_requests(&o, m, v);
    render_tokens(&o, m, v);
    render_nodes(&o, v);
    render_daemon(&o, m, v);
    if (v->rpc)
        render_rpc(&o, v->rpc);
    if (v->process)
        render_process(&o);
    return o.rc ? -1 : 0;
}
