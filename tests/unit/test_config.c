/*
 * test_config.c - unit tests for the configuration module.
 *
 * Usage: test_config REPO_ROOT
 * REPO_ROOT (or the SOLLOL_SOURCE_DIR compile definition) locates
 * docs/configuration.md and conf/sollol.json, which must document every
 * key of the table. Prints each failed check with file:line and ends with
 * "N passed, M failed"; exits non-zero when anything failed.
 */
#include "base/config.h"
#include "sollol/log.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef SOLLOL_VERSION
#define SOLLOL_VERSION "unknown"
#endif

static int n_pass, n_fail;

static void check_at(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check_at(int ok, const char *file, int line, const char *fmt, ...)
{
    if (ok) {
        n_pass++;
        return;
    }
    n_fail++;
    fprintf(stderr, "%s:%d: FAILED: ", file, line);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

#define CHECK(cond) check_at(!!(cond), __FILE__, __LINE__, "%s", #cond)
#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        check_at(a_ &&b_ &&strcmp(a_, b_) == 0, __FILE__, __LINE__, "%s == \"%s\" (got %s%s%s)",   \
                 #a, b_ ? b_ : "(null)", a_ ? "\"" : "", a_ ? a_ : "(null)", a_ ? "\"" : "");      \
    } while (0)
#define CHECK_NUM(a, b)                                                                            \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        check_at(a_ == b_, __FILE__, __LINE__, "%s == %lld (got %lld)", #a, b_, a_);               \
    } while (0)
#define CHECK_HAS(hay, needle)                                                                     \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        check_at(h_ &&strstr(h_, n_) != NULL, __FILE__, __LINE__, "%s contains \"%s\" (got %s)",   \
                 #hay, n_, h_ ? h_ : "(null)");                                                    \
    } while (0)

/* ---- running sol_config_from_args ---- */

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})
#define NONE      ((const char *const[]){NULL})

struct run {
    int rc;
    enum sol_config_action action;
    struct sol_config cfg;
    char err[1024];
    char *out;
    size_t outlen;
};

static void run_cfg(struct run *r, const char *const *args, const char *const *env)
{
    char *argv[64], *envp[64];
    int argc = 0, envc = 0;
    argv[argc++] = (char *)"sollold";
    for (; args && *args && argc < 63; args++)
        argv[argc++] = (char *)*args;
    argv[argc] = NULL;
    for (; env && *env && envc < 63; env++)
        envp[envc++] = (char *)*env;
    envp[envc] = NULL;
    memset(r, 0, sizeof *r);
    FILE *out = open_memstream(&r->out, &r->outlen);
    r->rc = sol_config_from_args(&r->cfg, argc, argv, envp, &r->action, out, r->err, sizeof r->err);
    fclose(out);
}

static void run_free(struct run *r)
{
    sol_config_free(&r->cfg);
    free(r->out);
    r->out = NULL;
}

/* Runs and checks that it failed with every needle in the message. */
static void expect_error_at(int line, const char *const *args, const char *const *env, ...)
{
    struct run r;
    run_cfg(&r, args, env);
    check_at(r.rc == -1, __FILE__, line, "expected an error (got rc %d)", r.rc);
    check_at(strncmp(r.err, "config: ", 8) == 0, __FILE__, line,
             "message starts with 'config: ' (got \"%s\")", r.err);
    check_at(r.cfg.nodes == NULL && r.cfg.listen == NULL, __FILE__, line,
             "config is empty after an error");
    va_list ap;
    va_start(ap, env);
    for (const char *needle; (needle = va_arg(ap, const char *));)
        check_at(strstr(r.err, needle) != NULL, __FILE__, line,
                 "error contains \"%s\" (got \"%s\")", needle, r.err);
    va_end(ap);
    run_free(&r);
}
#define EXPECT_ERROR(args, env, ...) expect_error_at(__LINE__, args, env, __VA_ARGS__, NULL)

/* ---- temporary files ---- */

static char tmp_paths[64][64];
static int n_tmp;

static const char *tmp_file(const char *content)
{
    if (n_tmp >= 64)
        abort();
    char *path = tmp_paths[n_tmp++];
    snprintf(path, 64, "/tmp/sollol-test-config-XXXXXX");
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        abort();
    }
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len)
        abort();
    close(fd);
    return path;
}

static void tmp_cleanup(void)
{
    for (int i = 0; i < n_tmp; i++)
        unlink(tmp_paths[i]);
}

/* "(file /tmp/...)" for a path. */
static const char *file_src(const char *path)
{
    static char buf[8][128];
    static int next;
    char *b = buf[next++ % 8];
    snprintf(b, 128, "(file %s)", path);
    return b;
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&text, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, m);
    fclose(m);
    fclose(f);
    return text;
}

/* ---- OLLAMA_HOST rules ---- */

struct host_case {
    int line;
    const char *in;
    int default_port;
    const char *scheme, *host;
    int port;
    const char *path;
    const char *err; /* substring of the error, or NULL for success */
};

static void test_parse_host(void)
{
    /* Ollama's envconfig tests first, then more. */
    static const struct host_case cases[] = {
        {__LINE__, "", 11434, "http", "127.0.0.1", 11434, "", NULL},
        {__LINE__, "1.2.3.4", 11434, "http", "1.2.3.4", 11434, "", NULL},
        {__LINE__, ":1234", 11434, "http", "", 1234, "", NULL},
        {__LINE__, "1.2.3.4:1234", 11434, "http", "1.2.3.4", 1234, "", NULL},
        {__LINE__, "example.com", 11434, "http", "example.com", 11434, "", NULL},
        {__LINE__, "example.com:1234", 11434, "http", "example.com", 1234, "", NULL},
        {__LINE__, ":0", 11434, "http", "", 0, "", NULL},
        {__LINE__, ":66000", 11434, NULL, NULL, 0, NULL, "invalid port '66000'"},
        {__LINE__, ":-1", 11434, NULL, NULL, 0, NULL, "invalid port '-1'"},
        {__LINE__, "[::1]", 11434, "http", "::1", 11434, "", NULL},
        {__LINE__, "[::]", 11434, "http", "::", 11434, "", NULL},
        {__LINE__, "::1", 11434, "http", "::1", 11434, "", NULL},
        {__LINE__, "[::1]:1337", 11434, "http", "::1", 1337, "", NULL},
        {__LINE__, " 1.2.3.4 ", 11434, "http", "1.2.3.4", 11434, "", NULL},
        {__LINE__, "\"1.2.3.4\"", 11434, "http", "1.2.3.4", 11434, "", NULL},
        {__LINE__, " \" 1.2.3.4 \" ", 11434, "http", "1.2.3.4", 11434, "", NULL},
        {__LINE__, "'1.2.3.4'", 11434, "http", "1.2.3.4", 11434, "", NULL},
        {__LINE__, "http://1.2.3.4", 11434, "http", "1.2.3.4", 80, "", NULL},
        {__LINE__, "http://1.2.3.4:4321", 11434, "http", "1.2.3.4", 4321, "", NULL},
        {__LINE__, "https://1.2.3.4", 11434, "https", "1.2.3.4", 443, "", NULL},
        {__LINE__, "https://1.2.3.4:4321", 11434, "https", "1.2.3.4", 4321, "", NULL},
        {__LINE__, "https://example.com/ollama", 11434, "https", "example.com", 443, "/ollama",
         NULL},
        /* More. */
        {__LINE__, "0.0.0.0", 11434, "http", "0.0.0.0", 11434, "", NULL},
        {__LINE__, "localhost:11435", 11434, "http", "localhost", 11435, "", NULL},
        {__LINE__, "gpu-a.lan", 11434, "http", "gpu-a.lan", 11434, "", NULL},
        {__LINE__, "host_with_underscore", 11434, "http", "host_with_underscore", 11434, "", NULL},
        {__LINE__, "HTTP://Example.COM", 11434, "http", "Example.COM", 80, "", NULL},
        {__LINE__, "HttpS://h", 11434, "https", "h", 443, "", NULL},
        {__LINE__, "http://", 11434, "http", "127.0.0.1", 80, "", NULL},
        {__LINE__, "http://[::1]", 11434, "http", "::1", 80, "", NULL},
        {__LINE__, "https://[::1]:8443/a/b/", 11434, "https", "::1", 8443, "/a/b", NULL},
        {__LINE__, "[0:0:0:0:0:0:0:1]:80", 11434, "http", "::1", 80, "", NULL},
        {__LINE__, "[fe80::1:2]", 11434, "http", "fe80::1:2", 11434, "", NULL},
        {__LINE__, "2001:db8::7", 11434, "http", "2001:db8::7", 11434, "", NULL},
        {__LINE__, "[1.2.3.4]:5", 11434, "http", "1.2.3.4", 5, "", NULL},
        {__LINE__, "h:65535", 11434, "http", "h", 65535, "", NULL},
        {__LINE__, "h/", 11434, "http", "h", 11434, "", NULL},
        {__LINE__, "h///", 11434, "http", "h", 11434, "", NULL},
        {__LINE__, "h:8080/v1/", 11434, "http", "h", 8080, "/v1", NULL},
        {__LINE__, "http://h/p%20q", 11434, "http", "h", 80, "/p%20q", NULL},
        {__LINE__, "\t'http://h:1'\n", 11434, "http", "h", 1, "", NULL},
        {__LINE__, "h", 8080, "http", "h", 8080, "", NULL},      /* default_port honoured */
        {__LINE__, "http://h", 8080, "http", "h", 80, "", NULL}, /* but not with a scheme */
        {__LINE__, "h:65536", 11434, NULL, NULL, 0, NULL, "invalid port '65536'"},
        {__LINE__, "h:99999", 11434, NULL, NULL, 0, NULL, "invalid port '99999'"},
        {__LINE__, "h:", 11434, NULL, NULL, 0, NULL, "invalid port ''"},
        {__LINE__, "h:abc", 11434, NULL, NULL, 0, NULL, "invalid port 'abc'"},
        {__LINE__, "h:12ab", 11434, NULL, NULL, 0, NULL, "invalid port '12ab'"},
        {__LINE__, "h:000080", 11434, NULL, NULL, 0, NULL, "invalid port '000080'"},
        {__LINE__, "ftp://h", 11434, NULL, NULL, 0, NULL, "unsupported scheme 'ftp'"},
        {__LINE__, "unix:///run/x", 11434, NULL, NULL, 0, NULL, "unsupported scheme 'unix'"},
        {__LINE__, "://h", 11434, NULL, NULL, 0, NULL, "unsupported scheme ''"},
        {__LINE__, "[::1", 11434, NULL, NULL, 0, NULL, "invalid IPv6 address"},
        {__LINE__, "[zz::1]", 11434, NULL, NULL, 0, NULL, "invalid IPv6 address"},
        {__LINE__, "[]", 11434, NULL, NULL, 0, NULL, "invalid IPv6 address"},
        {__LINE__, "[::1]x", 11434, NULL, NULL, 0, NULL, "unexpected text after ']'"},
        {__LINE__, "[::1]:", 11434, NULL, NULL, 0, NULL, "invalid port ''"},
        {__LINE__, "1:2:3", 11434, NULL, NULL, 0, NULL, "[addr]:port"},
        {__LINE__, "::1:8080:x", 11434, NULL, NULL, 0, NULL, "invalid address"},
        {__LINE__, "a b", 11434, NULL, NULL, 0, NULL, "invalid host 'a b'"},
        {__LINE__, "user@h", 11434, NULL, NULL, 0, NULL, "invalid host 'user@h'"},
        {__LINE__, "user:pw@h", 11434, NULL, NULL, 0, NULL, "invalid port 'pw@h'"},
        {__LINE__, "http://h/p?q=1", 11434, NULL, NULL, 0, NULL, "invalid character '?'"},
        {__LINE__, "http://h/p#f", 11434, NULL, NULL, 0, NULL, "invalid character '#'"},
        {__LINE__, "http://h/a b", 11434, NULL, NULL, 0, NULL, "invalid character ' '"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct host_case *c = &cases[i];
        char *scheme = NULL, *host = NULL, *path = NULL, err[256] = "";
        int port = -2;
        int rc = sol_config_parse_host(c->in, c->default_port, &scheme, &host, &port, &path, err,
                                       sizeof err);
        if (c->err) {
            check_at(rc == -1, __FILE__, c->line, "'%s' is rejected (got rc %d)", c->in, rc);
            check_at(strstr(err, c->err) != NULL, __FILE__, c->line,
                     "'%s': error contains \"%s\" (got \"%s\")", c->in, c->err, err);
            check_at(!scheme && !host && !path && port == -2, __FILE__, c->line,
                     "'%s': outputs untouched on error", c->in);
        } else {
            check_at(rc == 0, __FILE__, c->line, "'%s' parses (got \"%s\")", c->in, err);
            if (rc == 0) {
                check_at(strcmp(scheme, c->scheme) == 0 && strcmp(host, c->host) == 0 &&
                             port == c->port && strcmp(path, c->path) == 0,
                         __FILE__, c->line,
                         "'%s' -> %s://[%s]:%d path '%s' (expected %s://[%s]:%d path '%s')", c->in,
                         scheme, host, port, path, c->scheme, c->host, c->port, c->path);
            }
        }
        free(scheme);
        free(host);
        free(path);
    }

    /* Optional outputs may be NULL. */
    char *host = NULL, err[128];
    int port = 0;
    CHECK(sol_config_parse_host("https://h:1/x", 11434, NULL, &host, &port, NULL, err,
                                sizeof err) == 0);
    CHECK_STR(host, "h");
    CHECK_NUM(port, 1);
    free(host);
    host = NULL;
    CHECK(sol_config_parse_host(NULL, 11434, NULL, &host, &port, NULL, err, sizeof err) == 0);
    CHECK_STR(host, "127.0.0.1");
    free(host);
}

/* ---- nodes: URL forms and derived fields ---- */

static void test_node_urls(void)
{
    struct run r;
    run_cfg(&r,
            ARGS("--node", "1.2.3.4", "--node", "gpu-b=http://[::1]:8080/prefix/", "--node",
                 " 'https://ollama.example.com/x' ", "--node", "plain=http://h"),
            NONE);
    CHECK(r.rc == 0);
    CHECK(r.action == SOL_CONFIG_RUN);
    CHECK_NUM(r.cfg.n_nodes, 4);
    if (r.cfg.n_nodes == 4) {
        struct sol_node_conf *n = r.cfg.nodes;
        CHECK_STR(n[0].url, "1.2.3.4");
        CHECK_STR(n[0].scheme, "http");
        CHECK_STR(n[0].host, "1.2.3.4");
        CHECK_NUM(n[0].port, 11434);
        CHECK_STR(n[0].path_prefix, "");
        CHECK_STR(n[0].base_url, "http://1.2.3.4:11434");
        CHECK_STR(n[0].host_header, "1.2.3.4:11434");
        CHECK_STR(n[0].name, "1.2.3.4:11434");
        CHECK_NUM(n[0].max_concurrent, 4);
        CHECK(n[0].weight == 1.0);
        CHECK_NUM(n[0].n_headers, 0);

        CHECK_STR(n[1].name, "gpu-b");
        CHECK_STR(n[1].url, "http://[::1]:8080/prefix/");
        CHECK_STR(n[1].host, "::1");
        CHECK_NUM(n[1].port, 8080);
        CHECK_STR(n[1].path_prefix, "/prefix");
        CHECK_STR(n[1].base_url, "http://[::1]:8080/prefix");
        CHECK_STR(n[1].host_header, "[::1]:8080");

        CHECK_STR(n[2].scheme, "https");
        CHECK_STR(n[2].host, "ollama.example.com");
        CHECK_NUM(n[2].port, 443);
        CHECK_STR(n[2].base_url, "https://ollama.example.com:443/x");
        CHECK_STR(n[2].host_header, "ollama.example.com:443");
        CHECK_STR(n[2].name, "ollama.example.com:443");

        CHECK_STR(n[3].name, "plain");
        CHECK_STR(n[3].base_url, "http://h:80");
    }
    run_free(&r);

    /* Brackets in default names for IPv6. */
    run_cfg(&r, ARGS("--node=[2001:db8::1]"), NONE);
    CHECK(r.rc == 0);
    if (r.rc == 0)
        CHECK_STR(r.cfg.nodes[0].name, "[2001:db8::1]:11434");
    run_free(&r);

    /* Same host:port with different prefixes: distinct nodes, but the
     * default names collide and the message says how to fix it. */
    EXPECT_ERROR(ARGS("--node", "h/a", "--node", "h/b"), NONE,
                 "config: nodes[1].name: duplicate node name 'h:11434' (also nodes[0])",
                 "give the node a name", "(flag --node)");
    run_cfg(&r, ARGS("--node", "a=h/a", "--node", "b=h/b"), NONE);
    CHECK(r.rc == 0);
    run_free(&r);
    EXPECT_ERROR(ARGS("--node", "h", "--node", "http://h:11434/"), NONE,
                 "config: nodes[1].url: 'http://h:11434' is the same node as nodes[0] (flag "
                 "--node)");
}

/* ---- durations, sizes, ints, bools, enums ---- */

static unsigned first_byte_ms(const char *text, int *ok)
{
    struct run r;
    char arg[128];
    snprintf(arg, sizeof arg, "--first-byte-timeout=%s", text);
    run_cfg(&r, ARGS("--demo", arg), NONE);
    *ok = r.rc == 0;
    unsigned v = r.cfg.first_byte_timeout_ms;
    run_free(&r);
    return v;
}

static void test_durations(void)
{
    static const struct {
        int line;
        const char *in;
        unsigned ms;
    } good[] = {
        {__LINE__, "1500", 1500},
        {__LINE__, "5s", 5000},
        {__LINE__, "2m", 120000},
        {__LINE__, "1500ms", 1500},
        {__LINE__, "1h", 3600000},
        {__LINE__, "1h30m", 5400000},
        {__LINE__, "1.5s", 1500},
        {__LINE__, "1.1s", 1100},
        {__LINE__, "0.5ms", 1},
        {__LINE__, "500us", 1},
        {__LINE__, "1500\xc2\xb5s", 2},
        {__LINE__, "2000000ns", 2},
        {__LINE__, " 7s ", 7000},
        {__LINE__, "+3s", 3000},
        {__LINE__, "1m0.5s", 60500},
        {__LINE__, "24h", 86400000},
        {__LINE__, "1", 1},
        {__LINE__, ".5s", 500},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int ok;
        unsigned ms = first_byte_ms(good[i].in, &ok);
        check_at(ok && ms == good[i].ms, __FILE__, good[i].line, "'%s' -> %u ms (got %u, ok %d)",
                 good[i].in, good[i].ms, ms, ok);
    }
    static const struct {
        int line;
        const char *in, *err;
    } bad[] = {
        {__LINE__, "", "empty duration"},
        {__LINE__, "-5s", "must not be negative"},
        {__LINE__, "10x", "unknown unit 'x'"},
        {__LINE__, "5 s", "unknown unit ' s'"},
        {__LINE__, "1.5", "missing unit"},
        {__LINE__, "s", "invalid duration"},
        {__LINE__, "0", "must be between 1ms and 86400000ms, got 0ms"},
        {__LINE__, "25h", "must be between 1ms and 86400000ms, got 90000000ms"},
        {__LINE__, "99999999999999999999", "too large"},
        {__LINE__, "9999999999h", "too large"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[128];
        snprintf(arg, sizeof arg, "--first-byte-timeout=%s", bad[i].in);
        expect_error_at(bad[i].line, ARGS("--demo", arg), NONE,
                        "config: timeouts.first_byte_ms: ", bad[i].err,
                        "(flag --first-byte-timeout)", NULL);
    }

    /* JSON: integer milliseconds or strings. */
    struct run r;
    const char *f = tmp_file("{\"demo\": true, \"timeouts\": {\"connect_ms\": 2500, "
                             "\"first_byte_ms\": \"10m\", \"idle_ms\": \"90s\"}}");
    run_cfg(&r, ARGS("--config", f), NONE);
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.connect_timeout_ms, 2500);
    CHECK_NUM(r.cfg.first_byte_timeout_ms, 600000);
    CHECK_NUM(r.cfg.idle_timeout_ms, 90000);
    run_free(&r);
    f = tmp_file("{\"demo\": true, \"timeouts\": {\"connect_ms\": 2.5}}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: timeouts.connect_ms: expected a whole",
                 file_src(f));
    f = tmp_file("{\"demo\": true, \"timeouts\": {\"connect_ms\": -1}}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: timeouts.connect_ms: ", file_src(f));
    f = tmp_file("{\"demo\": true, \"timeouts\": {\"idle_ms\": true}}");
    EXPECT_ERROR(ARGS("--config", f), NONE,
                 "config: timeouts.idle_ms: expected a duration (integer milliseconds or a "
                 "string like \"5s\"), got a boolean",
                 file_src(f));
    f = tmp_file("{\"demo\": true, \"timeouts\": {\"connect_ms\": \"11m\"}}");
    EXPECT_ERROR(ARGS("--config", f), NONE,
                 "config: timeouts.connect_ms: must be between 1ms and 600000ms, got 660000ms",
                 file_src(f));

    /* Environment. */
    run_cfg(&r, ARGS("--demo"),
            ARGS("SOLLOL_CONNECT_TIMEOUT=250ms", "SOLLOL_FIRST_BYTE_TIMEOUT=1h",
                 "SOLLOL_IDLE_TIMEOUT=45000"));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.connect_timeout_ms, 250);
    CHECK_NUM(r.cfg.first_byte_timeout_ms, 3600000);
    CHECK_NUM(r.cfg.idle_timeout_ms, 45000);
    run_free(&r);
    EXPECT_ERROR(ARGS("--demo"), ARGS("SOLLOL_IDLE_TIMEOUT=soon"),
                 "config: timeouts.idle_ms: invalid duration 'soon'", "(env SOLLOL_IDLE_TIMEOUT)");
}

static void test_sizes(void)
{
    static const struct {
        int line;
        const char *in;
        unsigned long long bytes;
    } good[] = {
        {__LINE__, "64MiB", 67108864ULL},    {__LINE__, "512KiB", 524288ULL},
        {__LINE__, "1GB", 1000000000ULL},    {__LINE__, "1048576", 1048576ULL},
        {__LINE__, "1.5GiB", 1610612736ULL}, {__LINE__, "2 MiB", 2097152ULL},
        {__LINE__, "64mib", 67108864ULL},    {__LINE__, "10kb", 10000ULL},
        {__LINE__, "2048B", 2048ULL},        {__LINE__, "1TiB", 1099511627776ULL},
        {__LINE__, "3MB", 3000000ULL},       {__LINE__, " 1KiB ", 1024ULL},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        struct run r;
        char arg[128];
        snprintf(arg, sizeof arg, "--max-body=%s", good[i].in);
        run_cfg(&r, ARGS("--demo", arg), NONE);
        check_at(r.rc == 0 && r.cfg.max_body_bytes == good[i].bytes, __FILE__, good[i].line,
                 "'%s' -> %llu bytes (got %llu, \"%s\")", good[i].in, good[i].bytes,
                 r.cfg.max_body_bytes, r.err);
        run_free(&r);
    }
    static const struct {
        int line;
        const char *in, *err;
    } bad[] = {
        {__LINE__, "64M", "ambiguous unit 'M' in size '64M' (use MiB"},
        {__LINE__, "1k", "ambiguous unit 'k'"},
        {__LINE__, "10QB", "unknown unit 'QB'"},
        {__LINE__, "big", "invalid size 'big'"},
        {__LINE__, "", "invalid size ''"},
        {__LINE__, "-1", "invalid size '-1'"},
        {__LINE__, "1.5", "not a whole number of bytes"},
        {__LINE__, "100", "must be between 1024 bytes and 1099511627776 bytes, got 100 bytes"},
        {__LINE__, "2TiB", "must be between"},
        {__LINE__, "99999999999EiB", "unknown unit"},
        {__LINE__, "99999999999TiB", "too large"},
        {__LINE__, "5MiB!", "invalid size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char arg[128];
        snprintf(arg, sizeof arg, "--max-body=%s", bad[i].in);
        expect_error_at(bad[i].line, ARGS("--demo", arg), NONE,
                        "config: max_body_bytes: ", bad[i].err, "(flag --max-body)", NULL);
    }
    struct run r;
    const char *f = tmp_file("{\"demo\": true, \"max_body_bytes\": 2048}");
    run_cfg(&r, ARGS("--config", f), NONE);
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.max_body_bytes, 2048);
    run_free(&r);
    f = tmp_file("{\"demo\": true, \"max_body_bytes\": \"2 KiB\"}");
    run_cfg(&r, ARGS("--config", f), NONE);
    CHECK_NUM(r.cfg.max_body_bytes, 2048);
    run_free(&r);
    run_cfg(&r, ARGS("--demo"), ARGS("SOLLOL_MAX_BODY=1GiB"));
    CHECK_NUM(r.cfg.max_body_bytes, 1073741824ULL);
    run_free(&r);
    f = tmp_file("{\"demo\": true, \"max_body_bytes\": [1]}");
    EXPECT_ERROR(ARGS("--config", f), NONE,
                 "config: max_body_bytes: expected a size (integer bytes or a string like "
                 "\"64MiB\"), got an array",
                 file_src(f));
}

static void test_scalars(void)
{
    struct run r;
    /* Booleans: bare flag, =value, env words. */
    run_cfg(&r, ARGS("--demo"), NONE);
    CHECK(r.rc == 0 && r.cfg.demo == 1 && r.cfg.n_nodes == 0);
    run_free(&r);
    static const char *const truthy[] = {"true", "1", "yes", "on", "TRUE", " On "};
    static const char *const falsy[] = {"false", "0", "no", "off", "False"};
    for (size_t i = 0; i < 6; i++) {
        char env[64];
        snprintf(env, sizeof env, "SOLLOL_DEMO=%s", truthy[i]);
        run_cfg(&r, NONE, ARGS(env));
        check_at(r.rc == 0 && r.cfg.demo == 1, __FILE__, __LINE__, "%s is true", env);
        run_free(&r);
    }
    for (size_t i = 0; i < 5; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--demo=%s", falsy[i]);
        run_cfg(&r, ARGS("--node", "h", flag), ARGS("SOLLOL_DEMO=1"));
        check_at(r.rc == 0 && r.cfg.demo == 0, __FILE__, __LINE__, "%s is false", flag);
        run_free(&r);
    }
    EXPECT_ERROR(NONE, ARGS("SOLLOL_DEMO=maybe"),
                 "config: demo: invalid boolean 'maybe' (use true or false) (env SOLLOL_DEMO)");
    /* "--demo false" would be ambiguous: "false" is then a stray argument. */
    EXPECT_ERROR(ARGS("--demo", "false"), NONE, "config: unexpected argument 'false'");
    const char *f = tmp_file("{\"demo\": \"yes\"}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: demo: expected true or false, got a string",
                 file_src(f));

    /* Integers. */
    run_cfg(&r, ARGS("--demo", "--demo-nodes", "8"), NONE);
    CHECK(r.rc == 0 && r.cfg.demo_nodes == 8);
    run_free(&r);
    EXPECT_ERROR(ARGS("--demo"), ARGS("SOLLOL_DEMO_NODES=9"),
                 "config: demo_nodes: must be between 1 and 8, got 9 (env SOLLOL_DEMO_NODES)");
    EXPECT_ERROR(ARGS("--demo", "--demo-nodes=two"), NONE,
                 "config: demo_nodes: invalid integer 'two' (flag --demo-nodes)");
    EXPECT_ERROR(ARGS("--demo", "--demo-nodes=99999999999999999999"), NONE,
                 "config: demo_nodes: invalid integer");
    f = tmp_file("{\"demo\": true, \"demo_nodes\": 2.5}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: demo_nodes: expected an integer, got 2.5",
                 file_src(f));
    f = tmp_file("{\"demo\": true, \"demo_nodes\": \"3\"}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: demo_nodes: expected an integer, got a string",
                 file_src(f));

    /* Enums. */
    run_cfg(&r, ARGS("--demo", "--log-level", "DEBUG", "--log-format=json"), NONE);
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.log_level, SOL_LOG_DEBUG);
    CHECK_NUM(r.cfg.log_format_json, 1);
    run_free(&r);
    EXPECT_ERROR(ARGS("--demo"), ARGS("SOLLOL_LOG_LEVEL=loud"),
                 "config: log_level: invalid value 'loud' (expected one of: error, warn, info, "
                 "debug) (env SOLLOL_LOG_LEVEL)");
    EXPECT_ERROR(ARGS("--demo", "--log-format", "xml"), NONE,
                 "config: log_format: invalid value 'xml' (expected one of: text, json) (flag "
                 "--log-format)");
    f = tmp_file("{\"demo\": true, \"log_level\": 3}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: log_level: expected a string, got a number",
                 file_src(f));

    /* Strings. */
    run_cfg(&r, ARGS("--demo", "--sim-path", "/opt/sollol/ollama-sim"), NONE);
    CHECK_STR(r.cfg.sim_path, "/opt/sollol/ollama-sim");
    run_free(&r);
    f = tmp_file("{\"demo\": true, \"sim_path\": null}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: sim_path: expected a string, got null",
                 file_src(f));

    /* Empty environment values count as unset. */
    run_cfg(&r, ARGS("--demo"), ARGS("SOLLOL_LOG_LEVEL=", "SOLLOL_NODES=", "SOLLOL_LISTEN="));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.log_level, SOL_LOG_INFO);
    CHECK_STR(r.cfg.listen_host, "127.0.0.1");
    run_free(&r);
}

/* ---- listen ---- */

static void test_listen(void)
{
    struct run r;
    run_cfg(&r, ARGS("--demo"), NONE);
    CHECK(r.rc == 0);
    CHECK_STR(r.cfg.listen, "127.0.0.1:11434");
    CHECK_STR(r.cfg.listen_host, "127.0.0.1");
    CHECK_NUM(r.cfg.listen_port, 11434);
    run_free(&r);

    static const struct {
        int line;
        const char *in, *host;
        int port;
    } good[] = {
        {__LINE__, "0.0.0.0:8080", "0.0.0.0", 8080}, {__LINE__, ":1234", "", 1234},
        {__LINE__, "127.0.0.1:0", "127.0.0.1", 0},   {__LINE__, "[::1]:0", "::1", 0},
        {__LINE__, "http://0.0.0.0", "0.0.0.0", 80}, {__LINE__, "localhost", "localhost", 11434},
        {__LINE__, "\"0.0.0.0\"", "0.0.0.0", 11434}, {__LINE__, "::", "::", 11434},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        run_cfg(&r, ARGS("--demo", "--listen", good[i].in), NONE);
        check_at(r.rc == 0 &&
                     strcmp(r.cfg.listen_host ? r.cfg.listen_host : "?", good[i].host) == 0 &&
                     r.cfg.listen_port == good[i].port,
                 __FILE__, good[i].line, "listen '%s' -> '%s' %d (got '%s' %d, \"%s\")", good[i].in,
                 good[i].host, good[i].port, r.cfg.listen_host, r.cfg.listen_port, r.err);
        run_free(&r);
    }
    EXPECT_ERROR(ARGS("--demo", "--listen", "0.0.0.0:99999"), NONE,
                 "config: listen: invalid port '99999' (flag --listen)");
    EXPECT_ERROR(ARGS("--demo"), ARGS("SOLLOL_LISTEN=https://0.0.0.0"),
                 "config: listen: https is not supported", "(env SOLLOL_LISTEN)");
    EXPECT_ERROR(ARGS("--demo", "--listen=0.0.0.0/ollama"), NONE,
                 "config: listen: a path prefix ('/ollama') is not supported", "(flag --listen)");

    /* OLLAMA_HOST: a fallback below SOLLOL_LISTEN and the file. */
    run_cfg(&r, ARGS("--demo"), ARGS("OLLAMA_HOST=0.0.0.0"));
    CHECK(r.rc == 0);
    CHECK_STR(r.cfg.listen, "0.0.0.0");
    CHECK_STR(r.cfg.listen_host, "0.0.0.0");
    CHECK_NUM(r.cfg.listen_port, 11434);
    run_free(&r);
    run_cfg(&r, ARGS("--demo"), ARGS("OLLAMA_HOST=0.0.0.0:1", "SOLLOL_LISTEN=127.0.0.2:2"));
    CHECK_STR(r.cfg.listen_host, "127.0.0.2");
    CHECK_NUM(r.cfg.listen_port, 2);
    run_free(&r);
    const char *f = tmp_file("{\"demo\": true, \"listen\": \"127.0.0.3:3\"}");
    run_cfg(&r, ARGS("--config", f), ARGS("OLLAMA_HOST=0.0.0.0:1"));
    CHECK_STR(r.cfg.listen_host, "127.0.0.3");
    CHECK_NUM(r.cfg.listen_port, 3);
    run_free(&r);
    /* A broken OLLAMA_HOST is ignored when something else sets listen... */
    run_cfg(&r, ARGS("--demo", "--listen", ":5"), ARGS("OLLAMA_HOST=:99999"));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.listen_port, 5);
    run_free(&r);
    run_cfg(&r, ARGS("--config", f), ARGS("OLLAMA_HOST=ftp://x"));
    CHECK(r.rc == 0);
    run_free(&r);
    /* ...and named when it is used. */
    EXPECT_ERROR(ARGS("--demo"), ARGS("OLLAMA_HOST=:99999"),
                 "config: listen: invalid port '99999' (env OLLAMA_HOST)");
}

/* ---- precedence ---- */

static void test_precedence(void)
{
    const char *f = tmp_file("{\"demo\": true, \"log_level\": \"warn\", \"timeouts\": "
                             "{\"connect_ms\": 1000}, \"sim_path\": \"/file/sim\"}");
    struct run r;

    run_cfg(&r, ARGS("--demo"), NONE); /* defaults */
    CHECK_NUM(r.cfg.log_level, SOL_LOG_INFO);
    CHECK_NUM(r.cfg.connect_timeout_ms, 3000);
    CHECK_STR(r.cfg.sim_path, "");
    CHECK(r.cfg.config_path == NULL);
    run_free(&r);

    run_cfg(&r, ARGS("--config", f), NONE); /* file > defaults */
    CHECK(r.rc == 0);
    CHECK_STR(r.cfg.config_path, f);
    CHECK_NUM(r.cfg.log_level, SOL_LOG_WARN);
    CHECK_NUM(r.cfg.connect_timeout_ms, 1000);
    CHECK_STR(r.cfg.sim_path, "/file/sim");
    CHECK_NUM(r.cfg.idle_timeout_ms, 120000); /* not in the file: default */
    run_free(&r);

    run_cfg(&r, ARGS("--config", f), ARGS("SOLLOL_LOG_LEVEL=error", "SOLLOL_SIM_PATH=/env/sim"));
    CHECK_NUM(r.cfg.log_level, SOL_LOG_ERROR); /* env > file */
    CHECK_STR(r.cfg.sim_path, "/env/sim");
    CHECK_NUM(r.cfg.connect_timeout_ms, 1000); /* file still applies */
    run_free(&r);

    run_cfg(&r, ARGS("--config", f, "--log-level", "debug", "--connect-timeout=2s"),
            ARGS("SOLLOL_LOG_LEVEL=error", "SOLLOL_CONNECT_TIMEOUT=5s"));
    CHECK_NUM(r.cfg.log_level, SOL_LOG_DEBUG); /* flag > env > file */
    CHECK_NUM(r.cfg.connect_timeout_ms, 2000);
    CHECK_STR(r.cfg.sim_path, "/file/sim");
    run_free(&r);

    run_cfg(&r, ARGS("--demo", "--log-level", "warn", "--log-level=error"), NONE);
    CHECK_NUM(r.cfg.log_level, SOL_LOG_ERROR); /* the last flag wins */
    run_free(&r);

    /* --config beats SOLLOL_CONFIG. */
    const char *g = tmp_file("{\"demo\": true, \"log_level\": \"debug\"}");
    run_cfg(&r, NONE, ARGS("SOLLOL_CONFIG=", "OTHER=1"));
    CHECK(r.rc == -1); /* empty SOLLOL_CONFIG = unset: no nodes */
    run_free(&r);
    char env[128];
    snprintf(env, sizeof env, "SOLLOL_CONFIG=%s", g);
    run_cfg(&r, NONE, ARGS(env));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.log_level, SOL_LOG_DEBUG);
    CHECK_STR(r.cfg.config_path, g);
    run_free(&r);
    run_cfg(&r, ARGS("--config", f), ARGS(env));
    CHECK_NUM(r.cfg.log_level, SOL_LOG_WARN);
    CHECK_STR(r.cfg.config_path, f);
    run_free(&r);

    /* Nodes: the whole list is replaced, flag > env > file. */
    const char *nf = tmp_file("{\"nodes\": [{\"url\": \"10.0.0.1\", \"name\": \"file-a\"}, "
                              "\"file-b=10.0.0.2\"]}");
    run_cfg(&r, ARGS("--config", nf), NONE);
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.n_nodes, 2);
    if (r.cfg.n_nodes == 2) {
        CHECK_STR(r.cfg.nodes[0].name, "file-a");
        CHECK_STR(r.cfg.nodes[1].name, "file-b");
        CHECK_STR(r.cfg.nodes[1].base_url, "http://10.0.0.2:11434");
    }
    run_free(&r);
    run_cfg(&r, ARGS("--config", nf), ARGS("SOLLOL_NODES= env-c=10.0.0.3 , ,10.0.0.4,"));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.n_nodes, 2);
    if (r.cfg.n_nodes == 2) {
        CHECK_STR(r.cfg.nodes[0].name, "env-c");
        CHECK_STR(r.cfg.nodes[0].host, "10.0.0.3");
        CHECK_STR(r.cfg.nodes[1].name, "10.0.0.4:11434");
    }
    run_free(&r);
    run_cfg(&r, ARGS("--config", nf, "--node", "cli-d=10.0.0.5"), ARGS("SOLLOL_NODES=10.0.0.3"));
    CHECK(r.rc == 0);
    CHECK_NUM(r.cfg.n_nodes, 1);
    if (r.cfg.n_nodes == 1)
        CHECK_STR(r.cfg.nodes[0].name, "cli-d");
    run_free(&r);
    /* SOLLOL_NODES holding only separators is unset: the file's nodes stay. */
    run_cfg(&r, ARGS("--config", nf), ARGS("SOLLOL_NODES= , "));
    CHECK_NUM(r.cfg.n_nodes, 2);
    run_free(&r);
    /* demo and nodes together are fine. */
    run_cfg(&r, ARGS("--config", nf, "--demo"), NONE);
    CHECK(r.rc == 0 && r.cfg.demo && r.cfg.n_nodes == 2);
    run_free(&r);
}

/* ---- errors name their key and source ---- */

static void test_errors(void)
{
    const char *f;
    EXPECT_ERROR(NONE, NONE,
                 "config: nodes: no nodes configured (use --node URL, SOLLOL_NODES=URL[,URL...], "
                 "\"nodes\" in the config file, or --demo");

    /* The example from the brief, exactly. */
    f = tmp_file("{\"nodes\": [{\"url\": \"http://10.0.0.5:11434\"}, {\"url\": "
                 "\"http://10.0.0.6:99999\"}]}");
    struct run r;
    run_cfg(&r, ARGS("--config", f), NONE);
    char want[256];
    snprintf(want, sizeof want, "config: nodes[1].url: invalid port '99999' (file %s)", f);
    CHECK_STR(r.err, want);
    CHECK(r.rc == -1);
    run_free(&r);

    /* Command line. */
    EXPECT_ERROR(ARGS("--bogus"), NONE, "config: unknown flag '--bogus' (see --help)");
    EXPECT_ERROR(ARGS("--bogus=1"), NONE, "config: unknown flag '--bogus'");
    EXPECT_ERROR(ARGS("--demo", "stray"), NONE, "config: unexpected argument 'stray'");
    EXPECT_ERROR(ARGS("-x"), NONE, "config: unexpected argument '-x'");
    EXPECT_ERROR(ARGS("--"), NONE, "config: unexpected argument '--'");
    EXPECT_ERROR(ARGS("--demo", "--listen"), NONE, "config: flag --listen needs a value");
    EXPECT_ERROR(ARGS("--listen", "--demo"), NONE, "config: flag --listen needs a value");
    EXPECT_ERROR(ARGS("--version=2"), NONE, "config: flag --version does not take a value");
    EXPECT_ERROR(ARGS("--node", "x:99999"), NONE,
                 "config: nodes[0].url: invalid port '99999' (flag --node)");
    EXPECT_ERROR(ARGS("--node", "h", "--node", "bad name=http://x"), NONE,
                 "config: nodes[1].name: invalid name 'bad name'", "(flag --node)");
    EXPECT_ERROR(ARGS("--node", "=http://x"), NONE,
                 "config: nodes[0].name: name must be 1 to 64 characters (flag --node)");
    EXPECT_ERROR(ARGS("--node", "a="), NONE, "config: nodes[0].url: empty URL (flag --node)");
    EXPECT_ERROR(ARGS("--node", "http://:80"), NONE,
                 "config: nodes[0].url: missing host in 'http://:80' (flag --node)");
    EXPECT_ERROR(ARGS("--node", "ftp://h"), NONE,
                 "config: nodes[0].url: unsupported scheme 'ftp' (use http:// or https://) (flag "
                 "--node)");

    /* Environment. */
    EXPECT_ERROR(NONE, ARGS("SOLLOL_NODES=a,b=ftp://x"),
                 "config: nodes[1].url: unsupported scheme 'ftp'", "(env SOLLOL_NODES)");
    EXPECT_ERROR(NONE, ARGS("SOLLOL_NODES=a,a"),
                 "config: nodes[1].url: 'http://a:11434' is the same node as nodes[0] (env "
                 "SOLLOL_NODES)");
    EXPECT_ERROR(NONE, ARGS("SOLLOL_NODES=x=a,x=b"),
                 "config: nodes[1].name: duplicate node name 'x' (also nodes[0]) (env "
                 "SOLLOL_NODES)");
    EXPECT_ERROR(NONE, ARGS("SOLLOL_CONFIG=/nonexistent/sollol.json"),
                 "config: cannot open config file '/nonexistent/sollol.json': No such file",
                 "(env SOLLOL_CONFIG)");
    EXPECT_ERROR(ARGS("--config", "/nonexistent/x.json"), NONE,
                 "config: cannot open config file '/nonexistent/x.json'", "(flag --config)");
    EXPECT_ERROR(ARGS("--config="), NONE, "config: empty config file path (flag --config)");

    /* File: types, unknown keys, duplicates, syntax. */
    static const struct {
        int line;
        const char *json, *msg;
    } file_cases[] = {
        {__LINE__, "{\"listen\": 5}", "config: listen: expected a string, got a number"},
        {__LINE__, "{\"timeouts\": 5}", "config: timeouts: expected an object, got a number"},
        {__LINE__, "{\"timeouts\": {\"conect_ms\": 5}}",
         "config: unknown key 'timeouts.conect_ms' (did you mean 'timeouts.connect_ms'?)"},
        {__LINE__, "{\"lissten\": \"x\"}",
         "config: unknown key 'lissten' (did you mean 'listen'?)"},
        {__LINE__, "{\"frobnicate\": 1}", "config: unknown key 'frobnicate'"},
        {__LINE__, "{\"timeouts.connect_ms\": 5}",
         "config: unknown key 'timeouts.connect_ms' (nested keys are written as objects"},
        {__LINE__, "{\"demo\": true, \"demo\": false}", "config: demo: key is given twice"},
        {__LINE__, "{\"nodes\": {}}",
         "config: nodes: expected an array of node objects, got an object"},
        {__LINE__, "{\"nodes\": [5]}",
         "config: nodes[0]: expected an object (or a URL string), got a number"},
        {__LINE__, "{\"nodes\": [{\"name\": \"a\"}]}",
         "config: nodes[0].url: missing (every node needs a url)"},
        {__LINE__, "{\"nodes\": [\"h\", {\"url\": \"g\", \"wieght\": 2}]}",
         "config: nodes[1]: unknown key 'wieght' (did you mean 'weight'?)"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"url\": \"g\"}]}",
         "config: nodes[0].url: key is given twice"},
        {__LINE__, "{\"nodes\": [{\"url\": \" '' \"}]}", "config: nodes[0].url: empty URL"},
        {__LINE__, "{\"nodes\": [{\"url\": 5}]}",
         "config: nodes[0].url: expected a string, got a number"},
        {__LINE__, "{\"nodes\": [{\"url\": \"a\"}, {\"url\": \"b\", \"name\": \"a:11434\"}]}",
         "config: nodes[1].name: duplicate node name 'a:11434' (also nodes[0])"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"max_concurrent\": 0}]}",
         "config: nodes[0].max_concurrent: must be between 1 and 1024, got 0"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"weight\": \"x\"}]}",
         "config: nodes[0].weight: expected a number, got a string"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"weight\": 0}]}",
         "config: nodes[0].weight: must be between 0.001 and 1000, got 0"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": []}]}",
         "config: nodes[0].headers: expected an object of header names to string values, got an "
         "array"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": {\"Host\": \"x\"}}]}",
         "config: nodes[0].headers: header 'Host' is set by sollold and cannot be overridden"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": {\"Bad Name\": \"x\"}}]}",
         "config: nodes[0].headers: invalid header name 'Bad Name'"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": {\"X-A\": 5}}]}",
         "config: nodes[0].headers: header 'X-A': expected a string, got a number"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": {\"X-A\": \"a\\nb\"}}]}",
         "config: nodes[0].headers: header 'X-A': control character in value"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"headers\": {\"X-A\": \"1\", \"x-a\": \"2\"}}]}",
         "config: nodes[0].headers: header 'x-a' is given twice"},
        {__LINE__, "{\"nodes\": [{\"url\": \"h\", \"name\": \"\"}]}",
         "config: nodes[0].name: name must be 1 to 64 characters"},
        {__LINE__, "{\n  \"demo\": true,\n  oops\n}",
         "config: JSON syntax error at line 3, column "}, /* cJSON's column is approximate */
        {__LINE__, "{\"listen\": ",
         "config: JSON syntax error at line 1, column 12 (unexpected "
         "end of file)"},
        {__LINE__, "{\"demo\": true} x", "config: JSON syntax error at line 1, column 16 near 'x'"},
        {__LINE__, "", "config: JSON syntax error at line 1, column 1"},
        {__LINE__, "[1]", "config: the top level must be a JSON object, got an array"},
    };
    f = tmp_file("{\"nodes\": []}");
    EXPECT_ERROR(ARGS("--config", f), NONE, "config: nodes: no nodes configured");
    for (size_t i = 0; i < sizeof file_cases / sizeof file_cases[0]; i++) {
        f = tmp_file(file_cases[i].json);
        expect_error_at(file_cases[i].line, ARGS("--config", f), NONE, file_cases[i].msg,
                        file_src(f), NULL);
    }
}

/* ---- headers ---- */

static void test_headers(void)
{
    const char *f = tmp_file("{\"nodes\": [{\"url\": \"https://h/ollama\", \"name\": \"h\", "
                             "\"headers\": {\"Authorization\": \"Bearer s3cret\", \"X-Trace\": "
                             "\"on\"}, \"max_concurrent\": 2, \"weight\": 2.5}]}");
    struct run r;
    run_cfg(&r, ARGS("--config", f), NONE);
    CHECK(r.rc == 0);
    if (r.rc == 0) {
        struct sol_node_conf *n = &r.cfg.nodes[0];
        CHECK_NUM(n->n_headers, 2);
        CHECK_STR(n->header_lines[0], "Authorization: Bearer s3cret");
        CHECK_STR(n->header_lines[1], "X-Trace: on");
        CHECK(n->header_lines[2] == NULL);
        CHECK_NUM(n->max_concurrent, 2);
        CHECK(n->weight == 2.5);
        CHECK_STR(n->base_url, "https://h:443/ollama");
    }
    run_free(&r);
}

/* ---- actions: --help, --version, --check-config, --print-config ---- */

static void test_actions(void)
{
    struct run r;
    run_cfg(&r, ARGS("--help"), NONE);
    CHECK(r.rc == 0);
    CHECK(r.action == SOL_CONFIG_EXIT_OK);
    CHECK_HAS(r.out, "Usage: sollold [OPTIONS]");
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        char want[96];
        if (k->flag) {
            snprintf(want, sizeof want, "  --%s", k->flag);
            CHECK_HAS(r.out, want);
            CHECK_HAS(r.out, k->doc);
        }
        if (k->env)
            CHECK_HAS(r.out, k->env);
        if (k->env_fallback)
            CHECK_HAS(r.out, k->env_fallback);
    }
    CHECK_HAS(r.out, "--node [NAME=]URL");
    CHECK_HAS(r.out, "--log-level error|warn|info|debug");
    CHECK_HAS(r.out, "--demo[=true|false]");
    CHECK_HAS(r.out, "(default 5m, env SOLLOL_FIRST_BYTE_TIMEOUT)");
    CHECK_HAS(r.out, "(repeatable, env SOLLOL_NODES)");
    CHECK_HAS(r.out, "(default 3, range 1..8, env SOLLOL_DEMO_NODES)");
    CHECK_HAS(r.out, "env SOLLOL_LISTEN (fallback OLLAMA_HOST)");
    CHECK(r.cfg.listen == NULL && r.cfg.n_nodes == 0);
    run_free(&r);

    /* -h, and help wins over values that would not validate. */
    run_cfg(&r, ARGS("--listen", "bad:99999", "-h"), NONE);
    CHECK(r.rc == 0 && r.action == SOL_CONFIG_EXIT_OK);
    CHECK_HAS(r.out, "Usage:");
    run_free(&r);
    EXPECT_ERROR(ARGS("--help", "--bogus"), NONE, "unknown flag '--bogus'");

    run_cfg(&r, ARGS("--version"), NONE);
    CHECK(r.rc == 0 && r.action == SOL_CONFIG_EXIT_OK);
    CHECK_STR(r.out, "sollold " SOLLOL_VERSION "\n");
    run_free(&r);
    {
        char *argv[] = {(char *)"/usr/local/bin/sollold", (char *)"--version", NULL};
        struct sol_config cfg;
        enum sol_config_action act;
        char err[128], *out = NULL;
        size_t outlen = 0;
        FILE *m = open_memstream(&out, &outlen);
        CHECK(sol_config_from_args(&cfg, 2, argv, NULL, &act, m, err, sizeof err) == 0);
        fclose(m);
        CHECK_STR(out, "sollold " SOLLOL_VERSION "\n");
        free(out);
        sol_config_free(&cfg);
    }

    run_cfg(&r, ARGS("--check-config", "--node", "a=10.0.0.1", "--node", "10.0.0.2"), NONE);
    CHECK(r.rc == 0 && r.action == SOL_CONFIG_EXIT_OK);
    CHECK_STR(r.out, "configuration OK: listen 127.0.0.1:11434, 2 nodes\n");
    CHECK_NUM(r.cfg.n_nodes, 2); /* the config stays available */
    run_free(&r);
    run_cfg(&r, ARGS("--check-config", "--demo", "--listen", "[::1]:0"), NONE);
    CHECK_STR(r.out, "configuration OK: listen [::1]:0, 0 nodes, demo mode\n");
    run_free(&r);
    EXPECT_ERROR(ARGS("--check-config"), NONE, "config: nodes: no nodes configured");
    EXPECT_ERROR(ARGS("--check-config", "--demo", "--idle-timeout", "x"), NONE,
                 "config: timeouts.idle_ms");

    /* --print-config: valid JSON in the file format, secrets redacted,
     * and feeding it back gives the same configuration. */
    const char *f = tmp_file(
        "{\"listen\": \":0\", \"max_body_bytes\": \"1MiB\", \"log_format\": \"json\", "
        "\"nodes\": [{\"url\": \"[::1]:8080/p/\", \"name\": \"six\", \"max_concurrent\": 7, "
        "\"weight\": 0.5, \"headers\": {\"Authorization\": \"Bearer s3cret\", \"X-Api-Key\": "
        "\"k\", \"X-Trace\": \"on\"}}, \"10.0.0.9\"]}");
    run_cfg(&r, ARGS("--print-config", "--config", f, "--idle-timeout", "7s"), NONE);
    CHECK(r.rc == 0 && r.action == SOL_CONFIG_EXIT_OK);
    CHECK(r.out && strstr(r.out, "s3cret") == NULL);
    cJSON *doc = cJSON_Parse(r.out ? r.out : "");
    CHECK(doc != NULL);
    if (doc) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(doc, "timeouts");
        CHECK_NUM(cJSON_GetObjectItemCaseSensitive(t, "idle_ms")->valuedouble, 7000);
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(doc, "listen")->valuestring, ":0");
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(doc, "log_level")->valuestring, "info");
        CHECK_NUM(cJSON_GetObjectItemCaseSensitive(doc, "max_body_bytes")->valuedouble, 1048576);
        const cJSON *n0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "nodes"), 0);
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(n0, "url")->valuestring, "http://[::1]:8080/p");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(n0, "headers");
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(h, "Authorization")->valuestring, "<redacted>");
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(h, "X-Api-Key")->valuestring, "<redacted>");
        CHECK_STR(cJSON_GetObjectItemCaseSensitive(h, "X-Trace")->valuestring, "on");
        cJSON_Delete(doc);
    }
    const char *g = tmp_file(r.out ? r.out : "");
    struct run back;
    run_cfg(&back, ARGS("--config", g), NONE);
    CHECK(back.rc == 0);
    if (back.rc == 0 && r.rc == 0) {
        struct sol_config *a = &r.cfg, *b = &back.cfg;
        CHECK_STR(b->listen, a->listen);
        CHECK_NUM(b->listen_port, 0);
        CHECK_NUM(b->max_body_bytes, a->max_body_bytes);
        CHECK_NUM(b->idle_timeout_ms, 7000);
        CHECK_NUM(b->connect_timeout_ms, a->connect_timeout_ms);
        CHECK_NUM(b->first_byte_timeout_ms, a->first_byte_timeout_ms);
        CHECK_NUM(b->log_level, a->log_level);
        CHECK_NUM(b->log_format_json, 1);
        CHECK_NUM(b->demo, a->demo);
        CHECK_NUM(b->demo_nodes, a->demo_nodes);
        CHECK_STR(b->sim_path, a->sim_path);
        CHECK_NUM(b->n_nodes, 2);
        for (size_t i = 0; i < 2 && b->n_nodes == 2; i++) {
            CHECK_STR(b->nodes[i].name, a->nodes[i].name);
            CHECK_STR(b->nodes[i].base_url, a->nodes[i].base_url);
            CHECK_STR(b->nodes[i].host_header, a->nodes[i].host_header);
            CHECK_NUM(b->nodes[i].max_concurrent, a->nodes[i].max_concurrent);
            CHECK(b->nodes[i].weight == a->nodes[i].weight);
            CHECK_NUM(b->nodes[i].n_headers, a->nodes[i].n_headers);
        }
    }
    run_free(&back);
    run_free(&r);
}

/* ---- sol_config_defaults, sol_config_load_file ---- */

static void test_defaults_and_load_file(void)
{
    struct sol_config cfg;
    char err[512];
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0);
    CHECK(cfg.config_path == NULL);
    CHECK_STR(cfg.listen, "127.0.0.1:11434");
    CHECK_STR(cfg.listen_host, "127.0.0.1");
    CHECK_NUM(cfg.listen_port, 11434);
    CHECK_NUM(cfg.n_nodes, 0);
    CHECK(cfg.nodes == NULL);
    CHECK_NUM(cfg.max_body_bytes, 64ULL << 20);
    CHECK_NUM(cfg.connect_timeout_ms, 3000);
    CHECK_NUM(cfg.first_byte_timeout_ms, 300000);
    CHECK_NUM(cfg.idle_timeout_ms, 120000);
    CHECK_NUM(cfg.log_level, SOL_LOG_INFO);
    CHECK_NUM(cfg.log_format_json, 0);
    CHECK_NUM(cfg.demo, 0);
    CHECK_NUM(cfg.demo_nodes, 3);
    CHECK_STR(cfg.sim_path, "");
    CHECK_NUM(cfg.max_body_total_bytes, 256ULL << 20);
    CHECK_NUM(cfg.max_body_bytes_per_client, 128ULL << 20);
    CHECK_NUM(cfg.min_body_bytes_per_s, 1024);
    CHECK_NUM(cfg.body_grace_ms, 10000);
    CHECK_STR(cfg.auth_failures_per_client, "30/m");

    const char *f = tmp_file("{\"log_level\": \"debug\", \"nodes\": [\"a=10.0.0.1\"]}");
    CHECK(sol_config_load_file(&cfg, f, err, sizeof err) == 0);
    CHECK_STR(cfg.config_path, f);
    CHECK_NUM(cfg.log_level, SOL_LOG_DEBUG);
    CHECK_NUM(cfg.n_nodes, 1);
    CHECK_NUM(cfg.connect_timeout_ms, 3000);

    /* Transactional: a failing file leaves everything as it was, even the
     * keys it set before the error. */
    const char *bad = tmp_file("{\"log_level\": \"warn\", \"nodes\": [\"b=10.0.0.2\"], "
                               "\"demo_nodes\": 99}");
    CHECK(sol_config_load_file(&cfg, bad, err, sizeof err) == -1);
    char want[256];
    snprintf(want, sizeof want, "config: demo_nodes: must be between 1 and 8, got 99 (file %s)",
             bad);
    CHECK_STR(err, want);
    CHECK_STR(cfg.config_path, f);
    CHECK_NUM(cfg.log_level, SOL_LOG_DEBUG);
    CHECK_NUM(cfg.n_nodes, 1);
    if (cfg.n_nodes == 1)
        CHECK_STR(cfg.nodes[0].name, "a");
    CHECK(sol_config_load_file(&cfg, "/nonexistent/y.json", err, sizeof err) == -1);
    CHECK_HAS(err, "config: cannot open config file '/nonexistent/y.json'");
    /* #14 item 13: a FIFO (reloads run on the loop) neither blocks nor is read;
     * nor is a directory. */
    char fifo[] = "/tmp/sollol-test-cfg-fifo-XXXXXX";
    int ffd = mkstemp(fifo);
    if (ffd >= 0) {
        close(ffd);
        unlink(fifo);
        CHECK(mkfifo(fifo, 0600) == 0);
        CHECK(sol_config_load_file(&cfg, fifo, err, sizeof err) == -1);
        CHECK_HAS(err, "is not a regular file");
        unlink(fifo);
    }
    CHECK(sol_config_load_file(&cfg, "/tmp", err, sizeof err) == -1);
    CHECK_HAS(err, "is not a regular file");
    CHECK_NUM(cfg.log_level, SOL_LOG_DEBUG);

    /* A second file on top of the first; an empty node list is allowed here. */
    const char *f2 = tmp_file("{\"nodes\": [], \"timeouts\": {\"idle_ms\": \"1s\"}}");
    CHECK(sol_config_load_file(&cfg, f2, err, sizeof err) == 0);
    CHECK_NUM(cfg.n_nodes, 0);
    CHECK_NUM(cfg.idle_timeout_ms, 1000);
    CHECK_NUM(cfg.log_level, SOL_LOG_DEBUG);
    sol_config_free(&cfg);
    CHECK(cfg.listen == NULL && cfg.nodes == NULL);
    sol_config_free(&cfg); /* twice is harmless */

    /* The JSON printer on a hand-built config. */
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0);
    char *json = sol_config_to_json(&cfg);
    CHECK(json != NULL);
    CHECK_HAS(json, "\"nodes\":\t[]");
    CHECK_HAS(json, "\"first_byte_ms\":\t300000");
    free(json);
    sol_config_free(&cfg);
}

/* ---- sol_config_add_node ---- */

static void test_add_node(void)
{
    struct run r;
    run_cfg(&r, ARGS("--demo"), NONE);
    CHECK(r.rc == 0 && r.cfg.n_nodes == 0);
    char err[256];
    CHECK(sol_config_add_node(&r.cfg, "sim-1", "http://127.0.0.1:40001", err, sizeof err) == 0);
    CHECK(sol_config_add_node(&r.cfg, NULL, "127.0.0.1:40002", err, sizeof err) == 0);
    CHECK_NUM(r.cfg.n_nodes, 2);
    if (r.cfg.n_nodes == 2) {
        CHECK_STR(r.cfg.nodes[0].name, "sim-1");
        CHECK_STR(r.cfg.nodes[0].base_url, "http://127.0.0.1:40001");
        CHECK_NUM(r.cfg.nodes[0].max_concurrent, 4);
        CHECK_STR(r.cfg.nodes[1].name, "127.0.0.1:40002");
        CHECK_STR(r.cfg.nodes[1].host_header, "127.0.0.1:40002");
    }
    CHECK(sol_config_add_node(&r.cfg, "sim-1", "127.0.0.1:40003", err, sizeof err) == -1);
    CHECK_STR(err, "config: nodes[2].name: duplicate node name 'sim-1' (also nodes[0])");
    CHECK(sol_config_add_node(&r.cfg, "sim-3", "http://127.0.0.1:40001/", err, sizeof err) == -1);
    CHECK_HAS(err, "config: nodes[2].url: 'http://127.0.0.1:40001' is the same node as nodes[0]");
    CHECK(sol_config_add_node(&r.cfg, "sim-3", "127.0.0.1:99999", err, sizeof err) == -1);
    CHECK_STR(err, "config: nodes[2].url: invalid port '99999'");
    CHECK(sol_config_add_node(&r.cfg, "bad name", "127.0.0.1:1", err, sizeof err) == -1);
    CHECK_HAS(err, "config: nodes[2].name: invalid name 'bad name'");
    CHECK(sol_config_add_node(&r.cfg, "x", NULL, err, sizeof err) == -1);
    CHECK_STR(err, "config: nodes[2].url: empty URL");
    CHECK_NUM(r.cfg.n_nodes, 2);
    CHECK(sol_config_add_node(&r.cfg, "sim-3", "[::1]:3", err, sizeof err) == 0);
    CHECK_NUM(r.cfg.n_nodes, 3);
    run_free(&r);
}

/* ---- the table itself ---- */

static void test_table(void)
{
    for (size_t i = 0; i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        const char *id = k->key ? k->key : k->flag;
        check_at(id != NULL, __FILE__, __LINE__, "row %zu has a key or a flag", i);
        if (!id)
            continue;
        check_at(k->doc && *k->doc, __FILE__, __LINE__, "%s has a doc line", id);
        check_at(k->flag != NULL, __FILE__, __LINE__, "%s has a flag", id);
        if (k->key && k->type != SOL_CONF_NODES)
            check_at(k->def != NULL, __FILE__, __LINE__, "%s has a default", id);
        if (k->key)
            check_at(k->env != NULL, __FILE__, __LINE__, "%s has an environment variable", id);
        if (k->type == SOL_CONF_INT || k->type == SOL_CONF_DURATION_MS ||
            k->type == SOL_CONF_SIZE || k->type == SOL_CONF_DOUBLE)
            check_at(k->min <= k->max && k->min >= 0, __FILE__, __LINE__, "%s has sane bounds", id);
        if (k->type == SOL_CONF_INT)
            check_at(k->max <= INT_MAX, __FILE__, __LINE__, "%s fits an int", id);
        if (k->type == SOL_CONF_DURATION_MS)
            check_at(k->max <= UINT_MAX, __FILE__, __LINE__, "%s fits an unsigned", id);
        if (k->type == SOL_CONF_ENUM) {
            int found = 0;
            for (int c = 0; k->choices && k->choices[c]; c++)
                found |= k->def && strcmp(k->def, k->choices[c]) == 0;
            check_at(found, __FILE__, __LINE__, "%s: default is one of the choices", id);
        }
        for (size_t j = 0; j < i; j++) {
            const struct sol_config_key *o = &sol_config_keys[j];
            check_at(!(k->key && o->key && strcmp(k->key, o->key) == 0), __FILE__, __LINE__,
                     "key %s is unique", id);
            check_at(!(k->flag && o->flag && strcmp(k->flag, o->flag) == 0), __FILE__, __LINE__,
                     "flag --%s is unique", k->flag);
            check_at(!(k->env && o->env && strcmp(k->env, o->env) == 0), __FILE__, __LINE__,
                     "env %s is unique", k->env);
        }
    }
    for (size_t i = 0; i < sol_config_n_node_keys; i++) {
        const struct sol_config_key *k = &sol_config_node_keys[i];
        check_at(k->key && k->doc && !k->env && !k->flag, __FILE__, __LINE__,
                 "node key %zu is file-only and documented", i);
    }
}

/* ---- docs/configuration.md and conf/sollol.json cover every key ---- */

/* Nonzero when text has "`--flag`" or "`--flag " (a flag with its metavar). */
static int mentions_flag(const char *text, const char *flag)
{
    char want[96];
    snprintf(want, sizeof want, "`--%s", flag);
    for (const char *p = text; (p = strstr(p, want)); p++)
        if (p[strlen(want)] == '`' || p[strlen(want)] == ' ' || p[strlen(want)] == '=')
            return 1;
    return 0;
}

/* The docs line that starts the table row for `name`, or NULL. */
static const char *doc_row(const char *docs, const char *name, char *line, size_t linelen)
{
    char want[128];
    snprintf(want, sizeof want, "| `%s` |", name);
    for (const char *p = docs; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, want, strlen(want)) == 0) {
            snprintf(line, linelen, "%.*s", (int)len, p);
            return line;
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

static const cJSON *json_path(const cJSON *root, const char *dotted)
{
    char path[128];
    snprintf(path, sizeof path, "%s", dotted);
    const cJSON *cur = root;
    for (char *save = NULL, *seg = strtok_r(path, ".", &save); cur && seg;
         seg = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, seg);
    return cur;
}

static void test_docs_and_example(const char *root)
{
    char path[1024], line[2048], want[160];
    snprintf(path, sizeof path, "%s/docs/configuration.md", root);
    char *docs = read_all(path);
    check_at(docs != NULL, __FILE__, __LINE__, "%s is readable", path);
    snprintf(path, sizeof path, "%s/conf/sollol.json", root);
    char *example = read_all(path);
    check_at(example != NULL, __FILE__, __LINE__, "%s is readable", path);

    /* Docs: a table row per key naming its env, flag and default. */
    for (size_t i = 0; docs && i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (!k->key) {
            check_at(mentions_flag(docs, k->flag), __FILE__, __LINE__, "docs mention `--%s`",
                     k->flag);
            if (k->env) {
                snprintf(want, sizeof want, "`%s`", k->env);
                check_at(strstr(docs, want) != NULL, __FILE__, __LINE__, "docs mention %s", want);
            }
            continue;
        }
        const char *row = doc_row(docs, k->key, line, sizeof line);
        check_at(row != NULL, __FILE__, __LINE__, "docs have a table row \"| `%s` |\"", k->key);
        if (!row)
            continue;
        const char *parts[] = {k->env, k->env_fallback, k->def && *k->def ? k->def : NULL};
        for (size_t j = 0; j < 3; j++) {
            if (!parts[j])
                continue;
            snprintf(want, sizeof want, "`%s`", parts[j]);
            check_at(strstr(row, want) != NULL, __FILE__, __LINE__, "docs row of %s has %s", k->key,
                     want);
        }
        if (k->flag)
            check_at(mentions_flag(row, k->flag), __FILE__, __LINE__, "docs row of %s has `--%s`",
                     k->key, k->flag);
    }
    for (size_t i = 0; docs && i < sol_config_n_node_keys; i++) {
        const struct sol_config_key *k = &sol_config_node_keys[i];
        char name[64];
        snprintf(name, sizeof name, "nodes[].%s", k->key);
        const char *row = doc_row(docs, name, line, sizeof line);
        check_at(row != NULL, __FILE__, __LINE__, "docs have a table row \"| `%s` |\"", name);
        if (row && k->def) {
            snprintf(want, sizeof want, "`%s`", k->def);
            check_at(strstr(row, want) != NULL, __FILE__, __LINE__, "docs row of %s has %s", name,
                     want);
        }
    }

    /* Example: every key present; every scalar at its default. */
    cJSON *ex = example ? cJSON_Parse(example) : NULL;
    check_at(ex != NULL, __FILE__, __LINE__, "conf/sollol.json is valid JSON");
    for (size_t i = 0; ex && i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (k->key)
            check_at(json_path(ex, k->key) != NULL, __FILE__, __LINE__,
                     "conf/sollol.json has \"%s\"", k->key);
    }
    const cJSON *nodes = ex ? cJSON_GetObjectItemCaseSensitive(ex, "nodes") : NULL;
    for (size_t i = 0; ex && i < sol_config_n_node_keys; i++) {
        int found = 0;
        const cJSON *n;
        cJSON_ArrayForEach(n, nodes) found |=
            cJSON_GetObjectItemCaseSensitive(n, sol_config_node_keys[i].key) != NULL;
        check_at(found, __FILE__, __LINE__, "conf/sollol.json has a node with \"%s\"",
                 sol_config_node_keys[i].key);
    }
    cJSON_Delete(ex);

    struct sol_config def, cfg;
    char err[512];
    CHECK(sol_config_defaults(&def, err, sizeof err) == 0);
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0);
    int loaded = sol_config_load_file(&cfg, path, err, sizeof err) == 0;
    check_at(loaded, __FILE__, __LINE__, "conf/sollol.json loads (%s)", loaded ? "" : err);
    for (size_t i = 0; loaded && i < sol_config_n_keys; i++) {
        const struct sol_config_key *k = &sol_config_keys[i];
        if (!k->key || k->type == SOL_CONF_NODES)
            continue;
        const char *a = (const char *)&cfg + k->offset, *b = (const char *)&def + k->offset;
        int same;
        switch (k->type) {
        case SOL_CONF_STRING:
        case SOL_CONF_JSON:
            same = strcmp(*(char *const *)a, *(char *const *)b) == 0;
            break;
        case SOL_CONF_DURATION_MS:
            same = *(const unsigned *)a == *(const unsigned *)b;
            break;
        case SOL_CONF_SIZE:
            same = *(const unsigned long long *)a == *(const unsigned long long *)b;
            break;
        case SOL_CONF_DOUBLE:
            same = *(const double *)a == *(const double *)b;
            break;
        default:
            same = *(const int *)a == *(const int *)b;
            break;
        }
        check_at(same, __FILE__, __LINE__, "conf/sollol.json shows the default of %s", k->key);
    }
    /* The first example node shows the node defaults. */
    check_at(loaded && cfg.n_nodes > 0, __FILE__, __LINE__, "conf/sollol.json has nodes");
    if (loaded && cfg.n_nodes > 0) {
        struct sol_node_conf *n = &cfg.nodes[0];
        CHECK_NUM(n->max_concurrent, 4);
        CHECK(n->weight == 1.0);
    }
    sol_config_free(&cfg);
    sol_config_free(&def);

    /* And it passes --check-config as a whole. */
    struct run r;
    run_cfg(&r, ARGS("--check-config", "--config", path), NONE);
    check_at(r.rc == 0, __FILE__, __LINE__, "--check-config on the example (%s)", r.err);
    run_free(&r);

    free(docs);
    free(example);
}

int main(int argc, char **argv)
{
#ifdef SOLLOL_SOURCE_DIR
    const char *root = argc > 1 ? argv[1] : SOLLOL_SOURCE_DIR;
#else
    const char *root = argc > 1 ? argv[1] : ".";
#endif
    test_parse_host();
    test_node_urls();
    test_durations();
    test_sizes();
    test_scalars();
    test_listen();
    test_precedence();
    test_errors();
    test_headers();
    test_actions();
    test_defaults_and_load_file();
    test_add_node();
    test_table();
    test_docs_and_example(root);
    tmp_cleanup();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
