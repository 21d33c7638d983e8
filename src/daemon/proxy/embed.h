/*
 * embed.h - distributed embedding batches: one batch cut into chunks sent
 * to several nodes, merged back in input order (the plan itself is pure:
 * embed_plan.h). Used by a client's large /api/embed (a request kind,
 * request_priv.h) and by background jobs (batch.c).
 */
#ifndef SOLLOL_EMBED_H
#define SOLLOL_EMBED_H

#include "sollol/buf.h"
#include "sollol/json_scan.h"

#include <curl/curl.h>
#include <stddef.h>

struct sol_daemon;
struct sol_request;
struct sol_req_kind;
struct sol_embed_split;

/* take: /api/embed batches worth splitting (sol_embed_take); running,
 * cancel, free: the request's split. */
extern const struct sol_req_kind sol_embed_kind;

/* One batch cut into chunks sent to several nodes (embed.c). It belongs to
 * a client request or to a background job, never to a connection. */
struct sol_embed_split_params {
    struct sol_daemon *d;
    const char *id;   /* for logs (the request's or job's id) */
    const char *path; /* upstream path of every chunk ("/api/embed[?query]") */
    const char *body; /* the whole body; borrowed until sol_embed_split_free() */
    size_t body_len;
    struct sol_json_span input;       /* the input array inside body */
    size_t n_inputs;                  /* its elements, all strings */
    const char *model;                /* canonical name */
    const char *model_echo;           /* as the client spelled it: the answer's "model" */
    const struct curl_slist *headers; /* sent with every chunk (copied) */
    unsigned reserve_slots;           /* per node, left to other traffic when planning */
    size_t min_chunk;                 /* fewest inputs per chunk */
    int allow_single;                 /* run even when the plan is one chunk */
    /* After each chunk that completed: inputs done so far. May be NULL. */
    void (*on_progress)(void *ud, size_t done, size_t total);
    /* The split ended (every chunk done, or one failed for good). Never
     * called from sol_embed_split_start(); the split does nothing after it,
     * so it may free the split. */
    void (*on_done)(void *ud, struct sol_embed_split *s);
    void *ud;
};
/* Plans and starts the chunks. Returns 0 (*out set), 1 when the batch is
 * not split (no eligible node, or one chunk without allow_single; nothing
 * started), -1 with *status and err (nothing running). */
int sol_embed_split_start(const struct sol_embed_split_params *p, struct sol_embed_split **out,
                          unsigned *status, char *err, size_t errlen);
/* After on_done: appends the merged answer (0), or gives the failure (-1). */
int sol_embed_split_result(struct sol_embed_split *s, struct sol_buf *out, unsigned *status,
                           char *err, size_t errlen);
/* The one node that served every chunk, or "*". */
const char *sol_embed_split_nodes(const struct sol_embed_split *s);
/* Cancels the running legs (their slots are put back as cancelled);
 * on_done is not called. NULL and repeated calls are fine. */
void sol_embed_split_cancel(struct sol_embed_split *s);
/* Cancels and frees. NULL is fine. */
void sol_embed_split_free(struct sol_embed_split *s);

/* The kind's take: /api/embed batches worth splitting. Returns 0 (not
 * taken: go on), 1 (taken: r->state is RS_UPSTREAM, or RS_COMMITTED with the answer ready),
 * -1 (answer r->fail_status with r->last_error). */
int sol_embed_take(struct sol_request *r);
/* Cleanup mirrors of sol_fanout_cancel()/sol_fanout_free(). */
void sol_embed_cancel(struct sol_request *r);
int sol_embed_running(const struct sol_request *r);
void sol_embed_free(struct sol_request *r);

#endif
