/*
 * Unit test of hdr_check: request targets (accepted ones decode to their own
 * normal form, every attack encoding is refused), header fields as
 * libmicrohttpd 0.9.75 lays them out (space before the colon, bare CR,
 * obs-fold, NUL), Transfer-Encoding and Content-Length rules, Connection
 * lists and the node response filter.
 */
#include "base/hdr_check.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* Checks from an exact-size heap copy, so ASan sees any overread. */
static long target(const char *in, size_t n, char *out, size_t cap)
{
    char *copy = malloc(n ? n : 1);
    if (!copy)
        abort();
    memcpy(copy, in, n);
    const char *why = NULL;
    long rc = sol_target_check(copy, n, out, cap, &why);
    free(copy);
    if (rc < 0 && !why)
        return -2;
    return rc;
}

static void test_targets(void)
{
    static const struct {
        const char *in, *want;
    } ok[] = {
        {"/", "/"},
        {"/api/chat", "/api/chat"},
        {"/api/ch%61t", "/api/chat"},
        {"/v1/chat/complet%69ons?x=1&y=%2F", "/v1/chat/completions"},
        {"/api/blobs/sha256:abc", "/api/blobs/sha256:abc"},
        {"/v1/models/llama3.2%3A3b", "/v1/models/llama3.2:3b"},
        {"/a/.../b", "/a/.../b"},
        {"/a/.b/c.", "/a/.b/c."},
        {"/a?", "/a"},
        {"/a?q=%41", "/a"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        char out[128];
        long n = target(ok[i].in, strlen(ok[i].in), out, sizeof out);
        CHECK(n == (long)strlen(ok[i].want) && strcmp(out, ok[i].want) == 0, "%s -> %ld %s",
              ok[i].in, n, n >= 0 ? out : "");
        /* Its own normal form: accepted again, unchanged. */
        char again[128];
        long m = target(out, strlen(out), again, sizeof again);
        CHECK(m == n && strcmp(again, out) == 0, "%s not idempotent", ok[i].in);
    }
    static const char *const bad[] = {
        "",
        "api/chat",
        "*",
        "http://x/api/chat",
        "/v1/%2e%2e/api/copy",
        "/v1/%2E%2E/api/copy",
        "/v1/../api/copy",
        "/v1/./x",
        "/v1/.%2e/x",
        "/v1/..",
        "/v1/.",
        "/v1/x/..?a=b",
        "/v1//api/copy",
        "//api/copy",
        "/api/chat/",
        "/v1/..%2fapi/copy",
        "/v1/x%2Fy",
        "/v1/x%3fy",
        "/v1/x%3Fy",
        "/v1/x%23y",
        "/v1/x%00y",
        "/v1/x%25y",
        "/v1/x%5cy",
        "/v1/x%20y",
        "/v1/x%7fy",
        "/v1/x%C3%A9",
        "/v1/x y",
        "/v1/x\ty",
        "/v1/x#y",
        "/v1/x\\y",
        "/v1/x\"y",
        "/v1/x%",
        "/v1/x%4",
        "/v1/x%zz",
        "/v1/x%%41",
        "/a?x=1 2",
        "/a?x=%00",
        "/a?x=%4",
        "/a?x#y",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[64];
        CHECK(target(bad[i], strlen(bad[i]), out, sizeof out) == -1, "accepted %s", bad[i]);
    }
    /* A NUL inside the raw bytes (not only %00) is refused too. */
    CHECK(target("/v1/x\0/../api", 13, NULL, 0) == -1, "raw NUL");
    /* A short output buffer: the length is still right, out terminated. */
    char small[4];
    CHECK(target("/api/chat", 9, small, sizeof small) == 9 && small[3] == '\0', "small buffer");
}

/* Lays header fields out as libmicrohttpd 0.9.75 does: in place, "name\0"
 * then blanks then "value\0\0" (CRLF), one after another. */
struct layout {
    char buf[1024];
    size_t len;
    struct sol_hdr_field f[16];
    size_t n;
};

static void add(struct layout *l, const char *name, const char *blanks, const char *value,
                size_t vlen, const char *eol)
{
    struct sol_hdr_field *f = &l->f[l->n++];
    f->name = l->buf + l->len;
    f->name_len = strlen(name);
    memcpy(l->buf + l->len, name, f->name_len + 1);
    l->len += f->name_len + 1;
    memcpy(l->buf + l->len, blanks, strlen(blanks));
    l->len += strlen(blanks);
    f->value = l->buf + l->len;
    f->value_len = strnlen(value, vlen);
    memcpy(l->buf + l->len, value, vlen);
    l->len += vlen;
    memset(l->buf + l->len, 0, strlen(eol));
    l->len += strlen(eol);
}

static unsigned check(struct layout *l, int layout)
{
    char msg[160];
    msg[0] = '\0';
    unsigned st = sol_hdr_check_request(l->f, l->n, layout, msg, sizeof msg);
    CHECK(st == 0 || msg[0], "status %u without a message", st);
    return st;
}

static unsigned one(const char *name, const char *value)
{
    struct layout l = {.len = 0, .n = 0};
    add(&l, "Host", " ", "x", 1, "\r\n");
    add(&l, name, " ", value, strlen(value), "\r\n");
    return check(&l, 1);
}

static unsigned te(const char *v1, const char *v2)
{
    struct layout l = {.len = 0, .n = 0};
    add(&l, "Transfer-Encoding", " ", v1, strlen(v1), "\r\n");
    if (v2)
        add(&l, "Transfer-Encoding", " ", v2, strlen(v2), "\r\n");
    return check(&l, 1);
}

static void test_fields(void)
{
    CHECK(one("X-A", "a b\tc") == 0, "plain value");
    CHECK(one("X-A", "") == 0, "empty value");
    CHECK(one("X-A", "caf\xc3\xa9") == 0, "obs-text is allowed");
    CHECK(one("Authorization ", "Bearer k") == 400, "space before colon");
    CHECK(one("X-B\t", "v") == 400, "tab before colon");
    CHECK(one("X(A)", "v") == 400, "non-token name");
    CHECK(one("", "v") == 400, "empty name");
    CHECK(one("X-A", "a\rb") == 400, "bare CR");
    CHECK(one("X-A", "a\nb") == 400, "bare LF");
    CHECK(one("X-A", "a\x01") == 400, "control byte");
    CHECK(one("X-A", "a\x7f") == 400, "DEL");

    /* Bare-LF line ends are fine (one NUL between lines). */
    struct layout l = {.len = 0, .n = 0};
    add(&l, "Host", " ", "x", 1, "\n");
    add(&l, "X-A", "", "v", 1, "\n");
    CHECK(check(&l, 1) == 0, "bare LF layout");
    /* Many blanks after the colon are fine. */
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "X-A", "      \t ", "v", 1, "\r\n");
    CHECK(check(&l, 1) == 0, "blanks");

    /* A NUL in a value (0.9.75 cuts it there): the next field starts late. */
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "X-A", " ", "a\0b", 3, "\r\n");
    add(&l, "X-B", " ", "c", 1, "\r\n");
    CHECK(check(&l, 1) == 400, "NUL in value");
    CHECK(check(&l, 0) == 0, "NUL invisible without layout");

    /* obs-fold as 0.9.75 does it: the name moves behind the buffer with the
     * continuation glued on, the value stays, the next field starts after
     * the continuation line. */
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "X-A", " ", "a", 1, "\r\n");
    size_t cont = l.len;
    memcpy(l.buf + l.len, "  folded\0\0", 10);
    l.len += 10;
    add(&l, "X-C", " ", "c", 1, "\r\n");
    memcpy(l.buf + l.len, "X-Afolded", 10);
    l.f[0].name = l.buf + l.len;
    l.f[0].name_len = 9;
    l.len += 10;
    (void)cont;
    CHECK(check(&l, 1) == 400, "obs-fold");
    /* ... also when the folded field is the last one. */
    l.n = 1;
    CHECK(check(&l, 1) == 400, "obs-fold, last field");

    /* Transfer-Encoding. */
    CHECK(te("chunked", NULL) == 0, "chunked");
    CHECK(te("Chunked", NULL) == 0, "Chunked");
    CHECK(te(" chunked ", NULL) == 0, "chunked with blanks");
    CHECK(te("identity", NULL) == 400, "identity");
    CHECK(te("xchunked", NULL) == 400, "xchunked");
    CHECK(te("chunkedx", NULL) == 400, "chunkedx");
    CHECK(te("chunked, identity", NULL) == 400, "chunked, identity");
    CHECK(te("chunked", "identity") == 400, "two fields, chunked first");
    CHECK(te("chunked, chunked", NULL) == 400, "chunked twice");
    CHECK(te("chunked", "chunked") == 400, "chunked twice, two fields");
    CHECK(te("", NULL) == 400, "empty");
    CHECK(te("chunked,", NULL) == 400, "empty element");
    CHECK(te("gzip, chunked", NULL) == 501, "gzip, chunked");
    CHECK(te("identity", "chunked") == 501, "identity then chunked");
    CHECK(te("chunked;x=1", NULL) == 400, "chunked with a parameter");

    /* Content-Length. */
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "Content-Length", " ", "2", 1, "\r\n");
    add(&l, "content-length", " ", "2", 1, "\r\n");
    CHECK(check(&l, 1) == 0, "same Content-Length twice");
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "Content-Length", " ", "2", 1, "\r\n");
    add(&l, "Content-Length", " ", "5", 1, "\r\n");
    CHECK(check(&l, 1) == 400, "differing Content-Length");

    /* The message never carries control bytes from the input. */
    l = (struct layout){.len = 0, .n = 0};
    add(&l, "X\x01\x02", " ", "v", 1, "\r\n");
    char msg[160];
    CHECK(sol_hdr_check_request(l.f, l.n, 1, msg, sizeof msg) == 400 && !strchr(msg, '\x01'),
          "message escaped: %s", msg);
}

static void test_response(void)
{
    const char *list = "X-Secret, close ,keep-alive";
    CHECK(sol_hdr_list_has(list, strlen(list), "x-secret", 8), "token");
    CHECK(sol_hdr_list_has(list, strlen(list), "Keep-Alive", 10), "last token");
    CHECK(sol_hdr_list_has(list, strlen(list), "close", 5), "middle token");
    CHECK(!sol_hdr_list_has(list, strlen(list), "X-Sec", 5), "prefix is not a token");
    CHECK(!sol_hdr_list_has("", 0, "a", 1), "empty list");
#define KEEP(n, v) sol_hdr_response_keep(n, strlen(n), v, strlen(v))
    CHECK(KEEP("X-Fine", "yes"), "ordinary field kept");
    CHECK(KEEP("Content-Type", "application/json"), "content type kept");
    CHECK(!KEEP("Set-Cookie", "a=b"), "Set-Cookie dropped");
    CHECK(!KEEP("set-cookie2", "a=b"), "Set-Cookie2 dropped");
    CHECK(!KEEP("WWW-Authenticate", "Basic"), "WWW-Authenticate dropped");
    CHECK(!KEEP("Proxy-Authenticate", "Basic"), "Proxy-Authenticate dropped");
    CHECK(!KEEP("Connection", "close"), "Connection dropped");
    CHECK(!KEEP("Transfer-Encoding", "chunked"), "Transfer-Encoding dropped");
    CHECK(KEEP("Location", "/api/tags"), "path Location kept");
    CHECK(!KEEP("Location", "http://10.0.0.1:11434/api/pull"), "absolute Location dropped");
    CHECK(!KEEP("Location", "//evil/x"), "network-path Location dropped");
    CHECK(!KEEP("Location", "/v1/../api/pull"), "dot-segment Location dropped");
#undef KEEP
}

int main(void)
{
    test_targets();
    test_fields();
    test_response();
    return check_summary();
}
