/*
 * metrics.h - GET /metrics: the daemon's facts in the Prometheus text
 * exposition format 0.0.4 (see docs/observability.md).
 *
 * Two halves:
 *  - per-request recording (sol_metrics_record), called once per finished
 *    request from the request-completed callback: O(1) in the number of
 *    requests, never allocates (fixed arrays allocated once by
 *    sol_metrics_init, indexed by route, node and a capped model table);
 *  - rendering (sol_metrics_render), which reads those counters plus the
 *    node table, the queue, the affinity table and /proc/self at scrape
 *    time, and may allocate (it appends to a sol_buf).
 *
 * Label values never come from raw client input: routes are the paths of
 * the route table ("other" for the generic POST /v1/... route), nodes are
 * the node table's names, nodes that joined after start included ("none"
 * when no node answered, "other" for a name not in the table), models are
 * names some node's probe table knows ("other" for
 * anything else and beyond SOL_METRICS_MAX_MODELS distinct names).
 * Single-threaded, like the rest of the daemon.
 */
#ifndef SOLLOL_METRICS_H
#define SOLLOL_METRICS_H

#include "base/affinity.h"
#include "base/auth.h"
#include "sollol/buf.h"
#include "base/cont.h"
#include "base/node-t.h"
#include "base/queue.h"
#include "base/routes.h"

#include <cjson/cJSON.h>
#include <stdint.h>

#define SOL_METRICS_MAX_MODELS 256  /* model labels besides "other" */
#define SOL_METRICS_MAX_ROUTES 63   /* route labels besides "other" */
#define SOL_METRICS_SERIES_CAP 8192 /* request-counter label sets (power of two) */
#define SOL_METRICS_CODES      7    /* status classes: none, 1xx..5xx, other */

#define SOL_METRICS_DURATION_BUCKETS 15
#define SOL_METRICS_TTFB_BUCKETS     14
#define SOL_METRICS_QUEUE_BUCKETS    12

/* Counts per upper bound (not cumulative; rendering accumulates). */
struct sol_metrics_hist {
    uint64_t counts[16]; /* [i] = observations in (bound[i-1], bound[i]]; last used = +Inf */
    uint64_t count;
    double sum;
};

/* One request-counter label set: key = packed (route, model, node, code) + 1. */
struct sol_metrics_series {
    uint64_t key; /* 0 = empty slot */
    uint64_t count;
};

/* Why a request was refused before it reached a node (the label "reason"
 * of sollol_refused_requests_total). */
enum sol_refusal {
    SOL_REFUSED_TOO_MANY_CONNECTIONS, /* 429: per-address connection limit */
    SOL_REFUSED_URI_TOO_LONG,         /* 414 */
    SOL_REFUSED_HEADERS_TOO_LARGE,    /* 431 */
    SOL_REFUSED_BODY_TOO_LARGE,       /* 413 */
    SOL_REFUSED_UNAUTHORIZED,         /* 401: no or unknown API key */
    SOL_REFUSED_FORBIDDEN,            /* 403: admin route or a model outside the key's list */
    SOL_REFUSED_RATE_LIMITED,         /* 429: the key's token bucket is empty */
    SOL_REFUSED_BODY_BUDGET,          /* 503: the memory for request bodies is in use */
    SOL_REFUSED_AUTH_FAILURES,        /* 429: too many failed authentications from the address */
    SOL_REFUSAL_KINDS
};

struct sol_metrics {
    unsigned n_nodes; /* nodes with token counters; grows with the table */
    double start_time_unix;

    /* Route labels: index 0 = "other"; 1.. interned from route table entries. */
    const struct sol_route *routes[SOL_METRICS_MAX_ROUTES + 1];
    unsigned n_routes; /* including "other" */

    /* Model labels: index 0 = "other"; 1.. names some node knew when first seen. */
    char (*model_names)[SOL_MODEL_NAME_MAX];
    uint64_t *model_keys;
    unsigned n_models; /* including "other" */

    /* sollol_requests_total: open addressing, linear probing. */
    struct sol_metrics_series *series;
    unsigned n_series;

    /* Per route. */
    struct sol_metrics_hist duration[SOL_METRICS_MAX_ROUTES + 1];
    struct sol_metrics_hist ttfb[SOL_METRICS_MAX_ROUTES + 1];
    struct sol_metrics_hist ttft[SOL_METRICS_MAX_ROUTES + 1]; /* streamed inference only */
    uint64_t bytes_out[SOL_METRICS_MAX_ROUTES + 1];
    uint64_t retries[SOL_METRICS_MAX_ROUTES + 1];   /* attempts after the first */
    uint64_t failovers[SOL_METRICS_MAX_ROUTES + 1]; /* answered after an attempt failed */
    struct sol_metrics_hist queue_wait;

    uint64_t refused[SOL_REFUSAL_KINDS];    /* sollol_refused_requests_total */
    uint64_t continuations[SOL_CONT_KINDS]; /* sollol_stream_continuations_total */

    /* Per (node, model): [node * (SOL_METRICS_MAX_MODELS + 1) + model], real nodes only. */
    uint64_t *gen_tokens;
    uint64_t *prompt_tokens;
};

/* What one finished request contributes. Strings are borrowed. */
struct sol_metrics_sample {
    const struct sol_route *route; /* NULL: not recorded */
    const char *model;             /* canonical name, "" when none */
    const char *node;              /* the node that answered, "" when none */
    unsigned status;               /* HTTP status sent, 0 when none */
    double duration_s;             /* request start -> completion */
    double ttfb_s;                 /* the answering attempt: sent -> first byte; <= 0 unknown */
    double ttft_s;                 /* streamed inference: arrival -> first chunk; <= 0 none */
    double queue_s;                /* time waiting for a node slot */
    int waited;                    /* reached admission (record queue_s even when 0) */
    unsigned attempts;             /* nodes tried */
    uint64_t bytes_out;            /* body bytes sent to the client */
    uint64_t eval_count;           /* tokens generated: eval_count, or OpenAI's
                                      usage.completion_tokens (0 unknown) */
    uint64_t prompt_eval_count;    /* prompt_eval_count, or usage.prompt_tokens */
};

/* Everything rendered besides the recorded counters, read at scrape time. */
struct sol_metrics_view {
    const struct sol_node_table *table;
    uint64_t now_ms; /* loop clock, for breaker states */
    double uptime_s;
    unsigned requests_live;
    uint64_t retries_total;
    struct sol_queue_stats queue;
    int affinity_on;
    struct sol_affinity_stats affinity;
    int process;               /* 1: add process_* families from /proc/self */
    uint64_t cut_slow_headers; /* connections cut for sending headers too slowly (limits.c) */
    uint64_t cut_slow_body;    /* ... a request body below limits.min_body_rate */
    uint64_t cut_no_progress;  /* ... keeping the HTTP server busy without progress */
    /* The sharded-model coordinator's status (the "rpc" object of
     * /api/stats: {"enabled", "backends": [{"address", "reachable",
     * "version", "in_use", "excluded", "free_bytes", "total_bytes"}],
     * "coordinator": {"state", "restarts", "uptime_s"}}), or NULL: the
     * sollol_rpc_* and sollol_coordinator_* families are rendered only when
     * it is given with "enabled": true. Borrowed. */
    const cJSON *rpc;
    /* The scraper's API key (NULL: unrestricted): every series that names
     * a model it may not use is left out (aggregate.h, sol_model_visible),
     * "other" included, so the counts of other models do not show either.
     * Borrowed. */
    const struct sol_auth_key *key;
};

/* Allocates the tables for a node table of n_nodes (the per-node token
 * counters grow when a sample names a node added later; a node that cannot
 * get counters is recorded as "other"). 0, or -1 (out of memory). */
int sol_metrics_init(struct sol_metrics *m, unsigned n_nodes);
void sol_metrics_free(struct sol_metrics *m);

/* Records one finished request. No allocation; t is the node table the
 * model and node names are checked against. */
void sol_metrics_record(struct sol_metrics *m, const struct sol_node_table *t,
                        const struct sol_metrics_sample *s);

/* Appends the whole exposition to out. 0, or -1 (out of memory). */
int sol_metrics_render(const struct sol_metrics *m, const struct sol_metrics_view *v,
                       struct sol_buf *out);

/* Counts what became of an answer whose node failed after its first byte
 * (request.c; cont.h): continued on another node, or why not. */
void sol_metrics_continuation(struct sol_metrics *m, enum sol_cont_why why);

/* Counts a refusal (gate.c, request.c). */
void sol_metrics_refused(struct sol_metrics *m, enum sol_refusal why);

/* The refusal an HTTP status of the gate stands for: from_auth says whether
 * access control (401/403/429) or the limits (429/414/431) refused. */
enum sol_refusal sol_metrics_refusal_of(unsigned status, int from_auth);

/* Appends `s` as a label value: \\ \" \n escaped, invalid UTF-8 replaced by
 * U+FFFD. 0 or -1. */
int sol_metrics_append_label_value(struct sol_buf *out, const char *s);

#define SOL_CT_PROMETHEUS "text/plain; version=0.0.4; charset=utf-8"

#endif
