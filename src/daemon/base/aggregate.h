/*
 * aggregate.h - endpoints answered from the probe table, never by asking
 * nodes on the request path: /api/tags, /api/ps, /v1/models[/:model] (the
 * union over routable nodes), /api/health and /api/stats (the daemon and
 * its table). Fresh within one probe interval.
 */
#ifndef SOLLOL_AGGREGATE_H
#define SOLLOL_AGGREGATE_H

#include "base/auth.h"
#include "sollol/buf.h"
#include "base/node-t.h"
#include "base/node.h"
#include "base/routes.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* The bodies of the aggregated routes (admin.c serves them): each appends
 * a complete JSON document to out and returns 0, or -1 when memory runs
 * out. Models API key `key` may not use (its model globs, matched against
 * the listed name, the name without ":latest" and the canonical form) are
 * left out; NULL leaves out none. */
int sol_aggregate_tags(const struct sol_node_table *t, const struct sol_auth_key *key,
                       struct sol_buf *out);
int sol_aggregate_ps(const struct sol_node_table *t, const struct sol_auth_key *key,
                     struct sol_buf *out);
int sol_aggregate_v1_models(const struct sol_node_table *t, const struct sol_auth_key *key,
                            struct sol_buf *out);
/* Returns 1 and appends the model object when some routable node has
 * `model` (any spelling Ollama accepts) and `api_key` may use it; 0 else. */
int sol_aggregate_v1_model(const struct sol_node_table *t, const struct sol_auth_key *api_key,
                           const char *model, struct sol_buf *out);

/*
 * What a key sees of the daemon. A key with model globs ("restricted") is
 * shown only the models it may use, everywhere a model is named: the model
 * lists, /api/stats (each node's "models"), the dashboard's routing
 * decisions and /metrics' per-model series. Of nodes it sees names, states,
 * breakers, load and counters (which say nothing of other models), but
 * neither a node's URL nor its last error (which may name a model or an
 * address); of the sharded path's coordinator, its state, and its model
 * only when it may use it. Keys without globs see everything (the admin
 * flag is about routes, not models), as do callers of public paths and
 * every caller with keys off (key NULL).
 */
/* Nonzero when k (NULL: no restriction) may use the model a node lists as
 * `name`: its globs are tried on the name, on the name without ":latest"
 * and on the canonical form. */
int sol_model_visible(const struct sol_auth_key *k, const char *name);
/* Nonzero when k is restricted to some models (see above). */
int sol_key_restricted(const struct sol_auth_key *k);
/* Removes from the coordinator's status object (sol_coord_status_json)
 * what a restricted key may not see. No-op for an unrestricted key. */
void sol_aggregate_filter_rpc(cJSON *rpc, const struct sol_auth_key *key);

#endif
