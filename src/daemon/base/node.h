/*
 * node.h - the functions of a node of the table (its types are node-t.h):
 * creation from the configuration, the model list, the predicates the
 * aggregated lists use. Who may write which field is node-t.h's rule.
 */
#ifndef SOLLOL_NODE_H
#define SOLLOL_NODE_H

#include "base/config.h"
#include "base/node-t.h"

#include <stddef.h>
#include <stdint.h>

/*
 * Creates a node from `nc` (strings copied) with nothing known of it
 * (down until probed). NULL when memory runs out. Used at start-up too.
 */
struct sol_node *sol_node_new(const struct sol_node_conf *nc);

/* Frees a node and everything it owns. Only when nothing refers to it:
 * at daemon teardown. */
void sol_node_free(struct sol_node *n);

/* Finds or adds the node's entry for a canonical model name (no cap: the
 * probes apply it). NULL when memory runs out. Entries move when the list
 * grows or is evicted: never keep a pointer across callbacks. */
struct sol_node_model *sol_node_model_get(struct sol_node *n, const char *canonical);

/* Drops the entries that are neither installed nor loaded and have no
 * request in flight; rebuilds the index. Returns how many were dropped. */
unsigned sol_node_models_evict(struct sol_node *n);

/* (Re)builds the model index of a list filled by hand (benchmarks, tests).
 * 0, or -1 (out of memory: lookups then scan). */
int sol_node_models_reindex(struct sol_node *n);

/* Frees a node's model list. */
void sol_node_models_free(struct sol_node *n);

/* A node whose facts the aggregated lists use: up, and not misconfigured. */
int sol_node_listable(const struct sol_node *n);

/*
 * The node's entry for the model with this key, or NULL: a lookup in the
 * node's model index (O(1)), or a scan when it has none; says nothing about
 * installed/loaded/gone. The pointer is valid until the next probe changes
 * the node's list: use it at once, never keep it across callbacks.
 * One multiply-shift of the (FNV) key picks the slot, then linear probing:
 * O(1) in the number of models the node lists (a node may list thousands,
 * health.h). Tables built without an index (tests) are scanned. Inline: the
 * scorer calls it for every node of every decision.
 */
static inline struct sol_node_model *sol_node_find_model(const struct sol_node *n, uint64_t key)
{
    struct sol_node_model *m = n->models;
    const struct sol_model_slot *ix = n->model_index;
    if (ix) {
        size_t mask = ((size_t)1 << n->index_bits) - 1;
        for (size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - n->index_bits));;
             i = (i + 1) & mask) {
            if (!ix[i].pos)
                return NULL;
            if (ix[i].key == key)
                return &m[ix[i].pos - 1];
        }
    }
    for (unsigned i = 0, c = n->n_models; i < c; i++)
        if (m[i].key == key)
            return &m[i];
    return NULL;
}

#endif
