/*
 * sim.h - private declarations shared by the ollama-sim sources.
 *
 * ollama-sim is one libuv loop on one thread: libmicrohttpd runs in external
 * epoll mode (driven by sollol/mhd_uv.h), token pacing uses uv timers, and
 * requests that wait are suspended MHD connections watched for hang-up. The
 * request lifecycle, byte buffers and the token step are shared with the
 * llama-server stand-in (common/simhttp.h, sbuf.h, simgen.h).
 *
 *   main.c     CLI, start-up, signals, shutdown
 *   util.c     Go-compatible number/time formatting, Go durations
 *   models.c   installed models, name normalisation, load/unload/evict,
 *              keep-alive expiry, per-model slots, FIFO queue, prompt cache
 *   stats.c    counters and the ring of recent requests
 *   fault.c    the active fault and whether it applies to a request
 *   reply.c    answers: JSON/error shapes, the request timer, streaming
 *   jsonreq.c  request bodies decoded as Go's encoding/json would
 *   infer.c    generate/chat/embed and OpenAI routes: parsing, deterministic
 *              text and vectors, timing, NDJSON/SSE/JSON output
 *   api.c      non-inference Ollama routes (tags, ps, show, pull, ...)
 *   control.c  the /_sim/ control routes
 *   http.c     gin's routing, host check, faults before a handler, request
 *              free list; the simhttp hooks
 *
 * From util.c on, a file calls only the files listed before it (main.c
 * wires them all; g_sim is the program's state): models.c reaches the
 * inference layer only through the callback given to models_init, and
 * /_sim/stats gets the fault's JSON from control.c.
 */
#ifndef SOLLOL_SIM_H
#define SOLLOL_SIM_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sbuf.h"
#include "simgen.h"
#include "simhttp.h"
#include "sollol/sha256.h"

/* ---------------------------------------------------------------- util.c */

/* Shortest round-trip decimal, formatted as Go's encoding/json formats a
 * float32 (f32 != 0) or float64. */
void sb_json_float(struct sbuf *b, double v, int f32);
/* RFC 3339 with nanoseconds (trailing zeros trimmed, as Go's RFC3339Nano). */
void sb_rfc3339(struct sbuf *b, int64_t sec, long nsec);
void sb_now_rfc3339(struct sbuf *b);

/* Go's time.ParseDuration. Returns 0 and ns, or -1 with a Go-like message. */
int go_parse_duration(const char *s, int64_t *ns, char *err, size_t errlen);
/* Parses a size with an optional k/m/g suffix ("2019393189", "4g"). */
int parse_u64(const char *s, uint64_t *out);

double sim_ms(uint64_t ns); /* monotonic ms since start */
void wall_now(int64_t *sec, long *nsec);

/* ---------------------------------------------------------------- config */

struct sim_config {
    const char *listen;
    char name[64];
    char version[64];
    uint64_t seed;
    double tokens_per_second; /* 0 = no pacing */
    double contention;        /* per-stream slowdown per other active slot (0 = none) */
    double ttft_ms;
    double prompt_tps; /* 0 = instant */
    double load_ms;
    double embed_per_second; /* 0 = instant */
    int num_predict;
    int parallel;
    int max_queue;
    int max_loaded;
    int64_t keep_alive_ns; /* < 0 = forever */
    int host_check;        /* -1 auto (loopback only), 0 off, 1 on */
    int log_requests;
};

/* ---------------------------------------------------------------- models.c */

#define SIM_NAME_MAX 256

enum model_state { M_UNLOADED = 0, M_LOADING, M_LOADED };

struct sim_req;

struct sim_slot {
    int busy;
    uint64_t last_used;
    /* Prompt cache: what this slot processed last. */
    int cache_kind; /* 0 empty, 1 chat messages, 2 prompt bytes */
    uint64_t *msg_hash;
    uint32_t *msg_len;
    size_t nmsg, msg_cap;
    struct sbuf bytes;
};

struct req_queue {
    struct sim_req *head, *tail;
    int n;
};

struct sim_model {
    struct sim_model *next;
    char key[SIM_NAME_MAX];     /* lower-case host/namespace/model:tag */
    char display[SIM_NAME_MAX]; /* DisplayShortest, case as installed */
    int installed;
    int64_t size;
    char family[64];
    char params[32];
    char quant[32];
    char digest[65];
    char caps[128]; /* '+'-separated capabilities */
    int embed;
    int ctx;
    int dim;
    int64_t modified_sec;
    long modified_nsec;

    enum model_state state;
    int unload_when_idle;
    uint64_t loaded_at_ns;
    uint64_t load_started_ns;
    int64_t session_ns;  /* keep-alive of the latest request; < 0 forever */
    uint64_t expires_ns; /* monotonic, valid when idle and not forever */
    uint64_t last_used;  /* LRU sequence */
    int nslots;
    struct sim_slot *slots;
    int active;
    int max_active;
    struct req_queue queue; /* waiting for load or a slot, FIFO */
    uv_timer_t load_timer;
    uv_timer_t expire_timer;
    int timers_init;
    int dispatching;
};

/* Parsed model name (Ollama's model.ParseName with defaults). */
struct mname {
    char host[SIM_NAME_MAX], ns[SIM_NAME_MAX], model[SIM_NAME_MAX], tag[SIM_NAME_MAX];
};
int mname_parse(const char *s, struct mname *n); /* 1 when valid */
void mname_key(const struct mname *n, char *out, size_t outlen);
void mname_display(const struct mname *n, char *out, size_t outlen);

/* on_slot_ready(r): a queued request got its slot (r->slot set); installed
 * by the inference layer so the scheduler never names it. */
void models_init(uv_loop_t *loop, void (*on_slot_ready)(struct sim_req *r));
void models_shutdown(void); /* closes timers */
void models_free(void);
struct sim_model *model_find(const char *name); /* installed only */
struct sim_model *model_first(void);
/* Installs (or updates) from a CLI spec "name,attr=v,...". NULL + err on
 * a bad spec. `now_modified` stamps modified_at with the wall clock. */
struct sim_model *model_install_spec(const char *spec, int now_modified, char *err, size_t errlen);
struct sim_model *model_copy(struct sim_model *src, const char *dst_name);
int model_remove(struct sim_model *m);
void model_load_now(struct sim_model *m);
void model_request_unload(struct sim_model *m);
int models_loaded_count(void);
int models_waiting_total(void);
void models_reset_stats(void);

/* Scheduling. Returns 1 when the request got a slot now (req->slot set),
 * 0 when it was queued (it will get one later through infer_slot_ready). */
int model_acquire(struct sim_model *m, struct sim_req *r);
void model_release(struct sim_req *r); /* slot or queue, idempotent */
/* Computes cached tokens for the request on its slot and stores its prompt
 * as the slot's new cache. */
int slot_match_prefix(struct sim_model *m, int slot, struct sim_req *r);
void slot_store(struct sim_model *m, int slot, struct sim_req *r);

/* ---------------------------------------------------------------- faults */

enum fault_mode {
    F_NONE = 0,
    F_REFUSE,
    F_500,
    F_503,
    F_429,
    F_HANG,
    F_STALL,
    F_CLOSE,
    F_404,
    F_SLOW,
    F_RESET,
};

/* close and reset cut the connection at the same point; reset makes the
 * kernel answer with a TCP RST (SO_LINGER 0) instead of a FIN. */
static inline int fault_cuts(enum fault_mode f)
{
    return f == F_CLOSE || f == F_RESET;
}

struct sim_fault {
    enum fault_mode mode;
    int64_t arg;
    int64_t count; /* < 0 = until changed */
    int scope_all;
    char model_key[SIM_NAME_MAX];
    uint64_t until_ns; /* refuse: 0 = no deadline */
};

/* ---------------------------------------------------------------- http.c */

enum route {
    R_NONE = 0,
    R_ROOT,
    R_VERSION,
    R_STATUS,
    R_TAGS,
    R_PS,
    R_SHOW,
    R_GENERATE,
    R_CHAT,
    R_EMBED,
    R_EMBEDDINGS,
    R_PULL,
    R_PUSH,
    R_CREATE,
    R_COPY,
    R_DELETE,
    R_BLOB_HEAD,
    R_BLOB_POST,
    R_ME,
    R_SIGNOUT,
    R_USER_KEYS,
    R_V1_CHAT,
    R_V1_COMPLETIONS,
    R_V1_EMBEDDINGS,
    R_V1_MODELS,
    R_V1_MODEL,
    R_SIM_STATS,
    R_SIM_RESET,
    R_SIM_FAULT,
    R_SIM_MODELS,
    R_NOT_FOUND,
    R_NOT_ALLOWED,
    R_REDIRECT,
    R_OPTIONS,
};

static inline int route_is_v1(enum route rt)
{
    return rt == R_V1_CHAT || rt == R_V1_COMPLETIONS || rt == R_V1_EMBEDDINGS ||
           rt == R_V1_MODELS || rt == R_V1_MODEL;
}

/* The routes a fault of scope "inference" applies to. */
static inline int route_is_inference(enum route rt)
{
    return rt == R_GENERATE || rt == R_CHAT || rt == R_EMBED || rt == R_EMBEDDINGS ||
           route_is_v1(rt);
}

static inline const char *model_state_name(const struct sim_model *m)
{
    return m->state == M_LOADED ? "loaded" : m->state == M_LOADING ? "loading" : "unloaded";
}

enum infer_kind { IK_NONE = 0, IK_GENERATE, IK_CHAT, IK_EMBED, IK_EMBEDDINGS, IK_STREAM_LINES };
enum out_fmt { OF_OLLAMA = 0, OF_V1_CHAT, OF_V1_COMPLETION, OF_V1_EMBED };

/* A request: the HTTP core's part first (simhttp.h: connection, phase,
 * body, response), then ollama-sim's. */
struct sim_req {
    struct simhttp_req h;
    struct sim_req *q_next, *q_prev;
    struct sim_model *q_model; /* queued on this model */
    uint64_t id;
    int rec;        /* stats ring index, -1 when not recorded */
    int is_control; /* /_sim/ route: no stats, no faults */
    enum route route;
    int finished;     /* outcome recorded */
    int work_done;    /* left the in_flight count (stats_work_done) */
    int outcome_kind; /* 0 completed, 1 cancelled, 2 fault, 3 error */
    void (*timer_cb)(struct sim_req *r);
    uint64_t t_recv;

    /* request */
    char param[SIM_NAME_MAX]; /* :digest or :model */
    uint64_t body_fnv;
    uint64_t body_total;
    struct sol_sha256 sha; /* blob uploads */
    cJSON *json;
    char model_name[SIM_NAME_MAX]; /* as sent */
    struct sim_model *model;
    int stream;       /* effective */
    int stream_given; /* -1 absent/null, 0 false, 1 true */

    /* fault applied to this request */
    enum fault_mode fault;
    int64_t fault_arg;

    /* response (the rest is in h) */
    int lines_out;   /* streamed chunks appended so far */
    int lines_limit; /* close/stall: chunk budget, -1 none */

    /* inference */
    enum infer_kind ik;
    enum out_fmt of;
    int slot; /* -1 none */
    int want_load_only;
    int want_unload;
    int raw;
    int include_usage;
    int n_predict;
    int predict_given;
    int n_done;
    int gen_offset; /* tokens of the answer before this request's (a prefill) */
    int thinks;     /* the model thinks for this request */
    int n_think;    /* of n_predict, the first n_think tokens are thinking */
    uint64_t think_prng;
    /* A tool call answers instead of text when tool_call[0] (Ollama's JSON
     * of the call; tool_args: its arguments object). */
    char tool_call[1024];
    char tool_args[640];
    char tool_name[128];
    char tool_id[24];
    int prompt_tokens;
    int cached_tokens;
    int64_t session_ns;
    int session_given;
    uint64_t prng;
    uint64_t gen_seed;
    uint64_t ctx_seed;
    uint64_t msg_hash_inline[8];
    uint32_t msg_len_inline[8];
    uint64_t *msg_hash;
    uint32_t *msg_len;
    size_t nmsg;
    const char *prompt; /* generate: points into json */
    size_t prompt_len;
    int n_inputs;     /* embed */
    int embed_base64; /* /v1/embeddings with encoding_format "base64" */
    int dims;
    uint64_t interval_ns;
    uint64_t t_loaded, t_slot, t_prompt_done, t_end;
    uint64_t eval_ns_total;
    struct sbuf text; /* generated text (chat/v1 non-streamed, slot cache) */
    char oai_id[32];
    int64_t oai_created; /* streamed /v1 chat: the first chunk's time, on all */
    int oai_role_sent;   /* streamed /v1 chat: the role went out (first chunk) */
    int64_t created_sec;
    long created_nsec;
    /* Pre-built lines for pull/create/push (IK_STREAM_LINES). */
    struct sbuf lines;
    size_t lines_off;
};

struct sim {
    struct sim_config cfg;
    uv_loop_t loop;
    struct simhttp http;
    uv_signal_t sigint, sigterm, sigusr1;
    uv_pipe_t stdin_pipe; /* --exit-on-stdin-eof: the parent's end of our stdin */
    int watch_stdin;
    int shutting_down;
    int host_is_loopback;
    char hostname[256];
    struct sim_req *freelist; /* linked through h.next */
    int nfree;
    uint64_t next_id;
    uint64_t start_ns;
    struct sim_fault fault;
};

extern struct sim g_sim;

/* The sim_req that embeds the core's request h (NULL stays NULL). */
#define SIM_REQ(hp)         SIMHTTP_OWNER(hp, struct sim_req, h)
#define SIM_REQ_OR_NULL(hp) ((hp) ? SIM_REQ(hp) : NULL)

/* Starts the HTTP side on a listening socket (closed on failure). */
int http_start(int listen_fd);
void http_shutdown(void (*done)(void));
void http_free(void); /* the request free list, after the loop ended */
/* Response prepared: send it (see simhttp_ready; faults may hold it back). */
static inline void req_ready(struct sim_req *r)
{
    simhttp_ready(&r->h);
}
/* Streaming data appended. */
static inline void req_wake(struct sim_req *r)
{
    simhttp_wake(&r->h);
}
static inline void req_timer_stop(struct sim_req *r)
{
    simhttp_timer_stop(&r->h);
}

/* ---------------------------------------------------------------- reply.c */

/* The request's one timer: cb(r) after delay_ns unless cancelled first. */
void req_timer_start(struct sim_req *r, uint64_t delay_ns, void (*cb)(struct sim_req *r));
/* Prepares a JSON error response in the shape of the request's route. */
void req_error(struct sim_req *r, int status, const char *msg);
void req_error_oai(struct sim_req *r, int status, const char *type, const char *msg, int nl);
void req_json_ok(struct sim_req *r);        /* status 200, application/json; charset=utf-8 */
void stream_lines_start(struct sim_req *r); /* pull/create/push: r->lines, one per chunk */
/* Streaming: appends one chunk; returns 0 when a close/stall fault says the
 * stream must stop producing. */
int stream_emit(struct sim_req *r, const char *data, size_t n);
/* After producing: send headers with the first chunk, or wake the reader. */
void stream_flush(struct sim_req *r);
/* The reset fault: the connection's close will be a TCP RST (SO_LINGER 0).
 * Bytes already written still reach the client first. */
void req_arm_reset(struct sim_req *r);
/* Aborts the connection now with a RST (the request is ending in error). */
void req_reset_now(struct sim_req *r);

/* ---------------------------------------------------------------- api.c */

void api_handle(struct sim_req *r); /* non-inference Ollama routes */
/* details{...}; lengths: with context_length and embedding_length (tags). */
void api_model_details(struct sbuf *b, const struct sim_model *m, int lengths);
void api_free(void);

/* ---------------------------------------------------------------- jsonreq.c */

/* The request's JSON object, or NULL after preparing Go's decoding error
 * (OpenAI error shape when oai). */
cJSON *req_body_object(struct sim_req *r, const char *gotype, int oai);
/* Checks a field's JSON type as Go's decoder would; 0 after preparing a 400.
 * type is a cJSON type bit (cJSON_True stands for any bool). */
int json_field(struct sim_req *r, const cJSON *obj, const char *key, int type, const char *gotype,
               const char *gofieldtype, int oai, const cJSON **out);
const char *json_str(const cJSON *obj, const char *key);
/* Rewrites a parsed request as Go's decoder sees it: keys of the request
 * struct (top level, messages[], stream_options) folded to their field's
 * lower-case tag, one member per field (the last; a null after a plain
 * string/number/bool keeps the earlier value), options deduplicated by exact
 * key, message roles lower-cased. Idempotent. */
void go_json_fold(cJSON *root);

/* ---------------------------------------------------------------- infer.c */

void infer_handle(struct sim_req *r);
void infer_slot_ready(struct sim_req *r); /* given to models_init */
void infer_cancel(struct sim_req *r);

/* ---------------------------------------------------------------- control.c */

void control_handle(struct sim_req *r);

/* ---------------------------------------------------------------- fault.c */

extern const char *const FAULT_NAMES[]; /* indexed by enum fault_mode */
void fault_json(struct sbuf *b);        /* the active fault */
int fault_parse_mode(const char *s, struct sim_fault *f, char *err, size_t errlen);
/* Returns the fault to apply to this request (consuming one count), or F_NONE. */
enum fault_mode fault_take(struct sim_req *r, int64_t *arg);
int fault_refuse_connection(void);
void fault_clear(void);

/* ---------------------------------------------------------------- stats.c */

void stats_init(void);
void stats_free(void);
void stats_begin(struct sim_req *r); /* records headers, assigns r->rec */
void stats_first_byte(struct sim_req *r);
void stats_outcome(struct sim_req *r, const char *outcome);
void stats_end(struct sim_req *r, int cancelled);
void stats_work_done(struct sim_req *r);
void stats_request_info(struct sim_req *r); /* model, stream, body hash */
void stats_infer(struct sim_req *r);        /* slot and prompt tokens */
void stats_fault_injected(void);
void stats_connection(void); /* one accepted connection (connections_total) */
void stats_reset(void);
/* The /_sim/stats body; fault: the active fault's JSON (fault_json), given
 * by the caller so that statistics stay below the fault module. */
void stats_json(struct sbuf *b, uint64_t since, const struct sbuf *fault);

#endif
