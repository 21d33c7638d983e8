/*
 * reload.c - nodes joining and leaving a running daemon, and reloaded
 * configurations (see reload.h).
 */
#include "reload.h"

#include "base/auth.h"
#include "base/breaker.h"
#include "daemon-t.h"
#include "nodes/health.h"
#include "sollol/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Same name, URL and outbound headers: the same node. */
static int same_identity(const struct sol_node *n, const struct sol_node_conf *nc)
{
    if (strcmp(n->name, nc->name) != 0 || strcmp(n->base_url, nc->base_url) != 0)
        return 0;
    const struct curl_slist *h = n->headers ? n->headers->next : NULL; /* after Host: */
    for (size_t i = 0; i < nc->n_headers; i++, h = h->next)
        if (!h || strcmp(h->data, nc->header_lines[i]) != 0)
            return 0;
    return h == NULL;
}

static int grow_table(struct sol_daemon *d)
{
    if (d->table.count < d->table_cap)
        return 0;
    unsigned cap = d->table_cap ? d->table_cap * 2 : 8;
    struct sol_node **nodes = realloc(d->table.nodes, cap * sizeof *nodes);
    if (!nodes)
        return -1;
    d->table.nodes = nodes;
    uint64_t *ids = realloc(d->node_ids, cap * sizeof *ids);
    if (!ids)
        return -1;
    d->node_ids = ids;
    unsigned char *el = realloc(d->eligible, cap);
    if (!el)
        return -1;
    d->eligible = el;
    unsigned *res = realloc(d->reserved, cap * sizeof *res);
    if (!res)
        return -1;
    memset(res + d->table_cap, 0, (cap - d->table_cap) * sizeof *res);
    d->reserved = res;
    d->table_cap = cap;
    return 0;
}

struct sol_node *sol_daemon_node_join(struct sol_daemon *d, const struct sol_node_conf *nc,
                                      int discovered)
{
    struct sol_node *n = NULL;
    for (unsigned i = 0; i < d->table.count && !n; i++)
        if (d->table.nodes[i]->removed && same_identity(d->table.nodes[i], nc))
            n = d->table.nodes[i];
    if (n) {
        /* Back with the same identity: its slot, learned speeds and
         * breaker history are still right. State stays down until a probe
         * answers (sol_health_forget made its probes due). */
        n->removed = 0;
        n->left_logged = 0;
        n->last_error[0] = '\0';
    } else {
        if (grow_table(d) < 0 || !(n = sol_node_new(nc))) {
            SOL_ERROR("node %s (%s): out of memory, not added", nc->name, nc->base_url);
            return NULL;
        }
        n->index = d->table.count;
        d->node_ids[n->index] = sol_affinity_node_id(n->base_url);
        d->reserved[n->index] = 0;
        d->eligible[n->index] = 0;
        d->table.nodes[d->table.count++] = n;
    }
    n->discovered = discovered ? 1 : 0;
    n->max_concurrent = (unsigned)nc->max_concurrent;
    n->weight = nc->weight;
    if (d->health_running && sol_health_sync(&d->health) < 0)
        SOL_ERROR("node %s: out of memory for its probes; it stays down", n->name);
    SOL_INFO("node %s (%s) joins%s", n->name, n->base_url, discovered ? " (discovered)" : "");
    return n;
}

void sol_daemon_node_leave(struct sol_daemon *d, struct sol_node *n, const char *why)
{
    if (n->removed)
        return;
    n->removed = 1;
    n->state = SOL_NODE_DOWN;
    snprintf(n->last_error, sizeof n->last_error, "removed: %s", why);
    /* Nothing it listed may attract a request any more (the "model not
     * found anywhere" answers must not count it either); learned speeds
     * stay for a return. */
    for (unsigned i = 0; i < n->n_models; i++)
        n->models[i].installed = n->models[i].loaded = 0;
    if (d->health_running)
        sol_health_forget(&d->health, n);
    if (n->in_flight) {
        SOL_INFO("node %s leaves (%s); its %u request(s) in flight finish there first", n->name,
                 why, n->in_flight);
    } else {
        SOL_INFO("node %s has left (%s)", n->name, why);
        n->left_logged = 1;
    }
}

void sol_daemon_nodes_drained(struct sol_daemon *d)
{
    for (unsigned i = 0; i < d->table.count; i++) {
        struct sol_node *n = d->table.nodes[i];
        if (n->removed && !n->left_logged && n->in_flight == 0) {
            n->left_logged = 1;
            SOL_INFO("node %s has left: its last request ended", n->name);
        }
    }
}

void sol_daemon_node_counts(const struct sol_daemon *d, unsigned *up, unsigned *total)
{
    unsigned u = 0, t = 0;
    for (unsigned i = 0; i < d->table.count; i++) {
        const struct sol_node *n = d->table.nodes[i];
        if (n->removed)
            continue;
        t++;
        u += n->state == SOL_NODE_UP;
    }
    *up = u;
    *total = t;
}

static struct sol_node *live_by_name(struct sol_daemon *d, const char *name)
{
    for (unsigned i = 0; i < d->table.count; i++)
        if (!d->table.nodes[i]->removed && strcmp(d->table.nodes[i]->name, name) == 0)
            return d->table.nodes[i];
    return NULL;
}

static struct sol_node *live_by_url(struct sol_daemon *d, const char *url)
{
    for (unsigned i = 0; i < d->table.count; i++)
        if (!d->table.nodes[i]->removed && strcmp(d->table.nodes[i]->base_url, url) == 0)
            return d->table.nodes[i];
    return NULL;
}

static void warn_restart_only(const char *key)
{
    SOL_WARN("reload: %s: needs a restart; unchanged", key);
}

/* Keys only a restart can change: keep the running value, say so. */
static void keep_running(struct sol_config *next, const struct sol_config *cur)
{
    if (strcmp(next->listen ? next->listen : "", cur->listen ? cur->listen : "") != 0)
        SOL_WARN("reload: listen: changing the address needs a restart; still on %s", cur->listen);
    char *tmp = next->listen;
    next->listen = cur->listen ? strdup(cur->listen) : NULL;
    if (cur->listen && !next->listen)
        next->listen = tmp; /* out of memory: the value is informative only */
    else
        free(tmp);
    tmp = next->listen_host;
    next->listen_host = cur->listen_host ? strdup(cur->listen_host) : NULL;
    if (cur->listen_host && !next->listen_host)
        next->listen_host = tmp;
    else
        free(tmp);
    next->listen_port = cur->listen_port;
    if (next->queue_max_length != cur->queue_max_length)
        SOL_WARN("reload: queue.max_length: needs a restart; still %d", cur->queue_max_length);
    next->queue_max_length = cur->queue_max_length;
    if (next->affinity_capacity != cur->affinity_capacity)
        SOL_WARN("reload: affinity.capacity: needs a restart; still %d", cur->affinity_capacity);
    next->affinity_capacity = cur->affinity_capacity;
    if (next->demo != cur->demo || next->demo_nodes != cur->demo_nodes)
        SOL_WARN("reload: demo, demo_nodes: need a restart; unchanged");
    next->demo = cur->demo;
    next->demo_nodes = cur->demo_nodes;
    /* The sharded path (coordinator.c) was planned from these at start:
     * its backends, models and launch line. */
    static const char *const sharding[] = {
        "model_sharding_enabled", "rpc_",        "sharded_models",
        "sharding_auto",          "model_paths", "local_rpc_servers",
        "llama_server.",          NULL};
    if (sol_config_keep_keys(next, cur, sharding, warn_restart_only) < 0)
        SOL_ERROR("reload: out of memory keeping the sharding settings");
}

void sol_daemon_limits_conf(const struct sol_config *cfg, struct sol_limits_conf *lc)
{
    memset(lc, 0, sizeof *lc);
    lc->max_url_bytes = cfg->max_url_bytes;
    lc->max_header_bytes = cfg->max_header_bytes;
    lc->max_per_client = (unsigned)cfg->max_connections_per_client;
    lc->header_timeout_ms = cfg->header_timeout_ms;
    lc->idle_timeout_ms = cfg->client_idle_timeout_ms;
    lc->body_budget_bytes = cfg->max_body_total_bytes;
    lc->body_budget_per_client = cfg->max_body_bytes_per_client;
    lc->min_body_rate = cfg->min_body_bytes_per_s > 0xffffffffull
                            ? 0xffffffffu
                            : (unsigned)cfg->min_body_bytes_per_s;
    lc->body_grace_ms = cfg->body_grace_ms;
    char why[128];
    const char *r = cfg->auth_failures_per_client;
    if (r && *r &&
        sol_auth_parse_rate(r, &lc->auth_fail_per_ms, &lc->auth_fail_burst, why, sizeof why) < 0)
        lc->auth_fail_per_ms = lc->auth_fail_burst = 0; /* validated at load: not reached */
}

/*
 * limits.*: libmicrohttpd was started with some of them (its connection
 * limit, idle timeout, per-address backstop and buffer size), which only a
 * restart changes; the rest are read by limits.c at each use.
 */
static void apply_limits(struct sol_daemon *d, struct sol_config *next,
                         const struct sol_config *cur)
{
    if (next->max_connections != cur->max_connections)
        SOL_WARN("reload: limits.max_connections: needs a restart; still %d", cur->max_connections);
    next->max_connections = cur->max_connections;
    if (next->client_idle_timeout_ms != cur->client_idle_timeout_ms)
        SOL_WARN("reload: limits.client_idle_timeout_ms: needs a restart; still %u ms",
                 cur->client_idle_timeout_ms);
    next->client_idle_timeout_ms = cur->client_idle_timeout_ms;
    struct sol_limits_conf lc;
    sol_daemon_limits_conf(next, &lc);
    struct sol_limits probe = {.conf = lc};
    if (sol_limits_mhd_pool(&probe) > d->limits.mhd_pool) {
        SOL_WARN("reload: limits.max_url_bytes, limits.max_header_bytes: raising them beyond "
                 "%zu bytes together needs a restart; still %llu and %llu",
                 d->limits.mhd_pool, cur->max_url_bytes, cur->max_header_bytes);
        next->max_url_bytes = cur->max_url_bytes;
        next->max_header_bytes = cur->max_header_bytes;
    }
    unsigned per_ip = sol_limits_mhd_per_ip(&probe);
    if (d->limits.mhd_per_ip && (per_ip == 0 || per_ip > d->limits.mhd_per_ip)) {
        SOL_WARN("reload: limits.max_connections_per_client: raising it beyond %u needs a "
                 "restart; still %d",
                 d->limits.mhd_per_ip / 2, cur->max_connections_per_client);
        next->max_connections_per_client = cur->max_connections_per_client;
    }
    sol_daemon_limits_conf(next, &lc);
    sol_limits_set_conf(&d->limits, &lc);
}

/* auth.*: keys (and the keys file, read again), public paths and rates. */
static void apply_auth(struct sol_daemon *d, const struct sol_config *next)
{
    struct sol_auth a;
    char err[512];
    if (sol_auth_init(&a, next->auth_keys, next->auth_keys_file, next->auth_public, err,
                      sizeof err) < 0) {
        sol_auth_free(&a);
        SOL_WARN("reload: auth: %s; the running keys stay in force", err);
        return;
    }
    int was_on = sol_auth_enabled(&d->auth);
    unsigned added = 0, removed = 0, kept = 0;
    if (sol_auth_replace(&d->auth, &a, &added, &removed, &kept) < 0) {
        sol_auth_free(&a);
        SOL_ERROR("reload: auth: out of memory; the running keys stay in force");
        return;
    }
    sol_auth_free(&a);
    if (added || removed || was_on != sol_auth_enabled(&d->auth))
        SOL_INFO("reload: auth: %zu key(s) in force (%u added, %u removed, %u kept)%s",
                 d->auth.n_keys, added, removed, kept,
                 sol_auth_enabled(&d->auth) ? "" : ": no key left, access is open to all");
}

/* Membership: config nodes gone by name leave; the new list joins or is
 * updated in place. */
static void apply_nodes(struct sol_daemon *d, const struct sol_config *next)
{
    for (unsigned i = 0; i < d->table.count; i++) {
        struct sol_node *n = d->table.nodes[i];
        if (n->removed || n->discovered || n->external)
            continue;
        int kept = 0;
        for (size_t j = 0; j < next->n_nodes && !kept; j++)
            kept = strcmp(next->nodes[j].name, n->name) == 0;
        if (!kept)
            sol_daemon_node_leave(d, n, "no longer in the configuration");
    }
    for (size_t j = 0; j < next->n_nodes; j++) {
        const struct sol_node_conf *nc = &next->nodes[j];
        struct sol_node *n = live_by_name(d, nc->name);
        if (n && n->discovered && same_identity(n, nc)) {
            /* Found by a scan, now configured: the same node, kept as it is
             * (no gap in service); discovery no longer ages it out. */
            SOL_INFO("node %s: now a configured node", n->name);
            n->discovered = 0;
        }
        if (n && !n->discovered && same_identity(n, nc)) {
            if (n->max_concurrent != (unsigned)nc->max_concurrent || n->weight != nc->weight)
                SOL_INFO("node %s: max_concurrent %u -> %d, weight %g -> %g", n->name,
                         n->max_concurrent, nc->max_concurrent, n->weight, nc->weight);
            /* Plain numbers read at each decision: a lower limit lets the
             * requests above it finish and takes no new one meanwhile. */
            n->max_concurrent = (unsigned)nc->max_concurrent;
            n->weight = nc->weight;
            continue;
        }
        if (n)
            sol_daemon_node_leave(
                d, n, n->discovered ? "now a configured node" : "its URL or headers changed");
        /* A discovered node at the same address gives way to the configured one. */
        struct sol_node *found = live_by_url(d, nc->base_url);
        if (found && found->discovered)
            sol_daemon_node_leave(d, found, "now a configured node");
        sol_daemon_node_join(d, nc, 0);
    }
}

void sol_daemon_apply_config(struct sol_daemon *d, struct sol_config *next)
{
    struct sol_config *cur = d->cfg;
    keep_running(next, cur);
    if (cur->demo) {
        /* Demo mode's nodes are the simulators it started, not the file's. */
        SOL_INFO("reload: demo mode keeps its simulated nodes");
    } else {
        apply_nodes(d, next);
    }

    /* Tunables read from d->cfg at use time (timeouts, limits, retry
     * deadline) change with the swap below; copies held elsewhere are
     * updated here. */
    apply_limits(d, next, cur);
    apply_auth(d, next);
    d->max_attempts = (unsigned)next->max_attempts;
    d->balancer.mode = next->routing_mode;
    struct sol_scorer_conf sc = {
        .default_gen_tps = next->default_gen_tps,
        .default_prompt_tps = next->default_prompt_tps,
        .default_load_ms = next->default_load_ms,
        .typical_predict = next->typical_predict,
        .affinity_prompt_fraction = next->affinity_prompt_fraction,
    };
    uint64_t rng = d->balancer.scorer.rng;
    sol_scorer_init(&d->balancer.scorer, &sc, rng);
    d->balancer.breaker = (struct sol_breaker_conf){
        .failure_threshold = (unsigned)next->breaker_failure_threshold,
        .error_rate = next->breaker_error_rate,
        .min_requests = (unsigned)next->breaker_min_requests,
        .window_ms = next->breaker_window_ms,
        .cooldown_min_ms = next->breaker_cooldown_min_ms,
        .cooldown_max_ms = next->breaker_cooldown_max_ms,
    };
    d->queue.conf.max_wait_ms = next->queue_max_wait_ms;
    d->queue.conf.aging_ms = next->queue_aging_ms;
    d->health.conf.probe_interval_ms = next->probe_interval_ms;
    d->health.conf.tags_interval_ms = next->tags_interval_ms;
    d->health.conf.max_models_per_node = (unsigned)next->max_models_per_node;
    d->health.conf.probe_timeout_ms = next->probe_timeout_ms;
    sol_log_set_level((enum sol_log_level)next->log_level);
    sol_log_set_json(next->log_format_json);

    /* Swap contents, not the pointer: the demo keeps the struct's address. */
    if (cur->demo) {
        struct sol_node_conf *nodes = next->nodes;
        size_t n_nodes = next->n_nodes;
        next->nodes = cur->nodes;
        next->n_nodes = cur->n_nodes;
        cur->nodes = nodes;
        cur->n_nodes = n_nodes;
    }
    sol_config_free(cur);
    *cur = *next;
    free(next);
    sol_daemon_discovery_update(d);
}

/* ---- discovery ---------------------------------------------------------- */

static void on_discovered(void *ud, const char *url, const char *version)
{
    struct sol_daemon *d = ud;
    for (unsigned i = 0; i < d->table.count; i++) {
        const struct sol_node *n = d->table.nodes[i];
        if (!n->removed && strcmp(n->base_url, url) == 0)
            return; /* configured, or found before */
    }
    struct sol_config tmp;
    char err[256];
    if (sol_config_defaults(&tmp, err, sizeof err) < 0 ||
        sol_config_add_node(&tmp, NULL, url, err, sizeof err) < 0) {
        SOL_WARN("discovery: %s: %s", url, err);
        sol_config_free(&tmp);
        return;
    }
    /* Named by address; a configured node may already use that name. */
    struct sol_node_conf *nc = &tmp.nodes[0];
    for (unsigned i = 0; i < d->table.count; i++)
        if (!d->table.nodes[i]->removed && strcmp(d->table.nodes[i]->name, nc->name) == 0) {
            SOL_WARN("discovery: %s answers like Ollama %s but its name %s is taken", url, version,
                     nc->name);
            sol_config_free(&tmp);
            return;
        }
    SOL_INFO("discovery: %s answers like Ollama %s", url, version);
    sol_daemon_node_join(d, nc, 1);
    sol_config_free(&tmp);
}

static void on_vanished(void *ud, const char *url)
{
    struct sol_daemon *d = ud;
    for (unsigned i = 0; i < d->table.count; i++) {
        struct sol_node *n = d->table.nodes[i];
        if (!n->removed && n->discovered && strcmp(n->base_url, url) == 0)
            sol_daemon_node_leave(d, n, "missed by the last discovery scans");
    }
}

void sol_daemon_discovery_update(struct sol_daemon *d)
{
    const struct sol_config *cfg = d->cfg;
    struct sol_discovery_targets targets;
    char why[256];
    if (sol_discovery_parse(cfg->discovery_cidrs, cfg->discovery_port, &targets, why, sizeof why) <
        0) {
        /* The config loader validated the syntax; only memory can fail. */
        SOL_ERROR("discovery: %s", why);
        return;
    }
    struct sol_discovery_conf dc = {.interval_ms = cfg->discovery_interval_ms,
                                    .timeout_ms = cfg->discovery_timeout_ms,
                                    .concurrency = (unsigned)cfg->discovery_concurrency,
                                    .max_missed = (unsigned)cfg->discovery_max_missed};
    if (d->discovery_running) {
        /* Empty targets keep it ticking, so what it found ages out. */
        sol_discovery_reconfigure(&d->discovery, &targets, &dc);
    } else if (targets.n) {
        if (sol_discovery_start(&d->discovery, d->loop, &d->curl, &targets, &dc, on_discovered,
                                on_vanished, d) < 0) {
            SOL_ERROR("discovery: out of memory; not scanning");
        } else {
            d->discovery_running = 1;
            d->handles_open++; /* its timer */
            SOL_INFO("discovery: scanning %u address(es) every %u ms", d->discovery.targets.hosts,
                     dc.interval_ms);
        }
    }
    sol_discovery_targets_free(&targets);
}
