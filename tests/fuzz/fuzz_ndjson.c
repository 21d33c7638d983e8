/*
 * libFuzzer target: a node's NDJSON answer as the proxy path and fan-out
 * read it (ndjson.c): the stream is cut into arbitrary chunks (as libcurl
 * may deliver it), split into lines, each line classified as a progress
 * line, the stream's tail kept, and the final counters read from the tail.
 *
 * Input: byte 0 seeds the chunk sizes; the rest is the stream. Checked
 * beyond memory safety, against straightforward reference code:
 *  - the lines the splitter yields, joined with '\n', give back the stream
 *    (whatever the chunking), unless it gave up on an over-long line;
 *  - the kept tail is exactly the stream's last bytes;
 *  - each counter is what a naive search of the tail gives;
 *  - a progress line's error message is terminated and fits.
 */
#include "fuzz_util.h"

#include "base/ndjson.h"

#include <string.h>

#define TAIL_CAP   256
#define LINE_LIMIT 300

struct collect {
    struct sol_buf joined; /* the lines, each followed by '\n' */
    unsigned lines;
};

static void on_line(void *ud, const char *line, size_t len)
{
    struct collect *c = ud;
    REQUIRE(memchr(line, '\n', len) == NULL);
    REQUIRE(sol_buf_append(&c->joined, line, len) == 0);
    REQUIRE(sol_buf_append(&c->joined, "\n", 1) == 0);
    c->lines++;
    struct sol_ndjson_progress st;
    char error[24];
    memset(error, 'x', sizeof error);
    error[0] = '\0';
    sol_ndjson_progress(line, len, &st, error, sizeof error);
    REQUIRE(st.start <= st.len && st.len <= len);
    REQUIRE(fuzz_terminated(error, sizeof error));
    if (st.success || st.has_error)
        REQUIRE(st.is_object);
    if (st.is_object)
        REQUIRE(st.len - st.start >= 2 && line[st.start] == '{' && line[st.len - 1] == '}');
}

/* The reference: the last `"key":`, spaces, then up to 23 digits. */
static uint64_t naive_number(const char *t, size_t len, const char *key)
{
    size_t kl = strlen(key);
    for (size_t s = len; s-- > 0;) {
        if (s + kl + 3 > len || t[s] != '"' || memcmp(t + s + 1, key, kl) != 0 ||
            t[s + kl + 1] != '"' || t[s + kl + 2] != ':')
            continue;
        uint64_t v = 0;
        int digits = 0, over = 0;
        for (size_t j = s + kl + 3; j < len && digits < 23; j++) {
            if (t[j] == ' ')
                continue;
            if (t[j] < '0' || t[j] > '9')
                break;
            unsigned d = (unsigned)(t[j] - '0');
            if (v > (UINT64_MAX - d) / 10)
                over = 1;
            else
                v = v * 10 + d;
            digits++;
        }
        return over ? UINT64_MAX : v;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned seed = data[0] | 1u;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;

    struct collect c = {0};
    struct sol_buf pending = {0};
    char tail[TAIL_CAP];
    size_t tail_len = 0;
    int gave_up = 0;
    size_t off = 0;
    while (off < n) {
        seed = seed * 1103515245u + 12345u;
        size_t chunk = 1 + (seed >> 16) % 97;
        if (chunk > n - off)
            chunk = n - off;
        sol_ndjson_tail_keep(tail, &tail_len, TAIL_CAP, s + off, chunk);
        REQUIRE(tail_len <= TAIL_CAP);
        if (!gave_up && sol_ndjson_feed(&pending, LINE_LIMIT, s + off, chunk, on_line, &c) < 0)
            gave_up = 1;
        off += chunk;
    }
    if (!gave_up) {
        REQUIRE(pending.len <= LINE_LIMIT);
        sol_ndjson_finish(&pending, on_line, &c);
        REQUIRE(pending.len == 0);
        /* Joined lines give back the stream (a final '\n' is implied). */
        size_t expect = n + (n && s[n - 1] != '\n');
        REQUIRE(c.joined.len == expect);
        REQUIRE(n == 0 || memcmp(c.joined.data, s, n) == 0);
    }

    size_t keep = n < TAIL_CAP ? n : TAIL_CAP;
    REQUIRE(tail_len == keep && memcmp(tail, s + n - keep, keep) == 0);

    static const char *const keys[] = {"eval_count", "prompt_eval_count", "eval_duration",
                                       "load_duration", ""};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++)
        REQUIRE(sol_ndjson_tail_number(tail, tail_len, keys[k]) ==
                naive_number(tail, tail_len, keys[k]));
    sol_buf_free(&pending);
    sol_buf_free(&c.joined);
    return 0;
}
