/*
 * libFuzzer target: a node's chat answer as the continuation path reads it
 * (cont.c): NDJSON or SSE lines cut into arbitrary chunks, the text kept,
 * the continued body built, the continued node's lines rewritten.
 *
 * Input: byte 0 seeds the chunk sizes, byte 1 picks the API (bit 0) and
 * whole mode (bit 1); the rest is what the node sent, given to a first and
 * then to a continued attempt. Checked beyond memory safety:
 *  - the output does not depend on how the bytes were chunked (each mode
 *    is also fed in one piece and compared);
 *  - a first attempt passes lines on unchanged: it never adds bytes;
 *  - the continued body is always one valid JSON object, whatever the node
 *    sent (the text is kept as raw JSON string contents);
 *  - a whole-mode answer, when built, is one valid JSON object.
 */
#include "fuzz_util.h"

#include "base/cont.h"

#include <string.h>

static const char body[] = "{\"model\":\"m\",\"options\":{\"num_predict\":50},\"max_tokens\":50,"
                           "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";

/* Runs a first attempt, a continuation and a second attempt over the same
 * bytes; appends everything the client would get to out. */
static void run(enum sol_cont_api api, int whole, const char *s, size_t n, unsigned seed,
                struct sol_buf *out, int chunked)
{
    struct sol_json_span m;
    const char *mp = strstr(body, "[{");
    m.p = mp;
    m.len = strlen(mp) - 1;
    m.type = SOL_JSON_ARRAY;
    struct sol_cont *c = sol_cont_new(api, whole, 512, body, sizeof body - 1, &m);
    REQUIRE(c != NULL);
    for (int attempt = 0; attempt < 2; attempt++) {
        sol_cont_attempt_start(c, attempt ? "b\"\\" : "a", 1000 + (uint64_t)attempt * 100);
        size_t before = out->len, off = 0;
        int stopped = 0;
        while (off < n && !stopped) {
            seed = seed * 1103515245u + 12345u;
            size_t chunk = chunked ? 1 + (seed >> 16) % 61 : n;
            if (chunk > n - off)
                chunk = n - off;
            enum sol_cont_feed_result r =
                sol_cont_feed(c, s + off, chunk, 1000 + (uint64_t)attempt * 100 + off, out);
            REQUIRE(r != SOL_CONT_FEED_NOMEM);
            stopped = r == SOL_CONT_FEED_TOO_LONG;
            off += chunk;
        }
        if (stopped) {
            REQUIRE(whole);
            break;
        }
        if (attempt == 0 && !whole)
            REQUIRE(out->len - before <= n); /* passed on, nothing added */
        sol_cont_attempt_end(c, out);        /* the body ended cleanly: its last line, whole */
        if (attempt == 1 || !sol_cont_attempt_failed(c)) {
            size_t at = out->len;
            sol_cont_attempt_ok(c, out);
            if (whole && out->len > at && at == before) {
                /* Built only from a final line that was valid JSON. */
                REQUIRE(sol_json_scan_object(out->data + before, out->len - before, 64, NULL, NULL,
                                             NULL, 0) == SOL_JSON_OK);
            }
            break;
        }
        if (sol_cont_can_continue(c) != SOL_CONT_CONTINUED) {
            sol_cont_give_up(c, out);
            break;
        }
        REQUIRE(sol_cont_next(c, 1050) == 0);
        const struct sol_buf *nb = sol_cont_body(c);
        if (nb)
            REQUIRE(sol_json_scan_object(nb->data, nb->len, 64, NULL, NULL, NULL, 0) ==
                    SOL_JSON_OK);
    }
    struct sol_cont_stats st;
    sol_cont_stats(c, &st);
    REQUIRE(st.text_bytes <= 512);
    sol_cont_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned seed = data[0] | 1u;
    enum sol_cont_api api = (data[1] & 1) ? SOL_CONT_API_OPENAI : SOL_CONT_API_CHAT;
    int whole = (data[1] & 2) != 0;
    const char *s = (const char *)data + 2;
    size_t n = size - 2;
    struct sol_buf a = {0}, b = {0};
    run(api, whole, s, n, seed, &a, 1);
    run(api, whole, s, n, seed, &b, 0);
    REQUIRE(a.len == b.len && (a.len == 0 || memcmp(a.data, b.data, a.len) == 0));
    sol_buf_free(&a);
    sol_buf_free(&b);
    return 0;
}
