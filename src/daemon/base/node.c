/*
 * node.c - a node of the table: created from its configuration, its model
 * list, freed (see node.h).
 */
#include "base/node.h"

#include "base/breaker.h"
#include "base/model_name.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sol_node *sol_node_new(const struct sol_node_conf *nc)
{
    struct sol_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->name = strdup(nc->name);
    n->base_url = strdup(nc->base_url);
    size_t hl = strlen(nc->host_header) + 7;
    n->host_header = malloc(hl);
    if (!n->name || !n->base_url || !n->host_header)
        goto oom;
    snprintf(n->host_header, hl, "Host: %s", nc->host_header);
    n->headers = curl_slist_append(NULL, n->host_header);
    for (size_t h = 0; h < nc->n_headers && n->headers; h++)
        n->headers = curl_slist_append(n->headers, nc->header_lines[h]);
    if (!n->headers)
        goto oom;
    n->max_concurrent = (unsigned)nc->max_concurrent;
    n->weight = nc->weight;
    /* Down until its first probe answers: nothing is known of it yet. */
    n->state = SOL_NODE_DOWN;
    sol_breaker_init(&n->breaker);
    return n;
oom:
    sol_node_free(n);
    return NULL;
}

void sol_node_free(struct sol_node *n)
{
    if (!n)
        return;
    sol_node_models_free(n);
    free(n->running_eta);
    free(n->name);
    free(n->base_url);
    free(n->host_header);
    curl_slist_free_all(n->headers);
    free(n);
}

static size_t slot_of(uint64_t key, unsigned bits)
{
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - bits)); /* as sol_node_find_model */
}

static void index_put(struct sol_model_slot *ix, unsigned bits, uint64_t key, unsigned pos)
{
    size_t mask = ((size_t)1 << bits) - 1;
    size_t i = slot_of(key, bits);
    while (ix[i].pos)
        i = (i + 1) & mask;
    ix[i].key = key;
    ix[i].pos = pos + 1;
}

/* Rebuilds the index for cap_models entries (at least twice as many slots,
 * so probes stay short). 0, or -1 (out of memory; the old index is kept
 * and stays right for the entries it had). */
static int index_rebuild(struct sol_node *n)
{
    unsigned bits = 4;
    size_t want = (size_t)(n->cap_models > n->n_models ? n->cap_models : n->n_models) * 2;
    while (((size_t)1 << bits) < want)
        bits++;
    struct sol_model_slot *ix = calloc((size_t)1 << bits, sizeof *ix);
    if (!ix)
        return -1;
    for (unsigned i = 0; i < n->n_models; i++)
        index_put(ix, bits, n->models[i].key, i);
    free(n->model_index);
    n->model_index = ix;
    n->index_bits = bits;
    return 0;
}

int sol_node_models_reindex(struct sol_node *n)
{
    return index_rebuild(n);
}

struct sol_node_model *sol_node_model_get(struct sol_node *n, const char *canonical)
{
    uint64_t key = sol_model_key(canonical);
    struct sol_node_model *m = sol_node_find_model(n, key);
    if (m)
        return m;
    if (n->n_models == n->cap_models || !n->model_index) {
        unsigned cap = n->n_models < n->cap_models ? n->cap_models
                       : n->cap_models             ? n->cap_models * 2
                                                   : 8;
        struct sol_node_model *p = realloc(n->models, cap * sizeof *p);
        if (!p)
            return NULL;
        n->models = p;
        unsigned old = n->cap_models;
        n->cap_models = cap;
        if (index_rebuild(n) < 0) {
            n->cap_models = old > n->n_models ? old : n->n_models;
            return NULL;
        }
    }
    index_put(n->model_index, n->index_bits, key, n->n_models);
    m = &n->models[n->n_models++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", canonical);
    m->key = key;
    return m;
}

unsigned sol_node_models_evict(struct sol_node *n)
{
    unsigned kept = 0;
    for (unsigned i = 0; i < n->n_models; i++) {
        struct sol_node_model *m = &n->models[i];
        if (m->installed || m->loaded || m->in_flight) {
            if (kept != i)
                n->models[kept] = *m;
            kept++;
            continue;
        }
        free(m->tags_entry);
        free(m->ps_entry);
    }
    unsigned dropped = n->n_models - kept;
    if (!dropped)
        return 0;
    n->n_models = kept;
    if (index_rebuild(n) < 0) {
        /* Without a right index, lookups fall back to scanning models[]. */
        free(n->model_index);
        n->model_index = NULL;
    }
    return dropped;
}

void sol_node_models_free(struct sol_node *n)
{
    for (unsigned i = 0; i < n->n_models; i++) {
        free(n->models[i].tags_entry);
        free(n->models[i].ps_entry);
    }
    free(n->models);
    free(n->model_index);
    n->models = NULL;
    n->model_index = NULL;
    n->index_bits = 0;
    n->n_models = n->cap_models = 0;
}

int sol_node_listable(const struct sol_node *n)
{
    return n->state == SOL_NODE_UP;
}
