/*
 * dashboard.h - GET /dashboard (one self-contained page compiled into the
 * binary) and GET /api/sollol/dashboard (the live data it polls once a
 * second, beside /api/stats).
 *
 * The daemon keeps, per second of the loop clock, a ring of the last
 * SOL_DASH_SECONDS seconds: requests finished, errors (5xx and 429
 * answers), retries (attempts after the first), generated tokens, log-scale histograms of duration
 * and time to first token (p50/p95 are read from them), and the largest queue length and in-flight
 * count seen in that second. It also keeps the last SOL_DASH_DECISIONS routing decisions (winning
 * node, runner-up, why).
 *
 * Recording is O(1) and never allocates (arrays allocated once by
 * sol_dashboard_init). Node and model names in the JSON come from the node
 * table and the request's canonical model name and are JSON-escaped; the
 * page renders them with textContent only. Single-threaded.
 */
#ifndef SOLLOL_DASHBOARD_H
#define SOLLOL_DASHBOARD_H

#include "base/auth.h"
#include "sollol/buf.h"
#include "base/metrics.h"
#include "base/node-t.h"
#include "base/routes.h"
#include "base/scorer.h"

#include <stddef.h>
#include <stdint.h>

#define SOL_DASH_SECONDS   300 /* ring length: the last five minutes */
#define SOL_DASH_BUCKETS   48  /* log-scale latency buckets: 1 ms * 1.3^i */
#define SOL_DASH_DECISIONS 24  /* routing decisions kept */

struct sol_dash_second {
    uint64_t sec; /* loop-clock second this slot holds; slot is stale otherwise */
    uint32_t requests, errors;
    uint32_t retries; /* attempts after the first (failed over before the first byte) */
    uint32_t queue_max, in_flight_max;
    uint64_t tokens;
    uint32_t lat[SOL_DASH_BUCKETS];  /* request duration */
    uint32_t ttft[SOL_DASH_BUCKETS]; /* streamed inference: time to first token */
};

#define SOL_DASH_SKIPS 4

/* One routing decision as the dashboard shows it. Node fields are table
 * indexes (-1 = none). */
struct sol_dash_decision {
    uint64_t at_ms; /* loop clock */
    char id[72];
    char model[SOL_MODEL_NAME_MAX];
    const char *how;  /* "cost", "round_robin", "least_conn", "pinned" (static) */
    unsigned attempt; /* 1 = first attempt, 2 = first retry, ... */
    int node;
    double cost; /* winner's expected seconds to completion; < 0 unknown */
    int runner;
    double runner_cost;
    unsigned candidates;
    int affinity; /* the winner holds the conversation's prefix */
    unsigned skipped_total, n_skipped;
    int skipped[SOL_DASH_SKIPS];
    const char *skip_reason[SOL_DASH_SKIPS]; /* sol_skip_reason_name() */
};

struct sol_dashboard {
    struct sol_dash_second *ring; /* SOL_DASH_SECONDS slots */
    struct sol_dash_decision decisions[SOL_DASH_DECISIONS];
    unsigned next_decision;
    uint64_t decisions_total;
};

/* Allocates the ring. 0, or -1 (out of memory). */
int sol_dashboard_init(struct sol_dashboard *db);
void sol_dashboard_free(struct sol_dashboard *db);

/* One finished request (the same sample GET /metrics records). A sample
 * without a route is ignored, as in sol_metrics_record(). */
void sol_dashboard_record(struct sol_dashboard *db, const struct sol_metrics_sample *s,
                          uint64_t now_ms);

/* Samples the queue length and requests in flight (the daemon calls it from
 * its 100 ms sweep timer); each second keeps the largest values seen. */
void sol_dashboard_tick(struct sol_dashboard *db, uint64_t now_ms, unsigned queue_len,
                        unsigned in_flight);

/*
 * One routing decision. `ex` is the scorer's explanation (NULL when the
 * node was not chosen by the scorer: pinned routes, comparison modes);
 * `chosen` the node dispatched to (NULL: none eligible); `attempt` counts
 * from 1; `how` a static mode name. Strings are copied.
 */
void sol_dashboard_decision(struct sol_dashboard *db, uint64_t now_ms, const char *id,
                            const char *model, const char *how, unsigned attempt,
                            const struct sol_node *chosen, int affinity_node,
                            const struct sol_score_explain *ex);

/*
 * Appends the JSON the page polls: {"now_ms", "window_s", "series": {per
 * second arrays over the last `seconds` seconds, oldest first: "requests",
 * "errors", "retries", "tokens", "queue", "in_flight", "p50_ms", "p95_ms",
 * "ttft_p50_ms", "ttft_p95_ms" (null where the second had no sample)},
 * "last_minute": {"requests", "errors", "rate", "error_rate", "p50_ms",
 * "p95_ms", "ttft_p50_ms", "ttft_p95_ms", "tokens_per_s"}, "decisions":
 * [newest first: {"age_ms", "id", "model", "how", "attempt", "node",
 * "cost_s", "runner", "runner_cost_s", "candidates", "affinity", "skipped":
 * [{"node","reason"}], "skipped_total", "reason"}], "decisions_total"}.
 * `seconds` is capped at SOL_DASH_SECONDS. `key` is the caller's API key
 * (NULL: unrestricted): decisions for models it may not use are left out
 * (aggregate.h, sol_model_visible); the per-second series are totals that
 * name no model. 0, or -1 (out of memory).
 */
int sol_dashboard_json(const struct sol_dashboard *db, const struct sol_node_table *t,
                       uint64_t now_ms, unsigned seconds, const struct sol_auth_key *key,
                       struct sol_buf *out);

/* The page (HTML with its CSS and JavaScript inline), generated at build
 * time from src/daemon/dashboard/ (see CMakeLists.txt). */
extern const unsigned char sol_dashboard_page[];
extern const size_t sol_dashboard_page_len;

#endif
