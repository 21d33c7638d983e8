/*
 * test_reload.c - node table membership on a daemon object without a loop:
 * joins grow the table with stable indices and pointers, leaves keep the
 * node (down, hidden) for whoever still points at it, a return with the
 * same identity revives the old slot, and a reloaded config adds, removes,
 * updates and replaces nodes and keeps restart-only keys.
 */
#include "check.h"
#include "daemon.h"
#include "reload.h"

#include <stdlib.h>
#include <string.h>

static struct sol_config *config_with(const char *const *specs, size_t n)
{
    struct sol_config *cfg = calloc(1, sizeof *cfg);
    char err[256];
    if (sol_config_defaults(cfg, err, sizeof err) < 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        /* "name=url" */
        char name[64];
        const char *eq = strchr(specs[i], '=');
        snprintf(name, sizeof name, "%.*s", (int)(eq - specs[i]), specs[i]);
        if (sol_config_add_node(cfg, name, eq + 1, err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            return NULL;
        }
    }
    return cfg;
}

static struct sol_node *by_name(struct sol_daemon *d, const char *name)
{
    for (unsigned i = 0; i < d->table.count; i++)
        if (!d->table.nodes[i]->removed && strcmp(d->table.nodes[i]->name, name) == 0)
            return d->table.nodes[i];
    return NULL;
}

static void test_join_leave(struct sol_daemon *d)
{
    struct sol_node *first = NULL;
    for (int i = 0; i < 20; i++) { /* past the initial capacity of 8 */
        char spec[64];
        snprintf(spec, sizeof spec, "n%d=http://10.0.0.%d:11434", i, i + 1);
        const char *specs[] = {spec};
        struct sol_config *one = config_with(specs, 1);
        struct sol_node *n = sol_daemon_node_join(d, &one->nodes[0], 0);
        CHECK(n && n->index == (unsigned)i && d->table.nodes[i] == n, "join %d", i);
        CHECK(n && n->state == SOL_NODE_DOWN, "down until probed");
        CHECK(d->node_ids[i] == sol_affinity_node_id(n->base_url), "affinity id");
        if (i == 0)
            first = n;
        sol_config_free(one);
        free(one);
    }
    CHECK(d->table.count == 20 && d->table_cap >= 20, "count %u cap %u", d->table.count,
          d->table_cap);
    CHECK(d->table.nodes[0] == first, "pointers stable across growth");

    unsigned up, total;
    first->state = SOL_NODE_UP;
    first->in_flight = 2; /* two requests still stream through it */
    sol_daemon_node_leave(d, first, "test");
    CHECK(first->removed && first->state == SOL_NODE_DOWN, "removed and down");
    CHECK(!first->left_logged, "not left while serving");
    sol_daemon_node_counts(d, &up, &total);
    CHECK(total == 19 && up == 0, "counts %u/%u", up, total);
    first->in_flight = 0;
    sol_daemon_nodes_drained(d);
    CHECK(first->left_logged, "left once drained");

    /* Back with the same identity: the same slot. */
    const char *same[] = {"n0=http://10.0.0.1:11434"};
    struct sol_config *c = config_with(same, 1);
    struct sol_node *back = sol_daemon_node_join(d, &c->nodes[0], 0);
    CHECK(back == first && !back->removed && d->table.count == 20, "revived in place");
    sol_config_free(c);
    free(c);

    /* Same name, another URL: a new node; the old one stays for its
     * requests. */
    sol_daemon_node_leave(d, first, "test");
    const char *moved[] = {"n0=http://10.0.9.9:11434"};
    c = config_with(moved, 1);
    struct sol_node *other = sol_daemon_node_join(d, &c->nodes[0], 0);
    CHECK(other && other != first && other->index == 20, "new slot");
    CHECK(first->removed, "old one still removed");
    sol_config_free(c);
    free(c);
}

static void test_apply(struct sol_daemon *d)
{
    /* Running: a, b, c (c with an extra header). */
    const char *start[] = {"a=http://10.1.0.1:11434", "b=http://10.1.0.2:11434",
                           "c=http://10.1.0.3:11434"};
    d->cfg = config_with(start, 3);
    for (int i = 0; i < 3; i++)
        sol_daemon_node_join(d, &d->cfg->nodes[i], 0);
    struct sol_node *a = by_name(d, "a"), *b = by_name(d, "b"), *c = by_name(d, "c");
    b->in_flight = 1;
    unsigned count0 = d->table.count;

    /* New: a with max_concurrent 9, c at a new address, d added, b gone;
     * listen and queue.max_length changed (restart-only). */
    const char *next_specs[] = {"a=http://10.1.0.1:11434", "c=http://10.1.0.33:11434",
                                "d=http://10.1.0.4:11434"};
    struct sol_config *next = config_with(next_specs, 3);
    next->nodes[0].max_concurrent = 9;
    next->nodes[0].weight = 2.5;
    free(next->listen);
    next->listen = strdup("0.0.0.0:9999");
    next->queue_max_length = d->cfg->queue_max_length + 1;
    int old_qmax = d->cfg->queue_max_length;
    next->idle_timeout_ms = 4242;
    /* the sharded path's settings are restart-only */
    int old_ctx = d->cfg->llama_ctx_size;
    next->llama_ctx_size = old_ctx * 2;
    free(next->llama_extra_args);
    next->llama_extra_args = strdup("--flash-attn");
    char *old_extra = d->cfg->llama_extra_args ? strdup(d->cfg->llama_extra_args) : NULL;
    next->max_attempts = 5;
    struct sol_config *cfg_addr = d->cfg;
    sol_daemon_apply_config(d, next);

    CHECK(d->cfg == cfg_addr, "the config struct keeps its address");
    CHECK(d->cfg->llama_ctx_size == old_ctx, "llama_server.ctx_size kept");
    CHECK((!old_extra && !d->cfg->llama_extra_args) ||
              (old_extra && d->cfg->llama_extra_args &&
               strcmp(old_extra, d->cfg->llama_extra_args) == 0),
          "llama_server.extra_args kept");
    free(old_extra);
    CHECK(by_name(d, "a") == a && a->max_concurrent == 9 && a->weight == 2.5, "a updated in place");
    CHECK(b->removed && b->in_flight == 1 && !by_name(d, "b"), "b leaves, still serving");
    CHECK(c->removed, "old c leaves");
    struct sol_node *c2 = by_name(d, "c");
    CHECK(c2 && c2 != c && strcmp(c2->base_url, "http://10.1.0.33:11434") == 0, "new c");
    CHECK(by_name(d, "d") != NULL, "d joins");
    CHECK(d->table.count == count0 + 2, "two new slots (c, d), got %u", d->table.count - count0);
    CHECK(strcmp(d->cfg->listen, "127.0.0.1:11434") == 0, "listen kept: %s", d->cfg->listen);
    CHECK(d->cfg->queue_max_length == old_qmax, "queue.max_length kept");
    CHECK(d->cfg->idle_timeout_ms == 4242, "timeouts applied");
    CHECK(d->max_attempts == 5, "max_attempts applied");
    unsigned up, total;
    sol_daemon_node_counts(d, &up, &total);
    CHECK(total == 3, "a, c, d in service (%u)", total);

    /* b returns: its old slot, still serving its request. */
    const char *again[] = {"a=http://10.1.0.1:11434", "b=http://10.1.0.2:11434",
                           "c=http://10.1.0.33:11434", "d=http://10.1.0.4:11434"};
    unsigned before = d->table.count;
    sol_daemon_apply_config(d, config_with(again, 4));
    CHECK(by_name(d, "b") == b && b->in_flight == 1 && d->table.count == before,
          "b revived in place");
}

int main(void)
{
    struct sol_daemon d;
    memset(&d, 0, sizeof d);
    /* What sol_daemon_start sets up for membership: an empty table. */
    struct sol_config *cfg = config_with(NULL, 0);
    d.cfg = cfg;
    test_join_leave(&d);
    /* Start over for the config test. */
    for (unsigned i = 0; i < d.table.count; i++)
        sol_node_free(d.table.nodes[i]);
    d.table.count = 0;
    sol_config_free(d.cfg);
    free(d.cfg);
    d.cfg = NULL;
    test_apply(&d);
    sol_daemon_free(&d);
    return check_summary();
}
