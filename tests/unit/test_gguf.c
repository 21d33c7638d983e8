/*
 * test_gguf.c - the GGUF header reader on files written here: valid ones
 * (versions 1..3, keys in any order, skipped arrays of strings, any integer
 * width) and corrupt ones (truncated anywhere, bad magic, absurd lengths
 * and counts, missing required keys). Every corrupt file is an error that
 * names the path; none crashes or allocates wildly.
 */
#include "check.h"

#include "base/gguf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct w {
    unsigned char *p;
    size_t len, cap;
    int v1;
};

static void put(struct w *w, const void *d, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 64;
        w->p = realloc(w->p, w->cap);
    }
    memcpy(w->p + w->len, d, n);
    w->len += n;
}

static void u32(struct w *w, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    put(w, b, 4);
}

static void u64(struct w *w, uint64_t v)
{
    u32(w, (uint32_t)v);
    u32(w, (uint32_t)(v >> 32));
}

static void len_(struct w *w, uint64_t v)
{
    if (w->v1)
        u32(w, (uint32_t)v);
    else
        u64(w, v);
}

static void str(struct w *w, const char *s)
{
    len_(w, strlen(s));
    put(w, s, strlen(s));
}

static void kv_str(struct w *w, const char *k, const char *v)
{
    str(w, k);
    u32(w, 8);
    str(w, v);
}

static void kv_u32(struct w *w, const char *k, uint32_t v)
{
    str(w, k);
    u32(w, 4);
    u32(w, v);
}

static void kv_u64(struct w *w, const char *k, uint64_t v)
{
    str(w, k);
    u32(w, 10);
    u64(w, v);
}

static void kv_u16(struct w *w, const char *k, uint16_t v)
{
    str(w, k);
    u32(w, 2);
    unsigned char b[2] = {(unsigned char)v, (unsigned char)(v >> 8)};
    put(w, b, 2);
}

static void header(struct w *w, uint32_t version, uint64_t kv_count)
{
    put(w, "GGUF", 4);
    u32(w, version);
    w->v1 = version == 1;
    len_(w, 0); /* tensors */
    len_(w, kv_count);
}

/* The usual llama header: 7 keys, with a vocabulary array in the middle. */
static struct w valid(uint32_t version)
{
    struct w w = {0};
    header(&w, version, 8);
    kv_str(&w, "general.architecture", "llama");
    kv_str(&w, "general.name", "Big Model");
    kv_u32(&w, "general.file_type", 15);
    /* tokenizer.ggml.tokens: array of strings, skipped */
    str(&w, "tokenizer.ggml.tokens");
    u32(&w, 9);
    u32(&w, 8);
    len_(&w, 3);
    str(&w, "a");
    str(&w, "bb");
    str(&w, "ccc");
    kv_u32(&w, "llama.block_count", 80);
    kv_u64(&w, "llama.context_length", 131072);
    kv_u16(&w, "llama.embedding_length", 8192);
    /* an f32 array, skipped */
    str(&w, "llama.rope.freqs");
    u32(&w, 9);
    u32(&w, 6);
    len_(&w, 4);
    for (int i = 0; i < 4; i++)
        u32(&w, 0x3f800000);
    return w;
}

static char dir[256];

static const char *write_file(const char *name, const void *p, size_t n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(p, 1, n, f);
        fclose(f);
    }
    return path;
}

static int read_buf(const char *name, const struct w *w, struct sol_gguf_info *out, char *err,
                    size_t errlen)
{
    const char *path = write_file(name, w->p, w->len);
    return sol_gguf_read_file(path, out, err, errlen);
}

static void test_valid(void)
{
    for (uint32_t v = 1; v <= 3; v++) {
        struct w w = valid(v);
        struct sol_gguf_info g;
        char err[512] = "";
        int rc = read_buf("valid.gguf", &w, &g, err, sizeof err);
        CHECK(rc == 0, "version %u: %s", v, err);
        CHECK(g.version == v, "version %u", g.version);
        CHECK(strcmp(g.architecture, "llama") == 0, "%s", g.architecture);
        CHECK(strcmp(g.name, "Big Model") == 0, "%s", g.name);
        CHECK(g.file_type == 15, "%lld", (long long)g.file_type);
        CHECK(strcmp(sol_gguf_file_type_name(g.file_type), "Q4_K_M") == 0, "name");
        CHECK(g.block_count == 80, "%llu", (unsigned long long)g.block_count);
        CHECK(g.context_length == 131072, "%llu", (unsigned long long)g.context_length);
        CHECK(g.embedding_length == 8192, "%llu", (unsigned long long)g.embedding_length);
        CHECK(g.kv_count == 8 && g.tensor_count == 0, "counts");
        CHECK(g.file_size == w.len, "size");
        free(w.p);
    }
}

static void test_key_order_and_other_arch(void)
{
    /* block_count before the architecture, and a second architecture's keys
     * that must not be taken. */
    struct w w = {0};
    header(&w, 3, 4);
    kv_u32(&w, "qwen2.block_count", 64);
    kv_u32(&w, "llama.block_count", 7);
    kv_str(&w, "general.architecture", "qwen2");
    kv_u64(&w, "qwen2.context_length", 32768);
    struct sol_gguf_info g;
    char err[512] = "";
    CHECK(read_buf("order.gguf", &w, &g, err, sizeof err) == 0, "%s", err);
    CHECK(g.block_count == 64, "%llu", (unsigned long long)g.block_count);
    CHECK(g.context_length == 32768, "ctx");
    CHECK(g.name[0] == '\0' && g.file_type == -1, "absent keys");
    free(w.p);
}

static void expect_error(const char *what, const struct w *w, const char *needle)
{
    struct sol_gguf_info g;
    char err[512] = "";
    int rc = read_buf("bad.gguf", w, &g, err, sizeof err);
    CHECK(rc == -1, "%s: accepted", what);
    CHECK(strstr(err, dir) != NULL, "%s: error names the path: %s", what, err);
    if (needle)
        CHECK(strstr(err, needle) != NULL, "%s: '%s' in '%s'", what, needle, err);
}

static void test_corrupt(void)
{
    struct w ok = valid(3);
    /* Truncated at every length: never accepted, never a crash. */
    for (size_t n = 0; n < ok.len; n++) {
        struct w t = {ok.p, n, n, 0};
        struct sol_gguf_info g;
        char err[512];
        const char *path = write_file("trunc.gguf", t.p, t.len);
        int rc = sol_gguf_read_file(path, &g, err, sizeof err);
        CHECK(rc == -1, "truncated at %zu accepted", n);
        CHECK(strstr(err, "trunc.gguf") != NULL, "truncated at %zu: %s", n, err);
    }
    struct w bad = {0};
    put(&bad, ok.p, ok.len);
    memcpy(bad.p, "GGML", 4);
    expect_error("bad magic", &bad, "bad magic");
    memcpy(bad.p, "GGUF", 4);
    bad.p[4] = 9;
    expect_error("version 9", &bad, "unsupported GGUF version 9");
    bad.p[4] = 3;
    free(bad.p);

    /* Absurd counts and lengths. */
    struct w w = {0};
    header(&w, 3, UINT64_MAX);
    expect_error("kv_count", &w, "kv_count");
    free(w.p);
    w = (struct w){0};
    put(&w, "GGUF", 4);
    u32(&w, 3);
    u64(&w, UINT64_MAX / 2);
    u64(&w, 1);
    u64(&w, 0);
    u64(&w, 0);
    expect_error("tensor_count", &w, "tensor_count");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    u64(&w, UINT64_MAX); /* key length */
    u32(&w, 8);
    expect_error("key length", &w, "invalid length");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    str(&w, "general.architecture");
    u32(&w, 8);
    u64(&w, (uint64_t)1 << 62); /* string length */
    put(&w, "llama", 5);
    expect_error("string length", &w, "larger than");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    str(&w, "x.tokens");
    u32(&w, 9);
    u32(&w, 8);
    u64(&w, UINT64_MAX); /* array count */
    expect_error("array count", &w, "array of");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    str(&w, "x.values");
    u32(&w, 9);
    u32(&w, 12); /* f64 */
    u64(&w, UINT64_MAX / 8);
    expect_error("array of f64", &w, "array of");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    str(&w, "x.y");
    u32(&w, 77);
    expect_error("value type", &w, "unknown value type");
    free(w.p);
    /* Required keys. */
    w = (struct w){0};
    header(&w, 3, 1);
    kv_u32(&w, "llama.block_count", 3);
    expect_error("no architecture", &w, "general.architecture");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 1);
    kv_str(&w, "general.architecture", "llama");
    expect_error("no block_count", &w, "llama.block_count");
    free(w.p);
    w = (struct w){0};
    header(&w, 3, 2);
    kv_str(&w, "general.architecture", "llama");
    str(&w, "llama.block_count");
    u32(&w, 5); /* i32 */
    u32(&w, 0xffffffffu);
    expect_error("negative block_count", &w, "negative");
    free(w.p);
    free(ok.p);

    struct sol_gguf_info g;
    char err[512];
    snprintf(err, sizeof err, "-");
    CHECK(sol_gguf_read_file("/nonexistent/m.gguf", &g, err, sizeof err) == -1, "missing");
    CHECK(strstr(err, "/nonexistent/m.gguf") != NULL, "%s", err);
    CHECK(sol_gguf_read_file(dir, &g, err, sizeof err) == -1, "directory");
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    snprintf(dir, sizeof dir, "/tmp/sollol-test-gguf-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    test_valid();
    test_key_order_and_other_arch();
    test_corrupt();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return check_summary();
}
