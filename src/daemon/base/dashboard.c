/*
 * dashboard.c - the live dashboard: per-second ring, recent routing
 * decisions, and the two routes that serve them (see dashboard.h).
 */
#include "base/dashboard.h"

#include "base/aggregate.h"
#include "base/http_reply.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bucket i holds values in (1.3^(i-1), 1.3^i] ms; bucket 0 everything up to 1 ms. */
#define BUCKET_BASE 1.3

static unsigned bucket_of(double ms)
{
    if (!(ms > 1))
        return 0;
    double i = ceil(log(ms) / log(BUCKET_BASE));
    return i >= SOL_DASH_BUCKETS - 1 ? SOL_DASH_BUCKETS - 1 : (unsigned)i;
}

/* A representative value of bucket i: the geometric middle of its bounds. */
static double bucket_value(unsigned i)
{
    return i == 0 ? 1.0 : pow(BUCKET_BASE, (double)i - 0.5);
}

int sol_dashboard_init(struct sol_dashboard *db)
{
    memset(db, 0, sizeof *db);
    db->ring = calloc(SOL_DASH_SECONDS, sizeof *db->ring);
    return db->ring ? 0 : -1;
}

void sol_dashboard_free(struct sol_dashboard *db)
{
    free(db->ring);
    db->ring = NULL;
}

/* The slot of second `sec`, cleared when it held an older second. */
static struct sol_dash_second *slot_for(struct sol_dashboard *db, uint64_t sec)
{
    struct sol_dash_second *s = &db->ring[sec % SOL_DASH_SECONDS];
    if (s->sec != sec) {
        memset(s, 0, sizeof *s);
        s->sec = sec;
    }
    return s;
}

void sol_dashboard_record(struct sol_dashboard *db, const struct sol_metrics_sample *s,
                          uint64_t now_ms)
{
    if (!db->ring || !s->route)
        return;
    struct sol_dash_second *sl = slot_for(db, now_ms / 1000);
    sl->requests++;
    if (s->status >= 500 || s->status == 429)
        sl->errors++;
    if (s->attempts > 1)
        sl->retries += s->attempts - 1;
    sl->tokens += s->eval_count;
    sl->lat[bucket_of(s->duration_s * 1000.0)]++;
    if (s->ttft_s > 0)
        sl->ttft[bucket_of(s->ttft_s * 1000.0)]++;
}

void sol_dashboard_tick(struct sol_dashboard *db, uint64_t now_ms, unsigned queue_len,
                        unsigned in_flight)
{
    if (!db->ring)
        return;
    struct sol_dash_second *sl = slot_for(db, now_ms / 1000);
    if (queue_len > sl->queue_max)
        sl->queue_max = queue_len;
    if (in_flight > sl->in_flight_max)
        sl->in_flight_max = in_flight;
}

void sol_dashboard_decision(struct sol_dashboard *db, uint64_t now_ms, const char *id,
                            const char *model, const char *how, unsigned attempt,
                            const struct sol_node *chosen, int affinity_node,
                            const struct sol_score_explain *ex)
{
    struct sol_dash_decision *dd = &db->decisions[db->next_decision];
    db->next_decision = (db->next_decision + 1) % SOL_DASH_DECISIONS;
    db->decisions_total++;
    memset(dd, 0, sizeof *dd);
    dd->at_ms = now_ms;
    snprintf(dd->id, sizeof dd->id, "%s", id ? id : "");
    snprintf(dd->model, sizeof dd->model, "%s", model ? model : "");
    dd->how = how ? how : "cost";
    dd->attempt = attempt;
    dd->node = chosen ? (int)chosen->index : -1;
    dd->affinity = chosen && affinity_node >= 0 && (int)chosen->index == affinity_node;
    dd->cost = dd->runner_cost = -1;
    dd->runner = -1;
    if (!ex)
        return;
    dd->candidates = ex->candidates;
    if (ex->n_top > 0 && ex->top[0].node)
        dd->cost = ex->top[0].total;
    if (ex->n_top > 1 && ex->top[1].node) {
        dd->runner = (int)ex->top[1].node->index;
        dd->runner_cost = ex->top[1].total;
    }
    dd->skipped_total = ex->skipped_total;
    for (unsigned i = 0; i < ex->n_skipped && dd->n_skipped < SOL_DASH_SKIPS; i++) {
        if (!ex->skipped[i].node)
            continue;
        dd->skipped[dd->n_skipped] = (int)ex->skipped[i].node->index;
        dd->skip_reason[dd->n_skipped] = sol_skip_reason_name(ex->skipped[i].reason);
        dd->n_skipped++;
    }
}

/* ---- JSON ----------------------------------------------------------------- */

/* Value at quantile q of the merged histogram, in ms; < 0 when empty. */
static double quantile(const uint32_t *h, double q)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < SOL_DASH_BUCKETS; i++)
        n += h[i];
    if (!n)
        return -1;
    uint64_t rank = (uint64_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    uint64_t cum = 0;
    for (unsigned i = 0; i < SOL_DASH_BUCKETS; i++) {
        cum += h[i];
        if (cum >= rank)
            return bucket_value(i);
    }
    return bucket_value(SOL_DASH_BUCKETS - 1);
}

static const char *node_name(const struct sol_node_table *t, int i)
{
    return i >= 0 && (unsigned)i < t->count ? t->nodes[i]->name : NULL;
}

static int json_str_or_null(struct sol_buf *b, const char *s)
{
    return s ? sol_buf_append_json_string(b, s, strlen(s)) : sol_buf_append_str(b, "null");
}

static int json_num_or_null(struct sol_buf *b, double v)
{
    return v < 0 ? sol_buf_append_str(b, "null") : sol_buf_appendf(b, "%.1f", v);
}

/* The one-line "why" of a decision, for people. */
static int decision_reason(struct sol_buf *b, const struct sol_dash_decision *dd,
                           const struct sol_node_table *t)
{
    char text[320];
    size_t off = 0;
#define ADD(...)                                                                                   \
    do {                                                                                           \
        int k_ = snprintf(text + off, sizeof text - off, __VA_ARGS__);                             \
        if (k_ > 0)                                                                                \
            off = off + (size_t)k_ < sizeof text ? off + (size_t)k_ : sizeof text - 1;             \
    } while (0)
    text[0] = '\0';
    if (dd->node < 0)
        ADD("no eligible node");
    else if (strcmp(dd->how, "pinned") == 0)
        ADD("pinned route: the named or first node that is up");
    else if (strcmp(dd->how, "cost") != 0)
        ADD("%s routing", dd->how);
    else if (dd->candidates <= 1)
        ADD("only candidate (expected %.2f s)", dd->cost);
    else if (dd->runner >= 0)
        ADD("lowest expected time %.2f s of %u candidates; next %.40s %.2f s", dd->cost,
            dd->candidates, node_name(t, dd->runner) ? node_name(t, dd->runner) : "?",
            dd->runner_cost);
    else
        ADD("lowest expected time %.2f s of %u candidates", dd->cost, dd->candidates);
    if (dd->affinity)
        ADD("; affinity node of the conversation");
    if (dd->attempt > 1)
        ADD("; retry %u after a failed attempt", dd->attempt - 1);
    for (unsigned i = 0; i < dd->n_skipped; i++) {
        const char *nn = node_name(t, dd->skipped[i]);
        ADD("%s%.40s %s", i ? ", " : "; skipped ", nn ? nn : "?", dd->skip_reason[i]);
    }
    if (dd->skipped_total > dd->n_skipped)
        ADD(" +%u more", dd->skipped_total - dd->n_skipped);
#undef ADD
    return sol_buf_append_json_string(b, text, strlen(text));
}

int sol_dashboard_json(const struct sol_dashboard *db, const struct sol_node_table *t,
                       uint64_t now_ms, unsigned seconds, const struct sol_auth_key *key,
                       struct sol_buf *out)
{
    if (!db->ring)
        return -1;
    if (seconds == 0 || seconds > SOL_DASH_SECONDS)
        seconds = SOL_DASH_SECONDS;
    uint64_t now_s = now_ms / 1000;
    int rc = 0;
    rc |= sol_buf_appendf(out, "{\"now_ms\":%llu,\"window_s\":%u,\"series\":{",
                          (unsigned long long)now_ms, seconds);

    /* Per-second series, oldest first; the current second is still filling. */
    static const char *const names[] = {"requests",    "errors", "tokens", "queue",
                                        "in_flight",   "p50_ms", "p95_ms", "ttft_p50_ms",
                                        "ttft_p95_ms", "retries"};
    for (unsigned k = 0; k < sizeof names / sizeof names[0]; k++) {
        rc |= sol_buf_appendf(out, "%s\"%s\":[", k ? "," : "", names[k]);
        for (unsigned i = 0; i < seconds; i++) {
            uint64_t sec = now_s + 1 >= (uint64_t)seconds - i ? now_s + 1 - (seconds - i) : 0;
            const struct sol_dash_second *s = &db->ring[sec % SOL_DASH_SECONDS];
            int valid = s->sec == sec;
            if (i)
                rc |= sol_buf_append_str(out, ",");
            switch (k) {
            case 0:
                rc |= sol_buf_appendf(out, "%u", valid ? s->requests : 0);
                break;
            case 1:
                rc |= sol_buf_appendf(out, "%u", valid ? s->errors : 0);
                break;
            case 2:
                rc |= sol_buf_appendf(out, "%llu", valid ? (unsigned long long)s->tokens : 0ull);
                break;
            case 3:
                rc |= sol_buf_appendf(out, "%u", valid ? s->queue_max : 0);
                break;
            case 4:
                rc |= sol_buf_appendf(out, "%u", valid ? s->in_flight_max : 0);
                break;
            case 9:
                rc |= sol_buf_appendf(out, "%u", valid ? s->retries : 0);
                break;
            default: {
                const uint32_t *h = k < 7 ? s->lat : s->ttft;
                double q = (k == 5 || k == 7) ? 0.5 : 0.95;
                rc |= json_num_or_null(out, valid ? quantile(h, q) : -1);
            }
            }
        }
        rc |= sol_buf_append_str(out, "]");
    }

    /* The last minute as a whole (the page's headline numbers). */
    uint32_t lat[SOL_DASH_BUCKETS] = {0}, ttft[SOL_DASH_BUCKETS] = {0};
    uint64_t req = 0, err = 0, tok = 0;
    unsigned span = 60; /* whatever `seconds` the series cover */
    for (unsigned i = 0; i < span && i <= now_s; i++) {
        uint64_t sec = now_s - i;
        const struct sol_dash_second *s = &db->ring[sec % SOL_DASH_SECONDS];
        if (s->sec != sec)
            continue;
        req += s->requests;
        err += s->errors;
        tok += s->tokens;
        for (unsigned b = 0; b < SOL_DASH_BUCKETS; b++) {
            lat[b] += s->lat[b];
            ttft[b] += s->ttft[b];
        }
    }
    rc |= sol_buf_appendf(out,
                          "},\"last_minute\":{\"requests\":%llu,\"errors\":%llu,\"rate\":%.3f,"
                          "\"error_rate\":%.4f,\"tokens_per_s\":%.1f,\"p50_ms\":",
                          (unsigned long long)req, (unsigned long long)err, (double)req / span,
                          req ? (double)err / (double)req : 0.0, (double)tok / span);
    rc |= json_num_or_null(out, quantile(lat, 0.5));
    rc |= sol_buf_append_str(out, ",\"p95_ms\":");
    rc |= json_num_or_null(out, quantile(lat, 0.95));
    rc |= sol_buf_append_str(out, ",\"ttft_p50_ms\":");
    rc |= json_num_or_null(out, quantile(ttft, 0.5));
    rc |= sol_buf_append_str(out, ",\"ttft_p95_ms\":");
    rc |= json_num_or_null(out, quantile(ttft, 0.95));

    rc |= sol_buf_append_str(out, "},\"decisions\":[");
    unsigned n = db->decisions_total < SOL_DASH_DECISIONS ? (unsigned)db->decisions_total
                                                          : SOL_DASH_DECISIONS;
    for (unsigned i = 0, shown = 0; i < n; i++) {
        unsigned idx = (db->next_decision + SOL_DASH_DECISIONS - 1 - i) % SOL_DASH_DECISIONS;
        const struct sol_dash_decision *dd = &db->decisions[idx];
        if (!sol_model_visible(key, dd->model))
            continue;
        rc |= sol_buf_appendf(out, "%s{\"age_ms\":%llu,\"id\":", shown++ ? "," : "",
                              (unsigned long long)(now_ms >= dd->at_ms ? now_ms - dd->at_ms : 0));
        rc |= sol_buf_append_json_string(out, dd->id, strlen(dd->id));
        rc |= sol_buf_append_str(out, ",\"model\":");
        rc |= sol_buf_append_json_string(out, dd->model, strlen(dd->model));
        rc |=
            sol_buf_appendf(out, ",\"how\":\"%s\",\"attempt\":%u,\"node\":", dd->how, dd->attempt);
        rc |= json_str_or_null(out, node_name(t, dd->node));
        rc |= sol_buf_append_str(out, ",\"cost_s\":");
        rc |=
            dd->cost < 0 ? sol_buf_append_str(out, "null") : sol_buf_appendf(out, "%.4g", dd->cost);
        rc |= sol_buf_append_str(out, ",\"runner\":");
        rc |= json_str_or_null(out, node_name(t, dd->runner));
        rc |= sol_buf_append_str(out, ",\"runner_cost_s\":");
        rc |= dd->runner_cost < 0 ? sol_buf_append_str(out, "null")
                                  : sol_buf_appendf(out, "%.4g", dd->runner_cost);
        rc |= sol_buf_appendf(out,
                              ",\"candidates\":%u,\"affinity\":%s,\"skipped_total\":%u,"
                              "\"skipped\":[",
                              dd->candidates, dd->affinity ? "true" : "false", dd->skipped_total);
        for (unsigned j = 0; j < dd->n_skipped; j++) {
            rc |= sol_buf_append_str(out, j ? ",{\"node\":" : "{\"node\":");
            rc |= json_str_or_null(out, node_name(t, dd->skipped[j]));
            rc |= sol_buf_appendf(out, ",\"reason\":\"%s\"}", dd->skip_reason[j]);
        }
        rc |= sol_buf_append_str(out, "],\"reason\":");
        rc |= decision_reason(out, dd, t);
        rc |= sol_buf_append_str(out, "}");
    }
    rc |= sol_buf_appendf(out, "],\"decisions_total\":%llu}",
                          (unsigned long long)db->decisions_total);
    return rc ? -1 : 0;
}
