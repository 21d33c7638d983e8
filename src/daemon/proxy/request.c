/*
 * request.c - the lifecycle of one proxied request (see request.h).
 *
 * Everything here runs on the loop thread, called from MHD_run() (access
 * handler, content reader, completed callback), from libcurl (header and
 * write callbacks, inside curl_multi_socket_action()), from the curl glue's
 * done callback, or from uv callbacks (hang-up watch, deadline sweep).
 * Rules that keep this safe:
 *  - a transfer is never removed from inside its own libcurl callback: those
 *    return an error or CURL_WRITEFUNC_PAUSE instead;
 *  - the MHD connection is touched only while req->conn is set, i.e. before
 *    the request-completed callback;
 *  - the request is freed only when its last reference goes.
 */
#include "proxy/request.h"

#include "proxy/request_priv.h"

#include "base/access_log.h"
#include "base/aggregate.h"
#include "base/auth.h"
#include "sollol/container_of.h"
#include "proxy/gate.h"
#include "base/hdr_check.h"
#include "base/breaker.h"
#include "nodes/health.h"
#include "sollol/buf.h"
#include "base/compat.h"
#include "sollol/fmt.h"
#include "daemon-t.h"
#include "base/dashboard.h"
#include "base/http_reply.h"
#include "base/inspect.h"
#include "base/cont.h"
#include "sollol/log.h"
#include "base/metrics.h"
#include "sollol/mhd_uv.h"
#include "base/model_name.h"
#include "base/ndjson.h"
#include "base/routes.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static uint64_t now_ms(struct sol_request *r)
{
    return sol_now_ms(r->d);
}

/* Sets the running attempt's deadline (see sol_request_sweep). */
static void set_deadline(struct sol_request *r, uint64_t at_ms)
{
    r->deadline_ms = at_ms;
    if (at_ms < r->d->requests_next_deadline_ms)
        r->d->requests_next_deadline_ms = at_ms;
}

static void req_free(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    if (r->prev)
        r->prev->next = r->next;
    else if (d->requests == r)
        d->requests = r->next;
    if (r->next)
        r->next->prev = r->prev;
    d->requests_live--;
    sol_curl_uv_easy_put(&d->curl, r->xfer.easy); /* reused by a later request */
    curl_slist_free_all(r->client_headers);
    curl_slist_free_all(r->attempt_headers);
    curl_slist_free_all(r->response_headers);
    sol_buf_free(&r->body);
    sol_buf_free(&r->stream);
    free(r->upstream_path);
    free(r->explain);
    /* Every kind frees what it attached (one may ride the proxy path and
     * another take the request after it: the sharded path, then a split). */
    for (unsigned i = 0; i < d->n_kinds; i++)
        if (d->kinds[i]->free)
            d->kinds[i]->free(r);
    sol_cont_free(r->cont); /* cont.c: continuation state */
    free(r);
}

static void req_unref(struct sol_request *r)
{
    if (--r->refs == 0)
        req_free(r);
}

static void on_watch_closed(struct sol_hangup_watch *w)
{
    req_unref(w->data);
}

/* Suspends the MHD connection until sol_req_resume(); watches the client for
 * hang-up meanwhile, since MHD does not while suspended. */
static void on_client_hangup(struct sol_hangup_watch *w);
static void remember_affinity(struct sol_request *r, const struct sol_node *n);
static int admit(struct sol_request *r);

void sol_req_suspend(struct sol_request *r)
{
    if (r->suspended || !r->conn)
        return;
    if (!r->watch.initialized && !r->client_gone) {
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci &&
            sol_hangup_watch_init(&r->watch, r->d->loop, ci->connect_fd, on_client_hangup, r) == 0)
            r->refs++;
    }
    sol_mhd_uv_suspend(&r->d->mhd_glue, r->conn);
    r->suspended = 1;
    sol_hangup_watch_start(&r->watch);
}

void sol_req_resume(struct sol_request *r)
{
    if (!r->suspended || !r->conn)
        return;
    sol_hangup_watch_stop(&r->watch);
    r->suspended = 0;
    sol_mhd_uv_resume(&r->d->mhd_glue, r->conn);
}

/* ---- upstream attempts ------------------------------------------------- */

/* Reads a number after the last `"key":` in the tail (Ollama's done line
 * ends every response, streamed or not). 0 when absent. */
static uint64_t tail_number(const struct sol_request *r, const char *key)
{
    return sol_ndjson_tail_number(r->tail, r->tail_len, key);
}

static void attempt_end(struct sol_request *r, enum sol_attempt_result result)
{
    if (r->node) {
        struct sol_attempt_report rep = {
            .result = result,
            .model_key = r->score.model_key,
            .ttfb_ms = r->ttfb_ms,
            .prompt_cached = r->aff_remembered && (int)r->node->index == r->score.affinity_node,
            .eta_ms = r->node_eta_ms,
        };
        if (result == SOL_ATTEMPT_OK && r->tail_len && !r->openai) {
            rep.eval_count = tail_number(r, "eval_count");
            rep.eval_duration_ns = tail_number(r, "eval_duration");
            rep.prompt_eval_count = tail_number(r, "prompt_eval_count");
            rep.prompt_eval_duration_ns = tail_number(r, "prompt_eval_duration");
            rep.load_duration_ns = tail_number(r, "load_duration");
        }
        if (result == SOL_ATTEMPT_OK && r->status >= 200 && r->status < 300)
            remember_affinity(r, r->node);
        sol_balancer_put(&r->d->balancer, r->node, &rep);
        r->node = NULL;
    }
    r->attempt_running = 0;
    r->deadline_ms = 0;
}

/* Cancels a running attempt (client gone, shutdown, deadline). */
static void attempt_cancel(struct sol_request *r, enum sol_attempt_result result)
{
    if (r->kind && r->kind->cancel) /* a kind's own transfers (fan-out legs, embed chunks) */
        r->kind->cancel(r);
    if (!r->attempt_running)
        return;
    sol_curl_uv_cancel(&r->d->curl, &r->xfer);
    attempt_end(r, result);
}

/* Appends the final error line a client sees when a stream breaks after it
 * began: one more NDJSON line (Ollama's own shape) or one SSE event. For any
 * other body there is no in-band way to say it, so the response is cut. */
void sol_req_append_stream_error(struct sol_request *r, const char *msg)
{
    struct sol_buf *s = &r->stream;
    int sse = strncasecmp(r->content_type, "text/event-stream", 17) == 0;
    int ndjson = strncasecmp(r->content_type, "application/x-ndjson", 20) == 0;
    if (r->content_length >= 0 || (!sse && !ndjson)) {
        r->abort_client = 1;
        return;
    }
    if (r->bytes_out + sol_buf_pending(s) > 0 && r->last_byte != '\n')
        sol_buf_append_str(s, sse ? "\n\n" : "\n");
    if (sse) {
        sol_buf_append_str(s, "data: ");
        sol_error_body(s, 500, 1, msg);
        sol_buf_append_str(s, "\n\n");
    } else {
        sol_error_body(s, 500, 0, msg);
        sol_buf_append_str(s, "\n");
    }
    r->last_byte = '\n';
}

int sol_req_fail(struct sol_request *r, unsigned status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
    r->fail_status = status;
    return -1;
}

void sol_req_commit(struct sol_request *r)
{
    if (r->state != RS_UPSTREAM)
        return;
    r->state = RS_COMMITTED;
    sol_req_resume(r);
}

/* ---- continuation (cont.h) ------------------------------------------------ */

/* The client has (or is about to get) the response's head. */
static int committed(const struct sol_request *r)
{
    return r->state == RS_COMMITTED || r->state == RS_STREAMING;
}

/* The node's bytes go through cont.c: a successful answer of a request that
 * could be continued (a continuation attempt keeps the first one's status). */
static int cont_feeding(const struct sol_request *r)
{
    return r->cont && (committed(r) || (r->status >= 200 && r->status < 300));
}

/* Ends a request that cannot go on: an error answer while nothing was sent,
 * else the stream's error line. */
static void fail_request(struct sol_request *r)
{
    if (committed(r)) {
        sol_req_append_stream_error(r, r->last_error);
        r->upstream_done = 1;
    } else {
        r->state = RS_FAILED;
    }
    sol_req_resume(r);
}

/* Whether a failure after the first byte is continued on another node:
 * nothing but the node's failure stops it (cont.h), within the attempts and
 * the deadline. */
static enum sol_cont_why cont_verdict(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    enum sol_cont_why w = sol_cont_can_continue(r->cont);
    if (w != SOL_CONT_CONTINUED)
        return w;
    struct sol_score_req q = r->score;
    q.free_slot_only = 0;
    if (r->tried.count >= (unsigned)d->max_attempts ||
        sol_now_ms(d) - r->started_ms >= d->cfg->retry_deadline_ms)
        return SOL_CONT_LIMIT;
    if (!sol_balancer_has_alternative(&d->balancer, &q))
        return SOL_CONT_NO_NODE;
    return SOL_CONT_CONTINUED;
}

/*
 * A node's error answer is dropped in favour of another node only while
 * nothing has reached the client and another eligible node exists; else it
 * passes through unchanged. Retried: 5xx, 429 (busy), and 404 for a model
 * the node listed (it was removed since the last /api/tags).
 */
/*
 * Ollama's "model not found" is a JSON error document. A 404 of another type
 * (gin's text/plain "404 page not found" for a route the node does not have,
 * e.g. a newer /v1/ route) says nothing about the model: treating it as "the
 * node lost the model" would retry it on every node and mark the model gone
 * on each, making it unroutable until the next /api/tags.
 */
static int is_model_not_found(const struct sol_request *r, long code)
{
    return code == 404 && r->score.model_key &&
           strncasecmp(r->content_type, "application/json", 16) == 0;
}

static int should_retry_status(struct sol_request *r, long code)
{
    enum sol_attempt_result why;
    if (code >= 500 || code == 429)
        why = SOL_ATTEMPT_SERVER_ERROR;
    else if (is_model_not_found(r, code))
        why = SOL_ATTEMPT_MODEL_MISSING;
    else
        return 0;
    struct sol_daemon *d = r->d;
    /* A node that is only busy is an alternative too: the retry waits for
     * its slot in the queue (admit()). r->score still has free_slot_only
     * set from the dispatch that started this attempt. */
    struct sol_score_req q = r->score;
    q.free_slot_only = 0;
    if (r->tried.count >= (unsigned)d->max_attempts ||
        sol_now_ms(d) - r->started_ms >= d->cfg->retry_deadline_ms ||
        !sol_balancer_has_alternative(&d->balancer, &q))
        return 0;
    r->retry_result = why;
    return 1;
}

/*
 * Drops the fields named in the node's own Connection field(s) (hop-by-hop
 * by the node's word, RFC 9110 7.6.1) and those fields themselves, once the
 * whole header block is in (Connection may come after the fields it names).
 */
static void prune_connection_named(struct sol_request *r)
{
    r->resp_has_connection = 0;
    struct curl_slist *keep = NULL;
    for (struct curl_slist *a = r->response_headers; a; a = a->next) {
        const char *colon = strchr(a->data, ':');
        if (!colon)
            continue;
        size_t klen = (size_t)(colon - a->data);
        int drop = klen == 10 && strncasecmp(a->data, "Connection", 10) == 0;
        for (struct curl_slist *c = r->response_headers; c && !drop; c = c->next)
            if (strncasecmp(c->data, "Connection: ", 12) == 0)
                drop = sol_hdr_list_has(c->data + 12, strlen(c->data + 12), a->data, klen);
        struct curl_slist *l = drop ? keep : curl_slist_append(keep, a->data);
        if (l)
            keep = l;
    }
    curl_slist_free_all(r->response_headers);
    r->response_headers = keep;
}

/* A node whose header block passes SOL_NODE_HEADER_MAX: libmicrohttpd
 * could not send it on (the client would see an empty reply), so the
 * attempt fails as the node's fault and another node gets the request. */
static size_t node_header_fault(struct sol_request *r)
{
    r->node_fault = "response headers too large";
    r->retry_result = SOL_ATTEMPT_SERVER_ERROR;
    return 0;
}

static size_t on_upstream_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_request *r = ud;
    size_t n = size * nmemb;
    if (r->cont && committed(r)) {
        /* A continuation: the client has its head; the node must answer 2xx. */
        long code = 0;
        if (n <= 2 && curl_easy_getinfo(r->xfer.easy, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK &&
            code >= 300) {
            r->node_fault = "answered an error to the continuation";
            return 0;
        }
        return n;
    }
    r->resp_header_bytes += (unsigned)(n < SOL_NODE_HEADER_MAX ? n : SOL_NODE_HEADER_MAX);
    if (r->resp_header_bytes > SOL_NODE_HEADER_MAX && r->state == RS_UPSTREAM)
        return node_header_fault(r);
    if (n <= 2 && (n == 0 || p[0] == '\r' || p[0] == '\n')) {
        long code = 0;
        curl_easy_getinfo(r->xfer.easy, CURLINFO_RESPONSE_CODE, &code);
        if (r->resp_has_connection)
            prune_connection_named(r);
        if (code >= 200) {
            r->status = code;
            r->headers_complete = 1;
            if (code == 500 && !r->coord && should_retry_status(r, code)) {
                /* Ollama answers some request errors 500 (a missing model's
                 * push, a capability the model lacks): read the error before
                 * blaming the node and asking another (attempt_finished). */
                r->retry_result = SOL_ATTEMPT_OK;
                r->held_500 = 1;
                r->held_bytes = 0;
                return n;
            }
            if (should_retry_status(r, code))
                return 0; /* abort; attempt_finished() retries elsewhere */
            /* e.g. the sharded path's content type */
            if (r->kind && r->kind->on_headers)
                r->kind->on_headers(r);
        } else {
            /* Interim 1xx block: the real headers follow. */
            curl_slist_free_all(r->response_headers);
            r->response_headers = NULL;
            r->resp_header_bytes = 0;
        }
        return n;
    }
    if (n >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        curl_slist_free_all(r->response_headers);
        r->response_headers = NULL;
        r->resp_has_connection = 0;
        r->content_type[0] = '\0';
        r->content_length = -1;
        return n;
    }
    const char *colon = memchr(p, ':', n);
    if (!colon)
        return n;
    size_t klen = (size_t)(colon - p);
    const char *v = colon + 1;
    const char *end = p + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    size_t vlen = (size_t)(end - v);
#define IS(name) (klen == sizeof(name) - 1 && strncasecmp(p, name, klen) == 0)
    if (IS("Content-Type")) {
        snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)vlen, v);
    } else if (IS("Content-Length")) {
        r->content_length = strtoll(v, NULL, 10);
    } else if (IS("Connection") && vlen < 1024 && !r->headers_complete) {
        /* Kept until the block is in, to drop what it names (then itself). */
        char line[1100];
        snprintf(line, sizeof line, "Connection: %.*s", (int)vlen, v);
        struct curl_slist *l = curl_slist_append(r->response_headers, line);
        if (l) {
            r->response_headers = l;
            r->resp_has_connection = 1;
        }
    } else if (!sol_hdr_response_keep(p, klen, v, vlen)) {
        /* Hop-by-hop, set by our own HTTP server, or not the node's to say
         * to our client (cookies, auth challenges, Location off-daemon). */
    } else if (klen > 0 && klen < 128 && vlen < 4096) {
        char line[4300];
        snprintf(line, sizeof line, "%.*s: %.*s", (int)klen, p, (int)vlen, v);
        struct curl_slist *l = curl_slist_append(r->response_headers, line);
        if (l)
            r->response_headers = l;
    }
#undef IS
    return n;
}

/*
 * The deadline after bytes from the node: the idle timeout from now, but
 * never later than the idle timeout from the start of the current line. A
 * node that trickles a byte per gap without ever finishing a line (an
 * NDJSON or SSE line, or a whole non-streamed answer) is cut as a
 * timeout, its fault, instead of holding the slot forever. The line's
 * clock restarts at each newline and when a paused transfer resumes (the
 * client, not the node, held it back).
 */
static void progress_deadline(struct sol_request *r, const char *p, size_t n)
{
    uint64_t now = now_ms(r), idle = r->d->cfg->idle_timeout_ms;
    if (!r->line_started_ms || memchr(p, '\n', n))
        r->line_started_ms = now;
    uint64_t line_by = r->line_started_ms + idle;
    set_deadline(r, line_by < now + idle ? line_by : now + idle);
}

static size_t on_upstream_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_request *r = ud;
    size_t n = size * nmemb;
    if (r->client_gone)
        return 0;
    if (r->held_500) { /* only its last bytes matter: an error document is small */
        sol_ndjson_tail_keep(r->tail, &r->tail_len, TAIL_BYTES, p, n);
        r->held_bytes += n;
        set_deadline(r, now_ms(r) + r->d->cfg->idle_timeout_ms);
        return n;
    }
    if (sol_buf_pending(&r->stream) >= STREAM_HIGH_WATER) {
        /* The client is slower than the node: hold the node back. libcurl
         * keeps these bytes and offers them again after unpause. */
        r->paused = 1;
        r->deadline_ms = 0;
        return CURL_WRITEFUNC_PAUSE;
    }
    size_t taken = n;
    const char *src = p;
    if (cont_feeding(r)) {
        /* cont.c: whole lines only, the text so far kept; a continuation's
         * lines rewritten into the one answer. The tail keeps the node's own
         * bytes (its final metrics teach its speeds). */
        size_t before = r->stream.len;
        if (r->ttfb_ms == 0)
            r->ttfb_ms = (double)(now_ms(r) - r->attempt_started_ms) + 0.001;
        sol_ndjson_tail_keep(r->tail, &r->tail_len, TAIL_BYTES, p, n);
        enum sol_cont_feed_result res = sol_cont_feed(r->cont, p, n, now_ms(r), &r->stream);
        progress_deadline(r, p, n);
        if (res == SOL_CONT_FEED_TOO_LONG) {
            r->cont_fatal = 1;
            r->node_fault = "the answer is longer than routing.continue_max_bytes";
        }
        if (res != SOL_CONT_FEED_OK)
            return 0;
        if (r->stream.len > before) {
            r->last_byte = r->stream.data[r->stream.len - 1];
            if (!sol_cont_whole(r->cont)) { /* whole: committed complete, at the end */
                sol_req_commit(r);
                sol_req_resume(r);
            }
        }
        return taken;
    }
    if (r->kind && r->kind->translating && r->kind->translating(r)) {
        /* e.g. the sharded path: llama-server's SSE becomes Ollama's NDJSON
         * here, line by line; the client gets the translated bytes. */
        if (r->kind->on_body(r, p, n, &src, &n) < 0 && n == 0)
            return 0;
        if (n == 0 && r->state == RS_UPSTREAM) {
            /* Nothing for the client yet (stream:false collects the answer):
             * stay uncommitted, so a failure can still be a clean error. */
            progress_deadline(r, p, taken);
            return taken;
        }
    }
    if (sol_buf_append(&r->stream, src, n) < 0)
        return 0;
    if (r->ttfb_ms == 0)
        r->ttfb_ms = (double)(now_ms(r) - r->attempt_started_ms) + 0.001;
    sol_ndjson_tail_keep(r->tail, &r->tail_len, TAIL_BYTES, src, n);
    if (n)
        r->last_byte = src[n - 1];
    progress_deadline(r, p, taken);
    sol_req_commit(r);
    sol_req_resume(r);
    return taken;
}

static int is_hop_by_hop_request_header(const char *k)
{
    static const char *const skip[] = {"Host",
                                       "Content-Length",
                                       "Connection",
                                       "Keep-Alive",
                                       "Proxy-Connection",
                                       "Proxy-Authorization",
                                       "TE",
                                       "Trailer",
                                       "Transfer-Encoding",
                                       "Upgrade",
                                       "Expect",
                                       "Authorization",
                                       "Accept-Encoding",
                                       "X-Request-Id",
                                       NULL};
    for (int i = 0; skip[i]; i++)
        if (strcasecmp(k, skip[i]) == 0)
            return 1;
    return strncasecmp(k, "X-Sollol-", 9) == 0;
}

struct header_walk {
    struct curl_slist *list;
    int has_content_type;
    const char *connection_tokens;
};

/* A header named in the client's Connection header is hop-by-hop too. */
static int named_in_connection(const char *tokens, const char *k)
{
    if (!tokens)
        return 0;
    size_t klen = strlen(k);
    const char *p = tokens;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *s = p;
        while (*p && *p != ',' && *p != ' ')
            p++;
        if ((size_t)(p - s) == klen && strncasecmp(s, k, klen) == 0)
            return 1;
    }
    return 0;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *k,
                                      const char *v)
{
    (void)kind;
    struct header_walk *w = cls;
    if (!k || !v || is_hop_by_hop_request_header(k) || named_in_connection(w->connection_tokens, k))
        return MHD_YES;
    if (strcasecmp(k, "Content-Type") == 0)
        w->has_content_type = 1;
    size_t klen = strlen(k), vlen = strlen(v), len = klen + vlen + 3;
    char small[512];
    char *line = len <= sizeof small ? small : malloc(len);
    if (!line)
        return MHD_YES;
    size_t pos = sol_cat(line, len, 0, k, klen);
    pos = sol_cat(line, len, pos, ": ", 2);
    sol_cat(line, len, pos, v, vlen);
    struct curl_slist *l = curl_slist_append(w->list, line);
    if (line != small)
        free(line);
    if (l)
        w->list = l;
    return MHD_YES;
}

static void build_client_headers(struct sol_request *r)
{
    struct header_walk w = {0};
    w.connection_tokens =
        MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONNECTION);
    MHD_get_connection_values(r->conn, MHD_HEADER_KIND, collect_header, &w);
    char line[128];
    sol_cat(line, sizeof line, sol_cat(line, sizeof line, 0, "X-Request-Id: ", 14), r->id,
            strlen(r->id));
    struct curl_slist *l = curl_slist_append(w.list, line);
    if (l)
        w.list = l;
    /* Without these, libcurl would add a form Content-Type and an
     * Expect: 100-continue round trip for large bodies. */
    if (!w.has_content_type && (l = curl_slist_append(w.list, "Content-Type:")))
        w.list = l;
    if ((l = curl_slist_append(w.list, "Expect:")))
        w.list = l;
    r->client_headers = w.list;
}

static void on_upstream_done(struct sol_curl_xfer *x, CURLcode rc);

int sol_req_prepare_upstream(CURL *e, const struct sol_node *n, const char *path,
                             const struct curl_slist *client_headers, struct curl_slist **headers)
{
    size_t blen = strlen(n->base_url), plen = strlen(path), ulen = blen + plen + 1;
    char small[512];
    char *url = ulen <= sizeof small ? small : malloc(ulen);
    if (!url)
        return -1;
    sol_cat(url, ulen, sol_cat(url, ulen, 0, n->base_url, blen), path, plen);
    curl_easy_setopt(e, CURLOPT_URL, url); /* libcurl keeps its own copy */
    /* The path is already the one access control judged: libcurl must not
     * resolve dot segments in it (build_upstream_path()). */
    curl_easy_setopt(e, CURLOPT_PATH_AS_IS, 1L);
    if (url != small)
        free(url);
    curl_slist_free_all(*headers);
    *headers = NULL;
    struct curl_slist *list = NULL;
    for (const struct curl_slist *h = client_headers; h; h = h->next)
        list = curl_slist_append(list, h->data);
    for (const struct curl_slist *h = n->headers; h; h = h->next)
        list = curl_slist_append(list, h->data);
    *headers = list;
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, list);
    return list || (!client_headers && !n->headers) ? 0 : -1;
}

/* No node can take the request before any attempt: say why the way a
 * client can act on it. */
static void explain_no_node(struct sol_request *r)
{
    struct sol_node_table *t = &r->d->table;
    int installed_somewhere = 0, unknown = 0;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        if (n->removed) /* left the table (reload.h) */
            continue;
        const struct sol_node_model *m = sol_node_find_model(n, r->score.model_key);
        if (m && m->installed && !m->gone)
            installed_somewhere = 1;
        if (n->tags_at_ms == 0)
            unknown = 1; /* never answered /api/tags: it may have the model */
    }
    if (installed_somewhere || unknown) {
        /* Name the nodes and what is wrong with them, so an operator reading
         * the client's error knows which machine to look at. */
        char why[100] = "";
        size_t off = 0;
        unsigned listed = 0, more = 0;
        uint64_t now = sol_now_ms(r->d);
        for (unsigned i = 0; i < t->count; i++) {
            const struct sol_node *n = t->nodes[i];
            const struct sol_node_model *m = sol_node_find_model(n, r->score.model_key);
            if (n->removed || (!(m && m->installed && !m->gone) && n->tags_at_ms != 0))
                continue;
            const char *state = n->state == SOL_NODE_DOWN            ? "down"
                                : n->state == SOL_NODE_MISCONFIGURED ? "misconfigured"
                                : sol_breaker_state_at(&n->breaker, now) != SOL_BREAKER_CLOSED
                                    ? "circuit breaker open"
                                    : "installed models not known yet";
            int k = listed < 4 ? snprintf(why + off, sizeof why - off, "%s%.40s: %s",
                                          listed ? ", " : "", n->name, state)
                               : -1;
            if (k < 0 || (size_t)k >= sizeof why - off) {
                why[off] = '\0';
                more++;
                continue;
            }
            off += (size_t)k;
            listed++;
        }
        if (more)
            snprintf(why + off, sizeof why - off, "%s+%u more", listed ? ", " : "", more);
        snprintf(r->last_error, sizeof r->last_error,
                 "model '%.200s' is only on nodes that are down or failing (%s); retry later",
                 r->model, why);
        r->fail_status = 503;
    } else {
        snprintf(r->last_error, sizeof r->last_error, "model '%s' not found on any node",
                 r->info.model);
        r->fail_status = 404;
    }
}

/* Tells the scorer which node holds this conversation's prefix: the one
 * that served it, else the rendezvous choice among the eligible nodes. */
static void pick_affinity(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    r->score.affinity_node = -1;
    r->aff_remembered = 0;
    if (!r->has_aff || !d->affinity_on)
        return;
    uint64_t now = sol_now_ms(d);
    for (unsigned i = 0; i < d->table.count; i++)
        d->eligible[i] =
            (unsigned char)sol_scorer_eligible(d->table.nodes[i], &r->score, now, NULL);
    enum sol_affinity_source src;
    r->score.affinity_node = sol_affinity_pick(&d->affinity, &r->aff, d->node_ids, d->eligible,
                                               d->table.count, now, &src);
    r->aff_remembered = src == SOL_AFFINITY_REMEMBERED;
}

/* Remembers which node served this conversation, for its next turn. */
static void remember_affinity(struct sol_request *r, const struct sol_node *n)
{
    struct sol_daemon *d = r->d;
    if (!r->has_aff || !d->affinity_on || !r->aff.remember)
        return;
    long long keep_ms = -2; /* unknown: the module's default */
    const struct sol_json_span *ka = &r->info.keep_alive;
    if (ka->p && ka->type == SOL_JSON_NUMBER) {
        double secs;
        if (sol_json_number_double(ka, &secs) == 0)
            keep_ms = secs < 0 ? -1 : (long long)(secs * 1000);
    }
    uint64_t now = sol_now_ms(d);
    uint64_t exp = keep_ms == -2 ? now + SOL_AFFINITY_DEFAULT_KEEP_ALIVE_MS
                                 : sol_affinity_expiry(now, keep_ms);
    sol_affinity_remember(&d->affinity, r->aff.remember, n->index, exp);
}

/* Starts the next attempt on the best node not yet tried. Returns 0, or -1
 * when no node is left (r->last_error and r->fail_status say why). */
static int attempt_start(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    while (r->tried.count < SOL_MAX_ATTEMPTS && r->tried.count < (unsigned)d->max_attempts) {
        if (r->tried.count && sol_now_ms(d) - r->started_ms >= d->cfg->retry_deadline_ms)
            return -1;
        struct sol_score_explain ex;
        int explain = r->want_explain && !r->explain;
        struct sol_node *n;
        pick_affinity(r);
        ex.n_top = ex.n_skipped = 0; /* the comparison modes leave it alone */
        if (r->pinned_node >= 0)
            n = r->tried.count ? NULL
                               : sol_balancer_get_node(&d->balancer, d->table.nodes[r->pinned_node],
                                                       &r->score, &r->node_eta_ms);
        else
            n = sol_balancer_get(&d->balancer, &r->score, &ex, &r->node_eta_ms);
        /* The dashboard's recent decisions (dashboard.c). */
        static const char *const modes[] = {"cost", "round_robin", "least_conn"};
        int by_scorer = r->pinned_node < 0 && d->balancer.mode == SOL_ROUTING_COST;
        sol_dashboard_decision(&d->dashboard, sol_now_ms(d), r->id, r->model,
                               r->pinned_node >= 0 ? "pinned"
                               : committed(r)      ? "continue"
                                                   : modes[d->balancer.mode % 3],
                               r->tried.count + 1, n, r->score.affinity_node,
                               by_scorer ? &ex : NULL);
        if (explain) {
            char buf[EXPLAIN_HEADER];
            sol_scorer_explain_format(&ex, buf, sizeof buf);
            r->explain = strdup(buf);
            SOL_DEBUG("request %s: model %s: %s", r->id, r->model, buf);
        }
        if (!n) {
            if (r->tried.count == 0 && r->pinned_node < 0)
                explain_no_node(r);
            return -1;
        }
        r->tried.index[r->tried.count++] = n->index;
        r->node = n;
        snprintf(r->node_name, sizeof r->node_name, "%s", n->name);

        CURL *e = r->xfer.easy;
        if (e)
            curl_easy_reset(e);
        else
            e = r->xfer.easy = sol_curl_uv_easy_get(&d->curl);
        if (!e) {
            attempt_end(r, SOL_ATTEMPT_CANCELLED);
            snprintf(r->last_error, sizeof r->last_error, "out of memory");
            r->fail_status = 500;
            return -1;
        }
        if (sol_req_prepare_upstream(e, n, r->upstream_path, r->client_headers,
                                     &r->attempt_headers) < 0) {
            attempt_end(r, SOL_ATTEMPT_CANCELLED);
            r->fail_status = 500;
            snprintf(r->last_error, sizeof r->last_error, "out of memory");
            return -1;
        }
        if (strcmp(r->method, "HEAD") == 0) {
            curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
        } else if (strcmp(r->method, "POST") == 0) {
            /* cont.c: a continuation's body (the text so far as prefill). */
            const struct sol_buf *cb = sol_cont_body(r->cont);
            const struct sol_buf *b = cb ? cb : &r->body;
            curl_easy_setopt(e, CURLOPT_POSTFIELDS, b->data ? b->data : "");
            curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)b->len);
        } else {
            curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
            if (r->body.len) { /* a passed-through PUT, PATCH or DELETE with a body */
                curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.data);
                curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
            }
        }
        if (r->kind && r->kind->prepare) /* e.g. the sharded path: llama-server's route and body */
            r->kind->prepare(r, e, n);
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->cfg->connect_timeout_ms);
        curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_upstream_header);
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_upstream_body);
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        /* libcurl mallocs its receive buffer per transfer and keeps it to
         * the end: a stream gets a line at a time, and 10,000 open streams
         * with 64 KiB buffers cost 3.3 KiB of touched heap each (bench/run
         * scale). A complete answer keeps the large one (fewer reads). */
        curl_easy_setopt(e, CURLOPT_BUFFERSIZE,
                         sol_req_streams(r) ? SOL_STREAM_RECV_BUFFER : SOL_BULK_RECV_BUFFER);
        r->xfer.on_done = on_upstream_done;
        if (!committed(r)) { /* a continuation keeps what the client was sent */
            r->status = 0;
            r->headers_complete = 0;
            r->content_type[0] = '\0';
            r->content_length = -1;
            curl_slist_free_all(r->response_headers);
            r->response_headers = NULL;
        }
        if (r->cont)
            sol_cont_attempt_start(r->cont, n->name, now_ms(r));
        if (sol_curl_uv_add(&d->curl, &r->xfer) < 0) {
            attempt_end(r, SOL_ATTEMPT_CANCELLED);
            snprintf(r->last_error, sizeof r->last_error, "cannot start a transfer to node %s",
                     n->name);
            r->fail_status = 500;
            return -1;
        }
        r->attempt_running = 1;
        r->attempt_started_ms = now_ms(r);
        r->ttfb_ms = 0;
        r->tail_len = 0;
        r->retry_result = SOL_ATTEMPT_OK;
        r->held_500 = 0;
        r->resp_header_bytes = 0;
        r->resp_has_connection = 0;
        r->node_fault = NULL;
        r->line_started_ms = 0;
        /* A non-streamed generation sends its first byte only when the
         * whole answer is done: allow twice the expected generation time on
         * this node on top (num_predict or the typical length, at the
         * node's learned speed), or a long answer on a slow node would be
         * cut and started again elsewhere. */
        uint64_t first_byte_by = now_ms(r) + d->cfg->first_byte_timeout_ms;
        int streams = r->info.stream == 1 ||
                      (r->info.stream == -1 && (r->route->flags & SOL_RF_STREAM_DEFAULT));
        if ((r->route->flags & SOL_RF_INFERENCE) && !streams && r->node_eta_ms > now_ms(r))
            first_byte_by += 2 * (r->node_eta_ms - now_ms(r));
        set_deadline(r, first_byte_by);
        return 0;
    }
    return -1;
}

/* limits.max_upstream_transfers: proxied requests in flight to all nodes. */
static int upstream_full(const struct sol_daemon *d)
{
    unsigned total = 0;
    for (unsigned i = 0; i < d->table.count; i++)
        total += d->table.nodes[i]->in_flight;
    return total >= (unsigned)d->cfg->max_upstream_transfers;
}

/*
 * Admission: starts the request's next attempt at once when a node with a
 * free slot can take it, else leaves it waiting in the daemon's queue (a
 * node never gets more than its max_concurrent). Returns 0 started, 1
 * queued, -1 failed (r->fail_status and r->last_error say why). Pushing
 * before dispatching keeps one order: a newcomer never overtakes a better
 * waiting request that the same free slot could run.
 */
static int admit(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    if (r->pinned_node >= 0)
        return attempt_start(r) == 0 ? 0 : -1;
    r->score.free_slot_only = 0;
    if (!sol_balancer_has_alternative(&d->balancer, &r->score)) {
        if (r->tried.count == 0)
            explain_no_node(r);
        return -1;
    }
    if (d->cfg->queue_max_length == 0) { /* queue off: nodes queue themselves */
        if (upstream_full(d)) {
            r->fail_status = 503;
            snprintf(r->last_error, sizeof r->last_error,
                     "server busy: %d requests in flight to the nodes (limit)",
                     d->cfg->max_upstream_transfers);
            return -1;
        }
        return attempt_start(r) == 0 ? 0 : -1;
    }
    if (sol_queue_push(&d->queue, &r->qe, sol_now_ms(d)) < 0) {
        r->fail_status = 503;
        snprintf(r->last_error, sizeof r->last_error,
                 "server busy: queue full (%d requests waiting)", d->cfg->queue_max_length);
        return -1;
    }
    sol_request_dispatch(d);
    if (sol_queue_is_queued(&r->qe))
        return 1;
    return r->attempt_running ? 0 : -1;
}

static struct sol_request *from_entry(const struct sol_queue_entry *e)
{
    return SOL_CONTAINER_OF(e, struct sol_request, qe);
}

/*
 * Waiting for a busy node must save more than this, relative to the best
 * free node's cost and at least WAIT_MIN_SAVING_S, before a request passes
 * up a free slot: the wait is an estimate (the running requests' ends are
 * predicted from their num_predict and learned speeds) and a request that
 * waits for nothing has lost time for sure.
 */
#define WAIT_MIN_SAVING_REL 0.25
#define WAIT_MIN_SAVING_S   0.5

/*
 * May this waiting request start now? By default (and in the comparison
 * modes): when some eligible node has a free slot, and the scorer then
 * picks among the free ones. With routing.wait_for_faster, in cost mode,
 * the scorer first prices every node with its expected wait (from the
 * expected ends of the requests running there): when the best node is
 * busy and beats the best free node by a clear margin, the request keeps
 * waiting for it rather than take a free slot on a node that would finish
 * it later (a slow node's free slot is not a bargain). Requests ahead in
 * the queue that chose to wait for a node count as that node's load
 * (d->reserved), so the queue spreads over nodes instead of everyone
 * waiting for the fastest one.
 */
static int can_start_now(const struct sol_queue_entry *e, void *ud)
{
    struct sol_daemon *d = ud;
    if (upstream_full(d))
        return 0;
    struct sol_score_req q = from_entry(e)->score;
    q.free_slot_only = 1;
    if (d->balancer.mode != SOL_ROUTING_COST || !d->cfg->wait_for_faster)
        return sol_balancer_has_alternative(&d->balancer, &q);
    uint64_t now = sol_now_ms(d);
    struct sol_scorer *sc = &d->balancer.scorer;
    q.extra_in_flight = d->reserved;
    struct sol_node *best_free = sol_scorer_pick(sc, &d->table, &q, now, NULL);
    q.free_slot_only = 0;
    struct sol_node *best = sol_scorer_pick(sc, &d->table, &q, now, NULL);
    if (!best)
        return 0;
    if (!best->held && best->in_flight < (best->max_concurrent ? best->max_concurrent : 1))
        return 1;
    if (best_free) {
        double cost_free = sol_scorer_cost(sc, best_free, &q, now);
        double saving = cost_free - sol_scorer_cost(sc, best, &q, now);
        double need = cost_free * WAIT_MIN_SAVING_REL;
        if (!(saving > (need > WAIT_MIN_SAVING_S ? need : WAIT_MIN_SAVING_S)))
            return 1;
    }
    d->reserved[best->index]++;
    return 0;
}

void sol_request_dispatch(struct sol_daemon *d)
{
    struct sol_queue_entry *e;
    for (;;) {
        memset(d->reserved, 0, d->table.count * sizeof *d->reserved);
        if (!(e = sol_queue_peek_for(&d->queue, can_start_now, d)))
            break;
        struct sol_request *r = from_entry(e);
        uint64_t now = sol_now_ms(d);
        sol_queue_dispatch(&d->queue, e, now);
        r->queue_ms += now - e->enqueued_ms;
        r->score.free_slot_only = 1;
        if (attempt_start(r) == 0)
            continue;
        /* A failure here (out of memory, deadline) ends the request. */
        if (!r->fail_status)
            r->fail_status = 502;
        fail_request(r);
    }
}

static void on_queue_expired(struct sol_queue_entry *e, void *ud)
{
    (void)ud;
    struct sol_request *r = from_entry(e);
    r->queue_ms += sol_now_ms(r->d) - e->enqueued_ms;
    r->fail_status = 503;
    snprintf(r->last_error, sizeof r->last_error, "timed out waiting for a node");
    fail_request(r); /* a continuation waiting for a slot ends its stream */
}

void sol_request_expire_queue(struct sol_daemon *d, uint64_t now_ms)
{
    sol_queue_expire(&d->queue, now_ms, on_queue_expired, d);
}

static enum sol_attempt_result classify_status(struct sol_request *r, long status)
{
    if (is_model_not_found(r, status) && r->node) {
        const struct sol_node_model *m = sol_node_find_model(r->node, r->score.model_key);
        if (m && m->installed)
            return SOL_ATTEMPT_MODEL_MISSING;
    }
    /* A node that refuses us is misconfigured; but an unknown route's
     * 401/403 is the route's own answer (Ollama's /api/me says "not signed
     * in" so): the probes still catch a node that refuses us. */
    if ((status == 401 || status == 403) && !(r->route->flags & SOL_RF_PASSTHROUGH))
        return SOL_ATTEMPT_AUTH_REJECTED;
    /* What says the node is unwell counts against it (its breaker); what
     * says the request was wrong does not: any other 4xx, and a 500 whose
     * error is one Ollama gives for a bad request (compat.h). 429 says the
     * node is overloaded. */
    if (status == 500 && sol_compat_is_request_error_500(r->tail, r->tail_len))
        return SOL_ATTEMPT_OK;
    if (status >= 500 || status == 429)
        return SOL_ATTEMPT_SERVER_ERROR;
    return SOL_ATTEMPT_OK;
}

/*
 * The running attempt of a request that could be continued failed (cont.h).
 * Returns 1 when handled here: continued on another node, or the stream
 * ended (the node's own error line, ours, or nothing when the answer was
 * complete). 0: nothing reached the client, the ordinary retry goes on
 * (with the continuation's body, or from scratch).
 */
static int cont_on_failure(struct sol_request *r, const char *why, enum sol_attempt_result result)
{
    struct sol_daemon *d = r->d;
    struct sol_cont *c = r->cont;
    enum sol_cont_why w = cont_verdict(r);
    struct sol_cont_stats st;
    sol_cont_stats(c, &st);
    if (!committed(r) && w != SOL_CONT_CONTINUED && sol_cont_attempt_failed(c)) {
        /* No other node: a node's error line (all it sent) reaches the
         * client as it would have without continuation: the line in the
         * stream, or (whole mode) Ollama's 500 with its message. */
        char said[256];
        if (!sol_cont_whole(c) && sol_cont_give_up(c, &r->stream)) {
            attempt_end(r, result);
            r->last_byte = '\n';
            r->upstream_done = 1;
            sol_req_commit(r);
            sol_req_resume(r);
            return 1;
        }
        if (sol_cont_whole(c) && sol_cont_error_text(c, said, sizeof said)) {
            attempt_end(r, result);
            snprintf(r->last_error, sizeof r->last_error, "%s", said);
            r->fail_status = 500;
            fail_request(r);
            return 1;
        }
    }
    if (!committed(r) && sol_cont_whole(c) && w == SOL_CONT_COMPLETE) {
        /* Whole mode, and the node's final line was in before its
         * connection broke: the one object is whole (built now if the
         * final line alone does not build it, as on /v1 without [DONE]). */
        sol_cont_attempt_ok(c, &r->stream);
        if (sol_buf_pending(&r->stream)) {
            SOL_INFO("request %s: node %s broke after its final line (%s): the answer is whole",
                     r->id, r->node_name, why);
            snprintf(r->content_type, sizeof r->content_type, "%s",
                     r->openai ? "application/json" : "application/json; charset=utf-8");
            r->content_length = (long long)sol_buf_pending(&r->stream);
            attempt_end(r, result);
            r->upstream_done = 1;
            sol_req_commit(r);
            sol_req_resume(r);
            return 1;
        }
    }
    if (!committed(r)) {
        /* Whole mode: the client has seen nothing. A continuation if it
         * can be one, else the answer starts again; either way what was
         * built of this attempt's answer is not the client's. */
        if (sol_cont_whole(c))
            sol_buf_clear(&r->stream);
        if (st.text_bytes || st.continued)
            sol_metrics_continuation(&d->metrics, w), r->cont_outcome = (int)w;
        if (w == SOL_CONT_CONTINUED ? sol_cont_next(c, now_ms(r)) < 0 : 1)
            sol_cont_restart(c);
        return 0;
    }
    sol_metrics_continuation(&d->metrics, w);
    r->cont_outcome = (int)w;
    if (w == SOL_CONT_CONTINUED) {
        SOL_WARN("request %s: node %s failed mid-stream: %s; continuing on another node after "
                 "%llu bytes of text",
                 r->id, r->node_name, why, (unsigned long long)st.text_bytes);
        if (r->state == RS_COMMITTED && !r->head_node[0]) /* the head names the first node */
            snprintf(r->head_node, sizeof r->head_node, "%s", r->node_name);
        if (r->cont_ttft_ms == 0 && r->ttfb_ms > 0)
            r->cont_ttft_ms = (double)(r->attempt_started_ms - r->started_ms) + r->ttfb_ms;
        attempt_end(r, result);
        snprintf(r->last_error, sizeof r->last_error, "node %s failed: %s", r->node_name, why);
        if (sol_cont_next(c, now_ms(r)) == 0 && admit(r) >= 0) {
            d->retries_total++;
            return 1;
        }
        fail_request(r);
        return 1;
    }
    SOL_WARN("request %s: node %s failed mid-stream: %s; not continued (%s)", r->id, r->node_name,
             why, sol_cont_why_name(w));
    attempt_end(r, result);
    if (w != SOL_CONT_COMPLETE && !sol_cont_give_up(c, &r->stream)) {
        char msg[300];
        snprintf(msg, sizeof msg, "node %s failed: %s", r->node_name, why);
        sol_req_append_stream_error(r, msg);
    }
    r->upstream_done = 1;
    sol_req_resume(r);
    return 1;
}

/*
 * A create that answered success: the model is routable on that node at
 * once (the client's next request may be for it) and listed once the
 * re-probe this asks for is in. Its answer went through as the node sent
 * it, so unlike a fan-out it cannot wait for that re-probe.
 */
static void note_created(struct sol_request *r)
{
    if (!r->node || r->status != 200 || !r->model[0] || strcmp(r->path, "/api/create") != 0)
        return;
    /* The last line (streamed) or the object (not) says success. */
    size_t n = r->tail_len;
    while (n && (r->tail[n - 1] == '\n' || r->tail[n - 1] == '\r' || r->tail[n - 1] == ' '))
        n--;
    size_t start = n;
    while (start && r->tail[start - 1] != '\n')
        start--;
    static const char ok[] = "\"success\"";
    int success = 0;
    for (size_t i = start; i + sizeof ok - 1 <= n && !success; i++)
        success = memcmp(r->tail + i, ok, sizeof ok - 1) == 0;
    if (success && !memmem(r->tail + start, n - start, "\"error\"", 7))
        sol_health_model_installed(&r->d->health, r->node, r->model);
}

/* One attempt ended (libcurl finished it, or the deadline sweep did). */
static void attempt_finished(struct sol_request *r, CURLcode rc)
{
    if (r->held_500) {
        r->held_500 = 0;
        if (rc == CURLE_OK && r->held_bytes <= TAIL_BYTES &&
            sol_compat_is_request_error_500(r->tail, r->tail_len)) {
            /* The request's fault: every node would say the same. Its
             * answer goes to the client as the node wrote it. */
            if (sol_buf_append(&r->stream, r->tail, r->tail_len) == 0 && r->tail_len)
                r->last_byte = r->tail[r->tail_len - 1];
        } else if (rc == CURLE_OK) {
            rc = CURLE_WRITE_ERROR; /* the node's fault: retried below */
            r->retry_result = SOL_ATTEMPT_SERVER_ERROR;
        }
    }
    /* cont.c: a stream that ended cleanly without its final line, or with
     * the node's error line, is a failure of the node. Its last line may
     * lack the '\n' (a node that answered one object): judged whole. */
    if (rc == CURLE_OK && cont_feeding(r)) {
        size_t before = r->stream.len;
        sol_cont_attempt_end(r->cont, &r->stream);
        if (r->stream.len > before) { /* as on_upstream_body does for a line */
            r->last_byte = r->stream.data[r->stream.len - 1];
            if (!sol_cont_whole(r->cont))
                sol_req_commit(r);
        }
    }
    int cont_broken = rc == CURLE_OK && cont_feeding(r) && sol_cont_attempt_failed(r->cont);
    if (rc == CURLE_OK && !cont_broken) {
        if (cont_feeding(r)) {
            sol_cont_attempt_ok(r->cont, &r->stream);
            if (sol_cont_whole(r->cont)) { /* the one object built from the node's stream */
                /* Ollama's: gin's c.JSON, or the OpenAI middleware's encoder */
                snprintf(r->content_type, sizeof r->content_type, "%s",
                         r->openai ? "application/json" : "application/json; charset=utf-8");
                r->content_length = (long long)sol_buf_pending(&r->stream);
            }
        }
        const char *tp = "";
        size_t tn = 0;
        if (r->kind && r->kind->on_done) /* e.g. the sharded path's translated final line */
            r->kind->on_done(r, &tp, &tn);
        if (tn && sol_buf_append(&r->stream, tp, tn) == 0) {
            sol_ndjson_tail_keep(r->tail, &r->tail_len, TAIL_BYTES, tp, tn);
            r->last_byte = tp[tn - 1];
        }
        note_created(r);
        attempt_end(r, classify_status(r, r->status));
        r->upstream_done = 1;
        sol_req_commit(r);
        sol_req_resume(r);
        return;
    }
    if (r->state == RS_UPSTREAM &&
        (rc == CURLE_URL_MALFORMAT || rc == CURLE_BAD_FUNCTION_ARGUMENT)) {
        /* libcurl refused to even send the request: the request's fault (a
         * URL it cannot build), not the node's. No node is blamed (no
         * breaker counts it) and no other node is tried. */
        SOL_WARN("request %s: not sent to node %s: %s", r->id, r->node_name,
                 curl_easy_strerror(rc));
        attempt_end(r, SOL_ATTEMPT_CANCELLED);
        snprintf(r->last_error, sizeof r->last_error, "invalid request: %s",
                 curl_easy_strerror(rc));
        r->fail_status = 400;
        r->state = RS_FAILED;
        sol_req_resume(r);
        return;
    }
    int timeout = rc == CURLE_OPERATION_TIMEDOUT;
    const char *why = timeout ? "timed out waiting for the node" : curl_easy_strerror(rc);
    char answered[64];
    char node_said[128]; /* the node's error line, cut: it goes into longer messages */
    if (cont_broken) {
        char said[120];
        why = "its answer ended early";
        if (sol_cont_error_text(r->cont, said, sizeof said)) {
            snprintf(node_said, sizeof node_said, "%s", said);
            why = node_said;
        }
    } else if (r->cont_fatal) {
        why = r->node_fault; /* not the node's fault: no retry, no breaker */
        attempt_end(r, SOL_ATTEMPT_CANCELLED);
        snprintf(r->last_error, sizeof r->last_error, "%s", why);
        r->fail_status = 502;
        fail_request(r);
        return;
    } else if (r->node_fault) {
        why = r->node_fault;
    } else if (r->retry_result != SOL_ATTEMPT_OK) {
        snprintf(answered, sizeof answered, "answered %ld", r->status);
        why = answered;
    }
    enum sol_attempt_result failed = r->retry_result != SOL_ATTEMPT_OK ? r->retry_result
                                     : timeout                         ? SOL_ATTEMPT_TIMEOUT
                                     : committed(r)                    ? SOL_ATTEMPT_BROKEN_STREAM
                                                                       : SOL_ATTEMPT_CONNECT_FAILED;
    if (r->cont && cont_on_failure(r, why, failed))
        return;
    if (r->state == RS_UPSTREAM) {
        /* Nothing reached the client yet: the body is still in memory, so
         * another node can take the request transparently. */
        SOL_WARN("request %s: attempt %u on node %s failed: %s", r->id, r->tried.count,
                 r->node_name, why);
        snprintf(r->last_error, sizeof r->last_error, "node %s: %s", r->node_name, why);
        r->fail_status = timeout ? 504 : 502;
        attempt_end(r, r->retry_result != SOL_ATTEMPT_OK ? r->retry_result
                       : timeout                         ? SOL_ATTEMPT_TIMEOUT
                                                         : SOL_ATTEMPT_CONNECT_FAILED);
        /* e.g. the sharded path: llama-server went away; the request
         * waits for its recovery and tries it again. */
        if (r->retry_result == SOL_ATTEMPT_OK && !timeout && r->tried.count && r->kind &&
            r->kind->retry_later && r->kind->retry_later(r))
            r->tried.count--;
        if (r->tried.count < (unsigned)r->d->max_attempts && admit(r) >= 0) {
            r->d->retries_total++;
            return;
        }
        r->state = RS_FAILED;
        sol_req_resume(r);
        return;
    }
    SOL_WARN("request %s: node %s failed mid-stream: %s", r->id, r->node_name, why);
    if (r->route->flags & SOL_RF_INFERENCE) { /* not continued: say why (cont.h) */
        r->cont_outcome = r->cont_skip;
        sol_metrics_continuation(&r->d->metrics, (enum sol_cont_why)r->cont_skip);
    }
    attempt_end(r, SOL_ATTEMPT_BROKEN_STREAM);
    char msg[300];
    snprintf(msg, sizeof msg, "node %s failed: %s", r->node_name, why);
    sol_req_append_stream_error(r, msg);
    r->upstream_done = 1;
    sol_req_resume(r);
}

static void on_upstream_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_request *r = SOL_CONTAINER_OF(x, struct sol_request, xfer);
    attempt_finished(r, rc);
}

void sol_request_sweep(struct sol_daemon *d, uint64_t now)
{
    /* Every deadline is set through set_deadline(), which keeps
     * requests_next_deadline_ms at or before the earliest: a stream's
     * deadline moves later with every chunk, so most sweeps end here. */
    if (now < d->requests_next_deadline_ms)
        return;
    d->requests_next_deadline_ms = UINT64_MAX;
    struct sol_request *r = d->requests;
    while (r) {
        struct sol_request *next = r->next;
        if (r->attempt_running && r->deadline_ms) {
            if (now >= r->deadline_ms) {
                sol_curl_uv_cancel(&d->curl, &r->xfer);
                attempt_finished(r, CURLE_OPERATION_TIMEDOUT); /* may set a new one */
            } else if (r->deadline_ms < d->requests_next_deadline_ms) {
                d->requests_next_deadline_ms = r->deadline_ms;
            }
        }
        r = next;
    }
}

/* ---- client side --------------------------------------------------------- */

static void on_client_hangup(struct sol_hangup_watch *w)
{
    struct sol_request *r = w->data;
    SOL_DEBUG("request %s: client went away", r->id);
    r->client_gone = 1;
    sol_queue_remove(&r->d->queue, &r->qe);
    attempt_cancel(r, SOL_ATTEMPT_CANCELLED);
    r->upstream_done = 1;
    sol_req_resume(r);
}

/*
 * Ends the client's response with an error (the client is gone, or a body
 * of declared length cannot be completed). libmicrohttpd 0.9.75 marks such a
 * connection closed but only cleans it up when it visits it for a timeout,
 * which it does on every run for connections with a non-default timeout:
 * give it one, and make sure MHD runs again, so the socket closes now and
 * not at the idle timeout.
 */
static ssize_t reader_abort(struct sol_request *r)
{
    if (r->conn)
        MHD_set_connection_option(r->conn, MHD_CONNECTION_OPTION_TIMEOUT, 86400u);
    sol_mhd_uv_kick(&r->d->mhd_glue);
    return MHD_CONTENT_READER_END_WITH_ERROR;
}

static ssize_t read_stream(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct sol_request *r = cls;
    if (r->client_gone)
        return reader_abort(r);
    size_t avail = sol_buf_pending(&r->stream);
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(out, r->stream.data + r->stream.off, n);
        sol_buf_consume(&r->stream, n);
        r->bytes_out += n;
        if (r->paused && sol_buf_pending(&r->stream) < STREAM_LOW_WATER && r->attempt_running) {
            r->paused = 0;
            r->line_started_ms = now_ms(r); /* the client held the node back */
            set_deadline(r, now_ms(r) + r->d->cfg->idle_timeout_ms);
            curl_easy_pause(r->xfer.easy, CURLPAUSE_CONT);
        }
        return (ssize_t)n;
    }
    if (r->upstream_done) {
        if (r->abort_client)
            return reader_abort(r);
        if (r->resp) { /* chunked: the total is known now, as a trailer */
            char st[96];
            if (sol_server_timing_format(st, sizeof st, -1, -1,
                                         (double)(now_ms(r) - r->started_ms)))
                MHD_add_response_footer(r->resp, "Server-Timing", st);
            r->resp = NULL;
        }
        return MHD_CONTENT_READER_END_OF_STREAM;
    }
    sol_req_suspend(r);
    return 0;
}

static void on_response_free(void *cls)
{
    req_unref(cls);
}

static struct sol_reply_headers reply_headers(struct sol_request *r)
{
    sol_fmt_u64(r->queue_ms_text, r->queue_ms);
    struct sol_reply_headers h = {.request_id = r->id,
                                  .explain = r->explain,
                                  .queue_ms = r->queue_ms_text,
                                  .server_timing = r->timing_text};
    if (r->node_name[0])
        h.node = r->head_node[0] ? r->head_node : r->node_name;
    /* Server-Timing: the total only when the answer is complete now (the
     * daemon's own answers, a node's answer already fully in); a stream
     * gets it as a trailer (read_stream). */
    int complete = r->state != RS_COMMITTED || r->upstream_done;
    sol_server_timing_format(r->timing_text, sizeof r->timing_text, (double)r->queue_ms,
                             r->ttfb_ms > 0 ? r->ttfb_ms : -1,
                             complete ? (double)(now_ms(r) - r->started_ms) : -1);
    return h;
}

/*
 * A streamed answer is on its way to the client: no other attempt can run,
 * so what only an attempt needs goes now instead of when the stream ends
 * (at 10,000 open streams every byte held per stream counts; a long
 * conversation's body is most of it). The body stays while libcurl may
 * still be sending it (a node that answered before reading it all) and
 * when another module (fan-out, embed split, sharded path) uses it.
 */
static void release_attempt_inputs(struct sol_request *r)
{
    if ((r->kind && r->kind->keeps_inputs) || r->cont) /* cont: the next attempt's body */
        return;
    curl_slist_free_all(r->client_headers);
    r->client_headers = NULL;
    curl_slist_free_all(r->response_headers); /* MHD copied them */
    r->response_headers = NULL;
    if (!r->xfer.easy || !r->body.data)
        return;
    curl_off_t sent = -1;
    if (curl_easy_getinfo(r->xfer.easy, CURLINFO_SIZE_UPLOAD_T, &sent) != CURLE_OK ||
        sent != (curl_off_t)r->body.len)
        return;
    sol_buf_free(&r->body);
    if (r->conn)
        sol_limits_body_release(&r->d->limits, r->conn); /* the body budgets (limits.c) */
    /* The spans pointed into the body. */
    r->info.options = r->info.messages = r->info.prompt = r->info.input = r->info.keep_alive =
        (struct sol_json_span){0};
}

static enum MHD_Result queue_stream_response(struct sol_request *r)
{
    uint64_t size = r->content_length >= 0 ? (uint64_t)r->content_length : MHD_SIZE_UNKNOWN;
    size_t have = sol_buf_pending(&r->stream);
    struct MHD_Response *resp;
    if (r->upstream_done && !r->abort_client && strcmp(r->method, "HEAD") != 0 &&
        (r->content_length < 0 || (uint64_t)r->content_length == have)) {
        /* The whole answer is already here (every small non-streamed one):
         * from a buffer, MHD writes headers and body in one send. From the
         * callback it took two, and each loopback segment costs the kernel
         * more than the rest of the request. The buffer is not touched
         * again: nothing is appended once upstream_done is set. */
        resp = MHD_create_response_from_buffer_with_free_callback_cls(
            have, r->stream.data ? r->stream.data + r->stream.off : "", on_response_free, r);
        if (resp)
            r->bytes_out += have;
    } else {
        /* MHD callocs the block with the response: 32 KiB zeroed per
         * request was a tenth of a small request's instructions. A chunked
         * body (unknown length, HTTP/1.1 client) is read into the
         * connection's own buffer instead and never touches the block: 1
         * KiB of it per open stream was 3% of sollold's RSS at 4,000
         * streams. An HTTP/1.0 client gets the body unframed, through the
         * block. */
        size_t block = r->content_length >= 0 && r->content_length < MHD_BLOCK_SIZE
                           ? (size_t)r->content_length + 1
                       : r->content_length >= 0 ? MHD_BLOCK_SIZE
                       : r->http10              ? 1024
                                                : 16;
        resp = MHD_create_response_from_callback(size, block, read_stream, r, on_response_free);
    }
    if (!resp)
        return MHD_NO;
    r->refs++;
    if (r->content_type[0])
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
    for (struct curl_slist *s = r->response_headers; s; s = s->next) {
        char *colon = strchr(s->data, ':');
        if (!colon)
            continue;
        *colon = '\0';
        MHD_add_response_header(resp, s->data, colon + 2);
        *colon = ':';
    }
    struct sol_reply_headers h = reply_headers(r);
    sol_reply_add_headers(resp, &h);
    if (size == MHD_SIZE_UNKNOWN && !r->upstream_done) {
        MHD_add_response_header(resp, "Trailer", "Server-Timing");
        r->resp = resp;
    }
    if (!r->upstream_done)
        release_attempt_inputs(r);
    r->state = RS_STREAMING;
    enum MHD_Result ret = MHD_queue_response(r->conn, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ret;
}

static enum MHD_Result reply_error(struct sol_request *r, unsigned status, const char *msg)
{
    struct sol_reply_headers h = reply_headers(r);
    if (status == 503)
        h.retry_after = "1";
    r->status = status;
    return sol_reply_error(r->conn, status, r->openai, msg, &h);
}

/* Re-encodes MHD's parsed query arguments, so nothing the client put in the
 * query string is lost on the way to the node. */
struct query_walk {
    struct sol_buf out;
};

static void append_pct(struct sol_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (isalnum(*p) || *p == '-' || *p == '_' || *p == '.' || *p == '~') {
            sol_buf_append(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sol_buf_append(b, e, 3);
        }
    }
}

static enum MHD_Result collect_arg(void *cls, enum MHD_ValueKind kind, const char *k, const char *v)
{
    (void)kind;
    struct query_walk *w = cls;
    sol_buf_append_str(&w->out, w->out.len ? "&" : "?");
    append_pct(&w->out, k);
    if (v) {
        sol_buf_append_str(&w->out, "=");
        append_pct(&w->out, v);
    }
    return MHD_YES;
}

/*
 * The node gets the path that routing and access control judged: the
 * route's own path, or for a prefix route (blobs, the /v1/ catch-all) the
 * decoded path, which sol_target_check() has proven to be its own normal
 * form (on_request_start()). Never a client's raw bytes: a node or libcurl
 * that resolved dot segments or decoded separators again would serve
 * another route than the one judged. libcurl is told to leave the path as
 * is (CURLOPT_PATH_AS_IS in sol_req_prepare_upstream()).
 */
static int build_upstream_path(struct sol_request *r, const char *url)
{
    size_t rl = strlen(r->route->path);
    /* A pass-through (unknown route) keeps its own path: it names no route here. */
    if (rl && r->route->path[rl - 1] != '/' && !(r->route->flags & SOL_RF_PASSTHROUGH))
        url = r->route->path;
    struct query_walk w = {{0}};
    MHD_get_connection_values(r->conn, MHD_GET_ARGUMENT_KIND, collect_arg, &w);
    size_t len = strlen(url) + w.out.len + 1;
    r->upstream_path = malloc(len);
    if (!r->upstream_path) {
        sol_buf_free(&w.out);
        return -1;
    }
    snprintf(r->upstream_path, len, "%s%.*s", url, (int)w.out.len, w.out.data ? w.out.data : "");
    sol_buf_free(&w.out);
    return 0;
}

static int valid_request_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!(isalnum((unsigned char)s[n]) || s[n] == '-' || s[n] == '_' || s[n] == '.'))
            return 0;
    return n > 0 && n <= 64;
}

/* An incoming X-Request-Id is kept (and forwarded to the node); else a
 * new id, unique in this process and across restarts. */
static void make_request_id(struct sol_daemon *d, struct MHD_Connection *conn, char *id, size_t len)
{
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && valid_request_id(rid)) {
        sol_copy(id, len, rid);
    } else {
        char hex[17];
        size_t hlen = sol_fmt_hex(hex, ++d->request_seq, 8);
        sol_cat(id, len, sol_copy(id, len, d->id_prefix), hex, hlen);
    }
}

static struct sol_request *req_new(struct sol_daemon *d, struct MHD_Connection *conn,
                                   const struct sol_route *route, const char *method)
{
    struct sol_request *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->d = d;
    r->conn = conn;
    r->refs = 1;
    r->route = route;
    r->openai = (route->flags & SOL_RF_OPENAI) != 0;
    r->content_length = -1;
    r->started_ms = sol_now_ms(d);
    sol_copy(r->method, sizeof r->method, method);
    make_request_id(d, conn, r->id, sizeof r->id);
    r->next = d->requests;
    if (r->next)
        r->next->prev = r;
    d->requests = r;
    d->requests_live++;
    return r;
}

/*
 * A request without a body that the daemon answers itself (unknown path,
 * wrong method, "/", /api/version, the aggregates) is answered on MHD's
 * second call, once the request is complete. Queued on the first call,
 * MHD takes the answer as "early" (before the body) and closes the
 * connection after it, so a keep-alive client polling /api/tags or /api/ps
 * would pay a new connection every time. *con_cls points here meanwhile.
 */
static char answer_on_second_call;

/* The route table's answer, or for a path it does not know under /api/ or
 * /v1/ (or a non-POST under /v1/ that only the POST catch-all matched) the
 * pass-through to a node (routes.h). A path with a trailing slash that
 * names a known route is not passed through: it is redirected. */
static const struct sol_route *effective_route(const char *url, const char *method)
{
    size_t len = strlen(url);
    if (len > 1 && url[len - 1] == '/')
        return NULL; /* redirected when it names a route, else 404; never forwarded */
    const struct sol_route *route = sol_route_find(url);
    unsigned m = sol_method_bit(method);
    if (route && !(strcmp(route->path, "/v1/") == 0 && !(route->methods & m)))
        return route;
    return sol_route_passthrough(url);
}

/* gin's RedirectTrailingSlash, as Ollama answers "/api/tags/": 301 for GET,
 * 307 otherwise (the method and body are kept), to the path without the
 * slash with the query string kept. */
static enum MHD_Result redirect_trailing_slash(struct MHD_Connection *conn, const char *fixed,
                                               const char *method)
{
    struct query_walk w = {{0}};
    sol_buf_append_str(&w.out, fixed);
    size_t path_len = w.out.len;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_arg, &w);
    if (w.out.len > path_len) /* collect_arg starts with '&' after a non-empty buffer */
        w.out.data[path_len] = '?';
    const char *loc = sol_buf_cstr(&w.out);
    int get = strcmp(method, "GET") == 0;
    struct sol_buf body = {0};
    if (get || strcmp(method, "HEAD") == 0) {
        sol_buf_append_str(&body, "<a href=\"");
        sol_buf_append_str(&body, loc); /* percent-encoded by collect_arg, path as routed */
        sol_buf_appendf(&body, "\">%s</a>.\n\n", get ? "Moved Permanently" : "Temporary Redirect");
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        body.len, body.data ? body.data : (void *)"", MHD_RESPMEM_MUST_COPY);
    enum MHD_Result ret = MHD_NO;
    if (resp) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, loc);
        if (body.len)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/html; charset=utf-8");
        sol_reply_add_headers(resp, NULL);
        ret = MHD_queue_response(conn, get ? MHD_HTTP_MOVED_PERMANENTLY : 307, resp);
        MHD_destroy_response(resp);
    }
    sol_buf_free(&body);
    sol_buf_free(&w.out);
    return ret;
}

/* *con_cls of a request whose raw target sol_target_check() refused (set by
 * sol_request_on_uri(), before libmicrohttpd decoded the path). */
static char bad_target;

/* A target whose only fault is one trailing '/' after a normal path
 * ("/api/tags/?x=1"): Ollama (gin) redirects it to the path without it, so
 * it passes here and is redirected or answered 404, never forwarded
 * (effective_route()). */
static int trailing_slash_only(const char *uri)
{
    size_t len = strlen(uri), path = strcspn(uri, "?");
    if (path < 2 || uri[path - 1] != '/' || len > 8192)
        return 0;
    char copy[8192];
    memcpy(copy, uri, path - 1);
    memcpy(copy + path - 1, uri + path, len - path + 1);
    const char *why;
    return sol_target_check(copy, len - 1, NULL, 0, &why) >= 0;
}

void *sol_request_on_uri(void *cls, const char *uri, struct MHD_Connection *conn)
{
    (void)cls;
    (void)conn;
    const char *why;
    if (uri && sol_target_check(uri, strlen(uri), NULL, 0, &why) < 0 && !trailing_slash_only(uri)) {
        SOL_DEBUG("refused request target: %s", why);
        return &bad_target;
    }
    return NULL;
}

struct field_walk {
    struct sol_hdr_field f[128];
    size_t n;
    int overflow;
};

static enum MHD_Result collect_field(void *cls, enum MHD_ValueKind kind, const char *key,
                                     size_t key_size, const char *value, size_t value_size)
{
    (void)kind;
    struct field_walk *w = cls;
    if (w->n == sizeof w->f / sizeof w->f[0]) {
        w->overflow = 1;
        return MHD_NO;
    }
    w->f[w->n++] =
        (struct sol_hdr_field){key, key_size, value ? value : "", value ? value_size : 0};
    return MHD_YES;
}

/*
 * The first handler call's checks of the request line and header block
 * (hdr_check.h), before the gate and before any body byte: a refused raw
 * target, a malformed header, a Transfer-Encoding the daemon cannot frame
 * or conflicting Content-Lengths. Returns 0, or the status it answered.
 */
static unsigned refuse_malformed(struct MHD_Connection *conn, void *con_cls, enum MHD_Result *out)
{
    char msg[192];
    unsigned status = 0;
    if (con_cls == (void *)&bad_target) {
        status = 400;
        snprintf(msg, sizeof msg,
                 "invalid request path: it must be its own normal form "
                 "(no dot segments, encoded separators or control bytes)");
    } else {
        struct field_walk w;
        w.n = 0;
        w.overflow = 0;
        MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_field, &w);
        /* More fields than the walk holds: their layout is not checked
         * (limits.max_header_bytes bounds them), the rest is. */
        status = sol_hdr_check_request(w.f, w.n, !w.overflow, msg, sizeof msg);
    }
    if (!status)
        return 0;
    /* Ollama's shape: nothing about a malformed request says which API
     * family it meant. Connection: close, as RFC 9112 asks after a framing
     * error: the bytes after the header block cannot be trusted. */
    struct sol_reply_headers h = {.close = 1};
    *out = sol_reply_error(conn, status, 0, msg, &h);
    return status;
}

static int answered_locally_without_body(struct MHD_Connection *conn, const char *url,
                                         const char *method)
{
    const struct sol_route *route = effective_route(url, method);
    int local =
        !route || !(route->methods & sol_method_bit(method)) || !sol_route_reads_body(route);
    if (!local)
        return 0;
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    return !te && (!cl || strtoull(cl, NULL, 10) == 0);
}

/* First call for a request: route, method and size checks, before any body
 * byte is read. */
static enum MHD_Result on_request_start(struct sol_daemon *d, struct MHD_Connection *conn,
                                        const char *url, const char *method,
                                        const struct sol_auth_key *key, void **con_cls)
{
    const struct sol_route *route = effective_route(url, method);
    int openai = strncmp(url, "/v1/", 4) == 0;
    if (d->draining) { /* graceful shutdown (daemon.c): running work finishes, no new work */
        struct sol_reply_headers h = {.close = 1};
        return sol_reply_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, openai,
                               "sollold is shutting down", &h);
    }
    /* The catch-all "any other POST /v1/..." route names no real path: with
     * another method the path is simply unknown (404, as Ollama answers),
     * not a known path used with the wrong method. */
    char fixed[512];
    if (!route && sol_route_trailing_slash(url, sol_method_bit(method), fixed, sizeof fixed))
        return redirect_trailing_slash(conn, fixed, method);
    if (route && (route->flags & SOL_RF_PASSTHROUGH) && sol_auth_enabled(&d->auth) &&
        !(key && key->admin)) {
        /* What an unknown route does is not known here: admin only. */
        char msg[320];
        snprintf(msg, sizeof msg,
                 "path '%.200s' is not one sollold knows; passing it to a node needs an admin key",
                 url);
        sol_metrics_refused(&d->metrics, SOL_REFUSED_FORBIDDEN);
        return sol_reply_error(conn, MHD_HTTP_FORBIDDEN, openai, msg, NULL);
    }
    if (!route) {
        char msg[320];
        snprintf(msg, sizeof msg, "path '%.256s' not found", url);
        return sol_reply_error(conn, MHD_HTTP_NOT_FOUND, openai, msg, NULL);
    }
    if (!(route->methods & sol_method_bit(method))) {
        char allow[64], msg[128];
        sol_route_allow_header(route, allow, sizeof allow);
        snprintf(msg, sizeof msg, "method %.16s not allowed; use %s", method, allow);
        struct sol_reply_headers h = {.allow = allow};
        return sol_reply_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, openai, msg, &h);
    }
    if (!sol_route_reads_body(route)) /* the daemon's own answers (admin.c) */
        return d->serve_local(d, conn, route, url, key);
    /* The raw target passed sol_request_on_uri(); the decoded one must be
     * its own normal form too (no '?', '#' or '%' decoded into it), as it is
     * what the route table and access control judged. */
    const char *why = "the decoded path has '?', '#' or '%'";
    if (strpbrk(url, "?#%") || sol_target_check(url, strlen(url), NULL, 0, &why) < 0) {
        char msg[192];
        snprintf(msg, sizeof msg, "invalid request path: %s", why);
        struct sol_reply_headers h = {.close = 1};
        return sol_reply_error(conn, MHD_HTTP_BAD_REQUEST, 0, msg, &h);
    }
    const char *cl =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > d->cfg->max_body_bytes) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body too large (limit %llu bytes)",
                 (unsigned long long)d->cfg->max_body_bytes);
        struct sol_reply_headers h = {.close = 1};
        sol_metrics_refused(&d->metrics, SOL_REFUSED_BODY_TOO_LARGE);
        return sol_reply_error(conn, MHD_HTTP_CONTENT_TOO_LARGE, openai, msg, &h);
    }
    struct sol_request *r = req_new(d, conn, route, method);
    if (!r)
        return MHD_NO;
    /* Growing the body buffer piece by piece copied a 1 MiB prompt twice
     * over (a third of its cost). Reserved up to 4 MiB only: a declared
     * length costs nothing to send, and the pages are touched only when
     * the bytes arrive. */
    if (cl) {
        unsigned long long want = strtoull(cl, NULL, 10);
        sol_buf_reserve(&r->body, (size_t)(want < 4u << 20 ? want : 4u << 20));
    }
    snprintf(r->path, sizeof r->path, "%s", url);
    if (build_upstream_path(r, url) < 0) {
        *con_cls = r;
        return MHD_NO;
    }
    *con_cls = r;
    return MHD_YES;
}

/* on_request_start() with the headers of the daemon's own answers: a
 * request id and Server-Timing on whatever it queues itself (http_reply.h). */
static enum MHD_Result start_request(struct sol_daemon *d, struct MHD_Connection *conn,
                                     const char *url, const char *method,
                                     const struct sol_auth_key *key, void **con_cls)
{
    /* Not from d->request_seq: /api/stats counts proxied requests with it. */
    static unsigned long long local_seq;
    char id[72];
    const char *rid = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "X-Request-Id");
    if (rid && valid_request_id(rid))
        snprintf(id, sizeof id, "%s", rid);
    else
        snprintf(id, sizeof id, "%sL%07llx", d->id_prefix, ++local_seq);
    sol_reply_local_begin(id);
    enum MHD_Result ret = on_request_start(d, conn, url, method, key, con_cls);
    sol_reply_local_end();
    return ret;
}

/*
 * X-Sollol-Node names the node for fan-out and pinned routes. Pinned routes
 * without it go to the first node in config order that is up, so a blob
 * upload and the create that uses it meet on the same node.
 */
static int pick_pinned_node(struct sol_request *r)
{
    struct sol_node_table *t = &r->d->table;
    r->pinned_node = -1;
    if (r->route->kind != SOL_ROUTE_FANOUT && r->route->kind != SOL_ROUTE_PINNED)
        return 0;
    const char *name = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sollol-Node");
    for (unsigned i = 0; name && i < t->count; i++)
        if (!t->nodes[i]->removed && strcmp(t->nodes[i]->name, name) == 0)
            r->pinned_node = (int)i;
    if (name && r->pinned_node < 0) {
        r->fail_status = 400;
        snprintf(r->last_error, sizeof r->last_error, "unknown node '%.200s' in X-Sollol-Node",
                 name);
        return -1;
    }
    if (r->route->kind == SOL_ROUTE_PINNED && r->pinned_node < 0) {
        for (unsigned i = 0; i < t->count && r->pinned_node < 0; i++)
            if (t->nodes[i]->state == SOL_NODE_UP && !t->nodes[i]->external)
                r->pinned_node = (int)i;
        if (r->pinned_node < 0) {
            r->fail_status = 503;
            snprintf(r->last_error, sizeof r->last_error, "no node is up");
            return -1;
        }
    }
    return 0;
}

/* Fairness between unauthenticated clients: by client address (an API
 * key's name takes its place, see auth.c). The port is left out: one
 * client, many sockets. */
static uint64_t client_key(struct sol_request *r)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    uint64_t h = 1469598103934665603ull;
    const unsigned char *p = NULL;
    size_t n = 0;
    if (ci && ci->client_addr) {
        const struct sockaddr *sa = ci->client_addr;
        if (sa->sa_family == AF_INET) {
            p = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)->sin_addr;
            n = 4;
        } else if (sa->sa_family == AF_INET6) {
            p = (const unsigned char *)&((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
            n = 16;
        }
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* The conversation keys of prefix affinity (affinity.h): an explicit
 * X-Sollol-Session, else the chat messages or the generate prompt. */
static void affinity_keys(struct sol_request *r)
{
    if (!r->d->affinity_on || !r->model[0])
        return;
    const char *session = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sollol-Session");
    /* Each returns 1 when it found something to key on. */
    if (session && *session)
        r->has_aff = sol_affinity_keys_session(session, strlen(session), r->model, &r->aff);
    else if (r->info.messages.p && r->info.messages.type == SOL_JSON_ARRAY)
        r->has_aff = sol_affinity_keys_chat(&r->info.messages, r->model, &r->aff);
    else if (strcmp(r->path, "/api/generate") == 0)
        r->has_aff = sol_affinity_keys_generate(r->body.data, r->body.len, r->model, &r->aff);
}

/*
 * Whether a failure after the first byte could be continued (cont.h):
 * streamed chats (and non-streamed /api/chat, asked of the node as a
 * stream), unless routing.continue_streams or X-Sollol-Continue says no.
 * The sharded path's llama-server is one node: nothing to continue on.
 */
static void cont_setup(struct sol_request *r)
{
    r->cont_outcome = -1;
    int openai = strcmp(r->path, "/v1/chat/completions") == 0;
    if (r->route->kind != SOL_ROUTE_PROXY || r->kind ||
        (!openai && strcmp(r->path, "/api/chat") != 0)) {
        r->cont_skip = SOL_CONT_ROUTE;
        return;
    }
    const char *h = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sollol-Continue");
    if (!r->d->cfg->continue_streams ||
        (h && (strcmp(h, "0") == 0 || strcasecmp(h, "false") == 0 || strcasecmp(h, "off") == 0 ||
               strcasecmp(h, "no") == 0))) {
        r->cont_skip = SOL_CONT_DISABLED;
        return;
    }
    enum sol_cont_api api = openai ? SOL_CONT_API_OPENAI : SOL_CONT_API_CHAT;
    int whole = 0;
    r->cont_skip = (int)sol_cont_judge(r->body.data, r->body.len, &r->info.messages, api,
                                       sol_req_streams(r), &whole);
    if (r->cont_skip == SOL_CONT_CONTINUED)
        r->cont = sol_cont_new(api, whole, (size_t)r->d->cfg->continue_max_bytes, r->body.data,
                               r->body.len, &r->info.messages);
}

/* The whole body is in: inspect it and start the first attempt. */
static enum MHD_Result on_body_complete(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    if (r->refusal.status) { /* auth.c: refused before the body, answered after it */
        r->status = r->refusal.status;
        return sol_auth_refuse(r->conn, &r->refusal, r->openai);
    }
    if (r->body_over_budget) {
        sol_metrics_refused(&d->metrics, SOL_REFUSED_BODY_BUDGET);
        return reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE,
                           "server busy: the memory for request bodies is in use "
                           "(limits.max_body_total_bytes); retry shortly");
    }
    if (r->body_too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body too large (limit %llu bytes)",
                 (unsigned long long)d->cfg->max_body_bytes);
        sol_metrics_refused(&d->metrics, SOL_REFUSED_BODY_TOO_LARGE);
        return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, msg);
    }
    char err[256];
    memset(&r->info, 0, sizeof r->info);
    r->info.stream = -1;
    r->info.num_predict = -1;
    r->info.priority = -1;
    if (!(r->route->flags & SOL_RF_RAW_BODY)) {
        int want = ((r->route->flags & SOL_RF_NEEDS_MODEL) ? SOL_INSPECT_NEEDS_MODEL : 0) |
                   ((r->route->flags & SOL_RF_NAME_ALIAS) ? SOL_INSPECT_NAME_ALIAS : 0);
        int status = sol_inspect_body(r->body.data ? r->body.data : "", r->body.len, want,
                                      d->cfg->json_max_depth, &r->info, err, sizeof err);
        if (status)
            return reply_error(r, (unsigned)status, err);
    }
    if (pick_pinned_node(r) < 0)
        return reply_error(r, r->fail_status, r->last_error);
    if (r->info.model[0]) {
        if (sol_model_canonical(r->info.model, r->model, sizeof r->model) < 0) {
            char msg[SOL_MODEL_NAME_MAX + 32];
            snprintf(msg, sizeof msg, "invalid model name '%.*s'", 200, r->info.model);
            return reply_error(r, 400, msg);
        }
        r->score.model_key = sol_model_key(r->model);
        /* auth.c: the key's model list. */
        if (!sol_auth_model_allowed(r->auth_key, r->info.model, r->model)) {
            char msg[SOL_MODEL_NAME_MAX + 96];
            snprintf(msg, sizeof msg, "API key '%s' may not use model '%.*s'", r->auth_key->name,
                     200, r->info.model);
            sol_metrics_refused(&d->metrics, SOL_REFUSED_FORBIDDEN);
            return reply_error(r, 403, msg);
        }
    }
    r->score.affinity_node = -1;
    r->score.tried = &r->tried;
    r->score.num_predict = r->info.num_predict;
    r->score.embedding = strstr(r->path, "embed") != NULL;
    size_t prompt_bytes = r->info.messages.len + r->info.prompt.len + r->info.input.len;
    r->score.prompt_tokens = (double)(prompt_bytes ? prompt_bytes : r->body.len) / 4.0;
    const char *ex = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sollol-Explain");
    r->want_explain = ex && (strcmp(ex, "1") == 0 || strcasecmp(ex, "true") == 0);
    build_client_headers(r);
    /* The request kinds daemon.c registered (the sharded path, batch jobs,
     * split embeddings, fan-out), in order: the first that takes the
     * request serves it; one that rides lets it go on along the proxy path
     * below with its hooks called at each step. */
    for (unsigned i = 0; i < d->n_kinds; i++) {
        const struct sol_req_kind *k = d->kinds[i];
        enum sol_take taken = k->take(r);
        if (taken == SOL_TAKE_FAILED)
            return reply_error(r, r->fail_status ? r->fail_status : 500, r->last_error);
        if (taken == SOL_TAKE_PASS)
            continue;
        r->kind = k;
        if (taken == SOL_TAKE_RIDES)
            continue;
        if (r->state == RS_COMMITTED)
            return queue_stream_response(r);
        sol_req_suspend(r);
        return MHD_YES;
    }
    int priority = r->info.priority;
    const char *hp = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "X-Sollol-Priority");
    if (hp) {
        char *end;
        long v = strtol(hp, &end, 10);
        if (end == hp || *end || v < 1 || v > 10)
            return reply_error(r, 400, "X-Sollol-Priority must be an integer from 1 to 10");
        priority = (int)v;
    }
    /* Fairness between clients: the API key's name when there is one (auth.c). */
    uint64_t who = r->auth_key ? r->auth_key->fairness : client_key(r);
    sol_queue_entry_init(&r->qe, who, priority > 0 ? priority : SOL_QUEUE_PRIO_DEFAULT);
    affinity_keys(r);
    cont_setup(r);
    if (admit(r) < 0)
        return reply_error(r, r->fail_status ? r->fail_status : 502, r->last_error);
    r->state = RS_UPSTREAM;
    sol_req_suspend(r);
    return MHD_YES;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls);

/* gin-contrib/cors's preflight answer for an allowed origin (Ollama's
 * configuration, compat.h): 204, whatever the path. */
static enum MHD_Result reply_preflight(struct MHD_Connection *conn)
{
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Access-Control-Allow-Methods", SOL_CORS_ALLOW_METHODS);
    MHD_add_response_header(resp, "Access-Control-Allow-Headers", SOL_CORS_ALLOW_HEADERS);
    MHD_add_response_header(resp, "Access-Control-Max-Age", SOL_CORS_MAX_AGE);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Access-Control-Request-Method");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Access-Control-Request-Headers");
    sol_reply_add_headers(resp, NULL); /* Allow-Origin and Vary: Origin */
    enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, resp);
    MHD_destroy_response(resp);
    return ret;
}

/*
 * CORS first, as Ollama's middleware runs first: a request with an Origin
 * that is neither the daemon's own nor allowed (cors.origins, else Ollama's
 * defaults) is refused 403 with an empty body, a preflight from an allowed
 * one is answered here (204), and every reply to an allowed one carries
 * Access-Control-Allow-Origin. Requests without Origin (every non-browser
 * client) are untouched.
 */
enum MHD_Result sol_request_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    struct sol_daemon *d = cls;
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    if (!origin || *con_cls == (void *)&bad_target) /* a malformed request is refused first */
        return on_access(cls, conn, url, method, version, upload_data, upload_data_size, con_cls);
    int first = !*con_cls;
    if (first) { /* as Go's server refuses a malformed request before gin runs */
        enum MHD_Result bad;
        if (refuse_malformed(conn, NULL, &bad))
            return bad;
    }
    int any;
    enum sol_cors_verdict v =
        sol_cors_check(origin, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host"),
                       d->cfg->cors_origins, &any);
    if (v == SOL_CORS_REFUSED && first) {
        SOL_DEBUG("refused %s %s: origin '%.200s' not allowed (cors.origins)", method, url, origin);
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        enum MHD_Result ret = MHD_queue_response(conn, MHD_HTTP_FORBIDDEN, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (v != SOL_CORS_ALLOWED)
        return on_access(cls, conn, url, method, version, upload_data, upload_data_size, con_cls);
    sol_reply_cors_begin(origin, any);
    enum MHD_Result ret =
        first && strcmp(method, "OPTIONS") == 0
            ? reply_preflight(conn)
            : on_access(cls, conn, url, method, version, upload_data, upload_data_size, con_cls);
    sol_reply_cors_end();
    return ret;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    struct sol_daemon *d = cls;
    struct sol_request *r = *con_cls;
    if (!r || (void *)r == (void *)&bad_target) {
        enum MHD_Result bad;
        if (refuse_malformed(conn, r, &bad)) {
            *con_cls = NULL;
            return bad;
        }
        /* Security gate (limits.c, auth.c), before anything else is read. */
        const struct sol_auth_key *key = NULL;
        enum MHD_Result refused;
        struct sol_auth_verdict held = {0};
        int gate = sol_gate_check(d, conn, url, method, &key, &refused, &held);
        if (gate == 1)
            return refused;
        if (gate == 0 && answered_locally_without_body(conn, url, method)) {
            *con_cls = &answer_on_second_call;
            return MHD_YES;
        }
        enum MHD_Result ret = start_request(d, conn, url, method, key, con_cls);
        if (*con_cls && *con_cls != (void *)&answer_on_second_call) {
            struct sol_request *nr = *con_cls;
            nr->auth_key = key;
            nr->http10 = version && strcmp(version, MHD_HTTP_VERSION_1_0) == 0;
            if (held.status) {
                nr->refusal = held;
                nr->body_too_big = 1; /* drop the body as it arrives */
            }
        }
        return ret;
    }
    if ((void *)r == (void *)&answer_on_second_call) {
        /* The gate let it through on the first call; its key (for the model
         * lists it may see) was not kept, so it is looked up again. */
        const struct sol_auth_key *key = sol_auth_identify(
            &d->auth, url,
            MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION));
        return start_request(d, conn, url, method, key, con_cls);
    }
    if (r->client_gone)
        return MHD_NO;
    switch (r->state) {
    case RS_RECEIVING:
        if (*upload_data_size) {
            /* Progress for the minimum body rate, and the body budgets
             * (limits.c) for the bytes kept. */
            int over_budget =
                sol_limits_body_data(&d->limits, conn, *upload_data_size, !r->body_too_big) < 0;
            if (!r->body_too_big) {
                if (over_budget || r->body.len + *upload_data_size > d->cfg->max_body_bytes) {
                    /* Chunked bodies have no Content-Length to refuse early:
                     * drop the rest as it arrives, answer 413 (or 503 when
                     * the body memory is in use) at the end. */
                    r->body_too_big = 1;
                    r->body_over_budget = over_budget;
                    sol_buf_free(&r->body);
                    sol_limits_body_release(&d->limits, conn);
                } else if (sol_buf_append(&r->body, upload_data, *upload_data_size) < 0) {
                    return MHD_NO;
                }
            }
            *upload_data_size = 0;
            return MHD_YES;
        }
        sol_limits_body_done(&d->limits, conn);
        return on_body_complete(r);
    case RS_UPSTREAM:
        /* Resumed without a decision: only a hang-up does that. */
        return MHD_NO;
    case RS_COMMITTED:
        return queue_stream_response(r);
    case RS_FAILED:
        return reply_error(r, r->fail_status ? r->fail_status : 502, r->last_error);
    case RS_STREAMING:
        return MHD_YES;
    }
    return MHD_NO;
}

void sol_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe)
{
    struct sol_daemon *d = cls;
    sol_limits_request_done(&d->limits, conn); /* next request's header deadline */
    struct sol_request *r = *con_cls;
    *con_cls = NULL;
    if (!r || (void *)r == (void *)&answer_on_second_call || (void *)r == (void *)&bad_target)
        return;
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && !r->client_gone) {
        r->client_gone = 1;
        SOL_DEBUG("request %s: connection ended early (code %d)", r->id, (int)toe);
    }
    sol_queue_remove(&r->d->queue, &r->qe);
    attempt_cancel(r, SOL_ATTEMPT_CANCELLED);
    r->upstream_done = 1;
    r->suspended = 0;
    r->conn = NULL;
    uint64_t ms = sol_now_ms(r->d) - r->started_ms;
    /* The finished request for GET /metrics (metrics.c), the dashboard
     * (dashboard.c) and the access log (access_log.c). Token counts come
     * from the node's final metrics: eval_count/prompt_eval_count on Ollama
     * routes, usage.completion_tokens/prompt_tokens on OpenAI ones. */
    int tokens = r->route && (r->route->flags & SOL_RF_INFERENCE) && r->tail_len &&
                 r->status >= 200 && r->status < 300;
    int streamed = strncasecmp(r->content_type, "application/x-ndjson", 20) == 0 ||
                   strncasecmp(r->content_type, "text/event-stream", 17) == 0;
    struct sol_metrics_sample sample = {
        .route = r->route,
        .model = r->model,
        .node = r->node_name,
        .status = r->status > 0 ? (unsigned)r->status : 0,
        .duration_s = (double)ms / 1000.0,
        .ttfb_s = r->ttfb_ms / 1000.0,
        .ttft_s = tokens && streamed && r->ttfb_ms > 0
                      ? ((double)(r->attempt_started_ms - r->started_ms) + r->ttfb_ms) / 1000.0
                      : 0,
        .queue_s = (double)r->queue_ms / 1000.0,
        .waited = r->route && r->route->kind == SOL_ROUTE_PROXY && r->node_name[0] != '\0',
        .attempts = r->tried.count,
        .bytes_out = r->bytes_out,
        .eval_count = tokens ? tail_number(r, r->openai ? "completion_tokens" : "eval_count") : 0,
        .prompt_eval_count =
            tokens ? tail_number(r, r->openai ? "prompt_tokens" : "prompt_eval_count") : 0,
    };
    if (r->cont) { /* cont.c: the merged counters of a continued answer */
        struct sol_cont_stats st;
        sol_cont_stats(r->cont, &st);
        if (st.continued && st.have_counts) {
            sample.eval_count = st.eval_count;
            sample.prompt_eval_count = st.prompt_count;
        }
        if (r->cont_ttft_ms > 0)
            sample.ttft_s = r->cont_ttft_ms / 1000.0;
    }
    if (tokens && !sample.eval_count && r->kind && r->kind->streamed_tokens)
        sample.eval_count = r->kind->streamed_tokens(r); /* a stream that broke: what it got */
    sol_metrics_record(&r->d->metrics, &r->d->table, &sample);
    sol_dashboard_record(&r->d->dashboard, &sample, sol_now_ms(r->d));
    if (sol_log_enabled(SOL_LOG_INFO)) { /* the access log's level: skip the address else */
        char client[INET6_ADDRSTRLEN];
        sol_access_client_address(conn, client, sizeof client);
        sol_access_log(&(struct sol_access_entry){
            .id = r->id,
            .client = client,
            .method = r->method,
            .path = r->path,
            .s = &sample,
            .client_gone = r->client_gone,
            .cont = r->cont_outcome >= 0 ? sol_cont_why_name(r->cont_outcome) : NULL});
    }
    sol_hangup_watch_close(&r->watch, on_watch_closed);
    req_unref(r);
}

void sol_request_abort_all(struct sol_daemon *d, const char *why)
{
    for (struct sol_request *r = d->requests; r; r = r->next) {
        if (!r->conn)
            continue;
        if (sol_queue_remove(&d->queue, &r->qe)) {
            snprintf(r->last_error, sizeof r->last_error, "%s", why);
            r->fail_status = 503;
            if (committed(r)) /* a continuation waiting for a slot */
                sol_req_append_stream_error(r, why);
            else
                r->state = RS_FAILED;
        }
        if (r->kind && r->kind->running && r->kind->running(r)) {
            r->kind->cancel(r);     /* fan-out legs, embed chunks */
            r->attempt_running = 1; /* end it below like a single attempt */
        }
        if (r->attempt_running) {
            attempt_cancel(r, SOL_ATTEMPT_CANCELLED);
            if (r->state == RS_UPSTREAM) {
                snprintf(r->last_error, sizeof r->last_error, "%s", why);
                r->fail_status = 503;
                r->state = RS_FAILED;
            } else {
                sol_req_append_stream_error(r, why);
            }
        }
        r->upstream_done = 1;
        sol_req_resume(r);
    }
    for (unsigned i = 0; i < d->n_kinds; i++) /* e.g. background embedding jobs (batch.c) */
        if (d->kinds[i]->shutdown)
            d->kinds[i]->shutdown(d);
}
