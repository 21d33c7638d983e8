/*
 * libFuzzer target for the sharded path's translator (translate.c).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc/daemon -D_GNU_SOURCE \
 *       src/daemon/base/translate.c src/core/buf.c tests/fuzz/fuzz_translate.c -lcjson -lm \
 *       -o fuzz_translate
 *   ./fuzz_translate -max_total_time=60 CORPUS_COPY tests/fuzz/corpus/translate
 *
 * The first bytes choose the kind (chat/generate/embed), stream or not, the
 * upstream status and the piece size; the rest is llama-server's answer,
 * fed in pieces. Checked for every input, besides memory safety:
 *  - the whole input as an Ollama request body never crashes the request
 *    mapping, and an accepted mapping is valid JSON;
 *  - every output line (NDJSON) or the single object is valid JSON, and a
 *    finished translation always produced something;
 *  - feeding after the end, and finishing twice, add nothing.
 */
#include "base/translate.h"

#include "fuzz_util.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t clock_ns(void *ud)
{
    (void)ud;
    return 1000;
}

static void require_json_lines(const struct sol_buf *out, int stream)
{
    const char *p = out->data ? out->data : "";
    size_t left = out->len;
    if (!stream) {
        cJSON *j = cJSON_ParseWithLength(p, left);
        REQUIRE(j != NULL);
        cJSON_Delete(j);
        return;
    }
    while (left) {
        const char *nl = memchr(p, '\n', left);
        REQUIRE(nl != NULL); /* every NDJSON line ends with a newline */
        cJSON *j = cJSON_ParseWithLength(p, (size_t)(nl - p));
        REQUIRE(j != NULL);
        cJSON_Delete(j);
        left -= (size_t)(nl - p) + 1;
        p = nl + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sol_buf req = {0};
    char err[256];
    for (int k = 0; k < 3; k++) {
        int rc = sol_translate_request((enum sol_tr_kind)k, (const char *)data, size, &req, err,
                                       sizeof err);
        REQUIRE(rc >= -1 && rc <= 1);
        if (rc == 0) {
            cJSON *j = cJSON_ParseWithLength(req.data, req.len);
            REQUIRE(j != NULL);
            cJSON_Delete(j);
        }
        sol_buf_clear(&req);
    }
    sol_buf_free(&req);
    if (size < 3)
        return 0;
    enum sol_tr_kind kind = (enum sol_tr_kind)(data[0] % 3);
    int stream = (data[0] >> 2) & 1;
    long status = (data[0] >> 3) & 1 ? 400 : 200;
    size_t step = 1 + data[1] % 64;
    data += 2;
    size -= 2;
    struct sol_translate t;
    sol_translate_init(&t, kind, stream, "m", clock_ns, clock_ns, NULL);
    sol_translate_status(&t, status);
    int out_stream = stream && status < 400 && kind != SOL_TR_EMBED;
    struct sol_buf out = {0};
    for (size_t i = 0; i < size; i += step) {
        size_t n = size - i < step ? size - i : step;
        sol_translate_feed(&t, (const char *)data + i, n, &out);
    }
    sol_translate_finish(&t, &out);
    REQUIRE(out.len > 0);
    size_t len = out.len;
    sol_translate_feed(&t, "data: x\n", 8, &out);
    sol_translate_finish(&t, &out);
    REQUIRE(out.len == len);
    require_json_lines(&out, out_stream);
    sol_buf_free(&out);
    sol_translate_free(&t);
    return 0;
}
