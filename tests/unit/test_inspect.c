/*
 * Unit test of what the request lifecycle decides before any node is
 * involved: the route table, body inspection, error bodies and the buffer
 * they are built in.
 */
#include "sollol/buf.h"
#include "base/http_reply.h"
#include "base/inspect.h"
#include "base/routes.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static int inspect(const char *body, int needs_model, struct sol_body_info *bi, char *err)
{
    return sol_inspect_body(body, strlen(body), needs_model, 64, bi, err, 256);
}

static void test_routes(void)
{
    const struct sol_route *r = sol_route_find("/api/chat");
    CHECK(r && r->kind == SOL_ROUTE_PROXY && (r->methods & SOL_M_POST) &&
              (r->flags & SOL_RF_STREAM_DEFAULT) && !(r->flags & SOL_RF_OPENAI),
          "chat");
    r = sol_route_find("/v1/chat/completions");
    CHECK(r && (r->flags & SOL_RF_OPENAI) && !(r->flags & SOL_RF_STREAM_DEFAULT), "openai chat");
    r = sol_route_find("/v1/responses");
    CHECK(r && r->kind == SOL_ROUTE_PROXY && (r->flags & SOL_RF_NEEDS_MODEL), "generic v1");
    CHECK(sol_route_find("/v1/models")->kind == SOL_ROUTE_V1_MODELS, "v1 models");
    CHECK(sol_route_find("/v1/models/llama3.2")->kind == SOL_ROUTE_V1_MODEL, "v1 model");
    CHECK(sol_route_find("/api/blobs/sha256:00")->kind == SOL_ROUTE_PINNED, "blobs");
    CHECK(sol_route_find("/api/tags")->kind == SOL_ROUTE_TAGS, "tags");
    CHECK(sol_route_find("/api/delete")->methods == SOL_M_DELETE, "delete");
    CHECK(!sol_route_find("/api/nope") && !sol_route_find("/v1/") && !sol_route_find("") &&
              !sol_route_find("/api/blobs/") && !sol_route_find("/api/chat/"),
          "unknown paths");
    char allow[64];
    sol_route_allow_header(sol_route_find("/"), allow, sizeof allow);
    CHECK(strcmp(allow, "GET, HEAD") == 0, "allow '%s'", allow);
    CHECK(sol_method_bit("POST") == SOL_M_POST && sol_method_bit("PATCH") == SOL_M_OTHER &&
              sol_method_bit("post") == SOL_M_OTHER,
          "methods are case-sensitive");
}

static void test_inspect(void)
{
    struct sol_body_info bi;
    char err[256];
    CHECK(inspect("{\"model\":\"llama3.2\",\"stream\":false,\"options\":{\"num_predict\":42},"
                  "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
                  1, &bi, err) == 0,
          "%s", err);
    CHECK(strcmp(bi.model, "llama3.2") == 0 && bi.stream == 0 && bi.num_predict == 42 &&
              bi.messages.p && bi.messages.type == SOL_JSON_ARRAY,
          "fields");
    CHECK(sol_body_streams(&bi, 1) == 0, "explicit stream false");
    CHECK(inspect("{\"model\":\"m\"}", 1, &bi, err) == 0 && bi.stream == -1 &&
              bi.num_predict == -1 && sol_body_streams(&bi, 1) == 1 &&
              sol_body_streams(&bi, 0) == 0,
          "defaults");
    CHECK(inspect("{\"MODEL\":\"m\"}", 1, &bi, err) == 0 && strcmp(bi.model, "m") == 0,
          "Go matches keys case-insensitively: %s", err);
    CHECK(inspect("{\"mod\\u0065l\":\"m\"}", 1, &bi, err) == 0 && strcmp(bi.model, "m") == 0,
          "escaped key");
    struct {
        const char *body;
        int needs_model;
        const char *msg;
    } bad[] = {
        {"", 1, "missing request body"},
        {"  \n", 1, "missing request body"},
        {"{bad", 1, "invalid JSON"},
        {"[1]", 1, "must be a JSON object"},
        {"{}", 1, "model is required"},
        {"{\"model\":\"\"}", 1, "model is required"},
        {"{\"model\":null}", 1, "model is required"},
        {"{\"model\":7}", 1, "model must be a string"},
        {"{\"model\":\"a\",\"model\":\"b\"}", 1, "duplicate key"},
        {"{\"model\":\"a\",\"Model\":\"b\"}", 1, "duplicate key"},
        {"{\"model\":\"a\",\"stream\":\"yes\"}", 1, "stream must be a boolean"},
        {"{\"model\":\"a\",\"options\":[]}", 1, "options must be an object"},
        {"{\"model\":\"a\\u0000b\"}", 1, "NUL"},
        {"{\"model\":\"a\"} x", 1, "invalid JSON"},
        {"{\"model\":\"\xff\"}", 1, "invalid JSON"},
        {"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]"
         "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
         1, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = inspect(bad[i].body, bad[i].needs_model, &bi, err);
        CHECK(st == 400 && strstr(err, bad[i].msg), "'%s': %d '%s'", bad[i].body, st, err);
    }
    CHECK(inspect("{}", 0, &bi, err) == 0, "model optional where the route says so");
    /* a model name longer than the field */
    char big[400];
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"model\":\"", 10);
    memcpy(big + sizeof big - 3, "\"}", 3);
    CHECK(inspect(big, 1, &bi, err) == 400 && strstr(err, "too long"), "%s", err);
}

/* Ollama's deprecated "name" (pull, push, show, delete, create): model wins. */
static void test_name_alias(void)
{
    struct sol_body_info bi;
    char err[256];
    int both = SOL_INSPECT_NEEDS_MODEL | SOL_INSPECT_NAME_ALIAS;
    CHECK(inspect("{\"name\":\"llama3.2\"}", both, &bi, err) == 0 &&
              strcmp(bi.model, "llama3.2") == 0,
          "name alone: %s", err);
    CHECK(inspect("{\"model\":\"a\",\"name\":\"b\"}", both, &bi, err) == 0 &&
              strcmp(bi.model, "a") == 0,
          "model wins");
    CHECK(inspect("{\"name\":\"b\",\"model\":\"\"}", both, &bi, err) == 0 &&
              strcmp(bi.model, "b") == 0,
          "an empty model gives way (cmp.Or)");
    CHECK(inspect("{\"name\":\"b\"}", SOL_INSPECT_NEEDS_MODEL, &bi, err) == 400 &&
              strcmp(err, "model is required") == 0,
          "no alias on other routes");
    CHECK(inspect("{\"name\":\"a\",\"name\":\"b\"}", both, &bi, err) == 400 &&
              strstr(err, "duplicate"),
          "duplicate name");
    CHECK(inspect("{\"name\":7}", both, &bi, err) == 400 && strstr(err, "must be a string"),
          "typed");
    CHECK(inspect("{\"name\":null}", both, &bi, err) == 400, "null name is no model");
    CHECK(sol_route_find("/api/pull")->flags & SOL_RF_NAME_ALIAS, "pull");
    CHECK(sol_route_find("/api/push")->flags & SOL_RF_NAME_ALIAS, "push");
    CHECK(sol_route_find("/api/show")->flags & SOL_RF_NAME_ALIAS, "show");
    CHECK(sol_route_find("/api/delete")->flags & SOL_RF_NAME_ALIAS, "delete");
    CHECK(sol_route_find("/api/create")->flags & SOL_RF_NAME_ALIAS, "create");
    CHECK(!(sol_route_find("/api/copy")->flags & SOL_RF_NAME_ALIAS), "copy: source/destination");
    CHECK(!(sol_route_find("/api/chat")->flags & SOL_RF_NAME_ALIAS), "chat");
}

static void test_error_bodies(void)
{
    struct sol_buf b = {0};
    CHECK(sol_error_body(&b, 404, 0, "model 'x' not found") == 0 &&
              strcmp(sol_buf_cstr(&b), "{\"error\":\"model 'x' not found\"}") == 0,
          "%s", sol_buf_cstr(&b));
    sol_buf_clear(&b);
    sol_error_body(&b, 404, 1, "gone");
    CHECK(strcmp(sol_buf_cstr(&b), "{\"error\":{\"message\":\"gone\",\"type\":\"not_found_error\","
                                   "\"param\":null,\"code\":null}}") == 0,
          "%s", sol_buf_cstr(&b));
    sol_buf_clear(&b);
    sol_error_body(&b, 502, 0, "q\"\\\n\x01\xff");
    CHECK(strcmp(sol_buf_cstr(&b), "{\"error\":\"q\\\"\\\\\\n\\u0001\xef\xbf\xbd\"}") == 0,
          "escaping: %s", sol_buf_cstr(&b));
    sol_buf_free(&b);
}

static void test_buf(void)
{
    struct sol_buf b = {0};
    for (int i = 0; i < 1000; i++)
        CHECK(sol_buf_appendf(&b, "%04d", i) == 0, "append");
    CHECK(sol_buf_pending(&b) == 4000, "len");
    sol_buf_consume(&b, 3996);
    CHECK(sol_buf_pending(&b) == 4 && memcmp(b.data + b.off, "0999", 4) == 0, "consume");
    size_t cap = b.cap;
    CHECK(sol_buf_reserve(&b, cap - 10) == 0 && b.off == 0 && b.cap == cap,
          "compaction reuses space");
    sol_buf_consume(&b, 4);
    CHECK(b.len == 0 && b.off == 0, "reset when drained");
    sol_buf_free(&b);
}

int main(void)
{
    test_routes();
    test_inspect();
    test_name_alias();
    test_error_bodies();
    test_buf();
    return check_summary();
}
