/*
 * coordinator_priv.h - the coordinator's state, shared by coordinator.c
 * (pre-flight, launch, supervision, status) and the request kind above it,
 * proxy/coordinator_serve.c. Not a public interface: see coordinator.h.
 */
#ifndef SOLLOL_COORDINATOR_PRIV_H
#define SOLLOL_COORDINATOR_PRIV_H

#include "sollol/buf.h"
#include "nodes/child.h"
#include "nodes/coordinator.h"
#include "sollol/curl_uv.h"
#include "base/gguf.h"
#include "base/model_name.h"
#include "base/model_store.h"
#include "nodes/rpc_probe.h"
#include "base/translate.h"

#include <stdint.h>
#include <uv.h>

#define MAX_BACKENDS       SOL_RPC_MAX_BACKENDS
#define MAX_SHARDED        32
#define LOG_LINES          200
#define LOG_LINE_MAX       1000
#define TICK_MS            50 /* the /health poll of a starting llama-server */
#define HEALTH_EVERY_MS    50
#define LIVENESS_EVERY_MS  2000
#define BACKEND_RETRY_MS   250 /* probes of a lost backend while waiting for it */
#define REF_PROBE_EVERY_MS 200
#define REF_TIMEOUT_MS     10000
#define MAX_ARGS           96
#define MAX_CRASHES        64

/* The coordinator's state as /api/sollol/rpc shows it, and the step of its
 * pipeline within that state. */
enum cstate { CS_STOPPED, CS_STARTING, CS_READY, CS_RESTARTING, CS_FAILED };
enum step {
    ST_IDLE,
    ST_RESOLVING,     /* uv_work: store + GGUF header */
    ST_REFERENCE,     /* learning the reference version from a local rpc-server */
    ST_PROBING,       /* HELLO + devices + memory on every backend */
    ST_LAUNCHED,      /* llama-server spawned, polling /health */
    ST_BACKOFF,       /* waiting before a restart */
    ST_WAIT_BACKENDS, /* a backend llama-server needs does not answer HELLO */
    ST_STOPPING,      /* llama-server asked to exit (unload, switch, timeout) */
    ST_LEARNING,      /* waiting for the installed programs' --help (flags) */
};

/* What an installed program accepts, learned once from its --help output
 * (run on the loop like any child). Until learned, or when --help failed,
 * every flag counts as supported (the old behaviour). */
struct help {
    char path[4096];
    struct sol_child *ch;
    struct sol_buf out;
    int state; /* 0 not started, 1 running, 2 learned, 3 failed */
};

struct backend {
    struct sol_rpc_addr addr;
    int local; /* one of local_rpc_servers */
    struct sol_rpc_probe *probe;
    int probed; /* a full probe result is recorded */
    struct sol_rpc_probe_result last;
    int reachable; /* last probe (full or connect-only) connected */
    int excluded;
    char why[300];
    int required; /* llama-server was launched with it */
    /* Its health as the table shows it (writer: coordinator.c). */
    uint64_t down_since;  /* ms on the loop clock; 0 while up */
    char last_error[240]; /* why it is down, or the last failure */
    int lost;             /* llama-server's connection to it closed while in use */
    char peer[64];        /* numeric address of its last connection */
};

struct local_rpc {
    struct sol_coord *c;
    int port;
    char host[64];
    char device[64];
    long mem_mb;
    int cache;
    struct sol_child *ch;
    uint64_t restart_at;
    uint64_t started_at; /* spawned: it may not listen yet */
    unsigned backoff_ms;
    unsigned restarts;
};

/* A local rpc-server spawned this recently may still be opening its port. */
#define LOCAL_START_GRACE_MS 5000
#define LOCAL_RETRY_MS       200

struct sol_coord_req {
    enum sol_tr_kind kind;
    int passthrough;                /* OpenAI routes: no translation */
    int translating;                /* the running attempt is on llama-server */
    const char *path;               /* llama-server's route (a literal) */
    char model[SOL_MODEL_NAME_MAX]; /* canonical */
    struct sol_buf body;            /* llama-server's body */
    struct sol_buf out;             /* translated bytes handed to request.c */
    struct sol_translate tr;
    int tr_init;
    int stream;
    int retried; /* failed once before its first byte: waited for recovery */
    uint64_t arrived_ms;
};

struct resolve_work {
    uv_work_t req;
    struct sol_coord *c;
    char model[SOL_MODEL_NAME_MAX];
    char explicit_path[SOL_STORE_PATH_MAX];
    char root[SOL_STORE_PATH_MAX];
    int have_root;
    /* results */
    int rc;
    int not_found;
    char err[600];
    char path[SOL_STORE_PATH_MAX];
    char projector[SOL_STORE_PATH_MAX]; /* --mmproj, or "" */
    char adapter[SOL_STORE_PATH_MAX];   /* --lora, or "" */
    char digest[72];
    struct sol_gguf_info info;
};

/* A probe's user data: which backend of which coordinator. */
struct probe_ud {
    struct sol_coord *c;
    unsigned index;
    int connect_only;
};

/* The auto policy's view of the Ollama store, refreshed off the loop. */
#define MAX_STORE     4096
#define STORE_SCAN_MS 30000
struct scan_work {
    uv_work_t req;
    struct sol_coord *c;
    char root[SOL_STORE_PATH_MAX];
    uint64_t keys[MAX_STORE];
    unsigned n;
    int rc;
};

struct sol_coord {
    struct sol_daemon *d;
    struct sol_coord_hooks hooks; /* the requests' side, bound by daemon.c */
    struct sol_coord_ops ops;     /* clock, children, probes, /health */
    const struct sol_config *cfg;
    struct sol_node *node;

    struct backend backends[MAX_BACKENDS];
    unsigned n_backends;
    char sharded[MAX_SHARDED][SOL_MODEL_NAME_MAX]; /* canonical names */
    unsigned n_sharded;

    enum cstate state;
    enum step step;
    char reason[600]; /* why failed / what it waits for */
    int failed_preflight;
    unsigned fail_status;
    uint64_t failed_at;

    char model[SOL_MODEL_NAME_MAX];      /* canonical name being served */
    char next_model[SOL_MODEL_NAME_MAX]; /* switch to it once stopped */
    char resolved_for[SOL_MODEL_NAME_MAX];
    char gguf_path[SOL_STORE_PATH_MAX];
    char projector[SOL_STORE_PATH_MAX]; /* the store's projector layer, or "" */
    char adapter[SOL_STORE_PATH_MAX];   /* the store's adapter layer, or "" */
    char digest[72];
    struct sol_gguf_info info;
    struct resolve_work *work; /* running uv_work item */
    struct scan_work *scan;    /* running store scan (auto policy) */
    uint64_t store_keys[MAX_STORE];
    unsigned n_store;
    uint64_t next_scan;

    int have_ref;
    struct sol_rpc_version ref;
    char ref_source[64];
    struct sol_child *ref_child;
    int ref_port;
    uint64_t ref_deadline;
    uint64_t ref_next_probe;
    struct sol_rpc_probe *ref_probe;
    char ref_said[400]; /* the reference rpc-server's last output, if it exited */

    unsigned probes_pending;
    struct probe_ud uds[MAX_BACKENDS * 2]; /* full probes, then connect-only ones */

    struct sol_child *llama;
    int port;
    char base_url[64];
    uint64_t launched_at, ready_at, last_activity;
    uint64_t next_health, next_liveness, restart_at;
    unsigned backoff_ms;
    unsigned restarts;
    uint64_t crashes[MAX_CRASHES];
    unsigned n_crashes;
    char last_exit[400];
    char last_exit_head[64]; /* "exit status N" / "killed by signal N" of the last exit */
    int cause_pending;       /* its output may still name a later cause: last_exit follows */

    /* /health poll through the daemon's curl multi */
    struct sol_curl_xfer health;
    int health_running;
    long health_status;

    char *log_ring[LOG_LINES];
    unsigned log_head, log_count;

    struct local_rpc locals[MAX_BACKENDS];
    unsigned n_locals;

    uv_timer_t tick;
    uv_timer_t kick; /* runs the daemon's queue after the node opened */
    int timers_open;
    unsigned children_open;
    int stopping;
    void (*on_stopped)(struct sol_daemon *d);
    char exec_path[4096];

    /* The installed programs. */
    char rpc_bin_how[160]; /* which RPC server binary, and how it was found */
    struct help help_rpc, help_llama;
    int locals_started;
    char **env;  /* children's environment: sollold's plus GGML_NO_BACKTRACE=1 */
    int survey;  /* probing every backend before any request (no launch) */
    int suspect; /* a request failed before its first byte: hold the node until /health says */
    uint64_t next_backend_check;
    struct conn_work *conn; /* running check of llama-server's backend connections */
    char lost_why[300];     /* what the last recovery did (status "recovery") */
    int lost_restart;       /* llama-server is stopped because a backend it uses was lost */
};

/* Reads which backend connections llama-server has open (/proc, off the
 * loop): an in-use backend that died closed its end. */
struct conn_work {
    uv_work_t req;
    struct sol_coord *c;
    int pid;
    unsigned n;
    char peer[MAX_BACKENDS][64];
    int port[MAX_BACKENDS];
    int established[MAX_BACKENDS]; /* out: 1 open, 0 closed or gone */
    int rc;                        /* out: -1 when /proc could not be read */
};

/* Internals coordinator_serve.c uses (coordinator.c). */
const char *coord_state_name(enum cstate s);
uint64_t coord_now_ms(const struct sol_coord *c);
/* Requests for the sharded model waiting in the daemon's queue. */
unsigned coord_queued(struct sol_coord *c);
/* Starts the pre-flight and launch of c->model, in state s. */
void coord_begin(struct sol_coord *c, enum cstate s);
/* The answer of the /health poll ops.health_start started: its HTTP
 * status, 0 when llama-server did not answer. */
void coord_health_done(struct sol_coord *c, long status);
/* One step of the supervision (every TICK_MS on the loop): time-outs,
 * restarts, idle unload, liveness, local rpc-servers. */
void coord_tick(struct sol_coord *c);
/* Asks llama-server to exit (planned: not counted as a crash). */
void coord_stop_llama(struct sol_coord *c, const char *why);
void coord_set_state(struct sol_coord *c, enum cstate s, enum step st);
/* The configured GGUF path of a model (model_paths): 1 with out set, or 0. */
int coord_explicit_path(const struct sol_coord *c, const char *canonical, char *out, size_t len);
/* The Ollama store's last scan holds this model key. */
int coord_store_has(const struct sol_coord *c, uint64_t key);

#endif
