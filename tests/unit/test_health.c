/*
 * Unit test of the probe response parsing of health.c: /api/tags and
 * /api/ps bodies applied to a node's model list, RFC 3339 timestamps, and
 * malformed bodies that must leave the node unchanged.
 */
#include "nodes/health.h"
#include "base/model_name.h"
#include "base/scorer.h"

#include "check.h"

#include "sollol/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct sol_node_model *model(struct sol_node *n, const char *name)
{
    char c[SOL_MODEL_NAME_MAX];
    if (sol_model_canonical(name, c, sizeof c) < 0)
        return NULL;
    return sol_node_find_model(n, sol_model_key(c));
}

static const char tags[] =
    "{\"models\":[{\"name\":\"llama3.2:latest\",\"model\":\"llama3.2:latest\","
    "\"modified_at\":\"2024-06-04T14:38:31.83753-07:00\",\"size\":2019393189,"
    "\"digest\":\"a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72\","
    "\"details\":{\"family\":\"llama\"}},"
    "{\"name\":\"Qwen2.5:7B\",\"size\":1,\"digest\":\"sha256:00ff\"}]}";

static void test_rfc3339(void)
{
    int64_t ms;
    CHECK(sol_parse_rfc3339_ms("1970-01-01T00:00:00Z", &ms) == 0 && ms == 0, "%lld", (long long)ms);
    CHECK(sol_parse_rfc3339_ms("2024-06-04T14:38:31.83753-07:00", &ms) == 0 &&
              ms == 1717537111837LL,
          "%lld", (long long)ms);
    CHECK(sol_parse_rfc3339_ms("2026-11-27T05:35:04.783627186Z", &ms) == 0 && ms % 1000 == 783,
          "%lld", (long long)ms);
    CHECK(sol_parse_rfc3339_ms("2024-06-04T14:38:31+02:00", &ms) == 0 && ms == 1717504711000LL,
          "%lld", (long long)ms);
    const char *bad[] = {"",
                         "2024-06-04",
                         "2024-06-04T14:38:31",
                         "2024-13-04T14:38:31Z",
                         "2024-06-04T14:38:31.Z",
                         "2024-06-04T14:38:31Zjunk",
                         "2024-06-04 14:38:31Z",
                         "2024-06-04T14:38:31+0200"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(sol_parse_rfc3339_ms(bad[i], &ms) < 0, "'%s' accepted", bad[i]);
}

static void test_tags(void)
{
    struct sol_node n = {0};
    CHECK(sol_health_apply_tags(&n, tags, strlen(tags)) == 0, "valid tags rejected");
    struct sol_node_model *m = model(&n, "llama3.2");
    CHECK(m && m->installed && !m->loaded && m->size == 2019393189, "llama3.2 entry");
    CHECK(m && m->modified_at_ms == 1717537111837LL, "modified_at");
    CHECK(m && strcmp(m->digest,
                      "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72") == 0,
          "digest");
    CHECK(m && m->tags_entry && strstr(m->tags_entry, "\"family\":\"llama\""), "raw entry kept");
    struct sol_node_model *q = model(&n, "qwen2.5:7b");
    CHECK(q && q->installed && strcmp(q->digest, "00ff") == 0, "case-folded name, digest prefix");

    /* A model that disappears from tags (and is neither loaded nor in use)
     * is dropped, learned speeds and all: a node must not be able to make
     * the daemon keep every name it ever listed (#14 item 6). */
    m->gen_tps = 42;
    const char only_qwen[] = "{\"models\":[{\"name\":\"qwen2.5:7b\"}]}";
    CHECK(sol_health_apply_tags(&n, only_qwen, strlen(only_qwen)) == 0, "second tags");
    CHECK(model(&n, "llama3.2:latest") == NULL && n.n_models == 1, "removed model dropped (%u)",
          n.n_models);

    /* A 404 marked it gone; the next tags listing clears that. */
    q = model(&n, "qwen2.5:7b");
    q->gone = 1;
    CHECK(sol_health_apply_tags(&n, only_qwen, strlen(only_qwen)) == 0 && !q->gone, "gone reset");

    /* Malformed bodies change nothing. */
    const char *bad[] = {"", "{", "[]", "{\"models\":3}", "{\"models\":{}}", "null"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(sol_health_apply_tags(&n, bad[i], strlen(bad[i])) < 0, "'%s' accepted", bad[i]);
        CHECK(model(&n, "qwen2.5:7b")->installed, "'%s' changed the node", bad[i]);
    }
    /* Ollama sends null for an empty list. */
    const char empty[] = "{\"models\":null}";
    CHECK(sol_health_apply_tags(&n, empty, strlen(empty)) == 0 && !model(&n, "qwen2.5:7b") &&
              n.n_models == 0,
          "null list");
    /* Entries without a usable name are skipped, not fatal. */
    const char odd[] = "{\"models\":[{\"size\":1},7,{\"name\":\"\"},{\"name\":\"ok\"}]}";
    CHECK(sol_health_apply_tags(&n, odd, strlen(odd)) == 0 && model(&n, "ok:latest") &&
              model(&n, "ok:latest")->installed,
          "odd entries");
    sol_node_models_free(&n);
    CHECK(n.models == NULL && n.n_models == 0, "freed");
}

static void test_ps(void)
{
    struct sol_node n = {0};
    CHECK(sol_health_apply_tags(&n, tags, strlen(tags)) == 0, "tags");
    const char ps[] = "{\"models\":[{\"name\":\"llama3.2:latest\",\"size_vram\":5137025024,"
                      "\"expires_at\":\"2024-06-04T14:38:31.83753-07:00\"}]}";
    CHECK(sol_health_apply_ps(&n, ps, strlen(ps)) == 0, "ps");
    struct sol_node_model *m = model(&n, "llama3.2");
    CHECK(m && m->loaded && m->size_vram == 5137025024ULL && m->expires_at_ms == 1717537111837LL,
          "loaded entry");
    CHECK(m && m->ps_entry && strstr(m->ps_entry, "size_vram"), "raw ps entry");
    CHECK(!model(&n, "qwen2.5:7b")->loaded, "qwen not loaded");
    const char none[] = "{\"models\":[]}";
    CHECK(sol_health_apply_ps(&n, none, strlen(none)) == 0 && !m->loaded && !m->ps_entry,
          "unloaded");
    /* A loaded model the tags did not list yet gets an entry. */
    const char fresh[] = "{\"models\":[{\"model\":\"new:1b\"}]}";
    CHECK(sol_health_apply_ps(&n, fresh, strlen(fresh)) == 0 && model(&n, "new:1b") &&
              model(&n, "new:1b")->loaded,
          "new loaded model");
    sol_node_models_free(&n);
}

static void test_many_models(void)
{
    /* Growth of the model array keeps every entry findable. */
    struct sol_node n = {0};
    char name[32];
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "m%d:latest", i);
        CHECK(sol_node_model_get(&n, name) != NULL, "add %s", name);
    }
    CHECK(n.n_models == 100, "%u models", n.n_models);
    for (int i = 0; i < 100; i++) {
        snprintf(name, sizeof name, "m%d:latest", i);
        CHECK(sol_node_model_get(&n, name) == &n.models[i], "find %s", name);
    }
    sol_node_models_free(&n);
}

/* A {"models":[...]} body naming prefix-0 .. prefix-(count-1). */
static char *names_body(const char *prefix, int count)
{
    struct sol_buf b = {0};
    sol_buf_append_str(&b, "{\"models\":[");
    for (int i = 0; i < count; i++)
        sol_buf_appendf(&b, "%s{\"name\":\"%s-%d:latest\",\"size\":%d}", i ? "," : "", prefix, i,
                        i + 1);
    sol_buf_append_str(&b, "]}");
    sol_buf_cstr(&b); /* NUL-terminated: the caller takes strlen() */
    return b.data;
}

static void apply_names(struct sol_node *n, const char *prefix, int count, unsigned max, int ps)
{
    char *body = names_body(prefix, count);
    CHECK(body && (ps ? sol_health_apply_ps_max(n, body, strlen(body), max)
                      : sol_health_apply_tags_max(n, body, strlen(body), max)) == 0,
          "apply %s x %d", prefix, count);
    free(body);
}

/* #14 item 6: a node that lists new names at every probe. */
static void test_churn_and_cap(void)
{
    struct sol_node n = {0};
    char gen[16], name[48];
    /* Ten probes, each with 500 names never seen before: the list holds the
     * last 500, not 5,000, and every one of them is found through the index. */
    for (int g = 0; g < 10; g++) {
        snprintf(gen, sizeof gen, "g%d", g);
        apply_names(&n, gen, 500, 0, 0);
        CHECK(n.n_models == 500 && n.models_dropped == 0, "probe %d: %u models", g, n.n_models);
    }
    for (int i = 0; i < 500; i++) {
        snprintf(name, sizeof name, "g9-%d:latest", i);
        struct sol_node_model *m = model(&n, name);
        CHECK(m && m->installed && m->size == (uint64_t)i + 1, "%s", name);
        snprintf(name, sizeof name, "g8-%d:latest", i);
        CHECK(model(&n, name) == NULL, "%s evicted", name);
    }

    /* The cap: 300 names with room for 100 keep the first 100 listed. */
    apply_names(&n, "big", 300, 100, 0);
    CHECK(n.n_models == 100 && n.models_dropped == 200, "%u kept, %u dropped", n.n_models,
          n.models_dropped);
    CHECK(model(&n, "big-99") && !model(&n, "big-100"), "first names kept");
    /* At the cap, a node that replaces its names gets the new ones: what it
     * no longer lists goes first. */
    apply_names(&n, "next", 100, 100, 0);
    CHECK(n.n_models == 100 && n.models_dropped == 0 && model(&n, "next-0") && model(&n, "next-99"),
          "replaced at the cap (%u)", n.n_models);

    /* Kept although no longer in tags: loaded (ps lists it) or in use. */
    apply_names(&n, "next", 2, 0, 1); /* next-0, next-1 loaded */
    struct sol_node_model *busy = model(&n, "next-5");
    CHECK(busy != NULL, "next-5");
    if (busy)
        busy->in_flight = 1;
    apply_names(&n, "other", 3, 0, 0);
    CHECK(n.n_models == 6, "3 listed + 2 loaded + 1 in flight: %u", n.n_models);
    CHECK(model(&n, "next-0") && model(&n, "next-0")->loaded && !model(&n, "next-0")->installed,
          "loaded kept");
    CHECK(model(&n, "next-5") && model(&n, "next-5")->in_flight == 1, "in flight kept");
    CHECK(model(&n, "next-6") == NULL, "idle one dropped");
    /* The list shrank with the node's models. */
    CHECK(n.cap_models <= 64, "cap %u", n.cap_models);
    /* ps is capped too. */
    apply_names(&n, "ps", 50, 10, 1);
    CHECK(n.n_models <= 10 && n.ps_models_dropped > 0, "ps capped: %u models, %u dropped",
          n.n_models, n.ps_models_dropped);
    /* Duplicates in one list make one entry. */
    const char dup[] = "{\"models\":[{\"name\":\"d\"},{\"name\":\"D:latest\"},{\"name\":\"d\"}]}";
    CHECK(sol_health_apply_tags(&n, dup, strlen(dup)) == 0 && model(&n, "d") &&
              model(&n, "d")->installed,
          "dup");
    unsigned count_d = 0;
    for (unsigned i = 0; i < n.n_models; i++)
        count_d += strcmp(n.models[i].name, "d:latest") == 0;
    CHECK(count_d == 1, "%u entries for d", count_d);
    sol_node_models_free(&n);
}

int main(void)
{
    test_rfc3339();
    test_tags();
    test_ps();
    test_many_models();
    test_churn_and_cap();
    return check_summary();
}
