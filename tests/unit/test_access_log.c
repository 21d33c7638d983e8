/*
 * Unit test of the access log line (access_log.c) and the Server-Timing
 * value (http_reply.c): every documented field in both formats, a path
 * with spaces, quotes, '=' and newlines cannot forge fields or lines in
 * text mode and is valid JSON in json mode, absent model/node are "-" or
 * null, retries are attempts - 1; Server-Timing leaves out negative entries
 * and never overflows its buffer.
 */
#include "base/access_log.h"
#include "base/http_reply.h"
#include "sollol/log.h"

#include "check.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static const struct timespec when = {1795764350, 123456789}; /* 2026-11-27T07:25:50.123Z */

static char *format(const struct sol_access_entry *e, int json)
{
    struct sol_buf b = {0};
    CHECK(sol_access_format(&b, e, json, &when) == 0, "format");
    char *s = strdup(sol_buf_cstr(&b));
    sol_buf_free(&b);
    return s;
}

int main(void)
{
    sol_log_set_tag("sollold");
    const struct sol_route *chat = sol_route_find("/api/chat");
    struct sol_metrics_sample s = {.route = chat,
                                   .model = "llama3.2:3b",
                                   .node = "gpu-a",
                                   .status = 200,
                                   .duration_s = 1.5,
                                   .ttfb_s = 0.0123,
                                   .queue_s = 0.25,
                                   .attempts = 2,
                                   .bytes_out = 4096,
                                   .eval_count = 42,
                                   .prompt_eval_count = 7};
    struct sol_access_entry e = {.id = "abc123",
                                 .client = "127.0.0.1",
                                 .method = "POST",
                                 .path = "/api/chat",
                                 .s = &s,
                                 .client_gone = 0};

    char *t = format(&e, 0);
    CHECK(strcmp(t, "2026-11-27T07:25:50.123Z sollold info access id=abc123 client=127.0.0.1 "
                    "method=POST path=/api/chat model=llama3.2:3b node=gpu-a status=200 retries=1 "
                    "queue_ms=250 ttfb_ms=12.3 duration_ms=1500.0 prompt_tokens=7 gen_tokens=42 "
                    "bytes=4096\n") == 0,
          "text line: %s", t);
    free(t);

    char *j = format(&e, 1);
    CHECK(j[strlen(j) - 1] == '\n' && strchr(j, '\n') == j + strlen(j) - 1, "one json line");
    cJSON *o = cJSON_Parse(j);
    CHECK(o != NULL, "json parses: %s", j);
    if (o) {
        CHECK(!strcmp(cJSON_GetObjectItem(o, "time")->valuestring, "2026-11-27T07:25:50.123Z"),
              "time");
        CHECK(!strcmp(cJSON_GetObjectItem(o, "kind")->valuestring, "access"), "kind");
        CHECK(
            !strcmp(cJSON_GetObjectItem(o, "msg")->valuestring, "POST /api/chat 200 gpu-a 1500 ms"),
            "msg");
        CHECK(!strcmp(cJSON_GetObjectItem(o, "node")->valuestring, "gpu-a"), "node");
        CHECK(cJSON_GetObjectItem(o, "status")->valuedouble == 200, "status");
        CHECK(cJSON_GetObjectItem(o, "retries")->valuedouble == 1, "retries");
        CHECK(cJSON_GetObjectItem(o, "queue_ms")->valuedouble == 250, "queue");
        CHECK(cJSON_GetObjectItem(o, "ttfb_ms")->valuedouble > 12.2 &&
                  cJSON_GetObjectItem(o, "ttfb_ms")->valuedouble < 12.4,
              "ttfb");
        CHECK(cJSON_GetObjectItem(o, "duration_ms")->valuedouble == 1500, "duration");
        CHECK(cJSON_GetObjectItem(o, "gen_tokens")->valuedouble == 42, "gen");
        CHECK(cJSON_GetObjectItem(o, "prompt_tokens")->valuedouble == 7, "prompt");
        CHECK(cJSON_GetObjectItem(o, "bytes")->valuedouble == 4096, "bytes");
        CHECK(cJSON_IsFalse(cJSON_GetObjectItem(o, "client_gone")), "client_gone");
        cJSON_Delete(o);
    }
    free(j);

    /* Hostile path, no model or node, nothing sent, client gone. */
    struct sol_metrics_sample f = {.route = chat, .model = "", .node = "", .attempts = 0};
    struct sol_access_entry h = {.id = "x",
                                 .client = "::1",
                                 .method = "POST",
                                 .path = "/api/chat\n2026 fake status=200 \"q\"\\%",
                                 .s = &f,
                                 .client_gone = 1};
    t = format(&h, 0);
    CHECK(strchr(t, '\n') == t + strlen(t) - 1, "one text line: %s", t);
    CHECK(strstr(t, " path=/api/chat%0A2026%20fake%20status%3D200%20%22q%22%5C%25 model=- "
                    "node=- status=0 retries=0 ") != NULL,
          "escaped path, dashes: %s", t);
    CHECK(strstr(t, " client_gone\n") != NULL, "client_gone flag: %s", t);
    free(t);
    j = format(&h, 1);
    o = cJSON_Parse(j);
    CHECK(o != NULL, "hostile json parses: %s", j);
    if (o) {
        CHECK(!strcmp(cJSON_GetObjectItem(o, "path")->valuestring, h.path), "path round trip");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "model")), "model null");
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(o, "node")), "node null");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItem(o, "client_gone")), "client_gone");
        cJSON_Delete(o);
    }
    free(j);

    /* Server-Timing. */
    char st[96];
    CHECK(sol_server_timing_format(st, sizeof st, 3, 12.25, 40) > 0 &&
              !strcmp(st, "queue;dur=3.0, upstream;desc=\"first byte\";dur=12.2, total;dur=40.0"),
          "all three: %s", st);
    CHECK(sol_server_timing_format(st, sizeof st, 0, -1, -1) > 0 && !strcmp(st, "queue;dur=0.0"),
          "queue only: %s", st);
    CHECK(sol_server_timing_format(st, sizeof st, -1, -1, -1) == 0 && st[0] == '\0', "none");
    char small[20];
    size_t n = sol_server_timing_format(small, sizeof small, 1, 2, 3);
    CHECK(n == strlen(small) && n < sizeof small && !strcmp(small, "queue;dur=1.0"),
          "cut at a whole entry: %s", small);

    /* The client address of no connection. */
    char addr[8];
    sol_access_client_address(NULL, addr, sizeof addr);
    CHECK(!strcmp(addr, "-"), "no connection");
    return check_summary();
}
