/*
 * routes.h - the daemon's route table: which Ollama API paths exist, which
 * methods they take, and how the daemon serves each one.
 *
 * Pure lookup: no state, no allocation. The request lifecycle asks it once
 * per request, before reading the body, so a wrong path or method is
 * answered without buffering anything.
 */
#ifndef SOLLOL_ROUTES_H
#define SOLLOL_ROUTES_H

#include <stddef.h>

enum sol_route_kind {
    SOL_ROUTE_NONE = 0,       /* unknown path: 404 */
    SOL_ROUTE_ROOT,           /* GET/HEAD /: "Ollama is running" */
    SOL_ROUTE_VERSION,        /* GET/HEAD /api/version: the cluster's Ollama version */
    SOL_ROUTE_PROXY,          /* body names a model; proxied to one node */
    SOL_ROUTE_TAGS,           /* GET/HEAD /api/tags: union from the probe table */
    SOL_ROUTE_PS,             /* GET /api/ps: union of loaded models, with "node" */
    SOL_ROUTE_V1_MODELS,      /* GET /v1/models: union in OpenAI's shape */
    SOL_ROUTE_V1_MODEL,       /* GET /v1/models/:model */
    SOL_ROUTE_HEALTH,         /* GET /api/health: the daemon's own health */
    SOL_ROUTE_STATS,          /* GET /api/stats: the whole probe table */
    SOL_ROUTE_FANOUT,         /* pull/delete/copy: sent to every routable node */
    SOL_ROUTE_PINNED,         /* create/push/blobs: one node, named or first routable */
    SOL_ROUTE_METRICS,        /* GET /metrics: Prometheus text format (metrics.c) */
    SOL_ROUTE_DASHBOARD,      /* GET/HEAD /dashboard: the live page (dashboard.c) */
    SOL_ROUTE_DASHBOARD_DATA, /* GET /api/sollol/dashboard: what the page polls */
    SOL_ROUTE_RPC_STATUS,     /* GET /api/sollol/rpc: the sharded path (coordinator.c) */
    SOL_ROUTE_SOLLOL_VERSION, /* GET/HEAD /api/sollol/version: sollold's own version */
};

/* Per-route properties the lifecycle relies on. */
enum sol_route_flags {
    SOL_RF_OPENAI = 1 << 0,         /* errors in OpenAI's shape; stream defaults to false */
    SOL_RF_STREAM_DEFAULT = 1 << 1, /* Ollama route: "stream" absent means true */
    SOL_RF_NEEDS_MODEL = 1 << 2,    /* body must name a model */
    SOL_RF_INFERENCE = 1 << 3,      /* generates tokens (counts for routing stats) */
    SOL_RF_RAW_BODY = 1 << 4,       /* body is not JSON (blob uploads): not inspected */
    /* sollol's batch-job API (batch.c). These routes have kind SOL_ROUTE_PROXY
     * so the lifecycle reads their body; request.c hands them to embed.c. */
    SOL_RF_BATCH = 1 << 5,
    SOL_RF_NAME_ALIAS = 1 << 6,  /* "name" stands for "model" (Ollama's deprecated field) */
    SOL_RF_PASSTHROUGH = 1 << 7, /* an unknown Ollama route (sol_route_passthrough) */
};

/* Methods, as a bit set so a route can list the ones it allows. */
enum sol_method {
    SOL_M_GET = 1 << 0,
    SOL_M_HEAD = 1 << 1,
    SOL_M_POST = 1 << 2,
    SOL_M_DELETE = 1 << 3,
    SOL_M_OTHER = 1 << 4,
};

struct sol_route {
    const char *path; /* exact path, or a prefix when it ends in '/' (see prefix) */
    enum sol_route_kind kind;
    unsigned methods; /* enum sol_method bits accepted */
    unsigned flags;   /* enum sol_route_flags */
};

/* Whether the route sends the request's body on to nodes (proxied, fanned
 * out or pinned to one). Every other route is the daemon's own answer and
 * reads no body. */
static inline int sol_route_reads_body(const struct sol_route *route)
{
    return route->kind == SOL_ROUTE_PROXY || route->kind == SOL_ROUTE_FANOUT ||
           route->kind == SOL_ROUTE_PINNED;
}

/* Maps "GET", "POST", ... to its bit; anything else is SOL_M_OTHER. */
unsigned sol_method_bit(const char *method);

/*
 * Finds the route for `path` (without query string). Returns the route, or
 * NULL for an unknown path. The caller checks `methods` itself (405 when the
 * path exists but the method does not). `POST /v1/<anything>` that is not in
 * the table is a generic OpenAI-style proxied route (newer Ollama routes such
 * as /v1/responses and /v1/messages): its body must name a model.
 */
const struct sol_route *sol_route_find(const char *path);

/*
 * The route of a path under /api/ or /v1/ that the table does not know
 * (a newer Ollama's): kind SOL_ROUTE_PINNED with SOL_RF_PASSTHROUGH and
 * SOL_RF_RAW_BODY, any method, sent to one node that is up. NULL for other
 * paths and for sollol's own namespaces (/api/sollol/, /api/batch/).
 */
const struct sol_route *sol_route_passthrough(const char *path);

/*
 * gin's RedirectTrailingSlash: when `path` ends in '/' and the same path
 * without it is a route taking `method` (a sol_method bit), writes that
 * path to out (len bytes) and returns 1: answer 301 (GET) or 307 (other
 * methods) to it. Else 0.
 */
int sol_route_trailing_slash(const char *path, unsigned method, char *out, size_t len);

/* "GET, HEAD" style list of a route's methods for the Allow header. */
void sol_route_allow_header(const struct sol_route *r, char *buf, size_t len);

#endif
