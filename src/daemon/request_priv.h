/*
 * request_priv.h - the request object, shared by the modules that serve
 * one client request: request.c (single-node proxying) and fanout.c
 * (requests sent to several nodes). Not a public interface: see request.h.
 */
#ifndef SOLLOL_REQUEST_PRIV_H
#define SOLLOL_REQUEST_PRIV_H

#include "sollol/affinity.h"
#include "sollol/auth.h"
#include "sollol/balancer.h"
#include "sollol/buf.h"
#include "sollol/curl_uv.h"
#include "sollol/inspect.h"
#include "sollol/mhd_uv.h"
#include "sollol/queue.h"
#include "sollol/routes.h"
#include "sollol/scorer.h"

#include <microhttpd.h>
#include <stdint.h>

struct sol_daemon;
struct sol_fanout_leg;
struct sol_pull_progress;
struct sol_embed_split; /* embed.c */
struct sol_coord_req;   /* coordinator.c */
struct sol_cont;        /* cont.c */

/* Backpressure: past HIGH bytes buffered for a slow client the upstream
 * transfer is paused; it resumes once the client has drained below LOW. */
#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_LOW_WATER  (64 * 1024)
#define MHD_BLOCK_SIZE    (32 * 1024)
#define TAIL_BYTES        2048 /* end of a response kept to read the node's final metrics */
#define EXPLAIN_HEADER    1024

/* libcurl's receive buffer (CURLOPT_BUFFERSIZE) of a proxied transfer:
 * libcurl's minimum for a streamed answer (lines of a few hundred bytes;
 * a longer one simply takes several reads), 64 KiB for an answer that
 * comes whole (a 1 MiB answer in 16 reads instead of 1,024). */
#define SOL_STREAM_RECV_BUFFER 1024L
#define SOL_BULK_RECV_BUFFER   (64L * 1024)

enum req_state {
    RS_RECEIVING,
    RS_UPSTREAM,  /* attempt running, nothing sent to the client yet */
    RS_COMMITTED, /* node answered; the access handler will queue the response */
    RS_FAILED,    /* every attempt failed; the access handler will queue the error */
    RS_STREAMING, /* response queued */
};

struct sol_request {
    struct sol_daemon *d;
    struct MHD_Connection *conn;         /* NULL once MHD completed the request */
    const struct sol_auth_key *auth_key; /* caller's API key (auth.c); NULL when none needed */
    struct sol_auth_verdict refusal;     /* auth.c: status != 0 = answer it once the body is in */
    int refs;
    struct sol_request *prev, *next; /* d->requests */

    const struct sol_route *route;
    enum req_state state;
    int http10; /* the client spoke HTTP/1.0: no chunked answer */
    char id[72];
    char method[8];
    char path[256];
    char *upstream_path; /* path + re-encoded query string */
    uint64_t started_ms;

    struct sol_buf body;
    int body_too_big;
    int body_over_budget; /* with body_too_big: dropped for the body budgets (503) */
    struct sol_body_info info;
    int openai;
    char model[SOL_MODEL_NAME_MAX]; /* canonical */
    struct sol_score_req score;
    int want_explain;
    char *explain; /* X-Sollol-Explain value of the first decision */

    /* Upstream attempt. */
    struct sol_curl_xfer xfer;
    struct curl_slist *client_headers; /* forwarded request headers, built once */
    struct curl_slist *attempt_headers;
    struct sol_node *node; /* node of the running attempt, between get and put */
    char node_name[128];   /* node that answered (for headers and logs) */
    struct sol_tried tried;
    uint64_t deadline_ms; /* 0 = none (paused by a slow client) */
    uint64_t node_eta_ms; /* the attempt's expected end, from sol_balancer_get() */
    int attempt_running;
    uint64_t attempt_started_ms;
    double ttfb_ms;
    char last_error[384];
    unsigned fail_status;
    enum sol_attempt_result retry_result; /* set when a node's answer is dropped for a retry */
    /* A 500 that another node could take, held (in tail, not sent) until
     * its error text says whether the request or the node is at fault. */
    int held_500;
    size_t held_bytes;

    /* What the node answered. */
    long status;
    char content_type[128];
    long long content_length; /* -1 unknown */
    struct curl_slist *response_headers;
    int headers_complete;
    unsigned resp_header_bytes; /* the node's header block so far (SOL_NODE_HEADER_MAX) */
    int resp_has_connection;    /* a node's Connection field waits in response_headers */
    const char *node_fault;     /* static text: why the node is at fault (header overflow) */
    uint64_t line_started_ms;   /* since then no newline from the node (line progress bound) */

    /* Stream between node and client. */
    struct sol_buf stream;
    int paused;        /* upstream paused for backpressure */
    int upstream_done; /* no more bytes will come from the node */
    int abort_client;  /* end the client's response with an error (no clean end possible) */
    char last_byte;
    uint64_t bytes_out;
    char tail[TAIL_BYTES]; /* last bytes from the node, for its final metrics */
    size_t tail_len;

    /* Admission (the daemon's queue) and prefix affinity. */
    struct sol_queue_entry qe;
    uint64_t queue_ms; /* time spent waiting for a slot, all waits */
    char queue_ms_text[24];
    char timing_text[112];     /* Server-Timing header value */
    struct MHD_Response *resp; /* the queued stream response (borrowed: valid while
                                  MHD calls its reader), for the Server-Timing trailer */
    struct sol_affinity_keys aff;
    int has_aff;
    int aff_remembered; /* affinity_node is the node that served the prefix */

    /* Fan-out (fanout.c): one leg per node. */
    struct sol_fanout_leg *legs;
    unsigned n_legs, legs_running;
    int pinned_node; /* pinned routes: node index, else -1 */
    int unload;      /* generate/chat with keep_alive 0 and nothing to say: every node unloads */
    struct sol_pull_progress *pull; /* a streamed pull's summed progress (compat.h), or NULL */

    /* Distributed embedding batch (embed.c): the split of a large /api/embed. */
    struct sol_embed_split *embed;

    /* Sharded path (coordinator.c): translation state when the request is
     * for a model served by llama-server over rpc-server backends. */
    struct sol_coord_req *coord;

    /* Continuation (cont.h, issue 18): a chat whose node fails after the
     * first byte goes on on another node with the text so far as prefill.
     * cont is NULL when the request could not be continued (cont_skip says
     * why); cont_outcome is the last failure's outcome (enum sol_cont_why),
     * -1 while none happened. */
    struct sol_cont *cont;
    int cont_skip, cont_outcome;
    int cont_fatal;      /* the whole-mode answer passed continue_max_bytes */
    double cont_ttft_ms; /* the first attempt's time to first token, once continued */
    char head_node[128]; /* X-Sollol-Node when a continuation started before the head went */

    /* Suspension and client hang-up. */
    int suspended;
    int client_gone;
    struct sol_hangup_watch watch;
};

/* Whether the client asked for a streamed answer: the body's "stream",
 * else the route's default (Ollama routes stream unless told not to). */
static inline int sol_req_streams(const struct sol_request *r)
{
    return sol_body_streams(&r->info, r->route && (r->route->flags & SOL_RF_STREAM_DEFAULT));
}

/* Suspends the MHD connection until sol_req_resume(); watches the client
 * for hang-up meanwhile. */
void sol_req_suspend(struct sol_request *r);
/* Resumes the connection if suspended (MHD runs on the next iteration). */
void sol_req_resume(struct sol_request *r);
/* Records why the request fails (r->last_error from the format) and the
 * status it will be answered with (r->fail_status). Returns -1, so a
 * caller can `return sol_req_fail(...)`. */
int sol_req_fail(struct sol_request *r, unsigned status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Moves an UPSTREAM request to COMMITTED and resumes it: the access
 * handler then queues the response from r->status/content_type/stream. */
void sol_req_commit(struct sol_request *r);
/* Appends the in-band error a streaming client sees at the end. */
void sol_req_append_stream_error(struct sol_request *r, const char *msg);

/*
 * Points easy handle `e` at `path` on node `n` and sets its headers: the
 * client's forwarded ones, then the node's own (Host, configured headers).
 * The list is built into *headers (freed and replaced; the caller keeps it
 * until the transfer is over). Returns 0, or -1 when memory runs out.
 * Shared by every kind of upstream transfer (proxy, fan-out, embed chunks).
 */
int sol_req_prepare_upstream(CURL *e, const struct sol_node *n, const char *path,
                             const struct curl_slist *client_headers, struct curl_slist **headers);

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

/* ---- Distributed embedding batches (embed.c, batch.c) ---- */

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

/* request.c's hook in on_body_complete(): takes /api/embed batches worth
 * splitting and the batch-job routes. Returns 0 (not taken: go on), 1
 * (taken: r->state is RS_UPSTREAM, or RS_COMMITTED with the answer ready),
 * -1 (answer r->fail_status with r->last_error). */
int sol_embed_take(struct sol_request *r);
/* Cleanup mirrors of sol_fanout_cancel()/sol_fanout_free(). */
void sol_embed_cancel(struct sol_request *r);
int sol_embed_running(const struct sol_request *r);
void sol_embed_free(struct sol_request *r);

/* The batch-job API (batch.c): serves a SOL_RF_BATCH route, as
 * sol_embed_take(). */
int sol_batch_serve(struct sol_request *r);
/* Shutdown: cancels the running job and frees every job. */
void sol_batch_shutdown(struct sol_daemon *d);

#endif
