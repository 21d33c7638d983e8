/*
 * reload.h - changes to a running daemon's node table and settings: nodes
 * joining (config reload, discovery) and leaving (reload, discovery aging),
 * and a reloaded configuration swapped in without dropping a request.
 *
 * Membership rules (what callers may rely on):
 *  - a struct sol_node is never freed while the daemon runs. A node that
 *    leaves is marked removed: down, unprobed, hidden from the aggregated
 *    endpoints, never picked again; requests, fan-out legs and embedding
 *    chunks already on it keep their pointer and finish there;
 *  - a node's identity (name, URL, headers) never changes. A node whose
 *    URL or headers change leaves and a new one joins under the same name;
 *    a node that comes back with the same identity takes its old slot back
 *    (with its learned speeds), so the table grows only with distinct
 *    identities;
 *  - node indices are stable; the table and its per-node arrays grow at the
 *    end, never in a callback that is iterating them (reloads run from the
 *    signal callback, discovery reports from its transfer completions).
 */
#ifndef SOLLOL_RELOAD_H
#define SOLLOL_RELOAD_H

#include "base/config.h"
#include "base/node-t.h"
#include "base/node.h"

#include <stddef.h>

struct sol_daemon;

/*
 * Adds `nc` to the running table (or revives the removed node of the same
 * identity) and starts probing it; `discovered` marks nodes found by a scan.
 * A live node of the same name must not exist (the caller resolves that).
 * Returns the node, or NULL when memory runs out (logged).
 */
struct sol_node *sol_daemon_node_join(struct sol_daemon *d, const struct sol_node_conf *nc,
                                      int discovered);

/*
 * Takes `n` out of service: no new request goes to it, its probes stop,
 * what it serves finishes. `why` is logged. Idempotent.
 */
void sol_daemon_node_leave(struct sol_daemon *d, struct sol_node *n, const char *why);

/* Logs "node X has left" for removed nodes whose last request ended.
 * Called from the daemon's sweep. */
void sol_daemon_nodes_drained(struct sol_daemon *d);

/*
 * Applies a freshly loaded configuration: nodes added, removed or changed,
 * limits, timeouts and tunables updated, API keys, public paths and rates
 * replaced (a removed key is refused at once, a kept key keeps its bucket),
 * discovery retargeted. limits.* that libmicrohttpd took at start
 * (max_connections, client_idle_timeout_ms, and raising the URL/header
 * sizes or the per-client connections beyond their start values) keep
 * their running values, with a warning each. Keys that
 * need a restart (listen, queue.max_length, affinity.capacity, demo,
 * demo_nodes, sim_path) keep their running values, with a warning each.
 * Takes ownership of `cfg` (its contents move into d->cfg, whose address
 * does not change; the struct itself is freed). Never fails once the
 * config has loaded: a node that cannot be added for lack of memory is
 * logged and left out.
 */
void sol_daemon_apply_config(struct sol_daemon *d, struct sol_config *cfg);

/* The limits.* settings of cfg as limits.c takes them (start and reload). */
struct sol_limits_conf;
void sol_daemon_limits_conf(const struct sol_config *cfg, struct sol_limits_conf *lc);

/* Nodes in service (not removed) and those of them that are up. */
void sol_daemon_node_counts(const struct sol_daemon *d, unsigned *up, unsigned *total);

/* (Re)starts, retargets or idles discovery after d->cfg changed; found
 * nodes join, vanished ones leave (above). */
void sol_daemon_discovery_update(struct sol_daemon *d);

#endif
