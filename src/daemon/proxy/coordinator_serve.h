/*
 * coordinator_serve.h - the sharded path as requests see it: a request kind
 * (request_priv.h) that rides the proxy path for models served by
 * llama-server, pointing each attempt on the virtual node at llama-server's
 * route with a translated body and translating the answer back; and the
 * request side of the coordinator's hooks (coordinator.h).
 *
 * The supervisor itself (coordinator.c) sits below the proxy and never
 * sees a request; this file is its plug-in above it.
 */
#ifndef SOLLOL_COORDINATOR_SERVE_H
#define SOLLOL_COORDINATOR_SERVE_H

#include "nodes/coordinator.h"

#include <curl/curl.h>
#include <stddef.h>

struct sol_daemon;
struct sol_request;
struct sol_node;
struct sol_req_kind;

/* The kind daemon.c registers first: take = sol_coord_take() (0 with
 * r->coord set: rides the proxy path), prepare, on_headers, translating,
 * on_body, on_done, free = the hooks below. */
extern const struct sol_req_kind sol_coord_kind;

/*
 * Called once the body is inspected, before admission. Returns 0 when the
 * request goes on through the normal path (for a sharded model r->coord is
 * then set and the coordinator is starting if it was stopped: the request
 * waits in the queue until llama-server is ready), 1 when it was answered
 * here (r->state is RS_COMMITTED with the body in r->stream), or -1 with
 * r->fail_status and r->last_error set (failed state, pre-flight failed,
 * invalid body).
 */
int sol_coord_take(struct sol_request *r);

/* An attempt on node n starts with easy handle e: for the virtual node,
 * points e at llama-server's route with the translated body. */
void sol_coord_prepare(struct sol_request *r, CURL *e, const struct sol_node *n);

/* The attempt on the sharded model failed before its first byte (a
 * transport error): returns 1 when the request should wait in the queue
 * for the model's recovery (once per request; the node is held until
 * llama-server proves alive or has been relaunched), else 0. */
int sol_coord_retry_later(struct sol_request *r);

/* Tokens the translated stream has sent so far: what a stream that broke
 * before its final line (no eval_count) generated. 0 when not sharded. */
unsigned long long sol_coord_streamed_tokens(const struct sol_request *r);

/* Nonzero while the running attempt's response is being translated. */
int sol_coord_translating(const struct sol_request *r);

/* The attempt's status and headers are in: sets the client's content type. */
void sol_coord_on_headers(struct sol_request *r);

/* Translates `n` response bytes; the result is appended to *out (owned by
 * r->coord). Returns 0, or -1 when the transfer must end. */
int sol_coord_on_body(struct sol_request *r, const char *p, size_t n, const char **out,
                      size_t *out_len);

/* The response ended cleanly: what the translator still owes. */
void sol_coord_on_done(struct sol_request *r, const char **out, size_t *out_len);

/* Frees the request's coordinator state (request.c's req_free). */
void sol_coord_req_free(struct sol_request *r);

/* The hooks' request side (struct sol_coord_hooks): requests of d waiting
 * in the queue for the sharded model, counted or ended with an error. */
unsigned sol_coord_requests_queued(struct sol_daemon *d);
void sol_coord_requests_fail(struct sol_daemon *d, unsigned status, const char *msg);

#endif
