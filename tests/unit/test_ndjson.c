/*
 * Unit test for ndjson.c: line splitting across chunks, the line limit,
 * the kept tail, final counters, progress lines (tests/fuzz/fuzz_ndjson.c
 * checks the same properties on arbitrary input).
 */
#include "check.h"

#include "base/ndjson.h"

#include <string.h>

struct lines {
    char text[512];
    size_t len;
    int n;
};

static void on_line(void *ud, const char *line, size_t len)
{
    struct lines *l = ud;
    memcpy(l->text + l->len, line, len);
    l->len += len;
    l->text[l->len++] = '|';
    l->n++;
}

static void test_feed(void)
{
    const char *s = "{\"a\":1}\n{\"b\":2}\n\n{\"c\"";
    for (size_t chunk = 1; chunk <= strlen(s); chunk++) {
        struct lines l = {0};
        struct sol_buf pending = {0};
        int rc = 0;
        for (size_t off = 0; off < strlen(s); off += chunk) {
            size_t n = strlen(s) - off < chunk ? strlen(s) - off : chunk;
            rc |= sol_ndjson_feed(&pending, 64, s + off, n, on_line, &l);
        }
        CHECK(rc == 0, "chunk %zu", chunk);
        CHECK(l.n == 3 && l.len == 17 && memcmp(l.text, "{\"a\":1}|{\"b\":2}||", 17) == 0,
              "chunk %zu: %d lines '%.*s'", chunk, l.n, (int)l.len, l.text);
        sol_ndjson_finish(&pending, on_line, &l);
        CHECK(l.n == 4 && pending.len == 0 && memcmp(l.text + 17, "{\"c\"|", 5) == 0,
              "chunk %zu: last line", chunk);
        sol_ndjson_finish(&pending, on_line, &l);
        CHECK(l.n == 4, "finish twice adds nothing");
        sol_buf_free(&pending);
    }
    /* An unterminated line beyond the limit gives up; complete lines pass. */
    struct lines l = {0};
    struct sol_buf pending = {0};
    CHECK(sol_ndjson_feed(&pending, 8, "ok\n0123456789", 13, on_line, &l) == -1 && l.n == 1,
          "over the limit");
    CHECK(sol_ndjson_feed(&pending, 8, "short\n", 6, on_line, &l) == 0 && l.n == 2,
          "a line within the limit");
    sol_buf_free(&pending);
}

static void test_tail(void)
{
    char tail[8];
    size_t len = 0;
    sol_ndjson_tail_keep(tail, &len, sizeof tail, "abc", 3);
    sol_ndjson_tail_keep(tail, &len, sizeof tail, "defgh", 5);
    CHECK(len == 8 && memcmp(tail, "abcdefgh", 8) == 0, "fills");
    sol_ndjson_tail_keep(tail, &len, sizeof tail, "ij", 2);
    CHECK(len == 8 && memcmp(tail, "cdefghij", 8) == 0, "slides");
    sol_ndjson_tail_keep(tail, &len, sizeof tail, "0123456789", 10);
    CHECK(len == 8 && memcmp(tail, "23456789", 8) == 0, "a long chunk keeps its end");

    const char *done = "{\"done\":true,\"prompt_eval_count\":26,\"eval_count\": 290,"
                       "\"eval_duration\":4709213000}";
    size_t n = strlen(done);
    CHECK(sol_ndjson_tail_number(done, n, "eval_count") == 290, "eval_count");
    CHECK(sol_ndjson_tail_number(done, n, "prompt_eval_count") == 26, "prompt_eval_count");
    CHECK(sol_ndjson_tail_number(done, n, "eval_duration") == 4709213000ull, "eval_duration");
    CHECK(sol_ndjson_tail_number(done, n, "load_duration") == 0, "absent");
    CHECK(sol_ndjson_tail_number("\"a\":1 \"a\":2", 11, "a") == 2, "the last one wins");
    CHECK(sol_ndjson_tail_number("\"a\":-5", 6, "a") == 0, "negative");
    CHECK(sol_ndjson_tail_number("\"a\":99999999999999999999999", 27, "a") == UINT64_MAX,
          "saturates");
    CHECK(sol_ndjson_tail_number("\"a\":7", 5, "a") == 7, "key at offset 0");
}

static void test_progress(void)
{
    struct sol_ndjson_progress p;
    char err[16] = "";
    sol_ndjson_progress("{\"status\":\"success\"}\r ", 22, &p, err, sizeof err);
    CHECK(p.len == 20 && p.is_object && p.success && !p.has_error, "success");
    const char *e = "{\"error\":\"pull failed: \\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}";
    sol_ndjson_progress(e, strlen(e), &p, err, sizeof err);
    /* 13 ASCII bytes and six 2-byte characters: 15 bytes fit in 16 with the NUL. */
    CHECK(p.has_error && strlen(err) == 15 && memcmp(err, "pull failed: \xc3\xa9", 15) == 0,
          "an error cut at a character boundary: '%s'", err);
    sol_ndjson_progress("not json", 8, &p, err, sizeof err);
    CHECK(p.len == 8 && !p.is_object, "not an object");
    sol_ndjson_progress(" \r", 2, &p, err, sizeof err);
    CHECK(p.len == p.start, "blank");
    sol_ndjson_progress(" {\"error\":\"x\"}\n", 15, &p, err, sizeof err);
    CHECK(p.start == 1 && p.len == 14 && p.is_object && p.has_error && strcmp(err, "x") == 0,
          "a whole error body with whitespace around it");
}

int main(void)
{
    test_feed();
    test_tail();
    test_progress();
    return check_summary();
}
