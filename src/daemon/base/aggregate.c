/*
 * aggregate.c - answers built from the probe table (see aggregate.h).
 */
#include "base/aggregate.h"

#include "base/auth.h"
#include "base/model_name.h"
#include "base/scorer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

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
    static const char *const hidden[] = {"gguf", "reason", "last_exit", "last_log_lines",
                                         "recovery"};
    for (size_t i = 0; i < sizeof hidden / sizeof hidden[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(co, hidden[i]);
    /* The programs' paths, and what a backend's failure said. */
    cJSON_DeleteItemFromObjectCaseSensitive(rpc, "rpc_server_binary");
    cJSON_DeleteItemFromObjectCaseSensitive(rpc, "rpc_server_found");
    cJSON *b;
    cJSON_ArrayForEach(b, cJSON_GetObjectItemCaseSensitive(rpc, "backends"))
        cJSON_DeleteItemFromObjectCaseSensitive(b, "last_error");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(co, "model");
    if (cJSON_IsString(model) && model->valuestring[0] &&
        !sol_model_visible(key, model->valuestring))
        cJSON_DeleteItemFromObjectCaseSensitive(co, "model");
}
