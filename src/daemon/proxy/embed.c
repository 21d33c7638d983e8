/*
 * embed.c - distributed embedding batches: one /api/embed request with a
 * large `input` array is cut into chunks, sent to several nodes in
 * parallel and merged back in input order (see batch.h for the pure
 * helpers, docs/api.md for the rules).
 *
 * A split (struct sol_embed_split) is independent of any client
 * connection: request.c hands /api/embed requests to sol_embed_take() (the
 * take of sol_embed_kind), which runs one for the request, and batch.c
 * runs one per background job.
 *
 * Each chunk is a leg of its own: it takes a balancer slot (get on the
 * planned node, put with the outcome and the node's metrics), so the
 * learned speeds, the breaker and the admission queue see the chunks like
 * any request. A chunk that fails (connect error, timeout, 5xx, 429, a
 * node that lost the model, an answer that does not parse) is retried
 * alone on another node, up to routing.max_attempts nodes; when it cannot
 * be served the whole split fails with the last failure and the other legs
 * are cancelled.
 *
 * Memory: the input array is read with json_scan spans (no DOM); a chunk's
 * body is built when its leg starts and freed when it ends; a node's
 * answer is kept only as the text of its embeddings array; the answers
 * together are bounded by SOL_EMBED_MAX_RESULT_BYTES.
 */
#include "proxy/embed.h"

#include "proxy/request_priv.h"

#include "base/embed_plan.h"
#include "base/breaker.h"
#include "sollol/container_of.h"
#include "sollol/leg.h"
#include "daemon-t.h"
#include "base/http_reply.h"
#include "sollol/json_scan.h"
#include "sollol/log.h"
#include "base/model_name.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define ERROR_BODY_LIMIT (64 * 1024) /* kept of a node's error answer */

/* ---- the split: chunks on the wire --------------------------------------- */

struct sol_embed_chunk {
    struct sol_embed_split *s;
    unsigned index;
    size_t start, count;
    struct sol_json_span slice; /* raw text of its elements in the body */
    unsigned planned;           /* node index of the plan */
    struct sol_tried tried;
    struct sol_node *node; /* between get and put */
    uint64_t node_eta_ms;  /* its expected end, for put() */
    struct sol_leg up;     /* body: the node's answer; once done, its embeddings */
    struct sol_buf req;    /* this chunk's request body while its leg runs */
    struct sol_embed_piece piece;
    char content_type[64];
    int done, too_big;
    uint64_t leg_started_ms;
    double ttfb_ms;
};

struct sol_embed_split {
    struct sol_daemon *d;
    char id[72];
    char *path;
    const char *body;
    size_t body_len;
    struct sol_json_span input;
    size_t n_inputs, inputs_done;
    char *model_echo;
    struct sol_score_req score; /* base of every chunk's (tried is the chunk's) */
    struct curl_slist *headers; /* copy of the caller's */

    struct sol_embed_chunk *chunks;
    unsigned n_chunks, running, chunks_done;
    unsigned n_nodes_used;
    char node_name[128]; /* the one node, or "*" */
    unsigned long long result_bytes;
    uint64_t started_ms, started_ns;
    uint64_t finished_ns;
    int finished, failed;
    unsigned fail_status;
    char error[384];

    void (*on_progress)(void *ud, size_t done, size_t total);
    void (*on_done)(void *ud, struct sol_embed_split *s);
    void *ud;
};

static size_t on_chunk_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_embed_chunk *c = ud;
    size_t n = size * nmemb;
    if (n <= 2 && (n == 0 || p[0] == '\r' || p[0] == '\n')) {
        curl_easy_getinfo(c->up.xfer.easy, CURLINFO_RESPONSE_CODE, &c->up.status);
        if (c->ttfb_ms == 0)
            c->ttfb_ms = (double)(sol_now_ms(c->s->d) - c->leg_started_ms) + 0.001;
        return n;
    }
    if (n >= 13 && strncasecmp(p, "Content-Type:", 13) == 0) {
        const char *v = p + 13, *end = p + n;
        while (v < end && (*v == ' ' || *v == '\t'))
            v++;
        while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
            end--;
        snprintf(c->content_type, sizeof c->content_type, "%.*s", (int)(end - v), v);
    }
    return n;
}

static size_t on_chunk_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_embed_chunk *c = ud;
    struct sol_embed_split *s = c->s;
    size_t n = size * nmemb;
    if (c->up.status != 200) {
        /* An error answer: keep enough to quote it. */
        size_t keep = c->up.body.len < ERROR_BODY_LIMIT ? ERROR_BODY_LIMIT - c->up.body.len : 0;
        if (keep > n)
            keep = n;
        if (keep)
            sol_buf_append(&c->up.body, p, keep);
        return n;
    }
    if (s->result_bytes + n > SOL_EMBED_MAX_RESULT_BYTES) {
        c->too_big = 1;
        return 0;
    }
    if (sol_buf_append(&c->up.body, p, n) < 0)
        return 0;
    s->result_bytes += n;
    return n;
}

static void on_chunk_done(struct sol_curl_xfer *x, CURLcode rc);

/* Starts a leg of chunk c: on `node` (the plan), or on the best node not
 * yet tried when node is NULL (a retry). Returns 0, or -1 with why. */
static int leg_start(struct sol_embed_chunk *c, struct sol_node *node, char *why, size_t whylen)
{
    struct sol_embed_split *s = c->s;
    struct sol_daemon *d = s->d;
    struct sol_score_req q = s->score;
    q.tried = &c->tried;
    q.prompt_tokens = (double)c->slice.len / 4.0;
    struct sol_node *n = node ? sol_balancer_get_node(&d->balancer, node, &q, &c->node_eta_ms)
                              : sol_balancer_get(&d->balancer, &q, NULL, &c->node_eta_ms);
    if (!n) {
        snprintf(why, whylen, "no other node can take model '%s'", s->model_echo);
        return -1;
    }
    c->node = n;
    if (c->tried.count < SOL_MAX_ATTEMPTS)
        c->tried.index[c->tried.count++] = n->index;
    sol_buf_clear(&c->req);
    CURL *e = c->up.xfer.easy;
    if (e)
        curl_easy_reset(e);
    else
        e = c->up.xfer.easy = curl_easy_init();
    if (!e || sol_embed_chunk_body(&c->req, s->body, s->body_len, &s->input, &c->slice) < 0 ||
        sol_req_prepare_upstream(e, n, s->path, s->headers, &c->up.headers) < 0) {
        struct sol_attempt_report rep = {.result = SOL_ATTEMPT_CANCELLED,
                                         .model_key = s->score.model_key,
                                         .eta_ms = c->node_eta_ms};
        sol_balancer_put(&d->balancer, n, &rep);
        c->node = NULL;
        snprintf(why, whylen, "out of memory");
        return -1;
    }
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, c->req.data);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)c->req.len);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->cfg->connect_timeout_ms);
    /* An embed answer is one document: it comes whole, after the work. */
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
                     (long)d->cfg->first_byte_timeout_ms + (long)d->cfg->idle_timeout_ms);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_chunk_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_chunk_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 64L * 1024);
    c->up.status = 0;
    c->content_type[0] = '\0';
    c->ttfb_ms = 0;
    c->too_big = 0;
    c->leg_started_ms = sol_now_ms(d);
    if (sol_leg_start(&c->up, &d->curl, on_chunk_done) < 0) {
        struct sol_attempt_report rep = {.result = SOL_ATTEMPT_CANCELLED,
                                         .model_key = s->score.model_key,
                                         .eta_ms = c->node_eta_ms};
        sol_balancer_put(&d->balancer, n, &rep);
        c->node = NULL;
        snprintf(why, whylen, "cannot start a transfer to node %s", n->name);
        return -1;
    }
    s->running++;
    return 0;
}

/* Stops every running leg; their slots go back as cancelled. */
void sol_embed_split_cancel(struct sol_embed_split *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->n_chunks; i++) {
        struct sol_embed_chunk *c = &s->chunks[i];
        if (!sol_leg_cancel(&c->up, &s->d->curl))
            continue;
        s->running--;
        if (c->node) {
            struct sol_attempt_report rep = {.result = SOL_ATTEMPT_CANCELLED,
                                             .model_key = s->score.model_key,
                                             .eta_ms = c->node_eta_ms};
            sol_balancer_put(&s->d->balancer, c->node, &rep);
            c->node = NULL;
        }
    }
}

/* Ends the split (success or failure) and tells the owner, last. */
static void split_finish(struct sol_embed_split *s)
{
    s->finished = 1;
    s->finished_ns = uv_hrtime();
    if (s->failed)
        sol_embed_split_cancel(s);
    s->on_done(s->ud, s); /* may free s */
}

static void split_fail(struct sol_embed_split *s, unsigned status, const char *msg)
{
    s->failed = 1;
    s->fail_status = status ? status : 502;
    snprintf(s->error, sizeof s->error, "%s", msg);
    SOL_WARN("request %s: embedding batch failed: %s", s->id, msg);
    split_finish(s);
}

/* The node's own error message from an Ollama error document, if any. */
static void node_error_message(const struct sol_buf *b, char *out, size_t len)
{
    out[0] = '\0';
    if (!b->len)
        return;
    struct sol_json_span sp = {b->data, b->len, SOL_JSON_OBJECT}, v;
    char err[8];
    if (sol_json_scan_object(b->data, b->len, 16, NULL, NULL, err, sizeof err) == SOL_JSON_OK &&
        sol_json_object_get(&sp, "error", &v) && v.type == SOL_JSON_STRING &&
        sol_json_string_decode(&v, out, len) >= 0)
        return;
    out[0] = '\0';
}

static void on_chunk_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_embed_chunk *c = SOL_CONTAINER_OF(x, struct sol_embed_chunk, up.xfer);
    struct sol_embed_split *s = c->s;
    struct sol_daemon *d = s->d;
    struct sol_node *n = c->node;
    c->up.running = 0;
    s->running--;
    c->node = NULL;

    struct sol_attempt_report rep = {.result = SOL_ATTEMPT_OK,
                                     .model_key = s->score.model_key,
                                     .ttfb_ms = c->ttfb_ms,
                                     .eta_ms = c->node_eta_ms};
    enum { CHUNK_OK, CHUNK_RETRY, CHUNK_FATAL } what = CHUNK_OK;
    unsigned status = 0;
    char nodemsg[256], msg[384];
    const char *name = n ? n->name : "?";
    if (rc == CURLE_OK && c->up.status == 200) {
        char why[160];
        long len = sol_embed_parse_answer(c->up.body.data ? c->up.body.data : "", c->up.body.len,
                                          c->count, &c->piece, why, sizeof why);
        if (len >= 0) {
            s->result_bytes -= c->up.body.len - (size_t)len;
            c->up.body.len = (size_t)len;
            rep.prompt_eval_count = c->piece.prompt_eval_count;
            if (c->piece.total_duration > c->piece.load_duration)
                rep.prompt_eval_duration_ns = c->piece.total_duration - c->piece.load_duration;
            rep.load_duration_ns = c->piece.load_duration;
        } else {
            rep.result = SOL_ATTEMPT_BROKEN_STREAM;
            what = CHUNK_RETRY;
            status = 502;
            snprintf(msg, sizeof msg, "node %s: unusable answer: %s", name, why);
        }
    } else if (rc == CURLE_OK) {
        node_error_message(&c->up.body, nodemsg, sizeof nodemsg);
        const struct sol_node_model *m = n ? sol_node_find_model(n, s->score.model_key) : NULL;
        status = (unsigned)c->up.status;
        if (c->up.status >= 500 || c->up.status == 429) {
            rep.result = SOL_ATTEMPT_SERVER_ERROR;
            what = CHUNK_RETRY;
        } else if (c->up.status == 404 &&
                   strncasecmp(c->content_type, "application/json", 16) == 0 && m && m->installed) {
            rep.result = SOL_ATTEMPT_MODEL_MISSING;
            what = CHUNK_RETRY;
        } else {
            /* A real answer (400 for a bad option, 401/403): it would be
             * the same on every node; the client gets it as the node
             * worded it. */
            if (c->up.status == 401 || c->up.status == 403)
                rep.result = SOL_ATTEMPT_AUTH_REJECTED;
            what = CHUNK_FATAL;
        }
        if (what == CHUNK_FATAL && nodemsg[0])
            snprintf(msg, sizeof msg, "%s", nodemsg);
        else if (nodemsg[0])
            snprintf(msg, sizeof msg, "node %s: answered %ld: %s", name, c->up.status, nodemsg);
        else
            snprintf(msg, sizeof msg, "node %s: answered %ld", name, c->up.status);
    } else if (c->too_big) {
        rep.result = SOL_ATTEMPT_CANCELLED;
        what = CHUNK_FATAL;
        status = 500;
        snprintf(msg, sizeof msg, "embedding results too large (limit %llu bytes)",
                 (unsigned long long)SOL_EMBED_MAX_RESULT_BYTES);
    } else {
        int timeout = rc == CURLE_OPERATION_TIMEDOUT;
        rep.result = timeout ? SOL_ATTEMPT_TIMEOUT : SOL_ATTEMPT_CONNECT_FAILED;
        what = CHUNK_RETRY;
        status = timeout ? 504 : 502;
        snprintf(msg, sizeof msg, "node %s: %s", name,
                 timeout ? "timed out waiting for the node" : curl_easy_strerror(rc));
    }
    if (n)
        sol_balancer_put(&d->balancer, n, &rep);

    if (what == CHUNK_OK) {
        c->done = 1;
        s->chunks_done++;
        s->inputs_done += c->count;
        sol_buf_free(&c->req);
        curl_easy_cleanup(c->up.xfer.easy);
        c->up.xfer.easy = NULL;
        curl_slist_free_all(c->up.headers);
        c->up.headers = NULL;
        if (s->on_progress)
            s->on_progress(s->ud, s->inputs_done, s->n_inputs);
        if (s->chunks_done == s->n_chunks)
            split_finish(s); /* may free s */
        return;
    }
    if (c->up.status == 200)
        s->result_bytes -= c->up.body.len;
    sol_buf_free(&c->up.body);
    if (what == CHUNK_RETRY) {
        SOL_WARN("request %s: embedding chunk %u (%zu inputs) failed: %s", s->id, c->index,
                 c->count, msg);
        char why[160];
        struct sol_score_req q = s->score;
        q.tried = &c->tried;
        if (c->tried.count < (unsigned)d->max_attempts && c->tried.count < SOL_MAX_ATTEMPTS &&
            sol_now_ms(d) - s->started_ms < d->cfg->retry_deadline_ms &&
            sol_balancer_has_alternative(&d->balancer, &q) &&
            leg_start(c, NULL, why, sizeof why) == 0) {
            d->retries_total++;
            return;
        }
    }
    split_fail(s, status, msg); /* may free s */
}

static void copy_headers(struct curl_slist **dst, const struct curl_slist *src)
{
    for (; src; src = src->next) {
        struct curl_slist *l = curl_slist_append(*dst, src->data);
        if (l)
            *dst = l;
    }
}

void sol_embed_split_free(struct sol_embed_split *s)
{
    if (!s)
        return;
    sol_embed_split_cancel(s);
    for (unsigned i = 0; i < s->n_chunks; i++) {
        struct sol_embed_chunk *c = &s->chunks[i];
        sol_leg_free(&c->up);
        sol_buf_free(&c->req);
    }
    free(s->chunks);
    curl_slist_free_all(s->headers);
    free(s->path);
    free(s->model_echo);
    free(s);
}

int sol_embed_split_start(const struct sol_embed_split_params *p, struct sol_embed_split **out,
                          unsigned *status, char *err, size_t errlen)
{
    struct sol_daemon *d = p->d;
    struct sol_node_table *t = &d->table;
    *out = NULL;
    struct sol_score_req q = {.model_key = sol_model_key(p->model),
                              .embedding = 1,
                              .affinity_node = -1,
                              .num_predict = -1,
                              .prompt_tokens = (double)p->input.len / 4.0};

    /* The candidates and what each offers. */
    struct sol_embed_plan_node nodes[SOL_EMBED_MAX_CHUNKS];
    unsigned idx[SOL_EMBED_MAX_CHUNKS];
    unsigned n_nodes = 0;
    uint64_t now = sol_now_ms(d);
    for (unsigned i = 0; i < t->count && n_nodes < SOL_EMBED_MAX_CHUNKS; i++) {
        const struct sol_node *n = t->nodes[i];
        if (!sol_scorer_eligible(n, &q, now, NULL))
            continue;
        const struct sol_node_model *m = sol_node_find_model(n, q.model_key);
        unsigned k = n->max_concurrent ? n->max_concurrent : 1;
        unsigned reserve = p->reserve_slots < k ? p->reserve_slots : k - 1;
        unsigned used = n->in_flight + reserve;
        nodes[n_nodes].free_slots = used < k ? k - used : 0;
        /* A half-open breaker lets one trial through: one chunk at most. */
        if (sol_breaker_state_at(&n->breaker, now) != SOL_BREAKER_CLOSED &&
            nodes[n_nodes].free_slots > 1)
            nodes[n_nodes].free_slots = 1;
        nodes[n_nodes].speed = m ? m->prompt_tps : 0;
        idx[n_nodes++] = i;
    }
    struct sol_embed_plan_chunk plan[SOL_EMBED_MAX_CHUNKS];
    unsigned n_chunks = sol_embed_plan(nodes, n_nodes, p->n_inputs, p->min_chunk ? p->min_chunk : 1,
                                       plan, SOL_EMBED_MAX_CHUNKS);
    if (n_chunks == 0 || (n_chunks == 1 && !p->allow_single)) {
        if (!p->allow_single)
            return 1; /* not worth it, or nobody to split over: the normal path */
        *status = 503;
        int anywhere = 0;
        for (unsigned i = 0; i < t->count; i++) {
            const struct sol_node_model *m = sol_node_find_model(t->nodes[i], q.model_key);
            anywhere |= (m && m->installed && !m->gone) || t->nodes[i]->tags_at_ms == 0;
        }
        if (!anywhere)
            *status = 404;
        snprintf(err, errlen,
                 anywhere ? "model '%s' is only on nodes that are down or failing; retry later"
                          : "model '%s' not found on any node",
                 p->model_echo);
        return -1;
    }

    struct sol_embed_split *s = calloc(1, sizeof *s);
    if (!s)
        goto oom;
    s->d = d;
    snprintf(s->id, sizeof s->id, "%s", p->id);
    s->path = strdup(p->path);
    s->model_echo = strdup(p->model_echo);
    s->chunks = calloc(n_chunks, sizeof *s->chunks);
    if (!s->path || !s->model_echo || !s->chunks)
        goto oom;
    s->body = p->body;
    s->body_len = p->body_len;
    s->input = p->input;
    s->n_inputs = p->n_inputs;
    s->score = q;
    s->on_progress = p->on_progress;
    s->on_done = p->on_done;
    s->ud = p->ud;
    s->started_ms = now;
    s->started_ns = uv_hrtime();
    copy_headers(&s->headers, p->headers);
    s->n_chunks = n_chunks;
    struct sol_json_span slices[SOL_EMBED_MAX_CHUNKS];
    if (sol_embed_slices(&p->input, plan, n_chunks, slices) < 0) {
        *status = 500;
        snprintf(err, errlen, "cannot cut the input array");
        sol_embed_split_free(s);
        return -1;
    }
    unsigned last_node = ~0u;
    for (unsigned i = 0; i < n_chunks; i++) {
        struct sol_embed_chunk *c = &s->chunks[i];
        c->s = s;
        c->index = i;
        c->start = plan[i].start;
        c->count = plan[i].count;
        c->slice = slices[i];
        c->planned = idx[plan[i].node];
        if (c->planned != last_node)
            s->n_nodes_used++;
        last_node = c->planned;
    }
    snprintf(s->node_name, sizeof s->node_name, "%s",
             s->n_nodes_used == 1 ? t->nodes[s->chunks[0].planned]->name : "*");
    for (unsigned i = 0; i < n_chunks; i++) {
        char why[200];
        if (leg_start(&s->chunks[i], t->nodes[s->chunks[i].planned], why, sizeof why) < 0) {
            *status = 500;
            snprintf(err, errlen, "%s", why);
            sol_embed_split_free(s); /* cancels the legs already running */
            return -1;
        }
    }
    SOL_INFO("request %s: %zu embedding inputs split into %u chunks over %u node(s)", s->id,
             s->n_inputs, n_chunks, s->n_nodes_used);
    *out = s;
    return 0;
oom:
    if (s)
        sol_embed_split_free(s);
    *status = 500;
    snprintf(err, errlen, "out of memory");
    return -1;
}

int sol_embed_split_result(struct sol_embed_split *s, struct sol_buf *out, unsigned *status,
                           char *err, size_t errlen)
{
    if (s->failed || !s->finished) {
        *status = s->fail_status ? s->fail_status : 500;
        snprintf(err, errlen, "%s", s->error[0] ? s->error : "embedding batch did not finish");
        return -1;
    }
    struct sol_embed_piece *pieces = calloc(s->n_chunks, sizeof *pieces);
    if (!pieces)
        goto oom;
    for (unsigned i = 0; i < s->n_chunks; i++) {
        pieces[i] = s->chunks[i].piece;
        pieces[i].text = s->chunks[i].up.body.data;
    }
    int rc =
        sol_embed_merge(out, s->model_echo, pieces, s->n_chunks, s->finished_ns - s->started_ns);
    free(pieces);
    if (rc == 0)
        return 0;
oom:
    *status = 500;
    snprintf(err, errlen, "out of memory merging the embeddings");
    return -1;
}

const char *sol_embed_split_nodes(const struct sol_embed_split *s)
{
    return s->node_name;
}

/* ---- /api/embed requests (request.c's hook) ------------------------------ */

static void on_request_split_done(void *ud, struct sol_embed_split *s)
{
    struct sol_request *r = ud;
    unsigned status = 0;
    char err[384];
    if (sol_embed_split_result(s, &r->stream, &status, err, sizeof err) == 0) {
        r->status = 200;
        snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
        r->content_length = (long long)sol_buf_pending(&r->stream);
        r->upstream_done = 1;
        sol_req_commit(r);
    } else {
        sol_buf_clear(&r->stream);
        r->fail_status = status;
        snprintf(r->last_error, sizeof r->last_error, "%s", err);
        r->state = RS_FAILED;
        sol_req_resume(r);
    }
    r->embed = NULL;
    sol_embed_split_free(s);
}

int sol_embed_take(struct sol_request *r)
{
    struct sol_daemon *d = r->d;
    int min = d->cfg->embed_split_min_inputs;
    if (min <= 0 || r->route->kind != SOL_ROUTE_PROXY || strcmp(r->path, "/api/embed") != 0 ||
        !r->info.input.p || r->info.input.type != SOL_JSON_ARRAY || !r->model[0])
        return 0;
    int all_strings;
    size_t n = sol_embed_count_inputs(&r->info.input, &all_strings);
    if (n < (size_t)min || !all_strings)
        return 0; /* small, or refused by the node as Ollama would: one node */
    struct sol_embed_split_params p = {.d = d,
                                       .id = r->id,
                                       .path = r->upstream_path,
                                       .body = r->body.data,
                                       .body_len = r->body.len,
                                       .input = r->info.input,
                                       .n_inputs = n,
                                       .model = r->model,
                                       .model_echo = r->info.model,
                                       .headers = r->client_headers,
                                       .min_chunk = SOL_EMBED_MIN_CHUNK,
                                       .on_done = on_request_split_done,
                                       .ud = r};
    unsigned status = 0;
    char err[384];
    int rc = sol_embed_split_start(&p, &r->embed, &status, err, sizeof err);
    if (rc > 0)
        return 0;
    if (rc < 0) {
        r->fail_status = status;
        snprintf(r->last_error, sizeof r->last_error, "%s", err);
        return -1;
    }
    snprintf(r->node_name, sizeof r->node_name, "%s", sol_embed_split_nodes(r->embed));
    r->state = RS_UPSTREAM;
    return 1;
}

void sol_embed_cancel(struct sol_request *r)
{
    sol_embed_split_cancel(r->embed);
}

int sol_embed_running(const struct sol_request *r)
{
    return r->embed && r->embed->running > 0;
}

void sol_embed_free(struct sol_request *r)
{
    sol_embed_split_free(r->embed);
    r->embed = NULL;
}

static enum sol_take embed_take(struct sol_request *r)
{
    return (enum sol_take)sol_embed_take(r);
}

const struct sol_req_kind sol_embed_kind = {
    .name = "embed",
    .take = embed_take,
    .running = sol_embed_running,
    .cancel = sol_embed_cancel,
    .free = sol_embed_free,
    .keeps_inputs = 1,
};
