/*
 * http_reply.h - answers the daemon writes itself (errors, small JSON and
 * text bodies), in Ollama's shapes.
 *
 * Errors on Ollama routes are {"error":"message"}; on OpenAI-compatible
 * routes (/v1/...) {"error":{"message","type","param":null,"code":null}}.
 * Both with Content-Type "application/json; charset=utf-8".
 */
#ifndef SOLLOL_HTTP_REPLY_H
#define SOLLOL_HTTP_REPLY_H

#include "sollol/buf.h"

#include <microhttpd.h>

/* Appends the error document for `status` and `msg` to out. */
int sol_error_body(struct sol_buf *out, unsigned status, int openai, const char *msg);

/* Headers every reply of the daemon can carry; NULL fields are left out. */
struct sol_reply_headers {
    const char *request_id;     /* X-Sollol-Request-Id */
    const char *node;           /* X-Sollol-Node */
    const char *allow;          /* Allow (405) */
    const char *retry_after;    /* Retry-After (503, 429) */
    const char *explain;        /* X-Sollol-Explain (routing decision, on request) */
    const char *queue_ms;       /* X-Sollol-Queue-Ms (time waiting for a node slot) */
    const char *server_timing;  /* Server-Timing (see sol_server_timing_format) */
    const char *sollol_version; /* X-Sollol-Version (sollold's own, on /api/version) */
    int close;                  /* ask MHD to close the connection afterwards */
};

/* Queues a copy of body with the given content type and status. Returns
 * MHD's result; MHD_NO means the connection is to be closed. */
enum MHD_Result sol_reply(struct MHD_Connection *c, unsigned status, const char *content_type,
                          const char *body, size_t len, const struct sol_reply_headers *h);

/* Queues an error document (see above). */
enum MHD_Result sol_reply_error(struct MHD_Connection *c, unsigned status, int openai,
                                const char *msg, const struct sol_reply_headers *h);

/* Adds the non-NULL headers of h to a response. While a local answer is
 * being built (sol_reply_local_begin), X-Sollol-Request-Id and
 * Server-Timing missing from h (or h NULL) come from that context. */
void sol_reply_add_headers(struct MHD_Response *r, const struct sol_reply_headers *h);

/*
 * Brackets the code that answers a request the daemon serves itself (its
 * own pages, the probe-table aggregates, 404/405 before routing): every
 * reply queued in between carries X-Sollol-Request-Id `request_id` (copied)
 * and `Server-Timing: total;dur=<ms since begin>`. Single-threaded; the
 * calls must not nest. end() clears the context.
 */
void sol_reply_local_begin(const char *request_id);
void sol_reply_local_end(void);

/*
 * Brackets one call of the access handler for a request from an allowed
 * CORS origin: every reply queued in between (sol_reply_add_headers)
 * carries Access-Control-Allow-Origin: `allow_origin` (or "*" when `any`)
 * and Vary: Origin. The string must live until end(). Not nested.
 */
void sol_reply_cors_begin(const char *allow_origin, int any);
void sol_reply_cors_end(void);

/*
 * Writes a Server-Timing value into buf: `queue;dur=Q, upstream;dur=U;
 * desc="first byte", total;dur=T` (milliseconds, 1 decimal); an entry whose
 * value is negative is left out. Returns the length (0 when none fits; the
 * buffer then holds ""). 96 bytes hold all three.
 */
size_t sol_server_timing_format(char *buf, size_t len, double queue_ms, double upstream_ms,
                                double total_ms);

#define SOL_CT_JSON   "application/json; charset=utf-8"
#define SOL_CT_TEXT   "text/plain; charset=utf-8"
#define SOL_CT_NDJSON "application/x-ndjson"

#endif
