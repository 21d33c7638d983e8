/*
 * control.c - fault injection, statistics, and the /_sim/ control routes.
 *
 * Faults: one active fault at a time, set with --fault or POST /_sim/fault,
 * optionally limited to a number of matching requests ("count"), to the
 * inference routes or all routes ("scope"), and to one model. "refuse" acts
 * on connections (MHD's accept policy), every other mode on requests.
 *
 * Statistics: counters since the last reset and a ring of the last
 * STATS_RING requests with what the client sent and how each one ended.
 * Control requests are never recorded, never faulted, never host-checked.
 */
#include "sim.h"

#include <ctype.h>
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

static const char *const FAULT_NAMES[] = {"none", "refuse", "500",   "503", "429",
                                          "hang", "stall",  "close", "404", "slow"};

/* ---- faults ---- */

int fault_parse_mode(const char *s, struct sim_fault *f, char *err, size_t errlen)
{
    char name[32];
    const char *colon = strchr(s, ':');
    size_t n = colon ? (size_t)(colon - s) : strlen(s);
    if (n >= sizeof name) {
        snprintf(err, errlen, "unknown fault mode '%s'", s);
        return -1;
    }
    memcpy(name, s, n);
    name[n] = 0;
    int mode = -1;
    for (int i = 0; i < (int)(sizeof FAULT_NAMES / sizeof FAULT_NAMES[0]); i++)
        if (strcmp(name, FAULT_NAMES[i]) == 0)
            mode = i;
    if (mode < 0) {
        snprintf(err, errlen,
                 "unknown fault mode '%s' (none, refuse, 500, 503, 429, hang, stall:N, "
                 "close:N, 404, slow:MS)",
                 name);
        return -1;
    }
    f->mode = (enum fault_mode)mode;
    f->arg = 0;
    if (colon) {
        char *end;
        long long v = strtoll(colon + 1, &end, 10);
        if (end == colon + 1 || *end || v < 0) {
            snprintf(err, errlen, "bad fault argument '%s'", colon + 1);
            return -1;
        }
        f->arg = v;
    }
    return 0;
}

void fault_clear(void)
{
    memset(&g_sim.fault, 0, sizeof g_sim.fault);
    g_sim.fault.count = -1;
}

int fault_refuse_connection(void)
{
    struct sim_fault *f = &g_sim.fault;
    if (f->mode != F_REFUSE)
        return 0;
    if (f->until_ns && now_ns() >= f->until_ns) {
        fault_clear();
        return 0;
    }
    g_st.faults_injected++;
    if (f->count > 0 && --f->count == 0)
        fault_clear();
    return 1;
}

enum fault_mode fault_take(struct sim_req *r, int64_t *arg)
{
    struct sim_fault *f = &g_sim.fault;
    if (f->mode == F_NONE || f->mode == F_REFUSE)
        return F_NONE;
    if (!f->scope_all && !route_is_inference(r->route))
        return F_NONE;
    if (f->model_key[0]) {
        struct mname n;
        char key[SIM_NAME_MAX * 4 + 8];
        if (!r->model_name[0] || !mname_parse(r->model_name, &n))
            return F_NONE;
        mname_key(&n, key, sizeof key);
        if (strcmp(key, f->model_key) != 0)
            return F_NONE;
    }
    enum fault_mode mode = f->mode;
    *arg = f->arg;
    if (f->count > 0 && --f->count == 0)
        fault_clear();
    g_st.faults_injected++;
    return mode;
}

static void fault_json(struct sbuf *b)
{
    const struct sim_fault *f = &g_sim.fault;
    sb_puts(b, "{\"mode\":");
    sb_json_str(b, FAULT_NAMES[f->mode]);
    sb_puts(b, ",\"arg\":");
    sb_i64(b, f->arg);
    sb_puts(b, ",\"count\":");
    if (f->count < 0)
        sb_puts(b, "null");
    else
        sb_i64(b, f->count);
    sb_puts(b, ",\"scope\":");
    sb_json_str(b, f->scope_all ? "all" : "inference");
    sb_puts(b, ",\"model\":");
    if (f->model_key[0])
        sb_json_str(b, f->model_key);
    else
        sb_puts(b, "null");
    sb_putc(b, '}');
}

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

void stats_note_active(struct sim_model *m)
{
    (void)m; /* models keep their own high-water mark */
}

void stats_fault_injected(void)
{
    g_st.faults_injected++;
}

void stats_connection(void)
{
    g_st.connections_total++;
}

static void stats_reset(void)
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

static const char *state_name(const struct sim_model *m)
{
    return m->state == M_LOADED ? "loaded" : m->state == M_LOADING ? "loading" : "unloaded";
}

static void stats_json(struct sbuf *b, uint64_t since)
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
        sb_json_str(b, state_name(m));
        sb_printf(b, ",\"active\":%d,\"queued\":%d,\"slots\":%d}", m->active, m->queue.n,
                  m->nslots);
    }
    sb_puts(b, "],\"fault\":");
    fault_json(b);
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

/* ---- /_sim/ routes ---- */

static void control_ok(struct sim_req *r)
{
    r->h.status = 200;
    r->h.ctype = "application/json";
    req_ready(r);
}

static void control_err(struct sim_req *r, int status, const char *msg)
{
    r->h.out.len = 0;
    sb_puts(&r->h.out, "{\"error\":");
    sb_json_str(&r->h.out, msg);
    sb_putc(&r->h.out, '}');
    r->h.status = status;
    r->h.ctype = "application/json";
    req_ready(r);
}

static uint64_t query_u64(struct sim_req *r, const char *key)
{
    const char *v = MHD_lookup_connection_value(r->h.conn, MHD_GET_ARGUMENT_KIND, key);
    return v ? strtoull(v, NULL, 10) : 0;
}

static void models_json(struct sbuf *b)
{
    sb_puts(b, "{\"models\":[");
    int first = 1;
    uint64_t now = now_ns();
    for (struct sim_model *m = model_first(); m; m = m->next) {
        if (!first)
            sb_putc(b, ',');
        first = 0;
        sb_puts(b, "{\"name\":");
        sb_json_str(b, m->display);
        sb_printf(b, ",\"installed\":%s,\"state\":", m->installed ? "true" : "false");
        sb_json_str(b, state_name(m));
        sb_printf(b,
                  ",\"active\":%d,\"queued\":%d,\"slots\":%d,\"max_active\":%d,\"expires_in_ms\":",
                  m->active, m->queue.n, m->nslots, m->max_active);
        if (m->state == M_LOADED && m->expires_ns > now)
            sb_printf(b, "%.3f", (double)(m->expires_ns - now) / 1e6);
        else
            sb_puts(b, "null");
        sb_putc(b, '}');
    }
    sb_puts(b, "]}");
}

/* The body of a control POST as a JSON object; else answers 400 and
 * returns NULL. */
static cJSON *control_object(struct sim_req *r)
{
    cJSON *j = cJSON_ParseWithLength(r->h.body.p ? r->h.body.p : "", r->h.body.len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        control_err(r, 400, "expected a JSON object");
        return NULL;
    }
    return j;
}

static void handle_fault(struct sim_req *r)
{
    if (r->h.method == SIMHTTP_GET) {
        r->h.out.len = 0;
        fault_json(&r->h.out);
        control_ok(r);
        return;
    }
    cJSON *j = control_object(r);
    if (!j)
        return;
    struct sim_fault f;
    memset(&f, 0, sizeof f);
    f.count = -1;
    char err[256];
    const cJSON *mode = cJSON_GetObjectItemCaseSensitive(j, "mode");
    const char *ms = cJSON_IsString(mode) ? mode->valuestring : NULL;
    char num[32];
    if (cJSON_IsNumber(mode)) {
        snprintf(num, sizeof num, "%d", mode->valueint);
        ms = num;
    }
    if (!ms || fault_parse_mode(ms, &f, err, sizeof err) < 0) {
        cJSON_Delete(j);
        control_err(r, 400, ms ? err : "mode is required");
        return;
    }
    const cJSON *arg = cJSON_GetObjectItemCaseSensitive(j, "arg");
    if (cJSON_IsNumber(arg))
        f.arg = (int64_t)arg->valuedouble;
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(j, "count");
    if (cJSON_IsNumber(count) && count->valuedouble >= 1)
        f.count = (int64_t)count->valuedouble;
    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(j, "scope");
    if (cJSON_IsString(scope)) {
        if (strcmp(scope->valuestring, "all") == 0)
            f.scope_all = 1;
        else if (strcmp(scope->valuestring, "inference") != 0) {
            cJSON_Delete(j);
            control_err(r, 400, "scope must be \"inference\" or \"all\"");
            return;
        }
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(j, "model");
    if (cJSON_IsString(model) && model->valuestring[0]) {
        struct mname n;
        if (!mname_parse(model->valuestring, &n)) {
            cJSON_Delete(j);
            control_err(r, 400, "invalid model name");
            return;
        }
        mname_key(&n, f.model_key, sizeof f.model_key);
    }
    cJSON_Delete(j);
    if (f.mode == F_REFUSE) {
        /* Decided at accept time, before any request is read. */
        f.scope_all = 1;
        f.model_key[0] = 0;
        if (f.arg > 0)
            f.until_ns = now_ns() + (uint64_t)f.arg * 1000000ULL;
    }
    if (f.mode == F_NONE)
        fault_clear();
    else
        g_sim.fault = f;
    SOL_INFO("fault set: %s arg=%lld count=%lld scope=%s", FAULT_NAMES[f.mode], (long long)f.arg,
             (long long)f.count, f.scope_all ? "all" : "inference");
    r->h.out.len = 0;
    fault_json(&r->h.out);
    control_ok(r);
}

static void handle_models(struct sim_req *r)
{
    if (r->h.method == SIMHTTP_GET) {
        r->h.out.len = 0;
        models_json(&r->h.out);
        control_ok(r);
        return;
    }
    cJSON *j = control_object(r);
    if (!j)
        return;
    static const char *const actions[] = {"load", "unload", "install", "remove"};
    const cJSON *v = NULL;
    int act = -1;
    for (int i = 0; i < 4 && act < 0; i++) {
        v = cJSON_GetObjectItemCaseSensitive(j, actions[i]);
        if (v)
            act = i;
    }
    if (act < 0 || !cJSON_IsString(v)) {
        cJSON_Delete(j);
        control_err(r, 400, "expected {\"load\"|\"unload\"|\"install\"|\"remove\": string}");
        return;
    }
    char err[256] = "";
    int status = 200;
    if (act == 2) {
        if (!model_install_spec(v->valuestring, 0, err, sizeof err))
            status = 400;
    } else {
        struct sim_model *m = model_find(v->valuestring);
        if (!m) {
            snprintf(err, sizeof err, "model '%s' not found", v->valuestring);
            status = 404;
        } else if (act == 0) {
            model_load_now(m);
        } else if (act == 1) {
            model_request_unload(m);
        } else {
            model_remove(m);
        }
    }
    cJSON_Delete(j);
    if (status != 200) {
        control_err(r, status, err);
        return;
    }
    r->h.out.len = 0;
    models_json(&r->h.out);
    control_ok(r);
}

void control_handle(struct sim_req *r)
{
    r->h.out.len = 0;
    switch (r->route) {
    case R_SIM_STATS:
        stats_json(&r->h.out, query_u64(r, "since"));
        control_ok(r);
        break;
    case R_SIM_RESET:
        stats_reset();
        sb_puts(&r->h.out, "{\"status\":\"ok\"}");
        control_ok(r);
        break;
    case R_SIM_FAULT:
        handle_fault(r);
        break;
    case R_SIM_MODELS:
        handle_models(r);
        break;
    default:
        control_err(r, 404, "unknown control route");
        break;
    }
}
