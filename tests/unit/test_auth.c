/*
 * test_auth.c - SHA-256 against the NIST examples, the constant-time
 * compare, and access control (auth.c): key tables, the keys file's
 * permission check, 401/403/429 decisions, token buckets, model globs and
 * the fairness identity.
 */
#include "check.h"

#include "base/auth.h"
#include "base/config.h"
#include "base/routes.h"
#include "sollol/sha256.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *hex_of(const void *data, size_t len)
{
    static char hex[65];
    unsigned char d[32];
    sol_sha256(data, len, d);
    sol_sha256_to_hex(d, hex);
    return hex;
}

static void test_sha256(void)
{
    /* FIPS 180-4 examples (NIST CSRC "SHA256.pdf", "SHA2_Additional.pdf"). */
    CHECK(strcmp(hex_of("abc", 3),
                 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0,
          "abc");
    CHECK(strcmp(hex_of("", 0),
                 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0,
          "empty");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    CHECK(strcmp(hex_of(two, strlen(two)),
                 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0,
          "two blocks");
    /* One million 'a', fed in uneven pieces to exercise the block buffer. */
    char *a = malloc(1000000);
    memset(a, 'a', 1000000);
    struct sol_sha256 c;
    sol_sha256_init(&c);
    size_t off = 0, step = 1;
    while (off < 1000000) {
        size_t n = step < 1000000 - off ? step : 1000000 - off;
        sol_sha256_update(&c, a + off, n);
        off += n;
        step = step * 7 % 131 + 1;
    }
    unsigned char d[32];
    char hex[65];
    sol_sha256_final(&c, d);
    sol_sha256_to_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0,
          "million a: %s", hex);
    free(a);
    /* Lengths around the padding boundary: incremental == one-shot. */
    char buf[130];
    memset(buf, 'x', sizeof buf);
    for (size_t n = 50; n < 130; n++) {
        unsigned char one[32], inc[32];
        sol_sha256(buf, n, one);
        sol_sha256_init(&c);
        sol_sha256_update(&c, buf, n / 3);
        sol_sha256_update(&c, buf + n / 3, n - n / 3);
        sol_sha256_final(&c, inc);
        CHECK(memcmp(one, inc, 32) == 0, "length %zu", n);
    }
    unsigned char parsed[32];
    CHECK(sol_sha256_from_hex("BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                              parsed) == 0,
          "upper-case hex");
    sol_sha256("abc", 3, d);
    CHECK(memcmp(parsed, d, 32) == 0, "hex round trip");
    CHECK(sol_sha256_from_hex("ba7816bf", parsed) < 0, "short hex");
    CHECK(sol_sha256_from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015adff",
                              parsed) < 0,
          "long hex");
    CHECK(sol_sha256_from_hex("za7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                              parsed) < 0,
          "bad digit");
}

static void test_ct_equal(const char *root)
{
    unsigned char x[32], y[32];
    memset(x, 7, 32);
    memcpy(y, x, 32);
    CHECK(sol_ct_equal(x, y, 32), "equal");
    for (int i = 0; i < 32; i++) {
        y[i] ^= 0x80;
        CHECK(!sol_ct_equal(x, y, 32), "differs at %d", i);
        y[i] ^= 0x80;
    }
    CHECK(sol_ct_equal(x, y, 0), "empty");
    /* Key material is compared only through sol_ct_equal(): auth.c has no
     * early-exit comparison (memcmp, strcmp on keys) at all. */
    char path[1024];
    snprintf(path, sizeof path, "%s/src/daemon/base/auth.c", root);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL, "%s readable", path);
    if (f) {
        static char text[64 * 1024];
        size_t n = fread(text, 1, sizeof text - 1, f);
        text[n] = '\0';
        fclose(f);
        CHECK(strstr(text, "memcmp") == NULL, "auth.c uses no memcmp");
        CHECK(strstr(text, "sol_ct_equal(sha, a->keys[i].sha") != NULL,
              "keys are compared with sol_ct_equal");
    }
}

static void test_rate_parse(void)
{
    double per_ms, burst;
    char why[160];
    CHECK(sol_auth_parse_rate("120/m", &per_ms, &burst, why, sizeof why) == 0, "%s", why);
    CHECK(burst == 120 && per_ms == 120.0 / 60000, "120/m: %g %g", burst, per_ms);
    CHECK(sol_auth_parse_rate("5/s", &per_ms, &burst, why, sizeof why) == 0, "5/s");
    CHECK(per_ms == 0.005, "5/s rate");
    CHECK(sol_auth_parse_rate("3600/h", &per_ms, &burst, why, sizeof why) == 0, "3600/h");
    CHECK(per_ms == 0.001, "3600/h rate");
    const char *bad[] = {"", "120", "/m", "0/m", "-1/s", "1/d", "1/mm", "x/s", "1e999/s", " 1/s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(sol_auth_parse_rate(bad[i], &per_ms, &burst, why, sizeof why) < 0, "'%s'", bad[i]);
    CHECK(strstr(why, "N/s, N/m or N/h") != NULL, "message: %s", why);
}

static char keys_json[1024];

/* Key "alpha-secret" (user, llama3.2* only, 2/s), "root-secret" (admin). */
static void make_keys_json(void)
{
    char ha[65], hr[65];
    snprintf(ha, sizeof ha, "%s", hex_of("alpha-secret", 12));
    snprintf(hr, sizeof hr, "%s", hex_of("root-secret", 11));
    snprintf(keys_json, sizeof keys_json,
             "[{\"name\":\"alpha\",\"sha256\":\"%s\",\"models\":[\"llama3.2*\",\"qwen:7b\"],"
             "\"rate\":\"2/s\"},{\"name\":\"root\",\"sha256\":\"%s\",\"admin\":true}]",
             ha, hr);
}

static void test_init_errors(void)
{
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a, "[]", "", "[]", err, sizeof err) == 0, "empty: %s", err);
    CHECK(!sol_auth_enabled(&a), "no keys: open");
    sol_auth_free(&a);
    CHECK(sol_auth_init(&a, keys_json, NULL, "[\"/metrics\"]", err, sizeof err) == 0, "%s", err);
    CHECK(sol_auth_enabled(&a) && a.n_keys == 2 && a.n_public == 1, "loaded");
    sol_auth_free(&a);
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{}", "auth.keys: expected an array"},
        {"[{\"name\":\"a\",\"key\":\"plain-text-key\"}]", "plain keys are accepted only from"},
        {"[{\"name\":\"a\",\"sha256\":\"abc\"}]", "auth.keys[0].sha256: expected 64 hex"},
        {"[{\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}]",
         "auth.keys[0].name: required"},
        {"[{\"name\":\"a\"}]", "give exactly one of"},
        {"[{\"name\":\"a b\",\"sha256\":\"x\"}]", "auth.keys[0].name: expected"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\",\"rate\":\"fast\"}]",
         "auth.keys[0].rate: invalid rate 'fast'"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\",\"models\":\"x\"}]",
         "auth.keys[0].models: expected an array"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\",\"admin\":1}]",
         "auth.keys[0].admin: expected true or false"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\",\"colour\":1}]",
         "auth.keys[0].colour: unknown key"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\"},{\"name\":\"a\",\"sha256\":\"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca4"
         "95991b7852b855\"}]",
         "auth.keys[1].name: duplicate key name 'a'"},
        {"[{\"name\":\"a\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2"
         "0015ad\"},{\"name\":\"b\",\"sha256\":\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb4"
         "10ff61f20015ad\"}]",
         "auth.keys[1]: same key as 'a'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = '\0';
        CHECK(sol_auth_init(&a, bad[i].json, NULL, NULL, err, sizeof err) < 0, "%s", bad[i].json);
        CHECK(strstr(err, bad[i].want) != NULL, "want '%s', got '%s'", bad[i].want, err);
        CHECK(a.n_keys == 0 && a.keys == NULL, "empty after failure");
        sol_auth_free(&a);
    }
    CHECK(sol_auth_init(&a, NULL, NULL, "[\"metrics\"]", err, sizeof err) < 0, "public path");
    CHECK(strstr(err, "auth.public[0]: expected a path starting with '/'") != NULL, "%s", err);
    sol_auth_free(&a);
    char why[256];
    CHECK(sol_auth_check_keys_json("[{\"name\":\"a\"}]", why, sizeof why) < 0, "validator");
    CHECK(strncmp(why, "[0]: give exactly one", 21) == 0, "bare reason: %s", why);
}

static void test_keys_file(void)
{
    char path[] = "/tmp/sollol-test-keys-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    const char *text =
        "{\"keys\":[{\"name\":\"filed\",\"key\":\"file-plain-key\",\"admin\":true}]}";
    CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text), "write");
    close(fd);
    struct sol_auth a;
    char err[512];
    chmod(path, 0644);
    CHECK(sol_auth_init(&a, NULL, path, NULL, err, sizeof err) < 0, "0644 refused");
    CHECK(strstr(err, "has mode 0644: others can read it") != NULL, "%s", err);
    CHECK(strstr(err, "chmod 600") != NULL, "says how to fix: %s", err);
    sol_auth_free(&a);
    chmod(path, 0640);
    CHECK(sol_auth_init(&a, NULL, path, NULL, err, sizeof err) < 0, "0640 refused");
    sol_auth_free(&a);
    char why[512];
    CHECK(sol_auth_check_keys_file(path, why, sizeof why) < 0, "validator refuses too");
    chmod(path, 0400);
    CHECK(sol_auth_init(&a, NULL, path, NULL, err, sizeof err) == 0, "0400 accepted: %s", err);
    chmod(path, 0600);
    sol_auth_free(&a);
    CHECK(sol_auth_init(&a, keys_json, path, NULL, err, sizeof err) == 0, "0600 accepted: %s", err);
    CHECK(a.n_keys == 3, "config keys + file keys");
    struct sol_auth_verdict v;
    sol_auth_check(&a, "/api/pull", 1, "Bearer file-plain-key", 0, &v);
    CHECK(v.status == 0 && v.key && strcmp(v.key->name, "filed") == 0, "plain key from the file");
    sol_auth_free(&a);
    /* A plain key may not collide with a configured hash either. */
    unlink(path);
    CHECK(sol_auth_init(&a, NULL, path, NULL, err, sizeof err) < 0, "missing file");
    CHECK(strstr(err, "auth.keys_file: cannot open") != NULL, "%s", err);
    sol_auth_free(&a);
    CHECK(sol_auth_init(&a, NULL, "/tmp", NULL, err, sizeof err) < 0, "directory");
    sol_auth_free(&a);
}

static void test_decisions(void)
{
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a, keys_json, NULL, "[\"/metrics\",\"/api/version\"]", err, sizeof err) ==
              0,
          "%s", err);
    struct sol_auth_verdict v;
    sol_auth_check(&a, "/api/tags", 0, NULL, 0, &v);
    CHECK(v.status == 401 && strstr(v.msg, "missing API key"), "missing: %u %s", v.status, v.msg);
    sol_auth_check(&a, "/api/tags", 0, "Bearer wrong", 0, &v);
    CHECK(v.status == 401 && strcmp(v.msg, "invalid API key") == 0, "wrong: %s", v.msg);
    sol_auth_check(&a, "/api/tags", 0, "Basic YWxwaGE6eA==", 0, &v);
    CHECK(v.status == 401 && strstr(v.msg, "unsupported Authorization scheme"), "basic: %s", v.msg);
    sol_auth_check(&a, "/api/tags", 0, "Bearer ", 0, &v);
    CHECK(v.status == 401, "empty bearer");
    sol_auth_check(&a, "/api/tags", 0, "Bearer alpha-secretX", 0, &v);
    CHECK(v.status == 401, "key with a suffix");
    sol_auth_check(&a, "/metrics", 0, NULL, 0, &v);
    CHECK(v.status == 0 && v.key == NULL, "public path");
    sol_auth_check(&a, "/metrics/x", 0, NULL, 0, &v);
    CHECK(v.status == 401, "public paths match exactly");
    sol_auth_check(&a, "/api/tags", 0, "bearer  alpha-secret ", 1000, &v);
    CHECK(v.status == 0 && v.key && strcmp(v.key->name, "alpha") == 0, "scheme case, spaces");
    sol_auth_check(&a, "/api/pull", 1, "Bearer alpha-secret", 1000, &v);
    CHECK(v.status == 403 && strstr(v.msg, "admin only"), "admin route: %s", v.msg);
    sol_auth_check(&a, "/api/pull", 1, "Bearer root-secret", 1000, &v);
    CHECK(v.status == 0 && v.key && v.key->admin, "admin key");
    /* Routes: which are admin. */
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/pull")), "pull");
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/delete")), "delete");
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/copy")), "copy");
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/create")), "create");
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/push")), "push");
    CHECK(sol_auth_route_is_admin(sol_route_find("/api/blobs/sha256:abc")), "blobs");
    CHECK(!sol_auth_route_is_admin(sol_route_find("/api/chat")), "chat");
    CHECK(!sol_auth_route_is_admin(sol_route_find("/v1/chat/completions")), "v1");
    CHECK(!sol_auth_route_is_admin(NULL), "unknown route");
    sol_auth_free(&a);
}

static void test_rate_limit(void)
{
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a, keys_json, NULL, NULL, err, sizeof err) == 0, "%s", err);
    struct sol_auth_verdict v;
    /* "2/s": a full bucket of 2, then one token per 500 ms. */
    uint64_t t = 10000;
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t, &v);
    CHECK(v.status == 0, "first");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t, &v);
    CHECK(v.status == 0, "second");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t, &v);
    CHECK(v.status == 429 && v.retry_after_s == 1, "third: %u retry %u", v.status, v.retry_after_s);
    CHECK(strstr(v.msg, "rate limit of API key 'alpha' exceeded") != NULL, "%s", v.msg);
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t + 499, &v);
    CHECK(v.status == 429, "not yet refilled");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t + 500, &v);
    CHECK(v.status == 0, "one token after 500 ms");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t + 100000, &v);
    CHECK(v.status == 0, "refilled");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t + 100000, &v);
    CHECK(v.status == 0, "burst capped at 2 (1)");
    sol_auth_check(&a, "/api/chat", 0, "Bearer alpha-secret", t + 100000, &v);
    CHECK(v.status == 429, "burst capped at 2 (2)");
    /* Another key has its own bucket (root: no rate at all). */
    for (int i = 0; i < 100; i++)
        sol_auth_check(&a, "/api/chat", 0, "Bearer root-secret", t, &v);
    CHECK(v.status == 0, "unlimited key");
    sol_auth_free(&a);
    /* Retry-After rounds up: "1/h" empty bucket -> 3600 s. */
    char one[512];
    snprintf(one, sizeof one, "[{\"name\":\"slow\",\"sha256\":\"%s\",\"rate\":\"1/h\"}]",
             hex_of("slow-secret", 11));
    CHECK(sol_auth_init(&a, one, NULL, NULL, err, sizeof err) == 0, "%s", err);
    sol_auth_check(&a, "/api/chat", 0, "Bearer slow-secret", 5, &v);
    sol_auth_check(&a, "/api/chat", 0, "Bearer slow-secret", 5, &v);
    CHECK(v.status == 429 && v.retry_after_s == 3600, "retry %u", v.retry_after_s);
    sol_auth_check(&a, "/api/chat", 0, "Bearer slow-secret", 5 + 1800001, &v);
    CHECK(v.status == 429 && v.retry_after_s == 1800, "half refilled: retry %u", v.retry_after_s);
    sol_auth_free(&a);
}

static void test_models_and_fairness(void)
{
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a, keys_json, NULL, NULL, err, sizeof err) == 0, "%s", err);
    const struct sol_auth_key *alpha = &a.keys[0], *root = &a.keys[1];
    CHECK(sol_auth_model_allowed(alpha, "llama3.2", "llama3.2:latest"), "glob");
    CHECK(sol_auth_model_allowed(alpha, "llama3.2:3b", "llama3.2:3b"), "glob with tag");
    CHECK(sol_auth_model_allowed(alpha, "qwen:7b", "qwen:7b"), "exact");
    CHECK(!sol_auth_model_allowed(alpha, "qwen", "qwen:latest"), "other tag");
    CHECK(!sol_auth_model_allowed(alpha, "mistral", "mistral:latest"), "other model");
    CHECK(sol_auth_model_allowed(root, "mistral", "mistral:latest"), "no list: all");
    CHECK(sol_auth_model_allowed(NULL, "mistral", "mistral:latest"), "no key: all");
    CHECK(alpha->fairness != root->fairness, "one fairness identity per key");
    struct sol_auth b;
    CHECK(sol_auth_init(&b, keys_json, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(b.keys[0].fairness == alpha->fairness, "stable across loads");
    sol_auth_free(&b);
    sol_auth_free(&a);
}

/* The config reports auth errors like any other key, so --check-config
 * catches them before the daemon starts. */
static void test_config_keys(void)
{
    struct sol_config cfg;
    enum sol_config_action act;
    char err[512];
    char *bad[] = {"sollold", "--node", "127.0.0.1:9", "--auth-keys", "[{\"name\":\"a\"}]", NULL};
    CHECK(sol_config_from_args(&cfg, 5, bad, NULL, &act, NULL, err, sizeof err) < 0, "bad key");
    CHECK(strstr(err, "config: auth.keys: [0]: give exactly one of \"sha256\"") != NULL, "%s", err);
    CHECK(strstr(err, "(flag --auth-keys)") != NULL, "%s", err);
    sol_config_free(&cfg);
    char *env[] = {"SOLLOL_AUTH_PUBLIC=[\"metrics\"]", NULL};
    char *ok[] = {"sollold", "--node", "127.0.0.1:9", NULL};
    CHECK(sol_config_from_args(&cfg, 3, ok, env, &act, NULL, err, sizeof err) < 0, "bad public");
    CHECK(strstr(err, "config: auth.public: [0]: expected a path") != NULL, "%s", err);
    CHECK(strstr(err, "(env SOLLOL_AUTH_PUBLIC)") != NULL, "%s", err);
    sol_config_free(&cfg);
    char *file[] = {"sollold", "--node", "127.0.0.1:9", "--auth-keys-file", "/nonexistent/k", NULL};
    CHECK(sol_config_from_args(&cfg, 5, file, NULL, &act, NULL, err, sizeof err) < 0, "no file");
    CHECK(strstr(err, "config: auth.keys_file: cannot open '/nonexistent/k'") != NULL, "%s", err);
    sol_config_free(&cfg);
    char keys_arg[1100];
    snprintf(keys_arg, sizeof keys_arg, "%s", keys_json);
    char *good[] = {"sollold", "--node", "127.0.0.1:9", "--auth-keys", keys_arg, NULL};
    CHECK(sol_config_from_args(&cfg, 5, good, NULL, &act, NULL, err, sizeof err) == 0, "%s", err);
    struct sol_auth a;
    CHECK(sol_auth_init(&a, cfg.auth_keys, cfg.auth_keys_file, cfg.auth_public, err, sizeof err) ==
              0,
          "%s", err);
    CHECK(a.n_keys == 2 && a.n_public == 0, "keys from the config");
    sol_auth_free(&a);
    sol_config_free(&cfg);
}

/* #14 item 8: an empty model list failed open (every model). */
static void test_empty_models(void)
{
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a,
                        "[{\"name\":\"k\",\"sha256\":"
                        "\"0000000000000000000000000000000000000000000000000000000000000000\","
                        "\"models\":[]}]",
                        NULL, NULL, err, sizeof err) < 0,
          "models: [] refused");
    CHECK(strstr(err, "auth.keys[0].models: an empty list is not allowed") != NULL, "%s", err);
    sol_auth_free(&a);
}

/* #14 item 13: a FIFO must neither block open() nor be read. */
static void test_keys_file_fifo(void)
{
    char path[] = "/tmp/sollol-test-fifo-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0)
        return;
    close(fd);
    unlink(path);
    CHECK(mkfifo(path, 0600) == 0, "mkfifo");
    struct sol_auth a;
    char err[512];
    CHECK(sol_auth_init(&a, NULL, path, NULL, err, sizeof err) < 0, "FIFO refused (no hang)");
    CHECK(strstr(err, "is not a regular file") != NULL, "%s", err);
    sol_auth_free(&a);
    unlink(path);
}

/* #14 item 4: a reload replaces the keys; kept keys keep their buckets. */
static void test_replace(void)
{
    char json[1024], err[512];
    struct sol_auth a, next;
    char hex_old[65], hex_lim[65], hex_new[65];
    unsigned char d[SOL_SHA256_LEN];
    const char *plain[] = {"old-key-123", "lim-key-123", "new-key-123"};
    char *hex[] = {hex_old, hex_lim, hex_new};
    for (int i = 0; i < 3; i++) {
        sol_sha256(plain[i], strlen(plain[i]), d);
        for (int j = 0; j < SOL_SHA256_LEN; j++)
            snprintf(hex[i] + 2 * j, 3, "%02x", d[j]);
    }
    snprintf(json, sizeof json,
             "[{\"name\":\"old\",\"sha256\":\"%s\"},"
             "{\"name\":\"lim\",\"sha256\":\"%s\",\"rate\":\"2/h\"}]",
             hex_old, hex_lim);
    CHECK(sol_auth_init(&a, json, NULL, "[\"/metrics\"]", err, sizeof err) == 0, "%s", err);
    struct sol_auth_verdict v;
    sol_auth_check(&a, "/api/chat", 0, "Bearer lim-key-123", 1000, &v);
    sol_auth_check(&a, "/api/chat", 0, "Bearer lim-key-123", 1000, &v);
    CHECK(v.status == 0, "two tokens");
    sol_auth_check(&a, "/api/chat", 0, "Bearer lim-key-123", 1000, &v);
    CHECK(v.status == 429, "bucket empty");
    const struct sol_auth_key *held = NULL;
    sol_auth_check(&a, "/api/chat", 0, "Bearer old-key-123", 1000, &v);
    held = v.key; /* a request in flight keeps this pointer */
    snprintf(json, sizeof json,
             "[{\"name\":\"new\",\"sha256\":\"%s\"},"
             "{\"name\":\"lim\",\"sha256\":\"%s\",\"rate\":\"4/h\"}]",
             hex_new, hex_lim);
    CHECK(sol_auth_init(&next, json, NULL, "[]", err, sizeof err) == 0, "%s", err);
    unsigned added = 9, removed = 9, kept = 9;
    CHECK(sol_auth_replace(&a, &next, &added, &removed, &kept) == 0, "replaced");
    CHECK(added == 1 && removed == 1 && kept == 1, "counts %u %u %u", added, removed, kept);
    CHECK(next.n_keys == 0 && next.keys == NULL, "next left empty");
    sol_auth_free(&next);
    CHECK(held && strcmp(held->name, "old") == 0, "a retired key stays readable");
    sol_auth_check(&a, "/api/chat", 0, "Bearer old-key-123", 1001, &v);
    CHECK(v.status == 401, "removed key refused");
    sol_auth_check(&a, "/api/chat", 0, "Bearer new-key-123", 1001, &v);
    CHECK(v.status == 0, "new key accepted");
    sol_auth_check(&a, "/api/chat", 0, "Bearer lim-key-123", 1001, &v);
    CHECK(v.status == 429, "a reload does not refill the bucket");
    CHECK(!sol_auth_is_public(&a, "/metrics"), "public paths replaced too");
    /* The new rate (4/h) refills: one token in 15 min. */
    sol_auth_check(&a, "/api/chat", 0, "Bearer lim-key-123", 1001 + 15 * 60 * 1000, &v);
    CHECK(v.status == 0, "refilled at the new rate");
    sol_auth_free(&a);
}

int main(int argc, char **argv)
{
    const char *root = argc > 1 ? argv[1] : ".";
    make_keys_json();
    test_sha256();
    test_ct_equal(root);
    test_rate_parse();
    test_init_errors();
    test_keys_file();
    test_decisions();
    test_rate_limit();
    test_models_and_fairness();
    test_config_keys();
    test_empty_models();
    test_keys_file_fifo();
    test_replace();
    return check_summary();
}
