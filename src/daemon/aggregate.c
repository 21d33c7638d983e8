/*
 * aggregate.c - answers built from the probe table (see aggregate.h).
 */
#include "sollol/aggregate.h"

#include "sollol/auth.h"
#include "sollol/breaker.h"
#include "sollol/coordinator.h"
#include "sollol/daemon.h"
#include "sollol/http_reply.h"
#include "sollol/metrics.h"
#include "sollol/model_name.h"
#include "sollol/reload.h"
#include "sollol/scorer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

int sol_node_listable(const struct sol_node *n)
{
    return n->state == SOL_NODE_UP;
}

/* One distinct model over the table: the entry to show for it. */
struct pick {
    const struct sol_node_model *m;
    const struct sol_node *node;
};

static int by_newest(const void *a, const void *b)
{
    const struct pick *x = a, *y = b;
    if (x->m->modified_at_ms != y->m->modified_at_ms)
        return x->m->modified_at_ms < y->m->modified_at_ms ? 1 : -1;
    return strcmp(x->m->name, y->m->name);
}

/* Globs are matched against what a client would send, so the listed name,
 * the same without ":latest", and the canonical form (as auth does for
 * requests) are all tried. */
int sol_model_visible(const struct sol_auth_key *k, const char *name)
{
    if (!k || !k->n_models)
        return 1;
    char canonical[SOL_MODEL_NAME_MAX];
    if (sol_auth_model_allowed(
            k, name, sol_model_canonical(name, canonical, sizeof canonical) < 0 ? NULL : canonical))
        return 1;
    size_t len = strlen(name);
    static const char latest[] = ":latest";
    if (len > sizeof latest - 1 && strcmp(name + len - (sizeof latest - 1), latest) == 0 &&
        len - (sizeof latest - 1) < sizeof canonical) {
        memcpy(canonical, name, len - (sizeof latest - 1));
        canonical[len - (sizeof latest - 1)] = '\0';
        return sol_auth_model_allowed(k, canonical, NULL);
    }
    return 0;
}

/*
 * Collects one entry per model name over listable nodes: installed models
 * (want_loaded = 0) or loaded ones (1), leaving out models API key `key`
 * may not use (NULL: none left out). For a name installed with different
 * digests on different nodes, the newest wins; for a model loaded on
 * several nodes, the one loaded longest. Returns the count, or -1.
 */
static long collect(const struct sol_node_table *t, int want_loaded, const struct sol_auth_key *key,
                    struct pick **out)
{
    size_t cap = 16, n = 0;
    struct pick *v = malloc(cap * sizeof *v);
    if (!v)
        return -1;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *node = t->nodes[i];
        if (!sol_node_listable(node))
            continue;
        for (unsigned j = 0; j < node->n_models; j++) {
            const struct sol_node_model *m = &node->models[j];
            if (want_loaded ? !(m->loaded && m->ps_entry) : !(m->installed && m->tags_entry))
                continue;
            if (!sol_model_visible(key, m->name))
                continue;
            size_t k = 0;
            for (; k < n && v[k].m->key != m->key; k++)
                ;
            if (k < n) {
                /* Installed: the newest copy. Loaded: once per model too
                 * (clients key their list by name), the entry that stays
                 * loaded longest; the nodes are listed beside it. */
                if (want_loaded ? m->expires_at_ms > v[k].m->expires_at_ms
                                : m->modified_at_ms > v[k].m->modified_at_ms)
                    v[k] = (struct pick){m, node};
                continue;
            }
            if (n == cap) {
                struct pick *p = realloc(v, (cap *= 2) * sizeof *v);
                if (!p) {
                    free(v);
                    return -1;
                }
                v = p;
            }
            v[n++] = (struct pick){m, node};
        }
    }
    qsort(v, n, sizeof *v, by_newest);
    *out = v;
    return (long)n;
}

int sol_aggregate_tags(const struct sol_node_table *t, const struct sol_auth_key *key,
                       struct sol_buf *out)
{
    struct pick *v;
    long n = collect(t, 0, key, &v);
    if (n < 0)
        return -1;
    int rc = sol_buf_append_str(out, "{\"models\":[");
    for (long i = 0; i < n; i++) {
        if (i)
            rc |= sol_buf_append_str(out, ",");
        rc |= sol_buf_append_str(out, v[i].m->tags_entry);
    }
    rc |= sol_buf_append_str(out, "]}");
    free(v);
    return rc ? -1 : 0;
}

int sol_aggregate_ps(const struct sol_node_table *t, const struct sol_auth_key *key,
                     struct sol_buf *out)
{
    struct pick *v;
    long n = collect(t, 1, key, &v);
    if (n < 0)
        return -1;
    int rc = sol_buf_append_str(out, "{\"models\":[");
    for (long i = 0; i < n; i++) {
        const char *e = v[i].m->ps_entry;
        size_t len = strlen(e);
        if (i)
            rc |= sol_buf_append_str(out, ",");
        /* The node's own object, plus where it runs: "node" the node of
         * this entry, "nodes" every node that has the model loaded. */
        if (len >= 2 && e[len - 1] == '}') {
            rc |= sol_buf_append(out, e, len - 1);
            rc |= sol_buf_append_str(out, len > 2 ? ",\"node\":" : "\"node\":");
            rc |= sol_buf_append_json_string(out, v[i].node->name, strlen(v[i].node->name));
            rc |= sol_buf_append_str(out, ",\"nodes\":[");
            int first = 1;
            for (unsigned j = 0; j < t->count; j++) {
                const struct sol_node *on = t->nodes[j];
                const struct sol_node_model *m = sol_node_find_model(on, v[i].m->key);
                if (!sol_node_listable(on) || !m || !m->loaded || !m->ps_entry)
                    continue;
                rc |= sol_buf_append_str(out, first ? "" : ",");
                rc |= sol_buf_append_json_string(out, on->name, strlen(on->name));
                first = 0;
            }
            rc |= sol_buf_append_str(out, "]}");
        } else {
            rc |= sol_buf_append_str(out, e);
        }
    }
    rc |= sol_buf_append_str(out, "]}");
    free(v);
    return rc ? -1 : 0;
}

/* OpenAI's model object, as Ollama writes it: owned_by is the namespace
 * ("library" for the default one). `id` is the model's name, or for
 * /v1/models/:model the name as asked (Ollama echoes it: ToModel). */
static int v1_model_object(const struct sol_node_model *m, const char *id, struct sol_buf *out)
{
    char owner[128] = "library";
    const char *slash = strrchr(id, '/');
    if (slash) {
        const char *start = id;
        const char *prev = slash;
        while (prev > start && prev[-1] != '/')
            prev--;
        snprintf(owner, sizeof owner, "%.*s", (int)(slash - prev), prev);
    }
    int rc = sol_buf_append_str(out, "{\"id\":");
    rc |= sol_buf_append_json_string(out, id, strlen(id));
    rc |= sol_buf_appendf(out, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":",
                          (long long)(m->modified_at_ms / 1000));
    rc |= sol_buf_append_json_string(out, owner, strlen(owner));
    rc |= sol_buf_append_str(out, "}");
    return rc;
}

int sol_aggregate_v1_models(const struct sol_node_table *t, const struct sol_auth_key *key,
                            struct sol_buf *out)
{
    struct pick *v;
    long n = collect(t, 0, key, &v);
    if (n < 0)
        return -1;
    int rc = sol_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (long i = 0; i < n; i++) {
        if (i)
            rc |= sol_buf_append_str(out, ",");
        rc |= v1_model_object(v[i].m, v[i].m->name, out);
    }
    rc |= sol_buf_append_str(out, "]}");
    free(v);
    return rc ? -1 : 0;
}

int sol_aggregate_v1_model(const struct sol_node_table *t, const struct sol_auth_key *api_key,
                           const char *model, struct sol_buf *out)
{
    char canonical[SOL_MODEL_NAME_MAX];
    if (sol_model_canonical(model, canonical, sizeof canonical) < 0)
        return 0;
    if (!sol_auth_model_allowed(api_key, model, canonical))
        return 0; /* as if absent: a key learns nothing of other models */
    uint64_t key = sol_model_key(canonical);
    const struct sol_node_model *best = NULL;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        const struct sol_node_model *m = sol_node_find_model(n, key);
        if (sol_node_listable(n) && m && m->installed &&
            (!best || m->modified_at_ms > best->modified_at_ms))
            best = m;
    }
    if (!best)
        return 0;
    return v1_model_object(best, model, out) ? -1 : 1;
}

static const char *state_name(enum sol_node_state s)
{
    return s == SOL_NODE_UP ? "up" : s == SOL_NODE_DOWN ? "down" : "misconfigured";
}

int sol_key_restricted(const struct sol_auth_key *k)
{
    return k && k->n_models > 0;
}

void sol_aggregate_filter_rpc(cJSON *rpc, const struct sol_auth_key *key)
{
    if (!rpc || !sol_key_restricted(key))
        return;
    cJSON *co = cJSON_GetObjectItemCaseSensitive(rpc, "coordinator");
    if (!cJSON_IsObject(co))
        return;
    /* Operator details: the file, its process's output and exit. */
    static const char *const hidden[] = {"gguf", "reason", "last_exit", "last_log_lines"};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(co, hidden[i]);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(co, "model");
    if (cJSON_IsString(model) && model->valuestring[0] &&
        !sol_model_visible(key, model->valuestring))
        cJSON_DeleteItemFromObjectCaseSensitive(co, "model");
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

enum MHD_Result sol_aggregate_serve(struct sol_daemon *d, struct MHD_Connection *c,
                                    const struct sol_route *route, const char *url,
                                    const struct sol_auth_key *key)
{
    struct sol_buf b = {0};
    int rc = 0;
    unsigned status = MHD_HTTP_OK;
    switch (route->kind) {
    case SOL_ROUTE_METRICS: /* GET /metrics (metrics.c) */
        return sol_metrics_serve(d, c, key);
    case SOL_ROUTE_DASHBOARD: /* GET /dashboard and its data (dashboard.c) */
    case SOL_ROUTE_DASHBOARD_DATA:
        return sol_dashboard_serve(d, c, route, key);
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
