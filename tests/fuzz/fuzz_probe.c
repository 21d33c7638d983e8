/*
 * libFuzzer target: what the health prober reads from nodes (health.c:
 * /api/tags and /api/ps bodies, RFC 3339 timestamps in them) and what the
 * aggregated endpoints then build from those facts (aggregate.c: /api/tags,
 * /api/ps, /v1/models, /v1/models/:model).
 *
 * Input: up to four bodies separated by NUL bytes, applied in turn as
 * node A's tags, node A's ps, node B's tags, node A's tags again (so entries
 * are both added and dropped). Checked beyond memory safety and leaks:
 *  - apply returns 0 or -1, and on -1 the node's models are unchanged;
 *  - model entries hold canonical names, unique per node, keys matching;
 *  - every aggregate answer is a JSON document that parses, with the
 *    expected top-level array.
 */
#include "fuzz_util.h"

#include "base/aggregate.h"
#include "sollol/buf.h"
#include "nodes/health.h"
#include "base/model_name.h"

#include <cjson/cJSON.h>
#include <string.h>

static void check_node(const struct sol_node *n)
{
    for (unsigned i = 0; i < n->n_models; i++) {
        const struct sol_node_model *m = &n->models[i];
        char again[SOL_MODEL_NAME_MAX];
        REQUIRE(sol_model_canonical(m->name, again, sizeof again) == 0);
        REQUIRE(strcmp(again, m->name) == 0);
        REQUIRE(m->key == sol_model_key(m->name));
        REQUIRE(fuzz_terminated(m->digest, sizeof m->digest));
        for (unsigned j = 0; j < i; j++)
            REQUIRE(strcmp(n->models[j].name, m->name) != 0);
        if (!m->installed)
            REQUIRE(m->tags_entry == NULL);
        if (!m->loaded)
            REQUIRE(m->ps_entry == NULL);
    }
}

static void check_json(struct sol_buf *b, const char *array)
{
    char *text = malloc(b->len + 1);
    REQUIRE(text);
    memcpy(text, b->data, b->len);
    text[b->len] = '\0';
    cJSON *root = cJSON_Parse(text);
    REQUIRE(root);
    REQUIRE(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, array)));
    cJSON_Delete(root);
    free(text);
    sol_buf_clear(b);
}

static void apply(struct sol_node *n, int ps, const char *body, size_t len)
{
    unsigned before = n->n_models;
    int rc = ps ? sol_health_apply_ps(n, body, len) : sol_health_apply_tags(n, body, len);
    REQUIRE(rc == 0 || rc == -1);
    if (rc < 0)
        REQUIRE(n->n_models == before);
    check_node(n);

    /* The timestamp parser on the raw text, NUL-terminated. */
    char *s = malloc(len + 1);
    REQUIRE(s);
    memcpy(s, body, len);
    s[len] = '\0';
    int64_t ms;
    (void)sol_parse_rfc3339_ms(s, &ms);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sol_node a = {.index = 0, .name = "node-a", .state = SOL_NODE_UP};
    struct sol_node b = {.index = 1, .name = "node \"b\"", .state = SOL_NODE_UP};
    struct sol_node *nodes[] = {&a, &b};
    struct sol_node_table t = {nodes, 2};

    const char *p = (const char *)data, *end = p + size;
    for (int part = 0; part < 4 && p <= end; part++) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
        static const int ps_of[] = {0, 1, 0, 0};
        apply(part == 2 ? &b : &a, ps_of[part], p, len);
        if (!nul)
            break;
        p = nul + 1;
    }

    struct sol_buf out = {0};
    REQUIRE(sol_aggregate_tags(&t, NULL, &out) == 0);
    check_json(&out, "models");
    REQUIRE(sol_aggregate_ps(&t, NULL, &out) == 0);
    check_json(&out, "models");
    REQUIRE(sol_aggregate_v1_models(&t, NULL, &out) == 0);
    check_json(&out, "data");
    for (unsigned i = 0; i < a.n_models; i++) {
        int rc = sol_aggregate_v1_model(&t, NULL, a.models[i].name, &out);
        REQUIRE(rc == 0 || rc == 1);
        if (a.models[i].installed)
            REQUIRE(rc == 1); /* node A is up and lists it */
        sol_buf_clear(&out);
    }
    sol_buf_free(&out);
    sol_node_models_free(&a);
    sol_node_models_free(&b);
    return 0;
}
