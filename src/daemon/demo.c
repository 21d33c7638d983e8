/*
 * demo.c - simulated nodes for `sollold --demo` (see demo.h).
 */
#include "demo.h"

#include "sollol/log.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEMO_MAX 8

struct demo_child {
    struct sol_demo *demo;
    uv_process_t proc;
    uv_pipe_t in, out;
    char line[256];
    size_t line_len;
    int port;
    int exited;
    int handles_open;
};

struct sol_demo {
    uv_loop_t *loop;
    struct sol_config *cfg;
    struct demo_child child[DEMO_MAX];
    int count;
    int ready;
    int failed;
    int reported;
    int stopping;
    int handles_open;
    void (*on_ready)(struct sol_demo *demo, int status, void *ud);
    void (*on_stopped)(struct sol_demo *demo, void *ud);
    void *ud;
};

/* Each simulated node differs, so the demo shows routing at work. */
static const char *const demo_args[DEMO_MAX][12] = {
    {"--model", "llama3.2,loaded", "--model", "nomic-embed-text,embed,loaded",
     "--tokens-per-second", "40", NULL},
    {"--model", "llama3.2", "--model", "qwen2.5:7b,loaded", "--tokens-per-second", "25", NULL},
    {"--model", "llama3.2,loaded", "--model", "qwen2.5:7b", "--tokens-per-second", "60", NULL},
    {"--model", "llama3.2", "--tokens-per-second", "30", NULL},
    {"--model", "llama3.2", "--tokens-per-second", "30", NULL},
    {"--model", "llama3.2", "--tokens-per-second", "30", NULL},
    {"--model", "llama3.2", "--tokens-per-second", "30", NULL},
    {"--model", "llama3.2", "--tokens-per-second", "30", NULL},
};

static void report(struct sol_demo *demo, int status)
{
    if (demo->reported)
        return;
    demo->reported = 1;
    demo->on_ready(demo, status, demo->ud);
}

static void check_ready(struct sol_demo *demo)
{
    if (demo->ready < demo->count)
        return;
    char err[256];
    for (int i = 0; i < demo->count; i++) {
        char name[16], url[64];
        snprintf(name, sizeof name, "sim-%d", i + 1);
        snprintf(url, sizeof url, "http://127.0.0.1:%d", demo->child[i].port);
        if (sol_config_add_node(demo->cfg, name, url, err, sizeof err) < 0) {
            SOL_ERROR("demo: %s", err);
            report(demo, -1);
            return;
        }
    }
    report(demo, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct demo_child *c = h->data;
    buf->base = c->line + c->line_len;
    buf->len = sizeof c->line - 1 - c->line_len;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct demo_child *c = s->data;
    if (n < 0) {
        uv_read_stop(s);
        if (!c->port) {
            SOL_ERROR("demo: a simulator exited before it was ready");
            report(c->demo, -1);
        }
        return;
    }
    c->line_len += (size_t)n;
    c->line[c->line_len] = '\0';
    char *nl = strchr(c->line, '\n');
    if (!nl && c->line_len < sizeof c->line - 1)
        return;
    const char *colon = strrchr(c->line, ':');
    int port = colon ? atoi(colon + 1) : 0;
    /* Only the first line matters; stop reading so the pipe costs nothing. */
    uv_read_stop(s);
    if (strncmp(c->line, "listening on ", 13) != 0 || port <= 0) {
        SOL_ERROR("demo: unexpected simulator output: %s", c->line);
        report(c->demo, -1);
        return;
    }
    c->port = port;
    c->demo->ready++;
    check_ready(c->demo);
}

static void child_handle_closed(uv_handle_t *h)
{
    struct demo_child *c = h->data;
    struct sol_demo *demo = c->demo;
    if (--demo->handles_open == 0 && demo->on_stopped)
        demo->on_stopped(demo, demo->ud);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct demo_child *c = p->data;
    c->exited = 1;
    if (!c->demo->on_stopped)
        SOL_WARN("demo: simulator on port %d exited (status %lld, signal %d)", c->port,
                 (long long)status, sig);
    if (!c->port)
        report(c->demo, -1);
    /* Stopping waits for the exit so that the child is reaped before its
     * handle goes. */
    if (c->demo->on_stopped || c->demo->stopping)
        uv_close((uv_handle_t *)&c->proc, child_handle_closed);
}

struct sol_demo *sol_demo_start(uv_loop_t *loop, struct sol_config *cfg,
                                void (*on_ready)(struct sol_demo *demo, int status, void *ud),
                                void *ud, char *err, size_t errlen)
{
    char path[PATH_MAX];
    if (cfg->sim_path && cfg->sim_path[0]) {
        snprintf(path, sizeof path, "%s", cfg->sim_path);
    } else {
        size_t len = sizeof path;
        if (uv_exepath(path, &len) < 0) {
            snprintf(err, errlen, "demo: cannot find this executable's path");
            return NULL;
        }
        char *slash = strrchr(path, '/');
        snprintf(slash ? slash + 1 : path, sizeof path - (size_t)(slash ? slash + 1 - path : 0),
                 "ollama-sim");
    }
    struct sol_demo *demo = calloc(1, sizeof *demo);
    if (!demo) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    demo->loop = loop;
    demo->cfg = cfg;
    demo->on_ready = on_ready;
    demo->ud = ud;
    int n = cfg->demo_nodes < 1 ? 1 : cfg->demo_nodes > DEMO_MAX ? DEMO_MAX : cfg->demo_nodes;
    for (int i = 0; i < n; i++) {
        struct demo_child *c = &demo->child[i];
        c->demo = demo;
        char name[16];
        snprintf(name, sizeof name, "sim-%d", i + 1);
        char *args[24];
        int a = 0;
        args[a++] = path;
        args[a++] = "--listen";
        args[a++] = "127.0.0.1:0";
        args[a++] = "--name";
        args[a++] = name;
        args[a++] = "--exit-on-stdin-eof";
        for (int k = 0; demo_args[i][k]; k++)
            args[a++] = (char *)demo_args[i][k];
        args[a] = NULL;
        uv_pipe_init(loop, &c->in, 0);
        uv_pipe_init(loop, &c->out, 0);
        c->in.data = c->out.data = c;
        uv_stdio_container_t stdio[3] = {
            {.flags = UV_CREATE_PIPE | UV_READABLE_PIPE, .data.stream = (uv_stream_t *)&c->in},
            {.flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE, .data.stream = (uv_stream_t *)&c->out},
            {.flags = UV_INHERIT_FD, .data.fd = 2},
        };
        uv_process_options_t opt = {
            .exit_cb = on_exit_cb, .file = path, .args = args, .stdio = stdio, .stdio_count = 3};
        c->proc.data = c;
        int rc = uv_spawn(loop, &c->proc, &opt);
        demo->count++;
        c->handles_open = 3;
        demo->handles_open += 3;
        if (rc < 0) {
            snprintf(err, errlen, "demo: cannot start %s: %s", path, uv_strerror(rc));
            c->exited = 1;
            sol_demo_stop(demo, NULL);
            return NULL; /* the handles close later; demo stays allocated (leak-free: freed by
                            caller via sol_demo_free after the loop ends) */
        }
        uv_read_start((uv_stream_t *)&c->out, on_alloc, on_read);
    }
    return demo;
}

void sol_demo_stop(struct sol_demo *demo, void (*on_stopped)(struct sol_demo *demo, void *ud))
{
    demo->on_stopped = on_stopped;
    demo->stopping = 1;
    demo->reported = 1;
    for (int i = 0; i < demo->count; i++) {
        struct demo_child *c = &demo->child[i];
        uv_close((uv_handle_t *)&c->in, child_handle_closed);
        uv_close((uv_handle_t *)&c->out, child_handle_closed);
        if (c->exited)
            uv_close((uv_handle_t *)&c->proc, child_handle_closed);
        else
            uv_process_kill(&c->proc, SIGTERM); /* on_exit_cb closes the handle */
    }
}

void sol_demo_free(struct sol_demo *demo)
{
    free(demo);
}
