/*
 * libFuzzer target for json_scan.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *       src/core/json_scan.c tests/fuzz/fuzz_json_scan.c -lcjson -o fuzz_json_scan
 *   ./fuzz_json_scan -max_total_time=60 CORPUS_COPY tests/fuzz/corpus/json_scan
 *
 * Besides memory safety it checks, for every input:
 *  - the return code is one of the documented ones and err says the matching
 *    thing;
 *  - for accepted documents: the members reported to the callback are what
 *    sol_json_object_next() finds; every string decodes and compares equal to
 *    itself with key_equals; max_depth is exact (the document's own depth
 *    passes, one less gives EDEPTH); a callback's stop value is returned;
 *  - cross-check with cJSON: whatever the scanner accepts, cJSON must parse
 *    to the same tree (types, decoded strings and keys, numbers, member and
 *    element order). cJSON is laxer in other ways, so only this direction is
 *    checked. Two intentional differences where cJSON refuses valid JSON are
 *    bridged by rewriting cJSON's copy in place (same length, so offsets and
 *    structure stay the same):
 *      * a lone UTF-16 surrogate escape ("\ud800") is accepted here, as Go's
 *        encoding/json accepts it, and decoded as U+FFFD; cJSON fails the
 *        whole parse, so its copy gets "\uFFFD" instead, which must then
 *        decode identically;
 *      * a number longer than 63 bytes: cJSON copies numbers into a 64-byte
 *        buffer and trips over the rest, so its copy gets "0" plus spaces and
 *        only the type of that value is compared.
 *  - the span helpers stay in bounds on arbitrary, unvalidated bytes.
 */
#include "sollol/json_scan.h"

#include "fuzz_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH   64
#define MAX_MEMBERS 64

struct collected {
    struct sol_json_span key[MAX_MEMBERS], value[MAX_MEMBERS];
    int n;
    int stop_at; /* return 5 at this member (1-based); 0 = never */
};

static int collect(void *ud, const struct sol_json_span *key, const struct sol_json_span *value)
{
    struct collected *c = ud;
    if (c->n < MAX_MEMBERS) {
        c->key[c->n] = *key;
        c->value[c->n] = *value;
    }
    c->n++;
    return c->stop_at && c->n == c->stop_at ? 5 : 0;
}

struct walk {
    const char *base; /* the scanned buffer */
    char *copy;       /* cJSON's copy of it, same offsets */
    int depth;        /* deepest array/object nesting */
};

/* cJSON cannot read numbers longer than this in one piece. */
#define CJSON_NUMBER_MAX 63

static int hex4(const char *p)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        int h = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        REQUIRE(h >= 0);
        v = v << 4 | h;
    }
    return v;
}

/* Finds unpaired surrogate escapes in a validated string (independently of
 * json_scan's decoder) and writes \uFFFD over them in cJSON's copy. */
static void patch_lone_surrogates(const struct sol_json_span *s, struct walk *w)
{
    const char *p = s->p + 1, *end = s->p + s->len - 1;
    while (p < end) {
        if (*p != '\\') {
            p++;
            continue;
        }
        if (p[1] != 'u') {
            p += 2;
            continue;
        }
        int u = hex4(p + 2);
        if (u >= 0xD800 && u <= 0xDBFF && end - p >= 12 && p[6] == '\\' && p[7] == 'u') {
            int lo = hex4(p + 8);
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                p += 12;
                continue;
            }
        }
        if (u >= 0xD800 && u <= 0xDFFF)
            memcpy(w->copy + (p - w->base), "\\uFFFD", 6);
        p += 6;
    }
}

/* Decodes a validated string span into a fresh NUL-terminated buffer. */
static char *decode(const struct sol_json_span *s, long *len)
{
    REQUIRE(s->type == SOL_JSON_STRING && s->len >= 2);
    char *out = malloc(s->len - 1);
    REQUIRE(out);
    *len = sol_json_string_decode(s, out, s->len - 1);
    REQUIRE(*len >= 0 && (size_t)*len <= s->len - 2);
    return out;
}

static void check_string(const struct sol_json_span *s, struct walk *w)
{
    long n;
    char *d = decode(s, &n);
    patch_lone_surrogates(s, w);
    /* A key compares equal to its own decoding unless that holds a NUL. */
    int has_nul = memchr(d, '\0', (size_t)n) != NULL;
    REQUIRE(sol_json_key_equals(s, d) == !has_nul);
    if (!has_nul)
        REQUIRE(sol_json_key_equals_fold(s, d));
    /* One byte too small must fail cleanly. */
    if (n > 0) {
        char *small = malloc((size_t)n);
        REQUIRE(small && sol_json_string_decode(s, small, (size_t)n) == -1);
        free(small);
    }
    free(d);
}

static void check_number(const struct sol_json_span *s, struct walk *w)
{
    double d;
    long long ll;
    int rd = sol_json_number_double(s, &d);
    int ri = sol_json_number_int64(s, &ll);
    REQUIRE(rd == 0 || rd == -1);
    if (rd == 0)
        REQUIRE(!isnan(d) && !isinf(d));
    /* An integer that fits int64 is also a finite double. */
    if (ri == 0)
        REQUIRE(rd == 0);
    if (s->len > CJSON_NUMBER_MAX) {
        char *c = w->copy + (s->p - w->base);
        c[0] = '0';
        memset(c + 1, ' ', s->len - 1);
    }
}

/* Walks a validated value with the span helpers. */
static void walk(const struct sol_json_span *v, int depth, struct walk *w)
{
    REQUIRE(depth <= MAX_DEPTH);
    switch (v->type) {
    case SOL_JSON_NULL:
        REQUIRE(v->len == 4 && memcmp(v->p, "null", 4) == 0);
        break;
    case SOL_JSON_TRUE:
        REQUIRE(v->len == 4 && memcmp(v->p, "true", 4) == 0);
        break;
    case SOL_JSON_FALSE:
        REQUIRE(v->len == 5 && memcmp(v->p, "false", 5) == 0);
        break;
    case SOL_JSON_NUMBER:
        check_number(v, w);
        break;
    case SOL_JSON_STRING:
        check_string(v, w);
        break;
    case SOL_JSON_ARRAY: {
        if (depth + 1 > w->depth)
            w->depth = depth + 1;
        struct sol_json_span e;
        size_t pos = 0, last = 0;
        while (sol_json_array_next(v, &pos, &e)) {
            REQUIRE(pos > last && e.p >= v->p && e.p + e.len < v->p + v->len);
            last = pos;
            walk(&e, depth + 1, w);
        }
        break;
    }
    case SOL_JSON_OBJECT: {
        if (depth + 1 > w->depth)
            w->depth = depth + 1;
        struct sol_json_span k, e, got;
        size_t pos = 0, last = 0;
        while (sol_json_object_next(v, &pos, &k, &e)) {
            REQUIRE(pos > last && k.p > v->p && e.p + e.len < v->p + v->len);
            last = pos;
            check_string(&k, w);
            walk(&e, depth + 1, w);
            /* object_get finds the key (some occurrence of it). */
            long n;
            char *d = decode(&k, &n);
            if (!memchr(d, '\0', (size_t)n))
                REQUIRE(sol_json_object_get(v, d, &got) == 1);
            free(d);
        }
        break;
    }
    }
}

/* Compares our view of a validated value with cJSON's. */
static void compare(const struct sol_json_span *v, const cJSON *c)
{
    switch (v->type) {
    case SOL_JSON_NULL:
        REQUIRE(cJSON_IsNull(c));
        break;
    case SOL_JSON_TRUE:
        REQUIRE(cJSON_IsTrue(c));
        break;
    case SOL_JSON_FALSE:
        REQUIRE(cJSON_IsFalse(c));
        break;
    case SOL_JSON_NUMBER: {
        REQUIRE(cJSON_IsNumber(c));
        double d;
        if (v->len > CJSON_NUMBER_MAX)
            REQUIRE(c->valuedouble == 0); /* replaced in cJSON's copy */
        else if (sol_json_number_double(v, &d) == 0)
            REQUIRE(d == c->valuedouble);
        else
            REQUIRE(isinf(c->valuedouble)); /* we refuse overflow, cJSON keeps inf */
        break;
    }
    case SOL_JSON_STRING: {
        REQUIRE(cJSON_IsString(c));
        long n;
        char *d = decode(v, &n);
        REQUIRE(strcmp(d, c->valuestring) == 0); /* up to a \u0000, where cJSON stops */
        free(d);
        break;
    }
    case SOL_JSON_ARRAY: {
        REQUIRE(cJSON_IsArray(c));
        const cJSON *ce = c->child;
        struct sol_json_span e;
        size_t pos = 0;
        while (sol_json_array_next(v, &pos, &e)) {
            REQUIRE(ce);
            compare(&e, ce);
            ce = ce->next;
        }
        REQUIRE(!ce);
        break;
    }
    case SOL_JSON_OBJECT: {
        REQUIRE(cJSON_IsObject(c));
        const cJSON *ce = c->child;
        struct sol_json_span k, e;
        size_t pos = 0;
        while (sol_json_object_next(v, &pos, &k, &e)) {
            REQUIRE(ce && ce->string);
            long n;
            char *d = decode(&k, &n);
            REQUIRE(strcmp(d, ce->string) == 0);
            free(d);
            compare(&e, ce);
            ce = ce->next;
        }
        REQUIRE(!ce);
        break;
    }
    }
}

static void check_unvalidated(const uint8_t *data, size_t size)
{
    /* The helpers promise to stay in bounds on any bytes; only ASan judges. */
    static const enum sol_json_type types[] = {SOL_JSON_OBJECT, SOL_JSON_ARRAY, SOL_JSON_STRING,
                                               SOL_JSON_NUMBER};
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        struct sol_json_span s = {(const char *)data, size, types[t]}, k, v;
        size_t pos = 0;
        int guard = 0;
        while (sol_json_object_next(&s, &pos, &k, &v))
            REQUIRE(++guard <= (int)size);
        pos = 0;
        guard = 0;
        while (sol_json_array_next(&s, &pos, &v))
            REQUIRE(++guard <= (int)size);
        (void)sol_json_object_get(&s, "model", &v);
        (void)sol_json_key_equals(&s, "model");
        (void)sol_json_key_equals_fold(&s, "stream");
        char out[64];
        long n = sol_json_string_decode(&s, out, sizeof out);
        REQUIRE(n >= -1 && n < (long)sizeof out);
        double d;
        long long ll;
        (void)sol_json_number_double(&s, &d);
        (void)sol_json_number_int64(&s, &ll);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    char err[160];
    struct collected got = {0};
    int rc = sol_json_scan_object(buf, size, MAX_DEPTH, collect, &got, err, sizeof err);
    REQUIRE(rc == SOL_JSON_OK || rc == SOL_JSON_EINVAL || rc == SOL_JSON_ENOTOBJECT ||
            rc == SOL_JSON_EDEPTH);
    REQUIRE(memchr(err, '\0', sizeof err));
    if (rc == SOL_JSON_OK)
        REQUIRE(err[0] == '\0');
    if (rc == SOL_JSON_EINVAL)
        REQUIRE(strncmp(err, "invalid JSON: ", 14) == 0);
    if (rc == SOL_JSON_EDEPTH)
        REQUIRE(strncmp(err, "invalid JSON: nesting exceeds max depth 64 at offset ", 53) == 0);
    if (rc == SOL_JSON_ENOTOBJECT)
        REQUIRE(got.n == 0);

    /* Small error buffers are cut and terminated; no buffer is fine. */
    char tiny[8];
    size_t tl = 1 + size % sizeof tiny;
    REQUIRE(sol_json_scan_object(buf, size, MAX_DEPTH, NULL, NULL, tiny, tl) == rc);
    REQUIRE(memchr(tiny, '\0', tl));
    REQUIRE(sol_json_scan_object(buf, size, MAX_DEPTH, NULL, NULL, NULL, 0) == rc);

    /* A deeper limit may only turn EDEPTH into something else. */
    int rc_deep = sol_json_scan_object(buf, size, SOL_JSON_DEPTH_LIMIT, NULL, NULL, NULL, 0);
    REQUIRE(rc == SOL_JSON_EDEPTH || rc_deep == rc);

    check_unvalidated(data, size);

    if (rc != SOL_JSON_OK && rc != SOL_JSON_ENOTOBJECT)
        return 0;

    /* The document is whitespace, one value, whitespace. */
    size_t a = 0, b = size;
    while (a < b && strchr(" \t\r\n", buf[a]))
        a++;
    while (b > a && strchr(" \t\r\n", buf[b - 1]))
        b--;
    REQUIRE(a < b);
    struct sol_json_span doc = {buf + a, b - a, SOL_JSON_NULL};
    switch (buf[a]) {
    case '{':
        doc.type = SOL_JSON_OBJECT;
        break;
    case '[':
        doc.type = SOL_JSON_ARRAY;
        break;
    case '"':
        doc.type = SOL_JSON_STRING;
        break;
    case 't':
        doc.type = SOL_JSON_TRUE;
        break;
    case 'f':
        doc.type = SOL_JSON_FALSE;
        break;
    case 'n':
        doc.type = SOL_JSON_NULL;
        break;
    default:
        doc.type = SOL_JSON_NUMBER;
        break;
    }
    REQUIRE((rc == SOL_JSON_OK) == (doc.type == SOL_JSON_OBJECT));

    /* The callback saw exactly the members object_next finds. */
    if (rc == SOL_JSON_OK) {
        struct sol_json_span k, v;
        size_t pos = 0;
        int i = 0;
        while (sol_json_object_next(&doc, &pos, &k, &v)) {
            if (i < MAX_MEMBERS)
                REQUIRE(k.p == got.key[i].p && k.len == got.key[i].len && v.p == got.value[i].p &&
                        v.len == got.value[i].len && v.type == got.value[i].type &&
                        got.key[i].type == SOL_JSON_STRING);
            i++;
        }
        REQUIRE(i == got.n);
        /* A callback's nonzero return stops the scan and is returned. */
        if (got.n > 0) {
            struct collected stop = {.stop_at = 1 + (int)(size % (size_t)got.n)};
            REQUIRE(sol_json_scan_object(buf, size, MAX_DEPTH, collect, &stop, NULL, 0) == 5);
            REQUIRE(stop.n == stop.stop_at);
        }
    }

    /* cJSON gets a NUL-terminated copy: an accepted document has no raw NUL,
     * and older cJSON versions may read one byte past a length-bounded
     * buffer. The walk patches it where cJSON differs on purpose. */
    char *copy = malloc(size + 1);
    REQUIRE(copy);
    memcpy(copy, buf, size);
    copy[size] = '\0';
    struct walk w = {buf, copy, 0};
    walk(&doc, 0, &w);

    /* max_depth is exact. */
    if (w.depth >= 1)
        REQUIRE(sol_json_scan_object(buf, size, w.depth, NULL, NULL, NULL, 0) == rc);
    if (w.depth >= 2)
        REQUIRE(sol_json_scan_object(buf, size, w.depth - 1, NULL, NULL, NULL, 0) ==
                SOL_JSON_EDEPTH);

    /* cJSON must agree. */
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(copy, &end, 0);
    REQUIRE(root);
    REQUIRE(end >= copy && strspn(end, " \t\r\n") == (size_t)(copy + size - end));
    compare(&doc, root);
    cJSON_Delete(root);
    free(copy);
    return 0;
}
