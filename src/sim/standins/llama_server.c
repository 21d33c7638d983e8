/*
 * llama_server.c - the llama-server stand-in: llama.cpp's HTTP server as the
 * sharded path sees it, with deterministic text instead of a model.
 *
 * Start-up follows the real program: the command line is parsed first and
 * every --rpc backend is connected and handshaken while it is parsed (the
 * real one registers its RPC devices there), so a version mismatch or an
 * unreachable backend aborts before any port is open. Then the HTTP
 * listener comes up at once ("listening on HOST:PORT" on stdout), the GGUF
 * is checked (a bad one: "exiting due to model loading error", exit 1), and
 * every route answers 503 "Loading model" until $SOLLOL_SIM_LOAD_MS passed.
 * The backend connections stay open, idle, while it runs; when one closes
 * the process aborts (SIGABRT), as the real one does when a backend dies.
 *
 * One libuv loop: libmicrohttpd in external epoll mode through the mhd_uv
 * glue, a uv timer per generating request for token pacing, suspended
 * connections for requests that wait for a slot (-np) or for tokens.
 */
#include "standin.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "sollol/buf.h"
#include "sollol/mhd_uv.h"

#define MAX_BACKENDS   16
#define MAX_DEVICES    16
#define MAX_SPLIT      32
#define MAX_STOPS      8
#define MAX_BODY       (8u << 20)
#define RECENT_MAX     32
#define SLOT_CACHE_MAX (1u << 20)

/* ---------------------------------------------------------------- state */

struct backend {
    char endpoint[128];
    char host[96];
    int port;
    int fd;
    struct rpc_version ver;
    int ndev;
    uint64_t free_[MAX_DEVICES], total[MAX_DEVICES];
    uv_poll_t poll;
    int poll_init;
};

enum route {
    RT_NONE = 0,
    RT_HEALTH,
    RT_CHAT,
    RT_COMPLETION,
    RT_V1_COMPLETIONS,
    RT_EMBEDDINGS,
    RT_MODELS,
    RT_PROPS,
    RT_SLOTS,
    RT_METRICS,
    RT_SIM_STATS,
    RT_NOT_FOUND,
    RT_COUNT
};

static const char *const ROUTE_NAMES[RT_COUNT] = {
    "none",   "health", "chat",  "completion", "v1_completions", "embeddings",
    "models", "props",  "slots", "metrics",    "sim_stats",      "not_found",
};

enum phase { PH_RECEIVING = 0, PH_WAITING, PH_READY, PH_STREAMING, PH_SENT };

struct req {
    struct req *next, *prev; /* live requests */
    struct req *q_next;      /* waiting for a slot */
    struct MHD_Connection *conn;
    enum route route;
    int is_post;
    enum phase phase;
    int suspended, cancelled, mhd_done, queued;
    int handles_open;
    int timer_init;
    uv_timer_t timer;
    int watch_init;
    struct sol_hangup_watch watch;
    struct sol_buf body;
    int body_too_large;
    cJSON *json;

    /* response */
    int status;
    const char *ctype;
    int cb_resp;
    int out_done;
    struct sol_buf out;

    /* generation */
    int slot;    /* held now, -1 none */
    int slot_id; /* the slot it ran on (reported after release) */
    int stream;
    int n_predict; /* -1: until end of sequence */
    int limit_given;
    char *stops[MAX_STOPS];
    int nstops;
    uint64_t prng;
    struct sol_buf prompt; /* what the slot cache compares */
    int prompt_n, cache_n;
    int n_done, n_target;
    struct sol_buf text; /* generated, before stop-word cutting */
    size_t sent;         /* bytes of text already emitted */
    const char *stop_type;
    char stopping_word[128];
    uint64_t t_start, t_prompt_done, t_end;
    char id[40];
    long long created;
};

struct slot {
    int busy;
    struct sol_buf cache; /* the prompt it processed last */
};

struct recent {
    char path[64];
    char *body; /* as received, cut at 64 KiB */
};

static struct {
    uv_loop_t loop;
    struct MHD_Daemon *daemon;
    struct sol_mhd_uv glue;
    uv_timer_t kick, load_timer, crash_timer;
    uv_signal_t sigterm, sigint;
    int stopping;
    int ready;
    int argc;
    char **argv;

    /* flags */
    const char *model, *alias, *host, *api_key, *ngl, *split_mode, *mmproj, *lora;
    int port, ctx, np, metrics, embeddings, no_webui, timeout;
    double ts[MAX_SPLIT];
    int nts;
    struct backend be[MAX_BACKENDS];
    int nbe;

    /* knobs */
    struct rpc_version ver;
    double tps, prompt_tps, load_ms, crash_ms, default_tokens;

    /* scheduling */
    struct slot *slots;
    struct req *live;
    struct req *q_head, *q_tail;
    int waiting, active, max_active;

    /* statistics */
    uint64_t requests, by_route[RT_COUNT];
    uint64_t prompt_tokens_total, predicted_total, completed;
    double prompt_ms_total, predicted_ms_total;
    struct recent recent[RECENT_MAX];
    int nrecent, recent_pos;
} S;

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

static double ms_between(uint64_t a, uint64_t b)
{
    return b > a ? (double)(b - a) / 1e6 : 0.0;
}

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    ssize_t rc = write(2, line, (size_t)n); /* one write: lines never interleave */
    (void)rc;
}

static void die_oom(void)
{
    logf_("out of memory");
    standin_abort();
}

static void put(struct sol_buf *b, const char *s)
{
    if (sol_buf_append_str(b, s) < 0)
        die_oom();
}

static void putn(struct sol_buf *b, const char *s, size_t n)
{
    if (sol_buf_append(b, s, n) < 0)
        die_oom();
}

#define PUTF(b, ...)                                                                               \
    do {                                                                                           \
        if (sol_buf_appendf((b), __VA_ARGS__) < 0)                                                 \
            die_oom();                                                                             \
    } while (0)

static void put_json_str(struct sol_buf *b, const char *s, size_t n)
{
    if (sol_buf_append_json_string(b, s, n) < 0)
        die_oom();
}

static void put_double(struct sol_buf *b, double v)
{
    if (!isfinite(v))
        v = 0;
    PUTF(b, "%.17g", v);
}

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

static uint64_t mix64(uint64_t x)
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
    uint64_t x = mix64(r->prng);
    r->prng += 0x9e3779b97f4a7c15ULL;
    const char *w = VOCAB[x & 63];
    if (r->n_done == 0) {
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

static int tokens_of(size_t bytes)
{
    return bytes ? (int)((bytes + 3) / 4) : 1;
}

/* ---------------------------------------------------------------- MHD plumbing */

static void on_kick(uv_timer_t *t)
{
    (void)t;
    if (S.daemon && !S.stopping)
        sol_mhd_uv_run(&S.glue);
}

/* MHD 0.9.75 in external epoll mode does not wake itself after a resume. */
static void kick(void)
{
    if (!uv_is_active((uv_handle_t *)&S.kick) && !uv_is_closing((uv_handle_t *)&S.kick))
        uv_timer_start(&S.kick, on_kick, 0, 0);
}

static void resume(struct req *r)
{
    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
        kick();
    }
}

static void slot_release(struct req *r);

static void req_cancel(struct req *r)
{
    if (r->cancelled)
        return;
    r->cancelled = 1;
    if (r->timer_init)
        uv_timer_stop(&r->timer);
    slot_release(r);
}

static void on_hangup(struct sol_hangup_watch *w)
{
    struct req *r = w->data;
    if (r->mhd_done || r->cancelled)
        return;
    req_cancel(r);
    resume(r); /* MHD then reports the error and closes the connection */
}

static void suspend(struct req *r)
{
    if (r->suspended)
        return;
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    if (!r->watch_init) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci && sol_hangup_watch_init(&r->watch, &S.loop, ci->connect_fd, on_hangup, r) == 0) {
            r->watch_init = 1;
            r->handles_open++;
        }
    }
    if (r->watch_init)
        sol_hangup_watch_start(&r->watch);
}

static void req_ready(struct req *r)
{
    if (r->phase == PH_STREAMING || r->phase == PH_SENT)
        return;
    r->phase = PH_READY;
    resume(r);
}

static void req_wake(struct req *r)
{
    if (r->phase == PH_STREAMING)
        resume(r);
}

static void req_json(struct req *r, int status)
{
    r->status = status;
    r->ctype = "application/json; charset=utf-8";
    req_ready(r);
}

/* llama-server's error shape: {"error":{"code","message","type"}}. */
static void req_error(struct req *r, int status, const char *type, const char *msg)
{
    sol_buf_clear(&r->out);
    r->cb_resp = 0;
    PUTF(&r->out, "{\"error\":{\"code\":%d,\"message\":", status);
    put_json_str(&r->out, msg, strlen(msg));
    put(&r->out, ",\"type\":");
    put_json_str(&r->out, type, strlen(type));
    put(&r->out, "}}");
    req_json(r, status);
}

static void on_req_handle_closed(struct req *r);

static void on_timer_closed(uv_handle_t *h)
{
    on_req_handle_closed(h->data);
}

static void on_watch_closed(struct sol_hangup_watch *w)
{
    on_req_handle_closed(w->data);
}

static void req_free(struct req *r)
{
    if (r->json)
        cJSON_Delete(r->json);
    for (int i = 0; i < r->nstops; i++)
        free(r->stops[i]);
    sol_buf_free(&r->body);
    sol_buf_free(&r->out);
    sol_buf_free(&r->prompt);
    sol_buf_free(&r->text);
    free(r);
}

static void on_req_handle_closed(struct req *r)
{
    if (--r->handles_open == 0)
        req_free(r);
}

static void req_timer(struct req *r, double ms, uv_timer_cb cb)
{
    if (!r->timer_init) {
        uv_timer_init(&S.loop, &r->timer);
        r->timer.data = r;
        r->timer_init = 1;
        r->handles_open++;
    }
    uv_timer_start(&r->timer, cb, ms > 0 ? (uint64_t)ceil(ms) : 0, 0);
}

/* MHD 0.9.75 leaves a connection whose reader failed open until its idle
 * loop visits it; a non-default timeout makes every run visit it. */
static ssize_t reader_error(struct req *r)
{
    MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 86400u);
    kick();
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    struct req *r = cls;
    (void)pos;
    if (r->cancelled)
        return reader_error(r);
    size_t avail = sol_buf_pending(&r->out);
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(buf, r->out.data + r->out.off, n);
        sol_buf_consume(&r->out, n);
        return (ssize_t)n;
    }
    if (r->out_done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    suspend(r); /* req_wake resumes it when tokens are appended */
    return 0;
}

static enum MHD_Result respond(struct req *r)
{
    struct MHD_Response *resp;
    if (r->cb_resp) {
        resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, r, NULL);
        r->phase = PH_STREAMING;
    } else {
        resp = MHD_create_response_from_buffer(sol_buf_pending(&r->out),
                                               r->out.data ? r->out.data + r->out.off : (void *)"",
                                               MHD_RESPMEM_PERSISTENT);
        r->phase = PH_SENT;
    }
    if (!resp)
        return MHD_NO;
    if (r->ctype)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->ctype);
    MHD_add_response_header(resp, "Server", "llama.cpp");
    MHD_add_response_header(resp, "Access-Control-Allow-Origin", "*");
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* ---------------------------------------------------------------- JSON pieces */

static const char *model_id(void)
{
    return S.alias ? S.alias : S.model;
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
         r->n_done, r->prompt_n + r->cache_n, r->n_predict, (unsigned long long)r->prng);
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
    S.completed++;
    S.predicted_total += (uint64_t)r->n_done;
    S.prompt_tokens_total += (uint64_t)r->prompt_n;
    S.prompt_ms_total += ms_between(r->t_start, r->t_prompt_done);
    S.predicted_ms_total += ms_between(r->t_prompt_done, r->t_end);
    slot_release(r);
    finish_output(r);
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
        if (S.tps <= 0)
            continue;
        double due_ms = 1e3 * r->n_done / S.tps;
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
    req_timer(r, S.tps > 0 ? 1e3 / S.tps : 0, on_token_timer);
}

/* Starts the request on slot `i`: prompt cache, then prompt evaluation. */
static void slot_start(struct req *r, int i)
{
    struct slot *s = &S.slots[i];
    s->busy = 1;
    r->slot = i;
    r->slot_id = i;
    S.active++;
    if (S.active > S.max_active)
        S.max_active = S.active;
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
    req_timer(r, S.prompt_tps > 0 ? 1e3 * r->prompt_n / S.prompt_tps : 0, on_prompt_done);
}

static void slot_release(struct req *r)
{
    if (r->queued) {
        struct req **pp = &S.q_head;
        while (*pp && *pp != r)
            pp = &(*pp)->q_next;
        if (*pp) {
            *pp = r->q_next;
            if (S.q_tail == r) {
                S.q_tail = S.q_head;
                while (S.q_tail && S.q_tail->q_next)
                    S.q_tail = S.q_tail->q_next;
            }
        }
        r->queued = 0;
        S.waiting--;
        return;
    }
    if (r->slot < 0)
        return;
    S.slots[r->slot].busy = 0;
    int freed = r->slot;
    r->slot = -1;
    S.active--;
    if (S.q_head && !S.stopping) {
        struct req *n = S.q_head;
        S.q_head = n->q_next;
        if (!S.q_head)
            S.q_tail = NULL;
        n->queued = 0;
        n->q_next = NULL;
        S.waiting--;
        slot_start(n, freed);
    }
}

static void slot_acquire(struct req *r)
{
    for (int i = 0; i < S.np; i++)
        if (!S.slots[i].busy) {
            slot_start(r, i);
            return;
        }
    r->queued = 1;
    r->q_next = NULL;
    if (S.q_tail)
        S.q_tail->q_next = r;
    else
        S.q_head = r;
    S.q_tail = r;
    S.waiting++;
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

static int parse_stop(struct req *r, const cJSON *st)
{
    if (!st || cJSON_IsNull(st))
        return 0;
    if (cJSON_IsString(st)) {
        if (*st->valuestring)
            r->stops[r->nstops++] = strdup(st->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(st))
        return -1;
    const cJSON *e;
    cJSON_ArrayForEach(e, st)
    {
        if (!cJSON_IsString(e))
            return -1;
        if (*e->valuestring && r->nstops < MAX_STOPS)
            r->stops[r->nstops++] = strdup(e->valuestring);
    }
    return 0;
}

static void handle_generate(struct req *r)
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
    r->prng =
        mix64(fnv1a(0xcbf29ce484222325ULL, r->prompt.data ? r->prompt.data : "", r->prompt.len) ^
              mix64(seed));
    int ctx_slot = S.ctx / S.np;
    int ptok = tokens_of(r->prompt.len);
    if (ptok >= ctx_slot) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "the request exceeds the available context size, try increasing it (%d >= %d)",
                 ptok, ctx_slot);
        req_error(r, 400, "exceed_context_size_error", msg);
        return;
    }
    r->n_target = r->limit_given ? r->n_predict : (int)S.default_tokens;
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

static void handle_embeddings(struct req *r)
{
    if (!S.embeddings) {
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

/* ---------------------------------------------------------------- other routes */

static void put_argv(struct sol_buf *b)
{
    put(b, "[");
    for (int i = 0; i < S.argc; i++) {
        if (i)
            put(b, ",");
        put_json_str(b, S.argv[i], strlen(S.argv[i]));
    }
    put(b, "]");
}

static void handle_models(struct req *r)
{
    struct sol_buf *o = &r->out;
    const char *id = model_id();
    put(o, "{\"models\":[{\"name\":");
    put_json_str(o, id, strlen(id));
    put(o, ",\"model\":");
    put_json_str(o, id, strlen(id));
    put(o, ",\"modified_at\":\"\",\"size\":\"\",\"digest\":\"\",\"type\":\"model\",\"description\":"
           "\"\",\"tags\":[\"\"],\"capabilities\":[\"completion\"],\"parameters\":\"\","
           "\"details\":{\"parent_model\":\"\",\"format\":\"gguf\",\"family\":\"\",\"families\":"
           "[\"\"],\"parameter_size\":\"\",\"quantization_level\":\"\"}}],\"object\":\"list\","
           "\"data\":[{\"id\":");
    put_json_str(o, id, strlen(id));
    PUTF(o,
         ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"llamacpp\",\"meta\":{\"n_ctx_"
         "train\":%d}}]}",
         (long long)time(NULL), S.ctx);
    req_json(r, 200);
}

static void handle_props(struct req *r)
{
    struct sol_buf *o = &r->out;
    PUTF(o,
         "{\"default_generation_settings\":{\"id\":0,\"n_ctx\":%d,\"params\":{\"n_predict\":-1,"
         "\"seed\":4294967295}},\"total_slots\":%d,\"model_alias\":",
         S.ctx / S.np, S.np);
    put_json_str(o, model_id(), strlen(model_id()));
    put(o, ",\"model_path\":");
    put_json_str(o, S.model, strlen(S.model));
    put(o, ",\"modalities\":{\"vision\":");
    put(o, S.mmproj ? "true" : "false");
    put(o, ",\"audio\":false},\"chat_template\":\"{% for m in messages %}<|{{ m.role }}|>{{ "
           "m.content }}\\n{% endfor %}<|assistant|>\",\"build_info\":\"b0000-sollol-sim\"}");
    req_json(r, 200);
}

static void handle_slots(struct req *r)
{
    struct sol_buf *o = &r->out;
    put(o, "[");
    for (int i = 0; i < S.np; i++)
        PUTF(o, "%s{\"id\":%d,\"n_ctx\":%d,\"is_processing\":%s,\"cache_tokens\":%d}", i ? "," : "",
             i, S.ctx / S.np, S.slots[i].busy ? "true" : "false",
             tokens_of(S.slots[i].cache.len) * (S.slots[i].cache.len > 0));
    put(o, "]");
    req_json(r, 200);
}

static void handle_metrics(struct req *r)
{
    if (!S.metrics) {
        req_error(r, 501, "not_supported_error",
                  "This server does not support metrics endpoint. Start it with `--metrics`");
        return;
    }
    struct sol_buf *o = &r->out;
    struct {
        const char *name, *type, *help;
        double v;
    } m[] = {
        {"prompt_tokens_total", "counter", "Number of prompt tokens processed.",
         (double)S.prompt_tokens_total},
        {"prompt_seconds_total", "counter", "Prompt process time", S.prompt_ms_total / 1e3},
        {"tokens_predicted_total", "counter", "Number of generation tokens processed.",
         (double)S.predicted_total},
        {"tokens_predicted_seconds_total", "counter", "Predict process time",
         S.predicted_ms_total / 1e3},
        {"prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
         S.prompt_ms_total > 0 ? 1e3 * (double)S.prompt_tokens_total / S.prompt_ms_total : 0},
        {"predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
         S.predicted_ms_total > 0 ? 1e3 * (double)S.predicted_total / S.predicted_ms_total : 0},
        {"requests_processing", "gauge", "Number of requests processing.", (double)S.active},
        {"requests_deferred", "gauge", "Number of requests deferred.", (double)S.waiting},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        PUTF(o, "# HELP llamacpp:%s %s\n# TYPE llamacpp:%s %s\nllamacpp:%s %.17g\n", m[i].name,
             m[i].help, m[i].name, m[i].type, m[i].name, m[i].v);
    r->status = 200;
    r->ctype = "text/plain; version=0.0.4";
    req_ready(r);
}

static void handle_sim_stats(struct req *r)
{
    struct sol_buf *o = &r->out;
    PUTF(o, "{\"pid\":%d,\"state\":\"%s\",\"requests\":%llu,\"by_route\":{", (int)getpid(),
         S.ready ? "ready" : "loading", (unsigned long long)S.requests);
    int first = 1;
    for (int i = 1; i < RT_COUNT; i++)
        if (S.by_route[i]) {
            PUTF(o, "%s\"%s\":%llu", first ? "" : ",", ROUTE_NAMES[i],
                 (unsigned long long)S.by_route[i]);
            first = 0;
        }
    PUTF(o,
         "},\"completed\":%llu,\"active\":%d,\"waiting\":%d,\"max_active\":%d,\"tokens_predicted\""
         ":%llu,\"argv\":",
         (unsigned long long)S.completed, S.active, S.waiting, S.max_active,
         (unsigned long long)S.predicted_total);
    put_argv(o);
    put(o, ",\"model\":");
    put_json_str(o, S.model, strlen(S.model));
    put(o, ",\"alias\":");
    if (S.alias)
        put_json_str(o, S.alias, strlen(S.alias));
    else
        put(o, "null");
    PUTF(o,
         ",\"host\":\"%s\",\"port\":%d,\"ctx_size\":%d,\"parallel\":%d,\"n_gpu_layers\":", S.host,
         S.port, S.ctx, S.np);
    put_json_str(o, S.ngl ? S.ngl : "auto", strlen(S.ngl ? S.ngl : "auto"));
    put(o, ",\"tensor_split\":[");
    for (int i = 0; i < S.nts; i++) {
        if (i)
            put(o, ",");
        put_double(o, S.ts[i]);
    }
    put(o, "],\"split_mode\":");
    if (S.split_mode)
        put_json_str(o, S.split_mode, strlen(S.split_mode));
    else
        put(o, "null");
    put(o, ",\"mmproj\":");
    if (S.mmproj)
        put_json_str(o, S.mmproj, strlen(S.mmproj));
    else
        put(o, "null");
    put(o, ",\"lora\":");
    if (S.lora)
        put_json_str(o, S.lora, strlen(S.lora));
    else
        put(o, "null");
    PUTF(o, ",\"timeout\":%d,\"no_webui\":%s", S.timeout, S.no_webui ? "true" : "false");
    PUTF(o,
         ",\"embeddings\":%s,\"metrics\":%s,\"api_key\":%s,\"rpc_version\":\"%u.%u.%u\","
         "\"rpc_backends\":[",
         S.embeddings ? "true" : "false", S.metrics ? "true" : "false",
         S.api_key ? "true" : "false", S.ver.major, S.ver.minor, S.ver.patch);
    for (int i = 0; i < S.nbe; i++) {
        struct backend *b = &S.be[i];
        PUTF(o, "%s{\"endpoint\":", i ? "," : "");
        put_json_str(o, b->endpoint, strlen(b->endpoint));
        PUTF(o, ",\"version\":\"%u.%u.%u\",\"devices\":[", b->ver.major, b->ver.minor,
             b->ver.patch);
        for (int d = 0; d < b->ndev; d++)
            PUTF(o, "%s{\"free\":%llu,\"total\":%llu}", d ? "," : "",
                 (unsigned long long)b->free_[d], (unsigned long long)b->total[d]);
        put(o, "]}");
    }
    put(o, "],\"recent\":[");
    for (int i = 0; i < S.nrecent; i++) {
        int k = (S.recent_pos - S.nrecent + i + RECENT_MAX) % RECENT_MAX;
        PUTF(o, "%s{\"path\":", i ? "," : "");
        put_json_str(o, S.recent[k].path, strlen(S.recent[k].path));
        put(o, ",\"body\":");
        cJSON *j = cJSON_Parse(S.recent[k].body);
        if (j) {
            char *txt = cJSON_PrintUnformatted(j);
            put(o, txt ? txt : "null");
            free(txt);
            cJSON_Delete(j);
        } else {
            put_json_str(o, S.recent[k].body, strlen(S.recent[k].body));
        }
        put(o, "}");
    }
    put(o, "]}");
    req_json(r, 200);
}

static void record_recent(struct req *r, const char *url)
{
    struct recent *e = &S.recent[S.recent_pos];
    free(e->body);
    size_t n = r->body.len > 65536 ? 65536 : r->body.len;
    e->body = malloc(n + 1);
    if (!e->body)
        die_oom();
    if (n)
        memcpy(e->body, r->body.data, n);
    e->body[n] = 0;
    snprintf(e->path, sizeof e->path, "%s", url);
    S.recent_pos = (S.recent_pos + 1) % RECENT_MAX;
    if (S.nrecent < RECENT_MAX)
        S.nrecent++;
}

static enum route route_of(const char *url, int is_post, int is_get)
{
    static const struct {
        const char *path;
        enum route rt;
        int post;
    } T[] = {
        {"/health", RT_HEALTH, 0},
        {"/v1/health", RT_HEALTH, 0},
        {"/v1/chat/completions", RT_CHAT, 1},
        {"/chat/completions", RT_CHAT, 1},
        {"/completion", RT_COMPLETION, 1},
        {"/completions", RT_COMPLETION, 1},
        {"/v1/completions", RT_V1_COMPLETIONS, 1},
        {"/v1/embeddings", RT_EMBEDDINGS, 1},
        {"/embeddings", RT_EMBEDDINGS, 1},
        {"/v1/models", RT_MODELS, 0},
        {"/models", RT_MODELS, 0},
        {"/props", RT_PROPS, 0},
        {"/slots", RT_SLOTS, 0},
        {"/metrics", RT_METRICS, 0},
        {"/_sim/stats", RT_SIM_STATS, 0},
    };
    for (size_t i = 0; i < sizeof T / sizeof T[0]; i++)
        if (strcmp(url, T[i].path) == 0)
            return (T[i].post ? is_post : is_get) ? T[i].rt : RT_NOT_FOUND;
    return RT_NOT_FOUND;
}

static int authorized(struct req *r)
{
    if (!S.api_key || r->route == RT_HEALTH || r->route == RT_MODELS || r->route == RT_SIM_STATS)
        return 1;
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (!h)
        h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Api-Key");
    if (!h)
        return 0;
    if (strncmp(h, "Bearer ", 7) == 0)
        h += 7;
    return strcmp(h, S.api_key) == 0;
}

static void dispatch(struct req *r, const char *url)
{
    S.requests++;
    S.by_route[r->route]++;
    r->phase = PH_WAITING;
    r->slot = -1;
    r->created = (long long)time(NULL);
    snprintf(r->id, sizeof r->id, "chatcmpl-sim%016llx",
             (unsigned long long)mix64(S.requests ^ now_ns()));
    if (r->route == RT_SIM_STATS) {
        handle_sim_stats(r);
        return;
    }
    if (r->is_post)
        record_recent(r, url);
    if (!S.ready) {
        req_error(r, 503, "unavailable_error", "Loading model");
        return;
    }
    if (r->route == RT_HEALTH) {
        put(&r->out, "{\"status\":\"ok\"}");
        req_json(r, 200);
        return;
    }
    if (!authorized(r)) {
        req_error(r, 401, "authentication_error", "Invalid API Key");
        return;
    }
    switch (r->route) {
    case RT_CHAT:
    case RT_COMPLETION:
    case RT_V1_COMPLETIONS:
    case RT_EMBEDDINGS:
        if (r->body_too_large) {
            req_error(r, 413, "invalid_request_error", "request body too large");
            return;
        }
        r->json = cJSON_ParseWithLength(r->body.data ? r->body.data : "", r->body.len);
        if (!cJSON_IsObject(r->json)) {
            req_error(r, 400, "invalid_request_error", "Failed to parse the request body as JSON");
            return;
        }
        if (r->route == RT_EMBEDDINGS)
            handle_embeddings(r);
        else
            handle_generate(r);
        return;
    case RT_MODELS:
        handle_models(r);
        return;
    case RT_PROPS:
        handle_props(r);
        return;
    case RT_SLOTS:
        handle_slots(r);
        return;
    case RT_METRICS:
        handle_metrics(r);
        return;
    default:
        req_error(r, 404, "not_found_error", "File Not Found");
        return;
    }
}

static enum MHD_Result access_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    (void)cls;
    (void)version;
    struct req *r = *con_cls;
    if (!r) {
        if (S.stopping)
            return MHD_NO;
        r = calloc(1, sizeof *r);
        if (!r)
            return MHD_NO;
        r->conn = conn;
        r->slot = -1;
        r->is_post = strcmp(method, "POST") == 0;
        r->route =
            route_of(url, r->is_post, strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0);
        r->next = S.live;
        if (S.live)
            S.live->prev = r;
        S.live = r;
        *con_cls = r;
        return MHD_YES;
    }
    if (*upload_data_size) {
        if (r->body.len + *upload_data_size <= MAX_BODY)
            putn(&r->body, upload_data, *upload_data_size);
        else
            r->body_too_large = 1;
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->cancelled || S.stopping)
        return MHD_NO;
    if (r->phase == PH_RECEIVING)
        dispatch(r, url);
    if (r->cancelled)
        return MHD_NO;
    if (r->phase == PH_READY)
        return respond(r);
    if (r->phase == PH_WAITING)
        suspend(r);
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    (void)toe;
    struct req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    r->mhd_done = 1;
    r->suspended = 0;
    req_cancel(r);
    if (r->prev)
        r->prev->next = r->next;
    else
        S.live = r->next;
    if (r->next)
        r->next->prev = r->prev;
    if (r->timer_init) {
        r->timer_init = 0;
        uv_close((uv_handle_t *)&r->timer, on_timer_closed);
    }
    if (r->watch_init) {
        r->watch_init = 0;
        sol_hangup_watch_close(&r->watch, on_watch_closed);
    }
    if (r->handles_open == 0)
        req_free(r);
}

/* ---------------------------------------------------------------- RPC backends */

/* Connects to host:port (blocking, as the real client does). */
static int tcp_connect(const char *host, int port)
{
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return fd;
}

static int rpc_call(struct backend *b, uint8_t cmd, const void *in, size_t inlen, void *out,
                    size_t outlen)
{
    uint8_t hdr[9];
    hdr[0] = cmd;
    rpc_put_u64(hdr + 1, inlen);
    if (rpc_write_full(b->fd, hdr, 9) < 0 || (inlen && rpc_write_full(b->fd, in, inlen) < 0))
        return -1;
    uint8_t sz[8];
    if (rpc_read_full(b->fd, sz, 8, -1) < 0 || rpc_get_u64(sz) != outlen)
        return -1;
    return rpc_read_full(b->fd, out, outlen, -1);
}

/* Connects, handshakes and queries the devices of one backend; any failure
 * aborts the process as the real client does. */
static void backend_open(struct backend *b)
{
    b->fd = tcp_connect(b->host, b->port);
    if (b->fd < 0) {
        logf_("ggml-rpc.cpp: Failed to connect to %s", b->endpoint);
        standin_abort();
    }
    uint8_t caps[RPC_CONN_CAPS_SIZE] = {0}, reply[4 + RPC_CONN_CAPS_SIZE];
    if (rpc_call(b, RPC_CMD_HELLO, caps, rpc_hello_request_size(&S.ver), reply,
                 rpc_hello_reply_size(&S.ver)) < 0) {
        /* Closed without a reply: the server wants the other HELLO form. */
        logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response (HELLO to "
              "%s)",
              b->endpoint);
        standin_abort();
    }
    b->ver.major = reply[0];
    b->ver.minor = reply[1];
    b->ver.patch = reply[2];
    if (!rpc_version_compatible(&S.ver, &b->ver)) {
        logf_("RPC server version mismatch: %u.%u.%u", b->ver.major, b->ver.minor, b->ver.patch);
        logf_("ggml-rpc.cpp: RPC handshake failed for %s (client protocol %u.%u.%u)", b->endpoint,
              S.ver.major, S.ver.minor, S.ver.patch);
        standin_abort();
    }
    b->ndev = 1;
    if (rpc_has_device_count(&S.ver)) {
        uint8_t cnt[4];
        if (rpc_call(b, RPC_CMD_DEVICE_COUNT, NULL, 0, cnt, 4) < 0) {
            logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response "
                  "(DEVICE_COUNT to %s)",
                  b->endpoint);
            standin_abort();
        }
        uint32_t n = rpc_get_u32(cnt);
        b->ndev = n > MAX_DEVICES ? MAX_DEVICES : (int)n;
    }
    for (int d = 0; d < b->ndev; d++) {
        uint8_t arg[4], mem[16];
        rpc_put_u32(arg, (uint32_t)d);
        if (rpc_call(b, RPC_CMD_GET_DEVICE_MEMORY, arg, rpc_has_device_arg(&S.ver) ? 4 : 0, mem,
                     16) < 0) {
            logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response "
                  "(GET_DEVICE_MEMORY to %s)",
                  b->endpoint);
            standin_abort();
        }
        b->free_[d] = rpc_get_u64(mem);
        b->total[d] = rpc_get_u64(mem + 8);
        logf_("load_backend: RPC[%s] device %d: %llu MiB free of %llu MiB (protocol %u.%u.%u)",
              b->endpoint, d, (unsigned long long)(b->free_[d] >> 20),
              (unsigned long long)(b->total[d] >> 20), b->ver.major, b->ver.minor, b->ver.patch);
    }
}

static void on_backend_event(uv_poll_t *p, int status, int events)
{
    struct backend *b = p->data;
    (void)events;
    char c;
    ssize_t n = status < 0 ? -1 : recv(b->fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && status >= 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (S.stopping)
        return;
    /* An idle RPC connection only ever becomes readable when it closes. */
    logf_("RPC connection to %s lost (%s)", b->endpoint, n == 0 ? "closed by the server" : "error");
    logf_("ggml-rpc.cpp: Remote RPC server crashed or returned malformed response");
    standin_abort();
}

static int parse_rpc_list(const char *list)
{
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (S.nbe >= MAX_BACKENDS || len == 0 || len >= sizeof S.be[0].endpoint)
            return -1;
        struct backend *b = &S.be[S.nbe];
        snprintf(b->endpoint, sizeof b->endpoint, "%.*s", (int)len, p);
        char *colon = strrchr(b->endpoint, ':');
        if (!colon || colon == b->endpoint)
            return -1;
        char *end;
        long port = strtol(colon + 1, &end, 10);
        if (*end || port <= 0 || port > 65535)
            return -1;
        size_t hl = (size_t)(colon - b->endpoint);
        if (hl >= sizeof b->host)
            return -1;
        memcpy(b->host, b->endpoint, hl);
        b->host[hl] = 0;
        b->port = (int)port;
        b->fd = -1;
        S.nbe++;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- start-up */

static int parse_split(const char *s)
{
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v < 0 || S.nts >= MAX_SPLIT)
            return -1;
        S.ts[S.nts++] = v;
        if (*end == 0)
            break;
        if (*end != ',' && *end != '/')
            return -1;
        p = end + 1;
    }
    return S.nts > 0 ? 0 : -1;
}

static int int_value(const char *s, int min, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < min || v > 1 << 30)
        return -1;
    *out = (int)v;
    return 0;
}

static void usage(void)
{
    printf("usage: llama-server [options]\n\n"
           "Stand-in of llama.cpp's llama-server for sollol's tests. Accepts the real flags\n"
           "(-m, --host, --port, -ngl, --rpc, -c, -np, --metrics, -a, --api-key, -ts, -sm,\n"
           "--embeddings, --no-webui, -to, --mmproj, --lora and common tuning flags);\n"
           "simulation knobs come from SOLLOL_SIM_* environment variables\n"
           "(docs/simulator.md).\n");
}

/* Flags the stand-in accepts and ignores (tuning of the real server). */
static const char *const IGNORED_VALUE[] = {"-t",
                                            "--threads",
                                            "-tb",
                                            "--threads-batch",
                                            "-b",
                                            "--batch-size",
                                            "-ub",
                                            "--ubatch-size",
                                            "--temp",
                                            "--seed",
                                            "-s",
                                            "-ctk",
                                            "--cache-type-k",
                                            "-ctv",
                                            "--cache-type-v",
                                            "--threads-http",
                                            "--chat-template",
                                            "--reasoning-format",
                                            "-dev",
                                            "--device",
                                            "-mg",
                                            "--main-gpu",
                                            "--cache-reuse",
                                            "--keep",
                                            "--numa",
                                            "--log-file",
                                            "-ot",
                                            "--override-tensor",
                                            "--path",
                                            "--api-key-file",
                                            "--reasoning-budget",
                                            "-n",
                                            "--n-predict",
                                            "--slot-save-path",
                                            "--log-verbosity",
                                            "-lv",
                                            "--top-k",
                                            "--top-p",
                                            "--min-p",
                                            "--repeat-penalty",
                                            NULL};
static const char *const IGNORED_FLAG[] = {"--jinja",
                                           "--no-mmap",
                                           "--mlock",
                                           "-cb",
                                           "--cont-batching",
                                           "--log-disable",
                                           "-v",
                                           "--verbose",
                                           "--slots",
                                           "--no-slots",
                                           "--props",
                                           "--no-warmup",
                                           "--no-kv-offload",
                                           "-nkvo",
                                           "--log-colors",
                                           "--no-context-shift",
                                           "--context-shift",
                                           "-kvu",
                                           "--kv-unified",
                                           "--swa-full",
                                           "--offline",
                                           "--check-tensors",
                                           NULL};

static int in_list(const char *const *l, const char *a)
{
    for (; *l; l++)
        if (strcmp(*l, a) == 0)
            return 1;
    return 0;
}

static int is(const char *a, const char *s, const char *l)
{
    return (s && strcmp(a, s) == 0) || (l && strcmp(a, l) == 0);
}

static int parse_args(int argc, char **argv)
{
    S.host = "127.0.0.1";
    S.port = 8080;
    S.ctx = 4096;
    S.np = 1;
    S.timeout = 600;
    static const char *const VALUED[] = {"-m",
                                         "--model",
                                         "--host",
                                         "--port",
                                         "-ngl",
                                         "--n-gpu-layers",
                                         "--gpu-layers",
                                         "--rpc",
                                         "-c",
                                         "--ctx-size",
                                         "-np",
                                         "--parallel",
                                         "-a",
                                         "--alias",
                                         "--api-key",
                                         "-ts",
                                         "--tensor-split",
                                         "-sm",
                                         "--split-mode",
                                         "-to",
                                         "--timeout",
                                         "--mmproj",
                                         "-mm",
                                         "--lora",
                                         NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (is(a, "-h", "--help")) {
            usage();
            exit(0);
        } else if (is(a, "--version", NULL)) {
            printf("version: 0 (sollol-sim)\nbuilt with cc for sollol tests\n");
            exit(0);
        } else if (is(a, "--metrics", NULL)) {
            S.metrics = 1;
            continue;
        } else if (is(a, "--embeddings", "--embedding") || is(a, "--embd", NULL)) {
            S.embeddings = 1;
            continue;
        } else if (is(a, "--no-webui", NULL)) {
            S.no_webui = 1;
            continue;
        } else if (is(a, "-fa", "--flash-attn")) {
            /* on|off|auto in new builds, a bare flag in old ones */
            if (v && (!strcmp(v, "on") || !strcmp(v, "off") || !strcmp(v, "auto")))
                i++;
            continue;
        } else if (in_list(IGNORED_FLAG, a)) {
            continue;
        } else if (!in_list(VALUED, a) && !in_list(IGNORED_VALUE, a)) {
            fprintf(stderr, "error: invalid argument: %s\n", a);
            return -1;
        }
        if (!v) {
            fprintf(stderr, "error: expected value for argument: %s\n", a);
            return -1;
        }
        int bad = 0;
        if (is(a, "-m", "--model")) {
            S.model = v;
        } else if (is(a, "--host", NULL)) {
            S.host = v;
        } else if (is(a, "--port", NULL)) {
            bad = int_value(v, 0, &S.port) < 0 || S.port > 65535;
        } else if (is(a, "-ngl", "--n-gpu-layers") || is(a, "--gpu-layers", NULL)) {
            int n;
            bad = strcmp(v, "auto") && strcmp(v, "all") && int_value(v, -1, &n) < 0;
            S.ngl = v;
        } else if (is(a, "--rpc", NULL)) {
            bad = parse_rpc_list(v) < 0;
        } else if (is(a, "-c", "--ctx-size")) {
            bad = int_value(v, 0, &S.ctx) < 0;
        } else if (is(a, "-np", "--parallel")) {
            bad = int_value(v, 1, &S.np) < 0 || S.np > 256;
        } else if (is(a, "-a", "--alias")) {
            S.alias = v;
        } else if (is(a, "--api-key", NULL)) {
            S.api_key = v;
        } else if (is(a, "-ts", "--tensor-split")) {
            S.nts = 0;
            bad = parse_split(v) < 0;
        } else if (is(a, "-sm", "--split-mode")) {
            bad = strcmp(v, "none") && strcmp(v, "layer") && strcmp(v, "row");
            S.split_mode = v;
        } else if (is(a, "-to", "--timeout")) {
            bad = int_value(v, 0, &S.timeout) < 0;
        } else if (is(a, "--mmproj", "-mm")) {
            S.mmproj = v;
        } else if (is(a, "--lora", NULL)) {
            S.lora = v;
        } /* else: an IGNORED_VALUE flag, no effect on the simulation */
        if (bad) {
            fprintf(stderr, "error: invalid value for argument %s: '%s'\n", a, v);
            return -1;
        }
        i++;
    }
    if (S.ctx == 0)
        S.ctx = 4096; /* 0 = the model's training context */
    if (S.ctx / S.np < 8) {
        fprintf(stderr, "error: context size %d too small for %d slots\n", S.ctx, S.np);
        return -1;
    }
    return 0;
}

/* Checks the -m file as the loader would: exists, starts with the GGUF
 * magic and a known version. Returns 0, or -1 after logging why. */
static int check_model(void)
{
    if (!S.model) {
        logf_("llama_model_load: error loading model: no model file given (-m)");
        return -1;
    }
    const char *fail = getenv("SOLLOL_SIM_LOAD_FAIL");
    if (fail && strcmp(fail, "1") == 0) {
        logf_("llama_model_load: error loading model: simulated failure (SOLLOL_SIM_LOAD_FAIL)");
        return -1;
    }
    int fd = open(S.model, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        logf_("gguf_init_from_file: failed to open GGUF file '%s' (%s)", S.model, strerror(errno));
        return -1;
    }
    unsigned char h[8];
    ssize_t n = read(fd, h, sizeof h);
    close(fd);
    if (n < 8 || memcmp(h, "GGUF", 4) != 0) {
        logf_("gguf_init_from_file_impl: invalid magic characters: '%.4s', expected 'GGUF'",
              n >= 4 ? (const char *)h : "");
        return -1;
    }
    uint32_t ver = rpc_get_u32(h + 4);
    if (ver < 2 || ver > 3) {
        logf_("gguf_init_from_file_impl: unsupported GGUF version: %u", ver);
        return -1;
    }
    return 0;
}

static void on_load_done(uv_timer_t *t)
{
    (void)t;
    S.ready = 1;
    logf_("main: model loaded");
    logf_("main: server is listening on http://%s:%d - starting the main loop", S.host, S.port);
    logf_("srv  update_slots: all slots are idle");
}

static void on_crash(uv_timer_t *t)
{
    (void)t;
    logf_("simulated crash (SOLLOL_SIM_CRASH_AFTER_MS)");
    standin_abort();
}

static void on_glue_closed(struct sol_mhd_uv *glue)
{
    (void)glue;
    MHD_stop_daemon(S.daemon); /* completion callbacks run in here */
    S.daemon = NULL;
}

static void shutdown_all(void)
{
    if (S.stopping)
        return;
    S.stopping = 1;
    /* Leave the queue first so that freed slots start nobody. */
    while (S.q_head)
        slot_release(S.q_head);
    uv_close((uv_handle_t *)&S.load_timer, NULL);
    uv_close((uv_handle_t *)&S.crash_timer, NULL);
    uv_close((uv_handle_t *)&S.sigterm, NULL);
    uv_close((uv_handle_t *)&S.sigint, NULL);
    for (int i = 0; i < S.nbe; i++)
        if (S.be[i].poll_init)
            uv_close((uv_handle_t *)&S.be[i].poll, NULL);
    /* MHD_stop_daemon needs every connection resumed: cancel and resume all,
     * MHD then fails their readers and runs the completion callbacks. */
    for (struct req *r = S.live; r; r = r->next) {
        req_cancel(r);
        resume(r);
    }
    uv_close((uv_handle_t *)&S.kick, NULL);
    sol_mhd_uv_close(&S.glue, on_glue_closed);
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    logf_("srv    operator(): received signal %d, shutting down", signum);
    shutdown_all();
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    S.argc = argc;
    S.argv = argv;
    if (rpc_version_from_env(&S.ver) < 0 ||
        env_double("SOLLOL_SIM_TOKENS_PER_SECOND", 100, 0, &S.tps) < 0 ||
        env_double("SOLLOL_SIM_PROMPT_TPS", 5000, 0, &S.prompt_tps) < 0 ||
        env_double("SOLLOL_SIM_LOAD_MS", 200, 0, &S.load_ms) < 0 ||
        env_double("SOLLOL_SIM_CRASH_AFTER_MS", 0, 0, &S.crash_ms) < 0 ||
        env_double("SOLLOL_SIM_DEFAULT_TOKENS", 16, 0, &S.default_tokens) < 0)
        return 1;
    if (parse_args(argc, argv) < 0)
        return 1;
    logf_("build: 0 (sollol-sim) with cc for sollol tests; RPC protocol %u.%u.%u", S.ver.major,
          S.ver.minor, S.ver.patch);
    /* The real program registers its RPC devices while parsing --rpc. */
    for (int i = 0; i < S.nbe; i++)
        backend_open(&S.be[i]);

    char err[256];
    int bound = 0;
    int lfd = sol_listen_socket(S.host, S.port, 512, &bound, err, sizeof err);
    if (lfd < 0) {
        logf_("srv    start: couldn't bind HTTP server socket, hostname: %s, port: %d (%s)", S.host,
              S.port, err);
        return 1;
    }
    S.port = bound;
    S.slots = calloc((size_t)S.np, sizeof *S.slots);
    if (!S.slots)
        return 1;
    uv_loop_init(&S.loop);
    S.daemon = MHD_start_daemon(MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME, 0, NULL, NULL,
                                access_handler, NULL, MHD_OPTION_LISTEN_SOCKET, lfd,
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)0, MHD_OPTION_END);
    if (!S.daemon || sol_mhd_uv_attach(&S.glue, &S.loop, S.daemon) < 0) {
        logf_("srv    start: cannot start the HTTP server");
        return 1;
    }
    uv_timer_init(&S.loop, &S.kick);
    uv_timer_init(&S.loop, &S.load_timer);
    uv_timer_init(&S.loop, &S.crash_timer);
    uv_signal_init(&S.loop, &S.sigterm);
    uv_signal_init(&S.loop, &S.sigint);
    uv_signal_start(&S.sigterm, on_signal, SIGTERM);
    uv_signal_start(&S.sigint, on_signal, SIGINT);
    logf_("main: HTTP server is listening, hostname: %s, port: %d, http threads: 1", S.host,
          S.port);
    printf("listening on %s:%d\n", S.host, S.port);
    logf_("main: loading model");
    if (check_model() < 0) {
        logf_("srv    load_model: failed to load model, '%s'", S.model ? S.model : "");
        logf_("main: exiting due to model loading error");
        return 1;
    }
    for (int i = 0; i < S.nbe; i++) {
        struct backend *b = &S.be[i];
        if (uv_poll_init_socket(&S.loop, &b->poll, b->fd) == 0) {
            b->poll.data = b;
            b->poll_init = 1;
            uv_poll_start(&b->poll, UV_READABLE | UV_DISCONNECT, on_backend_event);
        }
    }
    uv_timer_start(&S.load_timer, on_load_done, (uint64_t)S.load_ms, 0);
    if (S.crash_ms > 0)
        uv_timer_start(&S.crash_timer, on_crash, (uint64_t)S.crash_ms, 0);
    uv_run(&S.loop, UV_RUN_DEFAULT);
    for (int i = 0; i < S.nbe; i++)
        close(S.be[i].fd);
    for (int i = 0; i < S.np; i++)
        sol_buf_free(&S.slots[i].cache);
    free(S.slots);
    for (int i = 0; i < RECENT_MAX; i++)
        free(S.recent[i].body);
    uv_loop_close(&S.loop);
    logf_("main: server stopped");
    return 0;
}
