/*
 * fanout.h - requests sent to several nodes at once (/api/pull,
 * /api/delete, /api/copy): one leg per routable node, progress lines
 * merged, one answer. A request kind (request_priv.h).
 */
#ifndef SOLLOL_FANOUT_H
#define SOLLOL_FANOUT_H

struct sol_request;
struct sol_req_kind;

/* take: SOL_ROUTE_FANOUT routes, and an unload (`ollama stop`: keep_alive
 * 0 with nothing to generate) when some node has the model
 * (sol_fanout_start); running, cancel, free: the legs. */
extern const struct sol_req_kind sol_fanout_kind;

/* Starts the legs of a fan-out request. Returns 0, or -1 with
 * r->fail_status and r->last_error set (nothing is running then). */
int sol_fanout_start(struct sol_request *r);
/* Whether some node that is up has r's model installed or loaded, so an
 * unload fan-out has somewhere to go (else the request takes the normal
 * path and gets its 404 or 503). */
int sol_fanout_can_unload(const struct sol_request *r);
/* Cancels running legs (client gone, shutdown). Idempotent. */
void sol_fanout_cancel(struct sol_request *r);
/* Frees the legs; only once none runs. */
void sol_fanout_free(struct sol_request *r);

#endif
