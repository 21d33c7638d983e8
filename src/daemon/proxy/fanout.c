/*
 * fanout.c - requests that go to several nodes at once: /api/pull,
 * /api/delete and /api/copy change what a node has, so they are sent to
 * every routable node (or only the one named by X-Sollol-Node).
 *
 * Streamed pulls give one progress summed over the nodes (summed_progress),
 * and end with {"status":"success"} only when every node succeeded;
 * otherwise with an error line naming the nodes that failed.
 * Non-streamed requests answer once all nodes have: success when no node
 * failed (a node that simply lacks the model, 404, does not count as a
 * failure when another node succeeded), 404 when none had the model.
 *
 * Legs do not take balancer slots: these are administrative requests whose
 * targets are chosen by the operator, not by load.
 */
#include "proxy/fanout.h"

#include "proxy/request_priv.h"

#include "base/compat.h"
#include "daemon-t.h"
#include "nodes/health.h"
#include "sollol/container_of.h"
#include "sollol/leg.h"
#include "base/http_reply.h"
#include "sollol/json_scan.h"
#include "sollol/log.h"
#include "base/ndjson.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define LEG_BODY_LIMIT (64 * 1024) /* non-streamed answers are tiny JSON */
#define LINE_LIMIT     (64 * 1024)

struct sol_fanout_leg {
    struct sol_request *r;
    struct sol_node *node;
    struct sol_leg up; /* body: streamed, the partial line; else the whole answer */
    int saw_success;
    char error[200];
    /* After the node succeeded: the re-probes of what it has (tags, ps)
     * that the final answer waits for, so the client's next request sees
     * the change (health.h). */
    struct sol_health_waiter wait[2];
    unsigned waiting;
};

static int streams(const struct sol_request *r)
{
    /* Ollama answers an unload with one JSON document, stream or not. */
    return !r->unload && sol_req_streams(r);
}

/*
 * A streamed pull on several nodes: each node reports each layer (digest)
 * as it goes, and their lines interleaved made a client's progress bar
 * jump back and forth. The client gets one progress per digest instead,
 * in Ollama's shape: total = the layer's size x the nodes pulling,
 * completed = the sum of their completed (never less than the last one
 * sent), plus "node" (whose line it was) and "nodes" (each node's own
 * completed). A step without a digest ("pulling manifest", "verifying
 * sha256 digest", "writing manifest") is given once, when the first node
 * reaches it. Returns 0 when the line is not one of those (it is then
 * forwarded as it is, with its node).
 */
static int summed_progress(struct sol_fanout_leg *leg, const char *line, size_t len)
{
    struct sol_request *r = leg->r;
    struct sol_json_span obj = {line, len, SOL_JSON_OBJECT}, v;
    char status[256], digest[96];
    if (!sol_json_object_get(&obj, "status", &v) || v.type != SOL_JSON_STRING ||
        sol_json_string_decode(&v, status, sizeof status) < 0)
        return 0;
    struct sol_buf *out = &r->stream;
    if (!sol_json_object_get(&obj, "digest", &v)) {
        if (sol_pull_progress_first_status(r->pull, status)) {
            sol_buf_append_str(out, "{\"status\":");
            sol_buf_append_json_string(out, status, strlen(status));
            sol_buf_append_str(out, ",\"node\":");
            sol_buf_append_json_string(out, leg->node->name, strlen(leg->node->name));
            sol_buf_append_str(out, "}\n");
            r->last_byte = '\n';
            sol_req_resume(r);
        }
        return 1;
    }
    long long total = 0, completed = 0;
    if (v.type != SOL_JSON_STRING || sol_json_string_decode(&v, digest, sizeof digest) < 0)
        return 0;
    if (sol_json_object_get(&obj, "total", &v) &&
        (v.type != SOL_JSON_NUMBER || sol_json_number_int64(&v, &total) < 0 || total < 0))
        return 0;
    if (sol_json_object_get(&obj, "completed", &v) &&
        (v.type != SOL_JSON_NUMBER || sol_json_number_int64(&v, &completed) < 0 || completed < 0))
        return 0;
    unsigned idx = (unsigned)(leg - r->legs);
    struct sol_pull_digest *d =
        sol_pull_progress_update(r->pull, idx, digest, (uint64_t)total, (uint64_t)completed);
    if (!d)
        return 0;
    uint64_t sum_total, sum_done;
    sol_pull_progress_sums(r->pull, d, &sum_total, &sum_done);
    sol_buf_append_str(out, "{\"status\":");
    sol_buf_append_json_string(out, status, strlen(status));
    sol_buf_append_str(out, ",\"digest\":");
    sol_buf_append_json_string(out, digest, strlen(digest));
    if (sum_total) /* omitempty, as Ollama's ProgressResponse */
        sol_buf_appendf(out, ",\"total\":%llu", (unsigned long long)sum_total);
    if (sum_done)
        sol_buf_appendf(out, ",\"completed\":%llu", (unsigned long long)sum_done);
    sol_buf_append_str(out, ",\"node\":");
    sol_buf_append_json_string(out, leg->node->name, strlen(leg->node->name));
    sol_buf_append_str(out, ",\"nodes\":[");
    for (unsigned i = 0; i < r->n_legs; i++) {
        const char *name = r->legs[i].node->name;
        sol_buf_append_str(out, i ? ",{\"node\":" : "{\"node\":");
        sol_buf_append_json_string(out, name, strlen(name));
        sol_buf_appendf(out, ",\"completed\":%llu,\"total\":%llu}",
                        (unsigned long long)d->completed[i], (unsigned long long)d->size);
    }
    sol_buf_append_str(out, "]}\n");
    r->last_byte = '\n';
    sol_req_resume(r);
    return 1;
}

/* Forwards one progress line with the node's name added. */
static void forward_line(void *ud, const char *line, size_t len)
{
    struct sol_fanout_leg *leg = ud;
    struct sol_request *r = leg->r;
    struct sol_ndjson_progress st;
    sol_ndjson_progress(line, len, &st, leg->error, sizeof leg->error);
    line += st.start;
    len = st.len - st.start;
    if (len == 0)
        return;
    if (st.success) {
        leg->saw_success = 1;
        return; /* the daemon sends the one final success line itself */
    }
    struct sol_buf *out = &r->stream;
    if (st.is_object && r->pull && !st.has_error &&
        summed_progress(leg, line, len)) /* one progress for all nodes */
        return;
    if (st.is_object) {
        sol_buf_append_str(out, "{\"node\":");
        sol_buf_append_json_string(out, leg->node->name, strlen(leg->node->name));
        if (len > 2)
            sol_buf_append_str(out, ",");
        sol_buf_append(out, line + 1, len - 1);
    } else {
        sol_buf_append(out, line, len);
    }
    sol_buf_append_str(out, "\n");
    r->last_byte = '\n';
    sol_req_resume(r);
}

static size_t on_leg_body(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_fanout_leg *leg = ud;
    size_t n = size * nmemb;
    if (leg->r->client_gone)
        return 0;
    if (!streams(leg->r) || leg->up.status != 200) {
        if (leg->up.body.len + n > LEG_BODY_LIMIT)
            return 0;
        return sol_buf_append(&leg->up.body, p, n) < 0 ? 0 : n;
    }
    return sol_ndjson_feed(&leg->up.body, LINE_LIMIT, p, n, forward_line, leg) < 0 ? 0 : n;
}

static size_t on_leg_header(char *p, size_t size, size_t nmemb, void *ud)
{
    struct sol_fanout_leg *leg = ud;
    size_t n = size * nmemb;
    if (n <= 2 && (n == 0 || p[0] == '\r' || p[0] == '\n'))
        curl_easy_getinfo(leg->up.xfer.easy, CURLINFO_RESPONSE_CODE, &leg->up.status);
    return n;
}

/* The message a failed leg contributes to the final error. */
static void leg_failure(struct sol_fanout_leg *leg, char *out, size_t len)
{
    if (leg->error[0])
        snprintf(out, len, "%s (%s)", leg->node->name, leg->error);
    else if (leg->up.status && leg->up.status != 200)
        snprintf(out, len, "%s (answered %ld)", leg->node->name, leg->up.status);
    else
        snprintf(out, len, "%s (no success reported)", leg->node->name);
}

static int leg_succeeded(const struct sol_fanout_leg *leg);

/* Every leg has ended: the final line, or the whole answer. */
static void finish(struct sol_request *r)
{
    unsigned ok = 0, missing = 0, failed = 0;
    struct sol_buf names = {0};
    struct sol_fanout_leg *first_missing = NULL;
    int is_pull = strcmp(r->path, "/api/pull") == 0;
    for (unsigned i = 0; i < r->n_legs; i++) {
        struct sol_fanout_leg *leg = &r->legs[i];
        if (leg_succeeded(leg)) {
            ok++;
        } else if (leg->up.status == 404 && !is_pull) {
            missing++;
            if (!first_missing)
                first_missing = leg;
        } else {
            char one[300];
            leg_failure(leg, one, sizeof one);
            sol_buf_append_str(&names, failed++ ? ", " : "");
            sol_buf_append_str(&names, one);
        }
    }
    char msg[1024];
    if (failed)
        snprintf(msg, sizeof msg, "%s failed on %u of %u node(s): %.*s",
                 r->unload ? "unload" : r->path + 5, failed, r->n_legs,
                 (int)(names.len < 900 ? names.len : 900), names.data ? names.data : "");
    sol_buf_free(&names);
    if (r->unload && !failed && ok) {
        /* Every node that had it let it go: the table says so now (the
         * node drops the runner asynchronously, a probe could still list
         * it), and the client gets a node's own "done_reason":"unload". */
        struct sol_fanout_leg *first_ok = NULL;
        for (unsigned i = 0; i < r->n_legs; i++)
            if (leg_succeeded(&r->legs[i])) {
                sol_health_model_unloaded(r->legs[i].node, r->score.model_key);
                if (!first_ok)
                    first_ok = &r->legs[i];
            }
        r->status = 200;
        snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
        if (first_ok && first_ok->up.body.data) /* ok > 0: there is one */
            sol_buf_append(&r->stream, first_ok->up.body.data, first_ok->up.body.len);
        r->content_length = (long long)sol_buf_pending(&r->stream);
        r->upstream_done = 1;
        SOL_INFO("request %s: %s unloaded on %u node(s)", r->id, r->model, ok);
        sol_req_commit(r);
        sol_req_resume(r);
        return;
    }

    if (streams(r)) {
        if (failed) {
            sol_error_body(&r->stream, 500, 0, msg);
            sol_buf_append_str(&r->stream, "\n");
        } else {
            sol_buf_append_str(&r->stream, "{\"status\":\"success\"}\n");
        }
    } else if (failed) {
        r->status = 500;
        snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
        sol_error_body(&r->stream, 500, 0, msg);
    } else if (ok == 0 && first_missing) {
        /* No node had it: pass the node's own 404 through. */
        r->status = 404;
        snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
        sol_buf_append(&r->stream, first_missing->up.body.data, first_missing->up.body.len);
    } else {
        r->status = 200;
        if (is_pull) {
            snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_JSON);
            sol_buf_append_str(&r->stream, "{\"status\":\"success\"}");
        }
    }
    if (!streams(r))
        r->content_length = (long long)sol_buf_pending(&r->stream);
    r->upstream_done = 1;
    SOL_INFO("request %s: %s on %u node(s): %u ok, %u without the model, %u failed", r->id, r->path,
             r->n_legs, ok, missing, failed);
    sol_req_commit(r);
    sol_req_resume(r);
}

static int leg_succeeded(const struct sol_fanout_leg *leg)
{
    return leg->up.status >= 200 && leg->up.status < 300 && !leg->error[0] &&
           (strcmp(leg->r->path, "/api/pull") != 0 || !streams(leg->r) || leg->saw_success);
}

static int any_waiting(const struct sol_request *r)
{
    for (unsigned i = 0; i < r->n_legs; i++)
        if (r->legs[i].waiting)
            return 1;
    return 0;
}

/* The answer ends when every leg has, and every re-probe they asked for is in. */
static void maybe_finish(struct sol_request *r)
{
    if (r->legs_running == 0 && !r->client_gone && !r->upstream_done && !any_waiting(r))
        finish(r);
}

static void refreshed(struct sol_fanout_leg *leg)
{
    leg->waiting--;
    maybe_finish(leg->r);
}

static void on_tags_refreshed(struct sol_health_waiter *w)
{
    refreshed((struct sol_fanout_leg *)((char *)w - offsetof(struct sol_fanout_leg, wait)));
}

static void on_ps_refreshed(struct sol_health_waiter *w)
{
    refreshed((struct sol_fanout_leg *)((char *)w - offsetof(struct sol_fanout_leg, wait) -
                                        sizeof(struct sol_health_waiter)));
}

/*
 * A node changed what it has (pull, copy: a model more; delete: one less,
 * and not loaded either): the table must say so before the client hears
 * of the success, or its next request is routed on stale facts (a chat
 * for the model just pulled answered "not found on any node" for up to a
 * tags interval). The health side re-reads the node (it alone writes
 * model facts, from what the node says) and the answer waits for that.
 */
static void refresh_node(struct sol_fanout_leg *leg)
{
    struct sol_health *h = &leg->r->d->health;
    leg->wait[0].done = on_tags_refreshed;
    leg->wait[1].done = on_ps_refreshed;
    if (sol_health_refresh(h, leg->node, SOL_HEALTH_TAGS, &leg->wait[0]) == 0)
        leg->waiting++;
    if (strcmp(leg->r->path, "/api/delete") == 0 &&
        sol_health_refresh(h, leg->node, SOL_HEALTH_PS, &leg->wait[1]) == 0)
        leg->waiting++;
}

static void on_leg_done(struct sol_curl_xfer *x, CURLcode rc)
{
    struct sol_fanout_leg *leg = SOL_CONTAINER_OF(x, struct sol_fanout_leg, up.xfer);
    struct sol_request *r = leg->r;
    leg->up.running = 0;
    r->legs_running--;
    if (rc != CURLE_OK && !leg->error[0])
        snprintf(leg->error, sizeof leg->error, "%s", curl_easy_strerror(rc));
    else if (streams(r) && leg->up.status == 200)
        sol_ndjson_finish(&leg->up.body, forward_line, leg); /* last line without newline */
    if (leg->up.status != 200 && leg->up.body.len && !leg->error[0]) {
        /* An Ollama error document: keep its message for the summary. */
        char err[8];
        struct sol_ndjson_progress st;
        if (leg->up.status != 404 &&
            sol_json_scan_object(leg->up.body.data, leg->up.body.len, 16, NULL, NULL, err,
                                 sizeof err) == SOL_JSON_OK)
            sol_ndjson_progress(leg->up.body.data, leg->up.body.len, &st, leg->error,
                                sizeof leg->error);
    }
    if (!r->client_gone && !r->unload && leg_succeeded(leg))
        refresh_node(leg);
    maybe_finish(r);
}

static int start_leg(struct sol_request *r, struct sol_fanout_leg *leg)
{
    struct sol_daemon *d = r->d;
    struct sol_node *n = leg->node;
    CURL *e = leg->up.xfer.easy = curl_easy_init();
    if (!e)
        return -1;
    if (sol_req_prepare_upstream(e, n, r->upstream_path, r->client_headers, &leg->up.headers) < 0)
        return -1;
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, r->method);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, r->body.data ? r->body.data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body.len);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->cfg->connect_timeout_ms);
    /* A pull may run for hours; what must not happen is silence. */
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)(d->cfg->idle_timeout_ms / 1000 + 1));
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_leg_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, leg);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_leg_body);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, leg);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (sol_leg_start(&leg->up, &d->curl, on_leg_done) < 0)
        return -1;
    r->legs_running++;
    return 0;
}

/*
 * A configured node that is not up gets nothing, yet the final line says
 * success: a streamed answer says first which nodes were left out (a
 * progress line, shown by `ollama pull` like any other), and the log says
 * it for every kind of fan-out. Hidden nodes (removed by a reload) and the
 * sharded path's virtual node are not the operator's nodes to report.
 */
static void note_skipped_nodes(struct sol_request *r)
{
    const struct sol_node_table *t = &r->d->table;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        if (n->state == SOL_NODE_UP || n->external || n->removed)
            continue;
        const char *why = n->state == SOL_NODE_DOWN ? "down" : "misconfigured";
        SOL_WARN("request %s: %s %s: node %s is %s, not sent there", r->id, r->method, r->path,
                 n->name, why);
        if (!streams(r))
            continue;
        struct sol_buf *out = &r->stream;
        sol_buf_append_str(out, "{\"node\":");
        sol_buf_append_json_string(out, n->name, strlen(n->name));
        sol_buf_appendf(out, ",\"status\":\"skipped: node is %s\"}\n", why);
        r->last_byte = '\n';
    }
}

int sol_fanout_can_unload(const struct sol_request *r)
{
    const struct sol_node_table *t = &r->d->table;
    for (unsigned i = 0; i < t->count; i++) {
        const struct sol_node *n = t->nodes[i];
        const struct sol_node_model *m = sol_node_find_model(n, r->score.model_key);
        if (n->state == SOL_NODE_UP && !n->external && m && !m->gone && (m->installed || m->loaded))
            return 1;
    }
    return 0;
}

int sol_fanout_start(struct sol_request *r)
{
    struct sol_node_table *t = &r->d->table;
    r->legs = calloc(t->count ? t->count : 1, sizeof *r->legs);
    if (!r->legs) {
        r->fail_status = 500;
        snprintf(r->last_error, sizeof r->last_error, "out of memory");
        return -1;
    }
    for (unsigned i = 0; i < t->count; i++) {
        struct sol_node *n = t->nodes[i];
        if (r->pinned_node >= 0 ? (int)i != r->pinned_node : n->state != SOL_NODE_UP || n->external)
            continue;
        if (r->unload) { /* only where it is, or may be, loaded */
            const struct sol_node_model *m = sol_node_find_model(n, r->score.model_key);
            if (!m || m->gone || !(m->installed || m->loaded))
                continue;
        }
        struct sol_fanout_leg *leg = &r->legs[r->n_legs++];
        leg->r = r;
        leg->node = n;
    }
    if (r->n_legs == 0) {
        r->fail_status = 503;
        snprintf(r->last_error, sizeof r->last_error, "no node is up to send %s to", r->path);
        return -1;
    }
    snprintf(r->node_name, sizeof r->node_name, "%s", r->n_legs == 1 ? r->legs[0].node->name : "*");
    if (streams(r) && strcmp(r->path, "/api/pull") == 0) {
        r->pull = calloc(1, sizeof *r->pull); /* NULL: each node's lines as they come */
        if (r->pull)
            r->pull->n_legs = r->n_legs;
    }
    if (streams(r)) {
        /* Progress flows as it comes: answer now. */
        r->status = 200;
        snprintf(r->content_type, sizeof r->content_type, "%s", SOL_CT_NDJSON);
    }
    if (r->pinned_node < 0)
        note_skipped_nodes(r);
    for (unsigned i = 0; i < r->n_legs; i++) {
        if (start_leg(r, &r->legs[i]) < 0) {
            sol_fanout_cancel(r);
            r->fail_status = 500;
            snprintf(r->last_error, sizeof r->last_error, "cannot start a transfer to node %s",
                     r->legs[i].node->name);
            return -1;
        }
    }
    r->state = RS_UPSTREAM;
    if (streams(r))
        sol_req_commit(r);
    return 0;
}

void sol_fanout_cancel(struct sol_request *r)
{
    for (unsigned i = 0; i < r->n_legs; i++) {
        struct sol_fanout_leg *leg = &r->legs[i];
        sol_health_unwait(&leg->wait[0]);
        sol_health_unwait(&leg->wait[1]);
        leg->waiting = 0;
        if (sol_leg_cancel(&leg->up, &r->d->curl))
            r->legs_running--;
    }
}

void sol_fanout_free(struct sol_request *r)
{
    for (unsigned i = 0; i < r->n_legs; i++) {
        struct sol_fanout_leg *leg = &r->legs[i];
        sol_health_unwait(&leg->wait[0]);
        sol_health_unwait(&leg->wait[1]);
        sol_leg_free(&leg->up);
    }
    free(r->legs);
    r->legs = NULL;
    r->n_legs = 0;
    if (r->pull) {
        sol_pull_progress_free(r->pull);
        free(r->pull);
        r->pull = NULL;
    }
}

/*
 * `ollama stop` sends {"model", "keep_alive": 0} to /api/generate (a chat
 * with no messages does the same): Ollama unloads the model and answers
 * done_reason "unload". On a cluster that is every node that has it
 * loaded, so it is fanned out like a delete.
 */
static int is_unload(const struct sol_request *r)
{
    int generate = strcmp(r->path, "/api/generate") == 0;
    if ((!generate && strcmp(r->path, "/api/chat") != 0) || !r->model[0] ||
        !sol_compat_keep_alive_zero(&r->info.keep_alive))
        return 0;
    if (generate) { /* req.Prompt == "" */
        const struct sol_json_span *p = &r->info.prompt;
        return !p->p || p->type == SOL_JSON_NULL || (p->type == SOL_JSON_STRING && p->len == 2);
    }
    const struct sol_json_span *m = &r->info.messages; /* len(req.Messages) == 0 */
    if (!m->p || m->type == SOL_JSON_NULL)
        return 1;
    if (m->type != SOL_JSON_ARRAY)
        return 0;
    for (size_t i = 1; i + 1 < m->len; i++)
        if (m->p[i] != ' ' && m->p[i] != '\t' && m->p[i] != '\n' && m->p[i] != '\r')
            return 0;
    return 1;
}

static enum sol_take fanout_take(struct sol_request *r)
{
    r->unload = is_unload(r) && sol_fanout_can_unload(r);
    if (r->route->kind != SOL_ROUTE_FANOUT && !r->unload)
        return SOL_TAKE_PASS;
    return sol_fanout_start(r) < 0 ? SOL_TAKE_FAILED : SOL_TAKE_SERVED;
}

static int fanout_running(const struct sol_request *r)
{
    return r->legs_running != 0;
}

const struct sol_req_kind sol_fanout_kind = {
    .name = "fanout",
    .take = fanout_take,
    .running = fanout_running,
    .cancel = sol_fanout_cancel,
    .free = sol_fanout_free,
    .keeps_inputs = 1,
};
