/*
 * request_priv.h - the request object, shared by the modules that serve
 * one client request: request.c (single-node proxying) and fanout.c
 * (requests sent to several nodes). Not a public interface: see request.h.
 */
#ifndef SOLLOL_REQUEST_PRIV_H
#define SOLLOL_REQUEST_PRIV_H

#include "sollol/affinity.h"
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

/* Backpressure: past HIGH bytes buffered for a slow client the upstream
 * transfer is paused; it resumes once the client has drained below LOW. */
#define STREAM_HIGH_WATER (256 * 1024)
#define STREAM_LOW_WATER  (64 * 1024)
#define MHD_BLOCK_SIZE    (32 * 1024)
#define JSON_MAX_DEPTH    128
#define TAIL_BYTES        2048 /* end of a response kept to read the node's final metrics */
#define EXPLAIN_HEADER    1024

enum req_state {
    RS_RECEIVING,
    RS_UPSTREAM,  /* attempt running, nothing sent to the client yet */
    RS_COMMITTED, /* node answered; the access handler will queue the response */
    RS_FAILED,    /* every attempt failed; the access handler will queue the error */
    RS_STREAMING, /* response queued */
};

struct sol_request {
    struct sol_daemon *d;
    struct MHD_Connection *conn; /* NULL once MHD completed the request */
    int refs;
    struct sol_request *prev, *next; /* d->requests */

    const struct sol_route *route;
    enum req_state state;
    char id[72];
    char method[8];
    char path[256];
    char *upstream_path; /* path + re-encoded query string */
    uint64_t started_ms;

    struct sol_buf body;
    int body_too_big;
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
    int attempt_running;
    uint64_t attempt_started_ms;
    double ttfb_ms;
    char last_error[384];
    unsigned fail_status;
    enum sol_attempt_result retry_result; /* set when a node's answer is dropped for a retry */

    /* What the node answered. */
    long status;
    char content_type[128];
    long long content_length; /* -1 unknown */
    struct curl_slist *response_headers;
    int headers_complete;

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
    struct sol_affinity_keys aff;
    int has_aff;
    int aff_remembered; /* affinity_node is the node that served the prefix */

    /* Fan-out (fanout.c): one leg per node. */
    struct sol_fanout_leg *legs;
    unsigned n_legs, legs_running;
    int pinned_node; /* pinned routes: node index, else -1 */

    /* Suspension and client hang-up. */
    int suspended;
    int client_gone;
    struct sol_hangup_watch watch;
};

/* Suspends the MHD connection until sol_req_resume(); watches the client
 * for hang-up meanwhile. */
void sol_req_suspend(struct sol_request *r);
/* Resumes the connection if suspended (MHD runs on the next iteration). */
void sol_req_resume(struct sol_request *r);
/* Moves an UPSTREAM request to COMMITTED and resumes it: the access
 * handler then queues the response from r->status/content_type/stream. */
void sol_req_commit(struct sol_request *r);
/* Appends the in-band error a streaming client sees at the end. */
void sol_req_append_stream_error(struct sol_request *r, const char *msg);

/* Starts the legs of a fan-out request. Returns 0, or -1 with
 * r->fail_status and r->last_error set (nothing is running then). */
int sol_fanout_start(struct sol_request *r);
/* Cancels running legs (client gone, shutdown). Idempotent. */
void sol_fanout_cancel(struct sol_request *r);
/* Frees the legs; only once none runs. */
void sol_fanout_free(struct sol_request *r);

#endif
