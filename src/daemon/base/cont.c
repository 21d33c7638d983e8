/*
 * cont.c - continuing a chat answer on another node (see cont.h).
 *
 * The text so far is kept as the node wrote it inside its JSON strings
 * (escapes and all): fragments of valid JSON string contents concatenate
 * into valid JSON string contents, so the prefill needs no decoding and no
 * re-encoding, and the cap counts the bytes the next body will carry.
 */
#include "base/cont.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LINE_DEPTH 64    /* nesting allowed in one node line */
#define LINE_SLACK 65536 /* a line may carry this much besides its text */

struct sol_cont {
    enum sol_cont_api api;
    int whole; /* the client gets one object built from the node's stream */
    size_t cap;
    const char *body; /* the client's, borrowed */
    size_t body_len;
    struct sol_json_span messages, options;
    long long num_predict; /* options.num_predict or max_tokens; -1 none */

    struct sol_buf next; /* the next attempt's body */
    int have_next;       /* else the client's body */

    struct sol_buf line;     /* the node's unfinished line */
    struct sol_buf text;     /* content so far, raw JSON string contents */
    struct sol_buf thinking; /* whole mode: thinking so far, raw */
    struct sol_buf held;     /* the node's error line */
    struct sol_buf nodes;    /* "a","b": nodes whose text is in the answer */
    char node[128];          /* node of the running attempt */

    enum sol_cont_why stop; /* SOL_CONT_CONTINUED while a failure could be continued */
    int final_seen, error_seen, passthrough;
    int over; /* text or thinking passed the cap */
    unsigned continued;
    uint64_t k_tokens;    /* content chunks of broken attempts */
    uint64_t this_tokens; /* ... of the running attempt */
    uint64_t prev_total_ns, prev_prompt_ns, prev_eval_ns;
    uint64_t att_start_ms, first_tok_ms, last_tok_ms;
    char oa_id[160], oa_created[32]; /* raw values of the first node's id and created */
    /* OpenAI whole mode: raw values for the one chat.completion object. */
    char oa_model[320], oa_fp[96], oa_finish[48];
    int oa_built, usage_seen;

    uint64_t eval_count, prompt_count;
    int have_counts;
};

static const char *const why_names[SOL_CONT_KINDS] = {
    [SOL_CONT_CONTINUED] = "continued", [SOL_CONT_DISABLED] = "disabled",
    [SOL_CONT_ROUTE] = "route",         [SOL_CONT_FORMAT] = "format",
    [SOL_CONT_IMAGES] = "images",       [SOL_CONT_LOGPROBS] = "logprobs",
    [SOL_CONT_PREFILL] = "prefill",     [SOL_CONT_TOOL_CALLS] = "tool_calls",
    [SOL_CONT_THINKING] = "thinking",   [SOL_CONT_TOO_LONG] = "too_long",
    [SOL_CONT_COMPLETE] = "complete",   [SOL_CONT_NO_NODE] = "no_node",
    [SOL_CONT_LIMIT] = "limit",         [SOL_CONT_NODE_LINE] = "unreadable",
};

const char *sol_cont_why_name(enum sol_cont_why why)
{
    return (unsigned)why < SOL_CONT_KINDS ? why_names[why] : "unknown";
}

/* ---- spans ---------------------------------------------------------------- */

static int span_is_null(const struct sol_json_span *s)
{
    return !s->p || s->type == SOL_JSON_NULL;
}

/* A string value equal to `want`, ASCII case folded. */
static int span_str_is(const struct sol_json_span *s, const char *want)
{
    char buf[64];
    if (!s->p || s->type != SOL_JSON_STRING || s->len > sizeof buf)
        return 0;
    long n = sol_json_string_decode(s, buf, sizeof buf);
    return n >= 0 && (size_t)n == strlen(want) && strncasecmp(buf, want, (size_t)n) == 0;
}

/* An array or object with at least one element. */
static int span_nonempty(const struct sol_json_span *s)
{
    if (!s->p || (s->type != SOL_JSON_ARRAY && s->type != SOL_JSON_OBJECT))
        return 0;
    for (size_t i = 1; i + 1 < s->len; i++)
        if (s->p[i] != ' ' && s->p[i] != '\t' && s->p[i] != '\r' && s->p[i] != '\n')
            return 1;
    return 0;
}

/* The top-level members of a whole body, looked up as Go matches struct
 * fields (case-insensitively, the last occurrence wins). */
struct top_fields {
    struct sol_json_span format, response_format, logprobs, top_logprobs, tools, options,
        max_tokens;
};

static void body_fields(const char *body, size_t len, struct top_fields *f)
{
    memset(f, 0, sizeof *f);
    while (len && (body[len - 1] == ' ' || body[len - 1] == '\n' || body[len - 1] == '\r' ||
                   body[len - 1] == '\t'))
        len--;
    size_t off = 0;
    while (off < len && body[off] != '{')
        off++;
    struct sol_json_span obj = {body + off, len - off, SOL_JSON_OBJECT}, k, v;
    size_t pos = 0;
    while (sol_json_object_next(&obj, &pos, &k, &v)) {
        if (sol_json_key_equals_fold(&k, "format"))
            f->format = v;
        else if (sol_json_key_equals_fold(&k, "response_format"))
            f->response_format = v;
        else if (sol_json_key_equals_fold(&k, "logprobs"))
            f->logprobs = v;
        else if (sol_json_key_equals_fold(&k, "top_logprobs"))
            f->top_logprobs = v;
        else if (sol_json_key_equals_fold(&k, "tools"))
            f->tools = v;
        else if (sol_json_key_equals_fold(&k, "options"))
            f->options = v;
        else if (sol_json_key_equals_fold(&k, "max_tokens"))
            f->max_tokens = v;
    }
}

enum sol_cont_why sol_cont_judge(const char *body, size_t len, const struct sol_json_span *messages,
                                 enum sol_cont_api api, int streams, int *whole)
{
    *whole = 0;
    if (!body || !messages || !messages->p || messages->type != SOL_JSON_ARRAY)
        return SOL_CONT_ROUTE;
    struct top_fields f;
    body_fields(body, len, &f);
    /* A JSON answer cut anywhere and continued is only valid JSON by luck
     * of the grammar, which the prefill does not carry: not faithful. */
    if (!span_is_null(&f.format) && !span_str_is(&f.format, ""))
        return SOL_CONT_FORMAT;
    if (!span_is_null(&f.response_format)) {
        struct sol_json_span t;
        if (!(f.response_format.type == SOL_JSON_OBJECT &&
              sol_json_object_get(&f.response_format, "type", &t) && span_str_is(&t, "text")))
            return SOL_CONT_FORMAT;
    }
    if (f.logprobs.p && f.logprobs.type == SOL_JSON_TRUE)
        return SOL_CONT_LOGPROBS;
    if (f.top_logprobs.p && f.top_logprobs.type == SOL_JSON_NUMBER &&
        !(f.top_logprobs.len == 1 && f.top_logprobs.p[0] == '0'))
        return SOL_CONT_LOGPROBS;
    size_t pos = 0, count = 0;
    struct sol_json_span m, last = {0};
    while (sol_json_array_next(messages, &pos, &m)) {
        count++;
        last = m;
        if (m.type != SOL_JSON_OBJECT)
            continue;
        struct sol_json_span v;
        if (sol_json_object_get(&m, "images", &v) && span_nonempty(&v))
            return SOL_CONT_IMAGES;
        if (sol_json_object_get(&m, "content", &v) && v.type == SOL_JSON_ARRAY) {
            size_t ppos = 0;
            struct sol_json_span part, type;
            while (sol_json_array_next(&v, &ppos, &part))
                if (part.type == SOL_JSON_OBJECT && sol_json_object_get(&part, "type", &type) &&
                    !span_str_is(&type, "text"))
                    return SOL_CONT_IMAGES;
        }
    }
    if (!count || last.type != SOL_JSON_OBJECT)
        return SOL_CONT_ROUTE;
    struct sol_json_span role;
    if (sol_json_object_get(&last, "role", &role) && span_str_is(&role, "assistant"))
        return SOL_CONT_PREFILL;
    if (!streams) {
        /* One object built from the node's stream, as Ollama builds it
         * (/api/chat: the final line with all the text in it; /v1: the
         * middleware's chat.completion from the chunks); a tool call's
         * shape is left to the node. */
        if (span_nonempty(&f.tools))
            return SOL_CONT_TOOL_CALLS;
        *whole = 1;
    }
    return SOL_CONT_CONTINUED;
}

/* ---- bodies ---------------------------------------------------------------- */

struct insertion {
    size_t at; /* offset in the client's body: inserted before this byte */
    const char *a, *b, *c;
    size_t blen;
};

/* Offset of the last '}' of the body (the top-level object's end). */
static size_t body_end(const char *body, size_t len)
{
    while (len && body[len - 1] != '}')
        len--;
    return len ? len - 1 : 0;
}

static int build_next(struct sol_cont *c, int prefill)
{
    struct insertion ins[3];
    unsigned n = 0;
    char np[48];
    struct sol_buf *o = &c->next;
    sol_buf_clear(o);
    if (prefill && c->text.len) {
        size_t at = (size_t)(c->messages.p + c->messages.len - 1 - c->body);
        ins[n++] =
            (struct insertion){at, span_nonempty(&c->messages) ? "," : "",
                               "{\"role\":\"assistant\",\"content\":\"", c->text.data, c->text.len};
    }
    if (prefill && c->num_predict > 0 && c->k_tokens) {
        long long left = c->num_predict - (long long)c->k_tokens;
        if (left < 1)
            left = 1; /* Ollama reads 0 as no limit: one more token, at most */
        if (c->api == SOL_CONT_API_CHAT && c->options.p) {
            snprintf(np, sizeof np, "\"num_predict\":%lld", left);
            ins[n++] = (struct insertion){(size_t)(c->options.p + c->options.len - 1 - c->body),
                                          span_nonempty(&c->options) ? "," : "", np, NULL, 0};
        } else if (c->api == SOL_CONT_API_OPENAI) {
            snprintf(np, sizeof np, ",\"max_tokens\":%lld", left); /* the last duplicate wins */
            ins[n++] = (struct insertion){body_end(c->body, c->body_len), "", np, NULL, 0};
        }
    }
    if (c->whole) /* appended last: Go keeps the last duplicate */
        ins[n++] =
            (struct insertion){body_end(c->body, c->body_len),
                               c->api == SOL_CONT_API_OPENAI
                                   ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}"
                                   : ",\"stream\":true",
                               "", NULL, 0};
    /* In body order (at most three: insertion sort). */
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && ins[j].at < ins[j - 1].at; j--) {
            struct insertion t = ins[j];
            ins[j] = ins[j - 1];
            ins[j - 1] = t;
        }
    size_t from = 0;
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        rc |= sol_buf_append(o, c->body + from, ins[i].at - from);
        rc |= sol_buf_append_str(o, ins[i].a);
        rc |= sol_buf_append_str(o, ins[i].b);
        if (ins[i].c) {
            rc |= sol_buf_append(o, ins[i].c, ins[i].blen);
            rc |= sol_buf_append_str(o, "\"}");
        }
        from = ins[i].at;
    }
    rc |= sol_buf_append(o, c->body + from, c->body_len - from);
    c->have_next = n > 0;
    return rc ? -1 : 0;
}

struct sol_cont *sol_cont_new(enum sol_cont_api api, int whole, size_t cap, const char *body,
                              size_t len, const struct sol_json_span *messages)
{
    struct sol_cont *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->api = api;
    c->whole = whole;
    c->cap = cap;
    c->body = body;
    c->body_len = len;
    c->messages = *messages;
    c->num_predict = -1;
    struct top_fields f;
    body_fields(body, len, &f);
    struct sol_json_span np;
    if (f.options.p && f.options.type == SOL_JSON_OBJECT) {
        c->options = f.options;
        if (api == SOL_CONT_API_CHAT && sol_json_object_get(&f.options, "num_predict", &np) &&
            np.type == SOL_JSON_NUMBER && sol_json_number_int64(&np, &c->num_predict) < 0)
            c->num_predict = -1;
    }
    if (api == SOL_CONT_API_OPENAI && f.max_tokens.p && f.max_tokens.type == SOL_JSON_NUMBER &&
        sol_json_number_int64(&f.max_tokens, &c->num_predict) < 0)
        c->num_predict = -1;
    if (whole && build_next(c, 0) < 0) {
        sol_cont_free(c);
        return NULL;
    }
    return c;
}

void sol_cont_free(struct sol_cont *c)
{
    if (!c)
        return;
    sol_buf_free(&c->next);
    sol_buf_free(&c->line);
    sol_buf_free(&c->text);
    sol_buf_free(&c->thinking);
    sol_buf_free(&c->held);
    sol_buf_free(&c->nodes);
    free(c);
}

int sol_cont_whole(const struct sol_cont *c)
{
    return c && c->whole;
}

const struct sol_buf *sol_cont_body(const struct sol_cont *c)
{
    return c && c->have_next ? &c->next : NULL;
}

int sol_cont_attempt_start(struct sol_cont *c, const char *node, uint64_t now_ms)
{
    snprintf(c->node, sizeof c->node, "%s", node ? node : "");
    sol_buf_clear(&c->line);
    sol_buf_clear(&c->held);
    c->final_seen = c->error_seen = c->passthrough = 0;
    c->this_tokens = 0;
    c->att_start_ms = now_ms;
    c->first_tok_ms = c->last_tok_ms = 0;
    return 0;
}

/* ---- node lines ------------------------------------------------------------ */

struct repl {
    const char *at; /* span in the line to replace (len 0: insert) */
    size_t len;
    char text[48];
    const char *ext; /* or this text instead of `text` */
    size_t ext_len;
};

struct line_fields {
    struct sol_json_span message, done, error, id, created, choices, usage, model, fp;
    struct sol_json_span eval_count, eval_duration, prompt_eval_count, prompt_eval_duration,
        total_duration;
};

static int collect(void *ud, const struct sol_json_span *k, const struct sol_json_span *v)
{
    struct line_fields *f = ud;
    static const struct {
        const char *name;
        size_t off;
    } want[] = {
        {"message", offsetof(struct line_fields, message)},
        {"done", offsetof(struct line_fields, done)},
        {"error", offsetof(struct line_fields, error)},
        {"id", offsetof(struct line_fields, id)},
        {"created", offsetof(struct line_fields, created)},
        {"choices", offsetof(struct line_fields, choices)},
        {"usage", offsetof(struct line_fields, usage)},
        {"model", offsetof(struct line_fields, model)},
        {"system_fingerprint", offsetof(struct line_fields, fp)},
        {"eval_count", offsetof(struct line_fields, eval_count)},
        {"eval_duration", offsetof(struct line_fields, eval_duration)},
        {"prompt_eval_count", offsetof(struct line_fields, prompt_eval_count)},
        {"prompt_eval_duration", offsetof(struct line_fields, prompt_eval_duration)},
        {"total_duration", offsetof(struct line_fields, total_duration)},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        if (sol_json_key_equals(k, want[i].name)) {
            *(struct sol_json_span *)(void *)((char *)f + want[i].off) = *v;
            break;
        }
    return 0;
}

static uint64_t span_u64(const struct sol_json_span *s)
{
    long long v;
    if (!s->p || s->type != SOL_JSON_NUMBER || sol_json_number_int64(s, &v) < 0 || v < 0)
        return 0;
    return (uint64_t)v;
}

static void repl_num(struct repl *r, const struct sol_json_span *s, uint64_t v)
{
    r->at = s->p;
    r->len = s->len;
    snprintf(r->text, sizeof r->text, "%llu", (unsigned long long)v);
    r->ext = NULL;
}

/* Writes line[0..len) to out with the replacements applied (any order). */
static int emit_replaced(struct sol_buf *out, const char *line, size_t len, struct repl *r,
                         unsigned n)
{
    for (unsigned i = 1; i < n; i++)
        for (unsigned j = i; j > 0 && r[j].at < r[j - 1].at; j--) {
            struct repl t = r[j];
            r[j] = r[j - 1];
            r[j - 1] = t;
        }
    const char *from = line;
    int rc = 0;
    for (unsigned i = 0; i < n; i++) {
        rc |= sol_buf_append(out, from, (size_t)(r[i].at - from));
        if (r[i].ext)
            rc |= sol_buf_append(out, r[i].ext, r[i].ext_len);
        else
            rc |= sol_buf_append_str(out, r[i].text);
        from = r[i].at + r[i].len;
    }
    rc |= sol_buf_append(out, from, (size_t)(line + len - from));
    return rc ? -1 : 0;
}

/* The content of a string span: raw, without its quotes. */
static void add_text(struct sol_cont *c, struct sol_buf *to, const struct sol_json_span *s,
                     uint64_t now_ms, int is_content)
{
    if (!s->p || s->type != SOL_JSON_STRING || s->len <= 2)
        return;
    if (is_content) {
        c->this_tokens++;
        if (!c->first_tok_ms)
            c->first_tok_ms = now_ms;
        c->last_tok_ms = now_ms;
    }
    if (to->len + s->len - 2 > c->cap) {
        if (c->stop == SOL_CONT_CONTINUED)
            c->stop = SOL_CONT_TOO_LONG;
        c->over = 1; /* whole mode cannot build its answer then */
        return;
    }
    if (sol_buf_append(to, s->p + 1, s->len - 2) < 0 && c->stop == SOL_CONT_CONTINUED)
        c->stop = SOL_CONT_TOO_LONG;
}

static void stop_for(struct sol_cont *c, enum sol_cont_why why)
{
    if (c->stop == SOL_CONT_CONTINUED)
        c->stop = why;
}

/* `"sollol_nodes":["a","b"]` inserted before the object's closing brace. */
static int nodes_member(struct sol_cont *c, struct sol_buf *m)
{
    int rc = sol_buf_append_str(m, ",\"sollol_nodes\":[");
    rc |= sol_buf_append(m, c->nodes.data ? c->nodes.data : "", c->nodes.len);
    if (c->nodes.len)
        rc |= sol_buf_append_str(m, ",");
    rc |= sol_buf_append_json_string(m, c->node, strlen(c->node));
    rc |= sol_buf_append_str(m, "]");
    return rc;
}

/* Ollama's final line: counters of every attempt, the nodes; in whole mode
 * the message with all the text. */
static int final_chat_line(struct sol_cont *c, const char *line, size_t len,
                           const struct line_fields *f, struct sol_buf *out)
{
    struct repl r[10];
    unsigned n = 0;
    struct sol_buf extra = {0}, msg = {0};
    int rc = 0;
    uint64_t ev = span_u64(&f->eval_count) + c->k_tokens;
    uint64_t pc = span_u64(&f->prompt_eval_count);
    /* The last node counted the prefill as prompt: the tokens it came
     * from are generation, so prompt + eval stay the context used. */
    if (pc > c->k_tokens)
        pc -= c->k_tokens;
    c->eval_count = ev;
    c->prompt_count = pc;
    c->have_counts = f->prompt_eval_count.p != NULL;
    if (c->continued) {
        if (f->eval_count.p)
            repl_num(&r[n++], &f->eval_count, ev);
        if (f->eval_duration.p)
            repl_num(&r[n++], &f->eval_duration, span_u64(&f->eval_duration) + c->prev_eval_ns);
        if (f->prompt_eval_count.p)
            repl_num(&r[n++], &f->prompt_eval_count, pc);
        if (f->prompt_eval_duration.p)
            repl_num(&r[n++], &f->prompt_eval_duration,
                     span_u64(&f->prompt_eval_duration) + c->prev_prompt_ns);
        if (f->total_duration.p)
            repl_num(&r[n++], &f->total_duration, span_u64(&f->total_duration) + c->prev_total_ns);
        if (!f->eval_count.p && ev) /* the last node generated nothing: omitempty */
            rc |= sol_buf_appendf(&extra, ",\"eval_count\":%llu,\"eval_duration\":%llu",
                                  (unsigned long long)ev, (unsigned long long)c->prev_eval_ns);
        rc |= nodes_member(c, &extra);
    }
    if (c->whole && f->message.p) {
        rc |= sol_buf_append_str(&msg, "{\"role\":\"assistant\",\"content\":\"");
        rc |= sol_buf_append(&msg, c->text.data ? c->text.data : "", c->text.len);
        rc |= sol_buf_append_str(&msg, "\"");
        if (c->thinking.len) {
            rc |= sol_buf_append_str(&msg, ",\"thinking\":\"");
            rc |= sol_buf_append(&msg, c->thinking.data, c->thinking.len);
            rc |= sol_buf_append_str(&msg, "\"");
        }
        rc |= sol_buf_append_str(&msg, "}");
        r[n] = (struct repl){
            .at = f->message.p, .len = f->message.len, .ext = msg.data, .ext_len = msg.len};
        n++;
    }
    const char *close = line + len;
    while (close > line && close[-1] != '}')
        close--;
    if (extra.len && close > line)
        r[n++] = (struct repl){.at = close - 1, .len = 0, .ext = extra.data, .ext_len = extra.len};
    rc |= emit_replaced(out, line, len, r, n);
    sol_buf_free(&extra);
    sol_buf_free(&msg);
    return rc ? -1 : 0;
}

static enum sol_cont_feed_result chat_line(struct sol_cont *c, const char *line, size_t len,
                                           size_t jlen, const struct line_fields *f,
                                           uint64_t now_ms, struct sol_buf *out)
{
    struct sol_json_span v;
    if (f->message.p && f->message.type == SOL_JSON_OBJECT) {
        if (sol_json_object_get(&f->message, "content", &v))
            add_text(c, &c->text, &v, now_ms, 1);
        if (sol_json_object_get(&f->message, "thinking", &v) && v.type == SOL_JSON_STRING &&
            v.len > 2) {
            stop_for(c, SOL_CONT_THINKING);
            if (c->whole)
                add_text(c, &c->thinking, &v, now_ms, 0);
        }
        if (sol_json_object_get(&f->message, "tool_calls", &v) && span_nonempty(&v))
            stop_for(c, SOL_CONT_TOOL_CALLS);
    }
    if (c->whole && c->over)
        return SOL_CONT_FEED_TOO_LONG;
    if (f->done.p && f->done.type == SOL_JSON_TRUE) {
        c->final_seen = 1;
        if (c->continued || c->whole) {
            if (final_chat_line(c, line, jlen, f, out) < 0)
                return SOL_CONT_FEED_NOMEM;
            if (!c->whole && sol_buf_append(out, line + jlen, len - jlen) < 0)
                return SOL_CONT_FEED_NOMEM;
            return SOL_CONT_FEED_OK;
        }
        c->eval_count = span_u64(&f->eval_count);
        c->prompt_count = span_u64(&f->prompt_eval_count);
        c->have_counts = f->prompt_eval_count.p != NULL;
    }
    if (c->whole)
        return SOL_CONT_FEED_OK;
    return sol_buf_append(out, line, len) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
}

static enum sol_cont_feed_result openai_line(struct sol_cont *c, const char *line, size_t len,
                                             const char *json, size_t jlen,
                                             const struct line_fields *f, uint64_t now_ms,
                                             struct sol_buf *out)
{
    struct repl r[8];
    unsigned n = 0;
    struct sol_buf extra = {0};
    int rc = 0;
    if (c->whole) {
        if (f->model.p && !c->oa_model[0] && f->model.len < sizeof c->oa_model)
            snprintf(c->oa_model, sizeof c->oa_model, "%.*s", (int)f->model.len, f->model.p);
        if (f->fp.p && !c->oa_fp[0] && f->fp.len < sizeof c->oa_fp)
            snprintf(c->oa_fp, sizeof c->oa_fp, "%.*s", (int)f->fp.len, f->fp.p);
    }
    if (!c->continued) {
        if (f->id.p && !c->oa_id[0] && f->id.len < sizeof c->oa_id)
            snprintf(c->oa_id, sizeof c->oa_id, "%.*s", (int)f->id.len, f->id.p);
        if (f->created.p && !c->oa_created[0] && f->created.len < sizeof c->oa_created)
            snprintf(c->oa_created, sizeof c->oa_created, "%.*s", (int)f->created.len,
                     f->created.p);
    } else {
        /* One answer, one id: the first node's. */
        if (f->id.p && c->oa_id[0])
            r[n++] = (struct repl){
                .at = f->id.p, .len = f->id.len, .ext = c->oa_id, .ext_len = strlen(c->oa_id)};
        if (f->created.p && c->oa_created[0])
            r[n++] = (struct repl){.at = f->created.p,
                                   .len = f->created.len,
                                   .ext = c->oa_created,
                                   .ext_len = strlen(c->oa_created)};
    }
    struct sol_json_span ch, delta, v, fin;
    size_t pos = 0;
    int finish = 0;
    if (f->choices.p && f->choices.type == SOL_JSON_ARRAY &&
        sol_json_array_next(&f->choices, &pos, &ch) && ch.type == SOL_JSON_OBJECT) {
        if (sol_json_object_get(&ch, "delta", &delta) && delta.type == SOL_JSON_OBJECT) {
            if (sol_json_object_get(&delta, "content", &v))
                add_text(c, &c->text, &v, now_ms, 1);
            if ((sol_json_object_get(&delta, "reasoning", &v) ||
                 sol_json_object_get(&delta, "reasoning_content", &v)) &&
                v.type == SOL_JSON_STRING && v.len > 2) {
                stop_for(c, SOL_CONT_THINKING);
                if (c->whole)
                    add_text(c, &c->thinking, &v, now_ms, 0);
            }
            if (sol_json_object_get(&delta, "tool_calls", &v) && span_nonempty(&v))
                stop_for(c, SOL_CONT_TOOL_CALLS);
        }
        if (sol_json_object_get(&ch, "finish_reason", &fin) && !span_is_null(&fin)) {
            c->final_seen = 1;
            finish = 1;
            if (fin.len < sizeof c->oa_finish)
                snprintf(c->oa_finish, sizeof c->oa_finish, "%.*s", (int)fin.len, fin.p);
        }
    }
    struct sol_json_span pt = {0}, ct = {0}, tt = {0};
    if (f->usage.p && f->usage.type == SOL_JSON_OBJECT) {
        sol_json_object_get(&f->usage, "prompt_tokens", &pt);
        sol_json_object_get(&f->usage, "completion_tokens", &ct);
        sol_json_object_get(&f->usage, "total_tokens", &tt);
        uint64_t ev = span_u64(&ct) + c->k_tokens, pc = span_u64(&pt);
        if (pc > c->k_tokens)
            pc -= c->k_tokens;
        c->eval_count = ev;
        c->prompt_count = pc;
        c->have_counts = pt.p != NULL;
        c->usage_seen = 1;
        if (c->continued) {
            if (ct.p)
                repl_num(&r[n++], &ct, ev);
            if (pt.p)
                repl_num(&r[n++], &pt, pc);
            if (tt.p)
                repl_num(&r[n++], &tt, ev + pc);
        }
    }
    if (c->continued && finish) {
        rc |= nodes_member(c, &extra);
        const char *close = json + jlen;
        while (close > json && close[-1] != '}')
            close--;
        if (close > json)
            r[n++] =
                (struct repl){.at = close - 1, .len = 0, .ext = extra.data, .ext_len = extra.len};
    }
    if (c->whole) { /* built at the end (openai_whole) */
        sol_buf_free(&extra);
        return c->over ? SOL_CONT_FEED_TOO_LONG : rc ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
    }
    rc |= emit_replaced(out, line, len, r, n);
    sol_buf_free(&extra);
    return rc ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
}

/* OpenAI whole mode: the one chat.completion object Ollama's middleware
 * would have written, from what the chunks said. */
static int openai_whole(struct sol_cont *c, struct sol_buf *out)
{
    if (c->oa_built || !c->final_seen)
        return 0;
    c->oa_built = 1;
    int rc =
        sol_buf_appendf(out, "{\"id\":%s,\"object\":\"chat.completion\",\"created\":%s",
                        c->oa_id[0] ? c->oa_id : "\"\"", c->oa_created[0] ? c->oa_created : "0");
    if (c->oa_model[0])
        rc |= sol_buf_appendf(out, ",\"model\":%s", c->oa_model);
    if (c->oa_fp[0])
        rc |= sol_buf_appendf(out, ",\"system_fingerprint\":%s", c->oa_fp);
    rc |= sol_buf_append_str(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                                  "\"content\":\"");
    rc |= sol_buf_append(out, c->text.data ? c->text.data : "", c->text.len);
    rc |= sol_buf_append_str(out, "\"");
    if (c->thinking.len) {
        rc |= sol_buf_append_str(out, ",\"reasoning\":\"");
        rc |= sol_buf_append(out, c->thinking.data, c->thinking.len);
        rc |= sol_buf_append_str(out, "\"");
    }
    rc |= sol_buf_appendf(out, "},\"finish_reason\":%s}]",
                          c->oa_finish[0] ? c->oa_finish : "\"stop\"");
    if (c->usage_seen)
        rc |=
            sol_buf_appendf(out,
                            ",\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                            "\"total_tokens\":%llu}",
                            (unsigned long long)c->prompt_count, (unsigned long long)c->eval_count,
                            (unsigned long long)(c->prompt_count + c->eval_count));
    if (c->continued)
        rc |= nodes_member(c, out);
    rc |= sol_buf_append_str(out, "}\n");
    return rc ? -1 : 0;
}

/* One complete line, with its '\n' (len includes it when present). */
static enum sol_cont_feed_result one_line(struct sol_cont *c, const char *line, size_t len,
                                          uint64_t now_ms, struct sol_buf *out)
{
    const char *json = line;
    size_t jlen = len;
    while (jlen && (json[jlen - 1] == '\n' || json[jlen - 1] == '\r' || json[jlen - 1] == ' '))
        jlen--;
    if (c->api == SOL_CONT_API_OPENAI) {
        if (jlen < 5 || memcmp(json, "data:", 5) != 0) /* blank lines, comments, event: */
            return c->whole || sol_buf_append(out, line, len) == 0 ? SOL_CONT_FEED_OK
                                                                   : SOL_CONT_FEED_NOMEM;
        json += 5;
        jlen -= 5;
        if (jlen && *json == ' ') {
            json++;
            jlen--;
        }
        if (jlen == 6 && memcmp(json, "[DONE]", 6) == 0) {
            if (c->whole)
                return openai_whole(c, out) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
            c->final_seen = 1;
            return sol_buf_append(out, line, len) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
        }
    } else if (jlen == 0) {
        return c->whole || sol_buf_append(out, line, len) == 0 ? SOL_CONT_FEED_OK
                                                               : SOL_CONT_FEED_NOMEM;
    }
    struct line_fields f;
    memset(&f, 0, sizeof f);
    if (sol_json_scan_object(json, jlen, LINE_DEPTH, collect, &f, NULL, 0) != SOL_JSON_OK) {
        stop_for(c, SOL_CONT_NODE_LINE);
        if (c->whole)
            return SOL_CONT_FEED_OK; /* the final line, if it comes, still builds the answer */
        return sol_buf_append(out, line, len) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
    }
    if (f.error.p) {
        /* Held: a continued answer does not show it; given up, it does. */
        c->error_seen = 1;
        sol_buf_clear(&c->held);
        return sol_buf_append(&c->held, line, len) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
    }
    if (c->api == SOL_CONT_API_OPENAI)
        return openai_line(c, line, len, json, jlen, &f, now_ms, out);
    return chat_line(c, line, len, (size_t)(json + jlen - line), &f, now_ms, out);
}

enum sol_cont_feed_result sol_cont_feed(struct sol_cont *c, const char *p, size_t n,
                                        uint64_t now_ms, struct sol_buf *out)
{
    if (c->passthrough)
        return sol_buf_append(out, p, n) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
    while (n) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) + 1 : n;
        enum sol_cont_feed_result res = SOL_CONT_FEED_OK;
        if (!nl) {
            if (c->line.len + take > c->cap + LINE_SLACK) {
                /* A line longer than anything worth continuing: pass the
                 * rest on as it comes. */
                if (c->whole)
                    return SOL_CONT_FEED_TOO_LONG;
                stop_for(c, SOL_CONT_TOO_LONG);
                c->passthrough = 1;
                if (sol_buf_append(out, c->line.data ? c->line.data : "", c->line.len) < 0 ||
                    sol_buf_append(out, p, take) < 0)
                    return SOL_CONT_FEED_NOMEM;
                sol_buf_clear(&c->line);
                return SOL_CONT_FEED_OK;
            }
            return sol_buf_append(&c->line, p, take) < 0 ? SOL_CONT_FEED_NOMEM : SOL_CONT_FEED_OK;
        }
        if (c->line.len) {
            if (c->line.len + take > c->cap + LINE_SLACK) {
                if (c->whole)
                    return SOL_CONT_FEED_TOO_LONG;
                stop_for(c, SOL_CONT_TOO_LONG);
                res = sol_buf_append(out, c->line.data, c->line.len) < 0 ||
                              sol_buf_append(out, p, take) < 0
                          ? SOL_CONT_FEED_NOMEM
                          : SOL_CONT_FEED_OK;
            } else if (sol_buf_append(&c->line, p, take) < 0) {
                return SOL_CONT_FEED_NOMEM;
            } else {
                res = one_line(c, c->line.data, c->line.len, now_ms, out);
            }
            sol_buf_clear(&c->line);
        } else {
            res = one_line(c, p, take, now_ms, out);
        }
        if (res != SOL_CONT_FEED_OK)
            return res;
        p += take;
        n -= take;
    }
    return SOL_CONT_FEED_OK;
}

int sol_cont_attempt_failed(const struct sol_cont *c)
{
    if (c->passthrough)
        return 0;
    return c->error_seen || !c->final_seen;
}

void sol_cont_attempt_end(struct sol_cont *c, struct sol_buf *out)
{
    if (!c->line.len || c->passthrough)
        return;
    /* Only a line that is whole JSON: a line cut in the middle stays what it
     * was, an unfinished line (the answer broke there). */
    const char *json = c->line.data;
    size_t jlen = c->line.len;
    while (jlen && (json[jlen - 1] == '\r' || json[jlen - 1] == ' '))
        jlen--;
    if (c->api == SOL_CONT_API_OPENAI && jlen >= 5 && memcmp(json, "data:", 5) == 0) {
        json += 5;
        jlen -= 5;
        while (jlen && *json == ' ')
            json++, jlen--;
    }
    if (!(c->api == SOL_CONT_API_OPENAI && jlen == 6 && memcmp(json, "[DONE]", 6) == 0) &&
        sol_json_scan_object(json, jlen, LINE_DEPTH, NULL, NULL, NULL, 0) != SOL_JSON_OK)
        return;
    struct sol_buf l = c->line;
    c->line = (struct sol_buf){0};
    /* Terminated as the client's parser would need it: one NDJSON line, or
     * one SSE event (data line and blank line). */
    if (sol_buf_append_str(&l, c->api == SOL_CONT_API_OPENAI ? "\n\n" : "\n") == 0)
        one_line(c, l.data, l.len, c->last_tok_ms, out);
    sol_buf_free(&l);
}

void sol_cont_attempt_ok(struct sol_cont *c, struct sol_buf *out)
{
    sol_cont_attempt_end(c, out);
    if (c->whole && c->api == SOL_CONT_API_OPENAI)
        openai_whole(c, out); /* a stream that ended without [DONE] */
}

size_t sol_cont_error_text(const struct sol_cont *c, char *out, size_t outlen)
{
    out[0] = '\0';
    const char *p = c->held.data;
    size_t n = c->held.len;
    while (n && (p[n - 1] == '\n' || p[n - 1] == '\r' || p[n - 1] == ' '))
        n--;
    if (n >= 5 && memcmp(p, "data:", 5) == 0) {
        p += 5, n -= 5;
        while (n && *p == ' ')
            p++, n--;
    }
    struct line_fields f;
    memset(&f, 0, sizeof f);
    if (!n || sol_json_scan_object(p, n, LINE_DEPTH, collect, &f, NULL, 0) != SOL_JSON_OK ||
        !f.error.p)
        return 0;
    struct sol_json_span e = f.error, m;
    if (e.type == SOL_JSON_OBJECT && sol_json_object_get(&f.error, "message", &m))
        e = m;
    if (e.type != SOL_JSON_STRING)
        return 0;
    char buf[512];
    struct sol_json_span cut = e;
    if (cut.len > sizeof buf - 1)
        return 0;
    long len = sol_json_string_decode(&cut, buf, sizeof buf);
    if (len < 0)
        return 0;
    size_t k = (size_t)len < outlen - 1 ? (size_t)len : outlen - 1;
    memcpy(out, buf, k);
    out[k] = '\0';
    return k;
}

enum sol_cont_why sol_cont_can_continue(const struct sol_cont *c)
{
    if (c->stop != SOL_CONT_CONTINUED)
        return c->stop;
    if (c->final_seen && !c->error_seen)
        return SOL_CONT_COMPLETE;
    return SOL_CONT_CONTINUED;
}

int sol_cont_next(struct sol_cont *c, uint64_t now_ms)
{
    uint64_t start = c->att_start_ms;
    c->prev_total_ns += (now_ms > start ? now_ms - start : 0) * 1000000ull;
    if (c->this_tokens) {
        c->prev_prompt_ns += (c->first_tok_ms - start) * 1000000ull;
        c->prev_eval_ns += (c->last_tok_ms - c->first_tok_ms) * 1000000ull;
        c->k_tokens += c->this_tokens;
        if (c->nodes.len)
            sol_buf_append_str(&c->nodes, ",");
        sol_buf_append_json_string(&c->nodes, c->node, strlen(c->node));
        c->continued++;
    }
    c->this_tokens = 0;
    sol_buf_clear(&c->line);
    sol_buf_clear(&c->held);
    c->final_seen = c->error_seen = 0;
    return build_next(c, 1);
}

void sol_cont_restart(struct sol_cont *c)
{
    sol_buf_clear(&c->text);
    sol_buf_clear(&c->thinking);
    sol_buf_clear(&c->line);
    sol_buf_clear(&c->held);
    sol_buf_clear(&c->nodes);
    c->stop = SOL_CONT_CONTINUED;
    c->final_seen = c->error_seen = c->passthrough = c->over = 0;
    c->continued = 0;
    c->k_tokens = c->this_tokens = 0;
    c->prev_total_ns = c->prev_prompt_ns = c->prev_eval_ns = 0;
    c->oa_id[0] = c->oa_created[0] = c->oa_model[0] = c->oa_fp[0] = c->oa_finish[0] = '\0';
    c->oa_built = c->usage_seen = 0;
    if (build_next(c, 0) < 0)
        c->have_next = 0;
}

int sol_cont_give_up(struct sol_cont *c, struct sol_buf *out)
{
    sol_buf_clear(&c->line);
    if (!c->held.len)
        return 0;
    sol_buf_append(out, c->held.data, c->held.len);
    sol_buf_clear(&c->held);
    return 1;
}

void sol_cont_stats(const struct sol_cont *c, struct sol_cont_stats *out)
{
    out->continued = c->continued;
    out->text_bytes = c->text.len;
    out->eval_count = c->eval_count;
    out->prompt_count = c->prompt_count;
    out->have_counts = c->have_counts;
}
