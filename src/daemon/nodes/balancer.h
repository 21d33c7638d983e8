/*
 * balancer.h - picks the node for one attempt and takes back its outcome.
 *
 * The proxy path calls sol_balancer_get() before each attempt and
 * sol_balancer_put() exactly once after it, whatever happened: these two
 * are the only way a request touches the node table (nginx's get/free on a
 * peer). Passive health (what real traffic says about a node: the circuit
 * breaker, a model the node no longer has, credentials it rejects) and the
 * learned speeds are recorded in put(), not in the proxy.
 *
 * Single-threaded: called only from the loop thread.
 */
#ifndef SOLLOL_BALANCER_H
#define SOLLOL_BALANCER_H

#include "base/node-t.h"
#include "base/scorer.h"

#include <stddef.h>
#include <stdint.h>

struct sol_balancer {
    struct sol_node_table *table;
    struct sol_scorer scorer;
    struct sol_breaker_conf breaker;
    int mode;         /* enum sol_routing_mode (config.h) */
    unsigned rr_next; /* round-robin cursor */
    uint64_t (*now_ms)(void *clock_ud);
    void *clock_ud;
    /* Called when a node answered 404 for a model it listed, so the health
     * side re-reads its /api/tags soon. May be NULL. */
    void (*on_model_gone)(void *ud, const struct sol_node *node);
    void *gone_ud;
    /* Called after every put(): a slot is free again (the admission queue
     * may start a waiting request). May be NULL. */
    void (*on_slot_freed)(void *ud);
    void *slot_ud;
};

/* What a finished attempt tells the balancer. Metrics are the node's own
 * final numbers (Ollama's done line), 0 when absent. */
struct sol_attempt_report {
    enum sol_attempt_result result;
    uint64_t model_key; /* the request's model (0 = none) */
    uint64_t eval_count;
    uint64_t eval_duration_ns;
    uint64_t prompt_eval_count;
    uint64_t prompt_eval_duration_ns;
    uint64_t load_duration_ns;
    double ttfb_ms;    /* request sent -> first byte; 0 = unknown */
    int prompt_cached; /* the node likely had the prompt's prefix cached: its
                          prompt speed says nothing about a cold prompt */
    uint64_t eta_ms;   /* what get() stored in *eta_ms (0 = untracked) */
};

/* Initialises over `table` (not owned) with the scorer and breaker
 * settings; `now_ms` is the clock (tests pass a fake one). */
void sol_balancer_init(struct sol_balancer *b, struct sol_node_table *table, int mode,
                       const struct sol_scorer_conf *sc, const struct sol_breaker_conf *bc,
                       uint64_t (*now_ms)(void *), void *clock_ud);

/*
 * Returns the node for the next attempt of `req`, or NULL when no node is
 * eligible (see scorer.h). Accounts the dispatch: in_flight of the node and
 * of its model entry, the breaker's trial. The caller must call
 * sol_balancer_put() for it exactly once. `explain` may be NULL.
 *
 * When `eta_ms` is not NULL the attempt is tracked: its expected end (loop
 * clock, ms, never 0; or 0 when it could not be tracked) is stored in
 * *eta_ms and in the node's running set, where the scorer reads it to
 * price the node's wait; the caller passes it back in the report's eta_ms
 * to put(), which removes it. Untracked attempts (NULL) count in in_flight
 * only.
 */
struct sol_node *sol_balancer_get(struct sol_balancer *b, const struct sol_score_req *req,
                                  struct sol_score_explain *explain, uint64_t *eta_ms);

/* Like sol_balancer_get() for a node chosen by the caller (a request
 * pinned to one node by the operator): accounts the dispatch the same way.
 * Returns the node, or NULL when it is not up. `eta_ms` as for get(). */
struct sol_node *sol_balancer_get_node(struct sol_balancer *b, struct sol_node *node,
                                       const struct sol_score_req *req, uint64_t *eta_ms);

/* 1 when some node other than those in req->tried could take req now
 * (decides whether a node's error is worth a retry). No side effects. */
int sol_balancer_has_alternative(const struct sol_balancer *b, const struct sol_score_req *req);

/* Ends an attempt: releases what get() accounted and records its outcome. */
void sol_balancer_put(struct sol_balancer *b, struct sol_node *node,
                      const struct sol_attempt_report *rep);

/* Returns 1 when `index` is in `tried`. */
int sol_tried_has(const struct sol_tried *t, unsigned index);

#endif
