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

#include <stdint.h>

/* The bodies of the aggregated routes (admin.c serves them): each appends
 * a complete JSON document to out and returns 0, or -1 when memory runs out. Models API key `key`
 * may not use (its model globs, matched against the listed name, the name without
 * ":latest" and the canonical form) are left out; NULL leaves out none. */
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

#endif
