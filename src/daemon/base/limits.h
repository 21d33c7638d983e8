/*
 * limits.h - what one client may cost: connections per client address, the
 * time allowed to send a request's headers (slowloris), and the sizes of
 * the request target and header fields, each answered with a clear error.
 *
 * libmicrohttpd enforces the hard limits itself (total connections, a
 * per-address backstop, its memory pool); this module tracks every client
 * connection through MHD's connection notifications to give the soft ones
 * an answer in Ollama's error shape. Everything runs on the loop thread;
 * the cost is one small record per open connection.
 */
#ifndef SOLLOL_LIMITS_H
#define SOLLOL_LIMITS_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define SOL_LIMITS_BUCKETS 256

struct sol_limits_addr; /* one per client address with open connections */

/* One per client connection (MHD's socket context). */
struct sol_limits_conn {
    struct sol_limits_conn *prev, *next;
    struct sol_limits_addr *addr;
    struct MHD_Connection *conn;
    uint64_t deadline_ms;      /* headers (or, in_body, the next body byte) due by then; 0 = none */
    int over;                  /* opened while its address was at the limit */
    int in_body;               /* a request body is being received (sol_limits_body_begin) */
    uint64_t body_start_ms;    /* when its body began */
    uint64_t body_progress_ms; /* when its body last advanced (or began) */
    unsigned long long body_bytes;   /* body bytes received so far */
    unsigned long long body_charged; /* bytes counted against the body budgets */
};

struct sol_limits_conf {
    unsigned long long max_url_bytes;
    unsigned long long max_header_bytes;
    unsigned max_per_client; /* 0 = no limit */
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms; /* MHD's idle timeout for client connections */
    /* Request bodies held in memory, all clients together and per client
     * address (0 = no limit): 503 with Retry-After beyond. */
    unsigned long long body_budget_bytes;
    unsigned long long body_budget_per_client;
    /* A body must average at least this many bytes per second once
     * body_grace_ms have passed (0 = no minimum): cut below. */
    unsigned min_body_rate;
    unsigned body_grace_ms;
    /* Failed authentications per client address: a token bucket of
     * auth_fail_burst tokens refilled auth_fail_per_ms each ms (burst 0 = off). */
    double auth_fail_per_ms;
    double auth_fail_burst;
};

/* The failed-authentication bucket of one client address (IPv6: its /64). */
struct sol_limits_authfail {
    unsigned char bytes[16];
    unsigned char len; /* 0 = empty slot */
    double tokens;
    uint64_t last_ms;
};
#define SOL_LIMITS_AUTHFAIL_SLOTS 4096

struct sol_limits {
    struct sol_limits_conf conf;
    uv_loop_t *loop;
    struct sol_limits_conn *conns; /* every open client connection */
    unsigned n_conns;
    struct sol_limits_addr *buckets[SOL_LIMITS_BUCKETS];
    uint64_t cut_slow_headers; /* connections cut for sending headers too slowly */
    uint64_t refused_per_client;
    uint64_t closed_by_peer;        /* connections whose hang-up MHD had missed (see sweep) */
    uint64_t peer_check_ms;         /* when the sweep last looked for such hang-ups */
    uint64_t next_deadline_ms;      /* no connection's header deadline is earlier */
    unsigned long long body_total;  /* body bytes counted against body_budget_bytes */
    uint64_t cut_slow_body;         /* connections cut for sending a body too slowly */
    uint64_t cut_no_progress;       /* connections cut for keeping MHD busy without progress */
    uint64_t refused_body_budget;   /* requests refused because the body budget was full */
    uint64_t refused_auth_failures; /* requests refused: too many failed authentications */
    struct sol_limits_authfail *authfail; /* SOL_LIMITS_AUTHFAIL_SLOTS, allocated on first use */
    unsigned mhd_per_ip; /* sol_limits_mhd_per_ip() at init: MHD keeps it until a restart */
    size_t mhd_pool;     /* sol_limits_mhd_pool() at init, likewise */
};

/* Sets up an empty tracker. No allocation. */
void sol_limits_init(struct sol_limits *l, uv_loop_t *loop, const struct sol_limits_conf *conf);

/* MHD's hard per-address connection limit to pass as
 * MHD_OPTION_PER_IP_CONNECTION_LIMIT (0 = none): twice the soft limit, so
 * the soft limit can answer 429 while a flood is still bounded. */
unsigned sol_limits_mhd_per_ip(const struct sol_limits *l);

/* MHD's per-connection memory pool size: room for the largest accepted
 * request target and header fields plus 4 KiB for the read and write
 * buffers (at least 16 KiB), so that requests within the limits are never
 * refused by MHD itself, and no larger: MHD clears the pool after every
 * request. */
size_t sol_limits_mhd_pool(const struct sol_limits *l);

/* MHD_NotifyConnectionCallback; cls is the struct sol_limits. Records and
 * forgets connections (and their address counts). */
void sol_limits_on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                              enum MHD_ConnectionNotificationCode code);

/*
 * First call of the access handler for a request: its headers are in, so
 * its header deadline is lifted. Returns 0 when the request may go on, or
 * the status to answer (429 too many connections from this address, 414
 * request target too long, 431 header fields too large) with msg filled.
 */
unsigned sol_limits_check_request(struct sol_limits *l, struct MHD_Connection *conn,
                                  const char *url, char *msg, size_t msglen);

/* A request on conn ended (MHD's request-completed callback): the next
 * request's headers are due within the idle timeout plus the header
 * timeout. */
void sol_limits_request_done(struct sol_limits *l, struct MHD_Connection *conn);

/*
 * Cuts connections whose headers are overdue: their socket is shut down,
 * so MHD sees the end of the stream and closes them on its next run (no
 * answer is sent: the client has not finished asking). Returns how many
 * were cut. Call periodically (the daemon's sweep timer).
 *
 * Also, at most once a second, ends the same way every connection that is
 * not suspended and whose client has already hung up. Why: in epoll mode
 * libmicrohttpd 0.9.75 takes a short read as "socket drained"; when the
 * rest of a partial request and the client's FIN arrive together, the FIN
 * is never read, no new edge comes, and the connection would sit in
 * CLOSE_WAIT (holding a descriptor) until MHD's idle timeout. Suspended
 * connections are the request's own hang-up watch's job. Costs one
 * recv(MSG_PEEK) per open connection per second. Those are not counted in
 * the return value (closed_by_peer counts them).
 */
unsigned sol_limits_sweep(struct sol_limits *l, uint64_t now_ms);

/* Open client connections. */
unsigned sol_limits_connections(const struct sol_limits *l);

/* Replaces the soft limits of a running tracker (reload). Connections
 * keep their records; deadlines already set stay until they are next set. */
void sol_limits_set_conf(struct sol_limits *l, const struct sol_limits_conf *conf);

/* Frees what the tracker allocated (the failed-authentication table). */
void sol_limits_free(struct sol_limits *l);

/*
 * Request bodies. begin: the request on conn has a body on its way
 * (`declared` bytes by Content-Length, 0 when chunked or unknown); the
 * declared size is counted against the body budgets at once. Returns 0,
 * or 503 (a budget is full; *retry_s set, msg filled) or 413 (the
 * declared size exceeds the whole budget). data: n more bytes arrived;
 * with `charge` they are counted against the budgets beyond what was
 * declared, and -1 is returned (nothing counted) when a budget is full.
 * release: the body's memory was freed (dropped, sent, or the request
 * ended); its bytes no longer count. done: the whole body arrived, the
 * minimum rate no longer applies. All are no-ops for an untracked conn.
 */
unsigned sol_limits_body_begin(struct sol_limits *l, struct MHD_Connection *conn,
                               unsigned long long declared, unsigned *retry_s, char *msg,
                               size_t msglen);
int sol_limits_body_data(struct sol_limits *l, struct MHD_Connection *conn, size_t n, int charge);
void sol_limits_body_release(struct sol_limits *l, struct MHD_Connection *conn);
void sol_limits_body_done(struct sol_limits *l, struct MHD_Connection *conn);

/*
 * MHD asked to be run again at once, without pause, since since_ms (the
 * glue's spin report, mhd_uv.h): a connection whose input MHD can neither
 * use nor refuse (a chunk-size line longer than its buffer) keeps it busy
 * until its idle timeout. Every connection receiving a body that has not
 * advanced since then and is not suspended is cut: its socket is shut
 * down and its MHD timeout set to 1 s (MHD reads nothing more from it, so
 * only its own timeout closes it). Returns how many were cut.
 */
unsigned sol_limits_cut_stalled(struct sol_limits *l, uint64_t since_ms, uint64_t now_ms);

/*
 * Failed authentication per client address. blocked: nonzero (the seconds
 * to wait, for Retry-After) when the address has used up its failures;
 * failed: one more failure (a 401) from conn's address.
 */
unsigned sol_limits_auth_blocked(struct sol_limits *l, struct MHD_Connection *conn,
                                 uint64_t now_ms);
void sol_limits_auth_failed(struct sol_limits *l, struct MHD_Connection *conn, uint64_t now_ms);

#endif
