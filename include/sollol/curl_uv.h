/*
 * curl_uv.h - drives a libcurl multi handle from a libuv loop.
 *
 * libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION: an
 * epoll set of the glue's own, watched by one uv_poll_t; a cached
 * connection's socket stays in it between transfers) and when to call it
 * back (CURLMOPT_TIMERFUNCTION: one uv_timer_t). After every
 * curl_multi_socket_action() the finished transfers are reaped with
 * curl_multi_info_read(), unconditionally: a transfer may finish on a
 * timeout or on another socket's event.
 *
 * Completion is reported outside of libcurl's own callbacks, so a done
 * callback may free its easy handle, start new transfers or cancel others.
 */
#ifndef SOLLOL_CURL_UV_H
#define SOLLOL_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

struct sol_curl_fd;

/* Easy handles kept for reuse (sol_curl_uv_easy_put). */
#define SOL_CURL_SPARE_EASY 256

struct sol_curl_uv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    int epfd;                /* the epoll set of libcurl's sockets */
    uv_poll_t set_poll;      /* the loop's watch on epfd */
    int handles_open;        /* timer + set_poll not yet closed (epfd goes with the last) */
    struct sol_curl_fd *fds; /* per descriptor: in the set? watched by libcurl? */
    size_t fds_len;
    CURL *spare[SOL_CURL_SPARE_EASY]; /* reset easy handles for new transfers */
    unsigned n_spare;
    unsigned running; /* transfers added and not yet done or cancelled */
    void (*on_closed)(struct sol_curl_uv *cu);
};

/*
 * One transfer. Embed it in the object that owns the easy handle; the glue
 * stores a pointer to it as CURLOPT_PRIVATE (do not set that option yourself).
 * on_done runs exactly once per added transfer unless it was cancelled, after
 * the handle has been removed from the multi; the easy handle is then the
 * caller's again (reuse it or curl_easy_cleanup it).
 */
struct sol_curl_xfer {
    CURL *easy;
    void (*on_done)(struct sol_curl_xfer *x, CURLcode result);
    int added;
};

/* Creates the multi handle and the socket set. `max_connections` bounds
 * the connection cache that keeps upstream keep-alive connections (0 =
 * libcurl's default). Returns 0, or -1 with nothing left open. */
int sol_curl_uv_init(struct sol_curl_uv *cu, uv_loop_t *loop, long max_connections);

/* An easy handle for a new transfer, in libcurl's default state: one given
 * back earlier (creating and destroying one per request cost ~13,000
 * instructions) or a new one. NULL when out of memory. The caller owns it
 * and gives it back with sol_curl_uv_easy_put() (or curl_easy_cleanup()). */
CURL *sol_curl_uv_easy_get(struct sol_curl_uv *cu);

/* Takes back an easy handle that is not added to the multi (NULL: no-op):
 * reset and kept for sol_curl_uv_easy_get(), or destroyed when
 * SOL_CURL_SPARE_EASY are kept already or the glue is closed. Nothing of
 * the last transfer survives curl_easy_reset(); its connection stays in the
 * multi's cache. */
void sol_curl_uv_easy_put(struct sol_curl_uv *cu, CURL *easy);

/* Starts a transfer. Returns 0, or -1 if libcurl refused it (on_done is then
 * not called). Must not be called from inside a libcurl callback. Sets
 * CURLOPT_PRIVATE, CURLOPT_CLOSESOCKETFUNCTION/DATA and
 * CURLOPT_SOCKOPTFUNCTION/DATA on the easy handle (socket watches are kept
 * across transfers and must hear of every socket's birth and death): the
 * caller must not set those, and every transfer of the multi must be
 * started here. Also sets CURLOPT_NOPROXY "*": no transfer goes through a
 * proxy named in the environment. */
int sol_curl_uv_add(struct sol_curl_uv *cu, struct sol_curl_xfer *x);

/* Stops a transfer that is still running: its connection is closed (the
 * peer sees it at once), on_done is not called. No-op when not added. Must
 * not be called from inside a libcurl callback of that same transfer. */
void sol_curl_uv_cancel(struct sol_curl_uv *cu, struct sol_curl_xfer *x);

/* Closes the multi handle (all transfers must be done or cancelled) and the
 * glue's handles; on_closed runs once they are closed. */
void sol_curl_uv_close(struct sol_curl_uv *cu, void (*on_closed)(struct sol_curl_uv *cu));

#endif
