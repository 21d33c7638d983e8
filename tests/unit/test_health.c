/*
 * Unit test of the probe response parsing of health.c: /api/tags and
 * /api/ps bodies applied to a node's model list, RFC 3339 timestamps, and
 * malformed bodies that must leave the node unchanged.
 */
#include "nodes/health.h"
#include "base/model_name.h"
#include "base/scorer.h"

#include "check.h"

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

    /* A model that disappears from tags is no longer installed, but its
     * entry (learned speeds) stays. */
    m->gen_tps = 42;
    const char only_qwen[] = "{\"models\":[{\"name\":\"qwen2.5:7b\"}]}";
    CHECK(sol_health_apply_tags(&n, only_qwen, strlen(only_qwen)) == 0, "second tags");
    m = model(&n, "llama3.2:latest");
    CHECK(m && !m->installed && m->gen_tps == 42 && !m->tags_entry, "removed model kept stats");

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
    CHECK(sol_health_apply_tags(&n, empty, strlen(empty)) == 0 &&
              !model(&n, "qwen2.5:7b")->installed,
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

int main(void)
{
    test_rfc3339();
    test_tags();
    test_ps();
    test_many_models();
    return check_summary();
}
