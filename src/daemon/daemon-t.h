/*
 * daemon-t.h - the daemon object's type, and its clock.
 *
 * Types only (haproxy's -t.h rule): no function of daemon.c is declared
 * here, so a module below the top floor (the proxy, the coordinator) that
 * reads the daemon's fields includes this and cannot call up into daemon.c
 * or reload.c: those are in daemon.h, for the top floor only. Anything a
 * lower floor must tell the daemon goes through a hook in this struct or
 * one installed at creation (balancer.on_slot_freed, serve_local, ...).
 */
#ifndef SOLLOL_DAEMON_T_H
#define SOLLOL_DAEMON_T_H

#include "nodes/balancer.h"
#include "base/config.h"
#include "sollol/curl_uv.h"
#include "base/dashboard.h" /* GET /dashboard */
#include "nodes/discovery.h"
#include "base/affinity.h"
#include "base/auth.h"
#include "nodes/health.h"
#include "base/limits.h"
#include "sollol/mhd_uv.h"
#include "base/metrics.h" /* GET /metrics */
#include "base/node-t.h"
#include "base/queue.h"
#include "base/routes.h"

#include <microhttpd.h>
#include <stdint.h>
#include <uv.h>

/* Requests in flight from which a later fall to a quarter gives freed
 * memory back to the system (malloc_trim, daemon.c's sweep). */
#define SOL_TRIM_PEAK 256

struct sol_request;
struct sol_req_kind;
struct sol_coord;
struct sol_daemon;

/* The daemon's own answers (admin.h): request.c hands every route that
 * reads no body to this hook, which daemon.c sets to sol_admin_serve(). */
typedef enum MHD_Result (*sol_serve_local_fn)(struct sol_daemon *d, struct MHD_Connection *c,
                                              const struct sol_route *route, const char *url,
                                              const struct sol_auth_key *key);

struct sol_daemon {
    uv_loop_t *loop;
    struct sol_config *cfg; /* owned */

    struct MHD_Daemon *mhd;
    struct sol_mhd_uv mhd_glue;
    struct sol_curl_uv curl;
    int listen_fd;
    int listen_port;

    struct sol_node_table table;
    unsigned table_cap; /* slots allocated in table.nodes and the per-node arrays */
    struct sol_balancer balancer;
    struct sol_health health;
    int health_running;

    struct sol_queue queue;       /* requests waiting for a free node slot */
    struct sol_affinity affinity; /* conversation prefix -> node */
    int affinity_on;
    uint64_t *node_ids;        /* stable identity per node, for rendezvous hashing */
    unsigned char *eligible;   /* scratch: one flag per node */
    unsigned *reserved;        /* scratch: queued requests waiting for each node */
    uv_timer_t dispatch_timer; /* runs the queue after slots free */
    int dispatch_pending;
    uint64_t retries_total;         /* attempts after the first, all requests */
    struct sol_metrics metrics;     /* GET /metrics: per-request counters (metrics.c) */
    struct sol_dashboard dashboard; /* GET /dashboard: per-second ring, decisions */
    struct sol_auth auth;           /* API keys and rate limits (auth.c) */
    struct sol_limits limits;       /* per-connection limits (limits.c) */
    struct sol_coord *coord;        /* sharded path (coordinator.c); NULL when off */
    sol_serve_local_fn serve_local; /* the daemon's own answers (admin.c) */
    /* Request kinds (request_priv.h), asked in order; set by daemon.c. */
    const struct sol_req_kind *const *kinds;
    unsigned n_kinds;

    uv_timer_t sweep_timer; /* enforces upstream deadlines */
    uv_signal_t sig_int, sig_term, sig_hup;

    /* Reload (SIGHUP): main supplies how a fresh config is read (argv,
     * environment, file), the daemon applies it (reload.h). NULL = reload
     * not available (the signal is then logged and ignored). */
    int (*load_config)(struct sol_config *out, char *err, size_t errlen, void *ud);
    void *load_ud;
    uint64_t reloads_total, reload_failures_total;

    /* Service manager (notify.h). */
    uv_timer_t watchdog_timer;        /* WATCHDOG=1 at half of WATCHDOG_USEC */
    unsigned status_up, status_total; /* the last STATUS= sent */
    int status_sent;

    /* Graceful shutdown: the first SIGTERM/SIGINT starts draining (new
     * requests get 503, running ones finish); the grace timer or a second
     * signal stops for good. */
    uv_timer_t grace_timer;
    int draining;

    struct sol_discovery discovery;
    int discovery_running;

    struct sol_request *requests; /* every live request (intrusive list) */
    unsigned requests_live;
    /* No attempt's deadline falls before this (request.c): the sweep does
     * not walk 10,000 streams ten times a second to find none due. */
    uint64_t requests_next_deadline_ms;
    unsigned requests_peak; /* most requests_live seen since the last trim (daemon.c) */
    uint64_t request_seq;
    uint64_t started_ms;
    char id_prefix[9]; /* random per process, so ids differ across restarts */

    unsigned max_attempts; /* attempts per request before giving up */

    int started;
    int ready;        /* first probe round done, accepting clients */
    int mhd_attached; /* the MHD glue holds handles */
    int stopping;
    int handles_open; /* daemon-level uv handles not yet closed */
    void (*on_stopped)(struct sol_daemon *d);
};

/* Milliseconds on the loop's monotonic clock. */
static inline uint64_t sol_now_ms(const struct sol_daemon *d)
{
    return uv_now(d->loop);
}

#endif
