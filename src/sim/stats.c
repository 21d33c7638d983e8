/*
 * stats.c - what the simulator saw: counters since the last reset and a ring
 * of the last STATS_RING requests with what the client sent and how each one
 * ended. Called by the HTTP hooks, the scheduler and the handlers; control.c
 * renders it. Control requests are never recorded.
 */
#include "sim.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sollol/log.h"

#define STATS_RING 1000

struct rec {
    uint64_t id;
    char method[12];
    char path[160];
    char model[160];
    char host[160];
    char ua[160];
    char ctype[96];
    char accept[96];
    char xrid[128];
    int stream; /* -1 null */
    int auth;
    uint64_t body_len;
    uint64_t body_fnv;
    double received_ms, first_byte_ms, ended_ms; /* < 0: not yet */
    char outcome[32];
    int prompt_eval_count, cached, slot; /* < 0: null */
};

static struct rec *g_ring;
static uint64_t g_ring_next; /* records ever written */

static struct {
    uint64_t requests_total;
    uint64_t connections_total; /* accepted, control connections included */
    int64_t in_flight;
    int64_t max_in_flight;
    uint64_t completed;
    uint64_t cancelled;
    uint64_t errors;
    uint64_t faults_injected;
} g_st;

/* ---- statistics ---- */

void stats_init(void)
{
    g_ring = calloc(STATS_RING, sizeof *g_ring);
    if (!g_ring)
        abort();
}

void stats_free(void)
{
    free(g_ring);
    g_ring = NULL;
}

static struct rec *rec_of(struct sim_req *r)
{
    if (r->rec < 0 || !g_ring)
        return NULL;
    struct rec *x = &g_ring[r->rec];
    return x->id == r->id ? x : NULL; /* overwritten by newer requests */
}

static void copy_hdr(struct sim_req *r, const char *name, char *dst, size_t n)
{
    const char *v = MHD_lookup_connection_value(r->h.conn, MHD_HEADER_KIND, name);
    if (v)
        snprintf(dst, n, "%s", v);
    else
        dst[0] = 0;
}

void stats_begin(struct sim_req *r)
{
    g_st.requests_total++;
    g_st.in_flight++;
    if (g_st.in_flight > g_st.max_in_flight)
        g_st.max_in_flight = g_st.in_flight;
    int idx = (int)(g_ring_next++ % STATS_RING);
    struct rec *x = &g_ring[idx];
    memset(x, 0, sizeof *x);
    x->id = r->id;
    r->rec = idx;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->h.conn, MHD_CONNECTION_INFO_PROTOCOL);
    (void)ci;
    str_copy(x->method, sizeof x->method, simhttp_method_name(r->h.method));
    str_copy(x->path, sizeof x->path, r->h.path);
    copy_hdr(r, "Host", x->host, sizeof x->host);
    copy_hdr(r, "User-Agent", x->ua, sizeof x->ua);
    copy_hdr(r, "Content-Type", x->ctype, sizeof x->ctype);
    copy_hdr(r, "Accept", x->accept, sizeof x->accept);
    copy_hdr(r, "X-Request-Id", x->xrid, sizeof x->xrid);
    x->auth = MHD_lookup_connection_value(r->h.conn, MHD_HEADER_KIND, "Authorization") != NULL;
    x->stream = -1;
    x->received_ms = sim_ms(r->t_recv);
    x->first_byte_ms = x->ended_ms = -1;
    x->prompt_eval_count = x->cached = x->slot = -1;
}

void stats_request_info(struct sim_req *r)
{
    struct rec *x = rec_of(r);
    if (!x)
        return;
    str_copy(x->model, sizeof x->model, r->model_name);
    x->stream = r->stream_given;
    x->body_len = r->body_total;
    x->body_fnv = r->body_fnv;
}

void stats_infer(struct sim_req *r)
{
    struct rec *x = rec_of(r);
    if (!x)
        return;
    x->slot = r->slot;
    x->prompt_eval_count = r->prompt_tokens;
    x->cached = r->cached_tokens;
}

void stats_first_byte(struct sim_req *r)
{
    struct rec *x = rec_of(r);
    if (x && x->first_byte_ms < 0)
        x->first_byte_ms = sim_ms(now_ns());
}

void stats_outcome(struct sim_req *r, const char *outcome)
{
    if (r->finished || r->is_control)
        return;
    r->finished = 1;
    if (strcmp(outcome, "completed") == 0)
        r->outcome_kind = 0;
    else if (strcmp(outcome, "cancelled") == 0)
        r->outcome_kind = 1;
    else if (strncmp(outcome, "fault:", 6) == 0)
        r->outcome_kind = 2;
    else
        r->outcome_kind = 3;
    struct rec *x = rec_of(r);
    if (x)
        str_copy(x->outcome, sizeof x->outcome, outcome);
}

/* in_flight counts requests the node is working on, as Ollama's slots do:
 * one leaves it when its last byte is handed to the connection, not when
 * the connection later reports completion (a client that already has the
 * whole answer may send its next request before that). */
void stats_work_done(struct sim_req *r)
{
    if (r->work_done)
        return;
    r->work_done = 1;
    g_st.in_flight--;
}

void stats_end(struct sim_req *r, int aborted)
{
    (void)aborted;
    stats_work_done(r);
    switch (r->outcome_kind) {
    case 0:
        g_st.completed++;
        break;
    case 1:
        g_st.cancelled++;
        break;
    case 3:
        g_st.errors++;
        break;
    default:
        break;
    }
    struct rec *x = rec_of(r);
    if (x)
        x->ended_ms = sim_ms(now_ns());
}

void stats_fault_injected(void)
{
    g_st.faults_injected++;
}

void stats_connection(void)
{
    g_st.connections_total++;
}

void stats_reset(void)
{
    int64_t inflight = g_st.in_flight;
    memset(&g_st, 0, sizeof g_st);
    g_st.in_flight = inflight;
    g_st.max_in_flight = inflight;
    memset(g_ring, 0, STATS_RING * sizeof *g_ring);
    g_ring_next = 0;
    models_reset_stats();
}

static void ms_or_null(struct sbuf *b, double v)
{
    if (v < 0)
        sb_puts(b, "null");
    else
        sb_printf(b, "%.3f", v);
}

static void int_or_null(struct sbuf *b, int v)
{
    if (v < 0)
        sb_puts(b, "null");
    else
        sb_i64(b, v);
}

void stats_json(struct sbuf *b, uint64_t since, const struct sbuf *fault)
{
    sb_puts(b, "{\"name\":");
    sb_json_str(b, g_sim.cfg.name);
    sb_puts(b, ",\"version\":");
    sb_json_str(b, g_sim.cfg.version);
    sb_printf(b, ",\"uptime_ms\":%.3f", sim_ms(now_ns()));
    sb_printf(b,
              ",\"requests_total\":%llu,\"connections_total\":%llu,\"in_flight\":%lld,"
              "\"max_in_flight\":%lld,"
              "\"completed\":%llu,\"cancelled\":%llu,\"errors\":%llu,\"faults_injected\":%llu,"
              "\"queued\":%d",
              (unsigned long long)g_st.requests_total, (unsigned long long)g_st.connections_total,
              (long long)g_st.in_flight, (long long)g_st.max_in_flight,
              (unsigned long long)g_st.completed, (unsigned long long)g_st.cancelled,
              (unsigned long long)g_st.errors, (unsigned long long)g_st.faults_injected,
              models_waiting_total());
    sb_puts(b, ",\"max_active_per_model\":{");
    int first = 1;
    for (struct sim_model *m = model_first(); m; m = m->next) {
        if (m->max_active == 0 && !m->installed)
            continue;
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_json_str(b, m->display[0] ? m->display : m->key);
        sb_putc(b, ':');
        sb_i64(b, m->max_active);
    }
    sb_puts(b, "},\"loaded\":[");
    first = 1;
    for (struct sim_model *m = model_first(); m; m = m->next) {
        if (m->state == M_UNLOADED)
            continue;
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_puts(b, "{\"name\":");
        sb_json_str(b, m->display);
        sb_puts(b, ",\"state\":");
        sb_json_str(b, model_state_name(m));
        sb_printf(b, ",\"active\":%d,\"queued\":%d,\"slots\":%d}", m->active, m->queue.n,
                  m->nslots);
    }
    sb_puts(b, "],\"fault\":");
    sb_put(b, fault->p, fault->len);
    sb_puts(b, ",\"requests\":[");
    uint64_t n = g_ring_next < STATS_RING ? g_ring_next : STATS_RING;
    first = 1;
    for (uint64_t i = g_ring_next - n; i < g_ring_next; i++) {
        const struct rec *x = &g_ring[i % STATS_RING];
        if (x->id <= since)
            continue;
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_printf(b, "{\"id\":%llu,\"method\":", (unsigned long long)x->id);
        sb_json_str(b, x->method);
        sb_puts(b, ",\"path\":");
        sb_json_str(b, x->path);
        sb_puts(b, ",\"model\":");
        if (x->model[0])
            sb_json_str(b, x->model);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"stream\":");
        sb_puts(b, x->stream < 0 ? "null" : x->stream ? "true" : "false");
        sb_puts(b, ",\"host\":");
        sb_json_str(b, x->host);
        sb_puts(b, ",\"user_agent\":");
        sb_json_str(b, x->ua);
        sb_puts(b, ",\"content_type\":");
        sb_json_str(b, x->ctype);
        sb_puts(b, ",\"accept\":");
        sb_json_str(b, x->accept);
        sb_puts(b, ",\"x_request_id\":");
        sb_json_str(b, x->xrid);
        sb_printf(b, ",\"authorization_present\":%s,\"body_len\":%llu,\"body_fnv1a64\":\"%016llx\"",
                  x->auth ? "true" : "false", (unsigned long long)x->body_len,
                  (unsigned long long)x->body_fnv);
        sb_puts(b, ",\"received_ms\":");
        ms_or_null(b, x->received_ms);
        sb_puts(b, ",\"first_byte_ms\":");
        ms_or_null(b, x->first_byte_ms);
        sb_puts(b, ",\"ended_ms\":");
        ms_or_null(b, x->ended_ms);
        sb_puts(b, ",\"outcome\":");
        if (x->outcome[0])
            sb_json_str(b, x->outcome);
        else
            sb_puts(b, "null");
        sb_puts(b, ",\"prompt_eval_count\":");
        int_or_null(b, x->prompt_eval_count);
        sb_puts(b, ",\"cached_prompt_tokens\":");
        int_or_null(b, x->cached);
        sb_puts(b, ",\"slot\":");
        int_or_null(b, x->slot);
        sb_putc(b, '}');
    }
    sb_puts(b, "]}");
}
