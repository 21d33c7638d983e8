/*
 * cont.h - continuing a chat answer on another node after its node failed
 * mid-stream (issue 18): the text produced so far, kept per stream; the
 * body of the next attempt with that text as a trailing assistant message
 * (a prefill); the node's lines passed on or rewritten so the client sees
 * one answer with one final line whose counters cover all of it.
 *
 * Pure and bounded: no I/O, the clock is passed in, every buffer has a cap.
 * It reads bytes a node sent, which may be anything: no function reads
 * outside its input, and bytes that do not parse are passed on unchanged
 * (the stream is then no longer continued). Each node line costs one pass of
 * the json_scan validator plus span lookups: no DOM.
 *
 * Lifecycle (request.c): sol_cont_judge() on the request body decides
 * whether a failure could be continued (and why not); sol_cont_new() when it
 * could; sol_cont_attempt_start() before each attempt; sol_cont_feed() for
 * every byte of the node's body (what the client gets is appended to `out`);
 * at the attempt's end either sol_cont_attempt_ok() (the answer is complete:
 * the rest of `out`), or sol_cont_can_continue() and then sol_cont_next()
 * (builds the next attempt's body) or sol_cont_give_up() (the node's own
 * error line, when it sent one, goes to the client).
 */
#ifndef SOLLOL_CONT_H
#define SOLLOL_CONT_H

#include "sollol/buf.h"
#include "sollol/json_scan.h"

#include <stddef.h>
#include <stdint.h>

/* What happened to a stream whose node failed after its first byte: the
 * label "outcome" of sollol_stream_continuations_total and the access log's
 * cont= field. SOL_CONT_CONTINUED is the only one that continues. */
enum sol_cont_why {
    SOL_CONT_CONTINUED,  /* "continued": sent to another node with the prefill */
    SOL_CONT_DISABLED,   /* "disabled": routing.continue_streams off, or X-Sollol-Continue: 0 */
    SOL_CONT_ROUTE,      /* "route": not a chat (/api/generate: raw/suffix/context/template) */
    SOL_CONT_FORMAT,     /* "format": format / response_format: a prefix of JSON is not faithful */
    SOL_CONT_IMAGES,     /* "images": images in the conversation */
    SOL_CONT_LOGPROBS,   /* "logprobs": per-token data the prefill cannot carry */
    SOL_CONT_PREFILL,    /* "prefill": the client's own trailing assistant message */
    SOL_CONT_TOOL_CALLS, /* "tool_calls": the answer already carried tool calls */
    SOL_CONT_THINKING,   /* "thinking": the answer carried thinking output */
    SOL_CONT_TOO_LONG,   /* "too_long": the text passed routing.continue_max_bytes */
    SOL_CONT_COMPLETE,   /* "complete": the final line had arrived */
    SOL_CONT_NO_NODE,    /* "no_node": no other node may serve the model now */
    SOL_CONT_LIMIT,      /* "limit": routing.max_attempts or retry_deadline_ms reached */
    SOL_CONT_NODE_LINE,  /* "unreadable": a node line that is not the JSON expected */
    SOL_CONT_KINDS
};

/* The label of `why` ("continued", "no_node", ...). */
const char *sol_cont_why_name(enum sol_cont_why why);

/* Which answer shape: Ollama's /api/chat NDJSON, or OpenAI's
 * /v1/chat/completions SSE. */
enum sol_cont_api { SOL_CONT_API_CHAT, SOL_CONT_API_OPENAI };

/*
 * Whether a failure of this request could be continued, judged once from
 * the client's body (already validated by inspect.c; `messages` is its
 * "messages" span). SOL_CONT_CONTINUED when it could, else the reason.
 * *whole is set when the client asked for one object (stream false) and
 * the request can be asked of the node as a stream instead (no tools): the
 * client then gets the one object Ollama would have built from the stream.
 */
enum sol_cont_why sol_cont_judge(const char *body, size_t len, const struct sol_json_span *messages,
                                 enum sol_cont_api api, int streams, int *whole);

struct sol_cont; /* opaque */

/* A stream's state; cap bounds the text kept (and each held line). NULL
 * when memory runs out. `body` must stay valid (and unchanged) until
 * sol_cont_free(): every continued body is built from it. */
struct sol_cont *sol_cont_new(enum sol_cont_api api, int whole, size_t cap, const char *body,
                              size_t len, const struct sol_json_span *messages);
void sol_cont_free(struct sol_cont *c);

/* Whether the client gets one object built from the node's stream. */
int sol_cont_whole(const struct sol_cont *c);

/* The body of the coming attempt: NULL for the client's own (the first
 * attempt of a streamed request), else the rewritten one. */
const struct sol_buf *sol_cont_body(const struct sol_cont *c);

/* A new attempt on node `node` (name, for the final line's "sollol_nodes")
 * starts at now_ms. 0, or -1 (out of memory). */
int sol_cont_attempt_start(struct sol_cont *c, const char *node, uint64_t now_ms);

/* Result of sol_cont_feed(). */
enum sol_cont_feed_result {
    SOL_CONT_FEED_OK,
    SOL_CONT_FEED_NOMEM,    /* out of memory: fail the attempt */
    SOL_CONT_FEED_TOO_LONG, /* whole mode: the answer passed the cap; it cannot be built */
};

/*
 * Bytes of the node's body. Complete lines are passed to `out` (rewritten
 * on a continued attempt: the OpenAI id/created of the first node, the
 * final line's counters and "sollol_nodes"); the unfinished line waits for
 * its end, so a failure never leaves half a line at the client. A node's
 * error line ({"error":...}, data: {"error":...}) is held back. In whole
 * mode nothing goes to `out` until the final line, which becomes the one
 * object the client gets.
 */
enum sol_cont_feed_result sol_cont_feed(struct sol_cont *c, const char *p, size_t n,
                                        uint64_t now_ms, struct sol_buf *out);

/*
 * The node's body ended cleanly at the transport level: an unterminated
 * last line that is whole JSON is taken as a line (a final line without its
 * '\n' still ends the answer; it is passed on with the terminator a
 * client's parser needs); a line cut mid-JSON stays unfinished. Call before
 * sol_cont_attempt_failed(); idempotent.
 */
void sol_cont_attempt_end(struct sol_cont *c, struct sol_buf *out);

/* Whether the attempt that ended cleanly at the transport level still
 * failed: the node ended its stream with an error line, or without its
 * final line. */
int sol_cont_attempt_failed(const struct sol_cont *c);

/*
 * The attempt ended cleanly: what is still held (an unterminated last line)
 * goes to out. In whole mode, *out then holds the one object (0 when it was
 * never built: no final line).
 */
void sol_cont_attempt_ok(struct sol_cont *c, struct sol_buf *out);

/* The message of the node's held error line ("error" string, or OpenAI's
 * error.message), decoded and cut to fit; 0 when none was held (out is
 * then ""). out must have room for at least one byte. */
size_t sol_cont_error_text(const struct sol_cont *c, char *out, size_t outlen);

/* Whether the broken attempt's text can be continued (SOL_CONT_CONTINUED)
 * or why not; the caller adds its own reasons (no node, limits). */
enum sol_cont_why sol_cont_can_continue(const struct sol_cont *c);

/* The running attempt failed at now_ms and is continued: its measured
 * times and tokens are kept for the final line, and the next body (the
 * client's with the text so far as a trailing assistant message, and
 * num_predict / max_tokens reduced by the tokens already produced) is
 * built. 0, or -1 (out of memory). */
int sol_cont_next(struct sol_cont *c, uint64_t now_ms);

/* Whole mode, nothing reached the client: start the answer again from
 * scratch (the text so far is dropped). */
void sol_cont_restart(struct sol_cont *c);

/* Not continued: the node's own error line (when it sent one) goes to out.
 * Returns 1 when it did, 0 when the caller must write its own error line. */
int sol_cont_give_up(struct sol_cont *c, struct sol_buf *out);

/* Counters of the answer so far, for metrics and the access log. */
struct sol_cont_stats {
    unsigned continued;    /* continuations that happened */
    uint64_t text_bytes;   /* raw (JSON-escaped) content bytes */
    uint64_t eval_count;   /* merged eval_count / completion_tokens of the final line */
    uint64_t prompt_count; /* merged prompt_eval_count / prompt_tokens */
    int have_counts;       /* the final line with counters was seen */
};
void sol_cont_stats(const struct sol_cont *c, struct sol_cont_stats *out);

#endif
