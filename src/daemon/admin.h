/*
 * admin.h - the daemon's own answers: every route that reads no body
 * (sol_route_reads_body() is false), from "/" to /dashboard.
 *
 * daemon.c installs sol_admin_serve() as the daemon's serve_local hook;
 * request.c calls it through that hook and never names it, so the proxy
 * does not depend on what the daemon shows about itself.
 */
#ifndef SOLLOL_ADMIN_H
#define SOLLOL_ADMIN_H

#include "base/auth.h"
#include "base/routes.h"

#include <microhttpd.h>

struct sol_daemon;

/* Queues the answer for a local route (kinds ROOT, VERSION, TAGS, PS,
 * V1_MODELS, V1_MODEL, HEALTH, STATS, RPC_STATUS, METRICS, DASHBOARD,
 * DASHBOARD_DATA). `url` is the request path; `key` the caller's API key
 * (NULL when keys are off or the path is public): the model lists show
 * only models the key may use. Returns what MHD_queue_response() did. */
enum MHD_Result sol_admin_serve(struct sol_daemon *d, struct MHD_Connection *c,
                                const struct sol_route *route, const char *url,
                                const struct sol_auth_key *key);

#endif
