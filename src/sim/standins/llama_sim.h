/*
 * llama_sim.h - private declarations shared by the llama-server stand-in's
 * sources (see llama_server.c for what the program does).
 *
 *   llama_server.c  command line, RPC backends, start-up, signals, shutdown,
 *                   small output helpers
 *   llama_http.c    routing, API key, errors, the non-generating routes, on
 *                   the simulators' HTTP core (src/sim/common/simhttp.h)
 *   llama_gen.c     deterministic text, slots and their FIFO queue, token
 *                   pacing, the chat/completion/embedding formats
 *
 * One libuv loop on one thread drives everything; nothing here is shared
 * with another thread.
 */
#ifndef SOLLOL_LLAMA_SIM_H
#define SOLLOL_LLAMA_SIM_H

#include <cjson/cJSON.h>
#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sbuf.h"
#include "simgen.h"
#include "simhttp.h"
#include "standin.h"

#define MAX_BACKENDS   16
#define MAX_DEVICES    16
#define MAX_SPLIT      32
#define MAX_STOPS      8
#define MAX_BODY       (8u << 20)
#define RECENT_MAX     32
#define SLOT_CACHE_MAX (1u << 20)

/* ---------------------------------------------------------------- state */

struct backend {
    char endpoint[128];
    char host[96];
    int port;
    int fd;
    struct rpc_version ver;
    int ndev;
    uint64_t free_[MAX_DEVICES], total[MAX_DEVICES];
    uv_poll_t poll;
    int poll_init;
};

enum route {
    RT_NONE = 0,
    RT_HEALTH,
    RT_CHAT,
    RT_COMPLETION,
    RT_V1_COMPLETIONS,
    RT_EMBEDDINGS,
    RT_MODELS,
    RT_PROPS,
    RT_SLOTS,
    RT_METRICS,
    RT_SIM_STATS,
    RT_NOT_FOUND,
    RT_COUNT
};

/* A request: the HTTP core's part first (connection, phase, body, response
 * in h.out), then the stand-in's. */
struct req {
    struct simhttp_req h;
    struct req *q_next; /* waiting for a slot */
    enum route route;
    int queued;
    cJSON *json;

    /* generation */
    int slot;    /* held now, -1 none */
    int slot_id; /* the slot it ran on (reported after release) */
    int stream;
    int include_usage; /* stream_options.include_usage: usage in a last chunk of its own */
    int n_predict;     /* -1: until end of sequence */
    int limit_given;
    int json_mode; /* response_format / json_schema: the text is a JSON object */
    char *stops[MAX_STOPS];
    int nstops;
    uint64_t prng;
    uint64_t seed;
    struct sbuf prompt; /* what the slot cache compares */
    int prompt_n, cache_n;
    int n_done, n_target;
    struct sbuf text; /* generated, before stop-word cutting */
    size_t sent;      /* bytes of text already emitted */
    const char *stop_type;
    char stopping_word[128];
    uint64_t t_start, t_prompt_done, t_end;
    char id[40];
    long long created;
};

struct slot {
    int busy;
    struct sbuf cache; /* the prompt it processed last */
};

struct recent {
    char path[64];
    char *body; /* as received, cut at 64 KiB */
};

/* The whole program state: one instance, g_ls, defined in llama_state.c. */
struct llama_sim {
    uv_loop_t loop;
    struct simhttp http;
    uv_timer_t load_timer, crash_timer;
    uv_signal_t sigterm, sigint;
    int stopping;
    int ready;
    int argc;
    char **argv;

    /* flags */
    const char *model, *alias, *host, *api_key, *ngl, *split_mode, *mmproj, *lora;
    int port, ctx, np, metrics, embeddings, no_webui, timeout;
    double ts[MAX_SPLIT];
    int nts;
    struct backend be[MAX_BACKENDS];
    int nbe;

    /* knobs */
    struct rpc_version ver;
    double tps, prompt_tps, load_ms, crash_ms, default_tokens, fail_after;

    /* scheduling */
    struct slot *slots;
    struct req *q_head, *q_tail;
    int waiting, active, max_active;

    /* statistics */
    uint64_t requests, by_route[RT_COUNT];
    uint64_t prompt_tokens_total, predicted_total, completed;
    double prompt_ms_total, predicted_ms_total;
    struct recent recent[RECENT_MAX];
    int nrecent, recent_pos;
};

extern struct llama_sim g_ls;

/* ---------------------------------------------------------------- llama_server.c */

double ms_between(uint64_t a, uint64_t b); /* 0 when b <= a */
/* One line to stderr in a single write(2) (lines never interleave). */
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Out of memory: logs and aborts (a stand-in has no better answer). */
void die_oom(void) __attribute__((noreturn));
/* %.17g, non-finite as 0. */
void put_double(struct sbuf *b, double v);

/* ---------------------------------------------------------------- llama_http.c */

/* The req that embeds the core's request h. */
#define LREQ(hp) SIMHTTP_OWNER(hp, struct req, h)

/* Starts the HTTP side on the listening socket (closed on failure) and
 * attaches it to g_ls.loop. Returns 0, or -1 after logging. */
int http_start(int listen_fd);
/* Cancels every live request and closes the HTTP side; the loop ends once
 * MHD stopped and every request handle is closed. */
void http_shutdown(void);
/* Replaces r->h.out with llama-server's error {"error":{"code","message","type"}}
 * and sends it. */
void req_error(struct req *r, int status, const char *type, const char *msg);

/* ---------------------------------------------------------------- llama_gen.c */

int tokens_of(size_t bytes); /* prompt tokens: 1 per 4 bytes, at least 1 */
const char *model_id(void);  /* the alias, else the -m path */
/* Parses r->json (chat, /completion, /v1/completions) and starts or queues
 * the generation; answers an error itself. */
void handle_generate(struct req *r);
/* /v1/embeddings: prepares the answer, then takes a slot for its prompt time. */
void handle_embeddings(struct req *r);
/* Gives back r's slot (starting the next queued request on it) or removes
 * r from the queue. Idempotent. */
void slot_release(struct req *r);

#endif
