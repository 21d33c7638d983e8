/*
 * translate.h - Ollama <-> llama-server translation for the sharded path.
 *
 * Requests: an Ollama /api/chat, /api/generate or /api/embed body becomes
 * the body of llama-server's /v1/chat/completions, /completion or
 * /v1/embeddings (options mapped: temperature, top_k, top_p, min_p,
 * num_predict, stop, seed, repeat_penalty, presence_penalty,
 * frequency_penalty, format json/schema; unknown options ignored, as Ollama
 * ignores them). Inference is always requested streamed, so one parser
 * serves stream:true and stream:false.
 *
 * Responses: an incremental, bounded parser. Bytes of llama-server's answer
 * are fed as they arrive; every complete SSE event yields its Ollama NDJSON
 * line at once (nothing is held back beyond the current partial line).
 * stream:false accumulates the generated text (the answer itself) and
 * yields one object at the end. Tool calls (chat) are collected from their
 * fragments and sent whole, arguments parsed into an object, in one line
 * before the final one (stream) or in the object's message. The final line
 * carries done_reason and the
 * metrics Ollama derives from `timings`:
 *   prompt_eval_count = cache_n + prompt_n, prompt_eval_duration =
 *   prompt_ms * 1e6, eval_count = predicted_n, eval_duration =
 *   predicted_ms * 1e6; total_duration and load_duration come from the
 *   caller's clock. llama-server errors ({"error":{"message"...}}) become
 *   Ollama's {"error":"..."}; the HTTP status is the caller's business (it
 *   keeps llama-server's).
 *
 * Pure: no I/O, clocks injected; one struct per response; not thread-safe.
 */
#ifndef SOLLOL_TRANSLATE_H
#define SOLLOL_TRANSLATE_H

#include "sollol/buf.h"

#include <stddef.h>
#include <stdint.h>

enum sol_tr_kind {
    SOL_TR_CHAT,     /* /api/chat -> /v1/chat/completions */
    SOL_TR_GENERATE, /* /api/generate -> /completion */
    SOL_TR_EMBED,    /* /api/embed -> /v1/embeddings */
};

/* Longest SSE line, and largest non-streamed body (errors, embeddings). */
#define SOL_TR_MAX_LINE       (4u << 20)
#define SOL_TR_MAX_BODY       (64u << 20)
#define SOL_TR_MAX_TOOL_CALLS 16 /* per answer; more are an error */

struct sol_translate {
    enum sol_tr_kind kind;
    int stream;                    /* the client asked for a stream */
    int error_body;                /* upstream status >= 400: collect and convert the error */
    char model[256];               /* echoed in every line, as the client spelled it */
    uint64_t (*wall_ns)(void *ud); /* Unix time in ns, for created_at */
    uint64_t (*mono_ns)(void *ud); /* monotonic ns, for total_duration */
    void *clock_ud;
    uint64_t started_ns; /* monotonic: when the client's request arrived */
    uint64_t load_ns;    /* load_duration to report */

    struct sol_buf line;  /* partial SSE line / whole non-streamed body */
    struct sol_buf text;  /* stream:false: generated text so far */
    struct sol_buf think; /* stream:false: reasoning text so far */
    /* Tool calls stream in fragments (OpenAI deltas by index); Ollama sends
     * each whole, with arguments as an object: kept until the end. */
    struct sol_buf tool_names[SOL_TR_MAX_TOOL_CALLS];
    struct sol_buf tool_args[SOL_TR_MAX_TOOL_CALLS];
    unsigned n_tools;
    size_t tool_bytes;
    int done;   /* the final line (or an error line) was produced */
    int failed; /* an error line was produced */
    char done_reason[16];
    uint64_t prompt_eval_count, prompt_eval_duration, eval_count, eval_duration;
    int have_timings;
    uint64_t streamed; /* text chunks sent (one per token): a broken stream's count */
};

/*
 * Maps an Ollama request body to llama-server's. Returns 0 with the new
 * body appended to out, 1 when the request only loads or unloads the model
 * (chat with no messages, generate with an empty prompt: answered by the
 * caller with done_reason "load"), -1 with a client error message in err
 * (the body is not a JSON object, or a field has the wrong type).
 */
int sol_translate_request(enum sol_tr_kind kind, const char *body, size_t len, struct sol_buf *out,
                          char *err, size_t errlen);

/* Prepares a translator. Clock functions are required. Never fails. */
void sol_translate_init(struct sol_translate *t, enum sol_tr_kind kind, int stream,
                        const char *model, uint64_t (*wall_ns)(void *), uint64_t (*mono_ns)(void *),
                        void *clock_ud);

/* The upstream status is known: >= 400 switches to error conversion. */
void sol_translate_status(struct sol_translate *t, long status);

/*
 * Feeds `n` bytes of llama-server's response. Whatever lines they complete
 * are appended to out. Returns 0, or -1 when the input breaks the bounds
 * (a line over SOL_TR_MAX_LINE, a body over SOL_TR_MAX_BODY, out of
 * memory): an error line has then been appended and the caller ends the
 * transfer. Bytes after the final line are ignored.
 */
int sol_translate_feed(struct sol_translate *t, const char *p, size_t n, struct sol_buf *out);

/*
 * The upstream response ended cleanly: appends what is still owed (the
 * final line with the metrics, the stream:false object, the converted
 * error). A stream that ended without its final event still gets a final
 * line (done_reason "stop", metrics that are known). Returns 0 or -1 (out
 * of memory). Idempotent.
 */
int sol_translate_finish(struct sol_translate *t, struct sol_buf *out);

/* The content type the client sees for this translation. */
const char *sol_translate_content_type(const struct sol_translate *t);

/* Frees the translator's buffers. */
void sol_translate_free(struct sol_translate *t);

/* Writes an RFC 3339 UTC time with nanoseconds ("2024-06-04T14:38:31.123456789Z"). */
void sol_translate_rfc3339(uint64_t unix_ns, char *out, size_t outlen);

#endif
