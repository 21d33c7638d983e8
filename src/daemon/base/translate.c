/*
 * translate.c - Ollama <-> llama-server bodies and streams (see
 * translate.h). Each SSE event is small: it is parsed with cJSON once it
 * is complete, and its Ollama line is emitted at once.
 */
#include "base/translate.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- requests ------------------------------------------------------------ */

static int copy_item(cJSON *dst, const char *name, const cJSON *v)
{
    cJSON *c = cJSON_Duplicate(v, 1);
    return c && cJSON_AddItemToObject(dst, name, c) ? 0 : -1;
}

/* Ollama option name -> llama-server field, numeric or stop. */
static int map_options(cJSON *dst, const cJSON *opts, enum sol_tr_kind kind)
{
    static const char *const same[] = {"temperature",
                                       "top_k",
                                       "top_p",
                                       "min_p",
                                       "seed",
                                       "repeat_penalty",
                                       "presence_penalty",
                                       "frequency_penalty",
                                       "repeat_last_n",
                                       "typical_p",
                                       NULL};
    if (!cJSON_IsObject(opts))
        return 0;
    for (int i = 0; same[i]; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(opts, same[i]);
        if (cJSON_IsNumber(v) && copy_item(dst, same[i], v) < 0)
            return -1;
    }
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(opts, "num_predict");
    if (cJSON_IsNumber(np) &&
        copy_item(dst, kind == SOL_TR_CHAT ? "max_tokens" : "n_predict", np) < 0)
        return -1;
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(opts, "stop");
    if ((cJSON_IsArray(stop) || cJSON_IsString(stop)) && copy_item(dst, "stop", stop) < 0)
        return -1;
    return 0;
}

static int map_format(cJSON *dst, const cJSON *fmt, enum sol_tr_kind kind)
{
    if (!fmt || cJSON_IsNull(fmt) || (cJSON_IsString(fmt) && !fmt->valuestring[0]))
        return 0;
    cJSON *schema = NULL;
    if (cJSON_IsString(fmt) && strcmp(fmt->valuestring, "json") == 0)
        schema = NULL;
    else if (cJSON_IsObject(fmt))
        schema = cJSON_Duplicate(fmt, 1);
    else
        return 0; /* Ollama rejects other strings itself; nothing to map */
    if (kind == SOL_TR_CHAT) {
        cJSON *rf = cJSON_AddObjectToObject(dst, "response_format");
        if (!rf)
            goto oom;
        if (!schema)
            return cJSON_AddStringToObject(rf, "type", "json_object") ? 0 : -1;
        if (!cJSON_AddStringToObject(rf, "type", "json_schema"))
            goto oom;
        cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
        if (!js || !cJSON_AddItemToObject(js, "schema", schema))
            goto oom;
        return 0;
    }
    if (!schema)
        schema = cJSON_Parse("{\"type\":\"object\"}");
    if (!schema || !cJSON_AddItemToObject(dst, "json_schema", schema))
        goto oom;
    return 0;
oom:
    cJSON_Delete(schema);
    return -1;
}

static int chat_messages(cJSON *dst, const cJSON *msgs, char *err, size_t errlen)
{
    cJSON *out = cJSON_AddArrayToObject(dst, "messages");
    if (!out)
        return -1;
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        if (!cJSON_IsObject(m)) {
            snprintf(err, errlen, "messages must be objects");
            return -2;
        }
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(out, o))
            return -1;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(m, "content");
        if (!cJSON_IsString(role)) {
            snprintf(err, errlen, "message role is required");
            return -2;
        }
        if (!cJSON_AddStringToObject(o, "role", role->valuestring))
            return -1;
        if (!cJSON_AddStringToObject(o, "content",
                                     cJSON_IsString(content) ? content->valuestring : ""))
            return -1;
        static const char *const extra[] = {"tool_calls", "tool_call_id", "name", NULL};
        for (int i = 0; extra[i]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(m, extra[i]);
            if (v && copy_item(o, extra[i], v) < 0)
                return -1;
        }
    }
    return 0;
}

int sol_translate_request(enum sol_tr_kind kind, const char *body, size_t len, struct sol_buf *out,
                          char *err, size_t errlen)
{
    cJSON *in = cJSON_ParseWithLength(body, len);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        snprintf(err, errlen, "invalid JSON body");
        return -1;
    }
    cJSON *o = cJSON_CreateObject();
    int rc = -1;
    if (!o)
        goto done;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(in, "model");
    if (cJSON_IsString(model) && !cJSON_AddStringToObject(o, "model", model->valuestring))
        goto oom;
    if (kind == SOL_TR_EMBED) {
        const cJSON *input = cJSON_GetObjectItemCaseSensitive(in, "input");
        if (!input)
            input = cJSON_GetObjectItemCaseSensitive(in, "prompt");
        if (!cJSON_IsString(input) && !cJSON_IsArray(input)) {
            snprintf(err, errlen, "input must be a string or an array of strings");
            goto done;
        }
        if (copy_item(o, "input", input) < 0)
            goto oom;
        rc = 0;
        goto print;
    }
    if (!cJSON_AddTrueToObject(o, "stream"))
        goto oom;
    if (kind == SOL_TR_CHAT) {
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(in, "messages");
        if (msgs && !cJSON_IsArray(msgs)) {
            snprintf(err, errlen, "messages must be an array");
            goto done;
        }
        if (cJSON_GetArraySize(msgs) == 0) {
            rc = 1;
            goto done;
        }
        int m = chat_messages(o, msgs, err, errlen);
        if (m == -2)
            goto done;
        if (m < 0)
            goto oom;
        const cJSON *tools = cJSON_GetObjectItemCaseSensitive(in, "tools");
        if (cJSON_IsArray(tools) && copy_item(o, "tools", tools) < 0)
            goto oom;
    } else {
        const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(in, "prompt");
        if (prompt && !cJSON_IsString(prompt)) {
            snprintf(err, errlen, "prompt must be a string");
            goto done;
        }
        if (!prompt || !prompt->valuestring[0]) {
            rc = 1;
            goto done;
        }
        const cJSON *system = cJSON_GetObjectItemCaseSensitive(in, "system");
        if (cJSON_IsString(system) && system->valuestring[0]) {
            size_t a = strlen(system->valuestring), b = strlen(prompt->valuestring);
            struct sol_buf joined = {0};
            if (sol_buf_reserve(&joined, a + b + 3) < 0)
                goto oom;
            sol_buf_append(&joined, system->valuestring, a);
            sol_buf_append(&joined, "\n\n", 2);
            sol_buf_append(&joined, prompt->valuestring, b);
            cJSON *s = cJSON_AddStringToObject(o, "prompt", sol_buf_cstr(&joined));
            sol_buf_free(&joined);
            if (!s)
                goto oom;
        } else if (!cJSON_AddStringToObject(o, "prompt", prompt->valuestring)) {
            goto oom;
        }
    }
    if (map_options(o, cJSON_GetObjectItemCaseSensitive(in, "options"), kind) < 0 ||
        map_format(o, cJSON_GetObjectItemCaseSensitive(in, "format"), kind) < 0)
        goto oom;
    rc = 0;
print:;
    char *text = cJSON_PrintUnformatted(o);
    if (!text || sol_buf_append_str(out, text) < 0) {
        cJSON_free(text);
        goto oom;
    }
    cJSON_free(text);
    goto done;
oom:
    snprintf(err, errlen, "out of memory");
    rc = -1;
done:
    cJSON_Delete(o);
    cJSON_Delete(in);
    return rc;
}

/* ---- responses ----------------------------------------------------------- */

void sol_translate_rfc3339(uint64_t unix_ns, char *out, size_t outlen)
{
    time_t s = (time_t)(unix_ns / 1000000000ull);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%09lluZ", base, (unsigned long long)(unix_ns % 1000000000ull));
}

void sol_translate_init(struct sol_translate *t, enum sol_tr_kind kind, int stream,
                        const char *model, uint64_t (*wall_ns)(void *), uint64_t (*mono_ns)(void *),
                        void *clock_ud)
{
    memset(t, 0, sizeof *t);
    t->kind = kind;
    t->stream = stream;
    snprintf(t->model, sizeof t->model, "%s", model ? model : "");
    t->wall_ns = wall_ns;
    t->mono_ns = mono_ns;
    t->clock_ud = clock_ud;
    t->started_ns = mono_ns(clock_ud);
    snprintf(t->done_reason, sizeof t->done_reason, "stop");
}

void sol_translate_status(struct sol_translate *t, long status)
{
    t->error_body = status >= 400;
}

const char *sol_translate_content_type(const struct sol_translate *t)
{
    if (t->stream && !t->error_body && t->kind != SOL_TR_EMBED)
        return "application/x-ndjson";
    return "application/json; charset=utf-8";
}

/* {"model":..,"created_at":.., (no closing brace) */
static void line_start(struct sol_translate *t, struct sol_buf *out)
{
    char ts[48];
    sol_translate_rfc3339(t->wall_ns(t->clock_ud), ts, sizeof ts);
    sol_buf_append_str(out, "{\"model\":");
    sol_buf_append_json_string(out, t->model, strlen(t->model));
    sol_buf_appendf(out, ",\"created_at\":\"%s\",", ts);
}

/* ,"tool_calls":[{"function":{"name":..,"arguments":{..}}}] from the
 * collected fragments; arguments that are not a JSON object stay a string. */
static void tool_calls_field(struct sol_translate *t, struct sol_buf *out)
{
    if (!t->n_tools)
        return;
    sol_buf_append_str(out, ",\"tool_calls\":[");
    for (unsigned i = 0; i < t->n_tools; i++) {
        struct sol_buf *nm = &t->tool_names[i], *ar = &t->tool_args[i];
        sol_buf_append_str(out, i ? ",{\"function\":{\"name\":" : "{\"function\":{\"name\":");
        sol_buf_append_json_string(out, nm->data ? nm->data : "", nm->len);
        sol_buf_append_str(out, ",\"arguments\":");
        cJSON *args = cJSON_ParseWithLength(ar->data ? ar->data : "", ar->len);
        char *norm = cJSON_IsObject(args) ? cJSON_PrintUnformatted(args) : NULL;
        if (norm)
            sol_buf_append_str(out, norm);
        else if (ar->len)
            sol_buf_append_json_string(out, ar->data, ar->len);
        else
            sol_buf_append_str(out, "{}");
        cJSON_free(norm);
        cJSON_Delete(args);
        sol_buf_append_str(out, "}}");
    }
    sol_buf_append_str(out, "]");
}

static void text_field(struct sol_translate *t, struct sol_buf *out, const char *text, size_t tlen,
                       const char *thinking, size_t klen)
{
    if (t->kind == SOL_TR_CHAT) {
        sol_buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":");
        sol_buf_append_json_string(out, text, tlen);
        if (klen) {
            sol_buf_append_str(out, ",\"thinking\":");
            sol_buf_append_json_string(out, thinking, klen);
        }
        if (!t->stream)
            tool_calls_field(t, out);
        sol_buf_append_str(out, "}");
    } else {
        sol_buf_append_str(out, "\"response\":");
        sol_buf_append_json_string(out, text, tlen);
        if (klen) {
            sol_buf_append_str(out, ",\"thinking\":");
            sol_buf_append_json_string(out, thinking, klen);
        }
    }
}

static void emit_error(struct sol_translate *t, struct sol_buf *out, const char *msg)
{
    sol_buf_append_str(out, "{\"error\":");
    sol_buf_append_json_string(out, msg, strlen(msg));
    sol_buf_append_str(out, t->stream && !t->error_body ? "}\n" : "}");
    t->done = t->failed = 1;
}

/* The message of llama-server's {"error":{"message":..}} (or a string). */
static const char *error_message(const cJSON *e)
{
    if (cJSON_IsString(e))
        return e->valuestring;
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    return cJSON_IsString(m) ? m->valuestring : "llama-server failed";
}

static uint64_t ms_to_ns(double ms)
{
    return ms > 0 && ms < 1e12 ? (uint64_t)llround(ms * 1e6) : 0;
}

static uint64_t num_u64(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!cJSON_IsNumber(v) || !(v->valuedouble > 0))
        return 0;
    /* A count past 2^63 is nonsense from the node; saturate rather than let
     * the conversion be undefined. */
    return v->valuedouble < 9.2e18 ? (uint64_t)v->valuedouble : UINT64_C(9200000000000000000);
}

static void take_timings(struct sol_translate *t, const cJSON *tm)
{
    if (!cJSON_IsObject(tm))
        return;
    t->have_timings = 1;
    t->prompt_eval_count = num_u64(tm, "cache_n") + num_u64(tm, "prompt_n");
    const cJSON *pm = cJSON_GetObjectItemCaseSensitive(tm, "prompt_ms");
    const cJSON *gm = cJSON_GetObjectItemCaseSensitive(tm, "predicted_ms");
    t->prompt_eval_duration = cJSON_IsNumber(pm) ? ms_to_ns(pm->valuedouble) : 0;
    t->eval_count = num_u64(tm, "predicted_n");
    t->eval_duration = cJSON_IsNumber(gm) ? ms_to_ns(gm->valuedouble) : 0;
}

static void emit_final(struct sol_translate *t, struct sol_buf *out)
{
    if (t->stream && t->n_tools) {
        /* The collected tool calls, whole, in their own line first. */
        line_start(t, out);
        sol_buf_append_str(out, "\"message\":{\"role\":\"assistant\",\"content\":\"\"");
        tool_calls_field(t, out);
        sol_buf_append_str(out, "},\"done\":false}\n");
    }
    line_start(t, out);
    if (t->stream)
        text_field(t, out, "", 0, NULL, 0);
    else
        text_field(t, out, t->text.data ? t->text.data : "", t->text.len,
                   t->think.data ? t->think.data : "", t->think.len);
    uint64_t total = t->mono_ns(t->clock_ud) - t->started_ns;
    sol_buf_appendf(out,
                    ",\"done_reason\":\"%s\",\"done\":true,\"total_duration\":%llu,"
                    "\"load_duration\":%llu,\"prompt_eval_count\":%llu,"
                    "\"prompt_eval_duration\":%llu,\"eval_count\":%llu,\"eval_duration\":%llu}%s",
                    t->done_reason, (unsigned long long)total, (unsigned long long)t->load_ns,
                    (unsigned long long)t->prompt_eval_count,
                    (unsigned long long)t->prompt_eval_duration, (unsigned long long)t->eval_count,
                    (unsigned long long)t->eval_duration, t->stream ? "\n" : "");
    t->done = 1;
}

static void emit_text(struct sol_translate *t, struct sol_buf *out, const char *text, size_t tlen,
                      const char *think, size_t klen)
{
    if (!tlen && !klen)
        return;
    if (!t->stream) {
        sol_buf_append(&t->text, text, tlen);
        sol_buf_append(&t->think, think, klen);
        return;
    }
    line_start(t, out);
    text_field(t, out, text, tlen, think, klen);
    sol_buf_append_str(out, ",\"done\":false}\n");
    t->streamed++;
}

static const char *str_or_empty(const cJSON *v, size_t *len)
{
    if (cJSON_IsString(v)) {
        *len = strlen(v->valuestring);
        return v->valuestring;
    }
    *len = 0;
    return "";
}

/* Appends one delta's tool-call fragments. Returns -1 past the bounds. */
static int take_tool_calls(struct sol_translate *t, const cJSON *calls)
{
    const cJSON *list = cJSON_IsArray(calls) ? calls : NULL;
    const cJSON *c;
    int pos = 0;
    cJSON_ArrayForEach(c, list)
    {
        const cJSON *ix = cJSON_GetObjectItemCaseSensitive(c, "index");
        double idx = cJSON_IsNumber(ix) ? ix->valuedouble : pos;
        pos++;
        if (!(idx >= 0 && idx < SOL_TR_MAX_TOOL_CALLS))
            return -1;
        unsigned i = (unsigned)idx;
        if (i >= t->n_tools)
            t->n_tools = i + 1;
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(c, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        const cJSON *ar = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        size_t a = cJSON_IsString(nm) ? strlen(nm->valuestring) : 0;
        size_t b = cJSON_IsString(ar) ? strlen(ar->valuestring) : 0;
        if (t->tool_bytes + a + b > SOL_TR_MAX_LINE)
            return -1;
        t->tool_bytes += a + b;
        if ((a && sol_buf_append(&t->tool_names[i], nm->valuestring, a) < 0) ||
            (b && sol_buf_append(&t->tool_args[i], ar->valuestring, b) < 0))
            return -1;
    }
    return 0;
}

/* One complete `data:` payload. */
static void on_event(struct sol_translate *t, const char *data, size_t n, struct sol_buf *out)
{
    while (n && (*data == ' ' || *data == '\t')) {
        data++;
        n--;
    }
    if (n == 6 && memcmp(data, "[DONE]", 6) == 0) {
        emit_final(t, out);
        return;
    }
    cJSON *ev = cJSON_ParseWithLength(data, n);
    if (!cJSON_IsObject(ev)) {
        cJSON_Delete(ev);
        return; /* not an event we understand: skip it, as a client would */
    }
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(ev, "error");
    if (err) {
        emit_error(t, out, error_message(err));
        cJSON_Delete(ev);
        return;
    }
    take_timings(t, cJSON_GetObjectItemCaseSensitive(ev, "timings"));
    size_t tl, kl;
    if (t->kind == SOL_TR_CHAT) {
        const cJSON *ch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ev, "choices"), 0);
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(ch, "delta");
        const char *txt = str_or_empty(cJSON_GetObjectItemCaseSensitive(delta, "content"), &tl);
        const char *th =
            str_or_empty(cJSON_GetObjectItemCaseSensitive(delta, "reasoning_content"), &kl);
        emit_text(t, out, txt, tl, th, kl);
        if (take_tool_calls(t, cJSON_GetObjectItemCaseSensitive(delta, "tool_calls")) < 0) {
            emit_error(t, out, "llama-server sent too many or too large tool calls");
            cJSON_Delete(ev);
            return;
        }
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(ch, "finish_reason");
        if (cJSON_IsString(fr))
            snprintf(t->done_reason, sizeof t->done_reason, "%s",
                     strcmp(fr->valuestring, "length") == 0 ? "length" : "stop");
    } else {
        const char *txt = str_or_empty(cJSON_GetObjectItemCaseSensitive(ev, "content"), &tl);
        emit_text(t, out, txt, tl, "", 0);
        const cJSON *stop = cJSON_GetObjectItemCaseSensitive(ev, "stop");
        if (cJSON_IsTrue(stop)) {
            const cJSON *st = cJSON_GetObjectItemCaseSensitive(ev, "stop_type");
            int limit = cJSON_IsString(st) && strcmp(st->valuestring, "limit") == 0;
            snprintf(t->done_reason, sizeof t->done_reason, "%s", limit ? "length" : "stop");
            /* /completion has no [DONE]: its stop event is the end. */
            emit_final(t, out);
        }
    }
    cJSON_Delete(ev);
}

static void on_line(struct sol_translate *t, const char *s, size_t n, struct sol_buf *out)
{
    if (n && s[n - 1] == '\r')
        n--;
    if (n >= 5 && memcmp(s, "data:", 5) == 0)
        on_event(t, s + 5, n - 5, out);
    /* Blank lines end events, ':' lines are pings, other fields are unused. */
}

int sol_translate_feed(struct sol_translate *t, const char *p, size_t n, struct sol_buf *out)
{
    if (t->done)
        return 0;
    if (t->error_body || t->kind == SOL_TR_EMBED) {
        if (t->line.len + n > SOL_TR_MAX_BODY) {
            emit_error(t, out, "llama-server's answer is too large");
            return -1;
        }
        return sol_buf_append(&t->line, p, n);
    }
    while (n && !t->done) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (t->line.len + take > SOL_TR_MAX_LINE) {
            emit_error(t, out, "llama-server sent an event over the size limit");
            return -1;
        }
        if (nl && t->line.len == 0) {
            on_line(t, p, take, out); /* common case: no copy */
        } else {
            if (sol_buf_append(&t->line, p, take) < 0) {
                emit_error(t, out, "out of memory");
                return -1;
            }
            if (nl) {
                on_line(t, t->line.data, t->line.len, out);
                sol_buf_clear(&t->line);
            }
        }
        if (!nl)
            break;
        p = nl + 1;
        n -= take + 1;
    }
    return 0;
}

static void finish_embed(struct sol_translate *t, struct sol_buf *out)
{
    cJSON *doc = cJSON_ParseWithLength(t->line.data ? t->line.data : "", t->line.len);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(doc, "data");
    if (!cJSON_IsArray(data)) {
        emit_error(t, out, "llama-server sent an invalid embeddings answer");
        cJSON_Delete(doc);
        return;
    }
    sol_buf_append_str(out, "{\"model\":");
    sol_buf_append_json_string(out, t->model, strlen(t->model));
    sol_buf_append_str(out, ",\"embeddings\":[");
    int n = cJSON_GetArraySize(data);
    for (int i = 0; i < n; i++) {
        /* In input order: llama-server gives each its index. */
        const cJSON *pick = NULL, *it;
        cJSON_ArrayForEach(it, data)
        {
            const cJSON *ix = cJSON_GetObjectItemCaseSensitive(it, "index");
            /* Compared as a double: casting a huge index to int is undefined. */
            if (cJSON_IsNumber(ix) && ix->valuedouble == (double)i)
                pick = it;
        }
        if (!pick)
            pick = cJSON_GetArrayItem(data, i);
        char *e = cJSON_PrintUnformatted(cJSON_GetObjectItemCaseSensitive(pick, "embedding"));
        sol_buf_append_str(out, i ? "," : "");
        sol_buf_append_str(out, e ? e : "[]");
        cJSON_free(e);
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(doc, "usage");
    uint64_t total = t->mono_ns(t->clock_ud) - t->started_ns;
    sol_buf_appendf(out,
                    "],\"total_duration\":%llu,\"load_duration\":%llu,\"prompt_eval_count\":%llu}",
                    (unsigned long long)total, (unsigned long long)t->load_ns,
                    (unsigned long long)num_u64(usage, "prompt_tokens"));
    t->done = 1;
    cJSON_Delete(doc);
}

int sol_translate_finish(struct sol_translate *t, struct sol_buf *out)
{
    if (t->done)
        return 0;
    if (t->error_body) {
        cJSON *doc = cJSON_ParseWithLength(t->line.data ? t->line.data : "", t->line.len);
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
        char msg[512];
        if (e)
            snprintf(msg, sizeof msg, "%s", error_message(e));
        else
            snprintf(msg, sizeof msg, "llama-server: %.*s",
                     (int)(t->line.len > 400 ? 400 : t->line.len),
                     t->line.data ? t->line.data : "");
        cJSON_Delete(doc);
        emit_error(t, out, msg);
        return 0;
    }
    if (t->kind == SOL_TR_EMBED) {
        finish_embed(t, out);
        return 0;
    }
    if (t->line.len) { /* a last line without its newline */
        on_line(t, t->line.data, t->line.len, out);
        sol_buf_clear(&t->line);
    }
    if (!t->done)
        emit_final(t, out);
    return 0;
}

void sol_translate_free(struct sol_translate *t)
{
    for (unsigned i = 0; i < SOL_TR_MAX_TOOL_CALLS; i++) {
        sol_buf_free(&t->tool_names[i]);
        sol_buf_free(&t->tool_args[i]);
    }
    sol_buf_free(&t->line);
    sol_buf_free(&t->text);
    sol_buf_free(&t->think);
}
