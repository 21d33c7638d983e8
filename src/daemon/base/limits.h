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
    uint64_t deadline_ms; /* the next request's headers are due by then; 0 = inside a request */
    int over;             /* opened while its address was at the limit */
};

struct sol_limits_conf {
    unsigned long long max_url_bytes;
    unsigned long long max_header_bytes;
    unsigned max_per_client; /* 0 = no limit */
    unsigned header_timeout_ms;
    unsigned idle_timeout_ms; /* MHD's idle timeout for client connections */
};

struct sol_limits {
    struct sol_limits_conf conf;
    uv_loop_t *loop;
    struct sol_limits_conn *conns; /* every open client connection */
    unsigned n_conns;
    struct sol_limits_addr *buckets[SOL_LIMITS_BUCKETS];
    uint64_t cut_slow_headers; /* connections cut for sending headers too slowly */
    uint64_t refused_per_client;
    uint64_t closed_by_peer;   /* connections whose hang-up MHD had missed (see sweep) */
    uint64_t peer_check_ms;    /* when the sweep last looked for such hang-ups */
    uint64_t next_deadline_ms; /* no connection's header deadline is earlier */
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

#endif
