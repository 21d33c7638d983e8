/*
 * llama_http.c - the llama-server stand-in's HTTP side: routing, the API
 * key, llama-server's error shape, the routes that do not generate, and the
 * hooks that put it on the simulators' HTTP core (common/simhttp.h: request
 * lifecycle, suspend/resume, hang-up watch, streaming reader).
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

/* llama-server's error shape: {"error":{"code","message","type"}}. */
void req_error(struct req *r, int status, const char *type, const char *msg)
{
    r->h.out.len = 0;
    sb_printf(&r->h.out, "{\"error\":{\"code\":%d,\"message\":", status);
    sb_json_plain(&r->h.out, msg, strlen(msg));
    sb_puts(&r->h.out, ",\"type\":");
    sb_json_plain(&r->h.out, type, strlen(type));
    sb_puts(&r->h.out, "}}");
    simhttp_json(&r->h, status);
}

/* ---------------------------------------------------------------- other routes */

static void put_argv(struct sbuf *b)
{
    sb_puts(b, "[");
    for (int i = 0; i < g_ls.argc; i++) {
        if (i)
            sb_puts(b, ",");
        sb_json_plain(b, g_ls.argv[i], strlen(g_ls.argv[i]));
    }
    sb_puts(b, "]");
}

static void handle_models(struct req *r)
{
    struct sbuf *o = &r->h.out;
    const char *id = model_id();
    sb_puts(o, "{\"models\":[{\"name\":");
    sb_json_plain(o, id, strlen(id));
    sb_puts(o, ",\"model\":");
    sb_json_plain(o, id, strlen(id));
    sb_puts(
        o, ",\"modified_at\":\"\",\"size\":\"\",\"digest\":\"\",\"type\":\"model\",\"description\":"
           "\"\",\"tags\":[\"\"],\"capabilities\":[\"completion\"],\"parameters\":\"\","
           "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"\",\"families\":"
           "[\"\"],\"parameter_size\":\"\",\"quantization_level\":\"\"}}],\"object\":\"list\","
           "\"data\":[{\"id\":");
    sb_json_plain(o, id, strlen(id));
    sb_printf(o,
              ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"llamacpp\",\"meta\":{\"n_ctx_"
              "train\":%d}}]}",
              (long long)time(NULL), g_ls.ctx);
    simhttp_json(&r->h, 200);
}

static void handle_props(struct req *r)
{
    struct sbuf *o = &r->h.out;
    sb_printf(
        o,
        "{\"default_generation_settings\":{\"id\":0,\"n_ctx\":%d,\"params\":{\"n_predict\":-1,"
        "\"seed\":4294967295}},\"total_slots\":%d,\"model_alias\":",
        g_ls.ctx / g_ls.np, g_ls.np);
    sb_json_plain(o, model_id(), strlen(model_id()));
    sb_puts(o, ",\"model_path\":");
    sb_json_plain(o, g_ls.model, strlen(g_ls.model));
    sb_puts(o, ",\"modalities\":{\"vision\":");
    sb_puts(o, g_ls.mmproj ? "true" : "false");
    sb_puts(o, ",\"audio\":false},\"chat_template\":\"{% for m in messages %}<|{{ m.role }}|>{{ "
               "m.content }}\\n{% endfor %}<|assistant|>\",\"build_info\":\"b0000-sollol-sim\"}");
    simhttp_json(&r->h, 200);
}

static void handle_slots(struct req *r)
{
    struct sbuf *o = &r->h.out;
    sb_puts(o, "[");
    for (int i = 0; i < g_ls.np; i++)
        sb_printf(o, "%s{\"id\":%d,\"n_ctx\":%d,\"is_processing\":%s,\"cache_tokens\":%d}",
                  i ? "," : "", i, g_ls.ctx / g_ls.np, g_ls.slots[i].busy ? "true" : "false",
                  tokens_of(g_ls.slots[i].cache.len) * (g_ls.slots[i].cache.len > 0));
    sb_puts(o, "]");
    simhttp_json(&r->h, 200);
}

static void handle_metrics(struct req *r)
{
    if (!g_ls.metrics) {
        req_error(r, 501, "not_supported_error",
                  "This server does not support metrics endpoint. Start it with `--metrics`");
        return;
    }
    struct sbuf *o = &r->h.out;
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
        sb_printf(o, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s %.17g\n", m[i].name,
                  m[i].help, m[i].name, m[i].type, m[i].name, m[i].v);
    simhttp_send(&r->h, 200, "text/plain; version=0.0.4");
}

/* ,"key":"value" (null when value is NULL). */
static void str_field(struct sbuf *o, const char *key, const char *value)
{
    sb_printf(o, ",\"%s\":", key);
    if (value)
        sb_json_plain(o, value, strlen(value));
    else
        sb_puts(o, "null");
}

static void handle_sim_stats(struct req *r)
{
    struct sbuf *o = &r->h.out;
    sb_printf(o, "{\"pid\":%d,\"state\":\"%s\",\"requests\":%llu,\"by_route\":{", (int)getpid(),
              g_ls.ready ? "ready" : "loading", (unsigned long long)g_ls.requests);
    int first = 1;
    for (int i = 1; i < RT_COUNT; i++)
        if (g_ls.by_route[i]) {
            sb_printf(o, "%s\"%s\":%llu", first ? "" : ",", ROUTE_NAMES[i],
                      (unsigned long long)g_ls.by_route[i]);
            first = 0;
        }
    sb_printf(
        o,
        "},\"completed\":%llu,\"active\":%d,\"waiting\":%d,\"max_active\":%d,\"tokens_predicted\""
        ":%llu,\"argv\":",
        (unsigned long long)g_ls.completed, g_ls.active, g_ls.waiting, g_ls.max_active,
        (unsigned long long)g_ls.predicted_total);
    put_argv(o);
    str_field(o, "model", g_ls.model);
    str_field(o, "alias", g_ls.alias);
    sb_printf(o, ",\"host\":\"%s\",\"port\":%d,\"ctx_size\":%d,\"parallel\":%d", g_ls.host,
              g_ls.port, g_ls.ctx, g_ls.np);
    str_field(o, "n_gpu_layers", g_ls.ngl ? g_ls.ngl : "auto");
    sb_puts(o, ",\"tensor_split\":[");
    for (int i = 0; i < g_ls.nts; i++) {
        if (i)
            sb_puts(o, ",");
        put_double(o, g_ls.ts[i]);
    }
    sb_puts(o, "]");
    str_field(o, "split_mode", g_ls.split_mode);
    str_field(o, "mmproj", g_ls.mmproj);
    str_field(o, "lora", g_ls.lora);
    sb_printf(o, ",\"timeout\":%d,\"no_webui\":%s", g_ls.timeout, g_ls.no_webui ? "true" : "false");
    sb_printf(o,
              ",\"embeddings\":%s,\"metrics\":%s,\"api_key\":%s,\"rpc_version\":\"%u.%u.%u\","
              "\"rpc_backends\":[",
              g_ls.embeddings ? "true" : "false", g_ls.metrics ? "true" : "false",
              g_ls.api_key ? "true" : "false", g_ls.ver.major, g_ls.ver.minor, g_ls.ver.patch);
    for (int i = 0; i < g_ls.nbe; i++) {
        struct backend *b = &g_ls.be[i];
        sb_printf(o, "%s{\"endpoint\":", i ? "," : "");
        sb_json_plain(o, b->endpoint, strlen(b->endpoint));
        sb_printf(o, ",\"version\":\"%u.%u.%u\",\"devices\":[", b->ver.major, b->ver.minor,
                  b->ver.patch);
        for (int d = 0; d < b->ndev; d++)
            sb_printf(o, "%s{\"free\":%llu,\"total\":%llu}", d ? "," : "",
                      (unsigned long long)b->free_[d], (unsigned long long)b->total[d]);
        sb_puts(o, "]}");
    }
    sb_puts(o, "],\"recent\":[");
    for (int i = 0; i < g_ls.nrecent; i++) {
        int k = (g_ls.recent_pos - g_ls.nrecent + i + RECENT_MAX) % RECENT_MAX;
        sb_printf(o, "%s{\"path\":", i ? "," : "");
        sb_json_plain(o, g_ls.recent[k].path, strlen(g_ls.recent[k].path));
        sb_puts(o, ",\"body\":");
        cJSON *j = cJSON_Parse(g_ls.recent[k].body);
        if (j) {
            char *txt = cJSON_PrintUnformatted(j);
            sb_puts(o, txt ? txt : "null");
            free(txt);
            cJSON_Delete(j);
        } else {
            sb_json_plain(o, g_ls.recent[k].body, strlen(g_ls.recent[k].body));
        }
        sb_puts(o, "}");
    }
    sb_puts(o, "]}");
    simhttp_json(&r->h, 200);
}

static void record_recent(struct req *r, const char *url)
{
    struct recent *e = &g_ls.recent[g_ls.recent_pos];
    free(e->body);
    size_t n = r->h.body.len > 65536 ? 65536 : r->h.body.len;
    e->body = malloc(n + 1);
    if (!e->body)
        die_oom();
    if (n)
        memcpy(e->body, r->h.body.p, n);
    e->body[n] = 0;
    str_copy(e->path, sizeof e->path, url); /* cut: the stats show a prefix */
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
    const char *h = MHD_lookup_connection_value(r->h.conn, MHD_HEADER_KIND, "Authorization");
    if (!h)
        h = MHD_lookup_connection_value(r->h.conn, MHD_HEADER_KIND, "X-Api-Key");
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
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "chatcmpl-sim%016llx",
             (unsigned long long)fmix64(g_ls.requests ^ now_ns()));
    if (r->route == RT_SIM_STATS) {
        handle_sim_stats(r);
        return;
    }
    if (r->h.method == SIMHTTP_POST)
        record_recent(r, url);
    if (!g_ls.ready) {
        req_error(r, 503, "unavailable_error", "Loading model");
        return;
    }
    if (r->route == RT_HEALTH) {
        simhttp_text(&r->h, 200, SIMHTTP_JSON, "{\"status\":\"ok\"}");
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
        if (r->h.body_too_large) {
            req_error(r, 413, "invalid_request_error", "request body too large");
            return;
        }
        r->json = cJSON_ParseWithLength(r->h.body.p ? r->h.body.p : "", r->h.body.len);
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

/* ---------------------------------------------------------------- HTTP core hooks */

_Static_assert(offsetof(struct req, h) == 0, "simhttp_req comes first (simhttp.h)");

static struct simhttp_req *on_alloc(void)
{
    /* The same address as &r->h: its first member. */
    return (struct simhttp_req *)calloc(1, sizeof(struct req));
}

static void on_begin(struct simhttp_req *h, const char *url)
{
    struct req *r = LREQ(h);
    r->slot = -1;
    r->route = route_of(url, h->method == SIMHTTP_POST,
                        h->method == SIMHTTP_GET || h->method == SIMHTTP_HEAD);
}

static void on_dispatch(struct simhttp_req *h)
{
    dispatch(LREQ(h), h->path);
}

/* Hang-up, shutdown or completion: the slot or queue place goes back. */
static void on_end(struct simhttp_req *h, enum simhttp_end why)
{
    (void)why;
    slot_release(LREQ(h));
}

static void on_destroy(struct simhttp_req *h)
{
    struct req *r = LREQ(h);
    if (r->json)
        cJSON_Delete(r->json);
    for (int i = 0; i < r->nstops; i++)
        free(r->stops[i]);
    sb_free(&r->h.body);
    sb_free(&r->h.out);
    sb_free(&r->prompt);
    sb_free(&r->text);
    free(r);
}

static const struct simhttp_ops OPS = {
    .alloc = on_alloc,
    .begin = on_begin,
    .dispatch = on_dispatch,
    .end = on_end,
    .destroy = on_destroy,
};

/* Every answer of the real server carries these. */
static const char *const HEADERS[] = {"Server", "llama.cpp", "Access-Control-Allow-Origin", "*",
                                      NULL};

int http_start(int listen_fd)
{
    static const struct simhttp_config cfg = {
        .ops = &OPS,
        .max_body = MAX_BODY,
        .headers = HEADERS,
    };
    if (simhttp_start(&g_ls.http, &g_ls.loop, &cfg, listen_fd) < 0) {
        logf_("srv    start: cannot start the HTTP server");
        return -1;
    }
    return 0;
}

void http_shutdown(void)
{
    simhttp_shutdown(&g_ls.http, NULL);
}
