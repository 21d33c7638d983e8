/*
 * llama_sim.h - private declarations shared by the llama-server stand-in's
 * sources (see llama_server.c for what the program does).
 *
 *   llama_server.c  command line, RPC backends, start-up, signals, shutdown,
 *                   small output helpers
 *   llama_http.c    libmicrohttpd plumbing (suspend/resume, streaming reader,
 *                   hang-up watch), routing, the non-generating routes
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

#include "sollol/buf.h"
#include "sollol/mhd_uv.h"
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

enum phase { PH_RECEIVING = 0, PH_WAITING, PH_READY, PH_STREAMING, PH_SENT };

struct req {
    struct req *next, *prev; /* live requests */
    struct req *q_next;      /* waiting for a slot */
    struct MHD_Connection *conn;
    enum route route;
    int is_post;
    enum phase phase;
    int suspended, cancelled, mhd_done, queued;
    int handles_open;
    int timer_init;
    uv_timer_t timer;
    int watch_init;
    struct sol_hangup_watch watch;
    struct sol_buf body;
    int body_too_large;
    cJSON *json;

    /* response */
    int status;
    const char *ctype;
    int cb_resp;
    int out_done;
    struct sol_buf out;

    /* generation */
    int slot;    /* held now, -1 none */
    int slot_id; /* the slot it ran on (reported after release) */
    int stream;
    int n_predict; /* -1: until end of sequence */
    int limit_given;
    int json_mode; /* response_format / json_schema: the text is a JSON object */
    char *stops[MAX_STOPS];
    int nstops;
    uint64_t prng;
    uint64_t seed;
    struct sol_buf prompt; /* what the slot cache compares */
    int prompt_n, cache_n;
    int n_done, n_target;
    struct sol_buf text; /* generated, before stop-word cutting */
    size_t sent;         /* bytes of text already emitted */
    const char *stop_type;
    char stopping_word[128];
    uint64_t t_start, t_prompt_done, t_end;
    char id[40];
    long long created;
};

struct slot {
    int busy;
    struct sol_buf cache; /* the prompt it processed last */
};

struct recent {
    char path[64];
    char *body; /* as received, cut at 64 KiB */
};

/* The whole program state: one instance, g_ls, defined in llama_server.c. */
struct llama_sim {
    uv_loop_t loop;
    struct MHD_Daemon *daemon;
    struct sol_mhd_uv glue;
    uv_timer_t kick, load_timer, crash_timer;
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
    struct req *live;
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

uint64_t now_ns(void);                     /* monotonic */
double ms_between(uint64_t a, uint64_t b); /* 0 when b <= a */
/* One line to stderr in a single write(2) (lines never interleave). */
void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Out of memory: logs and aborts (a stand-in has no better answer). */
void die_oom(void) __attribute__((noreturn));
/* Appending helpers that cannot fail (they die_oom instead). */
void put(struct sol_buf *b, const char *s);
void putn(struct sol_buf *b, const char *s, size_t n);
void put_json_str(struct sol_buf *b, const char *s, size_t n); /* quoted, escaped */
void put_double(struct sol_buf *b, double v);                  /* non-finite as 0 */
#define PUTF(b, ...)                                                                               \
    do {                                                                                           \
        if (sol_buf_appendf((b), __VA_ARGS__) < 0)                                                 \
            die_oom();                                                                             \
    } while (0)

/* ---------------------------------------------------------------- llama_http.c */

/* Starts libmicrohttpd on the listening socket (owned from then on) and
 * attaches it to g_ls.loop. Returns 0, or -1 after logging. */
int http_start(int listen_fd);
/* Cancels every live request and closes the HTTP side; the loop ends once
 * MHD stopped and every request handle is closed. */
void http_shutdown(void);
/* A response is prepared in r->out (or a stream set up): send it. */
void req_ready(struct req *r);
/* Streaming: data was appended to r->out. */
void req_wake(struct req *r);
/* r->out holds a JSON body: send it with `status`. */
void req_json(struct req *r, int status);
/* Replaces r->out with llama-server's error {"error":{"code","message","type"}}. */
void req_error(struct req *r, int status, const char *type, const char *msg);
/* (Re)arms the request's one timer; `cb` gets the uv_timer_t whose data is r. */
void req_timer(struct req *r, double ms, uv_timer_cb cb);
/* Client gone or shutdown: stops its timer and gives back its slot or queue place. */
void req_cancel(struct req *r);

/* ---------------------------------------------------------------- llama_gen.c */

uint64_t mix64(uint64_t x);  /* splitmix64 finaliser */
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
