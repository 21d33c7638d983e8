/*
 * daemon.h - the daemon object: owns the loop glue, the node table and
 * every request, and runs start-up and shutdown.
 *
 * Ownership: struct sol_daemon owns the MHD daemon, the curl multi, the
 * node table and the config it was started with. Each request is owned by
 * its MHD connection (see request.h); the daemon only keeps a list of them
 * so shutdown can reach every one.
 */
#ifndef SOLLOL_DAEMON_H
#define SOLLOL_DAEMON_H

#include "sollol/balancer.h"
#include "sollol/config.h"
#include "sollol/curl_uv.h"
#include "sollol/affinity.h"
#include "sollol/health.h"
#include "sollol/mhd_uv.h"
#include "sollol/metrics.h" /* GET /metrics */
#include "sollol/node-t.h"
#include "sollol/queue.h"

#include <stdint.h>
#include <uv.h>

struct sol_request;
struct sol_coord;

struct sol_daemon {
    uv_loop_t *loop;
    struct sol_config *cfg; /* owned */

    struct MHD_Daemon *mhd;
    struct sol_mhd_uv mhd_glue;
    struct sol_curl_uv curl;
    int listen_fd;
    int listen_port;

    struct sol_node_table table;
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
    uint64_t retries_total;     /* attempts after the first, all requests */
    struct sol_metrics metrics; /* GET /metrics: per-request counters (metrics.c) */
    struct sol_coord *coord;    /* sharded path (coordinator.c); NULL when off */

    uv_timer_t sweep_timer; /* enforces upstream deadlines */
    uv_signal_t sig_int, sig_term;

    struct sol_request *requests; /* every live request (intrusive list) */
    unsigned requests_live;
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

/*
 * Builds the node table from cfg (taking ownership of cfg), opens the
 * listening socket, starts MHD, curl and the health probes on `loop`. The
 * listener accepts once the first probe round is done (connections made
 * before wait in the backlog); then "listening on HOST:PORT" is printed on
 * stdout (tests and the demo read it).
 * Returns 0, or -1 with a message in err (nothing is left running).
 */
int sol_daemon_start(struct sol_daemon *d, uv_loop_t *loop, struct sol_config *cfg, char *err,
                     size_t errlen);

/*
 * Stops: no new connections, every live request is ended (its upstream
 * cancelled, its client told), handles closed. on_stopped runs when the loop
 * holds nothing of the daemon any more; the caller then frees with
 * sol_daemon_free(). Idempotent.
 */
void sol_daemon_stop(struct sol_daemon *d, void (*on_stopped)(struct sol_daemon *d));

/* Frees what sol_daemon_start() allocated. Only after on_stopped. */
void sol_daemon_free(struct sol_daemon *d);

/* Milliseconds on the loop's monotonic clock. */
uint64_t sol_now_ms(const struct sol_daemon *d);

#endif
