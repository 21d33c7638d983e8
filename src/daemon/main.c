/*
 * main.c - sollold's entry point: configuration, then one libuv loop that
 * runs until SIGINT/SIGTERM.
 */
#include "base/config.h"
#include "daemon.h"
#include "demo.h"
#include "sollol/log.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

struct app {
    uv_loop_t *loop;
    struct sol_daemon daemon;
    struct sol_config *cfg; /* until the daemon takes it */
    struct sol_demo *demo;
    int exit_code;
    int argc; /* kept for reloads: flags stay above the re-read file */
    char **argv;
};

static struct app app;

static void on_demo_stopped(struct sol_demo *demo, void *ud)
{
    (void)demo;
    (void)ud;
}

static void on_daemon_stopped(struct sol_daemon *d)
{
    (void)d;
    if (app.demo)
        sol_demo_stop(app.demo, on_demo_stopped);
}

/* SIGHUP: the same sources as at start (argv, the environment now, the
 * file named there), merged the same way. */
static int load_config(struct sol_config *out, char *err, size_t errlen, void *ud)
{
    (void)ud;
    enum sol_config_action action;
    if (sol_config_from_args(out, app.argc, app.argv, environ, &action, stdout, err, errlen) < 0)
        return -1;
    if (action != SOL_CONFIG_RUN) {
        snprintf(err, errlen, "the command line asks for an action, not a configuration");
        return -1;
    }
    return 0;
}

static void start_daemon(void)
{
    char err[512];
    struct sol_config *cfg = app.cfg;
    app.cfg = NULL;
    if (sol_daemon_start(&app.daemon, app.loop, cfg, err, sizeof err) < 0) {
        fprintf(stderr, "sollold: %s\n", err);
        app.exit_code = 1;
        if (app.demo)
            sol_demo_stop(app.demo, on_demo_stopped);
        return;
    }
    app.daemon.on_stopped = on_daemon_stopped;
    app.daemon.load_config = load_config;
}

static void on_demo_ready(struct sol_demo *demo, int status, void *ud)
{
    (void)ud;
    if (status < 0) {
        fprintf(stderr, "sollold: the demo's simulated nodes did not start\n");
        app.exit_code = 1;
        sol_demo_stop(demo, on_demo_stopped);
        return;
    }
    SOL_INFO("demo: %d simulated nodes ready", app.cfg->demo_nodes);
    start_daemon();
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    sol_log_set_tag("sollold");
    struct sol_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return 1;
    enum sol_config_action action;
    char err[1024];
    if (sol_config_from_args(cfg, argc, argv, environ, &action, stdout, err, sizeof err) < 0) {
        fprintf(stderr, "sollold: %s\n", err);
        sol_config_free(cfg);
        free(cfg);
        return 1;
    }
    if (action == SOL_CONFIG_EXIT_OK) {
        sol_config_free(cfg);
        free(cfg);
        return 0;
    }
    sol_log_set_level((enum sol_log_level)cfg->log_level);
    sol_log_set_json(cfg->log_format_json);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "sollold: libcurl failed to initialise\n");
        return 1;
    }
    app.loop = uv_default_loop();
    app.cfg = cfg;
    app.argc = argc;
    app.argv = argv;
    if (cfg->demo) {
        app.demo = sol_demo_start(app.loop, cfg, on_demo_ready, NULL, err, sizeof err);
        if (!app.demo) {
            fprintf(stderr, "sollold: %s\n", err);
            app.exit_code = 1;
        }
    } else {
        start_daemon();
    }
    uv_run(app.loop, UV_RUN_DEFAULT);
    if (app.daemon.cfg) /* set by sol_daemon_start even when it failed */
        sol_daemon_free(&app.daemon);
    if (app.cfg) {
        sol_config_free(app.cfg);
        free(app.cfg);
    }
    if (app.demo)
        sol_demo_free(app.demo);
    uv_loop_close(app.loop);
    curl_global_cleanup();
    return app.exit_code;
}
