/*
 * simhttp.h - the HTTP core shared by the simulators (ollama-sim and the
 * llama-server stand-in): libmicrohttpd in external epoll mode on a libuv
 * loop (sollol/mhd_uv.h), and the lifecycle of every request.
 *
 * A program embeds struct simhttp_req as the FIRST member of its own
 * request object and gives the core a table of callbacks (struct
 * simhttp_ops). Lifecycle of a request:
 *   - created on the first access-handler call: ops->alloc, the core fills
 *     in its part (connection, method, path, live list), then ops->begin;
 *   - body collected on the next calls (ops->body may take bytes itself;
 *     the rest is kept in `body` up to cfg.max_body, then body_too_large);
 *   - dispatched on the final call (ops->dispatch, phase SIMHTTP_WAITING). A
 *     handler either prepares a response at once (simhttp_ready: queued
 *     before the access handler returns) or leaves the request waiting: the
 *     connection is then suspended and a hang-up watch is started on its
 *     socket, because MHD 0.9.75 does not poll suspended connections;
 *   - streams use a callback response (cb_resp) whose reader suspends the
 *     connection when nothing is buffered; producers append to `out` and
 *     call simhttp_wake;
 *   - it ends in MHD's completion callback (ops->end with SIMHTTP_DONE_*);
 *     its uv handles are closed there and ops->destroy runs once the last
 *     close callback has run, never inside a callback still using it.
 *
 * One loop, one thread: nothing here is thread-safe, and every callback
 * runs on the loop.
 */
#ifndef SOLLOL_SIM_SIMHTTP_H
#define SOLLOL_SIM_SIMHTTP_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "sbuf.h"
#include "sollol/mhd_uv.h"

/* Request methods as bits, so that routes can name sets of them. */
enum {
    SIMHTTP_GET = 1,
    SIMHTTP_HEAD = 2,
    SIMHTTP_POST = 4,
    SIMHTTP_PUT = 8,
    SIMHTTP_DELETE = 16,
    SIMHTTP_OPTIONS = 32,
    SIMHTTP_PATCH = 64,
    SIMHTTP_OTHER = 128,
};

/* Content type of the simulators' JSON answers (gin's and llama.cpp's). */
#define SIMHTTP_JSON "application/json; charset=utf-8"

enum simhttp_phase {
    SIMHTTP_RECEIVING = 0, /* headers and body arriving */
    SIMHTTP_WAITING,       /* dispatched, no response yet: suspended */
    SIMHTTP_READY,         /* a response is prepared, waiting to be queued */
    SIMHTTP_STREAMING,     /* a callback response is queued */
    SIMHTTP_SENT,          /* a buffered response is queued */
};

/* Why ops->end runs. */
enum simhttp_end {
    SIMHTTP_HANGUP,     /* the client went away while the request waited */
    SIMHTTP_SHUTDOWN,   /* simhttp_shutdown: every live request */
    SIMHTTP_DONE_OK,    /* MHD finished the request, the response fully sent */
    SIMHTTP_DONE_ERROR, /* MHD finished it otherwise (client gone, write error) */
};

struct simhttp;

struct simhttp_req {
    /* Owned by the core while the request lives; the program may use
     * `next` for its own free list once ops->destroy has it. */
    struct simhttp_req *next, *prev; /* the server's live list */
    struct simhttp *srv;
    struct MHD_Connection *conn;
    unsigned method; /* one SIMHTTP_* bit */
    char path[512];  /* the URL as received, cut at 511 bytes */
    enum simhttp_phase phase;
    int suspended; /* the core suspended the connection */
    int cancelled; /* client gone or shutdown: answer nothing more */
    int mhd_done;  /* MHD's completion callback ran */
    int handles_open;
    int timer_init, timer_active;
    uv_timer_t timer;
    void (*timer_cb)(struct simhttp_req *r);
    int watch_init;
    struct sol_hangup_watch watch;

    /* Request body (what ops->body did not take). */
    struct sbuf body;
    int body_too_large;

    /* Response, set by the program before simhttp_ready. */
    int status;
    const char *ctype;    /* Content-Type, NULL for none */
    const char *hdr_name; /* one more header (static string), NULL for none */
    char hdr_val[256];
    int cb_resp;     /* stream `out` through a callback response */
    int drop;        /* close the connection instead of answering */
    struct sbuf out; /* the whole body, or a stream's pending bytes */
    size_t out_off;  /* streaming: bytes of `out` already handed to MHD */
    int out_done;    /* streaming: nothing more will be appended */
    int out_cut;     /* streaming: end with an error once drained */
};

struct simhttp_ops {
    /* Required. Memory for a new request, or NULL (the connection is then
     * refused). Its simhttp_req must be zeroed, except that `body` and
     * `out` may keep an allocation (with len 0) when recycled. */
    struct simhttp_req *(*alloc)(void);
    /* Optional. The core's part is filled in (conn, method, path); `url` is
     * the URL uncut. The program routes and records the request here. */
    void (*begin)(struct simhttp_req *r, const char *url);
    /* Optional. A piece of the body; return 1 when it was consumed here,
     * 0 to have the core append it to r->body. */
    int (*body)(struct simhttp_req *r, const char *data, size_t n);
    /* Required. The body is complete: answer (simhttp_ready) or leave the
     * request waiting (phase SIMHTTP_WAITING, set before the call). */
    void (*dispatch)(struct simhttp_req *r);
    /* Optional. Called by simhttp_ready before the response is marked
     * ready; returning 0 holds it back (the request keeps waiting). */
    int (*before_ready)(struct simhttp_req *r);
    /* Optional. The response was queued to MHD (headers are on their way). */
    void (*sent)(struct simhttp_req *r);
    /* Optional. A stream's reader reached its end (out_done, all sent). */
    void (*stream_end)(struct simhttp_req *r);
    /* Optional. The request stops: give back what it holds (slot, queue
     * place). For HANGUP and SHUTDOWN `cancelled` is set and the timer
     * stopped already; DONE_* is the last call before the request's
     * handles close (mhd_done set). Runs more than once for a request
     * that hangs up or is shut down (then DONE_* follows): be idempotent. */
    void (*end)(struct simhttp_req *r, enum simhttp_end why);
    /* Required. Every handle of the request is closed: free it (including
     * body and out) or keep it for reuse. */
    void (*destroy)(struct simhttp_req *r);
    /* Optional. 0 refuses a new connection (before any byte is read). */
    int (*accept)(void);
};

struct simhttp_config {
    const struct simhttp_ops *ops;
    size_t max_body;           /* bytes kept in r->body at most */
    unsigned connection_limit; /* 0: MHD's default */
    size_t connection_memory;  /* per-connection pool; 0: MHD's default */
    int log_errors;            /* MHD's own messages to sollol/log at info level */
    /* Headers added to every response: name, value, ..., NULL. */
    const char *const *headers;
};

struct simhttp {
    struct simhttp_config cfg;
    uv_loop_t *loop;
    struct MHD_Daemon *daemon;
    struct sol_mhd_uv glue;
    uv_timer_t kick;
    int kick_init;
    int stopping;             /* simhttp_shutdown ran */
    struct simhttp_req *live; /* every request MHD still knows */
    void (*done)(struct simhttp *s);
};

/* The program's object that embeds `member` (a struct simhttp_req). */
#define SIMHTTP_OWNER(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/*
 * Starts libmicrohttpd on listen_fd (a bound, listening socket) and
 * attaches it to `loop`. `s` must be zeroed and outlive the loop; cfg is
 * copied (its strings and ops must stay valid). Returns 0, or -1 after
 * closing listen_fd when MHD cannot start or be attached (the program logs).
 */
int simhttp_start(struct simhttp *s, uv_loop_t *loop, const struct simhttp_config *cfg,
                  int listen_fd);

/*
 * Stops the server: refuses new connections, marks every live request
 * cancelled, calls ops->end(SHUTDOWN) and resumes each one (MHD needs
 * them resumed to stop), then closes the glue and stops MHD, whose
 * completion callbacks end the requests. `done` (may be NULL) runs once
 * MHD is stopped; the loop ends when every request handle is closed.
 */
void simhttp_shutdown(struct simhttp *s, void (*done)(struct simhttp *s));

/* A response is prepared (out/status/ctype, or cb_resp for a stream): have
 * MHD send it. No effect once one was queued, or when ops->before_ready
 * holds it back. */
void simhttp_ready(struct simhttp_req *r);

/* Streaming: bytes were appended to r->out (or out_done/out_cut set):
 * resumes the reader if it waits. */
void simhttp_wake(struct simhttp_req *r);

/* Replaces r->out with `body` and sends it, buffered, with status and ctype. */
void simhttp_text(struct simhttp_req *r, int status, const char *ctype, const char *body);

/* r->out holds the whole body: sends it, buffered, with status and ctype. */
void simhttp_send(struct simhttp_req *r, int status, const char *ctype);

/* r->out holds a JSON document: simhttp_send with SIMHTTP_JSON. */
void simhttp_json(struct simhttp_req *r, int status);

/* Starts a stream: headers go out with status and ctype; the body is what
 * producers append to r->out (then simhttp_wake) until out_done. */
void simhttp_stream(struct simhttp_req *r, int status, const char *ctype);

/*
 * (Re)arms the request's one timer: cb(r) runs after delay_ns (rounded up
 * to whole milliseconds, so never early), unless the request was cancelled
 * or completed by then.
 */
void simhttp_timer_start(struct simhttp_req *r, uint64_t delay_ns,
                         void (*cb)(struct simhttp_req *r));
/* Stops the timer if armed. */
void simhttp_timer_stop(struct simhttp_req *r);

/* The SIMHTTP_* bit of a method name, SIMHTTP_OTHER if unknown. */
unsigned simhttp_method_bit(const char *method);
/* The name of a single SIMHTTP_* bit ("GET", ...), "OTHER" otherwise. */
const char *simhttp_method_name(unsigned bit);

#endif
