/*
 * health.h - active health probes: the health side of the node table.
 *
 * Every node is probed through the daemon's curl multi, on the loop, never
 * blocking a request:
 *  - GET /api/version every probe interval (with +-10% jitter so a fleet of
 *    nodes is not probed in lock-step): liveness and round-trip time;
 *  - GET /api/ps with every liveness probe: which models are loaded;
 *  - GET /api/tags every tags interval, when a node comes back, and when
 *    asked (a node answered "model not found"): which models are installed.
 *
 * Probes write node state (state, rtt, models' installed/loaded facts, the
 * raw /api/tags and /api/ps entries the aggregated endpoints serve). State
 * changes are logged once per change, not once per probe. Nothing else in
 * the daemon writes these fields.
 */
#ifndef SOLLOL_HEALTH_H
#define SOLLOL_HEALTH_H

#include "sollol/curl_uv.h"
#include "base/node-t.h"
#include "base/node.h"

#include <stdint.h>
#include <uv.h>

struct sol_health_probe;

struct sol_health_conf {
    unsigned probe_interval_ms;
    unsigned tags_interval_ms;
    unsigned probe_timeout_ms;
    unsigned max_models_per_node; /* 0 = SOL_NODE_MAX_MODELS_DEFAULT */
};

struct sol_health {
    uv_loop_t *loop;
    struct sol_curl_uv *curl;
    struct sol_node_table *table;
    const struct sol_breaker_conf *breaker_conf;
    struct sol_health_conf conf;
    uv_timer_t tick;
    struct sol_health_probe **probes; /* per node: 3 probes (version, ps, tags), one block each */
    unsigned n_probes;
    uint64_t rng;
    int first_round_done;
    uint64_t seq; /* probe starts so far: orders a refresh's wait after them */
    void (*on_first_round)(struct sol_health *h, void *ud);
    void *ud;
    void (*on_closed)(struct sol_health *h);
    int closing;
};

/*
 * Starts probing every node of `table` at once, then periodically.
 * on_first_round (may be NULL) runs once, when every node has answered or
 * failed its first version and tags probes: the daemon is ready then.
 * Returns 0, or -1 when memory runs out.
 */
int sol_health_start(struct sol_health *h, uv_loop_t *loop, struct sol_curl_uv *curl,
                     struct sol_node_table *table, const struct sol_breaker_conf *bc,
                     const struct sol_health_conf *conf,
                     void (*on_first_round)(struct sol_health *h, void *ud), void *ud);

/* Asks for a /api/tags probe of `node` as soon as possible (no-op while one
 * is running). Used when a node answered 404 for a model it listed. */
void sol_health_refresh_tags(struct sol_health *h, const struct sol_node *node);

/* The probes a caller may ask to run again now (sol_health_refresh). */
enum sol_health_kind {
    SOL_HEALTH_PS = 1,   /* GET /api/ps: what is loaded */
    SOL_HEALTH_TAGS = 2, /* GET /api/tags: what is installed */
};

/*
 * Someone waiting for a re-probe (embedded in the waiter's object). `done`
 * is called once, from the loop, when a probe of the asked kind that
 * started after the wait began has finished, whether it succeeded or not
 * (or when the node stops being probed: removed, or not up for /api/ps).
 * The other fields are the health module's.
 */
struct sol_health_waiter {
    void (*done)(struct sol_health_waiter *w);
    struct sol_health_waiter *next, **pprev; /* pprev NULL: not waiting */
    uint64_t after_seq;
};

/*
 * Re-reads what `node` has (after a pull, copy, delete or create went
 * through the daemon, whose client must see it at once): starts the probe
 * of `kind` now, or again as soon as the running one ends (it may have
 * started before the change). With `w` (may be NULL), w->done runs when
 * that fresh answer is in the table. Returns 0, or -1 when no such probe
 * will run (node removed or virtual, /api/ps of a node that is not up,
 * out of memory): w is then not waiting.
 */
int sol_health_refresh(struct sol_health *h, const struct sol_node *node, enum sol_health_kind kind,
                       struct sol_health_waiter *w);

/* Stops waiting (no-op when w is not waiting); done is not called. */
void sol_health_unwait(struct sol_health_waiter *w);

/*
 * What a node just acknowledged, written before its next probe says it
 * (the health side stays the only writer of model facts): `installed`
 * marks `canonical` installed on `node` (a create answered success: it is
 * routable at once; /api/tags lists it when the re-probe this also asks
 * for is in), `unloaded` marks it no longer loaded (it answered an unload:
 * Ollama drops the runner asynchronously, so a probe right away could
 * still list it).
 */
void sol_health_model_installed(struct sol_health *h, struct sol_node *node, const char *canonical);
void sol_health_model_unloaded(struct sol_node *node, uint64_t key);

/*
 * Starts probing the nodes appended to the table since the last call (or
 * since sol_health_start): their first probes run on the next tick. Nodes
 * already known keep their probes (which never move in memory). Returns 0,
 * or -1 when memory runs out (the nodes not covered stay unprobed, hence
 * down, until a later call succeeds).
 */
int sol_health_sync(struct sol_health *h);

/*
 * Cancels the running probes of `node` (just marked removed: it is not
 * probed again while node->removed is set, so its state stays what the
 * caller set). Clearing node->removed later makes it probed on the next
 * tick.
 */
void sol_health_forget(struct sol_health *h, const struct sol_node *node);

/* Cancels running probes and closes the timer; on_closed runs after. */
void sol_health_stop(struct sol_health *h, void (*on_closed)(struct sol_health *h));

/*
 * Parses an RFC 3339 timestamp ("2024-06-04T14:38:31.83753-07:00",
 * "...Z") into Unix milliseconds. Returns 0, or -1 when it is not one.
 * Exposed for tests.
 */
int sol_parse_rfc3339_ms(const char *s, int64_t *out_ms);

/*
 * Applies a /api/tags or /api/ps response body to a node's model list.
 * Returns 0, or -1 when the body is not the expected JSON (the node's
 * models are then unchanged). Exposed for tests and fuzzing.
 *
 * What a node lists is untrusted: entries it no longer lists in either
 * list, with no request running, are dropped (their learned speeds with
 * them), and it gets at most max_models entries (0 = the default,
 * SOL_NODE_MAX_MODELS_DEFAULT): names beyond are ignored and counted in
 * n->models_dropped (the prober logs a warning when that starts). A probe
 * costs O(names listed); the model index stays O(1) per lookup.
 */
int sol_health_apply_tags_max(struct sol_node *n, const char *body, size_t len,
                              unsigned max_models);
int sol_health_apply_ps_max(struct sol_node *n, const char *body, size_t len, unsigned max_models);
/* The same with the default cap. */
int sol_health_apply_tags(struct sol_node *n, const char *body, size_t len);
int sol_health_apply_ps(struct sol_node *n, const char *body, size_t len);

#endif
