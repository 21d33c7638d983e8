/*
 * fanout.c - requests that go to several nodes at once: /api/pull,
 * /api/delete and /api/copy change what a node has, so they are sent to
 * every routable node (or only the one named by X-Sollol-Node).
 *
 * Streamed pulls interleave the nodes' progress lines as they arrive, each
 * with a "node" field, and end with {"status":"success"} only when every
 * node succeeded; otherwise with an error line naming the nodes that failed.
 * Non-streamed requests answer once all nodes have: success when no node
 * failed (a node that simply lacks the model, 404, does not count as a
 * failure when another node succeeded), 404 when none had the model.
 *
 * Legs do not take balancer slots: these are administrative requests whose
 * targets are chosen by the operator, not by load.
 */
#include "proxy/fanout.h"

#include "proxy/request_priv.h"

#include "daemon-t.h"
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
};

static int streams(const struct sol_request *r)
{
    return sol_req_streams(r);
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

/* Every leg has ended: the final line, or the whole answer. */
static void finish(struct sol_request *r)
{
    unsigned ok = 0, missing = 0, failed = 0;
    struct sol_buf names = {0};
    struct sol_fanout_leg *first_missing = NULL;
    int is_pull = strcmp(r->path, "/api/pull") == 0;
    for (unsigned i = 0; i < r->n_legs; i++) {
        struct sol_fanout_leg *leg = &r->legs[i];
        int success = leg->up.status >= 200 && leg->up.status < 300 && !leg->error[0] &&
                      (!is_pull || !streams(r) || leg->saw_success);
        if (success) {
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
        snprintf(msg, sizeof msg, "%s failed on %u of %u node(s): %.*s", r->path + 5, failed,
                 r->n_legs, (int)(names.len < 900 ? names.len : 900), names.data ? names.data : "");
    sol_buf_free(&names);

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
    if (r->legs_running == 0 && !r->client_gone)
        finish(r);
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
        if (sol_leg_cancel(&leg->up, &r->d->curl))
            r->legs_running--;
    }
}

void sol_fanout_free(struct sol_request *r)
{
    for (unsigned i = 0; i < r->n_legs; i++) {
        struct sol_fanout_leg *leg = &r->legs[i];
        sol_leg_free(&leg->up);
    }
    free(r->legs);
    r->legs = NULL;
    r->n_legs = 0;
}

static enum sol_take fanout_take(struct sol_request *r)
{
    if (r->route->kind != SOL_ROUTE_FANOUT)
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
