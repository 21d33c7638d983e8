/*
 * coordinator.h - the sharded path: one llama-server spread over ggml
 * rpc-server backends, launched, supervised and served as a node of the
 * router (a virtual node named "rpc" in the node table, marked external so
 * the Ollama health probes leave it alone; the coordinator alone writes its
 * state).
 *
 * Life of the sharded model (states as /api/sollol/rpc shows them):
 *   stopped -> starting: resolve the model's GGUF (Ollama store or an
 *     explicit path) and validate its header in a uv_work item; learn the
 *     reference RPC protocol version (config rpc_version, else a short run
 *     of the rpc-server beside llama-server on an ephemeral loopback port);
 *     probe every backend (HELLO, devices, memory); exclude mismatches with
 *     a logged reason; check that the rest can hold the model; spawn
 *     llama-server (through sollol-exec: own process group, PDEATHSIG);
 *     poll /health until 200 within the start-up timeout.
 *   starting -> ready: the node's slots open; requests that waited in the
 *     daemon's queue are dispatched.
 *   ready -> restarting: llama-server exited (reaped by libuv's exit
 *     callback only). Restart after an exponential backoff (1 s doubling to
 *     60 s by default, reset after 5 healthy minutes), and only once every
 *     backend it used answers HELLO again.
 *   -> failed: 5 exits in 10 minutes, or a pre-flight that cannot pass.
 *     Requests get 503 with the reason and the last log lines; a failed
 *     pre-flight is retried by the next request after the backoff minimum.
 *   ready -> stopped: idle for idle_unload_ms; the next request starts it.
 * While llama-server holds the backends, their liveness is a TCP connect
 * (rpc-server serves one client at a time: a HELLO would not be answered).
 *
 * Ownership: the daemon owns the coordinator (d->coord); the coordinator
 * owns its children, timers, probes and the per-request state it attaches
 * to requests it serves (r->coord, freed with the request).
 */
#ifndef SOLLOL_COORDINATOR_H
#define SOLLOL_COORDINATOR_H

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>

struct sol_daemon;
struct sol_request;
struct sol_node;
struct sol_coord;
struct sol_child;
struct sol_child_opts;
struct sol_rpc_probe;
struct sol_rpc_probe_result;
struct uv_loop_s;

/* Name of the virtual node in the table, logs and X-Sollol-Node. */
#define SOL_COORD_NODE_NAME "rpc"

/*
 * What the coordinator must tell the requests waiting for the sharded
 * model, which it never sees (it sits below the proxy): daemon.c binds
 * these to request.c and coordinator_serve.c at creation, as it binds the
 * balancer's on_slot_freed. Called from the coordinator's timers and
 * callbacks, never from inside a libcurl callback.
 */
struct sol_coord_hooks {
    /* llama-server is ready (or a slot freed): start every waiting request
     * a node can take now. */
    void (*kick)(void *ud);
    /* Requests waiting in the admission queue for the sharded model. */
    unsigned (*queued)(void *ud);
    /* Ends every such waiting request with `status` and `msg`. */
    void (*fail_waiting)(void *ud, unsigned status, const char *msg);
    void *ud;
};

/*
 * What the coordinator asks of the world besides its own timers: the
 * clock, its children, the RPC probes of its backends and the /health poll
 * of llama-server. The daemon uses the real ones (sol_coord_create); the
 * unit test passes fakes to drive the state machine on a fake clock. Every
 * member is required; each keeps the contract of the real function named.
 */
struct sol_coord_ops {
    /* The loop's clock in ms (uv_now). */
    uint64_t (*now_ms)(void *clock_ud);
    void *clock_ud;
    /* sol_child_spawn (child.h): on_closed runs even when it fails. */
    struct sol_child *(*spawn)(const struct sol_child_opts *o, char *err, size_t errlen);
    /* sol_child_stop: SIGTERM, SIGKILL after the grace period; NULL is fine. */
    void (*stop)(struct sol_child *ch);
    /* sol_child_kill: SIGKILL now (a requested stop); NULL is fine. */
    void (*kill)(struct sol_child *ch);
    /* sol_child_free_port: a free loopback port in [lo, hi] (0: ephemeral). */
    int (*free_port)(int lo, int hi, int *port);
    /* sol_rpc_probe_start and sol_rpc_probe_cancel (rpc_probe.h). */
    struct sol_rpc_probe *(*probe_start)(
        struct uv_loop_s *loop, const char *host, int port, unsigned timeout_ms, int connect_only,
        void (*cb)(const struct sol_rpc_probe_result *res, void *ud), void *ud);
    void (*probe_cancel)(struct sol_rpc_probe *p);
    /* Starts GET `url` (llama-server's /health); its status (0: no answer)
     * goes to coord_health_done() (coordinator_priv.h) on a later turn of
     * the loop. Returns 0 when started, else -1 (the next tick retries). */
    int (*health_start)(struct sol_coord *c, const char *url);
    /* Cancels the running /health poll: coord_health_done() is not called. */
    void (*health_cancel)(struct sol_coord *c);
};

/*
 * Creates the coordinator when d->cfg enables model sharding, and appends
 * its virtual node to d->table (the table must have room for one more
 * entry). Nothing runs until sol_coord_start(). Returns 0 (also
 * when sharding is disabled: d->coord stays NULL), or -1 with a message in
 * err (bad rpc_backends entry, unreadable rpc_backends file, out of memory).
 */
int sol_coord_create(struct sol_daemon *d, const struct sol_coord_hooks *hooks, char *err,
                     size_t errlen);

/* The same with `ops` in place of the real ones (copied). sollol-exec
 * must exist only when ops->spawn is sol_child_spawn. */
int sol_coord_create_ops(struct sol_daemon *d, const struct sol_coord_hooks *hooks,
                         const struct sol_coord_ops *ops, char *err, size_t errlen);

/*
 * Starts the coordinator's timers, its store scan and the local rpc-server
 * children. Called once the daemon has started everything else, so a
 * failed start leaves nothing running. NULL is fine.
 */
void sol_coord_start(struct sol_coord *c);

/*
 * Stops everything: probes and timers end, children get SIGTERM, then
 * SIGKILL after the grace period; requests it holds are not touched (the
 * daemon ends them). on_stopped runs once every handle has closed and every
 * child has been reaped. NULL coordinator: on_stopped is not called and 0
 * is returned; else 1.
 */
int sol_coord_stop(struct sol_coord *c, void (*on_stopped)(struct sol_daemon *d));

/* Frees the coordinator after on_stopped. NULL is fine. */
void sol_coord_free(struct sol_coord *c);

/* ---- status ---- */

/* The status object of GET /api/sollol/rpc (and "rpc" in /api/stats):
 * backends and the coordinator. NULL coordinator: {"enabled":false}. */
cJSON *sol_coord_status_json(const struct sol_coord *c);

#endif
