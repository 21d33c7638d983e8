/*
 * request.h - the lifecycle of one client request: receive, inspect, pick a
 * node, proxy, stream back, fail over, finish.
 *
 * A request object is created by the first call of MHD's access handler for
 * a connection's request and reference-counted by its holders: the MHD
 * connection (released in the request-completed callback), the streaming
 * response (released in the response's free callback) and the hang-up
 * watch handle (released in its close callback). Whoever drops the last
 * reference frees it; nothing frees it from inside a callback that still
 * uses it.
 *
 * Flow: RECEIVING (body is buffered up to the limit) -> UPSTREAM (an attempt
 * is running; the MHD connection is suspended) -> COMMITTED (the node's
 * status and first bytes are in; the connection is resumed and the response
 * queued) -> STREAMING (bytes flow node -> buffer -> client with
 * backpressure both ways) -> done. Any attempt that fails before COMMITTED
 * is retried on another node; after it, the stream ends with an error line.
 */
#ifndef SOLLOL_REQUEST_H
#define SOLLOL_REQUEST_H

#include <microhttpd.h>
#include <stdint.h>

struct sol_daemon;

/* MHD_AccessHandlerCallback; cls is the struct sol_daemon. */
enum MHD_Result sol_request_on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **con_cls);

/* MHD's URI log callback (MHD_OPTION_URI_LOG_CALLBACK): sees the raw request
 * target before libmicrohttpd decodes it (hdr_check.h). Its result becomes
 * the request's *con_cls: NULL, or a marker that makes the access handler
 * answer 400 on its first call, before the gate and before any body byte. */
void *sol_request_on_uri(void *cls, const char *uri, struct MHD_Connection *conn);

/* MHD_RequestCompletedCallback; cls is the struct sol_daemon. */
void sol_request_on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                              enum MHD_RequestTerminationCode toe);

/* Ends attempts whose first-byte or idle deadline has passed. Called from
 * the daemon's sweep timer. */
void sol_request_sweep(struct sol_daemon *d, uint64_t now_ms);

/* Starts every waiting request that a node with a free slot can take now.
 * Called after slots free and from the sweep timer; never from inside a
 * libcurl callback. */
void sol_request_dispatch(struct sol_daemon *d);

/* Answers 503 to requests that waited for a slot longer than allowed. */
void sol_request_expire_queue(struct sol_daemon *d, uint64_t now_ms);

/* Ends every live request for shutdown: upstreams are cancelled, streams
 * get a final error line, suspended connections are resumed so MHD can
 * close them. */
void sol_request_abort_all(struct sol_daemon *d, const char *why);

#endif
