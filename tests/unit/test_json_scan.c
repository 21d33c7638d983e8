/*
 * Unit test of json_scan: validation (every error class), member reporting,
 * key comparison, string decoding, span iteration and number conversion.
 */
#include "sollol/json_scan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static int scan(const char *doc, char *err, size_t errlen)
{
    return sol_json_scan_object(doc, strlen(doc), 64, NULL, NULL, err, errlen);
}

/* Scans exactly n bytes from a heap copy, so ASan catches any read past the
 * end (string literals would hide it behind their NUL). */
static int scan_n(const char *doc, size_t n, int max_depth, char *err, size_t errlen)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, doc, n);
    int rc = sol_json_scan_object(copy, n, max_depth, NULL, NULL, err, errlen);
    free(copy);
    return rc;
}

static struct sol_json_span span_of(const char *text, enum sol_json_type type)
{
    struct sol_json_span s = {text, strlen(text), type};
    return s;
}

/* --- members -------------------------------------------------------------- */

struct member {
    char key[64];
    char value[256];
    enum sol_json_type type;
};

struct members {
    struct member m[16];
    int n;
    int stop_after; /* return 7 from the callback after this many; 0 = never */
};

static int collect(void *ud, const struct sol_json_span *key, const struct sol_json_span *value)
{
    struct members *ms = ud;
    if (ms->n < 16 && key->len < 64 && value->len < 256) {
        struct member *m = &ms->m[ms->n];
        memcpy(m->key, key->p, key->len);
        m->key[key->len] = '\0';
        memcpy(m->value, value->p, value->len);
        m->value[value->len] = '\0';
        m->type = value->type;
    }
    ms->n++;
    if (ms->stop_after && ms->n == ms->stop_after)
        return 7;
    return 0;
}

static void test_valid_documents(void)
{
    static const struct {
        const char *doc;
        int rc;
    } cases[] = {
        {"{}", SOL_JSON_OK},
        {" \t\r\n{ \t\r\n} \t\r\n", SOL_JSON_OK},
        {"{\"a\":1}", SOL_JSON_OK},
        {"{\"a\":{\"b\":[1,2,{\"c\":null}],\"d\":\"\"},\"e\":[]}", SOL_JSON_OK},
        {"{\"\":\"\"}", SOL_JSON_OK},
        {"{\"a\" : [ ] , \"b\" : { } }", SOL_JSON_OK},
        {"{\"a\":\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u00e9 \\uD83D\\uDE00\"}", SOL_JSON_OK},
        {"{\"lone\":\"\\ud800 \\udc00 \\uDBFF\\u0041\"}", SOL_JSON_OK},
        {"{\"utf8\":\"\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbf \xf4\x8f\xbf\xbf "
         "\xed\x9f\xbf \xee\x80\x80 \xc2\x80 \xdf\xbf \xe0\xa0\x80 \xf0\x90\x80\x80 "
         "\xf3\xbf\xbf\xbf\"}",
         SOL_JSON_OK},
        {"{\"n\":[0,-0,1,-1,0.5,-0.5,1e5,1E5,1e+5,1e-5,1.5e10,-0.0e-0,"
         "123456789012345678901234567890]}",
         SOL_JSON_OK},
        {"{\"t\":true,\"f\":false,\"n\":null}", SOL_JSON_OK},
        {"null", SOL_JSON_ENOTOBJECT},
        {"true", SOL_JSON_ENOTOBJECT},
        {"false", SOL_JSON_ENOTOBJECT},
        {"0", SOL_JSON_ENOTOBJECT},
        {"-1.5e-3", SOL_JSON_ENOTOBJECT},
        {" 42 ", SOL_JSON_ENOTOBJECT},
        {"\"str\"", SOL_JSON_ENOTOBJECT},
        {"[]", SOL_JSON_ENOTOBJECT},
        {"[1,\"a\",{\"b\":[]},null]", SOL_JSON_ENOTOBJECT},
        {"[{\"model\":\"x\"}]", SOL_JSON_ENOTOBJECT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[128] = "untouched";
        int rc = scan_n(cases[i].doc, strlen(cases[i].doc), 64, err, sizeof err);
        CHECK(rc == cases[i].rc, "doc %zu <%s>: rc %d, err '%s'", i, cases[i].doc, rc, err);
        if (rc == SOL_JSON_OK)
            CHECK(err[0] == '\0', "doc %zu: err not cleared: '%s'", i, err);
    }

    char err[128];
    CHECK(scan("[1]", err, sizeof err) == SOL_JSON_ENOTOBJECT, "array");
    CHECK(strcmp(err, "JSON value is an array, not an object") == 0, "msg '%s'", err);
    CHECK(scan(" \"x\"", err, sizeof err) == SOL_JSON_ENOTOBJECT, "string");
    CHECK(strcmp(err, "JSON value is a string, not an object") == 0, "msg '%s'", err);

    /* A non-object is still validated completely before ENOTOBJECT. */
    CHECK(scan("[1,]", err, sizeof err) == SOL_JSON_EINVAL, "bad array: '%s'", err);
    CHECK(scan("\"a\" x", err, sizeof err) == SOL_JSON_EINVAL, "trailing: '%s'", err);

    /* The callback is never called for a non-object. */
    struct members ms = {0};
    CHECK(sol_json_scan_object("[{\"a\":1}]", 9, 8, collect, &ms, NULL, 0) == SOL_JSON_ENOTOBJECT,
          "array of objects");
    CHECK(ms.n == 0, "callback called %d times", ms.n);
}

static void test_members(void)
{
    const char *doc = " { \"model\" : \"llama3:8b\", \"stream\":false,\n"
                      "\"options\": {\"temperature\": 0.2, \"num_ctx\": 8192},"
                      "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}] ,"
                      "\"keep_alive\":\"5m\",\"priority\":-3,\"x\":null,\"t\":true,"
                      "\"mod\\u0065l\":\"again\"}  ";
    struct members ms = {0};
    int rc = sol_json_scan_object(doc, strlen(doc), 8, collect, &ms, NULL, 0);
    CHECK(rc == SOL_JSON_OK, "rc %d", rc);
    static const struct member want[] = {
        {"\"model\"", "\"llama3:8b\"", SOL_JSON_STRING},
        {"\"stream\"", "false", SOL_JSON_FALSE},
        {"\"options\"", "{\"temperature\": 0.2, \"num_ctx\": 8192}", SOL_JSON_OBJECT},
        {"\"messages\"", "[{\"role\":\"user\",\"content\":\"hi\"}]", SOL_JSON_ARRAY},
        {"\"keep_alive\"", "\"5m\"", SOL_JSON_STRING},
        {"\"priority\"", "-3", SOL_JSON_NUMBER},
        {"\"x\"", "null", SOL_JSON_NULL},
        {"\"t\"", "true", SOL_JSON_TRUE},
        {"\"mod\\u0065l\"", "\"again\"", SOL_JSON_STRING},
    };
    int nwant = (int)(sizeof want / sizeof want[0]);
    CHECK(ms.n == nwant, "%d members", ms.n);
    for (int i = 0; i < nwant && i < ms.n; i++) {
        CHECK(strcmp(ms.m[i].key, want[i].key) == 0, "member %d key <%s>", i, ms.m[i].key);
        CHECK(strcmp(ms.m[i].value, want[i].value) == 0, "member %d value <%s>", i, ms.m[i].value);
        CHECK(ms.m[i].type == want[i].type, "member %d type %d", i, ms.m[i].type);
    }

    /* A nonzero callback return stops the scan and is returned. */
    struct members stop = {.stop_after = 2};
    rc = sol_json_scan_object(doc, strlen(doc), 8, collect, &stop, NULL, 0);
    CHECK(rc == 7, "rc %d", rc);
    CHECK(stop.n == 2, "callback called %d times", stop.n);

    /* Members seen before an error are reported; the error still wins. */
    struct members partial = {0};
    char err[128];
    rc = sol_json_scan_object("{\"a\":1,\"b\":2,", 13, 8, collect, &partial, err, sizeof err);
    CHECK(rc == SOL_JSON_EINVAL, "rc %d", rc);
    CHECK(partial.n == 2, "%d members", partial.n);

    /* Empty object: no calls. */
    struct members none = {0};
    CHECK(sol_json_scan_object("{ }", 3, 8, collect, &none, NULL, 0) == SOL_JSON_OK, "empty");
    CHECK(none.n == 0, "%d calls", none.n);
}

/* Spans handed to the callback must point into the scanned buffer. */
struct where {
    const char *buf;
    size_t len;
    int ok;
};

static int check_inside(void *ud, const struct sol_json_span *key,
                        const struct sol_json_span *value)
{
    struct where *w = ud;
    if (key->p < w->buf || key->p + key->len > w->buf + w->len || value->p < key->p + key->len ||
        value->p + value->len > w->buf + w->len || key->p[0] != '"' || key->p[key->len - 1] != '"')
        w->ok = 0;
    return 0;
}

static void test_spans_inside_buffer(void)
{
    const char *doc = "{\"a\":[1,2],\"bb\":{\"c\":\"d\"},\"e\":\"\\\"\"}";
    struct where w = {doc, strlen(doc), 1};
    CHECK(sol_json_scan_object(doc, w.len, 4, check_inside, &w, NULL, 0) == SOL_JSON_OK, "scan");
    CHECK(w.ok, "span outside the buffer");
}

/* --- keys ----------------------------------------------------------------- */

static void test_keys(void)
{
    static const struct {
        const char *raw, *name;
        int eq, fold;
    } cases[] = {
        {"\"model\"", "model", 1, 1},
        {"\"mod\\u0065l\"", "model", 1, 1},
        {"\"\\u006d\\u006F\\u0064\\u0065\\u006c\"", "model", 1, 1},
        {"\"model\"", "mode", 0, 0},
        {"\"mode\"", "model", 0, 0},
        {"\"modelx\"", "model", 0, 0},
        {"\"mod\\u0065\"", "model", 0, 0},
        {"\"Model\"", "model", 0, 1},
        {"\"MODEL\"", "model", 0, 1},
        {"\"MOD\\u0045L\"", "model", 0, 1},
        {"\"\\u017Ftream\"", "stream", 0, 1},         /* long s */
        {"\"\xc5\xbftream\"", "stream", 0, 1},        /* long s, raw UTF-8 */
        {"\"\\u212Aeep_alive\"", "keep_alive", 0, 1}, /* Kelvin sign */
        {"\"\xe2\x84\xaa"
         "eep_alive\"",
         "keep_alive", 0, 1},
        {"\"\\u212Aeep_alive\"", "KEEP_ALIVE", 0, 1},
        {"\"\\u00e9\"", "\xc3\xa9", 1, 1}, /* non-ASCII name: exact only */
        {"\"\\u00c9\"", "\xc3\xa9", 0, 0},
        {"\"a\\\"b\"", "a\"b", 1, 1},
        {"\"a\\\\b\"", "a\\b", 1, 1},
        {"\"a\\/b\\n\"", "a/b\n", 1, 1},
        {"\"\\uD83D\\uDE00\"", "\xf0\x9f\x98\x80", 1, 1},
        {"\"\\ud800\"", "\xef\xbf\xbd", 1, 1}, /* lone surrogate decodes to U+FFFD */
        {"\"\"", "", 1, 1},
        {"\"\"", "a", 0, 0},
        {"\"a\"", "", 0, 0},
        {"\"a\\u0000\"", "a", 0, 0}, /* embedded NUL never equals a C string */
        {"\"model_\"", "model-", 0, 0},
        {"\"[\"", "{", 0, 0}, /* fold must not map '[' to '{' */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sol_json_span k = span_of(cases[i].raw, SOL_JSON_STRING);
        CHECK(sol_json_key_equals(&k, cases[i].name) == cases[i].eq, "case %zu <%s> vs <%s>", i,
              cases[i].raw, cases[i].name);
        CHECK(sol_json_key_equals_fold(&k, cases[i].name) == cases[i].fold,
              "fold case %zu <%s> vs <%s>", i, cases[i].raw, cases[i].name);
    }
    struct sol_json_span notstr = span_of("12", SOL_JSON_NUMBER);
    CHECK(!sol_json_key_equals(&notstr, "12"), "number as key");
    CHECK(!sol_json_key_equals_fold(&notstr, "12"), "number as key");
}

/* --- errors --------------------------------------------------------------- */

static void test_truncation(void)
{
    const char *doc = "{\"model\":\"llama3\",\"a\":[1,-2.5e+3,true,false,null,{\"b\":\"\\u00e9\\n"
                      "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}],\"c\":{},\"d\":[]}";
    size_t n = strlen(doc);
    CHECK(scan_n(doc, n, 8, NULL, 0) == SOL_JSON_OK, "whole document");
    for (size_t i = 0; i < n; i++) {
        char err[128] = "";
        int rc = scan_n(doc, i, 8, err, sizeof err);
        CHECK(rc == SOL_JSON_EINVAL || rc == SOL_JSON_ENOTOBJECT, "prefix %zu: rc %d", i, rc);
        CHECK(rc != SOL_JSON_EINVAL || strncmp(err, "invalid JSON: ", 14) == 0,
              "prefix %zu: err '%s'", i, err);
    }
    /* Prefixes of a top-level array or number may be valid non-objects. */
    const char *arr = "[1,{\"a\":\"b\"},[2]]";
    for (size_t i = 0; i < strlen(arr); i++) {
        int rc = scan_n(arr, i, 8, NULL, 0);
        CHECK(rc == SOL_JSON_EINVAL || rc == SOL_JSON_ENOTOBJECT, "array prefix %zu: rc %d", i, rc);
    }
    char err[128];
    CHECK(scan_n("", 0, 8, err, sizeof err) == SOL_JSON_EINVAL, "empty");
    CHECK(strcmp(err, "invalid JSON: unexpected end of input at offset 0") == 0, "'%s'", err);
    CHECK(scan_n(" \n", 2, 8, err, sizeof err) == SOL_JSON_EINVAL, "blank");
    CHECK(sol_json_scan_object(NULL, 0, 8, NULL, NULL, err, sizeof err) == SOL_JSON_EINVAL, "NULL");
    CHECK(scan_n("{\"a\":1}", 6, 8, err, sizeof err) == SOL_JSON_EINVAL, "no close");
    CHECK(strcmp(err, "invalid JSON: unexpected end of input at offset 6") == 0, "'%s'", err);
}

static void test_bad_utf8(void)
{
    static const struct {
        const char *bytes;
        size_t off; /* where the error is reported */
    } bad[] = {
        {"\x80", 9},             /* lone continuation */
        {"\xbf", 9},             /* lone continuation */
        {"\xc0\xaf", 9},         /* overlong '/' */
        {"\xc1\xbf", 9},         /* overlong */
        {"\xe0\x80\xaf", 9},     /* overlong 3-byte */
        {"\xe0\x9f\xbf", 9},     /* overlong 3-byte, top */
        {"\xf0\x80\x80\xaf", 9}, /* overlong 4-byte */
        {"\xf0\x8f\xbf\xbf", 9}, /* overlong 4-byte, top */
        {"\xed\xa0\x80", 9},     /* U+D800 encoded */
        {"\xed\xbf\xbf", 9},     /* U+DFFF encoded */
        {"\xf4\x90\x80\x80", 9}, /* U+110000 */
        {"\xf5\x80\x80\x80", 9}, /* lead byte above F4 */
        {"\xf8\x88\x80\x80\x80", 9},
        {"\xfe", 9},
        {"\xff", 9},
        {"\xc3", 9},         /* missing continuation (then the closing quote) */
        {"\xc3\x28", 9},     /* bad continuation */
        {"\xe2\x82", 9},     /* truncated 3-byte */
        {"\xe2\x28\xa1", 9}, /* bad second byte */
        {"\xe2\x82\x28", 9}, /* bad third byte */
        {"\xf0\x9f\x98", 9}, /* truncated 4-byte */
        {"\xf0\x9f\x28\x80", 9},
        {"\xc3\xa9\xa9", 11}, /* extra continuation */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char doc[64], err[128] = "";
        char want[64];
        int n = snprintf(doc, sizeof doc, "{\"k\":\"ok %s ok\"}", bad[i].bytes);
        int rc = scan_n(doc, (size_t)n, 8, err, sizeof err);
        CHECK(rc == SOL_JSON_EINVAL, "bad utf8 %zu: rc %d", i, rc);
        snprintf(want, sizeof want, "invalid JSON: invalid UTF-8 in string at offset %zu",
                 bad[i].off);
        CHECK(strcmp(err, want) == 0, "bad utf8 %zu: '%s'", i, err);
        /* Same in a key. */
        n = snprintf(doc, sizeof doc, "{\"%s\":1}", bad[i].bytes);
        CHECK(scan_n(doc, (size_t)n, 8, NULL, 0) == SOL_JSON_EINVAL, "bad utf8 key %zu", i);
    }
    /* A sequence cut by the end of input is an EOF, not a crash. */
    CHECK(scan_n("\"\xf0\x9f\x98", 4, 8, NULL, 0) == SOL_JSON_EINVAL, "cut 4-byte");
    /* Raw UTF-8 outside strings is just an unexpected character. */
    CHECK(scan_n("{\"a\":\xc3\xa9}", 8, 8, NULL, 0) == SOL_JSON_EINVAL, "utf8 as value");
    /* A UTF-8 BOM is not JSON whitespace. */
    CHECK(scan_n("\xef\xbb\xbf{}", 5, 8, NULL, 0) == SOL_JSON_EINVAL, "BOM");
}

static void test_control_chars(void)
{
    for (int c = 0; c < 0x20; c++) {
        char doc[16], err[128] = "";
        int n = snprintf(doc, sizeof doc, "{\"k\":\"a%cb\"}", c == 0 ? 'X' : c);
        if (c == 0)
            doc[7] = '\0'; /* raw NUL inside the string */
        int rc = scan_n(doc, (size_t)n, 8, err, sizeof err);
        CHECK(rc == SOL_JSON_EINVAL, "control 0x%02x: rc %d", c, rc);
        char want[96];
        snprintf(want, sizeof want,
                 "invalid JSON: unescaped control character 0x%02x in string at offset 7", c);
        CHECK(strcmp(err, want) == 0, "control 0x%02x: '%s'", c, err);
    }
    /* DEL is allowed raw; the escaped forms of controls are fine. */
    CHECK(scan("{\"k\":\"a\x7f\"}", NULL, 0) == SOL_JSON_OK, "DEL");
    CHECK(scan("{\"k\":\"\\u0000\\u001f\\n\"}", NULL, 0) == SOL_JSON_OK, "escaped controls");
    /* Whitespace other than the four JSON ones is refused between tokens. */
    CHECK(scan("{\"k\":\f1}", NULL, 0) == SOL_JSON_EINVAL, "form feed");
    CHECK(scan("{\"k\":\v1}", NULL, 0) == SOL_JSON_EINVAL, "vertical tab");
    CHECK(scan("{\"k\":\xc2\xa0"
               "1}",
               NULL, 0) == SOL_JSON_EINVAL,
          "NBSP");
}

static void test_bad_grammar(void)
{
    static const struct {
        const char *doc;
        const char *err; /* exact message, or NULL to only check the code */
    } cases[] = {
        {"{\"n\":01}", "invalid JSON: unexpected character '1' at offset 6"},
        {"{\"n\":1.}", "invalid JSON: invalid number, unexpected character '}' at offset 7"},
        {"{\"n\":.5}", "invalid JSON: unexpected character '.' at offset 5"},
        {"{\"n\":-}", "invalid JSON: invalid number, unexpected character '}' at offset 6"},
        {"{\"n\":1e}", "invalid JSON: invalid number, unexpected character '}' at offset 7"},
        {"{\"n\":1e+}", NULL},
        {"{\"n\":1E-}", NULL},
        {"{\"n\":+1}", NULL},
        {"{\"n\":-01}", NULL},
        {"{\"n\":00}", NULL},
        {"{\"n\":1.e5}", NULL},
        {"{\"n\":0x10}", NULL},
        {"{\"n\":1_000}", NULL},
        {"{\"n\":--1}", NULL},
        {"{\"n\":- 1}", NULL},
        {"{\"n\":NaN}", NULL},
        {"{\"n\":Infinity}", NULL},
        {"{\"n\":-Infinity}", NULL},
        {"01", NULL},
        {"1.", NULL},
        {".5", NULL},
        {"-", NULL},
        {"1e", NULL},
        {"{\"a\":1} x", "invalid JSON: unexpected character 'x' after the value at offset 8"},
        {"{\"a\":1}}", NULL},
        {"{}{}", NULL},
        {"{} {}", NULL},
        {"[1] 2", NULL},
        {"1 2", NULL},
        {"{\"a\":1,}", "invalid JSON: unexpected character '}' at offset 7"},
        {"{,}", NULL},
        {"{\"a\" 1}", NULL},
        {"{\"a\"::1}", NULL},
        {"{\"a\":}", NULL},
        {"{\"a\":1 \"b\":2}", NULL},
        {"{a:1}", NULL},
        {"{'a':1}", "invalid JSON: unexpected byte 0x27 at offset 1"},
        {"{1:1}", NULL},
        {"{null:1}", NULL},
        {"[1,]", NULL},
        {"[,1]", NULL},
        {"[1 2]", NULL},
        {"[}", NULL},
        {"{]", NULL},
        {"{\"a\":[1}", NULL},
        {"{\"a\":{]}", NULL},
        {"]", NULL},
        {"}", NULL},
        {"{\"a\":tru}", "invalid JSON: unexpected character '}' at offset 8"},
        {"{\"a\":True}", NULL},
        {"{\"a\":nul}", NULL},
        {"{\"a\":fals}", NULL},
        {"{\"a\":truex}", NULL},
        {"{\"a\":nulll}", NULL},
        {"{\"a\":\"\\x\"}", "invalid JSON: invalid escape in string at offset 6"},
        {"{\"a\":\"\\U0041\"}", NULL},
        {"{\"a\":\"\\u12\"}", "invalid JSON: \\u not followed by 4 hex digits at offset 6"},
        {"{\"a\":\"\\u12G4\"}", NULL},
        {"{\"a\":\"\\u1x\"}", "invalid JSON: \\u not followed by 4 hex digits at offset 6"},
        {"{\"a\":\"\\u12", "invalid JSON: unexpected end of input at offset 10"},
        {"{\"a\":\"\\uG", "invalid JSON: \\u not followed by 4 hex digits at offset 6"},
        {"{\"a\":\"\\", "invalid JSON: unexpected end of input at offset 7"},
        {"{\"a\":\"\\u 123\"}", NULL},
        {"{\"a\":\"\\\"}", NULL},
        {"{\"a\":\"\\'\"}", NULL},
        {"{\"a\":\"abc}", NULL},
        {"/* c */{}", NULL},
        {"{} // c", NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = strlen(cases[i].doc);
        char err[128] = "";
        int rc = scan_n(cases[i].doc, n, 8, err, sizeof err);
        CHECK(rc == SOL_JSON_EINVAL, "case %zu <%s>: rc %d", i, cases[i].doc, rc);
        CHECK(strncmp(err, "invalid JSON: ", 14) == 0, "case %zu: '%s'", i, err);
        if (cases[i].err)
            CHECK(strcmp(err, cases[i].err) == 0, "case %zu <%s>: '%s'", i, cases[i].doc, err);
    }
    /* A NUL byte after the value is trailing data, not an end marker. */
    char err[128];
    CHECK(scan_n("{}\0", 3, 8, err, sizeof err) == SOL_JSON_EINVAL, "NUL after value");
    CHECK(strcmp(err, "invalid JSON: unexpected byte 0x00 after the value at offset 2") == 0,
          "'%s'", err);
}

static void test_error_buffer(void)
{
    /* Small buffers get a cut, terminated message; none at all is fine. */
    char err[8];
    memset(err, 'z', sizeof err);
    CHECK(scan_n("{x}", 3, 8, err, 5) == SOL_JSON_EINVAL, "rc");
    CHECK(strcmp(err, "inva") == 0 && err[5] == 'z', "'%.8s'", err);
    CHECK(scan_n("{x}", 3, 8, NULL, 100) == SOL_JSON_EINVAL, "NULL err");
    CHECK(scan_n("{x}", 3, 8, err, 0) == SOL_JSON_EINVAL, "errlen 0");
    CHECK(scan_n("[[1]]", 5, 1, err, 1) == SOL_JSON_EDEPTH && err[0] == '\0', "depth, errlen 1");
    /* Long offsets print in full. */
    size_t n = 100000;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[n - 1] = 'x';
    char msg[128];
    CHECK(scan_n(big, n, 8, msg, sizeof msg) == SOL_JSON_EINVAL, "rc");
    CHECK(strcmp(msg, "invalid JSON: unexpected character 'x' at offset 99999") == 0, "'%s'", msg);
    free(big);
}

static char *nested(int levels, const char *open, const char *close, const char *inner)
{
    size_t lo = strlen(open), lc = strlen(close), li = strlen(inner);
    char *s = malloc((size_t)levels * (lo + lc) + li + 1);
    char *w = s;
    for (int i = 0; i < levels; i++, w += lo)
        memcpy(w, open, lo);
    memcpy(w, inner, li);
    w += li;
    for (int i = 0; i < levels; i++, w += lc)
        memcpy(w, close, lc);
    *w = '\0';
    return s;
}

static void test_depth(void)
{
    char err[128];
    CHECK(scan_n("{}", 2, 1, NULL, 0) == SOL_JSON_OK, "depth 1 object");
    CHECK(scan_n("{\"a\":1}", 7, 1, NULL, 0) == SOL_JSON_OK, "depth 1 member");
    CHECK(scan_n("{\"a\":[]}", 8, 1, err, sizeof err) == SOL_JSON_EDEPTH, "depth 2 in 1");
    CHECK(strcmp(err, "invalid JSON: nesting exceeds max depth 1 at offset 5") == 0, "'%s'", err);
    CHECK(scan_n("{\"a\":[]}", 8, 2, NULL, 0) == SOL_JSON_OK, "depth 2 in 2");
    CHECK(scan_n("{}", 2, 0, NULL, 0) == SOL_JSON_OK, "max_depth 0 acts as 1");
    CHECK(scan_n("{\"a\":{}}", 8, -5, NULL, 0) == SOL_JSON_EDEPTH, "negative acts as 1");
    CHECK(scan_n("1", 1, 0, NULL, 0) == SOL_JSON_ENOTOBJECT, "scalars have depth 0");

    int levels[] = {10, 64, 65, 1000, 4096, 4097, 100000};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        int l = levels[i];
        char *a = nested(l, "[", "]", "");
        char *o = nested(l - 1, "{\"k\":", "}", "{}");
        char *mix = nested(l / 2, "{\"k\":[", "]}", "");
        int want64 = l <= 64 ? SOL_JSON_ENOTOBJECT : SOL_JSON_EDEPTH;
        CHECK(scan_n(a, strlen(a), 64, NULL, 0) == want64, "array %d levels", l);
        int wantobj = l <= 64 ? SOL_JSON_OK : SOL_JSON_EDEPTH;
        CHECK(scan_n(o, strlen(o), 64, NULL, 0) == wantobj, "object %d levels", l);
        /* Limit clamped to SOL_JSON_DEPTH_LIMIT. */
        int wantmax = l <= SOL_JSON_DEPTH_LIMIT ? SOL_JSON_OK : SOL_JSON_EDEPTH;
        CHECK(scan_n(o, strlen(o), 1000000, NULL, 0) == wantmax, "object %d levels, huge max", l);
        int wantmix = (l / 2) * 2 <= 100 ? SOL_JSON_OK : SOL_JSON_EDEPTH;
        CHECK(scan_n(mix, strlen(mix), 100, NULL, 0) == wantmix, "mixed %d levels", l);
        free(a);
        free(o);
        free(mix);
    }
    /* Unbalanced deep input ends in EOF, not a crash. */
    char *open = nested(3000, "[", "", "");
    CHECK(scan_n(open, strlen(open), 4096, NULL, 0) == SOL_JSON_EINVAL, "3000 open brackets");
    free(open);
    /* Depth returns as containers close: many siblings at depth 2. */
    char sib[4096] = "{\"a\":[";
    for (int i = 0; i < 500; i++)
        strcat(sib, i ? ",[]" : "[]");
    strcat(sib, "]}");
    CHECK(scan_n(sib, strlen(sib), 3, NULL, 0) == SOL_JSON_OK, "siblings");
}

/* Every offset of the special byte relative to the 8/16-byte fast path. */
static void test_string_boundaries(void)
{
    for (size_t len = 0; len < 70; len++) {
        for (size_t at = 0; at <= len; at++) {
            char doc[128];
            size_t n = 0;
            memcpy(doc, "{\"k\":\"", 6);
            n = 6;
            memset(doc + n, 'a', len);
            n += len;
            memcpy(doc + n, "\"}", 2);
            n += 2;
            CHECK(scan_n(doc, n, 4, NULL, 0) == SOL_JSON_OK, "plain len %zu", len);
            if (at == len)
                continue;
            static const char specials[] = {'\n', '\x01', '\x1f', '\x80', '\xff', '"'};
            for (size_t s = 0; s < sizeof specials; s++) {
                char saved = doc[6 + at];
                doc[6 + at] = specials[s];
                int rc = scan_n(doc, n, 4, NULL, 0);
                CHECK(rc == SOL_JSON_EINVAL, "len %zu at %zu special 0x%02x: rc %d", len, at,
                      (unsigned char)specials[s], rc);
                doc[6 + at] = saved;
            }
            /* Valid escapes and UTF-8 at every offset, and the same cut
             * short by the end of the string. */
            static const char *const seqs[] = {
                "\\n",      "\\\\",         "\\u00e9",      "\\uD83D\\uDE00",
                "\xc3\xa9", "\xe4\xb8\xad", "\xed\x9f\xbf", "\xf0\x9f\x98\x80"};
            for (size_t q = 0; q < sizeof seqs / sizeof seqs[0]; q++) {
                size_t sl = strlen(seqs[q]);
                if (at + sl > len)
                    continue;
                char copy[128];
                memcpy(copy, doc, n);
                memcpy(copy + 6 + at, seqs[q], sl);
                CHECK(scan_n(copy, n, 4, NULL, 0) == SOL_JSON_OK, "seq %zu at %zu", q, at);
                for (size_t cut = 1; cut < sl; cut++) {
                    int rc = scan_n(copy, 6 + at + cut, 4, NULL, 0);
                    CHECK(rc == SOL_JSON_EINVAL, "seq %zu at %zu cut %zu: rc %d", q, at, cut, rc);
                }
            }
        }
    }
}

/* --- decoding --------------------------------------------------------------- */

static void test_string_decode(void)
{
    static const struct {
        const char *raw;
        const char *want;
        long len;
    } cases[] = {
        {"\"\"", "", 0},
        {"\"plain\"", "plain", 5},
        {"\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t", 8},
        {"\"\\u0041\\u00e9\\u20AC\"", "A\xc3\xa9\xe2\x82\xac", 6},
        {"\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80", 4},
        {"\"\\uDBFF\\uDFFF\"", "\xf4\x8f\xbf\xbf", 4},
        {"\"x\\uD800\\uDC00y\"", "x\xf0\x90\x80\x80y", 6},
        {"\"\\ud800\"", "\xef\xbf\xbd", 3},   /* lone high */
        {"\"\\udc00\"", "\xef\xbf\xbd", 3},   /* lone low */
        {"\"\\ud800x\"", "\xef\xbf\xbdx", 4}, /* high, then text */
        {"\"\\ud800\\u0041\"",
         "\xef\xbf\xbd"
         "A",
         4}, /* high, then non-surrogate */
        {"\"\\ud800\\ud800\\udc00\"", "\xef\xbf\xbd\xf0\x90\x80\x80", 7}, /* high, then pair */
        {"\"\\udc00\\ud800\"", "\xef\xbf\xbd\xef\xbf\xbd", 6},            /* reversed pair */
        {"\"\\ud800\\n\"", "\xef\xbf\xbd\n", 4},
        {"\"raw \xc3\xa9 \xf0\x9f\x98\x80\"", "raw \xc3\xa9 \xf0\x9f\x98\x80", 11},
        {"\"a\\u0000b\"", "a\0b", 3},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sol_json_span s = span_of(cases[i].raw, SOL_JSON_STRING);
        char out[64];
        long n = sol_json_string_decode(&s, out, sizeof out);
        CHECK(n == cases[i].len, "case %zu <%s>: %ld", i, cases[i].raw, n);
        CHECK(n >= 0 && memcmp(out, cases[i].want, (size_t)n) == 0 && out[n] == '\0',
              "case %zu <%s>", i, cases[i].raw);
        /* len - 1 bytes always suffice; exactly decoded + 1 suffices; one
         * less does not. */
        char *tight = malloc(s.len - 1);
        CHECK(sol_json_string_decode(&s, tight, s.len - 1) == cases[i].len, "case %zu tight", i);
        free(tight);
        char *exact = malloc((size_t)cases[i].len + 1);
        CHECK(sol_json_string_decode(&s, exact, (size_t)cases[i].len + 1) == cases[i].len,
              "case %zu exact", i);
        free(exact);
        if (cases[i].len > 0) {
            char *small = malloc((size_t)cases[i].len);
            CHECK(sol_json_string_decode(&s, small, (size_t)cases[i].len) == -1, "case %zu small",
                  i);
            free(small);
        }
    }
    char out[8];
    struct sol_json_span num = span_of("12", SOL_JSON_NUMBER);
    CHECK(sol_json_string_decode(&num, out, sizeof out) == -1, "number");
    struct sol_json_span q = span_of("\"", SOL_JSON_STRING);
    CHECK(sol_json_string_decode(&q, out, sizeof out) == -1, "one quote");
    struct sol_json_span s = span_of("\"ab\"", SOL_JSON_STRING);
    CHECK(sol_json_string_decode(&s, out, 0) == -1, "outlen 0");
    CHECK(sol_json_string_decode(&s, NULL, 8) == -1, "NULL out");
    struct sol_json_span badesc = span_of("\"a\\\"", SOL_JSON_STRING); /* "a\" */
    CHECK(sol_json_string_decode(&badesc, out, sizeof out) == -1, "dangling backslash");
}

/* --- spans ------------------------------------------------------------------ */

static void test_object_get(void)
{
    const char *doc = "{ \"model\":\"a\", \"options\" : { \"num_ctx\" : 4096 , \"stop\":[\"}\","
                      "\"]\\\"\"], \"model\":\"inner\" }, \"messages\":[], \"model\" : \"b\" ,"
                      "\"e\\u0078\":{} }";
    CHECK(scan(doc, NULL, 0) == SOL_JSON_OK, "doc valid");
    struct sol_json_span obj = span_of(doc, SOL_JSON_OBJECT), v;
    CHECK(sol_json_object_get(&obj, "model", &v) == 1, "model");
    CHECK(v.len == 3 && memcmp(v.p, "\"b\"", 3) == 0 && v.type == SOL_JSON_STRING,
          "last duplicate wins: <%.*s>", (int)v.len, v.p);
    CHECK(sol_json_object_get(&obj, "options", &v) == 1 && v.type == SOL_JSON_OBJECT, "options");
    struct sol_json_span opts = v;
    CHECK(sol_json_object_get(&opts, "num_ctx", &v) == 1 && v.len == 4 &&
              memcmp(v.p, "4096", 4) == 0 && v.type == SOL_JSON_NUMBER,
          "num_ctx");
    CHECK(sol_json_object_get(&opts, "model", &v) == 1 && v.len == 7, "inner model");
    CHECK(sol_json_object_get(&opts, "stop", &v) == 1 && v.type == SOL_JSON_ARRAY &&
              v.len == strlen("[\"}\",\"]\\\"\"]"),
          "stop <%.*s>", (int)v.len, v.p);
    CHECK(sol_json_object_get(&obj, "num_ctx", &v) == 0, "only direct members");
    CHECK(sol_json_object_get(&obj, "messages", &v) == 1 && v.len == 2 && v.type == SOL_JSON_ARRAY,
          "messages");
    CHECK(sol_json_object_get(&obj, "ex", &v) == 1 && v.type == SOL_JSON_OBJECT, "escaped key");
    CHECK(sol_json_object_get(&obj, "absent", &v) == 0, "absent");
    CHECK(sol_json_object_get(&obj, "", &v) == 0, "empty name");
    struct sol_json_span empty = span_of("{}", SOL_JSON_OBJECT);
    CHECK(sol_json_object_get(&empty, "a", &v) == 0, "empty object");
    struct sol_json_span arr = span_of("[\"a\"]", SOL_JSON_ARRAY);
    CHECK(sol_json_object_get(&arr, "a", &v) == 0, "not an object");

    /* object_next walks every member once, in order. */
    size_t pos = 0;
    struct sol_json_span k;
    const char *keys[] = {"model", "options", "messages", "model", "ex"};
    int i = 0;
    while (sol_json_object_next(&obj, &pos, &k, &v)) {
        CHECK(i < 5 && sol_json_key_equals(&k, keys[i]), "member %d <%.*s>", i, (int)k.len, k.p);
        i++;
    }
    CHECK(i == 5, "%d members", i);
    CHECK(!sol_json_object_next(&obj, &pos, &k, &v), "stays at the end");
    pos = 0;
    CHECK(!sol_json_object_next(&empty, &pos, &k, &v), "empty object");
    struct sol_json_span ws = span_of("{ \n }", SOL_JSON_OBJECT);
    pos = 0;
    CHECK(!sol_json_object_next(&ws, &pos, &k, &v), "blank object");
    /* Garbage spans stay in bounds and end the iteration. */
    struct sol_json_span bad = span_of("{\"a\":\"unterminated}", SOL_JSON_OBJECT);
    pos = 0;
    CHECK(!sol_json_object_next(&bad, &pos, &k, &v), "garbage");
}

static void test_array_next(void)
{
    const char *doc = "[ 1 , \"two\\\"]\" ,{\"a\":[3,4]},[ ],true,false,null, -5e-1 ]";
    CHECK(scan(doc, NULL, 0) == SOL_JSON_ENOTOBJECT, "valid");
    struct sol_json_span arr = span_of(doc, SOL_JSON_ARRAY), e;
    static const struct {
        const char *text;
        enum sol_json_type type;
    } want[] = {
        {"1", SOL_JSON_NUMBER},
        {"\"two\\\"]\"", SOL_JSON_STRING},
        {"{\"a\":[3,4]}", SOL_JSON_OBJECT},
        {"[ ]", SOL_JSON_ARRAY},
        {"true", SOL_JSON_TRUE},
        {"false", SOL_JSON_FALSE},
        {"null", SOL_JSON_NULL},
        {"-5e-1", SOL_JSON_NUMBER},
    };
    size_t pos = 0;
    int i = 0;
    while (sol_json_array_next(&arr, &pos, &e)) {
        CHECK(i < 8 && e.len == strlen(want[i].text) && memcmp(e.p, want[i].text, e.len) == 0 &&
                  e.type == want[i].type,
              "elem %d <%.*s>", i, (int)e.len, e.p);
        i++;
    }
    CHECK(i == 8, "%d elements", i);
    CHECK(!sol_json_array_next(&arr, &pos, &e), "stays at the end");

    struct sol_json_span empty = span_of("[]", SOL_JSON_ARRAY),
                         blank = span_of("[ \t ]", SOL_JSON_ARRAY);
    pos = 0;
    CHECK(!sol_json_array_next(&empty, &pos, &e), "empty");
    pos = 0;
    CHECK(!sol_json_array_next(&blank, &pos, &e), "blank");
    struct sol_json_span obj = span_of("{}", SOL_JSON_OBJECT);
    pos = 0;
    CHECK(!sol_json_array_next(&obj, &pos, &e), "object");
    /* Nested arrays via the messages member of a request. */
    const char *req = "{\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
                      "{\"role\":\"user\",\"content\":\"u\",\"images\":[\"aGk=\"]}]}";
    CHECK(scan(req, NULL, 0) == SOL_JSON_OK, "req valid");
    struct sol_json_span r = span_of(req, SOL_JSON_OBJECT), msgs, m, role;
    CHECK(sol_json_object_get(&r, "messages", &msgs), "messages");
    pos = 0;
    int n = 0;
    const char *roles[] = {"\"system\"", "\"user\""};
    while (sol_json_array_next(&msgs, &pos, &m)) {
        CHECK(n < 2 && sol_json_object_get(&m, "role", &role) && role.len == strlen(roles[n]) &&
                  memcmp(role.p, roles[n], role.len) == 0,
              "message %d", n);
        n++;
    }
    CHECK(n == 2, "%d messages", n);
}

/* --- numbers ---------------------------------------------------------------- */

static void test_numbers(void)
{
    static const struct {
        const char *text;
        int rc;
        long long v;
    } ints[] = {
        {"0", 0, 0},
        {"-0", 0, 0},
        {"7", 0, 7},
        {"-42", 0, -42},
        {"9223372036854775807", 0, 9223372036854775807LL},
        {"-9223372036854775808", 0, -9223372036854775807LL - 1},
        {"9223372036854775808", -1, 0},
        {"-9223372036854775809", -1, 0},
        {"18446744073709551616", -1, 0},
        {"99999999999999999999999", -1, 0},
        {"1.0", -1, 0},
        {"1e2", -1, 0},
        {"1E2", -1, 0},
        {"-1.5", -1, 0},
        {"01", -1, 0},
        {"+1", -1, 0},
        {"-", -1, 0},
        {"", -1, 0},
        {"1 ", -1, 0},
        {" 1", -1, 0},
        {"\"1\"", -1, 0},
        {"true", -1, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        struct sol_json_span s = span_of(ints[i].text, SOL_JSON_NUMBER);
        long long v = 12345;
        int rc = sol_json_number_int64(&s, &v);
        CHECK(rc == ints[i].rc, "int <%s>: rc %d", ints[i].text, rc);
        CHECK(rc != 0 || v == ints[i].v, "int <%s>: %lld", ints[i].text, v);
        CHECK(rc == 0 || v == 12345, "int <%s>: out written on failure", ints[i].text);
    }

    static const struct {
        const char *text;
        int rc;
        double v;
    } dbls[] = {
        {"0", 0, 0.0},
        {"-0", 0, -0.0},
        {"1.5", 0, 1.5},
        {"-2.25e2", 0, -225.0},
        {"1E-2", 0, 0.01},
        {"1e+2", 0, 100.0},
        {"9007199254740993", 0, 9007199254740992.0}, /* rounds to even */
        {"1.7976931348623157e308", 0, 1.7976931348623157e308},
        {"4.9e-324", 0, 4.9e-324},
        {"1e-400", 0, 0.0}, /* underflow is not an error, as in Go */
        {"1e309", -1, 0},
        {"-1e309", -1, 0},
        {"01", -1, 0},
        {".5", -1, 0},
        {"1.", -1, 0},
        {"1e", -1, 0},
        {"0x10", -1, 0},
        {"inf", -1, 0},
        {"nan", -1, 0},
        {"1 ", -1, 0},
        {"", -1, 0},
    };
    for (size_t i = 0; i < sizeof dbls / sizeof dbls[0]; i++) {
        struct sol_json_span s = span_of(dbls[i].text, SOL_JSON_NUMBER);
        double v = 99;
        int rc = sol_json_number_double(&s, &v);
        CHECK(rc == dbls[i].rc, "double <%s>: rc %d", dbls[i].text, rc);
        CHECK(rc != 0 || (v == dbls[i].v && signbit(v) == signbit(dbls[i].v)), "double <%s>: %g",
              dbls[i].text, v);
    }

    /* A number span that ends exactly at the end of the buffer (no NUL). */
    char *tail = malloc(3);
    memcpy(tail, "125", 3);
    struct sol_json_span t = {tail, 3, SOL_JSON_NUMBER};
    double d;
    long long ll;
    CHECK(sol_json_number_double(&t, &d) == 0 && d == 125.0, "unterminated double");
    CHECK(sol_json_number_int64(&t, &ll) == 0 && ll == 125, "unterminated int");
    t.len = 2; /* and one followed by more digits */
    CHECK(sol_json_number_double(&t, &d) == 0 && d == 12.0, "prefix double");
    CHECK(sol_json_number_int64(&t, &ll) == 0 && ll == 12, "prefix int");
    free(tail);

    /* Very long numbers take the heap path of number_double. */
    char longnum[400];
    memset(longnum, '0', sizeof longnum);
    longnum[0] = '1';
    longnum[1] = '.';
    longnum[sizeof longnum - 4] = 'e';
    longnum[sizeof longnum - 3] = '+';
    longnum[sizeof longnum - 2] = '5';
    longnum[sizeof longnum - 1] = '\0';
    struct sol_json_span ln = span_of(longnum, SOL_JSON_NUMBER);
    CHECK(sol_json_number_double(&ln, &d) == 0 && d == 1e5, "long number: %g", d);
    CHECK(sol_json_number_int64(&ln, &ll) == -1, "long number as int");
}

/* --- a realistic large body ------------------------------------------------- */

struct big_ud {
    struct sol_json_span model, messages, stream;
    int members;
};

static int big_cb(void *ud, const struct sol_json_span *key, const struct sol_json_span *value)
{
    struct big_ud *b = ud;
    b->members++;
    if (sol_json_key_equals(key, "model"))
        b->model = *value;
    else if (sol_json_key_equals(key, "messages"))
        b->messages = *value;
    else if (sol_json_key_equals(key, "stream"))
        b->stream = *value;
    return 0;
}

static void test_big_body(void)
{
    /* ~1 MiB prompt: ASCII prose with escapes (\n, \", \\, \u) and some
     * multi-byte UTF-8, as a chat request. */
    const size_t target = 1 << 20;
    char *prompt = malloc(target + 64);   /* raw JSON string content */
    char *expected = malloc(target + 64); /* what it decodes to */
    size_t n = 0, m = 0;
    static const char *const pieces[][2] = {
        {"The quick brown fox jumps over the lazy dog. ",
         "The quick brown fox jumps over the lazy dog. "},
        {"\\n", "\n"},
        {"say \\\"hi\\\" ", "say \"hi\" "},
        {"C:\\\\path ", "C:\\path "},
        {"caf\xc3\xa9 ", "caf\xc3\xa9 "},
        {"\\u00e9\\u4e2d ", "\xc3\xa9\xe4\xb8\xad "},
        {"\xe4\xb8\xad\xe6\x96\x87 ", "\xe4\xb8\xad\xe6\x96\x87 "},
        {"\\ud83d\\ude00 ", "\xf0\x9f\x98\x80 "},
        {"code: for (i = 0; i < n; i++) { sum += a[i]; }\\t",
         "code: for (i = 0; i < n; i++) { sum += a[i]; }\t"},
    };
    unsigned seed = 1;
    while (n < target) {
        seed = seed * 1103515245u + 12345u;
        unsigned k = (seed >> 16) % 20;
        size_t idx = k < 12 ? 0 : k - 11; /* mostly plain prose */
        const char *raw = pieces[idx][0], *dec = pieces[idx][1];
        memcpy(prompt + n, raw, strlen(raw));
        n += strlen(raw);
        memcpy(expected + m, dec, strlen(dec));
        m += strlen(dec);
    }
    const char *head = "{\"model\":\"llama3.1:8b\",\"messages\":[{\"role\":\"system\",\"content\":"
                       "\"You are helpful.\"},{\"role\":\"user\",\"content\":\"";
    const char *tail = "\"}],\"stream\":true,\"options\":{\"temperature\":0.7,\"num_ctx\":"
                       "32768},\"keep_alive\":\"10m\"}";
    size_t len = strlen(head) + n + strlen(tail);
    char *body = malloc(len);
    memcpy(body, head, strlen(head));
    memcpy(body + strlen(head), prompt, n);
    memcpy(body + strlen(head) + n, tail, strlen(tail));

    struct big_ud b = {0};
    char err[128] = "";
    int rc = sol_json_scan_object(body, len, 64, big_cb, &b, err, sizeof err);
    CHECK(rc == SOL_JSON_OK, "big body: rc %d '%s'", rc, err);
    CHECK(b.members == 5, "%d members", b.members);
    char model[32];
    CHECK(sol_json_string_decode(&b.model, model, sizeof model) == 11 &&
              strcmp(model, "llama3.1:8b") == 0,
          "model");
    CHECK(b.stream.type == SOL_JSON_TRUE, "stream");
    size_t pos = 0;
    struct sol_json_span msg, content;
    int msgs = 0;
    while (sol_json_array_next(&b.messages, &pos, &msg))
        msgs++;
    CHECK(msgs == 2, "%d messages", msgs);
    if (msgs != 2) {
        free(body);
        free(prompt);
        free(expected);
        return;
    }
    CHECK(sol_json_object_get(&msg, "content", &content), "content");
    CHECK(content.len == n + 2, "content span %zu vs %zu", content.len, n + 2);
    char *decoded = malloc(content.len);
    long dl = sol_json_string_decode(&content, decoded, content.len - 1);
    CHECK(dl == (long)m && memcmp(decoded, expected, m) == 0, "decoded prompt (%ld vs %zu)", dl, m);
    free(decoded);

    /* One bad byte near the end is found and located. */
    size_t bad_at = strlen(head) + n - 3;
    char saved = body[bad_at];
    body[bad_at] = '\x01';
    rc = sol_json_scan_object(body, len, 64, NULL, NULL, err, sizeof err);
    char want[128];
    snprintf(want, sizeof want,
             "invalid JSON: unescaped control character 0x01 in string at offset %zu", bad_at);
    CHECK(rc == SOL_JSON_EINVAL && strcmp(err, want) == 0, "bad byte: '%s'", err);
    body[bad_at] = saved;
    /* Cut in the middle of the prompt. */
    CHECK(sol_json_scan_object(body, len / 2, 64, NULL, NULL, NULL, 0) == SOL_JSON_EINVAL,
          "cut body");

    free(body);
    free(prompt);
    free(expected);
}

int main(void)
{
    test_valid_documents();
    test_members();
    test_spans_inside_buffer();
    test_keys();
    test_truncation();
    test_bad_utf8();
    test_control_chars();
    test_bad_grammar();
    test_error_buffer();
    test_depth();
    test_string_boundaries();
    test_string_decode();
    test_object_get();
    test_array_next();
    test_numbers();
    test_big_body();
    return check_summary();
}
