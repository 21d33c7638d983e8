#include "base/routes.h"

#include <stdio.h>
#include <string.h>

#define OLLAMA_INFER (SOL_RF_STREAM_DEFAULT | SOL_RF_NEEDS_MODEL | SOL_RF_INFERENCE)
#define OPENAI_INFER (SOL_RF_OPENAI | SOL_RF_NEEDS_MODEL | SOL_RF_INFERENCE)

static const struct sol_route routes[] = {
    {"/", SOL_ROUTE_ROOT, SOL_M_GET | SOL_M_HEAD, 0},
    {"/api/version", SOL_ROUTE_VERSION, SOL_M_GET | SOL_M_HEAD, 0},
    {"/api/generate", SOL_ROUTE_PROXY, SOL_M_POST, OLLAMA_INFER},
    {"/api/chat", SOL_ROUTE_PROXY, SOL_M_POST, OLLAMA_INFER},
    {"/api/embed", SOL_ROUTE_PROXY, SOL_M_POST, SOL_RF_NEEDS_MODEL | SOL_RF_INFERENCE},
    {"/api/embeddings", SOL_ROUTE_PROXY, SOL_M_POST, SOL_RF_NEEDS_MODEL | SOL_RF_INFERENCE},
    {"/api/show", SOL_ROUTE_PROXY, SOL_M_POST, SOL_RF_NEEDS_MODEL | SOL_RF_NAME_ALIAS},
    {"/v1/chat/completions", SOL_ROUTE_PROXY, SOL_M_POST, OPENAI_INFER},
    {"/v1/completions", SOL_ROUTE_PROXY, SOL_M_POST, OPENAI_INFER},
    {"/v1/embeddings", SOL_ROUTE_PROXY, SOL_M_POST, OPENAI_INFER},
    {"/api/tags", SOL_ROUTE_TAGS, SOL_M_GET | SOL_M_HEAD, 0},
    {"/api/ps", SOL_ROUTE_PS, SOL_M_GET, 0},
    {"/v1/models", SOL_ROUTE_V1_MODELS, SOL_M_GET, SOL_RF_OPENAI},
    {"/api/health", SOL_ROUTE_HEALTH, SOL_M_GET | SOL_M_HEAD, 0},
    {"/api/stats", SOL_ROUTE_STATS, SOL_M_GET, 0},
    {"/metrics", SOL_ROUTE_METRICS, SOL_M_GET, 0},                  /* Prometheus (metrics.c) */
    {"/dashboard", SOL_ROUTE_DASHBOARD, SOL_M_GET | SOL_M_HEAD, 0}, /* dashboard.c */
    {"/api/sollol/dashboard", SOL_ROUTE_DASHBOARD_DATA, SOL_M_GET, 0},
    {"/api/sollol/rpc", SOL_ROUTE_RPC_STATUS, SOL_M_GET, 0}, /* coordinator.c */
    {"/api/sollol/version", SOL_ROUTE_SOLLOL_VERSION, SOL_M_GET | SOL_M_HEAD, 0},
    /* Ollama accepts the deprecated "name" for "model" on these five (api/types.go;
     * /api/copy has only source and destination). */
    {"/api/pull", SOL_ROUTE_FANOUT, SOL_M_POST,
     SOL_RF_STREAM_DEFAULT | SOL_RF_NEEDS_MODEL | SOL_RF_NAME_ALIAS},
    {"/api/delete", SOL_ROUTE_FANOUT, SOL_M_DELETE, SOL_RF_NEEDS_MODEL | SOL_RF_NAME_ALIAS},
    {"/api/copy", SOL_ROUTE_FANOUT, SOL_M_POST, 0},
    {"/api/create", SOL_ROUTE_PINNED, SOL_M_POST, SOL_RF_STREAM_DEFAULT | SOL_RF_NAME_ALIAS},
    {"/api/push", SOL_ROUTE_PINNED, SOL_M_POST, SOL_RF_STREAM_DEFAULT | SOL_RF_NAME_ALIAS},
    /* Batch-job API (batch.c; see SOL_RF_BATCH). */
    {"/api/batch/embed", SOL_ROUTE_PROXY, SOL_M_POST, SOL_RF_NEEDS_MODEL | SOL_RF_BATCH},
    {"/api/batch/jobs", SOL_ROUTE_PROXY, SOL_M_GET, SOL_RF_RAW_BODY | SOL_RF_BATCH},
};

/* /api/blobs/:digest and /v1/models/:model */
static const struct sol_route blobs = {"/api/blobs/", SOL_ROUTE_PINNED, SOL_M_HEAD | SOL_M_POST,
                                       SOL_RF_RAW_BODY};
static const struct sol_route v1_model = {"/v1/models/", SOL_ROUTE_V1_MODEL, SOL_M_GET,
                                          SOL_RF_OPENAI};

/* /api/batch/jobs/:id and /api/batch/results/:id (batch.c). */
static const struct sol_route batch_job = {
    "/api/batch/jobs/", SOL_ROUTE_PROXY, SOL_M_GET | SOL_M_DELETE, SOL_RF_RAW_BODY | SOL_RF_BATCH};
static const struct sol_route batch_results = {"/api/batch/results/", SOL_ROUTE_PROXY, SOL_M_GET,
                                               SOL_RF_RAW_BODY | SOL_RF_BATCH};

/* Any other POST under /v1/ that names a model. */
static const struct sol_route v1_generic = {"/v1/", SOL_ROUTE_PROXY, SOL_M_POST,
                                            SOL_RF_OPENAI | SOL_RF_NEEDS_MODEL};

/* Routes of a newer Ollama this table does not know (/api/status,
 * /api/experimental/..., a GET under /v1/): passed through to one node that
 * is up, body unread. Pinned, hence admin-only when API keys are set
 * (auth.c): what such a route does is not known here. */
#define ANY_METHOD (SOL_M_GET | SOL_M_HEAD | SOL_M_POST | SOL_M_DELETE | SOL_M_OTHER)
static const struct sol_route api_passthrough = {"/api/*", SOL_ROUTE_PINNED, ANY_METHOD,
                                                 SOL_RF_RAW_BODY | SOL_RF_PASSTHROUGH};
static const struct sol_route v1_passthrough = {
    "/v1/*", SOL_ROUTE_PINNED, ANY_METHOD, SOL_RF_OPENAI | SOL_RF_RAW_BODY | SOL_RF_PASSTHROUGH};

unsigned sol_method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return SOL_M_GET;
    if (strcmp(m, "POST") == 0)
        return SOL_M_POST;
    if (strcmp(m, "HEAD") == 0)
        return SOL_M_HEAD;
    if (strcmp(m, "DELETE") == 0)
        return SOL_M_DELETE;
    return SOL_M_OTHER;
}

const struct sol_route *sol_route_find(const char *path)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(path, routes[i].path) == 0)
            return &routes[i];
    if (strncmp(path, "/api/blobs/", 11) == 0 && path[11] != '\0')
        return &blobs;
    if (strncmp(path, "/v1/models/", 11) == 0 && path[11] != '\0')
        return &v1_model;
    /* Batch-job API (batch.c). */
    if (strncmp(path, "/api/batch/jobs/", 16) == 0 && path[16] != '\0')
        return &batch_job;
    if (strncmp(path, "/api/batch/results/", 19) == 0 && path[19] != '\0')
        return &batch_results;
    /* "/v1/" itself or "/v1/models..." are not generic inference routes. */
    if (strncmp(path, "/v1/", 4) == 0 && path[4] != '\0' && strncmp(path, "/v1/models", 10) != 0)
        return &v1_generic;
    return NULL;
}

const struct sol_route *sol_route_passthrough(const char *path)
{
    /* sollol's own namespaces are never an Ollama's. */
    if (strncmp(path, "/api/sollol/", 12) == 0 || strncmp(path, "/api/batch/", 11) == 0)
        return NULL;
    if (strncmp(path, "/api/", 5) == 0 && path[5] != '\0')
        return &api_passthrough;
    if (strncmp(path, "/v1/", 4) == 0 && path[4] != '\0')
        return &v1_passthrough;
    return NULL;
}

int sol_route_trailing_slash(const char *path, unsigned method, char *out, size_t len)
{
    size_t n = strlen(path);
    if (n < 2 || path[n - 1] != '/' || n > len)
        return 0;
    memcpy(out, path, n - 1);
    out[n - 1] = '\0';
    const struct sol_route *r = sol_route_find(out);
    /* gin redirects when the method has a route there: the catch-all of
     * POST /v1/... is not one. */
    return r && r != &v1_generic && (r->methods & method) && !(r->flags & SOL_RF_PASSTHROUGH);
}

void sol_route_allow_header(const struct sol_route *r, char *buf, size_t len)
{
    static const char *const names[] = {"GET", "HEAD", "POST", "DELETE"};
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < 4; i++) {
        if (!(r->methods & (1u << i)))
            continue;
        int n = snprintf(buf + off, len - off, "%s%s", off ? ", " : "", names[i]);
        if (n < 0 || (size_t)n >= len - off)
            break;
        off += (size_t)n;
    }
}
