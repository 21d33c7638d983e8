/*
 * access_log.h - one line per finished client request, on the log sink
 * (stderr; journald picks it up), in the log's format: text
 * `key=value` pairs or one JSON object (--log-format text|json).
 *
 * Fields, in this order: time, id (X-Sollol-Request-Id), client (peer
 * address without port), method, path, model (canonical, "-"/null when
 * none), node (the node that answered; "-"/null when the daemon answered
 * itself, "*" for several), status (0 when nothing was sent), retries
 * (attempts after the first), queue_ms, ttfb_ms (the answering attempt:
 * sent to the node -> its first byte; 0 when no node answered),
 * duration_ms (arrival -> completion), prompt_tokens, gen_tokens, bytes
 * (body bytes sent), and client_gone when the client left first. A JSON
 * line also has "tag", "level" and "msg" (a one-line summary) like every
 * other JSON log line, and "kind":"access".
 *
 * Text values are made safe for one line: bytes outside printable ASCII,
 * spaces, quotes, backslashes and '=' are written as %XX, so a path a
 * client sent cannot forge fields or lines. JSON values are escaped as JSON.
 * Lines are written at level info (nothing when the level is below it).
 */
#ifndef SOLLOL_ACCESS_LOG_H
#define SOLLOL_ACCESS_LOG_H

#include "sollol/buf.h"
#include "base/metrics.h"

#include <microhttpd.h>
#include <stddef.h>
#include <time.h>

struct sol_access_entry {
    const char *id;
    const char *client; /* see sol_access_client_address() */
    const char *method;
    const char *path;
    const struct sol_metrics_sample *s; /* model, node, status, timings, tokens */
    int client_gone;
    const char *cont; /* a failure after the first byte: "continued" or why not (cont.h); NULL */
};

/* Appends the line for e (ending in '\n') to out; json selects the format;
 * `when` is the wall-clock time written. 0, or -1 (out of memory). */
int sol_access_format(struct sol_buf *out, const struct sol_access_entry *e, int json,
                      const struct timespec *when);

/* Formats e in the log's current format and writes it with one write(2). */
void sol_access_log(const struct sol_access_entry *e);

/* The connection's peer address as text ("127.0.0.1", "::1"), without
 * port; "-" when unknown. Always NUL-terminates buf (len > 0). */
void sol_access_client_address(struct MHD_Connection *c, char *buf, size_t len);

#endif
