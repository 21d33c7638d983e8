/*
 * node-t.h - types of the node table (no functions).
 *
 * One struct sol_node per configured Ollama node. Who writes what (haproxy's
 * split between health checks and balancing):
 *  - identity fields are set once from the config and never change (a node
 *    whose URL changes on reload is a new node, see reload.h);
 *  - health fields (state, breaker, models' installed/loaded facts, probe
 *    round trip) are written only by the health side: active probes
 *    (health.c) and passive outcomes reported through sol_balancer_put();
 *  - learned performance (EWMAs) is written only from the final metrics of
 *    real responses, through sol_balancer_put();
 *  - the scorer reads all of it and writes nothing;
 *  - the proxy path never touches a node's fields: it only calls
 *    sol_balancer_get()/sol_balancer_put() (nginx's get/free on a peer).
 * Single-threaded: everything runs on the loop thread, so no locks.
 */
#ifndef SOLLOL_NODE_T_H
#define SOLLOL_NODE_T_H

#include <curl/curl.h>
#include <stdint.h>

#define SOL_MODEL_NAME_MAX 256

enum sol_node_state {
    SOL_NODE_UP = 0,        /* answering probes */
    SOL_NODE_DOWN,          /* probes fail: not routable until a probe succeeds */
    SOL_NODE_MISCONFIGURED, /* answered 401/403: needs an operator, not a retry */
};

/* Per-node circuit breaker (passive health from real traffic). */
enum sol_breaker_state {
    SOL_BREAKER_CLOSED = 0, /* normal */
    SOL_BREAKER_OPEN,       /* failing: no traffic until open_until */
    SOL_BREAKER_HALF_OPEN,  /* cooldown over: one trial request may go */
};

struct sol_breaker {
    enum sol_breaker_state state;
    unsigned consecutive_failures;
    uint64_t open_until_ms;   /* OPEN: when the trial may start */
    uint64_t cooldown_ms;     /* current cooldown; doubles on each re-open */
    unsigned trial_in_flight; /* HALF_OPEN: 1 while the trial runs */
    /* Sliding error-rate window: per-slot counts, slot = time / slot_ms. */
    uint64_t window_start_ms;
    unsigned window_ok[8];
    unsigned window_fail[8];
    unsigned opens_total; /* transitions to OPEN, for stats */
};

/* Tunables of the breaker (from config). */
struct sol_breaker_conf {
    unsigned failure_threshold; /* consecutive failures that open it (default 3) */
    double error_rate;          /* open when failures/total over the window exceed it (0.5) */
    unsigned min_requests;      /* ...and the window holds at least this many (10) */
    uint64_t window_ms;         /* length of the sliding window (30000) */
    uint64_t cooldown_min_ms;   /* first cooldown (1000) */
    uint64_t cooldown_max_ms;   /* cooldown cap (60000) */
};

/* A model as one node has it. Identified by its canonical name (see
 * model_name.h) and that name's 64-bit hash `key`, which the scorer compares. */
struct sol_node_model {
    /* Hot: what the scorer reads for every candidate, first, so that one
     * or two cache lines per node carry a decision. */
    uint64_t key;           /* sol_model_key(name) */
    unsigned installed : 1; /* listed by the last /api/tags */
    unsigned loaded : 1;    /* listed by the last /api/ps */
    unsigned gone : 1;      /* the node answered 404 for it: not routable until next tags */
    unsigned in_flight;     /* requests for this model on this node now */
    /* Learned from real responses (EWMA); 0 = no sample yet. */
    double gen_tps;    /* eval_count / eval_duration */
    double prompt_tps; /* prompt_eval_count / prompt_eval_duration */
    double load_ms;    /* load_duration when the model was cold */
    double ttfb_ms;    /* request sent -> first byte */
    unsigned samples;
    /* Until this pair has a sample of its own: its speeds inferred from the
     * rest of the table (this model's speed on other nodes, scaled by how
     * this node compares with them on models both ran). 0 = no inference.
     * Written by the balancer after each learned sample. */
    double prior_gen_tps, prior_prompt_tps;

    /* Cold: facts for the aggregated endpoints and stats. */
    char name[SOL_MODEL_NAME_MAX]; /* canonical, e.g. "llama3.2:latest" */
    char digest[72];               /* hex, without "sha256:" */
    uint64_t size;                 /* bytes on disk */
    uint64_t size_vram;            /* bytes in VRAM when loaded */
    int64_t expires_at_ms;         /* wall clock (Unix ms) from /api/ps; 0 unknown */
    int64_t modified_at_ms;        /* wall clock (Unix ms) from /api/tags; 0 unknown */
    char *tags_entry;              /* the node's /api/tags object for it (JSON text), owned */
    char *ps_entry;                /* the node's /api/ps object for it (JSON text), owned */
};

/* One slot of a node's model index: pos = position in models[] + 1
 * (0 = empty). */
struct sol_model_slot {
    uint64_t key;
    unsigned pos;
};

/* Default of health.max_models_per_node. */
#define SOL_NODE_MAX_MODELS_DEFAULT 4096

struct sol_node {
    /* identity (from config) */
    unsigned index; /* position in the table, stable for its lifetime */
    char *name;
    char *base_url;             /* "http://host:port[/prefix]" without trailing slash */
    char *host_header;          /* "Host: host:port" */
    struct curl_slist *headers; /* Host plus configured outbound headers; owned */
    unsigned max_concurrent;    /* slots: at most this many requests in flight */
    double weight;              /* > 0; cost is divided by it (2 = twice as attractive) */
    /* Membership (written by daemon.c on reload and by discovery): a removed
     * node is kept down, unprobed and hidden, never freed before the daemon,
     * so requests, fan-out legs and affinity entries that still point at it
     * stay valid while what it serves finishes. */
    unsigned removed : 1;
    unsigned discovered : 1; /* found by discovery.c, not in the config file */
    unsigned left_logged : 1;

    /* health (written by the health side only) */
    enum sol_node_state state;
    struct sol_breaker breaker;
    double rtt_ms; /* EWMA of probe round trips; 0 = unknown */
    uint64_t last_probe_ok_ms;
    uint64_t tags_at_ms;  /* when /api/tags last succeeded */
    char version[32];     /* from /api/version */
    char last_error[160]; /* last failure, for stats */

    /* models (health side writes facts, put() writes learned numbers).
     * At most the configured cap (health.max_models_per_node): a node that
     * lists more has the rest ignored, and entries the node no longer lists
     * (neither installed nor loaded, no request running) are dropped at each
     * probe, so a node cannot grow the daemon's memory (health.h). */
    struct sol_node_model *models;
    unsigned n_models, cap_models;
    /* models[] indexed by key (open addressing, linear probing), so finding
     * a node's entry for a model is O(1) however many it lists; kept in step
     * by health.c (sol_node_model_get, evictions). NULL = no index (tables
     * built by hand): sol_node_find_model() scans models[]. */
    struct sol_model_slot *model_index;
    unsigned index_bits;        /* 1 << index_bits slots, at least twice n_models */
    unsigned models_dropped;    /* names the last /api/tags listed beyond the cap */
    unsigned ps_models_dropped; /* the same for the last /api/ps */

    /* load (written by the balancer) */
    unsigned in_flight;
    /* Expected end (loop clock, ms) of each attempt running here whose
     * dispatcher asked for tracking, unordered. With every slot taken, the
     * scorer prices a node's wait from the soonest of these ends instead of
     * assuming the running requests are like the new one. */
    uint64_t *running_eta;
    unsigned n_running, cap_running;

    /* A virtual node (coordinator.c's "rpc"): its health is written by its
     * owner module, never probed; held = routable, but no slot may start
     * yet (llama-server is loading), so requests wait in the queue. */
    int external;
    int held;

    /* counters (monotonic, for stats) */
    uint64_t requests_total;
    uint64_t failures_total;
};

struct sol_node_table {
    struct sol_node **nodes;
    unsigned count;
};

/* Why an attempt on a node ended, as the balancer needs to know it. */
enum sol_attempt_result {
    SOL_ATTEMPT_OK = 0,         /* the node answered (any status that is not a node fault) */
    SOL_ATTEMPT_CONNECT_FAILED, /* could not connect or the connection broke before headers */
    SOL_ATTEMPT_TIMEOUT,        /* no first byte, or idle between chunks, past the timeout */
    SOL_ATTEMPT_SERVER_ERROR,   /* 5xx, 429 or 503 busy */
    SOL_ATTEMPT_AUTH_REJECTED,  /* 401/403 */
    SOL_ATTEMPT_MODEL_MISSING,  /* 404 model not found on a node that listed it */
    SOL_ATTEMPT_BROKEN_STREAM,  /* failed after the response started */
    SOL_ATTEMPT_CANCELLED,      /* the client went away: says nothing about the node */
};

/* The nodes one request has already tried, so a retry goes elsewhere.
 * Bounded by the maximum number of attempts; no allocation. */
#define SOL_MAX_ATTEMPTS 8
struct sol_tried {
    unsigned count;
    unsigned index[SOL_MAX_ATTEMPTS];
};

#endif
