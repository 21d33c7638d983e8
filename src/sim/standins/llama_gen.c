/*
 * llama_gen.c - what the llama-server stand-in generates: deterministic
 * text, the -np slots with their prompt caches and FIFO queue, token pacing,
 * stop words, and the chat / completion / OpenAI / embedding formats with
 * llama-server's timings.
 */
#include "llama_sim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---------------------------------------------------------------- text */

static const char *const VOCAB[64] = {
    "the",   "model", "runs",  "across",  "many",   "machines", "and",    "every",
    "layer", "lives", "on",    "a",       "remote", "device",   "while",  "tokens",
    "flow",  "back",  "to",    "one",     "server", "that",     "serves", "them",
    "in",    "order", "with",  "steady",  "pace",   "so",       "tests",  "can",
    "trust", "each",  "reply", "because", "it",     "is",       "stable", "under",
    "load",  "when",  "split", "tensors", "move",   "over",     "the",    "wire",
    "cache", "hits",  "save",  "time",    "for",    "every",    "turn",   "bright",
    "small", "fast",  "quiet", "shards",  "join",   "into",     "whole",  "answers"};

/* Appends the next deterministic token to r->text. */
static void next_token(struct req *r)
{
    /* JSON mode (a grammar-constrained answer): {"answer": "<words>"}, the
     * braces and quotes being tokens of their own; a limit can cut it. */
    if (r->json_mode && r->n_done == 0) {
        sb_puts(&r->text, "{\"answer\": \"");
        r->n_done++;
        return;
    }
    if (r->json_mode && !r->limit_given && r->n_done == r->n_target - 1) {
        sb_puts(&r->text, "\"}");
        r->n_done++;
        return;
    }
    char tok[SIMGEN_TOKEN_MAX];
    size_t n = simgen_token(&r->prng, VOCAB, r->n_done == (r->json_mode ? 1 : 0), tok);
    sb_put(&r->text, tok, n);
    r->n_done++;
}

int tokens_of(size_t bytes)
{
    return bytes ? (int)((bytes + 3) / 4) : 1;
}

/* ---------------------------------------------------------------- JSON pieces */

const char *model_id(void)
{
    return g_ls.alias ? g_ls.alias : g_ls.model;
}

/* "<p>_n", "<p>_ms", "<p>_per_token_ms", "<p>_per_second" of one phase. */
static void phase_timings(struct sbuf *b, const char *p, int n, double ms)
{
    sb_printf(b, "\"%s_n\":%d,\"%s_ms\":", p, n, p);
    put_double(b, ms);
    sb_printf(b, ",\"%s_per_token_ms\":", p);
    put_double(b, n ? ms / n : 0);
    sb_printf(b, ",\"%s_per_second\":", p);
    put_double(b, ms > 0 ? 1e3 * n / ms : 0);
}

static void timings_json(struct sbuf *b, struct req *r)
{
    sb_printf(b, "\"timings\":{\"cache_n\":%d,", r->cache_n);
    phase_timings(b, "prompt", r->prompt_n, ms_between(r->t_start, r->t_prompt_done));
    sb_puts(b, ",");
    phase_timings(b, "predicted", r->n_done,
                  ms_between(r->t_prompt_done, r->t_end ? r->t_end : now_ns()));
    sb_puts(b, "}");
}

static void usage_json(struct sbuf *b, struct req *r)
{
    int p = r->prompt_n + r->cache_n;
    sb_printf(b, "\"usage\":{\"completion_tokens\":%d,\"prompt_tokens\":%d,\"total_tokens\":%d}",
              r->n_done, p, p + r->n_done);
}

static void oai_head(struct sbuf *b, struct req *r, const char *object)
{
    sb_printf(b, "\"created\":%lld,\"id\":\"%s\",\"model\":", r->created, r->id);
    sb_json_plain(b, model_id(), strlen(model_id()));
    sb_printf(b, ",\"system_fingerprint\":\"b0000-sollol-sim\",\"object\":\"%s\"", object);
}

static const char *finish_reason(struct req *r)
{
    return strcmp(r->stop_type, "limit") == 0 ? "length" : "stop";
}

static void sse(struct req *r, const struct sbuf *payload)
{
    sb_puts(&r->h.out, "data: ");
    sb_put(&r->h.out, payload->p, payload->len);
    sb_puts(&r->h.out, "\n\n");
}

/* One streamed piece of text in the route's format. */
static void emit_piece(struct req *r, const char *s, size_t n)
{
    if (!r->stream || n == 0)
        return;
    struct sbuf b = {0};
    if (r->route == RT_CHAT) {
        sb_puts(&b, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":");
        sb_json_plain(&b, s, n);
        sb_puts(&b, "}}],");
        oai_head(&b, r, "chat.completion.chunk");
        sb_puts(&b, "}");
    } else if (r->route == RT_V1_COMPLETIONS) {
        sb_puts(&b, "{\"choices\":[{\"text\":");
        sb_json_plain(&b, s, n);
        sb_puts(&b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],");
        oai_head(&b, r, "text_completion");
        sb_puts(&b, "}");
    } else {
        sb_puts(&b, "{\"index\":0,\"content\":");
        sb_json_plain(&b, s, n);
        sb_printf(&b,
                  ",\"tokens\":[],\"stop\":false,\"id_slot\":%d,\"tokens_predicted\":%d,"
                  "\"tokens_evaluated\":%d}",
                  r->slot_id, r->n_done, r->prompt_n + r->cache_n);
    }
    sse(r, &b);
    sb_free(&b);
    simhttp_wake(&r->h);
}

static void completion_final_fields(struct sbuf *b, struct req *r)
{
    sb_printf(b, ",\"tokens\":[],\"id_slot\":%d,\"stop\":true,\"model\":", r->slot_id);
    sb_json_plain(b, model_id(), strlen(model_id()));
    sb_printf(
        b,
        ",\"tokens_predicted\":%d,\"tokens_evaluated\":%d,\"generation_settings\":{\"n_predict\":%"
        "d,"
        "\"seed\":%llu},\"prompt\":",
        r->n_done, r->prompt_n + r->cache_n, r->n_predict, (unsigned long long)r->seed);
    sb_json_plain(b, r->prompt.p ? r->prompt.p : "", r->prompt.len);
    sb_printf(b,
              ",\"has_new_line\":false,\"truncated\":false,\"stop_type\":\"%s\",\"stopping_word\":",
              r->stop_type);
    sb_json_plain(b, r->stopping_word, strlen(r->stopping_word));
    sb_printf(b, ",\"tokens_cached\":%d,", r->cache_n + r->prompt_n + r->n_done);
    timings_json(b, r);
}

/* The end of an OpenAI-style object: id and model fields, usage, timings.
 * A stream's finish chunk carries no usage, as the real server's: only
 * timings, or (stream_options.include_usage) neither, usage and timings
 * then coming in one more chunk with no choices. */
static void oai_tail(struct sbuf *b, struct req *r, const char *object)
{
    oai_head(b, r, object);
    if (!r->stream) {
        sb_puts(b, ",");
        usage_json(b, r);
    }
    if (!r->stream || !r->include_usage) {
        sb_puts(b, ",");
        timings_json(b, r);
    }
    sb_puts(b, "}");
    if (r->stream && r->include_usage) {
        sb_puts(b, "\n\ndata: {\"choices\":[],");
        oai_head(b, r, object);
        sb_puts(b, ",");
        usage_json(b, r);
        sb_puts(b, ",");
        timings_json(b, r);
        sb_puts(b, "}");
    }
}

/* The final answer (not streamed), or a stream's last event; a stream's
 * text went out piece by piece already, so its final event has none. */
static void finish_output(struct req *r)
{
    const char *text = sb_cstr(&r->text);
    size_t tlen = r->stream ? 0 : r->sent; /* the text up to the cut */
    struct sbuf event = {0};
    struct sbuf *o = r->stream ? &event : &r->h.out;
    o->len = 0;
    if (r->route == RT_CHAT) {
        if (r->stream) {
            sb_printf(o, "{\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"delta\":{}}],",
                      finish_reason(r));
        } else {
            sb_printf(o,
                      "{\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"message\":{\"role\":"
                      "\"assistant\",\"content\":",
                      finish_reason(r));
            sb_json_plain(o, text, tlen);
            sb_puts(o, "}}],");
        }
        oai_tail(o, r, r->stream ? "chat.completion.chunk" : "chat.completion");
    } else if (r->route == RT_V1_COMPLETIONS) {
        sb_puts(o, "{\"choices\":[{\"text\":");
        sb_json_plain(o, text, tlen);
        sb_printf(o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}],",
                  finish_reason(r));
        oai_tail(o, r, "text_completion");
    } else {
        sb_puts(o, "{\"index\":0,\"content\":");
        sb_json_plain(o, text, tlen);
        completion_final_fields(o, r);
        sb_puts(o, "}");
    }
    if (!r->stream) {
        simhttp_json(&r->h, 200);
        return;
    }
    sse(r, &event);
    sb_free(&event);
    if (r->route == RT_CHAT || r->route == RT_V1_COMPLETIONS)
        sb_puts(&r->h.out, "data: [DONE]\n\n"); /* OpenAI's end; /completion has none */
    r->h.out_done = 1;
    simhttp_wake(&r->h);
}

/* ---------------------------------------------------------------- generation */

/* Emits what is safe to emit: everything up to a complete stop word (then
 * the generation ends), else everything except a tail that could still
 * become a stop word, as llama-server holds partial matches back. */
static int emit_safe(struct req *r, int final)
{
    const char *t = sb_cstr(&r->text);
    size_t len = r->text.len;
    /* A match always starts at or after `sent`: earlier text was checked. */
    for (int i = 0; i < r->nstops; i++) {
        const char *hit = strstr(t + r->sent, r->stops[i]);
        if (hit) {
            size_t at = (size_t)(hit - t);
            emit_piece(r, t + r->sent, at - r->sent);
            r->sent = at;
            r->stop_type = "word";
            snprintf(r->stopping_word, sizeof r->stopping_word, "%s", r->stops[i]);
            return 1;
        }
    }
    size_t keep = 0;
    if (!final) {
        for (int i = 0; i < r->nstops; i++) {
            size_t sl = strlen(r->stops[i]);
            for (size_t k = sl > 0 ? sl - 1 : 0; k > keep; k--)
                if (k <= len - r->sent && memcmp(t + len - k, r->stops[i], k) == 0) {
                    keep = k;
                    break;
                }
        }
    }
    size_t upto = len - keep;
    if (upto > r->sent) {
        emit_piece(r, t + r->sent, upto - r->sent);
        r->sent = upto;
    }
    return 0;
}

static void finish_generation(struct req *r)
{
    r->t_end = now_ns();
    g_ls.completed++;
    g_ls.predicted_total += (uint64_t)r->n_done;
    g_ls.prompt_tokens_total += (uint64_t)r->prompt_n;
    g_ls.prompt_ms_total += ms_between(r->t_start, r->t_prompt_done);
    g_ls.predicted_ms_total += ms_between(r->t_prompt_done, r->t_end);
    slot_release(r);
    finish_output(r);
}

/* SOLLOL_SIM_FAIL_AFTER_TOKENS: the generation fails as llama-server's do
 * mid-stream, with an error event (no [DONE]), or a 500 when not streamed. */
static void fail_generation(struct req *r)
{
    r->t_end = now_ns();
    slot_release(r);
    char msg[96];
    snprintf(msg, sizeof msg, "simulated failure after %d tokens", r->n_done);
    if (!r->stream) {
        req_error(r, 500, "server_error", msg);
        return;
    }
    sb_printf(&r->h.out,
              "data: {\"error\":{\"code\":500,\"message\":\"%s\",\"type\":\"server_error\"}}\n\n",
              msg);
    r->h.out_done = 1;
    simhttp_wake(&r->h);
}

/* Arms the request's timer for `ms` milliseconds (rounded up). */
static void after_ms(struct req *r, double ms, void (*cb)(struct simhttp_req *h))
{
    simhttp_timer_start(&r->h, ms > 0 ? (uint64_t)ceil(ms * 1e6) : 0, cb);
}

static void on_token_timer(struct simhttp_req *h)
{
    struct req *r = LREQ(h);
    /* Emit every token that is due (timers fire late under load). */
    uint64_t now = now_ns();
    for (;;) {
        next_token(r);
        int stopped = emit_safe(r, 0);
        if (!stopped && g_ls.fail_after > 0 && r->n_done >= (int)g_ls.fail_after) {
            fail_generation(r);
            return;
        }
        if (stopped) {
            finish_generation(r);
            return;
        }
        if (r->n_done >= r->n_target) {
            emit_safe(r, 1);
            r->stop_type = r->limit_given && r->n_done >= r->n_predict ? "limit" : "eos";
            finish_generation(r);
            return;
        }
        if (g_ls.tps <= 0)
            continue;
        double due_ms = 1e3 * (r->n_done + 1) / g_ls.tps; /* the next token's time */
        double elapsed = ms_between(r->t_prompt_done, now);
        if (due_ms > elapsed) {
            after_ms(r, due_ms - elapsed, on_token_timer);
            return;
        }
    }
}

static void on_prompt_done(struct simhttp_req *h)
{
    struct req *r = LREQ(h);
    r->t_prompt_done = now_ns();
    if (r->route == RT_EMBEDDINGS) {
        r->t_end = r->t_prompt_done;
        slot_release(r);
        simhttp_json(&r->h, 200); /* the answer was prepared before the slot */
        return;
    }
    if (r->stream && r->route == RT_CHAT) {
        struct sbuf b = {0};
        sb_puts(&b, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":"
                    "\"assistant\",\"content\":null}}],");
        oai_head(&b, r, "chat.completion.chunk");
        sb_puts(&b, "}");
        sse(r, &b);
        sb_free(&b);
        simhttp_wake(&r->h);
    }
    if (r->n_target == 0) {
        r->stop_type = r->limit_given ? "limit" : "eos";
        finish_generation(r);
        return;
    }
    after_ms(r, g_ls.tps > 0 ? 1e3 / g_ls.tps : 0, on_token_timer);
}

/* Starts the request on slot `i`: prompt cache, then prompt evaluation. */
static void slot_start(struct req *r, int i)
{
    struct slot *s = &g_ls.slots[i];
    s->busy = 1;
    r->slot = i;
    r->slot_id = i;
    g_ls.active++;
    if (g_ls.active > g_ls.max_active)
        g_ls.max_active = g_ls.active;
    r->t_start = now_ns();
    size_t common = 0;
    size_t plen = r->prompt.len;
    while (common < plen && common < s->cache.len && r->prompt.p[common] == s->cache.p[common])
        common++;
    int total = tokens_of(plen);
    r->cache_n = (int)(common / 4);
    if (r->cache_n >= total)
        r->cache_n = total - 1; /* the last token is always evaluated again */
    r->prompt_n = total - r->cache_n;
    s->cache.len = 0;
    if (plen <= SLOT_CACHE_MAX)
        sb_put(&s->cache, r->prompt.p ? r->prompt.p : "", plen);
    if (r->stream && r->route != RT_EMBEDDINGS) {
        simhttp_stream(&r->h, 200, "text/event-stream");
    }
    after_ms(r, g_ls.prompt_tps > 0 ? 1e3 * r->prompt_n / g_ls.prompt_tps : 0, on_prompt_done);
}

void slot_release(struct req *r)
{
    if (r->queued) {
        struct req **pp = &g_ls.q_head;
        while (*pp && *pp != r)
            pp = &(*pp)->q_next;
        if (*pp) {
            *pp = r->q_next;
            if (g_ls.q_tail == r) {
                g_ls.q_tail = g_ls.q_head;
                while (g_ls.q_tail && g_ls.q_tail->q_next)
                    g_ls.q_tail = g_ls.q_tail->q_next;
            }
        }
        r->queued = 0;
        g_ls.waiting--;
        return;
    }
    if (r->slot < 0)
        return;
    g_ls.slots[r->slot].busy = 0;
    int freed = r->slot;
    r->slot = -1;
    g_ls.active--;
    if (g_ls.q_head && !g_ls.stopping) {
        struct req *n = g_ls.q_head;
        g_ls.q_head = n->q_next;
        if (!g_ls.q_head)
            g_ls.q_tail = NULL;
        n->queued = 0;
        n->q_next = NULL;
        g_ls.waiting--;
        slot_start(n, freed);
    }
}

static void slot_acquire(struct req *r)
{
    for (int i = 0; i < g_ls.np; i++)
        if (!g_ls.slots[i].busy) {
            slot_start(r, i);
            return;
        }
    r->queued = 1;
    r->q_next = NULL;
    if (g_ls.q_tail)
        g_ls.q_tail->q_next = r;
    else
        g_ls.q_head = r;
    g_ls.q_tail = r;
    g_ls.waiting++;
}

/* ---------------------------------------------------------------- request parsing */

static const cJSON *field(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

/* Appends the text of a message content (string, or array of text parts). */
static int content_text(struct sbuf *b, const cJSON *c)
{
    if (cJSON_IsString(c)) {
        sb_puts(b, c->valuestring);
        return 0;
    }
    if (cJSON_IsArray(c)) {
        const cJSON *p;
        cJSON_ArrayForEach(p, c)
        {
            const cJSON *t = field(p, "text");
            if (cJSON_IsString(t))
                sb_puts(b, t->valuestring);
        }
        return 0;
    }
    return cJSON_IsNull(c) ? 0 : -1;
}

/* A prompt for /completion or /v1/completions: a string, or an array whose
 * strings are joined and whose numbers count as one token each. */
static int prompt_text(struct sbuf *b, const cJSON *p)
{
    if (cJSON_IsString(p)) {
        sb_puts(b, p->valuestring);
        return 0;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, p)
        {
            if (cJSON_IsString(e))
                sb_puts(b, e->valuestring);
            else if (cJSON_IsNumber(e))
                sb_printf(b, "<%d>", e->valueint);
            else
                return -1;
        }
        return 0;
    }
    return -1;
}

static void add_stop(struct req *r, const char *word)
{
    if (!*word || r->nstops >= MAX_STOPS)
        return;
    r->stops[r->nstops] = strdup(word);
    if (!r->stops[r->nstops])
        die_oom();
    r->nstops++;
}

static int parse_stop(struct req *r, const cJSON *st)
{
    if (!st || cJSON_IsNull(st))
        return 0;
    if (cJSON_IsString(st)) {
        add_stop(r, st->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(st))
        return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, st)
    {
        if (!cJSON_IsString(e))
            return -1;
        add_stop(r, e->valuestring);
    }
    return 0;
}

void handle_generate(struct req *r)
{
    const cJSON *j = r->json;
    if (r->route == RT_CHAT) {
        const cJSON *msgs = field(j, "messages");
        if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
            req_error(r, 400, "invalid_request_error",
                      cJSON_IsArray(msgs) ? "'messages' must not be empty"
                                          : "'messages' is required and must be an array");
            return;
        }
        const cJSON *m;
        cJSON_ArrayForEach(m, msgs)
        {
            const cJSON *role = field(m, "role");
            if (!cJSON_IsString(role)) {
                req_error(r, 400, "invalid_request_error", "'role' is required in each message");
                return;
            }
            sb_printf(&r->prompt, "<|%s|>", role->valuestring);
            if (content_text(&r->prompt, field(m, "content")) < 0) {
                req_error(r, 400, "invalid_request_error", "invalid 'content' in a message");
                return;
            }
            sb_puts(&r->prompt, "\n");
        }
        sb_puts(&r->prompt, "<|assistant|>");
    } else {
        const cJSON *p = field(j, "prompt");
        if (!p) {
            req_error(r, 400, "invalid_request_error", "\"prompt\" must be provided");
            return;
        }
        if (prompt_text(&r->prompt, p) < 0) {
            req_error(r, 400, "invalid_request_error",
                      "\"prompt\" must be a string or an array of tokens or strings");
            return;
        }
    }
    const char *keys[] = {"n_predict", "max_tokens", "max_completion_tokens"};
    r->n_predict = -1;
    for (int i = 0; i < 3; i++) {
        const cJSON *n = field(j, keys[i]);
        if (cJSON_IsNumber(n)) {
            r->n_predict = n->valuedouble < 0 ? -1 : (int)n->valuedouble;
            break;
        }
    }
    r->limit_given = r->n_predict >= 0;
    if (parse_stop(r, field(j, "stop")) < 0) {
        req_error(r, 400, "invalid_request_error", "\"stop\" must be a string or an array");
        return;
    }
    const cJSON *st = field(j, "stream");
    r->stream = cJSON_IsTrue(st);
    const cJSON *so = field(j, "stream_options");
    r->include_usage =
        cJSON_IsObject(so) && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(so, "include_usage"));
    uint64_t seed = 0xFFFFFFFFu; /* LLAMA_DEFAULT_SEED: same prompt, same text */
    const cJSON *sd = field(j, "seed");
    if (cJSON_IsNumber(sd) && sd->valuedouble >= 0)
        seed = (uint64_t)sd->valuedouble;
    r->seed = seed;
    /* The text starts at fmix64 of this state: simgen_token mixes state +
     * SIMGEN_GAMMA, hence the offset. */
    r->prng =
        fmix64(fnv1a64(FNV64_INIT, r->prompt.p ? r->prompt.p : "", r->prompt.len) ^ fmix64(seed)) -
        SIMGEN_GAMMA;
    int ctx_slot = g_ls.ctx / g_ls.np;
    int ptok = tokens_of(r->prompt.len);
    if (ptok >= ctx_slot) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the request exceeds the available context size, try increasing it (%d >= %d)",
                 ptok, ctx_slot);
        req_error(r, 400, "exceed_context_size_error", msg);
        return;
    }
    const cJSON *rf = field(j, "response_format");
    const cJSON *rft = cJSON_IsObject(rf) ? field(rf, "type") : NULL;
    r->json_mode = cJSON_IsObject(field(j, "json_schema")) ||
                   (cJSON_IsString(rft) && (strcmp(rft->valuestring, "json_object") == 0 ||
                                            strcmp(rft->valuestring, "json_schema") == 0));
    r->n_target = r->limit_given ? r->n_predict : (int)g_ls.default_tokens;
    if (r->json_mode && !r->limit_given && r->n_target < 3)
        r->n_target = 3; /* room for the braces and one word */
    if (r->n_target > ctx_slot - ptok) {
        r->n_target = ctx_slot - ptok; /* the context fills up: a limit */
        r->limit_given = 1;
        r->n_predict = r->n_target;
    }
    r->stop_type = "eos";
    slot_acquire(r);
}

/* Deterministic unit vector of the text (dimension 64). */
static void embed_vector(struct sbuf *b, const char *s, size_t n)
{
    double v[64], norm = 0;
    uint64_t h = fnv1a64(FNV64_INIT, s, n);
    for (int i = 0; i < 64; i++) {
        h = fmix64(h + (uint64_t)i);
        v[i] = ((double)(h >> 11) / 9007199254740992.0) * 2 - 1;
        norm += v[i] * v[i];
    }
    norm = sqrt(norm);
    sb_puts(b, "[");
    for (int i = 0; i < 64; i++) {
        if (i)
            sb_puts(b, ",");
        sb_printf(b, "%.6f", norm > 0 ? v[i] / norm : 0);
    }
    sb_puts(b, "]");
}

void handle_embeddings(struct req *r)
{
    if (!g_ls.embeddings) {
        req_error(r, 501, "not_supported_error",
                  "This server does not support embeddings. Start it with `--embeddings`");
        return;
    }
    const cJSON *in = field(r->json, "input");
    if (!in)
        in = field(r->json, "content");
    int n = cJSON_IsString(in) ? 1 : cJSON_IsArray(in) ? cJSON_GetArraySize(in) : 0;
    if (n == 0) {
        req_error(r, 400, "invalid_request_error", "\"input\" must be provided");
        return;
    }
    struct sbuf *o = &r->h.out;
    sb_puts(o, "{\"model\":");
    sb_json_plain(o, model_id(), strlen(model_id()));
    sb_puts(o, ",\"object\":\"list\",\"data\":[");
    int tokens = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsString(in) ? in : cJSON_GetArrayItem(in, i);
        if (!cJSON_IsString(e)) {
            req_error(r, 400, "invalid_request_error", "\"input\" must be a string or strings");
            return;
        }
        size_t len = strlen(e->valuestring);
        sb_json_plain(&r->prompt, e->valuestring, len);
        tokens += tokens_of(len);
        sb_printf(o, "%s{\"embedding\":", i ? "," : "");
        embed_vector(o, e->valuestring, len);
        sb_printf(o, ",\"index\":%d,\"object\":\"embedding\"}", i);
    }
    sb_printf(o, "],\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", tokens, tokens);
    slot_acquire(r);
}
