/*
 * ndjson.c - line splitting, stream tails and final-metrics counters for a
 * node's NDJSON answers (see ndjson.h). Shared by the proxy path
 * (request.c) and fan-out (fanout.c) so the parsing of untrusted node bytes
 * lives in one fuzzed place (tests/fuzz/fuzz_ndjson.c).
 */
#include "base/ndjson.h"

#include "sollol/json_scan.h"

#include <stdlib.h>
#include <string.h>

int sol_ndjson_feed(struct sol_buf *pending, size_t limit, const char *p, size_t n,
                    sol_ndjson_line_cb cb, void *ud)
{
    size_t start = 0;
    const char *nl;
    while (start < n && (nl = memchr(p + start, '\n', n - start)) != NULL) {
        size_t i = (size_t)(nl - p);
        if (pending->len) {
            if (sol_buf_append(pending, p + start, i - start) < 0)
                return -1;
            cb(ud, pending->data, pending->len);
            sol_buf_clear(pending);
        } else {
            cb(ud, p + start, i - start);
        }
        start = i + 1;
    }
    if (pending->len + (n - start) > limit)
        return -1;
    return sol_buf_append(pending, p + start, n - start) < 0 ? -1 : 0;
}

void sol_ndjson_finish(struct sol_buf *pending, sol_ndjson_line_cb cb, void *ud)
{
    if (!pending->len)
        return;
    cb(ud, pending->data, pending->len);
    sol_buf_clear(pending);
}

void sol_ndjson_tail_keep(char *tail, size_t *tail_len, size_t cap, const char *p, size_t n)
{
    if (n >= cap) {
        memcpy(tail, p + n - cap, cap);
        *tail_len = cap;
        return;
    }
    if (*tail_len + n > cap) {
        size_t drop = *tail_len + n - cap;
        memmove(tail, tail + drop, *tail_len - drop);
        *tail_len -= drop;
    }
    memcpy(tail + *tail_len, p, n);
    *tail_len += n;
}

uint64_t sol_ndjson_tail_number(const char *tail, size_t len, const char *key)
{
    size_t klen = strlen(key);
    /* i is the colon; the key's opening quote is at i - klen - 2 >= 0. */
    for (size_t i = len; i-- > klen + 2;) {
        size_t start = i - klen - 2;
        if (tail[start] == '"' && tail[i - 1] == '"' && tail[i] == ':' &&
            memcmp(tail + start + 1, key, klen) == 0) {
            char num[24];
            size_t n = 0;
            for (size_t j = i + 1; j < len && n < sizeof num - 1; j++) {
                if (tail[j] == ' ')
                    continue;
                if (tail[j] < '0' || tail[j] > '9')
                    break;
                num[n++] = tail[j];
            }
            num[n] = '\0';
            return n ? strtoull(num, NULL, 10) : 0;
        }
    }
    return 0;
}

/* Decodes a string span into error[0..errlen), cut at a UTF-8 character
 * boundary when it does not fit (sol_json_string_decode() would fail and
 * leave a partial, unterminated copy). */
static void cut_decode(const struct sol_json_span *v, char *error, size_t errlen)
{
    if (sol_json_string_decode(v, error, errlen) >= 0)
        return;
    char *full = malloc(v->len);
    long n = full ? sol_json_string_decode(v, full, v->len) : -1;
    if (n < 0) {
        error[0] = '\0'; /* malformed escape: the line is not JSON */
        free(full);
        return;
    }
    size_t keep = (size_t)n < errlen - 1 ? (size_t)n : errlen - 1;
    while (keep > 0 && keep < (size_t)n && ((unsigned char)full[keep] & 0xC0) == 0x80)
        keep--;
    memcpy(error, full, keep);
    error[keep] = '\0';
    free(full);
}

void sol_ndjson_progress(const char *line, size_t len, struct sol_ndjson_progress *out, char *error,
                         size_t errlen)
{
    size_t start = 0;
    while (len && strchr(" \t\r\n", line[len - 1]))
        len--;
    while (start < len && (line[start] == ' ' || line[start] == '\t'))
        start++;
    memset(out, 0, sizeof *out);
    out->start = start;
    out->len = len;
    if (len - start < 2)
        return;
    out->is_object = line[start] == '{' && line[len - 1] == '}';
    if (!out->is_object)
        return;
    struct sol_json_span sp = {line + start, len - start, SOL_JSON_OBJECT}, v;
    if (sol_json_object_get(&sp, "status", &v) && v.type == SOL_JSON_STRING && v.len == 9 &&
        memcmp(v.p, "\"success\"", 9) == 0)
        out->success = 1;
    if (sol_json_object_get(&sp, "error", &v) && v.type == SOL_JSON_STRING) {
        out->has_error = 1;
        cut_decode(&v, error, errlen);
    }
}
