/*
 * Unit test of the dashboard data (dashboard.c): per-second counts land in
 * the right second and old seconds are cleared when the ring wraps,
 * percentiles come from the log-scale buckets within their resolution,
 * errors are 5xx and 429 only, queue samples keep the largest value per
 * second, decisions are kept newest first up to the cap with their reason,
 * and the JSON parses with node names escaped.
 */
#include "base/dashboard.h"
#include "nodes/health.h"

#include "check.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static cJSON *render(const struct sol_dashboard *db, const struct sol_node_table *t, uint64_t now,
                     unsigned seconds)
{
    struct sol_buf b = {0};
    CHECK(sol_dashboard_json(db, t, now, seconds, NULL, &b) == 0, "json");
    cJSON *j = cJSON_ParseWithLength(b.data, b.len);
    CHECK(j != NULL, "json parses: %.300s", b.data);
    sol_buf_free(&b);
    return j;
}

static double at(const cJSON *series, const char *key, int i)
{
    const cJSON *a = cJSON_GetObjectItem(series, key);
    int n = cJSON_GetArraySize(a);
    const cJSON *v = cJSON_GetArrayItem(a, i < 0 ? n + i : i);
    return cJSON_IsNull(v) ? -1 : v->valuedouble;
}

static double sum(const cJSON *series, const char *key)
{
    double s = 0;
    const cJSON *v;
    cJSON_ArrayForEach(v, cJSON_GetObjectItem(series, key)) s += v->valuedouble;
    return s;
}

int main(void)
{
    struct sol_node a = {.index = 0, .name = "gpu-a"}, b = {.index = 1, .name = "<b>\"x\"</b>"};
    struct sol_node *nodes[] = {&a, &b};
    struct sol_node_table t = {nodes, 2};
    const struct sol_route *chat = sol_route_find("/api/chat");

    struct sol_dashboard db;
    CHECK(sol_dashboard_init(&db) == 0, "init");
    uint64_t t0 = 1000000; /* loop ms */

    /* Second 0: 100 requests of 100 ms, 5 of them 5xx, one 429, one 404. */
    for (int i = 0; i < 100; i++) {
        struct sol_metrics_sample s = {.route = chat,
                                       .status = i < 5    ? 500
                                                 : i == 5 ? 429
                                                 : i == 6 ? 404
                                                          : 200,
                                       .duration_s = 0.1,
                                       .ttft_s = i < 50 ? 0.02 : 0,
                                       .eval_count = 3};
        sol_dashboard_record(&db, &s, t0 + (uint64_t)i);
    }
    /* Second 1: 19 fast, 1 very slow (p95 stays fast, p50 fast). */
    for (int i = 0; i < 20; i++) {
        struct sol_metrics_sample s = {.route = chat,
                                       .status = 200,
                                       .duration_s = i == 19 ? 30.0 : 0.01,
                                       .attempts = i < 2 ? 3 : 1};
        sol_dashboard_record(&db, &s, t0 + 1000 + (uint64_t)i);
    }
    /* No route: ignored. */
    sol_dashboard_record(&db, &(struct sol_metrics_sample){.status = 200}, t0 + 1000);
    sol_dashboard_tick(&db, t0 + 1100, 7, 3);
    sol_dashboard_tick(&db, t0 + 1200, 4, 9);

    cJSON *j = render(&db, &t, t0 + 1500, 10);
    const cJSON *s = cJSON_GetObjectItem(j, "series");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(s, "requests")) == 10, "10 seconds");
    CHECK(at(s, "requests", -1) == 20 && at(s, "requests", -2) == 100, "per-second requests");
    CHECK(at(s, "errors", -2) == 6, "errors are 5xx and 429: %g", at(s, "errors", -2));
    CHECK(at(s, "tokens", -2) == 300, "tokens");
    CHECK(at(s, "retries", -1) == 4 && at(s, "retries", -2) == 0,
          "retries: attempts after the first");
    CHECK(at(s, "queue", -1) == 7 && at(s, "in_flight", -1) == 9, "largest per second");
    double p50 = at(s, "p50_ms", -2), p95 = at(s, "p95_ms", -1);
    CHECK(fabs(p50 - 100) / 100 < 0.15, "p50 of 100 ms within a bucket: %g", p50);
    CHECK(p95 < 15, "one slow request of 20 is above p95: %g", p95);
    CHECK(at(s, "p50_ms", 0) < 0, "empty second has no percentile");
    CHECK(fabs(at(s, "ttft_p50_ms", -2) - 20) / 20 < 0.15, "ttft p50");
    CHECK(at(s, "ttft_p50_ms", -1) < 0, "no ttft in second 1");
    const cJSON *lm = cJSON_GetObjectItem(j, "last_minute");
    CHECK(cJSON_GetObjectItem(lm, "requests")->valuedouble == 120, "last minute requests");
    CHECK(fabs(cJSON_GetObjectItem(lm, "error_rate")->valuedouble - 6.0 / 120) < 1e-3,
          "error rate");
    CHECK(fabs(cJSON_GetObjectItem(lm, "rate")->valuedouble - 2.0) < 1e-3, "rate over 60 s");
    cJSON_Delete(j);

    /* The ring wraps: SOL_DASH_SECONDS later, second 0's slot is reused and cleared. */
    uint64_t later = t0 + (uint64_t)SOL_DASH_SECONDS * 1000;
    sol_dashboard_record(&db, &(struct sol_metrics_sample){.route = chat, .status = 200}, later);
    j = render(&db, &t, later, 0);
    s = cJSON_GetObjectItem(j, "series");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(s, "requests")) == SOL_DASH_SECONDS,
          "0 = whole window");
    CHECK(sum(s, "requests") == 1 + 20, "second 0 dropped, second 1 still in: %g",
          sum(s, "requests"));
    CHECK(at(s, "requests", -1) == 1, "newest second");
    cJSON_Delete(j);

    /* Decisions: newest first, capped, with reasons. */
    struct sol_score_explain ex = {.chosen = &a, .candidates = 2, .n_top = 2};
    ex.top[0] = (struct sol_score_terms){.node = &a, .total = 1.25};
    ex.top[1] = (struct sol_score_terms){.node = &b, .total = 2.5};
    ex.skipped_total = 0;
    for (int i = 0; i < SOL_DASH_DECISIONS + 3; i++) {
        char id[16];
        snprintf(id, sizeof id, "r%d", i);
        sol_dashboard_decision(&db, later + (uint64_t)i, id, "llama3.2:latest", "cost", 1, &a, 0,
                               &ex);
    }
    struct sol_score_explain none = {.chosen = NULL, .skipped_total = 3, .n_skipped = 1};
    none.skipped[0].node = &b;
    none.skipped[0].reason = SOL_SKIP_DOWN;
    sol_dashboard_decision(&db, later + 100, "last", "m:1", "cost", 2, NULL, -1, &none);
    sol_dashboard_decision(&db, later + 101, "pin", "m:1", "pinned", 1, &b, -1, NULL);
    j = render(&db, &t, later + 200, 5);
    const cJSON *d = cJSON_GetObjectItem(j, "decisions");
    CHECK(cJSON_GetArraySize(d) == SOL_DASH_DECISIONS, "capped");
    CHECK(cJSON_GetObjectItem(j, "decisions_total")->valuedouble == SOL_DASH_DECISIONS + 5,
          "total");
    const cJSON *d0 = cJSON_GetArrayItem(d, 0), *d1 = cJSON_GetArrayItem(d, 1),
                *d2 = cJSON_GetArrayItem(d, 2);
    CHECK(!strcmp(cJSON_GetObjectItem(d0, "id")->valuestring, "pin"), "newest first");
    CHECK(!strcmp(cJSON_GetObjectItem(d0, "node")->valuestring, b.name), "escaped name round trip");
    CHECK(strstr(cJSON_GetObjectItem(d0, "reason")->valuestring, "pinned") != NULL, "pinned");
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(d1, "node")), "no node");
    const char *why = cJSON_GetObjectItem(d1, "reason")->valuestring;
    CHECK(strstr(why, "no eligible node") && strstr(why, "retry 1") &&
              strstr(why, "skipped <b>\"x\"</b> down") && strstr(why, "+2 more"),
          "reason of a failed pick: %s", why);
    why = cJSON_GetObjectItem(d2, "reason")->valuestring;
    CHECK(!strcmp(cJSON_GetObjectItem(d2, "id")->valuestring, "r26"), "id");
    CHECK(strstr(why, "lowest expected time 1.25 s of 2 candidates; next <b>\"x\"</b> 2.50 s") &&
              strstr(why, "affinity"),
          "reason of a cost pick: %s", why);
    CHECK(cJSON_GetObjectItem(d2, "cost_s")->valuedouble == 1.25 &&
              cJSON_GetObjectItem(d2, "runner_cost_s")->valuedouble == 2.5 &&
              cJSON_IsTrue(cJSON_GetObjectItem(d2, "affinity")) &&
              cJSON_GetObjectItem(d2, "age_ms")->valuedouble == 200 - 26,
          "decision fields");
    cJSON_Delete(j);

    /* A key restricted to llama3.2* sees only the decisions about it
     * (#14 item 10); the series (totals) stay. */
    char *globs[] = {"llama3.2*"};
    struct sol_auth_key restricted = {.name = "team", .models = globs, .n_models = 1};
    struct sol_buf kb = {0};
    CHECK(sol_dashboard_json(&db, &t, later + 200, 5, &restricted, &kb) == 0, "restricted json");
    j = cJSON_ParseWithLength(kb.data, kb.len);
    CHECK(j != NULL, "restricted json parses");
    CHECK(strstr(sol_buf_cstr(&kb), "m:1") == NULL, "other model's decisions hidden");
    d = cJSON_GetObjectItem(j, "decisions");
    CHECK(cJSON_GetArraySize(d) == SOL_DASH_DECISIONS - 2, "%d decisions shown",
          cJSON_GetArraySize(d));
    CHECK(!strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(d, 0), "model")->valuestring,
                  "llama3.2:latest"),
          "own model shown");
    CHECK(cJSON_GetObjectItem(j, "series") != NULL, "series kept");
    cJSON_Delete(j);
    sol_buf_free(&kb);

    sol_dashboard_free(&db);
    return check_summary();
}
