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

uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint64_t fnv1a(uint64_t h, const void *data, size_t n)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Appends the next deterministic token to r->text. */
static void next_token(struct req *r)
{
    /* JSON mode (a grammar-constrained answer): {"answer": "<words>"}, the
     * braces and quotes being tokens of their own; a limit can cut it. */
    if (r->json_mode && r->n_done == 0) {
        put(&r->text, "{\"answer\": \"");
        r->n_done++;
        return;
    }
    if (r->json_mode && !r->limit_given && r->n_done == r->n_target - 1) {
        put(&r->text, "\"}");
        r->n_done++;
        return;
    }
    uint64_t x = mix64(r->prng);
    r->prng += 0x9e3779b97f4a7c15ULL;
    const char *w = VOCAB[x & 63];
    if (r->n_done == (r->json_mode ? 1 : 0)) {
        char first[32];
        snprintf(first, sizeof first, "%s", w);
        if (first[0] >= 'a' && first[0] <= 'z')
            first[0] = (char)(first[0] - 'a' + 'A');
        put(&r->text, first);
    } else if (((x >> 6) & 15) == 0) {
        put(&r->text, ".");
    } else {
        put(&r->text, " ");
        put(&r->text, w);
    }
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

static void timings_json(struct sol_buf *b, struct req *r)
{
    double pms = ms_between(r->t_start, r->t_prompt_done);
    double gms = ms_between(r->t_prompt_done, r->t_end ? r->t_end : now_ns());
    put(b, "\"timings\":{");
    PUTF(b, "\"cache_n\":%d,\"prompt_n\":%d,\"prompt_ms\":", r->cache_n, r->prompt_n);
    put_double(b, pms);
    put(b, ",\"prompt_per_token_ms\":");
    put_double(b, r->prompt_n ? pms / r->prompt_n : 0);
    put(b, ",\"prompt_per_second\":");
    put_double(b, pms > 0 ? 1e3 * r->prompt_n / pms : 0);
    PUTF(b, ",\"predicted_n\":%d,\"predicted_ms\":", r->n_done);
    put_double(b, gms);
    put(b, ",\"predicted_per_token_ms\":");
    put_double(b, r->n_done ? gms / r->n_done : 0);
    put(b, ",\"predicted_per_second\":");
    put_double(b, gms > 0 ? 1e3 * r->n_done / gms : 0);
    put(b, "}");
}

static void usage_json(struct sol_buf *b, struct req *r)
{
    int p = r->prompt_n + r->cache_n;
    PUTF(b, "\"usage\":{\"completion_tokens\":%d,\"prompt_tokens\":%d,\"total_tokens\":%d}",
         r->n_done, p, p + r->n_done);
}

static void oai_head(struct sol_buf *b, struct req *r, const char *object)
{
    PUTF(b, "\"created\":%lld,\"id\":\"%s\",\"model\":", r->created, r->id);
    put_json_str(b, model_id(), strlen(model_id()));
    PUTF(b, ",\"system_fingerprint\":\"b0000-sollol-sim\",\"object\":\"%s\"", object);
}

static const char *finish_reason(struct req *r)
{
    return strcmp(r->stop_type, "limit") == 0 ? "length" : "stop";
}

static void sse(struct req *r, const struct sol_buf *payload)
{
    put(&r->out, "data: ");
    putn(&r->out, payload->data + payload->off, sol_buf_pending(payload));
    put(&r->out, "\n\n");
}

/* One streamed piece of text in the route's format. */
static void emit_piece(struct req *r, const char *s, size_t n)
{
    if (!r->stream || n == 0)
        return;
    struct sol_buf b = {0};
    if (r->route == RT_CHAT) {
        put(&b, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"content\":");
        put_json_str(&b, s, n);
        put(&b, "}}],");
        oai_head(&b, r, "chat.completion.chunk");
        put(&b, "}");
    } else if (r->route == RT_V1_COMPLETIONS) {
        put(&b, "{\"choices\":[{\"text\":");
        put_json_str(&b, s, n);
        put(&b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":null}],");
        oai_head(&b, r, "text_completion");
        put(&b, "}");
    } else {
        put(&b, "{\"index\":0,\"content\":");
        put_json_str(&b, s, n);
        PUTF(&b,
             ",\"tokens\":[],\"stop\":false,\"id_slot\":%d,\"tokens_predicted\":%d,"
             "\"tokens_evaluated\":%d}",
             r->slot_id, r->n_done, r->prompt_n + r->cache_n);
    }
    sse(r, &b);
    sol_buf_free(&b);
    req_wake(r);
}

static void completion_final_fields(struct sol_buf *b, struct req *r)
{
    PUTF(b, ",\"tokens\":[],\"id_slot\":%d,\"stop\":true,\"model\":", r->slot_id);
    put_json_str(b, model_id(), strlen(model_id()));
    PUTF(b,
         ",\"tokens_predicted\":%d,\"tokens_evaluated\":%d,\"generation_settings\":{\"n_predict\":%"
         "d,"
         "\"seed\":%llu},\"prompt\":",
         r->n_done, r->prompt_n + r->cache_n, r->n_predict, (unsigned long long)r->seed);
    put_json_str(b, r->prompt.data ? r->prompt.data : "", r->prompt.len);
    PUTF(b, ",\"has_new_line\":false,\"truncated\":false,\"stop_type\":\"%s\",\"stopping_word\":",
         r->stop_type);
    put_json_str(b, r->stopping_word, strlen(r->stopping_word));
    PUTF(b, ",\"tokens_cached\":%d,", r->cache_n + r->prompt_n + r->n_done);
    timings_json(b, r);
}

static void finish_output(struct req *r)
{
    const char *text = r->text.data ? r->text.data : "";
    size_t tlen = r->sent; /* the text up to the cut */
    struct sol_buf b = {0};
    if (r->stream) {
        if (r->route == RT_CHAT) {
            PUTF(&b, "{\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"delta\":{}}],",
                 finish_reason(r));
            oai_head(&b, r, "chat.completion.chunk");
            put(&b, ",");
            usage_json(&b, r);
            put(&b, ",");
            timings_json(&b, r);
            put(&b, "}");
            sse(r, &b);
            put(&r->out, "data: [DONE]\n\n");
        } else if (r->route == RT_V1_COMPLETIONS) {
            PUTF(&b,
                 "{\"choices\":[{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%"
                 "s\"}],",
                 finish_reason(r));
            oai_head(&b, r, "text_completion");
            put(&b, ",");
            usage_json(&b, r);
            put(&b, ",");
            timings_json(&b, r);
            put(&b, "}");
            sse(r, &b);
            put(&r->out, "data: [DONE]\n\n");
        } else {
            put(&b, "{\"index\":0,\"content\":\"\"");
            completion_final_fields(&b, r);
            put(&b, "}");
            sse(r, &b);
        }
        sol_buf_free(&b);
        r->out_done = 1;
        req_wake(r);
        return;
    }
    struct sol_buf *o = &r->out;
    sol_buf_clear(o);
    if (r->route == RT_CHAT) {
        PUTF(o,
             "{\"choices\":[{\"finish_reason\":\"%s\",\"index\":0,\"message\":{\"role\":"
             "\"assistant\",\"content\":",
             finish_reason(r));
        put_json_str(o, text, tlen);
        put(o, "}}],");
        oai_head(o, r, "chat.completion");
        put(o, ",");
        usage_json(o, r);
        put(o, ",");
        timings_json(o, r);
        put(o, "}");
    } else if (r->route == RT_V1_COMPLETIONS) {
        put(o, "{\"choices\":[{\"text\":");
        put_json_str(o, text, tlen);
        PUTF(o, ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"%s\"}],", finish_reason(r));
        oai_head(o, r, "text_completion");
        put(o, ",");
        usage_json(o, r);
        put(o, ",");
        timings_json(o, r);
        put(o, "}");
    } else {
        put(o, "{\"index\":0,\"content\":");
        put_json_str(o, text, tlen);
        completion_final_fields(o, r);
        put(o, "}");
    }
    req_json(r, 200);
}

/* ---------------------------------------------------------------- generation */

/* Emits what is safe to emit: everything up to a complete stop word (then
 * the generation ends), else everything except a tail that could still
 * become a stop word, as llama-server holds partial matches back. */
static int emit_safe(struct req *r, int final)
{
    const char *t = sol_buf_cstr(&r->text);
    if (!t)
        die_oom();
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
    PUTF(&r->out,
         "data: {\"error\":{\"code\":500,\"message\":\"%s\",\"type\":\"server_error\"}}\n\n", msg);
    r->out_done = 1;
    req_wake(r);
}

static void on_token_timer(uv_timer_t *t)
{
    struct req *r = t->data;
    if (r->cancelled || r->mhd_done)
        return;
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
            req_timer(r, due_ms - elapsed, on_token_timer);
            return;
        }
    }
}

static void on_prompt_done(uv_timer_t *t)
{
    struct req *r = t->data;
    if (r->cancelled || r->mhd_done)
        return;
    r->t_prompt_done = now_ns();
    if (r->route == RT_EMBEDDINGS) {
        r->t_end = r->t_prompt_done;
        slot_release(r);
        req_json(r, 200); /* the answer was prepared before the slot */
        return;
    }
    if (r->stream && r->route == RT_CHAT) {
        struct sol_buf b = {0};
        put(&b, "{\"choices\":[{\"finish_reason\":null,\"index\":0,\"delta\":{\"role\":"
                "\"assistant\",\"content\":null}}],");
        oai_head(&b, r, "chat.completion.chunk");
        put(&b, "}");
        sse(r, &b);
        sol_buf_free(&b);
        req_wake(r);
    }
    if (r->n_target == 0) {
        r->stop_type = r->limit_given ? "limit" : "eos";
        finish_generation(r);
        return;
    }
    req_timer(r, g_ls.tps > 0 ? 1e3 / g_ls.tps : 0, on_token_timer);
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
    while (common < plen && common < s->cache.len &&
           r->prompt.data[common] == s->cache.data[common])
        common++;
    int total = tokens_of(plen);
    r->cache_n = (int)(common / 4);
    if (r->cache_n >= total)
        r->cache_n = total - 1; /* the last token is always evaluated again */
    r->prompt_n = total - r->cache_n;
    sol_buf_clear(&s->cache);
    if (plen <= SLOT_CACHE_MAX)
        putn(&s->cache, r->prompt.data ? r->prompt.data : "", plen);
    if (r->stream && r->route != RT_EMBEDDINGS) {
        r->cb_resp = 1;
        r->status = 200;
        r->ctype = "text/event-stream";
        req_ready(r);
    }
    req_timer(r, g_ls.prompt_tps > 0 ? 1e3 * r->prompt_n / g_ls.prompt_tps : 0, on_prompt_done);
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
static int content_text(struct sol_buf *b, const cJSON *c)
{
    if (cJSON_IsString(c)) {
        put(b, c->valuestring);
        return 0;
    }
    if (cJSON_IsArray(c)) {
        const cJSON *p;
        cJSON_ArrayForEach(p, c)
        {
            const cJSON *t = field(p, "text");
            if (cJSON_IsString(t))
                put(b, t->valuestring);
        }
        return 0;
    }
    return cJSON_IsNull(c) ? 0 : -1;
}

/* A prompt for /completion or /v1/completions: a string, or an array whose
 * strings are joined and whose numbers count as one token each. */
static int prompt_text(struct sol_buf *b, const cJSON *p)
{
    if (cJSON_IsString(p)) {
        put(b, p->valuestring);
        return 0;
    }
    if (cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0) {
        const cJSON *e;
        cJSON_ArrayForEach(e, p)
        {
            if (cJSON_IsString(e))
                put(b, e->valuestring);
            else if (cJSON_IsNumber(e))
                PUTF(b, "<%d>", e->valueint);
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
            PUTF(&r->prompt, "<|%s|>", role->valuestring);
            if (content_text(&r->prompt, field(m, "content")) < 0) {
                req_error(r, 400, "invalid_request_error", "invalid 'content' in a message");
                return;
            }
            put(&r->prompt, "\n");
        }
        put(&r->prompt, "<|assistant|>");
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
    uint64_t seed = 0xFFFFFFFFu; /* LLAMA_DEFAULT_SEED: same prompt, same text */
    const cJSON *sd = field(j, "seed");
    if (cJSON_IsNumber(sd) && sd->valuedouble >= 0)
        seed = (uint64_t)sd->valuedouble;
    r->seed = seed;
    r->prng =
        mix64(fnv1a(0xcbf29ce484222325ULL, r->prompt.data ? r->prompt.data : "", r->prompt.len) ^
              mix64(seed));
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
static void embed_vector(struct sol_buf *b, const char *s, size_t n)
{
    double v[64], norm = 0;
    uint64_t h = fnv1a(0xcbf29ce484222325ULL, s, n);
    for (int i = 0; i < 64; i++) {
        h = mix64(h + (uint64_t)i);
        v[i] = ((double)(h >> 11) / 9007199254740992.0) * 2 - 1;
        norm += v[i] * v[i];
    }
    norm = sqrt(norm);
    put(b, "[");
    for (int i = 0; i < 64; i++) {
        if (i)
            put(b, ",");
        PUTF(b, "%.6f", norm > 0 ? v[i] / norm : 0);
    }
    put(b, "]");
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
    struct sol_buf *o = &r->out;
    put(o, "{\"model\":");
    put_json_str(o, model_id(), strlen(model_id()));
    put(o, ",\"object\":\"list\",\"data\":[");
    int tokens = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsString(in) ? in : cJSON_GetArrayItem(in, i);
        if (!cJSON_IsString(e)) {
            req_error(r, 400, "invalid_request_error", "\"input\" must be a string or strings");
            return;
        }
        size_t len = strlen(e->valuestring);
        put_json_str(&r->prompt, e->valuestring, len);
        tokens += tokens_of(len);
        PUTF(o, "%s{\"embedding\":", i ? "," : "");
        embed_vector(o, e->valuestring, len);
        PUTF(o, ",\"index\":%d,\"object\":\"embedding\"}", i);
    }
    PUTF(o, "],\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", tokens, tokens);
    slot_acquire(r);
}
