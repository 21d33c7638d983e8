/*
 * Unit test of Ollama's rules the daemon imitates (compat.c): version order
 * and the cluster's version, the keep_alive that unloads, which 500s are
 * request errors, CORS origins, the summed pull progress.
 */
#include "base/compat.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

static void test_versions(void)
{
    CHECK(sol_compat_version_cmp("0.12.6", "0.12.10") < 0, "numeric, not text");
    CHECK(sol_compat_version_cmp("0.13.0", "0.12.99") > 0, "minor");
    CHECK(sol_compat_version_cmp("v0.5.7", "0.5.7") == 0, "leading v");
    CHECK(sol_compat_version_cmp("0.6.5-rc1", "0.6.5") < 0, "pre-release first");
    CHECK(sol_compat_version_cmp("0.6.5-rc2", "0.6.5-rc1") > 0, "pre-releases in order");
    CHECK(sol_compat_version_cmp("0.6", "0.6.0") == 0, "missing part is 0");
    CHECK(sol_compat_version_cmp("0.0.0", "0.1.0") < 0, "dev build lowest");

    struct sol_node n[4];
    struct sol_node *ptr[4] = {&n[0], &n[1], &n[2], &n[3]};
    memset(n, 0, sizeof n);
    struct sol_node_table t = {ptr, 4};
    char v[32];
    snprintf(n[0].version, sizeof n[0].version, "0.12.10");
    snprintf(n[1].version, sizeof n[1].version, "0.12.6");
    n[1].state = SOL_NODE_DOWN;
    snprintf(n[2].version, sizeof n[2].version, "0.11.0");
    n[2].removed = 1;
    snprintf(n[3].version, sizeof n[3].version, "0.1.0");
    n[3].external = 1;
    CHECK(sol_compat_cluster_version(&t, v, sizeof v) == 1 && strcmp(v, "0.12.10") == 0,
          "lowest of the up nodes: %s", v);
    n[1].state = SOL_NODE_UP;
    CHECK(sol_compat_cluster_version(&t, v, sizeof v) == 1 && strcmp(v, "0.12.6") == 0, "%s", v);
    n[0].state = n[1].state = SOL_NODE_DOWN;
    CHECK(sol_compat_cluster_version(&t, v, sizeof v) == 2 && strcmp(v, "0.12.6") == 0,
          "none up: lowest known %s", v);
    n[0].version[0] = n[1].version[0] = '\0';
    CHECK(sol_compat_cluster_version(&t, v, sizeof v) == 0 && v[0] == '\0', "none known");
}

static int ka_zero(const char *json)
{
    struct sol_json_span s = {json, strlen(json), SOL_JSON_NUMBER};
    if (json[0] == '"')
        s.type = SOL_JSON_STRING;
    else if (strcmp(json, "null") == 0)
        s.type = SOL_JSON_NULL;
    return sol_compat_keep_alive_zero(&s);
}

static void test_keep_alive(void)
{
    CHECK(ka_zero("0") && ka_zero("0.0") && ka_zero("0e3"), "number 0");
    CHECK(ka_zero("\"0\"") && ka_zero("\"0s\"") && ka_zero("\"0m0s\"") && ka_zero("\"0.0h\"") &&
              ka_zero("\"-0s\"") && ka_zero("\"0ms\""),
          "zero durations");
    CHECK(!ka_zero("1") && !ka_zero("-1") && !ka_zero("0.5"), "non-zero numbers");
    CHECK(!ka_zero("\"5m\"") && !ka_zero("\"0s1ms\"") && !ka_zero("\"\"") && !ka_zero("\"s\"") &&
              !ka_zero("\"0x\"") && !ka_zero("\"00\"") && !ka_zero("\"-1m\""),
          "non-zero or invalid strings");
    CHECK(!ka_zero("null"), "null is the default");
    struct sol_json_span absent = {0};
    CHECK(!sol_compat_keep_alive_zero(&absent), "absent");
}

static int req_err(const char *body)
{
    return sol_compat_is_request_error_500(body, strlen(body));
}

static void test_request_errors(void)
{
    CHECK(req_err("{\"error\":\"model 'nothing:latest' not found\"}"), "sim's push");
    CHECK(req_err("{\"error\":\"open /root/.ollama/models/manifests/registry.ollama.ai/library/x/"
                  "latest: no such file or directory\"}"),
          "Ollama's push of a missing model");
    CHECK(req_err("{\"error\":\"pull model manifest: file does not exist\"}"), "registry 404");
    CHECK(req_err("{\"error\":\"insecure protocol http\"}"), "insecure");
    CHECK(req_err("{\"error\":\"\\\"embeddinggemma\\\" does not support chat\"}"), "capability");
    CHECK(req_err("{\"error\":\"neither 'from' or 'files' was specified\"}"), "create");
    CHECK(req_err("{\"error\":\"unauthorized: unknown ollama key \\\"x\\\"\"}"), "registry key");
    CHECK(req_err("progress...\n{\"error\":\"invalid model name\"}\n"), "last line of a tail");
    /* The node is unwell, or we cannot tell: counts. */
    CHECK(!req_err("{\"error\":\"llama runner process has terminated: exit status 2\"}"), "crash");
    CHECK(!req_err("{\"error\":\"model requires more system memory (9.1 GiB) than is available "
                   "(2.0 GiB)\"}"),
          "memory");
    CHECK(!req_err("{\"error\":\"exec: \\\"ollama_llama_server\\\": executable file not found "
                   "in $PATH\"}"),
          "a runner missing is the node's");
    CHECK(!req_err("{\"error\":\"open /usr/lib/ollama/libggml.so: no such file or directory\"}"),
          "a library missing is the node's");
    CHECK(!req_err("Internal Server Error"), "not JSON");
    CHECK(!req_err("{\"error\":\"model 'x' not fo"), "cut");
    CHECK(!req_err(""), "empty");
    CHECK(!req_err("{\"status\":\"model not found\"}"), "no error member");
}

static enum sol_cors_verdict cors(const char *origin, const char *extra, int *all)
{
    return sol_cors_check(origin, "127.0.0.1:11434", extra, all);
}

static void test_cors(void)
{
    int all;
    CHECK(cors(NULL, NULL, &all) == SOL_CORS_NONE, "no Origin");
    CHECK(cors("http://127.0.0.1:11434", NULL, &all) == SOL_CORS_NONE, "own origin");
    static const char *const ok[] = {"http://localhost",        "http://localhost:3000",
                                     "https://localhost:8443",  "http://127.0.0.1:5173",
                                     "https://127.0.0.1",       "http://0.0.0.0:8080",
                                     "app://obsidian.md",       "file://",
                                     "tauri://localhost",       "vscode-webview://abc-123",
                                     "vscode-file://vscode-app"};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        CHECK(cors(ok[i], NULL, &all) == SOL_CORS_ALLOWED && !all, "%s", ok[i]);
    static const char *const refused[] = {"https://evil.example", "http://localhost.evil.example",
                                          "chrome-extension://abcdef", "null", "http://LOCALHOST"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        CHECK(cors(refused[i], NULL, &all) == SOL_CORS_REFUSED, "%s", refused[i]);
    CHECK(cors("chrome-extension://abcdef", "chrome-extension://*", &all) == SOL_CORS_ALLOWED,
          "configured wildcard");
    CHECK(cors("https://ui.example.com", " https://UI.example.com , x", &all) == SOL_CORS_ALLOWED,
          "exact, trimmed, entry lower-cased");
    CHECK(cors("https://a.example.com", "https://*.example.com", &all) == SOL_CORS_ALLOWED,
          "prefix*suffix");
    CHECK(cors("https://example.com", "https://*.example.com", &all) == SOL_CORS_REFUSED,
          "suffix must match");
    CHECK(cors("https://anything", "*", &all) == SOL_CORS_ALLOWED && all, "all origins");
}

static void test_pull_progress(void)
{
    struct sol_pull_progress *p = calloc(1, sizeof *p);
    p->n_legs = 2;
    uint64_t total, done, last = 0;
    /* Leg 0 runs ahead, leg 1 starts late: the sum never goes backwards and
     * the total is the whole cluster's from the first line. */
    struct {
        unsigned leg;
        uint64_t completed;
    } steps[] = {{0, 0}, {0, 500}, {1, 0}, {0, 1000}, {1, 300}, {1, 200}, {1, 1000}};
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        struct sol_pull_digest *d =
            sol_pull_progress_update(p, steps[i].leg, "sha256:aa", 1000, steps[i].completed);
        CHECK(d != NULL, "entry");
        sol_pull_progress_sums(p, d, &total, &done);
        CHECK(total == 2000, "total %llu", (unsigned long long)total);
        CHECK(done >= last, "monotone at step %zu: %llu after %llu", i, (unsigned long long)done,
              (unsigned long long)last);
        last = done;
    }
    CHECK(last == 2000, "complete: %llu", (unsigned long long)last);
    CHECK(sol_pull_progress_update(p, 2, "sha256:aa", 1, 1) == NULL, "unknown leg");
    CHECK(sol_pull_progress_first_status(p, "pulling manifest") == 1, "first");
    CHECK(sol_pull_progress_first_status(p, "pulling manifest") == 0, "second node's");
    CHECK(sol_pull_progress_first_status(p, "writing manifest") == 1, "next step");
    for (unsigned i = 0; i < SOL_PULL_MAX_DIGESTS + 2; i++) {
        char dg[32];
        snprintf(dg, sizeof dg, "sha256:%u", i);
        struct sol_pull_digest *d = sol_pull_progress_update(p, 0, dg, 10, 5);
        CHECK(i + 1 < SOL_PULL_MAX_DIGESTS ? d != NULL : 1, "room for %u", i);
    }
    CHECK(sol_pull_progress_update(p, 0, "sha256:new", 10, 5) == NULL, "bounded");
    sol_pull_progress_free(p);
    free(p);
}

int main(void)
{
    test_versions();
    test_keep_alive();
    test_request_errors();
    test_cors();
    test_pull_progress();
    return check_summary();
}
