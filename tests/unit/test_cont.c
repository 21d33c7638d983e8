/* Unit tests of cont.c: judging a body, keeping the text from node lines,
 * the continued body, the rewritten final lines, the bounds. */
#include "check.h"

#include "base/cont.h"
#include "base/inspect.h"

#include <stdio.h>
#include <string.h>

/* The "messages" span of a body, as inspect.c finds it. */
static struct sol_json_span messages_of(const char *body)
{
    struct sol_body_info bi;
    char err[128];
    memset(&bi, 0, sizeof bi);
    int st = sol_inspect_body(body, strlen(body), 1, 64, &bi, err, sizeof err);
    CHECK(st == 0, "inspect %s: %s", body, err);
    return bi.messages;
}

static enum sol_cont_why judge(const char *body, enum sol_cont_api api, int streams, int *whole)
{
    struct sol_json_span m = messages_of(body);
    return sol_cont_judge(body, strlen(body), &m, api, streams, whole);
}

static void test_judge(void)
{
    int whole;
    const char *u = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    struct {
        const char *extra;
        enum sol_cont_api api;
        int streams;
        enum sol_cont_why want;
        int want_whole;
    } cases[] = {
        {"", SOL_CONT_API_CHAT, 1, SOL_CONT_CONTINUED, 0},
        {"", SOL_CONT_API_CHAT, 0, SOL_CONT_CONTINUED, 1},
        {"", SOL_CONT_API_OPENAI, 0, SOL_CONT_CONTINUED, 1},
        {",\"format\":\"json\"", SOL_CONT_API_CHAT, 1, SOL_CONT_FORMAT, 0},
        {",\"FORMAT\":{\"type\":\"object\"}", SOL_CONT_API_CHAT, 1, SOL_CONT_FORMAT, 0},
        {",\"format\":\"\"", SOL_CONT_API_CHAT, 1, SOL_CONT_CONTINUED, 0},
        {",\"format\":null", SOL_CONT_API_CHAT, 1, SOL_CONT_CONTINUED, 0},
        {",\"response_format\":{\"type\":\"json_object\"}", SOL_CONT_API_OPENAI, 1, SOL_CONT_FORMAT,
         0},
        {",\"response_format\":{\"type\":\"text\"}", SOL_CONT_API_OPENAI, 1, SOL_CONT_CONTINUED, 0},
        {",\"logprobs\":true", SOL_CONT_API_OPENAI, 1, SOL_CONT_LOGPROBS, 0},
        {",\"logprobs\":false", SOL_CONT_API_OPENAI, 1, SOL_CONT_CONTINUED, 0},
        {",\"top_logprobs\":3", SOL_CONT_API_CHAT, 1, SOL_CONT_LOGPROBS, 0},
        {",\"tools\":[{\"type\":\"function\"}]", SOL_CONT_API_CHAT, 1, SOL_CONT_CONTINUED, 0},
        {",\"tools\":[{\"type\":\"function\"}]", SOL_CONT_API_CHAT, 0, SOL_CONT_TOOL_CALLS, 0},
        {",\"tools\":[]", SOL_CONT_API_CHAT, 0, SOL_CONT_CONTINUED, 1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(b, sizeof b, "{\"model\":\"m\",%s%s}", u, cases[i].extra);
        enum sol_cont_why w = judge(b, cases[i].api, cases[i].streams, &whole);
        CHECK(w == cases[i].want && whole == cases[i].want_whole, "%s: %s whole %d", b,
              sol_cont_why_name(w), whole);
    }
    CHECK(judge("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\",\"images\":["
                "\"aGk=\"]}]}",
                SOL_CONT_API_CHAT, 1, &whole) == SOL_CONT_IMAGES,
          "images");
    CHECK(judge("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                "\"text\":\"a\"},{\"type\":\"image_url\",\"image_url\":{\"url\":\"x\"}}]}]}",
                SOL_CONT_API_OPENAI, 1, &whole) == SOL_CONT_IMAGES,
          "image part");
    CHECK(judge("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":"
                "\"Assistant\",\"content\":\"The\"}]}",
                SOL_CONT_API_CHAT, 1, &whole) == SOL_CONT_PREFILL,
          "the client's own prefill");
    CHECK(judge("{\"model\":\"m\",\"messages\":[]}", SOL_CONT_API_CHAT, 1, &whole) ==
              SOL_CONT_ROUTE,
          "no messages");
    CHECK(judge("{\"model\":\"m\",\"prompt\":\"x\"}", SOL_CONT_API_CHAT, 1, &whole) ==
              SOL_CONT_ROUTE,
          "generate");
    CHECK(strcmp(sol_cont_why_name(SOL_CONT_NO_NODE), "no_node") == 0 &&
              strcmp(sol_cont_why_name(SOL_CONT_KINDS), "unknown") == 0,
          "names");
}

struct run {
    struct sol_cont *c;
    struct sol_buf out;
    const char *body;
};

static void start(struct run *r, const char *body, enum sol_cont_api api, int whole, size_t cap)
{
    struct sol_json_span m = messages_of(body);
    r->body = body;
    r->c = sol_cont_new(api, whole, cap, body, strlen(body), &m);
    memset(&r->out, 0, sizeof r->out);
    CHECK(r->c != NULL, "new");
    sol_cont_attempt_start(r->c, "a", 1000);
}

static void feed(struct run *r, const char *s, uint64_t now)
{
    /* One byte at a time: lines must not depend on how the bytes come. */
    for (size_t i = 0; s[i]; i++)
        CHECK(sol_cont_feed(r->c, s + i, 1, now, &r->out) == SOL_CONT_FEED_OK, "feed");
}

static void finish(struct run *r)
{
    sol_cont_free(r->c);
    sol_buf_free(&r->out);
}

static const char *out_text(struct run *r)
{
    return sol_buf_cstr(&r->out);
}

/* One streamed line of content t. */
#define TOK(t) LINE_A t LINE_B
#define LINE_A "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\""
#define LINE_B "\"},\"done\":false}\n"

static void test_chat_continued(void)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"options\":{\"num_predict\":10}}";
    struct run r;
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    CHECK(sol_cont_body(r.c) == NULL, "the first attempt sends the client's body");
    feed(&r, TOK("The") TOK(" \\\"cat\\\"") "{\"model\":\"m\",\"mess", 1010);
    CHECK(strcmp(out_text(&r), TOK("The") TOK(" \\\"cat\\\"")) == 0,
          "whole lines only, unchanged: %s", out_text(&r));
    sol_cont_attempt_end(r.c, &r.out); /* a line cut mid-JSON stays unfinished */
    CHECK(strcmp(out_text(&r), TOK("The") TOK(" \\\"cat\\\"")) == 0, "cut line held: %s",
          out_text(&r));
    CHECK(sol_cont_attempt_failed(r.c), "no final line: failed");
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_CONTINUED, "continuable");
    CHECK(sol_cont_next(r.c, 1030) == 0, "next");
    const struct sol_buf *nb = sol_cont_body(r.c);
    const char *want = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{"
                       "\"role\":\"assistant\",\"content\":\"The \\\"cat\\\"\"}],"
                       "\"options\":{\"num_predict\":10,\"num_predict\":8}}";
    CHECK(nb && nb->len == strlen(want) && memcmp(nb->data, want, nb->len) == 0,
          "continued body: %.*s", nb ? (int)nb->len : 0, nb ? nb->data : "");
    sol_buf_clear(&r.out);
    sol_cont_attempt_start(r.c, "b", 1040);
    feed(&r,
         TOK(" sat") "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                     "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":100,"
                     "\"load_duration\":5,\"prompt_eval_count\":9,\"prompt_eval_duration\":10,"
                     "\"eval_count\":1,\"eval_duration\":20}\n",
         1050);
    const char *final =
        TOK(" sat") "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                    "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":30000100,"
                    "\"load_duration\":5,\"prompt_eval_count\":7,\"prompt_eval_duration\":10000010,"
                    "\"eval_count\":3,\"eval_duration\":20,\"sollol_nodes\":[\"a\",\"b\"]}\n";
    CHECK(strcmp(out_text(&r), final) == 0, "merged final line: %s", out_text(&r));
    CHECK(!sol_cont_attempt_failed(r.c), "complete");
    struct sol_cont_stats st;
    sol_cont_stats(r.c, &st);
    CHECK(st.continued == 1 && st.eval_count == 3 && st.prompt_count == 7 && st.have_counts,
          "stats %u %llu %llu", st.continued, (unsigned long long)st.eval_count,
          (unsigned long long)st.prompt_count);
    finish(&r);
}

static void test_final_line_unterminated(void)
{
    /* A node that answers one object without a '\n' (stream asked, one
     * final object sent): the answer is complete, not broken. */
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct run r;
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    const char *obj = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},"
                      "\"done\":true,\"eval_count\":1}";
    feed(&r, obj, 1010);
    CHECK(r.out.len == 0, "held until its end");
    sol_cont_attempt_end(r.c, &r.out);
    CHECK(!sol_cont_attempt_failed(r.c), "a whole final line ends the answer");
    CHECK(r.out.len == strlen(obj) + 1 && memcmp(r.out.data, obj, strlen(obj)) == 0 &&
              r.out.data[r.out.len - 1] == '\n',
          "passed on with its newline: %s", out_text(&r));
    sol_cont_attempt_ok(r.c, &r.out);
    CHECK(r.out.len == strlen(obj) + 1, "once: %s", out_text(&r));
    finish(&r);
    /* Whole mode: the one object is built from it. */
    start(&r, body, SOL_CONT_API_CHAT, 1, 1024);
    feed(&r, TOK("o") "{\"message\":{\"role\":\"assistant\",\"content\":\"k\"},\"done\":true}",
         1010);
    sol_cont_attempt_end(r.c, &r.out);
    CHECK(!sol_cont_attempt_failed(r.c), "whole: complete");
    sol_cont_attempt_ok(r.c, &r.out);
    CHECK(strcmp(out_text(&r), "{\"message\":{\"role\":\"assistant\",\"content\":\"ok\"},"
                               "\"done\":true}") == 0,
          "whole: %s", out_text(&r));
    finish(&r);
}

static void test_error_line_held(void)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct run r;
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    feed(&r, TOK("A") "{\"error\":\"llama runner process has terminated\"}\n", 1001);
    CHECK(strcmp(out_text(&r), TOK("A")) == 0, "error line held: %s", out_text(&r));
    CHECK(sol_cont_attempt_failed(r.c), "an error line is a failure");
    char said[16];
    CHECK(sol_cont_error_text(r.c, said, sizeof said) == 15 && strcmp(said, "llama runner pr") == 0,
          "the node's message, cut to fit: %s", said);
    CHECK(sol_cont_give_up(r.c, &r.out) == 1, "given up: the node's line");
    CHECK(sol_cont_error_text(r.c, said, sizeof said) == 0 && said[0] == '\0', "none held");
    CHECK(strcmp(out_text(&r), TOK("A") "{\"error\":\"llama runner process has terminated\"}\n") ==
              0,
          "%s", out_text(&r));
    finish(&r);
}

static void test_not_continuable(void)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct run r;
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    feed(&r,
         "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"Hmm\"},\"done\":"
         "false}\n",
         1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_THINKING, "thinking");
    finish(&r);
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    feed(&r,
         "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":{"
         "\"name\":\"f\"}}]},\"done\":false}\n",
         1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_TOOL_CALLS, "tool calls");
    finish(&r);
    start(&r, body, SOL_CONT_API_CHAT, 0, 8);
    feed(&r, TOK("12345") TOK("6789"), 1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_TOO_LONG, "over the cap");
    CHECK(strcmp(out_text(&r), TOK("12345") TOK("6789")) == 0, "still forwarded");
    finish(&r);
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    feed(&r, TOK("A") "{\"done\":true,\"eval_count\":1}\n", 1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_COMPLETE && !sol_cont_attempt_failed(r.c),
          "complete");
    finish(&r);
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    feed(&r, "not json\n", 1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_NODE_LINE &&
              strcmp(out_text(&r), "not json\n") == 0,
          "unreadable line passed on");
    finish(&r);
    /* A line that never ends: passed on as it comes, not held without bound. */
    start(&r, body, SOL_CONT_API_CHAT, 0, 1024);
    char big[80000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    feed(&r, big, 1001);
    CHECK(sol_cont_can_continue(r.c) == SOL_CONT_TOO_LONG && r.out.len == sizeof big - 1,
          "long line passed through (%zu)", r.out.len);
    finish(&r);
}

static void test_whole(void)
{
    const char *body = "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"hi\"}]}\n";
    struct run r;
    start(&r, body, SOL_CONT_API_CHAT, 1, 1024);
    const struct sol_buf *nb = sol_cont_body(r.c);
    const char *want = "{\"model\":\"m\",\"stream\":false,\"messages\":[{\"role\":\"user\","
                       "\"content\":\"hi\"}],\"stream\":true}\n";
    CHECK(nb && nb->len == strlen(want) && memcmp(nb->data, want, nb->len) == 0,
          "asked as a stream: %.*s", nb ? (int)nb->len : 0, nb ? nb->data : "");
    feed(&r, TOK("Hello") TOK(" world"), 1001);
    CHECK(r.out.len == 0, "nothing before the end");
    CHECK(sol_cont_next(r.c, 1002) == 0, "next");
    sol_cont_attempt_start(r.c, "b", 1003);
    feed(&r,
         TOK(".") "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},"
                  "\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":5,"
                  "\"eval_count\":1}\n",
         1004);
    sol_cont_attempt_ok(r.c, &r.out);
    const char *obj = "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"Hello "
                      "world.\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":3,"
                      "\"eval_count\":3,\"sollol_nodes\":[\"a\",\"b\"]}";
    CHECK(strcmp(out_text(&r), obj) == 0, "one object: %s", out_text(&r));
    finish(&r);
    /* Restart: the text so far is dropped. */
    start(&r, body, SOL_CONT_API_CHAT, 1, 1024);
    feed(&r, TOK("x"), 1001);
    sol_cont_restart(r.c);
    sol_cont_attempt_start(r.c, "b", 1002);
    feed(&r, TOK("y") "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true}\n",
         1003);
    CHECK(strcmp(out_text(&r),
                 "{\"message\":{\"role\":\"assistant\",\"content\":\"y\"},\"done\":true}") == 0,
          "restarted: %s", out_text(&r));
    finish(&r);
    /* Over the cap: the answer cannot be built. */
    start(&r, body, SOL_CONT_API_CHAT, 1, 4);
    const char *l = TOK("toolong");
    CHECK(sol_cont_feed(r.c, l, strlen(l), 1001, &r.out) == SOL_CONT_FEED_TOO_LONG, "too long");
    finish(&r);
}

static void test_openai(void)
{
    const char *body = "{\"model\":\"m\",\"stream\":true,\"max_tokens\":9,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"hi\"}]}";
    struct run r;
    start(&r, body, SOL_CONT_API_OPENAI, 0, 1024);
#define CHUNK(id, c)                                                                               \
    "data: {\"id\":\"" id "\",\"object\":\"chat.completion.chunk\",\"created\":11,\"choices\":[{"  \
    "\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"" c                               \
    "\"},\"finish_reason\":null}]}"                                                                \
    "\n\n"
    feed(&r, CHUNK("chatcmpl-1", "One") CHUNK("chatcmpl-1", " two"), 1001);
    CHECK(strcmp(out_text(&r), CHUNK("chatcmpl-1", "One") CHUNK("chatcmpl-1", " two")) == 0,
          "passed on: %s", out_text(&r));
    CHECK(sol_cont_attempt_failed(r.c) && sol_cont_next(r.c, 1002) == 0, "next");
    const struct sol_buf *nb = sol_cont_body(r.c);
    const char *want = "{\"model\":\"m\",\"stream\":true,\"max_tokens\":9,\"messages\":[{\"role\":"
                       "\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"One "
                       "two\"}],\"max_tokens\":7}";
    CHECK(nb && nb->len == strlen(want) && memcmp(nb->data, want, nb->len) == 0, "body: %.*s",
          nb ? (int)nb->len : 0, nb ? nb->data : "");
    sol_buf_clear(&r.out);
    sol_cont_attempt_start(r.c, "b", 1003);
    feed(&r,
         "data: {\"id\":\"chatcmpl-2\",\"created\":12,\"choices\":[{\"index\":0,\"delta\":{},"
         "\"finish_reason\":\"stop\"}]}\n\n"
         "data: {\"id\":\"chatcmpl-2\",\"created\":12,\"choices\":[],\"usage\":{\"prompt_tokens\":"
         "6,\"completion_tokens\":1,\"total_tokens\":7}}\n\ndata: [DONE]\n\n",
         1004);
    const char *o = "data: {\"id\":\"chatcmpl-1\",\"created\":11,\"choices\":[{\"index\":0,"
                    "\"delta\":{},\"finish_reason\":\"stop\"}],\"sollol_nodes\":[\"a\",\"b\"]}\n\n"
                    "data: {\"id\":\"chatcmpl-1\",\"created\":11,\"choices\":[],\"usage\":{"
                    "\"prompt_tokens\":4,\"completion_tokens\":3,\"total_tokens\":7}}\n\n"
                    "data: [DONE]\n\n";
    CHECK(strcmp(out_text(&r), o) == 0, "rewritten: %s", out_text(&r));
    finish(&r);
}

static void test_openai_whole(void)
{
    const char *body = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
    struct run r;
    start(&r, body, SOL_CONT_API_OPENAI, 1, 1024);
    const struct sol_buf *nb = sol_cont_body(r.c);
    const char *want = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                       "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";
    CHECK(nb && nb->len == strlen(want) && memcmp(nb->data, want, nb->len) == 0,
          "asked as a stream with usage: %.*s", nb ? (int)nb->len : 0, nb ? nb->data : "");
    feed(&r,
         "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":11,"
         "\"model\":\"m\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
         "\"delta\":{\"role\":\"assistant\",\"content\":\"One\"},\"finish_reason\":null}]}\n\n",
         1001);
    CHECK(r.out.len == 0 && sol_cont_next(r.c, 1002) == 0, "next");
    sol_cont_attempt_start(r.c, "b", 1003);
    feed(&r,
         "data: {\"id\":\"chatcmpl-2\",\"created\":12,\"model\":\"m\",\"choices\":[{\"index\":0,"
         "\"delta\":{\"content\":\" two\"},\"finish_reason\":null}]}\n\n"
         "data: {\"id\":\"chatcmpl-2\",\"created\":12,\"choices\":[{\"index\":0,\"delta\":{},"
         "\"finish_reason\":\"length\"}]}\n\n"
         "data: {\"id\":\"chatcmpl-2\",\"created\":12,\"choices\":[],\"usage\":{\"prompt_tokens\":"
         "6,\"completion_tokens\":1,\"total_tokens\":7}}\n\ndata: [DONE]\n\n",
         1004);
    sol_cont_attempt_ok(r.c, &r.out);
    const char *o =
        "{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":11,\"model\":"
        "\"m\",\"system_fingerprint\":\"fp_ollama\",\"choices\":[{\"index\":0,"
        "\"message\":{\"role\":\"assistant\",\"content\":\"One two\"},\"finish_reason\":"
        "\"length\"}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2,"
        "\"total_tokens\":7},\"sollol_nodes\":[\"a\",\"b\"]}\n";
    CHECK(strcmp(out_text(&r), o) == 0, "chat.completion: %s", out_text(&r));
    finish(&r);
}

int main(void)
{
    test_judge();
    test_chat_continued();
    test_final_line_unterminated();
    test_error_line_held();
    test_not_continuable();
    test_whole();
    test_openai();
    test_openai_whole();
    return check_summary();
}
