/*
 * daemon.c - start-up and shutdown of the daemon object (see daemon.h).
 */
#include "daemon.h"

#include "admin.h"
#include "proxy/batch.h"
#include "proxy/coordinator_serve.h"
#include "proxy/embed.h"
#include "proxy/fanout.h"

#include "base/breaker.h"
#include "sollol/container_of.h"
#include "nodes/coordinator.h"
#include "nodes/health.h"
#include "sollol/log.h"
#include "notify.h"
#include "reload.h"
#include "proxy/request.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#define SWEEP_INTERVAL_MS 100

static void notify(const char *msg)
{
    if (sol_notify(msg) < 0)
        SOL_DEBUG("sd_notify(%s): %s", msg, strerror(errno));
}

/* STATUS= for systemctl status: node counts, sent when they change. */
static void send_status(struct sol_daemon *d, const char *extra)
{
    unsigned up, total;
    sol_daemon_node_counts(d, &up, &total);
    if (!extra && d->status_sent && up == d->status_up && total == d->status_total)
        return;
    d->status_sent = 1;
    d->status_up = up;
    d->status_total = total;
    char msg[256];
    snprintf(msg, sizeof msg, "STATUS=%s%s%u of %u node(s) up, %u request(s) in flight",
             extra ? extra : "", extra ? "; " : "", up, total, d->requests_live);
    notify(msg);
}

/*
 * After a spike of open streams the heap they freed stays resident: glibc
 * gives back only the top of the heap, and one live object above the freed
 * ones keeps it (4,000 streams: 149 MiB before, 58 MiB after
 * malloc_trim(0), which also releases free pages inside the heap). Once
 * live requests fell to a quarter of a peak of SOL_TRIM_PEAK or more, trim
 * once; it walks the free chunks (milliseconds for hundreds of MiB), so
 * never per request.
 */
static void trim_after_spike(struct sol_daemon *d)
{
    if (d->requests_live > d->requests_peak)
        d->requests_peak = d->requests_live;
    if (d->requests_peak < SOL_TRIM_PEAK || d->requests_live > d->requests_peak / 4)
        return;
#ifdef __GLIBC__
    uint64_t t0 = uv_hrtime();
    malloc_trim(0);
    SOL_INFO("%u requests in flight, down from %u: returned freed memory to the system (%.1f ms)",
             d->requests_live, d->requests_peak, (double)(uv_hrtime() - t0) / 1e6);
#endif
    d->requests_peak = d->requests_live;
}

static void on_sweep(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    uv_update_time(d->loop);
    sol_daemon_nodes_drained(d);
    if (d->ready)
        send_status(d, NULL);
    if (d->draining && d->requests_live == 0) {
        SOL_INFO("every request has finished: stopping");
        sol_daemon_stop(d, d->on_stopped);
        return;
    }
    sol_request_sweep(d, sol_now_ms(d));
    sol_limits_sweep(&d->limits, sol_now_ms(d)); /* slow headers (limits.c) */
    trim_after_spike(d);
    sol_request_expire_queue(d, sol_now_ms(d));
    sol_dashboard_tick(&d->dashboard, sol_now_ms(d), sol_queue_length(&d->queue), d->requests_live);
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

/* The request kinds (request_priv.h), in the order request.c asks them:
 * the sharded path first (it rides the proxy path, so a split embedding
 * after it still sees the request), then the batch-job routes, large
 * /api/embed batches, fan-out routes. */
static const struct sol_req_kind *const kinds[] = {
    &sol_coord_kind,
    &sol_batch_kind,
    &sol_embed_kind,
    &sol_fanout_kind,
};

/* The coordinator's hooks (coordinator.h): it never sees a request. */
static void coord_kick(void *ud)
{
    sol_request_dispatch(ud);
}

static unsigned coord_queued(void *ud)
{
    return sol_coord_requests_queued(ud);
}

static void coord_fail_waiting(void *ud, unsigned status, const char *msg)
{
    sol_coord_requests_fail(ud, status, msg);
}

static void on_signal(uv_signal_t *s, int signum)
{
    struct sol_daemon *d = s->data;
    if (signum == SIGHUP) {
        SOL_INFO("received SIGHUP, reloading the configuration");
        sol_daemon_reload(d);
        return;
    }
    SOL_INFO("received %s%s", signum == SIGINT ? "SIGINT" : "SIGTERM",
             d->draining ? " again: stopping now" : "");
    sol_daemon_shutdown(d, d->on_stopped);
}

static void on_watchdog(uv_timer_t *t)
{
    (void)t;
    notify("WATCHDOG=1");
}

static void on_grace_over(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    SOL_WARN("shutdown grace period over: cutting %u request(s) still running", d->requests_live);
    sol_daemon_stop(d, d->on_stopped);
}

void sol_daemon_shutdown(struct sol_daemon *d, void (*on_stopped)(struct sol_daemon *d))
{
    if (d->stopping || !d->started)
        return;
    d->on_stopped = on_stopped;
    /* Still starting (no client accepted yet), a second signal, no grace
     * configured or nothing running: stop now. */
    if (d->draining || !d->ready || d->cfg->shutdown_grace_ms == 0 || d->requests_live == 0) {
        if (!d->draining)
            notify("STOPPING=1");
        sol_daemon_stop(d, on_stopped);
        return;
    }
    d->draining = 1;
    notify("STOPPING=1");
    SOL_INFO("shutting down: %u request(s) in flight get up to %u ms to finish; new requests "
             "are refused (503)",
             d->requests_live, d->cfg->shutdown_grace_ms);
    uv_timer_start(&d->grace_timer, on_grace_over, d->cfg->shutdown_grace_ms, 0);
}

int sol_daemon_reload(struct sol_daemon *d)
{
    if (d->stopping || d->draining) {
        SOL_WARN("reload ignored: shutting down");
        return -1;
    }
    if (!d->ready) {
        /* The first probe round decides readiness over the configured
         * nodes: changing them under it would only muddle that. */
        SOL_WARN("reload ignored: still starting; send SIGHUP again once ready");
        return -1;
    }
    if (!d->load_config) {
        return -1;
    }
    notify("RELOADING=1");
    char err[1024];
    struct sol_config *next = calloc(1, sizeof *next);
    if (!next || d->load_config(next, err, sizeof err, d->load_ud) < 0) {
        if (!next)
            snprintf(err, sizeof err, "out of memory");
        d->reload_failures_total++;
        SOL_ERROR("reload rejected, the running configuration stays in force: %s", err);
        if (next) {
            sol_config_free(next);
            free(next);
        }
        notify("READY=1");
        send_status(d, "reload rejected (see the log)");
        return -1;
    }
    sol_daemon_apply_config(d, next);
    d->reloads_total++;
    unsigned up, total;
    sol_daemon_node_counts(d, &up, &total);
    SOL_INFO("configuration reloaded: %u node(s) in service", total);
    /* A node that left may have been the only one a queued request could
     * use, and a new one may take it now: let the queue look again. */
    on_slot_freed(d);
    notify("READY=1");
    send_status(d, "configuration reloaded");
    return 0;
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

static int build_table(struct sol_daemon *d, char *err, size_t errlen)
{
    struct sol_config *cfg = d->cfg;
    /* Room to grow (reload, discovery: reload.c) and one more for the sharded
     * path's virtual node (coordinator.c). */
    unsigned slots = (cfg->n_nodes > 8 ? (unsigned)cfg->n_nodes : 8) + 1;
    d->table.nodes = calloc(slots, sizeof *d->table.nodes);
    d->node_ids = calloc(slots, sizeof *d->node_ids);
    d->eligible = calloc(slots, 1);
    d->reserved = calloc(slots, sizeof *d->reserved);
    if (!d->table.nodes || !d->node_ids || !d->eligible || !d->reserved)
        goto oom;
    d->table_cap = slots;
    for (size_t i = 0; i < cfg->n_nodes; i++) {
        struct sol_node *n = sol_node_new(&cfg->nodes[i]);
        if (!n)
            goto oom;
        d->table.nodes[d->table.count++] = n;
        n->index = (unsigned)i;
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

/*
 * Every client connection and every upstream transfer holds a descriptor
 * (a proxied stream holds two): raise the soft open-file limit to the hard
 * one, as nginx (worker_rlimit_nofile) and haproxy do, and return the
 * client connection limit to give libmicrohttpd: limits.max_connections,
 * lowered so that clients and their node connections fit the descriptors
 * (beyond it accept() would fail instead of a limit answering clearly).
 * libmicrohttpd's own default is FD_SETSIZE - 4 even with epoll, so it is
 * always given one.
 */
static unsigned check_fd_budget(const struct sol_config *cfg)
{
    unsigned conn_limit = (unsigned)cfg->max_connections;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return conn_limit;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t was = rl.rlim_cur;
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            SOL_WARN("cannot raise the open-file limit from %llu to %llu", (unsigned long long)was,
                     (unsigned long long)rl.rlim_max);
        getrlimit(RLIMIT_NOFILE, &rl);
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return conn_limit;
    /* Health probes, the loop's own descriptors and logs: a fixed margin. */
    unsigned long long margin = 64 + 4 * (unsigned long long)cfg->n_nodes;
    unsigned long long fit = rl.rlim_cur > 2 * margin ? (rl.rlim_cur - margin) / 2 : margin;
    if (conn_limit > fit) {
        SOL_INFO("limits.max_connections: %u client connections at most (each proxied "
                 "stream holds two of the %llu descriptors allowed; raise LimitNOFILE= for more)",
                 (unsigned)fit, (unsigned long long)rl.rlim_cur);
        conn_limit = (unsigned)fit;
    }
    unsigned long long need =
        (unsigned long long)conn_limit + (unsigned long long)cfg->max_upstream_transfers + margin;
    if (need > rl.rlim_cur)
        SOL_WARN("limits.max_connections (%u) + limits.max_upstream_transfers (%d) may need "
                 "%llu descriptors, more than the open-file limit (%llu): lower them or raise "
                 "the limit (ulimit -n, LimitNOFILE=)",
                 conn_limit, cfg->max_upstream_transfers, need, (unsigned long long)rl.rlim_cur);
    return conn_limit;
}

static void announce(struct sol_daemon *d)
{
    const char *host = d->cfg->listen_host[0] ? d->cfg->listen_host : "0.0.0.0";
    int v6 = strchr(host, ':') != NULL;
    printf("listening on %s%s%s:%d\n", v6 ? "[" : "", host, v6 ? "]" : "", d->listen_port);
    fflush(stdout);
    unsigned up, total;
    sol_daemon_node_counts(d, &up, &total);
    SOL_INFO("sollold %s ready on %s%s%s:%d: %u of %u node(s) up", SOLLOL_VERSION, v6 ? "[" : "",
             host, v6 ? "]" : "", d->listen_port, up, total);
    /* Nodes start as down, so set_state() never logs one that never came
     * up: name them once here. */
    for (unsigned i = 0; i < d->table.count; i++) {
        const struct sol_node *n = d->table.nodes[i];
        if (n->state == SOL_NODE_DOWN && !n->removed)
            SOL_WARN("node %s is down at start: %s", n->name,
                     n->last_error[0] ? n->last_error : "no answer yet");
    }
    /* The listener accepts and the first probe round is in: ready. */
    char msg[160];
    snprintf(msg, sizeof msg, "READY=1\nMAINPID=%ld", (long)getpid());
    notify(msg);
    send_status(d, NULL);
}

/* The first probe round is done: start accepting. Connections that came
 * earlier waited in the listen backlog, so none was refused or misrouted. */
/* MHD asked to run again at once for a while (mhd_uv.h): cut the
 * connections receiving a body that made no progress meanwhile. */
static void on_mhd_spin(struct sol_mhd_uv *glue, uint64_t since_ms)
{
    struct sol_daemon *d = glue->spin_ud;
    sol_limits_cut_stalled(&d->limits, since_ms, sol_now_ms(d));
}

static void on_first_round(struct sol_health *h, void *ud)
{
    (void)h;
    struct sol_daemon *d = ud;
    if (d->stopping || d->ready)
        return;
    d->ready = 1;
    d->mhd_glue.on_spin = on_mhd_spin; /* limits.c cuts what keeps MHD busy */
    d->mhd_glue.spin_ud = d;
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
    d->serve_local = sol_admin_serve; /* the daemon's own answers (admin.c) */
    d->kinds = kinds;
    d->n_kinds = sizeof kinds / sizeof kinds[0];
    d->started_ms = uv_now(loop);
    snprintf(d->id_prefix, sizeof d->id_prefix, "%08x",
             (unsigned)(uv_hrtime() ^ ((uint64_t)getpid() << 16)));
    if (build_table(d, err, errlen) < 0)
        return -1;
    struct sol_coord_hooks ch = {
        .kick = coord_kick, .queued = coord_queued, .fail_waiting = coord_fail_waiting, .ud = d};
    if (sol_coord_create(d, &ch, err, errlen) < 0) /* coordinator.c: the sharded path */
        return -1;
    if (sol_metrics_init(&d->metrics, d->table.count) < 0) { /* GET /metrics (metrics.c) */
        snprintf(err, errlen, "out of memory for the metrics");
        return -1;
    }
    if (sol_dashboard_init(&d->dashboard) < 0) { /* GET /dashboard (dashboard.c) */
        snprintf(err, errlen, "out of memory for the dashboard");
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

    if (sol_auth_init(&d->auth, cfg->auth_keys, cfg->auth_keys_file, cfg->auth_public, err,
                      errlen) < 0)
        return -1;
    unsigned conn_limit = check_fd_budget(cfg);
    d->listen_fd =
        sol_listen_socket(cfg->listen_host, cfg->listen_port, 1024, &d->listen_port, err, errlen);
    if (d->listen_fd < 0)
        return -1;
    if (!sol_auth_enabled(&d->auth) && !sol_socket_is_loopback(d->listen_fd))
        SOL_WARN("no API keys configured and listening on a non-loopback address: anyone who "
                 "can reach this port can use every node (see docs/security.md)");
    /* Limits (docs/security.md): MHD enforces the hard ones itself. */
    struct sol_limits_conf lc;
    sol_daemon_limits_conf(cfg, &lc);
    sol_limits_init(&d->limits, loop, &lc);
    unsigned idle_s = (cfg->client_idle_timeout_ms + 999) / 1000;
    d->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG, 0, NULL, NULL,
        sol_request_on_access, d, MHD_OPTION_LISTEN_SOCKET, d->listen_fd,
        MHD_OPTION_NOTIFY_COMPLETED, sol_request_on_completed, d, MHD_OPTION_URI_LOG_CALLBACK,
        sol_request_on_uri, d, MHD_OPTION_NOTIFY_CONNECTION, sol_limits_on_connection, &d->limits,
        MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, d, MHD_OPTION_CONNECTION_TIMEOUT, idle_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, sol_limits_mhd_pool(&d->limits),
        MHD_OPTION_CONNECTION_LIMIT, conn_limit, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        sol_limits_mhd_per_ip(&d->limits), MHD_OPTION_END);
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
                                 .probe_timeout_ms = cfg->probe_timeout_ms,
                                 .max_models_per_node = (unsigned)cfg->max_models_per_node};
    uv_timer_init(loop, &d->sweep_timer);
    d->sweep_timer.data = d;
    uv_timer_init(loop, &d->dispatch_timer);
    d->dispatch_timer.data = d;
    uv_timer_start(&d->sweep_timer, on_sweep, SWEEP_INTERVAL_MS, SWEEP_INTERVAL_MS);
    uv_signal_init(loop, &d->sig_int);
    uv_signal_init(loop, &d->sig_term);
    uv_signal_init(loop, &d->sig_hup);
    d->sig_int.data = d->sig_term.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_int, on_signal, SIGINT);
    uv_signal_start(&d->sig_term, on_signal, SIGTERM);
    uv_signal_start(&d->sig_hup, on_signal, SIGHUP);
    uv_timer_init(loop, &d->grace_timer);
    d->grace_timer.data = d;
    uv_timer_init(loop, &d->watchdog_timer);
    d->watchdog_timer.data = d;
    uint64_t wd_usec = sol_notify_watchdog_usec();
    if (wd_usec) {
        /* Half the interval, as systemd recommends; from the loop itself,
         * so a stuck loop is what the watchdog notices. */
        uint64_t every = wd_usec / 2000 ? wd_usec / 2000 : 1;
        uv_timer_start(&d->watchdog_timer, on_watchdog, every, every);
        SOL_INFO("systemd watchdog: keep-alive every %llu ms", (unsigned long long)every);
    }
    d->handles_open = 7;
    d->started = 1;
    if (sol_health_start(&d->health, loop, &d->curl, &d->table, &d->balancer.breaker, &hc,
                         on_first_round, d) < 0) {
        snprintf(err, errlen, "out of memory starting the health probes");
        return -1;
    }
    d->health_running = 1;
    sol_daemon_discovery_update(d);
    sol_coord_start(d->coord); /* coordinator.c: timers, local rpc-servers */
    return 0;
}

static void maybe_stopped(struct sol_daemon *d)
{
    if (d->handles_open == 0 && d->on_stopped)
        d->on_stopped(d);
}

/* coordinator.c: every child reaped, every handle closed. */
static void on_coord_stopped(struct sol_daemon *d)
{
    d->handles_open--;
    maybe_stopped(d);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct sol_daemon *d = h->data;
    d->handles_open--;
    maybe_stopped(d);
}

static void on_curl_closed(struct sol_curl_uv *cu)
{
    struct sol_daemon *d = SOL_CONTAINER_OF(cu, struct sol_daemon, curl);
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
    stop_mhd_and_curl(SOL_CONTAINER_OF(glue, struct sol_daemon, mhd_glue));
}

static void on_health_closed(struct sol_health *h)
{
    struct sol_daemon *d = SOL_CONTAINER_OF(h, struct sol_daemon, health);
    if (d->mhd_attached)
        sol_mhd_uv_close(&d->mhd_glue, on_mhd_glue_closed);
    else
        stop_mhd_and_curl(d);
}

/* Gives MHD one more turn to send final error lines and close resumed
 * connections before the daemon is stopped. */
static void on_discovery_closed(struct sol_discovery *disc)
{
    struct sol_daemon *d = SOL_CONTAINER_OF(disc, struct sol_daemon, discovery);
    d->discovery_running = 0;
    d->handles_open--;
    /* Nothing more can maybe_stopped() here: health still holds the curl
     * multi open, and it closes next. */
    sol_health_stop(&d->health, on_health_closed);
}

static void on_drain(uv_timer_t *t)
{
    struct sol_daemon *d = t->data;
    uv_close((uv_handle_t *)&d->sweep_timer, on_handle_closed);
    /* Discovery's transfers run on the curl multi: it goes first. */
    if (d->discovery_running)
        sol_discovery_stop(&d->discovery, on_discovery_closed);
    else
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
    uv_close((uv_handle_t *)&d->sig_hup, on_handle_closed);
    uv_close((uv_handle_t *)&d->grace_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->watchdog_timer, on_handle_closed);
    uv_close((uv_handle_t *)&d->dispatch_timer, on_handle_closed);
    sol_request_abort_all(d, "sollold is shutting down");
    if (sol_coord_stop(d->coord, on_coord_stopped)) /* children: SIGTERM, then SIGKILL */
        d->handles_open++;
    if (d->mhd_attached)
        sol_mhd_uv_run(&d->mhd_glue);
    uv_timer_stop(&d->sweep_timer);
    uv_timer_start(&d->sweep_timer, on_drain, 50, 0);
    d->sweep_timer.data = d;
}

void sol_daemon_free(struct sol_daemon *d)
{
    sol_coord_free(d->coord);
    d->coord = NULL;
    for (unsigned i = 0; i < d->table.count; i++)
        sol_node_free(d->table.nodes[i]);
    free(d->table.nodes);
    d->table.nodes = NULL;
    free(d->node_ids);
    free(d->eligible);
    free(d->reserved);
    d->reserved = NULL;
    d->node_ids = NULL;
    d->eligible = NULL;
    sol_queue_destroy(&d->queue);
    sol_metrics_free(&d->metrics);     /* GET /metrics (metrics.c) */
    sol_dashboard_free(&d->dashboard); /* GET /dashboard (dashboard.c) */
    sol_auth_free(&d->auth);
    sol_limits_free(&d->limits);
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
