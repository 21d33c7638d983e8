/*
 * Unit test of the Prometheus exposition (metrics.c): every family rendered
 * with HELP and TYPE, every sample after its family's TYPE, label values
 * escaped (quotes, backslashes, newlines, invalid UTF-8) for hostile node
 * and model names, histogram buckets cumulative ending in +Inf = _count,
 * unknown models and models past the cap recorded as "other", the
 * request-counter table folding into "other" when full without losing counts,
 * token counters by node and model.
 */
#include "nodes/health.h"
#include "base/metrics.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static const char *const families[][2] = {
    {"sollol_requests_total", "counter"},
    {"sollol_request_duration_seconds", "histogram"},
    {"sollol_request_ttfb_seconds", "histogram"},
    {"sollol_request_ttft_seconds", "histogram"},
    {"sollol_request_failovers_total", "counter"},
    {"sollol_queue_wait_seconds", "histogram"},
    {"sollol_response_bytes_total", "counter"},
    {"sollol_request_retries_total", "counter"},
    {"sollol_refused_requests_total", "counter"},
    {"sollol_connections_cut_total", "counter"},
    {"sollol_generated_tokens_total", "counter"},
    {"sollol_prompt_tokens_total", "counter"},
    {"sollol_node_up", "gauge"},
    {"sollol_node_state", "gauge"},
    {"sollol_node_probe_rtt_seconds", "gauge"},
    {"sollol_node_breaker_state", "gauge"},
    {"sollol_node_breaker_opens_total", "counter"},
    {"sollol_node_in_flight", "gauge"},
    {"sollol_node_max_concurrent", "gauge"},
    {"sollol_node_attempts_total", "counter"},
    {"sollol_node_attempt_failures_total", "counter"},
    {"sollol_node_model_loaded", "gauge"},
    {"sollol_node_model_generate_tokens_per_second", "gauge"},
    {"sollol_node_model_prompt_tokens_per_second", "gauge"},
    {"sollol_build_info", "gauge"},
    {"sollol_uptime_seconds", "gauge"},
    {"sollol_requests_in_flight", "gauge"},
    {"sollol_retries_total", "counter"},
    {"sollol_queue_length", "gauge"},
    {"sollol_queue_oldest_wait_seconds", "gauge"},
    {"sollol_queue_enqueued_total", "counter"},
    {"sollol_queue_dispatched_total", "counter"},
    {"sollol_queue_expired_total", "counter"},
    {"sollol_queue_rejected_total", "counter"},
    {"sollol_queue_removed_total", "counter"},
    {"sollol_affinity_hits_total", "counter"},
    {"sollol_affinity_misses_total", "counter"},
    {"sollol_affinity_evictions_total", "counter"},
    {"sollol_affinity_entries", "gauge"},
    {"sollol_affinity_capacity", "gauge"},
    {"process_start_time_seconds", "gauge"},
    {"process_virtual_memory_bytes", "gauge"},
    {"process_resident_memory_bytes", "gauge"},
    {"process_open_fds", "gauge"},
};

static char *render(const struct sol_metrics *m, const struct sol_metrics_view *v)
{
    struct sol_buf b = {0};
    CHECK(sol_metrics_render(m, v, &b) == 0, "render");
    char *s = strdup(sol_buf_cstr(&b));
    sol_buf_free(&b);
    return s;
}

/* Sum of the values of samples whose line starts with `prefix`
 * (name plus the beginning of its labels). */
static double sum_lines(const char *text, const char *prefix, int *lines)
{
    double sum = 0;
    size_t pl = strlen(prefix);
    *lines = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        if (!eol)
            break;
        if (strncmp(p, prefix, pl) == 0) {
            const char *sp = eol;
            while (sp > p && sp[-1] != ' ')
                sp--;
            sum += strtod(sp, NULL);
            (*lines)++;
        }
        p = eol + 1;
    }
    return sum;
}

/* Structural check of the whole text: each line is "# HELP name text",
 * "# TYPE name type" or a sample whose family was declared before it, and
 * each family has one HELP and one TYPE. */
static void check_structure(const char *text)
{
    char declared[128][80];
    int n_declared = 0, n_help = 0, bad = 0;
    CHECK(text[strlen(text) - 1] == '\n', "ends with a newline");
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = (size_t)(eol - p);
        char name[80] = "";
        if (strncmp(p, "# HELP ", 7) == 0) {
            n_help++;
        } else if (strncmp(p, "# TYPE ", 7) == 0) {
            CHECK(sscanf(p + 7, "%79s", name) == 1, "type line");
            const char *type = p + 7 + strlen(name) + 1;
            size_t tl = len - 8 - strlen(name);
            CHECK((tl == 7 && !strncmp(type, "counter", 7)) ||
                      (tl == 5 && !strncmp(type, "gauge", 5)) ||
                      (tl == 9 && !strncmp(type, "histogram", 9)),
                  "type of %s", name);
            CHECK(n_declared < 128, "too many families");
            if (n_declared < 128)
                snprintf(declared[n_declared++], sizeof declared[0], "%s", name);
        } else {
            size_t nl = strcspn(p, "{ ");
            CHECK(nl > 0 && nl < sizeof name, "sample name");
            memcpy(name, p, nl < sizeof name ? nl : sizeof name - 1);
            name[nl < sizeof name ? nl : sizeof name - 1] = '\0';
            int found = 0;
            for (int i = 0; i < n_declared && !found; i++) {
                size_t dl = strlen(declared[i]);
                if (strcmp(name, declared[i]) == 0)
                    found = 1;
                else if (strncmp(name, declared[i], dl) == 0 &&
                         (!strcmp(name + dl, "_bucket") || !strcmp(name + dl, "_sum") ||
                          !strcmp(name + dl, "_count")))
                    found = 1;
            }
            if (!found && bad++ < 5)
                CHECK(found, "sample %s before its TYPE", name);
            /* No raw control characters in a sample line. */
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)p[i] < 0x20 && bad++ < 5)
                    CHECK(0, "control character in %.*s", (int)len, p);
        }
        p = eol + 1;
    }
    CHECK(n_help == n_declared, "%d HELP for %d TYPE", n_help, n_declared);
}

/* Buckets of one histogram series: non-decreasing, last le="+Inf" equal to _count. */
static void check_histogram(const char *text, const char *name, const char *labels_prefix)
{
    char prefix[256], count_line[256];
    snprintf(prefix, sizeof prefix, "%s_bucket{%s", name, labels_prefix);
    snprintf(count_line, sizeof count_line, "%s_count%s%s%s", name, *labels_prefix ? "{" : "",
             labels_prefix, *labels_prefix ? "}" : "");
    double prev = -1, last = -1;
    int buckets = 0, inf_last = 0;
    for (const char *p = text; *p;) {
        const char *eol = strchr(p, '\n');
        if (strncmp(p, prefix, strlen(prefix)) == 0) {
            const char *sp = eol;
            while (sp[-1] != ' ')
                sp--;
            double v = strtod(sp, NULL);
            CHECK(v >= prev, "%s: bucket %.*s below the previous one", name, (int)(eol - p), p);
            prev = last = v;
            buckets++;
            inf_last = strstr(p, "le=\"+Inf\"") && strstr(p, "le=\"+Inf\"") < eol;
        }
        p = eol + 1;
    }
    int n;
    double count = sum_lines(text, count_line, &n);
    CHECK(buckets > 1, "%s{%s}: %d buckets", name, labels_prefix, buckets);
    CHECK(inf_last, "%s{%s}: last bucket is +Inf", name, labels_prefix);
    CHECK(n == 1 && count == last, "%s{%s}: +Inf %g != count %g", name, labels_prefix, last, count);
}

static const char hostile_node[] = "gpu \"x\"\\y\nz";
static const char hostile_node_escaped[] = "node=\"gpu \\\"x\\\"\\\\y\\nz\"";
static const char hostile_model[] = "evil\"\\\n\xff:latest";
static const char hostile_model_escaped[] = "model=\"evil\\\"\\\\\\n\xef\xbf\xbd:latest\"";

int main(void)
{
    struct sol_node a = {.name = (char *)hostile_node,
                         .state = SOL_NODE_UP,
                         .rtt_ms = 2.5,
                         .max_concurrent = 4,
                         .in_flight = 1,
                         .requests_total = 7};
    struct sol_node b = {.name = "b", .state = SOL_NODE_DOWN, .max_concurrent = 2};
    a.index = 0;
    b.index = 1;
    b.breaker.state = SOL_BREAKER_OPEN;
    b.breaker.open_until_ms = 1000000;
    b.breaker.opens_total = 3;
    struct sol_node_model *nm = sol_node_model_get(&a, "llama3.2:latest");
    nm->installed = nm->loaded = 1;
    nm->gen_tps = 42.5;
    nm->prompt_tps = 1000;
    nm->samples = 3;
    nm = sol_node_model_get(&a, hostile_model);
    nm->installed = 1;
    nm = sol_node_model_get(&b, "qwen:7b");
    nm->installed = 1;
    struct sol_node *nodes[] = {&a, &b};
    struct sol_node_table t = {nodes, 2};

    struct sol_metrics m;
    CHECK(sol_metrics_init(&m, 2) == 0, "init");
    const struct sol_route *chat = sol_route_find("/api/chat");
    const struct sol_route *generic = sol_route_find("/v1/responses");
    CHECK(chat && generic, "routes");

    /* 3 ok chats on the hostile node, one streamed slowly. */
    for (int i = 0; i < 3; i++)
        sol_metrics_record(&m, &t,
                           &(struct sol_metrics_sample){.route = chat,
                                                        .model = "llama3.2:latest",
                                                        .node = hostile_node,
                                                        .status = 200,
                                                        .duration_s = i == 2 ? 7.0 : 0.02,
                                                        .ttfb_s = 0.003,
                                                        .ttft_s = i == 2 ? 0.2 : 0,
                                                        .queue_s = i * 0.5,
                                                        .waited = 1,
                                                        .attempts = i == 1 ? 2 : 1,
                                                        .bytes_out = 100,
                                                        .eval_count = 10,
                                                        .prompt_eval_count = 5});
    /* A hostile model name some node knows; an unknown model; no model at all. */
    sol_metrics_record(&m, &t,
                       &(struct sol_metrics_sample){.route = chat,
                                                    .model = hostile_model,
                                                    .node = hostile_node,
                                                    .status = 200,
                                                    .duration_s = 0.1,
                                                    .eval_count = 1});
    sol_metrics_record(
        &m, &t,
        &(struct sol_metrics_sample){
            .route = chat, .model = "nope:latest", .node = "", .status = 404, .duration_s = 0.001});
    sol_metrics_record(
        &m, &t,
        &(struct sol_metrics_sample){
            .route = generic, .model = "", .node = "", .status = 400, .duration_s = 0.001});
    /* A node name that is not in the table, a status of 0 (client gone). */
    sol_metrics_record(
        &m, &t,
        &(struct sol_metrics_sample){
            .route = chat, .model = "qwen:7b", .node = "*", .status = 0, .duration_s = 0.5});

    struct sol_metrics_view v = {.table = &t,
                                 .now_ms = 10,
                                 .uptime_s = 12.5,
                                 .requests_live = 1,
                                 .retries_total = 1,
                                 .process = 1};
    v.queue.length = 2;
    v.queue.enqueued_total = 9;
    v.queue.expired_total = 1;
    v.queue.rejected_total = 4;
    v.affinity_on = 1;
    v.affinity.hits = 6;
    v.affinity.misses = 8;
    v.affinity.capacity = 100;

    char *text = render(&m, &v);
    check_structure(text);
    /* SOLLOL_METRICS_DUMP=file: the exposition, to check with promtool by hand. */
    const char *dump = getenv("SOLLOL_METRICS_DUMP");
    FILE *df = dump ? fopen(dump, "w") : NULL;
    if (df) {
        fputs(text, df);
        fclose(df);
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        char line[160];
        snprintf(line, sizeof line, "\n# TYPE %s %s\n", families[i][0], families[i][1]);
        CHECK(strstr(text, line) != NULL, "family %s %s", families[i][0], families[i][1]);
        snprintf(line, sizeof line, "\n# HELP %s ", families[i][0]);
        CHECK(strstr(text, line) != NULL || strncmp(text, line + 1, strlen(line) - 1) == 0,
              "help of %s", families[i][0]);
    }

    int n;
    char pre[512];
    /* TTFT: only the streamed chat (0.2 s); failovers: the chat that took
     * two attempts and was answered. */
    CHECK(sum_lines(text, "sollol_request_ttft_seconds_count{route=\"/api/chat\"}", &n) == 1 &&
              n == 1,
          "ttft count");
    CHECK(sum_lines(text, "sollol_request_ttft_seconds_bucket{route=\"/api/chat\",le=\"0.1\"}",
                    &n) == 0 &&
              sum_lines(text, "sollol_request_ttft_seconds_bucket{route=\"/api/chat\",le=\"0.25\"}",
                        &n) == 1,
          "ttft bucket");
    CHECK(sum_lines(text, "sollol_request_failovers_total{route=\"/api/chat\"}", &n) == 1 && n == 1,
          "failovers");
    CHECK(sum_lines(text, "sollol_request_failovers_total{route=\"other\"}", &n) == 0,
          "no failover on the generic route");
    /* Escaping: the raw names never appear; the escaped forms do. */
    CHECK(strstr(text, hostile_node) == NULL, "raw hostile node name");
    CHECK(strstr(text, "\xff") == NULL, "invalid UTF-8 passed through");
    CHECK(strstr(text, hostile_node_escaped) != NULL, "escaped node name");
    CHECK(strstr(text, hostile_model_escaped) != NULL, "escaped model name");

    snprintf(pre, sizeof pre,
             "sollol_requests_total{route=\"/api/chat\",model=\"llama3.2:latest\",%s,code=\"2xx\"}",
             hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 3 && n == 1, "ok chats: %d lines", n);
    snprintf(pre, sizeof pre, "sollol_requests_total{route=\"/api/chat\",%s,%s,code=\"2xx\"}",
             hostile_model_escaped, hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 1 && n == 1, "hostile model series");
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"/api/chat\",model=\"other\",node=\"none\","
                    "code=\"4xx\"}",
                    &n) == 1,
          "unknown model is other");
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"other\",model=\"other\",node=\"none\","
                    "code=\"4xx\"}",
                    &n) == 1,
          "generic /v1 route is other");
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"/api/chat\",model=\"qwen:7b\",node=\"other\","
                    "code=\"none\"}",
                    &n) == 1,
          "unknown node and no status");
    CHECK(strstr(text, "nope") == NULL && strstr(text, "responses") == NULL &&
              strstr(text, "\"*\"") == NULL,
          "client input in labels");
    CHECK(sum_lines(text, "sollol_requests_total{", &n) == 7, "total requests");

    /* Histograms. */
    check_histogram(text, "sollol_request_duration_seconds", "route=\"/api/chat\"");
    check_histogram(text, "sollol_request_duration_seconds", "route=\"other\"");
    check_histogram(text, "sollol_request_ttfb_seconds", "route=\"/api/chat\"");
    check_histogram(text, "sollol_queue_wait_seconds", "");
    CHECK(sum_lines(text, "sollol_request_duration_seconds_count{route=\"/api/chat\"}", &n) == 6,
          "duration count");
    CHECK(sum_lines(text, "sollol_request_duration_seconds_bucket{route=\"/api/chat\",le=\"5\"}",
                    &n) == 5,
          "7 s is above le=5");
    CHECK(sum_lines(text, "sollol_request_duration_seconds_bucket{route=\"/api/chat\",le=\"10\"}",
                    &n) == 6,
          "7 s is below le=10");
    CHECK(sum_lines(text, "sollol_request_ttfb_seconds_count{route=\"/api/chat\"}", &n) == 3,
          "ttfb count");
    CHECK(sum_lines(text, "sollol_queue_wait_seconds_count ", &n) == 3, "queue wait count");
    CHECK(sum_lines(text, "sollol_queue_wait_seconds_sum ", &n) == 1.5, "queue wait sum");
    CHECK(sum_lines(text, "sollol_queue_wait_seconds_bucket{le=\"0.001\"}", &n) == 1,
          "queue bucket");
    CHECK(sum_lines(text, "sollol_request_retries_total{route=\"/api/chat\"}", &n) == 1,
          "retries by route");
    CHECK(sum_lines(text, "sollol_response_bytes_total{route=\"/api/chat\"}", &n) == 300, "bytes");

    /* Tokens by node and model. */
    snprintf(pre, sizeof pre, "sollol_generated_tokens_total{%s,model=\"llama3.2:latest\"}",
             hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 30, "generated tokens");
    snprintf(pre, sizeof pre, "sollol_prompt_tokens_total{%s,model=\"llama3.2:latest\"}",
             hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 15, "prompt tokens");
    CHECK(sum_lines(text, "sollol_generated_tokens_total{", &n) == 31, "tokens total");

    /* Nodes. */
    snprintf(pre, sizeof pre, "sollol_node_up{%s}", hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 1, "a up");
    CHECK(sum_lines(text, "sollol_node_up{node=\"b\"}", &n) == 0 && n == 1, "b down");
    CHECK(sum_lines(text, "sollol_node_state{node=\"b\",state=\"down\"}", &n) == 1, "b one-hot");
    CHECK(sum_lines(text, "sollol_node_state{node=\"b\",", &n) == 1 && n == 3, "one-hot of 3");
    CHECK(sum_lines(text, "sollol_node_breaker_state{node=\"b\"}", &n) == 1, "b breaker open");
    CHECK(sum_lines(text, "sollol_node_breaker_opens_total{node=\"b\"}", &n) == 3, "opens");
    snprintf(pre, sizeof pre, "sollol_node_probe_rtt_seconds{%s}", hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 0.0025, "rtt in seconds");
    snprintf(pre, sizeof pre, "sollol_node_in_flight{%s}", hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 1, "in flight");
    snprintf(pre, sizeof pre,
             "sollol_node_model_generate_tokens_per_second{%s,model=\"llama3.2:latest\"}",
             hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 42.5, "gen tps");
    CHECK(sum_lines(text, "sollol_node_model_loaded{node=\"b\",model=\"qwen:7b\"}", &n) == 0 &&
              n == 1,
          "installed, not loaded");

    /* Daemon and process. */
    CHECK(sum_lines(text, "sollol_uptime_seconds ", &n) == 12.5, "uptime");
    CHECK(sum_lines(text, "sollol_retries_total ", &n) == 1, "retries");
    CHECK(sum_lines(text, "sollol_queue_length ", &n) == 2, "queue length");
    CHECK(sum_lines(text, "sollol_queue_rejected_total ", &n) == 4, "rejected");
    CHECK(sum_lines(text, "sollol_queue_expired_total ", &n) == 1, "expired");
    CHECK(sum_lines(text, "sollol_affinity_hits_total ", &n) == 6, "hits");
    CHECK(sum_lines(text, "sollol_affinity_misses_total ", &n) == 8, "misses");
    CHECK(sum_lines(text, "process_resident_memory_bytes ", &n) > 0, "rss");
    CHECK(sum_lines(text, "process_open_fds ", &n) >= 3, "fds");
    CHECK(sum_lines(text, "process_start_time_seconds ", &n) > 1.5e9, "start time");
    free(text);

    /* A key restricted to llama3.2* (#14 item 10): no series names another
     * model, nor "other" (which may stand for any); node families whole. */
    char *globs[] = {"llama3.2*"};
    struct sol_auth_key restricted = {.name = "team", .models = globs, .n_models = 1};
    v.key = &restricted;
    text = render(&m, &v);
    check_structure(text);
    CHECK(strstr(text, "qwen") == NULL, "qwen hidden");
    CHECK(strstr(text, "evil") == NULL, "hostile model hidden");
    CHECK(strstr(text, "model=\"other\"") == NULL, "other hidden");
    snprintf(pre, sizeof pre,
             "sollol_requests_total{route=\"/api/chat\",model=\"llama3.2:latest\",%s,code=\"2xx\"}",
             hostile_node_escaped);
    CHECK(sum_lines(text, pre, &n) == 3 && n == 1, "own model's requests shown");
    CHECK(sum_lines(text, "sollol_node_model_loaded{", &n) == 1 && n == 1, "own model loaded");
    CHECK(sum_lines(text, "sollol_node_model_generate_tokens_per_second{", &n) == 42.5,
          "own model speed");
    CHECK(sum_lines(text, "sollol_node_up{", &n) == 1 && n == 2, "nodes shown");
    free(text);
    v.key = NULL;

    /* The model cap: 300 more models every node knows; past the cap, "other". */
    unsigned before = m.n_models;
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d:latest", i);
        sol_node_model_get(&b, name)->installed = 1;
        sol_metrics_record(
            &m, &t,
            &(struct sol_metrics_sample){
                .route = chat, .model = name, .node = "b", .status = 200, .duration_s = 0.01});
    }
    CHECK(m.n_models == SOL_METRICS_MAX_MODELS + 1, "model table full: %u", m.n_models);
    unsigned interned = SOL_METRICS_MAX_MODELS + 1 - before;
    text = render(&m, &v);
    check_structure(text);
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"/api/chat\",model=\"other\",node=\"b\","
                    "code=\"2xx\"}",
                    &n) == 300 - interned,
          "past the cap: other (%u interned)", interned);
    CHECK(strstr(text, "sollol_requests_total{route=\"/api/chat\",model=\"m299:latest\"") == NULL,
          "m299 past the cap");
    CHECK(strstr(text, "sollol_requests_total{route=\"/api/chat\",model=\"m0:latest\"") != NULL,
          "m0 within the cap");
    CHECK(sum_lines(text, "sollol_requests_total{", &n) == 307, "no request lost");
    free(text);

    /* Refusals by reason, every reason present from the start. */
    sol_metrics_refused(&m, sol_metrics_refusal_of(401, 1));
    sol_metrics_refused(&m, sol_metrics_refusal_of(429, 1));
    sol_metrics_refused(&m, sol_metrics_refusal_of(429, 1));
    sol_metrics_refused(&m, sol_metrics_refusal_of(429, 0));
    sol_metrics_refused(&m, sol_metrics_refusal_of(431, 0));
    sol_metrics_refused(&m, SOL_REFUSAL_KINDS); /* out of range: ignored */
    struct sol_metrics_view vr = v;
    vr.cut_slow_headers = 5;
    text = render(&m, &vr);
    check_structure(text);
    CHECK(sum_lines(text, "sollol_refused_requests_total{reason=\"rate_limited\"}", &n) == 2 &&
              sum_lines(text, "sollol_refused_requests_total{reason=\"unauthorized\"}", &n) == 1 &&
              sum_lines(text, "sollol_refused_requests_total{reason=\"too_many_connections\"}",
                        &n) == 1 &&
              sum_lines(text, "sollol_refused_requests_total{reason=\"headers_too_large\"}", &n) ==
                  1 &&
              sum_lines(text, "sollol_refused_requests_total{reason=\"forbidden\"}", &n) == 0 &&
              sum_lines(text, "sollol_refused_requests_total{", &n) == 5 && n == SOL_REFUSAL_KINDS,
          "refusals by reason");
    CHECK(sum_lines(text, "sollol_connections_cut_total{reason=\"slow_headers\"}", &n) == 5,
          "slow-header cuts");
    CHECK(sum_lines(text, "sollol_connections_cut_total{reason=\"slow_body\"}", &n) == 0 &&
              n == 1 &&
              sum_lines(text, "sollol_connections_cut_total{reason=\"no_progress\"}", &n) == 0 &&
              n == 1,
          "slow-body and no-progress cuts, present from the start");
    free(text);

    /* A node that joins after start (reload, discovery) gets its own label
     * and token counters; earlier "other" series keep their meaning. */
    struct sol_node late = {.name = "late", .state = SOL_NODE_UP, .max_concurrent = 1};
    late.index = 2;
    struct sol_node *grown[] = {&a, &b, &late};
    struct sol_node_table t3 = {grown, 3};
    sol_metrics_record(&m, &t3,
                       &(struct sol_metrics_sample){.route = chat,
                                                    .model = "qwen:7b",
                                                    .node = "late",
                                                    .status = 200,
                                                    .duration_s = 0.01,
                                                    .eval_count = 9,
                                                    .prompt_eval_count = 4});
    CHECK(m.n_nodes == 3, "counters grew to %u nodes", m.n_nodes);
    struct sol_metrics_view v3 = v;
    v3.table = &t3;
    text = render(&m, &v3);
    check_structure(text);
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"/api/chat\",model=\"qwen:7b\",node=\"late\","
                    "code=\"2xx\"}",
                    &n) == 1,
          "late node labelled by name");
    CHECK(sum_lines(text, "sollol_generated_tokens_total{node=\"late\",model=\"qwen:7b\"}", &n) ==
              9,
          "late node's tokens");
    CHECK(sum_lines(text,
                    "sollol_requests_total{route=\"/api/chat\",model=\"qwen:7b\",node=\"other\","
                    "code=\"none\"}",
                    &n) == 1,
          "the earlier unknown node is still other");
    CHECK(sum_lines(text, "sollol_requests_total{", &n) == 308, "no request lost");
    free(text);

    /* The series table: more label sets than it holds fold into
     * (route, other, other, code) without losing a count. */
    static struct sol_route fake[SOL_METRICS_MAX_ROUTES];
    uint64_t recorded = 308;
    for (unsigned r = 0; r < SOL_METRICS_MAX_ROUTES; r++) {
        fake[r] = (struct sol_route){.path = "/api/chat", .kind = SOL_ROUTE_PROXY};
        for (unsigned j = 1; j < m.n_models; j++) {
            sol_metrics_record(
                &m, &t,
                &(struct sol_metrics_sample){
                    .route = &fake[r], .model = m.model_names[j], .node = "b", .status = 500});
            recorded++;
        }
    }
    CHECK(m.n_series < SOL_METRICS_SERIES_CAP, "series %u", m.n_series);
    uint64_t sum = 0;
    for (unsigned i = 0; i < SOL_METRICS_SERIES_CAP; i++)
        sum += m.series[i].count;
    CHECK(sum == recorded, "%llu of %llu counted", (unsigned long long)sum,
          (unsigned long long)recorded);
    text = render(&m, &v);
    check_structure(text);
    free(text);

    /* RPC backends and the coordinator, from the coordinator's status. */
    cJSON *rpc = cJSON_Parse(
        "{\"enabled\":true,\"reference_version\":\"3.0.0\",\"backends\":["
        "{\"address\":\"10.0.0.5:50052\",\"reachable\":true,\"version\":\"3.0.0\","
        "\"in_use\":true,\"excluded\":false,\"free_bytes\":2e10,\"total_bytes\":2.4e10},"
        "{\"address\":\"h\\\"x\\n:1\",\"reachable\":null,\"version\":null,\"in_use\":false,"
        "\"excluded\":true,\"free_bytes\":0,\"total_bytes\":0}],"
        "\"coordinator\":{\"state\":\"restarting\",\"restarts\":3,\"uptime_s\":null}}");
    CHECK(rpc != NULL, "rpc json");
    v.rpc = rpc;
    text = render(&m, &v);
    check_structure(text);
    CHECK(strstr(text, "\nsollol_rpc_backend_up{backend=\"10.0.0.5:50052\"} 1\n") != NULL, "up");
    CHECK(strstr(text, "\nsollol_rpc_backend_up{backend=\"h\\\"x\\n:1\"} 0\n") != NULL,
          "unknown reachability is 0, address escaped");
    CHECK(
        strstr(text, "\nsollol_rpc_backend_info{backend=\"10.0.0.5:50052\",version=\"3.0.0\"} 1\n"),
        "info");
    CHECK(strstr(text, "version=\"unknown\"} 1\n") != NULL, "unknown version");
    CHECK(
        strstr(text, "\nsollol_rpc_backend_total_bytes{backend=\"10.0.0.5:50052\"} 24000000000\n"),
        "bytes");
    CHECK(strstr(text, "\nsollol_rpc_backend_excluded{backend=\"h\\\"x\\n:1\"} 1\n"), "excluded");
    CHECK(sum_lines(text, "sollol_coordinator_state{", &n) == 1 && n == 5, "one-hot over 5 states");
    CHECK(strstr(text, "\nsollol_coordinator_state{state=\"restarting\"} 1\n"), "state");
    CHECK(strstr(text, "\nsollol_coordinator_restarts_total 3\n"), "restarts");
    CHECK(strstr(text, "\nsollol_coordinator_uptime_seconds 0\n"), "not running: uptime 0");
    free(text);
    cJSON_ReplaceItemInObject(rpc, "enabled", cJSON_CreateFalse());
    text = render(&m, &v);
    CHECK(strstr(text, "sollol_rpc_") == NULL && strstr(text, "sollol_coordinator_") == NULL,
          "nothing when the coordinator is disabled");
    free(text);
    cJSON_Delete(rpc);
    v.rpc = NULL;

    /* Label escaping on its own. */
    struct sol_buf b2 = {0};
    CHECK(sol_metrics_append_label_value(&b2, "a\\b\"c\nd\xc3\xa9\xc3") == 0, "escape");
    CHECK(strcmp(sol_buf_cstr(&b2), "a\\\\b\\\"c\\nd\xc3\xa9\xef\xbf\xbd") == 0, "escaped: %s",
          sol_buf_cstr(&b2));
    sol_buf_free(&b2);

    sol_metrics_free(&m);
    sol_node_models_free(&a);
    sol_node_models_free(&b);
    return check_summary();
}
