/*
 * admin.c - the daemon's own answers (see admin.h): "/", /api/version, the
 * lists built from the probe table, /api/health, /api/stats,
 * /api/sollol/rpc, /metrics and /dashboard. Each is rendered by its module
 * from plain data (aggregate.c, metrics.c, dashboard.c, coordinator.c);
 * this file gathers that data from the daemon object, which is why it sits
 * on the top floor and the renderers do not.
 */
#include "admin.h"

#include "base/aggregate.h"
#include "base/breaker.h"
#include "base/compat.h"
#include "nodes/coordinator.h"
#include "daemon-t.h"
#include "base/dashboard.h"
#include "base/http_reply.h"
#include "base/metrics.h"
#include "base/model_name.h"
#include "reload.h"

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * /api/version is what clients gate features on (Continue wants >= 0.6.5):
 * the cluster can do what its oldest node can, so the answer is the lowest
 * Ollama version among the nodes that are up; with none up, the lowest
 * last known; with none ever known, 503. sollold's own version is in
 * X-Sollol-Version and at /api/sollol/version.
 */
static enum MHD_Result serve_local(struct sol_daemon *d, struct MHD_Connection *conn,
                                   const struct sol_route *route)
{
    if (route->kind == SOL_ROUTE_ROOT)
        return sol_reply(conn, MHD_HTTP_OK, SOL_CT_TEXT, "Ollama is running", 17, NULL);
    struct sol_reply_headers h = {.sollol_version = SOLLOL_VERSION};
    if (route->kind == SOL_ROUTE_SOLLOL_VERSION) {
        static const char own[] = "{\"version\":\"" SOLLOL_VERSION "\"}";
        return sol_reply(conn, MHD_HTTP_OK, SOL_CT_JSON, own, sizeof own - 1, &h);
    }
    char v[sizeof d->table.nodes[0]->version];
    if (!sol_compat_cluster_version(&d->table, v, sizeof v)) {
        h.retry_after = "1";
        return sol_reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, 0,
                               "no node is up: the cluster's Ollama version is not known", &h);
    }
    struct sol_buf b = {0};
    sol_buf_append_str(&b, "{\"version\":");
    sol_buf_append_json_string(&b, v, strlen(v));
    sol_buf_append_str(&b, "}");
    enum MHD_Result ret =
        b.data ? sol_reply(conn, MHD_HTTP_OK, SOL_CT_JSON, b.data, b.len, &h) : MHD_NO;
    sol_buf_free(&b);
    return ret;
}

static const char *state_name(enum sol_node_state s)
{
    return s == SOL_NODE_UP ? "up" : s == SOL_NODE_DOWN ? "down" : "misconfigured";
}

/* key: the caller's (NULL = unrestricted); see aggregate.h for what a
 * restricted key sees. */
static cJSON *stats_json(struct sol_daemon *d, const struct sol_auth_key *key)
{
    int restricted = sol_key_restricted(key);
    uint64_t now = sol_now_ms(d);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", SOLLOL_VERSION);
    cJSON_AddNumberToObject(root, "uptime_s", (double)(now - d->started_ms) / 1000.0);
    cJSON_AddNumberToObject(root, "requests_live", d->requests_live);
    cJSON_AddNumberToObject(root, "requests_total", (double)d->request_seq);
    static const char *const modes[] = {"cost", "round_robin", "least_conn"};
    cJSON_AddStringToObject(root, "routing", modes[d->balancer.mode % 3]);
    cJSON_AddNumberToObject(root, "retries_total", (double)d->retries_total);
    struct sol_queue_stats qs;
    sol_queue_stats(&d->queue, now, &qs);
    cJSON *q = cJSON_AddObjectToObject(root, "queue");
    cJSON_AddNumberToObject(q, "length", (double)qs.length);
    cJSON_AddNumberToObject(q, "oldest_wait_ms", (double)qs.oldest_wait_ms);
    cJSON_AddNumberToObject(q, "enqueued_total", (double)qs.enqueued_total);
    cJSON_AddNumberToObject(q, "dispatched_total", (double)qs.dispatched_total);
    cJSON_AddNumberToObject(q, "expired_total", (double)qs.expired_total);
    cJSON_AddNumberToObject(q, "rejected_total", (double)qs.rejected_total);
    cJSON_AddNumberToObject(q, "removed_total", (double)qs.removed_total);
    if (d->affinity_on) {
        struct sol_affinity_stats as;
        sol_affinity_get_stats(&d->affinity, &as);
        cJSON *a = cJSON_AddObjectToObject(root, "affinity");
        cJSON_AddNumberToObject(a, "entries", (double)as.entries);
        cJSON_AddNumberToObject(a, "capacity", (double)as.capacity);
        cJSON_AddNumberToObject(a, "hits", (double)as.hits);
        cJSON_AddNumberToObject(a, "misses", (double)as.misses);
        cJSON_AddNumberToObject(a, "evictions", (double)as.evictions);
    }
    /* The sharded path (coordinator.c): backends and llama-server. */
    cJSON *rpc = sol_coord_status_json(d->coord);
    sol_aggregate_filter_rpc(rpc, key);
    if (rpc)
        cJSON_AddItemToObject(root, "rpc", rpc);
    cJSON *nodes = cJSON_AddArrayToObject(root, "nodes");
    for (unsigned i = 0; i < d->table.count; i++) {
        const struct sol_node *n = d->table.nodes[i];
        if (n->removed) /* left the table (reload.h): only kept until drained */
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddItemToArray(nodes, o);
        cJSON_AddStringToObject(o, "name", n->name);
        if (!restricted) /* where the node is: the operator's business */
            cJSON_AddStringToObject(o, "url", n->base_url);
        cJSON_AddStringToObject(o, "state", state_name(n->state));
        cJSON_AddStringToObject(o, "ollama_version", n->version);
        cJSON *b = cJSON_AddObjectToObject(o, "breaker");
        cJSON_AddStringToObject(b, "state",
                                sol_breaker_state_name(sol_breaker_state_at(&n->breaker, now)));
        cJSON_AddNumberToObject(b, "consecutive_failures", n->breaker.consecutive_failures);
        cJSON_AddNumberToObject(b, "opens_total", n->breaker.opens_total);
        cJSON_AddNumberToObject(b, "cooldown_ms", (double)n->breaker.cooldown_ms);
        cJSON_AddNumberToObject(o, "rtt_ms", n->rtt_ms);
        cJSON_AddNumberToObject(o, "in_flight", n->in_flight);
        cJSON_AddNumberToObject(o, "max_concurrent", n->max_concurrent);
        cJSON_AddNumberToObject(o, "weight", n->weight);
        cJSON_AddNumberToObject(o, "requests_total", (double)n->requests_total);
        cJSON_AddNumberToObject(o, "failures_total", (double)n->failures_total);
        if (n->tags_at_ms)
            cJSON_AddNumberToObject(o, "tags_age_ms", (double)(now - n->tags_at_ms));
        else
            cJSON_AddNullToObject(o, "tags_age_ms");
        if (!restricted) /* may name a model or the node's address */
            cJSON_AddStringToObject(o, "last_error", n->last_error);
        cJSON *models = cJSON_AddArrayToObject(o, "models");
        for (unsigned j = 0; j < n->n_models; j++) {
            const struct sol_node_model *m = &n->models[j];
            if (!sol_model_visible(key, m->name))
                continue;
            cJSON *mo = cJSON_CreateObject();
            cJSON_AddItemToArray(models, mo);
            cJSON_AddStringToObject(mo, "name", m->name);
            cJSON_AddBoolToObject(mo, "installed", m->installed);
            cJSON_AddBoolToObject(mo, "loaded", m->loaded);
            cJSON_AddBoolToObject(mo, "gone", m->gone);
            cJSON_AddStringToObject(mo, "digest", m->digest);
            cJSON_AddNumberToObject(mo, "size", (double)m->size);
            cJSON_AddNumberToObject(mo, "size_vram", (double)m->size_vram);
            cJSON_AddNumberToObject(mo, "in_flight", m->in_flight);
            cJSON_AddNumberToObject(mo, "gen_tps", m->gen_tps);
            cJSON_AddNumberToObject(mo, "prompt_tps", m->prompt_tps);
            cJSON_AddNumberToObject(mo, "load_ms", m->load_ms);
            cJSON_AddNumberToObject(mo, "ttfb_ms", m->ttfb_ms);
            cJSON_AddNumberToObject(mo, "samples", m->samples);
        }
    }
    return root;
}

static enum MHD_Result reply_buf(struct MHD_Connection *c, unsigned status, struct sol_buf *b)
{
    enum MHD_Result ret =
        b->data ? sol_reply(c, status, SOL_CT_JSON, b->data, b->len, NULL) : MHD_NO;
    sol_buf_free(b);
    return ret;
}

static enum MHD_Result serve_metrics(struct sol_daemon *d, struct MHD_Connection *c,
                                     const struct sol_auth_key *key)
{
    struct sol_metrics_view v = {
        .table = &d->table,
        .now_ms = sol_now_ms(d),
        .uptime_s = (double)(sol_now_ms(d) - d->started_ms) / 1000.0,
        .requests_live = d->requests_live,
        .retries_total = d->retries_total,
        .affinity_on = d->affinity_on,
        .process = 1,
        .cut_slow_headers = d->limits.cut_slow_headers,
        .cut_slow_body = d->limits.cut_slow_body,
        .cut_no_progress = d->limits.cut_no_progress,
        .key = key,
    };
    sol_queue_stats(&d->queue, v.now_ms, &v.queue);
    if (d->affinity_on)
        sol_affinity_get_stats(&d->affinity, &v.affinity);
    cJSON *rpc = d->coord ? sol_coord_status_json(d->coord) : NULL; /* coordinator.c */
    v.rpc = rpc;
    struct sol_buf b = {0};
    int rc = sol_metrics_render(&d->metrics, &v, &b);
    cJSON_Delete(rpc);
    if (rc < 0 || !b.data) {
        sol_buf_free(&b);
        return sol_reply_error(c, 500, 0, "out of memory", NULL);
    }
    enum MHD_Result ret = sol_reply(c, MHD_HTTP_OK, SOL_CT_PROMETHEUS, b.data, b.len, NULL);
    sol_buf_free(&b);
    return ret;
}

static enum MHD_Result serve_dashboard(struct sol_daemon *d, struct MHD_Connection *c,
                                       const struct sol_route *route,
                                       const struct sol_auth_key *key)
{
    if (route->kind == SOL_ROUTE_DASHBOARD) {
        struct MHD_Response *r = MHD_create_response_from_buffer(
            sol_dashboard_page_len, (void *)sol_dashboard_page, MHD_RESPMEM_PERSISTENT);
        if (!r)
            return MHD_NO;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        /* Everything is inline and talks only to this daemon: nothing else
         * may load, so the page works offline and cannot be made to leak. */
        MHD_add_response_header(r, "Content-Security-Policy",
                                "default-src 'none'; script-src 'unsafe-inline'; style-src "
                                "'unsafe-inline'; connect-src 'self'; img-src data:; "
                                "base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
        MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        sol_reply_add_headers(r, NULL);
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ret;
    }
    unsigned seconds = SOL_DASH_SECONDS;
    const char *q = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "seconds");
    if (q) {
        char *end;
        unsigned long v = strtoul(q, &end, 10);
        if (end == q || *end || v < 1 || v > SOL_DASH_SECONDS)
            return sol_reply_error(c, MHD_HTTP_BAD_REQUEST, 0,
                                   "seconds must be an integer from 1 to 300", NULL);
        seconds = (unsigned)v;
    }
    struct sol_buf b = {0};
    if (sol_dashboard_json(&d->dashboard, &d->table, sol_now_ms(d), seconds, key, &b) < 0 ||
        !b.data) {
        sol_buf_free(&b);
        return sol_reply_error(c, 500, 0, "out of memory", NULL);
    }
    enum MHD_Result ret = sol_reply(c, MHD_HTTP_OK, SOL_CT_JSON, b.data, b.len, NULL);
    sol_buf_free(&b);
    return ret;
}

enum MHD_Result sol_admin_serve(struct sol_daemon *d, struct MHD_Connection *c,
                                const struct sol_route *route, const char *url,
                                const struct sol_auth_key *key)
{
    struct sol_buf b = {0};
    int rc = 0;
    unsigned status = MHD_HTTP_OK;
    switch (route->kind) {
    case SOL_ROUTE_ROOT:
    case SOL_ROUTE_VERSION:
    case SOL_ROUTE_SOLLOL_VERSION:
        return serve_local(d, c, route);
    case SOL_ROUTE_METRICS: /* GET /metrics (metrics.c) */
        return serve_metrics(d, c, key);
    case SOL_ROUTE_DASHBOARD: /* GET /dashboard and its data (dashboard.c) */
    case SOL_ROUTE_DASHBOARD_DATA:
        return serve_dashboard(d, c, route, key);
    case SOL_ROUTE_TAGS:
        rc = sol_aggregate_tags(&d->table, key, &b);
        break;
    case SOL_ROUTE_PS:
        rc = sol_aggregate_ps(&d->table, key, &b);
        break;
    case SOL_ROUTE_V1_MODELS:
        rc = sol_aggregate_v1_models(&d->table, key, &b);
        break;
    case SOL_ROUTE_V1_MODEL: {
        const char *model = url + strlen("/v1/models/");
        int found = sol_aggregate_v1_model(&d->table, key, model, &b);
        if (found == 0) {
            char msg[SOL_MODEL_NAME_MAX + 40];
            snprintf(msg, sizeof msg, "model '%.256s' not found", model);
            sol_buf_free(&b);
            return sol_reply_error(c, MHD_HTTP_NOT_FOUND, 1, msg, NULL);
        }
        rc = found < 0 ? -1 : 0;
        break;
    }
    case SOL_ROUTE_HEALTH: {
        unsigned up, total;
        sol_daemon_node_counts(d, &up, &total); /* reload.h: removed nodes do not count */
        const char *st = up == total ? "ok" : up ? "degraded" : "down";
        if (!up)
            status = MHD_HTTP_SERVICE_UNAVAILABLE;
        rc = sol_buf_appendf(&b,
                             "{\"status\":\"%s\",\"version\":\"%s\",\"nodes_up\":%u,"
                             "\"nodes_total\":%u,\"requests_live\":%u}",
                             st, SOLLOL_VERSION, up, total, d->requests_live);
        break;
    }
    case SOL_ROUTE_RPC_STATUS: { /* coordinator.c */
        cJSON *root = sol_coord_status_json(d->coord);
        sol_aggregate_filter_rpc(root, key);
        char *text = root ? cJSON_PrintUnformatted(root) : NULL;
        cJSON_Delete(root);
        rc = text ? sol_buf_append_str(&b, text) : -1;
        free(text);
        break;
    }
    case SOL_ROUTE_STATS: {
        cJSON *root = stats_json(d, key);
        char *text = root ? cJSON_PrintUnformatted(root) : NULL;
        cJSON_Delete(root);
        rc = text ? sol_buf_append_str(&b, text) : -1;
        free(text);
        break;
    }
    default:
        rc = -1;
    }
    if (rc < 0) {
        sol_buf_free(&b);
        return sol_reply_error(c, 500, route->flags & SOL_RF_OPENAI, "out of memory", NULL);
    }
    return reply_buf(c, status, &b);
}
