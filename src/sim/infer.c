/*
 * infer.c - the inference routes: /api/generate, /api/chat, /api/embed,
 * /api/embeddings and the OpenAI-compatible /v1/chat/completions,
 * /v1/completions and /v1/embeddings.
 *
 * Output is deterministic: the text comes from a PRNG seeded with
 * (--seed, model, prompt or messages, options.seed unless temperature is 0,
 * temperature), one vocabulary word per token; embeddings come from a hash
 * of (model, input text) only, so every node agrees. Only created_at,
 * "created" and the measured durations change between runs.
 *
 * Timing: a request first waits for the model to load (load_duration) and
 * for a slot, then evaluates its uncached prompt tokens (--ttft-ms plus
 * tokens / --prompt-tps: prompt_eval_duration), then produces one token per
 * 1 / --tokens-per-second (+ slow:MS). Streams are paced by a uv timer that
 * emits every token that is due, so high rates keep their average even
 * though uv timers count whole milliseconds.
 */
#include "sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sollol/log.h"

static const char *const VOCAB[64] = {
    "the",     "cluster", "node",   "model",     "token",   "request", "router",   "answer",
    "quickly", "through", "a",      "simulated", "network", "of",      "machines", "and",
    "every",   "reply",   "is",     "stable",    "so",      "tests",   "can",      "trust",
    "it",      "while",   "load",   "balances",  "across",  "many",    "GPUs",     "with",
    "care",    "streams", "flow",   "in",        "order",   "under",   "pressure", "data",
    "moves",   "from",    "one",    "place",     "to",      "another", "latency",  "stays",
    "low",     "when",    "queues", "are",       "short",   "cache",   "hits",     "save",
    "time",    "for",     "each",   "turn",      "fast",    "small",   "bright",   "steady"};

#define ERR_MAX_QUEUE "server busy, please try again.  maximum pending requests exceeded"

/* ---- deterministic text ---- */

#define THINK_TOKENS 8 /* thinking tokens before the answer, when thinking */

/* Token n_done of the answer: the first n_think ones are thinking, from a
 * stream of their own, so the answer's text is the same with or without
 * thinking. Sets *thinking. */
static size_t next_token(struct sim_req *r, char out[SIMGEN_TOKEN_MAX], int *thinking)
{
    *thinking = r->n_done < r->n_think;
    if (*thinking)
        return simgen_token(&r->think_prng, VOCAB, r->n_done == 0, out);
    /* A continued answer (gen_offset > 0) never starts a new sentence. */
    return simgen_token(&r->prng, VOCAB, r->n_done - r->n_think + r->gen_offset == 0, out);
}

/* ---- small JSON pieces ---- */

static int64_t dur(uint64_t a, uint64_t b)
{
    /* Real timings, but never 0: Ollama's are never 0 and omitempty would
     * drop the field. */
    return b > a ? (int64_t)(b - a) : 1;
}

static void metrics_json(struct sbuf *b, struct sim_req *r)
{
    uint64_t now = now_ns();
    sb_puts(b, ",\"total_duration\":");
    sb_i64(b, dur(r->t_recv, now));
    sb_puts(b, ",\"load_duration\":");
    sb_i64(b, dur(r->t_recv, r->t_loaded));
    sb_puts(b, ",\"prompt_eval_count\":");
    sb_i64(b, r->prompt_tokens);
    if (r->ik == IK_EMBED)
        return;
    sb_puts(b, ",\"prompt_eval_duration\":");
    sb_i64(b, dur(r->t_slot, r->t_prompt_done));
    if (r->n_done == 0)
        return; /* nothing generated (a finished prefill): omitempty drops both */
    sb_puts(b, ",\"eval_count\":");
    sb_i64(b, r->n_done);
    sb_puts(b, ",\"eval_duration\":");
    sb_i64(b, dur(r->t_prompt_done, r->t_end));
}

static void model_created(struct sbuf *b, struct sim_req *r)
{
    sb_puts(b, "{\"model\":");
    sb_json_str(b, r->model_name);
    sb_puts(b, ",\"created_at\":\"");
    sb_now_rfc3339(b);
    sb_putc(b, '"');
}

static const char *done_reason(struct sim_req *r)
{
    return r->predict_given ? "length" : "stop";
}

static void context_json(struct sbuf *b, struct sim_req *r)
{
    sb_puts(b, ",\"context\":[");
    int total = r->prompt_tokens + r->n_done;
    for (int i = 0; i < total; i++) {
        if (i)
            sb_putc(b, ',');
        uint64_t x = i < r->prompt_tokens ? mix64(r->ctx_seed + (uint64_t)i)
                                          : mix64(r->gen_seed ^ (uint64_t)(i - r->prompt_tokens));
        sb_u64(b, 1 + x % 128000);
    }
    sb_putc(b, ']');
}

/* Ollama's final object (also the whole non-streamed answer). */
static void ollama_final(struct sbuf *b, struct sim_req *r, const char *text, size_t tlen,
                         const struct sbuf *thinking)
{
    model_created(b, r);
    if (r->ik == IK_GENERATE) {
        sb_puts(b, ",\"response\":");
        sb_json_strn(b, text, tlen);
        if (thinking && thinking->len) {
            sb_puts(b, ",\"thinking\":");
            sb_json_strn(b, thinking->p, thinking->len);
        }
    } else {
        sb_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_strn(b, text, tlen);
        if (thinking && thinking->len) {
            sb_puts(b, ",\"thinking\":");
            sb_json_strn(b, thinking->p, thinking->len);
        }
        if (thinking && r->tool_call[0]) { /* non-streamed: the call is in the answer */
            sb_puts(b, ",\"tool_calls\":[");
            sb_puts(b, r->tool_call);
            sb_putc(b, ']');
        }
        sb_putc(b, '}');
    }
    sb_puts(b, ",\"done\":true,\"done_reason\":");
    sb_json_str(b, done_reason(r));
    if (r->ik == IK_GENERATE && !r->raw)
        context_json(b, r);
    metrics_json(b, r);
    sb_putc(b, '}');
}

static void usage_json(struct sbuf *b, int p, int c)
{
    sb_printf(b, "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", p,
              c, p + c);
}

static void oai_head(struct sbuf *b, struct sim_req *r, const char *object)
{
    int64_t sec;
    long ns;
    wall_now(&sec, &ns);
    if (r->of == OF_V1_CHAT && r->stream) {
        /* Ollama's ChatWriter pins the first response's time on every
         * chunk of a stream, as OpenAI does. */
        if (!r->oai_created)
            r->oai_created = sec;
        sec = r->oai_created;
    }
    sb_puts(b, "{\"id\":");
    sb_json_str(b, r->oai_id);
    sb_puts(b, ",\"object\":\"");
    sb_puts(b, object);
    sb_puts(b, "\",\"created\":");
    sb_i64(b, sec);
}

static void oai_model_fp(struct sbuf *b, struct sim_req *r)
{
    sb_puts(b, ",\"model\":");
    sb_json_str(b, r->model_name);
    sb_puts(b, ",\"system_fingerprint\":\"fp_ollama\"");
}

/* openai.ToToolCalls: arguments as a JSON string. */
static void oai_tool_call(struct sbuf *b, struct sim_req *r)
{
    sb_puts(b, "{\"id\":");
    sb_json_str(b, r->tool_id);
    sb_puts(b, ",\"index\":0,\"type\":\"function\",\"function\":{\"name\":");
    sb_json_str(b, r->tool_name);
    sb_puts(b, ",\"arguments\":");
    sb_json_str(b, r->tool_args);
    sb_puts(b, "}}");
}

/* "stop" becomes "tool_calls" when the answer called a tool (only stop). */
static const char *oai_finish_reason(struct sim_req *r)
{
    const char *reason = done_reason(r);
    return r->tool_call[0] && strcmp(reason, "stop") == 0 ? "tool_calls" : reason;
}

/* The streamed chunk that carries the tool call. */
static void tool_chunk_json(struct sbuf *b, struct sim_req *r)
{
    if (r->of == OF_OLLAMA) {
        model_created(b, r);
        sb_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[");
        sb_puts(b, r->tool_call);
        sb_puts(b, "]},\"done\":false}\n");
        return;
    }
    sb_puts(b, "data: ");
    oai_head(b, r, "chat.completion.chunk");
    oai_model_fp(b, r);
    sb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{");
    if (!r->oai_role_sent)
        sb_puts(b, "\"role\":\"assistant\",");
    r->oai_role_sent = 1;
    sb_puts(b, "\"content\":\"\",\"tool_calls\":[");
    oai_tool_call(b, r);
    sb_puts(b, "]},\"finish_reason\":null}]}\n\n");
}

/* One streamed chunk for token text (or the final one with `reason`). */
static void chunk_json(struct sbuf *b, struct sim_req *r, const char *tok, size_t n,
                       const char *reason, int thinking)
{
    switch (r->of) {
    case OF_OLLAMA:
        model_created(b, r);
        if (r->ik == IK_GENERATE) {
            sb_puts(b, ",\"response\":");
            if (thinking) {
                sb_puts(b, "\"\",\"thinking\":");
            }
            sb_json_strn(b, tok, n);
        } else {
            sb_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":");
            if (thinking) {
                sb_puts(b, "\"\",\"thinking\":");
            }
            sb_json_strn(b, tok, n);
            sb_putc(b, '}');
        }
        sb_puts(b, ",\"done\":false}\n");
        break;
    case OF_V1_CHAT:
        /* Ollama 0.32's ChatWriter: the role only in the stream's first
         * chunk; the end is a chunk of its own with an empty delta. */
        sb_puts(b, "data: ");
        oai_head(b, r, "chat.completion.chunk");
        oai_model_fp(b, r);
        sb_puts(b, ",\"choices\":[{\"index\":0,\"delta\":{");
        if (reason) {
            sb_puts(b, "},\"finish_reason\":");
            sb_json_str(b, reason);
        } else {
            if (!r->oai_role_sent)
                sb_puts(b, "\"role\":\"assistant\",");
            r->oai_role_sent = 1;
            sb_puts(b, "\"content\":");
            if (thinking) /* openai.Delta: content "" kept, then reasoning */
                sb_puts(b, "\"\",\"reasoning\":");
            sb_json_strn(b, tok, n);
            sb_puts(b, "},\"finish_reason\":null");
        }
        sb_puts(b, "}]}\n\n");
        break;
    case OF_V1_COMPLETION:
        sb_puts(b, "data: ");
        oai_head(b, r, "text_completion");
        sb_puts(b, ",\"choices\":[{\"text\":");
        sb_json_strn(b, tok, n);
        sb_puts(b, ",\"index\":0,\"finish_reason\":");
        if (reason)
            sb_json_str(b, reason);
        else
            sb_puts(b, "null");
        sb_puts(b, "}]");
        oai_model_fp(b, r);
        if (r->include_usage) {
            sb_putc(b, ',');
            usage_json(b, 0, 0);
        }
        sb_puts(b, "}\n\n");
        break;
    default:
        break;
    }
}

/* ---- lifecycle ---- */

void infer_cancel(struct sim_req *r)
{
    req_timer_stop(r);
    model_release(r);
}

/* Generation over: remember the prompt in the slot, free the slot. */
static void finish_generation(struct sim_req *r)
{
    if (r->slot >= 0 && r->model)
        slot_store(r->model, r->slot, r);
    model_release(r);
}

/* Closes a non-streamed OpenAI answer: the choices array, usage, status. */
static void oai_finish(struct sbuf *b, struct sim_req *r)
{
    sb_puts(b, "}],");
    usage_json(b, r->prompt_tokens, r->n_done);
    sb_puts(b, "}\n");
    r->h.status = 200;
    r->h.ctype = "application/json";
}

static void finish_nonstream(struct sim_req *r)
{
    char tok[SIMGEN_TOKEN_MAX];
    struct sbuf thinking = {0};
    r->text.len = 0;
    while (r->n_done < r->n_predict) {
        int th;
        size_t n = next_token(r, tok, &th);
        if (th || !r->tool_call[0])
            sb_put(th ? &thinking : &r->text, tok, n);
        r->n_done++;
    }
    r->t_end = now_ns();
    finish_generation(r);
    struct sbuf *b = &r->h.out;
    b->len = 0;
    const char *text = r->text.p ? r->text.p : "";
    switch (r->of) {
    case OF_OLLAMA:
        ollama_final(b, r, text, r->text.len, &thinking);
        req_json_ok(r);
        break;
    case OF_V1_CHAT:
        oai_head(b, r, "chat.completion");
        oai_model_fp(b, r);
        sb_puts(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
        sb_json_strn(b, text, r->text.len);
        if (thinking.len) {
            sb_puts(b, ",\"reasoning\":");
            sb_json_strn(b, thinking.p, thinking.len);
        }
        if (r->tool_call[0]) {
            sb_puts(b, ",\"tool_calls\":[");
            oai_tool_call(b, r);
            sb_putc(b, ']');
        }
        sb_puts(b, "},\"finish_reason\":");
        sb_json_str(b, oai_finish_reason(r));
        oai_finish(b, r);
        break;
    case OF_V1_COMPLETION:
        oai_head(b, r, "text_completion");
        oai_model_fp(b, r);
        sb_puts(b, ",\"choices\":[{\"text\":");
        sb_json_strn(b, text, r->text.len);
        sb_puts(b, ",\"index\":0,\"finish_reason\":");
        sb_json_str(b, done_reason(r));
        oai_finish(b, r);
        break;
    default:
        break;
    }
    sb_free(&thinking);
    req_ready(r);
}

static void gen_step(struct sim_req *r)
{
    uint64_t now = now_ns();
    struct sbuf line = {0};
    char tok[SIMGEN_TOKEN_MAX];
    int stopped = 0;
    while (r->n_done < r->n_predict) {
        uint64_t due = r->t_prompt_done + (uint64_t)(r->n_done + 1) * r->interval_ns;
        if (due > now) {
            req_timer_start(r, due - now, gen_step);
            break;
        }
        int th;
        size_t n = next_token(r, tok, &th);
        if (!th && !r->tool_call[0])
            sb_put(&r->text, tok, n);
        r->n_done++;
        if (!th && r->tool_call[0]) {
            /* the call's tokens are the parser's, not text: the call goes out
             * as one chunk once its last token is generated */
            if (r->n_done < r->n_predict)
                continue;
            line.len = 0;
            tool_chunk_json(&line, r);
        } else {
            line.len = 0;
            chunk_json(&line, r, tok, n, NULL, th);
        }
        if (!stream_emit(r, line.p, line.len)) {
            stopped = 1;
            break;
        }
    }
    if (!stopped && r->n_done == r->n_predict) {
        r->t_end = now;
        int more = 1;
        line.len = 0;
        if (r->of == OF_OLLAMA) {
            ollama_final(&line, r, "", 0, NULL);
            sb_putc(&line, '\n');
            more = stream_emit(r, line.p, line.len);
        } else {
            if (r->of == OF_V1_CHAT && !r->oai_role_sent) {
                /* a wholly empty completion still opens with a role chunk */
                chunk_json(&line, r, "", 0, NULL, 0);
                more = stream_emit(r, line.p, line.len);
                line.len = 0;
            }
            if (more) {
                chunk_json(&line, r, "", 0, oai_finish_reason(r), 0);
                more = stream_emit(r, line.p, line.len);
            }
            if (more && r->include_usage) {
                line.len = 0;
                sb_puts(&line, "data: ");
                oai_head(&line, r,
                         r->of == OF_V1_CHAT ? "chat.completion.chunk" : "text_completion");
                if (r->of == OF_V1_CHAT) {
                    oai_model_fp(&line, r);
                    sb_puts(&line, ",\"choices\":[],");
                } else {
                    sb_puts(&line, ",\"choices\":[]");
                    oai_model_fp(&line, r);
                    sb_putc(&line, ',');
                }
                usage_json(&line, r->prompt_tokens, r->n_done);
                sb_puts(&line, "}\n\n");
                more = stream_emit(r, line.p, line.len);
            }
            if (more)
                more = stream_emit(r, "data: [DONE]\n\n", 14);
        }
        finish_generation(r);
        if (more || (!r->h.out_cut && r->fault != F_STALL))
            r->h.out_done = 1;
    } else if (stopped) {
        req_timer_stop(r);
        if (r->h.out_cut)
            finish_generation(r); /* cut: the generation is abandoned */
        /* stall: the slot stays busy until the client goes away */
    }
    sb_free(&line);
    stream_flush(r);
}

static void embed_finish(struct sim_req *r);

void infer_slot_ready(struct sim_req *r)
{
    if (r->h.cancelled || r->h.mhd_done) {
        model_release(r);
        return;
    }
    stats_infer(r);
    if (r->want_load_only) {
        model_release(r); /* nothing to compute: the slot is free again */
        struct sbuf *b = &r->h.out;
        b->len = 0;
        switch (r->ik) {
        case IK_GENERATE:
            if (r->of == OF_V1_COMPLETION) {
                if (r->stream) {
                    r->n_done = 0;
                    chunk_json(b, r, "", 0, "load", 0);
                    sb_puts(b, "data: [DONE]\n\n");
                    r->h.status = 200;
                    r->h.ctype = "text/event-stream";
                    break;
                }
                oai_head(b, r, "text_completion");
                oai_model_fp(b, r);
                sb_puts(b,
                        ",\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"load\"}],");
                usage_json(b, 0, 0);
                sb_puts(b, "}\n");
                r->h.status = 200;
                r->h.ctype = "application/json";
                break;
            }
            model_created(b, r);
            sb_puts(b, ",\"response\":\"\",\"done\":true,\"done_reason\":\"load\"}");
            req_json_ok(r);
            break;
        case IK_CHAT:
            model_created(b, r);
            sb_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
                       "\"done_reason\":\"load\"}");
            req_json_ok(r);
            break;
        case IK_EMBED:
            sb_puts(b, "{\"model\":");
            sb_json_str(b, r->model_name);
            sb_puts(b, ",\"embeddings\":[]}");
            req_json_ok(r);
            break;
        default:
            sb_puts(b, "{\"embedding\":[]}");
            req_json_ok(r);
            break;
        }
        req_ready(r);
        return;
    }
    struct sim_model *m = r->model;
    const struct sim_config *c = &g_sim.cfg;
    if (r->ik == IK_GENERATE || r->ik == IK_CHAT)
        r->cached_tokens = slot_match_prefix(m, r->slot, r);
    stats_infer(r);
    if (r->ik == IK_EMBED || r->ik == IK_EMBEDDINGS) {
        uint64_t d =
            c->embed_per_second > 0 ? (uint64_t)(r->n_inputs * 1e9 / c->embed_per_second) : 0;
        r->t_prompt_done = r->t_slot + d;
        if (d)
            req_timer_start(r, d, embed_finish);
        else
            embed_finish(r);
        return;
    }
    uint64_t pe = (uint64_t)(c->ttft_ms * 1e6);
    if (c->prompt_tps > 0)
        pe += (uint64_t)((double)(r->prompt_tokens - r->cached_tokens) * 1e9 / c->prompt_tps);
    r->t_prompt_done = r->t_slot + pe;
    r->interval_ns = c->tokens_per_second > 0 ? (uint64_t)(1e9 / c->tokens_per_second) : 0;
    /* Batched decoding shares one GPU: each stream slows with the others
     * running beside it (fixed at the request's start: an approximation). */
    if (c->contention > 0 && m->active > 1)
        r->interval_ns =
            (uint64_t)((double)r->interval_ns * (1.0 + c->contention * (m->active - 1)));
    if (r->fault == F_SLOW && r->fault_arg > 0)
        r->interval_ns += (uint64_t)r->fault_arg * 1000000ULL;
    if (r->stream) {
        r->h.ctype = r->of == OF_OLLAMA ? "application/x-ndjson" : "text/event-stream";
        r->h.status = 200;
        gen_step(r);
        return;
    }
    uint64_t end = r->t_prompt_done + (uint64_t)r->n_predict * r->interval_ns;
    uint64_t now = now_ns();
    if (end > now)
        req_timer_start(r, end - now, finish_nonstream);
    else
        finish_nonstream(r);
}

/* ---- embeddings ---- */

/* f32: 0 numbers as float64, 1 as float32, 2 a base64 string of float32s. */
static void embed_vector(struct sbuf *b, const struct sim_model *m, const char *text, size_t n,
                         int dims, int f32)
{
    uint64_t h = fnv1a64(FNV64_INIT, m->key, strlen(m->key));
    h = fnv1a64(h, "\0", 1);
    h = fnv1a64(h, text, n);
    float stackv[64];
    float *v = dims <= 64 ? stackv : malloc((size_t)dims * sizeof *v);
    if (!v)
        abort();
    float sum = 0;
    for (int i = 0; i < dims; i++) {
        uint64_t x = mix64(h + (uint64_t)i * 0x9e3779b97f4a7c15ULL);
        v[i] = (float)((double)(x >> 40) / 16777216.0 * 2.0 - 1.0);
        sum += v[i] * v[i];
    }
    float norm = (float)(1.0 / fmax(sqrt((double)sum), 1e-12));
    if (f32 == 2) {
        /* openai.floatsToBase64: the float32s little-endian, std base64. */
        static const char B64[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        size_t nb = (size_t)dims * 4;
        unsigned char *raw = malloc(nb ? nb : 1);
        if (!raw)
            abort();
        for (int i = 0; i < dims; i++) {
            float x = v[i] * norm;
            uint32_t u;
            memcpy(&u, &x, 4);
            for (int k = 0; k < 4; k++)
                raw[i * 4 + k] = (unsigned char)(u >> (8 * k));
        }
        sb_putc(b, '"');
        for (size_t i = 0; i < nb; i += 3) {
            uint32_t w = (uint32_t)raw[i] << 16;
            if (i + 1 < nb)
                w |= (uint32_t)raw[i + 1] << 8;
            if (i + 2 < nb)
                w |= raw[i + 2];
            char q[4] = {B64[(w >> 18) & 63], B64[(w >> 12) & 63],
                         i + 1 < nb ? B64[(w >> 6) & 63] : '=', i + 2 < nb ? B64[w & 63] : '='};
            sb_put(b, q, 4);
        }
        sb_putc(b, '"');
        free(raw);
        if (v != stackv)
            free(v);
        return;
    }
    sb_putc(b, '[');
    for (int i = 0; i < dims; i++) {
        if (i)
            sb_putc(b, ',');
        float x = v[i] * norm;
        sb_json_float(b, (double)x, f32);
    }
    sb_putc(b, ']');
    if (v != stackv)
        free(v);
}

static void embed_finish(struct sim_req *r)
{
    r->t_end = now_ns();
    model_release(r);
    struct sim_model *m = r->model;
    int dims = r->dims > 0 ? r->dims : m->dim;
    struct sbuf *b = &r->h.out;
    b->len = 0;
    const cJSON *in =
        cJSON_GetObjectItemCaseSensitive(r->json, r->ik == IK_EMBEDDINGS ? "prompt" : "input");
    if (r->ik == IK_EMBEDDINGS) {
        sb_puts(b, "{\"embedding\":");
        embed_vector(b, m, in->valuestring, strlen(in->valuestring), dims, 0);
        sb_putc(b, '}');
        req_json_ok(r);
        req_ready(r);
        return;
    }
    if (r->of == OF_V1_EMBED)
        sb_puts(b, "{\"object\":\"list\",\"data\":[");
    else {
        sb_puts(b, "{\"model\":");
        sb_json_str(b, r->model_name);
        sb_puts(b, ",\"embeddings\":[");
    }
    int i = 0;
    const cJSON *it = cJSON_IsString(in) ? in : in->child;
    for (; it; it = cJSON_IsString(in) ? NULL : it->next, i++) {
        if (i)
            sb_putc(b, ',');
        if (r->of == OF_V1_EMBED)
            sb_puts(b, "{\"object\":\"embedding\",\"embedding\":");
        embed_vector(b, m, it->valuestring, strlen(it->valuestring), dims, r->embed_base64 ? 2 : 1);
        if (r->of == OF_V1_EMBED)
            sb_printf(b, ",\"index\":%d}", i);
    }
    if (r->of == OF_V1_EMBED) {
        sb_puts(b, "],\"model\":");
        sb_json_str(b, r->model_name);
        sb_printf(b, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}\n", r->prompt_tokens,
                  r->prompt_tokens);
        r->h.status = 200;
        r->h.ctype = "application/json";
    } else {
        sb_putc(b, ']');
        metrics_json(b, r);
        sb_putc(b, '}');
        req_json_ok(r);
    }
    req_ready(r);
}

/* ---- request parsing ---- */

static int tokens_of(size_t bytes)
{
    size_t t = bytes / 4;
    return t < 1 ? 1 : (t > 100000000 ? 100000000 : (int)t);
}

/* keep_alive: number = seconds, string = Go duration, negative = forever. */
static int parse_keep_alive(struct sim_req *r, const cJSON *j, int oai)
{
    const cJSON *k = cJSON_GetObjectItemCaseSensitive(j, "keep_alive");
    if (!k || cJSON_IsNull(k))
        return 1;
    char err[160];
    if (cJSON_IsNumber(k)) {
        r->session_ns = k->valuedouble < 0 ? -1 : (int64_t)(k->valuedouble * 1e9);
    } else if (cJSON_IsString(k)) {
        int64_t ns;
        if (go_parse_duration(k->valuestring, &ns, err, sizeof err) < 0) {
            if (oai)
                req_error_oai(r, 400, "invalid_request_error", err, 0);
            else
                req_error(r, 400, err);
            return 0;
        }
        r->session_ns = ns < 0 ? -1 : ns;
    } else {
        snprintf(err, sizeof err, "Unsupported type: '%s'",
                 cJSON_IsBool(k)    ? "bool"
                 : cJSON_IsArray(k) ? "[]interface {}"
                                    : "map[string]interface {}");
        req_error(r, 400, err);
        return 0;
    }
    r->session_given = 1;
    return 1;
}

/* num_predict, seed, temperature from options (or OpenAI's top-level). */
static void parse_sampling(struct sim_req *r, const cJSON *j, int oai, uint64_t *seed_mix)
{
    double temp = oai ? 1.0 : 0.8; /* Ollama's defaults for each API */
    int have_seed = 0;
    double seed = 0;
    const cJSON *o = oai ? j : cJSON_GetObjectItemCaseSensitive(j, "options");
    if (cJSON_IsObject(o)) {
        const cJSON *np = cJSON_GetObjectItemCaseSensitive(o, oai ? "max_tokens" : "num_predict");
        if (cJSON_IsNumber(np) && np->valuedouble > 0) {
            r->n_predict = np->valuedouble > 1e6 ? 1000000 : (int)np->valuedouble;
            r->predict_given = 1;
        }
        const cJSON *s = cJSON_GetObjectItemCaseSensitive(o, "seed");
        if (cJSON_IsNumber(s)) {
            have_seed = 1;
            seed = s->valuedouble;
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "temperature");
        if (cJSON_IsNumber(t))
            temp = t->valuedouble;
    }
    uint64_t x = (uint64_t)llround(temp * 1000.0);
    /* Greedy decoding (temperature 0) does not depend on the seed. */
    if (have_seed && temp != 0)
        x ^= mix64((uint64_t)(int64_t)seed + 0x5eed);
    *seed_mix = mix64(x);
}

static void set_msgs(struct sim_req *r, size_t n)
{
    if (n <= 8) {
        r->msg_hash = r->msg_hash_inline;
        r->msg_len = r->msg_len_inline;
    } else {
        r->msg_hash = malloc(n * sizeof *r->msg_hash);
        r->msg_len = malloc(n * sizeof *r->msg_len);
        if (!r->msg_hash || !r->msg_len)
            abort();
    }
}

static uint64_t msg_hash(const char *role, const char *content, size_t len)
{
    uint64_t h = fnv1a64(FNV64_INIT, role, strlen(role));
    h = fnv1a64(h, "", 1);
    return fnv1a64(h, content, len);
}

static void start(struct sim_req *r, struct sim_model *m)
{
    r->n_done = 0;
    int rc = model_acquire(m, r);
    if (rc < 0) {
        req_error(r, 503, ERR_MAX_QUEUE);
        return;
    }
    if (rc == 1)
        infer_slot_ready(r);
    /* else queued; models.c calls infer_slot_ready (maybe already did) */
}

static void seed_generation(struct sim_req *r, uint64_t content_hash, uint64_t seed_mix)
{
    uint64_t h = mix64(g_sim.cfg.seed ^ 0x0117a3a5);
    h = fnv1a64(h, r->model->key, strlen(r->model->key));
    h ^= mix64(content_hash);
    h ^= seed_mix;
    r->gen_seed = mix64(h);
    r->prng = r->gen_seed;
    r->ctx_seed = mix64(content_hash ^ 0xc0ffee);
    snprintf(r->oai_id, sizeof r->oai_id, "%s-%d", r->of == OF_V1_CHAT ? "chatcmpl" : "cmpl",
             (int)(r->gen_seed % 999));
}

/*
 * A chat whose last message is the assistant's: Ollama leaves that turn open
 * so the model continues it (template.go since v0.2.8, "preserve last
 * assistant message"; the model's own templates close only a non-last
 * assistant turn). The prefill is prompt: it is in prompt_eval_count.
 *
 * When the prefill is what this node would have generated for the
 * conversation without it (its first k tokens, exactly), the generator is
 * fast-forwarded past them: the continuation is the rest of that same
 * answer, so partial text + continuation = one uninterrupted generation, and
 * the answer still ends where it would have (without num_predict, after
 * --num-predict tokens in all, possibly 0 more; with num_predict, that many
 * new tokens, as num_predict counts only generated tokens). Any other prefill
 * seeds the text with the whole conversation and continues it mid-sentence.
 */
static void continue_prefill(struct sim_req *r, const char *prefill, uint64_t seed_mix)
{
    uint64_t h = FNV64_INIT;
    for (size_t k = 0; k + 1 < r->nmsg; k++)
        h = fnv1a64(h, &r->msg_hash[k], sizeof r->msg_hash[k]);
    seed_generation(r, h, seed_mix);
    size_t len = strlen(prefill), pos = 0;
    uint64_t state = r->prng;
    int k = 0;
    char tok[SIMGEN_TOKEN_MAX];
    while (pos < len) {
        size_t n = simgen_token(&state, VOCAB, k == 0, tok);
        if (n > len - pos || memcmp(prefill + pos, tok, n) != 0)
            break;
        pos += n;
        k++;
    }
    if (pos == len) {
        r->prng = state;
        r->gen_offset = k;
        if (!r->predict_given)
            r->n_predict = k >= r->n_predict ? 0 : r->n_predict - k;
        return;
    }
    h = FNV64_INIT;
    for (size_t i = 0; i < r->nmsg; i++)
        h = fnv1a64(h, &r->msg_hash[i], sizeof r->msg_hash[i]);
    seed_generation(r, h, seed_mix);
    r->gen_offset = 1;
}

/* ---- thinking ---- */

/* The request's think value as Ollama reads it: -1 absent (the model's
 * default), 0 off, 1 on (true or a level). /api: `think` (api.ThinkValue);
 * /v1: `reasoning_effort` or `reasoning.effort`. Returns 0 after preparing
 * Ollama's 400 for a bad value. */
static int parse_think(struct sim_req *r, const cJSON *j, int oai, int *think)
{
    *think = -1;
    if (!oai) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "think");
        if (!t || cJSON_IsNull(t))
            return 1;
        if (cJSON_IsBool(t)) {
            *think = cJSON_IsTrue(t);
            return 1;
        }
        if (cJSON_IsString(t)) {
            const char *v = t->valuestring;
            if (strcmp(v, "high") && strcmp(v, "medium") && strcmp(v, "low") && strcmp(v, "max")) {
                char msg[SIM_NAME_MAX + 120];
                snprintf(msg, sizeof msg,
                         "invalid think value: \"%.200s\" (must be \"high\", \"medium\", \"low\", "
                         "\"max\", true, or false)",
                         v);
                req_error(r, 400, msg);
                return 0;
            }
            *think = 1;
            return 1;
        }
        req_error(
            r, 400,
            "think must be a boolean or string (\"high\", \"medium\", \"low\", \"max\", true, "
            "or false)");
        return 0;
    }
    const char *effort = json_str(j, "reasoning_effort");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "reasoning");
    if (!effort && cJSON_IsObject(rs))
        effort = json_str(rs, "effort");
    if (!effort || !*effort)
        return 1;
    static const char *const ON[] = {"minimal", "low", "medium", "high", "xhigh", "ultra", "max"};
    if (strcmp(effort, "none") == 0) {
        *think = 0;
        return 1;
    }
    for (size_t i = 0; i < sizeof ON / sizeof ON[0]; i++)
        if (strcmp(effort, ON[i]) == 0) {
            *think = 1;
            return 1;
        }
    char msg[SIM_NAME_MAX + 160];
    snprintf(msg, sizeof msg,
             "invalid reasoning value: \"%.200s\" (must be \"minimal\", \"low\", \"medium\", "
             "\"high\", \"xhigh\", \"ultra\", \"max\", or \"none\")",
             effort);
    req_error_oai(r, 400, "invalid_request_error", msg, 0);
    return 0;
}

static int has_cap(const struct sim_model *m, const char *cap)
{
    size_t n = strlen(cap);
    for (const char *c = m->caps; *c;) {
        const char *e = strchr(c, '+');
        size_t len = e ? (size_t)(e - c) : strlen(c);
        if (len == n && memcmp(c, cap, n) == 0)
            return 1;
        c += len + (e ? 1 : 0);
    }
    return 0;
}

/* Ollama's capability check: a thinking model thinks unless told not to; any
 * other refuses think:true. Returns 0 after preparing the 400. */
static int check_think(struct sim_req *r, const struct sim_model *m, int think)
{
    if (has_cap(m, "thinking")) {
        r->thinks = think != 0;
        return 1;
    }
    if (think == 1) {
        char msg[SIM_NAME_MAX + 48];
        snprintf(msg, sizeof msg, "\"%s\" does not support thinking", r->model_name);
        req_error(r, 400, msg);
        return 0;
    }
    return 1;
}

/* After seeding and any prefill: THINK_TOKENS of thinking come first. They
 * are generated tokens (eval_count, num_predict), not part of the answer's
 * text; a continued answer (a prefill) does not think again. */
static void plan_thinking(struct sim_req *r)
{
    r->think_prng = mix64(r->gen_seed ^ 0x7417ce);
    if (!r->thinks || r->gen_offset > 0)
        return;
    if (r->predict_given) {
        r->n_think = r->n_predict < THINK_TOKENS ? r->n_predict : THINK_TOKENS;
    } else {
        r->n_think = THINK_TOKENS;
        r->n_predict += THINK_TOKENS;
    }
}

/*
 * A model with the tools capability, given tools and a conversation whose
 * last message is the user's, answers with one call of the first tool
 * (Ollama's parsers turn the model's call text into message.tool_calls):
 * its generated tokens are the call, not text. Arguments: each of the
 * tool's required parameters gets a word of the answer it would have
 * written; the id is derived from the generation seed. A conversation that
 * ends with a tool result is answered with text.
 */
static void plan_tool_call(struct sim_req *r, const cJSON *tools)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(tools, 0), "function");
    const char *name = json_str(fn, "name");
    if (!name || !*name || strlen(name) >= sizeof r->tool_name)
        return;
    str_copy(r->tool_name, sizeof r->tool_name, name);
    snprintf(r->tool_id, sizeof r->tool_id, "call_%08llx",
             (unsigned long long)(mix64(r->gen_seed ^ 0x7001) & 0xffffffffULL));
    struct sbuf a = {0};
    sb_putc(&a, '{');
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    const cJSON *req = cJSON_GetObjectItemCaseSensitive(params, "required");
    uint64_t st = r->prng;
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, req)
    {
        if (!cJSON_IsString(it))
            continue;
        char w[SIMGEN_TOKEN_MAX];
        size_t n = simgen_token(&st, VOCAB, 1, w);
        if (i++)
            sb_putc(&a, ',');
        sb_json_str(&a, it->valuestring);
        sb_putc(&a, ':');
        sb_json_strn(&a, w, n);
    }
    sb_putc(&a, '}');
    if (a.len < sizeof r->tool_args) {
        memcpy(r->tool_args, a.p, a.len);
        r->tool_args[a.len] = 0;
        struct sbuf c = {0};
        sb_puts(&c, "{\"id\":");
        sb_json_str(&c, r->tool_id);
        sb_puts(&c, ",\"function\":{\"index\":0,\"name\":");
        sb_json_str(&c, r->tool_name);
        sb_puts(&c, ",\"arguments\":");
        sb_put(&c, a.p, a.len);
        sb_puts(&c, "}}");
        if (c.len < sizeof r->tool_call) {
            memcpy(r->tool_call, c.p, c.len);
            r->tool_call[c.len] = 0;
        }
        sb_free(&c);
    }
    sb_free(&a);
}

static void not_found(struct sim_req *r, const char *name, int quoted)
{
    char msg[SIM_NAME_MAX + 64];
    if (quoted)
        snprintf(msg, sizeof msg, "model \"%s\" not found, try pulling it first", name);
    else
        snprintf(msg, sizeof msg, "model '%s' not found", name);
    req_error(r, 404, msg);
}

static void unload_answer(struct sim_req *r, struct sim_model *m, int chat)
{
    model_request_unload(m);
    struct sbuf *b = &r->h.out;
    b->len = 0;
    model_created(b, r);
    if (chat)
        sb_puts(b, ",\"message\":{\"role\":\"assistant\",\"content\":\"\"}");
    else
        sb_puts(b, ",\"response\":\"\"");
    sb_puts(b, ",\"done\":true,\"done_reason\":\"unload\"}");
    req_json_ok(r);
    req_ready(r);
}

static void handle_generate(struct sim_req *r)
{
    int oai = r->route == R_V1_COMPLETIONS;
    const char *gt = oai ? "CompletionRequest" : "GenerateRequest";
    cJSON *j = req_body_object(r, oai ? "openai.CompletionRequest" : "api.GenerateRequest", oai);
    if (!j)
        return;
    const cJSON *vm, *vp, *vs, *vst;
    if (!json_field(r, j, "model", cJSON_String, gt, "string", oai, &vm) ||
        !json_field(r, j, "prompt", cJSON_String, gt, "string", oai, &vp) ||
        !json_field(r, j, "system", cJSON_String, gt, "string", oai, &vs) ||
        !json_field(r, j, "stream", cJSON_True, gt, oai ? "bool" : "*bool", oai, &vst))
        return;
    const char *name = vm ? vm->valuestring : "";
    str_copy(r->model_name, sizeof r->model_name, name);
    if (!oai && !parse_keep_alive(r, j, oai))
        return;
    r->ik = IK_GENERATE;
    r->of = oai ? OF_V1_COMPLETION : OF_OLLAMA;
    r->stream = oai ? (vst && cJSON_IsTrue(vst)) : !(vst && !cJSON_IsTrue(vst));
    if (oai) {
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
        r->include_usage = cJSON_IsObject(so) &&
                           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    }
    r->raw = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "raw"));
    int think = -1;
    if (!oai && !parse_think(r, j, 0, &think))
        return;
    struct sim_model *m = model_find(name);
    if (!m) {
        not_found(r, name, 0);
        return;
    }
    r->model = m;
    const char *prompt = vp ? vp->valuestring : "";
    const char *system = vs ? vs->valuestring : "";
    if (!*prompt && r->session_given && r->session_ns == 0) {
        unload_answer(r, m, 0);
        return;
    }
    if (!oai && !check_think(r, m, think))
        return;
    if (m->embed) {
        char msg[SIM_NAME_MAX + 48];
        snprintf(msg, sizeof msg, "\"%s\" does not support generate", name);
        req_error(r, 400, msg);
        return;
    }
    r->want_load_only = !*prompt;
    r->prompt = prompt;
    r->prompt_len = strlen(prompt);
    r->prompt_tokens = tokens_of(r->prompt_len + strlen(system));
    r->n_predict = g_sim.cfg.num_predict;
    uint64_t seed_mix;
    parse_sampling(r, j, oai, &seed_mix);
    uint64_t ch = fnv1a64(FNV64_INIT, system, strlen(system));
    ch = fnv1a64(ch, "", 1);
    ch = fnv1a64(ch, prompt, r->prompt_len);
    seed_generation(r, ch, seed_mix);
    plan_thinking(r);
    start(r, m);
}

/* Flattens messages (Ollama's or OpenAI's) into per-message hashes. */
static int parse_messages(struct sim_req *r, const cJSON *msgs, int oai, uint64_t *content_hash,
                          size_t *total)
{
    size_t n = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, msgs)
    {
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        n += cJSON_IsArray(c) ? (size_t)cJSON_GetArraySize(c) : 1;
    }
    set_msgs(r, n ? n : 1);
    size_t i = 0;
    uint64_t h = FNV64_INIT;
    *total = 0;
    cJSON_ArrayForEach(it, msgs)
    {
        if (!cJSON_IsObject(it)) {
            if (oai)
                req_error_oai(r, 400, "invalid_request_error", "invalid message format", 0);
            else
                req_error(r, 400,
                          "json: cannot unmarshal into Go struct field ChatRequest.messages "
                          "of type api.Message");
            return 0;
        }
        const char *role = json_str(it, "role");
        if (!role)
            role = "";
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
        if (oai && cJSON_IsArray(c)) {
            /* OpenAI content parts become one message each, as Ollama does */
            const cJSON *part;
            cJSON_ArrayForEach(part, c)
            {
                const char *type = json_str(part, "type");
                const char *text = type && strcmp(type, "text") == 0 ? json_str(part, "text") : "";
                if (!type || !text) {
                    req_error_oai(r, 400, "invalid_request_error", "invalid message format", 0);
                    return 0;
                }
                size_t len = strlen(text);
                r->msg_hash[i] = msg_hash(role, text, len);
                r->msg_len[i++] = (uint32_t)len;
                *total += len;
            }
            continue;
        }
        const char *text = cJSON_IsString(c) ? c->valuestring : "";
        if (c && !cJSON_IsString(c) && !cJSON_IsNull(c)) {
            if (oai)
                req_error_oai(r, 400, "invalid_request_error", "invalid message content type", 0);
            else
                req_error(r, 400,
                          "json: cannot unmarshal into Go struct field Message.messages.content of "
                          "type string");
            return 0;
        }
        size_t len = strlen(text);
        r->msg_hash[i] = msg_hash(role, text, len);
        r->msg_len[i++] = (uint32_t)len;
        *total += len;
    }
    r->nmsg = i;
    for (size_t k = 0; k < i; k++)
        h = fnv1a64(h, &r->msg_hash[k], sizeof r->msg_hash[k]);
    *content_hash = h;
    return 1;
}

static void handle_chat(struct sim_req *r)
{
    int oai = r->route == R_V1_CHAT;
    const char *gt = oai ? "ChatCompletionRequest" : "ChatRequest";
    cJSON *j = req_body_object(r, oai ? "openai.ChatCompletionRequest" : "api.ChatRequest", oai);
    if (!j)
        return;
    const cJSON *vm, *vmsgs, *vst;
    if (!json_field(r, j, "model", cJSON_String, gt, "string", oai, &vm) ||
        !json_field(r, j, "messages", cJSON_Array, gt, oai ? "[]openai.Message" : "[]api.Message",
                    oai, &vmsgs) ||
        !json_field(r, j, "stream", cJSON_True, gt, oai ? "bool" : "*bool", oai, &vst))
        return;
    const char *name = vm ? vm->valuestring : "";
    str_copy(r->model_name, sizeof r->model_name, name);
    if (oai && cJSON_GetArraySize(vmsgs) == 0) {
        req_error_oai(r, 400, "invalid_request_error", "[] is too short - 'messages'", 0);
        return;
    }
    if (!oai && !parse_keep_alive(r, j, oai))
        return;
    r->ik = IK_CHAT;
    r->of = oai ? OF_V1_CHAT : OF_OLLAMA;
    r->stream = oai ? (vst && cJSON_IsTrue(vst)) : !(vst && !cJSON_IsTrue(vst));
    if (oai) {
        const cJSON *so = cJSON_GetObjectItemCaseSensitive(j, "stream_options");
        r->include_usage = cJSON_IsObject(so) &&
                           cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    }
    int think = -1;
    if (!parse_think(r, j, oai, &think))
        return;
    struct sim_model *m = model_find(name);
    struct mname n;
    if (!m && !mname_parse(name, &n)) {
        req_error(r, 400, "model is required");
        return;
    }
    if (!m) {
        not_found(r, name, 0);
        return;
    }
    r->model = m;
    size_t nmsgs = vmsgs ? (size_t)cJSON_GetArraySize(vmsgs) : 0;
    if (nmsgs == 0 && r->session_given && r->session_ns == 0) {
        unload_answer(r, m, 1);
        return;
    }
    if (!check_think(r, m, think))
        return;
    const cJSON *vtools = cJSON_GetObjectItemCaseSensitive(j, "tools");
    if (!cJSON_IsArray(vtools))
        vtools = NULL;
    if (vtools && cJSON_GetArraySize(vtools) > 0 && !has_cap(m, "tools")) {
        /* scheduleRunner: "<name> does not support tools" (model.Name is
         * the full name) */
        struct mname fn;
        char msg[SIM_NAME_MAX * 4 + 48];
        mname_parse(name, &fn);
        snprintf(msg, sizeof msg, "%s/%s/%s:%s does not support tools", fn.host, fn.ns, fn.model,
                 fn.tag);
        req_error(r, 400, msg);
        return;
    }
    if (m->embed) {
        char msg[SIM_NAME_MAX + 48];
        snprintf(msg, sizeof msg, "\"%s\" does not support chat", name);
        req_error(r, 400, msg);
        return;
    }
    uint64_t ch = FNV64_INIT;
    size_t total = 0;
    if (nmsgs && !parse_messages(r, vmsgs, oai, &ch, &total))
        return;
    r->want_load_only = nmsgs == 0;
    r->prompt_tokens = tokens_of(total);
    r->n_predict = g_sim.cfg.num_predict;
    uint64_t seed_mix;
    parse_sampling(r, j, oai, &seed_mix);
    const cJSON *last = nmsgs ? cJSON_GetArrayItem(vmsgs, (int)nmsgs - 1) : NULL;
    const char *last_role = last ? json_str(last, "role") : NULL;
    const char *prefill = last ? json_str(last, "content") : NULL;
    if (last_role && prefill && strcmp(last_role, "assistant") == 0 && r->nmsg > 0)
        continue_prefill(r, prefill, seed_mix);
    else
        seed_generation(r, ch, seed_mix);
    plan_thinking(r);
    if (vtools && cJSON_GetArraySize(vtools) > 0 && last_role && strcmp(last_role, "user") == 0)
        plan_tool_call(r, vtools);
    start(r, m);
}

static void handle_embed(struct sim_req *r)
{
    int oai = r->route == R_V1_EMBEDDINGS;
    int legacy = r->route == R_EMBEDDINGS;
    const char *gt = oai ? "EmbedRequest" : legacy ? "EmbeddingRequest" : "EmbedRequest";
    cJSON *j = req_body_object(r,
                               oai      ? "openai.EmbedRequest"
                               : legacy ? "api.EmbeddingRequest"
                                        : "api.EmbedRequest",
                               oai);
    if (!j)
        return;
    const cJSON *vm;
    if (!json_field(r, j, "model", cJSON_String, gt, "string", oai, &vm))
        return;
    const char *name = vm ? vm->valuestring : "";
    str_copy(r->model_name, sizeof r->model_name, name);
    if (!oai && !parse_keep_alive(r, j, oai))
        return;
    if (oai) {
        /* openai.EmbedRequest.EncodingFormat, checked by the middleware
         * (Ollama 0.12.7+): "float" or "base64", any case. */
        const cJSON *ef;
        if (!json_field(r, j, "encoding_format", cJSON_String, gt, "string", 1, &ef))
            return;
        if (ef && ef->valuestring[0]) {
            if (strcasecmp(ef->valuestring, "base64") == 0) {
                r->embed_base64 = 1;
            } else if (strcasecmp(ef->valuestring, "float") != 0) {
                char msg[SIM_NAME_MAX + 96];
                snprintf(msg, sizeof msg,
                         "Invalid value for 'encoding_format' = %s. Supported values: ['float', "
                         "'base64'].",
                         ef->valuestring);
                req_error_oai(r, 400, "invalid_request_error", msg, 0);
                return;
            }
        }
    }
    r->ik = legacy ? IK_EMBEDDINGS : IK_EMBED;
    r->of = oai ? OF_V1_EMBED : OF_OLLAMA;
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(j, "dimensions");
    if (cJSON_IsNumber(d) && d->valuedouble > 0)
        r->dims = d->valuedouble > 8192 ? 8192 : (int)d->valuedouble;
    size_t total = 0;
    int n_inputs = 0;
    if (legacy) {
        const cJSON *p;
        if (!json_field(r, j, "prompt", cJSON_String, gt, "string", 0, &p))
            return;
        struct mname n;
        if (!mname_parse(name, &n)) {
            req_error(r, 400, "model is required");
            return;
        }
        if (!p) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, "prompt");
            cJSON_AddStringToObject(j, "prompt", "");
            p = cJSON_GetObjectItemCaseSensitive(j, "prompt");
        }
        total = strlen(p->valuestring);
        n_inputs = total ? 1 : 0;
    } else {
        cJSON *in = cJSON_GetObjectItemCaseSensitive(j, "input");
        if (oai) {
            if (cJSON_IsString(in) && !in->valuestring[0]) {
                /* OpenAI's "" is one empty input */
            } else if (!in || cJSON_IsNull(in) ||
                       (cJSON_IsArray(in) && cJSON_GetArraySize(in) == 0)) {
                req_error_oai(r, 400, "invalid_request_error", "invalid input", 0);
                return;
            }
        }
        if (cJSON_IsString(in)) {
            total = strlen(in->valuestring);
            n_inputs = (total || oai) ? 1 : 0;
        } else if (cJSON_IsArray(in)) {
            const cJSON *it;
            cJSON_ArrayForEach(it, in)
            {
                if (!cJSON_IsString(it)) {
                    req_error(r, 400, "invalid input type");
                    return;
                }
                total += strlen(it->valuestring);
                n_inputs++;
            }
        } else if (in && !cJSON_IsNull(in)) {
            req_error(r, 400, "invalid input type");
            return;
        }
        if (!in || cJSON_IsNull(in)) {
            cJSON_DeleteItemFromObjectCaseSensitive(j, "input");
            cJSON_AddArrayToObject(j, "input");
        }
    }
    struct sim_model *m = model_find(name);
    if (!m) {
        not_found(r, name, 1);
        return;
    }
    r->model = m;
    r->n_inputs = n_inputs;
    r->want_load_only = n_inputs == 0;
    r->prompt_tokens = 0;
    if (!legacy && cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(j, "input"))) {
        const cJSON *it;
        cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(j, "input")) r->prompt_tokens +=
            tokens_of(strlen(it->valuestring));
    } else {
        r->prompt_tokens = tokens_of(total);
    }
    start(r, m);
}

void infer_handle(struct sim_req *r)
{
    r->h.out.len = 0;
    switch (r->route) {
    case R_GENERATE:
    case R_V1_COMPLETIONS:
        handle_generate(r);
        break;
    case R_CHAT:
    case R_V1_CHAT:
        handle_chat(r);
        break;
    case R_EMBED:
    case R_EMBEDDINGS:
    case R_V1_EMBEDDINGS:
        handle_embed(r);
        break;
    default:
        req_error(r, 404, "not found");
        break;
    }
}
