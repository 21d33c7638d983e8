/*
 * libFuzzer target: configuration from every outside source config.c reads
 * (a JSON file, environment variables, command-line flags), then the
 * --print-config rendering fed back as a file.
 *
 * Input: byte 0 picks the source:
 *  - 0: the rest is a config file (written to a private temporary file);
 *  - 1: the rest is the value of one environment variable, chosen by byte 1
 *       among the table's variables;
 *  - 2: the rest is argv: NUL-separated arguments after "sollold".
 * Checked beyond memory safety and leaks: failures return -1 with a
 * terminated "config: ..." message; a config that loads prints to JSON that
 * loads again and prints identically (apart from redacted secrets).
 */
#include "fuzz_util.h"

#include "base/config.h"

#include <string.h>
#include <unistd.h>

static char path[64];

static void remove_file(void)
{
    unlink(path);
}

static void write_file(const char *p, size_t n)
{
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/sollol-fuzz-config-%ld.json", (long)getpid());
        atexit(remove_file);
    }
    FILE *f = fopen(path, "wb");
    REQUIRE(f);
    REQUIRE(fwrite(p, 1, n, f) == n);
    REQUIRE(fclose(f) == 0);
}

static void check_err(const char *err, size_t len)
{
    REQUIRE(fuzz_terminated(err, len));
    REQUIRE(strncmp(err, "config: ", 8) == 0);
}

/* Prints cfg, loads the printout onto fresh defaults, prints again. */
static void round_trip(const struct sol_config *cfg)
{
    char *text = sol_config_to_json(cfg);
    REQUIRE(text);
    if (strstr(text, "<redacted>")) {
        free(text);
        return; /* secrets are not printed, so they cannot come back */
    }
    write_file(text, strlen(text));
    struct sol_config again;
    char err[512];
    REQUIRE(sol_config_defaults(&again, err, sizeof err) == 0);
    if (sol_config_load_file(&again, path, err, sizeof err) != 0) {
        fprintf(stderr, "printed config does not load: %s\n%s\n", err, text);
        abort();
    }
    char *text2 = sol_config_to_json(&again);
    REQUIRE(text2);
    /* config_path differs (the file just written); compare without it. */
    char *a = strstr(text, "\"config\""), *b = strstr(text2, "\"config\"");
    REQUIRE((a == NULL) == (b == NULL));
    if (!a)
        REQUIRE(strcmp(text, text2) == 0);
    free(text2);
    free(text);
    sol_config_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    char err[512];
    memset(err, 'x', sizeof err);
    struct sol_config cfg;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0: {
        REQUIRE(sol_config_defaults(&cfg, err, sizeof err) == 0);
        write_file(rest, n);
        if (sol_config_load_file(&cfg, path, err, sizeof err) != 0)
            check_err(err, sizeof err);
        else
            round_trip(&cfg);
        sol_config_free(&cfg);
        break;
    }
    case 1: {
        /* NAME=value for one of the table's variables (not SOLLOL_CONFIG,
         * which names a file: case 0 covers files). */
        size_t k = data[1] % sol_config_n_keys;
        const char *env = sol_config_keys[k].env;
        if (!env || strcmp(env, "SOLLOL_CONFIG") == 0)
            return 0;
        const char *value = rest + 1;
        size_t vlen = n - 1;
        if (memchr(value, '\0', vlen))
            return 0; /* an environment cannot hold one */
        char *entry = malloc(strlen(env) + 1 + vlen + 1);
        REQUIRE(entry);
        sprintf(entry, "%s=", env);
        memcpy(entry + strlen(env) + 1, value, vlen);
        entry[strlen(env) + 1 + vlen] = '\0';
        char *envp[] = {entry, NULL};
        char *argv[] = {"sollold", NULL};
        enum sol_config_action action;
        FILE *out = fopen("/dev/null", "w");
        REQUIRE(out);
        if (sol_config_from_args(&cfg, 1, argv, envp, &action, out, err, sizeof err) != 0)
            check_err(err, sizeof err);
        else
            round_trip(&cfg);
        sol_config_free(&cfg);
        fclose(out);
        free(entry);
        break;
    }
    case 2: {
        char *copy = malloc(n + 1);
        REQUIRE(copy);
        memcpy(copy, rest, n);
        copy[n] = '\0';
        char *argv[34] = {"sollold"};
        int argc = 1;
        for (char *a = copy; a <= copy + n && argc < 33; a += strlen(a) + 1)
            argv[argc++] = a;
        argv[argc] = NULL;
        enum sol_config_action action;
        FILE *out = fopen("/dev/null", "w");
        REQUIRE(out);
        if (sol_config_from_args(&cfg, argc, argv, NULL, &action, out, err, sizeof err) != 0)
            check_err(err, sizeof err);
        else if (action == SOL_CONFIG_RUN)
            round_trip(&cfg);
        sol_config_free(&cfg);
        fclose(out);
        free(copy);
        break;
    }
    }
    return 0;
}
