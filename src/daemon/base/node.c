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

struct sol_node_model *sol_node_model_get(struct sol_node *n, const char *canonical)
{
    uint64_t key = sol_model_key(canonical);
    struct sol_node_model *m = sol_node_find_model(n, key);
    if (m)
        return m;
    if (n->n_models == n->cap_models) {
        unsigned cap = n->cap_models ? n->cap_models * 2 : 8;
        uint64_t *keys = realloc(n->model_keys, cap * sizeof *keys);
        if (!keys)
            return NULL;
        n->model_keys = keys;
        struct sol_node_model *p = realloc(n->models, cap * sizeof *p);
        if (!p)
            return NULL;
        n->models = p;
        n->cap_models = cap;
    }
    n->model_keys[n->n_models] = key;
    m = &n->models[n->n_models++];
    memset(m, 0, sizeof *m);
    snprintf(m->name, sizeof m->name, "%s", canonical);
    m->key = key;
    return m;
}

void sol_node_models_free(struct sol_node *n)
{
    for (unsigned i = 0; i < n->n_models; i++) {
        free(n->models[i].tags_entry);
        free(n->models[i].ps_entry);
    }
    free(n->models);
    free(n->model_keys);
    n->models = NULL;
    n->model_keys = NULL;
    n->n_models = n->cap_models = 0;
}

int sol_node_listable(const struct sol_node *n)
{
    return n->state == SOL_NODE_UP;
}
