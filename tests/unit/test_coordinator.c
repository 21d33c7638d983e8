/*
 * test_coordinator.c - the coordinator's state machine (coordinator.c)
 * driven with fake children, fake RPC probes, a fake /health and a fake
 * clock through struct sol_coord_ops, linking the nodes floor alone.
 *
 * Every check reads what an operator sees: the state, reason and backoff of
 * sol_coord_status_json (GET /api/sollol/rpc), what the fake child was asked
 * to run and to do, and what the request side was told through the hooks.
 */
#include "check.h"

#include "base/config.h"
#include "base/node.h"
#include "daemon-t.h"
#include "nodes/child.h"
#include "nodes/coordinator.h"
#include "nodes/coordinator_priv.h"
#include "nodes/rpc_probe.h"
#include "sollol/log.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the fakes ----------------------------------------------------------- */

static uint64_t clock_ms;

static uint64_t fake_now(void *ud)
{
    (void)ud;
    return clock_ms;
}

/* Every child the coordinator asked for, with what it was asked to do. */
struct spawned {
    struct sol_child *ch; /* NULL once it exited and closed */
    char label[64];
    char argv[4096]; /* joined with spaces */
    unsigned grace_ms;
    int stops;
};
static struct spawned kids[64];
static unsigned n_kids;

static struct sol_child *fake_spawn(const struct sol_child_opts *o, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    struct spawned *k = &kids[n_kids++];
    memset(k, 0, sizeof *k);
    struct sol_child *ch = calloc(1, sizeof *ch);
    snprintf(k->label, sizeof k->label, "%s", o->label);
    size_t off = 0;
    for (char **a = o->argv; *a; a++)
        off += (size_t)snprintf(k->argv + off, sizeof k->argv - off, "%s%s", off ? " " : "", *a);
    k->grace_ms = o->grace_ms;
    k->ch = ch;
    snprintf(ch->label, sizeof ch->label, "%s", o->label);
    ch->pid = 4000 + (int)n_kids;
    ch->running = 1;
    ch->ud = o->ud;
    ch->on_line = o->on_line;
    ch->on_exit = o->on_exit;
    ch->on_closed = o->on_closed;
    ch->owner = o->owner;
    return ch;
}

static struct spawned *kid_of(const struct sol_child *ch)
{
    for (unsigned i = 0; i < n_kids; i++)
        if (kids[i].ch == ch)
            return &kids[i];
    return NULL;
}

static void fake_stop(struct sol_child *ch)
{
    struct spawned *k = ch ? kid_of(ch) : NULL;
    if (!k || !ch->running)
        return;
    k->stops++;
    ch->stop_requested = 1;
}

/* The child prints a line (to the coordinator's log ring when it keeps one). */
static void kid_says(struct spawned *k, const char *line)
{
    CHECK(k && k->ch, "no running child to print '%s'", line);
    if (k && k->ch && k->ch->on_line)
        k->ch->on_line(k->ch->owner, line, strlen(line));
}

/* The process ends as libuv would report it: on_exit, then on_closed. */
static void kid_exits(struct spawned *k, int status, int sig)
{
    CHECK(k && k->ch, "no running child to exit");
    if (!k || !k->ch)
        return;
    struct sol_child *ch = k->ch;
    ch->running = 0;
    ch->exit_status = status;
    ch->term_signal = sig;
    ch->on_exit(ch);
    void (*closed)(void *) = ch->on_closed;
    void *owner = ch->owner;
    k->ch = NULL;
    free(ch);
    closed(owner);
}

static int fake_free_port(int lo, int hi, int *port)
{
    (void)lo;
    (void)hi;
    *port = 40001;
    return 0;
}

struct probe {
    int active;
    char host[64];
    int port;
    int connect_only;
    void (*cb)(const struct sol_rpc_probe_result *res, void *ud);
    void *ud;
};
static struct probe probes[256];
static unsigned n_probes_started;

static struct sol_rpc_probe *
fake_probe_start(struct uv_loop_s *loop, const char *host, int port, unsigned timeout_ms,
                 int connect_only, void (*cb)(const struct sol_rpc_probe_result *res, void *ud),
                 void *ud)
{
    (void)loop;
    (void)timeout_ms;
    for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        struct probe *p = &probes[i];
        if (p->active)
            continue;
        p->active = 1;
        snprintf(p->host, sizeof p->host, "%s", host);
        p->port = port;
        p->connect_only = connect_only;
        p->cb = cb;
        p->ud = ud;
        n_probes_started++;
        return (struct sol_rpc_probe *)p;
    }
    return NULL;
}

static void fake_probe_cancel(struct sol_rpc_probe *p)
{
    ((struct probe *)p)->active = 0;
}

static unsigned full_probes_active(void)
{
    unsigned k = 0;
    for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++)
        k += probes[i].active && !probes[i].connect_only;
    return k;
}

/* Answers the running HELLO probe of host: a 3.0.0 rpc-server with one
 * device of free_mib free, or no answer with `error`. Returns 0 when no such
 * probe was running. */
static int answer_probe(const char *host, uint64_t free_mib, const char *error)
{
    for (unsigned i = 0; i < sizeof probes / sizeof probes[0]; i++) {
        struct probe *p = &probes[i];
        if (!p->active || p->connect_only || strcmp(p->host, host) != 0)
            continue;
        struct sol_rpc_probe_result r = {0};
        r.connected = error == NULL;
        if (error) {
            snprintf(r.error, sizeof r.error, "%s", error);
        } else {
            r.answered = r.complete = 1;
            r.version.major = 3;
            r.n_devices = 1;
            r.free_bytes[0] = r.total_bytes[0] = free_mib << 20;
            r.free_sum = r.total_sum = free_mib << 20;
        }
        p->active = 0;
        p->cb(&r, p->ud);
        return 1;
    }
    return 0;
}

static unsigned health_starts, health_cancels;
static int health_pending;
static char health_url[128];

static int fake_health_start(struct sol_coord *c, const char *url)
{
    (void)c;
    health_starts++;
    health_pending = 1;
    snprintf(health_url, sizeof health_url, "%s", url);
    return 0;
}

static void fake_health_cancel(struct sol_coord *c)
{
    (void)c;
    health_cancels++;
    health_pending = 0;
}

static const struct sol_coord_ops fake_ops = {
    .now_ms = fake_now,
    .spawn = fake_spawn,
    .stop = fake_stop,
    .kill = fake_stop,
    .free_port = fake_free_port,
    .probe_start = fake_probe_start,
    .probe_cancel = fake_probe_cancel,
    .health_start = fake_health_start,
    .health_cancel = fake_health_cancel,
};

/* The request side (hooks): how many wait, what they were told. */
static unsigned kicks, waiting, fails, fail_status;
static char fail_msg[1024];

static void hook_kick(void *ud)
{
    (void)ud;
    kicks++;
}

static unsigned hook_queued(void *ud)
{
    (void)ud;
    return waiting;
}

static void hook_fail(void *ud, unsigned status, const char *msg)
{
    (void)ud;
    fails++;
    fail_status = status;
    snprintf(fail_msg, sizeof fail_msg, "%s", msg);
    waiting = 0;
}

/* ---- the coordinator under test ------------------------------------------ */

static uv_loop_t loop;
static struct sol_config cfg;
static struct sol_daemon d;
static struct sol_node *table[4];
static uint64_t node_ids[4];
static struct sol_coord *c;
static char gguf_path[300];
static int stopped;

static void set_str(char **field, const char *v)
{
    free(*field);
    *field = strdup(v);
}

/* Turns of the loop: the resolve work item, the kick timer. */
static void run_loop(void)
{
    while (c->work)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_NOWAIT);
}

/* Lets `ms` pass on the fake clock, one tick per TICK_MS. */
static void advance(uint64_t ms)
{
    uint64_t end = clock_ms + ms;
    while (clock_ms < end) {
        uint64_t step = end - clock_ms < TICK_MS ? end - clock_ms : TICK_MS;
        clock_ms += step;
        coord_tick(c);
        run_loop();
    }
}

static void setup(int crash_limit, unsigned idle_ms)
{
    memset(kids, 0, sizeof kids);
    n_kids = 0;
    memset(probes, 0, sizeof probes);
    n_probes_started = health_starts = health_cancels = 0;
    health_pending = 0;
    kicks = waiting = fails = fail_status = 0;
    fail_msg[0] = '\0';
    clock_ms = 1000000;
    char err[256];
    CHECK(sol_config_defaults(&cfg, err, sizeof err) == 0, "%s", err);
    cfg.model_sharding_enabled = 1;
    set_str(&cfg.rpc_backends, "127.0.0.2:50052,127.0.0.3:50052");
    set_str(&cfg.rpc_version, "3.0.0");
    set_str(&cfg.sharded_models, "[\"big\"]");
    char paths[400];
    snprintf(paths, sizeof paths, "{\"big\":\"%s\"}", gguf_path);
    set_str(&cfg.model_paths, paths);
    set_str(&cfg.llama_binary, "/opt/llama/llama-server");
    set_str(&cfg.llama_extra_args, "");
    set_str(&cfg.local_rpc_servers, "[]");
    cfg.sharding_auto = 0;
    cfg.llama_port_min = cfg.llama_port_max = 0;
    cfg.llama_backoff_min_ms = 1000;
    cfg.llama_backoff_max_ms = 60000;
    cfg.llama_healthy_reset_ms = 300000;
    cfg.llama_crash_window_ms = 600000;
    cfg.llama_crash_limit = crash_limit;
    cfg.llama_startup_timeout_ms = 30000;
    cfg.llama_idle_unload_ms = idle_ms;
    cfg.llama_stop_grace_ms = 5000;
    memset(&d, 0, sizeof d);
    memset(table, 0, sizeof table);
    d.loop = &loop;
    d.cfg = &cfg;
    d.table.nodes = table;
    d.node_ids = node_ids;
    struct sol_coord_hooks hooks = {hook_kick, hook_queued, hook_fail, NULL};
    CHECK(sol_coord_create_ops(&d, &hooks, &fake_ops, err, sizeof err) == 0, "%s", err);
    c = d.coord;
    sol_coord_start(c);
    uv_timer_stop(&c->tick); /* the test ticks, on its own clock */
    /* Start-up: each program's --help (the flags it accepts), then the
     * survey of the backends (rows known before the first request). */
    CHECK(n_kids == 2 && strcmp(kids[0].label, "--help") == 0 &&
              strstr(kids[1].argv, "llama-server --help") != NULL,
          "no --help runs: %u children", n_kids);
    kid_says(&kids[0], "  -p, --port PORT                  port to bind to (default: 50052)");
    kid_says(&kids[0], "  -c, --cache                      enable local file cache");
    kid_exits(&kids[0], 0, 0);
    kid_says(&kids[1],
             "--rpc SERVERS                           comma-separated list of RPC servers");
    kid_says(&kids[1], "--port PORT                             port to listen (default: 8080)");
    kid_exits(&kids[1], 0, 0);
    advance(TICK_MS);
    CHECK(answer_probe("127.0.0.2", 8192, NULL) && answer_probe("127.0.0.3", 4096, NULL),
          "no start-up survey of the backends");
    CHECK(c->state == CS_STOPPED && c->step == ST_IDLE && !c->survey, "the survey launched");
    memset(kids, 0, sizeof kids);
    n_kids = 0;
    n_probes_started = 0;
}

static void on_stopped(struct sol_daemon *dd)
{
    (void)dd;
    stopped = 1;
}

static void teardown(void)
{
    stopped = 0;
    sol_coord_stop(c, on_stopped);
    for (unsigned i = 0; i < n_kids; i++)
        if (kids[i].ch)
            kid_exits(&kids[i], 0, 15);
    uv_run(&loop, UV_RUN_DEFAULT);
    CHECK(stopped, "on_stopped not called");
    sol_coord_free(c);
    sol_node_free(table[0]);
    sol_config_free(&cfg);
    memset(&cfg, 0, sizeof cfg);
}

/* ---- what an operator sees ----------------------------------------------- */

static cJSON *status;

static const cJSON *co(const char *key)
{
    cJSON_Delete(status);
    status = sol_coord_status_json(c);
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(status, "coordinator"),
                                            key);
}

/* A copy: the next co() frees the status (four live at once). */
static const char *co_str(const char *key)
{
    static char copies[4][1024];
    static unsigned next;
    char *out = copies[next++ % 4];
    const cJSON *v = co(key);
    snprintf(out, sizeof copies[0], "%s", cJSON_IsString(v) ? v->valuestring : "(not a string)");
    return out;
}

static double co_num(const char *key)
{
    const cJSON *v = co(key);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

#define STATE_IS(s)                                                                                \
    CHECK(strcmp(co_str("state"), s) == 0, "state %s, reason %s", co_str("state"), co_str("reason"))

static struct spawned *llama(void)
{
    return n_kids ? &kids[n_kids - 1] : NULL;
}

/* A request asks for the model; both backends answer; llama-server is
 * spawned (loading). */
static void start_and_launch(void)
{
    unsigned before = n_kids;
    waiting = 1;
    coord_begin(c, CS_STARTING); /* what coordinator_serve.c does for a request */
    run_loop();
    CHECK(full_probes_active() == 2, "%u HELLO probes", full_probes_active());
    CHECK(answer_probe("127.0.0.2", 8192, NULL), "no probe of backend 1");
    CHECK(answer_probe("127.0.0.3", 4096, NULL), "no probe of backend 2");
    CHECK(n_kids == before + 1, "llama-server not spawned");
}

/* /health answers 503 (loading), then 200. */
static void become_ready(void)
{
    advance(HEALTH_EVERY_MS);
    CHECK(health_pending, "no /health poll");
    coord_health_done(c, 503);
    CHECK(strcmp(co_str("state"), "ready") != 0 && c->node->held, "ready on a 503");
    advance(HEALTH_EVERY_MS);
    CHECK(health_pending, "no second /health poll");
    coord_health_done(c, 200);
    health_pending = 0;
    run_loop();
    STATE_IS("ready");
}

/* ---- the tests ----------------------------------------------------------- */

static void test_launch_to_ready(void)
{
    setup(5, 0);
    STATE_IS("stopped");
    CHECK(c->node->held, "a stopped coordinator's node must hold its slots");
    waiting = 1;
    coord_begin(c, CS_STARTING);
    STATE_IS("starting");
    run_loop(); /* the GGUF header is read off the loop */
    CHECK(strcmp(co_str("gguf"), gguf_path) == 0, "gguf %s", co_str("gguf"));
    CHECK(full_probes_active() == 2, "%u HELLO probes", full_probes_active());
    CHECK(n_kids == 0, "spawned before the backends answered");
    answer_probe("127.0.0.2", 8192, NULL);
    CHECK(n_kids == 0, "spawned before every backend answered");
    answer_probe("127.0.0.3", 4096, NULL);
    CHECK(n_kids == 1, "llama-server not spawned");
    struct spawned *k = llama();
    CHECK(strcmp(k->label, "llama-server") == 0, "label %s", k->label);
    CHECK(k->grace_ms == 5000, "grace %u", k->grace_ms);
    char want[600];
    snprintf(want, sizeof want, "/opt/llama/llama-server -m %s --host 127.0.0.1 --port 40001 ",
             gguf_path);
    CHECK(strncmp(k->argv, want, strlen(want)) == 0, "argv %s", k->argv);
    CHECK(strstr(k->argv, " --rpc 127.0.0.2:50052,127.0.0.3:50052 -ngl all ") != NULL, "argv %s",
          k->argv);
    CHECK(strstr(k->argv, " --tensor-split 8192,4096 ") != NULL, "argv %s", k->argv);
    CHECK(strstr(k->argv, " --alias big:latest") != NULL, "argv %s", k->argv);
    STATE_IS("starting");
    CHECK(strcmp(co_str("reason"), "loading model") == 0, "reason %s", co_str("reason"));
    CHECK(co_num("pid") == k->ch->pid && co_num("port") == 40001, "pid %g port %g", co_num("pid"),
          co_num("port"));
    CHECK(strcmp(c->node->base_url, "http://127.0.0.1:40001") == 0, "%s", c->node->base_url);
    CHECK(kicks == 0, "kicked before ready");

    advance(HEALTH_EVERY_MS);
    CHECK(health_starts == 1 && strcmp(health_url, "http://127.0.0.1:40001/health") == 0,
          "%u polls, url %s", health_starts, health_url);
    coord_health_done(c, 503); /* loading */
    run_loop();
    STATE_IS("starting");
    CHECK(co_num("health_status") == 503, "%g", co_num("health_status"));
    CHECK(c->node->held && kicks == 0, "held %d kicks %u", c->node->held, kicks);
    advance(HEALTH_EVERY_MS);
    CHECK(health_starts == 2, "%u polls", health_starts);
    coord_health_done(c, 200);
    STATE_IS("ready");
    CHECK(kicks == 0, "kick must run from its timer, not inside the /health callback");
    run_loop();
    CHECK(kicks == 1, "kicks %u", kicks);
    CHECK(!c->node->held && c->node->state == SOL_NODE_UP, "node held %d", c->node->held);
    CHECK(strcmp(co_str("reason"), "") == 0, "reason %s", co_str("reason"));
    advance(10000);
    CHECK(co_num("uptime_s") == 10, "uptime %g", co_num("uptime_s"));
    CHECK(kicks == 1, "kicked again while ready: %u", kicks);
    CHECK(n_kids == 1 && llama()->stops == 0, "ready llama-server touched");
    teardown();
}

static void test_crash_backoff(void)
{
    setup(100, 0); /* no crash limit: watch the backoff alone */
    start_and_launch();
    become_ready();
    CHECK(co_num("next_backoff_ms") == 1000, "%g", co_num("next_backoff_ms"));
    unsigned want[] = {1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000};
    for (unsigned i = 0; i < sizeof want / sizeof want[0]; i++) {
        unsigned spawned = n_kids;
        kid_says(llama(), "llama_model_load: error loading model");
        kid_exits(llama(), 1, 0);
        STATE_IS("restarting");
        char reason[128];
        snprintf(reason, sizeof reason, "restarting in %u ms after exit status 1", want[i]);
        CHECK(strcmp(co_str("reason"), reason) == 0, "crash %u: %s", i + 1, co_str("reason"));
        CHECK(co_num("restarts") == i + 1, "restarts %g", co_num("restarts"));
        CHECK(strcmp(co_str("last_exit"), "exit status 1") == 0, "%s", co_str("last_exit"));
        CHECK(cJSON_IsNull(co("pid")), "pid of a dead llama-server");
        CHECK(c->node->held, "slots open while restarting");
        advance(want[i] - TICK_MS);
        CHECK(full_probes_active() == 0 && n_kids == spawned, "crash %u: restarted before %u ms",
              i + 1, want[i]);
        advance(TICK_MS);
        CHECK(full_probes_active() == 2, "crash %u: no HELLO after %u ms", i + 1, want[i]);
        answer_probe("127.0.0.2", 8192, NULL);
        answer_probe("127.0.0.3", 4096, NULL);
        CHECK(n_kids == spawned + 1, "crash %u: not relaunched", i + 1);
        STATE_IS("restarting");
        if (i < 6) /* crash while loading: the backoff keeps doubling */
            continue;
        become_ready();
    }
    /* Healthy for 5 minutes: the next restart is quick again. */
    advance(299000);
    CHECK(co_num("next_backoff_ms") == 60000, "reset early: %g", co_num("next_backoff_ms"));
    advance(1000);
    CHECK(co_num("next_backoff_ms") == 1000, "not reset: %g", co_num("next_backoff_ms"));
    kid_exits(llama(), 0, 9);
    CHECK(strcmp(co_str("reason"), "restarting in 1000 ms after killed by signal 9") == 0, "%s",
          co_str("reason"));
    teardown();
}

static void test_restart_waits_for_backends(void)
{
    setup(5, 0);
    start_and_launch();
    become_ready();
    kid_exits(llama(), 1, 0);
    advance(1000);
    unsigned spawned = n_kids;
    answer_probe("127.0.0.2", 8192, NULL);
    answer_probe("127.0.0.3", 0, "connection refused");
    CHECK(n_kids == spawned, "relaunched without backend 2");
    STATE_IS("restarting");
    CHECK(strcmp(co_str("reason"),
                 "waiting for rpc backend 127.0.0.3:50052 (no HELLO answer: connection refused)") ==
              0,
          "%s", co_str("reason"));
    const cJSON *b2 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(status, "backends"), 1);
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(b2, "reachable")) &&
              cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(b2, "excluded")),
          "backend 2 not shown unreachable");
    /* Asked again every second, not relaunched on the one that answers. */
    for (int round = 0; round < 3; round++) {
        advance(BACKEND_RETRY_MS - TICK_MS);
        CHECK(full_probes_active() == 0, "probed before the retry delay");
        advance(TICK_MS);
        CHECK(full_probes_active() == 2, "round %d: %u probes", round, full_probes_active());
        answer_probe("127.0.0.2", 8192, NULL);
        answer_probe("127.0.0.3", 0, "connection refused");
        CHECK(n_kids == spawned, "relaunched without backend 2");
    }
    CHECK(fails == 0, "waiting requests failed while the backend is away");
    advance(BACKEND_RETRY_MS);
    answer_probe("127.0.0.2", 8192, NULL);
    answer_probe("127.0.0.3", 4096, NULL);
    CHECK(n_kids == spawned + 1, "not relaunched once every backend answered");
    CHECK(strstr(llama()->argv, " --rpc 127.0.0.2:50052,127.0.0.3:50052 ") != NULL, "argv %s",
          llama()->argv);
    become_ready();
    teardown();
}

/* The backends that are left hold the model: relaunched over them at once
 * (not waiting for the lost one), and the status says so. */
static void test_restart_relaunches_over_the_rest(void)
{
    setup(5, 0);
    start_and_launch();
    become_ready();
    kid_exits(llama(), 0, 6); /* aborted: a backend went away */
    advance(1000);
    unsigned spawned = n_kids;
    answer_probe("127.0.0.2", 16384, NULL); /* 16 GiB free: holds the 10 GiB model */
    answer_probe("127.0.0.3", 0, "connection refused");
    CHECK(n_kids == spawned + 1, "not relaunched over the backend that is left");
    CHECK(strstr(llama()->argv, " --rpc 127.0.0.2:50052 ") != NULL, "argv %s", llama()->argv);
    CHECK(strstr(co_str("recovery"), "without 127.0.0.3:50052") != NULL, "recovery: %s",
          co_str("recovery"));
    become_ready();
    CHECK(fails == 0, "waiting requests failed");
    teardown();
}

static void test_crash_limit_fails(void)
{
    setup(5, 0);
    start_and_launch();
    become_ready();
    unsigned delays[] = {1000, 2000, 4000, 8000};
    for (unsigned i = 0; i < 5; i++) {
        char line[64];
        snprintf(line, sizeof line, "crash %u: GGML_ASSERT failed", i + 1);
        kid_says(llama(), line);
        waiting = 2;
        kid_exits(llama(), 134, 0);
        if (i == 4)
            break;
        STATE_IS("restarting");
        CHECK(fails == 0, "crash %u failed the waiting requests", i + 1);
        advance(delays[i]);
        answer_probe("127.0.0.2", 8192, NULL);
        answer_probe("127.0.0.3", 4096, NULL);
    }
    STATE_IS("failed");
    const char *reason = co_str("reason");
    /* The exit quotes the line that names the cause (GGML_ASSERT). */
    CHECK(strstr(reason, "llama-server exited 5 times in 600 s (last: exit status 134: crash 5: "
                         "GGML_ASSERT failed)") != NULL,
          "%s", reason);
    CHECK(strstr(reason, "last log lines: ") != NULL &&
              strstr(reason, "crash 5: GGML_ASSERT failed") != NULL,
          "%s", reason);
    CHECK(fails == 1 && fail_status == 503 && strcmp(fail_msg, co_str("reason")) == 0,
          "fails %u status %u: %s", fails, fail_status, fail_msg);
    CHECK(c->node->state == SOL_NODE_DOWN && strstr(c->node->last_error, "5 times"), "node %d: %s",
          c->node->state, c->node->last_error);
    const cJSON *lines = co("last_log_lines");
    CHECK(cJSON_GetArraySize(lines) == 5, "%d lines", cJSON_GetArraySize(lines));
    unsigned spawned = n_kids;
    advance(60000);
    /* Idle backends keep being probed (their rows), but nothing relaunches. */
    CHECK(n_kids == spawned && c->step == ST_IDLE, "failed coordinator restarted itself");
    STATE_IS("failed");
    /* Once the crash window has passed, a later request starts afresh: its
     * first restart waits the minimum, not the backoff the crashes built. */
    advance(600000);
    CHECK(co_num("next_backoff_ms") == 1000, "backoff after the window: %g",
          co_num("next_backoff_ms"));
    teardown();
}

static void test_crashes_outside_window(void)
{
    /* 5 crashes over more than 10 minutes: still restarting. */
    setup(5, 0);
    start_and_launch();
    become_ready();
    for (unsigned i = 0; i < 5; i++) {
        advance(200000); /* ready < 5 min: the backoff keeps growing */
        kid_exits(llama(), 1, 0);
        STATE_IS("restarting");
        advance((uint64_t)1000 << i);
        answer_probe("127.0.0.2", 8192, NULL);
        answer_probe("127.0.0.3", 4096, NULL);
        become_ready();
    }
    teardown();
}

static void test_preflight_fail(void)
{
    setup(5, 0);
    waiting = 3;
    coord_begin(c, CS_STARTING);
    run_loop();
    answer_probe("127.0.0.2", 0, "connection refused");
    answer_probe("127.0.0.3", 0, "connection timed out");
    CHECK(n_kids == 0, "spawned without a backend");
    STATE_IS("failed");
    CHECK(strstr(co_str("reason"),
                 "no usable rpc backend for model big:latest: "
                 "127.0.0.2:50052: no HELLO answer: connection refused; "
                 "127.0.0.3:50052: no HELLO answer: connection timed out") != NULL,
          "%s", co_str("reason"));
    CHECK(fails == 1 && fail_status == 503, "fails %u status %u", fails, fail_status);
    teardown();
}

static void test_startup_timeout(void)
{
    setup(5, 0);
    start_and_launch();
    struct spawned *k = llama();
    /* /health never answers 200. */
    while (clock_ms < c->launched_at + 30000 - TICK_MS) {
        advance(TICK_MS);
        if (health_pending) {
            coord_health_done(c, 503);
            health_pending = 0;
        }
    }
    STATE_IS("starting");
    CHECK(k->stops == 0, "stopped before the start-up timeout");
    advance(TICK_MS);
    CHECK(k->stops == 1, "not stopped at the start-up timeout: %d", k->stops);
    advance(TICK_MS * 10);
    CHECK(k->stops == 1, "one stop request per timeout: %d", k->stops);
    /* The model finishes loading while llama-server is being stopped: a
     * late /health 200 must not open the node's slots to a dying process. */
    CHECK(health_pending || (advance(HEALTH_EVERY_MS), health_pending), "no /health poll");
    if (health_pending) {
        health_pending = 0;
        coord_health_done(c, 200);
        run_loop();
    }
    STATE_IS("starting");
    CHECK(c->node->held && kicks == 0, "held %d, kicks %u: requests sent to a dying llama-server",
          c->node->held, kicks);
    kid_exits(k, 0, 15);
    STATE_IS("restarting");
    CHECK(co_num("restarts") == 1, "a timed-out start counts as a crash: %g", co_num("restarts"));
    CHECK(strcmp(co_str("reason"), "restarting in 1000 ms after killed by signal 15") == 0, "%s",
          co_str("reason"));
    teardown();
}

static void test_idle_unload(void)
{
    setup(5, 60000);
    start_and_launch();
    become_ready();
    waiting = 0;
    struct spawned *k = llama();
    c->node->in_flight = 1; /* a request runs: never idle */
    advance(120000);
    CHECK(k->stops == 0, "unloaded with a request in flight");
    c->node->in_flight = 0;
    c->last_activity = clock_ms; /* coordinator_serve.c marks each request's end */
    advance(60000 - TICK_MS);
    CHECK(k->stops == 0, "unloaded before idle_unload_ms");
    advance(TICK_MS);
    CHECK(k->stops == 1, "not unloaded after idle_unload_ms");
    kid_exits(k, 0, 15);
    STATE_IS("stopped");
    CHECK(co_num("restarts") == 0, "a planned stop counted as a crash");
    CHECK(cJSON_IsNull(co("pid")), "pid after unload");
    CHECK(c->node->held && c->node->state == SOL_NODE_UP, "stopped node: held, routable");
    advance(10000);
    CHECK(n_kids == 1 && c->step == ST_IDLE, "restarted without a request");
    /* The next request starts it again. */
    start_and_launch();
    become_ready();
    teardown();
}

static void test_keep_alive_zero_unload(void)
{
    setup(5, 0);
    start_and_launch();
    become_ready();
    waiting = 0;
    struct spawned *k = llama();
    /* coordinator_serve.c on keep_alive 0 with nothing in flight: */
    coord_stop_llama(c, "unload requested");
    CHECK(k->stops == 1, "stops %d", k->stops);
    advance(TICK_MS);
    CHECK(k->stops == 1, "stopped twice");
    kid_exits(k, 0, 15);
    STATE_IS("stopped");
    CHECK(co_num("restarts") == 0, "an unload counted as a crash");
    /* A request that arrived while it stopped starts it again at once. */
    start_and_launch();
    k = llama();
    become_ready();
    waiting = 1;
    coord_stop_llama(c, "unload requested");
    kid_exits(k, 0, 15);
    STATE_IS("starting");
    CHECK(full_probes_active() == 2, "the waiting request did not restart it");
    teardown();
}

static void write_gguf(void)
{
    static const char dir_tpl[] = "/tmp/sollol-test-coord-XXXXXX";
    static char dir[sizeof dir_tpl];
    memcpy(dir, dir_tpl, sizeof dir_tpl);
    if (!mkdtemp(dir))
        return;
    snprintf(gguf_path, sizeof gguf_path, "%s/big.gguf", dir);
    FILE *f = fopen(gguf_path, "wb");
    if (!f)
        return;
    unsigned char b[256];
    size_t n = 0;
#define PUT(p, k) (memcpy(b + n, p, k), n += (k))
#define U32(v)                                                                                     \
    do {                                                                                           \
        uint32_t x_ = (v);                                                                         \
        PUT(&x_, 4);                                                                               \
    } while (0)
#define U64(v)                                                                                     \
    do {                                                                                           \
        uint64_t x_ = (v);                                                                         \
        PUT(&x_, 8);                                                                               \
    } while (0)
#define STR(s)                                                                                     \
    do {                                                                                           \
        U64(strlen(s));                                                                            \
        PUT(s, strlen(s));                                                                         \
    } while (0)
    PUT("GGUF", 4);
    U32(3); /* version */
    U64(0); /* tensors */
    U64(2); /* keys */
    STR("general.architecture");
    U32(8);
    STR("llama");
    STR("llama.block_count");
    U32(4);
    U32(4);
    fwrite(b, 1, n, f);
    /* 10 GiB (sparse): both backends are needed (8 + 4 GiB free), one alone
     * (test_restart_waits_for_backends) cannot hold it. */
    if (ftruncate(fileno(f), (off_t)10 << 30) != 0)
        gguf_path[0] = '\0';
    fclose(f);
}

int main(void)
{
    sol_log_set_level(SOL_LOG_WARN); /* the transitions are checked, not read */
    uv_loop_init(&loop);
    write_gguf();
    CHECK(gguf_path[0], "cannot write the GGUF file");
    test_launch_to_ready();
    test_crash_backoff();
    test_restart_waits_for_backends();
    test_restart_relaunches_over_the_rest();
    test_crash_limit_fails();
    test_crashes_outside_window();
    test_preflight_fail();
    test_startup_timeout();
    test_idle_unload();
    test_keep_alive_zero_unload();
    cJSON_Delete(status);
    unlink(gguf_path);
    *strrchr(gguf_path, '/') = '\0';
    rmdir(gguf_path);
    uv_loop_close(&loop);
    return check_summary();
}
