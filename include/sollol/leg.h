/*
 * leg.h - one upstream HTTP exchange on the curl glue (curl_uv.h): its
 * transfer, its request headers, the answer's body and status. The
 * fan-out's legs, the embedding split's chunks, the health probes and the
 * discovery slots each embed one and find themselves from its transfer
 * with SOL_CONTAINER_OF(x, T, leg.xfer).
 *
 * Ownership: the leg owns its easy handle (xfer.easy, set by the owner
 * before sol_leg_start and kept for the next start), its header list and
 * its body buffer, until sol_leg_free(). It never owns its owner.
 */
#ifndef SOLLOL_LEG_H
#define SOLLOL_LEG_H

#include "sollol/buf.h"
#include "sollol/curl_uv.h"

#include <curl/curl.h>

struct sol_leg {
    struct sol_curl_xfer xfer;  /* xfer.easy is the owner's to configure */
    struct curl_slist *headers; /* request headers of the exchange, or NULL */
    struct sol_buf body;        /* what the node answered (or its pending part) */
    long status;                /* the answer's HTTP status; 0 until known */
    int running;                /* added to the multi and not yet done */
};

/* Adds the configured transfer to cu with on_done as its completion.
 * Returns 0 (running), or -1 when libcurl refused it (on_done will not
 * run). Not from inside a libcurl callback. */
int sol_leg_start(struct sol_leg *l, struct sol_curl_uv *cu,
                  void (*on_done)(struct sol_curl_xfer *x, CURLcode rc));

/* Stops a running exchange (its connection is closed; on_done does not
 * run). Returns 1 when it was running, else 0. Not from inside one of its
 * own libcurl callbacks. */
int sol_leg_cancel(struct sol_leg *l, struct sol_curl_uv *cu);

/* Frees the easy handle, the headers and the body; the leg is then empty
 * (and may be started again once given a new easy handle). Only when not
 * running. */
void sol_leg_free(struct sol_leg *l);

#endif
