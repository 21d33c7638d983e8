/*
 * llama_http.c - the llama-server stand-in's HTTP side: libmicrohttpd in
 * external epoll mode on the loop (sollol/mhd_uv.h), requests that wait as
 * suspended connections watched for hang-up, streams through a content
 * reader, routing, and the routes that do not generate.
 */
#include "llama_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const ROUTE_NAMES[RT_COUNT] = {
    "none",   "health", "chat",  "completion", "v1_completions", "embeddings",
    "models", "props",  "slots", "metrics",    "sim_stats",      "not_found",
};

/* ---------------------------------------------------------------- MHD plumbing */

static void on_kick(uv_timer_t *t)
{
    (void)t;
    if (g_ls.daemon && !g_ls.stopping)
        sol_mhd_uv_run(&g_ls.glue);
}

/* MHD 0.9.75 in external epoll mode does not wake itself after a resume. */
static void kick(void)
{
    if (!uv_is_active((uv_handle_t *)&g_ls.kick) && !uv_is_closing((uv_handle_t *)&g_ls.kick))
        uv_timer_start(&g_ls.kick, on_kick, 0, 0);
}

static void resume(struct req *r)
{
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        kick();
    }
}

void req_cancel(struct req *r)
{
    if (r->cancelled)
        return;
    r->cancelled = 1;
    if (r->timer_init)
        uv_timer_stop(&r->timer);
    slot_release(r);
}

static void on_hangup(struct sol_hangup_watch *w)
{
    struct req *r = w->data;
    if (r->mhd_done || r->cancelled)
        return;
    req_cancel(r);
    resume(r); /* MHD then reports the error and closes the connection */
}

static void suspend(struct req *r)
{
    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    if (!r->watch_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && sol_hangup_watch_init(&r->watch, &g_ls.loop, ci->connect_fd, on_hangup, r) == 0) {
            r->watch_init = 1;
            r->handles_open++;
        }
    }
    if (r->watch_init)
        sol_hangup_watch_start(&r->watch);
}

void req_ready(struct req *r)
{
    if (r->phase == PH_STREAMING || r->phase == PH_SENT)
        return;
    r->phase = PH_READY;
    resume(r);
}

void req_wake(struct req *r)
{
    if (r->phase == PH_STREAMING)
        resume(r);
}

void req_json(struct req *r, int status)
{
    r->status = status;
    r->ctype = "application/json; charset=utf-8";
    req_ready(r);
}

/* llama-server's error shape: {"error":{"code","message","type"}}. */
void req_error(struct req *r, int status, const char *type, const char *msg)
{
    sol_buf_clear(&r->out);
    r->cb_resp = 0;
    PUTF(&r->out, "{\"error\":{\"code\":%d,\"message\":", status);
    put_json_str(&r->out, msg, strlen(msg));
    put(&r->out, ",\"type\":");
    put_json_str(&r->out, type, strlen(type));
    put(&r->out, "}}");
    req_json(r, status);
}

static void on_req_handle_closed(struct req *r);

static void on_timer_closed(uv_handle_t *h)
{
    on_req_handle_closed(h->data);
}

static void on_watch_closed(struct sol_hangup_watch *w)
{
    on_req_handle_closed(w->data);
}

static void req_free(struct req *r)
{
    if (r->json)
        cJSON_Delete(r->json);
    for (int i = 0; i < r->nstops; i++)
        free(r->stops[i]);
    sol_buf_free(&r->body);
    sol_buf_free(&r->out);
    sol_buf_free(&r->prompt);
    sol_buf_free(&r->text);
    free(r);
}

static void on_req_handle_closed(struct req *r)
{
    if (--r->handles_open == 0)
        req_free(r);
}

void req_timer(struct req *r, double ms, uv_timer_cb cb)
{
    if (!r->timer_init) {
        uv_timer_init(&g_ls.loop, &r->timer);
        r->timer.data = r;
        r->timer_init = 1;
        r->handles_open++;
    }
    uv_timer_start(&r->timer, cb, ms > 0 ? (uint64_t)ceil(ms) : 0, 0);
}

/* MHD 0.9.75 leaves a connection whose reader failed open until its idle
 * loop visits it; a non-default timeout makes every run visit it. */
static ssize_t reader_error(struct req *r)
{
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 86400u);
    kick();
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    (void)pos;
    if (r->cancelled)
        return reader_error(r);
    size_t avail = sol_buf_pending(&r->out);
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out.data + r->out.off, n);
        sol_buf_consume(&r->out, n);
        return (ssize_t)n;
    }
    if (r->out_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    suspend(r); /* req_wake resumes it when tokens are appended */
    return 0;
}

static enum MHD_Result respond(struct req *r)
{
    struct MHD_Response *resp;
    if (r->cb_resp) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        r->phase = PH_STREAMING;
    } else {
        resp = MHD_create_response_from_buffer(sol_buf_pending(&r->out),
                                               r->out.data ? r->out.data + r->out.off : (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
        r->phase = PH_SENT;
    }
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    MHD_add_response_header(resp, "Server", "llama.cpp");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---------------------------------------------------------------- other routes */

static void put_argv(struct sol_buf *b)
{
    put(b, "[");
    for (int i = 0; i < g_ls.argc; i++) {
        if (i)
            put(b, ",");
        put_json_str(b, g_ls.argv[i], strlen(g_ls.argv[i]));
    }
    put(b, "]");
}

static void handle_models(struct req *r)
{
    struct sol_buf *o = &r->out;
    const char *id = model_id();
    put(o, "{\"models\":[{\"name\":");
    put_json_str(o, id, strlen(id));
    put(o, ",\"model\":");
    put_json_str(o, id, strlen(id));
    put(o, ",\"modified_at\":\"\",\"size\":\"\",\"digest\":\"\",\"type\":\"model\",\"description\":"
           "\"\",\"tags\":[\"\"],\"capabilities\":[\"completion\"],\"parameters\":\"\","
           "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"\",\"families\":"
           "[\"\"],\"parameter_size\":\"\",\"quantization_level\":\"\"}}],\"object\":\"list\","
           "\"data\":[{\"id\":");
    put_json_str(o, id, strlen(id));
    PUTF(o,
         ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"llamacpp\",\"meta\":{\"n_ctx_"
         "train\":%d}}]}",
         (long long)time(NULL), g_ls.ctx);
    req_json(r, 200);
}

static void handle_props(struct req *r)
{
    struct sol_buf *o = &r->out;
    PUTF(o,
         "{\"default_generation_settings\":{\"id\":0,\"n_ctx\":%d,\"params\":{\"n_predict\":-1,"
         "\"seed\":4294967295}},\"total_slots\":%d,\"model_alias\":",
         g_ls.ctx / g_ls.np, g_ls.np);
    put_json_str(o, model_id(), strlen(model_id()));
    put(o, ",\"model_path\":");
    put_json_str(o, g_ls.model, strlen(g_ls.model));
    put(o, ",\"modalities\":{\"vision\":");
    put(o, g_ls.mmproj ? "true" : "false");
    put(o, ",\"audio\":false},\"chat_template\":\"{% for m in messages %}<|{{ m.role }}|>{{ "
           "m.content }}\\n{% endfor %}<|assistant|>\",\"build_info\":\"b0000-sollol-sim\"}");
    req_json(r, 200);
}

static void handle_slots(struct req *r)
{
    struct sol_buf *o = &r->out;
    put(o, "[");
    for (int i = 0; i < g_ls.np; i++)
        PUTF(o, "%s{\"id\":%d,\"n_ctx\":%d,\"is_processing\":%s,\"cache_tokens\":%d}", i ? "," : "",
             i, g_ls.ctx / g_ls.np, g_ls.slots[i].busy ? "true" : "false",
             tokens_of(g_ls.slots[i].cache.len) * (g_ls.slots[i].cache.len > 0));
    put(o, "]");
    req_json(r, 200);
}

static void handle_metrics(struct req *r)
{
    if (!g_ls.metrics) {
        req_error(r, 501, "not_supported_error",
                  "This server does not support metrics endpoint. Start it with `--metrics`");
        return;
    }
    struct sol_buf *o = &r->out;
    struct {
        const char *name, *type, *help;
        double v;
    } m[] = {
        {"prompt_tokens_total", "counter", "Number of prompt tokens processed.",
         (double)g_ls.prompt_tokens_total},
        {"prompt_seconds_total", "counter", "Prompt process time", g_ls.prompt_ms_total / 1e3},
        {"tokens_predicted_total", "counter", "Number of generation tokens processed.",
         (double)g_ls.predicted_total},
        {"tokens_predicted_seconds_total", "counter", "Predict process time",
         g_ls.predicted_ms_total / 1e3},
        {"prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
         g_ls.prompt_ms_total > 0 ? 1e3 * (double)g_ls.prompt_tokens_total / g_ls.prompt_ms_total
                                  : 0},
        {"predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
         g_ls.predicted_ms_total > 0 ? 1e3 * (double)g_ls.predicted_total / g_ls.predicted_ms_total
                                     : 0},
        {"requests_processing", "gauge", "Number of requests processing.", (double)g_ls.active},
        {"requests_deferred", "gauge", "Number of requests deferred.", (double)g_ls.waiting},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        PUTF(o, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s %.17g\n", m[i].name,
             m[i].help, m[i].name, m[i].type, m[i].name, m[i].v);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4";
    req_ready(r);
}

static void handle_sim_stats(struct req *r)
{
    struct sol_buf *o = &r->out;
    PUTF(o, "{\"pid\":%d,\"state\":\"%s\",\"requests\":%llu,\"by_route\":{", (int)getpid(),
         g_ls.ready ? "ready" : "loading", (unsigned long long)g_ls.requests);
    int first = 1;
    for (int i = 1; i < RT_COUNT; i++)
        if (g_ls.by_route[i]) {
            PUTF(o, "%s\"%s\":%llu", first ? "" : ",", ROUTE_NAMES[i],
                 (unsigned long long)g_ls.by_route[i]);
            first = 0;
        }
    PUTF(o,
         "},\"completed\":%llu,\"active\":%d,\"waiting\":%d,\"max_active\":%d,\"tokens_predicted\""
         ":%llu,\"argv\":",
         (unsigned long long)g_ls.completed, g_ls.active, g_ls.waiting, g_ls.max_active,
         (unsigned long long)g_ls.predicted_total);
    put_argv(o);
    put(o, ",\"model\":");
    put_json_str(o, g_ls.model, strlen(g_ls.model));
    put(o, ",\"alias\":");
    if (g_ls.alias)
        put_json_str(o, g_ls.alias, strlen(g_ls.alias));
    else
        put(o, "null");
    PUTF(o, ",\"host\":\"%s\",\"port\":%d,\"ctx_size\":%d,\"parallel\":%d,\"n_gpu_layers\":",
         g_ls.host, g_ls.port, g_ls.ctx, g_ls.np);
    put_json_str(o, g_ls.ngl ? g_ls.ngl : "auto", strlen(g_ls.ngl ? g_ls.ngl : "auto"));
    put(o, ",\"tensor_split\":[");
    for (int i = 0; i < g_ls.nts; i++) {
        if (i)
            put(o, ",");
        put_double(o, g_ls.ts[i]);
    }
    put(o, "],\"split_mode\":");
    if (g_ls.split_mode)
        put_json_str(o, g_ls.split_mode, strlen(g_ls.split_mode));
    else
        put(o, "null");
    put(o, ",\"mmproj\":");
    if (g_ls.mmproj)
        put_json_str(o, g_ls.mmproj, strlen(g_ls.mmproj));
    else
        put(o, "null");
    put(o, ",\"lora\":");
    if (g_ls.lora)
        put_json_str(o, g_ls.lora, strlen(g_ls.lora));
    else
        put(o, "null");
    PUTF(o, ",\"timeout\":%d,\"no_webui\":%s", g_ls.timeout, g_ls.no_webui ? "true" : "false");
    PUTF(o,
         ",\"embeddings\":%s,\"metrics\":%s,\"api_key\":%s,\"rpc_version\":\"%u.%u.%u\","
         "\"rpc_backends\":[",
         g_ls.embeddings ? "true" : "false", g_ls.metrics ? "true" : "false",
         g_ls.api_key ? "true" : "false", g_ls.ver.major, g_ls.ver.minor, g_ls.ver.patch);
    for (int i = 0; i < g_ls.nbe; i++) {
        struct backend *b = &g_ls.be[i];
        PUTF(o, "%s{\"endpoint\":", i ? "," : "");
        put_json_str(o, b->endpoint, strlen(b->endpoint));
        PUTF(o, ",\"version\":\"%u.%u.%u\",\"devices\":[", b->ver.major, b->ver.minor,
             b->ver.patch);
        for (int d = 0; d < b->ndev; d++)
            PUTF(o, "%s{\"free\":%llu,\"total\":%llu}", d ? "," : "",
                 (unsigned long long)b->free_[d], (unsigned long long)b->total[d]);
        put(o, "]}");
    }
    put(o, "],\"recent\":[");
    for (int i = 0; i < g_ls.nrecent; i++) {
        int k = (g_ls.recent_pos - g_ls.nrecent + i + RECENT_MAX) % RECENT_MAX;
        PUTF(o, "%s{\"path\":", i ? "," : "");
        put_json_str(o, g_ls.recent[k].path, strlen(g_ls.recent[k].path));
        put(o, ",\"body\":");
        cJSON *j = cJSON_Parse(g_ls.recent[k].body);
        if (j) {
            char *txt = cJSON_PrintUnformatted(j);
            put(o, txt ? txt : "null");
            free(txt);
            cJSON_Delete(j);
        } else {
            put_json_str(o, g_ls.recent[k].body, strlen(g_ls.recent[k].body));
        }
        put(o, "}");
    }
    put(o, "]}");
    req_json(r, 200);
}

static void record_recent(struct req *r, const char *url)
{
    struct recent *e = &g_ls.recent[g_ls.recent_pos];
    free(e->body);
    size_t n = r->body.len > 65536 ? 65536 : r->body.len;
    e->body = malloc(n + 1);
    if (!e->body)
        die_oom();
    if (n)
        memcpy(e->body, r->body.data, n);
    e->body[n] = 0;
    snprintf(e->path, sizeof e->path, "%s", url);
    g_ls.recent_pos = (g_ls.recent_pos + 1) % RECENT_MAX;
    if (g_ls.nrecent < RECENT_MAX)
        g_ls.nrecent++;
}

static enum route route_of(const char *url, int is_post, int is_get)
{
    static const struct {
        const char *path;
        enum route rt;
        int post;
    } T[] = {
        {"/health", RT_HEALTH, 0},
        {"/v1/health", RT_HEALTH, 0},
        {"/v1/chat/completions", RT_CHAT, 1},
        {"/chat/completions", RT_CHAT, 1},
        {"/completion", RT_COMPLETION, 1},
        {"/completions", RT_COMPLETION, 1},
        {"/v1/completions", RT_V1_COMPLETIONS, 1},
        {"/v1/embeddings", RT_EMBEDDINGS, 1},
        {"/embeddings", RT_EMBEDDINGS, 1},
        {"/v1/models", RT_MODELS, 0},
        {"/models", RT_MODELS, 0},
        {"/props", RT_PROPS, 0},
        {"/slots", RT_SLOTS, 0},
        {"/metrics", RT_METRICS, 0},
        {"/_sim/stats", RT_SIM_STATS, 0},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (strcmp(url, T[i].path) == 0)
            return (T[i].post ? is_post : is_get) ? T[i].rt : RT_NOT_FOUND;
    return RT_NOT_FOUND;
}

static int authorized(struct req *r)
{
    if (!g_ls.api_key || r->route == RT_HEALTH || r->route == RT_MODELS || r->route == RT_SIM_STATS)
        return 1;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h)
        h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Api-Key");
    if (!h)
        return 0;
    if (strncmp(h, "Bearer ", 7) == 0)
        h += 7;
    return strcmp(h, g_ls.api_key) == 0;
}

static void dispatch(struct req *r, const char *url)
{
    g_ls.requests++;
    g_ls.by_route[r->route]++;
    r->phase = PH_WAITING;
    r->slot = -1;
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "chatcmpl-sim%016llx",
             (unsigned long long)mix64(g_ls.requests ^ now_ns()));
    if (r->route == RT_SIM_STATS) {
        handle_sim_stats(r);
        return;
    }
    if (r->is_post)
        record_recent(r, url);
    if (!g_ls.ready) {
        req_error(r, 503, "unavailable_error", "Loading model");
        return;
    }
    if (r->route == RT_HEALTH) {
        put(&r->out, "{\"status\":\"ok\"}");
        req_json(r, 200);
        return;
    }
    if (!authorized(r)) {
        req_error(r, 401, "authentication_error", "Invalid API Key");
        return;
    }
    switch (r->route) {
    case RT_CHAT:
    case RT_COMPLETION:
    case RT_V1_COMPLETIONS:
    case RT_EMBEDDINGS:
        if (r->body_too_large) {
            req_error(r, 413, "invalid_request_error", "request body too large");
            return;
        }
        r->json = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
        if (!cJSON_IsObject(r->json)) {
            req_error(r, 400, "invalid_request_error", "Failed to parse the request body as JSON");
            return;
        }
        if (r->route == RT_EMBEDDINGS)
            handle_embeddings(r);
        else
            handle_generate(r);
        return;
    case RT_MODELS:
        handle_models(r);
        return;
    case RT_PROPS:
        handle_props(r);
        return;
    case RT_SLOTS:
        handle_slots(r);
        return;
    case RT_METRICS:
        handle_metrics(r);
        return;
    default:
        req_error(r, 404, "not_found_error", "File Not Found");
        return;
    }
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)cls;
    (void)version;
    struct req *r = *con_cls;
    if (!r) {
        if (g_ls.stopping)
            return MHD_NO;
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->conn = conn;
        r->slot = -1;
        r->is_post = strcmp(method, "POST") == 0;
        r->route =
            route_of(url, r->is_post, strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
        r->next = g_ls.live;
        if (g_ls.live)
            g_ls.live->prev = r;
        g_ls.live = r;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (r->body.len + *upload_data_size <= MAX_BODY)
            putn(&r->body, upload_data, *upload_data_size);
        else
            r->body_too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->cancelled || g_ls.stopping)
        return MHD_NO;
    if (r->phase == PH_RECEIVING)
        dispatch(r, url);
    if (r->cancelled)
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
    (void)toe;
    struct req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->mhd_done = 1;
    r->suspended = 0;
    req_cancel(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        g_ls.live = r->next;
    if (r->next)
        r->next->prev = r->prev;
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

static void on_glue_closed(struct sol_mhd_uv *glue)
{
    (void)glue;
    MHD_stop_daemon(g_ls.daemon); /* completion callbacks run in here */
    g_ls.daemon = NULL;
}

int http_start(int listen_fd)
{
    g_ls.daemon = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
                                   access_handler, NULL, MHD_OPTION_LISTEN_SOCKET, listen_fd,
                                   MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                   MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0, MHD_OPTION_END);
    if (!g_ls.daemon || sol_mhd_uv_attach(&g_ls.glue, &g_ls.loop, g_ls.daemon) < 0) {
        logf_("srv    start: cannot start the HTTP server");
        return -1;
    }
    uv_timer_init(&g_ls.loop, &g_ls.kick);
    return 0;
}

void http_shutdown(void)
{
    /* MHD_stop_daemon needs every connection resumed: cancel and resume all,
     * MHD then fails their readers and runs the completion callbacks. */
    for (struct req *r = g_ls.live; r; r = r->next) {
        req_cancel(r);
        resume(r);
    }
    uv_close((uv_handle_t *)&g_ls.kick, NULL);
    sol_mhd_uv_close(&g_ls.glue, on_glue_closed);
}
