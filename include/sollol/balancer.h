/*
 * balancer.h - picks the node for one attempt and takes back its outcome.
 *
 * The proxy path calls sol_balancer_get() before each attempt and
 * sol_balancer_put() exactly once after it, whatever happened: these two
 * are the only way a request touches the node table. Passive health (what
 * real traffic says about a node) is recorded in put(), not in the proxy.
 *
 * Single-threaded: called only from the loop thread.
 */
#ifndef SOLLOL_BALANCER_H
#define SOLLOL_BALANCER_H

#include "sollol/node-t.h"

#include <stddef.h>

struct sol_balancer {
    struct sol_node_table *table;
    unsigned rr_next;             /* round-robin cursor */
    unsigned fail_threshold;      /* consecutive failures that take a node down */
    unsigned down_ms;             /* how long a failed node rests before a trial */
    uint64_t (*now_ms)(void);     /* clock, replaceable in tests */
};

/* What the balancer may know of a request when it picks. */
struct sol_pick {
    const char *model; /* normalised model name, or NULL */
    const struct sol_tried *tried;
};

/* Initialises over `table` (not owned). */
void sol_balancer_init(struct sol_balancer *b, struct sol_node_table *table);

/*
 * Returns the node for the next attempt, or NULL when every node is either
 * already tried or not routable. Increments the node's in_flight: the caller
 * must call sol_balancer_put() for it exactly once.
 */
struct sol_node *sol_balancer_get(struct sol_balancer *b, const struct sol_pick *pick);

/* Ends an attempt: decrements in_flight and records passive health. */
void sol_balancer_put(struct sol_balancer *b, struct sol_node *node,
                      enum sol_attempt_result result);

/* Returns 1 when `index` is in `tried`. */
int sol_tried_has(const struct sol_tried *t, unsigned index);

#endif
