/*
 * Unit test of the aggregated endpoints' bodies: the union over routable
 * nodes, one entry per model, newest first, "node" on /api/ps entries,
 * OpenAI's list shape, and down nodes left out.
 */
#include "base/aggregate.h"
#include "nodes/health.h"

#include "check.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void add_tags(struct sol_node *n, const char *json)
{
    CHECK(sol_health_apply_tags(n, json, strlen(json)) == 0, "tags for %s", n->name);
}

static cJSON *parse(struct sol_buf *b)
{
    cJSON *j = cJSON_ParseWithLength(b->data, b->len);
    CHECK(j != NULL, "invalid JSON: %.*s", (int)b->len, b->data);
    return j;
}

static const char *name_at(cJSON *list, int i, const char *key)
{
    cJSON *e = cJSON_GetArrayItem(list, i);
    cJSON *v = cJSON_GetObjectItemCaseSensitive(e, key);
    return cJSON_IsString(v) ? v->valuestring : "";
}

int main(void)
{
    struct sol_node a = {.name = "a", .state = SOL_NODE_UP};
    struct sol_node b = {.name = "b", .state = SOL_NODE_UP};
    struct sol_node c = {.name = "c\"q", .state = SOL_NODE_DOWN};
    add_tags(&a,
             "{\"models\":[{\"name\":\"llama3.2:latest\",\"modified_at\":\"2024-01-01T00:00:00Z\","
             "\"digest\":\"aa\"},{\"name\":\"old:1b\",\"modified_at\":\"2020-01-01T00:00:00Z\"}]}");
    add_tags(&b,
             "{\"models\":[{\"name\":\"llama3.2:latest\",\"modified_at\":\"2025-01-01T00:00:00Z\","
             "\"digest\":\"bb\"},{\"name\":\"myns/"
             "tool:7b\",\"modified_at\":\"2024-06-01T00:00:00Z\"}]}");
    add_tags(
        &c,
        "{\"models\":[{\"name\":\"only-on-c:latest\",\"modified_at\":\"2026-01-01T00:00:00Z\"}]}");
    const char ps_a[] = "{\"models\":[{\"name\":\"llama3.2:latest\",\"size_vram\":1}]}";
    const char ps_b[] = "{\"models\":[{\"name\":\"llama3.2:latest\",\"size_vram\":2}]}";
    CHECK(sol_health_apply_ps(&a, ps_a, strlen(ps_a)) == 0, "ps a");
    CHECK(sol_health_apply_ps(&b, ps_b, strlen(ps_b)) == 0, "ps b");
    struct sol_node *nodes[] = {&a, &b, &c};
    struct sol_node_table t = {nodes, 3};

    struct sol_buf out = {0};
    CHECK(sol_aggregate_tags(&t, NULL, &out) == 0, "tags");
    cJSON *j = parse(&out);
    cJSON *models = cJSON_GetObjectItemCaseSensitive(j, "models");
    CHECK(cJSON_GetArraySize(models) == 3, "%d entries", cJSON_GetArraySize(models));
    /* newest first; the duplicate name shows the newer copy (node b's) */
    CHECK(strcmp(name_at(models, 0, "name"), "llama3.2:latest") == 0, "first %s",
          name_at(models, 0, "name"));
    CHECK(strcmp(name_at(models, 0, "digest"), "bb") == 0, "newest copy wins");
    CHECK(strcmp(name_at(models, 1, "name"), "myns/tool:7b") == 0, "second");
    CHECK(strcmp(name_at(models, 2, "name"), "old:1b") == 0, "third");
    CHECK(!strstr(sol_buf_cstr(&out), "only-on-c"), "down node listed");
    cJSON_Delete(j);
    sol_buf_clear(&out);

    CHECK(sol_aggregate_ps(&t, NULL, &out) == 0, "ps");
    j = parse(&out);
    models = cJSON_GetObjectItemCaseSensitive(j, "models");
    CHECK(cJSON_GetArraySize(models) == 1, "one entry per model, however many nodes run it: %d",
          cJSON_GetArraySize(models));
    cJSON *where = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(models, 0), "nodes");
    CHECK(cJSON_GetArraySize(where) == 2 &&
              strcmp(cJSON_GetArrayItem(where, 0)->valuestring, "a") == 0 &&
              strcmp(cJSON_GetArrayItem(where, 1)->valuestring, "b") == 0,
          "nodes: %s", sol_buf_cstr(&out));
    CHECK(strcmp(name_at(models, 0, "node"), "a") == 0 ||
              strcmp(name_at(models, 0, "node"), "b") == 0,
          "node field");
    cJSON_Delete(j);
    sol_buf_clear(&out);

    CHECK(sol_aggregate_v1_models(&t, NULL, &out) == 0, "v1 models");
    j = parse(&out);
    CHECK(strcmp(cJSON_GetObjectItemCaseSensitive(j, "object")->valuestring, "list") == 0, "list");
    cJSON *data = cJSON_GetObjectItemCaseSensitive(j, "data");
    CHECK(cJSON_GetArraySize(data) == 3, "v1 entries");
    CHECK(strcmp(name_at(data, 1, "owned_by"), "myns") == 0, "owner from namespace: %s",
          name_at(data, 1, "owned_by"));
    CHECK(strcmp(name_at(data, 0, "owned_by"), "library") == 0, "default owner");
    CHECK(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(data, 0), "created")->valuedouble ==
              1735689600,
          "created in seconds");
    cJSON_Delete(j);
    sol_buf_clear(&out);

    CHECK(sol_aggregate_v1_model(&t, NULL, "llama3.2", &out) == 1 &&
              strstr(sol_buf_cstr(&out), "\"id\":\"llama3.2\""),
          "lookup by short name, the name echoed as Ollama does: %s", sol_buf_cstr(&out));
    sol_buf_clear(&out);
    CHECK(sol_aggregate_v1_model(&t, NULL, "only-on-c", &out) == 0, "down node's model");
    CHECK(sol_aggregate_v1_model(&t, NULL, "bad name!", &out) == 0, "invalid name");

    /* A key limited to some models sees only those, whatever the spelling
     * of its globs ("llama3.2" without the tag Ollama lists it with). */
    char *globs[] = {"llama3.2"};
    struct sol_auth_key limited = {.name = "limited", .models = globs, .n_models = 1};
    sol_buf_clear(&out);
    CHECK(sol_aggregate_tags(&t, &limited, &out) == 0, "tags for a key");
    j = parse(&out);
    models = cJSON_GetObjectItemCaseSensitive(j, "models");
    CHECK(cJSON_GetArraySize(models) == 1 &&
              strcmp(name_at(models, 0, "name"), "llama3.2:latest") == 0,
          "key sees its model only: %.*s", (int)out.len, out.data);
    cJSON_Delete(j);
    sol_buf_clear(&out);
    CHECK(sol_aggregate_v1_models(&t, &limited, &out) == 0 && !strstr(sol_buf_cstr(&out), "tool") &&
              strstr(sol_buf_cstr(&out), "llama3.2"),
          "v1 models for a key: %s", sol_buf_cstr(&out));
    sol_buf_clear(&out);
    CHECK(sol_aggregate_ps(&t, &limited, &out) == 0 && strstr(sol_buf_cstr(&out), "llama3.2"),
          "ps for a key: %s", sol_buf_cstr(&out));
    sol_buf_clear(&out);
    CHECK(sol_aggregate_v1_model(&t, &limited, "myns/tool:7b", &out) == 0 && out.len == 0,
          "another model is absent for the key");
    char *ns_globs[] = {"myns/*"};
    struct sol_auth_key ns = {.name = "ns", .models = ns_globs, .n_models = 1};
    sol_buf_clear(&out);
    CHECK(sol_aggregate_tags(&t, &ns, &out) == 0 && strstr(sol_buf_cstr(&out), "myns/tool:7b") &&
              !strstr(sol_buf_cstr(&out), "llama3.2"),
          "namespace glob: %s", sol_buf_cstr(&out));
    struct sol_auth_key all = {.name = "all"};
    sol_buf_clear(&out);
    CHECK(sol_aggregate_tags(&t, &all, &out) == 0 && strstr(sol_buf_cstr(&out), "myns/tool:7b") &&
              strstr(sol_buf_cstr(&out), "old:1b"),
          "a key with no model list sees all");

    /* What a restricted key may see by name (#14 item 10), and the
     * coordinator's status as it sees it. */
    char *llama_only[] = {"llama3.2*"};
    struct sol_auth_key team = {.name = "team", .models = llama_only, .n_models = 1};
    CHECK(sol_model_visible(&team, "llama3.2:latest") && sol_model_visible(&team, "llama3.2") &&
              !sol_model_visible(&team, "qwen2.5:7b") && !sol_model_visible(&team, ""),
          "visible");
    CHECK(sol_model_visible(NULL, "qwen2.5:7b") && sol_model_visible(&all, "qwen2.5:7b"),
          "unrestricted");
    CHECK(sol_key_restricted(&team) && !sol_key_restricted(&all) && !sol_key_restricted(NULL),
          "restricted");
    const char *status =
        "{\"enabled\":true,\"rpc_server_binary\":\"/opt/gguf-bin/ggml-rpc-server\","
        "\"rpc_server_found\":\"ggml-rpc-server beside llama-server\","
        "\"backends\":[{\"address\":\"10.0.0.5:50052\",\"state\":\"down\","
        "\"last_error\":\"gguf-err: connection closed\"}],"
        "\"coordinator\":{\"state\":\"ready\",\"model\":\"big:405b\","
        "\"gguf\":\"/srv/m.gguf\",\"reason\":\"big:405b loaded\","
        "\"last_exit\":\"\",\"last_log_lines\":[\"big:405b\"],"
        "\"recovery\":\"relaunched big:405b over 1 backend(s)\"}}";
    cJSON *rpc = cJSON_Parse(status);
    sol_aggregate_filter_rpc(rpc, &all);
    char *text = cJSON_PrintUnformatted(rpc);
    CHECK(text && strstr(text, "/srv/m.gguf") && strstr(text, "\"model\":\"big:405b\""),
          "unrestricted keeps all: %s", text);
    free(text);
    sol_aggregate_filter_rpc(rpc, &team);
    text = cJSON_PrintUnformatted(rpc);
    CHECK(text && !strstr(text, "big:405b") && !strstr(text, "gguf") &&
              strstr(text, "\"state\":\"ready\"") && strstr(text, "10.0.0.5") &&
              strstr(text, "\"state\":\"down\"") && !strstr(text, "rpc_server"),
          "restricted: %s", text);
    free(text);
    cJSON_Delete(rpc);

    /* Nothing routable: empty lists, still valid JSON. */
    a.state = b.state = SOL_NODE_DOWN;
    sol_buf_clear(&out);
    CHECK(sol_aggregate_tags(&t, NULL, &out) == 0 && out.len == 13 &&
              memcmp(out.data, "{\"models\":[]}", 13) == 0,
          "empty: %.*s", (int)out.len, out.data);
    sol_buf_free(&out);
    sol_node_models_free(&a);
    sol_node_models_free(&b);
    sol_node_models_free(&c);
    return check_summary();
}
