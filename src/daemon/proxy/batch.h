/*
 * batch.h - the batch-job API (/api/batch/...): background embedding jobs
 * on embed.h's split, bounded in count, size and retention. A request kind
 * (request_priv.h) whose take serves the SOL_RF_BATCH routes at once.
 */
#ifndef SOLLOL_BATCH_H
#define SOLLOL_BATCH_H

struct sol_daemon;
struct sol_request;
struct sol_req_kind;

/* take: SOL_RF_BATCH routes (sol_batch_serve); shutdown: every job. */
extern const struct sol_req_kind sol_batch_kind;

/* Serves a SOL_RF_BATCH route: 1 (answered: r->state is RS_COMMITTED),
 * or -1 with r->fail_status and r->last_error. */
int sol_batch_serve(struct sol_request *r);
/* Shutdown: cancels the running job and frees every job. */
void sol_batch_shutdown(struct sol_daemon *d);

#endif
