/*
 * request_priv.h - the request object and the request-kind interface,
 * shared by request.c (one request proxied to one node at a time, with
 * retries) and the kinds that plug into it: fanout.c, embed.c, batch.c and
 * coordinator_serve.c. Not a public interface: see request.h.
 *
 * sol_req_* functions are request.c's services to the kinds; sol_request_*
 * (request.h) are its entry points for the daemon.
 */
#ifndef SOLLOL_REQUEST_PRIV_H
#define SOLLOL_REQUEST_PRIV_H

#include "base/affinity.h"
#include "base/auth.h"
#include "nodes/balancer.h"
#include "sollol/buf.h"
#include "sollol/curl_uv.h"
#include "base/inspect.h"
#include "sollol/mhd_uv.h"
#include "base/queue.h"
#include "base/routes.h"
#include "base/scorer.h"

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

    /* The request kind that took this request or rides its proxy path
     * (see struct sol_req_kind); NULL = the plain proxy path. */
    const struct sol_req_kind *kind;

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

/* ---- Request kinds ---------------------------------------------------------
 *
 * request.c serves one request on one node at a time; every other way of
 * serving a request is a kind that plugs in here (nginx's upstream
 * create_request/process_header/finalize_request), registered by daemon.c
 * in struct sol_daemon's kinds[]: the sharded path (coordinator_serve.c),
 * batch jobs (batch.c), split embeddings (embed.c), fan-out (fanout.c).
 * request.c names none of them.
 *
 * Called from request.c only, never from inside a libcurl callback except
 * where said (prepare runs before the transfer is added; on_headers and
 * on_body inside the attempt's header and write callbacks: they must not
 * remove the transfer).
 */

/* What take() did with a request. */
enum sol_take {
    SOL_TAKE_FAILED = -1, /* answer r->fail_status with r->last_error */
    SOL_TAKE_PASS = 0,    /* not this kind's: the next kind is asked */
    SOL_TAKE_SERVED = 1,  /* the kind serves it: r->state is RS_UPSTREAM (request.c
                             suspends the connection) or RS_COMMITTED (the answer is
                             ready in r->stream) */
    SOL_TAKE_RIDES = 2,   /* goes on along the proxy path with this kind's hooks
                             (the next kinds are still asked) */
};

struct sol_req_kind {
    const char *name;
    /* Once the body is inspected, before admission. Required. */
    enum sol_take (*take)(struct sol_request *r);
    /* Riding kinds, on the proxy path (NULL = nothing to do):
     * an attempt on node n starts with easy handle e (after the request's
     * own options are set); */
    void (*prepare)(struct sol_request *r, CURL *e, const struct sol_node *n);
    /* the attempt's status and headers are in (r->status set); */
    void (*on_headers)(struct sol_request *r);
    /* nonzero when the running attempt's bytes go through on_body; */
    int (*translating)(const struct sol_request *r);
    /* `n` bytes from the node: *out and *out_len get what the client sees
     * (owned by the kind). Returns 0, or -1 when the transfer must end. */
    int (*on_body)(struct sol_request *r, const char *p, size_t n, const char **out,
                   size_t *out_len);
    /* the answer ended cleanly: what the kind still owes the client. */
    void (*on_done)(struct sol_request *r, const char **out, size_t *out_len);
    /* the attempt failed before its first byte (a transport error): 1 when
     * the request should wait in the queue and try the same node again
     * (its server is being recovered), else 0; */
    int (*retry_later)(struct sol_request *r);
    /* tokens a stream sent that broke before its final line (no
     * eval_count in it): for the access log and metrics. */
    unsigned long long (*streamed_tokens)(const struct sol_request *r);
    /* Serving kinds: nonzero while the kind's own transfers run. */
    int (*running)(const struct sol_request *r);
    /* Cancels the kind's own transfers (client gone, shutdown). Idempotent. */
    void (*cancel)(struct sol_request *r);
    /* Frees what the kind attached to r. Called for every kind when the
     * request is freed, whether it took r or not: a no-op then. */
    void (*free)(struct sol_request *r);
    /* Daemon shutdown: the kind ends what it runs outside any request. */
    void (*shutdown)(struct sol_daemon *d);
    /* The kind uses the body and forwarded headers after the answer is
     * committed: request.c keeps them until the request is freed. */
    int keeps_inputs;
};

#endif
