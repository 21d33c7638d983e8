/*
 * test_translate.c - Ollama <-> llama-server translation: request mapping
 * (options, format, load-only requests, bad bodies), SSE -> NDJSON line by
 * line as bytes arrive (one byte at a time included), the final line's
 * metrics from `timings`, stream:false, /completion's stop event, errors
 * in the stream and in the body, the size bounds, embeddings, and random
 * input fed in random pieces (every output line is valid JSON).
 */
#include "check.h"

#include "base/translate.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t fake_mono;
static uint64_t wall(void *ud)
{
    (void)ud;
    return 1700000000123456789ull;
}
static uint64_t mono(void *ud)
{
    (void)ud;
    return fake_mono;
}

static cJSON *map(enum sol_tr_kind k, const char *body, int *rc)
{
    struct sol_buf out = {0};
    char err[256] = "";
    *rc = sol_translate_request(k, body, strlen(body), &out, err, sizeof err);
    cJSON *j = *rc == 0 ? cJSON_ParseWithLength(out.data, out.len) : NULL;
    sol_buf_free(&out);
    return j;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1e300;
}

static void test_request_mapping(void)
{
    int rc;
    cJSON *j = map(SOL_TR_CHAT,
                   "{\"model\":\"big:70b\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                   "{\"role\":\"user\",\"content\":\"hi\",\"images\":[\"x\"]}],\"stream\":false,"
                   "\"keep_alive\":\"5m\",\"format\":\"json\",\"options\":{\"temperature\":0.5,"
                   "\"top_k\":3,\"top_p\":0.9,\"min_p\":0.1,\"num_predict\":42,\"stop\":[\"a\","
                   "\"b\"],\"seed\":9,\"repeat_penalty\":1.1,\"presence_penalty\":0.2,"
                   "\"frequency_penalty\":0.3,\"num_ctx\":8192,\"mirostat\":1}}",
                   &rc);
    CHECK(rc == 0 && j, "chat maps");
    CHECK(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")), "always streamed upstream");
    CHECK(num(j, "temperature") == 0.5 && num(j, "top_k") == 3 && num(j, "top_p") == 0.9 &&
              num(j, "min_p") == 0.1 && num(j, "seed") == 9 && num(j, "repeat_penalty") == 1.1 &&
              num(j, "presence_penalty") == 0.2 && num(j, "frequency_penalty") == 0.3,
          "sampling options");
    CHECK(num(j, "max_tokens") == 42 && !cJSON_GetObjectItem(j, "n_predict"), "num_predict");
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(j, "stop")) == 2, "stop");
    CHECK(!cJSON_GetObjectItem(j, "num_ctx") && !cJSON_GetObjectItem(j, "mirostat") &&
              !cJSON_GetObjectItem(j, "keep_alive"),
          "unknown options ignored");
    const cJSON *rf = cJSON_GetObjectItem(j, "response_format");
    CHECK(rf && strcmp(cJSON_GetObjectItem(rf, "type")->valuestring, "json_object") == 0, "json");
    const cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    CHECK(cJSON_GetArraySize(msgs) == 2 &&
              strcmp(cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "content")->valuestring,
                     "hi") == 0 &&
              !cJSON_GetObjectItem(cJSON_GetArrayItem(msgs, 1), "images"),
          "messages");
    cJSON_Delete(j);

    j = map(SOL_TR_CHAT,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
            "\"format\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}}}}",
            &rc);
    rf = cJSON_GetObjectItem(j, "response_format");
    CHECK(rc == 0 && rf &&
              strcmp(cJSON_GetObjectItem(rf, "type")->valuestring, "json_schema") == 0 &&
              cJSON_GetObjectItem(
                  cJSON_GetObjectItem(cJSON_GetObjectItem(rf, "json_schema"), "schema"),
                  "properties"),
          "schema format");
    cJSON_Delete(j);

    j = map(SOL_TR_GENERATE,
            "{\"model\":\"m\",\"prompt\":\"p\",\"system\":\"sys\",\"format\":\"json\","
            "\"options\":{\"num_predict\":5,\"stop\":\"x\"}}",
            &rc);
    CHECK(rc == 0 && num(j, "n_predict") == 5 && !cJSON_GetObjectItem(j, "max_tokens"),
          "n_predict");
    CHECK(strcmp(cJSON_GetObjectItem(j, "prompt")->valuestring, "sys\n\np") == 0, "system first");
    CHECK(cJSON_IsObject(cJSON_GetObjectItem(j, "json_schema")), "json -> json_schema");
    CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "stop")), "stop string");
    cJSON_Delete(j);

    j = map(SOL_TR_EMBED, "{\"model\":\"m\",\"input\":[\"a\",\"b\"],\"truncate\":true}", &rc);
    CHECK(rc == 0 && cJSON_GetArraySize(cJSON_GetObjectItem(j, "input")) == 2 &&
              !cJSON_GetObjectItem(j, "stream"),
          "embed");
    cJSON_Delete(j);

    map(SOL_TR_CHAT, "{\"model\":\"m\",\"messages\":[]}", &rc);
    CHECK(rc == 1, "empty messages: load only");
    map(SOL_TR_CHAT, "{\"model\":\"m\"}", &rc);
    CHECK(rc == 1, "no messages: load only");
    map(SOL_TR_GENERATE, "{\"model\":\"m\",\"prompt\":\"\"}", &rc);
    CHECK(rc == 1, "empty prompt: load only");
    map(SOL_TR_CHAT, "[1]", &rc);
    CHECK(rc == -1, "not an object");
    map(SOL_TR_CHAT, "{\"messages\":{}}", &rc);
    CHECK(rc == -1, "messages not an array");
    map(SOL_TR_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", &rc);
    CHECK(rc == -1, "no role");
    map(SOL_TR_GENERATE, "{\"prompt\":3}", &rc);
    CHECK(rc == -1, "prompt not a string");
    map(SOL_TR_EMBED, "{\"input\":3}", &rc);
    CHECK(rc == -1, "input not a string");
}

static const char CHAT_SSE[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null}}]}\n\n"
    ": ping\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\\"w\\\"\"}}]}\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"length\"}],"
    "\"usage\":{\"completion_tokens\":2},\"timings\":{\"cache_n\":3,\"prompt_n\":7,"
    "\"prompt_ms\":12.5,\"predicted_n\":2,\"predicted_ms\":40.25}}\n\n"
    "data: [DONE]\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"after\"}}]}\n\n";

/* Feeds `in` in pieces of `step` bytes; returns all output. */
static void run(struct sol_translate *t, const char *in, size_t len, size_t step,
                struct sol_buf *out)
{
    for (size_t i = 0; i < len; i += step) {
        size_t n = len - i < step ? len - i : step;
        sol_translate_feed(t, in + i, n, out);
    }
    sol_translate_finish(t, out);
}

static int count_lines(const struct sol_buf *b)
{
    int n = 0;
    for (size_t i = 0; i < b->len; i++)
        n += b->data[i] == '\n';
    return n;
}

static cJSON *line_at(const struct sol_buf *b, int k)
{
    const char *p = b->data;
    for (int i = 0; i < k; i++)
        p = strchr(p, '\n') + 1;
    const char *e = strchr(p, '\n');
    return cJSON_ParseWithLength(p, e ? (size_t)(e - p) : strlen(p));
}

static void test_stream_chat(void)
{
    for (size_t step = 1; step <= sizeof CHAT_SSE; step = step * 3 + 1) {
        struct sol_translate t;
        fake_mono = 1000;
        sol_translate_init(&t, SOL_TR_CHAT, 1, "big:70b", wall, mono, NULL);
        t.load_ns = 77;
        sol_translate_status(&t, 200);
        CHECK(strcmp(sol_translate_content_type(&t), "application/x-ndjson") == 0, "ndjson");
        fake_mono = 1000 + 5000000;
        struct sol_buf out = {0};
        run(&t, CHAT_SSE, sizeof CHAT_SSE - 1, step, &out);
        CHECK(count_lines(&out) == 3, "step %zu: %d lines: %.*s", step, count_lines(&out),
              (int)out.len, out.data);
        cJSON *a = line_at(&out, 0), *b = line_at(&out, 1), *fin = line_at(&out, 2);
        CHECK(
            a && strcmp(
                     cJSON_GetObjectItem(cJSON_GetObjectItem(a, "message"), "content")->valuestring,
                     "Hel") == 0,
            "first chunk");
        CHECK(
            b && strcmp(
                     cJSON_GetObjectItem(cJSON_GetObjectItem(b, "message"), "content")->valuestring,
                     "lo \"w\"") == 0,
            "second chunk (CRLF, escapes)");
        CHECK(a && cJSON_IsFalse(cJSON_GetObjectItem(a, "done")) &&
                  strcmp(cJSON_GetObjectItem(a, "model")->valuestring, "big:70b") == 0 &&
                  strcmp(cJSON_GetObjectItem(a, "created_at")->valuestring,
                         "2023-11-14T22:13:20.123456789Z") == 0,
              "chunk fields");
        CHECK(fin && cJSON_IsTrue(cJSON_GetObjectItem(fin, "done")), "final");
        CHECK(fin && strcmp(cJSON_GetObjectItem(fin, "done_reason")->valuestring, "length") == 0,
              "length");
        CHECK(num(fin, "prompt_eval_count") == 10, "cache_n + prompt_n");
        CHECK(num(fin, "prompt_eval_duration") == 12500000, "prompt_ms * 1e6");
        CHECK(num(fin, "eval_count") == 2, "predicted_n");
        CHECK(num(fin, "eval_duration") == 40250000, "predicted_ms * 1e6");
        CHECK(num(fin, "total_duration") == 5000000, "daemon's clock");
        CHECK(num(fin, "load_duration") == 77, "load");
        cJSON_Delete(a);
        cJSON_Delete(b);
        cJSON_Delete(fin);
        sol_buf_free(&out);
        sol_translate_free(&t);
    }
}

static void test_incremental(void)
{
    /* A line is out as soon as its event's newline arrives, not before. */
    struct sol_translate t;
    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    struct sol_buf out = {0};
    const char *ev = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";
    sol_translate_feed(&t, ev, strlen(ev), &out);
    CHECK(out.len == 0, "partial event: nothing yet");
    sol_translate_feed(&t, "\n", 1, &out);
    CHECK(count_lines(&out) == 1, "complete event: its line");
    sol_translate_feed(&t, "\n", 1, &out);
    CHECK(count_lines(&out) == 1, "blank line: nothing more");
    sol_buf_free(&out);
    sol_translate_free(&t);
}

static void test_non_stream_and_generate(void)
{
    struct sol_translate t;
    sol_translate_init(&t, SOL_TR_CHAT, 0, "m", wall, mono, NULL);
    sol_translate_status(&t, 200);
    CHECK(strncmp(sol_translate_content_type(&t), "application/json", 16) == 0, "json");
    struct sol_buf out = {0};
    run(&t, CHAT_SSE, sizeof CHAT_SSE - 1, 7, &out);
    cJSON *o = cJSON_ParseWithLength(out.data, out.len);
    CHECK(o && count_lines(&out) == 0, "one object: %.*s", (int)out.len, out.data);
    CHECK(o &&
              strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "message"), "content")->valuestring,
                     "Hello \"w\"") == 0,
          "whole text");
    CHECK(num(o, "eval_count") == 2 && cJSON_IsTrue(cJSON_GetObjectItem(o, "done")), "metrics");
    cJSON_Delete(o);
    sol_buf_free(&out);
    sol_translate_free(&t);

    static const char GEN[] =
        "data: {\"content\":\"a\",\"stop\":false}\n\n"
        "data: {\"content\":\"b\",\"stop\":false}\n\n"
        "data: {\"content\":\"\",\"stop\":true,\"stop_type\":\"eos\",\"timings\":{\"cache_n\":0,"
        "\"prompt_n\":4,\"prompt_ms\":1,\"predicted_n\":2,\"predicted_ms\":2}}\n\n";
    sol_translate_init(&t, SOL_TR_GENERATE, 1, "m", wall, mono, NULL);
    run(&t, GEN, sizeof GEN - 1, 5, &out);
    CHECK(count_lines(&out) == 3, "generate lines");
    cJSON *fin = line_at(&out, 2), *first = line_at(&out, 0);
    CHECK(first && strcmp(cJSON_GetObjectItem(first, "response")->valuestring, "a") == 0,
          "response field");
    CHECK(fin && strcmp(cJSON_GetObjectItem(fin, "done_reason")->valuestring, "stop") == 0 &&
              num(fin, "prompt_eval_count") == 4 && num(fin, "eval_duration") == 2000000,
          "eos -> stop");
    cJSON_Delete(fin);
    cJSON_Delete(first);
    sol_buf_free(&out);
    sol_translate_free(&t);

    static const char LIMIT[] =
        "data: {\"content\":\"a\",\"stop\":true,\"stop_type\":\"limit\"}\n\n";
    sol_translate_init(&t, SOL_TR_GENERATE, 0, "m", wall, mono, NULL);
    run(&t, LIMIT, sizeof LIMIT - 1, 100, &out);
    o = cJSON_ParseWithLength(out.data, out.len);
    CHECK(o && strcmp(cJSON_GetObjectItem(o, "done_reason")->valuestring, "length") == 0 &&
              strcmp(cJSON_GetObjectItem(o, "response")->valuestring, "a") == 0,
          "limit -> length");
    cJSON_Delete(o);
    sol_buf_free(&out);
    sol_translate_free(&t);

    /* A stream cut before its final event still gets a final line. */
    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    static const char CUT[] = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}";
    run(&t, CUT, sizeof CUT - 1, 100, &out);
    CHECK(count_lines(&out) == 2, "last line without newline, then the final line");
    sol_buf_free(&out);
    sol_translate_free(&t);
}

static void test_errors(void)
{
    struct sol_translate t;
    struct sol_buf out = {0};
    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    static const char MID[] = "data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}]}\n\n"
                              "data: {\"error\":{\"code\":500,\"message\":\"boom\",\"type\":"
                              "\"server_error\"}}\n\n"
                              "data: [DONE]\n\n";
    run(&t, MID, sizeof MID - 1, 3, &out);
    CHECK(count_lines(&out) == 2, "chunk then error line");
    cJSON *e = line_at(&out, 1);
    CHECK(e && strcmp(cJSON_GetObjectItem(e, "error")->valuestring, "boom") == 0, "error line");
    cJSON_Delete(e);
    sol_buf_free(&out);
    sol_translate_free(&t);

    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    sol_translate_status(&t, 400);
    CHECK(strncmp(sol_translate_content_type(&t), "application/json", 16) == 0, "error is json");
    static const char BODY[] = "{\"error\":{\"code\":400,\"message\":\"the request exceeds the "
                               "available context size\",\"type\":\"exceed_context_size_error\"}}";
    run(&t, BODY, sizeof BODY - 1, 4, &out);
    e = cJSON_ParseWithLength(out.data, out.len);
    CHECK(e && strstr(cJSON_GetObjectItem(e, "error")->valuestring, "context size"), "error body");
    cJSON_Delete(e);
    sol_buf_free(&out);
    sol_translate_free(&t);

    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    sol_translate_status(&t, 503);
    run(&t, "not json", 8, 100, &out);
    e = cJSON_ParseWithLength(out.data, out.len);
    CHECK(e && strstr(cJSON_GetObjectItem(e, "error")->valuestring, "not json"), "text error");
    cJSON_Delete(e);
    sol_buf_free(&out);
    sol_translate_free(&t);

    /* An event over the line bound ends the translation with an error. */
    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    size_t big = SOL_TR_MAX_LINE + 16;
    char *junk = malloc(big);
    memset(junk, 'a', big);
    int rc = sol_translate_feed(&t, junk, big, &out);
    free(junk);
    CHECK(rc == -1 && out.len && strstr(out.data, "size limit"), "line bound");
    sol_buf_free(&out);
    sol_translate_free(&t);
}

static void test_tool_calls(void)
{
    static const char TOOLS[] =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
        "\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
        "{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":"
        "{\"name\":\"noop\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: [DONE]\n\n";
    for (int stream = 0; stream <= 1; stream++) {
        struct sol_translate t;
        struct sol_buf out = {0};
        sol_translate_init(&t, SOL_TR_CHAT, stream, "m", wall, mono, NULL);
        run(&t, TOOLS, sizeof TOOLS - 1, 11, &out);
        CHECK(count_lines(&out) == (stream ? 2 : 0), "stream %d: %.*s", stream, (int)out.len,
              out.data);
        cJSON *o = stream ? line_at(&out, 0) : cJSON_ParseWithLength(out.data, out.len);
        const cJSON *calls = cJSON_GetObjectItem(cJSON_GetObjectItem(o, "message"), "tool_calls");
        CHECK(cJSON_GetArraySize(calls) == 2, "two calls");
        const cJSON *f0 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 0), "function");
        const cJSON *f1 = cJSON_GetObjectItem(cJSON_GetArrayItem(calls, 1), "function");
        CHECK(f0 && strcmp(cJSON_GetObjectItem(f0, "name")->valuestring, "get_weather") == 0,
              "name");
        CHECK(f0 && strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(f0, "arguments"), "city")
                               ->valuestring,
                           "Paris") == 0,
              "arguments joined and parsed into an object");
        CHECK(f1 && cJSON_IsObject(cJSON_GetObjectItem(f1, "arguments")), "no arguments: {}");
        if (stream) {
            cJSON *fin = line_at(&out, 1);
            CHECK(fin && cJSON_IsTrue(cJSON_GetObjectItem(fin, "done")) &&
                      strcmp(cJSON_GetObjectItem(fin, "done_reason")->valuestring, "stop") == 0,
                  "final line after the calls");
            cJSON_Delete(fin);
        }
        cJSON_Delete(o);
        sol_buf_free(&out);
        sol_translate_free(&t);
    }
    /* An index past the bound ends the translation with an error. */
    struct sol_translate t;
    struct sol_buf out = {0};
    sol_translate_init(&t, SOL_TR_CHAT, 1, "m", wall, mono, NULL);
    static const char BAD[] =
        "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":99}]}}]}\n\n";
    run(&t, BAD, sizeof BAD - 1, 100, &out);
    CHECK(strstr(out.data, "tool calls") != NULL, "%.*s", (int)out.len, out.data);
    sol_buf_free(&out);
    sol_translate_free(&t);
}

static void test_embed(void)
{
    struct sol_translate t;
    struct sol_buf out = {0};
    sol_translate_init(&t, SOL_TR_EMBED, 0, "m", wall, mono, NULL);
    static const char E[] = "{\"object\":\"list\",\"data\":[{\"index\":1,\"embedding\":[3,4]},"
                            "{\"index\":0,\"embedding\":[1,2]}],\"usage\":{\"prompt_tokens\":6}}";
    run(&t, E, sizeof E - 1, 9, &out);
    cJSON *o = cJSON_ParseWithLength(out.data, out.len);
    const cJSON *em = cJSON_GetObjectItem(o, "embeddings");
    CHECK(cJSON_GetArraySize(em) == 2 &&
              cJSON_GetArrayItem(cJSON_GetArrayItem(em, 0), 0)->valuedouble == 1 &&
              cJSON_GetArrayItem(cJSON_GetArrayItem(em, 1), 0)->valuedouble == 3,
          "in input order: %.*s", (int)out.len, out.data);
    CHECK(num(o, "prompt_eval_count") == 6, "usage");
    cJSON_Delete(o);
    sol_buf_free(&out);
    sol_translate_free(&t);
}

static void test_random(void)
{
    static const char *const parts[] = {
        "data: ",
        "{\"choices\":[{\"delta\":{\"content\":\"q\"}}]}",
        "\n",
        "\r",
        ":",
        "[DONE]",
        "{\"error\":3}",
        "{\"timings\":{\"prompt_n\":-5,\"predicted_ms\":1e300}}",
        "{",
        "\"",
        "{\"content\":\"z\",\"stop\":true}",
        "\\u0000",
        "\xff\xfe",
    };
    unsigned seed = 7;
    for (int round = 0; round < 3000; round++) {
        struct sol_buf in = {0}, out = {0};
        for (int k = 0; k < 30; k++) {
            seed = seed * 1103515245u + 12345u;
            sol_buf_append_str(&in, parts[(seed >> 16) % (sizeof parts / sizeof parts[0])]);
        }
        struct sol_translate t;
        seed = seed * 1103515245u + 12345u;
        sol_translate_init(&t, (seed >> 8) & 1 ? SOL_TR_CHAT : SOL_TR_GENERATE, (seed >> 9) & 1,
                           "m", wall, mono, NULL);
        run(&t, in.data, in.len, 1 + (seed >> 16) % 13, &out);
        /* Every output line (or the one object) is valid JSON. */
        const char *p = out.data ? out.data : "";
        size_t left = out.len;
        int ok = 1;
        while (left) {
            const char *nl = memchr(p, '\n', left);
            size_t n = nl ? (size_t)(nl - p) : left;
            cJSON *j = cJSON_ParseWithLength(p, n);
            ok &= j != NULL;
            cJSON_Delete(j);
            if (!nl)
                break;
            left -= n + 1;
            p = nl + 1;
        }
        CHECK(ok && out.len > 0, "round %d: %.*s", round, (int)out.len, out.data);
        sol_buf_free(&in);
        sol_buf_free(&out);
        sol_translate_free(&t);
    }
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    test_request_mapping();
    test_stream_chat();
    test_incremental();
    test_non_stream_and_generate();
    test_errors();
    test_tool_calls();
    test_embed();
    test_random();
    return check_summary();
}
