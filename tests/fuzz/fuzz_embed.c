/*
 * libFuzzer target: nodes' /api/embed answers as a split embed request
 * reads them (sol_embed_parse_answer, in place) and the merged answer built
 * from them (sol_embed_merge).
 *
 * Input: byte 0 gives how many embeddings each answer must hold (0-3);
 * the rest is up to four answers separated by NUL bytes. Checked beyond
 * memory safety: a parsed piece lies inside its buffer and holds exactly
 * the expected count; when every answer parsed, the merged document is
 * valid JSON (strictly: json_scan accepts it) holding all the embeddings in
 * order, with prompt_eval_count the sum of the pieces'.
 */
#include "fuzz_util.h"

#include "base/embed_plan.h"

#include <string.h>

#define MAX_PIECES 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t expect = data[0] & 3;
    const char *p = (const char *)data + 1, *end = (const char *)data + size;
    struct sol_embed_piece pieces[MAX_PIECES];
    char *bufs[MAX_PIECES] = {0};
    unsigned n = 0;
    int all_ok = 1;
    uint64_t prompt = 0;
    while (n < MAX_PIECES && p <= end) {
        const char *nul = memchr(p, '\0', (size_t)(end - p));
        size_t len = nul ? (size_t)(nul - p) : (size_t)(end - p);
        /* An exact-size copy, so ASan sees any read past the answer. */
        char *buf = malloc(len ? len : 1);
        REQUIRE(buf);
        memcpy(buf, p, len);
        bufs[n] = buf;
        char err[120];
        memset(err, 'x', sizeof err);
        long got = sol_embed_parse_answer(buf, len, expect, &pieces[n], err, sizeof err);
        if (got < 0) {
            REQUIRE(got == -1 && fuzz_terminated(err, sizeof err) && err[0]);
            all_ok = 0;
        } else {
            REQUIRE((size_t)got <= len && pieces[n].text == buf && pieces[n].len == (size_t)got);
            REQUIRE(pieces[n].count == expect);
            prompt += pieces[n].prompt_eval_count;
        }
        n++;
        if (!nul)
            break;
        p = nul + 1;
    }
    if (all_ok) {
        struct sol_buf out = {0};
        REQUIRE(sol_embed_merge(&out, "m\"odel", pieces, n, 1234) == 0);
        struct sol_json_span doc = {out.data, out.len, SOL_JSON_OBJECT}, v;
        REQUIRE(sol_json_scan_object(out.data, out.len, 32, NULL, NULL, NULL, 0) == SOL_JSON_OK);
        REQUIRE(sol_json_object_get(&doc, "embeddings", &v) && v.type == SOL_JSON_ARRAY);
        int strings = 0;
        REQUIRE(sol_embed_count_inputs(&v, &strings) == expect * n);
        if (n && prompt <= INT64_MAX) { /* a hostile node may make the sum wrap */
            long long total;
            struct sol_json_span pv;
            REQUIRE(sol_json_object_get(&doc, "prompt_eval_count", &pv) &&
                    sol_json_number_int64(&pv, &total) == 0 && (uint64_t)total == prompt);
        }
        sol_buf_free(&out);
    }
    for (unsigned i = 0; i < n; i++)
        free(bufs[i]);
    return 0;
}
