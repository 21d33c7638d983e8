/*
 * test_discovery.c - discovery's target syntax and size cap, and the
 * config keys that carry it (a list in the file, text elsewhere).
 */
#include "check.h"
#include "base/config.h"
#include "nodes/discovery.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint32_t ip(unsigned a, unsigned b, unsigned c, unsigned d)
{
    return (uint32_t)a << 24 | b << 16 | c << 8 | d;
}

static void test_parse(void)
{
    struct sol_discovery_targets t;
    char why[256];
    CHECK(sol_discovery_parse("192.168.1.0/24", 11434, &t, why, sizeof why) == 0, "%s", why);
    CHECK(t.n == 1 && t.ranges[0].first == ip(192, 168, 1, 1) && t.ranges[0].count == 254 &&
              t.ranges[0].port == 11434 && t.hosts == 254,
          "/24 = .1 to .254");
    sol_discovery_targets_free(&t);

    CHECK(sol_discovery_parse(" 10.0.0.7:11500 , 127.0.0.0/30:40000,127.0.0.8/31", 11434, &t, why,
                              sizeof why) == 0,
          "%s", why);
    CHECK(t.n == 3, "3 entries, got %zu", t.n);
    CHECK(t.ranges[0].first == ip(10, 0, 0, 7) && t.ranges[0].count == 1 &&
              t.ranges[0].port == 11500,
          "single address with a port");
    CHECK(t.ranges[1].first == ip(127, 0, 0, 1) && t.ranges[1].count == 2 &&
              t.ranges[1].port == 40000,
          "/30 without network and broadcast");
    CHECK(t.ranges[2].first == ip(127, 0, 0, 8) && t.ranges[2].count == 2 &&
              t.ranges[2].port == 11434,
          "/31 whole");
    CHECK(t.hosts == 5, "hosts %u", t.hosts);
    sol_discovery_targets_free(&t);

    /* A host address with a prefix means its network. */
    CHECK(sol_discovery_parse("10.1.2.3/24", 1, &t, why, sizeof why) == 0 &&
              t.ranges[0].first == ip(10, 1, 2, 1),
          "network of 10.1.2.3/24");
    sol_discovery_targets_free(&t);

    CHECK(sol_discovery_parse("", 11434, &t, why, sizeof why) == 0 && t.n == 0, "empty");
    sol_discovery_targets_free(&t);
    CHECK(sol_discovery_parse(NULL, 11434, NULL, why, sizeof why) == 0, "NULL");
    CHECK(sol_discovery_parse(" , ,", 11434, NULL, why, sizeof why) == 0, "only separators");
    CHECK(sol_discovery_parse("10.0.0.0/20", 11434, NULL, why, sizeof why) == 0, "a /20 fits");

    static const struct {
        const char *text, *why;
    } bad[] = {
        {"10.0.0.0/8", "'10.0.0.0/8' holds 16777214 addresses; at most 4096"},
        {"0.0.0.0/0", "holds 4294967294 addresses"},
        {"10.0.0.0/19", "holds 8190 addresses"},
        {"10.0.0.0/20,10.1.0.0/29", "more than 4096 addresses together"},
        {"10.0.0.0/33", "invalid prefix length"},
        {"10.0.0.0/", "invalid prefix length"},
        {"10.0.0.1:0", "invalid port"},
        {"10.0.0.1:70000", "invalid port"},
        {"10.0.0.1:", "invalid port"},
        {"ollama.local", "not an IPv4 address"},
        {"::1", "IPv6 is not scanned"},
        {"[fd00::]/120", "IPv6 is not scanned"},
        {"10.0.0", "not an IPv4 address"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        why[0] = '\0';
        int rc = sol_discovery_parse(bad[i].text, 11434, &t, why, sizeof why);
        CHECK(rc < 0 && strstr(why, bad[i].why), "'%s': rc %d, why '%s'", bad[i].text, rc, why);
    }
}

static const char *tmp_config(const char *text)
{
    static char path[64];
    snprintf(path, sizeof path, "/tmp/sollol-disc-%ld.json", (long)getpid());
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_config_keys(void)
{
    char err[512];
    enum sol_config_action act;
    struct sol_config cfg;

    /* A list in the file, no static nodes: discovery is the only source. */
    const char *path =
        tmp_config("{\"discovery\": {\"cidrs\": [\"192.168.1.0/24\", \"10.0.0.5:11500\"], "
                   "\"interval_ms\": \"30s\", \"max_missed\": 5}}");
    char *argv1[] = {"sollold", "--config", (char *)path, NULL};
    memset(&cfg, 0, sizeof cfg);
    int rc = sol_config_from_args(&cfg, 3, argv1, NULL, &act, NULL, err, sizeof err);
    CHECK(rc == 0, "%s", err);
    CHECK(rc == 0 && strcmp(cfg.discovery_cidrs, "192.168.1.0/24,10.0.0.5:11500") == 0,
          "stored comma-separated: '%s'", rc == 0 ? cfg.discovery_cidrs : "");
    CHECK(cfg.discovery_interval_ms == 30000 && cfg.discovery_max_missed == 5 &&
              cfg.discovery_port == 11434 && cfg.discovery_concurrency == 32,
          "values and defaults");
    CHECK(cfg.shutdown_grace_ms == 30000, "grace default 30 s, got %u", cfg.shutdown_grace_ms);
    /* --print-config shows it in a form the file takes back. */
    char *json = sol_config_to_json(&cfg);
    CHECK(json && strstr(json, "192.168.1.0/24,10.0.0.5:11500"), "printed");
    free(json);
    sol_config_free(&cfg);

    /* Too large a range: a config error naming key and source. */
    path = tmp_config("{\"nodes\": [{\"url\": \"10.0.0.1\"}], \"discovery\": {\"cidrs\": "
                      "[\"10.0.0.0/8\"]}}");
    char *argv2[] = {"sollold", "--config", (char *)path, NULL};
    memset(&cfg, 0, sizeof cfg);
    rc = sol_config_from_args(&cfg, 3, argv2, NULL, &act, NULL, err, sizeof err);
    CHECK(rc < 0 && strstr(err, "config: discovery.cidrs: '10.0.0.0/8' holds") && strstr(err, path),
          "'%s'", err);
    sol_config_free(&cfg);

    /* Not strings in the list. */
    path = tmp_config("{\"nodes\": [{\"url\": \"10.0.0.1\"}], \"discovery\": {\"cidrs\": [1]}}");
    char *argv3[] = {"sollold", "--config", (char *)path, NULL};
    memset(&cfg, 0, sizeof cfg);
    rc = sol_config_from_args(&cfg, 3, argv3, NULL, &act, NULL, err, sizeof err);
    CHECK(rc < 0 && strstr(err, "discovery.cidrs") && strstr(err, "expected a string"), "'%s'",
          err);
    sol_config_free(&cfg);

    /* The environment and flags take text. */
    char *env[] = {"SOLLOL_DISCOVERY_CIDRS=127.0.0.0/29:5000", "SOLLOL_SHUTDOWN_GRACE=5s", NULL};
    char *argv4[] = {"sollold", "--discovery-port", "11500", NULL};
    memset(&cfg, 0, sizeof cfg);
    rc = sol_config_from_args(&cfg, 3, argv4, env, &act, NULL, err, sizeof err);
    CHECK(rc == 0 && strcmp(cfg.discovery_cidrs, "127.0.0.0/29:5000") == 0 &&
              cfg.discovery_port == 11500 && cfg.shutdown_grace_ms == 5000,
          "env and flags: %s", err);
    sol_config_free(&cfg);

    /* Neither nodes nor discovery: still an error. */
    char *argv5[] = {"sollold", NULL};
    memset(&cfg, 0, sizeof cfg);
    rc = sol_config_from_args(&cfg, 1, argv5, NULL, &act, NULL, err, sizeof err);
    CHECK(rc < 0 && strstr(err, "no nodes configured"), "'%s'", err);
    sol_config_free(&cfg);
    unlink(path);
}

int main(void)
{
    test_parse();
    test_config_keys();
    return check_summary();
}
