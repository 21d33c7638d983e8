/*
 * coordinator_serve.c - the sharded path as the request lifecycle and the
 * status routes see it (see coordinator.h): which requests it takes, the
 * llama-server route and translated body of an attempt, the translated
 * response, answers it gives itself (load/unload, /api/show), and
 * GET /api/sollol/rpc. The life of llama-server is coordinator.c's.
 */
#include "proxy/coordinator_serve.h"

#include "nodes/coordinator_priv.h"
#include "proxy/request_priv.h"

#include "base/breaker.h"
#include "base/gguf.h"
#include "daemon-t.h"
#include "sollol/log.h"
#include "base/model_name.h"
#include "base/translate.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Messages combine bounded parts into fixed buffers: cutting is intended. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

/* ---- request hooks ------------------------------------------------------- */

static int is_listed(const struct sol_coord *c, const char *canonical)
{
    for (unsigned i = 0; i < c->n_sharded; i++)
        if (strcmp(c->sharded[i], canonical) == 0)
            return 1;
    return 0;
}

/* Auto policy: no Ollama node has it (every node's list is known). */
static int no_node_has(const struct sol_coord *c, uint64_t key)
{
    const struct sol_node_table *t = &c->d->table;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        if (n->external)
            continue;
        const struct sol_node_model *m = sol_node_find_model(n, key);
        if ((m && m->installed) || n->tags_at_ms == 0)
            return 0;
    }
    return 1;
}

static uint64_t wall_ns(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mono_ns(void *ud)
{
    (void)ud;
    return uv_hrtime();
}

/* Stopped, and nothing of a launch under way (the start-up survey and the
 * --help runs launch nothing). */
static int stopped_idle(const struct sol_coord *c)
{
    return c->state == CS_STOPPED &&
           ((c->step == ST_IDLE && !c->survey) || c->step == ST_LEARNING || c->survey);
}

static void ensure_started(struct sol_coord *c)
{
    c->last_activity = coord_now_ms(c);
    if (c->state == CS_STOPPED && c->step == ST_IDLE && !c->survey)
        coord_begin(c, CS_STARTING);
    else if (c->state == CS_FAILED) {
        uint64_t since = coord_now_ms(c) - c->failed_at;
        if ((c->failed_preflight && since >= c->cfg->llama_backoff_min_ms) ||
            (!c->failed_preflight && since >= c->cfg->llama_crash_window_ms)) {
            c->n_crashes = 0;
            coord_begin(c, CS_STARTING);
        }
    }
}

/* keep_alive 0 (a number, or a duration string such as "0" or "0s"). */
static int keep_alive_zero(const struct sol_request *r)
{
    const struct sol_json_span *ka = &r->info.keep_alive;
    if (!ka->p)
        return 0;
    if (ka->type == SOL_JSON_NUMBER) {
        double v;
        return sol_json_number_double(ka, &v) == 0 && v == 0;
    }
    if (ka->type != SOL_JSON_STRING || ka->len < 3)
        return 0;
    const char *v = ka->p + 1; /* inside the quotes */
    size_t n = ka->len - 2;
    static const char *const zeros[] = {"0", "0s", "0ms", "0m", "0h"};
    for (size_t i = 0; i < sizeof zeros / sizeof zeros[0]; i++)
        if (n == strlen(zeros[i]) && memcmp(v, zeros[i], n) == 0)
            return 1;
    return 0;
}

/* Ollama's answer to a load-only request (no messages / empty prompt):
 * done_reason "load", or "unload" with keep_alive 0. */
static void answer_load(struct sol_request *r, struct sol_coord_req *q, const char *reason)
{
    char ts[48];
    sol_translate_rfc3339(wall_ns(NULL), ts, sizeof ts);
    sol_buf_append_str(&r->stream, "{\"model\":");
    sol_buf_append_json_string(&r->stream, r->info.model, strlen(r->info.model));
    sol_buf_appendf(&r->stream, ",\"created_at\":\"%s\",", ts);
    if (q->kind == SOL_TR_CHAT)
        sol_buf_append_str(&r->stream, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
    else
        sol_buf_append_str(&r->stream, "\"response\":\"\",");
    sol_buf_appendf(&r->stream, "\"done_reason\":\"%s\",\"done\":true}", reason);
    if (q->stream)
        sol_buf_append_str(&r->stream, "\n");
    r->status = 200;
    snprintf(r->content_type, sizeof r->content_type, "%s",
             q->stream ? "application/x-ndjson" : "application/json; charset=utf-8");
    snprintf(r->node_name, sizeof r->node_name, "%s", SOL_COORD_NODE_NAME);
    r->upstream_done = 1;
    r->state = RS_COMMITTED;
}

/* /api/show for a sharded model: what the GGUF header says. */
static int answer_show(struct sol_request *r, struct sol_coord *c)
{
    if (strcmp(c->resolved_for, r->model) != 0)
        return sol_req_fail(r, 503,
                            "sharded model '%s' has not been loaded yet: its details are known "
                            "after its first request",
                            r->info.model);
    const struct sol_gguf_info *g = &c->info;
    sol_buf_append_str(&r->stream, "{\"modelfile\":\"\",\"parameters\":\"\",\"template\":\"\","
                                   "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\","
                                   "\"family\":");
    sol_buf_append_json_string(&r->stream, g->architecture, strlen(g->architecture));
    sol_buf_append_str(&r->stream, ",\"families\":[");
    sol_buf_append_json_string(&r->stream, g->architecture, strlen(g->architecture));
    sol_buf_appendf(&r->stream,
                    "],\"parameter_size\":\"\",\"quantization_level\":\"%s\"},"
                    "\"model_info\":{\"general.architecture\":",
                    sol_gguf_file_type_name(g->file_type));
    sol_buf_append_json_string(&r->stream, g->architecture, strlen(g->architecture));
    sol_buf_append_str(&r->stream, ",\"general.name\":");
    sol_buf_append_json_string(&r->stream, g->name, strlen(g->name));
    sol_buf_appendf(&r->stream,
                    ",\"general.file_type\":%lld,\"%s.block_count\":%llu,"
                    "\"%s.context_length\":%llu,\"%s.embedding_length\":%llu}}",
                    (long long)g->file_type, g->architecture, (unsigned long long)g->block_count,
                    g->architecture, (unsigned long long)g->context_length, g->architecture,
                    (unsigned long long)g->embedding_length);
    r->status = 200;
    snprintf(r->content_type, sizeof r->content_type, "application/json; charset=utf-8");
    snprintf(r->node_name, sizeof r->node_name, "%s", SOL_COORD_NODE_NAME);
    r->upstream_done = 1;
    r->state = RS_COMMITTED;
    return 1;
}

int sol_coord_take(struct sol_request *r)
{
    struct sol_coord *c = r->d->coord;
    if (!c || !r->model[0] || r->route->kind != SOL_ROUTE_PROXY || (r->route->flags & SOL_RF_BATCH))
        return 0;
    int listed = is_listed(c, r->model);
    if (!listed) {
        /* Auto policy: no node has it, and its GGUF can be found (the
         * store's last scan, or an explicit path). */
        char path[SOL_STORE_PATH_MAX];
        if (!c->cfg->sharding_auto || !no_node_has(c, r->score.model_key) ||
            !(coord_store_has(c, r->score.model_key) ||
              coord_explicit_path(c, r->model, path, sizeof path)))
            return 0;
    }
    enum sol_tr_kind kind = SOL_TR_CHAT;
    int passthrough = 0;
    const char *path = r->path;
    if (strcmp(path, "/api/chat") == 0) {
        kind = SOL_TR_CHAT;
        path = "/v1/chat/completions";
    } else if (strcmp(path, "/api/generate") == 0) {
        kind = SOL_TR_GENERATE;
        path = "/completion";
    } else if (strcmp(path, "/api/embed") == 0 && c->cfg->llama_embeddings) {
        kind = SOL_TR_EMBED;
        path = "/v1/embeddings";
    } else if (strncmp(path, "/v1/", 4) == 0) {
        passthrough = 1;
    } else if (strcmp(path, "/api/show") == 0) {
        return answer_show(r, c);
    } else {
        return sol_req_fail(
            r, 501, "%s is not served for sharded model '%s'%s", r->path, r->info.model,
            strcmp(r->path, "/api/embed") == 0 ? " (llama_server.embeddings is off)" : "");
    }
    if (strcmp(c->model, r->model) != 0) {
        if (stopped_idle(c) || (c->state == CS_FAILED && c->failed_preflight)) {
            /* Nothing runs: the backends can take this model now. */
            snprintf(c->model, sizeof c->model, "%s", r->model);
            if (c->state == CS_FAILED)
                coord_set_state(c, CS_STOPPED, ST_IDLE);
        } else if (c->next_model[0] && strcmp(c->next_model, r->model) != 0) {
            return sol_req_fail(r, 503,
                                "the rpc backends are switching to sharded model '%s'; retry later",
                                c->next_model);
        } else if (c->node->in_flight == 0 && !coord_queued(c) && c->state == CS_READY &&
                   c->step == ST_IDLE) {
            /* Idle: switch. Nothing more may start on the old model meanwhile. */
            snprintf(c->next_model, sizeof c->next_model, "%s", r->model);
            c->node->held = 1;
            coord_stop_llama(c, "switching model");
        } else if (c->next_model[0] && strcmp(c->next_model, r->model) == 0) {
            /* The switch to this model is under way: wait for it. */
        } else {
            return sol_req_fail(
                r, 503, "the rpc backends are serving sharded model '%s'; retry later", c->model);
        }
    }
    if (c->state == CS_FAILED) {
        ensure_started(c); /* retries once the cool-down is over */
        if (c->state == CS_FAILED)
            return sol_req_fail(r, c->fail_status ? c->fail_status : 503, "%s", c->reason);
    }
    struct sol_coord_req *q = calloc(1, sizeof *q);
    if (!q)
        return sol_req_fail(r, 500, "out of memory");
    r->coord = q;
    q->kind = kind;
    q->passthrough = passthrough;
    q->arrived_ms = coord_now_ms(c);
    q->stream = sol_body_streams(&r->info, !r->openai);
    q->path = passthrough ? "" : path;
    snprintf(q->model, sizeof q->model, "%s", r->model);
    /* The model is routable on the virtual node (and held until ready). */
    struct sol_node_model *m = sol_node_model_get(c->node, r->model);
    if (m)
        m->installed = 1;
    if (!passthrough) {
        char err[256];
        int rc = sol_translate_request(kind, r->body.data ? r->body.data : "", r->body.len,
                                       &q->body, err, sizeof err);
        if (rc < 0)
            return sol_req_fail(r, 400, "%s", err);
        if (rc == 1 && keep_alive_zero(r)) {
            /* Unload now, if nothing else uses it (Ollama's keep_alive 0). */
            if (c->llama && c->state == CS_READY && c->step == ST_IDLE && c->node->in_flight == 0 &&
                !coord_queued(c))
                coord_stop_llama(c, "unload requested");
            answer_load(r, q, "unload");
            return 1;
        }
        if (rc == 1) {
            ensure_started(c);
            answer_load(r, q, "load");
            return 1;
        }
    }
    ensure_started(c);
    if (c->state != CS_READY && r->d->cfg->queue_max_length == 0) {
        /* Without the daemon's queue nothing can wait for the load. */
        r->fail_status = 503;
        snprintf(r->last_error, sizeof r->last_error,
                 "sharded model '%.200s' is loading (queue.max_length is 0: retry later)",
                 r->info.model);
        return -1;
    }
    return 0;
}

void sol_coord_prepare(struct sol_request *r, CURL *e, const struct sol_node *n)
{
    struct sol_coord_req *q = r->coord;
    struct sol_coord *c = r->d->coord;
    if (!q)
        return;
    q->translating = 0;
    if (!c || n != c->node)
        return;
    const char *path = q->passthrough ? r->upstream_path : q->path;
    char url[512];
    snprintf(url, sizeof url, "%s%s", c->base_url, path);
    curl_easy_setopt(e, CURLOPT_URL, url);
    if (q->passthrough)
        return;
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body.data ? q->body.data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body.len);
    if (q->tr_init)
        sol_translate_free(&q->tr);
    sol_translate_init(&q->tr, q->kind, q->stream, r->info.model, wall_ns, mono_ns, NULL);
    q->tr_init = 1;
    /* Measured by the daemon: total from the request's arrival; load is the
     * time it waited for llama-server to become ready. */
    uint64_t waited_ms = coord_now_ms(c) - q->arrived_ms;
    q->tr.started_ns -= waited_ms * 1000000ull;
    q->tr.load_ns = c->ready_at > q->arrived_ms ? (c->ready_at - q->arrived_ms) * 1000000ull : 0;
    q->translating = 1;
    sol_buf_clear(&q->out);
}

int sol_coord_retry_later(struct sol_request *r)
{
    struct sol_coord *c = r->d->coord;
    struct sol_coord_req *q = r->coord;
    if (!c || !q || q->retried || c->state == CS_FAILED || c->stopping ||
        strcmp(r->node_name, SOL_COORD_NODE_NAME) != 0)
        return 0;
    q->retried = 1;
    /* llama-server went away (a backend it used died and it aborted), or
     * is about to: hold the node until its exit or its /health says, and
     * forget the failure (the breaker would keep the request from waiting). */
    c->suspect = 1;
    c->node->held = 1;
    sol_breaker_init(&c->node->breaker);
    SOL_WARN("request %s: llama-server failed before answering; the request waits for the "
             "sharded model's recovery",
             r->id);
    return 1;
}

int sol_coord_translating(const struct sol_request *r)
{
    return r->coord && r->coord->translating;
}

void sol_coord_on_headers(struct sol_request *r)
{
    struct sol_coord_req *q = r->coord;
    if (!q || !q->translating)
        return;
    sol_translate_status(&q->tr, r->status);
    snprintf(r->content_type, sizeof r->content_type, "%s", sol_translate_content_type(&q->tr));
    r->content_length = -1;
}

int sol_coord_on_body(struct sol_request *r, const char *p, size_t n, const char **out,
                      size_t *out_len)
{
    struct sol_coord_req *q = r->coord;
    sol_buf_clear(&q->out);
    int rc = sol_translate_feed(&q->tr, p, n, &q->out);
    *out = q->out.data ? q->out.data : "";
    *out_len = q->out.len;
    if (q->tr.failed && r->state == RS_UPSTREAM) {
        /* llama-server failed before the client saw anything: an error
         * status, as Ollama answers a failure before streaming begins. */
        r->status = 500;
        snprintf(r->content_type, sizeof r->content_type, "application/json; charset=utf-8");
    }
    if (r->d->coord)
        r->d->coord->last_activity = coord_now_ms(r->d->coord);
    return rc;
}

void sol_coord_on_done(struct sol_request *r, const char **out, size_t *out_len)
{
    struct sol_coord_req *q = r->coord;
    *out = "";
    *out_len = 0;
    if (!q || !q->translating)
        return;
    sol_buf_clear(&q->out);
    sol_translate_finish(&q->tr, &q->out);
    *out = q->out.data ? q->out.data : "";
    *out_len = q->out.len;
}

unsigned long long sol_coord_streamed_tokens(const struct sol_request *r)
{
    const struct sol_coord_req *q = r->coord;
    return q && q->tr_init ? (unsigned long long)q->tr.streamed : 0;
}

void sol_coord_req_free(struct sol_request *r)
{
    struct sol_coord_req *q = r->coord;
    if (!q)
        return;
    if (r->d->coord)
        r->d->coord->last_activity = coord_now_ms(r->d->coord);
    if (q->tr_init)
        sol_translate_free(&q->tr);
    sol_buf_free(&q->body);
    sol_buf_free(&q->out);
    free(q);
    r->coord = NULL;
}

/* ---- the request kind ----------------------------------------------------- */

static enum sol_take coord_take(struct sol_request *r)
{
    int rc = sol_coord_take(r);
    if (rc == 0)
        return r->coord ? SOL_TAKE_RIDES : SOL_TAKE_PASS;
    return rc > 0 ? SOL_TAKE_SERVED : SOL_TAKE_FAILED;
}

const struct sol_req_kind sol_coord_kind = {
    .name = "sharded",
    .take = coord_take,
    .prepare = sol_coord_prepare,
    .on_headers = sol_coord_on_headers,
    .translating = sol_coord_translating,
    .on_body = sol_coord_on_body,
    .on_done = sol_coord_on_done,
    .retry_later = sol_coord_retry_later,
    .streamed_tokens = sol_coord_streamed_tokens,
    .free = sol_coord_req_free,
    .keeps_inputs = 1,
};

/* ---- the coordinator's hooks, request side ------------------------------- */

unsigned sol_coord_requests_queued(struct sol_daemon *d)
{
    unsigned n = 0;
    for (struct sol_request *r = d->requests; r; r = r->next)
        n += r->coord && r->conn && sol_queue_is_queued(&r->qe);
    return n;
}

void sol_coord_requests_fail(struct sol_daemon *d, unsigned status, const char *msg)
{
    for (struct sol_request *r = d->requests; r; r = r->next) {
        if (!r->coord || !r->conn || !sol_queue_remove(&d->queue, &r->qe))
            continue;
        r->queue_ms += sol_now_ms(d) - r->qe.enqueued_ms;
        r->fail_status = status;
        snprintf(r->last_error, sizeof r->last_error, "%s", msg);
        r->state = RS_FAILED;
        sol_req_resume(r);
    }
}
