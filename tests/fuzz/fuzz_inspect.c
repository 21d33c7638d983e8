/*
 * libFuzzer target: a client's request body as the daemon reads it before
 * routing (inspect.c), then what routing derives from an accepted body:
 * the canonical model name, prefix-affinity keys (chat messages, generate
 * prompt/context) and, for /api/embed, the split of the input array into
 * per-node chunk bodies (batch.h).
 *
 * Input: byte 0 picks the route's flavour (needs a model or not) and the
 * depth limit; the rest is the body. Checked beyond memory safety:
 *  - the answer is 0 or 400, with a terminated, non-empty message on 400;
 *  - an accepted body's fields are in their documented ranges and every
 *    span lies inside the body;
 *  - each chunk body built for an embed split is itself a valid JSON object
 *    whose "input" holds exactly the chunk's elements.
 */
#include "fuzz_util.h"

#include "base/affinity.h"
#include "base/embed_plan.h"
#include "base/inspect.h"
#include "base/model_name.h"

#include <string.h>

static void span_inside(const struct sol_json_span *s, const char *body, size_t len)
{
    if (!s->p)
        return;
    REQUIRE(s->p >= body && s->len >= 1 && s->p + s->len <= body + len);
}

static void check_embed_split(const char *body, size_t len, const struct sol_json_span *input,
                              unsigned mix)
{
    int all_strings = 0;
    size_t n = sol_embed_count_inputs(input, &all_strings);
    if (n == 0)
        return;
    struct sol_embed_plan_node nodes[3] = {
        {1.0 + (mix & 3), mix & 4 ? 2 : 0}, {0, 1}, {2.5, (mix >> 3) & 3}};
    struct sol_embed_plan_chunk chunks[16];
    unsigned nc = sol_embed_plan(nodes, 3, n, 1 + (mix >> 5) % 4, chunks, 16);
    REQUIRE(nc >= 1 && nc <= 16);
    size_t covered = 0;
    for (unsigned i = 0; i < nc; i++) {
        REQUIRE(chunks[i].node < 3 && chunks[i].count > 0 && chunks[i].start == covered);
        covered += chunks[i].count;
    }
    REQUIRE(covered == n);
    struct sol_json_span slices[16];
    REQUIRE(sol_embed_slices(input, chunks, nc, slices) == 0);
    for (unsigned i = 0; i < nc; i++) {
        span_inside(&slices[i], input->p, input->len);
        struct sol_buf out = {0};
        REQUIRE(sol_embed_chunk_body(&out, body, len, input, &slices[i]) == 0);
        REQUIRE(sol_json_scan_object(out.data, out.len, SOL_JSON_DEPTH_LIMIT, NULL, NULL, NULL,
                                     0) == SOL_JSON_OK);
        struct sol_body_info bi;
        char err[160];
        REQUIRE(sol_inspect_body(out.data, out.len, 0, SOL_JSON_DEPTH_LIMIT, &bi, err,
                                 sizeof err) == 0);
        int as = 0;
        REQUIRE(bi.input.p && sol_embed_count_inputs(&bi.input, &as) == chunks[i].count);
        sol_buf_free(&out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned mode = data[0];
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    int needs_model = mode & 1;
    int max_depth = (mode >> 1) & 7 ? 1 << ((mode >> 1) & 7) : 64;

    struct sol_body_info bi;
    char err[200];
    memset(err, 'x', sizeof err);
    int rc = sol_inspect_body(body, len, needs_model, max_depth, &bi, err, sizeof err);
    REQUIRE(rc == 0 || rc == 400);
    if (rc == 400) {
        REQUIRE(fuzz_terminated(err, sizeof err) && err[0] != '\0');
        return 0;
    }
    REQUIRE(fuzz_terminated(bi.model, sizeof bi.model));
    REQUIRE(!needs_model || bi.model[0] != '\0');
    REQUIRE(bi.stream >= -1 && bi.stream <= 1);
    REQUIRE(bi.priority == -1 || (bi.priority >= 1 && bi.priority <= 10));
    span_inside(&bi.options, body, len);
    span_inside(&bi.messages, body, len);
    span_inside(&bi.prompt, body, len);
    span_inside(&bi.input, body, len);
    span_inside(&bi.keep_alive, body, len);
    if (bi.options.p)
        REQUIRE(bi.options.type == SOL_JSON_OBJECT);

    /* What routing does next with an accepted body. */
    char canonical[SOL_MODEL_NAME_MAX];
    const char *model = "";
    if (sol_model_canonical(bi.model, canonical, sizeof canonical) == 0) {
        model = canonical;
        REQUIRE(sol_model_key(canonical) != 0);
    }
    struct sol_affinity_keys keys;
    if (bi.messages.p) {
        int keyed = sol_affinity_keys_chat(&bi.messages, model, &keys);
        REQUIRE(keyed == (keys.anchor != 0));
    }
    int keyed = sol_affinity_keys_generate(body, len, model, &keys);
    REQUIRE(keyed == (keys.anchor != 0));
    if (bi.input.p && bi.input.type == SOL_JSON_ARRAY)
        check_embed_split(body, len, &bi.input, mode);
    return 0;
}
