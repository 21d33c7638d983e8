/*
 * daemon.c - start-up and shutdown of the daemon object (see daemon.h).
 */
#include "sollol/daemon.h"

#include "sollol/breaker.h"
#include "sollol/health.h"
#include "sollol/log.h"
#include "sollol/request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SWEEP_INTERVAL_MS 100

uint64_t sol_now_ms(const struct sol_daemon *d)
{
    return uv_now(d->loop);
}

static void on_sweep(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    uv_update_time(d->loop);
    sol_request_sweep(d, sol_now_ms(d));
    sol_request_expire_queue(d, sol_now_ms(d));
    /* A node that came up or a breaker that closed can take waiting work:
     * nothing else signals those, so look at every sweep. */
    if (sol_queue_length(&d->queue))
        sol_request_dispatch(d);
}

static void on_dispatch(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    d->dispatch_pending = 0;
    sol_request_dispatch(d);
}

/* A slot freed (balancer put): run the queue on the next iteration, not
 * from inside whatever callback ended the attempt. */
static void on_slot_freed(void *ud)
{
    struct sol_daemon *d = ud;
    if (d->dispatch_pending || d->stopping || !sol_queue_length(&d->queue))
        return;
    d->dispatch_pending = 1;
    uv_timer_start(&d->dispatch_timer, on_dispatch, 0, 0);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct sol_daemon *d = s->data;
    SOL_INFO("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    sol_daemon_stop(d, d->on_stopped);
}

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = strlen(msg);
    while (n && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    SOL_DEBUG("libmicrohttpd: %s", msg);
}

static void free_node(struct sol_node *n)
{
    if (!n)
        return;
    sol_node_models_free(n);
    free(n->name);
    free(n->base_url);
    free(n->host_header);
    curl_slist_free_all(n->headers);
    free(n);
}

static int build_table(struct sol_daemon *d, char *err, size_t errlen)
{
    struct sol_config *cfg = d->cfg;
    size_t slots = cfg->n_nodes ? cfg->n_nodes : 1;
    d->table.nodes = calloc(slots, sizeof *d->table.nodes);
    d->node_ids = calloc(slots, sizeof *d->node_ids);
    d->eligible = calloc(slots, 1);
    d->reserved = calloc(slots, sizeof *d->reserved);
    if (!d->table.nodes || !d->node_ids || !d->eligible || !d->reserved)
        goto oom;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        const struct sol_node_conf *nc = &cfg->nodes[i];
        struct sol_node *n = calloc(1, sizeof *n);
        if (!n)
            goto oom;
        d->table.nodes[d->table.count++] = n;
        n->index = (unsigned)i;
        n->name = strdup(nc->name);
        n->base_url = strdup(nc->base_url);
        size_t hl = strlen(nc->host_header) + 7;
        n->host_header = malloc(hl);
        if (!n->name || !n->base_url || !n->host_header)
            goto oom;
        snprintf(n->host_header, hl, "Host: %s", nc->host_header);
        n->headers = curl_slist_append(NULL, n->host_header);
        for (size_t h = 0; h < nc->n_headers && n->headers; h++)
            n->headers = curl_slist_append(n->headers, nc->header_lines[h]);
        if (!n->headers)
            goto oom;
        n->max_concurrent = (unsigned)nc->max_concurrent;
        n->weight = nc->weight;
        /* Down until its first probe answers: nothing is known of it yet. */
        n->state = SOL_NODE_DOWN;
        sol_breaker_init(&n->breaker);
        d->node_ids[i] = sol_affinity_node_id(n->base_url);
    }
    return 0;
oom:
    snprintf(err, errlen, "out of memory building the node table");
    return -1;
}

static uint64_t balancer_clock(void *ud)
{
    return sol_now_ms(ud);
}

static void on_model_gone(void *ud, const struct sol_node *n)
{
    struct sol_daemon *d = ud;
    sol_health_refresh_tags(&d->health, n);
}

static void announce(struct sol_daemon *d)
{
    const char *host = d->cfg->listen_host[0] ? d->cfg->listen_host : "0.0.0.0";
    int v6 = strchr(host, ':') != NULL;
    printf("listening on %s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", d->listen_port);
    fflush(stdout);
    unsigned up = 0;
    for (unsigned i = 0; i < d->table.count; i++)
        up += d->table.nodes[i]->state == SOL_NODE_UP;
    SOL_INFO("sollold %s ready on %s%s%s:%d: %u of %u node(s) up", SOLLOL_VERSION, v6 ? "[" : "",
             host, v6 ? "]" : "", d->listen_port, up, d->table.count);
}

/* The first probe round is done: start accepting. Connections that came
 * earlier waited in the listen backlog, so none was refused or misrouted. */
static void on_first_round(struct sol_health *h, void *ud)
{
    (void)h;
    struct sol_daemon *d = ud;
    if (d->stopping || d->ready)
        return;
    d->ready = 1;
    if (sol_mhd_uv_attach(&d->mhd_glue, d->loop, d->mhd) < 0) {
        SOL_ERROR("cannot attach the HTTP server to the loop");
        sol_daemon_stop(d, d->on_stopped);
        return;
    }
    d->mhd_attached = 1;
    announce(d);
}

int sol_daemon_start(struct sol_daemon *d, uv_loop_t *loop, struct sol_config *cfg, char *err,
                     size_t errlen)
{
    memset(d, 0, sizeof *d);
    d->loop = loop;
    d->cfg = cfg;
    d->listen_fd = -1;
    d->max_attempts = (unsigned)cfg->max_attempts;
    d->started_ms = uv_now(loop);
    snprintf(d->id_prefix, sizeof d->id_prefix, "%08x",
             (unsigned)(uv_hrtime() ^ ((uint64_t)getpid() << 16)));
    if (build_table(d, err, errlen) < 0)
        return -1;
    if (sol_metrics_init(&d->metrics, d->table.count) < 0) { /* GET /metrics (metrics.c) */
        snprintf(err, errlen, "out of memory for the metrics");
        return -1;
    }
    struct sol_scorer_conf sc = {
        .default_gen_tps = cfg->default_gen_tps,
        .default_prompt_tps = cfg->default_prompt_tps,
        .default_load_ms = cfg->default_load_ms,
        .typical_predict = cfg->typical_predict,
        .affinity_prompt_fraction = cfg->affinity_prompt_fraction,
    };
    struct sol_breaker_conf bc = {
        .failure_threshold = (unsigned)cfg->breaker_failure_threshold,
        .error_rate = cfg->breaker_error_rate,
        .min_requests = (unsigned)cfg->breaker_min_requests,
        .window_ms = cfg->breaker_window_ms,
        .cooldown_min_ms = cfg->breaker_cooldown_min_ms,
        .cooldown_max_ms = cfg->breaker_cooldown_max_ms,
    };
    d->loop = loop;
    sol_balancer_init(&d->balancer, &d->table, cfg->routing_mode, &sc, &bc, balancer_clock, d);
    d->balancer.on_model_gone = on_model_gone;
    d->balancer.gone_ud = d;
    d->balancer.on_slot_freed = on_slot_freed;
    d->balancer.slot_ud = d;
    struct sol_queue_conf qc = {.max_length = (unsigned)cfg->queue_max_length,
                                .max_wait_ms = cfg->queue_max_wait_ms,
                                .aging_ms = cfg->queue_aging_ms};
    if (sol_queue_init(&d->queue, &qc) < 0) {
        snprintf(err, errlen, "out of memory for the admission queue");
        return -1;
    }
    if (cfg->affinity_capacity > 0) {
        if (sol_affinity_init(&d->affinity, (unsigned)cfg->affinity_capacity) < 0) {
            snprintf(err, errlen, "out of memory for the affinity table");
            return -1;
        }
        d->affinity_on = 1;
    }

    d->listen_fd =
        sol_listen_socket(cfg->listen_host, cfg->listen_port, 1024, &d->listen_port, err, errlen);
    if (d->listen_fd < 0)
        return -1;
    d->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        sol_request_on_access, d, MHD_OPTION_LISTEN_SOCKET, d->listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, sol_request_on_completed, d, MHD_OPTION_NOTIFY_CONNECTION,
        sol_mhd_uv_notify_connection, &d->mhd_glue, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, d,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)(128 * 1024), MHD_OPTION_END);
    if (!d->mhd) {
        snprintf(err, errlen, "cannot start the HTTP server");
        close(d->listen_fd);
        d->listen_fd = -1;
        return -1;
    }
    if (sol_curl_uv_init(&d->curl, loop, 4096) < 0) {
        snprintf(err, errlen, "cannot initialise libcurl");
        return -1;
    }
    struct sol_health_conf hc = {.probe_interval_ms = cfg->probe_interval_ms,
                                 .tags_interval_ms = cfg->tags_interval_ms,
                                 .probe_timeout_ms = cfg->probe_timeout_ms};
    uv_timer_init(loop, &d->sweep_timer);
    d->sweep_timer.data = d;
    uv_timer_init(loop, &d->dispatch_timer);
    d->dispatch_timer.data = d;
    uv_timer_start(&d->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_signal_init(loop, &d->sig_int);
    uv_signal_init(loop, &d->sig_term);
    d->sig_int.data = d->sig_term.data = d;
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    d->handles_open = 4;
    d->started = 1;
    if (sol_health_start(&d->health, loop, &d->curl, &d->table, &d->balancer.breaker, &hc,
                         on_first_round, d) < 0) {
        snprintf(err, errlen, "out of memory starting the health probes");
        return -1;
    }
    d->health_running = 1;
    return 0;
}

static void maybe_stopped(struct sol_daemon *d)
{
    if (d->handles_open == 0 && d->on_stopped)
        d->on_stopped(d);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sol_daemon *d = h->data;
    d->handles_open--;
    maybe_stopped(d);
}

static void on_curl_closed(struct sol_curl_uv *cu)
{
    struct sol_daemon *d = (struct sol_daemon *)((char *)cu - offsetof(struct sol_daemon, curl));
    d->handles_open--;
    maybe_stopped(d);
}

static void stop_mhd_and_curl(struct sol_daemon *d)
{
    /* Completes every connection (request-completed callbacks run here),
     * which cancels whatever upstream transfers remain. */
    MHD_stop_daemon(d->mhd);
    d->mhd = NULL;
    d->listen_fd = -1;
    sol_curl_uv_close(&d->curl, on_curl_closed);
    d->handles_open--;
    maybe_stopped(d);
}

static void on_mhd_glue_closed(struct sol_mhd_uv *glue)
{
    stop_mhd_and_curl((struct sol_daemon *)((char *)glue - offsetof(struct sol_daemon, mhd_glue)));
}

static void on_health_closed(struct sol_health *h)
{
    struct sol_daemon *d = (struct sol_daemon *)((char *)h - offsetof(struct sol_daemon, health));
    if (d->mhd_attached)
        sol_mhd_uv_close(&d->mhd_glue, on_mhd_glue_closed);
    else
        stop_mhd_and_curl(d);
}

/* Gives MHD one more turn to send final error lines and close resumed
 * connections before the daemon is stopped. */
static void on_drain(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    uv_close((uv_handle_t *)&d->sweep_timer, on_handle_closed);
    sol_health_stop(&d->health, on_health_closed);
}

void sol_daemon_stop(struct sol_daemon *d, void (*on_stopped)(struct sol_daemon *d))
{
    if (d->stopping || !d->started)
        return;
    d->stopping = 1;
    d->on_stopped = on_stopped;
    /* glue + curl close asynchronously too */
    d->handles_open += 2;
    int fd = MHD_quiesce_daemon(d->mhd);
    if (fd >= 0)
        close(fd);
    uv_close((uv_handle_t *)&d->sig_int, on_handle_closed);
    uv_close((uv_handle_t *)&d->sig_term, on_handle_closed);
    uv_close((uv_handle_t *)&d->dispatch_timer, on_handle_closed);
    sol_request_abort_all(d, "sollold is shutting down");
    if (d->mhd_attached)
        sol_mhd_uv_run(&d->mhd_glue);
    uv_timer_stop(&d->sweep_timer);
    uv_timer_start(&d->sweep_timer, on_drain, 50, 0);
    d->sweep_timer.data = d;
}

void sol_daemon_free(struct sol_daemon *d)
{
    for (unsigned i = 0; i < d->table.count; i++)
        free_node(d->table.nodes[i]);
    free(d->table.nodes);
    d->table.nodes = NULL;
    free(d->node_ids);
    free(d->eligible);
    free(d->reserved);
    d->reserved = NULL;
    d->node_ids = NULL;
    d->eligible = NULL;
    sol_queue_destroy(&d->queue);
    sol_metrics_free(&d->metrics); /* GET /metrics (metrics.c) */
    if (d->affinity_on)
        sol_affinity_free(&d->affinity);
    d->affinity_on = 0;
    d->table.count = 0;
    if (d->cfg) {
        sol_config_free(d->cfg);
        free(d->cfg);
        d->cfg = NULL;
    }
}
