/*
 * node.h - the functions of a node of the table (its types are node-t.h):
 * creation from the configuration, the model list, the predicates the
 * aggregated lists use. Who may write which field is node-t.h's rule.
 */
#ifndef SOLLOL_NODE_H
#define SOLLOL_NODE_H

#include "base/config.h"
#include "base/node-t.h"

#include <stdint.h>

/*
 * Creates a node from `nc` (strings copied) with nothing known of it
 * (down until probed). NULL when memory runs out. Used at start-up too.
 */
struct sol_node *sol_node_new(const struct sol_node_conf *nc);

/* Frees a node and everything it owns. Only when nothing refers to it:
 * at daemon teardown. */
void sol_node_free(struct sol_node *n);

/* Finds or adds the node's entry for a canonical model name. NULL when
 * memory runs out. Entries are never removed (they keep learned speeds). */
struct sol_node_model *sol_node_model_get(struct sol_node *n, const char *canonical);

/* Frees a node's model list. */
void sol_node_models_free(struct sol_node *n);

/* A node whose facts the aggregated lists use: up, and not misconfigured. */
int sol_node_listable(const struct sol_node *n);

/*
 * The node's entry for the model with this key, or NULL. Linear scan
 * comparing 64-bit keys only; says nothing about installed/loaded/gone.
 * Inline: the scorer calls it for every node of every decision.
 * Stops at the match: every entry's key sits on its own cache line (the
 * entries are ~430 bytes), so lines not touched matter more than the one
 * mispredicted loop exit (measured: ~20% faster than a branch-free scan of
 * all entries at 64 nodes x 8 models).
 */
static inline struct sol_node_model *sol_node_find_model(const struct sol_node *n, uint64_t key)
{
    struct sol_node_model *m = n->models;
    const uint64_t *k = n->model_keys;
    if (k) {
        for (unsigned i = 0, c = n->n_models; i < c; i++)
            if (k[i] == key)
                return &m[i];
        return NULL;
    }
    for (unsigned i = 0, c = n->n_models; i < c; i++)
        if (m[i].key == key)
            return &m[i];
    return NULL;
}

#endif
